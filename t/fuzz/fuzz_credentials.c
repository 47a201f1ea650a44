/* What a request presents: the bearer token or session cookie
 * (Authorization, Cookie), the CSRF guard's view of Origin, Host,
 * Sec-Fetch-Site and Content-Type, and the /metrics address check. */
#include <stdint.h>

#include "addrlist.h"
#include "arena.h"
#include "auth.h"
#include "csrf.h"
#include "fuzz_env.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_env e;
	struct http_io io;
	struct arena arena;
	struct http_request req;

	if (fuzz_env_init(&e, data, size) < 0)
		return 0;
	io = (struct http_io){ &e, fuzz_param, fuzz_read, fuzz_write, NULL };
	arena_init(&arena, 4096);
	if (http_request_init(&req, &io, &arena) == 0) {
		enum auth_via via;
		struct csrf_input in = {
			.x_requested_with = http_param(&req, "HTTP_X_REQUESTED_WITH"),
			.origin = http_param(&req, "HTTP_ORIGIN"),
			.sec_fetch_site = http_param(&req, "HTTP_SEC_FETCH_SITE"),
			.host = http_param(&req, "HTTP_HOST"),
			.server_port = http_param(&req, "SERVER_PORT"),
			.scheme = http_param(&req, "REQUEST_SCHEME"),
			.https = http_param(&req, "HTTPS"),
		};
		const char *trusted = http_param(&req, "TRUSTED");
		const char *list = http_param(&req, "ALLOW");

		(void)auth_presented_token(&req, &via);
		(void)auth_presented(&req);
		(void)csrf_allowed(&in, trusted ? trusted : "https://a.example http://b.example:8080");
		(void)csrf_content_type_json(http_param(&req, "CONTENT_TYPE"));
		if (in.origin)
			(void)csrf_origin_valid(in.origin, strlen(in.origin));
		(void)addrlist_match(list ? list : "127.0.0.0/8 ::1", req.remote_addr);
		if (list) {
			char why[256];
			(void)addrlist_check(list, why, sizeof why);
		}
	}
	arena_free(&arena);
	fuzz_env_free(&e);
	return 0;
}
