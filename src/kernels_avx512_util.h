/* Helpers for the AVX-512 kernel files only (they need the AVX-512 compile flags). */
#ifndef SP_KERNELS_AVX512_UTIL_H
#define SP_KERNELS_AVX512_UTIL_H

#include <immintrin.h>
#include <stdint.h>

/* Sums each of 16 vectors v[t*4 + r] and stores the 16 totals as a 4×4 block:
 * out[t*ldo + r] = Σ lanes of v[t*4 + r]. A transpose-and-add tree: 45 instructions instead of
 * 16 separate horizontal sums. */
static inline void sp_store_sums_4x4(const __m512 v[16], float *out, int64_t ldo) {
    __m512 t[8], u[4], w[2];
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] */
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++) { /* per 128-bit lane: the lane's part of Σa, Σb, Σc, Σd */
        const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    for (int i = 0; i < 2; i++) /* combine the 128-bit lanes in pairs */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88), _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    const __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
    _mm_storeu_ps(out, _mm512_extractf32x4_ps(s, 0));
    _mm_storeu_ps(out + ldo, _mm512_extractf32x4_ps(s, 1));
    _mm_storeu_ps(out + 2 * ldo, _mm512_extractf32x4_ps(s, 2));
    _mm_storeu_ps(out + 3 * ldo, _mm512_extractf32x4_ps(s, 3));
}

#endif
