/* The library's one error vocabulary (as kcgi's enum kcgi_err): every
 * store, the cache and the database layer return 0 or one of these, and
 * handlers/common.c maps them to HTTP statuses in one place (h_error). */
#ifndef BLOQR_ERR_H
#define BLOQR_ERR_H

enum bloqr_err {
	BLOQR_OK = 0,
	BLOQR_EUNAVAIL = -1,   /* PostgreSQL unreachable, restarting, timed out: 503 */
	BLOQR_EINPUT = -2,     /* the data was refused (a constraint, a bad value): 400 */
	BLOQR_ECONFLICT = -3,  /* it conflicts with existing data (a unique key, the last admin): 409 */
	BLOQR_EBUG = -4,       /* anything unexpected: 500, logged where it happened */
	BLOQR_ENOTFOUND = -5,  /* no such row: 404 */
	BLOQR_ECACHE = -6,     /* this host's L1 cache is unusable (PostgreSQL may be fine): 500 */
	BLOQR_ENOMEM = -7,     /* out of memory: 500 */
};

/* A short English text for err (never NULL), for logs and the CLI. */
const char *bloqr_strerror(int err);

/* Marks a result that must not be ignored (pgbouncer's _MUSTCHECK). */
#define BLOQR_MUSTCHECK __attribute__((warn_unused_result))

#endif
