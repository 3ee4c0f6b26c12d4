/*
 * Reference (scalar) implementations of every supported tensor type. The block layouts are
 * ggml's, so GGUF files written by llama.cpp load bit-for-bit. Faster kernels live in
 * kernels*.c; these stay as the definition of each format and the fallback.
 */
#include "quant.h"
#include "specprefill.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#include "fp16.h"

/* ------------------------------------------------------------------ float types */

static void dequantize_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void quantize_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void dequantize_f16(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sp_fp16_to_f32(s[i]);
}
static void quantize_f16(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = sp_f32_to_fp16(src[i]);
}

static void dequantize_bf16(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sp_bf16_to_f32(s[i]);
}
static void quantize_bf16(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = sp_f32_to_bf16(src[i]);
}

/* ------------------------------------------------------------------ 32-element quants */

static void dequantize_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = sp_fp16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            dst[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void quantize_q4_0(const float *src, void *dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(src[j]) > amax) { amax = fabsf(src[j]); max = src[j]; }
        const float d = max / -8, id = d != 0 ? 1.0f / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(src[j] * id + 8.5f), x1 = (int)(src[j + 16] * id + 8.5f);
            x0 = x0 > 15 ? 15 : x0; x1 = x1 > 15 ? 15 : x1;
            b[i].qs[j] = (uint8_t)(x0 | (x1 << 4));
        }
    }
}

static void dequantize_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = sp_fp16_to_f32(b[i].d), m = sp_fp16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (b[i].qs[j] & 0x0F) * d + m;
            dst[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void quantize_q4_1(const float *src, void *dst, int64_t n) {
    block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float min = src[0], max = src[0];
        for (int j = 1; j < 32; j++) { min = fminf(min, src[j]); max = fmaxf(max, src[j]); }
        const float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        b[i].m = sp_f32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            int x0 = (int)((src[j] - min) * id + 0.5f), x1 = (int)((src[j + 16] - min) * id + 0.5f);
            x0 = x0 > 15 ? 15 : x0; x1 = x1 > 15 ? 15 : x1;
            b[i].qs[j] = (uint8_t)(x0 | (x1 << 4));
        }
    }
}

static void dequantize_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = sp_fp16_to_f32(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            dst[j] = (((b[i].qs[j] & 0x0F) | h0) - 16) * d;
            dst[j + 16] = (((b[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void quantize_q5_0(const float *src, void *dst, int64_t n) {
    block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(src[j]) > amax) { amax = fabsf(src[j]); max = src[j]; }
        const float d = max / -16, id = d != 0 ? 1.0f / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int x0 = (int)(src[j] * id + 16.5f), x1 = (int)(src[j + 16] * id + 16.5f);
            x0 = x0 > 31 ? 31 : x0; x1 = x1 > 31 ? 31 : x1;
            b[i].qs[j] = (uint8_t)((x0 & 0x0F) | ((x1 & 0x0F) << 4));
            qh |= (uint32_t)((x0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((x1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b[i].qh, &qh, 4);
    }
}

static void dequantize_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = sp_fp16_to_f32(b[i].d), m = sp_fp16_to_f32(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            dst[j] = ((b[i].qs[j] & 0x0F) | h0) * d + m;
            dst[j + 16] = ((b[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void quantize_q5_1(const float *src, void *dst, int64_t n) {
    block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float min = src[0], max = src[0];
        for (int j = 1; j < 32; j++) { min = fminf(min, src[j]); max = fmaxf(max, src[j]); }
        const float d = (max - min) / 31, id = d != 0 ? 1.0f / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        b[i].m = sp_f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int x0 = (int)((src[j] - min) * id + 0.5f), x1 = (int)((src[j + 16] - min) * id + 0.5f);
            b[i].qs[j] = (uint8_t)((x0 & 0x0F) | ((x1 & 0x0F) << 4));
            qh |= (uint32_t)((x0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((x1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b[i].qh, &qh, 4);
    }
}

static void dequantize_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = sp_fp16_to_f32(b[i].d);
        for (int j = 0; j < 32; j++) dst[j] = b[i].qs[j] * d;
    }
}

static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127, id = d != 0 ? 1.0f / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)roundf(src[j] * id);
    }
}

/* ------------------------------------------------------------------ K-quants (256 per block) */

static void dequantize_q2_K(const void *src, float *dst, int64_t n) {
    const block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d), min = sp_fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    const uint8_t sc = b[i].scales[is++];
                    const float dl = d * (sc & 0x0F), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * ((q[l + 16 * part] >> shift) & 3) - ml;
                }
            }
        }
    }
}

static void dequantize_q3_K(const void *src, float *dst, int64_t n) {
    const block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = sp_fp16_to_f32(b[i].d);
        /* unpack 16 6-bit scales from 12 bytes */
        int8_t scales[16];
        for (int j = 0; j < 16; j++) {
            int low = j < 8 ? (b[i].scales[j] & 0x0F) : (b[i].scales[j - 8] >> 4);
            int high = (b[i].scales[8 + (j % 4)] >> (2 * (j / 4))) & 3;
            scales[j] = (int8_t)((low | (high << 4)) - 32);
        }
        const uint8_t *q = b[i].qs, *hm = b[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int part = 0; part < 2; part++) {
                    const float dl = d_all * scales[is++];
                    for (int l = 0; l < 16; l++) {
                        const int k = l + 16 * part;
                        *dst++ = dl * (((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
                    }
                }
            }
        }
    }
}

static void dequantize_q4_K(const void *src, float *dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d), min = sp_fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t sc, m;
            sp_k4_scale_min(2 * j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sp_k4_scale_min(2 * j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void dequantize_q5_K(const void *src, float *dst, int64_t n) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d), min = sp_fp16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 4; j++, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            sp_k4_scale_min(2 * j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sp_k4_scale_min(2 * j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * ((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void dequantize_q6_K(const void *src, float *dst, int64_t n) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = sp_fp16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * sc[is] * q1;
                dst[l + 32] = d * sc[is + 2] * q2;
                dst[l + 64] = d * sc[is + 4] * q3;
                dst[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* ------------------------------------------------------------------ K-quant writers */

/* Round to nearest, ties away from zero, as an int. */
static inline int nearest_int(float x) { return (int)lrintf(x); }

/* Packs eight 6-bit scales and mins into the 12 bytes Q4_K/Q5_K use (see sp_k4_scale_min). */
static void pack_scales_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
}

/* Asymmetric sub-block quantization shared by Q4_K (nmax 15) and Q5_K (nmax 31): each of the
 * 8 sub-blocks of 32 gets a scale and a min (x ≈ d·sc·q − dmin·m), then the 6-bit codes of
 * those; q is chosen against the codes actually stored. */
static void quantize_k_asym(const float *x, int nmax, float *d_out, float *dmin_out, uint8_t sc[8], uint8_t mn[8], uint8_t *q) {
    float scale[8], minv[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *v = x + 32 * j;
        float lo = v[0], hi = v[0];
        for (int l = 1; l < 32; l++) { lo = fminf(lo, v[l]); hi = fmaxf(hi, v[l]); }
        if (lo > 0) lo = 0; /* the min is stored as a non-negative offset */
        scale[j] = (hi - lo) / nmax;
        minv[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, minv[j]);
    }
    const float d = max_scale / 63, dmin = max_min / 63;
    const float id = d > 0 ? 1 / d : 0, idmin = dmin > 0 ? 1 / dmin : 0;
    for (int j = 0; j < 8; j++) {
        int a = nearest_int(scale[j] * id), b = nearest_int(minv[j] * idmin);
        sc[j] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a);
        mn[j] = (uint8_t)(b < 0 ? 0 : b > 63 ? 63 : b);
        const float ds = d * sc[j], dm = dmin * mn[j];
        for (int l = 0; l < 32; l++) {
            int v = ds > 0 ? nearest_int((x[32 * j + l] + dm) / ds) : 0;
            q[32 * j + l] = (uint8_t)(v < 0 ? 0 : v > nmax ? nmax : v);
        }
    }
    *d_out = d;
    *dmin_out = dmin;
}

static void quantize_q4_K(const float *src, void *dst, int64_t n) {
    block_q4_K *b = dst;
    uint8_t q[QK_K], sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float d, dmin;
        quantize_k_asym(src, 15, &d, &dmin, sc, mn, q);
        b[i].d = sp_f32_to_fp16(d);
        b[i].dmin = sp_f32_to_fp16(dmin);
        pack_scales_k4(sc, mn, b[i].scales);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * j + l] = (uint8_t)(q[64 * j + l] | (q[64 * j + 32 + l] << 4));
    }
}

static void quantize_q5_K(const float *src, void *dst, int64_t n) {
    block_q5_K *b = dst;
    uint8_t q[QK_K], sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float d, dmin;
        quantize_k_asym(src, 31, &d, &dmin, sc, mn, q);
        b[i].d = sp_f32_to_fp16(d);
        b[i].dmin = sp_f32_to_fp16(dmin);
        pack_scales_k4(sc, mn, b[i].scales);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int lo = q[64 * j + l], hi = q[64 * j + 32 + l];
                b[i].qs[32 * j + l] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
                if (lo & 16) b[i].qh[l] |= (uint8_t)(1u << (2 * j));
                if (hi & 16) b[i].qh[l] |= (uint8_t)(2u << (2 * j));
            }
    }
}

/* Q6_K: 16 sub-blocks of 16 with signed 8-bit scales, q ∈ [-32, 31]. */
static void quantize_q6_K(const float *src, void *dst, int64_t n) {
    block_q6_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float scale[16], max_abs_scale = 0, max_scale = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0, vmax = 0;
            for (int l = 0; l < 16; l++)
                if (fabsf(src[16 * j + l]) > amax) { amax = fabsf(src[16 * j + l]); vmax = src[16 * j + l]; }
            scale[j] = vmax / -32; /* the largest magnitude maps to -32, the code with no twin */
            if (fabsf(scale[j]) > max_abs_scale) { max_abs_scale = fabsf(scale[j]); max_scale = scale[j]; }
        }
        const float d = max_scale / -128, id = d != 0 ? 1 / d : 0;
        b[i].d = sp_f32_to_fp16(d);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = nearest_int(scale[j] * id);
            s = s < -128 ? -128 : s > 127 ? 127 : s;
            b[i].scales[j] = (int8_t)s;
            const float ds = d * s;
            for (int l = 0; l < 16; l++) {
                int v = ds != 0 ? nearest_int(src[16 * j + l] / ds) : 0;
                v = v < -32 ? -32 : v > 31 ? 31 : v;
                q[16 * j + l] = (uint8_t)(v + 32);
            }
        }
        for (int half = 0; half < 2; half++) {
            uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
            const uint8_t *v = q + 128 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((v[l] & 0x0F) | ((v[l + 64] & 0x0F) << 4));
                ql[l + 32] = (uint8_t)((v[l + 32] & 0x0F) | ((v[l + 96] & 0x0F) << 4));
                qh[l] = (uint8_t)((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
            }
        }
    }
}

/* ------------------------------------------------------------------ dot products */

static float dot_f32(const void *row, const float *x, int64_t n) {
    const float *w = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sp_fp16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += sp_bf16_to_f32(w[i]) * x[i];
    return s;
}

/* Block-wise: dequantize one block into registers' worth of floats, then multiply. */
#define DEFINE_BLOCK_DOT(name, bs, tsize)                                        \
    static float dot_##name(const void *row, const float *x, int64_t n) {        \
        const uint8_t *p = row;                                                  \
        float tmp[bs];                                                           \
        float s = 0;                                                             \
        for (int64_t i = 0; i < n; i += bs, p += tsize) {                        \
            dequantize_##name(p, tmp, bs);                                       \
            for (int j = 0; j < bs; j++) s += tmp[j] * x[i + j];                 \
        }                                                                        \
        return s;                                                                \
    }
DEFINE_BLOCK_DOT(q4_0, 32, sizeof(block_q4_0))
DEFINE_BLOCK_DOT(q4_1, 32, sizeof(block_q4_1))
DEFINE_BLOCK_DOT(q5_0, 32, sizeof(block_q5_0))
DEFINE_BLOCK_DOT(q5_1, 32, sizeof(block_q5_1))
DEFINE_BLOCK_DOT(q8_0, 32, sizeof(block_q8_0))
DEFINE_BLOCK_DOT(q2_K, QK_K, sizeof(block_q2_K))
DEFINE_BLOCK_DOT(q3_K, QK_K, sizeof(block_q3_K))
DEFINE_BLOCK_DOT(q4_K, QK_K, sizeof(block_q4_K))
DEFINE_BLOCK_DOT(q5_K, QK_K, sizeof(block_q5_K))
DEFINE_BLOCK_DOT(q6_K, QK_K, sizeof(block_q6_K))

/* ------------------------------------------------------------------ integer codes
 * One block as unsigned 8-bit codes with a float scale and min per 16 values, so that
 * value[i] = scale[i/16] * q[i] - min[i/16] exactly (up to float rounding of scale and min).
 * The integer prefill kernels multiply these codes with int8 activations (u8 x s8). */

/* The codes are built 8 bytes at a time (SWAR): byte-wide loops here would also make the tile
 * packer's 4-byte reads stall on store forwarding. */
#define LO_NIBBLES SP_EVERY_BYTE(0x0F)

/* 16 packed bytes → 16 low nibbles, then 16 high nibbles (the 32-block formats' order) */
static inline void split_nibbles16(const uint8_t *qs, uint8_t *q) {
    for (int h = 0; h < 2; h++) {
        const uint64_t v = sp_load8(qs + 8 * h);
        sp_store8(q + 8 * h, v & LO_NIBBLES);
        sp_store8(q + 16 + 8 * h, (v >> 4) & LO_NIBBLES);
    }
}
static void codes_q4_0(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q4_0 *b = src;
    const float d = sp_fp16_to_f32(b->d);
    split_nibbles16(b->qs, q);
    scale[0] = scale[1] = d;
    min[0] = min[1] = 8 * d;
}
static void codes_q4_1(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q4_1 *b = src;
    split_nibbles16(b->qs, q);
    scale[0] = scale[1] = sp_fp16_to_f32(b->d);
    min[0] = min[1] = -sp_fp16_to_f32(b->m);
}
static void codes_q5(const uint8_t *qs, const uint8_t *qh_bytes, uint8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    split_nibbles16(qs, q);
    for (int j = 0; j < 32; j++) q[j] |= (uint8_t)(((qh >> j) & 1) << 4);
}
static void codes_q5_0(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q5_0 *b = src;
    const float d = sp_fp16_to_f32(b->d);
    codes_q5(b->qs, b->qh, q);
    scale[0] = scale[1] = d;
    min[0] = min[1] = 16 * d;
}
static void codes_q5_1(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q5_1 *b = src;
    codes_q5(b->qs, b->qh, q);
    scale[0] = scale[1] = sp_fp16_to_f32(b->d);
    min[0] = min[1] = -sp_fp16_to_f32(b->m);
}
static void codes_q8_0(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q8_0 *b = src;
    const float d = sp_fp16_to_f32(b->d);
    for (int h = 0; h < 4; h++) sp_store8(q + 8 * h, sp_load8((const uint8_t *)b->qs + 8 * h) ^ SP_EVERY_BYTE(0x80)); /* w + 128 */
    scale[0] = scale[1] = d;
    min[0] = min[1] = 128 * d;
}
/* Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins; Q5_K adds a fifth bit (qh). */
static void codes_k4(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs_all, const uint8_t *qh,
                     uint8_t *q, float *scale, float *min) {
    const float d = sp_fp16_to_f32(d16), dmin = sp_fp16_to_f32(dmin16);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        sp_k4_scale_min(j, scales, &sc, &m);
        scale[2 * j] = scale[2 * j + 1] = d * sc;
        min[2 * j] = min[2 * j + 1] = dmin * m;
    }
    /* sub-blocks 2p and 2p+1 are the low and high nibbles of the same 32 bytes: each read once */
    for (int p = 0; p < 4; p++)
        for (int h = 0; h < 4; h++) {
            const uint64_t v = sp_load8(qs_all + 32 * p + 8 * h);
            uint64_t lo = v & LO_NIBBLES, hi = (v >> 4) & LO_NIBBLES;
            if (qh) {
                const uint64_t b = sp_load8(qh + 8 * h);
                lo |= ((b >> (2 * p)) & SP_EVERY_BYTE(1)) << 4;
                hi |= ((b >> (2 * p + 1)) & SP_EVERY_BYTE(1)) << 4;
            }
            sp_store8(q + 64 * p + 8 * h, lo);
            sp_store8(q + 64 * p + 32 + 8 * h, hi);
        }
}
static void codes_q4_K(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q4_K *b = src;
    codes_k4(b->d, b->dmin, b->scales, b->qs, NULL, q, scale, min);
}
static void codes_q5_K(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q5_K *b = src;
    codes_k4(b->d, b->dmin, b->scales, b->qs, b->qh, q, scale, min);
}
static void codes_q6_K(const void *src, uint8_t *q, float *scale, float *min) {
    const block_q6_K *b = src;
    const float d = sp_fp16_to_f32(b->d);
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        uint8_t *o = q + 128 * half;
        for (int h = 0; h < 4; h++) {
            const uint64_t l0 = sp_load8(ql + 8 * h), l1 = sp_load8(ql + 32 + 8 * h), hi = sp_load8(qh + 8 * h);
            sp_store8(o + 8 * h, (l0 & LO_NIBBLES) | ((hi & SP_EVERY_BYTE(3)) << 4));
            sp_store8(o + 32 + 8 * h, (l1 & LO_NIBBLES) | (((hi >> 2) & SP_EVERY_BYTE(3)) << 4));
            sp_store8(o + 64 + 8 * h, ((l0 >> 4) & LO_NIBBLES) | (((hi >> 4) & SP_EVERY_BYTE(3)) << 4));
            sp_store8(o + 96 + 8 * h, ((l1 >> 4) & LO_NIBBLES) | (((hi >> 6) & SP_EVERY_BYTE(3)) << 4));
        }
    }
    for (int j = 0; j < 16; j++) {
        scale[j] = d * b->scales[j];
        min[j] = 32 * scale[j];
    }
}

/* ------------------------------------------------------------------ the table */

static const sp_type_traits traits[SP_TYPE_COUNT] = {
    [SP_TYPE_F32]  = {"F32", 1, 4, dequantize_f32, quantize_f32, dot_f32, NULL, 0, 0, 0},
    [SP_TYPE_F16]  = {"F16", 1, 2, dequantize_f16, quantize_f16, dot_f16, NULL, 0, 0, 0},
    [SP_TYPE_BF16] = {"BF16", 1, 2, dequantize_bf16, quantize_bf16, dot_bf16, NULL, 0, 0, 0},
    [SP_TYPE_Q4_0] = {"Q4_0", 32, sizeof(block_q4_0), dequantize_q4_0, quantize_q4_0, dot_q4_0, codes_q4_0, 32, 15, 8},
    [SP_TYPE_Q4_1] = {"Q4_1", 32, sizeof(block_q4_1), dequantize_q4_1, quantize_q4_1, dot_q4_1, codes_q4_1, 32, 15, 0},
    [SP_TYPE_Q5_0] = {"Q5_0", 32, sizeof(block_q5_0), dequantize_q5_0, quantize_q5_0, dot_q5_0, codes_q5_0, 32, 31, 16},
    [SP_TYPE_Q5_1] = {"Q5_1", 32, sizeof(block_q5_1), dequantize_q5_1, quantize_q5_1, dot_q5_1, codes_q5_1, 32, 31, 0},
    [SP_TYPE_Q8_0] = {"Q8_0", 32, sizeof(block_q8_0), dequantize_q8_0, quantize_q8_0, dot_q8_0, codes_q8_0, 32, 255, 128},
    [SP_TYPE_Q2_K] = {"Q2_K", QK_K, sizeof(block_q2_K), dequantize_q2_K, NULL, dot_q2_K, NULL, 0, 0, 0},
    [SP_TYPE_Q3_K] = {"Q3_K", QK_K, sizeof(block_q3_K), dequantize_q3_K, NULL, dot_q3_K, NULL, 0, 0, 0},
    [SP_TYPE_Q4_K] = {"Q4_K", QK_K, sizeof(block_q4_K), dequantize_q4_K, quantize_q4_K, dot_q4_K, codes_q4_K, 32, 15, 0},
    [SP_TYPE_Q5_K] = {"Q5_K", QK_K, sizeof(block_q5_K), dequantize_q5_K, quantize_q5_K, dot_q5_K, codes_q5_K, 32, 31, 0},
    [SP_TYPE_Q6_K] = {"Q6_K", QK_K, sizeof(block_q6_K), dequantize_q6_K, quantize_q6_K, dot_q6_K, codes_q6_K, 16, 63, 32},
};

/* every ggml type name, so an unsupported one can be named in errors */
static const char *const all_names[SP_TYPE_COUNT] = {
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
    "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
    "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8",
    "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

const sp_type_traits *sp_type_traits_get(uint32_t type) {
    if (type >= SP_TYPE_COUNT || traits[type].name == NULL) return NULL;
    return &traits[type];
}

_Static_assert(SP_TYPE_COUNT == SP_N_TENSOR_TYPES, "the public count of tensor types");

const char *sp_tensor_type_name(int type) { return type >= 0 ? sp_type_name((uint32_t)type) : "unknown"; }

const char *sp_type_name(uint32_t type) {
    return type < SP_TYPE_COUNT && all_names[type] ? all_names[type] : "unknown";
}

int sp_type_from_name(const char *name) {
    for (int t = 0; t < SP_TYPE_COUNT; t++) {
        const char *a = all_names[t];
        if (!a) continue;
        size_t i = 0;
        while (a[i] && name[i] && toupper((unsigned char)name[i]) == a[i]) i++;
        if (!a[i] && !name[i]) return t;
    }
    return -1;
}

size_t sp_row_size(uint32_t type, int64_t n) {
    const sp_type_traits *t = sp_type_traits_get(type);
    return t ? (size_t)(n / t->block_size) * t->type_size : 0;
}

bool sp_quantize_rows(uint32_t type, const float *src, void *dst, int64_t n_rows, int64_t row_len) {
    const sp_type_traits *tt = sp_type_traits_get(type);
    if (!tt || !tt->quantize || row_len <= 0 || row_len % tt->block_size) return false;
    const size_t rb = sp_row_size(type, row_len);
    for (int64_t r = 0; r < n_rows; r++) tt->quantize(src + r * row_len, (uint8_t *)dst + (size_t)r * rb, row_len);
    return true;
}
