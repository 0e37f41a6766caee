/* job.h — the job object of contract section 4, built from the job hash in Redis
 * (docs/redis.md). Every program that shows a job takes it from here. */
#ifndef JG_JOB_H
#define JG_JOB_H

#include <hiredis/hiredis.h>

#include "buf.h"
#include "config.h"
#include "keys.h"
#include "redis.h"

/* Extra members some answers add (contract sections 3 and 6). */
#define JG_JOB_COALESCED 1   /* "coalesced": true */

/* Reads job id in one round trip: HMGET of its `json` field (the job object, rendered by the
 * script that last changed the job: docs/redis.md, "The job object") and its `version`. A job
 * whose stored object is missing (stored before `json` existed) or not of the hash's version
 * (changed by a writer that did not render it) costs a second HMGET, of the fields the object
 * shows. id must have passed jg_valid_job_id. Returns the reply (the caller frees it; format it
 * with jg_job_json_hmget), or NULL when Redis is unreachable. */
redisReply *jg_job_read(const jg_config_t *cfg, jg_redis_t *redis, const char *id);

/* The first command jg_job_read() sends, for a caller that pipelines it with others (server.c's
 * batches): HMGET key json version, in argv/lens (argv[1] points into key). */
typedef struct jg_job_read_cmd {
    const char *argv[4];
    size_t lens[4];
    char key[JG_KEY_MAX];
} jg_job_read_cmd_t;
void jg_job_read_cmd(const jg_config_t *cfg, const char *id, jg_job_read_cmd_t *cmd);
/* Is rep, the reply to that command, the whole answer (1: format it, or it says no job, or it
 * is NULL or an error), or does the job need jg_job_read()'s second HMGET (0)? */
int jg_job_read_whole(const redisReply *rep);

/* Appends the job object of a reply of jg_job_read() (or any array whose first element is a
 * job's `json` field) to out, with the members flags adds. Returns the job's version, or -1
 * (out unchanged) when there is no job. */
long long jg_job_json_hmget(const redisReply *values, int flags, jg_buf_t *out);

/* The same for a job object text a script answered (a bulk string reply). */
long long jg_job_json_text(const redisReply *text, int flags, jg_buf_t *out);

/* The job object of a job that submit.lua is about to create queued at once (no delay, no cached
 * result), made by the same formatter, for the script to store without rendering it itself:
 * only its created_at is not known here, which Redis' clock gives. Appends the object with
 * created_at the time created_at (ms text, this host's clock) to out, and sets *cut to the
 * offset of that value ("YYYY-MM-DDTHH:MM:SS.mmmZ", quoted): the script keeps its text to the
 * second when Redis' clock is in that second, else renders its own (docs/redis.md,
 * "submit.lua"). priority and max_attempts are decimal text; every string here passed its rule
 * (id, name, 64 hex), so it needs no escaping. */
void jg_job_submitted(const char *id, const char *queue, const char *type, const char *priority,
                      const char *max_attempts, const char *cache_key, const char *created_at,
                      jg_buf_t *out, size_t *cut);

#endif
