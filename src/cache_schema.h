/* The SQLite cache migrations, built into the programs (cache_schema.c is
 * generated from migrations/sqlite/ by embed-sql.sh). */
#ifndef BLOQR_CACHE_SCHEMA_H
#define BLOQR_CACHE_SCHEMA_H

#include <stddef.h>

struct cache_schema_file {
	const char *version;   /* "0001" */
	const char *name;      /* "cache" */
	const char *sql;       /* the file's text, byte for byte */
};

extern const struct cache_schema_file cache_schema_files[];
extern const size_t cache_schema_nfiles;

#endif
