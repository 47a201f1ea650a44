/* Credentials: bearer tokens and session cookies → one principal; token
 * and password hashing; sign-in rate limiting. Owns the sessions,
 * api_tokens and auth_attempts tables. */
#ifndef BLOQR_AUTH_H
#define BLOQR_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include <sodium.h>

#include "err.h"

struct app;
struct http_request;
struct pg;
struct store;
struct user;

/* 32 random bytes, base64url without padding, after a "bq_" prefix. */
#define AUTH_TOKEN_LEN (3 + 43)
#define AUTH_HASH_HEX 65
#define AUTH_SESSION_TTL_S (7 * 24 * 3600)
#define AUTH_COOKIE "bloqr_session"

enum auth_via { AUTH_VIA_NONE = 0, AUTH_VIA_BEARER, AUTH_VIA_COOKIE };
enum auth_kind { AUTH_KIND_SESSION = 0, AUTH_KIND_TOKEN };

struct principal {
	bool present;                 /* credentials resolved to a user */
	enum auth_via via;
	enum auth_kind kind;
	char cred_id[40];             /* sessions.id or api_tokens.id */
	char token_hash[AUTH_HASH_HEX];
	char user_id[40];
	char role[16];                /* admin, user, readonly */
	bool banned;                  /* an unexpired ban */
	bool stale;                   /* vouched for by the cache during an outage */
};

enum auth_result {
	AUTH_OK = 0,
	AUTH_NONE = 1,      /* no credentials presented */
	AUTH_INVALID = 2,   /* unknown, expired or revoked: 401 */
	AUTH_UNAVAIL = 3,   /* PostgreSQL unreachable: 503 */
	AUTH_ERROR = 4,     /* PostgreSQL failed otherwise: 500, never 401 */
};

/* Resolve the request's credentials (Authorization: Bearer wins over the
 * cookie). Fills *p on AUTH_OK. Looked up in the L1 cache while it is
 * coherent, else in PostgreSQL. allow_stale: during a PostgreSQL outage a
 * credential the cache confirmed within auth_grace seconds before it still
 * counts (p->stale is then set). */
int auth_resolve(struct app *app, const struct http_request *req, bool allow_stale, struct principal *p);

/* The token in "Authorization: Bearer …" or the session cookie, or NULL. */
const char *auth_presented_token(const struct http_request *req, enum auth_via *via);

/* Whether the request shows a credential at all (an Authorization header
 * or the session cookie), valid or not. */
bool auth_presented(const struct http_request *req);

/* A new random token into out (AUTH_TOKEN_LEN + 1 bytes). */
void auth_token_new(char out[static AUTH_TOKEN_LEN + 1]);
/* SHA-256 of the token, lowercase hex: what is stored. */
void auth_token_hash(const char *token, char out[static AUTH_HASH_HEX]);

/* argon2id (libsodium interactive limits). 0 / -1 (out of memory). */
int auth_password_hash(const char *pw, char out[static crypto_pwhash_STRBYTES]);
bool auth_password_verify(const char *hash, const char *pw);
/* Burn the time of one verification (for unknown users). */
void auth_password_dummy(const char *pw);

/* Create a credential for user_id: a sign-in session (ttl_s seconds) or an
 * API token (ttl_s 0 = never expires). Writes the token to out.
 * Returns a pg_err. Refuses (PG_EINPUT) a user with an unexpired ban. */
int auth_credential_create(struct pg *pg, const char *user_id, enum auth_kind kind, long ttl_s,
    const char *label, const char *ip, const char *user_agent, char out[static AUTH_TOKEN_LEN + 1]);

/* When the principal's credential was made and when it expires, as ISO
 * times (expires "" for a token that never does); *found false when it
 * is gone. Returns a pg_err. */
#define AUTH_TIME_LEN 32
int auth_credential_times(struct pg *pg, const struct principal *p, bool *found,
    char created[static AUTH_TIME_LEN], char expires[static AUTH_TIME_LEN])
	__attribute__((warn_unused_result));

/* Revoke one credential. Returns a pg_err. */
int auth_credential_revoke(struct pg *pg, const struct principal *p);
/* Drop the principal's credential from this host's cache (after a revoke). */
struct cache;
void auth_forget(struct cache *c, const struct principal *p);



/* ---- sign-in (with its rate limit, auth_attempts) ---- */
#define AUTH_MAX_FAILURES 5
#define AUTH_WINDOW_S (15 * 60)

enum auth_signin {
	AUTH_SIGNIN_OK = 0,
	AUTH_SIGNIN_BAD,       /* unknown email or wrong password (one answer for both) */
	AUTH_SIGNIN_LOCKED,    /* AUTH_MAX_FAILURES for the email or the address: try after *retry_after s */
	AUTH_SIGNIN_BANNED,    /* right password, banned user */
};

/* Sign in with email and password, in one transaction serialised per
 * email and per client address (s->ip): check the failures of the window,
 * verify the argon2id hash (a dummy one for an unknown email, so both
 * take as long), record the attempt, and on success create a session
 * (token gets it; *u the user, caller frees). Returns a bloqr_err; on
 * BLOQR_OK *outcome tells the result. */
int auth_sign_in(const struct store *s, const char *email, const char *password, const char *user_agent,
    struct user *u, char token[static AUTH_TOKEN_LEN + 1], enum auth_signin *outcome, long *retry_after)
	BLOQR_MUSTCHECK;

#endif
