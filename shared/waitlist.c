/* waitlist.c — parked requests by job id and deadline, recent messages (see waitlist.h). */
#include "waitlist.h"
#include "keys.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 16384
#define RECENT 4096

struct jg_waitlist {
    jg_waiter_t *buckets[BUCKETS];
    jg_waiter_t **heap;       /* min-heap by deadline */
    size_t heap_len, heap_cap;
    struct {
        uint64_t seq;
        char id[JG_ID_LEN + 1];
    } recent[RECENT];
    uint64_t resync_seq;      /* the last resync's message number */
};

jg_waitlist_t *jg_waitlist_new(void)
{
    jg_waitlist_t *wl = calloc(1, sizeof *wl);
    if (wl == NULL)
        abort();
    return wl;
}

static size_t hash_of(const char *id)
{
    size_t h = 5381;
    for (; *id; id++)
        h = h * 33 + (unsigned char)*id;
    return h;
}

static void heap_swap(jg_waitlist_t *wl, size_t a, size_t b)
{
    jg_waiter_t *t = wl->heap[a];
    wl->heap[a] = wl->heap[b];
    wl->heap[b] = t;
    wl->heap[a]->heap_at = a;
    wl->heap[b]->heap_at = b;
}

static void heap_up(jg_waitlist_t *wl, size_t i)
{
    while (i > 0 && wl->heap[(i - 1) / 2]->deadline > wl->heap[i]->deadline) {
        heap_swap(wl, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(jg_waitlist_t *wl, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < wl->heap_len && wl->heap[l]->deadline < wl->heap[m]->deadline)
            m = l;
        if (r < wl->heap_len && wl->heap[r]->deadline < wl->heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(wl, i, m);
        i = m;
    }
}

void jg_waitlist_add(jg_waitlist_t *wl, jg_waiter_t *w)
{
    w->hash = hash_of(w->id);
    size_t b = w->hash % BUCKETS;
    w->prev = NULL;
    w->next = wl->buckets[b];
    if (wl->buckets[b])
        wl->buckets[b]->prev = w;
    wl->buckets[b] = w;
    if (wl->heap_len == wl->heap_cap) {
        wl->heap_cap = wl->heap_cap ? wl->heap_cap * 2 : 1024;
        wl->heap = realloc(wl->heap, wl->heap_cap * sizeof *wl->heap);
        if (wl->heap == NULL)
            abort();
    }
    w->heap_at = wl->heap_len;
    wl->heap[wl->heap_len++] = w;
    heap_up(wl, w->heap_at);
    w->linked = 1;
}

void jg_waitlist_remove(jg_waitlist_t *wl, jg_waiter_t *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        wl->buckets[w->hash % BUCKETS] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    size_t i = w->heap_at;
    wl->heap_len--;
    if (i != wl->heap_len) {
        wl->heap[i] = wl->heap[wl->heap_len];
        wl->heap[i]->heap_at = i;
        heap_up(wl, i);
        heap_down(wl, wl->heap[i]->heap_at);
    }
    w->linked = 0;
}

void jg_waitlist_set_deadline(jg_waitlist_t *wl, jg_waiter_t *w, int64_t deadline)
{
    w->deadline = deadline;
    if (!w->linked)
        return;
    heap_up(wl, w->heap_at);
    heap_down(wl, w->heap_at);
}


size_t jg_waitlist_of(jg_waitlist_t *wl, const char *id, jg_waiter_t ***out)
{
    size_t n = 0, cap = 0;
    jg_waiter_t **all = NULL;
    size_t h = hash_of(id);
    for (jg_waiter_t *w = wl->buckets[h % BUCKETS]; w; w = w->next) {
        if (w->hash != h || strcmp(w->id, id) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            all = realloc(all, cap * sizeof *all);
            if (all == NULL)
                abort();
        }
        all[n++] = w;
    }
    *out = all;
    return n;
}

jg_waiter_t *jg_waitlist_due(jg_waitlist_t *wl, int64_t now)
{
    return wl->heap_len && wl->heap[0]->deadline <= now ? wl->heap[0] : NULL;
}

int64_t jg_waitlist_next_deadline(const jg_waitlist_t *wl)
{
    return wl->heap_len ? wl->heap[0]->deadline : -1;
}

jg_waiter_t *jg_waitlist_any(jg_waitlist_t *wl) { return wl->heap_len ? wl->heap[0] : NULL; }

void jg_waitlist_each_id(jg_waitlist_t *wl, jg_loop_t *loop, const char *tag,
                         void (*fn)(jg_loop_t *loop, const char *id))
{
    /* the ids first: fn changes the table while it runs */
    size_t n = 0;
    char(*ids)[JG_ID_LEN + 1] = malloc((wl->heap_len + 1) * sizeof *ids);
    if (ids == NULL)
        abort();
    for (size_t b = 0; b < BUCKETS; b++)
        for (jg_waiter_t *w = wl->buckets[b]; w; w = w->next) {
            if (tag && memcmp(w->id, tag, JG_TAG_LEN) != 0)
                continue;
            int seen = 0;   /* same ids share a bucket: look back only among this bucket's */
            for (jg_waiter_t *x = wl->buckets[b]; x != w && !seen; x = x->next)
                seen = strcmp(x->id, w->id) == 0;
            if (!seen)
                memcpy(ids[n++], w->id, JG_ID_LEN + 1);
        }
    for (size_t i = 0; i < n; i++)
        fn(loop, ids[i]);
    free(ids);
}

void jg_waitlist_note(jg_waitlist_t *wl, uint64_t seq, const char *id)
{
    size_t slot = seq % RECENT;
    wl->recent[slot].seq = seq;
    memcpy(wl->recent[slot].id, id, JG_ID_LEN + 1);
}

void jg_waitlist_note_resync(jg_waitlist_t *wl, uint64_t seq) { wl->resync_seq = seq; }

int jg_waitlist_missed(const jg_waitlist_t *wl, const jg_waiter_t *w, uint64_t now_seq)
{
    if (now_seq - w->seq >= RECENT || wl->resync_seq > w->seq)
        return 1;
    for (uint64_t s = w->seq + 1; s <= now_seq; s++) {
        size_t slot = s % RECENT;
        if (wl->recent[slot].seq == s && strcmp(wl->recent[slot].id, w->id) == 0)
            return 1;
    }
    return 0;
}

size_t jg_event_parse(const char *msg, size_t len, char id[JG_ID_LEN + 1], const char **rest)
{
    const char *sp = memchr(msg, ' ', len);
    if (sp == NULL)
        return 0;
    size_t kind = (size_t)(sp - msg);
    const char *p = sp + 1;
    if ((size_t)(msg + len - p) < JG_ID_LEN + 1 || p[JG_ID_LEN] != ' ')
        return 0;
    memcpy(id, p, JG_ID_LEN);
    id[JG_ID_LEN] = '\0';
    if (!jg_valid_job_id(id))
        return 0;
    *rest = p + JG_ID_LEN + 1;
    return kind;
}
