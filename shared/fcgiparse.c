/* fcgiparse.c — owns reading one FastCGI request from bytes as they arrive: records, parameters
 * into one arena, the body, and the management answers (see fcgiparse.h). No I/O. */
#include "fcgiparse.h"
#include "fcgi.h"

#include <stdlib.h>
#include <string.h>

enum {
    BEGIN_REQUEST = 1, ABORT_REQUEST = 2, PARAMS = 4, STDIN = 5, GET_VALUES = 9,
    GET_VALUES_RESULT = 10, UNKNOWN_TYPE = 11
};
enum { RESPONDER = 1, CANT_MPX_CONN = 1, UNKNOWN_ROLE = 3, KEEP_CONN = 1 };

/* What a record's content is for, decided from its header. */
enum { K_SKIP, K_BEGIN, K_PARAMS, K_STDIN, K_MGMT };

/* The record being read: kept in the parser between feeds. */
#define R_TYPE(p) ((p)->hdr[1])
#define R_ID(p) (((int)(p)->hdr[2] << 8) | (p)->hdr[3])
#define R_LEN(p) (((size_t)(p)->hdr[4] << 8) | (p)->hdr[5])

void jg_fcgi_parser_init(jg_fcgi_parser_t *p, size_t max_params, size_t max_body)
{
    memset(p, 0, sizeof *p);
    p->max_params = max_params;
    p->max_body = max_body;
    jg_fcgi_parser_next(p);
}

void jg_fcgi_parser_next(jg_fcgi_parser_t *p)
{
    p->status = JG_FCGI_MORE;
    p->request_id = 0;
    p->keep_conn = 0;
    p->params_over = 0;
    p->stdin_total = 0;
    p->error = NULL;
    p->hdr_have = 0;
    p->content_left = p->padding_left = 0;
    p->small_have = 0;
    p->params_done = p->begun = 0;
    jg_buf_reset(&p->arena);
    jg_buf_reset(&p->body);
    jg_buf_reset(&p->mgmt);
    static char *no_env[1] = {NULL};
    p->envp = p->env ? p->env : no_env;
    if (p->env)
        p->env[0] = NULL;
}

void jg_fcgi_parser_free(jg_fcgi_parser_t *p)
{
    jg_buf_free(&p->arena);
    jg_buf_free(&p->body);
    jg_buf_free(&p->mgmt);
    jg_buf_free(&p->reply);
    free(p->env);
    p->env = NULL;
    p->env_cap = 0;
}

size_t jg_fcgi_parser_bytes(const jg_fcgi_parser_t *p)
{
    return p->arena.cap + p->body.cap + p->mgmt.cap + p->reply.cap + p->env_cap * sizeof *p->env;
}

static void fail(jg_fcgi_parser_t *p, const char *why)
{
    p->status = JG_FCGI_ERROR;
    p->error = why;
}

/* One name-value pair's lengths at *at (advanced past them); -1 when they do not fit. */
static int pair_lengths(const unsigned char **at, const unsigned char *end, size_t *nl,
                        size_t *vl)
{
    size_t *out[2] = {nl, vl};
    for (int i = 0; i < 2; i++) {
        if (*at >= end)
            return -1;
        if (**at < 0x80) {
            *out[i] = *(*at)++;
        } else {
            if (end - *at < 4)
                return -1;
            const unsigned char *b = *at;
            *out[i] = ((size_t)(b[0] & 0x7f) << 24) | ((size_t)b[1] << 16) |
                      ((size_t)b[2] << 8) | b[3];
            *at += 4;
        }
    }
    return (size_t)(end - *at) < *nl || (size_t)(end - *at) - *nl < *vl ? -1 : 0;
}

static void env_room(jg_fcgi_parser_t *p, size_t n)
{
    if (n <= p->env_cap)
        return;
    size_t cap = p->env_cap ? p->env_cap : 64;
    while (cap < n)
        cap *= 2;
    char **env = realloc(p->env, cap * sizeof *env);
    if (env == NULL)
        abort();
    p->env = env;
    p->env_cap = cap;
}

/* The parameters' bytes, decoded in place into "NAME=VALUE\0" strings (a pair whose name is
 * empty or holds '=' or NUL is dropped; a value is cut at a NUL it holds): each string is no
 * longer than its encoded pair (at least two length bytes for the '=' and the NUL), so it is
 * written at or before where its pair was read. Returns -1 on lengths that overrun. */
static int decode_params(jg_fcgi_parser_t *p)
{
    unsigned char *base = (unsigned char *)p->arena.data;
    const unsigned char *at = base, *end = base + p->arena.len;
    size_t out = 0, count = 0;
    while (at < end) {
        size_t nl, vl;
        if (pair_lengths(&at, end, &nl, &vl))
            return -1;
        if (nl == 0 || memchr(at, '=', nl) || memchr(at, '\0', nl)) {
            at += nl + vl;   /* a name that no lookup could find as sent: dropped */
            continue;
        }
        size_t start = out;
        memmove(base + out, at, nl);
        out += nl;
        base[out++] = '=';
        memmove(base + out, at + nl, vl);
        out += vl;
        base[out++] = '\0';
        at += nl + vl;
        env_room(p, count + 2);
        p->env[count++] = (char *)base + start;   /* the arena no longer grows: stable */
    }
    env_room(p, count + 1);
    p->env[count] = NULL;
    p->envp = p->env;
    return 0;
}

static const char *const known_values[][2] = {
    {"FCGI_MAX_CONNS", "1"}, {"FCGI_MAX_REQS", "1"}, {"FCGI_MPXS_CONNS", "0"}
};

/* FCGI_GET_VALUES: the names asked that we know, with libfcgi's values. */
static void answer_get_values(jg_fcgi_parser_t *p)
{
    const unsigned char *at = (const unsigned char *)p->mgmt.data;
    const unsigned char *end = at ? at + p->mgmt.len : NULL;   /* no content: no names */
    unsigned char out[64];
    size_t n = 0;
    while (at && at < end) {
        size_t nl, vl;
        if (pair_lengths(&at, end, &nl, &vl))
            break;
        for (size_t i = 0; i < sizeof known_values / sizeof known_values[0]; i++) {
            size_t kl = strlen(known_values[i][0]);
            if (nl == kl && memcmp(at, known_values[i][0], kl) == 0 && n + kl + 3 <= sizeof out) {
                out[n++] = (unsigned char)kl;
                out[n++] = 1;
                memcpy(out + n, known_values[i][0], kl);
                n += kl;
                out[n++] = (unsigned char)known_values[i][1][0];
            }
        }
        at += nl + vl;
    }
    jg_fcgi_put_record(&p->reply, GET_VALUES_RESULT, 0, out, n);
}

/* A record's header is whole: decide what its content is for. */
static int record_kind(jg_fcgi_parser_t *p)
{
    int type = R_TYPE(p), id = R_ID(p);
    if (id == 0)
        return type == GET_VALUES ? K_MGMT : K_SKIP;
    if (type == BEGIN_REQUEST) {
        if (!p->begun)
            return K_BEGIN;
        if (id == p->request_id)
            fail(p, "a second FCGI_BEGIN_REQUEST of the active request");
        return K_SKIP;   /* another id: refused at the record's end */
    }
    if (!p->begun || id != p->request_id)
        return K_SKIP;
    if (type == PARAMS) {
        if (p->params_done)
            fail(p, "FCGI_PARAMS after their end");
        return K_PARAMS;
    }
    if (type == STDIN) {
        if (!p->params_done)
            fail(p, "FCGI_STDIN before the end of FCGI_PARAMS");
        return K_STDIN;
    }
    return K_SKIP;   /* ABORT_REQUEST (acted on at its end), DATA and the rest */
}

static void content(jg_fcgi_parser_t *p, int kind, const unsigned char *in, size_t n)
{
    switch (kind) {
    case K_BEGIN: {
        size_t take = n < 8 - p->small_have ? n : 8 - p->small_have;
        memcpy(p->small + p->small_have, in, take);
        p->small_have += take;
        break;
    }
    case K_PARAMS:
        if (p->params_over)
            break;
        if (p->arena.len + n > p->max_params) {
            p->params_over = 1;
            jg_buf_reset(&p->arena);
        } else {
            jg_buf_append(&p->arena, in, n);
        }
        break;
    case K_STDIN:
        p->stdin_total += n;
        if (p->body.len < p->max_body)
            jg_buf_append(&p->body, in, n < p->max_body - p->body.len ? n : p->max_body - p->body.len);
        break;
    case K_MGMT:
        jg_buf_append(&p->mgmt, in, n);
        break;
    }
}

/* A record ended (content and padding): act on it. */
static void record_end(jg_fcgi_parser_t *p, int kind)
{
    int type = R_TYPE(p), id = R_ID(p);
    size_t len = R_LEN(p);
    switch (kind) {
    case K_BEGIN:
        if (p->small_have < 8) {
            fail(p, "FCGI_BEGIN_REQUEST shorter than 8 bytes");
            return;
        }
        if ((((int)p->small[0] << 8) | p->small[1]) != RESPONDER) {
            jg_fcgi_put_end_request(&p->reply, id, UNKNOWN_ROLE);
            p->small_have = 0;
            return;
        }
        p->begun = 1;
        p->request_id = id;
        p->keep_conn = (p->small[2] & KEEP_CONN) != 0;
        return;
    case K_PARAMS:
        if (len == 0) {
            p->params_done = 1;
            if (p->params_over)
                jg_buf_reset(&p->arena);
            else if (p->arena.len && decode_params(p))
                fail(p, "FCGI_PARAMS lengths overrun their bytes");
        }
        return;
    case K_STDIN:
        if (len == 0)
            p->status = JG_FCGI_REQUEST;
        return;
    case K_MGMT:
        answer_get_values(p);
        jg_buf_reset(&p->mgmt);
        return;
    }
    if (id == 0) {   /* a management record of a type we do not know */
        unsigned char body[8] = {(unsigned char)type, 0, 0, 0, 0, 0, 0, 0};
        jg_fcgi_put_record(&p->reply, UNKNOWN_TYPE, 0, body, sizeof body);
    } else if (type == BEGIN_REQUEST && p->begun && id != p->request_id) {
        jg_fcgi_put_end_request(&p->reply, id, CANT_MPX_CONN);
    } else if (type == ABORT_REQUEST && p->begun && id == p->request_id) {
        p->status = JG_FCGI_ABORTED;
    }
}

size_t jg_fcgi_feed(jg_fcgi_parser_t *p, const void *data, size_t len)
{
    const unsigned char *in = data;
    size_t i = 0;
    while (p->status == JG_FCGI_MORE && i < len) {
        if (p->hdr_have < 8) {
            size_t n = 8 - p->hdr_have < len - i ? 8 - p->hdr_have : len - i;
            memcpy(p->hdr + p->hdr_have, in + i, n);
            p->hdr_have += n;
            i += n;
            if (p->hdr_have < 8)
                break;
            if (p->hdr[0] != 1) {
                fail(p, "not FastCGI version 1");
                break;
            }
            p->content_left = R_LEN(p);
            p->padding_left = p->hdr[6];
            p->small_have = 0;
            p->kind = record_kind(p);   /* a refused record (fail) stops right after its header */
            if (p->status != JG_FCGI_MORE)
                break;
        } else if (p->content_left) {
            size_t n = p->content_left < len - i ? p->content_left : len - i;
            content(p, p->kind, in + i, n);
            p->content_left -= n;
            i += n;
        } else {
            size_t n = p->padding_left < len - i ? p->padding_left : len - i;
            p->padding_left -= n;
            i += n;
        }
        if (p->status == JG_FCGI_MORE && p->hdr_have == 8 && !p->content_left &&
            !p->padding_left) {
            record_end(p, p->kind);
            p->hdr_have = 0;
        }
    }
    return i;
}

const char *jg_fcgi_getenv(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}
