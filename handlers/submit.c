/* submit.c — jobgate-submit, the write side of jobs (contract section 3):
 *   POST /jobs               -> 202 job + Location | 200 cached | 202 coalesced | 200 repeat
 *                               (Idempotency-Key) | 400 | 409 | 413 | 415 | 503
 *   POST /jobs/{id}/cancel   -> 200 cancelled | 202 cancel requested | 404 | 409 finished
 *
 * With cache: true, a result in the result cache (P:cache:<key>) makes a job created done (200),
 * and a job of the same cache key queued or running in the queue is answered instead of a new
 * one (202, coalesced): submit.lua decides, atomically, with the queue's in-flight marker.
 * Idempotency-Key: P:idem:<SHA-256 of the caller and the header> holds the id of the first
 * request's job for 24 h; while that request creates it, a "pending:<id>" marker that expires
 * in 10 s, taken with SET NX, decides which of racing repeats creates it (docs/redis.md). */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "jg.h"
#include "job.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "pipeline.h"
#include "resultcache.h"
#include "server.h"
#include "timefmt.h"

#define IDEM_TTL_S      86400        /* an Idempotency-Key is remembered 24 h */
#define IDEM_PENDING_MS 10000        /* ... and held this long while its job is being created */
#define IDEM_PENDING    "pending:"   /* the value's prefix meanwhile: "pending:<id>" */
#define AT_LEN          26           /* "YYYY-MM-DDTHH:MM:SS.mmmZ": created_at at the cut */
#define AT_SECOND_LEN   21           /* its part to the second ("YYYY-MM-DDTHH:MM:SS.) */
#define IDEM_ABSENT     2            /* idem_answer(): the key is not taken */

/* A submitted job, validated. Strings point into the parsed body. */
typedef struct submission {
    jg_key_fields_t k;          /* type, payload, cache_version: what the cache key is made of */
    const char *queue;
    long priority, max_attempts, cache_ttl;
    long long timeout_ms, delay_ms;
    int cache;
} submission_t;

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

/* Reads every member of the body into s, with the rules of contract section 3. */
static int validate(jg_req_t *req, const jg_buf_t *body, json_object *obj, submission_t *s)
{
    memset(s, 0, sizeof *s);
    jg_key_fields_init(&s->k);
    s->queue = "default";
    s->max_attempts = 3;
    s->timeout_ms = 300000;
    s->cache_ttl = 604800;
    json_object_object_foreach(obj, key, v) {
        int rc = jg_key_fields_member(req, body, key, v, &s->k);
        if (rc != 1) {   /* type, payload or cache_version: the cache key's members */
            if (rc != JG_OK)
                return rc;
            continue;
        }
        rc = JG_OK;
        if (strcmp(key, "queue") == 0)
            rc = jg_field_name(req, "queue", v, &s->queue);
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
        else
            return jg_fail(req, 400, "invalid_field", "unknown field \"%.64s\"", key);
        if (rc != JG_OK)
            return rc;
    }
    return JG_OK;
}

/* The Location header of job id, without printf (every submit answers one). */
static void location(jg_req_t *req, const char *id)
{
    jg_buf_puts(&req->headers, "Location: ");
    jg_buf_puts(&req->headers, req->cfg->mount_prefix);
    jg_buf_puts(&req->headers, "/jobs/");
    jg_buf_puts(&req->headers, id);
    jg_buf_puts(&req->headers, "\r\n");
}

/* Reads job id (one round trip: the job object's fields) into req->body. Returns its version,
 * -1 when there is no such job, or -2 when Redis is unreachable. */
static long long read_job(jg_req_t *req, const char *id)
{
    redisReply *rep = jg_job_read(req->cfg, req->redis, id);
    if (rep == NULL)
        return -2;
    long long version = jg_job_json_hmget(rep, 0, &req->body);
    freeReplyObject(rep);
    return version;
}

/* A taken Idempotency-Key answers the request: 200 with its job. rep is the key's value as
 * Redis gave it (GET, or SET NX GET). While the first request is still creating the job (the
 * value is "pending:<id>" and no job <id> exists yet), 409 with Retry-After: 1, at once: a
 * repeat never waits on a thread. A pending marker whose request died expires within
 * IDEM_PENDING_MS, so the key is free again soon.
 * Returns JG_OK (answered), JG_ERR (failed: 409, 500, 503), or IDEM_ABSENT when nobody holds it
 * (rep is nil). Frees rep. */
static int idem_answer_reply(jg_req_t *req, redisReply *rep)
{
    char id[JG_ID_MAX + 1] = "";
    int type = rep->type, pending = 0;
    if (type == REDIS_REPLY_STRING) {
        const char *v = rep->str;
        size_t plen = strlen(IDEM_PENDING);
        if (rep->len > plen && memcmp(v, IDEM_PENDING, plen) == 0)
            pending = 1, v += plen;
        if (strlen(v) <= JG_ID_MAX)
            snprintf(id, sizeof id, "%s", v);
    }
    if (type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return IDEM_ABSENT;
    }
    if (type != REDIS_REPLY_STRING) {
        jg_fail_redis(req, rep);
        freeReplyObject(rep);
        return JG_ERR;
    }
    freeReplyObject(rep);
    if (!jg_valid_job_id(id))
        return jg_fail(req, 500, "internal", "bad job id under an Idempotency-Key");
    long long version = read_job(req, id);
    if (version == -2)
        return jg_fail_unavailable(req);
    if (version >= 0) {
        location(req, id);
        jg_log_info("job submitted again (Idempotency-Key)", "job", id, NULL);
        return JG_OK;   /* 200 */
    }
    jg_buf_reset(&req->body);
    if (pending) {
        jg_resp_header(req, "Retry-After: 1\r\n");
        return jg_fail(req, 409, "conflict",
                       "a request with this Idempotency-Key is still being processed; retry");
    }
    return jg_fail(req, 409, "conflict", "the job of this Idempotency-Key has expired");
}

/* A body that did not pass (its error already in req) with an Idempotency-Key: a taken key still
 * answers its job, whatever the body says; the error stands when the key is free (one GET). */
static int idem_or_error(jg_req_t *req, const char *idem)
{
    int status = req->status;
    char code[sizeof req->err_code], msg[sizeof req->err_msg];
    memcpy(code, req->err_code, sizeof code);
    memcpy(msg, req->err_msg, sizeof msg);
    req->failed = 0;
    req->status = 200;
    redisReply *rep = jg_redis_cmd(req->redis, "GET %s", idem);
    int rc = rep ? idem_answer_reply(req, rep) : jg_fail_unavailable(req);
    if (rc != IDEM_ABSENT)
        return rc;
    req->failed = 1;
    req->status = status;
    memcpy(req->err_code, code, sizeof code);
    memcpy(req->err_msg, msg, sizeof msg);
    return JG_ERR;
}

/* A submit under way: the parsed body and the script call built from it. submit() keeps one on
 * its stack; a request thread's batch keeps one per slot (cmd->data), reused. Strings in s and
 * in the call point into body, shown_parts and the key buffers. */
typedef struct submit_state {
    jg_buf_t body, shown_parts;   /* the request's body; the object rendered here (see build) */
    json_object *obj;
    submission_t s;
    char id[JG_ID_LEN + 1], cache_key[65];
    char keys[2][JG_KEY_MAX], ready_what[JG_NAME_MAX + 8];
    size_t cut;                   /* where created_at goes in shown_parts */
    jg_script_call_t call;        /* not zeroed: jg_args_init sets what is read (~20 KB) */
    jg_script_call_t group;       /* the batch: call with those of the submits joined to it */
    int todo;                     /* the batch: what after() does (TODO_*) */
} submit_state_t;

#define BODY_KEEP 65536   /* a batch slot keeps a body buffer up to this size between requests */

static void state_init(submit_state_t *st)
{
    st->body = (jg_buf_t)JG_BUF_INIT;
    st->shown_parts = (jg_buf_t)JG_BUF_INIT;
    st->obj = NULL;
    jg_args_init(&st->call.args);
    jg_args_init(&st->group.args);
}

/* Ready for the next request; the buffers' memory is kept (a large body's is not). */
static void state_clear(submit_state_t *st)
{
    json_object_put(st->obj);
    st->obj = NULL;
    jg_args_free(&st->call.args);
    jg_args_init(&st->group.args);   /* (its arguments are call's and the joined ones') */
    if (st->body.cap > BODY_KEEP)
        jg_buf_free(&st->body);
    jg_buf_reset(&st->body);
    jg_buf_reset(&st->shown_parts);
}

static void state_free(submit_state_t *st)
{
    state_clear(st);
    jg_buf_free(&st->body);
    jg_buf_free(&st->shown_parts);
}

/* Reads and checks the body into st (contract section 3). JG_OK, or JG_ERR after jg_fail. */
static int parse(jg_req_t *req, submit_state_t *st)
{
    if (jg_req_read_json_body(req, &st->body) ||
        (st->obj = jg_body_object(req, &st->body)) == NULL ||
        validate(req, &st->body, st->obj, &st->s) != JG_OK ||
        jg_key_fields_key(req, &st->s.k, st->cache_key) != JG_OK)
        return JG_ERR;
    return JG_OK;
}

/* A new job id for st. JG_OK, or JG_ERR (500). */
static int new_id(jg_req_t *req, submit_state_t *st)
{
    if (jg_new_job_id(st->s.queue, st->id))
        return jg_fail(req, 500, "internal", "no randomness for a job id");
    return JG_OK;
}

/* Where build() puts what batch_join() reuses among submit.lua's arguments (its 2 keys first) */
#define ARG_ID       2    /* ARGV[1] */
#define ARG_PAYLOAD  5    /* ARGV[4]; priority, max_attempts, timeout_ms follow */
#define ARG_SECOND   13   /* ARGV[12]; cache_key and the object's two texts come before it */
#define ARGS_PLAIN   14   /* all of them, without the cache options */

/* Builds st's submit.lua call. entry: the result cache's entry (GET; a string is a hit), or NULL
 * when not looked up. */
static void build(jg_req_t *req, submit_state_t *st, const redisReply *entry)
{
    submission_t *s = &st->s;
    jg_args_t *a = &st->call.args;
    st->call.name = "submit";
    st->call.nkeys = 2;
    jg_args_init(a);
    memcpy(st->ready_what, "ready:", 6);
    memcpy(st->ready_what + 6, s->k.type, strlen(s->k.type) + 1);
    jg_key_job(req->cfg, st->id, st->keys[0]);
    jg_key_queue(req->cfg, s->queue, st->ready_what, st->keys[1]);

    /* the queue's other keys, the job's log and the wake channel: built by the script */
    for (size_t i = 0; i < JG_ARRAY_LEN(st->keys); i++)
        jg_args_str(a, st->keys[i]);
    jg_args_str(a, st->id);
    jg_args_str(a, s->queue);
    jg_args_str(a, s->k.type);
    jg_args_add(a, s->k.payload, s->k.payload_len);
    jg_args_int(a, s->priority);
    jg_args_int(a, s->max_attempts);
    jg_args_int(a, s->timeout_ms);
    jg_args_int(a, s->delay_ms);
    jg_args_str(a, st->cache_key);
    int hit = entry && entry->type == REDIS_REPLY_STRING;
    st->cut = 0;
    jg_buf_reset(&st->shown_parts);
    if (!hit && s->delay_ms == 0) {
        /* queued now: the object as of this clock, cut in created_at after its second, which
         * the script keeps when Redis' clock is in the same second (it adds the ms) */
        char prio[24], attempts[24], now[24];
        int64_t ms = jg_now_ms();
        jg_fmt_int(s->priority, prio);
        jg_fmt_int(s->max_attempts, attempts);
        jg_fmt_int(ms, now);
        jg_job_submitted(st->id, s->queue, s->k.type, prio, attempts, st->cache_key, now,
                         &st->shown_parts, &st->cut);
        jg_args_add(a, st->shown_parts.data, st->cut + AT_SECOND_LEN);
        jg_args_add(a, st->shown_parts.data + st->cut + AT_LEN - 2,
                    st->shown_parts.len - st->cut - AT_LEN + 2);
        jg_args_int(a, ms / 1000);
    } else {
        jg_args_str(a, "");
        jg_args_str(a, "");
        jg_args_str(a, "");
    }
    /* the rest only when used (each argument costs Redis about 1,500 instructions) */
    if (s->cache || (s->k.cache_version && s->k.cache_version[0])) {
        jg_args_str(a, s->k.cache_version);
        jg_args_str(a, s->cache ? "1" : "0");
        jg_args_int(a, s->cache_ttl);
        if (hit) {
            jg_args_str(a, "1");
            jg_args_add(a, entry->str, entry->len);
        } else {
            jg_args_str(a, "0");
            jg_args_str(a, "");
        }
        jg_args_int(a, req->cfg->retention);
    }
}

/* The job object from submit.lua's reply rep (not NULL, not NOSCRIPT) into req->body. Returns
 * JG_OK with *how ("new", "cached", "coalesced", ...), *job_id (st->id, or the coalesced job's,
 * pointing into rep) and *new_type (a type new to the queue), or JG_ERR (500). */
static int script_answer(jg_req_t *req, submit_state_t *st, const redisReply *rep,
                         const char **how, const char **job_id, int *new_type)
{
    const jg_buf_t *parts = &st->shown_parts;
    long long shown;   /* the job object's version; -1: not a job object */
    *job_id = st->id;
    if (rep->type == REDIS_REPLY_INTEGER && parts->len > 0 && rep->integer != 0) {
        /* a new job queued at once: its created_at in ms (negative: a type new to the queue),
         * joined into the object rendered here, as the script stored it */
        char at[32];
        jg_time_format(rep->integer < 0 ? -rep->integer : rep->integer, at);
        jg_buf_append(&req->body, parts->data, st->cut);
        jg_buf_putc(&req->body, '"');
        jg_buf_puts(&req->body, at);
        jg_buf_putc(&req->body, '"');
        jg_buf_append(&req->body, parts->data + st->cut + AT_LEN, parts->len - st->cut - AT_LEN);
        *new_type = rep->integer < 0;
        *how = "new";
        shown = 1;
    } else {   /* {new_type, job object, how[, id of the coalesced job]} */
        int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
                 rep->element[2]->type == REDIS_REPLY_STRING;
        *how = ok ? rep->element[2]->str : "";
        int coalesced = strcmp(*how, "coalesced") == 0;
        if (coalesced)
            *job_id = rep->elements == 4 && rep->element[3]->type == REDIS_REPLY_STRING &&
                              jg_valid_job_id(rep->element[3]->str)
                          ? rep->element[3]->str
                          : NULL;
        shown = ok && *job_id ? jg_job_json_text(rep->element[1],
                                                 coalesced ? JG_JOB_COALESCED : 0, &req->body)
                              : -1;
        *new_type = ok && rep->element[0]->type == REDIS_REPLY_INTEGER &&
                    rep->element[0]->integer == 1;
    }
    return shown < 0 ? jg_fail_redis(req, rep) : JG_OK;
}

/* A type new to the queue: the queue may be new too (P:queues is not in its slot). */
static void register_queue(jg_req_t *req, const char *queue)
{
    redisReply *r2 = jg_redis_cmd(req->redis, "SADD %s:queues %s", req->cfg->key_prefix, queue);
    if (r2)
        freeReplyObject(r2);
}

/* The answer's status, Location and log line, once the job is there. */
static void submitted(jg_req_t *req, const submit_state_t *st, const char *how,
                      const char *job_id)
{
    int coalesced = strcmp(how, "coalesced") == 0;
    req->status = strcmp(how, "cached") == 0 ? 200 : 202;
    location(req, job_id);
    jg_log_info(coalesced ? "job coalesced" : req->status == 200 ? "job submitted, cached result"
                                                                 : "job submitted",
                "job", job_id, "queue", st->s.queue, "type", st->s.k.type, NULL);
}

/* submit.lua (call), with the result cache lookup's count (count_hit 0 or 1; -1: none) appended
 * before it and the Idempotency-Key's record (idem, naming job_id; NULL: none) after it: one
 * round trip for the three on one Redis (their keys lie in different slots, so they cannot be one
 * script; on a cluster the record is sent once the script has answered, see jg_redis_barrier).
 * *set gets the record's reply (the caller frees it). Returns the script's reply, or NULL when
 * Redis is unreachable. On NOSCRIPT the script runs again alone (jg_script_run loads it). */
static redisReply *run_submit(jg_req_t *req, jg_script_call_t *call, int count_hit,
                              const char *idem, const char *job_id, redisReply **set)
{
    jg_redis_t *r = req->redis;
    *set = NULL;
    int appended = 0, failed = 0;
    if (count_hit >= 0)
        failed = jg_cache_count_append(r, req->cfg, count_hit), appended += !failed;
    if (!failed)
        failed = jg_script_append(r, call), appended += !failed;
    if (!failed && idem) {
        jg_redis_barrier(r);   /* the record never names a job not yet made (another slot) */
        failed = jg_redis_append(r, "SET %s %s EX %d", idem, job_id, IDEM_TTL_S);
    }
    if (failed) {
        if (appended)   /* replies of the appended part must not stay pending */
            jg_redis_drop(r, "cannot pipeline");
        return NULL;
    }
    if (count_hit >= 0)
        jg_cache_count_reply(jg_redis_get_reply(r));
    redisReply *rep = jg_redis_get_reply(r);
    if (idem)
        *set = jg_redis_get_reply(r);
    if (jg_redis_is_noscript(rep)) {
        freeReplyObject(rep);
        rep = jg_script_run(r, call);
    }
    return rep;
}

/* A submit whose body passed (parse), from its job id on: the Idempotency-Key (idem, "" when
 * none), the result cache, the script, the answer. */
static int submit_parsed(jg_req_t *req, submit_state_t *st, const char *idem)
{
    redisReply *rep = NULL, *entry = NULL, *set = NULL;
    int rc = JG_ERR, idem_taken = 0;
    if (new_id(req, st) != JG_OK)
        goto out;
    if (idem[0]) {
        /* one command decides among racing requests with this key and tells a repeat the job:
         * the one whose SET NX finds the key free creates the job; the others get its value */
        rep = jg_redis_cmd(req->redis, "SET %s " IDEM_PENDING "%s NX GET PX %d", idem, st->id,
                           IDEM_PENDING_MS);
        if (rep == NULL) {
            jg_fail_unavailable(req);
            goto out;
        }
        if (rep->type != REDIS_REPLY_NIL) {   /* taken: answer its job */
            rc = idem_answer_reply(req, rep);
            rep = NULL;
            goto out;
        }
        freeReplyObject(rep);
        rep = NULL;
        idem_taken = 1;
    }
    if (st->s.cache) {   /* a cached result: the script creates the job done with it */
        char k_entry[JG_KEY_MAX];
        jg_key_cache(req->cfg, st->cache_key, k_entry);
        entry = jg_redis_cmd(req->redis, "GET %s", k_entry);
        if (entry == NULL) {
            jg_fail_unavailable(req);
            goto out;
        }
        if (entry->type != REDIS_REPLY_STRING && entry->type != REDIS_REPLY_NIL) {
            jg_fail_redis(req, entry);
            goto out;
        }
    }
    build(req, st, entry);
    int hit = entry && entry->type == REDIS_REPLY_STRING;
    /* Without cache the job made is this id, so the Idempotency-Key's record goes in the same
     * round trip; with it the script may answer another job (coalesced): recorded after. */
    int set_now = idem_taken && !st->s.cache;
    rep = run_submit(req, &st->call, st->s.cache ? hit : -1, set_now ? idem : NULL, st->id, &set);
    if (rep == NULL) {
        /* the job may exist (a lost answer, or a write the replicas did not acknowledge): the
         * pending marker stays, so that a repeat answers that job, never makes a second one */
        idem_taken = 0;
        jg_fail_unavailable(req);
        goto out;
    }
    const char *how, *job_id;
    int new_type;
    if (script_answer(req, st, rep, &how, &job_id, &new_type) != JG_OK)
        goto out;   /* idem_taken: the record is deleted there (no job was made) */
    if (new_type)
        register_queue(req, st->s.queue);
    if (idem_taken) {
        /* the job exists: the key names it for 24 h (a coalesced submit: the other job) */
        if (!set_now)
            set = jg_redis_cmd(req->redis, "SET %s %s EX %d", idem, job_id, IDEM_TTL_S);
        if (set == NULL || set->type == REDIS_REPLY_ERROR)
            /* the pending marker then expires: a later repeat makes a new job */
            jg_log_warn("Idempotency-Key not recorded", "job", job_id, "error",
                        set ? set->str : "Redis unreachable", NULL);
    }
    idem_taken = 0;   /* the key names a job now: keep it */
    submitted(req, st, how, job_id);
    rc = JG_OK;
out:
    if (idem_taken) {   /* no job was made: let a repeat try again */
        redisReply *r2 = jg_redis_cmd(req->redis, "DEL %s", idem);
        if (r2)
            freeReplyObject(r2);
    }
    if (set)
        freeReplyObject(set);
    if (rep)
        freeReplyObject(rep);
    if (entry)
        freeReplyObject(entry);
    return rc;
}

/* POST /jobs -> 202 job + Location | 200 cached | 202 coalesced | 200 repeat */
static int submit(jg_req_t *req)
{
    char idem[JG_KEY_MAX] = "";
    const char *ik = jg_req_param(req, "HTTP_IDEMPOTENCY_KEY");
    if (ik) {
        if (!jg_valid_idempotency_key(ik))
            return jg_fail(req, 400, "invalid_field",
                           "Idempotency-Key must be 1 to 128 visible ASCII characters");
        jg_key_idempotency(req->cfg, req->caller, ik, idem);
    }
    submit_state_t st;
    state_init(&st);
    int rc;
    if (parse(req, &st) != JG_OK)   /* a repeat gets the first job, whatever its body says */
        rc = idem[0] ? idem_or_error(req, idem) : JG_ERR;
    else
        rc = submit_parsed(req, &st, idem);
    state_free(&st);
    return rc;
}

/* POST /jobs/{id}/cancel -> 200 | 202 | 404 | 409 */
static int cancel(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    char k_job[JG_KEY_MAX], k_log[JG_KEY_MAX], events[JG_KEY_MAX], tagged[JG_KEY_MAX];
    jg_key_job(req->cfg, id, k_job);
    jg_key_log(req->cfg, id, k_log);
    jg_chan_events(req->cfg, id, events);
    jg_key_tagged(req->cfg, id, tagged);
    jg_args_t a;
    jg_args_init(&a);
    jg_args_str(&a, k_job);
    jg_args_str(&a, k_log);
    jg_args_str(&a, id);
    jg_args_printf(&a, "%ld", req->cfg->retention);
    jg_args_printf(&a, "%ld", req->cfg->log_max);
    jg_args_str(&a, events);
    jg_args_str(&a, tagged);
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
        const char *st = rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
                             ? rep->element[1]->str
                             : NULL;
        jg_fail(req, 409, "conflict", "the job is already %s", st ? st : "finished");
    } else if (rep->elements == 2 && jg_job_json_text(rep->element[1], 0, &req->body) >= 0) {
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

/* --- submits that arrive together (server.h, jg_batch_ops_t) ---
 * A plain submit (no Idempotency-Key, no cache: true) is checked and its submit.lua call built
 * in prepare; the batch's calls go to Redis in one write, and finish answers each from its own
 * reply, with the bytes submit() would send. What needs Redis calls of its own goes to after():
 * a cancel or an Idempotency-Key (submit() as a lone request), cache: true (its cache entry is
 * read first: submit_parsed, from the body parsed here), NOSCRIPT (nothing ran: the same call
 * alone, which loads the script) and a type new to the queue (the queue registry's SADD). A
 * call whose reply was lost is 503, never sent again: it may have run. */
#define TODO_USUAL    0   /* not prepared: handle() */
#define TODO_CACHE    1   /* parsed, cache: true */
#define TODO_NOSCRIPT 2   /* sent, NOSCRIPT */
#define TODO_QUEUES   3   /* answered; the type is new to the queue */

/* A slot's request answered: what it parsed is let go (the body's memory too, when large). */
static int done(submit_state_t *st, int rc)
{
    state_clear(st);
    return rc;
}

static int batch_prepare(jg_req_t *req, jg_batch_cmd_t *cmd)
{
    submit_state_t *st = cmd->data;
    if (st == NULL) {
        if ((st = malloc(sizeof *st)) == NULL)
            abort();
        state_init(st);
        cmd->data = st;
    } else {
        state_clear(st);
    }
    st->todo = TODO_USUAL;
    if (req->route->id != JG_ROUTE_SUBMIT || jg_req_param(req, "HTTP_IDEMPOTENCY_KEY"))
        return JG_DECLINE;
    if (parse(req, st) != JG_OK)
        return done(st, JG_ERR);
    if (st->s.cache) {
        st->todo = TODO_CACHE;
        return JG_DECLINE;
    }
    if (new_id(req, st) != JG_OK)
        return done(st, JG_ERR);
    build(req, st, NULL);
    cmd->script = &st->call;
    return JG_OK;
}

/* The answer from the script's reply rep (not NULL, not NOSCRIPT). */
static int batch_answer(jg_req_t *req, submit_state_t *st, const redisReply *rep, int *new_type)
{
    const char *how, *job_id;
    if (script_answer(req, st, rep, &how, &job_id, new_type) != JG_OK)
        return JG_ERR;
    submitted(req, st, how, job_id);
    return JG_OK;
}

static int batch_finish(jg_req_t *req, jg_batch_cmd_t *cmd, const redisReply *rep)
{
    submit_state_t *st = cmd->data;
    int new_type;
    if (rep == NULL)   /* the job may exist (a lost answer): as submit(), 503 */
        return done(st, jg_fail_unavailable(req));
    if (jg_redis_is_noscript(rep)) {
        st->todo = TODO_NOSCRIPT;
        return JG_DECLINE;
    }
    int rc = batch_answer(req, st, rep, &new_type);
    if (rc == JG_OK && new_type) {
        st->todo = TODO_QUEUES;
        return JG_DECLINE;
    }
    return done(st, rc);
}

static int batch_after(jg_req_t *req, jg_batch_cmd_t *cmd)
{
    submit_state_t *st = cmd->data;
    int rc, new_type = 1;
    if (st == NULL || st->todo == TODO_USUAL)
        return handle(req);
    if (st->todo == TODO_CACHE)
        return done(st, submit_parsed(req, st, ""));
    if (st->todo == TODO_NOSCRIPT) {
        redisReply *rep = jg_script_run(req->redis, &st->call);
        if (rep == NULL)
            return done(st, jg_fail_unavailable(req));
        rc = batch_answer(req, st, rep, &new_type);
        freeReplyObject(rep);
    } else {
        rc = JG_OK;   /* TODO_QUEUES: answered in finish */
    }
    if (rc == JG_OK && new_type)
        register_queue(req, st->s.queue);
    return done(st, rc);
}

/* A submit that can ride another's submit.lua call: queued at once with the object rendered here
 * (no delay, no cache_version, no cache: 14 arguments). */
static int joinable(const submit_state_t *st)
{
    return st->todo == TODO_USUAL && st->shown_parts.len > 0 && st->call.args.argc == ARGS_PLAIN;
}

/* Folds cmd's submit into lead's call when both are plain submits of one queue and type whose
 * objects were rendered in the same second: submit.lua then makes both jobs (its further jobs,
 * 8 arguments each: docs/redis.md), for about half the Redis work of two calls, and answers
 * both with their created_at. */
static int batch_join(jg_batch_cmd_t *lead, jg_batch_cmd_t *cmd)
{
    submit_state_t *l = lead->data, *m = cmd->data;
    const jg_args_t *la = &l->call.args, *ma = &m->call.args;
    if (!joinable(l) || !joinable(m) || strcmp(l->s.queue, m->s.queue) != 0 ||
        strcmp(l->s.k.type, m->s.k.type) != 0 || ma->lens[ARG_SECOND] != la->lens[ARG_SECOND] ||
        memcmp(ma->argv[ARG_SECOND], la->argv[ARG_SECOND], la->lens[ARG_SECOND]) != 0 ||
        l->group.args.argc + 8 > JG_ARGS_MAX)
        return 0;
    jg_args_t *g = &l->group.args;
    if (lead->script != &l->group) {   /* its first: the group starts as lead's own call */
        l->group.name = l->call.name;
        l->group.nkeys = l->call.nkeys;
        jg_args_init(g);
        for (int i = 0; i < la->argc; i++)
            jg_args_add(g, la->argv[i], la->lens[i]);
        lead->script = &l->group;
    }
    /* id, payload, priority, max_attempts, timeout_ms (ARG_PAYLOAD..+3), cache_key, the object's
     * text before and after created_at's ms (ARG_SECOND-3..-1) */
    static const int further[] = {ARG_ID, ARG_PAYLOAD, ARG_PAYLOAD + 1, ARG_PAYLOAD + 2,
                                  ARG_PAYLOAD + 3, ARG_SECOND - 3, ARG_SECOND - 2, ARG_SECOND - 1};
    for (size_t i = 0; i < JG_ARRAY_LEN(further); i++)
        jg_args_add(g, ma->argv[further[i]], ma->lens[further[i]]);
    return 1;
}

static void batch_free(void *data)
{
    state_free(data);
    free(data);
}

static const jg_batch_ops_t batch_ops = {batch_prepare, batch_finish, batch_after, batch_free,
                                         batch_join};

static const jg_program_t program = {"jobgate-submit", "submit", handle, NULL, NULL};

int main(int argc, char **argv)
{
    jg_serve_batch(&batch_ops);
    jg_serve_threads(JG_THREADS_PER_CPU);   /* batches grow with fewer threads: server.h */
    return jg_serve(&program, argc, argv);
}
