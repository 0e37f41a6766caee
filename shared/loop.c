/* loop.c — the event loop thread and the one owner of parked requests: it takes them from the
 * request threads, writes their bytes, notices their clients leaving, frees them (and only
 * it); it also hands pub/sub messages to the program and reads SIGTERM (see loop.h). */
#include "loop.h"
#include "conns.h"
#include "events.h"
#include "fcgi.h"
#include "jg.h"
#include "log.h"
#include "timefmt.h"
#include "buf.h"
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SEND_TIMEOUT_S 10            /* a write that makes no progress this long fails */
#define MAX_PENDING_OUT (4u << 20)   /* a client still this far behind after a write is dropped */

/* What an epoll registration points at: the first member of each registered object. */
enum kind { K_WAKE, K_SIGNAL, K_PARKED };
typedef struct tagged {
    enum kind kind;
    int fd;
} tagged_t;

struct jg_parked_io {
    tagged_t tag;              /* K_PARKED */
    int request_id;
    int keep_conn;
    int raw;                   /* plain bytes, no FastCGI records (CGI) */
    int in_epoll;
    int want_out;
    int ending;                /* END_REQUEST queued: finish once flushed */
    int retired;               /* done or gone: freed at the end of this loop iteration */
    int reuse;                 /* retired with the request complete: keep the connection */
    size_t tail;               /* > 0: the rest of a request thread's answer, this many bytes
                                  (jg_loop_finish): no program data, no ops */
    int64_t progress_at;       /* monotonic ms: last write progress, or when bytes were queued */
    jg_buf_t out;
    size_t out_off;
    jg_parked_t pub;
    struct jg_parked_io *prev, *next;
    struct jg_parked_io *reap_next;
};
typedef struct jg_parked_io parked_io_t;

/* What threads and the subscriber hand to the loop. */
typedef struct inbox_item {
    enum { IN_PARK, IN_TAIL, IN_MESSAGE, IN_RESYNC } what;
    int fd, request_id, keep_conn, raw;
    void *data;
    size_t len;
    struct inbox_item *next;
    char msg[];                /* IN_MESSAGE: the message; IN_RESYNC: the channel */
} inbox_item_t;

struct jg_loop {
    const jg_config_t *cfg;
    const jg_park_ops_t *ops;
    int epfd;                  /* the loop thread's: parked requests, inbox, signals */
    tagged_t wake, sig;
    jg_redis_t redis;

    jg_conns_t *conns;         /* the request threads' connections; NULL: plain CGI */

    pthread_mutex_t mu;        /* guards threads and the inbox */
    int threads;               /* request threads still running */
    inbox_item_t *inbox, *inbox_tail;

    atomic_int stopping;
    atomic_size_t nparked;     /* parked (answers' rests too) + on their way through the inbox */
    atomic_size_t tail_bytes;  /* answers' rest held for jg_loop_finish, JG_LOOP_TAIL_BYTES at most */
    size_t max_parked;         /* --max-streams, or less if the fd limit allows less */
    atomic_uint_fast64_t msg_seq;
    int64_t grace_deadline;
    int drained;
    parked_io_t *parked;       /* loop thread only */
    parked_io_t *reap;         /* retired, freed at the end of the iteration (loop thread) */
    int64_t stall_check_at;
    jg_subscriber_t *subscriber;
};

static void set_nonblocking(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static void wake_loop(jg_loop_t *loop)
{
    uint64_t one = 1;
    ssize_t ignored = write(loop->wake.fd, &one, sizeof one);
    (void)ignored;
}

static void inbox_push(jg_loop_t *loop, inbox_item_t *it)
{
    it->next = NULL;
    pthread_mutex_lock(&loop->mu);
    if (loop->inbox_tail)
        loop->inbox_tail->next = it;
    else
        loop->inbox = it;
    loop->inbox_tail = it;
    pthread_mutex_unlock(&loop->mu);
    wake_loop(loop);
}

/* Subscriber thread -> loop. */
static void on_subscriber(void *ctx, const char *channel, const char *msg, size_t len,
                          int resync)
{
    jg_loop_t *loop = ctx;
    if (resync) {
        msg = channel;
        len = strlen(channel);
    }
    inbox_item_t *it = malloc(sizeof *it + len + 1);
    if (it == NULL)
        abort();
    memset(it, 0, sizeof *it);
    it->what = resync ? IN_RESYNC : IN_MESSAGE;
    it->len = len;
    if (len)
        memcpy(it->msg, msg, len);
    it->msg[len] = '\0';
    inbox_push(loop, it);
}

static int epoll_add(jg_loop_t *loop, tagged_t *t, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = t};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, t->fd, &ev);
}

/* Every parked request holds a descriptor. A soft fd limit of 1024 (a common default) would
 * stop accepting far below --max-streams: raise it toward the hard limit, and when even that is
 * too low, park no more than it leaves room for (beyond that, a stream ends after its backlog
 * and a long poll is answered at once), so that plain requests can still be accepted. */
#define FD_RESERVE(cfg) (4 * (size_t)(cfg)->threads + 256)   /* connections, Redis, our own */
static size_t parking_room(const jg_config_t *cfg)
{
    size_t want = (size_t)cfg->max_streams + FD_RESERVE(cfg);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= want)
        return (size_t)cfg->max_streams;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = old;
    if (rl.rlim_cur >= want)
        return (size_t)cfg->max_streams;
    size_t room = rl.rlim_cur > FD_RESERVE(cfg) ? rl.rlim_cur - FD_RESERVE(cfg) : 0;
    char limit[32], streams[32], max[32];
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)rl.rlim_cur);
    snprintf(streams, sizeof streams, "%zu", room);
    snprintf(max, sizeof max, "%ld", cfg->max_streams);
    jg_log_warn("the fd limit (ulimit -n) is below --max-streams: parking fewer", "nofile", limit,
                "max_parked", streams, "max_streams", max, NULL);
    return room;
}

jg_loop_t *jg_loop_new(const jg_config_t *cfg, int listen_fd, const jg_park_ops_t *ops)
{
    jg_loop_t *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->cfg = cfg;
    loop->ops = ops;
    /* plain CGI parks one request at most */
    loop->max_parked = listen_fd >= 0 ? parking_room(cfg) : (size_t)cfg->max_streams;
    pthread_mutex_init(&loop->mu, NULL);
    jg_redis_init(&loop->redis, cfg, 2000);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake = (tagged_t){K_WAKE, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    loop->sig = (tagged_t){K_SIGNAL, signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)};
    if (loop->epfd < 0 || loop->wake.fd < 0 || loop->sig.fd < 0 ||
        epoll_add(loop, &loop->wake, EPOLLIN) || epoll_add(loop, &loop->sig, EPOLLIN)) {
        jg_log_error("event loop setup failed", "error", strerror(errno), NULL);
        return NULL;
    }
    if (listen_fd >= 0 && (loop->conns = jg_conns_new(cfg, listen_fd)) == NULL)
        return NULL;
    if (ops && ops->events) {
        loop->subscriber = jg_subscriber_start(cfg, on_subscriber, loop);
        if (loop->subscriber == NULL)
            return NULL;
    }
    return loop;
}

void jg_loop_thread_started(jg_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    loop->threads++;
    pthread_mutex_unlock(&loop->mu);
}

void jg_loop_thread_done(jg_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    loop->threads--;
    pthread_mutex_unlock(&loop->mu);
    wake_loop(loop);
}

int jg_loop_can_park(jg_loop_t *loop)
{
    return atomic_load(&loop->nparked) < loop->max_parked &&
           !atomic_load(&loop->stopping);
}

/* Hands a request thread's connection to the loop (IN_PARK, IN_TAIL). */
static void push_conn(jg_loop_t *loop, int what, int fd, int request_id, int keep_conn, int raw,
                      void *data, size_t len)
{
    inbox_item_t *it = calloc(1, sizeof *it);
    if (it == NULL)
        abort();
    it->what = what;
    it->fd = fd;
    it->request_id = request_id;
    it->keep_conn = keep_conn;
    it->raw = raw;
    it->data = data;
    it->len = len;
    inbox_push(loop, it);
}

void jg_loop_park(jg_loop_t *loop, int fd, int request_id, int keep_conn, int raw, void *data)
{
    atomic_fetch_add(&loop->nparked, 1);
    push_conn(loop, IN_PARK, fd, request_id, keep_conn, raw, data, 0);
}

int jg_loop_finish(jg_loop_t *loop, int fd, int keep_conn, const char *bytes, size_t len)
{
    if (len == 0)
        return -1;
    if (atomic_fetch_add(&loop->nparked, 1) >= loop->max_parked) {
        atomic_fetch_sub(&loop->nparked, 1);
        return -1;
    }
    if (atomic_fetch_add(&loop->tail_bytes, len) + len > JG_LOOP_TAIL_BYTES) {
        atomic_fetch_sub(&loop->tail_bytes, len);
        atomic_fetch_sub(&loop->nparked, 1);
        return -1;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, bytes, len);
    copy[len] = '\0';   /* a jg_buf's data is NUL-terminated */
    push_conn(loop, IN_TAIL, fd, 0, keep_conn, 0, copy, len);
    return 0;
}

static void watch(jg_loop_t *loop, const char *id, int on)
{
    char channel[JG_KEY_MAX];
    if (loop->subscriber == NULL || strlen(id) < JG_TAG_LEN)
        return;
    jg_chan_events(loop->cfg, id, channel);
    if (on)
        jg_subscriber_want(loop->subscriber, channel);
    else
        jg_subscriber_unwant(loop->subscriber, channel);
}

void jg_loop_watch(jg_loop_t *loop, const char *id) { watch(loop, id, 1); }
void jg_loop_unwatch(jg_loop_t *loop, const char *id) { watch(loop, id, 0); }

uint64_t jg_loop_message_seq(jg_loop_t *loop) { return atomic_load(&loop->msg_seq); }
jg_redis_t *jg_loop_redis(jg_loop_t *loop) { return &loop->redis; }
const jg_config_t *jg_loop_config(jg_loop_t *loop) { return loop->cfg; }
int jg_loop_drained(jg_loop_t *loop) { return loop->drained; }
jg_conns_t *jg_loop_conns(jg_loop_t *loop) { return loop->conns; }

/* --- parked requests --- */

static void io_unlink(jg_loop_t *loop, parked_io_t *io)
{
    if (io->prev)
        io->prev->next = io->next;
    else
        loop->parked = io->next;
    if (io->next)
        io->next->prev = io->prev;
    io->prev = io->next = NULL;
    atomic_fetch_sub(&loop->nparked, 1);
}

/* Ends io's life: it leaves epoll now (no more events) and is freed by reap() at the end of
 * the loop iteration, so that a handler still holding p (or its data) never sees freed memory.
 * reuse: the request completed, the connection may carry the next one. */
static void io_retire(jg_loop_t *loop, parked_io_t *io, int reuse)
{
    if (io->retired)
        return;
    io->retired = 1;
    io->reuse = reuse;
    if (io->in_epoll) {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->tag.fd, NULL);
        io->in_epoll = 0;
    }
    io->reap_next = loop->reap;
    loop->reap = io;
}

/* Frees the retired: ops->gone, then the connection is closed, or watched for its next request
 * when kept alive. Runs at the end of each loop iteration, outside every handler callback. */
static void reap(jg_loop_t *loop)
{
    while (loop->reap) {
        parked_io_t *io = loop->reap;
        loop->reap = io->reap_next;
        if (io->tail)
            atomic_fetch_sub(&loop->tail_bytes, io->tail);
        else if (loop->ops && loop->ops->gone)
            loop->ops->gone(loop, &io->pub);   /* may retire others: they join the list */
        io_unlink(loop, io);
        if (io->reuse && io->keep_conn && !io->raw) {
            jg_conns_idle(loop->conns, io->tag.fd);   /* still blocking: see io_flush */
        } else if (io->raw) {
            fsync(io->tag.fd);
        } else {
            close(io->tag.fd);
        }
        jg_buf_free(&io->out);
        free(io);
    }
}

static void io_update_events(jg_loop_t *loop, parked_io_t *io, int want_out)
{
    if (!io->in_epoll || io->want_out == want_out)
        return;
    io->want_out = want_out;
    uint32_t events = (io->raw ? 0 : EPOLLIN | EPOLLRDHUP) | (want_out ? EPOLLOUT : 0);
    struct epoll_event ev = {.events = events, .data.ptr = &io->tag};
    epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->tag.fd, &ev);
}

static size_t io_unsent(const parked_io_t *io) { return io->out.len - io->out_off; }

/* Writes what is queued. Returns 0, or -1 when io retired (its request done, or the client
 * gone). */
static int io_flush(jg_loop_t *loop, parked_io_t *io)
{
    while (io->out_off < io->out.len) {
        /* A parked connection stays a blocking socket (the request threads' reads
         * and writes it when it is kept alive); the loop's own writes do not block
         * (MSG_DONTWAIT): no fcntl() to switch it at parking and back at the end. */
        const char *at = io->out.data + io->out_off;
        size_t len = io->out.len - io->out_off;
        ssize_t n = io->raw ? write(io->tag.fd, at, len)
                            : send(io->tag.fd, at, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            io_update_events(loop, io, 1);
            return 0;
        }
        if (n <= 0) {
            io_retire(loop, io, 0);   /* the client (or nginx) went away */
            return -1;
        }
        io->out_off += (size_t)n;
        io->progress_at = jg_monotonic_ms();
    }
    jg_buf_reset(&io->out);
    io->out_off = 0;
    io_update_events(loop, io, 0);
    if (io->ending) {
        io_retire(loop, io, 1);
        return -1;
    }
    return 0;
}

/* Queues bytes (as FastCGI stdout records, or raw) behind what io still has unsent, without
 * writing them yet. Returns 0, or -1 when io retired (or is dropped now: a client that does not
 * read). */
static int io_queue(jg_loop_t *loop, parked_io_t *io, const char *bytes, size_t len)
{
    /* What was queued before is written first; a client still far behind after that does not
     * read. The new bytes are never refused for their own size: an answer of any size is
     * delivered to a client that reads it. */
    if (io_unsent(io) && io_flush(loop, io) < 0)
        return -1;
    if (io_unsent(io) > MAX_PENDING_OUT) {
        jg_log_warn("dropping a client that does not read", NULL);
        io_retire(loop, io, 0);
        return -1;
    }
    if (io_unsent(io) == 0)
        io->progress_at = jg_monotonic_ms();
    if (io->out_off) {   /* drop what was written, so a stream's buffer holds only the unsent */
        size_t unsent = io_unsent(io);
        memmove(io->out.data, io->out.data + io->out_off, unsent);
        io->out.len = unsent;
        io->out.data[unsent] = '\0';
        io->out_off = 0;
    }
    if (io->raw)
        jg_buf_append(&io->out, bytes, len);
    else
        jg_fcgi_put_stdout(&io->out, io->request_id, bytes, len);
    return 0;
}

/* The usual case of a live stream: nothing queued, one record's worth. The record goes out
 * straight from the caller's bytes (its header from the stack: one sendmsg, no copy, no
 * buffer), and only what the socket does not take is queued. Returns 0 or -1 as
 * jg_parked_send, or 1 when it does not apply (the caller queues as usual). */
static int io_send_direct(jg_loop_t *loop, parked_io_t *io, const char *bytes, size_t len)
{
    if (io->raw || io_unsent(io) || len == 0 || len > JG_FCGI_MAX_CONTENT)
        return 1;
    unsigned char h[JG_FCGI_HEADER_LEN];
    jg_fcgi_stdout_header(h, io->request_id, len);
    struct iovec iov[2] = {{h, sizeof h}, {(void *)bytes, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n;
    do
        n = sendmsg(io->tag.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        io_retire(loop, io, 0);   /* the client (or nginx) went away */
        return -1;
    }
    size_t sent = n < 0 ? 0 : (size_t)n;
    io->progress_at = jg_monotonic_ms();
    if (sent == sizeof h + len)
        return 0;
    /* the rest waits in the queue for EPOLLOUT, as io_flush leaves it */
    jg_buf_reset(&io->out);
    io->out_off = 0;
    if (sent < sizeof h)
        jg_buf_append(&io->out, h + sent, sizeof h - sent);
    size_t from = sent > sizeof h ? sent - sizeof h : 0;
    jg_buf_append(&io->out, bytes + from, len - from);
    io_update_events(loop, io, 1);
    return 0;
}

int jg_parked_send(jg_loop_t *loop, jg_parked_t *p, const char *bytes, size_t len)
{
    parked_io_t *io = p->io;
    if (io->retired)
        return -1;
    if (io->ending)
        return 0;
    int rc = io_send_direct(loop, io, bytes, len);
    if (rc <= 0)
        return rc;
    if (io_queue(loop, io, bytes, len) < 0)
        return -1;
    return io_flush(loop, io);
}

/* Queues the request's end (FastCGI: an empty stdout record and END_REQUEST); io retires
 * once it is written. */
static void io_queue_end(parked_io_t *io)
{
    if (!io->raw)
        jg_fcgi_put_end(&io->out, io->request_id);
    if (io_unsent(io) == 0)
        io->progress_at = jg_monotonic_ms();
    io->ending = 1;
}

void jg_parked_end(jg_loop_t *loop, jg_parked_t *p)
{
    parked_io_t *io = p->io;
    if (io->ending || io->retired)
        return;
    io_queue_end(io);
    io_flush(loop, io);
}

/* The answer and the end go out in one write: one wake-up of nginx, not two. */
void jg_parked_answer(jg_loop_t *loop, jg_parked_t *p, const char *bytes, size_t len)
{
    parked_io_t *io = p->io;
    if (io->ending || io->retired)
        return;
    if (io_queue(loop, io, bytes, len) < 0)
        return;
    io_queue_end(io);
    io_flush(loop, io);
}

int jg_parked_alive(const jg_parked_t *p) { return !p->io->retired && !p->io->ending; }

size_t jg_parked_unsent(const jg_parked_t *p) { return io_unsent(p->io); }

/* Once a second: a client with bytes queued that took none for SEND_TIMEOUT_S is dropped;
 * and the request threads' connections are watched (jg_conns_watch). */
static void watch_clients(jg_loop_t *loop, int64_t now)
{
    if (now < loop->stall_check_at)
        return;
    loop->stall_check_at = now + 1000;
    if (loop->conns)
        jg_conns_watch(loop->conns, now);   /* and requests that take too long to arrive */
    for (parked_io_t *io = loop->parked; io; io = io->next) {
        if (!io->retired && io_unsent(io) && now - io->progress_at > SEND_TIMEOUT_S * 1000) {
            jg_log_warn("dropping a client that stopped reading", NULL);
            io_retire(loop, io, 0);
        }
    }
}

static parked_io_t *take_io(jg_loop_t *loop, inbox_item_t *it)
{
    parked_io_t *io = calloc(1, sizeof *io);
    if (io == NULL)
        abort();
    io->tag = (tagged_t){K_PARKED, it->fd};
    io->request_id = it->request_id;
    io->keep_conn = it->keep_conn;
    io->raw = it->raw;
    io->pub.parked_at = jg_monotonic_ms();
    io->pub.io = io;
    io->next = loop->parked;
    if (loop->parked)
        loop->parked->prev = io;
    loop->parked = io;
    /* A CGI stdout that epoll cannot watch (a regular file) is written blocking. */
    if (epoll_add(loop, &io->tag, io->raw ? 0 : EPOLLIN | EPOLLRDHUP) == 0) {
        io->in_epoll = 1;
        if (io->raw)
            set_nonblocking(io->tag.fd, 1);
    }
    return io;
}

static void take_parked(jg_loop_t *loop, inbox_item_t *it)
{
    parked_io_t *io = take_io(loop, it);
    io->pub.data = it->data;
    if (loop->ops && loop->ops->parked)
        loop->ops->parked(loop, &io->pub);
}

/* The rest of an answer (jg_loop_finish): its bytes, END_REQUEST included, become the queue. */
static void take_tail(jg_loop_t *loop, inbox_item_t *it)
{
    parked_io_t *io = take_io(loop, it);
    io->tail = it->len;
    io->out = (jg_buf_t){it->data, it->len, it->len + 1};
    io->ending = 1;
    io->progress_at = io->pub.parked_at;
    io_flush(loop, io);
}

/* Anything nginx sends on a parked request's connection means it is done with it: EOF when
 * the browser left, or an FCGI_ABORT_REQUEST. */
static void parked_event(jg_loop_t *loop, parked_io_t *io, uint32_t events)
{
    if (io->retired)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        io_retire(loop, io, 0);
        return;
    }
    if ((events & EPOLLOUT) && io_flush(loop, io) == 0 && !io->ending &&
        io_unsent(io) <= JG_PARKED_LOW_WATER && loop->ops && loop->ops->writable)
        loop->ops->writable(loop, &io->pub);   /* the client took most: produce more */
}

/* --- the loop --- */

static void begin_shutdown(jg_loop_t *loop)
{
    if (atomic_exchange(&loop->stopping, 1))
        return;
    jg_log_info("stopping: no new connections, finishing requests in flight", NULL);
    loop->grace_deadline = jg_monotonic_ms() + (int64_t)(loop->cfg->grace * 1000);
    if (loop->conns)
        jg_conns_stop(loop->conns);
    if (loop->ops && loop->ops->shutdown)
        loop->ops->shutdown(loop);
}

static void drain_inbox(jg_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    inbox_item_t *it = loop->inbox;
    loop->inbox = loop->inbox_tail = NULL;
    pthread_mutex_unlock(&loop->mu);
    while (it) {
        inbox_item_t *next = it->next;
        switch (it->what) {
        case IN_PARK:
            take_parked(loop, it);
            break;
        case IN_TAIL:
            take_tail(loop, it);
            break;
        case IN_MESSAGE:
            atomic_fetch_add(&loop->msg_seq, 1);
            if (loop->ops && loop->ops->message)
                loop->ops->message(loop, it->msg, it->len);
            break;
        case IN_RESYNC:
            atomic_fetch_add(&loop->msg_seq, 1);
            if (loop->ops && loop->ops->resync) {
                const char *tag = strchr(it->msg, '{');   /* "<prefix>:{<tag>}:events" */
                if (tag && strlen(tag + 1) > JG_TAG_LEN && tag[1 + JG_TAG_LEN] == '}') {
                    char t[JG_TAG_LEN + 1];
                    memcpy(t, tag + 1, JG_TAG_LEN);
                    t[JG_TAG_LEN] = '\0';
                    loop->ops->resync(loop, t);
                }
            }
            break;
        }
        free(it);
        it = next;
    }
    if (atomic_load(&loop->stopping) && loop->ops && loop->ops->shutdown && loop->parked)
        loop->ops->shutdown(loop);   /* parked after SIGTERM came: end them too */
}

static int finished(jg_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    int busy = loop->threads > 0 || loop->inbox != NULL;
    pthread_mutex_unlock(&loop->mu);
    return !busy && atomic_load(&loop->nparked) == 0;
}

void jg_loop_run(jg_loop_t *loop)
{
    struct epoll_event events[256];
    for (;;) {
        int64_t now = jg_monotonic_ms();
        int64_t timeout = 1000;
        if (loop->ops && loop->ops->timers) {
            int64_t next = loop->ops->timers(loop, now);
            if (next >= 0 && next - now < timeout)
                timeout = next > now ? next - now : 0;
        }
        if (atomic_load(&loop->stopping)) {
            if (finished(loop)) {
                loop->drained = 1;
                return;
            }
            if (now >= loop->grace_deadline) {
                jg_log_warn("grace period over, exiting with work unfinished", NULL);
                return;
            }
            if (timeout > 20)
                timeout = 20;
        } else if (loop->conns == NULL && finished(loop)) {
            loop->drained = 1;   /* plain CGI: the one parked request has ended */
            return;
        }
        int n = epoll_wait(loop->epfd, events, JG_ARRAY_LEN(events), (int)timeout);
        for (int i = 0; i < n; i++) {
            tagged_t *t = events[i].data.ptr;
            switch (t->kind) {
            case K_WAKE: {
                uint64_t v;
                ssize_t ignored = read(t->fd, &v, sizeof v);
                (void)ignored;
                break;
            }
            case K_SIGNAL: {
                struct signalfd_siginfo si;
                while (read(t->fd, &si, sizeof si) == (ssize_t)sizeof si)
                    ;
                begin_shutdown(loop);
                break;
            }
            case K_PARKED:
                parked_event(loop, (parked_io_t *)t, events[i].events);
                break;
            }
        }
        drain_inbox(loop);
        watch_clients(loop, jg_monotonic_ms());
        reap(loop);
    }
}

void jg_loop_free(jg_loop_t *loop)
{
    jg_subscriber_stop(loop->subscriber);
    inbox_item_t *it = loop->inbox;   /* messages that came after the end */
    while (it) {
        inbox_item_t *next = it->next;
        if (it->what == IN_TAIL)
            free(it->data);
        free(it);
        it = next;
    }
    jg_conns_free(loop->conns);
    int fds[] = {loop->epfd, loop->wake.fd, loop->sig.fd};
    for (size_t i = 0; i < JG_ARRAY_LEN(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    jg_redis_close(&loop->redis);
    pthread_mutex_destroy(&loop->mu);
    free(loop);
}
