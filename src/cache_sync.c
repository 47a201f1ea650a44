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

void cache_heartbeat(struct cache *c)
{
	char sql[200];

	if (!cx_usable(c))
		return;
	snprintf(sql, sizeof sql, "UPDATE cache_state SET heartbeat = %lld WHERE id = 1; "
	    "DELETE FROM cache_tombstones WHERE at < %lld", (long long)text_now_ms(),
	    (long long)text_now_ms() - 600000);
	cx_exec(c, sql);
}

/* One payload, inside the caller's transaction. */
static int apply_one(struct cache *c, struct pg *pg, const char *payload)
{
	const char *colon = strchr(payload, ':');
	size_t tl = colon ? (size_t)(colon - payload) : strlen(payload);
	const char *key = colon ? colon + 1 : NULL;
	int t = cache_table_by_name(payload, tl), rc;
	struct cache_row row;

	if (t < 0) {
		log_debug("cache: ignoring notification for %.*s", (int)tl, payload);
		return 0;
	}
	/* A whole table, or a credential (by token hash or user id): drop. */
	if (key == NULL || t == CACHE_CREDENTIALS)
		return cx_drop(c, t, key);
	/* Refresh the row from PostgreSQL so a complete snapshot stays so. */
	memset(&row, 0, sizeof row);
	rc = cache_defs[t]->fetch(pg, key, &row);
	if (rc == 1) {
		rc = cx_put_row(c, t, &row, text_now_ms());
		cache_row_free(&row);
		if (rc < 0)
			return -1;
		return cx_bump(c, t, true);
	}
	if (cx_del_row(c, t, key) < 0)
		return -1;
	/* Row gone (0), or PostgreSQL failed: then the snapshot can't be trusted. */
	return cx_bump(c, t, rc == 0);
}

int cache_apply_notifications(struct cache *c, struct pg *pg, char *const *payloads, int n)
{
	int failed = 0;

	if (n <= 0 || !cx_usable(c))
		return 0;
	if (cx_begin(c) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (apply_one(c, pg, payloads[i]) < 0) {
			failed = 1;
			break;
		}
	if (!failed && cx_commit(c) == 0)
		return 0;
	cx_rollback(c);
	if (!cx_usable(c))
		return -1;
	/* The batch failed: apply one by one, dropping what still fails. */
	for (int i = 0; i < n; i++) {
		if (cx_begin(c) < 0)
			return -1;
		if (apply_one(c, pg, payloads[i]) < 0 || cx_commit(c) < 0) {
			const char *colon = strchr(payloads[i], ':');
			int t = cache_table_by_name(payloads[i], colon ? (size_t)(colon - payloads[i]) : strlen(payloads[i]));
			cx_rollback(c);
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
	buf_printf(&b, "BEGIN IMMEDIATE; DELETE FROM credentials; "
	    "INSERT OR REPLACE INTO cache_tombstones (key, at) VALUES ('*', %lld); "
	    "UPDATE cache_tables SET complete = 0, gen = gen + 1;", (long long)text_now_ms());
	for (int t = 0; t < CACHE_NTABLES; t++)
		if (cache_defs[t])
			buf_printf(&b, " UPDATE %s SET cached_at = 0;", cache_sqlite_name(t));
	buf_puts(&b, " COMMIT;");
	rc = b.oom ? -1 : cx_exec(c, b.data);
	if (rc < 0)
		cx_rollback(c);
	buf_free(&b);
	return rc;
}
