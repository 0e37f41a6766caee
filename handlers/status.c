/* status.c — jobgate-status, read one job (contract section 4):
 *   GET|HEAD /jobs/{id}[?wait=S][&version=V]  -> 200 job + ETag | 304 | 404 | 400 | 503
 *
 * A long poll (wait > 0 and the client already has the current version) parks the request:
 * the event loop holds it, keyed by job id, until a `job <id> <version>` message on
 * <prefix>:events shows a newer version (then one read answers every waiter of that job),
 * or until its deadline (304). No request thread waits and nothing polls Redis. */
#include <stdlib.h>
#include <string.h>

#include "jg.h"
#include "job.h"
#include "keys.h"
#include "log.h"
#include "server.h"
#include "timefmt.h"

/* A parked long poll. */
typedef struct waiter {
    char id[JG_ID_LEN + 1];
    long long version;        /* what the client has */
    int64_t deadline;         /* monotonic ms */
    int head;
    uint64_t seq;             /* loop message count before the job was read */
    char *headers;            /* common headers, copied when parked */
    jg_parked_t *parked;
    int linked;               /* in the id table and the deadline heap */
    size_t heap_at;
    struct waiter *prev, *next;   /* bucket chain */
} waiter_t;

/* --- the loop side: waiters by id, by deadline, and recent messages --- */

#define BUCKETS 16384
#define RECENT 4096

static waiter_t *buckets[BUCKETS];
static waiter_t **heap;
static size_t heap_len, heap_cap;
static struct { uint64_t seq; long long version; char id[JG_ID_LEN + 1]; } recent[RECENT];

static size_t bucket_of(const char *id)
{
    size_t h = 5381;
    for (; *id; id++)
        h = h * 33 + (unsigned char)*id;
    return h % BUCKETS;
}

static void heap_swap(size_t a, size_t b)
{
    waiter_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_at = a;
    heap[b]->heap_at = b;
}

static void heap_up(size_t i)
{
    while (i > 0 && heap[(i - 1) / 2]->deadline > heap[i]->deadline) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_len && heap[l]->deadline < heap[m]->deadline)
            m = l;
        if (r < heap_len && heap[r]->deadline < heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

static void link_waiter(waiter_t *w)
{
    size_t b = bucket_of(w->id);
    w->prev = NULL;
    w->next = buckets[b];
    if (buckets[b])
        buckets[b]->prev = w;
    buckets[b] = w;
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (heap == NULL)
            abort();
    }
    w->heap_at = heap_len;
    heap[heap_len++] = w;
    heap_up(w->heap_at);
    w->linked = 1;
}

static void unlink_waiter(waiter_t *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        buckets[bucket_of(w->id)] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    size_t i = w->heap_at;
    heap_len--;
    if (i != heap_len) {
        heap[i] = heap[heap_len];
        heap[i]->heap_at = i;
        heap_up(i);
        heap_down(heap[i]->heap_at);
    }
    w->linked = 0;
}

/* One round trip: the fields of the job object. NULL when Redis is unreachable. */
static redisReply *read_job(const jg_config_t *cfg, jg_redis_t *redis, const char *id)
{
    char key[JG_KEY_MAX];
    jg_key_job(cfg, id, key);
    jg_args_t a;
    jg_args_init(&a);
    jg_job_read_command(&a, key);
    redisReply *rep = jg_redis_cmdargv(redis, a.argc, a.argv, a.lens);
    jg_args_free(&a);
    return rep;
}

/* Answers w and ends it: 200 with body, or 304 (body NULL). w is freed (by gone()). */
static void answer(jg_loop_t *loop, waiter_t *w, const char *body, size_t len, long long version)
{
    unlink_waiter(w);
    jg_buf_t out = JG_BUF_INIT, headers = JG_BUF_INIT;
    jg_buf_printf(&headers, "ETag: \"%lld\"\r\n", version);
    jg_buf_puts(&headers, w->headers);
    jg_resp_render_parts(&out, body ? 200 : 304, headers.data, "application/json", "no-store",
                         body, len, w->head);
    jg_parked_send(loop, w->parked, out.data, out.len);
    jg_parked_end(loop, w->parked);
    jg_buf_free(&out);
    jg_buf_free(&headers);
}

/* Reads job id once and answers every waiter of it whose version differs. */
static void wake_job(jg_loop_t *loop, const char *id)
{
    size_t n = 0, cap = 0;
    waiter_t **due = NULL;
    for (waiter_t *w = buckets[bucket_of(id)]; w; w = w->next) {
        if (strcmp(w->id, id) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            due = realloc(due, cap * sizeof *due);
            if (due == NULL)
                abort();
        }
        due[n++] = w;
    }
    if (n == 0)
        return;
    redisReply *rep = read_job(jg_loop_config(loop), jg_loop_redis(loop), id);
    if (rep) {   /* else Redis is away: they time out, or the resync after it wakes them */
        jg_buf_t body = JG_BUF_INIT;
        long long version = jg_job_json_hmget(rep, 0, &body);
        for (size_t i = 0; i < n; i++)
            if (version >= 0 && version != due[i]->version)
                answer(loop, due[i], body.data, body.len, version);
        jg_buf_free(&body);
        freeReplyObject(rep);
    }
    free(due);
}

/* "job <id> <version>" */
static void on_message(jg_loop_t *loop, const char *msg, size_t len)
{
    (void)len;
    if (strncmp(msg, "job ", 4) != 0)
        return;
    const char *id = msg + 4;
    const char *sp = strchr(id, ' ');
    if (sp == NULL || sp - id != JG_ID_LEN)
        return;
    uint64_t seq = jg_loop_message_seq(loop);
    size_t slot = seq % RECENT;
    memcpy(recent[slot].id, id, JG_ID_LEN);
    recent[slot].id[JG_ID_LEN] = '\0';
    recent[slot].version = strtoll(sp + 1, NULL, 10);
    recent[slot].seq = seq;
    wake_job(loop, recent[slot].id);
}

static void on_parked(jg_loop_t *loop, jg_parked_t *p)
{
    waiter_t *w = p->data;
    w->parked = p;
    link_waiter(w);
    /* A change may have come between the handler's read and now. */
    uint64_t now_seq = jg_loop_message_seq(loop);
    int missed = now_seq - w->seq >= RECENT;
    for (uint64_t s = w->seq + 1; !missed && s <= now_seq; s++) {
        size_t slot = s % RECENT;
        if (recent[slot].seq == s && strcmp(recent[slot].id, w->id) == 0 &&
            recent[slot].version != w->version)
            missed = 1;
    }
    if (missed)
        wake_job(loop, w->id);
}

static int64_t on_timers(jg_loop_t *loop, int64_t now)
{
    while (heap_len && heap[0]->deadline <= now)
        answer(loop, heap[0], NULL, 0, heap[0]->version);
    return heap_len ? heap[0]->deadline : -1;
}

static void on_gone(jg_loop_t *loop, jg_parked_t *p)
{
    (void)loop;
    waiter_t *w = p->data;
    unlink_waiter(w);
    free(w->headers);
    free(w);
}

/* Messages may have been lost while the subscription was down: look at every waited job. */
static void on_resync(jg_loop_t *loop)
{
    size_t n = heap_len;
    if (n == 0)
        return;
    char (*ids)[JG_ID_LEN + 1] = malloc(n * sizeof *ids);
    if (ids == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        memcpy(ids[i], heap[i]->id, JG_ID_LEN + 1);
    for (size_t i = 0; i < n; i++)
        wake_job(loop, ids[i]);   /* a job already answered finds no waiter: no read */
    free(ids);
}

/* SIGTERM: every long poll gets its answer now (304: nothing changed yet). */
static void on_shutdown(jg_loop_t *loop)
{
    while (heap_len)
        answer(loop, heap[0], NULL, 0, heap[0]->version);
}

static const jg_park_ops_t park_ops = {
    "events", on_parked, on_message, on_resync, on_timers, on_gone, on_shutdown,
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

/* GET|HEAD /jobs/{id}[?wait=S][&version=V] */
static int handle(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    char arg[32];
    double wait = 0;
    long given = -1;
    int q = jg_query_get(req->query, "wait", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_double(arg, 0, 60, &wait)))
        return jg_fail(req, 400, "invalid_field", "wait must be a number of seconds, 0 to 60");
    q = jg_query_get(req->query, "version", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_long(arg, 0, 1L << 62, &given)))
        return jg_fail(req, 400, "invalid_field", "version must be a non-negative integer");

    jg_loop_t *loop = jg_server_loop();
    uint64_t seq = jg_loop_message_seq(loop);
    redisReply *rep = read_job(req->cfg, req->redis, id);
    if (rep == NULL)
        return jg_fail_unavailable(req);
    if (rep->type != REDIS_REPLY_ARRAY) {
        int rc = jg_fail_redis(req, rep);
        freeReplyObject(rep);
        return rc;
    }
    long long version = jg_job_json_hmget(rep, 0, &req->body);
    freeReplyObject(rep);
    if (version < 0)
        return jg_fail(req, 404, "not_found", "no such job");
    jg_resp_header(req, "ETag: \"%lld\"\r\n", version);
    int current = given >= 0 ? given == version
                             : etag_matches(jg_req_param(req, "HTTP_IF_NONE_MATCH"), version);
    if (!current)
        return JG_OK;
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
    memcpy(w->id, id, JG_ID_LEN + 1);
    w->version = version;
    w->deadline = jg_monotonic_ms() + (int64_t)(wait * 1000);
    w->head = req->head;
    w->seq = seq;
    jg_resp_common_headers(req, &headers);
    w->headers = jg_buf_steal(&headers);
    req->park_data = w;
    return JG_PARKED;
}

static const jg_program_t program = {"jobgate-status", "status", handle, &park_ops, NULL};

int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
