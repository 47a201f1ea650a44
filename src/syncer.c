#include "syncer.h"

#include "clock.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "changelog.h"
#include "log.h"
#include "pg.h"

#define SYNC_BATCH 1000          /* notifications applied in one SQLite transaction */
#define SYNC_TICK_MS 500
#define SYNC_PING_MS 400         /* a self-notification this often... */
#define SYNC_PING_LOST_MS 1000   /* ...that must be back within this */
#define SYNC_HEARTBEAT_MS 900    /* heartbeats written at most this often */
#define SYNC_REMIND_MS 60000     /* repeat "not connected" this often */
#define SYNC_CHECKPOINT_MS 2000
#define SYNC_RETRY_MIN_MS 50     /* invalidations not applied: retry after this, */
#define SYNC_RETRY_MAX_MS 2000   /* doubling up to this while they keep failing */
#define SYNC_RECOVER_MS 1000     /* a predecessor's trust is kept this long at most (a second) */
#define SYNC_PRUNE_MS 60000      /* the change log is pruned this often (or keep/2)... */
#define SYNC_PRUNE_MORE_MS 200   /* ...and a chunk at a time while there is more */

static volatile sig_atomic_t stop, handover;

static void on_stop(int sig)
{
	handover = sig == SIGUSR1;
	stop = 1;
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

/* The listener proves itself with notifications it sends itself: on its
 * own channel (so other hosts do not hear them), from the statement
 * connection, never from the listening one. A notification only reaches
 * a listening session while that session is idle if it really is a
 * session: through a transaction-mode pooler the LISTEN stays behind on
 * some server connection that is not ours between transactions, and the
 * pings never come back. NOTIFYs are delivered in commit order, so a ping
 * that is back also says every invalidation committed before it is here. */
struct ping {
	char channel[40];        /* bloqr_ping_<random hex> */
	unsigned long seq;       /* the last sent */
	unsigned long out;       /* the one awaited, 0 = none */
	long long sent_ms;
	long long next_ms;
	bool back;               /* the awaited one arrived */
	/* PostgreSQL's snapshot as the awaited ping was sent, and that of the
	 * last one back: whatever committed inside it was announced before
	 * that ping, so once the ping is back and applied, so is all of it. */
	char snap_out[CHANGELOG_POSITION_MAX + 1];
	char snapshot[CHANGELOG_POSITION_MAX + 1];
};

static void ping_init(struct ping *p)
{
	unsigned char r[8];

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		unsigned long long t = (unsigned long long)clock_mono_ms() ^ ((unsigned long long)getpid() << 32);
		memcpy(r, &t, sizeof r);
	}
	memcpy(p->channel, "bloqr_ping_", 11);
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(p->channel + 11 + 2 * i, 3, "%02x", r[i]);
	p->seq = p->out = 0;
	p->sent_ms = p->next_ms = 0;
	p->back = false;
	p->snap_out[0] = p->snapshot[0] = '\0';
}

/* Send the next ping (on the statement connection). Returns a pg_err. */
static int ping_send(struct pg *pg, struct ping *p)
{
	static const struct pg_stmt st = { "syncer_ping", "SELECT pg_notify($1, $2), pg_current_snapshot()::text",
	    2, false };
	char seq[24];
	const char *params[] = { p->channel, seq };
	PGresult *r;
	int err;

	snprintf(seq, sizeof seq, "%lu", ++p->seq);
	r = pg_query(pg, &st, params, &err);
	p->snap_out[0] = '\0';
	if (r && PQntuples(r) == 1 && PQgetlength(r, 0, 1) <= CHANGELOG_POSITION_MAX)
		memcpy(p->snap_out, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1) + 1);
	PQclear(r);
	p->sent_ms = clock_mono_ms();
	p->next_ms = p->sent_ms + SYNC_PING_MS;
	p->out = err == PG_OK ? p->seq : 0;
	return err;
}

/* Apply what is pending; on failure keep it for the next try. */
static int flush(struct cache *c, struct pg *pg, struct pending *q)
{
	if (q->n == 0)
		return 0;
	cache_recheck(c);   /* never apply to a file deleted meanwhile */
	if (cache_apply_notifications(c, pg, q->payload, q->n) < 0)
		return -1;
	pending_clear(q);
	return 0;
}

/* Take every notification the listening connection holds (pings are
 * noted, invalidations queued) and apply them in batches with the
 * statement connection. -1 when some could not be applied yet (they stay
 * pending, or queued in libpq). */
static int drain(struct cache *c, struct pg *lpg, struct pg *pg, struct pending *q, struct ping *p)
{
	PGnotify *n;
	long heard = 0;

	for (;;) {
		while (q->n < SYNC_BATCH && pg_conn(lpg) && (n = PQnotifies(pg_conn(lpg))) != NULL) {
			if (strcmp(n->relname, p->channel) == 0) {
				if (p->out != 0 && strtoul(n->extra, NULL, 10) == p->out) {
					p->back = true;
					p->out = 0;
					memcpy(p->snapshot, p->snap_out, sizeof p->snapshot);
				}
				PQfreemem(n);
				continue;
			}
			q->payload[q->n] = strdup(n->extra);
			PQfreemem(n);
			heard++;
			if (q->payload[q->n])
				q->n++;
			else
				cache_mark_all_stale(c);   /* can't name the row: re-check all */
		}
		if (q->n == 0) {
			/* A burst (a bulk write) leaves freed memory behind in many
			 * small blocks: give it back rather than keep the peak. */
			if (heard >= SYNC_BATCH)
				malloc_trim(0);
			return 0;
		}
		/* Fetching rows while applying may bring more: loop. */
		if (flush(c, pg, q) < 0)
			return -1;
	}
}

/* The trust a predecessor left is kept no longer: past SYNC_RECOVER_MS,
 * before a long catch-up, or when the whole cache is to be re-checked. */
static void give_up_recovery(struct cache *c, long long *recover_by, const char *why)
{
	if (*recover_by == 0)
		return;
	log_warn("syncer: %s; the cache is not trusted until it has caught up", why);
	cache_listener_state(c, false, false);
	*recover_by = 0;
}

/* The database's identity into dbid ("" when there is none: no position
 * is recorded then), and what the change log holds outside pos (""
 * when the cache file records none: CHANGELOG_GAP). changelog_since's
 * return. */
static int read_log(struct pg *pg, const char *pos, char dbid[CHANGELOG_ID_MAX + 1], PGresult **r)
{
	int rc = changelog_identity(pg, dbid, CHANGELOG_ID_MAX + 1);

	if (rc != PG_OK)
		dbid[0] = '\0';
	if (rc < 0)
		return rc;
	return pos[0] == '\0' ? CHANGELOG_GAP : changelog_since(pg, pos, r);
}

/* Just after a new LISTEN: learn the database's identity (dbid), and
 * apply what PostgreSQL's change log holds outside the position this
 * cache file records. Whatever commits from now
 * on is announced to the new LISTEN; whatever committed before is inside
 * the position or in the log. 0: the cache is then as good as if the
 * syncer had listened all along; -1: it cannot tell, re-check all. */
static int replay(struct cache *c, struct pg *pg, char dbid[CHANGELOG_ID_MAX + 1], long long *recover_by)
{
	char pos[CHANGELOG_POSITION_MAX + 1];
	PGresult *r = NULL;
	char **v = NULL;
	int n, k = 0, rc = -1;
	long long t0 = clock_mono_ms();

	cache_recheck(c);
	if (cache_position(c, pos, sizeof pos) != 1)
		pos[0] = '\0';
	if (*recover_by != 0) {
		/* On a predecessor's word the reads may take only what is left
		 * of SYNC_RECOVER_MS; past that the word is given up and they
		 * are tried again in their own time. */
		long long left = *recover_by - clock_mono_ms();
		long prev = pg_set_timeout(pg, left > 1 ? (long)left : 1);
		n = read_log(pg, pos, dbid, &r);
		pg_set_timeout(pg, prev);
		if (n < 0)
			give_up_recovery(c, recover_by, "not caught up within a second of starting");
	} else {
		n = -1;
	}
	if (n < 0)
		n = read_log(pg, pos, dbid, &r);
	if (n != PG_OK)
		give_up_recovery(c, recover_by, "the change log cannot tell what was missed");
	if (n == CHANGELOG_GAP && pos[0] == '\0')
		log_info("syncer: the cache file records no position in the change log; re-checking the whole cache");
	else if (n == CHANGELOG_GAP)
		log_info("syncer: the change log does not cover the cache file's position (pruned, too many changes, "
		    "another timeline or another database); re-checking the whole cache");
	if (n != PG_OK)
		return -1;
	n = PQntuples(r);
	if ((v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1))) == NULL)
		goto out;
	for (int i = 0; i < n; i++)
		if (!PQgetisnull(r, i, 2))
			v[k++] = PQgetvalue(r, i, 2);
	/* More than a batch takes a while: not on a predecessor's word. */
	if (k > SYNC_BATCH)
		give_up_recovery(c, recover_by, "many changes to catch up on");
	for (int i = 0; i < k; i += SYNC_BATCH)
		if (cache_apply_notifications(c, pg, v + i, k - i < SYNC_BATCH ? k - i : SYNC_BATCH) < 0)
			goto out;
	rc = 0;
	log_info("syncer: applied %d changes made while no one listened, from the change log, in %lld ms",
	    k, clock_mono_ms() - t0);
out:
	free(v);
	PQclear(r);
	return rc;
}

/* The change log is kept at least keep_ms: rows are pruned below a
 * snapshot once it is that old (a chunk at a time), then the next
 * position is marked. Every host's syncer prunes; the shortest keep wins. */
struct prune {
	char mark[CHANGELOG_POSITION_MAX + 1];
	long long mark_ms;
	long long next_ms;
	long long keep_ms;
};

static void prune_step(struct prune *pr, struct pg *pg, const char *snapshot, long long now)
{
	long long every = pr->keep_ms / 2 < SYNC_PRUNE_MS ? pr->keep_ms / 2 : SYNC_PRUNE_MS;
	long n;

	if (snapshot[0] == '\0' || now < pr->next_ms)
		return;
	if (pr->mark[0] == '\0' || now - pr->mark_ms < pr->keep_ms) {
		if (pr->mark[0] == '\0') {
			memcpy(pr->mark, snapshot, strlen(snapshot) + 1);
			pr->mark_ms = now;
		}
		pr->next_ms = now + every;
		return;
	}
	n = changelog_prune(pg, pr->mark);
	if (n == CHANGELOG_PRUNE_CHUNK) {
		pr->next_ms = now + SYNC_PRUNE_MORE_MS;
		return;
	}
	if (n < 0)
		log_warn("syncer: could not prune the change log: %s", pg_last_error(pg));
	pr->mark[0] = '\0';
	pr->next_ms = now + every;
}

/* The heartbeat: everything heard up to the ping whose snapshot this is
 * is applied, which makes it the cache file's position in the change log
 * (none while the database's identity is unknown). */
static void vouch(struct cache *c, const char *dbid, const char *snapshot)
{
	char position[CHANGELOG_POSITION_MAX + 1];

	changelog_position(position, sizeof position, dbid, snapshot);
	cache_heartbeat(c, position);
}

/* LISTEN on the invalidation channel and the ping channel, in one round
 * trip. Returns a pg_err. */
static int listen_all(struct pg *lpg, const struct ping *p)
{
	char sql[128];
	PGresult *r;
	int err;

	/* The channel name is ours (letters, digits, underscore): quoting it
	 * is enough. */
	snprintf(sql, sizeof sql, "LISTEN bloqr_cache; LISTEN \"%s\"", p->channel);
	r = pg_exec(lpg, sql, &err);
	PQclear(r);
	return err;
}

int syncer_run(const struct conf *conf)
{
	struct sigaction sa;
	struct cache *c = NULL;
	struct pg *pg = NULL, *lpg = NULL;
	struct ping ping;
	struct prune prune = { .mark = "", .keep_ms = conf->cache_change_log_keep * 1000LL };
	char dbid[CHANGELOG_ID_MAX + 1] = "";
	unsigned listening_gen = 0, file_gen = 0, checked_gen = 0;
	bool listening = false, connected = false, behind = false, handed_over = false;
	struct pending q = { .n = 0 };
	long long last_heartbeat = 0, next_remind = 0, next_checkpoint = 0, recover_by = 0;
	int retry_ms = SYNC_RETRY_MIN_MS;
	int rc = -1;

	/* Tell it apart from the workers in ps and top. */
	prctl(PR_SET_NAME, "bloqr-syncer", 0, 0, 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);   /* stop, handing over to the next syncer (a reload) */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	ping_init(&ping);
	c = cache_open(conf->cache_path, conf->cache_max_age, conf->cache_strategy == CONF_WRITE_THROUGH);
	cache_set_max_rows(c, conf->cache_max_rows);
	/* Statements (row fetches, pings) go through url like the workers';
	 * only LISTEN needs a session of its own. */
	pg = pg_new(conf->db_url, conf->db_statement_timeout_ms, "bloqr-syncer");
	lpg = pg_new(conf_listen_url(conf), conf->db_statement_timeout_ms, "bloqr-listener");
	if (c == NULL || pg == NULL || lpg == NULL) {
		log_error("syncer: out of memory");
		goto out;
	}
	pg_set_listening(lpg, true);
	/* A predecessor that died (a crash, a kill) left the cache trusted:
	 * keep it so while this one catches up from the change log, which
	 * takes milliseconds, but not past SYNC_RECOVER_MS. */
	if (cache_coherent(c))
		recover_by = clock_mono_ms() + SYNC_RECOVER_MS;
	else
		cache_listener_state(c, false, false);
	log_info("syncer: started");
	while (!stop) {
		struct pollfd pfd;
		long long now;
		int wait;

		if (recover_by != 0 && clock_mono_ms() >= recover_by)
			give_up_recovery(c, &recover_by, "not caught up within a second of starting");

		/* A new connection has lost the LISTEN, and whatever was announced
		 * while there was none: listen again, catch up from the change
		 * log, and vouch once the first ping is back. */
		if (!pg_connected(lpg) || pg_generation(lpg) != listening_gen) {
			if (connected) {
				log_warn("syncer: lost the listening connection; the cache is not trusted until it is back");
				cache_listener_state(c, false, true);
				connected = false;
			}
			listening = false;
			if (pg_connect(lpg) != PG_OK || listen_all(lpg, &ping) != PG_OK) {
				nap(250);
				continue;
			}
			pending_clear(&q);
			listening_gen = pg_generation(lpg);
			/* What was announced while no one listened: from the change
			 * log, or else all re-checked when the first ping is back. */
			if (replay(c, pg, dbid, &recover_by) == 0) {
				checked_gen = listening_gen;
				file_gen = cache_file_generation(c);
			}
			listening = true;
			ping.out = 0;
			ping.next_ms = 0;
			next_remind = 0;
			log_info("syncer: listening for cache invalidations; waiting for a notification to come back");
		}
		now = clock_mono_ms();
		wait = behind ? retry_ms : SYNC_TICK_MS;
		if (ping.out == 0 && ping.next_ms - now < wait)
			wait = ping.next_ms > now ? (int)(ping.next_ms - now) : 0;
		if (ping.out != 0 && ping.sent_ms + SYNC_PING_LOST_MS - now < wait)
			wait = ping.sent_ms + SYNC_PING_LOST_MS > now ? (int)(ping.sent_ms + SYNC_PING_LOST_MS - now) : 0;
		if (recover_by != 0 && recover_by - now < wait)
			wait = recover_by > now ? (int)(recover_by - now) : 0;
		pfd.fd = PQsocket(pg_conn(lpg));
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, wait) < 0 && errno != EINTR)
			break;
		if (stop)
			break;
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) &&
		    (PQconsumeInput(pg_conn(lpg)) == 0 || !pg_connected(lpg))) {
			pg_disconnect(lpg);
			continue;
		}
		behind = drain(c, lpg, pg, &q, &ping) < 0;
		/* A cache that keeps failing (a full disk) is retried less and
		 * less often, not in a loop that costs CPU, PostgreSQL and log. */
		if (!behind)
			retry_ms = SYNC_RETRY_MIN_MS;
		else if (retry_ms < SYNC_RETRY_MAX_MS)
			retry_ms = retry_ms * 2 > SYNC_RETRY_MAX_MS ? SYNC_RETRY_MAX_MS : retry_ms * 2;
		now = clock_mono_ms();
		log_flush_dropped();

		if (ping.back && !behind) {
			ping.back = false;
			if (!connected) {
				/* Whatever was announced before this LISTEN and is not
				 * in the change log is unknown: re-check everything once
				 * per listening connection (unless replay() caught up),
				 * then vouch. A ping that was merely late on the same
				 * connection lost nothing: what came before it has
				 * arrived and is applied, in commit order. */
				if ((checked_gen == listening_gen && cache_file_generation(c) == file_gen) ||
				    cache_mark_all_stale(c) == 0) {
					checked_gen = listening_gen;
					file_gen = cache_file_generation(c);
					cache_listener_state(c, true, false);
					vouch(c, dbid, ping.snapshot);
					connected = true;
					recover_by = 0;
					last_heartbeat = now;
					log_info("syncer: notifications arrive; the cache is trusted");
				}
			} else if (cache_file_generation(c) != file_gen) {
				/* A new cache file (the old one was deleted or broken)
				 * has missed whatever went to the old one: re-check all
				 * of it, then vouch for it. */
				file_gen = cache_file_generation(c);
				if (cache_mark_all_stale(c) == 0) {
					cache_listener_state(c, true, false);
					last_heartbeat = now;
					log_info("syncer: the cache file was recreated; listening again");
				}
			} else if (now - last_heartbeat >= SYNC_HEARTBEAT_MS) {
				/* The heartbeat vouches that everything heard is applied. */
				vouch(c, dbid, ping.snapshot);
				last_heartbeat = now;
			}
			/* Snapshots readers asked for, right after a heartbeat: a
			 * large table takes a second or two, while notifications
			 * wait in the socket. */
			if (connected && now - last_heartbeat < SYNC_HEARTBEAT_MS / 2 && cache_refresh_snapshots(c, pg) > 0)
				now = clock_mono_ms();
			if (connected)
				prune_step(&prune, pg, ping.snapshot, now);
		} else if (behind && now >= next_remind) {
			log_warn("syncer: %d invalidations not applied yet; retrying", q.n);
			next_remind = now + 1000;
		}

		/* Bursts (a rebuild, many writes) grow the WAL, and SQLite's own
		 * checkpoints never shrink it: empty it here, off the request path. */
		if (now >= next_checkpoint) {
			/* Rows past [cache] max_rows first: their pages then go
			 * out with the same checkpoint. */
			if (!behind && cache_evict(c) > 0)
				now = clock_mono_ms();
			cache_checkpoint(c);
			next_checkpoint = now + SYNC_CHECKPOINT_MS;
		}

		if (ping.out != 0 && now - ping.sent_ms >= SYNC_PING_LOST_MS) {
			ping.out = 0;
			if (connected) {
				log_warn("syncer: a notification sent to itself did not come back within %d ms; "
				    "the cache is not trusted until one does", SYNC_PING_LOST_MS);
				cache_listener_state(c, false, false);
				connected = false;
				next_remind = now + SYNC_REMIND_MS;
			} else if (now >= next_remind) {
				log_warn("syncer: notifications do not come back to the listener; the cache is not "
				    "trusted (is [database] listen_url a direct connection, not a transaction pooler?)");
				next_remind = now + SYNC_REMIND_MS;
			}
		}
		if (listening && ping.out == 0 && now >= ping.next_ms && ping_send(pg, &ping) != PG_OK) {
			/* The statement side cannot reach PostgreSQL: an outage. */
			if (connected) {
				log_warn("syncer: cannot reach PostgreSQL; the cache is not trusted until it is back");
				cache_listener_state(c, false, true);
				connected = false;
			}
			ping.next_ms = clock_mono_ms() + 250;
		}
	}
	rc = 0;
	/* Handing over: vouch one last time (everything heard is applied) and
	 * leave the cache trusted for the next syncer, which keeps it so while
	 * it catches up from the position (a second at most). */
	if (handover && connected && !behind && q.n == 0) {
		vouch(c, dbid, ping.snapshot);
		handed_over = true;
		log_info("syncer: stopping; handing the cache over to the next syncer");
	} else {
		log_info("syncer: stopping");
	}
	pending_clear(&q);
out:
	if (c && !handed_over)
		cache_listener_state(c, false, false);
	cache_close(c);
	pg_free(lpg);
	pg_free(pg);
	return rc;
}
