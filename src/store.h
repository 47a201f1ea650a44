/* What a store module needs to carry out one operation end to end: the
 * database, this host's cache (a disabled one is fine), and who acts, for
 * the audit row a change writes in its own transaction. The stores
 * (deployments.c, storage.c, storage_admin.c, users.c, auth.c) own the
 * whole protocol of a write — transaction, generation guard, audit row,
 * commit, cache hand-off — so that no caller can forget a step. */
#ifndef BLOQR_STORE_H
#define BLOQR_STORE_H

struct pg;
struct cache;

struct store {
	struct pg *pg;
	struct cache *cache;        /* may be a disabled cache, never NULL */
	const char *actor_id;       /* the signed-in user; NULL for the CLI */
	const char *request_id;     /* NULL outside a request */
	const char *ip;             /* the client's address; NULL outside a request */
};

#endif
