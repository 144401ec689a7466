#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

static HY_NORETURN void mem_die(size_t n)
{
    fprintf(stderr, "hypura: out of memory allocating %zu bytes of bookkeeping\n", n);
    abort();
}

void *mem_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) mem_die(n);
    return p;
}

void *mem_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mem_die(count * size);
    return p;
}

void *mem_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) mem_die(n);
    return q;
}

char *mem_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mem_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void *mem_aligned_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : align) != 0) return NULL;
    return p;
}

void *mem_aligned_xzalloc(size_t align, size_t n)
{
    void *p = mem_aligned_alloc(align, n ? n : 1);
    if (!p) mem_die(n);
    return memset(p, 0, n ? n : 1);
}

void mem_aligned_free(void *p)
{
    free(p);
}

struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
};

void arena_init(struct arena *a, size_t chunk_bytes)
{
    a->head = NULL;
    a->chunk_bytes = chunk_bytes ? chunk_bytes : 64 * 1024;
    a->used_bytes = 0;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n) mem_die(n);
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > a->chunk_bytes ? need : a->chunk_bytes;
        c = mem_xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used_bytes += need;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *d = arena_alloc(a, len + 1);
    if (len) memcpy(d, s, len);
    d[len] = '\0';
    return d;
}
