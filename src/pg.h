/* One PostgreSQL connection for the life of a process: lazy connect,
 * reconnect with back-off, a connection closed while idle replaced before
 * it is used, a statement deadline kept on this side, and errors sorted
 * into what the client should be told. Nothing depends on session state
 * unless the connection is proven to be a session of its own, so `url` may
 * be a transaction-mode pooler (CONTRACT §6). */
#ifndef BLOQR_PG_H
#define BLOQR_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "err.h"

/* A statement owned by the module whose table it touches: a static const
 * object. On a connection proven to be a server session of its own it is
 * prepared on first use under `name` (once per connection); otherwise it
 * is sent unnamed (Parse, Bind, Execute, Sync in one round trip), since
 * behind a transaction-mode pooler a named statement lives in some other
 * client's server session. `retry` marks statements safe to run twice
 * (reads): when the connection breaks under them they are re-sent once on
 * a fresh connection. Any statement is re-sent when it provably did not
 * run (see pg.c, may_resend). */
struct pg_stmt {
	const char *name;
	const char *sql;
	int nparams;
	bool retry;
};

/* The database's errors are the library's (err.h), under these names. */
enum pg_err {
	PG_OK = BLOQR_OK,
	PG_EUNAVAIL = BLOQR_EUNAVAIL,   /* server unreachable, restarting, timed out: 503 */
	PG_EINPUT = BLOQR_EINPUT,       /* the data was refused (check constraint, bad value): 400 */
	PG_ECONFLICT = BLOQR_ECONFLICT, /* unique violation: 409 */
	PG_EBUG = BLOQR_EBUG,           /* anything else: 500, logged */
};

struct pg;

/* A handle that has not connected yet; NULL only when out of memory.
 * The url and app name are copied. statement_timeout_ms (0 = none) bounds
 * every statement from this side: past it the statement is cancelled
 * (503), and the connection dropped if the cancel is not answered. */
struct pg *pg_new(const char *url, long statement_timeout_ms, const char *app_name);
void pg_free(struct pg *pg);

/* A connection that LISTENs keeps the notifications it receives for the
 * caller (PQnotifies); any other drops them after each statement. */
void pg_set_listening(struct pg *pg, bool on);

/* Change the statement deadline (0 = none); returns the previous one. */
long pg_set_timeout(struct pg *pg, long ms);

/* A function called whenever the process is about to talk to PostgreSQL
 * (and so may wait): a worker uses it to pass on the connections it holds
 * idle. NULL for none. */
void pg_set_wait_hook(void (*fn)(void));

/* Connect if not connected and the back-off allows it; an idle
 * connection that the server or a pooler has closed is found here (its
 * socket is readable) and replaced. Every operation below starts here. */
int pg_connect(struct pg *pg) __attribute__((warn_unused_result));
bool pg_connected(const struct pg *pg);
/* Moves on with every new connection: session state (LISTEN) made on an
 * older one is gone. */
unsigned pg_generation(const struct pg *pg);
/* Drop the connection (e.g. after fork in the parent). */
void pg_disconnect(struct pg *pg);

/* Run a statement. Returns a result the caller must PQclear, or
 * NULL with *err set. A result is returned only for PGRES_TUPLES_OK and
 * PGRES_COMMAND_OK. Parameters are text; NULL pointers are SQL NULLs. */
PGresult *pg_query(struct pg *pg, const struct pg_stmt *st, const char *const *params, int *err)
	__attribute__((warn_unused_result));

/* Run a statement and call fn for each row (r, row i; fn must not
 * keep r) as it arrives, never holding the whole result. fn returns 0 to go
 * on, else a pg_err that stops the statement and is returned. A dead idle
 * connection is replaced once, as pg_query does, if fn has seen no row yet.
 * Returns a pg_err. */
int pg_each(struct pg *pg, const struct pg_stmt *st, const char *const *params,
    int (*fn)(void *ctx, const PGresult *r, int i), void *ctx) __attribute__((warn_unused_result));

/* A page of rows and the count of all matches: *total from count (one row,
 * one number), then *rows from list (caller PQclears). Both take params.
 * Returns a pg_err. */
int pg_page(struct pg *pg, const struct pg_stmt *count, const struct pg_stmt *list,
    const char *const *params, PGresult **rows, long *total) __attribute__((warn_unused_result));

/* Run trusted SQL text with no parameters (migrations, BEGIN/COMMIT),
 * through the simple protocol: it may hold several statements. Not
 * re-sent after a lost connection unless it never went out. */
PGresult *pg_exec(struct pg *pg, const char *sql, int *err) __attribute__((warn_unused_result));

/* BEGIN / COMMIT / ROLLBACK; pg_rollback is safe to call in any state. */
int pg_begin(struct pg *pg) __attribute__((warn_unused_result));
int pg_commit(struct pg *pg) __attribute__((warn_unused_result));
void pg_rollback(struct pg *pg);

/* Live probe: SELECT 1, reconnecting once if the connection was dead.
 * latency_ms gets the round trip. */
int pg_ping(struct pg *pg, double *latency_ms);

/* The last server or client error, for logs only (never for clients). */
const char *pg_last_error(const struct pg *pg);
/* SQLSTATE of the last failed statement, "" when none. */
const char *pg_last_sqlstate(const struct pg *pg);

/* The raw connection, for the admin CLI; NULL when not connected. */
PGconn *pg_conn(struct pg *pg);

/* SQL for a timestamptz column as the API's ISO-8601 UTC text. */
#define PG_ISO_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Sort a SQLSTATE into enum pg_err. */
int pg_classify(const char *sqlstate);

#endif
