/* A growable byte buffer, always NUL-terminated. The owner calls buf_free. */
#ifndef BLOQR_BUF_H
#define BLOQR_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;   /* NULL until the first append */
	size_t len;
	size_t cap;
	int oom;      /* set once an append failed; later appends are no-ops */
};

#define BUF_INIT { NULL, 0, 0, 0 }

int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Forget the contents, keep the memory for the next use. */
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
