/* FastCGI parameter records (name-value pairs with 1- or 4-byte lengths)
 * as the pool's workers decode them, and the lookups that follow. */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "fcgi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = BUF_INIT;

	if (fcgi_params_decode((const char *)data, size, &out) == 0 && out.len > 0) {
		/* The result is a sequence of NUL-terminated pairs. */
		const char *p = out.data, *end = out.data + out.len;
		while (p < end) {
			const char *v = p + strlen(p) + 1;
			if (v > end)
				__builtin_trap();
			p = v + strlen(v) + 1;
			if (p > end)
				__builtin_trap();
		}
	}
	buf_free(&out);
	return 0;
}
