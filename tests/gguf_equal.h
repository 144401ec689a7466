/*
 * Deep comparison of parsed GGUF contexts and values, for tests: two parses
 * of the same bytes through different sources, or a written file read back.
 * The first difference is printed to stderr with its key or tensor name.
 */
#ifndef HY_TESTS_GGUF_EQUAL_H
#define HY_TESTS_GGUF_EQUAL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"

static inline size_t gguf_equal_elem_bytes(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_UINT8:
    case GGUF_INT8:
        return 1;
    case GGUF_BOOL:
        return sizeof(bool);
    case GGUF_UINT16:
    case GGUF_INT16:
        return 2;
    case GGUF_UINT32:
    case GGUF_INT32:
    case GGUF_FLOAT32:
        return 4;
    case GGUF_UINT64:
    case GGUF_INT64:
    case GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static inline bool gguf_equal_str(const struct gguf_str *a, const struct gguf_str *b)
{
    return a->len == b->len && memcmp(a->data, b->data, (size_t)a->len) == 0 &&
           a->data[a->len] == '\0' && b->data[b->len] == '\0';
}

static inline bool gguf_equal_array(const struct gguf_array *a, const struct gguf_array *b)
{
    if (a->elem_type != b->elem_type || a->n != b->n) return false;
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->elem_type == GGUF_STRING) {
            if (!gguf_equal_str(&((const struct gguf_str *)a->data)[i],
                                &((const struct gguf_str *)b->data)[i]))
                return false;
        } else if (a->elem_type == GGUF_ARRAY) {
            if (!gguf_equal_array(&((const struct gguf_array *)a->data)[i],
                                  &((const struct gguf_array *)b->data)[i]))
                return false;
        }
    }
    size_t esz = gguf_equal_elem_bytes(a->elem_type);
    return esz == 0 || a->n == 0 || memcmp(a->data, b->data, (size_t)a->n * esz) == 0;
}

/* Bitwise for floats, so that NaN equals the same NaN and -0 differs from 0. */
static inline bool gguf_equal_value(const struct gguf_value *a, const struct gguf_value *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_UINT8:
    case GGUF_UINT16:
    case GGUF_UINT32:
    case GGUF_UINT64:
        return a->v.u64 == b->v.u64;
    case GGUF_INT8:
    case GGUF_INT16:
    case GGUF_INT32:
    case GGUF_INT64:
        return a->v.i64 == b->v.i64;
    case GGUF_FLOAT32:
    case GGUF_FLOAT64:
        return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
    case GGUF_BOOL:
        return a->v.b == b->v.b;
    case GGUF_STRING:
        return gguf_equal_str(&a->v.str, &b->v.str);
    case GGUF_ARRAY:
        return gguf_equal_array(&a->v.arr, &b->v.arr);
    default:
        return false;
    }
}

/* Everything but the source name. */
static inline bool gguf_equal_ctx(const struct gguf_ctx *a, const struct gguf_ctx *b)
{
    if (a->version != b->version || a->n_kv != b->n_kv || a->n_tensors != b->n_tensors ||
        a->alignment != b->alignment || a->data_off != b->data_off ||
        a->file_size != b->file_size || a->header_bytes != b->header_bytes) {
        fprintf(stderr,
                "  header differs: version %u/%u, n_kv %" PRIu64 "/%" PRIu64 ", n_tensors %" PRIu64
                "/%" PRIu64 ", alignment %u/%u, data_off %" PRIu64 "/%" PRIu64 "\n",
                a->version, b->version, a->n_kv, b->n_kv, a->n_tensors, b->n_tensors, a->alignment,
                b->alignment, a->data_off, b->data_off);
        return false;
    }
    for (uint64_t i = 0; i < a->n_kv; i++) {
        if (strcmp(a->kv[i].key, b->kv[i].key) != 0 ||
            !gguf_equal_value(&a->kv[i].val, &b->kv[i].val)) {
            fprintf(stderr, "  key/value %" PRIu64 " differs: '%s' / '%s'\n", i, a->kv[i].key,
                    b->kv[i].key);
            return false;
        }
    }
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const struct gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) != 0 || x->n_dims != y->n_dims ||
            memcmp(x->ne, y->ne, sizeof(x->ne)) != 0 || x->type != y->type ||
            x->offset != y->offset || x->file_off != y->file_off ||
            x->n_elements != y->n_elements || x->n_bytes != y->n_bytes) {
            fprintf(stderr, "  tensor %" PRIu64 " differs: '%s' / '%s'\n", i, x->name, y->name);
            return false;
        }
    }
    return true;
}

#endif
