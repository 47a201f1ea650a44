#include "audit.h"

#include <stdio.h>
#include <stdlib.h>

#include "jsonx.h"
#include "pg.h"
#include "store.h"

static const struct pg_stmt st_insert = { "audit_insert",
	"INSERT INTO admin_audit_log (actor_id, actor_email, action, target, request_id, ip_address, details) "
	"VALUES ($1, (SELECT email FROM users WHERE id = $1::uuid), $2, $3, $4, $5, $6::jsonb)", 6, false };
static const struct pg_stmt st_list = { "audit_list",
	"SELECT id, actor_id, action, target, "
	"  " PG_ISO_TIME("created_at") ", request_id, details "
	"FROM admin_audit_log WHERE ($1::text IS NULL OR action = $1) "
	"ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3", 3, true };
static const struct pg_stmt st_count = { "audit_count",
	"SELECT count(*) FROM admin_audit_log WHERE ($1::text IS NULL OR action = $1)", 1, true };

int audit_write(const struct store *s, const char *action, const char *target, struct json_object *details)
{
	const char *p[] = { s->actor_id && s->actor_id[0] ? s->actor_id : NULL, action, target, s->request_id,
		s->ip && s->ip[0] ? s->ip : NULL, details ? jsonx_dump(details, NULL) : NULL };
	int err;
	PGresult *r = pg_query(s->pg, &st_insert, p, &err);

	PQclear(r);
	return err;
}

/* A page of rows as a JSON array of fn's objects. */
static int page(struct pg *pg, const struct pg_stmt *count, const struct pg_stmt *list, const char *const *p,
    struct json_object *(*fn)(const PGresult *, int), struct json_object **items, long *total)
{
	PGresult *r = NULL;
	int err;

	*items = NULL;
	if ((err = pg_page(pg, count, list, p, &r, total)) != BLOQR_OK)
		return err;
	if ((*items = json_object_new_array()) == NULL)
		goto oom;
	for (int i = 0; i < PQntuples(r); i++) {
		struct json_object *e = fn(r, i);
		if (e == NULL || json_object_array_add(*items, e) < 0) {
			json_object_put(e);
			goto oom;
		}
	}
	PQclear(r);
	return BLOQR_OK;
oom:
	json_object_put(*items);
	*items = NULL;
	PQclear(r);
	return BLOQR_ENOMEM;
}

static struct json_object *audit_to_json(const PGresult *r, int i);
static struct json_object *audit_item_to_json(const PGresult *r, int i);

int audit_list(struct pg *pg, const char *action, long limit, long offset, struct json_object **items,
    long *total)
{
	char l[24], o[24];
	const char *p[] = { action, l, o };

	snprintf(l, sizeof l, "%ld", limit);
	snprintf(o, sizeof o, "%ld", offset);
	return page(pg, &st_count, &st_list, p, audit_to_json, items, total);
}

static const char *val(const PGresult *r, int i, int c)
{
	return PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
}

static struct json_object *audit_to_json(const PGresult *r, int i)
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

/* The dashboard's view of a row. resource_type is the action's first word
 * (a generated column, indexed); resource_id the row's target; old and new
 * values come from the details each action records (docs/DASHBOARD.md has
 * the table). Only changes that committed are logged, so status is always
 * "success". */
#define AUDIT_ITEM_WHERE \
	"WHERE ($1::uuid IS NULL OR actor_id = $1::uuid) " \
	"  AND ($2::text IS NULL OR lower(actor_email) = lower($2)) " \
	"  AND ($3::text IS NULL OR action = $3) " \
	"  AND ($4::text IS NULL OR resource_type = $4) " \
	"  AND ($5::timestamptz IS NULL OR created_at >= $5::timestamptz) " \
	"  AND ($6::timestamptz IS NULL OR created_at <= $6::timestamptz) "
static const struct pg_stmt st_items = { "audit_items",
	"SELECT id, actor_id, actor_email, action, resource_type, target, "
	"  CASE action WHEN 'user.update' THEN jsonb_build_object('tier', details->'tierBefore', "
	"                                                         'role', details->'roleBefore') "
	"              WHEN 'user.delete' THEN details END, "
	"  CASE action WHEN 'user.update' THEN jsonb_build_object('tier', details->'tier', 'role', details->'role') "
	"              WHEN 'user.delete' THEN NULL "
	"              WHEN 'user.ban' THEN jsonb_build_object('banned', true) || coalesce(details, '{}') "
	"              WHEN 'user.unban' THEN jsonb_build_object('banned', false) || coalesce(details, '{}') "
	"              ELSE details END, "
	"  ip_address, 'success', " PG_ISO_TIME("created_at") " "
	"FROM admin_audit_log " AUDIT_ITEM_WHERE
	"ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8", 8, true };
static const struct pg_stmt st_items_count = { "audit_items_count",
	"SELECT count(*) FROM admin_audit_log " AUDIT_ITEM_WHERE, 6, true };

int audit_items(struct pg *pg, const struct audit_filter *f, long limit, long offset,
    struct json_object **items, long *total)
{
	char l[24], o[24];
	const char *p[] = { f->actor_id, f->actor_email, f->action, f->resource_type, f->from, f->to, l, o };

	snprintf(l, sizeof l, "%ld", limit);
	snprintf(o, sizeof o, "%ld", offset);
	return page(pg, &st_items_count, &st_items, p, audit_item_to_json, items, total);
}

static struct json_object *audit_item_to_json(const PGresult *r, int i)
{
	static const char *const text[] = { NULL, "actor_id", "actor_email", "action", "resource_type",
		"resource_id" };
	struct json_object *o = json_object_new_object();

	if (o == NULL || jsonx_add_int(o, "id", atoll(PQgetvalue(r, i, 0))) < 0)
		goto fail;
	for (int c = 1; c <= 5; c++)
		if (jsonx_add_str(o, text[c], val(r, i, c)) < 0)
			goto fail;
	/* our own jsonb: trusted, and NULL stays null */
	if (jsonx_add(o, "old_values", val(r, i, 6) ? json_tokener_parse(val(r, i, 6)) : NULL) < 0 ||
	    jsonx_add(o, "new_values", val(r, i, 7) ? json_tokener_parse(val(r, i, 7)) : NULL) < 0 ||
	    jsonx_add_str(o, "ip_address", val(r, i, 8)) < 0 ||
	    jsonx_add_str(o, "status", val(r, i, 9)) < 0 ||
	    jsonx_add_str(o, "created_at", val(r, i, 10)) < 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}
