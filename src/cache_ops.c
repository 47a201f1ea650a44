/* Operator paths of the L1 cache: rebuild, invalidate, verify, status,
 * vacuum (the admin endpoints and bloqr-admin cache). */
#include "cache_int.h"

#include <stdio.h>
#include <string.h>

int cache_rebuild(struct cache *c, struct pg *pg, long rows[CACHE_NTABLES])
{
	int rc;

	if (!cx_usable(c))
		return BLOQR_ECACHE;
	/* Starting over: the position in the change log may belong to another
	 * history of the database (one restored from a backup). The syncer
	 * writes its own again with its next heartbeat. */
	if (cx_exec(c, "UPDATE cache_state SET pg_position = NULL WHERE id = 1") < 0)
		return BLOQR_ECACHE;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		rows[t] = 0;
		if (cache_defs[t] && cache_defs[t]->all) {
			/* A write on this host while PostgreSQL was read: again. */
			int tries = 0;
			do
				rc = cx_snapshot_refresh(c, pg, t, &rows[t]);
			while (rc == BLOQR_ECONFLICT && ++tries < 5);
		} else
			rc = cache_deleted(c, t, NULL);
		if (rc != BLOQR_OK)
			return rc;
	}
	return BLOQR_OK;
}

long cache_invalidate(struct cache *c, enum cache_tbl t, const char *key)
{
	long n = 0;
	sqlite3_stmt *s;

	if (!cx_usable(c))
		return -1;
	if (key) {
		if (cx_begin(c) < 0)
			return -1;
		if ((n = cx_del_row(c, t, key)) < 0 || cx_bump(c, t, false) < 0 || cx_commit(c) < 0) {
			cx_rollback(c);
			return -1;
		}
		return n;
	}
	s = c->st[t][S_ROWS];
	sqlite3_reset(s);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return cache_deleted(c, t, NULL) == BLOQR_OK ? n : -1;
}

int cache_table_status(struct cache *c, enum cache_tbl t, struct cache_table_status *st)
{
	struct cx_tstate ts;
	sqlite3_stmt *s;
	int rc;

	memset(st, 0, sizeof *st);
	if (!cx_usable(c))
		return -1;
	s = c->st[t][S_ROWS];
	sqlite3_reset(s);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		st->rows = (long)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cx_fail(c, t, rc);
		return -1;
	}
	if (cx_table_state(c, t, &ts) < 0)
		return -1;
	st->last_full_sync_ms = ts.synced_at;
	return 0;
}

long cache_verify(struct cache *c, struct pg *pg, struct buf *report)
{
	long diffs = 0;

	if (!cx_usable(c))
		return -1;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		const struct cache_tabledef *d = cache_defs[t];
		char sql[200];
		sqlite3_stmt *s = NULL;
		int rc;

		if (d == NULL)
			continue;
		snprintf(sql, sizeof sql, "SELECT %s, body FROM %s ORDER BY %s", d->key_col, cache_sqlite_name(t), d->key_col);
		if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
			cx_fail(c, t, sqlite3_errcode(c->db));
			return -1;
		}
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const char *key = (const char *)sqlite3_column_text(s, 0);
			const char *body = (const char *)sqlite3_column_text(s, 1);
			struct cache_row row;
			int f;

			if (key == NULL || body == NULL) {
				buf_printf(report, "%s: a damaged row (no key or body)\n", cache_sqlite_name(t));
				diffs++;
				continue;
			}
			memset(&row, 0, sizeof row);
			f = d->fetch(pg, key, &row);
			if (f < 0) {
				sqlite3_finalize(s);
				return -1;
			}
			if (f == 0) {
				buf_printf(report, "%s %s: cached but not in PostgreSQL\n", cache_sqlite_name(t), key);
				diffs++;
			} else if (strcmp(row.body, body) != 0) {
				buf_printf(report, "%s %s: cached copy differs from PostgreSQL\n", cache_sqlite_name(t), key);
				diffs++;
			}
			cache_row_free(&row);
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE) {
			cx_fail(c, t, rc);
			return -1;
		}
	}
	return diffs;
}

long cache_sqlite_tables(struct cache *c)
{
	sqlite3_stmt *s = NULL;
	long n = -1;
	int rc;

	if (!cx_usable(c))
		return -1;
	rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (n < 0)
		cx_fail(c, -1, rc);
	return n;
}

int cache_vacuum(struct cache *c)
{
	if (!cx_usable(c))
		return -1;
	return cx_exec(c, "VACUUM");
}
