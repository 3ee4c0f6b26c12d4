/* specprefill — command-line entry point: dispatches to one subcommand per file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} commands[] = {
    {"generate", cmd_generate, "generate text from a prompt (streams to stdout, timings to stderr)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with speculative prefill per request"},
    {"info", cmd_info, "print a model's architecture, shapes, tensor types, vocabulary and chat template"},
    {"template", cmd_template, "a chat template's rendering of a conversation (JSON messages), as transformers renders it"},
    {"tokenize", cmd_tokenize, "UTF-8 text on stdin -> token ids as a JSON array"},
    {"detokenize", cmd_detokenize, "JSON array of token ids on stdin -> text"},
    {"eval", cmd_eval, "accuracy of full vs speculative prefill vs baselines on question-answer documents"},
    {"bench", cmd_bench, "prompt-processing / generation speed and speculative-prefill TTFT, like llama-bench"},
    {"bench-serve", cmd_bench_serve, "requests per second within a TTFT target against a server, full prefill vs SpecPrefill"},
    {"logits", cmd_logits, "run a case file (tokens + positions per batch) and print the logits as JSON"},
    {"quantize", cmd_quantize, "convert a model's matrices to another type or mix (Q8_0, Q4_K_M, ...)"},
    {"convert", cmd_convert, "build a GGUF from trained weights (safetensors) and a tokenizer (train)"},
    {"make-model", cmd_make_model, "write a random-weight GGUF model of any shape and type (tests, benchmarks)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: specprefill COMMAND [options]   (specprefill COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nenvironment:\n"
               "  SPECPREFILL_ISA=scalar|avx2|avx2-vnni|avx512|avx512-noamx|avx512-nobf16|avx512-novnni|avx512-base   a kernel set (default: the best this CPU has)\n"
               "  SPECPREFILL_F16=exact|bf16   F16 weights exactly in f32, or with bf16 operands where they are faster: AMD Zen 4/5, AMX (default exact)\n");
}

/* The environment's settings, given to the library explicitly (it reads no environment). */
static int apply_environment(void) {
    const char *isa = getenv("SPECPREFILL_ISA"), *f16 = getenv("SPECPREFILL_F16");
    if (isa && *isa && sp_set_kernels(isa) != SP_OK) {
        fprintf(stderr, "error: SPECPREFILL_ISA: %s\n", sp_last_error());
        return 2;
    }
    if (f16 && *f16) {
        if (strcmp(f16, "bf16") != 0 && strcmp(f16, "exact") != 0) {
            fprintf(stderr, "error: SPECPREFILL_F16 is 'bf16' or 'exact', not '%s'\n", f16);
            return 2;
        }
        sp_set_f16_as_bf16(strcmp(f16, "bf16") == 0);
    }
    return 0;
}

int main(int argc, char **argv) {
    const int env = apply_environment();
    if (env) return env;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
