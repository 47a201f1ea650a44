-- 0001_cache: the per-host L1 read cache (SQLite). PostgreSQL is the source
-- of truth; every table here is a mirror of the PostgreSQL table of the same
-- name, with the same column names, holding a subset of its rows.
--
-- Applied by `bloqr-admin migrate`, which wraps this whole file in one
-- transaction together with its row in schema_migrations: no BEGIN/COMMIT
-- here. Never edit this file once it has been applied anywhere; add
-- migrations/sqlite/NNNN_name.sql instead (see migrations/README.md).
--
-- Types: uuid -> TEXT; timestamptz -> TEXT in the fixed-width form
-- 2026-03-25T17:52:31.123Z (so text order is time order); boolean ->
-- INTEGER 0/1; json/jsonb -> TEXT; text[] -> TEXT holding a JSON array (or
-- NULL). cached_at is when the row was copied from PostgreSQL, in unix
-- milliseconds.
--
-- Mirrors carry no UNIQUE or CHECK constraints besides the primary key:
-- PostgreSQL enforces them, and a stale row must never stop a fresh one
-- from being stored.

CREATE TABLE deployment_history (
	id                  TEXT    PRIMARY KEY,
	version             TEXT    NOT NULL,
	build_number        INTEGER NOT NULL,
	full_version        TEXT    NOT NULL,
	git_commit          TEXT    NOT NULL,
	git_branch          TEXT    NOT NULL,
	deployed_at         TEXT    NOT NULL,
	deployed_by         TEXT    NOT NULL,
	status              TEXT    NOT NULL,
	deployment_duration INTEGER,
	workflow_run_id     TEXT,
	workflow_run_url    TEXT,
	metadata            TEXT,
	cached_at           INTEGER NOT NULL
);
CREATE INDEX deployment_history_deployed_at_idx ON deployment_history (deployed_at DESC);
CREATE INDEX deployment_history_status_idx ON deployment_history (status, deployed_at DESC);
CREATE INDEX deployment_history_full_version_idx ON deployment_history (full_version);

CREATE TABLE storage_entries (
	key        TEXT    PRIMARY KEY,
	data       TEXT    NOT NULL,
	created_at TEXT    NOT NULL,
	updated_at TEXT    NOT NULL,
	expires_at TEXT,
	tags       TEXT,
	cached_at  INTEGER NOT NULL
);

CREATE TABLE filter_cache (
	source     TEXT    PRIMARY KEY,
	content    TEXT    NOT NULL,
	hash       TEXT    NOT NULL,
	etag       TEXT,
	created_at TEXT    NOT NULL,
	updated_at TEXT    NOT NULL,
	expires_at TEXT,
	cached_at  INTEGER NOT NULL
);

CREATE TABLE compilation_metadata (
	id           TEXT    PRIMARY KEY,
	config_name  TEXT    NOT NULL,
	"timestamp"  TEXT    NOT NULL,
	source_count INTEGER NOT NULL,
	rule_count   INTEGER NOT NULL,
	duration     INTEGER NOT NULL,
	output_path  TEXT,
	cached_at    INTEGER NOT NULL
);
CREATE INDEX compilation_metadata_timestamp_idx ON compilation_metadata ("timestamp" DESC);
CREATE INDEX compilation_metadata_config_idx ON compilation_metadata (config_name, "timestamp" DESC);

-- What authentication needs about a user (never a password or hash).
CREATE TABLE users (
	id          TEXT    PRIMARY KEY,
	email       TEXT    NOT NULL,
	name        TEXT,
	role        TEXT    NOT NULL,
	tier        TEXT    NOT NULL,
	banned      INTEGER NOT NULL,
	ban_expires TEXT,
	updated_at  TEXT    NOT NULL,
	cached_at   INTEGER NOT NULL
);

-- Credentials are looked up by the hash of the presented token; user_id
-- finds every credential of a user when it is banned or deleted.
CREATE TABLE sessions (
	token_hash TEXT    PRIMARY KEY,
	id         TEXT    NOT NULL,
	user_id    TEXT    NOT NULL,
	expires_at TEXT    NOT NULL,
	revoked_at TEXT,
	cached_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_id_idx ON sessions (id);

CREATE TABLE api_tokens (
	token_hash TEXT    PRIMARY KEY,
	id         TEXT    NOT NULL,
	user_id    TEXT    NOT NULL,
	expires_at TEXT,
	revoked_at TEXT,
	cached_at  INTEGER NOT NULL
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
CREATE INDEX api_tokens_id_idx ON api_tokens (id);

-- One row per mirrored table (named as in PostgreSQL). complete = 1 when
-- the table holds every row of its PostgreSQL table (after a full sync),
-- so a miss is an answer; synced_at = unix ms of the last full sync;
-- stale = 1 while the table may miss invalidations (never synced, or the
-- invalidation listener was disconnected).
CREATE TABLE cache_tables (
	name      TEXT    PRIMARY KEY,
	complete  INTEGER NOT NULL DEFAULT 0,
	synced_at INTEGER,
	stale     INTEGER NOT NULL DEFAULT 1
);
INSERT INTO cache_tables (name) VALUES
	('deployment_history'),
	('storage_entries'),
	('filter_cache'),
	('compilation_metadata'),
	('users'),
	('sessions'),
	('api_tokens');
