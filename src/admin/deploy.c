/* bloqr-admin deploy record: what a deploy script calls after shipping.
 * The deployment goes to PostgreSQL only; the cache triggers on
 * deployment_history tell every node's L1 cache, as for any outside write. */
#include "admin/deploy.h"

#include "admin/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "config.h"
#include "deployments.h"
#include "jsonx.h"
#include "pg.h"
#include "store.h"
#include "text.h"

const struct admin_optdef admin_deploy_opts[ADMIN_DEPLOY_NOPTS] = {
	{ "version", true, "a version" }, { "commit", true, "a commit" }, { "branch", true, "a branch" },
	{ "by", true, "a name" }, { "status", true, "success or failed" }, { "duration-ms", true, "a number" },
	{ "run-id", true, "an id" }, { "run-url", true, "a URL" },
};


/* A text option: valid per deployments_text_valid, else the usage status. */
static bool text_ok(const char *opt_name, const char *v, size_t max)
{
	if (v == NULL || deployments_text_valid(v, max))
		return true;
	admin_errorf("invalid %s: 1 to %zu bytes of UTF-8 text without control characters", opt_name, max);
	return false;
}

int admin_deploy_record(const struct conf *conf, const char *const v[ADMIN_DEPLOY_NOPTS])
{
	struct deployment_in in;
	struct cache_row row = { 0 };
	struct pg *pg = NULL;
	int rc;

	/* Everything is checked before the database is touched. */
	memset(&in, 0, sizeof in);
	in.version = v[0];
	in.git_commit = v[1];
	in.git_branch = v[2];
	in.deployed_by = v[3];
	in.status = v[4];
	in.run_id = v[6];
	in.run_url = v[7];
	in.duration_ms = -1;
	if (!in.version || !in.git_commit || !in.git_branch || !in.deployed_by) {
		admin_errorf("deploy record: --version, --commit, --branch and --by are required");
		return ADMIN_USAGE;
	}
	if (!deployments_version_valid(in.version)) {
		admin_errorf("invalid --version '%.*s': 1 to %d characters of 0-9, A-Z, a-z, '.' and '-'",
		    DEPLOY_VERSION_MAX + 1, in.version, DEPLOY_VERSION_MAX);
		return ADMIN_USAGE;
	}
	if (!text_ok("--commit", in.git_commit, DEPLOY_COMMIT_MAX) ||
	    !text_ok("--branch", in.git_branch, DEPLOY_BRANCH_MAX) ||
	    !text_ok("--by", in.deployed_by, DEPLOY_BY_MAX) ||
	    !text_ok("--run-id", in.run_id, DEPLOY_RUN_ID_MAX) ||
	    !text_ok("--run-url", in.run_url, DEPLOY_RUN_URL_MAX))
		return ADMIN_USAGE;
	if (in.status && !deployments_status_valid(in.status)) {
		admin_errorf("invalid --status '%.*s': success or failed", 32, in.status);
		return ADMIN_USAGE;
	}
	if (v[5]) {
		int64_t n = text_parse_uint(v[5], strlen(v[5]));

		if (n < 0 || n > DEPLOY_DURATION_MAX) {
			admin_errorf("invalid --duration-ms '%.*s': a whole number from 0 to %lld",
			    32, v[5], DEPLOY_DURATION_MAX);
			return ADMIN_USAGE;
		}
		in.duration_ms = n;
	}

	if ((pg = pg_new(conf->db_url, conf->db_statement_timeout_ms, "bloqr-admin")) == NULL) {
		admin_errorf("out of memory");
		return ADMIN_FAIL;
	}
	if (pg_connect(pg) != PG_OK) {
		admin_errorf("postgres: cannot connect: %s", pg_last_error(pg));
		rc = ADMIN_FAIL;
		goto out;
	}
	{
		/* No cache: the triggers tell every host's, as for any outside
		 * write; no actor or request: the audit row says bloqr-admin. */
		const struct store st = { .pg = pg };
		rc = deployments_record(&st, &in, &row);
	}
	if (rc == PG_ECONFLICT) {
		admin_errorf("a deployment with version '%s' and this build number already exists", in.version);
		rc = ADMIN_FAIL;
	} else if (rc != PG_OK) {
		const char *msg = pg_last_error(pg);

		admin_errorf("postgres: recording the deployment failed: %s",
		    msg && msg[0] ? msg : bloqr_strerror(rc));
		rc = ADMIN_FAIL;
	} else {
		printf("%s\n", row.cols[DEPLOY_COL_FULL_VERSION]);
		rc = fflush(stdout) == 0 ? ADMIN_OK : ADMIN_FAIL;
	}
out:
	cache_row_free(&row);
	pg_free(pg);
	return rc;
}
