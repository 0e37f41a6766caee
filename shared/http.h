/* http.h — one request and its answer, whatever carried it (FastCGI, plain CGI, or the event
 * loop for parked requests). Handlers read the request through jg_req_*, fill the answer with
 * jg_resp_*, or fail with jg_fail(); the server turns the answer — or the error, as
 * {"error":{"code","message"}} — into bytes in exactly one place, jg_resp_render(). */
#ifndef JG_HTTP_H
#define JG_HTTP_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "redis.h"
#include "jg.h"
#include "routes.h"

typedef struct jg_req jg_req_t;

/* How a request's body is read: returns bytes read (0 at its end), -1 on error, or
 * JG_READ_TOO_LONG at the end of a body longer than JOBGATE_MAX_BODY (only its first
 * JOBGATE_MAX_BODY bytes were kept). */
#define JG_READ_TOO_LONG (-2)
typedef int (*jg_read_fn)(void *io, char *buf, int len);

struct jg_req {
    /* The request */
    char **envp;                  /* FastCGI params, or the CGI environment */
    const char *method;
    char path[512];               /* under the mount prefix, no query, raw (not %-decoded) */
    const char *query;            /* raw query string, "" when none */
    const jg_route_t *route;
    char param[96];               /* the route's {} segment, raw; "" if too long */
    int head;                     /* HEAD: the answer has no body */
    int streaming;                /* the answer is a stream (SSE): no Content-Length; with
                                     JG_PARKED, what is in body is sent before parking */
    jg_read_fn read;
    void *io;
    int body_read;                /* the whole body was consumed */

    /* What it runs with */
    const jg_config_t *cfg;
    jg_redis_t *redis;            /* this thread's connection */
    char caller[65];              /* hex SHA-256 of the write token that authorized the request,
                                     "" when none (access.c): scopes Idempotency-Keys */

    /* The answer */
    int status;
    const char *content_type;     /* default application/json */
    const char *cache_control;    /* default no-store */
    jg_buf_t headers;             /* extra header lines, each ending "\r\n" */
    jg_buf_t body;

    /* The error, if the handler failed: rendered by jg_resp_render() */
    int failed;
    char err_code[32];
    char err_msg[256];

    /* Set by a handler that returns JG_PARKED: what the event loop needs (see loop.h) */
    void *park_data;
};

/* Prepares req for a new request; keeps the buffers' memory between requests. */
void jg_req_reset(jg_req_t *req, const jg_config_t *cfg, jg_redis_t *redis, char **envp,
                  jg_read_fn read, void *io);
void jg_req_free(jg_req_t *req);

/* Fills method, path and query from the environment. Returns 0, or -1 if the path is not under
 * the mount prefix (the caller answers 404). */
int jg_req_parse_target(jg_req_t *req);

/* A FastCGI param / CGI variable (e.g. "HTTP_IF_NONE_MATCH"), or NULL. */
const char *jg_req_param(const jg_req_t *req, const char *name);

/* Query parameter name, %-decoded into out. Returns 1 if present, 0 if absent, -1 if longer
 * than cap - 1 or badly encoded. */
int jg_query_get(const char *query, const char *name, char *out, size_t cap);

/* Reads a JSON body: Content-Type must be application/json (else 415), its size at most
 * JOBGATE_MAX_BODY (else 413). On success out holds the body (NUL-terminated) and 0 is
 * returned; else the request has failed (jg_fail) and -1 is returned. */
int jg_req_read_json_body(jg_req_t *req, jg_buf_t *out);

/* Fails the request: status, code (contract section 2) and message. The message is cut to 255
 * bytes and stripped of bytes that are not well-formed UTF-8 (jg_utf8_scrub), so that whatever
 * a caller formats (a "%.64s" of a client's name cut mid-character), the body is valid JSON.
 * Returns JG_ERR so that handlers can write `return jg_fail(...)`. */
int jg_fail(jg_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 503 unavailable with Retry-After: 1 — Redis could not be reached. */
int jg_fail_unavailable(jg_req_t *req);
/* 500 internal for a Redis reply nobody expected (logged, not shown). */
int jg_fail_redis(jg_req_t *req, const void *reply);

void jg_resp_header(jg_req_t *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Headers every answer carries (X-Content-Type-Options, CORS when configured): appended to out.
 * Parked requests take a copy when parked, since the environment goes away. */
void jg_resp_common_headers(const jg_req_t *req, jg_buf_t *out);

/* The whole CGI-style answer ("Status: ...\r\n" headers "\r\n" body) for req, or for its error. */
void jg_resp_render(jg_req_t *req, jg_buf_t *out);

/* Renders an answer from parts, for the event loop: status, extra header lines (with common
 * headers), content type (NULL: none), body (NULL: none), flags: */
#define JG_RENDER_HEAD   1   /* HEAD: no body */
#define JG_RENDER_STREAM 2   /* the start of a stream: no Content-Length, the body so far */
void jg_resp_render_parts(jg_buf_t *out, int status, const char *headers, const char *ctype,
                          const char *cache_control, const char *body, size_t body_len, int flags);

const char *jg_status_text(int status);

#endif
