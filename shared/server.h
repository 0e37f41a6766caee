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

typedef struct jg_program {
    const char *name;                 /* "jobgate-status": logs, --help, --version */
    const char *routes;               /* route owner in routes.c: "status" */
    int (*handle)(jg_req_t *req);
    const jg_park_ops_t *park;        /* NULL: the program never parks */
    void (*init)(jg_loop_t *loop);    /* optional: called once the loop exists */
} jg_program_t;

int jg_serve(const jg_program_t *program, int argc, char **argv);

/* The running process's loop, for handlers that park (jg_loop_message_seq etc.). */
jg_loop_t *jg_server_loop(void);

#endif
