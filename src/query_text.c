#include "query_text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- unique column names ---- */

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

/* Open addressing over indices; -1 = empty. */
struct set {
	int *slot;
	size_t mask;
};

static int set_init(struct set *s, int n)
{
	size_t cap = 16;

	while (cap < (size_t)n * 2 + 2)
		cap <<= 1;
	s->slot = malloc(cap * sizeof *s->slot);
	if (s->slot == NULL)
		return -1;
	memset(s->slot, 0xff, cap * sizeof *s->slot);
	s->mask = cap - 1;
	return 0;
}

/* The slot holding key among keys[], or the empty slot where it goes. */
static size_t set_find(const struct set *s, char *const *keys, const char *key)
{
	size_t i = hash_str(key) & s->mask;

	while (s->slot[i] >= 0 && strcmp(keys[s->slot[i]], key) != 0)
		i = (i + 1) & s->mask;
	return i;
}

char **qt_unique_names(const char *const *bases, int n)
{
	struct set used = { NULL, 0 }, seen = { NULL, 0 };
	char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
	int *next = calloc((size_t)(n > 0 ? n : 1), sizeof *next);   /* per base: next suffix */

	if (names == NULL || next == NULL || set_init(&used, n) < 0 || set_init(&seen, n) < 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(bases[i]) + 16, u, b;
		int first;

		if ((names[i] = malloc(len)) == NULL)
			goto fail;
		snprintf(names[i], len, "%s", bases[i]);
		u = set_find(&used, names, names[i]);
		b = set_find(&seen, (char **)bases, bases[i]);
		if (seen.slot[b] < 0)
			seen.slot[b] = i;
		first = seen.slot[b];
		if (used.slot[u] >= 0) {
			/* Taken: try base_k from where the last column of this base
			 * stopped. Each name in the set can fail one try only (it
			 * splits into base and number one way), so this is linear. */
			for (int k = next[first] > 0 ? next[first] : 2;; k++) {
				snprintf(names[i], len, "%s_%d", bases[i], k);
				u = set_find(&used, names, names[i]);
				if (used.slot[u] < 0) {
					next[first] = k + 1;
					break;
				}
			}
		}
		used.slot[u] = i;
	}
	free(used.slot);
	free(seen.slot);
	free(next);
	return names;
fail:
	qt_free_names(names, n);
	free(used.slot);
	free(seen.slot);
	free(next);
	return NULL;
}

void qt_free_names(char **names, int n)
{
	if (names == NULL)
		return;
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- functions a plan calls ---- */

static int ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_char(unsigned char c)
{
	return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

int qt_called_functions(const char *plan, size_t len,
    int (*fn)(void *ctx, const char *name, size_t n), void *ctx)
{
	char name[256];
	size_t i = 0;
	int rc;

	while (i < len) {
		unsigned char c = (unsigned char)plan[i];

		if (c == '\'') {
			/* A literal: '' is a quote inside it. */
			for (i++; i < len; i++)
				if (plan[i] == '\'') {
					if (i + 1 < len && plan[i + 1] == '\'')
						i++;
					else
						break;
				}
			i++;
		} else if (c == '"') {
			size_t n = 0;
			for (i++; i < len; i++) {
				if (plan[i] == '"') {
					if (i + 1 < len && plan[i + 1] == '"')
						i++;
					else
						break;
				}
				if (n < sizeof name - 1)
					name[n++] = plan[i];
			}
			i++;
			if (i < len && plan[i] == '(' && (rc = fn(ctx, name, n)) != 0)
				return rc;
		} else if (ident_start(c) && (i == 0 || !ident_char((unsigned char)plan[i - 1]))) {
			size_t start = i, n;

			while (i < len && ident_char((unsigned char)plan[i]))
				i++;
			n = i - start;
			if (i < len && plan[i] == '(') {
				if (n >= sizeof name)
					n = sizeof name - 1;
				memcpy(name, plan + start, n);
				if ((rc = fn(ctx, name, n)) != 0)
					return rc;
			}
		} else {
			i++;
		}
	}
	return 0;
}

int qt_array_add(char *out, size_t cap, size_t *len, const char *name, size_t n)
{
	size_t need = n * 2 + 4;

	if (*len + need >= cap)
		return -1;
	if (*len == 0)
		out[(*len)++] = '{';
	else
		out[(*len)++] = ',';
	out[(*len)++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (name[i] == '"' || name[i] == '\\')
			out[(*len)++] = '\\';
		out[(*len)++] = name[i];
	}
	out[(*len)++] = '"';
	out[*len] = '\0';
	return 0;
}

int qt_array_end(char *out, size_t cap, size_t *len)
{
	if (*len + 3 >= cap)
		return -1;
	if (*len == 0)
		out[(*len)++] = '{';
	out[(*len)++] = '}';
	out[*len] = '\0';
	return 0;
}

void qt_first_word(const char *sql, char *word, size_t n)
{
	const char *p = sql;
	size_t k = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '(')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			int depth = 0;

			do {
				if (p[0] == '/' && p[1] == '*') {
					depth++;
					p += 2;
				} else if (p[0] == '*' && p[1] == '/') {
					depth--;
					p += 2;
				} else {
					p++;
				}
			} while (*p && depth > 0);
		} else {
			break;
		}
	}
	while (ident_char((unsigned char)*p) && k + 1 < n) {
		char c = *p++;
		word[k++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	if (n > 0)
		word[k] = '\0';
}

int qt_has_word(const char *sql, const char *word)
{
	size_t wl = strlen(word);

	for (const char *p = sql; *p; p++) {
		size_t i = 0;

		if (p > sql && ident_char((unsigned char)p[-1]))
			continue;
		while (i < wl && p[i] && (p[i] == word[i] || (p[i] >= 'A' && p[i] <= 'Z' && p[i] - 'A' + 'a' == word[i])))
			i++;
		if (i == wl && !ident_char((unsigned char)p[wl]))
			return 1;
	}
	return 0;
}
