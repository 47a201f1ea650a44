/* The L1 cache's read and write policy: read-through of rows, snapshots
 * of whole tables for lists and counts (with the per-process memo), and
 * the writes that follow a PostgreSQL commit, guarded by the table's
 * generation so that an old copy never overwrites a newer one. */
#include "cache_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "text.h"

uint64_t cache_gen(struct cache *c, enum cache_tbl t)
{
	struct cx_tstate ts;

	if (!cx_usable(c) || cx_table_state(c, t, &ts) < 0)
		return UINT64_MAX;   /* matches nothing: a later write-through drops */
	return ts.gen;
}

/* Store row if the table's generation is still gen (nothing was
 * invalidated since the caller read PostgreSQL), else drop the key and end
 * the snapshot: the copy may be older than what an invalidation already
 * applied, and a complete snapshot must not lack the row either. */
static void store_checked(struct cache *c, int t, const struct cache_row *row, uint64_t gen, bool fill)
{
	struct cx_tstate ts;

	if (fill ? cx_begin_fill(c) != 0 : cx_begin(c) < 0)
		return;
	if (cx_table_state(c, t, &ts) < 0)
		goto fail;
	if (ts.gen == gen) {
		if (cx_put_row(c, t, row, text_now_ms()) < 0)
			goto fail;
	} else if (cx_del_row(c, t, row->key) < 0 || cx_bump(c, t, false) < 0) {
		/* Without the row the snapshot is no longer whole: the next list
		 * reads PostgreSQL and refills it. */
		goto fail;
	}
	cx_commit(c);
	return;
fail:
	cx_rollback(c);
}

/* How recent a row's read_at is kept: a write at most this often per row. */
static int64_t touch_interval_ms(const struct cache *c)
{
	int64_t g = c->max_age_ms / 10;

	return g < 1000 ? 1000 : g > 60000 ? 60000 : g;
}

/* Note that key was read (for eviction), unless it was lately: never
 * waits for the write lock (a busy file skips it). */
static void touch(struct cache *c, int t, const char *key, int64_t read_at)
{
	sqlite3_stmt *s = c->st[t][S_TOUCH];
	int64_t now = text_now_ms();
	int rc;

	if (s == NULL || now - read_at < touch_interval_ms(c))
		return;
	sqlite3_busy_timeout(c->db, 0);
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_busy_timeout(c->db, CACHE_BUSY_MS);
	if (rc != SQLITE_DONE && (rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
		cx_fail(c, t, rc);
}

static bool expired(const char *exp)
{
	char now[25];

	if (exp == NULL)
		return false;
	text_iso_time_ms(text_now_ms(), now);
	return strcmp(exp, now) <= 0;
}

int cache_get(struct cache *c, struct pg *pg, enum cache_tbl t, const char *key,
    char **body, enum cache_outcome *how)
{
	const struct cache_tabledef *d = cache_defs[t];
	struct cache_row row;
	char *cached = NULL;
	bool have = false, cached_expired = false, fresh = false;
	int64_t read_at = -1;
	uint64_t gen = UINT64_MAX;
	int rc;

	*body = NULL;
	memset(&row, 0, sizeof row);
	/* One read transaction: the row and the listener's state together. */
	if (cx_read_begin(c)) {
		sqlite3_stmt *s = c->st[t][S_GET];
		bool coherent;
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			const char *b = (const char *)sqlite3_column_text(s, 0);
			have = true;
			cached = b ? strdup(b) : NULL;   /* NULL: a damaged row, not ours */
			fresh = text_now_ms() - sqlite3_column_int64(s, 1) <= c->max_age_ms;
			cached_expired = expired((const char *)sqlite3_column_text(s, 2));
			if (sqlite3_column_type(s, 3) != SQLITE_NULL)
				read_at = sqlite3_column_int64(s, 3);
			if (cached == NULL)
				have = false;
		} else if (rc != SQLITE_DONE) {
			cx_fail(c, t, rc);
		}
		if (c->db)
			sqlite3_reset(s);
		coherent = have && fresh && cache_coherent(c);
		cx_read_end(c);
		if (coherent) {
			if (read_at >= 0)
				touch(c, t, key, read_at);
			metrics_cache(t, METRICS_CACHE_HIT);
			*how = CACHE_HIT;
			if (cached_expired)
				free(cached);
			else
				*body = cached;
			return 0;
		}
		if (c->db)
			gen = cache_gen(c, t);
	}

	rc = d->fetch(pg, key, &row);
	if (rc < 0) {
		if (rc == PG_EUNAVAIL && have) {
			metrics_cache(t, METRICS_CACHE_STALE);
			*how = CACHE_STALE;
			if (cached_expired)
				free(cached);
			else
				*body = cached;
			return 0;
		}
		free(cached);
		return rc;
	}
	free(cached);
	*how = c && c->db ? CACHE_MISS : CACHE_BYPASS;
	if (*how == CACHE_MISS)
		metrics_cache(t, METRICS_CACHE_MISS);
	if (rc == 0) {
		if (have && c->db)
			cx_del_row(c, t, key);
		return 0;
	}
	if (c && c->db)
		store_checked(c, t, &row, gen, true);   /* a MISS: the next read can fill it */
	if (!(d->expires_col && cx_col_index(d, d->expires_col) >= 0 &&
	    expired(row.cols[cx_col_index(d, d->expires_col)]))) {
		*body = row.body;
		row.body = NULL;
	}
	cache_row_free(&row);
	return 0;
}

/* Bind a list/count statement's filters: one parameter per column. */
static int bind_filters(sqlite3_stmt *s, const struct cache_tabledef *d, const struct cache_filter *f, int nf)
{
	int n = cx_ncols(d);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	for (int k = 0; k < nf; k++) {
		int i = cx_col_index(d, f[k].col);
		if (i < 0)
			return -1;   /* a filter this table cannot answer */
		if (f[k].value)
			sqlite3_bind_text(s, i + 1, f[k].value, -1, SQLITE_STATIC);
	}
	return n;
}

static int list_sqlite(struct cache *c, int t, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count)
{
	sqlite3_stmt *s = c->st[t][S_LIST];
	int n = bind_filters(s, cache_defs[t], f, nf), rc;
	size_t start = out->len;

	*count = 0;
	if (n < 0)
		return -1;
	sqlite3_bind_int64(s, n + 1, limit < 0 ? 0 : limit);   /* SQLite: negative = no limit */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *b = sqlite3_column_text(s, 0);
		if (b == NULL) {
			rc = SQLITE_CORRUPT;   /* bodies are NOT NULL: the file is damaged */
			break;
		}
		if (*count > 0)
			buf_append(out, ",", 1);
		buf_append(out, b, (size_t)sqlite3_column_bytes(s, 0));
		(*count)++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		out->len = start;
		cx_fail(c, t, rc);
		return -1;
	}
	return 0;
}

static int count_sqlite(struct cache *c, int t, const struct cache_filter *f, int nf, long *out)
{
	sqlite3_stmt *s = c->st[t][S_COUNT];
	int rc;

	if (bind_filters(s, cache_defs[t], f, nf) < 0)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = (long)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cx_fail(c, t, rc);
		return -1;
	}
	return 0;
}

/* ---- taking a snapshot ----
 *
 * PostgreSQL's rows are streamed into a temporary table of the process's
 * own connection (TEMP: no lock on the cache file, nothing in its WAL),
 * then merged into the cached table in one short transaction that writes
 * only what differs. Meanwhile every reader keeps the previous snapshot.
 * The merge keeps what changed after the read began: a row cached since
 * then (a write-through, a notification applied) stays as it is; and if
 * the table's generation moved (a row dropped, a snapshot ended), the
 * merge is given up, to be tried again. */

struct snap_ctx {
	struct cache *c;
	sqlite3_stmt *ins;           /* INSERT INTO temp.snap_<table> */
	int t;
	int64_t now;
	long rows;
};

/* pg_each's callback: keep row i of r in the temporary table. */
static int snap_row(void *ctx, const PGresult *r, int i)
{
	struct snap_ctx *sc = ctx;
	struct cache_row row;
	int n = cx_ncols(cache_defs[sc->t]), rc;

	/* More rows than a table may keep: no snapshot of it (lists go to
	 * PostgreSQL), and the syncer does not try again for a while. */
	if (sc->rows >= sc->c->max_rows) {
		sc->c->too_large_at[sc->t] = text_now_ms();
		return BLOQR_ECONFLICT;
	}
	if (cache_defs[sc->t]->row(r, i, &row) < 0)
		return BLOQR_ENOMEM;
	sqlite3_reset(sc->ins);
	sqlite3_bind_text(sc->ins, 1, row.key, -1, SQLITE_STATIC);
	for (int k = 0; k < n; k++)
		sqlite3_bind_text(sc->ins, k + 2, row.cols[k], -1, SQLITE_STATIC);
	sqlite3_bind_text(sc->ins, n + 2, row.body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(sc->ins, n + 3, sc->now);
	rc = sqlite3_step(sc->ins);
	sqlite3_reset(sc->ins);
	sqlite3_clear_bindings(sc->ins);
	cache_row_free(&row);
	if (rc != SQLITE_DONE)
		return BLOQR_ECACHE;   /* never -1: pg_each would take it for "unavailable" */
	sc->rows++;
	return 0;
}

/* The temporary table's DDL and INSERT; the merge's steps: rows of one
 * chunk of the temporary table (?1 ≤ rowid < ?2) that differ are written,
 * then rows gone from PostgreSQL go (unless cached since) and the table
 * is marked complete. Nothing else is touched. */
static void snap_sql(int t, struct buf *ddl, struct buf *ins, struct buf *chunk, struct buf *finish, int64_t since)
{
	const struct cache_tabledef *d = cache_defs[t];
	const char *name = cache_sqlite_name(t);
	int n = cx_ncols(d);

	buf_printf(ddl, "CREATE TEMP TABLE IF NOT EXISTS snap_%s (%s TEXT PRIMARY KEY", name, d->key_col);
	buf_printf(ins, "INSERT INTO temp.snap_%s (%s", name, d->key_col);
	buf_printf(chunk, "INSERT OR REPLACE INTO main.%s (%s", name, d->key_col);
	for (int i = 0; i < n; i++) {
		buf_printf(ddl, ", \"%s\"", d->cols[i]);
		buf_printf(ins, ", \"%s\"", d->cols[i]);
		buf_printf(chunk, ", \"%s\"", d->cols[i]);
	}
	buf_puts(ddl, ", body TEXT NOT NULL, cached_at INTEGER NOT NULL); ");
	buf_printf(ddl, "DELETE FROM temp.snap_%s;", name);
	buf_puts(ins, ", body, cached_at) VALUES (?1");
	for (int i = 0; i < n + 2; i++)
		buf_printf(ins, ", ?%d", i + 2);
	buf_puts(ins, ")");
	buf_printf(chunk, ", body, cached_at) SELECT * FROM temp.snap_%s s WHERE s.rowid >= ?1 AND s.rowid < ?2 "
	    "AND NOT EXISTS (SELECT 1 FROM main.%s m WHERE m.%s = s.%s AND (m.cached_at >= %lld OR m.body = s.body))",
	    name, name, d->key_col, d->key_col, (long long)since);
	buf_printf(finish, "DELETE FROM main.%s WHERE cached_at < %lld AND %s NOT IN (SELECT %s FROM temp.snap_%s); ",
	    name, (long long)since, d->key_col, d->key_col, name);
	buf_printf(finish, "UPDATE cache_tables SET complete = 1, synced_at = %lld, gen = gen + 1, "
	    "refresh_until = 0, refresh_pid = 0 WHERE name = '%s';", (long long)since, name);
}

/* Begin one step of the merge: the write lock, and the table not
 * invalidated since PostgreSQL was read. A bloqr_err. */
static int merge_begin(struct cache *c, int t, uint64_t gen0)
{
	struct cx_tstate ts;

	if (cx_begin(c) < 0)
		return BLOQR_ECACHE;
	if (cx_table_state(c, t, &ts) < 0) {
		cx_rollback(c);
		return BLOQR_ECACHE;
	}
	if (ts.gen != gen0) {
		cx_rollback(c);
		return BLOQR_ECONFLICT;
	}
	return BLOQR_OK;
}

/* Merge the temporary table into the cached one, SNAPSHOT_CHUNK rows a
 * transaction: no write lock is held for long, and between them the WAL
 * is checkpointed so that it is reused rather than grown by the whole
 * table. */
static int snap_merge(struct cache *c, int t, uint64_t gen0, const struct buf *chunk, const struct buf *finish,
    long rows)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(c->db, chunk->data, -1, &st, NULL) != SQLITE_OK) {
		log_warn("cache: prepare failed: %s", sqlite3_errmsg(c->db));
		return BLOQR_ECACHE;
	}
	for (long lo = 1; lo <= rows; lo += SNAPSHOT_CHUNK) {
		if ((rc = merge_begin(c, t, gen0)) != BLOQR_OK)
			goto out;
		sqlite3_bind_int64(st, 1, lo);
		sqlite3_bind_int64(st, 2, lo + SNAPSHOT_CHUNK);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			cx_rollback(c);
			cx_fail(c, t, rc);
			rc = BLOQR_ECACHE;
			goto out;
		}
		if (cx_commit(c) < 0) {
			rc = BLOQR_ECACHE;
			goto out;
		}
		if (c->wal)
			sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	}
	if ((rc = merge_begin(c, t, gen0)) != BLOQR_OK)
		goto out;
	rc = cx_exec(c, finish->data) == 0 && cx_commit(c) == 0 ? BLOQR_OK : BLOQR_ECACHE;
	if (rc != BLOQR_OK)
		cx_rollback(c);
out:
	sqlite3_finalize(st);
	return rc;
}

/* Take table t's snapshot from PostgreSQL; rows (may be NULL) gets how
 * many rows it has. A bloqr_err; BLOQR_ECONFLICT when the table changed
 * on this host while PostgreSQL was read (try again later). */
int cx_snapshot_refresh(struct cache *c, struct pg *pg, int t, long *rows)
{
	struct snap_ctx sc = { c, NULL, t, text_now_ms(), 0 };
	struct buf ddl = BUF_INIT, ins = BUF_INIT, chunk = BUF_INIT, finish = BUF_INIT;
	struct cx_tstate ts;
	char sql[160];
	uint64_t gen0;
	int rc = BLOQR_ECACHE;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL)
		return 0;
	if (cx_table_state(c, t, &ts) < 0)
		return BLOQR_ECACHE;
	gen0 = ts.gen;
	snap_sql(t, &ddl, &ins, &chunk, &finish, sc.now);
	if (ddl.oom || ins.oom || chunk.oom || finish.oom || cx_exec(c, ddl.data) < 0)
		goto out;
	if (sqlite3_prepare_v2(c->db, ins.data, -1, &sc.ins, NULL) != SQLITE_OK) {
		log_warn("cache: prepare failed: %s", sqlite3_errmsg(c->db));
		goto out;
	}
	/* A deferred transaction that writes only TEMP takes no lock on the file. */
	if (cx_exec(c, "BEGIN") < 0)
		goto out;
	rc = pg_each(pg, cache_defs[t]->all, NULL, snap_row, &sc);
	if (rc != PG_OK || c->db == NULL || cx_commit(c) < 0) {
		cx_rollback(c);
		rc = rc != PG_OK ? rc : BLOQR_ECACHE;
		goto out;
	}
	rc = snap_merge(c, t, gen0, &chunk, &finish, sc.rows);
	if (rc == BLOQR_OK && rows)
		*rows = sc.rows;
out:
	sqlite3_finalize(sc.ins);
	if (c->db) {
		snprintf(sql, sizeof sql, "DELETE FROM temp.snap_%s", cache_sqlite_name(t));
		sqlite3_exec(c->db, sql, NULL, NULL, NULL);   /* give the pages back */
	}
	buf_free(&ddl);
	buf_free(&ins);
	buf_free(&chunk);
	buf_free(&finish);
	return rc;
}

/* A write of cache_tables that must not wait long: a reader asking for a
 * refresh (wait_ms 0), a process taking the lease. 1 when a row changed,
 * 0 when none did or the file stayed busy, -1 on another error. */
static int quick_update(struct cache *c, const char *sql, int wait_ms)
{
	int rc = cx_exec_wait(c, sql, wait_ms);

	if (rc != 0)
		return rc < 0 ? -1 : 0;
	return sqlite3_changes(c->db) > 0;
}

/* Take table t's refresh lease unless another live process holds it
 * (compare and set: the lease as it was read, ran out, or its holder is
 * gone). */
static bool lease(struct cache *c, int t)
{
	struct cx_tstate ts;
	char sql[300];
	int64_t now = text_now_ms();

	if (cx_table_state(c, t, &ts) < 0)
		return false;
	if (ts.refresh_until >= now && ts.refresh_pid > 0 && ts.refresh_pid != getpid() &&
	    !(kill((pid_t)ts.refresh_pid, 0) < 0 && errno == ESRCH))
		return false;
	snprintf(sql, sizeof sql, "UPDATE cache_tables SET refresh_until = %lld, refresh_pid = %ld "
	    "WHERE name = '%s' AND refresh_until = %lld AND refresh_pid = %lld",
	    (long long)(now + SNAPSHOT_LEASE_MS), (long)getpid(), cache_sqlite_name(t),
	    (long long)ts.refresh_until, (long long)ts.refresh_pid);
	/* Another process's short write (a batch of notifications) is waited
	 * for; a long one means this is no time for a snapshot anyway. */
	return quick_update(c, sql, 200) == 1;
}

static void lease_release(struct cache *c, int t)
{
	char sql[160];

	if (c->db == NULL)
		return;
	snprintf(sql, sizeof sql, "UPDATE cache_tables SET refresh_until = 0, refresh_pid = 0 WHERE name = '%s'",
	    cache_sqlite_name(t));
	quick_update(c, sql, CACHE_BUSY_MS);   /* else it would stand until it runs out */
}

static void want(struct cache *c, int t)
{
	char sql[160];

	snprintf(sql, sizeof sql, "UPDATE cache_tables SET wanted_at = %lld WHERE name = '%s'",
	    (long long)text_now_ms(), cache_sqlite_name(t));
	quick_update(c, sql, 0);
}

/* The size of table t in PostgreSQL (bytes): whether a request may take
 * its snapshot itself or leaves it to the syncer. -1 when unknown. */
static long long pg_table_bytes(struct pg *pg, int t)
{
	static const struct pg_stmt st = { "cache_table_bytes", "SELECT pg_relation_size(to_regclass($1))", 1, true };
	const char *params[] = { cache_defs[t]->name };
	PGresult *r;
	long long n = -1;
	int err;

	r = pg_query(pg, &st, params, &err);
	if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		n = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

/* After a MISS of a snapshot table: one process of the host takes the
 * snapshot, the others answer from PostgreSQL meanwhile. A small table
 * is taken at once by this request; a large one is left to the syncer
 * (the read asked for it: want), off the request path. */
static void refresh_after_miss(struct cache *c, struct pg *pg, int t)
{
	int64_t now = text_now_ms();

	if (!cx_usable(c))
		return;
	if (now - c->size_checked_ms[t] > SNAPSHOT_SIZE_RECHECK_MS) {
		long long bytes = pg_table_bytes(pg, t);
		c->large[t] = bytes < 0 || bytes > SNAPSHOT_INLINE_MAX_BYTES;
		c->size_checked_ms[t] = now;
	}
	if (c->large[t] || !lease(c, t))
		return;
	if (cx_snapshot_refresh(c, pg, t, NULL) != 0)
		lease_release(c, t);
}

int cache_refresh_snapshots(struct cache *c, struct pg *pg)
{
	int done = 0;

	if (!cx_usable(c) || !cache_coherent(c))
		return 0;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		struct cx_tstate ts;
		int64_t now = text_now_ms();
		bool due;

		if (cache_defs[t] == NULL || cache_defs[t]->all == NULL || cx_table_state(c, t, &ts) < 0 ||
		    (c->too_large_at[t] && now - c->too_large_at[t] < SNAPSHOT_TOO_LARGE_RETRY_MS))
			continue;
		/* Asked for since the last snapshot, and not being taken now. */
		due = ts.wanted_at > ts.synced_at &&
		    (!ts.complete || now - ts.synced_at >= c->max_age_ms / 2);
		if (!due || !lease(c, t))
			continue;
		if (cx_snapshot_refresh(c, pg, t, NULL) == 0)
			done++;
		else
			lease_release(c, t);
	}
	return done;
}

/* How long past max_age a snapshot still answers while a new one is
 * taken: a tenth of max_age, at most 30 s (max_age 0: none). */
static int64_t snapshot_grace_ms(const struct cache *c)
{
	int64_t g = c->max_age_ms / 10;

	return g > 30000 ? 30000 : g;
}

/* Whether the table's snapshot may answer now (and, for STALE, at all):
 * fresh means within max_age, or a short grace past it while a new one
 * is being taken. *synced_at (when given) gets the time it was taken;
 * *wanted (when given) whether the syncer should be asked for a new one:
 * the snapshot is missing or past half its max_age, and nobody asked in
 * the last second. */
static bool snapshot_ok(struct cache *c, int t, bool need_fresh, int64_t *synced_at, bool *wanted)
{
	struct cx_tstate ts;
	int64_t now, age;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL || !cx_usable(c) ||
	    cx_table_state(c, t, &ts) < 0)
		return false;
	now = text_now_ms();
	age = now - ts.synced_at;
	if (wanted)
		*wanted = now - ts.wanted_at > 1000 && (!ts.complete || age >= c->max_age_ms / 2);
	if (!ts.complete)
		return false;
	if (synced_at)
		*synced_at = ts.synced_at;
	if (!need_fresh)
		return true;
	return age <= c->max_age_ms + snapshot_grace_ms(c);
}

/* A read of a snapshot table: the same steps whether it lists or counts. */
struct snap_read {
	const struct cache_filter *f;
	int nf;
	long limit;
	struct buf *out;            /* list: rows appended here */
	long *n;                    /* list: rows; count: the count */
	bool list;                  /* a list (else a count) */
};

static int snap_sqlite(struct cache *c, int t, const struct snap_read *r)
{
	return r->list ? list_sqlite(c, t, r->f, r->nf, r->limit, r->out, r->n)
	    : count_sqlite(c, t, r->f, r->nf, r->n);
}

/* What identifies a snapshot read: table, kind, limit and filters. */
static void memo_key(struct buf *k, int t, const struct snap_read *r)
{
	buf_reset(k);
	buf_printf(k, "%d %c %ld", t, r->list ? 'l' : 'c', r->limit);
	for (int i = 0; i < r->nf; i++) {
		buf_append(k, "", 1);
		buf_puts(k, r->f[i].col);
		buf_append(k, r->f[i].value ? "=" : "~", 2);   /* "=" and its NUL, or "~" */
		if (r->f[i].value)
			buf_append(k, r->f[i].value, strlen(r->f[i].value) + 1);
	}
}

static int read_through_snapshot(struct cache *c, struct pg *pg, int t, const struct snap_read *r,
    enum cache_outcome *how)
{
	size_t start = r->out ? r->out->len : 0;
	unsigned char version[CACHE_MEMO_VERSION];
	struct buf key = BUF_INIT;
	int64_t synced_at = 0;
	bool hit = false, versioned, wanted = false;
	int rc;

	/* The same read at the same file version, within its time: the same
	 * answer, without SQLite. The version is taken before the read below,
	 * so a commit racing it can only make the memo look older. */
	versioned = cx_usable(c) && cx_file_version(c, version);
	if (versioned) {
		memo_key(&key, t, r);
		if (cache_memo_get(&c->memo, &key, version, text_now_ms(), r->out, r->n)) {
			buf_free(&key);
			metrics_cache(t, METRICS_CACHE_HIT);
			*how = CACHE_HIT;
			return 0;
		}
	}
	if (cx_read_begin(c)) {
		hit = cache_coherent(c) && snapshot_ok(c, t, true, &synced_at, &wanted) && snap_sqlite(c, t, r) == 0;
		cx_read_end(c);
		if (wanted && c->db)
			want(c, t);
	}
	if (hit && c->db) {
		/* Memoized no later than half its max_age while younger: past
		 * that, reads go to the file and ask for a new snapshot. */
		int64_t half = synced_at + c->max_age_ms / 2, now = text_now_ms();
		int64_t until = now < half ? half : synced_at + c->max_age_ms + snapshot_grace_ms(c);
		int64_t hb_until = c->heartbeat + HEARTBEAT_STALE_MS - 1;
		if (versioned)
			cache_memo_put(&c->memo, &key, version, until < hb_until ? until : hb_until,
			    r->out ? r->out->data + start : NULL, r->out ? r->out->len - start : 0, *r->n);
		c->shm_mapped = true;
	}
	buf_free(&key);
	if (hit) {
		metrics_cache(t, METRICS_CACHE_HIT);
		*how = CACHE_HIT;
		return 0;
	}
	{
		const struct cache_tabledef *d = cache_defs[t];
		if (r->list ? d->pg_list == NULL : d->pg_count == NULL)
			return BLOQR_EBUG;   /* a table that declares no such read */
		rc = r->list ? d->pg_list(pg, r->f, r->nf, r->limit, r->out, r->n) : d->pg_count(pg, r->f, r->nf, r->n);
	}
	if (rc == PG_EUNAVAIL) {
		if (r->out)
			r->out->len = start;
		if (snapshot_ok(c, t, false, NULL, NULL) && snap_sqlite(c, t, r) == 0) {
			metrics_cache(t, METRICS_CACHE_STALE);
			*how = CACHE_STALE;
			return 0;
		}
		return rc;
	}
	if (rc != PG_OK)
		return rc;
	if (c && c->db) {
		*how = CACHE_MISS;
		metrics_cache(t, METRICS_CACHE_MISS);
		refresh_after_miss(c, pg, t);
	} else {
		*how = CACHE_BYPASS;
	}
	return 0;
}

int cache_list(struct cache *c, struct pg *pg, enum cache_tbl t, const struct cache_filter *f, int nf,
    long limit, struct buf *out, long *count, enum cache_outcome *how)
{
	const struct snap_read r = { f, nf, limit, out, count, true };

	return read_through_snapshot(c, pg, t, &r, how);
}

int cache_count(struct cache *c, struct pg *pg, enum cache_tbl t, const struct cache_filter *f, int nf,
    long *n, enum cache_outcome *how)
{
	const struct snap_read r = { f, nf, 0, NULL, n, false };

	return read_through_snapshot(c, pg, t, &r, how);
}

/* After a write that follows a PostgreSQL commit: if the file was deleted
 * or replaced meanwhile, the write went down with it, and the new file
 * may hold (or be about to take, from a read that began before the
 * commit) the old row. Dropping the key there moves its generation on,
 * which also refuses that read's copy: read-your-writes holds. */
static int written_to_this_file(struct cache *c, int t, const char *key)
{
	if (c->db == NULL || cx_same_file(c))
		return 0;
	if (!cx_usable(c) || cx_drop_now(c, t, key) < 0)
		return -1;
	return 0;
}

void cache_written(struct cache *c, enum cache_tbl t, const struct cache_row *row, uint64_t gen)
{
	if (!cx_usable(c))
		return;
	if (c->write_through) {
		store_checked(c, t, row, gen, false);
	} else if (cx_begin(c) == 0) {
		if (cx_del_row(c, t, row->key) < 0 || cx_bump(c, t, false) < 0)
			cx_rollback(c);
		else
			cx_commit(c);
	}
	written_to_this_file(c, t, row->key);
}

int cache_deleted(struct cache *c, enum cache_tbl t, const char *key)
{
	if (!cx_usable(c))
		return c && c->path ? BLOQR_ECACHE : BLOQR_OK;
	if (cx_drop_now(c, t, key) < 0 || written_to_this_file(c, t, key) < 0)
		return BLOQR_ECACHE;
	return BLOQR_OK;
}

void cache_set_max_rows(struct cache *c, long max_rows)
{
	if (c && max_rows > 0)
		c->max_rows = max_rows;
}

long cache_evict(struct cache *c)
{
	char sql[300];
	long evicted = 0;

	if (!cx_usable(c))
		return 0;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		const struct cache_tabledef *d = cache_defs[t];
		const char *name = cache_sqlite_name(t);
		sqlite3_stmt *s = c->st[t][S_ROWS];
		long rows = 0;
		int rc;

		if (d == NULL || d->all != NULL)
			continue;   /* snapshots are kept whole or not at all */
		sqlite3_reset(s);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			rows = (long)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (rc != SQLITE_ROW) {
			cx_fail(c, t, rc);
			return -1;
		}
		/* Down to 95 % of the cap, so that eviction is not a write for
		 * every new row; a few thousand rows a transaction. */
		while (rows > c->max_rows) {
			long n = rows - c->max_rows + c->max_rows / 20;
			if (n > SNAPSHOT_CHUNK)
				n = SNAPSHOT_CHUNK;
			snprintf(sql, sizeof sql, "DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s ORDER BY read_at LIMIT %ld)",
			    name, name, n);
			if (cx_begin(c) < 0)
				return -1;
			if (cx_exec(c, sql) < 0 || cx_bump(c, t, true) < 0 || cx_commit(c) < 0) {
				cx_rollback(c);
				return -1;
			}
			rows -= n;
			evicted += n;
			if (rows <= c->max_rows - c->max_rows / 20)
				break;
		}
	}
	return evicted;
}
