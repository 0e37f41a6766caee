/* mailbox.c — a list handed between threads, with an eventfd to wait on (mailbox.h). */
#include "mailbox.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int jg_mailbox_init(jg_mailbox_t *mb)
{
    mb->head = mb->tail = NULL;
    mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->efd < 0)
        return -1;
    pthread_mutex_init(&mb->mu, NULL);
    return 0;
}

void jg_mailbox_wake(jg_mailbox_t *mb)
{
    uint64_t one = 1;
    ssize_t ignored = write(mb->efd, &one, sizeof one);
    (void)ignored;
}

void jg_mailbox_post(jg_mailbox_t *mb, jg_mail_t *m)
{
    m->next = NULL;
    pthread_mutex_lock(&mb->mu);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->mu);
    jg_mailbox_wake(mb);
}

jg_mail_t *jg_mailbox_take(jg_mailbox_t *mb)
{
    uint64_t v;
    ssize_t ignored = read(mb->efd, &v, sizeof v);
    (void)ignored;
    pthread_mutex_lock(&mb->mu);
    jg_mail_t *all = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->mu);
    return all;
}

void jg_mailbox_destroy(jg_mailbox_t *mb)
{
    if (mb->efd < 0)
        return;
    for (jg_mail_t *m = jg_mailbox_take(mb); m;) {
        jg_mail_t *next = m->next;
        free(m);
        m = next;
    }
    close(mb->efd);
    mb->efd = -1;
    pthread_mutex_destroy(&mb->mu);
}
