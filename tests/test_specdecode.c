/* Speculative decoding: with a greedy sampler the text is token for token what plain decoding
 * gives — after speculative prefill and after full prefill (the draft then reads the prompt on
 * its first step), with a draft that agrees (the bundled pair) and one that does not (random
 * weights: γ falls and the draft rests); sampling, the tokens are distributed as the main model's
 * own (χ² against the distribution computed here from the main model's logits); and its refusals. */
#include <math.h>
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
                       bool always, sp_token *out, int *n_out) {
    sp_specdecoder *sd;
    sp_specdecode_params p = sp_specdecode_default_params();
    p.always = always;
    assert_int_equal(sp_specdecoder_new(ctx, dctx, prompt, n, &p, &sd), SP_OK);
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
    printf("    (%ld of %ld proposals accepted)\n", accepted, drafted);
    return drafted ? (int)(100 * accepted / drafted) : 0;
}

/* Plain and speculative greedy decoding of the same prompt give the same tokens; returns the
 * acceptance in percent and the tokens compared. always: the draft proposes at every step (else
 * the decoder rests it where it does not pay, as it ships). */
static int compare(const sp_model *m, const sp_model *dm, bool spec_prefill, float penalty, bool always, int *n_compared) {
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
    const int acceptance = speculative(m, b, d, prompt, n, s2, logits, always, got, &n_got);
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
    const int a1 = compare(m, dm, true, 1.0f, true, &n1), a2 = compare(m, dm, false, 1.0f, true, &n2);
    const int a3 = compare(m, dm, true, 1.3f, true, &n3); /* the sampler's history (repetition penalty) goes along */
    int n4;
    compare(m, dm, true, 1.0f, false, &n4); /* as it ships: the draft rests where it does not pay */
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
    const int same = compare(m, copy, false, 1.0f, true, &n1), same_spec = compare(m, copy, true, 1.0f, true, &n2);
    const int poor = compare(m, other, false, 1.0f, false, &n3); /* γ falls and the draft rests */
    printf("  the model's copy as draft: %d%% and %d%% accepted over %d and %d tokens; a random draft: %d%% over %d\n", same, same_spec, n1, n2,
           poor, n3);
    assert_true(n1 == N_GEN && n3 == N_GEN);
    assert_int_equal(same, 100);
    assert_true(poor < 20);
    sp_model_free(other); sp_model_free(copy); sp_model_free(m);
}

/* ---------------------------------------------------------------- sampling: the distribution */

enum { CHI_TOP_K = 6, CHI_RUNS = 20000, CHI_PROMPT = 12 };
#define CHI_TEMP 0.9f

/* The sampling distribution over the top CHI_TOP_K tokens of a row, computed here from its
 * definition (softmax of logit / T over the k best): ids and probabilities. */
static void top_k_probs(const float *row, int V, sp_token *ids, double *probs) {
    for (int k = 0; k < CHI_TOP_K; k++) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= ids[j] == v;
            if (!taken && (best < 0 || row[v] > row[best])) best = v;
        }
        ids[k] = best;
    }
    double sum = 0;
    for (int k = 0; k < CHI_TOP_K; k++) sum += probs[k] = exp((double)(row[ids[k]] - row[ids[0]]) / CHI_TEMP);
    for (int k = 0; k < CHI_TOP_K; k++) probs[k] /= sum;
}

/* The main model's next-token logits after the prompt and the given tokens (its cache cut back
 * to the prompt first). */
static void main_row(sp_context *ctx, int n_prompt, const sp_token *t, int n, float *row) {
    assert_int_equal(sp_context_truncate(ctx, n_prompt), SP_OK);
    int32_t pos[4], last = n - 1;
    for (int i = 0; i < n; i++) pos[i] = n_prompt + i;
    assert_int_equal(sp_decode(ctx, t, pos, n, &last, 1, row), SP_OK);
}

/* χ² of counts against expected frequencies (cells expected below 5 pooled); *df its degrees of
 * freedom. */
static double chi_square(const double *expected, const long *observed, int n, int *df) {
    double chi = 0, pool_e = 0;
    long pool_o = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        if (expected[i] < 5) { pool_e += expected[i]; pool_o += observed[i]; continue; }
        chi += (observed[i] - expected[i]) * (observed[i] - expected[i]) / expected[i];
        cells++;
    }
    if (pool_e >= 1) { chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e; cells++; }
    else assert_true(pool_o <= 3); /* nothing can land where the distribution puts nothing */
    *df = cells - 1;
    return chi;
}

/* The χ² value exceeded with probability 1e-3 (Wilson–Hilferty). */
static double chi_critical(int df) {
    const double z = 3.0902, a = 2.0 / (9.0 * df);
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Many seeds, four tokens each, through the speculative decoder with a draft that agrees with
 * the main model some of the time (a one-layer model made with the main model's seed). The
 * decoder's first step decodes alone (it times the main model); the second proposes the third
 * and fourth tokens, accepted with probability min(1, p/q) or replaced by a residual draw. The
 * triples (t1, t2, t3) must follow p(t1)·p(t2 | t1)·p(t3 | t1 t2), and the fourth tokens the sum
 * over the triples of that times p(t4 | t1 t2 t3) — the main model's own distribution, computed
 * here from its logits. */
static void sampled_text_has_the_main_models_distribution(void **st) {
    (void)st;
    enum { K = CHI_TOP_K };
    char mpath[512], dpath[512];
    make_test_model("--n-vocab 300 --n-embd 64 --n-layer 2 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 21", "chi-main.gguf", mpath, sizeof mpath);
    make_test_model("--n-vocab 300 --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 21", "chi-draft.gguf", dpath, sizeof dpath);
    sp_model *m, *dm;
    assert_int_equal(sp_model_load(mpath, &m), SP_OK);
    assert_int_equal(sp_model_load(dpath, &dm), SP_OK);
    const int V = sp_model_get_info(m)->n_vocab;
    sp_token prompt[CHI_PROMPT];
    for (int i = 0; i < CHI_PROMPT; i++) prompt[i] = 40 + 7 * i;
    sp_context *ctx = context(m, CHI_PROMPT + 8), *dctx = context(dm, CHI_PROMPT + 8);
    float *row = malloc(sizeof(float) * (size_t)V), *first = malloc(sizeof(float) * (size_t)V);
    /* the exact distribution: t1, t2 after each t1, t3 after each (t1, t2), t4 after each triple */
    sp_token id1[K], id2[K][K], id3[K][K][K];
    double p1[K], p2[K][K], p3[K][K][K], *fourth = calloc((size_t)V, sizeof *fourth);
    int32_t pos[CHI_PROMPT], last = CHI_PROMPT - 1;
    for (int i = 0; i < CHI_PROMPT; i++) pos[i] = i;
    assert_int_equal(sp_decode(ctx, prompt, pos, CHI_PROMPT, &last, 1, first), SP_OK);
    top_k_probs(first, V, id1, p1);
    for (int a = 0; a < K; a++) {
        main_row(ctx, CHI_PROMPT, (sp_token[]){id1[a]}, 1, row);
        top_k_probs(row, V, id2[a], p2[a]);
        for (int b = 0; b < K; b++) {
            main_row(ctx, CHI_PROMPT, (sp_token[]){id1[a], id2[a][b]}, 2, row);
            top_k_probs(row, V, id3[a][b], p3[a][b]);
            for (int c = 0; c < K; c++) {
                sp_token id4[K];
                double p4[K];
                main_row(ctx, CHI_PROMPT, (sp_token[]){id1[a], id2[a][b], id3[a][b][c]}, 3, row);
                top_k_probs(row, V, id4, p4);
                for (int d = 0; d < K; d++) fourth[id4[d]] += p1[a] * p2[a][b] * p3[a][b][c] * p4[d];
            }
        }
    }
    /* the draft reads the prompt once; every run starts from there */
    assert_int_equal(sp_decode(dctx, prompt, pos, CHI_PROMPT, &last, 1, row), SP_OK);
    long *triple = calloc(K * K * K, sizeof *triple), *count4 = calloc((size_t)V, sizeof *count4), drafted = 0, accepted = 0, stray = 0;
    sp_sampling_params sp = sp_sampling_default_params();
    sp.temperature = CHI_TEMP;
    sp.top_k = K;
    sp.top_p = 1;
    sp.min_p = 0;
    sp.repeat_penalty = 1;
    for (int run = 0; run < CHI_RUNS; run++) {
        sp.seed = 1000 + (uint64_t)run;
        sp_sampler *smp;
        assert_int_equal(sp_sampler_new(&sp, V, &smp), SP_OK);
        assert_int_equal(sp_context_truncate(ctx, CHI_PROMPT), SP_OK);
        memcpy(row, first, sizeof(float) * (size_t)V);
        sp_specdecoder *sd;
        assert_int_equal(sp_specdecoder_new(ctx, dctx, prompt, CHI_PROMPT, NULL, &sd), SP_OK);
        sp_token t[4 + SP_SPECDECODE_MAX_DRAFT];
        int got = 0;
        while (got < 4) {
            const int k = sp_specdecoder_step(sd, smp, row, t + got, 4 - got);
            assert_true(k >= 1 && got + k <= 4);
            got += k;
        }
        long d, a;
        sp_specdecoder_stats(sd, &d, &a);
        drafted += d;
        accepted += a;
        sp_specdecoder_free(sd);
        sp_sampler_free(smp);
        int a1 = -1, b1 = -1, c1 = -1;
        for (int i = 0; i < K; i++) if (id1[i] == t[0]) a1 = i;
        for (int i = 0; a1 >= 0 && i < K; i++) if (id2[a1][i] == t[1]) b1 = i;
        for (int i = 0; b1 >= 0 && i < K; i++) if (id3[a1][b1][i] == t[2]) c1 = i;
        if (c1 < 0) { stray++; continue; } /* outside the main model's top k: must never happen */
        triple[(a1 * K + b1) * K + c1]++;
        count4[t[3]]++;
    }
    assert_int_equal(stray, 0);
    double *expected = malloc(sizeof(double) * K * K * K);
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++)
            for (int c = 0; c < K; c++) expected[(a * K + b) * K + c] = CHI_RUNS * p1[a] * p2[a][b] * p3[a][b][c];
    for (int v = 0; v < V; v++) fourth[v] *= CHI_RUNS;
    int df3, df4;
    const double chi3 = chi_square(expected, triple, K * K * K, &df3), chi4 = chi_square(fourth, count4, V, &df4);
    printf("  %d runs: %.0f%% of %ld proposals accepted; χ² %.1f on %d df (triples; 0.1%% critical %.1f), %.1f on %d df (fourth token; %.1f)\n",
           CHI_RUNS, 100.0 * accepted / drafted, drafted, chi3, df3, chi_critical(df3), chi4, df4, chi_critical(df4));
    /* both paths of the rule ran: proposals accepted and proposals refused (the residual) */
    assert_true(drafted >= CHI_RUNS && accepted > drafted / 10 && accepted < drafted - drafted / 10);
    assert_true(df3 >= 10 && df4 >= 10);
    assert_true(chi3 < chi_critical(df3));
    assert_true(chi4 < chi_critical(df4));
    free(expected); free(fourth); free(triple); free(count4); free(row); free(first);
    sp_context_free(ctx); sp_context_free(dctx);
    sp_model_free(dm); sp_model_free(m);
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
        cmocka_unit_test(sampled_text_has_the_main_models_distribution),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
