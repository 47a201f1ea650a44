-- 0002_credential_tombstones: when each credential key (a token hash, a
-- user id, or '*' for all) was last invalidated. A credential read from
-- PostgreSQL is kept only if nothing about it was invalidated since the read
-- began: a per-key guard, so busy hosts do not refuse each other's fills the
-- way one generation for the whole table would. Rows older than ten minutes
-- are pruned.
CREATE TABLE cache_tombstones (
	key TEXT    PRIMARY KEY,
	at  INTEGER NOT NULL
);
