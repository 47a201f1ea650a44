/* csrf.c: the CSRF guard's decision, origins and Content-Type, table-driven. */
#include "csrf.h"
#include "tap.h"

struct ccase {
	const char *name;
	struct csrf_input in;
	const char *trusted;
	bool want;
};

int main(void)
{
	static const struct ccase cases[] = {
		{ "nothing", { 0 }, NULL, false },
		{ "X-Requested-With: bloqr", { .x_requested_with = "bloqr" }, NULL, true },
		{ "X-Requested-With: other", { .x_requested_with = "XMLHttpRequest" }, NULL, false },
		{ "Sec-Fetch-Site: same-origin", { .sec_fetch_site = "same-origin" }, NULL, true },
		{ "Sec-Fetch-Site: same-site", { .sec_fetch_site = "same-site" }, NULL, false },
		{ "Sec-Fetch-Site: none", { .sec_fetch_site = "none" }, NULL, false },
		{ "own origin", { .origin = "http://127.0.0.1:8080", .host = "127.0.0.1:8080", .scheme = "http" }, NULL, true },
		{ "own origin, empty list", { .origin = "http://127.0.0.1:8080", .host = "127.0.0.1:8080", .scheme = "http" }, "", true },
		{ "own origin, other case", { .origin = "HTTP://Example.COM", .host = "example.com", .scheme = "http" }, NULL, true },
		{ "own origin, default port in Host", { .origin = "https://example.com", .host = "example.com:443", .scheme = "https" }, NULL, true },
		{ "own origin, default port in Origin", { .origin = "http://example.com:80", .host = "example.com", .scheme = "http" }, NULL, true },
		{ "own origin by HTTPS=on", { .origin = "https://example.com", .host = "example.com", .https = "on" }, NULL, true },
		{ "scheme differs", { .origin = "http://example.com", .host = "example.com", .https = "on" }, NULL, false },
		{ "port differs", { .origin = "http://example.com:8081", .host = "example.com:8080", .scheme = "http" }, NULL, false },
		{ "foreign origin", { .origin = "https://evil.example", .host = "example.com", .scheme = "https" }, NULL, false },
		{ "suffix attack", { .origin = "https://example.com.evil.example", .host = "example.com", .scheme = "https" }, NULL, false },
		{ "Origin null", { .origin = "null", .host = "example.com", .scheme = "https" }, NULL, false },
		{ "Origin with a path", { .origin = "https://example.com/", .host = "example.com", .scheme = "https" }, NULL, false },
		{ "no Host", { .origin = "https://example.com", .scheme = "https" }, NULL, false },
		{ "Host without port, SERVER_PORT", { .origin = "http://127.0.0.1:8080", .host = "127.0.0.1",
		  .server_port = "8080", .scheme = "http" }, NULL, true },
		{ "Host without port, SERVER_PORT default", { .origin = "https://example.com", .host = "example.com",
		  .server_port = "443", .scheme = "https" }, NULL, true },
		{ "Host with port wins over SERVER_PORT", { .origin = "http://example.com:8080", .host = "example.com:8080",
		  .server_port = "80", .scheme = "http" }, NULL, true },
		{ "Host without port, other SERVER_PORT", { .origin = "http://127.0.0.1:8080", .host = "127.0.0.1",
		  .server_port = "9090", .scheme = "http" }, NULL, false },
		{ "IPv6 Host without port", { .origin = "http://[::1]:8080", .host = "[::1]", .server_port = "8080",
		  .scheme = "http" }, NULL, true },
		{ "IPv6 own origin", { .origin = "http://[::1]:8080", .host = "[::1]:8080", .scheme = "http" }, NULL, true },
		{ "trusted, listed", { .origin = "https://admin.example", .host = "api.example", .scheme = "https" },
		  "https://other.example https://admin.example", true },
		{ "trusted, tabs and default port", { .origin = "https://admin.example", .host = "api.example", .scheme = "https" },
		  "\thttps://admin.example:443\t", true },
		{ "trusted list replaces own origin", { .origin = "https://api.example", .host = "api.example", .scheme = "https" },
		  "https://admin.example", false },
		{ "trusted, scheme differs", { .origin = "http://admin.example", .host = "api.example", .scheme = "https" },
		  "https://admin.example", false },
		{ "trusted, prefix only", { .origin = "https://admin.example", .host = "api.example", .scheme = "https" },
		  "https://admin.exam", false },
	};
	static const struct { const char *s; bool valid; } origins[] = {
		{ "http://a", true }, { "https://admin.example.com:8443", true }, { "http://[::1]:80", true },
		{ "http://127.0.0.1", true }, { "ftp://a", false }, { "https://", false }, { "a.example", false },
		{ "https://a.example/", false }, { "https://a.example:", false }, { "https://a.example:123456", false },
		{ "https://a:b:c", false }, { "https://[zz]", false }, { "https://a b", false }, { "https://a?x", false },
		{ "https://user@a", false },
	};
	static const struct { const char *ct; bool json; } cts[] = {
		{ "application/json", true }, { "application/json; charset=utf-8", true }, { "Application/JSON", true },
		{ " application/json ;charset=utf-8", true }, { "text/plain", false }, { "application/jsonx", false },
		{ "application/x-www-form-urlencoded", false }, { "multipart/form-data; boundary=x", false }, { "", false },
		{ NULL, false },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ok(csrf_allowed(&cases[i].in, cases[i].trusted) == cases[i].want, "%s: %s", cases[i].name,
		    cases[i].want ? "allowed" : "refused");
	for (size_t i = 0; i < sizeof origins / sizeof origins[0]; i++)
		ok(csrf_origin_valid(origins[i].s, strlen(origins[i].s)) == origins[i].valid, "origin \"%s\": %s",
		    origins[i].s, origins[i].valid ? "valid" : "invalid");
	for (size_t i = 0; i < sizeof cts / sizeof cts[0]; i++)
		ok(csrf_content_type_json(cts[i].ct) == cts[i].json, "Content-Type \"%s\": %s",
		    cts[i].ct ? cts[i].ct : "(none)", cts[i].json ? "JSON" : "not JSON");
	return done_testing();
}
