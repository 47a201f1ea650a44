/* router.c: pattern matching, decoding, 404/405 with Allow. */
#include "router.h"
#include "tap.h"

static void fn(struct app *a, struct http_request *r, struct http_response *s, const struct route_match *m)
{
	(void)a; (void)r; (void)s; (void)m;
}

static const struct route routes[] = {
	{ HTTP_GET, "/api", fn, 0, "" },
	{ HTTP_GET, "/api/health", fn, 0, "" },
	{ HTTP_GET, "/api/storage/{key*}", fn, 0, "" },
	{ HTTP_PUT, "/api/storage/{key*}", fn, 0, "" },
	{ HTTP_DELETE, "/api/storage/{key*}", fn, 0, "" },
	{ HTTP_GET, "/api/admin/users/{id}", fn, 0, "" },
	{ HTTP_PATCH, "/api/admin/users/{id}", fn, 0, "" },
	{ HTTP_POST, "/api/admin/users/{id}/ban", fn, 0, "" },
	{ HTTP_POST, "/api/deployments/{v}/rollback", fn, 0, "" },
};
#define N (sizeof routes / sizeof routes[0])

int main(void)
{
	struct arena a;
	struct route_match m;
	char allow[64];

	arena_init(&a, 4096);
	is_int(router_match(routes, N, HTTP_GET, "/api", &a, &m, allow, sizeof allow), 0, "exact match");
	is_int(router_match(routes, N, HTTP_GET, "/api/health", &a, &m, allow, sizeof allow), 1, "second route");
	is_int(router_match(routes, N, HTTP_HEAD, "/api/health", &a, &m, allow, sizeof allow), 1, "HEAD served by GET");
	is_int(router_match(routes, N, HTTP_GET, "/api/health/", &a, &m, allow, sizeof allow), 1, "trailing slash tolerated");
	is_int(router_match(routes, N, HTTP_GET, "/api/healthz", &a, &m, allow, sizeof allow), ROUTER_NOT_FOUND, "prefix is not a match");
	is_int(router_match(routes, N, HTTP_GET, "/nope", &a, &m, allow, sizeof allow), ROUTER_NOT_FOUND, "unknown path");
	is_int(router_match(routes, N, HTTP_GET, "", &a, &m, allow, sizeof allow), ROUTER_NOT_FOUND, "empty path");

	is_int(router_match(routes, N, HTTP_POST, "/api/health", &a, &m, allow, sizeof allow), ROUTER_BAD_METHOD, "wrong method");
	is_str(allow, "GET, HEAD", "Allow lists GET and HEAD");
	is_int(router_match(routes, N, HTTP_POST, "/api/storage/k", &a, &m, allow, sizeof allow), ROUTER_BAD_METHOD, "POST on storage");
	is_str(allow, "GET, HEAD, PUT, DELETE", "Allow lists every method of the path");

	is_int(router_match(routes, N, HTTP_GET, "/api/storage/a%2Fb%20c%3F", &a, &m, allow, sizeof allow), 2, "storage key");
	is_int(m.nparams, 1, "one parameter");
	is_str(m.params[0], "a/b c?", "key percent-decoded, %%2F kept as a slash in the key");
	is_int(router_match(routes, N, HTTP_PUT, "/api/storage/cache/x/y", &a, &m, allow, sizeof allow), 3, "rest-of-path key");
	is_str(m.params[0], "cache/x/y", "slashes in the key");
	is_int(router_match(routes, N, HTTP_GET, "/api/storage/", &a, &m, allow, sizeof allow), ROUTER_NOT_FOUND, "empty key is no match");
	is_int(router_match(routes, N, HTTP_GET, "/api/storage/%zz", &a, &m, allow, sizeof allow), ROUTER_BAD_PATH, "bad escape");
	is_int(router_match(routes, N, HTTP_GET, "/api/storage/a%00b", &a, &m, allow, sizeof allow), ROUTER_BAD_PATH, "NUL refused");
	is_int(router_match(routes, N, HTTP_GET, "/api/storage/%C3%28", &a, &m, allow, sizeof allow), ROUTER_BAD_PATH, "invalid UTF-8 refused");

	is_int(router_match(routes, N, HTTP_GET, "/api/admin/users/42", &a, &m, allow, sizeof allow), 5, "user id");
	is_str(m.params[0], "42", "id captured");
	is_int(router_match(routes, N, HTTP_GET, "/api/admin/users/42/extra", &a, &m, allow, sizeof allow), ROUTER_NOT_FOUND, "{id} is one segment");
	is_int(router_match(routes, N, HTTP_POST, "/api/admin/users/7/ban", &a, &m, allow, sizeof allow), 7, "placeholder mid-path");
	is_str(m.params[0], "7", "id before the suffix");
	is_int(router_match(routes, N, HTTP_POST, "/api/deployments/1.2.3%2Bbuild.4/rollback", &a, &m, allow, sizeof allow), 8, "full version");
	is_str(m.params[0], "1.2.3+build.4", "'+' survives (paths are not forms)");
	arena_free(&a);
	return done_testing();
}
