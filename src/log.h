/* One-line logs to stderr (the web server's or supervisor's error log),
 * rate-limited per message: one failure repeating on every request is
 * written a few times, then counted ("N more messages like ... dropped"). */
#ifndef BLOQR_LOG_H
#define BLOQR_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Messages above this level are dropped before formatting. */
extern enum log_level log_threshold;

/* Request id shown on every line while a request is served; NULL outside. */
void log_set_request_id(const char *rid);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write the counts of messages dropped in windows that are over. log_msg
 * does it too; call it from loops that may go quiet. */
void log_flush_dropped(void);

/* At most burst lines per message per window_ms (default 10 per 10 s). */
void log_set_rate_limit(unsigned long burst, long window_ms);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_threshold >= LOG_LVL_INFO) log_msg(LOG_LVL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_threshold >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
