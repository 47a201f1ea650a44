-- 0006_cache_change_log: a NOTIFY is lost when no one listens, so a host's
-- syncer that restarts (a crash, a kill, a new listening connection) used
-- to distrust and re-check its whole cache. Every announcement is now also
-- kept, for a while, in bloqr_cache_log, with the id of the transaction
-- that made it. A syncer remembers, in its cache file, the PostgreSQL
-- snapshot up to which it has applied everything it heard; a new one reads
-- what committed outside that snapshot (pg_visible_in_snapshot) and applies
-- only that. Transaction ids, not a sequence: a sequence number is taken
-- before commit, so sequence order is not commit order and a position by
-- sequence would skip a transaction that committed late.
--
-- The horizon row also names this database (database_id): a position holds
-- it, so that a cache file pointed at another database is never caught up
-- from the wrong log.
--
-- Syncers prune the log (rows older than [cache] change_log_keep, ten
-- minutes by default, a few thousand a time) and raise pruned_below in the
-- same transaction: a syncer whose snapshot is older than that falls back
-- to re-checking all.

CREATE TABLE bloqr_cache_log (
	xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
	payload text NOT NULL
);
CREATE INDEX bloqr_cache_log_xid_idx ON bloqr_cache_log (xid);

CREATE TABLE bloqr_cache_log_horizon (
	id boolean PRIMARY KEY DEFAULT true CHECK (id),
	pruned_below xid8 NOT NULL,
	database_id uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO bloqr_cache_log_horizon (pruned_below) VALUES (pg_snapshot_xmin(pg_current_snapshot()));

-- Writers from outside (another service, psql) may hold rights on the
-- cached tables and none on the log: the function writes the log with its
-- owner's rights (SECURITY DEFINER). It names the log with its schema, so
-- that no one can slip another bloqr_cache_log (a temporary table) in front
-- of it; everything else it uses is in pg_catalog, searched first. (A SET
-- search_path on the function would do the same, at a cost on every row.)
DO $do$
BEGIN
	EXECUTE format($f$
CREATE OR REPLACE FUNCTION bloqr_cache_send(tbl text, k text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
	p text;
BEGIN
	IF k IS NULL OR octet_length(k) > 7000 THEN
		p := tbl;
	ELSE
		p := tbl || ':' || k;
	END IF;
	PERFORM pg_notify('bloqr_cache', p);
	INSERT INTO %I.bloqr_cache_log (payload) VALUES (p);
END $$
$f$, current_schema());
END $do$;
