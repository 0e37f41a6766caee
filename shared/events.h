/* events.h — one pub/sub subscriber per process: a thread that holds the process's shard-channel
 * subscriptions (Redis 7 SSUBSCRIBE; docs/redis.md, "Channels") and hands every message to a
 * callback. The same code serves one Redis and a cluster: each channel is subscribed on the node
 * that owns its slot (the CRC16 of its {tag}; one Redis owns them all), on one connection per
 * node, opened when a channel there is wanted.
 *
 * Channels are subscribed while wanted: jg_subscriber_want() and _unwant() count the interest
 * (a status process wants a queue's events channel while it holds a long poll of a job of that
 * queue). A channel nobody wants is unsubscribed after a short linger (so that a stream of
 * short waits does not churn); at most SUB_IDLE_MAX idle channels linger, so the memory is
 * bounded by what is wanted now, whatever names clients use.
 *
 * After each (re)subscription of a channel — the first, after a lost connection, after a
 * MOVED reply, after Redis pushed `sunsubscribe` (its slot moved to another master) — the
 * callback gets (channel, NULL, 0, resync = 1): messages of that channel may have been missed. */
#ifndef JG_EVENTS_H
#define JG_EVENTS_H

#include <stddef.h>

#include "config.h"

/* A message (resync 0) or a (re)subscription (msg NULL, resync 1) of channel. Runs on the
 * subscriber's thread. */
typedef void (*jg_event_fn)(void *ctx, const char *channel, const char *msg, size_t len,
                            int resync);

typedef struct jg_subscriber jg_subscriber_t;

/* Starts the thread, with no channel. Returns NULL on failure. */
jg_subscriber_t *jg_subscriber_start(const jg_config_t *cfg, jg_event_fn fn, void *ctx);
/* One more (want) or one less (unwant) interest in channel (a full shard channel name, shorter
 * than JG_KEY_MAX). Thread-safe, never blocks on Redis: the thread acts on it. */
void jg_subscriber_want(jg_subscriber_t *s, const char *channel);
void jg_subscriber_unwant(jg_subscriber_t *s, const char *channel);
/* Stops the thread (interrupting its wait), waits for it and frees s. No callback runs after
 * it returns. */
void jg_subscriber_stop(jg_subscriber_t *s);

#endif
