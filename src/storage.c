#include "storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "log.h"
#include "pg.h"
#include "text.h"

/* Times as the API and the cache show them: fixed-width ISO-8601 UTC with
 * milliseconds, so the cache can compare them as text. */
#define TS(col) PG_ISO_TIME(col)

/* ---------------------------------------------------------- statements -- */

/* data is json (not jsonb): its text comes back exactly as stored. */
#define STORAGE_COLUMNS \
	"key, data, " TS("created_at") ", " TS("updated_at") ", " TS("expires_at") ", array_to_json(tags)"
#define FILTER_COLUMNS \
	"source, content, hash, etag, " TS("created_at") ", " TS("updated_at") ", " TS("expires_at")
#define COMPILATION_COLUMNS \
	"id, config_name, " TS("\"timestamp\"") ", source_count, rule_count, duration, output_path"

static const struct pg_stmt st_storage_get = { "storage_get",
	"SELECT " STORAGE_COLUMNS " FROM storage_entries WHERE key = $1", 1, true };
/* Tags arrive as a JSON array (no array literal is ever built from input);
 * WITH ORDINALITY keeps their order. xmax = 0 only on a freshly inserted row. */
static const struct pg_stmt st_storage_put = { "storage_put",
	"INSERT INTO storage_entries (key, data, expires_at, tags) "
	"VALUES ($1, $2::json, $3::timestamptz, "
	"  CASE WHEN $4::json IS NULL THEN NULL ELSE ARRAY("
	"    SELECT t FROM json_array_elements_text($4::json) WITH ORDINALITY AS e(t, n) ORDER BY n) END) "
	"ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, "
	"  tags = EXCLUDED.tags, updated_at = now() "
	"RETURNING " STORAGE_COLUMNS ", (xmax = 0)", 4, false };
static const struct pg_stmt st_storage_delete = { "storage_delete",
	"DELETE FROM storage_entries WHERE key = $1 "
	"RETURNING " STORAGE_COLUMNS ", (expires_at IS NOT NULL AND expires_at <= now())", 1, false };

static const struct pg_stmt st_filter_get = { "filters_get",
	"SELECT " FILTER_COLUMNS " FROM filter_cache WHERE source = $1", 1, true };
static const struct pg_stmt st_filter_put = { "filters_put",
	"INSERT INTO filter_cache (source, content, hash, etag, expires_at) "
	"VALUES ($1, $2, $3, $4, $5::timestamptz) "
	"ON CONFLICT (source) DO UPDATE SET content = EXCLUDED.content, hash = EXCLUDED.hash, "
	"  etag = EXCLUDED.etag, expires_at = EXCLUDED.expires_at, updated_at = now() "
	"RETURNING " FILTER_COLUMNS ", (xmax = 0)", 5, false };

/* Timestamps are cut to the millisecond the API and the cache show, so that
 * ORDER BY "timestamp" DESC, id DESC here sorts exactly as the cache does on
 * its text copy, and the index still serves the order. */
static const struct pg_stmt st_compilation_insert = { "compilations_insert",
	"INSERT INTO compilation_metadata "
	"  (config_name, \"timestamp\", source_count, rule_count, duration, output_path) "
	"VALUES ($1, date_trunc('milliseconds', now()), $2::integer, $3::integer, $4::integer, $5) "
	"RETURNING " COMPILATION_COLUMNS, 5, false };
static const struct pg_stmt st_compilation_get = { "compilations_get",
	"SELECT " COMPILATION_COLUMNS " FROM compilation_metadata WHERE id = $1::uuid", 1, true };
static const struct pg_stmt st_compilation_all = { "compilations_all",
	"SELECT " COMPILATION_COLUMNS " FROM compilation_metadata", 0, true };
/* Exports are of the tables, expired rows included, in key order. */
static const struct pg_stmt st_storage_export = { "storage_export",
	"SELECT " STORAGE_COLUMNS " FROM storage_entries ORDER BY key LIMIT $1::integer", 1, true };
static const struct pg_stmt st_filter_export = { "filters_export",
	"SELECT " FILTER_COLUMNS " FROM filter_cache ORDER BY source LIMIT $1::integer", 1, true };
static const struct pg_stmt st_compilation_list = { "compilations_list",
	"SELECT " COMPILATION_COLUMNS " FROM compilation_metadata "
	"WHERE ($1::text IS NULL OR config_name = $1) "
	"ORDER BY \"timestamp\" DESC, id DESC LIMIT $2::integer", 2, true };

/* ------------------------------------------------------- API objects -- */

static const char *val(const PGresult *r, int i, int c)
{
	return PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
}

/* {key, data, createdAt, updatedAt, expiresAt, tags} from STORAGE_COLUMNS. */
static void storage_body(struct buf *b, const PGresult *r, int i)
{
	buf_puts(b, "{\"key\":");
	jsonx_buf_str(b, val(r, i, 0));
	buf_puts(b, ",\"data\":");
	jsonx_buf_raw(b, val(r, i, 1));
	buf_puts(b, ",\"createdAt\":");
	jsonx_buf_str(b, val(r, i, 2));
	buf_puts(b, ",\"updatedAt\":");
	jsonx_buf_str(b, val(r, i, 3));
	buf_puts(b, ",\"expiresAt\":");
	jsonx_buf_str(b, val(r, i, 4));
	buf_puts(b, ",\"tags\":");
	jsonx_buf_raw(b, val(r, i, 5));
	buf_puts(b, "}");
}

/* {source, content, hash, etag, createdAt, updatedAt, expiresAt}. */
static void filter_body(struct buf *b, const PGresult *r, int i)
{
	buf_puts(b, "{\"source\":");
	jsonx_buf_str(b, val(r, i, 0));
	buf_puts(b, ",\"content\":");
	jsonx_buf_str(b, val(r, i, 1));
	buf_puts(b, ",\"hash\":");
	jsonx_buf_str(b, val(r, i, 2));
	buf_puts(b, ",\"etag\":");
	jsonx_buf_str(b, val(r, i, 3));
	buf_puts(b, ",\"createdAt\":");
	jsonx_buf_str(b, val(r, i, 4));
	buf_puts(b, ",\"updatedAt\":");
	jsonx_buf_str(b, val(r, i, 5));
	buf_puts(b, ",\"expiresAt\":");
	jsonx_buf_str(b, val(r, i, 6));
	buf_puts(b, "}");
}

/* {id, configName, timestamp, sourceCount, ruleCount, duration, outputPath}. */
static void compilation_body(struct buf *b, const PGresult *r, int i)
{
	buf_puts(b, "{\"id\":");
	jsonx_buf_str(b, val(r, i, 0));
	buf_puts(b, ",\"configName\":");
	jsonx_buf_str(b, val(r, i, 1));
	buf_puts(b, ",\"timestamp\":");
	jsonx_buf_str(b, val(r, i, 2));
	buf_puts(b, ",\"sourceCount\":");
	jsonx_buf_raw(b, val(r, i, 3));
	buf_puts(b, ",\"ruleCount\":");
	jsonx_buf_raw(b, val(r, i, 4));
	buf_puts(b, ",\"duration\":");
	jsonx_buf_raw(b, val(r, i, 5));
	buf_puts(b, ",\"outputPath\":");
	jsonx_buf_str(b, val(r, i, 6));
	buf_puts(b, "}");
}

/* ------------------------------------------------------- cache rows -- */

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*oom = true;
	return d;
}

/* Fill row (zeroed first) from row i of r: key from column key_col, the
 * cache columns from cols[] (-1 ends), the body from body(). Returns 0, or
 * PG_EBUG when out of memory (row then empty). */
static int row_fill(struct cache_row *row, const PGresult *r, int i, int key_col, const int *cols,
    void (*body)(struct buf *, const PGresult *, int))
{
	struct buf b = BUF_INIT;
	bool oom = false;

	memset(row, 0, sizeof *row);
	body(&b, r, i);
	if (b.oom || b.data == NULL)
		goto fail;
	row->body = b.data;   /* the buffer's memory becomes the row's */
	row->key = dup_or_null(val(r, i, key_col), &oom);
	for (int k = 0; k < CACHE_MAX_COLS && cols[k] >= 0; k++)
		row->cols[k] = dup_or_null(val(r, i, cols[k]), &oom);
	if (oom || row->key == NULL)
		goto fail;
	return 0;
fail:
	if (row->body == NULL)
		buf_free(&b);
	cache_row_free(row);
	memset(row, 0, sizeof *row);
	log_error("storage: out of memory building a row");
	return PG_EBUG;
}

/* Cache columns, in the order of each tabledef's cols. */
static const int storage_cols[] = { 4, -1 };         /* expires_at */
static const int filter_cols[] = { 6, -1 };          /* expires_at */
static const int compilation_cols[] = { 1, 2, -1 };  /* config_name, timestamp */

static int storage_row(struct cache_row *row, const PGresult *r, int i)
{
	return row_fill(row, r, i, 0, storage_cols, storage_body);
}

static int filter_row(struct cache_row *row, const PGresult *r, int i)
{
	return row_fill(row, r, i, 0, filter_cols, filter_body);
}

static int compilation_row(struct cache_row *row, const PGresult *r, int i)
{
	return row_fill(row, r, i, 0, compilation_cols, compilation_body);
}

/* The same, in the argument order of cache_tabledef.row. */
static int compilation_snapshot_row(const PGresult *r, int i, struct cache_row *row)
{
	return compilation_row(row, r, i);
}

/* Run a one-row lookup and fill row: 1, 0 when absent, or a pg_err. */
static int fetch_one(struct pg *pg, const struct pg_stmt *st, const char *key, struct cache_row *row,
    int (*fill)(struct cache_row *, const PGresult *, int))
{
	const char *p[] = { key };
	PGresult *r;
	int err;

	memset(row, 0, sizeof *row);
	if ((r = pg_query(pg, st, p, &err)) == NULL)
		return err;
	err = PQntuples(r) == 0 ? 0 : fill(row, r, 0) == 0 ? 1 : PG_EBUG;
	PQclear(r);
	return err;
}

/* The cache reads rows of every age: expiry is the cache's check (its
 * expires_col), so the rows here mirror the table exactly. */
static int storage_fetch(struct pg *pg, const char *key, struct cache_row *row)
{
	return fetch_one(pg, &st_storage_get, key, row, storage_row);
}

static int filters_fetch(struct pg *pg, const char *key, struct cache_row *row)
{
	return fetch_one(pg, &st_filter_get, key, row, filter_row);
}

static int compilations_fetch(struct pg *pg, const char *key, struct cache_row *row)
{
	/* Not a uuid: no such row (and no cast error from PostgreSQL). */
	if (!text_uuid_valid(key)) {
		memset(row, 0, sizeof *row);
		return 0;
	}
	return fetch_one(pg, &st_compilation_get, key, row, compilation_row);
}

const struct cache_tabledef storage_cache_def = {
	.name = "storage_entries",
	.key_col = "key",
	.cols = { "expires_at", NULL },
	.order_col = NULL,
	.expires_col = "expires_at",
	.fetch = storage_fetch,
};

const struct cache_tabledef filters_cache_def = {
	.name = "filter_cache",
	.key_col = "source",
	.cols = { "expires_at", NULL },
	.order_col = NULL,
	.expires_col = "expires_at",
	.fetch = filters_fetch,
};

static int compilations_pg_list(struct pg *pg, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count);

const struct cache_tabledef compilations_cache_def = {
	.name = "compilation_metadata",
	.key_col = "id",
	.cols = { "config_name", "timestamp", NULL },
	.order_col = "timestamp",
	.expires_col = NULL,
	.fetch = compilations_fetch,
	.all = &st_compilation_all,
	.row = compilation_snapshot_row,
	.pg_list = compilations_pg_list,
};

/* ------------------------------------------------------------ writes -- */

/* The field behind a refused value: a bad time is expiresAt; anything else
 * the statement could refuse is the caller's other field. */
static const char *refused_field(struct pg *pg, const char *other)
{
	const char *st = pg_last_sqlstate(pg);

	/* 22007 invalid_datetime_format, 22008 datetime_field_overflow,
	 * 22009 invalid_time_zone_displacement_value */
	if (!strcmp(st, "22007") || !strcmp(st, "22008") || !strcmp(st, "22009"))
		return "expiresAt";
	return other;
}

/* An upsert returning its row then (xmax = 0) in column `flag`. */
static int upsert(struct pg *pg, const struct pg_stmt *st, const char *const *p, int flag,
    int (*fill)(struct cache_row *, const PGresult *, int), struct cache_row *row, bool *created,
    const char **field, const char *other)
{
	PGresult *r;
	int err;

	memset(row, 0, sizeof *row);
	*created = false;
	*field = NULL;
	if ((r = pg_query(pg, st, p, &err)) == NULL) {
		if (err == PG_EINPUT)
			*field = refused_field(pg, other);
		return err;
	}
	if (PQntuples(r) != 1) {
		log_error("storage: %s returned %d rows", st->name, PQntuples(r));
		err = PG_EBUG;
	} else if ((err = fill(row, r, 0)) == 0) {
		*created = PQgetvalue(r, 0, flag)[0] == 't';
	}
	PQclear(r);
	return err;
}

/* Each write is one statement (its own transaction). The generation is
 * read before it: an invalidation in between makes the cache drop the row
 * rather than store what may be old. */

int storage_put(const struct store *s, const char *key, const char *data, const char *expires,
    const char *tags, struct cache_row *row, bool *created, const char **field)
{
	uint64_t gen = cache_gen(s->cache, CACHE_STORAGE);
	const char *p[] = { key, data, expires, tags };
	int err = upsert(s->pg, &st_storage_put, p, 6, storage_row, row, created, field, "data");

	if (err == BLOQR_OK)
		cache_written(s->cache, CACHE_STORAGE, row, gen);
	return err;
}

/* A committed delete of key: this host's cache forgets it now (the others
 * when the NOTIFY reaches them). If it cannot, the syncer's copy of that
 * NOTIFY will; the cache has logged and counted why. */
static void forget(const struct store *s, enum cache_tbl t, const char *key)
{
	if (cache_deleted(s->cache, t, key) != BLOQR_OK)
		log_warn("storage: %s: this host's cache could not drop a deleted row at once", cache_table_name(t));
}

int storage_delete(const struct store *s, const char *key, struct cache_row *row, bool *expired)
{
	const char *p[] = { key };
	PGresult *r;
	int err;

	memset(row, 0, sizeof *row);
	*expired = false;
	if ((r = pg_query(s->pg, &st_storage_delete, p, &err)) == NULL)
		return err;
	if (PQntuples(r) == 0) {
		err = BLOQR_ENOTFOUND;
	} else if ((err = storage_row(row, r, 0)) == BLOQR_OK) {
		*expired = PQgetvalue(r, 0, 6)[0] == 't';
	}
	if (PQntuples(r) > 0)
		forget(s, CACHE_STORAGE, key);
	PQclear(r);
	return err;
}

int storage_filter_put(const struct store *s, const char *source, const char *content, const char *hash,
    const char *etag, const char *expires, struct cache_row *row, bool *created, const char **field)
{
	uint64_t gen = cache_gen(s->cache, CACHE_FILTERS);
	const char *p[] = { source, content, hash, etag, expires };
	int err = upsert(s->pg, &st_filter_put, p, 7, filter_row, row, created, field, "content");

	if (err == BLOQR_OK)
		cache_written(s->cache, CACHE_FILTERS, row, gen);
	return err;
}

int storage_compilation_create(const struct store *s, const char *config_name, long long source_count,
    long long rule_count, long long duration, const char *output_path, struct cache_row *row)
{
	uint64_t gen = cache_gen(s->cache, CACHE_COMPILATIONS);
	char sc[24], rc[24], du[24];
	const char *p[] = { config_name, sc, rc, du, output_path };
	PGresult *r;
	int err;

	memset(row, 0, sizeof *row);
	snprintf(sc, sizeof sc, "%lld", source_count);
	snprintf(rc, sizeof rc, "%lld", rule_count);
	snprintf(du, sizeof du, "%lld", duration);
	if ((r = pg_query(s->pg, &st_compilation_insert, p, &err)) == NULL)
		return err;
	err = PQntuples(r) == 1 ? compilation_row(row, r, 0) : BLOQR_EBUG;
	PQclear(r);
	if (err == BLOQR_OK)
		cache_written(s->cache, CACHE_COMPILATIONS, row, gen);
	return err;
}

/* ------------------------------------------------------------- reads -- */

int storage_get(const struct store *s, const char *key, char **body, enum cache_outcome *how)
{
	return cache_get(s->cache, s->pg, CACHE_STORAGE, key, body, how);
}

int storage_filter_get(const struct store *s, const char *source, char **body, enum cache_outcome *how)
{
	return cache_get(s->cache, s->pg, CACHE_FILTERS, source, body, how);
}

int storage_compilations_list(const struct store *s, const char *config_name, long limit, struct buf *out,
    long *count, enum cache_outcome *how)
{
	const struct cache_filter f = { "config_name", config_name };

	return cache_list(s->cache, s->pg, CACHE_COMPILATIONS, &f, 1, limit, out, count, how);
}

/* ------------------------------------------------------------- lists -- */

/* Run st and append each row's API object (built by body), joined by
 * ',', to out; *count gets the rows. Returns a pg_err. */
static int append_objects(struct pg *pg, const struct pg_stmt *st, const char *const *params,
    void (*body)(struct buf *, const PGresult *, int), struct buf *out, long *count)
{
	PGresult *r;
	int err;

	*count = 0;
	if ((r = pg_query(pg, st, params, &err)) == NULL)
		return err;
	for (int i = 0; i < PQntuples(r); i++) {
		if (i > 0)
			buf_append(out, ",", 1);
		body(out, r, i);
	}
	*count = PQntuples(r);
	PQclear(r);
	if (out->oom) {
		log_error("storage: out of memory answering %s", st->name);
		return PG_EBUG;
	}
	return PG_OK;
}

static int compilations_pg_list(struct pg *pg, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count)
{
	const char *config_name = NULL;
	char lim[24];
	const char *p[] = { NULL, lim };

	*count = 0;
	for (int k = 0; k < nf; k++) {
		if (strcmp(f[k].col, "config_name") != 0) {
			log_error("storage: compilations cannot be filtered on %s", f[k].col);
			return PG_EBUG;
		}
		config_name = f[k].value;
	}
	p[0] = config_name;
	snprintf(lim, sizeof lim, "%ld", limit);
	return append_objects(pg, &st_compilation_list, p, compilation_body, out, count);
}

/* The first limit rows of an export statement (its one parameter). */
static int export_objects(struct pg *pg, const struct pg_stmt *st,
    void (*body)(struct buf *, const PGresult *, int), long limit, struct buf *out, long *count)
{
	char lim[24];
	const char *p[] = { lim };

	snprintf(lim, sizeof lim, "%ld", limit);
	return append_objects(pg, st, p, body, out, count);
}

int storage_export_entries(struct pg *pg, long limit, struct buf *out, long *count)
{
	return export_objects(pg, &st_storage_export, storage_body, limit, out, count);
}

int storage_export_filters(struct pg *pg, long limit, struct buf *out, long *count)
{
	return export_objects(pg, &st_filter_export, filter_body, limit, out, count);
}

int storage_export_compilations(struct pg *pg, long limit, struct buf *out, long *count)
{
	return compilations_pg_list(pg, NULL, 0, limit, out, count);
}
