/* job.c — the job object as jobgate's readers show it (see job.h): the text the scripts keep in
 * the job hash's `json` field, copied; and the formatter of jobs stored before that field. */
#include "job.h"
#include "keys.h"
#include "redis.h"
#include "timefmt.h"

#include <stdlib.h>
#include <string.h>

/* Field kinds, formatted each their own way; an empty stored value is JSON null. */
enum kind { STR, INT, TIME, JSON, BOOL };

/* Each member with the text before its value ({ or , then "name":), written in one piece. */
#define M(name, kind) {name, sizeof(name) - 1 + 4, kind}
static const struct { const char *name; size_t prefix_len; enum kind kind; } members[] = {
    M("id", STR), M("queue", STR), M("type", STR), M("status", STR), M("priority", INT),
    M("attempts", INT), M("max_attempts", INT), M("progress", INT), M("created_at", TIME),
    M("started_at", TIME), M("finished_at", TIME), M("run_at", TIME), M("worker", STR),
    M("result", JSON), M("error", STR), M("cached", BOOL), M("cache_key", STR),
    M("cancel_requested", BOOL), M("version", INT),
};
#undef M

#define NMEMBERS (sizeof members / sizeof members[0])

/* The formatter of a job whose hash has no `json` field (stored by scripts older than it):
 * values[i] is member i's stored text (NULL or "" for null). The same rules as the scripts'
 * renderer (docs/redis.md, "The job object"); tests/test_render.py compares the two. */
static long long format(const char *const values[NMEMBERS], int flags, jg_buf_t *out)
{
    if (values[0] == NULL || values[0][0] == '\0')
        return -1;   /* no id: no job */
    const char *version = values[NMEMBERS - 1];   /* the last member */
    for (size_t i = 0; i < NMEMBERS; i++) {
        const char *v = values[i];
        char prefix[32];   /* {"name": or ,"name": */
        size_t n = members[i].prefix_len - 4;
        prefix[0] = i ? ',' : '{';
        prefix[1] = '"';
        memcpy(prefix + 2, members[i].name, n);
        prefix[n + 2] = '"';
        prefix[n + 3] = ':';
        jg_buf_append(out, prefix, n + 4);
        if (members[i].kind == BOOL) {
            jg_buf_puts(out, v && strcmp(v, "1") == 0 ? "true" : "false");
            continue;
        }
        if (v == NULL || v[0] == '\0') {
            jg_buf_puts(out, "null");
            continue;
        }
        switch (members[i].kind) {
        case STR:
            jg_buf_json_string(out, v, strlen(v));
            break;
        case INT:
        case JSON:   /* stored JSON text, validated before it was stored */
            jg_buf_puts(out, v);
            break;
        case TIME: {
            char ts[32];
            jg_time_format(strtoll(v, NULL, 10), ts);
            jg_buf_putc(out, '"');
            jg_buf_puts(out, ts);
            jg_buf_putc(out, '"');
            break;
        }
        case BOOL:
            break;
        }
    }
    if (flags & JG_JOB_COALESCED)
        jg_buf_puts(out, ",\"coalesced\":true");
    jg_buf_putc(out, '}');
    return version ? strtoll(version, NULL, 10) : 0;
}

void jg_job_submitted(const char *id, const char *queue, const char *type, const char *priority,
                      const char *max_attempts, const char *cache_key, const char *created_at,
                      jg_buf_t *out, size_t *cut)
{
    /* the stored values of such a job, as submit.lua writes them (members[] order) */
    const char *values[NMEMBERS] = {id, queue, type, "queued", priority, "0", max_attempts,
                                    NULL, created_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                    cache_key, NULL, "1"};
    static const char created[] = "\"created_at\":";
    size_t start = out->len;
    format(values, 0, out);
    /* the first "created_at": is the member: the strings before it hold no quote */
    const char *at = memmem(out->data + start, out->len - start, created, sizeof created - 1);
    *cut = (size_t)(at - out->data) + sizeof created - 1;
}

/* The version a stored job object text holds in its last member, or -1 when it does not end
 * in "version":N}. */
static long long text_version(const char *text, size_t len)
{
    static const char tail[] = "\"version\":";
    size_t tl = sizeof tail - 1;
    if (len < tl + 3 || text[0] != '{' || text[len - 1] != '}')
        return -1;
    const char *p = text + len - 1;   /* back over the digits of the version */
    while (p > text && p[-1] >= '0' && p[-1] <= '9')
        p--;
    if (p == text + len - 1 || (size_t)(p - text) < tl || memcmp(p - tl, tail, tl) != 0)
        return -1;
    return strtoll(p, NULL, 10);
}

/* Appends the stored job object text (len bytes), with the members flags adds; returns its
 * version, or -1 (out unchanged) when it is not a job object. */
static long long copy_text(const char *text, size_t len, int flags, jg_buf_t *out)
{
    long long version = text_version(text, len);
    if (version < 0)
        return -1;
    jg_buf_append(out, text, len - 1);
    if (flags & JG_JOB_COALESCED)
        jg_buf_puts(out, ",\"coalesced\":true");
    jg_buf_putc(out, '}');
    return version;
}

long long jg_job_json_text(const redisReply *text, int flags, jg_buf_t *out)
{
    if (text == NULL || text->type != REDIS_REPLY_STRING)
        return -1;
    return copy_text(text->str, text->len, flags, out);
}

long long jg_job_json_hmget(const redisReply *reply, int flags, jg_buf_t *out)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    if (reply->elements == NMEMBERS) {   /* a job without `json` (jg_job_read) */
        const char *values[NMEMBERS];
        for (size_t i = 0; i < NMEMBERS; i++)
            values[i] = reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->str
                                                                      : NULL;
        return format(values, flags, out);
    }
    return reply->elements >= 1 ? jg_job_json_text(reply->element[0], flags, out) : -1;
}

/* HMGET of the fields each member shows: a job stored before `json` existed. */
static redisReply *read_members(jg_redis_t *redis, const char *key)
{
    const char *argv[NMEMBERS + 2];
    size_t lens[NMEMBERS + 2];
    argv[0] = "HMGET";
    argv[1] = key;
    for (size_t i = 0; i < NMEMBERS; i++)
        argv[i + 2] = members[i].name;
    for (size_t i = 0; i < NMEMBERS + 2; i++)
        lens[i] = strlen(argv[i]);
    return jg_redis_read(redis, (int)(NMEMBERS + 2), argv, lens);
}

void jg_job_read_cmd(const jg_config_t *cfg, const char *id, jg_job_read_cmd_t *cmd)
{
    jg_key_job(cfg, id, cmd->key);
    cmd->argv[0] = "HMGET", cmd->lens[0] = 5;
    cmd->argv[1] = cmd->key, cmd->lens[1] = strlen(cmd->key);
    cmd->argv[2] = "json", cmd->lens[2] = 4;
    cmd->argv[3] = "version", cmd->lens[3] = 7;
}

int jg_job_read_whole(const redisReply *rep)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return 1;   /* no job (no version), or an error */
    /* the object stored is shown when it is of the hash's version; a job stored before `json`
     * existed, or changed by a writer that did not render it, is read field by field */
    const redisReply *text = rep->element[0];
    return text->type == REDIS_REPLY_STRING &&
           text_version(text->str, text->len) == strtoll(rep->element[1]->str, NULL, 10);
}

redisReply *jg_job_read(const jg_config_t *cfg, jg_redis_t *redis, const char *id)
{
    jg_job_read_cmd_t cmd;
    jg_job_read_cmd(cfg, id, &cmd);
    redisReply *rep = jg_redis_read(redis, 4, cmd.argv, cmd.lens);
    if (jg_job_read_whole(rep))
        return rep;
    freeReplyObject(rep);
    return read_members(redis, cmd.key);
}
