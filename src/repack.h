/*
 * Weights rewritten at load for decode (sp_model_params.repack): a matrix's rows in groups of 8,
 * stored block by block — block i of rows 8g … 8g+7 side by side — so that one vector holds the
 * same values of eight rows and a decode kernel computes eight rows' dots in eight lanes: no
 * horizontal sums, and one scale conversion and multiply-add for eight rows where the row-by-row
 * kernel pays one per row or four blocks (ik_llama.cpp's _R8 layouts, llamafile's repacking).
 * A group of rows of n blocks takes 8 × sp_rows8_row_bytes(type, n) bytes (Q4_0, Q8_0 and Q6_K exactly
 * what their eight rows took; Q4_K and Q5_K 32 bytes more a block, their scales unpacked), so with that as
 * the matrix's row_bytes, group g starts at row 8g's place.
 */
#ifndef SP_REPACK_H
#define SP_REPACK_H

#include <stdbool.h>
#include <stdint.h>

#define SP_ROWS8 8

/* Where things lie in a block of a group (repack.c says what each holds), for the packer and
 * the kernels alike. */
enum {
    SP_ROWS8_Q4_0_QS = 16,    /* after 8 fp16 scales: 4 chunks of 32 bytes */
    SP_ROWS8_Q4_0_BYTES = 144,
    SP_ROWS8_Q8_0_QS = 16,    /* after 8 fp16 scales: 8 chunks of 32 bytes */
    SP_ROWS8_Q8_0_BYTES = 272,
    SP_ROWS8_Q4_K_DMIN = 16,  /* after 8 fp16 d */
    SP_ROWS8_Q4_K_SCALES = 32, /* [sub-block][row] bytes */
    SP_ROWS8_Q4_K_MINS = 96,
    SP_ROWS8_Q4_K_QS = 160,   /* 4 × 8 chunks of 32 bytes */
    SP_ROWS8_Q4_K_BYTES = 1184,
    SP_ROWS8_Q5_K_QH = 1184,  /* Q4_K's block, then 8 chunks of 32 bytes */
    SP_ROWS8_Q5_K_BYTES = 1440,
    SP_ROWS8_Q6_K_SCALES = 16, /* after 8 fp16 d: [pair][row][2] */
    SP_ROWS8_Q6_K_QS = 144,    /* 2 × 3 × 8 chunks of 32 bytes */
    SP_ROWS8_Q6_K_BYTES = 1680,
};

/* Whether `type` has an interleaved layout (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K). */
bool sp_rows8_has_layout(uint32_t type);
/* The bytes a row of n_blocks blocks takes in it: an eighth of its group's. */
int64_t sp_rows8_row_bytes(uint32_t type, int64_t n_blocks);
/* Rows 0..7 (row_bytes apart, n_blocks blocks each) into one interleaved group at dst (which
 * must not overlap them). */
void sp_rows8_pack(uint32_t type, const void *rows, int64_t row_bytes, int64_t n_blocks, void *dst);
/* Blocks [b0, b0 + nb) of row r of an interleaved matrix (rows: its start, row_bytes: a row's
 * interleaved bytes), back in the type's own layout at dst: for the paths that read a row as it
 * was (prefill, the embedding lookup, the kernel sets without an interleaved kernel). */
void sp_rows8_unpack(uint32_t type, const void *rows, int64_t row_bytes, int64_t r, int64_t b0, int64_t nb, void *dst);

#endif
