/* The L1 read cache: the only module that opens or queries SQLite (with
 * cache_migrate.c for whole migration files).
 *
 * Every host keeps one SQLite file; every worker holds one handle to it.
 * PostgreSQL is the source of truth: nothing here is written before
 * PostgreSQL has committed, and a cache failure is logged and counted but
 * never passed on to a client — the request is answered from PostgreSQL.
 *
 * A cached table stores, per row, its key, a few columns to filter and
 * sort on, and the row's API object as JSON text (the body), so a hit is
 * answered without building JSON. Store modules (deployments.c,
 * storage.c) describe their tables with struct cache_tabledef and supply
 * the PostgreSQL side; the algorithms live here once, one concern a file
 * behind the private cache_int.h:
 *   cache_file.c    the SQLite handle: file lifecycle, statements, rows,
 *                   transactions, the WAL-index version
 *   cache_policy.c  read-through, snapshots, the memo, writes and the
 *                   generation guard
 *   cache_sync.c    coherence: the listener's state, heartbeat, NOTIFY
 *   cache_cred.c    credentials
 *   cache_ops.c     operator paths: rebuild, invalidate, verify, status
 *   cache_tables.c  the registry of tables and their names */
#ifndef BLOQR_CACHE_H
#define BLOQR_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "cache_migrate.h"
#include "cache_tables.h"
#include "err.h"

struct pg;
struct cache;


enum cache_outcome { CACHE_HIT = 0, CACHE_MISS, CACHE_STALE, CACHE_BYPASS };
const char *cache_outcome_name(enum cache_outcome o);   /* "HIT"… for X-Cache */

#define CACHE_MAX_COLS 6

/* One row as cached. All strings are malloc'd and owned by the row. */
struct cache_row {
	char *key;
	char *cols[CACHE_MAX_COLS];   /* in the order of tabledef.cols; NULL = SQL NULL */
	char *body;                   /* the API object, JSON text */
};
void cache_row_free(struct cache_row *row);

/* An equality filter for lists; value NULL means "any". */
struct cache_filter {
	const char *col;
	const char *value;
};

/* The PostgreSQL side of a cached table, declared by its store module. */
struct cache_tabledef {
	const char *name;                   /* the table's name in PostgreSQL and SQLite */
	const char *key_col;                /* SQLite key column */
	const char *cols[CACHE_MAX_COLS + 1];  /* other SQLite columns, NULL-terminated */
	const char *order_col;              /* lists: ORDER BY order_col DESC, key DESC */
	const char *expires_col;            /* rows whose value (ISO time) is past read as absent; or NULL */
	/* One row by key: 1 and *row filled, 0 when absent, or a negative bloqr_err. */
	int (*fetch)(struct pg *pg, const char *key, struct cache_row *row);
	/* Every row, for a snapshot: a statement without parameters and the
	 * conversion of its row i (0, or BLOQR_ENOMEM; row left empty).
	 * NULL: this table is cached per key only. The rows are streamed
	 * (pg_each), so a table of any size takes no more memory than a row. */
	const struct pg_stmt *all;
	int (*row)(const PGresult *r, int i, struct cache_row *row);
	/* Snapshot tables: the PostgreSQL side of cache_list (append the
	 * matching rows' JSON texts, newest first as the cache orders them,
	 * joined by ',', to out; set *count) and of cache_count (NULL: the
	 * table is never counted). Equality filters name cached columns.
	 * Return a bloqr_err. */
	int (*pg_list)(struct pg *pg, const struct cache_filter *f, int nf, long limit,
	    struct buf *out, long *count);
	int (*pg_count)(struct pg *pg, const struct cache_filter *f, int nf, long *n);
};

/* The registry, indexed by enum cache_tbl (CACHE_CREDENTIALS: NULL). */
extern const struct cache_tabledef *const cache_defs[CACHE_NTABLES];

/* Open the cache at path ("" or NULL: disabled, every call below a cheap
 * no-op answering BYPASS). A missing or broken file is created or rebuilt
 * with the built-in schema; if that fails the handle retries later. NULL
 * only when out of memory. max_age: seconds before a row is stale. */
struct cache *cache_open(const char *path, long max_age, bool write_through);
void cache_close(struct cache *c);
bool cache_enabled(const struct cache *c);

/* Look at the file again at its next use (a stat): called at the start of
 * every request, so that a file deleted, replaced or left with a stale
 * "-wal" is noticed before anything is read from it. While the file is
 * watched (below) this costs nothing: the watch says when to look. */
void cache_recheck(struct cache *c);
/* Watch the file's directory (inotify) instead of a stat per request: a
 * descriptor for the caller's poll, or -1 (then cache_recheck stats).
 * When it is readable, call cache_watch_event before serving anything. */
int cache_watch(struct cache *c);
void cache_watch_event(struct cache *c);

/* Live probe for /api/health: 0 when the file is there and answers. */
int cache_probe(struct cache *c, double *latency_ms);

/* Whether a write to this host's cache file failed in the last few
 * seconds (any process of the pool): /api/health then says degraded even
 * though the file still answers reads. */
bool cache_write_failing(struct cache *c);

/* ---- reads ---- */

/* Read-through get of one row: fresh and coherent → HIT; else PostgreSQL
 * (refilling the cache) → MISS, or BYPASS when the cache is disabled or
 * broken; PostgreSQL unreachable → the cached row if any → STALE.
 * *body: malloc'd JSON text (caller frees), NULL when the row is absent or
 * expired. Returns 0, or a negative pg_err when PostgreSQL failed and
 * nothing cached could stand in. */
int cache_get(struct cache *c, struct pg *pg, enum cache_tbl t, const char *key,
    char **body, enum cache_outcome *how);

/* Read-through list: from the table's snapshot when it is complete, fresh
 * and coherent (HIT); else from the table's pg_list (MISS/BYPASS),
 * refreshing the snapshot; PostgreSQL unreachable → the snapshot, however
 * old (STALE). Rows newest first (order_col DESC, key DESC), at most limit,
 * appended to out as JSON texts joined by ','. Returns 0 or a negative
 * bloqr_err. */
int cache_list(struct cache *c, struct pg *pg, enum cache_tbl t, const struct cache_filter *f, int nf,
    long limit, struct buf *out, long *count, enum cache_outcome *how) BLOQR_MUSTCHECK;

/* Count rows matching f, through the snapshot like cache_list (the
 * table's pg_count when PostgreSQL answers). */
int cache_count(struct cache *c, struct pg *pg, enum cache_tbl t, const struct cache_filter *f, int nf,
    long *n, enum cache_outcome *how) BLOQR_MUSTCHECK;

/* ---- writes (call after PostgreSQL has committed) ---- */

/* The table's generation: read it before a PostgreSQL write, hand it to
 * cache_written. Any invalidation in between moves it on, and the
 * write-through then drops the row instead of storing what may be old. */
uint64_t cache_gen(struct cache *c, enum cache_tbl t);
/* After a commit that created or changed row: store it (write-through) or
 * drop the cached copy (lazy). Takes nothing; row stays the caller's. */
void cache_written(struct cache *c, enum cache_tbl t, const struct cache_row *row, uint64_t gen);
/* After a commit that deleted key (or key NULL: many rows of the table).
 * BLOQR_ECACHE when the cache could not be changed (it is then unusable;
 * the syncer's copy of the NOTIFY will drop the row). */
int cache_deleted(struct cache *c, enum cache_tbl t, const char *key) BLOQR_MUSTCHECK;

/* ---- credentials (CACHE_CREDENTIALS) ---- */
struct cache_cred {
	char kind;                 /* 's' session, 't' API token */
	char cred_id[40];
	char user_id[40];
	char role[16];
	bool banned;
	int64_t expires_ms;        /* 0: never */
	int64_t confirmed_ms;      /* when PostgreSQL last vouched for it */
	bool trusted;              /* the cache was coherent when it was read */
};
/* 1 and *cr when the credential is cached, 0 when not, -1 on error. The
 * row and the coherence (cr->trusted) are read together. */
int cache_cred_get(struct cache *c, const char *token_hash, struct cache_cred *cr);
/* Keep a credential read from PostgreSQL by a lookup that began at
 * since_ms (unix ms), unless its token, its user or everything was
 * invalidated since then. */
void cache_cred_put(struct cache *c, const char *token_hash, const struct cache_cred *cr, int64_t since_ms);
/* True while the invalidation listener is connected and recent: only then
 * is security data trusted from the cache. */
bool cache_coherent(struct cache *c);
/* When the listener last lost PostgreSQL (unix ms), 0 if it has not. */
int64_t cache_outage_since(struct cache *c);

/* ---- invalidation, sync, administration ---- */

/* Apply NOTIFY payloads "table:key" (or "table" for the whole table) in
 * one SQLite transaction: refresh each row from PostgreSQL (or drop it);
 * credentials of a changed user or token are dropped. -1 when they could
 * not all be applied (SQLite busy or failing): the caller keeps them and
 * tries again, and vouches for nothing meanwhile. */
int cache_apply_notifications(struct cache *c, struct pg *pg, char *const *payloads, int n);
/* The listener's state, for every process on the host. lost_pg: it went
 * down because PostgreSQL did (the start of an outage, for auth_grace). */
void cache_listener_state(struct cache *c, bool connected, bool lost_pg);
/* The syncer vouches that everything heard is applied; position is where
 * that leaves it in PostgreSQL's change log (changelog.h): NULL keeps the
 * last one recorded, "" records none. */
void cache_heartbeat(struct cache *c, const char *position);
/* The last position recorded in this file: 1 (in buf), 0 when none or
 * longer than size, -1 when the file is unusable. */
int cache_position(struct cache *c, char *buf, size_t size);
/* Moves on each time the handle opens the file anew (it was deleted,
 * replaced or rebuilt): a new file knows nothing of the listener. */
unsigned cache_file_generation(const struct cache *c);
/* After the listener (re)connects: nothing cached can be trusted without a
 * check; mark every table incomplete and every row stale, drop credentials. */
int cache_mark_all_stale(struct cache *c);
/* For the syncer, every tick: take again the snapshots readers asked for
 * (missing, or past half their max_age), one at a time, each under the
 * table's lease. Returns how many were taken. */
int cache_refresh_snapshots(struct cache *c, struct pg *pg);
/* [cache] max_rows: rows kept per table (default 500000). */
void cache_set_max_rows(struct cache *c, long max_rows);
/* For the syncer, every few seconds: a table cached per key that holds
 * more than max_rows rows loses the ones read least recently, down to 95 %
 * of it. Returns rows evicted, or -1 on an SQLite error. */
long cache_evict(struct cache *c);
/* Refill every table from PostgreSQL (snapshot tables whole, per-key
 * tables dropped). rows[t] gets the rows now cached. Returns a bloqr_err:
 * BLOQR_ECACHE when the cache file is unusable, BLOQR_EUNAVAIL when
 * PostgreSQL is. */
int cache_rebuild(struct cache *c, struct pg *pg, long rows[CACHE_NTABLES]) BLOQR_MUSTCHECK;
/* Drop one row (key) or a whole table (key NULL). Returns rows dropped or -1. */
long cache_invalidate(struct cache *c, enum cache_tbl t, const char *key);
/* Compare every cached row with PostgreSQL; print differences to report
 * (one line each). Returns the number of differences, or -1 on error. */
long cache_verify(struct cache *c, struct pg *pg, struct buf *report);
/* For the syncer, every few seconds: a WAL past 1 MiB is checkpointed and
 * emptied (TRUNCATE), or, when readers hold it, checkpointed as far as it
 * can be without waiting (PASSIVE). 0, or -1 on an SQLite error. */
int cache_checkpoint(struct cache *c);
/* VACUUM the cache file. */
int cache_vacuum(struct cache *c);
/* How many tables this host's SQLite file holds; -1 when it is unusable. */
long cache_sqlite_tables(struct cache *c);

/* Status for GET /api/admin/cache/status. */
struct cache_table_status {
	long rows;
	int64_t last_full_sync_ms;   /* 0: never */
};
int cache_table_status(struct cache *c, enum cache_tbl t, struct cache_table_status *st);
bool cache_listener_connected(struct cache *c, int64_t *since_ms);

#endif
