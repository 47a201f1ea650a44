/* The L1 cache's coherence: the invalidation listener's state as every
 * process on the host reads it (cache_state), its heartbeat, and the
 * NOTIFY payloads it applies. */
#include "cache_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "text.h"

static void read_state(struct cache *c)
{
	sqlite3_stmt *s = c->st_state;
	int rc;

	sqlite3_reset(s);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t hb = sqlite3_column_int64(s, 2);
		c->listener_connected = sqlite3_column_int(s, 0) != 0;
		c->listener_since = sqlite3_column_int64(s, 1);
		c->outage_since = sqlite3_column_int64(s, 3);
		c->heartbeat = hb;
		c->coherent = c->listener_connected && text_now_ms() - hb < HEARTBEAT_STALE_MS;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		c->coherent = false;
		/* After the reset: cache_fail may finalize s. */
		if (rc != SQLITE_DONE)
			cx_fail(c, -1, rc);
	}
}

/* Read on every use (a few microseconds, inside the caller's read
 * transaction where there is one): a process must stop trusting the cache
 * as soon as the syncer says so. */
bool cache_coherent(struct cache *c)
{
	if (!cx_usable(c))
		return false;
	read_state(c);
	return c->coherent;
}

int64_t cache_outage_since(struct cache *c)
{
	if (!cx_usable(c))
		return 0;
	read_state(c);
	return c->outage_since;
}

bool cache_listener_connected(struct cache *c, int64_t *since_ms)
{
	*since_ms = 0;
	if (!cx_usable(c))
		return false;
	read_state(c);
	*since_ms = c->listener_since;
	return c->coherent;
}

void cache_listener_state(struct cache *c, bool connected, bool lost_pg)
{
	char sql[200];
	int64_t now = text_now_ms();

	metrics_listener_state(connected, lost_pg);
	if (!cx_usable(c))
		return;
	if (connected)
		snprintf(sql, sizeof sql, "UPDATE cache_state SET listener_connected = 1, listener_since = %lld, "
		    "heartbeat = %lld WHERE id = 1", (long long)now, (long long)now);
	else if (lost_pg)
		snprintf(sql, sizeof sql, "UPDATE cache_state SET listener_connected = 0, listener_since = %lld, "
		    "outage_since = %lld WHERE id = 1", (long long)now, (long long)now);
	else
		snprintf(sql, sizeof sql, "UPDATE cache_state SET listener_connected = 0, listener_since = %lld "
		    "WHERE id = 1", (long long)now);
	cx_exec(c, sql);
}

void cache_heartbeat(struct cache *c, const char *position)
{
	sqlite3_stmt *s = NULL;
	char sql[200];
	int64_t now = text_now_ms();
	int rc;

	if (!cx_usable(c))
		return;
	/* position is PostgreSQL's text: bound, never spliced in. */
	rc = sqlite3_prepare_v2(c->db, "UPDATE cache_state SET heartbeat = ?1, "
	    "pg_position = CASE WHEN ?3 THEN ?2 ELSE pg_position END WHERE id = 1", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, now);
		if (position && position[0] != '\0')
			sqlite3_bind_text(s, 2, position, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, position != NULL);
		rc = sqlite3_step(s);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, -1, rc);
		return;
	}
	snprintf(sql, sizeof sql, "DELETE FROM cache_tombstones WHERE at < %lld", (long long)now - 600000);
	cx_exec(c, sql);
}

int cache_position(struct cache *c, char *buf, size_t size)
{
	sqlite3_stmt *s = NULL;
	int rc, found = 0;

	buf[0] = '\0';
	if (!cx_usable(c))
		return -1;
	rc = sqlite3_prepare_v2(c->db, "SELECT pg_position FROM cache_state WHERE id = 1 AND pg_position IS NOT NULL",
	    -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		int n = sqlite3_column_bytes(s, 0);
		if (v && n > 0 && (size_t)n < size) {
			memcpy(buf, v, (size_t)n);
			buf[n] = '\0';
			found = 1;
		}
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, -1, rc);
		return -1;
	}
	return found;
}

/* Rows one batch of notifications may fetch from PostgreSQL: past this
 * (a burst: a bulk write), a named row is dropped instead, since fetching
 * would hold the SQLite write lock for a PostgreSQL round trip a row. */
#define APPLY_FETCH_MAX 64

/* What one transaction of notifications did to each table. */
struct apply_batch {
	int fetches;
	bool state_read[CACHE_NTABLES];
	bool complete[CACHE_NTABLES];    /* the snapshot was complete when the batch began */
	bool touched[CACHE_NTABLES];     /* a row of it changed: its generation must move */
	bool broken[CACHE_NTABLES];      /* the snapshot no longer holds every row */
};

/* One payload, inside the caller's transaction. A named row is kept up to
 * date only where the cache has a use for it: fetched when it is cached
 * or belongs to a complete snapshot (within the batch's budget), dropped
 * when over budget, and left alone when nobody has read it. */
static int apply_one(struct cache *c, struct pg *pg, const char *payload, struct apply_batch *b)
{
	const char *colon = strchr(payload, ':');
	size_t tl = colon ? (size_t)(colon - payload) : strlen(payload);
	const char *key = colon ? colon + 1 : NULL;
	int t = cache_table_by_name(payload, tl), cached, rc;
	bool snapshot;
	struct cache_row row;

	if (t < 0) {
		log_debug("cache: ignoring notification for %.*s", (int)tl, payload);
		return 0;
	}
	/* A whole table, or a credential (by token hash or user id): drop. */
	if (key == NULL || t == CACHE_CREDENTIALS) {
		if (key == NULL)
			b->touched[t] = false;   /* cx_drop moved it on and ended the snapshot */
		return cx_drop(c, t, key);
	}
	if (!b->state_read[t]) {
		struct cx_tstate ts;
		if (cx_table_state(c, t, &ts) < 0)
			return -1;
		b->state_read[t] = true;
		b->complete[t] = ts.complete;
	}
	b->touched[t] = true;
	snapshot = b->complete[t] && !b->broken[t];
	cached = cx_has_row(c, t, key);
	if (cached < 0)
		return -1;
	if (!cached && !snapshot)
		return 0;   /* nobody has read it here: nothing to keep */
	if (b->fetches >= APPLY_FETCH_MAX) {
		b->broken[t] = b->broken[t] || snapshot;
		return cached ? (cx_del_row(c, t, key) < 0 ? -1 : 0) : 0;
	}
	b->fetches++;
	memset(&row, 0, sizeof row);
	rc = cache_defs[t]->fetch(pg, key, &row);
	if (rc == 1) {
		rc = cx_put_row(c, t, &row, text_now_ms());
		cache_row_free(&row);
		return rc < 0 ? -1 : 0;
	}
	/* Row gone (0), or PostgreSQL failed: then the snapshot can't be trusted. */
	if (rc < 0)
		b->broken[t] = true;
	return cached && cx_del_row(c, t, key) < 0 ? -1 : 0;
}

/* Apply payloads [from, to) in one transaction: 0, or -1 (rolled back). */
static int apply_batch(struct cache *c, struct pg *pg, char *const *payloads, int from, int to)
{
	struct apply_batch b;

	memset(&b, 0, sizeof b);
	if (cx_begin(c) < 0)
		return -1;
	for (int i = from; i < to; i++)
		if (apply_one(c, pg, payloads[i], &b) < 0)
			goto fail;
	/* The generation moves on once per table and batch: a read that
	 * began before this transaction does not store what it fetched. */
	for (int t = 0; t < CACHE_NTABLES; t++)
		if (b.touched[t] && cx_bump(c, t, !b.broken[t]) < 0)
			goto fail;
	if (cx_commit(c) == 0)
		return 0;
fail:
	cx_rollback(c);
	return -1;
}

int cache_apply_notifications(struct cache *c, struct pg *pg, char *const *payloads, int n)
{
	if (n <= 0 || !cx_usable(c))
		return 0;
	if (apply_batch(c, pg, payloads, 0, n) == 0)
		return 0;
	if (!cx_usable(c))
		return -1;
	/* The batch failed: apply one by one, dropping what still fails. */
	for (int i = 0; i < n; i++) {
		if (apply_batch(c, pg, payloads, i, i + 1) < 0) {
			const char *colon = strchr(payloads[i], ':');
			int t = cache_table_by_name(payloads[i], colon ? (size_t)(colon - payloads[i]) : strlen(payloads[i]));
			if (!cx_usable(c))
				return -1;
			log_warn("cache: could not apply %s; dropping the table's copy", payloads[i]);
			if (t >= 0 && cx_drop_now(c, t, NULL) < 0)
				return -1;
		}
	}
	return 0;
}

int cache_mark_all_stale(struct cache *c)
{
	struct buf b = BUF_INIT;
	int rc;

	if (!cx_usable(c))
		return -1;
	/* One small write whatever the size of the tables: rows cached before
	 * valid_after read as stale (cache_get). */
	buf_printf(&b, "BEGIN IMMEDIATE; DELETE FROM credentials; "
	    "INSERT OR REPLACE INTO cache_tombstones (key, at) VALUES ('*', %lld); "
	    "UPDATE cache_tables SET complete = 0, gen = gen + 1, valid_after = %lld; COMMIT;",
	    (long long)text_now_ms(), (long long)text_now_ms() + 1);
	rc = b.oom ? -1 : cx_exec(c, b.data);
	if (rc < 0)
		cx_rollback(c);
	buf_free(&b);
	return rc;
}
