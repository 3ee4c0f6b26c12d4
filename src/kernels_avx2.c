/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; chosen at run time. */
#include <immintrin.h>

#include "kernels.h"
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

/* c (+)= a·b, row-major: blocks of 4 rows × 16 columns (8 ymm accumulators); other rows and
 * columns one value at a time. */
static void avx2_gemm_nn_4x16(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc,
                              int k, bool accumulate) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31;
#define ROW_INIT(r)                                                                                             \
    c##r##0 = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();                                \
    c##r##1 = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    ROW_INIT(0) ROW_INIT(1) ROW_INIT(2) ROW_INIT(3)
    for (int p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
#define ROW_FMA(r)                                                                                              \
    {                                                                                                           \
        const __m256 av = _mm256_set1_ps(a[r * sai + p * sap]);                                                 \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                                                             \
        c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);                                                             \
    }
        ROW_FMA(0) ROW_FMA(1) ROW_FMA(2) ROW_FMA(3)
    }
#define ROW_STORE(r)                                                                                            \
    _mm256_storeu_ps(c + r * ldc, c##r##0);                                                                     \
    _mm256_storeu_ps(c + r * ldc + 8, c##r##1);
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3)
#undef ROW_INIT
#undef ROW_FMA
#undef ROW_STORE
}

static void avx2_gemm_nn(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc, int m,
                         int n, int k, bool accumulate) {
    const int m4 = m & ~3, n16 = n & ~15;
    for (int i = 0; i < m4; i += 4)
        for (int j = 0; j < n16; j += 16)
            avx2_gemm_nn_4x16(a + i * sai, sai, sap, b + j, ldb, c + i * ldc + j, ldc, k, accumulate);
    for (int i = 0; i < m; i++)
        for (int j = i < m4 ? n16 : 0; j < n; j++) {
            float s = accumulate ? c[i * ldc + j] : 0;
            for (int p = 0; p < k; p++) s += a[i * sai + p * sap] * b[p * ldb + j];
            c[i * ldc + j] = s;
        }
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
    .gemm_bf16 = NULL, .f32_to_bf16 = NULL, .gemm_nn = avx2_gemm_nn,
    .softmax_tile = sp_softmax_tile_scalar, .exp_shifted = sp_exp_shifted_scalar, .silu_mul = sp_silu_mul_scalar,
    .quantize_act = sp_quantize_activations,
    .dot_row = {[SP_TYPE_F16] = dot_f16, [SP_TYPE_Q8_0] = dot_q8_0},
};
