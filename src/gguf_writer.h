/* A GGUF (version 3) writer: metadata is serialized as it is added; tensor data is written at
 * the end, either from a caller's buffer or produced on demand by a fill callback, so a
 * multi-gigabyte model never has to sit in memory whole. */
#ifndef SP_GGUF_WRITER_H
#define SP_GGUF_WRITER_H

#include "gguf.h"

typedef struct sp_gguf_writer sp_gguf_writer;
/* Fills tensor `index`'s n_bytes of data into dst. */
typedef sp_status (*sp_gguf_fill_fn)(void *ctx, int index, void *dst, uint64_t n_bytes);

sp_gguf_writer *sp_gguf_writer_new(void);
void sp_gguf_writer_free(sp_gguf_writer *w);

void sp_gguf_writer_u32(sp_gguf_writer *w, const char *key, uint32_t v);
void sp_gguf_writer_i32(sp_gguf_writer *w, const char *key, int32_t v);
void sp_gguf_writer_f32(sp_gguf_writer *w, const char *key, float v);
void sp_gguf_writer_bool(sp_gguf_writer *w, const char *key, bool v);
void sp_gguf_writer_str(sp_gguf_writer *w, const char *key, const char *v);
void sp_gguf_writer_str_array(sp_gguf_writer *w, const char *key, const char *const *v, const int *lens, uint64_t n);
void sp_gguf_writer_i32_array(sp_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void sp_gguf_writer_f32_array(sp_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Copies a key-value pair from a file being read (any type). */
void sp_gguf_writer_copy_kv(sp_gguf_writer *w, const sp_gguf_kv *kv);

/* data may be NULL when a fill callback is set. Returns the tensor's index. */
int sp_gguf_writer_tensor(sp_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, const void *data);
void sp_gguf_writer_set_fill(sp_gguf_writer *w, sp_gguf_fill_fn fill, void *ctx);

sp_status sp_gguf_writer_write(sp_gguf_writer *w, const char *path);

#endif
