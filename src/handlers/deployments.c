/* Deployment endpoints (CONTRACT §4 "Public" and "Deployments"): the
 * version, the history and its stats are read through the L1 cache; a new
 * deployment and a rollback are written to PostgreSQL (audited in the same
 * transaction) and then handed to the cache. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "deployments.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "worker.h"

#define FILTER_MAX 200
/* Bodies are our own JSON, but metadata written with psql may nest deeper
 * than a request body could. */
#define BODY_MAX_DEPTH 1024

static void cache_headers(struct http_response *res, enum cache_outcome how)
{
	res->cache_control = "public, max-age=60";
	res->x_cache = cache_outcome_name(how);
}

/* The least reassuring of two outcomes, for a reply built from several
 * reads: STALE over BYPASS over MISS over HIT. */
static enum cache_outcome worst(enum cache_outcome a, enum cache_outcome b)
{
	static const int rank[] = { [CACHE_HIT] = 0, [CACHE_MISS] = 1, [CACHE_BYPASS] = 2, [CACHE_STALE] = 3 };

	return rank[b] > rank[a] ? b : a;
}

/* Parse a deployment body (one JSON object); NULL when out of memory or
 * the text is not what put_body wrote. */
static struct json_object *parse_body(const char *s, size_t n)
{
	struct json_tokener *tok;
	struct json_object *o;

	if (s == NULL || n > INT_MAX || (tok = json_tokener_new_ex(BODY_MAX_DEPTH)) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}


/* ------------------------------------------------------ GET /api/version -- */

void h_version(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	static const char *const fields[] = { "version", "buildNumber", "fullVersion", "gitCommit",
		"gitBranch", "deployedAt", "deployedBy", "status", "metadata" };
	const struct store st = h_store(app, req);
	struct json_object *o = NULL, *d = NULL, *v;
	struct buf one = BUF_INIT;
	enum cache_outcome how = CACHE_BYPASS;
	long n = 0;
	int rc;

	(void)m;
	if ((rc = deployments_latest(&st, &one, &n, &how)) != 0) {
		h_error(res, rc);
		goto out;
	}
	if (one.oom || (o = h_success()) == NULL || jsonx_add_str(o, "name", "bloqr-backend") < 0)
		goto oom;
	if (n == 0) {
		if (jsonx_add_str(o, "version", PACKAGE_VERSION) < 0 ||
		    jsonx_add_str(o, "message", "No deployment history available") < 0)
			goto oom;
	} else {
		if ((d = parse_body(one.data, one.len)) == NULL)
			goto oom;
		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
			if (!json_object_object_get_ex(d, fields[i], &v))
				v = NULL;
			if (jsonx_add(o, fields[i], json_object_get(v)) < 0)
				goto oom;
		}
	}
	h_json(res, 200, o);
	o = NULL;
	cache_headers(res, how);
	goto out;
oom:
	http_error(res, 500, "Out of memory");
out:
	json_object_put(o);
	json_object_put(d);
	buf_free(&one);
}

/* -------------------------------------------------- GET /api/deployments -- */

void h_deployments_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	const char *version, *status, *branch;
	enum cache_outcome how = CACHE_BYPASS;
	long limit = h_list_limit(req), n = 0;
	int rc;

	(void)m;
	if (h_query_str(req, res, "version", FILTER_MAX, &version) < 0 ||
	    h_query_str(req, res, "status", FILTER_MAX, &status) < 0 ||
	    h_query_str(req, res, "branch", FILTER_MAX, &branch) < 0)
		return;
	/* The hot path: the cached bodies are copied straight into the
	 * response between a fixed head and tail, never parsed. */
	buf_reset(&res->body);
	buf_puts(&res->body, "{\"success\":true,\"deployments\":[");
	rc = deployments_list(&st, version, status, branch, limit, &res->body, &n, &how);
	if (rc != 0) {
		h_error(res, rc);
		return;
	}
	buf_printf(&res->body, "],\"count\":%ld}", n);
	if (res->body.oom) {
		http_error(res, 500, "Out of memory");
		return;
	}
	res->status = 200;
	res->content_type = NULL;
	cache_headers(res, how);
}

/* -------------------------------------------- GET /api/deployments/stats -- */

void h_deployments_stats(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	struct json_object *o = NULL, *d = NULL, *fv = NULL;
	struct buf one = BUF_INIT;
	enum cache_outcome how = CACHE_HIT, h;
	long total = 0, ok = 0, failed = 0, n = 0;
	int rc;

	(void)m;
	if ((rc = deployments_count(&st, NULL, &total, &h)) != 0)
		goto pg_fail;
	how = worst(how, h);
	if ((rc = deployments_count(&st, "success", &ok, &h)) != 0)
		goto pg_fail;
	how = worst(how, h);
	if ((rc = deployments_count(&st, "failed", &failed, &h)) != 0)
		goto pg_fail;
	how = worst(how, h);
	if ((rc = deployments_latest(&st, &one, &n, &h)) != 0)
		goto pg_fail;
	how = worst(how, h);
	if (one.oom)
		goto oom;
	if (n > 0) {
		if ((d = parse_body(one.data, one.len)) == NULL)
			goto oom;
		if (json_object_object_get_ex(d, "fullVersion", &fv))
			json_object_get(fv);
		else
			fv = NULL;
	}
	if ((o = h_success()) == NULL ||
	    jsonx_add_int(o, "totalDeployments", total) < 0 ||
	    jsonx_add_int(o, "successfulDeployments", ok) < 0 ||
	    jsonx_add_int(o, "failedDeployments", failed) < 0)
		goto oom;
	rc = jsonx_add(o, "latestVersion", fv);
	fv = NULL;
	if (rc < 0)
		goto oom;
	h_json(res, 200, o);
	o = NULL;
	res->x_cache = cache_outcome_name(how);
	goto out;
pg_fail:
	h_error(res, rc);
	goto out;
oom:
	http_error(res, 500, "Out of memory");
out:
	json_object_put(fv);
	json_object_put(o);
	json_object_put(d);
	buf_free(&one);
}

/* -------------------------------------------------------------- writes -- */

/* A required text field: present, a string, valid per deployments_text_valid. */
static int required_text(struct json_object *body, const char *field, size_t max, const char **out,
    char *err, size_t errlen)
{
	int rc = jsonx_get_string(body, field, max, out, err, errlen);

	if (rc < 0)
		return -1;
	if (rc == 0) {
		snprintf(err, errlen, "Field '%s' is required", field);
		return -1;
	}
	if (!deployments_text_valid(*out, max)) {
		snprintf(err, errlen, "Field '%s' must be 1 to %zu bytes of text without control characters",
		    field, max);
		return -1;
	}
	return 0;
}

/* An optional text field: absent/null, or valid like a required one. */
static int optional_text(struct json_object *body, const char *field, size_t max, const char **out,
    char *err, size_t errlen)
{
	int rc = jsonx_get_string(body, field, max, out, err, errlen);

	if (rc < 0)
		return -1;
	if (rc > 0 && !deployments_text_valid(*out, max)) {
		snprintf(err, errlen, "Field '%s' must be 1 to %zu bytes of text without control characters",
		    field, max);
		return -1;
	}
	return 0;
}

/* Fill in from body; -1 with err naming the field. Strings stay owned by body. */
static int parse_deployment(struct json_object *body, struct deployment_in *in, char *err, size_t errlen)
{
	struct json_object *meta;
	long long dur;
	int rc;

	memset(in, 0, sizeof *in);
	in->duration_ms = -1;
	rc = jsonx_get_string(body, "version", DEPLOY_VERSION_MAX, &in->version, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		snprintf(err, errlen, "Field 'version' is required");
		return -1;
	}
	if (!deployments_version_valid(in->version)) {
		snprintf(err, errlen, "Field 'version' must be 1 to %d characters of 0-9, A-Z, a-z, '.' and '-'",
		    DEPLOY_VERSION_MAX);
		return -1;
	}
	if (required_text(body, "gitCommit", DEPLOY_COMMIT_MAX, &in->git_commit, err, errlen) < 0 ||
	    required_text(body, "gitBranch", DEPLOY_BRANCH_MAX, &in->git_branch, err, errlen) < 0 ||
	    required_text(body, "deployedBy", DEPLOY_BY_MAX, &in->deployed_by, err, errlen) < 0)
		return -1;
	if (jsonx_get_string(body, "status", 16, &in->status, err, errlen) < 0)
		return -1;
	if (in->status && !deployments_status_valid(in->status)) {
		snprintf(err, errlen, "Field 'status' must be 'success' or 'failed'");
		return -1;
	}
	if ((rc = jsonx_get_int(body, "deploymentDuration", 0, DEPLOY_DURATION_MAX, &dur, err, errlen)) < 0)
		return -1;
	if (rc > 0)
		in->duration_ms = dur;
	if (optional_text(body, "workflowRunId", DEPLOY_RUN_ID_MAX, &in->run_id, err, errlen) < 0 ||
	    optional_text(body, "workflowRunUrl", DEPLOY_RUN_URL_MAX, &in->run_url, err, errlen) < 0)
		return -1;
	/* Any JSON value; null or absent stores SQL NULL. */
	if (json_object_object_get_ex(body, "metadata", &meta) && meta != NULL &&
	    (in->metadata = jsonx_dump(meta, NULL)) == NULL) {
		snprintf(err, errlen, "Out of memory");
		return -1;
	}
	return 0;
}

void h_deployments_create(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	struct cache_row row = { 0 };
	struct deployment_in in;
	struct json_object *body;
	char err[256];
	int rc;

	(void)m;
	if ((body = h_body_object(req, res)) == NULL)
		return;
	if (parse_deployment(body, &in, err, sizeof err) < 0) {
		http_error(res, 400, "%s", err);
		goto out;
	}
	if ((rc = deployments_record(&st, &in, &row)) != BLOQR_OK) {
		if (rc == BLOQR_ECONFLICT)
			http_error(res, 409, "A deployment with this full version already exists");
		else
			h_error(res, rc);
		goto out;
	}
	h_reply_raw(res, 201, "deployment", row.body);
out:
	cache_row_free(&row);
	json_object_put(body);
}

void h_deployments_rollback(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const struct store st = h_store(app, req);
	struct cache_row row = { 0 };
	const char *fv = m->params[0];
	int rc;

	if (fv == NULL || fv[0] == '\0') {
		http_error(res, 404, "Deployment not found");
		return;
	}
	rc = deployments_rollback(&st, fv, &row);
	if (rc == BLOQR_ENOTFOUND)
		http_error(res, 404, "Deployment not found");
	else if (rc != BLOQR_OK)
		h_error(res, rc);
	else
		h_reply_raw(res, 200, "deployment", row.body);
	cache_row_free(&row);
}
