/* bloqr-admin: the operator CLI (CONTRACT §1).
 *
 *   bloqr-admin [-c FILE] COMMAND [SUBCOMMAND] [OPTIONS]
 *
 * Commands are rows of admin_cmds[]: a name, an optional second word
 * ("user create"), the function and its usage. A command function gets the
 * words after the command, parses them with admin_parse (getopt_long: its
 * own options, -c FILE and --help), loads the configuration with admin_conf
 * and returns the exit status: ADMIN_OK, ADMIN_FAIL (one line on stderr) or
 * ADMIN_USAGE. Nothing below main() exits. */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "admin/cli.h"
#include "admin/deploy.h"
#include "auth.h"
#include "buf.h"
#include "cache.h"
#include "config.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "text.h"
#include "users.h"
#include "version.h"

static const char prog[] = "bloqr-admin";

struct admin_ctx {
	const char *conf_path;   /* -c FILE, or NULL */
	struct conf conf;
	bool conf_loaded;
};

struct admin_cmd {
	const char *name;
	const char *sub;         /* second word, or NULL */
	int (*run)(struct admin_ctx *ctx, const struct admin_usage *u, int argc, char **argv);
	struct admin_usage usage;
};

#define CMD(f) static int f(struct admin_ctx *ctx, const struct admin_usage *u, int argc, char **argv)
CMD(cmd_migrate);
CMD(cmd_user_create);
CMD(cmd_token_create);
CMD(cmd_deploy_record);
CMD(cmd_cache_rebuild);
CMD(cmd_cache_verify);

static const struct admin_cmd admin_cmds[] = {
	{ "migrate", NULL, cmd_migrate, { "migrate", "[--dir DIR] [--status]",
	  "apply pending PostgreSQL and SQLite migrations (--status: list them)" } },
	{ "user", "create", cmd_user_create, { "user create",
	  "--email E [--name N] [--role admin|user|readonly] [--tier T] [--password-stdin]",
	  "create a user (password: one line on standard input); prints its id" } },
	{ "token", "create", cmd_token_create, { "token create", "--email E [--ttl-days D] [--name LABEL]",
	  "create a bearer token for a user (D 0..3650, default 90, 0 = never expires); prints it" } },
	{ "deploy", "record", cmd_deploy_record, { "deploy record",
	  "--version V --commit SHA --branch B --by WHO [--status success|failed] [--duration-ms N] "
	  "[--run-id ID] [--run-url URL]",
	  "record a deployment; prints its full version (V+build.N)" } },
	{ "cache", "rebuild", cmd_cache_rebuild, { "cache rebuild", "",
	  "refill this host's SQLite cache from PostgreSQL" } },
	{ "cache", "verify", cmd_cache_verify, { "cache verify", "",
	  "compare every cached row with PostgreSQL; prints differences, exit 1 if any" } },
};
#define NCMDS (sizeof admin_cmds / sizeof admin_cmds[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-c FILE] COMMAND [OPTIONS]\n"
	    "       %s -V | -h\n"
	    "  -c, --config FILE   configuration file (default: $BLOQR_CONF)\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "commands:\n", prog, prog);
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %s %s\n      %s\n", admin_cmds[i].usage.words, admin_cmds[i].usage.args,
		    admin_cmds[i].usage.help);
	fprintf(f, "'%s COMMAND --help' describes one command.\n", prog);
}


/* One line naming the problem; returns ADMIN_USAGE. */
static int admin_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int admin_usage_error(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One line, as every error (CONTRACT §1); the usage is a --help away. */
	fprintf(stderr, "%s: %s (see '%s --help')\n", prog, line, prog);
	return ADMIN_USAGE;
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
		admin_errorf("no configuration: pass -c FILE or set BLOQR_CONF");
		return NULL;
	}
	if (conf_load(&ctx->conf, path, err, sizeof err) < 0) {
		admin_errorf("%s", err);
		return NULL;
	}
	ctx->conf_loaded = true;
	return &ctx->conf;
}

/* ----------------------------------------------------------- migrate -- */

CMD(cmd_migrate)
{
	static const struct admin_optdef defs[] = { { "dir", true, "a directory" }, { "status", false, NULL } };
	const char *v[2];
	const struct conf *c;
	const char *dir;
	bool status;
	char err[1024];
	int r;

	if ((r = admin_parse(u, defs, 2, v, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	dir = v[0];
	status = v[1] != NULL;
	if (dir != NULL && dir[0] == '\0')
		return admin_usage_error("--dir needs a directory");
	if ((c = admin_conf(ctx)) == NULL)
		return ADMIN_FAIL;
	if (dir == NULL)
		dir = migrate_default_dir();
	if (migrate_run(c, dir, status, stdout, err, sizeof err) < 0) {
		fflush(stdout);
		admin_errorf("%s", err);
		return ADMIN_FAIL;
	}
	return ADMIN_OK;
}

/* ------------------------------------------------ user and token -- */

/* A value that fails validation: one line, the usage status. */
static int admin_bad_value(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int admin_bad_value(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	admin_errorf("%s", line);
	return ADMIN_USAGE;
}

/* A free-text option (a name, a token label): valid UTF-8 of at most max
 * characters with no control characters. */
static bool admin_text_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (!text_utf8_valid(s, n) || text_utf8_len(s) > max)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Connect to [database] url with the configured statement timeout. NULL
 * (message printed) when that fails; the caller frees with pg_free. */
static struct pg *admin_pg(const struct conf *c)
{
	struct pg *pg = pg_new(c->db_url, c->db_statement_timeout_ms, "bloqr-admin");

	if (pg == NULL) {
		admin_errorf("out of memory");
		return NULL;
	}
	if (pg_connect(pg) != PG_OK) {
		admin_errorf("postgres: cannot connect: %s", pg_last_error(pg));
		pg_free(pg);
		return NULL;
	}
	return pg;
}

/* One line for a pg_err that the command has no better words for. */
static int admin_pg_failed(struct pg *pg, int err, const char *what)
{
	const char *msg = pg_last_error(pg);

	if (msg == NULL || msg[0] == '\0')
		msg = err == PG_EUNAVAIL ? "server unavailable" : "unexpected error";
	admin_errorf("postgres: %s failed: %s", what, msg);
	return ADMIN_FAIL;
}

/* Read the password for --password-stdin: one line of standard input
 * without its line end (\n or \r\n), not empty, no NUL byte, at most
 * USERS_PASSWORD_MAX bytes; the rest of a longer line is read and dropped
 * so memory stays bounded. On a terminal a prompt goes to stderr and echo
 * is off while typing. Returns 0, or -1 with the message printed. pw is
 * always NUL-terminated; the caller wipes it. */
static int read_password(char pw[static USERS_PASSWORD_MAX + 2])
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO), echo_off = false, too_long = false, nul = false;
	size_t n = 0;
	int ch, rc = -1;

	pw[0] = '\0';
	if (tty) {
		fputs("Password: ", stderr);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
		}
	}
	/* Room for USERS_PASSWORD_MAX bytes and a trailing \r. */
	while ((ch = getc(stdin)) != EOF && ch != '\n') {
		if (n < USERS_PASSWORD_MAX + 1)
			pw[n++] = (char)ch;
		else
			too_long = true;
		nul = nul || ch == '\0';
	}
	if (echo_off) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (n > 0 && pw[n - 1] == '\r')
		n--;
	pw[n] = '\0';
	if (ferror(stdin))
		admin_errorf("cannot read the password from standard input");
	else if (too_long || n > USERS_PASSWORD_MAX)
		admin_errorf("the password is longer than %d bytes", USERS_PASSWORD_MAX);
	else if (nul)
		admin_errorf("the password contains a NUL byte");
	else if (n == 0)
		admin_errorf("the password read from standard input is empty");
	else
		rc = 0;
	if (rc < 0)
		sodium_memzero(pw, USERS_PASSWORD_MAX + 2);
	return rc;
}

CMD(cmd_user_create)
{
	static const struct admin_optdef defs[] = { { "email", true, "an address" }, { "name", true, NULL },
		{ "role", true, NULL }, { "tier", true, NULL }, { "password-stdin", false, NULL } };
	const char *v[5], *email, *name, *role, *tier;
	bool want_pw;
	char pw[USERS_PASSWORD_MAX + 2];
	char id[40];
	const struct conf *c;
	struct pg *pg;
	int r;

	if ((r = admin_parse(u, defs, 5, v, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	email = v[0];
	name = v[1];
	role = v[2];
	tier = v[3];
	want_pw = v[4] != NULL;
	/* Everything is checked before the configuration or the database. */
	if (email == NULL)
		return admin_usage_error("user create: --email is required");
	if (!users_email_valid(email))
		return admin_bad_value("invalid email address '%s'", email);
	if (name != NULL && !admin_text_ok(name, USERS_NAME_MAX))
		return admin_bad_value("invalid name: at most %d characters of UTF-8 text, no control characters",
		    USERS_NAME_MAX);
	if (role != NULL && !users_role_valid(role))
		return admin_bad_value("invalid role '%s' (admin, user or readonly)", role);
	if (tier != NULL && !users_tier_valid(tier))
		return admin_bad_value("invalid tier '%s' (anonymous, free, pro or admin)", tier);
	if ((c = admin_conf(ctx)) == NULL)
		return ADMIN_FAIL;
	if (want_pw && read_password(pw) < 0)
		return ADMIN_FAIL;
	if ((pg = admin_pg(c)) == NULL) {
		sodium_memzero(pw, sizeof pw);
		return ADMIN_FAIL;
	}
	r = users_create(pg, email, name, role, tier, want_pw ? pw : NULL, id);
	sodium_memzero(pw, sizeof pw);
	if (r == PG_ECONFLICT) {
		admin_errorf("a user with email '%s' already exists", email);
		r = ADMIN_FAIL;
	} else if (r != PG_OK) {
		r = admin_pg_failed(pg, r, "creating the user");
	} else {
		printf("%s\n", id);
		r = ADMIN_OK;
	}
	pg_free(pg);
	return r;
}

#define TOKEN_TTL_DAYS_DEFAULT 90
#define TOKEN_TTL_DAYS_MAX 3650
#define TOKEN_LABEL_MAX 200

CMD(cmd_token_create)
{
	static const struct admin_optdef defs[] = { { "email", true, "an address" },
		{ "ttl-days", true, "a number of days" }, { "name", true, "a label" } };
	const char *v[3], *email, *ttl, *label;
	char id[40], token[AUTH_TOKEN_LEN + 1];
	int64_t days = TOKEN_TTL_DAYS_DEFAULT;
	const struct conf *c;
	struct pg *pg;
	int r;

	if ((r = admin_parse(u, defs, 3, v, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	email = v[0];
	ttl = v[1];
	label = v[2];
	if (email == NULL)
		return admin_usage_error("token create: --email is required");
	if (!users_email_valid(email))
		return admin_bad_value("invalid email address '%s'", email);
	if (ttl != NULL) {
		days = text_parse_uint(ttl, strlen(ttl));
		if (days < 0 || days > TOKEN_TTL_DAYS_MAX)
			return admin_bad_value("invalid --ttl-days '%s': a whole number of days from 0 to %d (0 = never expires)",
			    ttl, TOKEN_TTL_DAYS_MAX);
	}
	if (label != NULL && !admin_text_ok(label, TOKEN_LABEL_MAX))
		return admin_bad_value("invalid --name: at most %d characters of UTF-8 text, no control characters",
		    TOKEN_LABEL_MAX);
	if ((c = admin_conf(ctx)) == NULL)
		return ADMIN_FAIL;
	if ((pg = admin_pg(c)) == NULL)
		return ADMIN_FAIL;
	r = users_find_by_email(pg, email, id);
	if (r == 0) {
		admin_errorf("no user with email '%s'", email);
		r = ADMIN_FAIL;
	} else if (r < 0) {
		r = admin_pg_failed(pg, r, "looking up the user");
	} else {
		r = auth_credential_create(pg, id, AUTH_KIND_TOKEN, (long)days * 86400L, label,
		    NULL, NULL, token);
		if (r == PG_EINPUT) {
			admin_errorf("user '%s' is banned: no token created", email);
			r = ADMIN_FAIL;
		} else if (r != PG_OK) {
			r = admin_pg_failed(pg, r, "creating the token");
		} else {
			printf("%s\n", token);
			r = ADMIN_OK;
		}
		sodium_memzero(token, sizeof token);
	}
	pg_free(pg);
	return r;
}

/* ------------------------------------------------------ deploy, cache -- */

CMD(cmd_deploy_record)
{
	const char *v[ADMIN_DEPLOY_NOPTS];
	const struct conf *c;
	int r;

	if ((r = admin_parse(u, admin_deploy_opts, ADMIN_DEPLOY_NOPTS, v, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	if ((c = admin_conf(ctx)) == NULL)
		return ADMIN_FAIL;
	return admin_deploy_record(c, v);
}

static struct cache *admin_cache(const struct conf *c)
{
	struct cache *cache;

	if (c->cache_path[0] == '\0') {
		admin_errorf("no cache configured ([cache] path is empty)");
		return NULL;
	}
	cache = cache_open(c->cache_path, c->cache_max_age, c->cache_strategy == CONF_WRITE_THROUGH);
	if (cache == NULL)
		admin_errorf("out of memory");
	else
		cache_set_max_rows(cache, c->cache_max_rows);
	return cache;
}

CMD(cmd_cache_rebuild)
{
	long rows[CACHE_NTABLES];
	const struct conf *c;
	struct cache *cache = NULL;
	struct pg *pg = NULL;
	int r;

	if ((r = admin_parse(u, NULL, 0, NULL, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	if ((c = admin_conf(ctx)) == NULL || (cache = admin_cache(c)) == NULL || (pg = admin_pg(c)) == NULL) {
		r = ADMIN_FAIL;
		goto out;
	}
	r = cache_rebuild(cache, pg, rows);
	if (r == BLOQR_ECACHE) {
		admin_errorf("cache: %s could not be rebuilt: the file is unusable, or another process "
		    "held its write lock past the 2 s wait; try again", c->cache_path);
		r = ADMIN_FAIL;
	} else if (r != PG_OK) {
		r = admin_pg_failed(pg, r, "rebuilding the cache");
	} else {
		for (int t = 0; t < CACHE_NTABLES; t++)
			printf("%s: %ld rows\n", cache_table_name(t), rows[t]);
		r = ADMIN_OK;
	}
out:
	cache_close(cache);
	pg_free(pg);
	return r;
}

CMD(cmd_cache_verify)
{
	struct buf report = BUF_INIT;
	const struct conf *c;
	struct cache *cache = NULL;
	struct pg *pg = NULL;
	long diffs;
	int r;

	if ((r = admin_parse(u, NULL, 0, NULL, &ctx->conf_path, argc, argv)) != 0)
		return r == 1 ? ADMIN_OK : r;
	if ((c = admin_conf(ctx)) == NULL || (cache = admin_cache(c)) == NULL || (pg = admin_pg(c)) == NULL) {
		r = ADMIN_FAIL;
		goto out;
	}
	diffs = cache_verify(cache, pg, &report);
	if (diffs < 0) {
		admin_errorf("cache verify failed: PostgreSQL or the cache file could not be read");
		r = ADMIN_FAIL;
	} else {
		fputs(report.data ? report.data : "", stdout);
		printf("%ld difference%s\n", diffs, diffs == 1 ? "" : "s");
		r = diffs ? ADMIN_FAIL : ADMIN_OK;
	}
out:
	buf_free(&report);
	cache_close(cache);
	pg_free(pg);
	return r;
}

/* -------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
	struct admin_ctx ctx = { NULL, { 0 }, false };
	const struct admin_cmd *cmd = NULL;
	int i, rc;

	/* Errors are reported by the commands, one line each; library
	 * warnings (e.g. a failed connect attempt) would only repeat them. */
	log_threshold = LOG_LVL_ERROR;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0) {
		admin_errorf("cannot initialise libsodium");
		return ADMIN_FAIL;
	}

	{
		static const struct option top[] = {
			{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
			{ "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
		};
		int c;

		/* Options before the command; '+' stops at the command's name. */
		opterr = 0;
		while ((c = getopt_long(argc, argv, "+:c:hV", top, NULL)) != -1) {
			if (c == 'h') {
				usage(stdout);
				return ADMIN_OK;
			}
			if (c == 'V') {
				version_print(stdout, prog);
				return ADMIN_OK;
			}
			if (c == 'c')
				ctx.conf_path = optarg;
			else if (c == ':')
				return admin_usage_error("%s needs a file name", argv[optind - 1]);
			else
				return admin_usage_error("unknown option '%s'", argv[optind - 1]);
		}
		i = optind;
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
	rc = cmd->run(&ctx, &cmd->usage, argc - i, argv + i);
	if (ctx.conf_loaded)
		conf_free(&ctx.conf);
	/* Output that could not be written is a failure too. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (rc == ADMIN_OK)
			admin_errorf("cannot write to standard output");
		rc = rc == ADMIN_OK ? ADMIN_FAIL : rc;
	}
	return rc;
}
