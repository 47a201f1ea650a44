#include "jsonx.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

/* A strict RFC 8259 check run before json-c, which accepts more than the
 * standard (single quotes, some trailing data) and reports less precisely.
 * Nesting is bounded, so the recursion is too. */
struct scan {
	const char *s;
	size_t n, i;
	int depth;
	char *err;
	size_t errlen;
};

static int scan_fail(struct scan *sc, const char *what)
{
	if (sc->i >= sc->n)
		snprintf(sc->err, sc->errlen, "Invalid JSON: unexpected end of input");
	else
		snprintf(sc->err, sc->errlen, "Invalid JSON at byte %zu: %s", sc->i, what);
	return -1;
}

static void scan_ws(struct scan *sc)
{
	while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
	    sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
		sc->i++;
}

static int scan_lit(struct scan *sc, const char *lit)
{
	size_t l = strlen(lit);

	if (sc->n - sc->i < l || memcmp(sc->s + sc->i, lit, l) != 0)
		return scan_fail(sc, "unexpected character");
	sc->i += l;
	return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int scan_number(struct scan *sc)
{
	const char *s = sc->s;

	if (sc->i < sc->n && s[sc->i] == '-')
		sc->i++;
	if (sc->i >= sc->n || !is_digit(s[sc->i]))
		return scan_fail(sc, "malformed number");
	if (s[sc->i] == '0')
		sc->i++;
	else
		while (sc->i < sc->n && is_digit(s[sc->i]))
			sc->i++;
	if (sc->i < sc->n && s[sc->i] == '.') {
		sc->i++;
		if (sc->i >= sc->n || !is_digit(s[sc->i]))
			return scan_fail(sc, "malformed number");
		while (sc->i < sc->n && is_digit(s[sc->i]))
			sc->i++;
	}
	if (sc->i < sc->n && (s[sc->i] == 'e' || s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->n && (s[sc->i] == '+' || s[sc->i] == '-'))
			sc->i++;
		if (sc->i >= sc->n || !is_digit(s[sc->i]))
			return scan_fail(sc, "malformed number");
		while (sc->i < sc->n && is_digit(s[sc->i]))
			sc->i++;
	}
	if (sc->i < sc->n && is_digit(s[sc->i]))
		return scan_fail(sc, "malformed number");
	return 0;
}

static int scan_string(struct scan *sc)
{
	sc->i++;   /* opening quote */
	while (sc->i < sc->n) {
		unsigned char c = (unsigned char)sc->s[sc->i];

		if (c == '"') {
			sc->i++;
			return 0;
		}
		if (c < 0x20)
			return scan_fail(sc, "control character in a string");
		if (c == '\\') {
			sc->i++;
			if (sc->i >= sc->n)
				break;
			c = (unsigned char)sc->s[sc->i];
			if (c == 'u') {
				for (int k = 1; k <= 4; k++)
					if (sc->i + (size_t)k >= sc->n || !isxdigit((unsigned char)sc->s[sc->i + (size_t)k]))
						return scan_fail(sc, "malformed \\u escape");
				sc->i += 4;
			} else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
				return scan_fail(sc, "unknown escape in a string");
			}
		}
		sc->i++;
	}
	return scan_fail(sc, "unterminated string");
}

static int scan_value(struct scan *sc);

static int scan_container(struct scan *sc, char close)
{
	bool first = true;

	if (++sc->depth > JSONX_MAX_DEPTH) {
		snprintf(sc->err, sc->errlen, "Invalid JSON: nesting deeper than %d levels", JSONX_MAX_DEPTH);
		return -1;
	}
	sc->i++;
	for (;;) {
		scan_ws(sc);
		if (sc->i >= sc->n)
			return scan_fail(sc, "");
		if (sc->s[sc->i] == close && first) {
			sc->i++;
			break;
		}
		if (close == '}') {
			if (sc->s[sc->i] != '"')
				return scan_fail(sc, "expected a quoted member name");
			if (scan_string(sc) < 0)
				return -1;
			scan_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i] != ':')
				return scan_fail(sc, "expected ':'");
			sc->i++;
		}
		if (scan_value(sc) < 0)
			return -1;
		scan_ws(sc);
		if (sc->i >= sc->n)
			return scan_fail(sc, "");
		if (sc->s[sc->i] == ',') {
			sc->i++;
			first = false;
			scan_ws(sc);
			if (sc->i < sc->n && sc->s[sc->i] == close)
				return scan_fail(sc, "trailing comma");
			continue;
		}
		if (sc->s[sc->i] != close)
			return scan_fail(sc, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
		sc->i++;
		break;
	}
	sc->depth--;
	return 0;
}

static int scan_value(struct scan *sc)
{
	scan_ws(sc);
	if (sc->i >= sc->n)
		return scan_fail(sc, "");
	switch (sc->s[sc->i]) {
	case '{': return scan_container(sc, '}');
	case '[': return scan_container(sc, ']');
	case '"': return scan_string(sc);
	case 't': return scan_lit(sc, "true");
	case 'f': return scan_lit(sc, "false");
	case 'n': return scan_lit(sc, "null");
	default:
		if (sc->s[sc->i] == '-' || is_digit(sc->s[sc->i]))
			return scan_number(sc);
		return scan_fail(sc, "unexpected character");
	}
}

static int jsonx_validate(const char *s, size_t n, char *err, size_t errlen)
{
	struct scan sc = { s, n, 0, 0, err, errlen };

	if (scan_value(&sc) < 0)
		return -1;
	scan_ws(&sc);
	if (sc.i < n) {
		snprintf(err, errlen, "Invalid JSON at byte %zu: unexpected data after the value", sc.i);
		return -1;
	}
	return 0;
}

int jsonx_parse(const char *s, size_t n, struct json_object **out, char *err, size_t errlen)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	enum json_tokener_error jerr;
	size_t end;

	*out = NULL;
	if (n > (size_t)INT32_MAX - 1) {
		snprintf(err, errlen, "Request body is too large");
		return -1;
	}
	/* Checked here as well as by json-c so the message can say so plainly. */
	if (!text_utf8_valid(s, n)) {
		snprintf(err, errlen, "Request body is not valid UTF-8");
		return -1;
	}
	if (memchr(s, '\0', n)) {
		snprintf(err, errlen, "Invalid JSON: unexpected NUL byte");
		return -1;
	}
	if (jsonx_validate(s, n, err, errlen) < 0)
		return -1;
	tok = json_tokener_new_ex(JSONX_MAX_DEPTH + 1);
	if (tok == NULL) {
		snprintf(err, errlen, "Out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare number or an unfinished document: feed the end marker. */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		if (jerr == json_tokener_success)
			end = n;
		else
			end = 0;
	} else {
		end = json_tokener_get_parse_end(tok);
	}
	if (jerr != json_tokener_success) {
		if (jerr == json_tokener_error_depth)
			snprintf(err, errlen, "Invalid JSON: nesting deeper than %d levels", JSONX_MAX_DEPTH);
		else if (jerr == json_tokener_continue || n == 0)
			snprintf(err, errlen, "Invalid JSON: unexpected end of input");
		else
			snprintf(err, errlen, "Invalid JSON at byte %zu: %s",
			    json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
		goto fail;
	}
	for (; end < n; end++)
		if (s[end] != ' ' && s[end] != '\t' && s[end] != '\r' && s[end] != '\n') {
			snprintf(err, errlen, "Invalid JSON at byte %zu: unexpected data after the value", end);
			goto fail;
		}
	json_tokener_free(tok);
	*out = obj;
	return 0;
fail:
	json_object_put(obj);
	json_tokener_free(tok);
	return -1;
}

int jsonx_parse_object(const char *s, size_t n, struct json_object **out, char *err, size_t errlen)
{
	if (n == 0) {
		snprintf(err, errlen, "Request body must be a JSON object");
		return -1;
	}
	if (jsonx_parse(s, n, out, err, errlen) < 0)
		return -1;
	if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		snprintf(err, errlen, "Request body must be a JSON object");
		return -1;
	}
	return 0;
}

static struct json_object *field(struct json_object *obj, const char *name)
{
	struct json_object *v = NULL;

	if (obj == NULL || !json_object_object_get_ex(obj, name, &v))
		return NULL;
	return v; /* NULL also for a JSON null */
}

int jsonx_get_string(struct json_object *obj, const char *name, size_t maxlen,
    const char **out, char *err, size_t errlen)
{
	struct json_object *v = field(obj, name);
	size_t len;

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "Field '%s' must be a string", name);
		return -1;
	}
	len = (size_t)json_object_get_string_len(v);
	if (len > maxlen) {
		snprintf(err, errlen, "Field '%s' must be at most %zu bytes", name, maxlen);
		return -1;
	}
	*out = json_object_get_string(v);
	if (memchr(*out, '\0', len)) {
		*out = NULL;
		snprintf(err, errlen, "Field '%s' must not contain NUL characters", name);
		return -1;
	}
	return 1;
}

int jsonx_get_int(struct json_object *obj, const char *name, long long min, long long max,
    long long *out, char *err, size_t errlen)
{
	struct json_object *v = field(obj, name);
	long long n;

	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "Field '%s' must be an integer", name);
		return -1;
	}
	n = (long long)json_object_get_int64(v);
	/* json-c saturates on overflow; the range check catches it. */
	if (n < min || n > max) {
		snprintf(err, errlen, "Field '%s' must be between %lld and %lld", name, min, max);
		return -1;
	}
	*out = n;
	return 1;
}

int jsonx_get_bool(struct json_object *obj, const char *name, bool *out, char *err, size_t errlen)
{
	struct json_object *v = field(obj, name);

	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_boolean)) {
		snprintf(err, errlen, "Field '%s' must be true or false", name);
		return -1;
	}
	*out = json_object_get_boolean(v);
	return 1;
}

const char *jsonx_dump(struct json_object *obj, size_t *len)
{
	const char *s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);

	if (s == NULL && len)
		*len = 0;
	return s;
}

int jsonx_add(struct json_object *obj, const char *key, struct json_object *val)
{
	/* Takes ownership of val in every case: json-c keeps it only on success. */
	if (json_object_object_add(obj, key, val) < 0) {
		json_object_put(val);
		return -1;
	}
	return 0;
}

int jsonx_add_str(struct json_object *obj, const char *key, const char *s)
{
	struct json_object *v = NULL;

	if (s) {
		v = json_object_new_string(s);
		if (v == NULL)
			return -1;
	}
	return jsonx_add(obj, key, v);
}

int jsonx_add_int(struct json_object *obj, const char *key, long long n)
{
	struct json_object *v = json_object_new_int64(n);

	return v ? jsonx_add(obj, key, v) : -1;
}

int jsonx_add_bool(struct json_object *obj, const char *key, bool b)
{
	struct json_object *v = json_object_new_boolean(b);

	return v ? jsonx_add(obj, key, v) : -1;
}

int jsonx_add_double(struct json_object *obj, const char *key, double d)
{
	char tmp[32];
	struct json_object *v;

	/* Three decimals: json-c's default %.17g prints 0.12300000000000001. */
	snprintf(tmp, sizeof tmp, "%.3f", d);
	v = json_object_new_double_s(d, tmp);
	return v ? jsonx_add(obj, key, v) : -1;
}

/* Append s as a JSON string (null for NULL), escaped as json-c does with
 * JSON_C_TO_STRING_NOSLASHESCAPE, without a json-c object per field. Text
 * from PostgreSQL is valid UTF-8 (the database encoding), passed as is. */
void jsonx_buf_str(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run;

	if (s == NULL) {
		buf_puts(b, "null");
		return;
	}
	buf_append(b, "\"", 1);
	for (run = s; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7] = "\\u00";
		const char *e = NULL;

		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		default:
			if (c < 0x20) {
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				esc[6] = '\0';
				e = esc;
			}
		}
		if (e) {
			buf_append(b, run, (size_t)(s - run));
			buf_puts(b, e);
			run = s + 1;
		}
	}
	buf_append(b, run, (size_t)(s - run));
	buf_append(b, "\"", 1);
}

/* Append raw JSON text (already valid: a json value, an integer) or null. */
void jsonx_buf_raw(struct buf *b, const char *s)
{
	buf_puts(b, s ? s : "null");
}

/* ---- the raw text of a member ---- */

static size_t raw_skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* Skip the JSON string starting at s[i] == '"'; returns the index after it. */
static size_t raw_skip_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

/* Skip the JSON value starting at s[i]; returns the index after it. */
static size_t raw_skip_value(const char *s, size_t n, size_t i)
{
	int depth = 0;

	do {
		if (i >= n)
			return n;
		if (s[i] == '"') {
			i = raw_skip_string(s, n, i);
		} else if (s[i] == '{' || s[i] == '[') {
			depth++;
			i++;
		} else if (s[i] == '}' || s[i] == ']') {
			depth--;
			i++;
		} else if (depth == 0) {
			/* a number or literal: up to the next delimiter */
			while (i < n && s[i] && !strchr(",}] \t\r\n", s[i]))
				i++;
		} else {
			i++;
		}
	} while (depth > 0);
	return i;
}

static int raw_hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	    c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Whether the JSON string body s[0..n) (between the quotes) decodes to
 * the ASCII name; escapes are honoured ("\u0064ata" is "data"). */
static bool raw_name_is(const char *s, size_t n, const char *name)
{
	size_t i = 0;

	for (; i < n; name++) {
		int c = (unsigned char)s[i++];

		if (c == '\\' && i < n) {
			c = s[i++];
			switch (c) {
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (i + 4 > n)
					return false;
				c = 0;
				for (int k = 0; k < 4; k++)
					c = c * 16 + raw_hexval(s[i++]);
				break;
			default: break;   /* \" \\ \/ stand for themselves */
			}
		}
		if (*name == '\0' || c != (unsigned char)*name)
			return false;
	}
	return *name == '\0';
}

/* See jsonx.h. The text has passed the strict scan, so this only walks
 * it: strings, nesting and member separators, never validating again. */
bool jsonx_raw_member(const char *s, size_t n, const char *name, size_t *off, size_t *len)
{
	bool found = false;
	size_t i = 0;

	i = raw_skip_ws(s, n, i);
	if (i >= n || s[i] != '{')
		return false;
	i++;
	for (;;) {
		size_t k0, k1, v0;

		i = raw_skip_ws(s, n, i);
		if (i >= n || s[i] != '"')
			break;   /* '}' of an empty object */
		k0 = i + 1;
		i = raw_skip_string(s, n, i);
		k1 = i - 1;
		i = raw_skip_ws(s, n, i);
		if (i >= n || s[i] != ':')
			break;
		i++;
		i = raw_skip_ws(s, n, i);
		v0 = i;
		i = raw_skip_value(s, n, i);
		if (raw_name_is(s + k0, k1 - k0, name)) {
			*off = v0;
			*len = i - v0;
			found = true;
		}
		i = raw_skip_ws(s, n, i);
		if (i >= n || s[i] != ',')
			break;
		i++;
	}
	return found;
}

