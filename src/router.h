/* Method + path pattern → handler. Patterns are literal segments and
 * placeholders: {name} takes one segment, {name*} the rest of the path
 * (slashes included). Placeholders are percent-decoded; literals compare raw. */
#ifndef BLOQR_ROUTER_H
#define BLOQR_ROUTER_H

#include <stddef.h>

#include "http.h"

#define ROUTE_MAX_PARAMS 4

struct app;

struct route_match {
	const char *params[ROUTE_MAX_PARAMS];   /* decoded, in the arena */
	int nparams;
};

typedef void (*route_fn)(struct app *app, struct http_request *req,
    struct http_response *res, const struct route_match *m);

enum route_flags {
	ROUTE_PUBLIC = 0,        /* no credentials needed */
	ROUTE_AUTH = 1 << 0,     /* any signed-in user */
	ROUTE_ADMIN = 1 << 1,    /* role admin */
	ROUTE_CACHED = 1 << 3,   /* a read of cached data: may run on stale credentials (§5.5) */
	ROUTE_SIGNIN = 1 << 4,   /* a sign-in: CSRF guard without a cookie, JSON body only (§3) */
	ROUTE_ALIAS = 1 << 5,    /* a second path for another route: left out of GET /api */
};

struct route {
	enum http_method method;
	const char *pattern;
	route_fn fn;
	unsigned flags;
	const char *desc;        /* for GET /api */
};

enum router_result {
	ROUTER_NOT_FOUND = -1,
	ROUTER_BAD_METHOD = -2,  /* path known, method not: see allow */
	ROUTER_BAD_PATH = -3,    /* malformed percent-encoding, NUL, bad UTF-8 */
};

/* Find the route for (method, raw path). Returns its index, or an enum
 * router_result; for ROUTER_BAD_METHOD, allow gets "GET, HEAD, POST"-style
 * text. HEAD is served by GET routes. */
int router_match(const struct route *routes, size_t n, enum http_method method,
    const char *path, struct arena *arena, struct route_match *m, char *allow, size_t allowlen);

/* The service's route table (routes.c). */
extern const struct route router_routes[];
extern const size_t router_nroutes;

#endif
