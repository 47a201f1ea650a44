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

/* Take every pending notification and apply them in batches. */
static int drain(struct cache *c, struct pg *pg)
{
	char *payloads[SYNC_BATCH];
	PGnotify *n;
	int k = 0, total = 0;

	for (;;) {
		n = PQnotifies(pg_conn(pg));
		if (n) {
			payloads[k] = strdup(n->extra);
			PQfreemem(n);
			if (payloads[k])
				k++;
		}
		if (k == SYNC_BATCH || (n == NULL && k > 0)) {
			cache_apply_notifications(c, pg, payloads, k);
			for (int i = 0; i < k; i++)
				free(payloads[i]);
			total += k;
			k = 0;
			/* Fetching rows may have brought more. */
			if (pg_conn(pg))
				PQconsumeInput(pg_conn(pg));
			continue;
		}
		if (n == NULL || pg_conn(pg) == NULL)
			break;
	}
	return total;
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
	unsigned listening_gen = 0;
	bool listening = false;
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
			listening_gen = pg_generation(pg);
			listening = true;
			cache_listener_state(c, true, false);
			next_ping = mono_ms() + SYNC_PING_MS;
			log_info("syncer: listening for cache invalidations");
		}
		pfd.fd = PQsocket(pg_conn(pg));
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, SYNC_TICK_MS) < 0 && errno != EINTR)
			break;
		if (stop)
			break;
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && PQconsumeInput(pg_conn(pg)) == 0) {
			pg_disconnect(pg);
			continue;
		}
		drain(c, pg);
		if (mono_ms() >= next_ping) {
			next_ping = mono_ms() + SYNC_PING_MS;
			if (ping(pg) != PG_OK || !pg_connected(pg)) {
				pg_disconnect(pg);
				continue;
			}
			drain(c, pg);
			cache_heartbeat(c);
		}
	}
	rc = 0;
	log_info("syncer: stopping");
out:
	if (c)
		cache_listener_state(c, false, false);
	cache_close(c);
	pg_free(pg);
	return rc;
}
