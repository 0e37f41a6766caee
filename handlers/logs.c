/* logs.c — jobgate-logs, a job's log streamed or polled (contract section 5):
 *   GET /jobs/{id}/logs   Accept: text/event-stream | ?stream=1  -> 200 SSE | 400 | 404 | 503
 *   GET /jobs/{id}/logs?after=C&limit=N&wait=S  -> 200 {"entries","next","status","done"}
 *
 * The log is a Redis stream (docs/redis.md); cursors are its entry ids. The handler reads the
 * job's status and the entries after the cursor in one round trip. An SSE stream whose job is
 * not finished, and a poll that waits for its first entry, are parked on the event loop. There,
 * `log <id> <cursor>` and `job <id> <version>` messages on the events channel of the job's
 * queue (<prefix>:{<tag>}:events, subscribed while a stream or waiting poll of that queue is
 * parked: jg_loop_watch) trigger one read per job (the entries after the oldest cursor of its
 * viewers, and its status) whatever the number of viewers; nothing polls Redis. */
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

#define PAGE 100              /* entries per read of a parked stream or page */
#define CHUNK (192u << 10)    /* bytes rendered per step of a parked stream or page */
#define RETRY_MS 500          /* a failed read of the loop is tried again after this */
#define CURSOR_MAX 48

typedef struct cursor {
    uint64_t ms, seq;
} cursor_t;

/* The job's state as a viewer sees it. */
typedef struct job_state {
    char status[16];          /* "" when the job does not exist */
    char progress[8];         /* "" = null */
    char attempts[16];
    int finished;             /* status is done, failed or cancelled */
} job_state_t;

/* A parked viewer: an SSE stream, or a polled page (waiting for its first entry, or being
 * written). Both are written by the loop a part at a time (pump), never more than CHUNK bytes
 * beyond what the client has taken: a backlog of any size costs a stream about 256 KiB. */
typedef struct viewer {
    jg_waiter_t w;            /* id, deadline (next heartbeat, end of the wait, or retry), seq */
    int sse;
    cursor_t cursor;          /* the last entry sent (SSE, page) or asked after (waiting poll) */
    int caught_up;            /* SSE: the backlog is sent; new entries come with messages */
    int64_t active_at;        /* SSE: when it last got what was new (the heartbeat counts from
                                 here; its deadline is moved lazily, when it comes) */
    int waiting;              /* poll: parked until an entry comes or the wait runs out */
    int watched;              /* parked as a stream or waiting poll: jg_loop_watch'ed */
    int retry;                /* a read failed (Redis away): the deadline is the retry */
    int64_t wait_until;       /* poll: end of its wait */
    long limit, written;      /* poll: entries asked for, entries written so far */
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

/* A reply element of hiredis' shape (freeReplyObject frees it): a string, or an array of n. */
static redisReply *made_reply(int type, const char *s, size_t n)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r == NULL || (s && (r->str = strdup(s)) == NULL) ||
        (n && (r->element = calloc(n, sizeof *r->element)) == NULL))
        abort();
    r->type = type;
    r->len = s ? strlen(s) : 0;
    r->elements = n;
    return r;
}

/* The XRANGE reply of a log whose one entry is the `queued` of a job created at created_at (ms,
 * digits): [["<created_at>-0", ["ts", created_at, "stream", "system", "line", "queued"]]]. */
static redisReply *queued_entry(const char *created_at)
{
    char id[32];
    snprintf(id, sizeof id, "%s-0", created_at);
    static const char *const fields[] = {"ts", NULL, "stream", "system", "line", "queued"};
    redisReply *all = made_reply(REDIS_REPLY_ARRAY, NULL, 1);
    redisReply *e = all->element[0] = made_reply(REDIS_REPLY_ARRAY, NULL, 2);
    e->element[0] = made_reply(REDIS_REPLY_STRING, id, 0);
    e->element[1] = made_reply(REDIS_REPLY_ARRAY, NULL, 6);
    for (size_t i = 0; i < 6; i++)
        e->element[1]->element[i] =
            made_reply(REDIS_REPLY_STRING, fields[i] ? fields[i] : created_at, 0);
    return all;
}

/* One round trip: the job's status, progress, attempts and up to count entries after c.
 * Returns the XRANGE reply (caller frees) with *st filled, or NULL when Redis is away.
 * A job queued at once has no log until a script first adds to it (claim.lua, cancel.lua), which
 * then writes its `queued` entry with the id <created_at>-0 (docs/redis.md, "The job log").
 * Every log of a job holds an entry at or after that id, so a read from before it that finds
 * nothing finds no log yet: it is answered that entry, as the log will hold it. */
static redisReply *read_log(const jg_config_t *cfg, jg_redis_t *r, const char *id, cursor_t c,
                            long count, job_state_t *st)
{
    char job[JG_KEY_MAX], log[JG_KEY_MAX], start[CURSOR_MAX + 1], n[24];
    jg_key_job(cfg, id, job);
    jg_key_log(cfg, id, log);
    start[0] = '(';
    format_cursor(c, start + 1);
    jg_fmt_int(count, n);
    /* argv, not a format: hiredis' printf-like formatting cost more than the rest of a read */
    const char *hmget[] = {"HMGET", job, "status", "progress", "attempts", "created_at"};
    const char *xrange[] = {"XRANGE", log, start, "+", "COUNT", n};
    size_t hmget_len[6], xrange_len[6];
    for (size_t i = 0; i < 6; i++)
        hmget_len[i] = strlen(hmget[i]);
    for (size_t i = 0; i < 6; i++)
        xrange_len[i] = strlen(xrange[i]);
    if (jg_redis_append_argv(r, 6, hmget, hmget_len) ||
        jg_redis_append_argv(r, 6, xrange, xrange_len))
        return NULL;
    redisReply *fields = jg_redis_get_reply(r);
    redisReply *entries = fields ? jg_redis_get_reply(r) : NULL;
    memset(st, 0, sizeof *st);
    char created_at[24] = "";
    if (fields && fields->type == REDIS_REPLY_ARRAY && fields->elements == 4) {
        char *dst[] = {st->status, st->progress, st->attempts, created_at};
        size_t cap[] = {sizeof st->status, sizeof st->progress, sizeof st->attempts,
                        sizeof created_at};
        for (int i = 0; i < 4; i++)
            if (fields->element[i]->type == REDIS_REPLY_STRING)
                snprintf(dst[i], cap[i], "%s", fields->element[i]->str);
        st->finished = finished(st->status);
    }
    if (fields)
        freeReplyObject(fields);
    if (entries && entries->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(entries);
        return NULL;
    }
    cursor_t queued;
    if (entries && entries->elements == 0 && st->status[0] &&
        created_at[0] && strspn(created_at, "0123456789") == strlen(created_at) &&
        parse_cursor(created_at, &queued) == 0 && cursor_after(queued, c)) {
        freeReplyObject(entries);
        entries = queued_entry(created_at);
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

/* Both were zeroed before being filled (read_log), so the bytes after each string compare
 * equal too: one memcmp per viewer and line. */
static int state_differs(const job_state_t *a, const job_state_t *b)
{
    return memcmp(a, b, sizeof *a) != 0;
}

/* --- the loop side --- */

static void pump(jg_loop_t *loop, viewer_t *v);

static void set_deadline(viewer_t *v, int64_t at) { jg_waitlist_set_deadline(viewers, &v->w, at); }

static int64_t heartbeat_at(jg_loop_t *loop)
{
    return jg_monotonic_ms() + jg_loop_config(loop)->sse_heartbeat * 1000;
}

/* The deadline v has when no read is pending a retry. */
static int64_t normal_deadline(jg_loop_t *loop, const viewer_t *v)
{
    if (v->sse)
        return heartbeat_at(loop);
    return v->waiting ? v->wait_until : INT64_MAX;
}

/* A read of the loop failed: v tries again soon (finding: a wake is never dropped). */
static void retry_later(viewer_t *v)
{
    v->retry = 1;
    if (v->w.deadline > jg_monotonic_ms() + RETRY_MS)
        set_deadline(v, jg_monotonic_ms() + RETRY_MS);
}

/* Ends v after bytes (may be empty); v is freed later (on_gone). */
static void finish(jg_loop_t *loop, viewer_t *v, const jg_buf_t *b)
{
    jg_waitlist_remove(viewers, &v->w);
    jg_parked_answer(loop, v->w.parked, b->data ? b->data : "", b->len);
}

/* A waiting poll starts its page: the answer's head and the entries' opening. */
static void start_page(jg_loop_t *loop, viewer_t *v)
{
    jg_buf_t out = JG_BUF_INIT;
    v->waiting = 0;
    set_deadline(v, INT64_MAX);
    jg_resp_render_parts(&out, 200, v->headers, "application/json", "no-store",
                         "{\"entries\":[", 12, JG_RENDER_STREAM);
    if (jg_parked_send(loop, v->w.parked, out.data, out.len) < 0)
        jg_waitlist_remove(viewers, &v->w);
    jg_buf_free(&out);
}

/* The end of a polled page; done: the job is finished and next is its last entry. */
static void page_tail(jg_buf_t *b, const viewer_t *v, const job_state_t *st, int done)
{
    char next[CURSOR_MAX];
    format_cursor(v->cursor, next);
    jg_buf_printf(b, "],\"next\":\"%s\",\"status\":\"%s\",\"done\":%s}", next, st->status,
                  done ? "true" : "false");
}

/* A waiting poll whose wait ran out (or SIGTERM came): the empty page. */
static void end_waiting(jg_loop_t *loop, viewer_t *v)
{
    jg_buf_t body = JG_BUF_INIT, out = JG_BUF_INIT;
    jg_buf_puts(&body, "{\"entries\":[");
    page_tail(&body, v, &v->sent, 0);
    jg_resp_render_parts(&out, 200, v->headers, "application/json", "no-store", body.data,
                         body.len, 0);
    finish(loop, v, &out);
    jg_buf_free(&body);
    jg_buf_free(&out);
}

/* The SSE bytes of one read, rendered once for every stream at the same cursor: a line fanned
 * out to N caught-up viewers is formatted once, not N times. Valid for one read (refresh). */
typedef struct shared_sse {
    int valid;
    cursor_t from, to;        /* the viewers' cursor, and where the rendered bytes end */
    int all;                  /* every entry after from was rendered */
    jg_buf_t bytes;
} shared_sse_t;

/* Renders into b what v has not seen of entries, until b holds CHUNK bytes (SSE) or the page
 * is full (poll); advances v's cursor. Returns 1 when every entry of the reply after v's
 * cursor was rendered; *more: a poll's page is full and an entry is left. A stream whose
 * cursor is shared->from (and whose b is empty) gets shared's bytes instead, rendered by the
 * first such stream: *use_shared is then set and b left empty (no copy per stream). */
static int render_one(viewer_t *v, const redisReply *entries, jg_buf_t *b, int *more);
static int render(viewer_t *v, const redisReply *entries, jg_buf_t *b, int *more,
                  shared_sse_t *shared, int *use_shared)
{
    if (use_shared)
        *use_shared = 0;
    if (shared == NULL || use_shared == NULL || !v->sse || b->len)
        return render_one(v, entries, b, more);
    *more = 0;
    if (!shared->valid || v->cursor.ms != shared->from.ms || v->cursor.seq != shared->from.seq) {
        if (shared->valid)
            return render_one(v, entries, b, more);
        shared->from = v->cursor;
        jg_buf_reset(&shared->bytes);
        shared->all = render_one(v, entries, &shared->bytes, more);
        shared->to = v->cursor;
        shared->valid = 1;
    }
    v->cursor = shared->to;
    *use_shared = 1;
    return shared->all;
}

static int render_one(viewer_t *v, const redisReply *entries, jg_buf_t *b, int *more)
{
    *more = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        entry_t e;
        if (entry_of(entries->element[i], &e) || !cursor_after(e.cursor, v->cursor))
            continue;
        if (!v->sse && v->written == v->limit) {
            *more = 1;
            return 0;
        }
        if (b->len >= CHUNK)
            return 0;
        if (v->sse) {
            sse_entry(b, &e);
        } else {
            if (v->written++)
                jg_buf_putc(b, ',');
            entry_json(b, &e, 1);
        }
        v->cursor = e.cursor;
    }
    return 1;
}

/* Gives v what entries (read after a cursor at or before v's, count asked) hold for it, and
 * the status st. Returns 1 when v has everything up to the end of the log (caught up), 0
 * when it must read on by itself (pump), -1 when v ended or its client left. */
static int give(jg_loop_t *loop, viewer_t *v, const redisReply *entries, long count,
                const job_state_t *st, shared_sse_t *shared)
{
    jg_buf_t b = JG_BUF_INIT;
    int more, use_shared, all = render(v, entries, &b, &more, shared, &use_shared);
    int at_end = all && entries->elements < (size_t)count;
    int rc = at_end ? 1 : 0;
    if (v->sse) {
        if (use_shared && at_end && (state_differs(st, &v->sent) || st->finished)) {
            /* something of v's own follows the shared bytes: a copy after all */
            jg_buf_append(&b, shared->bytes.data ? shared->bytes.data : "", shared->bytes.len);
            use_shared = 0;
        }
        if (at_end && state_differs(st, &v->sent)) {
            sse_status(&b, st);
            v->sent = *st;
        }
        if (at_end && st->finished) {
            sse_end(&b, st);
            finish(loop, v, &b);
            rc = -1;
        }
    } else {
        v->sent = *st;
        if (more || at_end) {
            page_tail(&b, v, st, at_end && !more && st->finished);
            finish(loop, v, &b);
            rc = -1;
        }
    }
    const char *out = use_shared ? shared->bytes.data : b.data;
    size_t out_len = use_shared ? shared->bytes.len : b.len;
    if (rc >= 0 && out_len && jg_parked_send(loop, v->w.parked, out, out_len) < 0) {
        jg_waitlist_remove(viewers, &v->w);   /* the client left: v is freed later */
        rc = -1;
    }
    jg_buf_free(&b);
    if (v->sse && rc >= 0) {
        int was = v->caught_up;
        v->caught_up = rc;
        if (rc) {
            /* The next heartbeat is due a heartbeat after this; a stream that was caught up
             * already has its deadline at or before that, and on_timers moves it then: no
             * heap update per line and viewer. */
            v->active_at = jg_monotonic_ms();
            if (!was)
                set_deadline(v, heartbeat_at(loop));
        }
    }
    return rc;
}

/* Writes v's next parts, a page read at a time, while its client keeps up (at most about
 * JG_PARKED_LOW_WATER + CHUNK queued); the loop calls it again when the client has read
 * (on_writable). A caught-up stream waits for messages instead. */
static void pump(jg_loop_t *loop, viewer_t *v)
{
    while (jg_parked_alive(v->w.parked) && !v->waiting &&
           jg_parked_unsent(v->w.parked) <= JG_PARKED_LOW_WATER) {
        long left = v->limit - v->written;   /* poll: one more, to know whether more follow */
        long count = v->sse ? PAGE : (left < PAGE ? left : PAGE) + 1;
        job_state_t st;
        redisReply *entries =
            read_log(jg_loop_config(loop), jg_loop_redis(loop), v->w.id, v->cursor, count, &st);
        if (entries == NULL) {
            retry_later(v);
            return;
        }
        int rc;
        if (st.status[0] == '\0') {   /* the job expired while watched: end */
            jg_buf_t b = JG_BUF_INIT;
            if (!v->sse)
                page_tail(&b, v, &v->sent, 0);
            finish(loop, v, &b);
            jg_buf_free(&b);
            rc = -1;
        } else {
            rc = give(loop, v, entries, count, &st, NULL);
        }
        freeReplyObject(entries);
        if (rc != 0)
            return;
    }
}

/* Reads job id once for the viewers that wait on it (caught-up streams, waiting polls) and
 * gives each what is new; one that needs more than that read reads on by itself (pump). */
static void refresh(jg_loop_t *loop, const char *id)
{
    jg_waiter_t **all;
    size_t n = jg_waitlist_of(viewers, id, &all), k = 0;
    for (size_t i = 0; i < n; i++) {   /* keep those that wait on messages */
        viewer_t *v = (viewer_t *)all[i];
        if (v->sse && v->caught_up && jg_parked_unsent(v->w.parked) > JG_PARKED_LOW_WATER)
            v->caught_up = 0;   /* a slow reader: it reads on when it has taken its bytes */
        else if ((v->sse && v->caught_up) || v->waiting)
            all[k++] = all[i];
    }
    if (k == 0) {
        free(all);
        return;
    }
    cursor_t from = ((viewer_t *)all[0])->cursor;
    for (size_t i = 1; i < k; i++)
        if (cursor_after(from, ((viewer_t *)all[i])->cursor))
            from = ((viewer_t *)all[i])->cursor;
    job_state_t st;
    redisReply *entries =
        read_log(jg_loop_config(loop), jg_loop_redis(loop), id, from, PAGE, &st);
    shared_sse_t shared = {0};
    for (size_t i = 0; i < k; i++) {
        viewer_t *v = (viewer_t *)all[i];
        if (entries == NULL) {
            retry_later(v);
            continue;
        }
        v->retry = 0;
        if (!v->waiting) {
            if (st.status[0] == '\0' || give(loop, v, entries, PAGE, &st, &shared) == 0)
                pump(loop, v);   /* more than this read: read on (or end, job expired) */
            continue;
        }
        /* a waiting poll: an entry after its cursor, or the job's end, starts its page */
        int any = 0;
        for (size_t j = 0; j < entries->elements && !any; j++) {
            entry_t e;
            any = entry_of(entries->element[j], &e) == 0 && cursor_after(e.cursor, v->cursor);
        }
        if (st.status[0])
            v->sent = st;
        if (st.status[0] == '\0') {
            end_waiting(loop, v);
        } else if (any || finished(st.status)) {
            start_page(loop, v);
            pump(loop, v);
        }
    }
    if (entries)
        freeReplyObject(entries);
    jg_buf_free(&shared.bytes);
    free(all);
}

/* "log <id> <cursor>" and "job <id> <version>" on <prefix>:{<tag>}:events */
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
    if (v->sse || v->waiting) {
        v->watched = 1;
        jg_loop_watch(loop, v->w.id);
    }
    if (!v->sse && !v->waiting)
        start_page(loop, v);
    if (v->waiting || v->caught_up) {   /* the handler read up to the end of the log */
        if (jg_waitlist_missed(viewers, &v->w, jg_loop_message_seq(loop)))
            refresh(loop, v->w.id);   /* written between the handler's read and now */
    } else {
        pump(loop, v);   /* a stream's backlog, or a page: written from here, a part at a time */
    }
}

/* The client took what was queued: the next part of a backlog or page. */
static void on_writable(jg_loop_t *loop, jg_parked_t *p)
{
    viewer_t *v = p->data;
    if (!v->waiting && !v->caught_up && !v->retry)
        pump(loop, v);
}

/* Heartbeats of streams; polls whose wait ran out; reads to try again. */
static int64_t on_timers(jg_loop_t *loop, int64_t now)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_due(viewers, now)) != NULL) {
        viewer_t *v = (viewer_t *)w;
        if (v->retry) {
            v->retry = 0;
            set_deadline(v, normal_deadline(loop, v));
            if (v->waiting && now >= v->wait_until)
                end_waiting(loop, v);
            else if (v->waiting || v->caught_up)
                refresh(loop, w->id);
            else
                pump(loop, v);
        } else if (v->sse && v->caught_up &&
                   v->active_at + jg_loop_config(loop)->sse_heartbeat * 1000 > now) {
            /* it got lines since: the heartbeat is due a heartbeat after the last of them */
            set_deadline(v, v->active_at + jg_loop_config(loop)->sse_heartbeat * 1000);
        } else if (v->sse) {
            set_deadline(v, now + jg_loop_config(loop)->sse_heartbeat * 1000);
            if (jg_parked_unsent(w->parked) == 0 &&
                jg_parked_send(loop, w->parked, ": keepalive\n\n", 13) < 0)
                jg_waitlist_remove(viewers, w);
        } else if (v->waiting) {
            end_waiting(loop, v);
        } else {
            set_deadline(v, INT64_MAX);
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
    if (((viewer_t *)p->data)->watched)
        jg_loop_unwatch(loop, ((viewer_t *)p->data)->w.id);
    jg_waitlist_remove(viewers, &((viewer_t *)p->data)->w);
    free_viewer(p->data);
}

/* The events channel of tag's queue was (re)subscribed: messages may have been lost, look at
 * every watched job of that queue. The resync is recorded too, so that a viewer whose handler
 * read before it and that parks after it looks again (jg_waitlist_missed). */
static void on_resync(jg_loop_t *loop, const char *tag)
{
    jg_waitlist_note_resync(viewers, jg_loop_message_seq(loop));
    jg_waitlist_each_id(viewers, loop, tag, refresh);
}

/* SIGTERM: streams end (EventSource reconnects, with Last-Event-ID, to another process);
 * waiting polls are answered with nothing new; a page being written ends where it is. */
static void on_shutdown(jg_loop_t *loop)
{
    jg_waiter_t *w;
    while ((w = jg_waitlist_any(viewers)) != NULL) {
        viewer_t *v = (viewer_t *)w;
        if (v->waiting) {
            end_waiting(loop, v);
        } else {
            jg_buf_t b = JG_BUF_INIT;
            if (!v->sse)
                page_tail(&b, v, &v->sent, 0);
            finish(loop, v, &b);
            jg_buf_free(&b);
        }
    }
}

static void init(jg_loop_t *loop)
{
    (void)loop;
    viewers = jg_waitlist_new();
}

static const jg_park_ops_t park_ops = {
    1,          on_parked, on_message, on_resync,   on_timers,
    on_gone,    on_shutdown, free_viewer, on_writable,
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
    /* One page at most is read here; a longer backlog or page is written by the loop. */
    long count = sse ? PAGE : (limit < PAGE ? limit : PAGE) + 1;
    redisReply *entries = read_log(req->cfg, req->redis, id, c, count, &st);
    if (entries == NULL)
        return jg_fail_unavailable(req);
    if (st.status[0] == '\0') {
        freeReplyObject(entries);
        return jg_fail(req, 404, "not_found", "no such job");
    }
    viewer_t tmp = {.sse = sse, .cursor = c, .limit = limit};
    int more, all, at_end, can_park = jg_loop_can_park(loop), waiting = 0;
    jg_buf_t *b = &req->body;
    if (sse) {
        req->streaming = 1;
        req->content_type = "text/event-stream";
        req->cache_control = "no-cache";
        jg_resp_header(req, "X-Accel-Buffering: no\r\n");
        jg_buf_puts(b, "retry: 2000\n\n");
        sse_status(b, &st);
        size_t start = b->len;
        all = render(&tmp, entries, b, &more, NULL, NULL);
        at_end = all && entries->elements < (size_t)count;
        freeReplyObject(entries);
        if (at_end && finished(st.status)) {
            sse_end(b, &st);
            return JG_OK;   /* the whole stream, here */
        }
        if (!can_park)
            return JG_OK;   /* a page of it; the client reconnects with Last-Event-ID */
        if (!at_end) {      /* a longer backlog: the loop sends it, a part at a time */
            b->len = start;
            b->data[start] = '\0';
            tmp.cursor = c;
        }                   /* else it all goes before parking: the stream is caught up */
    } else {
        waiting = entries->elements == 0 && wait > 0 && !finished(st.status) && !req->head;
        jg_buf_puts(b, "{\"entries\":[");
        all = render(&tmp, entries, b, &more, NULL, NULL);
        at_end = all && entries->elements < (size_t)count;
        freeReplyObject(entries);
        if (!(waiting && can_park) && (more || at_end || !can_park || req->head)) {
            /* the whole page (or, when no more can be parked, as much as one part holds) */
            page_tail(b, &tmp, &st, at_end && !more && finished(st.status));
            return JG_OK;
        }
        jg_buf_reset(b);   /* a long page: the loop writes it, a part at a time */
    }
    viewer_t *v = calloc(1, sizeof *v);
    if (v == NULL)
        abort();
    memcpy(v->w.id, id, JG_ID_LEN + 1);
    v->w.seq = seq;
    v->sse = sse;
    v->waiting = waiting;
    v->wait_until = jg_monotonic_ms() + (int64_t)(wait * 1000);
    v->w.deadline = sse ? jg_monotonic_ms() + req->cfg->sse_heartbeat * 1000
                        : waiting ? v->wait_until : INT64_MAX;
    v->cursor = sse ? tmp.cursor : c;   /* SSE: the last entry sent before parking */
    v->caught_up = sse && at_end;
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
