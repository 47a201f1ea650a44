/* Counters and histograms for GET /metrics. In the pool they live in one
 * shared anonymous mapping made by the master before it forks, so every
 * worker adds to the same numbers (lock-free atomics) and any worker can
 * render the whole pool's view. */
#ifndef BLOQR_METRICS_H
#define BLOQR_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Map the shared area; call once in the process that forks the others.
 * Safe to call again (no-op). -1 when the mapping fails. */
int metrics_init(void);
void metrics_fini(void);

/* route: index in router_routes, or -1 for a request that matched none. */
void metrics_request(int route, int status, long long duration_us);
void metrics_count_pg_error(void);
void metrics_count_pg_reconnect(void);
void metrics_count_worker_restart(void);
/* FastCGI connections accepted; kept ones passed between workers (fcgi.h). */
void metrics_count_connection(void);
void metrics_count_handoff(unsigned n);

/* The syncer's LISTEN: up while it listens on a live connection; lost
 * when it lost that connection (bloqr_cache_listener_up, _lost_total). */
void metrics_listener_state(bool up, bool lost);

/* L1 cache outcomes per table (enum cache_tbl). */
enum metrics_cache_kind { METRICS_CACHE_HIT = 0, METRICS_CACHE_MISS, METRICS_CACHE_STALE, METRICS_CACHE_ERROR, METRICS_CACHE_NKIND };
#define METRICS_CACHE_TABLES 8
void metrics_cache(int table, enum metrics_cache_kind kind);
/* When a write to the host's cache file last failed (unix ms, 0: never),
 * shared by the pool so any worker's /api/health can tell. */
void metrics_cache_write_failed(int64_t at_ms);
int64_t metrics_cache_write_failed_at(void);
uint64_t metrics_cache_get(int table, enum metrics_cache_kind kind);

/* Prometheus text exposition format 0.0.4. */
int metrics_render(struct buf *out);

#endif
