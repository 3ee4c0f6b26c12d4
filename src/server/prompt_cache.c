/* The prompt cache's second level: conversations set aside in memory when their slot is needed
 * for another. A slot's contexts are the first level (a request goes to the slot whose text
 * shares the longest start with its prompt: scheduler.c); when a slot is about to read a prompt
 * that leaves most of what it holds behind, what it holds is copied here as bytes
 * (sp_context_state_save) with the text it was read from, and a later request whose prompt
 * shares a longer start with an entry than with its slot gets the entry copied back. The
 * entries fit a budget (--cache-ram); the least recently used go first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

typedef struct entry {
    sp_token *seq;              /* the text the caches were read from */
    int n_seq;
    void *main_state, *draft_state;
    size_t main_size, draft_size;
    double used;                /* when it was put or last looked at */
    struct entry *next;
} entry;

static struct {
    pthread_mutex_t mu;
    entry *head;
    size_t budget, bytes;
    int entries;
    unsigned long saves, restores, evictions;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t entry_bytes(const entry *e) {
    return e->main_size + e->draft_size + (size_t)e->n_seq * sizeof(sp_token) + sizeof *e;
}

static void entry_free(entry *e) {
    free(e->seq);
    free(e->main_state);
    free(e->draft_state);
    free(e);
}

/* Unlinks *link's entry (under C.mu). */
static entry *unlink_at(entry **link) {
    entry *e = *link;
    *link = e->next;
    C.bytes -= entry_bytes(e);
    C.entries--;
    return e;
}

int sp_srv_common_prefix(const sp_token *a, int na, const sp_token *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

void sp_srv_cache_init(size_t budget) {
    pthread_mutex_lock(&C.mu);
    C.budget = budget;
    pthread_mutex_unlock(&C.mu);
}

void sp_srv_cache_clear(void) {
    pthread_mutex_lock(&C.mu);
    while (C.head) entry_free(unlink_at(&C.head));
    pthread_mutex_unlock(&C.mu);
}

void sp_srv_cache_put(const sp_token *seq, int n_seq, const sp_context *ctx, const sp_context *dctx) {
    if (n_seq <= 0) return;
    entry *e = calloc(1, sizeof *e);
    if (!e) return;
    e->n_seq = n_seq;
    e->main_size = sp_context_state_size(ctx);
    e->draft_size = dctx ? sp_context_state_size(dctx) : 0;
    pthread_mutex_lock(&C.mu);
    const size_t budget = C.budget;
    pthread_mutex_unlock(&C.mu);
    if (entry_bytes(e) > budget || !(e->seq = malloc((size_t)n_seq * sizeof *e->seq)) || !(e->main_state = malloc(e->main_size)) ||
        (dctx && !(e->draft_state = malloc(e->draft_size)))) {
        entry_free(e); /* too big for the whole budget, or no memory: the text is simply not kept */
        return;
    }
    memcpy(e->seq, seq, (size_t)n_seq * sizeof *seq);
    if (sp_context_state_save(ctx, e->main_state, e->main_size) != SP_OK ||
        (dctx && sp_context_state_save(dctx, e->draft_state, e->draft_size) != SP_OK)) {
        entry_free(e);
        return;
    }
    e->used = sp_srv_now();
    pthread_mutex_lock(&C.mu);
    /* an entry whose text starts this one is superseded: any prompt shares at least as much with this one */
    for (entry **l = &C.head; *l;)
        if ((*l)->n_seq <= n_seq && sp_srv_common_prefix((*l)->seq, (*l)->n_seq, seq, n_seq) == (*l)->n_seq) entry_free(unlink_at(l));
        else l = &(*l)->next;
    /* room: the least recently used go first */
    while (C.head && C.bytes + entry_bytes(e) > C.budget) {
        entry **oldest = &C.head;
        for (entry **l = &C.head; *l; l = &(*l)->next)
            if ((*l)->used < (*oldest)->used) oldest = l;
        entry_free(unlink_at(oldest));
        C.evictions++;
    }
    e->next = C.head;
    C.head = e;
    C.bytes += entry_bytes(e);
    C.entries++;
    C.saves++;
    pthread_mutex_unlock(&C.mu);
}

/* The entry sharing the longest start with prompt, longer than better_than (under C.mu). */
static entry **best_entry(const sp_token *prompt, int n, int better_than, int *len) {
    entry **best = NULL;
    *len = better_than;
    for (entry **l = &C.head; *l; l = &(*l)->next) {
        const int k = sp_srv_common_prefix((*l)->seq, (*l)->n_seq, prompt, n);
        if (k > *len) best = l, *len = k;
    }
    return best;
}

int sp_srv_cache_best(const sp_token *prompt, int n) {
    int len;
    pthread_mutex_lock(&C.mu);
    best_entry(prompt, n, 0, &len);
    pthread_mutex_unlock(&C.mu);
    return len;
}

int sp_srv_cache_take(const sp_token *prompt, int n, int better_than, sp_context *ctx, sp_context *dctx, sp_token **seq, int *n_seq) {
    int best_len;
    pthread_mutex_lock(&C.mu);
    entry **best = best_entry(prompt, n, better_than, &best_len);
    entry *e = best ? unlink_at(best) : NULL; /* it moves into the slot; the slot sets it aside again when it needs room */
    if (e) C.restores++;
    pthread_mutex_unlock(&C.mu);
    if (!e) return 0;
    /* the slot's draft context exists exactly when the entry has a draft state (one server, one
     * configuration); a failed load empties what it could not restore */
    int k = best_len;
    if (sp_context_state_load(ctx, e->main_state, e->main_size) != SP_OK ||
        (dctx && (!e->draft_state || sp_context_state_load(dctx, e->draft_state, e->draft_size) != SP_OK))) {
        sp_context_reset(ctx);
        if (dctx) sp_context_reset(dctx);
        *n_seq = k = 0;
    } else {
        free(*seq);
        *seq = e->seq;
        *n_seq = e->n_seq;
        e->seq = NULL;
    }
    entry_free(e);
    return k;
}

void sp_srv_cache_counts(size_t *bytes, int *entries, unsigned long *saves, unsigned long *restores, unsigned long *evictions) {
    pthread_mutex_lock(&C.mu);
    *bytes = C.bytes;
    *entries = C.entries;
    *saves = C.saves;
    *restores = C.restores;
    *evictions = C.evictions;
    pthread_mutex_unlock(&C.mu);
}
