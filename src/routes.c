/* The service's routes: the one place that says which URL does what. */
#include "router.h"

#include "handlers/handlers.h"

const struct route router_routes[] = {
	{ HTTP_GET, "/api", h_api_index, ROUTE_PUBLIC, "This list of endpoints" },
	{ HTTP_GET, "/api/health", h_health, ROUTE_PUBLIC, "Health of the gateway, database, cache and auth" },
	{ HTTP_GET, "/metrics", h_metrics, ROUTE_PUBLIC, "Prometheus metrics (restrict in the web server)" },
};

const size_t router_nroutes = sizeof router_routes / sizeof router_routes[0];
