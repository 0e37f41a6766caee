/* fcgi_records.c — fuzzes jobgate's FastCGI request parser (shared/fcgiparse.c) with a stream of
 * records as a web server (or anyone who reaches the socket) would send them. The first byte
 * picks how the stream is cut (1..32 bytes a feed, or whole) and the limits; the rest is fed
 * whole once and cut once, request after request (as a kept-alive connection carries them).
 * Properties: both feedings give the same requests (status, id, keep-conn, parameters, body,
 * bytes consumed) and the same replies; the body and the parameters stay within their limits;
 * every parameter is a "NAME=VALUE" string with a name. */
#include <string.h>

#include "buf.h"
#include "fcgiparse.h"
#include "fuzz.h"

/* Runs the parser over the stream, step bytes a feed (0: all at once), and writes what it saw
 * into log. */
static void run(const uint8_t *data, size_t size, size_t step, size_t max_params,
                size_t max_body, jg_buf_t *log)
{
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, max_params, max_body);
    jg_buf_t replies = JG_BUF_INIT;
    size_t at = 0;
    for (;;) {
        size_t n = size - at;
        if (step && n > step)
            n = step;
        size_t used = jg_fcgi_feed(&p, data + at, n);
        FUZZ_CHECK(used <= n, "consumed %zu of %zu", used, n);
        FUZZ_CHECK(p.status != JG_FCGI_MORE || used == n, "stopped at %zu of %zu with more", used,
                   n);
        at += used;
        /* replies, however the feeds cut them, as one run of bytes before each request */
        jg_buf_append(&replies, p.reply.data, p.reply.len);
        jg_buf_reset(&p.reply);
        if (p.status != JG_FCGI_MORE || at == size) {
            jg_buf_printf(log, "|replies %zu:", replies.len);
            jg_buf_append(log, replies.data, replies.len);
            jg_buf_reset(&replies);
        }
        if (p.status != JG_FCGI_MORE) {
            jg_buf_printf(log, "|status %d at %zu id %d keep %d over %d stdin %zu body %zu:",
                          (int)p.status, at, p.request_id, p.keep_conn, p.params_over,
                          p.stdin_total, p.body.len);
            if (p.status == JG_FCGI_REQUEST) {
                FUZZ_CHECK(p.body.len <= max_body, "body %zu over %zu", p.body.len, max_body);
                FUZZ_CHECK(p.body.len <= p.stdin_total, "body %zu of %zu", p.body.len,
                           p.stdin_total);
                jg_buf_append(log, p.body.data, p.body.len);
                size_t total = 0;
                for (char **e = p.envp; *e; e++) {
                    FUZZ_CHECK(strchr(*e, '=') != NULL && **e != '=', "parameter %s", *e);
                    total += strlen(*e);
                    jg_buf_printf(log, "|env %zu:", strlen(*e));
                    jg_buf_puts(log, *e);
                }
                FUZZ_CHECK(total <= max_params, "parameters %zu over %zu", total, max_params);
            }
            if (p.status == JG_FCGI_ERROR)
                break;
            jg_fcgi_parser_next(&p);
        }
        if (at == size)
            break;
    }
    jg_buf_printf(log, "|end %d", (int)p.status);
    jg_buf_free(&replies);
    jg_fcgi_parser_free(&p);
}

/* log as printable text, for the failure message (replies are binary) */
static char *printable(const jg_buf_t *log)
{
    jg_buf_t t = JG_BUF_INIT;
    for (size_t i = 0; i < log->len; i++) {
        unsigned char ch = (unsigned char)log->data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            jg_buf_putc(&t, (char)ch);
        else
            jg_buf_printf(&t, "\\x%02x", ch);
    }
    return jg_buf_steal(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + (data[0] & 31);
    size_t max_params = data[0] & 32 ? 64 : JG_FCGI_MAX_PARAMS;
    size_t max_body = data[0] & 64 ? 16 : 1 << 20;
    jg_buf_t whole = JG_BUF_INIT, cut = JG_BUF_INIT;
    run(data + 1, size - 1, 0, max_params, max_body, &whole);
    run(data + 1, size - 1, step, max_params, max_body, &cut);
    FUZZ_CHECK(whole.len == cut.len && memcmp(whole.data, cut.data, whole.len) == 0,
               "fed whole: %s\nfed %zu bytes at a time: %s", printable(&whole), step,
               printable(&cut));
    jg_buf_free(&whole);
    jg_buf_free(&cut);
    return 0;
}
