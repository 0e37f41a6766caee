/* replyreader.c — owns the bounds on every Redis reply jobgate reads (see replyreader.h): the
 * reply object functions given to each hiredis reader, and the read loop that refuses a reply
 * still arriving once it is longer than any jobgate asks for. Written for jobgate; the objects
 * are the same redisReply trees hiredis builds, so freeReplyObject() frees them. */
#include "replyreader.h"
#include "config.h"
#include "log.h"
#include "runner.h"   /* JG_RESULT_MAX: the largest result a job may leave */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every array is made as a root_t, so that the root of a reply can count the bytes of all its
 * objects (a child finds its root through its read task's parents). */
typedef struct root {
    redisReply rep;   /* first: freeReplyObject() frees the root_t through it */
    size_t used;      /* bytes of the reply's objects so far (kept in the root only) */
} root_t;

/* Why the last object function on this thread refused (hiredis then reports "Out of memory"). */
static __thread char refused[128];

size_t jg_reply_bulk_max(size_t max_body)
{
    return max_body + (size_t)JG_RESULT_MAX + JG_REPLY_MARGIN;
}

static size_t bulk_max_of(const void *privdata)
{
    uintptr_t b = (uintptr_t)privdata;
    return b ? (size_t)b : jg_reply_bulk_max(1048576);
}

/* Adds bytes to the reply's count; -1 (and the reason) when that passes 8 bulk bounds. */
static int charge(const redisReadTask *t, size_t bytes)
{
    const redisReadTask *root = t;
    while (root->parent)
        root = root->parent;
    if (root == t)
        return 0;   /* the root itself: an array counts itself as it is made */
    root_t *ro = root->obj;
    size_t max = 8 * bulk_max_of(t->privdata);
    if (bytes > max - ro->used) {
        snprintf(refused, sizeof refused, "reply over %zu bytes in all", max);
        return -1;
    }
    ro->used += bytes;
    return 0;
}

static void *attach(const redisReadTask *t, redisReply *obj)
{
    if (t->parent) {
        redisReply *parent = t->parent->obj;
        parent->element[t->idx] = obj;
    }
    return obj;
}

static void *create_string(const redisReadTask *t, char *s, size_t len)
{
    size_t max = t->type == REDIS_REPLY_STRING ? bulk_max_of(t->privdata) : JG_REPLY_MAX_LINE;
    if (len > max) {
        snprintf(refused, sizeof refused, "%s of %zu bytes over the bound %zu",
                 t->type == REDIS_REPLY_STRING ? "string" : "line", len, max);
        return NULL;
    }
    if (charge(t, sizeof(redisReply) + len + 1))
        return NULL;
    redisReply *r = calloc(1, sizeof *r);
    char *str = malloc(len + 1);
    if (r == NULL || str == NULL) {
        free(r);
        free(str);
        snprintf(refused, sizeof refused, "out of memory");
        return NULL;
    }
    memcpy(str, s, len);
    str[len] = '\0';
    r->type = t->type;   /* REDIS_REPLY_STRING, _STATUS or _ERROR */
    r->str = str;
    r->len = len;
    return attach(t, r);
}

static void *create_array(const redisReadTask *t, int n)
{
    if (n > JG_REPLY_MAX_ELEMENTS) {
        snprintf(refused, sizeof refused, "array of %d elements over the bound %d", n,
                 JG_REPLY_MAX_ELEMENTS);
        return NULL;
    }
    size_t bytes = sizeof(root_t) + (size_t)n * sizeof(redisReply *);
    if (charge(t, bytes))
        return NULL;
    root_t *a = calloc(1, sizeof *a);
    redisReply **el = n > 0 ? calloc((size_t)n, sizeof *el) : NULL;
    if (a == NULL || (n > 0 && el == NULL)) {
        free(a);
        free(el);
        snprintf(refused, sizeof refused, "out of memory");
        return NULL;
    }
    a->rep.type = REDIS_REPLY_ARRAY;
    a->rep.elements = (size_t)n;
    a->rep.element = el;
    a->used = t->parent ? 0 : bytes;
    return attach(t, &a->rep);
}

static void *create_scalar(const redisReadTask *t, int type, long long v)
{
    if (charge(t, sizeof(redisReply)))
        return NULL;
    redisReply *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(refused, sizeof refused, "out of memory");
        return NULL;
    }
    r->type = type;
    r->integer = v;
    return attach(t, r);
}

static void *create_integer(const redisReadTask *t, long long v)
{
    return create_scalar(t, REDIS_REPLY_INTEGER, v);
}

static void *create_nil(const redisReadTask *t)
{
    return create_scalar(t, REDIS_REPLY_NIL, 0);
}

/* A whole or partial tree (elements not read yet are NULL). */
static void free_object(void *obj)
{
    redisReply *r = obj;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements && r->element; i++)
            free_object(r->element[i]);
        free(r->element);
    } else {
        free(r->str);
    }
    free(r);
}

static redisReplyObjectFunctions bounded = {
    create_string, create_array, create_integer, create_nil, free_object,
};

void jg_reply_bound(redisReader *rd, size_t bulk_max)
{
    rd->fn = &bounded;
    rd->privdata = (void *)(uintptr_t)(bulk_max ? bulk_max : jg_reply_bulk_max(1048576));
}

int jg_reply_read(redisReader *rd, void **reply, char *why, size_t whylen)
{
    *reply = NULL;
    refused[0] = '\0';
    if (redisReaderGetReply(rd, reply) != REDIS_OK) {
        snprintf(why, whylen, "%s", refused[0] ? refused : rd->errstr);
        return -1;
    }
    /* Not complete: what waits unparsed is one item still arriving (hiredis parses whatever is
     * whole): a bulk may reach the bulk bound plus its header; a line (status, error, integer, or
     * an aggregate's or a bulk's header), which hiredis scans again from its start at every read,
     * the line bound. */
    size_t waiting = rd->len - rd->pos;
    if (*reply != NULL || rd->ridx < 0 || waiting == 0)
        return 0;
    int bulk = rd->rstack[rd->ridx].type == REDIS_REPLY_STRING &&
               memchr(rd->buf + rd->pos, '\n', waiting < 64 ? waiting : 64) != NULL;
    size_t max = bulk ? bulk_max_of(rd->privdata) + 64 : JG_REPLY_MAX_LINE;
    if (waiting > max) {
        snprintf(why, whylen, "%zu bytes of a %s still arriving, over the bound %zu", waiting,
                 bulk ? "bulk" : "line", max);
        return -1;
    }
    return 0;
}

int jg_reply_next(redisContext *c, void **reply)
{
    char why[128];
    if (c->err)
        return REDIS_ERR;
    if (jg_reply_read(c->reader, reply, why, sizeof why) == 0)
        return REDIS_OK;
    c->err = c->reader->err && !refused[0] ? c->reader->err : REDIS_ERR_PROTOCOL;
    snprintf(c->errstr, sizeof c->errstr, "%s", why);
    jg_log_warn("redis reply refused", "why", why, NULL);
    return REDIS_ERR;
}

int jg_reply_get(redisContext *c, void **reply)
{
    void *r = NULL;
    if (jg_reply_next(c, &r) != REDIS_OK)
        return REDIS_ERR;
    if (r == NULL && (c->flags & REDIS_BLOCK)) {
        int written = 0;
        while (!written)
            if (redisBufferWrite(c, &written) != REDIS_OK)
                return REDIS_ERR;
        while (r == NULL)
            if (redisBufferRead(c) != REDIS_OK || jg_reply_next(c, &r) != REDIS_OK)
                return REDIS_ERR;
    }
    *reply = r;
    return REDIS_OK;
}

redisReply *jg_reply_vcommand(redisContext *c, const char *fmt, va_list ap)
{
    void *reply = NULL;
    if (redisvAppendCommand(c, fmt, ap) != REDIS_OK || jg_reply_get(c, &reply) != REDIS_OK)
        return NULL;
    return reply;
}

redisReply *jg_reply_command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = jg_reply_vcommand(c, fmt, ap);
    va_end(ap);
    return reply;
}
