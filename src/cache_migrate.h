/* Migrating the schema of the L1 cache file (used by `bloqr-admin migrate`).
 * Kept apart from cache.c: a handle for running whole migration files, with
 * none of the per-worker state of struct cache. Like cache.c, this is one of
 * the two files that may call SQLite. */
#ifndef BLOQR_CACHE_MIGRATE_H
#define BLOQR_CACHE_MIGRATE_H

#include <stddef.h>

struct cache_mig;

/* Open the cache file at path for migrating: create the file (mode 0640)
 * when it is missing -- its directory must exist --, switch it to WAL, set a
 * busy timeout of 5 s and create schema_migrations(version, name, checksum,
 * applied_at) if needed. Returns a handle the caller frees with
 * cache_mig_close, or NULL with a message in err. */
struct cache_mig *cache_mig_open(const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The checksum recorded for version, copied into sum: 1 when recorded, 0
 * when not applied, -1 on error (see cache_mig_error). */
int cache_mig_checksum(struct cache_mig *m, const char *version, char sum[static 65])
	__attribute__((warn_unused_result));

/* Apply sql (several statements, no BEGIN/COMMIT of its own) and record
 * (version, name, checksum, now) in schema_migrations, in one transaction.
 * Returns 0 when applied, 1 when version was found already recorded (by a
 * concurrent migrator; nothing done), -1 on failure: nothing is applied and
 * err names the problem. */
int cache_mig_apply(struct cache_mig *m, const char *version, const char *name,
    const char *checksum, const char *sql, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The message of the last failure on m ("" when none). */
const char *cache_mig_error(const struct cache_mig *m);

/* Close the file; NULL is accepted. */
void cache_mig_close(struct cache_mig *m);

#endif
