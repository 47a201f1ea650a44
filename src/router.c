#include "router.h"

#include <stdbool.h>
#include <string.h>

#include "text.h"

/* Match one pattern against a raw path. 1 = match, 0 = no, -1 = the path
 * matched but a placeholder held a malformed escape. */
static int match_one(const char *pat, const char *path, struct arena *arena, struct route_match *m)
{
	m->nparams = 0;
	while (*pat && *path) {
		if (*pat == '{') {
			const char *close = strchr(pat, '}');
			bool rest = close && close > pat && close[-1] == '*';
			size_t len;
			char *dst;
			long dlen;

			if (close == NULL || m->nparams >= ROUTE_MAX_PARAMS)
				return 0;
			len = rest ? strlen(path) : strcspn(path, "/");
			if (len == 0)
				return 0;
			dst = arena_alloc(arena, len + 1);
			if (dst == NULL)
				return -1;
			dlen = text_pct_decode(path, len, dst, false);
			if (dlen <= 0 || text_has_nul(dst, (size_t)dlen) || !text_utf8_valid(dst, (size_t)dlen))
				return -1;
			m->params[m->nparams++] = dst;
			pat = close + 1;
			path += len;
			continue;
		}
		if (*pat != *path)
			return 0;
		pat++;
		path++;
	}
	return *pat == '\0' && *path == '\0';
}

static void allow_add(char *allow, size_t len, const char *name)
{
	size_t used = strlen(allow);

	if (strstr(allow, name))
		return;
	if (used + strlen(name) + 3 > len)
		return;
	if (used)
		strcat(allow, ", ");
	strcat(allow, name);
}

static int match_path(const struct route *routes, size_t n, enum http_method method,
    const char *path, struct arena *arena, struct route_match *m, char *allow, size_t allowlen)
{
	enum http_method want = method == HTTP_HEAD ? HTTP_GET : method;
	bool path_known = false, bad = false;
	struct route_match tmp;

	for (size_t i = 0; i < n; i++) {
		int r = match_one(routes[i].pattern, path, arena, &tmp);
		if (r == 0)
			continue;
		if (r < 0) {
			bad = true;
			continue;
		}
		if (routes[i].method == want) {
			*m = tmp;
			return (int)i;
		}
		path_known = true;
		allow_add(allow, allowlen, http_method_name(routes[i].method));
		if (routes[i].method == HTTP_GET)
			allow_add(allow, allowlen, "HEAD");
	}
	if (bad)
		return ROUTER_BAD_PATH;
	return path_known ? ROUTER_BAD_METHOD : ROUTER_NOT_FOUND;
}

int router_match(const struct route *routes, size_t n, enum http_method method,
    const char *path, struct arena *arena, struct route_match *m, char *allow, size_t allowlen)
{
	size_t len = strlen(path);
	int r;

	allow[0] = '\0';
	memset(m, 0, sizeof *m);
	r = match_path(routes, n, method, path, arena, m, allow, allowlen);
	/* "/api/health/" means "/api/health". */
	if (r == ROUTER_NOT_FOUND && len > 1 && path[len - 1] == '/') {
		char *trimmed = arena_strndup(arena, path, len - 1);
		if (trimmed)
			r = match_path(routes, n, method, trimmed, arena, m, allow, allowlen);
	}
	return r;
}
