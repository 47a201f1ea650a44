#include "fcgi.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

#define HANDOFF_BATCH 16           /* connections per hand-off message */
#define HANDOFF_WAIT_MS 2000       /* a stopping worker waits this long for room */
#define PARAMS_MAX (1u << 20)      /* bytes of FastCGI parameters in one request */
#define READ_TURN (256u << 10)     /* bytes read from one connection per turn */
#define STOP_FINISH_MS 8000        /* a stopping worker finishes half-received requests */

/* ---- stop signals ----
 * SIGTERM/SIGINT/SIGQUIT stay blocked while a request is served and are
 * let in only while the worker waits (epoll_pwait's atomic mask change), so one
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

/* ---- FastCGI records (FastCGI 1.0) ---- */
enum {
	REC_BEGIN = 1, REC_ABORT = 2, REC_END = 3, REC_PARAMS = 4, REC_STDIN = 5, REC_STDOUT = 6,
	REC_DATA = 8, REC_GET_VALUES = 9, REC_GET_VALUES_RESULT = 10, REC_UNKNOWN_TYPE = 11,
};
#define ROLE_RESPONDER 1
#define FLAG_KEEP_CONN 1
#define END_COMPLETE 0
#define END_UNKNOWN_ROLE 3

/* A held connection and the request arriving on it. Records are read
 * without waiting, from the poll loop, and a request is served only once
 * it is whole (BEGIN_REQUEST, PARAMS, STDIN up to its empty record): a
 * client that sends slowly holds no worker, and one that does not finish
 * within [http] request_timeout gets 408. */
struct conn {
	int fd;
	long long deadline;        /* monotonic ms to be whole by; 0 = idle */
	struct buf in;             /* received, not yet parsed */
	unsigned id;               /* the request's id; 0 = no BEGIN_REQUEST yet */
	bool keep;                 /* FCGI_KEEP_CONN */
	bool params_done, stdin_done;
	struct buf params;         /* the PARAMS stream */
	struct buf body;           /* STDIN: at most max_body + 1 bytes kept */
};

/* ---- one request ----
 * The answer is gathered here as pieces (the head copied, the body by
 * reference where the handler left it) and framed as FastCGI records
 * (STDOUT…, an empty STDOUT, END_REQUEST) sent with one writev. */
#define MAX_PIECES 8
#define REC_MAX 65535u            /* content bytes in one record */
#define IOV_BATCH 64              /* iovecs per writev */

#define PARAMS_INDEXED 128

struct piece {
	const char *ref;           /* bytes owned by the handler, or NULL: */
	size_t off;                /* ...bytes at off in loop.out */
	size_t n;
};

struct loop {
	struct app *app;
	struct http_io io;
	struct buf out;            /* copied pieces of the answer */
	struct piece pieces[MAX_PIECES];
	int npieces;
	struct conn conns[FCGI_MAX_CONNS];   /* every connection this worker holds */
	int nconns;
	struct conn *cur;          /* the one being served, or NULL */
	struct buf pv;             /* its parameters: name NUL value NUL … */
	size_t body_off;           /* its body bytes read so far */
	bool gave;                 /* idle ones were handed off for this request */
	int handoff[2];            /* receive, send; -1 when alone */
	size_t body_keep;          /* max_body + 1: past it, 413 */
	long long timeout_ms;      /* [http] request_timeout */
	int ep;                    /* epoll: every connection, and the sockets below while wanted */
	/* The parameters indexed once a request: a lookup compares lengths
	 * before bytes (a request asks for a dozen among some thirty). */
	struct { const char *name, *value; size_t len; } px[PARAMS_INDEXED];
	int npx;                   /* -1: more than PARAMS_INDEXED: scan pv */
	bool listening, adopting;  /* the listening socket, the hand-off channel: in ep */
};

/* Add fd to (on) or take it out of (off) the loop's epoll set. */
static int watch(struct loop *L, int fd, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(L->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

/* Index the decoded parameters in L->pv. */
static void params_index(struct loop *L)
{
	const char *p = L->pv.data, *end = p ? p + L->pv.len : NULL;

	L->npx = 0;
	while (p && p < end) {
		size_t n = strlen(p);
		const char *v = p + n + 1;

		if (L->npx == PARAMS_INDEXED) {
			L->npx = -1;
			return;
		}
		L->px[L->npx].name = p;
		L->px[L->npx].len = n;
		L->px[L->npx++].value = v;
		p = v + strlen(v) + 1;
	}
}

static const char *fcgi_param(void *ctx, const char *name)
{
	struct loop *L = ctx;
	const char *p = L->pv.data, *end = p ? p + L->pv.len : NULL;

	if (L->npx >= 0) {
		size_t n = strlen(name);
		for (int i = 0; i < L->npx; i++)
			if (L->px[i].len == n && memcmp(L->px[i].name, name, n) == 0)
				return L->px[i].value;
		return NULL;
	}
	while (p && p < end) {
		const char *v = p + strlen(p) + 1;

		if (strcmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

static long fcgi_read(void *ctx, char *buf, size_t n)
{
	struct loop *L = ctx;
	const struct conn *c = L->cur;
	size_t left = c ? c->body.len - L->body_off : 0;

	if (n > left)
		n = left;
	if (n > 0) {
		memcpy(buf, c->body.data + L->body_off, n);
		L->body_off += n;
	}
	return (long)n;
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
static int send_answer(struct loop *L, int fd, unsigned id)
{
	static const unsigned char end_body[8] = { 0 };   /* app status 0, REQUEST_COMPLETE */
	unsigned char hdr[IOV_BATCH][8], tail[16];
	struct iovec iov[IOV_BATCH];
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

/* One small record (END_REQUEST, GET_VALUES_RESULT, UNKNOWN_TYPE). */
static int send_record(int fd, unsigned type, unsigned id, const void *content, size_t len)
{
	static const unsigned char pad[8];
	unsigned char hdr[8];
	struct iovec iov[3] = { { hdr, 8 }, { (void *)content, len }, { (void *)pad, (8 - len % 8) % 8 } };

	record_header(hdr, type, id, len);
	hdr[6] = (unsigned char)iov[2].iov_len;
	return writev_all(fd, iov, 3);
}

static int send_end(int fd, unsigned id, unsigned protocol_status)
{
	unsigned char b[8] = { 0, 0, 0, 0, (unsigned char)protocol_status, 0, 0, 0 };

	return send_record(fd, REC_END, id, b, sizeof b);
}

int fcgi_params_decode(const char *data, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)data, *end = p ? p + n : NULL;

	while (p && p < end) {
		size_t len[2];

		for (int k = 0; k < 2; k++) {
			if (p >= end)
				return -1;
			if (*p & 0x80) {
				if (end - p < 4)
					return -1;
				len[k] = ((size_t)(p[0] & 0x7f) << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
				p += 4;
			} else {
				len[k] = *p++;
			}
		}
		if ((size_t)(end - p) < len[0] || (size_t)(end - p) - len[0] < len[1])
			return -1;
		/* A NUL inside would make the lookup see another name. */
		if (memchr(p, '\0', len[0] + len[1]) != NULL)
			return -1;
		if (buf_append(out, p, len[0]) < 0 || buf_append(out, "", 1) < 0 ||
		    buf_append(out, p + len[0], len[1]) < 0 || buf_append(out, "", 1) < 0)
			return -1;
		p += len[0] + len[1];
	}
	return 0;
}

/* ---- the connections a worker holds ---- */

static int conn_index(const struct loop *L, int fd)
{
	for (int i = 0; i < L->nconns; i++)
		if (L->conns[i].fd == fd)
			return i;
	return -1;
}

static int conn_add(struct loop *L, int fd)
{
	if (L->nconns >= FCGI_MAX_CONNS || watch(L, fd, true) < 0)
		return -1;
	L->conns[L->nconns++] = (struct conn){ .fd = fd, .in = BUF_INIT, .params = BUF_INIT, .body = BUF_INIT };
	return 0;
}

static void request_forget(struct conn *c)
{
	c->id = 0;
	c->keep = c->params_done = c->stdin_done = false;
	buf_free(&c->params);
	buf_free(&c->body);
	c->deadline = 0;
}

/* Whether a request has begun to arrive on c: its state lives in this
 * worker only, so c cannot be handed over. */
static bool conn_busy(const struct conn *c)
{
	return c->id != 0 || c->in.len > 0;
}

/* Forget connection i (closing it unless it was handed over). */
static void conn_remove(struct loop *L, int i, bool close_it)
{
	struct conn *c = &L->conns[i], *last = &L->conns[L->nconns - 1];

	/* Explicitly: a connection handed to another worker stays open there,
	 * and epoll would go on reporting it here after our close. */
	watch(L, c->fd, false);
	if (close_it)
		close(c->fd);
	request_forget(c);
	buf_free(&c->in);
	if (c != last) {
		*c = *last;
		if (L->cur == last)
			L->cur = c;
	}
	L->nconns--;
}

static void conn_close(struct loop *L, int fd)
{
	int i = conn_index(L, fd);

	if (i >= 0)
		conn_remove(L, i, true);
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
 * served and those with a request half received, or (quiet_only) just
 * those with nothing waiting — a waiting request stays with the worker
 * that saw it, so none can bounce between workers unserved. Those that
 * cannot be sent (channel full) stay. */
static void hand_off(struct loop *L, bool quiet_only)
{
	struct pollfd pfd[FCGI_MAX_CONNS];
	int give[FCGI_MAX_CONNS], n = 0, ngive = 0;

	if (L->handoff[1] < 0)
		return;
	for (int i = 0; i < L->nconns; i++)
		if (&L->conns[i] != L->cur && !conn_busy(&L->conns[i]))
			pfd[n++] = (struct pollfd){ L->conns[i].fd, POLLIN, 0 };
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
		for (size_t i = 0; i < k; i++)
			if (conn_add(L, fds[i]) < 0)
				close(fds[i]);    /* cannot happen: we only listen with room */
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

/* ---- receiving ---- */

/* Read what c has, without waiting (at most READ_TURN bytes a turn, so
 * one fast sender cannot starve the others). -1 when it closed or failed. */
static int conn_read(struct conn *c)
{
	char tmp[65536];
	size_t got = 0;

	while (got < READ_TURN) {
		ssize_t n = recv(c->fd, tmp, sizeof tmp, MSG_DONTWAIT);

		if (n > 0) {
			if (buf_append(&c->in, tmp, (size_t)n) < 0)
				return -1;
			got += (size_t)n;
			/* Short: the socket is empty now (nginx sends a request
			 * and waits for its answer). More later wakes poll again:
			 * no recv that can only say EAGAIN. */
			if ((size_t)n < sizeof tmp)
				break;
		} else if (n == 0) {
			return -1;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			return -1;
		}
	}
	return 0;
}

enum feed { FEED_MORE, FEED_READY, FEED_CLOSE };

/* Parse the whole records in c->in into its request; stops at the end of
 * a request (what follows belongs to the next one). */
static enum feed parse(struct loop *L, struct conn *c)
{
	enum feed rc = FEED_MORE;
	size_t off = 0;

	while (rc == FEED_MORE && c->in.len - off >= 8) {
		const unsigned char *h = (const unsigned char *)c->in.data + off, *b = h + 8;
		unsigned type = h[1], id = (unsigned)h[2] << 8 | h[3];
		size_t clen = (size_t)h[4] << 8 | h[5];

		if (h[0] != 1) {
			rc = FEED_CLOSE;     /* not FastCGI */
			break;
		}
		if (c->in.len - off < 8 + clen + h[6])
			break;
		off += 8 + clen + h[6];
		switch (type) {
		case REC_BEGIN:
			if (clen < 8 || id == 0 || c->id != 0) {
				rc = FEED_CLOSE;     /* malformed, or a second request at once */
				break;
			}
			if (((unsigned)b[0] << 8 | b[1]) != ROLE_RESPONDER) {
				if (send_end(c->fd, id, END_UNKNOWN_ROLE) < 0 || !(b[2] & FLAG_KEEP_CONN))
					rc = FEED_CLOSE;
				break;
			}
			c->id = id;
			c->keep = b[2] & FLAG_KEEP_CONN;
			break;
		case REC_ABORT:
			if (id != c->id || id == 0)
				break;
			if (send_end(c->fd, id, END_COMPLETE) < 0 || !c->keep)
				rc = FEED_CLOSE;
			request_forget(c);
			break;
		case REC_PARAMS:
			if (id != c->id || id == 0 || c->params_done)
				break;
			if (clen == 0)
				c->params_done = true;
			else if (c->params.len + clen > PARAMS_MAX || buf_append(&c->params, b, clen) < 0) {
				log_warn("worker: FastCGI parameters over %u bytes; connection closed", PARAMS_MAX);
				rc = FEED_CLOSE;
			}
			break;
		case REC_STDIN:
			if (id != c->id || id == 0 || c->stdin_done)
				break;
			if (clen == 0) {
				c->stdin_done = true;
			} else if (c->body.len < L->body_keep) {
				/* Past max_body + 1 bytes the rest is dropped: the
				 * request gets 413 anyway. */
				size_t take = L->body_keep - c->body.len < clen ? L->body_keep - c->body.len : clen;
				if (buf_append(&c->body, b, take) < 0)
					rc = FEED_CLOSE;
			}
			break;
		case REC_GET_VALUES: {
			static const unsigned char vals[] =
			    "\x0e\x03" "FCGI_MAX_CONNS" "256" "\x0d\x01" "FCGI_MAX_REQS" "1"
			    "\x0f\x01" "FCGI_MPXS_CONNS" "0";
			if (id == 0 && send_record(c->fd, REC_GET_VALUES_RESULT, 0, vals, sizeof vals - 1) < 0)
				rc = FEED_CLOSE;
			break;
		}
		default:
			if (id == 0) {
				unsigned char u[8] = { (unsigned char)type, 0, 0, 0, 0, 0, 0, 0 };
				if (send_record(c->fd, REC_UNKNOWN_TYPE, 0, u, sizeof u) < 0)
					rc = FEED_CLOSE;
			}
			break;   /* DATA and others of a request: not for a responder */
		}
		if (rc == FEED_MORE && c->id != 0 && c->params_done && c->stdin_done)
			rc = FEED_READY;
	}
	if (off > 0) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
		c->in.data[c->in.len] = '\0';
	}
	return rc;
}

/* ---- serving ---- */

/* Serve c's whole request and send the answer. Returns c (it may have
 * moved in the array) when it is kept for the next request, NULL when it
 * was closed. */
static struct conn *serve(struct loop *L, struct conn *c)
{
	bool keep, clean = true;
	unsigned id = c->id;

	L->cur = c;
	L->gave = false;
	L->body_off = 0;
	buf_reset(&L->pv);
	buf_reset(&L->out);
	L->npieces = 0;
	if (fcgi_params_decode(c->params.data, c->params.len, &L->pv) < 0) {
		log_warn("worker: malformed FastCGI parameters; connection closed");
		clean = false;
	} else {
		params_index(L);
		worker_handle(L->app, &L->io);
		c = L->cur;   /* a hand-off meanwhile may have moved it */
		if (send_answer(L, c->fd, id) < 0) {
			log_info("worker: the web server went away before the response was written");
			clean = false;
		}
	}
	c = L->cur;
	L->cur = NULL;
	keep = c->keep;
	request_forget(c);
	if (!keep || !clean) {
		conn_remove(L, (int)(c - L->conns), true);
		return NULL;
	}
	return c;
}

/* Answer 408 on c, whose request did not arrive whole in time, and close it. */
static void refuse_late(struct loop *L, int i)
{
	struct conn *c = &L->conns[i];

	if (c->id != 0) {
		L->cur = c;
		L->body_off = 0;
		buf_reset(&L->pv);
		buf_reset(&L->out);
		L->npieces = 0;
		/* The parameters when they are all there (X-Request-Id), else none. */
		if (c->params_done && fcgi_params_decode(c->params.data, c->params.len, &L->pv) < 0)
			buf_reset(&L->pv);
		params_index(L);
		c->body.len = 0;
		worker_refuse(L->app, &L->io, 408, "The request did not arrive in time");
		if (send_answer(L, c->fd, c->id) < 0)
			log_info("worker: the web server went away before the 408 was written");
		L->cur = NULL;
	}
	log_info("worker: a request was not received within %lld s; connection closed", L->timeout_ms / 1000);
	conn_remove(L, i, true);
}

/* 408 every connection past its deadline; the next deadline, or 0. */
static long long expire(struct loop *L, long long now)
{
	long long next = 0;

	/* Backwards: a removal moves the last one into the hole. */
	for (int i = L->nconns - 1; i >= 0; i--) {
		long long d = L->conns[i].deadline;

		if (d == 0)
			continue;
		if (d <= now)
			refuse_late(L, i);
		else if (next == 0 || d < next)
			next = d;
	}
	return next;
}

/* Take in what arrived on connection fd; serve each request as it
 * becomes whole. */
static void progress(struct loop *L, int fd, unsigned long long max)
{
	int i = conn_index(L, fd);
	struct conn *c;

	if (i < 0)
		return;     /* handed over meanwhile: another worker serves it */
	c = &L->conns[i];
	if (conn_read(c) < 0) {
		if (conn_busy(c))
			log_info("worker: the web server closed a connection in the middle of a request");
		conn_remove(L, i, true);
		return;
	}
	for (;;) {
		enum feed f;

		if (c->deadline == 0 && c->in.len > 0)
			c->deadline = clock_mono_ms() + L->timeout_ms;
		f = parse(L, c);
		if (f == FEED_CLOSE) {
			conn_remove(L, (int)(c - L->conns), true);
			return;
		}
		if (f == FEED_MORE) {
			/* Management records only (GET_VALUES): idle again. */
			if (!conn_busy(c))
				c->deadline = 0;
			return;
		}
		if ((c = serve(L, c)) == NULL)
			return;
		if (max > 0 && L->app->served >= max && !conn_busy(c))
			return;
	}
}

/* Accept one waiting connection (the socket is shared and non-blocking:
 * another worker may take it first). -1 when there is none. */
static int accept_one(int listen_fd, bool tcp, struct timeval send_timeout)
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
	/* Reads never wait (MSG_DONTWAIT); an answer the web server does not
	 * take in time fails instead of holding the worker. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
	return fd;
}

/* A stopping worker gives its idle connections to the others (waiting a
 * little for room in the channel) and closes what it could not give. */
static void leave(struct loop *L)
{
	long waited = 0;

	L->cur = NULL;
	while (L->nconns > 0 && L->handoff[1] >= 0 && waited < HANDOFF_WAIT_MS) {
		struct pollfd p = { L->handoff[1], POLLOUT, 0 };
		hand_off(L, false);
		if (L->nconns == 0)
			break;
		poll(&p, 1, 50);
		waited += 50;
	}
	if (L->nconns > 0)
		log_warn("worker: closing %d connection%s on the way out", L->nconns,
		    L->nconns == 1 ? "" : "s");
	while (L->nconns > 0)
		conn_remove(L, L->nconns - 1, true);
}

int fcgi_handoff_channel(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}

int fcgi_run(struct app *app, int listen_fd, const int handoff[2])
{
	static struct loop L;     /* static: before_pg_wait reaches it */
	unsigned long long max = (unsigned long long)(app->conf->pool_max_requests > 0 ? app->conf->pool_max_requests : 0);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct timeval send_timeout;
	sigset_t waitmask;
	bool tcp, stopping = false;
	long long stop_at = 0;
	int fl, efd, rc = 0;

	memset(&L, 0, sizeof L);
	L.app = app;
	L.io = (struct http_io){ &L, fcgi_param, fcgi_read, fcgi_write, fcgi_write_ref };
	L.out = (struct buf)BUF_INIT;
	L.pv = (struct buf)BUF_INIT;
	L.handoff[0] = handoff ? handoff[0] : -1;
	L.handoff[1] = handoff ? handoff[1] : -1;
	L.body_keep = (size_t)app->conf->http_max_body + 1;
	L.timeout_ms = app->conf->http_request_timeout * 1000LL;
	send_timeout = (struct timeval){ .tv_sec = app->conf->http_request_timeout };
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
	waiting_loop = &L;
	pg_set_wait_hook(before_pg_wait);
	efd = worker_event_fd(app);

	L.ep = epoll_create1(EPOLL_CLOEXEC);
	if (L.ep < 0 || (efd >= 0 && watch(&L, efd, true) < 0)) {
		log_error("worker: epoll: %s", strerror(errno));
		if (L.ep >= 0)
			close(L.ep);
		pg_set_wait_hook(NULL);
		waiting_loop = NULL;
		return -1;
	}
	for (;;) {
		struct epoll_event ev[3 + FCGI_MAX_CONNS];
		int ready[FCGI_MAX_CONNS], nready = 0, nev, busy = 0, wait_ms = -1;
		bool listen_ready = false, handoff_ready = false, event_ready = false;
		long long now = clock_mono_ms(), next;
		bool want_listen, want_adopt;

		if (!stopping && (stop_flag || (max > 0 && app->served >= max))) {
			/* Finish what has begun to arrive; pass the rest on now. */
			stopping = true;
			stop_at = now + (L.timeout_ms < STOP_FINISH_MS ? L.timeout_ms : STOP_FINISH_MS);
			if (!stop_flag)
				log_info("worker: served %llu requests (max_requests), recycling", app->served);
			hand_off(&L, false);
		}
		next = expire(&L, now);
		for (int i = 0; i < L.nconns; i++)
			busy += conn_busy(&L.conns[i]);
		if (stopping && (busy == 0 || now >= stop_at))
			break;
		/* New connections only with room for them (level-triggered: a
		 * socket left in the set while unwanted would wake us forever). */
		want_listen = !stopping && L.nconns < FCGI_MAX_CONNS;
		want_adopt = !stopping && L.handoff[0] >= 0 && L.nconns + HANDOFF_BATCH <= FCGI_MAX_CONNS;
		if (want_listen != L.listening && watch(&L, listen_fd, want_listen) == 0)
			L.listening = want_listen;
		if (want_adopt != L.adopting && watch(&L, L.handoff[0], want_adopt) == 0)
			L.adopting = want_adopt;
		if (stopping && (next == 0 || stop_at < next))
			next = stop_at;
		if (next > 0)
			wait_ms = next > now ? (int)(next - now) : 0;
		nev = epoll_pwait(L.ep, ev, (int)(sizeof ev / sizeof ev[0]), wait_ms, &waitmask);
		if (nev < 0) {
			if (errno == EINTR)
				continue;
			log_error("worker: epoll_wait: %s", strerror(errno));
			rc = -1;
			break;
		}
		for (int i = 0; i < nev; i++) {
			int fd = ev[i].data.fd;
			if (fd == listen_fd && L.listening)
				listen_ready = true;
			else if (fd == L.handoff[0] && L.adopting)
				handoff_ready = true;
			else if (fd == efd)
				event_ready = true;
			else if (nready < FCGI_MAX_CONNS)
				ready[nready++] = fd;
		}
		/* The cache file's watch before any request it may concern. */
		if (event_ready) {
			struct epoll_event e = { .events = EPOLLIN };
			worker_event(app);
			/* A watch that went was closed (and left the set); a new
			 * one may have its number. */
			efd = worker_event_fd(app);
			e.data.fd = efd;
			if (efd >= 0 && epoll_ctl(L.ep, EPOLL_CTL_MOD, efd, &e) < 0 && errno == ENOENT)
				watch(&L, efd, true);
		}
		/* Held connections first: the web server is waiting on them. */
		for (int i = 0; i < nready; i++)
			progress(&L, ready[i], stopping ? 0 : max);
		if (stopping)
			continue;
		if (handoff_ready)
			adopt(&L);
		if (listen_ready && L.nconns < FCGI_MAX_CONNS) {
			int fd = accept_one(listen_fd, tcp, send_timeout);
			if (fd >= 0) {
				if (conn_add(&L, fd) < 0)
					close(fd);
				else
					progress(&L, fd, max);   /* its request may be there already */
			}
		}
	}
	pg_set_wait_hook(NULL);
	waiting_loop = NULL;
	leave(&L);
	close(L.ep);
	buf_free(&L.out);
	buf_free(&L.pv);
	return rc;
}
