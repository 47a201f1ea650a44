#include "pool.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fcgi.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"

#define POOL_MAX_WORKERS 256
#define STOP_GRACE_MS 10000        /* in-flight requests get this long */
#define RESPAWN_FAST_MS 1000       /* a worker dying sooner than this backs off */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000

struct slot {
	pid_t pid;                 /* 0: empty */
	long long started_ms;
	long long next_start_ms;   /* when empty: not before this */
	long backoff_ms;
	bool started_once;
};

struct master {
	struct pool *p;
	struct slot slots[POOL_MAX_WORKERS];
	int nslots;
	struct slot syncer;        /* the cache syncer, when the cache is on */
	int child_role;            /* in a new child: what it is to be */
	pid_t retiring;            /* an old worker finishing after a reload */
	long long retiring_deadline;
	int replace_next;          /* next slot to replace after SIGHUP; -1 none */
	bool stopping;
	bool ready_sent;           /* READY=1 told to systemd */
	char *unix_path;           /* to unlink at exit */
	uid_t uid;
	gid_t gid;
	bool drop_privs;
};

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	int e = errno;
	unsigned char b = (unsigned char)sig;

	(void)!write(sig_pipe[1], &b, 1);
	errno = e;
}

/* A unix socket's directory must be nobody else's to write in: whoever can
 * write there can replace the socket with one of their own between our
 * bind and the web server's connect. */
static int check_socket_dir(const char *path, const struct pool_sock *o, char *err, size_t errlen)
{
	char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
	struct stat st;
	char *slash;

	snprintf(dir, sizeof dir, "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "listen unix:%s: directory %s: %s", path, dir, strerror(errno));
		return -1;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(err, errlen, "listen unix:%s: directory %s is writable by others; "
		    "use a directory only the pool's user can write (e.g. /run/bloqr)", path, dir);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid() && !(o && o->owner_ok && st.st_uid == o->owner)) {
		snprintf(err, errlen, "listen unix:%s: directory %s belongs to another user (uid %ld)",
		    path, dir, (long)st.st_uid);
		return -1;
	}
	return 0;
}

int pool_listen(const char *addr, const struct pool_sock *o, char *err, size_t errlen)
{
	int fd = -1, one = 1;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sun;
		struct stat st;
		const char *path = addr + 5;
		mode_t mode = o ? o->mode : 0660, old_mask;
		gid_t egid = getegid();
		bool setgid_done = false;
		int rc, e;

		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (path[0] != '/' || strlen(path) >= sizeof sun.sun_path) {
			snprintf(err, errlen, "listen %s: need an absolute path under %zu bytes", addr, sizeof sun.sun_path);
			return -1;
		}
		strcpy(sun.sun_path, path);
		if (check_socket_dir(path, o, err, errlen) < 0)
			return -1;
		/* A socket left by a previous run is replaced; any other file is not. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
			goto fail;
		}
		/* The socket is born with its mode and group: the umask narrows
		 * bind's 0777, and as root the effective group names the group.
		 * No window in which it is wider, no chmod by path after. */
		if (o && o->set_group && o->group != egid) {
			if (setegid(o->group) == 0)
				setgid_done = true;
			else if (errno != EPERM) {
				snprintf(err, errlen, "listen %s: group %ld: %s", addr, (long)o->group, strerror(errno));
				goto fail;
			}
		}
		old_mask = umask(~mode & 0777);
		rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
		e = errno;
		umask(old_mask);
		if (setgid_done && setegid(egid) < 0) {
			snprintf(err, errlen, "listen %s: cannot restore the group: %s", addr, strerror(errno));
			goto fail;
		}
		if (rc < 0) {
			snprintf(err, errlen, "listen %s: %s", addr, strerror(e));
			goto fail;
		}
		/* Not root, but a member of the group: change it on the new node
		 * (safe by path: the directory was checked to be ours). */
		if (o && o->set_group && !setgid_done && o->group != egid && lchown(path, (uid_t)-1, o->group) < 0) {
			snprintf(err, errlen, "listen %s: cannot give the socket to group %ld: %s", addr,
			    (long)o->group, strerror(errno));
			unlink(path);
			goto fail;
		}
	} else {
		struct addrinfo hints, *ai = NULL;
		char host[256];
		const char *colon = strrchr(addr, ':');
		size_t hl;
		int rc;

		if (colon == NULL || colon == addr || colon[1] == '\0') {
			snprintf(err, errlen, "listen %s: expected HOST:PORT or unix:/path", addr);
			return -1;
		}
		hl = (size_t)(colon - addr);
		if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
			addr++;
			hl -= 2;
		}
		if (hl >= sizeof host) {
			snprintf(err, errlen, "listen: host too long");
			return -1;
		}
		memcpy(host, addr, hl);
		host[hl] = '\0';
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		rc = getaddrinfo(host, colon + 1, &hints, &ai);
		if (rc != 0) {
			snprintf(err, errlen, "listen %s: %s", host, gai_strerror(rc));
			return -1;
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			snprintf(err, errlen, "listen %s:%s: %s", host, colon + 1, strerror(errno));
			freeaddrinfo(ai);
			goto fail;
		}
		freeaddrinfo(ai);
	}
	if (listen(fd, 1024) < 0) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

static int install_master_signals(void)
{
	struct sigaction sa;
	const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD };

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -1;
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	return 0;
}

/* In a new child: forget the master's signal plumbing, drop privileges. */
static int child_setup(struct master *m)
{
	struct sigaction sa;
	const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGPIPE };

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	sig_pipe[0] = sig_pipe[1] = -1;
	if (m->drop_privs) {
		if (setgroups(0, NULL) < 0 || setgid(m->gid) < 0 || setuid(m->uid) < 0) {
			log_error("worker: cannot drop privileges: %s", strerror(errno));
			return -1;
		}
		/* As kcgi does: make sure root cannot be had back. */
		if (setuid(0) == 0 || seteuid(0) == 0) {
			log_error("worker: could regain root after dropping privileges; refusing to run");
			return -1;
		}
	}
	return 0;
}

static struct slot *slot_of(struct master *m, int i)
{
	return i < 0 ? &m->syncer : &m->slots[i];
}

/* Fork a worker into slot i (-1: the syncer). Returns 1 in the child, 0 in
 * the master, -1 on failure (the slot is scheduled again), -2 in a child
 * whose set-up failed. */
static int spawn(struct master *m, int i)
{
	struct slot *s = slot_of(m, i);
	sigset_t all, old;
	pid_t pid;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		int rc = child_setup(m);
		sigprocmask(SIG_SETMASK, &old, NULL);
		m->child_role = i < 0 ? POOL_SYNCER : POOL_WORKER;
		return rc < 0 ? -2 : 1;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		log_error("pool: fork failed: %s", strerror(errno));
		s->next_start_ms = clock_mono_ms() + BACKOFF_MAX_MS;
		return -1;
	}
	if (s->started_once && i >= 0)
		metrics_count_worker_restart();
	s->pid = pid;
	s->started_ms = clock_mono_ms();
	s->started_once = true;
	log_debug("pool: %s %d started as pid %ld", i < 0 ? "syncer" : "worker", i, (long)pid);
	return 0;
}

/* The slot index of pid: -1 for the syncer, -2 when none. */
static int find_slot(struct master *m, pid_t pid)
{
	if (m->syncer.pid == pid)
		return -1;
	for (int i = 0; i < m->nslots; i++)
		if (m->slots[i].pid == pid)
			return i;
	return -2;
}

static void reap(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int i = find_slot(m, pid);
		long long now = clock_mono_ms();
		char how[64];

		if (WIFSIGNALED(status))
			snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
		else
			snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
		if (pid == m->retiring) {
			log_info("pool: old worker %ld %s after reload", (long)pid, how);
			m->retiring = 0;
			continue;
		}
		if (i < -1)
			continue;
		{
			struct slot *s = slot_of(m, i);
			long long lived = now - s->started_ms;
			bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;

			s->pid = 0;
			if (m->stopping) {
				log_info("pool: worker %ld %s", (long)pid, how);
				continue;
			}
			if (clean) {
				/* Recycled after max_requests: replace at once. */
				log_info("pool: worker %ld %s after %lld ms; starting a new one", (long)pid, how, lived);
				s->backoff_ms = 0;
				s->next_start_ms = now;
			} else if (lived < RESPAWN_FAST_MS) {
				s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
				if (s->backoff_ms > BACKOFF_MAX_MS)
					s->backoff_ms = BACKOFF_MAX_MS;
				s->next_start_ms = now + s->backoff_ms;
				log_error("pool: worker %ld %s after %lld ms; restarting in %ld ms",
				    (long)pid, how, lived, s->backoff_ms);
			} else {
				s->backoff_ms = 0;
				s->next_start_ms = now;
				log_error("pool: worker %ld %s after %lld ms; restarting", (long)pid, how, lived);
			}
		}
	}
}

static long desired_workers(const struct pool *p)
{
	long n = p->workers > 0 ? p->workers : conf_workers(&p->conf);

	return n > POOL_MAX_WORKERS ? POOL_MAX_WORKERS : n;
}

/* Tell systemd (Type=notify) where the pool stands; a failure is logged
 * once and otherwise ignored: the pool serves either way. */
static void pool_notify(const char *state)
{
	static bool warned;

	if (notify_send(state) < 0 && !warned) {
		warned = true;
		log_warn("pool: cannot notify systemd ($NOTIFY_SOCKET): %s", strerror(errno));
	}
}

static void reload(struct master *m)
{
	struct conf fresh;
	char err[512];
	long want;
	bool same_cache;

	pool_notify("RELOADING=1");
	if (conf_load(&fresh, m->p->conf.path, err, sizeof err) < 0) {
		log_error("pool: reload failed, keeping the old configuration: %s", err);
		pool_notify("READY=1\nSTATUS=reload failed, the old configuration stays");
		return;
	}
	if (strcmp(fresh.pool_listen, m->p->conf.pool_listen) != 0 && m->p->listen == NULL)
		log_warn("pool: [pool] listen changed; the socket stays as it is until a restart");
	same_cache = strcmp(fresh.cache_path, m->p->conf.cache_path) == 0 &&
	    strcmp(fresh.db_url, m->p->conf.db_url) == 0 &&
	    strcmp(conf_listen_url(&fresh), conf_listen_url(&m->p->conf)) == 0;
	conf_free(&m->p->conf);
	m->p->conf = fresh;
	want = desired_workers(m->p);
	/* Grow now; shrink by retiring the slots past the new count. */
	for (long i = m->nslots; i < want; i++) {
		memset(&m->slots[i], 0, sizeof m->slots[i]);
		m->slots[i].next_start_ms = clock_mono_ms();
	}
	for (long i = want; i < m->nslots; i++)
		if (m->slots[i].pid > 0)
			kill(m->slots[i].pid, SIGTERM);
	m->nslots = (int)want;
	m->replace_next = 0;
	/* The syncer restarts with the new configuration. For the same cache
	 * file and database it hands over (SIGUSR1): the cache stays trusted
	 * while the next one catches up from the change log. */
	if (m->syncer.pid > 0)
		kill(m->syncer.pid, same_cache ? SIGUSR1 : SIGTERM);
	log_info("pool: configuration reloaded; replacing %d workers one by one", m->nslots);
}

/* After a reload, replace one worker at a time: start the new one, then let
 * the old one finish its request and leave. The listening socket stays open
 * throughout, so no connection is refused. */
static int step_replace(struct master *m)
{
	struct slot *s;
	pid_t old;
	int rc;

	if (m->replace_next < 0 || m->retiring)
		return 0;
	while (m->replace_next < m->nslots && m->slots[m->replace_next].pid == 0)
		m->replace_next++;   /* empty slots start with the new config anyway */
	if (m->replace_next >= m->nslots) {
		m->replace_next = -1;
		log_info("pool: all workers replaced");
		pool_notify("READY=1\nSTATUS=configuration reloaded");
		return 0;
	}
	s = &m->slots[m->replace_next];
	old = s->pid;
	rc = spawn(m, m->replace_next);
	if (rc != 0)
		return rc;
	m->retiring = old;
	m->retiring_deadline = clock_mono_ms() + STOP_GRACE_MS;
	kill(old, SIGTERM);
	m->replace_next++;
	return 0;
}

static void drain(struct master *m)
{
	long long deadline = clock_mono_ms() + STOP_GRACE_MS;
	bool any;

	log_info("pool: stopping; waiting up to %d s for requests in flight", STOP_GRACE_MS / 1000);
	for (int i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0)
			kill(m->slots[i].pid, SIGTERM);
	if (m->retiring)
		kill(m->retiring, SIGTERM);
	if (m->syncer.pid > 0)
		kill(m->syncer.pid, SIGTERM);
	for (;;) {
		reap(m);
		any = m->retiring != 0 || m->syncer.pid > 0;
		for (int i = 0; i < m->nslots; i++)
			any = any || m->slots[i].pid > 0;
		if (!any)
			break;
		if (clock_mono_ms() >= deadline) {
			log_warn("pool: workers still busy after %d s; killing them", STOP_GRACE_MS / 1000);
			for (int i = 0; i < m->nslots; i++)
				if (m->slots[i].pid > 0)
					kill(m->slots[i].pid, SIGKILL);
			if (m->retiring)
				kill(m->retiring, SIGKILL);
			if (m->syncer.pid > 0)
				kill(m->syncer.pid, SIGKILL);
			deadline = clock_mono_ms() + 1000 * 60;
		}
		poll(NULL, 0, 20);
	}
}

static int resolve_user(struct master *m)
{
	const char *user = m->p->conf.pool_user;
	struct passwd *pw;

	if (user == NULL || user[0] == '\0')
		return 0;
	if (geteuid() != 0) {
		log_warn("pool: [pool] user = %s ignored: not started as root", user);
		return 0;
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		log_error("pool: [pool] user = %s: no such user", user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_error("pool: [pool] user = %s is root; refusing", user);
		return -1;
	}
	m->uid = pw->pw_uid;
	m->gid = pw->pw_gid;
	m->drop_privs = true;
	return 0;
}

/* A unix socket's mode and group: [pool] socket_mode, socket_group (else
 * the group of [pool] user, else ours). */
static int socket_options(const struct master *m, struct pool_sock *o)
{
	const char *name = m->p->conf.pool_socket_group;

	memset(o, 0, sizeof *o);
	o->mode = (mode_t)m->p->conf.pool_socket_mode;
	if (m->drop_privs) {
		o->owner = m->uid;
		o->owner_ok = true;
		o->group = m->gid;
		o->set_group = true;
	}
	if (name && name[0] != '\0') {
		struct group *gr = getgrnam(name);
		if (gr == NULL) {
			log_error("pool: [pool] socket_group = %s: no such group", name);
			return -1;
		}
		o->group = gr->gr_gid;
		o->set_group = true;
	}
	return 0;
}

int pool_run(struct pool *p)
{
	static struct master m;    /* static: a child returns with it still valid */
	const char *addr = p->listen ? p->listen : p->conf.pool_listen;
	struct pool_sock sock;
	char err[512];
	int rc = -1;

	memset(&m, 0, sizeof m);
	m.p = p;
	m.replace_next = -1;
	p->handoff[0] = p->handoff[1] = -1;
	if (resolve_user(&m) < 0 || socket_options(&m, &sock) < 0)
		return -1;
	p->listen_fd = pool_listen(addr, &sock, err, sizeof err);
	if (p->listen_fd < 0) {
		log_error("pool: %s", err);
		return -1;
	}
	/* The master holds both ends for its whole life, so connections in
	 * flight between two workers survive a moment with no worker. */
	if (fcgi_handoff_channel(p->handoff) < 0) {
		log_error("pool: cannot make the hand-off channel: %s", strerror(errno));
		goto out;
	}
	if (strncmp(addr, "unix:", 5) == 0)
		m.unix_path = strdup(addr + 5);
	if (metrics_init() < 0 || install_master_signals() < 0) {
		log_error("pool: cannot start: %s", errno ? strerror(errno) : "see above");
		goto out;
	}
	m.nslots = (int)desired_workers(p);
	log_info("pool: listening on %s with %d workers", addr, m.nslots);

	while (!m.stopping) {
		long long now = clock_mono_ms(), wake = now + 1000;
		struct pollfd pfd = { sig_pipe[0], POLLIN, 0 };
		unsigned char sigs[64];
		ssize_t n;

		for (int i = 0; i < m.nslots; i++) {
			struct slot *s = &m.slots[i];
			if (s->pid == 0 && s->next_start_ms <= now) {
				int r = spawn(&m, i);
				if (r == 1)
					goto child;
				if (r == -2)
					goto child_fail;
			}
			if (s->pid == 0 && s->next_start_ms < wake)
				wake = s->next_start_ms;
		}
		if (p->conf.cache_path[0] != '\0' && m.syncer.pid == 0) {
			if (m.syncer.next_start_ms <= now) {
				int r = spawn(&m, -1);
				if (r == 1)
					goto child;
				if (r == -2)
					goto child_fail;
			} else if (m.syncer.next_start_ms < wake) {
				wake = m.syncer.next_start_ms;
			}
		}
		if (!m.ready_sent) {   /* bound, and the workers forked */
			m.ready_sent = true;
			pool_notify("READY=1\nSTATUS=serving");
		}
		{
			int r = step_replace(&m);
			if (r == 1)
				goto child;
			if (r == -2)
				goto child_fail;
		}
		if (m.retiring && now >= m.retiring_deadline) {
			log_warn("pool: old worker %ld did not finish in time; killing it", (long)m.retiring);
			kill(m.retiring, SIGKILL);
			m.retiring_deadline = now + 60000;
		}
		if (poll(&pfd, 1, (int)(wake > now ? wake - now : 0)) < 0 && errno != EINTR)
			break;
		while ((n = read(sig_pipe[0], sigs, sizeof sigs)) > 0) {
			for (ssize_t k = 0; k < n; k++) {
				switch (sigs[k]) {
				case SIGCHLD:
					reap(&m);
					break;
				case SIGHUP:
					reload(&m);
					break;
				default:
					m.stopping = true;
					break;
				}
			}
		}
		reap(&m);
	}
	pool_notify("STOPPING=1");
	drain(&m);
	rc = POOL_MASTER_DONE;
	log_info("pool: stopped");
out:
	close(p->listen_fd);
	p->listen_fd = -1;
	if (p->handoff[0] >= 0) {
		close(p->handoff[0]);
		close(p->handoff[1]);
	}
	if (m.unix_path)
		unlink(m.unix_path);
	free(m.unix_path);
	metrics_fini();
	return rc;
child:
	free(m.unix_path);
	m.unix_path = NULL;
	return m.child_role;
child_fail:
	/* A child whose setup failed: it must not serve, nor act as master. */
	free(m.unix_path);
	m.unix_path = NULL;
	return -1;
}
