#include "core/heap.h"

#include <string.h>

#include "core/base.h"

static void *heap_at(const struct heap *h, size_t i)
{
    return (unsigned char *)h->items + i * h->elem_bytes;
}

void heap_init(struct heap *h, void *items, size_t cap, size_t elem_bytes, heap_before_fn before)
{
    HY_ASSERT(elem_bytes > 0 && elem_bytes <= HEAP_MAX_ELEM_BYTES);
    *h = (struct heap){items, 0, cap, elem_bytes, before};
}

void heap_push(struct heap *h, const void *elem)
{
    HY_ASSERT(h->n < h->cap);
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!h->before(elem, heap_at(h, p))) break;
        memcpy(heap_at(h, i), heap_at(h, p), h->elem_bytes);
        i = p;
    }
    memcpy(heap_at(h, i), elem, h->elem_bytes);
}

void heap_pop(struct heap *h, void *out)
{
    HY_ASSERT(h->n > 0);
    unsigned char last[HEAP_MAX_ELEM_BYTES];
    memcpy(out, heap_at(h, 0), h->elem_bytes);
    memcpy(last, heap_at(h, --h->n), h->elem_bytes);
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->before(heap_at(h, c + 1), heap_at(h, c))) c++;
        if (!h->before(heap_at(h, c), last)) break;
        memcpy(heap_at(h, i), heap_at(h, c), h->elem_bytes);
        i = c;
    }
    if (h->n) memcpy(heap_at(h, i), last, h->elem_bytes);
}
