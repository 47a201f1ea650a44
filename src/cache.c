/* The L1 cache (see cache.h for the contract). The only file besides
 * cache_migrate.c that talks to SQLite. */
#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "cache_memo.h"
#include "cache_schema.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "text.h"

#define HEARTBEAT_STALE_MS 3000      /* a listener silent this long is not trusted */
#define REOPEN_INTERVAL_MS 1000
#define FILE_RECHECK_MS 1000         /* how often to notice the file was replaced */

enum stmt_kind { S_GET = 0, S_PUT, S_DEL, S_LIST, S_COUNT, S_CLEAR, S_ROWS, S_NKIND };

struct cache {
	char *path;                  /* NULL: disabled */
	long long max_age_ms;
	bool write_through;
	sqlite3 *db;
	dev_t dev;
	ino_t ino;
	long long next_open_ms;
	long long next_stat_ms;
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
};

static const char *const table_names[CACHE_NTABLES] = {
	"deployment_history", "storage_entries", "filter_cache", "compilation_metadata", "credentials",
};

const char *cache_table_name(enum cache_tbl t)
{
	return t == CACHE_CREDENTIALS ? "sessions" : table_names[t];
}

const char *cache_outcome_name(enum cache_outcome o)
{
	static const char *const n[] = { "HIT", "MISS", "STALE", "BYPASS" };

	return n[o];
}

void cache_row_free(struct cache_row *row)
{
	if (row == NULL)
		return;
	free(row->key);
	for (int i = 0; i < CACHE_MAX_COLS; i++)
		free(row->cols[i]);
	free(row->body);
	memset(row, 0, sizeof *row);
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int col_index(const struct cache_tabledef *d, const char *name)
{
	for (int i = 0; i < CACHE_MAX_COLS && d->cols[i]; i++)
		if (strcmp(d->cols[i], name) == 0)
			return i;
	return -1;
}

static int ncols(const struct cache_tabledef *d)
{
	int n = 0;

	while (n < CACHE_MAX_COLS && d->cols[n])
		n++;
	return n;
}

static bool read_begin(struct cache *c);
static void read_end(struct cache *c);

/* ---- opening, schema, failure handling ---- */

static void close_db(struct cache *c)
{
	for (int t = 0; t < CACHE_NTABLES; t++)
		for (int k = 0; k < S_NKIND; k++) {
			sqlite3_finalize(c->st[t][k]);
			c->st[t][k] = NULL;
		}
	sqlite3_finalize(c->st_state);
	sqlite3_finalize(c->st_table);
	sqlite3_finalize(c->st_bump);
	sqlite3_finalize(c->st_begin);
	sqlite3_finalize(c->st_end);
	sqlite3_finalize(c->st_tomb);
	sqlite3_finalize(c->st_tomb_check);
	c->st_state = c->st_table = c->st_bump = c->st_begin = c->st_end = NULL;
	c->st_tomb = c->st_tomb_check = NULL;
	if (c->db)
		sqlite3_close_v2(c->db);
	c->db = NULL;
	c->coherent = false;
	c->shm_mapped = false;
	cache_memo_clear(&c->memo);
}

static void remove_files(const char *path)
{
	char p[4096];

	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

/* Make sure the file has the built-in schema: create it, finish it, or —
 * if it holds another schema — replace it. The file is only a cache. */
static int ensure_schema(const char *path)
{
	char err[512], sum[65], want[65];
	unsigned char h[crypto_hash_sha256_BYTES];
	struct cache_mig *m;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		bool replace = false;

		m = cache_mig_open(path, err, sizeof err);
		if (m == NULL) {
			log_warn("cache: %s", err);
			/* Not a database, or a damaged one (SQLite's messages for
			 * SQLITE_NOTADB and SQLITE_CORRUPT): start over once. A busy
			 * or unreadable file is left alone. */
			if (attempt == 0 && access(path, F_OK) == 0 &&
			    (strstr(err, "not a database") || strstr(err, "malformed"))) {
				remove_files(path);
				continue;
			}
			return -1;
		}
		for (size_t i = 0; i < cache_schema_nfiles && !replace; i++) {
			const struct cache_schema_file *f = &cache_schema_files[i];
			int rc;

			crypto_hash_sha256(h, (const unsigned char *)f->sql, strlen(f->sql));
			sodium_bin2hex(want, sizeof want, h, sizeof h);
			rc = cache_mig_checksum(m, f->version, sum);
			if (rc < 0) {
				replace = true;
			} else if (rc == 1) {
				replace = strcmp(sum, want) != 0;
			} else if (cache_mig_apply(m, f->version, f->name, want, f->sql, err, sizeof err) < 0) {
				log_warn("cache: applying %s_%s: %s", f->version, f->name, err);
				replace = true;
			}
		}
		cache_mig_close(m);
		if (!replace)
			return 0;
		log_warn("cache: %s holds another or a broken schema; rebuilding it", path);
		remove_files(path);
	}
	return -1;
}

static sqlite3_stmt *prep(struct cache *c, const char *sql)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK) {
		log_warn("cache: prepare failed: %s", sqlite3_errmsg(c->db));
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

/* Prepare the per-table statements from the table definitions. */
static int prepare_all(struct cache *c)
{
	struct buf b = BUF_INIT;
	int rc = -1;

	c->st_state = prep(c, "SELECT listener_connected, listener_since, heartbeat, outage_since FROM cache_state WHERE id = 1");
	c->st_table = prep(c, "SELECT complete, synced_at, gen FROM cache_tables WHERE name = ?1");
	c->st_bump = prep(c, "UPDATE cache_tables SET gen = gen + 1, complete = complete AND ?2 WHERE name = ?1");
	c->st_begin = prep(c, "BEGIN");
	c->st_end = prep(c, "COMMIT");
	c->st_tomb = prep(c, "INSERT OR REPLACE INTO cache_tombstones (key, at) VALUES (?1, ?2)");
	c->st_tomb_check = prep(c, "SELECT 1 FROM cache_tombstones WHERE key IN (?1, ?2, '*') AND at >= ?3");
	if (!c->st_state || !c->st_table || !c->st_bump || !c->st_begin || !c->st_end || !c->st_tomb ||
	    !c->st_tomb_check)
		goto out;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		const struct cache_tabledef *d = cache_defs[t];
		const char *name = table_names[t];
		int n;

		if (t == CACHE_CREDENTIALS) {
			c->st[t][S_GET] = prep(c, "SELECT kind, cred_id, user_id, role, banned, expires_ms, confirmed_at "
			    "FROM credentials WHERE token_hash = ?1");
			c->st[t][S_PUT] = prep(c, "INSERT OR REPLACE INTO credentials (token_hash, kind, cred_id, user_id, "
			    "role, banned, expires_ms, confirmed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
			c->st[t][S_DEL] = prep(c, "DELETE FROM credentials WHERE token_hash = ?1 OR user_id = ?1");
			c->st[t][S_CLEAR] = prep(c, "DELETE FROM credentials");
			c->st[t][S_ROWS] = prep(c, "SELECT count(*) FROM credentials");
			if (!c->st[t][S_GET] || !c->st[t][S_PUT] || !c->st[t][S_DEL] || !c->st[t][S_CLEAR] || !c->st[t][S_ROWS])
				goto out;
			continue;
		}
		if (d == NULL)
			continue;
		n = ncols(d);
		buf_reset(&b);
		buf_printf(&b, "SELECT body, cached_at, %s FROM %s WHERE %s = ?1",
		    d->expires_col ? d->expires_col : "NULL", name, d->key_col);
		c->st[t][S_GET] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "INSERT OR REPLACE INTO %s (%s", name, d->key_col);
		for (int i = 0; i < n; i++)
			buf_printf(&b, ", \"%s\"", d->cols[i]);
		buf_puts(&b, ", body, cached_at) VALUES (?1");
		for (int i = 0; i < n + 2; i++)
			buf_printf(&b, ", ?%d", i + 2);
		buf_puts(&b, ")");
		c->st[t][S_PUT] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "DELETE FROM %s WHERE %s = ?1", name, d->key_col);
		c->st[t][S_DEL] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "DELETE FROM %s", name);
		c->st[t][S_CLEAR] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "SELECT count(*) FROM %s", name);
		c->st[t][S_ROWS] = prep(c, b.data);
		if (!c->st[t][S_GET] || !c->st[t][S_PUT] || !c->st[t][S_DEL] || !c->st[t][S_CLEAR] || !c->st[t][S_ROWS])
			goto out;
		if (d->order_col) {
			/* Every column may filter: ?k IS NULL means "any". */
			struct buf where = BUF_INIT;
			buf_puts(&where, "WHERE 1");
			for (int i = 0; i < n; i++)
				buf_printf(&where, " AND (?%d IS NULL OR \"%s\" = ?%d)", i + 1, d->cols[i], i + 1);
			buf_reset(&b);
			buf_printf(&b, "SELECT body FROM %s %s ORDER BY \"%s\" DESC, %s DESC LIMIT ?%d",
			    name, where.data, d->order_col, d->key_col, n + 1);
			c->st[t][S_LIST] = prep(c, b.data);
			buf_reset(&b);
			buf_printf(&b, "SELECT count(*) FROM %s %s", name, where.data);
			c->st[t][S_COUNT] = prep(c, b.data);
			buf_free(&where);
			if (!c->st[t][S_LIST] || !c->st[t][S_COUNT])
				goto out;
		}
	}
	rc = b.oom ? -1 : 0;
out:
	buf_free(&b);
	return rc;
}

/* sqlite3_exec's callback for PRAGMA journal_mode: whether it is WAL now
 * (a file system without shared memory support may refuse). */
static int journal_mode_is_wal(void *ctx, int n, char **vals, char **names)
{
	(void)names;
	*(bool *)ctx = n == 1 && vals[0] != NULL && strcmp(vals[0], "wal") == 0;
	return 0;
}

/* Open (or reopen) the file, creating or rebuilding it when needed. */
static int cache_reopen(struct cache *c)
{
	struct stat st;
	long long now = mono_ms();

	if (c->db)
		return 0;
	if (now < c->next_open_ms)
		return -1;
	c->next_open_ms = now + REOPEN_INTERVAL_MS;
	if (ensure_schema(c->path) < 0)
		return -1;
	if (sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    stat(c->path, &st) < 0) {
		log_warn("cache: cannot open %s: %s", c->path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
		close_db(c);
		return -1;
	}
	sqlite3_busy_timeout(c->db, 2000);
	c->wal = false;
	sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", journal_mode_is_wal, &c->wal, NULL);
	sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (prepare_all(c) < 0) {
		close_db(c);
		return -1;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->opens++;
	c->next_stat_ms = now + FILE_RECHECK_MS;
	log_info("cache: using %s", c->path);
	return 0;
}

/* An SQLite error: count it; when it says the file is gone or broken, drop
 * the handle so the next use rebuilds the file. That finalizes every
 * prepared statement: callers reset theirs before calling this. */
static void cache_fail(struct cache *c, int t, int rc)
{
	int base = rc & 0xff;

	metrics_cache(t < 0 ? 0 : t, METRICS_CACHE_ERROR);
	if (c->db)
		log_warn("cache: %s", sqlite3_errmsg(c->db));
	if (base == SQLITE_CORRUPT || base == SQLITE_NOTADB || base == SQLITE_IOERR ||
	    base == SQLITE_CANTOPEN || base == SQLITE_READONLY || base == SQLITE_FULL) {
		struct stat st;
		/* Remove the broken file only if it is still the one we opened. */
		if ((base == SQLITE_CORRUPT || base == SQLITE_NOTADB) && stat(c->path, &st) == 0 &&
		    st.st_ino == c->ino && st.st_dev == c->dev)
			remove_files(c->path);
		close_db(c);
		c->next_open_ms = 0;
	}
}

/* Whether the file still starts like an SQLite database. Read through
 * SQLite's own descriptor: opening and closing another descriptor on the
 * file would drop every POSIX lock this process holds on it, and another
 * process closing the database would then take itself for the last user
 * and delete the WAL the workers still write. */
static bool header_ok(struct cache *c)
{
	static const char magic[16] = "SQLite format 3";   /* and its NUL */
	sqlite3_file *f = NULL;
	char head[16];
	int rc;

	if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
	    f == NULL || f->pMethods == NULL)
		return true;
	rc = f->pMethods->xRead(f, head, sizeof head, 0);
	/* Short read: empty (a new WAL database may live in -wal alone). */
	if (rc == SQLITE_IOERR_SHORT_READ)
		return true;
	return rc != SQLITE_OK || memcmp(head, magic, sizeof head) == 0;
}

/* Ready to use: open, and still the file at path (noticed at most once a
 * second: someone may have deleted, replaced or overwritten it). */
static bool usable(struct cache *c)
{
	long long now;
	struct stat st;

	if (c == NULL || c->path == NULL)
		return false;
	now = mono_ms();
	if (c->db && now >= c->next_stat_ms) {
		c->next_stat_ms = now + FILE_RECHECK_MS;
		if (stat(c->path, &st) < 0 || st.st_ino != c->ino || st.st_dev != c->dev) {
			log_warn("cache: %s was removed or replaced; reopening", c->path);
			close_db(c);
			c->next_open_ms = 0;
		} else if (!header_ok(c)) {
			/* Overwritten in place: SQLite may go on answering from its
			 * page cache for a while; don't wait for it to notice. */
			log_warn("cache: %s is no longer an SQLite file; rebuilding it", c->path);
			close_db(c);
			remove_files(c->path);
			c->next_open_ms = 0;
		}
	}
	return cache_reopen(c) == 0;
}

struct cache *cache_open(const char *path, long max_age, bool write_through)
{
	struct cache *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->max_age_ms = (long long)max_age * 1000;
	c->write_through = write_through;
	cache_memo_init(&c->memo);
	if (path && *path) {
		c->path = strdup(path);
		if (c->path == NULL) {
			free(c);
			return NULL;
		}
		if (cache_reopen(c) < 0)
			log_warn("cache: %s is not usable yet; serving from PostgreSQL", path);
	}
	return c;
}

void cache_close(struct cache *c)
{
	if (c == NULL)
		return;
	close_db(c);
	cache_memo_free(&c->memo);
	free(c->path);
	free(c);
}

bool cache_enabled(const struct cache *c)
{
	return c && c->path;
}

int cache_probe(struct cache *c, double *latency_ms)
{
	struct timespec a, b;
	sqlite3_stmt *s = NULL;
	int rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (c && c->db)
		c->next_stat_ms = 0;   /* look at the file now */
	if (!usable(c))
		goto out;
	s = c->st_state;
	sqlite3_reset(s);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cache_fail(c, -1, rc);   /* may finalize s: not used after this */
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	clock_gettime(CLOCK_MONOTONIC, &b);
	*latency_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	return rc;
}

/* ---- coherence ---- */

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
			cache_fail(c, -1, rc);
	}
}

/* Read on every use (a few microseconds, inside the caller's read
 * transaction where there is one): a process must stop trusting the cache
 * as soon as the syncer says so. */
bool cache_coherent(struct cache *c)
{
	if (!usable(c))
		return false;
	read_state(c);
	return c->coherent;
}

int64_t cache_outage_since(struct cache *c)
{
	if (!usable(c))
		return 0;
	read_state(c);
	return c->outage_since;
}

bool cache_listener_connected(struct cache *c, int64_t *since_ms)
{
	*since_ms = 0;
	if (!usable(c))
		return false;
	read_state(c);
	*since_ms = c->listener_since;
	return c->coherent;
}

static int exec(struct cache *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		cache_fail(c, -1, rc);
		return -1;
	}
	return 0;
}

void cache_listener_state(struct cache *c, bool connected, bool lost_pg)
{
	char sql[200];
	int64_t now = text_now_ms();

	metrics_listener_state(connected, lost_pg);
	if (!usable(c))
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
	exec(c, sql);
}

unsigned cache_file_generation(const struct cache *c)
{
	return c ? c->opens : 0;
}

void cache_heartbeat(struct cache *c)
{
	char sql[200];

	if (!usable(c))
		return;
	snprintf(sql, sizeof sql, "UPDATE cache_state SET heartbeat = %lld WHERE id = 1; "
	    "DELETE FROM cache_tombstones WHERE at < %lld", (long long)text_now_ms(),
	    (long long)text_now_ms() - 600000);
	exec(c, sql);
}

/* ---- table state ---- */

struct tstate {
	bool complete;
	int64_t synced_at;
	uint64_t gen;
};

static int table_state(struct cache *c, int t, struct tstate *ts)
{
	sqlite3_stmt *s = c->st_table;
	int rc;

	memset(ts, 0, sizeof *ts);
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, table_names[t], -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ts->complete = sqlite3_column_int(s, 0) != 0;
		ts->synced_at = sqlite3_column_int64(s, 1);
		ts->gen = (uint64_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cache_fail(c, t, rc);
		return -1;
	}
	return 0;
}

uint64_t cache_gen(struct cache *c, enum cache_tbl t)
{
	struct tstate ts;

	if (!usable(c) || table_state(c, t, &ts) < 0)
		return UINT64_MAX;   /* matches nothing: a later write-through drops */
	return ts.gen;
}

/* Move the generation on (keep_complete false also ends the snapshot). */
static int bump(struct cache *c, int t, bool keep_complete)
{
	sqlite3_stmt *s = c->st_bump;
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, table_names[t], -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, keep_complete);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cache_fail(c, t, rc);
		return -1;
	}
	return 0;
}

/* ---- rows ---- */

static int put_row(struct cache *c, int t, const struct cache_row *row, int64_t cached_at)
{
	sqlite3_stmt *s = c->st[t][S_PUT];
	int n = ncols(cache_defs[t]), rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, row->key, -1, SQLITE_STATIC);
	for (int i = 0; i < n; i++)
		sqlite3_bind_text(s, i + 2, row->cols[i], -1, SQLITE_STATIC);   /* NULL binds NULL */
	sqlite3_bind_text(s, n + 2, row->body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, n + 3, cached_at);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		cache_fail(c, t, rc);
		return -1;
	}
	return 0;
}

static int del_row(struct cache *c, int t, const char *key)
{
	sqlite3_stmt *s = c->st[t][S_DEL];
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cache_fail(c, t, rc);
		return -1;
	}
	return sqlite3_changes(c->db);
}

/* Record that credentials under key (token hash, user id, '*') changed. */
static int tombstone(struct cache *c, const char *key)
{
	sqlite3_stmt *s = c->st_tomb;
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, text_now_ms());
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cache_fail(c, CACHE_CREDENTIALS, rc);
		return -1;
	}
	return 0;
}

static int begin(struct cache *c)
{
	return exec(c, "BEGIN IMMEDIATE");
}

static int commit(struct cache *c)
{
	if (c->db == NULL)
		return -1;
	if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = sqlite3_errcode(c->db);
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		cache_fail(c, -1, rc);
		return -1;
	}
	return 0;
}

static void rollback(struct cache *c)
{
	if (c->db && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Store row if the table's generation is still gen (nothing was
 * invalidated since the caller read PostgreSQL), else drop the key and end
 * the snapshot: the copy may be older than what an invalidation already
 * applied, and a complete snapshot must not lack the row either. */
static void store_checked(struct cache *c, int t, const struct cache_row *row, uint64_t gen)
{
	struct tstate ts;

	if (begin(c) < 0)
		return;
	if (table_state(c, t, &ts) < 0)
		goto fail;
	if (ts.gen == gen) {
		if (put_row(c, t, row, text_now_ms()) < 0)
			goto fail;
	} else if (del_row(c, t, row->key) < 0 || bump(c, t, false) < 0) {
		/* Without the row the snapshot is no longer whole: the next list
		 * reads PostgreSQL and refills it. */
		goto fail;
	}
	commit(c);
	return;
fail:
	rollback(c);
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
	if (read_begin(c)) {
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
			cache_fail(c, t, rc);
		}
		if (c->db)
			sqlite3_reset(s);
		coherent = have && fresh && cache_coherent(c);
		read_end(c);
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
			del_row(c, t, key);
		return 0;
	}
	if (c && c->db)
		store_checked(c, t, &row, gen);
	if (!(d->expires_col && col_index(d, d->expires_col) >= 0 &&
	    expired(row.cols[col_index(d, d->expires_col)]))) {
		*body = row.body;
		row.body = NULL;
	}
	cache_row_free(&row);
	return 0;
}

/* Bind a list/count statement's filters: one parameter per column. */
static int bind_filters(sqlite3_stmt *s, const struct cache_tabledef *d, const struct cache_filter *f, int nf)
{
	int n = ncols(d);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	for (int k = 0; k < nf; k++) {
		int i = col_index(d, f[k].col);
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
		cache_fail(c, t, rc);
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
		cache_fail(c, t, rc);
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
	rc = put_row(sc->c, sc->t, &row, sc->now);
	cache_row_free(&row);
	if (rc < 0)
		return BLOQR_ECACHE;   /* never -1: pg_each would take it for "unavailable" */
	sc->rows++;
	return 0;
}

/* Replace the table's rows with every row of PostgreSQL's, in one SQLite
 * transaction. The write lock is taken before PostgreSQL is read, so an
 * invalidation for any later commit is applied after this one. */
static int snapshot_refresh(struct cache *c, struct pg *pg, int t, long *rows)
{
	struct snap_ctx sc = { c, t, text_now_ms(), 0 };
	char sql[160];
	int rc;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL)
		return 0;
	if (begin(c) < 0)
		return BLOQR_ECACHE;
	sqlite3_reset(c->st[t][S_CLEAR]);
	if (sqlite3_step(c->st[t][S_CLEAR]) != SQLITE_DONE) {
		rc = sqlite3_errcode(c->db);
		sqlite3_reset(c->st[t][S_CLEAR]);
		rollback(c);
		cache_fail(c, t, rc);
		return BLOQR_ECACHE;
	}
	sqlite3_reset(c->st[t][S_CLEAR]);
	rc = pg_each(pg, cache_defs[t]->all, NULL, snap_row, &sc);
	if (rc != PG_OK || c->db == NULL) {
		rollback(c);
		return rc != PG_OK ? rc : BLOQR_ECACHE;
	}
	snprintf(sql, sizeof sql, "UPDATE cache_tables SET complete = 1, synced_at = %lld, gen = gen + 1 "
	    "WHERE name = '%s'", (long long)sc.now, table_names[t]);
	if (exec(c, sql) < 0 || commit(c) < 0) {
		rollback(c);
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
	struct tstate ts;

	if (cache_defs[t] == NULL || cache_defs[t]->all == NULL || !usable(c) ||
	    table_state(c, t, &ts) < 0 || !ts.complete)
		return false;
	if (synced_at)
		*synced_at = ts.synced_at;
	if (!need_fresh)
		return true;
	return text_now_ms() - ts.synced_at <= c->max_age_ms;
}

/* One read transaction around the snapshot check and the read: a single
 * WAL read lock (two fcntl calls) instead of one per statement, and both
 * see the same state. */
static bool read_begin(struct cache *c)
{
	if (!usable(c))
		return false;
	sqlite3_reset(c->st_begin);
	return sqlite3_step(c->st_begin) == SQLITE_DONE;
}

static void read_end(struct cache *c)
{
	if (c->db && !sqlite3_get_autocommit(c->db)) {
		sqlite3_reset(c->st_end);
		if (sqlite3_step(c->st_end) != SQLITE_DONE)
			rollback(c);
		sqlite3_reset(c->st_end);
	}
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

/* The version of the file: the WAL-index header, which every commit of
 * any process rewrites in shared memory (twice: the copies differ while a
 * commit is being written; https://www.sqlite.org/walformat.html). It is
 * read where SQLite itself reads it, through the connection's own mapping,
 * and only once SQLite has mapped it. False when it cannot be known now. */
static bool file_version(struct cache *c, unsigned char v[CACHE_MEMO_VERSION])
{
	enum { WALINDEX_PGSZ = 32768, ISINIT = 12 };
	unsigned char second[CACHE_MEMO_VERSION];
	sqlite3_file *f = NULL;
	void volatile *shm = NULL;
	const volatile unsigned char *h;

	if (!c->wal || !c->shm_mapped || c->db == NULL ||
	    sqlite3_file_control(c->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
	    f == NULL || f->pMethods == NULL || f->pMethods->iVersion < 2 || f->pMethods->xShmMap == NULL ||
	    f->pMethods->xShmMap(f, 0, WALINDEX_PGSZ, 0, &shm) != SQLITE_OK || shm == NULL)
		return false;
	h = shm;
	/* As SQLite reads it: the first copy, a barrier, the second. */
	for (int i = 0; i < CACHE_MEMO_VERSION; i++)
		v[i] = h[i];
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (int i = 0; i < CACHE_MEMO_VERSION; i++)
		second[i] = h[CACHE_MEMO_VERSION + i];
	return v[ISINIT] == 1 && memcmp(v, second, sizeof second) == 0;
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
	versioned = usable(c) && file_version(c, version);
	if (versioned) {
		memo_key(&key, t, r);
		if (cache_memo_get(&c->memo, &key, version, text_now_ms(), r->out, r->n)) {
			buf_free(&key);
			metrics_cache(t, METRICS_CACHE_HIT);
			*how = CACHE_HIT;
			return 0;
		}
	}
	if (read_begin(c)) {
		hit = cache_coherent(c) && snapshot_ok(c, t, true, &synced_at) && snap_sqlite(c, t, r) == 0;
		read_end(c);
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
		snapshot_refresh(c, pg, t, NULL);
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

/* ---- writes ---- */

void cache_written(struct cache *c, enum cache_tbl t, const struct cache_row *row, uint64_t gen)
{
	if (!usable(c))
		return;
	if (c->write_through) {
		store_checked(c, t, row, gen);
		return;
	}
	if (begin(c) < 0)
		return;
	if (del_row(c, t, row->key) < 0 || bump(c, t, false) < 0) {
		rollback(c);
		return;
	}
	commit(c);
}

int cache_deleted(struct cache *c, enum cache_tbl t, const char *key)
{
	if (!usable(c))
		return c && c->path ? BLOQR_ECACHE : BLOQR_OK;
	if (begin(c) < 0)
		return BLOQR_ECACHE;
	if (key) {
		/* A deleted row leaves a complete snapshot complete. */
		if (del_row(c, t, key) < 0 || bump(c, t, true) < 0 ||
		    (t == CACHE_CREDENTIALS && tombstone(c, key) < 0))
			goto fail;
	} else {
		sqlite3_reset(c->st[t][S_CLEAR]);
		if (sqlite3_step(c->st[t][S_CLEAR]) != SQLITE_DONE) {
			sqlite3_reset(c->st[t][S_CLEAR]);
			goto fail;
		}
		sqlite3_reset(c->st[t][S_CLEAR]);
		if (bump(c, t, false) < 0 || (t == CACHE_CREDENTIALS && tombstone(c, "*") < 0))
			goto fail;
	}
	return commit(c) < 0 ? BLOQR_ECACHE : BLOQR_OK;
fail:
	rollback(c);
	return BLOQR_ECACHE;
}

/* ---- credentials ---- */

int cache_cred_get(struct cache *c, const char *token_hash, struct cache_cred *cr)
{
	sqlite3_stmt *s;
	int rc;

	cr->trusted = false;
	if (!read_begin(c))
		return -1;
	s = c->st[CACHE_CREDENTIALS][S_GET];
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		const char *id = (const char *)sqlite3_column_text(s, 1);
		const char *user = (const char *)sqlite3_column_text(s, 2);
		const char *role = (const char *)sqlite3_column_text(s, 3);
		if (!k || !id || !user || !role) {
			sqlite3_reset(s);
			read_end(c);
			return 0;   /* a damaged row vouches for nothing */
		}
		cr->kind = k[0];
		snprintf(cr->cred_id, sizeof cr->cred_id, "%s", id);
		snprintf(cr->user_id, sizeof cr->user_id, "%s", user);
		snprintf(cr->role, sizeof cr->role, "%s", role);
		cr->banned = sqlite3_column_int(s, 4) != 0;
		cr->expires_ms = sqlite3_column_int64(s, 5);
		cr->confirmed_ms = sqlite3_column_int64(s, 6);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		cr->trusted = cache_coherent(c);
	read_end(c);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	cache_fail(c, CACHE_CREDENTIALS, rc);
	return -1;
}

void cache_cred_put(struct cache *c, const char *token_hash, const struct cache_cred *cr, int64_t since_ms)
{
	sqlite3_stmt *s;
	char kind[2] = { cr->kind, '\0' };
	int rc;

	if (!usable(c) || begin(c) < 0)
		return;
	s = c->st_tomb_check;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, cr->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, since_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		/* Changed since the lookup began: don't keep what it read. */
		rollback(c);
		return;
	}
	if (rc != SQLITE_DONE) {
		cache_fail(c, CACHE_CREDENTIALS, rc);
		goto fail;
	}
	s = c->st[CACHE_CREDENTIALS][S_PUT];
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, cr->cred_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, cr->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, cr->role, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, cr->banned);
	sqlite3_bind_int64(s, 7, cr->expires_ms);
	sqlite3_bind_int64(s, 8, cr->confirmed_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cache_fail(c, CACHE_CREDENTIALS, rc);
		goto fail;
	}
	commit(c);
	return;
fail:
	rollback(c);
}

/* ---- invalidation ---- */

static int table_by_name(const char *name, size_t len)
{
	static const struct { const char *name; int t; } map[] = {
		{ "deployment_history", CACHE_DEPLOYMENTS }, { "storage_entries", CACHE_STORAGE },
		{ "filter_cache", CACHE_FILTERS }, { "compilation_metadata", CACHE_COMPILATIONS },
		{ "users", CACHE_CREDENTIALS }, { "sessions", CACHE_CREDENTIALS },
		{ "api_tokens", CACHE_CREDENTIALS },
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strlen(map[i].name) == len && memcmp(map[i].name, name, len) == 0)
			return map[i].t;
	return -1;
}

/* One payload, inside the caller's transaction. */
static int apply_one(struct cache *c, struct pg *pg, const char *payload)
{
	const char *colon = strchr(payload, ':');
	size_t tl = colon ? (size_t)(colon - payload) : strlen(payload);
	const char *key = colon ? colon + 1 : NULL;
	int t = table_by_name(payload, tl), rc;
	struct cache_row row;

	if (t < 0) {
		log_debug("cache: ignoring notification for %.*s", (int)tl, payload);
		return 0;
	}
	if (key == NULL || t == CACHE_CREDENTIALS) {
		if (key == NULL) {
			sqlite3_reset(c->st[t][S_CLEAR]);
			rc = sqlite3_step(c->st[t][S_CLEAR]);
			sqlite3_reset(c->st[t][S_CLEAR]);
			if (rc != SQLITE_DONE)
				return -1;
		} else if (del_row(c, t, key) < 0) {   /* by token hash or user id */
			return -1;
		}
		if (t == CACHE_CREDENTIALS && tombstone(c, key ? key : "*") < 0)
			return -1;
		return bump(c, t, key != NULL);
	}
	/* Refresh the row from PostgreSQL so a complete snapshot stays so. */
	memset(&row, 0, sizeof row);
	rc = cache_defs[t]->fetch(pg, key, &row);
	if (rc == 1) {
		rc = put_row(c, t, &row, text_now_ms());
		cache_row_free(&row);
		if (rc < 0)
			return -1;
		return bump(c, t, true);
	}
	if (del_row(c, t, key) < 0)
		return -1;
	/* Row gone (0), or PostgreSQL failed: then the snapshot can't be trusted. */
	return bump(c, t, rc == 0);
}

int cache_apply_notifications(struct cache *c, struct pg *pg, char *const *payloads, int n)
{
	int failed = 0;

	if (n <= 0 || !usable(c))
		return 0;
	if (begin(c) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (apply_one(c, pg, payloads[i]) < 0) {
			failed = 1;
			break;
		}
	if (!failed && commit(c) == 0)
		return 0;
	rollback(c);
	if (!usable(c))
		return -1;
	/* The batch failed: apply one by one, dropping what still fails. */
	for (int i = 0; i < n; i++) {
		if (begin(c) < 0)
			return -1;
		if (apply_one(c, pg, payloads[i]) < 0 || commit(c) < 0) {
			const char *colon = strchr(payloads[i], ':');
			int t = table_by_name(payloads[i], colon ? (size_t)(colon - payloads[i]) : strlen(payloads[i]));
			rollback(c);
			log_warn("cache: could not apply %s; dropping the table's copy", payloads[i]);
			if (t >= 0 && cache_deleted(c, t, NULL) < 0)
				return -1;
		}
	}
	return 0;
}

int cache_mark_all_stale(struct cache *c)
{
	struct buf b = BUF_INIT;
	int rc;

	if (!usable(c))
		return -1;
	buf_printf(&b, "BEGIN IMMEDIATE; DELETE FROM credentials; "
	    "INSERT OR REPLACE INTO cache_tombstones (key, at) VALUES ('*', %lld); "
	    "UPDATE cache_tables SET complete = 0, gen = gen + 1;", (long long)text_now_ms());
	for (int t = 0; t < CACHE_NTABLES; t++)
		if (cache_defs[t])
			buf_printf(&b, " UPDATE %s SET cached_at = 0;", table_names[t]);
	buf_puts(&b, " COMMIT;");
	rc = b.oom ? -1 : exec(c, b.data);
	if (rc < 0)
		rollback(c);
	buf_free(&b);
	return rc;
}

int cache_rebuild(struct cache *c, struct pg *pg, long rows[CACHE_NTABLES])
{
	int rc;

	if (!usable(c))
		return BLOQR_ECACHE;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		rows[t] = 0;
		if (cache_defs[t] && cache_defs[t]->all)
			rc = snapshot_refresh(c, pg, t, &rows[t]);
		else
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

	if (!usable(c))
		return -1;
	if (key) {
		if (begin(c) < 0)
			return -1;
		if ((n = del_row(c, t, key)) < 0 || bump(c, t, false) < 0 || commit(c) < 0) {
			rollback(c);
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
	struct tstate ts;
	sqlite3_stmt *s;
	int rc;

	memset(st, 0, sizeof *st);
	if (!usable(c))
		return -1;
	s = c->st[t][S_ROWS];
	sqlite3_reset(s);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		st->rows = (long)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cache_fail(c, t, rc);
		return -1;
	}
	if (table_state(c, t, &ts) < 0)
		return -1;
	st->last_full_sync_ms = ts.synced_at;
	return 0;
}

long cache_verify(struct cache *c, struct pg *pg, struct buf *report)
{
	long diffs = 0;

	if (!usable(c))
		return -1;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		const struct cache_tabledef *d = cache_defs[t];
		char sql[200];
		sqlite3_stmt *s = NULL;
		int rc;

		if (d == NULL)
			continue;
		snprintf(sql, sizeof sql, "SELECT %s, body FROM %s ORDER BY %s", d->key_col, table_names[t], d->key_col);
		if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
			cache_fail(c, t, sqlite3_errcode(c->db));
			return -1;
		}
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const char *key = (const char *)sqlite3_column_text(s, 0);
			const char *body = (const char *)sqlite3_column_text(s, 1);
			struct cache_row row;
			int f;

			if (key == NULL || body == NULL) {
				buf_printf(report, "%s: a damaged row (no key or body)\n", table_names[t]);
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
				buf_printf(report, "%s %s: cached but not in PostgreSQL\n", table_names[t], key);
				diffs++;
			} else if (strcmp(row.body, body) != 0) {
				buf_printf(report, "%s %s: cached copy differs from PostgreSQL\n", table_names[t], key);
				diffs++;
			}
			cache_row_free(&row);
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE) {
			cache_fail(c, t, rc);
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

	if (!usable(c))
		return -1;
	rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (n < 0)
		cache_fail(c, -1, rc);
	return n;
}

int cache_vacuum(struct cache *c)
{
	if (!usable(c))
		return -1;
	return exec(c, "VACUUM");
}
