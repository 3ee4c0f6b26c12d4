/* Functions shared between the x86 kernel files (each compiled with its own ISA flags). */
#ifndef SP_KERNELS_X86_H
#define SP_KERNELS_X86_H

#include "kernels.h"

void sp_avx512_gemm_bf16(const uint16_t *w, int64_t ldw, int nr, const uint16_t *x, int64_t ldx, int nt, int64_t k,
                         float *out, int64_t ldo);
void sp_avx512_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);

/* kernels_avx512vnni.c: adds the integer decode kernels to a kernel set */
void sp_avx512vnni_fill(sp_isa_kernels *k);

#endif
