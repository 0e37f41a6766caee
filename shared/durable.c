/* durable.c — which commands WAIT follows, WAIT itself, and a command sent and read with it
 * (see durable.h). */
#include "durable.h"
#include "replyreader.h"
#include "scripts.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The first max arguments of a wire command ("*N\r\n$L\r\n<a0>\r\n$L\r\n<a1>\r\n..."); their
 * count (0..max), or -1 when malformed. Only as far as needed: the rest is not looked at. */
static int first_args(const char *cmd, size_t len, int max, const char **argv, size_t *lens)
{
    const char *p = cmd, *end = cmd + len;
    long argc = 0;
    if (p >= end || *p++ != '*')
        return -1;
    while (p < end && *p >= '0' && *p <= '9' && argc < 100000)
        argc = argc * 10 + (*p++ - '0');
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return -1;
    p += 2;
    int n = 0;
    for (; n < max && n < argc; n++) {
        long l = 0;
        if (p >= end || *p++ != '$')
            return -1;
        while (p < end && *p >= '0' && *p <= '9' && l < (1L << 30))
            l = l * 10 + (*p++ - '0');
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return -1;
        p += 2;
        if (end - p < l + 2)
            return -1;
        argv[n] = p;
        lens[n] = (size_t)l;
        p += l + 2;
    }
    return n;
}

static int word_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* A script that changes something (not flags=no-writes on its first line) and is not a
 * counter whose loss with a failover is harmless. */
static int script_writes(const jg_script_t *s)
{
    const char *nl = strchr(s->source, '\n');
    size_t first = nl ? (size_t)(nl - s->source) : strlen(s->source);
    return strcmp(s->name, "ratelimit") != 0 && !memmem(s->source, first, "no-writes", 9);
}

int jg_durable_wants(const jg_config_t *cfg, const char *cmd, size_t len)
{
    if (cfg->redis_wait_replicas <= 0)
        return 0;
    const char *argv[8];
    size_t lens[8];
    int n = first_args(cmd, len, 8, argv, lens);
    if (n < 1)
        return 0;
    if (word_is(argv[0], lens[0], "DEL"))
        return 1;
    if (word_is(argv[0], lens[0], "SET")) {
        /* SET ... NX is a marker taken before a write (the Idempotency-Key's pending:<id>): the
         * WAIT after that write covers it too (replicas acknowledge an offset, not a command) */
        for (int i = 3; i < n; i++)
            if (word_is(argv[i], lens[i], "NX"))
                return 0;
        return 1;
    }
    if (n < 2 || !(word_is(argv[0], lens[0], "EVALSHA") || word_is(argv[0], lens[0], "EVAL")))
        return 0;
    int sha = word_is(argv[0], lens[0], "EVALSHA");
    for (size_t i = 0; i < jg_script_count; i++) {
        const jg_script_t *s = &jg_scripts[i];
        if (sha ? strlen(s->sha1) == lens[1] && strncasecmp(s->sha1, argv[1], lens[1]) == 0
                : strlen(s->source) == lens[1] && memcmp(s->source, argv[1], lens[1]) == 0)
            return script_writes(s);
    }
    return 1;   /* a script we do not know: count it as a write */
}

size_t jg_durable_wait_cmd(const jg_config_t *cfg, char *buf, size_t cap)
{
    char n[24], ms[24];
    int nl = snprintf(n, sizeof n, "%ld", cfg->redis_wait_replicas);
    int ml = snprintf(ms, sizeof ms, "%ld", cfg->redis_wait_ms);
    int len = snprintf(buf, cap, "*3\r\n$4\r\nWAIT\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", nl, n, ml, ms);
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

int jg_durable_acked(const jg_config_t *cfg, const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_INTEGER && rep->integer >= cfg->redis_wait_replicas;
}

int jg_durable_append(const jg_config_t *cfg, redisContext *c, const char *cmd, size_t len,
                      int *waits)
{
    *waits = jg_durable_wants(cfg, cmd, len);
    if (redisAppendFormattedCommand(c, cmd, len) != REDIS_OK)
        return -1;
    if (*waits) {
        char w[64];
        size_t wl = jg_durable_wait_cmd(cfg, w, sizeof w);
        if (redisAppendFormattedCommand(c, w, wl) != REDIS_OK)
            return -1;
    }
    return 0;
}

void *jg_durable_read(const jg_config_t *cfg, redisContext *c, int waits)
{
    void *reply = NULL, *w = NULL;
    if (jg_reply_get(c, &reply) != REDIS_OK)
        return NULL;
    if (!waits)
        return reply;
    if (jg_reply_get(c, &w) != REDIS_OK) {
        freeReplyObject(reply);
        return NULL;
    }
    /* an error reply wrote nothing: no acknowledgement needed */
    int ok = ((redisReply *)reply)->type == REDIS_REPLY_ERROR || jg_durable_acked(cfg, w);
    freeReplyObject(w);
    if (ok)
        return reply;
    freeReplyObject(reply);
    snprintf(c->errstr, sizeof c->errstr, "write not acknowledged by %ld replica(s) in %ld ms",
             cfg->redis_wait_replicas, cfg->redis_wait_ms);
    return NULL;
}
