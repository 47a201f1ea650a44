#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "cache.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "router.h"

/* ---- stop signals ----
 * SIGTERM/SIGINT/SIGQUIT stay blocked while a request is served and are
 * let in only while the worker waits for a connection (ppoll's atomic mask
 * change), so one can neither cut a request short nor slip in unseen just
 * before the wait. */
static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

bool worker_stopping(void) { return stop_flag != 0; }

static int install_stop_handlers(sigset_t *waitmask)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGQUIT, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGQUIT);
	if (sigprocmask(SIG_BLOCK, &block, waitmask) < 0)
		return -1;
	sigdelset(waitmask, SIGTERM);
	sigdelset(waitmask, SIGINT);
	sigdelset(waitmask, SIGQUIT);
	return 0;
}

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
	/* Connect now so the first request does not pay for it; a failure
	 * here is fine: the next request that needs PostgreSQL retries. */
	(void)!pg_connect(app->pg);
	return 0;
}

void worker_fini(struct app *app)
{
	pg_free(app->pg);
	pg_free(app->query_pg);
	cache_close(app->cache);
	arena_free(&app->arena);
	http_response_free(&app->res);
	app->pg = NULL;
	app->query_pg = NULL;
	app->cache = NULL;
}

static long long mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

/* Credentials and role for a route: 0 to go on, else the response is set. */
static int authorize(struct app *app, const struct http_request *req, const struct route *rt,
    struct http_response *res)
{
	const char *xrw;

	memset(&app->who, 0, sizeof app->who);
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
	/* A cookie is sent by the browser on its own; a custom header is not. */
	if (app->who.via == AUTH_VIA_COOKIE && req->method != HTTP_GET && req->method != HTTP_HEAD) {
		xrw = http_param(req, "HTTP_X_REQUESTED_WITH");
		if (xrw == NULL || strcmp(xrw, "bloqr") != 0) {
			http_error(res, 403, "Cookie-authenticated requests that change state need the header X-Requested-With: bloqr");
			return -1;
		}
	}
	return 0;
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
	}
	if (route < 0)
		route = -1;
send:
	if (http_send(&req, res) < 0)
		log_info("client went away before the response was written");
	if (res->status >= 500)
		log_warn("%s %s -> %d", req.method_name ? req.method_name : "-", req.path ? req.path : "-", res->status);
	metrics_request(route, res->status, mono_us() - req.start_us);
	log_set_request_id(NULL);
	app->served++;
}

/* ---- FastCGI transport ----
 * Parameters and the body come through libfcgi; the answer does not: it is
 * gathered here and framed as FastCGI records (STDOUT…, an empty STDOUT,
 * END_REQUEST) sent in one write. libfcgi would send it in 8 KiB pieces,
 * and the web server would read each piece on its own. */
struct fcgi_ctx {
	FCGX_Request r;
	struct buf out;    /* the response as the handler wrote it */
	struct buf wire;   /* the same, framed */
};

static const char *fcgi_param(void *ctx, const char *name)
{
	struct fcgi_ctx *f = ctx;

	return FCGX_GetParam(name, f->r.envp);
}

static long fcgi_read(void *ctx, char *buf, size_t n)
{
	struct fcgi_ctx *f = ctx;
	int got;

	if (n > 1 << 30)
		n = 1 << 30;
	got = FCGX_GetStr(buf, (int)n, f->r.in);
	if (got == 0 && FCGX_GetError(f->r.in) != 0)
		return -1;
	return got;
}

static int fcgi_write(void *ctx, const char *buf, size_t n)
{
	struct fcgi_ctx *f = ctx;

	return buf_append(&f->out, buf, n);
}

static void record_header(struct buf *w, unsigned type, unsigned id, size_t len)
{
	unsigned char h[8] = { 1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
		(unsigned char)(len >> 8), (unsigned char)len, 0, 0 };

	buf_append(w, h, sizeof h);
}

/* Frame f->out for request id and write it all to fd. */
static int fcgi_send(struct fcgi_ctx *f, int fd)
{
	static const unsigned char end_body[8] = { 0 };   /* app status 0, REQUEST_COMPLETE */
	unsigned id = (unsigned)f->r.requestId;
	size_t off = 0;

	buf_reset(&f->wire);
	while (off < f->out.len) {
		size_t n = f->out.len - off > 65535 ? 65535 : f->out.len - off;
		record_header(&f->wire, 6 /* FCGI_STDOUT */, id, n);
		buf_append(&f->wire, f->out.data + off, n);
		off += n;
	}
	record_header(&f->wire, 6, id, 0);
	record_header(&f->wire, 3 /* FCGI_END_REQUEST */, id, sizeof end_body);
	buf_append(&f->wire, end_body, sizeof end_body);
	if (f->wire.oom)
		return -1;
	for (off = 0; off < f->wire.len;) {
		ssize_t w = write(fd, f->wire.data + off, f->wire.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* Wait for the next connection on listen_fd (shared by every worker and
 * non-blocking: another worker may take it first). The fd, or -1 when a
 * stop signal came. */
static int next_connection(int listen_fd, const sigset_t *waitmask, bool tcp)
{
	struct pollfd pfd = { listen_fd, POLLIN, 0 };
	int fd, one = 1;

	while (!stop_flag) {
		if (ppoll(&pfd, 1, NULL, waitmask) < 0) {
			if (errno != EINTR) {
				log_error("worker: poll: %s", strerror(errno));
				return -1;
			}
			continue;
		}
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED ||
			    errno == EPROTO)
				continue;
			log_error("worker: accept: %s", strerror(errno));
			poll(NULL, 0, 100);   /* EMFILE and the like: don't spin */
			continue;
		}
		/* The response goes out in several writes; don't let Nagle hold the last. */
		if (tcp)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		return fd;
	}
	return -1;
}

/* The worker accepts connections itself and hands each to libfcgi as an
 * open connection: no accept lock (fcntl) around every accept, no lingering
 * close that waits for the web server, and a clean stop (see above). */
int worker_run_fcgi(struct app *app, int listen_fd)
{
	struct fcgi_ctx f = { .out = BUF_INIT, .wire = BUF_INIT };
	FCGX_Request *rq = &f.r;
	struct http_io io = { &f, fcgi_param, fcgi_read, fcgi_write };
	long max = app->conf->pool_max_requests;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	sigset_t waitmask;
	char tmp[4096];
	bool tcp;
	int none = -1, fd, fl, rc = 0;

	if (install_stop_handlers(&waitmask) < 0) {
		log_error("worker: cannot install signal handlers: %s", strerror(errno));
		return -1;
	}
	tcp = getsockname(listen_fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	fl = fcntl(listen_fd, F_GETFL);
	if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_error("worker: listening socket: %s", strerror(errno));
		return -1;
	}
	/* libfcgi is given no listening socket: if it ever wants to accept one
	 * itself, it fails at once instead of blocking. */
	none = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (none < 0 || FCGX_Init() != 0 || FCGX_InitRequest(rq, none, 0) != 0) {
		log_error("worker: cannot initialise FastCGI");
		if (none >= 0)
			close(none);
		return -1;
	}
	while ((fd = next_connection(listen_fd, &waitmask, tcp)) >= 0) {
		/* An open connection that libfcgi must neither accept nor close. */
		rq->ipcFd = fd;
		rq->keepConnection = 1;
		if (FCGX_Accept_r(rq) < 0) {
			/* Not a FastCGI request (libfcgi closed it). */
			rq->ipcFd = -1;
			continue;
		}
		buf_reset(&f.out);
		worker_handle(app, &io);
		/* Read what is left of the body, so closing sends no reset that
		 * could cut off the response. */
		for (size_t left = 16u << 20; left > 0;) {
			int n = FCGX_GetStr(tmp, sizeof tmp, rq->in);
			if (n <= 0)
				break;
			left = (size_t)n >= left ? 0 : left - (size_t)n;
		}
		if (fcgi_send(&f, fd) < 0)
			log_info("worker: the web server went away before the response was written");
		/* Free the request's streams without libfcgi writing anything. */
		FCGX_Free(rq, 0);
		close(fd);
		rq->ipcFd = -1;
		if (max > 0 && app->served >= (unsigned long long)max) {
			log_info("worker: served %llu requests (max_requests), recycling", app->served);
			break;
		}
	}
	if (!stop_flag && (max <= 0 || app->served < (unsigned long long)max))
		rc = -1;
	FCGX_Free(rq, 0);
	close(none);
	buf_free(&f.out);
	buf_free(&f.wire);
	return rc;
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
	static const struct http_io io = { NULL, cgi_param, cgi_read, cgi_write };

	signal(SIGPIPE, SIG_IGN);
	worker_handle(app, &io);
	return 0;
}
