/*
 * The interleaved layouts (repack.h). Q4_0, per block index i, 144 bytes:
 *   8 fp16 scales, row 0's to row 7's;
 *   4 chunks of 32 bytes, chunk j's bytes 4r … 4r+3 being row r's qs[4j … 4j+3]
 * — a byte's low nibble is value 4j+b of the block, its high nibble value 16+4j+b, so chunk j
 * masked is values 4j … 4j+3 of every row and shifted values 16+4j …: each against the same four
 * activation codes, broadcast (kernels_q8_blocks.h).
 */
#include "repack.h"

#include <string.h>

#include "quant.h"

bool sp_rows8_has_layout(uint32_t type) { return type == SP_TYPE_Q4_0; }

void sp_rows8_pack(uint32_t type, const void *rows, int64_t row_bytes, int64_t n_blocks, void *dst) {
    (void)type; /* Q4_0, the one layout */
    uint8_t *out = dst;
    for (int64_t i = 0; i < n_blocks; i++, out += SP_ROWS8 * sizeof(block_q4_0)) {
        for (int r = 0; r < SP_ROWS8; r++) {
            const block_q4_0 *b = (const block_q4_0 *)((const uint8_t *)rows + r * row_bytes) + i;
            memcpy(out + 2 * r, &b->d, 2);
            for (int j = 0; j < 4; j++) memcpy(out + 16 + 32 * j + 4 * r, b->qs + 4 * j, 4);
        }
    }
}

void sp_rows8_unpack(uint32_t type, const void *group, int row, int64_t b0, int64_t nb, void *dst) {
    (void)type;
    const uint8_t *in = (const uint8_t *)group + b0 * SP_ROWS8 * sizeof(block_q4_0);
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, in += SP_ROWS8 * sizeof(block_q4_0)) {
        memcpy(&b[i].d, in + 2 * row, 2);
        for (int j = 0; j < 4; j++) memcpy(b[i].qs + 4 * j, in + 16 + 32 * j + 4 * row, 4);
    }
}
