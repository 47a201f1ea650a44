/* The deployment history (deployment_history + deployment_counter): its
 * PostgreSQL statements, its API object, and its description for the L1
 * cache. Handlers and the CLI go through here; none writes SQL itself. */
#ifndef BLOQR_DEPLOYMENTS_H
#define BLOQR_DEPLOYMENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "cache.h"
#include "store.h"

struct pg;

/* Input limits (bytes), shared by the HTTP handler and the CLI. */
#define DEPLOY_VERSION_MAX 100
#define DEPLOY_COMMIT_MAX 64
#define DEPLOY_BRANCH_MAX 255
#define DEPLOY_BY_MAX 255
#define DEPLOY_RUN_ID_MAX 100
#define DEPLOY_RUN_URL_MAX 2048
#define DEPLOY_DURATION_MAX 2147483647LL

/* The cached table: key "id"; cols full_version, version, status,
 * git_branch, deployed_at (ISO-8601 UTC with ms); body = the API object. */
extern const struct cache_tabledef deployments_cache_def;

/* Indexes into cache_row.cols, in deployments_cache_def.cols order. */
enum { DEPLOY_COL_FULL_VERSION = 0, DEPLOY_COL_VERSION, DEPLOY_COL_STATUS,
	DEPLOY_COL_BRANCH, DEPLOY_COL_DEPLOYED_AT };

/* A version as accepted for recording: 1..DEPLOY_VERSION_MAX bytes of
 * [0-9A-Za-z.-] ('+' is reserved for the "+build.N" suffix). */
bool deployments_version_valid(const char *v);
/* Free text for commit, branch, author, run id and URL: valid UTF-8,
 * 1..max bytes, no control characters. */
bool deployments_text_valid(const char *s, size_t max);
/* A status a new deployment may have: success or failed. */
bool deployments_status_valid(const char *s);

/* A deployment to record. Strings are borrowed. */
struct deployment_in {
	const char *version;        /* required */
	const char *git_commit;     /* required */
	const char *git_branch;     /* required */
	const char *deployed_by;    /* required */
	const char *status;         /* NULL: success */
	long long duration_ms;      /* < 0: none */
	const char *run_id;         /* NULL: none */
	const char *run_url;        /* NULL: none */
	const char *metadata;       /* JSON text, or NULL */
};

/* ---- reads, through the L1 cache (*how: HIT, MISS, STALE or BYPASS) ---- */

/* The history, newest first: at most limit deployments matching the
 * filters (NULL = any), as API objects joined by ',' appended to out;
 * *n gets how many. Returns a bloqr_err. */
int deployments_list(const struct store *s, const char *version, const char *status, const char *branch,
    long limit, struct buf *out, long *n, enum cache_outcome *how) BLOQR_MUSTCHECK;
/* How many deployments have status (NULL: all). */
int deployments_count(const struct store *s, const char *status, long *n, enum cache_outcome *how)
	BLOQR_MUSTCHECK;
/* The latest successful deployment's object into out; *found 0 when none. */
int deployments_latest(const struct store *s, struct buf *out, long *found, enum cache_outcome *how)
	BLOQR_MUSTCHECK;

/* ---- writes: one transaction each, with its audit row (actor, request
 * and address from s; "via": "bloqr-admin" outside a request), then the
 * committed row is handed to s->cache (NULL: no cache) ---- */

/* Record a deployment: take the next build number for its version from
 * deployment_counter (an UPSERT, so concurrent callers never share one),
 * insert the row, audit, commit. On BLOQR_OK *row_out holds the new row
 * (caller frees with cache_row_free); otherwise it is empty and nothing
 * was written. BLOQR_ECONFLICT: the full version exists already. */
int deployments_record(const struct store *s, const struct deployment_in *in, struct cache_row *row_out)
	BLOQR_MUSTCHECK;

/* Mark the deployment full_version as rolled back, audited, in one
 * transaction. BLOQR_OK with *row_out filled, BLOQR_ENOTFOUND when no
 * deployment has that full version (nothing changed), or another
 * bloqr_err. */
int deployments_rollback(const struct store *s, const char *full_version, struct cache_row *row_out)
	BLOQR_MUSTCHECK;

#endif
