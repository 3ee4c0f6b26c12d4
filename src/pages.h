/*
 * Memory for weights that the process holds itself (a model read with no_mmap, repacked
 * matrices): anonymous pages, asked for in huge pages where the OS gives them — decode streams
 * every weight once a token, and 4 KiB pages' TLB misses cost (1B F16 decode, AMD Zen 3,
 * 2 threads: the file read into them 9–27 % faster than mapped, three alternating rounds).
 */
#ifndef SP_PAGES_H
#define SP_PAGES_H

#include <stddef.h>

/* size bytes, zero, writable; NULL if the OS refuses. */
void *sp_pages_alloc(size_t size);
/* Read-only from now on, like a mapping of the file: a stray write faults. */
void sp_pages_seal(void *p, size_t size);
void sp_pages_free(void *p, size_t size);
/* The whole pages within [p, p + size) given back to the OS (the bytes are read no more): a
 * file mapping's are read from the file again if touched, anonymous pages read as zeros. */
void sp_pages_release(const void *p, size_t size);

#endif
