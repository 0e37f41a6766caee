/* protocol.c — argument lists and calls of the worker's scripts (see protocol.h). */
#include "protocol.h"
#include "keys.h"
#include "log.h"
#include "scripts.h"

#include <stdlib.h>
#include <string.h>

static const char *const worker_scripts[] = {"claim", "log", "renew", "complete"};

void jg_proto_init(jg_proto_t *p, jg_redis_t *r, const jg_config_t *cfg,
                   const jg_worker_opts_t *opts)
{
    memset(p, 0, sizeof *p);
    p->r = r;
    p->cfg = cfg;
    p->opts = opts;
    for (int i = 0; i < opts->nqueues; i++)
        jg_queue_tag(opts->queues[i], p->tags[i]);
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

/* "P:{tag}:" of a queue (or of a job id, whose first 8 characters are its queue's tag). */
static void tag_prefix(jg_proto_t *p, jg_args_t *a, const char *tag)
{
    char key[JG_KEY_MAX];
    jg_key_tagged(p->cfg, tag, key);
    jg_args_printf(a, "%s", key);
}

/* The tag of one of the worker's queues, kept since the start: a SHA-256 per key was a sixth
 * of the worker's own instructions per job (callgrind). */
static const char *queue_tag(jg_proto_t *p, const char *queue, char tmp[JG_TAG_LEN + 1])
{
    for (int i = 0; i < p->opts->nqueues; i++)
        if (strcmp(p->opts->queues[i], queue) == 0)
            return p->tags[i];
    jg_queue_tag(queue, tmp);   /* not one of ours: cannot happen, but stays right */
    return tmp;
}

static void queue_key(jg_proto_t *p, jg_args_t *a, const char *queue, const char *what)
{
    char key[JG_KEY_MAX], tmp[JG_TAG_LEN + 1];
    jg_key_queue_tag(p->cfg, queue_tag(p, queue, tmp), queue, what, key);
    jg_args_printf(a, "%s", key);
}

static void job_keys(jg_proto_t *p, jg_args_t *a, const char *id)
{
    char key[JG_KEY_MAX];
    jg_key_job(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
    jg_key_log(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
}

static void global_name(jg_proto_t *p, jg_args_t *a, const char *fmt, const char *arg)
{
    char what[JG_KEY_MAX], key[JG_KEY_MAX];
    snprintf(what, sizeof what, fmt, arg);
    jg_key_global(p->cfg, what, key);
    jg_args_printf(a, "%s", key);
}

/* 800..1200: the ±20 % jitter of a retry delay */
static int jitter_permille(void) { return 800 + (int)(random() % 401); }

/* The ARGV tail that claim.lua (taking back lost leases) and complete.lua share, since both
 * may fail an attempt: retry base (ms), jitter, retention, log_max, the events channel and
 * the queue's wake channel. */
static void retry_args(jg_proto_t *p, jg_args_t *a, const char *queue)
{
    jg_args_printf(a, "%.0f", p->cfg->retry_base * 1000);
    jg_args_printf(a, "%d", jitter_permille());
    jg_args_printf(a, "%ld", p->cfg->retention);
    jg_args_printf(a, "%ld", p->cfg->log_max);
    global_name(p, a, "%s", "events");
    global_name(p, a, "wake:%s", queue);
}

int jg_proto_claim_args(jg_proto_t *p, jg_args_t *a, int qi, int want)
{
    const jg_worker_opts_t *o = p->opts;
    const char *queue = o->queues[qi];
    char tag[JG_TAG_LEN + 1], what[JG_KEY_MAX];
    queue_key(p, a, queue, "delayed");
    queue_key(p, a, queue, "running");
    queue_key(p, a, queue, "counts");
    for (int i = 0; i < o->ntypes; i++) {
        snprintf(what, sizeof what, "ready:%s", o->types[i].name);
        queue_key(p, a, queue, what);
    }
    int nkeys = a->argc;
    tag_prefix(p, a, queue_tag(p, queue, tag));
    jg_args_str(a, queue);
    jg_args_str(a, o->id);
    jg_args_printf(a, "%d", want);
    jg_args_printf(a, "%ld", p->cfg->lease * 1000);
    retry_args(p, a, queue);
    return nkeys;
}

int jg_proto_renew_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *id,
                        long long fence)
{
    char key[JG_KEY_MAX];
    jg_key_job(p->cfg, id, key);
    jg_args_printf(a, "%s", key);
    queue_key(p, a, queue, "running");
    jg_args_str(a, id);
    jg_args_printf(a, "%lld", fence);
    jg_args_printf(a, "%ld", p->cfg->lease * 1000);
    return 2;
}

int jg_proto_log_args(jg_proto_t *p, jg_args_t *a, const char *id, long long fence, int progress)
{
    job_keys(p, a, id);
    jg_args_str(a, id);
    jg_args_printf(a, "%lld", fence);
    jg_args_printf(a, "%ld", p->cfg->log_max);
    global_name(p, a, "%s", "events");
    if (progress >= 0)
        jg_args_printf(a, "%d", progress);
    else
        jg_args_str(a, "");
    return 2;
}

int jg_proto_complete_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *type,
                           const char *id, long long fence, const char *outcome,
                           const char *text, size_t text_len)
{
    char what[JG_KEY_MAX];
    job_keys(p, a, id);
    queue_key(p, a, queue, "running");
    queue_key(p, a, queue, "delayed");
    queue_key(p, a, queue, "counts");
    snprintf(what, sizeof what, "ready:%s", type);
    queue_key(p, a, queue, what);
    jg_args_str(a, id);
    jg_args_printf(a, "%lld", fence);
    jg_args_str(a, outcome);
    jg_args_add(a, text ? text : "", text ? text_len : 0);
    retry_args(p, a, queue);
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
