/* The L1 read cache: the only module that opens or queries SQLite.
 * Every host keeps one SQLite file; every worker holds one handle to it.
 * PostgreSQL is the source of truth; nothing here is ever written before
 * PostgreSQL has committed. A cache failure is logged and counted, never
 * passed on to a client. */
#ifndef BLOQR_CACHE_H
#define BLOQR_CACHE_H

#include <stdbool.h>
#include <stddef.h>

struct cache;

/* Open the cache at path ("" or NULL: the cache is disabled and every call
 * below is a cheap no-op). Never fails for a missing or broken file: the
 * handle then reports itself unusable and retries later. NULL only when out
 * of memory. */
struct cache *cache_open(const char *path, long max_age);
void cache_close(struct cache *c);

bool cache_enabled(const struct cache *c);

/* Live probe for /api/health: 0 when the file is there and answers a query,
 * -1 otherwise. latency_ms gets the time taken. */
int cache_probe(struct cache *c, double *latency_ms);

/* Migrations of the cache schema (bloqr-admin migrate): see cache_migrate.h. */
#include "cache_migrate.h"

#endif
