/* Admin storage endpoints (CONTRACT §4 "Admin storage"): counts, bulk
 * deletes, export, VACUUM and the schema's relations, all on PostgreSQL
 * (the source of truth); deletes are audited in their transaction and
 * then dropped from this host's L1 cache (other hosts drop them through
 * the tables' NOTIFY triggers). The query console runs as its own
 * read-only role (query_console.c). */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "log.h"
#include "pg.h"
#include "query_console.h"
#include "storage.h"
#include "storage_admin.h"
#include "text.h"
#include "worker.h"

#define EXPORT_ENTRIES_MAX 1000
#define EXPORT_FILTERS_MAX 100
#define EXPORT_COMPILATIONS_MAX 100

static void no_store(struct http_response *res)
{
	res->cache_control = "no-store";
}

void h_astorage_stats(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct storage_admin_stats st;
	struct json_object *o, *stats;
	char ts[25];
	long d1;
	int rc;

	(void)req; (void)m;
	if ((rc = storage_admin_stats(app->pg, &st)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	text_iso_time_ms(text_now_ms(), ts);
	o = h_success();
	stats = json_object_new_object();
	if (o == NULL || stats == NULL ||
	    jsonx_add_int(stats, "storage_entries", st.storage_entries) < 0 ||
	    jsonx_add_int(stats, "filter_cache", st.filter_cache) < 0 ||
	    jsonx_add_int(stats, "compilation_metadata", st.compilation_metadata) < 0 ||
	    jsonx_add_int(stats, "expired_storage", st.expired_storage) < 0 ||
	    jsonx_add_int(stats, "expired_cache", st.expired_cache) < 0) {
		json_object_put(stats);
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	/* The dashboard's names (CONTRACT §7): KV, R2 and D1 were the old
	 * design's stores; there is no object store here, and D1's place is
	 * taken by this host's SQLite cache. */
	d1 = cache_sqlite_tables(app->cache);
	if (jsonx_add(o, "stats", stats) < 0 || jsonx_add_str(o, "timestamp", ts) < 0 ||
	    jsonx_add_int(o, "kvKeys", st.storage_entries) < 0 || jsonx_add_int(o, "r2Objects", 0) < 0 ||
	    jsonx_add_int(o, "d1Tables", d1 < 0 ? 0 : d1) < 0 ||
	    jsonx_add_int(o, "cacheEntries", st.filter_cache) < 0) {
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	no_store(res);
	h_json(res, 200, o);
}

/* clear-expired and clear-cache. */
static void clear(struct app *app, struct http_request *req, struct http_response *res, bool expired)
{
	const struct store st = h_store(app, req);
	struct json_object *o;
	long long s = 0, f = 0;
	char msg[200];
	int rc;

	if ((rc = storage_admin_clear(&st, expired, &s, &f)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	if (expired)
		snprintf(msg, sizeof msg, "Deleted %lld expired storage entries and %lld expired filter-cache rows",
		    s, f);
	else
		snprintf(msg, sizeof msg, "Deleted %lld cache/ storage entries and %lld filter-cache rows", s, f);
	o = h_success();
	if (o && (jsonx_add_int(o, "deleted", s + f) < 0 || jsonx_add_int(o, "removed", s + f) < 0 ||
	    jsonx_add_str(o, "message", msg) < 0)) {
		json_object_put(o);
		o = NULL;
	}
	h_json(res, 200, o);
}

void h_astorage_clear_expired(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)m;
	clear(app, req, res, true);
}

void h_astorage_clear_cache(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)m;
	clear(app, req, res, false);
}

/* The body is assembled as text: the rows are JSON texts from
 * PostgreSQL (and storage.c's compilation objects), not re-parsed. */
void h_astorage_export(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	struct buf *b = &res->body;
	int64_t ms = text_now_ms();
	char iso[25], hdr[96];
	int rc;

	(void)m;
	text_iso_time_ms(ms, iso);
	buf_reset(b);
	buf_printf(b, "{\"success\":true,\"exportedAt\":\"%s\",", iso);
	if ((rc = storage_admin_export(&st, b)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	buf_puts(b, "}");
	if (b->oom) {
		http_error(res, 500, "Out of memory");
		return;
	}
	res->status = 200;
	res->content_type = NULL;
	snprintf(hdr, sizeof hdr, "attachment; filename=\"storage-export-%lld.json\"", (long long)ms);
	http_header(res, "Content-Disposition", hdr);
	no_store(res);
}

void h_astorage_vacuum(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	static const char *const said[] = {
		[STORAGE_ADMIN_CACHE_DISABLED] = "the L1 cache is disabled on this host",
		[STORAGE_ADMIN_CACHE_VACUUMED] = "vacuumed this host's L1 cache",
		[STORAGE_ADMIN_CACHE_FAILED] = "vacuuming this host's L1 cache failed (see the server log)",
	};
	const struct store st = h_store(app, req);
	enum storage_admin_cache_vacuum cache;
	char msg[256];
	int rc;

	(void)m;
	if ((rc = storage_admin_vacuum(&st, &cache)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	snprintf(msg, sizeof msg, "Vacuumed and analyzed storage_entries, filter_cache and "
	    "compilation_metadata in PostgreSQL; %s", said[cache]);
	h_message(res, msg);
}

void h_astorage_tables(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *tables = NULL;
	int rc;

	(void)req; (void)m;
	if ((rc = storage_admin_tables(app->pg, &tables)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	h_reply_list(res, "tables", tables, -1, -1, -1);
}

/* True when s holds only white space. */
static bool blank(const char *s)
{
	s += strspn(s, " \t\r\n\f\v");
	return *s == '\0';
}

/* The dashboard reads the column names at the top level and the time as
 * text (CONTRACT §7); meta keeps the names with their types. */
static int dashboard_fields(struct json_object *o)
{
	struct json_object *meta, *cols, *ms, *names, *name;
	char dur[48];
	double t;

	if (!json_object_object_get_ex(o, "meta", &meta) || !json_object_object_get_ex(meta, "columns", &cols) ||
	    !json_object_object_get_ex(meta, "duration_ms", &ms) || (names = json_object_new_array()) == NULL)
		return -1;
	if (jsonx_add(o, "columns", names) < 0)
		return -1;
	for (size_t i = 0; i < json_object_array_length(cols); i++) {
		if (!json_object_object_get_ex(json_object_array_get_idx(cols, i), "name", &name) ||
		    json_object_array_add(names, json_object_get(name)) < 0)
			return -1;
	}
	t = json_object_get_double(ms);
	snprintf(dur, sizeof dur, t < 10 ? "%.1f ms" : "%.0f ms", t);
	return jsonx_add_str(o, "duration", dur);
}

void h_astorage_query(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *body = NULL, *o = NULL;
	const char *sql = NULL;
	long timeout = qc_timeout_ms(app->conf->db_statement_timeout_ms);
	char err[512];
	int rc;

	(void)m;
	if (app->conf->db_query_url == NULL || app->conf->db_query_url[0] == '\0') {
		http_error(res, 503, "Query console is not configured");
		return;
	}
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if ((rc = jsonx_get_string(body, "sql", QC_SQL_MAX, &sql, err, sizeof err)) <= 0) {
		http_error(res, 400, "%s", rc == 0 ? "Field 'sql' is required" : err);
		goto out;
	}
	if (blank(sql)) {
		http_error(res, 400, "Field 'sql' must not be empty");
		goto out;
	}
	if (app->query_pg == NULL &&
	    (app->query_pg = pg_new(app->conf->db_query_url, timeout, "bloqr-query")) == NULL) {
		http_error(res, 500, "Out of memory");
		goto out;
	}
	if ((o = h_success()) == NULL) {
		http_error(res, 500, "Out of memory");
		goto out;
	}
	switch (qc_run(app->query_pg, sql, timeout, o, err, sizeof err)) {
	case QC_OK:
		if (dashboard_fields(o) < 0) {
			http_error(res, 500, "Out of memory");
			break;
		}
		no_store(res);
		h_json(res, 200, o);
		o = NULL;
		break;
	case QC_EREFUSED:
		http_error(res, 400, "%s", err);
		break;
	case QC_EUNAVAIL:
		http_error(res, 503, "Query console cannot reach the database, try again shortly");
		http_header(res, "Retry-After", "5");
		break;
	case QC_EUNSAFE:
		http_error(res, 503, "Query console is disabled: its database role is not read-only "
		    "(see the server log)");
		break;
	default:
		http_error(res, 500, "Out of memory");
		break;
	}
out:
	json_object_put(o);
	json_object_put(body);
}
