/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; chosen at run time. */
#include <immintrin.h>

#include "kernels.h"
#include "kernels_x86.h"
#include "quant.h"

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float avx2_dot_f32(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
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

/* 8 × 8 floats: rows in, columns out (unpack pairs of rows, then pairs of pairs, then exchange
 * 128-bit halves). */
static inline void transpose8x8(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        const __m256 x = _mm256_loadu_ps(src + i * lds), y = _mm256_loadu_ps(src + (i + 1) * lds);
        t[i] = _mm256_unpacklo_ps(x, y);
        t[i + 1] = _mm256_unpackhi_ps(x, y);
    }
    for (int g = 0; g < 2; g++) { /* u[4g + c], half H: column 4H + c of rows 4g..4g+3 */
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
        _mm256_storeu_ps(dst + (4 + c) * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
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

static float dot_f16(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    __m256 s0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
    float s = hsum256(s0);
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

static float dot_q8_0(const void *row, const float *x, int64_t n) {
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
    return hsum256(s);
}

const sp_isa_kernels sp_avx2_kernels = {
    .name = "avx2", .dot_f32 = avx2_dot_f32, .f16_to_f32 = avx2_f16_to_f32, .f32_to_f16 = avx2_f32_to_f16,
    .gemm_bf16 = NULL, .f32_to_bf16 = NULL, .gemm_nn = avx2_gemm_nn, .transpose32 = avx2_transpose32,
    .softmax_tile = sp_softmax_tile_scalar, .exp_shifted = sp_exp_shifted_scalar, .silu_mul = sp_silu_mul_scalar,
    .quantize_act = sp_quantize_activations,
    .dot_row = {[SP_TYPE_F16] = dot_f16, [SP_TYPE_Q8_0] = dot_q8_0},
};
