/* timefmt.h — the clock and RFC 3339 UTC timestamps with milliseconds (2026-11-22T14:45:30.123Z).
 * Job times are kept in Redis as integer milliseconds since the epoch (Redis TIME). */
#ifndef JG_TIMEFMT_H
#define JG_TIMEFMT_H

#include <stdint.h>

int64_t jg_now_ms(void);             /* wall clock, ms since the epoch */
int64_t jg_monotonic_ms(void);       /* for timeouts and backoff only */
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) into out, which must hold 32 bytes. */
void jg_time_format(int64_t ms, char out[32]);

#endif
