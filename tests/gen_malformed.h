/*
 * Hand-built GGUF files for parser tests: a small valid base file, a few valid
 * variants, and one malformed variant per rule the parser enforces.
 *
 * The bytes are written by a tiny byte builder that follows the layout in
 * src/gguf/gguf.h directly, not by the GGUF writer, so that a bug shared by
 * the writer and the reader cannot hide. While building, the builder records
 * named marks (the offset of every field a case wants to touch, e.g.
 * "test.u32.type" or "out.weight.offset"); a case is then the base built with
 * some options, plus up to two patches at marks, or a truncation at a mark.
 *
 * The base file (GGUF v3, 10 key/values, 2 tensors, alignment 32):
 *   general.description   STRING (150 bytes: puts every later field past the
 *                         parser's up-front bound on the key/value and tensor
 *                         counts, so that a truncation there tests the field
 *                         it cuts)
 *   general.architecture  STRING "llama"
 *   general.alignment     UINT32 32
 *   test.u32              UINT32 7
 *   test.flag             BOOL   1
 *   test.arr              ARRAY of INT32 [1, -2, 3]
 *   test.empty            ARRAY of INT32 []
 *   test.strs             ARRAY of STRING ["a", "", "bcd"]
 *   test.bools            ARRAY of BOOL [1, 0, 1]
 *   test.nested           ARRAY of ARRAY ... of UINT8 [7, 8, 9]  (2 levels)
 *   tok.weight            Q8_0 [32, 2], 68 bytes at data offset 0
 *   out.weight            F32  [8],     32 bytes at data offset 96
 */
#ifndef HY_TESTS_GEN_MALFORMED_H
#define HY_TESTS_GEN_MALFORMED_H

#include <stddef.h>
#include <stdint.h>

/* Options of the base builder; the zero value means "as in the base". */
struct gen_opts {
    uint32_t alignment; /* general.alignment and the data layout (0: 32) */
    uint32_t version;   /* header version (0: 3) */
    int nest_depth;     /* array levels of test.nested (0: 2) */
    int minimal;        /* header only: no key/values, no tensors */
};

enum gen_op {
    GEN_NONE,     /* no patch */
    GEN_TRUNCATE, /* file length = mark + delta */
    GEN_PUT_U8,   /* little-endian value at mark + delta */
    GEN_PUT_U32,
    GEN_PUT_U64,
    GEN_PUT_BYTES, /* the bytes of `bytes` (no NUL) at mark + delta */
};

struct gen_patch {
    enum gen_op op;
    const char *mark; /* a mark recorded while building, "end" = file end */
    int64_t delta;
    uint64_t value;
    const char *bytes;
};

struct gen_case {
    const char *name; /* file stem, e.g. "trunc-key" */
    const char *rule; /* the rule the case breaks, for messages */
    struct gen_opts opts;
    struct gen_patch patch[2];
    const char *want[3]; /* substrings the error message must contain */
};

struct gen_file {
    unsigned char *data; /* owned; free() */
    size_t len;
};

/* Malformed cases: each must be refused with HY_ERR_FORMAT. */
size_t gen_malformed_count(void);
const struct gen_case *gen_malformed_case(size_t i);

/* Valid variants (the base first): each must parse. */
size_t gen_valid_count(void);
const struct gen_case *gen_valid_case(size_t i);

/* Builds the bytes of a case. Aborts on a case that names an unknown mark or
 * patches past the end (a bug in the case table, not in the parser). */
void gen_build(const struct gen_case *c, struct gen_file *out);

/* Offset of a mark in the file built with opts; aborts when unknown. */
size_t gen_mark_offset(const struct gen_opts *opts, const char *mark);

#endif
