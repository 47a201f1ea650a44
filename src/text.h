/* Small pure text helpers: UTF-8, percent-decoding, times. No allocation
 * unless stated. */
#ifndef BLOQR_TEXT_H
#define BLOQR_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, no
 * code point above U+10FFFF). */
bool text_utf8_valid(const char *s, size_t n);

/* Percent-decode s[0..n) into out (room for n+1 bytes). '+' stays '+' (paths
 * are not forms) unless plus_is_space. Returns the decoded length, or -1 on a
 * malformed escape. The result may hold NUL bytes: callers that need a C
 * string must reject them (see text_has_nul). */
long text_pct_decode(const char *s, size_t n, char *out, bool plus_is_space);
bool text_has_nul(const char *s, size_t n);

/* Format a time given in milliseconds since the epoch as
 * 2026-03-25T17:52:31.123Z into out (at least 25 bytes). */
void text_iso_time_ms(int64_t ms, char out[static 25]);
int64_t text_now_ms(void);

/* Parse a non-negative decimal integer of at most 18 digits in s[0..n);
 * -1 when it is anything else. */
int64_t text_parse_uint(const char *s, size_t n);



/* True for a canonical UUID (8-4-4-4-12 hex digits). */
bool text_uuid_valid(const char *s);
/* True for an ISO-8601 date-time with a zone: YYYY-MM-DDTHH:MM[:SS[.fff]]
 * followed by Z or ±HH:MM. Range checks are left to PostgreSQL. */
bool text_iso_time_valid(const char *s);
/* True for a calendar date YYYY-MM-DD that exists (leap years counted). */
bool text_iso_date_valid(const char *s);
/* Number of code points in valid UTF-8 s. */
size_t text_utf8_len(const char *s);
#endif
