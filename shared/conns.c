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

/* What the set knows of a connection, by fd. */
typedef struct conn {
    unsigned char state;      /* CONN_IDLE (armed in the set), CONN_BUSY (in the set, disarmed:
                                 a thread has it), CONN_NONE */
    int64_t began;            /* monotonic ms its request began (accepted, or its first bytes
                                 when kept alive): --read-timeout runs from then; 0: between
                                 requests, no deadline */
    void *shelved;            /* idle: its partly read request (jg_conns_shelve), else NULL */
    size_t shelved_bytes;
} conn_t;

/* A request thread and the request it reads. */
typedef struct reader {
    int fd;                   /* -1: no request being read */
    int64_t deadline;         /* monotonic ms: the request must be whole by then */
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
    conn_t *conn;             /* by fd */
    size_t conn_cap;
    size_t shelf_bytes;       /* memory of the shelved requests, at most JG_CONNS_SHELF_BYTES */
    int nshelved;
    int stop_sent;            /* the stop is written to stop_fd (once nothing is shelved) */
    void (*drop)(void *shelved);
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
    for (size_t fd = 0; fd < c->conn_cap; fd++)
        if (c->conn[fd].shelved && c->drop)
            c->drop(c->conn[fd].shelved);
    free(c->conn);
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
    conn_t *conn = realloc(c->conn, cap * sizeof *conn);
    if (conn == NULL)
        abort();
    memset(conn + c->conn_cap, 0, (cap - c->conn_cap) * sizeof *conn);   /* CONN_NONE */
    c->conn = conn;
    c->conn_cap = cap;
}

/* Writes the stop that every waiting thread sees, once nothing is shelved (a shelved request
 * still has its thread to come). Under mu. */
static void send_stop(jg_conns_t *c)
{
    if (!atomic_load(&c->stopping) || c->stop_sent || c->nshelved > 0)
        return;
    c->stop_sent = 1;
    uint64_t one = 1;   /* never read: every thread waiting on the set sees it and leaves */
    ssize_t ignored = write(c->stop_fd, &one, sizeof one);
    (void)ignored;
}

/* Takes fd's shelved request off the shelf (to a thread, or to be dropped). Under mu. */
static void *unshelve(jg_conns_t *c, int fd)
{
    conn_t *k = &c->conn[fd];
    void *shelved = k->shelved;
    if (shelved) {
        c->shelf_bytes -= k->shelved_bytes;
        c->nshelved--;
        k->shelved = NULL;
        k->shelved_bytes = 0;
        send_stop(c);
    }
    return shelved;
}

/* Removes idle fd from the set and closes it, dropping what was shelved with it. Under mu. */
static void close_idle(jg_conns_t *c, int fd)
{
    void *shelved = unshelve(c, fd);
    if (shelved && c->drop)
        c->drop(shelved);
    c->conn[fd].state = CONN_NONE;
    c->conn[fd].began = 0;
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* Puts fd in the set, armed, with its request's start (began; 0: between requests) and what was
 * read of it (shelved, NULL). Returns 0, or -1 when it is not watched (stopping, or epoll
 * failed): then fd is closed, unless it carries a shelved request (the caller keeps both). */
static int watch_idle(jg_conns_t *c, int fd, int64_t began, void *shelved, size_t bytes)
{
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->stopping) && shelved == NULL) {
        pthread_mutex_unlock(&c->mu);
        close(fd);
        return -1;
    }
    conn_room(c, fd);
    conn_t *k = &c->conn[fd];
    /* Re-arm it where it still is (one syscall); a closed fd left the set by itself, so a
     * BUSY mark may belong to an earlier connection with this number: then add it anew. */
    uint32_t events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    int rc = -1;
    if (k->state == CONN_BUSY)
        rc = set_add(c, fd, (uint64_t)fd, events, EPOLL_CTL_MOD);
    if (rc != 0)
        rc = set_add(c, fd, (uint64_t)fd, events, EPOLL_CTL_ADD);
    if (rc == 0) {
        k->state = CONN_IDLE;
        k->began = began;
        k->shelved = shelved;
        k->shelved_bytes = bytes;
        if (shelved) {
            c->shelf_bytes += bytes;
            c->nshelved++;
        }
    } else {
        k->state = CONN_NONE;
        if (shelved == NULL)
            close(fd);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void jg_conns_idle(jg_conns_t *c, int fd) { watch_idle(c, fd, 0, NULL, 0); }

int jg_conns_shelve(jg_conns_t *c, int thread, int fd, void *shelved, size_t bytes)
{
    pthread_mutex_lock(&c->mu);
    int room = !atomic_load(&c->stopping) && (size_t)fd < c->conn_cap &&
               c->shelf_bytes + bytes <= JG_CONNS_SHELF_BYTES;
    int64_t began = room ? c->conn[fd].began : 0;
    if (room && thread >= 0 && thread < c->nreaders && c->readers[thread].fd == fd)
        c->readers[thread] = (reader_t){-1, 0, 0};   /* no longer this thread's read */
    pthread_mutex_unlock(&c->mu);
    if (!room)
        return -1;
    return watch_idle(c, fd, began, shelved, bytes);
}

/* The thread reads fd's request, which began at began (0: now; -1: when fd's began), and must
 * be whole by then plus --read-timeout. Returns fd. */
static int start_reading(jg_conns_t *c, int thread, int fd, int64_t began)
{
    pthread_mutex_lock(&c->mu);
    conn_room(c, fd);
    if (began < 0)
        began = c->conn[fd].began;
    if (began == 0)
        began = jg_monotonic_ms();
    c->conn[fd].began = began;
    if (thread >= 0 && thread < c->nreaders)
        c->readers[thread] = (reader_t){fd, began + timeout_ms(c), 0};
    pthread_mutex_unlock(&c->mu);
    return fd;
}

void jg_conns_reading(jg_conns_t *c, int thread, int fd) { start_reading(c, thread, fd, -1); }

void jg_conns_read_done(jg_conns_t *c, int thread)
{
    pthread_mutex_lock(&c->mu);
    if (thread >= 0 && thread < c->nreaders) {
        reader_t *r = &c->readers[thread];
        if (r->fd >= 0 && (size_t)r->fd < c->conn_cap)
            c->conn[r->fd].began = 0;   /* the next request on it begins when it comes */
        r->fd = -1;
    }
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
    watch_idle(c, fd, now, NULL, 0);   /* nothing yet: no thread waits for it */
    return -1;
}

/* What one event of the set gives the thread: a connection's fd to read (>= 0) with what was
 * shelved of its request (*shelved), nothing (-1), or the stop (-2). */
static int take_event(jg_conns_t *c, int thread, const struct epoll_event *ev, void **shelved)
{
    *shelved = NULL;
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
    int64_t began = 0;
    pthread_mutex_lock(&c->mu);
    mine = (size_t)fd < c->conn_cap && c->conn[fd].state == CONN_IDLE;
    if (mine) {
        c->conn[fd].state = CONN_BUSY;   /* stays in the set, disarmed (EPOLLONESHOT) */
        began = c->conn[fd].began;
        *shelved = unshelve(c, fd);
    }
    pthread_mutex_unlock(&c->mu);
    if (mine)   /* the request (its next bytes), or EOF: the thread's read tells, and closes it */
        return start_reading(c, thread, fd, began);
    return -1;
}

int jg_conns_next(jg_conns_t *c, int thread, void **shelved)
{
    int fd;
    jg_conns_next_many(c, thread, &fd, shelved, 1);
    return fd;
}

int jg_conns_next_many(jg_conns_t *c, int thread, int *fds, void **shelved, int max)
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
            int fd = take_event(c, thread, &ev[i], &shelved[got]);
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

#define LATE "closing a connection that did not deliver its request in time"

void jg_conns_watch(jg_conns_t *c, int64_t now)
{
    int64_t limit = timeout_ms(c);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->nreaders; i++) {
        reader_t *r = &c->readers[i];
        if (r->fd >= 0 && !r->fired && now >= r->deadline) {
            /* the thread blocked in read() gets EOF, gives the request up and closes it */
            shutdown(r->fd, SHUT_RDWR);
            r->fired = 1;
            jg_log_warn(LATE, NULL);
        }
    }
    for (size_t fd = 0; fd < c->conn_cap; fd++) {
        conn_t *k = &c->conn[fd];
        if (k->state == CONN_IDLE && k->began && now - k->began >= limit) {
            if (k->shelved)   /* a fresh connection that never sent is closed quietly */
                jg_log_warn(LATE, NULL);
            close_idle(c, (int)fd);
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
    /* idle connections are closed (nginx then opens new ones elsewhere); those with a request
     * partly read stay, and the threads with them, until it is whole or --read-timeout */
    for (size_t fd = 0; fd < c->conn_cap; fd++)
        if (c->conn[fd].state == CONN_IDLE && c->conn[fd].shelved == NULL)
            close_idle(c, (int)fd);
    send_stop(c);
    pthread_mutex_unlock(&c->mu);
}

void jg_conns_on_drop(jg_conns_t *c, void (*drop)(void *shelved)) { c->drop = drop; }
