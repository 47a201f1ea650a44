#include "log.h"

#include "clock.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LVL_INFO;
static const char *cur_rid;

void log_set_request_id(const char *rid) { cur_rid = rid; }

/* Rate limit: a message (known by its format string, i.e. its call site)
 * is written at most rl_burst times per rl_window_ms in a process;
 * the rest are counted, and the count is written once the window is over
 * (with the next message of any kind, or log_flush_dropped()). So one
 * failure repeating on every request can't flood the log, and the log
 * still says how often it happened. */
#define LOG_RL_SLOTS 64

static unsigned long rl_burst = 10;
static long long rl_window_ms = 10000;

struct rl_slot {
	const char *fmt;
	enum log_level lvl;
	long long start_ms;
	unsigned long written;
	unsigned long dropped;
};

static struct rl_slot slots[LOG_RL_SLOTS];
static bool flushing;

static void write_line(enum log_level lvl, const char *fmt, va_list ap)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ bloqr[%ld] %s%s%s: ",
	    (long)(tv.tv_usec / 1000), (long)getpid(), names[lvl],
	    cur_rid ? " rid=" : "", cur_rid ? cur_rid : "");
	if (n < sizeof line)
		vsnprintf(line + n, sizeof line - n, fmt, ap);
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

static void write_fmt(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_fmt(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	write_line(lvl, fmt, ap);
	va_end(ap);
}

static void report_dropped(struct rl_slot *s, long long now)
{
	const char *rid = cur_rid;

	if (s->dropped == 0)
		return;
	cur_rid = NULL;   /* not about the request being served */
	write_fmt(s->lvl, "log: %lu more messages like \"%.80s\" dropped in the last %lld s",
	    s->dropped, s->fmt, (now - s->start_ms + 999) / 1000);
	cur_rid = rid;
	s->dropped = 0;
}

void log_set_rate_limit(unsigned long burst, long window_ms)
{
	rl_burst = burst;
	rl_window_ms = window_ms;
}

void log_flush_dropped(void)
{
	long long now = clock_mono_ms();

	if (flushing)
		return;
	flushing = true;
	for (int i = 0; i < LOG_RL_SLOTS; i++)
		if (slots[i].dropped > 0 && now - slots[i].start_ms >= rl_window_ms) {
			report_dropped(&slots[i], now);
			slots[i].fmt = NULL;
		}
	flushing = false;
}

/* Whether this message may be written now. */
static bool admit(enum log_level lvl, const char *fmt)
{
	uintptr_t h = (uintptr_t)fmt;
	struct rl_slot *s = &slots[((h >> 3) ^ (h >> 11)) % LOG_RL_SLOTS];
	long long now = clock_mono_ms();

	if (s->fmt != fmt || now - s->start_ms >= rl_window_ms) {
		report_dropped(s, now);   /* a message that lost its slot, or an old window */
		s->fmt = fmt;
		s->lvl = lvl;
		s->start_ms = now;
		s->written = 0;
	}
	if (s->written >= rl_burst) {
		s->dropped++;
		return false;
	}
	s->written++;
	return true;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_threshold)
		return;
	log_flush_dropped();
	if (!admit(lvl, fmt))
		return;
	va_start(ap, fmt);
	write_line(lvl, fmt, ap);
	va_end(ap);
}
