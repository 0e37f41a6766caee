/* server.h — main() of every web program: options, configuration, signals, the listening
 * socket (spawn-fcgi's fd 0, or --socket), plain CGI when not started as FastCGI, the request
 * threads (each with its own Redis connection) and the event loop (loop.h).
 *
 * A program is its route owner name, a handler and, if it parks requests, its park ops:
 *
 *     static const jg_program_t program = {"jobgate-status", "status", handle, &park_ops};
 *     int main(int argc, char **argv) { return jg_serve(&program, argc, argv); }
 *
 * The handler is called for requests whose route (routes.h) is this program's; routing, 404,
 * 405 + Allow, CORS preflights and the rendering of the answer happen around it. It returns
 * JG_OK with req->status/body filled, JG_ERR after jg_fail(), or JG_PARKED after setting
 * req->park_data: the request then belongs to the event loop and the program's park ops. */
#ifndef JG_SERVER_H
#define JG_SERVER_H

#include "http.h"
#include "loop.h"
#include "pipeline.h"

/* Requests that arrive together, served together (optional; server.c): a request thread takes
 * every ready connection of one wake (16 at most), reads each request whole, routes it and
 * checks its access, then asks prepare: JG_OK after filling cmd with the one Redis command the
 * request needs (argv, or a script call in cmd->script: pipeline.h), which holds the request;
 * JG_ERR after jg_fail(); JG_DECLINE to have it served as usual (a long poll, say). The held
 * requests' commands go to Redis pipelined (one write; over a cluster, each to its node; a
 * batch of one as a lone request: a read by jg_redis_read, a script by jg_redis_script), and
 * finish gets each reply in order (NULL: Redis unreachable): JG_OK or JG_ERR as handle would
 * answer, never JG_PARKED; or JG_DECLINE to have it served as usual after the batch's replies
 * are read. A command sent in a batch may have run: finish declines only what the usual way
 * can serve without running it again (a read; a script's NOSCRIPT, which ran nothing).
 * Served as usual: by ops->after(req, cmd) when the program gives one (it may call Redis and
 * use what prepare and finish kept in cmd->data; a body prepare read is not read again),
 * else by handle() (finish then declines touching nothing in req). cmd->data is the program's
 * own state for the slot, NULL at first, kept from one request to the next and freed by
 * ops->free at the thread's end.
 * Optional ops->join(lead, cmd), asked before sending for each held command with each earlier
 * one that is sent: 1 when the program has folded cmd's work into lead's command (a script call
 * that does both: cmd is then not sent), and finish gets lead's one reply for each of them. */
#define JG_DECLINE 2
#define JG_BATCH_ARGS 8
typedef struct jg_batch_cmd {
    int argc;
    const char *argv[JG_BATCH_ARGS];
    size_t lens[JG_BATCH_ARGS];
    char key[256];            /* storage for a key argument (argv may point into it) */
    jg_script_call_t *script; /* instead of argv: EVALSHA (jg_script_append); NULL */
    void *data;               /* the program's (above) */
} jg_batch_cmd_t;
typedef struct jg_batch_ops {
    int (*prepare)(jg_req_t *req, jg_batch_cmd_t *cmd);
    int (*finish)(jg_req_t *req, jg_batch_cmd_t *cmd, const redisReply *reply);
    int (*after)(jg_req_t *req, jg_batch_cmd_t *cmd);   /* optional (above) */
    void (*free)(void *data);                           /* optional (above) */
    int (*join)(jg_batch_cmd_t *lead, jg_batch_cmd_t *cmd);   /* optional (above) */
} jg_batch_ops_t;

typedef struct jg_program {
    const char *name;                 /* "jobgate-status": logs, --help, --version */
    const char *routes;               /* route owner in routes.c: "status" */
    int (*handle)(jg_req_t *req);
    const jg_park_ops_t *park;        /* NULL: the program never parks */
    void (*init)(jg_loop_t *loop);    /* optional: called once the loop exists */
} jg_program_t;

int jg_serve(const jg_program_t *program, int argc, char **argv);

/* Gives the program's batch ops (above), before jg_serve. Without them a request thread takes
 * one connection per wake. */
void jg_serve_batch(const jg_batch_ops_t *ops);

/* The program's default --threads, before jg_serve (without it: 8). JG_THREADS_PER_CPU: one
 * request thread per CPU the process may run on, 2 to 8 — for a program that batches
 * (jobgate-status, jobgate-submit): with fewer threads more requests are ready at each wake, so
 * there are fewer wakes per request (docs/architecture.md, "Threads and wakes"). */
#define JG_THREADS_PER_CPU (-1)
void jg_serve_threads(int threads);

/* The running process's loop, for handlers that park (jg_loop_message_seq etc.). */
jg_loop_t *jg_server_loop(void);

#endif
