/* AVX-512 (F, BW, VL) kernels: the f32 prefill micro-kernel and fused decode dots.
 * Compiled with AVX-512 flags; chosen at run time. kernels_avx512bf16.c adds bf16 GEMM. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "fp16.h"
#include "kernels.h"
#include "kernels_x86.h"
#include "quant.h"

static inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

static float dot_f32(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void sp_avx512_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

void sp_avx512_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

/* 16 × 16 floats in registers: rows in, columns out (unpack pairs of rows, then pairs of pairs,
 * then exchange 128-bit lanes twice). */
static inline __attribute__((always_inline)) void transpose16_regs(const __m512 in[16], __m512 out[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(in[i], in[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(in[i], in[i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g + c], lane L: column 4L + c of rows 4g..4g+3 */
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 lo_even = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), hi_even = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 lo_odd = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD), hi_odd = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        out[c] = _mm512_shuffle_f32x4(lo_even, hi_even, 0x88);
        out[8 + c] = _mm512_shuffle_f32x4(lo_even, hi_even, 0xDD);
        out[4 + c] = _mm512_shuffle_f32x4(lo_odd, hi_odd, 0x88);
        out[12 + c] = _mm512_shuffle_f32x4(lo_odd, hi_odd, 0xDD);
    }
}

static inline void transpose16x16(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m512 in[16], out[16];
    for (int i = 0; i < 16; i++) in[i] = _mm512_loadu_ps(src + i * lds);
    transpose16_regs(in, out);
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ldd, out[i]);
}

static void transpose32(const void *src_v, int64_t lds, int rows, int64_t cols, void *dst_v, int64_t ldd) {
    const float *src = src_v; /* 32-bit elements moved as floats: loads, shuffles and stores keep their bits */
    float *dst = dst_v;
    const int rows16 = rows & ~15;
    const int64_t cols16 = cols & ~(int64_t)15;
    for (int r = 0; r < rows16; r += 16)
        for (int64_t c = 0; c < cols16; c += 16) transpose16x16(src + r * lds + c, lds, dst + c * ldd + r, ldd);
    /* edges: the columns past the last 16 for the full rows, then the last rows */
    if (cols16 < cols) sp_transpose32_scalar(src + cols16, lds, rows16, cols - cols16, dst + cols16 * ldd, ldd);
    if (rows16 < rows) sp_transpose32_scalar(src + rows16 * lds, lds, rows - rows16, cols, dst + rows16, ldd);
}

/* 16 16-bit floats at p as f32 */
static inline __m512 widen16(const uint16_t *p, bool bf16) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

static void transpose16_to_f32(const uint16_t *src, int64_t lds, int rows, int64_t cols, float *dst, int64_t ldd, bool bf16) {
    const int rows16 = rows & ~15;
    const int64_t cols16 = cols & ~(int64_t)15;
    for (int r = 0; r < rows16; r += 16)
        for (int64_t c = 0; c < cols16; c += 16) {
            __m512 in[16], out[16];
            for (int i = 0; i < 16; i++) in[i] = widen16(src + (r + i) * lds + c, bf16);
            transpose16_regs(in, out);
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (c + i) * ldd + r, out[i]);
        }
    if (cols16 < cols) sp_transpose16_to_f32_scalar(src + cols16, lds, rows16, cols - cols16, dst + cols16 * ldd, ldd, bf16);
    if (rows16 < rows) sp_transpose16_to_f32_scalar(src + rows16 * lds, lds, rows - rows16, cols, dst + rows16, ldd, bf16);
}

/* ------------------------------------------------------------------ fused decode dots */

static float dot_f16(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i))), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16))), _mm512_loadu_ps(x + i + 16), s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    __m512 s0 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i))), 16);
        s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(v), _mm512_loadu_ps(x + i), s0);
    }
    float s = _mm512_reduce_add_ps(s0);
    for (; i < n; i++) s += sp_bf16_to_f32(w[i]) * x[i];
    return s;
}

/* F16 and BF16 rows in decode, in lockstep (dot_rows_f; kernels_avx2.c's half_rows at 16 values
 * a step): one accumulator per row and token, so a (row, token) sum runs over the row in one order
 * whatever comes with it; each row asks for its line `ahead` bytes on. With 32 registers, eight
 * rows of one token fit (eight weight vectors, eight sums): eight streams of weights in flight
 * rather than four. 1B F16 and BF16 decode, Intel Xeon (model 167), 2 threads, variants
 * alternating token by token in one run: 512-byte pieces of four rows (this set's form before)
 * → four rows in lockstep +5-8 %, eight rows +8-10 %; eight rows without the lookahead −2-6 %
 * against pieces. Two tokens take four rows at a time (16 sums). */
static inline __attribute__((always_inline)) void half_rows(const uint8_t *rows, int64_t row_bytes, const int R, const float *x,
                                                            int64_t ldx, const int T, int64_t n, float *out, int64_t ldo,
                                                            int64_t ahead, const bool bf16) {
    const uint16_t *w[8];
    __m512 acc[2][8];
    UNROLL for (int r = 0; r < R; r++) w[r] = (const uint16_t *)(rows + r * row_bytes);
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v[8];
        if (ahead && (i & 31) == 0) /* a line of each row: 32 values */
            UNROLL for (int r = 0; r < R; r++) __builtin_prefetch((const char *)(w[r] + i) + ahead, 0, 2);
        UNROLL for (int r = 0; r < R; r++) v[r] = widen16(w[r] + i, bf16);
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 xv = _mm512_loadu_ps(x + t * ldx + i);
            UNROLL for (int r = 0; r < R; r++) acc[t][r] = _mm512_fmadd_ps(v[r], xv, acc[t][r]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(acc[t][r]);
        for (int64_t j = i; j < n; j++) s += (bf16 ? sp_bf16_to_f32(w[r][j]) : _cvtsh_ss(w[r][j])) * x[t * ldx + j];
        out[t * ldo + r] = s;
    }
}
#define HALF_ROWS(name, BF16)                                                                                              \
    static void name(const void *rows, int64_t row_bytes, int n_rows, const float *x, int64_t ldx, int n_tokens, int64_t n, \
                     float *out, int64_t ldo, int64_t ahead) {                                                             \
        const uint8_t *p = rows;                                                                                           \
        if (n_rows == 8 && n_tokens == 1) {                                                                                \
            half_rows(p, row_bytes, 8, x, ldx, 1, n, out, ldo, ahead, BF16);                                               \
            return;                                                                                                        \
        }                                                                                                                  \
        int r = 0;                                                                                                         \
        for (; r + 4 <= n_rows; r += 4)                                                                                    \
            if (n_tokens == 2) half_rows(p + r * row_bytes, row_bytes, 4, x, ldx, 2, n, out + r, ldo, ahead, BF16);         \
            else half_rows(p + r * row_bytes, row_bytes, 4, x, ldx, 1, n, out + r, ldo, ahead, BF16);                       \
        for (; r < n_rows; r++)                                                                                            \
            for (int t = 0; t < n_tokens; t++)                                                                             \
                half_rows(p + r * row_bytes, row_bytes, 1, x + t * ldx, ldx, 1, n, out + t * ldo + r, ldo, ahead, BF16);    \
    }
HALF_ROWS(dot_rows_f16, false)
HALF_ROWS(dot_rows_bf16, true)

static inline __m512 i8x16_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }

static float dot_q8_0(const void *row, const float *x, int64_t n) {
    const block_q8_0 *b = row;
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        const __m512 d = _mm512_set1_ps(sp_fp16_to_f32(b[i].d));
        const __m512 q0 = i8x16_to_ps(_mm_loadu_si128((const __m128i *)b[i].qs));
        const __m512 q1 = i8x16_to_ps(_mm_loadu_si128((const __m128i *)(b[i].qs + 16)));
        const __m512 p = _mm512_fmadd_ps(q0, _mm512_loadu_ps(x), _mm512_mul_ps(q1, _mm512_loadu_ps(x + 16)));
        s = _mm512_fmadd_ps(d, p, s);
    }
    return _mm512_reduce_add_ps(s);
}

static float dot_q4_0(const void *row, const float *x, int64_t n) {
    const block_q4_0 *b = row;
    const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m512 lo = i8x16_to_ps(_mm_sub_epi8(_mm_and_si128(q, mask), eight));
        const __m512 hi = i8x16_to_ps(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), mask), eight));
        const __m512 p = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x), _mm512_mul_ps(hi, _mm512_loadu_ps(x + 16)));
        s = _mm512_fmadd_ps(_mm512_set1_ps(sp_fp16_to_f32(b[i].d)), p, s);
    }
    return _mm512_reduce_add_ps(s);
}

/* Σ (d·sc·q − dmin·m)·x = d·sc·Σ q·x − dmin·m·Σ x, per sub-block of 32 */
static float dot_q4_K(const void *row, const float *x, int64_t n) {
    const block_q4_K *b = row;
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d), dmin = sp_fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 4; j++, q += 32, x += 64) {
            uint8_t sc1, m1, sc2, m2;
            sp_k4_scale_min(2 * j, b[i].scales, &sc1, &m1);
            sp_k4_scale_min(2 * j + 1, b[i].scales, &sc2, &m2);
            const __m128i qa = _mm_loadu_si128((const __m128i *)q), qb = _mm_loadu_si128((const __m128i *)(q + 16));
            const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16), x2 = _mm512_loadu_ps(x + 32), x3 = _mm512_loadu_ps(x + 48);
            __m512 p1 = _mm512_fmadd_ps(i8x16_to_ps(_mm_and_si128(qa, mask)), x0, _mm512_mul_ps(i8x16_to_ps(_mm_and_si128(qb, mask)), x1));
            __m512 p2 = _mm512_fmadd_ps(i8x16_to_ps(_mm_and_si128(_mm_srli_epi16(qa, 4), mask)), x2,
                                        _mm512_mul_ps(i8x16_to_ps(_mm_and_si128(_mm_srli_epi16(qb, 4), mask)), x3));
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc1), p1, acc);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc2), p2, acc);
            accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * m1), _mm512_add_ps(x0, x1), accm);
            accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * m2), _mm512_add_ps(x2, x3), accm);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(acc, accm));
}

static float dot_q6_K(const void *row, const float *x, int64_t n) {
    const block_q6_K *b = row;
    const __m128i m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3), off = _mm_set1_epi8(32);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, x += 128) {
            for (int l = 0; l < 32; l += 16) {
                const int is = l / 16;
                const __m128i a = _mm_loadu_si128((const __m128i *)(ql + l)), c = _mm_loadu_si128((const __m128i *)(ql + l + 32));
                const __m128i h = _mm_loadu_si128((const __m128i *)(qh + l));
                const __m128i q1 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(a, m4), _mm_slli_epi16(_mm_and_si128(h, m2), 4)), off);
                const __m128i q2 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(c, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 2), m2), 4)), off);
                const __m128i q3 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 4), m2), 4)), off);
                const __m128i q4 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 6), m2), 4)), off);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc[is]), _mm512_mul_ps(i8x16_to_ps(q1), _mm512_loadu_ps(x + l)), acc);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc[is + 2]), _mm512_mul_ps(i8x16_to_ps(q2), _mm512_loadu_ps(x + l + 32)), acc);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc[is + 4]), _mm512_mul_ps(i8x16_to_ps(q3), _mm512_loadu_ps(x + l + 64)), acc);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc[is + 6]), _mm512_mul_ps(i8x16_to_ps(q4), _mm512_loadu_ps(x + l + 96)), acc);
            }
        }
    }
    return _mm512_reduce_add_ps(acc);
}

/* c (+)= a·b: R rows × V vectors of 16 columns of c in registers (the last vector masked); each
 * step of the inner dimension loads V vectors of b and broadcasts one value of a per row. R and V
 * are constants at every call, so the loops unroll and the accumulators stay in registers. */
static inline __attribute__((always_inline)) void gemm_nn_block(const float *a, int64_t sai, int64_t sap, const float *b,
                                                                 int64_t ldb, float *c, int64_t ldc, int k, bool accumulate,
                                                                 const int R, const int V, __mmask16 last) {
    __m512 acc[8][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int v = 0; v < V; v++)
            acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(v == V - 1 ? last : 0xFFFF, c + r * ldc + 16 * v) : _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 bv[4];
        UNROLL for (int v = 0; v < V; v++) bv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? last : 0xFFFF, b + p * ldb + 16 * v);
        UNROLL for (int r = 0; r < R; r++) {
            const __m512 av = _mm512_set1_ps(a[r * sai + p * sap]);
            UNROLL for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int v = 0; v < V; v++) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, v == V - 1 ? last : 0xFFFF, acc[r][v]);
}

/* The rows past the last block of 4: all of them at once (R = 1..3), so that even a single row
 * has V independent accumulators instead of one chain of dependent FMAs. */
static void gemm_nn_rows_left(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc,
                              int k, bool accumulate, int R, int V, __mmask16 last) {
#define GEMM_NN_CASE(r, v)                                                                                              \
    case 4 * (r) + (v): gemm_nn_block(a, sai, sap, b, ldb, c, ldc, k, accumulate, r, v, last); break;
    switch (4 * R + V) {
        GEMM_NN_CASE(1, 1) GEMM_NN_CASE(1, 2) GEMM_NN_CASE(1, 3) GEMM_NN_CASE(1, 4)
        GEMM_NN_CASE(2, 1) GEMM_NN_CASE(2, 2) GEMM_NN_CASE(2, 3) GEMM_NN_CASE(2, 4)
        GEMM_NN_CASE(3, 1) GEMM_NN_CASE(3, 2) GEMM_NN_CASE(3, 3) GEMM_NN_CASE(3, 4)
    default: break;
    }
#undef GEMM_NN_CASE
}

static void gemm_nn(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc, int m, int n,
                    int k, bool accumulate) {
    for (int j = 0; j < n; j += 64) {
        const int left = n - j < 64 ? n - j : 64, V = (left + 15) / 16;
        const __mmask16 last = left % 16 ? (__mmask16)((1u << (left % 16)) - 1) : (__mmask16)0xFFFF;
        const float *bj = b + j;
        int i = 0;
        if (V == 4) /* 6 × 4 vectors: 24 accumulators, 10 loads per 24 FMAs */
            for (; i + 6 <= m; i += 6) gemm_nn_block(a + i * sai, sai, sap, bj, ldb, c + i * ldc + j, ldc, k, accumulate, 6, 4, last);
        if (V <= 2) /* narrow (a 32-wide head): 8 rows per block keep the FMAs ahead of the loads */
            for (; i + 8 <= m; i += 8) {
                if (V == 2) gemm_nn_block(a + i * sai, sai, sap, bj, ldb, c + i * ldc + j, ldc, k, accumulate, 8, 2, last);
                else gemm_nn_block(a + i * sai, sai, sap, bj, ldb, c + i * ldc + j, ldc, k, accumulate, 8, 1, last);
            }
        for (; i + 4 <= m; i += 4) {
            const float *ai = a + i * sai;
            float *cij = c + i * ldc + j;
            switch (V) {
            case 4: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 4, 4, last); break;
            case 3: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 4, 3, last); break;
            case 2: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 4, 2, last); break;
            default: gemm_nn_block(ai, sai, sap, bj, ldb, cij, ldc, k, accumulate, 4, 1, last); break;
            }
        }
        if (i < m) gemm_nn_rows_left(a + i * sai, sai, sap, bj, ldb, c + i * ldc + j, ldc, k, accumulate, m - i, V, last);
    }
}

/* ------------------------------------------------------------------ decode attention */

/* 16 values of the KV cache at element i, as floats. */
static inline __m512 cache16(const void *cache, bool f16, int64_t i) {
    return f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)cache + i)))
               : _mm512_loadu_ps((const float *)cache + i);
}

/* One query row against 16 keys (kf: their rows as floats, ldk apart), as a vector of the 16
 * scores: per key the products summed over d mod 16 in order of d (a vector of 16 partial sums),
 * then those 16 lanes in a fixed tree — lanes l and l+8, l and l+4, l+2, l+1 — four keys at a time
 * in shuffles, with no transpose: a key tile costs a few shuffles per row, where transposing it
 * cost 4·hd shuffles whoever read it. Input slot s holds key 4·(s mod 4) + s/4 so that the tree
 * leaves key i in lane i. */
static inline __attribute__((always_inline)) __m512 row_scores16(const float *kf, int64_t ldk, const __m512 *qv, const int NV) {
    __m512 t1[8], t2[4], t3[2];
    UNROLL for (int i = 0; i < 8; i++) {
        const int ka = 4 * ((2 * i) % 4) + (2 * i) / 4, kb = 4 * ((2 * i + 1) % 4) + (2 * i + 1) / 4;
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kf + ka * ldk)), b = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kf + kb * ldk));
        UNROLL for (int j = 1; j < NV; j++) {
            a = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(kf + ka * ldk + 16 * j), a);
            b = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(kf + kb * ldk + 16 * j), b);
        }
        t1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE)); /* lanes l + l+8, two keys */
    }
    UNROLL for (int i = 0; i < 4; i++) /* l + l+4, four keys */
        t2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t1[2 * i], t1[2 * i + 1], 0x88), _mm512_shuffle_f32x4(t1[2 * i], t1[2 * i + 1], 0xDD));
    UNROLL for (int i = 0; i < 2; i++) /* l + l+2, eight keys */
        t3[i] = _mm512_add_ps(_mm512_shuffle_ps(t2[2 * i], t2[2 * i + 1], 0x44), _mm512_shuffle_ps(t2[2 * i], t2[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(t3[0], t3[1], 0x88), _mm512_shuffle_ps(t3[0], t3[1], 0xDD)); /* l + l+1 */
}

/* Keys 16 at a time: an f16 tile (or a short one) converted once into kbuf, an f32 one read where
 * it lies; then each row's 16 scores by row_scores16. A row's scores depend on nothing but the row
 * and the keys (the tree and the order of d are fixed), whoever else is in the call. */
static void attn_scores(const float *q, int n_rows, int hd, const void *k, bool f16, int64_t stride, int n_keys, float *s,
                        int64_t lds) {
    if (hd % 16 || hd > 256) {
        sp_attn_scores_scalar(q, n_rows, hd, k, f16, stride, n_keys, s, lds);
        return;
    }
    const int nv = hd / 16;
    _Alignas(64) float kbuf[16 * 256];
    for (int c0 = 0; c0 < n_keys; c0 += 16) {
        const int n = n_keys - c0 < 16 ? n_keys - c0 : 16;
        const float *kf = kbuf;
        int64_t ldk = hd;
        if (f16 && n == 16) {
            const uint16_t *kh = (const uint16_t *)k + c0 * stride;
            for (int i = 0; i < 16; i++, kh += stride)
                for (int j = 0; j < nv; j++) _mm512_store_ps(kbuf + i * hd + 16 * j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kh + 16 * j))));
        } else if (n < 16) {
            for (int i = 0; i < 16; i++)
                for (int j = 0; j < nv; j++)
                    _mm512_store_ps(kbuf + i * hd + 16 * j, i < n ? cache16(k, f16, (c0 + i) * stride + 16 * j) : _mm512_setzero_ps());
        } else {
            kf = (const float *)k + c0 * stride;
            ldk = stride;
        }
        for (int r = 0; r < n_rows; r++) {
            __m512 qv[16], sc;
            for (int j = 0; j < nv; j++) qv[j] = _mm512_loadu_ps(q + (int64_t)r * hd + 16 * j);
            switch (nv) {
            case 1: sc = row_scores16(kf, ldk, qv, 1); break;
            case 2: sc = row_scores16(kf, ldk, qv, 2); break;
            case 4: sc = row_scores16(kf, ldk, qv, 4); break;
            case 8: sc = row_scores16(kf, ldk, qv, 8); break;
            default: sc = row_scores16(kf, ldk, qv, nv); break;
            }
            _mm512_mask_storeu_ps(s + r * lds + c0, tail_mask(n), sc);
        }
    }
}

/* acc (+)= P·V for R rows × V vectors of 16 dimensions in registers: per key, V vectors of the
 * value and one broadcast weight per row. R and V are constants at every call. */
static inline __attribute__((always_inline)) void attn_values_block(const float *p, int64_t ldp, const void *v, bool f16,
                                                                    int64_t stride, int n_keys, float *acc, int hd, const int R,
                                                                    const int V) {
    __m512 a[4][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < V; j++) a[r][j] = _mm512_loadu_ps(acc + r * hd + 16 * j);
    for (int c = 0; c < n_keys; c++) {
        __m512 x[4];
        UNROLL for (int j = 0; j < V; j++) x[j] = cache16(v, f16, c * stride + 16 * j);
        UNROLL for (int r = 0; r < R; r++) {
            const __m512 w = _mm512_set1_ps(p[r * ldp + c]);
            UNROLL for (int j = 0; j < V; j++) a[r][j] = _mm512_fmadd_ps(w, x[j], a[r][j]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < V; j++) _mm512_storeu_ps(acc + r * hd + 16 * j, a[r][j]);
}

static void attn_values(const float *p, int64_t ldp, int n_rows, int hd, const void *v, bool f16, int64_t stride, int n_keys,
                        float *acc) {
    if (hd % 16 || hd > 256) {
        sp_attn_values_scalar(p, ldp, n_rows, hd, v, f16, stride, n_keys, acc);
        return;
    }
    const int64_t esz = f16 ? 2 : 4;
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int V = (hd - d0) / 16 < 4 ? (hd - d0) / 16 : 4;
        const void *vd = (const char *)v + d0 * esz;
        for (int r = 0; r < n_rows;) {
            const int R = n_rows - r < 4 ? n_rows - r : 4;
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
                ATTN_VALUES_CASE(3, 1) ATTN_VALUES_CASE(3, 2) ATTN_VALUES_CASE(3, 3) ATTN_VALUES_CASE(3, 4)
                ATTN_VALUES_CASE(4, 1) ATTN_VALUES_CASE(4, 2) ATTN_VALUES_CASE(4, 3) ATTN_VALUES_CASE(4, 4)
            default: break;
            }
#undef ATTN_VALUES_CASE
            r += R;
        }
    }
}

/* exp(x) for 16 floats: 2^n · p(r) with n = round(x·log2 e), r = x - n·ln 2 (two-part ln 2), p
 * the degree-6 minimax polynomial of Cephes' expf (≈1-2 ulp); scalef gives 0 below the float
 * range and +inf above it, like expf. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SP_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SP_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SP_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SP_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SP_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SP_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SP_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SP_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SP_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* The online-softmax step across 16 query rows per vector (scores key-major: s[c*ld + r]). A
 * group of 16 rows that all see the whole tile (every tile of a long prompt but the diagonal's)
 * takes a form without the masks, its max in four chains: the same values (as the AVX2 set's). */
static void softmax_tile(float *s, int64_t ld, int n_keys, int n_rows, const int *live, float *m, float *l, float *corr) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < n_rows; r += 16) {
        const __mmask16 valid = n_rows - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_rows - r)) - 1);
        const __m512i lv = _mm512_maskz_loadu_epi32(valid, live + r);
        const bool whole = valid == 0xFFFF && _mm512_cmplt_epi32_mask(lv, _mm512_set1_epi32(n_keys)) == 0;
        const __m512 m_old = _mm512_mask_loadu_ps(ninf, valid, m + r);
        __m512 mx = m_old;
        if (whole) {
            __m512 m1 = m_old, m2 = m_old, m3 = m_old;
            int c = 0;
            for (; c + 4 <= n_keys; c += 4) {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + c * ld + r));
                m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + (c + 1) * ld + r));
                m2 = _mm512_max_ps(m2, _mm512_loadu_ps(s + (c + 2) * ld + r));
                m3 = _mm512_max_ps(m3, _mm512_loadu_ps(s + (c + 3) * ld + r));
            }
            for (; c < n_keys; c++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + c * ld + r));
            mx = _mm512_max_ps(_mm512_max_ps(mx, m1), _mm512_max_ps(m2, m3));
        } else
            for (int c = 0; c < n_keys; c++) {
                const __mmask16 seen = _mm512_mask_cmpgt_epi32_mask(valid, lv, _mm512_set1_epi32(c));
                mx = _mm512_mask_max_ps(mx, seen, mx, _mm512_maskz_loadu_ps(seen, s + c * ld + r));
            }
        /* rows that have seen nothing yet keep max -inf: factor 1, probabilities 0 */
        const __mmask16 any = _mm512_cmp_ps_mask(mx, ninf, _CMP_NEQ_OQ);
        const __m512 cf = _mm512_mask_blend_ps(any, _mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(m_old, mx)));
        __m512 sum = _mm512_setzero_ps();
        if (whole)
            for (int c = 0; c < n_keys; c++) {
                const __m512 p = _mm512_maskz_mov_ps(any, exp16(_mm512_sub_ps(_mm512_loadu_ps(s + c * ld + r), mx)));
                _mm512_storeu_ps(s + c * ld + r, p);
                sum = _mm512_add_ps(sum, p);
            }
        else
            for (int c = 0; c < n_keys; c++) {
                const __mmask16 seen = _mm512_mask_cmpgt_epi32_mask(any, lv, _mm512_set1_epi32(c));
                const __m512 p = _mm512_maskz_mov_ps(seen, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(seen, s + c * ld + r), mx)));
                _mm512_mask_storeu_ps(s + c * ld + r, valid, p);
                sum = _mm512_add_ps(sum, p);
            }
        _mm512_mask_storeu_ps(l + r, valid, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(valid, l + r), cf, sum));
        _mm512_mask_storeu_ps(m + r, valid, mx);
        _mm512_mask_storeu_ps(corr + r, valid, cf);
    }
}

static float exp_shifted(float *x, int64_t n, float shift) {
    const __m512 s = _mm512_set1_ps(shift);
    __m512 sum = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(sum);
}

static void silu_mul(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        const __m512 sig = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(_mm512_mul_ps(g, sig), _mm512_loadu_ps(up + i)));
    }
    sp_silu_mul_scalar(gate + i, up + i, n - i);
}

const sp_isa_kernels sp_avx512_kernels = {
    .name = "avx512", .dot_f32 = dot_f32, .f16_to_f32 = sp_avx512_f16_to_f32, .f32_to_f16 = sp_avx512_f32_to_f16,
    .gemm_bf16 = NULL, .f32_to_bf16 = NULL, .f16_to_bf16 = NULL, /* bf16: kernels_avx512bf16.c */
    .gemm_nn = gemm_nn, .panel_strip = 64, .transpose32 = transpose32, .transpose16_to_f32 = transpose16_to_f32,
    .softmax_tile = softmax_tile, .attn_scores = attn_scores,
    .attn_values = attn_values, .exp_shifted = exp_shifted, .silu_mul = silu_mul,
    .quantize_act = sp_quantize_activations, /* vectorised in kernels_avx512vnni.c */
    .dot_row = {[SP_TYPE_F16] = dot_f16, [SP_TYPE_BF16] = dot_bf16, [SP_TYPE_Q8_0] = dot_q8_0, [SP_TYPE_Q4_0] = dot_q4_0,
                [SP_TYPE_Q4_K] = dot_q4_K, [SP_TYPE_Q6_K] = dot_q6_K},
    .dot_rows_f = {[SP_TYPE_F16] = dot_rows_f16, [SP_TYPE_BF16] = dot_rows_bf16}, .dot_rows_f_rows = 8,
};
