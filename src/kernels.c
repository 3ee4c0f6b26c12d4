#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "fp16.h"
#include "quant.h"
#include "repack.h"
#include "threadpool.h"

/* ------------------------------------------------------------------ scalar ISA */

static float scalar_dot_f32(const float *a, const float *b, int64_t n) {
    /* four partial sums: same association as the SIMD paths use per lane, fewer stalls */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void sp_transpose32_scalar(const void *src, int64_t lds, int rows, int64_t cols, void *dst, int64_t ldd) {
    const uint32_t *in = src; /* bits, not values: the elements may be pairs of bf16 */
    uint32_t *out = dst;
    /* 16 columns at a time: the reads and the writes stay in a few cache lines */
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
        for (int r = 0; r < rows; r++)
            for (int64_t c = c0; c < c0 + nc; c++) out[c * ldd + r] = in[r * lds + c];
    }
}

void sp_transpose16_to_f32_scalar(const uint16_t *src, int64_t lds, int rows, int64_t cols, float *dst, int64_t ldd, bool bf16) {
    for (int64_t c0 = 0; c0 < cols; c0 += 16) { /* as sp_transpose32_scalar */
        const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
        for (int r = 0; r < rows; r++)
            for (int64_t c = c0; c < c0 + nc; c++) {
                const uint16_t h = src[r * lds + c];
                dst[c * ldd + r] = bf16 ? sp_bf16_to_f32(h) : sp_fp16_to_f32(h);
            }
    }
}

static void scalar_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sp_f32_to_bf16(src[i]);
}

static void scalar_f16_to_bf16(const uint16_t *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sp_f32_to_bf16(sp_fp16_to_f32(src[i]));
}

static void scalar_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sp_fp16_to_f32(src[i]);
}

static void scalar_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = sp_f32_to_fp16(src[i]);
}

/* Blocks of 4 rows × 8 columns of c in local accumulators: 32 independent sums, which the
 * compiler keeps in registers (and vectorises where it can); one value at a time at the edges. */
static void scalar_gemm_nn(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *c, int64_t ldc,
                           int m, int n, int k, bool accumulate) {
    const int m4 = m & ~3, n8 = n & ~7;
    for (int i = 0; i < m4; i += 4)
        for (int j = 0; j < n8; j += 8) {
            float acc[4][8];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 8; v++) acc[r][v] = accumulate ? c[(i + r) * ldc + j + v] : 0.0f;
            for (int p = 0; p < k; p++) {
                const float *bp = b + p * ldb + j;
                for (int r = 0; r < 4; r++) {
                    const float av = a[(i + r) * sai + p * sap];
                    for (int v = 0; v < 8; v++) acc[r][v] += av * bp[v];
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 8; v++) c[(i + r) * ldc + j + v] = acc[r][v];
        }
    for (int i = 0; i < m; i++)
        for (int j = i < m4 ? n8 : 0; j < n; j++) {
            float s = accumulate ? c[i * ldc + j] : 0.0f;
            for (int p = 0; p < k; p++) s += a[i * sai + p * sap] * b[p * ldb + j];
            c[i * ldc + j] = s;
        }
}

void sp_softmax_tile_scalar(float *s, int64_t ld, int n_keys, int n_rows, const int *live, float *m, float *l, float *corr) {
    for (int r = 0; r < n_rows; r++) {
        const int n = live[r] < n_keys ? live[r] : n_keys;
        float mx = m[r];
        for (int c = 0; c < n; c++) mx = s[c * ld + r] > mx ? s[c * ld + r] : mx;
        corr[r] = mx == -INFINITY ? 1.0f : expf(m[r] - mx);
        float sum = 0;
        for (int c = 0; c < n_keys; c++) sum += s[c * ld + r] = c < n ? expf(s[c * ld + r] - mx) : 0.0f;
        l[r] = l[r] * corr[r] + sum;
        m[r] = mx;
    }
}

float sp_exp_shifted_scalar(float *x, int64_t n, float shift) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] = expf(x[i] - shift);
    return sum;
}

/* One key or value of the cache as floats (head_dim ≤ 1024, the loader's limit). */
static void cache_row(const void *cache, bool f16, int64_t at, int hd, float *dst) {
    if (f16) scalar_f16_to_f32((const uint16_t *)cache + at, dst, hd);
    else memcpy(dst, (const float *)cache + at, (size_t)hd * sizeof *dst);
}

void sp_attn_scores_scalar(const float *q, int n_rows, int hd, const void *k, bool f16, int64_t stride, int n_keys, float *s,
                           int64_t lds) {
    float key[1024];
    for (int c = 0; c < n_keys; c++) {
        cache_row(k, f16, c * stride, hd, key);
        for (int r = 0; r < n_rows; r++) { /* four running sums: one would wait on each add in turn */
            const float *qr = q + (int64_t)r * hd;
            float sum[4] = {0, 0, 0, 0};
            int d = 0;
            for (; d + 4 <= hd; d += 4)
                for (int u = 0; u < 4; u++) sum[u] += qr[d + u] * key[d + u];
            for (; d < hd; d++) sum[0] += qr[d] * key[d];
            s[r * lds + c] = (sum[0] + sum[1]) + (sum[2] + sum[3]);
        }
    }
}

void sp_attn_values_scalar(const float *p, int64_t ldp, int n_rows, int hd, const void *v, bool f16, int64_t stride, int n_keys,
                           float *acc) {
    float value[1024];
    for (int c = 0; c < n_keys; c++) {
        cache_row(v, f16, c * stride, hd, value);
        for (int r = 0; r < n_rows; r++) {
            const float w = p[r * ldp + c];
            for (int d = 0; d < hd; d++) acc[(int64_t)r * hd + d] += w * value[d];
        }
    }
}

void sp_silu_mul_scalar(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static const sp_isa_kernels scalar_kernels = {
    .name = "scalar", .dot_f32 = scalar_dot_f32, .f16_to_f32 = scalar_f16_to_f32, .f32_to_f16 = scalar_f32_to_f16,
    .gemm_bf16 = NULL, .f32_to_bf16 = scalar_f32_to_bf16, .f16_to_bf16 = scalar_f16_to_bf16,
    .gemm_nn = scalar_gemm_nn, .transpose32 = sp_transpose32_scalar, .transpose16_to_f32 = sp_transpose16_to_f32_scalar,
    .softmax_tile = sp_softmax_tile_scalar,
    .attn_scores = sp_attn_scores_scalar, .attn_values = sp_attn_values_scalar, .exp_shifted = sp_exp_shifted_scalar,
    .silu_mul = sp_silu_mul_scalar, .quantize_act = sp_quantize_activations,
};

/* ------------------------------------------------------------------ dispatch */

/* Every kernel set's name (SPECPREFILL_ISA, sp_set_kernels); the AVX-512 ones are the last five:
 * four indexed by the overlays they carry, then the full set (below). */
static const char *const set_names[] = {"scalar", "avx2", "avx2-vnni", "avx512-base", "avx512-novnni", "avx512-nobf16", "avx512-noamx", "avx512"};

#if defined(__x86_64__) && defined(SP_HAVE_X86_KERNELS)
#include <cpuid.h>

#include "kernels_x86.h"

extern const sp_isa_kernels sp_avx2_kernels;
extern const sp_isa_kernels sp_avx512_kernels;

static bool cpu_has(const char *isa);
static bool cpu_is_amd(void);

/* The AVX-512 sets: the base set (kernels_avx512.c) with an overlay per feature the CPU has —
 * bf16 dot products (kernels_avx512bf16.c) and VNNI integer dot products (kernels_avx512vnni.c) —
 * each applied on its own, so a CPU with VNNI but no bf16 (Ice Lake, Cascade Lake) still gets
 * the integer kernels; and on top of both, the AMX tile unit's prefill products, integer and
 * bf16 (kernels_amx.c: Sapphire Rapids and later Xeons). Names for tests and SPECPREFILL_ISA:
 * "avx512" (every overlay the CPU has; bf16 only where it outruns f32: bf16_beats_f32),
 * "avx512-noamx" (bf16 and VNNI: Zen 4/5's shape),
 * "avx512-nobf16" (VNNI only: Ice Lake's shape), "avx512-novnni" (bf16 only), "avx512-base"
 * (neither: Skylake-X's shape). Each is built once, on first use. */
enum { AVX512_BF16 = 1, AVX512_VNNI = 2, AVX512_ALL = 4 };
static sp_isa_kernels avx512_sets[5];
static const char *const *const avx512_names = set_names + 3;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
/* Whether the full set ("avx512") takes bf16 products at all: only where they outrun f32 ones —
 * AMD's Zen 4/5 (`vdpbf16ps` at twice the f32 FMA rate: 227 against 115 GFLOP/s a Zen 4 core)
 * and the AMX tile unit. Intel's AVX-512 cores alone run `vdpbf16ps` at half the FMA rate (a
 * Xeon, family 6 model 207, one core: 82 against 170 GFLOP/s), so there BF16 weights (which
 * convert to f32 exactly) and the types without integer kernels are faster through the f32
 * panels (1B BF16 prefill, 2 threads: 73–81 → 106–112 t/s), and F16 keeps its exact path even
 * with SPECPREFILL_F16=bf16. The named sets keep the overlay wherever the CPU has it: the shapes
 * of other CPUs, and the bf16 kernel's tests. */
static bool bf16_beats_f32(void) {
#if defined(SP_HAVE_AMX)
    if (cpu_has("amx")) return true;
#endif
    return cpu_is_amd();
}
static void build_avx512_sets(void) {
    for (int want = 0; want <= AVX512_ALL; want++) {
        sp_isa_kernels *k = &avx512_sets[want];
        const int overlays = want == AVX512_ALL ? AVX512_BF16 | AVX512_VNNI : want;
        *k = sp_avx512_kernels;
        k->name = avx512_names[want];
        if ((overlays & AVX512_BF16) && cpu_has("avx512bf16") && (want != AVX512_ALL || bf16_beats_f32())) {
            k->gemm_bf16 = sp_avx512_gemm_bf16;
            k->f32_to_bf16 = sp_avx512_f32_to_bf16;
            k->f16_to_bf16 = sp_avx512_f16_to_bf16;
        }
        if ((overlays & AVX512_VNNI) && cpu_has("avx512vnni")) {
            sp_avx512vnni_fill(k);
#if defined(SP_HAVE_AMX)
            if (want == AVX512_ALL && cpu_has("amx")) sp_amx_fill(k);
#endif
        }
    }
}

/* AVX2 with AVX-VNNI (kernels_avxvnni.c): Intel's Alder Lake and later cores without AVX-512 */
static sp_isa_kernels avx2_vnni_set;
static pthread_once_t avx2_vnni_once = PTHREAD_ONCE_INIT;
static void build_avx2_vnni_set(void) {
    avx2_vnni_set = sp_avx2_kernels;
    avx2_vnni_set.name = "avx2-vnni";
#if defined(SP_HAVE_AVXVNNI)
    sp_avxvnni_fill(&avx2_vnni_set);
#endif
}

/* CPU and OS support (the OS must save the wide registers: XCR0) for each kernel set. */
static bool cpu_has(const char *isa) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), f16c = c & (1u << 29), osxsave = c & (1u << 27);
    if (!osxsave) return false;
    unsigned xlo, xhi;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    const bool os_avx = (xlo & 0x6) == 0x6, os_avx512 = (xlo & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
    const bool avx2_set = os_avx && avx2 && fma && f16c; /* what every x86 set builds on */
    if (strcmp(isa, "avx2") == 0) return avx2_set;
    const bool avx512 = os_avx512 && avx2_set && avx512f && avx512bw && avx512vl;
    if (strcmp(isa, "avx512") == 0) return avx512;
#if defined(SP_HAVE_AVXVNNI)
    if (strcmp(isa, "avxvnni") == 0) {
        if (!avx2_set || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
        return a & (1u << 4);
    }
#endif
    if (strcmp(isa, "avx512vnni") == 0) return avx512 && (c & (1u << 11));
    if (strcmp(isa, "avx512bf16") == 0) {
        if (!avx512 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
        return a & (1u << 5);
    }
#if defined(SP_HAVE_AMX)
    if (strcmp(isa, "amx") == 0) { /* tiles, their int8 and bf16 products, XCR0's tile state, the OS's leave */
        const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25), amx_bf16 = d & (1u << 22);
        const bool os_tiles = (xlo & 0x60000) == 0x60000;
        return avx512 && (c & (1u << 11)) && amx_tile && amx_int8 && amx_bf16 && os_tiles && sp_amx_usable();
    }
#endif
    return false;
}
#endif

const sp_isa_kernels *sp_kernels_by_name(const char *name) {
    if (strcmp(name, "scalar") == 0) return &scalar_kernels;
#if defined(__x86_64__) && defined(SP_HAVE_X86_KERNELS)
    if (strcmp(name, "avx2") == 0 && cpu_has("avx2")) return &sp_avx2_kernels;
    if (strcmp(name, "avx2-vnni") == 0 && cpu_has("avxvnni")) {
        pthread_once(&avx2_vnni_once, build_avx2_vnni_set);
        return &avx2_vnni_set;
    }
    for (int i = 0; i <= AVX512_ALL; i++)
        if (strcmp(name, avx512_names[i]) == 0) {
            if (!cpu_has("avx512")) return NULL;
            pthread_once(&avx512_once, build_avx512_sets);
            return &avx512_sets[i];
        }
#endif
    return NULL;
}

#if defined(__x86_64__) && defined(SP_HAVE_X86_KERNELS)
static char cpu_features[96];
static pthread_once_t cpu_features_once = PTHREAD_ONCE_INIT;
static void describe_cpu(void) {
    static const char *const names[] = {"avx2", "avxvnni", "avx512", "avx512vnni", "avx512bf16", "amx"};
    for (int i = 0; i < 6; i++)
        if (cpu_has(names[i]))
            snprintf(cpu_features + strlen(cpu_features), sizeof cpu_features - strlen(cpu_features), "%s%s",
                     cpu_features[0] ? " " : "", names[i]);
    if (!cpu_features[0]) snprintf(cpu_features, sizeof cpu_features, "none of avx2, avx512");
}
#endif

const char *sp_cpu_features(void) {
#if defined(__x86_64__) && defined(SP_HAVE_X86_KERNELS)
    pthread_once(&cpu_features_once, describe_cpu);
    return cpu_features;
#else
    return "none used by this build (scalar kernels)";
#endif
}

static const sp_isa_kernels *active;
static pthread_once_t active_once = PTHREAD_ONCE_INIT;

int sp_decode_ahead = 3072; /* kernels.h */

/* AMD's x86 cores (and Hygon's, the same design): sp_decode_ahead's comment. */
static bool cpu_is_amd(void) {
#if defined(__x86_64__) && defined(SP_HAVE_X86_KERNELS)
    unsigned a, vendor[3];
    if (!__get_cpuid(0, &a, &vendor[0], &vendor[2], &vendor[1])) return false;
    return memcmp(vendor, "AuthenticAMD", 12) == 0 || memcmp(vendor, "HygonGenuine", 12) == 0;
#else
    return false;
#endif
}

static void choose_kernels(void) {
    if (cpu_is_amd()) sp_decode_ahead = 6144;
    active = sp_kernels_by_name("avx512");
    if (!active) active = sp_kernels_by_name("avx2-vnni");
    if (!active) active = sp_kernels_by_name("avx2");
    if (!active) active = &scalar_kernels;
}

sp_status sp_set_kernels(const char *name) {
    pthread_once(&active_once, choose_kernels);
    if (!name || !*name) {
        choose_kernels();
        return SP_OK;
    }
    const sp_isa_kernels *k = sp_kernels_by_name(name);
    if (k) {
        active = k;
        return SP_OK;
    }
    char have[160] = "";
    for (size_t i = 0; i < sizeof set_names / sizeof *set_names; i++)
        if (sp_kernels_by_name(set_names[i]))
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "", set_names[i]);
    return sp_fail(SP_ERR_UNSUPPORTED, "kernel set '%.40s' is not available here (this CPU and build run: %s)", name, have);
}

const char *sp_kernels_name(void) { return sp_kernels()->name; }

const sp_isa_kernels *sp_kernels(void) {
    pthread_once(&active_once, choose_kernels);
    return active;
}

void sp_kernels_select(const sp_isa_kernels *k) {
    pthread_once(&active_once, choose_kernels);
    active = k;
}

/* ------------------------------------------------------------------ matmul */

/* Per-thread scratch for dequantized weight tiles; grows to the largest request and is reused.
 * A thread-specific key frees it when a thread that used it ends (server slots, for one). */
static _Thread_local float *scratch;
static _Thread_local size_t scratch_size;
static pthread_key_t scratch_key;
static pthread_once_t scratch_key_once = PTHREAD_ONCE_INIT;

static void scratch_key_create(void) { pthread_key_create(&scratch_key, free); }

static float *scratch_get(size_t n) {
    if (n > scratch_size) {
        pthread_once(&scratch_key_once, scratch_key_create);
        free(scratch);
        scratch = sp_alloc_vectors(n * sizeof *scratch);
        scratch_size = scratch ? n : 0;
        pthread_setspecific(scratch_key, scratch);
    }
    return scratch;
}

#define ROWS_PER_TILE 16
#define TASKS_PER_THREAD 16 /* a matrix product's tasks: see prepare_matmul */
#define DECODE_TASK_BYTES (256 << 10)
/* The float prefill panel: weight rows (the kernels' widest block: 4 vectors of 16) × inner values. */
#define PANEL_ROWS 64
#define PANEL_K 256 /* a whole number of blocks of every type */
#define DECODE_MAX_TOKENS SP_MATMUL_DECODE_TOKENS /* specprefill_dev.h */
_Static_assert(DECODE_MAX_TOKENS <= 4, "dot_rows_q8 takes at most 4 tokens");

void sp_quantize_activations(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum16) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float scale = amax / 127, inv = amax > 0 ? 127 / amax : 0;
        d[b] = scale;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) {
            q[i] = (int8_t)lrintf(x[i] * inv);
            if (i < 16) s0 += q[i]; else s1 += q[i];
        }
        sum16[2 * b] = s0;
        sum16[2 * b + 1] = s1;
    }
}

static void interleave16_bytes(const uint8_t *src, int64_t src_stride, uint8_t *dst) {
    for (int r = 0; r < ROWS_PER_TILE; r++)
        for (int g = 0; g < 8; g++) memcpy(dst + 64 * g + 4 * r, src + r * src_stride + 4 * g, 4);
}

/* Tile group g's codes (values 4g … 4g+3 of 32-value piece s of a block) of the 8 rows of an
 * interleaved group's block `in` (repack.c says where each lies): 32 bytes, 4 a row. */
static void group_codes(uint32_t type, const uint8_t *in, int s, int g, uint8_t *out) {
    uint64_t v[4]; /* the type chosen once, outside the loops over the four words (-O2 does not unswitch them) */
    if (type == SP_TYPE_Q8_0) {
        for (int w = 0; w < 4; w++) v[w] = sp_load8(in + SP_ROWS8_Q8_0_QS + 32 * g + 8 * w) ^ SP_EVERY_BYTE(0x80); /* q + 128 */
    } else if (type == SP_TYPE_Q4_0) {
        const int shift = 4 * (g / 4);
        for (int w = 0; w < 4; w++) v[w] = sp_load8(in + SP_ROWS8_Q4_0_QS + 32 * (g % 4) + 8 * w) >> shift & SP_EVERY_BYTE(0x0F);
    } else if (type == SP_TYPE_Q4_K || type == SP_TYPE_Q5_K) {
        const int shift = 4 * (s % 2);
        for (int w = 0; w < 4; w++) v[w] = sp_load8(in + SP_ROWS8_Q4_K_QS + 256 * (s / 2) + 32 * g + 8 * w) >> shift & SP_EVERY_BYTE(0x0F);
        if (type == SP_TYPE_Q5_K)
            for (int w = 0; w < 4; w++) v[w] |= (sp_load8(in + SP_ROWS8_Q5_K_QH + 32 * g + 8 * w) >> s & SP_EVERY_BYTE(1)) << 4;
    } else { /* Q6_K: quarters 0-2 whole, quarter 3 from the three's top bits */
        const uint8_t *c = in + SP_ROWS8_Q6_K_QS + 768 * (s / 4) + 32 * g;
        if (s % 4 < 3)
            for (int w = 0; w < 4; w++) v[w] = sp_load8(c + 256 * (s % 4) + 8 * w) & SP_EVERY_BYTE(63);
        else
            for (int w = 0; w < 4; w++)
                v[w] = (sp_load8(c + 8 * w) >> 6 & SP_EVERY_BYTE(3)) | (sp_load8(c + 256 + 8 * w) >> 4 & SP_EVERY_BYTE(12)) |
                       (sp_load8(c + 512 + 8 * w) >> 2 & SP_EVERY_BYTE(48));
    }
    memcpy(out, v, sizeof v);
}

/* The scales and mins of piece s for the same 8 rows, as the type's codes() computes them, into
 * the tile's sm at rows r0 … r0+7 (Q6_K: two groups of 16 values, 32 floats apart). */
static void group_scales(uint32_t type, const uint8_t *in, int s, float *sm, int r0) {
    for (int r = 0; r < SP_ROWS8; r++) {
        uint16_t h;
        memcpy(&h, in + 2 * r, 2);
        const float d = sp_fp16_to_f32(h);
        if (type == SP_TYPE_Q8_0 || type == SP_TYPE_Q4_0) {
            sm[r0 + r] = d;
            sm[16 + r0 + r] = (type == SP_TYPE_Q8_0 ? 128 : 8) * d;
        } else if (type == SP_TYPE_Q4_K || type == SP_TYPE_Q5_K) {
            memcpy(&h, in + SP_ROWS8_Q4_K_DMIN + 2 * r, 2);
            sm[r0 + r] = d * in[SP_ROWS8_Q4_K_SCALES + 8 * s + r];
            sm[16 + r0 + r] = sp_fp16_to_f32(h) * in[SP_ROWS8_Q4_K_MINS + 8 * s + r];
        } else
            for (int half = 0; half < 2; half++) {
                const float scale = d * (int8_t)in[SP_ROWS8_Q6_K_SCALES + 16 * s + 2 * r + half];
                sm[32 * half + r0 + r] = scale;
                sm[32 * half + 16 + r0 + r] = 32 * scale;
            }
    }
}

/* Tiles without the type's codes(), the same bytes as it gives: rows repacked at load (every
 * interleaved type), where two groups' chunks side by side already hold 4 bytes of each of 16
 * rows and, masked, shifted or flipped, are the tile; and whole tiles of Q8_0's rows as they lie,
 * whose bytes are their codes (+ 128: transposed and flipped). The general path below stages every
 * block of every row through codes() — a 1B Q8_0 prefill on Zen 5 spent 13 % of its time there;
 * interleaved rows, unpacked to the file's layout first, made Q6_K's pp512 12–22 % slower with
 * `--repack` than without. */

/* Interleaved rows: nr is 8 or 16 (a repacked matrix has whole groups); a lone group leaves
 * rows 8-15 zero. */
static void tile_of_groups(uint32_t type, const uint8_t *rows, int64_t row_bytes, int nr, int64_t k, uint8_t *tile) {
    const sp_type_traits *tt = sp_type_traits_get(type);
    const int64_t stride = SP_I8_TILE_BLOCK_BYTES(tt->codes_group);
    const int64_t group_bytes = sp_rows8_row_bytes(type, 1) * SP_ROWS8, group_stride = SP_ROWS8 * row_bytes;
    for (int64_t b = 0; b < k / tt->block_size; b++)
        for (int s = 0; s < tt->block_size / 32; s++) {
            uint8_t *blk = tile + (b * tt->block_size / 32 + s) * stride;
            if (nr < ROWS_PER_TILE) memset(blk, 0, (size_t)stride);
            for (int half = 0; half < nr / SP_ROWS8; half++) { /* rows 0-7 from the first group, 8-15 from the next */
                const uint8_t *in = rows + half * group_stride + b * group_bytes;
                for (int g = 0; g < 8; g++) group_codes(type, in, s, g, blk + 64 * g + 32 * half);
                group_scales(type, in, s, (float *)(blk + 512), 8 * half);
            }
        }
}

/* 16 rows of Q8_0 as they lie. */
static void tile_of_q8_0_rows(const uint8_t *rows, int64_t row_bytes, int64_t k, uint8_t *tile,
                              void (*interleave)(const uint8_t *, int64_t, uint8_t *)) {
    const int64_t stride = SP_I8_TILE_BLOCK_BYTES(32);
    for (int64_t b = 0; b < k / 32; b++) {
        uint8_t *blk = tile + b * stride;
        const uint8_t *src = rows + b * (int64_t)sizeof(block_q8_0);
        float *sm = (float *)(blk + 512);
        for (int r = 0; r < ROWS_PER_TILE; r++) {
            uint16_t d;
            memcpy(&d, src + r * row_bytes, 2);
            sm[r] = sp_fp16_to_f32(d);
            sm[16 + r] = 128 * sm[r];
            __builtin_prefetch(src + r * row_bytes + 512); /* 16 rows read side by side: help the hardware prefetcher */
        }
        interleave(src + 2, row_bytes, blk);
        for (int i = 0; i < 512; i += 8) {
            sp_store8(blk + i, sp_load8(blk + i) ^ SP_EVERY_BYTE(0x80));
        }
    }
}

void sp_i8_tile_pack(uint32_t type, const uint8_t *rows, int64_t row_bytes, bool interleaved, int nr, int64_t k, uint8_t *tile) {
    const sp_type_traits *tt = sp_type_traits_get(type);
    const sp_isa_kernels *kern = sp_kernels();
    void (*interleave)(const uint8_t *, int64_t, uint8_t *) = kern->interleave16 ? kern->interleave16 : interleave16_bytes;
    if (interleaved) {
        tile_of_groups(type, rows, row_bytes, nr, k, tile);
        return;
    }
    if (type == SP_TYPE_Q8_0 && nr == ROWS_PER_TILE) {
        tile_of_q8_0_rows(rows, row_bytes, k, tile, interleave);
        return;
    }
    const int group = tt->codes_group, bs = tt->block_size;
    const int64_t stride = SP_I8_TILE_BLOCK_BYTES(group);
    uint8_t q[ROWS_PER_TILE][QK_K]; /* one block of each row's codes, then transposed into the tile */
    float scale[ROWS_PER_TILE][QK_K / 16], min[ROWS_PER_TILE][QK_K / 16];
    for (int r = nr; r < ROWS_PER_TILE; r++) { /* rows the tile lacks: zero */
        memset(q[r], 0, sizeof q[r]);
        memset(scale[r], 0, sizeof scale[r]);
        memset(min[r], 0, sizeof min[r]);
    }
    for (int64_t i = 0; i < k; i += bs) {
        for (int r = 0; r < nr; r++) {
            const uint8_t *src = rows + r * row_bytes + i / bs * (int64_t)tt->type_size;
            /* 16 rows read side by side: help the hardware prefetcher, every line of a block
             * (Q4_K 144 bytes, Q6_K 210: asking for one line left the others to stall codes(),
             * 58 % of its samples on Zen 5) */
            sp_prefetch(src + 512, tt->type_size);
            tt->codes(src, q[r], scale[r], min[r]);
        }
        for (int j = 0; j < bs; j += 32) {
            uint8_t *blk = tile + (i + j) / 32 * stride;
            interleave(&q[0][j], QK_K, blk);
            float *sm = (float *)(blk + 512);
            for (int h = 0; h < 32 / group; h++)
                for (int r = 0; r < ROWS_PER_TILE; r++) {
                    sm[32 * h + r] = scale[r][(j + h * group) / 16];
                    sm[32 * h + 16 + r] = min[r][(j + h * group) / 16];
                }
        }
    }
}

typedef struct {
    const sp_weight *w;
    const float *x;
    const sp_q8_act *xq;    /* x quantized, for the integer decode kernels (one per token) */
    const sp_i8_rows *xi;   /* x quantized, for the integer prefill kernel */
    const uint16_t *x_bf16; /* x in bf16 when the bf16 kernel is used, by panel slices (below) */
    const float *x_sliced;  /* x for the f32 panels, by panel slices like x_bf16 (NULL: x as it is) */
    int n_tokens;
    bool decode;            /* the decode form: each token's products as a lone token's */
    float *out;
    int rows_per_task;
} matmul_job;

/* Dot of one weight row for types without a fused kernel on this ISA: QK_K values (whole blocks)
 * dequantized at a time, then one SIMD dot. (One block at a time, a one-value type such as BF16
 * on AVX2 took a call per value: 1B decode 0.78 t/s.) */
static float dot_row_generic(const sp_isa_kernels *k, const sp_type_traits *tt, const uint8_t *row, const float *x, int64_t n) {
    float tmp[QK_K];
    const int64_t blocks = QK_K / tt->block_size, chunk = blocks * tt->block_size;
    float s = 0;
    for (int64_t i = 0; i < n; i += chunk, row += blocks * tt->type_size) {
        const int64_t m = n - i < chunk ? n - i : chunk;
        tt->dequantize(row, tmp, m);
        s += k->dot_f32(tmp, x + i, m);
    }
    return s;
}

/* F16 weights in prefill through the bf16 path (about twice the speed where the set uses bf16
 * products: bf16_beats_f32; at bf16's rounding, logits move by ~1e-2); the default keeps F16
 * exact. */
static bool f16_as_bf16;

void sp_set_f16_as_bf16(bool on) { f16_as_bf16 = on; }

static bool use_bf16(const sp_isa_kernels *k, const sp_weight *w) {
    /* bf16 operands only where the weights are already coarser than bf16, unless asked */
    return k->gemm_bf16 && w->n_in % 32 == 0 && w->type != SP_TYPE_F32 && (w->type != SP_TYPE_F16 || f16_as_bf16);
}

/* Blocks [b0, b0 + nb) of row r of w in its type's layout: where they lie, or, from interleaved
 * rows, rebuilt in buf. */
static const uint8_t *row_blocks(const sp_weight *w, const sp_type_traits *tt, int64_t r, int64_t b0, int64_t nb, uint8_t *buf) {
    if (!w->interleaved) return (const uint8_t *)w->data + r * w->row_bytes + b0 * (int64_t)tt->type_size;
    sp_rows8_unpack(w->type, w->data, w->row_bytes, r, b0, nb, buf);
    return buf;
}
/* The bytes of PIECE values of any type (whole blocks; the largest: F32's). */
#define PIECE QK_K
#define PIECE_BYTES (PIECE * sizeof(float))

/* Values [p, p + n) of row r of w in f32 (p and n whole blocks of its type). */
static void dequantize_part(const sp_isa_kernels *k, const sp_type_traits *tt, const sp_weight *w, int64_t r, int64_t p, int n,
                            float *dst) {
    uint8_t buf[PIECE_BYTES];
    const uint8_t *part = row_blocks(w, tt, r, p / tt->block_size, n / tt->block_size, buf); /* n ≤ PANEL_K = PIECE */
    if (w->type == SP_TYPE_F32) memcpy(dst, part, (size_t)n * sizeof *dst);
    else if (w->type == SP_TYPE_F16) k->f16_to_f32((const uint16_t *)part, dst, n);
    else tt->dequantize(part, dst, n);
}

void sp_weight_row(const sp_weight *w, int64_t r, float *dst) {
    const sp_isa_kernels *k = sp_kernels();
    const sp_type_traits *tt = sp_type_traits_get(w->type);
    for (int64_t p = 0; p < w->n_in; p += PIECE) {
        const int n = (int)(w->n_in - p < PIECE ? w->n_in - p : PIECE);
        dequantize_part(k, tt, w, r, p, n, dst + p);
    }
}

/* Rows [r0, r1) one dot product at a time: the fallback when a tile cannot be allocated (by
 * pieces of PIECE values, which interleaved rows are rebuilt into). */
static void matmul_rows_by_dots(const matmul_job *j, int64_t r0, int64_t r1) {
    const sp_weight *w = j->w;
    const sp_type_traits *tt = sp_type_traits_get(w->type);
    uint8_t buf[PIECE_BYTES];
    for (int t = 0; t < j->n_tokens; t++)
        for (int64_t r = r0; r < r1; r++) {
            float s = 0;
            for (int64_t p = 0; p < w->n_in; p += PIECE) {
                const int64_t n = w->n_in - p < PIECE ? w->n_in - p : PIECE;
                s += tt->dot(row_blocks(w, tt, r, p / tt->block_size, n / tt->block_size, buf), j->x + (int64_t)t * w->n_in + p, n);
            }
            j->out[(int64_t)t * w->n_out + r] = s;
        }
}

/* Decode with x in f32 reads float rows four at a time, by pieces of 512 bytes: piece p of the
 * four rows, then piece p + 1, with the next four rows' piece p asked for before each. The
 * core's misses then overlap over four pages rather than one row's burst (1B F16 decode, Intel
 * Xeon, AVX-512, 2 threads: 10.9 → 12.9 t/s, AVX2 10.1 → 12.8; 1 KiB pieces 11.9, 2 KiB 9.9;
 * 2 rows 11.7, 8 rows 12.6; four rows in lockstep in one kernel, no gain there). On AMD Zen 3
 * four rows in lockstep over the whole row, each asking eight rows ahead, are ahead (dot_rows_f:
 * one thread +20-33 %), so F16 and BF16 take that where the set has it (AVX2, and AVX-512 eight
 * rows at a time: on that Xeon now +8-10 % over these pieces, variants alternating in one run),
 * and this form is F32's and the other sets'.
 * Quantized rows are read whole, one at a time (the integer decode in matmul_task): the same
 * order by pieces measured from −4 to +9 % (Q8_0 +9 % in one build, level in the next: within
 * how much the code's placement moves it), four whole rows in flight −5 to −8 % for Q8_0, Q4_0,
 * Q4_K_M, Q6_K. */
typedef struct {
    int rows;      /* rows read together */
    int64_t piece; /* values per piece (whole blocks; the whole row for quantized types) */
} decode_order;

static decode_order decode_order_of(const sp_type_traits *tt, const sp_weight *w) {
    if (w->interleaved) return (decode_order){1, PIECE}; /* a piece at a time rebuilt (kernels without the interleaved dot) */
    if (tt->block_size > 1) return (decode_order){1, w->n_in};
    return (decode_order){4, 512 / tt->type_size};
}

/* Row r's dot products over values [p, p + n) for every token, added to out (row points at
 * the piece). Each token sums the same pieces in the same order, alone or among others. */
static void decode_piece_dots(const matmul_job *j, const sp_isa_kernels *k, const sp_type_traits *tt, const uint8_t *row,
                              int64_t p, int64_t n, int64_t r) {
    const sp_weight *w = j->w;
    float *out = j->out + r;
    float (*dot)(const void *, const float *, int64_t) = w->type < SP_N_TYPES ? k->dot_row[w->type] : NULL;
    for (int t = 0; t < j->n_tokens; t++) {
        const float *x = j->x + (int64_t)t * w->n_in + p;
        out[(int64_t)t * w->n_out] += dot                        ? dot(row, x, n)
                                      : w->type == SP_TYPE_F32 ? k->dot_f32((const float *)row, x, n)
                                                               : dot_row_generic(k, tt, row, x, n);
    }
}

static void matmul_task(void *arg, int task, int n_tasks) {
    (void)n_tasks;
    const matmul_job *j = arg;
    const sp_weight *w = j->w;
    const sp_type_traits *tt = sp_type_traits_get(w->type);
    const sp_isa_kernels *k = sp_kernels();
    const int64_t K = w->n_in;
    int64_t r0 = (int64_t)task * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < w->n_out ? r0 + j->rows_per_task : w->n_out;
    const uint8_t *base = w->data;

    if (j->decode && j->xq) {
        /* decode, integer dot products; each weight row is read from memory once for all the
         * tokens, and unpacked once for each group of up to 4 (the kernels' registers) */
        float (*dot)(const void *, const sp_q8_act *, int64_t) = k->dot_row_q8[w->type];
        void (*dots)(const void *, const sp_q8_act *, int, int64_t, float *, int64_t) = k->dot_rows_q8[w->type];
        sp_prefetch(base + r0 * w->row_bytes, sp_decode_ahead); /* the kernels ask for what follows (sp_prefetch_ahead) */
        if (w->interleaved) { /* eight rows a call, or sixteen (matmul takes this path only where the set has the kernel) */
            void (*dots16)(const void *, int64_t, const sp_q8_act *, int, int64_t, float *, int64_t) = k->dot16_rows_q8[w->type];
            for (int64_t r = r0, rows; r < r1; r += rows) {
                rows = dots16 && r + 2 * SP_ROWS8 <= r1 ? 2 * SP_ROWS8 : SP_ROWS8;
                for (int t = 0; t < j->n_tokens; t += DECODE_MAX_TOKENS) {
                    const int g = j->n_tokens - t < DECODE_MAX_TOKENS ? j->n_tokens - t : DECODE_MAX_TOKENS;
                    float *out = j->out + (int64_t)t * w->n_out + r;
                    if (rows > SP_ROWS8) dots16(base + r * w->row_bytes, SP_ROWS8 * w->row_bytes, j->xq + t, g, K, out, w->n_out);
                    else k->dot8_rows_q8[w->type](base + r * w->row_bytes, j->xq + t, g, K, out, w->n_out);
                }
            }
            return;
        }
        for (int64_t r = r0; r < r1; r++) {
            for (int t = 0; t < j->n_tokens; t += DECODE_MAX_TOKENS) {
                const int g = j->n_tokens - t < DECODE_MAX_TOKENS ? j->n_tokens - t : DECODE_MAX_TOKENS;
                float *out = j->out + (int64_t)t * w->n_out + r;
                if (g > 1 && dots) dots(base + r * w->row_bytes, j->xq + t, g, K, out, w->n_out);
                else
                    for (int i = 0; i < g; i++) out[(int64_t)i * w->n_out] = dot(base + r * w->row_bytes, &j->xq[t + i], K);
            }
        }
        return;
    }
    if (j->decode && w->type < SP_N_TYPES && !w->interleaved && k->dot_rows_f[w->type]) {
        /* decode of 16-bit float rows, four or eight in lockstep for up to two tokens (dot_rows_f) */
        const int step = k->dot_rows_f_rows;
        for (int64_t r = r0; r < r1; r += step) {
            const int nr = r1 - r < step ? (int)(r1 - r) : step;
            /* eight rows on, but not past the task: the rows after it are the next task's, most
             * often another thread's (1B F16 decode, AMD Zen 3, 2 threads, tokens alternating in
             * one run: +1.1-4.2 % in twelve runs; 4, 12 or 16 rows on instead of 8: ±1.5 %; Intel
             * Xeon with AVX-512, eight rows a call: 16 rows on −3 %, none −10-14 %) */
            const int64_t ahead = r + 8 + step <= r1 ? 8 * w->row_bytes : 0;
            for (int t = 0; t < j->n_tokens; t += 2)
                k->dot_rows_f[w->type](base + r * w->row_bytes, w->row_bytes, nr, j->x + (int64_t)t * K, K, j->n_tokens - t < 2 ? 1 : 2,
                                       K, j->out + (int64_t)t * w->n_out + r, w->n_out, ahead);
        }
        return;
    }
    if (j->decode) {
        /* decode, dot products with x in f32 */
        const decode_order o = decode_order_of(tt, w);
        uint8_t buf[PIECE_BYTES];
        for (int64_t r = r0; r < r1; r += o.rows) {
            const int nr = r1 - r < o.rows ? (int)(r1 - r) : o.rows;
            for (int t = 0; t < j->n_tokens; t++)
                for (int i = 0; i < nr; i++) j->out[(int64_t)t * w->n_out + r + i] = 0;
            for (int64_t p = 0; p < K; p += o.piece) {
                const int64_t n = K - p < o.piece ? K - p : o.piece;
                const int64_t offset = (int64_t)sp_row_size(w->type, p), bytes = (int64_t)sp_row_size(w->type, n);
                for (int i = 0; i < nr; i++) {
                    const uint8_t *row = base + (r + i) * w->row_bytes + offset;
                    if (w->interleaved) row = row_blocks(w, tt, r + i, p / tt->block_size, n / tt->block_size, buf);
                    else if (r + nr + i < r1) sp_prefetch(row + nr * w->row_bytes, bytes);
                    decode_piece_dots(j, k, tt, row, p, n, r + i);
                }
            }
        }
        return;
    }
    if (j->xi) {
        const int group = tt->codes_group;
        uint8_t *tile = (uint8_t *)scratch_get((size_t)(K / 32 * SP_I8_TILE_BLOCK_BYTES(group)) / sizeof(float) + 16);
        if (tile) {
            for (int64_t rt = r0; rt < r1; rt += ROWS_PER_TILE) {
                const int nr = (int)(r1 - rt < ROWS_PER_TILE ? r1 - rt : ROWS_PER_TILE);
                sp_i8_tile_pack(w->type, base + rt * w->row_bytes, w->row_bytes, w->interleaved, nr, K, tile);
                k->gemm_i8(tile, group, tt->codes_max, tt->codes_offset, nr, j->xi, j->n_tokens, K, j->out + rt, w->n_out);
            }
            return;
        }
    }
    /* Float weights (F32, F16, BF16, and types without an integer form): a panel of PANEL_ROWS
     * weight rows × PANEL_K values of the inner dimension at a time, dequantized and transposed
     * (f32: in strips of the product's width, panel[strip][p][r]; bf16: pairs of values,
     * panel[p/2][r]), so that the product is in
     * broadcast form — out[t][r] += sum_p x[t][p] · panel[p][r], a value (or pair) of a token
     * broadcast against 16 weight rows per vector: no horizontal sums, each panel value used by
     * a block of tokens from registers, and the panel (≤ 64 KiB) stays in L2 while every token
     * passes over it. */
    const bool bf16 = j->x_bf16 != NULL;
    const int64_t ldr = PANEL_K + 16; /* not a power of two: the 16 rows a transpose reads at
                                       * once would share one set of the L1 cache */
    float *rows = scratch_get((size_t)(2 * ldr + PANEL_K) * PANEL_ROWS + 16);
    if (!rows) {
        matmul_rows_by_dots(j, r0, r1);
        return;
    }
    float *panel = rows + (size_t)ldr * PANEL_ROWS;
    uint16_t *rows_bf16 = (uint16_t *)(panel + (size_t)PANEL_K * PANEL_ROWS); /* ldr pairs a row */
    /* 16-bit rows as they lie (4-byte aligned, as GGUF's data always is): for the bf16 product
     * their value pairs go straight into the panel, F16's then rounded to bf16 in place (the f32
     * round trip took 6 % of a BF16 prefill where bf16 products run at half the FMA rate, and more
     * where they run at twice it); for the f32 product they are widened as they are transposed
     * (the rows' f32 copy, a pass more: 3.4 % of an F16 prefill, 7.5 % of a BF16 one). Other rows
     * take the f32 copy: the same panel either way. */
    const bool as_they_lie = (w->type == SP_TYPE_BF16 || w->type == SP_TYPE_F16) && !w->interleaved && w->row_bytes % 4 == 0 &&
                             (uintptr_t)base % 4 == 0;
    const bool pairs_as_they_lie = bf16 && as_they_lie, widen_as_they_lie = !bf16 && as_they_lie;
    for (int64_t rt = r0; rt < r1; rt += PANEL_ROWS) {
        const int nr = (int)(r1 - rt < PANEL_ROWS ? r1 - rt : PANEL_ROWS);
        for (int64_t p = 0; p < K; p += PANEL_K) {
            const int kb = (int)(K - p < PANEL_K ? K - p : PANEL_K);
            if (pairs_as_they_lie) {
                k->transpose32(base + rt * w->row_bytes + p * 2, w->row_bytes / 4, nr, kb / 2, panel, nr);
                if (w->type == SP_TYPE_F16) k->f16_to_bf16((uint16_t *)panel, (uint16_t *)panel, (int64_t)nr * kb);
            } else if (!widen_as_they_lie) {
                for (int r = 0; r < nr; r++) dequantize_part(k, tt, w, rt + r, p, kb, rows + r * ldr);
                if (bf16) {
                    for (int r = 0; r < nr; r++) k->f32_to_bf16(rows + r * ldr, rows_bf16 + r * 2 * ldr, kb);
                    k->transpose32(rows_bf16, ldr, nr, kb / 2, panel, nr);
                }
            }
            if (bf16) {
                k->gemm_bf16((const uint32_t *)panel, nr, j->x_bf16 + p * j->n_tokens, kb, j->n_tokens, kb, j->out + rt, w->n_out, p > 0);
            } else {
                const float *xp = j->x_sliced ? j->x_sliced + p * j->n_tokens : j->x + p;
                const int64_t ldx = j->x_sliced ? kb : K, strip = k->panel_strip ? k->panel_strip : PANEL_ROWS;
                for (int s = 0; s < nr; s += (int)strip) { /* the panel by strips of the product's width, each contiguous */
                    const int ns = nr - s < strip ? nr - s : (int)strip;
                    if (widen_as_they_lie)
                        k->transpose16_to_f32((const uint16_t *)(const void *)(base + (rt + s) * w->row_bytes) + p, w->row_bytes / 2, ns, kb,
                                              panel + s * kb, ns, w->type == SP_TYPE_BF16);
                    else k->transpose32(rows + s * ldr, ldr, ns, kb, panel + s * kb, ns);
                    k->gemm_nn(xp, ldx, 1, panel + s * kb, ns, j->out + rt + s, w->n_out, j->n_tokens, ns, kb, p > 0);
                }
            }
        }
    }
}

/* Quantizes tokens for the integer prefill kernel, a share of the tokens per task. */
typedef struct {
    const float *x;
    int64_t k;
    int n_tokens, group, offset;
    int8_t *q;
    float *d, *dsum;
    int32_t *sum16, *osum;
    int64_t ldq;
} quantize_job;

static void quantize_task(void *arg, int task, int n_tasks) {
    const quantize_job *j = arg;
    const sp_isa_kernels *kern = sp_kernels();
    const int64_t k = j->k;
    for (int64_t t = (int64_t)j->n_tokens * task / n_tasks; t < (int64_t)j->n_tokens * (task + 1) / n_tasks; t++) {
        int32_t *s16 = j->sum16 + t * (k / 16);
        float *d = j->d + t * (k / 32), *ds = j->dsum + t * (k / j->group);
        kern->quantize_act(j->x + t * k, k, j->q + t * j->ldq, d, s16);
        for (int64_t g = 0; g < k / j->group; g++) {
            const int32_t sum = j->group == 16 ? s16[g] : s16[2 * g] + s16[2 * g + 1];
            ds[g] = d[j->group == 16 ? g / 2 : g] * (float)sum;
            if (j->osum) j->osum[t * (k / j->group) + g] = -j->offset * sum;
        }
    }
}

/* The integer prefill form of x, or NULL where it does not apply (caller frees *mem). */
static const sp_i8_rows *prepare_i8_rows(const sp_isa_kernels *k, const sp_weight *w, const float *x, int n_tokens,
                                         sp_i8_rows *rows, void **mem) {
    const sp_type_traits *tt = w->type < SP_TYPE_COUNT ? sp_type_traits_get(w->type) : NULL;
    *mem = NULL;
    if (n_tokens <= DECODE_MAX_TOKENS || !k->gemm_i8 || !tt || !tt->codes || w->n_in % 32 || w->n_in % tt->block_size) return NULL;
    const int64_t K = w->n_in, n = n_tokens;
    const int group = tt->codes_group;
    /* 4-byte values first (alignment), then the codes, a cache line more than k a token (the
     * rows' stride is then no multiple of 4 KiB — measured, 1B Q8_0 with AMX, 2 threads: pp512
     * 384 → 400 t/s, pp2048 330 → 344); osum only where the type folds its offset */
    const int64_t n_osum = tt->codes_offset ? K / group : 0, ldq = K + 64;
    float *f = sp_alloc_vectors((size_t)n * (size_t)(K / 32 + K / group + K / 16 + n_osum) * sizeof(float) + (size_t)(n * ldq));
    if (!f) return NULL;
    quantize_job j = {x, K, n_tokens, group, tt->codes_offset, NULL, f, f + n * (K / 32), (int32_t *)(f + n * (K / 32 + K / group)), NULL, ldq};
    j.osum = n_osum ? j.sum16 + n * (K / 16) : NULL;
    j.q = (int8_t *)(j.sum16 + n * (K / 16 + n_osum));
    int tasks = sp_threads_count();
    sp_parallel_for(tasks < n_tokens ? tasks : n_tokens, quantize_task, &j);
    *rows = (sp_i8_rows){j.q, j.d, j.dsum, j.sum16, j.osum, ldq};
    *mem = f;
    return rows;
}

/* What a product's job points into besides its inputs: freed by release_matmul. */
typedef struct {
    sp_q8_act xq_few[DECODE_MAX_TOKENS], *xq;
    sp_i8_rows xi;
    void *xi_mem, *q8, *sliced;
} matmul_mem;

/* Fills the job of out = x · wᵀ (its activations quantized or sliced as the kernels take them)
 * and returns its number of tasks. */
static int prepare_matmul(matmul_job *j, matmul_mem *m, const sp_weight *w, const float *x, int n_tokens, float *out, bool each) {
    const sp_isa_kernels *k = sp_kernels();
    const bool decode = each || n_tokens <= DECODE_MAX_TOKENS;
    *j = (matmul_job){.w = w, .x = x, .n_tokens = n_tokens, .decode = decode, .out = out};
    *m = (matmul_mem){.xi_mem = NULL};
    j->xi = decode ? NULL : prepare_i8_rows(k, w, x, n_tokens, &m->xi, &m->xi_mem);
    m->xq = n_tokens <= DECODE_MAX_TOKENS ? m->xq_few : malloc((size_t)n_tokens * sizeof *m->xq);
    if (decode && m->xq && w->type < SP_N_TYPES && (w->interleaved ? k->dot8_rows_q8[w->type] != NULL : k->dot_row_q8[w->type] != NULL) &&
        w->n_in % 32 == 0) {
        /* per token: the codes, then (n_in a multiple of 32: aligned) the scales and sums */
        const size_t per_token = ((size_t)w->n_in + (size_t)w->n_in / 32 * sizeof(float) + (size_t)w->n_in / 16 * sizeof(int32_t) + 63) & ~(size_t)63;
        int8_t *q8 = m->q8 = sp_alloc_vectors(per_token * (size_t)n_tokens);
        if (q8) {
            for (int t = 0; t < n_tokens; t++) {
                int8_t *q = q8 + per_token * (size_t)t;
                float *d = (float *)(q + w->n_in);
                int32_t *sums = (int32_t *)(d + w->n_in / 32);
                k->quantize_act(x + (int64_t)t * w->n_in, w->n_in, q, d, sums);
                m->xq[t] = (sp_q8_act){q, d, sums};
            }
            j->xq = m->xq;
        }
    }
    if (!decode && !j->xi) { /* the panels' products (fewer tokens take the decode form) */
        /* x by slices of the panels' depth, in bf16 where the bf16 kernel is used, else f32: values
         * [p, p + kb) of every token together, at p · n_tokens (kb apart). A product then reads its
         * tokens' values from one run of memory: token rows n_in apart (4 KiB and more) all fall in
         * one set of the L1 cache (measured: the AMX product of a panel with 512 tokens 282 → 582
         * GMAC/s; 1B F16 pp512 with AVX2 on Zen 3, f32: +3–4 %) */
        const bool bf16 = use_bf16(k, w);
        void *sliced = m->sliced = sp_alloc_vectors((size_t)n_tokens * (size_t)w->n_in * (bf16 ? sizeof(uint16_t) : sizeof(float)));
        if (sliced) {
            for (int64_t p = 0; p < w->n_in; p += PANEL_K) {
                const int64_t kb = w->n_in - p < PANEL_K ? w->n_in - p : PANEL_K;
                for (int t = 0; t < n_tokens; t++) {
                    const float *src = x + (int64_t)t * w->n_in + p;
                    const int64_t at = p * n_tokens + t * kb;
                    if (bf16) k->f32_to_bf16(src, (uint16_t *)sliced + at, kb);
                    else memcpy((float *)sliced + at, src, (size_t)kb * sizeof(float));
                }
            }
            if (bf16) j->x_bf16 = sliced;
            else j->x_sliced = sliced;
        }
    }
    /* Enough tasks for balance, each a whole number of tiles. A job ends when its last task
     * does, and the threads that finished first wait: with 4 tasks a thread the caller alone
     * waited 0.4-0.8 s of a 1B Q4_K_M decode's 7.7 s (2 threads, AMD Zen 3), with 16 0.12-0.15 s;
     * Q8_0 pp512 0.56-1.29 s of 17 s against 0.23-0.26 s. But a task costs too: its claim, an
     * atomic operation on a line the threads share, and in decode the lookahead past its end
     * (sp_decode_ahead), fetched for rows the next task's thread reads. A small model's decode
     * products are small (SmolLM2-135M Q4_1: k and v 69 KB, 12 tasks of 5.8 KB), so a decode
     * task holds DECODE_TASK_BYTES of weights at least (tokens alternating in one run, 2
     * threads, Zen 3: SmolLM2 +3-14 % in three runs, 64 KiB and 1 MiB alike; 1B files level),
     * divided by its tokens, whose arithmetic grows the task (16 sequences' steps, SmolLM2:
     * 256 KiB whatever the tokens ran 4-11 % behind no floor in four runs, divided level).
     * Rows are split, never sums: the result does not depend on who runs which task. */
    const int n_threads = sp_threads_count();
    const int64_t tiles = (w->n_out + ROWS_PER_TILE - 1) / ROWS_PER_TILE;
    int64_t n_tasks = n_threads * TASKS_PER_THREAD < tiles ? n_threads * TASKS_PER_THREAD : tiles;
    if (decode) { /* tasks of DECODE_TASK_BYTES of weights × tokens at least, and one a thread */
        int64_t most = w->n_out * w->row_bytes * n_tokens / DECODE_TASK_BYTES;
        if (most < n_threads) most = n_threads;
        if (n_tasks > most) n_tasks = most;
    }
    const int64_t tiles_per_task = (tiles + n_tasks - 1) / n_tasks;
    j->rows_per_task = (int)(tiles_per_task * ROWS_PER_TILE);
    return (int)((w->n_out + j->rows_per_task - 1) / j->rows_per_task);
}

static void release_matmul(matmul_mem *m) {
    free(m->sliced);
    free(m->q8);
    free(m->xi_mem);
    if (m->xq != m->xq_few) free(m->xq);
}

static void matmul(const sp_weight *w, const float *x, int n_tokens, float *out, bool each) {
    matmul_job j;
    matmul_mem m;
    const int n_tasks = prepare_matmul(&j, &m, w, x, n_tokens, out, each);
    sp_parallel_for_sized(n_tasks, matmul_task, &j, (int64_t)n_tokens * w->n_in * w->n_out);
    release_matmul(&m);
}

/* Several products of one x as one job: its tasks are the products' tasks one after another. */
typedef struct {
    matmul_job jobs[SP_MATMUL_GROUP_MOST];
    int first[SP_MATMUL_GROUP_MOST + 1]; /* job i's tasks are [first[i], first[i + 1]) */
} matmul_group;

static void group_task(void *arg, int task, int n_tasks) {
    (void)n_tasks;
    matmul_group *g = arg;
    int i = 0;
    while (task >= g->first[i + 1]) i++;
    matmul_task(&g->jobs[i], task - g->first[i], g->first[i + 1] - g->first[i]);
}

void sp_matmul_each_group(int n_w, const sp_weight *const *w, const float *x, int n_tokens, float *const *out) {
    matmul_group g;
    matmul_mem m[SP_MATMUL_GROUP_MOST];
    int64_t macs = 0;
    g.first[0] = 0;
    for (int i = 0; i < n_w; i++) {
        g.first[i + 1] = g.first[i] + prepare_matmul(&g.jobs[i], &m[i], w[i], x, n_tokens, out[i], true);
        macs += (int64_t)n_tokens * w[i]->n_in * w[i]->n_out;
    }
    sp_parallel_for_sized(g.first[n_w], group_task, &g, macs);
    for (int i = 0; i < n_w; i++) release_matmul(&m[i]);
}

void sp_matmul(const sp_weight *w, const float *x, int n_tokens, float *out) { matmul(w, x, n_tokens, out, false); }
void sp_matmul_each(const sp_weight *w, const float *x, int n_tokens, float *out) { matmul(w, x, n_tokens, out, true); }

/* ------------------------------------------------------------------ elementwise */

void sp_rmsnorm(float *out, const float *x, const float *weight, int n_rows, int n, float eps) {
    for (int r = 0; r < n_rows; r++, x += n, out += n) {
        /* double: the sum of n squares must not lose the small ones; eight sums, each over every
         * eighth value, then added in one order — a chain of n dependent additions took its
         * latency n times (SmolLM2-135M pp512: sp_rmsnorm 2.7 % of the samples) */
        double part[8] = {0};
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) part[k] += (double)x[i + k] * x[i + k];
        for (; i < n; i++) part[i % 8] += (double)x[i] * x[i];
        const double ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        const float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) out[i] = x[i] * scale * (weight ? weight[i] : 1.0f);
    }
}

#define TWO_PI 6.28318530717958647692 /* one turn of a RoPE pair, in radians */

/* The pair whose wavelength fits `turns` times into ctx tokens (a fraction: the ramp's ends). */
static double yarn_pair(int n_rot, int ctx, double turns, double base) {
    return n_rot * log(ctx / (turns * TWO_PI)) / (2 * log(base));
}

void sp_rope_set_yarn(sp_rope_params *p, float factor, int orig_ctx, float beta_fast, float beta_slow, float attn_factor,
                      bool by_turns) {
    p->yarn = true;
    p->yarn_by_turns = by_turns;
    p->yarn_orig = (float)orig_ctx;
    p->yarn_beta_fast = beta_fast;
    p->yarn_beta_slow = beta_slow;
    p->freq_scale = 1.0f / factor;
    /* whole pairs at the ends, as llama.cpp rounds them, so that a GGUF reads the same in both */
    const double lo = floor(yarn_pair(p->n_rot, orig_ctx, beta_fast, p->base));
    const double hi = ceil(yarn_pair(p->n_rot, orig_ctx, beta_slow, p->base));
    p->yarn_lo = (float)(lo > 0 ? lo : 0);
    p->yarn_hi = (float)(hi < p->n_rot - 1 ? hi : p->n_rot - 1);
    p->yarn_mscale = attn_factor * (1.0f + 0.1f * logf(factor));
}

void sp_rope_table(const sp_rope_params *p, const int32_t *pos, int n, float *cs) {
    const int half = p->n_rot / 2;
    double freq[512], mix[512]; /* mix: the share of the pair's own frequency (1 = not interpolated) */
    for (int i = 0; i < half && i < 512; i++) {
        freq[i] = pow((double)p->base, -2.0 * i / p->n_rot);
        if (p->freq_factors) freq[i] /= p->freq_factors[i];
        mix[i] = 0;
        if (p->yarn && p->yarn_by_turns) {
            const double turns = p->yarn_orig * freq[i] / TWO_PI;
            mix[i] = fmin(1, fmax(0, (turns - p->yarn_beta_slow) / fmax(1e-3, p->yarn_beta_fast - p->yarn_beta_slow)));
        } else if (p->yarn) {
            const double y = (i - p->yarn_lo) / fmax(0.001, p->yarn_hi - p->yarn_lo);
            mix[i] = 1 - fmin(1, fmax(0, y));
        }
    }
    const double mscale = p->yarn ? p->yarn_mscale : 1.0;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            const double own = (double)pos[t] * freq[i], theta = own * (p->freq_scale * (1 - mix[i]) + mix[i]);
            cs[(int64_t)t * p->n_rot + 2 * i] = (float)(cos(theta) * mscale);
            cs[(int64_t)t * p->n_rot + 2 * i + 1] = (float)(sin(theta) * mscale);
        }
}

void sp_rope_apply(float *x, int n_heads, int head_dim, const float *cs, const sp_rope_params *p) {
    const int half = p->n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            const int a = p->neox ? i : 2 * i, b = p->neox ? i + half : 2 * i + 1;
            const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void sp_silu_mul(float *gate, const float *up, int64_t n) {
    sp_kernels()->silu_mul(gate, up, n);
}

/* ------------------------------------------------------------------ attention */

/*
 * Flash-attention style: one task = one KV head × a tile of query tokens, so the queries of all
 * the heads that share that KV head (GQA) run together against each tile of keys. Per key tile:
 * convert K and V to f32 once, then the scores key-major, an online softmax (running max and
 * sum per row) and P·V (see attention_task). Memory is O(tile), never O(tokens²).
 *
 * Decode (at most DECODE_MAX_TOKENS query tokens) is split the other way (flash-decoding): the
 * few rows leave nothing to share out but the keys, so one task = one chunk of KEY_CHUNK keys for
 * a run of KV heads (all of them unless that leaves under four tasks a thread), each head leaving
 * a partial (running max, sum, unnormalised output) per row, merged in chunk order. The run reads
 * the chunk's cache rows whole, tile by tile, rather than one head's slice of each. The keys are
 * read from the cache (an f16 tile converted once, no transpose), and the chunks are fixed
 * (multiples of KEY_CHUNK from key 0) and a row's sums are its own (attn_scores, attn_values), so
 * a row comes out bit for bit the same whether it is decoded alone or among a few (speculative
 * decoding's check, a server's batched step), whatever the runs. A small job (a short context)
 * runs on the calling thread alone.
 */
#define SUB_ROWS 64  /* query rows (tokens × the heads sharing a KV head) a step of the products holds */
#define K_TILE 64    /* keys per step */
/* Query rows per task: up to TASK_ROWS, in sub-tiles of SUB_ROWS that each key tile, converted
 * once, passes through in turn. A task converts (f16) every key tile its rows see, so the more
 * rows share a conversion the less it weighs — a quarter of the attention's time with 64 rows a
 * task (Intel Xeon, the draft's 8/4 heads at 8k keys, one thread; 256 rows: +7-19 % at 8k-16k
 * keys, docs/benchmarks.md) — while each step's operands
 * (a sub-tile's queries, scores and sums, one key tile) stay the size that fits L1. Fewer
 * tasks than four a thread and the task shrinks, down to one sub-tile: short prompts keep the
 * threads busy. The tiling changes no result (every row's sums are its own). */
#define TASK_ROWS 256

typedef struct {
    const sp_attention_args *a;
    int n_q_tiles, q_tile; /* query tokens per task (at least 1) */
} attention_job;

static void load_rows(const void *cache, bool f16, int64_t first, int n, int64_t stride, int64_t col, int hd, float *dst,
                      const sp_isa_kernels *k) {
    for (int i = 0; i < n; i++) {
        const int64_t off = (first + i) * stride + col;
        if (f16) k->f16_to_f32((const uint16_t *)cache + off, dst + (int64_t)i * hd, hd);
        else memcpy(dst + (int64_t)i * hd, (const float *)cache + off, (size_t)hd * sizeof(float));
    }
}

/* One sub-tile's running state: its queries transposed (Qt[d][r], padding rows zero), the
 * unnormalised sums, and per row the running max and sum, the keys it sees. */
typedef struct {
    float *Qt, *acc, *m, *l, *corr;
    int *live, *seen;
    int r0, rows, ld, max_visible;
} attention_sub;

/* Scores are kept transposed (key-major, St[key][row]): K is used as it is, the online softmax
 * runs across query rows in vectors, and P·V reads St through A's strides. An f32 cache is read
 * where it lies; an f16 one is converted a key tile at a time, once for all the sub-tiles. */
static void attention_task(void *arg, int task, int n_tasks) {
    (void)n_tasks;
    const attention_job *j = arg;
    const sp_attention_args *a = j->a;
    const sp_isa_kernels *k = sp_kernels();
    const int kvh = task / j->n_q_tiles, t0 = (task % j->n_q_tiles) * j->q_tile;
    const int nt = a->n_q - t0 < j->q_tile ? a->n_q - t0 : j->q_tile;
    const int hd = a->head_dim, group = a->n_head / a->n_head_kv, rows = nt * group;
    const int n_sub = (rows + SUB_ROWS - 1) / SUB_ROWS;
    const int64_t q_dim = (int64_t)a->n_head * hd, kv_dim = (int64_t)a->n_head_kv * hd;

    /* per sub-tile: Qt and acc (SUB_ROWS × hd each), m, l, corr, live, seen (SUB_ROWS each); shared:
     * St, and the converted key and value tiles */
    const size_t per_sub = (size_t)SUB_ROWS * hd * 2 + (size_t)SUB_ROWS * 5;
    const size_t need = per_sub * (size_t)n_sub + (size_t)K_TILE * SUB_ROWS + (size_t)K_TILE * hd * 2;
    float *buf = scratch_get(need);
    if (!buf) return; /* leaves out untouched; only on allocation failure */
    float *St = buf, *K = St + (size_t)K_TILE * SUB_ROWS, *V = K + (size_t)K_TILE * hd;
    /* more sub-tiles than TASK_ROWS holds only where one token's heads outnumber it */
    attention_sub few[TASK_ROWS / SUB_ROWS], *sub = n_sub <= TASK_ROWS / SUB_ROWS ? few : malloc((size_t)n_sub * sizeof *sub);
    if (!sub) return;
    int max_visible = 0;
    for (int s = 0; s < n_sub; s++) {
        attention_sub *u = &sub[s];
        float *f = V + (size_t)K_TILE * hd + per_sub * (size_t)s;
        u->r0 = s * SUB_ROWS;
        u->rows = rows - u->r0 < SUB_ROWS ? rows - u->r0 : SUB_ROWS;
        u->ld = (u->rows + 15) & ~15; /* row count padded to whole vectors */
        u->Qt = f, u->acc = f + (size_t)SUB_ROWS * hd, u->m = u->acc + (size_t)SUB_ROWS * hd;
        u->l = u->m + SUB_ROWS, u->corr = u->l + SUB_ROWS;
        u->live = (int *)(u->corr + SUB_ROWS), u->seen = u->live + SUB_ROWS; /* as many ints as floats */
        /* row r = (token t0 + r / group, head kvh*group + r % group), pre-scaled by 1/sqrt(d) */
        u->max_visible = 0;
        memset(u->Qt, 0, (size_t)u->ld * hd * sizeof *u->Qt);
        for (int i = 0; i < u->rows; i++) {
            const int r = u->r0 + i, t = t0 + r / group, h = kvh * group + r % group;
            const float *src = a->q + (int64_t)t * q_dim + (int64_t)h * hd;
            for (int d = 0; d < hd; d++) u->Qt[(int64_t)d * u->ld + i] = src[d] * a->scale;
            if (a->n_visible[t] > u->max_visible) u->max_visible = a->n_visible[t];
        }
        for (int i = 0; i < u->ld; i++) {
            u->m[i] = -INFINITY;
            u->l[i] = 0;
            u->seen[i] = i < u->rows ? a->n_visible[t0 + (u->r0 + i) / group] : 0; /* keys row i sees (padding rows: none) */
        }
        memset(u->acc, 0, (size_t)u->ld * hd * sizeof *u->acc);
        if (u->max_visible > max_visible) max_visible = u->max_visible;
    }

    for (int c0 = 0; c0 < max_visible; c0 += K_TILE) {
        const int nk = max_visible - c0 < K_TILE ? max_visible - c0 : K_TILE;
        const float *Kt = K, *Vt = V;
        int64_t ldk = hd;
        if (a->kv_f16) {
            load_rows(a->k_cache, true, c0, nk, kv_dim, (int64_t)kvh * hd, hd, K, k);
            load_rows(a->v_cache, true, c0, nk, kv_dim, (int64_t)kvh * hd, hd, V, k);
        } else {
            Kt = (const float *)a->k_cache + c0 * kv_dim + (int64_t)kvh * hd;
            Vt = (const float *)a->v_cache + c0 * kv_dim + (int64_t)kvh * hd;
            ldk = kv_dim;
        }
        for (int s = 0; s < n_sub; s++) {
            attention_sub *u = &sub[s];
            if (u->max_visible <= c0) continue; /* no row of it sees this tile */
            const int nku = u->max_visible - c0 < nk ? u->max_visible - c0 : nk;
            for (int i = 0; i < u->ld; i++) u->live[i] = u->seen[i] - c0; /* keys of this tile the row sees (≤ 0: none) */
            k->gemm_nn(Kt, ldk, 1, u->Qt, u->ld, St, u->ld, nku, u->ld, hd, false); /* St[c][r] = k_c · q_r */
            /* the padding rows too (they see nothing): every row takes the vector form, whatever the tiling */
            k->softmax_tile(St, u->ld, nku, u->ld, u->live, u->m, u->l, u->corr);
            for (int i = 0; i < u->rows; i++)
                if (u->corr[i] != 1.0f)
                    for (int d = 0; d < hd; d++) u->acc[(int64_t)i * hd + d] *= u->corr[i];
            k->gemm_nn(St, 1, u->ld, Vt, ldk, u->acc, hd, u->rows, hd, nku, true); /* acc[r] += sum_c St[c][r] · v_c */
        }
    }
    for (int s = 0; s < n_sub; s++) {
        const attention_sub *u = &sub[s];
        for (int i = 0; i < u->rows; i++) {
            const int r = u->r0 + i, t = t0 + r / group, h = kvh * group + r % group;
            float *dst = a->out + (int64_t)t * q_dim + (int64_t)h * hd;
            const float inv = u->l[i] > 0 ? 1.0f / u->l[i] : 0;
            for (int d = 0; d < hd; d++) dst[d] = u->acc[(int64_t)i * hd + d] * inv;
        }
    }
    if (sub != few) free(sub);
}

#define KEY_CHUNK 256 /* keys per decode task */

typedef struct {
    const sp_attention_args *a;
    int rows, n_chunks;       /* query rows per KV head (tokens × group); key chunks */
    int run, n_runs;          /* KV heads per task, and runs of them (a task: one chunk, one run) */
    float *part;              /* [kv head][chunk][row]: hd sums, then max and sum of exponentials */
} attention_decode_job;

/* The largest of x[0..n) and init. Eight running maxima: one would wait on each comparison in
 * turn (a max has no rounding, so the order does not change the result). */
static float max_of(const float *x, int n, float init) {
    float mx[8] = {init, init, init, init, init, init, init, init};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) mx[u] = x[i + u] > mx[u] ? x[i + u] : mx[u];
    for (; i < n; i++) mx[0] = x[i] > mx[0] ? x[i] : mx[0];
    for (int u = 1; u < 8; u++) mx[0] = mx[u] > mx[0] ? mx[u] : mx[0];
    return mx[0];
}

/* The decode rows' state for one KV head over one key chunk: the rows' queries (pre-scaled), their
 * running sums of weighted values, a tile of scores, and each row's running max and sum. */
typedef struct {
    float *Q, *acc, *S, *m, *l;
} decode_head;

/* Head i's state in a task's scratch of per_head floats a head. */
static decode_head head_state(float *buf, size_t per_head, int i, int rows, int hd) {
    decode_head s;
    s.Q = buf + per_head * (size_t)i;
    s.acc = s.Q + (size_t)rows * hd;
    s.S = s.acc + (size_t)rows * hd;
    s.m = s.S + (size_t)rows * K_TILE;
    s.l = s.m + rows;
    return s;
}

/* One tile of keys [c0, c0+nk) for one KV head's rows: S = Q·Kᵀ and acc += P·V straight from the
 * cache (attn_scores, attn_values), between them per row an online softmax over the keys it
 * sees. Every per-row step depends only on that row and on the tile's keys it sees (a row sees
 * the same keys of a tile whoever else is in the batch), never on the other rows or on how many
 * keys the tile holds past the row's own. */
static void decode_tile(const attention_decode_job *j, const sp_isa_kernels *k, int kvh, int c0, int nk, const decode_head *s) {
    const sp_attention_args *a = j->a;
    const int hd = a->head_dim, group = a->n_head / a->n_head_kv, rows = j->rows;
    const int64_t kv_dim = (int64_t)a->n_head_kv * hd;
    const size_t at = ((size_t)c0 * kv_dim + (size_t)kvh * hd) * (a->kv_f16 ? 2 : 4);
    k->attn_scores(s->Q, rows, hd, (const char *)a->k_cache + at, a->kv_f16, kv_dim, nk, s->S, nk); /* S[r][c] = q_r · k_c */
    for (int r = 0; r < rows; r++) {
        float *sr = s->S + (int64_t)r * nk;
        const int live = a->n_visible[r / group] - c0 < nk ? a->n_visible[r / group] - c0 : nk; /* keys of this tile the row sees */
        if (live <= 0) { memset(sr, 0, (size_t)nk * sizeof *sr); continue; }
        const float mx = max_of(sr, live, s->m[r]);
        const float corr = s->m[r] == -INFINITY ? 1.0f : expf(s->m[r] - mx);
        s->l[r] = s->l[r] * corr + k->exp_shifted(sr, live, mx);
        memset(sr + live, 0, (size_t)(nk - live) * sizeof *sr);
        s->m[r] = mx;
        if (corr != 1.0f)
            for (int d = 0; d < hd; d++) s->acc[(int64_t)r * hd + d] *= corr;
    }
    k->attn_values(s->S, nk, rows, hd, (const char *)a->v_cache + at, a->kv_f16, kv_dim, nk, s->acc); /* acc[r] += sum_c p_rc · v_c */
}

/* One key chunk for a run of KV heads (all of them where there are tasks enough): tile by tile,
 * every head of the run before the next tile. A head's part of a cache row is a short piece
 * (kv_dim apart), so one head alone reads memory in strides no prefetcher follows; the heads of
 * a run together read the tile's rows whole, one stream. Each head's arithmetic is the same
 * whichever run it is in. */
static void attention_decode_task(void *arg, int task, int n_tasks) {
    (void)n_tasks;
    const attention_decode_job *j = arg;
    const sp_attention_args *a = j->a;
    const sp_isa_kernels *k = sp_kernels();
    const int chunk = task / j->n_runs, h0 = task % j->n_runs * j->run;
    const int h1 = h0 + j->run < a->n_head_kv ? h0 + j->run : a->n_head_kv;
    const int hd = a->head_dim, group = a->n_head / a->n_head_kv, rows = j->rows;
    const int64_t q_dim = (int64_t)a->n_head * hd;
    const int c_begin = chunk * KEY_CHUNK;

    const size_t per_head = ((size_t)rows * hd * 2 + (size_t)rows * K_TILE + (size_t)rows * 2 + 15) / 16 * 16; /* each head's on a line */
    float *buf = scratch_get(per_head * (size_t)(h1 - h0));
    if (!buf) { /* allocation failure: this chunk counts as unseen */
        for (int kvh = h0; kvh < h1; kvh++) {
            float *part = j->part + ((int64_t)kvh * j->n_chunks + chunk) * rows * (hd + 2);
            for (int r = 0; r < rows; r++) { part[(int64_t)r * (hd + 2) + hd] = -INFINITY; part[(int64_t)r * (hd + 2) + hd + 1] = 0; }
        }
        return;
    }
    /* row r = (token r / group, head kvh*group + r % group), pre-scaled by 1/sqrt(d) */
    int c_end = c_begin;
    for (int kvh = h0; kvh < h1; kvh++) {
        const decode_head s = head_state(buf, per_head, kvh - h0, rows, hd);
        for (int r = 0; r < rows; r++) {
            const int t = r / group, h = kvh * group + r % group;
            const float *src = a->q + (int64_t)t * q_dim + (int64_t)h * hd;
            for (int d = 0; d < hd; d++) s.Q[(int64_t)r * hd + d] = src[d] * a->scale;
            const int vis = a->n_visible[t] < c_begin + KEY_CHUNK ? a->n_visible[t] : c_begin + KEY_CHUNK;
            if (vis > c_end) c_end = vis;
            s.m[r] = -INFINITY;
            s.l[r] = 0;
        }
        memset(s.acc, 0, (size_t)rows * hd * sizeof *s.acc);
    }
    for (int c0 = c_begin; c0 < c_end; c0 += K_TILE)
        for (int kvh = h0; kvh < h1; kvh++) {
            const decode_head s = head_state(buf, per_head, kvh - h0, rows, hd);
            decode_tile(j, k, kvh, c0, c_end - c0 < K_TILE ? c_end - c0 : K_TILE, &s);
        }
    for (int kvh = h0; kvh < h1; kvh++) {
        const decode_head s = head_state(buf, per_head, kvh - h0, rows, hd);
        float *part = j->part + ((int64_t)kvh * j->n_chunks + chunk) * rows * (hd + 2);
        for (int r = 0; r < rows; r++) {
            float *p = part + (int64_t)r * (hd + 2);
            memcpy(p, s.acc + (int64_t)r * hd, (size_t)hd * sizeof *p);
            p[hd] = s.m[r];
            p[hd + 1] = s.l[r];
        }
    }
}

/* The decode form: partials per (KV head, key chunk, row), merged in chunk order. */
static bool attention_decode(const sp_attention_args *a) {
    const int group = a->n_head / a->n_head_kv, rows = a->n_q * group, hd = a->head_dim;
    int max_visible = 0;
    for (int t = 0; t < a->n_q; t++) if (a->n_visible[t] > max_visible) max_visible = a->n_visible[t];
    attention_decode_job j = {a, rows, (max_visible + KEY_CHUNK - 1) / KEY_CHUNK, a->n_head_kv, 1, NULL};
    if (j.n_chunks == 0) j.n_chunks = 1;
    while (j.run > 1 && (int64_t)j.n_chunks * j.n_runs < 4 * sp_threads_count()) { /* fewer than four tasks a thread: shorter runs */
        j.run = (j.run + 1) / 2;
        j.n_runs = (a->n_head_kv + j.run - 1) / j.run;
    }
    j.part = malloc((size_t)a->n_head_kv * j.n_chunks * rows * (hd + 2) * sizeof *j.part);
    if (!j.part) return false;
    sp_parallel_for_sized(j.n_chunks * j.n_runs, attention_decode_task, &j, (int64_t)2 * rows * a->n_head_kv * max_visible * hd);
    const int64_t q_dim = (int64_t)a->n_head * hd;
    for (int kvh = 0; kvh < a->n_head_kv; kvh++)
        for (int r = 0; r < rows; r++) {
            const int t = r / group, h = kvh * group + r % group;
            const int n_chunks = (a->n_visible[t] + KEY_CHUNK - 1) / KEY_CHUNK; /* the chunks this row sees */
            float *p0 = j.part + ((int64_t)kvh * j.n_chunks * rows + r) * (hd + 2);
            const int64_t step = (int64_t)rows * (hd + 2);
            float mx = -INFINITY, l = 0;
            for (int c = 0; c < n_chunks; c++) if (p0[c * step + hd] > mx) mx = p0[c * step + hd];
            float *dst = a->out + (int64_t)t * q_dim + (int64_t)h * hd;
            if (mx == -INFINITY) { memset(dst, 0, (size_t)hd * sizeof *dst); continue; }
            for (int c = 0; c < n_chunks; c++) { /* each chunk's weight exp(m_c - max) replaces its max */
                float *pc = p0 + c * step;
                pc[hd] = expf(pc[hd] - mx);
                l += pc[hd + 1] * pc[hd];
            }
            const float inv = l > 0 ? 1.0f / l : 0;
            for (int d = 0; d < hd; d++) {
                float sum = 0;
                for (int c = 0; c < n_chunks; c++) sum += p0[c * step + d] * p0[c * step + hd];
                dst[d] = sum * inv;
            }
        }
    free(j.part);
    return true;
}

void sp_attention(const sp_attention_args *a) {
    if (a->n_q <= DECODE_MAX_TOKENS && attention_decode(a)) return;
    const int group = a->n_head / a->n_head_kv;
    int rows = TASK_ROWS; /* fewer than four tasks a thread: smaller tasks, down to one sub-tile */
    while (rows > SUB_ROWS && (int64_t)a->n_head_kv * (((int64_t)a->n_q * group + rows - 1) / rows) < 4 * sp_threads_count()) rows /= 2;
    const int q_tile = rows / group > 0 ? rows / group : 1;
    attention_job j = {a, (a->n_q + q_tile - 1) / q_tile, q_tile};
    sp_parallel_for(a->n_head_kv * j.n_q_tiles, attention_task, &j);
}

typedef struct {
    const float *q;
    int n_q;
    const void *k_cache;
    bool kv_f16;
    int n_keys, n_head, n_head_kv, head_dim;
    float scale;
    int pool_kernel;
    float *acc;
} probs_job;

void sp_avg_pool_1d(float *x, int n, int kernel, double *prefix) {
    if (kernel <= 1 || n <= 1) return;
    const int r = kernel / 2;
    prefix[0] = 0;
    for (int j = 0; j < n; j++) prefix[j + 1] = prefix[j] + x[j];
    for (int j = 0; j < n; j++) {
        const int lo = j - r < 0 ? 0 : j - r, hi = j + r + 1 > n ? n : j + r + 1;
        x[j] = (float)((prefix[hi] - prefix[lo]) / (hi - lo));
    }
}

/* One task per query row: softmax per head over all keys, max over heads into acc. Keys are
 * read (and converted from F16) once per KV head and scored against all the query heads that
 * share it (GQA). */
static void probs_task(void *arg, int qi, int n_tasks) {
    (void)n_tasks;
    const probs_job *j = arg;
    const sp_isa_kernels *k = sp_kernels();
    const int hd = j->head_dim, kv_dim = j->n_head_kv * hd, group = j->n_head / j->n_head_kv;
    /* scores of the group's heads, one key row, and n_keys+1 doubles of prefix sums (pooling) */
    const size_t n = (size_t)j->n_keys;
    float *buf = scratch_get(n * (size_t)group + (size_t)hd + 2 * (n + 1) + 2);
    if (!buf) return;
    float *row = buf + n * (size_t)group;
    double *prefix = (double *)(((uintptr_t)(row + hd) + 7) & ~(uintptr_t)7);
    float *acc = j->acc + (int64_t)qi * j->n_keys;
    for (int kvh = 0; kvh < j->n_head_kv; kvh++) {
        const float *q = j->q + ((int64_t)qi * j->n_head + (int64_t)kvh * group) * hd;
        for (int c = 0; c < j->n_keys; c++) {
            load_rows(j->k_cache, j->kv_f16, c, 1, kv_dim, (int64_t)kvh * hd, hd, row, k);
            for (int g = 0; g < group; g++) buf[(size_t)g * n + (size_t)c] = k->dot_f32(q + (int64_t)g * hd, row, hd) * j->scale;
        }
        for (int g = 0; g < group; g++) {
            float *p = buf + (size_t)g * n, mx = -INFINITY;
            for (int c = 0; c < j->n_keys; c++) mx = p[c] > mx ? p[c] : mx;
            const float inv = 1.0f / k->exp_shifted(p, j->n_keys, mx);
            for (int c = 0; c < j->n_keys; c++) p[c] *= inv;
            sp_avg_pool_1d(p, j->n_keys, j->pool_kernel, prefix);
            for (int c = 0; c < j->n_keys; c++)
                if (p[c] > acc[c]) acc[c] = p[c];
        }
    }
}

void sp_attention_probs_max(const float *q, int n_q, const void *k_cache, bool kv_f16, int n_keys,
                            int n_head, int n_head_kv, int head_dim, float scale, int pool_kernel,
                            float *acc) {
    probs_job j = {q, n_q, k_cache, kv_f16, n_keys, n_head, n_head_kv, head_dim, scale, pool_kernel, acc};
    if (n_keys > 0) sp_parallel_for(n_q, probs_task, &j);
}
