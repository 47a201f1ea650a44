/* The router over the service's route table: any method, any raw path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "http.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum http_method methods[] = { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_PATCH,
		HTTP_DELETE, HTTP_OTHER };
	struct arena arena;
	struct route_match m;
	char allow[64], *path;

	if (size < 1)
		return 0;
	if ((path = malloc(size)) == NULL)
		return 0;
	memcpy(path, data + 1, size - 1);
	path[size - 1] = '\0';
	arena_init(&arena, 4096);
	(void)router_match(router_routes, router_nroutes, methods[data[0] % 7], path, &arena, &m,
	    allow, sizeof allow);
	arena_free(&arena);
	free(path);
	return 0;
}
