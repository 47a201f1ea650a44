#include "admin/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define OPT_MAX 16
#define OPT_BASE 1000            /* getopt_long's value for defs[i]: OPT_BASE + i */

void admin_errorf(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "bloqr-admin: %s\n", line);
}

void admin_usage_print(FILE *f, const struct admin_usage *u)
{
	fprintf(f, "usage: bloqr-admin [-c FILE] %s%s%s\n  %s\n", u->words, u->args[0] ? " " : "", u->args, u->help);
}

static int usage_error(const struct admin_usage *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const struct admin_usage *u, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One line, as every error of bloqr-admin (CONTRACT §1). */
	admin_errorf("%s: %s (see 'bloqr-admin %s --help')", u->words, line, u->words);
	return ADMIN_USAGE;
}

int admin_parse(const struct admin_usage *u, const struct admin_optdef *defs, size_t ndefs, const char **vals,
    const char **conf_path, int argc, char **argv)
{
	struct option opts[OPT_MAX + 3];
	char *words[argc + 2];
	size_t k = 0;
	int c;

	if (ndefs > OPT_MAX)
		return usage_error(u, "too many options (a bug)");
	for (size_t i = 0; i < ndefs; i++) {
		vals[i] = NULL;
		opts[k++] = (struct option){ defs[i].name, defs[i].takes_value ? required_argument : no_argument,
			NULL, OPT_BASE + (int)i };
	}
	opts[k++] = (struct option){ "config", required_argument, NULL, 'c' };
	opts[k++] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[k] = (struct option){ NULL, 0, NULL, 0 };
	/* getopt wants the program's name first. */
	words[0] = (char *)(uintptr_t)u->words;
	for (int i = 0; i < argc; i++)
		words[i + 1] = argv[i];
	words[argc + 1] = NULL;
	opterr = 0;
	optind = 0;   /* glibc: start afresh */
	/* '+': no reordering, the first word that is no option ends them;
	 * ':': a missing value is told apart from an unknown option. */
	while ((c = getopt_long(argc + 1, words, "+:c:h", opts, NULL)) != -1) {
		if (c == 'h') {
			admin_usage_print(stdout, u);
			return 1;
		}
		if (c == 'c') {
			*conf_path = optarg;
		} else if (c >= OPT_BASE && c < OPT_BASE + (int)ndefs) {
			vals[c - OPT_BASE] = optarg ? optarg : "";
		} else if (c == ':') {
			if (optopt == 'c')
				return usage_error(u, "-c/--config needs a file name");
			if (optopt >= OPT_BASE && optopt < OPT_BASE + (int)ndefs)
				return usage_error(u, "--%s needs %s", defs[optopt - OPT_BASE].name,
				    defs[optopt - OPT_BASE].what ? defs[optopt - OPT_BASE].what : "a value");
			return usage_error(u, "'%s' needs a value", words[optind - 1]);
		} else {
			return usage_error(u, "unknown option '%s'", words[optind - 1]);
		}
	}
	if (optind < argc + 1)
		return usage_error(u, "unexpected argument '%s'", words[optind]);
	return 0;
}
