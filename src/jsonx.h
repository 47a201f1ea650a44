/* Strict JSON input on top of json-c: size, depth and UTF-8 limits, and
 * field accessors that name the failing field in their error. */
#ifndef BLOQR_JSONX_H
#define BLOQR_JSONX_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define JSONX_MAX_DEPTH 32

/* Parse s[0..n) as exactly one JSON value (RFC 8259, no comments, no
 * trailing garbage, valid UTF-8, nesting ≤ JSONX_MAX_DEPTH). Returns a new
 * reference (caller json_object_put()s it; a JSON null is returned as
 * NULL with rc 0) or sets err to a message fit for a 400. Returns 0 / -1. */
int jsonx_parse(const char *s, size_t n, struct json_object **out, char *err, size_t errlen);

/* Parse a request body that must be a JSON object. */
int jsonx_parse_object(const char *s, size_t n, struct json_object **out, char *err, size_t errlen);

/* Field accessors. Each returns 1 when the field is present and valid, 0
 * when absent (or null), -1 when present but invalid (err names the field).
 * Strings must be valid UTF-8 (json-c checks) without NUL and at most
 * maxlen bytes. */
int jsonx_get_string(struct json_object *obj, const char *field, size_t maxlen,
    const char **out, char *err, size_t errlen);
int jsonx_get_int(struct json_object *obj, const char *field, long long min, long long max,
    long long *out, char *err, size_t errlen);
int jsonx_get_bool(struct json_object *obj, const char *field, bool *out, char *err, size_t errlen);

/* The exact text of the top-level member `name` of the JSON object
 * s[0..n), which jsonx_parse_object has already validated: s[*off..+*len).
 * json-c would print the value again in its own way (1.50 as 1.5, escapes,
 * spacing); this keeps a value as the client wrote it. Member names are
 * compared after unescaping ("\u0064ata" is "data"); like json-c, the last
 * of duplicate members wins. False when absent. */
bool jsonx_raw_member(const char *s, size_t n, const char *name, size_t *off, size_t *len);

/* Serialize compactly, with '/' left unescaped. The string is owned by obj. */
const char *jsonx_dump(struct json_object *obj, size_t *len);

/* Adders that keep handler code short; NULL s stores null. Return 0/-1. */
int jsonx_add_str(struct json_object *obj, const char *key, const char *s);
int jsonx_add_int(struct json_object *obj, const char *key, long long v);
int jsonx_add_bool(struct json_object *obj, const char *key, bool v);
int jsonx_add_double(struct json_object *obj, const char *key, double v);
int jsonx_add(struct json_object *obj, const char *key, struct json_object *val);

/* Append s to b as a JSON string (null for NULL), escaped exactly as
 * jsonx_dump escapes strings, for building API objects by concatenation.
 * s must be valid UTF-8 (text from PostgreSQL is). */
void jsonx_buf_str(struct buf *b, const char *s);
/* Append text that already is JSON (a number, a json value), or null. */
void jsonx_buf_raw(struct buf *b, const char *s);

#endif
