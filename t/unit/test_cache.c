/* cache.c on a real SQLite file and a real PostgreSQL, no mocks: opening
 * (and rebuilding) the file, read-through gets and lists (HIT, MISS, STALE,
 * BYPASS), coherence and max_age, expiry, the generation guard of
 * write-through, notifications, mark_all_stale, rebuild and verify,
 * cache_written / cache_deleted with both strategies.
 *
 * PostgreSQL: BLOQR_TEST_PG_URL, an already migrated database (run through
 * t/53-cache-unit.t, which starts one); its deployment and storage tables
 * are emptied and seeded here. Cache files: in BLOQR_TEST_DIR, or in a new
 * directory under /tmp. There is no syncer: the test plays its role with
 * cache_listener_state / cache_heartbeat / cache_apply_notifications.
 *
 * The layering rule (only src/cache*.c touches SQLite) is about src/: this
 * program opens the files with the SQLite C API to look at them from the
 * outside and to damage them. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "buf.h"
#include "cache.h"
#include "changelog.h"
#include "text.h"
#include "deployments.h"
#include "log.h"
#include "pg.h"
#include "storage.h"
#include "tap.h"

/* Seeded ids: the last two hex digits tell them apart. */
#define UUID(n) "00000000-0000-4000-8000-0000000000" #n
#define DOWN_URL "postgresql:///nope?host=/nonexistent"
#define HOW_UNSET ((enum cache_outcome)99)

static struct pg *g_pg;     /* the real PostgreSQL */
static struct pg *g_down;   /* one that is never there */
static char g_dir[512];
static bool g_own_dir;
static char g_paths[64][600];
static int g_npaths;
/* What the last cache call answered ("HIT, rc 0, 6 rows"). Messages show
 * this buffer, not values: ok()'s arguments may be evaluated before its
 * condition (which makes the call), the buffer's contents are read after. */
static char g_last[80];

/* ------------------------------------------------------------ helpers -- */

static void bail(const char *what, const char *detail)
{
	printf("Bail out! %s: %s\n", what, detail ? detail : "");
	fflush(stdout);
	exit(255);
}

static const char *how_name(enum cache_outcome h)
{
	return (unsigned)h <= CACHE_BYPASS ? cache_outcome_name(h) : "(not set)";
}

/* Run trusted SQL on the real PostgreSQL; bail out when it fails. */
__attribute__((format(printf, 1, 2)))
static void sql(const char *fmt, ...)
{
	char q[8192];
	va_list ap;
	PGresult *r;
	int err;

	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	r = pg_exec(g_pg, q, &err);
	if (r == NULL)
		bail(q, pg_last_error(g_pg));
	PQclear(r);
}

/* The first value of a query's first row as a number (-1 when none). */
__attribute__((format(printf, 1, 2)))
static long sql_long(const char *fmt, ...)
{
	char q[2048];
	va_list ap;
	PGresult *r;
	long v = -1;
	int err;

	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	r = pg_exec(g_pg, q, &err);
	if (r == NULL)
		bail(q, pg_last_error(g_pg));
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

/* A new cache file path in the test directory (removed at the end). */
static const char *new_path(const char *name)
{
	if (g_npaths == (int)(sizeof g_paths / sizeof g_paths[0]))
		bail("too many cache files", name);
	snprintf(g_paths[g_npaths], sizeof g_paths[0], "%s/cache-unit-%02d-%s.db", g_dir, g_npaths, name);
	return g_paths[g_npaths++];
}

/* Print text as TAP comment lines. */
static void diag_text(const char *text)
{
	const char *p = text, *nl;

	while (p && *p) {
		nl = strchr(p, '\n');
		printf("#   %.*s\n", nl ? (int)(nl - p) : (int)strlen(p), p);
		p = nl ? nl + 1 : NULL;
	}
}

static void remove_files(const char *path)
{
	char p[700];

	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

/* The listener is up and its heartbeat fresh: what the syncer would say. */
static void coherent_on(struct cache *c)
{
	cache_listener_state(c, true, false);
	cache_heartbeat(c, NULL);
}

static void coherent_off(struct cache *c)
{
	cache_listener_state(c, false, false);
}

/* A buffer's text, owned by the caller ("" for an empty one). */
static char *take(struct buf *b)
{
	char *s = b->data ? b->data : strdup("");

	b->data = NULL;
	buf_free(b);
	return s;
}

/* ---- SQLite from the outside ---- */

static sqlite3 *sq_open(const char *path, bool create)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);

	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* The first column of the first row of q (one optional text parameter
 * ?1), malloc'd; NULL when there is none or on error. */
static char *sq_text(const char *path, const char *q, const char *param)
{
	sqlite3 *db = sq_open(path, false);
	sqlite3_stmt *s = NULL;
	char *v = NULL;

	if (db == NULL)
		return NULL;
	if (sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK) {
		if (param)
			sqlite3_bind_text(s, 1, param, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
			v = strdup((const char *)sqlite3_column_text(s, 0));
	} else {
		printf("# sqlite: %s: %s\n", q, sqlite3_errmsg(db));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static long sq_long(const char *path, const char *q, const char *param)
{
	char *t = sq_text(path, q, param);
	long v = t ? atol(t) : -1;

	free(t);
	return v;
}

static int sq_exec(const char *path, const char *q, bool create)
{
	sqlite3 *db = sq_open(path, create);
	char *msg = NULL;
	int rc;

	if (db == NULL)
		return -1;
	rc = sqlite3_exec(db, q, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		printf("# sqlite: %s: %s\n", q, msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Rows of table t cached under key (straight from the file). */
static long sq_cached(const char *path, enum cache_tbl t, const char *key)
{
	char q[200];

	snprintf(q, sizeof q, "SELECT count(*) FROM %s WHERE %s = ?1", cache_defs[t]->name, cache_defs[t]->key_col);
	return sq_long(path, q, key);
}

static char *sq_body(const char *path, enum cache_tbl t, const char *key)
{
	char q[200];

	snprintf(q, sizeof q, "SELECT body FROM %s WHERE %s = ?1", cache_defs[t]->name, cache_defs[t]->key_col);
	return sq_text(path, q, key);
}

static long sq_rows(const char *path, const char *table)
{
	char q[200];

	snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
	return sq_long(path, q, NULL);
}

/* ---- the cache calls, with outputs preset so that "not set" shows ---- */

static int get(struct cache *c, struct pg *pg, enum cache_tbl t, const char *key, char **body,
    enum cache_outcome *how)
{
	int rc;

	*how = HOW_UNSET;
	*body = NULL;
	rc = cache_get(c, pg, t, key, body, how);
	snprintf(g_last, sizeof g_last, "%s, rc %d, %s", how_name(*how), rc, *body ? "a body" : "no body");
	return rc;
}

/* The store's own fetch: the body PostgreSQL has for key (NULL: none). */
static char *fetch_body(enum cache_tbl t, const char *key)
{
	struct cache_row row;
	char *b = NULL;

	if (cache_defs[t]->fetch(g_pg, key, &row) == 1) {
		b = row.body;
		row.body = NULL;
	}
	cache_row_free(&row);
	return b;
}

static int fetch_row(enum cache_tbl t, const char *key, struct cache_row *row)
{
	return cache_defs[t]->fetch(g_pg, key, row);
}

struct lister {
	enum cache_tbl t;
};
static const struct lister DEPLOYS = { CACHE_DEPLOYMENTS };
static const struct lister COMPILATIONS = { CACHE_COMPILATIONS };
/* The stores without a cache: these tests hand rows to the cache themselves. */
#define NOCACHE (&(const struct store){ .pg = g_pg })

static int list(struct cache *c, struct pg *pg, const struct lister *l, const struct cache_filter *f, int nf,
    long limit, char **text, long *count, enum cache_outcome *how)
{
	struct buf b = BUF_INIT;
	int rc;

	*how = HOW_UNSET;
	*count = -1;
	rc = cache_list(c, pg, l->t, f, nf, limit, &b, count, how);
	*text = take(&b);
	snprintf(g_last, sizeof g_last, "%s, rc %d, %ld rows", how_name(*how), rc, *count);
	return rc;
}

static int count_n(struct cache *c, struct pg *pg, const struct cache_filter *f, int nf, long *n,
    enum cache_outcome *how)
{
	int rc;

	*how = HOW_UNSET;
	*n = -1;
	rc = cache_count(c, pg, CACHE_DEPLOYMENTS, f, nf, n, how);
	snprintf(g_last, sizeof g_last, "%s, rc %d, n %ld", how_name(*how), rc, *n);
	return rc;
}

/* PostgreSQL's own answer to a list, straight from the store module. */
static char *pg_list_text(const struct lister *l, const struct cache_filter *f, int nf, long limit, long *n)
{
	struct buf b = BUF_INIT;

	if (cache_defs[l->t]->pg_list(g_pg, f, nf, limit, &b, n) != PG_OK)
		bail("the store's list failed", pg_last_error(g_pg));
	return take(&b);
}

/* The ids in a list of deployments, as their last two hex digits: "06 05". */
static void ids_of(const char *text, char *out, size_t len)
{
	const char *p = text ? text : "";
	size_t n = 0;

	out[0] = '\0';
	while ((p = strstr(p, "{\"id\":\"")) != NULL && n < len) {
		p += 7;
		if (strlen(p) < 36)
			break;
		n += (size_t)snprintf(out + n, len - n, "%s%.2s", n ? " " : "", p + 34);
		p += 36;
	}
}

/* ---------------------------------------------------------- the data -- */

static void seed(void)
{
	sql("TRUNCATE deployment_history, deployment_counter, storage_entries, filter_cache, compilation_metadata");
	/* 03 and 04 share a millisecond (ties go by id, descending); 05 has
	 * text that needs JSON escaping; 06 has microseconds that must not
	 * round up. Newest first: 06 05 04 03 02 01. */
	sql("INSERT INTO deployment_history (id, version, build_number, full_version, git_commit, git_branch, "
	    "  deployed_at, deployed_by, status, deployment_duration, workflow_run_id, workflow_run_url, metadata) VALUES "
	    "('" UUID(01) "', '1.0.0', 1, '1.0.0+build.1', 'aaaa', 'main', '2025-01-01 10:00:00.100+00', "
	    "  'ci', 'success', 100, NULL, NULL, NULL),"
	    "('" UUID(02) "', '1.0.0', 2, '1.0.0+build.2', 'bbbb', 'main', '2025-01-02 10:00:00.200+00', "
	    "  'ci', 'failed', NULL, 'run-2', 'https://ci.example/2', NULL),"
	    "('" UUID(03) "', '1.1.0', 1, '1.1.0+build.1', 'cccc', 'dev', '2025-01-03 10:00:00.300123+00', "
	    "  'ci', 'success', 300, NULL, NULL, '{\"pr\": 7}'),"
	    "('" UUID(04) "', '1.1.0', 2, '1.1.0+build.2', 'dddd', 'dev', '2025-01-03 10:00:00.300999+00', "
	    "  'ci', 'rollback', NULL, NULL, NULL, NULL),"
	    "('" UUID(05) "', '1.2.0', 1, '1.2.0+build.1', 'eeee', 'main', '2025-01-04 10:00:00+00', "
	    "  E'Zo\\u00eb \"q\" \\\\ \\t', 'success', 500, NULL, NULL, "
	    "  '{\"tags\": [\"a\", \"b\"], \"note\": \"x\\ny\"}'),"
	    "('" UUID(06) "', '2.0.0', 1, '2.0.0+build.1', 'ffff', 'release/2.0', '2025-01-05 10:00:00.999999+00', "
	    "  'ci', 'failed', 0, NULL, NULL, 'null')");
	sql("INSERT INTO storage_entries (key, data, expires_at, tags) VALUES "
	    "('k1', '{\"a\": 1}', NULL, NULL),"
	    "('k2', '[1, 2, {\"b\": \"c\"}]', NULL, ARRAY['t1', 't2']),"
	    "('kfut', '\"tomorrow\"', now() + interval '1 day', NULL),"
	    "('kexp', '\"gone\"', now() - interval '1 hour', NULL),"
	    "('kdel', '1', NULL, NULL),"
	    "(E'k\\'\\u00e9 /x', '{\"q\": \"\\\"quoted\\\"\"}', NULL, '{}')");
	sql("INSERT INTO filter_cache (source, content, hash, etag, expires_at) VALUES "
	    "('https://f.example/a.txt', E'||ads.example^\\n', 'h1', 'W/\"1\"', now() + interval '1 day'),"
	    "('https://f.example/old.txt', 'x', 'h2', NULL, now() - interval '1 minute')");
	sql("INSERT INTO compilation_metadata (id, config_name, \"timestamp\", source_count, rule_count, duration, "
	    "  output_path) VALUES "
	    "('" UUID(c1) "', 'cfg-a', '2025-02-01 00:00:00.001+00', 1, 10, 5, '/out/a'),"
	    "('" UUID(c2) "', 'cfg-b', '2025-02-02 00:00:00.002+00', 2, 20, 6, NULL),"
	    "('" UUID(c3) "', 'cfg-a', '2025-02-03 00:00:00.003+00', 3, 30, 7, '/out/a2')");
}

/* ---------------------------------------------------- cache_open -- */

enum prep { P_MISSING, P_EMPTY, P_RANDOM, P_TEXT, P_OTHER_APP, P_OTHER_TABLE, P_BAD_CHECKSUM, P_CORRUPT };

static int write_file(const char *path, const unsigned char *p, size_t n, long offset)
{
	int fd = open(path, O_WRONLY | O_CREAT | (offset < 0 ? O_TRUNC : 0), 0640);
	int rc = 0;

	if (fd < 0)
		return -1;
	if (offset > 0 && lseek(fd, offset, SEEK_SET) < 0)
		rc = -1;
	if (rc == 0 && write(fd, p, n) != (ssize_t)n)
		rc = -1;
	close(fd);
	return rc;
}

static int prepare_file(const char *path, enum prep kind)
{
	unsigned char junk[8192];
	uint32_t x = 2463534242u;

	remove_files(path);
	for (size_t i = 0; i < sizeof junk; i++) {   /* xorshift: the same junk every run */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		junk[i] = (unsigned char)x;
	}
	switch (kind) {
	case P_MISSING:
		return 0;
	case P_EMPTY:
		return write_file(path, junk, 0, -1);
	case P_RANDOM:
		return write_file(path, junk, sizeof junk, -1);
	case P_TEXT: {
		char text[2000];
		for (size_t i = 0; i < sizeof text; i++)
			text[i] = "this is not a database\n"[i % 23];
		return write_file(path, (const unsigned char *)text, sizeof text, -1);
	}
	case P_OTHER_APP:
		return sq_exec(path, "CREATE TABLE foo (x); INSERT INTO foo VALUES (1);", true);
	case P_OTHER_TABLE:
		/* A table of ours with other columns: the migration cannot apply. */
		return sq_exec(path, "CREATE TABLE storage_entries (x INTEGER); INSERT INTO storage_entries VALUES (1);",
		    true);
	case P_BAD_CHECKSUM:
		return sq_exec(path, "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL, "
		    "checksum TEXT NOT NULL, applied_at TEXT NOT NULL); "
		    "INSERT INTO schema_migrations VALUES ('0001', 'cache', "
		    "'0000000000000000000000000000000000000000000000000000000000000000', '2025-01-01T00:00:00Z');",
		    true);
	case P_CORRUPT:
		/* A real SQLite file (valid header) whose first page, the schema's
		 * b-tree, is overwritten: "database disk image is malformed". */
		if (sq_exec(path, "PRAGMA page_size = 4096; CREATE TABLE a (x); CREATE TABLE b (y); "
		    "INSERT INTO a VALUES (randomblob(3000)), (randomblob(3000));", true) < 0)
			return -1;
		return write_file(path, junk, 4096 - 100, 100);
	}
	return -1;
}

static void test_open(void)
{
	static const struct {
		const char *name;
		enum prep kind;
	} cases[] = {
		{ "missing file", P_MISSING },
		{ "empty file", P_EMPTY },
		{ "random bytes", P_RANDOM },
		{ "text, not a database", P_TEXT },
		{ "SQLite file of another program", P_OTHER_APP },
		{ "SQLite file with a clashing table", P_OTHER_TABLE },
		{ "SQLite file with another schema checksum", P_BAD_CHECKSUM },
		{ "SQLite file with a corrupt first page", P_CORRUPT },
	};
	char *want = fetch_body(CACHE_STORAGE, "k1");

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *name = cases[i].name;
		const char *path = new_path("open");
		struct cache *c;
		double ms;
		char *body;
		enum cache_outcome how;

		if (prepare_file(path, cases[i].kind) < 0)
			bail("cannot prepare a cache file", path);
		c = cache_open(path, 300, true);
		ok(c != NULL && cache_enabled(c), "open %s: a handle, enabled", name);
		is_int(cache_probe(c, &ms), 0, "open %s: the file answers (cache_probe)", name);
		is_int(sq_long(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
		    "('deployment_history', 'storage_entries', 'filter_cache', 'compilation_metadata', "
		    "'credentials', 'cache_tables', 'cache_state')", NULL), 7,
		    "open %s: the built-in schema is there", name);
		is_int(sq_long(path, "SELECT count(*) FROM pragma_table_info('storage_entries') WHERE name = 'body'",
		    NULL), 1, "open %s: storage_entries is the cache's table", name);
		coherent_on(c);
		ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS,
		    "open %s: first get is a MISS (%s)", name, g_last);
		if (how != HOW_UNSET)
			free(body);
		coherent_on(c);
		ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_HIT,
		    "open %s: second get is a HIT (%s)", name, g_last);
		is_str(how != HOW_UNSET ? body : NULL, want, "open %s: the HIT has PostgreSQL's body", name);
		if (how != HOW_UNSET)
			free(body);
		is_int(cache_file_generation(c), 1, "open %s: opened once", name);
		cache_close(c);
	}

	/* The file deleted, then replaced by garbage, under an open handle:
	 * noticed (cache_probe looks at once) and made anew. */
	{
		const char *path = new_path("replaced");
		const char *tmp = new_path("replacement");
		struct cache *c = cache_open(path, 300, true);
		double ms;

		ok(cache_probe(c, &ms) == 0 && cache_file_generation(c) == 1, "replaced: open");
		remove_files(path);
		is_int(cache_probe(c, &ms), 0, "deleted under the handle: probe recreates it");
		ok(access(path, F_OK) == 0, "deleted under the handle: the file is back");
		is_int(cache_file_generation(c), 2, "deleted under the handle: file generation moved on");
		if (prepare_file(tmp, P_RANDOM) < 0 || rename(tmp, path) < 0)
			bail("cannot replace the cache file", strerror(errno));
		remove_files(path);   /* the -wal and -shm of the old file too */
		if (prepare_file(tmp, P_RANDOM) < 0 || rename(tmp, path) < 0)
			bail("cannot replace the cache file", strerror(errno));
		is_int(cache_probe(c, &ms), 0, "replaced by garbage under the handle: probe rebuilds it");
		is_int(sq_rows(path, "cache_state"), 1, "replaced by garbage: the schema is back");
		is_int(cache_file_generation(c), 3, "replaced by garbage: file generation moved on");
		cache_close(c);
	}
	free(want);
}

/* ---------------------------------------------------- disabled -- */

static void test_disabled(void)
{
	const char *const paths[] = { "", NULL };
	char *want = fetch_body(CACHE_STORAGE, "k1");
	long n;
	char *all = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);

	for (size_t i = 0; i < 2; i++) {
		const char *name = paths[i] ? "\"\"" : "NULL";
		struct cache *c = cache_open(paths[i], 300, true);
		enum cache_outcome how;
		char *body, *text;
		long cnt;
		double ms;

		ok(c != NULL && !cache_enabled(c), "path %s: a handle, not enabled", name);
		coherent_on(c);
		ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_BYPASS,
		    "path %s: get answers BYPASS (%s)", name, g_last);
		is_str(body, want, "path %s: with PostgreSQL's body", name);
		free(body);
		ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_BYPASS,
		    "path %s: and again BYPASS, never HIT (%s)", name, g_last);
		free(body);
		ok(get(c, g_pg, CACHE_STORAGE, "nope", &body, &how) == 0 && how == CACHE_BYPASS && body == NULL,
		    "path %s: unknown key: BYPASS, no body (%s)", name, g_last);
		is_int(get(c, g_down, CACHE_STORAGE, "k1", &body, &how), PG_EUNAVAIL,
		    "path %s: PostgreSQL down: PG_EUNAVAIL", name);
		ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &cnt, &how) == 0 && how == CACHE_BYPASS,
		    "path %s: list answers BYPASS (%s)", name, g_last);
		is_str(text, all, "path %s: list text is PostgreSQL's", name);
		is_int(cnt, n, "path %s: list count", name);
		free(text);
		ok(count_n(c, g_pg, NULL, 0, &cnt, &how) == 0 && how == CACHE_BYPASS && cnt == 6,
		    "path %s: count answers BYPASS, 6 (%s)", name, g_last);
		ok(cache_probe(c, &ms) < 0, "path %s: probe says there is no file", name);
		ok(!cache_coherent(c), "path %s: never coherent", name);
		cache_close(c);
	}
	free(all);
	free(want);
}

/* ---------------------------------------------------- cache_get -- */

static void test_get(void)
{
	static const struct {
		const char *name;
		enum cache_tbl t;
		const char *key;
		bool in_pg;     /* PostgreSQL has the row */
		bool visible;   /* and it is not expired */
		bool asks_pg;   /* the store asks PostgreSQL (not so for a key that cannot exist) */
	} cases[] = {
		{ "storage entry", CACHE_STORAGE, "k1", true, true, true },
		{ "storage entry with tags", CACHE_STORAGE, "k2", true, true, true },
		{ "storage key with quote and UTF-8", CACHE_STORAGE, "k'\xc3\xa9 /x", true, true, true },
		{ "storage entry expiring tomorrow", CACHE_STORAGE, "kfut", true, true, true },
		{ "expired storage entry", CACHE_STORAGE, "kexp", true, false, true },
		{ "unknown storage key", CACHE_STORAGE, "nope", false, false, true },
		{ "filter list", CACHE_FILTERS, "https://f.example/a.txt", true, true, true },
		{ "expired filter list", CACHE_FILTERS, "https://f.example/old.txt", true, false, true },
		{ "deployment by id", CACHE_DEPLOYMENTS, UUID(05), true, true, true },
		{ "unknown deployment id", CACHE_DEPLOYMENTS, UUID(99), false, false, true },
		{ "deployment key not a uuid", CACHE_DEPLOYMENTS, "not-a-uuid", false, false, false },
		{ "compilation by id", CACHE_COMPILATIONS, UUID(c2), true, true, true },
	};
	const char *path = new_path("get");
	struct cache *c = cache_open(path, 300, true);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *name = cases[i].name, *key = cases[i].key;
		enum cache_tbl t = cases[i].t;
		char *want = fetch_body(t, key), *body;
		enum cache_outcome how;
		int rc;

		ok((want != NULL) == cases[i].in_pg, "%s: PostgreSQL %s the row", name, cases[i].in_pg ? "has" : "lacks");
		if (!cases[i].visible) {
			free(want);
			want = NULL;
		}
		coherent_on(c);
		rc = get(c, g_pg, t, key, &body, &how);
		ok(rc == 0 && how == CACHE_MISS, "%s: first get is a MISS (%s)", name, g_last);
		is_str(body, want, "%s: MISS body is the store's fetch body", name);
		if (how != HOW_UNSET)
			free(body);
		is_int(sq_cached(path, t, key), cases[i].in_pg ? 1 : 0, "%s: %s", name,
		    cases[i].in_pg ? "now in the cache file" : "nothing cached");

		coherent_on(c);
		rc = get(c, g_pg, t, key, &body, &how);
		ok(rc == 0 && how == (cases[i].in_pg ? CACHE_HIT : CACHE_MISS), "%s: coherent second get is a %s (%s)",
		    name, cases[i].in_pg ? "HIT" : "MISS", g_last);
		is_str(body, want, "%s: second get body", name);
		if (how != HOW_UNSET)
			free(body);

		/* HIT needs no PostgreSQL at all. */
		if (cases[i].in_pg) {
			coherent_on(c);
			rc = get(c, g_down, t, key, &body, &how);
			ok(rc == 0 && how == CACHE_HIT, "%s: HIT even with PostgreSQL down (%s)", name, g_last);
			is_str(body, want, "%s: that HIT's body", name);
			if (how != HOW_UNSET)
				free(body);
		}

		coherent_off(c);
		rc = get(c, g_pg, t, key, &body, &how);
		ok(rc == 0 && how == CACHE_MISS, "%s: listener down: MISS although cached (%s)", name, g_last);
		is_str(body, want, "%s: that MISS's body", name);
		if (how != HOW_UNSET)
			free(body);

		rc = get(c, g_down, t, key, &body, &how);
		if (cases[i].in_pg) {
			ok(rc == 0 && how == CACHE_STALE, "%s: PostgreSQL down: STALE (%s)", name, g_last);
			is_str(how != HOW_UNSET ? body : NULL, want, "%s: STALE gives the cached body", name);
			if (how != HOW_UNSET)
				free(body);
		} else if (cases[i].asks_pg) {
			is_int(rc, PG_EUNAVAIL, "%s: PostgreSQL down, nothing cached: PG_EUNAVAIL", name);
			ok(body == NULL, "%s: and no body", name);
		} else {
			ok(rc == 0 && body == NULL, "%s: PostgreSQL down, a key that cannot exist: no body (%s)", name,
			    g_last);
		}
		free(want);
	}

	/* A cached row deleted in PostgreSQL: the next MISS drops it. */
	{
		char *body;
		enum cache_outcome how;

		coherent_on(c);
		get(c, g_pg, CACHE_STORAGE, "kdel", &body, &how);
		free(body);
		is_int(sq_cached(path, CACHE_STORAGE, "kdel"), 1, "kdel: cached");
		sql("DELETE FROM storage_entries WHERE key = 'kdel'");
		coherent_off(c);
		ok(get(c, g_pg, CACHE_STORAGE, "kdel", &body, &how) == 0 && how == CACHE_MISS && body == NULL,
		    "deleted in PostgreSQL: MISS, no body (%s)", g_last);
		is_int(sq_cached(path, CACHE_STORAGE, "kdel"), 0, "deleted in PostgreSQL: dropped from the cache");
		is_int(get(c, g_down, CACHE_STORAGE, "kdel", &body, &how), PG_EUNAVAIL,
		    "deleted in PostgreSQL: no STALE copy left");
	}
	cache_close(c);
}

/* -------------------------------------------- staleness, coherence -- */

static void test_stale(void)
{
	char *want = fetch_body(CACHE_STORAGE, "k1"), *body, *text, *text2;
	enum cache_outcome how;
	long n;
	struct cache *c;
	const char *path;

	/* max_age 0: stale as soon as a millisecond has passed. */
	path = new_path("maxage0");
	c = cache_open(path, 0, true);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS, "max_age 0: MISS (%s)",
	    g_last);
	free(body);
	usleep(20000);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS,
	    "max_age 0: cached but stale: MISS again (%s)", g_last);
	is_str(body, want, "max_age 0: PostgreSQL's body");
	free(body);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS,
	    "max_age 0: list MISS (%s)", g_last);
	usleep(20000);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text2, &n, &how) == 0 && how == CACHE_MISS,
	    "max_age 0: old snapshot: list MISS again (%s)", g_last);
	is_str(text2, text, "max_age 0: same list");
	free(text2);
	coherent_off(c);
	ok(get(c, g_down, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_STALE,
	    "max_age 0, PostgreSQL down: STALE however old (%s)", g_last);
	is_str(how == CACHE_STALE ? body : NULL, want, "max_age 0: STALE body");
	if (how != HOW_UNSET)
		free(body);
	ok(list(c, g_down, &DEPLOYS, NULL, 0, 100, &text2, &n, &how) == 0 && how == CACHE_STALE,
	    "max_age 0, PostgreSQL down: list STALE from the old snapshot (%s)", g_last);
	is_str(text2, text, "max_age 0: STALE list text");
	free(text2);
	free(text);
	cache_close(c);

	/* max_age 1: a HIT, then after a wait a MISS. */
	path = new_path("maxage1");
	c = cache_open(path, 1, true);
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_HIT, "max_age 1: HIT at once (%s)",
	    g_last);
	free(body);
	usleep(1200000);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS,
	    "max_age 1: after 1.2 s a MISS (%s)", g_last);
	free(body);
	cache_close(c);

	/* A listener connected but silent for too long is not trusted. */
	path = new_path("heartbeat");
	c = cache_open(path, 300, true);
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_HIT, "heartbeat: HIT (%s)",
	    g_last);
	free(body);
	ok(cache_coherent(c), "heartbeat: coherent");
	sq_exec(path, "UPDATE cache_state SET heartbeat = heartbeat - 60000", false);
	usleep(300000);   /* the handle re-reads the state at most every 200 ms */
	ok(!cache_coherent(c), "heartbeat a minute old: not coherent");
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS,
	    "heartbeat a minute old: MISS (%s)", g_last);
	free(body);
	cache_heartbeat(c, NULL);
	usleep(300000);
	ok(cache_coherent(c), "a fresh heartbeat: coherent again");
	cache_listener_state(c, false, true);
	ok(cache_outage_since(c) > 0, "listener lost PostgreSQL: outage_since set");
	ok(!cache_coherent(c), "listener lost PostgreSQL: not coherent");
	cache_close(c);
	free(want);
}

/* ---------------------------------------------------- lists -- */

static const struct list_case {
	const char *name;
	struct cache_filter f[3];
	int nf;
	long limit;
	const char *ids;   /* newest first */
	long total;        /* cache_count */
} list_cases[] = {
	{ "all", { { NULL, NULL } }, 0, 100, "06 05 04 03 02 01", 6 },
	{ "limit 2", { { NULL, NULL } }, 0, 2, "06 05", 6 },
	{ "limit 1", { { NULL, NULL } }, 0, 1, "06", 6 },
	{ "limit 0", { { NULL, NULL } }, 0, 0, "", 6 },
	{ "status success", { { "status", "success" } }, 1, 100, "05 03 01", 3 },
	{ "status failed", { { "status", "failed" } }, 1, 100, "06 02", 2 },
	{ "status rollback", { { "status", "rollback" } }, 1, 100, "04", 1 },
	{ "version 1.1.0 (same ms: id order)", { { "version", "1.1.0" } }, 1, 100, "04 03", 2 },
	{ "version 1.0.0", { { "version", "1.0.0" } }, 1, 100, "02 01", 2 },
	{ "git_branch main", { { "git_branch", "main" } }, 1, 100, "05 02 01", 3 },
	{ "git_branch release/2.0", { { "git_branch", "release/2.0" } }, 1, 100, "06", 1 },
	{ "git_branch dev, status success", { { "git_branch", "dev" }, { "status", "success" } }, 2, 100, "03", 1 },
	{ "version, status, branch, limit 1",
		{ { "version", "1.0.0" }, { "status", "failed" }, { "git_branch", "main" } }, 3, 1, "02", 1 },
	{ "branch main, limit 2", { { "git_branch", "main" } }, 1, 2, "05 02", 3 },
	{ "status NULL = any", { { "status", NULL } }, 1, 100, "06 05 04 03 02 01", 6 },
	{ "no match", { { "git_branch", "nope" } }, 1, 100, "", 0 },
	{ "full_version", { { "full_version", "1.2.0+build.1" } }, 1, 100, "05", 1 },
};
#define NLIST ((int)(sizeof list_cases / sizeof list_cases[0]))

static void test_lists(void)
{
	const char *path = new_path("lists");
	struct cache *c = cache_open(path, 300, true);
	enum cache_outcome how;
	char *text, *text2, *want, ids[200];
	long n, n2, pn;
	int rc;

	/* The first list, then the same from the snapshot. */
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &pn);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS,
	    "list: first is a MISS (%s)", g_last);
	is_str(text, want, "list MISS: PostgreSQL's text");
	is_int(n, 6, "list MISS: 6 rows");
	is_int(sq_rows(path, "deployment_history"), 6, "list MISS: snapshot of 6 rows stored");
	is_int(sq_long(path, "SELECT complete FROM cache_tables WHERE name = 'deployment_history'", NULL), 1,
	    "list MISS: snapshot complete");
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text2, &n2, &how) == 0 && how == CACHE_HIT,
	    "list: then a HIT (%s)", g_last);
	is_str(text2, text, "list HIT: the same text byte for byte");
	is_int(n2, n, "list HIT: the same count");
	free(text2);
	coherent_on(c);
	ok(list(c, g_down, &DEPLOYS, NULL, 0, 100, &text2, &n2, &how) == 0 && how == CACHE_HIT,
	    "list HIT needs no PostgreSQL (%s)", g_last);
	free(text2);
	free(text);
	free(want);

	/* Every filter: MISS (PostgreSQL) and HIT (snapshot) agree. */
	for (int i = 0; i < NLIST; i++) {
		const struct list_case *k = &list_cases[i];

		want = pg_list_text(&DEPLOYS, k->f, k->nf, k->limit, &pn);
		ids_of(want, ids, sizeof ids);
		is_str(ids, k->ids, "%s: PostgreSQL's rows, newest first", k->name);

		is_int(cache_invalidate(c, CACHE_DEPLOYMENTS, NULL), 6, "%s: invalidate the table (6 rows)", k->name);
		coherent_on(c);
		rc = list(c, g_pg, &DEPLOYS, k->f, k->nf, k->limit, &text, &n, &how);
		ok(rc == 0 && how == CACHE_MISS, "%s: incomplete snapshot: list MISS (%s)", k->name, g_last);
		is_str(text, want, "%s: MISS text is PostgreSQL's", k->name);
		coherent_on(c);
		rc = list(c, g_pg, &DEPLOYS, k->f, k->nf, k->limit, &text2, &n2, &how);
		ok(rc == 0 && how == CACHE_HIT, "%s: list HIT (%s)", k->name, g_last);
		is_str(text2, want, "%s: HIT text is PostgreSQL's", k->name);
		ids_of(text2, ids, sizeof ids);
		is_str(ids, k->ids, "%s: HIT rows, newest first", k->name);
		is_int(n2, pn, "%s: HIT count", k->name);
		free(text);
		free(text2);

		cache_invalidate(c, CACHE_DEPLOYMENTS, NULL);
		coherent_on(c);
		ok(count_n(c, g_pg, k->f, k->nf, &n, &how) == 0 && how == CACHE_MISS && n == k->total,
		    "%s: count MISS = %ld (%s)", k->name, k->total, g_last);
		coherent_on(c);
		ok(count_n(c, g_pg, k->f, k->nf, &n, &how) == 0 && how == CACHE_HIT && n == k->total,
		    "%s: count HIT = %ld (%s)", k->name, k->total, g_last);

		/* PostgreSQL down: the complete snapshot answers, however old. */
		coherent_off(c);
		rc = list(c, g_down, &DEPLOYS, k->f, k->nf, k->limit, &text, &n, &how);
		/* limit 0 is answered by the store without asking PostgreSQL. */
		ok(rc == 0 && (how == CACHE_STALE || (k->limit == 0 && how == CACHE_MISS)),
		    "%s: PostgreSQL down: list STALE (%s)", k->name, g_last);
		is_str(text, want, "%s: STALE text", k->name);
		free(text);
		ok(count_n(c, g_down, k->f, k->nf, &n, &how) == 0 && how == CACHE_STALE && n == k->total,
		    "%s: PostgreSQL down: count STALE = %ld (%s)", k->name, k->total, g_last);
		free(want);
	}

	/* Dropping one row also ends the snapshot. */
	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	is_int(cache_invalidate(c, CACHE_DEPLOYMENTS, UUID(02)), 1, "invalidate one row: 1 dropped");
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS && n == 6,
	    "after invalidating a row: list MISS with all 6 (%s)", g_last);
	free(text);

	/* Incomplete and PostgreSQL down: nothing to stand in. */
	cache_invalidate(c, CACHE_DEPLOYMENTS, NULL);
	coherent_off(c);
	is_int(list(c, g_down, &DEPLOYS, NULL, 0, 100, &text, &n, &how), PG_EUNAVAIL,
	    "invalidated snapshot, PostgreSQL down: list PG_EUNAVAIL");
	free(text);
	is_int(count_n(c, g_down, NULL, 0, &n, &how), PG_EUNAVAIL,
	    "invalidated snapshot, PostgreSQL down: count PG_EUNAVAIL");
	cache_close(c);

	path = new_path("never");
	c = cache_open(path, 300, true);
	coherent_on(c);
	is_int(list(c, g_down, &DEPLOYS, NULL, 0, 100, &text, &n, &how), PG_EUNAVAIL,
	    "never snapshotted, PostgreSQL down: list PG_EUNAVAIL");
	free(text);
	is_int(count_n(c, g_down, NULL, 0, &n, &how), PG_EUNAVAIL,
	    "never snapshotted, PostgreSQL down: count PG_EUNAVAIL");

	/* The other snapshot table, through the same code. */
	{
		static const struct cache_filter fa[] = { { "config_name", "cfg-a" } };
		const struct cache_filter *fs[] = { NULL, fa };
		int nfs[] = { 0, 1 };

		for (int i = 0; i < 2; i++) {
			const char *name = i ? "compilations of cfg-a" : "compilations";
			want = pg_list_text(&COMPILATIONS, fs[i], nfs[i], 10, &pn);
			cache_invalidate(c, CACHE_COMPILATIONS, NULL);
			coherent_on(c);
			ok(list(c, g_pg, &COMPILATIONS, fs[i], nfs[i], 10, &text, &n, &how) == 0 && how == CACHE_MISS,
			    "%s: MISS (%s)", name, g_last);
			is_str(text, want, "%s: MISS text", name);
			free(text);
			coherent_on(c);
			ok(list(c, g_pg, &COMPILATIONS, fs[i], nfs[i], 10, &text, &n, &how) == 0 && how == CACHE_HIT,
			    "%s: HIT (%s)", name, g_last);
			is_str(text, want, "%s: HIT text", name);
			is_int(n, i ? 2 : 3, "%s: count", name);
			free(text);
			free(want);
		}
	}
	cache_close(c);
}

/* ---------------------------------------------------- generations -- */

static void test_gen_guard(void)
{
	const char *path = new_path("gen");
	struct cache *c = cache_open(path, 300, true);
	struct cache_row old, row;
	enum cache_outcome how;
	char *body, *now_body, *cached, *want, *text;
	char *payload[1];
	uint64_t g;
	long n;
	bool created;
	const char *field;

	/* Write-through with an unchanged generation stores the row. */
	g = cache_gen(c, CACHE_STORAGE);
	ok(g != UINT64_MAX, "cache_gen answers");
	is_int(storage_put(NOCACHE, "kw", "{\"w\": 1}", NULL, "[\"x\"]", &row, &created, &field), PG_OK,
	    "storage_put kw");
	cache_written(c, CACHE_STORAGE, &row, g);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "kw", &body, &how) == 0 && how == CACHE_HIT,
	    "written with the current generation: HIT (%s)", g_last);
	is_str(how != HOW_UNSET ? body : NULL, row.body, "written row's body");
	if (how != HOW_UNSET)
		free(body);
	cache_row_free(&row);

	/* The old row must not overwrite what a notification brought. */
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	is_int(fetch_row(CACHE_STORAGE, "k1", &old), 1, "the old k1");
	g = cache_gen(c, CACHE_STORAGE);
	sql("UPDATE storage_entries SET data = '{\"a\": 2}', updated_at = now() + interval '1 second' WHERE key = 'k1'");
	payload[0] = (char *)"storage_entries:k1";
	is_int(cache_apply_notifications(c, g_pg, payload, 1), 0, "notification applied");
	ok(cache_gen(c, CACHE_STORAGE) != g, "the notification moved the generation on");
	now_body = fetch_body(CACHE_STORAGE, "k1");
	ok(now_body && strcmp(now_body, old.body) != 0, "k1 changed in PostgreSQL");
	cache_written(c, CACHE_STORAGE, &old, g);
	cached = sq_body(path, CACHE_STORAGE, "k1");
	ok(cached == NULL || strcmp(cached, old.body) != 0, "late write-through: the old body is not in the file");
	free(cached);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && (how == CACHE_MISS || how == CACHE_HIT),
	    "after the late write-through: %s", g_last);
	is_str(how != HOW_UNSET ? body : NULL, now_body, "after the late write-through: the new body, never the old");
	if (how != HOW_UNSET)
		free(body);
	free(now_body);
	cache_row_free(&old);

	/* The same on the snapshot table: the old row is not listed. */
	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	is_int(fetch_row(CACHE_DEPLOYMENTS, UUID(05), &old), 1, "the old deployment 05");
	g = cache_gen(c, CACHE_DEPLOYMENTS);
	sql("UPDATE deployment_history SET status = 'rollback' WHERE id = '" UUID(05) "'");
	payload[0] = (char *)"deployment_history:" UUID(05);
	is_int(cache_apply_notifications(c, g_pg, payload, 1), 0, "deployment notification applied");
	cache_written(c, CACHE_DEPLOYMENTS, &old, g);
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0, "list after the late write-through (%s)",
	    g_last);
	is_str(text, want, "list after the late write-through: PostgreSQL's rows (05 rolled back)");
	ok(strstr(text, old.body) == NULL, "list after the late write-through: not the old 05");
	free(text);
	free(want);
	cache_row_free(&old);
	sql("UPDATE deployment_history SET status = 'success' WHERE id = '" UUID(05) "'");
	sql("UPDATE storage_entries SET data = '{\"a\": 1}' WHERE key = 'k1'");
	cache_close(c);
}

/* ---------------------------------------------------- notifications -- */

static void test_notifications(void)
{
	const char *path = new_path("notify");
	struct cache *c = cache_open(path, 300, true);
	enum cache_outcome how;
	char *body, *want, *text;
	long n;
	char *p[4];
	uint64_t gens[CACHE_NTABLES];

	/* A changed row is refreshed from PostgreSQL. */
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k2", &body, &how);
	free(body);
	sql("UPDATE storage_entries SET data = '\"new\"', tags = NULL WHERE key = 'k2'");
	p[0] = (char *)"storage_entries:k2";
	is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "storage_entries:k2 applied");
	want = fetch_body(CACHE_STORAGE, "k2");
	body = sq_body(path, CACHE_STORAGE, "k2");
	is_str(body, want, "storage_entries:k2: the file holds PostgreSQL's new body");
	free(body);
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k2", &body, &how) == 0 && how == CACHE_HIT,
	    "storage_entries:k2: then a HIT (%s)", g_last);
	is_str(how != HOW_UNSET ? body : NULL, want, "storage_entries:k2: with the new body");
	if (how != HOW_UNSET)
		free(body);
	free(want);

	/* A deleted row is dropped. */
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	is_int(sq_cached(path, CACHE_STORAGE, "k1"), 1, "k1 cached");
	sql("DELETE FROM storage_entries WHERE key = 'k1'");
	p[0] = (char *)"storage_entries:k1";
	is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "storage_entries:k1 (deleted) applied");
	is_int(sq_cached(path, CACHE_STORAGE, "k1"), 0, "deleted row: dropped from the file");
	is_int(get(c, g_down, CACHE_STORAGE, "k1", &body, &how), PG_EUNAVAIL, "deleted row: no STALE copy");

	/* Snapshot table: a new row keeps the snapshot complete and listed. */
	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	sql("INSERT INTO deployment_history (id, version, build_number, full_version, git_commit, git_branch, "
	    "deployed_at, deployed_by) VALUES ('" UUID(07) "', '3.0.0', 1, '3.0.0+build.1', 'abab', 'main', "
	    "'2025-01-06 00:00:00+00', 'ci')");
	p[0] = (char *)"deployment_history:" UUID(07);
	is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "deployment_history:07 applied");
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_HIT,
	    "new deployment notified: list still a HIT (%s)", g_last);
	is_str(text, want, "new deployment notified: the HIT lists it like PostgreSQL");
	free(text);
	free(want);

	/* Table only: the table's copy is emptied. */
	p[0] = (char *)"deployment_history";
	is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "deployment_history (table) applied");
	is_int(sq_rows(path, "deployment_history"), 0, "deployment_history (table): copy emptied");
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS && n == 7,
	    "deployment_history (table): list MISS (%s)", g_last);
	free(text);
	sql("DELETE FROM deployment_history WHERE id = '" UUID(07) "'");

	/* Credentials: users:<id> drops that user's, sessions:<hash> one. */
	{
		static const struct {
			const char *hash;
			struct cache_cred cr;
		} creds[] = {
			{ "hash-a1", { 's', "sess-a1", "user-a", "admin", false, 1893456000000, 1700000000000, false } },
			{ "hash-a2", { 't', "tok-a2", "user-a", "admin", false, 0, 1700000000001, false } },
			{ "hash-b1", { 's', "sess-b1", "user-b", "readonly", true, 1893456000002, 1700000000002, false } },
		};
		struct cache_cred got;
		int64_t g = text_now_ms();   /* a lookup that began now */

		for (size_t i = 0; i < 3; i++) {
			cache_cred_put(c, creds[i].hash, &creds[i].cr, g);
			memset(&got, 0, sizeof got);
			is_int(cache_cred_get(c, creds[i].hash, &got), 1, "credential %s cached", creds[i].hash);
			ok(got.kind == creds[i].cr.kind && !strcmp(got.cred_id, creds[i].cr.cred_id) &&
			    !strcmp(got.user_id, creds[i].cr.user_id) && !strcmp(got.role, creds[i].cr.role) &&
			    got.banned == creds[i].cr.banned && got.expires_ms == creds[i].cr.expires_ms &&
			    got.confirmed_ms == creds[i].cr.confirmed_ms, "credential %s reads back as put", creds[i].hash);
		}
		p[0] = (char *)"users:user-a";
		is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "users:user-a applied");
		is_int(cache_cred_get(c, "hash-a1", &got), 0, "users:user-a: its session dropped");
		is_int(cache_cred_get(c, "hash-a2", &got), 0, "users:user-a: its token dropped");
		is_int(cache_cred_get(c, "hash-b1", &got), 1, "users:user-a: user-b's session kept");
		cache_cred_put(c, "hash-a3", &creds[0].cr, g);
		is_int(cache_cred_get(c, "hash-a3", &got), 0, "a credential read before the change is not kept");
		p[0] = (char *)"sessions:hash-b1";
		is_int(cache_apply_notifications(c, g_pg, p, 1), 0, "sessions:hash-b1 applied");
		is_int(cache_cred_get(c, "hash-b1", &got), 0, "sessions:hash-b1: dropped");
	}

	/* Unknown tables are ignored; a batch is applied whole. */
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "kfut", &body, &how);
	free(body);
	for (int t = 0; t < CACHE_NTABLES; t++)
		gens[t] = cache_gen(c, (enum cache_tbl)t);
	p[0] = (char *)"nope:1";
	p[1] = (char *)"nope";
	p[2] = (char *)"storage_entriesX:kfut";
	is_int(cache_apply_notifications(c, g_pg, p, 3), 0, "unknown tables: applied (ignored)");
	for (int t = 0; t < CACHE_NTABLES; t++)
		ok(cache_gen(c, (enum cache_tbl)t) == gens[t], "unknown tables: %s generation unchanged",
		    cache_table_name((enum cache_tbl)t));
	is_int(sq_cached(path, CACHE_STORAGE, "kfut"), 1, "unknown tables: kfut still cached");

	sql("UPDATE storage_entries SET data = '\"batch\"' WHERE key = 'kfut'");
	sql("DELETE FROM storage_entries WHERE key = 'k2'");
	p[0] = (char *)"storage_entries:kfut";
	p[1] = (char *)"nope:x";
	p[2] = (char *)"storage_entries:k2";
	p[3] = (char *)"storage_entries:never-seen";
	is_int(cache_apply_notifications(c, g_pg, p, 4), 0, "a batch of four applied");
	want = fetch_body(CACHE_STORAGE, "kfut");
	body = sq_body(path, CACHE_STORAGE, "kfut");
	is_str(body, want, "batch: kfut refreshed");
	free(body);
	free(want);
	is_int(sq_cached(path, CACHE_STORAGE, "k2"), 0, "batch: k2 dropped");
	is_int(sq_cached(path, CACHE_STORAGE, "never-seen"), 0, "batch: an absent key stays absent");
	cache_close(c);
	seed();
}

/* ---------------------------------------------------- mark_all_stale -- */

static void test_mark_all_stale(void)
{
	static const struct {
		enum cache_tbl t;
		const char *key;
	} rows[] = {
		{ CACHE_STORAGE, "k1" }, { CACHE_STORAGE, "k2" }, { CACHE_FILTERS, "https://f.example/a.txt" },
		{ CACHE_DEPLOYMENTS, UUID(03) }, { CACHE_COMPILATIONS, UUID(c1) },
	};
	const size_t nrows = sizeof rows / sizeof rows[0];
	const char *path = new_path("markstale");
	struct cache *c = cache_open(path, 300, true);
	struct cache_cred cr = { 's', "sess", "user-x", "user", false, 0, 1, false }, got;
	enum cache_outcome how;
	char *body, *text;
	long n;

	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	list(c, g_pg, &COMPILATIONS, NULL, 0, 100, &text, &n, &how);
	free(text);
	for (size_t i = 0; i < nrows; i++) {
		get(c, g_pg, rows[i].t, rows[i].key, &body, &how);
		free(body);
		coherent_on(c);
		ok(get(c, g_pg, rows[i].t, rows[i].key, &body, &how) == 0 && how == CACHE_HIT, "before: %s %s HIT (%s)",
		    cache_table_name(rows[i].t), rows[i].key, g_last);
		free(body);
	}
	cache_cred_put(c, "hash-x", &cr, text_now_ms());
	is_int(cache_cred_get(c, "hash-x", &got), 1, "before: credential cached");

	is_int(cache_mark_all_stale(c), 0, "cache_mark_all_stale");
	is_int(sq_long(path, "SELECT count(*) FROM cache_tables WHERE complete <> 0", NULL), 0,
	    "after: no table complete");
	/* Stale: cached before its table's valid_after (one small write). */
	is_int(sq_long(path, "SELECT count(*) FROM storage_entries WHERE cached_at >= "
	    "(SELECT valid_after FROM cache_tables WHERE name = 'storage_entries')", NULL) +
	    sq_long(path, "SELECT count(*) FROM deployment_history WHERE cached_at >= "
	    "(SELECT valid_after FROM cache_tables WHERE name = 'deployment_history')", NULL) +
	    sq_long(path, "SELECT count(*) FROM filter_cache WHERE cached_at >= "
	    "(SELECT valid_after FROM cache_tables WHERE name = 'filter_cache')", NULL) +
	    sq_long(path, "SELECT count(*) FROM compilation_metadata WHERE cached_at >= "
	    "(SELECT valid_after FROM cache_tables WHERE name = 'compilation_metadata')", NULL), 0,
	    "after: every row stale");
	is_int(cache_cred_get(c, "hash-x", &got), 0, "after: credentials gone");
	is_int(sq_rows(path, "credentials"), 0, "after: credentials table empty");

	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS,
	    "after: deployment list MISS (%s)", g_last);
	free(text);
	coherent_on(c);
	ok(list(c, g_pg, &COMPILATIONS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS,
	    "after: compilation list MISS (%s)", g_last);
	free(text);
	cache_mark_all_stale(c);
	for (size_t i = 0; i < nrows; i++) {
		coherent_on(c);
		ok(get(c, g_pg, rows[i].t, rows[i].key, &body, &how) == 0 && how == CACHE_MISS, "after: %s %s MISS (%s)",
		    cache_table_name(rows[i].t), rows[i].key, g_last);
		free(body);
	}
	cache_close(c);
}

/* ---------------------------------------------------- rebuild, verify -- */

static void test_rebuild_verify(void)
{
	const char *path = new_path("rebuild");
	struct cache *c = cache_open(path, 300, true);
	struct cache_cred cr = { 's', "sess", "user-x", "user", false, 0, 1, false }, got;
	struct cache_table_status st;
	struct buf report = BUF_INIT;
	long rows[CACHE_NTABLES], want[CACHE_NTABLES] = { 0 };
	enum cache_outcome how;
	char *body, *text;
	long n, d;

	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	get(c, g_pg, CACHE_FILTERS, "https://f.example/a.txt", &body, &how);
	free(body);
	cache_cred_put(c, "hash-x", &cr, text_now_ms());

	want[CACHE_DEPLOYMENTS] = sql_long("SELECT count(*) FROM deployment_history");
	want[CACHE_COMPILATIONS] = sql_long("SELECT count(*) FROM compilation_metadata");
	is_int(cache_rebuild(c, g_pg, rows), 0, "cache_rebuild");
	for (int t = 0; t < CACHE_NTABLES; t++) {
		is_int(rows[t], want[t], "rebuild: %s rows", cache_table_name((enum cache_tbl)t));
		is_int(cache_table_status(c, (enum cache_tbl)t, &st), 0, "rebuild: status of %s",
		    cache_table_name((enum cache_tbl)t));
		is_int(st.rows, want[t], "rebuild: status of %s: rows", cache_table_name((enum cache_tbl)t));
		if (t == CACHE_DEPLOYMENTS || t == CACHE_COMPILATIONS)
			ok(st.last_full_sync_ms > 0, "rebuild: %s has a full sync time", cache_table_name((enum cache_tbl)t));
	}
	is_int(cache_cred_get(c, "hash-x", &got), 0, "rebuild: credentials dropped");
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_HIT && n == 6,
	    "rebuild: the deployment list is a HIT (%s)", g_last);
	free(text);

	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k2", &body, &how);
	free(body);
	d = cache_verify(c, g_pg, &report);
	is_int(d, 0, "verify: no differences");
	ok(report.len == 0, "verify: empty report");
	diag_text(report.data);
	buf_reset(&report);

	sq_exec(path, "UPDATE deployment_history SET body = '{\"tampered\":true}' WHERE id = '" UUID(03) "'", false);
	d = cache_verify(c, g_pg, &report);
	is_int(d, 1, "verify after changing a body: 1 difference");
	ok(report.data && strstr(report.data, UUID(03)) && strstr(report.data, "deployment_history"),
	    "verify names the table and key");
	diag_text(report.data);
	buf_reset(&report);

	sq_exec(path, "INSERT INTO storage_entries (key, expires_at, body, cached_at) VALUES ('ghost', NULL, '{}', 1)",
	    false);
	d = cache_verify(c, g_pg, &report);
	is_int(d, 2, "verify with a row PostgreSQL lacks: 2 differences");
	ok(report.data && strstr(report.data, "ghost"), "verify names the ghost");
	diag_text(report.data);
	buf_free(&report);
	cache_close(c);
}

/* ------------------------------------------- cache_written, cache_deleted -- */

static void test_written_deleted(void)
{
	const struct deployment_in in = { "3.0.0", "abcdef", "main", "unit", NULL, 42, NULL, NULL, "{\"u\": 1}" };
	struct cache_row row;
	enum cache_outcome how;
	char *body, *text, *want;
	long n;
	uint64_t g;
	bool created, expired;
	const char *field;
	const char *path;
	struct cache *c;

	/* lazy: a write drops the cached copy. */
	path = new_path("lazy");
	c = cache_open(path, 300, false);
	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k1", &body, &how);
	free(body);
	is_int(sq_cached(path, CACHE_STORAGE, "k1"), 1, "lazy: a read still fills the cache");
	g = cache_gen(c, CACHE_STORAGE);
	is_int(storage_put(NOCACHE, "k1", "{\"lazy\": true}", NULL, NULL, &row, &created, &field), PG_OK, "lazy: put k1");
	cache_written(c, CACHE_STORAGE, &row, g);
	is_int(sq_cached(path, CACHE_STORAGE, "k1"), 0, "lazy: cache_written dropped k1 instead of storing it");
	coherent_on(c);
	ok(get(c, g_pg, CACHE_STORAGE, "k1", &body, &how) == 0 && how == CACHE_MISS, "lazy: next get a MISS (%s)",
	    g_last);
	is_str(body, row.body, "lazy: with the written body");
	free(body);
	cache_row_free(&row);

	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	g = cache_gen(c, CACHE_DEPLOYMENTS);
	is_int(deployments_record(NOCACHE, &in, &row), PG_OK, "lazy: record a deployment");
	cache_written(c, CACHE_DEPLOYMENTS, &row, g);
	is_int(sq_cached(path, CACHE_DEPLOYMENTS, row.key), 0, "lazy: the new deployment is not stored");
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS,
	    "lazy: the snapshot ended: list MISS (%s)", g_last);
	is_str(text, want, "lazy: list is PostgreSQL's, with the new deployment");
	free(text);
	free(want);
	sql("DELETE FROM deployment_history WHERE id = '%s'", row.key);
	sql("DELETE FROM deployment_counter");
	cache_row_free(&row);
	cache_close(c);

	/* write-through: the written row joins the complete snapshot. */
	path = new_path("writethrough");
	c = cache_open(path, 300, true);
	coherent_on(c);
	list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how);
	free(text);
	g = cache_gen(c, CACHE_DEPLOYMENTS);
	is_int(deployments_record(NOCACHE, &in, &row), PG_OK, "write-through: record a deployment");
	cache_written(c, CACHE_DEPLOYMENTS, &row, g);
	body = sq_body(path, CACHE_DEPLOYMENTS, row.key);
	is_str(body, row.body, "write-through: the new deployment stored as written");
	free(body);
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_HIT && n == 7,
	    "write-through: list still a HIT, 7 rows (%s)", g_last);
	is_str(text, want, "write-through: HIT equals PostgreSQL's list");
	free(text);
	free(want);

	g = cache_gen(c, CACHE_DEPLOYMENTS);
	{
		char fv[120];
		snprintf(fv, sizeof fv, "%s", row.cols[DEPLOY_COL_FULL_VERSION]);
		cache_row_free(&row);
		is_int(deployments_rollback(NOCACHE, fv, &row), BLOQR_OK, "write-through: roll back %s", fv);
	}
	cache_written(c, CACHE_DEPLOYMENTS, &row, g);
	want = pg_list_text(&DEPLOYS, (const struct cache_filter[]){ { "status", "rollback" } }, 1, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, (const struct cache_filter[]){ { "status", "rollback" } }, 1, 100, &text, &n, &how)
	    == 0 && how == CACHE_HIT && n == 2, "write-through: rolled back one listed from the cache (%s)",
	    g_last);
	is_str(text, want, "write-through: rollback list equals PostgreSQL's");
	free(text);
	free(want);

	/* cache_deleted: one key keeps the snapshot complete; NULL ends it. */
	sql("DELETE FROM deployment_history WHERE id = '%s'", row.key);
	is_int(cache_deleted(c, CACHE_DEPLOYMENTS, row.key), 0, "cache_deleted one deployment");
	is_int(sq_cached(path, CACHE_DEPLOYMENTS, row.key), 0, "cache_deleted: gone from the file");
	want = pg_list_text(&DEPLOYS, NULL, 0, 100, &n);
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_HIT && n == 6,
	    "cache_deleted one key: list still a HIT, 6 rows (%s)", g_last);
	is_str(text, want, "cache_deleted one key: HIT equals PostgreSQL's list");
	free(text);
	free(want);
	cache_row_free(&row);

	is_int(cache_deleted(c, CACHE_DEPLOYMENTS, NULL), 0, "cache_deleted(NULL): the whole table");
	is_int(sq_rows(path, "deployment_history"), 0, "cache_deleted(NULL): table copy empty");
	coherent_on(c);
	ok(list(c, g_pg, &DEPLOYS, NULL, 0, 100, &text, &n, &how) == 0 && how == CACHE_MISS && n == 6,
	    "cache_deleted(NULL): list MISS (%s)", g_last);
	free(text);

	coherent_on(c);
	get(c, g_pg, CACHE_STORAGE, "k2", &body, &how);
	free(body);
	is_int(storage_delete(NOCACHE, "k2", &row, &expired), BLOQR_OK, "storage_delete k2");
	cache_row_free(&row);
	is_int(cache_deleted(c, CACHE_STORAGE, "k2"), 0, "cache_deleted k2");
	is_int(sq_cached(path, CACHE_STORAGE, "k2"), 0, "cache_deleted k2: gone from the file");
	is_int(get(c, g_down, CACHE_STORAGE, "k2", &body, &how), PG_EUNAVAIL, "cache_deleted k2: no STALE copy");
	cache_close(c);
	seed();
}

/* ---------------------------------------------------------------- main -- */

/* ------------------------------------------------ pg_each (snapshots) -- */

struct each_ctx {
	long rows, sum, stop_at;
	long kill_at;            /* at this row, terminate the backend (another connection) */
	const char *url;
	int pid;
};

static int each_row(void *ctx, const PGresult *r, int i)
{
	struct each_ctx *e = ctx;

	e->rows++;
	e->sum += atol(PQgetvalue(r, i, 0));
	if (e->kill_at > 0 && e->rows == e->kill_at) {
		char q[80];
		PGconn *k = PQconnectdb(e->url);
		snprintf(q, sizeof q, "SELECT pg_terminate_backend(%d)", e->pid);
		PQclear(PQexec(k, q));
		PQfinish(k);
	}
	return e->stop_at > 0 && e->rows == e->stop_at ? PG_EBUG : PG_OK;
}

/* Snapshots stream their table through pg_each: every row once, in
 * order, and a stop (or an error) leaves the connection ready. */
static void test_pg_each(const char *url)
{
	static const struct pg_stmt many = { "test_each_many",
		"SELECT g FROM generate_series(1, 200000) g", 0, true };
	static const struct pg_stmt broken = { "test_each_broken",
		"SELECT 10 / (5 - g) FROM generate_series(1, 10) g", 0, true };
	static const struct pg_stmt one = { "test_each_one", "SELECT 1", 0, true };
	struct each_ctx e = { 0, 0, 0, 0, NULL, 0 };
	PGresult *r;
	int err;

	is_int(pg_each(g_pg, &many, NULL, each_row, &e), PG_OK, "pg_each: 200000 rows");
	is_int(e.rows, 200000, "pg_each: each row once");
	is_int(e.sum, 200000L * 200001 / 2, "pg_each: all of them");

	e = (struct each_ctx){ 0, 0, 10, 0, NULL, 0 };
	is_int(pg_each(g_pg, &many, NULL, each_row, &e), PG_EBUG, "pg_each: the callback's error is returned");
	is_int(e.rows, 10, "pg_each: and no row after it");
	r = pg_query(g_pg, &one, NULL, &err);
	ok(r != NULL && err == PG_OK, "pg_each: the connection is ready after a stop");
	PQclear(r);

	e = (struct each_ctx){ 0, 0, 0, 0, NULL, 0 };
	is_int(pg_each(g_pg, &broken, NULL, each_row, &e), PG_EINPUT, "pg_each: a failing statement's error");
	ok(e.rows < 5, "pg_each: rows before the error only");
	r = pg_query(g_pg, &one, NULL, &err);
	ok(r != NULL && err == PG_OK, "pg_each: the connection is ready after an error");
	PQclear(r);

	e = (struct each_ctx){ 0, 0, 0, 0, NULL, 0 };
	is_int(pg_each(g_down, &one, NULL, each_row, &e), PG_EUNAVAIL, "pg_each: PostgreSQL down");
	is_int(e.rows, 0, "pg_each: no row");

	/* The connection dies halfway: the rows already seen are not sent
	 * again from a new connection (a statement is retried only before). */
	e = (struct each_ctx){ 0, 0, 0, 1000, url, PQbackendPID(pg_conn(g_pg)) };
	is_int(pg_each(g_pg, &many, NULL, each_row, &e), PG_EUNAVAIL, "pg_each: connection lost halfway");
	ok(e.rows >= 1000 && e.rows < 200000, "pg_each: no row twice, none after the loss (%ld)", e.rows);
	e = (struct each_ctx){ 0, 0, 0, 0, NULL, 0 };
	is_int(pg_each(g_pg, &many, NULL, each_row, &e), PG_OK, "pg_each: reconnects for the next statement");
	is_int(e.rows, 200000, "pg_each: and sees every row");
}

/* pg_current_snapshot() now, as the syncer's ping takes it (caller frees). */
static char *snapshot_now(void)
{
	PGresult *r;
	int err;
	char *s;

	r = pg_exec(g_pg, "SELECT pg_current_snapshot()::text", &err);
	if (r == NULL)
		bail("snapshot", pg_last_error(g_pg));
	s = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (s == NULL)
		bail("snapshot", "out of memory");
	return s;
}

static char g_dbid[CHANGELOG_ID_MAX + 1];

/* changelog_since at a position as given: 1 when payload is among what
 * it returned, 0 when not; -1 for CHANGELOG_GAP, -2 for an error. n gets
 * the payloads. */
static int since_raw(const char *pos, const char *payload, int *n)
{
	PGresult *r = NULL;
	int rc = changelog_since(g_pg, pos, &r), found = 0;

	*n = 0;
	if (rc == CHANGELOG_GAP)
		return r == NULL ? -1 : -2;
	if (rc != PG_OK)
		return -2;
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, 2))
			continue;
		(*n)++;
		if (strcmp(PQgetvalue(r, i, 2), payload) == 0)
			found = 1;
	}
	PQclear(r);
	return found;
}

/* The same at this database's position for snapshot. */
static int since_has(const char *snapshot, const char *payload, int *n)
{
	char pos[CHANGELOG_POSITION_MAX + 1];

	if (changelog_position(pos, sizeof pos, g_dbid, snapshot) < 0)
		bail("changelog_position", snapshot);
	return since_raw(pos, payload, n);
}

/* The position a cache file keeps, and PostgreSQL's change log read from
 * a position: what committed outside it, in commit order's terms (a
 * transaction that began before the position and committed after it is
 * outside it), and the cases where the log cannot tell. */
static void test_changelog(const char *url)
{
	const char *path = new_path("position");
	struct cache *c = cache_open(path, 300, true);
	char buf[CHANGELOG_POSITION_MAX + 1], small[8];
	struct pg *other = pg_new(url, 10000, "test_cache-other");
	char *p0, *p1, *p2;
	PGresult *r;
	int err, n;

	/* The position in the cache file. */
	is_int(cache_position(c, buf, sizeof buf), 0, "a new file records no position");
	cache_heartbeat(c, "db 100:105:101,103");
	is_int(cache_position(c, buf, sizeof buf), 1, "a heartbeat records its position");
	is_str(buf, "db 100:105:101,103", "as given");
	cache_heartbeat(c, NULL);
	cache_position(c, buf, sizeof buf);
	is_str(buf, "db 100:105:101,103", "a heartbeat with NULL keeps the last");
	is_int(cache_position(c, small, sizeof small), 0, "one longer than the caller's buffer reads as none");
	cache_heartbeat(c, "");
	is_int(cache_position(c, buf, sizeof buf), 0, "a heartbeat with \"\" records none");
	cache_heartbeat(c, "db 100:105:");
	{
		long rows[CACHE_NTABLES];
		is_int(cache_rebuild(c, g_pg, rows), BLOQR_OK, "a rebuild");
		is_int(cache_position(c, buf, sizeof buf), 0, "forgets the position (it may be of another history)");
	}
	cache_close(c);

	/* This database's identity; positions. */
	is_int(changelog_identity(g_pg, g_dbid, sizeof g_dbid), PG_OK, "the database's identity");
	is_int((long)strlen(g_dbid), 36, "a UUID");
	is_int(changelog_position(buf, sizeof buf, g_dbid, "1:2:"), 0, "a position");
	ok(strncmp(buf, g_dbid, 36) == 0 && strcmp(buf + 36, " 1:2:") == 0, "is \"<id> <snapshot>\"");
	is_int(changelog_position(buf, sizeof buf, "", "1:2:"), -1, "none without an identity");
	is_str(buf, "", "(empty)");
	is_int(changelog_position(small, sizeof small, g_dbid, "1:2:"), -1, "none past the buffer");

	/* What committed outside a position. */
	p0 = snapshot_now();
	sql("INSERT INTO storage_entries (key, data) VALUES ('log-a', '1')");
	is_int(since_has(p0, "storage_entries:log-a", &n), 1, "a change after the position is outside it");
	is_int(n, 1, "and only that one");
	p1 = snapshot_now();
	is_int(since_has(p1, "storage_entries:log-a", &n), 0, "inside a later position it is not");
	is_int(n, 0, "nothing is outside the latest position");

	/* A transaction that began before the position and commits after it:
	 * its xid is below the position's xmax, which a sequence would get
	 * wrong. */
	if (other == NULL || pg_connect(other) != PG_OK)
		bail("second connection", other ? pg_last_error(other) : "out of memory");
	r = pg_exec(other, "BEGIN; UPDATE storage_entries SET data = '2' WHERE key = 'log-a'", &err);
	if (!ok(r != NULL, "a writer begins and changes a row"))
		diag_text(pg_last_error(other));
	PQclear(r);
	p2 = snapshot_now();
	sql("UPDATE storage_entries SET data = '3' WHERE key = 'k2'");
	r = pg_exec(other, "COMMIT", &err);
	PQclear(r);
	is_int(since_has(p2, "storage_entries:log-a", &n), 1,
	    "a transaction in progress at the position, committed after it, is outside it");
	is_int(since_has(p2, "storage_entries:k2", &n), 1, "as is one that began after it");
	is_int(n, 2, "each payload once");
	is_int(since_has(p1, "storage_entries:log-a", &n), 1, "an earlier position holds both changes to log-a...");
	is_int(n, 2, "...as one payload, beside k2's");

	/* Where the log cannot tell. */
	is_int(since_raw("", "x", &n), -1, "no position: a gap");
	is_int(since_raw(p1, "x", &n), -1, "a snapshot without the database's identity: a gap");
	is_int(since_has("not a snapshot", "x", &n), -1, "a malformed position: a gap, not an error");
	is_int(since_has("999999999:999999999:", "x", &n), -1, "a position ahead of the server (a restored backup): a gap");
	{
		char other_db[CHANGELOG_POSITION_MAX + 1];
		changelog_position(other_db, sizeof other_db, "00000000-0000-4000-8000-000000000000", p1);
		is_int(since_raw(other_db, "x", &n), -1, "a position in another database: a gap");
	}

	/* Pruning: rows below the position's xmin, with the horizon. */
	free(p1);
	p1 = snapshot_now();
	ok(changelog_prune(g_pg, p1) >= 3, "pruning below a position deletes the rows before it");
	is_int(sql_long("SELECT count(*) FROM bloqr_cache_log WHERE payload LIKE 'storage_entries:log-a'"), 0,
	    "they are gone");
	is_int(since_has(p0, "storage_entries:log-a", &n), -1, "a position older than the horizon: a gap");
	is_int(since_has(p1, "storage_entries:log-a", &n), 0, "the pruning position itself is still covered");
	is_int(changelog_prune(g_pg, p0), 0, "pruning below an older position deletes nothing");
	is_int(since_has(p1, "x", &n), 0, "and does not move the horizon back");

	free(p0);
	free(p1);
	free(p2);
	pg_free(other);
}

int main(void)
{
	const char *url = getenv("BLOQR_TEST_PG_URL");
	const char *dir = getenv("BLOQR_TEST_DIR");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (url == NULL || *url == '\0') {
		printf("1..0 # SKIP needs BLOQR_TEST_PG_URL (run through t/53-cache-unit.t)\n");
		return 0;
	}
	if (getenv("BLOQR_TEST_VERBOSE") == NULL)
		log_threshold = LOG_LVL_WARN;
	if (dir && *dir) {
		snprintf(g_dir, sizeof g_dir, "%s", dir);
	} else {
		snprintf(g_dir, sizeof g_dir, "/tmp/bloqr-cache-unit-XXXXXX");
		if (mkdtemp(g_dir) == NULL)
			bail("mkdtemp", strerror(errno));
		g_own_dir = true;
	}
	g_pg = pg_new(url, 10000, "test_cache");
	g_down = pg_new(DOWN_URL, 10000, "test_cache-down");
	if (g_pg == NULL || g_down == NULL)
		bail("pg_new", "out of memory");
	if (pg_connect(g_pg) != PG_OK)
		bail("cannot connect to BLOQR_TEST_PG_URL", pg_last_error(g_pg));
	seed();

	test_open();
	test_disabled();
	test_get();
	test_stale();
	test_lists();
	test_gen_guard();
	test_notifications();
	test_mark_all_stale();
	test_rebuild_verify();
	test_written_deleted();
	test_pg_each(url);
	test_changelog(url);

	for (int i = 0; i < g_npaths; i++)
		remove_files(g_paths[i]);
	if (g_own_dir)
		rmdir(g_dir);
	pg_free(g_down);
	pg_free(g_pg);
	return done_testing();
}
