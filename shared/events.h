/* events.h — one pub/sub subscriber per process: a thread that subscribes to one channel on
 * its own Redis connection, reconnects with backoff, and hands every message to a callback.
 * After each (re)subscription the callback gets resync = 1 (messages may have been missed). */
#ifndef JG_EVENTS_H
#define JG_EVENTS_H

#include <stddef.h>

#include "config.h"

typedef void (*jg_event_fn)(void *ctx, const char *msg, size_t len, int resync);

typedef struct jg_subscriber jg_subscriber_t;

/* Starts the thread. channel is the full channel name. Returns NULL on failure. */
jg_subscriber_t *jg_subscriber_start(const jg_config_t *cfg, const char *channel,
                                     jg_event_fn fn, void *ctx);
/* Stops the thread (interrupting a blocking read), waits for it and frees s. No callback runs
 * after it returns. */
void jg_subscriber_stop(jg_subscriber_t *s);

#endif
