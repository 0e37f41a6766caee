/* buf.c — growable byte buffer (see buf.h). */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(jg_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        abort();
    b->data = p;
    b->cap = cap;
}

void jg_buf_append(jg_buf_t *b, const void *data, size_t len)
{
    reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void jg_buf_puts(jg_buf_t *b, const char *s) { jg_buf_append(b, s, strlen(s)); }
void jg_buf_putc(jg_buf_t *b, char c) { jg_buf_append(b, &c, 1); }

void jg_buf_vprintf(jg_buf_t *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

size_t jg_fmt_int(long long v, char out[24])
{
    char tmp[24];
    size_t n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void jg_buf_printf(jg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jg_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void jg_buf_json_string(jg_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    reserve(b, len + 2);
    jg_buf_putc(b, '"');
    size_t run = 0;   /* start of the pending run of bytes that need no escaping */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jg_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':  jg_buf_puts(b, "\\\""); break;
        case '\\': jg_buf_puts(b, "\\\\"); break;
        case '\n': jg_buf_puts(b, "\\n"); break;
        case '\r': jg_buf_puts(b, "\\r"); break;
        case '\t': jg_buf_puts(b, "\\t"); break;
        case '\b': jg_buf_puts(b, "\\b"); break;
        case '\f': jg_buf_puts(b, "\\f"); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jg_buf_append(b, esc, 6);
        }
        }
    }
    jg_buf_append(b, s + run, len - run);
    jg_buf_putc(b, '"');
}

void jg_buf_reset(jg_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void jg_buf_free(jg_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *jg_buf_steal(jg_buf_t *b)
{
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long jg_percent_decode(char *dst, size_t cap, const char *src, size_t n, int plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\0')
            return -1;   /* a raw NUL would cut the output as surely as a %00 */
        if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hexval(src[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(src[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = c;
    }
    if (cap == 0)
        return -1;
    dst[o] = '\0';
    return (long)o;
}
