/* lines.c — output bytes to log lines (see lines.h). */
#include "lines.h"

#include <stdlib.h>
#include <string.h>

#define ELLIPSIS "\xe2\x80\xa6"   /* U+2026, 3 bytes */
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD, 3 bytes */

void jg_lines_init(jg_lines_t *l)
{
    l->len = 0;
    l->cut = 0;
}

static void emit(jg_lines_t *l, jg_line_fn fn, void *ctx)
{
    char out[JG_LINE_MAX];
    if (!l->cut && l->len > 0 && l->buf[l->len - 1] == '\r')   /* a CRLF line end */
        l->len--;
    size_t n = jg_line_clean(l->buf, l->len, l->cut, out);
    fn(ctx, out, n);
    l->len = 0;
    l->cut = 0;
}

void jg_lines_feed(jg_lines_t *l, const char *data, size_t n, jg_line_fn fn, void *ctx)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        size_t room = sizeof l->buf - l->len;
        if (take > room) {
            l->cut = 1;
            memcpy(l->buf + l->len, data, room);
            l->len = sizeof l->buf;
        } else {
            memcpy(l->buf + l->len, data, take);
            l->len += take;
        }
        if (!nl)
            return;
        emit(l, fn, ctx);
        data = nl + 1;
        n -= take + 1;
    }
}

void jg_lines_flush(jg_lines_t *l, jg_line_fn fn, void *ctx)
{
    if (l->len > 0 || l->cut)
        emit(l, fn, ctx);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t jg_line_clean(const char *in, size_t n, int cut, char out[JG_LINE_MAX])
{
    const unsigned char *s = (const unsigned char *)in;
    /* A cut line may end in the middle of a character: that tail is dropped, not repaired. */
    if (cut) {
        size_t k = n, back = 0;
        while (k > 0 && back < 3 && (s[k - 1] & 0xc0) == 0x80) {
            k--;
            back++;
        }
        if (k > 0 && s[k - 1] >= 0xc0 && utf8_seq(s + k - 1, n - k + 1) == 0)
            n = k - 1;
    }
    /* The repaired length decides whether the line must be cut at all. */
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        total += len ? len : 3;
        i += len ? len : 1;
    }
    if (total > JG_LINE_MAX)
        cut = 1;
    size_t limit = cut ? JG_LINE_MAX - 3 : JG_LINE_MAX, o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        size_t plen = len ? len : 3;
        if (o + plen > limit)
            break;
        memcpy(out + o, len ? in + i : REPLACEMENT, plen);
        o += plen;
        i += len ? len : 1;
    }
    if (cut) {
        memcpy(out + o, ELLIPSIS, 3);
        o += 3;
    }
    return o;
}

int jg_line_progress(const char *line, size_t len, int *pct)
{
    static const char tag[] = "::progress";
    size_t tl = sizeof tag - 1;
    if (len <= tl || memcmp(line, tag, tl) != 0 || (line[tl] != ' ' && line[tl] != '\t'))
        return 0;
    char num[32];
    size_t i = tl;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t start = i;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
    size_t nlen = i - start;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i != len || nlen == 0 || nlen >= sizeof num)
        return 0;
    memcpy(num, line + start, nlen);
    num[nlen] = '\0';
    /* digits, one optional '-' and one optional '.': nothing strtod would read as hex or inf */
    for (size_t k = 0; k < nlen; k++)
        if (!((num[k] >= '0' && num[k] <= '9') || num[k] == '.' || (k == 0 && num[k] == '-')))
            return 0;
    char *end;
    double v = strtod(num, &end);
    if (*end != '\0' || end == num)
        return 0;
    if (v < 0)
        v = 0;
    if (v > 100)
        v = 100;
    *pct = (int)v;
    return 1;
}
