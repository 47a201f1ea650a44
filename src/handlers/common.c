/* Helpers every handler group uses: JSON out, database errors, bodies,
 * paging parameters. */
#include <stdio.h>
#include <string.h>

#include "handlers/handlers.h"
#include "jsonx.h"
#include "text.h"
#include "worker.h"

void h_json(struct http_response *res, int status, struct json_object *obj)
{
	const char *s;
	size_t len;

	if (obj == NULL) {
		http_error(res, 500, "Out of memory");
		return;
	}
	s = jsonx_dump(obj, &len);
	if (s == NULL) {
		json_object_put(obj);
		http_error(res, 500, "Out of memory");
		return;
	}
	res->status = status;
	buf_reset(&res->body);
	buf_append(&res->body, s, len);
	json_object_put(obj);
}

void h_error(struct http_response *res, int err)
{
	switch (err) {
	case BLOQR_EUNAVAIL:
		http_error(res, 503, "Database unavailable, try again shortly");
		http_header(res, "Retry-After", "5");
		break;
	case BLOQR_EINPUT:
		http_error(res, 400, "A value was refused by the database");
		break;
	case BLOQR_ECONFLICT:
		http_error(res, 409, "Conflicts with existing data");
		break;
	case BLOQR_ENOTFOUND:
		http_error(res, 404, "Not found");
		break;
	case BLOQR_ENOMEM:
		http_error(res, 500, "Out of memory");
		break;
	case BLOQR_ECACHE:
		http_error(res, 500, "The L1 cache is unusable on this host");
		break;
	default:
		http_error(res, 500, "Internal error");
		break;
	}
}

struct store h_store(struct app *app, const struct http_request *req)
{
	return (struct store){
		.pg = app->pg, .cache = app->cache,
		.actor_id = app->who.user_id[0] ? app->who.user_id : NULL,
		.request_id = req->request_id,
		.ip = req->remote_addr && req->remote_addr[0] ? req->remote_addr : NULL,
	};
}

struct json_object *h_body_object(const struct http_request *req, struct http_response *res)
{
	struct json_object *o = NULL;
	char err[256];

	if (jsonx_parse_object(req->body, req->body_len, &o, err, sizeof err) < 0) {
		http_error(res, 400, "%s", err);
		return NULL;
	}
	return o;
}

struct json_object *h_success(void)
{
	struct json_object *o = json_object_new_object();

	if (o && jsonx_add_bool(o, "success", true) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

void h_message(struct http_response *res, const char *msg)
{
	struct json_object *o = h_success();

	if (o && jsonx_add_str(o, "message", msg) < 0) {
		json_object_put(o);
		o = NULL;
	}
	h_json(res, 200, o);
}

int h_query_long(const struct http_request *req, struct http_response *res, const char *name,
    long def, long min, long max, long *out)
{
	const char *v;
	int64_t n;
	int rc = http_query_get(req, name, &v);

	*out = def;
	if (rc == 0)
		return 0;
	n = rc < 0 ? -1 : text_parse_uint(v, strlen(v));
	if (n < min || n > max) {
		http_error(res, 400, "Query parameter '%s' must be a whole number from %ld to %ld", name, min, max);
		return -1;
	}
	*out = (long)n;
	return 0;
}

int h_query_str(const struct http_request *req, struct http_response *res, const char *name,
    size_t maxlen, const char **out)
{
	int rc = http_query_get(req, name, out);

	if (rc < 0 || (rc > 0 && strlen(*out) > maxlen)) {
		http_error(res, 400, "Query parameter '%s' is malformed or longer than %zu bytes", name, maxlen);
		*out = NULL;
		return -1;
	}
	if (rc > 0 && (*out)[0] == '\0')
		*out = NULL;   /* ?x= means no filter */
	return 0;
}

void h_reply_list(struct http_response *res, const char *key, struct json_object *arr,
    long total, long limit, long offset)
{
	struct json_object *o = h_success();

	if (o == NULL || arr == NULL)
		goto oom;
	if (jsonx_add(o, key, arr) < 0) {
		arr = NULL;
		goto oom;
	}
	arr = NULL;
	if ((total >= 0 && jsonx_add_int(o, "total", total) < 0) ||
	    (limit >= 0 && jsonx_add_int(o, "limit", limit) < 0) ||
	    (offset >= 0 && jsonx_add_int(o, "offset", offset) < 0))
		goto oom;
	h_json(res, 200, o);
	return;
oom:
	json_object_put(arr);
	json_object_put(o);
	http_error(res, 500, "Out of memory");
}

void h_reply_raw(struct http_response *res, int status, const char *name, const char *obj)
{
	buf_reset(&res->body);
	buf_puts(&res->body, "{\"success\":true,\"");
	buf_puts(&res->body, name);
	buf_puts(&res->body, "\":");
	buf_puts(&res->body, obj);
	buf_puts(&res->body, "}");
	if (res->body.oom) {
		http_error(res, 500, "Out of memory");
		return;
	}
	res->status = status;
	res->content_type = NULL;
}

long h_list_limit(const struct http_request *req)
{
	const char *v;
	long n = 0;

	if (http_query_get(req, "limit", &v) <= 0 || v[0] == '\0')
		return H_LIST_LIMIT_DEFAULT;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return H_LIST_LIMIT_DEFAULT;
		if (n <= H_LIST_LIMIT_MAX)   /* stop growing: any longer number is "too big" */
			n = n * 10 + (*p - '0');
	}
	if (n < 1)
		return H_LIST_LIMIT_DEFAULT;
	return n > H_LIST_LIMIT_MAX ? H_LIST_LIMIT_MAX : n;
}
