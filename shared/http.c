/* http.c — request parsing, the answer and the one error writer (see http.h). */
#include "http.h"
#include "fcgiparse.h"
#include "json.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void jg_req_reset(jg_req_t *req, const jg_config_t *cfg, jg_redis_t *redis, char **envp,
                  jg_read_fn read, void *io)
{
    jg_buf_t headers = req->headers, body = req->body;
    memset(req, 0, sizeof *req);
    req->headers = headers;
    req->body = body;
    jg_buf_reset(&req->headers);
    jg_buf_reset(&req->body);
    req->cfg = cfg;
    req->redis = redis;
    req->envp = envp;
    req->read = read;
    req->io = io;
    req->status = 200;
    req->content_type = "application/json";
    req->cache_control = "no-store";
    req->method = "";
    req->query = "";
}

void jg_req_free(jg_req_t *req)
{
    jg_buf_free(&req->headers);
    jg_buf_free(&req->body);
}

const char *jg_req_param(const jg_req_t *req, const char *name)
{
    return req->envp ? jg_fcgi_getenv(req->envp, name) : NULL;
}

int jg_req_parse_target(jg_req_t *req)
{
    const char *m = jg_req_param(req, "REQUEST_METHOD");
    req->method = m ? m : "GET";
    req->head = strcmp(req->method, "HEAD") == 0;
    const char *uri = jg_req_param(req, "REQUEST_URI");
    if (uri == NULL || uri[0] == '\0')
        uri = jg_req_param(req, "DOCUMENT_URI");
    if (uri == NULL)
        return -1;
    const char *q = strchr(uri, '?');
    size_t len = q ? (size_t)(q - uri) : strlen(uri);
    req->query = q ? q + 1 : "";
    const char *prefix = req->cfg->mount_prefix;
    size_t plen = strlen(prefix);
    if (len < plen || memcmp(uri, prefix, plen) != 0)
        return -1;
    uri += plen;
    len -= plen;
    if (len >= sizeof req->path || (len > 0 && uri[0] != '/'))
        return -1;
    memcpy(req->path, uri, len);
    req->path[len] = '\0';
    return 0;
}

int jg_query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen >= nlen && memcmp(p, name, nlen) == 0 && (plen == nlen || p[nlen] == '=')) {
            const char *v = plen == nlen ? p + plen : p + nlen + 1;
            return jg_percent_decode(out, cap, v, (size_t)(p + plen - v), 1) < 0 ? -1 : 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static int is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    if (strncasecmp(ct, "application/json", n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ')
        ct++;
    return *ct == '\0' || *ct == ';';
}

int jg_req_read_json_body(jg_req_t *req, jg_buf_t *out)
{
    jg_buf_reset(out);
    if (!is_json_type(jg_req_param(req, "CONTENT_TYPE")))
        return jg_fail(req, 415, "unsupported_media_type", "Content-Type must be application/json");
    const char *cl = jg_req_param(req, "CONTENT_LENGTH");
    long declared = -1;
    if (cl && *cl) {
        if (jg_parse_long(cl, 0, 1L << 62, &declared))
            return jg_fail(req, 400, "invalid_field", "bad Content-Length");
        if ((size_t)declared > req->cfg->max_body)
            return jg_fail(req, 413, "payload_too_large", "body over %zu bytes", req->cfg->max_body);
    }
    char chunk[16384];
    for (;;) {
        int n = req->read(req->io, chunk, sizeof chunk);
        if (n == JG_READ_TOO_LONG)
            return jg_fail(req, 413, "payload_too_large", "body over %zu bytes", req->cfg->max_body);
        if (n < 0)
            return jg_fail(req, 400, "invalid_json", "could not read the body");
        if (n == 0)
            break;
        if (out->len + (size_t)n > req->cfg->max_body)
            return jg_fail(req, 413, "payload_too_large", "body over %zu bytes", req->cfg->max_body);
        jg_buf_append(out, chunk, (size_t)n);
    }
    req->body_read = 1;
    if (out->data == NULL)
        jg_buf_append(out, "", 0);
    return 0;
}

int jg_fail(jg_req_t *req, int status, const char *code, const char *fmt, ...)
{
    req->failed = 1;
    req->status = status;
    snprintf(req->err_code, sizeof req->err_code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->err_msg, sizeof req->err_msg, fmt, ap);
    va_end(ap);
    /* a "%.64s" or the truncation above may cut a character: the body must stay JSON */
    jg_utf8_scrub(req->err_msg);
    return JG_ERR;
}

int jg_fail_unavailable(jg_req_t *req)
{
    jg_resp_header(req, "Retry-After: 1\r\n");
    return jg_fail(req, 503, "unavailable", "Redis is unreachable, try again");
}

int jg_fail_redis(jg_req_t *req, const void *reply)
{
    const redisReply *r = reply;
    jg_log_error("unexpected redis reply", "error",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : "wrong reply type", NULL);
    return jg_fail(req, 500, "internal", "internal error");
}

void jg_resp_header(jg_req_t *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jg_buf_vprintf(&req->headers, fmt, ap);
    va_end(ap);
}

/* Is origin one of JOBGATE_CORS_ORIGINS (a comma list, or "*")? */
static int origin_allowed(const char *list, const char *origin)
{
    size_t olen = strlen(origin), len;
    for (const char *p = list, *item; (item = jg_list_next(&p, &len)) != NULL;)
        if ((len == 1 && *item == '*') || (len == olen && memcmp(item, origin, len) == 0))
            return 1;
    return 0;
}

void jg_resp_common_headers(const jg_req_t *req, jg_buf_t *out)
{
    jg_buf_puts(out, "X-Content-Type-Options: nosniff\r\n");
    const char *origin = jg_req_param(req, "HTTP_ORIGIN");
    if (req->cfg->cors_origins[0] && origin && strpbrk(origin, "\r\n") == NULL &&
        origin_allowed(req->cfg->cors_origins, origin)) {
        int any = strcmp(req->cfg->cors_origins, "*") == 0;
        jg_buf_printf(out, "Access-Control-Allow-Origin: %s\r\n", any ? "*" : origin);
        if (!any)
            jg_buf_puts(out, "Vary: Origin\r\n");
        jg_buf_puts(out, "Access-Control-Expose-Headers: ETag, Location, Retry-After, "
                         "WWW-Authenticate, X-Cache-TTL\r\n");
    }
}

const char *jg_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default:  return "Unknown";
    }
}

void jg_resp_render_parts(jg_buf_t *out, int status, const char *headers, const char *ctype,
                          const char *cache_control, const char *body, size_t body_len, int flags)
{
    char num[24];   /* no printf on this path: it runs once per answer */
    jg_buf_puts(out, "Status: ");
    jg_buf_append(out, num, jg_fmt_int(status, num));
    jg_buf_putc(out, ' ');
    jg_buf_puts(out, jg_status_text(status));
    jg_buf_puts(out, "\r\n");
    if (ctype && status != 204 && status != 304) {
        jg_buf_puts(out, "Content-Type: ");
        jg_buf_puts(out, ctype);
        jg_buf_puts(out, "\r\n");
    }
    if (cache_control) {
        jg_buf_puts(out, "Cache-Control: ");
        jg_buf_puts(out, cache_control);
        jg_buf_puts(out, "\r\n");
    }
    if (!(flags & JG_RENDER_STREAM) && status != 204 && status != 304) {
        jg_buf_puts(out, "Content-Length: ");
        jg_buf_append(out, num, jg_fmt_int(body ? (long long)body_len : 0, num));
        jg_buf_puts(out, "\r\n");
    }
    jg_buf_puts(out, headers);
    jg_buf_puts(out, "\r\n");
    if (body && !(flags & JG_RENDER_HEAD) && status != 204 && status != 304)
        jg_buf_append(out, body, body_len);
}

void jg_resp_render(jg_req_t *req, jg_buf_t *out)
{
    jg_buf_t headers = JG_BUF_INIT;
    jg_resp_common_headers(req, &headers);
    if (req->headers.len)
        jg_buf_append(&headers, req->headers.data, req->headers.len);
    if (req->failed) {
        jg_buf_reset(&req->body);
        jg_buf_puts(&req->body, "{\"error\":{\"code\":");
        jg_buf_json_string(&req->body, req->err_code, strlen(req->err_code));
        jg_buf_puts(&req->body, ",\"message\":");
        jg_buf_json_string(&req->body, req->err_msg, strlen(req->err_msg));
        jg_buf_puts(&req->body, "}}");
        req->content_type = "application/json";
    }
    jg_resp_render_parts(out, req->status, headers.data ? headers.data : "", req->content_type,
                         req->cache_control, req->body.data, req->body.len,
                         (req->head ? JG_RENDER_HEAD : 0) |
                             (req->streaming && !req->failed ? JG_RENDER_STREAM : 0));
    jg_buf_free(&headers);
}
