/* The scheduler's steps (src/server/steps.c) and the library's passes under them: slots that join,
 * step and leave at different times each get the logits they would get alone, bit for bit, however
 * many share a step (3 or 7); a prompt read in pieces beside a stream shares each step with it and
 * both get what they would alone; prompts read at once take turns within --step-tokens; a slot
 * that stays away holds the others up for a second at most; and sp_passes_run refuses what it
 * cannot hold. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "server/steps.h"
#include "test_util.h"

enum { MAX_SLOTS = 7, MAX_STEPS = 12, PROMPT = 6 };

static sp_context *new_ctx(sp_model *m, int n_ctx, int n_batch, steps *s) {
    sp_context_params p = sp_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    sp_context *c;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    if (s) sp_context_set_runner(c, steps_run, s);
    return c;
}

static void prefill(sp_context *c, int index) {
    sp_token tok[PROMPT];
    int32_t pos[PROMPT];
    for (int i = 0; i < PROMPT; i++) { tok[i] = (i * 29 + index * 11 + 5) % 300; pos[i] = i * (index + 1); }
    assert_int_equal(sp_decode(c, tok, pos, PROMPT - index, NULL, 0, NULL), SP_OK); /* different lengths */
}

static sp_status decode_one(sp_context *c, sp_token t, int32_t pos, float *logits) {
    int32_t row = 0;
    return sp_decode(c, &t, &pos, 1, &row, 1, logits);
}

typedef struct {
    int index, n_steps;
    sp_model *model;
    steps *s;
    pthread_barrier_t *start;
    sp_context *ctx;
    sp_token tokens[MAX_STEPS];
    float *logits;             /* [n_steps][n_vocab], what the steps gave */
    sp_status status;
} slot_run;

static void *slot_thread(void *arg) {
    slot_run *r = arg;
    const int V = sp_model_get_info(r->model)->n_vocab;
    pthread_barrier_wait(r->start); /* all are members before the first step */
    for (int k = 0; k < r->n_steps && r->status == SP_OK; k++) {
        nanosleep(&(struct timespec){0, (long)((r->index * 37 + k * 53) % 400) * 1000}, NULL); /* vary the order of arrival */
        r->status = decode_one(r->ctx, r->tokens[k], 100 + k, r->logits + (size_t)k * V);
    }
    steps_leave(r->s); /* the others go on without this one */
    return NULL;
}

/* n_slots streams of 4, 8 and 12 tokens, leaving at different times: each token's logits are
 * decoding alone's, bit for bit, and a step holds every stream's next token */
static void run_slots(int n_slots) {
    sp_model *m = load_test_model("qwen2-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    steps *s;
    assert_int_equal(steps_new(n_slots, 32, m, NULL, &s), SP_OK);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n_slots);
    slot_run runs[MAX_SLOTS];
    pthread_t threads[MAX_SLOTS];
    for (int i = 0; i < n_slots; i++) {
        runs[i] = (slot_run){i, 4 + 4 * (i % 3), m, s, &start, NULL, {0}, NULL, SP_OK};
        runs[i].ctx = new_ctx(m, 64, 32, NULL);
        prefill(runs[i].ctx, i);
        sp_context_set_runner(runs[i].ctx, steps_run, s);
        for (int k = 0; k < MAX_STEPS; k++) runs[i].tokens[k] = (k * 17 + i * 7 + 1) % 300;
        runs[i].logits = malloc(sizeof(float) * MAX_STEPS * (size_t)V);
        steps_join(s);
    }
    for (int i = 0; i < n_slots; i++) assert_int_equal(pthread_create(&threads[i], NULL, slot_thread, &runs[i]), 0);
    for (int i = 0; i < n_slots; i++) pthread_join(threads[i], NULL);

    float *alone = malloc(sizeof(float) * (size_t)V);
    for (int i = 0; i < n_slots; i++) {
        assert_int_equal(runs[i].status, SP_OK);
        sp_context *c = new_ctx(m, 64, 32, NULL);
        prefill(c, i);
        for (int k = 0; k < runs[i].n_steps; k++) {
            assert_int_equal(decode_one(c, runs[i].tokens[k], 100 + k, alone), SP_OK);
            if (memcmp(alone, runs[i].logits + (size_t)k * V, sizeof(float) * (size_t)V) != 0)
                fail_msg("%d slots: slot %d token %d differs from decoding alone", n_slots, i, k);
        }
        assert_int_equal(sp_context_n_cached(c), sp_context_n_cached(runs[i].ctx));
        sp_context_free(c);
    }
    /* a step runs once every member has handed in its token: as many as the longest stream's */
    steps_counts n;
    steps_get_counts(s, &n);
    unsigned long want_rows = 0;
    for (int i = 0; i < n_slots; i++) want_rows += (unsigned long)runs[i].n_steps;
    assert_int_equal(n.stream_rows, want_rows);
    assert_int_equal(n.steps, 12);
    assert_int_equal(n.stream_steps, 12);
    assert_int_equal(n.prompt_tokens, 0);
    for (int i = 0; i < n_slots; i++) { sp_context_free(runs[i].ctx); free(runs[i].logits); }
    free(alone);
    pthread_barrier_destroy(&start);
    steps_free(s);
    sp_model_free(m);
}

static void streams_match_decoding_alone(void **st) {
    (void)st;
    run_slots(3);
}

/* 7 streams: more than the decode kernels' 4 tokens in one step, each still as alone */
static void many_streams_match_decoding_alone(void **st) {
    (void)st;
    run_slots(7);
}

/* A member's thread: `steps` tokens (9 at positions 8, 9, ...), then it leaves. */
typedef struct {
    steps *s;
    sp_context *ctx;
    float *logits;
    int n;
    sp_status status;          /* its last token's */
} member_run;

static void *member_thread(void *arg) {
    member_run *r = arg;
    for (int k = 0; k < r->n; k++) r->status = decode_one(r->ctx, 9, 8 + k, r->logits);
    steps_leave(r->s);
    return NULL;
}

/* A member whose context is full fails its own call; the other one goes on. */
static void one_full_context_fails_alone(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    steps *s;
    assert_int_equal(steps_new(2, 32, m, NULL, &s), SP_OK);
    sp_context *full = new_ctx(m, 8, 8, s), *fine = new_ctx(m, 8, 8, s);
    sp_token tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(sp_decode(full, tok, pos, 8, NULL, 0, NULL), SP_OK); /* alone: runs at once */
    float *l1 = malloc(sizeof(float) * (size_t)V), *l2 = malloc(sizeof(float) * (size_t)V);
    steps_join(s);
    steps_join(s);
    member_run other = {s, fine, l1, 1, SP_ERR_ARGUMENT};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, member_thread, &other), 0);
    assert_int_equal(decode_one(full, 9, 8, l2), SP_ERR_CONTEXT_FULL);
    steps_leave(s);
    pthread_join(t, NULL);
    assert_int_equal(other.status, SP_OK);
    assert_int_equal(sp_context_n_cached(fine), 1);
    steps_counts n;
    steps_get_counts(s, &n);
    assert_int_equal(n.steps, 2); /* the full context's prefill, then the other's token */
    assert_int_equal(n.stream_rows, 1);
    free(l1); free(l2);
    sp_context_free(full); sp_context_free(fine);
    steps_free(s);
    sp_model_free(m);
}

/* A prompt of 100 tokens read in pieces of n_batch, logits of its last token. */
typedef struct {
    steps *s;
    sp_context *ctx;
    float *logits;
    sp_status status;
} prompt_run;

static sp_status read_prompt(sp_context *c, float *logits) {
    sp_token tok[100];
    int32_t pos[100], last = 99;
    for (int i = 0; i < 100; i++) { tok[i] = (i * 13 + 2) % 300; pos[i] = i; }
    return sp_decode(c, tok, pos, 100, &last, 1, logits);
}

static void *prompt_thread(void *arg) { /* no cmocka assertion off the main thread: the status says */
    prompt_run *r = arg;
    r->status = read_prompt(r->ctx, r->logits);
    steps_leave(r->s);
    return NULL;
}

/* A prompt read in pieces of 32 beside a stream: each step holds a piece and the stream's token
 * (4 steps for 4 pieces and 4 tokens), and each gets what it would alone. */
static void prompt_and_stream_share_steps(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    steps *s;
    assert_int_equal(steps_new(2, 32, m, NULL, &s), SP_OK);
    sp_context *stream = new_ctx(m, 128, 32, s), *reader = new_ctx(m, 128, 32, s);
    float *ls = malloc(sizeof(float) * (size_t)V), *lp = malloc(sizeof(float) * (size_t)V);
    steps_join(s);
    steps_join(s);
    member_run sr = {s, stream, ls, 4, SP_ERR_ARGUMENT};
    prompt_run pr = {s, reader, lp, SP_ERR_ARGUMENT};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, member_thread, &sr), 0);
    assert_int_equal(pthread_create(&t2, NULL, prompt_thread, &pr), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(sr.status, SP_OK);
    assert_int_equal(pr.status, SP_OK);
    steps_counts n;
    steps_get_counts(s, &n);
    assert_int_equal(n.steps, 4);
    assert_int_equal(n.stream_steps, 4);
    assert_int_equal(n.stream_rows, 4);
    assert_int_equal(n.prompt_tokens, 100);
    /* alone: the same calls without a runner */
    sp_context *a = new_ctx(m, 128, 32, NULL), *b = new_ctx(m, 128, 32, NULL);
    float *la = malloc(sizeof(float) * (size_t)V);
    for (int k = 0; k < 4; k++) assert_int_equal(decode_one(a, 9, 8 + k, la), SP_OK);
    assert_memory_equal(la, ls, sizeof(float) * (size_t)V);
    assert_int_equal(read_prompt(b, la), SP_OK);
    assert_memory_equal(la, lp, sizeof(float) * (size_t)V);
    free(ls); free(lp); free(la);
    sp_context_free(stream); sp_context_free(reader); sp_context_free(a); sp_context_free(b);
    steps_free(s);
    sp_model_free(m);
}

/* Two prompts read at once (pieces of 32, 32, 32 and 4): within a budget of 32 tokens a step
 * holds one piece, so they take turns (7 steps: the last pieces, small as a stream's check, share
 * one); with 64 both pieces share each step (4 steps). Either way each
 * prompt's logits are those it gets alone. */
static void prompts_take_turns_within_the_budget(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    const int V = sp_model_get_info(m)->n_vocab;
    float *alone = malloc(sizeof(float) * (size_t)V);
    sp_context *a = new_ctx(m, 128, 32, NULL);
    assert_int_equal(read_prompt(a, alone), SP_OK);
    sp_context_free(a);
    for (int budget = 32; budget <= 64; budget += 32) {
        steps *s;
        assert_int_equal(steps_new(2, budget, m, NULL, &s), SP_OK);
        prompt_run runs[2];
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
            runs[i] = (prompt_run){s, new_ctx(m, 128, 32, s), malloc(sizeof(float) * (size_t)V), SP_ERR_ARGUMENT};
            steps_join(s);
        }
        for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, prompt_thread, &runs[i]), 0);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        steps_counts n;
        steps_get_counts(s, &n);
        assert_int_equal(n.steps, budget == 32 ? 7 : 4);
        assert_int_equal(n.prompt_tokens, 200);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(runs[i].status, SP_OK);
            assert_memory_equal(alone, runs[i].logits, sizeof(float) * (size_t)V);
            sp_context_free(runs[i].ctx);
            free(runs[i].logits);
        }
        steps_free(s);
    }
    free(alone);
    sp_model_free(m);
}

/* A member that never hands in a pass holds the others up for about a second, not forever. */
static void a_member_away_holds_nobody_for_long(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    steps *s;
    assert_int_equal(steps_new(2, 32, m, NULL, &s), SP_OK);
    sp_context *c = new_ctx(m, 16, 16, s);
    float *l = malloc(sizeof(float) * (size_t)V);
    steps_join(s); /* away */
    steps_join(s);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(decode_one(c, 9, 0, l), SP_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_true(waited > 0.5 && waited < 5);
    steps_leave(s);
    steps_leave(s);
    free(l);
    sp_context_free(c);
    steps_free(s);
    sp_model_free(m);
}

/* The library's side: what sp_passes_run refuses (nothing runs), and a runner that does not run
 * its pass fails the call instead of leaving the caller with logits never computed. */
static int n_held;
static sp_context *held_ctx;
static const sp_model *held_model;
static int held_tokens;
static bool held_joins;
static sp_status hold(void *user, sp_pass *p) { /* what a scheduler sees of a pass */
    (void)user;
    n_held++;
    held_ctx = sp_pass_context(p);
    held_model = sp_pass_model(p);
    held_tokens = sp_pass_n_tokens(p);
    held_joins = sp_pass_joins(p);
    return SP_OK;
}

static void passes_refuse_what_they_cannot_hold(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16"), *other = load_test_model("qwen2-f16");
    const int V = sp_model_get_info(m)->n_vocab;
    float *l = malloc(sizeof(float) * (size_t)V);
    sp_context *a = new_ctx(m, 64, 8, NULL), *b = new_ctx(m, 64, 8, NULL), *q = new_ctx(other, 64, 8, NULL);
    sp_context_set_runner(a, hold, NULL);
    n_held = 0;
    assert_int_equal(decode_one(a, 9, 0, l), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "runner"));
    assert_int_equal(n_held, 1);
    assert_int_equal(sp_context_n_cached(a), 0);
    assert_ptr_equal(held_ctx, a);
    assert_ptr_equal(held_model, m);
    assert_int_equal(held_tokens, 1);
    assert_true(held_joins);
    assert_int_equal(sp_passes_run(NULL, NULL, 0), SP_ERR_ARGUMENT);
    /* two passes of models that differ, or of one context, or more tokens than the scratch holds */
    sp_token tok[12] = {0};
    int32_t pos[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    sp_pass pa = {a, tok, pos, 6, NULL, 0, NULL, NULL, false}, pb = {b, tok, pos, 6, NULL, 0, NULL, NULL, false},
            pq = {q, tok, pos, 1, NULL, 0, NULL, NULL, false}, pa2 = {a, tok, pos, 1, NULL, 0, NULL, NULL, false};
    sp_pass *mixed[2] = {&pa, &pq}, *same[2] = {&pa, &pa2}, *big[2] = {&pa, &pb};
    assert_int_equal(sp_passes_run(NULL, mixed, 2), SP_ERR_ARGUMENT);
    assert_int_equal(sp_passes_run(NULL, same, 2), SP_ERR_ARGUMENT);
    assert_int_equal(sp_passes_run(NULL, big, 2), SP_ERR_ARGUMENT); /* 12 tokens, a's n_batch is 8 */
    assert_non_null(strstr(sp_last_error(), "holds 8"));
    assert_int_equal(sp_context_n_cached(a) + sp_context_n_cached(b), 0);
    assert_false(pa.ran || pb.ran);
    /* with a scratch that holds them they run: each context gets its 6 tokens */
    sp_context *scratch = new_ctx(m, 16, 16, NULL);
    assert_int_equal(sp_passes_run(scratch, big, 2), SP_OK);
    assert_true(pa.ran && pb.ran);
    assert_int_equal(sp_passes_run(scratch, big, 2), SP_ERR_ARGUMENT); /* they ran */
    assert_int_equal(sp_context_n_cached(a), 6);
    assert_int_equal(sp_context_n_cached(b), 6);
    assert_int_equal(sp_context_n_cached(scratch), 0);
    free(l);
    sp_context_free(a); sp_context_free(b); sp_context_free(q); sp_context_free(scratch);
    sp_model_free(m);
    sp_model_free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streams_match_decoding_alone), cmocka_unit_test(many_streams_match_decoding_alone),
        cmocka_unit_test(one_full_context_fails_alone), cmocka_unit_test(prompt_and_stream_share_steps),
        cmocka_unit_test(prompts_take_turns_within_the_budget), cmocka_unit_test(a_member_away_holds_nobody_for_long),
        cmocka_unit_test(passes_refuse_what_they_cannot_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
