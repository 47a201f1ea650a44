/* The registry of cached tables: which store module describes each; the
 * table names come from those descriptions, in this one place. */
#include "cache.h"
#include "deployments.h"
#include "storage.h"

#include <string.h>

const struct cache_tabledef *const cache_defs[CACHE_NTABLES] = {
	[CACHE_DEPLOYMENTS] = &deployments_cache_def,
	[CACHE_STORAGE] = &storage_cache_def,
	[CACHE_FILTERS] = &filters_cache_def,
	[CACHE_COMPILATIONS] = &compilations_cache_def,
	[CACHE_CREDENTIALS] = NULL,   /* handled by the cache itself, for auth.c */
};

const char *cache_table_name(enum cache_tbl t)
{
	return t == CACHE_CREDENTIALS ? "sessions" : cache_defs[t]->name;
}

const char *cache_sqlite_name(enum cache_tbl t)
{
	return t == CACHE_CREDENTIALS ? "credentials" : cache_defs[t]->name;
}

int cache_table_by_name(const char *name, unsigned long len)
{
	/* A credential depends on its session or token row and on its user's. */
	static const char *const cred[] = { "users", "sessions", "api_tokens" };

	for (int t = 0; t < CACHE_NTABLES; t++)
		if (cache_defs[t] && strlen(cache_defs[t]->name) == len && memcmp(cache_defs[t]->name, name, len) == 0)
			return t;
	for (size_t i = 0; i < sizeof cred / sizeof cred[0]; i++)
		if (strlen(cred[i]) == len && memcmp(cred[i], name, len) == 0)
			return CACHE_CREDENTIALS;
	return -1;
}
