#include "etag.h"

#include <string.h>

#include <sodium.h>

/* Fixed so that tags agree across processes, hosts and restarts; changing
 * it only costs clients one full answer each. */
static const unsigned char etag_key[crypto_shorthash_siphashx24_KEYBYTES] = {
	'b', 'l', 'o', 'q', 'r', ' ', 'e', 't', 'a', 'g', ' ', 'v', '1', 0, 0, 0
};

void etag_of(const void *body, size_t n, char out[static ETAG_LEN + 1])
{
	unsigned char h[crypto_shorthash_siphashx24_BYTES];

	crypto_shorthash_siphashx24(h, body, n, etag_key);
	out[0] = '"';
	sodium_bin2hex(out + 1, 2 * sizeof h + 1, h, sizeof h);
	out[ETAG_LEN - 1] = '"';
	out[ETAG_LEN] = '\0';
}

void etag_memo_of(struct etag_memo *m, const void *body, size_t n, char out[static ETAG_LEN + 1])
{
	struct etag_memo_entry *old = &m->e[0];

	for (int i = 0; i < ETAG_MEMO_SLOTS; i++) {
		struct etag_memo_entry *e = &m->e[i];

		if (e->used && e->body.len == n && (n == 0 || memcmp(e->body.data, body, n) == 0)) {
			memcpy(out, e->tag, ETAG_LEN + 1);
			e->used = ++m->clock;
			return;
		}
		if (e->used < old->used)
			old = e;
	}
	etag_of(body, n, out);
	if (n > ETAG_MEMO_MAX_BYTES)
		return;
	buf_reset(&old->body);
	old->used = 0;
	if (buf_append(&old->body, body, n) < 0)
		return;    /* out of memory: left empty */
	memcpy(old->tag, out, ETAG_LEN + 1);
	old->used = ++m->clock;
}

void etag_memo_free(struct etag_memo *m)
{
	for (int i = 0; i < ETAG_MEMO_SLOTS; i++)
		buf_free(&m->e[i].body);
	memset(m, 0, sizeof *m);
}

static const char *skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* etagc = %x21 / %x23-7E / obs-text */
static bool etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

bool etag_none_match(const char *field, const char *etag)
{
	size_t elen = etag ? strlen(etag) : 0;
	bool named = false;
	const char *p;

	if (field == NULL || etag == NULL || strnlen(field, ETAG_FIELD_MAX + 1) > ETAG_FIELD_MAX)
		return false;
	p = skip_ows(field);
	if (*p == '*')
		return *skip_ows(p + 1) == '\0';
	/* #entity-tag: elements between commas, empty ones allowed; any
	 * element that is not an entity-tag spoils the whole field. */
	for (;;) {
		const char *tag, *q;

		p = skip_ows(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '\0')
			return named;
		if (p[0] == 'W' && p[1] == '/')
			p += 2;    /* weak comparison: the opaque-tags alone */
		if (*p != '"')
			return false;
		tag = p;
		for (q = p + 1; etagc((unsigned char)*q); q++)
			;
		if (*q != '"')
			return false;
		if ((size_t)(q + 1 - tag) == elen && memcmp(tag, etag, elen) == 0)
			named = true;
		p = skip_ows(q + 1);
		if (*p != ',' && *p != '\0')
			return false;
	}
}
