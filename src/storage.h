/* The storage tables: storage_entries, filter_cache and
 * compilation_metadata. All their PostgreSQL statements, the API objects
 * they are shown as, and their descriptions for the L1 cache live here;
 * handlers/storage.c validates input and calls these.
 *
 * Every row comes back as a struct cache_row (key, cache columns, and the
 * API object as JSON text), so what a write returns, what the cache
 * stores and what a read from PostgreSQL gives are one and the same text. */
#ifndef BLOQR_STORAGE_H
#define BLOQR_STORAGE_H

#include <stdbool.h>

#include "buf.h"
#include "cache.h"
#include "store.h"

struct pg;

#define STORAGE_KEY_MAX 1024          /* bytes */
#define STORAGE_TAGS_MAX 100
#define STORAGE_TAG_MAX 200           /* bytes */
#define STORAGE_SOURCE_MAX 2048       /* bytes */
#define STORAGE_HASH_MAX 256
#define STORAGE_ETAG_MAX 256
#define STORAGE_CONFIG_NAME_MAX 200
#define STORAGE_OUTPUT_PATH_MAX 1024
#define STORAGE_TIME_MAX 64           /* an ISO-8601 time as given */

/* The cache's view of the three tables (see struct cache_tabledef). */
extern const struct cache_tabledef storage_cache_def;       /* storage_entries, per key */
extern const struct cache_tabledef filters_cache_def;       /* filter_cache, per key */
extern const struct cache_tabledef compilations_cache_def;  /* compilation_metadata, snapshot */

/* ---- reads, through the L1 cache (*how: HIT, MISS, STALE or BYPASS) ---- */

/* The entry key resp. the filter list of source: *body gets its API object
 * (malloc'd JSON text, caller frees), NULL when absent or expired. Returns
 * a bloqr_err (PostgreSQL failed and nothing cached could stand in). */
int storage_get(const struct store *s, const char *key, char **body, enum cache_outcome *how) BLOQR_MUSTCHECK;
int storage_filter_get(const struct store *s, const char *source, char **body, enum cache_outcome *how)
	BLOQR_MUSTCHECK;
/* Compilations newest first, at most limit, of config_name (NULL: all),
 * as API objects joined by ',' appended to out. */
int storage_compilations_list(const struct store *s, const char *config_name, long limit, struct buf *out,
    long *count, enum cache_outcome *how) BLOQR_MUSTCHECK;

/* ---- writes: committed to PostgreSQL, then handed to s->cache ---- */

/* Create or replace the entry key. data is JSON text, stored and returned
 * verbatim; expires (ISO-8601) and tags (a JSON array of strings) may be
 * NULL. On success row holds the entry as stored (the caller frees it with
 * cache_row_free) and *created tells an insert from a replacement. Returns
 * a bloqr_err; for BLOQR_EINPUT *field names the refused field ("data" or
 * "expiresAt"). */
int storage_put(const struct store *s, const char *key, const char *data, const char *expires,
    const char *tags, struct cache_row *row, bool *created, const char **field) BLOQR_MUSTCHECK;

/* Delete the entry key: BLOQR_OK and row filled (caller frees) when it
 * existed, BLOQR_ENOTFOUND when not. *expired: the deleted entry had
 * already expired, so it read as absent. */
int storage_delete(const struct store *s, const char *key, struct cache_row *row, bool *expired)
	BLOQR_MUSTCHECK;

/* Create or replace the filter list of source; etag and expires may be
 * NULL. Like storage_put; *field is "expiresAt" for BLOQR_EINPUT. */
int storage_filter_put(const struct store *s, const char *source, const char *content, const char *hash,
    const char *etag, const char *expires, struct cache_row *row, bool *created, const char **field)
	BLOQR_MUSTCHECK;

/* Record a compilation (output_path may be NULL); row gets it. */
int storage_compilation_create(const struct store *s, const char *config_name, long long source_count,
    long long rule_count, long long duration, const char *output_path, struct cache_row *row)
	BLOQR_MUSTCHECK;

/* For the admin export: append up to limit rows as the API objects of GET
 * /api/storage/{key} (by key), resp. GET /api/filter-cache (by source),
 * joined by ',', to out and set *count; expired rows included (an export
 * is of the table, not of what reads see). Returns a pg_err. */
int storage_export_entries(struct pg *pg, long limit, struct buf *out, long *count)
	__attribute__((warn_unused_result));
int storage_export_filters(struct pg *pg, long limit, struct buf *out, long *count)
	__attribute__((warn_unused_result));
/* The objects of GET /api/compilations, newest first, from PostgreSQL. */
int storage_export_compilations(struct pg *pg, long limit, struct buf *out, long *count)
	__attribute__((warn_unused_result));

#endif
