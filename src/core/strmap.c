#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

uint64_t strmap_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 offset basis, 0xcbf29ce484222325 */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void strmap_init(struct strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    m->keys = mem_xcalloc(cap, sizeof(*m->keys));
    m->vals = mem_xcalloc(cap, sizeof(*m->vals));
    m->cap = cap;
    m->count = 0;
}

void strmap_free(struct strmap *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = 0;
}

int64_t strmap_find(const struct strmap *m, const char *key)
{
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = strmap_hash(key) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i]) return -1;
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
}

static void strmap_grow(struct strmap *m)
{
    struct strmap bigger;
    strmap_init(&bigger, m->cap);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) strmap_put(&bigger, m->keys[i], m->vals[i]);
    strmap_free(m);
    *m = bigger;
}

int64_t strmap_put(struct strmap *m, const char *key, int64_t val)
{
    if ((m->count + 1) * 2 > m->cap) strmap_grow(m);
    size_t mask = m->cap - 1;
    for (size_t i = strmap_hash(key) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->count++;
            return -1;
        }
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
}
