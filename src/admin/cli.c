#include "admin/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

int admin_opt_value(int argc, char **argv, int *i, const char *s, const char *l, const char **val)
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
