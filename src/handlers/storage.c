/* Storage data endpoints (CONTRACT §4 "Storage data"): storage entries,
 * the filter cache and compilation records. Reads go through the L1
 * cache and answer its cached JSON text as is; writes go to PostgreSQL
 * first and then hand the committed row to the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "storage.h"
#include "text.h"
#include "worker.h"

/* ------------------------------------------------------------ helpers -- */


static void x_cache(struct http_response *res, enum cache_outcome how)
{
	res->x_cache = cache_outcome_name(how);
}

/* The {key*} of the path, or NULL with a 400 set. The router has decoded
 * it and refused NUL and invalid UTF-8. */
static const char *storage_key(const struct route_match *m, struct http_response *res)
{
	const char *key = m->nparams > 0 ? m->params[0] : NULL;
	size_t n = key ? strlen(key) : 0;

	if (n < 1 || n > STORAGE_KEY_MAX) {
		http_error(res, 400, "Storage key must be 1 to %d bytes long", STORAGE_KEY_MAX);
		return NULL;
	}
	return key;
}

/* An optional ISO-8601 time field: 0 absent/null, 1 valid, -1 with a 400. */
static int get_time(struct json_object *body, const char *field, const char **out,
    struct http_response *res)
{
	char err[256];
	int rc = jsonx_get_string(body, field, STORAGE_TIME_MAX, out, err, sizeof err);

	if (rc < 0 || (rc > 0 && !text_iso_time_valid(*out))) {
		http_error(res, 400, "Field '%s' must be an ISO-8601 time such as 2026-12-31T00:00:00Z", field);
		return -1;
	}
	return rc;
}

/* A required string field of 1..max bytes: 0 with *out, or -1 with a 400. */
static int get_required(struct json_object *body, const char *field, size_t max, const char **out,
    struct http_response *res)
{
	char err[256];
	int rc = jsonx_get_string(body, field, max, out, err, sizeof err);

	if (rc < 0) {
		http_error(res, 400, "%s", err);
		return -1;
	}
	if (rc == 0 || (*out)[0] == '\0') {
		http_error(res, 400, "Field '%s' is required", field);
		return -1;
	}
	return 0;
}

/* An optional string field of at most max bytes (NULL when absent). */
static int get_optional(struct json_object *body, const char *field, size_t max, const char **out,
    struct http_response *res)
{
	char err[256];

	if (jsonx_get_string(body, field, max, out, err, sizeof err) < 0) {
		http_error(res, 400, "%s", err);
		return -1;
	}
	return 0;
}

/* tags: absent or null → NULL; else an array of at most STORAGE_TAGS_MAX
 * strings of at most STORAGE_TAG_MAX bytes, given to PostgreSQL as JSON
 * text (owned by body). */
static int get_tags(struct json_object *body, const char **out, struct http_response *res)
{
	struct json_object *t = NULL;
	size_t n;

	*out = NULL;
	if (!json_object_object_get_ex(body, "tags", &t) || t == NULL)
		return 0;
	if (!json_object_is_type(t, json_type_array)) {
		http_error(res, 400, "Field 'tags' must be an array of strings or null");
		return -1;
	}
	n = json_object_array_length(t);
	if (n > STORAGE_TAGS_MAX) {
		http_error(res, 400, "Field 'tags' must hold at most %d strings", STORAGE_TAGS_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(t, i);
		size_t len;

		if (!json_object_is_type(e, json_type_string)) {
			http_error(res, 400, "Field 'tags' must be an array of strings or null");
			return -1;
		}
		len = (size_t)json_object_get_string_len(e);
		if (len > STORAGE_TAG_MAX) {
			http_error(res, 400, "Field 'tags': each tag must be at most %d bytes", STORAGE_TAG_MAX);
			return -1;
		}
		if (memchr(json_object_get_string(e), '\0', len)) {
			http_error(res, 400, "Field 'tags': a tag must not contain NUL characters");
			return -1;
		}
	}
	if ((*out = jsonx_dump(t, NULL)) == NULL) {
		http_error(res, 500, "Out of memory");
		return -1;
	}
	return 0;
}

/* A refused write: 400 naming the field, or the usual database answer. */
static void write_error(struct http_response *res, int rc, const char *field)
{
	if (rc == BLOQR_EINPUT && field && !strcmp(field, "expiresAt"))
		http_error(res, 400, "Field 'expiresAt' must be a valid ISO-8601 time");
	else if (rc == BLOQR_EINPUT && field)
		http_error(res, 400, "Field '%s' was refused by the database", field);
	else
		h_error(res, rc);
}

/* A read through the cache: 200 {success, entry}, 404, or the error. */
static void reply_entry(struct http_response *res, int rc, char *body, enum cache_outcome how, const char *what)
{
	if (rc < 0)
		h_error(res, rc);
	else if (body == NULL)
		http_error(res, 404, "%s not found", what);
	else
		h_reply_raw(res, 200, "entry", body);
	x_cache(res, how);
	free(body);
}

/* ----------------------------------------------------- storage entries -- */

void h_storage_get(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *key = storage_key(m, res);
	enum cache_outcome how = CACHE_BYPASS;
	char *body = NULL;
	int rc;

	if (key == NULL)
		return;
	rc = storage_get(&st, key, &body, &how);
	reply_entry(res, rc, body, how, "Storage entry");
}

void h_storage_put(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *key = storage_key(m, res), *expires = NULL, *tags = NULL, *field = NULL;
	struct cache_row row = { 0 };
	struct json_object *body = NULL;
	char *data;
	size_t off, len;
	bool created;
	int rc;

	if (key == NULL || (body = h_body_object(req, res)) == NULL)
		return;
	/* A JSON null is a value like any other; only a missing field is not. */
	if (!json_object_object_get_ex(body, "data", NULL) ||
	    !jsonx_raw_member(req->body, req->body_len, "data", &off, &len)) {
		http_error(res, 400, "Field 'data' is required");
		goto out;
	}
	if (get_time(body, "expiresAt", &expires, res) < 0 || get_tags(body, &tags, res) < 0)
		goto out;
	if ((data = arena_strndup(req->arena, req->body + off, len)) == NULL) {
		http_error(res, 500, "Out of memory");
		goto out;
	}
	rc = storage_put(&st, key, data, expires, tags, &row, &created, &field);
	if (rc != BLOQR_OK) {
		write_error(res, rc, field);
		goto out;
	}
	h_reply_raw(res, created ? 201 : 200, "entry", row.body);
out:
	cache_row_free(&row);
	json_object_put(body);
}

void h_storage_delete(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *key = storage_key(m, res);
	struct cache_row row = { 0 };
	bool expired;
	int rc;

	if (key == NULL)
		return;
	rc = storage_delete(&st, key, &row, &expired);
	if (rc != BLOQR_OK && rc != BLOQR_ENOTFOUND) {
		h_error(res, rc);
		goto out;
	}
	/* An expired entry was already gone as far as readers could tell. */
	if (rc == BLOQR_ENOTFOUND || expired)
		http_error(res, 404, "Storage entry not found");
	else
		h_reply_raw(res, 200, "entry", row.body);
out:
	cache_row_free(&row);
}

/* -------------------------------------------------------- filter cache -- */

void h_filter_get(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	enum cache_outcome how = CACHE_BYPASS;
	const char *source;
	char *body = NULL;
	int rc;

	(void)m;
	if (h_query_str(req, res, "source", STORAGE_SOURCE_MAX, &source) < 0)
		return;
	if (source == NULL) {
		http_error(res, 400, "Query parameter 'source' is required");
		return;
	}
	rc = storage_filter_get(&st, source, &body, &how);
	reply_entry(res, rc, body, how, "Filter cache entry");
}

void h_filter_put(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *source, *content, *hash, *etag = NULL, *expires = NULL, *field = NULL;
	struct cache_row row = { 0 };
	struct json_object *body;
	char err[256];
	bool created;
	int rc;

	(void)m;
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if (get_required(body, "source", STORAGE_SOURCE_MAX, &source, res) < 0)
		goto out;
	/* content may be empty (an empty list); the body limit bounds it. */
	rc = jsonx_get_string(body, "content", req->body_len, &content, err, sizeof err);
	if (rc <= 0) {
		http_error(res, 400, "%s", rc < 0 ? err : "Field 'content' is required");
		goto out;
	}
	if (get_required(body, "hash", STORAGE_HASH_MAX, &hash, res) < 0 ||
	    get_optional(body, "etag", STORAGE_ETAG_MAX, &etag, res) < 0 ||
	    get_time(body, "expiresAt", &expires, res) < 0)
		goto out;
	rc = storage_filter_put(&st, source, content, hash, etag, expires, &row, &created, &field);
	if (rc != BLOQR_OK) {
		write_error(res, rc, field);
		goto out;
	}
	h_reply_raw(res, created ? 201 : 200, "entry", row.body);
out:
	cache_row_free(&row);
	json_object_put(body);
}

/* -------------------------------------------------------- compilations -- */

void h_compilations_create(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	static const char *const counts[] = { "sourceCount", "ruleCount", "duration" };
	const struct store st = h_store(app, req);
	const char *name, *path = NULL;
	struct cache_row row = { 0 };
	struct json_object *body;
	long long n[3];
	char err[256];
	int rc;

	(void)m;
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if (get_required(body, "configName", STORAGE_CONFIG_NAME_MAX, &name, res) < 0)
		goto out;
	for (int i = 0; i < 3; i++) {
		rc = jsonx_get_int(body, counts[i], 0, 2147483647, &n[i], err, sizeof err);
		if (rc <= 0) {
			if (rc == 0)
				snprintf(err, sizeof err, "Field '%s' is required", counts[i]);
			http_error(res, 400, "%s", err);
			goto out;
		}
	}
	if (get_optional(body, "outputPath", STORAGE_OUTPUT_PATH_MAX, &path, res) < 0)
		goto out;
	rc = storage_compilation_create(&st, name, n[0], n[1], n[2], path, &row);
	if (rc != BLOQR_OK) {
		h_error(res, rc);
		goto out;
	}
	h_reply_raw(res, 201, "compilation", row.body);
out:
	cache_row_free(&row);
	json_object_put(body);
}

void h_compilations_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	enum cache_outcome how = CACHE_BYPASS;
	struct buf out = BUF_INIT;
	long limit = h_list_limit(req), count = 0;
	const char *config_name;
	int rc;

	(void)m;
	if (h_query_str(req, res, "configName", STORAGE_CONFIG_NAME_MAX, &config_name) < 0)
		return;
	rc = storage_compilations_list(&st, config_name, limit, &out, &count, &how);
	if (rc < 0) {
		h_error(res, rc);
	} else {
		buf_reset(&res->body);
		buf_puts(&res->body, "{\"success\":true,\"compilations\":[");
		if (out.len)
			buf_append(&res->body, out.data, out.len);
		buf_printf(&res->body, "],\"count\":%ld}", count);
		if (res->body.oom || out.oom) {
			http_error(res, 500, "Out of memory");
		} else {
			res->status = 200;
			res->content_type = NULL;
		}
	}
	x_cache(res, how);
	buf_free(&out);
}
