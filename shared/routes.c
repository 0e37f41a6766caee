/* routes.c — the contract's route table and matching (see routes.h). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "routes.h"

static const jg_route_t routes[] = {
    {JG_ROUTE_SUBMIT, "POST", "/jobs", "submit", JG_ACCESS_WRITE, JG_ROUTE_RATE_LIMITED},
    {JG_ROUTE_CANCEL, "POST", "/jobs/{}/cancel", "submit", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_STATUS, "GET", "/jobs/{}", "status", JG_ACCESS_READ, 0},
    {JG_ROUTE_LOGS, "GET", "/jobs/{}/logs", "logs", JG_ACCESS_READ, JG_ROUTE_QUERY_TOKEN},
    {JG_ROUTE_CACHE_KEY, "POST", "/cache/key", "cache", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_CACHE_GET, "GET", "/cache/{}", "cache", JG_ACCESS_READ, 0},
    {JG_ROUTE_CACHE_PUT, "PUT", "/cache/{}", "cache", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_CACHE_DELETE, "DELETE", "/cache/{}", "cache", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_HEALTH, "GET", "/health", "admin", JG_ACCESS_OPEN, 0},
    {JG_ROUTE_STATS, "GET", "/stats", "admin", JG_ACCESS_READ, 0},
    {JG_ROUTE_METRICS, "GET", "/metrics", "admin", JG_ACCESS_READ, 0},
    {JG_ROUTE_LIST, "GET", "/jobs", "admin", JG_ACCESS_READ, 0},
    {JG_ROUTE_RETRY, "POST", "/jobs/{}/retry", "admin", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_DELETE, "DELETE", "/jobs/{}", "admin", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_QUEUES, "GET", "/queues", "admin", JG_ACCESS_READ, 0},
    {JG_ROUTE_PAUSE, "POST", "/queues/{}/pause", "admin", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_RESUME, "POST", "/queues/{}/resume", "admin", JG_ACCESS_WRITE, 0},
    {JG_ROUTE_RETRY_FAILED, "POST", "/queues/{}/retry-failed", "admin", JG_ACCESS_WRITE, 0},
};

const jg_route_t *jg_routes(size_t *n)
{
    *n = sizeof routes / sizeof routes[0];
    return routes;
}

/* Does path match pattern? A literal segment beats "{}" only through table order: "/cache/key"
 * with POST is found before "/cache/{}" since both are tried and methods differ. */
static int path_matches(const char *pattern, const char *path, char *param, size_t cap)
{
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++, path++;
        const char *pend = strchr(pattern, '/');
        const char *send = strchr(path, '/');
        size_t plen = pend ? (size_t)(pend - pattern) : strlen(pattern);
        size_t slen = send ? (size_t)(send - path) : strlen(path);
        if (plen == 2 && memcmp(pattern, "{}", 2) == 0) {
            if (slen == 0)
                return 0;
            if (param) {
                size_t n = slen < cap - 1 ? slen : cap - 1;
                memcpy(param, path, n);
                param[n] = '\0';
                if (slen >= cap)   /* too long to be any valid id: keep it invalid */
                    param[0] = '\0';
            }
        } else if (plen != slen || memcmp(pattern, path, plen) != 0) {
            return 0;
        }
        pattern += plen, path += slen;
    }
    return *pattern == '\0' && *path == '\0';
}

static int method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

jg_match_t jg_route_match(const char *program, const char *method, const char *path,
                          const jg_route_t **route, char *param, size_t param_cap, char *allow,
                          size_t allow_cap)
{
    int path_known = 0;
    size_t alen = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const jg_route_t *r = &routes[i];
        if (!path_matches(r->pattern, path, NULL, 0))
            continue;
        path_known = 1;
        if (method_matches(r->method, method)) {
            if (strcmp(r->program, program) != 0)
                return JG_MATCH_NOT_FOUND;
            path_matches(r->pattern, path, param, param_cap);
            *route = r;
            return JG_MATCH_OK;
        }
        const char *m = strcmp(r->method, "GET") == 0 ? "GET, HEAD" : r->method;
        if (strstr(allow, r->method) == NULL) {
            int n = snprintf(allow + alen, allow_cap - alen, "%s%s", alen ? ", " : "", m);
            if (n > 0 && (size_t)n < allow_cap - alen)
                alen += (size_t)n;
        }
    }
    if (!path_known)
        return JG_MATCH_NOT_FOUND;
    if (alen + 9 < allow_cap)
        snprintf(allow + alen, allow_cap - alen, ", OPTIONS");
    return JG_MATCH_BAD_METHOD;
}
