/*
 * Loading a Llama-family model from GGUF and its forward pass. The pass reads top to bottom
 * like llama2.c's: embed, then per layer attention and feed-forward, then the output head.
 * Every matrix product and the attention go through kernels.h.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pages.h"
#include "quant.h"
#include "repack.h"
#include "threadpool.h"

/* ------------------------------------------------------------------ loading */

static sp_status key_u32(const sp_gguf_file *f, const char *arch, const char *suffix, uint32_t *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (required) return sp_gguf_get_u32(f, key, out);
    sp_gguf_get_u32_opt(f, key, out);
    return SP_OK;
}

static sp_status bind_matrix(const sp_model *m, const char *name, int64_t n_in, int64_t n_out, sp_weight *w) {
    const sp_gguf_tensor *t = sp_gguf_find_tensor(m->gguf, name);
    if (!t) return sp_fail(SP_ERR_FORMAT, "model: tensor '%s' is missing", name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return sp_fail(SP_ERR_FORMAT, "model: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)n_in, (long long)n_out);
    w->data = t->data;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = (int64_t)sp_row_size(t->type, n_in);
    return SP_OK;
}

/* 1-D tensors (norms, biases, rope factors) are used as F32; other types are converted into a
 * buffer the model owns. *cursor walks that buffer. */
static sp_status bind_vector(sp_model *m, const char *name, int64_t n, bool required, const float **out, float **cursor) {
    const sp_gguf_tensor *t = sp_gguf_find_tensor(m->gguf, name);
    *out = NULL;
    if (!t) return required ? sp_fail(SP_ERR_FORMAT, "model: tensor '%s' is missing", name) : SP_OK;
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sp_fail(SP_ERR_FORMAT, "model: tensor '%s' has %lld elements, expected %lld", name, (long long)t->ne[0], (long long)n);
    if (t->type == SP_TYPE_F32 && ((uintptr_t)t->data % 4) == 0) {
        *out = t->data;
        return SP_OK;
    }
    sp_type_traits_get(t->type)->dequantize(t->data, *cursor, n);
    *out = *cursor;
    *cursor += n;
    return SP_OK;
}

static sp_status load_hparams(sp_model *m) {
    const sp_gguf_file *f = m->gguf;
    sp_model_info *info = &m->info;
    sp_gguf_string arch;
    if (!sp_gguf_get_string_opt(f, "general.architecture", &arch))
        return sp_fail(SP_ERR_FORMAT, "model: general.architecture is missing");
    if (sp_gguf_string_eq(arch, "llama")) m->arch = ARCH_LLAMA;
    else if (sp_gguf_string_eq(arch, "qwen2")) m->arch = ARCH_QWEN2;
    else if (sp_gguf_string_eq(arch, "qwen3")) m->arch = ARCH_QWEN3;
    else {
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(arch.len < 31 ? arch.len : 31), arch.ptr);
        return sp_fail(SP_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (llama, qwen2, qwen3 are)", name);
    }
    snprintf(info->arch, sizeof info->arch, "%.*s", (int)arch.len, arch.ptr);
    const char *a = info->arch;
    uint32_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx = 0, head_dim = 0, n_rot = 0;
    sp_status st;
    if ((st = key_u32(f, a, "embedding_length", &n_embd, true)) != SP_OK) return st;
    if ((st = key_u32(f, a, "block_count", &n_layer, true)) != SP_OK) return st;
    if ((st = key_u32(f, a, "attention.head_count", &n_head, true)) != SP_OK) return st;
    if ((st = key_u32(f, a, "feed_forward_length", &n_ff, true)) != SP_OK) return st;
    n_head_kv = n_head;
    key_u32(f, a, "attention.head_count_kv", &n_head_kv, false);
    key_u32(f, a, "context_length", &n_ctx, false);
    if (n_embd == 0 || n_embd > 65536 || n_head == 0 || n_head > 1024 || n_layer > 1024 || n_ff > (1u << 20) ||
        n_head_kv == 0 || n_head % n_head_kv != 0)
        return sp_fail(SP_ERR_FORMAT, "model: inconsistent hyper-parameters (n_embd %u, n_head %u, n_head_kv %u, n_layer %u, n_ff %u)",
                       n_embd, n_head, n_head_kv, n_layer, n_ff);
    head_dim = n_embd / n_head;
    key_u32(f, a, "attention.key_length", &head_dim, false);
    n_rot = head_dim;
    key_u32(f, a, "rope.dimension_count", &n_rot, false);
    if (head_dim == 0 || head_dim > 1024 || n_rot > head_dim || n_rot % 2 != 0)
        return sp_fail(SP_ERR_FORMAT, "model: head_dim %u / rope dimensions %u are inconsistent", head_dim, n_rot);
    uint32_t vlen = 0;
    if (key_u32(f, a, "attention.value_length", &vlen, false) == SP_OK && vlen != 0 && vlen != head_dim)
        return sp_fail(SP_ERR_UNSUPPORTED, "model: value_length %u differs from key_length %u", vlen, head_dim);

    char key[128];
    float base = 10000.0f, eps = 1e-5f;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    sp_gguf_get_f32_opt(f, key, &base);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    sp_gguf_get_f32_opt(f, key, &eps);
    if (!(base > 0) || !(eps > 0) || !(eps < 1))
        return sp_fail(SP_ERR_FORMAT, "model: rope base %g / rms eps %g out of range", base, eps);
    /* the file's own scaling: linear, YaRN (llama.cpp's keys), or llama3's (rope_freqs.weight) */
    sp_rope_params rope = {.n_rot = (int)n_rot, .base = base, .freq_scale = 1.0f, .neox = m->arch != ARCH_LLAMA};
    sp_gguf_string scaling;
    float factor = 1.0f;
    info->rope_scaling = SP_ROPE_SCALING_NONE;
    info->rope_scale = 1.0f;
    info->rope_orig_ctx = (int)n_ctx;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (sp_gguf_get_string_opt(f, key, &scaling) && !sp_gguf_string_eq(scaling, "none")) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
        sp_gguf_get_f32_opt(f, key, &factor);
        const bool linear = sp_gguf_string_eq(scaling, "linear"), yarn = sp_gguf_string_eq(scaling, "yarn");
        if ((linear || yarn) && !(factor > 0 && factor < 1e6))
            return sp_fail(SP_ERR_FORMAT, "model: rope scaling factor %g is invalid", factor);
        if (linear) {
            rope.freq_scale = 1.0f / factor;
        } else if (yarn) {
            uint32_t orig = n_ctx;
            float beta_fast = 32, beta_slow = 1, attn = 1;
            snprintf(key, sizeof key, "%s.rope.scaling.original_context_length", a);
            sp_gguf_get_u32_opt(f, key, &orig);
            snprintf(key, sizeof key, "%s.rope.scaling.yarn_beta_fast", a);
            sp_gguf_get_f32_opt(f, key, &beta_fast);
            snprintf(key, sizeof key, "%s.rope.scaling.yarn_beta_slow", a);
            sp_gguf_get_f32_opt(f, key, &beta_slow);
            snprintf(key, sizeof key, "%s.rope.scaling.attn_factor", a);
            sp_gguf_get_f32_opt(f, key, &attn);
            if (orig == 0 || orig > (1u << 30) || !(beta_fast > 0) || !(beta_slow > 0) || !(attn > 0 && attn < 1e3))
                return sp_fail(SP_ERR_FORMAT, "model: YaRN original context %u, betas %g / %g, attention factor %g are invalid",
                               orig, beta_fast, beta_slow, attn);
            sp_rope_set_yarn(&rope, factor, (int)orig, beta_fast, beta_slow, attn, false); /* as llama.cpp reads the file */
            info->rope_orig_ctx = (int)orig;
        } else if (!sp_gguf_string_eq(scaling, "llama3")) {
            return sp_fail(SP_ERR_UNSUPPORTED, "model: rope scaling '%.*s' is not supported (none, linear, yarn, llama3 are)",
                           (int)(scaling.len < 32 ? scaling.len : 32), scaling.ptr);
        }
        if (linear || yarn) {
            info->rope_scaling = linear ? SP_ROPE_SCALING_LINEAR : SP_ROPE_SCALING_YARN;
            info->rope_scale = factor;
        }
    }
    info->n_embd = (int)n_embd;
    info->n_layer = (int)n_layer;
    info->n_head = (int)n_head;
    info->n_head_kv = (int)n_head_kv;
    info->n_ff = (int)n_ff;
    info->n_ctx_train = (int)n_ctx;
    info->head_dim = (int)head_dim;
    info->n_rot = (int)n_rot;
    info->rope_base = base;
    info->rms_eps = eps;
    m->rope = rope; /* qwen2/qwen3 (neox) rotate (i, i + n_rot/2) */
    return SP_OK;
}

static sp_status load_weights(sp_model *m) {
    sp_model_info *info = &m->info;
    const int64_t d = info->n_embd, hd = info->head_dim, q_dim = (int64_t)info->n_head * hd,
                  kv_dim = (int64_t)info->n_head_kv * hd, ff = info->n_ff, nv = info->n_vocab;
    sp_status st;
    if ((st = bind_matrix(m, "token_embd.weight", d, nv, &m->tok_embd)) != SP_OK) return st;
    if (sp_gguf_find_tensor(m->gguf, "output.weight")) {
        if ((st = bind_matrix(m, "output.weight", d, nv, &m->output)) != SP_OK) return st;
    } else {
        m->output = m->tok_embd;
        info->tied_output = true;
    }
    /* room for every 1-D tensor in case none is stored as F32 */
    size_t n_vec = (size_t)d + (size_t)info->n_rot / 2 +
                   (size_t)info->n_layer * (size_t)(2 * d + 2 * hd + q_dim + 2 * kv_dim);
    m->owned = malloc(n_vec * sizeof(float));
    m->layers = calloc((size_t)info->n_layer ? (size_t)info->n_layer : 1, sizeof *m->layers);
    if (!m->owned || !m->layers) return sp_fail(SP_ERR_MEMORY, "model: out of memory");
    float *cursor = m->owned;
    if ((st = bind_vector(m, "output_norm.weight", d, true, &m->output_norm, &cursor)) != SP_OK) return st;
    if ((st = bind_vector(m, "rope_freqs.weight", info->n_rot / 2, false, &m->rope.freq_factors, &cursor)) != SP_OK)
        return st;
    for (int il = 0; il < info->n_layer; il++) {
        sp_layer *L = &m->layers[il];
        char name[96];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d.%s", il, suffix), name)
        if ((st = bind_vector(m, BLK("attn_norm.weight"), d, true, &L->attn_norm, &cursor)) != SP_OK) return st;
        if ((st = bind_vector(m, BLK("ffn_norm.weight"), d, true, &L->ffn_norm, &cursor)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("attn_q.weight"), d, q_dim, &L->wq)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("attn_k.weight"), d, kv_dim, &L->wk)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("attn_v.weight"), d, kv_dim, &L->wv)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("attn_output.weight"), q_dim, d, &L->wo)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("ffn_gate.weight"), d, ff, &L->gate)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("ffn_up.weight"), d, ff, &L->up)) != SP_OK) return st;
        if ((st = bind_matrix(m, BLK("ffn_down.weight"), ff, d, &L->down)) != SP_OK) return st;
        bool biases = m->arch == ARCH_QWEN2, qk_norm = m->arch == ARCH_QWEN3;
        if ((st = bind_vector(m, BLK("attn_q.bias"), q_dim, biases, &L->bq, &cursor)) != SP_OK) return st;
        if ((st = bind_vector(m, BLK("attn_k.bias"), kv_dim, biases, &L->bk, &cursor)) != SP_OK) return st;
        if ((st = bind_vector(m, BLK("attn_v.bias"), kv_dim, biases, &L->bv, &cursor)) != SP_OK) return st;
        if ((st = bind_vector(m, BLK("attn_q_norm.weight"), hd, qk_norm, &L->q_norm, &cursor)) != SP_OK) return st;
        if ((st = bind_vector(m, BLK("attn_k_norm.weight"), hd, qk_norm, &L->k_norm, &cursor)) != SP_OK) return st;
#undef BLK
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const sp_gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t n = 1;
        for (int k = 0; k < GGUF_MAX_DIMS; k++) n *= (uint64_t)t->ne[k];
        info->n_params += n;
    }
    return SP_OK;
}

/* ------------------------------------------------------------------ repacking (repack.h) */

/* Whether w is rewritten: its type has an interleaved layout with a kernel in the set in use,
 * and its rows come in whole groups. */
static bool repackable(const sp_weight *w) {
    const sp_isa_kernels *k = sp_kernels();
    return w->type < SP_N_TYPES && sp_rows8_has_layout(w->type) && k->dot8_rows_q8[w->type] && w->n_out % SP_ROWS8 == 0 &&
           w->n_in % 32 == 0;
}

static int64_t n_blocks_of(const sp_weight *w) { return w->n_in / sp_type_traits_get(w->type)->block_size; }
/* The bytes w takes interleaved, rounded up to a cache line. */
static size_t repacked_size(const sp_weight *w) {
    return ((size_t)(w->n_out * sp_rows8_row_bytes(w->type, n_blocks_of(w))) + 63) & ~(size_t)63;
}

/* Whether another tensor of the file has bytes in [p, p + size): a file may place two tensors on
 * the same bytes, and then those pages are still read after one of them is repacked. */
static bool shares_bytes(const sp_gguf_file *f, const void *p, size_t size) {
    const uint8_t *a = p;
    int holders = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const uint8_t *b = f->tensors[i].data;
        if (b < a + size && a < b + f->tensors[i].n_bytes) holders++;
    }
    return holders > 1;
}

typedef struct {
    const sp_weight *from;
    uint8_t *to;
    bool release; /* give the file's pages back as they are packed */
} repack_job;

/* Groups of rows per release: the file's pages go back a few hundred KiB at a time, so that a
 * large matrix (a 128k-row output head) is not held twice at once. */
#define RELEASE_GROUPS 64

static void repack_task(void *arg, int task, int n_tasks) {
    const repack_job *j = arg;
    const int64_t groups = j->from->n_out / SP_ROWS8, n_blocks = n_blocks_of(j->from);
    const int64_t group_bytes = SP_ROWS8 * sp_rows8_row_bytes(j->from->type, n_blocks), src_bytes = SP_ROWS8 * j->from->row_bytes;
    const uint8_t *src = j->from->data;
    const int64_t g0 = groups * task / n_tasks, g1 = groups * (task + 1) / n_tasks;
    int64_t kept = g0; /* the first group whose file pages are still held */
    for (int64_t g = g0; g < g1; g++) {
        sp_rows8_pack(j->from->type, src + g * src_bytes, j->from->row_bytes, n_blocks, j->to + g * group_bytes);
        if (j->release && (g + 1 - kept == RELEASE_GROUPS || g + 1 == g1)) {
            sp_pages_release(src + kept * src_bytes, (size_t)((g + 1 - kept) * src_bytes)); /* the whole pages within */
            kept = g + 1;
        }
    }
}

/* The layers' matrices and the output head that are repackable, rewritten into one anonymous
 * mapping in huge pages where the OS gives them; the file's pages they came from are given back.
 * A tied head is also the embedding table: the lookup then reads its rows rebuilt
 * (sp_weight_row), a row a token, and the model holds one copy. */
static sp_status repack_weights(sp_model *m) {
    enum { N_PER_LAYER = 7 };
    const int n = m->info.n_layer * N_PER_LAYER + 1;
    sp_weight **ws = malloc((size_t)n * sizeof *ws);
    if (!ws) return sp_fail(SP_ERR_MEMORY, "model: out of memory");
    int count = 0;
    for (int il = 0; il < m->info.n_layer; il++) {
        sp_layer *L = &m->layers[il];
        sp_weight *layer[N_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int i = 0; i < N_PER_LAYER; i++)
            if (repackable(layer[i])) ws[count++] = layer[i];
    }
    if (repackable(&m->output)) ws[count++] = &m->output;
    size_t total = 0;
    for (int i = 0; i < count; i++) total += repacked_size(ws[i]);
    if (total == 0) {
        free(ws);
        return SP_OK;
    }
    uint8_t *mem = sp_pages_alloc(total);
    if (!mem) {
        free(ws);
        return sp_fail(SP_ERR_MEMORY, "model: cannot allocate %zu bytes for the repacked weights", total);
    }
    m->repacked = mem;
    m->repacked_size = total;
    for (int i = 0; i < count; i++) {
        const size_t file_bytes = (size_t)(ws[i]->n_out * ws[i]->row_bytes);
        repack_job j = {ws[i], mem, !shares_bytes(m->gguf, ws[i]->data, file_bytes)};
        const int64_t groups = ws[i]->n_out / SP_ROWS8;
        sp_parallel_for(groups < sp_threads_count() ? (int)groups : sp_threads_count(), repack_task, &j);
        if (j.release) sp_pages_release(ws[i]->data, file_bytes); /* the pages the tasks' pieces shared at their ends */
        ws[i]->data = mem;
        ws[i]->row_bytes = sp_rows8_row_bytes(ws[i]->type, n_blocks_of(ws[i]));
        ws[i]->interleaved = true;
        m->info.n_repacked++;
        m->info.repacked_bytes += (uint64_t)(ws[i]->n_out * ws[i]->row_bytes);
        mem += repacked_size(ws[i]);
    }
    if (m->info.tied_output) m->tok_embd = m->output;
    sp_pages_seal(m->repacked, total);
    free(ws);
    return SP_OK;
}

sp_model_params sp_model_default_params(void) { return (sp_model_params){.no_mmap = false, .repack = false}; }

sp_status sp_model_load(const char *path, sp_model **out) { return sp_model_load_with(path, NULL, out); }

sp_status sp_model_load_with(const char *path, const sp_model_params *params, sp_model **out) {
    *out = NULL;
    const sp_model_params p = params ? *params : sp_model_default_params();
    sp_model *m = calloc(1, sizeof *m);
    if (!m) return sp_fail(SP_ERR_MEMORY, "model: out of memory");
    sp_status st = sp_gguf_open(path, p.no_mmap, &m->gguf);
    if (st == SP_OK) {
        /* a file without tensors is a vocabulary: only the tokenizer is needed */
        m->has_weights = m->gguf->n_tensors > 0;
        sp_gguf_string arch;
        if (m->has_weights) st = load_hparams(m);
        else if (sp_gguf_get_string_opt(m->gguf, "general.architecture", &arch))
            snprintf(m->info.arch, sizeof m->info.arch, "%.*s", (int)(arch.len < 31 ? arch.len : 31), arch.ptr);
    }
    if (st == SP_OK) st = sp_vocab_load(m->gguf, &m->vocab);
    if (st == SP_OK) {
        m->info.n_vocab = sp_vocab_size(m->vocab);
        m->info.file_size = m->gguf->size;
        m->info.gguf_version = m->gguf->version;
        m->info.has_weights = m->has_weights;
        for (uint64_t t = 0; t < m->gguf->n_tensors; t++)
            if (m->gguf->tensors[t].type < SP_N_TENSOR_TYPES) m->info.n_tensors_of_type[m->gguf->tensors[t].type]++;
        if (m->has_weights) st = load_weights(m);
        if (st == SP_OK && m->has_weights && p.repack) st = repack_weights(m);
        m->info.rope_neox = m->rope.neox;
        m->info.rope_freq_factors = m->rope.freq_factors != NULL;
    }
    sp_gguf_string tmpl;
    if (st == SP_OK && sp_gguf_get_string_opt(m->gguf, "tokenizer.chat_template", &tmpl)) {
        m->chat_template = malloc(tmpl.len + 1);
        if (!m->chat_template) st = sp_fail(SP_ERR_MEMORY, "model: out of memory");
        else {
            memcpy(m->chat_template, tmpl.ptr, tmpl.len);
            m->chat_template[tmpl.len] = 0;
            m->info.has_chat_template = true;
        }
    }
    if (st != SP_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sp_last_error());
        sp_model_free(m);
        return sp_fail(st, "%s: %s", path, msg);
    }
    *out = m;
    return SP_OK;
}

void sp_model_free(sp_model *m) {
    if (!m) return;
    sp_vocab_free(m->vocab);
    sp_gguf_close(m->gguf);
    sp_pages_free(m->repacked, m->repacked_size);
    free(m->layers);
    free(m->owned);
    free(m->chat_template);
    free(m);
}

const sp_model_info *sp_model_get_info(const sp_model *m) { return &m->info; }

/* ------------------------------------------------------------------ context */

sp_context_params sp_context_default_params(void) {
    sp_context_params p = {0, 0, SP_KV_F16, SP_ROPE_SCALING_AUTO, 0, 0};
    return p;
}

/* The context's RoPE: the model's, with `kind` of scaling by `factor` (0: the context's size over
 * orig) instead where kind is not AUTO. */
static sp_status set_rope(sp_context *c, sp_rope_scaling kind, float factor, int orig, bool by_turns) {
    const sp_model *m = c->model;
    c->rope = m->rope;
    c->rope_scaling = m->info.rope_scaling;
    c->rope_factor = m->info.rope_scale;
    if (kind == SP_ROPE_SCALING_AUTO) return SP_OK;
    c->rope.freq_scale = 1.0f;
    c->rope.yarn = false;
    c->rope_scaling = kind;
    c->rope_factor = 1.0f;
    if (kind == SP_ROPE_SCALING_NONE) return SP_OK;
    if (orig <= 0) return sp_fail(SP_ERR_ARGUMENT, "context: rope scaling needs the length the model was trained on (yarn_orig_ctx)");
    if (factor == 0) factor = c->n_ctx > orig ? (float)c->n_ctx / (float)orig : 1.0f;
    if (kind == SP_ROPE_SCALING_LINEAR) c->rope.freq_scale = 1.0f / factor;
    else sp_rope_set_yarn(&c->rope, factor, orig, 32, 1, 1, by_turns);
    c->rope_factor = factor;
    return SP_OK;
}

/* A model with no scaling of its own that reads past its training context gets YaRN by default:
 * without it, positions it never saw leave it lost (the bundled main answers 0 % of questions at
 * 8k tokens, two thirds with it). Per sequence, from its length, so that a short prompt reads
 * exactly as trained whatever the context's size. */
sp_status sp_context_fit_rope(sp_context *c, int n_tokens) {
    if (!c || n_tokens < 0) return sp_fail(SP_ERR_ARGUMENT, "context: invalid arguments");
    if (!c->rope_auto || c->n_cached > 0) return SP_OK; /* cached keys keep the scaling they were rotated with */
    const int orig = c->rope_orig_ctx;
    return n_tokens > orig ? set_rope(c, SP_ROPE_SCALING_YARN, (float)n_tokens / (float)orig, orig, true)
                           : set_rope(c, SP_ROPE_SCALING_AUTO, 0, orig, true);
}

sp_rope_scaling sp_context_rope_scaling(const sp_context *c, float *factor) {
    if (factor) *factor = c ? c->rope_factor : 1.0f;
    return c ? c->rope_scaling : SP_ROPE_SCALING_NONE;
}

sp_status sp_context_new(const sp_model *m, const sp_context_params *params, sp_context **out) {
    *out = NULL;
    if (!m->has_weights) return sp_fail(SP_ERR_ARGUMENT, "context: this model file has no weights (vocabulary only)");
    sp_context_params p = params ? *params : sp_context_default_params();
    if (p.n_ctx < 0 || p.n_batch < 0 || (p.kv_type != SP_KV_F16 && p.kv_type != SP_KV_F32) ||
        p.rope_scaling < SP_ROPE_SCALING_AUTO || p.rope_scaling > SP_ROPE_SCALING_YARN || !(p.rope_scale >= 0 && p.rope_scale < 1e6) ||
        p.yarn_orig_ctx < 0)
        return sp_fail(SP_ERR_ARGUMENT, "context: invalid parameters");
    if (p.n_ctx == 0) p.n_ctx = m->info.n_ctx_train > 0 && m->info.n_ctx_train < 4096 ? m->info.n_ctx_train : 4096;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    sp_context *c = calloc(1, sizeof *c);
    if (!c) return sp_fail(SP_ERR_MEMORY, "context: out of memory");
    const sp_model_info *i = &m->info;
    const size_t kv_dim = (size_t)i->n_head_kv * i->head_dim, q_dim = (size_t)i->n_head * i->head_dim;
    const size_t nb = (size_t)p.n_batch;
    c->model = m;
    c->n_ctx = p.n_ctx;
    const sp_model_info *mi = &m->info;
    c->rope_orig_ctx = p.yarn_orig_ctx > 0 ? p.yarn_orig_ctx : mi->rope_orig_ctx;
    c->rope_auto = p.rope_scaling == SP_ROPE_SCALING_AUTO && mi->rope_scaling == SP_ROPE_SCALING_NONE && !mi->rope_freq_factors &&
                   c->rope_orig_ctx > 0;
    sp_status st = set_rope(c, p.rope_scaling, p.rope_scale, c->rope_orig_ctx, false);
    if (st != SP_OK) {
        free(c);
        return st;
    }
    c->n_batch = p.n_batch;
    c->kv_type = p.kv_type;
    c->kv_elem = p.kv_type == SP_KV_F16 ? 2 : 4;
    size_t kv_bytes = (size_t)i->n_layer * (size_t)p.n_ctx * kv_dim * c->kv_elem;
    c->k_cache = sp_alloc_vectors(kv_bytes);
    c->v_cache = sp_alloc_vectors(kv_bytes);
    c->cell_pos = malloc((size_t)p.n_ctx * sizeof *c->cell_pos);
    c->cell_tok = malloc((size_t)p.n_ctx * sizeof *c->cell_tok);
    c->x = sp_alloc_vectors(nb * (size_t)i->n_embd * sizeof(float));
    c->xb = sp_alloc_vectors(nb * (size_t)(i->n_embd > (int)q_dim ? i->n_embd : (int)q_dim) * sizeof(float));
    c->q = sp_alloc_vectors(nb * q_dim * sizeof(float));
    c->k = sp_alloc_vectors(nb * kv_dim * sizeof(float));
    c->v = sp_alloc_vectors(nb * kv_dim * sizeof(float));
    c->att = sp_alloc_vectors(nb * q_dim * sizeof(float));
    c->hb = sp_alloc_vectors(nb * (size_t)i->n_ff * sizeof(float));
    c->hb2 = sp_alloc_vectors(nb * (size_t)i->n_ff * sizeof(float));
    c->logit_in = sp_alloc_vectors(nb * (size_t)i->n_embd * sizeof(float));
    c->n_visible = malloc(nb * sizeof(int));
    c->row_seq = malloc(nb * sizeof *c->row_seq);
    c->out_row = malloc(nb * sizeof *c->out_row);
    c->out_seq = malloc(nb * sizeof *c->out_seq);
    c->rope_cs = malloc(nb * (size_t)(m->rope.n_rot > 0 ? m->rope.n_rot : 1) * sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->cell_pos || !c->cell_tok || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att ||
        !c->hb || !c->hb2 || !c->logit_in || !c->n_visible || !c->row_seq || !c->out_row ||
        !c->out_seq || !c->rope_cs) {
        sp_context_free(c);
        return sp_fail(SP_ERR_MEMORY, "context: out of memory (KV cache of %zu MiB for %d tokens)",
                       2 * kv_bytes >> 20, p.n_ctx);
    }
    for (size_t t = 0; t < nb; t++) c->row_seq[t] = c; /* sp_decode's rows are all this context's */
    *out = c;
    return SP_OK;
}

void sp_context_free(sp_context *c) {
    if (!c) return;
    free(c->k_cache); free(c->v_cache); free(c->cell_pos); free(c->cell_tok);
    free(c->x); free(c->xb); free(c->q); free(c->k); free(c->v); free(c->att);
    free(c->hb); free(c->hb2); free(c->logit_in); free(c->n_visible); free(c->row_seq); free(c->out_row);
    free(c->out_seq); free(c->rope_cs);
    free(c);
}

void sp_context_reset(sp_context *c) { c->n_cached = 0; }
int sp_context_n_cached(const sp_context *c) { return c->n_cached; }
int sp_context_last_pos(const sp_context *c) { return c->n_cached ? c->cell_pos[c->n_cached - 1] : -1; }

sp_status sp_context_truncate(sp_context *c, int n_keep) {
    if (n_keep < 0 || n_keep > c->n_cached)
        return sp_fail(SP_ERR_ARGUMENT, "context: cannot keep %d of %d cached tokens", n_keep, c->n_cached);
    c->n_cached = n_keep;
    return SP_OK;
}

void sp_context_set_runner(sp_context *c, sp_status (*run)(void *user, sp_pass *pass), void *user) {
    c->runner = run;
    c->runner_user = user;
}

int sp_context_common_prefix(const sp_context *c, const sp_token *tokens, int n) {
    int i = 0;
    if (!c || !tokens) return 0;
    while (i < n && i < c->n_cached && c->cell_pos[i] == i && c->cell_tok[i] == tokens[i]) i++;
    return i;
}

/* ------------------------------------------------------------------ the cache as bytes */

/* A saved cache: this header, then positions[n_cells], tokens[n_cells], then for each of the
 * kv_layers layers its K rows and its V rows (n_cells × kv_dim values of the context's type).
 * The model is recognised by its shape and parameter count: the bytes are for the process that
 * made them (or another on the same file), not an exchange format. */
typedef struct {
    char magic[4];
    uint32_t version;
    uint32_t n_layer, kv_layers, kv_dim, n_vocab, kv_type, n_cells;
    uint32_t rope_scaling; /* keys are cached rotated: another scaling would read them wrong */
    float rope_factor;
    uint64_t n_params;
} state_header;

/* The scaling in a saved cache: the kind, and whether YaRN's ramp runs in turns (the automatic one) */
#define ROPE_BY_TURNS 0x100u
static uint32_t rope_code(const sp_context *c) {
    return (uint32_t)c->rope_scaling | (c->rope.yarn && c->rope.yarn_by_turns ? ROPE_BY_TURNS : 0);
}

static size_t state_bytes(const sp_context *c, int kv_layers, int n_cells) {
    const size_t kv_dim = (size_t)c->model->info.n_head_kv * c->model->info.head_dim;
    return sizeof(state_header) + (size_t)n_cells * (sizeof(int32_t) + sizeof(sp_token)) +
           2 * (size_t)kv_layers * (size_t)n_cells * kv_dim * c->kv_elem;
}

size_t sp_context_state_size(const sp_context *c) {
    return c ? state_bytes(c, c->n_cached ? c->kv_layers : 0, c->n_cached) : 0;
}

sp_status sp_context_state_save(const sp_context *c, void *buf, size_t size) {
    if (!c || !buf) return sp_fail(SP_ERR_ARGUMENT, "context state: needs a context and a buffer");
    const int n = c->n_cached, layers = n ? c->kv_layers : 0;
    if (size < state_bytes(c, layers, n))
        return sp_fail(SP_ERR_ARGUMENT, "context state: %zu bytes do not hold the %zu of the cache", size, state_bytes(c, layers, n));
    const sp_model_info *i = &c->model->info;
    const size_t row = (size_t)i->n_head_kv * i->head_dim * c->kv_elem;
    state_header h = {{'S', 'P', 'K', 'V'}, 2, (uint32_t)i->n_layer, (uint32_t)layers, (uint32_t)(i->n_head_kv * i->head_dim),
                      (uint32_t)i->n_vocab, (uint32_t)c->kv_type, (uint32_t)n, rope_code(c), c->rope_factor,
                      i->n_params};
    uint8_t *p = buf;
    memcpy(p, &h, sizeof h), p += sizeof h;
    memcpy(p, c->cell_pos, (size_t)n * sizeof(int32_t)), p += (size_t)n * sizeof(int32_t);
    memcpy(p, c->cell_tok, (size_t)n * sizeof(sp_token)), p += (size_t)n * sizeof(sp_token);
    for (int l = 0; l < layers; l++) {
        const size_t off = (size_t)l * c->n_ctx * row;
        memcpy(p, c->k_cache + off, (size_t)n * row), p += (size_t)n * row;
        memcpy(p, c->v_cache + off, (size_t)n * row), p += (size_t)n * row;
    }
    return SP_OK;
}

sp_status sp_context_state_load(sp_context *c, const void *buf, size_t size) {
    if (!c || !buf) return sp_fail(SP_ERR_ARGUMENT, "context state: needs a context and the bytes");
    const sp_model_info *i = &c->model->info;
    state_header h;
    if (size < sizeof h) return sp_fail(SP_ERR_FORMAT, "context state: %zu bytes are too few for a header", size);
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, "SPKV", 4) != 0 || h.version != 2) return sp_fail(SP_ERR_FORMAT, "context state: not a saved cache (or another version)");
    if (h.n_layer != (uint32_t)i->n_layer || h.kv_dim != (uint32_t)(i->n_head_kv * i->head_dim) || h.n_vocab != (uint32_t)i->n_vocab ||
        h.n_params != i->n_params)
        return sp_fail(SP_ERR_ARGUMENT, "context state: saved from another model");
    if (h.kv_type != (uint32_t)c->kv_type) return sp_fail(SP_ERR_ARGUMENT, "context state: saved with another KV type");
    const bool rope_differs = h.rope_scaling != rope_code(c) || h.rope_factor != c->rope_factor;
    const bool rope_adoptable = c->rope_auto && (h.rope_scaling == (uint32_t)SP_ROPE_SCALING_NONE ||
                                                 (h.rope_scaling == (ROPE_BY_TURNS | SP_ROPE_SCALING_YARN) && h.rope_factor >= 1 && h.rope_factor < 1e6));
    if (rope_differs && !rope_adoptable)
        return sp_fail(SP_ERR_ARGUMENT, "context state: saved with another position scaling (rope scaling %u, factor %g)",
                       h.rope_scaling, (double)h.rope_factor);
    if (h.n_cells > (uint32_t)c->n_ctx) return sp_fail(SP_ERR_CONTEXT_FULL, "context state: %u tokens do not fit the context of %d", h.n_cells, c->n_ctx);
    if (h.n_cells > 0 ? h.kv_layers < 1 || h.kv_layers > h.n_layer : h.kv_layers != 0)
        return sp_fail(SP_ERR_FORMAT, "context state: %u layers of %u", h.kv_layers, h.n_layer);
    const int n = (int)h.n_cells, layers = (int)h.kv_layers;
    if (size != state_bytes(c, layers, n))
        return sp_fail(SP_ERR_FORMAT, "context state: %zu bytes, %zu expected for %d tokens", size, state_bytes(c, layers, n), n);
    const uint8_t *p = (const uint8_t *)buf + sizeof h;
    const uint8_t *toks = p + (size_t)n * sizeof(int32_t);
    for (int k = 0; k < n; k++) {
        int32_t pos;
        sp_token tok;
        memcpy(&pos, p + (size_t)k * sizeof pos, sizeof pos);
        memcpy(&tok, toks + (size_t)k * sizeof tok, sizeof tok);
        if (pos < 0 || tok < 0 || tok >= i->n_vocab) return sp_fail(SP_ERR_FORMAT, "context state: token %d has position %d and id %d", k, pos, tok);
    }
    /* valid: only now is the context changed (an AUTO context takes the sequence's scaling) */
    if (rope_differs)
        set_rope(c, h.rope_scaling != (uint32_t)SP_ROPE_SCALING_NONE ? SP_ROPE_SCALING_YARN : SP_ROPE_SCALING_AUTO, h.rope_factor,
                 c->rope_orig_ctx, true);
    const size_t row = (size_t)h.kv_dim * c->kv_elem;
    memcpy(c->cell_pos, p, (size_t)n * sizeof(int32_t)), p += (size_t)n * sizeof(int32_t);
    memcpy(c->cell_tok, p, (size_t)n * sizeof(sp_token)), p += (size_t)n * sizeof(sp_token);
    for (int l = 0; l < layers; l++) {
        const size_t off = (size_t)l * c->n_ctx * row;
        memcpy(c->k_cache + off, p, (size_t)n * row), p += (size_t)n * row;
        memcpy(c->v_cache + off, p, (size_t)n * row), p += (size_t)n * row;
    }
    c->n_cached = n;
    c->kv_layers = layers;
    return SP_OK;
}

/* ------------------------------------------------------------------ forward pass */

static void add_bias(float *x, const float *b, int n_rows, int n) {
    if (!b) return;
    for (int r = 0; r < n_rows; r++)
        for (int i = 0; i < n; i++) x[(int64_t)r * n + i] += b[i];
}

static void store_kv(sp_context *c, uint8_t *cache, int layer, int cell, const float *src, int kv_dim) {
    uint8_t *dst = cache + (((size_t)layer * c->n_ctx + (size_t)cell) * (size_t)kv_dim) * c->kv_elem;
    if (c->kv_type == SP_KV_F16) sp_kernels()->f32_to_f16(src, (uint16_t *)dst, kv_dim);
    else memcpy(dst, src, (size_t)kv_dim * sizeof(float));
}

/* RoPE on the batch's q and k of one layer and their K/V into each row's cache (row t joins
 * row_seq[t] at cell n_visible[t] - 1), a share of the rows per task. */
typedef struct {
    sp_context *c; /* the scratch buffers */
    sp_context *const *row_seq;
    int layer, n;
} rope_store_job;

static void rope_store_task(void *arg, int task, int n_tasks) {
    const rope_store_job *j = arg;
    sp_context *c = j->c;
    const sp_model *m = c->model;
    const int nh = m->info.n_head, nkv = m->info.n_head_kv, hd = m->info.head_dim;
    const int64_t q_dim = (int64_t)nh * hd, kv_dim = (int64_t)nkv * hd;
    for (int t = (int)((int64_t)j->n * task / n_tasks); t < (int)((int64_t)j->n * (task + 1) / n_tasks); t++) {
        const float *cs = c->rope_cs + (int64_t)t * c->rope.n_rot;
        sp_context *seq = j->row_seq[t];
        sp_rope_apply(c->q + t * q_dim, nh, hd, cs, &c->rope); /* n_rot and the pairing: the model's */
        sp_rope_apply(c->k + t * kv_dim, nkv, hd, cs, &c->rope);
        store_kv(seq, seq->k_cache, j->layer, c->n_visible[t] - 1, c->k + t * kv_dim, (int)kv_dim);
        store_kv(seq, seq->v_cache, j->layer, c->n_visible[t] - 1, c->v + t * kv_dim, (int)kv_dim);
    }
}

/* The steps between the products, a share of the rows a task: x += add (add NULL: none), then
 * out = rmsnorm(x) · weight (out NULL: none); or the SwiGLU gate · up. Each row alone, as a decode
 * step's single row is, so a row's results do not depend on the split. A prefill ran them on the
 * caller alone while the workers waited: SmolLM2-135M pp512 spent 7 % of its samples there, about
 * twice that of its time (on the pool, with the norm's sum in eight chains: +13-22 %; the draft
 * shape +15-21 %, the 1B +4-9 %; benchmarks.md). A decode step's one row stays on the caller
 * (sp_parallel_for_sized). */
typedef struct {
    float *x, *out;
    const float *add, *weight;
    int d;
    float eps;
    float *gate; /* SwiGLU: gate[r] = silu(gate[r]) · up[r], d values a row */
    const float *up;
    int n;
} rows_job;

static void rows_task(void *arg, int task, int n_tasks) {
    const rows_job *j = arg;
    const int64_t d = j->d;
    for (int r = (int)((int64_t)j->n * task / n_tasks); r < (int)((int64_t)j->n * (task + 1) / n_tasks); r++) {
        if (j->gate) {
            sp_silu_mul(j->gate + r * d, j->up + r * d, d);
            continue;
        }
        float *x = j->x + r * d;
        if (j->add) { /* four at a time in a vector (GCC's -O2 leaves a loop of unknown length scalar) */
            const float *add = j->add + r * d;
            typedef float four __attribute__((vector_size(16)));
            int64_t i = 0;
            for (; i + 4 <= d; i += 4) {
                four a, b;
                memcpy(&a, x + i, sizeof a);
                memcpy(&b, add + i, sizeof b);
                a += b;
                memcpy(x + i, &a, sizeof a);
            }
            for (; i < d; i++) x[i] += add[i];
        }
        if (j->out) sp_rmsnorm(j->out + r * d, x, j->weight, 1, j->d, j->eps);
    }
}

static void run_rows(rows_job *j) {
    const int tasks = j->n < sp_threads_count() ? j->n : sp_threads_count();
    sp_parallel_for_sized(tasks, rows_task, j, (int64_t)j->n * j->d);
}

/* x += add (NULL: none), then out = rmsnorm(x) · weight (NULL: none), for n rows of d */
static void residual_norm(float *x, const float *add, float *out, const float *weight, int n, int d, float eps) {
    rows_job j = {.x = x, .out = out, .add = add, .weight = weight, .d = d, .eps = eps, .n = n};
    run_rows(&j);
}

static void swiglu(float *gate, const float *up, int n, int n_ff) {
    rows_job j = {.gate = gate, .up = up, .d = n_ff, .n = n};
    run_rows(&j);
}

/* A pass's products of one input x by n_w weights (q, k and v; gate and up), each sequence's
 * rows computed as they would be alone: the first n_step rows are decode steps of one-token
 * sequences, in the decode form (each row bit for bit a lone token's; the weights read once for
 * all of them), all n_w products one job of the pool — a decode step's products are short, and
 * each job ends with a wait for its last task (1B F16 decode, AMD Zen 3, 2 threads: +0.2-1 %,
 * SmolLM2-135M +1.3-2.6 %); then each other sequence's run of rows as one product of its own —
 * the tiled forms round by how many rows they hold, and a prompt piece is compute-bound: reading
 * the weights once more costs little. */
static void matmul(int n_w, const sp_weight *const *w, const float *x, int n, int n_step, sp_context *const *row_seq,
                   float *const *out) {
    if (n_step > 0) sp_matmul_each_group(n_w, w, x, n_step, out);
    for (int t0 = n_step, t1; t0 < n; t0 = t1) {
        for (t1 = t0 + 1; t1 < n && row_seq[t1] == row_seq[t0];) t1++;
        for (int i = 0; i < n_w; i++) sp_matmul(w[i], x + (int64_t)t0 * w[i]->n_in, t1 - t0, out[i] + (int64_t)t0 * w[i]->n_out);
    }
}

/*
 * The last layer's rows past their K and V. Only the rows whose logits are asked for go on
 * through attention, its output projection and the feed-forward: the others' hidden states
 * would be read by nothing (their keys and values, all the later passes need of them, are in the
 * cache by then). Those rows' q, x and n_visible move to the front in batch order, so each
 * context's rows stay consecutive and the decode steps first; c->out_seq gets their sequences
 * and c->out_row a batch row's new place. Returns how many rows go on; *n_step_kept, how many of
 * them are decode steps. A prompt piece without logits then costs its last layer's q, k and v
 * projections alone, the final piece its last row's attention and feed-forward (a draft of 8
 * layers: an eighth of its prefill).
 */
static int keep_output_rows(sp_context *c, sp_context *const *row_seq, const int32_t *rows, int n_rows, int n, int n_step,
                            int *n_step_kept) {
    const int64_t d = c->model->info.n_embd, q_dim = (int64_t)c->model->info.n_head * c->model->info.head_dim;
    int *at = c->out_row, kept = 0;
    for (int t = 0; t < n; t++) at[t] = -1;
    for (int r = 0; r < n_rows; r++) at[rows[r]] = 0; /* rows may repeat */
    *n_step_kept = 0;
    for (int t = 0; t < n; t++) {
        if (at[t] < 0) continue;
        if (kept != t) { /* kept < t: the rows do not overlap */
            memcpy(c->x + kept * d, c->x + t * d, (size_t)d * sizeof *c->x);
            memcpy(c->q + kept * q_dim, c->q + t * q_dim, (size_t)q_dim * sizeof *c->q);
            c->n_visible[kept] = c->n_visible[t];
        }
        c->out_seq[kept] = row_seq[t];
        *n_step_kept += t < n_step;
        at[t] = kept++;
    }
    return kept;
}

/*
 * One forward pass of n ≤ c->n_batch tokens, computed in c's scratch buffers. The rows belong to
 * sequences: row t is appended to the cache of row_seq[t], after that context's cached tokens
 * and the pass's earlier rows of the same context (a context's rows are consecutive). A prefill
 * is n rows of one context (row_seq all c); a batched decode step one row for each of several
 * contexts on the same model; a scheduler's step both. The first n_step rows are one-token
 * sequences (decode steps: matmul above). Every sequence's results are those of its rows alone.
 * Logits for pass rows rows[0..n_rows) — the first n_step_rows among the decode steps' rows, the
 * others each sequence's together; only those rows go through the last layer past its K and V
 * (keep_output_rows), unless the pass scores the prompt (every row's q in every layer).
 */
static void forward_batch(sp_context *c, sp_context *const *row_seq, const sp_token *tokens, const int32_t *positions,
                          int n, int n_step, const int32_t *rows, int n_rows, int n_step_rows, float *logits,
                          const sp_forward_opts *o) {
    const sp_model *m = c->model;
    const sp_model_info *info = &m->info;
    const int d = info->n_embd, hd = info->head_dim, nh = info->n_head, nkv = info->n_head_kv;
    const int q_dim = nh * hd, kv_dim = nkv * hd;
    const int n_layers = o && o->n_layers > 0 && o->n_layers < info->n_layer ? o->n_layers : info->n_layer;
    const float scale = 1.0f / sqrtf((float)hd);

    /* embed; each row's cache cell, recorded in its context now (the layers read the cells'
     * counts from n_visible only) */
    for (int t = 0; t < n; t++) sp_weight_row(&m->tok_embd, tokens[t], c->x + (int64_t)t * d);
    for (int t = 0; t < n; t++) /* a context's rows are consecutive */
        c->n_visible[t] = t > 0 && row_seq[t - 1] == row_seq[t] ? c->n_visible[t - 1] + 1 : row_seq[t]->n_cached + 1;
    for (int t = 0; t < n; t++) { /* rows in cache order: each context ends at its last row */
        sp_context *seq = row_seq[t];
        const int cell = c->n_visible[t] - 1;
        seq->cell_pos[cell] = positions[t];
        seq->cell_tok[cell] = tokens[t];
        seq->kv_layers = cell == 0 || n_layers < seq->kv_layers ? n_layers : seq->kv_layers;
        seq->n_cached = cell + 1;
    }
    /* once for every layer; each run of rows with its own context's scaling (sequences batched
     * together may read at different lengths) */
    for (int t0 = 0, t1; t0 < n; t0 = t1) {
        for (t1 = t0 + 1; t1 < n && row_seq[t1] == row_seq[t0]; t1++) {}
        sp_rope_table(&row_seq[t0]->rope, positions + t0, t1 - t0, c->rope_cs + (int64_t)t0 * c->rope.n_rot);
    }

    /* scoring reads every row's q in every layer; otherwise the last layer's rows past their K/V
     * are those asked for (keep_output_rows), and x_row says where each went */
    const bool scoring = o && o->score_acc && o->score_n_keys > 0;
    sp_context *const *const pass_seq = row_seq;
    const int *x_row = NULL;
    for (int il = 0; il < n_layers; il++) {
        const sp_layer *L = &m->layers[il];
        /* attention (the layers after the first have their input normalized by the one before) */
        if (il == 0) residual_norm(c->x, NULL, c->xb, L->attn_norm, n, d, info->rms_eps);
        matmul(3, (const sp_weight *[]){&L->wq, &L->wk, &L->wv}, c->xb, n, n_step, row_seq, (float *[]){c->q, c->k, c->v});
        add_bias(c->q, L->bq, n, q_dim);
        add_bias(c->k, L->bk, n, kv_dim);
        add_bias(c->v, L->bv, n, kv_dim);
        if (L->q_norm) residual_norm(c->q, NULL, c->q, L->q_norm, n * nh, hd, info->rms_eps);
        if (L->k_norm) residual_norm(c->k, NULL, c->k, L->k_norm, n * nkv, hd, info->rms_eps);
        rope_store_job rj = {c, row_seq, il, n};
        sp_parallel_for(n < 64 ? 1 : sp_threads_count(), rope_store_task, &rj);
        if (il == n_layers - 1 && !scoring) { /* from here n, n_step and row_seq count the kept rows */
            n = keep_output_rows(c, row_seq, rows, n_rows, n, n_step, &n_step);
            row_seq = c->out_seq;
            x_row = c->out_row;
            if (n == 0) break;
        }
        const size_t layer_off = (size_t)il * c->n_ctx * kv_dim * c->kv_elem;
        for (int t0 = 0, t1; t0 < n; t0 = t1) { /* each run of rows of one context against its cache */
            for (t1 = t0 + 1; t1 < n && row_seq[t1] == row_seq[t0];) t1++;
            const sp_context *seq = row_seq[t0];
            const size_t seq_off = (size_t)il * seq->n_ctx * kv_dim * seq->kv_elem;
            sp_attention_args args = {
                c->q + (int64_t)t0 * q_dim, c->att + (int64_t)t0 * q_dim, t1 - t0, seq->k_cache + seq_off,
                seq->v_cache + seq_off, seq->kv_type == SP_KV_F16, c->n_visible + t0, nh, nkv, hd, scale,
            };
            sp_attention(&args);
        }
        if (scoring) /* a single-context batch (sp_forward) */
            sp_attention_probs_max(c->q, n, c->k_cache + layer_off, c->kv_type == SP_KV_F16, o->score_n_keys, nh, nkv,
                                   hd, scale, o->score_pool_kernel, o->score_acc);
        matmul(1, (const sp_weight *[]){&L->wo}, c->att, n, n_step, row_seq, (float *[]){c->xb});

        /* feed-forward (SwiGLU) */
        residual_norm(c->x, c->xb, c->xb, L->ffn_norm, n, d, info->rms_eps);
        matmul(2, (const sp_weight *[]){&L->gate, &L->up}, c->xb, n, n_step, row_seq, (float *[]){c->hb, c->hb2});
        swiglu(c->hb, c->hb2, n, info->n_ff);
        matmul(1, (const sp_weight *[]){&L->down}, c->hb, n, n_step, row_seq, (float *[]){c->xb});
        /* the residual, and the next layer's input normalized in the same pass over the rows */
        residual_norm(c->x, c->xb, il + 1 < n_layers ? c->xb : NULL, il + 1 < n_layers ? m->layers[il + 1].attn_norm : NULL, n, d,
                      info->rms_eps);
    }

    /* output head, only for the rows asked for, each sequence's as alone: the decode steps' in
     * groups, then each other sequence's rows (consecutive in rows[]) in chunks (rows may repeat) */
    for (int r0 = 0, r1; r0 < n_rows; r0 = r1) {
        if (r0 < n_step_rows) {
            r1 = n_step_rows - r0 < c->n_batch ? n_step_rows : r0 + c->n_batch;
        } else {
            for (r1 = r0 + 1; r1 < n_rows && r1 - r0 < c->n_batch && pass_seq[rows[r1]] == pass_seq[rows[r0]];) r1++;
        }
        const int nr = r1 - r0;
        for (int r = 0; r < nr; r++) {
            const int at = x_row ? x_row[rows[r0 + r]] : rows[r0 + r];
            sp_rmsnorm(c->logit_in + (int64_t)r * d, c->x + (int64_t)at * d, m->output_norm, 1, d, info->rms_eps);
        }
        if (r0 < n_step_rows) sp_matmul_each(&m->output, c->logit_in, nr, logits + (size_t)r0 * info->n_vocab);
        else sp_matmul(&m->output, c->logit_in, nr, logits + (size_t)r0 * info->n_vocab);
    }
}

/* A pass on its own context's buffers (its opts apply: scoring reads that context's cache). */
static void run_alone(sp_pass *p) {
    const int step = p->n == 1; /* one token: a decode step */
    forward_batch(p->ctx, p->ctx->row_seq, p->tokens, p->positions, p->n, step, p->rows, p->n_rows, step ? p->n_rows : 0,
                  p->logits, p->opts);
    p->ran = true;
}

sp_context *sp_pass_context(const sp_pass *p) { return p ? p->ctx : NULL; }
const sp_model *sp_pass_model(const sp_pass *p) { return p ? p->ctx->model : NULL; }
int sp_pass_n_tokens(const sp_pass *p) { return p ? p->n : 0; }
bool sp_pass_joins(const sp_pass *p) {
    return p && !(p->opts && ((p->opts->score_acc && p->opts->score_n_keys > 0) || p->opts->n_layers > 0));
}

sp_status sp_passes_run(sp_context *scratch, sp_pass *const *passes, int n) {
    if (n <= 0 || !passes) return sp_fail(SP_ERR_ARGUMENT, "passes: none to run");
    for (int i = 0; i < n; i++) {
        if (!passes[i] || passes[i]->ran) return sp_fail(SP_ERR_ARGUMENT, "passes: pass %d is missing or has run", i);
        if (n > 1 && !sp_pass_joins(passes[i]))
            return sp_fail(SP_ERR_ARGUMENT, "passes: pass %d needs a forward pass of its own", i);
        if (passes[i]->ctx->model != passes[0]->ctx->model)
            return sp_fail(SP_ERR_ARGUMENT, "passes: pass %d runs another model than pass 0", i);
        for (int k = 0; k < i; k++)
            if (passes[k]->ctx == passes[i]->ctx) return sp_fail(SP_ERR_ARGUMENT, "passes: passes %d and %d are of one context", k, i);
    }
    if (n == 1) { /* its own buffers hold it */
        run_alone(passes[0]);
        return SP_OK;
    }
    if (!scratch) scratch = passes[0]->ctx;
    if (scratch->model != passes[0]->ctx->model) return sp_fail(SP_ERR_ARGUMENT, "passes: the scratch context runs another model");
    int n_tok = 0, n_rows = 0;
    for (int i = 0; i < n; i++) n_tok += passes[i]->n, n_rows += passes[i]->n_rows;
    if (n_tok > scratch->n_batch)
        return sp_fail(SP_ERR_ARGUMENT, "passes: %d tokens in one pass, the scratch context holds %d", n_tok, scratch->n_batch);
    const int V = scratch->model->info.n_vocab;
    sp_context **seq = malloc((size_t)n_tok * sizeof *seq);
    sp_token *tok = malloc((size_t)n_tok * sizeof *tok);
    int32_t *pos = malloc((size_t)n_tok * sizeof *pos);
    int32_t *rows = malloc(((size_t)n_rows + 1) * sizeof *rows);
    float *logits = malloc(((size_t)n_rows + 1) * (size_t)V * sizeof *logits);
    sp_pass **order = malloc((size_t)n * sizeof *order);
    if (!seq || !tok || !pos || !rows || !logits || !order) {
        free(seq); free(tok); free(pos); free(rows); free(logits); free(order);
        return sp_fail(SP_ERR_MEMORY, "passes: out of memory for %d tokens", n_tok);
    }
    /* the decode steps first (their rows computed each as alone), then the rest, each pass's
     * rows together */
    int n_step = 0, n_step_rows = 0, k = 0;
    for (int i = 0; i < n; i++)
        if (passes[i]->n == 1) order[k++] = passes[i], n_step++, n_step_rows += passes[i]->n_rows;
    for (int i = 0; i < n; i++)
        if (passes[i]->n != 1) order[k++] = passes[i];
    for (int i = 0, t = 0, r = 0; i < n; i++) {
        const sp_pass *p = order[i];
        for (int j = 0; j < p->n_rows; j++) rows[r++] = t + p->rows[j];
        for (int j = 0; j < p->n; j++, t++) seq[t] = p->ctx, tok[t] = p->tokens[j], pos[t] = p->positions[j];
    }
    forward_batch(scratch, seq, tok, pos, n_tok, n_step, rows, n_rows, n_step_rows, logits, NULL);
    for (int i = 0, r = 0; i < n; i++) {
        sp_pass *p = order[i];
        if (p->n_rows) memcpy(p->logits, logits + (size_t)r * V, (size_t)p->n_rows * V * sizeof *logits);
        r += p->n_rows;
        p->ran = true;
    }
    free(seq); free(tok); free(pos); free(rows); free(logits); free(order);
    return SP_OK;
}

sp_status sp_forward(sp_context *c, const sp_token *tokens, const int32_t *positions, int n,
                     const int32_t *logit_rows, int n_logit_rows, float *logits_out, const sp_forward_opts *opts) {
    const sp_model_info *info = &c->model->info;
    if (n < 0 || n_logit_rows < 0 || (n > 0 && (!tokens || !positions)) || (n_logit_rows > 0 && (!logit_rows || !logits_out)))
        return sp_fail(SP_ERR_ARGUMENT, "decode: invalid arguments");
    if (n > c->n_ctx - c->n_cached)
        return sp_fail(SP_ERR_CONTEXT_FULL, "decode: %d tokens do not fit in the context (%d of %d cells used)", n,
                       c->n_cached, c->n_ctx);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= info->n_vocab)
            return sp_fail(SP_ERR_ARGUMENT, "decode: token %d at index %d is outside the vocabulary (0..%d)", tokens[i], i,
                           info->n_vocab - 1);
        if (positions[i] < 0) return sp_fail(SP_ERR_ARGUMENT, "decode: negative position %d at index %d", positions[i], i);
    }
    for (int r = 0; r < n_logit_rows; r++)
        if (logit_rows[r] < 0 || logit_rows[r] >= n)
            return sp_fail(SP_ERR_ARGUMENT, "decode: logit row %d is outside the batch of %d", logit_rows[r], n);
    if (opts && opts->score_acc && (opts->score_n_keys < 0 || opts->score_n_keys > c->n_cached + (n < c->n_batch ? n : c->n_batch)))
        return sp_fail(SP_ERR_ARGUMENT, "decode: scoring %d keys but only %d are cached", opts->score_n_keys, c->n_cached);

    int32_t *rows = malloc(((size_t)n_logit_rows + 1) * sizeof *rows);
    int32_t *order = malloc(((size_t)n_logit_rows + 1) * sizeof *order);
    if (!rows || !order) {
        free(rows); free(order);
        return sp_fail(SP_ERR_MEMORY, "decode: out of memory");
    }
    sp_status st = SP_OK;
    for (int b0 = 0; b0 < n; b0 += c->n_batch) {
        const int nb = n - b0 < c->n_batch ? n - b0 : c->n_batch;
        int n_rows = 0;
        for (int r = 0; r < n_logit_rows; r++)
            if (logit_rows[r] >= b0 && logit_rows[r] < b0 + nb) {
                rows[n_rows] = logit_rows[r] - b0;
                order[n_rows++] = r;
            }
        sp_forward_opts o = opts ? *opts : (sp_forward_opts){0};
        if (o.score_acc) o.score_acc += (size_t)b0 * o.score_n_keys;
        float *tmp = n_rows ? malloc((size_t)n_rows * info->n_vocab * sizeof(float)) : NULL;
        if (n_rows && !tmp) {
            st = sp_fail(SP_ERR_MEMORY, "decode: out of memory for %d rows of logits", n_rows);
            break;
        }
        sp_pass pass = {c, tokens + b0, positions + b0, nb, rows, n_rows, tmp, &o, false};
        if (c->runner) { /* a scheduler runs it, when and with what it chooses */
            st = c->runner(c->runner_user, &pass);
            if (st == SP_OK && !pass.ran) st = sp_fail(SP_ERR_ARGUMENT, "decode: the context's runner returned without running its pass");
        } else {
            run_alone(&pass);
        }
        if (st != SP_OK) {
            free(tmp);
            break;
        }
        for (int r = 0; r < n_rows; r++)
            memcpy(logits_out + (size_t)order[r] * info->n_vocab, tmp + (size_t)r * info->n_vocab,
                   (size_t)info->n_vocab * sizeof(float));
        free(tmp);
    }
    free(rows); free(order);
    return st;
}

sp_status sp_decode(sp_context *c, const sp_token *tokens, const int32_t *positions, int n,
                    const int32_t *logit_rows, int n_logit_rows, float *logits_out) {
    return sp_forward(c, tokens, positions, n, logit_rows, n_logit_rows, logits_out, NULL);
}

sp_status sp_decode_sequences(sp_context *const *ctxs, const sp_token *tokens, const int32_t *positions, int n,
                              float *logits_out) {
    if (n < 0 || (n > 0 && (!ctxs || !tokens || !positions || !logits_out)))
        return sp_fail(SP_ERR_ARGUMENT, "decode: invalid arguments");
    if (n == 0) return SP_OK;
    const sp_model *m = ctxs[0] ? ctxs[0]->model : NULL;
    for (int i = 0; i < n; i++) {
        const sp_context *c = ctxs[i];
        if (!c) return sp_fail(SP_ERR_ARGUMENT, "decode: context %d is NULL", i);
        if (c->model != m) return sp_fail(SP_ERR_ARGUMENT, "decode: context %d runs another model than context 0", i);
        for (int k = 0; k < i; k++)
            if (ctxs[k] == c) return sp_fail(SP_ERR_ARGUMENT, "decode: context %d appears twice (also at %d)", i, k);
        if (c->n_cached >= c->n_ctx)
            return sp_fail(SP_ERR_CONTEXT_FULL, "decode: context %d is full (%d cells)", i, c->n_ctx);
        if (tokens[i] < 0 || tokens[i] >= m->info.n_vocab)
            return sp_fail(SP_ERR_ARGUMENT, "decode: token %d at index %d is outside the vocabulary (0..%d)", tokens[i], i,
                           m->info.n_vocab - 1);
        if (positions[i] < 0) return sp_fail(SP_ERR_ARGUMENT, "decode: negative position %d at index %d", positions[i], i);
    }
    /* micro-batches of at most ctxs[0]'s n_batch rows, in its scratch buffers; a row's logits are
     * row r of its micro-batch, so they land in logits_out directly */
    sp_context *scratch = ctxs[0];
    int32_t *rows = malloc((size_t)scratch->n_batch * sizeof *rows);
    if (!rows) return sp_fail(SP_ERR_MEMORY, "decode: out of memory");
    for (int r = 0; r < scratch->n_batch; r++) rows[r] = r;
    for (int b0 = 0; b0 < n; b0 += scratch->n_batch) {
        const int nb = n - b0 < scratch->n_batch ? n - b0 : scratch->n_batch;
        forward_batch(scratch, ctxs + b0, tokens + b0, positions + b0, nb, nb, rows, nb, nb,
                      logits_out + (size_t)b0 * m->info.n_vocab, NULL);
    }
    free(rows);
    return SP_OK;
}
