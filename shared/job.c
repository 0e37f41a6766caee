/* job.c — the job object, formatted from the job hash (see job.h). */
#include "job.h"
#include "keys.h"
#include "redis.h"
#include "timefmt.h"

#include <stdlib.h>
#include <string.h>

const char *jg_job_field(const redisReply *fields, const char *name)
{
    if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, name) == 0)
            return v->str;
    }
    return NULL;
}

/* Field kinds, formatted each their own way; an empty stored value is JSON null. */
enum kind { STR, INT, TIME, JSON, BOOL };

static const struct { const char *name; enum kind kind; } members[] = {
    {"id", STR}, {"queue", STR}, {"type", STR}, {"status", STR}, {"priority", INT},
    {"attempts", INT}, {"max_attempts", INT}, {"progress", INT}, {"created_at", TIME},
    {"started_at", TIME}, {"finished_at", TIME}, {"run_at", TIME}, {"worker", STR},
    {"result", JSON}, {"error", STR}, {"cached", BOOL}, {"cache_key", STR},
    {"cancel_requested", BOOL}, {"version", INT},
};

#define NMEMBERS (sizeof members / sizeof members[0])

/* The one formatter: values[i] is member i's stored text (NULL or "" for null). */
static long long format(const char *const values[NMEMBERS], int flags, jg_buf_t *out)
{
    if (values[0] == NULL || values[0][0] == '\0')
        return -1;   /* no id: no job */
    const char *version = NULL;
    jg_buf_putc(out, '{');
    for (size_t i = 0; i < NMEMBERS; i++) {
        const char *v = values[i];
        if (strcmp(members[i].name, "version") == 0)
            version = v;
        if (i)
            jg_buf_putc(out, ',');
        jg_buf_putc(out, '"');
        jg_buf_puts(out, members[i].name);
        jg_buf_puts(out, "\":");
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

size_t jg_job_member_count(void) { return NMEMBERS; }
const char *jg_job_member(size_t i) { return i < NMEMBERS ? members[i].name : NULL; }

long long jg_job_json(const redisReply *fields, int flags, jg_buf_t *out)
{
    const char *values[NMEMBERS];
    for (size_t i = 0; i < NMEMBERS; i++)
        values[i] = jg_job_field(fields, members[i].name);
    return format(values, flags, out);
}

long long jg_job_json_values(const char *const *values, int flags, jg_buf_t *out)
{
    return format(values, flags, out);
}

int jg_job_member_index(const char *name)
{
    for (size_t i = 0; i < NMEMBERS; i++)
        if (strcmp(members[i].name, name) == 0)
            return (int)i;
    abort();   /* a programming error: callers name members of the table above */
}

long long jg_job_json_hmget(const redisReply *reply, int flags, jg_buf_t *out)
{
    const char *values[NMEMBERS];
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != NMEMBERS)
        return -1;
    for (size_t i = 0; i < NMEMBERS; i++)
        values[i] = reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->str : NULL;
    return format(values, flags, out);
}

redisReply *jg_job_read(const jg_config_t *cfg, jg_redis_t *redis, const char *id)
{
    char key[JG_KEY_MAX];
    jg_key_job(cfg, id, key);
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
