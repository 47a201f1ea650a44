#include "addrlist.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

struct addr {
	int family;                /* AF_INET or AF_INET6 */
	unsigned char b[16];
};

/* Parse a literal address; IPv4-mapped IPv6 becomes IPv4, so that a
 * dual-stack socket's "::ffff:127.0.0.1" matches "127.0.0.0/8". */
static int addr_parse(const char *s, struct addr *a)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, s, a->b) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, a->b) == 1) {
		a->family = AF_INET6;
		if (memcmp(a->b, mapped, 12) == 0) {
			memmove(a->b, a->b + 12, 4);
			memset(a->b + 4, 0, 12);
			a->family = AF_INET;
		}
		return 0;
	}
	return -1;
}

/* One list item "ADDR" or "ADDR/BITS" (len bytes at s) into *net, *bits. */
static int item_parse(const char *s, size_t len, struct addr *net, int *bits)
{
	char tmp[64];
	char *slash;
	int max;

	if (len == 0 || len >= sizeof tmp)
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	slash = strchr(tmp, '/');
	if (slash)
		*slash = '\0';
	if (addr_parse(tmp, net) < 0)
		return -1;
	max = net->family == AF_INET ? 32 : 128;
	*bits = max;
	if (slash) {
		int64_t n = text_parse_uint(slash + 1, strlen(slash + 1));
		/* A mapped IPv6 prefix counts in IPv4 bits from here on. */
		if (n < 0 || n > (strchr(tmp, ':') ? 128 : max))
			return -1;
		*bits = strchr(tmp, ':') && net->family == AF_INET ? (int)n - 96 : (int)n;
		if (*bits < 0)
			return -1;
	}
	return 0;
}

static bool prefix_match(const struct addr *net, int bits, const struct addr *a)
{
	int whole = bits / 8, rest = bits % 8;

	if (net->family != a->family)
		return false;
	if (memcmp(net->b, a->b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net->b[whole] ^ a->b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Call each list item in turn; stops at the first that fn accepts (1) or
 * that is malformed (-1). */
static int each_item(const char *list, int (*fn)(const char *, size_t, void *), void *ctx)
{
	const char *p = list;

	while (*p) {
		size_t n;
		int rc;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, " \t,");
		if (n == 0)
			break;
		if ((rc = fn(p, n, ctx)) != 0)
			return rc;
		p += n;
	}
	return 0;
}

static int check_one(const char *s, size_t n, void *ctx)
{
	struct addr net;
	int bits;

	(void)ctx;
	if (n == 3 && memcmp(s, "any", 3) == 0)
		return 0;
	return item_parse(s, n, &net, &bits) < 0 ? -1 : 0;
}

int addrlist_check(const char *list, char *why, size_t whylen)
{
	if (each_item(list, check_one, NULL) < 0) {
		snprintf(why, whylen, "expected addresses or prefixes (\"127.0.0.0/8 ::1\") or \"any\", got \"%s\"", list);
		return -1;
	}
	return 0;
}

static int match_one(const char *s, size_t n, void *ctx)
{
	const struct addr *a = ctx;
	struct addr net;
	int bits;

	if (n == 3 && memcmp(s, "any", 3) == 0)
		return 1;
	if (a->family == 0 || item_parse(s, n, &net, &bits) < 0)
		return 0;
	return prefix_match(&net, bits, a) ? 1 : 0;
}

bool addrlist_match(const char *list, const char *addr)
{
	struct addr a;

	if (addr == NULL || addr_parse(addr, &a) < 0)
		memset(&a, 0, sizeof a);    /* matches "any" only */
	return each_item(list, match_one, &a) == 1;
}
