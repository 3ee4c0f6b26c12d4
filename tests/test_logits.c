/* The forward pass against llama.cpp's logits for every fixture model, type and case, on every
 * kernel path this CPU has; and the F32 model against the float64 reference. These are the
 * second opinion of ../shared (skipped without it); tests/test_reference.sh is the first. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include "gguf.h"
#include "kernels.h"
#include "quant.h"
#include "quantize.h"
#include "test_util.h"

typedef struct { double max_dev, rms_dev; int argmax_checked, argmax_bad; } result;

/* Runs a fixture case file through the engine; compares with its logits. */
static result run_case(const char *model_file, const cJSON *c, sp_kv_type kv) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/models/%s", SP_SHARED_DIR, model_file);
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    const int n_vocab = sp_model_get_info(m)->n_vocab;
    const cJSON *tokens = cJSON_GetObjectItem(c, "tokens"), *positions = cJSON_GetObjectItem(c, "positions");
    const int logits_batch = cJSON_GetObjectItem(c, "logits_batch")->valueint;
    const cJSON *ref = cJSON_GetObjectItem(c, "logits");
    const cJSON *tol_item = cJSON_GetObjectItem(c, "tolerance");
    const double tol = tol_item ? tol_item->valuedouble : 1e-4;
    sp_context_params cp = sp_context_default_params();
    cp.kv_type = kv;
    cp.n_ctx = 256;
    cp.n_batch = 16; /* several micro-batches per case: exercises the KV appends */
    sp_context *ctx;
    assert_int_equal(sp_context_new(m, &cp, &ctx), SP_OK);
    result r = {0};
    for (int b = 0; b < cJSON_GetArraySize(tokens); b++) {
        const cJSON *tb = cJSON_GetArrayItem(tokens, b), *pb = cJSON_GetArrayItem(positions, b);
        const int n = cJSON_GetArraySize(tb);
        sp_token *t = malloc(sizeof *t * (size_t)n);
        int32_t *p = malloc(sizeof *p * (size_t)n), *rows = malloc(sizeof *rows * (size_t)n);
        for (int i = 0; i < n; i++) {
            t[i] = cJSON_GetArrayItem(tb, i)->valueint;
            p[i] = cJSON_GetArrayItem(pb, i)->valueint;
            rows[i] = i;
        }
        if (b == logits_batch) {
            float *out = malloc(sizeof *out * (size_t)n * n_vocab);
            assert_int_equal(sp_decode(ctx, t, p, n, rows, n, out), SP_OK);
            double sq = 0;
            for (int i = 0; i < n; i++) {
                const cJSON *row = cJSON_GetArrayItem(ref, i);
                int ref_best = 0, got_best = 0;
                double top1 = -1e30, top2 = -1e30;
                for (int k = 0; k < n_vocab; k++) {
                    double e = cJSON_GetArrayItem(row, k)->valuedouble, g = out[(size_t)i * n_vocab + k];
                    double dev = fabs(e - g);
                    if (dev > r.max_dev) r.max_dev = dev;
                    sq += dev * dev;
                    if (e > top1) { top2 = top1; top1 = e; ref_best = k; } else if (e > top2) top2 = e;
                    if (g > out[(size_t)i * n_vocab + got_best]) got_best = k;
                }
                /* argmax must agree where the reference's top two are well apart */
                if (top1 - top2 > 2 * tol) {
                    r.argmax_checked++;
                    if (ref_best != got_best) r.argmax_bad++;
                }
            }
            r.rms_dev = sqrt(sq / ((double)n * n_vocab));
            free(out);
        } else {
            assert_int_equal(sp_decode(ctx, t, p, n, NULL, 0, NULL), SP_OK);
        }
        free(t); free(p); free(rows);
    }
    sp_context_free(ctx);
    sp_model_free(m);
    return r;
}

static void check_all_fixtures(const char *isa) {
    SKIP_WITHOUT_SHARED();
    const sp_isa_kernels *k = sp_kernels_by_name(isa);
    if (!k) { printf("  (%s kernels not available on this CPU: skipped)\n", isa); skip(); }
    const sp_isa_kernels *saved = sp_kernels();
    sp_kernels_select(k);
    cJSON *tols = load_json(SHARED("fixtures/logits/tolerances.json"));
    static const char *const cases[] = {"contiguous", "gapped", "two_batches"};
    int checked = 0;
    const cJSON *model;
    cJSON_ArrayForEach(model, tols) {
        char stem[128];
        snprintf(stem, sizeof stem, "%s", model->string);
        *strstr(stem, ".gguf") = 0;
        for (int ci = 0; ci < 3; ci++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/fixtures/logits/%s.%s.json", SP_SHARED_DIR, stem, cases[ci]);
            cJSON *c = load_json(path);
            const double tol = cJSON_GetObjectItem(c, "tolerance")->valuedouble;
            const cJSON *stats = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(tols, model->string), "cases"), cases[ci]);
            const double rms_ref = cJSON_GetObjectItem(stats, "rms_dev_vs_f64")->valuedouble;
            result r = run_case(model->string, c, SP_KV_F16);
            if (r.max_dev > tol || r.rms_dev > 2 * rms_ref || r.argmax_bad > 0)
                fail_msg("[%s] %s %s: max dev %.5f (tolerance %.5f), rms %.6f (limit %.6f), argmax wrong on %d of %d rows",
                         isa, stem, cases[ci], r.max_dev, tol, r.rms_dev, 2 * rms_ref, r.argmax_bad, r.argmax_checked);
            checked++;
            cJSON_Delete(c);
        }
    }
    assert_int_equal(checked, 54);
    cJSON_Delete(tols);
    sp_kernels_select(saved);
}

/* SPECPREFILL_F16=bf16: F16 weights through the bf16 GEMM. Not within the exact fixture
 * tolerance (that is the point of the default), but close: argmax never changes and the largest
 * logit difference stays under 0.02. */
static void f16_weights_in_bf16(void **state) {
    (void)state;
    SKIP_WITHOUT_SHARED();
    const sp_isa_kernels *k = sp_kernels_by_name("avx512"); /* AMX's bf16 where the CPU has it */
    if (k && !k->gemm_bf16) k = sp_kernels_by_name("avx512-noamx"); /* "avx512" leaves bf16 out where it is the slower path */
    if (!k || !k->gemm_bf16) { printf("  (no bf16 dot product on this CPU: skipped)\n"); skip(); }
    const sp_isa_kernels *saved = sp_kernels();
    sp_kernels_select(k);
    cJSON *c = load_json(SHARED("fixtures/logits/llama-f16.contiguous.json"));
    const double tol = cJSON_GetObjectItem(c, "tolerance")->valuedouble;
    sp_set_f16_as_bf16(true);
    result r = run_case("llama-f16.gguf", c, SP_KV_F16);
    sp_set_f16_as_bf16(false);
    printf("  F16 via bf16: max dev %.4f (exact tolerance %.4f), argmax wrong on %d of %d rows\n", r.max_dev, tol,
           r.argmax_bad, r.argmax_checked);
    assert_true(r.max_dev > tol); /* the bf16 path really ran */
    assert_true(r.max_dev < 0.02);
    assert_int_equal(r.argmax_bad, 0);
    cJSON_Delete(c);
    sp_kernels_select(saved);
}

static void fixtures_scalar(void **state) { (void)state; check_all_fixtures("scalar"); }
static void fixtures_avx2(void **state) { (void)state; check_all_fixtures("avx2"); }
/* AVX2 with AVX-VNNI's integer products (Alder Lake and later without AVX-512) */
static void fixtures_avx2_vnni(void **state) { (void)state; check_all_fixtures("avx2-vnni"); }
static void fixtures_avx512(void **state) { (void)state; check_all_fixtures("avx512"); }
/* where "avx512" prefills with AMX, the VNNI and AVX-512 bf16 products it replaces, as a Zen 4/5 runs them */
static void fixtures_avx512_noamx(void **state) { (void)state; check_all_fixtures("avx512-noamx"); }

/* An engine computing in F32 with an F32 KV cache lands within ~1e-5 of the float64 result. */
static void float64_reference(void **state) {
    (void)state;
    SKIP_WITHOUT_SHARED();
    static const char *const files[] = {"llama-f32.contiguous.f64.json", "llama-f32.gapped.f64.json",
                                        "llama-f16.contiguous.f64.json", "llama-f16.gapped.f64.json"};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/logits/%s", SP_SHARED_DIR, files[i]);
        cJSON *c = load_json(path);
        result r = run_case(cJSON_GetObjectItem(c, "model")->valuestring, c, SP_KV_F32);
        if (r.max_dev > 5e-5) fail_msg("%s: max dev %.2e from the float64 reference", files[i], r.max_dev);
        cJSON_Delete(c);
    }
}

/* Logits of every row of a case, decoded with the model at `path`. */
static float *case_logits(const char *path, const cJSON *c, int *n_rows) {
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    const cJSON *tb = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "tokens"), 0), *pb = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "positions"), 0);
    const int n = cJSON_GetArraySize(tb), V = sp_model_get_info(m)->n_vocab;
    sp_token t[64];
    int32_t p[64], rows[64];
    for (int i = 0; i < n; i++) { t[i] = cJSON_GetArrayItem(tb, i)->valueint; p[i] = cJSON_GetArrayItem(pb, i)->valueint; rows[i] = i; }
    sp_context *ctx;
    assert_int_equal(sp_context_new(m, NULL, &ctx), SP_OK);
    float *out = malloc(sizeof *out * (size_t)n * V);
    assert_int_equal(sp_decode(ctx, t, p, n, rows, n, out), SP_OK);
    sp_context_free(ctx);
    sp_model_free(m);
    *n_rows = n * V;
    return out;
}

static double rms_diff(const float *a, const cJSON *ref_rows, int V) {
    double s = 0;
    int n = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, ref_rows) {
        for (int k = 0; k < V; k++, n++) {
            double d = a[n] - cJSON_GetArrayItem(row, k)->valuedouble;
            s += d * d;
        }
    }
    return sqrt(s / n);
}

/* Our quantizer against llama.cpp's: quantize the F32 fixture to each type and compare how far
 * the logits move from the F32 model's, with how far llama.cpp's own quantized files move. The
 * Q4_K_M mix must also pick the same type for every tensor as llama.cpp did. */
static void quantizer_matches_llama_cpp_quality(void **state) {
    (void)state;
    SKIP_WITHOUT_SHARED();
    static const char *const types[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q5_K", "Q4_K", "Q4_K_M"};
    cJSON *f32 = load_json(SHARED("fixtures/logits/llama-f32.contiguous.json"));
    const cJSON *ref = cJSON_GetObjectItem(f32, "logits");
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char out[512], lower[16], path[1024];
        temp_path("quant.gguf", out, sizeof out);
        sp_quant_plan plan;
        assert_true(sp_quant_plan_parse(types[i], &plan));
        assert_int_equal(sp_quantize_file(SHARED("fixtures/models/llama-f32.gguf"), out, &plan), SP_OK);
        int n;
        float *ours = case_logits(out, f32, &n);
        for (size_t k = 0; k <= strlen(types[i]); k++) lower[k] = (char)tolower((unsigned char)types[i][k]);
        snprintf(path, sizeof path, "%s/fixtures/logits/llama-%s.contiguous.json", SP_SHARED_DIR, lower);
        cJSON *theirs = load_json(path);
        const double ours_rms = rms_diff(ours, ref, 1024);
        /* llama.cpp's quantized logits vs its f32 logits */
        float *tl = malloc(sizeof *tl * (size_t)n);
        int idx = 0;
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(theirs, "logits")) {
            for (int k = 0; k < 1024; k++) tl[idx++] = (float)cJSON_GetArrayItem(row, k)->valuedouble;
        }
        const double their_rms = rms_diff(tl, ref, 1024);
        printf("  %-7s logits move by rms %.4f from F32 (llama.cpp's quantizer: %.4f)\n", types[i], ours_rms, their_rms);
        if (ours_rms > 1.2 * their_rms) fail_msg("%s quantizer error %.4f is more than 1.2x llama.cpp's %.4f", types[i], ours_rms, their_rms);
        if (strcmp(types[i], "Q4_K_M") == 0) {
            sp_gguf_file *a, *b;
            assert_int_equal(sp_gguf_open(out, false, &a), SP_OK);
            assert_int_equal(sp_gguf_open(SHARED("fixtures/models/llama-q4_k_m.gguf"), false, &b), SP_OK);
            for (uint64_t t = 0; t < b->n_tensors; t++) {
                const sp_gguf_tensor *x = &b->tensors[t];
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)x->name.len, x->name.ptr);
                const sp_gguf_tensor *y = sp_gguf_find_tensor(a, name);
                assert_non_null(y);
                if (x->type != y->type) fail_msg("Q4_K_M: %s is %s, llama.cpp made it %s", name, sp_type_name(y->type), sp_type_name(x->type));
            }
            sp_gguf_close(a);
            sp_gguf_close(b);
        }
        free(ours); free(tl);
        cJSON_Delete(theirs);
        remove(out);
    }
    cJSON_Delete(f32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixtures_scalar),
        cmocka_unit_test(fixtures_avx2),
        cmocka_unit_test(fixtures_avx512),
        cmocka_unit_test(fixtures_avx512_noamx),
        cmocka_unit_test(fixtures_avx2_vnni),
        cmocka_unit_test(float64_reference),
        cmocka_unit_test(f16_weights_in_bf16),
        cmocka_unit_test(quantizer_matches_llama_cpp_quality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
