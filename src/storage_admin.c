#include "storage_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "jsonx.h"
#include "log.h"
#include "pg.h"
#include "storage.h"

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

int storage_admin_clear(const struct store *s, bool expired, long long *storage, long long *filters)
{
	struct json_object *details = NULL;
	int err;

	*storage = *filters = 0;
	if ((err = pg_begin(s->pg)) != BLOQR_OK)
		return err;
	if ((err = clear(s->pg, expired ? &st_clear_expired : &st_clear_cache, storage, filters)) != BLOQR_OK)
		goto fail;
	if ((details = json_object_new_object()) == NULL ||
	    jsonx_add_int(details, "storage_entries", *storage) < 0 ||
	    jsonx_add_int(details, "filter_cache", *filters) < 0) {
		err = BLOQR_ENOMEM;
		goto fail;
	}
	if ((err = audit_write(s, expired ? "storage.clear_expired" : "storage.clear_cache", NULL, details))
	    != BLOQR_OK || (err = pg_commit(s->pg)) != BLOQR_OK)
		goto fail;
	json_object_put(details);
	/* Committed: drop the tables from this host's cache at once rather
	 * than wait for our own NOTIFYs. Whole tables: the rows went by a
	 * condition, not by key. If the cache cannot, the syncer will. */
	if ((*storage > 0 && cache_deleted(s->cache, CACHE_STORAGE, NULL) != BLOQR_OK) ||
	    (*filters > 0 && cache_deleted(s->cache, CACHE_FILTERS, NULL) != BLOQR_OK))
		log_warn("storage_admin: this host's cache could not drop the deleted rows at once");
	return BLOQR_OK;
fail:
	json_object_put(details);
	pg_rollback(s->pg);
	*storage = *filters = 0;
	return err;
}

int storage_admin_export(const struct store *s, struct buf *out)
{
	PGresult *r;
	long n;
	int err;

	/* One snapshot for the three tables. */
	if ((r = pg_exec(s->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &err)) == NULL)
		return err;
	PQclear(r);
	buf_puts(out, "\"storage_entries\":[");
	if ((err = storage_export_entries(s->pg, STORAGE_ADMIN_EXPORT_ENTRIES, out, &n)) != BLOQR_OK)
		goto fail;
	buf_puts(out, "],\"filter_cache\":[");
	if ((err = storage_export_filters(s->pg, STORAGE_ADMIN_EXPORT_FILTERS, out, &n)) != BLOQR_OK)
		goto fail;
	buf_puts(out, "],\"compilation_metadata\":[");
	if ((err = storage_export_compilations(s->pg, STORAGE_ADMIN_EXPORT_COMPILATIONS, out, &n)) != BLOQR_OK)
		goto fail;
	buf_puts(out, "]");
	if ((err = pg_commit(s->pg)) != BLOQR_OK)
		goto fail;
	return out->oom ? BLOQR_ENOMEM : BLOQR_OK;
fail:
	pg_rollback(s->pg);
	return err;
}


int storage_admin_tables(struct pg *pg, struct json_object **tables)
{
	PGresult *r;
	int err;

	if ((*tables = NULL, r = pg_query(pg, &st_tables, NULL, &err)) == NULL)
		return err;
	if ((*tables = json_object_new_array()) == NULL)
		goto oom;
	for (int i = 0; i < PQntuples(r); i++) {
		struct json_object *o = json_object_new_object();
		if (o == NULL || jsonx_add_str(o, "name", PQgetvalue(r, i, 0)) < 0 ||
		    jsonx_add_str(o, "type", PQgetvalue(r, i, 1)) < 0 || json_object_array_add(*tables, o) < 0) {
			json_object_put(o);
			goto oom;
		}
	}
	PQclear(r);
	return BLOQR_OK;
oom:
	json_object_put(*tables);
	*tables = NULL;
	PQclear(r);
	return BLOQR_ENOMEM;
}

static int vacuum_pg(struct pg *pg)
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

int storage_admin_vacuum(const struct store *s, enum storage_admin_cache_vacuum *cache)
{
	struct json_object *details;
	int err;

	*cache = STORAGE_ADMIN_CACHE_DISABLED;
	if ((err = vacuum_pg(s->pg)) != BLOQR_OK)
		return err;
	/* PostgreSQL is what matters; the cache is this host's copy. */
	if (cache_enabled(s->cache)) {
		*cache = cache_vacuum(s->cache) < 0 ? STORAGE_ADMIN_CACHE_FAILED : STORAGE_ADMIN_CACHE_VACUUMED;
		if (*cache == STORAGE_ADMIN_CACHE_FAILED)
			log_warn("storage_admin: VACUUM of the L1 cache failed");
	}
	if ((details = json_object_new_object()) == NULL ||
	    jsonx_add_str(details, "cache", *cache == STORAGE_ADMIN_CACHE_DISABLED ? "disabled" :
	    *cache == STORAGE_ADMIN_CACHE_FAILED ? "failed" : "vacuumed") < 0) {
		json_object_put(details);
		return BLOQR_ENOMEM;
	}
	/* VACUUM cannot run in a transaction, so its audit row follows it. */
	err = audit_write(s, "storage.vacuum", NULL, details);
	json_object_put(details);
	return err;
}
