/* Admin user management: list, get, patch, delete, ban, unban. Always
 * against PostgreSQL, never the cache; every change is audited in its own
 * transaction, and the last unbanned admin is kept. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "pg.h"
#include "text.h"
#include "users.h"
#include "worker.h"

/* {success, user} from row 0 of r (USERS_COLUMNS first). */
static void reply_user(struct http_response *res, const PGresult *r)
{
	struct json_object *o = h_success(), *u = users_to_json(r, 0);

	if (o == NULL || u == NULL) {
		json_object_put(u);
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	if (jsonx_add(o, "user", u) < 0) {
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	h_json(res, 200, o);
}

void h_users_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *tier, *role, *search;
	long limit, offset, total = 0;
	PGresult *r = NULL;
	int rc;

	(void)m;
	if (h_query_long(req, res, "limit", 50, 1, 100, &limit) < 0 ||
	    h_query_long(req, res, "offset", 0, 0, 1000000000, &offset) < 0 ||
	    h_query_str(req, res, "tier", 32, &tier) < 0 ||
	    h_query_str(req, res, "role", 32, &role) < 0 ||
	    h_query_str(req, res, "search", USERS_EMAIL_MAX, &search) < 0)
		return;
	if (tier && !users_tier_valid(tier)) {
		http_error(res, 400, "Query parameter 'tier' must be one of anonymous, free, pro, admin");
		return;
	}
	if (role && !users_role_valid(role)) {
		http_error(res, 400, "Query parameter 'role' must be one of admin, user, readonly");
		return;
	}
	if ((rc = users_list(app->pg, tier, role, search, limit, offset, &r, &total)) != PG_OK) {
		h_pg_error(res, rc);
		return;
	}
	h_reply_page(res, r, "users", users_to_json, total, limit, offset);
	PQclear(r);
}

/* The {id} of the path, or NULL with a 404 set: a malformed id names no user. */
static const char *user_id(const struct route_match *m, struct http_response *res)
{
	if (!text_uuid_valid(m->params[0])) {
		http_error(res, 404, "User not found");
		return NULL;
	}
	return m->params[0];
}

void h_users_get(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *id = user_id(m, res);
	PGresult *r = NULL;
	int rc;

	(void)req;
	if (id == NULL)
		return;
	if ((rc = users_get(app->pg, id, &r)) != PG_OK) {
		h_pg_error(res, rc);
		return;
	}
	if (PQntuples(r) == 0)
		http_error(res, 404, "User not found");
	else
		reply_user(res, r);
	PQclear(r);
}

/* Begin, take the admin lock, lock the target row. On success *r holds the
 * row and *last_admin says whether it is the only unbanned admin; else the
 * response is set and the transaction rolled back. */
static int begin_on_user(struct app *app, const char *id, struct http_response *res,
    PGresult **r, bool *last_admin)
{
	long others = 1;
	int rc;

	*r = NULL;
	*last_admin = false;
	if ((rc = pg_begin(app->pg)) != PG_OK || (rc = users_admin_lock(app->pg)) != PG_OK ||
	    (rc = users_lock(app->pg, id, r)) != PG_OK)
		goto fail;
	if (PQntuples(*r) == 0) {
		pg_rollback(app->pg);
		PQclear(*r);
		*r = NULL;
		http_error(res, 404, "User not found");
		return -1;
	}
	if (PQgetvalue(*r, 0, USERS_NCOLUMNS)[0] == 't') {
		if ((rc = users_other_admins(app->pg, id, &others)) != PG_OK)
			goto fail;
		*last_admin = others == 0;
	}
	return 0;
fail:
	PQclear(*r);
	*r = NULL;
	pg_rollback(app->pg);
	h_pg_error(res, rc);
	return -1;
}

/* Audit, commit, answer. Takes details. */
static void finish(struct app *app, struct http_request *req, struct http_response *res,
    const char *action, const char *id, struct json_object *details, const PGresult *user, const char *msg)
{
	int rc = audit_write(app->pg, app->who.user_id, action, id, req->request_id, req->remote_addr, details);

	json_object_put(details);
	if (rc != PG_OK || (rc = pg_commit(app->pg)) != PG_OK) {
		pg_rollback(app->pg);
		h_pg_error(res, rc);
		return;
	}
	/* The user's role, ban or existence changed: this host forgets its
	 * cached credentials now (the others when the NOTIFY reaches them). */
	cache_deleted(app->cache, CACHE_CREDENTIALS, id);
	if (user)
		reply_user(res, user);
	else
		h_message(res, msg);
}

void h_users_patch(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *id = user_id(m, res), *tier = NULL, *role = NULL;
	struct json_object *body = NULL, *details;
	PGresult *cur = NULL, *upd = NULL;
	bool last_admin;
	char err[256];
	int rc;

	if (id == NULL || (body = h_body_object(req, res)) == NULL)
		return;
	if (jsonx_get_string(body, "tier", 32, &tier, err, sizeof err) < 0 ||
	    jsonx_get_string(body, "role", 32, &role, err, sizeof err) < 0) {
		http_error(res, 400, "%s", err);
		goto out;
	}
	if (tier == NULL && role == NULL) {
		http_error(res, 400, "Give at least one of the fields 'tier' and 'role'");
		goto out;
	}
	if (tier && !users_tier_valid(tier)) {
		http_error(res, 400, "Field 'tier' must be one of anonymous, free, pro, admin");
		goto out;
	}
	if (role && !users_role_valid(role)) {
		http_error(res, 400, "Field 'role' must be one of admin, user, readonly");
		goto out;
	}
	if (begin_on_user(app, id, res, &cur, &last_admin) < 0)
		goto out;
	if (last_admin && role && strcmp(role, "admin") != 0) {
		pg_rollback(app->pg);
		http_error(res, 409, "Cannot demote the last unbanned admin");
		goto out;
	}
	if ((rc = users_update(app->pg, id, tier, role, &upd)) != PG_OK) {
		pg_rollback(app->pg);
		h_pg_error(res, rc);
		goto out;
	}
	details = json_object_new_object();
	if (details) {
		jsonx_add_str(details, "tierBefore", PQgetvalue(cur, 0, 5));
		jsonx_add_str(details, "roleBefore", PQgetvalue(cur, 0, 6));
		jsonx_add_str(details, "tier", PQgetvalue(upd, 0, 5));
		jsonx_add_str(details, "role", PQgetvalue(upd, 0, 6));
	}
	finish(app, req, res, "user.update", id, details, upd, NULL);
out:
	PQclear(cur);
	PQclear(upd);
	json_object_put(body);
}

void h_users_delete(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *id = user_id(m, res);
	struct json_object *details;
	PGresult *cur = NULL;
	bool last_admin;
	int rc;

	if (id == NULL || begin_on_user(app, id, res, &cur, &last_admin) < 0)
		return;
	if (last_admin) {
		pg_rollback(app->pg);
		http_error(res, 409, "Cannot delete the last unbanned admin");
		goto out;
	}
	if ((rc = users_delete(app->pg, id)) != PG_OK) {
		pg_rollback(app->pg);
		h_pg_error(res, rc);
		goto out;
	}
	details = json_object_new_object();
	if (details)
		jsonx_add_str(details, "email", PQgetvalue(cur, 0, 1));
	finish(app, req, res, "user.delete", id, details, NULL, "User deleted");
out:
	PQclear(cur);
}

void h_users_ban(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *id = user_id(m, res), *reason = NULL, *expires = NULL;
	struct json_object *body = NULL, *details;
	PGresult *cur = NULL, *upd = NULL;
	bool last_admin;
	char err[256];
	int rc;

	if (id == NULL)
		return;
	/* The body is optional; when given it must be a valid object. */
	if (req->body_len > 0) {
		if ((body = h_body_object(req, res)) == NULL)
			return;
		if (jsonx_get_string(body, "reason", 4 * USERS_BAN_REASON_MAX, &reason, err, sizeof err) < 0 ||
		    jsonx_get_string(body, "expires", 64, &expires, err, sizeof err) < 0) {
			http_error(res, 400, "%s", err);
			goto out;
		}
		if (reason && text_utf8_len(reason) > USERS_BAN_REASON_MAX) {
			http_error(res, 400, "Field 'reason' must be at most %d characters", USERS_BAN_REASON_MAX);
			goto out;
		}
		if (expires && !text_iso_time_valid(expires)) {
			http_error(res, 400, "Field 'expires' must be an ISO-8601 time such as 2026-12-31T00:00:00Z");
			goto out;
		}
	}
	if (begin_on_user(app, id, res, &cur, &last_admin) < 0)
		goto out;
	if (last_admin) {
		pg_rollback(app->pg);
		http_error(res, 409, "Cannot ban the last unbanned admin");
		goto out;
	}
	rc = users_ban(app->pg, id, reason, expires, &upd);
	if (rc != PG_OK) {
		pg_rollback(app->pg);
		if (rc == PG_EINPUT)
			http_error(res, 400, "Field 'expires' must be a valid ISO-8601 time");
		else
			h_pg_error(res, rc);
		goto out;
	}
	if (PQntuples(upd) == 0) {
		pg_rollback(app->pg);
		http_error(res, 400, "Field 'expires' must be in the future");
		goto out;
	}
	details = json_object_new_object();
	if (details) {
		jsonx_add_str(details, "reason", reason);
		jsonx_add_str(details, "expires", PQgetisnull(upd, 0, 9) ? NULL : PQgetvalue(upd, 0, 9));
	}
	finish(app, req, res, "user.ban", id, details, NULL, "User banned");
out:
	PQclear(cur);
	PQclear(upd);
	json_object_put(body);
}

void h_users_unban(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *id = user_id(m, res);
	PGresult *cur = NULL, *upd = NULL;
	bool last_admin;
	int rc;

	if (id == NULL || begin_on_user(app, id, res, &cur, &last_admin) < 0)
		return;
	if ((rc = users_unban(app->pg, id, &upd)) != PG_OK) {
		pg_rollback(app->pg);
		h_pg_error(res, rc);
		goto out;
	}
	finish(app, req, res, "user.unban", id, NULL, NULL, "User unbanned");
out:
	PQclear(cur);
	PQclear(upd);
}
