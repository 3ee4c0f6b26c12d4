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
 * Q8_0, 272 bytes a block (8 × 34):
 *   8 fp16 scales, row 0's to row 7's;
 *   8 chunks of 32 bytes, chunk q's bytes 4r … 4r+3 being row r's signed codes qs[4q … 4q+3].
 * Q4_K, 1184 bytes a block (8 × 148: 32 more than 8 × 144, for scales a kernel loads as they are):
 *   8 fp16 d, then 8 fp16 dmin;
 *   the six-bit scales as bytes, [sub-block j][row r] (64), then the mins likewise (64);
 *   for each 64 values c = 0..3, 8 chunks of 32 bytes: chunk (c, q)'s bytes 4r … 4r+3 are row r's
 *   qs[32c + 4q …] — low nibbles values 32c·2 + 4q … of sub-block 2c, high nibbles sub-block 2c+1.
 * Q5_K, 1440 bytes a block (8 × 180: 32 more than 8 × 176):
 *   Q4_K's group block of the same d, dmin, scales and nibbles (1184 bytes);
 *   8 chunks of qh: chunk q's bytes 4r … 4r+3 are row r's qh[4q …], whose bit j is the fifth bit
 *   of value 4q … of sub-block j.
 * Q6_K, 1680 bytes a block (8 × 210, the same bytes):
 *   8 fp16 d;
 *   the signed scales (one per 16 values) by pairs p = 0..7 — scales 2p and 2p+1, the two halves
 *   of values 32p … 32p+31 — bytes 2r, 2r+1 of pair p being row r's (128 bytes);
 *   for each half h of 128 values, its quarters k = 0, 1, 2 (values 128h + 32k …) in 8 chunks each:
 *   chunk (h, k, q)'s bytes 4r … 4r+3 hold row r's six-bit codes of values 128h + 32k + 4q …, and
 *   in their top two bits, bits 2k and 2k+1 of the codes of quarter 3 (values 128h + 96 + 4q …):
 *   three quarters' codes come out with one mask, the fourth's with three shifts.
 */
#include "repack.h"

#include <string.h>

#include "quant.h"

_Static_assert(SP_ROWS8_Q4_0_BYTES == SP_ROWS8 * sizeof(block_q4_0) && SP_ROWS8_Q4_0_QS + 4 * 32 == SP_ROWS8_Q4_0_BYTES, "Q4_0 group block");
_Static_assert(SP_ROWS8_Q8_0_BYTES == SP_ROWS8 * sizeof(block_q8_0) && SP_ROWS8_Q8_0_QS + 8 * 32 == SP_ROWS8_Q8_0_BYTES, "Q8_0 group block");
_Static_assert(SP_ROWS8_Q4_K_BYTES == SP_ROWS8 * sizeof(block_q4_K) + 32 && SP_ROWS8_Q4_K_QS + 32 * 32 == SP_ROWS8_Q4_K_BYTES,
               "Q4_K group block");
_Static_assert(SP_ROWS8_Q5_K_BYTES == SP_ROWS8 * sizeof(block_q5_K) + 32 && SP_ROWS8_Q5_K_QH == SP_ROWS8_Q4_K_BYTES &&
                   SP_ROWS8_Q5_K_QH + 8 * 32 == SP_ROWS8_Q5_K_BYTES,
               "Q5_K group block");
_Static_assert(SP_ROWS8_Q6_K_BYTES == SP_ROWS8 * sizeof(block_q6_K) && SP_ROWS8_Q6_K_QS == SP_ROWS8_Q6_K_SCALES + 8 * 16 &&
                   SP_ROWS8_Q6_K_QS + 2 * 3 * 8 * 32 == SP_ROWS8_Q6_K_BYTES,
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

static void q8_0_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    const uint8_t *qs[SP_ROWS8];
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q8_0 *b = blocks[r];
        memcpy(out + 2 * r, &b->d, 2);
        qs[r] = (const uint8_t *)b->qs;
    }
    for (int q = 0; q < 8; q++) chunk_in(out + SP_ROWS8_Q8_0_QS + 32 * q, qs, 4 * q);
}
static void q8_0_unpack(const uint8_t *in, int r, void *dst) {
    block_q8_0 *b = dst;
    memcpy(&b->d, in + 2 * r, 2);
    for (int q = 0; q < 8; q++) memcpy(b->qs + 4 * q, in + SP_ROWS8_Q8_0_QS + 32 * q + 4 * r, 4);
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

/* Q5_K: its d, dmin, scales and nibbles as Q4_K's group, then its fifth bits. */
static void q5_K_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    block_q4_K k4[SP_ROWS8];
    const void *as_k4[SP_ROWS8];
    const uint8_t *qh[SP_ROWS8];
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q5_K *b = blocks[r];
        k4[r].d = b->d;
        k4[r].dmin = b->dmin;
        memcpy(k4[r].scales, b->scales, sizeof b->scales);
        memcpy(k4[r].qs, b->qs, sizeof b->qs);
        as_k4[r] = &k4[r];
        qh[r] = b->qh;
    }
    q4_K_pack(as_k4, out);
    for (int q = 0; q < 8; q++) chunk_in(out + SP_ROWS8_Q5_K_QH + 32 * q, qh, 4 * q);
}
static void q5_K_unpack(const uint8_t *in, int r, void *dst) {
    block_q5_K *b = dst;
    block_q4_K k4;
    q4_K_unpack(in, r, &k4);
    b->d = k4.d;
    b->dmin = k4.dmin;
    memcpy(b->scales, k4.scales, sizeof b->scales);
    memcpy(b->qs, k4.qs, sizeof b->qs);
    for (int q = 0; q < 8; q++) memcpy(b->qh + 4 * q, in + SP_ROWS8_Q5_K_QH + 32 * q + 4 * r, 4);
}

/* Q6_K's codes four values at a time, as 32-bit words (bytes: values l … l+3 of a half's
 * quarters): ql's two words hold quarters 0 and 2, 1 and 3 in their nibbles, qh's word the top
 * bits of all four; a group's three words hold quarters 0, 1, 2 whole and quarter 3's bits two
 * by two in their top bits. */
#define BYTES(x) (0x01010101u * (x))
static void q6_K_words_in(const uint8_t *ql, const uint8_t *qh, uint32_t w[3]) {
    uint32_t l0, l1, h;
    memcpy(&l0, ql, 4);
    memcpy(&l1, ql + 32, 4);
    memcpy(&h, qh, 4);
    const uint32_t k0 = (l0 & BYTES(15)) | (h & BYTES(3)) << 4, k1 = (l1 & BYTES(15)) | (h >> 2 & BYTES(3)) << 4;
    const uint32_t k2 = (l0 >> 4 & BYTES(15)) | (h >> 4 & BYTES(3)) << 4, k3 = (l1 >> 4 & BYTES(15)) | (h >> 6 & BYTES(3)) << 4;
    w[0] = k0 | (k3 & BYTES(3)) << 6;
    w[1] = k1 | (k3 >> 2 & BYTES(3)) << 6;
    w[2] = k2 | (k3 >> 4 & BYTES(3)) << 6;
}
static void q6_K_words_out(const uint32_t w[3], uint8_t *ql, uint8_t *qh) {
    const uint32_t k0 = w[0] & BYTES(63), k1 = w[1] & BYTES(63), k2 = w[2] & BYTES(63);
    const uint32_t k3 = (w[0] >> 6 & BYTES(3)) | (w[1] >> 4 & BYTES(12)) | (w[2] >> 2 & BYTES(48));
    const uint32_t l0 = (k0 & BYTES(15)) | (k2 & BYTES(15)) << 4, l1 = (k1 & BYTES(15)) | (k3 & BYTES(15)) << 4;
    const uint32_t h = (k0 >> 4 & BYTES(3)) | (k1 >> 4 & BYTES(3)) << 2 | (k2 >> 4 & BYTES(3)) << 4 | (k3 >> 4 & BYTES(3)) << 6;
    memcpy(ql, &l0, 4);
    memcpy(ql + 32, &l1, 4);
    memcpy(qh, &h, 4);
}

static void q6_K_pack(const void *const blocks[SP_ROWS8], uint8_t *out) {
    for (int r = 0; r < SP_ROWS8; r++) {
        const block_q6_K *b = blocks[r];
        memcpy(out + 2 * r, &b->d, 2);
        for (int p = 0; p < 8; p++) memcpy(out + SP_ROWS8_Q6_K_SCALES + 16 * p + 2 * r, &b->scales[2 * p], 2);
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 8; q++) {
                uint32_t w[3];
                q6_K_words_in(b->ql + 64 * h + 4 * q, b->qh + 32 * h + 4 * q, w);
                for (int k = 0; k < 3; k++) memcpy(out + SP_ROWS8_Q6_K_QS + 768 * h + 256 * k + 32 * q + 4 * r, &w[k], 4);
            }
    }
}
static void q6_K_unpack(const uint8_t *in, int r, void *dst) {
    block_q6_K *b = dst;
    memcpy(&b->d, in + 2 * r, 2);
    for (int p = 0; p < 8; p++) memcpy(&b->scales[2 * p], in + SP_ROWS8_Q6_K_SCALES + 16 * p + 2 * r, 2);
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 8; q++) {
            uint32_t w[3];
            for (int k = 0; k < 3; k++) memcpy(&w[k], in + SP_ROWS8_Q6_K_QS + 768 * h + 256 * k + 32 * q + 4 * r, 4);
            q6_K_words_out(w, b->ql + 64 * h + 4 * q, b->qh + 32 * h + 4 * q);
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
    {SP_TYPE_Q8_0, SP_ROWS8_Q8_0_BYTES, sizeof(block_q8_0), q8_0_pack, q8_0_unpack},
    {SP_TYPE_Q4_K, SP_ROWS8_Q4_K_BYTES, sizeof(block_q4_K), q4_K_pack, q4_K_unpack},
    {SP_TYPE_Q5_K, SP_ROWS8_Q5_K_BYTES, sizeof(block_q5_K), q5_K_pack, q5_K_unpack},
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
