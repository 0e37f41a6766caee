/* mailbox.h — hands items from any thread to one consumer thread: a mutex-guarded list in
 * arrival order and an eventfd the consumer polls. Items embed jg_mail_t as their first
 * member; whoever takes an item owns it. */
#ifndef JG_MAILBOX_H
#define JG_MAILBOX_H

#include <pthread.h>

typedef struct jg_mail {
    struct jg_mail *next;
} jg_mail_t;

typedef struct jg_mailbox {
    pthread_mutex_t mu;
    jg_mail_t *head, *tail;
    int efd;                   /* readable while something was posted since the last take */
} jg_mailbox_t;

/* 0, or -1 (errno set) if no eventfd could be made. */
int jg_mailbox_init(jg_mailbox_t *mb);
/* Appends m and wakes the consumer. Any thread. */
void jg_mailbox_post(jg_mailbox_t *mb, jg_mail_t *m);
/* Wakes the consumer with nothing posted (e.g. to have it look at a stop flag). */
void jg_mailbox_wake(jg_mailbox_t *mb);
/* Everything posted so far, oldest first (NULL if none); clears the eventfd. */
jg_mail_t *jg_mailbox_take(jg_mailbox_t *mb);
/* Frees every item still posted (with free()), closes the eventfd. */
void jg_mailbox_destroy(jg_mailbox_t *mb);

#endif
