/* redis.c — the Redis call path with reconnect and scripts (see redis.h). */
#include "redis.h"
#include "buf.h"
#include "cluster.h"
#include "durable.h"
#include "log.h"
#include "replyreader.h"
#include "scripts.h"
#include "timefmt.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 1000

void jg_redis_init(jg_redis_t *r, const jg_config_t *cfg, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    /* a write's WAIT may take JOBGATE_REDIS_WAIT_MS before its answer (durable.h) */
    r->timeout_ms = timeout_ms > 0 && cfg->redis_wait_replicas > 0
                        ? timeout_ms + (int)cfg->redis_wait_ms : timeout_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (cfg->redis_cluster)
        r->cluster = jg_cluster_new(cfg);
}

/* Closes the connection(s); r stays usable. */
static void close_conns(jg_redis_t *r)
{
    r->waits_head = r->waits_n = 0;   /* their replies are gone with the connection */
    if (r->cluster)
        jg_cluster_close_all(r);
    else if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
}

void jg_redis_close(jg_redis_t *r)
{
    close_conns(r);
    jg_cluster_free(r->cluster);
    r->cluster = NULL;
    free(r->waits);
    r->waits = NULL;
    r->waits_cap = 0;
}

void jg_redis_drop(jg_redis_t *r, const char *why)
{
    if (r->ctx == NULL && r->cluster == NULL)
        return;
    if (r->ctx)   /* a cluster's other nodes may hold pipelined replies even without a home */
        jg_log_warn("redis connection lost", "error", why, NULL);
    close_conns(r);
    r->retry_at = 0;   /* the first reconnect is immediate: Redis may simply have restarted */
}

static void connect_failed(jg_redis_t *r, const char *why)
{
    if (r->failures++ == 0)
        jg_log_warn("redis unreachable, retrying with backoff", "error", why, NULL);
    close_conns(r);
    r->retry_at = jg_monotonic_ms() + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* AUTH and SELECT: redone by hand on every connect, as hiredis does not. */
static int handshake(const jg_redis_t *r, redisContext *c, char *why, size_t whylen)
{
    const jg_config_t *cfg = r->cfg;
    redisReply *rep = NULL;
    if (cfg->redis_password[0]) {
        if (cfg->redis_user[0])
            rep = jg_reply_command(c, "AUTH %s %s", cfg->redis_user, cfg->redis_password);
        else
            rep = jg_reply_command(c, "AUTH %s", cfg->redis_password);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            /* the server's message never contains the password; ours neither */
            snprintf(why, whylen, "AUTH failed%s%s", rep ? ": " : "", rep ? rep->str : "");
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (cfg->redis_db) {
        rep = jg_reply_command(c, "SELECT %d", cfg->redis_db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "SELECT failed%s%s", rep ? ": " : "", rep ? rep->str : "");
            goto fail;
        }
        freeReplyObject(rep);
    }
    return 0;
fail:
    if (rep)
        freeReplyObject(rep);
    return -1;
}

/* Has the server closed this idle connection (a Redis restart)? A readable socket with no
 * request outstanding means EOF: better found now than by failing the next command. */
int jg_redis_idle_closed(const redisContext *c)
{
    if (c->reader->len > c->reader->pos || c->obuf[0] != '\0')
        return 0;   /* replies or commands in flight (pipelining, pub/sub) */
    struct pollfd pfd = {c->fd, POLLIN, 0};
    return poll(&pfd, 1, 0) == 1;
}

static int reconnect(jg_redis_t *r);

int jg_redis_connect(jg_redis_t *r)
{
    /* One poll() before a command that may change something: a Redis restart then costs no
     * request a 503. Reads skip it (jg_redis_read retries instead). */
    if (r->ctx && r->timeout_ms > 0 && jg_redis_idle_closed(r->ctx))
        jg_redis_drop(r, "closed by the server");
    return reconnect(r);
}

redisContext *jg_redis_open(const jg_redis_t *r, const char *host, int port, char *why,
                            size_t whylen)
{
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    redisContext *c;
    if (host == NULL && r->cfg->redis_unix[0])
        c = redisConnectUnixWithTimeout(r->cfg->redis_unix, tv);
    else if (host == NULL)
        c = redisConnectWithTimeout(r->cfg->redis_host, r->cfg->redis_port, tv);
    else
        c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        snprintf(why, whylen, "%s", c ? c->errstr : "out of memory");
        goto fail;
    }
    jg_reply_bound(c->reader, jg_reply_bulk_max(r->cfg->max_body));   /* replyreader.h */
    if (handshake(r, c, why, whylen))
        goto fail;
    struct timeval cmd_tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    if (r->timeout_ms > 0)
        redisSetTimeout(c, cmd_tv);
    else {
        struct timeval forever = {0, 0};
        redisSetTimeout(c, forever);
    }
    if (c->connection_type == REDIS_CONN_TCP)
        redisEnableKeepAlive(c);   /* notice a lost host on idle connections */
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

static int reconnect(jg_redis_t *r)
{
    if (r->ctx)
        return 0;
    if (jg_monotonic_ms() < r->retry_at)
        return -1;
    char why[256];
    if (r->cluster ? jg_cluster_open_home(r, why, sizeof why)
                   : (r->ctx = jg_redis_open(r, NULL, 0, why, sizeof why)) == NULL) {
        connect_failed(r, why);
        return -1;
    }
    if (r->failures)
        jg_log_info("redis reachable again", NULL);
    r->failures = 0;
    r->connected_at = jg_monotonic_ms();
    return 0;
}

/* After any call: a failed reply means the context is unusable (I/O error, timeout). */
static redisReply *checked(jg_redis_t *r, void *reply)
{
    if (reply == NULL) {
        jg_redis_drop(r, r->ctx && r->ctx->errstr[0] ? r->ctx->errstr : "no reply");
        return NULL;
    }
    return reply;
}

/* With a cluster, a command goes out in the wire format through cluster.c. */
static redisReply *cluster_vcmd(jg_redis_t *r, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0)
        abort();   /* a bad format string or no memory: a programming error */
    redisReply *reply = jg_cluster_call(r, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return reply;
}

/* The wire form of a command ("*<argc>\r\n" and "$<len>\r\n<arg>\r\n" each) in one
 * allocation, without printf: hiredis' redisAppendCommandArgv formats each length with its own
 * printf (sdscatfmt), a fifth of jobgate-submit's instructions for a submit's 29 arguments.
 * Returns its length; *out is the caller's to free(). */
static size_t format_argv(char **out, int argc, const char **argv, const size_t *lens)
{
    size_t total = 1 + 20 + 2;
    for (int i = 0; i < argc; i++)
        total += 1 + 20 + 2 + lens[i] + 2;
    char *cmd = malloc(total), *p = cmd, num[24];
    if (cmd == NULL)
        abort();   /* as hiredis: no memory for a command is not survivable */
    size_t n = jg_fmt_int(argc, num);
    *p++ = '*';
    memcpy(p, num, n);
    p += n;
    *p++ = '\r', *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        n = jg_fmt_int((long long)lens[i], num);
        *p++ = '$';
        memcpy(p, num, n);
        p += n;
        *p++ = '\r', *p++ = '\n';
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r', *p++ = '\n';
    }
    *out = cmd;
    return (size_t)(p - cmd);
}

/* One command on the one connection (not a cluster): appended in its wire form, then its reply
 * read. NULL when the connection failed (the caller's checked() drops it). */
static void *command_wire(const jg_redis_t *r, redisContext *c, const char *cmd, size_t len)
{
    int waits;
    if (jg_durable_append(r->cfg, c, cmd, len, &waits))
        return NULL;
    return jg_durable_read(r->cfg, c, waits);
}

static void *command_argv(const jg_redis_t *r, redisContext *c, int argc, const char **argv,
                          const size_t *lens)
{
    char *cmd;
    size_t len = format_argv(&cmd, argc, argv, lens);
    void *reply = command_wire(r, c, cmd, len);
    free(cmd);
    return reply;
}

/* One Redis, pipelined: cmd appended (with its WAIT), and whether a WAIT follows remembered for
 * jg_redis_get_reply. 0, or -1. */
static int pipeline_wire(jg_redis_t *r, const char *cmd, size_t len)
{
    int waits;
    if (r->waits_n == r->waits_cap) {
        size_t cap = r->waits_cap ? r->waits_cap * 2 : 64;
        unsigned char *q = realloc(r->waits, cap);
        if (q == NULL)
            abort();
        r->waits = q;
        r->waits_cap = cap;
    }
    if (jg_durable_append(r->cfg, r->ctx, cmd, len, &waits))
        return -1;
    r->waits[r->waits_n++] = (unsigned char)waits;
    return 0;
}

/* append 0: the reply of the call; append 1: 0 or -1 as jg_redis_append_argv. */
static void *cluster_argv(jg_redis_t *r, int append, int *rc, int argc, const char **argv,
                          const size_t *lens)
{
    char *cmd;
    size_t len = format_argv(&cmd, argc, argv, lens);
    void *reply = NULL;
    if (append)
        *rc = jg_cluster_append(r, cmd, len);
    else
        reply = jg_cluster_call(r, cmd, len);
    free(cmd);
    return reply;
}

redisReply *jg_redis_cmd(jg_redis_t *r, const char *fmt, ...)
{
    if (jg_redis_connect(r))
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    if (r->cluster) {
        void *reply = cluster_vcmd(r, fmt, ap);
        va_end(ap);
        return reply;
    }
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        abort();   /* a bad format string or no memory: a programming error */
    void *reply = command_wire(r, r->ctx, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return checked(r, reply);
}

redisReply *jg_redis_cmdargv(jg_redis_t *r, int argc, const char **argv, const size_t *lens)
{
    if (jg_redis_connect(r))
        return NULL;
    if (r->cluster)
        return cluster_argv(r, 0, NULL, argc, argv, lens);
    return checked(r, command_argv(r, r->ctx, argc, argv, lens));
}

/* Did the last call fail because the server had closed the connection (EOF, reset), as opposed
 * to a timeout? Only then is a read worth sending again on a new connection. */
static int closed_error(const redisContext *c, int err)
{
    return c->err == REDIS_ERR_EOF ||
           (c->err == REDIS_ERR_IO && (err == ECONNRESET || err == EPIPE));
}

redisReply *jg_redis_read(jg_redis_t *r, int argc, const char **argv, const size_t *lens)
{
    int reused = r->ctx != NULL;   /* a connection made just now is not retried */
    if (reconnect(r))
        return NULL;
    if (r->cluster)
        return cluster_argv(r, 0, NULL, argc, argv, lens);
    errno = 0;
    void *reply = command_argv(r, r->ctx, argc, argv, lens);
    if (reply == NULL && reused && closed_error(r->ctx, errno)) {
        jg_redis_drop(r, "closed by the server");
        if (reconnect(r))
            return NULL;
        reply = command_argv(r, r->ctx, argc, argv, lens);
    }
    return checked(r, reply);
}

int jg_redis_append(jg_redis_t *r, const char *fmt, ...)
{
    if (jg_redis_connect(r))
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        abort();
    int rc = r->cluster ? jg_cluster_append(r, cmd, (size_t)len) : pipeline_wire(r, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc ? -1 : 0;
}

void jg_redis_barrier(jg_redis_t *r)
{
    if (r->cluster)
        jg_cluster_barrier(r);
}

int jg_redis_append_argv(jg_redis_t *r, int argc, const char **argv, const size_t *lens)
{
    if (jg_redis_connect(r))
        return -1;
    if (r->cluster) {
        int rc = -1;
        cluster_argv(r, 1, &rc, argc, argv, lens);
        return rc;
    }
    char *cmd;
    size_t len = format_argv(&cmd, argc, argv, lens);
    int rc = pipeline_wire(r, cmd, len);
    free(cmd);
    return rc;
}

redisReply *jg_redis_get_reply(jg_redis_t *r)
{
    if (r->cluster)
        return jg_cluster_get_reply(r);
    if (r->ctx == NULL)
        return NULL;
    int waits = r->waits_head < r->waits_n && r->waits[r->waits_head];
    if (r->waits_head < r->waits_n && ++r->waits_head == r->waits_n)
        r->waits_head = r->waits_n = 0;
    return checked(r, jg_durable_read(r->cfg, r->ctx, waits));
}

int jg_redis_is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

redisReply *jg_redis_script(jg_redis_t *r, const char *name, int numkeys, int argc,
                            const char **args, const size_t *lens)
{
    const jg_script_t *s = jg_script(name);
    const char *argv[JG_ARGS_MAX + 3];
    size_t argl[JG_ARGS_MAX + 3];
    char nk[24];
    if (argc > JG_ARGS_MAX)
        abort();
    jg_fmt_int(numkeys, nk);
    argv[0] = "EVALSHA"; argl[0] = 7;
    argv[1] = s->sha1;   argl[1] = strlen(s->sha1);
    argv[2] = nk;        argl[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        argv[i + 3] = args[i];
        argl[i + 3] = lens[i];
    }
    redisReply *rep = jg_redis_cmdargv(r, argc + 3, argv, argl);
    if (jg_redis_is_noscript(rep)) {
        freeReplyObject(rep);
        rep = jg_redis_cmd(r, "SCRIPT LOAD %s", s->source);
        if (rep == NULL)
            return NULL;
        freeReplyObject(rep);
        rep = jg_redis_cmdargv(r, argc + 3, argv, argl);
    }
    return rep;
}

/* Only the counts: the arrays are written before they are read (a list is ~20 KB). */
void jg_args_init(jg_args_t *a) { a->argc = a->nowned = a->nints = 0; }

void jg_args_add(jg_args_t *a, const char *s, size_t len)
{
    if (a->argc >= JG_ARGS_MAX)
        abort();
    a->argv[a->argc] = s;
    a->lens[a->argc] = len;
    a->argc++;
}

void jg_args_str(jg_args_t *a, const char *s)
{
    if (s == NULL)
        s = "";
    jg_args_add(a, s, strlen(s));
}

void jg_args_printf(jg_args_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    a->owned[a->nowned++] = s;
    jg_args_add(a, s, (size_t)n);
}

void jg_args_int(jg_args_t *a, long long v)
{
    if (a->nints >= (int)(sizeof a->ints / sizeof a->ints[0]))
        abort();
    char *s = a->ints[a->nints++];
    jg_args_add(a, s, jg_fmt_int(v, s));
}

void jg_args_free(jg_args_t *a)
{
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    a->nowned = 0;
    a->nints = 0;
    a->argc = 0;
}
