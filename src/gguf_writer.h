/* A GGUF (version 3) writer: metadata is serialized as it is added; tensor data is written at
 * the end, either from a caller's buffer or produced on demand by a fill callback, so a
 * multi-gigabyte model never has to sit in memory whole. */
#ifndef SP_GGUF_WRITER_H
#define SP_GGUF_WRITER_H

#include "gguf.h"

typedef struct gguf_writer gguf_writer;
/* Fills tensor `index`'s n_bytes of data into dst. */
typedef sp_status (*gguf_fill_fn)(void *ctx, int index, void *dst, uint64_t n_bytes);

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

void gguf_writer_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_bool(gguf_writer *w, const char *key, bool v);
void gguf_writer_str(gguf_writer *w, const char *key, const char *v);
void gguf_writer_str_array(gguf_writer *w, const char *key, const char *const *v, const int *lens, uint64_t n);
void gguf_writer_i32_array(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void gguf_writer_f32_array(gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Copies a key-value pair from a file being read (any type). */
void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);

/* data may be NULL when a fill callback is set. Returns the tensor's index. */
int gguf_writer_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, const void *data);
void gguf_writer_set_fill(gguf_writer *w, gguf_fill_fn fill, void *ctx);

sp_status gguf_writer_write(gguf_writer *w, const char *path);

#endif
