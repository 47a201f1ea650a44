/* The deployment history (deployment_history + deployment_counter): its
 * PostgreSQL statements, its API object, and its description for the L1
 * cache. Handlers and the CLI go through here; none writes SQL itself. */
#ifndef BLOQR_DEPLOYMENTS_H
#define BLOQR_DEPLOYMENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"

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

/* Called inside the recording transaction after the change, before the
 * commit (to write the audit row with it). Returns a pg_err; anything but
 * PG_OK rolls the whole transaction back. */
typedef int (*deployments_tx_fn)(struct pg *pg, const struct cache_row *row, void *ctx);

/* Record a deployment in one transaction: take the next build number for
 * its version from deployment_counter (an UPSERT, so concurrent callers
 * never share one), insert the row, run in_tx (may be NULL), commit. On
 * PG_OK *row_out holds the new row (caller frees with cache_row_free);
 * otherwise it is empty and nothing was written. Returns a pg_err. */
int deployments_record(struct pg *pg, const struct deployment_in *in, deployments_tx_fn in_tx,
    void *ctx, struct cache_row *row_out);

/* Mark the deployment full_version as rolled back, in one transaction with
 * in_tx as above. Returns 1 with *row_out filled, 0 when no deployment has
 * that full version (nothing changed), or a negative pg_err. */
int deployments_rollback(struct pg *pg, const char *full_version, deployments_tx_fn in_tx,
    void *ctx, struct cache_row *row_out);

/* The PostgreSQL side of cache_list / cache_count (cache_pg_list_fn,
 * cache_pg_count_fn): equality filters on the cached column names, rows
 * newest first exactly as the cache orders them. */
int deployments_pg_list(struct pg *pg, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count);
int deployments_pg_count(struct pg *pg, const struct cache_filter *f, int nf, long *n);

#endif
