#include "csrf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* An origin reduced to compare equal however it was written: lowercase,
 * and without the scheme's default port (browsers leave it out, a Host
 * header may keep it). Returns the length, or 0 when s is no origin. */
static size_t origin_norm(const char *s, size_t n, char out[static CSRF_ORIGIN_MAX + 1])
{
	size_t i, host, port;
	bool https;

	if (n == 0 || n > CSRF_ORIGIN_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	if (strncmp(out, "https://", 8) == 0) {
		https = true;
		host = 8;
	} else if (strncmp(out, "http://", 7) == 0) {
		https = false;
		host = 7;
	} else
		return 0;
	i = host;
	if (i < n && out[i] == '[') {              /* an IPv6 literal */
		for (i++; i < n && ((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f') ||
		    out[i] == ':' || out[i] == '.'); i++)
			;
		if (i >= n || out[i] != ']' || i == host + 1)
			return 0;
		i++;
	} else {
		for (; i < n && ((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= '0' && out[i] <= '9') ||
		    out[i] == '.' || out[i] == '-' || out[i] == '_'); i++)
			;
		if (i == host)
			return 0;
	}
	if (i == n)
		return n;
	if (out[i] != ':')
		return 0;
	port = i + 1;
	if (port == n || n - port > 5)
		return 0;
	for (size_t j = port; j < n; j++)
		if (out[j] < '0' || out[j] > '9')
			return 0;
	if ((https && strcmp(out + port, "443") == 0) || (!https && strcmp(out + port, "80") == 0)) {
		out[i] = '\0';
		return i;
	}
	return n;
}

bool csrf_origin_valid(const char *s, size_t n)
{
	char tmp[CSRF_ORIGIN_MAX + 1];

	return origin_norm(s, n, tmp) > 0;
}

/* The request's own origin, from its scheme and Host. Debian's nginx
 * passes Host without its port ($host), so the port the client connected
 * to (SERVER_PORT) completes it. */
static size_t own_origin(const struct csrf_input *in, char out[static CSRF_ORIGIN_MAX + 1])
{
	char raw[CSRF_ORIGIN_MAX + 2];
	const char *scheme, *h = in->host, *colon, *port = "";
	int n;

	if (h == NULL || h[0] == '\0')
		return 0;
	if (in->scheme && (strcasecmp(in->scheme, "https") == 0 || strcasecmp(in->scheme, "http") == 0))
		scheme = in->scheme;
	else
		scheme = in->https && strcasecmp(in->https, "on") == 0 ? "https" : "http";
	colon = strrchr(h, ':');
	if ((colon == NULL || strchr(colon, ']')) && in->server_port && in->server_port[0])
		port = in->server_port;
	n = snprintf(raw, sizeof raw, "%s://%s%s%s", scheme, h, port[0] ? ":" : "", port);
	if (n < 0 || (size_t)n >= sizeof raw)
		return 0;
	return origin_norm(raw, (size_t)n, out);
}

bool csrf_allowed(const struct csrf_input *in, const char *trusted)
{
	char origin[CSRF_ORIGIN_MAX + 1], cand[CSRF_ORIGIN_MAX + 1];
	size_t olen, clen;

	if (in->x_requested_with && strcmp(in->x_requested_with, "bloqr") == 0)
		return true;
	if (in->sec_fetch_site && strcmp(in->sec_fetch_site, "same-origin") == 0)
		return true;
	if (in->origin == NULL || (olen = origin_norm(in->origin, strlen(in->origin), origin)) == 0)
		return false;
	if (trusted == NULL || trusted[0] == '\0') {
		clen = own_origin(in, cand);
		return clen == olen && memcmp(cand, origin, olen) == 0;
	}
	for (const char *p = trusted; *p;) {
		size_t n;
		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (n && (clen = origin_norm(p, n, cand)) == olen && memcmp(cand, origin, olen) == 0)
			return true;
		p += n;
	}
	return false;
}

bool csrf_content_type_json(const char *ct)
{
	static const char want[] = "application/json";

	if (ct == NULL)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, sizeof want - 1) != 0)
		return false;
	ct += sizeof want - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}
