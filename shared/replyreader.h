/* replyreader.h — the bounds on what jobgate reads from Redis. Every hiredis context jobgate
 * opens (jg_redis_open: request threads, the subscriber thread, the worker, each cluster node)
 * builds its replies with the object functions of replyreader.c instead of hiredis' own, and
 * reads them with jg_reply_get / jg_reply_next instead of redisGetReply, so that a Redis node,
 * or anything listening at REDIS_URL, cannot make a program allocate more than it ever needs:
 *
 *   - an array declaring more than JG_REPLY_MAX_ELEMENTS elements (hiredis 0.14 allocates the
 *     declared count up front: "*420533333\r\n" is 3 GiB);
 *   - a bulk string longer than the bulk bound: jobgate's largest value, a job object holding a
 *     payload of JOBGATE_MAX_BODY bytes and a result of JG_RESULT_MAX, plus 1 MiB; refused as
 *     soon as that many bytes wait unparsed in the reader, not only once they all arrived;
 *   - a line (status, error, integer, a header) longer than JG_REPLY_MAX_LINE, likewise: hiredis
 *     scans a line again from its start at every read, so a long one would cost quadratic time;
 *   - a reply whose objects, in all, take more than 8 times the bulk bound;
 *   - nesting deeper than 7 (hiredis 0.14's own limit; jobgate's deepest reply, CLUSTER SLOTS,
 *     is 4).
 * A refused reply is a connection error (the caller drops the connection and answers 503, as
 * for a lost Redis), logged once as `redis reply refused` with the reason (sizes only, never
 * reply bytes). Replies are ordinary redisReply trees: freeReplyObject() frees them. */
#ifndef JG_REPLYREADER_H
#define JG_REPLYREADER_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stddef.h>

#define JG_REPLY_MAX_ELEMENTS 1000000
#define JG_REPLY_MARGIN (1024 * 1024)
#define JG_REPLY_MAX_LINE 65536   /* jobgate's errors (a script's refusal) are < 1 KiB */

/* The bulk bound for a configured JOBGATE_MAX_BODY (see above). */
size_t jg_reply_bulk_max(size_t max_body);

/* Gives reader rd jobgate's object functions and the bulk bound bulk_max (0: that of the
 * default JOBGATE_MAX_BODY). Call before anything is read; jg_redis_open does it for every
 * context (on c->reader). */
void jg_reply_bound(redisReader *rd, size_t bulk_max);

/* The next reply already in rd's buffer: 0 with *reply set (NULL when it is not complete
 * yet), or -1 when the reply broke a bound or the protocol, with the reason in why. */
int jg_reply_read(redisReader *rd, void **reply, char *why, size_t whylen);

/* As redisGetReplyFromReader (no I/O) and redisGetReply (blocking: writes what is pending, then
 * reads until a whole reply is there) on a context given jg_reply_bound: REDIS_OK, or REDIS_ERR
 * with c->err and c->errstr set (a refused reply: REDIS_ERR_PROTOCOL and the reason). */
int jg_reply_next(redisContext *c, void **reply);
int jg_reply_get(redisContext *c, void **reply);

/* redisCommand's twin that reads the reply with jg_reply_get: the reply, or NULL (c->errstr). */
redisReply *jg_reply_command(redisContext *c, const char *fmt, ...);
redisReply *jg_reply_vcommand(redisContext *c, const char *fmt, va_list ap);

#endif
