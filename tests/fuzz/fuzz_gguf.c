/*
 * libFuzzer target for the GGUF parser: gguf_parse over the input bytes, then
 * a walk over everything a caller may touch (every key/value, recursively
 * into arrays, the typed getters, every tensor), checking the invariants the
 * parser promises in gguf.h. A broken invariant aborts, so the fuzzer reports
 * it like a crash; ASan and UBSan catch the rest.
 *
 * Build: -DHY_FUZZ=ON with clang (tests/CMakeLists.txt). Run: fuzz_gguf CORPUS_DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_gguf: invariant broken: %s\n", what);
        abort();
    }
}

/* Reads every byte of a value, so that ASan sees any bad pointer or length. */
static uint64_t walk_array(const struct gguf_array *a, int depth)
{
    require(depth < GGUF_MAX_ARRAY_DEPTH, "array depth bounded");
    require((unsigned)a->elem_type < GGUF_VTYPE_COUNT, "array element type known");
    uint64_t h = a->n;
    for (uint64_t i = 0; i < a->n; i++) {
        switch (a->elem_type) {
        case GGUF_STRING: {
            const struct gguf_str *s = &((const struct gguf_str *)a->data)[i];
            require(s->data[s->len] == '\0', "string NUL-terminated");
            for (uint64_t k = 0; k < s->len; k++) h += (unsigned char)s->data[k];
            break;
        }
        case GGUF_ARRAY:
            h += walk_array(&((const struct gguf_array *)a->data)[i], depth + 1);
            break;
        case GGUF_FLOAT32:
        case GGUF_FLOAT64:
            h += (uint64_t)(gguf_arr_float(a, i) != 0.0);
            break;
        case GGUF_BOOL: {
            unsigned char raw;
            memcpy(&raw, (const unsigned char *)a->data + i, 1);
            require(raw <= 1, "bool element is 0 or 1");
            h += (uint64_t)gguf_arr_int(a, i);
            break;
        }
        default:
            h += (uint64_t)gguf_arr_int(a, i);
            break;
        }
    }
    return h;
}

static uint64_t walk_kv(const struct gguf_ctx *g, const struct gguf_kv *kv)
{
    uint64_t h = strlen(kv->key);
    require(h > 0, "key not empty");
    require(gguf_find_kv(g, kv->key) == kv, "key lookup finds the key/value");
    const struct gguf_value *v = &kv->val;
    require((unsigned)v->type < GGUF_VTYPE_COUNT, "value type known");
    if (v->type == GGUF_STRING) {
        require(v->v.str.data[v->v.str.len] == '\0', "string NUL-terminated");
        for (uint64_t k = 0; k < v->v.str.len; k++) h += (unsigned char)v->v.str.data[k];
    } else if (v->type == GGUF_ARRAY) {
        h += walk_array(&v->v.arr, 0);
    }

    /* the getters must answer every key without crashing */
    int64_t i64;
    double f64;
    bool b;
    const char *s;
    const struct gguf_array *arr;
    h += (uint64_t)gguf_get_int(g, kv->key, &i64);
    h += (uint64_t)gguf_get_float_or(g, kv->key, 0.0, &f64);
    h += (uint64_t)gguf_get_bool_or(g, kv->key, false, &b);
    h += (uint64_t)gguf_get_str_or_null(g, kv->key, &s);
    h += (uint64_t)gguf_get_arr_or_null(g, kv->key, GGUF_VTYPE_COUNT, &arr);
    h += (uint64_t)gguf_get_arr_or_null(g, kv->key, GGUF_INT32, &arr);
    return h;
}

static void walk_tensors(const struct gguf_ctx *g)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        require(t->name[0] != '\0', "tensor name not empty");
        require(gguf_find_tensor(g, t->name) == t, "tensor lookup finds the tensor");
        require(gguf_find_tensor_idx(g, t->name) == (int64_t)i, "tensor index lookup");
        require(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, "1..4 dims");
        const struct quant_traits *tr = quant_traits(t->type);
        require(tr != NULL, "tensor type known");
        uint64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            require(t->ne[d] >= 0, "dims non-negative");
            require((uint32_t)d < t->n_dims || t->ne[d] == 1, "unused dims are 1");
            n *= (uint64_t)t->ne[d];
        }
        require(n == t->n_elements, "element count is the product of the dims");
        require(t->ne[0] % tr->block_size == 0, "rows are whole blocks");
        require(t->n_bytes == quant_bytes(t->type, t->n_elements), "byte size from the type table");
        require(t->offset % g->alignment == 0, "offset aligned");
        require(t->file_off == g->data_off + t->offset, "file offset");
        require(t->file_off <= g->file_size && t->n_bytes <= g->file_size - t->file_off,
                "data inside the file");
        for (uint64_t j = 0; j < i; j++) {
            const struct gguf_tensor *u = &g->tensors[j];
            if (t->n_bytes && u->n_bytes)
                require(t->offset + t->n_bytes <= u->offset || u->offset + u->n_bytes <= t->offset,
                        "tensors do not overlap");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_source src = gguf_source_buffer(data, size, "fuzz.gguf");
    struct gguf_ctx *g = NULL;
    enum hy_status st = gguf_parse(&src, &g);
    if (st != HY_OK) {
        require(g == NULL, "no context on failure");
        require(st == HY_ERR_FORMAT, "a bad buffer is HY_ERR_FORMAT");
        require(strncmp(err_msg(), "fuzz.gguf: ", 11) == 0, "the message names the source");
        return 0;
    }
    require(g->version == 2 || g->version == 3, "version 2 or 3");
    require(base_is_pow2(g->alignment), "alignment a power of two");
    require(g->data_off % g->alignment == 0 && g->data_off >= g->header_bytes, "data offset");
    require(g->header_bytes <= size && g->file_size == size, "sizes");
    uint64_t h = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) h += walk_kv(g, &g->kv[i]);
    walk_tensors(g);
    gguf_free(g);
    /* keep h alive without printing on every input */
    if (h == 0x5eed5eed5eed5eedull) fprintf(stderr, "fuzz_gguf: lucky hash\n");
    return 0;
}
