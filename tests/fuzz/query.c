/* query.c — fuzzes the query string and the numbers and cursors read from it: jg_query_get
 * (shared/http.c) on the raw query, then what the handlers make of the value: jg_cursor_parse
 * (`after`, `Last-Event-ID`), jg_parse_long (`limit`, `version`, `ttl`), jg_parse_double
 * (`wait`). The first byte picks the parameter name and the output size.
 * Properties: no crash, no write past the output; a value found fits and holds no NUL; a cursor
 * read prints back to a text that reads as the same cursor; numbers stay in their range. */
#include <inttypes.h>
#include <string.h>

#include "config.h"
#include "cursor.h"
#include "fuzz.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[] = {"after", "limit", "wait", "version", "ttl", "stream", "a", ""};
    if (size < 1)
        return 0;
    const char *name = names[data[0] & 7];
    size_t cap = 1 + (data[0] >> 3);                    /* 1..32 */
    char *query = fuzz_cstr(data + 1, size - 1);
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    int q = jg_query_get(query, name, out, cap);
    FUZZ_CHECK(q >= -1 && q <= 1, "jg_query_get answered %d", q);
    if (q == 1) {
        size_t n = strnlen(out, cap);
        FUZZ_CHECK(n < cap, "value not terminated within %zu bytes", cap);
        uint64_t ms, seq, ms2, seq2;
        if (jg_cursor_parse(out, &ms, &seq) == 0) {
            char again[64];
            snprintf(again, sizeof again, "%" PRIu64 "-%" PRIu64, ms, seq);
            FUZZ_CHECK(jg_cursor_parse(again, &ms2, &seq2) == 0 && ms2 == ms && seq2 == seq,
                       "cursor %s printed as %s", out, again);
            FUZZ_CHECK(!(ms == UINT64_MAX && seq == UINT64_MAX), "the last id %s was accepted",
                       out);
        }
        long l;
        if (jg_parse_long(out, 1, 1000, &l) == 0)
            FUZZ_CHECK(l >= 1 && l <= 1000, "limit %ld from %s", l, out);
        double d;
        if (jg_parse_double(out, 0, 60, &d) == 0)
            FUZZ_CHECK(d >= 0 && d <= 60, "wait %g from %s", d, out);
    }
    free(out);
    free(query);
    return 0;
}
