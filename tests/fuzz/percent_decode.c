/* percent_decode.c — fuzzes jg_percent_decode (shared/buf.c), which decodes query parameters
 * and REDIS_URL credentials. The first byte picks the output size (1..128) and whether '+' is a
 * space. Properties: no crash, no write past the output; on success the length fits, the output
 * is NUL-terminated there and holds no NUL; on failure the answer is -1. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = 1 + (data[0] & 0x7F);
    int plus = data[0] >> 7;
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    long n = jg_percent_decode(out, cap, (const char *)data + 1, size - 1, plus);
    FUZZ_CHECK(n >= -1, "answered %ld", n);
    if (n >= 0) {
        FUZZ_CHECK((size_t)n < cap, "%ld bytes in a %zu-byte buffer", n, cap);
        FUZZ_CHECK(out[n] == '\0' && strlen(out) == (size_t)n, "length %ld, strlen %zu", n,
                   strlen(out));
        FUZZ_CHECK((size_t)n <= size - 1, "decoded longer than the text");
    }
    free(out);
    return 0;
}
