/*
 * The developer interface: what the project's developer commands (make-model, convert, quantize,
 * bench --gemm and --attention) use beyond the public API — tensor types, quantization, the matrix
 * product, attention, the GGUF writer. Unstable: no compatibility promise between versions, not
 * installed, not exported from the shared library. The library declares these here once; its
 * internal headers include this one.
 */
#ifndef SPECPREFILL_DEV_H
#define SPECPREFILL_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "specprefill.h"

/* ---------------------------------------------------------------- tensor types */

/* ggml type ids as stored in GGUF */
enum sp_ggml_type {
    SP_TYPE_F32 = 0, SP_TYPE_F16 = 1, SP_TYPE_Q4_0 = 2, SP_TYPE_Q4_1 = 3, SP_TYPE_Q5_0 = 6,
    SP_TYPE_Q5_1 = 7, SP_TYPE_Q8_0 = 8, SP_TYPE_Q8_1 = 9, SP_TYPE_Q2_K = 10, SP_TYPE_Q3_K = 11,
    SP_TYPE_Q4_K = 12, SP_TYPE_Q5_K = 13, SP_TYPE_Q6_K = 14, SP_TYPE_Q8_K = 15, SP_TYPE_BF16 = 30,
    SP_TYPE_COUNT = SP_N_TENSOR_TYPES
};

/* Parses "q4_k", "F16"… (case-insensitive); -1 if unknown. */
int sp_type_from_name(const char *name);
/* Bytes of a row of n elements. */
size_t sp_row_size(uint32_t type, int64_t n);
/* Writes n_rows rows of row_len floats in `type`; false if the engine cannot write the type or
 * row_len is not a whole number of its blocks. */
bool sp_quantize_rows(uint32_t type, const float *src, void *dst, int64_t n_rows, int64_t row_len);

/* ---------------------------------------------------------------- the matrix product */

/* A weight matrix: n_out rows of n_in elements, row-major, in any supported type. */
typedef struct {
    const void *data;
    uint32_t type;
    int64_t n_in, n_out;
    int64_t row_bytes;
    bool interleaved; /* rows in groups of 8, block by block (sp_model_params.repack); else one after another */
} sp_weight;

/* out[t][r] = sum_i x[t][i] · w[r][i] for n_tokens rows of activations: the forward pass's matmul,
 * on the kernel set in use and the worker pool. Up to SP_MATMUL_DECODE_TOKENS tokens it is a
 * decode: each weight row is read once and dotted with every token as a lone token would be (bit
 * for bit), which is what lets a pass hold several streams' steps without changing any of them;
 * past it the tiled GEMM forms, faster for many tokens, round differently. */
#define SP_MATMUL_DECODE_TOKENS 4
void sp_matmul(const sp_weight *w, const float *x, int n_tokens, float *out);
/* The same in the decode form for any number of tokens: each token's row of out bit for bit what
 * it gets alone (the weights still read from memory once for all of them) — the products of a
 * step that holds several streams' next tokens, so that none depends on what it shares the step
 * with. */
void sp_matmul_each(const sp_weight *w, const float *x, int n_tokens, float *out);
/* out[i] = sp_matmul_each(w[i], x, …) for n_w ≤ SP_MATMUL_GROUP_MOST weights of one n_in, as one
 * job of the worker pool (the layer's q, k and v; gate and up): one end to wait for, not n_w. */
#define SP_MATMUL_GROUP_MOST 4
void sp_matmul_each_group(int n_w, const sp_weight *const *w, const float *x, int n_tokens, float *const *out);

/* ---------------------------------------------------------------- attention */

/*
 * Causal attention for a batch of n_q queries against a KV cache (the forward pass's, past the
 * decode form's SP_MATMUL_DECODE_TOKENS rows; bench --attention times it alone).
 * q: [n_q][n_head*head_dim]; out: same shape. K and V caches: [n_cells][n_head_kv*head_dim] in
 * F16 (kv_f16) or F32. Query i sees cells [0, n_visible[i]) — its causal limit.
 */
typedef struct {
    const float *q;
    float *out;
    int n_q;
    const void *k_cache, *v_cache;
    bool kv_f16;
    const int *n_visible; /* per query: how many cache cells it sees */
    int n_head, n_head_kv, head_dim;
    float scale;
} sp_attention_args;
void sp_attention(const sp_attention_args *a);

/* ---------------------------------------------------------------- quantization plans */

/* Which type each tensor gets under a target type or llama.cpp-style mix (Q4_K_M, Q5_K_M). */
typedef struct {
    int base;     /* ggml type of most matrices */
    int more;     /* type of the sensitive ones (output, some attn_v / ffn_down), -1 = base */
    char name[16];
} sp_quant_plan;

/* Parses "Q4_K_M", "q8_0", "F16"…; false for an unknown or unwritable type. */
bool sp_quant_plan_parse(const char *name, sp_quant_plan *plan);
/* The type for a tensor of `n_dims` with rows of `row_len` elements: 1-D tensors stay F32;
 * rows that do not fit the type's blocks fall back to Q8_0 or F16. tied: the model has no
 * output.weight, so token_embd is the output matrix. */
int sp_quant_type_for(const sp_quant_plan *plan, const char *tensor, int n_dims, long row_len, int n_layer, bool tied);
/* The plan's general.file_type in llama.cpp's numbering (llama_ftype: MOSTLY_Q8_0 = 7, ...). */
uint32_t sp_quant_plan_file_type(const sp_quant_plan *plan);
/* Rewrites `in` with every tensor converted per `plan`. Progress on stderr when it is a TTY. */
sp_status sp_quantize_file(const char *in, const char *out, const sp_quant_plan *plan);

/* ---------------------------------------------------------------- GGUF writer */

/* A GGUF (version 3) writer: metadata is serialized as it is added; tensor data is written at
 * the end, either from a caller's buffer or produced on demand by a fill callback, so a
 * multi-gigabyte model never has to sit in memory whole. */
typedef struct sp_gguf_writer sp_gguf_writer;
/* Fills tensor `index`'s n_bytes of data into dst. */
typedef sp_status (*sp_gguf_fill_fn)(void *ctx, int index, void *dst, uint64_t n_bytes);

sp_gguf_writer *sp_gguf_writer_new(void);
void sp_gguf_writer_free(sp_gguf_writer *w);

void sp_gguf_writer_u32(sp_gguf_writer *w, const char *key, uint32_t v);
void sp_gguf_writer_i32(sp_gguf_writer *w, const char *key, int32_t v);
void sp_gguf_writer_f32(sp_gguf_writer *w, const char *key, float v);
void sp_gguf_writer_bool(sp_gguf_writer *w, const char *key, bool v);
void sp_gguf_writer_str(sp_gguf_writer *w, const char *key, const char *v);
void sp_gguf_writer_str_array(sp_gguf_writer *w, const char *key, const char *const *v, const int *lens, uint64_t n);
void sp_gguf_writer_i32_array(sp_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void sp_gguf_writer_f32_array(sp_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Copies every key whose name begins with prefix from the GGUF file at path (any type). */
sp_status sp_gguf_writer_copy_keys(sp_gguf_writer *w, const char *path, const char *prefix);

/* data may be NULL when a fill callback is set. Returns the tensor's index. */
int sp_gguf_writer_tensor(sp_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, const void *data);
void sp_gguf_writer_set_fill(sp_gguf_writer *w, sp_gguf_fill_fn fill, void *ctx);

sp_status sp_gguf_writer_write(sp_gguf_writer *w, const char *path);

#endif
