/* worker.c — main of jobgate-worker: flags (worker/options.c), --help, --version, --check, then
 * the event loop (worker/workloop.c). Not a web program: it claims jobs from Redis and runs them. */
#include "config.h"
#include "jg.h"
#include "log.h"
#include "workloop.h"
#include "options.h"
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --check: the worker's own settings (the web programs' threads, socket and streams do not
 * apply), secrets masked; what is missing; whether Redis answers. Exit 0 when usable, else 1. */
static int check(const jg_config_t *cfg, const jg_worker_opts_t *o)
{
    jg_worker_opts_print(o, stdout);
    printf("REDIS_URL=%s\nJOBGATE_KEY_PREFIX=%s\nJOBGATE_LEASE=%ld\nJOBGATE_RETRY_BASE=%g\n"
           "JOBGATE_RETENTION=%ld\nJOBGATE_LOG_MAX=%ld\n"
           "JOBGATE_REDIS_WAIT_REPLICAS=%ld\nJOBGATE_REDIS_WAIT_MS=%ld\n",
           cfg->redis_url_masked, cfg->key_prefix, cfg->lease, cfg->retry_base, cfg->retention,
           cfg->log_max, cfg->redis_wait_replicas, cfg->redis_wait_ms);
    int usable = 1;
    if (o->ntypes == 0) {
        printf("missing=%s\n", JG_WORKER_NO_TYPES);
        usable = 0;
    }
    jg_redis_t r;
    jg_redis_init(&r, cfg, 2000);
    redisReply *rep = jg_redis_cmd(&r, "PING");
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    printf("redis=%s\n", ok ? "ok" : "unreachable");
    if (rep)
        freeReplyObject(rep);
    jg_redis_close(&r);
    return ok && usable ? 0 : 1;
}

int main(int argc, char **argv)
{
    int rc = 2;
    jg_worker_opts_t opts;
    jg_config_t cfg;
    char err[1024];
    jg_log_init("jobgate-worker");
    srandom((unsigned)time(NULL) ^ ((unsigned)getpid() << 16));

    if (jg_worker_opts_parse(&opts, argc, argv, err, sizeof err) != JG_OK) {
        fprintf(stderr, "jobgate-worker: %s (see --help)\n", err);
        goto out;
    }
    if (opts.action == JG_WORKER_HELP) {
        jg_worker_usage(stdout);
        rc = 0;
        goto out;
    }
    if (opts.action == JG_WORKER_VERSION) {
        printf("jobgate-worker %s\n", JG_VERSION);
        rc = 0;
        goto out;
    }
    if (jg_config_load_env(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "jobgate-worker: %s\n", err);
        goto out;
    }
    cfg.grace = opts.grace;
    if (opts.action == JG_WORKER_CHECK) {
        rc = check(&cfg, &opts);
        goto out;
    }
    rc = jg_worker_run(&cfg, &opts);
out:
    jg_worker_opts_free(&opts);
    return rc;
}
