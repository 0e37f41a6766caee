/* lines.h — turning a job's output bytes into log lines, as pure functions with no I/O:
 * splitting on '\n', the 16 KiB cut (ending in "…"), UTF-8 repair and `::progress N`. */
#ifndef JG_LINES_H
#define JG_LINES_H

#include <stddef.h>

#define JG_LINE_MAX 16384   /* bytes of one log line, the "…" of a cut line included */

/* A line being assembled from one stream. Holds at most JG_LINE_MAX raw bytes; a line that goes
 * on past that is marked cut and the rest of it, up to its '\n', is dropped. */
typedef struct jg_lines {
    char   buf[JG_LINE_MAX];
    size_t len;
    int    cut;
} jg_lines_t;

/* Called with each finished line: valid UTF-8, no '\n', at most JG_LINE_MAX bytes. The bytes are
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

/* A stdout line "::progress N" (N a number, optional blanks after): 1 and *pct = N clamped to
 * 0..100 and truncated to an integer; 0 for any other line. */
int jg_line_progress(const char *line, size_t len, int *pct);

#endif
