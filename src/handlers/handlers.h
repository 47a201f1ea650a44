/* Endpoint handlers, one group per file. Each fills res; none touches
 * SQLite (only cache.c does) or builds SQL from input. */
#ifndef BLOQR_HANDLERS_H
#define BLOQR_HANDLERS_H

#include <json.h>

#include "err.h"
#include "http.h"
#include "router.h"
#include "store.h"

struct app;

/* info.c */
void h_api_index(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* health.c */
void h_health(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* metrics.c */
void h_metrics(struct app *, struct http_request *, struct http_response *, const struct route_match *);

/* auth.c */
void h_sign_in(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_sign_out(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_session(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_sign_in_email(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_get_session(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* admin_users.c */
void h_users_list(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_users_get(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_users_patch(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_users_delete(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_users_ban(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_users_unban(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* deployments.c */
void h_version(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_deployments_list(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_deployments_stats(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_deployments_create(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_deployments_rollback(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* storage.c */
void h_storage_get(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_storage_put(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_storage_delete(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_filter_get(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_filter_put(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_compilations_create(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_compilations_list(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* admin_storage.c */
void h_astorage_stats(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_clear_expired(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_clear_cache(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_export(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_vacuum(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_tables(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_astorage_query(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* cache_admin.c */
void h_cache_status(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_cache_rebuild(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_cache_invalidate(struct app *, struct http_request *, struct http_response *, const struct route_match *);
/* audit.c */
void h_audit_list(struct app *, struct http_request *, struct http_response *, const struct route_match *);
void h_audit_items(struct app *, struct http_request *, struct http_response *, const struct route_match *);

/* ---- common.c ---- */
/* Serialize obj as the response body with the given status; frees obj.
 * A NULL obj (allocation failed upstream) becomes a 500. */
void h_json(struct http_response *res, int status, struct json_object *obj);
/* The response for a failed call (enum bloqr_err): the one place the
 * library's errors become HTTP statuses. */
void h_error(struct http_response *res, int err);
/* The store context of this request: the worker's database and cache, and
 * the signed-in actor, request id and client address for audit rows. */
struct store h_store(struct app *app, const struct http_request *req);
/* The request body as a JSON object, or NULL with a 400 already set. */
struct json_object *h_body_object(const struct http_request *req, struct http_response *res);
/* A new {"success":true} object, NULL when out of memory. */
struct json_object *h_success(void);
/* 200 {"success":true,"message":msg}. */
void h_message(struct http_response *res, const char *msg);
/* Query parameter as a number in [min, max], def when absent; -1 with a
 * 400 set when malformed or out of range. */
int h_query_long(const struct http_request *req, struct http_response *res, const char *name,
    long def, long min, long max, long *out);
/* ?limit of the public lists (deployments, compilations), as the contract
 * wants it: absent, non-numeric or < 1 → 50, above 1000 → 1000; never a 400. */
#define H_LIST_LIMIT_DEFAULT 50
#define H_LIST_LIMIT_MAX 1000
long h_list_limit(const struct http_request *req);
/* Query parameter as text (NULL when absent or empty); -1 with a 400 set
 * when malformed or too long. */
int h_query_str(const struct http_request *req, struct http_response *res, const char *name,
    size_t maxlen, const char **out);
/* status {"success":true,"<name>":obj} where obj is JSON text already (a
 * cached body): copied, never parsed. */
void h_reply_raw(struct http_response *res, int status, const char *name, const char *obj);
/* 200 {success, <key>: arr, total, limit, offset} (a negative number
 * leaves its field out). Takes arr; NULL (out of memory upstream) is a 500. */
void h_reply_list(struct http_response *res, const char *key, struct json_object *arr,
    long total, long limit, long offset);

#endif
