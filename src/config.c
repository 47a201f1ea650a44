#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addrlist.h"
#include "csrf.h"

enum conf_type { T_STR, T_LONG, T_BOOL, T_STRATEGY, T_ORIGINS, T_OCTAL, T_ADDRS };

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	size_t offset;
	const char *def;
	long min, max;             /* for T_LONG */
};

#define OFF(f) offsetof(struct conf, f)
static const struct conf_key conf_keys[] = {
	{ "database", "url", T_STR, OFF(db_url), "postgresql:///bloqr?host=/run/postgresql", 0, 0 },
	{ "database", "listen_url", T_STR, OFF(db_listen_url), "", 0, 0 },
	{ "database", "statement_timeout_ms", T_LONG, OFF(db_statement_timeout_ms), "5000", 1, 3600000 },
	{ "database", "query_url", T_STR, OFF(db_query_url), "", 0, 0 },
	{ "cache", "path", T_STR, OFF(cache_path), "/var/lib/bloqr/cache.db", 0, 0 },
	{ "cache", "max_age", T_LONG, OFF(cache_max_age), "300", 0, 31536000 },
	{ "cache", "strategy", T_STRATEGY, OFF(cache_strategy), "write-through", 0, 0 },
	{ "cache", "auth_grace", T_LONG, OFF(cache_auth_grace), "60", 0, 86400 },
	{ "cache", "max_rows", T_LONG, OFF(cache_max_rows), "500000", 100, 100000000 },
	{ "cache", "change_log_keep", T_LONG, OFF(cache_change_log_keep), "600", 5, 604800 },
	{ "pool", "listen", T_STR, OFF(pool_listen), "127.0.0.1:9000", 0, 0 },
	{ "pool", "workers", T_LONG, OFF(pool_workers), "0", 1, 256 },
	{ "pool", "max_requests", T_LONG, OFF(pool_max_requests), "0", 0, LONG_MAX },
	{ "pool", "user", T_STR, OFF(pool_user), "", 0, 0 },
	{ "pool", "socket_mode", T_OCTAL, OFF(pool_socket_mode), "0660", 0, 0777 },
	{ "pool", "socket_group", T_STR, OFF(pool_socket_group), "", 0, 0 },
	{ "http", "max_body", T_LONG, OFF(http_max_body), "1048576", 1, 1073741824 },
	{ "http", "cookie_secure", T_BOOL, OFF(http_cookie_secure), "true", 0, 0 },
	{ "http", "trusted_origins", T_ORIGINS, OFF(http_trusted_origins), "", 0, 0 },
	{ "http", "request_timeout", T_LONG, OFF(http_request_timeout), "30", 1, 3600 },
	{ "http", "metrics_allow", T_ADDRS, OFF(http_metrics_allow), "127.0.0.0/8 ::1", 0, 0 },
};
#define NKEYS (sizeof conf_keys / sizeof conf_keys[0])

static const struct conf_key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

static int set_str(char **dst, const char *v, char *why, size_t whylen)
{
	char *s = strdup(v);

	if (s == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	free(*dst);
	*dst = s;
	return 0;
}

/* Store value for key k; on a bad value fill why and return -1. */
static int set_value(struct conf *c, const struct conf_key *k, const char *v,
    char *why, size_t whylen, int is_default)
{
	char *base = (char *)c;

	switch (k->type) {
	case T_ADDRS:
	case T_ORIGINS:
		if (k->type == T_ADDRS) {
			if (addrlist_check(v, why, whylen) < 0)
				return -1;
			return set_str((char **)(base + k->offset), v, why, whylen);
		}
		/* Space-separated scheme://host[:port]; checked here so a typo
		 * stops the program instead of refusing every browser. */
		for (const char *p = v; *p;) {
			size_t n;
			while (*p == ' ' || *p == '\t')
				p++;
			n = strcspn(p, " \t");
			if (n && !csrf_origin_valid(p, n)) {
				snprintf(why, whylen, "\"%.*s\" is not an origin (scheme://host[:port], http or https)",
				    (int)(n > 100 ? 100 : n), p);
				return -1;
			}
			p += n;
		}
		/* fall through */
	case T_STR:
		return set_str((char **)(base + k->offset), v, why, whylen);
	case T_LONG: {
		long *dst = (long *)(base + k->offset);
		char *end;
		long n;

		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end != '\0' || !isdigit((unsigned char)v[0])) {
			snprintf(why, whylen, "expected a whole number, got \"%s\"", v);
			return -1;
		}
		/* workers = 0 is the built-in "not set" only as a default. */
		if (!is_default && (n < k->min || n > k->max)) {
			snprintf(why, whylen, "%ld is out of range (%ld to %ld)", n, k->min, k->max);
			return -1;
		}
		*dst = n;
		return 0;
	}
	case T_OCTAL: {
		long *dst = (long *)(base + k->offset);
		char *end;
		long n;

		errno = 0;
		n = strtol(v, &end, 8);
		if (errno || end == v || *end != '\0' || v[0] != '0' || n < k->min || n > k->max) {
			snprintf(why, whylen, "expected an octal file mode such as 0660, got \"%s\"", v);
			return -1;
		}
		*dst = n;
		return 0;
	}
	case T_BOOL: {
		bool *dst = (bool *)(base + k->offset);
		if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
			*dst = true;
		else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
			*dst = false;
		else {
			snprintf(why, whylen, "expected true or false, got \"%s\"", v);
			return -1;
		}
		return 0;
	}
	case T_STRATEGY: {
		enum conf_strategy *dst = (enum conf_strategy *)(base + k->offset);
		if (!strcmp(v, "write-through"))
			*dst = CONF_WRITE_THROUGH;
		else if (!strcmp(v, "lazy"))
			*dst = CONF_LAZY;
		else {
			snprintf(why, whylen, "expected write-through or lazy, got \"%s\"", v);
			return -1;
		}
		return 0;
	}
	}
	return -1;
}

static int apply_env(struct conf *c, char *err, size_t errlen)
{
	static const struct { const char *env, *section, *name; } envs[] = {
		{ "BLOQR_DATABASE_URL", "database", "url" },
		{ "BLOQR_LISTEN_URL", "database", "listen_url" },
		{ "BLOQR_CACHE_PATH", "cache", "path" },
	};
	char why[256];

	for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
		const char *v = getenv(envs[i].env);
		if (v == NULL)
			continue;
		if (set_value(c, find_key(envs[i].section, envs[i].name), v, why, sizeof why, 0) < 0) {
			snprintf(err, errlen, "environment %s: %s", envs[i].env, why);
			return -1;
		}
	}
	return 0;
}

int conf_defaults(struct conf *c)
{
	char why[256];

	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NKEYS; i++)
		if (set_value(c, &conf_keys[i], conf_keys[i].def, why, sizeof why, 1) < 0)
			goto fail;
	if (apply_env(c, why, sizeof why) < 0)
		goto fail;
	return 0;
fail:
	conf_free(c);
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* An inline comment starts at ';' or '#' preceded by white space, so URLs
 * keep any ';' or '#' that is not. */
static void strip_comment(char *s)
{
	for (char *p = s; *p; p++)
		if ((*p == ';' || *p == '#') && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
}

int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
	char line[4096], section[64] = "", why[256];
	FILE *f = NULL;
	int lineno = 0;

	if (conf_defaults(c) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	c->path = strdup(path);
	if (c->path == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	while (fgets(line, sizeof line, f)) {
		char *s, *eq, *key, *val;
		const struct conf_key *k;
		size_t len = strlen(line);

		lineno++;
		if (len == sizeof line - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%d: line too long", path, lineno);
			goto fail;
		}
		s = trim(line);
		if (*s == '\0' || *s == ';' || *s == '#')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (e == NULL) {
				snprintf(err, errlen, "%s:%d: unterminated section header", path, lineno);
				goto fail;
			}
			*e = '\0';
			strip_comment(e + 1);
			if (*trim(e + 1) != '\0') {
				snprintf(err, errlen, "%s:%d: text after section header", path, lineno);
				goto fail;
			}
			s = trim(s + 1);
			if (strcmp(s, "database") && strcmp(s, "cache") && strcmp(s, "pool") && strcmp(s, "http")) {
				snprintf(err, errlen, "%s:%d: unknown section [%.60s]", path, lineno, s);
				goto fail;
			}
			snprintf(section, sizeof section, "%s", s);
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = trim(s);
		val = eq + 1;
		strip_comment(val);
		val = trim(val);
		if (section[0] == '\0') {
			snprintf(err, errlen, "%s:%d: key %.60s outside any section", path, lineno, key);
			goto fail;
		}
		k = find_key(section, key);
		if (k == NULL) {
			snprintf(err, errlen, "%s:%d: unknown key %s.%.60s", path, lineno, section, key);
			goto fail;
		}
		if (set_value(c, k, val, why, sizeof why, 0) < 0) {
			snprintf(err, errlen, "%s:%d: %s.%s: %s", path, lineno, section, key, why);
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	f = NULL;
	if (apply_env(c, why, sizeof why) < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		goto fail;
	}
	if (c->db_url[0] == '\0') {
		snprintf(err, errlen, "%s: database.url: must not be empty", path);
		goto fail;
	}
	return 0;
fail:
	if (f)
		fclose(f);
	conf_free(c);
	return -1;
}

void conf_free(struct conf *c)
{
	free(c->path);
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_keys[i].type == T_STR || conf_keys[i].type == T_ORIGINS || conf_keys[i].type == T_ADDRS) {
			char **p = (char **)((char *)c + conf_keys[i].offset);
			free(*p);
		}
	memset(c, 0, sizeof *c);
}

const char *conf_path_from_env(void)
{
	const char *p = getenv("BLOQR_CONF");

	return p && *p ? p : NULL;
}

const char *conf_listen_url(const struct conf *c)
{
	return c->db_listen_url && c->db_listen_url[0] ? c->db_listen_url : c->db_url;
}

long conf_workers(const struct conf *c)
{
	long n;

	if (c->pool_workers > 0)
		return c->pool_workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}
