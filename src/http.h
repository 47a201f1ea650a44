/* The request as the handlers see it, and the response they build.
 * Transport-neutral: a struct http_io supplies parameters, body and output,
 * so FastCGI and plain CGI share every line below. */
#ifndef BLOQR_HTTP_H
#define BLOQR_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "buf.h"

struct http_io {
	void *ctx;
	/* A CGI/FastCGI parameter ("REQUEST_METHOD", "HTTP_COOKIE"…), or NULL. */
	const char *(*param)(void *ctx, const char *name);
	/* Read up to n body bytes; 0 at the end, -1 on error. */
	long (*read)(void *ctx, char *buf, size_t n);
	/* Write all n bytes; -1 on error. */
	int (*write)(void *ctx, const char *buf, size_t n);
	/* Optional: the same for the body, whose bytes stay put until the
	 * request is over, so a transport may send them from where they are
	 * instead of copying them. NULL: write is used. */
	int (*write_ref)(void *ctx, const char *buf, size_t n);
};

enum http_method {
	HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE
};

/* Longest request id accepted from a client (and generated: 32). */
#define HTTP_RID_MAX 64

struct http_request {
	const struct http_io *io;
	struct arena *arena;          /* per-request memory; reset after it */
	enum http_method method;
	const char *method_name;      /* as sent */
	const char *path;             /* raw (percent-encoded) path, no query */
	const char *query;            /* raw query string, "" when none */
	const char *remote_addr;      /* "" when unknown */
	char *body;                   /* NUL-terminated; "" when none */
	size_t body_len;
	char request_id[HTTP_RID_MAX + 1];
	long long start_us;           /* monotonic, for the latency metric */
};

struct http_response {
	int status;
	struct buf headers;           /* "Name: value\r\n" lines */
	struct buf body;
	const char *content_type;     /* NULL: application/json */
	const char *cache_control;    /* static text, or NULL: no Cache-Control */
	const char *x_cache;          /* static text (HIT, MISS…) for a read through
	                               * the L1 cache, or NULL: no X-Cache */
};

/* Fill req from io: method, path and query from REQUEST_URI, the request id
 * (the client's when valid, else a new random one). Never reads the body. */
int http_request_init(struct http_request *req, const struct http_io *io, struct arena *arena);

/* Read the body, refusing more than max_body bytes: checked against
 * CONTENT_LENGTH before reading and again while reading. Returns 0, or an
 * HTTP status (413, 400) with the error already set in res. */
int http_read_body(struct http_request *req, long max_body, struct http_response *res);

/* A request header by its CGI name ("HTTP_AUTHORIZATION"), or NULL. */
const char *http_param(const struct http_request *req, const char *name);

/* The first value of query parameter name, percent-decoded (and '+' as
 * space) into the arena. Returns 1 when present, 0 when absent, -1 when the
 * value is malformed (bad escape, NUL, invalid UTF-8). */
int http_query_get(const struct http_request *req, const char *name, const char **out);

void http_response_init(struct http_response *res);
void http_response_reset(struct http_response *res);
void http_response_free(struct http_response *res);

void http_header(struct http_response *res, const char *name, const char *value);
/* {"success":false,"error":msg,"message":msg} (the dashboard shows
 * message); msg must be for clients: no internals. */
void http_error(struct http_response *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The status line's reason phrase. */
const char *http_reason(int status);

/* Write status, headers (adding X-Request-Id, Content-Type, Content-Length,
 * Cache-Control and X-Cache when set, X-Content-Type-Options) and body
 * (unless HEAD) to req->io. A 304 has no body, so neither Content-Type nor
 * Content-Length (RFC 9110 §15.4.5). */
int http_send(struct http_request *req, struct http_response *res);

bool http_request_id_valid(const char *s);
/* Call once in each new process (after fork): new request ids must not
 * repeat another process's. */
void http_process_init(void);
enum http_method http_method_parse(const char *s);
const char *http_method_name(enum http_method m);

#endif
