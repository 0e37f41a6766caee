/* adminstats.h — the operator's figures that /stats, /queues and /metrics of jobgate-admin show
 * (contract section 7), read from Redis in a few round trips: per queue (claim.lua with N = 0 to
 * promote due jobs and take back expired leases, then qstats.lua, pipelined over the queues),
 * the live workers (P:workers, dropping members whose heartbeat hash is gone) and the result
 * cache's counters. Formatting as JSON lives here too; Prometheus text is in prom.h. */
#ifndef JG_ADMINSTATS_H
#define JG_ADMINSTATS_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "jg.h"
#include "redis.h"

/* The run time histogram's bucket bounds in seconds (jobgate_job_run_seconds); complete.lua
 * counts an attempt in the first bound at or above its run time, or in +Inf. */
#define JG_RUN_BUCKETS 17
extern const char *const jg_run_bucket_bounds[JG_RUN_BUCKETS];

typedef struct jg_type_stats {
    char type[JG_NAME_MAX + 1];
    long long submitted, done, failed, cancelled;
    long long run_count, run_sum_ms;
    long long run_le[JG_RUN_BUCKETS + 1];   /* per bucket (not cumulative); last is +Inf */
} jg_type_stats_t;

typedef struct jg_queue_stats {
    char name[JG_NAME_MAX + 1];
    long long queued, running, delayed;     /* queued: ready to run now */
    int paused;
    long long latency_ms;                   /* see qstats.lua */
    jg_type_stats_t *types;
    size_t ntypes;
} jg_queue_stats_t;

typedef struct jg_worker_info {
    char id[101], host[256], queues[512], types[512], status[16];
    long long pid, concurrency, running, last_seen, started_at;
} jg_worker_info_t;

typedef struct jg_stats {
    jg_queue_stats_t *queues;
    size_t nqueues;
    jg_worker_info_t *workers;
    size_t nworkers;
    long long cache_hits, cache_misses;
} jg_stats_t;

/* Reads the figures into out (zeroed first; free with jg_stats_free even on failure). queue:
 * NULL for every queue of P:queues, or one queue (a name that passed jg_valid_name) and nothing
 * else (no workers, no cache). Returns 0, -1 when Redis is unreachable, -2 on a reply nobody
 * expected (logged). */
int jg_stats_read(const jg_config_t *cfg, jg_redis_t *redis, const char *queue, jg_stats_t *out);
void jg_stats_free(jg_stats_t *s);

/* Appends {"name":...,"queued":N,"running":N,"delayed":N,"paused":bool,"latency":S,
 * "submitted":N,"done":N,"failed":N,"cancelled":N,"types":{"<type>":{"submitted":..}}}. */
void jg_stats_queue_json(const jg_queue_stats_t *q, jg_buf_t *out);
/* Appends the whole /stats object: {"queues":[...],"totals":{...},"workers":[...],
 * "cache":{"hits":N,"misses":N}}. */
void jg_stats_json(const jg_stats_t *s, jg_buf_t *out);

#endif
