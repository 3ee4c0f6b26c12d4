/* Tensor types and kernels: quantize/dequantize accuracy, fused dot == dequantize + dot, every
 * ISA path agrees with the scalar one, matmul shapes (1 row, many rows, odd sizes). */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fp16.h"
#include "gguf.h"
#include "kernels.h"
#include "quant.h"
#include "repack.h"
#include "test_util.h"
#include "threadpool.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1 << 24)) * 2 - 1;
}

/* Relative RMS error of quantize → dequantize for each writable type. */
static void quantize_round_trip(void **st) {
    (void)st;
    static const struct { int type; double max_rel_rms; } cases[] = {
        {SP_TYPE_F32, 0}, {SP_TYPE_F16, 1e-3}, {SP_TYPE_BF16, 5e-3}, {SP_TYPE_Q8_0, 0.01},
        {SP_TYPE_Q5_0, 0.04}, {SP_TYPE_Q5_1, 0.04}, {SP_TYPE_Q4_0, 0.09}, {SP_TYPE_Q4_1, 0.09},
        {SP_TYPE_Q6_K, 0.02}, {SP_TYPE_Q5_K, 0.04}, {SP_TYPE_Q4_K, 0.08},
    };
    const int n = 4096;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *q = malloc((size_t)n * 4);
    uint64_t s = 42;
    for (int i = 0; i < n; i++) x[i] = frand(&s);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const sp_type_traits *t = sp_type_traits_get((uint32_t)cases[c].type);
        assert_non_null(t->quantize);
        t->quantize(x, q, n);
        t->dequantize(q, y, n);
        double e = 0, r = 0;
        for (int i = 0; i < n; i++) { e += (x[i] - y[i]) * (x[i] - y[i]); r += x[i] * x[i]; }
        double rel = sqrt(e / r);
        if (rel > cases[c].max_rel_rms) fail_msg("%s: relative rms error %.4f > %.4f", t->name, rel, cases[c].max_rel_rms);
    }
    free(x); free(y); free(q);
}

/* A file of this type's blocks: llama.cpp's fixture when ../shared is there (an independent
 * quantizer), else the model the tests write (our quantizer; Q2_K and Q3_K it cannot write). */
static bool quantized_model(const char *name, char *path, size_t size) {
    if (shared_present()) {
        snprintf(path, size, "%s/fixtures/models/%s.gguf", SP_SHARED_DIR, name);
        return true;
    }
    if (strstr(name, "q2_k") || strstr(name, "q3_k")) return false;
    test_model_path(name, path, size);
    return true;
}

/* For every type, including the K-quants read from the fixtures, the fused dot equals the
 * dot of the dequantized row. */
static void fused_dot_matches_dequantize(void **st) {
    (void)st;
    static const char *const files[] = {"llama-q2_k", "llama-q3_k", "llama-q4_k", "llama-q5_k", "llama-q6_k",
                                        "llama-q4_0", "llama-q4_1", "llama-q5_0", "llama-q5_1", "llama-q8_0",
                                        "llama-f16", "llama-bf16", "llama-f32"};
    uint64_t s = 7;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[1024];
        if (!quantized_model(files[f], path, sizeof path)) continue;
        sp_gguf_file *g;
        assert_int_equal(sp_gguf_open(path, false, &g), SP_OK);
        const sp_gguf_tensor *t = sp_gguf_find_tensor(g, "blk.0.ffn_down.weight"); /* [768, 256] */
        assert_non_null(t);
        const sp_type_traits *tt = sp_type_traits_get(t->type);
        const int64_t n = t->ne[0];
        float *row = malloc((size_t)n * sizeof *row), *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = frand(&s);
        for (int r = 0; r < 8; r++) {
            const uint8_t *p = (const uint8_t *)t->data + (size_t)r * sp_row_size(t->type, n);
            tt->dequantize(p, row, n);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) { ref += (double)row[i] * x[i]; mag += fabs((double)row[i] * x[i]); }
            float got = tt->dot(p, x, n);
            if (fabs(got - ref) > 1e-5 * mag + 1e-7) fail_msg("%s row %d: fused dot %.7g vs %.7g", tt->name, r, got, ref);
            /* and each ISA's fused kernel for this type */
            static const char *const isas[] = {"avx2", "avx512"};
            for (int k = 0; k < 2; k++) {
                const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
                if (!isa || !isa->dot_row[t->type]) continue;
                float g = isa->dot_row[t->type](p, x, n);
                if (fabs(g - ref) > 1e-5 * mag + 1e-7) fail_msg("%s %s row %d: fused dot %.7g vs %.7g", isas[k], tt->name, r, g, ref);
            }
        }
        free(row); free(x);
        sp_gguf_close(g);
    }
}

/* Each ISA's primitives against the scalar ones, at sizes around the vector widths. */
static void isa_kernels_agree_with_scalar(void **st) {
    (void)st;
    const sp_isa_kernels *ref = sp_kernels_by_name("scalar");
    static const char *const isas[] = {"avx2", "avx512", "avx512-noamx"}; /* the last keeps bf16 wherever the CPU has it */
    static const int sizes[] = {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 100, 255, 256, 1000, 4099};
    uint64_t s = 3;
    int tested = 0;
    for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
        if (!isa) { printf("  %s not available here\n", isas[k]); continue; }
        tested++;
        for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
            const int n = sizes[z];
            float *a = malloc(4 * (size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b), *c = malloc((size_t)n * sizeof *c);
            uint16_t *h = malloc((size_t)n * 2), *h2 = malloc((size_t)n * 2 * 4);
            for (int i = 0; i < 4 * n; i++) a[i] = frand(&s);
            for (int i = 0; i < n; i++) b[i] = frand(&s);
            double mag = 0;
            for (int i = 0; i < n; i++) mag += fabs(a[i] * b[i]);
            assert_float_equal(isa->dot_f32(a, b, n), ref->dot_f32(a, b, n), 1e-5 * mag + 1e-6);
            { /* the prefill panels' transpose: exact, odd shapes and strides */
                const int rows = 1 + n % 37, cols = n, ldd = rows + 3;
                float *t1 = malloc((size_t)cols * ldd * sizeof *t1), *t2 = malloc((size_t)cols * ldd * sizeof *t2);
                float *src = malloc((size_t)rows * (cols + 5) * sizeof *src);
                for (int i = 0; i < rows * (cols + 5); i++) src[i] = frand(&s);
                for (int i = 0; i < cols * ldd; i++) t1[i] = t2[i] = -1;
                isa->transpose32(src, cols + 5, rows, cols, t1, ldd);
                sp_transpose32_scalar(src, cols + 5, rows, cols, t2, ldd);
                assert_memory_equal(t1, t2, (size_t)cols * ldd * sizeof *t1);
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++) assert_true(t2[c * ldd + r] == src[r * (cols + 5) + c]);
                free(t1); free(t2); free(src);
            }
            { /* 16-bit floats widened as they are transposed (F16 and BF16 rows into the f32 panels): exact */
                const int rows = 1 + n % 37, cols = n, ldd = rows + 3, lds = cols + 5;
                float *t1 = malloc((size_t)cols * ldd * sizeof *t1), *t2 = malloc((size_t)cols * ldd * sizeof *t2);
                uint16_t *src = malloc((size_t)rows * lds * sizeof *src);
                for (int i = 0; i < rows * lds; i++) src[i] = sp_f32_to_fp16(100 * frand(&s)); /* finite as binary16 and as bf16 */
                for (int bf = 0; bf < 2; bf++) {
                    for (int i = 0; i < cols * ldd; i++) t1[i] = t2[i] = -1;
                    isa->transpose16_to_f32(src, lds, rows, cols, t1, ldd, bf);
                    sp_transpose16_to_f32_scalar(src, lds, rows, cols, t2, ldd, bf);
                    assert_memory_equal(t1, t2, (size_t)cols * ldd * sizeof *t1);
                    for (int r = 0; r < rows; r++)
                        for (int c = 0; c < cols; c++) {
                            const uint16_t h = src[r * lds + c];
                            assert_true(t2[c * ldd + r] == (bf ? sp_bf16_to_f32(h) : sp_fp16_to_f32(h)));
                        }
                }
                free(t1); free(t2); free(src);
            }
            { /* attention's broadcast-form product, odd shapes, overwrite then accumulate */
                const int m = 1 + n % 7, nn = 1 + (3 * n) % 83, kk = 1 + n % 67;
                float *A = malloc((size_t)m * kk * sizeof *A), *B = malloc((size_t)kk * nn * sizeof *B);
                float *c1 = malloc((size_t)m * nn * sizeof *c1), *c2 = malloc((size_t)m * nn * sizeof *c2);
                for (int i = 0; i < m * kk; i++) A[i] = frand(&s);
                for (int i = 0; i < kk * nn; i++) B[i] = frand(&s);
                for (int pass = 0; pass < 4; pass++) { /* A as it is, then A read transposed */
                    const int64_t sai = pass < 2 ? kk : 1, sap = pass < 2 ? 1 : m;
                    isa->gemm_nn(A, sai, sap, B, nn, c1, nn, m, nn, kk, pass % 2 == 1);
                    ref->gemm_nn(A, sai, sap, B, nn, c2, nn, m, nn, kk, pass % 2 == 1);
                    for (int i = 0; i < m * nn; i++) assert_float_equal(c1[i], c2[i], 1e-5 * (kk + 1));
                }
                for (int whole = 0; whole < 2 && isa->softmax_tile; whole++) {
                    /* online softmax across rows: some rows see nothing, some all; then every row
                     * the whole tile (a form of its own in the SIMD sets) */
                    const int rows = 1 + (5 * n) % 37, keys = 1 + n % 64;
                    float *s1 = malloc((size_t)keys * rows * sizeof *s1), *s2 = malloc((size_t)keys * rows * sizeof *s2);
                    float m1[40], m2[40], l1[40], l2[40], c1v[40], c2v[40];
                    int live[40];
                    for (int r = 0; r < rows; r++) {
                        live[r] = whole ? keys + r % 2 : r % 3 == 0 ? 0 : r % 3 == 1 ? keys : (r * 7) % (keys + 1);
                        m1[r] = m2[r] = r % 4 == 0 ? -INFINITY : 2 * frand(&s);
                        l1[r] = l2[r] = m1[r] == -INFINITY ? 0 : 1 + frand(&s);
                    }
                    for (int i = 0; i < keys * rows; i++) s1[i] = s2[i] = 8 * frand(&s);
                    if (whole) s1[keys * rows / 2] = s2[keys * rows / 2] = -300; /* exp underflows */
                    isa->softmax_tile(s1, rows, keys, rows, live, m1, l1, c1v);
                    ref->softmax_tile(s2, rows, keys, rows, live, m2, l2, c2v);
                    for (int r = 0; r < rows; r++) {
                        assert_true(m1[r] == m2[r]);
                        assert_float_equal(l1[r], l2[r], 1e-5 * l2[r]);
                        assert_float_equal(c1v[r], c2v[r], 1e-6 * c2v[r]);
                    }
                    for (int i = 0; i < keys * rows; i++) assert_float_equal(s1[i], s2[i], 1e-6 * s2[i] + 1e-30);
                    free(s1); free(s2);
                }
                free(A); free(B); free(c1); free(c2);
            }
            if (isa->exp_shifted) { /* softmax numerators and SiLU: within a few ulp of expf */
                float *e1 = malloc((size_t)n * sizeof *e1), *e2 = malloc((size_t)n * sizeof *e2);
                for (int i = 0; i < n; i++) e1[i] = e2[i] = 30 * a[i] - 15;
                const float s1 = isa->exp_shifted(e1, n, 3.0f), s2 = ref->exp_shifted(e2, n, 3.0f);
                assert_float_equal(s1, s2, 1e-5 * s2); /* summation order differs */
                for (int i = 0; i < n; i++) assert_float_equal(e1[i], e2[i], 1e-6 * e2[i]);
                for (int i = 0; i < n; i++) e1[i] = e2[i] = 30 * a[i];
                isa->silu_mul(e1, b, n);
                ref->silu_mul(e2, b, n);
                for (int i = 0; i < n; i++) assert_float_equal(e1[i], e2[i], 1e-6 * fabs(e2[i]) + 1e-30);
                free(e1); free(e2);
            }
            if (isa->f16_to_bf16) { /* in place, rounded as the scalar conversion; infinities, NaN, subnormals */
                static const uint16_t special[] = {0x7C00, 0xFC00, 0x7E01, 0x0001, 0x8000, 0x03FF};
                for (int i = 0; i < n; i++) h[i] = i < 6 ? special[i] : sp_f32_to_fp16(1000 * a[i]);
                ref->f16_to_bf16(h, h2, n);
                isa->f16_to_bf16(h, h, n);
                assert_memory_equal(h, h2, (size_t)n * 2);
            }
            if (isa->gemm_bf16 && n % 32 == 0) {
                uint16_t *ab = malloc(4 * (size_t)n * 2);
                isa->f32_to_bf16(a, ab, 4 * n);
                ref->f32_to_bf16(a, h2, n); /* the conversion rounds exactly like the scalar one */
                assert_memory_equal(ab, h2, (size_t)n * 2);
                /* 3 rows of a as weights (packed in pairs), its 4 rows as tokens; then accumulated again */
                float o1[12], o2[12];
                uint32_t *panel = malloc((size_t)n / 2 * 3 * sizeof *panel);
                sp_transpose32_scalar(ab, n / 2, 3, n / 2, panel, 3);
                isa->gemm_bf16(panel, 3, ab, n, 4, n, o1, 3, false);
                for (int t = 0; t < 4; t++)
                    for (int r = 0; r < 3; r++) o2[t * 3 + r] = ref->dot_f32(a + r * n, a + t * n, n);
                for (int r = 0; r < 12; r++) assert_float_equal(o1[r], o2[r], 0.02 * (n + 1) / 16 + 0.01); /* bf16 operands */
                isa->gemm_bf16(panel, 3, ab, n, 4, n, o1, 3, true);
                for (int r = 0; r < 12; r++) assert_float_equal(o1[r], 2 * o2[r], 0.04 * (n + 1) / 16 + 0.02);
                free(panel);
                free(ab);
            }
            isa->f32_to_f16(a, h, n);
            ref->f32_to_f16(a, h2, n);
            assert_memory_equal(h, h2, (size_t)n * 2); /* conversions are exact: bit-identical */
            isa->f16_to_f32(h, c, n);
            ref->f16_to_f32(h, b, n);
            assert_memory_equal(c, b, (size_t)n * 4);
            free(a); free(b); free(c); free(h); free(h2);
        }
    }
    printf("  %d SIMD kernel sets checked against scalar\n", tested);
}

/* Random keys and values for an attention test's caches, n values each: the f16 caches kh and vh,
 * and kf and vf as floats holding the same values (what an f32 cache of those keys would hold). */
static void random_kv_caches(uint64_t *s, int64_t n, float *kf, float *vf, uint16_t *kh, uint16_t *vh) {
    const sp_isa_kernels *scalar = sp_kernels_by_name("scalar");
    for (int64_t i = 0; i < n; i++) kf[i] = frand(s), vf[i] = frand(s);
    scalar->f32_to_f16(kf, kh, n);
    scalar->f32_to_f16(vf, vh, n);
    scalar->f16_to_f32(kh, kf, n);
    scalar->f16_to_f32(vh, vf, n);
}

/* Decode attention read straight from the cache (f16 and f32, a head inside a wider row): each
 * ISA agrees with the scalar definition, and a row's scores and values come out bit for bit the
 * same whatever other rows share the call and however many keys the tile holds past its own. */
static void decode_attention_primitives(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    static const int head_dims[] = {8, 12, 32, 48, 64, 128}; /* 12: no SIMD form; 48: not whole 16-vectors */
    const sp_isa_kernels *ref = sp_kernels_by_name("scalar");
    uint64_t s = 29;
    for (size_t k = 0; k < 3; k++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
        if (!isa) continue;
        for (size_t hi = 0; hi < sizeof head_dims / sizeof *head_dims; hi++)
            for (int f16 = 0; f16 < 2; f16++)
                for (int n_keys = 1; n_keys <= 70; n_keys += 23) {
                    const int hd = head_dims[hi], rows = 7, stride = 3 * hd; /* the head is the middle third of a row */
                    float *q = malloc((size_t)rows * hd * sizeof *q), *kf = malloc((size_t)n_keys * stride * sizeof *kf);
                    float *vf = malloc((size_t)n_keys * stride * sizeof *vf);
                    uint16_t *kh = malloc((size_t)n_keys * stride * 2), *vh = malloc((size_t)n_keys * stride * 2);
                    float *s1 = malloc((size_t)rows * n_keys * sizeof *s1), *s2 = malloc((size_t)rows * n_keys * sizeof *s2);
                    float *one = malloc((size_t)n_keys * sizeof *one);
                    float *a1 = malloc((size_t)rows * hd * sizeof *a1), *a2 = malloc((size_t)rows * hd * sizeof *a2);
                    for (int i = 0; i < rows * hd; i++) q[i] = frand(&s);
                    random_kv_caches(&s, (int64_t)n_keys * stride, kf, vf, kh, vh);
                    const void *kc = f16 ? (const void *)(kh + hd) : (const void *)(kf + hd);
                    const void *vc = f16 ? (const void *)(vh + hd) : (const void *)(vf + hd);
                    isa->attn_scores(q, rows, hd, kc, f16, stride, n_keys, s1, n_keys);
                    ref->attn_scores(q, rows, hd, kc, f16, stride, n_keys, s2, n_keys);
                    for (int i = 0; i < rows * n_keys; i++) assert_float_equal(s1[i], s2[i], 1e-5 * hd);
                    for (int r = 0; r < rows; r += 3) { /* row r alone, and over fewer keys */
                        isa->attn_scores(q + r * hd, 1, hd, kc, f16, stride, n_keys, one, n_keys);
                        assert_memory_equal(one, s1 + r * n_keys, (size_t)n_keys * sizeof *one);
                        isa->attn_scores(q + r * hd, 1, hd, kc, f16, stride, n_keys - n_keys / 2, one, n_keys);
                        assert_memory_equal(one, s1 + r * n_keys, (size_t)(n_keys - n_keys / 2) * sizeof *one);
                    }
                    for (int i = 0; i < rows * n_keys; i++) s1[i] = (float)(frand(&s) + 1) / 2; /* weights in [0, 1] */
                    for (int i = 0; i < rows * hd; i++) a1[i] = a2[i] = frand(&s);
                    float *a0 = malloc((size_t)rows * hd * sizeof *a0);
                    memcpy(a0, a1, (size_t)rows * hd * sizeof *a0);
                    isa->attn_values(s1, n_keys, rows, hd, vc, f16, stride, n_keys, a1);
                    ref->attn_values(s1, n_keys, rows, hd, vc, f16, stride, n_keys, a2);
                    for (int i = 0; i < rows * hd; i++) assert_float_equal(a1[i], a2[i], 1e-5 * n_keys);
                    for (int r = 0; r < rows; r += 2) { /* row r alone gives the same bits */
                        float *alone = malloc((size_t)hd * sizeof *alone);
                        memcpy(alone, a0 + r * hd, (size_t)hd * sizeof *alone);
                        isa->attn_values(s1 + r * n_keys, n_keys, 1, hd, vc, f16, stride, n_keys, alone);
                        assert_memory_equal(alone, a1 + r * hd, (size_t)hd * sizeof *alone);
                        free(alone);
                    }
                    free(q); free(kf); free(vf); free(kh); free(vh); free(s1); free(s2); free(one); free(a1); free(a2); free(a0);
                }
    }
}

/* One head of one query row of sp_attention's output (out: the row's heads) against the
 * definition in double: softmax(q·kᵀ · scale) · V over the first n_visible keys of the caches
 * (as floats, kv_dim a row), for a head of up to 64 values. */
static void assert_attention_head(const float *out, const float *q_row, const float *kf, const float *vf, int kv_dim, int h,
                                  int group, int hd, int n_visible, float scale) {
    const float *qr = q_row + h * hd;
    const int kvh = h / group;
    double mx = -INFINITY, sum = 0, want[64] = {0};
    double *sc = malloc((size_t)n_visible * sizeof *sc);
    assert_true(hd <= 64 && sc);
    for (int c = 0; c < n_visible; c++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += (double)qr[i] * kf[(int64_t)c * kv_dim + kvh * hd + i];
        sc[c] = d * scale;
        mx = sc[c] > mx ? sc[c] : mx;
    }
    for (int c = 0; c < n_visible; c++) {
        const double p = exp(sc[c] - mx);
        sum += p;
        for (int i = 0; i < hd; i++) want[i] += p * vf[(int64_t)c * kv_dim + kvh * hd + i];
    }
    for (int i = 0; i < hd; i++) assert_float_equal(out[h * hd + i], want[i] / sum, 2e-5);
    free(sc);
}

/* Decode attention (sp_attention with up to four query tokens: tasks of one key chunk and a run
 * of KV heads): every kernel set agrees with a double-precision definition, and the same bits
 * come out whatever the runs (1, 2, 3 and 8 threads split 8 KV heads into runs of 8, 4, 2 and 1
 * over 1 100 keys), from an f32 cache as from the f16 one, and for a token decoded alone as
 * among four. */
static void decode_attention(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    static const int thread_counts[] = {1, 2, 3, 8};
    const sp_isa_kernels *saved = sp_kernels();
    const int hd = 32, n_head = 16, n_head_kv = 8, n_q = 4, n_keys = 1100, kv_dim = n_head_kv * hd, q_dim = n_head * hd;
    const int threads = sp_get_threads();
    uint64_t s = 37;
    float *q = malloc((size_t)n_q * q_dim * sizeof *q), *first = malloc((size_t)n_q * q_dim * sizeof *first);
    float *out = malloc((size_t)n_q * q_dim * sizeof *out);
    float *kf = malloc((size_t)n_keys * kv_dim * sizeof *kf), *vf = malloc((size_t)n_keys * kv_dim * sizeof *vf);
    uint16_t *kh = malloc((size_t)n_keys * kv_dim * 2), *vh = malloc((size_t)n_keys * kv_dim * 2);
    int vis[4];
    for (int i = 0; i < n_q * q_dim; i++) q[i] = 2 * frand(&s);
    random_kv_caches(&s, (int64_t)n_keys * kv_dim, kf, vf, kh, vh);
    for (int t = 0; t < n_q; t++) vis[t] = n_keys - n_q + 1 + t;
    for (size_t k = 0; k < 3; k++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
        if (!isa) continue;
        sp_kernels_select(isa);
        for (size_t ti = 0; ti < 4; ti++) {
            assert_int_equal(sp_set_threads(thread_counts[ti]), SP_OK);
            const sp_attention_args a = {q, out, n_q, kh, vh, true, vis, n_head, n_head_kv, hd, 0.17677669f};
            sp_attention(&a);
            if (ti == 0) memcpy(first, out, (size_t)n_q * q_dim * sizeof *out);
            else if (memcmp(out, first, (size_t)n_q * q_dim * sizeof *out) != 0) fail_msg("%s: %d threads give other bits than one", isas[k], thread_counts[ti]);
        }
        const sp_attention_args f32 = {q, out, n_q, kf, vf, false, vis, n_head, n_head_kv, hd, 0.17677669f};
        sp_attention(&f32);
        assert_memory_equal(out, first, (size_t)n_q * q_dim * sizeof *out);
        for (int t = 0; t < n_q; t++) { /* alone */
            const sp_attention_args a = {q + t * q_dim, out, 1, kh, vh, true, vis + t, n_head, n_head_kv, hd, 0.17677669f};
            sp_attention(&a);
            assert_memory_equal(out, first + t * q_dim, (size_t)q_dim * sizeof *out);
        }
        for (int t = 0; t < n_q; t += 3) /* the definition, in double */
            for (int h = 0; h < n_head; h += 5)
                assert_attention_head(first + t * q_dim, q + t * q_dim, kf, vf, kv_dim, h, n_head / n_head_kv, hd, vis[t], 0.17677669f);
    }
    assert_int_equal(sp_set_threads(threads), SP_OK);
    sp_kernels_select(saved);
    free(q); free(first); free(out); free(kf); free(vf); free(kh); free(vh);
}

/* Prefill attention (sp_attention past the decode form's few rows): every kernel set agrees with a
 * double-precision definition, at a short context and at one whose keys and values outgrow a
 * last-level cache (longer query tiles there), and a query's output is the same bits whatever
 * batch it comes in (the same queries, fewer of them before it, so at other places in the tiles;
 * six heads on two KV heads, so that a tile holds rows that are not whole vectors). */
static void prefill_attention(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    const sp_isa_kernels *saved = sp_kernels();
    const int hd = 32, n_head = 6, n_head_kv = 2, n_q = 45, late = 22, kv_dim = n_head_kv * hd, q_dim = n_head * hd;
    static const int contexts[] = {300, 70000}; /* 70000 × 2 × 64 values × 2 bytes: 17.9 MB of keys and values */
    uint64_t s = 31;
    float *q = malloc((size_t)n_q * q_dim * sizeof *q), *full = malloc((size_t)n_q * q_dim * sizeof *full);
    float *part = malloc((size_t)late * q_dim * sizeof *part), *first[3];
    for (int i = 0; i < 3; i++) first[i] = malloc((size_t)n_q * q_dim * sizeof *first[i]);
    for (int i = 0; i < n_q * q_dim; i++) q[i] = 2 * frand(&s);
    for (size_t ci = 0; ci < 2; ci++) {
        const int n_keys = contexts[ci];
        float *kf = malloc((size_t)n_keys * kv_dim * sizeof *kf), *vf = malloc((size_t)n_keys * kv_dim * sizeof *vf);
        uint16_t *kh = malloc((size_t)n_keys * kv_dim * 2), *vh = malloc((size_t)n_keys * kv_dim * 2);
        int vis[45];
        random_kv_caches(&s, (int64_t)n_keys * kv_dim, kf, vf, kh, vh);
        for (int i = 0; i < n_q; i++) vis[i] = n_keys - n_q + 1 + i;
        /* the f16 cache with the threads there are (tasks of one sub-tile), then with one thread
         * (tasks of several sub-tiles sharing each converted key tile), then an f32 cache read
         * where it lies: every form the same values to the bit */
        const int threads = sp_get_threads();
        for (size_t k = 0; k < 3 * 3; k++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[k % 3]);
            if (!isa) continue;
            const int form = (int)(k / 3);
            const bool f16 = form < 2;
            sp_kernels_select(isa);
            assert_int_equal(sp_set_threads(form == 0 ? threads : 1), SP_OK);
            const void *kc = f16 ? (const void *)kh : (const void *)kf, *vc = f16 ? (const void *)vh : (const void *)vf;
            sp_attention_args a = {q, full, n_q, kc, vc, f16, vis, n_head, n_head_kv, hd, 0.17677669f};
            sp_attention(&a);
            if (form == 0) memcpy(first[k % 3], full, (size_t)n_q * q_dim * sizeof *full);
            else assert_memory_equal(full, first[k % 3], (size_t)n_q * q_dim * sizeof *full);
            a = (sp_attention_args){q + (n_q - late) * q_dim, part, late, kc, vc, f16, vis + n_q - late, n_head, n_head_kv, hd, 0.17677669f};
            sp_attention(&a);
            assert_memory_equal(part, full + (n_q - late) * q_dim, (size_t)late * q_dim * sizeof *part);
            for (int t = 0; t < n_q; t += 11) /* the definition, in double */
                for (int h = 0; h < n_head; h++)
                    assert_attention_head(full + t * q_dim, q + t * q_dim, kf, vf, kv_dim, h, n_head / n_head_kv, hd, vis[t], 0.17677669f);
        }
        assert_int_equal(sp_set_threads(threads), SP_OK);
        free(kf); free(vf); free(kh); free(vh);
    }
    sp_kernels_select(saved);
    for (int i = 0; i < 3; i++) free(first[i]);
    free(q); free(full); free(part);
}

/* sp_matmul for 1 row (decode) and many rows (prefill) equals the plain definition, for odd
 * output counts, on every ISA. */
static void matmul_matches_definition(void **st) {
    (void)st;
    static const int types[] = {SP_TYPE_F32,  SP_TYPE_F16,  SP_TYPE_BF16, SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1,
                                SP_TYPE_Q5_0, SP_TYPE_Q5_1, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    const sp_isa_kernels *saved = sp_kernels();
    uint64_t s = 11;
    const int n_out = 37; /* tiles of 16 rows: two full, one partial */
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const sp_type_traits *tt = sp_type_traits_get((uint32_t)types[ti]);
        /* float rows of 609 values, so that decode reads them by several 512-byte pieces (F16 and
         * BF16: 2 × 256 + 97; F32: 4 × 128 + 97) and a remainder not a multiple of any SIMD width */
        const int n_in = tt->block_size == QK_K ? 512 : tt->block_size == 1 ? 609 : 96;
        float *wf = malloc((size_t)n_in * n_out * sizeof *wf), *wd = malloc((size_t)n_in * n_out * sizeof *wd);
        uint8_t *wq = malloc((size_t)n_in * n_out * 4);
        for (int i = 0; i < n_in * n_out; i++) wf[i] = frand(&s);
        const size_t rb = sp_row_size((uint32_t)types[ti], n_in);
        for (int r = 0; r < n_out; r++) {
            tt->quantize(wf + r * n_in, wq + r * rb, n_in);
            tt->dequantize(wq + r * rb, wd + r * n_in, n_in);
        }
        sp_weight w = {.data = wq, .type = (uint32_t)types[ti], .n_in = n_in, .n_out = n_out, .row_bytes = (int64_t)rb};
        static const int token_counts[] = {1, 2, 3, 4, 19}; /* a decode, batched decode steps (≤ 4: the decode form), a prefill
                                                             * (and 19 decode steps: sp_matmul_each) */
        for (size_t tc = 0; tc < sizeof token_counts / sizeof *token_counts; tc++) {
            const int tokens = token_counts[tc];
            float *x = malloc((size_t)tokens * n_in * sizeof *x), *out = malloc((size_t)tokens * n_out * sizeof *out);
            for (int i = 0; i < tokens * n_in; i++) x[i] = frand(&s);
            for (size_t k = 0; k < 3; k++) {
                const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
                if (!isa) continue;
                sp_kernels_select(isa);
                for (int i = 0; i < tokens * n_out; i++) out[i] = NAN; /* nothing left from the set before */
                sp_matmul(&w, x, tokens, out);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < n_out; r++) {
                        double ref = 0;
                        for (int i = 0; i < n_in; i++) ref += (double)wd[r * n_in + i] * x[t * n_in + i];
                        /* bf16 operands (quantized weights, prefill) round activations to 8 bits */
                        /* decode with int8 activations (integer kernels) rounds them to 8 bits too */
                        /* and so does prefill with integer kernels */
                        const bool coarse = (tokens > 4 && (isa->gemm_bf16 || isa->gemm_i8) && types[ti] != SP_TYPE_F32 &&
                                             types[ti] != SP_TYPE_F16) ||
                                            (tokens <= 4 && isa->dot_row_q8[types[ti]]);
                        const double tol = coarse ? 0.05 * sqrt(n_in / 96.0) : 1e-4; /* 8-bit rounding errors add up as sqrt(n) */
                        if (!(fabs(out[t * n_out + r] - ref) <= tol)) /* NaN: a value never written */
                            fail_msg("%s %s tokens=%d [%d,%d]: %.6f vs %.6f", isas[k], tt->name, tokens, t, r, out[t * n_out + r], ref);
                    }
                if (tokens > 1) { /* the decode form (sp_matmul up to 4 tokens, sp_matmul_each for any
                                   * number): each token's row as if it were alone, bit for bit */
                    float alone[64];
                    if (tokens > 4) sp_matmul_each(&w, x, tokens, out);
                    for (int t = 0; t < tokens; t++) {
                        sp_matmul(&w, x + (size_t)t * n_in, 1, alone);
                        if (memcmp(alone, out + (size_t)t * n_out, sizeof(float) * n_out))
                            fail_msg("%s %s: token %d of %d differs from the same token alone", isas[k], tt->name, t, tokens);
                    }
                }
            }
            free(x); free(out);
        }
        free(wf); free(wd); free(wq);
    }
    sp_kernels_select(saved);
}

/* Weights in groups of eight interleaved rows (repack.h) give what the same rows as the file has
 * them give, on every kernel set: the prefill forms bit for bit (the rows are rebuilt before
 * the same kernels), decode within float rounding (the eight-row kernel sums in another order;
 * kernel sets without it read the rows rebuilt, piece by piece), each token of a decode step bit
 * for bit what it gets alone; and the layout packs and unpacks to the same bytes. */
static void matmul_interleaved_rows(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx2-vnni", "avx512-base", "avx512"};
    const sp_isa_kernels *saved = sp_kernels();
    uint64_t s = 17;
    int checked = 0;
    for (int type = 0; type < SP_N_TYPES; type++) {
        if (!sp_rows8_has_layout((uint32_t)type)) continue;
        const sp_type_traits *tt = sp_type_traits_get((uint32_t)type);
        /* 11 blocks of 32 or 3 of 256; two tiles of 16 rows and a half one (one group) */
        const int n_in = tt->block_size == QK_K ? 768 : 352, n_out = 40;
        const size_t rb = sp_row_size((uint32_t)type, n_in);
        const int64_t nb = n_in / tt->block_size, ib = sp_rows8_row_bytes((uint32_t)type, nb); /* a row's bytes interleaved */
        float *wf = malloc(sizeof(float) * n_in * n_out);
        uint8_t *plain = malloc(rb * n_out), *inter = malloc((size_t)ib * n_out), *back = malloc(rb * n_out);
        for (int i = 0; i < n_in * n_out; i++) wf[i] = frand(&s);
        for (int r = 0; r < n_out; r++) tt->quantize(wf + (size_t)r * n_in, plain + r * rb, n_in);
        for (int g = 0; g < n_out / SP_ROWS8; g++) {
            uint8_t *group = inter + (size_t)g * SP_ROWS8 * ib;
            sp_rows8_pack((uint32_t)type, plain + (size_t)g * SP_ROWS8 * rb, (int64_t)rb, nb, group);
            for (int r = 0; r < SP_ROWS8; r++) /* back in two pieces: block 0, then the rest */
                for (int64_t b0 = 0; b0 < nb; b0 += b0 ? nb - 1 : 1)
                    sp_rows8_unpack((uint32_t)type, inter, ib, g * SP_ROWS8 + r, b0, b0 ? nb - 1 : 1,
                                    back + ((size_t)g * SP_ROWS8 + r) * rb + b0 * tt->type_size);
        }
        assert_memory_equal(back, plain, rb * n_out);
        assert_memory_not_equal(inter, plain, rb * n_out);
        const sp_weight wp = {.data = plain, .type = (uint32_t)type, .n_in = n_in, .n_out = n_out, .row_bytes = (int64_t)rb},
                        wi = {.data = inter, .type = (uint32_t)type, .n_in = n_in, .n_out = n_out, .row_bytes = ib, .interleaved = true};
        const int max_tokens = 19;
        float *x = malloc(sizeof(float) * max_tokens * n_in), *op = malloc(sizeof(float) * max_tokens * n_out),
              *oi = malloc(sizeof(float) * max_tokens * n_out), alone[64];
        for (int i = 0; i < max_tokens * n_in; i++) x[i] = frand(&s);
        for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
            if (!isa) continue;
            sp_kernels_select(isa);
            static const int token_counts[] = {1, 2, 4, 19};
            for (size_t tc = 0; tc < sizeof token_counts / sizeof *token_counts; tc++) {
                const int tokens = token_counts[tc];
                sp_matmul(&wp, x, tokens, op);
                sp_matmul(&wi, x, tokens, oi);
                if (tokens > 4) assert_memory_equal(op, oi, sizeof(float) * tokens * n_out); /* prefill: the same tiles or panels */
                else
                    for (int i = 0; i < tokens * n_out; i++)
                        if (fabsf(op[i] - oi[i]) > 1e-5f * (1 + fabsf(op[i])))
                            fail_msg("%s %s interleaved, %d tokens, [%d]: %.7g vs %.7g", isas[k], tt->name, tokens, i, oi[i], op[i]);
                if (tokens > 4) sp_matmul_each(&wi, x, tokens, oi);
                if (tokens > 1)
                    for (int t = 0; t < tokens; t++) {
                        sp_matmul(&wi, x + (size_t)t * n_in, 1, alone);
                        if (memcmp(alone, oi + (size_t)t * n_out, sizeof(float) * n_out))
                            fail_msg("%s %s interleaved: token %d of %d differs from the same token alone", isas[k], tt->name, t, tokens);
                    }
            }
            checked++;
        }
        free(wf); free(plain); free(inter); free(back); free(x); free(op); free(oi);
    }
    sp_kernels_select(saved);
    printf("  interleaved rows checked for %d (type, kernel set) pairs\n", checked);
}

/* Products of one x by several weights as one job (sp_matmul_each_group, a decode step's q, k and
 * v) give each product bit for bit what it gets alone (sp_matmul_each): weights of different
 * types, row counts and layouts, so the products' tasks differ in number and kind, on every
 * kernel set and with the pool's threads. */
static void matmul_group_is_each_alone(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx2-vnni", "avx512-base", "avx512"};
    static const struct { int type, n_out; bool interleaved; } ws[] = {
        {SP_TYPE_F16, 203, false}, {SP_TYPE_Q8_0, 16, false}, {SP_TYPE_Q4_K, 96, false}, {SP_TYPE_Q4_0, 40, true}};
    enum { N_W = sizeof ws / sizeof *ws, N_IN = 512, MAX_TOKENS = 5 };
    const sp_isa_kernels *saved = sp_kernels();
    const int saved_threads = sp_get_threads();
    uint64_t s = 23;
    sp_weight w[N_W];
    float *out[N_W], *alone[N_W];
    const sp_weight *wp[N_W];
    float *x = malloc(sizeof(float) * MAX_TOKENS * N_IN), *wf = malloc(sizeof(float) * N_IN);
    for (int i = 0; i < MAX_TOKENS * N_IN; i++) x[i] = frand(&s);
    for (int i = 0; i < N_W; i++) {
        const sp_type_traits *tt = sp_type_traits_get((uint32_t)ws[i].type);
        const size_t rb = sp_row_size((uint32_t)ws[i].type, N_IN);
        uint8_t *data = malloc(rb * ws[i].n_out);
        for (int r = 0; r < ws[i].n_out; r++) {
            for (int k = 0; k < N_IN; k++) wf[k] = frand(&s);
            tt->quantize(wf, data + r * rb, N_IN);
        }
        w[i] = (sp_weight){.data = data, .type = (uint32_t)ws[i].type, .n_in = N_IN, .n_out = ws[i].n_out, .row_bytes = (int64_t)rb};
        if (ws[i].interleaved) {
            const int64_t nb = N_IN / tt->block_size, ib = sp_rows8_row_bytes((uint32_t)ws[i].type, nb);
            uint8_t *inter = malloc((size_t)ib * ws[i].n_out);
            for (int g = 0; g < ws[i].n_out / SP_ROWS8; g++)
                sp_rows8_pack((uint32_t)ws[i].type, data + (size_t)g * SP_ROWS8 * rb, (int64_t)rb, nb, inter + (size_t)g * SP_ROWS8 * ib);
            free(data);
            w[i].data = inter, w[i].row_bytes = ib, w[i].interleaved = true;
        }
        wp[i] = &w[i];
        out[i] = malloc(sizeof(float) * MAX_TOKENS * ws[i].n_out);
        alone[i] = malloc(sizeof(float) * MAX_TOKENS * ws[i].n_out);
    }
    int checked = 0;
    for (int threads = 1; threads <= 2; threads++) {
        assert_int_equal(sp_set_threads(threads), SP_OK);
        for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
            if (!isa) continue;
            sp_kernels_select(isa);
            for (int tokens = 1; tokens <= MAX_TOKENS; tokens += 2)
                for (int n_w = 1; n_w <= N_W; n_w++) {
                    for (int i = 0; i < n_w; i++) {
                        for (int e = 0; e < tokens * ws[i].n_out; e++) out[i][e] = NAN;
                        sp_matmul_each(wp[i], x, tokens, alone[i]);
                    }
                    sp_matmul_each_group(n_w, wp, x, tokens, out);
                    for (int i = 0; i < n_w; i++)
                        if (memcmp(out[i], alone[i], sizeof(float) * tokens * ws[i].n_out))
                            fail_msg("%s, %d threads, %d tokens: product %d of a group of %d differs from it alone", isas[k], threads,
                                     tokens, i, n_w);
                    checked++;
                }
        }
    }
    assert_int_equal(sp_set_threads(saved_threads), SP_OK);
    sp_kernels_select(saved);
    for (int i = 0; i < N_W; i++) {
        free((void *)w[i].data);
        free(out[i]);
        free(alone[i]);
    }
    free(x);
    free(wf);
    printf("  grouped products checked in %d cases\n", checked);
}

/* The float prefill panels at the sizes of real layers: panels of 64 weight rows (and a partial
 * one), the inner dimension in blocks of 256 with a remainder, tokens not a multiple of the
 * kernels' blocks (neither AMX's 32 nor AVX-512's 6); on every ISA (scalar and AVX2 take the f32 panel for quantized types too),
 * f32 and (where the CPU has it) bf16: BF16 weights, and F16 with SPECPREFILL_F16=bf16. */
static void matmul_panels(void **st) {
    (void)st;
    static const struct { int type; bool f16_as_bf16; } cases[] = {
        {SP_TYPE_F32, false}, {SP_TYPE_F16, false}, {SP_TYPE_Q6_K, false}, {SP_TYPE_BF16, false}, {SP_TYPE_F16, true}};
    static const char *const isas[] = {"scalar", "avx2", "avx2-vnni", "avx512-noamx", "avx512"}; /* avx512: AMX where the CPU has it */
    const sp_isa_kernels *saved = sp_kernels();
    uint64_t s = 13;
    const int n_out = 1100, tokens = 71; /* AMX: two blocks of 32 tokens, then 7 */
    double worst_f32 = 0, worst_bf16 = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int type = cases[ci].type;
        const sp_type_traits *tt = sp_type_traits_get((uint32_t)type);
        const int n_in = tt->block_size == QK_K ? 768 : 608; /* 608 = 2 × 256 + 96 */
        const size_t rb = sp_row_size((uint32_t)type, n_in);
        float *wd = malloc((size_t)n_in * n_out * sizeof *wd), *x = malloc((size_t)tokens * n_in * sizeof *x);
        float *out = malloc((size_t)tokens * n_out * sizeof *out);
        uint8_t *wq = malloc(rb * n_out);
        for (int i = 0; i < n_in * n_out; i++) wd[i] = frand(&s);
        for (int r = 0; r < n_out; r++) {
            tt->quantize(wd + (size_t)r * n_in, wq + r * rb, n_in);
            tt->dequantize(wq + r * rb, wd + (size_t)r * n_in, n_in);
        }
        for (int i = 0; i < tokens * n_in; i++) x[i] = frand(&s);
        double *ref = malloc((size_t)tokens * n_out * sizeof *ref); /* the definition, in double */
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < n_out; r++) {
                double sum = 0;
                for (int i = 0; i < n_in; i++) sum += (double)wd[(size_t)r * n_in + i] * x[t * n_in + i];
                ref[t * n_out + r] = sum;
            }
        const sp_weight w = {.data = wq, .type = (uint32_t)type, .n_in = n_in, .n_out = n_out, .row_bytes = (int64_t)rb};
        sp_set_f16_as_bf16(cases[ci].f16_as_bf16);
        for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
            if (!isa) continue;
            const bool bf16 = isa->gemm_bf16 && (type == SP_TYPE_BF16 || cases[ci].f16_as_bf16);
            if ((type == SP_TYPE_Q6_K && (isa->gemm_i8 || isa->gemm_bf16)) || (cases[ci].f16_as_bf16 && !bf16)) continue; /* another path */
            sp_kernels_select(isa);
            for (int i = 0; i < tokens * n_out; i++) out[i] = NAN; /* nothing left from the set before */
            sp_matmul(&w, x, tokens, out);
            if (type == SP_TYPE_F16 || type == SP_TYPE_BF16) { /* 16-bit rows go into the panel as they lie;
                         * rows off 4-byte alignment take the f32 copy: the same panel, so the same sums to the bit */
                uint8_t *shifted = malloc(rb * n_out + 2);
                memcpy(shifted + 2, wq, rb * n_out);
                const sp_weight w2 = {.data = shifted + 2, .type = w.type, .n_in = n_in, .n_out = n_out, .row_bytes = w.row_bytes};
                float *out2 = malloc((size_t)tokens * n_out * sizeof *out2);
                sp_matmul(&w2, x, tokens, out2);
                assert_memory_equal(out, out2, (size_t)tokens * n_out * sizeof *out);
                free(out2); free(shifted);
            }
            for (int t = 0; t < tokens; t++)
                for (int r = 0; r < n_out; r++) {
                    const double err = fabs(out[t * n_out + r] - ref[t * n_out + r]);
                    double *worst = bf16 ? &worst_bf16 : &worst_f32;
                    if (err > *worst) *worst = err;
                    /* bf16 rounds the activations (and F16 weights) to 8 bits: errors add up as sqrt(n) */
                    if (!(err <= (bf16 ? 0.05 * sqrt(n_in / 96.0) : 2e-4))) /* NaN: a value never written */
                        fail_msg("%s %s%s tokens=%d [%d,%d]: %.6f vs %.6f", isas[k], tt->name, bf16 ? " (bf16)" : "", tokens, t, r,
                                 out[t * n_out + r], ref[t * n_out + r]);
                }
        }
        free(wd); free(x); free(out); free(wq); free(ref);
    }
    sp_set_f16_as_bf16(false);
    sp_kernels_select(saved);
    printf("  prefill panels: largest error f32 %.2g, bf16 %.2g\n", worst_f32, worst_bf16);
}

/* The integer decode kernels against float arithmetic on the same quantized activations. */
static void integer_decode_dots(void **st) {
    (void)st;
    static const char *const files[] = {"llama-q8_0", "llama-q4_0", "llama-q4_1", "llama-q5_0", "llama-q5_1", "llama-q4_k", "llama-q5_k", "llama-q6_k"};
    static const char *const isas[] = {"avx2", "avx2-vnni", "avx512"};
    int checked = 0;
    uint64_t s = 5;
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[ii]);
        for (size_t f = 0; isa && f < sizeof files / sizeof *files; f++) {
            char path[1024];
            if (!quantized_model(files[f], path, sizeof path)) continue;
            sp_gguf_file *g;
            assert_int_equal(sp_gguf_open(path, false, &g), SP_OK);
            const sp_gguf_tensor *t = sp_gguf_find_tensor(g, "blk.0.ffn_down.weight");
            if (!isa->dot_row_q8[t->type]) { sp_gguf_close(g); continue; }
            const int64_t n = t->ne[0];
            float *x = malloc((size_t)n * sizeof *x), *row = malloc((size_t)n * sizeof *row), *d = malloc((size_t)n / 32 * sizeof *d);
            int8_t *q = malloc((size_t)n);
            int32_t *sums = malloc((size_t)n / 16 * sizeof *sums);
            for (int64_t i = 0; i < n; i++) x[i] = frand(&s);
            sp_quantize_activations(x, n, q, d, sums);
            sp_q8_act act = {q, d, sums};
            for (int r = 0; r < 8; r++) {
                const uint8_t *p = (const uint8_t *)t->data + (size_t)r * sp_row_size(t->type, n);
                sp_type_traits_get(t->type)->dequantize(p, row, n);
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    const double xi = (double)d[i / 32] * q[i];
                    ref += row[i] * xi;
                    mag += fabs(row[i] * xi);
                }
                const float got = isa->dot_row_q8[t->type](p, &act, n);
                if (fabs(got - ref) > 1e-5 * mag + 1e-6) fail_msg("%s %s row %d: integer dot %.7g vs %.7g", isas[ii], files[f], r, got, ref);
            }
            checked++;
            free(x); free(row); free(d); free(q); free(sums);
            sp_gguf_close(g);
        }
    }
    printf("  %d integer decode kernels checked\n", checked);
    if (!checked) { printf("  skipped: no integer decode kernel on this CPU\n"); skip(); }
}

/* The lockstep decode of 16-bit float rows (dot_rows_f): every (row, token) sum against a
 * double-precision dot, and the same bits whether the row comes alone, with three others, with
 * as many as the set takes (8 on AVX-512), with one token or two. n = 300 leaves a tail past the
 * last 16 values. */
static void float_rows_in_lockstep(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx2-vnni", "avx512"};
    static const uint32_t types[] = {SP_TYPE_F16, SP_TYPE_BF16};
    enum { N = 300, ROWS = 8, TOKENS = 2 };
    uint16_t w[ROWS * N];
    float x[TOKENS * N];
    uint64_t s = 11;
    for (int i = 0; i < TOKENS * N; i++) x[i] = frand(&s);
    int checked = 0;
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[ii]);
        for (size_t ti = 0; isa && ti < sizeof types / sizeof *types; ti++) {
            const uint32_t type = types[ti];
            if (!isa->dot_rows_f[type]) continue;
            const int most = isa->dot_rows_f_rows;
            assert_true(most >= 4 && most <= ROWS && ROWS % most == 0);
            for (int i = 0; i < ROWS * N; i++) w[i] = type == SP_TYPE_F16 ? sp_f32_to_fp16(frand(&s)) : sp_f32_to_bf16(frand(&s));
            float all[TOKENS * ROWS], one[TOKENS * ROWS], four[TOKENS * ROWS], group[TOKENS * ROWS];
            for (int r = 0; r < ROWS; r += most) isa->dot_rows_f[type](w + r * N, N * 2, most, x, N, TOKENS, N, all + r, ROWS, 8 * N * 2);
            for (int t = 0; t < TOKENS; t++) {
                for (int r = 0; r < ROWS; r += most)
                    isa->dot_rows_f[type](w + r * N, N * 2, most, x + t * N, N, 1, N, group + t * ROWS + r, ROWS, 8 * N * 2);
                for (int r = 0; r < ROWS; r += 4) isa->dot_rows_f[type](w + r * N, N * 2, 4, x + t * N, N, 1, N, four + t * ROWS + r, ROWS, 0);
                for (int r = 0; r < ROWS; r++) isa->dot_rows_f[type](w + r * N, N * 2, 1, x + t * N, N, 1, N, one + t * ROWS + r, ROWS, 0);
            }
            for (int t = 0; t < TOKENS; t++)
                for (int r = 0; r < ROWS; r++) {
                    double ref = 0, mag = 0;
                    for (int i = 0; i < N; i++) {
                        const double v = type == SP_TYPE_F16 ? sp_fp16_to_f32(w[r * N + i]) : sp_bf16_to_f32(w[r * N + i]);
                        ref += v * x[t * N + i];
                        mag += fabs(v * x[t * N + i]);
                    }
                    const float got = all[t * ROWS + r];
                    if (fabs(got - ref) > 1e-6 * mag) fail_msg("%s type %u row %d token %d: %.7g vs %.7g", isas[ii], type, r, t, got, ref);
                    assert_memory_equal(&got, &one[t * ROWS + r], sizeof got);
                    assert_memory_equal(&got, &four[t * ROWS + r], sizeof got);
                    assert_memory_equal(&got, &group[t * ROWS + r], sizeof got);
                }
            checked++;
        }
    }
    printf("  %d lockstep float-row kernels checked\n", checked);
    if (!checked) { printf("  skipped: no such kernel on this CPU\n"); skip(); }
}

/* Rows of one type with every code at its largest and scales of 1 (Q8_0: −128, the one code
 * whose magnitude is 128; Q6_K: scales 127), as bytes: n_out rows of n values. */
static void extreme_rows(uint32_t type, uint8_t *w, int64_t n_out, int64_t n) {
    const sp_type_traits *tt = sp_type_traits_get(type);
    const int64_t nb = n_out * (n / tt->block_size);
    const uint16_t one = 0x3C00;
    memset(w, 0xFF, (size_t)nb * tt->type_size);
    for (int64_t i = 0; i < nb; i++) {
        void *b = w + i * (int64_t)tt->type_size;
        switch (type) {
        case SP_TYPE_Q8_0: ((block_q8_0 *)b)->d = one; memset(((block_q8_0 *)b)->qs, 0x80, 32); break;
        case SP_TYPE_Q4_0: ((block_q4_0 *)b)->d = one; break;
        case SP_TYPE_Q4_1: ((block_q4_1 *)b)->d = ((block_q4_1 *)b)->m = one; break;
        case SP_TYPE_Q5_0: ((block_q5_0 *)b)->d = one; break;
        case SP_TYPE_Q5_1: ((block_q5_1 *)b)->d = ((block_q5_1 *)b)->m = one; break;
        case SP_TYPE_Q4_K: ((block_q4_K *)b)->d = ((block_q4_K *)b)->dmin = one; break;
        case SP_TYPE_Q5_K: ((block_q5_K *)b)->d = ((block_q5_K *)b)->dmin = one; break;
        case SP_TYPE_Q6_K: ((block_q6_K *)b)->d = one; memset(((block_q6_K *)b)->scales, 127, 16); break;
        default: fail_msg("no extreme rows for %s", tt->name);
        }
    }
}

/* The decode dots at the extremes: every code at its largest, activations all +127 or all
 * −127 — where the 16-bit pair sums that AVX2 adds before widening (four blocks' or four
 * sub-blocks' at once) would overflow if they took one pair too many — for every kernel set,
 * the file's layout and the interleaved one, 1 to 4 tokens. */
static void integer_decode_dots_at_extremes(void **st) {
    (void)st;
    static const uint32_t types[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0,
                                     SP_TYPE_Q5_1, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    static const char *const isas[] = {"scalar", "avx2", "avx2-vnni", "avx512-base", "avx512"};
    enum { N = 512, ROWS = SP_ROWS8, TOKENS = 4 };
    const sp_isa_kernels *saved = sp_kernels();
    int checked = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti];
        const sp_type_traits *tt = sp_type_traits_get(type);
        const int64_t nb = N / tt->block_size, rb = (int64_t)sp_row_size(type, N);
        uint8_t *plain = malloc((size_t)(rb * ROWS));
        extreme_rows(type, plain, ROWS, N);
        float *row = malloc(sizeof(float) * N), x[TOKENS * N], out[TOKENS * ROWS];
        double want[ROWS], mag[ROWS];
        for (int r = 0; r < ROWS; r++) {
            tt->dequantize(plain + r * rb, row, N);
            want[r] = mag[r] = 0;
            for (int i = 0; i < N; i++) want[r] += row[i], mag[r] += fabs(row[i]);
        }
        const bool has_rows8 = sp_rows8_has_layout(type);
        const int64_t ib = has_rows8 ? sp_rows8_row_bytes(type, nb) : 0;
        uint8_t *inter = has_rows8 ? malloc((size_t)(ib * ROWS)) : NULL;
        if (has_rows8) sp_rows8_pack(type, plain, rb, nb, inter);
        const sp_weight wp = {.data = plain, .type = type, .n_in = N, .n_out = ROWS, .row_bytes = rb},
                        wi = {.data = inter, .type = type, .n_in = N, .n_out = ROWS, .row_bytes = ib, .interleaved = true};
        for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[k]);
            if (!isa) continue;
            sp_kernels_select(isa);
            for (int layout = 0; layout < (has_rows8 ? 2 : 1); layout++)
                for (int sign = -1; sign <= 1; sign += 2)
                    for (int tokens = 1; tokens <= TOKENS; tokens++) {
                        for (int i = 0; i < tokens * N; i++) x[i] = (float)sign;
                        sp_matmul(layout ? &wi : &wp, x, tokens, out);
                        for (int t = 0; t < tokens; t++)
                            for (int r = 0; r < ROWS; r++)
                                if (fabs(out[t * ROWS + r] - sign * want[r]) > 1e-5 * mag[r])
                                    fail_msg("%s %s%s, activations %d, %d tokens: row %d %.7g, not %.7g", isas[k], tt->name,
                                             layout ? " interleaved" : "", 127 * sign, tokens, r, out[t * ROWS + r], sign * want[r]);
                    }
            checked++;
        }
        free(plain); free(row); free(inter);
    }
    sp_kernels_select(saved);
    printf("  extremes checked for %d (type, kernel set) pairs\n", checked);
}

/* The kernel set chosen by name (the public setting): a set the CPU lacks is refused, naming those
 * it has; NULL returns to the best. */
static void kernel_set_by_name(void **st) {
    (void)st;
    const char *best = sp_kernels_name();
    assert_int_equal(sp_set_kernels("scalar"), SP_OK);
    assert_string_equal(sp_kernels_name(), "scalar");
    assert_int_equal(sp_set_kernels("avx9"), SP_ERR_UNSUPPORTED);
    assert_non_null(strstr(sp_last_error(), "scalar"));
    assert_string_equal(sp_kernels_name(), "scalar"); /* a refused name changes nothing */
    assert_int_equal(sp_set_kernels(NULL), SP_OK);
    assert_string_equal(sp_kernels_name(), best);
}

/* Each AVX-512 feature overlay applies on its own: the set named for a CPU without bf16 (Ice
 * Lake) keeps the VNNI integer kernels, the one without VNNI keeps bf16, the base set has neither. */
static void feature_overlays_apply_alone(void **st) {
    (void)st;
    const sp_isa_kernels *best = sp_kernels_by_name("avx512");
    if (!best) { printf("  no AVX-512 here\n"); skip(); }
    const sp_isa_kernels *nobf16 = sp_kernels_by_name("avx512-nobf16"), *novnni = sp_kernels_by_name("avx512-novnni"),
                         *base = sp_kernels_by_name("avx512-base");
    assert_non_null(nobf16); assert_non_null(novnni); assert_non_null(base);
    assert_string_equal(nobf16->name, "avx512-nobf16");
    assert_null(nobf16->gemm_bf16);
    assert_true(!nobf16->gemm_i8 == !best->gemm_i8);                        /* VNNI where the CPU has it */
    assert_ptr_equal(nobf16->dot_row_q8[SP_TYPE_Q8_0], best->dot_row_q8[SP_TYPE_Q8_0]);
    assert_null(novnni->gemm_i8);
    assert_null(novnni->dot_row_q8[SP_TYPE_Q8_0]);
    const bool bf16 = strstr(sp_cpu_features(), "avx512bf16") != NULL;
    assert_true(!novnni->gemm_bf16 == !bf16);                               /* bf16 where the CPU has it */
    assert_null(base->gemm_i8);
    assert_null(base->gemm_bf16);
    /* AMX replaces only the prefill products (integer and bf16), and only in the full set */
    const sp_isa_kernels *noamx = sp_kernels_by_name("avx512-noamx");
    assert_non_null(noamx);
    assert_ptr_equal(noamx->gemm_i8, nobf16->gemm_i8);
    assert_ptr_equal(noamx->gemm_bf16, novnni->gemm_bf16);
    assert_ptr_equal(noamx->dot_row_q8[SP_TYPE_Q8_0], best->dot_row_q8[SP_TYPE_Q8_0]);
    const bool amx = strstr(sp_cpu_features(), "amx") != NULL;
    assert_true(amx ? best->gemm_i8 != noamx->gemm_i8 : best->gemm_i8 == noamx->gemm_i8);
    /* the full set takes bf16 products only where they outrun f32 FMA: AMX, or an AMD core */
#if defined(__x86_64__) /* (the AVX-512 sets exist only there) */
    unsigned a, vendor[3];
    assert_true(__get_cpuid(0, &a, &vendor[0], &vendor[2], &vendor[1]));
    const bool amd = memcmp(vendor, "AuthenticAMD", 12) == 0 || memcmp(vendor, "HygonGenuine", 12) == 0;
    if (amx) assert_true(best->gemm_bf16 && best->gemm_bf16 != noamx->gemm_bf16);
    else if (amd) assert_ptr_equal(best->gemm_bf16, noamx->gemm_bf16);
    else assert_null(best->gemm_bf16);
#endif
    printf("  this CPU: VNNI %s, bf16 %s (the full set's: %s), AMX %s\n", best->gemm_i8 ? "yes" : "no", bf16 ? "yes" : "no",
           best->gemm_bf16 ? "yes" : "no", amx ? "yes" : "no");
}

/* AVX-VNNI over AVX2 replaces the integer prefill product and the 32-value formats' decode dots,
 * nothing else (the float kernels, Q4_K's and Q6_K's dots stay AVX2's). */
static void avx_vnni_overlay(void **st) {
    (void)st;
    const sp_isa_kernels *avx2 = sp_kernels_by_name("avx2"), *vnni = sp_kernels_by_name("avx2-vnni");
    if (!vnni) { printf("  no AVX-VNNI here (CPU: %s)\n", sp_cpu_features()); skip(); }
    assert_non_null(avx2);
    assert_string_equal(vnni->name, "avx2-vnni");
    assert_true(vnni->gemm_i8 && vnni->gemm_i8 != avx2->gemm_i8);
    for (int t = 0; t < SP_N_TYPES; t++) {
        const bool block32 = t == SP_TYPE_Q8_0 || t == SP_TYPE_Q4_0 || t == SP_TYPE_Q4_1 || t == SP_TYPE_Q5_0 || t == SP_TYPE_Q5_1;
        assert_true(block32 ? vnni->dot_row_q8[t] != avx2->dot_row_q8[t] : vnni->dot_row_q8[t] == avx2->dot_row_q8[t]);
        assert_true(block32 ? vnni->dot_rows_q8[t] != avx2->dot_rows_q8[t] : vnni->dot_rows_q8[t] == avx2->dot_rows_q8[t]);
        assert_ptr_equal(vnni->dot_row[t], avx2->dot_row[t]);
    }
    assert_ptr_equal(vnni->gemm_nn, avx2->gemm_nn);
    assert_ptr_equal(vnni->quantize_act, avx2->quantize_act);
    assert_ptr_equal(vnni->softmax_tile, avx2->softmax_tile);
}

/* Whole tiles of 16 rows repacked at load (every interleaved type) and of Q8_0 as it lies are
 * packed without the type's codes(): against the tile's definition built from codes() row by
 * row — the code of value 4g + i of row r at byte 64g + 4r + i of a 32-value piece, then per
 * group of codes_group values 16 scales and 16 mins — with every ISA's transposition, plain and
 * interleaved rows alike, Q8_0's rows an odd number of bytes apart (15 blocks: 510), and a lone
 * interleaved group of 8 rows. */
static void integer_tile_of_whole_rows(void **st) {
    (void)st;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    static const int types[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    uint64_t s = 41;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const sp_type_traits *tt = sp_type_traits_get((uint32_t)types[ti]);
        const int64_t k = tt->block_size == 32 ? 480 : 512, nb = k / tt->block_size, group = tt->codes_group;
        const size_t tile_bytes = (size_t)(k / 32) * SP_I8_TILE_BLOCK_BYTES(group);
        const int64_t rb = (int64_t)sp_row_size((uint32_t)types[ti], k), ib = sp_rows8_row_bytes((uint32_t)types[ti], nb);
        float wf[512];
        uint8_t *plain = malloc((size_t)rb * 16), *inter = malloc((size_t)ib * 16), *want = calloc(tile_bytes, 1), *got = malloc(tile_bytes);
        for (int r = 0; r < 16; r++) {
            for (int64_t i = 0; i < k; i++) wf[i] = frand(&s) * (float)(r + 1);
            tt->quantize(wf, plain + r * rb, k);
            for (int64_t b = 0; b < nb; b++) {
                uint8_t q[QK_K];
                float sc[QK_K / 16], mn[QK_K / 16];
                tt->codes(plain + r * rb + b * tt->type_size, q, sc, mn);
                for (int p = 0; p < tt->block_size / 32; p++) {
                    uint8_t *blk = want + (b * tt->block_size / 32 + p) * SP_I8_TILE_BLOCK_BYTES(group);
                    for (int v = 0; v < 32; v++) blk[64 * (v / 4) + 4 * r + v % 4] = q[32 * p + v];
                    for (int h = 0; h < 32 / group; h++) {
                        memcpy(blk + 512 + 128 * h + 4 * r, &sc[(32 * p + h * group) / 16], 4);
                        memcpy(blk + 512 + 128 * h + 64 + 4 * r, &mn[(32 * p + h * group) / 16], 4);
                    }
                }
            }
        }
        for (int g = 0; g < 2; g++) sp_rows8_pack((uint32_t)types[ti], plain + g * 8 * rb, rb, nb, inter + g * 8 * ib);
        uint8_t *want8 = malloc(tile_bytes); /* the tile of rows 0-7 alone */
        memcpy(want8, want, tile_bytes);
        for (int64_t p = 0; p < k / 32; p++) {
            uint8_t *blk = want8 + p * SP_I8_TILE_BLOCK_BYTES(group);
            for (int r = 8; r < 16; r++) {
                for (int g = 0; g < 8; g++) memset(blk + 64 * g + 4 * r, 0, 4);
                for (int h = 0; h < 32 / group; h++) {
                    memset(blk + 512 + 128 * h + 4 * r, 0, 4);
                    memset(blk + 512 + 128 * h + 64 + 4 * r, 0, 4);
                }
            }
        }
        const sp_isa_kernels *saved = sp_kernels();
        for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
            const sp_isa_kernels *isa = sp_kernels_by_name(isas[ii]);
            if (!isa) continue;
            sp_kernels_select(isa);
            for (int interleaved = 0; interleaved < 2; interleaved++) {
                memset(got, 0xA5, tile_bytes);
                sp_i8_tile_pack((uint32_t)types[ti], interleaved ? inter : plain, interleaved ? ib : rb, interleaved, 16, k, got);
                if (memcmp(got, want, tile_bytes) != 0)
                    fail_msg("%s %s tile, %s rows", isas[ii], tt->name, interleaved ? "interleaved" : "plain");
            }
            /* a lone interleaved group (a repacked matrix's last 8 rows): rows 8-15 zero */
            memset(got, 0xA5, tile_bytes);
            sp_i8_tile_pack((uint32_t)types[ti], inter, ib, true, 8, k, got);
            if (memcmp(got, want8, tile_bytes) != 0) fail_msg("%s %s tile, one interleaved group", isas[ii], tt->name);
        }
        sp_kernels_select(saved);
        free(plain);
        free(inter);
        free(want);
        free(want8);
        free(got);
    }
}

/* The integer prefill kernel against float arithmetic on the same codes and the same quantized
 * activations, for every type with integer codes: odd row counts (partial tiles), token counts
 * that leave a partial token block, and the codes form itself against dequantize. */
static void integer_prefill_gemm(void **st) {
    (void)st;
    static const char *const isas[] = {"avx2", "avx2-vnni", "avx512-noamx", "avx512"}; /* avx512: AMX where the CPU has it */
    static const int types[] = {SP_TYPE_Q8_0, SP_TYPE_Q4_0, SP_TYPE_Q4_1, SP_TYPE_Q5_0,
                                SP_TYPE_Q5_1, SP_TYPE_Q4_K, SP_TYPE_Q5_K, SP_TYPE_Q6_K};
    uint64_t s = 23;
    int tested = 0;
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[ii]);
        if (!isa || !isa->gemm_i8) continue;
        tested++;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const sp_type_traits *tt = sp_type_traits_get((uint32_t)types[ti]);
            const int64_t k = 512;
            const int nr = 13, nt = 37; /* AMX: two products of 16 tokens, then 5 */
            const size_t rb = sp_row_size((uint32_t)types[ti], k);
            float *wf = malloc((size_t)k * nr * sizeof *wf), *x = malloc((size_t)k * nt * sizeof *x);
            uint8_t *wq = malloc(rb * nr), *tile = malloc((size_t)(k / 32) * SP_I8_TILE_BLOCK_BYTES(tt->codes_group));
            for (int64_t i = 0; i < k * nr; i++) wf[i] = frand(&s);
            for (int64_t i = 0; i < k * nt; i++) x[i] = frand(&s);
            for (int r = 0; r < nr; r++) tt->quantize(wf + r * k, wq + r * rb, k);
            /* codes reproduce dequantize */
            for (int r = 0; r < nr; r++) {
                tt->dequantize(wq + r * rb, wf + r * k, k);
                for (int64_t i = 0; i < k; i += tt->block_size) {
                    uint8_t q[QK_K];
                    float sc[QK_K / 16], mn[QK_K / 16];
                    tt->codes(wq + r * rb + i / tt->block_size * tt->type_size, q, sc, mn);
                    for (int j = 0; j < tt->block_size; j++)
                        if (fabsf(sc[j / 16] * q[j] - mn[j / 16] - wf[r * k + i + j]) > 1e-5f)
                            fail_msg("%s codes differ from dequantize at %d", tt->name, (int)(i + j));
                }
            }
            const int64_t ldq = k + 64; /* token rows apart by more than k, as prepare_i8_rows lays them */
            int8_t *q = calloc((size_t)(ldq * nt), 1);
            float *d = malloc((size_t)(k / 32 * nt) * sizeof *d), *ds = malloc((size_t)(k / 16 * nt) * sizeof *ds);
            int32_t *s16 = malloc((size_t)(k / 16 * nt) * sizeof *s16), *os = malloc((size_t)(k / 16 * nt) * sizeof *os);
            for (int t = 0; t < nt; t++) {
                sp_quantize_activations(x + t * k, k, q + t * ldq, d + t * (k / 32), s16 + t * (k / 16));
                if (isa->quantize_act) { /* the vectorised quantizer is bit-identical */
                    int8_t q2[512];
                    float d2[16];
                    int32_t s2[32];
                    isa->quantize_act(x + t * k, k, q2, d2, s2);
                    assert_memory_equal(q2, q + t * ldq, 512);
                    assert_memory_equal(d2, d + t * (k / 32), sizeof d2);
                    assert_memory_equal(s2, s16 + t * (k / 16), sizeof s2);
                }
                const int g = tt->codes_group;
                for (int64_t j = 0; j < k / g; j++) {
                    const int32_t sum = g == 16 ? s16[t * (k / 16) + j] : s16[t * (k / 16) + 2 * j] + s16[t * (k / 16) + 2 * j + 1];
                    ds[t * (k / g) + j] = d[t * (k / 32) + (g == 16 ? j / 2 : j)] * (float)sum;
                    os[t * (k / g) + j] = -tt->codes_offset * sum;
                }
            }
            { /* the packer with this ISA's transposition writes the same bytes as with byte copies */
                const sp_isa_kernels *saved = sp_kernels();
                sp_kernels_select(isa);
                sp_i8_tile_pack((uint32_t)types[ti], wq, (int64_t)rb, false, nr, k, tile);
                sp_kernels_select(sp_kernels_by_name("scalar"));
                uint8_t *tile2 = malloc((size_t)(k / 32) * SP_I8_TILE_BLOCK_BYTES(tt->codes_group));
                sp_i8_tile_pack((uint32_t)types[ti], wq, (int64_t)rb, false, nr, k, tile2);
                sp_kernels_select(saved);
                assert_memory_equal(tile, tile2, (size_t)(k / 32) * SP_I8_TILE_BLOCK_BYTES(tt->codes_group));
                free(tile2);
            }
            const sp_i8_rows rows = {q, d, ds, s16, os, ldq};
            float out[37 * 16];
            isa->gemm_i8(tile, tt->codes_group, tt->codes_max, tt->codes_offset, nr, &rows, nt, k, out, 16);
            if (strcmp(isas[ii], "avx512") == 0 && sp_kernels_by_name("avx512-noamx")->gemm_i8) {
                /* AMX and VNNI: the same exact integer sums, scaled in the same order */
                float out2[37 * 16];
                sp_kernels_by_name("avx512-noamx")->gemm_i8(tile, tt->codes_group, tt->codes_max, tt->codes_offset, nr, &rows, nt, k,
                                                            out2, 16);
                for (int t = 0; t < nt; t++)
                    if (memcmp(out + t * 16, out2 + t * 16, (size_t)nr * sizeof *out) != 0)
                        fail_msg("%s: token %d differs between avx512 and avx512-noamx", tt->name, t);
            }
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < nr; r++) {
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < k; i++) {
                        const double xi = (double)d[t * (k / 32) + i / 32] * q[t * ldq + i];
                        ref += wf[r * k + i] * xi;
                        mag += fabs(wf[r * k + i] * xi);
                    }
                    if (fabs(out[t * 16 + r] - ref) > 2e-5 * mag + 1e-6)
                        fail_msg("%s %s token %d row %d: %.7g vs %.7g", isas[ii], tt->name, t, r, out[t * 16 + r], ref);
                }
            free(wf); free(x); free(wq); free(tile); free(q); free(d); free(ds); free(s16); free(os);
        }
    }
    /* the extremes: every code at its largest, activations at ±127 — where narrower sums would
     * overflow (AVX2 adds pairs of products in 16 bits) — with float mins (offset 0) and with the
     * offset folded into the integer sum */
    static const struct { int group, codes_max, offset; } ext[] = {{32, 15, 0}, {32, 31, 0}, {16, 63, 0}, {32, 255, 0},
                                                                   {32, 15, 8}, {32, 31, 16}, {16, 63, 32}, {32, 255, 128}};
    enum { ET = 21 }; /* tokens: one AMX product of 16, then 5 */
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        const sp_isa_kernels *isa = sp_kernels_by_name(isas[ii]);
        if (!isa || !isa->gemm_i8) continue;
        for (size_t e = 0; e < sizeof ext / sizeof *ext; e++)
            for (int sign = -1; sign <= 1; sign += 2) {
                const int64_t k = 64, nb = k / 32, g = ext[e].group;
                uint8_t *tile = calloc((size_t)nb, SP_I8_TILE_BLOCK_BYTES(g));
                for (int64_t b = 0; b < nb; b++) {
                    uint8_t *blk = tile + b * SP_I8_TILE_BLOCK_BYTES(g);
                    memset(blk, ext[e].codes_max, 512);
                    float *sm = (float *)(blk + 512);
                    for (int h = 0; h < 32 / g; h++)
                        for (int r = 0; r < 16; r++) sm[32 * h + r] = 1, sm[32 * h + 16 + r] = 0;
                }
                int8_t q[ET * 64];
                float d[ET * 2], ds[ET * 4];
                for (int i = 0; i < ET * 64; i++) q[i] = (int8_t)(127 * sign);
                for (int i = 0; i < ET * 2; i++) d[i] = 1;
                for (int i = 0; i < ET * 4; i++) ds[i] = 0;
                int32_t sums[ET * 4], osum[ET * 4];
                for (int i = 0; i < ET * 4; i++) sums[i] = 16 * 127 * sign;
                for (int i = 0; i < ET * 4; i++) osum[i] = -ext[e].offset * (g == 16 ? 1 : 2) * 16 * 127 * sign;
                const sp_i8_rows rows = {q, d, ds, sums, osum, k};
                float out[ET * 16];
                isa->gemm_i8(tile, g, ext[e].codes_max, ext[e].offset, 16, &rows, ET, k, out, 16);
                const int want = (int)(sign * 127 * (ext[e].codes_max - ext[e].offset) * k);
                for (int i = 0; i < ET * 16; i++)
                    if (out[i] != (float)want)
                        fail_msg("%s codes %d offset %d, activations %d: %.0f, not %d", isas[ii], ext[e].codes_max, ext[e].offset,
                                 sign * 127, out[i], want);
                free(tile);
            }
    }
    if (!tested) { printf("  skipped: no integer prefill kernel on this CPU\n"); skip(); }
    printf("  %d integer prefill kernel sets checked\n", tested);
}

static void pooling_keeps_edges_undiluted(void **st) {
    (void)st;
    float x[6] = {6, 0, 0, 0, 0, 3};
    double tmp[7];
    sp_avg_pool_1d(x, 6, 3, tmp);
    assert_float_equal(x[0], 3.0f, 1e-6); /* (6+0)/2: the edge averages only what exists */
    assert_float_equal(x[1], 2.0f, 1e-6);
    assert_float_equal(x[2], 0.0f, 1e-6);
    assert_float_equal(x[5], 1.5f, 1e-6);
    float c[5] = {1, 1, 1, 1, 1};
    sp_avg_pool_1d(c, 5, 13, tmp); /* kernel wider than the input: still a mean of ones */
    for (int i = 0; i < 5; i++) assert_float_equal(c[i], 1.0f, 1e-6);
}

/* RoPE by its definition, computed here in double: adjacent pairs (2i, 2i+1) for Llama, pairs
 * (i, i + n_rot/2) for NeoX (Qwen), angle pos × base^(-2i/n_rot). */
static void rope_by_definition(void **st) {
    (void)st;
    enum { D = 8 };
    const int32_t pos = 3;
    for (int neox = 0; neox <= 1; neox++) {
        sp_rope_params p = {.n_rot = D, .base = 10000.0f, .freq_scale = 1.0f, .neox = neox != 0};
        float cs[D], x[D];
        sp_rope_table(&p, &pos, 1, cs);
        for (int i = 0; i < D; i++) x[i] = (float)(i + 1);
        sp_rope_apply(x, 1, D, cs, &p);
        for (int i = 0; i < D / 2; i++) {
            const double th = pos * pow(10000.0, -2.0 * i / D);
            const int a = neox ? i : 2 * i, b = neox ? i + D / 2 : 2 * i + 1;
            const double xa = a + 1, xb = b + 1;
            assert_float_equal(x[a], xa * cos(th) - xb * sin(th), 1e-5);
            assert_float_equal(x[b], xa * sin(th) + xb * cos(th), 1e-5);
        }
    }
}

/* YaRN by the paper's definition (Peng et al. 2023, "NTK-by-parts" and the temperature), in
 * double: pair i turns r = L / λ_i times within the training context L (λ_i = 2π base^(2i/d));
 * pairs with r ≥ β_fast keep their angle, pairs with r ≤ β_slow are divided by the factor s, the
 * pairs between mix the two linearly in i (ends rounded outward to whole pairs, as llama.cpp
 * does); every cos and sin is multiplied by 1 + 0.1 ln s. */
static void yarn_by_definition(void **st) {
    (void)st;
    enum { D = 32 };
    const double base = 10000, L = 2048, s = 4, fast = 32, slow = 1, pi = 3.14159265358979323846;
    sp_rope_params p = {.n_rot = D, .base = (float)base, .freq_scale = 1.0f};
    sp_rope_set_yarn(&p, (float)s, (int)L, (float)fast, (float)slow, 1.0f, false);
    /* the pair index where r = β: base^(2i/d) = L / (2π β) */
    const double lo = floor(D / 2.0 * log(L / (2 * pi * fast)) / log(base));
    const double hi = ceil(D / 2.0 * log(L / (2 * pi * slow)) / log(base));
    assert_true(lo >= 1 && hi < D / 2 && lo < hi); /* the ramp lies inside: every kind of pair is checked */
    const int32_t pos[3] = {0, 777, 8000};
    float cs[3 * D];
    sp_rope_table(&p, pos, 3, cs);
    const double m = 1 + 0.1 * log(s);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < D / 2; i++) {
            const double own = pos[t] * pow(base, -2.0 * i / D);
            const double keep = i <= lo ? 1 : i >= hi ? 0 : 1 - (i - lo) / (hi - lo);
            const double th = own * keep + own / s * (1 - keep);
            assert_float_equal(cs[t * D + 2 * i], m * cos(th), 2e-5);
            assert_float_equal(cs[t * D + 2 * i + 1], m * sin(th), 2e-5);
        }
    /* the paper's ramp (γ(r) = (r - β_slow) / (β_fast - β_slow), clamped): linear in the turns */
    sp_rope_set_yarn(&p, (float)s, (int)L, (float)fast, (float)slow, 1.0f, true);
    sp_rope_table(&p, pos, 3, cs);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < D / 2; i++) {
            const double own = pos[t] * pow(base, -2.0 * i / D), r = L / (2 * pi / pow(base, -2.0 * i / D));
            const double keep = r >= fast ? 1 : r <= slow ? 0 : (r - slow) / (fast - slow);
            const double th = own * keep + own / s * (1 - keep);
            assert_float_equal(cs[t * D + 2 * i], m * cos(th), 2e-5);
            assert_float_equal(cs[t * D + 2 * i + 1], m * sin(th), 2e-5);
        }
}

/* The pool on an oversubscribed machine — six threads and a busy competitor on this machine's
 * cores, so workers lose their core mid-job — still runs every task of every job exactly once,
 * and a job is finished when sp_parallel_for returns (whether the workers or the caller alone
 * did it). */
typedef struct {
    atomic_int runs[64];
} pool_job;

static void count_task(void *ctx, int task, int n_tasks) {
    (void)n_tasks;
    pool_job *j = ctx;
    volatile double x = 0;
    for (int i = 0; i < (task % 5) * 200; i++) x += i; /* uneven tasks */
    (void)x;
    atomic_fetch_add(&j->runs[task], 1);
}

static atomic_int competitor_stop;
static void *competitor(void *arg) {
    (void)arg;
    volatile unsigned long x = 0;
    while (!atomic_load(&competitor_stop)) x++;
    return NULL;
}

static void thread_pool_oversubscribed(void **st) {
    (void)st;
    const int before = sp_get_threads();
    assert_int_equal(sp_set_threads(6), SP_OK);
    pthread_t busy;
    atomic_store(&competitor_stop, 0);
    assert_int_equal(pthread_create(&busy, NULL, competitor, NULL), 0);
    pool_job j;
    for (int job = 0; job < 20000; job++) {
        const int n = 1 + job % 40;
        for (int t = 0; t < 64; t++) atomic_store(&j.runs[t], 0);
        sp_parallel_for(n, count_task, &j);
        for (int t = 0; t < 64; t++)
            if (atomic_load(&j.runs[t]) != (t < n)) fail_msg("job %d: task %d ran %d times", job, t, atomic_load(&j.runs[t]));
    }
    atomic_store(&competitor_stop, 1);
    pthread_join(busy, NULL);
    assert_int_equal(sp_set_threads(before), SP_OK);
}

/* A worker that loses its core once — an idle virtual machine's host takes it for a few
 * milliseconds now and then — does not send the next jobs to the caller alone; a second such
 * stall soon after (another process wants the core) does. The worker's first task of a job
 * sleeps 60 ms, as a descheduled worker would; a job it missed (a loaded machine) is tried
 * again, and a pair of stalls too far apart to say anything about the window is done over. */
static atomic_int stalled_worker_in;
static pthread_t stall_caller;
static void stall_task(void *ctx, int task, int n_tasks) {
    (void)ctx, (void)task, (void)n_tasks;
    if (pthread_equal(pthread_self(), stall_caller)) {
        volatile double x = 0;
        for (int i = 0; i < 20000; i++) x += i;
        (void)x;
    } else if (atomic_exchange(&stalled_worker_in, 1) == 0) {
        nanosleep(&(struct timespec){0, 60 * 1000 * 1000}, NULL);
    }
}

static bool stall_counted(void) {
    const long before = sp_threads_stalls();
    for (int tries = 0; tries < 50; tries++) {
        atomic_store(&stalled_worker_in, 0);
        sp_parallel_for(64, stall_task, NULL);
        if (sp_threads_stalls() > before) return true;
    }
    return false;
}

static void drain_solo_jobs(void) {
    pool_job j = {0};
    for (int i = 0; i < 100000 && sp_threads_solo_jobs() > 0; i++) sp_parallel_for(2, count_task, &j);
    assert_int_equal(sp_threads_solo_jobs(), 0);
}

static void thread_pool_one_stall_is_not_contention(void **st) {
    (void)st;
    const int before = sp_get_threads();
    assert_int_equal(sp_set_threads(2), SP_OK);
    stall_caller = pthread_self();
    bool judged = false;
    for (int attempt = 0; attempt < 5 && !judged; attempt++) {
        drain_solo_jobs();
        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL); /* earlier stalls fall out of the window */
        assert_true(stall_counted());
        const double first = sp_seconds();
        assert_int_equal(sp_threads_solo_jobs(), 0);
        assert_true(stall_counted());
        if (sp_seconds() - first > 0.12) continue; /* the window is 0.15 s of shared work */
        assert_true(sp_threads_solo_jobs() > 0);
        judged = true;
    }
    drain_solo_jobs();
    assert_int_equal(sp_set_threads(before), SP_OK);
    if (!judged) skip();
}

/* Buffers the kernels read in vectors begin on a cache line (malloc's 16 bytes left every 64-byte
 * load of a panel spanning two lines), whatever their size: small ones from the heap, large ones
 * mapped. */
static void vector_memory_is_line_aligned(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 16, 100, 4096 + 16, 200 * 1024, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *held = malloc(24); /* a heap not freshly started: the next block lies wherever */
        uint8_t *p = sp_alloc_vectors(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 0xA5, sizes[i]); /* the whole size is usable (ASan checks) */
        free(p);
        free(held);
    }
}

static void type_names(void **st) {
    (void)st;
    assert_int_equal(sp_type_from_name("q4_k"), SP_TYPE_Q4_K);
    assert_int_equal(sp_type_from_name("BF16"), SP_TYPE_BF16);
    assert_int_equal(sp_type_from_name("Q4_K_M"), -1);
    assert_string_equal(sp_type_name(20), "IQ4_NL");
    assert_null(sp_type_traits_get(20));
    assert_null(sp_type_traits_get(1u << 30));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quantize_round_trip), cmocka_unit_test(fused_dot_matches_dequantize),
        cmocka_unit_test(isa_kernels_agree_with_scalar), cmocka_unit_test(decode_attention_primitives), cmocka_unit_test(decode_attention), cmocka_unit_test(prefill_attention), cmocka_unit_test(matmul_matches_definition), cmocka_unit_test(matmul_panels), cmocka_unit_test(matmul_interleaved_rows), cmocka_unit_test(matmul_group_is_each_alone),
        cmocka_unit_test(integer_decode_dots), cmocka_unit_test(float_rows_in_lockstep), cmocka_unit_test(integer_decode_dots_at_extremes), cmocka_unit_test(integer_prefill_gemm), cmocka_unit_test(integer_tile_of_whole_rows), cmocka_unit_test(feature_overlays_apply_alone), cmocka_unit_test(avx_vnni_overlay),
        cmocka_unit_test(kernel_set_by_name),
        cmocka_unit_test(pooling_keeps_edges_undiluted), cmocka_unit_test(rope_by_definition), cmocka_unit_test(yarn_by_definition), cmocka_unit_test(type_names), cmocka_unit_test(vector_memory_is_line_aligned), cmocka_unit_test(thread_pool_oversubscribed), cmocka_unit_test(thread_pool_one_stall_is_not_contention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
