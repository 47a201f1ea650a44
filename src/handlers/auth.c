/* POST /api/auth/sign-in, POST /api/auth/sign-out, GET /api/auth/session. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "log.h"
#include "pg.h"
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

void h_sign_in(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *body, *out = NULL, *user = NULL;
	const char *email, *password, *hash;
	char err[256], token[AUTH_TOKEN_LEN + 1], retry[24];
	PGresult *r = NULL;
	bool locked, ok;
	long retry_after;
	int rc;

	(void)m;
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

	/* One transaction: the per-email lock makes check-verify-record atomic
	 * across workers and hosts. */
	if ((rc = pg_begin(app->pg)) != PG_OK ||
	    (rc = auth_signin_lock(app->pg, email)) != PG_OK ||
	    (rc = auth_attempts_check(app->pg, email, req->remote_addr, &locked, &retry_after)) != PG_OK)
		goto db_fail;
	if (locked) {
		pg_rollback(app->pg);
		snprintf(retry, sizeof retry, "%ld", retry_after);
		http_error(res, 429, "Too many failed sign-in attempts; try again later");
		http_header(res, "Retry-After", retry);
		goto out;
	}
	if ((rc = users_signin_lookup(app->pg, email, &r)) != PG_OK)
		goto db_fail;
	hash = PQntuples(r) == 1 && !PQgetisnull(r, 0, USERS_NCOLUMNS) ? PQgetvalue(r, 0, USERS_NCOLUMNS) : NULL;
	if (hash)
		ok = auth_password_verify(hash, password);
	else {
		auth_password_dummy(password);
		ok = false;
	}
	if (!ok) {
		if ((rc = auth_attempt_record(app->pg, email, req->remote_addr, false)) != PG_OK ||
		    (rc = pg_commit(app->pg)) != PG_OK)
			goto db_fail;
		http_error(res, 401, bad_credentials);
		goto out;
	}
	if (PQgetvalue(r, 0, USERS_NCOLUMNS + 1)[0] == 't') {
		pg_rollback(app->pg);
		http_error(res, 403, "This account is banned");
		goto out;
	}
	rc = auth_credential_create(app->pg, PQgetvalue(r, 0, 0), AUTH_KIND_SESSION, AUTH_SESSION_TTL_S,
	    NULL, req->remote_addr, http_param(req, "HTTP_USER_AGENT"), token);
	if (rc == PG_EINPUT) {
		/* Banned between the lookup and the insert. */
		pg_rollback(app->pg);
		http_error(res, 403, "This account is banned");
		goto out;
	}
	if (rc != PG_OK || (rc = auth_attempt_record(app->pg, email, req->remote_addr, true)) != PG_OK ||
	    (rc = pg_commit(app->pg)) != PG_OK)
		goto db_fail;

	out = h_success();
	user = users_to_json(r, 0);
	if (out == NULL || user == NULL) {
		json_object_put(user);
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		goto out;
	}
	if (jsonx_add_str(out, "token", token) < 0 || jsonx_add(out, "user", user) < 0) {
		json_object_put(out);
		http_error(res, 500, "Out of memory");
		goto out;
	}
	set_cookie(app, res, token, AUTH_SESSION_TTL_S);
	http_header(res, "Cache-Control", "no-store");
	h_json(res, 200, out);
	goto out;
db_fail:
	pg_rollback(app->pg);
	h_pg_error(res, rc);
out:
	sodium_memzero(token, sizeof token);
	PQclear(r);
	json_object_put(body);
}

void h_sign_out(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	int rc;

	(void)req; (void)m;
	if ((rc = auth_credential_revoke(app->pg, &app->who)) != PG_OK) {
		h_pg_error(res, rc);
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
	PGresult *r = NULL;
	int rc;

	(void)req; (void)m;
	if ((rc = users_get(app->pg, app->who.user_id, &r)) != PG_OK) {
		h_pg_error(res, rc);
		return;
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		http_error(res, 401, "Invalid or expired credentials");
		return;
	}
	out = h_success();
	user = users_to_json(r, 0);
	PQclear(r);
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
	http_header(res, "Cache-Control", "no-store");
	h_json(res, 200, out);
}
