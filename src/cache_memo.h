/* A process's memo of its last snapshot reads (lists and counts), part of
 * the L1 cache module: the answer of a read, kept with the version of the
 * SQLite file it was read at and the time it may be trusted until. While
 * the file is at that version (no commit by any process since) and the
 * time has not passed, the same read gives the same answer, so it is given
 * again without SQLite. cache.c supplies the version and the times; this
 * file only keeps and matches entries. */
#ifndef BLOQR_CACHE_MEMO_H
#define BLOQR_CACHE_MEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CACHE_MEMO_VERSION 48         /* bytes of a version (opaque) */
#define CACHE_MEMO_SLOTS 8
#define CACHE_MEMO_MAX_BYTES (512u * 1024)   /* bigger answers are not kept */

struct cache_memo_entry {
	struct buf key;
	struct buf rows;
	long n;
	unsigned char version[CACHE_MEMO_VERSION];
	int64_t until;            /* valid while now <= until */
	uint64_t used;            /* for replacing the least recently used */
	bool full;
};

struct cache_memo {
	struct cache_memo_entry e[CACHE_MEMO_SLOTS];
	uint64_t clock;
};

void cache_memo_init(struct cache_memo *m);
void cache_memo_free(struct cache_memo *m);
/* Forget every entry (the file was closed or replaced). */
void cache_memo_clear(struct cache_memo *m);

/* The answer kept for key at version, appended to out (rows, when out is
 * not NULL) with *n; false when there is none, or it is too old at now. */
bool cache_memo_get(struct cache_memo *m, const struct buf *key, const unsigned char *version,
    int64_t now, struct buf *out, long *n);

/* Keep an answer (rows may be NULL for a count). Failure to keep it is not
 * an error: the next read simply goes to SQLite. */
void cache_memo_put(struct cache_memo *m, const struct buf *key, const unsigned char *version,
    int64_t until, const char *rows, size_t len, long n);

#endif
