/* pipeline.h — several Lua scripts in one round trip over the one Redis call path (redis.h):
 * EVALSHA pipelined, then any script Redis did not know (NOSCRIPT: a restart, SCRIPT FLUSH) run
 * again on its own by jg_script_run(), which loads it. Used by jobgate-admin, whose answers
 * run one or two scripts per queue. */
#ifndef JG_PIPELINE_H
#define JG_PIPELINE_H

#include <stddef.h>

#include "redis.h"

typedef struct jg_script_call {
    const char *name;    /* redis/NAME.lua */
    int nkeys;           /* the first nkeys of args are KEYS, the rest ARGV */
    jg_args_t args;
} jg_script_call_t;

/* Appends one EVALSHA of c to r's pipeline (jg_redis_append_argv): 0, or -1 when disconnected.
 * Its reply may be NOSCRIPT: the caller then runs the call with jg_script_run(). */
int jg_script_append(jg_redis_t *r, const jg_script_call_t *c);

/* Runs c alone (jg_redis_script: loaded on NOSCRIPT). Returns its reply, or NULL when Redis is
 * unreachable. */
redisReply *jg_script_run(jg_redis_t *r, jg_script_call_t *c);

/* Runs calls[0..n) pipelined; replies[i] gets each reply (the caller frees them; NULL where none
 * was read). Returns 0, or -1 when Redis is unreachable (replies read so far are kept). */
int jg_scripts_pipelined(jg_redis_t *r, jg_script_call_t *calls, size_t n, redisReply **replies);

#endif
