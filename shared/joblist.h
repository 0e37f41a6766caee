/* joblist.h — GET /jobs of jobgate-admin (contract section 7): the job listing, newest first,
 * filtered by queue, type and status, in pages whose cursor keeps the walk stable while jobs
 * arrive. Each queue's page comes from list.lua over its job index P:{tag}:q:<queue>:jobs
 * (score created_at); without a queue, the queues' pages are merged (docs/redis.md, "list.lua"). */
#ifndef JG_JOBLIST_H
#define JG_JOBLIST_H

#include "buf.h"
#include "config.h"
#include "http.h"
#include "jg.h"
#include "redis.h"

#define JG_LIST_LIMIT_MAX     500
#define JG_LIST_LIMIT_DEFAULT 50
/* At most this many index entries are looked at per queue and page: with filters that match
 * few jobs, a page may hold fewer than limit jobs (even none) and still have a next cursor. */
#define JG_LIST_SCAN_BUDGET   2000

typedef struct jg_list_query {
    char queue[JG_NAME_MAX + 1];     /* "" : every queue */
    char type[JG_NAME_MAX + 1];      /* "" : any */
    char status[16];                 /* "" : any */
    int limit;
    int has_cursor;
    long long cursor_ms;             /* the cursor: (created_at ms, id) of the last job shown */
    char cursor_id[JG_ID_MAX + 1];
} jg_list_query_t;

/* Reads queue, type, status, limit and cursor from req's query string. Returns JG_OK, or fails
 * req (400 invalid_field naming the parameter) and returns JG_ERR. */
int jg_list_parse(jg_req_t *req, jg_list_query_t *q);

/* Appends {"jobs":[job objects],"next":"<cursor>"|null} to out. Returns 0, -1 when Redis is
 * unreachable, -2 on a reply nobody expected (logged). */
int jg_list_jobs(const jg_config_t *cfg, jg_redis_t *redis, const jg_list_query_t *q,
                 jg_buf_t *out);

#endif
