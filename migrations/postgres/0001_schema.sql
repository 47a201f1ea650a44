-- 0001_schema: the source-of-truth schema of bloqr-backend (PostgreSQL 15).
--
-- Applied by `bloqr-admin migrate`, which wraps this whole file in one
-- transaction together with its row in schema_migrations: no BEGIN/COMMIT
-- here. Never edit this file once it has been applied anywhere; add
-- migrations/postgres/NNNN_name.sql instead (see migrations/README.md).

-- ---------------------------------------------------------------- users --

CREATE TABLE users (
	id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	email          text        NOT NULL,
	name           text,
	email_verified boolean     NOT NULL DEFAULT false,
	image          text,
	tier           text        NOT NULL DEFAULT 'free'
	               CHECK (tier IN ('anonymous', 'free', 'pro', 'admin')),
	role           text        NOT NULL DEFAULT 'user'
	               CHECK (role IN ('admin', 'user', 'readonly')),
	banned         boolean     NOT NULL DEFAULT false,
	ban_reason     text        CHECK (char_length(ban_reason) <= 500),
	ban_expires    timestamptz,
	created_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now()
);
-- One account per address whatever its case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_created_at_idx ON users (created_at DESC);

-- Sign-in methods of a user: provider_id 'credential' holds the argon2id
-- password hash; other providers (OAuth) leave it NULL.
CREATE TABLE accounts (
	id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	provider_id   text        NOT NULL,
	account_id    text        NOT NULL,
	password_hash text,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	UNIQUE (provider_id, account_id)
);
CREATE INDEX accounts_user_id_idx ON accounts (user_id);

-- Sign-in sessions (cookie or bearer). Only the SHA-256 (hex) of the token
-- is stored.
CREATE TABLE sessions (
	id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	token_hash   text        NOT NULL UNIQUE,
	expires_at   timestamptz NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	revoked_at   timestamptz,
	ip_address   text,
	user_agent   text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Long-lived bearer tokens from `bloqr-admin token create`; expires_at NULL
-- means never. Only the SHA-256 (hex) of the token is stored.
CREATE TABLE api_tokens (
	id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	token_hash   text        NOT NULL UNIQUE,
	name         text,
	expires_at   timestamptz,
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

-- Sign-in attempts, for rate limiting by email and by client address.
CREATE TABLE auth_attempts (
	id           bigserial   PRIMARY KEY,
	email        text,
	client_addr  text,
	attempted_at timestamptz NOT NULL DEFAULT now(),
	succeeded    boolean     NOT NULL
);
CREATE INDEX auth_attempts_email_idx ON auth_attempts (lower(email), attempted_at);
CREATE INDEX auth_attempts_client_idx ON auth_attempts (client_addr, attempted_at);

-- What administrators did. No foreign key on actor_id: the log outlives
-- the users it names.
CREATE TABLE admin_audit_log (
	id         bigserial   PRIMARY KEY,
	actor_id   uuid,
	action     text        NOT NULL,
	target     text,
	created_at timestamptz NOT NULL DEFAULT now(),
	request_id text,
	details    jsonb
);
CREATE INDEX admin_audit_log_created_at_idx ON admin_audit_log (created_at DESC);
CREATE INDEX admin_audit_log_action_idx ON admin_audit_log (action, created_at DESC);

-- ---------------------------------------------------------- deployments --

CREATE TABLE deployment_history (
	id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	version             text        NOT NULL,
	build_number        integer     NOT NULL CHECK (build_number > 0),
	full_version        text        NOT NULL UNIQUE,
	git_commit          text        NOT NULL,
	git_branch          text        NOT NULL,
	deployed_at         timestamptz NOT NULL DEFAULT now(),
	deployed_by         text        NOT NULL,
	status              text        NOT NULL DEFAULT 'success'
	                    CHECK (status IN ('success', 'failed', 'rollback')),
	deployment_duration integer     CHECK (deployment_duration >= 0),
	workflow_run_id     text,
	workflow_run_url    text,
	metadata            jsonb,
	UNIQUE (version, build_number)
);
CREATE INDEX deployment_history_deployed_at_idx ON deployment_history (deployed_at DESC);
CREATE INDEX deployment_history_status_idx ON deployment_history (status, deployed_at DESC);
CREATE INDEX deployment_history_branch_idx ON deployment_history (git_branch, deployed_at DESC);

-- The last build number handed out per version: an UPSERT ... RETURNING on
-- this row assigns build numbers atomically.
CREATE TABLE deployment_counter (
	version           text    PRIMARY KEY,
	last_build_number integer NOT NULL
);

-- -------------------------------------------------------------- storage --

-- data is json, not jsonb: it is returned exactly as it was given.
CREATE TABLE storage_entries (
	key        text        PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 1024),
	data       json        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	tags       text[]
);
CREATE INDEX storage_entries_expires_at_idx ON storage_entries (expires_at)
	WHERE expires_at IS NOT NULL;

CREATE TABLE filter_cache (
	source     text        PRIMARY KEY,
	content    text        NOT NULL,
	hash       text        NOT NULL,
	etag       text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz
);
CREATE INDEX filter_cache_expires_at_idx ON filter_cache (expires_at);

CREATE TABLE compilation_metadata (
	id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	config_name  text        NOT NULL,
	"timestamp"  timestamptz NOT NULL DEFAULT now(),
	source_count integer     NOT NULL CHECK (source_count >= 0),
	rule_count   integer     NOT NULL CHECK (rule_count >= 0),
	duration     integer     NOT NULL CHECK (duration >= 0),
	output_path  text
);
CREATE INDEX compilation_metadata_config_idx ON compilation_metadata (config_name, "timestamp" DESC);
CREATE INDEX compilation_metadata_timestamp_idx ON compilation_metadata ("timestamp" DESC);

-- ------------------------------------------------- query console role --

-- bloqr_query is the login role of [database] query_url: it may read the
-- storage tables and nothing else. Creating a role needs CREATEROLE; a
-- migrating user without it gets a notice and the console stays off until
-- an administrator creates the role (and reruns the grants below).
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bloqr_query') THEN
		BEGIN
			CREATE ROLE bloqr_query LOGIN NOINHERIT NOSUPERUSER NOCREATEDB
				NOCREATEROLE NOREPLICATION NOBYPASSRLS;
		EXCEPTION WHEN insufficient_privilege THEN
			RAISE NOTICE 'bloqr: cannot create role bloqr_query (%), the query console stays off until it exists',
				SQLERRM;
		END;
	END IF;
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bloqr_query') THEN
		EXECUTE 'GRANT USAGE ON SCHEMA public TO bloqr_query';
		EXECUTE 'GRANT SELECT ON storage_entries, filter_cache, compilation_metadata TO bloqr_query';
	END IF;
END
$$;
