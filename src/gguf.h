/*
 * GGUF reader (versions 2 and 3). The whole file is validated up front — every count, string
 * length, array size, tensor shape, type, offset and alignment is checked against the file
 * size — so later code can read any key or tensor without further bounds checks.
 */
#ifndef SP_GGUF_H
#define SP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "specprefill.h"

enum sp_gguf_value_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

#define GGUF_MAX_DIMS 4

typedef struct {
    const char *ptr; /* points into the file; not NUL-terminated */
    uint64_t len;
} sp_gguf_string;

typedef struct {
    sp_gguf_string key;
    uint32_t type;          /* sp_gguf_value_type */
    const uint8_t *value;   /* the raw value (for arrays: the first element) */
    uint32_t array_type;    /* element type, for arrays */
    uint64_t array_len;     /* element count, for arrays */
} sp_gguf_kv;

typedef struct {
    sp_gguf_string name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dimension, fastest first; unused dims are 1 */
    uint32_t type;             /* ggml type id */
    uint64_t offset;           /* from the start of the data section */
    const void *data;
    uint64_t n_bytes;
} sp_gguf_tensor;

typedef struct {
    const uint8_t *base;  /* the file's bytes */
    size_t size;
    bool mapped;          /* base is an mmap we own (of the file, or of anonymous memory with its copy) */
    uint32_t version;
    uint64_t n_kv;
    sp_gguf_kv *kv;
    uint64_t n_tensors;
    sp_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
} sp_gguf_file;

/* Maps and validates a file; copy: reads it into anonymous memory instead (sp_model_params). */
sp_status sp_gguf_open(const char *path, bool copy, sp_gguf_file **out);
/* Validates a buffer the caller keeps alive (used by the fuzzer and tests). */
sp_status sp_gguf_parse(const void *buf, size_t size, sp_gguf_file **out);
void sp_gguf_close(sp_gguf_file *f);

const sp_gguf_kv *sp_gguf_find_key(const sp_gguf_file *f, const char *key);
const sp_gguf_tensor *sp_gguf_find_tensor(const sp_gguf_file *f, const char *name);

/* Typed getters: SP_OK, or an error if the key is missing (SP_ERR_FORMAT with a message) or has
 * an incompatible type. The *_opt variants leave *out untouched and return false if missing. */
sp_status sp_gguf_get_u32(const sp_gguf_file *f, const char *key, uint32_t *out);
bool sp_gguf_get_u32_opt(const sp_gguf_file *f, const char *key, uint32_t *out);
bool sp_gguf_get_f32_opt(const sp_gguf_file *f, const char *key, float *out);
bool sp_gguf_get_bool_opt(const sp_gguf_file *f, const char *key, bool *out);
bool sp_gguf_get_string_opt(const sp_gguf_file *f, const char *key, sp_gguf_string *out);
/* Array getter: element type must match `type`. */
bool sp_gguf_get_array_opt(const sp_gguf_file *f, const char *key, uint32_t type, const sp_gguf_kv **out);

/* Walks a validated string array: returns the i-th string by stepping from `*cursor`.
 * Start with *cursor = kv->value; each call returns the next element. */
sp_gguf_string sp_gguf_next_string(const uint8_t **cursor);

bool sp_gguf_string_eq(sp_gguf_string s, const char *cstr);
const char *sp_gguf_type_name(uint32_t type);

#endif
