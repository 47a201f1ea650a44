/* GET /api/admin/audit: what administrators did, newest first; and the
 * same log in the dashboard's shape (CONTRACT §7). */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "handlers/handlers.h"
#include "jsonx.h"
#include "text.h"
#include "users.h"
#include "worker.h"

void h_audit_list(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *items = NULL;
	const char *action;
	long limit, offset, total = 0;
	int rc;

	(void)m;
	if (h_query_long(req, res, "limit", 50, 1, 100, &limit) < 0 ||
	    h_query_long(req, res, "offset", 0, 0, 1000000000, &offset) < 0 ||
	    h_query_str(req, res, "action", 64, &action) < 0)
		return;
	if ((rc = audit_list(app->pg, action, limit, offset, &items, &total)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	h_reply_list(res, "entries", items, total, limit, offset);
}

/* An inclusive upper bound means the whole unit it is written in: "…:31Z"
 * covers that second, "….123Z" that millisecond (the precision of the
 * created_at the API shows), so a time copied from an item includes it.
 * t is a valid ISO time with a zone and has room for 10 more bytes. */
static void to_end_of_unit(char *t, size_t size)
{
	char zone[8], *z = t + 16;
	size_t body, frac = 0;

	while (*z && *z != 'Z' && *z != 'z' && *z != '+' && *z != '-')
		z++;
	snprintf(zone, sizeof zone, "%s", z);
	body = (size_t)(z - t);
	if (body == 16) {                          /* HH:MM */
		snprintf(z, size - body, ":59.999999%s", zone);
		return;
	}
	if (body == 19) {                          /* HH:MM:SS */
		snprintf(z, size - body, ".999999%s", zone);
		return;
	}
	frac = body - 20;                          /* HH:MM:SS.f… */
	snprintf(z, size - body, "%.*s%s", (int)(6 - frac), "999999", zone);
}

/* A from/to bound: an ISO date (a whole UTC day: from its start, or to its
 * end) or an ISO date-time (UTC when it names no zone). Into *out as
 * timestamptz text in the arena; NULL when absent. -1 with a 400 set. */
static int time_bound(const struct http_request *req, struct http_response *res, const char *name,
    bool end_of_day, const char **out)
{
	const char *v;
	char *t, date[11];
	size_t n;

	if (h_query_str(req, res, name, 40, &v) < 0)
		return -1;
	*out = NULL;
	if (v == NULL)
		return 0;
	n = strlen(v);
	if ((t = arena_alloc(req->arena, n + 32)) == NULL) {
		http_error(res, 500, "Out of memory");
		return -1;
	}
	if (text_iso_date_valid(v))
		snprintf(t, n + 32, "%sT%s", v, end_of_day ? "23:59:59.999999Z" : "00:00:00Z");
	else if (text_iso_time_valid(v))
		snprintf(t, n + 32, "%s", v);
	else
		snprintf(t, n + 32, "%sZ", v);
	if (!text_iso_time_valid(t) || (memcpy(date, t, 10), date[10] = '\0', !text_iso_date_valid(date))) {
		http_error(res, 400, "Parameter '%s' must be an ISO date (2026-03-25) or time (2026-03-25T17:52:31Z)",
		    name);
		return -1;
	}
	if (end_of_day)
		to_end_of_unit(t, n + 32);
	*out = t;
	return 0;
}

/* GET /admin/system/audit and /admin/audit-logs: the dashboard's audit page. */
void h_audit_items(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct audit_filter f = { 0 };
	struct json_object *items = NULL;
	const char *actor;
	long limit, offset, total = 0;
	int rc;

	(void)m;
	if (h_query_long(req, res, "limit", 25, 1, 100, &limit) < 0 ||
	    h_query_long(req, res, "offset", 0, 0, 1000000000, &offset) < 0 ||
	    h_query_str(req, res, "actor", USERS_EMAIL_MAX, &actor) < 0 ||
	    h_query_str(req, res, "action", 64, &f.action) < 0 ||
	    h_query_str(req, res, "resource_type", 64, &f.resource_type) < 0 ||
	    time_bound(req, res, "from", false, &f.from) < 0 ||
	    time_bound(req, res, "to", true, &f.to) < 0)
		return;
	/* An id is a UUID; anything else can only be an email. */
	if (actor && text_uuid_valid(actor))
		f.actor_id = actor;
	else
		f.actor_email = actor;
	if ((rc = audit_items(app->pg, &f, limit, offset, &items, &total)) != BLOQR_OK) {
		h_error(res, rc);
		return;
	}
	h_reply_list(res, "items", items, total, limit, offset);
}
