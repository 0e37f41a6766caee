/* cluster.c — the Redis Cluster protocol under the one call path: key slots, the slot map,
 * MOVED/ASK, one lazily opened connection per node, pipelines across nodes (see cluster.h).
 * Replies and error texts come from Redis: semi-trusted, every length and index is checked. */
#include "cluster.h"
#include "durable.h"
#include "log.h"
#include "redis.h"
#include "replyreader.h"
#include "scripts.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NODES 256
#define MAX_TRIES 6            /* redirections and retries of one command */
#define NO_NODE 0xffff
#define HOST_MAX 256

typedef struct node {
    char host[HOST_MAX];
    int port;
    redisContext *ctx;         /* NULL until first used, or after a failure */
    unsigned gen;              /* connections opened so far: a pending reply is of one */
    int64_t retry_at;          /* after a failed connect: monotonic ms before which none is tried */
    int backoff_ms;            /* the next wait after a failed connect (0: none failed) */
} node_t;

typedef struct pending {
    int node;                  /* where it was sent; -1: answered at append time */
    unsigned gen;              /* on which connection of that node */
    char *cmd;                 /* the command, kept to send again after a redirection */
    size_t len;
    redisReply *reply;
    int done;                  /* reply read (it may be NULL: the node failed) */
    int wait;                  /* a WAIT follows it on its node (durable.h) */
} pending_t;

struct jg_cluster {
    uint16_t slot[JG_CLUSTER_SLOTS];   /* slot -> index in nodes, NO_NODE when unknown */
    node_t nodes[MAX_NODES];           /* seeds first, then the nodes the map names; kept */
    int nnodes;
    int nseeds;                        /* nodes[0..nseeds) are REDIS_URL's seeds */
    int home;                          /* the node of r->ctx, -1 when none */
    int stale;                         /* read the map before the next command with a key */
    pending_t *q;                      /* the pipeline: appended, not yet returned */
    size_t nq, head, cap;
};

/* ---- pure parts ---- */

static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned jg_cluster_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t off = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - off);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (JG_CLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (JG_CLUSTER_SLOTS - 1);
}

/* A decimal number of at most 9 digits ending at a '\r' or end: its value, or -1. */
static long small_number(const char *p, const char *end, const char **after)
{
    long v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 10) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || digits > 9)
        return -1;
    *after = p;
    return v;
}

/* The first max arguments of a command in the wire format; returns the argument count, or -1. */
static long wire_args(const char *cmd, size_t len, int max, const char **argv, size_t *lens)
{
    const char *p = cmd, *end = cmd + len;
    if (p >= end || *p++ != '*')
        return -1;
    long argc = small_number(p, end, &p);
    if (argc < 1 || end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return -1;
    p += 2;
    for (long i = 0; i < argc; i++) {
        if (p >= end || *p++ != '$')
            return -1;
        long n = small_number(p, end, &p);
        if (n < 0 || end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return -1;
        p += 2;
        if (end - p < n + 2 || p[n] != '\r' || p[n + 1] != '\n')
            return -1;
        if (i < max) {
            argv[i] = p;
            lens[i] = (size_t)n;
        }
        p += n + 2;
    }
    return p == end ? argc : -1;
}

static int word_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* The commands jobgate sends whose key is their first argument. Any other command is sent to
 * the home node; a MOVED would still put a keyed one right, at the cost of a round trip. */
static const char *const first_arg_key[] = {
    "GET", "SET", "DEL", "EXISTS", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "INCR", "INCRBY",
    "HGET", "HMGET", "HSET", "HGETALL", "HINCRBY", "HDEL", "SADD", "SREM", "SMEMBERS",
    "SISMEMBER", "ZADD", "ZREM", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREMRANGEBYSCORE",
    "ZCARD", "ZSCORE", "XADD", "XRANGE", "XREVRANGE", "XLEN", "LPUSH", "RPUSH", "LRANGE",
    "LLEN", "TYPE", "UNLINK",
};

int jg_cluster_route(const char *cmd, size_t len, const char **key, size_t *keylen)
{
    const char *argv[4];
    size_t lens[4];
    long argc = wire_args(cmd, len, 4, argv, lens);
    if (argc < 0)
        return -1;
    if (word_is(argv[0], lens[0], "EVALSHA") || word_is(argv[0], lens[0], "EVAL")) {
        long nkeys = -1;
        const char *after;
        if (argc >= 3 && lens[2] > 0)
            nkeys = small_number(argv[2], argv[2] + lens[2], &after);
        if (nkeys < 0 || (nkeys > 0 && argc < 4) || (nkeys >= 0 && after != argv[2] + lens[2]))
            return JG_ROUTE_ANY;   /* Redis will refuse it; any node can say so */
        if (nkeys == 0)
            return JG_ROUTE_ANY;
        *key = argv[3];
        *keylen = lens[3];
        return JG_ROUTE_KEY;
    }
    if (word_is(argv[0], lens[0], "SCRIPT") && argc >= 2 &&
        (word_is(argv[1], lens[1], "LOAD") || word_is(argv[1], lens[1], "FLUSH")))
        return JG_ROUTE_ALL;
    if (argc >= 2)
        for (size_t i = 0; i < sizeof first_arg_key / sizeof first_arg_key[0]; i++)
            if (word_is(argv[0], lens[0], first_arg_key[i])) {
                *key = argv[1];
                *keylen = lens[1];
                return JG_ROUTE_KEY;
            }
    return JG_ROUTE_ANY;
}

int jg_cluster_parse_redirect(const char *msg, size_t len, int *ask, int *slot, char *host,
                              size_t hostcap, int *port)
{
    const char *p = msg, *end = msg + len;
    if (len > 6 && memcmp(msg, "MOVED ", 6) == 0) {
        *ask = 0;
        p += 6;
    } else if (len > 4 && memcmp(msg, "ASK ", 4) == 0) {
        *ask = 1;
        p += 4;
    } else {
        return -1;
    }
    long s = small_number(p, end, &p);
    if (s < 0 || s >= JG_CLUSTER_SLOTS || p >= end || *p++ != ' ')
        return -1;
    const char *colon = NULL;   /* the last one: "::1:7000" is host ::1, port 7000 */
    for (const char *c = p; c < end; c++)
        if (*c == ':')
            colon = c;
    if (colon == NULL)
        return -1;
    const char *after;
    long pt = small_number(colon + 1, end, &after);
    if (pt < 1 || pt > 65535 || after != end)
        return -1;
    const char *h = p;
    size_t hlen = (size_t)(colon - p);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= hostcap)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] >= 0x7f)
            return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *slot = (int)s;
    *port = (int)pt;
    return 0;
}

/* The node host:port, added when new; -1 when the table is full or host is unusable. */
static int node_index(jg_cluster_t *cl, const char *host, size_t hlen, int port)
{
    if (hlen == 0 || hlen >= HOST_MAX || port < 1 || port > 65535 || memchr(host, '\0', hlen))
        return -1;
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].port == port && strlen(cl->nodes[i].host) == hlen &&
            memcmp(cl->nodes[i].host, host, hlen) == 0)
            return i;
    if (cl->nnodes == MAX_NODES)
        return -1;
    node_t *n = &cl->nodes[cl->nnodes];
    memcpy(n->host, host, hlen);
    n->host[hlen] = '\0';
    n->port = port;
    n->ctx = NULL;
    n->retry_at = 0;
    n->backoff_ms = 0;
    return cl->nnodes++;
}

int jg_cluster_load_map(jg_cluster_t *cl, const redisReply *rep, const char *asked_host)
{
    static _Thread_local uint16_t map[JG_CLUSTER_SLOTS];
    int mapped = 0;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < JG_CLUSTER_SLOTS; i++)
        map[i] = NO_NODE;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            return -1;
        const redisReply *lo = e->element[0], *hi = e->element[1], *m = e->element[2];
        if (lo == NULL || hi == NULL || m == NULL || lo->type != REDIS_REPLY_INTEGER ||
            hi->type != REDIS_REPLY_INTEGER || lo->integer < 0 || hi->integer < lo->integer ||
            hi->integer >= JG_CLUSTER_SLOTS || m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0] == NULL || m->element[1] == NULL ||
            m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            return -1;
        const char *host = m->element[0]->str;
        size_t hlen = m->element[0]->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {   /* "the node you asked" */
            host = asked_host;
            hlen = strlen(asked_host);
        }
        long long port = m->element[1]->integer;
        int idx = node_index(cl, host, hlen, port >= 1 && port <= 65535 ? (int)port : 0);
        if (idx < 0)
            return -1;
        for (long long s = lo->integer; s <= hi->integer; s++) {
            if (map[s] == NO_NODE)
                mapped++;
            map[s] = (uint16_t)idx;
        }
    }
    memcpy(cl->slot, map, sizeof map);
    return mapped;
}

int jg_cluster_slot_owner(const jg_cluster_t *cl, unsigned slot, const char **host, int *port)
{
    if (slot >= JG_CLUSTER_SLOTS || cl->slot[slot] == NO_NODE)
        return -1;
    *host = cl->nodes[cl->slot[slot]].host;
    *port = cl->nodes[cl->slot[slot]].port;
    return 0;
}

jg_cluster_t *jg_cluster_new(const jg_config_t *cfg)
{
    jg_cluster_t *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        abort();
    for (size_t i = 0; i < JG_CLUSTER_SLOTS; i++)
        cl->slot[i] = NO_NODE;
    cl->home = -1;
    cl->stale = 1;
    /* the seeds, as config.c wrote them: host:port or [v6]:port, comma-separated */
    const char *p = cfg->redis_seeds;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *colon = NULL;
        for (const char *c = p; c < p + len; c++)
            if (*c == ':')
                colon = c;
        if (colon) {
            const char *h = p;
            size_t hlen = (size_t)(colon - p);
            if (hlen >= 2 && h[0] == '[') {
                h++;
                hlen -= 2;
            }
            const char *after;
            long port = small_number(colon + 1, p + len, &after);
            node_index(cl, h, hlen, port > 0 && port <= 65535 ? (int)port : 0);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    cl->nseeds = cl->nnodes;
    return cl;
}

/* ---- connections ---- */

static void clear_queue(jg_cluster_t *cl)
{
    for (size_t i = cl->head; i < cl->nq; i++)
        if (cl->q[i].reply)
            freeReplyObject(cl->q[i].reply);
    for (size_t i = 0; i < cl->nq; i++)
        free(cl->q[i].cmd);
    cl->nq = cl->head = 0;
}

void jg_cluster_free(jg_cluster_t *cl)
{
    if (cl == NULL)
        return;
    clear_queue(cl);
    free(cl->q);
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].ctx)
            redisFree(cl->nodes[i].ctx);
    free(cl);
}

void jg_cluster_close_all(jg_redis_t *r)
{
    jg_cluster_t *cl = r->cluster;
    clear_queue(cl);
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].ctx) {
            redisFree(cl->nodes[i].ctx);
            cl->nodes[i].ctx = NULL;
        }
    cl->home = -1;
    cl->stale = 1;
    r->ctx = NULL;
}

/* A node failed: its connection closed, the map to be read again. Replies still pending on it
 * are lost (their entries read NULL). */
static void node_drop(jg_redis_t *r, int idx, const char *why)
{
    jg_cluster_t *cl = r->cluster;
    node_t *n = &cl->nodes[idx];
    if (n->ctx) {
        char where[HOST_MAX + 16];
        snprintf(where, sizeof where, "%s:%d", n->host, n->port);
        jg_log_warn("redis cluster node lost", "node", where, "error", why, NULL);
        redisFree(n->ctx);
        n->ctx = NULL;
    }
    if (idx == cl->home) {
        cl->home = -1;
        r->ctx = NULL;
    }
    cl->stale = 1;
}

/* The connection to a node, opened if needed; NULL when it cannot be reached. A node that
 * failed to connect is not tried again for 100 ms, then 200 ... 2000 ms (as one Redis is, see
 * redis.c), and r->retry_at says until when, so that a loop (the worker's) waits rather than
 * spins while a master is down and its replica not yet promoted. */
static redisContext *node_ctx(jg_redis_t *r, int idx)
{
    node_t *n = &r->cluster->nodes[idx];
    if (n->ctx && r->timeout_ms > 0 && jg_redis_idle_closed(n->ctx))
        node_drop(r, idx, "closed by the server");
    if (n->ctx == NULL) {
        int64_t now = jg_monotonic_ms();
        if (now < n->retry_at) {
            r->cluster->stale = 1;
            return NULL;
        }
        char why[256];
        n->ctx = jg_redis_open(r, n->host, n->port, why, sizeof why);
        n->gen++;
        if (n->ctx == NULL) {
            char where[HOST_MAX + 16];
            snprintf(where, sizeof where, "%s:%d", n->host, n->port);
            if (n->backoff_ms == 0)   /* once per outage */
                jg_log_warn("redis cluster node unreachable", "node", where, "error", why, NULL);
            n->backoff_ms = n->backoff_ms ? (n->backoff_ms * 2 > 2000 ? 2000 : n->backoff_ms * 2)
                                          : 100;
            n->retry_at = now + n->backoff_ms;
            if (r->retry_at < n->retry_at)
                r->retry_at = n->retry_at;
            r->cluster->stale = 1;
        } else {
            n->backoff_ms = 0;
        }
    }
    return n->ctx;
}

int jg_cluster_open_home(jg_redis_t *r, char *why, size_t whylen)
{
    jg_cluster_t *cl = r->cluster;
    snprintf(why, whylen, "no cluster node answers");
    /* the masters of the map first (a seed may be a replica or gone), then every known node */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < cl->nnodes; i++) {
            int is_master = 0;
            for (size_t s = 0; s < JG_CLUSTER_SLOTS && !is_master; s += 1)
                is_master = cl->slot[s] == i;
            if (pass == 0 && !is_master)
                continue;
            if (pass == 1 && is_master)
                continue;
            if (cl->nodes[i].ctx == NULL) {
                cl->nodes[i].ctx = jg_redis_open(r, cl->nodes[i].host, cl->nodes[i].port, why,
                                                 whylen);
                cl->nodes[i].gen++;
                if (cl->nodes[i].ctx == NULL)
                    continue;
            }
            cl->home = i;
            r->ctx = cl->nodes[i].ctx;
            return 0;
        }
    return -1;
}

/* Sends a command on a node (after ASKING when asking) and reads its reply. NULL when the node
 * failed; *sent says whether the command may have reached it. */
static redisReply *send_on(jg_redis_t *r, int idx, const char *cmd, size_t len, int asking,
                           int *sent)
{
    *sent = 0;
    redisContext *c = node_ctx(r, idx);
    if (c == NULL)
        return NULL;
    int waits;
    if ((asking && redisAppendCommand(c, "ASKING") != REDIS_OK) ||
        jg_durable_append(r->cfg, c, cmd, len, &waits)) {
        node_drop(r, idx, "cannot append");
        return NULL;
    }
    *sent = 1;
    void *reply = NULL;
    if (asking) {
        if (jg_reply_get(c, &reply) != REDIS_OK) {
            node_drop(r, idx, c->errstr[0] ? c->errstr : "no reply");
            return NULL;
        }
        freeReplyObject(reply);
    }
    if ((reply = jg_durable_read(r->cfg, c, waits)) == NULL)
        node_drop(r, idx, c->errstr[0] ? c->errstr : "no reply");
    return reply;
}

/* Reads the slot map from the first node that gives one. 0, or -1. */
static int refresh(jg_redis_t *r)
{
    jg_cluster_t *cl = r->cluster;
    for (int tries = 0; tries <= cl->nnodes; tries++) {
        if (r->ctx == NULL) {
            char why[256];
            if (jg_cluster_open_home(r, why, sizeof why))
                return -1;
        }
        int home = cl->home, sent;
        static const char slots_cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
        redisReply *rep = send_on(r, home, slots_cmd, sizeof slots_cmd - 1, 0, &sent);
        if (rep == NULL)
            continue;   /* home dropped: the next node is asked */
        char asked[HOST_MAX];
        snprintf(asked, sizeof asked, "%s", cl->nodes[home].host);
        int n = jg_cluster_load_map(cl, rep, asked);
        if (n < 0 && cl->nnodes == MAX_NODES) {
            /* the table is full of nodes seen over time (replaced hosts): start again from the
             * seeds; the connections, and any reply still pending, are dropped */
            jg_cluster_close_all(r);
            cl->nnodes = cl->nseeds;
            n = jg_cluster_load_map(cl, rep, asked);
        }
        if (n < 0 || n == 0) {
            jg_log_warn("redis cluster: no usable slot map", "error",
                        rep->type == REDIS_REPLY_ERROR ? rep->str : "malformed CLUSTER SLOTS",
                        NULL);
            freeReplyObject(rep);
            return -1;
        }
        freeReplyObject(rep);
        cl->stale = 0;
        return 0;
    }
    return -1;
}

/* The node a routed command goes to: its slot's master, else home. -1 when none is known. */
static int target(jg_redis_t *r, int route, const char *key, size_t keylen)
{
    jg_cluster_t *cl = r->cluster;
    if (route == JG_ROUTE_KEY) {
        if (cl->stale)
            refresh(r);   /* failing, the old map (or home) is tried: Redis redirects */
        unsigned s = jg_cluster_key_slot(key, keylen);
        if (cl->slot[s] != NO_NODE)
            return cl->slot[s];
    }
    if (r->ctx == NULL) {
        char why[256];
        if (jg_cluster_open_home(r, why, sizeof why))
            return -1;
    }
    return cl->home;
}

static void pause_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int is_error(const redisReply *rep, const char *prefix)
{
    size_t n = strlen(prefix);
    return rep && rep->type == REDIS_REPLY_ERROR && rep->len >= n &&
           memcmp(rep->str, prefix, n) == 0;
}

/* NOSCRIPT for an EVALSHA: the script of that SHA, from the ones built in; NULL if unknown. */
static const jg_script_t *script_of(const char *cmd, size_t len)
{
    const char *argv[2];
    size_t lens[2];
    if (wire_args(cmd, len, 2, argv, lens) < 2 || !word_is(argv[0], lens[0], "EVALSHA"))
        return NULL;
    for (size_t i = 0; i < jg_script_count; i++)
        if (strlen(jg_scripts[i].sha1) == lens[1] &&
            strncasecmp(jg_scripts[i].sha1, argv[1], lens[1]) == 0)
            return &jg_scripts[i];
    return NULL;
}

/* Turns a reply of cmd, sent to node idx, into its final answer: redirections followed, a
 * missing script loaded, a cluster that cannot serve the slot made NULL (unavailable).
 *
 * TRYAGAIN (a multi-key command, or a jobgate script, refused while its slot is being migrated:
 * nothing ran) is retried, from the slot's master in the map again, after 5, 10, 20 ... 200 ms,
 * until deadline (monotonic ms; JG_CLUSTER_MIGRATION_WAIT_MS after the first call). Past it, a
 * call (pipelined 0) is NULL, "unavailable"; a pipelined reply is the TRYAGAIN error itself, so
 * that the replies after it are kept and the caller sends that command again later. */
static redisReply *settle(jg_redis_t *r, redisReply *rep, int idx, const char *cmd, size_t len,
                          int64_t deadline, int pipelined)
{
    jg_cluster_t *cl = r->cluster;
    int loaded = 0;
    long wait_ms = 5;
    for (int tries = 0; rep && rep->type == REDIS_REPLY_ERROR; tries++) {
        char host[HOST_MAX];
        int ask, slot, port, asking = 0, sent;
        if (tries == MAX_TRIES) {
            jg_log_warn("redis cluster: too many redirections", "error", rep->str, NULL);
            freeReplyObject(rep);
            return NULL;
        }
        if (jg_cluster_parse_redirect(rep->str, rep->len, &ask, &slot, host, sizeof host,
                                      &port) == 0) {
            const char *h = host[0] ? host : cl->nodes[idx].host;
            int to = node_index(cl, h, strlen(h), port);
            if (to < 0) {
                freeReplyObject(rep);
                return NULL;
            }
            if (ask) {
                asking = 1;
            } else {
                cl->slot[slot] = (uint16_t)to;
                cl->stale = 1;   /* the map is read again before the next command */
            }
            idx = to;
        } else if (is_error(rep, "NOSCRIPT") && !loaded) {
            const jg_script_t *s = script_of(cmd, len);
            if (s == NULL)
                break;
            redisContext *c = node_ctx(r, idx);
            redisReply *l = c ? jg_reply_command(c, "SCRIPT LOAD %s", s->source) : NULL;
            if (l == NULL) {
                node_drop(r, idx, "cannot load a script");
                freeReplyObject(rep);
                return NULL;
            }
            freeReplyObject(l);
            loaded = 1;
        } else if (jg_cluster_is_tryagain(rep)) {
            int64_t now = jg_monotonic_ms();
            if (now >= deadline) {
                jg_log_warn("redis cluster: slot still migrating, giving up", "error", rep->str,
                            NULL);
                if (pipelined)
                    return rep;
                freeReplyObject(rep);
                return NULL;
            }
            pause_ms(now + wait_ms > deadline ? (long)(deadline - now) : wait_ms);
            wait_ms = wait_ms * 2 > 200 ? 200 : wait_ms * 2;
            /* from the slot's master again: an ASK target may have become the owner meanwhile,
             * or the migration may have ended (MOVED) */
            const char *key = NULL;
            size_t keylen = 0;
            int route = jg_cluster_route(cmd, len, &key, &keylen);
            int to = target(r, route, key, keylen);
            if (to < 0) {
                freeReplyObject(rep);
                return NULL;
            }
            idx = to;
            tries = -1;   /* the redirections of each new round are counted afresh */
        } else if (is_error(rep, "CLUSTERDOWN")) {
            cl->stale = 1;
            freeReplyObject(rep);
            return NULL;
        } else {
            break;   /* an error of the command itself */
        }
        freeReplyObject(rep);
        rep = send_on(r, idx, cmd, len, asking, &sent);
    }
    return rep;
}

int jg_cluster_is_tryagain(const redisReply *rep)
{
    return is_error(rep, "TRYAGAIN");
}

/* A command for every master (SCRIPT LOAD): the first reply, or the first error, or NULL. */
static redisReply *broadcast(jg_redis_t *r, const char *cmd, size_t len)
{
    jg_cluster_t *cl = r->cluster;
    if (cl->stale && refresh(r))
        return NULL;
    static _Thread_local unsigned char seen[MAX_NODES];
    memset(seen, 0, sizeof seen);
    redisReply *first = NULL;
    for (size_t s = 0; s < JG_CLUSTER_SLOTS; s++) {
        int idx = cl->slot[s];
        if (idx == NO_NODE || seen[idx])
            continue;
        seen[idx] = 1;
        int sent;
        redisReply *rep = send_on(r, idx, cmd, len, 0, &sent);
        if (rep == NULL) {
            if (first)
                freeReplyObject(first);
            return NULL;
        }
        if (first == NULL || (rep->type == REDIS_REPLY_ERROR &&
                              first->type != REDIS_REPLY_ERROR)) {
            if (first)
                freeReplyObject(first);
            first = rep;
        } else {
            freeReplyObject(rep);
        }
    }
    return first;
}

redisReply *jg_cluster_call(jg_redis_t *r, const char *cmd, size_t len)
{
    const char *key = NULL;
    size_t keylen = 0;
    int route = jg_cluster_route(cmd, len, &key, &keylen);
    if (route < 0)
        abort();   /* hiredis formatted it: cannot happen */
    if (route == JG_ROUTE_ALL)
        return broadcast(r, cmd, len);
    for (int attempt = 0; attempt < 2; attempt++) {
        int idx = target(r, route, key, keylen), sent;
        if (idx < 0)
            return NULL;
        redisReply *rep = send_on(r, idx, cmd, len, 0, &sent);
        if (rep)
            return settle(r, rep, idx, cmd, len,
                          jg_monotonic_ms() + JG_CLUSTER_MIGRATION_WAIT_MS, 0);
        if (sent)
            return NULL;   /* it may have run: not sent again */
        /* the node could not be reached: with the map read again, once more (a failover) */
    }
    return NULL;
}

static void collect(jg_redis_t *r);

int jg_cluster_append(jg_redis_t *r, const char *cmd, size_t len)
{
    jg_cluster_t *cl = r->cluster;
    const char *key = NULL;
    size_t keylen = 0;
    int route = jg_cluster_route(cmd, len, &key, &keylen);
    if (route < 0)
        abort();
    if (cl->nq == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 16;
        pending_t *q = realloc(cl->q, cap * sizeof *q);
        if (q == NULL)
            abort();
        cl->q = q;
        cl->cap = cap;
    }
    /* a map to read, or a broadcast, talks to nodes now: what is pending is read first */
    if ((route == JG_ROUTE_ALL || cl->stale) && cl->head < cl->nq && !cl->q[cl->nq - 1].done)
        collect(r);
    pending_t *p = &cl->q[cl->nq];
    memset(p, 0, sizeof *p);
    p->node = -1;
    if (route == JG_ROUTE_ALL) {
        /* answered now: SCRIPT LOAD is rare (a worker's start) and goes to every master */
        if ((p->reply = broadcast(r, cmd, len)) == NULL)
            return -1;
        p->done = 1;
        cl->nq++;
        return 0;
    }
    int idx = target(r, route, key, keylen);
    redisContext *c = idx >= 0 ? node_ctx(r, idx) : NULL;
    if (c == NULL)
        return -1;
    if ((p->cmd = malloc(len)) == NULL)
        abort();
    memcpy(p->cmd, cmd, len);
    p->len = len;
    p->node = idx;
    p->gen = cl->nodes[idx].gen;
    if (jg_durable_append(r->cfg, c, cmd, len, &p->wait)) {
        free(p->cmd);
        node_drop(r, idx, "cannot append");
        return -1;
    }
    cl->nq++;
    return 0;
}

/* Reads every reply still pending, each from its node in append order, then settles those that
 * were redirected (no reply is pending on any connection by then). */
static void collect(jg_redis_t *r)
{
    jg_cluster_t *cl = r->cluster;
    for (int i = 0; i < cl->nnodes; i++) {   /* every node's commands out before any read */
        redisContext *c = cl->nodes[i].ctx;
        int done = 0;
        while (c && c->obuf[0] != '\0' && !done)
            if (redisBufferWrite(c, &done) != REDIS_OK) {
                node_drop(r, i, c->errstr[0] ? c->errstr : "cannot write");
                break;
            }
    }
    for (size_t i = cl->head; i < cl->nq; i++) {
        pending_t *p = &cl->q[i];
        if (p->done)
            continue;
        p->done = 1;
        redisContext *c = cl->nodes[p->node].ctx;
        if (c == NULL || cl->nodes[p->node].gen != p->gen)
            continue;   /* its connection failed: the reply is lost */
        /* NULL also for a write not acknowledged: as if its node had failed */
        if ((p->reply = jg_durable_read(r->cfg, c, p->wait)) == NULL)
            node_drop(r, p->node, c->errstr[0] ? c->errstr : "no reply");
    }
    int64_t deadline = jg_monotonic_ms() + JG_CLUSTER_MIGRATION_WAIT_MS;   /* for them all */
    for (size_t i = cl->head; i < cl->nq; i++) {
        pending_t *p = &cl->q[i];
        if (p->reply && p->reply->type == REDIS_REPLY_ERROR && p->node >= 0)
            p->reply = settle(r, p->reply, p->node, p->cmd, p->len, deadline, 1);
    }
}

void jg_cluster_barrier(jg_redis_t *r)
{
    jg_cluster_t *cl = r->cluster;
    if (cl->head < cl->nq && !cl->q[cl->nq - 1].done)
        collect(r);
}

redisReply *jg_cluster_get_reply(jg_redis_t *r)
{
    jg_cluster_t *cl = r->cluster;
    if (cl->head == cl->nq)
        return NULL;
    if (!cl->q[cl->head].done)
        collect(r);
    pending_t *p = &cl->q[cl->head++];
    redisReply *reply = p->reply;
    p->reply = NULL;
    if (reply == NULL || cl->head == cl->nq)
        clear_queue(cl);   /* after a failure, as with one connection, the rest is gone */
    return reply;
}
