/*
 * The interleaved layouts (repack.h), one row of a table per type: the bytes of one block of
 * eight rows, and how eight blocks go in and one comes back out. A byte of 4-bit codes holds
 * value k of its 32 (or 64) in the low nibble and value k + 16 (k + 32) in the high one; the
 * layouts keep that, and put four bytes of each row side by side — chunk bytes 4r … 4r+3 are
 * row r's — so that a chunk masked holds four values of every row and shifted four others,
 * each against the same four activation codes broadcast (kernels_q8_blocks.h).
 *
 * Q4_0, 144 bytes a block (8 × 18):
 *   8 fp16 scales, row 0's to row 7's;
 *   4 chunks of 32 bytes, chunk q's bytes 4r … 4r+3 being row r's qs[4q … 4q+3].
 * Q4_K, 1184 bytes a block (8 × 148: 32 more than 8 × 144, for scales a kernel loads as they are):
 *   8 fp16 d, then 8 fp16 dmin;
 *   the six-bit scales as bytes, [sub-block j][row r] (64), then the mins likewise (64);
 *   for each 64 values c = 0..3, 8 chunks of 32 bytes: chunk (c, q)'s bytes 4r … 4r+3 are row r's
 *   qs[32c + 4q …] — low nibbles values 32c·2 + 4q … of sub-block 2c, high nibbles sub-block 2c+1.
 * Q6_K, 1680 bytes a block (8 × 210, the same bytes):
 *   8 fp16 d;
 *   the signed scales (one per 16 values) by pairs p = 0..7 — scales 2p and 2p+1, the two halves
 *   of values 32p … 32p+31 — bytes 2r, 2r+1 of pair p being row r's (128 bytes);
 *   for each half h of 128 values, 16 chunks of ql: chunk (h, q)'s bytes 4r … 4r+3 are row r's
 *   ql[64h + 4q …] (low nibbles values 128h + 4q … for q < 8, 128h + 32 + 4(q−8) … after; high
 *   nibbles 64 values on);
 *   for each half, 8 chunks of qh: chunk (h, q)'s bytes 4r … are row r's qh[32h + 4q …], whose bit
 *   pairs 0, 2, 4, 6 are the top bits of values 128h + 4q …, + 32, + 64, + 96.
 */
#include "repack.h"

#include <string.h>

#include "quant.h"

_Static_assert(SP_ROWS8_Q4_0_BYTES == SP_ROWS8 * sizeof(block_q4_0) && SP_ROWS8_Q4_0_QS + 4 * 32 == SP_ROWS8_Q4_0_BYTES, "Q4_0 group block");
_Static_assert(SP_ROWS8_Q4_K_BYTES == SP_ROWS8 * sizeof(block_q4_K) + 32 && SP_ROWS8_Q4_K_QS + 32 * 32 == SP_ROWS8_Q4_K_BYTES,
               "Q4_K group block");
_Static_assert(SP_ROWS8_Q6_K_BYTES == SP_ROWS8 * sizeof(block_q6_K) && SP_ROWS8_Q6_K_QL == SP_ROWS8_Q6_K_SCALES + 8 * 16 &&
                   SP_ROWS8_Q6_K_QH == SP_ROWS8_Q6_K_QL + 32 * 32 && SP_ROWS8_Q6_K_QH + 16 * 32 == SP_ROWS8_Q6_K_BYTES,
               "Q6_K group block");

/* Four bytes of each of 8 rows' code bytes src[r] + at into chunk (r-th four bytes). */
static void chunk_in(uint8_t *chunk, const uint8_t *const src[SP_ROWS8], int at) {
    for (int r = 0; r < SP_ROWS8; r++) memcpy(chunk + 4 * r, src[r] + at, 4);
}

static void q4_0_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    const uint8_t *qs[SP_ROWS8];
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q4_0 *b = blocks[r];
        memcpy(out + 2 * r, &b->d, 2);
        qs[r] = b->qs;
    }
    for (int q = 0; q < 4; q++) chunk_in(out + SP_ROWS8_Q4_0_QS + 32 * q, qs, 4 * q);
}
static void q4_0_unpack(const uint8_t *in, int r, void *dst) {
    block_q4_0 *b = dst;
    memcpy(&b->d, in + 2 * r, 2);
    for (int q = 0; q < 4; q++) memcpy(b->qs + 4 * q, in + SP_ROWS8_Q4_0_QS + 32 * q + 4 * r, 4);
}

static void q4_K_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    const uint8_t *qs[SP_ROWS8];
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q4_K *b = blocks[r];
        memcpy(out + 2 * r, &b->d, 2);
        memcpy(out + SP_ROWS8_Q4_K_DMIN + 2 * r, &b->dmin, 2);
        for (int j = 0; j < 8; j++)
            sp_k4_scale_min(j, b->scales, &out[SP_ROWS8_Q4_K_SCALES + 8 * j + r], &out[SP_ROWS8_Q4_K_MINS + 8 * j + r]);
        qs[r] = b->qs;
    }
    for (int c = 0; c < 4; c++)
        for (int q = 0; q < 8; q++) chunk_in(out + SP_ROWS8_Q4_K_QS + 256 * c + 32 * q, qs, 32 * c + 4 * q);
}
static void q4_K_unpack(const uint8_t *in, int r, void *dst) {
    block_q4_K *b = dst;
    memcpy(&b->d, in + 2 * r, 2);
    memcpy(&b->dmin, in + SP_ROWS8_Q4_K_DMIN + 2 * r, 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = in[SP_ROWS8_Q4_K_SCALES + 8 * j + r];
        mn[j] = in[SP_ROWS8_Q4_K_MINS + 8 * j + r];
    }
    for (int j = 0; j < 4; j++) { /* sp_k4_scale_min's packing, inverted: the 96 bits hold the 16 values exactly */
        b->scales[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        b->scales[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        b->scales[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
    for (int c = 0; c < 4; c++)
        for (int q = 0; q < 8; q++) memcpy(b->qs + 32 * c + 4 * q, in + SP_ROWS8_Q4_K_QS + 256 * c + 32 * q + 4 * r, 4);
}

static void q6_K_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    const uint8_t *ql[SP_ROWS8], *qh[SP_ROWS8];
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q6_K *b = blocks[r];
        memcpy(out + 2 * r, &b->d, 2);
        for (int p = 0; p < 8; p++) memcpy(out + SP_ROWS8_Q6_K_SCALES + 16 * p + 2 * r, &b->scales[2 * p], 2);
        ql[r] = b->ql;
        qh[r] = b->qh;
    }
    for (int h = 0; h < 2; h++) {
        for (int q = 0; q < 16; q++) chunk_in(out + SP_ROWS8_Q6_K_QL + 512 * h + 32 * q, ql, 64 * h + 4 * q);
        for (int q = 0; q < 8; q++) chunk_in(out + SP_ROWS8_Q6_K_QH + 256 * h + 32 * q, qh, 32 * h + 4 * q);
    }
}
static void q6_K_unpack(const uint8_t *in, int r, void *dst) {
    block_q6_K *b = dst;
    memcpy(&b->d, in + 2 * r, 2);
    for (int p = 0; p < 8; p++) memcpy(&b->scales[2 * p], in + SP_ROWS8_Q6_K_SCALES + 16 * p + 2 * r, 2);
    for (int h = 0; h < 2; h++) {
        for (int q = 0; q < 16; q++) memcpy(b->ql + 64 * h + 4 * q, in + SP_ROWS8_Q6_K_QL + 512 * h + 32 * q + 4 * r, 4);
        for (int q = 0; q < 8; q++) memcpy(b->qh + 32 * h + 4 * q, in + SP_ROWS8_Q6_K_QH + 256 * h + 32 * q + 4 * r, 4);
    }
}

typedef struct {
    uint32_t type;
    size_t bytes;      /* one block of the eight rows */
    size_t block_size; /* the type's own bytes of a block */
    void (*pack)(const void *const blocks[SP_ROWS8], uint8_t *out);
    void (*unpack)(const uint8_t *in, int r, void *dst);
} layout;

static const layout layouts[] = {
    {SP_TYPE_Q4_0, SP_ROWS8_Q4_0_BYTES, sizeof(block_q4_0), q4_0_pack, q4_0_unpack},
    {SP_TYPE_Q4_K, SP_ROWS8_Q4_K_BYTES, sizeof(block_q4_K), q4_K_pack, q4_K_unpack},
    {SP_TYPE_Q6_K, SP_ROWS8_Q6_K_BYTES, sizeof(block_q6_K), q6_K_pack, q6_K_unpack},
};

static const layout *layout_of(uint32_t type) {
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (layouts[i].type == type) return &layouts[i];
    return NULL;
}

bool sp_rows8_has_layout(uint32_t type) { return layout_of(type) != NULL; }

int64_t sp_rows8_row_bytes(uint32_t type, int64_t n_blocks) { return n_blocks * (int64_t)(layout_of(type)->bytes / SP_ROWS8); }

void sp_rows8_pack(uint32_t type, const void *rows, int64_t row_bytes, int64_t n_blocks, void *dst) {
    const layout *l = layout_of(type);
    uint8_t *out = dst;
    for (int64_t i = 0; i < n_blocks; i++, out += l->bytes) {
        const void *blocks[SP_ROWS8];
        for (int r = 0; r < SP_ROWS8; r++) blocks[r] = (const uint8_t *)rows + r * row_bytes + i * (int64_t)l->block_size;
        l->pack(blocks, out);
    }
}

void sp_rows8_unpack(uint32_t type, const void *rows, int64_t row_bytes, int64_t r, int64_t b0, int64_t nb, void *dst) {
    const layout *l = layout_of(type);
    const uint8_t *in = (const uint8_t *)rows + (r - r % SP_ROWS8) * row_bytes + b0 * (int64_t)l->bytes; /* r's group, block b0 */
    for (int64_t i = 0; i < nb; i++, in += l->bytes) l->unpack(in, (int)(r % SP_ROWS8), (uint8_t *)dst + i * (int64_t)l->block_size);
}
