/*
 * Tokenizers read from GGUF metadata, matching llama.cpp token for token:
 *  - byte-level BPE (tokenizer.ggml.model = "gpt2") with the llama-bpe (Llama 3), qwen2, gpt-2
 *    and smollm (SmolLM, StarCoder) pre-tokenizers: split the text into words, map bytes to
 *    GPT-2's printable alphabet, then merge pairs by rank;
 *  - SentencePiece BPE ("llama": Llama 2, Mistral, TinyLlama): spaces become U+2581, pairs merge
 *    by vocabulary score, unknown characters fall back to <0xXX> byte tokens.
 * Special tokens are cut out of the text first (control tokens only when parse_special is set).
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "unicode.h"

typedef enum { VOCAB_BPE, VOCAB_SPM } vocab_kind;
/* PRE_GPT2: GPT-2's own regex; PRE_SMOLLM: the same after every digit is split off alone
 * (SmolLM, StarCoder: Hugging Face's Digits(individual_digits) before ByteLevel). */
typedef enum { PRE_LLAMA3, PRE_QWEN2, PRE_GPT2, PRE_SMOLLM, PRE_DEFAULT } pre_kind;

struct sp_vocab {
    vocab_kind kind;
    pre_kind pre;
    int n_tokens;
    const char **text;   /* into the mapped file */
    int *text_len;
    uint8_t *type;       /* sp_token_type */
    float *score;
    /* text -> id, open addressing */
    int32_t *text_table;
    uint32_t text_mask;
    /* (left id, right id) -> merge rank */
    uint64_t *merge_keys;
    int32_t *merge_rank;
    uint32_t merge_mask;
    /* byte -> token id: GPT-2 alphabet character (BPE) or <0xXX> (SPM) */
    sp_token byte_token[256];
    sp_token bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    sp_token *special;   /* control / user-defined / unknown tokens, longest text first */
    int n_special;
    uint8_t *is_eog;
};

/* ------------------------------------------------------------------ hashing */

static uint32_t hash_bytes(const char *s, int len) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_u64(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return (uint32_t)k;
}

static uint32_t table_size_for(uint64_t n) {
    uint32_t size = 16;
    while (size < 2 * n) size <<= 1;
    return size;
}

static sp_token find_text(const sp_vocab *v, const char *s, int len) {
    for (uint32_t i = hash_bytes(s, len) & v->text_mask;; i = (i + 1) & v->text_mask) {
        int32_t id = v->text_table[i];
        if (id < 0) return -1;
        if (v->text_len[id] == len && memcmp(v->text[id], s, (size_t)len) == 0) return id;
    }
}

static int find_merge(const sp_vocab *v, sp_token left, sp_token right) {
    if (!v->merge_keys) return -1;
    const uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint32_t i = hash_u64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        if (v->merge_rank[i] < 0) return -1;
        if (v->merge_keys[i] == key) return v->merge_rank[i];
    }
}

/* ------------------------------------------------------------------ GPT-2 byte alphabet */

/* GPT-2 maps each byte to a printable code point: printable Latin-1 bytes map to themselves,
 * the other 68 bytes to U+0100.. in order. */
static uint32_t byte_to_cp(unsigned char b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
    return 256u + (uint32_t)n;
}

static int cp_to_byte(uint32_t cp) {
    static int16_t table[324];
    static bool ready;
    if (!ready) { /* idempotent, so a race only repeats the same writes */
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) table[byte_to_cp((unsigned char)b)] = (int16_t)b;
        ready = true;
    }
    return cp < 324 ? table[cp] : -1;
}

/* ------------------------------------------------------------------ loading */

static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "</s>", NULL,
};

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static sp_token opt_token(const sp_gguf_file *f, const char *key, sp_token dflt, int n_tokens) {
    uint32_t v;
    if (sp_gguf_get_u32_opt(f, key, &v) && v < (uint32_t)n_tokens) return (sp_token)v;
    return dflt;
}

sp_status sp_vocab_load(const sp_gguf_file *f, sp_vocab **out) {
    *out = NULL;
    sp_gguf_string model;
    if (!sp_gguf_get_string_opt(f, "tokenizer.ggml.model", &model))
        return sp_fail(SP_ERR_FORMAT, "tokenizer: tokenizer.ggml.model is missing");
    const sp_gguf_kv *tokens;
    if (!sp_gguf_get_array_opt(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens))
        return sp_fail(SP_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is missing or not a string array");
    if (tokens->array_len == 0 || tokens->array_len > (1u << 24))
        return sp_fail(SP_ERR_FORMAT, "tokenizer: vocabulary of %llu tokens", (unsigned long long)tokens->array_len);
    sp_vocab *v = calloc(1, sizeof *v);
    if (!v) return sp_fail(SP_ERR_MEMORY, "tokenizer: out of memory");
    *out = v;
    if (sp_gguf_string_eq(model, "gpt2")) v->kind = VOCAB_BPE;
    else if (sp_gguf_string_eq(model, "llama")) v->kind = VOCAB_SPM;
    else
        return sp_fail(SP_ERR_UNSUPPORTED, "tokenizer: model '%.*s' is not supported (gpt2, llama are)",
                       (int)(model.len < 32 ? model.len : 32), model.ptr);
    const int n = (int)tokens->array_len;
    v->n_tokens = n;
    v->text = calloc((size_t)n, sizeof *v->text);
    v->text_len = calloc((size_t)n, sizeof *v->text_len);
    v->type = calloc((size_t)n, 1);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->is_eog = calloc((size_t)n, 1);
    v->text_mask = table_size_for((uint64_t)n) - 1;
    v->text_table = malloc(((size_t)v->text_mask + 1) * sizeof *v->text_table);
    if (!v->text || !v->text_len || !v->type || !v->score || !v->is_eog || !v->text_table)
        return sp_fail(SP_ERR_MEMORY, "tokenizer: out of memory");
    memset(v->text_table, 0xFF, ((size_t)v->text_mask + 1) * sizeof *v->text_table);

    const uint8_t *cursor = tokens->value;
    for (int i = 0; i < n; i++) {
        sp_gguf_string s = sp_gguf_next_string(&cursor);
        if (s.len > 65536) return sp_fail(SP_ERR_FORMAT, "tokenizer: token %d is %llu bytes long", i, (unsigned long long)s.len);
        v->text[i] = s.ptr;
        v->text_len[i] = (int)s.len;
        v->type[i] = SP_TOKEN_NORMAL;
        /* first id wins for duplicate texts, as in llama.cpp's token_to_id map */
        uint32_t h = hash_bytes(s.ptr, (int)s.len) & v->text_mask;
        for (;; h = (h + 1) & v->text_mask) {
            int32_t id = v->text_table[h];
            if (id < 0) { v->text_table[h] = i; break; }
            if (v->text_len[id] == (int)s.len && memcmp(v->text[id], s.ptr, s.len) == 0) break;
        }
    }
    const sp_gguf_kv *types;
    if (sp_gguf_get_array_opt(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types) ||
        sp_gguf_get_array_opt(f, "tokenizer.ggml.token_type", GGUF_TYPE_UINT32, &types)) {
        if (types->array_len != (uint64_t)n) return sp_fail(SP_ERR_FORMAT, "tokenizer: token_type has %llu entries for %d tokens",
                                                           (unsigned long long)types->array_len, n);
        for (int i = 0; i < n; i++) {
            int32_t t;
            memcpy(&t, types->value + 4 * (size_t)i, 4);
            v->type[i] = (t >= 1 && t <= 6) ? (uint8_t)t : SP_TOKEN_NORMAL;
        }
    }
    const sp_gguf_kv *scores;
    if (sp_gguf_get_array_opt(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores)) {
        if (scores->array_len != (uint64_t)n) return sp_fail(SP_ERR_FORMAT, "tokenizer: scores has %llu entries for %d tokens",
                                                            (unsigned long long)scores->array_len, n);
        memcpy(v->score, scores->value, (size_t)n * sizeof(float));
    }

    if (v->kind == VOCAB_BPE) {
        sp_gguf_string pre;
        v->pre = PRE_DEFAULT;
        if (sp_gguf_get_string_opt(f, "tokenizer.ggml.pre", &pre)) {
            if (sp_gguf_string_eq(pre, "llama-bpe") || sp_gguf_string_eq(pre, "llama3") || sp_gguf_string_eq(pre, "smaug-bpe")) {
                v->pre = PRE_LLAMA3;
                v->ignore_merges = true;
            } else if (sp_gguf_string_eq(pre, "qwen2")) {
                v->pre = PRE_QWEN2;
            } else if (sp_gguf_string_eq(pre, "gpt-2")) {
                v->pre = PRE_GPT2;
            } else if (sp_gguf_string_eq(pre, "smollm") || sp_gguf_string_eq(pre, "starcoder") || sp_gguf_string_eq(pre, "refact") ||
                       sp_gguf_string_eq(pre, "codeshell")) {
                v->pre = PRE_SMOLLM;
            } else if (!sp_gguf_string_eq(pre, "default")) {
                return sp_fail(SP_ERR_UNSUPPORTED,
                               "tokenizer: pre-tokenizer '%.*s' is not supported (llama-bpe, qwen2, gpt-2, smollm, default are)",
                               (int)(pre.len < 32 ? pre.len : 32), pre.ptr);
            }
        }
        const sp_gguf_kv *merges;
        if (!sp_gguf_get_array_opt(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges))
            return sp_fail(SP_ERR_FORMAT, "tokenizer: BPE vocabulary without tokenizer.ggml.merges");
        v->merge_mask = table_size_for(merges->array_len) - 1;
        v->merge_keys = malloc(((size_t)v->merge_mask + 1) * sizeof *v->merge_keys);
        v->merge_rank = malloc(((size_t)v->merge_mask + 1) * sizeof *v->merge_rank);
        if (!v->merge_keys || !v->merge_rank) return sp_fail(SP_ERR_MEMORY, "tokenizer: out of memory");
        memset(v->merge_rank, 0xFF, ((size_t)v->merge_mask + 1) * sizeof *v->merge_rank);
        cursor = merges->value;
        for (uint64_t r = 0; r < merges->array_len; r++) {
            sp_gguf_string s = sp_gguf_next_string(&cursor);
            const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
            if (!sp) return sp_fail(SP_ERR_FORMAT, "tokenizer: merge %llu has no space", (unsigned long long)r);
            sp_token l = find_text(v, s.ptr, (int)(sp - s.ptr));
            sp_token rr = find_text(v, sp + 1, (int)(s.ptr + s.len - sp - 1));
            if (l < 0 || rr < 0) continue; /* a merge of parts the vocabulary lacks can never apply */
            const uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rr;
            for (uint32_t i = hash_u64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
                if (v->merge_rank[i] < 0) { v->merge_keys[i] = key; v->merge_rank[i] = (int32_t)r; break; }
                if (v->merge_keys[i] == key) break; /* the first (lowest) rank wins */
            }
        }
        for (int b = 0; b < 256; b++) {
            char buf[4];
            int len = sp_utf8_encode(byte_to_cp((unsigned char)b), buf);
            v->byte_token[b] = find_text(v, buf, len);
        }
        v->add_bos = false;
        v->add_space_prefix = false;
    } else {
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            v->byte_token[b] = find_text(v, buf, 6);
        }
        v->add_bos = true;
        v->add_space_prefix = true;
    }
    v->bos = opt_token(f, "tokenizer.ggml.bos_token_id", v->kind == VOCAB_SPM ? 1 : -1, n);
    v->eos = opt_token(f, "tokenizer.ggml.eos_token_id", v->kind == VOCAB_SPM ? 2 : -1, n);
    v->eot = opt_token(f, "tokenizer.ggml.eot_token_id", -1, n);
    v->eom = opt_token(f, "tokenizer.ggml.eom_token_id", -1, n);
    v->unk = opt_token(f, "tokenizer.ggml.unknown_token_id", v->kind == VOCAB_SPM ? 0 : -1, n);
    v->pad = opt_token(f, "tokenizer.ggml.padding_token_id", -1, n);
    sp_gguf_get_bool_opt(f, "tokenizer.ggml.add_bos_token", &v->add_bos);
    sp_gguf_get_bool_opt(f, "tokenizer.ggml.add_eos_token", &v->add_eos);
    sp_gguf_get_bool_opt(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);

    /* End-of-generation tokens. Like llama.cpp, a token whose text is a well-known end marker
     * is treated as a control token even if the file typed it otherwise. */
    for (int i = 0; eog_texts[i]; i++) {
        sp_token id = find_text(v, eog_texts[i], (int)strlen(eog_texts[i]));
        if (id < 0) continue;
        v->is_eog[id] = 1;
        v->type[id] = SP_TOKEN_CONTROL;
        if (v->eot < 0 && strcmp(eog_texts[i], "</s>") != 0 && strcmp(eog_texts[i], "<|eom_id|>") != 0) v->eot = id;
    }
    if (v->eos >= 0) v->is_eog[v->eos] = 1;
    if (v->eot >= 0) v->is_eog[v->eot] = 1;
    if (v->eom >= 0) v->is_eog[v->eom] = 1;

    for (int i = 0; i < n; i++)
        if (v->type[i] == SP_TOKEN_CONTROL || v->type[i] == SP_TOKEN_USER_DEFINED || v->type[i] == SP_TOKEN_UNKNOWN)
            v->n_special++;
    /* longest text first (then lowest id), so "<|eot_id|>" is cut before any shorter prefix */
    uint64_t *keys = malloc(((size_t)v->n_special + 1) * sizeof *keys);
    v->special = malloc(((size_t)v->n_special + 1) * sizeof *v->special);
    if (!keys || !v->special) { free(keys); return sp_fail(SP_ERR_MEMORY, "tokenizer: out of memory"); }
    v->n_special = 0;
    for (int i = 0; i < n; i++)
        if ((v->type[i] == SP_TOKEN_CONTROL || v->type[i] == SP_TOKEN_USER_DEFINED || v->type[i] == SP_TOKEN_UNKNOWN) &&
            v->text_len[i] > 0)
            keys[v->n_special++] = ((uint64_t)(65536 - v->text_len[i]) << 32) | (uint32_t)i;
    qsort(keys, (size_t)v->n_special, sizeof *keys, cmp_u64);
    for (int i = 0; i < v->n_special; i++) v->special[i] = (sp_token)(keys[i] & 0xFFFFFFFFu);
    free(keys);
    return SP_OK;
}

void sp_vocab_free(sp_vocab *v) {
    if (!v) return;
    free(v->text); free(v->text_len); free(v->type); free(v->score); free(v->is_eog);
    free(v->text_table); free(v->merge_keys); free(v->merge_rank); free(v->special);
    free(v);
}

int sp_vocab_size(const sp_vocab *v) { return v->n_tokens; }

const char *sp_vocab_text(const sp_vocab *v, sp_token id, int *len) {
    if (id < 0 || id >= v->n_tokens) { *len = 0; return ""; }
    *len = v->text_len[id];
    return v->text[id];
}

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    sp_token *ids;
    int n, cap;
    bool oom;
} token_list;

static void push(token_list *l, sp_token t) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        sp_token *p = realloc(l->ids, (size_t)cap * sizeof *p);
        if (!p) { l->oom = true; return; }
        l->ids = p;
        l->cap = cap;
    }
    l->ids[l->n++] = t;
}

/* ------------------------------------------------------------------ pair-merging core */

/* Both BPE flavours merge adjacent symbols through a priority queue of candidate pairs. */
typedef struct { int start, len, prev, next; } symbol;
typedef struct { double priority; int left, right, left_len, right_len; } pair;

typedef struct {
    pair *items;
    int n, cap;
} pair_heap;

static bool pair_before(const pair *a, const pair *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

static bool heap_push(pair_heap *h, pair p) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 64;
        pair *q = realloc(h->items, (size_t)cap * sizeof *q);
        if (!q) return false;
        h->items = q;
        h->cap = cap;
    }
    int i = h->n++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!pair_before(&p, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = p;
    return true;
}

static pair heap_pop(pair_heap *h) {
    pair top = h->items[0], last = h->items[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->items[c + 1], &h->items[c])) c++;
        if (!pair_before(&h->items[c], &last)) break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n > 0) h->items[i] = last;
    return top;
}

/* Priority of merging symbols a and b of text s, or false if they cannot merge. */
typedef bool (*pair_rank_fn)(const sp_vocab *v, const char *s, const symbol *a, const symbol *b, double *priority);

static bool bpe_rank(const sp_vocab *v, const char *s, const symbol *a, const symbol *b, double *priority) {
    sp_token l = find_text(v, s + a->start, a->len), r = find_text(v, s + b->start, b->len);
    if (l < 0 || r < 0) return false;
    int rank = find_merge(v, l, r);
    if (rank < 0) return false;
    *priority = -(double)rank;
    return true;
}

static bool spm_rank(const sp_vocab *v, const char *s, const symbol *a, const symbol *b, double *priority) {
    (void)b;
    sp_token id = find_text(v, s + a->start, a->len + b->len);
    if (id < 0) return false;
    *priority = v->score[id];
    return true;
}

static void try_pair(pair_heap *h, const sp_vocab *v, const char *s, symbol *sym, int left, pair_rank_fn rank, bool *oom) {
    if (left < 0 || sym[left].next < 0) return;
    const int right = sym[left].next;
    pair p = {0, left, right, sym[left].len, sym[right].len};
    if (rank(v, s, &sym[left], &sym[right], &p.priority) && !heap_push(h, p)) *oom = true;
}

/* Splits s[0..len) into UTF-8 characters and merges pairs in priority order. Returns the
 * symbols (caller frees) with the first at index 0, or NULL when out of memory. */
static symbol *merge_symbols(const sp_vocab *v, const char *s, int len, pair_rank_fn rank) {
    symbol *sym = malloc(((size_t)len + 1) * sizeof *sym);
    if (!sym) return NULL;
    int n = 0;
    for (int i = 0; i < len;) {
        int cl = sp_utf8_seq_len((unsigned char)s[i]);
        if (cl > len - i) cl = len - i;
        sym[n] = (symbol){i, cl, n - 1, -1};
        if (n > 0) sym[n - 1].next = n;
        n++;
        i += cl;
    }
    pair_heap h = {0};
    bool oom = false;
    for (int i = 0; i + 1 < n; i++) try_pair(&h, v, s, sym, i, rank, &oom);
    while (h.n > 0 && !oom) {
        pair p = heap_pop(&h);
        symbol *a = &sym[p.left], *b = &sym[p.right];
        /* stale: one side has changed since the pair was queued */
        if (a->len == 0 || b->len == 0 || a->next != p.right || a->len != p.left_len || b->len != p.right_len) continue;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) sym[b->next].prev = p.left;
        try_pair(&h, v, s, sym, a->prev, rank, &oom);
        try_pair(&h, v, s, sym, p.left, rank, &oom);
    }
    free(h.items);
    if (oom) { free(sym); return NULL; }
    return sym;
}

/* ------------------------------------------------------------------ byte-level BPE */

/* One pre-tokenized word: map its bytes to GPT-2's alphabet, merge, emit ids. */
static bool bpe_word(const sp_vocab *v, const char *word, int len, token_list *out) {
    char *enc = malloc((size_t)len * 2 + 1);
    if (!enc) return false;
    int n = 0;
    for (int i = 0; i < len; i++) n += sp_utf8_encode(byte_to_cp((unsigned char)word[i]), enc + n);
    sp_token whole;
    if (v->ignore_merges && (whole = find_text(v, enc, n)) >= 0) {
        push(out, whole);
        free(enc);
        return true;
    }
    symbol *sym = merge_symbols(v, enc, n, bpe_rank);
    if (!sym) { free(enc); return false; }
    for (int i = 0; n > 0 && i >= 0; i = sym[i].next) {
        sp_token id = find_text(v, enc + sym[i].start, sym[i].len);
        if (id >= 0) { push(out, id); continue; }
        for (int k = 0; k < sym[i].len; k++) { /* as llama.cpp: each byte of the symbol alone */
            sp_token b = find_text(v, enc + sym[i].start + k, 1);
            if (b >= 0) push(out, b);
        }
    }
    free(sym);
    free(enc);
    return true;
}

static uint32_t cp_at(const char *s, int len, int pos, int *cl) {
    uint32_t cp = 0;
    if (pos >= len) { *cl = 0; return 0xFFFFFFFFu; }
    int n = sp_utf8_decode((const unsigned char *)s + pos, (size_t)(len - pos), &cp);
    *cl = n ? n : 1;
    return n ? cp : 0xFFFD;
}

/* Decodes s once into n code points with their byte offsets (off[n] = len); false if out of memory. */
static bool code_points(const char *s, int len, uint32_t **cps_out, int **off_out, int *n_out) {
    uint32_t *cps = malloc(((size_t)len + 1) * sizeof *cps);
    int *off = malloc(((size_t)len + 2) * sizeof *off);
    if (!cps || !off) { free(cps); free(off); return false; }
    int n = 0;
    for (int i = 0; i < len;) {
        int cl;
        cps[n] = cp_at(s, len, i, &cl);
        off[n++] = i;
        i += cl;
    }
    off[n] = len;
    *cps_out = cps;
    *off_out = off;
    *n_out = n;
    return true;
}

/* The Llama 3 / Qwen2 pre-tokenizer regex, written out as code (as llama.cpp does):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3} (qwen2: \p{N})
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * Works on code points; each word found is BPE-encoded into out. */
static bool pretokenize(const sp_vocab *v, const char *s, int len, token_list *out) {
    uint32_t *cps;
    int *off, n;
    if (!code_points(s, len, &cps, &off, &n)) return false;
    const int max_digits = v->pre == PRE_QWEN2 ? 1 : 3;
#define CP(i) ((i) < n ? cps[i] : 0xFFFFFFFFu)
#define IS_L(i) ((i) < n && sp_unicode_is_letter(cps[i]))
#define IS_N(i) ((i) < n && sp_unicode_is_number(cps[i]))
#define IS_S(i) ((i) < n && sp_unicode_is_whitespace(cps[i]))
    bool ok = true;
    int pos = 0;
    while (pos < n && ok) {
        const int start = pos;
        const uint32_t c = cps[pos];
        int end = -1;
        if (c == '\'' && pos + 1 < n) {
            uint32_t c1 = CP(pos + 1) < 128 ? (uint32_t)(CP(pos + 1) | 0x20) : CP(pos + 1);
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') end = pos + 2;
            else if (pos + 2 < n) {
                uint32_t c2 = CP(pos + 2) < 128 ? (uint32_t)(CP(pos + 2) | 0x20) : CP(pos + 2);
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) end = pos + 3;
            }
        }
        if (end < 0 && !(c == '\r' || c == '\n' || IS_N(pos)) && (IS_L(pos) || IS_L(pos + 1))) {
            int p = pos + 1;
            while (IS_L(p)) p++;
            end = p;
        }
        if (end < 0 && IS_N(pos)) {
            int p = pos;
            while (IS_N(p) && p - pos < max_digits) p++;
            end = p;
        }
        if (end < 0) {
            int p = pos + (c == ' ' ? 1 : 0);
            if (p < n && !IS_S(p) && !IS_L(p) && !IS_N(p)) {
                while (p < n && !IS_S(p) && !IS_L(p) && !IS_N(p)) p++;
                while (p < n && (cps[p] == '\r' || cps[p] == '\n')) p++;
                end = p;
            }
        }
        if (end < 0) {
            int nws = 0, last_rn = -1;
            while (IS_S(pos + nws)) {
                if (cps[pos + nws] == '\r' || cps[pos + nws] == '\n') last_rn = pos + nws + 1;
                nws++;
            }
            if (last_rn > 0) end = last_rn;
            else if (nws > 1 && pos + nws < n) end = pos + nws - 1;
            else if (nws > 0) end = pos + nws;
            else end = pos + 1;
        }
        pos = end;
        ok = bpe_word(v, s + off[start], off[end] - off[start], out);
    }
#undef CP
#undef IS_L
#undef IS_N
#undef IS_S
    free(cps);
    free(off);
    return ok;
}

/* The plain GPT-2 split for pre-tokenizer "default": words are runs between spaces, a space
 * staying attached to the word after it. Used only for vocabularies without a known pre. */
static bool pretokenize_default(const sp_vocab *v, const char *s, int len, token_list *out) {
    int start = 0;
    for (int i = 1; i <= len; i++)
        if (i == len || (s[i] == ' ' && s[i - 1] != ' ')) {
            if (!bpe_word(v, s + start, i - start, out)) return false;
            start = i;
        }
    return true;
}

/* GPT-2's regex, written out as code:
 *   's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
 * With digits_alone (smollm), every digit is first cut out as a word of its own and the regex
 * runs on the pieces between them, so no space or other character ever joins a digit. */
static bool pretokenize_gpt2(const sp_vocab *v, const char *s, int len, bool digits_alone, token_list *out) {
    uint32_t *cps;
    int *off, n;
    if (!code_points(s, len, &cps, &off, &n)) return false;
    bool ok = true;
    int pos = 0;
    while (pos < n && ok) {
        /* the piece the regex sees: up to the next digit (a digit alone when digits_alone) */
        int lim = n;
        if (digits_alone) {
            if (sp_unicode_is_number(cps[pos])) lim = pos + 1;
            else for (lim = pos; lim < n && !sp_unicode_is_number(cps[lim]); lim++) {}
        }
#define IS_L(i) ((i) < lim && sp_unicode_is_letter(cps[i]))
#define IS_N(i) ((i) < lim && sp_unicode_is_number(cps[i]))
#define IS_S(i) ((i) < lim && sp_unicode_is_whitespace(cps[i]))
        const uint32_t c = cps[pos];
        int end = -1;
        if (c == '\'' && pos + 1 < lim) {
            const uint32_t c1 = cps[pos + 1], c2 = pos + 2 < lim ? cps[pos + 2] : 0;
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') end = pos + 2;
            else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) end = pos + 3;
        }
        const int p0 = pos + (c == ' ' && pos + 1 < lim ? 1 : 0); /* the optional leading space */
        if (end < 0 && IS_L(p0)) {
            int p = p0;
            while (IS_L(p)) p++;
            end = p;
        }
        if (end < 0 && IS_N(p0)) {
            int p = p0;
            while (IS_N(p)) p++;
            end = p;
        }
        if (end < 0 && p0 < lim && !IS_S(p0) && !IS_L(p0) && !IS_N(p0)) {
            int p = p0;
            while (p < lim && !IS_S(p) && !IS_L(p) && !IS_N(p)) p++;
            end = p;
        }
        if (end < 0) { /* whitespace: all of it, less the last one when a non-space follows */
            int p = pos;
            while (IS_S(p)) p++;
            if (p - pos > 1 && p < lim) p--;
            end = p > pos ? p : pos + 1;
        }
#undef IS_L
#undef IS_N
#undef IS_S
        ok = bpe_word(v, s + off[pos], off[end] - off[pos], out);
        pos = end;
    }
    free(cps);
    free(off);
    return ok;
}

/* ------------------------------------------------------------------ SentencePiece */

static bool spm_fragment(const sp_vocab *v, const char *s, int len, bool space_prefix, token_list *out) {
    /* escape: optional leading space, then every ' ' becomes U+2581 (3 bytes) */
    char *t = malloc((size_t)len * 3 + 4);
    if (!t) return false;
    int n = 0;
    if (space_prefix) { memcpy(t, "\xe2\x96\x81", 3); n = 3; }
    for (int i = 0; i < len; i++) {
        if (s[i] == ' ') { memcpy(t + n, "\xe2\x96\x81", 3); n += 3; }
        else t[n++] = s[i];
    }
    symbol *sym = merge_symbols(v, t, n, spm_rank);
    if (!sym) { free(t); return false; }
    for (int i = 0; n > 0 && i >= 0; i = sym[i].next) {
        sp_token id = find_text(v, t + sym[i].start, sym[i].len);
        if (id >= 0) { push(out, id); continue; }
        for (int k = 0; k < sym[i].len; k++) {
            sp_token b = v->byte_token[(unsigned char)t[sym[i].start + k]];
            push(out, b >= 0 ? b : v->unk);
        }
    }
    free(sym);
    free(t);
    return true;
}

/* ------------------------------------------------------------------ special tokens */

typedef struct { int start, len; sp_token token; } fragment; /* token < 0: raw text */

static bool special_allowed(const sp_vocab *v, sp_token id, bool parse_special) {
    return parse_special || v->type[id] == SP_TOKEN_USER_DEFINED;
}

/* Cuts special-token occurrences out of the raw fragments, longest tokens first. */
static fragment *partition(const sp_vocab *v, const char *text, int len, bool parse_special, int *n_frag) {
    int cap = 16, n = 1;
    fragment *f = malloc((size_t)cap * sizeof *f);
    if (!f) return NULL;
    f[0] = (fragment){0, len, -1};
    for (int si = 0; si < v->n_special; si++) {
        const sp_token id = v->special[si];
        if (!special_allowed(v, id, parse_special)) continue;
        const char *tt = v->text[id];
        const int tl = v->text_len[id];
        for (int fi = 0; fi < n; fi++) {
            if (f[fi].token >= 0 || f[fi].len < tl) continue;
            const char *base = text + f[fi].start;
            const char *hit = memmem(base, (size_t)f[fi].len, tt, (size_t)tl);
            if (!hit) continue;
            /* split [start, len) into before | token | after; "after" is examined next */
            if (n + 2 > cap) {
                cap *= 2;
                fragment *g = realloc(f, (size_t)cap * sizeof *g);
                if (!g) { free(f); return NULL; }
                f = g;
            }
            const int before = (int)(hit - base), after = f[fi].len - before - tl;
            fragment tok = {f[fi].start + before, tl, id};
            fragment rest = {f[fi].start + before + tl, after, -1};
            int insert_at = fi + 1;
            memmove(&f[insert_at + 2], &f[insert_at], (size_t)(n - insert_at) * sizeof *f);
            n += 2;
            f[fi].len = before;
            f[insert_at] = tok;
            f[insert_at + 1] = rest;
            fi = insert_at; /* loop's ++ moves to `rest` */
        }
    }
    *n_frag = n;
    return f;
}

sp_status sp_tokenize(const sp_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                      sp_token **out, int *n_out) {
    const sp_vocab *v = model->vocab;
    *out = NULL;
    *n_out = 0;
    if (!text && len > 0) return sp_fail(SP_ERR_ARGUMENT, "tokenize: NULL text");
    if (len > (size_t)1 << 30) return sp_fail(SP_ERR_ARGUMENT, "tokenize: text of %zu bytes is too long", len);
    size_t bad = sp_utf8_validate(text, len);
    if (bad != len) return sp_fail(SP_ERR_ARGUMENT, "tokenize: invalid UTF-8 at byte %zu of the text", bad);
    token_list l = {0};
    if (add_special && v->add_bos && v->bos >= 0) push(&l, v->bos);
    int n_frag = 0;
    fragment *frags = len ? partition(v, text, (int)len, parse_special, &n_frag) : NULL;
    if (len && !frags) return sp_fail(SP_ERR_MEMORY, "tokenize: out of memory");
    bool ok = true, prev_special = true;
    for (int i = 0; i < n_frag && ok; i++) {
        if (frags[i].token >= 0) {
            push(&l, frags[i].token);
            prev_special = true;
            continue;
        }
        if (frags[i].len == 0) continue;
        const char *s = text + frags[i].start;
        if (v->kind == VOCAB_SPM) {
            ok = spm_fragment(v, s, frags[i].len, v->add_space_prefix && prev_special, &l);
        } else if (v->pre == PRE_DEFAULT) {
            ok = pretokenize_default(v, s, frags[i].len, &l);
        } else if (v->pre == PRE_GPT2 || v->pre == PRE_SMOLLM) {
            ok = pretokenize_gpt2(v, s, frags[i].len, v->pre == PRE_SMOLLM, &l);
        } else {
            ok = pretokenize(v, s, frags[i].len, &l);
        }
        prev_special = false;
    }
    free(frags);
    if (add_special && v->add_eos && v->eos >= 0) push(&l, v->eos);
    if (!ok || l.oom) {
        free(l.ids);
        return sp_fail(SP_ERR_MEMORY, "tokenize: out of memory");
    }
    *out = l.ids;
    *n_out = l.n;
    return SP_OK;
}

/* ------------------------------------------------------------------ detokenization */

sp_token_type sp_token_get_type(const sp_model *m, sp_token t) {
    return t >= 0 && t < m->vocab->n_tokens ? (sp_token_type)m->vocab->type[t] : SP_TOKEN_UNUSED;
}
sp_token sp_token_bos(const sp_model *m) { return m->vocab->bos; }
sp_token sp_token_eos(const sp_model *m) { return m->vocab->eos; }
bool sp_token_is_eog(const sp_model *m, sp_token t) {
    return t >= 0 && t < m->vocab->n_tokens && m->vocab->is_eog[t];
}

int sp_token_to_bytes(const sp_model *m, sp_token t, bool render_special, char *buf, int size) {
    const sp_vocab *v = m->vocab;
    if (t < 0 || t >= v->n_tokens) return 0;
    const int type = v->type[t];
    const char *s = v->text[t];
    const int len = v->text_len[t];
    char tmp[8];
    const char *src = s;
    int n = 0;
    if (type == SP_TOKEN_CONTROL || type == SP_TOKEN_UNKNOWN || type == SP_TOKEN_UNUSED) {
        if (!render_special) return 0;
        n = len; /* raw markup */
    } else if (type == SP_TOKEN_USER_DEFINED) {
        n = len;
    } else if (v->kind == VOCAB_SPM) {
        if (type == SP_TOKEN_BYTE && len == 6) {
            tmp[0] = (char)strtol(s + 3, NULL, 16);
            src = tmp;
            n = 1;
        } else {
            /* U+2581 -> ' ' */
            int need = 0;
            for (int i = 0; i < len;) {
                if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { i += 3; need++; }
                else { i++; need++; }
            }
            if (need > size) return -need;
            for (int i = 0; i < len;) {
                if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { buf[n++] = ' '; i += 3; }
                else buf[n++] = s[i++];
            }
            return n;
        }
    } else {
        /* byte-level BPE: every code point of the text stands for one byte */
        int need = 0;
        for (int i = 0; i < len;) {
            int cl;
            uint32_t cp = cp_at(s, len, i, &cl);
            need += cp_to_byte(cp) >= 0 ? 1 : cl;
            i += cl;
        }
        if (need > size) return -need;
        for (int i = 0; i < len;) {
            int cl;
            uint32_t cp = cp_at(s, len, i, &cl);
            int b = cp_to_byte(cp);
            if (b >= 0) buf[n++] = (char)b;
            else { memcpy(buf + n, s + i, (size_t)cl); n += cl; }
            i += cl;
        }
        return n;
    }
    if (n > size) return -n;
    memcpy(buf, src, (size_t)n);
    return n;
}

void sp_detokenizer_init(sp_detokenizer *d, const sp_model *m, bool render_special) {
    memset(d, 0, sizeof *d);
    d->model = m;
    d->render_special = render_special;
}

/* Emits the complete UTF-8 characters of pending+piece and keeps an unfinished tail pending;
 * bytes that can never form a character become U+FFFD, so the output is always valid UTF-8. */
int sp_detokenizer_push(sp_detokenizer *d, sp_token token, char *out, int size) {
    char small[256];
    int n = sp_token_to_bytes(d->model, token, d->render_special, small, sizeof small);
    char *raw = malloc((size_t)(n < 0 ? -n : n) + sizeof d->pending + 1);
    if (!raw) return 0;
    int len = d->n_pending;
    memcpy(raw, d->pending, (size_t)d->n_pending);
    if (n < 0) n = sp_token_to_bytes(d->model, token, d->render_special, raw + len, -n);
    else memcpy(raw + len, small, (size_t)n);
    len += n;
    /* worst case every byte becomes 3 */
    if (3 * len > size) {
        free(raw);
        return -3 * len;
    }
    int o = 0, i = 0, keep = 0;
    while (i < len) {
        uint32_t cp;
        const int cl = sp_utf8_decode((const unsigned char *)raw + i, (size_t)(len - i), &cp);
        if (cl > 0) {
            memcpy(out + o, raw + i, (size_t)cl);
            o += cl;
            i += cl;
            continue;
        }
        /* an unfinished character at the very end waits for the next token */
        const int want = sp_utf8_seq_len((unsigned char)raw[i]);
        bool prefix = (unsigned char)raw[i] >= 0xC0 && want > len - i;
        for (int k = i + 1; prefix && k < len; k++) prefix = ((unsigned char)raw[k] & 0xC0) == 0x80;
        if (prefix) {
            keep = len - i;
            break;
        }
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
        i++;
    }
    memcpy(d->pending, raw + len - keep, (size_t)keep);
    d->n_pending = keep;
    free(raw);
    if (d->strip_leading_space && !d->started && o > 0 && out[0] == ' ') memmove(out, out + 1, (size_t)--o);
    if (o > 0) d->started = true;
    return o;
}

int sp_detokenizer_flush(sp_detokenizer *d, char *out, int size) {
    if (d->n_pending == 0) return 0;
    if (size < 3) return -3;
    d->n_pending = 0;
    memcpy(out, "\xef\xbf\xbd", 3); /* U+FFFD for the unfinished character */
    return 3;
}

int sp_detokenizer_append(sp_detokenizer *d, sp_token token, char **text, size_t *len, size_t *cap) {
    char small[64];
    int k = token < 0 ? sp_detokenizer_flush(d, small, sizeof small) : sp_detokenizer_push(d, token, small, sizeof small);
    const char *piece = small;
    char *big = NULL;
    if (k < 0) { /* a very long token */
        if (!(big = malloc((size_t)-k))) return sp_fail(SP_ERR_MEMORY, "detokenizer: out of memory");
        k = sp_detokenizer_push(d, token, big, -k);
        piece = big;
    }
    if (*len + (size_t)k + 1 > *cap || !*text) {
        const size_t want = 2 * (*len + (size_t)k + 1);
        char *grown = realloc(*text, want);
        if (!grown) { free(big); return sp_fail(SP_ERR_MEMORY, "detokenizer: out of memory"); }
        *text = grown;
        *cap = want;
    }
    memcpy(*text + *len, piece, (size_t)k);
    *len += (size_t)k;
    (*text)[*len] = 0;
    free(big);
    return k;
}
