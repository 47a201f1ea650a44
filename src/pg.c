#include "pg.h"

#include "clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000
#define PG_CANCEL_GRACE_MS 2000   /* after a cancel, wait this long for the answer */
#define PG_MAX_PREPARED 128

struct pg {
	char *url;
	char *app_name;
	long timeout_ms;          /* client-side statement deadline; 0 = none */
	PGconn *conn;
	/* Named statements only on a connection proven to be its own server
	 * session (see is_session); prepared ones by identity. */
	bool named;
	bool listening;           /* keeps notifications for the caller */
	const struct pg_stmt *prepared[PG_MAX_PREPARED];
	int nprepared;
	long long next_try_ms;   /* no connect attempt before this (monotonic) */
	long backoff_ms;
	bool ever_connected;
	unsigned generation;
	char last_error[256];
	char sqlstate[6];
};

enum run_kind {
	RUN_PARAMS,               /* unnamed statement: Parse, Bind, Execute, Sync */
	RUN_SIMPLE,               /* simple protocol (trusted text, may hold several statements) */
	RUN_PREPARE,              /* Parse under st->name */
	RUN_PREPARED,             /* Bind, Execute of st->name */
};

/* One statement on the wire and what came back of it. */
struct run {
	enum run_kind kind;
	const struct pg_stmt *st; /* for RUN_PREPARE(D); NULL for SQL text */
	const char *sql;
	int nparams;
	const char *const *params;
	int (*fn)(void *ctx, const PGresult *r, int i);   /* single-row mode when set */
	void *ctx;
	PGresult *result;         /* without fn: the answer (the last, or the first error) */
	long seen;                /* rows handed to fn */
	bool sent;                /* libpq accepted it for sending */
	bool answered;            /* a row or a command completion arrived: it ran */
	bool fatal_first;         /* the first thing back was the server ending the session */
	bool timed_out;           /* cancelled at the deadline */
};

static void set_error(struct pg *pg, const char *msg, const char *state)
{
	snprintf(pg->last_error, sizeof pg->last_error, "%s", msg ? msg : "unknown error");
	/* libpq messages end with a newline. */
	pg->last_error[strcspn(pg->last_error, "\n")] = '\0';
	snprintf(pg->sqlstate, sizeof pg->sqlstate, "%s", state ? state : "");
}

struct pg *pg_new(const char *url, long statement_timeout_ms, const char *app_name)
{
	struct pg *pg = calloc(1, sizeof *pg);

	if (pg == NULL)
		return NULL;
	pg->url = strdup(url);
	pg->app_name = strdup(app_name ? app_name : "bloqr");
	if (pg->url == NULL || pg->app_name == NULL) {
		pg_free(pg);
		return NULL;
	}
	pg->timeout_ms = statement_timeout_ms;
	pg->backoff_ms = PG_BACKOFF_MIN_MS;
	return pg;
}

void pg_disconnect(struct pg *pg)
{
	if (pg->conn)
		PQfinish(pg->conn);
	pg->conn = NULL;
	pg->named = false;
	pg->nprepared = 0;
}

void pg_free(struct pg *pg)
{
	if (pg == NULL)
		return;
	pg_disconnect(pg);
	free(pg->url);
	free(pg->app_name);
	free(pg);
}

void pg_set_listening(struct pg *pg, bool on)
{
	pg->listening = on;
}

/* Notifications nobody asked for: behind a transaction pooler a server
 * connection may carry another client's LISTEN, and libpq would keep what
 * it hears until the process ends. */
static void drop_notifications(struct pg *pg)
{
	PGnotify *n;

	if (pg->listening || pg->conn == NULL)
		return;
	while ((n = PQnotifies(pg->conn)) != NULL)
		PQfreemem(n);
}

long pg_set_timeout(struct pg *pg, long ms)
{
	long old = pg->timeout_ms;

	pg->timeout_ms = ms;
	return old;
}

bool pg_connected(const struct pg *pg)
{
	return pg->conn && PQstatus(pg->conn) == CONNECTION_OK;
}

unsigned pg_generation(const struct pg *pg) { return pg->generation; }

PGconn *pg_conn(struct pg *pg)
{
	return pg_connected(pg) ? pg->conn : NULL;
}

const char *pg_last_error(const struct pg *pg) { return pg->last_error; }
const char *pg_last_sqlstate(const struct pg *pg) { return pg->sqlstate; }

int pg_classify(const char *st)
{
	if (st == NULL || st[0] == '\0')
		return PG_EUNAVAIL;  /* no SQLSTATE: the connection failed */
	if (strncmp(st, "08", 2) == 0 ||      /* connection exception */
	    strncmp(st, "53", 2) == 0 ||      /* insufficient resources */
	    strncmp(st, "57P", 3) == 0 ||     /* shutdown, crash, cannot connect now, idle timeout */
	    strcmp(st, "57014") == 0 ||       /* statement timeout / cancel */
	    strcmp(st, "40001") == 0 ||       /* serialization failure */
	    strcmp(st, "40P01") == 0 ||       /* deadlock */
	    strcmp(st, "55P03") == 0)         /* lock not available */
		return PG_EUNAVAIL;
	if (strcmp(st, "23505") == 0)
		return PG_ECONFLICT;
	if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)
		return PG_EINPUT;
	return PG_EBUG;
}

/* The server ending the session on its own: administrator command
 * (pg_terminate_backend, fast shutdown), crash of another backend,
 * idle_session_timeout. It is sent instead of running, or while running,
 * what came in; either way nothing of it commits (see pg_query). */
static bool session_ended(const char *st)
{
	return st && (strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P05") == 0);
}

static void (*wait_hook)(void);

void pg_set_wait_hook(void (*fn)(void))
{
	wait_hook = fn;
}

/* Whether an idle connection is still open. Nothing is owed to an idle
 * client, so a readable socket means the server (or a pooler) closed it,
 * usually after a FATAL message (57P01, 57P05), or sent something
 * unsolicited (a notice, a parameter change, a notification) that libpq
 * takes in here. One poll() when nothing is pending. */
static bool idle_alive(PGconn *conn)
{
	for (int i = 0; i < 4; i++) {
		struct pollfd p = { .fd = PQsocket(conn), .events = POLLIN };
		int n = poll(&p, 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return PQstatus(conn) == CONNECTION_OK;
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
			return false;
	}
	return PQstatus(conn) == CONNECTION_OK;
}

static int run_once(struct pg *pg, struct run *ru);

/* Whether the connection is provably a server session of its own, so
 * that a named prepared statement stays for its next transactions: the
 * backend that answers is the one PostgreSQL named in BackendKeyData at
 * the start. A pooler sends its own key (PgBouncer: random), so behind
 * any pooler, or when in doubt, statements are unnamed. */
static bool is_session(struct pg *pg)
{
	struct run ru = { .kind = RUN_SIMPLE, .sql = "SELECT pg_backend_pid()" };
	bool yes = run_once(pg, &ru) == PG_OK && PQntuples(ru.result) == 1 &&
	    atoi(PQgetvalue(ru.result, 0, 0)) == PQbackendPID(pg->conn) && PQbackendPID(pg->conn) != 0;

	PQclear(ru.result);
	log_debug("postgresql (%s): %s", pg->app_name,
	    yes ? "a direct session: named statements" : "not provably a session (a pooler?): unnamed statements");
	return yes;
}

int pg_connect(struct pg *pg)
{
	/* Client-side settings only (TCP keepalives find a vanished server
	 * within a minute); values in the URL override these defaults
	 * (expand_dbname). Nothing here is session state a pooler could leak:
	 * statement deadlines are kept by this side (see run_wait). */
	const char *keys[] = { "connect_timeout", "application_name", "client_encoding",
		"keepalives_idle", "keepalives_interval", "keepalives_count", "dbname", NULL };
	const char *vals[] = { "3", pg->app_name, "UTF8", "30", "10", "3", pg->url, NULL };
	long long now;

	if (wait_hook != NULL)
		wait_hook();
	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK &&
	    PQtransactionStatus(pg->conn) == PQTRANS_IDLE && !idle_alive(pg->conn)) {
		set_error(pg, PQerrorMessage(pg->conn), "");
		log_info("postgresql (%s): the connection was closed while idle (%s); reconnecting",
		    pg->app_name, pg->last_error);
	}
	if (pg_connected(pg))
		return PG_OK;
	if (pg->conn) {
		pg_disconnect(pg);
		metrics_count_pg_reconnect();
	}
	now = clock_mono_ms();
	if (now < pg->next_try_ms) {
		set_error(pg, "waiting before reconnecting", "");
		return PG_EUNAVAIL;
	}
	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
		set_error(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory", "");
		pg_disconnect(pg);
		pg->next_try_ms = now + pg->backoff_ms;
		pg->backoff_ms = pg->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : pg->backoff_ms * 2;
		log_warn("postgresql (%s): cannot connect: %s", pg->app_name, pg->last_error);
		metrics_count_pg_error();
		return PG_EUNAVAIL;
	}
	pg->named = is_session(pg);
	if (!pg_connected(pg)) {
		/* it broke (or hung) at once: as a failed connect */
		pg_disconnect(pg);
		pg->next_try_ms = now + pg->backoff_ms;
		metrics_count_pg_error();
		return PG_EUNAVAIL;
	}
	if (pg->ever_connected)
		log_info("postgresql (%s): reconnected", pg->app_name);
	pg->ever_connected = true;
	pg->generation++;
	pg->backoff_ms = PG_BACKOFF_MIN_MS;
	pg->next_try_ms = 0;
	return PG_OK;
}

/* Record a failed result (r may be NULL: the connection's error) and
 * return its class; r is not freed. */
static int fail_class(struct pg *pg, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	int err;

	set_error(pg, r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(pg->conn), state);
	err = PQstatus(pg->conn) != CONNECTION_OK ? PG_EUNAVAIL : pg_classify(state);
	if (err == PG_EBUG || err == PG_EUNAVAIL)
		log_error("postgresql (%s): %s%s%s", pg->app_name, pg->last_error, state ? " sqlstate=" : "",
		    state ? state : "");
	metrics_count_pg_error();
	return err;
}

static void cancel(struct pg *pg)
{
	PGcancel *c = PQgetCancel(pg->conn);
	char msg[256];

	if (c == NULL || !PQcancel(c, msg, sizeof msg))
		log_warn("postgresql (%s): cannot cancel a statement", pg->app_name);
	PQfreeCancel(c);
}

/* Wait until libpq can hand over the next result without blocking. Past
 * the deadline the statement is cancelled (the server answers 57014);
 * if even that answer does not come, the connection is dropped. 0, or -1
 * with the connection gone (pg->conn NULL). */
static int run_wait(struct pg *pg, long long *deadline, bool *cancelled)
{
	while (PQisBusy(pg->conn)) {
		struct pollfd p = { .fd = PQsocket(pg->conn), .events = POLLIN };
		int wait = -1, n;

		if (*deadline > 0) {
			long long left = *deadline - clock_mono_ms();
			wait = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
		}
		n = poll(&p, 1, wait);
		if (n < 0 && errno != EINTR)
			return 0;   /* PQgetResult will say what is wrong */
		if (n > 0) {
			if (!PQconsumeInput(pg->conn))
				return 0;
			continue;
		}
		if (n == 0 && *deadline > 0 && clock_mono_ms() >= *deadline) {
			if (!*cancelled) {
				cancel(pg);
				*cancelled = true;
				*deadline = clock_mono_ms() + PG_CANCEL_GRACE_MS;
			} else {
				set_error(pg, "statement timed out and its cancel was not answered", "57014");
				log_error("postgresql (%s): %s; dropping the connection", pg->app_name, pg->last_error);
				metrics_count_pg_error();
				pg_disconnect(pg);
				return -1;
			}
		}
	}
	return 0;
}

/* Send one statement and take every result, with the deadline. Returns a
 * pg_err; on success without fn, ru->result holds the answer. */
static int run_once(struct pg *pg, struct run *ru)
{
	long long deadline = pg->timeout_ms > 0 ? clock_mono_ms() + pg->timeout_ms : 0;
	bool cancelled = false, first = true;
	int rc = PG_OK, err = PG_OK;
	PGresult *r;

	ru->result = NULL;
	ru->seen = 0;
	ru->sent = ru->answered = ru->fatal_first = ru->timed_out = false;
	if (!(ru->kind == RUN_SIMPLE ? PQsendQuery(pg->conn, ru->sql)
	    : ru->kind == RUN_PREPARE ? PQsendPrepare(pg->conn, ru->st->name, ru->sql, ru->nparams, NULL)
	    : ru->kind == RUN_PREPARED ? PQsendQueryPrepared(pg->conn, ru->st->name, ru->nparams, ru->params, NULL, NULL, 0)
	    : PQsendQueryParams(pg->conn, ru->sql, ru->nparams, NULL, ru->params, NULL, NULL, 0))) {
		/* libpq refused before anything went out (e.g. the connection is
		 * known to be broken). */
		return fail_class(pg, NULL);
	}
	ru->sent = true;
	/* Should it fail, the rows come in one result: still handled below. */
	if (ru->fn)
		(void)PQsetSingleRowMode(pg->conn);
	for (;;) {
		ExecStatusType s;

		if (run_wait(pg, &deadline, &cancelled) < 0) {
			PQclear(ru->result);
			ru->result = NULL;
			ru->timed_out = true;
			return PG_EUNAVAIL;
		}
		if (cancelled && rc == PG_OK)
			ru->timed_out = true;
		if ((r = PQgetResult(pg->conn)) == NULL)
			break;
		s = PQresultStatus(r);
		if (s == PGRES_SINGLE_TUPLE || s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
			ru->answered = true;
			first = false;
			if (ru->fn) {
				for (int i = 0; rc == PG_OK && i < PQntuples(r); i++) {
					++ru->seen;
					if ((rc = ru->fn(ru->ctx, r, i)) != PG_OK && !cancelled) {
						cancel(pg);   /* the rest is read and dropped */
						cancelled = true;
					}
				}
				PQclear(r);
			} else if (err == PG_OK) {
				PQclear(ru->result);   /* as PQexec: the last one */
				ru->result = r;
			} else {
				PQclear(r);
			}
			continue;
		}
		/* An error (or an unexpected status): the first one is the answer. */
		if (first)
			ru->fatal_first = session_ended(PQresultErrorField(r, PG_DIAG_SQLSTATE));
		first = false;
		if (err == PG_OK && rc == PG_OK)
			err = fail_class(pg, r);
		PQclear(r);
	}
	drop_notifications(pg);
	if (err != PG_OK || rc != PG_OK) {
		PQclear(ru->result);
		ru->result = NULL;
		return rc != PG_OK ? rc : err;
	}
	if (!ru->fn && ru->result == NULL) {
		/* Nothing at all came back (an empty query, or a broken connection). */
		if (PQstatus(pg->conn) != CONNECTION_OK)
			return fail_class(pg, NULL);
		set_error(pg, "no result", "");
		return PG_EBUG;
	}
	pg->sqlstate[0] = '\0';
	return PG_OK;
}

/* Whether a failed statement may be sent again on a new connection: only
 * when the old connection broke and the statement had not begun a
 * transaction of ours. Then
 * - a statement marked `retry` (a read, or a write that may run twice)
 *   is sent again if nothing of it was handed on yet;
 * - any statement is sent again if it never went out, or if the first
 *   thing the server said was that it ended the session (57P01, 57P02,
 *   57P05). PostgreSQL sends a statement's CommandComplete before it
 *   commits it, so a FATAL before any completion or row means that nothing
 *   committed: sending it again cannot make it happen twice. Any other
 *   failure (the connection simply vanished after the statement went out)
 *   leaves its fate unknown: a write is then not repeated. */
static bool may_resend(const struct pg *pg, const struct run *ru, bool retry, bool was_idle)
{
	if (!was_idle || pg_connected(pg) || ru->seen > 0 || ru->answered || ru->timed_out)
		return false;
	return retry || !ru->sent || ru->fatal_first;
}

static bool is_prepared(const struct pg *pg, const struct pg_stmt *st)
{
	for (int i = 0; i < pg->nprepared; i++)
		if (pg->prepared[i] == st)
			return true;
	return false;
}

/* One try of ru: as a named statement (prepared first if need be) on a
 * direct session, else unnamed. */
static int attempt(struct pg *pg, struct run *ru)
{
	int err;

	if (ru->st == NULL || !pg->named) {
		if (ru->kind != RUN_SIMPLE)
			ru->kind = RUN_PARAMS;
		return run_once(pg, ru);
	}
	if (!is_prepared(pg, ru->st)) {
		struct run pr = { .kind = RUN_PREPARE, .st = ru->st, .sql = ru->sql, .nparams = ru->nparams };

		err = run_once(pg, &pr);
		PQclear(pr.result);
		if (err != PG_OK) {
			/* The statement itself never went out. */
			ru->sent = ru->answered = ru->timed_out = false;
			ru->seen = 0;
			ru->fatal_first = pr.fatal_first;
			ru->result = NULL;
			return err;
		}
		if (pg->nprepared < PG_MAX_PREPARED)
			pg->prepared[pg->nprepared++] = ru->st;
	}
	ru->kind = RUN_PREPARED;
	return run_once(pg, ru);
}

/* A named statement the server does not have, or already has: the
 * connection is not the session it seemed (a pooler that passes the
 * server's key on). Nothing ran. */
static bool named_broken(const struct pg *pg)
{
	return strcmp(pg->sqlstate, "26000") == 0 || strcmp(pg->sqlstate, "42P05") == 0;
}

static int run(struct pg *pg, struct run *ru, bool retry)
{
	bool idle;
	int err;

	if ((err = pg_connect(pg)) != PG_OK)
		return err;
	idle = PQtransactionStatus(pg->conn) == PQTRANS_IDLE;
	err = attempt(pg, ru);
	if (err != PG_OK && pg->named && named_broken(pg) && pg_connected(pg)) {
		log_warn("postgresql (%s): named statements are not kept on this connection; using unnamed ones",
		    pg->app_name);
		pg->named = false;
		if (idle)
			err = attempt(pg, ru);
	} else if (err == PG_EUNAVAIL && may_resend(pg, ru, retry, idle)) {
		log_info("postgresql (%s): the connection was lost before the statement ran; sending it again",
		    pg->app_name);
		if (pg_connect(pg) == PG_OK)
			err = attempt(pg, ru);
	}
	return err;
}

PGresult *pg_query(struct pg *pg, const struct pg_stmt *st, const char *const *params, int *err)
{
	struct run ru = { .st = st, .sql = st->sql, .nparams = st->nparams, .params = params };

	*err = run(pg, &ru, st->retry);
	return ru.result;
}

int pg_each(struct pg *pg, const struct pg_stmt *st, const char *const *params,
    int (*fn)(void *ctx, const PGresult *r, int i), void *ctx)
{
	struct run ru = { .st = st, .sql = st->sql, .nparams = st->nparams, .params = params, .fn = fn, .ctx = ctx };

	return run(pg, &ru, st->retry);
}

int pg_page(struct pg *pg, const struct pg_stmt *count, const struct pg_stmt *list,
    const char *const *params, PGresult **rows, long *total)
{
	PGresult *c;
	int err;

	*rows = NULL;
	if ((c = pg_query(pg, count, params, &err)) == NULL)
		return err;
	*total = atol(PQgetvalue(c, 0, 0));
	PQclear(c);
	*rows = pg_query(pg, list, params, &err);
	return *rows ? PG_OK : err;
}

PGresult *pg_exec(struct pg *pg, const char *sql, int *err)
{
	struct run ru = { .kind = RUN_SIMPLE, .sql = sql };

	*err = run(pg, &ru, false);
	return ru.result;
}

static int exec_simple(struct pg *pg, const char *sql)
{
	int err;
	PGresult *r = pg_exec(pg, sql, &err);

	PQclear(r);
	return err;
}

int pg_begin(struct pg *pg) { return exec_simple(pg, "BEGIN"); }
int pg_commit(struct pg *pg) { return exec_simple(pg, "COMMIT"); }

void pg_rollback(struct pg *pg)
{
	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK &&
	    PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
		PQclear(PQexec(pg->conn, "ROLLBACK"));
}

int pg_ping(struct pg *pg, double *latency_ms)
{
	static const struct pg_stmt ping = { "pg_ping", "SELECT 1", 0, true };
	double t0 = clock_mono_ms_f();
	PGresult *r;
	int err;

	r = pg_query(pg, &ping, NULL, &err);
	PQclear(r);
	*latency_ms = clock_mono_ms_f() - t0;
	return err;
}
