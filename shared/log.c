/* log.c — logfmt lines on stderr (see log.h). */
#include "log.h"
#include "buf.h"
#include "timefmt.h"

#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static const char *log_prog = "jobgate";

/* A request thread serving a batch holds its lines (jg_log_hold) and writes them together, at
 * most PIPE_BUF bytes a write: a write that size to a pipe (stderr under systemd, say) is never
 * interleaved with another thread's, so lines stay whole. */
#define HOLD_MAX PIPE_BUF
static __thread char held[HOLD_MAX];
static __thread size_t held_len;
static __thread int holding;

static void emit(const char *p, size_t n)
{
    ssize_t ignored = write(STDERR_FILENO, p, n);
    (void)ignored;
}

void jg_log_hold(void) { holding = 1; }

void jg_log_flush(void)
{
    if (held_len)
        emit(held, held_len);
    held_len = 0;
}

void jg_log_release(void)
{
    jg_log_flush();
    holding = 0;
}

void jg_log_init(const char *prog) { log_prog = prog; }
const char *jg_log_prog(void) { return log_prog; }

static void put_value(jg_buf_t *b, const char *v)
{
    if (v[0] != '\0' && strpbrk(v, " \"=\\\n\t") == NULL) {
        jg_buf_puts(b, v);
        return;
    }
    jg_buf_json_string(b, v, strlen(v));
}

static void log_line(const char *level, const char *msg, va_list ap)
{
    char ts[32];
    jg_time_format(jg_now_ms(), ts);
    jg_buf_t b = JG_BUF_INIT;   /* no printf: a submit logs a line per job */
    jg_buf_puts(&b, "ts=");
    jg_buf_puts(&b, ts);
    jg_buf_puts(&b, " level=");
    jg_buf_puts(&b, level);
    jg_buf_puts(&b, " prog=");
    jg_buf_puts(&b, log_prog);
    jg_buf_puts(&b, " msg=");
    put_value(&b, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        jg_buf_putc(&b, ' ');
        jg_buf_puts(&b, k);
        jg_buf_putc(&b, '=');
        put_value(&b, v ? v : "");
    }
    jg_buf_putc(&b, '\n');
    if (holding && b.len <= HOLD_MAX) {
        if (held_len + b.len > HOLD_MAX)
            jg_log_flush();
        memcpy(held + held_len, b.data, b.len);
        held_len += b.len;
    } else {
        jg_log_flush();   /* (in order) */
        emit(b.data, b.len);
    }
    jg_buf_free(&b);
}

#define DEFINE_LEVEL(fn, level)            \
    void fn(const char *msg, ...)          \
    {                                      \
        va_list ap;                        \
        va_start(ap, msg);                 \
        log_line(level, msg, ap);          \
        va_end(ap);                        \
    }

DEFINE_LEVEL(jg_log_info, "info")
DEFINE_LEVEL(jg_log_warn, "warn")
DEFINE_LEVEL(jg_log_error, "error")
