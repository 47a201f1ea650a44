/* The pool master: binds the listening socket, forks the workers, restarts
 * those that die, replaces them one by one on SIGHUP and drains them on
 * SIGTERM/SIGINT. Like php-fpm, a forked child returns from pool_run() to
 * main(), which then runs the worker loop: nothing exits below main. */
#ifndef BLOQR_POOL_H
#define BLOQR_POOL_H

#include "config.h"

enum pool_role {
	POOL_MASTER_DONE = 0,   /* the master stopped cleanly */
	POOL_WORKER = 1,        /* this process is a new worker: serve listen_fd */
	POOL_SYNCER = 2,        /* this process is the host's cache syncer */
};

struct pool {
	struct conf conf;           /* current config; owned (reloaded on SIGHUP) */
	const char *listen;         /* --listen, wins over [pool] listen */
	long workers;               /* --workers, wins over [pool] workers; 0 = unset */
	int listen_fd;              /* for a worker: the socket to accept on */
	int handoff[2];             /* for a worker: the channel idle connections
	                             * pass through (see fcgi.h) */
};

/* Run the master. Returns an enum pool_role, or -1 when the pool could not
 * start (the reason is logged). p->conf must be loaded; the pool owns it. */
int pool_run(struct pool *p);

#include <stdbool.h>
#include <sys/types.h>

/* How a unix socket is made. */
struct pool_sock {
	mode_t mode;                /* [pool] socket_mode */
	gid_t group;                /* when set_group */
	bool set_group;
	uid_t owner;                /* a socket directory may also be this
	                             * user's when owner_ok ([pool] user) */
	bool owner_ok;
};

/* Open a listening socket for "HOST:PORT", "[V6]:PORT" or "unix:/path".
 * A unix socket is created with o's mode and group (o NULL: 0660, our
 * group) in a directory that others cannot write, else refused. -1 with a
 * message in err on failure. */
int pool_listen(const char *addr, const struct pool_sock *o, char *err, size_t errlen);

#endif
