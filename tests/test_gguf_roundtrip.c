/*
 * GGUF writer → reader round trip.
 *
 * A file with every value type (scalars at their extremes, strings with
 * embedded NUL and empty ones, arrays of every element type, empty arrays,
 * arrays of arrays with mixed element types, three levels deep), tensors of
 * several types (F32, F16, BF16, I8, Q8_0, Q4_K, one with zero elements) and
 * alignment 64 is written to the memory sink, in odd-sized chunks, and parsed
 * back: every value, every tensor info and every data byte must come back,
 * the padding must be zeros, and gguf_writer_total_bytes must be exact.
 * Also: a 17 MiB tensor across the writer's 8 MiB buffer, misuse of the data
 * stream, a failing sink, and the file sink (the ".partial" protocol, refusal
 * to overwrite, force, abort, gguf_open equal to parsing the same bytes).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/rng.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "gguf_equal.h"
#include "quant/quant.h"

#define ALIGN 64

struct tspec {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
};

static const struct tspec tensors[] = {
    {"t.f32", HY_TYPE_F32, 2, {16, 3}},
    {"t.f16", HY_TYPE_F16, 2, {64, 2}},
    {"t.q8_0", HY_TYPE_Q8_0, 2, {64, 3}},  /* 2 blocks of 34 bytes per row */
    {"t.q4_k", HY_TYPE_Q4_K, 2, {256, 2}}, /* 1 super-block of 144 bytes per row */
    {"t.empty", HY_TYPE_Q8_0, 2, {32, 0}}, /* zero elements, zero bytes */
    {"t.bf16.4d", HY_TYPE_BF16, 4, {2, 3, 4, 5}},
    {"t.i8", HY_TYPE_I8, 1, {5}}, /* odd size: padding follows */
    {"t.q4_k.3d", HY_TYPE_Q4_K, 3, {512, 1, 2}},
};
#define N_TENSORS (sizeof(tensors) / sizeof(tensors[0]))

static const uint64_t want_bytes[N_TENSORS] = {192, 256, 204, 288, 0, 240, 5, 576};

static void set_uint(struct gguf_writer *w, const char *key, enum gguf_vtype t, uint64_t x)
{
    struct gguf_value v = {.type = t, .v.u64 = x};
    gguf_writer_set_value(w, key, &v);
}

static void set_int(struct gguf_writer *w, const char *key, enum gguf_vtype t, int64_t x)
{
    struct gguf_value v = {.type = t, .v.i64 = x};
    gguf_writer_set_value(w, key, &v);
}

static void set_float(struct gguf_writer *w, const char *key, enum gguf_vtype t, double x)
{
    struct gguf_value v = {.type = t, .v.f64 = x};
    gguf_writer_set_value(w, key, &v);
}

static void set_array(struct gguf_writer *w, const char *key, enum gguf_vtype et, const void *data,
                      uint64_t n)
{
    struct gguf_value v = {.type = GGUF_ARRAY, .v.arr = {et, n, data}};
    gguf_writer_set_value(w, key, &v);
}

/* Sets one key of every value type, through both the typed setters and
 * gguf_writer_set_value. The arrays are locals that are overwritten after
 * being set: the writer must have copied them. */
static void set_all_values(struct gguf_writer *w)
{
    uint8_t arr_u8[] = {0, 1, 255};
    int8_t arr_i8[] = {-128, 0, 127};
    uint16_t arr_u16[] = {0, 65535};
    int16_t arr_i16[] = {-32768, 32767, -1};
    uint32_t arr_u32[] = {0, 4294967295u};
    int32_t arr_i32[] = {INT32_MIN, -1, 0, INT32_MAX};
    uint64_t arr_u64[] = {UINT64_MAX, 0, 1};
    int64_t arr_i64[] = {INT64_MIN, INT64_MAX};
    double arr_f64[] = {0.1, -1e300, 5e-324};
    bool arr_bool[] = {true, false, false, true};
    float arr_f32[] = {1.0f, -0.0f, INFINITY, 1e-45f};
    char str_buf[] = "h\xc3\xa9llo\n";
    const char *strs[] = {"x", "", "a longer string with spaces", "\xe2\x96\x81tok"};

    /* scalars: 16 keys */
    set_uint(w, "rt.u8", GGUF_UINT8, 255);
    set_int(w, "rt.i8", GGUF_INT8, -128);
    set_uint(w, "rt.u16", GGUF_UINT16, 65535);
    set_int(w, "rt.i16", GGUF_INT16, -32768);
    gguf_writer_set_u32(w, "rt.u32", 1);
    gguf_writer_set_i32(w, "rt.i32", INT32_MIN);
    gguf_writer_set_f32(w, "rt.f32", -1.5f);
    gguf_writer_set_bool(w, "rt.bool", true);
    gguf_writer_set_bool(w, "rt.bool_false", false);
    gguf_writer_set_str(w, "rt.str", str_buf);
    gguf_writer_set_str(w, "rt.str_empty", "");
    gguf_writer_set_u64(w, "rt.u64", UINT64_MAX);
    set_int(w, "rt.i64", GGUF_INT64, INT64_MIN);
    set_float(w, "rt.f64", GGUF_FLOAT64, 1.0 / 3.0);
    set_float(w, "rt.f32_neg_zero", GGUF_FLOAT32, -0.0);
    struct gguf_value nul = {.type = GGUF_STRING, .v.str = {3, "a\0b"}};
    gguf_writer_set_value(w, "rt.str_nul", &nul);
    gguf_writer_set_u32(w, "rt.u32", 4000000000u); /* replaces the value, keeps the position */

    /* arrays: 16 keys */
    set_array(w, "rt.arr.u8", GGUF_UINT8, arr_u8, 3);
    set_array(w, "rt.arr.i8", GGUF_INT8, arr_i8, 3);
    set_array(w, "rt.arr.u16", GGUF_UINT16, arr_u16, 2);
    set_array(w, "rt.arr.i16", GGUF_INT16, arr_i16, 3);
    set_array(w, "rt.arr.u32", GGUF_UINT32, arr_u32, 2);
    gguf_writer_set_arr_i32(w, "rt.arr.i32", arr_i32, 4);
    gguf_writer_set_arr_f32(w, "rt.arr.f32", arr_f32, 4);
    set_array(w, "rt.arr.u64", GGUF_UINT64, arr_u64, 3);
    set_array(w, "rt.arr.i64", GGUF_INT64, arr_i64, 2);
    set_array(w, "rt.arr.f64", GGUF_FLOAT64, arr_f64, 3);
    set_array(w, "rt.arr.bool", GGUF_BOOL, arr_bool, 4);
    gguf_writer_set_arr_str(w, "rt.arr.str", strs, 4);
    gguf_writer_set_arr_i32(w, "rt.arr.empty_i32", NULL, 0);
    gguf_writer_set_arr_str(w, "rt.arr.empty_str", NULL, 0);
    set_array(w, "rt.arr.empty_arr", GGUF_ARRAY, NULL, 0);
    /* [[u16 0, 65535], ["x", ""], [] of FLOAT32, [[i8 -128, 0, 127]]]: each
     * sub-array has its own element type */
    struct gguf_array innermost[1] = {{GGUF_INT8, 3, arr_i8}};
    struct gguf_str sub_strs[2] = {{1, "x"}, {0, ""}};
    struct gguf_array mixed[4] = {
        {GGUF_UINT16, 2, arr_u16},
        {GGUF_STRING, 2, sub_strs},
        {GGUF_FLOAT32, 0, NULL},
        {GGUF_ARRAY, 1, innermost},
    };
    set_array(w, "rt.arr.nested", GGUF_ARRAY, mixed, 4);

    memset(arr_u8, 0x55, sizeof(arr_u8));
    memset(arr_i8, 0x55, sizeof(arr_i8));
    memset(arr_u16, 0x55, sizeof(arr_u16));
    memset(arr_i16, 0x55, sizeof(arr_i16));
    memset(arr_u32, 0x55, sizeof(arr_u32));
    memset(arr_i32, 0x55, sizeof(arr_i32));
    memset(arr_u64, 0x55, sizeof(arr_u64));
    memset(arr_i64, 0x55, sizeof(arr_i64));
    memset(arr_f64, 0x55, sizeof(arr_f64));
    memset(arr_bool, 0, sizeof(arr_bool));
    memset(arr_f32, 0x55, sizeof(arr_f32));
    memset(str_buf, 'z', sizeof(str_buf) - 1);
    strs[0] = "changed";
    innermost[0].n = 0;
    mixed[0].n = 0;
}

static bool bits_eq_f64(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* key has type t and the value of want (whose type is set here). */
static void check_scalar(const struct gguf_ctx *g, const char *key, enum gguf_vtype t,
                         struct gguf_value *want)
{
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    want->type = t;
    if (!CHECK(kv != NULL) || !CHECK_EQ_STR(gguf_vtype_name(kv->val.type), gguf_vtype_name(t)) ||
        !CHECK(gguf_equal_value(&kv->val, want)))
        fprintf(stderr, "  key %s\n", key);
}

static void check_values(const struct gguf_ctx *g)
{
    int64_t i64 = 0;
    double f = 0;
    bool b = false;
    const char *s = NULL;
    const struct gguf_array *a = NULL;

    /* general.alignment first (set by init), then the keys in the order set */
    CHECK_EQ_U64(g->n_kv, 1 + 16 + 16);
    CHECK_EQ_STR(g->kv[0].key, "general.alignment");
    CHECK_EQ_INT(g->kv[0].val.type, GGUF_UINT32);
    CHECK_EQ_U64(g->kv[0].val.v.u64, ALIGN);
    CHECK_EQ_STR(g->kv[5].key, "rt.u32");

    check_scalar(g, "rt.u8", GGUF_UINT8, &(struct gguf_value){.v.u64 = 255});
    check_scalar(g, "rt.i8", GGUF_INT8, &(struct gguf_value){.v.i64 = -128});
    check_scalar(g, "rt.u16", GGUF_UINT16, &(struct gguf_value){.v.u64 = 65535});
    check_scalar(g, "rt.i16", GGUF_INT16, &(struct gguf_value){.v.i64 = -32768});
    check_scalar(g, "rt.u32", GGUF_UINT32, &(struct gguf_value){.v.u64 = 4000000000u});
    check_scalar(g, "rt.i32", GGUF_INT32, &(struct gguf_value){.v.i64 = INT32_MIN});
    check_scalar(g, "rt.u64", GGUF_UINT64, &(struct gguf_value){.v.u64 = UINT64_MAX});
    check_scalar(g, "rt.i64", GGUF_INT64, &(struct gguf_value){.v.i64 = INT64_MIN});
    check_scalar(g, "rt.f32", GGUF_FLOAT32, &(struct gguf_value){.v.f64 = -1.5});
    check_scalar(g, "rt.f64", GGUF_FLOAT64, &(struct gguf_value){.v.f64 = 1.0 / 3.0});
    check_scalar(g, "rt.f32_neg_zero", GGUF_FLOAT32, &(struct gguf_value){.v.f64 = -0.0});
    check_scalar(g, "rt.bool", GGUF_BOOL, &(struct gguf_value){.v.b = true});
    check_scalar(g, "rt.bool_false", GGUF_BOOL, &(struct gguf_value){.v.b = false});
    check_scalar(g, "rt.str_empty", GGUF_STRING, &(struct gguf_value){.v.str = {0, ""}});
    check_scalar(g, "rt.str_nul", GGUF_STRING, &(struct gguf_value){.v.str = {3, "a\0b"}});

    /* typed getters */
    if (CHECK_OK(gguf_get_int(g, "rt.u32", &i64))) CHECK_EQ_INT(i64, 4000000000);
    if (CHECK_OK(gguf_get_int(g, "rt.i8", &i64))) CHECK_EQ_INT(i64, -128);
    CHECK_STATUS(gguf_get_int(g, "rt.u64", &i64), HY_ERR_FORMAT); /* does not fit int64 */
    CHECK_CONTAINS(err_msg(), "'rt.u64'");
    CHECK_STATUS(gguf_get_int(g, "rt.str", &i64), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "'rt.str' has type STRING");
    CHECK_STATUS(gguf_get_int(g, "rt.absent", &i64), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "missing key 'rt.absent'");
    if (CHECK_OK(gguf_get_int_or(g, "rt.absent", -5, &i64))) CHECK_EQ_INT(i64, -5);
    if (CHECK_OK(gguf_get_float_or(g, "rt.f32", 0, &f))) CHECK_NEAR(f, -1.5, 0);
    if (CHECK_OK(gguf_get_float_or(g, "rt.i16", 0, &f))) CHECK_NEAR(f, -32768, 0);
    if (CHECK_OK(gguf_get_float_or(g, "rt.u64", 0, &f))) CHECK_NEAR(f, 18446744073709551615.0, 0);
    if (CHECK_OK(gguf_get_float_or(g, "rt.absent", 2.5, &f))) CHECK_NEAR(f, 2.5, 0);
    CHECK_STATUS(gguf_get_float_or(g, "rt.bool", 0, &f), HY_ERR_FORMAT);
    if (CHECK_OK(gguf_get_bool_or(g, "rt.bool_false", true, &b))) CHECK(!b);
    if (CHECK_OK(gguf_get_bool_or(g, "rt.absent", true, &b))) CHECK(b);
    CHECK_STATUS(gguf_get_bool_or(g, "rt.u8", false, &b), HY_ERR_FORMAT);
    if (CHECK_OK(gguf_get_str(g, "rt.str", &s))) CHECK_EQ_STR(s, "h\xc3\xa9llo\n");
    if (CHECK_OK(gguf_get_str(g, "rt.str_empty", &s))) CHECK_EQ_STR(s, "");
    if (CHECK_OK(gguf_get_str_or_null(g, "rt.absent", &s))) CHECK(s == NULL);
    CHECK_STATUS(gguf_get_str(g, "rt.absent", &s), HY_ERR_FORMAT);
    CHECK_STATUS(gguf_get_str(g, "rt.u8", &s), HY_ERR_FORMAT);

    /* arrays */
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.u8", GGUF_UINT8, &a)) && CHECK(a && a->n == 3))
        CHECK(gguf_arr_int(a, 0) == 0 && gguf_arr_int(a, 2) == 255);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.i8", GGUF_INT8, &a)) && CHECK(a && a->n == 3))
        CHECK(gguf_arr_int(a, 0) == -128 && gguf_arr_int(a, 2) == 127);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.u16", GGUF_UINT16, &a)) && CHECK(a && a->n == 2))
        CHECK(gguf_arr_int(a, 0) == 0 && gguf_arr_int(a, 1) == 65535);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.i16", GGUF_INT16, &a)) && CHECK(a && a->n == 3))
        CHECK(gguf_arr_int(a, 0) == -32768 && gguf_arr_int(a, 2) == -1);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.u32", GGUF_UINT32, &a)) && CHECK(a && a->n == 2))
        CHECK_EQ_INT(gguf_arr_int(a, 1), 4294967295);
    /* any integer element type is accepted for an integer request */
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.i32", GGUF_UINT32, &a)) && CHECK(a && a->n == 4))
        CHECK(gguf_arr_int(a, 0) == INT32_MIN && gguf_arr_int(a, 3) == INT32_MAX);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.f32", GGUF_FLOAT32, &a)) &&
        CHECK(a && a->n == 4)) {
        CHECK(gguf_arr_float(a, 0) == 1.0 && bits_eq_f64(gguf_arr_float(a, 1), -0.0));
        CHECK(isinf(gguf_arr_float(a, 2)) && gguf_arr_float(a, 3) == (double)1e-45f);
    }
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.u64", GGUF_UINT64, &a)) && CHECK(a && a->n == 3))
        CHECK(((const uint64_t *)a->data)[0] == UINT64_MAX && gguf_arr_int(a, 2) == 1);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.i64", GGUF_INT64, &a)) && CHECK(a && a->n == 2))
        CHECK(gguf_arr_int(a, 0) == INT64_MIN && gguf_arr_int(a, 1) == INT64_MAX);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.f64", GGUF_FLOAT64, &a)) && CHECK(a && a->n == 3))
        CHECK(gguf_arr_float(a, 0) == 0.1 && gguf_arr_float(a, 1) == -1e300 &&
              gguf_arr_float(a, 2) == 5e-324);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.bool", GGUF_BOOL, &a)) && CHECK(a && a->n == 4)) {
        const bool *bl = a->data;
        CHECK(bl[0] && !bl[1] && !bl[2] && bl[3]);
        CHECK_EQ_INT(gguf_arr_int(a, 3), 1);
    }
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.str", GGUF_STRING, &a)) && CHECK(a && a->n == 4)) {
        const struct gguf_str *st = a->data;
        CHECK_EQ_STR(st[0].data, "x");
        CHECK(st[1].len == 0 && st[1].data[0] == '\0');
        CHECK_EQ_STR(st[2].data, "a longer string with spaces");
        CHECK_EQ_STR(st[3].data, "\xe2\x96\x81tok");
    }
    CHECK_STATUS(gguf_get_arr_or_null(g, "rt.arr.str", GGUF_INT32, &a), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "'rt.arr.str' is an array of STRING");
    CHECK_STATUS(gguf_get_arr_or_null(g, "rt.u8", GGUF_VTYPE_COUNT, &a), HY_ERR_FORMAT);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.absent", GGUF_VTYPE_COUNT, &a))) CHECK(a == NULL);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.empty_i32", GGUF_INT32, &a)))
        CHECK(a && a->n == 0);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.empty_str", GGUF_STRING, &a)))
        CHECK(a && a->n == 0);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.empty_arr", GGUF_ARRAY, &a)))
        CHECK(a && a->n == 0);
    if (CHECK_OK(gguf_get_arr_or_null(g, "rt.arr.nested", GGUF_ARRAY, &a)) &&
        CHECK(a && a->n == 4)) {
        const struct gguf_array *sub = a->data;
        CHECK(sub[0].elem_type == GGUF_UINT16 && sub[0].n == 2 &&
              gguf_arr_int(&sub[0], 1) == 65535);
        CHECK(sub[1].elem_type == GGUF_STRING && sub[1].n == 2);
        if (sub[1].n == 2) CHECK_EQ_STR(((const struct gguf_str *)sub[1].data)[0].data, "x");
        CHECK(sub[2].elem_type == GGUF_FLOAT32 && sub[2].n == 0);
        CHECK(sub[3].elem_type == GGUF_ARRAY && sub[3].n == 1);
        if (sub[3].n == 1) {
            const struct gguf_array *deep = sub[3].data;
            CHECK(deep->elem_type == GGUF_INT8 && deep->n == 3 && gguf_arr_int(deep, 0) == -128);
        }
    }
}

/* Data of every tensor, deterministic. */
static unsigned char *make_data(uint64_t *total)
{
    uint64_t n = 0;
    for (size_t i = 0; i < N_TENSORS; i++) n += want_bytes[i];
    unsigned char *d = malloc(n ? n : 1);
    struct rng r;
    rng_init(&r, 2024);
    for (uint64_t i = 0; i < n; i++) d[i] = (unsigned char)rng_u64(&r);
    *total = n;
    return d;
}

static struct gguf_writer *make_writer(void)
{
    struct gguf_writer *w = gguf_writer_init(ALIGN);
    set_all_values(w);
    for (size_t i = 0; i < N_TENSORS; i++)
        CHECK_EQ_U64(gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims,
                                            tensors[i].ne),
                     i);
    return w;
}

/* Writes all data in chunks of `chunk` bytes. */
static enum hy_status write_all(struct gguf_writer *w, const struct gguf_sink *sink,
                                const unsigned char *data, uint64_t n, size_t chunk)
{
    enum hy_status st = gguf_writer_begin(w, sink);
    for (uint64_t off = 0; !st && off < n; off += chunk)
        st = gguf_writer_write_data(w, data + off, (size_t)(n - off < chunk ? n - off : chunk));
    return st ? st : gguf_writer_finish(w);
}

static bool all_zero(const unsigned char *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

static void check_tensors(const struct gguf_ctx *g, const unsigned char *file,
                          const unsigned char *data)
{
    CHECK_EQ_U64(g->n_tensors, N_TENSORS);
    CHECK_EQ_INT(g->alignment, ALIGN);
    CHECK_EQ_U64(g->data_off % ALIGN, 0);
    CHECK(g->data_off >= g->header_bytes && g->data_off - g->header_bytes < ALIGN);
    CHECK(all_zero(file + g->header_bytes, g->data_off - g->header_bytes));
    uint64_t src_off = 0, expect_off = 0;
    for (size_t i = 0; i < N_TENSORS && i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        CHECK_EQ_STR(t->name, tensors[i].name);
        CHECK_EQ_INT(t->type, tensors[i].type);
        CHECK_EQ_INT(t->n_dims, tensors[i].n_dims);
        for (uint32_t d = 0; d < 4; d++)
            CHECK_EQ_INT(t->ne[d], d < tensors[i].n_dims ? tensors[i].ne[d] : 1);
        CHECK_EQ_U64(t->n_bytes, want_bytes[i]);
        CHECK_EQ_U64(t->offset, expect_off);
        CHECK_EQ_U64(t->file_off % ALIGN, 0);
        if (!CHECK(memcmp(file + t->file_off, data + src_off, (size_t)t->n_bytes) == 0))
            fprintf(stderr, "  data of %s differs\n", t->name);
        uint64_t end = t->offset + t->n_bytes;
        uint64_t padded = (end + ALIGN - 1) / ALIGN * ALIGN;
        CHECK(all_zero(file + g->data_off + end, padded - end));
        src_off += t->n_bytes;
        expect_off = padded;
    }
    CHECK_EQ_U64(g->data_off + expect_off, g->file_size);
}

static void test_memory_round_trip(unsigned char **out_file, size_t *out_len)
{
    uint64_t n_data;
    unsigned char *data = make_data(&n_data);
    struct gguf_writer *w = make_writer();
    CHECK_EQ_U64(gguf_writer_n_tensors(w), N_TENSORS);
    for (size_t i = 0; i < N_TENSORS; i++)
        CHECK_EQ_U64(gguf_writer_tensor_bytes(w, i), want_bytes[i]);
    uint64_t predicted = gguf_writer_total_bytes(w);

    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    CHECK_OK(write_all(w, &sink, data, n_data, 7));
    CHECK_EQ_U64(mem.len, predicted);
    CHECK_EQ_U64(mem.len % ALIGN, 0);
    gguf_writer_free(w);

    struct gguf_source src = gguf_source_buffer(mem.data, mem.len, "roundtrip.gguf");
    struct gguf_ctx *g = NULL;
    if (CHECK_OK(gguf_parse(&src, &g))) {
        CHECK_EQ_INT(g->version, 3);
        CHECK_EQ_U64(g->file_size, mem.len);
        check_values(g);
        check_tensors(g, mem.data, data);
        gguf_free(g);
    }

    /* a second writer with the data in one piece gives the same bytes */
    w = make_writer();
    struct gguf_writer_mem mem2 = {0};
    struct gguf_sink sink2 = gguf_writer_mem_sink(&mem2);
    CHECK_OK(write_all(w, &sink2, data, n_data, (size_t)n_data));
    CHECK(mem2.len == mem.len && memcmp(mem2.data, mem.data, mem.len) == 0);
    gguf_writer_free(w);
    free(mem2.data);
    free(data);
    *out_file = mem.data;
    *out_len = mem.len;
}

/* The writer buffers 8 MiB and passes a chunk of at least 8 MiB straight to
 * the sink when its buffer is empty. One 17 MiB tensor written as: the rest of
 * the first buffer (which flushes it), then 8 MiB + 5 (straight through),
 * then the remainder; the bytes must be the same as from a single write. */
static void test_large_writes(void)
{
    const uint64_t buf_bytes = 8u << 20;
    const int64_t ne[1] = {(17 << 20) / 4};
    uint64_t n = (uint64_t)ne[0] * 4;
    unsigned char *data = malloc(n);
    struct rng r;
    rng_init(&r, 17);
    for (uint64_t i = 0; i < n; i++) data[i] = (unsigned char)rng_u64(&r);

    struct gguf_writer_mem one = {0}, pieces = {0};
    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_add_tensor(w, "big.weight", HY_TYPE_F32, 1, ne);
    struct gguf_sink sink = gguf_writer_mem_sink(&one);
    CHECK_OK(write_all(w, &sink, data, n, (size_t)n));
    gguf_writer_free(w);

    w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_add_tensor(w, "big.weight", HY_TYPE_F32, 1, ne);
    uint64_t header = gguf_writer_total_bytes(w) - n;
    sink = gguf_writer_mem_sink(&pieces);
    size_t first = (size_t)(buf_bytes - header), second = (size_t)buf_bytes + 5;
    CHECK_OK(gguf_writer_begin(w, &sink));
    CHECK_OK(gguf_writer_write_data(w, data, first));
    CHECK_EQ_U64(pieces.len, buf_bytes); /* the first buffer went out whole */
    CHECK_OK(gguf_writer_write_data(w, data + first, second));
    CHECK_EQ_U64(pieces.len, buf_bytes + second); /* straight through, not buffered */
    CHECK_OK(gguf_writer_write_data(w, data + first + second, (size_t)(n - first - second)));
    CHECK_OK(gguf_writer_finish(w));
    gguf_writer_free(w);

    CHECK_EQ_U64(one.len, header + n);
    CHECK(pieces.len == one.len && memcmp(pieces.data, one.data, one.len) == 0);
    struct gguf_source src = gguf_source_buffer(pieces.data, pieces.len, "big.gguf");
    struct gguf_ctx *g = NULL;
    if (CHECK_OK(gguf_parse(&src, &g))) {
        const struct gguf_tensor *t = gguf_find_tensor(g, "big.weight");
        if (CHECK(t != NULL) && CHECK_EQ_U64(t->n_bytes, n))
            CHECK(memcmp(pieces.data + t->file_off, data, (size_t)n) == 0);
        gguf_free(g);
    }
    free(one.data);
    free(pieces.data);
    free(data);
}

/* A writer with no key/values and no tensors: only the header, padded. */
static void test_empty_file(void)
{
    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    uint64_t predicted = gguf_writer_total_bytes(w);
    CHECK_OK(gguf_writer_begin(w, &sink));
    CHECK_OK(gguf_writer_finish(w));
    CHECK_EQ_U64(mem.len, predicted);
    CHECK_EQ_U64(mem.len, 32); /* 24 header bytes padded to 32 */
    struct gguf_source src = gguf_source_buffer(mem.data, mem.len, "empty.gguf");
    struct gguf_ctx *g = NULL;
    if (CHECK_OK(gguf_parse(&src, &g))) {
        CHECK(g->n_kv == 0 && g->n_tensors == 0 && g->alignment == 32 && g->data_off == 32);
        gguf_free(g);
    }
    gguf_writer_free(w);
    free(mem.data);
}

/* Misuse of the data stream is an error naming the tensor, not a bad file. */
static void test_writer_errors(void)
{
    static const int64_t ne[1] = {8};
    unsigned char buf[64] = {0};

    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_add_tensor(w, "short.weight", HY_TYPE_F32, 1, ne);
    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    CHECK_OK(gguf_writer_begin(w, &sink));
    CHECK_OK(gguf_writer_write_data(w, buf, 10));
    CHECK_STATUS(gguf_writer_finish(w), HY_ERR_INTERNAL);
    CHECK_CONTAINS(err_msg(), "'short.weight' got 10 of 32 bytes");
    gguf_writer_free(w);
    free(mem.data);

    w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_add_tensor(w, "long.weight", HY_TYPE_F32, 1, ne);
    memset(&mem, 0, sizeof(mem));
    CHECK_OK(gguf_writer_begin(w, &sink));
    CHECK_STATUS(gguf_writer_write_data(w, buf, 33), HY_ERR_INTERNAL);
    CHECK_CONTAINS(err_msg(), "past the last tensor");
    gguf_writer_free(w);
    free(mem.data);
}

static int failing_write(void *user, const void *p, size_t n)
{
    (void)user;
    (void)p;
    (void)n;
    err_set(HY_ERR_IO, "disk.gguf: write failed: No space left on device");
    return -1;
}

static void test_sink_failure(void)
{
    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_set_str(w, "general.architecture", "llama");
    struct gguf_sink sink = {failing_write, NULL};
    enum hy_status st = gguf_writer_begin(w, &sink);
    if (!st) st = gguf_writer_finish(w);
    CHECK_STATUS(st, HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), "No space left on device");
    gguf_writer_free(w);
}

/* ---- file sink ---------------------------------------------------------- */

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    return p;
}

static void test_file_sink(const unsigned char *expect, size_t expect_len)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/hy-roundtrip-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!CHECK(mkdtemp(dir) != NULL)) {
        fprintf(stderr, "  mkdtemp: %s\n", strerror(errno));
        return;
    }
    char path[600], partial[620];
    snprintf(path, sizeof(path), "%s/model.gguf", dir);
    snprintf(partial, sizeof(partial), "%s.partial", path);

    uint64_t n_data;
    unsigned char *data = make_data(&n_data);

    /* new file: written under .partial, renamed by commit */
    struct gguf_writer_file f;
    if (CHECK_OK(gguf_writer_file_open(&f, path, false))) {
        CHECK(exists(partial));
        CHECK(!exists(path));
        struct gguf_writer *w = make_writer();
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        CHECK_OK(write_all(w, &sink, data, n_data, 4096));
        CHECK(!exists(path)); /* not before commit */
        CHECK_OK(gguf_writer_file_commit(&f));
        gguf_writer_free(w);
        CHECK(exists(path));
        CHECK(!exists(partial));
    }
    size_t len = 0;
    unsigned char *bytes = read_whole(path, &len);
    CHECK(bytes && len == expect_len && memcmp(bytes, expect, len) == 0);

    /* gguf_open on the file equals gguf_parse over the same bytes in memory */
    struct gguf_ctx *from_file = NULL, *from_mem = NULL;
    struct gguf_source src = gguf_source_buffer(expect, expect_len, "memory");
    if (CHECK_OK(gguf_open(path, &from_file)) && CHECK_OK(gguf_parse(&src, &from_mem))) {
        CHECK(gguf_equal_ctx(from_file, from_mem));
        CHECK_EQ_STR(from_file->name, path);
    }
    gguf_free(from_file);
    gguf_free(from_mem);

    /* an existing file is refused without force, and nothing is created */
    if (CHECK_STATUS(gguf_writer_file_open(&f, path, false), HY_ERR_EXISTS)) {
        CHECK_CONTAINS(err_msg(), path);
        CHECK_CONTAINS(err_msg(), "hint:");
        CHECK(f.fd < 0 && f.path == NULL && f.tmp_path == NULL);
        CHECK(!exists(partial));
    }

    /* with force: abort removes the partial file and keeps the old one */
    if (CHECK_OK(gguf_writer_file_open(&f, path, true))) {
        struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        CHECK_OK(gguf_writer_begin(w, &sink));
        CHECK_OK(gguf_writer_finish(w));
        gguf_writer_file_abort(&f);
        gguf_writer_free(w);
        CHECK(!exists(partial));
        size_t len2 = 0;
        unsigned char *again = read_whole(path, &len2);
        CHECK(again && len2 == expect_len && memcmp(again, expect, len2) == 0);
        free(again);
    }

    /* with force and commit: replaced */
    if (CHECK_OK(gguf_writer_file_open(&f, path, true))) {
        struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
        gguf_writer_set_str(w, "general.architecture", "replaced");
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        CHECK_OK(gguf_writer_begin(w, &sink));
        CHECK_OK(gguf_writer_finish(w));
        CHECK_OK(gguf_writer_file_commit(&f));
        gguf_writer_free(w);
        CHECK(!exists(partial));
        struct gguf_ctx *g = NULL;
        const char *arch = NULL;
        if (CHECK_OK(gguf_open(path, &g)) &&
            CHECK_OK(gguf_get_str(g, "general.architecture", &arch)))
            CHECK_EQ_STR(arch, "replaced");
        gguf_free(g);
    }

    /* a directory that does not exist: an I/O error naming the path */
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/no-such-dir/model.gguf", dir);
    if (CHECK_STATUS(gguf_writer_file_open(&f, missing, false), HY_ERR_IO))
        CHECK_CONTAINS(err_msg(), "no-such-dir");
    struct gguf_ctx *g = NULL;
    CHECK_STATUS(gguf_open(missing, &g), HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), missing);
    CHECK(g == NULL);
    CHECK_STATUS(gguf_open(dir, &g), HY_ERR_IO); /* a directory is not a model */

    free(bytes);
    free(data);
    unlink(path);
    unlink(partial);
    CHECK(rmdir(dir) == 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    unsigned char *file = NULL;
    size_t len = 0;
    test_memory_round_trip(&file, &len);
    test_empty_file();
    test_large_writes();
    test_writer_errors();
    test_sink_failure();
    test_file_sink(file, len);
    free(file);
    return check_report(argv[0]);
}
