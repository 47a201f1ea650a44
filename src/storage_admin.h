/* Whole-table operations on the storage tables (storage_entries,
 * filter_cache, compilation_metadata) for the admin storage endpoints:
 * counts, bulk deletes, export, the schema's relations and VACUUM. Each
 * change is audited in its transaction and then handed to this host's L1
 * cache. Row-level statements stay in storage.c. */
#ifndef BLOQR_STORAGE_ADMIN_H
#define BLOQR_STORAGE_ADMIN_H

#include <json.h>
#include <stdbool.h>

#include "buf.h"
#include "err.h"
#include "store.h"

struct pg;

/* Longest a VACUUM ANALYZE may run: more than the usual statement timeout
 * (vacuuming a big table takes time), less than the FastCGI read timeout
 * of the example web-server configs (30 s), so the client still gets our
 * answer rather than the web server's 504. */
#define STORAGE_ADMIN_VACUUM_TIMEOUT_MS 25000

/* Row counts; every row counts, expired or not. expired_* are the rows
 * with expires_at <= now(). */
struct storage_admin_stats {
	long long storage_entries;
	long long filter_cache;
	long long compilation_metadata;
	long long expired_storage;
	long long expired_cache;
};

/* Fill *st from one snapshot. Returns a pg_err. */
int storage_admin_stats(struct pg *pg, struct storage_admin_stats *st)
	__attribute__((warn_unused_result));

/* Delete, in one transaction with its audit row, the expired storage
 * entries and filter-cache rows (expired) or the storage entries whose key
 * starts with "cache/" and every filter-cache row (!expired); *storage and
 * *filters get the numbers deleted. Then this host's cache drops them.
 * Returns a bloqr_err. */
int storage_admin_clear(const struct store *s, bool expired, long long *storage, long long *filters)
	BLOQR_MUSTCHECK;

/* The export's three arrays, from one snapshot, appended to out as
 * "storage_entries":[…],"filter_cache":[…],"compilation_metadata":[…]
 * (at most the STORAGE_ADMIN_EXPORT_* rows each; compilations newest
 * first). Returns a bloqr_err. */
#define STORAGE_ADMIN_EXPORT_ENTRIES 1000
#define STORAGE_ADMIN_EXPORT_FILTERS 100
#define STORAGE_ADMIN_EXPORT_COMPILATIONS 100
int storage_admin_export(const struct store *s, struct buf *out) BLOQR_MUSTCHECK;

/* The tables and indexes of schema public, sorted by name: *tables gets a
 * JSON array of {name, type ("table" or "index")}; the caller puts it.
 * Returns a bloqr_err. */
int storage_admin_tables(struct pg *pg, struct json_object **tables) BLOQR_MUSTCHECK;

/* VACUUM ANALYZE the three storage tables (outside any transaction: the
 * caller must not have one open), allowing it
 * STORAGE_ADMIN_VACUUM_TIMEOUT_MS instead of the usual deadline; then
 * this host's cache file;
 * then the audit row. *cache tells what became of the cache. Returns a
 * bloqr_err (the cache's fate is not an error: PostgreSQL is what counts). */
enum storage_admin_cache_vacuum {
	STORAGE_ADMIN_CACHE_DISABLED, STORAGE_ADMIN_CACHE_VACUUMED, STORAGE_ADMIN_CACHE_FAILED
};
int storage_admin_vacuum(const struct store *s, enum storage_admin_cache_vacuum *cache)
	BLOQR_MUSTCHECK;

#endif
