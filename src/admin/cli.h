/* What the bloqr-admin commands share: exit statuses, one error printer,
 * and one option parser (getopt_long) for every command's words. */
#ifndef BLOQR_ADMIN_CLI_H
#define BLOQR_ADMIN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The exit statuses of every command (CONTRACT §1: 0 on success). */
enum admin_exit { ADMIN_OK = 0, ADMIN_FAIL = 1, ADMIN_USAGE = 2 };

/* "bloqr-admin: <message>" on stderr, one line (line breaks flattened). */
void admin_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One long option of a command ("--name VALUE", "--name=VALUE", or a flag). */
struct admin_optdef {
	const char *name;        /* without the dashes */
	bool takes_value;        /* else a flag: its value is "" when given */
	const char *what;        /* the value, for "--dir needs a directory" */
};

/* A command's usage, for --help and for usage errors. */
struct admin_usage {
	const char *words;       /* "user create" */
	const char *args;        /* "--email E [--name N] …" */
	const char *help;        /* one sentence */
};

/* Parse the words after a command with getopt_long: the options of defs
 * (vals[i] gets defs[i]'s value, NULL when absent; the last one given
 * wins), -c/--config FILE anywhere (*conf_path), -h/--help. Returns 0 when
 * parsed, 1 when the help was printed (exit 0), or ADMIN_USAGE with one
 * line on stderr that points at the command's --help. */
int admin_parse(const struct admin_usage *u, const struct admin_optdef *defs, size_t ndefs, const char **vals,
    const char **conf_path, int argc, char **argv);

/* Print the command's usage line and help to f. */
void admin_usage_print(FILE *f, const struct admin_usage *u);

#endif
