/* loop.h — the event loop thread, and the one owner of parked requests: long polls and streams
 * a handler gave up its thread for, and answers their readers take slowly (jg_loop_finish).
 * The loop takes them from the request threads (through an inbox), writes their FastCGI records
 * itself with non-blocking sends (fcgi.h), notices when the client goes away (EOF on the
 * FastCGI connection: nginx never sends ABORT), and is the only one that frees them (see "Who
 * frees" below). It also hands the pub/sub messages of the queues' events channels it watches
 * (events.h) to the program's ops, and reads SIGTERM/SIGINT: stop accepting, close idle
 * connections, end parked requests, let requests in flight finish, exit within --grace.
 *
 * The request threads' own waiting (the listener and idle connections) is conns.h; the loop
 * owns that set and watches its timeouts once a second.
 * Everything named jg_parked_* and the ops run on the loop thread only. */
#ifndef JG_LOOP_H
#define JG_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "conns.h"
#include "redis.h"

typedef struct jg_loop jg_loop_t;

/* A parked request. data belongs to the program; the rest to the loop. */
typedef struct jg_parked {
    void *data;
    int64_t parked_at;     /* monotonic ms */
    struct jg_parked_io *io;
} jg_parked_t;

typedef struct jg_park_ops {
    int events;            /* 1: the program watches queues' events channels (jg_loop_watch) */
    /* A handler parked p (p->data is what it set in req->park_data). */
    void (*parked)(jg_loop_t *loop, jg_parked_t *p);
    /* A message on a watched events channel. */
    void (*message)(jg_loop_t *loop, const char *msg, size_t len);
    /* The events channel of the queue of tag (JG_TAG_LEN characters) was (re)subscribed:
     * messages of that queue may have been missed. */
    void (*resync)(jg_loop_t *loop, const char *tag);
    /* Runs due timers; returns the next deadline (monotonic ms), or -1 for none. */
    int64_t (*timers)(jg_loop_t *loop, int64_t now);
    /* p is about to be freed (ended, or its client went away): forget it, free p->data. */
    void (*gone)(jg_loop_t *loop, jg_parked_t *p);
    /* SIGTERM: give every parked request its end now. */
    void (*shutdown)(jg_loop_t *loop);
    /* A handler's park data that was never parked (its client left first): free it.
     * Runs on the request thread. */
    void (*discard)(void *data);
    /* p's client took what was queued, down to JG_PARKED_LOW_WATER bytes or less: a program
     * that streams (a log backlog) writes its next part. Optional. */
    void (*writable)(jg_loop_t *loop, jg_parked_t *p);
} jg_park_ops_t;

/* A program that streams stops producing while jg_parked_unsent() is above this, and goes on
 * in ops->writable, so that a stream holds about this much memory whatever its size. */
#define JG_PARKED_LOW_WATER (64u << 10)

/* Creates the loop. listen_fd < 0: no listener (plain CGI). ops may be NULL. Returns NULL on
 * failure (logged). */
jg_loop_t *jg_loop_new(const jg_config_t *cfg, int listen_fd, const jg_park_ops_t *ops);
/* Runs until SIGTERM/SIGINT and then until every parked request ended and every request
 * thread left (or --grace ran out); or, with no listener, until nothing is parked. */
void jg_loop_run(jg_loop_t *loop);
/* After jg_loop_run returns: did everything finish in time? */
int jg_loop_drained(jg_loop_t *loop);
/* Frees a drained loop: stops its subscriber, closes its descriptors. */
void jg_loop_free(jg_loop_t *loop);

/* --- request threads (thread-safe) --- */
/* The request threads' connections (conns.h); NULL for plain CGI. */
jg_conns_t *jg_loop_conns(jg_loop_t *loop);
/* A thread leaves (after jg_conns_next returned -1). */
void jg_loop_thread_done(jg_loop_t *loop);
void jg_loop_thread_started(jg_loop_t *loop);
/* May a handler park one more request? No when --max-streams are parked, or when stopping. */
int jg_loop_can_park(jg_loop_t *loop);
/* Hands a request over: fd carries FastCGI request request_id (raw: plain bytes, CGI's fd 1). */
void jg_loop_park(jg_loop_t *loop, int fd, int request_id, int keep_conn, int raw, void *data);
/* The rest of a request thread's answer that the peer did not take at once (a slow client
 * behind Apache, which passes the answer on as its client reads it): the loop writes it
 * (bytes: FastCGI records up to END_REQUEST, copied) as it does a parked request's, then puts
 * the connection back in the shared set (keep_conn) or closes it; a peer that takes nothing
 * for 10 s is dropped. So a slow reader holds no request thread. Returns 0, or -1 (nothing
 * done) when --max-streams are parked or the loop would hold more than JG_LOOP_TAIL_BYTES of
 * such answers: the thread writes the rest itself. */
#define JG_LOOP_TAIL_BYTES (64u << 20)
int jg_loop_finish(jg_loop_t *loop, int fd, int keep_conn, const char *bytes, size_t len);
/* The loop thread watches the events channel of the queue of id (a job id, or a tag: its
 * first JG_TAG_LEN characters) while its parked requests need it: each watch is undone by one
 * unwatch (a program watches in ops->parked and unwatches in ops->gone). After the channel is
 * (re)subscribed, ops->resync runs for that tag. Loop thread only. */
void jg_loop_watch(jg_loop_t *loop, const char *id);
void jg_loop_unwatch(jg_loop_t *loop, const char *id);
/* Count of messages handed to ops->message so far; read it before reading the state a
 * parked request waits on, to detect messages that raced with parking. */
uint64_t jg_loop_message_seq(jg_loop_t *loop);

/* --- loop thread only --- */
/* Who frees a parked request: the loop, never a handler. When it ends (its last byte written)
 * or its client goes away (EOF from nginx, a write error, a client that reads nothing for
 * 10 s or is still 4 MiB behind), the loop retires it: no more events or writes, and at the
 * end of the loop iteration ops->gone runs and p is freed. So p and p->data stay valid for
 * the rest of any callback that touched them, whatever jg_parked_* returned. */

/* Queues CGI-style bytes (headers, body, stream chunks) for p's client and writes what the
 * socket takes; bytes already queued are written first, and a client still more than 4 MiB
 * behind after that is dropped. One call may queue any size (a whole answer). Returns 0, or
 * -1 when p is retired (the client is gone; nothing was queued). */
int jg_parked_send(jg_loop_t *loop, jg_parked_t *p, const char *bytes, size_t len);
/* Ends p after its queued bytes. No-op when p already ended or is gone. */
void jg_parked_end(jg_loop_t *loop, jg_parked_t *p);
/* The one way to give a parked request its whole answer: send, then end. */
void jg_parked_answer(jg_loop_t *loop, jg_parked_t *p, const char *bytes, size_t len);
/* Neither ended nor gone: more bytes may be sent. */
int jg_parked_alive(const jg_parked_t *p);
/* Bytes queued for p's client and not yet written. */
size_t jg_parked_unsent(const jg_parked_t *p);
jg_redis_t *jg_loop_redis(jg_loop_t *loop);
const jg_config_t *jg_loop_config(jg_loop_t *loop);

#endif
