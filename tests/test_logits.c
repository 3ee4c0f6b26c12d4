/* The forward pass against llama.cpp's logits for every fixture model, type and case, on every
 * kernel path this CPU has; and the F32 model against the float64 reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
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

static void fixtures_scalar(void **state) { (void)state; check_all_fixtures("scalar"); }
static void fixtures_avx2(void **state) { (void)state; check_all_fixtures("avx2"); }
static void fixtures_avx512(void **state) { (void)state; check_all_fixtures("avx512"); }

/* An engine computing in F32 with an F32 KV cache lands within ~1e-5 of the float64 result. */
static void float64_reference(void **state) {
    (void)state;
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixtures_scalar),
        cmocka_unit_test(fixtures_avx2),
        cmocka_unit_test(fixtures_avx512),
        cmocka_unit_test(float64_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
