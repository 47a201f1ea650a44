/* The admin query console (POST /api/admin/storage/query): one SQL
 * statement from an administrator, run so that it cannot change anything.
 *
 * Read-only by construction, not by looking at the SQL text:
 *  - its own connection ([database] query_url) as a role that may only
 *    SELECT the storage tables; checked before every statement (no
 *    superuser, no role membership, no write privilege anywhere) so that a
 *    misconfigured url turns the console off instead of making it a
 *    writable shell;
 *  - inside BEGIN READ ONLY, always rolled back, with statement, lock and
 *    idle timeouts;
 *  - through the extended protocol: one Parse, so one statement only, and
 *    no parameters; a statement that returns no row set (DDL, SET, COPY,
 *    PREPARE, LISTEN, DO, VACUUM…) is refused after Describe, before it
 *    runs;
 *  - the functions it may call are an allow-list (the plan, printed by
 *    EXPLAIN VERBOSE before it runs, names every call): stable and
 *    immutable functions of pg_catalog and a few volatile ones that only
 *    read or wait; no advisory lock, no WAL message, no statement inside
 *    the statement (query_to_xml), nothing with an effect a rollback
 *    cannot undo; EXPLAIN ANALYZE is refused;
 *  - rows fetched one at a time and at most QC_MAX_ROWS of them (then the
 *    statement is cancelled), and QC_MAX_BYTES of values: a row larger
 *    than that is cut off as it arrives (or refused once whole, when it
 *    came faster than it could be counted) and its connection dropped,
 *    so no worker keeps a huge result, or value, past the request;
 *  - afterwards DISCARD ALL, so nothing a statement did to the session
 *    (a session advisory lock, a setting) outlives it; a connection in
 *    doubt is dropped instead. */
#ifndef BLOQR_QUERY_CONSOLE_H
#define BLOQR_QUERY_CONSOLE_H

#include <json.h>
#include <stddef.h>

struct pg;

#define QC_SQL_MAX 100000             /* bytes of SQL accepted */
#define QC_MAX_ROWS 1000              /* rows returned at most */
#define QC_MAX_BYTES (8u << 20)       /* bytes of values returned at most */
#define QC_TIMEOUT_MAX_MS 5000        /* longest a statement may run */
#define QC_LOCK_TIMEOUT_MS 1000       /* longest it may wait for a lock */

enum qc_err {
	QC_OK = 0,
	QC_EREFUSED = -1,   /* the statement was refused or failed: 400 with msg */
	QC_EUNAVAIL = -2,   /* the console's database is unreachable: 503 */
	QC_EUNSAFE = -3,    /* the query_url role could write: 503, logged */
	QC_ENOMEM = -4,     /* 500 */
};

/* The statement timeout to use: the configured one, but at most
 * QC_TIMEOUT_MAX_MS. */
long qc_timeout_ms(long configured_ms);

/* Run sql (non-empty, at most QC_SQL_MAX bytes, validated by the caller)
 * on pg, allowing it timeout_ms. On QC_OK adds to reply (which stays the
 * caller's) "rows" (an array of {column: value}), "rowCount" and "meta"
 * {columns:[{name, type}], truncated, duration_ms}. Values: NULL is null,
 * bool a JSON boolean, int2/int4/int8 and finite float4/float8 JSON
 * numbers, everything else (numeric included, to keep its precision) the
 * PostgreSQL text as a string. On QC_EREFUSED msg holds a message fit for
 * the client (never a connection string or a file path). */
int qc_run(struct pg *pg, const char *sql, long timeout_ms, struct json_object *reply,
    char *msg, size_t msglen) __attribute__((warn_unused_result));

#endif
