/* GET /api: what this service is and what it offers. */
#include <stdio.h>

#include "handlers/handlers.h"
#include "jsonx.h"
#include "worker.h"


void h_api_index(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	struct json_object *o = json_object_new_object(), *eps = json_object_new_object();
	char key[160];

	(void)app; (void)req; (void)m;
	if (o == NULL || eps == NULL)
		goto fail;
	for (size_t i = 0; i < router_nroutes; i++) {
		const struct route *r = &router_routes[i];
		if (r->flags & ROUTE_ALIAS)
			continue;
		snprintf(key, sizeof key, "%s %s", http_method_name(r->method), r->pattern);
		if (jsonx_add_str(eps, key, r->desc) < 0)
			goto fail;
	}
	if (jsonx_add_bool(o, "success", true) < 0 || jsonx_add_str(o, "name", "bloqr-backend") < 0 ||
	    jsonx_add_str(o, "version", PACKAGE_VERSION) < 0)
		goto fail;
	if (jsonx_add(o, "endpoints", eps) < 0) {
		eps = NULL;
		goto fail;
	}
	h_json(res, 200, o);
	return;
fail:
	json_object_put(eps);
	json_object_put(o);
	http_error(res, 500, "Out of memory");
}
