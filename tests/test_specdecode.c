/* Speculative decoding: with a greedy sampler the text is token for token what plain decoding
 * gives — after speculative prefill and after full prefill (the draft then reads the prompt on
 * its first step), with a draft that agrees (the bundled pair) and one that does not (random
 * weights: γ falls and the draft rests) — and its refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define MAIN SP_SOURCE_DIR "/models/main.gguf"
#define DRAFT SP_SOURCE_DIR "/models/draft.gguf"
enum { N_GEN = 48 };

static sp_context *context(const sp_model *m, int n) {
    sp_context_params p = sp_context_default_params();
    p.n_ctx = n;
    sp_context *c;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    return c;
}

/* The prompt prefilled into ctx (speculatively with dctx, or fully), its next-token logits. */
static void prefill(sp_context *ctx, sp_context *dctx, const sp_token *prompt, int n, float *logits) {
    sp_context_reset(ctx);
    if (dctx) {
        sp_specprefill_params sp = sp_specprefill_default_params();
        sp.keep_rate = 0.1f;
        assert_int_equal(sp_specprefill(ctx, dctx, prompt, n, NULL, &sp, logits, NULL, NULL, NULL), SP_OK);
    } else {
        int32_t *pos = malloc(sizeof *pos * (size_t)n), last = n - 1;
        for (int i = 0; i < n; i++) pos[i] = i;
        assert_int_equal(sp_decode(ctx, prompt, pos, n, &last, 1, logits), SP_OK);
        free(pos);
    }
}

static sp_sampler *greedy(const sp_token *prompt, int n, int V, float repeat_penalty) {
    sp_sampling_params p = sp_sampling_default_params();
    p.temperature = 0;
    p.repeat_penalty = repeat_penalty;
    sp_sampler *s;
    assert_int_equal(sp_sampler_new(&p, V, &s), SP_OK);
    for (int i = 0; i < n; i++) sp_sampler_accept(s, prompt[i]);
    return s;
}

/* Up to N_GEN tokens one at a time, ending at an end-of-generation token; returns the count. */
static int plain(sp_context *ctx, sp_sampler *smp, float *logits, int n_prompt, const sp_model *m, sp_token *out) {
    int32_t pos = sp_context_last_pos(ctx) + 1;
    assert_true(pos >= n_prompt);
    for (int i = 0; i < N_GEN; i++) {
        out[i] = sp_sampler_sample(smp, logits);
        sp_sampler_accept(smp, out[i]);
        if (sp_token_is_eog(m, out[i])) return i + 1;
        int32_t row = 0, p = pos + i;
        assert_int_equal(sp_decode(ctx, &out[i], &p, 1, &row, 1, logits), SP_OK);
    }
    return N_GEN;
}

/* The same through the speculative decoder; *n_out tokens; returns the acceptance in percent. */
static int speculative(const sp_model *m, sp_context *ctx, sp_context *dctx, const sp_token *prompt, int n, sp_sampler *smp, float *logits,
                       sp_token *out, int *n_out) {
    sp_specdecoder *sd;
    assert_int_equal(sp_specdecoder_new(ctx, dctx, prompt, n, NULL, &sd), SP_OK);
    int got = 0;
    while (got < N_GEN && !(got > 0 && sp_token_is_eog(m, out[got - 1]))) {
        sp_token step[SP_SPECDECODE_MAX_DRAFT + 1];
        const int k = sp_specdecoder_step(sd, smp, logits, step, N_GEN - got);
        assert_true(k >= 1 && k <= SP_SPECDECODE_MAX_DRAFT + 1 && got + k <= N_GEN);
        for (int i = 0; i < k && got < N_GEN; i++) {
            out[got++] = step[i];
            if (sp_token_is_eog(m, step[i])) break; /* the caller stops at the first */
        }
    }
    *n_out = got;
    long drafted, accepted;
    sp_specdecoder_stats(sd, &drafted, &accepted);
    sp_specdecoder_free(sd);
    return drafted ? (int)(100 * accepted / drafted) : 0;
}

/* Plain and speculative greedy decoding of the same prompt give the same tokens; returns the
 * acceptance in percent and the tokens compared. */
static int compare(const sp_model *m, const sp_model *dm, bool spec_prefill, float penalty, int *n_compared) {
    const char *text = "Records of the harbour office. The ship Aurora docked at pier 7 with 310 crates of tea. "
                       "The ship Boreas docked at pier 2 with 95 crates of wool. The ship Corvus docked at pier 11 "
                       "with 42 crates of salt. Question: At which pier did the Boreas dock?\nAnswer:";
    sp_token *prompt;
    int n;
    assert_int_equal(sp_tokenize(m, text, strlen(text), true, false, &prompt, &n), SP_OK);
    const int V = sp_model_get_info(m)->n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)V);
    sp_token want[N_GEN], got[N_GEN];
    sp_context *a = context(m, n + N_GEN + 8), *b = context(m, n + N_GEN + 8), *d = context(dm, n + N_GEN + 16);
    sp_sampler *s1 = greedy(prompt, n, V, penalty), *s2 = greedy(prompt, n, V, penalty);
    prefill(a, spec_prefill ? d : NULL, prompt, n, logits);
    const int n_want = plain(a, s1, logits, n, m, want);
    if (!spec_prefill) sp_context_reset(d); /* the draft reads the prompt on its first step */
    prefill(b, spec_prefill ? d : NULL, prompt, n, logits);
    int n_got;
    const int acceptance = speculative(m, b, d, prompt, n, s2, logits, got, &n_got);
    assert_int_equal(n_got, n_want);
    for (int i = 0; i < n_want; i++)
        if (want[i] != got[i]) fail_msg("token %d: plain %d, speculative %d (prefill %s, penalty %g)", i, want[i], got[i],
                                        spec_prefill ? "speculative" : "full", penalty);
    sp_sampler_free(s1); sp_sampler_free(s2);
    sp_context_free(a); sp_context_free(b); sp_context_free(d);
    free(logits); free(prompt);
    *n_compared = n_want;
    return acceptance;
}

static void greedy_text_is_plain_decodings(void **st) {
    (void)st;
    sp_model *m, *dm;
    assert_int_equal(sp_model_load(MAIN, &m), SP_OK);
    assert_int_equal(sp_model_load(DRAFT, &dm), SP_OK);
    int n1, n2, n3;
    const int a1 = compare(m, dm, true, 1.0f, &n1), a2 = compare(m, dm, false, 1.0f, &n2);
    const int a3 = compare(m, dm, true, 1.3f, &n3); /* the sampler's history (repetition penalty) goes along */
    printf("  bundled pair: %d%%, %d%%, %d%% of the draft's tokens accepted over %d, %d, %d tokens\n", a1, a2, a3, n1, n2, n3);
    sp_model_free(dm);
    sp_model_free(m);
}

/* Long runs: a random main model (it rarely ends) with its own copy as the draft (every
 * proposal taken: γ grows to its most) and with another random model (almost none taken: γ
 * falls and the draft rests). The text must not change. */
static void long_runs_agree(void **st) {
    (void)st;
    char mpath[512], dpath[512];
    make_test_model("--vocab-from " SP_SOURCE_DIR "/models/main.gguf --n-embd 128 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 256 --seed 11",
                    "specdecode-main.gguf", mpath, sizeof mpath);
    make_test_model("--vocab-from " SP_SOURCE_DIR "/models/main.gguf --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 3",
                    "specdecode-draft.gguf", dpath, sizeof dpath);
    sp_model *m, *copy, *other;
    assert_int_equal(sp_model_load(mpath, &m), SP_OK);
    assert_int_equal(sp_model_load(mpath, &copy), SP_OK);
    assert_int_equal(sp_model_load(dpath, &other), SP_OK);
    int n1, n2, n3;
    const int same = compare(m, copy, false, 1.0f, &n1), same_spec = compare(m, copy, true, 1.0f, &n2), poor = compare(m, other, false, 1.0f, &n3);
    printf("  the model's copy as draft: %d%% and %d%% accepted over %d and %d tokens; a random draft: %d%% over %d\n", same, same_spec, n1, n2,
           poor, n3);
    assert_true(n1 == N_GEN && n3 == N_GEN);
    assert_int_equal(same, 100);
    assert_true(poor < 20);
    sp_model_free(other); sp_model_free(copy); sp_model_free(m);
}

static void refusals(void **st) {
    (void)st;
    sp_model *m;
    assert_int_equal(sp_model_load(MAIN, &m), SP_OK);
    sp_context *a = context(m, 64), *self = context(m, 64);
    sp_token prompt[3] = {1110, 40, 41};
    sp_specdecoder *sd = NULL;
    assert_int_equal(sp_specdecoder_new(a, self, prompt, 3, NULL, &sd), SP_ERR_UNSUPPORTED); /* self-speculation */
    assert_null(sd);
    sp_model *other = load_test_model("llama-q8_0");
    sp_context *o = context(other, 64);
    sp_specdecode_params p = sp_specdecode_default_params();
    p.draft_max = SP_SPECDECODE_MAX_DRAFT + 1;
    assert_int_equal(sp_specdecoder_new(a, o, prompt, 3, &p, &sd), SP_ERR_ARGUMENT);
    sp_model *dm;
    assert_int_equal(sp_model_load(DRAFT, &dm), SP_OK);
    sp_context *d = context(dm, 64);
    p = sp_specdecode_default_params();
    p.draft_min = 3;
    p.draft_max = 2;
    assert_int_equal(sp_specdecoder_new(a, d, prompt, 3, &p, &sd), SP_ERR_ARGUMENT);
    sp_context_free(a); sp_context_free(self); sp_context_free(o); sp_context_free(d);
    sp_model_free(dm); sp_model_free(other); sp_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_text_is_plain_decodings),
        cmocka_unit_test(long_runs_agree),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
