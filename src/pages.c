#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#include "pages.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void *sp_pages_alloc(size_t size) {
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(mem, size, MADV_HUGEPAGE); /* a hint: without it, the memory still works */
#endif
    return mem;
}

void sp_pages_seal(void *p, size_t size) { (void)mprotect(p, size, PROT_READ); }

void sp_pages_free(void *p, size_t size) {
    if (p) munmap(p, size);
}

void sp_pages_release(const void *p, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = ((uintptr_t)p + page - 1) & ~(page - 1),
                    end = ((uintptr_t)p + size) & ~(page - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_DONTNEED);
}
