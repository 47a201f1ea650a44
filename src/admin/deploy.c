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

enum { DEPLOY_OK = 0, DEPLOY_FAIL = 1, DEPLOY_USAGE = 2 };



/* A text option: valid per deployments_text_valid, else the usage status. */
static bool text_ok(const char *opt_name, const char *v, size_t max)
{
	if (v == NULL || deployments_text_valid(v, max))
		return true;
	admin_errorf("invalid %s: 1 to %zu bytes of UTF-8 text without control characters", opt_name, max);
	return false;
}

int admin_deploy_record(const struct conf *conf, int argc, char **argv)
{
	static const struct { const char *name; int field; } opts[] = {
		{ "--version", 0 }, { "--commit", 1 }, { "--branch", 2 }, { "--by", 3 },
		{ "--status", 4 }, { "--duration-ms", 5 }, { "--run-id", 6 }, { "--run-url", 7 },
		{ "--config", 8 }, { "-c", 8 },
	};
	const char *v[9] = { NULL };
	struct deployment_in in;
	struct cache_row row = { 0 };
	struct pg *pg = NULL;
	int rc;

	for (int i = 0; i < argc; i++) {
		size_t k;
		int r = 0;

		for (k = 0; k < sizeof opts / sizeof opts[0]; k++)
			if ((r = admin_opt_value(argc, argv, &i, NULL, opts[k].name, &v[opts[k].field])) != 0)
				break;
		if (r < 0) {
			admin_errorf("deploy record: %s needs a value", opts[k].name);
			return DEPLOY_USAGE;
		}
		if (k == sizeof opts / sizeof opts[0]) {
			admin_errorf("deploy record: unexpected argument '%s'", argv[i]);
			return DEPLOY_USAGE;
		}
	}
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
		return DEPLOY_USAGE;
	}
	if (!deployments_version_valid(in.version)) {
		admin_errorf("invalid --version '%.*s': 1 to %d characters of 0-9, A-Z, a-z, '.' and '-'",
		    DEPLOY_VERSION_MAX + 1, in.version, DEPLOY_VERSION_MAX);
		return DEPLOY_USAGE;
	}
	if (!text_ok("--commit", in.git_commit, DEPLOY_COMMIT_MAX) ||
	    !text_ok("--branch", in.git_branch, DEPLOY_BRANCH_MAX) ||
	    !text_ok("--by", in.deployed_by, DEPLOY_BY_MAX) ||
	    !text_ok("--run-id", in.run_id, DEPLOY_RUN_ID_MAX) ||
	    !text_ok("--run-url", in.run_url, DEPLOY_RUN_URL_MAX))
		return DEPLOY_USAGE;
	if (in.status && !deployments_status_valid(in.status)) {
		admin_errorf("invalid --status '%.*s': success or failed", 32, in.status);
		return DEPLOY_USAGE;
	}
	if (v[5]) {
		int64_t n = text_parse_uint(v[5], strlen(v[5]));

		if (n < 0 || n > DEPLOY_DURATION_MAX) {
			admin_errorf("invalid --duration-ms '%.*s': a whole number from 0 to %lld",
			    32, v[5], DEPLOY_DURATION_MAX);
			return DEPLOY_USAGE;
		}
		in.duration_ms = n;
	}

	if ((pg = pg_new(conf->db_url, conf->db_statement_timeout_ms, "bloqr-admin")) == NULL) {
		admin_errorf("out of memory");
		return DEPLOY_FAIL;
	}
	if (pg_connect(pg) != PG_OK) {
		admin_errorf("postgres: cannot connect: %s", pg_last_error(pg));
		rc = DEPLOY_FAIL;
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
		rc = DEPLOY_FAIL;
	} else if (rc != PG_OK) {
		const char *msg = pg_last_error(pg);

		admin_errorf("postgres: recording the deployment failed: %s",
		    msg && msg[0] ? msg : bloqr_strerror(rc));
		rc = DEPLOY_FAIL;
	} else {
		printf("%s\n", row.cols[DEPLOY_COL_FULL_VERSION]);
		rc = fflush(stdout) == 0 ? DEPLOY_OK : DEPLOY_FAIL;
	}
out:
	cache_row_free(&row);
	pg_free(pg);
	return rc;
}
