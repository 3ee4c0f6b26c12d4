/*
 * The 32-value block formats' integer decode dots (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: the weights'
 * codes × int8 activations), written once for every x86 set that has them. The file including
 * this defines, for its instruction set:
 *   __m256i dot_u8s8(__m256i u, __m256i s) the 32 products of unsigned codes u (≤ 128) and
 *                                          signed activations s, summed in groups of 4 (int32);
 * and UNROLL (kernels_x86.h). It gets, per format, name(row, x, n) for one token and
 * name##_rows(row, x, n_tokens, n, out, stride) for up to four; and Q4_K's scale unpacking.
 * A set with a Q4_0 dot of its own (AVX-512 VNNI: two blocks per register) defines
 * SP_OWN_Q4_0_DOT first: this one is then neither compiled nor listed.
 */
#ifndef SP_KERNELS_Q8_BLOCKS_H
#define SP_KERNELS_Q8_BLOCKS_H

#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "repack.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Byte e = 0xFF where bit e of h is set, else 0 (Q5's fifth bits): one mask move with AVX-512;
 * with AVX2, byte e takes byte e/8 of h, then keeps bit e%8 of it. */
static inline __m256i bits_to_bytes(uint32_t h) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_movm_epi8((__mmask32)h);
#else
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
#endif
}

/* The 32 four-bit codes of a Q4_0/Q4_1/Q5_0/Q5_1 block, in element order: low nibbles are
 * elements 0..15, high nibbles 16..31; with qh (Q5), bit e of it is element e's fifth bit. */
static inline __m256i nibble_codes(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}
static inline __m256i five_bit_codes(const uint8_t *qs, const uint8_t qh[4]) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_or_si256(nibble_codes(qs), _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(0x10)));
}
static inline __m256i act_codes(const sp_q8_act *x, int64_t i) { return _mm256_loadu_si256((const __m256i *)(x->q + 32 * i)); }
static inline float act_sum(const sp_q8_act *x, int64_t i) { return (float)(x->sum16[2 * i] + x->sum16[2 * i + 1]); }

/* Each format's block product: the integer dot of its 32 codes with the activations' codes, as 8
 * int32 sums of 4 (summed later). The scale (d × the activations' d) and what the codes' offset or the
 * format's minimum adds (through the activations' code sums) are the kernel's, below. */
static inline __m256i codes_q4_0(const block_q4_0 *b, int64_t i) { return nibble_codes(b[i].qs); }
static inline __m256i codes_q4_1(const block_q4_1 *b, int64_t i) { return nibble_codes(b[i].qs); }
static inline __m256i codes_q5_0(const block_q5_0 *b, int64_t i) { return five_bit_codes(b[i].qs, b[i].qh); }
static inline __m256i codes_q5_1(const block_q5_1 *b, int64_t i) { return five_bit_codes(b[i].qs, b[i].qh); }
/* Signed codes w times signed activations q, in dot_u8s8's groups of 4: |w| × (q with w's sign),
 * the u8 × s8 form of a signed product (|w| ≤ 128). */
static inline __m256i dot_s8s8(__m256i w, __m256i q) { return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w)); }
static inline __m256i prod_q8_0(const block_q8_0 *b, const sp_q8_act *x, int64_t i) {
    return dot_s8s8(_mm256_loadu_si256((const __m256i *)b[i].qs), act_codes(x, i));
}
static inline __m256i prod_q4_0(const block_q4_0 *b, const sp_q8_act *x, int64_t i) { return dot_u8s8(codes_q4_0(b, i), act_codes(x, i)); }
static inline __m256i prod_q4_1(const block_q4_1 *b, const sp_q8_act *x, int64_t i) { return dot_u8s8(codes_q4_1(b, i), act_codes(x, i)); }
static inline __m256i prod_q5_0(const block_q5_0 *b, const sp_q8_act *x, int64_t i) { return dot_u8s8(codes_q5_0(b, i), act_codes(x, i)); }
static inline __m256i prod_q5_1(const block_q5_1 *b, const sp_q8_act *x, int64_t i) { return dot_u8s8(codes_q5_1(b, i), act_codes(x, i)); }

/* Eight fp16 values `stride` bytes apart (a field of 8 consecutive blocks) as floats: eight
 * 16-bit loads and one conversion (a vpgatherdd of the 32-bit words was slower: Q8_0 decode 4 %). */
static inline __m256 f16x8(const void *p, int stride) {
    uint16_t h[8];
    for (int j = 0; j < 8; j++) memcpy(&h[j], (const uint8_t *)p + j * stride, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}
/* Four blocks' int32 dots (8 lanes each) in one vector: lane j sums block j's lanes 0..3, lane
 * j + 4 its lanes 4..7 (two unpacks and an add a level, as ik_llama.cpp's Sum4 does): one
 * conversion and one multiply-add for four blocks, by the scales [s0 s1 s2 s3 s0 s1 s2 s3]. */
static inline __m256i sum4_blocks(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i p01 = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1)); /* 0 1 0 1 | 0 1 0 1 */
    const __m256i p23 = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3)); /* 2 3 2 3 | 2 3 2 3 */
    return _mm256_add_epi32(_mm256_unpacklo_epi64(p01, p23), _mm256_unpackhi_epi64(p01, p23));         /* 0 1 2 3 | 0 1 2 3 */
}

/* Four blocks' products in one vector, as sum4_blocks leaves them (four_<format>). Where the
 * products are vpmaddubsw's 16-bit pair sums widened by vpmaddwd (SP_PAIRS16, the AVX2 set), the
 * formats whose codes are below 32 add four blocks' pair sums in 16 bits first (a lane then sums
 * four pairs: at most 4 · 2 · 31 · 128 < 2^15) and widen once: one vpmaddwd for four blocks, not
 * four, on the two multiply pipes that vpmaddubsw, the conversion and the multiply-add also take
 * (1B Q4_0 decode, AMD Zen 3, one thread 18.5 → 19.4 t/s, two 34.5–35.1 → 36.7–36.8). Q8_0's
 * products (|w| up to 128) fill a 16-bit lane alone. */
#define FOUR_BY_PRODUCTS(fmt, BLOCK)                                                                                  \
    static inline __m256i four_##fmt(const BLOCK *b, const sp_q8_act *x, int64_t i) {                                \
        return sum4_blocks(prod_##fmt(b, x, i), prod_##fmt(b, x, i + 1), prod_##fmt(b, x, i + 2), prod_##fmt(b, x, i + 3)); \
    }
#ifdef SP_PAIRS16
static inline __m256i fold4_pairs(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i p01 = _mm256_add_epi16(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    const __m256i p23 = _mm256_add_epi16(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi64(p01, p23), _mm256_unpackhi_epi64(p01, p23)), _mm256_set1_epi16(1));
}
#define PAIRS(fmt, b, x, i) _mm256_maddubs_epi16(codes_##fmt(b, i), act_codes(x, i))
#define FOUR_BY_PAIRS(fmt, BLOCK)                                                                                     \
    static inline __m256i four_##fmt(const BLOCK *b, const sp_q8_act *x, int64_t i) {                                \
        return fold4_pairs(PAIRS(fmt, b, x, i), PAIRS(fmt, b, x, i + 1), PAIRS(fmt, b, x, i + 2), PAIRS(fmt, b, x, i + 3)); \
    }
#else
#define FOUR_BY_PAIRS FOUR_BY_PRODUCTS
#endif
FOUR_BY_PRODUCTS(q8_0, block_q8_0)
FOUR_BY_PAIRS(q4_0, block_q4_0)
FOUR_BY_PAIRS(q4_1, block_q4_1)
FOUR_BY_PAIRS(q5_0, block_q5_0)
FOUR_BY_PAIRS(q5_1, block_q5_1)

/* The activations' code sums of 8 blocks (sum16 pairs), as floats in block order. */
static inline __m256 block_sums8(const int32_t *sum16) {
    const __m256i h = _mm256_hadd_epi32(_mm256_loadu_si256((const __m256i *)sum16), _mm256_loadu_si256((const __m256i *)(sum16 + 8)));
    return _mm256_cvtepi32_ps(_mm256_permute4x64_epi64(h, 0xD8));
}

/* A kernel for T tokens at once (T = 1..4, a constant at each use): the weights' block is loaded
 * and unpacked once and used for every token (the compiler shares the loads and the unpacking
 * of the inlined products), while each token's own arithmetic is exactly the one-token kernel's,
 * in the same order, so a token's result is the same bits alone or among others (a batched
 * decode step, speculative decoding's check). name(row, x, n) is one token; name##_rows any count.
 *
 * Eight blocks at a time, the per-block scalars are vectors: the 8 weight scales (f16x8) times
 * the token's 8 activation scales, and the offset or minimum term of all 8 blocks is one
 * multiply-add on their activation sums (a scalar scale, conversion and offset per block made
 * decode compute-bound: 1B Q4_0, 2 threads, 21.5 → 27–28.6 t/s with AVX-512). The blocks' int32
 * dots go four at a time into one vector (four_<fmt>: sum4_blocks, or fold4_pairs before the
 * widening where that is vpmaddwd), converted and multiplied once by the four scales: on AMD
 * Zen 3 a block's vpsignb, vpmaddubsw and vpmaddwd share the two vector-multiply pipes with the
 * conversion and the multiply-add (1B decode, 2 threads, against a conversion and multiply-add
 * per block: Q8_0 +11 %, Q4_0 +5 %, medians of alternating rounds; the K-quants' sub-blocks
 * folded likewise, in 16 bits, since: kernels_avx2.c). The two halves of 8 run as two chains,
 * so that the conversion and multiply-add latencies of one overlap the other's. fmt: the format
 * (prod_<fmt>, four_<fmt>). OFFSET: the codes' offset (Q4_0 8, Q5_0 16: value = d·(code −
 * OFFSET)); MIN: the block has a minimum, field M (value = d·code + m; for the others M names any
 * fp16 field, never read). */
#define DOT_BLOCKS(name, BLOCK, fmt, OFFSET, MIN, M)                                                                    \
    static inline __attribute__((always_inline)) void name##_tokens(const void *row, const sp_q8_act *x, int64_t n,     \
                                                                    float *out, int64_t os, const int T) {              \
        const BLOCK *b = row;                                                                                           \
        __m256 acc0[4], acc1[4], off[4];                                                                                \
        UNROLL for (int t = 0; t < T; t++) acc0[t] = acc1[t] = off[t] = _mm256_setzero_ps();                            \
        const int64_t nb = n / 32;                                                                                      \
        int64_t i = 0;                                                                                                  \
        for (; i + 8 <= nb; i += 8) {                                                                                   \
            sp_prefetch_ahead(&b[i], 8 * (int64_t)sizeof(BLOCK));                                                       \
            const __m256 dw = f16x8(&b[i].d, (int)sizeof(BLOCK));                                                       \
            const __m256 mw = MIN ? f16x8(&b[i].M, (int)sizeof(BLOCK)) : _mm256_setzero_ps(); /* the blocks' mins */    \
            UNROLL for (int t = 0; t < T; t++) {                                                                        \
                const __m256 dx = _mm256_loadu_ps(x[t].d + i), s = _mm256_mul_ps(dw, dx);                               \
                if (MIN) off[t] = _mm256_fmadd_ps(_mm256_mul_ps(mw, dx), block_sums8(x[t].sum16 + 2 * i), off[t]);      \
                else if (OFFSET) off[t] = _mm256_fmadd_ps(s, block_sums8(x[t].sum16 + 2 * i), off[t]);                  \
                const __m256i lo = four_##fmt(b, &x[t], i), hi = four_##fmt(b, &x[t], i + 4);                           \
                acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_permute2f128_ps(s, s, 0x00), acc0[t]);         \
                acc1[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_permute2f128_ps(s, s, 0x11), acc1[t]);         \
            }                                                                                                           \
        }                                                                                                               \
        float tail_off[4] = {0, 0, 0, 0};                                                                               \
        for (; i < nb; i++) /* the last blocks short of 8, one at a time */                                             \
            UNROLL for (int t = 0; t < T; t++) {                                                                        \
                const float s = _cvtsh_ss(b[i].d) * x[t].d[i];                                                          \
                acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod_##fmt(b, &x[t], i)), _mm256_set1_ps(s), acc0[t]);        \
                if (MIN) tail_off[t] += _cvtsh_ss(b[i].M) * x[t].d[i] * act_sum(&x[t], i);                              \
                else if (OFFSET) tail_off[t] += s * act_sum(&x[t], i);                                                  \
            }                                                                                                           \
        UNROLL for (int t = 0; t < T; t++) {                                                                            \
            const float o = hsum8(off[t]) + tail_off[t];                                                                \
            out[t * os] = hsum8(_mm256_add_ps(acc0[t], acc1[t])) + (MIN ? o : -(float)(OFFSET) * o);                    \
        }                                                                                                               \
    }                                                                                                                   \
    DOT_TOKENS(name)

/* name##_rows(row, x, n_tokens, n, out, os): name##_tokens with T a constant for each count. */
#define DOT_ROWS(name)                                                                                              \
    static void name##_rows(const void *row, const sp_q8_act *x, int n_tokens, int64_t n, float *out, int64_t os) {  \
        switch (n_tokens) {                                                                                         \
        case 1: name##_tokens(row, x, n, out, os, 1); break;                                                        \
        case 2: name##_tokens(row, x, n, out, os, 2); break;                                                        \
        case 3: name##_tokens(row, x, n, out, os, 3); break;                                                        \
        default: name##_tokens(row, x, n, out, os, 4); break;                                                       \
        }                                                                                                           \
    }
#define DOT_TOKENS(name)                                                                                            \
    static float name(const void *row, const sp_q8_act *x, int64_t n) {                                             \
        float r;                                                                                                    \
        name##_tokens(row, x, n, &r, 0, 1);                                                                         \
        return r;                                                                                                   \
    }                                                                                                               \
    DOT_ROWS(name)

DOT_BLOCKS(dot_q8_0, block_q8_0, q8_0, 0, 0, d)
#ifndef SP_OWN_Q4_0_DOT
DOT_BLOCKS(dot_q4_0, block_q4_0, q4_0, 8, 0, d)
#endif
DOT_BLOCKS(dot_q5_0, block_q5_0, q5_0, 16, 0, d)
DOT_BLOCKS(dot_q4_1, block_q4_1, q4_1, 0, 1, m)
DOT_BLOCKS(dot_q5_1, block_q5_1, q5_1, 0, 1, m)

/* Four chunks of eight interleaved rows (repack.h) against 16 activation codes a: c[q] holds four
 * codes of each row, values 4q … 4q+3, multiplied with those four activation codes broadcast
 * (vpmaddubsw). A row's int16 sums stay in the lanes of its own four bytes, so one vpmaddwd of
 * the result leaves row r's dot in int32 lane r. Codes up to 31 (Q5_K) allow four such products
 * a 16-bit sum (4 × 2 × 31 × 127 = 31496), 4-bit codes eight (two of these added). */
static inline __m256i rows8_sums4(const __m256i c[4], const int8_t *a) {
    int32_t a4[4];
    memcpy(a4, a, 16);
    __m256i s = _mm256_maddubs_epi16(c[0], _mm256_set1_epi32(a4[0]));
    UNROLL for (int q = 1; q < 4; q++) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c[q], _mm256_set1_epi32(a4[q])));
    return s;
}
/* The same for 32 values of 4-bit codes: 8 × 2 × 15 × 127 = 30480, still within int16. */
static inline __m256i rows8_sums(const __m256i c[8], const int8_t *a) { return _mm256_add_epi16(rows8_sums4(c, a), rows8_sums4(c + 4, a + 16)); }

/* Q4_0 in groups of eight interleaved rows (repack.h), for T tokens (1..4): per block, chunk j's
 * codes masked and shifted are values 4j … 4j+3 and 16+4j … of the eight rows (rows8_sums).
 * The offset 8 comes off in the integer sum, and one conversion and multiply-add by the eight
 * rows' scales finish the block for all eight: no horizontal sums. Each token's arithmetic is
 * its own, in the same order whatever T: a token's eight results are the same bits alone or
 * among others. */
static inline __attribute__((always_inline)) void dot8_q4_0_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    const uint8_t *g = group;
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, g += SP_ROWS8_Q4_0_BYTES) {
        sp_prefetch_ahead(g, SP_ROWS8_Q4_0_BYTES);
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        __m256i c[8];
        UNROLL for (int j = 0; j < 4; j++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(g + SP_ROWS8_Q4_0_QS + 32 * j));
            c[j] = _mm256_and_si256(w, low);                             /* values 4j … 4j+3 */
            c[j + 4] = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);   /* values 16+4j … */
        }
        UNROLL for (int t = 0; t < T; t++) {
            const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(rows8_sums(c, x[t].q + 32 * i), ones),
                                                 _mm256_set1_epi32(8 * (x[t].sum16[2 * i] + x[t].sum16[2 * i + 1])));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_set1_ps(x[t].d[i])), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * os, acc[t]);
}
DOT_ROWS(dot8_q4_0)

/* Q8_0 in groups of eight interleaved rows (repack.h), for T tokens (1..4): per block, eight
 * chunks of four signed codes of each row, each against four activation codes broadcast
 * (dot_s8s8: no two such products fit a 16-bit sum, so each chunk widens at once), and one
 * conversion and multiply-add by the eight rows' scales. A token's arithmetic is its own
 * whatever T. */
static inline __attribute__((always_inline)) void dot8_q8_0_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    const uint8_t *g = group;
    __m256 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, g += SP_ROWS8_Q8_0_BYTES) {
        sp_prefetch_ahead(g, SP_ROWS8_Q8_0_BYTES);
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        __m256i dot[4];
        UNROLL for (int q = 0; q < 8; q++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(g + SP_ROWS8_Q8_0_QS + 32 * q));
            UNROLL for (int t = 0; t < T; t++) { /* |w| computed once for every token: the compiler shares it */
                int32_t a4;
                memcpy(&a4, x[t].q + 32 * i + 4 * q, 4);
                const __m256i p = dot_s8s8(w, _mm256_set1_epi32(a4));
                dot[t] = q ? _mm256_add_epi32(dot[t], p) : p;
            }
        }
        UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(dw, _mm256_set1_ps(x[t].d[i])), acc[t]);
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * os, acc[t]);
}
DOT_ROWS(dot8_q8_0)

/* Q4_K, and with five Q5_K, in groups of eight interleaved rows (repack.h), for T tokens (1..4):
 * per sub-block of 32 values, its eight chunks' codes (Q5_K: with the fifth bits of its qh
 * chunks) against the activations' codes broadcast four at a time, as in Q4_0's; the int16 sums
 * then meet the eight rows' six-bit scales in vpmaddwd (each scale in both int16 lanes of its
 * row; Q5_K's five-bit codes in two sums of four chunks, two vpmaddwd), so lane r holds scale ×
 * dot, converted and multiplied by the activations' scale of the sub-block; the mins' term is
 * the rows' mins times the activations' scaled code sum. Per 256 values both sums are scaled by
 * the rows' d and dmin. A token's arithmetic is its own whatever T. */
static inline __attribute__((always_inline)) void dot8_k4_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                 int64_t os, const int T, const bool five) {
    const uint8_t *g = group;
    const __m256i low = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    const int64_t bytes = five ? SP_ROWS8_Q5_K_BYTES : SP_ROWS8_Q4_K_BYTES;
    for (int64_t i = 0; i < n / QK_K; i++, g += bytes) {
        sp_prefetch_ahead(g, bytes);
        __m256 sum_d[4], sum_m[4];
        UNROLL for (int t = 0; t < T; t++) sum_d[t] = sum_m[t] = _mm256_setzero_ps();
        for (int j = 0; j < 8; j++) { /* sub-block j: chunks of c = j / 2, low nibbles if j is even */
            const __m128i sc8 = _mm_loadl_epi64((const __m128i *)(g + SP_ROWS8_Q4_K_SCALES + 8 * j));
            const __m256i sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc8, sc8)); /* row r's scale in int16 lanes 2r, 2r+1 */
            const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(g + SP_ROWS8_Q4_K_MINS + 8 * j))));
            const uint8_t *chunks = g + SP_ROWS8_Q4_K_QS + 256 * (j / 2);
            /* the chunks four at a time, each four used for every token before the next are built:
             * eight codes live at once, with Q5_K's bits, spilled the sub-block sums to the stack
             * (perf; in cache level, the 1B Q5_K_M 21.1–30.2 → 29.3–31.6 t/s in three rounds) */
            __m256i part[4];
            UNROLL for (int half = 0; half < 2; half++) {
                __m256i c[4];
                UNROLL for (int q = 0; q < 4; q++) {
                    const __m256i w = _mm256_loadu_si256((const __m256i *)(chunks + 32 * (4 * half + q)));
                    c[q] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(w, 4) : w, low);
                    if (five) { /* bit j of each qh byte to bit 4: down by j, up by 4 (in 16 bits, none crosses into the other byte's bit 4) */
                        const __m256i h = _mm256_loadu_si256((const __m256i *)(g + SP_ROWS8_Q5_K_QH + 32 * (4 * half + q)));
                        c[q] = _mm256_or_si256(c[q], _mm256_and_si256(_mm256_slli_epi16(_mm256_srl_epi16(h, _mm_cvtsi32_si128(j)), 4), bit4));
                    }
                }
                UNROLL for (int t = 0; t < T; t++) {
                    const __m256i s = rows8_sums4(c, x[t].q + 32 * (8 * i + j) + 16 * half);
                    /* 4-bit codes: eight chunks in one int16 sum; five-bit: each four through vpmaddwd */
                    if (five) part[t] = half ? _mm256_add_epi32(part[t], _mm256_madd_epi16(s, sc)) : _mm256_madd_epi16(s, sc);
                    else part[t] = half ? _mm256_madd_epi16(_mm256_add_epi16(part[t], s), sc) : s;
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                const int64_t b = 8 * i + j; /* the activations' block */
                const float dx = x[t].d[b];
                sum_d[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(part[t]), _mm256_set1_ps(dx), sum_d[t]);
                sum_m[t] = _mm256_fmadd_ps(mn, _mm256_set1_ps(dx * (float)(x[t].sum16[2 * b] + x[t].sum16[2 * b + 1])), sum_m[t]);
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)), dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + SP_ROWS8_Q4_K_DMIN)));
        UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_fnmadd_ps(sum_m[t], dmin, _mm256_fmadd_ps(sum_d[t], d, acc[t]));
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * os, acc[t]);
}
static inline __attribute__((always_inline)) void dot8_q4_K_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    dot8_k4_tokens(group, x, n, out, os, T, false);
}
static inline __attribute__((always_inline)) void dot8_q5_K_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    dot8_k4_tokens(group, x, n, out, os, T, true);
}
DOT_ROWS(dot8_q4_K)
DOT_ROWS(dot8_q5_K)

/* Q6_K in groups of eight interleaved rows (repack.h), for T tokens (1..4): per 32 values (a pair
 * of scales), eight chunks of six-bit codes (the value being code − 32) — quarters 0..2 of a half
 * masked from their bytes, quarter 3 gathered from those bytes' top bits (a layout with ql and qh
 * as the file has them took 1.5× the operations to rebuild the codes: in-cache decode 2–8 %
 * slower, the 1B 3–15 %) — each against four activation codes broadcast. Six-bit codes let only
 * two products of vpmaddubsw be summed in int16 (2 × 2 × 63 × 127 = 32004), so the four chunks of
 * a scale's 16 values are two sums, each meeting that scale (both int16 lanes of its row) in
 * vpmaddwd; the offset of 32 is one more vpmaddwd, of the rows' two scales (× 32) by the
 * activations' sums of the two 16s. Lane r then holds row r's dot, converted and multiplied by
 * the activations' scale; per 256 values by the rows' d. A token's arithmetic is its own
 * whatever T. */
static inline __attribute__((always_inline)) void dot8_q6_K_tokens(const void *group, const sp_q8_act *x, int64_t n, float *out,
                                                                   int64_t os, const int T) {
    const uint8_t *g = group;
    /* of each row's pair of 16-bit scales (a, b), in its 32 bits: (a, a) and (b, b) */
    const __m256i first = _mm256_add_epi8(_mm256_set1_epi32(0x01000100), _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C)),
                  second = _mm256_add_epi8(first, _mm256_set1_epi8(2));
    __m256 acc[4];
    UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++, g += SP_ROWS8_Q6_K_BYTES) {
        sp_prefetch_ahead(g, SP_ROWS8_Q6_K_BYTES);
        __m256 sum[4];
        UNROLL for (int t = 0; t < T; t++) sum[t] = _mm256_setzero_ps();
        for (int h = 0; h < 2; h++) UNROLL for (int k = 0; k < 4; k++) { /* values 32p … 32p+31: half h, quarter k of it */
            const int p = 4 * h + k;
            const __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + SP_ROWS8_Q6_K_SCALES + 16 * p)));
            const __m256i sa = _mm256_shuffle_epi8(pair, first), sb = _mm256_shuffle_epi8(pair, second);
            const __m256i pair32 = _mm256_slli_epi16(pair, 5); /* the offset's: 32 × each scale */
            const uint8_t *qs = g + SP_ROWS8_Q6_K_QS + 768 * h;
            const __m256i six = _mm256_set1_epi8(0x3F);
            __m256i c[8];
            UNROLL for (int q = 0; q < 8; q++) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(qs + 32 * q));
                if (k < 3) c[q] = _mm256_and_si256(k ? _mm256_loadu_si256((const __m256i *)(qs + 256 * k + 32 * q)) : x0, six);
                else { /* the top two bits of quarters 0, 1, 2's bytes */
                    const __m256i x1 = _mm256_loadu_si256((const __m256i *)(qs + 256 + 32 * q)), x2 = _mm256_loadu_si256((const __m256i *)(qs + 512 + 32 * q));
                    c[q] = _mm256_or_si256(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(x0, 6), _mm256_set1_epi8(0x03)),
                                                           _mm256_and_si256(_mm256_srli_epi16(x1, 4), _mm256_set1_epi8(0x0C))),
                                           _mm256_and_si256(_mm256_srli_epi16(x2, 2), _mm256_set1_epi8(0x30)));
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                const int64_t b = 8 * i + p; /* the activations' block */
                int32_t a4[8];
                memcpy(a4, x[t].q + 32 * b, 32);
                __m256i s[4];
                UNROLL for (int j = 0; j < 4; j++)
                    s[j] = _mm256_add_epi16(_mm256_maddubs_epi16(c[2 * j], _mm256_set1_epi32(a4[2 * j])),
                                            _mm256_maddubs_epi16(c[2 * j + 1], _mm256_set1_epi32(a4[2 * j + 1])));
                const int32_t sums = (int32_t)(((uint32_t)x[t].sum16[2 * b + 1] << 16) | ((uint32_t)x[t].sum16[2 * b] & 0xFFFF));
                const __m256i dot = _mm256_sub_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(s[0], sa), _mm256_madd_epi16(s[1], sa)),
                                                                      _mm256_add_epi32(_mm256_madd_epi16(s[2], sb), _mm256_madd_epi16(s[3], sb))),
                                                     _mm256_madd_epi16(pair32, _mm256_set1_epi32(sums)));
                sum[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(x[t].d[b]), sum[t]);
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        UNROLL for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(sum[t], d, acc[t]);
    }
    UNROLL for (int t = 0; t < T; t++) _mm256_storeu_ps(out + t * os, acc[t]);
}
DOT_ROWS(dot8_q6_K)

/* The five formats' decode dots into a kernel set (the overlays that bring them: AVX-512 VNNI,
 * AVX-VNNI; the AVX2 set lists them in its table). */
static inline void q8_blocks_fill(sp_isa_kernels *k) {
    k->dot_row_q8[SP_TYPE_Q8_0] = dot_q8_0;
    k->dot_row_q8[SP_TYPE_Q4_1] = dot_q4_1;
    k->dot_row_q8[SP_TYPE_Q5_0] = dot_q5_0;
    k->dot_row_q8[SP_TYPE_Q5_1] = dot_q5_1;
    k->dot_rows_q8[SP_TYPE_Q8_0] = dot_q8_0_rows;
    k->dot_rows_q8[SP_TYPE_Q4_1] = dot_q4_1_rows;
    k->dot_rows_q8[SP_TYPE_Q5_0] = dot_q5_0_rows;
    k->dot_rows_q8[SP_TYPE_Q5_1] = dot_q5_1_rows;
    k->dot8_rows_q8[SP_TYPE_Q4_0] = dot8_q4_0_rows;
    k->dot8_rows_q8[SP_TYPE_Q8_0] = dot8_q8_0_rows;
    k->dot8_rows_q8[SP_TYPE_Q4_K] = dot8_q4_K_rows;
    k->dot8_rows_q8[SP_TYPE_Q5_K] = dot8_q5_K_rows;
    k->dot8_rows_q8[SP_TYPE_Q6_K] = dot8_q6_K_rows;
#ifndef SP_OWN_Q4_0_DOT
    k->dot_row_q8[SP_TYPE_Q4_0] = dot_q4_0;
    k->dot_rows_q8[SP_TYPE_Q4_0] = dot_q4_0_rows;
#endif
}

/* Q4_K's twelve bytes of six-bit scales and mins, unpacked with 32-bit word operations: bytes
 * 0..7 of u are the 8 sub-blocks' scales, bytes 8..15 their mins. */
static inline void q4_K_scales_mins(const uint8_t scales[12], uint32_t u[4]) {
    memcpy(u, scales, 12);
    u[3] = ((u[2] >> 4) & 0x0F0F0F0F) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t m_lo = u[1] & 0x3F3F3F3F;
    u[1] = (u[2] & 0x0F0F0F0F) | (((u[0] >> 6) & 0x03030303) << 4);
    u[2] = m_lo;
    u[0] &= 0x3F3F3F3F;
}

/* The bytes of a Q4_K block, or with five of a Q5_K block. */
static inline int64_t k4_bytes(bool five) { return five ? (int64_t)sizeof(block_q5_K) : (int64_t)sizeof(block_q4_K); }

/* Block i of a Q4_K row, or with five of a Q5_K row: d, dmin and scales lie alike in both, so
 * the block is read as Q4_K's; qs gets its nibbles, qh Q5_K's fifth bits (NULL for Q4_K). */
static inline const block_q4_K *k4_block(const void *row, int64_t i, bool five, const uint8_t **qs, const uint8_t **qh) {
    const void *p = (const uint8_t *)row + i * k4_bytes(five);
    const block_q5_K *b5 = p;
    const block_q4_K *b4 = p;
    *qs = five ? b5->qs : b4->qs;
    *qh = five ? b5->qh : NULL;
    return b4;
}

#endif
