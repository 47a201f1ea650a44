#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "jsonx.h"
#include "pg.h"

static const struct pg_stmt st_insert_user = { "users_insert",
	"INSERT INTO users (email, name, role, tier) VALUES ($1, $2, coalesce($3, 'user'), coalesce($4, 'free')) "
	"RETURNING id", 4, false };
static const struct pg_stmt st_insert_account = { "users_insert_account",
	"INSERT INTO accounts (user_id, provider_id, account_id, password_hash) "
	"VALUES ($1, 'credential', $2, $3)", 3, false };
static const struct pg_stmt st_find_email = { "users_find_email",
	"SELECT id FROM users WHERE lower(email) = lower($1)", 1, true };

bool users_email_valid(const char *e)
{
	const char *at = strchr(e, '@');
	size_t len = strlen(e);

	/* Deliberately loose: one '@' with text on both sides, no spaces or
	 * controls, a dot in the domain. Mail delivery is the real test. */
	if (len < 3 || len > USERS_EMAIL_MAX || at == NULL || at == e || strchr(at + 1, '@') ||
	    at[1] == '\0' || strchr(at + 1, '.') == NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)e; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

bool users_role_valid(const char *r)
{
	return r && (!strcmp(r, "admin") || !strcmp(r, "user") || !strcmp(r, "readonly"));
}

bool users_tier_valid(const char *t)
{
	return t && (!strcmp(t, "anonymous") || !strcmp(t, "free") || !strcmp(t, "pro") || !strcmp(t, "admin"));
}

int users_create(struct pg *pg, const char *email, const char *name, const char *role,
    const char *tier, const char *password, char id_out[static 40])
{
	char hash[crypto_pwhash_STRBYTES];
	PGresult *r = NULL;
	int err;

	if (password && auth_password_hash(password, hash) < 0)
		return PG_EBUG;
	if ((err = pg_begin(pg)) != PG_OK)
		return err;
	{
		const char *p[] = { email, name, role, tier };
		r = pg_query(pg, &st_insert_user, p, &err);
	}
	if (r == NULL)
		goto fail;
	snprintf(id_out, 40, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (password) {
		const char *p[] = { id_out, id_out, hash };
		r = pg_query(pg, &st_insert_account, p, &err);
		if (r == NULL)
			goto fail;
		PQclear(r);
	}
	sodium_memzero(hash, sizeof hash);
	return pg_commit(pg);
fail:
	sodium_memzero(hash, sizeof hash);
	pg_rollback(pg);
	return err;
}

int users_find_by_email(struct pg *pg, const char *email, char id_out[static 40])
{
	const char *p[] = { email };
	int err, found;
	PGresult *r = pg_query(pg, &st_find_email, p, &err);

	if (r == NULL)
		return err;
	found = PQntuples(r) > 0;
	if (found)
		snprintf(id_out, 40, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return found;
}

static const char *val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

struct json_object *users_to_json(const PGresult *r, int row)
{
	struct json_object *u = json_object_new_object();

	if (u == NULL)
		return NULL;
	if (jsonx_add_str(u, "id", val(r, row, 0)) < 0 ||
	    jsonx_add_str(u, "email", val(r, row, 1)) < 0 ||
	    jsonx_add_str(u, "name", val(r, row, 2)) < 0 ||
	    jsonx_add_bool(u, "emailVerified", PQgetvalue(r, row, 3)[0] == 't') < 0 ||
	    jsonx_add_str(u, "image", val(r, row, 4)) < 0 ||
	    jsonx_add_str(u, "tier", val(r, row, 5)) < 0 ||
	    jsonx_add_str(u, "role", val(r, row, 6)) < 0 ||
	    jsonx_add_bool(u, "banned", PQgetvalue(r, row, 7)[0] == 't') < 0 ||
	    jsonx_add_str(u, "banReason", val(r, row, 8)) < 0 ||
	    jsonx_add_str(u, "banExpires", val(r, row, 9)) < 0 ||
	    jsonx_add_str(u, "createdAt", val(r, row, 10)) < 0 ||
	    jsonx_add_str(u, "updatedAt", val(r, row, 11)) < 0) {
		json_object_put(u);
		return NULL;
	}
	return u;
}

static const struct pg_stmt st_signin = { "users_signin",
	"SELECT " USERS_COLUMNS ", a.password_hash, "
	"  (u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now())) "
	"FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential' "
	"WHERE lower(u.email) = lower($1)", 1, false };
static const struct pg_stmt st_get = { "users_get",
	"SELECT " USERS_COLUMNS " FROM users u WHERE u.id = $1", 1, true };

int users_signin_lookup(struct pg *pg, const char *email, PGresult **r)
{
	const char *p[] = { email };
	int err;

	*r = pg_query(pg, &st_signin, p, &err);
	return err;
}

int users_get(struct pg *pg, const char *id, PGresult **r)
{
	const char *p[] = { id };
	int err;

	*r = pg_query(pg, &st_get, p, &err);
	return err;
}

/* strpos, not LIKE: '%' and '_' in a search are plain characters. */
#define USERS_FILTER \
	"WHERE ($1::text IS NULL OR u.tier = $1) AND ($2::text IS NULL OR u.role = $2) " \
	"  AND ($3::text IS NULL OR strpos(lower(u.email), lower($3)) > 0 " \
	"       OR strpos(lower(coalesce(u.name, '')), lower($3)) > 0) "
static const struct pg_stmt st_list = { "users_list",
	"SELECT " USERS_COLUMNS " FROM users u " USERS_FILTER
	"ORDER BY u.created_at DESC, u.id DESC LIMIT $4 OFFSET $5", 5, true };
static const struct pg_stmt st_count = { "users_count",
	"SELECT count(*) FROM users u " USERS_FILTER, 3, true };
static const struct pg_stmt st_admin_lock = { "users_admin_lock",
	"SELECT pg_advisory_xact_lock(hashtext('bloqr-admins'))", 0, false };
#define UNBANNED "NOT (u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now()))"
static const struct pg_stmt st_lock = { "users_lock",
	"SELECT " USERS_COLUMNS ", (u.role = 'admin' AND " UNBANNED ") "
	"FROM users u WHERE u.id = $1 FOR UPDATE", 1, false };
static const struct pg_stmt st_other_admins = { "users_other_admins",
	"SELECT count(*) FROM users u WHERE u.role = 'admin' AND " UNBANNED " AND u.id <> $1", 1, false };
static const struct pg_stmt st_update = { "users_update",
	"UPDATE users u SET tier = coalesce($2, tier), role = coalesce($3, role), updated_at = now() "
	"WHERE u.id = $1 RETURNING " USERS_COLUMNS, 3, false };
static const struct pg_stmt st_del_sessions = { "users_del_sessions",
	"DELETE FROM sessions WHERE user_id = $1", 1, false };
static const struct pg_stmt st_del_tokens = { "users_del_tokens",
	"DELETE FROM api_tokens WHERE user_id = $1", 1, false };
static const struct pg_stmt st_del_accounts = { "users_del_accounts",
	"DELETE FROM accounts WHERE user_id = $1", 1, false };
static const struct pg_stmt st_del_user = { "users_del_user",
	"DELETE FROM users WHERE id = $1", 1, false };
static const struct pg_stmt st_ban = { "users_ban",
	"UPDATE users u SET banned = true, ban_reason = $2, ban_expires = $3::timestamptz, updated_at = now() "
	"WHERE u.id = $1 AND ($3::timestamptz IS NULL OR $3::timestamptz > now()) RETURNING " USERS_COLUMNS,
	3, false };
static const struct pg_stmt st_revoke_sessions = { "users_revoke_sessions",
	"UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", 1, false };
static const struct pg_stmt st_revoke_tokens = { "users_revoke_tokens",
	"UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", 1, false };
static const struct pg_stmt st_unban = { "users_unban",
	"UPDATE users u SET banned = false, ban_reason = NULL, ban_expires = NULL, updated_at = now() "
	"WHERE u.id = $1 RETURNING " USERS_COLUMNS, 1, false };

/* Run a statement whose result is not needed. */
static int run(struct pg *pg, const struct pg_stmt *st, const char *const *p)
{
	int err;
	PGresult *r = pg_query(pg, st, p, &err);

	PQclear(r);
	return err;
}

int users_list(struct pg *pg, const char *tier, const char *role, const char *search,
    long limit, long offset, PGresult **rows, long *total)
{
	char l[24], o[24];
	const char *p[] = { tier, role, search, l, o };

	snprintf(l, sizeof l, "%ld", limit);
	snprintf(o, sizeof o, "%ld", offset);
	return pg_page(pg, &st_count, &st_list, p, rows, total);
}

int users_admin_lock(struct pg *pg) { return run(pg, &st_admin_lock, NULL); }

int users_lock(struct pg *pg, const char *id, PGresult **r)
{
	const char *p[] = { id };
	int err;

	*r = pg_query(pg, &st_lock, p, &err);
	return err;
}

int users_other_admins(struct pg *pg, const char *id, long *n)
{
	const char *p[] = { id };
	int err;
	PGresult *r = pg_query(pg, &st_other_admins, p, &err);

	if (r == NULL)
		return err;
	*n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return PG_OK;
}

int users_update(struct pg *pg, const char *id, const char *tier, const char *role, PGresult **r)
{
	const char *p[] = { id, tier, role };
	int err;

	*r = pg_query(pg, &st_update, p, &err);
	return err;
}

int users_delete(struct pg *pg, const char *id)
{
	const char *p[] = { id };
	int err;

	if ((err = run(pg, &st_del_sessions, p)) != PG_OK || (err = run(pg, &st_del_tokens, p)) != PG_OK ||
	    (err = run(pg, &st_del_accounts, p)) != PG_OK)
		return err;
	return run(pg, &st_del_user, p);
}

int users_ban(struct pg *pg, const char *id, const char *reason, const char *expires, PGresult **r)
{
	const char *p[] = { id, reason, expires };
	int err;

	*r = pg_query(pg, &st_ban, p, &err);
	if (*r == NULL)
		return err;
	if (PQntuples(*r) == 0)
		return PG_OK;   /* expiry not in the future: nothing changed */
	if ((err = run(pg, &st_revoke_sessions, p)) != PG_OK || (err = run(pg, &st_revoke_tokens, p)) != PG_OK) {
		PQclear(*r);
		*r = NULL;
	}
	return err;
}

int users_unban(struct pg *pg, const char *id, PGresult **r)
{
	const char *p[] = { id };
	int err;

	*r = pg_query(pg, &st_unban, p, &err);
	return err;
}
