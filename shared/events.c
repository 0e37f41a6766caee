/* events.c — the pub/sub subscriber thread (see events.h). */
#include "events.h"
#include "log.h"
#include "redis.h"
#include "timefmt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct jg_subscriber {
    jg_redis_t redis;
    char channel[256];
    jg_event_fn fn;
    void *ctx;
    pthread_t thread;
};

static void *subscriber_main(void *arg)
{
    jg_subscriber_t *s = arg;
    for (;;) {
        if (jg_redis_connect(&s->redis)) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        redisReply *rep = jg_redis_cmd(&s->redis, "SUBSCRIBE %s", s->channel);
        if (rep == NULL)
            continue;
        freeReplyObject(rep);
        s->fn(s->ctx, NULL, 0, 1);
        void *reply;
        while (s->redis.ctx && redisGetReply(s->redis.ctx, &reply) == REDIS_OK) {
            redisReply *m = reply;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                m->element[0]->type == REDIS_REPLY_STRING &&
                strcmp(m->element[0]->str, "message") == 0 &&
                m->element[2]->type == REDIS_REPLY_STRING)
                s->fn(s->ctx, m->element[2]->str, m->element[2]->len, 0);
            freeReplyObject(m);
        }
        int young = jg_monotonic_ms() - s->redis.connected_at < 1000;
        jg_redis_drop(&s->redis, s->redis.ctx ? s->redis.ctx->errstr : "subscription ended");
        if (young) {   /* a server that drops us at once: do not spin */
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

jg_subscriber_t *jg_subscriber_start(const jg_config_t *cfg, const char *channel,
                                     jg_event_fn fn, void *ctx)
{
    jg_subscriber_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    jg_redis_init(&s->redis, cfg, 0);
    snprintf(s->channel, sizeof s->channel, "%s", channel);
    s->fn = fn;
    s->ctx = ctx;
    if (pthread_create(&s->thread, NULL, subscriber_main, s) != 0) {
        free(s);
        return NULL;
    }
    pthread_detach(s->thread);
    return s;
}
