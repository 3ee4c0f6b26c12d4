/* The GGUF writer (gguf_writer.c), declared in the developer interface
 * (include/specprefill_dev.h); the one call that takes the reader's types is here. */
#ifndef SP_GGUF_WRITER_H
#define SP_GGUF_WRITER_H

#include "gguf.h"
#include "specprefill_dev.h"

/* Copies a key-value pair from a file being read (any type). */
void sp_gguf_writer_copy_kv(sp_gguf_writer *w, const sp_gguf_kv *kv);

#endif
