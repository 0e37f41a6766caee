/* buf.h — a growable byte buffer, always NUL-terminated. Used for response bodies, JSON text
 * and anything else built piecewise. The owner frees it with jg_buf_free(). */
#ifndef JG_BUF_H
#define JG_BUF_H

#include <stddef.h>
#include <stdarg.h>

typedef struct jg_buf {
    char  *data;   /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
} jg_buf_t;

#define JG_BUF_INIT {NULL, 0, 0}

/* Append; these abort() on out-of-memory, like the rest of jobgate (there is no recovery path). */
void jg_buf_append(jg_buf_t *b, const void *data, size_t len);
void jg_buf_puts(jg_buf_t *b, const char *s);
void jg_buf_putc(jg_buf_t *b, char c);
void jg_buf_printf(jg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jg_buf_vprintf(jg_buf_t *b, const char *fmt, va_list ap);
/* Append s as a JSON string literal, quotes included (s is UTF-8; control chars escaped). */
void jg_buf_json_string(jg_buf_t *b, const char *s, size_t len);
void jg_buf_reset(jg_buf_t *b);          /* len = 0, keeps memory */
void jg_buf_free(jg_buf_t *b);
/* Percent-decodes src[0..n) into dst (cap bytes, NUL-terminated); '+' becomes a space when
 * plus_space (query strings). Returns the decoded length, or -1 if it does not fit, an escape
 * is malformed, or src holds or decodes to a NUL. Used for query parameters and REDIS_URL
 * credentials. */
long jg_percent_decode(char *dst, size_t cap, const char *src, size_t n, int plus_space);
/* Writes v in decimal to out (NUL-terminated, at most 20 digits and a sign); returns its
 * length. The hot paths' integer formatting, without printf. */
size_t jg_fmt_int(long long v, char out[24]);
/* Take ownership of the bytes (NUL-terminated, maybe NULL if empty); b is left empty. */
char *jg_buf_steal(jg_buf_t *b);

#endif
