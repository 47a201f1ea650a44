-- 0004_listener_position: pg_position is the PostgreSQL snapshot (text of
-- pg_current_snapshot()) up to which the syncer has applied every change
-- to the cached tables. A syncer that starts again (a crash, a kill, a new
-- listening connection) applies what PostgreSQL's change log
-- (bloqr_cache_log) holds outside it, instead of re-checking the whole
-- cache. NULL: unknown, re-check all.
ALTER TABLE cache_state ADD COLUMN pg_position TEXT;
