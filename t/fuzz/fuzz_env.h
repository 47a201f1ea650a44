/* Shared by the harnesses: fuzz input as a CGI/FastCGI environment and a
 * body. "NAME=VALUE" lines up to the first empty line, the rest is the
 * body. Values may hold any byte but NUL and newline. */
#ifndef BLOQR_FUZZ_ENV_H
#define BLOQR_FUZZ_ENV_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define FUZZ_MAX_PARAMS 64

struct fuzz_env {
	char *text;                         /* owned copy of the input */
	const char *name[FUZZ_MAX_PARAMS], *value[FUZZ_MAX_PARAMS];
	int n;
	const char *body;
	size_t body_len, body_off;
};

static const char *fuzz_param(void *ctx, const char *name)
{
	struct fuzz_env *e = ctx;

	for (int i = 0; i < e->n; i++)
		if (strcmp(e->name[i], name) == 0)
			return e->value[i];
	return NULL;
}

static long fuzz_read(void *ctx, char *buf, size_t n)
{
	struct fuzz_env *e = ctx;
	size_t left = e->body_len - e->body_off;

	if (n > left)
		n = left;
	/* Hand the body out in small pieces, as a transport may. */
	if (n > 7)
		n = 7;
	memcpy(buf, e->body + e->body_off, n);
	e->body_off += n;
	return (long)n;
}

static int fuzz_write(void *ctx, const char *buf, size_t n)
{
	(void)ctx; (void)buf; (void)n;
	return 0;
}

/* 0, or -1 when the input cannot be split (out of memory). */
static int fuzz_env_init(struct fuzz_env *e, const uint8_t *data, size_t size)
{
	char *p, *end;

	memset(e, 0, sizeof *e);
	if ((e->text = malloc(size + 1)) == NULL)
		return -1;
	memcpy(e->text, data, size);
	e->text[size] = '\0';
	p = e->text;
	end = e->text + size;
	while (p < end && *p != '\n' && e->n < FUZZ_MAX_PARAMS) {
		char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;

		if (nl == NULL)
			nl = end;
		*nl = '\0';
		eq = strchr(p, '=');
		if (eq) {
			*eq = '\0';
			e->name[e->n] = p;
			e->value[e->n++] = eq + 1;
		}
		p = nl + 1;
	}
	if (p < end && *p == '\n')
		p++;
	e->body = p < end ? p : "";
	e->body_len = p < end ? (size_t)(end - p) : 0;
	return 0;
}

static void fuzz_env_free(struct fuzz_env *e)
{
	free(e->text);
}

#endif
