/* GET /api/health: live probes of PostgreSQL and the SQLite cache. */
#include <string.h>

#include "cache.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "pg.h"
#include "text.h"
#include "worker.h"


enum health { HEALTHY = 0, DEGRADED = 1, DOWN = 2 };
static const char *const health_names[] = { "healthy", "degraded", "down" };

static struct json_object *service(enum health h, double latency_ms, bool with_latency, const char *msg)
{
	struct json_object *s = json_object_new_object();

	if (s == NULL)
		return NULL;
	if (jsonx_add_str(s, "status", health_names[h]) < 0 ||
	    (with_latency && jsonx_add_double(s, "latency_ms", latency_ms) < 0) ||
	    (msg && jsonx_add_str(s, "message", msg) < 0)) {
		json_object_put(s);
		return NULL;
	}
	return s;
}

/* "listener": {"connected", "since"} into a service object, as
 * GET /api/admin/cache/status shows it. */
static int add_listener(struct json_object *s, bool connected, int64_t since)
{
	struct json_object *l = json_object_new_object();
	char at[25];

	if (l == NULL)
		return -1;
	text_iso_time_ms(since, at);
	if (jsonx_add_bool(l, "connected", connected) < 0 ||
	    jsonx_add_str(l, "since", since > 0 ? at : NULL) < 0) {
		json_object_put(l);
		return -1;
	}
	return jsonx_add(s, "listener", l);   /* takes l, also when it fails */
}

void h_health(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *o = NULL, *svc = NULL, *s;
	enum health db, cache, auth, overall;
	double db_ms = 0, cache_ms = 0;
	const char *cache_msg = NULL;
	char ts[25];
	bool listening = false;
	int64_t since = 0;

	(void)req; (void)m;
	db = pg_ping(app->pg, &db_ms) == BLOQR_OK ? HEALTHY : DOWN;
	if (!cache_enabled(app->cache)) {
		cache = DEGRADED;
		cache_msg = "L1 cache disabled: reads go to PostgreSQL";
	} else if (cache_probe(app->cache, &cache_ms) < 0) {
		cache = DEGRADED;
		cache_msg = "L1 cache unavailable: reads go to PostgreSQL";
	} else if (cache_write_failing(app->cache)) {
		cache = DEGRADED;
		cache_msg = "L1 cache writes fail (is its disk full?): reads go to PostgreSQL";
	} else {
		cache = HEALTHY;
		/* Reported as it is (CONTRACT §6), without changing the status:
		 * a host without a syncer (CGI, spawned) is healthy, only slower. */
		listening = cache_listener_connected(app->cache, &since);
		if (!listening)
			cache_msg = "invalidation listener not connected: reads go to PostgreSQL";
	}
	/* Credentials are never checked against stale data alone. */
	auth = db == DOWN ? DOWN : HEALTHY;
	overall = db > cache ? db : cache;
	if (auth > overall)
		overall = auth;

	o = json_object_new_object();
	svc = json_object_new_object();
	if (o == NULL || svc == NULL)
		goto fail;
	if ((s = service(HEALTHY, 0, false, NULL)) == NULL || jsonx_add(svc, "gateway", s) < 0 ||
	    (s = service(db, db_ms, db == HEALTHY, db == DOWN ? "PostgreSQL unreachable" : NULL)) == NULL ||
	    jsonx_add(svc, "database", s) < 0 ||
	    (s = service(cache, cache_ms, cache == HEALTHY, cache_msg)) == NULL ||
	    (cache == HEALTHY && add_listener(s, listening, since) < 0) ||
	    jsonx_add(svc, "cache", s) < 0 ||
	    (s = service(auth, 0, false, NULL)) == NULL || jsonx_add(svc, "auth", s) < 0)
		goto fail;
	text_iso_time_ms(text_now_ms(), ts);
	if (jsonx_add_str(o, "status", health_names[overall]) < 0 ||
	    jsonx_add_str(o, "version", PACKAGE_VERSION) < 0 ||
	    jsonx_add_str(o, "timestamp", ts) < 0)
		goto fail;
	if (jsonx_add(o, "services", svc) < 0) {
		svc = NULL;
		goto fail;
	}
	res->cache_control = "no-store";
	h_json(res, overall == DOWN ? 503 : 200, o);
	if (overall == DOWN)
		http_header(res, "Retry-After", "5");
	return;
fail:
	json_object_put(svc);
	json_object_put(o);
	http_error(res, 500, "Out of memory");
}
