/* addrlist.c: who may read /metrics ([http] metrics_allow). */
#include <string.h>

#include "addrlist.h"
#include "tap.h"

int main(void)
{
	static const struct { const char *list, *addr; bool in; } cases[] = {
		{ "127.0.0.0/8 ::1", "127.0.0.1", true },
		{ "127.0.0.0/8 ::1", "127.255.0.9", true },
		{ "127.0.0.0/8 ::1", "::1", true },
		{ "127.0.0.0/8 ::1", "::ffff:127.0.0.1", true },
		{ "127.0.0.0/8 ::1", "128.0.0.1", false },
		{ "127.0.0.0/8 ::1", "::ffff:192.0.2.1", false },
		{ "127.0.0.0/8 ::1", "::2", false },
		{ "127.0.0.0/8 ::1", "", false },
		{ "127.0.0.0/8 ::1", "localhost", false },
		{ "127.0.0.0/8 ::1", "127.0.0.1 ", false },
		{ "10.1.2.0/23", "10.1.3.255", true },
		{ "10.1.2.0/23", "10.1.4.0", false },
		{ "192.0.2.7", "192.0.2.7", true },
		{ "192.0.2.7", "192.0.2.8", false },
		{ "2001:db8::/32", "2001:db8:ffff::1", true },
		{ "2001:db8::/32", "2001:db9::1", false },
		{ "::ffff:10.0.0.0/104", "10.9.9.9", true },
		{ "::ffff:10.0.0.0/104", "11.0.0.1", false },
		{ "0.0.0.0/0", "203.0.113.5", true },
		{ "0.0.0.0/0", "2001:db8::1", false },
		{ "any", "", true },
		{ "any", "2001:db8::1", true },
		{ "", "127.0.0.1", false },
		{ "10.0.0.1,127.0.0.1", "127.0.0.1", true },
	};
	static const char *bad[] = { "127.0.0.0/33", "::1/129", "localhost", "1.2.3", "10.0.0.0/", "10.0.0.0/x",
		"::ffff:10.0.0.0/90" };
	char why[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ok(addrlist_match(cases[i].list, cases[i].addr) == cases[i].in, "'%s' %s '%s'", cases[i].addr,
		    cases[i].in ? "in" : "not in", cases[i].list);
	ok(!addrlist_match("127.0.0.0/8", NULL), "no address: in no list");
	ok(addrlist_check("127.0.0.0/8 ::1", why, sizeof why) == 0, "the default is well formed");
	ok(addrlist_check("", why, sizeof why) == 0, "an empty list is well formed (nobody)");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ok(addrlist_check(bad[i], why, sizeof why) < 0 && strstr(why, bad[i]), "'%s' refused: %s", bad[i], why);
	return done_testing();
}
