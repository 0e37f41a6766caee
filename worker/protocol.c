/* protocol.c — argument lists and calls of the worker's scripts (see protocol.h). */
#include "protocol.h"
#include "keys.h"
#include "log.h"
#include "scripts.h"

#include <stdlib.h>
#include <string.h>

static const char *const worker_scripts[] = {"claim", "log", "renew", "complete", "giveback"};

void jg_proto_init(jg_proto_t *p, jg_redis_t *r, const jg_config_t *cfg,
                   const jg_worker_opts_t *opts)
{
    memset(p, 0, sizeof *p);
    p->r = r;
    p->cfg = cfg;
    p->opts = opts;
    for (int i = 0; i < opts->nqueues; i++) {
        jg_proto_queue_t *q = &p->q[i];
        const char *name = opts->queues[i];
        jg_queue_tag(name, q->tag);
        jg_key_tagged(cfg, q->tag, q->prefix);
        jg_key_queue_tag(cfg, q->tag, name, "delayed", q->delayed);
        jg_key_queue_tag(cfg, q->tag, name, "running", q->running);
        jg_key_queue_tag(cfg, q->tag, name, "counts", q->counts);
        jg_chan_wake(cfg, name, q->wake);
        jg_chan_events(cfg, q->tag, q->events);
    }
    snprintf(p->lease_ms, sizeof p->lease_ms, "%ld", cfg->lease * 1000);
    snprintf(p->retry_base_ms, sizeof p->retry_base_ms, "%.0f", cfg->retry_base * 1000);
    snprintf(p->retention, sizeof p->retention, "%ld", cfg->retention);
    snprintf(p->log_max, sizeof p->log_max, "%ld", cfg->log_max);
}

int jg_proto_ready(jg_proto_t *p)
{
    if (jg_redis_connect(p->r))
        return JG_ERR;
    if (p->loaded == p->r->ctx)
        return JG_OK;
    /* one round trip: every script, pipelined */
    for (size_t i = 0; i < JG_ARRAY_LEN(worker_scripts); i++)
        if (jg_redis_append(p->r, "SCRIPT LOAD %s", jg_script(worker_scripts[i])->source))
            return JG_ERR;
    int rc = JG_OK;
    for (size_t i = 0; i < JG_ARRAY_LEN(worker_scripts); i++) {
        redisReply *rep = jg_redis_get_reply(p->r);
        if (rep == NULL)
            return JG_ERR;
        if (rep->type == REDIS_REPLY_ERROR) {
            jg_log_error("cannot load script", "script", worker_scripts[i], "error", rep->str,
                         NULL);
            rc = JG_ERR;
        }
        freeReplyObject(rep);
    }
    if (rc == JG_OK)
        p->loaded = p->r->ctx;
    return rc;
}

int jg_proto_append(jg_proto_t *p, const char *script, int nkeys, const jg_args_t *a)
{
    const char *argv[JG_ARGS_MAX + 3];
    size_t lens[JG_ARGS_MAX + 3];
    char nk[16];
    const jg_script_t *s = jg_script(script);
    if (a->argc > JG_ARGS_MAX)
        abort();
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVALSHA"; lens[0] = 7;
    argv[1] = s->sha1;   lens[1] = strlen(s->sha1);
    argv[2] = nk;        lens[2] = strlen(nk);
    memcpy(argv + 3, a->argv, (size_t)a->argc * sizeof *argv);
    memcpy(lens + 3, a->lens, (size_t)a->argc * sizeof *lens);
    return jg_redis_append_argv(p->r, a->argc + 3, argv, lens) ? JG_ERR : JG_OK;
}

int jg_proto_noscript(jg_proto_t *p, const redisReply *rep)
{
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        p->loaded = NULL;
        return 1;
    }
    return 0;
}

/* One of the worker's queues, by name (the callers pass opts->queues[i] itself). */
static const jg_proto_queue_t *queue_of(const jg_proto_t *p, const char *queue)
{
    for (int i = 0; i < p->opts->nqueues; i++)
        if (p->opts->queues[i] == queue || strcmp(p->opts->queues[i], queue) == 0)
            return &p->q[i];
    abort();   /* a job is only ever claimed from, and completed in, one of our queues */
}

static void job_keys(jg_proto_t *p, jg_args_t *a, const char *id)
{
    char key[JG_KEY_MAX];
    jg_key_job(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
    jg_key_log(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
}

/* 800..1200: the ±20 % jitter of a retry delay */
static int jitter_permille(void) { return 800 + (int)(random() % 401); }

/* The ARGV tail that claim.lua (taking back lost leases) and complete.lua share, since both
 * may fail an attempt: retry base (ms), jitter, retention, log_max, the events channel and
 * the queue's wake channel. */
static void retry_args(jg_proto_t *p, jg_args_t *a, const jg_proto_queue_t *q)
{
    jg_args_str(a, p->retry_base_ms);
    jg_args_int(a, jitter_permille());
    jg_args_str(a, p->retention);
    jg_args_str(a, p->log_max);
    jg_args_str(a, q->events);
    jg_args_str(a, q->wake);
}

int jg_proto_claim_args(jg_proto_t *p, jg_args_t *a, int qi, int want)
{
    const jg_worker_opts_t *o = p->opts;
    const jg_proto_queue_t *q = &p->q[qi];
    char what[JG_KEY_MAX], key[JG_KEY_MAX];
    jg_args_str(a, q->delayed);
    jg_args_str(a, q->running);
    jg_args_str(a, q->counts);
    for (int i = 0; i < o->ntypes; i++) {
        snprintf(what, sizeof what, "ready:%s", o->types[i].name);
        jg_key_queue_tag(p->cfg, q->tag, o->queues[qi], what, key);
        jg_args_printf(a, "%s", key);
    }
    int nkeys = a->argc;
    jg_args_str(a, q->prefix);
    jg_args_str(a, o->queues[qi]);
    jg_args_str(a, o->id);
    jg_args_int(a, want);
    jg_args_str(a, p->lease_ms);
    retry_args(p, a, q);
    return nkeys;
}

int jg_proto_renew_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *id,
                        long long fence)
{
    char key[JG_KEY_MAX];
    jg_key_job(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
    jg_args_str(a, queue_of(p, queue)->running);
    jg_args_str(a, id);
    jg_args_int(a, fence);
    jg_args_str(a, p->lease_ms);
    return 2;
}

int jg_proto_log_args(jg_proto_t *p, jg_args_t *a, const char *id, long long fence, int progress,
                      long long first)
{
    job_keys(p, a, id);
    jg_args_str(a, id);
    jg_args_int(a, fence);
    jg_args_str(a, p->log_max);
    char events[JG_KEY_MAX];
    jg_chan_events(p->cfg, id, events);
    jg_args_str(a, events);
    if (progress >= 0)
        jg_args_int(a, progress);
    else
        jg_args_str(a, "");
    jg_args_int(a, first);
    return 2;
}

int jg_proto_giveback_args(jg_proto_t *p, jg_args_t *a, int qi)
{
    const jg_proto_queue_t *q = &p->q[qi];
    jg_args_str(a, q->running);
    jg_args_str(a, q->prefix);
    jg_args_str(a, p->opts->queues[qi]);
    jg_args_str(a, p->opts->id);
    jg_args_str(a, p->log_max);
    jg_args_str(a, q->events);
    jg_args_str(a, q->wake);
    return 1;
}

int jg_proto_complete_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *type,
                           const char *id, long long fence, const char *outcome,
                           const char *text, size_t text_len)
{
    const jg_proto_queue_t *q = queue_of(p, queue);
    char what[JG_KEY_MAX], key[JG_KEY_MAX];
    job_keys(p, a, id);
    jg_args_str(a, q->running);
    jg_args_str(a, q->delayed);
    jg_args_str(a, q->counts);
    snprintf(what, sizeof what, "ready:%s", type);
    jg_key_queue_tag(p->cfg, q->tag, queue, what, key);
    jg_args_printf(a, "%s", key);
    jg_args_str(a, id);
    jg_args_int(a, fence);
    jg_args_str(a, outcome);
    jg_args_add(a, text ? text : "", text ? text_len : 0);
    retry_args(p, a, q);
    return 6;
}

const char *jg_reply_str(const redisReply *rep, size_t i, char *tmp, size_t tmplen)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements)
        return "";
    const redisReply *e = rep->element[i];
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        return e->str;
    if (e->type == REDIS_REPLY_INTEGER) {
        snprintf(tmp, tmplen, "%lld", e->integer);
        return tmp;
    }
    return "";
}

long long jg_reply_int(const redisReply *rep, size_t i)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements)
        return 0;
    const redisReply *e = rep->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return 0;
}
