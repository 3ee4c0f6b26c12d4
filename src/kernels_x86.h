/* Functions shared between the x86 kernel files (each compiled with its own ISA flags). */
#ifndef SP_KERNELS_X86_H
#define SP_KERNELS_X86_H

#include "kernels.h"

/* Loops over register blocks whose sizes are constants at every call: unrolled, so that the
 * accumulators stay in registers. */
#if defined(__OPTIMIZE__) /* unoptimised builds (sanitizers) warn that they ignore the hint */
#define UNROLL _Pragma("GCC unroll 8")
#else
#define UNROLL
#endif

void sp_avx512_gemm_bf16(const uint32_t *panel, int nr, const uint16_t *x, int64_t ldx, int nt, int k, float *out, int64_t ldo,
                         bool accumulate);
void sp_avx512_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);

/* kernels_avx512vnni.c: adds the integer decode kernels to a kernel set */
void sp_avx512vnni_fill(sp_isa_kernels *k);

#endif
