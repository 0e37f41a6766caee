/* admin.c — jobgate-admin, operations (contract section 7):
 *   GET  /health                   -> 200 {"status":"ok","redis":{...},"version"} | 503
 *   GET  /stats                    -> 200 queues, totals, live workers, cache counters | 503
 *   GET  /queues                   -> 200 {"queues":[the /stats entries]} | 503
 *   GET  /metrics                  -> 200 Prometheus text 0.0.4 | 503
 *   GET  /jobs?queue=&type=&status=&limit=&cursor=
 *                                  -> 200 {"jobs":[...],"next":"<cursor>"|null} | 400 | 503
 *   POST /jobs/{id}/retry          -> 200 job | 404 | 409 (not failed or cancelled) | 503
 *   DELETE /jobs/{id}              -> 204 | 404 | 409 (queued or running) | 503
 *   POST /queues/{q}/pause|resume  -> 200 the queue's stats | 400 | 503
 *   POST /queues/{q}/retry-failed  -> 200 {"retried":N} | 400 | 503
 * The figures come from shared/adminstats.c (and prom.c for /metrics), the listing from
 * shared/joblist.c; the changes are redis/retry.lua, delete.lua and resume.lua, and the pause
 * key P:{tag}:q:<queue>:paused that claim.lua checks (docs/redis.md). */
#include <string.h>
#include <time.h>

#include "adminstats.h"
#include "jg.h"
#include "job.h"
#include "joblist.h"
#include "keys.h"
#include "log.h"
#include "prom.h"
#include "server.h"

#define RETRY_BATCH 500   /* index entries per retry.lua call of retry-failed */

/* jg_stats_read()'s failure as the answer: 503, or 500. */
static int stats_failed(jg_req_t *req, int rc)
{
    if (rc == -1)
        return jg_fail_unavailable(req);
    return jg_fail(req, 500, "internal", "unexpected answer from Redis");
}

/* GET /health -> 200 | 503: one PING, timed. Never needs a token. */
static int health(jg_req_t *req)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    redisReply *rep = jg_redis_cmd(req->redis, "PING");
    clock_gettime(CLOCK_MONOTONIC, &b);
    int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep)
        freeReplyObject(rep);
    if (!ok) {
        req->status = 503;
        jg_resp_header(req, "Retry-After: 1\r\n");
        jg_buf_puts(&req->body, "{\"status\":\"unavailable\",\"redis\":{\"ok\":false},\"version\":\""
                                JG_VERSION "\"}");
        return JG_OK;
    }
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    jg_buf_printf(&req->body,
                  "{\"status\":\"ok\",\"redis\":{\"ok\":true,\"latency_ms\":%.3f},\"version\":\""
                  JG_VERSION "\"}", ms);
    return JG_OK;
}

/* GET /stats, /queues, /metrics -> 200 | 503 */
static int stats(jg_req_t *req)
{
    jg_stats_t s;
    int rc = jg_stats_read(req->cfg, req->redis, NULL, &s);
    if (rc) {
        jg_stats_free(&s);
        return stats_failed(req, rc);
    }
    if (req->route->id == JG_ROUTE_METRICS) {
        req->content_type = "text/plain; version=0.0.4; charset=utf-8";
        jg_prom_write(&s, &req->body);
    } else if (req->route->id == JG_ROUTE_QUEUES) {
        jg_buf_puts(&req->body, "{\"queues\":[");
        for (size_t i = 0; i < s.nqueues; i++) {
            if (i)
                jg_buf_putc(&req->body, ',');
            jg_stats_queue_json(&s.queues[i], &req->body);
        }
        jg_buf_puts(&req->body, "]}");
    } else {
        jg_stats_json(&s, &req->body);
    }
    jg_stats_free(&s);
    return JG_OK;
}

/* GET /jobs?queue=&type=&status=&limit=&cursor= -> 200 | 400 | 503 */
static int list(jg_req_t *req)
{
    jg_list_query_t q;
    if (jg_list_parse(req, &q) != JG_OK)
        return JG_ERR;
    int rc = jg_list_jobs(req->cfg, req->redis, &q, &req->body);
    if (rc) {
        jg_buf_reset(&req->body);
        return stats_failed(req, rc);
    }
    return JG_OK;
}

/* One call of retry.lua (docs/redis.md): mode "job" retries the job id (key: its hash), mode
 * "queue" the failed jobs of the queue name among batch entries of its job index (key) from
 * start; tag_of names the tag (the job id, or the queue's tag) of the tagged key and the events
 * channel. The reply, or NULL when Redis is unreachable. */
static redisReply *retry_script(jg_req_t *req, const char *key, const char *tag_of,
                                const char *mode, const char *name, long long start, int batch)
{
    char tagged[JG_KEY_MAX], events[JG_KEY_MAX];
    jg_key_tagged(req->cfg, tag_of, tagged);
    jg_chan_events(req->cfg, tag_of, events);
    jg_args_t a;
    jg_args_init(&a);
    jg_args_str(&a, key);
    jg_args_str(&a, tagged);
    jg_args_str(&a, mode);
    jg_args_str(&a, name);
    jg_args_int(&a, start);
    jg_args_int(&a, batch);
    jg_args_int(&a, req->cfg->log_max);
    jg_args_str(&a, events);
    redisReply *rep = jg_redis_script(req->redis, "retry", 1, a.argc, a.argv, a.lens);
    jg_args_free(&a);
    return rep;
}

/* POST /jobs/{id}/retry -> 200 job | 404 | 409 */
static int retry(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    char k_job[JG_KEY_MAX];
    jg_key_job(req->cfg, id, k_job);
    redisReply *rep = retry_script(req, k_job, id, "job", id, 0, 0);
    if (rep == NULL)
        return jg_fail_unavailable(req);
    int rc = JG_ERR;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        jg_fail_redis(req, rep);
    } else if (rep->element[0]->integer == 404) {
        jg_fail(req, 404, "not_found", "no such job");
    } else if (rep->elements != 2) {
        jg_fail_redis(req, rep);
    } else if (rep->element[0]->integer == 409) {
        const char *st = rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : NULL;
        jg_fail(req, 409, "conflict", "only a failed or cancelled job can be retried; this one is %s",
                st ? st : "not");
    } else if (jg_job_json_text(rep->element[1], 0, &req->body) >= 0) {
        jg_log_info("job queued again (retry)", "job", id, NULL);
        rc = JG_OK;
    } else {
        jg_fail_redis(req, rep);
    }
    freeReplyObject(rep);
    return rc;
}

/* DELETE /jobs/{id} -> 204 | 404 | 409 */
static int delete_job(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    char k_job[JG_KEY_MAX], k_log[JG_KEY_MAX], tagged[JG_KEY_MAX];
    jg_key_job(req->cfg, id, k_job);
    jg_key_log(req->cfg, id, k_log);
    jg_key_tagged(req->cfg, id, tagged);
    const char *argv[] = {k_job, k_log, id, tagged};
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    redisReply *rep = jg_redis_script(req->redis, "delete", 2, 4, argv, lens);
    if (rep == NULL)
        return jg_fail_unavailable(req);
    int rc = JG_ERR;
    long long code = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                             rep->element[0]->type == REDIS_REPLY_INTEGER
                         ? rep->element[0]->integer
                         : 0;
    if (code == 204) {
        req->status = 204;
        jg_log_info("job deleted", "job", id, NULL);
        rc = JG_OK;
    } else if (code == 404) {
        jg_fail(req, 404, "not_found", "no such job");
    } else if (code == 409 && rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_STRING) {
        jg_fail(req, 409, "conflict", "the job is %s: only a finished job can be deleted",
                rep->element[1]->str);
    } else {
        jg_fail_redis(req, rep);
    }
    freeReplyObject(rep);
    return rc;
}

/* The queue's stats as the answer (pause, resume). */
static int queue_answer(jg_req_t *req, const char *queue)
{
    jg_stats_t s;
    int rc = jg_stats_read(req->cfg, req->redis, queue, &s);
    if (rc == 0)
        jg_stats_queue_json(&s.queues[0], &req->body);
    jg_stats_free(&s);
    return rc ? stats_failed(req, rc) : JG_OK;
}

/* POST /queues/{q}/pause | resume | retry-failed */
static int queue_op(jg_req_t *req)
{
    const char *queue = req->param;
    if (!jg_valid_name(queue))
        return jg_fail(req, 400, "invalid_field", "queue must match ^[a-z0-9][a-z0-9_.-]{0,63}$");
    char k_paused[JG_KEY_MAX], k_types[JG_KEY_MAX], k_jobs[JG_KEY_MAX], tag[JG_TAG_LEN + 1];
    jg_key_queue(req->cfg, queue, "paused", k_paused);
    jg_key_queue(req->cfg, queue, "types", k_types);
    jg_key_queue(req->cfg, queue, "jobs", k_jobs);
    jg_queue_tag(queue, tag);
    redisReply *rep = NULL;

    if (req->route->id == JG_ROUTE_PAUSE) {
        /* claim.lua claims nothing while the key exists; resume deletes it (its owner) */
        rep = jg_redis_cmd(req->redis, "SET %s 1", k_paused);
        if (rep == NULL)
            return jg_fail_unavailable(req);
        freeReplyObject(rep);
        rep = jg_redis_cmd(req->redis, "SADD %s:queues %s", req->cfg->key_prefix, queue);
        if (rep == NULL)
            return jg_fail_unavailable(req);
        freeReplyObject(rep);
        jg_log_info("queue paused", "queue", queue, NULL);
        return queue_answer(req, queue);
    }
    if (req->route->id == JG_ROUTE_RESUME) {
        char wake[JG_KEY_MAX];
        jg_chan_wake(req->cfg, queue, wake);
        const char *argv[] = {k_paused, k_types, wake};
        size_t lens[3];
        for (int i = 0; i < 3; i++)
            lens[i] = strlen(argv[i]);
        rep = jg_redis_script(req->redis, "resume", 2, 3, argv, lens);
        if (rep == NULL)
            return jg_fail_unavailable(req);
        int bad = rep->type != REDIS_REPLY_INTEGER;
        if (bad)
            jg_fail_redis(req, rep);
        freeReplyObject(rep);
        if (bad)
            return JG_ERR;
        jg_log_info("queue resumed", "queue", queue, NULL);
        return queue_answer(req, queue);
    }
    /* retry-failed: the queue's job index, a batch per call, until its end */
    long long retried = 0, start = 0;
    while (start >= 0) {
        rep = retry_script(req, k_jobs, tag, "queue", queue, start, RETRY_BATCH);
        if (rep == NULL)
            return jg_fail_unavailable(req);
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_INTEGER ||
            rep->element[1]->type != REDIS_REPLY_INTEGER) {
            jg_fail_redis(req, rep);
            freeReplyObject(rep);
            return JG_ERR;
        }
        retried += rep->element[0]->integer;
        start = rep->element[1]->integer;
        freeReplyObject(rep);
    }
    char n[32];
    snprintf(n, sizeof n, "%lld", retried);
    jg_log_info("failed jobs queued again", "queue", queue, "retried", n, NULL);
    jg_buf_printf(&req->body, "{\"retried\":%lld}", retried);
    return JG_OK;
}

static int handle(jg_req_t *req)
{
    switch (req->route->id) {
    case JG_ROUTE_HEALTH:
        return health(req);
    case JG_ROUTE_STATS:
    case JG_ROUTE_QUEUES:
    case JG_ROUTE_METRICS:
        return stats(req);
    case JG_ROUTE_LIST:
        return list(req);
    case JG_ROUTE_RETRY:
        return retry(req);
    case JG_ROUTE_DELETE:
        return delete_job(req);
    case JG_ROUTE_PAUSE:
    case JG_ROUTE_RESUME:
    case JG_ROUTE_RETRY_FAILED:
        return queue_op(req);
    default:
        return jg_fail(req, 404, "not_found", "no such route");
    }
}

static const jg_program_t program = {"jobgate-admin", "admin", handle, NULL, NULL};

int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
