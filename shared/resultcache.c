/* resultcache.c — the result cache's lookup counters (see resultcache.h). */
#include "resultcache.h"
#include "keys.h"
#include "log.h"

void jg_cache_count_reply(redisReply *rep)
{
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        jg_log_warn("cannot count a cache lookup", "error", rep ? rep->str : "no connection",
                    NULL);
    if (rep)
        freeReplyObject(rep);
}

int jg_cache_count_append(jg_redis_t *redis, const jg_config_t *cfg, int hit)
{
    char stats[JG_KEY_MAX];
    jg_key_global(cfg, "cache:stats", stats);
    return jg_redis_append(redis, "HINCRBY %s %s 1", stats, hit ? "hits" : "misses");
}

void jg_cache_count(jg_redis_t *redis, const jg_config_t *cfg, int hit)
{
    char stats[JG_KEY_MAX];
    jg_key_global(cfg, "cache:stats", stats);
    jg_cache_count_reply(
        jg_redis_cmd(redis, "HINCRBY %s %s 1", stats, hit ? "hits" : "misses"));
}
