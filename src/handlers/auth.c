/* POST /api/auth/sign-in, POST /api/auth/sign-out, GET /api/auth/session,
 * and the dashboard's Better Auth shaped twins (CONTRACT §7):
 * POST /api/auth/sign-in/email and GET /api/auth/get-session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "log.h"
#include "users.h"
#include "worker.h"

static const char bad_credentials[] = "Invalid email or password";

static void set_cookie(struct app *app, struct http_response *res, const char *token, long max_age)
{
	char c[256];

	snprintf(c, sizeof c, AUTH_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s",
	    token, max_age, app->conf->http_cookie_secure ? "; Secure" : "");
	http_header(res, "Set-Cookie", c);
}

/* Both sign-ins; better_auth adds "redirect": false, as the dashboard's
 * client expects of /sign-in/email. */
static void sign_in(struct app *app, struct http_request *req, struct http_response *res, bool better_auth)
{
	const struct store st = h_store(app, req);
	struct json_object *body, *out = NULL, *user = NULL;
	const char *email, *password;
	char err[256], token[AUTH_TOKEN_LEN + 1], retry[24];
	struct user u = { 0 };
	enum auth_signin outcome;
	long retry_after;
	int rc;

	token[0] = '\0';
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if ((rc = jsonx_get_string(body, "email", USERS_EMAIL_MAX, &email, err, sizeof err)) <= 0 ||
	    (rc = jsonx_get_string(body, "password", USERS_PASSWORD_MAX, &password, err, sizeof err)) <= 0) {
		if (rc == 0)
			snprintf(err, sizeof err, "Field '%s' is required", email ? "password" : "email");
		http_error(res, 400, "%s", err);
		goto out;
	}
	if (email[0] == '\0' || password[0] == '\0') {
		http_error(res, 400, "Field '%s' must not be empty", email[0] ? "password" : "email");
		goto out;
	}

	rc = auth_sign_in(&st, email, password, http_param(req, "HTTP_USER_AGENT"), &u, token, &outcome, &retry_after);
	if (rc != BLOQR_OK) {
		h_error(res, rc);
		goto out;
	}
	switch (outcome) {
	case AUTH_SIGNIN_OK:
		break;
	case AUTH_SIGNIN_LOCKED:
		snprintf(retry, sizeof retry, "%ld", retry_after);
		http_error(res, 429, "Too many failed sign-in attempts; try again later");
		http_header(res, "Retry-After", retry);
		goto out;
	case AUTH_SIGNIN_BANNED:
		http_error(res, 403, "This account is banned");
		goto out;
	default:
		http_error(res, 401, bad_credentials);
		goto out;
	}
	out = h_success();
	user = users_to_json(&u);
	if (out == NULL || user == NULL) {
		json_object_put(user);
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		goto out;
	}
	if ((better_auth && jsonx_add_bool(out, "redirect", false) < 0) ||
	    jsonx_add_str(out, "token", token) < 0 || jsonx_add(out, "user", user) < 0) {
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		goto out;
	}
	set_cookie(app, res, token, AUTH_SESSION_TTL_S);
	res->cache_control = "no-store";
	h_json(res, 200, out);
out:
	sodium_memzero(token, sizeof token);
	users_free(&u);
	json_object_put(body);
}

void h_sign_in(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)m;
	sign_in(app, req, res, false);
}

void h_sign_in_email(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)m;
	sign_in(app, req, res, true);
}

void h_sign_out(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	int rc;

	(void)req; (void)m;
	if ((rc = auth_credential_revoke(app->pg, &app->who)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	auth_forget(app->cache, &app->who);
	if (app->who.via == AUTH_VIA_COOKIE || app->who.kind == AUTH_KIND_SESSION)
		set_cookie(app, res, "", 0);
	h_message(res, "Signed out");
}

void h_session(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *out, *user;
	struct user u;
	int rc;

	(void)req; (void)m;
	if ((rc = users_get(app->pg, app->who.user_id, &u)) == BLOQR_ENOTFOUND) {
		http_error(res, 401, "Invalid or expired credentials");
		return;
	}
	if (rc != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	out = h_success();
	user = users_to_json(&u);
	users_free(&u);
	if (out == NULL || user == NULL) {
		json_object_put(user);
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		return;
	}
	if (jsonx_add(out, "user", user) < 0) {
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		return;
	}
	res->cache_control = "no-store";
	h_json(res, 200, out);
}

/* The user object's fields a Better Auth session carries. */
static struct json_object *session_user(struct json_object *full)
{
	static const char *const keep[] = { "id", "email", "name", "emailVerified", "image", "tier", "role" };
	struct json_object *o = json_object_new_object(), *v;

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		if (!json_object_object_get_ex(full, keep[i], &v))
			v = NULL;
		if (jsonx_add(o, keep[i], json_object_get(v)) < 0) {
			json_object_put(o);
			return NULL;
		}
	}
	return o;
}

/* GET /api/auth/get-session: the dashboard asks who it is on every load.
 * Signed out, or credentials that no longer count, is not an error there:
 * 200 with null. The session's token is the one presented (the cookie's
 * or the bearer's), so it is a bearer for this very session and dies with
 * it. A database failure is never passed off as "signed out". */
void h_get_session(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *out = NULL, *full = NULL, *user = NULL, *sess = NULL;
	char created[AUTH_TIME_LEN], expires[AUTH_TIME_LEN];
	const char *tok;
	enum auth_via via;
	struct user u;
	bool found = false;
	int rc;

	(void)m;
	res->cache_control = "no-store";
	switch (auth_resolve(app, req, false, &app->who)) {
	case AUTH_OK:
		break;
	case AUTH_NONE:
	case AUTH_INVALID:
		goto signed_out;
	case AUTH_UNAVAIL:
		http_error(res, 503, "Database unavailable, try again shortly");
		http_header(res, "Retry-After", "5");
		return;
	default:
		http_error(res, 500, "Internal error");
		return;
	}
	if (app->who.banned)
		goto signed_out;
	rc = users_get(app->pg, app->who.user_id, &u);
	if (rc == BLOQR_ENOTFOUND)
		goto signed_out;
	if (rc != BLOQR_OK || (rc = auth_credential_times(app->pg, &app->who, &found, created, expires)) != BLOQR_OK) {
		if (rc != BLOQR_OK)
			users_free(&u);
		h_error(res, rc);
		return;
	}
	if (!found) {
		users_free(&u);
		goto signed_out;
	}
	tok = auth_presented_token(req, &via);
	full = users_to_json(&u);
	users_free(&u);
	if (full == NULL || (user = session_user(full)) == NULL || (out = json_object_new_object()) == NULL ||
	    (sess = json_object_new_object()) == NULL)
		goto oom;
	if (jsonx_add_str(sess, "id", app->who.cred_id) < 0 || jsonx_add_str(sess, "token", tok) < 0 ||
	    jsonx_add_str(sess, "userId", app->who.user_id) < 0 ||
	    jsonx_add_str(sess, "expiresAt", expires[0] ? expires : NULL) < 0 ||
	    jsonx_add_str(sess, "createdAt", created) < 0)
		goto oom;
	if (jsonx_add(out, "user", user) < 0) {
		user = NULL;
		goto oom;
	}
	user = NULL;
	if (jsonx_add(out, "session", sess) < 0) {
		sess = NULL;
		goto oom;
	}
	sess = NULL;
	json_object_put(full);
	h_json(res, 200, out);
	return;
oom:
	json_object_put(sess);
	json_object_put(user);
	json_object_put(full);
	json_object_put(out);
	http_error(res, 500, "Out of memory");
	return;
signed_out:
	res->status = 200;
	buf_reset(&res->body);
	buf_puts(&res->body, "null");
}
