/* http.c: request view, body limits, query strings, response framing —
 * driven through an in-memory struct http_io. */
#include <stdlib.h>

#include <sodium.h>

#include "http.h"
#include "tap.h"

struct mem {
	const char *const *env;   /* NAME=value, NULL-terminated */
	const char *in;
	size_t in_len, in_pos;
	struct buf out;
};

static const char *mem_param(void *ctx, const char *name)
{
	struct mem *m = ctx;
	size_t n = strlen(name);

	for (const char *const *e = m->env; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static long mem_read(void *ctx, char *buf, size_t n)
{
	struct mem *m = ctx;
	size_t left = m->in_len - m->in_pos;

	if (n > left)
		n = left;
	if (n > 7)
		n = 7;   /* short reads, as from a socket */
	memcpy(buf, m->in + m->in_pos, n);
	m->in_pos += n;
	return (long)n;
}

static int mem_write(void *ctx, const char *buf, size_t n)
{
	return buf_append(&((struct mem *)ctx)->out, buf, n);
}

static int body_status(const char *const *env, const char *in, long max, struct arena *a,
    struct http_request *req, struct http_response *res)
{
	static struct mem m;
	static struct http_io io = { &m, mem_param, mem_read, mem_write, NULL };

	m.env = env;
	m.in = in;
	m.in_len = strlen(in);
	m.in_pos = 0;
	http_response_reset(res);
	http_request_init(req, &io, a);
	return http_read_body(req, max, res);
}

int main(void)
{
	struct arena a;
	struct http_request req;
	struct http_response res;
	const char *v;
	struct mem m = { 0 };
	struct http_io io = { &m, mem_param, mem_read, mem_write, NULL };

	if (sodium_init() < 0)
		return 1;
	arena_init(&a, 4096);
	http_response_init(&res);

	{
		const char *env[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/api/storage/a%2Fb?x=1&y=a+b%21&e&bad=%zz&u=%C3%28",
			"PATH_INFO=/api/storage/a/b", "HTTP_X_REQUEST_ID=abc-123", "REMOTE_ADDR=127.0.0.1", NULL };
		m.env = env;
		ok(http_request_init(&req, &io, &a) == 0, "request parsed");
		is_int(req.method, HTTP_GET, "method");
		is_str(req.path, "/api/storage/a%2Fb", "path is the raw REQUEST_URI, not PATH_INFO");
		is_str(req.query, "x=1&y=a+b%21&e&bad=%zz&u=%C3%28", "raw query");
		is_str(req.request_id, "abc-123", "valid request id echoed");
		is_str(req.remote_addr, "127.0.0.1", "remote address");
		is_int(http_query_get(&req, "x", &v), 1, "x present");
		is_str(v, "1", "x value");
		is_int(http_query_get(&req, "y", &v), 1, "y present");
		is_str(v, "a b!", "y decoded, '+' as space");
		is_int(http_query_get(&req, "e", &v), 1, "bare key present");
		is_str(v, "", "bare key is empty");
		is_int(http_query_get(&req, "z", &v), 0, "absent key");
		is_int(http_query_get(&req, "bad", &v), -1, "malformed escape");
		is_int(http_query_get(&req, "u", &v), -1, "invalid UTF-8");
	}
	{
		const char *env[] = { "REQUEST_METHOD=BREW", "REQUEST_URI=/x", "HTTP_X_REQUEST_ID=has space", NULL };
		m.env = env;
		http_request_init(&req, &io, &a);
		is_int(req.method, HTTP_OTHER, "unknown method");
		is_int(strlen(req.request_id), 32, "invalid request id replaced by a new one");
		ok(strspn(req.request_id, "0123456789abcdef") == 32, "new id is hex");
		ok(!http_request_id_valid("x\r\nSet-Cookie: a=b"), "header injection is not an id");
		ok(!http_request_id_valid(""), "empty id invalid");
		{
			char longid[70];
			memset(longid, 'a', 65);
			longid[65] = '\0';
			ok(!http_request_id_valid(longid), "65-char id invalid");
			longid[64] = '\0';
			ok(http_request_id_valid(longid), "64-char id valid");
		}
	}
	{
		const char *env[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=11", NULL };
		is_int(body_status(env, "hello world", 100, &a, &req, &res), 0, "body read");
		is_int(req.body_len, 11, "body length");
		is_str(req.body, "hello world", "body text (short reads joined)");
		is_int(body_status(env, "hello world", 10, &a, &req, &res), 413, "CONTENT_LENGTH over max_body: 413");
		is_int(res.status, 413, "response status 413");
		ok(strstr(res.body.data, "\"success\":false") != NULL, "JSON error envelope");
	}
	{
		const char *env[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", NULL };
		is_int(body_status(env, "0123456789abc", 10, &a, &req, &res), 413, "no length, too much read: 413");
		is_int(body_status(env, "0123456789", 10, &a, &req, &res), 0, "no length, exactly max: fine");
	}
	{
		const char *env[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=50", NULL };
		is_int(body_status(env, "short", 100, &a, &req, &res), 400, "body shorter than announced: 400");
	}
	{
		const char *env[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=12abc", NULL };
		is_int(body_status(env, "x", 100, &a, &req, &res), 400, "malformed Content-Length: 400");
	}
	{
		const char *env[] = { "REQUEST_METHOD=HEAD", "REQUEST_URI=/x", "HTTP_X_REQUEST_ID=r1", NULL };
		m.env = env;
		buf_reset(&m.out);
		http_request_init(&req, &io, &a);
		http_response_reset(&res);
		http_error(&res, 404, "Not %s", "found");
		http_header(&res, "Allow", "GET");
		http_header(&res, "X-Bad", "a\r\nInjected: 1");
		ok(http_send(&req, &res) == 0, "sent");
		ok(strncmp(m.out.data, "Status: 404 Not Found\r\n", 23) == 0, "status line");
		ok(strstr(m.out.data, "Content-Type: application/json\r\n") != NULL, "content type");
		ok(strstr(m.out.data, "X-Request-Id: r1\r\n") != NULL, "request id header");
		ok(strstr(m.out.data, "Allow: GET\r\n") != NULL, "extra header");
		ok(strstr(m.out.data, "Injected") == NULL, "a value with CR/LF is dropped");
		ok(strstr(m.out.data, "Content-Length: 59\r\n") != NULL, "length of the body");
		ok(strstr(m.out.data, "X-Content-Type-Options: nosniff\r\n") != NULL, "nosniff on every answer");
		ok(strstr(m.out.data, "Cache-Control:") == NULL, "no Cache-Control unless set");
		ok(strstr(m.out.data, "\r\n\r\n") != NULL && strstr(m.out.data, "{") == NULL, "HEAD: no body");
		is_str(res.body.data, "{\"success\":false,\"error\":\"Not found\",\"message\":\"Not found\"}",
		    "error envelope: message repeats error");
		res.cache_control = "no-store";
		buf_reset(&m.out);
		ok(http_send(&req, &res) == 0 && strstr(m.out.data, "Cache-Control: no-store\r\n") != NULL,
		    "Cache-Control when set");
		ok(strstr(m.out.data, "X-Cache:") == NULL, "no X-Cache unless set");
	}
	{
		/* A 304 (RFC 9110 §15.4.5): the headers of the 200 it stands
		 * for, but no body, and so no Content-Type or Content-Length. */
		const char *env[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/x", "HTTP_X_REQUEST_ID=r2", NULL };
		m.env = env;
		buf_reset(&m.out);
		http_request_init(&req, &io, &a);
		http_response_reset(&res);
		buf_puts(&res.body, "{\"success\":true}");
		res.cache_control = "public, max-age=60";
		res.x_cache = "HIT";
		http_header(&res, "ETag", "\"abc\"");
		ok(http_send(&req, &res) == 0 && strstr(m.out.data, "X-Cache: HIT\r\n") != NULL &&
		    strstr(m.out.data, "Content-Length: 16\r\n") != NULL, "200: X-Cache when set, and the length");
		res.status = 304;
		buf_reset(&m.out);
		ok(http_send(&req, &res) == 0, "304 sent");
		ok(strncmp(m.out.data, "Status: 304 Not Modified\r\n", 26) == 0, "304: status line");
		ok(strstr(m.out.data, "ETag: \"abc\"\r\n") && strstr(m.out.data, "X-Cache: HIT\r\n") &&
		    strstr(m.out.data, "Cache-Control: public, max-age=60\r\n") &&
		    strstr(m.out.data, "X-Content-Type-Options: nosniff\r\n") &&
		    strstr(m.out.data, "X-Request-Id: r2\r\n"), "304: ETag, X-Cache, Cache-Control, nosniff, request id");
		ok(strstr(m.out.data, "\nContent-Length:") == NULL && strstr(m.out.data, "\nContent-Type:") == NULL,
		    "304: no Content-Length, no Content-Type");
		ok(m.out.len >= 4 && memcmp(m.out.data + m.out.len - 4, "\r\n\r\n", 4) == 0, "304: no body");
		is_int(res.body.len, 0, "304: the body is dropped");
	}
	buf_free(&m.out);
	http_response_free(&res);
	arena_free(&a);
	return done_testing();
}
