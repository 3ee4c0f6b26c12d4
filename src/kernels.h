/*
 * "How" the model's operations are computed: matrix products over any weight type, norms,
 * RoPE and attention. The model (model.c) says "what"; this layer picks the instruction set
 * (scalar / AVX2 / AVX-512, chosen at run time) and splits work over the thread pool.
 */
#ifndef SP_KERNELS_H
#define SP_KERNELS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "specprefill_dev.h" /* sp_weight, sp_matmul */

/* Memory the kernels read and write in vectors (activations, KV caches, panels, tiles), 64-byte
 * aligned: a cache line, one AVX-512 vector. malloc gives 16 bytes (a large block begins 16
 * bytes into its pages), and then every 64-byte load or store of it spans two lines — 1B F16
 * prefill (the f32 panels), Intel Xeon, 2 threads: +9–13 %; the integer product alone +5–9 %,
 * Q8_0 prefill end to end level (docs/benchmarks.md). Freed with free(). */
static inline void *sp_alloc_vectors(size_t bytes) { return aligned_alloc(64, bytes ? (bytes + 63) & ~(size_t)63 : 64); }

#define SP_N_TYPES 40

/* Activations quantized for integer dot products: per block of 32 values a scale d and int8
 * codes q (x ≈ d·q), plus the sum of the codes of every 16 (for formats whose codes carry an
 * offset, like Q4_0's 8 or Q6_K's 32). n must be a multiple of 32. */
typedef struct sp_q8_act {
    const int8_t *q;
    const float *d;
    const int32_t *sum16;
} sp_q8_act;

/* The integer decode dots read a thread's weight rows one after another, each once per token.
 * While a block is computed they ask, into L2, for the bytes sp_decode_ahead further on (past
 * a row's end: the next row, which the same thread reads next), a few lines per block. Asking
 * for the whole next row at once, as before, filled the core's miss buffers in bursts (1B
 * decode, Intel Xeon, 2 threads, AVX-512, t/s, whole next row → 3 KiB ahead: Q4_0 28.2 → 33.7,
 * Q8_0 19.7 → 22.1, Q4_K_M 31.9 → 37.0, Q6_K 25.2 → 28.5; AVX2 likewise +11–19 %; 1 KiB ahead
 * −6 to +5 %, 2 KiB +6–17 %, 4 KiB +7–14 %; every other line −10 to −15 %; into L1 −2 to −26 %,
 * into L3 level). How far is the CPU's: an AMD Zen 3 (a VM's 2 cores) needs more bytes in
 * flight — against 3 KiB, medians of four alternating rounds (1B, 2 threads, `--no-mmap`): 6 KiB
 * Q8_0 +24 %, Q4_K_M +7 %; 12 KiB +22 % / +5 %; 24 KiB +7 % / +4 %. So 6 KiB on AMD's cores
 * (Zen 4/5 not measured), 3 KiB elsewhere; set with the kernels (sp_kernels), read-only after. */
extern int sp_decode_ahead;

/* Asks for `bytes` of weights from p on, into L2 (prefetcht1), not L1: lines asked into L1 hold
 * the core's few L1 miss buffers that the current loads need. Decode streams the weights from
 * memory once per token, and the hardware prefetcher alone keeps too few lines in flight when
 * each row also costs some arithmetic (1B Q8_0, one core, 2 KiB rows from DRAM: 257 → 176 ns per
 * row for one token). */
static inline void sp_prefetch(const void *p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 2); /* locality 2: prefetcht1 */
}
static inline void sp_prefetch_ahead(const void *p, int64_t bytes) { sp_prefetch((const char *)p + sp_decode_ahead, bytes); }

/* Fills a sp_q8_act's arrays (q: n, d: n/32, sum16: n/16). */
void sp_quantize_activations(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum16);

/* Many tokens of quantized activations for the integer prefill kernels, k values each:
 * codes q [t][k] (token t's at q + t·ldq), scales d [t][k/32] and, per group of the weights'
 * codes (32 or 16 values), dsum [t][k/group] = d × (sum of the group's codes), which carries the
 * weights' min term, the integer sums of every 16 codes, sum16 [t][k/16], and osum (below). */
typedef struct {
    const int8_t *q;
    const float *d;
    const float *dsum;
    const int32_t *sum16;
    /* for weights with a codes_offset: −offset × (sum of the group's codes), [t][k/group], the
     * integer sum's start (one broadcast load per group and token); NULL for the others */
    const int32_t *osum;
    /* bytes from one token's codes to the next's, ≥ k: prepare_i8_rows adds a cache line, so
     * that the rows of the tokens a kernel reads together do not share one set of the L1 cache
     * (rows of k bytes, k a multiple of 2 KiB as in most models, would fall in one or two sets) */
    int64_t ldq;
} sp_i8_rows;

/* A tile of up to 16 weight rows in integer form, 32 values (a block) at a time: 512 bytes of
 * unsigned codes interleaved [k/4][row][4], then per group of `group` values 16 scales and 16
 * mins as floats (row r, value i: scale[r]*code - min[r], the type's `codes` form). */
#define SP_I8_TILE_BLOCK_BYTES(group) (512 + (32 / (group)) * 128)
/* Packs rows [0, nr) (nr ≤ 16, each `row_bytes` apart; interleaved: in groups of 8, repack.h, so
 * nr 8 or 16) of a type with integer codes; rows nr..15 are zero. tile holds k/32 × SP_I8_TILE_BLOCK_BYTES(group)
 * bytes. */
void sp_i8_tile_pack(uint32_t type, const uint8_t *rows, int64_t row_bytes, bool interleaved, int nr, int64_t k, uint8_t *tile);
/* The per-ISA primitives. Every implementation must agree with the scalar one within float
 * rounding; tests compare them. */
typedef struct {
    const char *name;
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*f16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    void (*f32_to_f16)(const float *src, uint16_t *dst, int64_t n);
    /* The prefill micro-kernel on bfloat16 operands, broadcast form: out[t*ldo + r] (+)= sum over
     * p < k of x[t*ldx + p] · w_r[p], for r < nr, t < nt, the weights packed in pairs
     * (panel[q*nr + r] holds w_r[2q] in its low half, w_r[2q+1] in its high half); k even
     * (NULL: the CPU has no bf16 dot product). Used for BF16 weights, quantized ones the integer
     * kernel does not take, and F16 with SPECPREFILL_F16=bf16. */
    void (*gemm_bf16)(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int nt, int k, float *out, int64_t ldo,
                      bool accumulate);
    void (*f32_to_bf16)(const float *src, uint16_t *dst, int64_t n);
    /* binary16 to bf16 (through f32, rounded as f32_to_bf16); dst may be src. Set wherever
     * gemm_bf16 is. */
    void (*f16_to_bf16)(const uint16_t *src, uint16_t *dst, int64_t n);
    /* Prefill with integer dot products: a packed tile (sp_i8_tile_pack) times nt tokens,
     * out[t*ldo + r] for r < nr (NULL: the CPU has no fast int8 dot product). The type's
     * codes_group, codes_max and codes_offset (> 0: the tile's mins are not read; x->osum starts
     * each group's integer sum). */
    void (*gemm_i8)(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt, int64_t k,
                    float *out, int64_t ldo);
    /* Product for attention: c[i][j] (+)= sum_p a[i*sai + p*sap] * b[p][j], i < m, j < n, p < k
     * (accumulate: add to c, else overwrite; b and c row-major). Broadcast form: no horizontal
     * sums, so it stays fast at attention's short inner dimensions (a head, a tile of keys); A's two
     * strides let it read a transposed matrix as it is. */
    void (*gemm_nn)(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc, int m, int n,
                    int k, bool accumulate);
    /* The columns gemm_nn takes at a time where b has many (AVX2 16, AVX-512 64; 0: any): the
     * f32 prefill panel is laid out in strips this wide, each contiguous — a strip of 16 columns
     * of a 64-column panel reads 64 bytes every 256, 16 lines to an L1 set, more than its ways
     * (1B F16 pp512, AVX2, Zen 3: +4–7 %). */
    int panel_strip;
    /* One step of the online softmax over a tile of keys, for n_rows query rows at once: s is
     * [n_keys][ld] (scores of key c for row r at s[c*ld + r]); row r sees keys c < live[r]. Updates
     * the running max m[r] and sum l[r], turns s into probabilities under the new max (0 where not
     * seen) and returns in corr[r] the factor that rescales what was accumulated before. */
    void (*softmax_tile)(float *s, int64_t ld, int n_keys, int n_rows, const int *live, float *m, float *l, float *corr);
    /* Decode attention straight from the KV cache, for a few query rows: key or value c at
     * cache + c·stride elements (f16, or f32 when !f16), hd values each.
     * attn_scores: s[r*lds + c] = q_r · k_c (q_r at q + r·hd) for r < n_rows, c < n_keys;
     * attn_values: acc[r*hd + d] += the sum over c < n_keys, in key order, of p[r*ldp + c] · v_c[d].
     * Each result is a sum in an order of its own, never across rows or keys, so a row's
     * results do not depend on the other rows or on n_keys: a decoded token is bit for bit the
     * same alone or in a batch. */
    void (*attn_scores)(const float *q, int n_rows, int hd, const void *k, bool f16, int64_t stride, int n_keys, float *s,
                        int64_t lds);
    void (*attn_values)(const float *p, int64_t ldp, int n_rows, int hd, const void *v, bool f16, int64_t stride, int n_keys,
                        float *acc);
    /* x[i] = exp(x[i] - shift) for i < n; returns their sum (softmax numerators). */
    float (*exp_shifted)(float *x, int64_t n, float shift);
    /* gate[i] = silu(gate[i]) * up[i] */
    void (*silu_mul)(float *gate, const float *up, int64_t n);
    /* dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols, of 32-bit elements (floats, or
     * pairs of bf16): weights into the prefill panels. */
    void (*transpose32)(const void *src, int64_t lds, int rows, int64_t cols, void *dst, int64_t ldd);
    /* The same of 16-bit floats (binary16, or bf16 where bf16), each widened to f32 on the way:
     * F16 and BF16 rows into the f32 panels in one pass. */
    void (*transpose16_to_f32)(const uint16_t *src, int64_t lds, int rows, int64_t cols, float *dst, int64_t ldd, bool bf16);
    /* The integer tile's transposition: 16 rows of 32 bytes (src_stride apart) to [k/4][row][4]
     * (NULL: byte copies). */
    void (*interleave16)(const uint8_t *src, int64_t src_stride, uint8_t *dst);
    /* sp_quantize_activations (bit-identical in every set). */
    void (*quantize_act)(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum16);
    /* Decode: fused dequantize + dot of one weight row with f32 activations, per type
     * (NULL: dequantize block by block, then dot_f32). */
    float (*dot_row[SP_N_TYPES])(const void *row, const float *x, int64_t n);
    /* Decode of F16/BF16 rows with f32 activations, rows in lockstep: out[t*ldo + r] = row r ·
     * x[t*ldx …] for n_rows ≤ dot_rows_f_rows rows (row_bytes apart) and n_tokens ≤ 2 tokens.
     * Each (row, token) sum has one order whatever the counts: bit for bit the same alone or
     * among others (NULL: dot_row by pieces). Each row asks, into L2, for its line `ahead` bytes
     * on (0: none). */
    void (*dot_rows_f[SP_N_TYPES])(const void *rows, int64_t row_bytes, int n_rows, const float *x, int64_t ldx, int n_tokens,
                                   int64_t n, float *out, int64_t ldo, int64_t ahead);
    int dot_rows_f_rows; /* rows a dot_rows_f call takes: 4, or 8 where the registers hold them */
    /* Decode with integer dot products: the activations quantized once per matmul (NULL: the
     * type has no such kernel here; dot_row is used). */
    float (*dot_row_q8[SP_N_TYPES])(const void *row, const struct sp_q8_act *x, int64_t n);
    /* The same for n_tokens ≤ 4 tokens at once (x[t]; out[t*out_stride]): the row is unpacked
     * once, and each token's result is bit for bit dot_row_q8's (NULL: one token at a time). */
    void (*dot_rows_q8[SP_N_TYPES])(const void *row, const struct sp_q8_act *x, int n_tokens, int64_t n, float *out,
                                    int64_t out_stride);
    /* The same for a group of eight interleaved rows (repack.h): out[t*out_stride + r] for row
     * r < 8 of the group (NULL: the type is not repacked for this set). */
    void (*dot8_rows_q8[SP_N_TYPES])(const void *group, const struct sp_q8_act *x, int n_tokens, int64_t n, float *out,
                                     int64_t out_stride);
    /* The same for two consecutive groups in one pass, the second group_bytes after the first:
     * rows r < 16 (NULL: dot8_rows_q8 for each). Each token's arithmetic its own, as above. */
    void (*dot16_rows_q8[SP_N_TYPES])(const void *group, int64_t group_bytes, const struct sp_q8_act *x, int n_tokens, int64_t n,
                                      float *out, int64_t out_stride);
} sp_isa_kernels;

/* Scalar versions, for ISA files to fall back on: every set fills every field except the ones
 * documented with a NULL meaning (gemm_bf16, gemm_i8, interleave16, the per-type dots). */
void sp_softmax_tile_scalar(float *s, int64_t ld, int n_keys, int n_rows, const int *live, float *m, float *l, float *corr);
void sp_transpose32_scalar(const void *src, int64_t lds, int rows, int64_t cols, void *dst, int64_t ldd);
void sp_transpose16_to_f32_scalar(const uint16_t *src, int64_t lds, int rows, int64_t cols, float *dst, int64_t ldd, bool bf16);
float sp_exp_shifted_scalar(float *x, int64_t n, float shift);
void sp_attn_scores_scalar(const float *q, int n_rows, int hd, const void *k, bool f16, int64_t stride, int n_keys, float *s,
                           int64_t lds);
void sp_attn_values_scalar(const float *p, int64_t ldp, int n_rows, int hd, const void *v, bool f16, int64_t stride, int n_keys,
                           float *acc);
void sp_silu_mul_scalar(float *gate, const float *up, int64_t n);

/* The kernels in use: the CPU's best set, or the one sp_set_kernels chose. */
const sp_isa_kernels *sp_kernels(void);
/* Kernels by name: "scalar", "avx2", "avx512" (the best AVX-512 set: every feature overlay the
 * CPU has), "avx512-nobf16", "avx512-novnni", "avx512-base" (overlays left out, as on CPUs
 * without them); NULL if this CPU or build lacks the base set. */
const sp_isa_kernels *sp_kernels_by_name(const char *name);
/* Switch the kernels in use to a table (tests; sp_set_kernels by name is the public form). */
void sp_kernels_select(const sp_isa_kernels *k);


/* Row r of w in f32 (n_in values), in any layout: the embedding lookup. */
void sp_weight_row(const sp_weight *w, int64_t r, float *dst);

/* Rows of length n: out = x / rms(x) * weight (weight may be NULL) */
void sp_rmsnorm(float *out, const float *x, const float *weight, int n_rows, int n, float eps);

/* Rotary embedding of n_heads heads of head_dim values. freq_factors (n_rot/2 values, or NULL)
 * divide the frequencies (Llama 3). neox: pairs (i, i+n_rot/2), else adjacent pairs (2i, 2i+1). */
typedef struct {
    int n_rot;
    float base;
    float freq_scale; /* position multiplier of linear and YaRN scaling: 1 / factor (1 = none) */
    bool neox;
    const float *freq_factors;
    /* YaRN (Peng et al. 2023), where yarn is set: pairs that turn at least beta_fast times within
     * the training context keep their frequency, those that turn at most beta_slow times are
     * interpolated by freq_scale, a linear ramp between — in the number of turns (by_turns: the
     * paper's definition), or in the pair's index from yarn_lo to yarn_hi (llama.cpp's, for
     * files that declare YaRN). cos and sin are multiplied by yarn_mscale, so every q·k by its
     * square (the attention temperature). */
    bool yarn, yarn_by_turns;
    float yarn_lo, yarn_hi, yarn_mscale;
    float yarn_orig, yarn_beta_fast, yarn_beta_slow;
} sp_rope_params;
/* Turns YaRN on in p (base and n_rot set): positions scaled by 1/factor for a model trained on
 * orig_ctx tokens; beta_fast and beta_slow (32 and 1 as published) are the turns within orig_ctx
 * where the ramp starts and ends; attn_factor multiplies the temperature's 1 + 0.1 ln(factor). */
void sp_rope_set_yarn(sp_rope_params *p, float factor, int orig_ctx, float beta_fast, float beta_slow, float attn_factor,
                      bool by_turns);
/* In two steps, for a batch: the cosines and sines of n positions once (cs: n × n_rot floats,
 * cos and sin of each pair), then any number of rotations (q, k; every layer) with one row. */
void sp_rope_table(const sp_rope_params *p, const int32_t *pos, int n, float *cs);
void sp_rope_apply(float *x, int n_heads, int head_dim, const float *cs_row, const sp_rope_params *p);

void sp_silu_mul(float *gate, const float *up, int64_t n);

/* sp_attention, the causal attention of a batch of queries: specprefill_dev.h */

/*
 * Attention probabilities of a few query rows against cache cells [0, n_keys): for each head,
 * p = softmax(q·k*scale) over those keys, optionally averaged over a window of pool_kernel
 * tokens (≤1: none; edges average only the tokens that exist), then max-accumulated into
 * acc[q][key]. Speculative prefill scores prompt tokens with this; memory is O(n_q × n_keys).
 */
void sp_attention_probs_max(const float *q, int n_q, const void *k_cache, bool kv_f16, int n_keys,
                            int n_head, int n_head_kv, int head_dim, float scale, int pool_kernel,
                            float *acc);

/* In place: x[j] = mean of x over [j - kernel/2, j + kernel/2] ∩ [0, n). tmp holds n+1 doubles. */
void sp_avg_pool_1d(float *x, int n, int kernel, double *tmp);

#endif
