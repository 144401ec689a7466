/*
 * Binary heap over a caller-owned array of fixed-size elements, ordered by a
 * "before" predicate (the element that comes out first is the one no other
 * element is before). Used by the tokenizers' merge queues. The array must
 * hold as many elements as are ever pushed at once (asserted).
 */
#ifndef HY_CORE_HEAP_H
#define HY_CORE_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#define HEAP_MAX_ELEM_BYTES 64

typedef bool (*heap_before_fn)(const void *a, const void *b);

struct heap {
    void *items;      /* borrowed: cap elements of elem_bytes */
    size_t n, cap;
    size_t elem_bytes; /* <= HEAP_MAX_ELEM_BYTES */
    heap_before_fn before;
};

void heap_init(struct heap *h, void *items, size_t cap, size_t elem_bytes, heap_before_fn before);
void heap_push(struct heap *h, const void *elem);
/* Copies the first element into out and removes it; n > 0. */
void heap_pop(struct heap *h, void *out);

#endif
