/* bloqr-admin deploy record (CONTRACT §1). */
#ifndef BLOQR_ADMIN_DEPLOY_H
#define BLOQR_ADMIN_DEPLOY_H

#include "admin/cli.h"

struct conf;

/* The options of `deploy record`, in this order: --version, --commit,
 * --branch, --by, --status, --duration-ms, --run-id, --run-url. */
#define ADMIN_DEPLOY_NOPTS 8
extern const struct admin_optdef admin_deploy_opts[ADMIN_DEPLOY_NOPTS];

/* Record the deployment the option values v (as admin_parse left them)
 * describe, in PostgreSQL, and print its full version (V+build.N) on
 * stdout. Returns an enum admin_exit, with one line on stderr unless
 * ADMIN_OK (ADMIN_USAGE for a missing or invalid value). */
int admin_deploy_record(const struct conf *conf, const char *const v[ADMIN_DEPLOY_NOPTS]);

#endif
