/* Model quantization: which type each tensor gets under a target type or llama.cpp-style mix
 * (Q4_K_M, Q5_K_M), and rewriting a whole GGUF file. Shared by `quantize` and `make-model`. */
#ifndef SP_QUANTIZE_H
#define SP_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "specprefill.h"

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

#endif
