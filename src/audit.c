#include "audit.h"

#include <stdio.h>
#include <stdlib.h>

#include "jsonx.h"
#include "pg.h"

static const struct pg_stmt st_insert = { "audit_insert",
	"INSERT INTO admin_audit_log (actor_id, action, target, request_id, details) "
	"VALUES ($1, $2, $3, $4, $5::jsonb)", 5, false };
static const struct pg_stmt st_list = { "audit_list",
	"SELECT id, actor_id, action, target, "
	"  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), request_id, details "
	"FROM admin_audit_log WHERE ($1::text IS NULL OR action = $1) "
	"ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3", 3, true };
static const struct pg_stmt st_count = { "audit_count",
	"SELECT count(*) FROM admin_audit_log WHERE ($1::text IS NULL OR action = $1)", 1, true };

int audit_write(struct pg *pg, const char *actor_id, const char *action, const char *target,
    const char *request_id, struct json_object *details)
{
	const char *p[] = { actor_id, action, target, request_id,
		details ? jsonx_dump(details, NULL) : NULL };
	int err;
	PGresult *r = pg_query(pg, &st_insert, p, &err);

	PQclear(r);
	return err;
}

int audit_list(struct pg *pg, const char *action, long limit, long offset, PGresult **rows, long *total)
{
	char l[24], o[24];
	const char *p[] = { action, l, o };

	snprintf(l, sizeof l, "%ld", limit);
	snprintf(o, sizeof o, "%ld", offset);
	return pg_page(pg, &st_count, &st_list, p, rows, total);
}

static const char *val(const PGresult *r, int i, int c)
{
	return PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
}

struct json_object *audit_to_json(const PGresult *r, int i)
{
	struct json_object *o = json_object_new_object(), *details = NULL;

	if (o == NULL)
		return NULL;
	if (val(r, i, 6))
		details = json_tokener_parse(val(r, i, 6));   /* our own jsonb: trusted */
	if (jsonx_add_int(o, "id", atoll(PQgetvalue(r, i, 0))) < 0 ||
	    jsonx_add_str(o, "actorId", val(r, i, 1)) < 0 ||
	    jsonx_add_str(o, "action", val(r, i, 2)) < 0 ||
	    jsonx_add_str(o, "target", val(r, i, 3)) < 0 ||
	    jsonx_add_str(o, "createdAt", val(r, i, 4)) < 0 ||
	    jsonx_add_str(o, "requestId", val(r, i, 5)) < 0 ||
	    jsonx_add(o, "details", details) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}
