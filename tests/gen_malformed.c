#include "gen_malformed.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

/* ---- byte builder ------------------------------------------------------- */

#define BB_MAX_MARKS 96

struct bb {
    unsigned char *p; /* owned */
    size_t len, cap;
    struct {
        char name[64];
        size_t off;
    } marks[BB_MAX_MARKS];
    int n_marks;
};

static void gen_die(const char *what, const char *detail)
{
    fprintf(stderr, "gen_malformed: %s: %s\n", what, detail);
    abort();
}

static void bb_bytes(struct bb *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) gen_die("out of memory", "byte builder");
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void bb_u8(struct bb *b, uint8_t v)
{
    bb_bytes(b, &v, 1);
}

/* Little-endian regardless of the host. */
static void bb_le(struct bb *b, uint64_t v, int n_bytes)
{
    unsigned char le[8];
    for (int i = 0; i < n_bytes; i++) le[i] = (unsigned char)(v >> (8 * i));
    bb_bytes(b, le, (size_t)n_bytes);
}

static void bb_u32(struct bb *b, uint32_t v)
{
    bb_le(b, v, 4);
}

static void bb_u64(struct bb *b, uint64_t v)
{
    bb_le(b, v, 8);
}

/* GGUF string: u64 length, bytes. */
static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}

static void bb_zeros_to(struct bb *b, size_t align)
{
    while (b->len % align) bb_u8(b, 0);
}

static void bb_mark(struct bb *b, const char *prefix, const char *suffix)
{
    if (b->n_marks == BB_MAX_MARKS) gen_die("too many marks", prefix);
    snprintf(b->marks[b->n_marks].name, sizeof(b->marks[0].name), "%s%s%s", prefix,
             suffix[0] ? "." : "", suffix);
    b->marks[b->n_marks].off = b->len;
    b->n_marks++;
}

static size_t bb_find_mark(const struct bb *b, const char *name)
{
    if (strcmp(name, "end") == 0) return b->len;
    for (int i = 0; i < b->n_marks; i++)
        if (strcmp(b->marks[i].name, name) == 0) return b->marks[i].off;
    gen_die("unknown mark", name);
    return 0;
}

/* ---- the base file ------------------------------------------------------ */

/* Starts a key/value: marks "<key>.key", "<key>.type", "<key>.value". */
static void kv_begin(struct bb *b, const char *key, enum gguf_vtype type)
{
    bb_mark(b, key, "key");
    bb_str(b, key);
    bb_mark(b, key, "type");
    bb_u32(b, type);
    bb_mark(b, key, "value");
}

/* Array header inside a value: marks "<key>.len" and "<key>.elems". */
static void array_begin(struct bb *b, const char *key, enum gguf_vtype elem_type, uint64_t n)
{
    bb_u32(b, elem_type);
    bb_mark(b, key, "len");
    bb_u64(b, n);
    bb_mark(b, key, "elems");
}

/* Levels 1..depth of test.nested; the innermost is marked "test.nested.inner". */
static void nested(struct bb *b, int level, int depth)
{
    if (level == depth) {
        static const uint8_t inner[3] = {7, 8, 9};
        bb_mark(b, "test.nested", "inner");
        bb_u32(b, GGUF_UINT8);
        bb_u64(b, 3);
        bb_bytes(b, inner, 3);
        return;
    }
    bb_u32(b, GGUF_ARRAY);
    bb_u64(b, 1);
    nested(b, level + 1, depth);
}

/* Tensor info: marks "<name>.name", ".n_dims", ".ne0", ".ne1", ..., ".type", ".offset". */
static void tensor_info(struct bb *b, const char *name, uint32_t n_dims, const int64_t *ne,
                        uint32_t type, uint64_t offset)
{
    bb_mark(b, name, "name");
    bb_str(b, name);
    bb_mark(b, name, "n_dims");
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) {
        char suffix[16];
        snprintf(suffix, sizeof(suffix), "ne%u", d);
        bb_mark(b, name, suffix);
        bb_u64(b, (uint64_t)ne[d]);
    }
    bb_mark(b, name, "type");
    bb_u32(b, type);
    bb_mark(b, name, "offset");
    bb_u64(b, offset);
}

#define BASE_N_KV      10
#define BASE_N_TENSORS 2
#define TOK_BYTES      68 /* Q8_0 [32, 2]: 2 blocks of 34 bytes */
#define OUT_BYTES      32 /* F32 [8] */

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static void build_base(struct bb *b, const struct gen_opts *o)
{
    uint32_t alignment = o->alignment ? o->alignment : GGUF_DEFAULT_ALIGNMENT;
    int depth = o->nest_depth ? o->nest_depth : 2;

    bb_mark(b, "magic", "");
    bb_bytes(b, "GGUF", 4);
    bb_mark(b, "version", "");
    bb_u32(b, o->version ? o->version : 3);
    bb_mark(b, "n_tensors", "");
    bb_u64(b, o->minimal ? 0 : BASE_N_TENSORS);
    bb_mark(b, "n_kv", "");
    bb_u64(b, o->minimal ? 0 : BASE_N_KV);
    bb_mark(b, "kvs", "");
    if (o->minimal) return;

    char description[151];
    memset(description, 'd', 150);
    description[150] = '\0';
    kv_begin(b, "general.description", GGUF_STRING);
    bb_str(b, description);

    kv_begin(b, "general.architecture", GGUF_STRING);
    bb_str(b, "llama");

    kv_begin(b, "general.alignment", GGUF_UINT32);
    bb_u32(b, alignment);

    kv_begin(b, "test.u32", GGUF_UINT32);
    bb_u32(b, 7);

    kv_begin(b, "test.flag", GGUF_BOOL);
    bb_u8(b, 1);

    kv_begin(b, "test.arr", GGUF_ARRAY);
    array_begin(b, "test.arr", GGUF_INT32, 3);
    bb_u32(b, 1);
    bb_u32(b, (uint32_t)-2);
    bb_u32(b, 3);

    kv_begin(b, "test.empty", GGUF_ARRAY);
    array_begin(b, "test.empty", GGUF_INT32, 0);

    kv_begin(b, "test.strs", GGUF_ARRAY);
    array_begin(b, "test.strs", GGUF_STRING, 3);
    bb_str(b, "a");
    bb_str(b, "");
    bb_str(b, "bcd");

    kv_begin(b, "test.bools", GGUF_ARRAY);
    array_begin(b, "test.bools", GGUF_BOOL, 3);
    bb_u8(b, 1);
    bb_u8(b, 0);
    bb_u8(b, 1);

    kv_begin(b, "test.nested", GGUF_ARRAY);
    nested(b, 1, depth);

    bb_mark(b, "tensors", "");
    const int64_t tok_ne[2] = {32, 2};
    const int64_t out_ne[1] = {8};
    uint64_t out_off = align_up(TOK_BYTES, alignment);
    tensor_info(b, "tok.weight", 2, tok_ne, HY_TYPE_Q8_0, 0);
    tensor_info(b, "out.weight", 1, out_ne, HY_TYPE_F32, out_off);

    bb_mark(b, "padding", "");
    bb_zeros_to(b, alignment);
    bb_mark(b, "data", "");
    size_t data = b->len;
    /* tok.weight: two Q8_0 blocks, each an f16 scale (1.0) and 32 int8 */
    for (int blk = 0; blk < 2; blk++) {
        bb_le(b, 0x3c00, 2);
        for (int i = 0; i < 32; i++) bb_u8(b, (uint8_t)(i * 7 + blk));
    }
    while (b->len < data + out_off) bb_u8(b, 0);
    /* out.weight: 8 floats 1..8 */
    for (int i = 0; i < 8; i++) {
        float f = (float)(i + 1);
        uint32_t u;
        memcpy(&u, &f, 4);
        bb_u32(b, u);
    }
}

/* ---- cases -------------------------------------------------------------- */

/* clang-format off */
#define TRUNC(m, d) {GEN_TRUNCATE, (m), (d), 0, NULL}
#define PUT8(m, d, v) {GEN_PUT_U8, (m), (d), (v), NULL}
#define PUT32(m, d, v) {GEN_PUT_U32, (m), (d), (v), NULL}
#define PUT64(m, d, v) {GEN_PUT_U64, (m), (d), (v), NULL}
#define PUTS(m, d, s) {GEN_PUT_BYTES, (m), (d), 0, (s)}

static const struct gen_case valid_cases[] = {
    {"valid-base", "the base file", {0}, {{0}}, {NULL}},
    {"valid-v2", "GGUF v2 (the v3 layout)", {.version = 2}, {{0}}, {NULL}},
    {"valid-align-64", "general.alignment 64", {.alignment = 64}, {{0}}, {NULL}},
    {"valid-align-1", "general.alignment 1", {.alignment = 1}, {{0}}, {NULL}},
    {"valid-nested-1", "array of UINT8 only", {.nest_depth = 1}, {{0}}, {NULL}},
    {"valid-nested-8", "arrays nested 8 deep", {.nest_depth = GGUF_MAX_ARRAY_DEPTH}, {{0}}, {NULL}},
    {"valid-minimal", "header only; data offset past the end", {.minimal = 1}, {{0}}, {NULL}},
};

/* test.u32's index in the base, for expected messages. */
#define KV_U32 "key/value 3"

static const struct gen_case malformed_cases[] = {
    /* magic and version */
    {"empty", "an empty file", {0}, {TRUNC("magic", 0)},
     {"0 bytes, too short for the magic"}},
    {"trunc-magic", "truncated in the magic", {0}, {TRUNC("magic", 2)},
     {"2 bytes, too short for the magic"}},
    {"bad-magic", "magic not GGUF", {0}, {PUTS("magic", 0, "GGML")},
     {"not a GGUF file", "47 47 4d 4c"}},
    {"bad-magic-case", "magic in lower case", {0}, {PUTS("magic", 0, "gguf")},
     {"not a GGUF file", "67 67 75 66"}},
    {"trunc-version", "truncated in the version", {0}, {TRUNC("version", 2)},
     {"truncated in the header at offset 4"}},
    {"version-1", "GGUF v1", {0}, {PUT32("version", 0, 1)},
     {"GGUF v1", "only GGUF v2 and v3"}},
    {"version-0", "unknown version 0", {0}, {PUT32("version", 0, 0)},
     {"unsupported GGUF version 0"}},
    {"version-4", "unknown version 4", {0}, {PUT32("version", 0, 4)},
     {"unsupported GGUF version 4"}},
    {"version-big-endian", "big-endian v3", {0}, {PUT32("version", 0, 0x03000000u)},
     {"big-endian"}},
    {"version-big-endian-2", "big-endian v2", {0}, {PUT32("version", 0, 0x02000000u)},
     {"big-endian"}},

    /* counts */
    {"trunc-counts", "truncated in the counts", {0}, {TRUNC("n_kv", 5)},
     {"truncated in the header counts"}},
    {"trunc-tensor-count", "truncated in the tensor count", {0}, {TRUNC("n_tensors", 1)},
     {"truncated in the header counts"}},
    {"huge-n-kv", "key/value count larger than the file", {0}, {PUT64("n_kv", 0, UINT64_MAX)},
     {"key/value count 18446744073709551615 cannot fit"}},
    {"huge-n-tensors", "tensor count larger than the file",
     {0}, {PUT64("n_tensors", 0, 1ull << 40)},
     {"tensor count 1099511627776 cannot fit"}},
    /* just over the bounds (the base is 800 bytes, 776 after the counts): a
     * key/value takes at least 14 bytes, a tensor info at least 33 */
    {"n-kv-just-too-big", "56 key/values of at least 14 bytes in 776", {0}, {PUT64("n_kv", 0, 56)},
     {"key/value count 56 cannot fit in the 776 bytes left"}},
    {"n-tensors-just-too-big", "20 tensor infos of at least 33 bytes in 776 - 10 * 14",
     {0}, {PUT64("n_tensors", 0, 20)},
     {"tensor count 20 cannot fit in the 776 bytes left"}},

    /* keys */
    {"trunc-key-len", "truncated in a key's length", {0}, {TRUNC("test.u32.key", 3)},
     {"truncated in " KV_U32 " (its key)"}},
    {"trunc-key", "truncated in a key's bytes", {0}, {TRUNC("test.u32.key", 8 + 4)},
     {KV_U32 " (its key)", "string length 8", "past the end of the file"}},
    {"huge-key-len", "key length larger than the file", {0}, {PUT64("test.u32.key", 0, 1ull << 63)},
     {KV_U32 " (its key)", "string length 9223372036854775808"}},
    {"empty-key", "empty key", {0}, {PUT64("test.u32.key", 0, 0)},
     {KV_U32 ": key is empty"}},
    {"nul-in-key", "NUL byte in a key", {0}, {PUT8("test.u32.key", 8 + 2, 0)},
     {KV_U32 ": key is not a string"}},
    {"duplicate-key", "the same key twice", {0}, {PUTS("test.arr.key", 8, "test.u32")},
     {"duplicate key 'test.u32'", "key/values 3 and 5"}},

    /* values */
    {"trunc-value-type", "truncated in a value type", {0}, {TRUNC("test.u32.type", 1)},
     {"truncated in " KV_U32 " ('test.u32')"}},
    {"trunc-value", "truncated in a scalar value", {0}, {TRUNC("test.u32.value", 2)},
     {"truncated in " KV_U32 " ('test.u32')"}},
    {"trunc-string-value", "truncated in a string value",
     {0}, {TRUNC("general.architecture.value", 8 + 2)},
     {"'general.architecture'", "string length 5", "past the end of the file"}},
    {"huge-string-len", "string length larger than the file",
     {0}, {PUT64("general.architecture.value", 0, UINT64_MAX)},
     {"'general.architecture'", "string length 18446744073709551615"}},
    {"bad-value-type", "value type 13", {0}, {PUT32("test.u32.type", 0, 13)},
     {"'test.u32'", "value type 13 is not a GGUF value type"}},
    {"bad-value-type-max", "value type 2^32-1", {0}, {PUT32("test.flag.type", 0, UINT32_MAX)},
     {"'test.flag'", "value type 4294967295 is not a GGUF value type"}},
    {"bool-2", "bool value 2", {0}, {PUT8("test.flag.value", 0, 2)},
     {"'test.flag'", "bool has value 2"}},
    {"bool-255", "bool value 255", {0}, {PUT8("test.flag.value", 0, 255)},
     {"'test.flag'", "bool has value 255"}},

    /* arrays */
    {"trunc-array-header", "truncated in an array length", {0}, {TRUNC("test.arr.len", 6)},
     {"truncated in key/value 5 ('test.arr')"}},
    {"trunc-array", "truncated in array elements", {0}, {TRUNC("test.arr.elems", 6)},
     {"'test.arr'", "array of 3 INT32 elements", "does not fit"}},
    {"trunc-string-array", "truncated in a string element",
     {0}, {TRUNC("test.strs.elems", 9 + 8 + 8 + 1)},
     {"'test.strs'", "string length 3", "past the end of the file"}},
    {"trunc-nested-array", "truncated in a nested array", {0}, {TRUNC("test.nested.inner", 13)},
     {"'test.nested'", "array of 3 UINT8 elements", "does not fit"}},
    {"huge-array-len", "array length larger than the file",
     {0}, {PUT64("test.arr.len", 0, 1ull << 62)},
     {"'test.arr'", "array of 4611686018427387904 INT32 elements", "does not fit"}},
    {"huge-string-array-len", "string array length larger than the file",
     {0}, {PUT64("test.strs.len", 0, 1ull << 61)},
     {"'test.strs'", "array of 2305843009213693952 STRING elements"}},
    {"huge-nested-array-len", "nested array length larger than the file",
     {0}, {PUT64("test.nested.inner", 4, UINT64_MAX)},
     {"'test.nested'", "array of 18446744073709551615 UINT8"}},
    {"bad-array-type", "array element type 13", {0}, {PUT32("test.arr.value", 0, 13)},
     {"'test.arr'", "array element type 13 is not a GGUF value type"}},
    {"bad-nested-array-type", "nested array element type 99",
     {0}, {PUT32("test.nested.inner", 0, 99)},
     {"'test.nested'", "array element type 99"}},
    {"bool-array-2", "bool array element 2", {0}, {PUT8("test.bools.elems", 1, 2)},
     {"'test.bools'", "bool element 1 has value 2"}},
    {"nested-too-deep", "arrays nested one level too deep",
     {.nest_depth = GGUF_MAX_ARRAY_DEPTH + 1}, {{0}},
     {"'test.nested'", "arrays nested more than 8 deep"}},
    {"nested-far-too-deep", "arrays nested 200 deep", {.nest_depth = 200}, {{0}},
     {"'test.nested'", "arrays nested more than 8 deep"}},

    /* general.alignment */
    {"align-not-pow2", "alignment 48", {0}, {PUT32("general.alignment.value", 0, 48)},
     {"'general.alignment' is 48", "power of two"}},
    {"align-zero", "alignment 0", {0}, {PUT32("general.alignment.value", 0, 0)},
     {"'general.alignment' is 0", "power of two"}},
    {"align-too-big", "alignment 2^31", {0}, {PUT32("general.alignment.value", 0, 1u << 31)},
     {"'general.alignment' is 2147483648", "at most 2^30"}},
    {"align-negative", "alignment INT32 -32", {0},
     {PUT32("general.alignment.type", 0, GGUF_INT32),
      PUT32("general.alignment.value", 0, (uint32_t)-32)},
     {"'general.alignment' is -32"}},
    {"align-wrong-type", "alignment as FLOAT32",
     {0}, {PUT32("general.alignment.type", 0, GGUF_FLOAT32)},
     {"'general.alignment' has type FLOAT32"}},

    /* tensor infos */
    {"trunc-tensor-name", "truncated in a tensor name", {0}, {TRUNC("out.weight.name", 8 + 4)},
     {"tensor info 1 (its name)", "string length 10", "past the end of the file"}},
    {"huge-tensor-name-len", "tensor name length larger than the file",
     {0}, {PUT64("out.weight.name", 0, UINT64_MAX)},
     {"tensor info 1 (its name)", "string length 18446744073709551615"}},
    {"empty-tensor-name", "empty tensor name", {0}, {PUT64("out.weight.name", 0, 0)},
     {"tensor 1: name is empty"}},
    {"nul-in-tensor-name", "NUL byte in a tensor name", {0}, {PUT8("out.weight.name", 8 + 3, 0)},
     {"tensor 1: name is not a string"}},
    {"duplicate-tensor", "the same tensor name twice",
     {0}, {PUTS("out.weight.name", 8, "tok.weight")},
     {"duplicate tensor name 'tok.weight'", "tensors 0 and 1"}},
    {"trunc-n-dims", "truncated in n_dims", {0}, {TRUNC("out.weight.n_dims", 2)},
     {"truncated in tensor info 1 ('out.weight')"}},
    {"trunc-dims", "truncated in the dims", {0}, {TRUNC("tok.weight.ne1", 4)},
     {"truncated in tensor info 0 ('tok.weight')"}},
    {"trunc-type", "truncated in the tensor type", {0}, {TRUNC("out.weight.type", 3)},
     {"truncated in tensor info 1 ('out.weight')"}},
    {"trunc-offset", "truncated in the tensor offset", {0}, {TRUNC("out.weight.offset", 7)},
     {"truncated in tensor info 1 ('out.weight')"}},
    {"n-dims-0", "0 dimensions", {0}, {PUT32("tok.weight.n_dims", 0, 0)},
     {"'tok.weight'", "0 dimensions (must be 1..4)"}},
    {"n-dims-5", "5 dimensions", {0}, {PUT32("tok.weight.n_dims", 0, 5)},
     {"'tok.weight'", "5 dimensions (must be 1..4)"}},
    {"n-dims-max", "2^32-1 dimensions", {0}, {PUT32("out.weight.n_dims", 0, UINT32_MAX)},
     {"'out.weight'", "4294967295 dimensions"}},
    {"negative-dim", "dimension -1", {0}, {PUT64("tok.weight.ne1", 0, UINT64_MAX)},
     {"'tok.weight'", "dimension 1 is negative (-1)"}},
    {"negative-dim0", "dimension -2^63", {0}, {PUT64("tok.weight.ne0", 0, 1ull << 63)},
     {"'tok.weight'", "dimension 0 is negative (-9223372036854775808)"}},
    {"dims-overflow", "2^62 x 2 elements: 2^63 does not fit in 63 bits",
     {0}, {PUT64("tok.weight.ne0", 0, 1ull << 62)},
     {"'tok.weight'", "element count overflows 63 bits at dimension 1"}},
    {"dims-overflow-64", "2^32 x 2^32 elements",
     {0}, {PUT64("tok.weight.ne0", 0, 1ull << 32), PUT64("tok.weight.ne1", 0, 1ull << 32)},
     {"'tok.weight'", "element count overflows 63 bits at dimension 1"}},
    {"byte-size-overflow", "2^62 F32 elements: 2^64 bytes",
     {0}, {PUT64("out.weight.ne0", 0, 1ull << 62)},
     {"'out.weight'", "byte size overflows 64 bits"}},
    {"tensor-type-77", "tensor type 77", {0}, {PUT32("tok.weight.type", 0, 77)},
     {"'tok.weight'", "unknown type id 77"}},
    {"tensor-type-31", "retired tensor type 31 (Q4_0_4_4)", {0}, {PUT32("out.weight.type", 0, 31)},
     {"'out.weight'", "unknown type id 31"}},
    {"tensor-type-4", "retired tensor type 4 (Q4_2)", {0}, {PUT32("out.weight.type", 0, 4)},
     {"'out.weight'", "unknown type id 4"}},
    {"tensor-type-40", "tensor type one past the table",
     {0}, {PUT32("out.weight.type", 0, HY_TYPE_COUNT)},
     {"'out.weight'", "unknown type id 40"}},
    {"row-not-whole-blocks", "Q8_0 row of 48", {0}, {PUT64("tok.weight.ne0", 0, 48)},
     {"'tok.weight'", "row length ne[0]=48 is not a multiple of the Q8_0 block size 32"}},
    {"row-one-element", "Q8_0 row of 1", {0}, {PUT64("tok.weight.ne0", 0, 1)},
     {"'tok.weight'", "row length ne[0]=1 is not a multiple of the Q8_0 block size 32"}},

    /* tensor data */
    {"misaligned-offset", "data offset 100 with alignment 32",
     {0}, {PUT64("out.weight.offset", 0, 100)},
     {"'out.weight'", "data offset 100 is not a multiple of the alignment 32"}},
    {"offset-past-end", "data offset past the end", {0}, {PUT64("out.weight.offset", 0, 1u << 20)},
     {"'out.weight'", "past the end of the file"}},
    {"offset-wraps", "data offset near 2^64",
     {0}, {PUT64("out.weight.offset", 0, UINT64_MAX & ~31ull)},
     {"'out.weight'", "past the end of the file"}},
    {"overlap", "tensors overlap", {0}, {PUT64("out.weight.offset", 0, 32)},
     {"'out.weight'", "overlaps tensor 'tok.weight'"}},
    {"overlap-same-offset", "two tensors at offset 0", {0}, {PUT64("out.weight.offset", 0, 0)},
     {"'out.weight'", "'tok.weight'", "overlaps"}},
    {"trunc-padding", "truncated before the data section", {0}, {TRUNC("data", 0)},
     {"'tok.weight'", "past the end of the file"}},
    {"trunc-data", "truncated in the last tensor's data", {0}, {TRUNC("end", -1)},
     {"'out.weight'", "past the end of the file"}},
};
/* clang-format on */

size_t gen_malformed_count(void)
{
    return sizeof(malformed_cases) / sizeof(malformed_cases[0]);
}

const struct gen_case *gen_malformed_case(size_t i)
{
    return i < gen_malformed_count() ? &malformed_cases[i] : NULL;
}

size_t gen_valid_count(void)
{
    return sizeof(valid_cases) / sizeof(valid_cases[0]);
}

const struct gen_case *gen_valid_case(size_t i)
{
    return i < gen_valid_count() ? &valid_cases[i] : NULL;
}

static size_t patch_off(const struct bb *b, const struct gen_patch *p, size_t width)
{
    int64_t off = (int64_t)bb_find_mark(b, p->mark) + p->delta;
    if (off < 0 || (uint64_t)off + width > b->len)
        gen_die("patch outside the file at mark", p->mark);
    return (size_t)off;
}

static void put_le(struct bb *b, const struct gen_patch *p, int n_bytes)
{
    size_t off = patch_off(b, p, (size_t)n_bytes);
    for (int k = 0; k < n_bytes; k++) b->p[off + (size_t)k] = (unsigned char)(p->value >> (8 * k));
}

void gen_build(const struct gen_case *c, struct gen_file *out)
{
    struct bb b;
    memset(&b, 0, sizeof(b));
    build_base(&b, &c->opts);
    for (int i = 0; i < 2; i++) {
        const struct gen_patch *p = &c->patch[i];
        switch (p->op) {
        case GEN_NONE:
            break;
        case GEN_TRUNCATE:
            b.len = patch_off(&b, p, 0);
            break;
        case GEN_PUT_U8:
            put_le(&b, p, 1);
            break;
        case GEN_PUT_U32:
            put_le(&b, p, 4);
            break;
        case GEN_PUT_U64:
            put_le(&b, p, 8);
            break;
        case GEN_PUT_BYTES:
            memcpy(b.p + patch_off(&b, p, strlen(p->bytes)), p->bytes, strlen(p->bytes));
            break;
        }
    }
    out->data = b.p ? b.p : malloc(1);
    out->len = b.len;
}

size_t gen_mark_offset(const struct gen_opts *opts, const char *mark)
{
    struct bb b;
    memset(&b, 0, sizeof(b));
    build_base(&b, opts);
    size_t off = bb_find_mark(&b, mark);
    free(b.p);
    return off;
}
