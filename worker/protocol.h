/* protocol.h — the worker's side of the Redis protocol (docs/redis.md, "The worker's protocol"):
 * the argument lists of claim.lua, log.lua, renew.lua and complete.lua, the scripts loaded on
 * every new connection, and EVALSHA calls appended to a pipeline. Replies are read by the
 * caller (workloop.c) with jg_redis_get_reply(). */
#ifndef JG_WORKER_PROTOCOL_H
#define JG_WORKER_PROTOCOL_H

#include <stddef.h>

#include "config.h"
#include "keys.h"
#include "options.h"
#include "redis.h"

/* The arguments that never change while the worker runs, made once (jg_proto_init) and passed
 * by reference: formatting them for every call was most of the worker's own work per job. */
typedef struct jg_proto_queue {
    char tag[JG_TAG_LEN + 1];
    char prefix[JG_KEY_MAX];                   /* "P:{tag}:" */
    char delayed[JG_KEY_MAX], running[JG_KEY_MAX], counts[JG_KEY_MAX];
    char wake[JG_KEY_MAX];                     /* "P:{tag}:wake:<queue>" */
    char events[JG_KEY_MAX];                   /* "P:{tag}:events" */
} jg_proto_queue_t;

typedef struct jg_proto {
    jg_redis_t *r;
    const jg_config_t *cfg;
    const jg_worker_opts_t *opts;
    redisContext *loaded;      /* the connection the scripts were last loaded on */
    jg_proto_queue_t q[JG_WORKER_MAX_QUEUES];   /* of opts->queues, in their order */
    char lease_ms[24], retry_base_ms[24], retention[24], log_max[24];
} jg_proto_t;

void jg_proto_init(jg_proto_t *p, jg_redis_t *r, const jg_config_t *cfg,
                   const jg_worker_opts_t *opts);

/* Connects if needed (within the backoff) and loads the worker's scripts on a new connection.
 * Returns JG_OK when calls can be appended. */
int jg_proto_ready(jg_proto_t *p);

/* Appends EVALSHA of script with the first nkeys of a as KEYS, the rest as ARGV. JG_OK, or
 * JG_ERR when disconnected (nothing appended). */
int jg_proto_append(jg_proto_t *p, const char *script, int nkeys, const jg_args_t *a);

/* A reply that says the script must be loaded again (the call did not run; send it again). */
int jg_proto_noscript(jg_proto_t *p, const redisReply *rep);

/* Argument lists; each returns the number of KEYS at the front of a. */
int jg_proto_claim_args(jg_proto_t *p, jg_args_t *a, int queue_index, int want);
int jg_proto_renew_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *id,
                        long long fence);
/* then add the stream, line pairs (jg_args_add); first: how many lines of the attempt were sent
 * before this batch's first (log.lua applies a batch sent again once) */
int jg_proto_log_args(jg_proto_t *p, jg_args_t *a, const char *id, long long fence,
                      int progress /* -1: none */, long long first);
/* giveback.lua for queue_index: then add the ids of the jobs of that queue the worker runs */
int jg_proto_giveback_args(jg_proto_t *p, jg_args_t *a, int queue_index);
/* outcome: "done", "failed", "cancelled", "requeue"; text: result JSON or error */
int jg_proto_complete_args(jg_proto_t *p, jg_args_t *a, const char *queue, const char *type,
                           const char *id, long long fence, const char *outcome,
                           const char *text, size_t text_len);

/* Element i of an array reply as a string (integers printed), or "" when absent. */
const char *jg_reply_str(const redisReply *rep, size_t i, char *tmp, size_t tmplen);
long long jg_reply_int(const redisReply *rep, size_t i);

#endif
