/*
 * String → index map (open addressing, FNV-1a, linear probing). Keys are
 * borrowed: they must outlive the map. Used for GGUF key and tensor-name
 * lookup and duplicate detection.
 */
#ifndef HY_CORE_STRMAP_H
#define HY_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap {
    const char **keys; /* owned array; entries borrowed */
    int64_t *vals;     /* owned */
    size_t cap;        /* power of two */
    size_t count;
};

void strmap_init(struct strmap *m, size_t expected);
void strmap_free(struct strmap *m);
/* Index stored for key, or -1. */
int64_t strmap_find(const struct strmap *m, const char *key);
/* Inserts key → val. Returns the existing value (and changes nothing) when the
 * key is already there, else -1. */
int64_t strmap_put(struct strmap *m, const char *key, int64_t val);

uint64_t strmap_hash(const char *s);

#endif
