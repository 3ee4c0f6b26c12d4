/* AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; chosen at run time. */
#include <immintrin.h>

#include "kernels.h"

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

static void avx2_dot_f32_x4(const float *w, int64_t stride, const float *x, int64_t n, float out[4]) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), xv, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + stride + i), xv, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 2 * stride + i), xv, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 3 * stride + i), xv, s3);
    }
    out[0] = hsum256(s0); out[1] = hsum256(s1); out[2] = hsum256(s2); out[3] = hsum256(s3);
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) out[r] += w[r * stride + i] * x[i];
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

const sp_isa_kernels sp_avx2_kernels = {
    "avx2", avx2_dot_f32, avx2_dot_f32_x4, avx2_f16_to_f32, avx2_f32_to_f16,
};
