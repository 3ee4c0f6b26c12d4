/* Speculative prefill: selection rules, scoring against a float64 re-computation, the sparse
 * prefill against llama.cpp's gapped-position logits, and the end-to-end contract. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "model.h"
#include "selection.h"
#include "test_util.h"

static sp_context *context(const sp_model *m, int n_ctx, sp_kv_type kv) {
    sp_context_params p = sp_context_default_params();
    p.n_ctx = n_ctx;
    p.kv_type = kv;
    sp_context *c;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    return c;
}

/* ------------------------------------------------------------------ defaults */

/* The paper's settings are the defaults every front end starts from (a changed default changes
 * what users get without any option changing). */
static void defaults_are_the_papers(void **st) {
    (void)st;
    const sp_specprefill_params p = sp_specprefill_default_params();
    assert_int_equal(p.chunk, 32);
    assert_int_equal(p.lookahead, 8);
    assert_int_equal(p.pool_kernel, 13);
    assert_true(p.keep_rate == 0.3f);
    assert_true(p.keep_special && p.keep_last_chunk && !p.any_vocab);
    assert_true(p.keep_mass == 0.0f && p.keep_min == 0.05f && p.keep_max == 0.9f);
    assert_int_equal(p.self_layers, 0);
}

/* ------------------------------------------------------------------ selection */

/* BOS is kept by its id, whatever type the vocabulary gives it (some GGUFs type it normal): a
 * vocabulary-only copy of the bundled model with BOS typed normal, selection at a tiny keep. */
static void bos_kept_by_id(void **st) {
    (void)st;
    sp_model *orig;
    assert_int_equal(sp_model_load(SP_SOURCE_DIR "/models/main.gguf", &orig), SP_OK);
    const int V = sp_model_get_info(orig)->n_vocab, bos = sp_token_bos(orig);
    assert_true(bos >= 0);
    int32_t *types = malloc(sizeof *types * (size_t)V);
    for (int i = 0; i < V; i++) types[i] = (int32_t)sp_token_get_type(orig, i);
    types[bos] = SP_TOKEN_NORMAL;
    sp_gguf_file *src;
    assert_int_equal(sp_gguf_open(SP_SOURCE_DIR "/models/main.gguf", false, &src), SP_OK);
    sp_gguf_writer *w = sp_gguf_writer_new();
    for (uint64_t i = 0; i < src->n_kv; i++)
        if (!sp_gguf_string_eq(src->kv[i].key, "tokenizer.ggml.token_type")) sp_gguf_writer_copy_kv(w, &src->kv[i]);
    sp_gguf_writer_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)V);
    char path[512];
    temp_path("bos-normal.gguf", path, sizeof path);
    assert_int_equal(sp_gguf_writer_write(w, path), SP_OK);
    sp_gguf_writer_free(w);
    sp_gguf_close(src);
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    assert_int_equal(sp_token_get_type(m, bos), SP_TOKEN_NORMAL);
    enum { N = 200 };
    sp_token prompt[N];
    float imp[N];
    uint8_t kept[N];
    for (int i = 0; i < N; i++) { prompt[i] = 40 + i % 50; imp[i] = i >= 100 && i < 132 ? 1.0f : 0.0f; }
    prompt[0] = bos;
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 0.1f; /* ceil(7 × 0.1) = 1 chunk: the last; BOS on top */
    int n_kept = 0;
    assert_int_equal(sp_specprefill_select(m, prompt, N, imp, &p, kept, &n_kept), SP_OK);
    assert_true(kept[0]);
    assert_int_equal(n_kept, 1 + (N - 192));
    p.keep_special = false;
    assert_int_equal(sp_specprefill_select(m, prompt, N, imp, &p, kept, &n_kept), SP_OK);
    assert_false(kept[0]);
    sp_model_free(m);
    sp_model_free(orig);
    free(types);
    remove(path);
}

static void chunks_by_mean_score(void **st) {
    (void)st;
    /* 10 tokens, chunk 3 → chunks {0,1,2} {3,4,5} {6,7,8} {9}; means 1, 5, 2, 0 */
    float imp[10] = {1, 1, 1, 5, 5, 5, 0, 6, 0, 0};
    uint8_t kept[10];
    sp_specprefill_params p = sp_specprefill_default_params();
    p.chunk = 3;
    p.keep_rate = 0.5f; /* ceil(4 × 0.5) = 2 chunks: the last (forced) + the best (chunk 1) */
    assert_int_equal(sp_select_chunks(imp, 10, NULL, &p, kept), 4);
    uint8_t want[10] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 1};
    assert_memory_equal(kept, want, 10);
    /* without forcing the last chunk, the two best chunks win */
    p.keep_last_chunk = false;
    assert_int_equal(sp_select_chunks(imp, 10, NULL, &p, kept), 6);
    uint8_t want2[10] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 0};
    assert_memory_equal(kept, want2, 10);
    /* forced tokens come on top of the budget */
    uint8_t forced[10] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    p.keep_last_chunk = true;
    p.keep_rate = 0.25f; /* 1 chunk: only the forced last one */
    assert_int_equal(sp_select_chunks(imp, 10, forced, &p, kept), 2);
    assert_true(kept[0] && kept[9]);
    /* chunk 1 selects single tokens */
    p.chunk = 1;
    p.keep_rate = 0.2f;
    p.keep_last_chunk = false;
    assert_int_equal(sp_select_chunks(imp, 10, NULL, &p, kept), 2);
    assert_true(kept[7] && (kept[3] || kept[4] || kept[5]));
    /* keep everything */
    p.keep_rate = 1;
    assert_int_equal(sp_select_chunks(imp, 10, NULL, &p, kept), 10);
}

static void adaptive_keep_by_mass(void **st) {
    (void)st;
    float imp[8] = {10, 10, 0, 0, 0, 0, 0, 1};
    uint8_t kept[8];
    sp_specprefill_params p = sp_specprefill_default_params();
    p.chunk = 2;
    p.keep_last_chunk = false;
    p.keep_mass = 0.9f; /* chunk 0 holds 20 of 21 */
    p.keep_min = 0;
    p.keep_max = 1;
    assert_int_equal(sp_select_chunks(imp, 8, NULL, &p, kept), 2);
    assert_true(kept[0] && kept[1]);
    p.keep_mass = 0.99f; /* needs chunk 3 too */
    assert_int_equal(sp_select_chunks(imp, 8, NULL, &p, kept), 4);
    assert_true(kept[6] && kept[7]);
    p.keep_min = 0.75f; /* at least 3 of 4 chunks */
    assert_int_equal(sp_select_chunks(imp, 8, NULL, &p, kept), 6);
    p.keep_min = 0; p.keep_max = 0.25f; p.keep_mass = 1; /* at most 1 chunk */
    assert_int_equal(sp_select_chunks(imp, 8, NULL, &p, kept), 2);
}

static void importance_through_byte_spans(void **st) {
    (void)st;
    /* text "abcdef": source tokens "ab" "cde" "f", target tokens "a" "bcd" "ef" */
    int ss[3] = {0, 2, 5}, se[3] = {2, 5, 6}, ds[3] = {0, 1, 4}, de[3] = {1, 4, 6};
    float si[3] = {0.5f, 0.2f, 0.9f}, di[3];
    sp_map_importance(ss, se, si, 3, ds, de, di, 3);
    assert_float_equal(di[0], 0.5f, 0);
    assert_float_equal(di[1], 0.5f, 0); /* overlaps "ab" and "cde": the max */
    assert_float_equal(di[2], 0.9f, 0);
}

/* ------------------------------------------------------------------ scoring vs float64 */

/* A float64 forward pass of an F32 llama model that records post-RoPE q and k. */
typedef struct { int T, L, H, KVH, D; double *q, *k; } qk_record; /* [L][T][H or KVH][D] */

static void ref_rmsnorm(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * s * w[i];
}

static void ref_matvec(double *o, const sp_weight *w, const double *x) {
    const float *W = w->data;
    for (int64_t r = 0; r < w->n_out; r++) {
        double s = 0;
        for (int64_t i = 0; i < w->n_in; i++) s += (double)W[r * w->n_in + i] * x[i];
        o[r] = s;
    }
}

static void ref_rope(double *v, int nh, int hd, int pos, const sp_model *m) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd / 2; i++) {
            double th = pos * pow(m->rope.base, -2.0 * i / hd);
            if (m->rope.freq_factors) th /= m->rope.freq_factors[i];
            double *x = v + h * hd, a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cos(th) - b * sin(th);
            x[2 * i + 1] = a * sin(th) + b * cos(th);
        }
}

/* Runs tokens[0..T) and returns the greedy next token after the last one. */
static int ref_forward(const sp_model *m, const sp_token *tok, int T, qk_record *r) {
    const sp_model_info *in = &m->info;
    const int d = in->n_embd, H = in->n_head, KVH = in->n_head_kv, D = in->head_dim, F = in->n_ff, V = in->n_vocab;
    double *x = calloc((size_t)T * d, 8), *h = malloc((size_t)d * 8), *att = malloc((size_t)H * D * 8);
    double *o = malloc((size_t)(F > d ? F : d) * 8), *g = malloc((size_t)F * 8), *u = malloc((size_t)F * 8);
    double *vv = malloc((size_t)in->n_layer * T * KVH * D * 8), *logit = malloc((size_t)V * 8);
    r->T = T; r->L = in->n_layer; r->H = H; r->KVH = KVH; r->D = D;
    r->q = malloc((size_t)in->n_layer * T * H * D * 8);
    r->k = malloc((size_t)in->n_layer * T * KVH * D * 8);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) x[t * d + i] = ((const float *)m->tok_embd.data)[(size_t)tok[t] * d + i];
    for (int l = 0; l < in->n_layer; l++) {
        const sp_layer *Ly = &m->layers[l];
        double *Q = r->q + (size_t)l * T * H * D, *K = r->k + (size_t)l * T * KVH * D, *Vv = vv + (size_t)l * T * KVH * D;
        for (int t = 0; t < T; t++) {
            ref_rmsnorm(h, x + t * d, Ly->attn_norm, d, in->rms_eps);
            ref_matvec(Q + t * H * D, &Ly->wq, h);
            ref_matvec(K + t * KVH * D, &Ly->wk, h);
            ref_matvec(Vv + t * KVH * D, &Ly->wv, h);
            ref_rope(Q + t * H * D, H, D, t, m);
            ref_rope(K + t * KVH * D, KVH, D, t, m);
        }
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < H; hh++) {
                const int kv = hh / (H / KVH);
                double mx = -1e300, *p = malloc((size_t)(t + 1) * 8), sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int e = 0; e < D; e++) s += Q[(t * H + hh) * D + e] * K[(j * KVH + kv) * D + e];
                    p[j] = s / sqrt(D);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
                for (int e = 0; e < D; e++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++) a += p[j] / sum * Vv[(j * KVH + kv) * D + e];
                    att[hh * D + e] = a;
                }
                free(p);
            }
            ref_matvec(o, &Ly->wo, att);
            for (int i = 0; i < d; i++) x[t * d + i] += o[i];
            ref_rmsnorm(h, x + t * d, Ly->ffn_norm, d, in->rms_eps);
            ref_matvec(g, &Ly->gate, h);
            ref_matvec(u, &Ly->up, h);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(o, &Ly->down, g);
            for (int i = 0; i < d; i++) x[t * d + i] += o[i];
        }
    }
    ref_rmsnorm(h, x + (T - 1) * d, m->output_norm, d, in->rms_eps);
    ref_matvec(logit, &m->output, h);
    int best = 0;
    for (int i = 1; i < V; i++) if (logit[i] > logit[best]) best = i;
    free(x); free(h); free(att); free(o); free(g); free(u); free(vv); free(logit);
    return best;
}

static void scoring_matches_float64_recomputation(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f32");
    const int n = 40, K = 4, pool = 5;
    sp_token prompt[64];
    for (int i = 0; i < n; i++) prompt[i] = (i * 131 + 7) % 1000;
    /* the reference: draft = the same model; K-1 greedy tokens appended */
    int T = n;
    qk_record r = {0};
    for (int k = 1; k < K; k++) {
        prompt[T] = ref_forward(m, prompt, T, &r);
        free(r.q); free(r.k);
        T++;
    }
    ref_forward(m, prompt, T, &r);
    double *want = calloc((size_t)n, 8), *row = malloc((size_t)n * 8), *acc = malloc((size_t)n * 8);
    for (int q = n - 1; q < n - 1 + K; q++) {
        for (int j = 0; j < n; j++) acc[j] = 0;
        for (int l = 0; l < r.L; l++)
            for (int h = 0; h < r.H; h++) {
                const int kv = h / (r.H / r.KVH);
                double mx = -1e300, sum = 0;
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int e = 0; e < r.D; e++)
                        s += r.q[(((size_t)l * r.T + q) * r.H + h) * r.D + e] * r.k[(((size_t)l * r.T + j) * r.KVH + kv) * r.D + e];
                    row[j] = s / sqrt(r.D);
                    if (row[j] > mx) mx = row[j];
                }
                for (int j = 0; j < n; j++) sum += (row[j] = exp(row[j] - mx));
                for (int j = 0; j < n; j++) {
                    int lo = j - pool / 2 < 0 ? 0 : j - pool / 2, hi = j + pool / 2 + 1 > n ? n : j + pool / 2 + 1;
                    double a = 0;
                    for (int i = lo; i < hi; i++) a += row[i] / sum;
                    a /= hi - lo;
                    if (a > acc[j]) acc[j] = a;
                }
            }
        for (int j = 0; j < n; j++) want[j] += acc[j] / K;
    }
    /* the engine, with an F32 KV cache so only float rounding separates the two */
    sp_context *main_ctx = context(m, 64, SP_KV_F32), *draft = context(m, 64, SP_KV_F32);
    sp_specprefill_params p = sp_specprefill_default_params();
    p.lookahead = K;
    p.pool_kernel = pool;
    p.self_layers = m->info.n_layer; /* self-speculation with every layer = draft is the model */
    float logits[TEST_VOCAB], imp[64];
    uint8_t kept[64];
    sp_specprefill_stats s;
    assert_int_equal(sp_specprefill(main_ctx, draft, prompt, n, NULL, &p, logits, imp, kept, &s), SP_OK);
    assert_int_equal(s.n_lookahead, K);
    double worst = 0, total = 0;
    for (int j = 0; j < n; j++) { worst = fmax(worst, fabs(imp[j] - want[j])); total += want[j]; }
    printf("  importance: max |engine - float64| = %.2e (scores sum to %.3f)\n", worst, total);
    assert_true(worst < 2e-8); /* measured 2e-9: float rounding only */
    free(want); free(row); free(acc); free(r.q); free(r.k);
    sp_context_free(main_ctx);
    sp_context_free(draft);
    sp_model_free(m);
}

/* ------------------------------------------------------------------ prefill contract */

/* keep 1.0 gives exactly the full prefill's logits. */
static void keep_all_equals_full_prefill(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen2-q4_k_m");
    const int n = 100;
    sp_token prompt[100];
    int32_t pos[100];
    for (int i = 0; i < n; i++) { prompt[i] = (i * 17 + 3) % 1100; pos[i] = i; }
    sp_context *a = context(m, 128, SP_KV_F16), *b = context(m, 128, SP_KV_F16), *d = context(m, 128, SP_KV_F16);
    float full[TEST_VOCAB], spec[TEST_VOCAB];
    int32_t last = n - 1;
    assert_int_equal(sp_decode(a, prompt, pos, n, &last, 1, full), SP_OK);
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 1;
    sp_specprefill_stats s;
    assert_int_equal(sp_specprefill(b, d, prompt, n, NULL, &p, spec, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_kept, n);
    assert_memory_equal(full, spec, sizeof full);
    /* and decoding continues identically at position n */
    sp_token next = 5;
    int32_t np = n, row = 0;
    assert_int_equal(sp_decode(a, &next, &np, 1, &row, 1, full), SP_OK);
    assert_int_equal(sp_decode(b, &next, &np, 1, &row, 1, spec), SP_OK);
    assert_memory_equal(full, spec, sizeof full);
    sp_context_free(a); sp_context_free(b); sp_context_free(d);
    sp_model_free(m);
}

/* The sparse prefill reproduces llama.cpp's logits for the gapped-position fixture: a prompt
 * of 998 tokens of which exactly the fixture's 40 are kept. */
static void sparse_prefill_matches_gapped_fixture(void **st) {
    (void)st;
    SKIP_WITHOUT_SHARED();
    cJSON *c = load_json(SHARED("fixtures/logits/llama-q4_k_m.gapped.json"));
    sp_model *m = load_fixture_model("llama-q4_k_m.gguf");
    const cJSON *toks = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "tokens"), 0);
    const cJSON *poss = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "positions"), 0);
    const cJSON *ref = cJSON_GetObjectItem(c, "logits");
    const int nk = cJSON_GetArraySize(toks), n = cJSON_GetArrayItem(poss, nk - 1)->valueint + 1;
    sp_token *prompt = malloc((size_t)n * sizeof *prompt);
    uint8_t *kept = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) prompt[i] = (i * 7) % 1000; /* dropped tokens: anything */
    for (int i = 0; i < nk; i++) {
        int p = cJSON_GetArrayItem(poss, i)->valueint;
        prompt[p] = cJSON_GetArrayItem(toks, i)->valueint;
        kept[p] = 1;
    }
    sp_context *ctx = context(m, 64, SP_KV_F16);
    float logits[1024];
    assert_int_equal(sp_prefill_kept(ctx, prompt, n, kept, logits), SP_OK);
    assert_int_equal(sp_context_n_cached(ctx), nk); /* KV memory holds only the kept tokens */
    const cJSON *last = cJSON_GetArrayItem(ref, nk - 1);
    double worst = 0;
    for (int k = 0; k < 1024; k++) worst = fmax(worst, fabs(logits[k] - cJSON_GetArrayItem(last, k)->valuedouble));
    assert_true(worst <= cJSON_GetObjectItem(c, "tolerance")->valuedouble);
    sp_context_free(ctx);
    free(prompt); free(kept);
    sp_model_free(m);
    cJSON_Delete(c);
}

/* BOS, control tokens and the last chunk survive any keep rate; the budget is respected. */
static void always_kept_tokens(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0"); /* 1110 = BOS, 1112/1113 control */
    const int n = 320;
    sp_token prompt[320];
    for (int i = 0; i < n; i++) prompt[i] = (i * 29 + 1) % 1100;
    prompt[0] = TEST_BOS;
    prompt[150] = 1113;
    prompt[151] = 1112;
    sp_context *a = context(m, 400, SP_KV_F16), *d = context(m, 400, SP_KV_F16);
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 0.1f; /* 10 chunks → 1 chunk budget, taken by the last chunk */
    float logits[TEST_VOCAB];
    uint8_t kept[320];
    float imp[320];
    sp_specprefill_stats s;
    assert_int_equal(sp_specprefill(a, d, prompt, n, NULL, &p, logits, imp, kept, &s), SP_OK);
    assert_true(kept[0] && kept[150] && kept[151]);
    for (int i = n - 32; i < n; i++) assert_true(kept[i]);
    assert_int_equal(s.n_kept, 32 + 3);
    assert_int_equal(sp_context_n_cached(a), 35);
    assert_int_equal(sp_context_last_pos(a), n - 1);
    /* self-speculation over the first layer only */
    sp_context_reset(a);
    p.self_layers = 1;
    p.keep_rate = 0.3f;
    assert_int_equal(sp_specprefill(a, d, prompt, n, NULL, &p, logits, imp, kept, &s), SP_OK);
    assert_true(s.n_kept >= 96 && s.n_kept <= 96 + 3);
    for (int i = 0; i < n; i++) assert_true(imp[i] >= 0 && imp[i] <= 1);
    sp_context_free(a); sp_context_free(d);
    sp_model_free(m);
}

/* A draft with another tokenizer: refused by default with the first differing token named;
 * with any_vocab the scores travel through byte spans. */
static void cross_tokenizer_draft(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    char path[512];
    make_test_model("--n-embd 64 --n-layer 2 --n-head 2 --n-head-kv 1 --n-ff 128 --n-vocab 300", "draft.gguf", path, sizeof path);
    sp_model *dm;
    assert_int_equal(sp_model_load(path, &dm), SP_OK);
    assert_int_equal(sp_vocab_check_same(m, dm), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "at token 0"));
    const char *text = "The access code of Maria Lopez is 48213. Remember it well, and the weather is fine today.";
    sp_token *prompt;
    int n;
    assert_int_equal(sp_tokenize(m, text, strlen(text), true, false, &prompt, &n), SP_OK);
    sp_context *a = context(m, 256, SP_KV_F16), *d = context(dm, 256, SP_KV_F16);
    sp_specprefill_params p = sp_specprefill_default_params();
    p.chunk = 4;
    float logits[TEST_VOCAB], imp[256];
    uint8_t kept[256];
    sp_specprefill_stats s;
    assert_int_equal(sp_specprefill(a, d, prompt, n, text, &p, logits, imp, kept, &s), SP_ERR_ARGUMENT);
    p.any_vocab = true;
    assert_int_equal(sp_specprefill(a, d, prompt, n, text, &p, logits, imp, kept, &s), SP_OK);
    /* the expected map, computed here: the draft scores its own tokens of the text; each main
     * token takes the max over the draft tokens whose bytes overlap its own (BOS, not in the
     * text, has an empty span and takes nothing) */
    sp_token *dtok;
    int nd;
    assert_int_equal(sp_tokenize(dm, text, strlen(text), false, false, &dtok, &nd), SP_OK);
    float dimp[256];
    sp_specprefill_params own = p;
    own.any_vocab = false;
    own.self_layers = sp_model_get_info(dm)->n_layer; /* main model = the draft: every layer scores */
    assert_int_equal(sp_specprefill_score(d, dm, dtok, nd, NULL, &own, dimp, NULL), SP_OK);
    int ds[256], de[256], ms[256], me[256];
    char piece[64];
    for (int k = 0, at = 0; k < nd; k++) { ds[k] = at; at += sp_token_to_bytes(dm, dtok[k], false, piece, sizeof piece); de[k] = at; }
    for (int i = 0, at = 0; i < n; i++) {
        ms[i] = at;
        if (!(i == 0 && prompt[0] == sp_token_bos(m))) at += sp_token_to_bytes(m, prompt[i], false, piece, sizeof piece);
        me[i] = at;
    }
    assert_int_equal(me[n - 1], (int)strlen(text));
    int scored = 0;
    for (int i = 0; i < n; i++) {
        float want = 0;
        for (int k = 0; k < nd; k++)
            if (ds[k] < me[i] && de[k] > ms[i] && dimp[k] > want) want = dimp[k];
        assert_float_equal(imp[i], want, 1e-7);
        scored += want > 0;
    }
    assert_true(scored >= n - 1);
    assert_true(kept[0] && kept[n - 1]);
    free(dtok);
    free(prompt);
    sp_context_free(a); sp_context_free(d);
    sp_model_free(dm);
    sp_model_free(m);
    remove(path);
}

/* sp_specprefill is its three public stages in a row: scoring, selection and the sparse prefill
 * called one by one give the same importance, the same kept set and the same logits, bit for bit;
 * and the selection stage keeps BOS, control tokens and the last chunk on top of its budget. */
static void stages_compose_to_specprefill(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen3-q8_0");
    const int n = 231;
    sp_token prompt[231];
    for (int j = 0; j < n; j++) prompt[j] = (j * 7 + 3) % 1100;
    prompt[0] = TEST_BOS;
    prompt[100] = 1113; /* a control token mid-prompt */
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 0.25f;
    p.self_layers = 1;
    sp_context *a = context(m, 300, SP_KV_F16), *b = context(m, 300, SP_KV_F16), *d = context(m, 300, SP_KV_F16);
    float la[TEST_VOCAB], lb[TEST_VOCAB], ia[231], ib[231];
    uint8_t ka[231], kb[231];
    sp_specprefill_stats sa, sb;
    assert_int_equal(sp_specprefill(a, d, prompt, n, NULL, &p, la, ia, ka, &sa), SP_OK);
    assert_int_equal(sp_specprefill_score(d, m, prompt, n, NULL, &p, ib, &sb), SP_OK);
    int n_kept = -1;
    assert_int_equal(sp_specprefill_select(m, prompt, n, ib, &p, kb, &n_kept), SP_OK);
    assert_int_equal(sp_prefill_kept(b, prompt, n, kb, lb), SP_OK);
    assert_memory_equal(ia, ib, sizeof ia);
    assert_memory_equal(ka, kb, sizeof ka);
    assert_memory_equal(la, lb, sizeof la);
    assert_int_equal(n_kept, sa.n_kept);
    assert_int_equal(sb.n_lookahead, sa.n_lookahead);
    assert_int_equal(sp_context_n_cached(b), n_kept);
    /* 8 chunks → a budget of 2, the last chunk (23 tokens) one of them; BOS and the control token on top */
    assert_true(kb[0] && kb[100]);
    for (int j = 224; j < n; j++) assert_true(kb[j]);
    int in_budget = 0;
    for (int j = 0; j < n; j++) in_budget += kb[j] && j != 0 && j != 100;
    assert_true(in_budget <= 32 + 23);
    /* the stages check their arguments like the whole */
    p.keep_rate = 0;
    assert_int_equal(sp_specprefill_score(d, m, prompt, n, NULL, &p, ib, NULL), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "keep rate"));
    assert_int_equal(sp_specprefill_select(m, prompt, n, ib, &p, kb, NULL), SP_ERR_ARGUMENT);
    assert_int_equal(sp_specprefill_params_check(&p), SP_ERR_ARGUMENT);
    p = sp_specprefill_default_params();
    p.keep_min = 0.5f; p.keep_max = 0.4f;
    assert_int_equal(sp_specprefill_params_check(&p), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "keep-min"));
    p = sp_specprefill_default_params();
    kb[n - 1] = 0;
    sp_context_reset(b);
    assert_int_equal(sp_prefill_kept(b, prompt, n, kb, lb), SP_ERR_ARGUMENT);
    assert_int_equal(sp_context_n_cached(b), 0);
    sp_context_free(a); sp_context_free(b); sp_context_free(d);
    sp_model_free(m);
}

/* ------------------------------------------------------------------ the next turn */

static float max_abs_diff(const float *a, const float *b, int n) {
    float d = 0;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static int argmax_of(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* A follow-up on the same document: the second turn's prompt is the first one, its answer and a
 * question. sp_specprefill_cached reads neither model's cache again, selects the new tokens as a
 * prompt of their own, and ends where a cold prefill of the same kept set ends. */
static void cached_turn_equals_cold_with_same_keep_set(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen3-q8_0"), *dm = load_test_model("llama-q8_0");
    enum { N1 = 231, G = 5, N2 = N1 + G + 70 };
    sp_token p2[N2];
    for (int j = 0; j < N2; j++) p2[j] = (j * 7 + 3) % 1100;
    p2[0] = TEST_BOS;
    p2[100] = 1113;
    p2[N1 + G + 3] = 1114; /* chat markup in the new part */
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 0.25f;
    sp_context *a = context(m, 400, SP_KV_F16), *b = context(m, 400, SP_KV_F16);
    sp_context *d = context(dm, 400, SP_KV_F16), *d2 = context(dm, 400, SP_KV_F16);
    float l1[TEST_VOCAB], l2[TEST_VOCAB], lc[TEST_VOCAB], i2[N2], ic[N2];
    uint8_t k1[N1], k2[N2];
    sp_specprefill_stats s1, s2;
    /* turn 1 on empty contexts, then an answer of G tokens (the last one not decoded yet) */
    assert_int_equal(sp_specprefill_cached(a, d, p2, N1, 0, NULL, &p, l1, NULL, k1, &s1), SP_OK);
    assert_int_equal(s1.n_reused + s1.n_reused_kept + s1.n_draft_reused, 0);
    for (int g = 0; g < G; g++) {
        p2[N1 + g] = argmax_of(l1, TEST_VOCAB);
        int32_t pos = N1 + g, row = 0;
        if (g < G - 1) assert_int_equal(sp_decode(a, &p2[N1 + g], &pos, 1, &row, 1, l1), SP_OK);
    }
    /* turn 2: the caller vouches for the first N1 + G tokens (its record of turn 1) */
    assert_int_equal(sp_specprefill_cached(a, d, p2, N2, N1 + G, NULL, &p, l2, i2, k2, &s2), SP_OK);
    const int start = N1 + G - 1; /* the last answer token never reached the cache */
    assert_int_equal(s2.n_reused, start);
    assert_true(s2.n_draft_reused >= N1 - 1 && s2.n_draft_reused < N2);
    int kept1 = 0;
    for (int j = 0; j < N1; j++) {
        assert_int_equal(k2[j], k1[j]); /* the first turn's selection stands */
        kept1 += k1[j];
    }
    for (int j = N1; j < start; j++) assert_int_equal(k2[j], 1); /* the answer is in the cache */
    assert_int_equal(s2.n_reused_kept, kept1 + G - 1);
    /* the new part is selected as a prompt of its own: its chunks, its budget, its last chunk */
    uint8_t ks[N2];
    int n_new = 0;
    assert_int_equal(sp_specprefill_select(m, p2 + start, N2 - start, i2 + start, &p, ks, &n_new), SP_OK);
    assert_memory_equal(k2 + start, ks, N2 - start);
    assert_int_equal(s2.n_kept, s2.n_reused_kept + n_new);
    assert_int_equal(sp_context_n_cached(a), s2.n_kept);
    assert_true(k2[N1 + G + 3] && k2[N2 - 1]);
    /* the same kept set, cold: the same logits (other batch splits round otherwise: a bound) */
    assert_int_equal(sp_prefill_kept(b, p2, N2, k2, lc), SP_OK);
    const float dl = max_abs_diff(l2, lc, TEST_VOCAB);
    print_message("cached vs cold logits: max |diff| %g\n", dl);
    assert_true(dl < 1e-4f);
    assert_int_equal(argmax_of(l2, TEST_VOCAB), argmax_of(lc, TEST_VOCAB));
    /* and the draft's scores of the whole prompt are a cold draft's */
    assert_int_equal(sp_specprefill_score(d2, m, p2, N2, NULL, &p, ic, NULL), SP_OK);
    for (int j = 0; j < N2; j++) assert_true(fabsf(i2[j] - ic[j]) <= 1e-3f * fmaxf(ic[j], 1e-3f) + 1e-6f);
    /* the same prompt again: everything but the last token comes from the caches */
    float l3[TEST_VOCAB];
    uint8_t k3[N2];
    sp_specprefill_stats s3;
    assert_int_equal(sp_specprefill_cached(a, d, p2, N2, N2, NULL, &p, l3, NULL, k3, &s3), SP_OK);
    assert_int_equal(s3.n_reused, N2 - 1);
    assert_int_equal(s3.n_draft_reused, N2 - 1);
    assert_memory_equal(k3, k2, N2);
    assert_true(max_abs_diff(l3, l2, TEST_VOCAB) < 1e-4f);
    /* a vouched prefix that a cached token contradicts: the reuse ends before that token */
    int first_kept_after_bos = 1;
    while (!k2[first_kept_after_bos]) first_kept_after_bos++;
    p2[first_kept_after_bos] = (p2[first_kept_after_bos] + 1) % 1100;
    assert_int_equal(sp_specprefill_cached(a, d, p2, N2, N2, NULL, &p, l3, NULL, k3, &s3), SP_OK);
    assert_int_equal(s3.n_reused, 1);
    assert_int_equal(s3.n_reused_kept, 1);
    assert_int_equal(s3.n_draft_reused, first_kept_after_bos);
    /* n_reuse 0: the main model starts afresh (the draft still keeps what is this prompt) */
    assert_int_equal(sp_specprefill_cached(a, d, p2, N2, 0, NULL, &p, l3, NULL, k3, &s3), SP_OK);
    assert_int_equal(s3.n_reused + s3.n_reused_kept, 0);
    assert_int_equal(s3.n_draft_reused, N2 - 1);
    /* an error leaves neither cache holding part of the prompt */
    p2[N2 - 1] = 99999;
    assert_int_equal(sp_specprefill_cached(a, d, p2, N2, N2, NULL, &p, l3, NULL, k3, &s3), SP_ERR_ARGUMENT);
    sp_context_free(a); sp_context_free(b); sp_context_free(d); sp_context_free(d2);
    sp_model_free(m); sp_model_free(dm);
}

/* Self-speculation fills only the first self_layers layers of its cache: another count cannot
 * reuse it. */
static void cached_self_speculation_by_layers(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen3-q8_0");
    enum { N = 120 };
    sp_token t[N];
    for (int j = 0; j < N; j++) t[j] = (j * 11 + 5) % 1100;
    sp_specprefill_params p = sp_specprefill_default_params();
    p.self_layers = 1;
    sp_context *a = context(m, 200, SP_KV_F16), *d = context(m, 200, SP_KV_F16);
    float l[TEST_VOCAB];
    sp_specprefill_stats s;
    assert_int_equal(sp_specprefill_cached(a, d, t, N, 0, NULL, &p, l, NULL, NULL, &s), SP_OK);
    assert_int_equal(sp_specprefill_cached(a, d, t, N, N, NULL, &p, l, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_draft_reused, N - 1);
    p.self_layers = 2;
    assert_int_equal(sp_specprefill_cached(a, d, t, N, N, NULL, &p, l, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_draft_reused, 0);
    assert_int_equal(s.n_reused, N - 1);
    sp_context_free(a); sp_context_free(d);
    sp_model_free(m);
}

/* Positions past the training context (a model of 64): an AUTO context reads a sequence within it
 * exactly as trained, whatever the context's size; a longer one with YaRN by its length; the
 * scaling is the sequence's (a context that holds tokens keeps its own); a saved cache carries it
 * into an AUTO context and is refused by a context told to scale otherwise. */
static void rope_scaling_per_sequence(void **st) {
    (void)st;
    char path[1024];
    make_test_model("--arch qwen2 --n-vocab 300 --n-embd 64 --n-layer 2 --n-head 2 --n-head-kv 1 --n-ff 128 --ctx 64 --seed 5",
                    "rope-ctx64.gguf", path, sizeof path);
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    enum { N = 160, V = 300 };
    sp_token t[N];
    int32_t pos[N];
    for (int j = 0; j < N; j++) t[j] = (j * 37 + 5) % V, pos[j] = j;
    sp_context *small = context(m, 64, SP_KV_F32), *big = context(m, 256, SP_KV_F32), *none;
    sp_context_params np = sp_context_default_params();
    np.n_ctx = 256;
    np.kv_type = SP_KV_F32;
    np.rope_scaling = SP_ROPE_SCALING_NONE;
    assert_int_equal(sp_context_new(m, &np, &none), SP_OK);
    float a[V], b[V], factor = 0;
    int32_t last = 39;
    /* within the training context: as trained, in a context of 64 or of 256 */
    assert_int_equal(sp_context_fit_rope(small, 40), SP_OK);
    assert_int_equal(sp_context_fit_rope(big, 40), SP_OK);
    assert_int_equal(sp_context_rope_scaling(big, &factor), SP_ROPE_SCALING_NONE);
    assert_true(factor == 1.0f);
    assert_int_equal(sp_decode(small, t, pos, 40, &last, 1, a), SP_OK);
    assert_int_equal(sp_decode(big, t, pos, 40, &last, 1, b), SP_OK);
    assert_memory_equal(a, b, sizeof a);
    /* longer: YaRN by 128 / 64; a context told NONE reads the positions as they are */
    sp_context_reset(big);
    assert_int_equal(sp_context_fit_rope(big, 128), SP_OK);
    assert_int_equal(sp_context_rope_scaling(big, &factor), SP_ROPE_SCALING_YARN);
    assert_true(factor == 2.0f);
    assert_int_equal(sp_context_fit_rope(none, 128), SP_OK);
    assert_int_equal(sp_context_rope_scaling(none, &factor), SP_ROPE_SCALING_NONE);
    last = 127;
    assert_int_equal(sp_decode(big, t, pos, 128, &last, 1, a), SP_OK);
    assert_int_equal(sp_decode(none, t, pos, 128, &last, 1, b), SP_OK);
    assert_memory_not_equal(a, b, sizeof a);
    /* a context holding tokens keeps its scaling */
    assert_int_equal(sp_context_fit_rope(big, 40), SP_OK);
    assert_int_equal(sp_context_rope_scaling(big, &factor), SP_ROPE_SCALING_YARN);
    assert_true(factor == 2.0f);
    /* the saved cache carries it: an AUTO context (now as trained) takes it and continues bit for
     * bit; the NONE context refuses it */
    const size_t size = sp_context_state_size(big);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(sp_context_state_save(big, buf, size), SP_OK);
    sp_context *other = context(m, 256, SP_KV_F32);
    assert_int_equal(sp_context_rope_scaling(other, &factor), SP_ROPE_SCALING_NONE);
    assert_int_equal(sp_context_state_load(other, buf, size), SP_OK);
    assert_int_equal(sp_context_rope_scaling(other, &factor), SP_ROPE_SCALING_YARN);
    assert_true(factor == 2.0f);
    assert_int_equal(sp_context_state_load(none, buf, size), SP_ERR_ARGUMENT);
    int32_t row = 0, next = 128;
    assert_int_equal(sp_decode(big, &t[128], &next, 1, &row, 1, a), SP_OK);
    assert_int_equal(sp_decode(other, &t[128], &next, 1, &row, 1, b), SP_OK);
    assert_memory_equal(a, b, sizeof a);
    free(buf);
    sp_context_free(small); sp_context_free(big); sp_context_free(none); sp_context_free(other);
    sp_model_free(m);
}

/* A cache set aside as bytes and put back continues exactly where it was; bytes of another
 * model, another KV type, a smaller context or a damaged buffer are refused and change nothing. */
static void cache_state_round_trip(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen3-q8_0"), *other = load_test_model("llama-q8_0");
    enum { N = 150 };
    sp_token t[N];
    for (int j = 0; j < N; j++) t[j] = (j * 13 + 1) % 1100;
    sp_specprefill_params p = sp_specprefill_default_params();
    p.self_layers = 1;
    sp_context *a = context(m, 200, SP_KV_F16), *d = context(m, 200, SP_KV_F16), *b = context(m, 200, SP_KV_F16);
    float la[TEST_VOCAB], lb[TEST_VOCAB];
    assert_int_equal(sp_specprefill(a, d, t, N - 20, NULL, &p, la, NULL, NULL, NULL), SP_OK);
    const size_t size = sp_context_state_size(a);
    uint8_t *buf = malloc(size), *bad = malloc(size + 8);
    assert_int_equal(sp_context_state_save(a, buf, size - 1), SP_ERR_ARGUMENT);
    assert_int_equal(sp_context_state_save(a, buf, size), SP_OK);
    /* b holds something else; after the load it continues as a does, bit for bit */
    int32_t pos[10];
    for (int i = 0; i < 10; i++) pos[i] = i;
    assert_int_equal(sp_decode(b, t + 50, pos, 10, NULL, 0, NULL), SP_OK);
    assert_int_equal(sp_context_state_load(b, buf, size), SP_OK);
    assert_int_equal(sp_context_n_cached(b), sp_context_n_cached(a));
    assert_int_equal(sp_context_last_pos(b), sp_context_last_pos(a));
    int32_t next = N - 20, row = 0;
    assert_int_equal(sp_decode(a, &t[N - 20], &next, 1, &row, 1, la), SP_OK);
    assert_int_equal(sp_decode(b, &t[N - 20], &next, 1, &row, 1, lb), SP_OK);
    assert_memory_equal(la, lb, sizeof la);
    /* refusals leave the context as it was */
    const int before = sp_context_n_cached(b);
    sp_context *o = context(other, 200, SP_KV_F16), *f32 = context(m, 200, SP_KV_F32), *small = context(m, 16, SP_KV_F16);
    assert_int_equal(sp_context_state_load(o, buf, size), SP_ERR_ARGUMENT);
    assert_int_equal(sp_context_state_load(f32, buf, size), SP_ERR_ARGUMENT);
    assert_int_equal(sp_context_state_load(small, buf, size), SP_ERR_CONTEXT_FULL);
    assert_int_equal(sp_context_state_load(b, buf, size - 1), SP_ERR_FORMAT);
    memcpy(bad, buf, size);
    bad[0] = 'X';
    assert_int_equal(sp_context_state_load(b, bad, size), SP_ERR_FORMAT);
    assert_int_equal(sp_context_n_cached(b), before);
    /* damaged bytes anywhere in the header, positions or tokens: refused or loaded, never a crash
     * (ASan watches), and a loaded cache holds only valid tokens */
    uint64_t r = 12345;
    const size_t checked = size < 48 + 8 * (size_t)sp_context_n_cached(a) ? size : 48 + 8 * (size_t)sp_context_n_cached(a);
    for (int it = 0; it < 3000; it++) {
        memcpy(bad, buf, size);
        for (int k = 0; k < 1 + it % 4; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            bad[(r >> 33) % checked] ^= (uint8_t)(1u << ((r >> 20) % 8));
        }
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        const size_t len = it % 7 == 0 ? (size_t)((r >> 33) % (size + 8)) : size;
        if (sp_context_state_load(b, bad, len) == SP_OK) {
            const sp_token *ids = b->cell_tok;
            for (int i = 0; i < sp_context_n_cached(b); i++) assert_true(ids[i] >= 0 && ids[i] < TEST_VOCAB);
        }
    }
    /* an empty cache round-trips too */
    sp_context_reset(b);
    const size_t empty = sp_context_state_size(b);
    assert_int_equal(sp_context_state_save(b, buf, empty), SP_OK);
    assert_int_equal(sp_context_state_load(a, buf, empty), SP_OK);
    assert_int_equal(sp_context_n_cached(a), 0);
    free(buf); free(bad);
    sp_context_free(a); sp_context_free(b); sp_context_free(d); sp_context_free(o); sp_context_free(f32); sp_context_free(small);
    sp_model_free(m); sp_model_free(other);
}

static void bad_parameters(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    sp_context *a = context(m, 64, SP_KV_F16), *d = context(m, 64, SP_KV_F16);
    sp_token prompt[4] = {1, 2, 3, 4};
    float logits[TEST_VOCAB];
    sp_specprefill_params p = sp_specprefill_default_params();
    p.keep_rate = 0;
    assert_int_equal(sp_specprefill(a, d, prompt, 4, NULL, &p, logits, NULL, NULL, NULL), SP_ERR_ARGUMENT);
    p = sp_specprefill_default_params();
    assert_int_equal(sp_specprefill(a, d, prompt, 0, NULL, &p, logits, NULL, NULL, NULL), SP_ERR_ARGUMENT);
    sp_token big[1] = {99999};
    assert_int_equal(sp_specprefill(a, d, big, 1, NULL, &p, logits, NULL, NULL, NULL), SP_ERR_ARGUMENT);
    assert_int_equal(sp_specprefill(a, d, prompt, 4, NULL, &p, logits, NULL, NULL, NULL), SP_OK);
    assert_int_equal(sp_specprefill(a, d, prompt, 4, NULL, &p, logits, NULL, NULL, NULL), SP_ERR_ARGUMENT); /* not empty */
    sp_context_free(a); sp_context_free(d);
    sp_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_papers), cmocka_unit_test(chunks_by_mean_score), cmocka_unit_test(bos_kept_by_id), cmocka_unit_test(adaptive_keep_by_mass),
        cmocka_unit_test(importance_through_byte_spans), cmocka_unit_test(scoring_matches_float64_recomputation),
        cmocka_unit_test(keep_all_equals_full_prefill), cmocka_unit_test(sparse_prefill_matches_gapped_fixture),
        cmocka_unit_test(always_kept_tokens), cmocka_unit_test(cross_tokenizer_draft), cmocka_unit_test(stages_compose_to_specprefill),
        cmocka_unit_test(bad_parameters), cmocka_unit_test(cached_turn_equals_cold_with_same_keep_set),
        cmocka_unit_test(cached_self_speculation_by_layers), cmocka_unit_test(cache_state_round_trip), cmocka_unit_test(rope_scaling_per_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
