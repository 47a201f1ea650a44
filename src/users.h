/* The users and accounts tables: user objects as the API shows them,
 * creation with an argon2id password, lookups. */
#ifndef BLOQR_USERS_H
#define BLOQR_USERS_H

#include <json.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct pg;

#define USERS_EMAIL_MAX 254
#define USERS_NAME_MAX 200
#define USERS_PASSWORD_MAX 1024
#define USERS_BAN_REASON_MAX 500   /* characters */

bool users_email_valid(const char *email);
bool users_role_valid(const char *role);    /* admin, user, readonly */
bool users_tier_valid(const char *tier);    /* anonymous, free, pro, admin */

/* Create a user (and, when password is not NULL, its 'credential' account)
 * in one transaction. role/tier NULL take the defaults (user, free).
 * id_out gets the new id. Returns a pg_err: PG_ECONFLICT when the email is
 * taken. */
int users_create(struct pg *pg, const char *email, const char *name, const char *role,
    const char *tier, const char *password, char id_out[static 40]);

/* 1 and the id when a user has this email (case-insensitive), 0 when none,
 * or a negative pg_err. */
int users_find_by_email(struct pg *pg, const char *email, char id_out[static 40]);

/* The SELECT list that users_to_json reads, for queries over "users u". */
#define USERS_COLUMNS \
	"u.id, u.email, u.name, u.email_verified, u.image, u.tier, u.role, u.banned, u.ban_reason, " \
	"to_char(u.ban_expires AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), " \
	"to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), " \
	"to_char(u.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define USERS_NCOLUMNS 12

/* The API's user object from row `row` of r, whose first USERS_NCOLUMNS
 * columns are USERS_COLUMNS. NULL when out of memory. Never carries a
 * password, hash or token. */
struct json_object *users_to_json(const PGresult *r, int row);


/* For sign-in: USERS_COLUMNS, then the credential password hash (or NULL)
 * and whether an unexpired ban applies. *r has 0 or 1 row; caller PQclears. */
int users_signin_lookup(struct pg *pg, const char *email, PGresult **r);
/* One user by id (USERS_COLUMNS); 0 rows when unknown. */
int users_get(struct pg *pg, const char *id, PGresult **r);


/* ---- admin user management; all but users_list run inside the caller's
 * transaction ---- */
int users_list(struct pg *pg, const char *tier, const char *role, const char *search,
    long limit, long offset, PGresult **rows, long *total);
/* Serialize changes to the set of admins (ban, demote, delete). */
int users_admin_lock(struct pg *pg);
/* Lock one user row: USERS_COLUMNS, then whether it is an unbanned admin.
 * 0 rows when unknown. */
int users_lock(struct pg *pg, const char *id, PGresult **r);
/* Unbanned admins other than id. */
int users_other_admins(struct pg *pg, const char *id, long *n);
/* tier/role NULL = unchanged. *r: the updated row (USERS_COLUMNS). */
int users_update(struct pg *pg, const char *id, const char *tier, const char *role, PGresult **r);
/* Delete the user with its sessions, tokens and accounts. */
int users_delete(struct pg *pg, const char *id);
/* Ban (reason, expires may be NULL) and revoke every session and token.
 * *r has 0 rows when expires is not in the future. */
int users_ban(struct pg *pg, const char *id, const char *reason, const char *expires, PGresult **r);
int users_unban(struct pg *pg, const char *id, PGresult **r);

#endif
