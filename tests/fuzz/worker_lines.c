/* worker_lines.c — fuzzes the worker's reading of a job's output (worker/lines.c): bytes cut
 * into lines (jg_lines_feed in chunks whose sizes come from the input, jg_lines_flush), each line
 * repaired and cut at 16 KiB (jg_line_clean) and read for "::progress N" (jg_line_progress).
 * The first byte may ask for the input to be repeated to reach past 16 KiB. Properties: every
 * line is valid UTF-8 with no '\n' and at most JG_LINE_MAX bytes, a cut one ends in "…";
 * progress is 0..100. */
#include <string.h>

#include "fuzz.h"
#include "lines.h"

/* Where s[0..n) stops being UTF-8 (n if it is), by the code point ranges (no overlongs, no
 * surrogates, nothing above U+10FFFF): written apart from the worker's own check on purpose. */
static size_t utf8_error(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                                            : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return i;
        unsigned long cp = len == 1 ? c : c & (0x7F >> len);
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        static const unsigned long min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

static void on_line(void *ctx, const char *line, size_t len)
{
    (*(size_t *)ctx)++;
    FUZZ_CHECK(len <= JG_LINE_MAX, "a line of %zu bytes", len);
    FUZZ_CHECK(memchr(line, '\n', len) == NULL, "a newline inside a line");
    size_t bad = utf8_error(line, len);
    FUZZ_CHECK(bad == len, "line is not UTF-8 at byte %zu of %zu", bad, len);
    int pct = -1;
    if (jg_line_progress(line, len, &pct))
        FUZZ_CHECK(pct >= 0 && pct <= 100, "progress %d", pct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* odd first byte: the input repeated to past 16 KiB (lines cut there); even: as it is */
    int extend = data[0] & 1;
    size_t step = 1 + data[1] * 67;   /* fed in chunks of 1..17086 bytes */
    data += 2;
    size -= 2;
    size_t total = extend && size > 0 ? JG_LINE_MAX + 1 + size : size;
    char *all = malloc(total ? total : 1);
    if (all == NULL)
        abort();
    for (size_t i = 0; i < total; i++)
        all[i] = (char)data[i % size];
    jg_lines_t *l = malloc(sizeof *l);
    if (l == NULL)
        abort();
    jg_lines_init(l);
    size_t lines = 0;
    for (size_t off = 0; off < total; off += step)
        jg_lines_feed(l, all + off, total - off < step ? total - off : step, on_line, &lines);
    jg_lines_flush(l, on_line, &lines);
    /* and the cleaner alone, on the raw bytes as a cut line */
    char out[JG_LINE_MAX];
    size_t n = jg_line_clean(all, total < JG_LINE_MAX ? total : JG_LINE_MAX, 1, out);
    FUZZ_CHECK(n <= JG_LINE_MAX && n >= 3 && memcmp(out + n - 3, "\xe2\x80\xa6", 3) == 0,
               "a cut line of %zu bytes without its ellipsis", n);
    free(l);
    free(all);
    return 0;
}
