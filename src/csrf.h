/* The CSRF guard (CONTRACT §3): a browser sends cookies on its own, so a
 * cookie-authenticated change, and every sign-in, must prove it comes from
 * a page of ours. Pure functions over the request's parameters, so they
 * are unit-tested without a server. */
#ifndef BLOQR_CSRF_H
#define BLOQR_CSRF_H

#include <stdbool.h>
#include <stddef.h>

/* Longest origin we compare ("scheme://host[:port]"). */
#define CSRF_ORIGIN_MAX 300

/* The request's parameters the guard reads (CGI names, NULL when absent). */
struct csrf_input {
	const char *x_requested_with;   /* HTTP_X_REQUESTED_WITH */
	const char *origin;             /* HTTP_ORIGIN */
	const char *sec_fetch_site;     /* HTTP_SEC_FETCH_SITE */
	const char *host;               /* HTTP_HOST */
	const char *server_port;        /* SERVER_PORT: the port, when Host names none */
	const char *scheme;             /* REQUEST_SCHEME */
	const char *https;              /* HTTPS ("on" behind TLS) */
};

/* Whether the request passes the guard: X-Requested-With: bloqr, or an
 * Origin equal to one of trusted (space-separated origins; NULL or empty =
 * the request's own origin from its scheme and Host, with SERVER_PORT when
 * Host names no port, as Debian's nginx passes it), or
 * Sec-Fetch-Site: same-origin. */
bool csrf_allowed(const struct csrf_input *in, const char *trusted);

/* Whether one origin is well formed: http or https, a host, an optional
 * port, nothing else. */
bool csrf_origin_valid(const char *s, size_t n);

/* Whether a Content-Type names application/json (parameters allowed). */
bool csrf_content_type_json(const char *ct);

#endif
