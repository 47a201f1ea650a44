/* The service's routes: the one place that says which URL does what and
 * who may call it. */
#include "router.h"

#include "handlers/handlers.h"

const struct route router_routes[] = {
	{ HTTP_GET, "/api", h_api_index, ROUTE_PUBLIC, "This list of endpoints" },
	{ HTTP_GET, "/api/health", h_health, ROUTE_PUBLIC, "Health of the gateway, database, cache and auth" },
	{ HTTP_GET, "/metrics", h_metrics, ROUTE_PUBLIC, "Prometheus metrics (restrict in the web server)" },

	{ HTTP_GET, "/api/version", h_version, ROUTE_PUBLIC, "The latest successful deployment" },
	{ HTTP_GET, "/api/deployments", h_deployments_list, ROUTE_PUBLIC, "Deployment history (limit, version, status, branch)" },
	{ HTTP_GET, "/api/deployments/stats", h_deployments_stats, ROUTE_PUBLIC, "Deployment counts and the latest version" },
	{ HTTP_POST, "/api/deployments", h_deployments_create, ROUTE_ADMIN, "Record a deployment" },
	{ HTTP_POST, "/api/deployments/{fullVersion}/rollback", h_deployments_rollback, ROUTE_ADMIN, "Mark a deployment rolled back" },

	{ HTTP_POST, "/api/auth/sign-in", h_sign_in, ROUTE_SIGNIN, "Sign in with email and password" },
	{ HTTP_POST, "/api/auth/sign-out", h_sign_out, ROUTE_AUTH, "Revoke the presented session" },
	{ HTTP_GET, "/api/auth/session", h_session, ROUTE_AUTH, "The signed-in user" },
	/* The dashboard's Better Auth client (CONTRACT §7). */
	{ HTTP_POST, "/api/auth/sign-in/email", h_sign_in_email, ROUTE_SIGNIN, "Sign in with email and password (Better Auth shape)" },
	{ HTTP_GET, "/api/auth/get-session", h_get_session, ROUTE_PUBLIC, "The session and its user, or null (Better Auth shape)" },

	{ HTTP_GET, "/api/admin/users", h_users_list, ROUTE_ADMIN, "List users (limit, offset, tier, role, search)" },
	{ HTTP_GET, "/api/admin/users/{id}", h_users_get, ROUTE_ADMIN, "One user" },
	{ HTTP_PATCH, "/api/admin/users/{id}", h_users_patch, ROUTE_ADMIN, "Change a user's tier or role" },
	{ HTTP_DELETE, "/api/admin/users/{id}", h_users_delete, ROUTE_ADMIN, "Delete a user with its sessions and tokens" },
	{ HTTP_POST, "/api/admin/users/{id}/ban", h_users_ban, ROUTE_ADMIN, "Ban a user and revoke its credentials" },
	{ HTTP_POST, "/api/admin/users/{id}/unban", h_users_unban, ROUTE_ADMIN, "Lift a user's ban" },
	{ HTTP_GET, "/api/storage/{key*}", h_storage_get, ROUTE_ADMIN | ROUTE_CACHED, "Read a storage entry" },
	{ HTTP_PUT, "/api/storage/{key*}", h_storage_put, ROUTE_ADMIN, "Create or replace a storage entry" },
	{ HTTP_DELETE, "/api/storage/{key*}", h_storage_delete, ROUTE_ADMIN, "Delete a storage entry" },
	{ HTTP_GET, "/api/filter-cache", h_filter_get, ROUTE_ADMIN | ROUTE_CACHED, "Read a cached filter list (source)" },
	{ HTTP_PUT, "/api/filter-cache", h_filter_put, ROUTE_ADMIN, "Store a filter list" },
	{ HTTP_POST, "/api/compilations", h_compilations_create, ROUTE_ADMIN, "Record a compilation" },
	{ HTTP_GET, "/api/compilations", h_compilations_list, ROUTE_ADMIN | ROUTE_CACHED, "Compilations (configName, limit)" },

	{ HTTP_GET, "/api/admin/storage/stats", h_astorage_stats, ROUTE_ADMIN, "Row counts of the storage tables" },
	{ HTTP_POST, "/api/admin/storage/clear-expired", h_astorage_clear_expired, ROUTE_ADMIN, "Delete expired storage and filter-cache rows" },
	{ HTTP_POST, "/api/admin/storage/clear-cache", h_astorage_clear_cache, ROUTE_ADMIN, "Delete cache/ storage entries and all filter-cache rows" },
	{ HTTP_GET, "/api/admin/storage/export", h_astorage_export, ROUTE_ADMIN, "Export the storage tables as JSON" },
	{ HTTP_POST, "/api/admin/storage/vacuum", h_astorage_vacuum, ROUTE_ADMIN, "VACUUM ANALYZE the storage tables and the L1 cache" },
	{ HTTP_GET, "/api/admin/storage/tables", h_astorage_tables, ROUTE_ADMIN, "Tables and indexes of the schema" },
	{ HTTP_POST, "/api/admin/storage/query", h_astorage_query, ROUTE_ADMIN, "Run one read-only SQL statement" },
	{ HTTP_GET, "/api/admin/cache/status", h_cache_status, ROUTE_ADMIN, "L1 cache state per table" },
	{ HTTP_POST, "/api/admin/cache/rebuild", h_cache_rebuild, ROUTE_ADMIN, "Refill the L1 cache from PostgreSQL" },
	{ HTTP_POST, "/api/admin/cache/invalidate", h_cache_invalidate, ROUTE_ADMIN, "Drop a row or table from this host's L1 cache" },
	{ HTTP_GET, "/api/admin/audit", h_audit_list, ROUTE_ADMIN, "Admin audit log (limit, offset, action)" },

	/* The dashboard's paths (CONTRACT §7): its audit page, and the storage
	 * page and health check it calls without the /api prefix. */
	{ HTTP_GET, "/admin/system/audit", h_audit_items, ROUTE_ADMIN, "Admin audit log, dashboard shape (limit, offset, actor, action, resource_type, from, to)" },
	{ HTTP_GET, "/admin/audit-logs", h_audit_items, ROUTE_ADMIN, "Admin audit log, dashboard shape (limit, offset)" },
	{ HTTP_GET, "/health", h_health, ROUTE_PUBLIC | ROUTE_ALIAS, NULL },
	{ HTTP_GET, "/admin/storage/stats", h_astorage_stats, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_POST, "/admin/storage/clear-expired", h_astorage_clear_expired, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_POST, "/admin/storage/clear-cache", h_astorage_clear_cache, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_GET, "/admin/storage/export", h_astorage_export, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_POST, "/admin/storage/vacuum", h_astorage_vacuum, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_GET, "/admin/storage/tables", h_astorage_tables, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
	{ HTTP_POST, "/admin/storage/query", h_astorage_query, ROUTE_ADMIN | ROUTE_ALIAS, NULL },
};

const size_t router_nroutes = sizeof router_routes / sizeof router_routes[0];
