/*
 * Tensor types: one row of traits per ggml type (block size, bytes per block, dequantize,
 * quantize, dot product with f32 activations). Adding a format means adding one row.
 */
#ifndef SP_QUANT_H
#define SP_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "specprefill_dev.h" /* the type ids, sp_row_size, sp_type_from_name */


#define QK_K 256

/* Block layouts, exactly ggml's (the bytes of GGUF files). */

typedef struct { uint16_t d; uint8_t qs[16]; } block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } block_q8_0;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");


/* Eight bytes at a time (SWAR): the codes (quant.c says why) and the tile packer (kernels.c). */
#define SP_EVERY_BYTE(m) (0x0101010101010101ULL * (uint8_t)(m))
static inline uint64_t sp_load8(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void sp_store8(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block's 12 scale bytes. */
static inline void sp_k4_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

typedef struct {
    const char *name;
    int block_size;     /* elements per block */
    size_t type_size;   /* bytes per block */
    /* n is a multiple of block_size */
    void (*dequantize)(const void *src, float *dst, int64_t n);
    void (*quantize)(const float *src, void *dst, int64_t n); /* NULL: cannot write this type */
    float (*dot)(const void *row, const float *x, int64_t n);  /* sum_i row[i] * x[i] */
    /* One block as unsigned codes: value[i] = scale[i/16]*q[i] - min[i/16] (NULL: no integer
     * form; the integer prefill kernels are not used for this type). */
    void (*codes)(const void *block, uint8_t *q, float *scale, float *min);
    int codes_group; /* values sharing one scale and min in `codes`: 32, or 16 (Q6_K) */
    int codes_max;   /* the largest code (15 for 4 bits ... 255 for Q8_0's q + 128) */
    /* > 0: every min is this integer times its scale (value = scale × (code − offset): Q8_0 128,
     * Q4_0 8, Q5_0 16, Q6_K 32), so the kernels subtract offset × (the activations' code sum) in
     * the integer sum instead of a float min term; 0: the mins are floats of their own */
    int codes_offset;
} sp_type_traits;

/* NULL for a type the engine does not support. */
const sp_type_traits *sp_type_traits_get(uint32_t type);
/* Name of any ggml type id, supported or not ("unknown" otherwise). */
const char *sp_type_name(uint32_t type);

#endif
