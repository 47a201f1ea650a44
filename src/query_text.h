/* The query console's work on text that needs no database: naming result
 * columns uniquely, and finding the functions a plan calls. Kept apart
 * from query_console.c so that it can be unit-tested and fuzzed. */
#ifndef BLOQR_QUERY_TEXT_H
#define BLOQR_QUERY_TEXT_H

#include <stddef.h>

/* Unique names for n columns named bases[0..n) ("?column?" twice →
 * "?column?", "?column?_2"): rows are JSON objects, and a repeated key
 * would hide a column. Linear time in n (a statement may have 1,664
 * columns of one name). Returns an array of n malloc'd strings (the
 * caller frees each with qt_free_names), or NULL when out of memory. */
char **qt_unique_names(const char *const *bases, int n);
void qt_free_names(char **names, int n);

/* Call fn for each function name called in a plan printed by EXPLAIN
 * (VERBOSE): every identifier (bare or "quoted", unquoted as the server
 * would) directly followed by '(', outside string literals. A schema
 * qualifier is not part of the name. fn returns 0 to go on; a non-zero
 * return stops the scan and is returned. */
int qt_called_functions(const char *plan, size_t len,
    int (*fn)(void *ctx, const char *name, size_t n), void *ctx);

/* Append name to a PostgreSQL text[] literal being built in *out (of
 * *cap bytes, *len used; "{" first, "}" by qt_array_end). -1 when it does
 * not fit. */
int qt_array_add(char *out, size_t cap, size_t *len, const char *name, size_t n);
int qt_array_end(char *out, size_t cap, size_t *len);

/* The statement's first keyword, lower-cased into word (at most n - 1
 * bytes; longer words are cut), after white space, comments (-- and
 * nested slash-star) and opening parentheses. "" when there is none. */
void qt_first_word(const char *sql, char *word, size_t n);

/* Whether sql holds word (lower case, ASCII) as a whole word, in any
 * case, anywhere (comments and literals included: a caller that refuses
 * on a match errs on the safe side). */
int qt_has_word(const char *sql, const char *word);

#endif
