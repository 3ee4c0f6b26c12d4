/* AVX-512 VNNI decode kernels: weight codes × int8 activations with vpdpbusd (u8 × s8 → i32),
 * 32 values per instruction, then one float scale per block. Compiled with -mavx512vnni;
 * chosen at run time. Formats whose codes carry an offset (Q4_0's 8, Q6_K's 32, Q4_K's min)
 * subtract it through the activations' code sums. */
#include <immintrin.h>

#include "fp16.h"
#include "kernels_x86.h"
#include "quant.h"
#include "repack.h"

static inline __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }

#define SP_OWN_Q4_0_DOT /* dot_q4_0_wide below */
#include "kernels_q8_blocks.h"

/* Q4_0 in 512-bit registers: two blocks per register (each block's 16 code bytes broadcast to
 * two 128-bit lanes, the second shifted down a nibble: low nibbles, then high, which is the
 * activations' order), so one vpdpbusd, conversion and multiply-add serve two blocks, each
 * block's scale reaching its 8 lanes by a permute. The 256-bit kernel streamed the weights at
 * about four fifths of what the others reach (1B Q4_0: 18 GB/s, Q4_K_M 21, Q8_0 23); this one,
 * 2 threads: +4–6 %, four sequences together +10–13 %. */
static inline __attribute__((always_inline)) void dot_q4_0_wide_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out,
                                                                        int64_t os, const int T) {
    const block_q4_0 *b = row;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i pair_idx[4] = {
        _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
        _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4), _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
    __m512 acc0[4], acc1[4];
    __m256 off[4], tail[4];
    UNROLL for (int t = 0; t < T; t++) {
        acc0[t] = acc1[t] = _mm512_setzero_ps();
        off[t] = tail[t] = _mm256_setzero_ps();
    }
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        sp_prefetch_ahead(&b[i], 8 * (int64_t)sizeof *b);
        const __m256 dw = f16x8(&b[i].d, (int)sizeof *b);
        __m512 sc[4];
        UNROLL for (int t = 0; t < T; t++) {
            const __m256 s = _mm256_mul_ps(dw, _mm256_loadu_ps(x[t].d + i));
            sc[t] = _mm512_castps256_ps512(s);
            off[t] = _mm256_fmadd_ps(s, block_sums8(x[t].sum16 + 2 * i), off[t]);
        }
        UNROLL for (int j = 0; j < 8; j += 2) {
            const __m512i two = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b[i + j].qs))),
                                                   _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b[i + j + 1].qs)), 1);
            const __m512i codes = _mm512_and_si512(_mm512_mask_srli_epi16(two, 0xFF00FF00, two, 4), m4);
            UNROLL for (int t = 0; t < T; t++) {
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512(x[t].q + 32 * (i + j)));
                const __m512 s = _mm512_permutexvar_ps(pair_idx[j / 2], sc[t]);
                if (j % 4 == 0) acc0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc0[t]);
                else acc1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc1[t]);
            }
        }
    }
    float tail_off[4] = {0, 0, 0, 0};
    for (; i < nb; i++) /* the last blocks short of 8, one at a time */
        UNROLL for (int t = 0; t < T; t++) {
            const float s = _cvtsh_ss(b[i].d) * x[t].d[i];
            tail[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod_q4_0(b, &x[t], i)), _mm256_set1_ps(s), tail[t]);
            tail_off[t] += s * act_sum(&x[t], i);
        }
    UNROLL for (int t = 0; t < T; t++)
        out[t * os] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + hsum8(tail[t]) - 8 * (hsum8(off[t]) + tail_off[t]);
}
DOT_TOKENS(dot_q4_0_wide)

/* Q4_K and Q5_K, a 256-value block per step in 512-bit registers: the 8 six-bit scales and mins
 * are unpacked with 32-bit word operations, the codes of two sub-blocks fill one register (so the
 * activations load contiguously), and each sub-block's scale reaches its 8 lanes by a permute.
 * Q5_K (five) has the same scales and nibbles, and each code's fifth bit in qh (bit s of byte l:
 * value l of sub-block s), added as 16 under a byte mask per pair of sub-blocks. */
static inline __attribute__((always_inline)) void dot_k4_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out,
                                                                int64_t os, const int T, const bool five) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    const __m512i pair_idx[4] = {
        _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
        _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4), _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
    const __m512i half_idx = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i mins_idx = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 15, 14, 13, 12, 11, 10, 9, 8);
    __m512 acc[4], mins[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = mins[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs, *bits;
        const block_q4_K *b = k4_block(row, i, five, &qs, &bits);
        sp_prefetch_ahead(b, k4_bytes(five));
        uint32_t u[4];
        q4_K_scales_mins(b->scales, u);
        const __m512 scm = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)u)));
        __m512 sc[4];
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 dx = _mm512_zextps256_ps512(_mm256_loadu_ps(x[t].d + 8 * i));
            /* lanes 0..7: d·sc·dx per sub-block; the min of sub-block s multiplies sums 2s and 2s+1 */
            sc[t] = _mm512_mul_ps(_mm512_mul_ps(scm, dx), _mm512_set1_ps(_cvtsh_ss(b->d)));
            const __m512 mdx = _mm512_mul_ps(_mm512_permutexvar_ps(mins_idx, scm), dx);
            mins[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_permutexvar_ps(half_idx, mdx), _mm512_set1_ps(_cvtsh_ss(b->dmin))),
                                      _mm512_cvtepi32_ps(_mm512_loadu_si512(x[t].sum16 + 16 * i)), mins[t]);
        }
        const __m512i qh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)bits)) : _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i raw = _mm512_loadu_si512(qs + 64 * h);
            const __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            /* sub-blocks 4h, 4h+1 (first 32 bytes' low and high nibbles), then 4h+2, 4h+3 */
            __m512i c0 = _mm512_shuffle_i64x2(lo, hi, 0x44), c1 = _mm512_shuffle_i64x2(lo, hi, 0xEE);
            if (five) {
                const __m512i bits0 = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(2 << (4 * h))), 1);
                const __m512i bits1 = _mm512_inserti64x4(_mm512_set1_epi8((char)(4 << (4 * h))), _mm256_set1_epi8((char)(8 << (4 * h))), 1);
                c0 = _mm512_mask_add_epi8(c0, _mm512_test_epi8_mask(qh, bits0), c0, sixteen);
                c1 = _mm512_mask_add_epi8(c1, _mm512_test_epi8_mask(qh, bits1), c1, sixteen);
            }
            UNROLL for (int t = 0; t < T; t++) {
                const int8_t *q = x[t].q + QK_K * i;
                const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c0, _mm512_loadu_si512(q + 128 * h));
                const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c1, _mm512_loadu_si512(q + 128 * h + 64));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(pair_idx[2 * h], sc[t]), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(pair_idx[2 * h + 1], sc[t]), acc[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) out[t * os] = _mm512_reduce_add_ps(acc[t]) - _mm512_reduce_add_ps(mins[t]);
}
static inline __attribute__((always_inline)) void dot_q4_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    dot_k4_tokens(row, x, n, out, os, T, false);
}
static inline __attribute__((always_inline)) void dot_q5_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    dot_k4_tokens(row, x, n, out, os, T, true);
}
DOT_TOKENS(dot_q4_K)
DOT_TOKENS(dot_q5_K)

/* Q6_K likewise: 64 six-bit codes per register, a scale per 16 values (4 lanes), the codes'
 * offset of 32 subtracted through the activations' sums of 16. */
static inline __attribute__((always_inline)) void dot_q6_K_tokens(const void *row, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    const block_q6_K *b = row;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    const __m512i quad_idx[4] = {
        _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4),
        _mm512_set_epi32(11, 11, 11, 11, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8),
        _mm512_set_epi32(15, 15, 15, 15, 14, 14, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12)};
    const __m512i half_idx = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    __m512 acc[4], offset[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = offset[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        sp_prefetch_ahead(&b[i], (int64_t)sizeof b[i]);
        /* one scale per 16 values: d · sc · (the activation scale of its 32) */
        const __m512 scf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].scales)));
        __m512 sc[4];
        UNROLL for (int t = 0; t < T; t++) {
            const __m512 dx = _mm512_permutexvar_ps(half_idx, _mm512_castps256_ps512(_mm256_loadu_ps(x[t].d + 8 * i)));
            sc[t] = _mm512_mul_ps(_mm512_mul_ps(scf, dx), _mm512_set1_ps(_cvtsh_ss(b[i].d)));
            offset[t] = _mm512_fmadd_ps(sc[t], _mm512_cvtepi32_ps(_mm512_loadu_si512(x[t].sum16 + 16 * i)), offset[t]);
        }
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512(b[i].ql + 64 * h);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            /* high bits: values 0..31 use bits 0-1 of qh, 32..63 bits 2-3, 64..95 bits 4-5, 96..127 bits 6-7 */
            const __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i h23 = _mm512_srli_epi16(h01, 4);
            const __m512i c0 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(h01, m2), 4));
            const __m512i c1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_slli_epi16(_mm512_and_si512(h23, m2), 4));
            UNROLL for (int t = 0; t < T; t++) {
                const int8_t *q = x[t].q + QK_K * i;
                const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c0, _mm512_loadu_si512(q + 128 * h));
                const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c1, _mm512_loadu_si512(q + 128 * h + 64));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(quad_idx[2 * h], sc[t]), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(quad_idx[2 * h + 1], sc[t]), acc[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) out[t * os] = _mm512_reduce_add_ps(acc[t]) - 32 * _mm512_reduce_add_ps(offset[t]);
}
DOT_TOKENS(dot_q6_K)

/* ------------------------------------------------------------------ prefill: integer GEMM
 * A packed tile holds 16 weight rows (sp_i8_tile_pack): per block of 32 values, the codes of all
 * 16 rows interleaved 4 bytes at a time, so one 512-bit register holds 4 values of each of 16
 * rows and one vpdpbusd with 4 activation bytes broadcast advances all 16 dot products.
 * Each lane of a token's accumulator is one weight row, so a token's 16 results are stored
 * contiguously without any horizontal reduction. Per block and token the integer sum is
 * scaled once (scale × activation scale) and the min term subtracted (min × activation sum) —
 * or, where every min is a whole multiple of its scale (offset: Q8_0, Q4_0, Q5_0, Q6_K), the
 * sum starts at −offset × (the activations' code sum) and there is no min term: one vector
 * operation fewer per block and token, of the four that follow its eight vpdpbusd. */

/* acc += w · (the 4 bytes at p, in every lane), as one instruction with an embedded broadcast
 * ({1to16}): GCC does not fold a separate broadcast into vpdpbusd, and the fused form is one
 * front-end slot instead of two (measured: the prefill kernel alone 252 → 285 GMAC/s on one core
 * of the Xeon). AT&T syntax, as GCC and Clang emit by default. */
static inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)(const void *)p));
    return acc;
}

/* Every loop over the register block is unrolled (UNROLL) so that the accumulators live in registers. */
static inline __attribute__((always_inline)) void gemm_i8_tokens(const uint8_t *tile, const int group, const bool folded, int nr,
                                                                  const sp_i8_rows *x, int64_t t0, const int C, int64_t k,
                                                                  float *out, int64_t ldo) {
    const int64_t nb = k / 32, ng = k / group, stride = SP_I8_TILE_BLOCK_BYTES(group);
    const int8_t *q[8];
    const float *d[8], *ds[8];
    const int32_t *os[8];
    __m512 sum[8];
    UNROLL for (int c = 0; c < C; c++) {
        q[c] = x->q + (t0 + c) * x->ldq;
        d[c] = x->d + (t0 + c) * nb;
        ds[c] = x->dsum + (t0 + c) * ng;
        os[c] = folded ? x->osum + (t0 + c) * ng : NULL;
        sum[c] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * stride;
        const float *sm = (const float *)(blk + 512); /* per group: 16 scales, then 16 mins */
        __m512 part[8]; /* groups of 16: the block's two groups scaled by the rows, before the token's scale */
        UNROLL for (int h = 0; h < 32 / group; h++) {
            __m512i acc[8];
            const int64_t gi = b * (32 / group) + h;
            UNROLL for (int c = 0; c < C; c++)
                acc[c] = folded ? _mm512_set1_epi32(os[c][gi]) : _mm512_setzero_si512();
            UNROLL for (int g = h * group / 4; g < (h + 1) * group / 4; g++) {
                const __m512i w = _mm512_loadu_si512(blk + 64 * g);
                UNROLL for (int c = 0; c < C; c++) acc[c] = dpbusd_bcast(acc[c], w, q[c] + 32 * b + 4 * g);
            }
            const __m512 vs = _mm512_loadu_ps(sm + 32 * h);
            UNROLL for (int c = 0; c < C; c++) {
                if (group == 32) sum[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[c]), _mm512_mul_ps(vs, _mm512_set1_ps(d[c][b])), sum[c]);
                else part[c] = h == 0 ? _mm512_mul_ps(_mm512_cvtepi32_ps(acc[c]), vs) : _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[c]), vs, part[c]);
                if (!folded) sum[c] = _mm512_fnmadd_ps(_mm512_loadu_ps(sm + 32 * h + 16), _mm512_set1_ps(ds[c][gi]), sum[c]);
            }
        }
        /* the token's scale once per block, not once per group: one multiply fewer per block and
         * token (Q6_K: 15 operations instead of 16 for 8 vpdpbusd) */
        if (group == 16) UNROLL for (int c = 0; c < C; c++) sum[c] = _mm512_fmadd_ps(part[c], _mm512_set1_ps(d[c][b]), sum[c]);
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    UNROLL for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(out + (t0 + c) * ldo, rows, sum[c]);
}

#define GEMM_I8_CASES(G, F)                                                           \
    switch (C) {                                                                      \
    case 8: gemm_i8_tokens(tile, G, F, nr, x, t, 8, k, out, ldo); break;              \
    case 7: gemm_i8_tokens(tile, G, F, nr, x, t, 7, k, out, ldo); break;              \
    case 6: gemm_i8_tokens(tile, G, F, nr, x, t, 6, k, out, ldo); break;              \
    case 5: gemm_i8_tokens(tile, G, F, nr, x, t, 5, k, out, ldo); break;              \
    case 4: gemm_i8_tokens(tile, G, F, nr, x, t, 4, k, out, ldo); break;              \
    case 3: gemm_i8_tokens(tile, G, F, nr, x, t, 3, k, out, ldo); break;              \
    case 2: gemm_i8_tokens(tile, G, F, nr, x, t, 2, k, out, ldo); break;              \
    default: gemm_i8_tokens(tile, G, F, nr, x, t, 1, k, out, ldo); break;             \
    }

void sp_avx512vnni_gemm_i8(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt,
                           int64_t k, float *out, int64_t ldo) {
    (void)codes_max; /* vpdpbusd sums four u8 × s8 products into 32 bits: any code fits */
    for (int t = 0; t < nt; t += 8) {
        const int C = nt - t < 8 ? nt - t : 8;
        if (group == 16 && codes_offset) { GEMM_I8_CASES(16, true) } /* Q6_K */
        else if (group == 16) { GEMM_I8_CASES(16, false) }
        else if (codes_offset) { GEMM_I8_CASES(32, true) }           /* Q8_0, Q4_0, Q5_0 */
        else { GEMM_I8_CASES(32, false) }                            /* Q4_1, Q5_1, Q4_K, Q5_K */
    }
}

/* ------------------------------------------------------------------ decode: two interleaved groups
 * Two groups of eight interleaved rows (repack.h) side by side in 512-bit registers, group A's
 * 32-byte chunk in the low half and group B's in the high one: lane r of a register is row r of
 * the 16, so one vpdpbusd with four activation codes broadcast advances 16 rows' dots — the
 * prefill tile's form on the repacked layout, with no int16 stage (the eight-row kernels'
 * vpmaddubsw, vpaddw and vpmaddwd), each row's sum converted once per 32 values (Q6_K: 16). A
 * batch of sequences decoded together is bound by these instructions, not by memory (1B, sixteen
 * sequences, 2 threads, Intel Xeon: the eight-row kernels ≈ 170 GOP/s for Q4_K_M; these 1.5–2.3×
 * by type). Each token's arithmetic is its own whatever n_tokens. */

/* A register of group A's 32 bytes at a and group B's at b. */
static inline __m512i two_groups(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)), _mm256_loadu_si256((const __m256i *)b), 1);
}
/* 16 fp16 of which 8 at a, 8 at b, as floats. */
static inline __m512 two_groups_f16(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)), _mm_loadu_si128((const __m128i *)b), 1));
}
/* 16 unsigned bytes of which 8 at a, 8 at b, as floats. */
static inline __m512 two_groups_u8(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b))));
}

#define DOT16_ROWS(name)                                                                                                          \
    static void name##_rows(const void *group, int64_t group_bytes, const sp_q8_act *x, int n_tokens, int64_t n, float *out,     \
                            int64_t os) {                                                                                         \
        switch (n_tokens) {                                                                                                       \
        case 1: name##_tokens(group, group_bytes, x, n, out, os, 1); break;                                                       \
        case 2: name##_tokens(group, group_bytes, x, n, out, os, 2); break;                                                       \
        case 3: name##_tokens(group, group_bytes, x, n, out, os, 3); break;                                                       \
        default: name##_tokens(group, group_bytes, x, n, out, os, 4); break;                                                      \
        }                                                                                                                         \
    }

/* Q4_0 and Q8_0 below are two functions, not one with the format a constant: one function ran Q4_0's
 * sixteen sequences 5–10 % slower in three alternating rounds (same arithmetic; the code the
 * compiler laid out differs). */
/* Q4_0: per block, the four chunks masked (values 4q …) and shifted (16 + 4q …), the offset 8 in
 * the integer sum's start. */
static inline __attribute__((always_inline)) void dot16_q4_0_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                    float *out, int64_t os, const int T) {
    const uint8_t *a = group, *b = a + group_bytes;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, a += SP_ROWS8_Q4_0_BYTES, b += SP_ROWS8_Q4_0_BYTES) {
        sp_prefetch_ahead(a, SP_ROWS8_Q4_0_BYTES);
        sp_prefetch_ahead(b, SP_ROWS8_Q4_0_BYTES);
        const __m512 dw = two_groups_f16(a, b);
        __m512i c[8];
        UNROLL for (int q = 0; q < 4; q++) {
            const __m512i w = two_groups(a + SP_ROWS8_Q4_0_QS + 32 * q, b + SP_ROWS8_Q4_0_QS + 32 * q);
            c[q] = _mm512_and_si512(w, low);
            c[q + 4] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const int8_t *xq = x[t].q + 32 * i;
            __m512i dot = _mm512_set1_epi32(-8 * (x[t].sum16[2 * i] + x[t].sum16[2 * i + 1]));
            UNROLL for (int q = 0; q < 4; q++) {
                dot = dpbusd_bcast(dot, c[q], xq + 4 * q);
                dot = dpbusd_bcast(dot, c[q + 4], xq + 16 + 4 * q);
            }
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(x[t].d[i])), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * os, acc[t]);
}
DOT16_ROWS(dot16_q4_0)

/* Q8_0: the signed codes taken as unsigned q + 128 (vpdpbusd's sums are 32-bit: no overflow), the
 * 128 taken off in the integer sum's start. */
static inline __attribute__((always_inline)) void dot16_q8_0_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                    float *out, int64_t os, const int T) {
    const uint8_t *a = group, *b = a + group_bytes;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, a += SP_ROWS8_Q8_0_BYTES, b += SP_ROWS8_Q8_0_BYTES) {
        sp_prefetch_ahead(a, SP_ROWS8_Q8_0_BYTES);
        sp_prefetch_ahead(b, SP_ROWS8_Q8_0_BYTES);
        const __m512 dw = two_groups_f16(a, b);
        __m512i c[8];
        UNROLL for (int q = 0; q < 8; q++) c[q] = _mm512_xor_si512(two_groups(a + SP_ROWS8_Q8_0_QS + 32 * q, b + SP_ROWS8_Q8_0_QS + 32 * q), flip);
        UNROLL for (int t = 0; t < T; t++) {
            const int8_t *xq = x[t].q + 32 * i;
            __m512i dot = _mm512_set1_epi32(-128 * (x[t].sum16[2 * i] + x[t].sum16[2 * i + 1]));
            UNROLL for (int q = 0; q < 8; q++) dot = dpbusd_bcast(dot, c[q], xq + 4 * q);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(x[t].d[i])), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * os, acc[t]);
}
DOT16_ROWS(dot16_q8_0)

/* Q4_K, and with five Q5_K: per 64 values, one load of each chunk serves sub-blocks 2c (low
 * nibbles) and 2c + 1 (high) — Q5_K's fifth bits added as 16 where bit j of the qh chunk's byte
 * is set (sub-block j) —; each sub-block's sum × its scale × the activations' scale, its min ×
 * the activations' scaled code sum; per 256 values d and dmin. */
static inline __attribute__((always_inline)) void dot16_k4_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                  float *out, int64_t os, const int T, const bool five) {
    const int64_t bytes = five ? SP_ROWS8_Q5_K_BYTES : SP_ROWS8_Q4_K_BYTES;
    const uint8_t *a = group, *b = a + group_bytes;
    const __m512i low = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    __m512 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, a += bytes, b += bytes) {
        sp_prefetch_ahead(a, bytes);
        sp_prefetch_ahead(b, bytes);
        __m512 sum_d[4], sum_m[4];
        UNROLL for (int t = 0; t < T; t++) sum_d[t] = sum_m[t] = _mm512_setzero_ps();
        for (int c = 0; c < 4; c++) {
            __m512i lo[8], hi[8];
            UNROLL for (int q = 0; q < 8; q++) {
                const __m512i w = two_groups(a + SP_ROWS8_Q4_K_QS + 256 * c + 32 * q, b + SP_ROWS8_Q4_K_QS + 256 * c + 32 * q);
                lo[q] = _mm512_and_si512(w, low);
                hi[q] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
                if (five) {
                    const __m512i qh = two_groups(a + SP_ROWS8_Q5_K_QH + 32 * q, b + SP_ROWS8_Q5_K_QH + 32 * q);
                    lo[q] = _mm512_mask_add_epi8(lo[q], _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << (2 * c)))), lo[q], sixteen);
                    hi[q] = _mm512_mask_add_epi8(hi[q], _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(2 << (2 * c)))), hi[q], sixteen);
                }
            }
            UNROLL for (int h = 0; h < 2; h++) {
                const int j = 2 * c + h; /* the sub-block */
                const __m512 sc = two_groups_u8(a + SP_ROWS8_Q4_K_SCALES + 8 * j, b + SP_ROWS8_Q4_K_SCALES + 8 * j);
                const __m512 mn = two_groups_u8(a + SP_ROWS8_Q4_K_MINS + 8 * j, b + SP_ROWS8_Q4_K_MINS + 8 * j);
                UNROLL for (int t = 0; t < T; t++) {
                    const int64_t blk = 8 * i + j; /* the activations' block */
                    const int8_t *xq = x[t].q + 32 * blk;
                    __m512i dot = _mm512_setzero_si512();
                    UNROLL for (int q = 0; q < 8; q++) dot = dpbusd_bcast(dot, h ? hi[q] : lo[q], xq + 4 * q);
                    const float dx = x[t].d[blk];
                    sum_d[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sc, _mm512_set1_ps(dx)), sum_d[t]);
                    sum_m[t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(dx * (float)(x[t].sum16[2 * blk] + x[t].sum16[2 * blk + 1])), sum_m[t]);
                }
            }
        }
        const __m512 d = two_groups_f16(a, b), dmin = two_groups_f16(a + SP_ROWS8_Q4_K_DMIN, b + SP_ROWS8_Q4_K_DMIN);
        UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_fnmadd_ps(sum_m[t], dmin, _mm512_fmadd_ps(sum_d[t], d, acc[t]));
    }
    UNROLL for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * os, acc[t]);
}
static inline __attribute__((always_inline)) void dot16_q4_K_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                    float *out, int64_t os, const int T) {
    dot16_k4_tokens(group, group_bytes, x, n, out, os, T, false);
}
static inline __attribute__((always_inline)) void dot16_q5_K_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                    float *out, int64_t os, const int T) {
    dot16_k4_tokens(group, group_bytes, x, n, out, os, T, true);
}
DOT16_ROWS(dot16_q4_K)
DOT16_ROWS(dot16_q5_K)

/* Q6_K: per 32 values (a pair of scales), eight chunks of six-bit codes (quarter 3 from the top
 * bits of quarters 0..2, repack.h); each 16 values' sum starts at −32 × the activations' code
 * sum (the codes' offset) and meets its scale in float. */
static inline __attribute__((always_inline)) void dot16_q6_K_tokens(const void *group, int64_t group_bytes, const sp_q8_act *x, int64_t n,
                                                                    float *out, int64_t os, const int T) {
    const uint8_t *a = group, *b = a + group_bytes;
    const __m512i six = _mm512_set1_epi8(0x3F), m3 = _mm512_set1_epi8(0x03), m12 = _mm512_set1_epi8(0x0C), m48 = _mm512_set1_epi8(0x30);
    __m512 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, a += SP_ROWS8_Q6_K_BYTES, b += SP_ROWS8_Q6_K_BYTES) {
        __m512 sum[4];
        UNROLL for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_ps();
        for (int h = 0; h < 2; h++) UNROLL for (int k = 0; k < 4; k++) {
            if (k == 0) /* half the block's lines of each group per half: all 54 at once stalled on the fill buffers (tg 10 % slower) */
                UNROLL for (int g = 0; g < 2; g++) sp_prefetch_ahead((g ? b : a) + h * (SP_ROWS8_Q6_K_BYTES / 2), SP_ROWS8_Q6_K_BYTES / 2);
            const int p = 4 * h + k; /* values 32p …: half h, quarter k of it */
            /* row r's pair of signed scales in int32 lane r as two int16, then each alone */
            const __m512i pair = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + SP_ROWS8_Q6_K_SCALES + 16 * p))),
                _mm_loadu_si128((const __m128i *)(b + SP_ROWS8_Q6_K_SCALES + 16 * p)), 1));
            const __m512 sa = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16)),
                         sb = _mm512_cvtepi32_ps(_mm512_srai_epi32(pair, 16));
            const int64_t at = SP_ROWS8_Q6_K_QS + 768 * h;
            __m512i c[8];
            UNROLL for (int q = 0; q < 8; q++) {
                const __m512i x0 = two_groups(a + at + 32 * q, b + at + 32 * q);
                if (k < 3) c[q] = _mm512_and_si512(k ? two_groups(a + at + 256 * k + 32 * q, b + at + 256 * k + 32 * q) : x0, six);
                else { /* the top two bits of quarters 0, 1, 2's bytes */
                    const __m512i x1 = two_groups(a + at + 256 + 32 * q, b + at + 256 + 32 * q), x2 = two_groups(a + at + 512 + 32 * q, b + at + 512 + 32 * q);
                    c[q] = _mm512_or_si512(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(x0, 6), m3), _mm512_and_si512(_mm512_srli_epi16(x1, 4), m12)),
                                           _mm512_and_si512(_mm512_srli_epi16(x2, 2), m48));
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                const int64_t blk = 8 * i + p; /* the activations' block */
                const int8_t *xq = x[t].q + 32 * blk;
                __m512i d0 = _mm512_set1_epi32(-32 * x[t].sum16[2 * blk]), d1 = _mm512_set1_epi32(-32 * x[t].sum16[2 * blk + 1]);
                UNROLL for (int q = 0; q < 4; q++) {
                    d0 = dpbusd_bcast(d0, c[q], xq + 4 * q);
                    d1 = dpbusd_bcast(d1, c[q + 4], xq + 16 + 4 * q);
                }
                const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), sb, _mm512_mul_ps(_mm512_cvtepi32_ps(d0), sa));
                sum[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(x[t].d[blk]), sum[t]);
            }
        }
        const __m512 d = two_groups_f16(a, b);
        UNROLL for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(sum[t], d, acc[t]);
    }
    UNROLL for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * os, acc[t]);
}
DOT16_ROWS(dot16_q6_K)

/* The tile layout's transposition: 16 rows of 32 code bytes (src_stride apart) to 8 registers
 * of one 4-byte group of every row (dst: [group][row][4]) — a 16 × 8 transpose of 32-bit words in
 * two rounds of two-source permutes. */
static void interleave16(const uint8_t *src, int64_t src_stride, uint8_t *dst) {
    __m512i z[8]; /* rows 2p and 2p+1: words 0..7 of each */
    for (int p = 0; p < 8; p++)
        z[p] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(src + 2 * p * src_stride))),
                                  _mm256_loadu_si256((const __m256i *)(src + (2 * p + 1) * src_stride)), 1);
    /* round 1, per 4 rows: a = words 0..3, b = words 4..7, each [word][row of the 4] */
    const __m512i lo = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i hi = _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    __m512i a[4], b[4];
    for (int q = 0; q < 4; q++) {
        a[q] = _mm512_permutex2var_epi32(z[2 * q], lo, z[2 * q + 1]);
        b[q] = _mm512_permutex2var_epi32(z[2 * q], hi, z[2 * q + 1]);
    }
    /* round 2: word g of rows 0-7 from quads 0, 1 and of rows 8-15 from quads 2, 3 */
    for (int g = 0; g < 8; g++) {
        const __m512i *x = g < 4 ? a : b;
        const int w = 4 * (g % 4);
        const __m512i sel = _mm512_setr_epi32(w, w + 1, w + 2, w + 3, 16 + w, 17 + w, 18 + w, 19 + w, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m512i p01 = _mm512_permutex2var_epi32(x[0], sel, x[1]), p23 = _mm512_permutex2var_epi32(x[2], sel, x[3]);
        _mm512_storeu_si512(dst + 64 * g, _mm512_shuffle_i64x2(p01, p23, 0x44));
    }
}

/* sp_quantize_activations, 32 values per step (same rounding: nearest, ties to even). */
static void quantize_act(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum16) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
        const __m512 a = _mm512_loadu_ps(x), c = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
        const float inv = amax > 0 ? 127 / amax : 0;
        d[b] = amax / 127;
        const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(inv)));
        const __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, _mm512_set1_ps(inv)));
        _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(qc));
        sum16[2 * b] = _mm512_reduce_add_epi32(qa);
        sum16[2 * b + 1] = _mm512_reduce_add_epi32(qc);
    }
}

void sp_avx512vnni_fill(sp_isa_kernels *k) {
    k->gemm_i8 = sp_avx512vnni_gemm_i8;
    k->interleave16 = interleave16;
    k->quantize_act = quantize_act;
    q8_blocks_fill(k);
    k->dot_row_q8[SP_TYPE_Q4_0] = dot_q4_0_wide;
    k->dot_rows_q8[SP_TYPE_Q4_0] = dot_q4_0_wide_rows;
    k->dot_row_q8[SP_TYPE_Q4_K] = dot_q4_K;
    k->dot_row_q8[SP_TYPE_Q5_K] = dot_q5_K;
    k->dot_row_q8[SP_TYPE_Q6_K] = dot_q6_K;
    k->dot_rows_q8[SP_TYPE_Q4_K] = dot_q4_K_rows;
    k->dot_rows_q8[SP_TYPE_Q5_K] = dot_q5_K_rows;
    k->dot_rows_q8[SP_TYPE_Q6_K] = dot_q6_K_rows;
    k->dot16_rows_q8[SP_TYPE_Q4_0] = dot16_q4_0_rows;
    k->dot16_rows_q8[SP_TYPE_Q8_0] = dot16_q8_0_rows;
    k->dot16_rows_q8[SP_TYPE_Q4_K] = dot16_q4_K_rows;
    k->dot16_rows_q8[SP_TYPE_Q5_K] = dot16_q5_K_rows;
    k->dot16_rows_q8[SP_TYPE_Q6_K] = dot16_q6_K_rows;
}
