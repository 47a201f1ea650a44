/* The registry of cached tables: which store module describes each. */
#include "cache.h"
#include "deployments.h"
#include "storage.h"

const struct cache_tabledef *const cache_defs[CACHE_NTABLES] = {
	[CACHE_DEPLOYMENTS] = &deployments_cache_def,
	[CACHE_STORAGE] = &storage_cache_def,
	[CACHE_FILTERS] = &filters_cache_def,
	[CACHE_COMPILATIONS] = &compilations_cache_def,
	[CACHE_CREDENTIALS] = NULL,   /* handled by cache.c itself for auth.c */
};
