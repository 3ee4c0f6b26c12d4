/* The model's internals, shared by the library's modules (not part of the public API). */
#ifndef SP_MODEL_H
#define SP_MODEL_H

#include "gguf.h"
#include "kernels.h"
#include "specprefill.h"

typedef struct sp_vocab sp_vocab;

typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3 } sp_arch;

typedef struct {
    const float *attn_norm, *ffn_norm;
    const float *q_norm, *k_norm;   /* qwen3 */
    const float *bq, *bk, *bv;      /* qwen2 */
    sp_weight wq, wk, wv, wo;
    sp_weight gate, up, down;
} sp_layer;

struct sp_model {
    sp_gguf_file *gguf;
    sp_model_info info;
    sp_arch arch;
    bool has_weights;          /* false for vocab-only files */
    sp_weight tok_embd, output;
    const float *output_norm;
    sp_rope_params rope;
    sp_layer *layers;
    float *owned;              /* 1-D tensors converted to F32 at load */
    void *repacked;            /* the matrices rewritten at load (sp_model_params.repack), an anonymous mapping */
    size_t repacked_size;
    sp_vocab *vocab;
    char *chat_template;       /* tokenizer.chat_template, NUL-terminated, or NULL */
};

struct sp_context {
    const sp_model *model;
    int n_ctx, n_batch;
    sp_kv_type kv_type;
    size_t kv_elem;            /* bytes per cached value */
    uint8_t *k_cache, *v_cache; /* [n_layer][n_ctx][kv_dim] */
    int32_t *cell_pos;         /* position id of each cached token */
    sp_token *cell_tok;        /* and its token: what a later prompt may reuse */
    int n_cached;
    int kv_layers;             /* layers whose K/V the cells hold (self-speculation fills only its first) */
    sp_status (*runner)(void *user, sp_pass *pass); /* runs this context's passes (sp_context_set_runner) */
    void *runner_user;
    /* scratch, sized for n_batch tokens */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *logit_in;
    sp_rope_params rope;       /* the model's, with this context's scaling (sp_context_params) */
    sp_rope_scaling rope_scaling;
    float rope_factor;
    bool rope_auto;            /* sp_context_fit_rope sets the scaling of each sequence */
    int rope_orig_ctx;         /* the length the model was trained on */
    float *rope_cs; /* the batch's RoPE cosines and sines, [n_batch][n_rot] */
    int *n_visible;            /* per batch row: cache cells it attends to (its own cell + 1) */
    sp_context **row_seq;      /* n_batch pointers to this context: sp_decode's rows' sequence */
    /* the last layer's rows that go on past their K and V (those whose logits are asked for):
     * a batch row's place among them (-1: none), and their sequences in that order */
    int *out_row;
    sp_context **out_seq;
};

/* Optional extras of a forward pass. */
typedef struct {
    int n_layers;         /* run only the first n_layers (0 = all): self-speculation */
    /* Speculative-prefill scoring: for every row of this batch, the attention probabilities
     * against cache cells [0, score_n_keys), pooled, max over layers × heads, are
     * max-accumulated into score_acc[row][key]. */
    int score_n_keys;
    int score_pool_kernel;
    float *score_acc;
} sp_forward_opts;

/* One context's forward pass, waiting for its runner (sp_context_set_runner); the call that
 * made it owns it. */
struct sp_pass {
    sp_context *ctx;
    const sp_token *tokens;
    const int32_t *positions;
    int n;
    const int32_t *rows;      /* logits for these rows of the pass, into logits[0..n_rows) */
    int n_rows;
    float *logits;
    const sp_forward_opts *opts;
    bool ran;
};

sp_status sp_forward(sp_context *ctx, const sp_token *tokens, const int32_t *positions, int n,
                     const int32_t *logit_rows, int n_logit_rows, float *logits_out, const sp_forward_opts *opts);

/* tokenizer.c */
sp_status sp_vocab_load(const sp_gguf_file *f, sp_vocab **out);
void sp_vocab_free(sp_vocab *v);
int sp_vocab_size(const sp_vocab *v);
/* The token's text as stored (for byte-level BPE: GPT-2's byte-to-unicode form). */
const char *sp_vocab_text(const sp_vocab *v, sp_token id, int *len);

/* chat.c: a template's family by its markup */
const char *sp_chat_detect_text(const char *template_text);

#endif
