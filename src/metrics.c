#include "metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "cache_tables.h"
#include "http.h"
#include "router.h"

#define MAX_ROUTES 64
/* Status codes we count one by one; anything else falls in "other". */
static const int statuses[] = { 200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 413, 414, 429, 500, 503 };
#define NSTATUS (sizeof statuses / sizeof statuses[0])
/* Upper bounds of the latency buckets, in microseconds. */
static const long long bounds_us[] = { 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000 };
#define NBOUNDS (sizeof bounds_us / sizeof bounds_us[0])

struct metrics_shm {
	uint64_t requests[MAX_ROUTES + 1][NSTATUS + 1];  /* last route row: unmatched */
	uint64_t buckets[NBOUNDS + 1];                   /* last: +Inf */
	uint64_t duration_sum_us;
	uint64_t duration_count;
	uint64_t pg_errors;
	uint64_t pg_reconnects;
	uint64_t worker_restarts;
	uint64_t fcgi_accepted;
	uint64_t fcgi_handed_off;
	uint64_t cache[METRICS_CACHE_TABLES][METRICS_CACHE_NKIND];
	/* The same latency buckets per route (last row: unmatched). */
	uint64_t route_buckets[MAX_ROUTES + 1][NBOUNDS + 1];
	uint64_t route_sum_us[MAX_ROUTES + 1];
	uint64_t listener_up;        /* a gauge: 0 or 1, set by the syncer */
	uint64_t listener_lost;
	int64_t cache_write_failed_ms; /* the last failed cache write on the host (unix ms) */
};

static struct metrics_shm *shm;
/* Used when no mapping could be made: counts stay per process. */
static struct metrics_shm local;

static struct metrics_shm *area(void) { return shm ? shm : &local; }

static void add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static uint64_t get(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

int metrics_init(void)
{
	void *p;

	if (shm)
		return 0;
	p = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	shm = p;   /* zero-filled by the kernel */
	return 0;
}

void metrics_fini(void)
{
	if (shm)
		munmap(shm, sizeof *shm);
	shm = NULL;
}

void metrics_request(int route, int status, long long us)
{
	struct metrics_shm *m = area();
	size_t r = (route < 0 || route >= MAX_ROUTES) ? MAX_ROUTES : (size_t)route;
	size_t s = NSTATUS, b = NBOUNDS;

	for (size_t i = 0; i < NSTATUS; i++)
		if (statuses[i] == status) {
			s = i;
			break;
		}
	for (size_t i = 0; i < NBOUNDS; i++)
		if (us <= bounds_us[i]) {
			b = i;
			break;
		}
	if (us < 0)
		us = 0;
	add(&m->requests[r][s], 1);
	add(&m->buckets[b], 1);
	add(&m->route_buckets[r][b], 1);
	add(&m->route_sum_us[r], (uint64_t)us);
	add(&m->duration_sum_us, (uint64_t)us);
	add(&m->duration_count, 1);
}

void metrics_count_pg_error(void) { add(&area()->pg_errors, 1); }
void metrics_count_pg_reconnect(void) { add(&area()->pg_reconnects, 1); }
void metrics_count_worker_restart(void) { add(&area()->worker_restarts, 1); }
void metrics_count_connection(void) { add(&area()->fcgi_accepted, 1); }
void metrics_count_handoff(unsigned n) { add(&area()->fcgi_handed_off, n); }

void metrics_listener_state(bool up, bool lost)
{
	struct metrics_shm *m = area();

	__atomic_store_n(&m->listener_up, up ? 1 : 0, __ATOMIC_RELAXED);
	if (lost)
		add(&m->listener_lost, 1);
}

void metrics_cache_write_failed(int64_t at_ms)
{
	__atomic_store_n(&area()->cache_write_failed_ms, at_ms, __ATOMIC_RELAXED);
}

int64_t metrics_cache_write_failed_at(void)
{
	return __atomic_load_n(&area()->cache_write_failed_ms, __ATOMIC_RELAXED);
}

void metrics_cache(int t, enum metrics_cache_kind k)
{
	if (t >= 0 && t < METRICS_CACHE_TABLES)
		add(&area()->cache[t][k], 1);
}

uint64_t metrics_cache_get(int t, enum metrics_cache_kind k)
{
	return t >= 0 && t < METRICS_CACHE_TABLES ? get(&area()->cache[t][k]) : 0;
}

/* The route label of row r: "GET /api/health", or "unmatched". */
static void route_label(size_t r, char *out, size_t n)
{
	if (r >= router_nroutes || r >= MAX_ROUTES)
		snprintf(out, n, "unmatched");
	else
		snprintf(out, n, "%s %s", http_method_name(router_routes[r].method), router_routes[r].pattern);
}

/* bloqr_http_route_duration_seconds: the latency histogram of every route
 * that has answered at least once. */
static void render_route_histograms(struct buf *o, struct metrics_shm *m)
{
	buf_puts(o, "# HELP bloqr_http_route_duration_seconds Time from request start to response, by route.\n"
	    "# TYPE bloqr_http_route_duration_seconds histogram\n");
	for (size_t r = 0; r <= MAX_ROUTES; r++) {
		uint64_t cum = 0, n[NBOUNDS + 1], total = 0;
		char route[160];

		if (r < MAX_ROUTES && r >= router_nroutes)
			continue;
		for (size_t b = 0; b <= NBOUNDS; b++)
			total += n[b] = get(&m->route_buckets[r][b]);
		if (total == 0)
			continue;
		route_label(r, route, sizeof route);
		for (size_t b = 0; b <= NBOUNDS; b++) {
			cum += n[b];
			if (b < NBOUNDS)
				buf_printf(o, "bloqr_http_route_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				    route, (double)bounds_us[b] / 1e6, (unsigned long long)cum);
			else
				buf_printf(o, "bloqr_http_route_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
				    route, (unsigned long long)cum);
		}
		buf_printf(o, "bloqr_http_route_duration_seconds_sum{route=\"%s\"} %.6f\n"
		    "bloqr_http_route_duration_seconds_count{route=\"%s\"} %llu\n",
		    route, (double)get(&m->route_sum_us[r]) / 1e6, route, (unsigned long long)cum);
	}
}

int metrics_render(struct buf *o)
{
	struct metrics_shm *m = area();
	uint64_t cum = 0;

	buf_puts(o, "# HELP bloqr_http_requests_total HTTP requests by route and status.\n"
	    "# TYPE bloqr_http_requests_total counter\n");
	for (size_t r = 0; r <= MAX_ROUTES; r++) {
		char route[160];

		if (r < MAX_ROUTES && r >= router_nroutes)
			continue;
		route_label(r, route, sizeof route);
		for (size_t s = 0; s <= NSTATUS; s++) {
			uint64_t v = get(&m->requests[r][s]);
			if (v == 0)
				continue;
			if (s < NSTATUS)
				buf_printf(o, "bloqr_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
				    route, statuses[s], (unsigned long long)v);
			else
				buf_printf(o, "bloqr_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
				    route, (unsigned long long)v);
		}
	}
	buf_puts(o, "# HELP bloqr_http_request_duration_seconds Time from request start to response.\n"
	    "# TYPE bloqr_http_request_duration_seconds histogram\n");
	for (size_t b = 0; b <= NBOUNDS; b++) {
		cum += get(&m->buckets[b]);
		if (b < NBOUNDS)
			buf_printf(o, "bloqr_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
			    (double)bounds_us[b] / 1e6, (unsigned long long)cum);
		else
			buf_printf(o, "bloqr_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)cum);
	}
	buf_printf(o, "bloqr_http_request_duration_seconds_sum %.6f\n"
	    "bloqr_http_request_duration_seconds_count %llu\n",
	    (double)get(&m->duration_sum_us) / 1e6, (unsigned long long)get(&m->duration_count));
	render_route_histograms(o, m);
	buf_printf(o, "# HELP bloqr_cache_listener_up 1 while this host's syncer listens for cache invalidations "
	    "(PostgreSQL LISTEN), else 0 (no syncer: spawned or CGI mode).\n"
	    "# TYPE bloqr_cache_listener_up gauge\nbloqr_cache_listener_up %llu\n"
	    "# HELP bloqr_cache_listener_lost_total PostgreSQL connections the syncer lost while listening.\n"
	    "# TYPE bloqr_cache_listener_lost_total counter\nbloqr_cache_listener_lost_total %llu\n",
	    (unsigned long long)get(&m->listener_up), (unsigned long long)get(&m->listener_lost));
	buf_printf(o, "# HELP bloqr_pg_errors_total Failed PostgreSQL commands and connection attempts.\n"
	    "# TYPE bloqr_pg_errors_total counter\nbloqr_pg_errors_total %llu\n"
	    "# HELP bloqr_pg_reconnects_total PostgreSQL connections re-established after a loss.\n"
	    "# TYPE bloqr_pg_reconnects_total counter\nbloqr_pg_reconnects_total %llu\n"
	    "# HELP bloqr_worker_restarts_total Pool workers started again after exiting.\n"
	    "# TYPE bloqr_worker_restarts_total counter\nbloqr_worker_restarts_total %llu\n"
	    "# HELP bloqr_fastcgi_connections_total FastCGI connections accepted from the web server.\n"
	    "# TYPE bloqr_fastcgi_connections_total counter\nbloqr_fastcgi_connections_total %llu\n"
	    "# HELP bloqr_fastcgi_handoffs_total Idle kept connections passed from one worker to the others.\n"
	    "# TYPE bloqr_fastcgi_handoffs_total counter\nbloqr_fastcgi_handoffs_total %llu\n",
	    (unsigned long long)get(&m->pg_errors), (unsigned long long)get(&m->pg_reconnects),
	    (unsigned long long)get(&m->worker_restarts), (unsigned long long)get(&m->fcgi_accepted),
	    (unsigned long long)get(&m->fcgi_handed_off));
	buf_puts(o, "# HELP bloqr_cache_reads_total L1 cache reads by table and result (hit, miss, stale).\n"
	    "# TYPE bloqr_cache_reads_total counter\n");
	for (int t = 0; t < CACHE_NTABLES; t++) {
		static const char *const kinds[] = { "hit", "miss", "stale" };
		for (int k = 0; k < 3; k++)
			buf_printf(o, "bloqr_cache_reads_total{table=\"%s\",result=\"%s\"} %llu\n",
			    cache_table_name(t), kinds[k], (unsigned long long)get(&m->cache[t][k]));
	}
	buf_puts(o, "# HELP bloqr_cache_errors_total L1 cache failures (answered from PostgreSQL instead).\n"
	    "# TYPE bloqr_cache_errors_total counter\n");
	for (int t = 0; t < CACHE_NTABLES; t++)
		buf_printf(o, "bloqr_cache_errors_total{table=\"%s\"} %llu\n", cache_table_name(t),
		    (unsigned long long)get(&m->cache[t][METRICS_CACHE_ERROR]));
	return o->oom ? -1 : 0;
}
