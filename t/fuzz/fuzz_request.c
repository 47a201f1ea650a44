/* The request view: CGI/FastCGI parameters and a body into struct
 * http_request (method, raw path and query from REQUEST_URI, request id,
 * bounded body), query parameters, the response's error body. */
#include <stdint.h>

#include "arena.h"
#include "fuzz_env.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "limit", "offset", "source", "search", "", "a b", "%" };
	struct fuzz_env e;
	struct http_io io;
	struct arena arena;
	struct http_request req;
	struct http_response res;

	if (fuzz_env_init(&e, data, size) < 0)
		return 0;
	io = (struct http_io){ &e, fuzz_param, fuzz_read, fuzz_write, NULL };
	arena_init(&arena, 4096);
	http_response_init(&res);
	if (http_request_init(&req, &io, &arena) == 0) {
		const char *v;

		if (http_read_body(&req, 64, &res) == 0 && req.body_len > 64)
			__builtin_trap();     /* the bound must hold */
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			(void)http_query_get(&req, names[i], &v);
		http_error(&res, 400, "%s", req.path ? req.path : "");
		(void)http_send(&req, &res);
	}
	http_response_free(&res);
	arena_free(&arena);
	fuzz_env_free(&e);
	return 0;
}
