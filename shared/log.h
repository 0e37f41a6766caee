/* log.h — one logfmt line per event on stderr:
 *   ts=2026-11-22T14:45:30.123Z level=info prog=jobgate-submit msg="job queued" job=... queue=...
 * Never pass a secret (Redis password, token) to these functions. */
#ifndef JG_LOG_H
#define JG_LOG_H

void jg_log_init(const char *prog);   /* prog appears as prog=...; call once at start */
const char *jg_log_prog(void);

/* kv is a list of key, value string pairs ended by NULL: jg_log_info("job queued", "job", id, NULL).
 * Values are quoted when they contain spaces, quotes or '='. Thread-safe (one write per line,
 * or per held batch of lines: below). */
void jg_log_info(const char *msg, ...) __attribute__((sentinel));
void jg_log_warn(const char *msg, ...) __attribute__((sentinel));
void jg_log_error(const char *msg, ...) __attribute__((sentinel));

/* A thread that answers several requests in one go (server.c's batches) holds its lines from
 * jg_log_hold, up to PIPE_BUF (4 KB: one write that no other thread's splits), and writes them
 * in one write at jg_log_flush (still holding) or jg_log_release (no longer): a write less per
 * request. A line is never held past the batch that logged it. */
void jg_log_hold(void);
void jg_log_flush(void);
void jg_log_release(void);

#endif
