/* log.c: one message repeating is rate-limited, and the count of the
 * dropped ones is written once its window is over. */
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

/* Lines written to fd since the last call, counted; those matching `has`
 * counted in *match, the last one kept in last. */
static int lines(int fd, const char *has, int *match, char *last, size_t lastlen)
{
	static char buf[1 << 16];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	int count = 0;

	*match = 0;
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *p = buf, *e; (e = strchr(p, '\n')) != NULL; p = e + 1) {
		*e = '\0';
		count++;
		if (strstr(p, has)) {
			++*match;
			snprintf(last, lastlen, "%s", p);
		}
	}
	return count;
}

int main(void)
{
	int fds[2], saved, match;
	char last[512] = "";

	if (pipe(fds) < 0 || (saved = dup(STDERR_FILENO)) < 0 || dup2(fds[1], STDERR_FILENO) < 0)
		return 2;
	/* Every step below writes something, so a read never blocks. */

	log_set_rate_limit(5, 300);
	for (int i = 0; i < 100; i++)
		log_error("the same failure %d", i);
	log_warn("another message");
	is_int(lines(fds[0], "the same failure", &match, last, sizeof last), 6, "5 of 100 repeats and the other message written");
	is_int(match, 5, "5 lines of the repeating message");
	ok(strstr(last, "the same failure 4") != NULL, "the first five: %s", last);

	usleep(350 * 1000);
	log_flush_dropped();
	lines(fds[0], "more messages like", &match, last, sizeof last);
	is_int(match, 1, "once the window is over, one line counts the dropped ones");
	ok(strstr(last, "95 more messages like \"the same failure %d\" dropped") != NULL, "and says 95: %s", last);

	log_error("the same failure %d", 100);
	lines(fds[0], "the same failure 100", &match, last, sizeof last);
	is_int(match, 1, "a new window writes the message again");

	dup2(saved, STDERR_FILENO);
	return done_testing();
}
