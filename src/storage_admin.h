/* Whole-table operations on the storage tables (storage_entries,
 * filter_cache, compilation_metadata) for the admin storage endpoints:
 * counts, bulk deletes, export, the schema's relations and VACUUM. All in
 * PostgreSQL; the caller tells the L1 cache what changed (cache_deleted)
 * after its commit. Row-level statements stay in storage.c. */
#ifndef BLOQR_STORAGE_ADMIN_H
#define BLOQR_STORAGE_ADMIN_H

#include <libpq-fe.h>

#include "buf.h"

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

/* Delete the expired storage entries and filter-cache rows in one
 * statement; *storage and *filters get the numbers deleted. Call inside
 * the caller's transaction (with its audit row). Returns a pg_err. */
int storage_admin_clear_expired(struct pg *pg, long long *storage, long long *filters)
	__attribute__((warn_unused_result));

/* Delete the storage entries whose key starts with "cache/" and every
 * filter-cache row, in one statement; like storage_admin_clear_expired. */
int storage_admin_clear_cache(struct pg *pg, long long *storage, long long *filters)
	__attribute__((warn_unused_result));

/* Begin a read-only transaction on one snapshot, for an export that
 * must be consistent across tables; the caller commits or rolls back.
 * Returns a pg_err. */
int storage_admin_begin_snapshot(struct pg *pg) __attribute__((warn_unused_result));

/* The tables and indexes of schema public, sorted by name: *r has the
 * columns name and type ("table" or "index"); the caller PQclears it.
 * Returns a pg_err. */
int storage_admin_tables(struct pg *pg, PGresult **r) __attribute__((warn_unused_result));

/* VACUUM ANALYZE the three storage tables (outside any transaction: the
 * caller must not have one open), allowing it
 * STORAGE_ADMIN_VACUUM_TIMEOUT_MS instead of the usual deadline.
 * Returns a pg_err. */
int storage_admin_vacuum(struct pg *pg) __attribute__((warn_unused_result));

#endif
