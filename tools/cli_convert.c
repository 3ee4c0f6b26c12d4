/* `specprefill convert`: a trained model (safetensors with GGUF tensor names, F32) plus its
 * tokenizer (JSON) and hyper-parameters (JSON) → a GGUF file, written with the project's own
 * writer and quantizer. train/ produces these inputs. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "specprefill_dev.h"

typedef struct {
    const uint8_t *data;
    uint32_t *types;
    uint64_t *offsets;
    int64_t (*ne)[2];
} convert_ctx;

static sp_status fill(void *arg, int index, void *dst, uint64_t n_bytes) {
    (void)n_bytes;
    convert_ctx *c = arg;
    /* safetensors need not align its data (the header's length is free): rows go through an
     * aligned copy, one at a time */
    const uint8_t *src = c->data + c->offsets[index];
    const int64_t cols = c->ne[index][0], rows = c->ne[index][1];
    const size_t rb = sp_row_size(c->types[index], cols);
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row) return sp_fail(SP_ERR_MEMORY, "convert: out of memory");
    sp_status st = SP_OK;
    for (int64_t r = 0; r < rows && st == SP_OK; r++) {
        memcpy(row, src + (size_t)r * (size_t)cols * sizeof *row, (size_t)cols * sizeof *row);
        if (!sp_quantize_rows(c->types[index], row, (uint8_t *)dst + (size_t)r * rb, 1, cols))
            st = sp_fail(SP_ERR_UNSUPPORTED, "convert: cannot write tensor %d in %s", index, sp_tensor_type_name((int)c->types[index]));
    }
    free(row);
    return st;
}

static int json_int(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

int cmd_convert(int argc, char **argv) {
    const char *weights = NULL, *tokenizer = NULL, *config = NULL, *out = NULL, *type = "F16", *name = "specprefill model";
    const cli_option options[] = {
        CLI_OPT("--weights", NULL, CLI_TEXT, &weights, 0, 0, "M.safetensors", "F32 tensors named as in GGUF (token_embd.weight, blk.0.attn_q.weight, ...)"),
        CLI_OPT("--tokenizer", NULL, CLI_TEXT, &tokenizer, 0, 0, "T.json",
                "{\"tokens\", \"types\", \"merges\", \"pre\", \"bos\", \"eos\", \"eot\", \"add_bos\", \"chat_template\"}"),
        CLI_OPT("--config", NULL, CLI_TEXT, &config, 0, 0, "C.json",
                "{\"config\": {\"dim\", \"layers\", \"heads\", \"kv_heads\", \"ffn\", \"rope_base\", \"head_dim\"?}} (train/train.py writes it)"),
        CLI_OPT("--type", NULL, CLI_TEXT, &type, 0, 0, "TYPE", "tensor type or mix of the matrices (as quantize takes)"),
        CLI_OPT("--name", NULL, CLI_TEXT, &name, 0, 0, "NAME", "general.name"),
        CLI_OPT("--output", "-o", CLI_TEXT, &out, 0, 0, "OUT.gguf", "the GGUF to write"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"convert --weights M.safetensors --tokenizer T.json --config C.json -o OUT.gguf [options]",
                             "builds a GGUF from trained weights and a tokenizer (the training in train/ writes both)", options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!weights || !tokenizer || !config || !out) { fprintf(stderr, "error: --weights, --tokenizer, --config and -o are required\n"); return 2; }
    sp_quant_plan plan;
    if (!sp_quant_plan_parse(type, &plan)) { fprintf(stderr, "error: cannot write type '%s'\n", type); return 2; }
    size_t wlen;
    char *wbuf = read_file(weights, &wlen), *tbuf = read_file(tokenizer, NULL), *cbuf = read_file(config, NULL);
    cJSON *tj = tbuf ? cJSON_Parse(tbuf) : NULL, *cj = cbuf ? cJSON_Parse(cbuf) : NULL, *hdr = NULL;
    sp_gguf_writer *w = sp_gguf_writer_new();
    convert_ctx cc = {0};
    int rc = 1;
    if (!wbuf || !tj || !cj || !w) { fprintf(stderr, "error: cannot read the inputs (JSON?)\n"); goto done; }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cj, "config");
    if (!c) c = cj;
    const int dim = json_int(c, "dim", 0), layers = json_int(c, "layers", 0), heads = json_int(c, "heads", 0);
    const int kv = json_int(c, "kv_heads", heads), ffn = json_int(c, "ffn", 0);
    const int head_dim = json_int(c, "head_dim", heads > 0 ? dim / heads : 0);
    const cJSON *rb = cJSON_GetObjectItemCaseSensitive(c, "rope_base");
    if (dim <= 0 || layers <= 0 || heads <= 0 || kv <= 0 || ffn <= 0 || head_dim <= 0 || head_dim % 2 ||
        (!cJSON_GetObjectItemCaseSensitive(c, "head_dim") && dim % heads)) { fprintf(stderr, "error: %s: bad hyper-parameters\n", config); goto done; }
    /* safetensors: u64 header length, JSON header, data */
    uint64_t hl;
    if (wlen < 8 || (memcpy(&hl, wbuf, 8), hl > wlen - 8)) { fprintf(stderr, "error: %s is not a safetensors file\n", weights); goto done; }
    hdr = cJSON_ParseWithLength(wbuf + 8, (size_t)hl);
    if (!hdr) { fprintf(stderr, "error: %s: bad safetensors header\n", weights); goto done; }
    const uint8_t *data = (const uint8_t *)wbuf + 8 + hl;
    const uint64_t data_len = wlen - 8 - hl;

    sp_gguf_writer_str(w, "general.architecture", "llama");
    sp_gguf_writer_str(w, "general.name", name);
    sp_gguf_writer_u32(w, "general.file_type", sp_quant_plan_file_type(&plan));
    sp_gguf_writer_u32(w, "llama.context_length", (uint32_t)json_int(c, "context_length", 8192));
    sp_gguf_writer_u32(w, "llama.embedding_length", (uint32_t)dim);
    sp_gguf_writer_u32(w, "llama.block_count", (uint32_t)layers);
    sp_gguf_writer_u32(w, "llama.feed_forward_length", (uint32_t)ffn);
    sp_gguf_writer_u32(w, "llama.attention.head_count", (uint32_t)heads);
    sp_gguf_writer_u32(w, "llama.attention.head_count_kv", (uint32_t)kv);
    sp_gguf_writer_f32(w, "llama.rope.freq_base", cJSON_IsNumber(rb) ? (float)rb->valuedouble : 10000.0f);
    sp_gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    sp_gguf_writer_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    if (head_dim * heads != dim) { /* heads narrower than the residual stream: say so explicitly */
        sp_gguf_writer_u32(w, "llama.attention.key_length", (uint32_t)head_dim);
        sp_gguf_writer_u32(w, "llama.attention.value_length", (uint32_t)head_dim);
    }
    /* tokenizer */
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(tj, "tokens"), *types = cJSON_GetObjectItemCaseSensitive(tj, "types");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(tj, "merges");
    const int nt = cJSON_GetArraySize(toks), nm = cJSON_GetArraySize(merges);
    if (!cJSON_IsArray(toks) || nt == 0 || cJSON_GetArraySize(types) != nt || !cJSON_IsArray(merges)) {
        fprintf(stderr, "error: %s: needs tokens, types (same length) and merges\n", tokenizer);
        goto done;
    }
    const char **tt = calloc((size_t)nt + (size_t)nm + 1, sizeof *tt);
    int32_t *ty = calloc((size_t)nt + 1, sizeof *ty);
    if (!tt || !ty) { free(tt); free(ty); goto done; }
    for (int i = 0; i < nt; i++) {
        tt[i] = cJSON_GetStringValue(cJSON_GetArrayItem(toks, i));
        ty[i] = cJSON_GetArrayItem(types, i)->valueint;
        if (!tt[i]) tt[i] = "";
    }
    sp_gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(tj, "pre");
    sp_gguf_writer_str(w, "tokenizer.ggml.pre", cJSON_IsString(pre) ? pre->valuestring : "llama-bpe");
    sp_gguf_writer_str_array(w, "tokenizer.ggml.tokens", tt, NULL, (uint64_t)nt);
    sp_gguf_writer_i32_array(w, "tokenizer.ggml.token_type", ty, (uint64_t)nt);
    for (int i = 0; i < nm; i++) {
        tt[i] = cJSON_GetStringValue(cJSON_GetArrayItem(merges, i));
        if (!tt[i]) tt[i] = "";
    }
    sp_gguf_writer_str_array(w, "tokenizer.ggml.merges", tt, NULL, (uint64_t)nm);
    free(tt);
    free(ty);
    sp_gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)json_int(tj, "bos", 0));
    sp_gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)json_int(tj, "eos", 0));
    if (json_int(tj, "eot", -1) >= 0) sp_gguf_writer_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)json_int(tj, "eot", 0));
    sp_gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tj, "add_bos")));
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(tj, "chat_template");
    if (cJSON_IsString(tmpl)) sp_gguf_writer_str(w, "tokenizer.chat_template", tmpl->valuestring);
    /* tensors */
    const int n = cJSON_GetArraySize(hdr);
    cc.data = data;
    cc.types = calloc((size_t)n + 1, sizeof *cc.types);
    cc.offsets = calloc((size_t)n + 1, sizeof *cc.offsets);
    cc.ne = calloc((size_t)n + 1, sizeof *cc.ne);
    if (!cc.types || !cc.offsets || !cc.ne) goto done;
    const bool tied = !cJSON_GetObjectItemCaseSensitive(hdr, "output.weight");
    int idx = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, hdr) {
        if (strcmp(t->string, "__metadata__") == 0) continue;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape"), *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        const char *dtype = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "dtype"));
        const int nd = cJSON_GetArraySize(shape);
        if (!dtype || strcmp(dtype, "F32") || nd < 1 || nd > 2 || cJSON_GetArraySize(offs) != 2) {
            fprintf(stderr, "error: tensor %s: only 1-D/2-D F32 tensors are supported\n", t->string);
            goto done;
        }
        /* safetensors shapes are row-major [rows, cols]; GGUF's ne is [cols, rows] */
        const int64_t cols = (int64_t)cJSON_GetArrayItem(shape, nd - 1)->valuedouble, rows = nd == 2 ? (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble : 1;
        const uint64_t o0 = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble, o1 = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
        if (cols <= 0 || rows <= 0 || o1 < o0 || o1 > data_len || o1 - o0 != (uint64_t)(cols * rows * 4)) {
            fprintf(stderr, "error: tensor %s: shape and data do not match\n", t->string);
            goto done;
        }
        int64_t ne[2] = {cols, rows};
        cc.types[idx] = (uint32_t)sp_quant_type_for(&plan, t->string, nd, (long)cols, layers, tied);
        cc.offsets[idx] = o0;
        cc.ne[idx][0] = cols;
        cc.ne[idx][1] = rows;
        sp_gguf_writer_tensor(w, t->string, cc.types[idx], nd, ne, NULL);
        idx++;
    }
    sp_gguf_writer_set_fill(w, fill, &cc);
    if (sp_gguf_writer_write(w, out) != SP_OK) { fail_status("writing"); goto done; }
    fprintf(stderr, "wrote %s (%d tensors, %s)\n", out, idx, plan.name);
    rc = 0;
done:
    free(cc.types); free(cc.offsets); free(cc.ne);
    sp_gguf_writer_free(w);
    cJSON_Delete(hdr); cJSON_Delete(tj); cJSON_Delete(cj);
    free(wbuf); free(tbuf); free(cbuf);
    return rc;
}
