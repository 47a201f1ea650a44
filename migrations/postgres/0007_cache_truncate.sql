-- 0007_cache_truncate: TRUNCATE fires no row trigger, so a cached table
-- emptied from outside (psql, another service) went unannounced: every
-- host kept serving its rows, and for sessions, api_tokens or users, kept
-- trusting the credentials. A statement trigger now announces the whole
-- table ("<table>" alone: each host drops its copy, or every cached
-- credential), on the channel and in the change log alike.

CREATE FUNCTION bloqr_cache_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM bloqr_cache_send(TG_TABLE_NAME, NULL);
	RETURN NULL;
END $$;

CREATE TRIGGER deployment_history_cache_truncate
	AFTER TRUNCATE ON deployment_history FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER storage_entries_cache_truncate
	AFTER TRUNCATE ON storage_entries FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER filter_cache_cache_truncate
	AFTER TRUNCATE ON filter_cache FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER compilation_metadata_cache_truncate
	AFTER TRUNCATE ON compilation_metadata FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER users_cache_truncate
	AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER sessions_cache_truncate
	AFTER TRUNCATE ON sessions FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
CREATE TRIGGER api_tokens_cache_truncate
	AFTER TRUNCATE ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION bloqr_cache_truncated();
