/* submit.c — jobgate-submit, the write side of jobs (contract section 3):
 *   POST /jobs               -> 202 job + Location | 400 | 413 | 415 | 503
 *   POST /jobs/{id}/cancel   -> 200 cancelled | 202 cancel requested | 404 | 409 finished */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <string.h>

#include "jg.h"
#include "job.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "server.h"

/* A submitted job, validated. Strings point into the parsed body. */
typedef struct submission {
    const char *type;
    const char *queue;
    const char *payload;        /* raw JSON text of the payload member, or "{}" */
    size_t payload_len;
    long priority, max_attempts, cache_ttl;
    long long timeout_ms, delay_ms;
    int cache;
    const char *cache_version;  /* NULL when absent */
} submission_t;

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int int_field(jg_req_t *req, const char *name, json_object *v, long min, long max,
                     long *out)
{
    if (!json_object_is_type(v, json_type_int))
        return jg_fail(req, 400, "invalid_field", "%s must be an integer", name);
    errno = 0;
    int64_t n = json_object_get_int64(v);
    if (errno || n < min || n > max)
        return jg_fail(req, 400, "invalid_field", "%s must be between %ld and %ld", name, min, max);
    *out = (long)n;
    return JG_OK;
}

/* A number of seconds in [min, max], as milliseconds. */
static int seconds_field(jg_req_t *req, const char *name, json_object *v, double min,
                         double max, long long *ms)
{
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return jg_fail(req, 400, "invalid_field", "%s must be a number of seconds", name);
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < min || d > max)
        return jg_fail(req, 400, "invalid_field", "%s must be between %g and %g seconds", name,
                       min, max);
    *ms = llround(d * 1000.0);
    return JG_OK;
}

/* A JSON string with no NUL inside (json-c would cut it there). */
static int plain_string(json_object *v)
{
    return json_object_is_type(v, json_type_string) &&
           strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v);
}

static int name_field(jg_req_t *req, const char *name, json_object *v, const char **out)
{
    if (!plain_string(v) || !jg_valid_name(json_object_get_string(v)))
        return jg_fail(req, 400, "invalid_field",
                       "%s must be a name matching ^[a-z0-9][a-z0-9_.-]{0,63}$", name);
    *out = json_object_get_string(v);
    return JG_OK;
}

/* Reads every member of the body into s, with the rules of contract section 3. */
static int validate(jg_req_t *req, const jg_buf_t *body, json_object *obj, submission_t *s)
{
    memset(s, 0, sizeof *s);
    s->queue = "default";
    s->payload = "{}";
    s->payload_len = 2;
    s->max_attempts = 3;
    s->timeout_ms = 300000;
    s->cache_ttl = 604800;
    json_object_object_foreach(obj, key, v) {
        int rc = JG_OK;
        if (strcmp(key, "type") == 0)
            rc = name_field(req, "type", v, &s->type);
        else if (strcmp(key, "queue") == 0)
            rc = name_field(req, "queue", v, &s->queue);
        else if (strcmp(key, "payload") == 0)
            jg_json_member(body->data, body->len, "payload", &s->payload, &s->payload_len);
        else if (strcmp(key, "priority") == 0)
            rc = int_field(req, "priority", v, -1000, 1000, &s->priority);
        else if (strcmp(key, "max_attempts") == 0)
            rc = int_field(req, "max_attempts", v, 1, 25, &s->max_attempts);
        else if (strcmp(key, "timeout") == 0)
            rc = seconds_field(req, "timeout", v, 1, 86400, &s->timeout_ms);
        else if (strcmp(key, "delay") == 0)
            rc = seconds_field(req, "delay", v, 0, 604800, &s->delay_ms);
        else if (strcmp(key, "cache") == 0) {
            if (!json_object_is_type(v, json_type_boolean))
                return jg_fail(req, 400, "invalid_field", "cache must be true or false");
            s->cache = json_object_get_boolean(v);
        } else if (strcmp(key, "cache_ttl") == 0)
            rc = int_field(req, "cache_ttl", v, 1, 31536000, &s->cache_ttl);
        else if (strcmp(key, "cache_version") == 0) {
            if (!plain_string(v) || utf8_chars(json_object_get_string(v)) > 64)
                return jg_fail(req, 400, "invalid_field",
                               "cache_version must be a string of at most 64 characters");
            s->cache_version = json_object_get_string(v);
        } else
            return jg_fail(req, 400, "invalid_field", "unknown field \"%.64s\"", key);
        if (rc != JG_OK)
            return rc;
    }
    if (s->type == NULL)
        return jg_fail(req, 400, "invalid_field", "type is required");
    return JG_OK;
}

/* Parses a body that is strict JSON (json.h) and an object; NULL after jg_fail otherwise. */
static json_object *parse_object(jg_req_t *req, const jg_buf_t *body)
{
    char msg[128];
    if (jg_json_check(body->data, body->len, JG_JSON_MAX_DEPTH, msg, sizeof msg) != JG_JSON_OK) {
        jg_fail(req, 400, "invalid_json", "%s", msg);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(JG_JSON_MAX_DEPTH + 1);
    json_object *obj = json_tokener_parse_ex(tok, body->data, (int)body->len);
    json_tokener_free(tok);
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        jg_fail(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return obj;
}

/* POST /jobs -> 202 job + Location */
static int submit(jg_req_t *req)
{
    jg_buf_t body = JG_BUF_INIT;
    json_object *obj = NULL;
    redisReply *rep = NULL;
    jg_args_t a;
    jg_args_init(&a);
    submission_t s;
    char id[JG_ID_LEN + 1], cache_key[65];
    char k_job[JG_KEY_MAX], k_ready[JG_KEY_MAX], k_delayed[JG_KEY_MAX], k_seq[JG_KEY_MAX],
        k_jobs[JG_KEY_MAX], k_types[JG_KEY_MAX], k_counts[JG_KEY_MAX], k_log[JG_KEY_MAX],
        wake[JG_KEY_MAX], ready_what[JG_NAME_MAX + 8];
    int rc = JG_ERR;

    if (jg_req_read_json_body(req, &body) || (obj = parse_object(req, &body)) == NULL ||
        validate(req, &body, obj, &s) != JG_OK)
        goto out;
    if (jg_cache_key(s.type, s.payload, s.payload_len, s.cache_version, cache_key)) {
        jg_fail(req, 400, "invalid_field", "payload has a number out of range");
        goto out;
    }
    if (jg_new_job_id(s.queue, id)) {
        jg_fail(req, 500, "internal", "no randomness for a job id");
        goto out;
    }
    snprintf(ready_what, sizeof ready_what, "ready:%s", s.type);
    jg_key_job(req->cfg, id, k_job);
    jg_key_queue(req->cfg, s.queue, ready_what, k_ready);
    jg_key_queue(req->cfg, s.queue, "delayed", k_delayed);
    jg_key_queue(req->cfg, s.queue, "seq", k_seq);
    jg_key_queue(req->cfg, s.queue, "jobs", k_jobs);
    jg_key_queue(req->cfg, s.queue, "types", k_types);
    jg_key_queue(req->cfg, s.queue, "counts", k_counts);
    jg_key_log(req->cfg, id, k_log);
    snprintf(wake, sizeof wake, "%s:wake:%s", req->cfg->key_prefix, s.queue);

    const char *keys[] = {k_job, k_ready, k_delayed, k_seq, k_jobs, k_types, k_counts, k_log};
    for (size_t i = 0; i < JG_ARRAY_LEN(keys); i++)
        jg_args_str(&a, keys[i]);
    jg_args_str(&a, id);
    jg_args_str(&a, s.queue);
    jg_args_str(&a, s.type);
    jg_args_add(&a, s.payload, s.payload_len);
    jg_args_printf(&a, "%ld", s.priority);
    jg_args_printf(&a, "%ld", s.max_attempts);
    jg_args_printf(&a, "%lld", s.timeout_ms);
    jg_args_printf(&a, "%lld", s.delay_ms);
    jg_args_str(&a, s.cache ? "1" : "0");
    jg_args_printf(&a, "%ld", s.cache_ttl);
    jg_args_str(&a, cache_key);
    jg_args_str(&a, s.cache_version);
    jg_args_printf(&a, "%ld", req->cfg->log_max);
    jg_args_str(&a, wake);
    rep = jg_redis_script(req->redis, "submit", 8, a.argc, a.argv, a.lens);
    if (rep == NULL) {
        jg_fail_unavailable(req);
        goto out;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        jg_job_json(rep->element[1], 0, &req->body) < 0) {
        jg_fail_redis(req, rep);
        goto out;
    }
    if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 1) {
        /* a type new to the queue: the queue may be new too (P:queues is not in its slot) */
        redisReply *r2 = jg_redis_cmd(req->redis, "SADD %s:queues %s", req->cfg->key_prefix,
                                      s.queue);
        if (r2)
            freeReplyObject(r2);
    }
    req->status = 202;
    jg_resp_header(req, "Location: %s/jobs/%s\r\n", req->cfg->mount_prefix, id);
    jg_log_info("job submitted", "job", id, "queue", s.queue, "type", s.type, NULL);
    rc = JG_OK;
out:
    if (rep)
        freeReplyObject(rep);
    jg_args_free(&a);
    json_object_put(obj);
    jg_buf_free(&body);
    return rc;
}

/* POST /jobs/{id}/cancel -> 200 | 202 | 404 | 409 */
static int cancel(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    char k_job[JG_KEY_MAX], k_log[JG_KEY_MAX], events[JG_KEY_MAX], tagged[JG_KEY_MAX],
        global[JG_KEY_MAX];
    jg_key_job(req->cfg, id, k_job);
    jg_key_log(req->cfg, id, k_log);
    jg_key_global(req->cfg, "events", events);
    snprintf(tagged, sizeof tagged, "%s:{%.8s}:", req->cfg->key_prefix, id);
    jg_key_global(req->cfg, "", global);
    jg_args_t a;
    jg_args_init(&a);
    jg_args_str(&a, k_job);
    jg_args_str(&a, k_log);
    jg_args_str(&a, id);
    jg_args_printf(&a, "%ld", req->cfg->retention);
    jg_args_printf(&a, "%ld", req->cfg->log_max);
    jg_args_str(&a, events);
    jg_args_str(&a, tagged);
    jg_args_str(&a, global);
    redisReply *rep = jg_redis_script(req->redis, "cancel", 2, a.argc, a.argv, a.lens);
    jg_args_free(&a);
    int rc = JG_ERR;
    if (rep == NULL)
        return jg_fail_unavailable(req);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        jg_fail_redis(req, rep);
        goto out;
    }
    long long code = rep->element[0]->integer;
    if (code == 404) {
        jg_fail(req, 404, "not_found", "no such job");
    } else if (code == 409) {
        const char *st = rep->elements > 1 ? jg_job_field(rep->element[1], "status") : NULL;
        jg_fail(req, 409, "conflict", "the job is already %s", st ? st : "finished");
    } else if (rep->elements == 2 && jg_job_json(rep->element[1], 0, &req->body) >= 0) {
        req->status = (int)code;
        jg_log_info(code == 200 ? "job cancelled" : "job cancel requested", "job", id, NULL);
        rc = JG_OK;
    } else {
        jg_fail_redis(req, rep);
    }
out:
    freeReplyObject(rep);
    return rc;
}

static int handle(jg_req_t *req)
{
    return req->route->id == JG_ROUTE_SUBMIT ? submit(req) : cancel(req);
}

static const jg_program_t program = {"jobgate-submit", "submit", handle, NULL, NULL};

int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
