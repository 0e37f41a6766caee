/* cache.c — jobgate-cache, the result cache (contract section 6):
 *   POST /cache/key             -> 200 {"key":"<64 hex>"} | 400 | 413 | 415
 *   GET|HEAD /cache/{key}       -> 200 stored JSON + X-Cache-TTL | 404 | 503
 *   PUT /cache/{key}[?ttl=S]    -> 204 | 400 | 404 | 413 | 415 | 503
 *   DELETE /cache/{key}         -> 204 | 404 | 503
 *
 * An entry is the string P:cache:<key> holding the JSON text, expiring with its TTL; the worker
 * writes one when a job of cache: true ends done, and POST /jobs reads it (docs/redis.md).
 * GET/HEAD count their hits and misses in the hash P:cache:stats (fields hits, misses), as
 * POST /jobs with cache: true does. A key that is not 64 lowercase hex is 404 before any Redis
 * call: it never becomes a Redis key. */
#include <string.h>

#include "fields.h"
#include "jg.h"
#include "json.h"
#include "keys.h"
#include "resultcache.h"
#include "server.h"

#define TTL_DEFAULT 604800L
#define TTL_MAX     31536000L

/* POST /cache/key -> 200 {"key":"..."} */
static int cache_key(jg_req_t *req)
{
    jg_buf_t body = JG_BUF_INIT;
    json_object *obj = NULL;
    jg_key_fields_t kf;
    char hex[65];
    int rc = JG_ERR;

    jg_key_fields_init(&kf);
    if (jg_req_read_json_body(req, &body) || (obj = jg_body_object(req, &body)) == NULL)
        goto out;
    json_object_object_foreach(obj, name, v) {
        int r = jg_key_fields_member(req, &body, name, v, &kf);
        if (r == 1)
            r = jg_fail(req, 400, "invalid_field", "unknown field \"%.64s\"", name);
        if (r != JG_OK)
            goto out;
    }
    if (jg_key_fields_key(req, &kf, hex) != JG_OK)
        goto out;
    jg_buf_printf(&req->body, "{\"key\":\"%s\"}", hex);
    rc = JG_OK;
out:
    json_object_put(obj);
    jg_buf_free(&body);
    return rc;
}

/* GET|HEAD /cache/{key} -> 200 stored JSON + X-Cache-TTL | 404 */
static int cache_get(jg_req_t *req, const char *key)
{
    redisReply *val = NULL, *ttl = NULL;
    int rc = JG_ERR;
    /* one round trip for the value and its TTL */
    if (jg_redis_append(req->redis, "GET %s", key))
        return jg_fail_unavailable(req);
    if (jg_redis_append(req->redis, "TTL %s", key)) {
        jg_redis_drop(req->redis, "cannot pipeline");   /* the GET must not stay pending */
        return jg_fail_unavailable(req);
    }
    if ((val = jg_redis_get_reply(req->redis)) == NULL ||
        (ttl = jg_redis_get_reply(req->redis)) == NULL) {
        jg_fail_unavailable(req);
        goto out;
    }
    if (val->type == REDIS_REPLY_NIL) {
        jg_cache_count(req->redis, req->cfg, 0);
        jg_fail(req, 404, "not_found", "no such cache entry");
        goto out;
    }
    if (val->type != REDIS_REPLY_STRING || ttl->type != REDIS_REPLY_INTEGER) {
        jg_fail_redis(req, val->type != REDIS_REPLY_STRING ? val : ttl);
        goto out;
    }
    jg_cache_count(req->redis, req->cfg, 1);
    jg_buf_append(&req->body, val->str, val->len);
    /* -2: it expired between the two commands (it was there: the answer stands); -1: written
     * without an expiry by something else than jobgate, so no TTL to tell */
    if (ttl->integer != -1)
        jg_resp_header(req, "X-Cache-TTL: %lld\r\n", ttl->integer < 0 ? 0 : ttl->integer);
    rc = JG_OK;
out:
    if (val)
        freeReplyObject(val);
    if (ttl)
        freeReplyObject(ttl);
    return rc;
}

/* PUT /cache/{key}[?ttl=S] -> 204 */
static int cache_put(jg_req_t *req, const char *key)
{
    jg_buf_t body = JG_BUF_INIT;
    redisReply *rep = NULL;
    char arg[32], msg[128];
    long ttl = TTL_DEFAULT;
    int rc = JG_ERR;

    if (jg_req_read_json_body(req, &body))
        goto out;
    int q = jg_query_get(req->query, "ttl", arg, sizeof arg);
    if (q < 0 || (q == 1 && (strspn(arg, "0123456789") != strlen(arg) ||
                             jg_parse_long(arg, 1, TTL_MAX, &ttl)))) {
        jg_fail(req, 400, "invalid_field", "ttl must be a whole number of seconds, 1 to %ld",
                TTL_MAX);
        goto out;
    }
    if (jg_json_check(body.data, body.len, JG_JSON_MAX_DEPTH, msg, sizeof msg) != JG_JSON_OK) {
        jg_fail(req, 400, "invalid_json", "%s", msg);
        goto out;
    }
    rep = jg_redis_cmd(req->redis, "SET %s %b EX %ld", key, body.data, body.len, ttl);
    if (rep == NULL) {
        jg_fail_unavailable(req);
        goto out;
    }
    if (rep->type != REDIS_REPLY_STATUS) {
        jg_fail_redis(req, rep);
        goto out;
    }
    req->status = 204;
    rc = JG_OK;
out:
    if (rep)
        freeReplyObject(rep);
    jg_buf_free(&body);
    return rc;
}

/* DELETE /cache/{key} -> 204 | 404 */
static int cache_delete(jg_req_t *req, const char *key)
{
    redisReply *rep = jg_redis_cmd(req->redis, "DEL %s", key);
    int rc = JG_ERR;
    if (rep == NULL)
        return jg_fail_unavailable(req);
    if (rep->type != REDIS_REPLY_INTEGER)
        jg_fail_redis(req, rep);
    else if (rep->integer == 0)
        jg_fail(req, 404, "not_found", "no such cache entry");
    else {
        req->status = 204;
        rc = JG_OK;
    }
    freeReplyObject(rep);
    return rc;
}

static int handle(jg_req_t *req)
{
    if (req->route->id == JG_ROUTE_CACHE_KEY)
        return cache_key(req);
    if (!jg_valid_hex64(req->param))            /* never a key from unchecked input */
        return jg_fail(req, 404, "not_found", "no such cache entry");
    char key[JG_KEY_MAX];
    jg_key_cache(req->cfg, req->param, key);
    switch (req->route->id) {
    case JG_ROUTE_CACHE_PUT:
        return cache_put(req, key);
    case JG_ROUTE_CACHE_DELETE:
        return cache_delete(req, key);
    default:
        return cache_get(req, key);
    }
}

static const jg_program_t program = {"jobgate-cache", "cache", handle, NULL, NULL};

int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
