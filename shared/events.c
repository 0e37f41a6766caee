/* events.c — the pub/sub subscriber thread (see events.h). */
#include "events.h"
#include "log.h"
#include "redis.h"
#include "timefmt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct jg_subscriber {
    jg_redis_t redis;          /* the thread's own; blocking reads, no timeout */
    char channel[256];
    jg_event_fn fn;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu;        /* guards fd: the socket jg_subscriber_stop() interrupts */
    int fd;
    atomic_int stopping;
};

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_fd(jg_subscriber_t *s, int fd)
{
    pthread_mutex_lock(&s->mu);
    s->fd = fd;
    if (fd >= 0 && atomic_load(&s->stopping))
        shutdown(fd, SHUT_RDWR);   /* stop() came while we were connecting */
    pthread_mutex_unlock(&s->mu);
}

static void *subscriber_main(void *arg)
{
    jg_subscriber_t *s = arg;
    while (!atomic_load(&s->stopping)) {
        if (jg_redis_connect(&s->redis)) {
            pause_ms(50);
            continue;
        }
        set_fd(s, s->redis.ctx->fd);
        redisReply *rep = jg_redis_cmd(&s->redis, "SUBSCRIBE %s", s->channel);
        if (rep != NULL) {
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
        }
        set_fd(s, -1);
        if (atomic_load(&s->stopping))
            break;
        int young = jg_monotonic_ms() - s->redis.connected_at < 1000;
        jg_redis_drop(&s->redis, s->redis.ctx ? s->redis.ctx->errstr : "subscription ended");
        if (young)   /* a server that drops us at once: do not spin */
            pause_ms(100);
    }
    jg_redis_close(&s->redis);
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
    s->fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    if (pthread_create(&s->thread, NULL, subscriber_main, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void jg_subscriber_stop(jg_subscriber_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, 1);
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);   /* wakes the blocking read */
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
