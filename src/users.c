#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "jsonx.h"
#include "log.h"
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

/* ---------------------------------------------------------- the object -- */

/* The SELECT list user_from reads, for queries over "users u". */
#define USERS_COLUMNS \
	"u.id, u.email, u.name, u.email_verified, u.image, u.tier, u.role, u.banned, u.ban_reason, " \
	PG_ISO_TIME("u.ban_expires") ", " PG_ISO_TIME("u.created_at") ", " PG_ISO_TIME("u.updated_at") ", " \
	"(u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now()))"
enum { C_ID, C_EMAIL, C_NAME, C_VERIFIED, C_IMAGE, C_TIER, C_ROLE, C_BANNED, C_REASON, C_EXPIRES,
	C_CREATED, C_UPDATED, C_ACTIVE, C_NCOLUMNS };

static const char *val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* A malloc'd copy of column col, or NULL for SQL NULL; -1 when out of memory. */
static int dup_col(const PGresult *r, int row, int col, char **out)
{
	const char *v = val(r, row, col);

	*out = NULL;
	return v && (*out = strdup(v)) == NULL ? -1 : 0;
}

void users_free(struct user *u)
{
	free(u->email);
	free(u->name);
	free(u->image);
	free(u->ban_reason);
	memset(u, 0, sizeof *u);
}

void users_free_all(struct user *users, size_t n)
{
	for (size_t i = 0; i < n; i++)
		users_free(&users[i]);
	free(users);
}

/* *u from row `row` of r, whose first columns are USERS_COLUMNS. */
static int user_from(const PGresult *r, int row, struct user *u)
{
	memset(u, 0, sizeof *u);
	snprintf(u->id, sizeof u->id, "%s", PQgetvalue(r, row, C_ID));
	snprintf(u->tier, sizeof u->tier, "%s", PQgetvalue(r, row, C_TIER));
	snprintf(u->role, sizeof u->role, "%s", PQgetvalue(r, row, C_ROLE));
	snprintf(u->ban_expires, sizeof u->ban_expires, "%s", PQgetvalue(r, row, C_EXPIRES));
	snprintf(u->created_at, sizeof u->created_at, "%s", PQgetvalue(r, row, C_CREATED));
	snprintf(u->updated_at, sizeof u->updated_at, "%s", PQgetvalue(r, row, C_UPDATED));
	u->email_verified = PQgetvalue(r, row, C_VERIFIED)[0] == 't';
	u->banned = PQgetvalue(r, row, C_BANNED)[0] == 't';
	u->ban_active = PQgetvalue(r, row, C_ACTIVE)[0] == 't';
	if (dup_col(r, row, C_EMAIL, &u->email) < 0 || dup_col(r, row, C_NAME, &u->name) < 0 ||
	    dup_col(r, row, C_IMAGE, &u->image) < 0 || dup_col(r, row, C_REASON, &u->ban_reason) < 0) {
		users_free(u);
		return BLOQR_ENOMEM;
	}
	return BLOQR_OK;
}

struct json_object *users_to_json(const struct user *u)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	if (jsonx_add_str(o, "id", u->id) < 0 ||
	    jsonx_add_str(o, "email", u->email) < 0 ||
	    jsonx_add_str(o, "name", u->name) < 0 ||
	    jsonx_add_bool(o, "emailVerified", u->email_verified) < 0 ||
	    jsonx_add_str(o, "image", u->image) < 0 ||
	    jsonx_add_str(o, "tier", u->tier) < 0 ||
	    jsonx_add_str(o, "role", u->role) < 0 ||
	    jsonx_add_bool(o, "banned", u->banned) < 0 ||
	    jsonx_add_str(o, "banReason", u->ban_reason) < 0 ||
	    jsonx_add_str(o, "banExpires", u->ban_expires[0] ? u->ban_expires : NULL) < 0 ||
	    jsonx_add_str(o, "createdAt", u->created_at) < 0 ||
	    jsonx_add_str(o, "updatedAt", u->updated_at) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* ------------------------------------------------------------- reads -- */

static const struct pg_stmt st_signin = { "users_signin",
	"SELECT " USERS_COLUMNS ", a.password_hash "
	"FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential' "
	"WHERE lower(u.email) = lower($1)", 1, false };
static const struct pg_stmt st_get = { "users_get",
	"SELECT " USERS_COLUMNS " FROM users u WHERE u.id = $1", 1, true };

/* Row 0 of a one-user statement into *u; BLOQR_ENOTFOUND for no row. */
static int one_user(struct pg *pg, const struct pg_stmt *st, const char *const *p, struct user *u,
    PGresult **keep)
{
	PGresult *r;
	int err;

	memset(u, 0, sizeof *u);
	if ((r = pg_query(pg, st, p, &err)) == NULL)
		return err;
	err = PQntuples(r) == 0 ? BLOQR_ENOTFOUND : user_from(r, 0, u);
	if (keep && err == BLOQR_OK)
		*keep = r;
	else
		PQclear(r);
	return err;
}

int users_signin_lookup(struct pg *pg, const char *email, struct user *u, char **password_hash)
{
	const char *p[] = { email };
	PGresult *r = NULL;
	int err;

	*password_hash = NULL;
	if ((err = one_user(pg, &st_signin, p, u, &r)) != BLOQR_OK)
		return err;
	if (dup_col(r, 0, C_NCOLUMNS, password_hash) < 0) {
		users_free(u);
		err = BLOQR_ENOMEM;
	}
	PQclear(r);
	return err;
}

int users_get(struct pg *pg, const char *id, struct user *u)
{
	const char *p[] = { id };

	return one_user(pg, &st_get, p, u, NULL);
}

/* strpos, not LIKE: '%' and '_' in a search are plain characters. */
#define USERS_FILTER \
	"WHERE ($1::text IS NULL OR u.tier = $1) AND ($2::text IS NULL OR u.role = $2) " \
	"  AND ($3::text IS NULL OR strpos(lower(u.email), lower($3)) > 0 " \
	"       OR strpos(lower(coalesce(u.name, '')), lower($3)) > 0) "
/* The page's ids first, then only their rows: skipping offset rows reads
 * index entries of users_created_at_id_idx, not offset whole rows. $6, a
 * user's id (keyset paging), starts the page after that user. */
static const struct pg_stmt st_list = { "users_list",
	"WITH page AS (SELECT u.id, u.created_at FROM users u " USERS_FILTER
	"  AND ($6::uuid IS NULL OR (u.created_at, u.id) < "
	"       (SELECT a.created_at, a.id FROM users a WHERE a.id = $6::uuid)) "
	"  ORDER BY u.created_at DESC, u.id DESC LIMIT $4 OFFSET $5) "
	"SELECT " USERS_COLUMNS " FROM page JOIN users u ON u.id = page.id "
	"ORDER BY page.created_at DESC, page.id DESC", 6, true };
static const struct pg_stmt st_count = { "users_count",
	"SELECT count(*) FROM users u " USERS_FILTER, 3, true };

int users_list(struct pg *pg, const char *tier, const char *role, const char *search,
    const char *after, long limit, long offset, struct user **users, size_t *n, long *total)
{
	char l[24], o[24];
	const char *p[] = { tier, role, search, l, o, after };
	PGresult *r = NULL;
	int err;

	*users = NULL;
	*n = 0;
	if (after) {
		/* A cursor naming no user (deleted since) cannot say where the
		 * page starts: refuse it rather than answer an empty page. */
		struct user a;

		if ((err = users_get(pg, after, &a)) != BLOQR_OK)
			return err == BLOQR_ENOTFOUND ? BLOQR_EINPUT : err;
		users_free(&a);
	}
	snprintf(l, sizeof l, "%ld", limit);
	snprintf(o, sizeof o, "%ld", offset);
	if ((err = pg_page(pg, &st_count, &st_list, p, &r, total)) != BLOQR_OK)
		return err;
	if (PQntuples(r) > 0 && (*users = calloc((size_t)PQntuples(r), sizeof **users)) == NULL) {
		PQclear(r);
		return BLOQR_ENOMEM;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		if (user_from(r, i, &(*users)[i]) != BLOQR_OK) {
			users_free_all(*users, *n);
			*users = NULL;
			*n = 0;
			PQclear(r);
			return BLOQR_ENOMEM;
		}
		(*n)++;
	}
	PQclear(r);
	return BLOQR_OK;
}

/* ------------------------------------------------------- admin changes -- */

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

/* Run a statement whose result is not needed; *rows gets its row count. */
static int run(struct pg *pg, const struct pg_stmt *st, const char *const *p, int *rows)
{
	int err;
	PGresult *r = pg_query(pg, st, p, &err);

	if (rows)
		*rows = r ? PQntuples(r) : 0;
	PQclear(r);
	return err;
}

/* A change in progress: begun, the admins' lock taken, the user locked. */
struct change {
	const struct store *s;
	const char *id;
	struct user before;
	bool last_admin;            /* the user is the only unbanned admin */
};

/* Begin, take the admins' lock, lock the user. On BLOQR_OK the
 * transaction is open; otherwise it is rolled back. */
static int change_begin(struct change *c, const struct store *s, const char *id)
{
	const char *p[] = { id };
	PGresult *r = NULL;
	int err, others;

	memset(c, 0, sizeof *c);
	c->s = s;
	c->id = id;
	if ((err = pg_begin(s->pg)) != BLOQR_OK)
		return err;
	if ((err = run(s->pg, &st_admin_lock, NULL, NULL)) != BLOQR_OK ||
	    (err = one_user(s->pg, &st_lock, p, &c->before, &r)) != BLOQR_OK)
		goto fail;
	if (PQgetvalue(r, 0, C_NCOLUMNS)[0] == 't') {
		PGresult *o = pg_query(s->pg, &st_other_admins, p, &err);
		if (o == NULL)
			goto fail;
		others = atoi(PQgetvalue(o, 0, 0));
		PQclear(o);
		c->last_admin = others == 0;
	}
	PQclear(r);
	return BLOQR_OK;
fail:
	PQclear(r);
	users_free(&c->before);
	pg_rollback(s->pg);
	return err;
}

/* Audit (takes details), commit, and forget the user's credentials here.
 * On failure everything is rolled back. */
static int change_commit(struct change *c, const char *action, struct json_object *details)
{
	int err = audit_write(c->s, action, c->id, details);

	json_object_put(details);
	if (err != BLOQR_OK || (err = pg_commit(c->s->pg)) != BLOQR_OK) {
		pg_rollback(c->s->pg);
		return err;
	}
	/* The user's role, ban or existence changed: this host forgets its
	 * cached credentials now (the others when the NOTIFY reaches them). */
	if (cache_deleted(c->s->cache, CACHE_CREDENTIALS, c->id) != BLOQR_OK)
		log_warn("users: this host's cache could not drop a changed user's credentials at once");
	return BLOQR_OK;
}

static int change_abort(struct change *c, int err)
{
	pg_rollback(c->s->pg);
	users_free(&c->before);
	return err;
}

int users_update(const struct store *s, const char *id, const char *tier, const char *role, struct user *out)
{
	const char *p[] = { id, tier, role };
	struct json_object *details;
	struct change c;
	int err;

	memset(out, 0, sizeof *out);
	if ((err = change_begin(&c, s, id)) != BLOQR_OK)
		return err;
	if (c.last_admin && role && strcmp(role, "admin") != 0)
		return change_abort(&c, BLOQR_ECONFLICT);
	if ((err = one_user(s->pg, &st_update, p, out, NULL)) != BLOQR_OK)
		return change_abort(&c, err);
	if ((details = json_object_new_object()) == NULL ||
	    jsonx_add_str(details, "tierBefore", c.before.tier) < 0 ||
	    jsonx_add_str(details, "roleBefore", c.before.role) < 0 ||
	    jsonx_add_str(details, "tier", out->tier) < 0 || jsonx_add_str(details, "role", out->role) < 0) {
		json_object_put(details);
		users_free(out);
		return change_abort(&c, BLOQR_ENOMEM);
	}
	users_free(&c.before);
	if ((err = change_commit(&c, "user.update", details)) != BLOQR_OK)
		users_free(out);
	return err;
}

int users_delete(const struct store *s, const char *id)
{
	const char *p[] = { id };
	struct json_object *details;
	struct change c;
	int err;

	if ((err = change_begin(&c, s, id)) != BLOQR_OK)
		return err;
	if (c.last_admin)
		return change_abort(&c, BLOQR_ECONFLICT);
	if ((err = run(s->pg, &st_del_sessions, p, NULL)) != BLOQR_OK ||
	    (err = run(s->pg, &st_del_tokens, p, NULL)) != BLOQR_OK ||
	    (err = run(s->pg, &st_del_accounts, p, NULL)) != BLOQR_OK ||
	    (err = run(s->pg, &st_del_user, p, NULL)) != BLOQR_OK)
		return change_abort(&c, err);
	if ((details = json_object_new_object()) == NULL || jsonx_add_str(details, "email", c.before.email) < 0) {
		json_object_put(details);
		return change_abort(&c, BLOQR_ENOMEM);
	}
	users_free(&c.before);
	return change_commit(&c, "user.delete", details);
}

int users_ban(const struct store *s, const char *id, const char *reason, const char *expires,
    bool *expires_past)
{
	const char *p[] = { id, reason, expires };
	struct json_object *details;
	struct user after;
	struct change c;
	int err;

	*expires_past = false;
	if ((err = change_begin(&c, s, id)) != BLOQR_OK)
		return err;
	if (c.last_admin)
		return change_abort(&c, BLOQR_ECONFLICT);
	err = one_user(s->pg, &st_ban, p, &after, NULL);
	if (err == BLOQR_ENOTFOUND) {
		/* The user is there (locked above): the expiry is not in the future. */
		*expires_past = true;
		return change_abort(&c, BLOQR_EINPUT);
	}
	if (err != BLOQR_OK)
		return change_abort(&c, err);
	if ((err = run(s->pg, &st_revoke_sessions, p, NULL)) != BLOQR_OK ||
	    (err = run(s->pg, &st_revoke_tokens, p, NULL)) != BLOQR_OK) {
		users_free(&after);
		return change_abort(&c, err);
	}
	if ((details = json_object_new_object()) == NULL || jsonx_add_str(details, "reason", reason) < 0 ||
	    jsonx_add_str(details, "expires", after.ban_expires[0] ? after.ban_expires : NULL) < 0) {
		json_object_put(details);
		users_free(&after);
		return change_abort(&c, BLOQR_ENOMEM);
	}
	users_free(&after);
	users_free(&c.before);
	return change_commit(&c, "user.ban", details);
}

int users_unban(const struct store *s, const char *id)
{
	const char *p[] = { id };
	struct user after;
	struct change c;
	int err;

	if ((err = change_begin(&c, s, id)) != BLOQR_OK)
		return err;
	if ((err = one_user(s->pg, &st_unban, p, &after, NULL)) != BLOQR_OK)
		return change_abort(&c, err);
	users_free(&after);
	users_free(&c.before);
	return change_commit(&c, "user.unban", NULL);
}
