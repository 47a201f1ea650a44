/* The migration runner behind `bloqr-admin migrate` (CONTRACT §1).
 *
 * DIR/postgres/NNNN_name.sql are applied to PostgreSQL (the source of
 * truth), DIR/sqlite/NNNN_name.sql to this host's L1 cache file. Each file
 * runs in its own transaction together with its row in that side's
 * schema_migrations(version, name, checksum, applied_at); applied files are
 * skipped; a file changed after it was applied (SHA-256 differs) stops the
 * run before anything is applied. On PostgreSQL a session advisory lock
 * (MIGRATE_LOCK_KEY) is held for the whole run, so concurrent migrators
 * take turns. */
#ifndef BLOQR_MIGRATE_H
#define BLOQR_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* pg_advisory_lock key: the bytes of "bloqrmig" as a big-endian bigint. */
#define MIGRATE_LOCK_KEY "7092166046243449191"

/* Largest migration file read (bytes). */
#define MIGRATE_MAX_FILE (16L * 1024 * 1024)

struct migrate_file {
	char version[5];        /* "0001" */
	char *name;             /* "schema": the part between "NNNN_" and ".sql" */
	char *path;             /* DIR/side/0001_schema.sql */
	char *sql;              /* the contents, NUL-terminated (none inside) */
	size_t len;
	char checksum[65];      /* SHA-256 of the contents, lowercase hex */
};

/* The files of one side, sorted by name (and so by version). */
struct migrate_set {
	struct migrate_file *v;
	size_t n;
};

/* True when fname (a bare file name) matches ^[0-9]{4}_[a-z0-9_]+\.sql$. */
bool migrate_name_valid(const char *fname);

/* SHA-256 of p[0..n) as 64 lowercase hex digits. */
void migrate_checksum(const void *p, size_t n, char out[static 65]);

/* Read every migration file of dir into *set (emptied first; free with
 * migrate_set_free, also after a failure). Names starting with '.' are
 * ignored; any other name that is not a valid migration name, two files
 * with one version, an unreadable file, a NUL byte or a file larger than
 * MIGRATE_MAX_FILE is an error: -1 with a message in err. */
int migrate_scan(const char *dir, struct migrate_set *set, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void migrate_set_free(struct migrate_set *set);

/* The directory used without --dir: "./migrations" when the current
 * directory has one, else BLOQR_DATADIR "/migrations". A static string. */
const char *migrate_default_dir(void);

/* Run `migrate` with the configuration c on the migrations under dir.
 * status_only: print each migration's state and change nothing. Progress
 * and status lines go to out (formats in migrations/README.md). Returns 0,
 * or -1 with a one-line message in err. */
int migrate_run(const struct conf *c, const char *dir, bool status_only, FILE *out,
    char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
