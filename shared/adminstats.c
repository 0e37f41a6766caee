/* adminstats.c — the figures of /stats, /queues and /metrics, read from Redis (see adminstats.h). */
#include "adminstats.h"
#include "cluster.h"
#include "keys.h"
#include "log.h"
#include "pipeline.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const jg_run_bucket_bounds[JG_RUN_BUCKETS] = {
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
    "120", "300", "600", "1800", "3600"};

#define CHUNK       16     /* queues per pipelined round trip */
#define MAX_WORKERS 1000   /* live workers shown */
#define MAX_QUEUES  10000

static long long num(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static int valid_worker_id(const char *s, size_t len)
{
    if (len == 0 || len > 100)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static jg_type_stats_t *type_of(jg_queue_stats_t *q, const char *name, size_t len)
{
    if (len == 0 || len > JG_NAME_MAX)
        return NULL;
    for (size_t i = 0; i < q->ntypes; i++)
        if (strlen(q->types[i].type) == len && memcmp(q->types[i].type, name, len) == 0)
            return &q->types[i];
    jg_type_stats_t *t = realloc(q->types, (q->ntypes + 1) * sizeof *t);
    if (t == NULL)
        abort();
    q->types = t;
    t = &q->types[q->ntypes++];
    memset(t, 0, sizeof *t);
    memcpy(t->type, name, len);
    t->type[len] = '\0';
    return t;
}

static int cmp_type(const void *a, const void *b)
{
    return strcmp(((const jg_type_stats_t *)a)->type, ((const jg_type_stats_t *)b)->type);
}

/* counts: "submitted:<type>" ...; runtime: "<type>:count", "<type>:sum_ms", "<type>:le:<b>". */
static void read_hashes(jg_queue_stats_t *q, const redisReply *counts, const redisReply *runtime)
{
    for (size_t i = 0; counts && i + 1 < counts->elements; i += 2) {
        const char *f = counts->element[i]->str, *c = strchr(f, ':');
        if (c == NULL)
            continue;
        jg_type_stats_t *t = type_of(q, c + 1, strlen(c + 1));
        long long v = num(counts->element[i + 1]);
        size_t k = (size_t)(c - f);
        if (t == NULL)
            continue;
        if (k == 9 && memcmp(f, "submitted", 9) == 0)
            t->submitted = v;
        else if (k == 4 && memcmp(f, "done", 4) == 0)
            t->done = v;
        else if (k == 6 && memcmp(f, "failed", 6) == 0)
            t->failed = v;
        else if (k == 9 && memcmp(f, "cancelled", 9) == 0)
            t->cancelled = v;
    }
    for (size_t i = 0; runtime && i + 1 < runtime->elements; i += 2) {
        const char *f = runtime->element[i]->str, *c = strchr(f, ':');
        if (c == NULL)
            continue;
        jg_type_stats_t *t = type_of(q, f, (size_t)(c - f));
        long long v = num(runtime->element[i + 1]);
        if (t == NULL)
            continue;
        if (strcmp(c + 1, "count") == 0)
            t->run_count = v;
        else if (strcmp(c + 1, "sum_ms") == 0)
            t->run_sum_ms = v;
        else if (strncmp(c + 1, "le:", 3) == 0) {
            const char *b = c + 4;
            if (strcmp(b, "+Inf") == 0)
                t->run_le[JG_RUN_BUCKETS] = v;
            for (int j = 0; j < JG_RUN_BUCKETS; j++)
                if (strcmp(b, jg_run_bucket_bounds[j]) == 0)
                    t->run_le[j] = v;
        }
    }
    if (q->ntypes > 1)
        qsort(q->types, q->ntypes, sizeof *q->types, cmp_type);
}

/* The two scripts of one queue: claim.lua with N = 0 (promote, take back expired leases; no
 * ready set, so nothing is claimed), then qstats.lua. */
static void claim_args(const jg_config_t *cfg, const char *queue, jg_args_t *a)
{
    char k[JG_KEY_MAX], tag[JG_TAG_LEN + 1];
    jg_key_queue(cfg, queue, "delayed", k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_key_queue(cfg, queue, "running", k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_key_queue(cfg, queue, "counts", k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_queue_tag(queue, tag);
    jg_key_tagged(cfg, tag, k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_args_str(a, queue);
    jg_args_str(a, "jobgate-admin");            /* worker id: unused when claiming nothing */
    jg_args_str(a, "0");
    jg_args_printf(a, "%ld", cfg->lease * 1000);
    jg_args_printf(a, "%.0f", cfg->retry_base * 1000);
    jg_args_printf(a, "%d", 800 + (int)(random() % 401));   /* ±20 % jitter, as workers draw */
    jg_args_printf(a, "%ld", cfg->retention);
    jg_args_printf(a, "%ld", cfg->log_max);
    jg_chan_events(cfg, tag, k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_chan_wake(cfg, queue, k);
    jg_args_printf(a, "%s", k);
}

static void qstats_args(const jg_config_t *cfg, const char *queue, jg_args_t *a)
{
    static const char *const what[] = {"delayed", "running", "counts", "types", "paused", "runtime"};
    char k[JG_KEY_MAX], tag[JG_TAG_LEN + 1];
    for (size_t i = 0; i < JG_ARRAY_LEN(what); i++) {
        jg_key_queue(cfg, queue, what[i], k);
        jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    }
    jg_key_queue(cfg, queue, "", k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_queue_tag(queue, tag);
    jg_key_tagged(cfg, tag, k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
}

/* Runs claim (N = 0) and qstats for queues[0..n), pipelined, into qs[0..n). */
static int read_chunk(const jg_config_t *cfg, jg_redis_t *r, jg_queue_stats_t *qs, size_t n)
{
    jg_script_call_t *calls = calloc(2 * n, sizeof *calls);
    redisReply **rep = calloc(2 * n, sizeof *rep);
    int rc = 0;
    if (calls == NULL || rep == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        calls[2 * i] = (jg_script_call_t){.name = "claim", .nkeys = 3};
        calls[2 * i + 1] = (jg_script_call_t){.name = "qstats", .nkeys = 6};
        claim_args(cfg, qs[i].name, &calls[2 * i].args);
        qstats_args(cfg, qs[i].name, &calls[2 * i + 1].args);
    }
    if (jg_scripts_pipelined(r, calls, 2 * n, rep)) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *c = rep[2 * i], *s = rep[2 * i + 1];
        if (c->type != REDIS_REPLY_ARRAY || s->type != REDIS_REPLY_ARRAY || s->elements != 7) {
            jg_log_error("unexpected reply of claim.lua or qstats.lua", "queue", qs[i].name,
                         "error", c->type == REDIS_REPLY_ERROR ? c->str
                                  : s->type == REDIS_REPLY_ERROR ? s->str : "shape", NULL);
            /* a resharding that outlasted the wait (cluster.h): unavailable, not a bug */
            rc = jg_cluster_is_tryagain(c) || jg_cluster_is_tryagain(s) ? -1 : -2;
            goto out;
        }
        qs[i].queued = num(s->element[0]);
        qs[i].running = num(s->element[1]);
        qs[i].delayed = num(s->element[2]);
        qs[i].paused = num(s->element[3]) != 0;
        qs[i].latency_ms = num(s->element[4]);
        read_hashes(&qs[i], s->element[5]->type == REDIS_REPLY_ARRAY ? s->element[5] : NULL,
                    s->element[6]->type == REDIS_REPLY_ARRAY ? s->element[6] : NULL);
    }
out:
    for (size_t i = 0; i < 2 * n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        jg_args_free(&calls[i].args);
    }
    free(rep);
    free(calls);
    return rc;
}

static int cmp_queue(const void *a, const void *b)
{
    return strcmp(((const jg_queue_stats_t *)a)->name, ((const jg_queue_stats_t *)b)->name);
}

static int read_queues(const jg_config_t *cfg, jg_redis_t *r, const char *queue, jg_stats_t *out)
{
    if (queue) {
        out->queues = calloc(1, sizeof *out->queues);
        if (out->queues == NULL)
            abort();
        snprintf(out->queues[0].name, sizeof out->queues[0].name, "%s", queue);
        out->nqueues = 1;
    } else {
        redisReply *m = jg_redis_cmd(r, "SMEMBERS %s:queues", cfg->key_prefix);
        if (m == NULL)
            return -1;
        if (m->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(m);
            return -2;
        }
        out->queues = calloc(m->elements ? m->elements : 1, sizeof *out->queues);
        if (out->queues == NULL)
            abort();
        for (size_t i = 0; i < m->elements && out->nqueues < MAX_QUEUES; i++) {
            const redisReply *e = m->element[i];
            if (e->type == REDIS_REPLY_STRING && jg_valid_name(e->str))   /* never a key from junk */
                snprintf(out->queues[out->nqueues++].name, JG_NAME_MAX + 1, "%s", e->str);
        }
        freeReplyObject(m);
        qsort(out->queues, out->nqueues, sizeof *out->queues, cmp_queue);
    }
    for (size_t i = 0; i < out->nqueues; i += CHUNK) {
        size_t n = out->nqueues - i < CHUNK ? out->nqueues - i : CHUNK;
        int rc = read_chunk(cfg, r, out->queues + i, n);
        if (rc)
            return rc;
    }
    return 0;
}

static void copy_field(char *dst, size_t cap, const redisReply *h, const char *name)
{
    dst[0] = '\0';
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0 &&
            h->element[i + 1]->type == REDIS_REPLY_STRING)
            snprintf(dst, cap, "%s", h->element[i + 1]->str);
}

static long long num_field(const redisReply *h, const char *name)
{
    char v[32];
    copy_field(v, sizeof v, h, name);
    return strtoll(v, NULL, 10);
}

/* The live workers: members of P:workers whose P:worker:<id> hash exists; the others (a worker
 * that died without its clean stop) are removed from P:workers. */
static int read_workers(const jg_config_t *cfg, jg_redis_t *r, jg_stats_t *out)
{
    int rc = 0;
    redisReply *ids = jg_redis_cmd(r, "ZREVRANGE %s:workers 0 %d", cfg->key_prefix,
                                   MAX_WORKERS - 1);
    redisReply **h = NULL;      /* h[i]: the HGETALL reply of ids[i] (NULL: not asked) */
    char *asked = NULL;         /* asked[i]: an HGETALL was sent for ids[i] */
    size_t n = 0;
    if (ids == NULL)
        return -1;
    if (ids->type != REDIS_REPLY_ARRAY) {
        rc = -2;
        goto out;
    }
    h = calloc(ids->elements ? ids->elements : 1, sizeof *h);
    asked = calloc(ids->elements ? ids->elements : 1, 1);
    if (h == NULL || asked == NULL)
        abort();
    for (size_t i = 0; i < ids->elements; i++) {
        const redisReply *e = ids->element[i];
        if (e->type != REDIS_REPLY_STRING || !valid_worker_id(e->str, e->len))
            continue;   /* never a key from junk */
        if (jg_redis_append(r, "HGETALL %s:worker:%s", cfg->key_prefix, e->str)) {
            if (n)
                jg_redis_drop(r, "cannot pipeline");
            rc = -1;
            goto out;
        }
        asked[i] = 1;
        n++;
    }
    for (size_t i = 0; i < ids->elements; i++)
        if (asked[i] && (h[i] = jg_redis_get_reply(r)) == NULL) {
            rc = -1;
            goto out;
        }
    out->workers = calloc(n ? n : 1, sizeof *out->workers);
    if (out->workers == NULL)
        abort();
    for (size_t i = 0; i < ids->elements; i++) {
        const redisReply *x = h[i];
        if (x == NULL)
            continue;
        if (x->type != REDIS_REPLY_ARRAY || x->elements == 0) {   /* its heartbeat expired */
            redisReply *z = jg_redis_cmd(r, "ZREM %s:workers %s", cfg->key_prefix,
                                         ids->element[i]->str);
            if (z)
                freeReplyObject(z);
            continue;
        }
        jg_worker_info_t *w = &out->workers[out->nworkers++];
        snprintf(w->id, sizeof w->id, "%s", ids->element[i]->str);
        copy_field(w->host, sizeof w->host, x, "host");
        copy_field(w->queues, sizeof w->queues, x, "queues");
        copy_field(w->types, sizeof w->types, x, "types");
        copy_field(w->status, sizeof w->status, x, "status");
        w->pid = num_field(x, "pid");
        w->concurrency = num_field(x, "concurrency");
        w->running = num_field(x, "running");
        w->last_seen = num_field(x, "last_seen");
        w->started_at = num_field(x, "started_at");
    }
out:
    for (size_t i = 0; h && i < ids->elements; i++)
        if (h[i])
            freeReplyObject(h[i]);
    free(h);
    free(asked);
    freeReplyObject(ids);
    return rc;
}

int jg_stats_read(const jg_config_t *cfg, jg_redis_t *redis, const char *queue, jg_stats_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = read_queues(cfg, redis, queue, out);
    if (rc || queue)
        return rc;
    if ((rc = read_workers(cfg, redis, out)) != 0)
        return rc;
    redisReply *c = jg_redis_cmd(redis, "HMGET %s:cache:stats hits misses", cfg->key_prefix);
    if (c == NULL)
        return -1;
    if (c->type == REDIS_REPLY_ARRAY && c->elements == 2) {
        out->cache_hits = num(c->element[0]);
        out->cache_misses = num(c->element[1]);
    } else {
        rc = -2;
    }
    freeReplyObject(c);
    return rc;
}

void jg_stats_free(jg_stats_t *s)
{
    for (size_t i = 0; i < s->nqueues; i++)
        free(s->queues[i].types);
    free(s->queues);
    free(s->workers);
    memset(s, 0, sizeof *s);
}

static void counts_json(jg_buf_t *out, long long sub, long long done, long long failed,
                        long long cancelled)
{
    jg_buf_printf(out, "\"submitted\":%lld,\"done\":%lld,\"failed\":%lld,\"cancelled\":%lld", sub,
                  done, failed, cancelled);
}

void jg_stats_queue_json(const jg_queue_stats_t *q, jg_buf_t *out)
{
    long long sub = 0, done = 0, failed = 0, cancelled = 0;
    for (size_t i = 0; i < q->ntypes; i++) {
        sub += q->types[i].submitted;
        done += q->types[i].done;
        failed += q->types[i].failed;
        cancelled += q->types[i].cancelled;
    }
    jg_buf_puts(out, "{\"name\":");
    jg_buf_json_string(out, q->name, strlen(q->name));
    jg_buf_printf(out, ",\"queued\":%lld,\"running\":%lld,\"delayed\":%lld,\"paused\":%s,"
                       "\"latency\":%.3f,",
                  q->queued, q->running, q->delayed, q->paused ? "true" : "false",
                  (double)q->latency_ms / 1000.0);
    counts_json(out, sub, done, failed, cancelled);
    jg_buf_puts(out, ",\"types\":{");
    for (size_t i = 0; i < q->ntypes; i++) {
        const jg_type_stats_t *t = &q->types[i];
        if (i)
            jg_buf_putc(out, ',');
        jg_buf_json_string(out, t->type, strlen(t->type));
        jg_buf_putc(out, ':');
        jg_buf_putc(out, '{');
        counts_json(out, t->submitted, t->done, t->failed, t->cancelled);
        jg_buf_putc(out, '}');
    }
    jg_buf_puts(out, "}}");
}

static void json_str_member(jg_buf_t *out, const char *name, const char *v)
{
    jg_buf_printf(out, "\"%s\":", name);
    jg_buf_json_string(out, v, strlen(v));
}

static void json_list_member(jg_buf_t *out, const char *name, const char *csv)
{
    jg_buf_printf(out, "\"%s\":[", name);
    const char *p = csv;
    int first = 1;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len) {
            if (!first)
                jg_buf_putc(out, ',');
            jg_buf_json_string(out, p, len);
            first = 0;
        }
        p += len + (c ? 1 : 0);
    }
    jg_buf_putc(out, ']');
}


static void time_member(jg_buf_t *out, const char *name, long long ms)
{
    char ts[32];
    if (ms <= 0) {
        jg_buf_printf(out, "\"%s\":null", name);
        return;
    }
    jg_time_format(ms, ts);
    jg_buf_printf(out, "\"%s\":\"%s\"", name, ts);
}

void jg_stats_json(const jg_stats_t *s, jg_buf_t *out)
{
    long long sub = 0, done = 0, failed = 0, cancelled = 0;
    jg_buf_puts(out, "{\"queues\":[");
    for (size_t i = 0; i < s->nqueues; i++) {
        if (i)
            jg_buf_putc(out, ',');
        jg_stats_queue_json(&s->queues[i], out);
        for (size_t j = 0; j < s->queues[i].ntypes; j++) {
            const jg_type_stats_t *t = &s->queues[i].types[j];
            sub += t->submitted, done += t->done, failed += t->failed, cancelled += t->cancelled;
        }
    }
    jg_buf_puts(out, "],\"totals\":{");
    counts_json(out, sub, done, failed, cancelled);
    jg_buf_puts(out, "},\"workers\":[");
    for (size_t i = 0; i < s->nworkers; i++) {
        const jg_worker_info_t *w = &s->workers[i];
        if (i)
            jg_buf_putc(out, ',');
        jg_buf_putc(out, '{');
        json_str_member(out, "id", w->id);
        jg_buf_putc(out, ',');
        json_str_member(out, "host", w->host);
        jg_buf_printf(out, ",\"pid\":%lld,", w->pid);
        json_list_member(out, "queues", w->queues);
        jg_buf_putc(out, ',');
        json_list_member(out, "types", w->types);
        jg_buf_printf(out, ",\"concurrency\":%lld,\"running\":%lld,", w->concurrency, w->running);
        json_str_member(out, "status", w->status);
        jg_buf_putc(out, ',');
        time_member(out, "started_at", w->started_at);
        jg_buf_putc(out, ',');
        time_member(out, "last_seen", w->last_seen);
        jg_buf_putc(out, '}');
    }
    jg_buf_printf(out, "],\"cache\":{\"hits\":%lld,\"misses\":%lld}}", s->cache_hits,
                  s->cache_misses);
}
