/* etag.c: entity-tags of bodies and If-None-Match (RFC 9110 §13.1.2),
 * table-driven. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etag.h"
#include "tap.h"

#define T "\"0123456789abcdef0123456789abcdef\""

struct mcase {
	const char *name;
	const char *field;
	bool want;
};

int main(void)
{
	static const struct mcase cases[] = {
		{ "absent", NULL, false },
		{ "empty", "", false },
		{ "only spaces", "  \t ", false },
		{ "only commas", " , ,", false },
		{ "the tag", T, true },
		{ "the tag, weak", "W/" T, true },
		{ "the tag with spaces around", " \t" T "  ", true },
		{ "another tag", "\"0123456789abcdef0123456789abcdee\"", false },
		{ "a prefix of the tag", "\"0123456789abcdef0123456789abcde\"", false },
		{ "the tag and more", "\"0123456789abcdef0123456789abcdef0\"", false },
		{ "upper case hex", "\"0123456789ABCDEF0123456789ABCDEF\"", false },
		{ "in a list, last", "\"a\", W/\"b\"," T, true },
		{ "in a list, first", T ",\"a\"", true },
		{ "weak, in a list", "\"a\" ,W/" T " , \"b\"", true },
		{ "empty list elements", ", ," T ",,", true },
		{ "a list without it", "\"a\", W/\"b\", \"\"", false },
		{ "the empty tag", "\"\"", false },
		{ "star", "*", true },
		{ "star with spaces", "  *\t", true },
		{ "star in a list", "\"a\", *", false },
		{ "star then a tag", "*, " T, false },
		{ "two stars", "**", false },
		{ "unquoted", "0123456789abcdef0123456789abcdef", false },
		{ "unquoted beside the tag", T ", abc", false },
		{ "lower-case weak prefix", "w/" T, false },
		{ "weak prefix with a space", "W/ " T, false },
		{ "missing comma", T " \"a\"", false },
		{ "missing comma after a tag", "\"a\"" T, false },
		{ "unterminated", "\"abc", false },
		{ "unterminated after the tag", T ", \"abc", false },
		{ "control character inside", "\"a\tb\", " T, false },
		{ "DEL inside", "\"a\x7f\", " T, false },
		{ "obs-text inside", "\"caf\xc3\xa9\", " T, true },
		{ "a semicolon after", T ";", false },
		{ "single quotes", "'0123456789abcdef0123456789abcdef'", false },
	};
	static const char body[] = "{\"success\":true,\"deployments\":[],\"count\":0}";
	char a[ETAG_LEN + 1], b[ETAG_LEN + 1], c[ETAG_LEN + 1], copy[sizeof body];
	char *big;
	size_t n;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		is_int(etag_none_match(cases[i].field, T), cases[i].want, "If-None-Match: %s", cases[i].name);
	ok(!etag_none_match(T, NULL), "no tag: nothing matches");

	/* The tag of a body: quoted hex, the same every time, another for
	 * another body (one byte more, one byte changed, the empty body). */
	etag_of(body, sizeof body - 1, a);
	is_int(strlen(a), ETAG_LEN, "a tag is %d characters", ETAG_LEN);
	ok(a[0] == '"' && a[ETAG_LEN - 1] == '"' && strspn(a + 1, "0123456789abcdef") == ETAG_LEN - 2,
	    "quoted lower-case hex: %s", a);
	etag_of(body, sizeof body - 1, b);
	is_str(b, a, "the same body, the same tag");
	etag_of(body, sizeof body, b);
	ok(strcmp(a, b) != 0, "one byte more, another tag");
	memcpy(copy, body, sizeof body);
	copy[sizeof body - 3] = '1';    /* "count":1 */
	etag_of(copy, sizeof body - 1, c);
	ok(strcmp(a, c) != 0, "one byte changed, another tag");
	etag_of("", 0, c);
	ok(strcmp(a, c) != 0 && strlen(c) == ETAG_LEN, "the empty body has a tag of its own");
	/* Fixed across processes and builds: this value is what every host
	 * says for that body. */
	etag_of("", 0, c);
	is_str(c, "\"36b1a53b50124beea04935aa55f28c0d\"" , "the empty body's tag is fixed");
	ok(etag_none_match(a, a) && etag_none_match(b, b), "a tag names itself");
	ok(!etag_none_match(a, b), "and not another");

	/* The memo gives what etag_of gives: for bodies it has seen, for one
	 * byte changed at the same length, for more bodies than it keeps,
	 * for one too big to keep, and for the empty body. */
	{
		struct etag_memo m = { 0 };
		char want[ETAG_LEN + 1], got[ETAG_LEN + 1], *large;
		size_t ln = ETAG_MEMO_MAX_BYTES + 1;
		int bad = 0;

		for (int round = 0; round < 3; round++) {
			for (int i = 0; i < 2 * ETAG_MEMO_SLOTS; i++) {
				/* twice as many bodies as slots, twice over, then each
				 * with one byte changed at the same length */
				char text[64];
				int len = snprintf(text, sizeof text, "{\"n\":%02d,\"r\":%d}", i,
				    round == 2 ? 7 : 1);
				etag_of(text, (size_t)len, want);
				etag_memo_of(&m, text, (size_t)len, got);
				bad += strcmp(want, got) != 0;
			}
		}
		is_int(bad, 0, "memo: the tags of etag_of, seen, unseen and changed");
		etag_memo_of(&m, body, sizeof body - 1, got);
		is_str(got, a, "memo: the body above");
		etag_of(copy, sizeof body - 1, want);
		etag_memo_of(&m, copy, sizeof body - 1, got);
		is_str(got, want, "memo: the same length, one byte changed");
		ok(strcmp(got, a) != 0, "memo: which is another tag");
		etag_memo_of(&m, body, sizeof body - 1, got);
		is_str(got, a, "memo: the first again");
		/* A body seen is answered from the memo, not hashed (a tag
		 * planted there comes back). */
		for (int i = 0; i < ETAG_MEMO_SLOTS; i++)
			if (m.e[i].used && m.e[i].body.len == sizeof body - 1 && !memcmp(m.e[i].body.data, body, sizeof body - 1))
				memcpy(m.e[i].tag, T, ETAG_LEN + 1);
		etag_memo_of(&m, body, sizeof body - 1, got);
		is_str(got, T, "memo: a body seen is not hashed again");
		etag_memo_of(&m, "", 0, got);
		etag_of("", 0, want);
		is_str(got, want, "memo: the empty body");
		etag_memo_of(&m, "", 0, got);
		is_str(got, want, "memo: the empty body again");
		large = calloc(1, ln);
		if (large == NULL)
			return 1;
		etag_of(large, ln, want);
		etag_memo_of(&m, large, ln, got);
		is_str(got, want, "memo: a body too big to keep is hashed");
		large[ln - 1] = 'x';
		etag_memo_of(&m, large, ln, got);
		ok(strcmp(got, want) != 0, "memo: and hashed again after a change");
		etag_of(large, ln, want);
		is_str(got, want, "memo: to etag_of's tag");
		bad = 0;
		for (int i = 0; i < ETAG_MEMO_SLOTS; i++)
			bad += m.e[i].body.cap > ETAG_MEMO_MAX_BYTES + 1;
		is_int(bad, 0, "memo: nothing over ETAG_MEMO_MAX_BYTES kept");
		free(large);
		etag_memo_free(&m);
		ok(m.clock == 0 && m.e[0].body.data == NULL, "memo: freed");
	}

	/* The length bound: a field of ETAG_FIELD_MAX bytes is read, one
	 * longer is not. */
	big = malloc(ETAG_FIELD_MAX + 2);
	if (big == NULL)
		return 1;
	n = ETAG_FIELD_MAX - strlen(T);
	memset(big, ' ', n);
	memcpy(big + n, T, strlen(T) + 1);
	ok(strlen(big) == ETAG_FIELD_MAX && etag_none_match(big, T), "a field of %d bytes is read", ETAG_FIELD_MAX);
	memset(big, ' ', n + 1);
	memcpy(big + n + 1, T, strlen(T) + 1);
	ok(!etag_none_match(big, T), "one byte longer names nothing");
	free(big);
	return done_testing();
}
