/* `specprefill info`: what a GGUF holds, as this engine reads it. */
#include <stdio.h>

#include "cli.h"
#include "options.h"

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int n_paths = 0;
    sp_model_params load = sp_model_default_params();
    const cli_option options[] = {CLI_LOAD_OPTIONS(&load), CLI_OPTIONS_END};
    const cli_command cmd = {"info MODEL.gguf",
                             "prints a model's architecture, shapes, tensor types, vocabulary and chat template, and this CPU's kernels",
                             options, NULL, &path, 1, &n_paths};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (n_paths != 1) { fprintf(stderr, "error: which model? (usage: specprefill info MODEL.gguf)\n"); return 2; }
    sp_model *m;
    if (sp_model_load_with(path, &load, &m) != SP_OK) return fail_status("loading model");
    const sp_model_info *i = sp_model_get_info(m);
    printf("file          %s (%.1f MiB, GGUF v%u)\n", path, i->file_size / 1048576.0, (unsigned)i->gguf_version);
    printf("architecture  %s\n", i->arch);
    if (i->has_weights) {
        printf("parameters    %.3f M\n", i->n_params / 1e6);
        printf("layers        %d\n", i->n_layer);
        printf("embedding     %d\n", i->n_embd);
        printf("heads         %d (KV heads %d, head dim %d)\n", i->n_head, i->n_head_kv, i->head_dim);
        printf("feed-forward  %d\n", i->n_ff);
        printf("rope          base %g, %d dims, %s%s", i->rope_base, i->n_rot, i->rope_neox ? "neox" : "normal",
               i->rope_freq_factors ? ", llama3 frequency factors" : "");
        if (i->rope_scaling == SP_ROPE_SCALING_LINEAR) printf(", linear scaling x%g", i->rope_scale);
        if (i->rope_scaling == SP_ROPE_SCALING_YARN) printf(", YaRN x%g from %d", i->rope_scale, i->rope_orig_ctx);
        if (i->rope_scaling == SP_ROPE_SCALING_NONE && !i->rope_freq_factors && i->n_ctx_train > 0)
            printf(" (YaRN past %d tokens unless --rope-scaling none)", i->n_ctx_train);
        printf("\n");
        printf("rms eps       %g\n", i->rms_eps);
        printf("output        %s\n", i->tied_output ? "tied to token embedding" : "separate");
        printf("tensor types ");
        for (int t = 0; t < SP_N_TENSOR_TYPES; t++)
            if (i->n_tensors_of_type[t]) printf(" %s×%d", sp_tensor_type_name(t), i->n_tensors_of_type[t]);
        printf("\n");
        if (load.repack)
            printf("repacked      %d matrices (%.1f MiB) for the %s kernels\n", i->n_repacked, i->repacked_bytes / 1048576.0,
                   sp_kernels_name());
    } else {
        printf("weights       none (vocabulary-only file)\n");
    }
    printf("context       %d (training)\n", i->n_ctx_train);
    printf("vocabulary    %d tokens, bos %d, eos %d\n", i->n_vocab, sp_token_bos(m), sp_token_eos(m));
    const char *t = sp_chat_template_detect(m);
    printf("chat template %s\n", t ? t : i->has_chat_template ? "present but not recognised" : "none");
    printf("cpu           %s; kernels %s\n", sp_cpu_features(), sp_kernels_name());
    sp_model_free(m);
    return 0;
}
