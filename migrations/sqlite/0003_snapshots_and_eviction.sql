-- 0003_snapshots_and_eviction: one refresh of a table's snapshot at a time
-- per host, refreshes ahead of expiry for the tables that are read, a table
-- marked stale in one small write, and eviction of the rows read least
-- recently.
-- refresh_until, refresh_pid: a lease (unix ms) and its holder: that
-- process is taking the snapshot; others keep serving the previous one
-- meanwhile, or answer from PostgreSQL, and never start a second refresh.
-- A holder that died loses it at once (the file is per host: its pid is
-- checked), else it runs out.
-- wanted_at: when a reader last found the snapshot missing or near its
-- max_age (unix ms): the syncer takes it again, off the request path.
-- valid_after: rows cached before it (cached_at < valid_after) must be
-- checked again (the listener was away: an invalidation may be missed).
ALTER TABLE cache_tables ADD COLUMN refresh_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cache_tables ADD COLUMN refresh_pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cache_tables ADD COLUMN wanted_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cache_tables ADD COLUMN valid_after INTEGER NOT NULL DEFAULT 0;

-- read_at: when a row of a table cached per key was last read (unix ms,
-- kept to within a tenth of max_age): past [cache] max_rows, the rows
-- read least recently are evicted.
ALTER TABLE storage_entries ADD COLUMN read_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX storage_entries_read_at_idx ON storage_entries (read_at);
ALTER TABLE filter_cache ADD COLUMN read_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX filter_cache_read_at_idx ON filter_cache (read_at);
