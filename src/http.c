#include "http.h"

#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "jsonx.h"
#include "text.h"

static const struct { enum http_method m; const char *name; } methods[] = {
	{ HTTP_GET, "GET" }, { HTTP_HEAD, "HEAD" }, { HTTP_POST, "POST" },
	{ HTTP_PUT, "PUT" }, { HTTP_PATCH, "PATCH" }, { HTTP_DELETE, "DELETE" },
};

enum http_method http_method_parse(const char *s)
{
	for (size_t i = 0; s && i < sizeof methods / sizeof methods[0]; i++)
		if (strcmp(s, methods[i].name) == 0)
			return methods[i].m;
	return HTTP_OTHER;
}

const char *http_method_name(enum http_method m)
{
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (methods[i].m == m)
			return methods[i].name;
	return "OTHER";
}

bool http_request_id_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= HTTP_RID_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == ':'))
			return false;
	}
	return n > 0;
}

static char rid_prefix[17];
static unsigned long long rid_seq;

void http_process_init(void)
{
	unsigned char raw[8];

	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(rid_prefix, sizeof rid_prefix, raw, sizeof raw);
	rid_seq = 0;
}

/* 32 hex digits: a random per-process prefix and a counter. Unique without
 * a system call per request (request ids need not be secret). */
static void new_request_id(char out[static HTTP_RID_MAX + 1])
{
	if (rid_prefix[0] == '\0')
		http_process_init();
	snprintf(out, HTTP_RID_MAX + 1, "%s%016llx", rid_prefix, ++rid_seq);
}

const char *http_param(const struct http_request *req, const char *name)
{
	return req->io->param(req->io->ctx, name);
}

int http_request_init(struct http_request *req, const struct http_io *io, struct arena *arena)
{
	const char *uri, *q, *rid, *m;

	memset(req, 0, sizeof *req);
	req->io = io;
	req->arena = arena;
	req->start_us = clock_mono_us();
	req->body = "";
	m = io->param(io->ctx, "REQUEST_METHOD");
	req->method_name = m ? m : "";
	req->method = http_method_parse(m);
	req->remote_addr = io->param(io->ctx, "REMOTE_ADDR");
	if (req->remote_addr == NULL)
		req->remote_addr = "";

	rid = io->param(io->ctx, "HTTP_X_REQUEST_ID");
	if (http_request_id_valid(rid)) {
		snprintf(req->request_id, sizeof req->request_id, "%s", rid);
	} else {
		new_request_id(req->request_id);
	}

	/* Route on the raw REQUEST_URI: PATH_INFO arrives decoded, and a key
	 * holding %2F or ? must survive. Fall back for servers without it. */
	uri = io->param(io->ctx, "REQUEST_URI");
	if (uri == NULL || uri[0] == '\0') {
		const char *sn = io->param(io->ctx, "SCRIPT_NAME");
		const char *pi = io->param(io->ctx, "PATH_INFO");
		const char *qs = io->param(io->ctx, "QUERY_STRING");
		size_t l1 = sn ? strlen(sn) : 0, l2 = pi ? strlen(pi) : 0;
		char *p = arena_alloc(arena, l1 + l2 + 2);
		if (p == NULL)
			return -1;
		memcpy(p, sn ? sn : "", l1);
		memcpy(p + l1, pi ? pi : "", l2);
		p[l1 + l2] = '\0';
		req->path = p;
		req->query = qs ? qs : "";
		return 0;
	}
	q = strchr(uri, '?');
	if (q) {
		req->path = arena_strndup(arena, uri, (size_t)(q - uri));
		req->query = q + 1;
	} else {
		req->path = uri;
		req->query = "";
	}
	/* An absolute-form URI ("http://host/path") reduces to its path. */
	if (req->path && strncmp(req->path, "http", 4) == 0) {
		const char *s = strstr(req->path, "://");
		if (s) {
			s = strchr(s + 3, '/');
			req->path = s ? s : "/";
		}
	}
	return req->path ? 0 : -1;
}

int http_read_body(struct http_request *req, long max_body, struct http_response *res)
{
	const char *cl = http_param(req, "CONTENT_LENGTH");
	long long want = -1;
	size_t cap, len = 0;
	char *body;

	if (cl && *cl) {
		want = text_parse_uint(cl, strlen(cl));
		if (want < 0) {
			http_error(res, 400, "Invalid Content-Length");
			return 400;
		}
	}
	if (want == 0)
		return 0;
	if (want > max_body) {
		http_error(res, 413, "Request body exceeds %ld bytes", max_body);
		return 413;
	}
	/* Without a length (plain CGI, chunked) read until the end, bounded. */
	cap = want > 0 ? (size_t)want : (size_t)max_body;
	body = arena_alloc(req->arena, cap + 2);
	if (body == NULL) {
		http_error(res, 500, "Out of memory");
		return 500;
	}
	for (;;) {
		long n = req->io->read(req->io->ctx, body + len, cap + 1 - len);
		if (n < 0) {
			http_error(res, 400, "Could not read the request body");
			return 400;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > cap) {
			if (want < 0 || len > (size_t)max_body) {
				http_error(res, 413, "Request body exceeds %ld bytes", max_body);
				return 413;
			}
			/* More than CONTENT_LENGTH announced: the extra is not ours. */
			len = cap;
			break;
		}
	}
	if (want > 0 && (long long)len < want) {
		http_error(res, 400, "Request body is shorter than Content-Length");
		return 400;
	}
	body[len] = '\0';
	req->body = body;
	req->body_len = len;
	return 0;
}

int http_query_get(const struct http_request *req, const char *name, const char **out)
{
	size_t nlen = strlen(name);
	const char *p = req->query;

	*out = NULL;
	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', seg);
		size_t klen = eq ? (size_t)(eq - p) : seg;

		if (klen == nlen && memcmp(p, name, nlen) == 0) {
			const char *v = eq ? eq + 1 : p + seg;
			size_t vlen = eq ? seg - klen - 1 : 0;
			char *dst = arena_alloc(req->arena, vlen + 1);
			long dlen;

			if (dst == NULL)
				return -1;
			dlen = text_pct_decode(v, vlen, dst, true);
			if (dlen < 0 || text_has_nul(dst, (size_t)dlen) || !text_utf8_valid(dst, (size_t)dlen))
				return -1;
			*out = dst;
			return 1;
		}
		p = amp ? amp + 1 : NULL;
	}
	return 0;
}

void http_response_init(struct http_response *res)
{
	memset(res, 0, sizeof *res);
	res->status = 200;
}

void http_response_reset(struct http_response *res)
{
	res->status = 200;
	res->content_type = NULL;
	res->cache_control = NULL;
	res->x_cache = NULL;
	buf_reset(&res->headers);
	buf_reset(&res->body);
}

void http_response_free(struct http_response *res)
{
	buf_free(&res->headers);
	buf_free(&res->body);
}

void http_header(struct http_response *res, const char *name, const char *value)
{
	/* Header values come from our code; still, never let one split a line. */
	if (strpbrk(value, "\r\n"))
		return;
	buf_printf(&res->headers, "%s: %s\r\n", name, value);
}

void http_error(struct http_response *res, int status, const char *fmt, ...)
{
	char msg[512];
	struct json_object *o;
	va_list ap;
	const char *s;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	res->status = status;
	res->content_type = NULL;
	res->cache_control = NULL;
	buf_reset(&res->body);
	o = json_object_new_object();
	if (o == NULL || jsonx_add_bool(o, "success", false) < 0 || jsonx_add_str(o, "error", msg) < 0 ||
	    jsonx_add_str(o, "message", msg) < 0) {
		buf_puts(&res->body, "{\"success\":false,\"error\":\"Internal error\",\"message\":\"Internal error\"}");
		json_object_put(o);
		return;
	}
	s = jsonx_dump(o, &len);
	buf_append(&res->body, s, len);
	json_object_put(o);
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

int http_send(struct http_request *req, struct http_response *res)
{
	const char *ct = res->content_type ? res->content_type : "application/json";
	const char *cc = res->cache_control, *xc = res->x_cache;
	char head[448], clen[48] = "";
	bool no_body;
	int n;

	if (res->body.oom || res->headers.oom) {
		buf_reset(&res->headers);
		http_error(res, 500, "Out of memory");
	}
	no_body = res->status == 304;
	if (no_body)
		buf_reset(&res->body);
	else
		snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", res->body.len);
	n = snprintf(head, sizeof head,
	    "Status: %d %s\r\n%s%s%s%sX-Request-Id: %s\r\nX-Content-Type-Options: nosniff\r\n%s%s%s%s%s%s",
	    res->status, http_reason(res->status),
	    no_body ? "" : "Content-Type: ", no_body ? "" : ct, no_body ? "" : "\r\n", clen,
	    req->request_id,
	    cc ? "Cache-Control: " : "", cc ? cc : "", cc ? "\r\n" : "",
	    xc ? "X-Cache: " : "", xc ? xc : "", xc ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof head)
		return -1;
	if (req->io->write(req->io->ctx, head, (size_t)n) < 0)
		return -1;
	if (res->headers.len && req->io->write(req->io->ctx, res->headers.data, res->headers.len) < 0)
		return -1;
	if (req->io->write(req->io->ctx, "\r\n", 2) < 0)
		return -1;
	if (req->method != HTTP_HEAD && res->body.len &&
	    (req->io->write_ref ? req->io->write_ref : req->io->write)(req->io->ctx, res->body.data,
	    res->body.len) < 0)
		return -1;
	return 0;
}
