-- 0001_cache: the per-host L1 read cache (SQLite). PostgreSQL is the source
-- of truth; each table here holds copies of rows of the PostgreSQL table of
-- the same name, as the API shows them.
--
-- Applied by `bloqr-admin migrate`, and by the responder itself when it finds
-- the cache file missing or broken (the file is disposable: it can always be
-- rebuilt from PostgreSQL). Each file runs in one transaction together with
-- its row in schema_migrations: no BEGIN/COMMIT here. Never edit this file
-- once it has been applied anywhere; add migrations/sqlite/NNNN_name.sql.
--
-- Every cached row has: its key; the few columns the cache filters and sorts
-- on; body, the row's API object as JSON text (so a hit needs no JSON work);
-- cached_at, when it was copied from PostgreSQL (unix ms; 0 = must be
-- checked again). Times are TEXT in the fixed-width form
-- 2026-03-25T17:52:31.123Z, so text order is time order. No constraint but
-- the primary key: PostgreSQL enforces them, and a stale row must never stop
-- a fresh one from being stored.

CREATE TABLE deployment_history (
	id           TEXT    PRIMARY KEY,
	full_version TEXT,
	version      TEXT,
	status       TEXT,
	git_branch   TEXT,
	deployed_at  TEXT,
	body         TEXT    NOT NULL,
	cached_at    INTEGER NOT NULL
);
CREATE INDEX deployment_history_deployed_at_idx ON deployment_history (deployed_at DESC, id DESC);
CREATE INDEX deployment_history_status_idx ON deployment_history (status, deployed_at DESC, id DESC);

CREATE TABLE storage_entries (
	key        TEXT    PRIMARY KEY,
	expires_at TEXT,
	body       TEXT    NOT NULL,
	cached_at  INTEGER NOT NULL
);

CREATE TABLE filter_cache (
	source     TEXT    PRIMARY KEY,
	expires_at TEXT,
	body       TEXT    NOT NULL,
	cached_at  INTEGER NOT NULL
);

CREATE TABLE compilation_metadata (
	id          TEXT    PRIMARY KEY,
	config_name TEXT,
	"timestamp" TEXT,
	body        TEXT    NOT NULL,
	cached_at   INTEGER NOT NULL
);
CREATE INDEX compilation_metadata_timestamp_idx ON compilation_metadata ("timestamp" DESC, id DESC);
CREATE INDEX compilation_metadata_config_idx ON compilation_metadata (config_name, "timestamp" DESC, id DESC);

-- Resolved credentials (sessions and API tokens), by the SHA-256 of the
-- token: what authorization needs, never a token or password.
-- confirmed_at: when PostgreSQL last vouched for it (unix ms).
CREATE TABLE credentials (
	token_hash   TEXT    PRIMARY KEY,
	kind         TEXT    NOT NULL,
	cred_id      TEXT    NOT NULL,
	user_id      TEXT    NOT NULL,
	role         TEXT    NOT NULL,
	banned       INTEGER NOT NULL,
	expires_ms   INTEGER NOT NULL,
	confirmed_at INTEGER NOT NULL
);
CREATE INDEX credentials_user_id_idx ON credentials (user_id);

-- One row per cached table. complete = 1 when the table holds every row of
-- its PostgreSQL table (a snapshot, for lists); synced_at = unix ms of the
-- last full sync; gen moves on with every invalidation, so a write that
-- read an older gen knows its copy may be old.
CREATE TABLE cache_tables (
	name      TEXT    PRIMARY KEY,
	complete  INTEGER NOT NULL DEFAULT 0,
	synced_at INTEGER NOT NULL DEFAULT 0,
	gen       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO cache_tables (name) VALUES
	('deployment_history'), ('storage_entries'), ('filter_cache'),
	('compilation_metadata'), ('credentials');

-- The invalidation listener (the syncer process), for every process on the
-- host: the cache is trusted only while it is connected and its heartbeat
-- (unix ms) is recent. outage_since: when it last lost PostgreSQL.
CREATE TABLE cache_state (
	id                 INTEGER PRIMARY KEY CHECK (id = 1),
	listener_connected INTEGER NOT NULL DEFAULT 0,
	listener_since     INTEGER NOT NULL DEFAULT 0,
	heartbeat          INTEGER NOT NULL DEFAULT 0,
	outage_since       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO cache_state (id) VALUES (1);
