#include "fcgi.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

#define HANDOFF_BATCH 16           /* connections per hand-off message */
#define HANDOFF_WAIT_MS 2000       /* a stopping worker waits this long for room */
#define DRAIN_MAX (16u << 20)      /* body bytes read and dropped after an answer */

/* ---- stop signals ----
 * SIGTERM/SIGINT/SIGQUIT stay blocked while a request is served and are
 * let in only while the worker waits (ppoll's atomic mask change), so one
 * can neither cut a request short nor slip in unseen just before the wait. */
static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

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

/* ---- one request ----
 * Parameters and the body come through libfcgi; the answer does not: it is
 * gathered here as pieces (the head copied, the body by reference where the
 * handler left it) and framed as FastCGI records (STDOUT…, an empty
 * STDOUT, END_REQUEST) sent with one writev. libfcgi would copy it and
 * send it in 8 KiB pieces, and the web server would read each on its own. */
#define MAX_PIECES 8
#define REC_MAX 65535u            /* content bytes in one record */
#define IOV_BATCH 64              /* iovecs per writev */

struct piece {
	const char *ref;           /* bytes owned by the handler, or NULL: */
	size_t off;                /* ...bytes at off in loop.out */
	size_t n;
};

struct loop {
	struct app *app;
	FCGX_Request r;
	struct http_io io;
	struct buf out;            /* copied pieces of the answer */
	struct piece pieces[MAX_PIECES];
	int npieces;
	int conns[FCGI_MAX_CONNS]; /* every connection this worker holds */
	int nconns;
	int current;               /* the one being served, or -1 */
	bool gave;                 /* idle ones were handed off for this request */
	int handoff[2];            /* receive, send; -1 when alone */
};

static const char *fcgi_param(void *ctx, const char *name)
{
	struct loop *L = ctx;

	return FCGX_GetParam(name, L->r.envp);
}

static long fcgi_read(void *ctx, char *buf, size_t n)
{
	struct loop *L = ctx;
	int got;

	if (n > 1 << 30)
		n = 1 << 30;
	got = FCGX_GetStr(buf, (int)n, L->r.in);
	if (got == 0 && FCGX_GetError(L->r.in) != 0)
		return -1;
	return got;
}

static int fcgi_write(void *ctx, const char *buf, size_t n)
{
	struct loop *L = ctx;
	struct piece *last = L->npieces ? &L->pieces[L->npieces - 1] : NULL;
	size_t off = L->out.len;

	if (buf_append(&L->out, buf, n) < 0)
		return -1;
	if (last && last->ref == NULL && last->off + last->n == off) {
		last->n += n;
		return 0;
	}
	if (L->npieces == MAX_PIECES)
		return -1;     /* cannot happen: fcgi_write_ref keeps one free */
	L->pieces[L->npieces++] = (struct piece){ NULL, off, n };
	return 0;
}

static int fcgi_write_ref(void *ctx, const char *buf, size_t n)
{
	struct loop *L = ctx;

	if (L->npieces >= MAX_PIECES - 1)
		return fcgi_write(ctx, buf, n);
	L->pieces[L->npieces++] = (struct piece){ buf, 0, n };
	return 0;
}

/* writev every byte of iov[0..n) (which it may modify). */
static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static void record_header(unsigned char h[8], unsigned type, unsigned id, size_t len)
{
	h[0] = 1;
	h[1] = (unsigned char)type;
	h[2] = (unsigned char)(id >> 8);
	h[3] = (unsigned char)id;
	h[4] = (unsigned char)(len >> 8);
	h[5] = (unsigned char)len;
	h[6] = h[7] = 0;
}

/* Frame the answer's pieces for the current request and write them to fd:
 * one writev for any answer up to IOV_BATCH pieces of records. */
static int send_answer(struct loop *L, int fd)
{
	static const unsigned char end_body[8] = { 0 };   /* app status 0, REQUEST_COMPLETE */
	unsigned char hdr[IOV_BATCH][8], tail[16];
	struct iovec iov[IOV_BATCH];
	unsigned id = (unsigned)L->r.requestId;
	size_t left = 0, used = 0;   /* of the current piece */
	int p = 0, niov = 0, nhdr = 0;

	if (L->out.oom)
		return -1;
	for (int i = 0; i < L->npieces; i++)
		left += L->pieces[i].n;
	while (left > 0) {
		size_t rec = left > REC_MAX ? REC_MAX : left;
		if (niov + MAX_PIECES + 2 > IOV_BATCH) {
			if (writev_all(fd, iov, niov) < 0)
				return -1;
			niov = nhdr = 0;
		}
		record_header(hdr[nhdr], 6 /* FCGI_STDOUT */, id, rec);
		iov[niov++] = (struct iovec){ hdr[nhdr++], 8 };
		left -= rec;
		while (rec > 0) {
			const struct piece *pc = &L->pieces[p];
			const char *base = pc->ref ? pc->ref : L->out.data + pc->off;
			size_t take = pc->n - used < rec ? pc->n - used : rec;
			if (take > 0)
				iov[niov++] = (struct iovec){ (char *)base + used, take };
			used += take;
			rec -= take;
			if (used == pc->n) {
				p++;
				used = 0;
			}
		}
	}
	record_header(tail, 6, id, 0);
	record_header(tail + 8, 3 /* FCGI_END_REQUEST */, id, 8);
	iov[niov++] = (struct iovec){ tail, 16 };
	iov[niov++] = (struct iovec){ (void *)end_body, 8 };
	return writev_all(fd, iov, niov);
}

/* ---- the connections a worker holds ---- */

static int conn_index(const struct loop *L, int fd)
{
	for (int i = 0; i < L->nconns; i++)
		if (L->conns[i] == fd)
			return i;
	return -1;
}

static void conn_forget(struct loop *L, int fd)
{
	int i = conn_index(L, fd);

	if (i >= 0)
		L->conns[i] = L->conns[--L->nconns];
}

static void conn_close(struct loop *L, int fd)
{
	conn_forget(L, fd);
	close(fd);
}

/* Send n connections to the channel in one message; 0 once they are in
 * flight (our copies may then be closed). */
static int send_fds(int sock, const int *fds, int n)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * HANDOFF_BATCH)];
	} cm;
	char byte = 'c';
	struct iovec iov = { &byte, 1 };
	struct msghdr mh;
	struct cmsghdr *c;
	ssize_t w;

	memset(&cm, 0, sizeof cm);
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.b;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	do
		w = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	return w == 1 ? 0 : -1;
}

/* Pass held connections to the other workers: all but the one being
 * served, or (quiet_only) just those with no request waiting — a waiting
 * request stays with the worker that saw it, so none can bounce between
 * workers unserved. Those that cannot be sent (channel full) stay. */
static void hand_off(struct loop *L, bool quiet_only)
{
	struct pollfd pfd[FCGI_MAX_CONNS];
	int give[FCGI_MAX_CONNS], n = 0, ngive = 0;

	if (L->handoff[1] < 0)
		return;
	for (int i = 0; i < L->nconns; i++)
		if (L->conns[i] != L->current)
			pfd[n++] = (struct pollfd){ L->conns[i], POLLIN, 0 };
	if (quiet_only && poll(pfd, (nfds_t)n, 0) < 0)
		return;
	for (int i = 0; i < n; i++)
		if (!quiet_only || pfd[i].revents == 0)
			give[ngive++] = pfd[i].fd;
	for (int i = 0; i < ngive; i += HANDOFF_BATCH) {
		int m = ngive - i < HANDOFF_BATCH ? ngive - i : HANDOFF_BATCH;
		if (send_fds(L->handoff[1], give + i, m) < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("worker: cannot hand connections over: %s", strerror(errno));
			return;
		}
		for (int j = 0; j < m; j++)
			conn_close(L, give[i + j]);   /* the message holds them now */
		metrics_count_handoff((unsigned)m);
	}
}

/* Take connections another worker handed over (if no one was faster). */
static void adopt(struct loop *L)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * HANDOFF_BATCH)];
	} cm;
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr mh;
	struct cmsghdr *c;
	ssize_t got;

	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.b;
	mh.msg_controllen = sizeof cm.b;
	do
		got = recvmsg(L->handoff[0], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (got < 0 && errno == EINTR);
	if (got <= 0)
		return;
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		int fds[HANDOFF_BATCH];
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (k > HANDOFF_BATCH)
			k = HANDOFF_BATCH;
		memcpy(fds, CMSG_DATA(c), k * sizeof(int));
		for (size_t i = 0; i < k; i++) {
			if (L->nconns < FCGI_MAX_CONNS)
				L->conns[L->nconns++] = fds[i];
			else
				close(fds[i]);    /* cannot happen: we only listen with room */
		}
	}
}

/* Before the worker waits on PostgreSQL (called by pg.c): a request sent
 * meanwhile on one of its idle connections would wait for it, while
 * another worker may be free. */
static struct loop *waiting_loop;

static void before_pg_wait(void)
{
	struct loop *L = waiting_loop;

	if (L != NULL && !L->gave && L->nconns > 1) {
		L->gave = true;      /* once a request: nothing new arrives meanwhile */
		hand_off(L, true);
	}
}

/* ---- serving ---- */

/* Read what is left of the body so the connection is at a request
 * boundary (and closing it sends no reset). False when it is not. */
static bool drain_stdin(FCGX_Stream *in)
{
	char tmp[4096];
	size_t left = DRAIN_MAX;
	int n;

	while ((n = FCGX_GetStr(tmp, sizeof tmp, in)) > 0) {
		if ((size_t)n >= left)
			return false;
		left -= (size_t)n;
	}
	return FCGX_GetError(in) == 0;
}

/* Serve the next request on held connection fd; close it unless the web
 * server keeps it and it is at a request boundary. */
static void serve(struct loop *L, int fd)
{
	FCGX_Request *rq = &L->r;
	bool keep, clean;

	rq->ipcFd = fd;
	rq->keepConnection = 1;    /* libfcgi must not close it on its own */
	L->current = fd;
	L->gave = false;
	if (FCGX_Accept_r(rq) < 0) {
		/* The web server closed it, or it is not FastCGI: libfcgi closed it. */
		rq->ipcFd = -1;
		L->current = -1;
		conn_forget(L, fd);
		return;
	}
	keep = rq->keepConnection;    /* now the web server's FCGI_KEEP_CONN */
	buf_reset(&L->out);
	L->npieces = 0;
	worker_handle(L->app, &L->io);
	clean = drain_stdin(rq->in);
	if (send_answer(L, fd) < 0) {
		log_info("worker: the web server went away before the response was written");
		clean = false;
	}
	/* Free the request's streams without libfcgi writing anything. */
	FCGX_Free(rq, 0);
	rq->ipcFd = -1;
	L->current = -1;
	if (!keep || !clean)
		conn_close(L, fd);
}

/* Accept one waiting connection (the socket is shared and non-blocking:
 * another worker may take it first). -1 when there is none. */
static int accept_one(int listen_fd, bool tcp)
{
	int fd, one = 1;

	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED &&
		    errno != EPROTO) {
			log_error("worker: accept: %s", strerror(errno));
			poll(NULL, 0, 100);   /* EMFILE and the like: don't spin */
		}
		return -1;
	}
	metrics_count_connection();
	/* Don't let Nagle hold back the end of an answer. */
	if (tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* A stopping worker gives its idle connections to the others (waiting a
 * little for room in the channel) and closes what it could not give. */
static void leave(struct loop *L)
{
	long waited = 0;

	L->current = -1;
	while (L->nconns > 0 && L->handoff[1] >= 0 && waited < HANDOFF_WAIT_MS) {
		struct pollfd p = { L->handoff[1], POLLOUT, 0 };
		hand_off(L, false);
		if (L->nconns == 0)
			break;
		poll(&p, 1, 50);
		waited += 50;
	}
	if (L->nconns > 0)
		log_warn("worker: closing %d idle connection%s on the way out", L->nconns,
		    L->nconns == 1 ? "" : "s");
	while (L->nconns > 0)
		conn_close(L, L->conns[0]);
}

int fcgi_handoff_channel(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}

int fcgi_run(struct app *app, int listen_fd, const int handoff[2])
{
	static struct loop L;     /* static: before_pg_wait reaches it */
	long max = app->conf->pool_max_requests;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	sigset_t waitmask;
	bool tcp, recycle = false;
	int none = -1, fl, rc = 0;

	memset(&L, 0, sizeof L);
	L.app = app;
	L.io = (struct http_io){ &L, fcgi_param, fcgi_read, fcgi_write, fcgi_write_ref };
	L.out = (struct buf)BUF_INIT;
	L.current = -1;
	L.handoff[0] = handoff ? handoff[0] : -1;
	L.handoff[1] = handoff ? handoff[1] : -1;
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
	if (none < 0 || FCGX_Init() != 0 || FCGX_InitRequest(&L.r, none, 0) != 0) {
		log_error("worker: cannot initialise FastCGI");
		if (none >= 0)
			close(none);
		return -1;
	}
	waiting_loop = &L;
	pg_set_wait_hook(before_pg_wait);

	while (!stop_flag && !recycle) {
		struct pollfd pfd[2 + FCGI_MAX_CONNS];
		int ready[FCGI_MAX_CONNS], nready = 0, np = 0, li = -1, hi = -1, first;

		if (L.nconns < FCGI_MAX_CONNS) {
			li = np;
			pfd[np++] = (struct pollfd){ listen_fd, POLLIN, 0 };
		}
		if (L.handoff[0] >= 0 && L.nconns + HANDOFF_BATCH <= FCGI_MAX_CONNS) {
			hi = np;
			pfd[np++] = (struct pollfd){ L.handoff[0], POLLIN, 0 };
		}
		first = np;
		for (int i = 0; i < L.nconns; i++)
			pfd[np++] = (struct pollfd){ L.conns[i], POLLIN, 0 };
		if (ppoll(pfd, (nfds_t)np, NULL, &waitmask) < 0) {
			if (errno == EINTR)
				continue;
			log_error("worker: poll: %s", strerror(errno));
			rc = -1;
			break;
		}
		/* Requests on held connections first: the web server is waiting. */
		for (int i = first; i < np; i++)
			if (pfd[i].revents)
				ready[nready++] = pfd[i].fd;
		for (int i = 0; i < nready && !recycle; i++) {
			if (conn_index(&L, ready[i]) < 0)
				continue;     /* handed over meanwhile: another worker serves it */
			serve(&L, ready[i]);
			recycle = max > 0 && app->served >= (unsigned long long)max;
		}
		if (hi >= 0 && (pfd[hi].revents & POLLIN) && !recycle)
			adopt(&L);
		if (li >= 0 && (pfd[li].revents & POLLIN) && !recycle) {
			int fd = accept_one(listen_fd, tcp);
			if (fd >= 0) {
				L.conns[L.nconns++] = fd;
				serve(&L, fd);
				recycle = max > 0 && app->served >= (unsigned long long)max;
			}
		}
	}
	if (recycle)
		log_info("worker: served %llu requests (max_requests), recycling", app->served);
	pg_set_wait_hook(NULL);
	waiting_loop = NULL;
	leave(&L);
	FCGX_Free(&L.r, 0);
	close(none);
	buf_free(&L.out);
	return rc;
}
