/* events.c — the shard-channel subscriber thread (see events.h). The thread alone owns the
 * channel table and the node connections; other threads only queue want/unwant operations
 * (their mailbox, mailbox.h), which wakes it. */
#include "events.h"
#include "cluster.h"
#include "keys.h"
#include "log.h"
#include "mailbox.h"
#include "redis.h"
#include "replyreader.h"
#include "timefmt.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB_LINGER_MS  30000   /* an unwanted channel stays subscribed this long */
#define SUB_IDLE_MAX   64      /* and at most this many unwanted channels stay */
#define SUB_PING_MS    15000   /* a silent node connection is checked this often */
#define SUB_PONG_MS    5000    /* and dropped (then made again) if no answer by then */
#define SUB_NODES_MAX  64
#define SUB_RETRY_MS   100     /* a channel that could not be placed is tried again after this */

enum { C_WANT, C_PENDING, C_ON };   /* to subscribe; SSUBSCRIBE sent; confirmed */

typedef struct op {
    jg_mail_t mail;            /* first: posted to the thread's mailbox */
    int delta;                 /* +1 want, -1 unwant */
    char channel[];
} op_t;

typedef struct chan {
    char name[JG_KEY_MAX];
    unsigned slot;
    long refs;
    int state;
    int node;                  /* index in nodes, -1: none */
    int64_t idle_since;        /* monotonic ms refs fell to 0 */
} chan_t;

typedef struct node {
    char host[256];            /* "": REDIS_URL's own host, port or unix socket (one Redis) */
    int port;
    redisContext *c;
    int64_t ping_at, pong_due, retry_at;
    int backoff_ms, failing;
    int nchans;                /* channels placed here (counted each turn) */
} node_t;

struct jg_subscriber {
    const jg_config_t *cfg;
    jg_event_fn fn;
    void *ctx;
    pthread_t thread;
    jg_mailbox_t ops;          /* want/unwant from other threads (op_t) */
    atomic_int stopping;
    /* the thread's own */
    jg_redis_t ctl;            /* CLUSTER SLOTS, and the handshake settings of node connections */
    jg_cluster_t *map;         /* cluster: the slot map this thread reads; NULL: one Redis */
    int map_stale;
    int64_t map_retry_at, place_retry_at, error_logged_at;
    chan_t *chans;
    size_t nchans, cap;
    node_t nodes[SUB_NODES_MAX];
    int nnodes;
};

/* ---- the table -------------------------------------------------------------------------- */

static chan_t *chan_find(jg_subscriber_t *s, const char *name)
{
    for (size_t i = 0; i < s->nchans; i++)
        if (strcmp(s->chans[i].name, name) == 0)
            return &s->chans[i];
    return NULL;
}

static void chan_remove(jg_subscriber_t *s, size_t i)
{
    s->chans[i] = s->chans[--s->nchans];
}

static void apply_ops(jg_subscriber_t *s, int64_t now)
{
    op_t *op = (op_t *)jg_mailbox_take(&s->ops);
    while (op) {
        op_t *next = (op_t *)op->mail.next;
        chan_t *c = chan_find(s, op->channel);
        if (c == NULL && op->delta > 0) {
            if (s->nchans == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 16;
                s->chans = realloc(s->chans, s->cap * sizeof *s->chans);
                if (s->chans == NULL)
                    abort();
            }
            c = &s->chans[s->nchans++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s", op->channel);
            c->slot = jg_cluster_key_slot(c->name, strlen(c->name));
            c->state = C_WANT;
            c->node = -1;
        }
        if (c) {
            c->refs += op->delta;
            if (c->refs <= 0) {
                c->refs = 0;
                c->idle_since = now;
            }
        }
        free(op);
        op = next;
    }
}

/* ---- node connections ------------------------------------------------------------------- */

static int node_index(jg_subscriber_t *s, const char *host, int port)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].port == port && strcmp(s->nodes[i].host, host) == 0)
            return i;
    int i = s->nnodes;
    if (i == SUB_NODES_MAX) {   /* a long-lived cluster that changed a lot: reuse an idle one */
        for (i = 0; i < SUB_NODES_MAX; i++)
            if (s->nodes[i].c == NULL)
                break;
        if (i == SUB_NODES_MAX)
            return -1;
    } else {
        s->nnodes++;
    }
    memset(&s->nodes[i], 0, sizeof s->nodes[i]);
    snprintf(s->nodes[i].host, sizeof s->nodes[i].host, "%s", host);
    s->nodes[i].port = port;
    return i;
}

static void node_drop(jg_subscriber_t *s, int idx, const char *why, int64_t now)
{
    node_t *n = &s->nodes[idx];
    if (n->c) {
        char port[16];
        snprintf(port, sizeof port, "%d", n->port);
        jg_log_warn("subscriber connection lost; subscribing again", "node",
                    n->host[0] ? n->host : "redis", "port", port, "error", why, NULL);
        redisFree(n->c);
        n->c = NULL;
    }
    n->pong_due = 0;
    for (size_t i = 0; i < s->nchans; i++)
        if (s->chans[i].node == idx) {
            s->chans[i].node = -1;
            s->chans[i].state = C_WANT;
        }
    if (s->map)
        s->map_stale = 1;   /* a failed master: its replica may own its slots now */
    (void)now;
}

static int node_connect(jg_subscriber_t *s, int idx, int64_t now)
{
    node_t *n = &s->nodes[idx];
    if (n->c)
        return 0;
    if (now < n->retry_at)
        return -1;
    char why[256];
    n->c = jg_redis_open(&s->ctl, n->host[0] ? n->host : NULL, n->port, why, sizeof why);
    if (n->c == NULL) {
        n->backoff_ms = n->backoff_ms ? (n->backoff_ms * 2 > 2000 ? 2000 : n->backoff_ms * 2)
                                      : 100;
        n->retry_at = now + n->backoff_ms;
        if (!n->failing++)
            jg_log_warn("subscriber cannot connect; retrying", "error", why, NULL);
        if (s->map)
            s->map_stale = 1;
        return -1;
    }
    n->backoff_ms = 0;
    n->failing = 0;
    n->ping_at = now + SUB_PING_MS;
    n->pong_due = 0;
    return 0;
}

static int node_flush(jg_subscriber_t *s, int idx, int64_t now)
{
    node_t *n = &s->nodes[idx];
    int done = 0;
    while (n->c && !done)
        if (redisBufferWrite(n->c, &done) != REDIS_OK) {
            node_drop(s, idx, n->c->errstr[0] ? n->c->errstr : "write failed", now);
            return -1;
        }
    return 0;
}

/* ---- placing channels ------------------------------------------------------------------- */

static int refresh_map(jg_subscriber_t *s, int64_t now)
{
    if (now < s->map_retry_at)
        return -1;
    redisReply *rep = jg_redis_cmd(&s->ctl, "CLUSTER SLOTS");
    const char *asked = s->ctl.ctx && s->ctl.ctx->tcp.host ? s->ctl.ctx->tcp.host : "127.0.0.1";
    int ok = rep && jg_cluster_load_map(s->map, rep, asked) > 0;
    if (rep)
        freeReplyObject(rep);
    if (!ok) {
        s->map_retry_at = now + 200;
        return -1;
    }
    s->map_stale = 0;
    return 0;
}

/* The node to subscribe c on, connected; -1 when none now (tried again later). */
static int place(jg_subscriber_t *s, const chan_t *c, int64_t now)
{
    int idx;
    if (s->map == NULL) {
        idx = s->nnodes ? 0 : node_index(s, "", 0);
    } else {
        if (s->map_stale && refresh_map(s, now))
            return -1;
        const char *host;
        int port;
        if (jg_cluster_slot_owner(s->map, c->slot, &host, &port)) {
            s->map_stale = 1;
            return -1;
        }
        idx = node_index(s, host, port);
    }
    if (idx < 0 || node_connect(s, idx, now))
        return -1;
    return idx;
}

/* Subscribes what is wanted, unsubscribes what lingered long enough, closes unused nodes. */
static void maintain(jg_subscriber_t *s, int64_t now)
{
    size_t idle = 0;
    for (size_t i = 0; i < s->nchans; i++)
        idle += s->chans[i].refs == 0;
    for (size_t i = 0; i < s->nchans;) {
        chan_t *c = &s->chans[i];
        if (c->refs == 0 && (now - c->idle_since >= SUB_LINGER_MS || idle > SUB_IDLE_MAX ||
                             c->state == C_WANT)) {
            if (c->node >= 0 && s->nodes[c->node].c)
                redisAppendCommand(s->nodes[c->node].c, "SUNSUBSCRIBE %s", c->name);
            chan_remove(s, i);
            idle--;
            continue;
        }
        if (c->state == C_WANT && now >= s->place_retry_at) {
            int idx = place(s, c, now);
            if (idx < 0) {
                s->place_retry_at = now + SUB_RETRY_MS;
            } else {
                redisAppendCommand(s->nodes[idx].c, "SSUBSCRIBE %s", c->name);
                c->node = idx;
                c->state = C_PENDING;
            }
        }
        i++;
    }
    for (int k = 0; k < s->nnodes; k++)
        s->nodes[k].nchans = 0;
    for (size_t i = 0; i < s->nchans; i++)
        if (s->chans[i].node >= 0)
            s->nodes[s->chans[i].node].nchans++;
    for (int k = 0; k < s->nnodes; k++) {
        node_t *n = &s->nodes[k];
        if (n->c == NULL)
            continue;
        if (node_flush(s, k, now))
            continue;
        if (n->nchans == 0) {   /* nothing subscribed there any more */
            redisFree(n->c);
            n->c = NULL;
        } else if (n->pong_due && now >= n->pong_due) {
            node_drop(s, k, "no answer to PING", now);
        } else if (!n->pong_due && now >= n->ping_at) {
            redisAppendCommand(n->c, "PING");
            n->pong_due = now + SUB_PONG_MS;
            node_flush(s, k, now);
        }
    }
}

/* ---- replies ---------------------------------------------------------------------------- */

static int is_str(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

static void on_error(jg_subscriber_t *s, int idx, const redisReply *m, int64_t now)
{
    int ask, slot = -1, port;
    char host[256];
    int moved = s->map && jg_cluster_parse_redirect(m->str, m->len, &ask, &slot, host,
                                                    sizeof host, &port) == 0;
    /* An SSUBSCRIBE refused (MOVED: the slot is elsewhere; CLUSTERDOWN, TRYAGAIN...): the
     * channels waiting for an answer there are placed again, after a new map. */
    for (size_t i = 0; i < s->nchans; i++) {
        chan_t *c = &s->chans[i];
        if (c->node == idx && c->state == C_PENDING && (!moved || (int)c->slot == slot)) {
            c->state = C_WANT;
            c->node = -1;
        }
    }
    if (s->map)
        s->map_stale = 1;
    if (!moved) {
        s->place_retry_at = now + 500;
        if (now - s->error_logged_at > 10000) {
            s->error_logged_at = now;
            jg_log_warn("subscribe refused; retrying", "error", m->str, NULL);
        }
    }
}

static void on_reply(jg_subscriber_t *s, int idx, const redisReply *m, int64_t now)
{
    node_t *n = &s->nodes[idx];
    n->pong_due = 0;   /* any answer shows the connection is alive */
    n->ping_at = now + SUB_PING_MS;
    if (m->type == REDIS_REPLY_ERROR) {
        on_error(s, idx, m, now);
        return;
    }
    if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 || m->element[1]->type != REDIS_REPLY_STRING)
        return;   /* ["pong", ""] and the like */
    const redisReply *kind = m->element[0];
    const char *name = m->element[1]->str;
    if (is_str(kind, "smessage") && m->elements == 3 && m->element[2]->type == REDIS_REPLY_STRING) {
        s->fn(s->ctx, name, m->element[2]->str, m->element[2]->len, 0);
        return;
    }
    chan_t *c = chan_find(s, name);
    if (c == NULL || c->node != idx)
        return;   /* the answer to a SUNSUBSCRIBE of ours, or about a channel placed again */
    if (is_str(kind, "ssubscribe") && c->state == C_PENDING) {
        c->state = C_ON;
        s->fn(s->ctx, c->name, NULL, 0, 1);
    } else if (is_str(kind, "sunsubscribe")) {
        /* Pushed by Redis when the channel's slot moved to another master (or the answer to a
         * SUNSUBSCRIBE of ours that crossed a new want): subscribe again where it lives now. */
        c->state = C_WANT;
        c->node = -1;
        if (s->map)
            s->map_stale = 1;
    }
}

static void read_node(jg_subscriber_t *s, int idx, int64_t now)
{
    node_t *n = &s->nodes[idx];
    if (redisBufferRead(n->c) != REDIS_OK) {
        node_drop(s, idx, n->c->errstr[0] ? n->c->errstr : "connection closed", now);
        return;
    }
    void *reply = NULL;
    while (n->c && jg_reply_next(n->c, &reply) == REDIS_OK && reply) {
        on_reply(s, idx, reply, now);
        freeReplyObject(reply);
        reply = NULL;
    }
    if (n->c && n->c->err)
        node_drop(s, idx, n->c->errstr, now);
}

/* ---- the thread ------------------------------------------------------------------------- */

static void *subscriber_main(void *arg)
{
    jg_subscriber_t *s = arg;
    while (!atomic_load(&s->stopping)) {
        int64_t now = jg_monotonic_ms();
        apply_ops(s, now);
        maintain(s, now);
        struct pollfd fds[SUB_NODES_MAX + 1];
        int who[SUB_NODES_MAX + 1];
        int nfds = 0;
        fds[nfds++] = (struct pollfd){.fd = s->ops.efd, .events = POLLIN};
        int64_t next = now + 1000;
        for (int k = 0; k < s->nnodes; k++) {
            node_t *n = &s->nodes[k];
            if (n->c == NULL)
                continue;
            who[nfds] = k;
            fds[nfds++] = (struct pollfd){.fd = n->c->fd, .events = POLLIN};
            int64_t t = n->pong_due ? n->pong_due : n->ping_at;
            if (t < next)
                next = t;
        }
        for (size_t i = 0; i < s->nchans; i++) {
            const chan_t *c = &s->chans[i];
            int64_t t = c->state == C_WANT ? s->place_retry_at
                      : c->refs == 0       ? c->idle_since + SUB_LINGER_MS
                                           : next;
            if (t < next)
                next = t;
        }
        int timeout = next <= now ? 0 : (int)(next - now);
        if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
            break;
        now = jg_monotonic_ms();
        for (int i = 1; i < nfds; i++)
            if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && s->nodes[who[i]].c)
                read_node(s, who[i], now);
    }
    for (int k = 0; k < s->nnodes; k++)
        if (s->nodes[k].c)
            redisFree(s->nodes[k].c);
    jg_redis_close(&s->ctl);
    return NULL;
}

jg_subscriber_t *jg_subscriber_start(const jg_config_t *cfg, jg_event_fn fn, void *ctx)
{
    jg_subscriber_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->cfg = cfg;
    s->fn = fn;
    s->ctx = ctx;
    jg_redis_init(&s->ctl, cfg, 2000);
    if (cfg->redis_cluster) {
        s->map = jg_cluster_new(cfg);
        s->map_stale = 1;
    }
    if (jg_mailbox_init(&s->ops) != 0 ||
        pthread_create(&s->thread, NULL, subscriber_main, s) != 0) {
        jg_mailbox_destroy(&s->ops);
        jg_redis_close(&s->ctl);
        jg_cluster_free(s->map);
        free(s);
        return NULL;
    }
    return s;
}

static void push_op(jg_subscriber_t *s, const char *channel, int delta)
{
    size_t len = strlen(channel);
    if (len >= JG_KEY_MAX)
        return;
    op_t *op = malloc(sizeof *op + len + 1);
    if (op == NULL)
        abort();
    op->delta = delta;
    memcpy(op->channel, channel, len + 1);
    jg_mailbox_post(&s->ops, &op->mail);
}

void jg_subscriber_want(jg_subscriber_t *s, const char *channel) { push_op(s, channel, 1); }
void jg_subscriber_unwant(jg_subscriber_t *s, const char *channel) { push_op(s, channel, -1); }

void jg_subscriber_stop(jg_subscriber_t *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, 1);
    jg_mailbox_wake(&s->ops);
    pthread_join(s->thread, NULL);
    jg_mailbox_destroy(&s->ops);   /* and the ops never applied */
    jg_cluster_free(s->map);
    free(s->chans);
    free(s);
}
