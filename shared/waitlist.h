/* waitlist.h — the parked requests of a program, by job id and by deadline, and a ring of
 * recent pub/sub messages to catch a change that raced with parking. Used on the loop thread
 * only, by every program that parks (status's long polls, logs' streams and long polls).
 *
 * A program embeds jg_waiter_t as the first member of its own parked-request struct, fills id,
 * deadline and seq, and adds it when the loop hands it over (ops->parked). */
#ifndef JG_WAITLIST_H
#define JG_WAITLIST_H

#include <stddef.h>
#include <stdint.h>

#include "jg.h"
#include "loop.h"

typedef struct jg_waiter {
    char id[JG_ID_LEN + 1];   /* the job waited on */
    int64_t deadline;         /* monotonic ms: the program's timer for this waiter */
    uint64_t seq;             /* jg_loop_message_seq() before the handler read the state */
    jg_parked_t *parked;
    /* the list's own */
    int linked;
    size_t hash;              /* of id: compared before the id itself */
    size_t heap_at;
    struct jg_waiter *prev, *next;
} jg_waiter_t;

typedef struct jg_waitlist jg_waitlist_t;

jg_waitlist_t *jg_waitlist_new(void);

void jg_waitlist_add(jg_waitlist_t *wl, jg_waiter_t *w);
void jg_waitlist_remove(jg_waitlist_t *wl, jg_waiter_t *w);   /* no-op when not added */
void jg_waitlist_set_deadline(jg_waitlist_t *wl, jg_waiter_t *w, int64_t deadline);

/* The waiters of job id, in a fresh array the caller frees (NULL when none): safe to answer
 * and remove them while walking it. */
size_t jg_waitlist_of(jg_waitlist_t *wl, const char *id, jg_waiter_t ***out);
/* The waiter with the earliest deadline if it is due at now, else NULL. */
jg_waiter_t *jg_waitlist_due(jg_waitlist_t *wl, int64_t now);
/* The earliest deadline, or -1. */
int64_t jg_waitlist_next_deadline(const jg_waitlist_t *wl);
/* Calls fn once for every waited job id whose tag (first JG_TAG_LEN characters) is tag, or for
 * every one when tag is NULL (after a resync: messages may have been missed). fn may answer and
 * remove waiters. */
void jg_waitlist_each_id(jg_waitlist_t *wl, jg_loop_t *loop, const char *tag,
                         void (*fn)(jg_loop_t *loop, const char *id));
/* Any waiter, for draining all of them (SIGTERM); NULL when empty. */
jg_waiter_t *jg_waitlist_any(jg_waitlist_t *wl);

/* Records that message number seq (jg_loop_message_seq) was about job id. */
void jg_waitlist_note(jg_waitlist_t *wl, uint64_t seq, const char *id);
/* Records that message number seq was a resync (the subscription came back: any job may have
 * changed unseen). */
void jg_waitlist_note_resync(jg_waitlist_t *wl, uint64_t seq);
/* Was there a message about w->id, or a resync, after w->seq, up to now_seq (or too many to
 * tell)? */
int jg_waitlist_missed(const jg_waitlist_t *wl, const jg_waiter_t *w, uint64_t now_seq);

/* Parses "<kind> <id> <rest>" messages of a queue's events channel ("job <id> <version>",
 * "log <id> <cursor>"): copies the id and returns the kind's length, or 0 if malformed. */
size_t jg_event_parse(const char *msg, size_t len, char id[JG_ID_LEN + 1], const char **rest);

#endif
