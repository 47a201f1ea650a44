-- 0002_cache_notify: announce every change to a cached table on the channel
-- bloqr_cache, so every host's L1 cache follows writes from any host, psql
-- or another service. Payload: "<table>:<key>", or "<table>" alone when the
-- key is too long for a NOTIFY payload (the host then drops the whole table).
-- NOTIFY is delivered at commit, and not at all on rollback.

CREATE FUNCTION bloqr_cache_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	k text;
BEGIN
	IF TG_OP = 'DELETE' THEN
		k := to_jsonb(OLD) ->> TG_ARGV[0];
	ELSE
		k := to_jsonb(NEW) ->> TG_ARGV[0];
		-- A changed key announces the old one too.
		IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) ->> TG_ARGV[0]) IS DISTINCT FROM k THEN
			PERFORM bloqr_cache_send(TG_TABLE_NAME, to_jsonb(OLD) ->> TG_ARGV[0]);
		END IF;
	END IF;
	PERFORM bloqr_cache_send(TG_TABLE_NAME, k);
	RETURN NULL;
END $$;

CREATE FUNCTION bloqr_cache_send(tbl text, k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF k IS NULL OR octet_length(k) > 7000 THEN
		PERFORM pg_notify('bloqr_cache', tbl);
	ELSE
		PERFORM pg_notify('bloqr_cache', tbl || ':' || k);
	END IF;
END $$;

CREATE TRIGGER deployment_history_cache_notify
	AFTER INSERT OR UPDATE OR DELETE ON deployment_history
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('id');
CREATE TRIGGER storage_entries_cache_notify
	AFTER INSERT OR UPDATE OR DELETE ON storage_entries
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('key');
CREATE TRIGGER filter_cache_cache_notify
	AFTER INSERT OR UPDATE OR DELETE ON filter_cache
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('source');
CREATE TRIGGER compilation_metadata_cache_notify
	AFTER INSERT OR UPDATE OR DELETE ON compilation_metadata
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('id');

-- Security data: what authorization caches is the user's role and ban and
-- each credential's validity; last_used_at updates announce nothing.
CREATE TRIGGER users_cache_notify
	AFTER UPDATE OF role, banned, ban_expires OR DELETE ON users
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('id');
CREATE TRIGGER sessions_cache_notify
	AFTER UPDATE OF revoked_at, expires_at, user_id OR DELETE ON sessions
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('token_hash');
CREATE TRIGGER api_tokens_cache_notify
	AFTER UPDATE OF revoked_at, expires_at, user_id OR DELETE ON api_tokens
	FOR EACH ROW EXECUTE FUNCTION bloqr_cache_notify('token_hash');
