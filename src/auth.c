#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "store.h"
#include "users.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "cache.h"
#include "text.h"
#include "worker.h"

/* One lookup for both kinds of credential; the user's role and an
 * unexpired ban come with it. `touch` says last_used_at is over a minute
 * old, so it is written at most once a minute per credential. */
static const struct pg_stmt st_lookup = { "auth_lookup",
	"SELECT t.kind, t.id, u.id, u.role, "
	"  (u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now())), t.token_hash, "
	"  (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds'), "
	"  coalesce((extract(epoch FROM t.expires_at) * 1000)::bigint, 0) "
	"FROM (SELECT 's' AS kind, id, user_id, token_hash, last_used_at, expires_at FROM sessions "
	"       WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now() "
	"      UNION ALL "
	"      SELECT 't', id, user_id, token_hash, last_used_at, expires_at FROM api_tokens "
	"       WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) t "
	"JOIN users u ON u.id = t.user_id LIMIT 1", 1, true };
static const struct pg_stmt st_touch_session = { "auth_touch_session",
	"UPDATE sessions SET last_used_at = now() WHERE id = $1", 1, true };
static const struct pg_stmt st_touch_token = { "auth_touch_token",
	"UPDATE api_tokens SET last_used_at = now() WHERE id = $1", 1, true };

/* FOR SHARE on the user row orders this insert against a concurrent ban or
 * delete (both update or delete that row): a credential is never created
 * for a user whose ban committed first, and a ban always sees (and
 * revokes) a credential committed before it. */
static const struct pg_stmt st_new_session = { "auth_new_session",
	"WITH u AS (SELECT id FROM users WHERE id = $1 "
	"           AND NOT (banned AND (ban_expires IS NULL OR ban_expires > now())) FOR SHARE) "
	"INSERT INTO sessions (user_id, token_hash, expires_at, ip_address, user_agent) "
	"SELECT id, $2, now() + make_interval(secs => $3::double precision), $4, $5 FROM u RETURNING id",
	5, false };
static const struct pg_stmt st_new_token = { "auth_new_token",
	"WITH u AS (SELECT id FROM users WHERE id = $1 "
	"           AND NOT (banned AND (ban_expires IS NULL OR ban_expires > now())) FOR SHARE) "
	"INSERT INTO api_tokens (user_id, token_hash, expires_at, name) "
	"SELECT id, $2, CASE WHEN $3::bigint = 0 THEN NULL "
	"                    ELSE now() + make_interval(secs => $3::double precision) END, $4 "
	"FROM u RETURNING id", 4, false };
static const struct pg_stmt st_revoke_session = { "auth_revoke_session",
	"UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", 1, false };
static const struct pg_stmt st_revoke_token = { "auth_revoke_token",
	"UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", 1, false };

void auth_token_new(char out[static AUTH_TOKEN_LEN + 1])
{
	unsigned char raw[32];

	randombytes_buf(raw, sizeof raw);
	memcpy(out, "bq_", 3);
	sodium_bin2base64(out + 3, AUTH_TOKEN_LEN + 1 - 3, raw, sizeof raw,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
}

void auth_token_hash(const char *token, char out[static AUTH_HASH_HEX])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(out, AUTH_HASH_HEX, h, sizeof h);
}

int auth_password_hash(const char *pw, char out[static crypto_pwhash_STRBYTES])
{
	return crypto_pwhash_str(out, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	    crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0 ? 0 : -1;
}

bool auth_password_verify(const char *hash, const char *pw)
{
	char buf[crypto_pwhash_STRBYTES];

	if (hash == NULL || strlen(hash) >= sizeof buf)
		return false;
	memset(buf, 0, sizeof buf);
	memcpy(buf, hash, strlen(hash));
	return crypto_pwhash_str_verify(buf, pw, strlen(pw)) == 0;
}

void auth_password_dummy(const char *pw)
{
	/* Made once per process, so an unknown email costs what a known one does. */
	static char dummy[crypto_pwhash_STRBYTES];

	if (dummy[0] == '\0' && auth_password_hash("bloqr-dummy-password", dummy) < 0)
		return;
	(void)auth_password_verify(dummy, pw);
}

/* Tokens are ours: a prefix and base64url. Anything else is not worth a
 * database round trip. */
static bool token_shape_ok(const char *t, size_t n)
{
	if (n < 8 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

const char *auth_presented_token(const struct http_request *req, enum auth_via *via)
{
	const char *h = http_param(req, "HTTP_AUTHORIZATION");
	const char *c;

	*via = AUTH_VIA_NONE;
	if (h && *h) {
		*via = AUTH_VIA_BEARER;
		if (strncasecmp(h, "Bearer ", 7) != 0)
			return "";
		h += 7;
		while (*h == ' ')
			h++;
		return h;
	}
	c = http_param(req, "HTTP_COOKIE");
	while (c && *c) {
		size_t n;
		while (*c == ' ' || *c == ';')
			c++;
		n = strcspn(c, ";");
		if (n > sizeof AUTH_COOKIE && strncmp(c, AUTH_COOKIE "=", sizeof AUTH_COOKIE) == 0) {
			char *tok = arena_strndup(req->arena, c + sizeof AUTH_COOKIE, n - sizeof AUTH_COOKIE);
			*via = AUTH_VIA_COOKIE;
			return tok ? tok : "";
		}
		c += n;
	}
	return NULL;
}

bool auth_presented(const struct http_request *req)
{
	enum auth_via via;

	return auth_presented_token(req, &via) != NULL || via != AUTH_VIA_NONE;
}

static void from_cred(struct principal *p, const struct cache_cred *cr)
{
	/* p->via and p->token_hash are already set. */
	p->present = true;
	p->kind = cr->kind == 't' ? AUTH_KIND_TOKEN : AUTH_KIND_SESSION;
	snprintf(p->cred_id, sizeof p->cred_id, "%s", cr->cred_id);
	snprintf(p->user_id, sizeof p->user_id, "%s", cr->user_id);
	snprintf(p->role, sizeof p->role, "%s", cr->role);
	p->banned = cr->banned;
}

int auth_resolve(struct app *app, const struct http_request *req, bool allow_stale, struct principal *p)
{
	char hash[AUTH_HASH_HEX];
	const char *tok;
	const char *params[1];
	struct cache_cred cr;
	int64_t now = text_now_ms();
	int64_t since;
	PGresult *r;
	int err, have;

	memset(p, 0, sizeof *p);
	tok = auth_presented_token(req, &p->via);
	if (tok == NULL)
		return AUTH_NONE;
	if (!token_shape_ok(tok, strlen(tok)))
		return AUTH_INVALID;
	auth_token_hash(tok, hash);
	memcpy(p->token_hash, hash, sizeof hash);

	/* Security data comes from the cache only while the invalidation
	 * listener is connected: then a ban or revocation anywhere reaches
	 * it within a second or two. */
	have = cache_cred_get(app->cache, hash, &cr);
	if (have == 1 && cr.trusted &&
	    now - cr.confirmed_ms <= app->conf->cache_max_age * 1000 &&
	    (cr.expires_ms == 0 || cr.expires_ms > now)) {
		from_cred(p, &cr);
		metrics_cache(CACHE_CREDENTIALS, METRICS_CACHE_HIT);
		return AUTH_OK;
	}
	since = now;
	params[0] = hash;
	r = pg_query(app->pg, &st_lookup, params, &err);
	if (r == NULL) {
		/* The database could not say: not the client's fault (CONTRACT
		 * §6), so never 401. */
		if (err != PG_EUNAVAIL)
			return AUTH_ERROR;
		/* CONTRACT §5.5: a credential confirmed shortly before the outage
		 * may still read cached data. */
		if (allow_stale && have == 1 && app->conf->cache_auth_grace > 0 &&
		    (cr.expires_ms == 0 || cr.expires_ms > now)) {
			int64_t outage = cache_outage_since(app->cache);
			int64_t ref = outage > 0 && !cache_coherent(app->cache) ? outage : now;
			if (cr.confirmed_ms >= ref - app->conf->cache_auth_grace * 1000) {
				from_cred(p, &cr);
				p->stale = true;
				metrics_cache(CACHE_CREDENTIALS, METRICS_CACHE_STALE);
				return AUTH_OK;
			}
		}
		return AUTH_UNAVAIL;
	}
	if (PQntuples(r) != 1 || strlen(PQgetvalue(r, 0, 5)) != AUTH_HASH_HEX - 1 ||
	    sodium_memcmp(PQgetvalue(r, 0, 5), hash, AUTH_HASH_HEX - 1) != 0) {
		PQclear(r);
		/* PostgreSQL says revoked, expired or gone: a cached copy must not
		 * be trusted again once the cache is coherent. */
		if (have == 1 && cache_deleted(app->cache, CACHE_CREDENTIALS, hash) != BLOQR_OK)
			log_warn("auth: this host's cache could not drop a credential PostgreSQL no longer knows");
		return AUTH_INVALID;
	}
	memset(&cr, 0, sizeof cr);
	cr.kind = PQgetvalue(r, 0, 0)[0];
	snprintf(cr.cred_id, sizeof cr.cred_id, "%s", PQgetvalue(r, 0, 1));
	snprintf(cr.user_id, sizeof cr.user_id, "%s", PQgetvalue(r, 0, 2));
	snprintf(cr.role, sizeof cr.role, "%s", PQgetvalue(r, 0, 3));
	cr.banned = PQgetvalue(r, 0, 4)[0] == 't';
	cr.expires_ms = atoll(PQgetvalue(r, 0, 7));
	cr.confirmed_ms = now;
	from_cred(p, &cr);
	if (PQgetvalue(r, 0, 6)[0] == 't') {
		const char *id[] = { p->cred_id };
		PGresult *t = pg_query(app->pg, p->kind == AUTH_KIND_SESSION ? &st_touch_session : &st_touch_token,
		    id, &err);
		PQclear(t);   /* best effort: a failed touch never fails the request */
	}
	PQclear(r);
	if (cache_enabled(app->cache))
		metrics_cache(CACHE_CREDENTIALS, METRICS_CACHE_MISS);
	cache_cred_put(app->cache, hash, &cr, since);
	return AUTH_OK;
}

int auth_credential_create(struct pg *pg, const char *user_id, enum auth_kind kind, long ttl_s,
    const char *label, const char *ip, const char *user_agent, char out[static AUTH_TOKEN_LEN + 1])
{
	char hash[AUTH_HASH_HEX], ttl[24];
	PGresult *r;
	int err;

	auth_token_new(out);
	auth_token_hash(out, hash);
	snprintf(ttl, sizeof ttl, "%ld", ttl_s);
	if (kind == AUTH_KIND_SESSION) {
		const char *p[] = { user_id, hash, ttl, ip, user_agent };
		r = pg_query(pg, &st_new_session, p, &err);
	} else {
		const char *p[] = { user_id, hash, ttl, label };
		r = pg_query(pg, &st_new_token, p, &err);
	}
	if (r == NULL)
		goto fail;
	err = PQntuples(r) == 1 ? PG_OK : PG_EINPUT;   /* no row: banned or gone */
	PQclear(r);
	if (err == PG_OK)
		return PG_OK;
fail:
	sodium_memzero(out, AUTH_TOKEN_LEN + 1);
	return err;
}

static const struct pg_stmt st_session_times = { "auth_session_times",
	"SELECT " PG_ISO_TIME("created_at") ", " PG_ISO_TIME("expires_at") " FROM sessions WHERE id = $1",
	1, true };
static const struct pg_stmt st_token_times = { "auth_token_times",
	"SELECT " PG_ISO_TIME("created_at") ", coalesce(" PG_ISO_TIME("expires_at") ", '') "
	"FROM api_tokens WHERE id = $1", 1, true };

int auth_credential_times(struct pg *pg, const struct principal *p, bool *found,
    char created[static AUTH_TIME_LEN], char expires[static AUTH_TIME_LEN])
{
	const char *params[] = { p->cred_id };
	int err;
	PGresult *r = pg_query(pg, p->kind == AUTH_KIND_SESSION ? &st_session_times : &st_token_times,
	    params, &err);

	if (r == NULL)
		return err;
	*found = PQntuples(r) == 1;
	if (!*found) {
		PQclear(r);
		return PG_OK;
	}
	snprintf(created, AUTH_TIME_LEN, "%s", PQgetvalue(r, 0, 0));
	snprintf(expires, AUTH_TIME_LEN, "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	return PG_OK;
}

int auth_credential_revoke(struct pg *pg, const struct principal *p)
{
	const char *params[] = { p->cred_id };
	int err;
	PGresult *r = pg_query(pg, p->kind == AUTH_KIND_SESSION ? &st_revoke_session : &st_revoke_token,
	    params, &err);

	PQclear(r);
	return err;
}

void auth_forget(struct cache *c, const struct principal *p)
{
	if (cache_deleted(c, CACHE_CREDENTIALS, p->token_hash) != BLOQR_OK)
		log_warn("auth: this host's cache could not drop a revoked credential at once");
}

static const struct pg_stmt st_signin_lock = { "auth_signin_lock",
	"SELECT pg_advisory_xact_lock(hashtext('bloqr-signin:' || lower($1)))", 1, false };
static const struct pg_stmt st_attempts = { "auth_attempts_check",
	"SELECT count(*) FILTER (WHERE lower(email) = lower($1)), "
	"       count(*) FILTER (WHERE client_addr = $2), "
	"       ceil(extract(epoch FROM min(attempted_at) + make_interval(secs => $3::double precision) - now())) "
	"FROM auth_attempts "
	"WHERE NOT succeeded AND attempted_at > now() - make_interval(secs => $3::double precision) "
	"  AND (lower(email) = lower($1) OR client_addr = $2)", 3, false };
static const struct pg_stmt st_attempt_insert = { "auth_attempt_insert",
	"INSERT INTO auth_attempts (email, client_addr, succeeded) VALUES ($1, $2, $3)", 3, false };

static int signin_lock(struct pg *pg, const char *email)
{
	const char *p[] = { email };
	int err;
	PGresult *r = pg_query(pg, &st_signin_lock, p, &err);

	PQclear(r);
	return err;
}

static int attempts_check(struct pg *pg, const char *email, const char *addr, bool *locked, long *retry_after)
{
	char window[16];
	const char *p[] = { email, addr, window };
	PGresult *r;
	int err;

	snprintf(window, sizeof window, "%d", AUTH_WINDOW_S);
	r = pg_query(pg, &st_attempts, p, &err);
	if (r == NULL)
		return err;
	*locked = atol(PQgetvalue(r, 0, 0)) >= AUTH_MAX_FAILURES || atol(PQgetvalue(r, 0, 1)) >= AUTH_MAX_FAILURES;
	*retry_after = PQgetisnull(r, 0, 2) ? AUTH_WINDOW_S : atol(PQgetvalue(r, 0, 2));
	if (*retry_after < 1)
		*retry_after = 1;
	PQclear(r);
	return PG_OK;
}

static int attempt_record(struct pg *pg, const char *email, const char *addr, bool succeeded)
{
	const char *p[] = { email, addr, succeeded ? "true" : "false" };
	int err;
	PGresult *r = pg_query(pg, &st_attempt_insert, p, &err);

	PQclear(r);
	return err;
}

int auth_sign_in(const struct store *s, const char *email, const char *password, const char *user_agent,
    struct user *u, char token[static AUTH_TOKEN_LEN + 1], enum auth_signin *outcome, long *retry_after)
{
	const char *addr = s->ip ? s->ip : "";
	char *hash = NULL;
	bool locked = false, ok;
	int rc;

	memset(u, 0, sizeof *u);
	token[0] = '\0';
	*outcome = AUTH_SIGNIN_BAD;
	*retry_after = 0;
	/* One transaction: the locks make check-verify-record atomic across
	 * workers and hosts. */
	if ((rc = pg_begin(s->pg)) != BLOQR_OK)
		return rc;
	if ((rc = signin_lock(s->pg, email)) != BLOQR_OK ||
	    (rc = attempts_check(s->pg, email, addr, &locked, retry_after)) != BLOQR_OK)
		goto fail;
	if (locked) {
		*outcome = AUTH_SIGNIN_LOCKED;
		pg_rollback(s->pg);
		return BLOQR_OK;
	}
	rc = users_signin_lookup(s->pg, email, u, &hash);
	if (rc != BLOQR_OK && rc != BLOQR_ENOTFOUND)
		goto fail;
	if (rc == BLOQR_OK && hash) {
		ok = auth_password_verify(hash, password);
	} else {
		auth_password_dummy(password);
		ok = false;
	}
	if (hash) {
		sodium_memzero(hash, strlen(hash));
		free(hash);
	}
	if (!ok) {
		if ((rc = attempt_record(s->pg, email, addr, false)) != BLOQR_OK || (rc = pg_commit(s->pg)) != BLOQR_OK)
			goto fail;
		users_free(u);
		return BLOQR_OK;
	}
	if (u->ban_active) {
		*outcome = AUTH_SIGNIN_BANNED;
		goto refused;
	}
	rc = auth_credential_create(s->pg, u->id, AUTH_KIND_SESSION, AUTH_SESSION_TTL_S, NULL, s->ip, user_agent,
	    token);
	if (rc == BLOQR_EINPUT) {
		/* Banned between the lookup and the insert. */
		*outcome = AUTH_SIGNIN_BANNED;
		goto refused;
	}
	if (rc != BLOQR_OK || (rc = attempt_record(s->pg, email, addr, true)) != BLOQR_OK ||
	    (rc = pg_commit(s->pg)) != BLOQR_OK)
		goto fail;
	*outcome = AUTH_SIGNIN_OK;
	return BLOQR_OK;
refused:
	pg_rollback(s->pg);
	users_free(u);
	sodium_memzero(token, AUTH_TOKEN_LEN + 1);
	return BLOQR_OK;
fail:
	pg_rollback(s->pg);
	users_free(u);
	sodium_memzero(token, AUTH_TOKEN_LEN + 1);
	return rc;
}
