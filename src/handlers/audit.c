/* GET /api/admin/audit: what administrators did, newest first. */
#include "audit.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "pg.h"
#include "worker.h"

void h_audit_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	const char *action;
	long limit, offset, total = 0;
	PGresult *r = NULL;
	int rc;

	(void)m;
	if (h_query_long(req, res, "limit", 50, 1, 100, &limit) < 0 ||
	    h_query_long(req, res, "offset", 0, 0, 1000000000, &offset) < 0 ||
	    h_query_str(req, res, "action", 64, &action) < 0)
		return;
	if ((rc = audit_list(app->pg, action, limit, offset, &r, &total)) != PG_OK) {
		h_pg_error(res, rc);
		return;
	}
	h_reply_page(res, r, "entries", audit_to_json, total, limit, offset);
	PQclear(r);
}
