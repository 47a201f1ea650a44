#include "cache_memo.h"

#include <string.h>

void cache_memo_init(struct cache_memo *m)
{
	memset(m, 0, sizeof *m);
}

void cache_memo_free(struct cache_memo *m)
{
	for (int i = 0; i < CACHE_MEMO_SLOTS; i++) {
		buf_free(&m->e[i].key);
		buf_free(&m->e[i].rows);
	}
	cache_memo_init(m);
}

void cache_memo_clear(struct cache_memo *m)
{
	for (int i = 0; i < CACHE_MEMO_SLOTS; i++)
		m->e[i].full = false;
}

static struct cache_memo_entry *find(struct cache_memo *m, const struct buf *key)
{
	for (int i = 0; i < CACHE_MEMO_SLOTS; i++) {
		struct cache_memo_entry *e = &m->e[i];
		if (e->full && e->key.len == key->len && memcmp(e->key.data, key->data, key->len) == 0)
			return e;
	}
	return NULL;
}

bool cache_memo_get(struct cache_memo *m, const struct buf *key, const unsigned char *version,
    int64_t now, struct buf *out, long *n)
{
	struct cache_memo_entry *e = find(m, key);

	if (e == NULL || key->oom)
		return false;
	if (now > e->until || memcmp(e->version, version, CACHE_MEMO_VERSION) != 0) {
		e->full = false;     /* it will not become valid again */
		return false;
	}
	if (out != NULL && buf_append(out, e->rows.data ? e->rows.data : "", e->rows.len) < 0)
		return false;
	*n = e->n;
	e->used = ++m->clock;
	return true;
}

void cache_memo_put(struct cache_memo *m, const struct buf *key, const unsigned char *version,
    int64_t until, const char *rows, size_t len, long n)
{
	struct cache_memo_entry *e = find(m, key);

	if (key->oom || len > CACHE_MEMO_MAX_BYTES)
		return;
	if (e == NULL) {
		e = &m->e[0];    /* a free slot, else the least recently used */
		for (int i = 0; i < CACHE_MEMO_SLOTS; i++) {
			if (!m->e[i].full) {
				e = &m->e[i];
				break;
			}
			if (m->e[i].used < e->used)
				e = &m->e[i];
		}
	}
	e->full = false;
	buf_reset(&e->key);
	buf_reset(&e->rows);
	buf_append(&e->key, key->data, key->len);
	if (rows != NULL)
		buf_append(&e->rows, rows, len);
	if (e->key.oom || e->rows.oom)
		return;
	memcpy(e->version, version, CACHE_MEMO_VERSION);
	e->until = until;
	e->n = n;
	e->used = ++m->clock;
	e->full = true;
}
