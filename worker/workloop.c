/* workloop.c — the worker's event loop (see workloop.h): job slots, their timers (timeout, lease
 * renewal, kill), the subscriber (wake-ups and cancels), the graceful stop, and the one pipeline
 * per loop turn that reports everything to Redis and claims new jobs.
 *
 * A slot is FREE, RUNNING (a child process) or ENDED (the child is gone and cleaned up; its
 * outcome waits to be accepted by complete.lua). A slot only becomes FREE again once Redis has
 * answered its completion, so while Redis is unreachable children keep running, their lines
 * queue up, and outcomes are reported when it is back. */
#include "workloop.h"
#include "cluster.h"
#include "events.h"
#include "keeper.h"
#include "keys.h"
#include "lines.h"
#include "log.h"
#include "mailbox.h"
#include "protocol.h"
#include "redis.h"
#include "runner.h"
#include "timefmt.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define CMD_TIMEOUT_MS      2000    /* per Redis command */
#define TICK_MS             1000    /* safety re-check: promote, take back leases, claim */
#define HEARTBEAT_MS        5000
#define HEARTBEAT_TTL_S     15
#define WORKER_GONE_MS      60000   /* P:workers members older than this are removed */
#define KILL_AFTER_MS       5000    /* SIGTERM, then SIGKILL this much later */
#define CANCEL_KILL_AFTER_MS 500    /* a cancel must end the job within 1 s */
#define REPORT_AFTER_STOP_MS 10000  /* after the grace: how long to try reporting outcomes */
#define LOGQ_MAX            (8 * 1024 * 1024)   /* bytes of lines kept while Redis is away */
#define LOG_BATCH_LINES     250     /* pairs per log.lua call (JG_ARGS_MAX) */
#define READS_PER_TURN      4       /* 64 KiB reads per pipe per loop turn */

enum { SLOT_FREE, SLOT_RUNNING, SLOT_ENDED };
enum { STOP_NONE, STOP_TIMEOUT, STOP_CANCEL, STOP_LOST, STOP_SHUTDOWN, STOP_EXPIRED };

typedef struct slot {
    int  state;
    char id[JG_ID_MAX + 1];
    char type[JG_NAME_MAX + 1];
    int  qi;                   /* index of its queue in opts->queues */
    long attempt;
    long long fence;
    long timeout_ms;
    int64_t renew_at, term_at, kill_at;   /* monotonic ms; 0 = none */
    int64_t lease_end;         /* monotonic ms by which the lease Redis last gave surely ran out
                                  (counted from when the claim or renewal was sent) */
    int  stop;                 /* STOP_*: why the worker stopped it */
    int  lost;                 /* Redis refused a fenced call: the attempt is not ours */
    /* lines not yet accepted by Redis: records of [stream 'o'|'e'][u32 length][bytes] */
    jg_buf_t logq;
    int  logq_n;
    long long log_sent;        /* lines of this attempt sent and answered (log.lua's numbering) */
    size_t logq_dropped;
    int  progress;             /* pending ::progress value, -1 = none */
    jg_buf_t last_err;         /* last stderr line, for "exit status N: ..." */
    const char *outcome;       /* ENDED: "done", "failed", "cancelled", "requeue" */
    jg_buf_t text;             /* ENDED: result JSON or error text */
    char cache_key[JG_KEY_MAX];   /* P:cache:<key> when the job asked for the result cache */
    long cache_ttl;            /* its seconds; 0 = no cache */
    int  cache_stored;         /* the done result was stored there (before the completion) */
    /* last, the large members (41 KiB): slot_free does not clear their buffers */
    jg_child_t child;
    jg_lines_t out, err;
    jg_jobdir_t jobdir;        /* the slot's directory, kept from job to job (slot_free keeps it) */
} slot_t;

typedef struct worker {
    const jg_config_t *cfg;
    const jg_worker_opts_t *o;
    jg_redis_t cmd;
    jg_proto_t proto;
    jg_subscriber_t *sub;      /* wake and cancel channels (events.h) */
    jg_mailbox_t inbox;        /* what the subscriber thread got (sub_item_t) */
    slot_t *slots;
    int nslots;
    int sigfd;
    int claim_needed;          /* look for jobs (queues in order) as soon as a slot is free */
    int maybe_more;            /* the last claims filled every free slot: there may be more */
    int64_t last_claim_at[JG_WORKER_MAX_QUEUES];   /* per queue: promotion, taking back */
    /* per queue: a claim's answer was lost (connection, failover, no replica ack): its jobs,
     * leased to us but not started, are given back (giveback.lua) before any other call */
    unsigned char giveback[JG_WORKER_MAX_QUEUES];
    int64_t tick_at, heartbeat_at, delayed_at;
    int64_t clock_offset;      /* Redis' clock minus ours, ms, from the last claim's `now` */
    int stopping;
    int64_t stop_deadline, give_up_at;
    int64_t started_ms;
    char host[256];
} worker_t;

/* ---- slots ------------------------------------------------------------------------------- */

static int count_state(const worker_t *w, int state)
{
    int n = 0;
    for (int i = 0; i < w->nslots; i++)
        n += w->slots[i].state == state;
    return n;
}

static void queue_line(slot_t *s, char stream, const char *line, size_t len)
{
    if (s->lost)
        return;
    if (s->logq.len + len + 5 > LOGQ_MAX) {
        s->logq_dropped++;
        return;
    }
    uint32_t l = (uint32_t)len;
    jg_buf_putc(&s->logq, stream);
    jg_buf_append(&s->logq, &l, sizeof l);
    jg_buf_append(&s->logq, line, len);
    s->logq_n++;
}

static void on_stdout_line(void *ctx, const char *line, size_t len)
{
    slot_t *s = ctx;
    int pct;
    if (jg_line_progress(line, len, &pct))
        s->progress = pct;
    else
        queue_line(s, 'o', line, len);
}

/* The error's suffix is the last stderr line with something in it: a line of only blanks (an
 * empty line a tool prints last, say) does not replace it. */
static void on_stderr_line(void *ctx, const char *line, size_t len)
{
    slot_t *s = ctx;
    size_t k = 0;
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (k < len) {
        jg_buf_reset(&s->last_err);
        jg_buf_append(&s->last_err, line, len);
    }
    queue_line(s, 'e', line, len);
}

/* Reads what a pipe has (at most READS_PER_TURN buffers; with drain, after the job's exit, up
 * to 16 MiB more: a writer that escaped the process group cannot keep us here); closes it at
 * EOF. */
static void read_pipe(slot_t *s, int *fd, int is_err, int drain)
{
    char buf[65536];
    jg_lines_t *l = is_err ? &s->err : &s->out;
    jg_line_fn fn = is_err ? on_stderr_line : on_stdout_line;
    for (int i = 0; *fd >= 0 && i < (drain ? 256 : READS_PER_TURN); i++) {
        ssize_t got = read(*fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (got <= 0) {
            jg_lines_flush(l, fn, s);
            close(*fd);
            *fd = -1;
            return;
        }
        jg_lines_feed(l, buf, (size_t)got, fn, s);
    }
}

static void stop_slot(worker_t *w, slot_t *s, int reason)
{
    (void)w;
    if (s->state != SLOT_RUNNING)
        return;
    int64_t now = jg_monotonic_ms();
    if (reason == STOP_LOST || reason == STOP_EXPIRED) {
        /* another worker may run this job now: no grace at all */
        if (s->stop != STOP_LOST)
            s->stop = reason;
        s->lost |= reason == STOP_LOST;
        jg_child_signal(&s->child, SIGKILL);
        s->kill_at = 0;
        return;
    }
    /* a job whose process already ended on its own ends as its exit says (a cancel that comes
     * after a clean exit leaves it done) */
    if (s->stop != STOP_NONE || jg_child_exited(&s->child))
        return;
    s->stop = reason;
    jg_child_signal(&s->child, SIGTERM);
    s->kill_at = now + (reason == STOP_CANCEL ? CANCEL_KILL_AFTER_MS : KILL_AFTER_MS);
}

static void set_outcome(slot_t *s, const char *outcome, const char *text, size_t len)
{
    s->outcome = outcome;
    jg_buf_reset(&s->text);
    jg_buf_append(&s->text, text, len);
    s->state = SLOT_ENDED;
}

/* The job process exited and was reaped (jg_child_reap killed what it left behind in its
 * group first): collect the rest of its output, decide the outcome, clean up. */
static void slot_exited(worker_t *w, slot_t *s, int wstatus)
{
    (void)w;
    read_pipe(s, &s->child.out_fd, 0, 1);
    read_pipe(s, &s->child.err_fd, 1, 1);
    jg_lines_flush(&s->out, on_stdout_line, s);
    jg_lines_flush(&s->err, on_stderr_line, s);
    if (s->logq_dropped) {
        char note[128];
        int n = snprintf(note, sizeof note, "[jobgate: %zu lines dropped while Redis was unreachable]",
                         s->logq_dropped);
        s->logq_dropped = 0;
        queue_line(s, 'e', note, (size_t)n);
    }

    char err[JG_LINE_MAX + 256];
    jg_buf_t result = JG_BUF_INIT;
    switch (s->stop) {
    case STOP_LOST:
        set_outcome(s, "failed", "lease lost", 10);
        break;
    case STOP_EXPIRED:
        set_outcome(s, "failed", "lease expired", 13);
        break;
    case STOP_CANCEL:
        set_outcome(s, "cancelled", "", 0);
        break;
    case STOP_SHUTDOWN:
        set_outcome(s, "requeue", "", 0);
        break;
    case STOP_TIMEOUT: {
        char t[32];
        jg_seconds_text(s->timeout_ms, t, sizeof t);
        int n = snprintf(err, sizeof err, "timeout after %s s", t);
        set_outcome(s, "failed", err, (size_t)n);
        break;
    }
    default:
        if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
            if (jg_child_result(&s->child, &result, err, sizeof err) == JG_OK)
                set_outcome(s, "done", result.data, result.len);
            else
                set_outcome(s, "failed", err, strlen(err));
        } else {
            jg_child_error(wstatus, s->last_err.data, err, sizeof err);
            set_outcome(s, "failed", err, strlen(err));
        }
    }
    jg_buf_free(&result);
    jg_child_cleanup(&s->child);
}

/* Every member before `child` is zeroed; of the child and the line buffers only what says
 * they are empty (their bytes are written before they are read): clearing the whole 41 KiB
 * twice per job was a third of the worker's own instructions per job (callgrind). */
static void slot_free(slot_t *s)
{
    jg_buf_free(&s->logq);
    jg_buf_free(&s->last_err);
    jg_buf_free(&s->text);
    memset(s, 0, offsetof(slot_t, child));
    s->state = SLOT_FREE;
    s->progress = -1;
    s->child.pid = 0;
    s->child.reaped = 0;
    s->child.out_fd = s->child.err_fd = -1;
    s->child.dir[0] = s->child.result_path[0] = '\0';
    jg_lines_init(&s->out);
    jg_lines_init(&s->err);
}

/* A claimed job: start its process in a free slot. */
static void start_job(worker_t *w, const redisReply *job, int qi, int64_t sent_at)
{
    char tmp[32];
    slot_t *s = NULL;
    for (int i = 0; i < w->nslots && !s; i++)
        if (w->slots[i].state == SLOT_FREE)
            s = &w->slots[i];
    const char *id = jg_reply_str(job, 0, tmp, sizeof tmp);
    if (s == NULL) {   /* cannot happen: claims never ask for more than the free slots */
        jg_log_error("claimed a job with no free slot; its lease will run out", "job", id, NULL);
        return;
    }
    slot_free(s);
    s->qi = qi;
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->type, sizeof s->type, "%s", jg_reply_str(job, 1, tmp, sizeof tmp));
    s->attempt = (long)jg_reply_int(job, 2);
    s->fence = jg_reply_int(job, 3);
    s->timeout_ms = (long)jg_reply_int(job, 4);
    if (s->timeout_ms <= 0)
        s->timeout_ms = 300000;
    const redisReply *payload = job->elements > 6 ? job->element[6] : NULL;
    /* a job with the result cache: its key and ttl (claim.lua's 8th and 9th; "" and 0 if not) */
    const char *hex = jg_reply_str(job, 7, tmp, sizeof tmp);
    long long ttl = jg_reply_int(job, 8);
    if (jg_valid_hex64(hex) && ttl > 0) {
        jg_key_cache(w->cfg, hex, s->cache_key);
        s->cache_ttl = (long)ttl;
    }
    jg_lines_init(&s->out);
    jg_lines_init(&s->err);
    s->state = SLOT_RUNNING;
    int64_t now = jg_monotonic_ms();
    s->renew_at = now + w->cfg->lease * 1000 / 3;
    s->lease_end = sent_at + w->cfg->lease * 1000;
    s->term_at = now + s->timeout_ms;

    const char *command = jg_worker_command(w->o, s->type);
    char err[512], attempt[32];
    snprintf(attempt, sizeof attempt, "%ld", s->attempt);
    jg_child_spec_t spec = {
        .command = command,
        .payload = payload && payload->type == REDIS_REPLY_STRING ? payload->str : "{}",
        .payload_len = payload && payload->type == REDIS_REPLY_STRING ? payload->len : 2,
        .id = s->id, .type = s->type, .queue = w->o->queues[s->qi],
        .attempt = s->attempt, .fence = s->fence, .jobdir = &s->jobdir,
    };
    if (command == NULL) {
        snprintf(err, sizeof err, "no command for type %s on this worker", s->type);
        set_outcome(s, "failed", err, strlen(err));
    } else if (jg_child_start(&s->child, &spec, err, sizeof err) != JG_OK) {
        jg_log_error("cannot start job", "job", s->id, "error", err, NULL);
        set_outcome(s, "failed", err, strlen(err));
    } else {
        jg_log_info("job started", "job", s->id, "type", s->type, "queue",
                    w->o->queues[s->qi], "attempt", attempt, NULL);
    }
}

/* ---- the pipeline ------------------------------------------------------------------------ */

enum { ITEM_LOG, ITEM_RENEW, ITEM_COMPLETE, ITEM_CLAIM, ITEM_PLAIN };

typedef struct item {
    int kind;
    int slot;          /* LOG/RENEW/COMPLETE */
    int nlines;        /* LOG: lines in the call */
    size_t bytes;      /* LOG: bytes of logq they take */
    int progress;      /* LOG: progress sent, -1 none */
    int qi;            /* CLAIM */
    int64_t sent_at;   /* monotonic ms when appended (a lease counts from no earlier) */
} item_t;

typedef struct pipeline {
    item_t *items;
    int n, cap;
} pipeline_t;

static void add_item(pipeline_t *p, item_t it)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->items = realloc(p->items, (size_t)p->cap * sizeof *p->items);
        if (p->items == NULL)
            abort();
    }
    it.sent_at = jg_monotonic_ms();
    p->items[p->n++] = it;
}

/* Appends the log.lua calls for a slot's queued lines (and progress). */
static int append_logs(worker_t *w, pipeline_t *p, int si)
{
    slot_t *s = &w->slots[si];
    size_t off = 0;
    int left = s->logq_n, progress = s->progress;
    long long first = s->log_sent;
    while (left > 0 || progress >= 0) {
        jg_args_t a;
        jg_args_init(&a);
        int nkeys = jg_proto_log_args(&w->proto, &a, s->id, s->fence, progress, first);
        size_t start = off;
        int n = 0;
        while (left > 0 && n < LOG_BATCH_LINES) {
            uint32_t len;
            char stream = s->logq.data[off];
            memcpy(&len, s->logq.data + off + 1, sizeof len);
            jg_args_str(&a, stream == 'e' ? "stderr" : "stdout");
            jg_args_add(&a, s->logq.data + off + 5, len);
            off += 5 + len;
            n++;
            left--;
        }
        int rc = jg_proto_append(&w->proto, "log", nkeys, &a);
        jg_args_free(&a);
        if (rc)
            return JG_ERR;
        add_item(p, (item_t){ITEM_LOG, si, n, off - start, progress, 0, 0});
        progress = -1;
        first += n;
    }
    return JG_OK;
}

static int append_complete(worker_t *w, pipeline_t *p, int si)
{
    slot_t *s = &w->slots[si];
    jg_args_t a;
    jg_args_init(&a);
    int nkeys = jg_proto_complete_args(&w->proto, &a, w->o->queues[s->qi], s->type, s->id,
                                       s->fence, s->outcome, s->text.data, s->text.len);
    int rc = jg_proto_append(&w->proto, "complete", nkeys, &a);
    jg_args_free(&a);
    if (rc == JG_OK)
        add_item(p, (item_t){ITEM_COMPLETE, si, 0, 0, -1, 0, 0});
    return rc;
}

static int append_renew(worker_t *w, pipeline_t *p, int si)
{
    slot_t *s = &w->slots[si];
    jg_args_t a;
    jg_args_init(&a);
    int nkeys = jg_proto_renew_args(&w->proto, &a, w->o->queues[s->qi], s->id, s->fence);
    int rc = jg_proto_append(&w->proto, "renew", nkeys, &a);
    jg_args_free(&a);
    if (rc == JG_OK)
        add_item(p, (item_t){ITEM_RENEW, si, 0, 0, -1, 0, 0});
    return rc;
}

static int append_claim(worker_t *w, pipeline_t *p, int qi, int want)
{
    jg_args_t a;
    jg_args_init(&a);
    int nkeys = jg_proto_claim_args(&w->proto, &a, qi, want);
    int rc = jg_proto_append(&w->proto, "claim", nkeys, &a);
    jg_args_free(&a);
    if (rc == JG_OK) {
        add_item(p, (item_t){ITEM_CLAIM, -1, want, 0, -1, qi, 0});
        w->last_claim_at[qi] = jg_monotonic_ms();
    }
    return rc;
}

static void join(char *out, size_t cap, const char *sep, const char *s, int first)
{
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s%s", first ? "" : sep, s);
}

static int append_heartbeat(worker_t *w, pipeline_t *p)
{
    char key[JG_KEY_MAX], set[JG_KEY_MAX], what[JG_KEY_MAX + 16];
    char queues[JG_WORKER_MAX_QUEUES * (JG_NAME_MAX + 1) + 1] = "";
    char types[JG_WORKER_MAX_TYPES * (JG_NAME_MAX + 1) + 1] = "";
    for (int i = 0; i < w->o->nqueues; i++)
        join(queues, sizeof queues, ",", w->o->queues[i], i == 0);
    for (int i = 0; i < w->o->ntypes; i++)
        join(types, sizeof types, ",", w->o->types[i].name, i == 0);
    snprintf(what, sizeof what, "worker:%s", w->o->id);
    jg_key_global(w->cfg, what, key);
    jg_key_global(w->cfg, "workers", set);
    int64_t now = jg_now_ms() + w->clock_offset;   /* in Redis' clock, as workers agree */
    int running = w->nslots - count_state(w, SLOT_FREE);
    if (jg_redis_append(&w->cmd,
                        "HSET %s id %s host %s pid %d queues %s types %s concurrency %d "
                        "running %d started_at %lld last_seen %lld status %s version %s",
                        key, w->o->id, w->host, (int)getpid(), queues, types, w->nslots,
                        running, (long long)w->started_ms, (long long)now,
                        w->stopping ? "stopping" : "running", JG_VERSION) ||
        jg_redis_append(&w->cmd, "EXPIRE %s %d", key, HEARTBEAT_TTL_S) ||
        jg_redis_append(&w->cmd, "ZADD %s %lld %s", set, (long long)now, w->o->id) ||
        /* the reaper: members not seen for WORKER_GONE_MS (killed -9, host lost) go */
        jg_redis_append(&w->cmd, "ZREMRANGEBYSCORE %s -inf (%lld", set,
                        (long long)(now - WORKER_GONE_MS)))
        return JG_ERR;
    for (int i = 0; i < 4; i++)
        add_item(p, (item_t){ITEM_PLAIN, -1, 0, 0, -1, 0, 0});
    return JG_OK;
}

/* Drops the first `bytes` of a slot's line queue (they were accepted or refused). */
static void logq_consume(slot_t *s, size_t bytes, int nlines)
{
    if (bytes >= s->logq.len) {
        jg_buf_reset(&s->logq);
        s->logq_n = 0;
        return;
    }
    memmove(s->logq.data, s->logq.data + bytes, s->logq.len - bytes);
    s->logq.len -= bytes;
    s->logq.data[s->logq.len] = '\0';
    s->logq_n -= nlines;
}

static void refused(worker_t *w, slot_t *s, const char *what, const char *why)
{
    jg_log_warn(what, "job", s->id, "why", why, NULL);
    if (s->state == SLOT_RUNNING)
        stop_slot(w, s, STOP_LOST);
    s->lost = 1;
    jg_buf_reset(&s->logq);
    s->logq_n = 0;
    s->progress = -1;
}

/* Stores the results of jobs that ended done and asked for the result cache (one round trip for
 * all), before their completions are sent: whoever sees such a job done finds its entry.
 * Best effort: a result that cannot be stored only means a later job runs again. Returns
 * JG_ERR if the connection was lost (the completions wait for the next turn). */
static int store_results(worker_t *w)
{
    int sent = 0;
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state != SLOT_ENDED || s->cache_ttl <= 0 || s->cache_stored ||
            strcmp(s->outcome, "done") != 0)
            continue;
        char ttl[32];
        snprintf(ttl, sizeof ttl, "%ld", s->cache_ttl);
        const char *argv[] = {"SET", s->cache_key, s->text.data ? s->text.data : "", "EX", ttl};
        size_t lens[] = {3, strlen(s->cache_key), s->text.len, 2, strlen(ttl)};
        if (jg_redis_append_argv(&w->cmd, 5, argv, lens) != 0)
            break;
        s->cache_stored = 1;
        sent++;
    }
    for (int i = 0; i < sent; i++) {
        redisReply *rep = jg_redis_get_reply(&w->cmd);
        if (rep == NULL) {
            jg_log_warn("results not stored in the cache (Redis unreachable)", NULL);
            for (int k = 0; k < w->nslots; k++)
                w->slots[k].cache_stored = 0;   /* stored again next turn */
            return JG_ERR;
        }
        if (rep->type == REDIS_REPLY_ERROR)
            jg_log_warn("cannot store a result in the cache", "error", rep->str, NULL);
        freeReplyObject(rep);
    }
    return JG_OK;
}

/* Handles one reply; returns the number of jobs a claim gave (else 0). */
static int handle_reply(worker_t *w, const item_t *it, redisReply *rep, size_t *consumed)
{
    char tmp[64];
    slot_t *s = it->slot >= 0 ? &w->slots[it->slot] : NULL;
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && jg_reply_int(rep, 0) == 1;
    if (jg_proto_noscript(&w->proto, rep))
        return 0;   /* not run: sent again next turn */
    if (jg_cluster_is_tryagain(rep))
        return 0;   /* its slot is being migrated and nothing ran: the same, lines and outcome kept */
    if (rep->type == REDIS_REPLY_ERROR && it->kind != ITEM_PLAIN)
        jg_log_error("redis script error", "error", rep->str, "job", s ? s->id : "", NULL);

    switch (it->kind) {
    case ITEM_LOG:
        /* accepted, refused or broken: either way these lines are done with */
        *consumed += it->bytes;
        if (it->progress >= 0 && s->progress == it->progress)
            s->progress = -1;
        if (ok && jg_reply_int(rep, 1) == 1 && s->state == SLOT_RUNNING)
            stop_slot(w, s, STOP_CANCEL);
        else if (rep->type == REDIS_REPLY_ARRAY && !ok && !s->lost)
            refused(w, s, "log lines refused: the attempt is no longer ours",
                    jg_reply_str(rep, 1, tmp, sizeof tmp));
        break;
    case ITEM_RENEW:
        s->renew_at = jg_monotonic_ms() + w->cfg->lease * 1000 / 3;
        if (ok)
            s->lease_end = it->sent_at + w->cfg->lease * 1000;
        if (ok && jg_reply_int(rep, 1) == 1)
            stop_slot(w, s, STOP_CANCEL);
        else if (rep->type == REDIS_REPLY_ARRAY && !ok && !s->lost)
            refused(w, s, "lease renewal refused: the attempt is no longer ours; killing it",
                    jg_reply_str(rep, 1, tmp, sizeof tmp));
        break;
    case ITEM_COMPLETE:
        if (ok) {
            jg_log_info("job finished", "job", s->id, "outcome", s->outcome, "status",
                        jg_reply_str(rep, 1, tmp, sizeof tmp), NULL);
        } else if (rep->type == REDIS_REPLY_ARRAY)
            jg_log_warn("completion refused: the attempt is no longer ours", "job", s->id,
                        "outcome", s->outcome, "why", jg_reply_str(rep, 1, tmp, sizeof tmp),
                        NULL);
        slot_free(s);
        if (w->maybe_more)
            w->claim_needed = 1;
        break;
    case ITEM_CLAIM: {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2)
            return 0;
        long long next = jg_reply_int(rep, 0), taken = jg_reply_int(rep, 1);
        long long redis_now = rep->elements >= 3 ? jg_reply_int(rep, 2) : 0;
        if (redis_now > 0)
            w->clock_offset = redis_now - jg_now_ms();
        if (next > 0) {
            /* in Redis' clock: how far ahead of Redis' now, not of ours */
            int64_t in = next - (redis_now > 0 ? redis_now : jg_now_ms());
            int64_t at = jg_monotonic_ms() + (in > 0 ? in : 0);
            if (w->delayed_at == 0 || at < w->delayed_at)
                w->delayed_at = at;
        }
        if (taken > 0) {
            snprintf(tmp, sizeof tmp, "%lld", taken);
            jg_log_warn("took back jobs whose lease ran out (worker lost)", "queue",
                        w->o->queues[it->qi], "count", tmp, NULL);
        }
        int got = 0;
        for (size_t i = 3; i < rep->elements; i++) {
            const redisReply *job = rep->element[i];
            if (job->type != REDIS_REPLY_ARRAY || job->elements < 7)
                continue;
            start_job(w, job, it->qi, it->sent_at);
            got++;
        }
        return got;
    }
    default:
        break;
    }
    return 0;
}

static int has_work(worker_t *w, int64_t now, int free_now)
{
    if (now >= w->heartbeat_at)
        return 1;
    for (int q = 0; q < w->o->nqueues; q++)
        if (w->giveback[q])
            return 1;
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state == SLOT_ENDED || (s->state == SLOT_RUNNING && !s->lost &&
                                       (s->logq_n > 0 || s->progress >= 0 || now >= s->renew_at)))
            return 1;
    }
    if (w->stopping)
        return 0;
    for (int q = 0; q < w->o->nqueues; q++)
        if (now - w->last_claim_at[q] >= TICK_MS)
            return 1;
    return free_now > 0 && w->claim_needed;
}

/* Gives back the jobs of claims whose answers were lost (giveback.lua, one call per such
 * queue, each with the ids this worker runs in it). JG_OK once none is left to give back. */
static int give_back(worker_t *w)
{
    char tmp[32];
    for (int q = 0; q < w->o->nqueues; q++) {
        if (!w->giveback[q])
            continue;
        jg_args_t a;
        jg_args_init(&a);
        int nkeys = jg_proto_giveback_args(&w->proto, &a, q);
        for (int i = 0; i < w->nslots; i++)
            if (w->slots[i].state != SLOT_FREE && w->slots[i].qi == q)
                jg_args_str(&a, w->slots[i].id);
        int rc = jg_proto_append(&w->proto, "giveback", nkeys, &a);
        jg_args_free(&a);
        redisReply *rep = rc == JG_OK ? jg_redis_get_reply(&w->cmd) : NULL;
        if (rep == NULL)
            return JG_ERR;   /* tried again next turn */
        if (rep->type == REDIS_REPLY_INTEGER) {
            w->giveback[q] = 0;
            w->claim_needed = 1;
            snprintf(tmp, sizeof tmp, "%lld", rep->integer);
            if (rep->integer > 0)
                jg_log_warn("gave back jobs of a claim whose answer was lost", "queue",
                            w->o->queues[q], "count", tmp, NULL);
        } else if (!jg_proto_noscript(&w->proto, rep) && !jg_cluster_is_tryagain(rep)) {
            jg_log_error("redis script error", "error", rep->type == REDIS_REPLY_ERROR ?
                         rep->str : "unexpected giveback.lua reply", NULL);
        }
        int left = w->giveback[q];
        freeReplyObject(rep);
        if (left)
            return JG_ERR;
    }
    return JG_OK;
}

/* One loop turn's exchange with Redis: a pipeline of log batches, renewals, completions, the
 * heartbeat and a claim, then (for further queues) more claims while slots stay free. */
static void flush(worker_t *w)
{
    int64_t now = jg_monotonic_ms();
    int free_now = count_state(w, SLOT_FREE);
    if (!has_work(w, now, free_now))
        return;
    if (jg_proto_ready(&w->proto))
        return;
    if (give_back(w) != JG_OK)
        return;
    if (store_results(w) != JG_OK)
        return;
    pipeline_t p = {NULL, 0, 0};
    int freeing = 0, claim_q = -1, asked = 0;
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state == SLOT_FREE)
            continue;
        /* lines first: a job's lines come before its end in the log */
        if (!s->lost && (s->logq_n > 0 || s->progress >= 0) && append_logs(w, &p, i))
            goto send;
        if (s->state == SLOT_RUNNING && !s->lost && now >= s->renew_at && append_renew(w, &p, i))
            goto send;
        if (s->state == SLOT_ENDED) {
            if (append_complete(w, &p, i))
                goto send;
            freeing++;
        }
    }
    if (now >= w->heartbeat_at) {
        if (append_heartbeat(w, &p))
            goto send;
        w->heartbeat_at = now + HEARTBEAT_MS;
    }
    if (!w->stopping) {
        int avail = free_now + freeing;
        /* a job that ends makes room: claim the next one in the same round trip */
        if ((w->claim_needed || (w->maybe_more && freeing > 0)) && avail > 0) {
            /* the first queue here; the next ones below, while slots stay free */
            claim_q = 0;
            asked = avail;
            w->claim_needed = 0;
            if (append_claim(w, &p, 0, avail))
                goto send;
        }
        /* queues not claimed from for a while: still promote due jobs, take back leases */
        for (int q = claim_q < 0 ? 0 : 1; q < w->o->nqueues; q++)
            if (now - w->last_claim_at[q] >= TICK_MS && append_claim(w, &p, q, 0))
                goto send;
    }
send:;
    size_t *consumed = calloc((size_t)w->nslots, sizeof *consumed);
    int *lines = calloc((size_t)w->nslots, sizeof *lines);
    if (consumed == NULL || lines == NULL)
        abort();
    int i = 0, got = 0;
    for (; i < p.n; i++) {
        redisReply *rep = jg_redis_get_reply(&w->cmd);
        if (rep == NULL)
            break;   /* connection lost: the rest is sent again once it is back */
        item_t *it = &p.items[i];
        size_t c = 0;
        got += handle_reply(w, it, rep, &c);
        if (it->kind == ITEM_LOG && c) {
            consumed[it->slot] += c;
            lines[it->slot] += it->nlines;
        }
        freeReplyObject(rep);
    }
    for (int k = 0; k < w->nslots; k++)
        if (consumed[k]) {
            logq_consume(&w->slots[k], consumed[k], lines[k]);
            w->slots[k].log_sent += lines[k];
        }
    if (i < p.n)
        w->claim_needed = 1;   /* lost mid-way: claims we did not hear back from are redone */
    for (int k = i; k < p.n; k++)   /* ... after their jobs are given back */
        if (p.items[k].kind == ITEM_CLAIM && p.items[k].nlines > 0)
            w->giveback[p.items[k].qi] = 1;
    free(consumed);
    free(lines);
    free(p.items);
    if (claim_q < 0 || i < p.n)
        return;

    /* further queues, in the order given, while slots stay free */
    for (int q = 1; q < w->o->nqueues && got < asked; q++) {
        pipeline_t p2 = {NULL, 0, 0};
        int want = count_state(w, SLOT_FREE);
        if (want == 0)
            break;
        if (append_claim(w, &p2, q, want) == JG_OK) {
            redisReply *rep = jg_redis_get_reply(&w->cmd);
            if (rep) {
                size_t c = 0;
                got += handle_reply(w, &p2.items[0], rep, &c);
                freeReplyObject(rep);
            } else {
                w->claim_needed = 1;
                w->giveback[q] = 1;
            }
        }
        free(p2.items);
        if (w->claim_needed)
            break;
    }
    w->maybe_more = got >= asked;
    w->claim_needed = 0;   /* this claim covered every free slot, completions above included */
}

/* ---- the subscriber ---------------------------------------------------------------------- */

/* The subscriber thread (events.h) holds the shard channels of the worker's queues: each
 * queue's wake channel and this worker's cancel channel in that queue's slot. Its callback
 * posts what it gets to the worker's inbox; the loop reads it when its eventfd says so. */
typedef struct sub_item {
    jg_mail_t mail;            /* first: posted to w->inbox */
    int resync;
    size_t len;
    char channel[JG_KEY_MAX];
    char msg[];
} sub_item_t;

static void on_subscriber(void *ctx, const char *channel, const char *msg, size_t len, int resync)
{
    worker_t *w = ctx;
    sub_item_t *it = malloc(sizeof *it + len + 1);
    if (it == NULL)
        abort();
    it->resync = resync;
    it->len = len;
    snprintf(it->channel, sizeof it->channel, "%s", channel);
    if (len)
        memcpy(it->msg, msg, len);
    it->msg[len] = '\0';
    jg_mailbox_post(&w->inbox, &it->mail);
}

static void subscribe(worker_t *w)
{
    w->sub = jg_subscriber_start(w->cfg, on_subscriber, w);
    if (w->sub == NULL)
        return;
    char chan[JG_KEY_MAX];
    for (int q = 0; q < w->o->nqueues; q++) {
        jg_subscriber_want(w->sub, w->proto.q[q].wake);
        jg_chan_worker(w->cfg, w->proto.q[q].tag, w->o->id, chan);
        jg_subscriber_want(w->sub, chan);
    }
}

static void on_message(worker_t *w, const sub_item_t *m)
{
    if (m->resync) {
        /* (re)subscribed: what happened while we were not listening, look again */
        w->claim_needed = 1;
        int64_t now = jg_monotonic_ms();
        for (int i = 0; i < w->nslots; i++)
            if (w->slots[i].state == SLOT_RUNNING)
                w->slots[i].renew_at = now;   /* a renewal also tells of missed cancels */
        return;
    }
    for (int q = 0; q < w->o->nqueues; q++)
        if (strcmp(m->channel, w->proto.q[q].wake) == 0) {
            if (jg_worker_command(w->o, m->msg) != NULL)
                w->claim_needed = 1;
            return;
        }
    if (strncmp(m->msg, "cancel ", 7) != 0)
        return;
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state == SLOT_RUNNING && strcmp(s->id, m->msg + 7) == 0) {
            jg_log_info("cancel requested: stopping job", "job", s->id, NULL);
            stop_slot(w, s, STOP_CANCEL);
        }
    }
}

static void read_subscriber(worker_t *w)
{
    sub_item_t *it = (sub_item_t *)jg_mailbox_take(&w->inbox);
    while (it) {
        sub_item_t *next = (sub_item_t *)it->mail.next;
        on_message(w, it);
        free(it);
        it = next;
    }
}

/* ---- signals and timers ------------------------------------------------------------------ */

static void begin_stop(worker_t *w, const char *why)
{
    int64_t now = jg_monotonic_ms();
    if (w->stopping) {
        if (w->stop_deadline > now) {
            jg_log_warn("second signal: stopping running jobs now", NULL);
            w->stop_deadline = now;
        }
        return;
    }
    char grace[32];
    snprintf(grace, sizeof grace, "%g", w->o->grace);
    jg_log_info("stopping: no new claims; running jobs may finish", "signal", why, "grace", grace,
                NULL);
    w->stopping = 1;
    w->stop_deadline = now + (int64_t)(w->o->grace * 1000);
    w->give_up_at = w->stop_deadline + KILL_AFTER_MS + REPORT_AFTER_STOP_MS;
    w->heartbeat_at = now;
}

static void on_signals(worker_t *w)
{
    struct signalfd_siginfo si;
    while (read(w->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGTERM)
            begin_stop(w, "SIGTERM");
        else if (si.ssi_signo == SIGINT)
            begin_stop(w, "SIGINT");
    }
    /* Exited children are looked at first without being reaped (WNOWAIT): a job's leader is
     * reaped only by jg_child_reap, after its group was killed, so that no group is signalled
     * once its id could belong to an unrelated process group. */
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
            break;
        pid_t pid = info.si_pid;
        slot_t *s = NULL;
        for (int i = 0; i < w->nslots && s == NULL; i++)
            if (w->slots[i].state == SLOT_RUNNING && w->slots[i].child.pid == pid)
                s = &w->slots[i];
        if (s != NULL) {
            int st = 0;
            if (!jg_child_reap(&s->child, &st))
                break;   /* cannot happen (it was waitable): do not spin */
            slot_exited(w, s, st);
            continue;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        jg_child_forget(pid);
        if (pid == jg_keeper_pid()) {
            jg_log_warn("keeper process ended; starting a new one", NULL);
            jg_keeper_exited();
            if (jg_keeper_start() > 0)
                for (int i = 0; i < w->nslots; i++) {
                    jg_jobdir_rekeep(&w->slots[i].jobdir);
                    if (w->slots[i].state == SLOT_RUNNING)
                        jg_keeper_add(w->slots[i].child.pid, w->slots[i].child.dir);
                }
        }
        /* else: a child no slot holds any more (left unreaped at a cleanup), or a process a
         * job started that outlived its parents (the worker is their subreaper): reaped above */
    }
}

static void run_timers(worker_t *w)
{
    int64_t now = jg_monotonic_ms();
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state != SLOT_RUNNING)
            continue;
        if (!s->lost && s->stop != STOP_EXPIRED && s->lease_end && now >= s->lease_end) {
            /* no renewal got through (Redis away or too slow) and the lease has run out:
             * another worker may take the job back and run it, so this one must not go on */
            jg_log_warn("lease ran out without a renewal: killing the job", "job", s->id, NULL);
            stop_slot(w, s, STOP_EXPIRED);
        }
        if (s->stop == STOP_NONE && now >= s->term_at) {
            char t[32];
            jg_seconds_text(s->timeout_ms, t, sizeof t);
            jg_log_info("timeout: stopping job", "job", s->id, "timeout_s", t, NULL);
            stop_slot(w, s, STOP_TIMEOUT);
        }
        if (s->kill_at && now >= s->kill_at) {
            jg_child_signal(&s->child, SIGKILL);
            s->kill_at = 0;
        }
        if (w->stopping && now >= w->stop_deadline)
            stop_slot(w, s, STOP_SHUTDOWN);
    }
    if (now >= w->tick_at) {
        w->tick_at = now + TICK_MS;
        w->claim_needed = 1;
    }
    if (w->delayed_at && now >= w->delayed_at) {
        w->delayed_at = 0;
        w->claim_needed = 1;
    }
}

static int poll_timeout(worker_t *w)
{
    int64_t now = jg_monotonic_ms(), next = w->tick_at;
    /* what needs Redis waits, while it is away, until the backoff allows a new connection */
    int64_t redis_at = w->cmd.ctx && w->cmd.retry_at <= now ? now   /* (a cluster node's) */
                       : w->cmd.retry_at > now ? w->cmd.retry_at : now + 50;
#define EARLIER(t) do { if ((t) > 0 && (t) < next) next = (t); } while (0)
#define EARLIER_REDIS(t) do { if ((t) > 0) EARLIER((t) < redis_at ? redis_at : (t)); } while (0)
    EARLIER_REDIS(w->heartbeat_at);
    EARLIER(w->delayed_at);
    if (w->stopping) {
        if (w->stop_deadline > now)
            EARLIER(w->stop_deadline);
        EARLIER(w->give_up_at);
    }
    int pending = 0;
    for (int i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];
        if (s->state == SLOT_RUNNING) {
            if (s->stop == STOP_NONE)
                EARLIER(s->term_at);
            EARLIER(s->kill_at);
            if (!s->lost) {
                EARLIER_REDIS(s->renew_at);
                if (s->stop != STOP_EXPIRED)
                    EARLIER(s->lease_end);
            }
        }
        pending |= s->state == SLOT_ENDED || (!s->lost && (s->logq_n > 0 || s->progress >= 0));
    }
    if (w->claim_needed && !w->stopping && count_state(w, SLOT_FREE) > 0)
        pending = 1;
    /* something for Redis: at once, or, while it is away, when the backoff allows */
    if (pending)
        EARLIER(redis_at);
#undef EARLIER_REDIS
#undef EARLIER
    int64_t ms = next - now;
    return ms < 0 ? 0 : ms > TICK_MS ? TICK_MS : (int)ms;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void say_goodbye(worker_t *w)
{
    char key[JG_KEY_MAX], set[JG_KEY_MAX], what[JG_KEY_MAX + 16];
    snprintf(what, sizeof what, "worker:%s", w->o->id);
    jg_key_global(w->cfg, what, key);
    jg_key_global(w->cfg, "workers", set);
    if (jg_redis_append(&w->cmd, "DEL %s", key) || jg_redis_append(&w->cmd, "ZREM %s %s", set, w->o->id))
        return;
    for (int i = 0; i < 2; i++) {
        redisReply *rep = jg_redis_get_reply(&w->cmd);
        if (rep == NULL)
            return;
        freeReplyObject(rep);
    }
}

int jg_worker_run(const jg_config_t *cfg, const jg_worker_opts_t *opts)
{
    int rc = 1;
    worker_t w;
    struct pollfd *fds = NULL;
    int *fd_slot = NULL;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.o = opts;
    w.sigfd = -1;
    w.inbox.efd = -1;   /* nothing to destroy until jg_mailbox_init */
    w.nslots = opts->concurrency;
    w.started_ms = jg_now_ms();
    if (gethostname(w.host, sizeof w.host - 1) != 0)
        snprintf(w.host, sizeof w.host, "unknown");

    /* the keeper first, while the process is small and holds no sockets */
    if (jg_keeper_start() < 0)
        jg_log_warn("cannot start the keeper process: jobs of a killed worker may outlive it",
                    NULL);

    jg_child_init();
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    w.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w.sigfd < 0) {
        jg_log_error("signalfd failed", "error", strerror(errno), NULL);
        goto out;
    }

    w.slots = calloc((size_t)w.nslots, sizeof *w.slots);
    fds = calloc((size_t)(2 * w.nslots + 2), sizeof *fds);
    fd_slot = calloc((size_t)(2 * w.nslots + 2), sizeof *fd_slot);
    if (!w.slots || !fds || !fd_slot)
        abort();
    for (int i = 0; i < w.nslots; i++) {
        slot_free(&w.slots[i]);
        jg_jobdir_init(&w.slots[i].jobdir, i);
    }
    jg_redis_init(&w.cmd, cfg, CMD_TIMEOUT_MS);
    jg_proto_init(&w.proto, &w.cmd, cfg, opts);
    w.claim_needed = 1;
    if (jg_mailbox_init(&w.inbox) != 0) {
        jg_log_error("eventfd failed", "error", strerror(errno), NULL);
        goto out;
    }
    subscribe(&w);   /* after the signal mask: its thread blocks those signals too */
    if (w.sub == NULL) {
        jg_log_error("cannot start the subscriber", NULL);
        goto out;
    }

    char conc[16];
    snprintf(conc, sizeof conc, "%d", w.nslots);
    jg_log_info("worker started", "worker", opts->id, "concurrency", conc, NULL);

    for (;;) {
        int n = 0;
        fds[n].fd = w.sigfd;
        fds[n].events = POLLIN;
        fd_slot[n++] = -1;
        int sub_i = n;
        fds[n].fd = w.inbox.efd;
        fds[n].events = POLLIN;
        fd_slot[n++] = -1;
        for (int i = 0; i < w.nslots; i++) {
            slot_t *s = &w.slots[i];
            if (s->state != SLOT_RUNNING)
                continue;
            if (s->child.out_fd >= 0) {
                fds[n].fd = s->child.out_fd;
                fds[n].events = POLLIN;
                fd_slot[n++] = i;
            }
            if (s->child.err_fd >= 0) {
                fds[n].fd = s->child.err_fd;
                fds[n].events = POLLIN;
                fd_slot[n++] = i;
            }
        }
        int ready = poll(fds, (nfds_t)n, poll_timeout(&w));
        if (ready < 0 && errno != EINTR) {
            jg_log_error("poll failed", "error", strerror(errno), NULL);
            goto out;
        }
        if (ready > 0) {
            for (int k = 0; k < n; k++) {
                if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR)) || fd_slot[k] < 0)
                    continue;
                slot_t *s = &w.slots[fd_slot[k]];
                if (s->state != SLOT_RUNNING)
                    continue;
                if (fds[k].fd == s->child.out_fd)
                    read_pipe(s, &s->child.out_fd, 0, 0);
                else if (fds[k].fd == s->child.err_fd)
                    read_pipe(s, &s->child.err_fd, 1, 0);
            }
            if (fds[sub_i].revents & POLLIN)
                read_subscriber(&w);
            if (fds[0].revents & POLLIN)
                on_signals(&w);
        }
        run_timers(&w);
        flush(&w);
        if (w.stopping) {
            if (count_state(&w, SLOT_FREE) == w.nslots)
                break;
            if (jg_monotonic_ms() >= w.give_up_at) {
                jg_log_error("giving up reporting outcomes (Redis unreachable); their leases will "
                             "run out and other workers retry them", NULL);
                break;
            }
        }
    }
    rc = 0;
out:
    for (int i = 0; w.slots && i < w.nslots; i++) {
        if (w.slots[i].state == SLOT_RUNNING)
            jg_child_cleanup(&w.slots[i].child);
        slot_free(&w.slots[i]);
        jg_jobdir_close(&w.slots[i].jobdir);
    }
    if (w.cmd.ctx)
        say_goodbye(&w);
    jg_keeper_stop();
    jg_redis_close(&w.cmd);
    jg_subscriber_stop(w.sub);
    jg_mailbox_destroy(&w.inbox);   /* and frees what is still posted */
    if (w.sigfd >= 0)
        close(w.sigfd);
    free(w.slots);
    free(fds);
    free(fd_slot);
    jg_log_info("worker stopped", "worker", opts->id, NULL);
    return rc;
}
