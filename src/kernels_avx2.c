/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; chosen at run time. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "fp16.h"
#include "kernels.h"
#include "kernels_x86.h"
#include "quant.h"

/* The integer decode dots of the 32-value formats (kernels_q8_blocks.h) with vpmaddubsw: pairs
 * of u8 × s8 products in 16 bits (codes ≤ 128, activations ≤ 127: no saturation), then vpmaddwd. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }
#define SP_PAIRS16 /* small codes' pair sums of four blocks added before vpmaddwd (fold4_pairs) */
#include "kernels_q8_blocks.h"

static float avx2_dot_f32(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* c (+)= a·b, row-major: R rows × 16 columns of c in registers (2 ymm per row); each step of the
 * inner dimension loads 2 vectors of b and broadcasts one value of a per row. R is a constant at
 * every call (unrolled, the accumulators in registers: 6 rows use 12 of the 16). */
static inline __attribute__((always_inline)) void gemm_nn_block(const float *a, int64_t sai, int64_t sap, const float *b,
                                                                 int64_t ldb, float *c, int64_t ldc, int k, bool accumulate,
                                                                 const int R) {
    __m256 acc[6][2];
    UNROLL for (int r = 0; r < R; r++) {
        acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
        acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
        UNROLL for (int r = 0; r < R; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * sai + p * sap);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

/* Blocks of 6 rows × 16 columns, then the rows left (1..5) as one block; the columns past the
 * last 16 one value at a time. */
static void avx2_gemm_nn(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc, int m,
                         int n, int k, bool accumulate) {
    const int n16 = n & ~15;
    for (int j = 0; j < n16; j += 16)
        for (int i = 0; i < m; i += 6) {
            const float *ai = a + i * sai, *bj = b + j;
            float *cij = c + i * ldc + j;
            switch (m - i < 6 ? m - i : 6) {
            case 6: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 6); break;
            case 5: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 5); break;
            case 4: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 4); break;
            case 3: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 3); break;
            case 2: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 2); break;
            default: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 1); break;
            }
        }
    for (int i = 0; i < m; i++)
        for (int j = n16; j < n; j++) {
            float s = accumulate ? c[i * ldc + j] : 0;
            for (int p = 0; p < k; p++) s += a[i * sai + p * sap] * b[p * ldb + j];
            c[i * ldc + j] = s;
        }
}

/* 8 × 8 floats in registers: rows in, columns out (unpack pairs of rows, then pairs of pairs,
 * then exchange 128-bit halves). */
static inline __attribute__((always_inline)) void transpose8_regs(const __m256 in[8], __m256 out[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(in[i], in[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(in[i], in[i + 1]);
    }
    for (int g = 0; g < 2; g++) { /* u[4g + c], half H: column 4H + c of rows 4g..4g+3 */
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        out[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        out[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

static inline __attribute__((always_inline)) void transpose8x8(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m256 in[8], out[8];
    for (int i = 0; i < 8; i++) in[i] = _mm256_loadu_ps(src + i * lds);
    transpose8_regs(in, out);
    for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + i * ldd, out[i]);
}

/* The integer tile's transposition (sp_i8_tile_pack): 16 rows of 32 code bytes, src_stride
 * apart (any number of bytes: Q8_0's rows as they lie), to [group of 4 bytes][row][4] — two 8 × 8
 * transposes of 32-bit words. */
static void avx2_interleave16(const uint8_t *src, int64_t src_stride, uint8_t *dst) {
    for (int half = 0; half < 2; half++) {
        __m256 in[8], out[8];
        for (int i = 0; i < 8; i++) in[i] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(src + (8 * half + i) * src_stride)));
        transpose8_regs(in, out);
        for (int g = 0; g < 8; g++) _mm256_storeu_ps((float *)(void *)(dst + 64 * g + 32 * half), out[g]);
    }
}

static void avx2_transpose32(const void *src_v, int64_t lds, int rows, int64_t cols, void *dst_v, int64_t ldd) {
    const float *src = src_v; /* 32-bit elements moved as floats: loads, shuffles and stores keep their bits */
    float *dst = dst_v;
    const int rows8 = rows & ~7;
    const int64_t cols8 = cols & ~(int64_t)7;
    for (int r = 0; r < rows8; r += 8)
        for (int64_t c = 0; c < cols8; c += 8) transpose8x8(src + r * lds + c, lds, dst + c * ldd + r, ldd);
    if (cols8 < cols) sp_transpose32_scalar(src + cols8, lds, rows8, cols - cols8, dst + cols8 * ldd, ldd);
    if (rows8 < rows) sp_transpose32_scalar(src + rows8 * lds, lds, rows - rows8, cols, dst + rows8, ldd);
}

static void avx2_transpose16_to_f32(const uint16_t *src, int64_t lds, int rows, int64_t cols, float *dst, int64_t ldd, bool bf16) {
    const int rows8 = rows & ~7;
    const int64_t cols8 = cols & ~(int64_t)7;
    for (int r = 0; r < rows8; r += 8)
        for (int64_t c = 0; c < cols8; c += 8) {
            __m256 in[8], out[8];
            for (int i = 0; i < 8; i++) {
                const __m128i h = _mm_loadu_si128((const __m128i *)(src + (r + i) * lds + c));
                in[i] = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
            }
            transpose8_regs(in, out);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (c + i) * ldd + r, out[i]);
        }
    if (cols8 < cols) sp_transpose16_to_f32_scalar(src + cols8, lds, rows8, cols - cols8, dst + cols8 * ldd, ldd, bf16);
    if (rows8 < rows) sp_transpose16_to_f32_scalar(src + rows8 * lds, lds, rows - rows8, cols, dst + rows8, ldd, bf16);
}

static void avx2_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void avx2_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

/* ------------------------------------------------------------------ exp, softmax, SiLU */

/* exp(x) for 8 floats: 2^n · p(r) with n = round(x·log2 e), r = x - n·ln 2 (two-part ln 2), p
 * the degree-6 minimax polynomial of Cephes' expf (≈1-2 ulp), as the AVX-512 exp16. This part
 * returns p(r) and n as integers, for x already within the caller's range. */
static inline __m256 exp8_poly(__m256 x, __m256i *n_out) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SP_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SP_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SP_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SP_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SP_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SP_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SP_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SP_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SP_EXP_P5));
    *n_out = _mm256_cvtps_epi32(n);
    return _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
}

/* exp(x) for x ≤ 89: 2^n built from exponent bits in two halves (each in the normal range), so
 * that the product underflows to 0 as expf does. */
static inline __m256 exp8_below(__m256 x) {
    __m256i n;
    const __m256 p = exp8_poly(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), &n);
    const __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1), bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* exp(x) for a softmax's x ≤ 0: as exp8_below down to -87 (where 2^n leaves the normal range),
 * below that the value at -87 (1.6e-38) instead of a subnormal or 0: beside the row's max, whose
 * term is 1, that changes no sum; 2^n in one multiply. */
static inline __m256 exp8_softmax(__m256 x) {
    __m256i n;
    const __m256 p = exp8_poly(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), &n);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23)));
}

/* exp(x) for any x: overflows to +inf as expf does */
static inline __m256 exp8(__m256 x) { return exp8_below(_mm256_min_ps(x, _mm256_set1_ps(89.0f))); }

/* The online-softmax step across 8 query rows per vector (scores key-major: s[c*ld + r]); the
 * rows past the last 8 in scalar code. A group whose rows all see the whole tile (every tile of
 * a long prompt but the diagonal's) takes a form without the masks, its max in four chains: the
 * same values, in two thirds of the instructions (a score minus its row's max is ≤ 0, so exp
 * needs no clamp from above). */
static void avx2_softmax_tile(float *s, int64_t ld, int n_keys, int n_rows, const int *live, float *m, float *l, float *corr) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    int r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        const __m256i lv = _mm256_loadu_si256((const __m256i *)(live + r));
        const bool whole = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n_keys), lv))) == 0;
        const __m256 m_old = _mm256_loadu_ps(m + r);
        __m256 mx = m_old;
        if (whole) {
            __m256 m1 = m_old, m2 = m_old, m3 = m_old;
            int c = 0;
            for (; c + 4 <= n_keys; c += 4) {
                mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + c * ld + r));
                m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + (c + 1) * ld + r));
                m2 = _mm256_max_ps(m2, _mm256_loadu_ps(s + (c + 2) * ld + r));
                m3 = _mm256_max_ps(m3, _mm256_loadu_ps(s + (c + 3) * ld + r));
            }
            for (; c < n_keys; c++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + c * ld + r));
            mx = _mm256_max_ps(_mm256_max_ps(mx, m1), _mm256_max_ps(m2, m3));
        } else
            for (int c = 0; c < n_keys; c++) {
                const __m256 seen = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lv, _mm256_set1_epi32(c)));
                mx = _mm256_blendv_ps(mx, _mm256_max_ps(mx, _mm256_loadu_ps(s + c * ld + r)), seen);
            }
        /* rows that have seen nothing yet keep max -inf: factor 1, probabilities 0 */
        const __m256 any = _mm256_cmp_ps(mx, ninf, _CMP_NEQ_OQ);
        const __m256 cf = _mm256_blendv_ps(one, exp8_below(_mm256_sub_ps(m_old, mx)), any);
        __m256 sum = _mm256_setzero_ps();
        if (whole)
            for (int c = 0; c < n_keys; c++) {
                const __m256 p = _mm256_and_ps(any, exp8_softmax(_mm256_sub_ps(_mm256_loadu_ps(s + c * ld + r), mx)));
                _mm256_storeu_ps(s + c * ld + r, p);
                sum = _mm256_add_ps(sum, p);
            }
        else
            for (int c = 0; c < n_keys; c++) {
                const __m256 seen = _mm256_and_ps(any, _mm256_castsi256_ps(_mm256_cmpgt_epi32(lv, _mm256_set1_epi32(c))));
                const __m256 p = _mm256_and_ps(seen, exp8_softmax(_mm256_sub_ps(_mm256_loadu_ps(s + c * ld + r), mx)));
                _mm256_storeu_ps(s + c * ld + r, p);
                sum = _mm256_add_ps(sum, p);
            }
        _mm256_storeu_ps(l + r, _mm256_fmadd_ps(_mm256_loadu_ps(l + r), cf, sum));
        _mm256_storeu_ps(m + r, mx);
        _mm256_storeu_ps(corr + r, cf);
    }
    if (r < n_rows) sp_softmax_tile_scalar(s + r, ld, n_keys, n_rows - r, live + r, m + r, l + r, corr + r);
}

static float avx2_exp_shifted(float *x, int64_t n, float shift) {
    const __m256 sh = _mm256_set1_ps(shift);
    __m256 sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum8(sum) + sp_exp_shifted_scalar(x + i, n - i, shift);
}

static void avx2_silu_mul(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 sig = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(up + i)));
    }
    sp_silu_mul_scalar(gate + i, up + i, n - i);
}

/* ------------------------------------------------------------------ decode attention */

/* 8 values of the KV cache at element i, as floats. */
static inline __m256 cache8(const void *cache, bool f16, int64_t i) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)cache + i)))
               : _mm256_loadu_ps((const float *)cache + i);
}

/* One query row against 8 keys (kf: their rows as floats, ldk apart), as a vector of the 8
 * scores: per key the products summed over d mod 8 in order of d, then those 8 lanes in a fixed
 * tree — lanes l and l+4, l and l+2, l+1 — two, then four keys at a time in shuffles, with no
 * transpose (see the AVX-512 set's row_scores16). Input slot s holds key 4·(s mod 2) + s/2 so that
 * the tree leaves key i in lane i. */
static inline __attribute__((always_inline)) __m256 row_scores8(const float *kf, int64_t ldk, const float *q, const int NV) {
    __m256 t1[4], t2[2];
    UNROLL for (int i = 0; i < 4; i++) {
        const int ka = 4 * ((2 * i) % 2) + (2 * i) / 2, kb = 4 * ((2 * i + 1) % 2) + (2 * i + 1) / 2;
        __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(kf + ka * ldk));
        __m256 b = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(kf + kb * ldk));
        UNROLL for (int j = 1; j < NV; j++) {
            const __m256 qj = _mm256_loadu_ps(q + 8 * j);
            a = _mm256_fmadd_ps(qj, _mm256_loadu_ps(kf + ka * ldk + 8 * j), a);
            b = _mm256_fmadd_ps(qj, _mm256_loadu_ps(kf + kb * ldk + 8 * j), b);
        }
        t1[i] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)); /* l + l+4, two keys */
    }
    UNROLL for (int i = 0; i < 2; i++) /* l + l+2, four keys */
        t2[i] = _mm256_add_ps(_mm256_shuffle_ps(t1[2 * i], t1[2 * i + 1], 0x44), _mm256_shuffle_ps(t1[2 * i], t1[2 * i + 1], 0xEE));
    return _mm256_add_ps(_mm256_shuffle_ps(t2[0], t2[1], 0x88), _mm256_shuffle_ps(t2[0], t2[1], 0xDD)); /* l + l+1 */
}

/* Keys 8 at a time: an f16 tile (or a short one) converted once into kbuf, an f32 one read where
 * it lies; then each row's 8 scores by row_scores8. A row's scores depend on nothing but the row
 * and the keys, whoever else is in the call. */
static void attn_scores(const float *q, int n_rows, int hd, const void *k, bool f16, int64_t stride, int n_keys, float *s,
                        int64_t lds) {
    if (hd % 8 || hd > 256) {
        sp_attn_scores_scalar(q, n_rows, hd, k, f16, stride, n_keys, s, lds);
        return;
    }
    const int nv = hd / 8;
    _Alignas(32) float kbuf[8 * 256];
    for (int c0 = 0; c0 < n_keys; c0 += 8) {
        const int n = n_keys - c0 < 8 ? n_keys - c0 : 8;
        const float *kf = kbuf;
        int64_t ldk = hd;
        if (f16 && n == 8) {
            const uint16_t *kh = (const uint16_t *)k + c0 * stride;
            for (int i = 0; i < 8; i++, kh += stride)
                for (int j = 0; j < nv; j++) _mm256_store_ps(kbuf + i * hd + 8 * j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kh + 8 * j))));
        } else if (n < 8) {
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < nv; j++)
                    _mm256_store_ps(kbuf + i * hd + 8 * j, i < n ? cache8(k, f16, (c0 + i) * stride + 8 * j) : _mm256_setzero_ps());
        } else {
            kf = (const float *)k + c0 * stride;
            ldk = stride;
        }
        for (int r = 0; r < n_rows; r++) {
            const float *qr = q + (int64_t)r * hd;
            __m256 sc;
            switch (nv) {
            case 4: sc = row_scores8(kf, ldk, qr, 4); break;
            case 8: sc = row_scores8(kf, ldk, qr, 8); break;
            case 16: sc = row_scores8(kf, ldk, qr, 16); break;
            default: sc = row_scores8(kf, ldk, qr, nv); break;
            }
            if (n == 8) _mm256_storeu_ps(s + r * lds + c0, sc);
            else {
                float out[8];
                _mm256_storeu_ps(out, sc);
                for (int i = 0; i < n; i++) s[r * lds + c0 + i] = out[i];
            }
        }
    }
}

/* acc (+)= P·V for R rows × V vectors of 8 dimensions in registers. R and V are constants at
 * every call. */
static inline __attribute__((always_inline)) void attn_values_block(const float *p, int64_t ldp, const void *v, bool f16,
                                                                    int64_t stride, int n_keys, float *acc, int hd, const int R,
                                                                    const int V) {
    __m256 a[2][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < V; j++) a[r][j] = _mm256_loadu_ps(acc + r * hd + 8 * j);
    for (int c = 0; c < n_keys; c++) {
        __m256 x[4];
        UNROLL for (int j = 0; j < V; j++) x[j] = cache8(v, f16, c * stride + 8 * j);
        UNROLL for (int r = 0; r < R; r++) {
            const __m256 w = _mm256_broadcast_ss(p + r * ldp + c);
            UNROLL for (int j = 0; j < V; j++) a[r][j] = _mm256_fmadd_ps(w, x[j], a[r][j]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < V; j++) _mm256_storeu_ps(acc + r * hd + 8 * j, a[r][j]);
}

static void attn_values(const float *p, int64_t ldp, int n_rows, int hd, const void *v, bool f16, int64_t stride, int n_keys,
                        float *acc) {
    if (hd % 8 || hd > 256) {
        sp_attn_values_scalar(p, ldp, n_rows, hd, v, f16, stride, n_keys, acc);
        return;
    }
    const int64_t esz = f16 ? 2 : 4;
    for (int d0 = 0; d0 < hd; d0 += 32) {
        const int V = (hd - d0) / 8 < 4 ? (hd - d0) / 8 : 4;
        const void *vd = (const char *)v + d0 * esz;
        for (int r = 0; r < n_rows;) {
            const int R = n_rows - r < 2 ? n_rows - r : 2;
            const float *pr = p + r * ldp;
            float *ar = acc + (int64_t)r * hd + d0;
#define ATTN_VALUES_CASE(rr, vv)                                                                                     \
    case 4 * (rr) + (vv):                                                                                             \
        if (f16) attn_values_block(pr, ldp, vd, true, stride, n_keys, ar, hd, rr, vv);                                \
        else attn_values_block(pr, ldp, vd, false, stride, n_keys, ar, hd, rr, vv);                                   \
        break;
            switch (4 * R + V) {
                ATTN_VALUES_CASE(1, 1) ATTN_VALUES_CASE(1, 2) ATTN_VALUES_CASE(1, 3) ATTN_VALUES_CASE(1, 4)
                ATTN_VALUES_CASE(2, 1) ATTN_VALUES_CASE(2, 2) ATTN_VALUES_CASE(2, 3) ATTN_VALUES_CASE(2, 4)
            default: break;
            }
#undef ATTN_VALUES_CASE
            r += R;
        }
    }
}

/* 8 values of a 16-bit float row as f32: F16 by conversion, BF16 (its bits the top half of an
 * f32's) by a shift. */
static inline __m256 half8(const uint16_t *w, const bool bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)w);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}
/* One such value (a row's tail past its last 8). */
static inline float half1(uint16_t w, const bool bf16) { return bf16 ? sp_bf16_to_f32(w) : _cvtsh_ss(w); }

/* F16 and BF16 rows. Four chains of additions: one chain waits on each FMA's latency (4 cycles
 * for 8 values, about 16 GB/s of F16 a core at 4 GHz), near what memory delivers in decode, so
 * that it shows (1B F16 decode, 2 threads: 11.5 → 12.4 t/s). */
static inline __attribute__((always_inline)) float dot_half(const void *row, const float *x, int64_t n, const bool bf16) {
    const uint16_t *w = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(half8(w + i, bf16), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(half8(w + i + 8, bf16), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(half8(w + i + 16, bf16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(half8(w + i + 24, bf16), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(half8(w + i, bf16), _mm256_loadu_ps(x + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += half1(w[i], bf16) * x[i];
    return s;
}
static float dot_f16(const void *row, const float *x, int64_t n) { return dot_half(row, x, n, false); }
static float dot_bf16(const void *row, const float *x, int64_t n) { return dot_half(row, x, n, true); }

/* F16 and BF16 rows in decode, R ≤ 4 in lockstep (dot_rows_f): a step converts 8 values of each
 * row once and multiplies them with each of T ≤ 2 tokens' values, one accumulator per row and
 * token, so a (row, token) sum runs over the row in one order whatever comes with it. Four rows
 * at once keep four streams of weights in flight, where one row at a time (dot_half's four
 * chains, by pieces of 512 bytes: matmul_task) kept one, and each row asks for its line
 * `ahead` bytes on (matmul_task: eight rows, the group after next — as far ahead in time
 * whatever the row's length), into L2. On AMD Zen 3 the misses, not the arithmetic, set
 * decode's pace (1B F16 decode, one thread: the pieces 6.3-6.4 t/s, four rows without a
 * prefetch 7.0-7.3, with it +11-17 % more; 4 or 12 rows ahead, or 12-96 KiB, no better;
 * ik_llama.cpp's AVX2 F16 kernel also takes four rows). */
static inline __attribute__((always_inline)) void half_rows(const uint8_t *rows, int64_t row_bytes, const int R, const float *x,
                                                            int64_t ldx, const int T, int64_t n, float *out, int64_t ldo,
                                                            int64_t ahead, const bool bf16) {
    const uint16_t *w[4];
    __m256 acc[2][4];
    UNROLL for (int r = 0; r < R; r++) w[r] = (const uint16_t *)(rows + r * row_bytes);
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++) acc[t][r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v[4];
        if (ahead && (i & 31) == 0) /* a line of each row: 32 values */
            UNROLL for (int r = 0; r < R; r++) __builtin_prefetch((const char *)(w[r] + i) + ahead, 0, 2);
        UNROLL for (int r = 0; r < R; r++) v[r] = half8(w[r] + i, bf16);
        UNROLL for (int t = 0; t < T; t++) {
            const __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
            UNROLL for (int r = 0; r < R; r++) acc[t][r] = _mm256_fmadd_ps(v[r], xv, acc[t][r]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = hsum8(acc[t][r]);
        for (int64_t j = i; j < n; j++) s += half1(w[r][j], bf16) * x[t * ldx + j];
        out[t * ldo + r] = s;
    }
}
#define HALF_ROWS(name, BF16)                                                                                              \
    static void name(const void *rows, int64_t row_bytes, int n_rows, const float *x, int64_t ldx, int n_tokens, int64_t n, \
                     float *out, int64_t ldo, int64_t ahead) {                                                             \
        if (n_rows == 4) {                                                                                                 \
            if (n_tokens == 2) half_rows(rows, row_bytes, 4, x, ldx, 2, n, out, ldo, ahead, BF16);                          \
            else half_rows(rows, row_bytes, 4, x, ldx, 1, n, out, ldo, ahead, BF16);                                        \
            return;                                                                                                        \
        }                                                                                                                  \
        for (int r = 0; r < n_rows; r++)                                                                                   \
            for (int t = 0; t < n_tokens; t++)                                                                             \
                half_rows((const uint8_t *)rows + r * row_bytes, row_bytes, 1, x + t * ldx, ldx, 1, n, out + t * ldo + r, ldo,  \
                          ahead, BF16);                                                                                    \
    }
HALF_ROWS(dot_rows_f16, false)
HALF_ROWS(dot_rows_bf16, true)

static float dot_q8_0_f32(const void *row, const float *x, int64_t n) {
    const block_q8_0 *b = row;
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 p = _mm256_setzero_ps();
        for (int j = 0; j < 32; j += 8) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].qs + j))));
            p = _mm256_fmadd_ps(q, _mm256_loadu_ps(x + j), p);
        }
        s = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(b[i].d)), p, s);
    }
    return hsum8(s);
}

/* Q4_K and Q5_K: 256 values in 8 sub-blocks of 32, six-bit scales and mins (unpacked as in the
 * AVX-512 kernel); per sub-block the integer dot of its codes, scaled by d · scale · the
 * activations' scale, less dmin · min · the activations' sum. Q5_K (five) adds each code's
 * fifth bit from qh (bit s of byte l: value l of sub-block s). Four sub-blocks' 16-bit sums are
 * folded into one register before vpmaddwd, so that the widening, the conversion and the
 * multiply-add by the scales come once per 128 values, not per 32 (as ik_llama.cpp's AVX2
 * kernels do): those share Zen 3's two multiply pipes with vpmaddubsw (1B Q5_K_M decode, one
 * thread, 13.6–13.8 → 16.2 t/s; Q4_K_M 16.0–16.4 → 17.0–18.5). For T tokens (1..4) at once, as
 * the 32-value formats' kernels (kernels_q8_blocks.h): a block's scales and codes unpacked once
 * for all, each token's arithmetic its own, in the same order whatever T (a batched decode
 * step, a speculative check). */
static inline __attribute__((always_inline)) void dot_k4_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out, int64_t os,
                                                                const int T, const bool five) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(16);
    __m256 acc[4], mins[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = mins[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs, *bits;
        const block_q4_K *b = k4_block(row, i, five, &qs, &bits);
        sp_prefetch_ahead(b, k4_bytes(five));
        uint32_t u[4];
        q4_K_scales_mins(b->scales, u);
        /* the 8 sub-blocks' scales and mins as vectors, times the activations' 8 scales; the min
         * term one multiply-add on the activations' sums (a scalar product per sub-block made
         * decode compute-bound) */
        const __m128i sm = _mm_loadu_si128((const __m128i *)u);
        const __m256 scw = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)), mnw = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d)), dmin = _mm256_set1_ps(_cvtsh_ss(b->dmin));
        __m256 sc[4];
        UNROLL for (int t = 0; t < T; t++) {
            const __m256 dx = _mm256_loadu_ps(x[t].d + 8 * i);
            sc[t] = _mm256_mul_ps(_mm256_mul_ps(scw, dx), d);
            mins[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(mnw, dx), dmin), block_sums8(x[t].sum16 + 16 * i), mins[t]);
        }
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)bits) : _mm256_setzero_si256();
        UNROLL for (int h = 0; h < 2; h++) { /* values 128h..128h+127: sub-blocks 4h..4h+3 */
            const __m256i raw0 = _mm256_loadu_si256((const __m256i *)(qs + 64 * h)), raw1 = _mm256_loadu_si256((const __m256i *)(qs + 64 * h + 32));
            __m256i c[4] = {_mm256_and_si256(raw0, m4), _mm256_and_si256(_mm256_srli_epi16(raw0, 4), m4), _mm256_and_si256(raw1, m4),
                            _mm256_and_si256(_mm256_srli_epi16(raw1, 4), m4)};
            if (five) /* sub-block s's fifth bits are bit s of qh's bytes: moved to bit 4 (a 16-bit shift by at
                       * most 4 keeps a byte's bits in the byte that bit 4 is read from) */
                UNROLL for (int k = 0; k < 4; k++) {
                    const int sb = 4 * h + k;
                    const __m256i moved = sb <= 4 ? _mm256_slli_epi16(qh, 4 - sb) : _mm256_srli_epi16(qh, sb - 4);
                    c[k] = _mm256_or_si256(c[k], _mm256_and_si256(moved, m16));
                }
            UNROLL for (int t = 0; t < T; t++) {
                /* the four sub-blocks' 16-bit pair sums folded so that 32-bit lane k of each half
                 * holds sub-block k's (fold4_pairs, as the 32-value formats' four blocks), then
                 * one conversion and one multiply-add for the 128 values, by the four scales
                 * repeated on both halves */
                const int8_t *q = x[t].q + QK_K * i + 128 * h;
                __m256i p[4];
                UNROLL for (int k = 0; k < 4; k++) p[k] = _mm256_maddubs_epi16(c[k], _mm256_loadu_si256((const __m256i *)(q + 32 * k)));
                /* the scales of sub-blocks 4h..4h+3 on both halves (each immediate written out: h is a
                 * constant only where the loop is unrolled, not at -O1) */
                const __m256 scales = h ? _mm256_permute2f128_ps(sc[t], sc[t], 0x11) : _mm256_permute2f128_ps(sc[t], sc[t], 0x00);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4_pairs(p[0], p[1], p[2], p[3])), scales, acc[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) out[t * os] = hsum8(acc[t]) - hsum8(mins[t]);
}
static inline __attribute__((always_inline)) void dot_q4_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out, int64_t os,
                                                                  const int T) {
    dot_k4_tokens(row, x, n, out, os, T, false);
}
static inline __attribute__((always_inline)) void dot_q5_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out, int64_t os,
                                                                  const int T) {
    dot_k4_tokens(row, x, n, out, os, T, true);
}
DOT_TOKENS(dot_q4_K)
DOT_TOKENS(dot_q5_K)

/* Q6_K: codes of six bits (four of ql, two of qh) stand for code − 32, a signed scale per 16
 * values; 32 codes per register, the sums of four registers folded as dot_k4_tokens's (there
 * once in 16 bits and once in 32), one multiply-add by the 16-value scales per 128 values (1B
 * Q6_K decode, one thread, 15.2 → 16.7 t/s). For T tokens (1..4) at once, as dot_k4_tokens. */
static inline __attribute__((always_inline)) void dot_q6_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out, int64_t os,
                                                                  const int T) {
    const block_q6_K *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    const __m256i by_lane = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); /* a half's 8 scales in the order of the folded sums' lanes */
    __m256 acc[4], offset[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = offset[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        sp_prefetch_ahead(&b[i], (int64_t)sizeof b[i]);
        /* the 16 scales (one per 16 values) times d and the activations' scale of their 32, as two
         * vectors; the offset of 32 one multiply-add each on the activations' sums of 16 */
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
        __m256 sc[4][2];
        for (int h = 0; h < 2; h++) {
            const __m256 scw = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h ? _mm_srli_si128(sc8, 8) : sc8));
            const __m256i spread = _mm256_setr_epi32(4 * h, 4 * h, 4 * h + 1, 4 * h + 1, 4 * h + 2, 4 * h + 2, 4 * h + 3, 4 * h + 3);
            UNROLL for (int t = 0; t < T; t++) {
                const __m256 dxh = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x[t].d + 8 * i), spread);
                sc[t][h] = _mm256_mul_ps(_mm256_mul_ps(scw, dxh), d);
                offset[t] = _mm256_fmadd_ps(sc[t][h], _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x[t].sum16 + 16 * i + 8 * h))), offset[t]);
            }
        }
        for (int h = 0; h < 2; h++) { /* values 128h..128h+127 */
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            const __m256i codes[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4))};
            UNROLL for (int t = 0; t < T; t++) {
                /* as dot_k4_tokens, but six-bit codes allow two pairs a 16-bit sum (2 · 2 · 63 ·
                 * 127 < 2^15): the pairs folded once in 16 bits, vpmaddwd, once more in 32; lane k
                 * of half f then holds the values 32k + 16f.. of the 128, whose scale is 2k + f */
                const int8_t *q = x[t].q + QK_K * i + 128 * h;
                __m256i p[4];
                UNROLL for (int k = 0; k < 4; k++) p[k] = _mm256_maddubs_epi16(codes[k], _mm256_loadu_si256((const __m256i *)(q + 32 * k)));
                const __m256i p01 = _mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1])), ones);
                const __m256i p23 = _mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3])), ones);
                const __m256i sums = _mm256_add_epi32(_mm256_unpacklo_epi64(p01, p23), _mm256_unpackhi_epi64(p01, p23));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_permutevar8x32_ps(sc[t][h], by_lane), acc[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) out[t * os] = hsum8(acc[t]) - 32 * hsum8(offset[t]);
}
DOT_TOKENS(dot_q6_K)

/* ------------------------------------------------------------------ prefill: integer GEMM
 * The packed tile of sp_i8_tile_pack (per 4 values, the codes of 16 rows side by side: 8 rows
 * per register) times the int8 activations: vpmaddubsw multiplies the unsigned codes by 4
 * activation bytes (broadcast) and adds pairs into int16; those are summed in int16 over as many
 * groups of 4 as cannot overflow (S: 8 for 4-bit codes, 4 for 5-bit, 2 for 6-bit, 1 for 8-bit:
 * S · 2 · max code · 127 < 32768), then vpmaddwd adds the pairs into int32. Q8_0's codes (q + 128,
 * up to 255) are taken as the signed q (top bit flipped): its magnitude times the activations
 * with q's sign — the sum of q × activations, which is already what Q8_0's value d × q needs.
 * Types whose mins are whole multiples of their scales (codes_offset: Q4_0, Q5_0, Q6_K) start
 * the group's sum at −offset × (the activations' code sum); the others subtract a float min term
 * per group, as in the AVX-512 kernel. */

/* An empty asm that takes v in a register and gives it back, after each addition to a sum: GCC
 * otherwise re-associates each token's chain of additions into a tree over all its products, and
 * the products of a whole group wait on the stack (most of the kernel's instructions were spill
 * stores and loads; with the chains kept: Q4_K 139 → 199 GOP/s on one core of the Xeon). */
static inline __attribute__((always_inline)) void keep_in_register(__m256i *v) { __asm__("" : "+x"(*v)); }

/* C tokens against one tile (C, the group, S and wide constant at each call). In the inner loop
 * only the int16 sums of the current chunk of S groups of 4 live in registers (2 per token), and
 * the int32 sums of a group where they outlive a chunk (see avx2_gemm_i8 for how many tokens fit);
 * the int32 sums take each chunk as it ends, and the float sums in memory are touched once per
 * group. */
static inline __attribute__((always_inline)) void gemm_i8_tokens(const uint8_t *tile, const int group, const int S, const bool wide,
                                                                  const bool folded, int nr, const sp_i8_rows *x, int64_t t0, const int C,
                                                                  int64_t k, float *out, int64_t ldo) {
    const int64_t nb = k / 32, ng = k / group, stride = SP_I8_TILE_BLOCK_BYTES(group);
    const __m256i ones16 = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    const int8_t *q[4];
    const float *d[4], *ds[4];
    float sum[4][16];
    UNROLL for (int c = 0; c < C; c++) {
        q[c] = x->q + (t0 + c) * x->ldq;
        d[c] = x->d + (t0 + c) * nb;
        ds[c] = x->dsum + (t0 + c) * ng;
        memset(sum[c], 0, sizeof sum[c]);
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * stride;
        const float *sm = (const float *)(blk + 512); /* per group: 16 scales, then 16 mins */
        UNROLL for (int h = 0; h < 32 / group; h++) {
            __m256i acc[4][2];
            const int64_t gi = b * (32 / group) + h;
            UNROLL for (int g0 = h * group / 4; g0 < (h + 1) * group / 4; g0 += S) {
                __m256i p[4][2];
                UNROLL for (int g = g0; g < g0 + S; g++) {
                    __m256i w0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g));
                    __m256i w1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g + 32));
                    if (wide) {
                        w0 = _mm256_xor_si256(w0, flip);
                        w1 = _mm256_xor_si256(w1, flip);
                    }
                    const __m256i m0 = wide ? _mm256_abs_epi8(w0) : w0, m1 = wide ? _mm256_abs_epi8(w1) : w1;
                    UNROLL for (int c = 0; c < C; c++) {
                        const __m256i a = bcast4(q[c] + 32 * b + 4 * g);
                        const __m256i p0 = _mm256_maddubs_epi16(m0, wide ? _mm256_sign_epi8(a, w0) : a);
                        const __m256i p1 = _mm256_maddubs_epi16(m1, wide ? _mm256_sign_epi8(a, w1) : a);
                        p[c][0] = g == g0 ? p0 : _mm256_add_epi16(p[c][0], p0);
                        p[c][1] = g == g0 ? p1 : _mm256_add_epi16(p[c][1], p1);
                        keep_in_register(&p[c][0]);
                        keep_in_register(&p[c][1]);
                    }
                }
                UNROLL for (int c = 0; c < C; c++) UNROLL for (int half = 0; half < 2; half++) {
                    const __m256i s32 = _mm256_madd_epi16(p[c][half], ones16);
                    /* folded, the integer sum carries the min: −offset × the group's activation
                     * codes (Q8_0's codes are already taken as the signed q = code − 128) */
                    const __m256i start = folded && !wide ? _mm256_set1_epi32(x->osum[(t0 + c) * ng + gi]) : _mm256_setzero_si256();
                    acc[c][half] = _mm256_add_epi32(g0 == h * group / 4 ? start : acc[c][half], s32);
                    keep_in_register(&acc[c][half]);
                }
            }
            UNROLL for (int c = 0; c < C; c++) {
                if (wide && !folded) { /* the codes were q + 128 */
                    const int32_t *s16 = x->sum16 + (t0 + c) * (k / 16) + 2 * b; /* the group's 32 codes */
                    const __m256i add = _mm256_set1_epi32(128 * (s16[0] + s16[1]));
                    acc[c][0] = _mm256_add_epi32(acc[c][0], add);
                    acc[c][1] = _mm256_add_epi32(acc[c][1], add);
                }
                const __m256 dd = _mm256_set1_ps(d[c][b]);
                for (int half = 0; half < 2; half++) {
                    const __m256 vs = _mm256_loadu_ps(sm + 32 * h + 8 * half);
                    __m256 acc_f = _mm256_loadu_ps(sum[c] + 8 * half);
                    acc_f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[c][half]), _mm256_mul_ps(vs, dd), acc_f);
                    if (!folded) acc_f = _mm256_fnmadd_ps(_mm256_loadu_ps(sm + 32 * h + 16 + 8 * half), _mm256_set1_ps(ds[c][gi]), acc_f);
                    _mm256_storeu_ps(sum[c] + 8 * half, acc_f);
                }
            }
        }
    }
    UNROLL for (int c = 0; c < C; c++) {
        if (nr == 16) { /* a full tile: two stores, not a call to memcpy per token */
            _mm256_storeu_ps(out + (t0 + c) * ldo, _mm256_loadu_ps(sum[c]));
            _mm256_storeu_ps(out + (t0 + c) * ldo + 8, _mm256_loadu_ps(sum[c] + 8));
        } else {
            memcpy(out + (t0 + c) * ldo, sum[c], (size_t)nr * sizeof(float));
        }
    }
}

#define GEMM_I8_CASES(G, S, W, F)                                                     \
    switch (C) {                                                                      \
    case 4: gemm_i8_tokens(tile, G, S, W, F, nr, x, t, 4, k, out, ldo); break;        \
    case 3: gemm_i8_tokens(tile, G, S, W, F, nr, x, t, 3, k, out, ldo); break;        \
    case 2: gemm_i8_tokens(tile, G, S, W, F, nr, x, t, 2, k, out, ldo); break;        \
    default: gemm_i8_tokens(tile, G, S, W, F, nr, x, t, 1, k, out, ldo); break;       \
    }

static void avx2_gemm_i8(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt,
                         int64_t k, float *out, int64_t ldo) {
    const bool folded = codes_offset != 0;
    /* Q8_0 and Q6_K sum several chunks per group in int32 (Q8_0: one chunk per 4 values, Q6_K:
     * two per group of 16): with four tokens their int32 and int16 sums and the weights need
     * more than the 16 registers; three tokens fit (one core of the Xeon: Q6_K +15 %, Q8_0 +8 %) */
    const int block = codes_max > 127 || group == 16 ? 3 : 4;
    for (int t = 0; t < nt; t += block) {
        const int C = nt - t < block ? nt - t : block;
        if (codes_max > 127 && codes_offset == 128) { GEMM_I8_CASES(32, 1, true, true) } /* Q8_0 (group 32) */
        else if (codes_max > 127) { GEMM_I8_CASES(32, 1, true, false) }
        else if (group == 16 && folded) { GEMM_I8_CASES(16, 2, false, true) } /* Q6_K: codes to 63 */
        else if (group == 16) { GEMM_I8_CASES(16, 2, false, false) }
        else if (codes_max > 15 && folded) { GEMM_I8_CASES(32, 4, false, true) } /* five bits: Q5_0 */
        else if (codes_max > 15) { GEMM_I8_CASES(32, 4, false, false) }         /* Q5_1, Q5_K */
        else if (folded) { GEMM_I8_CASES(32, 8, false, true) }                  /* Q4_0 */
        else { GEMM_I8_CASES(32, 8, false, false) }                             /* Q4_1, Q4_K */
    }
}

/* sp_quantize_activations, 32 values per step, bit-identical (the same rounding: the current
 * mode, nearest with ties to even; the scalar loop calls fmaxf and lrintf per value, 7 % of a
 * 1B model's AVX2 prefill). The int8 packs work within 128-bit lanes; one permute restores order. */
static void avx2_quantize_act(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum16) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
        const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                                       _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h), inv = amax > 0 ? 127 / amax : 0;
        d[b] = amax / 127;
        __m256i c[4];
        for (int i = 0; i < 4; i++) c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(inv)));
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
        _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(bytes, order));
        for (int half = 0; half < 2; half++) {
            const __m256i s8 = _mm256_add_epi32(c[2 * half], c[2 * half + 1]);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            sum16[2 * b + half] = _mm_cvtsi128_si32(s4);
        }
    }
}

const sp_isa_kernels sp_avx2_kernels = {
    .name = "avx2", .dot_f32 = avx2_dot_f32, .f16_to_f32 = avx2_f16_to_f32, .f32_to_f16 = avx2_f32_to_f16,
    .gemm_bf16 = NULL, .f32_to_bf16 = NULL, .f16_to_bf16 = NULL, .gemm_nn = avx2_gemm_nn, .panel_strip = 16,
    .transpose32 = avx2_transpose32, .transpose16_to_f32 = avx2_transpose16_to_f32,
    .softmax_tile = avx2_softmax_tile, .attn_scores = attn_scores, .attn_values = attn_values,
    .exp_shifted = avx2_exp_shifted, .silu_mul = avx2_silu_mul,
    .quantize_act = avx2_quantize_act, .gemm_i8 = avx2_gemm_i8, .interleave16 = avx2_interleave16,
    .dot_row = {[SP_TYPE_F16] = dot_f16, [SP_TYPE_BF16] = dot_bf16, [SP_TYPE_Q8_0] = dot_q8_0_f32},
    .dot_rows_f = {[SP_TYPE_F16] = dot_rows_f16, [SP_TYPE_BF16] = dot_rows_bf16}, .dot_rows_f_rows = 4,
    .dot_row_q8 = {[SP_TYPE_Q8_0] = dot_q8_0, [SP_TYPE_Q4_0] = dot_q4_0, [SP_TYPE_Q4_1] = dot_q4_1, [SP_TYPE_Q5_0] = dot_q5_0,
                   [SP_TYPE_Q5_1] = dot_q5_1, [SP_TYPE_Q4_K] = dot_q4_K, [SP_TYPE_Q5_K] = dot_q5_K,
                   [SP_TYPE_Q6_K] = dot_q6_K},
    .dot_rows_q8 = {[SP_TYPE_Q8_0] = dot_q8_0_rows, [SP_TYPE_Q4_0] = dot_q4_0_rows, [SP_TYPE_Q4_1] = dot_q4_1_rows,
                    [SP_TYPE_Q5_0] = dot_q5_0_rows, [SP_TYPE_Q5_1] = dot_q5_1_rows, [SP_TYPE_Q4_K] = dot_q4_K_rows,
                    [SP_TYPE_Q5_K] = dot_q5_K_rows, [SP_TYPE_Q6_K] = dot_q6_K_rows},
    .dot8_rows_q8 = {[SP_TYPE_Q4_0] = dot8_q4_0_rows, [SP_TYPE_Q8_0] = dot8_q8_0_rows, [SP_TYPE_Q4_K] = dot8_q4_K_rows, [SP_TYPE_Q5_K] = dot8_q5_K_rows,
                     [SP_TYPE_Q6_K] = dot8_q6_K_rows},
};
