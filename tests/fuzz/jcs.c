/* jcs.c — fuzzes jg_jcs (shared/json.c), the RFC 8785 canonicalizer behind every cache key, on
 * any bytes. Properties: text the checker refuses is refused (-1, output untouched); accepted
 * text gives output at most about 6 x its size, which passes the checker again and is its own
 * canonical form (a fixed point: the differential check). */
#include <limits.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    jg_buf_t out = JG_BUF_INIT, again = JG_BUF_INIT;
    jg_buf_puts(&out, "<");
    int rc = jg_jcs(t, size, &out);
    int ok = jg_json_check(t, size, INT_MAX, NULL, 0) == JG_JSON_OK;
    FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
    FUZZ_CHECK(ok || rc == -1, "unchecked text was canonicalized: %.*s", (int)size, t);
    if (rc != 0) {
        FUZZ_CHECK(out.len == 1, "output changed on failure (%zu bytes)", out.len);
        goto done;
    }
    const char *c = out.data + 1;
    size_t clen = out.len - 1;
    FUZZ_CHECK(clen <= 6 * size + 16, "%zu bytes of output for %zu of input", clen, size);
    char msg[128] = "";
    FUZZ_CHECK(jg_json_check(c, clen, INT_MAX, msg, sizeof msg) == JG_JSON_OK,
               "canonical form does not check (%s): %.*s", msg, (int)clen, c);
    FUZZ_CHECK(jg_jcs(c, clen, &again) == 0, "canonical form refused: %.*s", (int)clen, c);
    FUZZ_CHECK(again.len == clen && memcmp(again.data, c, clen) == 0,
               "not a fixed point:\n  once:  %.*s\n  twice: %.*s", (int)clen, c,
               (int)again.len, again.data);
done:
    jg_buf_free(&out);
    jg_buf_free(&again);
    return 0;
}
