/* The L1 cache's private header: the handle and what its files share.
 * Only src/cache_*.c include it (see cache.h for the file map). */
#ifndef BLOQR_CACHE_INT_H
#define BLOQR_CACHE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "cache.h"
#include "cache_memo.h"

#define HEARTBEAT_STALE_MS 3000      /* a listener silent this long is not trusted */
#define REOPEN_INTERVAL_MS 1000
#define FILE_RECHECK_MS 1000         /* how often to notice the file was replaced */
#define WRITE_FAILED_RECENT_MS 5000  /* /api/health: degraded this long after a failed write */
#define REOPEN_BACKOFF_MAX_MS 10000  /* a full or failing disk: reopen at most this rarely */
#define CACHE_JOURNAL_LIMIT 67108864 /* PRAGMA journal_size_limit: 64 MiB */
#define CACHE_WAL_TRUNCATE_AT 1048576 /* cache_checkpoint empties a WAL past 1 MiB */
#define SNAPSHOT_LEASE_MS 60000     /* a snapshot being taken: others wait at most this */
#define SNAPSHOT_INLINE_MAX_BYTES (4 << 20)  /* larger tables: the syncer takes their snapshot */
#define SNAPSHOT_SIZE_RECHECK_MS 10000
#define SNAPSHOT_CHUNK 2000            /* rows merged (or evicted) a transaction */
#define FILL_WAIT_MS 20                /* a fill waits this long for the write lock, then skips */
#define CACHE_BUSY_MS 2000             /* any other use waits this long for a lock */
#define SNAPSHOT_TOO_LARGE_RETRY_MS 60000
#define CACHE_MAX_ROWS_DEFAULT 500000
#define CACHE_STR_(x) #x
#define CACHE_STR(x) CACHE_STR_(x)

/* The statements each table has (st[t][kind]). */
enum stmt_kind { S_GET = 0, S_PUT, S_DEL, S_LIST, S_COUNT, S_CLEAR, S_ROWS, S_HAS, S_TOUCH, S_NKIND };

struct cache {
	char *path;                  /* NULL: disabled */
	long long max_age_ms;
	bool write_through;
	sqlite3 *db;
	dev_t dev;
	ino_t ino;
	long long next_open_ms;
	long long next_stat_ms;      /* when to look at the file again (cache_recheck: now) */
	long long next_header_ms;    /* when to check its header again */
	int watch_fd;                /* inotify on the directory, or -1: stat per request */
	long long reopen_backoff_ms; /* after write failures (full disk): doubles, reset by a write */
	sqlite3_stmt *st[CACHE_NTABLES][S_NKIND];
	sqlite3_stmt *st_state, *st_table, *st_bump, *st_begin, *st_end, *st_tomb, *st_tomb_check;
	unsigned opens;
	bool coherent;
	int64_t outage_since;
	bool listener_connected;
	int64_t listener_since;
	int64_t heartbeat;           /* the syncer's last, as read_state saw it */
	bool wal;                    /* the file is in WAL mode */
	bool shm_mapped;             /* SQLite has mapped the WAL index (a read was made) */
	struct cache_memo memo;      /* the last snapshot reads (cache_memo.h) */
	bool large[CACHE_NTABLES];   /* too large for a request to take its snapshot */
	int64_t too_large_at[CACHE_NTABLES];  /* more rows than max_rows: no snapshot (unix ms) */
	long max_rows;               /* rows kept per table ([cache] max_rows) */
	int64_t size_checked_ms[CACHE_NTABLES];
};

/* ---- cache_file.c: the handle, statements, rows, transactions ---- */

/* Ready to use: open, and still the file at path (checked at most once a
 * second); reopens or rebuilds a missing or broken file. */
bool cx_usable(struct cache *c);
/* Whether the handle's file is still the one at path (a stat); if not,
 * the handle is closed, to reopen at the next use. For writers, after a
 * commit: a write to a file deleted meanwhile is lost with it. */
bool cx_same_file(struct cache *c);
/* An SQLite error rc on table t (-1: none): count it; when it says the file
 * is gone or broken, drop the handle (finalizing every statement: reset
 * yours first) so the next use rebuilds the file. */
void cx_fail(struct cache *c, int t, int rc);
/* Run SQL text; BEGIN IMMEDIATE, COMMIT, ROLLBACK. 0 or -1 (cx_fail'ed). */
int cx_exec(struct cache *c, const char *sql);
int cx_begin(struct cache *c);
/* BEGIN IMMEDIATE for a fill (a copy the cache may as well not keep):
 * waits at most FILL_WAIT_MS for the write lock, so that a request is not
 * held behind another process's long write. 0, 1 when busy (nothing
 * begun, nothing logged), -1 on an error (cx_fail'ed). */
int cx_begin_fill(struct cache *c);
/* Run SQL text waiting at most wait_ms for a lock: 0, 1 when it stayed
 * busy (nothing done, nothing logged), -1 on an error (cx_fail'ed). */
int cx_exec_wait(struct cache *c, const char *sql, int wait_ms);
int cx_commit(struct cache *c);
void cx_rollback(struct cache *c);
/* One read transaction (a single WAL read lock) around several reads. */
bool cx_read_begin(struct cache *c);
void cx_read_end(struct cache *c);

/* A table's bookkeeping row in cache_tables. */
struct cx_tstate {
	bool complete;               /* the snapshot holds every PostgreSQL row */
	int64_t synced_at;           /* when it was taken (unix ms) */
	uint64_t gen;                /* moves on with every invalidation */
	int64_t refresh_until;       /* a refresh's lease (unix ms): someone is taking it */
	int64_t refresh_pid;         /* who */
	int64_t wanted_at;           /* a reader asked the syncer for a new snapshot */
};
int cx_table_state(struct cache *c, int t, struct cx_tstate *ts);
/* Move the generation on (keep_complete false also ends the snapshot). */
int cx_bump(struct cache *c, int t, bool keep_complete);
int cx_put_row(struct cache *c, int t, const struct cache_row *row, int64_t cached_at);
/* Rows deleted, or -1. */
int cx_del_row(struct cache *c, int t, const char *key);
/* 1 when key is cached in table t (not credentials), 0 when not, or -1. */
int cx_has_row(struct cache *c, int t, const char *key);
/* Record that credentials under key (token hash, user id, '*') changed. */
int cx_tombstone(struct cache *c, const char *key);
/* Drop key (NULL: every row) of table t, in the caller's transaction:
 * the generation moves on, a whole-table drop ends the snapshot, and a
 * credential leaves a tombstone. cx_drop_now: in a transaction of its own.
 * 0 or -1. */
int cx_drop(struct cache *c, int t, const char *key);
int cx_drop_now(struct cache *c, int t, const char *key);
/* The file's version (the WAL-index header); false when not known now. */
bool cx_file_version(struct cache *c, unsigned char v[CACHE_MEMO_VERSION]);
/* The index of column name in the table's cols, or -1; how many it has. */
int cx_col_index(const struct cache_tabledef *d, const char *name);
int cx_ncols(const struct cache_tabledef *d);

/* ---- cache_policy.c ---- */

/* Take the table's snapshot: PostgreSQL's rows into a temporary table,
 * then merged in one short transaction (ends the lease). rows (may be
 * NULL) gets how many. A bloqr_err; BLOQR_ECONFLICT when the table was
 * invalidated meanwhile. */
int cx_snapshot_refresh(struct cache *c, struct pg *pg, int t, long *rows);

#endif
