/* Conditional GET's text work: any If-None-Match field against a body's
 * tag, and the memo (kept across inputs, as in a worker) giving the very
 * tags etag_of gives. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct etag_memo memo;
	char want[ETAG_LEN + 1], got[ETAG_LEN + 1], *field;
	size_t half = size / 2;
	bool named;

	etag_of(data, half, want);
	etag_memo_of(&memo, data, half, got);
	if (strcmp(want, got) != 0)
		__builtin_trap();
	if ((field = malloc(size - half + 1)) == NULL)
		return 0;
	memcpy(field, data + half, size - half);
	field[size - half] = '\0';
	named = etag_none_match(field, want);
	/* The tag itself is named; a field naming it holds it, or is "*". */
	if (strcmp(field, want) == 0 && !named)
		__builtin_trap();
	if (named && strstr(field, want) == NULL && strchr(field, '*') == NULL)
		__builtin_trap();
	free(field);
	return 0;
}
