/* The admin audit log (admin_audit_log): one row per admin mutation,
 * written in the transaction of the change it records. */
#ifndef BLOQR_AUDIT_H
#define BLOQR_AUDIT_H

#include <json.h>

#include "err.h"

struct pg;
struct store;

/* Insert a row for an action of s's actor (its request id and client
 * address); target and details may be NULL. The actor's email is recorded with it, so the row still
 * names them after the user is deleted. Returns a pg_err. Call inside the
 * caller's transaction so the row and the change commit together. */
int audit_write(const struct store *s, const char *action, const char *target, struct json_object *details)
	__attribute__((warn_unused_result));

/* The entries of GET /api/admin/audit, newest first (action NULL = all),
 * as a JSON array of API objects (*items, caller puts it), and the total
 * count. Returns a bloqr_err. */
int audit_list(struct pg *pg, const char *action, long limit, long offset, struct json_object **items,
    long *total) BLOQR_MUSTCHECK;

/* Filters of the dashboard's audit page; NULL fields do not filter. */
struct audit_filter {
	const char *actor_id;       /* a user id */
	const char *actor_email;    /* compared case-insensitively */
	const char *action;
	const char *resource_type;
	const char *from, *to;      /* timestamptz text, both inclusive */
};

/* The dashboard's audit items (CONTRACT §7), newest first, as a JSON
 * array (*items, caller puts it), and the total count. */
int audit_items(struct pg *pg, const struct audit_filter *f, long limit, long offset,
    struct json_object **items, long *total) BLOQR_MUSTCHECK;

#endif
