/* status.c — jobgate-status, read one job (contract section 4):
 *   GET|HEAD /jobs/{id}[?wait=S][&version=V]  -> 200 job + ETag | 304 | 404 | 400 | 503
 *
 * A long poll (wait > 0 and the client already has the current version) parks the request:
 * the event loop holds it, keyed by job id, until a `job <id> <version>` message on
 * the events channel of the job's queue (<prefix>:{<tag>}:events, subscribed while a long poll
 * of that queue is parked: jg_loop_watch) shows a newer version (then one read answers every
 * waiter of that job), or until its deadline (304). No request thread waits and nothing polls
 * Redis. */
#include <stdlib.h>
#include <string.h>

#include "jg.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "server.h"
#include "timefmt.h"
#include "waitlist.h"

/* A parked long poll. */
typedef struct waiter {
    jg_waiter_t w;            /* id, deadline, seq: see waitlist.h */
    long long version;        /* what the client has */
    int64_t until;            /* the end of its wait */
    int retry;                /* the loop's read failed: the deadline is the retry */
    int head;
    char *headers;            /* common headers, copied when parked */
} waiter_t;

static jg_waitlist_t *waiting;   /* loop thread only */

#define RETRY_MS 500   /* a failed read of the loop is tried again after this */

/* One rendered answer, kept while a job's waiters are answered: waiters with the same common
 * headers (the same CORS origin, or none) and method get the same bytes, rendered once. */
typedef struct rendered {
    char *headers;            /* a copy of the waiters' headers it was rendered with; NULL: none */
    int head;
    jg_buf_t out;
} rendered_t;

/* Answers w and ends it: 200 with body, or 304 (body NULL). w is freed later, by on_gone.
 * cache (may be NULL) holds the answer of the previous waiter of the same change. */
static void answer(jg_loop_t *loop, waiter_t *w, const char *body, size_t len, long long version,
                   rendered_t *cache)
{
    jg_waitlist_remove(waiting, &w->w);
    rendered_t own = {0};
    rendered_t *r = cache ? cache : &own;
    if (r->headers == NULL || r->head != w->head || strcmp(r->headers, w->headers) != 0) {
        jg_buf_t headers = JG_BUF_INIT;
        jg_buf_printf(&headers, "ETag: \"%lld\"\r\n", version);
        jg_buf_puts(&headers, w->headers);
        jg_buf_reset(&r->out);
        jg_resp_render_parts(&r->out, body ? 200 : 304, headers.data, "application/json",
                             "no-store", body, len, w->head ? JG_RENDER_HEAD : 0);
        jg_buf_free(&headers);
        free(r->headers);
        r->headers = strdup(w->headers);
        if (r->headers == NULL)
            abort();
        r->head = w->head;
    }
    jg_parked_answer(loop, w->w.parked, r->out.data, r->out.len);
    if (r == &own) {
        free(own.headers);
        jg_buf_free(&own.out);
    }
}

/* Reads job id once and answers every waiter of it whose version differs. */
static void wake_job(jg_loop_t *loop, const char *id)
{
    jg_waiter_t **due;
    size_t n = jg_waitlist_of(waiting, id, &due);
    if (n == 0)
        return;
    redisReply *rep = jg_job_read(jg_loop_config(loop), jg_loop_redis(loop), id);
    if (rep == NULL) {   /* Redis is away: each tries again soon (before its wait ends) */
        int64_t at = jg_monotonic_ms() + RETRY_MS;
        for (size_t i = 0; i < n; i++) {
            waiter_t *w = (waiter_t *)due[i];
            w->retry = 1;
            if (w->w.deadline > at)
                jg_waitlist_set_deadline(waiting, &w->w, at);
        }
    } else {
        jg_buf_t body = JG_BUF_INIT;
        long long version = jg_job_json_hmget(rep, 0, &body);
        rendered_t cache = {0};
        for (size_t i = 0; i < n; i++) {
            waiter_t *w = (waiter_t *)due[i];
            if (version >= 0 && version != w->version)
                answer(loop, w, body.data, body.len, version, &cache);
        }
        free(cache.headers);
        jg_buf_free(&cache.out);
        jg_buf_free(&body);
        freeReplyObject(rep);
    }
    free(due);
}

/* "job <id> <version>" on <prefix>:{<tag>}:events */
static void on_message(jg_loop_t *loop, const char *msg, size_t len)
{
    char id[JG_ID_LEN + 1];
    const char *rest;
    if (jg_event_parse(msg, len, id, &rest) != 3 || memcmp(msg, "job", 3) != 0)
        return;
    jg_waitlist_note(waiting, jg_loop_message_seq(loop), id);
    wake_job(loop, id);
}

static void on_parked(jg_loop_t *loop, jg_parked_t *p)
{
    waiter_t *w = p->data;
    w->w.parked = p;
    jg_waitlist_add(waiting, &w->w);
    jg_loop_watch(loop, w->w.id);
    if (jg_waitlist_missed(waiting, &w->w, jg_loop_message_seq(loop)))
        wake_job(loop, w->w.id);   /* it changed between the handler's read and now */
}

static int64_t on_timers(jg_loop_t *loop, int64_t now)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_due(waiting, now)) != NULL) {
        waiter_t *x = (waiter_t *)w;
        if (x->retry && now < x->until) {
            x->retry = 0;
            jg_waitlist_set_deadline(waiting, w, x->until);
            wake_job(loop, w->id);   /* may set the retry again */
        } else {
            answer(loop, x, NULL, 0, x->version, NULL);
        }
    }
    return jg_waitlist_next_deadline(waiting);
}

static void free_waiter(void *data)
{
    waiter_t *w = data;
    free(w->headers);
    free(w);
}

static void on_gone(jg_loop_t *loop, jg_parked_t *p)
{
    jg_loop_unwatch(loop, ((waiter_t *)p->data)->w.id);
    jg_waitlist_remove(waiting, &((waiter_t *)p->data)->w);
    free_waiter(p->data);
}

/* The events channel of tag's queue was (re)subscribed: messages may have been lost, look at
 * every waited job of that queue. The resync is recorded too, so that a waiter whose handler
 * read before it and that parks after it looks again (jg_waitlist_missed). */
static void on_resync(jg_loop_t *loop, const char *tag)
{
    jg_waitlist_note_resync(waiting, jg_loop_message_seq(loop));
    jg_waitlist_each_id(waiting, loop, tag, wake_job);
}

/* SIGTERM: every long poll gets its answer now (304: nothing changed yet). */
static void on_shutdown(jg_loop_t *loop)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_any(waiting)) != NULL)
        answer(loop, (waiter_t *)w, NULL, 0, ((waiter_t *)w)->version, NULL);
}

static void init(jg_loop_t *loop)
{
    (void)loop;
    waiting = jg_waitlist_new();
}

static const jg_park_ops_t park_ops = {
    1, on_parked, on_message, on_resync, on_timers, on_gone, on_shutdown, free_waiter, NULL,
};

/* --- the request side --- */

/* Does an If-None-Match list ("7", W/"7", "3", "7" or *) name version? */
static int etag_matches(const char *inm, long long version)
{
    if (inm == NULL)
        return 0;
    for (const char *p = inm; *p;) {
        p += strspn(p, " \t,");
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p != '"')
            return 0;
        const char *end = strchr(p + 1, '"');
        if (end == NULL)
            return 0;
        char digits[24];
        size_t n = (size_t)(end - p - 1);
        long v;
        if (n > 0 && n < sizeof digits) {
            memcpy(digits, p + 1, n);
            digits[n] = '\0';
            if (jg_parse_long(digits, 0, 1L << 62, &v) == 0 && v == version)
                return 1;
        }
        p = end + 1;
    }
    return 0;
}

/* The id and query of a read: JG_OK with wait and given (-1: no version=), or JG_ERR. */
static int check_read(jg_req_t *req, double *wait, long *given)
{
    char arg[32];
    *wait = 0;
    *given = -1;
    if (!jg_valid_job_id(req->param))
        return jg_fail(req, 404, "not_found", "no such job");
    int q = jg_query_get(req->query, "wait", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_double(arg, 0, 60, wait)))
        return jg_fail(req, 400, "invalid_field", "wait must be a number of seconds, 0 to 60");
    q = jg_query_get(req->query, "version", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_long(arg, 0, 1L << 62, given)))
        return jg_fail(req, 400, "invalid_field", "version must be a non-negative integer");
    return JG_OK;
}

#define CURRENT 3   /* answer_read: the client has this version (304, or a long poll) */

/* The answer from rep, the reply of jg_job_read (NULL: Redis away): JG_OK with the job (200),
 * JG_ERR, or CURRENT with *version and the ETag set. */
static int answer_read(jg_req_t *req, const redisReply *rep, long given, long long *version)
{
    if (rep == NULL)
        return jg_fail_unavailable(req);
    if (rep->type != REDIS_REPLY_ARRAY)
        return jg_fail_redis(req, rep);
    *version = jg_job_json_hmget(rep, 0, &req->body);
    if (*version < 0)
        return jg_fail(req, 404, "not_found", "no such job");
    char num[24];   /* the ETag header without printf: this runs for every read */
    jg_buf_puts(&req->headers, "ETag: \"");
    jg_buf_append(&req->headers, num, jg_fmt_int(*version, num));
    jg_buf_puts(&req->headers, "\"\r\n");
    int current = given >= 0 ? given == *version
                             : etag_matches(jg_req_param(req, "HTTP_IF_NONE_MATCH"), *version);
    return current ? CURRENT : JG_OK;
}

/* GET|HEAD /jobs/{id}[?wait=S][&version=V] */
static int handle(jg_req_t *req)
{
    const char *id = req->param;
    double wait;
    long given;
    if (check_read(req, &wait, &given) != JG_OK)
        return JG_ERR;

    jg_loop_t *loop = jg_server_loop();
    uint64_t seq = jg_loop_message_seq(loop);
    redisReply *rep = jg_job_read(req->cfg, req->redis, id);
    long long version = -1;
    int rc = answer_read(req, rep, given, &version);
    if (rep)
        freeReplyObject(rep);
    if (rc != CURRENT)
        return rc;
    if (wait <= 0) {
        req->status = 304;
        return JG_OK;
    }
    if (!jg_loop_can_park(loop))
        return jg_fail_unavailable(req);
    waiter_t *w = calloc(1, sizeof *w);
    jg_buf_t headers = JG_BUF_INIT;
    if (w == NULL)
        abort();
    memcpy(w->w.id, id, JG_ID_LEN + 1);
    w->w.deadline = w->until = jg_monotonic_ms() + (int64_t)(wait * 1000);
    w->w.seq = seq;
    w->version = version;
    w->head = req->head;
    jg_resp_common_headers(req, &headers);
    w->headers = jg_buf_steal(&headers);
    req->park_data = w;
    return JG_PARKED;
}

/* The same read with the other reads of a request thread's wake (server.h): a plain read (no
 * wait) sends its first HMGET with theirs; a long poll goes to handle(). */
static int batch_prepare(jg_req_t *req, jg_batch_cmd_t *cmd)
{
    double wait;
    long given;
    if (check_read(req, &wait, &given) != JG_OK)
        return JG_ERR;
    if (wait > 0)
        return JG_DECLINE;
    jg_job_read_cmd_t read;
    jg_job_read_cmd(req->cfg, req->param, &read);
    memcpy(cmd->key, read.key, sizeof read.key < sizeof cmd->key ? sizeof read.key
                                                                  : sizeof cmd->key);
    cmd->argc = 4;
    for (int i = 0; i < 4; i++)
        cmd->argv[i] = read.argv[i], cmd->lens[i] = read.lens[i];
    cmd->argv[1] = cmd->key;
    return JG_OK;
}

static int batch_finish(jg_req_t *req, jg_batch_cmd_t *cmd, const redisReply *rep)
{
    (void)cmd;
    double wait;
    long given;
    long long version;
    if (!jg_job_read_whole(rep))   /* a job that needs its fields read: handle() after */
        return JG_DECLINE;
    check_read(req, &wait, &given);   /* passed in batch_prepare */
    int rc = answer_read(req, rep, given, &version);
    if (rc == CURRENT)
        req->status = 304;
    return rc == CURRENT ? JG_OK : rc;
}

static const jg_batch_ops_t batch_ops = {batch_prepare, batch_finish, NULL, NULL, NULL};

static const jg_program_t program = {"jobgate-status", "status", handle, &park_ops, init};

int main(int argc, char **argv)
{
    jg_serve_batch(&batch_ops);
    jg_serve_threads(JG_THREADS_PER_CPU);   /* batches grow with fewer threads: server.h */
    return jg_serve(&program, argc, argv);
}
