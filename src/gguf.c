#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "pages.h"
#include "quant.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32

static const size_t value_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1, [GGUF_TYPE_INT8] = 1, [GGUF_TYPE_UINT16] = 2, [GGUF_TYPE_INT16] = 2,
    [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4, [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,
    [GGUF_TYPE_STRING] = 0, [GGUF_TYPE_ARRAY] = 0, [GGUF_TYPE_UINT64] = 8, [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};

static const char *const value_type_name[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *sp_gguf_type_name(uint32_t type) {
    return type < GGUF_TYPE_COUNT ? value_type_name[type] : "?";
}

/* A bounds-checked cursor over the file. */
typedef struct {
    const uint8_t *base;
    size_t size;
    size_t pos;
} reader;

static bool read_bytes(reader *r, void *dst, size_t n) {
    if (n > r->size - r->pos) return false;
    memcpy(dst, r->base + r->pos, n);
    r->pos += n;
    return true;
}

static bool read_u32(reader *r, uint32_t *v) { return read_bytes(r, v, 4); }
static bool read_u64(reader *r, uint64_t *v) { return read_bytes(r, v, 8); }

static bool read_string(reader *r, sp_gguf_string *s) {
    uint64_t len;
    if (!read_u64(r, &len)) return false;
    if (len > r->size - r->pos) return false;
    s->ptr = (const char *)r->base + r->pos;
    s->len = len;
    r->pos += len;
    return true;
}

static void print_string(char *buf, size_t size, sp_gguf_string s) {
    size_t n = s.len < size - 1 ? (size_t)s.len : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    buf[n] = 0;
}

bool sp_gguf_string_eq(sp_gguf_string s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

sp_gguf_string sp_gguf_next_string(const uint8_t **cursor) {
    sp_gguf_string s;
    uint64_t len;
    memcpy(&len, *cursor, 8);
    s.ptr = (const char *)*cursor + 8;
    s.len = len;
    *cursor += 8 + len;
    return s;
}

/* Validates one value of `type` at the cursor (arrays: every element) and advances past it. */
static sp_status skip_value(reader *r, uint32_t type, sp_gguf_kv *kv, const char *key) {
    if (type >= GGUF_TYPE_COUNT)
        return sp_fail(SP_ERR_FORMAT, "gguf: key '%s' has unknown value type %u", key, type);
    if (type == GGUF_TYPE_STRING) {
        sp_gguf_string s;
        if (!read_string(r, &s))
            return sp_fail(SP_ERR_FORMAT, "gguf: string value of key '%s' runs past the end of the file", key);
        return SP_OK;
    }
    if (type == GGUF_TYPE_ARRAY) {
        uint32_t elem_type;
        uint64_t n;
        if (!read_u32(r, &elem_type) || !read_u64(r, &n))
            return sp_fail(SP_ERR_FORMAT, "gguf: array header of key '%s' is truncated", key);
        if (elem_type >= GGUF_TYPE_COUNT)
            return sp_fail(SP_ERR_FORMAT, "gguf: array of key '%s' has unknown element type %u", key, elem_type);
        if (elem_type == GGUF_TYPE_ARRAY)
            return sp_fail(SP_ERR_UNSUPPORTED, "gguf: key '%s' is a nested array", key);
        kv->array_type = elem_type;
        kv->array_len = n;
        kv->value = r->base + r->pos;
        if (elem_type == GGUF_TYPE_STRING) {
            /* each string needs at least its 8-byte length */
            if (n > (r->size - r->pos) / 8)
                return sp_fail(SP_ERR_FORMAT, "gguf: array of key '%s' claims %llu strings, more than the file holds",
                               key, (unsigned long long)n);
            for (uint64_t i = 0; i < n; i++) {
                sp_gguf_string s;
                if (!read_string(r, &s))
                    return sp_fail(SP_ERR_FORMAT, "gguf: string %llu of array '%s' runs past the end of the file",
                                   (unsigned long long)i, key);
            }
            return SP_OK;
        }
        size_t es = value_size[elem_type];
        if (n > (r->size - r->pos) / es)
            return sp_fail(SP_ERR_FORMAT, "gguf: array of key '%s' (%llu × %s) runs past the end of the file", key,
                           (unsigned long long)n, value_type_name[elem_type]);
        r->pos += n * es;
        return SP_OK;
    }
    if (value_size[type] > r->size - r->pos)
        return sp_fail(SP_ERR_FORMAT, "gguf: value of key '%s' runs past the end of the file", key);
    r->pos += value_size[type];
    return SP_OK;
}

static sp_status parse(sp_gguf_file *f) {
    reader r = {f->base, f->size, 0};
    uint32_t magic;
    if (!read_u32(&r, &magic) || magic != GGUF_MAGIC)
        return sp_fail(SP_ERR_FORMAT, "not a GGUF file (bad magic)");
    if (!read_u32(&r, &f->version)) return sp_fail(SP_ERR_FORMAT, "gguf: truncated header");
    if (f->version == 1) return sp_fail(SP_ERR_UNSUPPORTED, "gguf: version 1 files are not supported (need 2 or 3)");
    if (f->version != 2 && f->version != 3)
        return sp_fail(SP_ERR_FORMAT, "gguf: unknown version %u (need 2 or 3; a big-endian file?)", f->version);
    if (!read_u64(&r, &f->n_tensors) || !read_u64(&r, &f->n_kv))
        return sp_fail(SP_ERR_FORMAT, "gguf: truncated header");
    /* A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
     * least 8 + 4 + 8 + 4 + 8. Bounding the counts by the file size keeps allocations sane. */
    if (f->n_kv > f->size / 13)
        return sp_fail(SP_ERR_FORMAT, "gguf: header claims %llu key-value pairs, more than the file can hold",
                       (unsigned long long)f->n_kv);
    if (f->n_tensors > f->size / 32)
        return sp_fail(SP_ERR_FORMAT, "gguf: header claims %llu tensors, more than the file can hold",
                       (unsigned long long)f->n_tensors);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return sp_fail(SP_ERR_MEMORY, "gguf: out of memory");

    char key[128];
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        sp_gguf_kv *kv = &f->kv[i];
        if (!read_string(&r, &kv->key))
            return sp_fail(SP_ERR_FORMAT, "gguf: key %llu runs past the end of the file", (unsigned long long)i);
        print_string(key, sizeof key, kv->key);
        if (!read_u32(&r, &kv->type))
            return sp_fail(SP_ERR_FORMAT, "gguf: type of key '%s' is truncated", key);
        kv->value = r.base + r.pos;
        sp_status st = skip_value(&r, kv->type, kv, key);
        if (st != SP_OK) return st;
        for (uint64_t j = 0; j < i; j++)
            if (f->kv[j].key.len == kv->key.len && memcmp(f->kv[j].key.ptr, kv->key.ptr, kv->key.len) == 0)
                return sp_fail(SP_ERR_FORMAT, "gguf: duplicate key '%s'", key);
        if (sp_gguf_string_eq(kv->key, "general.alignment")) {
            uint32_t a;
            if (kv->type != GGUF_TYPE_UINT32) return sp_fail(SP_ERR_FORMAT, "gguf: general.alignment must be u32");
            memcpy(&a, kv->value, 4);
            if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20))
                return sp_fail(SP_ERR_FORMAT, "gguf: general.alignment %u is not a power of two", a);
            f->alignment = a;
        }
    }

    for (uint64_t i = 0; i < f->n_tensors; i++) {
        sp_gguf_tensor *t = &f->tensors[i];
        if (!read_string(&r, &t->name))
            return sp_fail(SP_ERR_FORMAT, "gguf: name of tensor %llu runs past the end of the file", (unsigned long long)i);
        print_string(key, sizeof key, t->name);
        if (!read_u32(&r, &t->n_dims)) return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' info is truncated", key);
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
            return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' has %u dimensions (1..4 allowed)", key, t->n_dims);
        uint64_t n_elements = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if (d < t->n_dims && !read_u64(&r, &ne)) return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' shape is truncated", key);
            if (ne == 0 || ne > (1ull << 40))
                return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' dimension %u has size %llu", key, d, (unsigned long long)ne);
            if (n_elements > (1ull << 50) / ne) return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' is impossibly large", key);
            n_elements *= ne;
            t->ne[d] = (int64_t)ne;
        }
        if (!read_u32(&r, &t->type) || !read_u64(&r, &t->offset))
            return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' info is truncated", key);
        const sp_type_traits *tt = sp_type_traits_get(t->type);
        if (!tt)
            return sp_fail(SP_ERR_UNSUPPORTED, "gguf: tensor '%s' has tensor type %s (id %u), which this engine does not support",
                           key, sp_type_name(t->type), t->type);
        if (t->ne[0] % tt->block_size != 0)
            return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' row of %lld elements is not a multiple of the %s block size %d",
                           key, (long long)t->ne[0], tt->name, tt->block_size);
        t->n_bytes = n_elements / (uint64_t)tt->block_size * tt->type_size;
        if (t->offset % f->alignment != 0)
            return sp_fail(SP_ERR_FORMAT, "gguf: tensor '%s' offset %llu is not aligned to %llu", key,
                           (unsigned long long)t->offset, (unsigned long long)f->alignment);
        for (uint64_t j = 0; j < i; j++)
            if (f->tensors[j].name.len == t->name.len && memcmp(f->tensors[j].name.ptr, t->name.ptr, t->name.len) == 0)
                return sp_fail(SP_ERR_FORMAT, "gguf: duplicate tensor '%s'", key);
    }

    uint64_t data_offset = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->n_tensors > 0 && data_offset > f->size)
        return sp_fail(SP_ERR_FORMAT, "gguf: file ends before its tensor data");
    f->data_offset = data_offset;
    uint64_t data_size = data_offset <= f->size ? f->size - data_offset : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        sp_gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->n_bytes > data_size - t->offset) {
            print_string(key, sizeof key, t->name);
            return sp_fail(SP_ERR_FORMAT, "gguf: data of tensor '%s' (%llu bytes at offset %llu) runs past the end of the file (truncated?)",
                           key, (unsigned long long)t->n_bytes, (unsigned long long)t->offset);
        }
        t->data = f->base + data_offset + t->offset;
    }
    return SP_OK;
}

static sp_status parse_into(sp_gguf_file *f, sp_gguf_file **out) {
    sp_status st = parse(f);
    if (st != SP_OK) {
        sp_gguf_close(f);
        return st;
    }
    *out = f;
    return SP_OK;
}

sp_status sp_gguf_parse(const void *buf, size_t size, sp_gguf_file **out) {
    sp_gguf_file *f = calloc(1, sizeof *f);
    if (!f) return sp_fail(SP_ERR_MEMORY, "gguf: out of memory");
    f->base = buf;
    f->size = size;
    return parse_into(f, out);
}

/* The file's bytes in memory of the process's own (pages.h). The price: a copy not shared with
 * other processes that load the same file, not given back to the page cache under pressure, and
 * a read of the whole file at load. */
static void *read_whole(int fd, const char *path, size_t size, sp_status *st) {
    void *mem = sp_pages_alloc(size);
    if (!mem) {
        *st = sp_fail(SP_ERR_MEMORY, "cannot allocate %zu bytes to read '%s' into: %s", size, path, strerror(errno));
        return NULL;
    }
    for (size_t got = 0; got < size;) {
        const ssize_t n = pread(fd, (char *)mem + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *st = n < 0 ? sp_fail(SP_ERR_IO, "cannot read '%s': %s", path, strerror(errno))
                        : sp_fail(SP_ERR_IO, "'%s' ended after %zu of its %zu bytes while being read", path, got, size);
            sp_pages_free(mem, size);
            return NULL;
        }
        got += (size_t)n;
    }
    sp_pages_seal(mem, size);
    return mem;
}

sp_status sp_gguf_open(const char *path, bool copy, sp_gguf_file **out) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sp_fail(SP_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sp_fail(SP_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return sp_fail(SP_ERR_FORMAT, "'%s' is too small to be a GGUF file (%lld bytes)", path, (long long)st.st_size);
    }
    sp_status status = SP_OK;
    void *map = copy ? read_whole(fd, path, (size_t)st.st_size, &status) : mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (copy && !map) return status;
    if (map == MAP_FAILED) return sp_fail(SP_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    sp_gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(map, (size_t)st.st_size);
        return sp_fail(SP_ERR_MEMORY, "gguf: out of memory");
    }
    f->base = map;
    f->size = (size_t)st.st_size;
    f->mapped = true;
    return parse_into(f, out);
}

void sp_gguf_close(sp_gguf_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->kv);
    free(f->tensors);
    free(f);
}

const sp_gguf_kv *sp_gguf_find_key(const sp_gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (sp_gguf_string_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (sp_gguf_string_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* Integer keys are accepted in any integer type as long as the value fits. */
static bool integer_value(const sp_gguf_kv *kv, int64_t *out) {
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *out = *p; return true;
    case GGUF_TYPE_INT8: *out = (int8_t)*p; return true;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); if (v > INT64_MAX) return false; *out = (int64_t)v; return true; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return true; }
    default: return false;
    }
}

bool sp_gguf_get_u32_opt(const sp_gguf_file *f, const char *key, uint32_t *out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    int64_t v;
    if (!kv || !integer_value(kv, &v) || v < 0 || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

sp_status sp_gguf_get_u32(const sp_gguf_file *f, const char *key, uint32_t *out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    if (!kv) return sp_fail(SP_ERR_FORMAT, "gguf: required key '%s' is missing", key);
    if (!sp_gguf_get_u32_opt(f, key, out))
        return sp_fail(SP_ERR_FORMAT, "gguf: key '%s' is not a non-negative 32-bit integer (type %s)", key,
                       sp_gguf_type_name(kv->type));
    return SP_OK;
}

bool sp_gguf_get_f32_opt(const sp_gguf_file *f, const char *key, float *out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    if (!kv) return false;
    if (kv->type == GGUF_TYPE_FLOAT32) { memcpy(out, kv->value, 4); return true; }
    if (kv->type == GGUF_TYPE_FLOAT64) { double d; memcpy(&d, kv->value, 8); *out = (float)d; return true; }
    int64_t v;
    if (integer_value(kv, &v)) { *out = (float)v; return true; }
    return false;
}

bool sp_gguf_get_bool_opt(const sp_gguf_file *f, const char *key, bool *out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    if (!kv) return false;
    if (kv->type == GGUF_TYPE_BOOL) { *out = kv->value[0] != 0; return true; }
    int64_t v;
    if (integer_value(kv, &v)) { *out = v != 0; return true; }
    return false;
}

bool sp_gguf_get_string_opt(const sp_gguf_file *f, const char *key, sp_gguf_string *out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return false;
    const uint8_t *cursor = kv->value;
    *out = sp_gguf_next_string(&cursor);
    return true;
}

bool sp_gguf_get_array_opt(const sp_gguf_file *f, const char *key, uint32_t type, const sp_gguf_kv **out) {
    const sp_gguf_kv *kv = sp_gguf_find_key(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->array_type != type) return false;
    *out = kv;
    return true;
}
