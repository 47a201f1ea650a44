/* The admin audit log (admin_audit_log): one row per admin mutation,
 * written in the transaction of the change it records. */
#ifndef BLOQR_AUDIT_H
#define BLOQR_AUDIT_H

#include <json.h>
#include <libpq-fe.h>

struct pg;

/* Insert a row; details may be NULL. Returns a pg_err. Call inside the
 * caller's transaction so the row and the change commit together. */
int audit_write(struct pg *pg, const char *actor_id, const char *action, const char *target,
    const char *request_id, struct json_object *details);

/* Rows for GET /api/admin/audit, newest first (action NULL = all), and the
 * total count. On success *rows is set (caller PQclears it). */
int audit_list(struct pg *pg, const char *action, long limit, long offset, PGresult **rows, long *total);

/* The API object for row i of audit_list's result. */
struct json_object *audit_to_json(const PGresult *r, int i);

#endif
