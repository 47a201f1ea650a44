/* Lists of client addresses in configuration values: space-separated IPv4
 * or IPv6 addresses and CIDR prefixes ("127.0.0.0/8 ::1"), or "any". Used
 * by [http] metrics_allow. */
#ifndef BLOQR_ADDRLIST_H
#define BLOQR_ADDRLIST_H

#include <stdbool.h>
#include <stddef.h>

/* 0 when list is well formed, else -1 with the reason in why. */
int addrlist_check(const char *list, char *why, size_t whylen);

/* Whether addr (a REMOTE_ADDR: a literal IPv4 or IPv6 address; IPv4-mapped
 * IPv6 counts as its IPv4 address) is in list. An empty, malformed or
 * unknown address is in no list but "any". */
bool addrlist_match(const char *list, const char *addr);

#endif
