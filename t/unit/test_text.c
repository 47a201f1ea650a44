/* text.c: UTF-8 validation, percent-decoding, times, numbers. */
#include "tap.h"
#include "text.h"

static int utf8(const char *s) { return text_utf8_valid(s, strlen(s)); }

int main(void)
{
	char out[64];

	ok(utf8("plain ascii"), "ASCII is UTF-8");
	ok(utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "2-, 3- and 4-byte sequences");
	ok(!utf8("\xc3"), "truncated sequence refused");
	ok(!utf8("\xc0\xaf"), "overlong '/' refused");
	ok(!utf8("\xe0\x80\xaf"), "3-byte overlong refused");
	ok(!utf8("\xed\xa0\x80"), "UTF-16 surrogate refused");
	ok(!utf8("\xf4\x90\x80\x80"), "above U+10FFFF refused");
	ok(!utf8("\xff"), "0xFF refused");
	ok(!utf8("a\x80"), "lone continuation byte refused");
	ok(text_utf8_valid("a\0b", 3), "NUL is valid UTF-8 (callers check it separately)");

	is_int(text_pct_decode("a%2Fb%20c", 9, out, false), 5, "decoded length");
	is_str(out, "a/b c", "%%2F and %%20 decoded");
	is_int(text_pct_decode("a+b", 3, out, false), 3, "plus kept in paths");
	is_str(out, "a+b", "plus stays plus");
	text_pct_decode("a+b", 3, out, true);
	is_str(out, "a b", "plus is space in query strings");
	is_int(text_pct_decode("%zz", 3, out, false), -1, "bad hex refused");
	is_int(text_pct_decode("abc%2", 5, out, false), -1, "truncated escape refused");
	is_int(text_pct_decode("%", 1, out, false), -1, "lone percent refused");
	is_int(text_pct_decode("%00", 3, out, false), 1, "%%00 decodes to one byte");
	ok(text_has_nul(out, 1), "and text_has_nul sees it");

	text_iso_time_ms(1774461151123LL, out);
	is_str(out, "2026-03-25T17:52:31.123Z", "ISO-8601 UTC with milliseconds");
	text_iso_time_ms(0, out);
	is_str(out, "1970-01-01T00:00:00.000Z", "the epoch");

	ok(text_iso_date_valid("2026-03-25"), "a date");
	ok(text_iso_date_valid("2024-02-29"), "29 February of a leap year");
	ok(!text_iso_date_valid("2026-02-29"), "29 February of another year refused");
	ok(!text_iso_date_valid("2100-02-29"), "1900/2100 are not leap years");
	ok(text_iso_date_valid("2000-02-29"), "2000 is");
	ok(!text_iso_date_valid("2026-13-01") && !text_iso_date_valid("2026-00-10") && !text_iso_date_valid("2026-04-31"),
	    "month 13, month 0, 31 April refused");
	ok(!text_iso_date_valid("2026-03-25T00:00Z") && !text_iso_date_valid("2026-3-25") && !text_iso_date_valid(""),
	    "a time, a short month, empty: not a date");

	is_int(text_parse_uint("12345", 5), 12345, "number parsed");
	is_int(text_parse_uint("", 0), -1, "empty refused");
	is_int(text_parse_uint("-1", 2), -1, "sign refused");
	is_int(text_parse_uint("1x", 2), -1, "junk refused");
	is_int(text_parse_uint("1234567890123456789", 19), -1, "too many digits refused");
	return done_testing();
}
