/* One responder: its long-lived state (struct app) and the loop that feeds
 * it requests, from FastCGI or from plain CGI. */
#ifndef BLOQR_WORKER_H
#define BLOQR_WORKER_H

#include <signal.h>
#include <stdbool.h>

#include "arena.h"
#include "auth.h"
#include "config.h"
#include "etag.h"
#include "http.h"

/* Everything a handler may use; made once per worker, kept for its life. */
struct app {
	const struct conf *conf;
	struct pg *pg;              /* the worker's one PostgreSQL connection */
	struct cache *cache;        /* the worker's one SQLite handle */
	struct pg *query_pg;        /* the query console's read-only connection, made on first use */
	struct arena arena;         /* per-request memory */
	struct http_response res;   /* reused across requests */
	struct principal who;       /* the caller of the current request */
	struct etag_memo etags;     /* the last bodies tagged, for conditional GET */
	unsigned long long served;
};

/* Connect nothing yet (connections are lazy), but allocate everything. */
int worker_init(struct app *app, const struct conf *conf) __attribute__((warn_unused_result));
void worker_fini(struct app *app);

/* Serve one request read from io. Never fails: every problem becomes a
 * response. */
void worker_handle(struct app *app, const struct http_io *io);

/* A descriptor the FastCGI loop polls besides its connections (the cache
 * file's watch), or -1; when it is readable, worker_event before serving
 * anything polled with it. */
int worker_event_fd(struct app *app);
void worker_event(struct app *app);

/* Serve the one request of a CGI invocation. */
int worker_run_cgi(struct app *app);

/* Answer status with a JSON error message on io without routing (a
 * request that never arrived whole: 408); the parameters io has are used
 * for the request id. Counted in the metrics like any answer. */
void worker_refuse(struct app *app, const struct http_io *io, int status, const char *msg);

#endif
