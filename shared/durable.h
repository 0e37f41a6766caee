/* durable.h — opt-in replica acknowledgement (JOBGATE_REDIS_WAIT_REPLICAS=N, JOBGATE_REDIS_WAIT_MS):
 * which commands are writes that must be followed by `WAIT N ms`, the WAIT command itself, and
 * how its answer is judged. The Redis call path (redis.c for one Redis, cluster.c for a
 * cluster) appends the WAIT right after such a command, in the same pipeline on the same
 * connection (in a cluster: the connection of the node that ran the write), and reads its
 * answer with the command's: no extra round trip. A write whose WAIT counts fewer than N
 * replicas is treated like a lost connection: the connection is dropped and the call answers
 * NULL ("unavailable": 503 for a web program; the worker's lost-answer path, docs/redis.md
 * "Failover"). jg_durable_append/jg_durable_read send and read a command with its WAIT on one
 * connection; the rest are pure functions. */
#ifndef JG_DURABLE_H
#define JG_DURABLE_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "config.h"

/* Is cmd (wire format) a write that WAIT must follow under cfg? 0 when the setting is off.
 * Writes: EVALSHA/EVAL of every script of redis/ but the read-only ones (flags=no-writes) and
 * ratelimit.lua (a counter); SET and DEL (idempotency records, cache entries, a queue's pause),
 * but SET ... NX (a marker taken before a write, whose WAIT covers it). */
int jg_durable_wants(const jg_config_t *cfg, const char *cmd, size_t len);

/* The WAIT command for cfg in the wire format, in buf (at least 64 bytes): its length. */
size_t jg_durable_wait_cmd(const jg_config_t *cfg, char *buf, size_t cap);

/* Did WAIT's reply count at least cfg's N replicas? 1 yes, 0 no (fewer, or not an integer). */
int jg_durable_acked(const jg_config_t *cfg, const redisReply *wait_reply);

/* Appends cmd (wire format) to c, and the WAIT after it when jg_durable_wants(cmd); *waits
 * says whether a WAIT went. 0, or -1 (nothing is sent: the context only buffers). */
int jg_durable_append(const jg_config_t *cfg, redisContext *c, const char *cmd, size_t len,
                      int *waits);

/* Reads the reply of a command jg_durable_append sent, and its WAIT's (through replyreader.h's
 * bounded reader). NULL when the connection failed, or when the write was not acknowledged by
 * enough replicas: then c->errstr says so, and the caller drops the connection (the write may
 * have happened: like a lost answer). An error reply needs no acknowledgement. */
void *jg_durable_read(const jg_config_t *cfg, redisContext *c, int waits);

#endif
