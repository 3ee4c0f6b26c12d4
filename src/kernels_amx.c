/* AMX prefill (Sapphire Rapids and later Xeons): the products of prefill on the tile unit —
 * a packed integer weight tile times the quantized activations (tdpbsud), and a bf16 panel times
 * bf16 activations (tdpbf16ps, below). Compiled with -mamx-tile -mamx-int8 -mamx-bf16; chosen
 * at run time, over the VNNI set, where the CPU and the OS allow it (sp_amx_usable).
 *
 * One tdpbsud multiplies 16 tokens × 32 activation bytes by 32 × 16 weight codes (8 192
 * multiply-adds) where vpdpbusd does 64. The packed tile (sp_i8_tile_pack) is already the layout
 * tdpbsud takes for its second operand: per block of 32 values, [k/4][row][4] bytes — 8 rows of
 * 64 bytes. The activations' codes are the first operand as they lie (token t's 32 bytes of a
 * block at q + t·ldq). Each product lands as C[token][weight row], the order of the
 * output, so the scaling is one vector per token and nothing is transposed. The integer sums are
 * the VNNI kernel's to the bit (both exact) and so is the scaling's order: both give the same floats.
 *
 * What bounds it (measured on one core, 16 rows × 2 048 values × 512 tokens, Q8_0's form): 373-395
 * GMAC/s against VNNI's 290. Every block has scales of its own, so every product of 32 values
 * must leave the tile unit (a 1 KiB store) to be scaled by the vector unit before the next block
 * is added — the tile unit alone, without that scaling, runs at 740; the scaling alone at 520.
 * Groups of 16 (Q6_K) halve the work per product and double the scaling: slower than VNNI (200
 * against 262), so they stay there. */
#define _DEFAULT_SOURCE /* syscall() */
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels_x86.h"

#define UNROLL16 _Pragma("GCC unroll 16")

/* The tile registers: block b's product goes to C0 (even b) or C1 (odd b), so that the tile unit
 * computes one block while the vector unit scales the one before. (Plain numbers: GCC's tile
 * intrinsics paste them into the register names.) */
#define C0 0
#define C1 1
#define A0 2
#define A1 3
#define B0 4
#define B1 5

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* 16 tokens per product: activations 16 × 32 bytes, weights 8 rows of 64 bytes, sums 16 × 16 int32. */
static void configure(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = C0; t <= C1; t++) c.rows[t] = 16, c.colsb[t] = 64;
    for (int t = A0; t <= A1; t++) c.rows[t] = 16, c.colsb[t] = 32;
    for (int t = B0; t <= B1; t++) c.rows[t] = 8, c.colsb[t] = 64;
    _tile_loadconfig(&c);
}

#define BLOCK_BYTES SP_I8_TILE_BLOCK_BYTES(32)

#define ISSUE(C, A, B, b)                                \
    do {                                                 \
        _tile_zero(C);                                   \
        _tile_loadd(A, a + (b) * 32, x->ldq);            \
        _tile_loadd(B, tile + (b) * BLOCK_BYTES, 64);    \
        _tile_dpbsud(C, A, B);                           \
    } while (0)

/* sum[t] += (C[t] + offset sum) · scales · the token's activation scale (− mins · activation sum) */
static inline __attribute__((always_inline)) void scale_block(const int32_t *c, const uint8_t *tile, const bool folded,
                                                             const sp_i8_rows *x, int64_t t0, int64_t nb, int64_t b, __m512 *sum) {
    const float *sm = (const float *)(tile + b * BLOCK_BYTES + 512);
    const __m512 vs = _mm512_loadu_ps(sm), mins = _mm512_loadu_ps(sm + 16);
    UNROLL16 for (int t = 0; t < 16; t++) {
        __m512i v = _mm512_load_si512(c + 16 * t);
        if (folded) v = _mm512_add_epi32(v, _mm512_set1_epi32(x->osum[(t0 + t) * nb + b]));
        sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(vs, _mm512_set1_ps(x->d[(t0 + t) * nb + b])), sum[t]);
        if (!folded) sum[t] = _mm512_fnmadd_ps(mins, _mm512_set1_ps(x->dsum[(t0 + t) * nb + b]), sum[t]);
    }
}

/* 16 tokens from t0, every block's product on the tile unit, two in flight. */
static inline __attribute__((always_inline)) void gemm16(const uint8_t *tile, const bool folded, int nr, const sp_i8_rows *x,
                                                        int64_t t0, int64_t k, float *out, int64_t ldo, int32_t (*buf)[256]) {
    const int64_t nb = k / 32;
    const int8_t *a = x->q + t0 * x->ldq;
    __m512 sum[16];
    UNROLL16 for (int t = 0; t < 16; t++) sum[t] = _mm512_setzero_ps();
    ISSUE(C0, A0, B0, 0);
    for (int64_t b = 0; b < nb; b += 2) {
        if (b + 1 < nb) ISSUE(C1, A1, B1, b + 1);
        _tile_stored(C0, buf[0], 64);
        scale_block(buf[0], tile, folded, x, t0, nb, b, sum);
        if (b + 1 < nb) {
            if (b + 2 < nb) ISSUE(C0, A0, B0, b + 2);
            _tile_stored(C1, buf[1], 64);
            scale_block(buf[1], tile, folded, x, t0, nb, b + 1, sum);
        }
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    UNROLL16 for (int t = 0; t < 16; t++) _mm512_mask_storeu_ps(out + (t0 + t) * ldo, rows, sum[t]);
}

static void gemm_i8(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt, int64_t k,
                    float *out, int64_t ldo) {
    const int full = group == 32 ? nt / 16 * 16 : 0; /* groups of 16 (Q6_K): all on VNNI */
    if (full) {
        _Alignas(64) int32_t buf[2][256];
        configure();
        for (int t = 0; t < full; t += 16) {
            if (codes_offset) gemm16(tile, true, nr, x, t, k, out, ldo, buf); /* Q8_0, Q4_0, Q5_0 */
            else gemm16(tile, false, nr, x, t, k, out, ldo, buf);            /* Q4_1, Q5_1, Q4_K, Q5_K */
        }
        /* the tile registers back to their initial state: the OS need not save them for this thread */
        _tile_release();
    }
    if (full < nt) { /* the last tokens (fewer than 16), and groups of 16, with vpdpbusd */
        sp_i8_rows rest = *x;
        rest.q += full * x->ldq;
        rest.d += full * (k / 32);
        rest.dsum += full * (k / group);
        rest.sum16 += full * (k / 16);
        if (rest.osum) rest.osum += full * (k / group);
        sp_avx512vnni_gemm_i8(tile, group, codes_max, codes_offset, nr, &rest, nt - full, k, out + full * ldo, ldo);
    }
}

/* ------------------------------------------------------------------ bf16 panels
 * The float path's panel (kernels.c: pairs of bf16 values, panel[k/2][row]) is tdpbf16ps's
 * second operand as it lies: 16 pair rows of 16 weight rows' pairs, nr·4 bytes apart. The
 * tokens' bf16 values are the first (16 tokens × 32 values, ldx apart), and the sums stay in the
 * tile unit over the whole panel depth in f32 — no scaling between products, so here the tile
 * unit runs at its own rate: 32 tokens × 32 weight rows in four accumulator tiles, each pair of
 * operand tiles used twice. */
#define BC00 0
#define BC01 1
#define BC10 2
#define BC11 3
#define BA0 4
#define BA1 5
#define BB0 6
#define BB1 7

static void configure_bf16(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) c.rows[t] = 16, c.colsb[t] = 64;
    _tile_loadconfig(&c);
}

/* tokens [t, t + 32) × weight rows [r, r + 32) over the panel's k values — or [r, r + 16) (wide
 * false: a task's rows are a multiple of 16, not always of 32) */
static inline __attribute__((always_inline)) void bf16_block(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int k,
                                                            float *out, int64_t ldo, bool accumulate, const bool wide) {
    const int64_t ldx_b = ldx * 2, ldo_b = ldo * 4, ldp_b = (int64_t)nr * 4;
    if (accumulate) {
        _tile_loadd(BC00, out, ldo_b);
        _tile_loadd(BC10, out + 16 * ldo, ldo_b);
        if (wide) _tile_loadd(BC01, out + 16, ldo_b);
        if (wide) _tile_loadd(BC11, out + 16 * ldo + 16, ldo_b);
    } else {
        _tile_zero(BC00);
        _tile_zero(BC10);
        if (wide) _tile_zero(BC01);
        if (wide) _tile_zero(BC11);
    }
    for (int kk = 0; kk < k; kk += 32) {
        _tile_loadd(BA0, x + kk, ldx_b);
        _tile_loadd(BA1, x + 16 * ldx + kk, ldx_b);
        _tile_loadd(BB0, panel + (int64_t)kk / 2 * nr, ldp_b);
        if (wide) _tile_loadd(BB1, panel + (int64_t)kk / 2 * nr + 16, ldp_b);
        _tile_dpbf16ps(BC00, BA0, BB0);
        if (wide) _tile_dpbf16ps(BC01, BA0, BB1);
        _tile_dpbf16ps(BC10, BA1, BB0);
        if (wide) _tile_dpbf16ps(BC11, BA1, BB1);
    }
    _tile_stored(BC00, out, ldo_b);
    _tile_stored(BC10, out + 16 * ldo, ldo_b);
    if (wide) _tile_stored(BC01, out + 16, ldo_b);
    if (wide) _tile_stored(BC11, out + 16 * ldo + 16, ldo_b);
}

static void gemm_bf16(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int nt, int k, float *out, int64_t ldo,
                      bool accumulate) {
    /* whole blocks of 32 tokens and 32 weight rows here (and 16 rows where the panel's rows are an
     * odd multiple of 16: tasks of 48 rows); the rest (the last tokens, a panel whose rows are not
     * a multiple of 16: the vocabulary's last) with vdpbf16ps */
    const int full = nr % 16 == 0 && k % 32 == 0 ? nt / 32 * 32 : 0;
    if (full) {
        configure_bf16();
        for (int t = 0; t < full; t += 32) {
            int r = 0;
            for (; r + 32 <= nr; r += 32) bf16_block(panel + r, nr, x + t * ldx, ldx, k, out + t * ldo + r, ldo, accumulate, true);
            if (r < nr) bf16_block(panel + r, nr, x + t * ldx, ldx, k, out + t * ldo + r, ldo, accumulate, false);
        }
        _tile_release();
    }
    if (full < nt) sp_avx512_gemm_bf16(panel, nr, x + full * ldx, ldx, nt - full, k, out + full * ldo, ldo, accumulate);
}

/* Linux gives a process the tile registers' 8 KiB of state only when asked (arch_prctl); the
 * CPU's flags alone are not enough. */
bool sp_amx_usable(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

void sp_amx_fill(sp_isa_kernels *k) {
    k->gemm_i8 = gemm_i8;
    if (k->gemm_bf16) k->gemm_bf16 = gemm_bf16; /* the OS and CPU allow bf16 dot products too */
}
