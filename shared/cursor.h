/* cursor.h — log cursors as clients send them (`?after=`, `Last-Event-ID`): the ids of a job's
 * Redis stream entries, "<ms>" or "<ms>-<seq>" in decimal. A pure parser, no I/O, so that the
 * fuzzer (tests/fuzz/) and the unit tests call it directly. */
#ifndef JG_CURSOR_H
#define JG_CURSOR_H

#include <stdint.h>

/* Reads s as a cursor into *ms and *seq (seq 0 when absent). Refuses (-1, nothing written):
 * anything but digits with one optional "-<digits>", a part above 2^64 - 1, and the greatest
 * id 18446744073709551615-18446744073709551615, after which no entry can come (Redis refuses it
 * as an exclusive start). Returns 0 when s is a cursor. */
int jg_cursor_parse(const char *s, uint64_t *ms, uint64_t *seq);

#endif
