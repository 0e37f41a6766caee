/* conns.c — the request threads' shared epoll set of the listener and idle connections, with
 * --read-timeout and FCGI_WEB_SERVER_ADDRS (see conns.h). */
#include "conns.h"
#include "log.h"
#include "timefmt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SEND_TIMEOUT_S 10   /* a thread's write that makes no progress this long fails */

/* What threads find in the set: a connection's fd, or one of these. */
#define EV_LISTEN UINT64_MAX
#define EV_STOP (UINT64_MAX - 1)
enum { CONN_NONE, CONN_IDLE, CONN_BUSY };

/* Closes fd, whose setup failed, keeping the failure's errno. Returns -1. */
static int close_failed(int fd)
{
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}

/* A request thread and the request it reads. */
typedef struct reader {
    int fd;                   /* -1: no request being read */
    int64_t deadline;         /* monotonic ms: the request must be whole by then */
    int in_read;              /* in a read of it now (not in the handler's own work) */
    int fired;                /* shut down for its deadline */
} reader_t;

struct jg_conns {
    const jg_config_t *cfg;
    int epfd;
    int listen_fd;
    int stop_fd;
    int tcp;                  /* the listener is TCP: FCGI_WEB_SERVER_ADDRS applies */
    atomic_int stopping;

    pthread_mutex_t mu;       /* guards the rest */
    unsigned char *conn;      /* conn[fd]: CONN_IDLE (armed in the set), CONN_BUSY (in the
                                 set, disarmed: a thread has it) */
    int64_t *fresh_since;     /* conn[fd] idle and fresh: accepted then (ms); else 0 */
    size_t conn_cap;
    reader_t *readers;        /* one per request thread */
    int nreaders;
};

static int64_t timeout_ms(const jg_conns_t *c) { return (int64_t)(c->cfg->read_timeout * 1000); }

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int set_add(jg_conns_t *c, int fd, uint64_t data, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(c->epfd, op, fd, &ev);
}

jg_conns_t *jg_conns_new(const jg_config_t *cfg, int listen_fd)
{
    jg_conns_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->cfg = cfg;
    c->listen_fd = listen_fd;
    c->nreaders = cfg->threads;
    c->readers = calloc((size_t)cfg->threads, sizeof *c->readers);
    pthread_mutex_init(&c->mu, NULL);
    for (int i = 0; c->readers && i < cfg->threads; i++)
        c->readers[i].fd = -1;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    c->tcp = getsockname(listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
             (sa.ss_family == AF_INET || sa.ss_family == AF_INET6);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int fl = set_nonblocking(listen_fd);
    if (c->readers == NULL || c->epfd < 0 || c->stop_fd < 0 || fl < 0 ||
        set_add(c, c->stop_fd, EV_STOP, EPOLLIN, EPOLL_CTL_ADD) ||
        set_add(c, listen_fd, EV_LISTEN, EPOLLIN | EPOLLONESHOT, EPOLL_CTL_ADD)) {
        jg_log_error("cannot watch the listening socket", "error", strerror(errno), NULL);
        return NULL;
    }
    return c;
}

void jg_conns_free(jg_conns_t *c)
{
    if (c == NULL)
        return;
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->stop_fd >= 0)
        close(c->stop_fd);
    pthread_mutex_destroy(&c->mu);
    free(c->conn);
    free(c->fresh_since);
    free(c->readers);
    free(c);
}

int jg_peer_allowed(const char *list, const char *addr)
{
    int any = 0;
    size_t alen = strlen(addr), n;
    for (const char *p = list, *item; (item = jg_list_next(&p, &n)) != NULL; any = 1)
        if (n == alen && memcmp(item, addr, n) == 0)
            return 1;
    return !any;
}

int jg_conns_listen(const char *spec, int backlog)
{
    const char *colon = strrchr(spec, ':');
    int fd = -1;
    if (colon && spec[0] != '/') {   /* HOST:PORT or :PORT */
        char host[256];
        size_t hl = (size_t)(colon - spec);
        if (hl >= sizeof host) {
            errno = EINVAL;
            return -1;
        }
        memcpy(host, spec, hl);
        host[hl] = '\0';
        if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {   /* [::1]:9000 */
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
        struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *ai;
        if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai) != 0) {
            errno = EINVAL;
            return -1;
        }
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
                            bind(fd, a->ai_addr, a->ai_addrlen)))
                fd = close_failed(fd);
        }
        freeaddrinfo(ai);
    } else {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(spec) >= sizeof sa.sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(sa.sun_path, spec, strlen(spec) + 1);
        unlink(spec);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa))
            fd = close_failed(fd);
    }
    if (fd >= 0 && listen(fd, backlog))
        fd = close_failed(fd);
    return fd;
}

int jg_conns_fd0_listens(void)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    /* a listening socket has no peer (libfcgi's test, OS_IsFcgi) */
    return getpeername(STDIN_FILENO, (struct sockaddr *)&sa, &len) != 0 && errno == ENOTCONN;
}

/* The peer of a TCP connection, as text (an IPv4-mapped IPv6 address as IPv4). */
static int peer_text(int fd, char *out, size_t cap)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    if (sa.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, out, (socklen_t)cap)
                   ? 0 : -1;
    if (sa.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            return inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap) ? 0 : -1;
        return inet_ntop(AF_INET6, a, out, (socklen_t)cap) ? 0 : -1;
    }
    return -1;
}

static int out_of_resources(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* accept() failed for want of descriptors (ulimit -n below --max-streams plus the threads'
 * connections) or memory: the pending connection stays in the backlog and the listener stays
 * readable, so re-arming it at once would spin every request thread on it (and log at that
 * rate). Wait a little, until parked streams or connections end; warn once a second. */
static void accept_backoff(int err)
{
    static _Atomic int64_t warned_at;
    int64_t now = jg_monotonic_ms(), last = atomic_load(&warned_at);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&warned_at, &last, now))
        jg_log_warn("accept failed: backing off (raise ulimit -n above --max-streams)", "error",
                    strerror(err), NULL);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Grows the per-fd tables to hold fd. Under mu. */
static void conn_room(jg_conns_t *c, int fd)
{
    if ((size_t)fd < c->conn_cap)
        return;
    size_t cap = c->conn_cap ? c->conn_cap : 1024;
    while (cap <= (size_t)fd)
        cap *= 2;
    unsigned char *conn = realloc(c->conn, cap);
    if (conn == NULL)
        abort();
    c->conn = conn;
    int64_t *since = realloc(c->fresh_since, cap * sizeof *since);
    if (since == NULL)
        abort();
    c->fresh_since = since;
    memset(c->conn + c->conn_cap, CONN_NONE, cap - c->conn_cap);
    memset(c->fresh_since + c->conn_cap, 0, (cap - c->conn_cap) * sizeof *since);
    c->conn_cap = cap;
}

/* Puts fd in the set, armed; fresh_since: when it was accepted, or 0 (kept alive). Closes it
 * when stopping or when it cannot be watched. */
static void watch_idle(jg_conns_t *c, int fd, int64_t fresh_since)
{
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->stopping)) {
        pthread_mutex_unlock(&c->mu);
        close(fd);
        return;
    }
    conn_room(c, fd);
    /* Re-arm it where it still is (one syscall); a closed fd left the set by itself, so a
     * BUSY mark may belong to an earlier connection with this number: then add it anew. */
    uint32_t events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    int rc = -1;
    if (c->conn[fd] == CONN_BUSY)
        rc = set_add(c, fd, (uint64_t)fd, events, EPOLL_CTL_MOD);
    if (rc != 0)
        rc = set_add(c, fd, (uint64_t)fd, events, EPOLL_CTL_ADD);
    if (rc == 0) {
        c->conn[fd] = CONN_IDLE;
        c->fresh_since[fd] = fresh_since;
    } else {
        c->conn[fd] = CONN_NONE;
        close(fd);
    }
    pthread_mutex_unlock(&c->mu);
}

void jg_conns_idle(jg_conns_t *c, int fd) { watch_idle(c, fd, 0); }

/* The thread starts reading fd: its request must be whole by deadline. */
static int start_reading(jg_conns_t *c, int thread, int fd, int64_t since)
{
    pthread_mutex_lock(&c->mu);
    if (thread >= 0 && thread < c->nreaders)
        c->readers[thread] = (reader_t){fd, since + timeout_ms(c), 1, 0};
    pthread_mutex_unlock(&c->mu);
    return fd;
}

void jg_conns_reading(jg_conns_t *c, int thread, int fd)
{
    start_reading(c, thread, fd, jg_monotonic_ms());
}

void jg_conns_read_done(jg_conns_t *c, int thread)
{
    pthread_mutex_lock(&c->mu);
    if (thread >= 0 && thread < c->nreaders) {
        c->readers[thread].fd = -1;
        c->readers[thread].in_read = 0;
    }
    pthread_mutex_unlock(&c->mu);
}

void jg_conns_in_read(jg_conns_t *c, int thread, int on)
{
    pthread_mutex_lock(&c->mu);
    if (thread >= 0 && thread < c->nreaders)
        c->readers[thread].in_read = on;
    pthread_mutex_unlock(&c->mu);
}

/* A new connection: refused if its peer is not allowed; else served at once when its request
 * is already there (the usual case), or left idle in the set until it sends. Returns its fd
 * for the thread, or -1. */
static int take_new(jg_conns_t *c, int thread, int fd)
{
    if (c->tcp && c->cfg->web_server_addrs[0]) {
        char peer[INET6_ADDRSTRLEN];
        if (peer_text(fd, peer, sizeof peer) != 0 ||
            !jg_peer_allowed(c->cfg->web_server_addrs, peer)) {
            jg_log_warn("refused a connection from a peer not in FCGI_WEB_SERVER_ADDRS", "peer",
                        peer_text(fd, peer, sizeof peer) == 0 ? peer : "?", NULL);
            close(fd);
            return -1;
        }
    }
    /* A request thread writes answers on this blocking socket: a client that stops
     * reading must not hold the thread for ever. Parked requests are written non-blocking by
     * the loop. */
    struct timeval tv = {SEND_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int64_t now = jg_monotonic_ms();
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return start_reading(c, thread, fd, now);
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close(fd);
        return -1;
    }
    watch_idle(c, fd, now);   /* nothing yet: no thread waits for it */
    return -1;
}

/* What one event of the set gives the thread: a connection's fd to read (>= 0), nothing (-1),
 * or the stop (-2). */
static int take_event(jg_conns_t *c, int thread, const struct epoll_event *ev)
{
    if (ev->data.u64 == EV_STOP)
        return -2;
    if (ev->data.u64 == EV_LISTEN) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        int err = errno;
        if (fd < 0 && out_of_resources(err))
            accept_backoff(err);   /* the listener stays disarmed meanwhile */
        /* re-armed at once, so that another thread takes the next connection */
        pthread_mutex_lock(&c->mu);
        if (!atomic_load(&c->stopping))
            set_add(c, c->listen_fd, EV_LISTEN, EPOLLIN | EPOLLONESHOT, EPOLL_CTL_MOD);
        pthread_mutex_unlock(&c->mu);
        if (fd >= 0)
            return take_new(c, thread, fd);
        if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED &&
            !out_of_resources(err) && !atomic_load(&c->stopping))
            jg_log_warn("accept failed", "error", strerror(err), NULL);
        return -1;
    }
    int fd = (int)ev->data.u64, mine;
    int64_t since = 0;
    pthread_mutex_lock(&c->mu);
    mine = (size_t)fd < c->conn_cap && c->conn[fd] == CONN_IDLE;
    if (mine) {
        c->conn[fd] = CONN_BUSY;   /* stays in the set, disarmed (EPOLLONESHOT) */
        since = c->fresh_since[fd];
        c->fresh_since[fd] = 0;
    }
    pthread_mutex_unlock(&c->mu);
    if (mine)   /* the next request, or EOF: the thread's read tells, and closes it */
        return start_reading(c, thread, fd, since ? since : jg_monotonic_ms());
    return -1;
}

int jg_conns_next(jg_conns_t *c, int thread)
{
    int fd;
    jg_conns_next_many(c, thread, &fd, 1);
    return fd;
}

int jg_conns_next_many(jg_conns_t *c, int thread, int *fds, int max)
{
    struct epoll_event ev[JG_CONNS_MANY_MAX];
    if (max > JG_CONNS_MANY_MAX)
        max = JG_CONNS_MANY_MAX;
    for (;;) {
        int n = epoll_wait(c->epfd, ev, max, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fds[0] = -1, -1;
        int got = 0, stop = 0;
        for (int i = 0; i < n; i++) {
            int fd = take_event(c, thread, &ev[i]);
            if (fd >= 0)
                fds[got++] = fd;
            else if (fd == -2)
                stop = 1;
        }
        if (got)   /* a stop seen with them is seen again on the next call (never read) */
            return got;
        if (stop)
            return fds[0] = -1, -1;
    }
}

void jg_conns_watch(jg_conns_t *c, int64_t now)
{
    int64_t limit = timeout_ms(c);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->nreaders; i++) {
        reader_t *r = &c->readers[i];
        if (r->fd >= 0 && r->in_read && !r->fired && now >= r->deadline) {
            /* the thread blocked in read() gets EOF, gives the request up and closes it */
            shutdown(r->fd, SHUT_RDWR);
            r->fired = 1;
            jg_log_warn("closing a connection that did not deliver its request in time",
                        NULL);
        }
    }
    for (size_t fd = 0; fd < c->conn_cap; fd++) {
        if (c->conn[fd] == CONN_IDLE && c->fresh_since[fd] && now - c->fresh_since[fd] >= limit) {
            c->conn[fd] = CONN_NONE;
            c->fresh_since[fd] = 0;
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, (int)fd, NULL);
            close((int)fd);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void jg_conns_stop(jg_conns_t *c)
{
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stopping, 1);
    if (c->listen_fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->listen_fd, NULL);
        close(c->listen_fd);
        c->listen_fd = -1;
    }
    /* idle connections are closed (nginx then opens new ones elsewhere) */
    for (size_t fd = 0; fd < c->conn_cap; fd++) {
        if (c->conn[fd] == CONN_IDLE) {
            c->conn[fd] = CONN_NONE;
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, (int)fd, NULL);
            close((int)fd);
        }
    }
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;   /* never read: every thread waiting on the set sees it and leaves */
    ssize_t ignored = write(c->stop_fd, &one, sizeof one);
    (void)ignored;
}
