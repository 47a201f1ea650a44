/* Credentials in the L1 cache (for auth.c): trusted only while the cache
 * is coherent, and never filled with what a lookup read before the
 * credential, its user or everything was invalidated (tombstones). */
#include "cache_int.h"

#include <stdio.h>
#include <string.h>

int cache_cred_get(struct cache *c, const char *token_hash, struct cache_cred *cr)
{
	sqlite3_stmt *s;
	int rc;

	cr->trusted = false;
	if (!cx_read_begin(c))
		return -1;
	s = c->st[CACHE_CREDENTIALS][S_GET];
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		const char *id = (const char *)sqlite3_column_text(s, 1);
		const char *user = (const char *)sqlite3_column_text(s, 2);
		const char *role = (const char *)sqlite3_column_text(s, 3);
		if (!k || !id || !user || !role) {
			sqlite3_reset(s);
			cx_read_end(c);
			return 0;   /* a damaged row vouches for nothing */
		}
		cr->kind = k[0];
		snprintf(cr->cred_id, sizeof cr->cred_id, "%s", id);
		snprintf(cr->user_id, sizeof cr->user_id, "%s", user);
		snprintf(cr->role, sizeof cr->role, "%s", role);
		cr->banned = sqlite3_column_int(s, 4) != 0;
		cr->expires_ms = sqlite3_column_int64(s, 5);
		cr->confirmed_ms = sqlite3_column_int64(s, 6);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		cr->trusted = cache_coherent(c);
	cx_read_end(c);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	cx_fail(c, CACHE_CREDENTIALS, rc);
	return -1;
}

void cache_cred_put(struct cache *c, const char *token_hash, const struct cache_cred *cr, int64_t since_ms)
{
	sqlite3_stmt *s;
	char kind[2] = { cr->kind, '\0' };
	int rc;

	if (!cx_usable(c) || cx_begin_fill(c) != 0)
		return;
	s = c->st_tomb_check;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, cr->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, since_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		/* Changed since the lookup began: don't keep what it read. */
		cx_rollback(c);
		return;
	}
	if (rc != SQLITE_DONE) {
		cx_fail(c, CACHE_CREDENTIALS, rc);
		goto fail;
	}
	s = c->st[CACHE_CREDENTIALS][S_PUT];
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, token_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, cr->cred_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, cr->user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, cr->role, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, cr->banned);
	sqlite3_bind_int64(s, 7, cr->expires_ms);
	sqlite3_bind_int64(s, 8, cr->confirmed_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		cx_fail(c, CACHE_CREDENTIALS, rc);
		goto fail;
	}
	cx_commit(c);
	return;
fail:
	cx_rollback(c);
}
