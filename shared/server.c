/* server.c — main() of the web programs: options, signals, FastCGI or CGI, request threads,
 * routing around the program's handler (see server.h).
 *
 * How libfcgi is used. The shared set (conns.c) accepts connections and watches idle kept-alive
 * ones; a request thread gets a connection with a request waiting and lets libfcgi read it by
 * presetting FCGX_Request.ipcFd (FCGX_Accept_r then skips its own accept) and keepConnection
 * (so that finishing the previous request does not close it). libfcgi's fields below "Don't
 * use anything below here" are used for exactly these two, plus `detached` to skip libfcgi's
 * lingering close when the request was read whole; the layout has been stable since 2.4.0. */
#include "server.h"
#include "access.h"
#include "jg.h"
#include "log.h"
#include "timefmt.h"

#include <errno.h>
#include <fcgiapp.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static const jg_program_t *program;
static jg_config_t config;
static jg_loop_t *server_loop;

jg_loop_t *jg_server_loop(void) { return server_loop; }

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
            "  --threads N              request threads, each with its own Redis connection (8)\n"
            "  --grace S                on SIGTERM, seconds to finish requests in flight (5)\n"
            "  --max-streams N          parked long polls / streams held at most (10000)\n"
            "  --read-timeout S         close a connection that has not delivered a whole\n"
            "                           request in S seconds (10)\n"
            "  --check                  print the configuration (secrets masked), ping Redis,\n"
            "                           exit 0 when usable, 1 otherwise\n"
            "\n"
            "Configuration comes from the environment: REDIS_URL, JOBGATE_KEY_PREFIX,\n"
            "JOBGATE_PREFIX (mount prefix, /api) and the JOBGATE_* settings of the README;\n"
            "FCGI_WEB_SERVER_ADDRS (comma list) limits the peers of a TCP --socket.\n",
            program->name, program->name);
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

/* Routing, preflights and the handler: one request, whatever carried it. */
static int dispatch(jg_req_t *req)
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
    int rc = program->handle(req);
    if (rc == JG_ERR && !req->failed)   /* a handler bug: never an empty 200 */
        jg_fail(req, 500, "internal", "internal error");
    return rc;
}

/* --- FastCGI --- */

static _Thread_local int thread_no;   /* this request thread's number (--read-timeout) */

/* A handler's read of the body: under --read-timeout while it blocks. */
static int fcgi_read(void *io, char *buf, int len)
{
    FCGX_Stream *in = io;
    jg_conns_in_read(jg_loop_conns(server_loop), thread_no, 1);
    int n = FCGX_GetStr(buf, len, in);
    jg_conns_in_read(jg_loop_conns(server_loop), thread_no, 0);
    return n == 0 && FCGX_GetError(in) ? -1 : n;
}

/* Reads what is left of the body, so that the connection can carry the next request (or be
 * handed to the loop, where any byte from nginx means "gone"). Returns 0 if all was read. */
static int drain_body(FCGX_Stream *in)
{
    char buf[8192];
    size_t total = 0;
    int n;
    while ((n = FCGX_GetStr(buf, sizeof buf, in)) > 0) {
        total += (size_t)n;
        if (total > config.max_body + 65536)
            return -1;
    }
    return FCGX_GetError(in) ? -1 : 0;
}

static void *request_thread(void *arg)
{
    int self = (int)(intptr_t)arg;
    jg_conns_t *conns = jg_loop_conns(server_loop);
    thread_no = self;
    jg_redis_t redis;
    jg_redis_init(&redis, &config, 2000);
    FCGX_Request fr;
    FCGX_InitRequest(&fr, -1, 0);
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_buf_t out = JG_BUF_INIT;
    int fd;
    while ((fd = jg_conns_next(conns, self)) >= 0) {
        fr.ipcFd = fd;
        fr.keepConnection = 1;
        if (FCGX_Accept_r(&fr) < 0) {   /* EOF, a protocol error or --read-timeout: closed */
            jg_conns_read_done(conns, self);
            fr.ipcFd = -1;
            continue;
        }
        jg_conns_in_read(conns, self, 0);   /* the handler's work is not under the timeout */
        jg_req_reset(&req, &config, &redis, fr.envp, fcgi_read, fr.in);
        int rc = dispatch(&req);
        jg_conns_in_read(conns, self, 1);
        int drained = drain_body(fr.in) == 0;
        jg_conns_read_done(conns, self);   /* read whole (or given up): no more read timeout */
        if (rc == JG_PARKED && req.streaming) {   /* the stream's start, before parking */
            jg_buf_reset(&out);
            jg_resp_render(&req, &out);
            if (FCGX_PutStr(out.data, (int)out.len, fr.out) < 0 || FCGX_FFlush(fr.out) < 0)
                drained = 0;   /* the client is gone: end it here */
        }
        if (rc == JG_PARKED && drained) {
            int pfd = fr.ipcFd;
            fr.ipcFd = -1;
            jg_loop_park(server_loop, pfd, fr.requestId, fr.keepConnection, 0, req.park_data);
            FCGX_Free(&fr, 0);
            continue;
        }
        if (rc == JG_PARKED) {   /* not parked after all: free what the program set */
            if (program->park && program->park->discard)
                program->park->discard(req.park_data);
            if (!req.streaming)
                jg_fail(&req, 500, "internal", "internal error");
        } else {
            jg_buf_reset(&out);
            jg_resp_render(&req, &out);
            FCGX_PutStr(out.data, (int)out.len, fr.out);
        }
        if (!drained)
            fr.keepConnection = 0;
        fr.detached = drained;   /* read whole: a plain close, no lingering */
        FCGX_Finish_r(&fr);
        if (fr.ipcFd >= 0) {
            jg_conns_idle(conns, fr.ipcFd);
            fr.ipcFd = -1;
        }
        fr.detached = 0;
    }
    jg_buf_free(&out);
    jg_req_free(&req);
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
    int rc = parse_options(argc, argv);
    if (rc)
        return rc - 1;

    /* Our dispositions first, so libfcgi installs none of its own; SIGTERM and SIGINT are
     * then blocked in every thread and read by the loop from a signalfd. */
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

    if (FCGX_Init() != 0) {
        fprintf(stderr, "%s: FastCGI library init failed\n", prog->name);
        return 1;
    }
    int listen_fd = 0;
    if (config.socket[0]) {
        listen_fd = FCGX_OpenSocket(config.socket, 1024);
        if (listen_fd < 0) {
            fprintf(stderr, "%s: cannot listen on %s: %s\n", prog->name, config.socket,
                    strerror(errno));
            return 1;
        }
    } else if (FCGX_IsCGI()) {
        return serve_cgi();
    }
    return serve_fastcgi(listen_fd);
}
