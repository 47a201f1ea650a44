#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "log.h"

struct cache {
	char *path;          /* NULL: the cache is disabled */
	long max_age;
	sqlite3 *db;
	dev_t dev;           /* identity of the file we opened, to notice */
	ino_t ino;           /* it being deleted or replaced underneath us */
	long long next_open_ms;
};

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cache_drop(struct cache *c)
{
	if (c->db)
		sqlite3_close_v2(c->db);
	c->db = NULL;
}

/* Open the existing cache file; the schema is made by `bloqr-admin migrate`.
 * A failure is retried no more than once a second. */
static int cache_reopen(struct cache *c)
{
	struct stat st;
	long long now = mono_ms();
	int rc;

	if (c->db)
		return 0;
	if (now < c->next_open_ms)
		return -1;
	c->next_open_ms = now + 1000;
	if (stat(c->path, &st) < 0)
		return -1;
	rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		log_warn("cache: cannot open %s: %s", c->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		cache_drop(c);
		return -1;
	}
	sqlite3_busy_timeout(c->db, 2000);
	sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	return 0;
}

struct cache *cache_open(const char *path, long max_age)
{
	struct cache *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->max_age = max_age;
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
	cache_drop(c);
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
	struct stat st;
	sqlite3_stmt *s = NULL;
	int rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (!cache_enabled(c))
		goto out;
	/* A file deleted or replaced underneath the handle is not our cache. */
	if (c->db && (stat(c->path, &st) < 0 || st.st_ino != c->ino || st.st_dev != c->dev))
		cache_drop(c);
	if (cache_reopen(c) < 0)
		goto out;
	if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		log_warn("cache: probe failed: %s", sqlite3_errmsg(c->db));
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	clock_gettime(CLOCK_MONOTONIC, &b);
	*latency_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	return rc;
}
