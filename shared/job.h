/* job.h — the job object of contract section 4, built from the job hash in Redis
 * (docs/redis.md). Every program that shows a job formats it here. */
#ifndef JG_JOB_H
#define JG_JOB_H

#include <hiredis/hiredis.h>

#include "buf.h"
#include "config.h"
#include "redis.h"

/* Extra members some answers add (contract sections 3 and 6). */
#define JG_JOB_COALESCED 1   /* "coalesced": true */

/* Appends the job object for a flat field/value array (an HGETALL reply, or the same array
 * returned by a script) to out. Returns the job's version, or -1 (out unchanged) when the
 * array is empty or has no id (the job does not exist). */
long long jg_job_json(const redisReply *fields, int flags, jg_buf_t *out);

/* Reads job id in one round trip: HMGET of exactly the fields the job object shows (not the
 * payload, which can be large). id must have passed jg_valid_job_id. Returns the reply (the
 * caller frees it; format it with jg_job_json_hmget), or NULL when Redis is unreachable. */
redisReply *jg_job_read(const jg_config_t *cfg, jg_redis_t *redis, const char *id);

/* The job object from the reply of jg_job_read(); returns as jg_job_json. */
long long jg_job_json_hmget(const redisReply *values, int flags, jg_buf_t *out);

/* The hash fields the job object shows, in the order jg_job_json_hmget expects them (for
 * callers that read them another way, e.g. a script's HMGET): count, and each name. */
size_t jg_job_member_count(void);
const char *jg_job_member(size_t i);

/* The job object from values[i], member i's stored text (NULL for null), for a caller that
 * knows the fields without reading them (submit's answer); returns as jg_job_json. */
long long jg_job_json_values(const char *const *values, int flags, jg_buf_t *out);
/* The index of member name (one of the table's; anything else aborts). */
int jg_job_member_index(const char *name);
/* The value of field name in such an array, or NULL. */
const char *jg_job_field(const redisReply *fields, const char *name);

#endif
