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

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['deployment_history', 'storage_entries', 'filter_cache', 'compilation_metadata',
	    'users', 'sessions', 'api_tokens'] LOOP
		EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I FOR EACH STATEMENT '
		    'EXECUTE FUNCTION bloqr_cache_truncated()', t || '_cache_truncate', t);
	END LOOP;
END $$;
