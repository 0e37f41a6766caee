/* pipeline.c — pipelined EVALSHA with a reload on NOSCRIPT (see pipeline.h). */
#include "pipeline.h"
#include "scripts.h"

#include <stdio.h>
#include <string.h>

int jg_script_append(jg_redis_t *r, const jg_script_call_t *c)
{
    const char *argv[JG_ARGS_MAX + 3];
    size_t lens[JG_ARGS_MAX + 3];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", c->nkeys);
    argv[0] = "EVALSHA";
    argv[1] = jg_script(c->name)->sha1;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < c->args.argc; i++) {
        argv[i + 3] = c->args.argv[i];
        lens[i + 3] = c->args.lens[i];
    }
    return jg_redis_append_argv(r, c->args.argc + 3, argv, lens);
}

redisReply *jg_script_run(jg_redis_t *r, jg_script_call_t *c)
{
    return jg_redis_script(r, c->name, c->nkeys, c->args.argc, c->args.argv, c->args.lens);
}

int jg_scripts_pipelined(jg_redis_t *r, jg_script_call_t *calls, size_t n, redisReply **replies)
{
    size_t appended = 0;
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    for (; appended < n; appended++)
        if (jg_script_append(r, &calls[appended]))
            break;
    if (appended < n) {
        if (appended)   /* replies of the appended part must not stay pending */
            jg_redis_drop(r, "cannot pipeline");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((replies[i] = jg_redis_get_reply(r)) == NULL)
            return -1;
    for (size_t i = 0; i < n; i++) {
        if (jg_redis_is_noscript(replies[i])) {
            freeReplyObject(replies[i]);
            replies[i] = jg_script_run(r, &calls[i]);
            if (replies[i] == NULL)
                return -1;
        }
    }
    return 0;
}
