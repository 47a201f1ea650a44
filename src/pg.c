#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define PG_MAX_PREPARED 128
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000

struct pg {
	char *url;
	char *app_name;
	long statement_timeout_ms;
	PGconn *conn;
	/* Statements prepared on the current connection, by identity. */
	const struct pg_stmt *prepared[PG_MAX_PREPARED];
	int nprepared;
	long long next_try_ms;   /* no connect attempt before this (monotonic) */
	long backoff_ms;
	bool ever_connected;
	unsigned generation;
	char last_error[256];
	char sqlstate[6];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
	pg->statement_timeout_ms = statement_timeout_ms;
	pg->backoff_ms = PG_BACKOFF_MIN_MS;
	return pg;
}

void pg_disconnect(struct pg *pg)
{
	if (pg->conn)
		PQfinish(pg->conn);
	pg->conn = NULL;
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
	    strncmp(st, "57P", 3) == 0 ||     /* shutdown, crash, cannot connect now */
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

static int setup_session(struct pg *pg)
{
	char val[32];
	const char *params[2];
	PGresult *r;

	snprintf(val, sizeof val, "%ld", pg->statement_timeout_ms);
	params[0] = val;
	r = PQexecParams(pg->conn,
	    "SELECT set_config('statement_timeout', $1, false), set_config('TimeZone', 'UTC', false)",
	    1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		set_error(pg, PQresultErrorMessage(r), PQresultErrorField(r, PG_DIAG_SQLSTATE));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

static void (*wait_hook)(void);

void pg_set_wait_hook(void (*fn)(void))
{
	wait_hook = fn;
}

int pg_connect(struct pg *pg)
{
	const char *keys[] = { "connect_timeout", "application_name", "client_encoding", "dbname", NULL };
	const char *vals[] = { "3", pg->app_name, "UTF8", pg->url, NULL };
	long long now;

	if (wait_hook != NULL)
		wait_hook();
	if (pg_connected(pg))
		return PG_OK;
	if (pg->conn) {
		pg_disconnect(pg);
		metrics_count_pg_reconnect();
	}
	now = now_ms();
	if (now < pg->next_try_ms) {
		set_error(pg, "waiting before reconnecting", "");
		return PG_EUNAVAIL;
	}
	/* Values in the URL override the defaults before it (expand_dbname). */
	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK ||
	    setup_session(pg) < 0) {
		if (pg->conn && PQstatus(pg->conn) != CONNECTION_OK)
			set_error(pg, PQerrorMessage(pg->conn), "");
		else if (pg->conn == NULL)
			set_error(pg, "out of memory", "");
		pg_disconnect(pg);
		pg->next_try_ms = now + pg->backoff_ms;
		pg->backoff_ms = pg->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : pg->backoff_ms * 2;
		log_warn("postgresql (%s): cannot connect: %s", pg->app_name, pg->last_error);
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

/* Settle a finished command: the result on success, else NULL and *err. */
static PGresult *finish(struct pg *pg, PGresult *r, int *err)
{
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	const char *state;

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		*err = PG_OK;
		pg->sqlstate[0] = '\0';
		return r;
	}
	state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	set_error(pg, r ? PQresultErrorMessage(r) : PQerrorMessage(pg->conn), state);
	if (PQstatus(pg->conn) != CONNECTION_OK)
		*err = PG_EUNAVAIL;
	else
		*err = pg_classify(state);
	if (*err == PG_EBUG || *err == PG_EUNAVAIL)
		log_error("postgresql (%s): %s%s%s", pg->app_name, pg->last_error, state ? " sqlstate=" : "",
		    state ? state : "");
	metrics_count_pg_error();
	PQclear(r);
	return NULL;
}

static bool is_prepared(const struct pg *pg, const struct pg_stmt *st)
{
	for (int i = 0; i < pg->nprepared; i++)
		if (pg->prepared[i] == st)
			return true;
	return false;
}

static int prepare(struct pg *pg, const struct pg_stmt *st)
{
	PGresult *r;
	int err;

	if (is_prepared(pg, st))
		return PG_OK;
	r = finish(pg, PQprepare(pg->conn, st->name, st->sql, st->nparams, NULL), &err);
	if (r == NULL)
		return err;
	PQclear(r);
	if (pg->nprepared < PG_MAX_PREPARED)
		pg->prepared[pg->nprepared++] = st;
	return PG_OK;
}

static PGresult *query_once(struct pg *pg, const struct pg_stmt *st, const char *const *params, int *err)
{
	if ((*err = prepare(pg, st)) != PG_OK)
		return NULL;
	return finish(pg, PQexecPrepared(pg->conn, st->name, st->nparams, params, NULL, NULL, 0), err);
}

PGresult *pg_query(struct pg *pg, const struct pg_stmt *st, const char *const *params, int *err)
{
	bool idle;
	PGresult *r;

	if ((*err = pg_connect(pg)) != PG_OK)
		return NULL;
	idle = PQtransactionStatus(pg->conn) == PQTRANS_IDLE;
	r = query_once(pg, st, params, err);
	/* A connection that died while idle (server restart) is replaced once,
	 * for statements that are safe to send twice. */
	if (r == NULL && *err == PG_EUNAVAIL && idle && st->retry &&
	    PQstatus(pg->conn) != CONNECTION_OK && pg_connect(pg) == PG_OK)
		r = query_once(pg, st, params, err);
	return r;
}

/* Send st in single-row mode and hand each row to fn (*seen counts them);
 * after fn fails, the statement is cancelled and the rest read and
 * dropped. */
static int each_once(struct pg *pg, const struct pg_stmt *st, const char *const *params,
    int (*fn)(void *ctx, const PGresult *r, int i), void *ctx, long *seen)
{
	PGresult *r;
	int rc = PG_OK, err;

	*seen = 0;
	if ((err = prepare(pg, st)) != PG_OK)
		return err;
	if (!PQsendQueryPrepared(pg->conn, st->name, st->nparams, params, NULL, NULL, 0)) {
		PQclear(finish(pg, NULL, &err));
		return err;
	}
	/* Should it fail, the rows come in one result: still handled below. */
	(void)PQsetSingleRowMode(pg->conn);
	while ((r = PQgetResult(pg->conn)) != NULL) {
		ExecStatusType s = PQresultStatus(r);
		bool rows = s == PGRES_SINGLE_TUPLE || s == PGRES_TUPLES_OK;
		for (int i = 0; rows && rc == PG_OK && i < PQntuples(r); i++) {
			++*seen;
			if ((rc = fn(ctx, r, i)) != PG_OK) {
				PGcancel *c = PQgetCancel(pg->conn);
				char msg[256];
				if (c == NULL || !PQcancel(c, msg, sizeof msg))
					log_warn("postgresql (%s): cannot cancel %s", pg->app_name, st->name);
				PQfreeCancel(c);
			}
		}
		if (rows || rc != PG_OK) {
			PQclear(r);
		} else {
			PQclear(finish(pg, r, &err));   /* an error before fn failed: it is the answer */
			rc = err;
		}
	}
	return rc;
}

int pg_each(struct pg *pg, const struct pg_stmt *st, const char *const *params,
    int (*fn)(void *ctx, const PGresult *r, int i), void *ctx)
{
	bool idle;
	long seen;
	int rc;

	if ((rc = pg_connect(pg)) != PG_OK)
		return rc;
	idle = PQtransactionStatus(pg->conn) == PQTRANS_IDLE;
	rc = each_once(pg, st, params, fn, ctx, &seen);
	/* As in pg_query, but only when fn has seen no row: a connection lost
	 * halfway must not hand fn the same rows twice. */
	if (rc == PG_EUNAVAIL && seen == 0 && idle && st->retry && PQstatus(pg->conn) != CONNECTION_OK &&
	    pg_connect(pg) == PG_OK)
		rc = each_once(pg, st, params, fn, ctx, &seen);
	return rc;
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
	if ((*err = pg_connect(pg)) != PG_OK)
		return NULL;
	return finish(pg, PQexec(pg->conn, sql), err);
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
	struct timespec a, b;
	PGresult *r;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = pg_query(pg, &ping, NULL, &err);
	clock_gettime(CLOCK_MONOTONIC, &b);
	PQclear(r);
	*latency_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	return err;
}
