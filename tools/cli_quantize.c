/* `specprefill quantize`: a GGUF's matrices to another type or mix. */
#include <stdio.h>

#include "cli.h"
#include "options.h"
#include "specprefill_dev.h"

int cmd_quantize(int argc, char **argv) {
    const char *args[3];
    int n_args = 0;
    const cli_option options[] = {CLI_OPTIONS_END};
    const cli_command cmd = {"quantize IN.gguf OUT.gguf TYPE",
                             "TYPE: F32 F16 BF16 Q8_0 Q5_0 Q5_1 Q4_0 Q4_1 Q6_K Q5_K Q4_K, or the mixes Q4_K_M, Q5_K_M\n"
                             "(Q4_K/Q5_K with Q6_K for the output matrix and, in the first and last eighth of the layers\n"
                             "and every third between, attn_v and ffn_down). 1-D tensors stay F32.",
                             options, NULL, args, 3, &n_args};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (n_args != 3) { fprintf(stderr, "error: need IN.gguf OUT.gguf TYPE (see --help)\n"); return 2; }
    sp_quant_plan plan;
    if (!sp_quant_plan_parse(args[2], &plan)) {
        fprintf(stderr, "error: cannot quantize to '%s' (see --help for the types)\n", args[2]);
        return 2;
    }
    double t0 = now_seconds();
    if (sp_quantize_file(args[0], args[1], &plan) != SP_OK) return fail_status("quantize");
    fprintf(stderr, "wrote %s (%s) in %.1f s\n", args[1], plan.name, now_seconds() - t0);
    return 0;
}
