/* Decode steps of the server's slots, batched: see decode_batch.h. */
#include "decode_batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    sp_context **ctx;
    sp_token *token;
    int32_t *pos;
    float **out;                /* each member's logits buffer */
    sp_status *status;
} round_entries;

struct decode_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_vocab;
    int n_members;              /* slots generating now */
    int n_pending;              /* of them, those that submitted to the round being collected */
    int prefilling;             /* slots reading a prompt in pieces: a round runs only while all of them */
    int yielded;                /* ... pause between two pieces (each pause lets one round run) */
    unsigned long collecting;   /* id of the round being collected */
    unsigned long finished;     /* rounds with an id below this have run */
    unsigned long rows;         /* steps in all rounds so far */
    /* Two sets of entries: the round being collected, and the round running (or last run).
     * A slot that joins while a round runs submits to the next one; the running round's entries
     * stay put until its members have read their results, because the next round can only run
     * once all of them submitted again. */
    round_entries collect, run;
    float *logits;              /* [at most max_members][n_vocab] */
};

static bool entries_alloc(round_entries *e, int n) {
    e->ctx = calloc((size_t)n, sizeof *e->ctx);
    e->token = calloc((size_t)n, sizeof *e->token);
    e->pos = calloc((size_t)n, sizeof *e->pos);
    e->out = calloc((size_t)n, sizeof *e->out);
    e->status = calloc((size_t)n, sizeof *e->status);
    return e->ctx && e->token && e->pos && e->out && e->status;
}

static void entries_free(round_entries *e) {
    free(e->ctx); free(e->token); free(e->pos); free(e->out); free(e->status);
}

sp_status decode_batch_new(int max_members, int n_vocab, decode_batch **out) {
    *out = NULL;
    decode_batch *b = calloc(1, sizeof *b);
    if (!b) return SP_ERR_MEMORY;
    b->n_vocab = n_vocab;
    bool ok = entries_alloc(&b->collect, max_members);
    ok = entries_alloc(&b->run, max_members) && ok; /* both, so that entries_free meets no garbage */
    b->logits = malloc((size_t)max_members * (size_t)n_vocab * sizeof *b->logits);
    if (!ok || !b->logits) {
        entries_free(&b->collect); entries_free(&b->run); free(b->logits); free(b);
        return SP_ERR_MEMORY;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    *out = b;
    return SP_OK;
}

void decode_batch_free(decode_batch *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    entries_free(&b->collect); entries_free(&b->run); free(b->logits);
    free(b);
}

void decode_batch_join(decode_batch *b) {
    pthread_mutex_lock(&b->mu);
    b->n_members++;
    pthread_mutex_unlock(&b->mu);
}

void decode_batch_leave(decode_batch *b) {
    pthread_mutex_lock(&b->mu);
    b->n_members--;
    /* those waiting may now be everyone: one of them runs the round (and a prefill waiting for a
     * round may now have nobody to wait for) */
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void decode_batch_prefill(decode_batch *b, bool begin) {
    pthread_mutex_lock(&b->mu);
    b->prefilling += begin ? 1 : -1;
    if (!begin) pthread_cond_broadcast(&b->cv); /* a round held back may run now */
    pthread_mutex_unlock(&b->mu);
}

void decode_batch_let_round(decode_batch *b) {
    pthread_mutex_lock(&b->mu);
    if (b->n_members > 0) {
        const unsigned long round = b->collecting; /* the round this pause lets run */
        b->yielded++;
        pthread_cond_broadcast(&b->cv);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1; /* members that never come back must not stop a prefill for long */
        while (b->n_members > 0 && b->finished <= round)
            if (pthread_cond_timedwait(&b->cv, &b->mu, &deadline) != 0) break;
        if (b->collecting == round) b->yielded--; /* no round took the turn: take it back */
    }
    pthread_mutex_unlock(&b->mu);
}

/* Runs the n entries of b->run (without the lock: nobody else touches them meanwhile). */
static void run_round(decode_batch *b, int n) {
    round_entries *e = &b->run;
    sp_status st = sp_decode_sequences(e->ctx, e->token, e->pos, n, b->logits);
    for (int i = 0; i < n; i++) {
        if (st == SP_OK) {
            memcpy(e->out[i], b->logits + (size_t)i * b->n_vocab, (size_t)b->n_vocab * sizeof(float));
            e->status[i] = SP_OK;
        } else { /* one bad member fails the batch; alone, each gets its own answer */
            int32_t row = 0;
            e->status[i] = sp_decode(e->ctx[i], &e->token[i], &e->pos[i], 1, &row, 1, e->out[i]);
        }
    }
}

sp_status decode_batch_step(decode_batch *b, sp_context *ctx, sp_token token, int32_t pos, float *logits) {
    pthread_mutex_lock(&b->mu);
    const int me = b->n_pending++;
    const unsigned long round = b->collecting;
    b->collect.ctx[me] = ctx;
    b->collect.token[me] = token;
    b->collect.pos[me] = pos;
    b->collect.out[me] = logits;
    for (;;) {
        if (b->finished > round) break; /* another member ran it */
        /* everyone is here and every prefill pauses between two pieces: this thread runs the round */
        if (b->collecting == round && b->n_pending == b->n_members && b->prefilling == b->yielded) {
            const int n = b->n_pending;
            b->yielded = 0; /* the pauses are used up: the next round waits for the prefills to pause again */
            round_entries t = b->run; /* swap: the collected entries become the running ones */
            b->run = b->collect;
            b->collect = t;
            b->n_pending = 0;
            b->collecting++;
            b->rows += (unsigned long)n;
            pthread_mutex_unlock(&b->mu);
            run_round(b, n);
            pthread_mutex_lock(&b->mu);
            b->finished = round + 1;
            pthread_cond_broadcast(&b->cv);
            break;
        }
        pthread_cond_wait(&b->cv, &b->mu);
    }
    const sp_status st = b->run.status[me];
    pthread_mutex_unlock(&b->mu);
    return st;
}

void decode_batch_counts(decode_batch *b, unsigned long *rounds, unsigned long *rows) {
    pthread_mutex_lock(&b->mu);
    *rounds = b->collecting;
    *rows = b->rows;
    pthread_mutex_unlock(&b->mu);
}
