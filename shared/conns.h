/* conns.h — the request threads' connections: one shared epoll set, on which every request
 * thread waits itself, holding the listening socket and the idle FastCGI connections (fresh
 * ones that sent nothing yet, and kept-alive ones between requests). Each fd is registered
 * EPOLLONESHOT, so one thread wakes per ready fd: an idle connection never pins a thread, and
 * no other thread sits between the socket and the thread that serves it.
 *
 * A request that is not all there when a thread reads it (a slow upload, a client that
 * stalls mid-record) does not hold the thread: the thread shelves it (jg_conns_shelve) with
 * the connection, which goes back to the set, and whichever thread the next bytes wake takes
 * it up where it was. The shelf holds at most JG_CONNS_SHELF_BYTES of such requests' memory;
 * beyond that a thread reads the rest of its request itself, blocking.
 *
 * It also enforces the two FastCGI rules of a listening socket:
 *   - --read-timeout: a connection that has not delivered a whole request (FastCGI records up
 *     to the end of its body) within that many seconds of being accepted, or of its first byte
 *     when kept alive, is closed — shelved, or while a thread is blocked reading it (the loop
 *     calls jg_conns_watch once a second, which shuts the socket down under the thread);
 *   - FCGI_WEB_SERVER_ADDRS: on a TCP socket, a peer not in the list is closed at accept, as
 *     libfcgi's own accept does (ours replaces it).
 * Thread-safe, except jg_conns_new/free. */
#ifndef JG_CONNS_H
#define JG_CONNS_H

#include <stdint.h>

#include "config.h"

typedef struct jg_conns jg_conns_t;

/* listen_fd: the listening socket (made non-blocking). Returns NULL on failure (logged). */
jg_conns_t *jg_conns_new(const jg_config_t *cfg, int listen_fd);
void jg_conns_free(jg_conns_t *c);

/* Request thread number thread (0 .. --threads - 1) blocks until a connection has something to
 * read (a request, the rest of one, or EOF) and returns its fd (blocking), or -1 when stopping;
 * *shelved: what jg_conns_shelve set aside with it (the thread's now), or NULL. The thread is
 * then reading it, under --read-timeout, until jg_conns_read_done. */
int jg_conns_next(jg_conns_t *c, int thread, void **shelved);
/* The same for every connection ready on one wake: up to max (at most JG_CONNS_MANY_MAX) fds
 * in fds and shelved, returns how many (>= 1), or -1 when stopping. The thread reads them one
 * after the other: it calls jg_conns_reading before each (the read timeout follows one at a
 * time). */
#define JG_CONNS_MANY_MAX 16
int jg_conns_next_many(jg_conns_t *c, int thread, int *fds, void **shelved, int max);
/* The thread reads fd's request (or goes on with it: a kept-alive connection whose next
 * request came along with the previous one), under --read-timeout from when it began. */
void jg_conns_reading(jg_conns_t *c, int thread, int fd);
/* The thread has read its request whole (or given up on it). */
void jg_conns_read_done(jg_conns_t *c, int thread);
/* The thread's request on fd is not all there: fd goes back to the set with shelved (what was
 * read of it, bytes of memory), still under the --read-timeout of when the request began; the
 * thread that its next bytes wake gets shelved back (jg_conns_next). Returns 0, or -1 (nothing
 * done) when stopping or when the shelf would hold more than JG_CONNS_SHELF_BYTES: the thread
 * then reads the rest itself. On SIGTERM shelved requests keep their threads until they are
 * whole, or --read-timeout, or --grace. */
#define JG_CONNS_SHELF_BYTES (64u << 20)
int jg_conns_shelve(jg_conns_t *c, int thread, int fd, void *shelved, size_t bytes);
/* How to free what was shelved with a connection that the set closes (--read-timeout). */
void jg_conns_on_drop(jg_conns_t *c, void (*drop)(void *shelved));
/* A request ended on a kept-alive connection: wait for the next one in the shared set
 * (closed instead when stopping). */
void jg_conns_idle(jg_conns_t *c, int fd);
/* Closes what waited too long: idle fresh connections and reads past --read-timeout. */
void jg_conns_watch(jg_conns_t *c, int64_t now);
/* SIGTERM: closes the listening socket and the idle connections, wakes every waiting thread
 * (jg_conns_next returns -1 from now on). */
void jg_conns_stop(jg_conns_t *c);

/* Opens a listening socket (close-on-exec) as libfcgi's FCGX_OpenSocket did: "HOST:PORT" or
 * ":PORT" (all addresses) is TCP, anything else the path of a Unix socket (an old socket file
 * there is removed first). Returns the fd, or -1 with errno set. */
int jg_conns_listen(const char *spec, int backlog);
/* Was the program started as a FastCGI server, i.e. is fd 0 a listening socket (spawn-fcgi)?
 * Else it answers one plain CGI request. */
int jg_conns_fd0_listens(void);

/* Is addr (textual IPv4 or IPv6, as inet_ntop writes it) in list, a comma (or space)
 * separated list of addresses as FCGI_WEB_SERVER_ADDRS holds? An empty list allows all. */
int jg_peer_allowed(const char *list, const char *addr);

#endif
