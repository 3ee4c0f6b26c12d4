/* Functions shared between the x86 kernel files (each compiled with its own ISA flags). */
#ifndef SP_KERNELS_X86_H
#define SP_KERNELS_X86_H

#include "kernels.h"

/* Loops over register blocks whose sizes are constants at every call: unrolled, so that the
 * accumulators stay in registers. */
/* Left out where GCC warns "ignoring loop annotation" (an error with -Werror): unoptimised
 * builds, and the sanitizers' -O1 build (GCC 12) */
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__)
#define UNROLL _Pragma("GCC unroll 8")
#else
#define UNROLL
#endif

#if defined(__AVX2__) /* the files compiled for AVX2 and above */
#include <immintrin.h>
#include <string.h>

/* The 4 bytes at p in every 32-bit lane (the integer prefill kernels' token broadcast: a load). */
static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
#endif

/* exp(x) as 2^n · p(r), n = round(x · log2 e), r = x − n · ln 2 with ln 2 in two parts, p the
 * degree-6 minimax polynomial of Cephes' expf (≈ 1-2 ulp): the constants of exp16 (AVX-512) and
 * exp8 (AVX2). */
#define SP_EXP_LOG2E 1.44269504088896341f
#define SP_EXP_LN2_HI 0.693359375f
#define SP_EXP_LN2_LO -2.12194440e-4f
#define SP_EXP_P0 1.9875691500E-4f
#define SP_EXP_P1 1.3981999507E-3f
#define SP_EXP_P2 8.3334519073E-3f
#define SP_EXP_P3 4.1665795894E-2f
#define SP_EXP_P4 1.6666665459E-1f
#define SP_EXP_P5 5.0000001201E-1f

void sp_avx512_gemm_bf16(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int nt, int k, float *out, int64_t ldo,
                         bool accumulate);
void sp_avx512_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
void sp_avx512_f16_to_bf16(const uint16_t *src, uint16_t *dst, int64_t n);

/* kernels_avx512vnni.c: adds the integer decode kernels to a kernel set */
void sp_avx512vnni_fill(sp_isa_kernels *k);
/* its integer prefill kernel (the AMX one hands it the tokens short of a full tile) */
void sp_avx512vnni_gemm_i8(const uint8_t *tile, int group, int codes_max, int codes_offset, int nr, const sp_i8_rows *x, int nt,
                           int64_t k, float *out, int64_t ldo);

/* kernels_avxvnni.c: the integer prefill product and decode dots with 256-bit vpdpbusd, over
 * the AVX2 set */
void sp_avxvnni_fill(sp_isa_kernels *k);

/* kernels_amx.c: the prefill products (integer, and bf16 where the set has it) on the AMX tile
 * unit, over a VNNI set; usable asks the OS for the tile state (Linux) and says whether it was
 * granted */
bool sp_amx_usable(void);
void sp_amx_fill(sp_isa_kernels *k);

#endif
