/* Small helpers shared by the bloqr-admin commands. */
#ifndef BLOQR_ADMIN_CLI_H
#define BLOQR_ADMIN_CLI_H

/* "bloqr-admin: <message>" on stderr, one line (line breaks flattened). */
void admin_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Match argv[*i] against an option with a value: "-s VALUE", "-sVALUE",
 * "--long VALUE", "--long=VALUE" (short or long may be NULL). Returns 1 and
 * sets *val (advancing *i past the value) when it matched, 0 when argv[*i]
 * is another option, -1 when the value is missing. */
int admin_opt_value(int argc, char **argv, int *i, const char *s, const char *l, const char **val);

#endif
