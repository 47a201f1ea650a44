/* The L1 cache's SQLite handle: opening, the built-in schema, noticing a
 * file deleted, replaced or broken, prepared statements, rows,
 * transactions, and the file's version (the WAL-index header). */
#include "cache_int.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cache_schema.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

int cx_col_index(const struct cache_tabledef *d, const char *name)
{
	for (int i = 0; i < CACHE_MAX_COLS && d->cols[i]; i++)
		if (strcmp(d->cols[i], name) == 0)
			return i;
	return -1;
}

int cx_ncols(const struct cache_tabledef *d)
{
	int n = 0;

	while (n < CACHE_MAX_COLS && d->cols[n])
		n++;
	return n;
}

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
	if (c->db) {
		/* The last connection to a WAL database deletes "<path>-wal" and
		 * "<path>-shm" on close, by name. When the file was removed or
		 * replaced, those names belong to the new file, whose users would
		 * lose their WAL: never delete them (the WAL is cut to zero). */
		int persist = 1;
		sqlite3_file_control(c->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
		sqlite3_close_v2(c->db);
	}
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

/* Replacing the file is done under an exclusive lock of its directory
 * (flock: a directory needs no lock file of its own): a new file must
 * never meet the "-wal" or "-shm" of the one before it (SQLite would read
 * the old WAL into the new database), and two processes must not both
 * clear those names while a third is already using the new file's.
 * Returns the descriptor to pass to dir_unlock, or -1 (then unlocked:
 * the directory may be unreadable, and the cache is only a cache). */
static int dir_lock(const char *path)
{
	char dir[4096];
	int fd;

	if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
		return -1;
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	return fd;
}

static void dir_unlock(int fd)
{
	if (fd >= 0)
		close(fd);   /* releases the flock */
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
	c->st_table = prep(c, "SELECT complete, synced_at, gen, refresh_until, wanted_at, refresh_pid FROM cache_tables "
	    "WHERE name = ?1");
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
		const char *name = cache_sqlite_name(t);
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
		n = cx_ncols(d);
		buf_reset(&b);
		/* A row cached before the table's valid_after is to be checked
		 * again: it reads as cached at 0. Tables cached per key keep
		 * when each row was last read (the order of eviction). */
		buf_printf(&b, "SELECT body, iif(cached_at < (SELECT valid_after FROM cache_tables WHERE name = '%s'), "
		    "0, cached_at), %s, %s FROM %s WHERE %s = ?1",
		    name, d->expires_col ? d->expires_col : "NULL", d->all ? "NULL" : "read_at", name, d->key_col);
		c->st[t][S_GET] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "INSERT OR REPLACE INTO %s (%s", name, d->key_col);
		for (int i = 0; i < n; i++)
			buf_printf(&b, ", \"%s\"", d->cols[i]);
		buf_printf(&b, ", body, cached_at%s) VALUES (?1", d->all ? "" : ", read_at");
		for (int i = 0; i < n + 2; i++)
			buf_printf(&b, ", ?%d", i + 2);
		if (d->all == NULL)
			buf_printf(&b, ", ?%d", n + 4);   /* read_at */
		buf_puts(&b, ")");
		c->st[t][S_PUT] = prep(c, b.data);
		if (d->all == NULL) {
			buf_reset(&b);
			buf_printf(&b, "UPDATE %s SET read_at = ?2 WHERE %s = ?1", name, d->key_col);
			c->st[t][S_TOUCH] = prep(c, b.data);
			if (!c->st[t][S_TOUCH])
				goto out;
		}
		buf_reset(&b);
		buf_printf(&b, "DELETE FROM %s WHERE %s = ?1", name, d->key_col);
		c->st[t][S_DEL] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "DELETE FROM %s", name);
		c->st[t][S_CLEAR] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "SELECT count(*) FROM %s", name);
		c->st[t][S_ROWS] = prep(c, b.data);
		buf_reset(&b);
		buf_printf(&b, "SELECT 1 FROM %s WHERE %s = ?1", name, d->key_col);
		c->st[t][S_HAS] = prep(c, b.data);
		if (!c->st[t][S_GET] || !c->st[t][S_PUT] || !c->st[t][S_DEL] || !c->st[t][S_CLEAR] || !c->st[t][S_ROWS] ||
		    !c->st[t][S_HAS])
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
	long long now = clock_mono_ms();
	int lock;

	if (c->db)
		return 0;
	if (now < c->next_open_ms)
		return -1;
	c->next_open_ms = now + REOPEN_INTERVAL_MS;
	lock = dir_lock(c->path);
	/* No database: whatever "-wal" and "-shm" are left belong to a file
	 * that was deleted (its last users may still hold them open). */
	if (stat(c->path, &st) < 0 && errno == ENOENT)
		remove_files(c->path);
	if (ensure_schema(c->path) < 0) {
		dir_unlock(lock);
		return -1;
	}
	if (sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    stat(c->path, &st) < 0) {
		log_warn("cache: cannot open %s: %s", c->path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
		close_db(c);
		dir_unlock(lock);
		return -1;
	}
	sqlite3_busy_timeout(c->db, CACHE_BUSY_MS);
	c->wal = false;
	/* Under the lock: this makes the new file's "-wal" and "-shm". */
	sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", journal_mode_is_wal, &c->wal, NULL);
	dir_unlock(lock);
	sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	/* A WAL grown by a burst is cut back to this when it is next reset
	 * (the syncer's checkpoints empty it sooner: cache_checkpoint). */
	sqlite3_exec(c->db, "PRAGMA journal_size_limit=" CACHE_STR(CACHE_JOURNAL_LIMIT), NULL, NULL, NULL);
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
void cx_fail(struct cache *c, int t, int rc)
{
	int base = rc & 0xff;

	metrics_cache(t < 0 ? 0 : t, METRICS_CACHE_ERROR);
	if (c->db)
		log_warn("cache: %s", sqlite3_errmsg(c->db));
	if (base == SQLITE_FULL || base == SQLITE_IOERR || base == SQLITE_READONLY) {
		/* The file cannot take writes (a full disk, most often): say so
		 * in /api/health, and do not reopen and fail again at once. */
		metrics_cache_write_failed(text_now_ms());
		c->reopen_backoff_ms = c->reopen_backoff_ms == 0 ? REOPEN_INTERVAL_MS :
		    c->reopen_backoff_ms * 2 > REOPEN_BACKOFF_MAX_MS ? REOPEN_BACKOFF_MAX_MS : c->reopen_backoff_ms * 2;
	}
	if (base == SQLITE_CORRUPT || base == SQLITE_NOTADB || base == SQLITE_IOERR ||
	    base == SQLITE_CANTOPEN || base == SQLITE_READONLY || base == SQLITE_FULL) {
		struct stat st;
		/* Remove the broken file only if it is still the one we opened. */
		if (base == SQLITE_CORRUPT || base == SQLITE_NOTADB) {
			int lock = dir_lock(c->path);
			if (stat(c->path, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev)
				remove_files(c->path);
			dir_unlock(lock);
		}
		close_db(c);
		c->next_open_ms = c->reopen_backoff_ms > 0 ? clock_mono_ms() + c->reopen_backoff_ms : 0;
	}
}

bool cache_write_failing(struct cache *c)
{
	int64_t at = metrics_cache_write_failed_at();

	(void)c;
	return at > 0 && text_now_ms() - at < WRITE_FAILED_RECENT_MS;
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

bool cx_same_file(struct cache *c)
{
	struct stat st;

	if (c->db == NULL)
		return false;
	if (stat(c->path, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev)
		return true;
	log_warn("cache: %s was removed or replaced; reopening", c->path);
	close_db(c);
	c->next_open_ms = 0;
	c->next_stat_ms = 0;
	return false;
}

/* Ready to use: open, and still the file at path (someone may have
 * deleted, replaced or overwritten it): looked at on the first use after
 * cache_recheck, else at most once a second. */
bool cx_usable(struct cache *c)
{
	long long now;
	struct stat st;

	if (c == NULL || c->path == NULL)
		return false;
	now = clock_mono_ms();
	if (c->db && now >= c->next_stat_ms) {
		c->next_stat_ms = now + FILE_RECHECK_MS;
		if (!cx_same_file(c)) {
			/* closed: reopened below */
		} else if (now >= c->next_header_ms && (c->next_header_ms = now + FILE_RECHECK_MS, !header_ok(c))) {
			/* Overwritten in place: SQLite may go on answering from its
			 * page cache for a while; don't wait for it to notice. */
			int lock;
			log_warn("cache: %s is no longer an SQLite file; rebuilding it", c->path);
			close_db(c);
			lock = dir_lock(c->path);
			if (stat(c->path, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev)
				remove_files(c->path);
			dir_unlock(lock);
			c->next_open_ms = 0;
		}
	}
	return cache_reopen(c) == 0;
}

void cache_recheck(struct cache *c)
{
	if (c && c->watch_fd < 0)
		c->next_stat_ms = 0;
}

int cache_watch(struct cache *c)
{
	char dir[4096];

	if (c == NULL || c->path == NULL)
		return -1;
	if (c->watch_fd >= 0)
		return c->watch_fd;
	if (snprintf(dir, sizeof dir, "%s", c->path) >= (int)sizeof dir)
		return -1;
	c->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->watch_fd < 0)
		return -1;
	/* The file's name appearing, going or being renamed over; the
	 * directory itself going (then back to a stat per request). */
	if (inotify_add_watch(c->watch_fd, dirname(dir), IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
	    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0) {
		log_warn("cache: cannot watch the directory of %s (%s); checking it on every request", c->path,
		    strerror(errno));
		close(c->watch_fd);
		c->watch_fd = -1;
	}
	c->next_stat_ms = 0;
	return c->watch_fd;
}

void cache_watch_event(struct cache *c)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const char *base = strrchr(c->path, '/');
	bool gone = false;
	ssize_t n;

	base = base ? base + 1 : c->path;
	while ((n = read(c->watch_fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)p;
			/* Our name (not its -wal or -shm), or an overflowed queue. */
			if ((e->len > 0 && strcmp(e->name, base) == 0) || (e->mask & IN_Q_OVERFLOW))
				c->next_stat_ms = 0;
			if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
				gone = true;
			p += sizeof *e + e->len;
		}
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		gone = true;
	if (gone) {
		/* The directory went: a stat per request from now on. */
		close(c->watch_fd);
		c->watch_fd = -1;
		c->next_stat_ms = 0;
	}
}

struct cache *cache_open(const char *path, long max_age, bool write_through)
{
	struct cache *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->max_age_ms = (long long)max_age * 1000;
	c->max_rows = CACHE_MAX_ROWS_DEFAULT;
	c->watch_fd = -1;
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
	if (c->watch_fd >= 0)
		close(c->watch_fd);
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
	double t0 = clock_mono_ms_f();
	sqlite3_stmt *s = NULL;
	int rc = -1;

	if (c && c->db)
		c->next_stat_ms = 0;   /* look at the file now */
	if (!cx_usable(c))
		goto out;
	s = c->st_state;
	sqlite3_reset(s);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cx_fail(c, -1, rc);   /* may finalize s: not used after this */
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	*latency_ms = clock_mono_ms_f() - t0;
	return rc;
}

int cache_checkpoint(struct cache *c)
{
	char wal[4096];
	struct stat st;
	int rc, nlog = 0, nckpt = 0;

	if (!cx_usable(c) || !c->wal)
		return 0;
	snprintf(wal, sizeof wal, "%s-wal", c->path);
	if (stat(wal, &st) < 0 || st.st_size <= CACHE_WAL_TRUNCATE_AT)
		return 0;
	/* TRUNCATE waits for readers (and holds writers off meanwhile): wait
	 * briefly, not the usual 2 s; a busy file gets a PASSIVE one, which
	 * waits for nobody, and the next turn tries again. */
	sqlite3_busy_timeout(c->db, 100);
	rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt);
	sqlite3_busy_timeout(c->db, CACHE_BUSY_MS);
	if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
		cx_fail(c, -1, rc);
		return -1;
	}
	return 0;
}

int cx_exec(struct cache *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		cx_fail(c, -1, rc);
		return -1;
	}
	return 0;
}

int cx_begin(struct cache *c)
{
	return cx_exec(c, "BEGIN IMMEDIATE");
}

int cx_exec_wait(struct cache *c, const char *sql, int wait_ms)
{
	int rc;

	sqlite3_busy_timeout(c->db, wait_ms);
	rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	sqlite3_busy_timeout(c->db, CACHE_BUSY_MS);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return 1;
	if (rc != SQLITE_OK) {
		cx_fail(c, -1, rc);
		return -1;
	}
	return 0;
}

int cx_begin_fill(struct cache *c)
{
	return cx_exec_wait(c, "BEGIN IMMEDIATE", FILL_WAIT_MS);
}

int cx_commit(struct cache *c)
{
	if (c->db == NULL)
		return -1;
	if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = sqlite3_extended_errcode(c->db);
		/* A failed COMMIT may have rolled back already; a ROLLBACK then
		 * would replace the error message cx_fail logs. */
		cx_rollback(c);
		cx_fail(c, -1, rc);
		return -1;
	}
	c->reopen_backoff_ms = 0;   /* the file takes writes again */
	return 0;
}

void cx_rollback(struct cache *c)
{
	if (c->db && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

int cx_table_state(struct cache *c, int t, struct cx_tstate *ts)
{
	sqlite3_stmt *s = c->st_table;
	int rc;

	memset(ts, 0, sizeof *ts);
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, cache_sqlite_name(t), -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ts->complete = sqlite3_column_int(s, 0) != 0;
		ts->synced_at = sqlite3_column_int64(s, 1);
		ts->gen = (uint64_t)sqlite3_column_int64(s, 2);
		ts->refresh_until = sqlite3_column_int64(s, 3);
		ts->wanted_at = sqlite3_column_int64(s, 4);
		ts->refresh_pid = sqlite3_column_int64(s, 5);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW) {
		cx_fail(c, t, rc);
		return -1;
	}
	return 0;
}

/* Move the generation on (keep_complete false also ends the snapshot). */
int cx_bump(struct cache *c, int t, bool keep_complete)
{
	sqlite3_stmt *s = c->st_bump;
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, cache_sqlite_name(t), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, keep_complete);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, t, rc);
		return -1;
	}
	return 0;
}

int cx_put_row(struct cache *c, int t, const struct cache_row *row, int64_t cached_at)
{
	sqlite3_stmt *s = c->st[t][S_PUT];
	int n = cx_ncols(cache_defs[t]), rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, row->key, -1, SQLITE_STATIC);
	for (int i = 0; i < n; i++)
		sqlite3_bind_text(s, i + 2, row->cols[i], -1, SQLITE_STATIC);   /* NULL binds NULL */
	sqlite3_bind_text(s, n + 2, row->body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, n + 3, cached_at);
	if (cache_defs[t]->all == NULL)
		sqlite3_bind_int64(s, n + 4, cached_at);   /* read_at: a row is put to be read */
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, t, rc);
		return -1;
	}
	return 0;
}

/* Run a statement of table t that takes one key: SQLite's result code,
 * the statement reset (and cx_fail'ed on an error other than a row). */
static int step_key(struct cache *c, int t, sqlite3_stmt *s, const char *key)
{
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		cx_fail(c, t, rc);
	return rc;
}

int cx_del_row(struct cache *c, int t, const char *key)
{
	int rc = step_key(c, t, c->st[t][S_DEL], key);

	return rc == SQLITE_DONE ? sqlite3_changes(c->db) : -1;
}

int cx_has_row(struct cache *c, int t, const char *key)
{
	int rc = step_key(c, t, c->st[t][S_HAS], key);

	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Record that credentials under key (token hash, user id, '*') changed. */
int cx_tombstone(struct cache *c, const char *key)
{
	sqlite3_stmt *s = c->st_tomb;
	int rc;

	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, text_now_ms());
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, CACHE_CREDENTIALS, rc);
		return -1;
	}
	return 0;
}

/* One read transaction around the snapshot check and the read: a single
 * WAL read lock (two fcntl calls) instead of one per statement, and both
 * see the same state. */
bool cx_read_begin(struct cache *c)
{
	if (!cx_usable(c))
		return false;
	sqlite3_reset(c->st_begin);
	return sqlite3_step(c->st_begin) == SQLITE_DONE;
}

void cx_read_end(struct cache *c)
{
	if (c->db && !sqlite3_get_autocommit(c->db)) {
		sqlite3_reset(c->st_end);
		if (sqlite3_step(c->st_end) != SQLITE_DONE)
			cx_rollback(c);
		sqlite3_reset(c->st_end);
	}
}

/* The version of the file: the WAL-index header, which every commit of
 * any process rewrites in shared memory (twice: the copies differ while a
 * commit is being written; https://www.sqlite.org/walformat.html). It is
 * read where SQLite itself reads it, through the connection's own mapping,
 * and only once SQLite has mapped it. False when it cannot be known now. */
bool cx_file_version(struct cache *c, unsigned char v[CACHE_MEMO_VERSION])
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

unsigned cache_file_generation(const struct cache *c)
{
	return c ? c->opens : 0;
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

const char *cache_outcome_name(enum cache_outcome o)
{
	static const char *const n[] = { "HIT", "MISS", "STALE", "BYPASS" };

	return n[o];
}

int cx_drop(struct cache *c, int t, const char *key)
{
	if (key) {
		/* A deleted row leaves a complete snapshot complete. */
		if (cx_del_row(c, t, key) < 0 || cx_bump(c, t, true) < 0 ||
		    (t == CACHE_CREDENTIALS && cx_tombstone(c, key) < 0))
			return -1;
		return 0;
	}
	sqlite3_reset(c->st[t][S_CLEAR]);
	if (sqlite3_step(c->st[t][S_CLEAR]) != SQLITE_DONE) {
		int rc = sqlite3_errcode(c->db);
		sqlite3_reset(c->st[t][S_CLEAR]);
		cx_fail(c, t, rc);
		return -1;
	}
	sqlite3_reset(c->st[t][S_CLEAR]);
	if (cx_bump(c, t, false) < 0 || (t == CACHE_CREDENTIALS && cx_tombstone(c, "*") < 0))
		return -1;
	return 0;
}

int cx_drop_now(struct cache *c, int t, const char *key)
{
	if (cx_begin(c) < 0)
		return -1;
	if (cx_drop(c, t, key) < 0 || cx_commit(c) < 0) {
		cx_rollback(c);
		return -1;
	}
	return 0;
}
