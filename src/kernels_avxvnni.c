/* AVX-VNNI kernels: vpdpbusd on 256-bit registers (VEX-encoded), for CPUs that have it without
 * AVX-512 — Intel's Alder Lake and later desktop and laptop cores (and the AVX2 path of any CPU
 * that has both). An overlay on the AVX2 set: the integer prefill product and the 32-value
 * formats' decode dots; everything else stays AVX2. Compiled with -mavxvnni; chosen at run time.
 *
 * Why it matters: plain AVX2 has no u8 × s8 → i32 product. vpmaddubsw adds pairs into 16 bits
 * that saturate, so Q8_0 needs a sign trick and a widening vpmaddwd per 32 products (three
 * instructions on the two vector-multiply ports), where vpdpbusd is one. */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "kernels_x86.h"
#include "quant.h"

static inline __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s); }

#include "kernels_q8_blocks.h"

/* ------------------------------------------------------------------ prefill: integer GEMM
 * The AVX-512 VNNI kernel's scheme at half the width: a packed tile's 4-byte group of 16 rows
 * is two registers (rows 0-7, 8-15), each advanced by one vpdpbusd with the token's 4 activation
 * bytes broadcast (a load: VEX has no embedded broadcast). The codes are taken as they are
 * (unsigned, any width up to Q8_0's q + 128): no saturation in 32-bit sums, no sign trick. Per
 * group and token the integer sum is scaled once (row scales × the token's block scale), the
 * min term subtracted, or — where mins are whole multiples of the scales (codes_offset) — the
 * sum starts at −offset × the activations' code sum. Six tokens at a time: twelve integer
 * accumulators, two weight registers and a broadcast fill 15 of the 16 registers, the float
 * sums wait in memory between groups (one core of the Xeon, against four tokens: Q8_0 259 → 272
 * GOP/s, Q4_K 235 → 254). */

static inline __attribute__((always_inline)) void gemm_i8_tokens(const uint8_t *tile, const int group, const bool folded, int nr,
                                                                  const sp_i8_rows *x, int64_t t0, const int C, int64_t k,
                                                                  float *out, int64_t ldo) {
    const int64_t nb = k / 32, ng = k / group, stride = SP_I8_TILE_BLOCK_BYTES(group);
    const int8_t *q[6];
    const float *d[6], *ds[6];
    const int32_t *os[6];
    __m256 sum[6][2];
    UNROLL for (int c = 0; c < C; c++) {
        q[c] = x->q + (t0 + c) * x->ldq;
        d[c] = x->d + (t0 + c) * nb;
        ds[c] = x->dsum + (t0 + c) * ng;
        os[c] = folded ? x->osum + (t0 + c) * ng : NULL;
        sum[c][0] = sum[c][1] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * stride;
        const float *sm = (const float *)(blk + 512); /* per group: 16 scales, then 16 mins */
        __m256 part[6][2]; /* groups of 16: the block's two groups scaled by the rows, before the token's scale */
        UNROLL for (int h = 0; h < 32 / group; h++) {
            __m256i acc[6][2];
            const int64_t gi = b * (32 / group) + h;
            UNROLL for (int c = 0; c < C; c++) acc[c][0] = acc[c][1] = folded ? _mm256_set1_epi32(os[c][gi]) : _mm256_setzero_si256();
            UNROLL for (int g = h * group / 4; g < (h + 1) * group / 4; g++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * g + 32));
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i a = bcast4(q[c] + 32 * b + 4 * g);
                    acc[c][0] = _mm256_dpbusd_avx_epi32(acc[c][0], w0, a);
                    acc[c][1] = _mm256_dpbusd_avx_epi32(acc[c][1], w1, a);
                }
            }
            UNROLL for (int half = 0; half < 2; half++) {
                const __m256 vs = _mm256_loadu_ps(sm + 32 * h + 8 * half);
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256 s = _mm256_cvtepi32_ps(acc[c][half]);
                    if (group == 32) sum[c][half] = _mm256_fmadd_ps(s, _mm256_mul_ps(vs, _mm256_set1_ps(d[c][b])), sum[c][half]);
                    else part[c][half] = h == 0 ? _mm256_mul_ps(s, vs) : _mm256_fmadd_ps(s, vs, part[c][half]);
                    if (!folded)
                        sum[c][half] = _mm256_fnmadd_ps(_mm256_loadu_ps(sm + 32 * h + 16 + 8 * half), _mm256_set1_ps(ds[c][gi]), sum[c][half]);
                }
            }
        }
        if (group == 16)
            UNROLL for (int c = 0; c < C; c++) UNROLL for (int half = 0; half < 2; half++) sum[c][half] =
                _mm256_fmadd_ps(part[c][half], _mm256_set1_ps(d[c][b]), sum[c][half]);
    }
    UNROLL for (int c = 0; c < C; c++) {
        if (nr == 16) {
            _mm256_storeu_ps(out + (t0 + c) * ldo, sum[c][0]);
            _mm256_storeu_ps(out + (t0 + c) * ldo + 8, sum[c][1]);
        } else { /* a partial tile: no stores past the rows the caller has */
            float row[16];
            _mm256_storeu_ps(row, sum[c][0]);
            _mm256_storeu_ps(row + 8, sum[c][1]);
            memcpy(out + (t0 + c) * ldo, row, (size_t)nr * sizeof(float));
        }
    }
}

#define GEMM_I8_CASES(G, F)                                                           \
    switch (C) {                                                                      \
    case 6: gemm_i8_tokens(tile, G, F, nr, x, t, 6, k, out, ldo); break;              \
    case 5: gemm_i8_tokens(tile, G, F, nr, x, t, 5, k, out, ldo); break;              \
    case 4: gemm_i8_tokens(tile, G, F, nr, x, t, 4, k, out, ldo); break;              \
    case 3: gemm_i8_tokens(tile, G, F, nr, x, t, 3, k, out, ldo); break;              \
    case 2: gemm_i8_tokens(tile, G, F, nr, x, t, 2, k, out, ldo); break;              \
    default: gemm_i8_tokens(tile, G, F, nr, x, t, 1, k, out, ldo); break;             \
    }

static void gemm_i8(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt, int64_t k,
                    float *out, int64_t ldo) {
    (void)codes_max; /* vpdpbusd sums four u8 × s8 products into 32 bits: any code fits */
    for (int t = 0; t < nt; t += 6) {
        const int C = nt - t < 6 ? nt - t : 6;
        if (group == 16 && codes_offset) { GEMM_I8_CASES(16, true) } /* Q6_K */
        else if (group == 16) { GEMM_I8_CASES(16, false) }
        else if (codes_offset) { GEMM_I8_CASES(32, true) }           /* Q8_0, Q4_0, Q5_0 */
        else { GEMM_I8_CASES(32, false) }                            /* Q4_1, Q5_1, Q4_K, Q5_K */
    }
}

void sp_avxvnni_fill(sp_isa_kernels *k) {
    k->gemm_i8 = gemm_i8;
    q8_blocks_fill(k);
}
