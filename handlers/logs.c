/* logs.c — jobgate-logs, a job's log streamed or polled (contract section 5):
 *   GET /jobs/{id}/logs   Accept: text/event-stream | ?stream=1  -> 200 SSE | 400 | 404 | 503
 *   GET /jobs/{id}/logs?after=C&limit=N&wait=S  -> 200 {"entries","next","status","done"}
 *
 * The log is a Redis stream (docs/redis.md); cursors are its entry ids. The handler reads the
 * job's status and the entries after the cursor in one round trip. An SSE stream whose job is
 * not finished, and a poll that waits for its first entry, are parked on the event loop. There,
 * `log <id> <cursor>` and `job <id> <version>` messages on <prefix>:events trigger one read
 * per job (the entries after the oldest cursor of its viewers, and its status) whatever the
 * number of viewers; nothing polls Redis. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cursor.h"
#include "jg.h"
#include "keys.h"
#include "log.h"
#include "server.h"
#include "timefmt.h"
#include "waitlist.h"

#define PAGE 1000             /* entries per read */
#define CURSOR_MAX 48

typedef struct cursor {
    uint64_t ms, seq;
} cursor_t;

/* The job's state as a viewer sees it. */
typedef struct job_state {
    char status[16];          /* "" when the job does not exist */
    char progress[8];         /* "" = null */
    char attempts[16];
} job_state_t;

/* A parked viewer: an SSE stream, or a poll waiting for its first entry. */
typedef struct viewer {
    jg_waiter_t w;            /* id, deadline (next heartbeat, or end of the wait), seq */
    int sse;
    cursor_t cursor;          /* the last entry sent (SSE) or asked after (poll) */
    long limit;               /* poll */
    job_state_t sent;         /* SSE: the status last sent; poll: the status last read */
    char *headers;            /* common headers, copied when parked (poll) */
} viewer_t;

static jg_waitlist_t *viewers;   /* loop thread only */

/* --- cursors --- */

static int parse_cursor(const char *s, cursor_t *c)
{
    uint64_t ms, seq;
    if (jg_cursor_parse(s, &ms, &seq))
        return -1;
    c->ms = ms;
    c->seq = seq;
    return 0;
}

static int cursor_after(cursor_t a, cursor_t b) { return a.ms > b.ms || (a.ms == b.ms && a.seq > b.seq); }

static void format_cursor(cursor_t c, char out[CURSOR_MAX])
{
    snprintf(out, CURSOR_MAX, "%" PRIu64 "-%" PRIu64, c.ms, c.seq);
}

static int finished(const char *status)
{
    return strcmp(status, "done") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

/* --- reading --- */

/* One round trip: the job's status, progress, attempts and up to count entries after c.
 * Returns the XRANGE reply (caller frees) with *st filled, or NULL when Redis is away. */
static redisReply *read_log(const jg_config_t *cfg, jg_redis_t *r, const char *id, cursor_t c,
                            long count, job_state_t *st)
{
    char job[JG_KEY_MAX], log[JG_KEY_MAX], start[CURSOR_MAX + 1];
    jg_key_job(cfg, id, job);
    jg_key_log(cfg, id, log);
    start[0] = '(';
    format_cursor(c, start + 1);
    if (jg_redis_append(r, "HMGET %s status progress attempts", job) ||
        jg_redis_append(r, "XRANGE %s %s + COUNT %ld", log, start, count))
        return NULL;
    redisReply *fields = jg_redis_get_reply(r);
    redisReply *entries = fields ? jg_redis_get_reply(r) : NULL;
    memset(st, 0, sizeof *st);
    if (fields && fields->type == REDIS_REPLY_ARRAY && fields->elements == 3) {
        char *dst[] = {st->status, st->progress, st->attempts};
        size_t cap[] = {sizeof st->status, sizeof st->progress, sizeof st->attempts};
        for (int i = 0; i < 3; i++)
            if (fields->element[i]->type == REDIS_REPLY_STRING)
                snprintf(dst[i], cap[i], "%s", fields->element[i]->str);
    }
    if (fields)
        freeReplyObject(fields);
    if (entries && entries->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(entries);
        return NULL;
    }
    return entries;
}

/* The parts of one XRANGE element: its cursor and fields ts, stream, line. */
typedef struct entry {
    cursor_t cursor;
    const char *id, *ts, *stream, *line;
    size_t line_len;
} entry_t;

static int entry_of(const redisReply *e, entry_t *out)
{
    memset(out, 0, sizeof *out);
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    out->id = e->element[0]->str;
    if (parse_cursor(out->id, &out->cursor))
        return -1;
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "ts") == 0)
            out->ts = v;
        else if (strcmp(k, "stream") == 0)
            out->stream = v;
        else if (strcmp(k, "line") == 0) {
            out->line = v;
            out->line_len = f->element[i + 1]->len;
        }
    }
    return out->line && out->stream ? 0 : -1;
}

/* {"ts":"...","stream":"...","line":"..."} — with "id" first when with_id. */
static void entry_json(jg_buf_t *b, const entry_t *e, int with_id)
{
    char ts[32];
    jg_time_format(e->ts ? strtoll(e->ts, NULL, 10) : (int64_t)e->cursor.ms, ts);
    jg_buf_putc(b, '{');
    if (with_id)
        jg_buf_printf(b, "\"id\":\"%s\",", e->id);
    jg_buf_printf(b, "\"ts\":\"%s\",\"stream\":", ts);
    jg_buf_json_string(b, e->stream, strlen(e->stream));
    jg_buf_puts(b, ",\"line\":");
    jg_buf_json_string(b, e->line, e->line_len);
    jg_buf_putc(b, '}');
}

/* --- SSE framing --- */

static void sse_entry(jg_buf_t *b, const entry_t *e)
{
    jg_buf_printf(b, "event: log\nid: %s\ndata: ", e->id);
    entry_json(b, e, 0);
    jg_buf_puts(b, "\n\n");
}

static void sse_status(jg_buf_t *b, const job_state_t *st)
{
    jg_buf_printf(b, "event: status\ndata: {\"status\":\"%s\",\"progress\":%s,\"attempts\":%s}\n\n",
                  st->status, st->progress[0] ? st->progress : "null",
                  st->attempts[0] ? st->attempts : "0");
}

static void sse_end(jg_buf_t *b, const job_state_t *st)
{
    jg_buf_printf(b, "event: end\ndata: {\"status\":\"%s\"}\n\n", st->status);
}

static int state_differs(const job_state_t *a, const job_state_t *b)
{
    return strcmp(a->status, b->status) || strcmp(a->progress, b->progress) ||
           strcmp(a->attempts, b->attempts);
}

/* Appends to b what an SSE viewer at *c has not seen of entries; advances *c. */
static void sse_entries(jg_buf_t *b, const redisReply *entries, cursor_t *c)
{
    for (size_t i = 0; i < entries->elements; i++) {
        entry_t e;
        if (entry_of(entries->element[i], &e) == 0 && cursor_after(e.cursor, *c)) {
            sse_entry(b, &e);
            *c = e.cursor;
        }
    }
}

/* --- the polling answer --- */

/* {"entries":[...],"next":"...","status":"...","done":bool} from the entries after c, at most
 * limit of them; complete: the read reached the end of the log. */
static void poll_body(jg_buf_t *b, const redisReply *entries, cursor_t c, long limit,
                      int complete, const job_state_t *st)
{
    long n = 0;
    int more = 0;
    jg_buf_puts(b, "{\"entries\":[");
    for (size_t i = 0; entries && i < entries->elements; i++) {
        entry_t e;
        if (entry_of(entries->element[i], &e) || !cursor_after(e.cursor, c))
            continue;
        if (n == limit) {
            more = 1;
            break;
        }
        if (n++)
            jg_buf_putc(b, ',');
        entry_json(b, &e, 1);
        c = e.cursor;
    }
    char next[CURSOR_MAX];
    format_cursor(c, next);
    jg_buf_printf(b, "],\"next\":\"%s\",\"status\":\"%s\",\"done\":%s}", next, st->status,
                  finished(st->status) && complete && !more ? "true" : "false");
}

/* --- the loop side --- */

static void end_poll(jg_loop_t *loop, viewer_t *v, const redisReply *entries, int complete,
                     const job_state_t *st)
{
    jg_waitlist_remove(viewers, &v->w);
    jg_buf_t body = JG_BUF_INIT, out = JG_BUF_INIT;
    poll_body(&body, entries, v->cursor, v->limit, complete, st);
    jg_resp_render_parts(&out, 200, v->headers, "application/json", "no-store", body.data,
                         body.len, 0);
    jg_parked_send(loop, v->w.parked, out.data, out.len);
    jg_parked_end(loop, v->w.parked);   /* frees v */
    jg_buf_free(&body);
    jg_buf_free(&out);
}

/* Gives v what is new in entries/st. complete: entries reach the end of the log. */
static void deliver(jg_loop_t *loop, viewer_t *v, const redisReply *entries, int complete,
                    const job_state_t *st)
{
    if (!v->sse) {
        int any = 0;
        for (size_t i = 0; i < entries->elements && !any; i++) {
            entry_t e;
            any = entry_of(entries->element[i], &e) == 0 && cursor_after(e.cursor, v->cursor);
        }
        v->sent = *st;
        if (any || (finished(st->status) && complete))
            end_poll(loop, v, entries, complete, st);
        return;
    }
    jg_buf_t b = JG_BUF_INIT;
    sse_entries(&b, entries, &v->cursor);
    if (state_differs(st, &v->sent)) {
        sse_status(&b, st);
        v->sent = *st;
    }
    int end = finished(st->status) && complete;
    if (end)
        sse_end(&b, st);
    int gone = b.len && jg_parked_send(loop, v->w.parked, b.data, b.len) < 0;
    jg_buf_free(&b);
    if (gone)
        return;   /* the client left: v is freed */
    if (!end)
        jg_waitlist_set_deadline(viewers, &v->w, jg_monotonic_ms() +
                                     jg_loop_config(loop)->sse_heartbeat * 1000);
    if (end) {
        jg_waitlist_remove(viewers, &v->w);
        jg_parked_end(loop, v->w.parked);
    }
}

/* Reads job id once for all its viewers (a page at a time) and gives each what is new. */
static void refresh(jg_loop_t *loop, const char *id)
{
    for (;;) {
        jg_waiter_t **all;
        size_t n = jg_waitlist_of(viewers, id, &all);
        if (n == 0)
            return;
        cursor_t from = ((viewer_t *)all[0])->cursor;
        for (size_t i = 1; i < n; i++)
            if (cursor_after(from, ((viewer_t *)all[i])->cursor))
                from = ((viewer_t *)all[i])->cursor;
        job_state_t st;
        redisReply *entries =
            read_log(jg_loop_config(loop), jg_loop_redis(loop), id, from, PAGE, &st);
        int full = entries && entries->elements == PAGE;
        if (entries && st.status[0]) {
            for (size_t i = 0; i < n; i++)
                deliver(loop, (viewer_t *)all[i], entries, !full, &st);
        } else if (entries) {
            /* the job expired while watched: its streams end, its polls get nothing */
            for (size_t i = 0; i < n; i++) {
                viewer_t *v = (viewer_t *)all[i];
                if (v->sse) {
                    jg_waitlist_remove(viewers, &v->w);
                    jg_parked_end(loop, v->w.parked);
                } else {
                    end_poll(loop, v, NULL, 1, &v->sent);
                }
            }
        }
        if (entries)
            freeReplyObject(entries);
        free(all);
        if (!full)
            return;   /* else the viewers' cursors moved a page on: read the next */
    }
}

/* "log <id> <cursor>" and "job <id> <version>" on <prefix>:events */
static void on_message(jg_loop_t *loop, const char *msg, size_t len)
{
    char id[JG_ID_LEN + 1];
    const char *rest;
    if (jg_event_parse(msg, len, id, &rest) != 3)
        return;
    jg_waitlist_note(viewers, jg_loop_message_seq(loop), id);
    refresh(loop, id);
}

static void on_parked(jg_loop_t *loop, jg_parked_t *p)
{
    viewer_t *v = p->data;
    v->w.parked = p;
    jg_waitlist_add(viewers, &v->w);
    if (jg_waitlist_missed(viewers, &v->w, jg_loop_message_seq(loop)))
        refresh(loop, v->w.id);   /* written between the handler's read and now */
}

/* Heartbeats of streams; polls whose wait ran out. */
static int64_t on_timers(jg_loop_t *loop, int64_t now)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_due(viewers, now)) != NULL) {
        viewer_t *v = (viewer_t *)w;
        if (v->sse) {
            jg_waitlist_set_deadline(viewers, w, now + jg_loop_config(loop)->sse_heartbeat * 1000);
            jg_parked_send(loop, w->parked, ": keepalive\n\n", 13);   /* may free v */
        } else {
            end_poll(loop, v, NULL, 0, &v->sent);
        }
    }
    return jg_waitlist_next_deadline(viewers);
}

static void free_viewer(void *data)
{
    viewer_t *v = data;
    free(v->headers);
    free(v);
}

static void on_gone(jg_loop_t *loop, jg_parked_t *p)
{
    (void)loop;
    jg_waitlist_remove(viewers, &((viewer_t *)p->data)->w);
    free_viewer(p->data);
}

/* Messages may have been lost while the subscription was down: look at every watched job. */
static void on_resync(jg_loop_t *loop) { jg_waitlist_each_id(viewers, loop, refresh); }

/* SIGTERM: streams end (EventSource reconnects, with Last-Event-ID, to another process);
 * polls are answered with nothing new. */
static void on_shutdown(jg_loop_t *loop)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_any(viewers)) != NULL) {
        viewer_t *v = (viewer_t *)w;
        if (v->sse) {
            jg_waitlist_remove(viewers, w);
            jg_parked_end(loop, w->parked);
        } else {
            end_poll(loop, v, NULL, 0, &v->sent);
        }
    }
}

static void init(jg_loop_t *loop)
{
    (void)loop;
    viewers = jg_waitlist_new();
}

static const jg_park_ops_t park_ops = {
    "events", on_parked, on_message, on_resync, on_timers, on_gone, on_shutdown, free_viewer,
};

/* --- the request side --- */

static int wants_sse(jg_req_t *req)
{
    char arg[8];
    if (jg_query_get(req->query, "stream", arg, sizeof arg) == 1 && strcmp(arg, "1") == 0)
        return 1;
    const char *accept = jg_req_param(req, "HTTP_ACCEPT");
    return accept && strcasestr(accept, "text/event-stream") != NULL;
}

/* GET /jobs/{id}/logs -> SSE | {"entries","next","status","done"} */
static int handle(jg_req_t *req)
{
    const char *id = req->param;
    if (!jg_valid_job_id(id))
        return jg_fail(req, 404, "not_found", "no such job");
    int sse = wants_sse(req) && !req->head;
    char arg[CURSOR_MAX];
    cursor_t c = {0, 0};
    long limit = 100;
    double wait = 0;
    const char *last_event = jg_req_param(req, "HTTP_LAST_EVENT_ID");
    int q = jg_query_get(req->query, "after", arg, sizeof arg);
    if (sse && last_event && *last_event) {
        if (parse_cursor(last_event, &c))
            return jg_fail(req, 400, "invalid_field", "Last-Event-ID is not a log cursor");
    } else if (q < 0 || (q == 1 && parse_cursor(arg, &c))) {
        return jg_fail(req, 400, "invalid_field", "after is not a log cursor");
    }
    q = jg_query_get(req->query, "limit", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_long(arg, 1, 1000, &limit)))
        return jg_fail(req, 400, "invalid_field", "limit must be an integer from 1 to 1000");
    q = jg_query_get(req->query, "wait", arg, sizeof arg);
    if (q < 0 || (q == 1 && jg_parse_double(arg, 0, 60, &wait)))
        return jg_fail(req, 400, "invalid_field", "wait must be a number of seconds, 0 to 60");

    jg_loop_t *loop = jg_server_loop();
    uint64_t seq = jg_loop_message_seq(loop);
    job_state_t st;
    redisReply *entries;
    int complete;
    jg_buf_t stream = JG_BUF_INIT;
    cursor_t sent = c;
    for (;;) {   /* SSE reads the whole backlog; a poll one page */
        entries = read_log(req->cfg, req->redis, id, sent, sse ? PAGE : limit + 1, &st);
        if (entries == NULL) {
            jg_buf_free(&stream);
            return jg_fail_unavailable(req);
        }
        if (st.status[0] == '\0') {
            freeReplyObject(entries);
            jg_buf_free(&stream);
            return jg_fail(req, 404, "not_found", "no such job");
        }
        complete = entries->elements < (size_t)(sse ? PAGE : limit + 1);
        if (!sse)
            break;
        if (stream.len == 0) {
            jg_buf_puts(&stream, "retry: 2000\n\n");
            sse_status(&stream, &st);
        }
        sse_entries(&stream, entries, &sent);
        freeReplyObject(entries);
        if (complete)
            break;
    }

    viewer_t *v = NULL;
    if (sse) {
        req->streaming = 1;
        req->content_type = "text/event-stream";
        req->cache_control = "no-cache";
        jg_resp_header(req, "X-Accel-Buffering: no\r\n");
        jg_buf_append(&req->body, stream.data, stream.len);
        jg_buf_free(&stream);
        if (finished(st.status)) {
            sse_end(&req->body, &st);
            return JG_OK;
        }
        if (!jg_loop_can_park(loop))
            return JG_OK;   /* the stream ends after its backlog; the client reconnects */
    } else {
        int any = entries->elements > 0;
        if (any || wait <= 0 || finished(st.status) || req->head || !jg_loop_can_park(loop)) {
            poll_body(&req->body, entries, c, limit, complete, &st);
            freeReplyObject(entries);
            return JG_OK;
        }
        freeReplyObject(entries);
    }
    v = calloc(1, sizeof *v);
    if (v == NULL)
        abort();
    memcpy(v->w.id, id, JG_ID_LEN + 1);
    v->w.seq = seq;
    v->w.deadline = jg_monotonic_ms() + (sse ? req->cfg->sse_heartbeat * 1000
                                             : (int64_t)(wait * 1000));
    v->sse = sse;
    v->cursor = sent;
    v->limit = limit;
    v->sent = st;
    jg_buf_t headers = JG_BUF_INIT;
    jg_resp_common_headers(req, &headers);
    v->headers = jg_buf_steal(&headers);
    req->park_data = v;
    return JG_PARKED;
}

static const jg_program_t program = {"jobgate-logs", "logs", handle, &park_ops, init};

int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
