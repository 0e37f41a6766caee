/* redis.h — the one Redis call path: connect (TCP or unix socket), AUTH and SELECT on every
 * (re)connect, a command timeout, reconnect with backoff after any failure, and Lua scripts by
 * EVALSHA with a reload on NOSCRIPT. One jg_redis_t per thread; it is not thread-safe.
 *
 * Every call returns a reply the caller frees with freeReplyObject(), or NULL when Redis is
 * unreachable (the connection is then dropped and retried on a later call, after a backoff
 * that grows from 100 ms to 2 s). A NULL means "answer 503 unavailable". A reply of type
 * REDIS_REPLY_ERROR is a command error (a script's refusal, a bug), not an outage. */
#ifndef JG_REDIS_H
#define JG_REDIS_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "config.h"

typedef struct jg_redis {
    const jg_config_t *cfg;
    redisContext *ctx;          /* NULL while disconnected */
    int timeout_ms;             /* per command; 0 = block forever (pub/sub readers) */
    int backoff_ms;             /* next wait after a failed connect */
    int64_t retry_at;           /* monotonic ms before which no connect is tried */
    int failures;               /* connects that failed in a row (for logging once) */
    int64_t connected_at;       /* monotonic ms of the last successful connect */
    struct jg_cluster *cluster; /* redis+cluster://: the nodes, ctx is the home node's (cluster.h) */
    /* one Redis, pipelined: for each reply still to read, whether a WAIT follows it (durable.h) */
    unsigned char *waits;
    size_t waits_head, waits_n, waits_cap;
} jg_redis_t;

void jg_redis_init(jg_redis_t *r, const jg_config_t *cfg, int timeout_ms);
void jg_redis_close(jg_redis_t *r);

/* Connects if not connected and the backoff allows. Returns 0 when connected. */
int jg_redis_connect(jg_redis_t *r);

/* A command, printf-style as redisCommand(). */
redisReply *jg_redis_cmd(jg_redis_t *r, const char *fmt, ...);
redisReply *jg_redis_cmdargv(jg_redis_t *r, int argc, const char **argv, const size_t *lens);
/* A read that changes nothing (HMGET, GET, ...): no idle-connection check before it (the
 * poll() jg_redis_connect makes); if the server had closed a reused connection (a Redis
 * restart), it is sent once more on a new one. Returns as jg_redis_cmdargv. */
redisReply *jg_redis_read(jg_redis_t *r, int argc, const char **argv, const size_t *lens);

/* Runs the script named name (redis/NAME.lua) with numkeys KEYS then ARGV in args (loaded
 * first when Redis answers NOSCRIPT). */
redisReply *jg_redis_script(jg_redis_t *r, const char *name, int numkeys, int argc,
                            const char **args, const size_t *lens);

/* A NOSCRIPT error: Redis did not know an EVALSHA's script (a restart, SCRIPT FLUSH), so the
 * call ran nothing. */
int jg_redis_is_noscript(const redisReply *rep);

/* Pipelining: append commands, then read each reply in order with jg_redis_get_reply().
 * jg_redis_append* return 0, or -1 when disconnected (nothing was appended). */
int jg_redis_append(jg_redis_t *r, const char *fmt, ...);
int jg_redis_append_argv(jg_redis_t *r, int argc, const char **argv, const size_t *lens);
redisReply *jg_redis_get_reply(jg_redis_t *r);
/* Commands appended after this are applied after every one appended before it. One connection
 * keeps that order by itself; on a cluster a pipeline's commands go to their nodes at once, so
 * the replies pending on other nodes are read first (kept for jg_redis_get_reply, in order).
 * For a write that names what an earlier write of another slot made (an Idempotency-Key's
 * record after its job). */
void jg_redis_barrier(jg_redis_t *r);

/* A new connection to host:port (host NULL: REDIS_URL's own host, port or unix socket), AUTH
 * and SELECT done, r's command timeout set. Returns NULL with the reason in why (no secret).
 * cluster.c opens its node connections with it. */
redisContext *jg_redis_open(const jg_redis_t *r, const char *host, int port, char *why,
                            size_t whylen);
/* Has the server closed this idle connection (a Redis restart)? See redis.c. */
int jg_redis_idle_closed(const redisContext *c);

/* Marks the connection broken (after a protocol surprise); the next call reconnects. */
void jg_redis_drop(jg_redis_t *r, const char *why);

/* An argument list for cmdargv/script calls: strings are referenced, not copied, except those
 * added with jg_args_printf, which the list owns until jg_args_free. */
#define JG_ARGS_MAX 512
typedef struct jg_args {
    int argc;
    const char *argv[JG_ARGS_MAX];
    size_t lens[JG_ARGS_MAX];
    char *owned[JG_ARGS_MAX];
    int nowned;
    char ints[16][24];          /* the text of jg_args_int's arguments */
    int nints;
} jg_args_t;

void jg_args_init(jg_args_t *a);
void jg_args_add(jg_args_t *a, const char *s, size_t len);
void jg_args_str(jg_args_t *a, const char *s);   /* NUL-terminated; NULL adds "" */
void jg_args_printf(jg_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jg_args_int(jg_args_t *a, long long v);   /* decimal text, kept in the list (16 at most) */
void jg_args_free(jg_args_t *a);

#endif
