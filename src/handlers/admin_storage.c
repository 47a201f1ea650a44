/* Placeholder: being written. */
#include "handlers/handlers.h"

void h_astorage_stats(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_clear_expired(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_clear_cache(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_export(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_vacuum(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_tables(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

void h_astorage_query(struct app *app, struct http_request *req, struct http_response *res,
    const struct route_match *m)
{
	(void)app; (void)req; (void)m;
	http_error(res, 503, "Not available yet");
}

