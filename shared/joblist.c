/* joblist.c — the job listing of GET /jobs (see joblist.h). */
#include "joblist.h"
#include "cluster.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK      16      /* queues per pipelined round trip */
#define MAX_QUEUES 10000

static const char *const statuses[] = {"queued", "running", "done", "failed", "cancelled"};

static int name_param(jg_req_t *req, const char *name, char *out, size_t cap)
{
    int r = jg_query_get(req->query, name, out, cap);
    if (r == 0) {
        out[0] = '\0';
        return JG_OK;
    }
    if (r < 0 || !jg_valid_name(out))
        return jg_fail(req, 400, "invalid_field",
                       "%s must match ^[a-z0-9][a-z0-9_.-]{0,63}$", name);
    return JG_OK;
}

int jg_list_parse(jg_req_t *req, jg_list_query_t *q)
{
    char v[128];
    memset(q, 0, sizeof *q);
    q->limit = JG_LIST_LIMIT_DEFAULT;
    if (name_param(req, "queue", q->queue, sizeof q->queue) ||
        name_param(req, "type", q->type, sizeof q->type))
        return JG_ERR;
    int r = jg_query_get(req->query, "status", v, sizeof v);
    if (r) {
        int ok = 0;
        for (size_t i = 0; r > 0 && i < JG_ARRAY_LEN(statuses); i++)
            ok |= strcmp(v, statuses[i]) == 0;
        if (!ok)
            return jg_fail(req, 400, "invalid_field",
                           "status must be one of queued, running, done, failed, cancelled");
        snprintf(q->status, sizeof q->status, "%.15s", v);
    }
    r = jg_query_get(req->query, "limit", v, sizeof v);
    if (r) {
        long n;
        if (r < 0 || jg_parse_long(v, 1, JG_LIST_LIMIT_MAX, &n))
            return jg_fail(req, 400, "invalid_field", "limit must be an integer from 1 to %d",
                           JG_LIST_LIMIT_MAX);
        q->limit = (int)n;
    }
    r = jg_query_get(req->query, "cursor", v, sizeof v);
    if (r) {
        /* "<created_at ms>-<job id>", as a previous page's "next" gave it */
        char *dash = r > 0 ? strchr(v, '-') : NULL;
        long ms;
        if (dash == NULL)
            return jg_fail(req, 400, "invalid_field", "cursor is not one this listing gave");
        *dash = '\0';
        if (jg_parse_long(v, 0, 999999999999999L, &ms) || !jg_valid_job_id(dash + 1))
            return jg_fail(req, 400, "invalid_field", "cursor is not one this listing gave");
        q->has_cursor = 1;
        q->cursor_ms = ms;
        snprintf(q->cursor_id, sizeof q->cursor_id, "%s", dash + 1);
    }
    return JG_OK;
}

/* A position in the listing's order: created_at descending, then id descending. */
typedef struct pos {
    long long ms;
    const char *id;
} pos_t;

/* > 0 when a comes before b in the listing (newer). */
static int pos_cmp(pos_t a, pos_t b)
{
    if (a.ms != b.ms)
        return a.ms > b.ms ? 1 : -1;
    return strcmp(a.id, b.id);
}

typedef struct entry {
    pos_t pos;
    const redisReply *values;
} entry_t;

static int entry_order(const void *a, const void *b)
{
    return -pos_cmp(((const entry_t *)a)->pos, ((const entry_t *)b)->pos);
}

static void list_args(const jg_config_t *cfg, const char *queue, const jg_list_query_t *q,
                      jg_args_t *a)
{
    char k[JG_KEY_MAX], tag[JG_TAG_LEN + 1];
    jg_key_queue(cfg, queue, "jobs", k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    jg_queue_tag(queue, tag);
    jg_key_tagged(cfg, tag, k);
    jg_args_printf(a, "%s", k);   /* k is reused: a copy */
    if (q->has_cursor)
        jg_args_printf(a, "%lld", q->cursor_ms);
    else
        jg_args_str(a, "+inf");
    jg_args_str(a, q->has_cursor ? q->cursor_id : "");
    jg_args_printf(a, "%d", q->limit);
    jg_args_str(a, q->type);
    jg_args_str(a, q->status);
    jg_args_printf(a, "%d", JG_LIST_SCAN_BUDGET);
    /* what is filtered on, and the job object as its `json` field keeps it (jg_job_json_text) */
    jg_args_str(a, "type");   /* the first must be set in every job: list.lua's test of one */
    jg_args_str(a, "status");
    jg_args_str(a, "json");
}

int jg_list_jobs(const jg_config_t *cfg, jg_redis_t *redis, const jg_list_query_t *q,
                 jg_buf_t *out)
{
    char (*queues)[JG_NAME_MAX + 1] = NULL;
    size_t nq = 0;
    redisReply *m = NULL, **rep = NULL;
    jg_script_call_t *calls = NULL;
    entry_t *entries = NULL;
    size_t nentries = 0, cap = 0;
    int rc = 0, have_bound = 0;
    pos_t bound = {0, ""};

    if (q->queue[0]) {
        queues = calloc(1, sizeof *queues);
        if (queues == NULL)
            abort();
        memcpy(queues[0], q->queue, sizeof queues[0]);
        nq = 1;
    } else {
        if ((m = jg_redis_cmd(redis, "SMEMBERS %s:queues", cfg->key_prefix)) == NULL)
            return -1;
        if (m->type != REDIS_REPLY_ARRAY) {
            rc = -2;
            goto out;
        }
        queues = calloc(m->elements ? m->elements : 1, sizeof *queues);
        if (queues == NULL)
            abort();
        for (size_t i = 0; i < m->elements && nq < MAX_QUEUES; i++)
            if (m->element[i]->type == REDIS_REPLY_STRING && jg_valid_name(m->element[i]->str))
                snprintf(queues[nq++], JG_NAME_MAX + 1, "%s", m->element[i]->str);
    }
    rep = calloc(nq ? nq : 1, sizeof *rep);
    calls = calloc(nq ? nq : 1, sizeof *calls);
    if (rep == NULL || calls == NULL)
        abort();
    for (size_t i = 0; i < nq; i++) {
        calls[i] = (jg_script_call_t){.name = "list", .nkeys = 1};
        list_args(cfg, queues[i], q, &calls[i].args);
    }
    for (size_t i = 0; i < nq; i += CHUNK) {
        size_t n = nq - i < CHUNK ? nq - i : CHUNK;
        if (jg_scripts_pipelined(redis, calls + i, n, rep + i)) {
            rc = -1;
            goto out;
        }
    }
    /* Each queue answered its newest matches after the cursor, and the last entry it looked at.
     * A queue that stopped early (limit or scan budget reached) only vouches for the entries
     * down to that one: the page ends at the newest such stop (the bound). */
    for (size_t i = 0; i < nq; i++) {
        const redisReply *r = rep[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || (r->elements - 3) % 3 != 0 ||
            r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING) {
            jg_log_error("unexpected reply of list.lua", "queue", queues[i], "error",
                         r->type == REDIS_REPLY_ERROR ? r->str : "shape", NULL);
            rc = jg_cluster_is_tryagain(r) ? -1 : -2;   /* a resharding outlasted the wait */
            goto out;
        }
        if (r->element[0]->integer == 0 && r->element[2]->str[0]) {
            pos_t p = {strtoll(r->element[1]->str, NULL, 10), r->element[2]->str};
            if (!have_bound || pos_cmp(p, bound) > 0)
                bound = p, have_bound = 1;
        }
        for (size_t j = 3; j + 2 < r->elements; j += 3) {
            if (r->element[j + 2]->type != REDIS_REPLY_ARRAY)
                continue;
            if (nentries == cap) {
                cap = cap ? 2 * cap : 64;
                entries = realloc(entries, cap * sizeof *entries);
                if (entries == NULL)
                    abort();
            }
            entries[nentries++] = (entry_t){{strtoll(r->element[j]->str, NULL, 10),
                                             r->element[j + 1]->str},
                                            r->element[j + 2]};
        }
    }
    if (nentries > 1)
        qsort(entries, nentries, sizeof *entries, entry_order);
    jg_buf_puts(out, "{\"jobs\":[");
    int taken = 0;
    pos_t last = {0, ""};
    for (size_t i = 0; i < nentries && taken < q->limit; i++) {
        if (have_bound && pos_cmp(entries[i].pos, bound) < 0)
            break;
        size_t before = out->len;
        if (taken)
            jg_buf_putc(out, ',');
        const redisReply *v = entries[i].values;
        long long shown = v->elements == 3 ? jg_job_json_text(v->element[2], 0, out) : -1;
        if (shown < 0) {   /* a job stored before `json` existed: its fields, in a read of its own */
            redisReply *old = jg_valid_job_id(entries[i].pos.id)
                                  ? jg_job_read(cfg, redis, entries[i].pos.id)
                                  : NULL;
            shown = old ? jg_job_json_hmget(old, 0, out) : -1;
            if (old)
                freeReplyObject(old);
        }
        if (shown < 0) {
            out->len = before;   /* cannot happen: list.lua skips jobs without a hash */
            out->data[before] = '\0';
            continue;
        }
        last = entries[i].pos;
        taken++;
    }
    jg_buf_puts(out, "],\"next\":");
    if (taken == q->limit)
        jg_buf_printf(out, "\"%lld-%s\"}", last.ms, last.id);
    else if (have_bound)
        jg_buf_printf(out, "\"%lld-%s\"}", bound.ms, bound.id);
    else
        jg_buf_puts(out, "null}");
out:
    for (size_t i = 0; rep && i < nq; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        jg_args_free(&calls[i].args);
    }
    free(entries);
    free(rep);
    free(calls);
    free(queues);
    if (m)
        freeReplyObject(m);
    return rc;
}
