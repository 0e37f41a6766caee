/* resultcache.h — what the programs that use the result cache (jobgate-cache, and jobgate-submit
 * for cache: true) share of it beyond key names (keys.h: entries are P:cache:<key>): the lookup
 * counters of contract sections 6 and 7, the hash P:cache:stats with the fields hits and misses,
 * which /stats and /metrics read. */
#ifndef JG_RESULTCACHE_H
#define JG_RESULTCACHE_H

#include "config.h"
#include "redis.h"

/* Counts one lookup of the cache, a hit or a miss (HINCRBY, one round trip). The caller's answer
 * does not depend on it: a failure is logged, not returned. */
void jg_cache_count(jg_redis_t *redis, const jg_config_t *cfg, int hit);
/* The same in a pipeline: jg_cache_count_append() appends the HINCRBY (0, or -1 when
 * disconnected); jg_cache_count_reply() takes its reply (NULL: none), logs a failure, frees it. */
int jg_cache_count_append(jg_redis_t *redis, const jg_config_t *cfg, int hit);
void jg_cache_count_reply(redisReply *rep);

#endif
