/* The change log of the cached tables in PostgreSQL (bloqr_cache_log,
 * migration 0006): every NOTIFY on bloqr_cache is also kept there for a
 * while with its transaction's id, so a syncer that was not listening can
 * learn what it missed instead of distrusting its whole cache. A position
 * is "<database id> <snapshot>": the database's identity (migration 0006)
 * and a PostgreSQL snapshot as text (pg_current_snapshot()); everything
 * that committed inside the snapshot has been applied. The syncer owns
 * these calls. */
#ifndef BLOQR_CHANGELOG_H
#define BLOQR_CHANGELOG_H

#include <libpq-fe.h>

#include "pg.h"

#define CHANGELOG_POSITION_MAX 4096   /* longer snapshots (thousands of open transactions) are not kept */
#define CHANGELOG_REPLAY_MAX 100000   /* more missed changes than this: re-checking all is cheaper */
#define CHANGELOG_PRUNE_CHUNK 5000    /* rows deleted a statement */
#define CHANGELOG_GAP 1               /* changelog_since: the log cannot tell */
#define CHANGELOG_ID_MAX 40           /* a database id's text (a UUID: 36) */

/* This database's identity into id (size >= CHANGELOG_ID_MAX + 1):
 * PG_OK, CHANGELOG_GAP when there is no log (not migrated), or a pg_err. */
int changelog_identity(struct pg *pg, char *id, size_t size) __attribute__((warn_unused_result));

/* "<id> <snapshot>" into buf: 0, or -1 (id empty, or too long: then buf
 * is ""). */
int changelog_position(char *buf, size_t size, const char *id, const char *snapshot);

/* What committed outside position and is visible now, each distinct
 * payload once: *out is a result the caller PQclears, with the payloads in
 * column 2 of the rows where it is not NULL. Returns PG_OK, CHANGELOG_GAP
 * when the log cannot tell (pruned past position, a position from another
 * timeline or another database, more than CHANGELOG_REPLAY_MAX changes, no
 * log table) and then
 * *out is NULL, or a pg_err (negative). */
int changelog_since(struct pg *pg, const char *position, PGresult **out)
	__attribute__((warn_unused_result));

/* Forget the rows of transactions that had ended when snapshot was taken
 * (below its xmin), at most CHANGELOG_PRUNE_CHUNK: the number deleted, or
 * -1. The horizon moves in the same statement, so a reader never trusts a
 * log with holes. */
long changelog_prune(struct pg *pg, const char *snapshot);

#endif
