/* Migrating the L1 cache file: see cache_migrate.h. */
#include "cache_migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cache_mig {
	sqlite3 *db;
	char err[512];
};

enum { MIG_BUSY_TIMEOUT_MS = 5000 };

static const char sql_create_table[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version    TEXT PRIMARY KEY,"
	" name       TEXT NOT NULL,"
	" checksum   TEXT NOT NULL,"
	" applied_at TEXT NOT NULL)";
static const char sql_get_checksum[] =
	"SELECT checksum FROM schema_migrations WHERE version = ?1";
static const char sql_record[] =
	"INSERT INTO schema_migrations (version, name, checksum, applied_at)"
	" VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))";

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Create path with mode 0640 unless it exists. The directory is not made:
 * a missing one is a configuration mistake worth reporting. */
static int create_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (stat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			set_err(err, errlen, "%s: not a regular file", path);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0 && errno != EEXIST) {
		if (errno == ENOENT)
			set_err(err, errlen, "%s: its directory does not exist", path);
		else
			set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* Run one statement that returns at most one row whose first column, when
 * out is not NULL, is copied into out. 0 or -1. */
static int exec_one(struct cache_mig *m, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && out != NULL) {
		const unsigned char *v = sqlite3_column_text(st, 0);
		snprintf(out, outlen, "%s", v ? (const char *)v : "");
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		goto fail;
	}
	sqlite3_finalize(st);
	return 0;
fail:
	set_err(m->err, sizeof m->err, "%s", sqlite3_errmsg(m->db));
	sqlite3_finalize(st);
	return -1;
}

struct cache_mig *cache_mig_open(const char *path, char *err, size_t errlen)
{
	struct cache_mig *m = NULL;
	char mode[32];

	if (path == NULL || *path == '\0') {
		set_err(err, errlen, "no cache path");
		return NULL;
	}
	if (create_file(path, err, errlen) < 0)
		return NULL;
	m = calloc(1, sizeof *m);
	if (m == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	if (sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		set_err(err, errlen, "%s: %s", path,
		    m->db ? sqlite3_errmsg(m->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(m->db, 1);
	sqlite3_busy_timeout(m->db, MIG_BUSY_TIMEOUT_MS);
	if (exec_one(m, "PRAGMA journal_mode = WAL", mode, sizeof mode) < 0)
		goto fail_msg;
	if (strcmp(mode, "wal") != 0) {
		set_err(err, errlen, "%s: cannot switch to WAL journal mode (got \"%s\")", path, mode);
		goto fail;
	}
	if (exec_one(m, sql_create_table, NULL, 0) < 0)
		goto fail_msg;
	return m;
fail_msg:
	set_err(err, errlen, "%s: %s", path, m->err);
fail:
	cache_mig_close(m);
	return NULL;
}

int cache_mig_checksum(struct cache_mig *m, const char *version, char sum[static 65])
{
	sqlite3_stmt *st = NULL;
	int rc, found = 0;

	sum[0] = '\0';
	if (sqlite3_prepare_v2(m->db, sql_get_checksum, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(st, 0);
		snprintf(sum, 65, "%s", v ? (const char *)v : "");
		found = 1;
	} else if (rc != SQLITE_DONE) {
		goto fail;
	}
	sqlite3_finalize(st);
	m->err[0] = '\0';
	return found;
fail:
	set_err(m->err, sizeof m->err, "%s", sqlite3_errmsg(m->db));
	sqlite3_finalize(st);
	return -1;
}

int cache_mig_apply(struct cache_mig *m, const char *version, const char *name,
    const char *checksum, const char *sql, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char *emsg = NULL;
	char sum[65];
	int found;

	m->err[0] = '\0';
	/* IMMEDIATE: take the write lock now, so the "already applied?" check
	 * below cannot be overtaken by another writer. */
	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		set_err(m->err, sizeof m->err, "BEGIN: %s", sqlite3_errmsg(m->db));
		goto fail;
	}
	found = cache_mig_checksum(m, version, sum);
	if (found < 0)
		goto fail;
	if (found > 0) {
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
		return 1;
	}
	if (sqlite3_exec(m->db, sql, NULL, NULL, &emsg) != SQLITE_OK) {
		set_err(m->err, sizeof m->err, "%s", emsg ? emsg : sqlite3_errmsg(m->db));
		goto fail;
	}
	if (sqlite3_get_autocommit(m->db)) {
		/* The file ended our transaction itself: what ran is committed. */
		set_err(m->err, sizeof m->err,
		    "the file must not contain BEGIN/COMMIT/ROLLBACK (part of it may be applied)");
		goto fail;
	}
	if (sqlite3_prepare_v2(m->db, sql_record, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, checksum, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		set_err(m->err, sizeof m->err, "recording the migration: %s", sqlite3_errmsg(m->db));
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		set_err(m->err, sizeof m->err, "COMMIT: %s", sqlite3_errmsg(m->db));
		goto fail;
	}
	return 0;
fail:
	sqlite3_free(emsg);
	sqlite3_finalize(st);
	if (!sqlite3_get_autocommit(m->db))
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	set_err(err, errlen, "%s", m->err);
	return -1;
}

const char *cache_mig_error(const struct cache_mig *m)
{
	return m ? m->err : "";
}

void cache_mig_close(struct cache_mig *m)
{
	if (m == NULL)
		return;
	sqlite3_close_v2(m->db);
	free(m);
}
