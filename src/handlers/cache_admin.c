/* Cache administration: status, rebuild, invalidate (this host's L1). */
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "log.h"
#include "metrics.h"
#include "text.h"
#include "worker.h"

static struct json_object *iso_or_null(int64_t ms)
{
	char ts[25];

	if (ms <= 0)
		return NULL;
	text_iso_time_ms(ms, ts);
	return json_object_new_string(ts);
}

void h_cache_status(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *o = h_success(), *listener = json_object_new_object(),
	    *tables = json_object_new_object();
	int64_t since = 0;
	bool connected;

	(void)req; (void)m;
	if (o == NULL || listener == NULL || tables == NULL)
		goto oom;
	connected = cache_listener_connected(app->cache, &since);
	if (jsonx_add_bool(listener, "connected", connected) < 0 ||
	    jsonx_add(listener, "since", iso_or_null(since)) < 0)
		goto oom;
	for (int t = 0; t < CACHE_NTABLES; t++) {
		struct cache_table_status st;
		struct json_object *e = json_object_new_object();

		if (e == NULL)
			goto oom;
		if (cache_table_status(app->cache, t, &st) < 0)
			memset(&st, 0, sizeof st);
		if (jsonx_add_int(e, "rows", st.rows) < 0 ||
		    jsonx_add(e, "lastFullSync", iso_or_null(st.last_full_sync_ms)) < 0 ||
		    jsonx_add_int(e, "hits", (long long)metrics_cache_get(t, METRICS_CACHE_HIT)) < 0 ||
		    jsonx_add_int(e, "misses", (long long)metrics_cache_get(t, METRICS_CACHE_MISS)) < 0 ||
		    jsonx_add_int(e, "stale", (long long)metrics_cache_get(t, METRICS_CACHE_STALE)) < 0 ||
		    jsonx_add_int(e, "errors", (long long)metrics_cache_get(t, METRICS_CACHE_ERROR)) < 0 ||
		    jsonx_add(tables, cache_table_name(t), e) < 0) {
			json_object_put(e);
			goto oom;
		}
	}
	if (jsonx_add_bool(o, "enabled", cache_enabled(app->cache)) < 0 ||
	    jsonx_add(o, "listener", listener) < 0) {
		listener = NULL;
		goto oom;
	}
	listener = NULL;
	if (jsonx_add(o, "tables", tables) < 0) {
		tables = NULL;
		goto oom;
	}
	res->cache_control = "no-store";
	h_json(res, 200, o);
	return;
oom:
	json_object_put(tables);
	json_object_put(listener);
	json_object_put(o);
	http_error(res, 500, "Out of memory");
}

void h_cache_rebuild(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	long rows[CACHE_NTABLES];
	struct json_object *o, *tables, *details;
	int rc;

	(void)m;
	if (!cache_enabled(app->cache)) {
		http_error(res, 409, "The L1 cache is disabled on this host");
		return;
	}
	rc = cache_rebuild(app->cache, app->pg, rows);
	if (rc == BLOQR_ECACHE) {
		http_error(res, 503, "The L1 cache is not usable on this host; see the server log");
		http_header(res, "Retry-After", "5");
		return;
	}
	if (rc != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	o = h_success();
	tables = json_object_new_object();
	details = json_object_new_object();
	for (int t = 0; tables && t < CACHE_NTABLES; t++)
		if (jsonx_add_int(tables, cache_table_name(t), rows[t]) < 0)
			break;
	if (details)
		jsonx_add(details, "tables", json_object_get(tables));
	/* The cache changed already (SQLite, not PostgreSQL): a lost audit row
	 * cannot undo it, so it is logged, not answered. */
	if (audit_write(&st, "cache.rebuild", NULL, details) != BLOQR_OK)
		log_warn("cache admin: the audit row of a rebuild could not be written");
	json_object_put(details);
	if (o == NULL || tables == NULL || jsonx_add(o, "tables", tables) < 0) {
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	h_json(res, 200, o);
}

static int table_from_name(const char *name)
{
	for (int t = 0; t < CACHE_NTABLES; t++)
		if (strcmp(cache_table_name(t), name) == 0)
			return t;
	return -1;
}

void h_cache_invalidate(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	struct json_object *body, *o, *details;
	const char *table, *id;
	char err[256];
	long n;
	int t, rc;

	(void)m;
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if ((rc = jsonx_get_string(body, "table", 64, &table, err, sizeof err)) <= 0 ||
	    jsonx_get_string(body, "id", 4096, &id, err, sizeof err) < 0) {
		http_error(res, 400, "%s", rc == 0 ? "Field 'table' is required" : err);
		goto out;
	}
	if ((t = table_from_name(table)) < 0) {
		http_error(res, 400, "Field 'table' must be one of deployment_history, storage_entries, "
		    "filter_cache, compilation_metadata, sessions");
		goto out;
	}
	if (!cache_enabled(app->cache)) {
		http_error(res, 409, "The L1 cache is disabled on this host");
		goto out;
	}
	n = cache_invalidate(app->cache, t, id);
	if (n < 0) {
		http_error(res, 503, "The L1 cache is not usable on this host; see the server log");
		http_header(res, "Retry-After", "5");
		goto out;
	}
	details = json_object_new_object();
	if (details) {
		jsonx_add_str(details, "table", table);
		jsonx_add_str(details, "id", id);
		jsonx_add_int(details, "invalidated", n);
	}
	if (audit_write(&st, "cache.invalidate", table, details) != BLOQR_OK)
		log_warn("cache admin: the audit row of an invalidation could not be written");
	json_object_put(details);
	o = h_success();
	if (o && jsonx_add_int(o, "invalidated", n) < 0) {
		json_object_put(o);
		o = NULL;
	}
	h_json(res, 200, o);
out:
	json_object_put(body);
}
