/* The L1 cache's read and write policy: read-through of rows, snapshots
 * of whole tables for lists and counts (with the per-process memo), and
 * the writes that follow a PostgreSQL commit, guarded by the table's
 * generation so that an old copy never overwrites a newer one. */
#include "cache_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static void store_checked(struct cache *c, int t, const struct cache_row *row, uint64_t gen)
{
	struct cx_tstate ts;

	if (cx_begin(c) < 0)
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
		store_checked(c, t, &row, gen);
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

struct snap_ctx {
	struct cache *c;
	int t;
	int64_t now;
	long rows;
};

/* pg_each's callback: store row i of r. */
static int snap_row(void *ctx, const PGresult *r, int i)
{
	struct snap_ctx *sc = ctx;
	struct cache_row row;
	int rc;

	if (cache_defs[sc->t]->row(r, i, &row) < 0)
		return BLOQR_ENOMEM;
	rc = cx_put_row(sc->c, sc->t, &row, sc->now);
	cache_row_free(&row);
	if (rc < 0)
		return BLOQR_ECACHE;   /* never -1: pg_each would take it for "unavailable" */
	sc->rows++;
	return 0;
}

/* Replace the table's rows with every row of PostgreSQL's, in one SQLite
 * transaction. The write lock is taken before PostgreSQL is read, so an
 * invalidation for any later commit is applied after this one. */
int cx_snapshot_refresh(struct cache *c, struct pg *pg, int t, long *rows)
{
	struct snap_ctx sc = { c, t, text_now_ms(), 0 };
	char sql[160];
	int rc;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL)
		return 0;
	if (cx_begin(c) < 0)
		return BLOQR_ECACHE;
	sqlite3_reset(c->st[t][S_CLEAR]);
	if (sqlite3_step(c->st[t][S_CLEAR]) != SQLITE_DONE) {
		rc = sqlite3_errcode(c->db);
		sqlite3_reset(c->st[t][S_CLEAR]);
		cx_rollback(c);
		cx_fail(c, t, rc);
		return BLOQR_ECACHE;
	}
	sqlite3_reset(c->st[t][S_CLEAR]);
	rc = pg_each(pg, cache_defs[t]->all, NULL, snap_row, &sc);
	if (rc != PG_OK || c->db == NULL) {
		cx_rollback(c);
		return rc != PG_OK ? rc : BLOQR_ECACHE;
	}
	snprintf(sql, sizeof sql, "UPDATE cache_tables SET complete = 1, synced_at = %lld, gen = gen + 1 "
	    "WHERE name = '%s'", (long long)sc.now, cache_sqlite_name(t));
	if (cx_exec(c, sql) < 0 || cx_commit(c) < 0) {
		cx_rollback(c);
		return BLOQR_ECACHE;
	}
	if (rows)
		*rows = sc.rows;
	return 0;
}

/* Whether the table's snapshot may answer now (and, for STALE, at all);
 * *synced_at (when given) gets the time it was taken. */
static bool snapshot_ok(struct cache *c, int t, bool need_fresh, int64_t *synced_at)
{
	struct cx_tstate ts;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL || !cx_usable(c) ||
	    cx_table_state(c, t, &ts) < 0 || !ts.complete)
		return false;
	if (synced_at)
		*synced_at = ts.synced_at;
	if (!need_fresh)
		return true;
	return text_now_ms() - ts.synced_at <= c->max_age_ms;
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
	bool hit = false, versioned;
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
		hit = cache_coherent(c) && snapshot_ok(c, t, true, &synced_at) && snap_sqlite(c, t, r) == 0;
		cx_read_end(c);
	}
	if (hit && c->db) {
		int64_t until = synced_at + c->max_age_ms, hb_until = c->heartbeat + HEARTBEAT_STALE_MS - 1;
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
		if (snapshot_ok(c, t, false, NULL) && snap_sqlite(c, t, r) == 0) {
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
		cx_snapshot_refresh(c, pg, t, NULL);
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
		store_checked(c, t, row, gen);
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
