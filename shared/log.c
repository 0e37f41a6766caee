/* log.c — logfmt lines on stderr (see log.h). */
#include "log.h"
#include "buf.h"
#include "timefmt.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static const char *log_prog = "jobgate";

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
    ssize_t ignored = write(STDERR_FILENO, b.data, b.len);
    (void)ignored;
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
