/* AVX-512 (F + BW) kernels. Compiled with -mavx512f -mavx512bw -mfma -mf16c; chosen at run time. */
#include <immintrin.h>

#include "kernels.h"

static float avx512_dot_f32(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    if (i + 16 <= n) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        i += 16;
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void avx512_dot_f32_x4(const float *w, int64_t stride, const float *x, int64_t n, float out[4]) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 xv = _mm512_loadu_ps(x + i);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), xv, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + stride + i), xv, s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 2 * stride + i), xv, s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 3 * stride + i), xv, s3);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), xv, s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + stride + i), xv, s1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + 2 * stride + i), xv, s2);
        s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + 3 * stride + i), xv, s3);
    }
    out[0] = _mm512_reduce_add_ps(s0); out[1] = _mm512_reduce_add_ps(s1);
    out[2] = _mm512_reduce_add_ps(s2); out[3] = _mm512_reduce_add_ps(s3);
}

static void avx512_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void avx512_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

const sp_isa_kernels sp_avx512_kernels = {
    "avx512", avx512_dot_f32, avx512_dot_f32_x4, avx512_f16_to_f32, avx512_f32_to_f16,
};
