#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "specprefill_dev.h"

int cmd_quantize(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: specprefill quantize IN.gguf OUT.gguf TYPE\n"
               "  TYPE: F32 F16 BF16 Q8_0 Q5_0 Q5_1 Q4_0 Q4_1 Q6_K Q5_K Q4_K, or the mixes Q4_K_M, Q5_K_M\n"
               "  (Q4_K/Q5_K with Q6_K for the output matrix and, in the first and last eighth of the layers\n"
               "  and every third between, attn_v and ffn_down). 1-D tensors stay F32.\n");
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: specprefill quantize IN.gguf OUT.gguf TYPE (see --help)\n");
        return 2;
    }
    sp_quant_plan plan;
    if (!sp_quant_plan_parse(argv[3], &plan)) {
        fprintf(stderr, "error: cannot quantize to '%s' (see --help for the types)\n", argv[3]);
        return 2;
    }
    double t0 = now_seconds();
    if (sp_quantize_file(argv[1], argv[2], &plan) != SP_OK) return fail_status("quantize");
    fprintf(stderr, "wrote %s (%s) in %.1f s\n", argv[2], plan.name, now_seconds() - t0);
    return 0;
}
