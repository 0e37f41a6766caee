/* routes.h — every route of the contract (section 1) and the program that owns it. Each
 * program serves its own routes; a route of another program is 404 there, and a path no
 * route of any program takes with this method is 405 with the methods that are allowed. */
#ifndef JG_ROUTES_H
#define JG_ROUTES_H

typedef enum jg_route_id {
    JG_ROUTE_SUBMIT,      /* POST /jobs                 jobgate-submit */
    JG_ROUTE_CANCEL,      /* POST /jobs/{id}/cancel      jobgate-submit */
    JG_ROUTE_STATUS,      /* GET  /jobs/{id}             jobgate-status */
    JG_ROUTE_LOGS,        /* GET  /jobs/{id}/logs        jobgate-logs */
    JG_ROUTE_CACHE_KEY,   /* POST /cache/key             jobgate-cache */
    JG_ROUTE_CACHE_GET,   /* GET  /cache/{key}           jobgate-cache */
    JG_ROUTE_CACHE_PUT,   /* PUT  /cache/{key}           jobgate-cache */
    JG_ROUTE_CACHE_DELETE,/* DELETE /cache/{key}         jobgate-cache */
    JG_ROUTE_HEALTH,      /* GET  /health                jobgate-admin */
    JG_ROUTE_STATS,       /* GET  /stats                 jobgate-admin */
    JG_ROUTE_METRICS,     /* GET  /metrics               jobgate-admin */
    JG_ROUTE_LIST,        /* GET  /jobs                  jobgate-admin */
    JG_ROUTE_RETRY,       /* POST /jobs/{id}/retry       jobgate-admin */
    JG_ROUTE_DELETE,      /* DELETE /jobs/{id}           jobgate-admin */
    JG_ROUTE_QUEUES,      /* GET  /queues                jobgate-admin */
    JG_ROUTE_PAUSE,       /* POST /queues/{q}/pause      jobgate-admin */
    JG_ROUTE_RESUME,      /* POST /queues/{q}/resume     jobgate-admin */
    JG_ROUTE_RETRY_FAILED,/* POST /queues/{q}/retry-failed jobgate-admin */
} jg_route_id_t;

/* Who may call a route (contract section 8; checked by access.c before the handler runs). */
typedef enum jg_access {
    JG_ACCESS_OPEN,        /* anyone, whatever the tokens */
    JG_ACCESS_READ,        /* a read or a write token, when JOBGATE_READ_TOKENS is set */
    JG_ACCESS_WRITE,       /* a write token, when JOBGATE_API_TOKENS is set */
} jg_access_t;

/* Route flags. */
#define JG_ROUTE_QUERY_TOKEN  1   /* ?access_token= is accepted as well (EventSource) */
#define JG_ROUTE_RATE_LIMITED 2   /* counted by JOBGATE_RATE_LIMIT */

typedef struct jg_route {
    jg_route_id_t id;
    const char *method;    /* GET routes take HEAD too */
    const char *pattern;   /* segments; "{}" takes any one non-empty segment */
    const char *program;   /* "submit", "status", ... */
    jg_access_t access;
    int flags;             /* JG_ROUTE_QUERY_TOKEN | JG_ROUTE_RATE_LIMITED */
} jg_route_t;

typedef enum jg_match {
    JG_MATCH_OK,           /* *route is this program's; param holds the {} segment if any */
    JG_MATCH_NOT_FOUND,    /* no route has this path, or it is another program's */
    JG_MATCH_BAD_METHOD,   /* the path exists but not with this method: allow lists those */
} jg_match_t;

/* Matches method and path (under the mount prefix, no query) for program.
 * param (param_cap bytes) receives the raw {} segment; allow (allow_cap bytes) the Allow list. */
jg_match_t jg_route_match(const char *program, const char *method, const char *path,
                          const jg_route_t **route, char *param, size_t param_cap, char *allow,
                          size_t allow_cap);

/* The route table itself, for tests: *n receives its length. */
const jg_route_t *jg_routes(size_t *n);

#endif
