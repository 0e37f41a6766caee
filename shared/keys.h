/* keys.h — names, ids and the Redis key layout (docs/redis.md). The only place that turns
 * request input into Redis key names, and it only accepts input that passed these checks. */
#ifndef JG_KEYS_H
#define JG_KEYS_H

#include <stddef.h>

#include "config.h"
#include "jg.h"

/* ^[a-z0-9][a-z0-9_.-]{0,63}$ — queue and type names. */
int jg_valid_name(const char *s);
/* A job id as jobgate mints them: 8 lowercase hex (the queue's tag), '.', 22 base64url. */
int jg_valid_job_id(const char *s);
/* 64 lowercase hex (cache keys). */
int jg_valid_hex64(const char *s);
/* An Idempotency-Key header: 1..128 visible ASCII characters (0x21..0x7E). */
int jg_valid_idempotency_key(const char *s);

/* The hash tag of a queue: the first 8 hex digits of SHA-256(queue name). All keys of a queue
 * and of its jobs carry it, so they share one Redis Cluster slot. */
void jg_queue_tag(const char *queue, char tag[JG_TAG_LEN + 1]);

/* A new job id for queue: "<tag>.<22 base64url of 16 bytes from RAND_bytes>".
 * Returns 0, or -1 if the random generator failed. */
int jg_new_job_id(const char *queue, char id[JG_ID_LEN + 1]);

/* Keys. Each writes a NUL-terminated key into out (JG_KEY_MAX bytes) and returns its length.
 * id must have passed jg_valid_job_id, queue jg_valid_name. */
#define JG_KEY_MAX 256
int jg_key_job(const jg_config_t *cfg, const char *id, char out[JG_KEY_MAX]);
int jg_key_log(const jg_config_t *cfg, const char *id, char out[JG_KEY_MAX]);
/* "<prefix>:{<tag>}:q:<queue>:<what>" for the queue's own keys (ready:<type>, delayed, ...). */
int jg_key_queue(const jg_config_t *cfg, const char *queue, const char *what, char out[JG_KEY_MAX]);
/* The same with the queue's tag (jg_queue_tag) given, for a caller that keeps it. */
int jg_key_queue_tag(const jg_config_t *cfg, const char *tag, const char *queue, const char *what,
                     char out[JG_KEY_MAX]);
/* "<prefix>:{<tag>}:", the prefix of every key of one slot, which the scripts are given to name
 * the keys they find through ids; tag is a queue's tag or a job id (its first 8 characters). */
int jg_key_tagged(const jg_config_t *cfg, const char *tag, char out[JG_KEY_MAX]);
/* Global names (no slot): "<prefix>:<what>", e.g. the registry "<prefix>:queues". */
int jg_key_global(const jg_config_t *cfg, const char *what, char out[JG_KEY_MAX]);

/* Pub/sub channels: Redis 7 shard channels (SPUBLISH/SSUBSCRIBE), each in the slot of a queue's
 * tag (docs/redis.md, "Channels"). tag is a queue's tag or a job id (its first 8 characters).
 * "<prefix>:{<tag>}:events": `job <id> <version>` and `log <id> <cursor>` of the queue's jobs. */
int jg_chan_events(const jg_config_t *cfg, const char *tag, char out[JG_KEY_MAX]);
/* "<prefix>:{<tag>}:wake:<queue>": a job type became ready in queue (queue: jg_valid_name). */
int jg_chan_wake(const jg_config_t *cfg, const char *queue, char out[JG_KEY_MAX]);
/* "<prefix>:{<tag>}:worker:<worker id>": `cancel <job id>` for a job of that tag's queue. */
int jg_chan_worker(const jg_config_t *cfg, const char *tag, const char *worker,
                   char out[JG_KEY_MAX]);

/* The result cache (contract section 6, docs/redis.md). hex must have passed jg_valid_hex64.
 * An entry, "<prefix>:cache:<hex>": read by its key alone, so it has no queue tag. */
int jg_key_cache(const jg_config_t *cfg, const char *hex, char out[JG_KEY_MAX]);
/* The in-flight marker of a cache key in a queue, "<prefix>:{<tag>}:q:<queue>:inflight:<hex>":
 * the id of the job of that key that is queued or running there. */
int jg_key_inflight(const jg_config_t *cfg, const char *queue, const char *hex,
                    char out[JG_KEY_MAX]);
/* "<prefix>:idem:<SHA-256 hex>" for an Idempotency-Key that passed jg_valid_idempotency_key:
 * of the key alone when caller is "", else of "<caller>\n<key>" (caller: the hex SHA-256 of the
 * caller's token, req->caller), so that each caller has its own keys. The header is hashed,
 * never put in a key as it is. */
int jg_key_idempotency(const jg_config_t *cfg, const char *caller, const char *key,
                       char out[JG_KEY_MAX]);
/* "<prefix>:rl:<SHA-256 hex of addr>": the rate-limit window of one client address (its own
 * slot; redis/ratelimit.lua). */
int jg_key_ratelimit(const jg_config_t *cfg, const char *addr, char out[JG_KEY_MAX]);

#endif
