/* AVX-512 BF16 kernels (Zen 4, Sapphire Rapids): vdpbf16ps does 32 multiply-adds per
 * instruction, twice the f32 FMA rate. Compiled with -mavx512bf16; chosen at run time. */
#include <immintrin.h>
#include <string.h>

#include "fp16.h"
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

void sp_avx512_f16_to_bf16(const uint16_t *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { /* both halves loaded before the store: dst may be src */
        const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i)));
        const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i + 16)));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    for (; i < n; i++) dst[i] = sp_f32_to_bf16(_cvtsh_ss(src[i]));
}

/* out[t][r] (+)= sum over pairs q of x[t][2q..2q+1] · panel[q][r]: R tokens × V vectors of 16
 * weight rows in registers; each step broadcasts one pair of a token's values and multiplies it
 * into V vectors of weight pairs. R and V are constants at every call (unrolled, in registers). */
static inline __attribute__((always_inline)) void gemm_bf16_block(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx,
                                                                   int k, float *out, int64_t ldo, bool accumulate, const int R,
                                                                   const int V, __mmask16 last) {
    __m512 acc[6][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int v = 0; v < V; v++)
            acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(v == V - 1 ? last : 0xFFFF, out + r * ldo + 16 * v) : _mm512_setzero_ps();
    for (int q = 0; q < k / 2; q++) {
        __m512bh b[4];
        UNROLL for (int v = 0; v < V; v++) b[v] = (__m512bh)_mm512_maskz_loadu_epi32(v == V - 1 ? last : 0xFFFF, panel + (int64_t)q * nr + 16 * v);
        UNROLL for (int r = 0; r < R; r++) {
            uint32_t pair;
            memcpy(&pair, x + r * ldx + 2 * q, sizeof pair);
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)pair);
            UNROLL for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], b[v], a);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int v = 0; v < V; v++) _mm512_mask_storeu_ps(out + r * ldo + 16 * v, v == V - 1 ? last : 0xFFFF, acc[r][v]);
}

void sp_avx512_gemm_bf16(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int nt, int k, float *out, int64_t ldo,
                         bool accumulate) {
    for (int j = 0; j < nr; j += 64, panel += 64, out += 64) {
        const int left = nr - j < 64 ? nr - j : 64, V = (left + 15) / 16;
        const __mmask16 last = left % 16 ? (__mmask16)((1u << (left % 16)) - 1) : (__mmask16)0xFFFF;
        for (int t = 0; t < nt; t += 6) {
            const int R = nt - t < 6 ? nt - t : 6;
            const uint16_t *xt = x + t * ldx;
            float *ot = out + t * ldo;
#define GEMM_BF16_CASE(r, v)                                                                                            \
    case 4 * (r) + (v): gemm_bf16_block(panel, nr, xt, ldx, k, ot, ldo, accumulate, r, v, last); break;
            switch (4 * R + V) {
                GEMM_BF16_CASE(6, 4) GEMM_BF16_CASE(6, 3) GEMM_BF16_CASE(6, 2) GEMM_BF16_CASE(6, 1)
                GEMM_BF16_CASE(5, 4) GEMM_BF16_CASE(5, 3) GEMM_BF16_CASE(5, 2) GEMM_BF16_CASE(5, 1)
                GEMM_BF16_CASE(4, 4) GEMM_BF16_CASE(4, 3) GEMM_BF16_CASE(4, 2) GEMM_BF16_CASE(4, 1)
                GEMM_BF16_CASE(3, 4) GEMM_BF16_CASE(3, 3) GEMM_BF16_CASE(3, 2) GEMM_BF16_CASE(3, 1)
                GEMM_BF16_CASE(2, 4) GEMM_BF16_CASE(2, 3) GEMM_BF16_CASE(2, 2) GEMM_BF16_CASE(2, 1)
                GEMM_BF16_CASE(1, 4) GEMM_BF16_CASE(1, 3) GEMM_BF16_CASE(1, 2) GEMM_BF16_CASE(1, 1)
            default: break;
            }
#undef GEMM_BF16_CASE
        }
    }
}
