#include "worker.h"

#include "clock.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "csrf.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "router.h"

int worker_init(struct app *app, const struct conf *conf)
{
	memset(app, 0, sizeof *app);
	app->conf = conf;
	http_process_init();
	arena_init(&app->arena, 32 * 1024);
	http_response_init(&app->res);
	app->pg = pg_new(conf->db_url, conf->db_statement_timeout_ms, "bloqr");
	app->cache = cache_open(conf->cache_path, conf->cache_max_age,
	    conf->cache_strategy == CONF_WRITE_THROUGH);
	if (app->pg == NULL || app->cache == NULL) {
		worker_fini(app);
		return -1;
	}
	cache_set_max_rows(app->cache, conf->cache_max_rows);
	/* Connect now so the first request does not pay for it; a failure
	 * here is fine: the next request that needs PostgreSQL retries. */
	(void)!pg_connect(app->pg);
	return 0;
}

int worker_event_fd(struct app *app)
{
	return cache_watch(app->cache);
}

void worker_event(struct app *app)
{
	cache_watch_event(app->cache);
}

void worker_fini(struct app *app)
{
	pg_free(app->pg);
	pg_free(app->query_pg);
	cache_close(app->cache);
	arena_free(&app->arena);
	http_response_free(&app->res);
	etag_memo_free(&app->etags);
	app->pg = NULL;
	app->query_pg = NULL;
	app->cache = NULL;
}

/* Read and drop what is left of a refused body, bounded, so the web server
 * is not cut off mid-write and can deliver our answer. */
static void drain_body(const struct http_io *io)
{
	char tmp[16384];
	size_t total = 0;
	long n;

	while (total < 16u << 20 && (n = io->read(io->ctx, tmp, sizeof tmp)) > 0)
		total += (size_t)n;
}

/* The CSRF guard (§3) for a request a browser could send on its own. */
static bool csrf_ok(const struct app *app, const struct http_request *req)
{
	const struct csrf_input in = {
		.x_requested_with = http_param(req, "HTTP_X_REQUESTED_WITH"),
		.origin = http_param(req, "HTTP_ORIGIN"),
		.sec_fetch_site = http_param(req, "HTTP_SEC_FETCH_SITE"),
		.host = http_param(req, "HTTP_HOST"),
		.server_port = http_param(req, "SERVER_PORT"),
		.scheme = http_param(req, "REQUEST_SCHEME"),
		.https = http_param(req, "HTTPS"),
	};

	return csrf_allowed(&in, app->conf->http_trusted_origins);
}

static const char csrf_refused[] =
	"Cross-site request refused: send the header X-Requested-With: bloqr, or come from a trusted origin";

/* Credentials and role for a route: 0 to go on, else the response is set. */
static int authorize(struct app *app, const struct http_request *req, const struct route *rt,
    struct http_response *res)
{
	memset(&app->who, 0, sizeof app->who);
	/* Sign-in sets a cookie: a foreign page must not sign a browser in
	 * (login CSRF), and only a JSON body, which a form cannot send. */
	if (rt->flags & ROUTE_SIGNIN) {
		if (!csrf_ok(app, req)) {
			http_error(res, 403, csrf_refused);
			return -1;
		}
		if (!csrf_content_type_json(http_param(req, "CONTENT_TYPE"))) {
			http_error(res, 403, "Sign-in needs Content-Type: application/json");
			return -1;
		}
	}
	if (!(rt->flags & (ROUTE_AUTH | ROUTE_ADMIN)))
		return 0;
	switch (auth_resolve(app, req, (rt->flags & ROUTE_CACHED) &&
	    (req->method == HTTP_GET || req->method == HTTP_HEAD), &app->who)) {
	case AUTH_OK:
		break;
	case AUTH_UNAVAIL:
		http_error(res, 503, "Database unavailable, try again shortly");
		http_header(res, "Retry-After", "5");
		return -1;
	case AUTH_ERROR:
		http_error(res, 500, "Could not check the credentials");
		return -1;
	case AUTH_NONE:
		http_error(res, 401, "Authentication required");
		http_header(res, "WWW-Authenticate", "Bearer");
		return -1;
	default:
		http_error(res, 401, "Invalid or expired credentials");
		http_header(res, "WWW-Authenticate", "Bearer");
		return -1;
	}
	if (app->who.banned) {
		http_error(res, 403, "This account is banned");
		return -1;
	}
	if ((rt->flags & ROUTE_ADMIN) && strcmp(app->who.role, "admin") != 0) {
		http_error(res, 403, "Admin role required");
		return -1;
	}
	/* A cookie is sent by the browser on its own; a custom header, a
	 * trusted Origin or Sec-Fetch-Site: same-origin is not. */
	if (app->who.via == AUTH_VIA_COOKIE && req->method != HTTP_GET && req->method != HTTP_HEAD &&
	    !csrf_ok(app, req)) {
		http_error(res, 403, csrf_refused);
		return -1;
	}
	return 0;
}

/* Conditional GET (docs/CONDITIONAL-GET.md): a 200 read through the L1
 * cache carries the entity-tag of its body, which is exactly the data as
 * served; an If-None-Match that names it gets a 304 instead. Nothing here
 * reads PostgreSQL or SQLite: the handler's read was the only one. */
static void conditional_get(struct app *app, const struct http_request *req, struct http_response *res)
{
	char tag[ETAG_LEN + 1];

	if ((req->method != HTTP_GET && req->method != HTTP_HEAD) || res->status != 200 ||
	    res->x_cache == NULL || res->body.oom)
		return;
	etag_memo_of(&app->etags, res->body.data, res->body.len, tag);
	http_header(res, "ETag", tag);
	if (etag_none_match(http_param(req, "HTTP_IF_NONE_MATCH"), tag))
		res->status = 304;
}

void worker_handle(struct app *app, const struct http_io *io)
{
	struct http_response *res = &app->res;
	struct http_request req;
	struct route_match m;
	char allow[64];
	int route = -1, rc;

	arena_reset(&app->arena);
	http_response_reset(res);
	cache_recheck(app->cache);
	if (http_request_init(&req, io, &app->arena) < 0) {
		http_error(res, 500, "Out of memory");
		goto send;
	}
	log_set_request_id(req.request_id);

	/* The size limit comes first: nothing of an oversized body is read. */
	rc = http_read_body(&req, app->conf->http_max_body, res);
	if (rc) {
		if (rc == 413)
			drain_body(io);
		goto send;
	}

	route = router_match(router_routes, router_nroutes, req.method, req.path, &app->arena,
	    &m, allow, sizeof allow);
	if (route == ROUTER_NOT_FOUND) {
		http_error(res, 404, "Not found");
	} else if (route == ROUTER_BAD_METHOD) {
		http_error(res, 405, "Method %s is not allowed here", http_method_name(req.method));
		http_header(res, "Allow", allow);
	} else if (route == ROUTER_BAD_PATH) {
		http_error(res, 400, "Malformed percent-encoding in the path");
	} else if (authorize(app, &req, &router_routes[route], res) == 0) {
		router_routes[route].fn(app, &req, res, &m);
		conditional_get(app, &req, res);
	}
	if (route < 0)
		route = -1;
send:
	/* §2: nothing a credential was shown for, and nothing of an admin or
	 * storage route, is kept by a shared cache. */
	if ((route >= 0 && (router_routes[route].flags & (ROUTE_AUTH | ROUTE_ADMIN | ROUTE_SIGNIN))) ||
	    auth_presented(&req))
		res->cache_control = "no-store";
	if (http_send(&req, res) < 0)
		log_info("client went away before the response was written");
	if (res->status >= 500)
		log_warn("%s %s -> %d", req.method_name ? req.method_name : "-", req.path ? req.path : "-", res->status);
	metrics_request(route, res->status, clock_mono_us() - req.start_us);
	log_set_request_id(NULL);
	log_flush_dropped();
	app->served++;
}

void worker_refuse(struct app *app, const struct http_io *io, int status, const char *msg)
{
	struct http_response *res = &app->res;
	struct http_request req;

	arena_reset(&app->arena);
	http_response_reset(res);
	if (http_request_init(&req, io, &app->arena) < 0)
		return;
	log_set_request_id(req.request_id);
	http_error(res, status, "%s", msg);
	if (http_send(&req, res) < 0)
		log_info("client went away before the response was written");
	metrics_request(-1, res->status, clock_mono_us() - req.start_us);
	log_set_request_id(NULL);
}

/* ---- plain CGI transport ---- */

static const char *cgi_param(void *ctx, const char *name)
{
	(void)ctx;
	return getenv(name);
}

static long cgi_read(void *ctx, char *buf, size_t n)
{
	ssize_t got;

	(void)ctx;
	do
		got = read(STDIN_FILENO, buf, n);
	while (got < 0 && errno == EINTR);
	return got;
}

static int cgi_write(void *ctx, const char *buf, size_t n)
{
	(void)ctx;
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

int worker_run_cgi(struct app *app)
{
	static const struct http_io io = { NULL, cgi_param, cgi_read, cgi_write, NULL };

	signal(SIGPIPE, SIG_IGN);
	worker_handle(app, &io);
	return 0;
}
