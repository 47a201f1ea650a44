#include "storage_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"

/* ---------------------------------------------------------- statements -- */

/* One statement, so the five counts come from one snapshot. */
static const struct pg_stmt st_stats = { "storage_admin_stats",
	"SELECT (SELECT count(*) FROM storage_entries), "
	"  (SELECT count(*) FROM filter_cache), "
	"  (SELECT count(*) FROM compilation_metadata), "
	"  (SELECT count(*) FROM storage_entries WHERE expires_at <= now()), "
	"  (SELECT count(*) FROM filter_cache WHERE expires_at <= now())", 0, true };

/* Both deletes in one statement: they succeed or fail together even
 * before the caller's COMMIT. The rows' triggers (0002_cache_notify) tell
 * every host's cache at commit. */
static const struct pg_stmt st_clear_expired = { "storage_admin_clear_expired",
	"WITH s AS (DELETE FROM storage_entries WHERE expires_at <= now() RETURNING 1), "
	"  f AS (DELETE FROM filter_cache WHERE expires_at <= now() RETURNING 1) "
	"SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f)", 0, false };

/* starts_with, not LIKE: the prefix is a literal, never a pattern. */
static const struct pg_stmt st_clear_cache = { "storage_admin_clear_cache",
	"WITH s AS (DELETE FROM storage_entries WHERE starts_with(key, 'cache/') RETURNING 1), "
	"  f AS (DELETE FROM filter_cache RETURNING 1) "
	"SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f)", 0, false };

/* relkind r/p: (partitioned) table, i/I: (partitioned) index. */
static const struct pg_stmt st_tables = { "storage_admin_tables",
	"SELECT c.relname, CASE WHEN c.relkind IN ('r', 'p') THEN 'table' ELSE 'index' END "
	"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
	"WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'i', 'I') "
	"ORDER BY c.relname COLLATE \"C\"", 0, true };

/* A fixed statement without input (VACUUM takes no parameters). */
static const char sql_vacuum[] =
	"VACUUM (ANALYZE) storage_entries, filter_cache, compilation_metadata";

/* ------------------------------------------------------------ helpers -- */

static long long num(const PGresult *r, int i, int c)
{
	return strtoll(PQgetvalue(r, i, c), NULL, 10);
}

/* Run a two-count delete: *a and *b get columns 0 and 1. */
static int clear(struct pg *pg, const struct pg_stmt *st, long long *a, long long *b)
{
	PGresult *r;
	int err;

	*a = *b = 0;
	if ((r = pg_query(pg, st, NULL, &err)) == NULL)
		return err;
	if (PQntuples(r) != 1 || PQnfields(r) != 2) {
		log_error("storage_admin: %s returned an unexpected result", st->name);
		PQclear(r);
		return PG_EBUG;
	}
	*a = num(r, 0, 0);
	*b = num(r, 0, 1);
	PQclear(r);
	return PG_OK;
}

/* ------------------------------------------------------------- public -- */

int storage_admin_stats(struct pg *pg, struct storage_admin_stats *st)
{
	PGresult *r;
	int err;

	memset(st, 0, sizeof *st);
	if ((r = pg_query(pg, &st_stats, NULL, &err)) == NULL)
		return err;
	if (PQntuples(r) != 1 || PQnfields(r) != 5) {
		log_error("storage_admin: stats returned an unexpected result");
		PQclear(r);
		return PG_EBUG;
	}
	st->storage_entries = num(r, 0, 0);
	st->filter_cache = num(r, 0, 1);
	st->compilation_metadata = num(r, 0, 2);
	st->expired_storage = num(r, 0, 3);
	st->expired_cache = num(r, 0, 4);
	PQclear(r);
	return PG_OK;
}

int storage_admin_clear_expired(struct pg *pg, long long *storage, long long *filters)
{
	return clear(pg, &st_clear_expired, storage, filters);
}

int storage_admin_clear_cache(struct pg *pg, long long *storage, long long *filters)
{
	return clear(pg, &st_clear_cache, storage, filters);
}

int storage_admin_begin_snapshot(struct pg *pg)
{
	int err;
	PGresult *r = pg_exec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &err);

	PQclear(r);
	return err;
}


int storage_admin_tables(struct pg *pg, PGresult **r)
{
	int err;

	*r = pg_query(pg, &st_tables, NULL, &err);
	return err;
}

int storage_admin_vacuum(struct pg *pg)
{
	PGresult *r;
	int err;
	/* A longer deadline for this one statement, kept on this side: a
	 * session setting would outlive it on a pooled server connection. */
	long old = pg_set_timeout(pg, STORAGE_ADMIN_VACUUM_TIMEOUT_MS);

	r = pg_exec(pg, sql_vacuum, &err);
	PQclear(r);
	pg_set_timeout(pg, old);
	return err;
}
