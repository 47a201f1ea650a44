/* Conditional GET (RFC 9110 §8.8.3, §13.1.2; docs/CONDITIONAL-GET.md): the
 * entity-tag of an answer's body, and whether an If-None-Match field names
 * it. Pure functions, unit-tested without a server (t/unit/test_etag.c). */
#ifndef BLOQR_ETAG_H
#define BLOQR_ETAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* An entity-tag as etag_of writes it: '"', 32 hex digits, '"'. */
#define ETAG_LEN 34
/* Longest If-None-Match value read; a longer one matches nothing. */
#define ETAG_FIELD_MAX 8192

/* The strong entity-tag of the n bytes at body: 128 bits of SipHash-2-4
 * under a fixed key, so every worker and every host gives one body the
 * same tag. A fast fingerprint, not a secret: whoever may write the data
 * could also make two bodies share a tag, and gains nothing by it. */
void etag_of(const void *body, size_t n, char out[static ETAG_LEN + 1]);

/* A process's memory of the last bodies it tagged: the hot reads answer
 * the same bytes again and again, and comparing them with a copy costs a
 * tenth of hashing them (docs/CONDITIONAL-GET.md). Bodies over
 * ETAG_MEMO_MAX_BYTES are hashed every time; at most ETAG_MEMO_SLOTS *
 * ETAG_MEMO_MAX_BYTES are kept. Zero-initialised is empty. */
#define ETAG_MEMO_SLOTS 8
#define ETAG_MEMO_MAX_BYTES (256u * 1024)

struct etag_memo {
	struct etag_memo_entry {
		struct buf body;
		char tag[ETAG_LEN + 1];
		uint64_t used;        /* 0: empty; else for replacing the least recently used */
	} e[ETAG_MEMO_SLOTS];
	uint64_t clock;
};

/* etag_of, given again without hashing for a body equal byte for byte to
 * one m remembers. Never fails: a body it cannot keep is only hashed. */
void etag_memo_of(struct etag_memo *m, const void *body, size_t n, char out[static ETAG_LEN + 1]);
void etag_memo_free(struct etag_memo *m);

/* Whether the If-None-Match field value names etag (a strong tag such as
 * etag_of writes), by weak comparison: W/"x" names "x". "*" names every
 * tag. A value that is not "*" or a list of entity-tags (empty elements
 * allowed) by RFC 9110's grammar, or is longer than ETAG_FIELD_MAX, names
 * nothing: the full answer is always a safe reply. NULL names nothing. */
bool etag_none_match(const char *field, const char *etag);

#endif
