#include "gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant.h"

#define ALIGNMENT 32

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t n_bytes, offset;
} wtensor;

struct sp_gguf_writer {
    uint8_t *kv;       /* serialized key-value pairs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *tensors;
    int n_tensors, cap_tensors;
    sp_gguf_fill_fn fill;
    void *fill_ctx;
    bool oom;
};

sp_gguf_writer *sp_gguf_writer_new(void) { return calloc(1, sizeof(sp_gguf_writer)); }

void sp_gguf_writer_free(sp_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv);
    free(w);
}

static void put(sp_gguf_writer *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) { w->oom = true; return; }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}
static void put_u32(sp_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(sp_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(sp_gguf_writer *w, const char *s, uint64_t len) { put_u64(w, len); put(w, s, (size_t)len); }
static void key(sp_gguf_writer *w, const char *k, uint32_t type) { put_str(w, k, strlen(k)); put_u32(w, type); w->n_kv++; }

void sp_gguf_writer_u32(sp_gguf_writer *w, const char *k, uint32_t v) { key(w, k, GGUF_TYPE_UINT32); put_u32(w, v); }
void sp_gguf_writer_i32(sp_gguf_writer *w, const char *k, int32_t v) { key(w, k, GGUF_TYPE_INT32); put(w, &v, 4); }
void sp_gguf_writer_f32(sp_gguf_writer *w, const char *k, float v) { key(w, k, GGUF_TYPE_FLOAT32); put(w, &v, 4); }
void sp_gguf_writer_bool(sp_gguf_writer *w, const char *k, bool v) { uint8_t b = v; key(w, k, GGUF_TYPE_BOOL); put(w, &b, 1); }
void sp_gguf_writer_str(sp_gguf_writer *w, const char *k, const char *v) { key(w, k, GGUF_TYPE_STRING); put_str(w, v, strlen(v)); }

void sp_gguf_writer_str_array(sp_gguf_writer *w, const char *k, const char *const *v, const int *lens, uint64_t n) {
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(w, GGUF_TYPE_STRING);
    put_u64(w, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, v[i], lens ? (uint64_t)lens[i] : strlen(v[i]));
}

void sp_gguf_writer_i32_array(sp_gguf_writer *w, const char *k, const int32_t *v, uint64_t n) {
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(w, GGUF_TYPE_INT32);
    put_u64(w, n);
    put(w, v, (size_t)n * 4);
}

void sp_gguf_writer_f32_array(sp_gguf_writer *w, const char *k, const float *v, uint64_t n) {
    key(w, k, GGUF_TYPE_ARRAY);
    put_u32(w, GGUF_TYPE_FLOAT32);
    put_u64(w, n);
    put(w, v, (size_t)n * 4);
}

/* Size in bytes of a validated value (arrays included) starting at p. */
static size_t value_bytes(uint32_t type, const uint8_t *p) {
    static const size_t fixed[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == GGUF_TYPE_STRING) { uint64_t n; memcpy(&n, p, 8); return 8 + (size_t)n; }
    return fixed[type];
}

void sp_gguf_writer_copy_kv(sp_gguf_writer *w, const sp_gguf_kv *kv) {
    put_str(w, kv->key.ptr, kv->key.len);
    put_u32(w, kv->type);
    w->n_kv++;
    if (kv->type != GGUF_TYPE_ARRAY) {
        put(w, kv->value, value_bytes(kv->type, kv->value));
        return;
    }
    put_u32(w, kv->array_type);
    put_u64(w, kv->array_len);
    const uint8_t *p = kv->value;
    for (uint64_t i = 0; i < kv->array_len; i++) p += value_bytes(kv->array_type, p);
    put(w, kv->value, (size_t)(p - kv->value));
}

sp_status sp_gguf_writer_copy_keys(sp_gguf_writer *w, const char *path, const char *prefix) {
    sp_gguf_file *f;
    sp_status st = sp_gguf_open(path, false, &f);
    if (st != SP_OK) return st;
    const size_t n = strlen(prefix);
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key.len >= n && memcmp(f->kv[i].key.ptr, prefix, n) == 0) sp_gguf_writer_copy_kv(w, &f->kv[i]);
    /* the values are copied now: the writer keeps no pointer into the file */
    sp_gguf_close(f);
    return SP_OK;
}

int sp_gguf_writer_tensor(sp_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, const void *data) {
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) { w->oom = true; return -1; }
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) { w->oom = true; return -1; }
    t->type = type;
    t->n_dims = n_dims;
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        n *= (uint64_t)t->ne[d];
    }
    const sp_type_traits *tt = sp_type_traits_get(type);
    t->n_bytes = tt ? n / (uint64_t)tt->block_size * tt->type_size : 0;
    t->data = data;
    return w->n_tensors++;
}

void sp_gguf_writer_set_fill(sp_gguf_writer *w, sp_gguf_fill_fn fill, void *ctx) {
    w->fill = fill;
    w->fill_ctx = ctx;
}

static bool write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }

sp_status sp_gguf_writer_write(sp_gguf_writer *w, const char *path) {
    if (w->oom) return sp_fail(SP_ERR_MEMORY, "gguf writer: out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) return sp_fail(SP_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    uint32_t magic = 0x46554747u, version = 3;
    uint64_t n_tensors = (uint64_t)w->n_tensors;
    bool ok = write_all(f, &magic, 4) && write_all(f, &version, 4) && write_all(f, &n_tensors, 8) &&
              write_all(f, &w->n_kv, 8) && write_all(f, w->kv, w->kv_len);
    uint64_t offset = 0, header = 24 + w->kv_len;
    for (int i = 0; i < w->n_tensors && ok; i++) {
        wtensor *t = &w->tensors[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims;
        t->offset = offset;
        ok = write_all(f, &len, 8) && write_all(f, t->name, len) && write_all(f, &nd, 4);
        for (int d = 0; d < t->n_dims && ok; d++) ok = write_all(f, &t->ne[d], 8);
        ok = ok && write_all(f, &t->type, 4) && write_all(f, &offset, 8);
        header += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        offset += (t->n_bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    static const uint8_t zeros[ALIGNMENT];
    if (ok && header % ALIGNMENT) ok = write_all(f, zeros, ALIGNMENT - header % ALIGNMENT);
    sp_status st = SP_OK;
    void *buf = NULL;
    for (int i = 0; i < w->n_tensors && ok && st == SP_OK; i++) {
        wtensor *t = &w->tensors[i];
        const void *data = t->data;
        if (!data) {
            free(buf);
            buf = w->fill ? malloc(t->n_bytes ? (size_t)t->n_bytes : 1) : NULL;
            if (!buf) { st = sp_fail(SP_ERR_MEMORY, "gguf writer: no data for tensor '%s'", t->name); break; }
            st = w->fill(w->fill_ctx, i, buf, t->n_bytes);
            data = buf;
        }
        ok = write_all(f, data, (size_t)t->n_bytes);
        if (ok && t->n_bytes % ALIGNMENT) ok = write_all(f, zeros, ALIGNMENT - t->n_bytes % ALIGNMENT);
    }
    free(buf);
    if (fclose(f) != 0) ok = false;
    if (st != SP_OK) return st;
    if (!ok) return sp_fail(SP_ERR_IO, "error writing '%s': %s", path, strerror(errno));
    return SP_OK;
}
