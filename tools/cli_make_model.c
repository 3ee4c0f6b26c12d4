/* `specprefill make-model`: random-weight GGUF files of real shapes, for tests and benchmarks.
 * Weights are seeded N(0, 0.02²) matrices and 1 + 0.1·N(0,1) norms, like the fixtures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "specprefill_dev.h"

typedef struct {
    uint64_t seed;
    int n_tensors;
    uint32_t *types;
    int64_t (*ne)[2];
    uint8_t *kind; /* 0 matrix, 1 norm, 2 bias, 3 rope factors */
} fill_ctx;

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_normal(uint64_t *s) {
    double u1 = ((rng_next(s) >> 11) + 1.0) * 0x1.0p-53, u2 = (rng_next(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static sp_status fill(void *arg, int index, void *dst, uint64_t n_bytes) {
    (void)n_bytes;
    fill_ctx *c = arg;
    uint64_t s = c->seed * 1000003u + (uint64_t)index;
    const int64_t n_in = c->ne[index][0], rows = c->ne[index][1];
    float *row = malloc((size_t)n_in * sizeof *row);
    if (!row) return SP_ERR_MEMORY;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < n_in; i++) {
            switch (c->kind[index]) {
            case 0: row[i] = 0.02f * rng_normal(&s); break;
            case 1: row[i] = 1.0f + 0.1f * rng_normal(&s); break;
            case 2: row[i] = 0.1f * rng_normal(&s); break;
            default: row[i] = i < n_in / 4 ? 1.0f : i < n_in / 2 ? 4.0f : 32.0f; break;
            }
        }
        if (!sp_quantize_rows(c->types[index], row, (uint8_t *)dst + (size_t)r * sp_row_size(c->types[index], n_in), 1, n_in)) {
            free(row);
            return sp_fail(SP_ERR_UNSUPPORTED, "make-model: cannot write a row of %lld values in %s", (long long)n_in,
                           sp_tensor_type_name((int)c->types[index]));
        }
    }
    free(row);
    return SP_OK;
}

static const char *builtin_template =
    "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}";

int cmd_make_model(int argc, char **argv) {
    const char *out = NULL, *vocab_from = NULL, *type_name = "F16";
    int n_embd = 256, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 768, n_vocab = 512, seed = 1, ctx = 8192, arch_index = 0, preset = 0;
    double rope_base = 500000;
    bool tied = false;
    const cli_option options[] = {
        CLI_OPT("--output", "-o", CLI_TEXT, &out, 0, 0, "OUT.gguf", "the GGUF to write"),
        CLI_OPT("--preset", NULL, CLI_CHOICE, &preset, 0, 0, "tiny|1b|draft",
                "a shape: tiny (the defaults below), 1b (Llama-3.2-1B: n_embd 2048, 16 layers, 32/8 heads, ffn 8192, tied), "
                "draft (n_embd 512, 8 layers, 8/4 heads, ffn 1536, tied); shape options override it"),
        CLI_OPT("--arch", NULL, CLI_CHOICE, &arch_index, 0, 0, "llama|qwen2|qwen3", "architecture"),
        CLI_OPT("--n-embd", NULL, CLI_INT, &n_embd, 32, 65536, "N", "embedding width"),
        CLI_OPT("--n-layer", NULL, CLI_INT, &n_layer, 1, 512, "N", "layers"),
        CLI_OPT("--n-head", NULL, CLI_INT, &n_head, 1, 1024, "N", "attention heads"),
        CLI_OPT("--n-head-kv", NULL, CLI_INT, &n_head_kv, 1, 1024, "N", "key/value heads"),
        CLI_OPT("--n-ff", NULL, CLI_INT, &n_ff, 32, 1 << 20, "N", "feed-forward width"),
        CLI_OPT("--tied", NULL, CLI_FLAG, &tied, 0, 0, NULL, "no output.weight: logits use the token embedding"),
        CLI_OPT("--n-vocab", NULL, CLI_INT, &n_vocab, 261, 1 << 20, "N", "size of the built-in byte-level vocabulary (without --vocab-from)"),
        CLI_OPT("--vocab-from", NULL, CLI_TEXT, &vocab_from, 0, 0, "FILE", "copy the tokenizer (and its vocabulary size) from another GGUF"),
        CLI_OPT("--type", NULL, CLI_TEXT, &type_name, 0, 0, "T", "F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q6_K, Q5_K, Q4_K, Q4_K_M, Q5_K_M"),
        CLI_OPT("--rope-base", NULL, CLI_DOUBLE, &rope_base, 1, 1e12, "X", "RoPE frequency base"),
        CLI_OPT("--ctx", NULL, CLI_INT, &ctx, 1, 1 << 24, "N", "training context written in the metadata"),
        CLI_OPT("--seed", NULL, CLI_INT, &seed, 0, 0x7fffffff, "S", "seed of the random weights"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"make-model -o OUT.gguf [options]", "writes a model with random weights, of any shape and type (tests, benchmarks)",
                             options, NULL, NULL, 0, NULL};
    /* a preset sets the shape first; the shape options given with it still win */
    for (int i = 1; i < argc; i++) {
        const char *v = strncmp(argv[i], "--preset=", 9) == 0 ? argv[i] + 9 : strcmp(argv[i], "--preset") == 0 && i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(v, "1b")) { n_embd = 2048; n_layer = 16; n_head = 32; n_head_kv = 8; n_ff = 8192; tied = true; }
        else if (v && !strcmp(v, "draft")) { n_embd = 512; n_layer = 8; n_head = 8; n_head_kv = 4; n_ff = 1536; tied = true; }
    }
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    static const char *const arches[] = {"llama", "qwen2", "qwen3"};
    const char *arch = arches[arch_index];
    sp_quant_plan plan;
    if (!sp_quant_plan_parse(type_name, &plan)) { fprintf(stderr, "error: cannot write tensors of type '%s'\n", type_name); return 2; }
    if (!out) { fprintf(stderr, "error: -o OUT.gguf is required\n"); return 2; }
    if (n_embd % n_head || n_head % n_head_kv) { fprintf(stderr, "error: n_embd must divide by n_head, n_head by n_head_kv\n"); return 2; }
    const int type = plan.base;

    sp_gguf_writer *w = sp_gguf_writer_new();
    int rc = 1;
    char key[128];
    if (!w) { fprintf(stderr, "error: out of memory\n"); return 1; }
    sp_gguf_writer_str(w, "general.architecture", arch);
    sp_gguf_writer_str(w, "general.name", "specprefill random model");
    sp_gguf_writer_u32(w, "general.file_type", sp_quant_plan_file_type(&plan));
#define ARCH_KEY(k) (snprintf(key, sizeof key, "%s.%s", arch, k), key)
    sp_gguf_writer_u32(w, ARCH_KEY("context_length"), (uint32_t)ctx);
    sp_gguf_writer_u32(w, ARCH_KEY("embedding_length"), (uint32_t)n_embd);
    sp_gguf_writer_u32(w, ARCH_KEY("block_count"), (uint32_t)n_layer);
    sp_gguf_writer_u32(w, ARCH_KEY("feed_forward_length"), (uint32_t)n_ff);
    sp_gguf_writer_u32(w, ARCH_KEY("attention.head_count"), (uint32_t)n_head);
    sp_gguf_writer_u32(w, ARCH_KEY("attention.head_count_kv"), (uint32_t)n_head_kv);
    sp_gguf_writer_f32(w, ARCH_KEY("rope.freq_base"), (float)rope_base);
    sp_gguf_writer_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    sp_gguf_writer_u32(w, ARCH_KEY("rope.dimension_count"), (uint32_t)(n_embd / n_head));
#undef ARCH_KEY

    if (vocab_from) {
        /* the file's tokenizer, as the engine reads it (a file without one does not load) */
        sp_model *vm;
        if (sp_model_load(vocab_from, &vm) != SP_OK) { rc = fail_status("--vocab-from"); goto done; }
        n_vocab = sp_model_get_info(vm)->n_vocab;
        sp_model_free(vm);
        if (sp_gguf_writer_copy_keys(w, vocab_from, "tokenizer.") != SP_OK) { rc = fail_status("--vocab-from"); goto done; }
    } else {
        /* byte-level BPE over GPT-2's alphabet, no merges, Llama 3 style special tokens */
        const int n_special = 5;
        static const char *const special[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"};
        char **texts = calloc((size_t)n_vocab, sizeof *texts);
        int32_t *types = calloc((size_t)n_vocab, sizeof *types);
        if (!texts || !types) { free(texts); free(types); fprintf(stderr, "error: out of memory\n"); goto done; }
        for (long i = 0; i < n_vocab; i++) {
            char buf[48];
            if (i < 256) {
                int b = (int)i, cp = b;
                if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
                    int k = 0;
                    for (int c = 0; c < b; c++) k += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
                    cp = 256 + k;
                }
                int len = cp < 0x80 ? (buf[0] = (char)cp, 1) : (buf[0] = (char)(0xC0 | (cp >> 6)), buf[1] = (char)(0x80 | (cp & 0x3F)), 2);
                buf[len] = 0;
                types[i] = SP_TOKEN_NORMAL;
            } else if (i < 256 + n_special) {
                snprintf(buf, sizeof buf, "%s", special[i - 256]);
                types[i] = SP_TOKEN_CONTROL;
            } else {
                snprintf(buf, sizeof buf, "<|reserved_%ld|>", i);
                types[i] = SP_TOKEN_CONTROL;
            }
            texts[i] = strdup(buf);
        }
        sp_gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
        sp_gguf_writer_str(w, "tokenizer.ggml.pre", "llama-bpe");
        sp_gguf_writer_str_array(w, "tokenizer.ggml.tokens", (const char *const *)texts, NULL, (uint64_t)n_vocab);
        sp_gguf_writer_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)n_vocab);
        sp_gguf_writer_str_array(w, "tokenizer.ggml.merges", NULL, NULL, 0);
        sp_gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 256);
        sp_gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 257);
        sp_gguf_writer_u32(w, "tokenizer.ggml.eot_token_id", 258);
        sp_gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", true);
        sp_gguf_writer_str(w, "tokenizer.chat_template", builtin_template);
        for (long i = 0; i < n_vocab; i++) free(texts[i]);
        free(texts);
        free(types);
    }

    /* tensors */
    const int64_t hd = n_embd / n_head, q_dim = n_embd, kv_dim = n_head_kv * hd;
    const int max_t = 4 + (int)n_layer * 14;
    fill_ctx fc = {(uint64_t)seed, 0, malloc((size_t)max_t * sizeof(uint32_t)), malloc((size_t)max_t * sizeof(int64_t[2])), malloc((size_t)max_t)};
    if (!fc.types || !fc.ne || !fc.kind) { fprintf(stderr, "error: out of memory\n"); goto cleanup; }
#define ADD(name, t, n0, n1, k)                                                                  \
    do {                                                                                         \
        (void)(t);                                                                               \
        int64_t ne[2] = {(n0), (n1)};                                                            \
        uint32_t ty = (uint32_t)sp_quant_type_for(&plan, name, (n1) == 1 ? 1 : 2, (long)(n0), (int)n_layer, tied); \
        int idx = sp_gguf_writer_tensor(w, name, ty, (n1) == 1 ? 1 : 2, ne, NULL);                 \
        fc.types[idx] = ty;                                                                      \
        fc.ne[idx][0] = (n0); fc.ne[idx][1] = (n1); fc.kind[idx] = (k);                          \
    } while (0)
    ADD("token_embd.weight", type, n_embd, n_vocab, 0);
    ADD("output_norm.weight", type, n_embd, 1, 1);
    if (!tied) ADD("output.weight", type, n_embd, n_vocab, 0);
    if (!strcmp(arch, "llama")) ADD("rope_freqs.weight", SP_TYPE_F32, hd / 2, 1, 3);
    for (long l = 0; l < n_layer; l++) {
        char name[96];
#define N(s) (snprintf(name, sizeof name, "blk.%ld.%s", l, s), name)
        ADD(N("attn_norm.weight"), type, n_embd, 1, 1);
        ADD(N("attn_q.weight"), type, n_embd, q_dim, 0);
        ADD(N("attn_k.weight"), type, n_embd, kv_dim, 0);
        ADD(N("attn_v.weight"), type, n_embd, kv_dim, 0);
        if (!strcmp(arch, "qwen2")) {
            ADD(N("attn_q.bias"), type, q_dim, 1, 2);
            ADD(N("attn_k.bias"), type, kv_dim, 1, 2);
            ADD(N("attn_v.bias"), type, kv_dim, 1, 2);
        }
        if (!strcmp(arch, "qwen3")) {
            ADD(N("attn_q_norm.weight"), type, hd, 1, 1);
            ADD(N("attn_k_norm.weight"), type, hd, 1, 1);
        }
        ADD(N("attn_output.weight"), type, q_dim, n_embd, 0);
        ADD(N("ffn_norm.weight"), type, n_embd, 1, 1);
        ADD(N("ffn_gate.weight"), type, n_embd, n_ff, 0);
        ADD(N("ffn_up.weight"), type, n_embd, n_ff, 0);
        ADD(N("ffn_down.weight"), type, n_ff, n_embd, 0);
#undef N
    }
#undef ADD
    sp_gguf_writer_set_fill(w, fill, &fc);
    if (sp_gguf_writer_write(w, out) != SP_OK) { fail_status("writing model"); goto cleanup; }
    fprintf(stderr, "wrote %s\n", out);
    rc = 0;
cleanup:
    free(fc.types); free(fc.ne); free(fc.kind);
done:
    sp_gguf_writer_free(w);
    return rc;
}
