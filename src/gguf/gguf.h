/*
 * GGUF reader.
 *
 * File layout (all integers little-endian), versions 2 and 3:
 *
 *   u32 magic "GGUF" (bytes 47 47 55 46)   u32 version (2 or 3)
 *   u64 n_tensors                          u64 n_kv
 *   n_kv ×   { str key; u32 value_type; value }
 *   n_tensors × { str name; u32 n_dims; u64 ne[n_dims]; u32 type; u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; tensor i starts at data_off + offset_i
 *
 *   str   = u64 length, bytes (no NUL)
 *   value = scalar of value_type, or str, or
 *           array: u32 elem_type; u64 n; n × value of elem_type (arrays nest)
 *
 * Version 1 used u32 for every count and length; it is rejected with a
 * message that says so (current llama.cpp rejects it too).
 *
 * The parser reads through a byte source (a memory buffer or a read-at
 * callback), so it can be fuzzed and can read a file without mapping it. It
 * trusts no byte: every count is bounded by the bytes left, keys and tensor
 * names must be unique, dims must be 1..4 and non-negative with a product that
 * fits in 63 bits, type ids must be known, rows must be whole blocks, the
 * alignment must be a power of two, every tensor's data must be aligned, lie
 * inside the file and overlap no other tensor. Every failure is HY_ERR_FORMAT
 * with a message naming the source, the item (key or tensor) and the values,
 * except read failures of the source itself (HY_ERR_IO).
 *
 * Not done here: checks that depend on the architecture (which tensors must be
 * present, their shapes); see src/model.
 */
#ifndef HY_GGUF_GGUF_H
#define HY_GGUF_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"
#include "core/mem.h"
#include "core/strmap.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
/* Arrays nest at most this deep; real files use 1. Bounds the parser's recursion. */
#define GGUF_MAX_ARRAY_DEPTH 8

enum gguf_vtype {
    GGUF_UINT8 = 0,
    GGUF_INT8 = 1,
    GGUF_UINT16 = 2,
    GGUF_INT16 = 3,
    GGUF_UINT32 = 4,
    GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_UINT64 = 10,
    GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
    GGUF_VTYPE_COUNT
};

struct gguf_str {
    uint64_t len;     /* bytes, without the NUL */
    const char *data; /* NUL-terminated; may contain NULs inside; arena-owned */
};

struct gguf_array {
    enum gguf_vtype elem_type;
    uint64_t n;
    /* Elements packed as native C values: uint8_t[], int16_t[], float[],
     * bool[] (one byte each), ..., struct gguf_str[] for STRING and
     * struct gguf_array[] for nested arrays. Arena-owned. */
    const void *data;
};

struct gguf_value {
    enum gguf_vtype type;
    union {
        uint64_t u64; /* UINT8/16/32/64 */
        int64_t i64;  /* INT8/16/32/64 */
        double f64;   /* FLOAT32/64 */
        bool b;       /* BOOL */
        struct gguf_str str;
        struct gguf_array arr;
    } v;
};

struct gguf_kv {
    const char *key; /* arena-owned */
    struct gguf_value val;
};

struct gguf_tensor {
    const char *name;          /* arena-owned */
    uint32_t n_dims;           /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dim, ne[0] contiguous; unused dims are 1 */
    uint32_t type;             /* enum hy_type */
    uint64_t offset;           /* from the start of the data section */
    uint64_t file_off;         /* absolute: data_off + offset */
    uint64_t n_elements;
    uint64_t n_bytes;
};

/* Where the bytes come from. read_at fills dst[0..n) from offset off and
 * returns 0, or -1 on failure (then err_set has been called or errno is set). */
struct gguf_source {
    int (*read_at)(void *user, uint64_t off, void *dst, size_t n);
    void *user;
    uint64_t size; /* total bytes available */
    const char *name; /* for messages, e.g. the path; borrowed */
};

struct gguf_ctx {
    const char *name;    /* arena-owned copy of the source name */
    uint32_t version;    /* 2 or 3 */
    uint64_t n_kv;
    struct gguf_kv *kv;  /* owned, n_kv entries, file order */
    uint64_t n_tensors;
    struct gguf_tensor *tensors; /* owned, n_tensors entries, file order */
    uint32_t alignment;  /* general.alignment or 32 */
    uint64_t data_off;   /* absolute offset of the data section */
    uint64_t file_size;  /* bytes in the source */
    uint64_t header_bytes; /* bytes of header + kv + tensor directory, before padding */

    struct arena arena;   /* owns every string and array */
    struct strmap kv_map; /* key → kv index */
    struct strmap tensor_map; /* name → tensor index */
};

/* A source over memory; buf must outlive the parse (not the ctx). */
struct gguf_source gguf_source_buffer(const void *buf, uint64_t size, const char *name);

/* Parses a whole header. On success *out is a new context (free with
 * gguf_free). Errors: HY_ERR_FORMAT (malformed, unsupported version),
 * HY_ERR_IO (the source failed). The message names src->name.
 * Same as gguf_parse_flags(src, 0, out). */
HY_MUST_CHECK enum hy_status gguf_parse(const struct gguf_source *src, struct gguf_ctx **out);

/* Opens path read-only and parses it; the file is closed before returning
 * (the ctx holds no descriptor). Errors as gguf_parse, plus HY_ERR_IO when the
 * file cannot be opened or read. Same as gguf_open_flags(path, 0, out). */
HY_MUST_CHECK enum hy_status gguf_open(const char *path, struct gguf_ctx **out);

/* Relaxations of the rules above, for tools and tests that must read legacy
 * files. Loading a model never sets any: a file that needs one is refused. */
enum gguf_parse_flags {
    /* Accept a block-quantized tensor whose row length ne[0] is not a
     * multiple of its block size, as long as its total element count is:
     * early (2023) quantizers wrote such tensors as one flat array, blocks
     * running across row boundaries (e.g. the ffn_down [172, 64] tensors of
     * testdata's tinyllamas-stories-260k-q8_0.gguf). n_bytes is then
     * n_elements / block_size * block_bytes; a row does not start on a
     * block, so such a tensor can only be read whole. */
    GGUF_PARSE_ALLOW_RAGGED_ROWS = 1,
};

/* gguf_parse and gguf_open with flags (a bitwise OR of enum gguf_parse_flags). */
HY_MUST_CHECK enum hy_status gguf_parse_flags(const struct gguf_source *src, unsigned flags,
                                              struct gguf_ctx **out);
HY_MUST_CHECK enum hy_status gguf_open_flags(const char *path, unsigned flags,
                                             struct gguf_ctx **out);

void gguf_free(struct gguf_ctx *ctx);

/* Lookup. _find_ returns NULL / -1 when absent. */
const struct gguf_kv *gguf_find_kv(const struct gguf_ctx *ctx, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_ctx *ctx, const char *name);
int64_t gguf_find_tensor_idx(const struct gguf_ctx *ctx, const char *name);

/* Typed getters. _get_ fails when the key is missing; _get_*_or returns def
 * for a missing key. Both fail with HY_ERR_FORMAT naming the key when the
 * value has the wrong type or does not fit (an integer getter accepts any
 * integer type whose value fits; a float getter accepts FLOAT32/FLOAT64 and
 * integers). */
HY_MUST_CHECK enum hy_status gguf_get_int(const struct gguf_ctx *ctx, const char *key, int64_t *out);
HY_MUST_CHECK enum hy_status gguf_get_int_or(const struct gguf_ctx *ctx, const char *key,
                                             int64_t def, int64_t *out);
HY_MUST_CHECK enum hy_status gguf_get_float_or(const struct gguf_ctx *ctx, const char *key,
                                               double def, double *out);
HY_MUST_CHECK enum hy_status gguf_get_bool_or(const struct gguf_ctx *ctx, const char *key,
                                              bool def, bool *out);
HY_MUST_CHECK enum hy_status gguf_get_str(const struct gguf_ctx *ctx, const char *key,
                                          const char **out);
/* *out = NULL when absent. */
HY_MUST_CHECK enum hy_status gguf_get_str_or_null(const struct gguf_ctx *ctx, const char *key,
                                                  const char **out);
/* Array of elem_type (GGUF_VTYPE_COUNT: any); *out = NULL when absent. */
HY_MUST_CHECK enum hy_status gguf_get_arr_or_null(const struct gguf_ctx *ctx, const char *key,
                                                  enum gguf_vtype elem_type,
                                                  const struct gguf_array **out);

/* Element i of an integer array as int64 (any integer elem type). */
int64_t gguf_arr_int(const struct gguf_array *arr, uint64_t i);
/* Element i of a float array (FLOAT32/FLOAT64). */
double gguf_arr_float(const struct gguf_array *arr, uint64_t i);

const char *gguf_vtype_name(enum gguf_vtype t);
/* True for the 8/16/32/64-bit signed and unsigned integer types. */
bool gguf_vtype_is_int(enum gguf_vtype t);

#endif
