/* AVX-512 BF16 kernels (Zen 4, Sapphire Rapids): vdpbf16ps does 32 multiply-adds per
 * instruction, twice the f32 FMA rate. Compiled with -mavx512bf16; chosen at run time. */
#include <immintrin.h>

#include "kernels_avx512_util.h"
#include "kernels_x86.h"

void sp_avx512_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i < n; i++) {
        /* round to nearest even, as the instruction does */
        union { float f; uint32_t u; } c = {src[i]};
        dst[i] = (c.u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((c.u >> 16) | 64) : (uint16_t)((c.u + 0x7fffu + ((c.u >> 16) & 1u)) >> 16);
    }
}

static inline __m512bh load_bh(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512((const void *)p); }

/* 4 weight rows × 4 tokens of bf16, k a multiple of 32. */
static void gemm_bf16_4x4(const uint16_t *w, int64_t ldw, const uint16_t *x, int64_t ldx, int64_t k, float *out, int64_t ldo) {
    __m512 acc[16]; /* acc[t*4 + r] */
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 32) {
        const __m512bh x0 = load_bh(x + i), x1 = load_bh(x + ldx + i), x2 = load_bh(x + 2 * ldx + i), x3 = load_bh(x + 3 * ldx + i);
        for (int r = 0; r < 4; r++) {
            const __m512bh wr = load_bh(w + r * ldw + i);
            acc[r] = _mm512_dpbf16_ps(acc[r], wr, x0);
            acc[4 + r] = _mm512_dpbf16_ps(acc[4 + r], wr, x1);
            acc[8 + r] = _mm512_dpbf16_ps(acc[8 + r], wr, x2);
            acc[12 + r] = _mm512_dpbf16_ps(acc[12 + r], wr, x3);
        }
    }
    sp_store_sums_4x4(acc, out, ldo);
}

static float dot_bf16(const uint16_t *w, const uint16_t *x, int64_t k) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 32) acc = _mm512_dpbf16_ps(acc, load_bh(w + i), load_bh(x + i));
    return _mm512_reduce_add_ps(acc);
}

void sp_avx512_gemm_bf16(const uint16_t *w, int64_t ldw, int nr, const uint16_t *x, int64_t ldx, int nt, int64_t k,
                         float *out, int64_t ldo) {
    const int nr4 = nr & ~3, nt4 = nt & ~3;
    for (int t = 0; t < nt4; t += 4)
        for (int r = 0; r < nr4; r += 4) gemm_bf16_4x4(w + r * ldw, ldw, x + t * ldx, ldx, k, out + t * ldo + r, ldo);
    for (int t = 0; t < nt; t++)
        for (int r = (t < nt4 ? nr4 : 0); r < nr; r++) out[t * ldo + r] = dot_bf16(w + r * ldw, x + t * ldx, k);
}
