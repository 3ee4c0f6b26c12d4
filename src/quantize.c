#include "quantize.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gguf_writer.h"
#include "quant.h"

bool sp_quant_plan_parse(const char *name, sp_quant_plan *plan) {
    char up[16];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof up) return false;
    for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)name[i]);
    snprintf(plan->name, sizeof plan->name, "%s", up);
    plan->more = -1;
    if (strcmp(up, "Q4_K_M") == 0) { plan->base = SP_TYPE_Q4_K; plan->more = SP_TYPE_Q6_K; return true; }
    if (strcmp(up, "Q5_K_M") == 0) { plan->base = SP_TYPE_Q5_K; plan->more = SP_TYPE_Q6_K; return true; }
    int t = sp_type_from_name(up);
    const sp_type_traits *tt = t >= 0 ? sp_type_traits_get((uint32_t)t) : NULL;
    if (!tt || !tt->quantize) return false;
    plan->base = t;
    return true;
}

uint32_t sp_quant_plan_file_type(const sp_quant_plan *plan) {
    /* llama.cpp's llama_ftype numbers (not the tensor type ids): what general.file_type means to
     * every reader. A file all of Q4_K or Q5_K is closest to its _S mix. */
    if (strcmp(plan->name, "Q4_K_M") == 0) return 15;
    if (strcmp(plan->name, "Q5_K_M") == 0) return 17;
    switch (plan->base) {
    case SP_TYPE_F32: return 0;
    case SP_TYPE_F16: return 1;
    case SP_TYPE_Q4_0: return 2;
    case SP_TYPE_Q4_1: return 3;
    case SP_TYPE_Q8_0: return 7;
    case SP_TYPE_Q5_0: return 8;
    case SP_TYPE_Q5_1: return 9;
    case SP_TYPE_Q2_K: return 10;
    case SP_TYPE_Q3_K: return 12;
    case SP_TYPE_Q4_K: return 14;
    case SP_TYPE_Q5_K: return 16;
    case SP_TYPE_Q6_K: return 18;
    case SP_TYPE_BF16: return 32;
    default: return 1024; /* llama.cpp's "guessed" */
    }
}

/* llama.cpp's rule for the _M mixes: more bits in the first and last eighth of the layers
 * and every third layer between. */
static bool use_more_bits(int il, int n_layer) {
    return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
}

static int layer_of(const char *name) {
    int il;
    return sscanf(name, "blk.%d.", &il) == 1 ? il : -1;
}

int sp_quant_type_for(const sp_quant_plan *plan, const char *tensor, int n_dims, long row_len, int n_layer, bool tied) {
    if (n_dims < 2) return SP_TYPE_F32;
    int t = plan->base;
    if (plan->more >= 0) {
        const int il = layer_of(tensor);
        if (strcmp(tensor, "output.weight") == 0 || (tied && strcmp(tensor, "token_embd.weight") == 0)) t = plan->more;
        else if ((strstr(tensor, "attn_v.weight") || strstr(tensor, "ffn_down.weight")) && il >= 0 && use_more_bits(il, n_layer))
            t = plan->more;
    }
    const sp_type_traits *tt = sp_type_traits_get((uint32_t)t);
    if (row_len % tt->block_size != 0) t = row_len % 32 == 0 ? SP_TYPE_Q8_0 : SP_TYPE_F16;
    return t;
}

typedef struct {
    const sp_gguf_file *in;
    const uint32_t *types;
    int n_done, n_total;
    bool tty;
} quant_ctx;

static sp_status convert(void *arg, int index, void *dst, uint64_t n_bytes) {
    (void)n_bytes;
    quant_ctx *c = arg;
    const sp_gguf_tensor *t = &c->in->tensors[index];
    const sp_type_traits *from = sp_type_traits_get(t->type), *to = sp_type_traits_get(c->types[index]);
    const int64_t row = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    float *buf = malloc((size_t)row * sizeof *buf);
    if (!buf) return sp_fail(SP_ERR_MEMORY, "quantize: out of memory");
    const size_t in_rb = sp_row_size(t->type, row), out_rb = sp_row_size(c->types[index], row);
    for (int64_t r = 0; r < rows; r++) {
        from->dequantize((const uint8_t *)t->data + (size_t)r * in_rb, buf, row);
        to->quantize(buf, (uint8_t *)dst + (size_t)r * out_rb, row);
    }
    free(buf);
    c->n_done++;
    if (c->tty) fprintf(stderr, "\r\033[Kquantizing: tensor %d of %d", c->n_done, c->n_total);
    return SP_OK;
}

sp_status sp_quantize_file(const char *in_path, const char *out_path, const sp_quant_plan *plan) {
    sp_gguf_file *in;
    sp_status st = sp_gguf_open(in_path, false, &in);
    if (st != SP_OK) return st;
    sp_gguf_string arch = {"", 0};
    sp_gguf_get_string_opt(in, "general.architecture", &arch);
    char key[96];
    snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 40 ? arch.len : 40), arch.ptr);
    uint32_t n_layer = 0;
    sp_gguf_get_u32_opt(in, key, &n_layer);
    const bool tied = sp_gguf_find_tensor(in, "output.weight") == NULL;
    uint32_t *types = malloc((in->n_tensors + 1) * sizeof *types);
    sp_gguf_writer *w = sp_gguf_writer_new();
    if (!types || !w) {
        free(types);
        sp_gguf_writer_free(w);
        sp_gguf_close(in);
        return sp_fail(SP_ERR_MEMORY, "quantize: out of memory");
    }
    for (uint64_t i = 0; i < in->n_kv; i++)
        if (!sp_gguf_string_eq(in->kv[i].key, "general.file_type")) sp_gguf_writer_copy_kv(w, &in->kv[i]);
    sp_gguf_writer_u32(w, "general.file_type", sp_quant_plan_file_type(plan));
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const sp_gguf_tensor *t = &in->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        types[i] = (uint32_t)sp_quant_type_for(plan, name, (int)t->n_dims, (long)t->ne[0], (int)n_layer, tied);
        sp_gguf_writer_tensor(w, name, types[i], (int)t->n_dims, t->ne, NULL);
    }
    quant_ctx qc = {in, types, 0, (int)in->n_tensors, isatty(2) != 0};
    sp_gguf_writer_set_fill(w, convert, &qc);
    st = sp_gguf_writer_write(w, out_path);
    if (qc.tty) fprintf(stderr, "\r\033[K");
    sp_gguf_writer_free(w);
    free(types);
    sp_gguf_close(in);
    return st;
}
