/* server.c — main() of the web programs: options, signals, FastCGI or CGI, request threads,
 * routing around the program's handler (see server.h).
 *
 * FastCGI without libfcgi. The shared set (conns.c) accepts connections and watches idle
 * kept-alive ones; a request thread gets a connection with a request waiting, reads what is
 * there (records, parameters and body: fcgiparse.c, under --read-timeout), and when the request
 * is whole runs the handler and writes the answer's records (fcgi.c) in one write. Then the
 * connection goes back to the set (FCGI_KEEP_CONN), to the loop (parked), or is closed. A
 * request not all there goes back to the set with its connection (shelved, with its parser),
 * so that a slow upload holds no thread. */
#include "server.h"
#include "access.h"
#include "fcgi.h"
#include "fcgiparse.h"
#include "jg.h"
#include "log.h"
#include "timefmt.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

static const jg_program_t *program;
static jg_config_t config;
static jg_loop_t *server_loop;
static const jg_batch_ops_t *batch_ops;

void jg_serve_batch(const jg_batch_ops_t *ops) { batch_ops = ops; }

static int threads_default;   /* jg_serve_threads; 0: 8 */

void jg_serve_threads(int threads) { threads_default = threads; }

jg_loop_t *jg_server_loop(void) { return server_loop; }

/* --threads without the option: the program's own (jg_serve_threads), else 8. */
static int default_threads(void)
{
    if (threads_default > 0)
        return threads_default;
    if (threads_default != JG_THREADS_PER_CPU)
        return 8;
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                          : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 2 ? 2 : n > 8 ? 8 : (int)n;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [--socket PATH|HOST:PORT] [--threads N] [--grace S] [--max-streams N]\n"
            "       [--read-timeout S]\n"
            "       %s --check | --help | --version\n"
            "\n"
            "A jobgate FastCGI program. Under spawn-fcgi it serves the listening socket on fd 0;\n"
            "with --socket it opens its own; started otherwise it answers one plain CGI request.\n"
            "\n"
            "  --socket PATH|HOST:PORT  listen here instead of on fd 0\n"
            "  --threads N              request threads, each with its own Redis connection (%d)\n"
            "%s"
            "  --grace S                on SIGTERM, seconds to finish requests in flight (5)\n"
            "  --max-streams N          parked long polls / streams held at most, answers\n"
            "                           finished for slow readers among them (10000)\n"
            "  --read-timeout S         close a connection that has not delivered a whole\n"
            "                           request in S seconds (10)\n"
            "  --check                  print the configuration (secrets masked), ping Redis,\n"
            "                           exit 0 when usable, 1 otherwise\n"
            "\n"
            "Configuration comes from the environment: REDIS_URL, JOBGATE_KEY_PREFIX,\n"
            "JOBGATE_PREFIX (mount prefix, /api) and the JOBGATE_* settings of the README;\n"
            "FCGI_WEB_SERVER_ADDRS (comma list) limits the peers of a TCP --socket.\n",
            program->name, program->name, default_threads(),
            threads_default == JG_THREADS_PER_CPU
                ? "                           (by default one per CPU, 2 to 8)\n" : "");
}

/* Returns 0 to go on, or exit status + 1. */
static int parse_options(int argc, char **argv)
{
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", program->name, JG_VERSION);
            return 1;
        } else if (strcmp(a, "--check") == 0) {
            check = 1;
        } else if (strcmp(a, "--threads") == 0 && v && !jg_parse_long(v, 1, 1024, &n)) {
            config.threads = (int)n, i++;
        } else if (strcmp(a, "--grace") == 0 && v && !jg_parse_double(v, 0, 3600, &d)) {
            config.grace = d, i++;
        } else if (strcmp(a, "--max-streams") == 0 && v && !jg_parse_long(v, 1, 1000000, &n)) {
            config.max_streams = n, i++;
        } else if (strcmp(a, "--read-timeout") == 0 && v && !jg_parse_double(v, 0.1, 3600, &d)) {
            config.read_timeout = d, i++;
        } else if (strcmp(a, "--socket") == 0 && v && strlen(v) < sizeof config.socket) {
            snprintf(config.socket, sizeof config.socket, "%s", v), i++;
        } else {
            fprintf(stderr, "%s: bad option or value: %s (see --help)\n", program->name, a);
            return 3;
        }
    }
    if (!check)
        return 0;
    jg_config_print(&config, stdout);
    jg_redis_t r;
    jg_redis_init(&r, &config, 1000);
    int64_t t0 = jg_now_ms();
    redisReply *rep = jg_redis_cmd(&r, "PING");
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (ok)
        printf("redis: ok (%lld ms)\n", (long long)(jg_now_ms() - t0));
    else
        printf("redis: unreachable (%s)\n",
               rep ? rep->str : "no connection; see the log line above");
    if (rep)
        freeReplyObject(rep);
    jg_redis_close(&r);
    return ok ? 1 : 2;
}

#define ROUTED 3   /* route(): the request goes to the program */

/* Routing, preflights and access: ROUTED, or the answer's code (JG_OK, JG_ERR). */
static int route(jg_req_t *req)
{
    if (jg_req_parse_target(req))
        return jg_fail(req, 404, "not_found", "no such route");
    char allow[128];
    jg_match_t m = jg_route_match(program->routes, req->method, req->path, &req->route,
                                  req->param, sizeof req->param, allow, sizeof allow);
    if (strcmp(req->method, "OPTIONS") == 0 && m != JG_MATCH_NOT_FOUND) {
        req->status = 204;
        jg_resp_header(req, "Allow: %s\r\n", allow);
        if (req->cfg->cors_origins[0])
            jg_resp_header(req, "Access-Control-Allow-Methods: %s\r\n"
                                "Access-Control-Allow-Headers: Authorization, Content-Type, "
                                "Idempotency-Key, If-None-Match, Last-Event-ID\r\n"
                                "Access-Control-Max-Age: 600\r\n", allow);
        return JG_OK;
    }
    if (m == JG_MATCH_NOT_FOUND)
        return jg_fail(req, 404, "not_found", "no such route");
    if (m == JG_MATCH_BAD_METHOD) {
        jg_resp_header(req, "Allow: %s\r\n", allow);
        return jg_fail(req, 405, "method_not_allowed", "%s is not allowed here", req->method);
    }
    if (jg_access_check(req) != JG_OK)   /* tokens, rate limit: before any body or key */
        return JG_ERR;
    return ROUTED;
}

/* The program's handler for a routed request. */
static int handle(jg_req_t *req)
{
    int rc = program->handle(req);
    if (rc == JG_ERR && !req->failed)   /* a handler bug: never an empty 200 */
        jg_fail(req, 500, "internal", "internal error");
    return rc;
}

/* Routing, preflights and the handler: one request, whatever carried it. */
static int dispatch(jg_req_t *req)
{
    int rc = route(req);
    return rc == ROUTED ? handle(req) : rc;
}

/* --- FastCGI --- */

/* A request thread's FastCGI connection: the parser (fcgiparse.h) and what was read from the
 * socket and not parsed yet. A thread's (a batch slot's) is reused for every connection it
 * serves, until a request not all there is shelved with it (conns.h): the thread then takes a
 * new one, and a thread that takes the shelved one up frees its own. */
typedef struct fcgi_conn {
    int fd;
    jg_fcgi_parser_t parser;
    size_t off, len;          /* rbuf[off..len): read, not yet fed */
    char rbuf[16384];
} fcgi_conn_t;

/* The body of a request read whole, for the handler (jg_req_t.read). */
typedef struct fcgi_body {
    const jg_fcgi_parser_t *parser;
    size_t off;
} fcgi_body_t;

static int fcgi_read(void *io, char *buf, int len)
{
    fcgi_body_t *b = io;
    const jg_buf_t *body = &b->parser->body;
    size_t n = body->len - b->off;
    if (n == 0)   /* the end; a body over the limit was only counted */
        return b->parser->stdin_total > body->len ? JG_READ_TOO_LONG : 0;
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(buf, body->data + b->off, n);
    b->off += n;
    return (int)n;
}

static int write_all(int fd, const char *p, size_t n);

/* Reads from the connection until the parser has a request (or an abort, or an error), writing
 * the parser's replies (FCGI_GET_VALUES_RESULT and the like) as they come. Returns the parser's
 * status; JG_FCGI_ERROR also for EOF, a read error and --read-timeout (the loop shuts a stalled
 * socket down under the blocked read). nonblock: a read that would block returns JG_FCGI_MORE
 * at once instead. */
static jg_fcgi_status_t read_request(fcgi_conn_t *c, int nonblock)
{
    jg_fcgi_parser_t *p = &c->parser;
    for (;;) {
        c->off += jg_fcgi_feed(p, c->rbuf + c->off, c->len - c->off);
        if (p->reply.len) {
            int w = write_all(c->fd, p->reply.data, p->reply.len);
            jg_buf_reset(&p->reply);
            if (w)
                return JG_FCGI_ERROR;
        }
        if (p->status != JG_FCGI_MORE)
            return p->status;
        ssize_t n;
        do
            n = recv(c->fd, c->rbuf, sizeof c->rbuf, nonblock ? MSG_DONTWAIT : 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && nonblock && (errno == EAGAIN || errno == EWOULDBLOCK))
            return JG_FCGI_MORE;
        if (n <= 0)
            return JG_FCGI_ERROR;
        c->off = 0;
        c->len = (size_t)n;
    }
}

/* The records of request id's answer in out: its STDOUT records, then (end) the empty STDOUT
 * and END_REQUEST. */
static void fcgi_records(int id, const jg_buf_t *rendered, jg_buf_t *out, int end)
{
    jg_buf_reset(out);
    jg_fcgi_put_stdout(out, id, rendered->data, rendered->len);
    if (end)
        jg_fcgi_put_end(out, id);
}

/* Writes out, a whole answer (END_REQUEST last), on c. What the peer does not take at once goes
 * to the loop (jg_loop_finish), so that a slow reader holds no thread; the thread writes it
 * itself (blocking, under the socket's send timeout) when the loop is full, or when bytes of a
 * next request are already read (the loop could not hand them on). Returns 1 when the
 * connection goes on with this thread (written, keep_conn), else 0 (the loop's, or closed). */
static int answer_out(fcgi_conn_t *c, const jg_buf_t *out, int keep_conn)
{
    ssize_t n;
    do
        n = send(c->fd, out->data, out->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    size_t sent = n > 0 ? (size_t)n : 0;
    int gone = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
    if (!gone && sent < out->len) {
        if (c->off == c->len && jg_loop_finish(server_loop, c->fd, keep_conn, out->data + sent,
                                               out->len - sent) == 0)
            return 0;
        gone = write_all(c->fd, out->data + sent, out->len - sent) != 0;
    }
    if (gone || !keep_conn) {
        close(c->fd);
        return 0;
    }
    return 1;
}

/* Sends the answer of a request read whole on c whose handler returned rc, or parks it.
 * Returns 1 when the connection goes on (keep-alive), 0 when it is parked or closed. */
static int respond(fcgi_conn_t *c, jg_req_t *req, int rc, jg_buf_t *rendered, jg_buf_t *out)
{
    jg_fcgi_parser_t *p = &c->parser;
    int id = p->request_id;
    int more = c->off < c->len;   /* bytes after the request: not a parkable client */
    if (rc == JG_PARKED && req->streaming && !more) {   /* the stream's start */
        jg_buf_reset(rendered);
        jg_resp_render(req, rendered);
        fcgi_records(id, rendered, out, 0);
        if (write_all(c->fd, out->data, out->len))
            more = 1;   /* the client is gone: end it here */
    }
    if (rc == JG_PARKED && !more) {
        jg_loop_park(server_loop, c->fd, id, p->keep_conn, 0, req->park_data);
        return 0;
    }
    if (rc == JG_PARKED) {   /* not parked after all: free what the program set */
        if (program->park && program->park->discard)
            program->park->discard(req->park_data);
        if (req->streaming) {
            close(c->fd);
            return 0;
        }
        jg_fail(req, 500, "internal", "internal error");
    }
    jg_buf_reset(rendered);
    jg_resp_render(req, rendered);
    fcgi_records(id, rendered, out, 1);
    return answer_out(c, out, p->keep_conn);
}

/* Reads c's request (first: a new one; else it goes on with one read in part) under
 * --read-timeout. Returns 1 with the request in c->parser, 0 when the connection was closed or
 * the request was aborted and answered (*alive: the connection goes on), or 2 when nonblock is
 * set and a read would block (call again, first 0, to go on). */
static int read_rest(fcgi_conn_t *c, jg_conns_t *conns, int self, int *alive, int first,
                     int nonblock)
{
    jg_fcgi_parser_t *p = &c->parser;
    if (first)
        jg_fcgi_parser_next(p);
    jg_fcgi_status_t st = read_request(c, nonblock);
    if (st == JG_FCGI_MORE)   /* it would block: the caller comes back */
        return 2;
    jg_conns_read_done(conns, self);   /* read whole (or given up): no more read timeout */
    *alive = 0;
    if (st == JG_FCGI_ERROR) {   /* EOF, a protocol error or --read-timeout */
        if (p->error)
            jg_log_warn("closing a FastCGI connection", "error", p->error, NULL);
        close(c->fd);
        return 0;
    }
    if (st == JG_FCGI_ABORTED) {   /* before any answer: just its end */
        jg_buf_t end = JG_BUF_INIT;
        jg_fcgi_put_end_request(&end, p->request_id, 0);
        *alive = write_all(c->fd, end.data, end.len) == 0 && p->keep_conn;
        jg_buf_free(&end);
        if (!*alive)
            close(c->fd);
        return 0;
    }
    return 1;
}

static fcgi_conn_t *conn_new(void)
{
    fcgi_conn_t *c = malloc(sizeof *c);
    if (c == NULL)
        abort();
    jg_fcgi_parser_init(&c->parser, JG_FCGI_MAX_PARAMS, config.max_body);
    return c;
}

static void conn_free(fcgi_conn_t *c)
{
    jg_fcgi_parser_free(&c->parser);
    free(c);
}

static void conn_drop(void *shelved) { conn_free(shelved); }   /* jg_conns_on_drop */

/* The thread takes up *slot's connection: fd, and shelved (what was read of its request), or a
 * new request (shelved NULL). Returns read_rest's first. */
static int conn_take(fcgi_conn_t **slot, int fd, void *shelved)
{
    if (shelved) {
        conn_free(*slot);
        *slot = shelved;
        return 0;
    }
    (*slot)->fd = fd;
    (*slot)->off = (*slot)->len = 0;
    return 1;
}

/* Reads the request of *slot's connection without blocking: 1 when it is whole, 0 when the
 * connection was closed or the request aborted (read_rest), 2 when it is not all there and was
 * shelved (the connection is the set's now, and *slot a new one), 3 when it is not all there and
 * the shelf is full (read the rest with read_rest, first 0, blocking). */
static int read_or_shelve(fcgi_conn_t **slot, jg_conns_t *conns, int self, int *alive,
                          int first)
{
    fcgi_conn_t *c = *slot;
    int got = read_rest(c, conns, self, alive, first, 1);
    if (got != 2)
        return got;
    *alive = 0;
    if (jg_conns_shelve(conns, self, c->fd, c, sizeof *c + jg_fcgi_parser_bytes(&c->parser)))
        return 3;
    *slot = conn_new();
    return 2;
}

/* A connection whose request was answered and that goes on: 1 when its next request already
 * came along (the thread reads it now), else it waits in the shared set (0). */
static int next_or_idle(fcgi_conn_t *c, jg_conns_t *conns, int self)
{
    if (c->off == c->len) {   /* nothing more yet: wait in the shared set */
        jg_conns_idle(conns, c->fd);
        return 0;
    }
    jg_conns_reading(conns, self, c->fd);   /* the next request came along: read it */
    return 1;
}

/* Serves the requests of *slot's connection (first: read_rest's) until it goes idle (back to
 * the shared set), is shelved, parked, or closed. */
static void serve_conn(fcgi_conn_t **slot, int first, jg_conns_t *conns, int self, jg_req_t *req,
                       jg_buf_t *rendered, jg_buf_t *out)
{
    for (;; first = 1) {
        int alive;
        int got = read_or_shelve(slot, conns, self, &alive, first);
        if (got == 2)
            return;
        fcgi_conn_t *c = *slot;
        if (got == 3)
            got = read_rest(c, conns, self, &alive, 0, 0);
        if (got) {
            jg_fcgi_parser_t *p = &c->parser;
            fcgi_body_t body = {p, 0};
            jg_req_reset(req, &config, req->redis, p->envp, fcgi_read, &body);
            int rc = p->params_over
                         ? jg_fail(req, 413, "payload_too_large",
                                   "request headers over %u bytes", JG_FCGI_MAX_PARAMS)
                         : dispatch(req);
            alive = respond(c, req, rc, rendered, out);
        }
        if (!alive || !next_or_idle(c, conns, self))
            return;
    }
}

/* --- requests that arrive together (server.h, jg_batch_ops_t) --- */

#define BATCH_MAX JG_CONNS_MANY_MAX

/* A request thread's batch: a connection, a request and a command per slot, reused. The
 * bodies are each parser's own (bounded by JOBGATE_MAX_BODY), so a batch holds at most 16
 * requests' bounded bodies. */
typedef struct batch {
    fcgi_conn_t *conns[BATCH_MAX];
    jg_req_t reqs[BATCH_MAX];
    fcgi_body_t bodies[BATCH_MAX];
    jg_batch_cmd_t cmds[BATCH_MAX];
    int held[BATCH_MAX], nheld;     /* slots waiting for their Redis read */
    int later[BATCH_MAX], nlater;   /* slots whose connection goes on after the batch */
} batch_t;

/* Answers slot i with rc and notes a connection that goes on with bytes already read. */
static void batch_respond(batch_t *b, int i, int rc, jg_conns_t *conns,
                          jg_buf_t *rendered, jg_buf_t *out)
{
    fcgi_conn_t *c = b->conns[i];
    if (!respond(c, &b->reqs[i], rc, rendered, out))
        return;
    if (c->off == c->len)
        jg_conns_idle(conns, c->fd);
    else
        b->later[b->nlater++] = i;   /* its next request is read after the batch */
}

/* A request the batch declined, served the usual way: the program's after() (server.h), or its
 * handler. */
static int batch_declined(batch_t *b, int i)
{
    if (batch_ops->after == NULL)
        return handle(&b->reqs[i]);
    int rc = batch_ops->after(&b->reqs[i], &b->cmds[i]);
    if (rc == JG_ERR && !b->reqs[i].failed)   /* as handle(): never an empty 200 */
        jg_fail(&b->reqs[i], 500, "internal", "internal error");
    return rc;
}

/* Answers the held requests of lead (lead[k] == l) from its reply rep (NULL: Redis unreachable);
 * those finish declines are noted in declined[]. */
static void batch_finish_call(batch_t *b, const int *lead, int n, int l, redisReply *rep,
                              int *declined, int *ndeclined, jg_conns_t *conns,
                              jg_buf_t *rendered, jg_buf_t *out)
{
    for (int k = l; k < n; k++) {
        if (lead[k] != l)
            continue;
        int i = b->held[k];
        int rc = batch_ops->finish(&b->reqs[i], &b->cmds[i], rep);
        if (rc == JG_DECLINE)
            declined[(*ndeclined)++] = i;
        else
            batch_respond(b, i, rc, conns, rendered, out);
    }
    if (rep)
        freeReplyObject(rep);
}

/* Sends the held requests' commands together and answers each from its own reply. A command the
 * program's join() folds into an earlier one's (server.h) is not sent: that one's reply answers
 * both. */
static void batch_flush(batch_t *b, jg_redis_t *redis, jg_conns_t *conns,
                        jg_buf_t *rendered, jg_buf_t *out)
{
    const jg_batch_ops_t *ops = batch_ops;
    int n = b->nheld, declined[BATCH_MAX], ndeclined = 0;
    int lead[BATCH_MAX], calls[BATCH_MAX], ncalls = 0;   /* k -> the k whose command it rides */
    b->nheld = 0;
    if (n == 0) {
        jg_log_flush();
        return;
    }
    for (int k = 0; k < n; k++) {
        lead[k] = k;
        for (int c = 0; c < ncalls && ops->join && lead[k] == k; c++)
            if (ops->join(&b->cmds[b->held[calls[c]]], &b->cmds[b->held[k]]))
                lead[k] = calls[c];
        if (lead[k] == k)
            calls[ncalls++] = k;
    }
    if (ncalls == 1) {   /* alone: as a lone request (a read: a closed reused connection is
                            retried once; a script: loaded on NOSCRIPT) */
        jg_batch_cmd_t *cmd = &b->cmds[b->held[0]];
        redisReply *rep = cmd->script ? jg_script_run(redis, cmd->script)
                                      : jg_redis_read(redis, cmd->argc, cmd->argv, cmd->lens);
        batch_finish_call(b, lead, n, 0, rep, declined, &ndeclined, conns, rendered, out);
    } else {
        int failed = 0;
        for (int c = 0; c < ncalls && !failed; c++) {
            jg_batch_cmd_t *cmd = &b->cmds[b->held[calls[c]]];
            if (cmd->script ? jg_script_append(redis, cmd->script)
                            : jg_redis_append_argv(redis, cmd->argc, cmd->argv, cmd->lens)) {
                if (c > 0)   /* some were appended: this connection cannot be used any more */
                    jg_redis_drop(redis, "pipeline append failed");
                failed = 1;
            }
        }
        /* each reply as it is used: one reply in memory at a time */
        for (int c = 0; c < ncalls; c++) {
            redisReply *rep = failed ? NULL : jg_redis_get_reply(redis);
            if (rep == NULL)
                failed = 1;   /* the connection is gone: the replies after it too */
            batch_finish_call(b, lead, n, calls[c], rep, declined, &ndeclined, conns, rendered,
                              out);
        }
    }
    for (int k = 0; k < ndeclined; k++)   /* the batch's replies are all read: the usual way */
        batch_respond(b, declined[k], batch_declined(b, declined[k]), conns, rendered, out);
    jg_log_flush();   /* the batch's log lines, in one write */
}

/* Slot i's request, read whole: routed and checked, then held for the batch's read, or answered
 * (the held reads going first when it makes Redis calls of its own). */
static void serve_slot(batch_t *b, int i, jg_redis_t *redis, jg_conns_t *conns,
                       jg_buf_t *rendered, jg_buf_t *out)
{
    jg_fcgi_parser_t *p = &b->conns[i]->parser;
    jg_req_t *req = &b->reqs[i];
    b->bodies[i] = (fcgi_body_t){p, 0};
    jg_req_reset(req, &config, redis, p->envp, fcgi_read, &b->bodies[i]);
    int rc = p->params_over ? jg_fail(req, 413, "payload_too_large",
                                      "request headers over %u bytes", JG_FCGI_MAX_PARAMS)
                            : route(req);
    if (rc == ROUTED) {
        b->cmds[i].script = NULL;
        rc = batch_ops->prepare(req, &b->cmds[i]);
        if (rc == JG_OK) {
            b->held[b->nheld++] = i;
            return;
        }
        if (rc == JG_DECLINE) {   /* its own Redis calls: the held reads go first */
            batch_flush(b, redis, conns, rendered, out);
            rc = batch_declined(b, i);
        }
    }
    batch_respond(b, i, rc, conns, rendered, out);
}

/* Serves the connections of one wake: each request that is all there is read (without
 * blocking), routed and checked; those the program can batch are held, and their reads go to
 * Redis together (before any request that is not held is served, and at the end). A request
 * not all there yet is shelved (read_or_shelve); with the shelf full it is read after the
 * others, blocking, as a lone one would be, so that it delays none of them. */
static void serve_batch(batch_t *b, const int *fds, void **shelved, int n, jg_conns_t *conns,
                        int self, jg_redis_t *redis, jg_buf_t *rendered, jg_buf_t *out)
{
    int slow[BATCH_MAX], nslow = 0;
    b->nheld = b->nlater = 0;
    jg_log_hold();   /* until the batch's answers are out (batch_flush) */
    for (int i = 0; i < n; i++) {
        int first = conn_take(&b->conns[i], fds[i], shelved[i]), alive;
        jg_conns_reading(conns, self, fds[i]);
        int got = read_or_shelve(&b->conns[i], conns, self, &alive, first);
        if (got == 3)
            slow[nslow++] = i;
        else if (got == 1)
            serve_slot(b, i, redis, conns, rendered, out);
        else if (got == 0 && alive && next_or_idle(b->conns[i], conns, self))
            b->later[b->nlater++] = i;
    }
    batch_flush(b, redis, conns, rendered, out);
    for (int k = 0; k < nslow; k++) {
        int i = slow[k], alive;
        fcgi_conn_t *c = b->conns[i];
        jg_conns_reading(conns, self, c->fd);
        if (read_rest(c, conns, self, &alive, 0, 0))
            serve_slot(b, i, redis, conns, rendered, out);
        else if (alive && next_or_idle(c, conns, self))
            b->later[b->nlater++] = i;
        batch_flush(b, redis, conns, rendered, out);
    }
    jg_log_release();
    for (int k = 0; k < b->nlater; k++) {   /* connections whose next request came along */
        int i = b->later[k];
        jg_conns_reading(conns, self, b->conns[i]->fd);
        serve_conn(&b->conns[i], 1, conns, self, &b->reqs[i], rendered, out);
    }
}

static void *request_thread(void *arg)
{
    int self = (int)(intptr_t)arg;
    jg_conns_t *conns = jg_loop_conns(server_loop);
    jg_redis_t redis;
    jg_redis_init(&redis, &config, 2000);
    jg_buf_t rendered = JG_BUF_INIT, out = JG_BUF_INIT;
    if (batch_ops) {
        batch_t *b = calloc(1, sizeof *b);
        if (b == NULL)
            abort();
        for (int i = 0; i < BATCH_MAX; i++) {
            b->conns[i] = conn_new();
            b->reqs[i].redis = &redis;
        }
        int fds[BATCH_MAX], n;
        void *shelved[BATCH_MAX];
        while ((n = jg_conns_next_many(conns, self, fds, shelved, BATCH_MAX)) > 0)
            serve_batch(b, fds, shelved, n, conns, self, &redis, &rendered, &out);
        for (int i = 0; i < BATCH_MAX; i++) {
            conn_free(b->conns[i]);
            jg_req_free(&b->reqs[i]);
            if (batch_ops->free && b->cmds[i].data)
                batch_ops->free(b->cmds[i].data);
        }
        free(b);
    } else {
        fcgi_conn_t *c = conn_new();
        jg_req_t req;
        memset(&req, 0, sizeof req);
        req.redis = &redis;
        int fd;
        void *shelved;
        while ((fd = jg_conns_next(conns, self, &shelved)) >= 0)
            serve_conn(&c, conn_take(&c, fd, shelved), conns, self, &req, &rendered, &out);
        conn_free(c);
        jg_req_free(&req);
    }
    jg_buf_free(&rendered);
    jg_buf_free(&out);
    jg_redis_close(&redis);
    OPENSSL_thread_stop();   /* RAND_bytes' per-thread state (job ids) */
    jg_loop_thread_done(server_loop);
    return NULL;
}

static int serve_fastcgi(int listen_fd)
{
    server_loop = jg_loop_new(&config, listen_fd, program->park);
    if (server_loop == NULL)
        return 1;
    jg_conns_on_drop(jg_loop_conns(server_loop), conn_drop);
    if (program->init)
        program->init(server_loop);
    pthread_t *threads = calloc((size_t)config.threads, sizeof *threads);
    if (threads == NULL)
        return 1;
    for (int i = 0; i < config.threads; i++) {
        jg_loop_thread_started(server_loop);
        if (pthread_create(&threads[i], NULL, request_thread, (void *)(intptr_t)i) != 0) {
            jg_log_error("cannot start request threads", "error", strerror(errno), NULL);
            return 1;
        }
    }
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", config.threads);
    jg_log_info("serving", "threads", nthreads, "redis", config.redis_url_masked, NULL);
    jg_loop_run(server_loop);
    int drained = jg_loop_drained(server_loop);
    jg_log_info("stopped", "clean", drained ? "yes" : "no", NULL);
    if (!drained)
        _exit(1);   /* threads still busy past --grace: do not run exit handlers under them */
    for (int i = 0; i < config.threads; i++)
        pthread_join(threads[i], NULL);   /* they have left their loop: this is quick */
    free(threads);
    jg_loop_free(server_loop);
    return 0;
}

/* --- plain CGI: one request from the environment and stdin --- */

typedef struct cgi_input {
    long left;   /* CONTENT_LENGTH still to read */
} cgi_input_t;

static int cgi_read(void *io, char *buf, int len)
{
    cgi_input_t *in = io;
    if (in->left <= 0)
        return 0;
    if (len > in->left)
        len = (int)in->left;
    ssize_t n;
    do
        n = read(STDIN_FILENO, buf, (size_t)len);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        in->left -= n;
    return n < 0 ? -1 : (int)n;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int serve_cgi(void)
{
    jg_redis_t redis;
    jg_redis_init(&redis, &config, 2000);
    server_loop = jg_loop_new(&config, -1, program->park);
    if (server_loop == NULL)
        return 1;
    if (program->init)
        program->init(server_loop);
    cgi_input_t in = {0};
    const char *cl = getenv("CONTENT_LENGTH");
    if (cl && jg_parse_long(cl, 0, 1L << 40, &in.left))
        in.left = 0;
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_req_reset(&req, &config, &redis, environ, cgi_read, &in);
    int rc = dispatch(&req);
    if (rc == JG_PARKED) {
        if (req.streaming) {   /* the stream's start, before parking */
            jg_buf_t out = JG_BUF_INIT;
            jg_resp_render(&req, &out);
            write_all(STDOUT_FILENO, out.data, out.len);
            jg_buf_free(&out);
        }
        jg_loop_park(server_loop, STDOUT_FILENO, 0, 0, 1, req.park_data);
        jg_loop_run(server_loop);
    } else {
        jg_buf_t out = JG_BUF_INIT;
        jg_resp_render(&req, &out);
        write_all(STDOUT_FILENO, out.data, out.len);
        jg_buf_free(&out);
    }
    jg_req_free(&req);
    jg_redis_close(&redis);
    jg_loop_free(server_loop);
    return 0;
}

static void ignore_signal(int sig) { (void)sig; }

int jg_serve(const jg_program_t *prog, int argc, char **argv)
{
    program = prog;
    jg_log_init(prog->name);
    char err[128];
    if (jg_config_load_env(&config, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog->name, err);
        return 2;
    }
    config.threads = default_threads();
    int rc = parse_options(argc, argv);
    if (rc)
        return rc - 1;

    /* SIGPIPE ignored (a peer gone fails a write instead); SIGTERM and SIGINT are blocked in
     * every thread and read by the loop from a signalfd. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = ignore_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    int listen_fd = 0;
    if (config.socket[0]) {
        listen_fd = jg_conns_listen(config.socket, 1024);
        if (listen_fd < 0) {
            fprintf(stderr, "%s: cannot listen on %s: %s\n", prog->name, config.socket,
                    strerror(errno));
            return 1;
        }
    } else if (!jg_conns_fd0_listens()) {
        return serve_cgi();
    }
    return serve_fastcgi(listen_fd);
}
