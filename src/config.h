/* The configuration file (CONTRACT §1): INI sections, a fixed set of keys,
 * environment overrides. A table of keys drives parsing and validation. */
#ifndef BLOQR_CONFIG_H
#define BLOQR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum conf_strategy { CONF_WRITE_THROUGH = 0, CONF_LAZY = 1 };

struct conf {
	char *path;                   /* the file read; owned */
	/* [database] */
	char *db_url;
	char *db_listen_url;          /* direct connection for LISTEN; "" = db_url */
	long db_statement_timeout_ms;
	char *db_query_url;           /* "" = query console answers 503 */
	/* [cache] */
	char *cache_path;             /* "" = no L1 cache */
	long cache_max_age;           /* seconds */
	enum conf_strategy cache_strategy;
	long cache_auth_grace;        /* seconds */
	long cache_max_rows;          /* rows kept per cached table */
	long cache_change_log_keep;   /* seconds PostgreSQL's change log is kept, at least */
	/* [pool] */
	char *pool_listen;
	long pool_workers;            /* 0 = not set: the number of CPUs */
	long pool_max_requests;       /* 0 = never recycle */
	char *pool_user;              /* "" = stay as started */
	long pool_socket_mode;        /* a unix:/path socket's mode */
	char *pool_socket_group;      /* its group; "" = the pool's own */
	/* [http] */
	long http_max_body;
	bool http_cookie_secure;
	char *http_trusted_origins;   /* "" = the request's own origin (CSRF guard) */
	long http_request_timeout;    /* seconds to receive a whole request */
	char *http_metrics_allow;     /* who may read /metrics (addrlist.h) */
};

/* Load path into *c (all strings owned by *c, free with conf_free). The
 * defaults apply to keys the file leaves out; then BLOQR_DATABASE_URL,
 * BLOQR_LISTEN_URL and BLOQR_CACHE_PATH override. On failure returns -1 with a message naming
 * the file, line and key in err; *c is then empty. */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Defaults only (no file), with the environment overrides applied. */
int conf_defaults(struct conf *c) __attribute__((warn_unused_result));

void conf_free(struct conf *c);

/* The file to read when -c is absent: $BLOQR_CONF, else NULL. */
const char *conf_path_from_env(void);

/* The connection the invalidation listener holds: listen_url, else url. */
const char *conf_listen_url(const struct conf *c);

/* Workers to start: [pool] workers, else the number of online CPUs. */
long conf_workers(const struct conf *c);

#endif
