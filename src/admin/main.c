/* bloqr-admin: the operator CLI (CONTRACT §1).
 *
 *   bloqr-admin [-c FILE] COMMAND [SUBCOMMAND] [OPTIONS]
 *
 * Commands are rows of admin_cmds[]: a name, an optional second word
 * ("user create"), the function and its usage line. A command function gets
 * the words after the command, parses its own options (admin_opt_config
 * accepts -c there too), loads the configuration with admin_conf and returns
 * the exit status: ADMIN_OK, ADMIN_FAIL (one line on stderr) or ADMIN_USAGE
 * (admin_usage_error). Nothing below main() exits. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "migrate.h"

enum { ADMIN_OK = 0, ADMIN_FAIL = 1, ADMIN_USAGE = 2 };

static const char prog[] = "bloqr-admin";

struct admin_ctx {
	const char *conf_path;   /* -c FILE, or NULL */
	struct conf conf;
	bool conf_loaded;
};

struct admin_cmd {
	const char *name;
	const char *sub;         /* second word, or NULL */
	int (*run)(struct admin_ctx *ctx, int argc, char **argv);
	const char *args;        /* usage after the command words */
	const char *help;
};

static int cmd_migrate(struct admin_ctx *ctx, int argc, char **argv);

static const struct admin_cmd admin_cmds[] = {
	{ "migrate", NULL, cmd_migrate, "[--dir DIR] [--status]",
	  "apply pending PostgreSQL and SQLite migrations (--status: list them)" },
};
#define NCMDS (sizeof admin_cmds / sizeof admin_cmds[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-c FILE] COMMAND [OPTIONS]\n"
	    "  -c, --config FILE   configuration file (default: $BLOQR_CONF)\n"
	    "commands:\n", prog);
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %s%s%s %s\n      %s\n", admin_cmds[i].name,
		    admin_cmds[i].sub ? " " : "", admin_cmds[i].sub ? admin_cmds[i].sub : "",
		    admin_cmds[i].args, admin_cmds[i].help);
}

/* Print "bloqr-admin: <message>" with any line breaks flattened. */
static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void errorf(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s: %s\n", prog, line);
}

/* One line naming the problem, then the usage; returns ADMIN_USAGE. */
static int admin_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int admin_usage_error(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", prog, line);
	usage(stderr);
	return ADMIN_USAGE;
}

/* Match argv[*i] against an option with a value: "-s VALUE", "-sVALUE",
 * "--long VALUE", "--long=VALUE" (short or long may be NULL). Returns 1 and
 * sets *val (advancing *i past the value) when it matched, 0 when argv[*i]
 * is another option, -1 when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *s, const char *l, const char **val)
{
	const char *a = argv[*i];
	size_t n;

	if (s != NULL && strncmp(a, s, strlen(s)) == 0) {
		if (a[strlen(s)] != '\0') {
			*val = a + strlen(s);
			return 1;
		}
	} else if (l != NULL && strncmp(a, l, (n = strlen(l))) == 0 && (a[n] == '=' || a[n] == '\0')) {
		if (a[n] == '=') {
			*val = a + n + 1;
			return 1;
		}
	} else {
		return 0;
	}
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

/* -c FILE / --config FILE anywhere among a command's options: 1 when
 * argv[*i] was one, 0 when not, -1 (usage error printed) on a missing value. */
static int admin_opt_config(struct admin_ctx *ctx, int argc, char **argv, int *i)
{
	int r = opt_value(argc, argv, i, "-c", "--config", &ctx->conf_path);

	if (r < 0)
		admin_usage_error("%s needs a file name", argv[*i]);
	return r;
}

/* Load the configuration once: -c FILE, else $BLOQR_CONF. NULL (message
 * printed) when there is none or it is invalid. */
static const struct conf *admin_conf(struct admin_ctx *ctx)
{
	char err[512];
	const char *path = ctx->conf_path ? ctx->conf_path : conf_path_from_env();

	if (ctx->conf_loaded)
		return &ctx->conf;
	if (path == NULL) {
		errorf("no configuration: pass -c FILE or set BLOQR_CONF");
		return NULL;
	}
	if (conf_load(&ctx->conf, path, err, sizeof err) < 0) {
		errorf("%s", err);
		return NULL;
	}
	ctx->conf_loaded = true;
	return &ctx->conf;
}

/* ----------------------------------------------------------- migrate -- */

static int cmd_migrate(struct admin_ctx *ctx, int argc, char **argv)
{
	const struct conf *c;
	const char *dir = NULL;
	bool status = false;
	char err[1024];
	int r;

	for (int i = 0; i < argc; i++) {
		if ((r = admin_opt_config(ctx, argc, argv, &i)) != 0) {
			if (r < 0)
				return ADMIN_USAGE;
		} else if ((r = opt_value(argc, argv, &i, NULL, "--dir", &dir)) != 0) {
			if (r < 0)
				return admin_usage_error("--dir needs a directory");
		} else if (strcmp(argv[i], "--status") == 0) {
			status = true;
		} else {
			return admin_usage_error("migrate: unexpected argument '%s'", argv[i]);
		}
	}
	if (dir != NULL && dir[0] == '\0')
		return admin_usage_error("--dir needs a directory");
	if ((c = admin_conf(ctx)) == NULL)
		return ADMIN_FAIL;
	if (dir == NULL)
		dir = migrate_default_dir();
	if (migrate_run(c, dir, status, stdout, err, sizeof err) < 0) {
		fflush(stdout);
		errorf("%s", err);
		return ADMIN_FAIL;
	}
	return ADMIN_OK;
}

/* -------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
	struct admin_ctx ctx = { NULL, { 0 }, false };
	const struct admin_cmd *cmd = NULL;
	int i = 1, r, rc;

	/* Errors are reported by the commands, one line each; library
	 * warnings (e.g. a failed connect attempt) would only repeat them. */
	log_threshold = LOG_LVL_ERROR;
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return ADMIN_OK;
		}
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if ((r = admin_opt_config(&ctx, argc, argv, &i)) < 0)
			return ADMIN_USAGE;
		if (r == 0)
			return admin_usage_error("unknown option '%s'", argv[i]);
	}
	if (i >= argc)
		return admin_usage_error("no command given");
	for (size_t k = 0; k < NCMDS; k++) {
		if (strcmp(admin_cmds[k].name, argv[i]) != 0)
			continue;
		if (admin_cmds[k].sub == NULL ||
		    (i + 1 < argc && strcmp(admin_cmds[k].sub, argv[i + 1]) == 0)) {
			cmd = &admin_cmds[k];
			break;
		}
	}
	if (cmd == NULL) {
		bool known = false;

		for (size_t k = 0; k < NCMDS; k++)
			known = known || strcmp(admin_cmds[k].name, argv[i]) == 0;
		if (known && i + 1 < argc)
			return admin_usage_error("unknown command '%s %s'", argv[i], argv[i + 1]);
		if (known)
			return admin_usage_error("'%s' needs a subcommand", argv[i]);
		return admin_usage_error("unknown command '%s'", argv[i]);
	}
	i += cmd->sub ? 2 : 1;
	rc = cmd->run(&ctx, argc - i, argv + i);
	if (ctx.conf_loaded)
		conf_free(&ctx.conf);
	/* Output that could not be written is a failure too. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (rc == ADMIN_OK)
			errorf("cannot write to standard output");
		rc = rc == ADMIN_OK ? ADMIN_FAIL : rc;
	}
	return rc;
}
