/* bloqr-admin deploy record (CONTRACT §1). */
#ifndef BLOQR_ADMIN_DEPLOY_H
#define BLOQR_ADMIN_DEPLOY_H

struct conf;

/* `deploy record --version V --commit SHA --branch B --by WHO
 * [--status success|failed] [--duration-ms N] [--run-id ID] [--run-url URL]`.
 * argv[0..argc) are the words after "deploy record" (options take their
 * value as the next word or after '='; -c/--config FILE is accepted and
 * skipped, the caller has loaded conf). Records the deployment in
 * PostgreSQL and prints its full version (V+build.N) on stdout. Returns 0;
 * 2 after a usage or validation error; 1 on any other failure — each with
 * one line on stderr. */
int admin_deploy_record(const struct conf *conf, int argc, char **argv);

#endif
