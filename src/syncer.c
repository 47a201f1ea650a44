#include "syncer.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "cache.h"
#include "log.h"
#include "pg.h"

#define SYNC_BATCH 1000          /* notifications applied in one SQLite transaction */
#define SYNC_TICK_MS 500
#define SYNC_PING_MS 1000        /* liveness check of the listening connection */

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(int ms)
{
	if (!stop)
		poll(NULL, 0, ms);
}

/* Notifications taken from libpq but not yet applied. */
struct pending {
	char *payload[SYNC_BATCH];
	int n;
};

static void pending_clear(struct pending *q)
{
	for (int i = 0; i < q->n; i++)
		free(q->payload[i]);
	q->n = 0;
}

/* Apply what is pending; on failure keep it for the next try. */
static int flush(struct cache *c, struct pg *pg, struct pending *q)
{
	if (q->n == 0)
		return 0;
	if (cache_apply_notifications(c, pg, q->payload, q->n) < 0)
		return -1;
	pending_clear(q);
	return 0;
}

/* Take every notification libpq holds and apply them in batches. -1 when
 * some could not be applied yet (they stay pending, or queued in libpq). */
static int drain(struct cache *c, struct pg *pg, struct pending *q)
{
	PGnotify *n;

	for (;;) {
		while (q->n < SYNC_BATCH && pg_conn(pg) && (n = PQnotifies(pg_conn(pg))) != NULL) {
			q->payload[q->n] = strdup(n->extra);
			PQfreemem(n);
			if (q->payload[q->n])
				q->n++;
			else
				cache_mark_all_stale(c);   /* can't name the row: re-check all */
		}
		if (q->n == 0)
			return 0;
		/* Fetching rows while applying may bring more: loop. */
		if (flush(c, pg, q) < 0)
			return -1;
	}
}

static int ping(struct pg *pg)
{
	static const struct pg_stmt st = { "syncer_ping", "SELECT 1", 0, false };
	int err;
	PGresult *r = pg_query(pg, &st, NULL, &err);

	PQclear(r);
	return err;
}

int syncer_run(const struct conf *conf)
{
	struct sigaction sa;
	struct cache *c = NULL;
	struct pg *pg = NULL;
	unsigned listening_gen = 0, file_gen = 0;
	bool listening = false, behind = false;
	struct pending q = { .n = 0 };
	long long next_ping = 0;
	int rc = -1;

	/* Tell it apart from the workers in ps and top. */
	prctl(PR_SET_NAME, "bloqr-syncer", 0, 0, 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	c = cache_open(conf->cache_path, conf->cache_max_age, conf->cache_strategy == CONF_WRITE_THROUGH);
	pg = pg_new(conf->db_url, conf->db_statement_timeout_ms, "bloqr-syncer");
	if (c == NULL || pg == NULL) {
		log_error("syncer: out of memory");
		goto out;
	}
	cache_listener_state(c, false, false);
	log_info("syncer: started");
	while (!stop) {
		struct pollfd pfd;

		/* A new connection has lost the LISTEN, and whatever was announced
		 * while there was none: distrust everything, then listen again. */
		if (!pg_connected(pg) || pg_generation(pg) != listening_gen) {
			PGresult *r;
			int err;

			if (listening) {
				log_warn("syncer: lost the PostgreSQL connection; the cache is not trusted until it is back");
				cache_listener_state(c, false, true);
				listening = false;
			}
			if (pg_connect(pg) != PG_OK) {
				nap(250);
				continue;
			}
			r = pg_exec(pg, "LISTEN bloqr_cache", &err);
			PQclear(r);
			if (err != PG_OK || cache_mark_all_stale(c) < 0) {
				nap(250);
				continue;
			}
			pending_clear(&q);   /* all re-checked anyway */
			listening_gen = pg_generation(pg);
			file_gen = cache_file_generation(c);
			listening = true;
			cache_listener_state(c, true, false);
			next_ping = mono_ms() + SYNC_PING_MS;
			log_info("syncer: listening for cache invalidations");
		}
		pfd.fd = PQsocket(pg_conn(pg));
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, behind ? 50 : SYNC_TICK_MS) < 0 && errno != EINTR)
			break;
		if (stop)
			break;
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && PQconsumeInput(pg_conn(pg)) == 0) {
			pg_disconnect(pg);
			continue;
		}
		behind = drain(c, pg, &q) < 0;
		if (mono_ms() >= next_ping) {
			next_ping = mono_ms() + SYNC_PING_MS;
			if (ping(pg) != PG_OK || !pg_connected(pg)) {
				pg_disconnect(pg);
				continue;
			}
			behind = drain(c, pg, &q) < 0;
			/* The heartbeat vouches that everything heard is applied: while
			 * some is not, it stops, and in 3 s nobody trusts the cache. */
			if (behind)
				log_warn("syncer: %d invalidations not applied yet; retrying", q.n);
			else
				cache_heartbeat(c);
			/* A new cache file (the old one was deleted or broken) has
			 * missed whatever went to the old one: re-check all of it,
			 * then vouch for it. */
			if (cache_file_generation(c) != file_gen) {
				file_gen = cache_file_generation(c);
				if (cache_mark_all_stale(c) == 0) {
					cache_listener_state(c, true, false);
					log_info("syncer: the cache file was recreated; listening again");
				}
			}
		}
	}
	rc = 0;
	log_info("syncer: stopping");
	pending_clear(&q);
out:
	if (c)
		cache_listener_state(c, false, false);
	cache_close(c);
	pg_free(pg);
	return rc;
}
