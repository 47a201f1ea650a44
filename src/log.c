#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LVL_INFO;
static const char *cur_rid;

void log_set_request_id(const char *rid) { cur_rid = rid; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;

	if (lvl > log_threshold)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ bloqr[%ld] %s%s%s: ",
	    (long)(tv.tv_usec / 1000), (long)getpid(), names[lvl],
	    cur_rid ? " rid=" : "", cur_rid ? cur_rid : "");
	if (n < sizeof line) {
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof line - n, fmt, ap);
		va_end(ap);
	}
	/* Keep one event on one line, whatever the message held. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	n = strlen(line);
	if (n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	/* One write() so lines of concurrent workers do not interleave. */
	(void)!write(STDERR_FILENO, line, n);
}
