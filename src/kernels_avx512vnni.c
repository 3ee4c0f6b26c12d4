/* AVX-512 VNNI decode kernels: weight codes × int8 activations with vpdpbusd (u8 × s8 → i32),
 * 32 values per instruction, then one float scale per block. Compiled with -mavx512vnni;
 * chosen at run time. Formats whose codes carry an offset (Q4_0's 8, Q6_K's 32, Q4_K's min)
 * subtract it through the activations' code sums. */
#include <immintrin.h>
#include <string.h>

#include "fp16.h"
#include "kernels_x86.h"
#include "quant.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 dot_u8s8(__m256i u, __m256i s) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
}

static float dot_q8_0(const void *row, const sp_q8_act *x, int64_t n) {
    const block_q8_0 *b = row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)b[i].qs), q = _mm256_loadu_si256((const __m256i *)(x->q + 32 * i));
        /* |w| × (q with w's sign): the u8 × s8 form of a signed product */
        const __m256 p = dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(sp_fp16_to_f32(b[i].d) * x->d[i]), acc);
    }
    return hsum8(acc);
}

static float dot_q4_0(const void *row, const sp_q8_act *x, int64_t n) {
    const block_q4_0 *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float offset = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4); /* codes 0..15, in order */
        const float s = sp_fp16_to_f32(b[i].d) * x->d[i];
        acc = _mm256_fmadd_ps(dot_u8s8(w, _mm256_loadu_si256((const __m256i *)(x->q + 32 * i))), _mm256_set1_ps(s), acc);
        offset += s * 8 * (float)(x->sum16[2 * i] + x->sum16[2 * i + 1]);
    }
    return hsum8(acc) - offset;
}

static float dot_q4_K(const void *row, const sp_q8_act *x, int64_t n) {
    const block_q4_K *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d), dmin = sp_fp16_to_f32(b[i].dmin);
        const int8_t *q = x->q + QK_K * i;
        const float *dx = x->d + 8 * i;
        const int32_t *sums = x->sum16 + 16 * i;
        for (int j = 0; j < 4; j++) {
            uint8_t sc1, m1, sc2, m2;
            sp_k4_scale_min(2 * j, b[i].scales, &sc1, &m1);
            sp_k4_scale_min(2 * j + 1, b[i].scales, &sc2, &m2);
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            const __m256 p1 = dot_u8s8(_mm256_and_si256(raw, m4), _mm256_loadu_si256((const __m256i *)(q + 64 * j)));
            const __m256 p2 = dot_u8s8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), _mm256_loadu_si256((const __m256i *)(q + 64 * j + 32)));
            acc = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * sc1 * dx[2 * j]), acc);
            acc = _mm256_fmadd_ps(p2, _mm256_set1_ps(d * sc2 * dx[2 * j + 1]), acc);
            mins += dmin * (m1 * dx[2 * j] * (float)(sums[4 * j] + sums[4 * j + 1]) + m2 * dx[2 * j + 1] * (float)(sums[4 * j + 2] + sums[4 * j + 3]));
        }
    }
    return hsum8(acc) - mins;
}

static float dot_q6_K(const void *row, const sp_q8_act *x, int64_t n) {
    const block_q6_K *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float offset = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hh = _mm256_loadu_si256((const __m256i *)qh);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hh, m2), 4));
            v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 2), m2), 4));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 4), m2), 4));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hh, 6), m2), 4));
            for (int k = 0; k < 4; k++) { /* 32 values = sub-blocks 2k and 2k+1 of 16 */
                const int blk = (int)(8 * i + 4 * h + k); /* the activations' block of 32 */
                const float s0 = d * sc[2 * k] * x->d[blk], s1 = d * sc[2 * k + 1] * x->d[blk];
                const __m256 p = dot_u8s8(v[k], _mm256_loadu_si256((const __m256i *)(x->q + 32 * blk)));
                acc = _mm256_fmadd_ps(p, _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1), acc);
                offset += 32 * (s0 * (float)x->sum16[2 * blk] + s1 * (float)x->sum16[2 * blk + 1]);
            }
        }
    }
    return hsum8(acc) - offset;
}

/* ------------------------------------------------------------------ prefill: integer GEMM
 * A packed tile holds 16 weight rows (sp_i8_tile_pack): per block of 32 values, the codes of all
 * 16 rows interleaved 4 bytes at a time, so one 512-bit register holds 4 values of each of 16
 * rows and one vpdpbusd with 4 activation bytes broadcast advances all 16 dot products.
 * Each lane of a token's accumulator is one weight row, so a token's 16 results are stored
 * contiguously without any horizontal reduction. Per block and token the integer sum is
 * scaled once (scale × activation scale) and the min term subtracted (min × activation sum). */

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Every loop over the register block is unrolled so that the accumulators live in registers. */
#define UNROLL _Pragma("GCC unroll 8")

static inline __attribute__((always_inline)) void gemm_i8_tokens(const uint8_t *tile, const int group, int nr,
                                                                  const sp_i8_rows *x, int64_t t0, const int C, int64_t k,
                                                                  float *out, int64_t ldo) {
    const int64_t nb = k / 32, ng = k / group, stride = SP_I8_TILE_BLOCK_BYTES(group);
    const int8_t *q[8];
    const float *d[8], *ds[8];
    __m512 sum[8];
    UNROLL for (int c = 0; c < C; c++) {
        q[c] = x->q + (t0 + c) * k;
        d[c] = x->d + (t0 + c) * nb;
        ds[c] = x->dsum + (t0 + c) * ng;
        sum[c] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * stride;
        const float *sm = (const float *)(blk + 512); /* per group: 16 scales, then 16 mins */
        UNROLL for (int h = 0; h < 32 / group; h++) {
            __m512i acc[8];
            UNROLL for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_si512();
            UNROLL for (int g = h * group / 4; g < (h + 1) * group / 4; g++) {
                const __m512i w = _mm512_loadu_si512(blk + 64 * g);
                UNROLL for (int c = 0; c < C; c++) acc[c] = _mm512_dpbusd_epi32(acc[c], w, bcast4(q[c] + 32 * b + 4 * g));
            }
            const __m512 vs = _mm512_loadu_ps(sm + 32 * h), vm = _mm512_loadu_ps(sm + 32 * h + 16);
            const int64_t gi = b * (32 / group) + h;
            UNROLL for (int c = 0; c < C; c++) {
                sum[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[c]), _mm512_mul_ps(vs, _mm512_set1_ps(d[c][b])), sum[c]);
                sum[c] = _mm512_fnmadd_ps(vm, _mm512_set1_ps(ds[c][gi]), sum[c]);
            }
        }
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    UNROLL for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(out + (t0 + c) * ldo, rows, sum[c]);
}

#define GEMM_I8_CASES(G)                                                              \
    switch (C) {                                                                      \
    case 8: gemm_i8_tokens(tile, G, nr, x, t, 8, k, out, ldo); break;                 \
    case 7: gemm_i8_tokens(tile, G, nr, x, t, 7, k, out, ldo); break;                 \
    case 6: gemm_i8_tokens(tile, G, nr, x, t, 6, k, out, ldo); break;                 \
    case 5: gemm_i8_tokens(tile, G, nr, x, t, 5, k, out, ldo); break;                 \
    case 4: gemm_i8_tokens(tile, G, nr, x, t, 4, k, out, ldo); break;                 \
    case 3: gemm_i8_tokens(tile, G, nr, x, t, 3, k, out, ldo); break;                 \
    case 2: gemm_i8_tokens(tile, G, nr, x, t, 2, k, out, ldo); break;                 \
    default: gemm_i8_tokens(tile, G, nr, x, t, 1, k, out, ldo); break;                \
    }

static void gemm_i8(const uint8_t *tile, int group, int nr, const sp_i8_rows *x, int nt, int64_t k, float *out, int64_t ldo) {
    for (int t = 0; t < nt; t += 8) {
        const int C = nt - t < 8 ? nt - t : 8;
        if (group == 16) { GEMM_I8_CASES(16) } else { GEMM_I8_CASES(32) }
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
    k->gemm_i8 = gemm_i8;
    k->quantize_act = quantize_act;
    k->dot_row_q8[SP_TYPE_Q8_0] = dot_q8_0;
    k->dot_row_q8[SP_TYPE_Q4_0] = dot_q4_0;
    k->dot_row_q8[SP_TYPE_Q4_K] = dot_q4_K;
    k->dot_row_q8[SP_TYPE_Q6_K] = dot_q6_K;
}
