/* jsonx.c: strict parsing, limits, field validation. */
#include <stdlib.h>

#include "jsonx.h"
#include "tap.h"

static int parses(const char *s, char *err, size_t len)
{
	struct json_object *o = NULL;
	int rc = jsonx_parse(s, strlen(s), &o, err, len);

	json_object_put(o);
	return rc == 0;
}

int main(void)
{
	char err[256];
	struct json_object *o = NULL;
	const char *s;
	long long n;
	bool b;
	char *deep;

	ok(parses("{\"a\":[1,2,{\"b\":null}]}", err, sizeof err), "nested document parses");
	ok(parses("  42 ", err, sizeof err), "bare number with white space parses");
	ok(parses("\"x\"", err, sizeof err), "bare string parses");
	ok(!parses("{\"a\":1,}", err, sizeof err), "trailing comma refused");
	ok(!parses("{'a':1}", err, sizeof err), "single quotes refused");
	ok(!parses("{\"a\":1} x", err, sizeof err), "trailing garbage refused");
	ok(strstr(err, "after the value") != NULL, "message says why: %s", err);
	ok(!parses("{\"a\":1}{\"b\":2}", err, sizeof err), "two documents refused");
	ok(!parses("", err, sizeof err), "empty refused");
	ok(!parses("{\"a\":", err, sizeof err), "truncated refused");
	ok(strstr(err, "end of input") != NULL, "message: %s", err);
	ok(!parses("/* c */ 1", err, sizeof err), "comments refused");
	ok(!parses("[1,2", err, sizeof err), "unclosed array refused");
	ok(!parses("{\"a\" 1}", err, sizeof err), "missing colon refused");
	ok(!parses("[01]", err, sizeof err), "leading zero refused");
	ok(!parses("[1.]", err, sizeof err), "bare decimal point refused");
	ok(!parses("[-]", err, sizeof err), "lone minus refused");
	ok(!parses("[NaN]", err, sizeof err), "NaN refused");
	ok(!parses("[tru]", err, sizeof err), "misspelt literal refused");
	ok(!parses("[\"a\tb\"]", err, sizeof err), "raw control character in a string refused");
	ok(!parses("[\"\\x\"]", err, sizeof err), "unknown escape refused");
	ok(!parses("[\"\\u12\"]", err, sizeof err), "short \\u escape refused");
	ok(parses("[\"\\u00e9\\n\\/\", -1.5e+3, true, false, null, {}]", err, sizeof err), "escapes, exponents, literals: %s", err);
	ok(parses("{\"a\":{\"b\":[]}}", err, sizeof err), "empty containers");
	ok(!parses("{\"a\":\"\xc3\x28\"}", err, sizeof err), "invalid UTF-8 in a string refused");
	ok(strstr(err, "UTF-8") != NULL, "message names UTF-8: %s", err);
	ok(jsonx_parse("{\"a\":\"x\0y\"}", sizeof "{\"a\":\"x\0y\"}" - 1, &o, err, sizeof err) < 0, "raw NUL refused");
	ok(o == NULL, "nothing returned on failure");

	deep = malloc(20001);
	memset(deep, '[', 10000);
	memset(deep + 10000, ']', 10000);
	deep[20000] = '\0';
	ok(!parses(deep, err, sizeof err), "10 000-deep array refused");
	ok(strstr(err, "nesting") != NULL, "message names nesting: %s", err);
	deep[JSONX_MAX_DEPTH] = '\0';
	memset(deep, '[', JSONX_MAX_DEPTH / 2);
	memset(deep + JSONX_MAX_DEPTH / 2, ']', JSONX_MAX_DEPTH / 2);
	deep[JSONX_MAX_DEPTH] = '\0';
	ok(parses(deep, err, sizeof err), "%d-deep array accepted", JSONX_MAX_DEPTH / 2);
	free(deep);

	ok(jsonx_parse_object("[1]", 3, &o, err, sizeof err) < 0, "array is not an object");
	ok(strstr(err, "JSON object") != NULL, "message: %s", err);
	s = "{\"s\":\"hi\",\"n\":5,\"b\":true,\"z\":null,\"f\":1.5,\"big\":99999999999999999999}";
	ok(jsonx_parse_object(s, strlen(s), &o, err, sizeof err) == 0, "object parsed: %s", err);
	is_int(jsonx_get_string(o, "s", 10, &s, err, sizeof err), 1, "string present");
	is_str(s, "hi", "string value");
	is_int(jsonx_get_string(o, "s", 1, &s, err, sizeof err), -1, "string too long");
	ok(strstr(err, "'s'") != NULL, "error names the field: %s", err);
	is_int(jsonx_get_string(o, "n", 10, &s, err, sizeof err), -1, "number is not a string");
	is_int(jsonx_get_string(o, "missing", 10, &s, err, sizeof err), 0, "absent field");
	is_int(jsonx_get_string(o, "z", 10, &s, err, sizeof err), 0, "null reads as absent");
	is_int(jsonx_get_int(o, "n", 0, 10, &n, err, sizeof err), 1, "int present");
	is_int(n, 5, "int value");
	is_int(jsonx_get_int(o, "n", 6, 10, &n, err, sizeof err), -1, "int below range");
	is_int(jsonx_get_int(o, "f", 0, 10, &n, err, sizeof err), -1, "1.5 is not an integer");
	is_int(jsonx_get_int(o, "big", 0, 1000, &n, err, sizeof err), -1, "overflowing integer refused");
	is_int(jsonx_get_bool(o, "b", &b, err, sizeof err), 1, "bool present");
	ok(b, "bool value");
	is_int(jsonx_get_bool(o, "s", &b, err, sizeof err), -1, "string is not a bool");
	json_object_put(o);

	o = json_object_new_object();
	jsonx_add_str(o, "url", "https://a/b");
	jsonx_add_double(o, "ms", 0.123);
	jsonx_add_str(o, "none", NULL);
	is_str(jsonx_dump(o, NULL), "{\"url\":\"https://a/b\",\"ms\":0.123,\"none\":null}",
	    "compact output, slashes unescaped, 3 decimals");
	json_object_put(o);
	{
		/* Bodies built by concatenation must match json-c's escaping. */
		static const char *const samples[] = { "plain", "q\"uote\\back/slash", "tab\tnl\ncr\rbs\bff\f",
			"\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac", "" };
		for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
			struct buf sb = BUF_INIT;
			struct json_object *js = json_object_new_string(samples[i]);
			jsonx_buf_str(&sb, samples[i]);
			is_str(sb.data, jsonx_dump(js, NULL), "jsonx_buf_str matches json-c for sample %zu", i);
			json_object_put(js);
			buf_free(&sb);
		}
		{
			struct buf sb = BUF_INIT;
			jsonx_buf_str(&sb, NULL);
			jsonx_buf_raw(&sb, NULL);
			jsonx_buf_raw(&sb, "[1]");
			is_str(sb.data, "nullnull[1]", "NULL is null; raw is copied");
			buf_free(&sb);
		}
	}
	{
		/* jsonx_raw_member: the member's text exactly as written. */
		static const struct { const char *json, *name, *want; } raw[] = {
			{ "{\"data\": 1.50 }", "data", "1.50" },
			{ "{\"a\":1,\"data\":{\"x\": [1, 2,{\"y\":\"}\"}]},\"b\":2}", "data", "{\"x\": [1, 2,{\"y\":\"}\"}]}" },
			{ "{\"data\":\"a\\\"b\"}", "data", "\"a\\\"b\"" },
			{ "{\"data\":null}", "data", "null" },
			{ "{\"data\":false , \"x\":1}", "data", "false" },
			{ "{\"\\u0064ata\":[ ]}", "data", "[ ]" },
			{ "{\"data\":1,\"data\":2}", "data", "2" },
			{ " { \"x\" : { \"data\" : 1 } , \"data\" : -3e2 } ", "data", "-3e2" },
			{ "{\"datax\":1}", "data", NULL },
			{ "{\"dat\":1}", "data", NULL },
			{ "{}", "data", NULL },
			{ "[{\"data\":1}]", "data", NULL },
		};
		for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
			size_t off = 0, len = 0, jlen = strlen(raw[i].json);
			bool found = jsonx_raw_member(raw[i].json, jlen, raw[i].name, &off, &len);
			char got[256] = "";

			if (found && len < sizeof got)
				memcpy(got, raw[i].json + off, len), got[len] = '\0';
			if (raw[i].want == NULL)
				ok(!found, "raw member %zu: absent", i);
			else
				is_str(found ? got : NULL, raw[i].want, "raw member %zu", i);
		}
	}
	return done_testing();
}
