/* Strict JSON input (RFC 8259 scan, depth limit) and the field accessors
 * the handlers use on what it accepts. */
#include <json.h>
#include <stdbool.h>
#include <stdint.h>

#include "jsonx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o = NULL;
	char err[256];

	if (jsonx_parse((const char *)data, size, &o, err, sizeof err) == 0) {
		const char *s;
		long long n;
		bool b;
		size_t len;

		if (json_object_is_type(o, json_type_object)) {
			(void)jsonx_get_string(o, "email", 320, &s, err, sizeof err);
			(void)jsonx_get_int(o, "limit", 1, 1000, &n, err, sizeof err);
			(void)jsonx_get_bool(o, "flag", &b, err, sizeof err);
		}
		(void)jsonx_dump(o, &len);
		json_object_put(o);
	}
	o = NULL;
	if (jsonx_parse_object((const char *)data, size, &o, err, sizeof err) == 0)
		json_object_put(o);
	return 0;
}
