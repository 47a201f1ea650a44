/* GET /metrics: the pool's counters in Prometheus text format. */
#include "handlers/handlers.h"
#include "metrics.h"
#include "worker.h"

void h_metrics(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	buf_reset(&res->body);
	if (metrics_render(&res->body) < 0) {
		http_error(res, 500, "Out of memory");
		return;
	}
	res->status = 200;
	res->content_type = "text/plain; version=0.0.4; charset=utf-8";
	res->cache_control = "no-store";
}
