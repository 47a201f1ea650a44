#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	size_t used;
	_Alignas(16) unsigned char mem[];
};

void arena_init(struct arena *a, size_t chunk_size)
{
	a->head = NULL;
	a->chunk_size = chunk_size ? chunk_size : 16384;
}

void *arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk *c = a->head;
	size_t size;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	if (c == NULL || c->size - c->used < n) {
		if (n > SIZE_MAX / 2)
			return NULL;
		size = n > a->chunk_size ? n : a->chunk_size;
		c = malloc(sizeof *c + size);
		if (c == NULL)
			return NULL;
		c->size = size;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	p = c->mem + c->used;
	c->used += n;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

void arena_reset(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	if (c == NULL)
		return;
	/* Keep the oldest chunk (the base size), free the overflow. */
	while (c->next) {
		next = c->next;
		free(c);
		c = next;
	}
	if (c->size != a->chunk_size) {
		free(c);
		a->head = NULL;
		return;
	}
	c->used = 0;
	a->head = c;
}

void arena_free(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	while (c) {
		next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
}
