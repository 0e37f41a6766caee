/* cursor.c — the log cursor parser (see cursor.h). */
#include "cursor.h"

#include <stddef.h>


/* Digits only, at least one, up to a '-' or the end; *v its value. 0, or -1 on overflow. */
static int part(const char *s, const char **end, uint64_t *v)
{
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t x = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *end = s;
    *v = x;
    return 0;
}

int jg_cursor_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
    const char *end;
    uint64_t m, q = 0;
    if (s == NULL || part(s, &end, &m))
        return -1;
    if (*end == '-' && part(end + 1, &end, &q))
        return -1;
    if (*end != '\0' || (m == UINT64_MAX && q == UINT64_MAX))
        return -1;
    *ms = m;
    *seq = q;
    return 0;
}
