/* The admin audit log (admin_audit_log): one row per admin mutation,
 * written in the transaction of the change it records. */
#ifndef BLOQR_AUDIT_H
#define BLOQR_AUDIT_H

#include <json.h>
#include <libpq-fe.h>

struct pg;

/* Insert a row; target, request_id, ip (the client's address) and details
 * may be NULL. The actor's email is recorded with it, so the row still
 * names them after the user is deleted. Returns a pg_err. Call inside the
 * caller's transaction so the row and the change commit together. */
int audit_write(struct pg *pg, const char *actor_id, const char *action, const char *target,
    const char *request_id, const char *ip, struct json_object *details);

/* Rows for GET /api/admin/audit, newest first (action NULL = all), and the
 * total count. On success *rows is set (caller PQclears it). */
int audit_list(struct pg *pg, const char *action, long limit, long offset, PGresult **rows, long *total);

/* The API object for row i of audit_list's result. */
struct json_object *audit_to_json(const PGresult *r, int i);

/* Filters of the dashboard's audit page; NULL fields do not filter. */
struct audit_filter {
	const char *actor_id;       /* a user id */
	const char *actor_email;    /* compared case-insensitively */
	const char *action;
	const char *resource_type;
	const char *from, *to;      /* timestamptz text, both inclusive */
};

/* Rows for the dashboard's audit page (CONTRACT §7), newest first, and the
 * total count. On success *rows is set (caller PQclears it). */
int audit_items(struct pg *pg, const struct audit_filter *f, long limit, long offset, PGresult **rows,
    long *total) __attribute__((warn_unused_result));

/* The dashboard's object for row i of audit_items's result. */
struct json_object *audit_item_to_json(const PGresult *r, int i);

#endif
