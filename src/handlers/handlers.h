/* Endpoint handlers, one group per file. Each fills res; none touches
 * SQLite (only cache.c does) or builds SQL from input. */
#ifndef BLOQR_HANDLERS_H
#define BLOQR_HANDLERS_H

#include <json.h>

#include "http.h"
#include "router.h"

struct app;

/* info.c */
void h_api_index(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* health.c */
void h_health(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* metrics.c */
void h_metrics(struct app *, struct http_request *, struct http_response *, const struct route_match *);

/* Serialize obj as the response body with the given status; frees obj.
 * A NULL obj (allocation failed upstream) becomes a 500. */
void h_json(struct http_response *res, int status, struct json_object *obj);

#endif
