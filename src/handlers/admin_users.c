/* Admin user management: list, get, patch, delete, ban, unban. Always
 * against PostgreSQL, never the cache; users.c carries out each change
 * (transaction, last-admin guard, audit row, cache hand-off). */
#include <stdio.h>
#include <string.h>

#include "handlers/handlers.h"
#include "jsonx.h"
#include "text.h"
#include "users.h"
#include "worker.h"

/* {success, user} from u. */
static void reply_user(struct http_response *res, const struct user *u)
{
	struct json_object *o = h_success(), *j = users_to_json(u);

	if (o == NULL || j == NULL) {
		json_object_put(j);
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	if (jsonx_add(o, "user", j) < 0) {
		json_object_put(o);
		http_error(res, 500, "Out of memory");
		return;
	}
	h_json(res, 200, o);
}

/* A failed change: 404 for an unknown user, 409 for the last admin. */
static void change_error(struct http_response *res, int rc, const char *last_admin)
{
	if (rc == BLOQR_ENOTFOUND)
		http_error(res, 404, "User not found");
	else if (rc == BLOQR_ECONFLICT)
		http_error(res, 409, "%s", last_admin);
	else
		h_error(res, rc);
}

void h_users_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *tier, *role, *search, *after;
	long limit, offset, total = 0;
	struct json_object *arr, *o;
	struct user *users = NULL;
	size_t n = 0;
	int rc;

	(void)m;
	if (h_query_long(req, res, "limit", 50, 1, 100, &limit) < 0 ||
	    h_query_long(req, res, "offset", 0, 0, 1000000000, &offset) < 0 ||
	    h_query_str(req, res, "tier", 32, &tier) < 0 ||
	    h_query_str(req, res, "role", 32, &role) < 0 ||
	    h_query_str(req, res, "search", USERS_EMAIL_MAX, &search) < 0 ||
	    h_query_str(req, res, "after", 36, &after) < 0)
		return;
	/* Keyset paging (docs/ARCHITECTURE.md, Users list): the id of the
	 * last user of the previous page. */
	if (after && !text_uuid_valid(after)) {
		http_error(res, 400, "Query parameter 'after' must be a user id");
		return;
	}
	if (tier && !users_tier_valid(tier)) {
		http_error(res, 400, "Query parameter 'tier' must be one of anonymous, free, pro, admin");
		return;
	}
	if (role && !users_role_valid(role)) {
		http_error(res, 400, "Query parameter 'role' must be one of admin, user, readonly");
		return;
	}
	if ((rc = users_list(app->pg, tier, role, search, after, limit, offset, &users, &n, &total)) != BLOQR_OK) {
		if (rc == BLOQR_EINPUT)
			http_error(res, 400, "Query parameter 'after' names no user");
		else
			h_error(res, rc);
		return;
	}
	arr = json_object_new_array();
	for (size_t i = 0; arr && i < n; i++) {
		if ((o = users_to_json(&users[i])) == NULL || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			json_object_put(arr);
			arr = NULL;
		}
	}
	users_free_all(users, n);
	h_reply_list(res, "users", arr, total, limit, offset);
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
	struct user u;
	int rc;

	(void)req;
	if (id == NULL)
		return;
	if ((rc = users_get(app->pg, id, &u)) != BLOQR_OK) {
		change_error(res, rc, "");
		return;
	}
	reply_user(res, &u);
	users_free(&u);
}

void h_users_patch(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *id = user_id(m, res), *tier = NULL, *role = NULL;
	struct json_object *body = NULL;
	struct user u;
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
	if ((rc = users_update(&st, id, tier, role, &u)) != BLOQR_OK) {
		change_error(res, rc, "Cannot demote the last unbanned admin");
		goto out;
	}
	reply_user(res, &u);
	users_free(&u);
out:
	json_object_put(body);
}

void h_users_delete(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *id = user_id(m, res);
	int rc;

	if (id == NULL)
		return;
	if ((rc = users_delete(&st, id)) != BLOQR_OK)
		change_error(res, rc, "Cannot delete the last unbanned admin");
	else
		h_message(res, "User deleted");
}

void h_users_ban(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *id = user_id(m, res), *reason = NULL, *expires = NULL;
	struct json_object *body = NULL;
	bool past;
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
	rc = users_ban(&st, id, reason, expires, &past);
	if (rc == BLOQR_EINPUT)
		http_error(res, 400, past ? "Field 'expires' must be in the future" :
		    "Field 'expires' must be a valid ISO-8601 time");
	else if (rc != BLOQR_OK)
		change_error(res, rc, "Cannot ban the last unbanned admin");
	else
		h_message(res, "User banned");
out:
	json_object_put(body);
}

void h_users_unban(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *id = user_id(m, res);
	int rc;

	if (id == NULL)
		return;
	if ((rc = users_unban(&st, id)) != BLOQR_OK)
		change_error(res, rc, "");
	else
		h_message(res, "User unbanned");
}
