/* The deployment history store: every statement on deployment_history and
 * deployment_counter, the API object of a deployment, and the table's
 * description for the L1 cache.
 *
 * The API object (a row's body) is built here once, from the same column
 * list for every path — fetch, snapshot, list, record, rollback — so a
 * cache hit and a PostgreSQL read answer byte for byte alike. */
#include "deployments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "jsonx.h"
#include "log.h"
#include "pg.h"
#include "text.h"

/* ---------------------------------------------------------------- SQL -- */

/* Every statement that yields deployments selects exactly these. */
#define DEPLOY_COLUMNS \
	"d.id, d.version, d.build_number, d.full_version, d.git_commit, d.git_branch, " \
	PG_ISO_TIME("d.deployed_at") ", d.deployed_by, d.status, d.deployment_duration, " \
	"d.workflow_run_id, d.workflow_run_url, d.metadata::text"
enum { C_ID = 0, C_VERSION, C_BUILD, C_FULL, C_COMMIT, C_BRANCH, C_AT, C_BY, C_STATUS,
	C_DURATION, C_RUN_ID, C_RUN_URL, C_META };

/* The cache sorts on the ISO text (millisecond precision) and then the id
 * as text; PostgreSQL must sort the same way or a HIT and a MISS would
 * disagree about rows deployed within one millisecond. uuid order is the
 * order of its lowercase hex text. */
/* In the order of deployment_history_list_idx (migration 0005). */
#define DEPLOY_ORDER "ORDER BY date_trunc('milliseconds', d.deployed_at AT TIME ZONE 'UTC') DESC, d.id DESC"

/* Equality filters, one parameter per cached column (NULL = any), in the
 * order of deployments_cache_def.cols. */
#define DEPLOY_FILTER \
	"WHERE ($1::text IS NULL OR d.full_version = $1) AND ($2::text IS NULL OR d.version = $2) " \
	"  AND ($3::text IS NULL OR d.status = $3) AND ($4::text IS NULL OR d.git_branch = $4) " \
	"  AND ($5::text IS NULL OR " PG_ISO_TIME("d.deployed_at") " = $5) "
#define DEPLOY_NFILTERS 5

static const struct pg_stmt st_get = { "deploy_get",
	"SELECT " DEPLOY_COLUMNS " FROM deployment_history d WHERE d.id = $1::uuid", 1, true };
static const struct pg_stmt st_all = { "deploy_all",
	"SELECT " DEPLOY_COLUMNS " FROM deployment_history d " DEPLOY_ORDER, 0, true };
static const struct pg_stmt st_list = { "deploy_list",
	"SELECT " DEPLOY_COLUMNS " FROM deployment_history d " DEPLOY_FILTER DEPLOY_ORDER " LIMIT $6",
	6, true };
static const struct pg_stmt st_count = { "deploy_count",
	"SELECT count(*) FROM deployment_history d " DEPLOY_FILTER, 5, true };
/* The next build number of a version. The upsert's row lock serialises
 * concurrent callers, so each gets its own number. A version first seen
 * here starts after any history already stored for it (rows imported
 * without a counter), so the number never collides with an old row. */
static const struct pg_stmt st_next_build = { "deploy_next_build",
	"INSERT INTO deployment_counter (version, last_build_number) "
	"VALUES ($1::text, coalesce((SELECT max(build_number) FROM deployment_history "
	"                            WHERE version = $1::text), 0) + 1) "
	"ON CONFLICT (version) DO UPDATE SET last_build_number = deployment_counter.last_build_number + 1 "
	"RETURNING last_build_number", 1, false };
static const struct pg_stmt st_insert = { "deploy_insert",
	"INSERT INTO deployment_history AS d (version, build_number, full_version, git_commit, git_branch, "
	"  deployed_by, status, deployment_duration, workflow_run_id, workflow_run_url, metadata) "
	"VALUES ($1::text, $2::integer, $1::text || '+build.' || $2::integer, $3, $4, $5, "
	"  coalesce($6, 'success'), $7::integer, $8, $9, $10::jsonb) "
	"RETURNING " DEPLOY_COLUMNS, 10, false };
static const struct pg_stmt st_rollback = { "deploy_rollback",
	"UPDATE deployment_history d SET status = 'rollback' WHERE d.full_version = $1 "
	"RETURNING " DEPLOY_COLUMNS, 1, false };

/* --------------------------------------------------------- validation -- */

bool deployments_version_valid(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > DEPLOY_VERSION_MAX)
		return false;
	for (const char *p = v; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    *p == '.' || *p == '-'))
			return false;
	return true;
}

bool deployments_text_valid(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || !text_utf8_valid(s, n))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

bool deployments_status_valid(const char *s)
{
	return s && (strcmp(s, "success") == 0 || strcmp(s, "failed") == 0);
}

/* ------------------------------------------------------------ objects -- */

static const char *val(const PGresult *r, int i, int c)
{
	return PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
}



/* Append the API object of row i to b (b->oom tells of failure). */
static void put_body(struct buf *b, const PGresult *r, int i)
{
	buf_puts(b, "{\"id\":");
	jsonx_buf_str(b, val(r, i, C_ID));
	buf_puts(b, ",\"version\":");
	jsonx_buf_str(b, val(r, i, C_VERSION));
	buf_puts(b, ",\"buildNumber\":");
	jsonx_buf_raw(b, val(r, i, C_BUILD));
	buf_puts(b, ",\"fullVersion\":");
	jsonx_buf_str(b, val(r, i, C_FULL));
	buf_puts(b, ",\"gitCommit\":");
	jsonx_buf_str(b, val(r, i, C_COMMIT));
	buf_puts(b, ",\"gitBranch\":");
	jsonx_buf_str(b, val(r, i, C_BRANCH));
	buf_puts(b, ",\"deployedAt\":");
	jsonx_buf_str(b, val(r, i, C_AT));
	buf_puts(b, ",\"deployedBy\":");
	jsonx_buf_str(b, val(r, i, C_BY));
	buf_puts(b, ",\"status\":");
	jsonx_buf_str(b, val(r, i, C_STATUS));
	buf_puts(b, ",\"deploymentDuration\":");
	jsonx_buf_raw(b, val(r, i, C_DURATION));
	buf_puts(b, ",\"workflowRunId\":");
	jsonx_buf_str(b, val(r, i, C_RUN_ID));
	buf_puts(b, ",\"workflowRunUrl\":");
	jsonx_buf_str(b, val(r, i, C_RUN_URL));
	/* jsonb's own text is valid JSON: embedded as is, never re-parsed. */
	buf_puts(b, ",\"metadata\":");
	jsonx_buf_raw(b, val(r, i, C_META));
	buf_puts(b, "}");
}

static int dup_val(const PGresult *r, int i, int c, char **out)
{
	const char *s = val(r, i, c);

	*out = NULL;
	if (s == NULL)
		return 0;
	return (*out = strdup(s)) ? 0 : -1;
}

/* Fill row (all fields malloc'd) from row i of r. On failure row is left
 * empty. Returns 0 / -1 (out of memory). */
static int row_from(const PGresult *r, int i, struct cache_row *row)
{
	struct buf b = BUF_INIT;

	memset(row, 0, sizeof *row);
	put_body(&b, r, i);
	if (b.oom)
		goto fail;
	row->body = b.data;
	b.data = NULL;
	if (dup_val(r, i, C_ID, &row->key) < 0 ||
	    dup_val(r, i, C_FULL, &row->cols[DEPLOY_COL_FULL_VERSION]) < 0 ||
	    dup_val(r, i, C_VERSION, &row->cols[DEPLOY_COL_VERSION]) < 0 ||
	    dup_val(r, i, C_STATUS, &row->cols[DEPLOY_COL_STATUS]) < 0 ||
	    dup_val(r, i, C_BRANCH, &row->cols[DEPLOY_COL_BRANCH]) < 0 ||
	    dup_val(r, i, C_AT, &row->cols[DEPLOY_COL_DEPLOYED_AT]) < 0)
		goto fail;
	return 0;
fail:
	buf_free(&b);
	cache_row_free(row);
	memset(row, 0, sizeof *row);
	return -1;
}

/* ------------------------------------------------------ cache support -- */

static int fetch_one(struct pg *pg, const char *key, struct cache_row *row)
{
	const char *p[] = { key };
	PGresult *r;
	int err, found;

	memset(row, 0, sizeof *row);
	/* Not a uuid: names no deployment (and must not reach a ::uuid cast). */
	if (key == NULL || !text_uuid_valid(key))
		return 0;
	if ((r = pg_query(pg, &st_get, p, &err)) == NULL)
		return err;
	found = PQntuples(r) > 0;
	if (found && row_from(r, 0, row) < 0) {
		PQclear(r);
		return PG_EBUG;
	}
	PQclear(r);
	return found;
}

static int pg_list(struct pg *pg, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count);
static int pg_count(struct pg *pg, const struct cache_filter *f, int nf, long *n);

const struct cache_tabledef deployments_cache_def = {
	.name = "deployment_history",
	.key_col = "id",
	.cols = { "full_version", "version", "status", "git_branch", "deployed_at", NULL },
	.order_col = "deployed_at",
	.expires_col = NULL,
	.fetch = fetch_one,
	.all = &st_all,
	.row = row_from,
	.pg_list = pg_list,
	.pg_count = pg_count,
};

/* The statement parameters for filters f: p[k] for cached column k. A
 * column filtered twice with different values matches nothing (*none).
 * Returns 0, or -1 for a column this table does not have (a bug). */
static int filter_params(const struct cache_filter *f, int nf, const char *p[DEPLOY_NFILTERS], bool *none)
{
	*none = false;
	for (int k = 0; k < DEPLOY_NFILTERS; k++)
		p[k] = NULL;
	for (int i = 0; i < nf; i++) {
		int k = 0;

		while (k < DEPLOY_NFILTERS && strcmp(f[i].col, deployments_cache_def.cols[k]) != 0)
			k++;
		if (k == DEPLOY_NFILTERS) {
			log_error("deployments: no filter column '%s'", f[i].col);
			return -1;
		}
		if (f[i].value == NULL)
			continue;
		if (p[k] != NULL && strcmp(p[k], f[i].value) != 0)
			*none = true;
		p[k] = f[i].value;
	}
	return 0;
}

static int pg_list(struct pg *pg, const struct cache_filter *f, int nf, long limit,
    struct buf *out, long *count)
{
	const char *p[DEPLOY_NFILTERS + 1];
	char lim[24];
	PGresult *r;
	bool none;
	int err, n;

	*count = 0;
	if (filter_params(f, nf, p, &none) < 0)
		return PG_EBUG;
	if (none || limit <= 0)
		return PG_OK;
	snprintf(lim, sizeof lim, "%ld", limit);
	p[DEPLOY_NFILTERS] = lim;
	if ((r = pg_query(pg, &st_list, p, &err)) == NULL)
		return err;
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		if (i > 0)
			buf_puts(out, ",");
		put_body(out, r, i);
	}
	PQclear(r);
	if (out->oom)
		return PG_EBUG;
	*count = n;
	return PG_OK;
}

static int pg_count(struct pg *pg, const struct cache_filter *f, int nf, long *n)
{
	const char *p[DEPLOY_NFILTERS];
	PGresult *r;
	bool none;
	int err;

	*n = 0;
	if (filter_params(f, nf, p, &none) < 0)
		return PG_EBUG;
	if (none)
		return PG_OK;
	if ((r = pg_query(pg, &st_count, p, &err)) == NULL)
		return err;
	*n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return PG_OK;
}

/* -------------------------------------------------------------- reads -- */

int deployments_list(const struct store *s, const char *version, const char *status, const char *branch,
    long limit, struct buf *out, long *n, enum cache_outcome *how)
{
	const struct cache_filter f[] = { { "version", version }, { "status", status }, { "git_branch", branch } };

	return cache_list(s->cache, s->pg, CACHE_DEPLOYMENTS, f, 3, limit, out, n, how);
}

int deployments_count(const struct store *s, const char *status, long *n, enum cache_outcome *how)
{
	const struct cache_filter f[] = { { "status", status } };

	return cache_count(s->cache, s->pg, CACHE_DEPLOYMENTS, f, 1, n, how);
}

int deployments_latest(const struct store *s, struct buf *out, long *found, enum cache_outcome *how)
{
	const struct cache_filter f[] = { { "status", "success" } };

	return cache_list(s->cache, s->pg, CACHE_DEPLOYMENTS, f, 1, 1, out, found, how);
}

/* ------------------------------------------------------------- writes -- */

/* The audit row of a change, in its transaction. */
static int audit(const struct store *s, const char *action, const struct cache_row *row)
{
	struct json_object *details = json_object_new_object();
	int rc;

	if (details == NULL || jsonx_add_str(details, "id", row->key) < 0 ||
	    jsonx_add_str(details, "status", row->cols[DEPLOY_COL_STATUS]) < 0 ||
	    (s->request_id == NULL && jsonx_add_str(details, "via", "bloqr-admin") < 0)) {
		json_object_put(details);
		return BLOQR_ENOMEM;
	}
	rc = audit_write(s, action, row->cols[DEPLOY_COL_FULL_VERSION], details);
	json_object_put(details);
	return rc;
}

/* After the change: row_out from r, the audit row, commit, then the cache
 * (with the generation read before the transaction began: an invalidation
 * in between makes the cache drop the row rather than store what may be
 * old). Takes r. */
static int finish_tx(const struct store *s, PGresult *r, const char *action, uint64_t gen,
    struct cache_row *row_out)
{
	int err;

	if (row_from(r, 0, row_out) < 0) {
		err = BLOQR_ENOMEM;
		goto fail;
	}
	PQclear(r);
	r = NULL;
	if ((err = audit(s, action, row_out)) != BLOQR_OK || (err = pg_commit(s->pg)) != BLOQR_OK)
		goto fail;
	cache_written(s->cache, CACHE_DEPLOYMENTS, row_out, gen);
	return BLOQR_OK;
fail:
	PQclear(r);
	pg_rollback(s->pg);
	cache_row_free(row_out);
	memset(row_out, 0, sizeof *row_out);
	return err;
}

int deployments_record(const struct store *s, const struct deployment_in *in, struct cache_row *row_out)
{
	uint64_t gen = cache_gen(s->cache, CACHE_DEPLOYMENTS);
	char build[24], dur[24];
	PGresult *r = NULL;
	int err;

	memset(row_out, 0, sizeof *row_out);
	if ((err = pg_begin(s->pg)) != BLOQR_OK)
		return err;
	{
		const char *p[] = { in->version };
		if ((r = pg_query(s->pg, &st_next_build, p, &err)) == NULL)
			goto fail;
	}
	snprintf(build, sizeof build, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	snprintf(dur, sizeof dur, "%lld", in->duration_ms);
	{
		const char *p[] = { in->version, build, in->git_commit, in->git_branch, in->deployed_by,
			in->status, in->duration_ms >= 0 ? dur : NULL, in->run_id, in->run_url, in->metadata };
		if ((r = pg_query(s->pg, &st_insert, p, &err)) == NULL)
			goto fail;
	}
	return finish_tx(s, r, "deployment.create", gen, row_out);
fail:
	pg_rollback(s->pg);
	return err;
}

int deployments_rollback(const struct store *s, const char *full_version, struct cache_row *row_out)
{
	uint64_t gen = cache_gen(s->cache, CACHE_DEPLOYMENTS);
	const char *p[] = { full_version };
	PGresult *r;
	int err;

	memset(row_out, 0, sizeof *row_out);
	if ((err = pg_begin(s->pg)) != BLOQR_OK)
		return err;
	if ((r = pg_query(s->pg, &st_rollback, p, &err)) == NULL) {
		pg_rollback(s->pg);
		return err;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		pg_rollback(s->pg);
		return BLOQR_ENOTFOUND;
	}
	return finish_tx(s, r, "deployment.rollback", gen, row_out);
}
