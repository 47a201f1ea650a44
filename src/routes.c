/* The service's routes: the one place that says which URL does what and
 * who may call it. */
#include "router.h"

#include "handlers/handlers.h"

const struct route router_routes[] = {
	{ HTTP_GET, "/api", h_api_index, ROUTE_PUBLIC, "This list of endpoints" },
	{ HTTP_GET, "/api/health", h_health, ROUTE_PUBLIC, "Health of the gateway, database, cache and auth" },
	{ HTTP_GET, "/metrics", h_metrics, ROUTE_PUBLIC, "Prometheus metrics (restrict in the web server)" },

	{ HTTP_POST, "/api/auth/sign-in", h_sign_in, ROUTE_PUBLIC | ROUTE_BODY, "Sign in with email and password" },
	{ HTTP_POST, "/api/auth/sign-out", h_sign_out, ROUTE_AUTH, "Revoke the presented session" },
	{ HTTP_GET, "/api/auth/session", h_session, ROUTE_AUTH, "The signed-in user" },

	{ HTTP_GET, "/api/admin/users", h_users_list, ROUTE_ADMIN, "List users (limit, offset, tier, role, search)" },
	{ HTTP_GET, "/api/admin/users/{id}", h_users_get, ROUTE_ADMIN, "One user" },
	{ HTTP_PATCH, "/api/admin/users/{id}", h_users_patch, ROUTE_ADMIN | ROUTE_BODY, "Change a user's tier or role" },
	{ HTTP_DELETE, "/api/admin/users/{id}", h_users_delete, ROUTE_ADMIN, "Delete a user with its sessions and tokens" },
	{ HTTP_POST, "/api/admin/users/{id}/ban", h_users_ban, ROUTE_ADMIN, "Ban a user and revoke its credentials" },
	{ HTTP_POST, "/api/admin/users/{id}/unban", h_users_unban, ROUTE_ADMIN, "Lift a user's ban" },
	{ HTTP_GET, "/api/admin/audit", h_audit_list, ROUTE_ADMIN, "Admin audit log (limit, offset, action)" },
};

const size_t router_nroutes = sizeof router_routes / sizeof router_routes[0];
