/* Per-request arena: many small allocations, one reset after the request.
 * The first chunk is kept across resets, so a steady worker does not grow. */
#ifndef BLOQR_ARENA_H
#define BLOQR_ARENA_H

#include <stddef.h>

struct arena_chunk;
struct arena {
	struct arena_chunk *head;
	size_t chunk_size;
};

void arena_init(struct arena *a, size_t chunk_size);
/* NULL when out of memory. Memory is 16-byte aligned and lives until reset. */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_reset(struct arena *a);
void arena_free(struct arena *a);

#endif
