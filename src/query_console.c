#include "query_console.h"

#include "clock.h"

#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "log.h"
#include "pg.h"
#include "query_text.h"

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
	size_t recv_cap;      /* > 0: a result may take at most this many bytes */
	size_t received;      /* bytes read since the last result */
	bool too_big;         /* a result passed recv_cap: the connection goes */
	char *msg;
	size_t msglen;
};

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
 * deadline passed first, 2 when the result grew past R->recv_cap, -1 when
 * the connection failed. The socket is read only when libpq lacks a whole
 * message: each PQconsumeInput moves the unparsed rest of its buffer, and
 * calling it per row while a fast server fills that buffer costs time
 * quadratic in the rows sent. The bytes read are counted because libpq
 * holds a whole row before handing it over, however large: one value of
 * repeat('x', 500000000) would otherwise cost the worker 500 MB. */
static int wait_ready(struct run *R)
{
	PGconn *conn = R->conn;

	while (PQisBusy(conn)) {
		struct pollfd p;
		long long left;
		int n, pending = 0;

		if ((left = R->deadline - clock_mono_ms()) <= 0)
			return 1;
		p.fd = PQsocket(conn);
		p.events = POLLIN;
		p.revents = 0;
		if (p.fd < 0)
			return -1;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && R->recv_cap > 0 && ioctl(p.fd, FIONREAD, &pending) == 0 && pending > 0) {
			R->received += (size_t)pending;
			if (R->received > R->recv_cap)
				return 2;
		}
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
		int w = wait_ready(R);

		if (w == 0) {
			R->received = 0;
			return PQgetResult(R->conn);
		}
		if (w == 2) {
			/* Only dropping the connection frees what libpq set aside
			 * for the row (and stops the server sending it). */
			R->too_big = true;
			R->broken = true;
			return NULL;
		}
		if (w < 0 || !R->may_cancel || R->timed_out) {
			R->broken = true;
			return NULL;
		}
		/* The server's own statement_timeout should have ended it: it
		 * is stuck somewhere that does not check it. */
		R->timed_out = true;
		send_cancel(R);
		R->deadline = clock_mono_ms() + QC_GRACE_MS;
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

/* Unique names for the result's columns (query_text.c); NULL when out of
 * memory. */
static char **column_names(const PGresult *desc)
{
	int n = PQnfields(desc);
	const char **bases = calloc((size_t)(n > 0 ? n : 1), sizeof *bases);
	char **names;

	if (bases == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
		bases[i] = PQfname(desc, i);
	names = qt_unique_names(bases, n);
	free(bases);
	return names;
}

static void free_names(char **names, int n)
{
	qt_free_names(names, n);
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

/* Volatile functions of pg_catalog the console may call: they read, or
 * wait, and leave nothing behind. Every other volatile function, and
 * anything outside pg_catalog, is refused: advisory locks (they would
 * hold the service's own locks), pg_logical_emit_message (WAL that no
 * rollback takes back), query_to_xml (a statement inside the statement),
 * nextval, set_config, lo_*, pg_notify, and whatever a later PostgreSQL
 * adds. Stable and immutable functions cannot change the database. */
static const char qc_allowed_volatile[] =
	"{clock_timestamp,current_query,gen_random_uuid,pg_blocking_pids,pg_database_size,"
	"pg_indexes_size,pg_is_in_recovery,pg_jit_available,pg_lock_status,pg_relation_size,"
	"pg_safe_snapshot_blocking_pids,pg_sleep,pg_sleep_for,pg_sleep_until,pg_table_size,"
	"pg_total_relation_size,random,timeofday}";
static const char qc_calls_check[] =
	"SELECT string_agg(DISTINCT p.proname, ', ' ORDER BY p.proname) FROM pg_catalog.pg_proc p "
	"WHERE p.proname = ANY ($1::text[]) AND NOT (p.pronamespace = 'pg_catalog'::regnamespace "
	"  AND (p.provolatile <> 'v' OR p.proname = ANY ($2::text[])))";

#define QC_NAMES_MAX 32768     /* bytes of function names checked at most */

struct names_acc {
	char *buf;
	size_t len;
	bool full;
};

static int add_name(void *ctx, const char *name, size_t n)
{
	struct names_acc *a = ctx;

	if (qt_array_add(a->buf, QC_NAMES_MAX, &a->len, name, n) < 0) {
		a->full = true;
		return 1;
	}
	return 0;
}

/* Refuse a statement that would call a function outside the allow-list.
 * Which functions it calls comes from PostgreSQL itself: the plan, with
 * every expression printed (EXPLAIN VERBOSE plans but runs nothing).
 * SHOW calls none; plain EXPLAIN runs nothing; EXPLAIN ANALYZE is
 * refused (it runs the statement). */
static int check_calls(struct run *R, const char *sql)
{
	struct names_acc acc = { NULL, 0, false };
	size_t plan_bytes = 0;
	char word[16], *explain = NULL;
	const char *params[2];
	PGresult *r = NULL;
	int rc = QC_OK;
	size_t n;

	qt_first_word(sql, word, sizeof word);
	if (strcmp(word, "show") == 0)
		return QC_OK;
	if (strcmp(word, "explain") == 0)
		return qt_has_word(sql, "analyze") || qt_has_word(sql, "analyse")
		    ? refuse(R, "EXPLAIN ANALYZE runs the statement; only EXPLAIN is available in the console")
		    : QC_OK;
	n = strlen(sql);
	if ((explain = malloc(n + 32)) == NULL || (acc.buf = malloc(QC_NAMES_MAX)) == NULL) {
		rc = QC_ENOMEM;
		goto out;
	}
	snprintf(explain, n + 32, "EXPLAIN (VERBOSE, COSTS OFF) %s", sql);
	/* ... in a savepoint, so that its failure can be undone (below). */
	if (run_ours(R, "SAVEPOINT qc_check", NULL) < 0) {
		rc = QC_EUNAVAIL;
		R->broken = true;
		goto out;
	}
	if (!PQsendQueryParams(R->conn, explain, 0, NULL, NULL, NULL, NULL, 0)) {
		R->broken = true;
		rc = QC_EUNAVAIL;
		goto out;
	}
	/* The plan shows constants folded by the planner: repeat('x', 5e8)
	 * is a 500 MB line of it. */
	R->recv_cap = QC_MAX_BYTES + 64 * 1024;
	R->received = 0;
	r = one_result(R);
	R->recv_cap = 0;
	if (r == NULL || R->timed_out) {
		/* Past our deadline a cancel is on its way, whatever the answer
		 * (a plan that came back anyway): neither the transaction nor
		 * the connection (libpq may hold a huge buffer) is kept. */
		R->broken = true;
		if (R->too_big)
			rc = refuse(R, "The statement's plan is too large to check (over %u MB)", QC_MAX_BYTES >> 20);
		else
			rc = R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
		goto out;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		/* A privilege refused while planning is refused again when the
		 * executor starts, before anything is evaluated; running it lets
		 * the read-only check, which comes first there, give its answer. */
		if (state && strcmp(state, "42501") == 0)
			rc = run_ours(R, "ROLLBACK TO SAVEPOINT qc_check", NULL) == 0 ? QC_OK : QC_EUNAVAIL;
		else
			rc = from_error(R, r);
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++)
		plan_bytes += (size_t)PQgetlength(r, i, 0);
	if (plan_bytes > QC_MAX_BYTES) {
		/* It came faster than it could be counted (libpq reads all the
		 * socket has in one go): refused all the same, and the
		 * connection, whose buffer grew to hold it, dropped. */
		R->broken = true;
		rc = refuse(R, "The statement's plan is too large to check (over %u MB)", QC_MAX_BYTES >> 20);
		goto out;
	}
	for (int i = 0; i < PQntuples(r) && !acc.full; i++)
		qt_called_functions(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), add_name, &acc);
	if (acc.full || qt_array_end(acc.buf, QC_NAMES_MAX, &acc.len) < 0) {
		rc = refuse(R, "The statement calls too many functions to be checked");
		goto out;
	}
	PQclear(r);
	r = NULL;
	params[0] = acc.buf;
	params[1] = qc_allowed_volatile;
	if (!PQsendQueryParams(R->conn, qc_calls_check, 2, NULL, params, NULL, NULL, 0)) {
		R->broken = true;
		rc = QC_EUNAVAIL;
		goto out;
	}
	if ((r = one_result(R)) == NULL) {
		rc = R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : QC_EUNAVAIL;
		goto out;
	}
	if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
		rc = R->timed_out ? refuse(R, "Query timed out after %ld ms", R->timeout_ms) : from_error(R, r);
		goto out;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		log_error("query console: the function check answered %s", PQresStatus(PQresultStatus(r)));
		rc = QC_EUNAVAIL;
		R->broken = true;
		goto out;
	}
	if (!PQgetisnull(r, 0, 0))
		rc = refuse(R, "The query console may not call %.200s: only functions without side effects "
		    "outside the statement are available", PQgetvalue(r, 0, 0));
out:
	PQclear(r);
	free(acc.buf);
	free(explain);
	return rc;
}

/* Execute in single-row mode, keeping at most QC_MAX_ROWS rows and
 * QC_MAX_BYTES of values; past that, cancel and drop the rest. */
static int execute(struct run *R, const char *sql, const PGresult *desc, char **names,
    struct json_object *rows, bool *truncated)
{
	int ncols = PQnfields(desc), nrows = 0, rc = QC_OK;
	size_t bytes = 0;
	PGresult *r;

	*truncated = false;
	/* A row is never kept past QC_MAX_BYTES of values: one larger than
	 * that (values plus their framing) is cut off as it arrives. */
	R->recv_cap = QC_MAX_BYTES + 64 * 1024 + (size_t)ncols * 16;
	R->received = 0;
	/* Parsed again rather than run as prepared: check_calls used the
	 * unnamed statement since (a named one could outlive the transaction
	 * behind a pooler). Still one statement, no parameters. */
	if (!PQsendQueryParams(R->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) {
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
				/* libpq grew its buffer to hold a row this large and
				 * never shrinks it: only a new connection gives the
				 * memory back. */
				if (row_bytes(r, ncols) > QC_MAX_BYTES / 8)
					R->broken = true;
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
	R->recv_cap = 0;
	if (R->too_big && rc == QC_OK) {
		log_info("query console: a row over %u bytes; result cut there", QC_MAX_BYTES);
		*truncated = true;
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

	R->deadline = clock_mono_ms() + QC_GRACE_MS;
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
	R.deadline = clock_mono_ms() + timeout_ms + QC_GRACE_MS;
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
	t0 = clock_mono_ms_f();
	if ((rc = prepare(&R, sql, &desc)) != QC_OK || (rc = check_calls(&R, sql)) != QC_OK)
		goto out;
	ncols = PQnfields(desc);
	if ((names = column_names(desc)) == NULL || (rows = json_object_new_array()) == NULL) {
		rc = QC_ENOMEM;
		goto out;
	}
	if ((rc = execute(&R, sql, desc, names, rows, &truncated)) != QC_OK)
		goto out;
	t1 = clock_mono_ms_f();
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
