/* floor -l ADDR [-w N] [-H 'Name: value']... BODYFILE
 *
 * The floor of bench/run: a FastCGI responder that does the least any
 * FastCGI application can do, so that nginx in front of it measures what
 * nginx's own FastCGI handling costs. Every request gets the same answer,
 * built once at startup: Status 200, Content-Type: application/json,
 * Content-Length, the -H headers, and BODYFILE's bytes. The parameters and
 * the request body are read and ignored.
 *
 * Like the pool it listens on ADDR (unix:/path or IPv4 HOST:PORT) and keeps
 * the connections nginx asks to keep (FCGI_KEEP_CONN). Unlike the pool each
 * process is one epoll loop: no routing, no cache, no copies; per request
 * one read() (or a few) and ONE write() carrying the STDOUT record(s), the
 * empty STDOUT and the END_REQUEST. -w N runs N such processes on the one
 * listening socket (default 1), as many as the pool has workers: on a
 * shared machine the scheduler gives CPU per process, and the floor must
 * not get a smaller share than the pool it is compared with.
 *
 * Not part of the service: built and started by bench/run. It runs until
 * killed (SIGTERM's default action: there is nothing to flush or remove);
 * the other processes die with the first.
 */
#define _GNU_SOURCE     /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* FastCGI 1.0: record types, role, flag and protocol statuses used here. */
enum {
	REC_BEGIN = 1, REC_ABORT = 2, REC_END = 3, REC_PARAMS = 4, REC_STDIN = 5,
	REC_STDOUT = 6, REC_GET_VALUES = 9, REC_GET_VALUES_RESULT = 10, REC_UNKNOWN_TYPE = 11
};
#define ROLE_RESPONDER 1
#define FLAG_KEEP_CONN 1
#define END_COMPLETE 0
#define END_UNKNOWN_ROLE 3
#define REC_MAX 65535u                  /* content bytes in one record */
#define IN_MAX (8 + 65535 + 255)        /* the largest record, whole */
#define MAX_HEADERS 32

struct conn {
	int fd;
	unsigned id;               /* the request's id; 0 = none begun */
	bool keep;                 /* FCGI_KEEP_CONN of that request */
	bool params_done, stdin_done;
	bool closing;              /* close once out is written */
	size_t inlen;
	unsigned char *out;        /* what a short write left over, in order */
	size_t outlen, outcap;
	unsigned char in[IN_MAX];  /* received, not yet parsed */
};

/* The answer, framed once: records with request id 0, whose id bytes are
 * set before each write (one process, one request written at a time, so
 * one buffer serves all connections). */
static unsigned char *answer;
static size_t answer_len;
static size_t *answer_hdrs;    /* offsets of its record headers */
static size_t answer_nhdrs;
static int ep;                 /* the epoll instance */

static void record_header(unsigned char *h, unsigned type, unsigned id, size_t len, unsigned pad)
{
	h[0] = 1;
	h[1] = (unsigned char)type;
	h[2] = (unsigned char)(id >> 8);
	h[3] = (unsigned char)id;
	h[4] = (unsigned char)(len >> 8);
	h[5] = (unsigned char)len;
	h[6] = (unsigned char)pad;
	h[7] = 0;
}

/* Frame head + body as STDOUT records (65535 bytes of content at most
 * each), then the empty STDOUT and END_REQUEST (app status 0, complete). */
static int build_answer(const char *head, size_t hlen, const char *body, size_t blen)
{
	size_t total = hlen + blen, nrec = (total + REC_MAX - 1) / REC_MAX, off = 0, done = 0;

	answer_len = total + 8 * nrec + 8 + 16;
	answer = malloc(answer_len);
	answer_hdrs = malloc((nrec + 2) * sizeof *answer_hdrs);
	if (answer == NULL || answer_hdrs == NULL)
		return -1;
	while (done < total) {
		size_t rec = total - done > REC_MAX ? REC_MAX : total - done;
		answer_hdrs[answer_nhdrs++] = off;
		record_header(answer + off, REC_STDOUT, 0, rec, 0);
		off += 8;
		for (size_t i = 0; i < rec; i++, done++)
			answer[off++] = (unsigned char)(done < hlen ? head[done] : body[done - hlen]);
	}
	answer_hdrs[answer_nhdrs++] = off;
	record_header(answer + off, REC_STDOUT, 0, 0, 0);
	off += 8;
	answer_hdrs[answer_nhdrs++] = off;
	record_header(answer + off, REC_END, 0, 8, 0);
	memset(answer + off + 8, 0, 8);
	return 0;
}

static void conn_close(struct conn *c)
{
	close(c->fd);          /* also takes it out of the epoll set */
	free(c->out);
	free(c);
}

static int want(struct conn *c, unsigned events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int out_append(struct conn *c, const unsigned char *p, size_t n)
{
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outlen + n > 2 * c->outcap ? c->outlen + n : 2 * c->outcap;
		unsigned char *o = realloc(c->out, cap);
		if (o == NULL)
			return -1;
		c->out = o;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
	return 0;
}

/* Send n bytes with one write(). What the socket does not take now (nginx
 * reads slower than we write, rarely) is kept and written when epoll says
 * the socket is writable; until then nothing more is read from it, and
 * later sends queue behind it so the order holds. */
static int send_bytes(struct conn *c, const unsigned char *p, size_t n)
{
	ssize_t w = 0;

	if (c->outlen == 0) {
		w = write(c->fd, p, n);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (w < 0)
			w = 0;
		if ((size_t)w == n)
			return 0;
		if (want(c, EPOLLOUT) < 0)
			return -1;
	}
	return out_append(c, p + w, n - (size_t)w);
}

/* A small record: END_REQUEST, GET_VALUES_RESULT, UNKNOWN_TYPE. */
static int send_record(struct conn *c, unsigned type, unsigned id, const void *content, size_t len)
{
	unsigned char r[8 + 64 + 8] = { 0 };
	unsigned pad = (8 - len % 8) % 8;

	record_header(r, type, id, len, pad);
	memcpy(r + 8, content, len);
	return send_bytes(c, r, 8 + len + pad);
}

static int send_end(struct conn *c, unsigned id, unsigned status)
{
	const unsigned char b[8] = { 0, 0, 0, 0, (unsigned char)status, 0, 0, 0 };

	return send_record(c, REC_END, id, b, sizeof b);
}

static int send_answer(struct conn *c, unsigned id)
{
	for (size_t i = 0; i < answer_nhdrs; i++) {
		answer[answer_hdrs[i] + 2] = (unsigned char)(id >> 8);
		answer[answer_hdrs[i] + 3] = (unsigned char)id;
	}
	return send_bytes(c, answer, answer_len);
}

static void request_forget(struct conn *c)
{
	c->id = 0;
	c->keep = c->params_done = c->stdin_done = false;
}

/* Handle the whole records in c->in. Returns -1 when the connection is to
 * be closed now (broken, not FastCGI, or done and not kept). A request is
 * answered when its PARAMS and STDIN have ended. */
static int parse(struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	while (rc == 0 && !c->closing && c->inlen - off >= 8) {
		const unsigned char *h = c->in + off, *b = h + 8;
		unsigned type = h[1], id = (unsigned)h[2] << 8 | h[3];
		size_t clen = (size_t)h[4] << 8 | h[5];

		if (h[0] != 1)
			return -1;
		if (c->inlen - off < 8 + clen + h[6])
			break;       /* the rest of this record is still on its way */
		off += 8 + clen + h[6];
		switch (type) {
		case REC_BEGIN:
			if (clen < 8 || id == 0 || c->id != 0)
				return -1;   /* malformed, or a second request at once */
			if (((unsigned)b[0] << 8 | b[1]) != ROLE_RESPONDER) {
				rc = send_end(c, id, END_UNKNOWN_ROLE);
				c->closing = !(b[2] & FLAG_KEEP_CONN);
				break;
			}
			c->id = id;
			c->keep = b[2] & FLAG_KEEP_CONN;
			break;
		case REC_ABORT:
			if (id == 0 || id != c->id)
				break;
			rc = send_end(c, id, END_COMPLETE);
			c->closing = !c->keep;
			request_forget(c);
			break;
		case REC_PARAMS:     /* the content does not matter here */
			if (id != 0 && id == c->id && clen == 0)
				c->params_done = true;
			break;
		case REC_STDIN:
			if (id != 0 && id == c->id && clen == 0)
				c->stdin_done = true;
			break;
		case REC_GET_VALUES: {
			/* All three, whatever was asked: nginx asks none, and
			 * the point is only to say one request per connection,
			 * no multiplexing. */
			static const unsigned char vals[] =
			    "\x0e\x04" "FCGI_MAX_CONNS" "1024" "\x0d\x01" "FCGI_MAX_REQS" "1"
			    "\x0f\x01" "FCGI_MPXS_CONNS" "0";
			if (id == 0)
				rc = send_record(c, REC_GET_VALUES_RESULT, 0, vals, sizeof vals - 1);
			break;
		}
		default:
			if (id == 0) {
				const unsigned char u[8] = { (unsigned char)type };
				rc = send_record(c, REC_UNKNOWN_TYPE, 0, u, sizeof u);
			}
			break;       /* DATA and the like: not for a responder */
		}
		if (rc == 0 && c->id != 0 && c->params_done && c->stdin_done) {
			rc = send_answer(c, c->id);
			c->closing = !c->keep;
			request_forget(c);
		}
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (rc < 0 || (c->closing && c->outlen == 0))
		return -1;
	return 0;
}

/* One read: level-triggered epoll calls again while more is there. */
static void on_readable(struct conn *c)
{
	ssize_t n = read(c->fd, c->in + c->inlen, IN_MAX - c->inlen);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);       /* nginx closed it, or it broke */
		return;
	}
	c->inlen += (size_t)n;
	if (parse(c) < 0)
		conn_close(c);
}

static void on_writable(struct conn *c)
{
	ssize_t w = write(c->fd, c->out, c->outlen);

	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (w < 0) {
		conn_close(c);
		return;
	}
	memmove(c->out, c->out + w, c->outlen - (size_t)w);
	c->outlen -= (size_t)w;
	if (c->outlen > 0)
		return;
	/* All out: go on with what was received meanwhile, then read again. */
	if (c->closing || parse(c) < 0) {
		conn_close(c);
		return;
	}
	if (c->outlen == 0 && want(c, EPOLLIN) < 0)
		conn_close(c);
}

static void on_listener(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
				perror("floor: accept");    /* nginx retries; so do we */
			return;              /* EAGAIN: all taken */
		}
		c = calloc(1, sizeof *c);
		ev.data.ptr = c;
		if (c == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->fd = fd;
	}
}

/* ADDR is unix:/path or HOST:PORT (IPv4), as the pool's --listen. */
static int listen_on(const char *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;
		const char *path = addr + 5;
		if (strlen(path) >= sizeof su->sun_path) {
			fprintf(stderr, "floor: socket path too long: %s\n", path);
			return -1;
		}
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, path);
		sl = sizeof *su;
		unlink(path);        /* a socket left by an earlier run */
	} else {
		struct sockaddr_in *si = (struct sockaddr_in *)&ss;
		const char *colon = strrchr(addr, ':');
		char host[64];
		if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
			fprintf(stderr, "floor: bad address %s (unix:/path or HOST:PORT)\n", addr);
			return -1;
		}
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		si->sin_family = AF_INET;
		si->sin_port = htons((unsigned short)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &si->sin_addr) != 1) {
			fprintf(stderr, "floor: bad IPv4 address %s\n", host);
			return -1;
		}
		sl = sizeof *si;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("floor: socket");
		return -1;
	}
	if (ss.ss_family == AF_INET)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0) {
		fprintf(stderr, "floor: cannot listen on %s: %s\n", addr, strerror(errno));
		close(fd);
		return -1;
	}
	/* nginx's workers run as www-data when the bench runs as root; the
	 * socket lives in the bench's private directory. */
	if (ss.ss_family == AF_UNIX)
		chmod(addr + 5, 0666);
	return fd;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0
	    || (p = malloc((size_t)n + 1)) == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
		if (f)
			fclose(f);
		free(p);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *hdrs[MAX_HEADERS];
	char head[8192], *body;
	size_t blen, hlen;
	int nh = 0, opt, lfd, n, workers = 1;
	pid_t parent = getpid();
	/* EPOLLEXCLUSIVE: a new connection wakes one process, not all. */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL }, evs[64];

	while ((opt = getopt(argc, argv, "l:w:H:")) != -1) {
		if (opt == 'l')
			addr = optarg;
		else if (opt == 'w' && (workers = atoi(optarg)) >= 1 && workers <= 64)
			continue;
		else if (opt == 'H' && nh < MAX_HEADERS)
			hdrs[nh++] = optarg;
		else
			goto usage;
	}
	if (addr == NULL || optind != argc - 1)
		goto usage;
	if ((body = slurp(argv[optind], &blen)) == NULL) {
		fprintf(stderr, "floor: cannot read %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	n = snprintf(head, sizeof head, "Status: 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n", blen);
	hlen = (size_t)n;
	for (int i = 0; i < nh; i++) {
		n = snprintf(head + hlen, sizeof head - hlen, "%s\r\n", hdrs[i]);
		if (n < 0 || (size_t)n >= sizeof head - hlen)
			goto usage;
		hlen += (size_t)n;
	}
	if (hlen + 2 >= sizeof head)
		goto usage;
	memcpy(head + hlen, "\r\n", 2);
	hlen += 2;
	if (build_answer(head, hlen, body, blen) < 0) {
		fprintf(stderr, "floor: out of memory\n");
		return 1;
	}
	free(body);

	/* A write to a connection nginx closed fails with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	if ((lfd = listen_on(addr)) < 0)
		return 1;
	for (int i = 1; i < workers; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("floor: fork");
			return 1;
		}
		if (pid == 0) {
			/* bench/run stops the first process only: die with it. */
			if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
				return 1;
			break;
		}
	}
	/* Each process its own epoll set: its own connections. */
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("floor: epoll");
		return 1;
	}
	for (;;) {
		n = epoll_wait(ep, evs, (int)(sizeof evs / sizeof evs[0]), -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("floor: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL)
				on_listener(lfd);
			else if (c->outlen > 0)
				on_writable(c);     /* errors and hang-ups show there too */
			else
				on_readable(c);
		}
	}

usage:
	fprintf(stderr, "usage: floor -l unix:/path|HOST:PORT [-w 1..64] [-H 'Name: value']... BODYFILE\n"
	    "  (at most %d headers, 8 KiB of head)\n", MAX_HEADERS);
	return 2;
}
