/* The cached tables: their numbers and names. A leaf header, so that a
 * module that only names tables (metrics.c) needs nothing else of the
 * cache. */
#ifndef BLOQR_CACHE_TABLES_H
#define BLOQR_CACHE_TABLES_H

enum cache_tbl {
	CACHE_DEPLOYMENTS = 0,   /* deployment_history */
	CACHE_STORAGE,           /* storage_entries */
	CACHE_FILTERS,           /* filter_cache */
	CACHE_COMPILATIONS,      /* compilation_metadata */
	CACHE_CREDENTIALS,       /* sessions + api_tokens (+ the user's role and ban) */
	CACHE_NTABLES
};

/* The table's name as in PostgreSQL and the API (CACHE_CREDENTIALS:
 * "sessions"). */
const char *cache_table_name(enum cache_tbl t);
/* Its name in this host's SQLite file (CACHE_CREDENTIALS: "credentials"). */
const char *cache_sqlite_name(enum cache_tbl t);
/* The table a PostgreSQL table name's changes concern (users, sessions
 * and api_tokens: the credentials), or -1. name need not end in NUL. */
int cache_table_by_name(const char *name, unsigned long len);

#endif
