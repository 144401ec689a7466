/*
 * The GGUF parser against hand-built files (tests/gen_malformed.c).
 *
 * 1. The valid variants parse, and the base reads back exactly as it was
 *    built, so that the malformed cases start from a file the parser accepts
 *    (a malformed case that fails for an unrelated reason would prove nothing).
 * 2. Every malformed case is refused with HY_ERR_FORMAT, no context, and a
 *    message that starts with the source name and contains the case's
 *    expected substrings (the rule's wording and the key or tensor name).
 * 3. Sweeps: every proper prefix of the valid files is refused; every single
 *    byte replaced by a few values either parses into a consistent context or
 *    is refused with HY_ERR_FORMAT (never another status, never a crash).
 * 4. A source whose reads fail gives HY_ERR_IO.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gen_malformed.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

/* Consistency of a parsed context: what every caller relies on. */
static bool ctx_consistent(const struct gguf_ctx *g)
{
    bool ok = true;
    ok &= g->version == 2 || g->version == 3;
    ok &= base_is_pow2(g->alignment) && g->data_off % g->alignment == 0;
    ok &= g->header_bytes <= g->file_size && g->data_off >= g->header_bytes;
    for (uint64_t i = 0; i < g->n_kv; i++) ok &= gguf_find_kv(g, g->kv[i].key) == &g->kv[i];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        const struct quant_traits *tr = quant_traits(t->type);
        ok &= gguf_find_tensor(g, t->name) == t;
        ok &= t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && tr != NULL;
        if (!tr) continue;
        ok &= t->ne[0] % tr->block_size == 0;
        ok &= t->n_bytes == quant_bytes(t->type, t->n_elements);
        ok &= t->file_off == g->data_off + t->offset && t->offset % g->alignment == 0;
        ok &= t->file_off <= g->file_size && t->n_bytes <= g->file_size - t->file_off;
        for (uint64_t j = 0; j < i; j++) {
            const struct gguf_tensor *u = &g->tensors[j];
            if (t->n_bytes && u->n_bytes)
                ok &= t->offset + t->n_bytes <= u->offset || u->offset + u->n_bytes <= t->offset;
        }
    }
    return ok;
}

/* Parses bytes under name; on success checks consistency and frees. */
static enum hy_status parse_bytes(const void *data, size_t len, const char *name)
{
    struct gguf_source src = gguf_source_buffer(data, len, name);
    struct gguf_ctx *g = (struct gguf_ctx *)0x1; /* must be overwritten */
    enum hy_status st = gguf_parse(&src, &g);
    if (st == HY_OK) {
        if (!CHECK(g != NULL && ctx_consistent(g))) fprintf(stderr, "  file %s\n", name);
        gguf_free(g);
    } else {
        CHECK(g == NULL);
    }
    return st;
}

/* ---- 1. valid files ----------------------------------------------------- */

static void check_base_content(const struct gguf_ctx *g, const struct gen_file *f)
{
    const char *s = NULL;
    int64_t v = 0;
    bool b = false;
    const struct gguf_array *a = NULL;

    CHECK_EQ_INT(g->version, 3);
    CHECK_EQ_U64(g->n_kv, 10);
    CHECK_EQ_U64(g->n_tensors, 2);
    CHECK_EQ_INT(g->alignment, 32);
    CHECK_EQ_U64(g->file_size, f->len);
    CHECK_EQ_U64(f->len, 800); /* the count-bound cases in gen_malformed.c assume it */
    CHECK_EQ_U64(g->data_off, gen_mark_offset(&(struct gen_opts){0}, "data"));
    CHECK_EQ_U64(g->header_bytes, gen_mark_offset(&(struct gen_opts){0}, "padding"));
    CHECK_EQ_STR(g->kv[0].key, "general.description");
    CHECK_EQ_STR(g->kv[9].key, "test.nested");

    if (CHECK_OK(gguf_get_str(g, "general.architecture", &s))) CHECK_EQ_STR(s, "llama");
    if (CHECK_OK(gguf_get_str(g, "general.description", &s))) CHECK_EQ_U64(strlen(s), 150);
    if (CHECK_OK(gguf_get_int(g, "test.u32", &v))) CHECK_EQ_INT(v, 7);
    if (CHECK_OK(gguf_get_bool_or(g, "test.flag", false, &b))) CHECK(b);
    if (CHECK_OK(gguf_get_arr_or_null(g, "test.arr", GGUF_INT32, &a)) && CHECK(a && a->n == 3)) {
        CHECK_EQ_INT(gguf_arr_int(a, 0), 1);
        CHECK_EQ_INT(gguf_arr_int(a, 1), -2);
        CHECK_EQ_INT(gguf_arr_int(a, 2), 3);
    }
    if (CHECK_OK(gguf_get_arr_or_null(g, "test.empty", GGUF_INT32, &a))) CHECK(a && a->n == 0);
    if (CHECK_OK(gguf_get_arr_or_null(g, "test.strs", GGUF_STRING, &a)) && CHECK(a && a->n == 3)) {
        const struct gguf_str *str = a->data;
        CHECK_EQ_STR(str[0].data, "a");
        CHECK_EQ_STR(str[1].data, "");
        CHECK_EQ_U64(str[1].len, 0);
        CHECK_EQ_STR(str[2].data, "bcd");
    }
    if (CHECK_OK(gguf_get_arr_or_null(g, "test.bools", GGUF_BOOL, &a)) && CHECK(a && a->n == 3)) {
        const bool *bl = a->data;
        CHECK(bl[0] && !bl[1] && bl[2]);
    }
    if (CHECK_OK(gguf_get_arr_or_null(g, "test.nested", GGUF_ARRAY, &a)) && CHECK(a && a->n == 1)) {
        const struct gguf_array *inner = a->data;
        CHECK_EQ_INT(inner->elem_type, GGUF_UINT8);
        if (CHECK_EQ_U64(inner->n, 3)) CHECK_EQ_INT(gguf_arr_int(inner, 2), 9);
    }

    const struct gguf_tensor *tok = gguf_find_tensor(g, "tok.weight");
    const struct gguf_tensor *out = gguf_find_tensor(g, "out.weight");
    if (CHECK(tok != NULL)) {
        CHECK_EQ_INT(tok->type, HY_TYPE_Q8_0);
        CHECK_EQ_INT(tok->n_dims, 2);
        CHECK_EQ_INT(tok->ne[0], 32);
        CHECK_EQ_INT(tok->ne[1], 2);
        CHECK_EQ_INT(tok->ne[2], 1);
        CHECK_EQ_U64(tok->n_elements, 64);
        CHECK_EQ_U64(tok->n_bytes, 68);
        CHECK_EQ_U64(tok->file_off, g->data_off);
        /* first block: f16 scale 1.0, then 0, 7, 14, ... */
        CHECK(f->data[tok->file_off] == 0x00 && f->data[tok->file_off + 1] == 0x3c);
        CHECK_EQ_INT(f->data[tok->file_off + 3], 7);
    }
    if (CHECK(out != NULL)) {
        CHECK_EQ_INT(out->type, HY_TYPE_F32);
        CHECK_EQ_U64(out->offset, 96);
        CHECK_EQ_U64(out->n_bytes, 32);
        CHECK_EQ_U64(out->file_off + out->n_bytes, f->len);
        float last;
        memcpy(&last, f->data + out->file_off + 28, 4);
        CHECK_EQ_INT(last, 8);
    }
    CHECK(gguf_find_tensor(g, "absent") == NULL);
    CHECK_EQ_INT(gguf_find_tensor_idx(g, "out.weight"), 1);
}

static int nesting_depth(const struct gguf_array *a)
{
    if (a->elem_type != GGUF_ARRAY || a->n == 0) return 1;
    return 1 + nesting_depth((const struct gguf_array *)a->data);
}

static void test_valid(void)
{
    for (size_t i = 0; i < gen_valid_count(); i++) {
        const struct gen_case *c = gen_valid_case(i);
        struct gen_file f;
        gen_build(c, &f);
        char name[96];
        snprintf(name, sizeof(name), "%s.gguf", c->name);
        struct gguf_source src = gguf_source_buffer(f.data, f.len, name);
        struct gguf_ctx *g = NULL;
        if (!CHECK_OK(gguf_parse(&src, &g))) {
            fprintf(stderr, "  valid case %s (%s) was refused\n", c->name, c->rule);
            free(f.data);
            continue;
        }
        CHECK(ctx_consistent(g));
        CHECK_EQ_STR(g->name, name);
        uint32_t want_align = c->opts.alignment ? c->opts.alignment : 32;
        CHECK_EQ_INT(g->alignment, want_align);
        CHECK_EQ_INT(g->version, c->opts.version ? c->opts.version : 3);
        if (c->opts.minimal) {
            CHECK_EQ_U64(g->n_kv, 0);
            CHECK_EQ_U64(g->n_tensors, 0);
            CHECK_EQ_U64(g->data_off, 32);
            CHECK_EQ_U64(g->header_bytes, 24);
        } else {
            const struct gguf_tensor *out = gguf_find_tensor(g, "out.weight");
            if (CHECK(out != NULL))
                CHECK_EQ_U64(out->offset, (68 + want_align - 1) / want_align * want_align);
            const struct gguf_array *a = NULL;
            if (CHECK_OK(gguf_get_arr_or_null(g, "test.nested", GGUF_VTYPE_COUNT, &a)) &&
                CHECK(a != NULL))
                CHECK_EQ_INT(nesting_depth(a), c->opts.nest_depth ? c->opts.nest_depth : 2);
        }
        if (i == 0) check_base_content(g, &f);
        gguf_free(g);
        free(f.data);
    }
}

/* ---- 2. malformed cases ------------------------------------------------- */

static void test_malformed(void)
{
    struct gen_file base;
    gen_build(gen_valid_case(0), &base);
    size_t n = gen_malformed_count();
    CHECK(n >= 60);
    for (size_t i = 0; i < n; i++) {
        const struct gen_case *c = gen_malformed_case(i);
        for (size_t j = 0; j < i; j++)
            if (!CHECK(strcmp(gen_malformed_case(j)->name, c->name) != 0))
                fprintf(stderr, "  duplicate case %s\n", c->name);
        struct gen_file f;
        gen_build(c, &f);
        /* the case really changes the base */
        CHECK(f.len != base.len || memcmp(f.data, base.data, f.len) != 0);
        char name[96];
        snprintf(name, sizeof(name), "%s.gguf", c->name);
        err_clear();
        enum hy_status st = parse_bytes(f.data, f.len, name);
        if (!CHECK_STATUS(st, HY_ERR_FORMAT)) {
            fprintf(stderr, "  case %s (%s)\n", c->name, c->rule);
            free(f.data);
            continue;
        }
        const char *msg = err_msg();
        bool ok = CHECK(strncmp(msg, name, strlen(name)) == 0 &&
                        strncmp(msg + strlen(name), ": ", 2) == 0);
        for (int k = 0; k < 3 && c->want[k]; k++) ok &= CHECK_CONTAINS(msg, c->want[k]);
        if (!ok) fprintf(stderr, "  case %s (%s)\n", c->name, c->rule);
        free(f.data);
    }
    free(base.data);
}

/* ---- 3. sweeps ---------------------------------------------------------- */

static void test_prefixes(void)
{
    static const struct gen_opts variants[] = {{0}, {.alignment = 64}, {.nest_depth = 8}};
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        struct gen_case c = {"prefix", "prefix", variants[v], {{0}}, {NULL}};
        struct gen_file f;
        gen_build(&c, &f);
        long wrong = 0;
        for (size_t len = 0; len < f.len; len++) {
            /* a copy of exactly len bytes, so that ASan sees any read past it */
            unsigned char *cut = malloc(len ? len : 1);
            memcpy(cut, f.data, len);
            enum hy_status st = parse_bytes(cut, len, "prefix.gguf");
            if (st != HY_ERR_FORMAT && wrong++ < 5)
                fprintf(stderr, "  prefix of %zu of %zu bytes: %s\n", len, f.len,
                        hy_status_str(st));
            free(cut);
        }
        CHECK_EQ_INT(wrong, 0);
        free(f.data);
    }
}

static void test_byte_mutations(void)
{
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff};
    struct gen_file f;
    gen_build(gen_valid_case(0), &f);
    unsigned char *m = malloc(f.len);
    long wrong = 0, refused = 0, runs = 0;
    for (size_t pos = 0; pos < f.len; pos++) {
        for (size_t k = 0; k < sizeof(values); k++) {
            if (f.data[pos] == values[k]) continue;
            memcpy(m, f.data, f.len);
            m[pos] = values[k];
            enum hy_status st = parse_bytes(m, f.len, "mutated.gguf");
            runs++;
            refused += st == HY_ERR_FORMAT;
            if (st != HY_OK && st != HY_ERR_FORMAT && wrong++ < 5)
                fprintf(stderr, "  byte %zu = 0x%02x: %s\n", pos, values[k], hy_status_str(st));
        }
    }
    CHECK_EQ_INT(wrong, 0);
    /* most single-byte changes in the header are caught; data bytes are free */
    CHECK(refused > runs / 4);
    free(m);
    free(f.data);
}

/* ---- 4. source errors --------------------------------------------------- */

struct failing_source {
    const unsigned char *data;
    uint64_t fail_from; /* reads touching bytes at or after this fail */
};

static int failing_read_at(void *user, uint64_t off, void *dst, size_t n)
{
    const struct failing_source *fs = user;
    if (off + n > fs->fail_from) {
        errno = EIO;
        return -1;
    }
    memcpy(dst, fs->data + off, n);
    return 0;
}

static void test_source_errors(void)
{
    struct gen_file f;
    gen_build(gen_valid_case(0), &f);
    struct failing_source fs = {f.data, 100};
    struct gguf_source src = {failing_read_at, &fs, f.len, "flaky.gguf"};
    struct gguf_ctx *g = NULL;
    if (CHECK_STATUS(gguf_parse(&src, &g), HY_ERR_IO)) {
        CHECK(g == NULL);
        CHECK_CONTAINS(err_msg(), "flaky.gguf");
        CHECK_CONTAINS(err_msg(), "failed");
    }
    /* the same source with no failure parses */
    fs.fail_from = UINT64_MAX;
    if (CHECK_OK(gguf_parse(&src, &g))) gguf_free(g);

    /* a NULL name gets a placeholder */
    struct gguf_source anon = gguf_source_buffer(f.data, 3, NULL);
    CHECK_STATUS(gguf_parse(&anon, &g), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "<gguf>");
    gguf_free(NULL);
    free(f.data);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_valid();
    test_malformed();
    test_prefixes();
    test_byte_mutations();
    test_source_errors();
    return check_report(argv[0]);
}
