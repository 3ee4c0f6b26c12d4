/* The server's batched decode steps: slots that join, step and leave at different times each get
 * the logits they would get decoding alone (bit for bit up to 4 rows, where a matrix product dots
 * each token as a decode does; above, the prefill kernels' path, within float rounding), and steps
 * taken together run as one batch. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/decode_batch.h"
#include "test_util.h"

enum { MAX_SLOTS = 7, MAX_STEPS = 12, PROMPT = 6 };

typedef struct {
    int index, n_steps;
    sp_model *model;
    decode_batch *batch;
    pthread_barrier_t *start;
    sp_context *ctx;
    sp_token tokens[MAX_STEPS];
    float *logits;             /* [n_steps][n_vocab], what the batch gave */
    sp_status status;
} slot_run;

static void prefill(sp_context *c, int index) {
    sp_token tok[PROMPT];
    int32_t pos[PROMPT];
    for (int i = 0; i < PROMPT; i++) { tok[i] = (i * 29 + index * 11 + 5) % 300; pos[i] = i * (index + 1); }
    assert_int_equal(sp_decode(c, tok, pos, PROMPT - index, NULL, 0, NULL), SP_OK); /* different lengths */
}

static void *slot_thread(void *arg) {
    slot_run *s = arg;
    const int V = sp_model_get_info(s->model)->n_vocab;
    decode_batch_join(s->batch);
    pthread_barrier_wait(s->start); /* all are members before the first step */
    for (int k = 0; k < s->n_steps && s->status == SP_OK; k++) {
        nanosleep(&(struct timespec){0, (long)((s->index * 37 + k * 53) % 400) * 1000}, NULL); /* vary the order of arrival */
        s->status = decode_batch_step(s->batch, s->ctx, s->tokens[k], 100 + k, s->logits + (size_t)k * V);
    }
    decode_batch_leave(s->batch); /* the others go on without this one */
    return NULL;
}

/* n_slots slots of 4, 8 and 12 steps: leaving at different times; each step's logits within tol
 * of decoding alone (0: bit for bit) */
static void run_slots(int n_slots, double tol) {
    const int N_SLOTS = n_slots;
    sp_model *m = load_test_model("qwen2-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    decode_batch *b;
    assert_int_equal(decode_batch_new(N_SLOTS, V, &b), SP_OK);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_SLOTS);
    slot_run runs[MAX_SLOTS];
    pthread_t threads[MAX_SLOTS];
    sp_context_params p = sp_context_default_params();
    p.n_ctx = 64;
    for (int i = 0; i < N_SLOTS; i++) {
        runs[i] = (slot_run){i, 4 + 4 * (i % 3), m, b, &start, NULL, {0}, NULL, SP_OK};
        assert_int_equal(sp_context_new(m, &p, &runs[i].ctx), SP_OK);
        prefill(runs[i].ctx, i);
        for (int k = 0; k < MAX_STEPS; k++) runs[i].tokens[k] = (k * 17 + i * 7 + 1) % 300;
        runs[i].logits = malloc(sizeof(float) * MAX_STEPS * (size_t)V);
    }
    for (int i = 0; i < N_SLOTS; i++) assert_int_equal(pthread_create(&threads[i], NULL, slot_thread, &runs[i]), 0);
    for (int i = 0; i < N_SLOTS; i++) pthread_join(threads[i], NULL);

    float *alone = malloc(sizeof(float) * (size_t)V);
    double worst = 0;
    for (int i = 0; i < N_SLOTS; i++) {
        assert_int_equal(runs[i].status, SP_OK);
        sp_context *c;
        assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
        prefill(c, i);
        for (int k = 0; k < runs[i].n_steps; k++) {
            int32_t pos = 100 + k, row = 0;
            assert_int_equal(sp_decode(c, &runs[i].tokens[k], &pos, 1, &row, 1, alone), SP_OK);
            double d = 0;
            for (int v = 0; v < V; v++) d = fmax(d, fabs(alone[v] - runs[i].logits[(size_t)k * V + v]));
            worst = fmax(worst, d);
            if (d > tol) fail_msg("%d slots: slot %d step %d differs from decoding alone by %g", n_slots, i, k, d);
        }
        assert_int_equal(sp_context_n_cached(c), sp_context_n_cached(runs[i].ctx));
        sp_context_free(c);
    }
    printf("  %d slots: largest difference from decoding alone %.2g\n", n_slots, worst);
    /* a round runs once every member has stepped: as many rounds as the longest slot's steps */
    unsigned long rounds, rows, want_rows = 0;
    for (int i = 0; i < N_SLOTS; i++) want_rows += (unsigned long)runs[i].n_steps;
    decode_batch_counts(b, &rounds, &rows);
    assert_int_equal(rows, want_rows);
    assert_int_equal(rounds, 12);
    for (int i = 0; i < N_SLOTS; i++) { sp_context_free(runs[i].ctx); free(runs[i].logits); }
    free(alone);
    pthread_barrier_destroy(&start);
    decode_batch_free(b);
    sp_model_free(m);
}

static void steps_match_decoding_alone(void **st) {
    (void)st;
    run_slots(3, 0);
}

/* 7 slots: rounds of up to 7 rows take the prefill kernels' path */
static void many_slots_match_within_rounding(void **st) {
    (void)st;
    run_slots(7, 1e-4); /* measured 1e-5 */
}

/* A member's thread: `steps` steps of its context (token 9 at positions 8, 9, ...), then it leaves. */
typedef struct {
    decode_batch *b;
    sp_context *ctx;
    float *logits;
    int steps;
    sp_status status;          /* its last step's */
} member_run;

static void *member_thread(void *arg) {
    member_run *m = arg;
    for (int k = 0; k < m->steps; k++) m->status = decode_batch_step(m->b, m->ctx, 9, 8 + k, m->logits);
    decode_batch_leave(m->b);
    return NULL;
}

/* A member whose context is full fails its own step; the other one in the same round does not. */

static void one_full_context_fails_alone(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    decode_batch *b;
    assert_int_equal(decode_batch_new(2, V, &b), SP_OK);
    sp_context_params p = sp_context_default_params();
    p.n_ctx = 8;
    sp_context *full, *fine;
    assert_int_equal(sp_context_new(m, &p, &full), SP_OK);
    assert_int_equal(sp_context_new(m, &p, &fine), SP_OK);
    sp_token tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(sp_decode(full, tok, pos, 8, NULL, 0, NULL), SP_OK);
    float *l1 = malloc(sizeof(float) * (size_t)V), *l2 = malloc(sizeof(float) * (size_t)V);
    decode_batch_join(b);
    decode_batch_join(b);
    member_run other = {b, fine, l1, 1, SP_ERR_ARGUMENT};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, member_thread, &other), 0);
    assert_int_equal(decode_batch_step(b, full, 9, 8, l2), SP_ERR_CONTEXT_FULL);
    decode_batch_leave(b);
    pthread_join(t, NULL);
    assert_int_equal(other.status, SP_OK);
    assert_int_equal(sp_context_n_cached(fine), 1);
    unsigned long rounds, rows;
    decode_batch_counts(b, &rounds, &rows);
    assert_int_equal(rounds, 1); /* both steps were one round */
    assert_int_equal(rows, 2);
    free(l1); free(l2);
    sp_context_free(full); sp_context_free(fine);
    decode_batch_free(b);
    sp_model_free(m);
}

/* A prefill in pieces and a stream take turns: while a piece is read no round runs; each pause
 * lets exactly one round run; with nobody generating a pause returns at once. And the library
 * calls the pause between micro-batches only, which leaves the logits as they are. */
static int pauses;
static void count_pause(void *user) { (void)user; pauses++; }

static void prefill_and_streams_take_turns(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    decode_batch *b;
    assert_int_equal(decode_batch_new(2, V, &b), SP_OK);
    sp_context *c;
    assert_int_equal(sp_context_new(m, NULL, &c), SP_OK);
    float *l = malloc(sizeof(float) * (size_t)V);
    unsigned long rounds, rows;
    /* nobody generates: a pause returns at once */
    decode_batch_prefill(b, true);
    decode_batch_let_round(b);
    decode_batch_counts(b, &rounds, &rows);
    assert_int_equal(rounds, 0);
    /* a stream of 4 steps: a piece, then exactly one round, four times */
    decode_batch_join(b);
    member_run s = {b, c, l, 4, SP_OK};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, member_thread, &s), 0);
    for (int piece = 0; piece < 4; piece++) {
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL); /* reading a piece: the stream waits */
        decode_batch_counts(b, &rounds, &rows);
        assert_int_equal(rounds, (unsigned long)piece);
        decode_batch_let_round(b);
        decode_batch_counts(b, &rounds, &rows);
        assert_int_equal(rounds, (unsigned long)piece + 1);
    }
    decode_batch_prefill(b, false);
    pthread_join(t, NULL);
    assert_int_equal(s.status, SP_OK);
    assert_int_equal(sp_context_n_cached(c), 4);
    /* the library's pause: between micro-batches only; the logits are those without it */
    sp_context_params p = sp_context_default_params();
    p.n_batch = 32;
    sp_context *a, *z;
    assert_int_equal(sp_context_new(m, &p, &a), SP_OK);
    assert_int_equal(sp_context_new(m, &p, &z), SP_OK);
    sp_context_set_pause(a, count_pause, NULL);
    sp_token tok[100];
    int32_t pos[100], last = 99;
    for (int i = 0; i < 100; i++) { tok[i] = (i * 13 + 2) % 300; pos[i] = i; }
    float *la = malloc(sizeof(float) * (size_t)V), *lz = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(sp_decode(a, tok, pos, 100, &last, 1, la), SP_OK);
    assert_int_equal(sp_decode(z, tok, pos, 100, &last, 1, lz), SP_OK);
    assert_int_equal(pauses, 3); /* 4 micro-batches of at most 32 */
    assert_memory_equal(la, lz, sizeof(float) * (size_t)V);
    free(l); free(la); free(lz);
    sp_context_free(c); sp_context_free(a); sp_context_free(z);
    decode_batch_free(b);
    sp_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steps_match_decoding_alone), cmocka_unit_test(many_slots_match_within_rounding),
        cmocka_unit_test(one_full_context_fails_alone), cmocka_unit_test(prefill_and_streams_take_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
