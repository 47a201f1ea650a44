#include "query_console.h"

#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "log.h"
#include "pg.h"

/* How long past the statement timeout we wait for the server before
 * cancelling ourselves, and again before giving the connection up. */
#define QC_GRACE_MS 2000
/* A session left idle inside our transaction (a stuck worker) is ended
 * by the server after this. */
#define QC_IDLE_TIMEOUT_MS 10000

/* Refuse to run anything when the console's role could change data: no
 * superuser or similar attribute, no membership in another role (SET ROLE
 * would lend it that role's rights), no write privilege on any table or
 * sequence outside the system schemas. 't' = unsafe. */
static const char qc_role_check[] =
	"SELECT r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolreplication "
	"  OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid) "
	"  OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
	"    WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' AND ("
	"      (c.relkind IN ('r', 'p', 'v', 'm', 'f') "
	"        AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) "
	"      OR (c.relkind = 'S' AND has_sequence_privilege(c.oid, 'USAGE, UPDATE')))) "
	"FROM pg_roles r WHERE r.rolname = current_user";

/* One run of qc_run. */
struct run {
	struct pg *pg;
	PGconn *conn;
	long timeout_ms;
	long long deadline;   /* monotonic ms: stop waiting for the server */
	bool may_cancel;      /* at the deadline: cancel and wait QC_GRACE_MS more */
	bool cancelled;       /* a cancel request was sent */
	bool timed_out;       /* ... because the deadline passed */
	bool broken;          /* the connection failed or did not answer: drop it */
	char *msg;
	size_t msglen;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_ms_f(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

long qc_timeout_ms(long configured_ms)
{
	return configured_ms > 0 && configured_ms < QC_TIMEOUT_MAX_MS ? configured_ms : QC_TIMEOUT_MAX_MS;
}

static int refuse(struct run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct run *R, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(R->msg, R->msglen, fmt, ap);
	va_end(ap);
	return QC_EREFUSED;
}

/* Notices (RAISE NOTICE, "there is no transaction in progress") would go
 * to stderr by default: they are the statement's business, not the log's. */
static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* ------------------------------------------------------- connection I/O -- */

/* Wait until a result can be read without blocking: 0, 1 when the
 * deadline passed first, -1 when the connection failed. The socket is
 * read only when libpq lacks a whole message: each PQconsumeInput moves
 * the unparsed rest of its buffer, and calling it per row while a fast
 * server fills that buffer costs time quadratic in the rows sent. */
static int wait_ready(PGconn *conn, long long deadline)
{
	while (PQisBusy(conn)) {
		struct pollfd p;
		long long left;
		int n;

		if ((left = deadline - now_ms()) <= 0)
			return 1;
		p.fd = PQsocket(conn);
		p.events = POLLIN;
		p.revents = 0;
		if (p.fd < 0)
			return -1;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && !PQconsumeInput(conn))
			return -1;
	}
	return 0;
}

static void send_cancel(struct run *R)
{
	PGcancel *c = PQgetCancel(R->conn);
	char err[256];

	R->cancelled = true;
	if (c == NULL || !PQcancel(c, err, sizeof err))
		log_warn("query console: cannot cancel a statement");
	PQfreeCancel(c);
}

/* The next result of the command in flight, NULL when it is complete —
 * or when the connection failed or stopped answering (R->broken). */
static PGresult *next_result(struct run *R)
{
	for (;;) {
		int w = wait_ready(R->conn, R->deadline);

		if (w == 0)
			return PQgetResult(R->conn);
		if (w < 0 || !R->may_cancel || R->timed_out) {
			R->broken = true;
			return NULL;
		}
		/* The server's own statement_timeout should have ended it: it
		 * is stuck somewhere that does not check it. */
		R->timed_out = true;
		send_cancel(R);
		R->deadline = now_ms() + QC_GRACE_MS;
	}
}

/* The first result of a command whose others are of no interest; the
 * rest are read and dropped. NULL only when R->broken. */
static PGresult *one_result(struct run *R)
{
	PGresult *first = next_result(R), *r;

	if (first == NULL) {
		R->broken = true;
		return NULL;
	}
	while ((r = next_result(R)) != NULL)
		PQclear(r);
	if (R->broken) {
		PQclear(first);
		return NULL;
	}
	return first;
}

/* Run fixed SQL of ours (simple protocol); 0 when every statement
 * succeeded. *last, when given, gets the last result (caller PQclears). */
static int run_ours(struct run *R, const char *sql, PGresult **last)
{
	PGresult *r, *keep = NULL;
	int rc = 0;

	if (last)
		*last = NULL;
	if (!PQsendQuery(R->conn, sql)) {
		R->broken = true;
		return -1;
	}
	while ((r = next_result(R)) != NULL) {
		ExecStatusType st = PQresultStatus(r);

		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			if (rc == 0)
				log_error("query console: %s", PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(keep);
		keep = r;
	}
	if (R->broken)
		rc = -1;
	if (last && rc == 0)
		*last = keep;
	else
		PQclear(keep);
	return rc;
}

/* --------------------------------------------------------------- errors -- */

/* Whether PostgreSQL's message may be shown to the client as it is: short,
 * one line, no path (a file name it failed on), nothing that looks like
 * SQL or a connection string. Otherwise only our own words are shown. */
static bool safe_text(const char *s)
{
	static const char *const words[] = {
		"sql", "select", "insert", "postgres", "libpq", "sqlite", "host=", "password", NULL
	};
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 200)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '/' || *p == '\\')
			return false;
	for (int i = 0; words[i]; i++)
		if (strcasestr(s, words[i]))
			return false;
	return true;
}

/* The client's answer to a failed statement. */
static int from_error(struct run *R, const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
	const char *text = safe_text(primary) ? primary : NULL;

	if (state == NULL || strncmp(state, "08", 2) == 0) {
		/* No SQLSTATE: libpq's own error, the connection is gone. */
		log_error("query console: %s", PQresultErrorMessage(r));
		R->broken = true;
		return R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
	}
	log_info("query console: statement refused: sqlstate=%s %s", state, primary ? primary : "");
	if (strcmp(state, "57014") == 0) {
		if (R->timed_out || (primary && strstr(primary, "statement timeout")))
			return refuse(R, "Query timed out after %ld ms", R->timeout_ms);
		return refuse(R, "The query was cancelled");
	}
	if (strcmp(state, "55P03") == 0)
		return refuse(R, "Query timed out waiting for a lock (%d ms)", QC_LOCK_TIMEOUT_MS);
	if (strcmp(state, "25006") == 0)
		return refuse(R, "The query console is read-only: this statement would write or lock data");
	if (strcmp(state, "42501") == 0)
		return refuse(R, "Permission denied%s%s (the console may only read the storage tables)",
		    text ? ": " : "", text ? text : "");
	if (strcmp(state, "42601") == 0) {
		/* English text only when lc_messages is English; else the
		 * generic syntax message below still applies. */
		if (primary && strstr(primary, "multiple commands"))
			return refuse(R, "Only one statement can be run at a time");
		return refuse(R, "Syntax error%s%s%s%s", text ? ": " : "", text ? text : "",
		    pos ? " at character " : "", pos ? pos : "");
	}
	if (strncmp(state, "42", 2) == 0)
		return refuse(R, "The statement was refused%s%s%s%s", text ? ": " : "", text ? text : "",
		    pos ? " at character " : "", pos ? pos : "");
	return refuse(R, "The query failed%s%s", text ? ": " : "", text ? text : "");
}

/* ---------------------------------------------------------------- rows -- */

static const char *type_name(Oid oid, char *buf, size_t n)
{
	static const struct { Oid oid; const char *name; } types[] = {
		{ 16, "bool" }, { 17, "bytea" }, { 18, "char" }, { 19, "name" }, { 20, "int8" },
		{ 21, "int2" }, { 23, "int4" }, { 25, "text" }, { 26, "oid" }, { 114, "json" },
		{ 142, "xml" }, { 700, "float4" }, { 701, "float8" }, { 869, "inet" },
		{ 1007, "int4[]" }, { 1009, "text[]" }, { 1016, "int8[]" }, { 1042, "bpchar" },
		{ 1043, "varchar" }, { 1082, "date" }, { 1083, "time" }, { 1114, "timestamp" },
		{ 1184, "timestamptz" }, { 1186, "interval" }, { 1700, "numeric" },
		{ 2205, "regclass" }, { 2249, "record" }, { 2278, "void" }, { 2950, "uuid" },
		{ 3802, "jsonb" },
	};

	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].oid == oid)
			return types[i].name;
	snprintf(buf, n, "oid:%u", (unsigned)oid);
	return buf;
}

/* Column i's value of a one-row result as JSON. *oom on failure (a NULL
 * return is otherwise SQL NULL). */
static struct json_object *value(const PGresult *r, int c, bool *oom)
{
	const char *v;
	struct json_object *o = NULL;
	char *end;

	if (PQgetisnull(r, 0, c))
		return NULL;
	v = PQgetvalue(r, 0, c);
	switch (PQftype(r, c)) {
	case 16:   /* bool */
		o = json_object_new_boolean(v[0] == 't');
		break;
	case 20: case 21: case 23: {   /* int8, int2, int4 */
		long long n;

		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno == 0 && end != v && *end == '\0')
			o = json_object_new_int64(n);
		break;
	}
	case 700: case 701: {   /* float4, float8: NaN and Infinity stay strings */
		double d = strtod(v, &end);

		if (end != v && *end == '\0' && isfinite(d))
			o = json_object_new_double_s(d, v);   /* printed as PostgreSQL did */
		break;
	}
	default:
		break;
	}
	if (o == NULL)
		o = json_object_new_string_len(v, PQgetlength(r, 0, c));
	if (o == NULL)
		*oom = true;
	return o;
}

/* Unique names for the columns ("?column?" twice → "?column?", "?column?_2"):
 * rows are objects, and a repeated key would hide a column. names[] gets
 * malloc'd strings (caller frees each and the array). */
static char **column_names(const PGresult *desc)
{
	int n = PQnfields(desc);
	char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);

	if (names == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		const char *base = PQfname(desc, i);
		size_t len = strlen(base) + 16;

		if ((names[i] = malloc(len)) == NULL)
			goto fail;
		snprintf(names[i], len, "%s", base);
		for (int k = 2;; k++) {
			int j = 0;

			while (j < i && strcmp(names[j], names[i]) != 0)
				j++;
			if (j == i)
				break;
			snprintf(names[i], len, "%s_%d", base, k);
		}
	}
	return names;
fail:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return NULL;
}

static void free_names(char **names, int n)
{
	if (names == NULL)
		return;
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* {name: value…} of a one-row result, or NULL when out of memory. */
static struct json_object *row_object(const PGresult *r, char **names, int ncols)
{
	struct json_object *o = json_object_new_object();
	bool oom = false;

	if (o == NULL)
		return NULL;
	for (int c = 0; c < ncols; c++) {
		struct json_object *v = value(r, c, &oom);

		if (oom || json_object_object_add_ex(o, names[c], v, JSON_C_OBJECT_ADD_KEY_IS_NEW) < 0) {
			json_object_put(v);
			json_object_put(o);
			return NULL;
		}
	}
	return o;
}

static struct json_object *columns_meta(const PGresult *desc, char **names)
{
	struct json_object *arr = json_object_new_array();
	char buf[24];

	if (arr == NULL)
		return NULL;
	for (int i = 0; i < PQnfields(desc); i++) {
		struct json_object *c = json_object_new_object();

		if (c == NULL || jsonx_add_str(c, "name", names[i]) < 0 ||
		    jsonx_add_str(c, "type", type_name(PQftype(desc, i), buf, sizeof buf)) < 0 ||
		    json_object_array_add(arr, c) < 0) {
			json_object_put(c);
			json_object_put(arr);
			return NULL;
		}
	}
	return arr;
}

static size_t row_bytes(const PGresult *r, int ncols)
{
	size_t n = 0;

	for (int c = 0; c < ncols; c++)
		n += (size_t)PQgetlength(r, 0, c);
	return n;
}

/* --------------------------------------------------------------- phases -- */

/* BEGIN READ ONLY with the limits, and the role check; the check is also
 * the transaction's first query, so from here on transaction_read_only
 * can no longer be switched off (PostgreSQL allows that only before the
 * first snapshot). */
static int begin(struct run *R)
{
	char sql[sizeof qc_role_check + 256];
	long lock = R->timeout_ms < QC_LOCK_TIMEOUT_MS ? R->timeout_ms : QC_LOCK_TIMEOUT_MS;
	PGresult *r = NULL;
	int rc;

	snprintf(sql, sizeof sql,
	    "BEGIN READ ONLY; SET LOCAL statement_timeout = %ld; SET LOCAL lock_timeout = %ld; "
	    "SET LOCAL idle_in_transaction_session_timeout = %d; SET LOCAL TimeZone = 'UTC'; %s",
	    R->timeout_ms, lock, QC_IDLE_TIMEOUT_MS, qc_role_check);
	if (run_ours(R, sql, &r) < 0) {
		R->broken = true;   /* whatever went wrong, start afresh next time */
		return QC_EUNAVAIL;
	}
	rc = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "f") == 0 ? QC_OK : QC_EUNSAFE;
	PQclear(r);
	if (rc == QC_EUNSAFE)
		log_error("query console: the role of [database] query_url may change data (a superuser, "
		    "a member of another role, or write privileges): the console stays off");
	return rc;
}

/* Parse and Describe: one statement, no parameters, returning rows.
 * *desc gets the description (caller PQclears). */
static int prepare(struct run *R, const char *sql, PGresult **desc)
{
	PGresult *r;
	int rc = QC_OK;

	*desc = NULL;
	if (!PQsendPrepare(R->conn, "", sql, 0, NULL)) {
		R->broken = true;
		return QC_EUNAVAIL;
	}
	if ((r = one_result(R)) == NULL)
		return R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = from_error(R, r);
		PQclear(r);
		return rc;
	}
	PQclear(r);
	if (!PQsendDescribePrepared(R->conn, "")) {
		R->broken = true;
		return QC_EUNAVAIL;
	}
	if ((r = one_result(R)) == NULL)
		return R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = from_error(R, r);
	else if (PQnparams(r) > 0)
		rc = refuse(R, "The statement has parameters ($1, $2, ...); the console cannot supply them");
	else if (PQnfields(r) == 0)
		/* Nothing has run yet: utility statements and writes without
		 * RETURNING are turned away here. */
		rc = refuse(R, "Only statements that return rows can be run (queries, EXPLAIN, SHOW, VALUES)");
	if (rc != QC_OK)
		PQclear(r);
	else
		*desc = r;
	return rc;
}

/* Execute in single-row mode, keeping at most QC_MAX_ROWS rows and
 * QC_MAX_BYTES of values; past that, cancel and drop the rest. */
static int execute(struct run *R, const PGresult *desc, char **names, struct json_object *rows,
    bool *truncated)
{
	int ncols = PQnfields(desc), nrows = 0, rc = QC_OK;
	size_t bytes = 0;
	PGresult *r;

	*truncated = false;
	if (!PQsendQueryPrepared(R->conn, "", 0, NULL, NULL, NULL, 0)) {
		R->broken = true;
		return QC_EUNAVAIL;
	}
	if (!PQsetSingleRowMode(R->conn)) {
		/* Without it the whole result would be held: never run so. */
		send_cancel(R);
		R->broken = true;
		return QC_EUNAVAIL;
	}
	while ((r = next_result(R)) != NULL) {
		switch (PQresultStatus(r)) {
		case PGRES_SINGLE_TUPLE:
			if (*truncated || rc != QC_OK)
				break;   /* dropping what was sent before the cancel landed */
			if (nrows == QC_MAX_ROWS || bytes + row_bytes(r, ncols) > QC_MAX_BYTES ||
			    PQnfields(r) != ncols) {
				*truncated = true;
				send_cancel(R);
				break;
			}
			{
				struct json_object *o = row_object(r, names, ncols);

				if (o == NULL || json_object_array_add(rows, o) < 0) {
					json_object_put(o);
					rc = QC_ENOMEM;
					send_cancel(R);
					break;
				}
			}
			nrows++;
			bytes += row_bytes(r, ncols);
			break;
		case PGRES_TUPLES_OK:
			break;   /* the end */
		case PGRES_FATAL_ERROR:
			/* After our own cancel for "enough rows", the statement's
			 * end (whatever error) is of no interest. */
			if (rc == QC_OK && !*truncated)
				rc = from_error(R, r);
			else if (PQstatus(R->conn) != CONNECTION_OK)
				R->broken = true;
			break;
		case PGRES_COPY_OUT:
		case PGRES_COPY_IN:
		case PGRES_COPY_BOTH:
			/* Describe said NoData for COPY, so this cannot happen;
			 * if it did, dropping the connection ends the COPY. */
			PQclear(r);
			R->broken = true;
			return refuse(R, "COPY cannot be run in the query console");
		default:
			if (rc == QC_OK)
				rc = refuse(R, "Only statements that return rows can be run");
			break;
		}
		PQclear(r);
	}
	if (R->broken && rc == QC_OK && !*truncated)
		rc = R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
	return rc;
}

/* End the transaction and wipe the session; a connection that cannot be
 * brought back to a clean idle state is dropped. */
static void finish(struct run *R)
{
	bool ok = !R->broken && PQstatus(R->conn) == CONNECTION_OK;

	R->deadline = now_ms() + QC_GRACE_MS;
	R->may_cancel = false;
	/* A cancel we sent may still be on its way and would hit ROLLBACK or
	 * DISCARD: if either fails the connection goes, which is the safe end. */
	if (ok && PQtransactionStatus(R->conn) != PQTRANS_IDLE)
		ok = run_ours(R, "ROLLBACK", NULL) == 0;
	/* Session advisory locks survive ROLLBACK; DISCARD ALL releases them
	 * and resets everything else a statement could leave behind. */
	if (ok)
		ok = run_ours(R, "DISCARD ALL", NULL) == 0;
	if (!ok || PQtransactionStatus(R->conn) != PQTRANS_IDLE)
		pg_disconnect(R->pg);
}

/* --------------------------------------------------------------- public -- */

int qc_run(struct pg *pg, const char *sql, long timeout_ms, struct json_object *reply,
    char *msg, size_t msglen)
{
	struct run R = {
		.pg = pg, .timeout_ms = timeout_ms, .may_cancel = true, .msg = msg, .msglen = msglen,
	};
	PGresult *desc = NULL;
	struct json_object *rows = NULL, *meta = NULL, *cols = NULL;
	char **names = NULL;
	int ncols = 0, rc;
	bool truncated = false;
	double t0, t1;

	msg[0] = '\0';
	if (pg_connect(pg) != PG_OK || (R.conn = pg_conn(pg)) == NULL)
		return QC_EUNAVAIL;
	PQsetNoticeProcessor(R.conn, quiet, NULL);
	R.deadline = now_ms() + timeout_ms + QC_GRACE_MS;
	rc = begin(&R);
	if (rc == QC_EUNAVAIL && PQstatus(R.conn) != CONNECTION_OK) {
		/* Found dead while idle (a server restart): nothing was sent
		 * that could matter, so once more on a new connection. */
		pg_disconnect(pg);
		R.broken = false;
		if (pg_connect(pg) != PG_OK || (R.conn = pg_conn(pg)) == NULL)
			return QC_EUNAVAIL;
		PQsetNoticeProcessor(R.conn, quiet, NULL);
		rc = begin(&R);
	}
	if (rc != QC_OK)
		goto out;
	t0 = now_ms_f();
	if ((rc = prepare(&R, sql, &desc)) != QC_OK)
		goto out;
	ncols = PQnfields(desc);
	if ((names = column_names(desc)) == NULL || (rows = json_object_new_array()) == NULL) {
		rc = QC_ENOMEM;
		goto out;
	}
	if ((rc = execute(&R, desc, names, rows, &truncated)) != QC_OK)
		goto out;
	t1 = now_ms_f();
	if ((cols = columns_meta(desc, names)) == NULL || (meta = json_object_new_object()) == NULL) {
		rc = QC_ENOMEM;
		goto out;
	}
	rc = jsonx_add(meta, "columns", cols) < 0 ? QC_ENOMEM : QC_OK;
	cols = NULL;   /* meta's now, or freed */
	if (rc != QC_OK)
		goto out;
	if (jsonx_add_bool(meta, "truncated", truncated) < 0 ||
	    jsonx_add_double(meta, "duration_ms", t1 - t0) < 0 ||
	    jsonx_add_int(reply, "rowCount", (long long)json_object_array_length(rows)) < 0) {
		rc = QC_ENOMEM;
		goto out;
	}
	/* jsonx_add takes its value whatever happens. */
	rc = jsonx_add(reply, "rows", rows) < 0 ? QC_ENOMEM : QC_OK;
	rows = NULL;
	if (rc == QC_OK && jsonx_add(reply, "meta", meta) < 0)
		rc = QC_ENOMEM;
	else if (rc != QC_OK)
		json_object_put(meta);
	meta = NULL;
out:
	finish(&R);
	json_object_put(cols);
	json_object_put(meta);
	json_object_put(rows);
	free_names(names, ncols);
	PQclear(desc);
	return rc;
}
