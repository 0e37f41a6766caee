/* json_check.c — fuzzes jg_json_check (shared/json.c), the strict checker every JSON body passes
 * first, and the readers that trust what it accepted: jg_json_member, jg_json_nul_name.
 * Properties: never a crash or a read past the input; the message is NUL-terminated, short and
 * valid UTF-8 (it goes into error bodies); a member found lies inside the text and is itself
 * checked JSON; a NUL name is reported at an opening quote. */
#include <string.h>

#include "fuzz.h"
#include "json.h"

static int valid_utf8(const char *s)
{
    char copy[256];
    size_t n = strlen(s);
    if (n >= sizeof copy)
        return 0;
    memcpy(copy, s, n + 1);
    return jg_utf8_scrub(copy) == n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    char msg[128];
    memset(msg, 'x', sizeof msg);
    jg_json_status_t st = jg_json_check(t, size, 64, msg, sizeof msg);
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL, "message not terminated");
    FUZZ_CHECK(st == JG_JSON_OK || msg[0] != '\0', "status %d without a message", (int)st);
    FUZZ_CHECK(valid_utf8(msg), "message is not UTF-8: %s", msg);
    if (st != JG_JSON_OK)
        return 0;
    const char *names[] = {"type", "payload", "queue", "", "a"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = NULL;
        size_t vlen = 0;
        if (jg_json_member(t, size, names[i], &v, &vlen)) {
            FUZZ_CHECK(v >= t && vlen > 0 && v + vlen <= t + size, "member %s out of the text",
                       names[i]);
            FUZZ_CHECK(jg_json_check(v, vlen, 64, NULL, 0) == JG_JSON_OK,
                       "member %s is not a JSON value: %.*s", names[i], (int)vlen, v);
        }
    }
    long at = jg_json_nul_name(t, size);
    FUZZ_CHECK(at < 0 || ((size_t)at < size && t[at] == '"'), "NUL name at %ld", at);
    return 0;
}
