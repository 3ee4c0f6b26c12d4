/*
 * Tensor types: one row of traits per ggml type (block size, bytes per block, dequantize,
 * quantize, dot product with f32 activations). Adding a format means adding one row.
 */
#ifndef SP_QUANT_H
#define SP_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF */
enum sp_ggml_type {
    SP_TYPE_F32 = 0, SP_TYPE_F16 = 1, SP_TYPE_Q4_0 = 2, SP_TYPE_Q4_1 = 3, SP_TYPE_Q5_0 = 6,
    SP_TYPE_Q5_1 = 7, SP_TYPE_Q8_0 = 8, SP_TYPE_Q8_1 = 9, SP_TYPE_Q2_K = 10, SP_TYPE_Q3_K = 11,
    SP_TYPE_Q4_K = 12, SP_TYPE_Q5_K = 13, SP_TYPE_Q6_K = 14, SP_TYPE_Q8_K = 15, SP_TYPE_BF16 = 30,
    SP_TYPE_COUNT = 40
};

#define QK_K 256

typedef struct {
    const char *name;
    int block_size;     /* elements per block */
    size_t type_size;   /* bytes per block */
    /* n is a multiple of block_size */
    void (*dequantize)(const void *src, float *dst, int64_t n);
    void (*quantize)(const float *src, void *dst, int64_t n); /* NULL: cannot write this type */
    float (*dot)(const void *row, const float *x, int64_t n);  /* sum_i row[i] * x[i] */
} sp_type_traits;

/* NULL for a type the engine does not support. */
const sp_type_traits *sp_type_traits_get(uint32_t type);
/* Name of any ggml type id, supported or not ("unknown" otherwise). */
const char *sp_type_name(uint32_t type);
/* Parses "q4_k", "F16"… (case-insensitive); -1 if unknown. */
int sp_type_from_name(const char *name);
/* Bytes of a row of n elements. */
size_t sp_row_size(uint32_t type, int64_t n);

#endif
