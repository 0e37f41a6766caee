/* lines.h — turning a job's output bytes into log lines, as pure functions with no I/O:
 * splitting on '\n', one trailing '\r' removed, the 16 KiB cut (ending in "…"), UTF-8 repair
 * and `::progress N` (the rules are docs/worker.md's "Worker protocol"). */
#ifndef JG_LINES_H
#define JG_LINES_H

#include <stddef.h>

#define JG_LINE_MAX 16384   /* bytes of one log line, the "…" of a cut line included */

/* A line being assembled from one stream. Holds at most JG_LINE_MAX + 1 raw bytes (a line of
 * JG_LINE_MAX bytes plus the '\r' of a CRLF end); a line that goes on past that is marked cut and
 * the rest of it, up to its '\n', is dropped. */
typedef struct jg_lines {
    char   buf[JG_LINE_MAX + 1];
    size_t len;
    int    cut;
} jg_lines_t;

/* Called with each finished line: valid UTF-8, no '\n', no trailing '\r' (one is removed from a
 * line that is not cut), at most JG_LINE_MAX bytes. The bytes are
 * only valid during the call. */
typedef void (*jg_line_fn)(void *ctx, const char *line, size_t len);

void jg_lines_init(jg_lines_t *l);
/* Feeds n bytes; calls fn for every line they complete. */
void jg_lines_feed(jg_lines_t *l, const char *data, size_t n, jg_line_fn fn, void *ctx);
/* At end of stream: a last line without '\n' (if any) is passed to fn. */
void jg_lines_flush(jg_lines_t *l, jg_line_fn fn, void *ctx);

/* Writes the log form of raw line bytes into out (JG_LINE_MAX bytes): invalid UTF-8 becomes
 * U+FFFD, and a line that is cut, or longer than JG_LINE_MAX once repaired, is shortened at a
 * character boundary to end in "…" within JG_LINE_MAX bytes. Returns the length written. */
size_t jg_line_clean(const char *in, size_t n, int cut, char out[JG_LINE_MAX]);

/* A stdout line "::progress N": the 10 bytes "::progress", one or more blanks (space, tab), N,
 * optional blanks, nothing else; N is an optional '-', digits with at most one '.', at least one
 * digit (no sign '+', no exponent, no '%'). Returns 1 with *pct = N clamped to 0..100 and
 * truncated to an integer; 0 for any other line (which is then logged as it is). */
int jg_line_progress(const char *line, size_t len, int *pct);

#endif
