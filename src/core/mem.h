/*
 * Allocation. Small bookkeeping allocations (mem_x*) abort with a message on
 * failure: there is no sensible recovery and checking each one would bury the
 * code. Tier-sized buffers (KV cache, pools, pinned and device memory) do not
 * use these: they return HY_ERR_OOM naming the tier and the size.
 *
 * The arena is a bump allocator for many small objects with one lifetime
 * (strings of a parsed GGUF header): no per-object free, arena_free frees all.
 */
#ifndef HY_CORE_MEM_H
#define HY_CORE_MEM_H

#include <stddef.h>

void *mem_xmalloc(size_t n);
void *mem_xcalloc(size_t count, size_t size);
void *mem_xrealloc(void *p, size_t n);
char *mem_xstrdup(const char *s);

/* Aligned allocation (align a power of two, >= sizeof(void *)); NULL on failure.
 * Free with mem_aligned_free. */
void *mem_aligned_alloc(size_t align, size_t n);
void mem_aligned_free(void *p);
/* n zeroed bytes aligned as mem_aligned_alloc's; aborts on failure like
 * mem_xcalloc. Free with mem_aligned_free. */
void *mem_aligned_xzalloc(size_t align, size_t n);

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* owned; newest chunk first */
    size_t chunk_bytes;       /* default chunk size */
    size_t used_bytes;        /* total handed out, for accounting */
};

void arena_init(struct arena *a, size_t chunk_bytes);
void arena_free(struct arena *a);
/* n bytes aligned to 16; aborts on allocation failure like mem_xmalloc. */
void *arena_alloc(struct arena *a, size_t n);
/* Copy of s[0..len) with a terminating NUL. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

#endif
