/* The users and accounts tables: user objects as the API shows them,
 * creation with an argon2id password, lookups. */
#ifndef BLOQR_USERS_H
#define BLOQR_USERS_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "store.h"

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
 * id_out gets the new id. Returns a bloqr_err: BLOQR_ECONFLICT when the
 * email is taken. */
int users_create(struct pg *pg, const char *email, const char *name, const char *role,
    const char *tier, const char *password, char id_out[static 40]);

/* 1 and the id when a user has this email (case-insensitive), 0 when none,
 * or a negative pg_err. */
int users_find_by_email(struct pg *pg, const char *email, char id_out[static 40]);

/* A user as stored. Text fields are malloc'd and owned by the struct
 * (users_free); NULL stands for SQL NULL. */
struct user {
	char id[40];
	char *email;
	char *name;
	bool email_verified;
	char *image;
	char tier[16];
	char role[16];
	bool banned;                /* the flag as stored (see ban_active) */
	bool ban_active;            /* banned, and the ban has not expired */
	char *ban_reason;
	char ban_expires[32];       /* ISO time, "" when none */
	char created_at[32];
	char updated_at[32];
};
void users_free(struct user *u);

/* The API's user object. NULL when out of memory. Never carries a
 * password, hash or token. */
struct json_object *users_to_json(const struct user *u);

/* For sign-in: the user with this email (case-insensitive) and the hash of
 * its password (malloc'd, NULL when it has none; caller frees). Returns a
 * bloqr_err: BLOQR_ENOTFOUND when no user has it. */
int users_signin_lookup(struct pg *pg, const char *email, struct user *u, char **password_hash)
	BLOQR_MUSTCHECK;
/* One user by id; BLOQR_ENOTFOUND when unknown. */
int users_get(struct pg *pg, const char *id, struct user *u) BLOQR_MUSTCHECK;

/* A page of users, newest first, filtered (NULL = any; search matches
 * email or name substrings, case-insensitive): *users gets an array of *n
 * (caller frees with users_free_all), *total all matches. after (NULL:
 * none), a user's id, starts the page after that user (keyset paging,
 * then offset rows more are skipped); BLOQR_EINPUT when no user has it. */
int users_list(struct pg *pg, const char *tier, const char *role, const char *search,
    const char *after, long limit, long offset, struct user **users, size_t *n, long *total) BLOQR_MUSTCHECK;
void users_free_all(struct user *users, size_t n);

/* ---- admin changes: each in one transaction that takes the admins'
 * lock (so two admins cannot remove each other at once), locks the user,
 * keeps the last unbanned admin (BLOQR_ECONFLICT), writes the audit row
 * (actor, request and address from s), commits, and then drops the user's
 * credentials from this host's cache (the others hear it by NOTIFY).
 * BLOQR_ENOTFOUND when the user is unknown. ---- */

/* tier/role NULL = unchanged; *out: the user after (caller frees). */
int users_update(const struct store *s, const char *id, const char *tier, const char *role, struct user *out)
	BLOQR_MUSTCHECK;
/* Delete the user with its sessions, tokens and accounts. */
int users_delete(const struct store *s, const char *id) BLOQR_MUSTCHECK;
/* Ban (reason, expires may be NULL) and revoke every session and token
 * for good. BLOQR_EINPUT when expires is no valid time, or (*expires_past)
 * not in the future. */
int users_ban(const struct store *s, const char *id, const char *reason, const char *expires,
    bool *expires_past) BLOQR_MUSTCHECK;
/* Lift a ban; revoked credentials stay revoked. */
int users_unban(const struct store *s, const char *id) BLOQR_MUSTCHECK;

#endif
