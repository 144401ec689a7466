/*
 * Unit tests of the core helpers and the type table: byte sizes, the string
 * map, half and bfloat16 conversions, the deterministic RNG, quant traits,
 * the thread pool's runs.
 *
 * The conversions are tested exhaustively where the domain is 16 bits: every
 * half and every bfloat16 round-trips, and for every pair of neighbouring
 * finite values the midpoint (exactly representable in float) rounds to the
 * even one and one float ulp either side rounds to the nearer one.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "core/rng.h"
#include "core/sizes.h"
#include "core/strmap.h"
#include "core/threadpool.h"
#include "core/timing.h"
#include "quant/quant.h"

/* ---- sizes -------------------------------------------------------------- */

static void test_sizes_parse(void)
{
    /* clang-format off */
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"512b", 512},
        {"1K", 1024},
        {"1k", 1024},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"1KB", 1000},
        {"1M", 1048576},
        {"1MiB", 1048576},
        {"1MB", 1000000},
        {"8G", 8ull << 30},
        {"8GiB", 8ull << 30},
        {"8gb", 8000000000ull},
        {"2T", 2ull << 40},
        {"2TiB", 2ull << 40},
        {"2TB", 2000000000000ull},
        {"1.5K", 1536},
        {"1.5GiB", 3ull << 29},
        {"2.5GB", 2500000000ull},
        {"0.5M", 524288},
        {".25M", 262144},
        {"512 M", 512ull << 20},
        {"16383T", 16383ull << 40},
        /* above 2^63 but below 2^64: must not go through a signed conversion */
        {"9000000000G", 9000000000ull << 30},
        {"15T", 15ull << 40},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t got = 0xdeadbeef;
        if (CHECK_OK(sizes_parse(good[i].text, &got)) && !CHECK_EQ_U64(got, good[i].bytes))
            fprintf(stderr, "  input: \"%s\"\n", good[i].text);
    }

    /* clang-format off */
    static const struct {
        const char *text;
        const char *in_message;
    } bad[] = {
        {"", "empty"},
        {"K", "not a size"},
        {"-1G", "not a size"},
        {" 1G", "not a size"},
        {"abc", "not a size"},
        {"1X", "unknown size unit"},
        {"1.5 PB", "unknown size unit"},
        {"1GG", "unknown size unit"},
        {"1Gi", "unknown size unit"},
        {"1G ", "unknown size unit"},
        {"16777216T", "too large"},  /* exactly 2^64 */
        {"17179869184G", "too large"}, /* exactly 2^64 */
        {"99999999999999999999", "too large"},
        {"1e30", "too large"},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t got = 12345;
        enum hy_status st = sizes_parse(bad[i].text, &got);
        if (!CHECK_STATUS(st, HY_ERR_INVALID_ARG)) {
            fprintf(stderr, "  input: \"%s\" gave %" PRIu64 "\n", bad[i].text, got);
            continue;
        }
        CHECK_CONTAINS(err_msg(), bad[i].in_message);
        CHECK_EQ_U64(got, 12345); /* untouched on failure */
        if (bad[i].text[0]) CHECK_CONTAINS(err_msg(), bad[i].text);
    }
}

static void test_sizes_format(void)
{
    static const struct {
        uint64_t bytes;
        const char *text;
    } cases[] = {
        {0, "0 B"},
        {1, "1 B"},
        {1023, "1023 B"},
        {1024, "1.00 KiB"},
        {1536, "1.50 KiB"},
        {1048576, "1.00 MiB"},
        {3ull << 29, "1.50 GiB"},
        {1ull << 40, "1.00 TiB"},
        {1ull << 50, "1.00 PiB"},
        {UINT64_MAX, "16384.00 PiB"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        CHECK_EQ_STR(sizes_format(cases[i].bytes, buf, sizeof(buf)), cases[i].text);
    }
    /* a short buffer is truncated, never overrun */
    char tiny[6];
    memset(tiny, 'x', sizeof(tiny));
    sizes_format(3ull << 29, tiny, 4);
    CHECK_EQ_STR(tiny, "1.5");
    CHECK_EQ_INT(tiny[4], 'x');
}

/* ---- strmap ------------------------------------------------------------- */

static void test_strmap(void)
{
    struct strmap m;
    strmap_init(&m, 0);
    CHECK_EQ_INT(strmap_find(&m, "absent"), -1);
    CHECK_EQ_INT(strmap_put(&m, "a", 1), -1);
    CHECK_EQ_INT(strmap_put(&m, "b", 2), -1);
    CHECK_EQ_INT(strmap_put(&m, "", 3), -1); /* the empty string is a key like any other */
    CHECK_EQ_INT(strmap_find(&m, "a"), 1);
    CHECK_EQ_INT(strmap_find(&m, "b"), 2);
    CHECK_EQ_INT(strmap_find(&m, ""), 3);
    /* a duplicate returns the existing value and changes nothing */
    char a_copy[] = "a";
    CHECK_EQ_INT(strmap_put(&m, a_copy, 99), 1);
    CHECK_EQ_INT(strmap_find(&m, "a"), 1);
    CHECK_EQ_U64(m.count, 3);
    strmap_free(&m);
    strmap_free(&m); /* freeing twice leaves an empty map */
    CHECK_EQ_INT(strmap_find(&m, "a"), -1);

    /* growth from the smallest table: every key stays findable */
    enum { N = 5000 };
    char(*keys)[16] = malloc(sizeof(*keys) * N);
    strmap_init(&m, 1);
    size_t cap0 = m.cap;
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "blk.%d.w", i);
        if (!CHECK_EQ_INT(strmap_put(&m, keys[i], i), -1)) break;
    }
    CHECK(m.cap > cap0);
    CHECK(m.count == N);
    CHECK(m.count * 2 <= m.cap); /* load factor kept at or under one half */
    long misses = 0;
    for (int i = 0; i < N; i++) misses += strmap_find(&m, keys[i]) != i;
    CHECK_EQ_INT(misses, 0);
    CHECK_EQ_INT(strmap_find(&m, "blk.5000.w"), -1);
    CHECK_EQ_INT(strmap_put(&m, keys[1234], -7), 1234);
    strmap_free(&m);
    free(keys);

    /* FNV-1a 64 reference values */
    CHECK_EQ_U64(strmap_hash(""), 0xcbf29ce484222325ull);
    CHECK_EQ_U64(strmap_hash("a"), 0xaf63dc4c8601ec8cull);
    CHECK_EQ_U64(strmap_hash("foobar"), 0x85944171f73967e8ull);
}

/* ---- f16 / bf16 --------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static bool half_is_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}

static bool bf16_is_nan(uint16_t h)
{
    return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
}

static void test_f16_round_trip(void)
{
    long bad = 0, bad_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = quant_f16_to_f32(h);
        uint16_t back = quant_f32_to_f16(f);
        if (half_is_nan(h)) {
            /* the payload may be lost, NaN-ness and sign must not */
            if (!isnan(f) || !half_is_nan(back) || (back & 0x8000) != (h & 0x8000)) bad_nan++;
        } else if (back != h) {
            if (bad++ < 5) fprintf(stderr, "  half 0x%04x -> %a -> 0x%04x\n", h, (double)f, back);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(bad_nan, 0);

    /* values against their definition */
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x3c00)), f32_bits(1.0f));
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0xc000)), f32_bits(-2.0f));
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x7bff)), f32_bits(65504.0f));
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x0001)),
                 f32_bits(ldexpf(1.0f, -24))); /* smallest subnormal */
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x03ff)),
                 f32_bits(ldexpf(1023.0f, -24))); /* largest subnormal */
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x0400)),
                 f32_bits(ldexpf(1.0f, -14))); /* smallest normal */
    CHECK_EQ_U64(f32_bits(quant_f16_to_f32(0x8000)), f32_bits(-0.0f));
    CHECK(isinf(quant_f16_to_f32(0x7c00)) && quant_f16_to_f32(0x7c00) > 0);
    CHECK(isinf(quant_f16_to_f32(0xfc00)) && quant_f16_to_f32(0xfc00) < 0);
}

/* For every pair of adjacent finite halfs: the exact midpoint rounds to the
 * one with an even mantissa; one float ulp below/above it rounds down/up. */
static void test_f16_rounding(void)
{
    long bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = quant_f16_to_f32((uint16_t)h);
        /* above 65504 the next value is 65536, which rounds to infinity */
        float hi = h == 0x7bff ? 65536.0f : quant_f16_to_f32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) / 2; /* exact: halfs have 11 significant bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int s = 0; s < 2; s++) {
            uint16_t sign = s ? 0x8000 : 0;
            float sg = s ? -1.0f : 1.0f;
            uint16_t want_mid = (uint16_t)(sign | even);
            uint16_t want_below = (uint16_t)(sign | h);
            uint16_t want_above = (uint16_t)(sign | (h + 1));
            uint16_t got_mid = quant_f32_to_f16(sg * mid);
            uint16_t got_below = quant_f32_to_f16(sg * nextafterf(mid, 0.0f));
            uint16_t got_above = quant_f32_to_f16(sg * nextafterf(mid, INFINITY));
            if (got_mid != want_mid || got_below != want_below || got_above != want_above) {
                if (bad++ < 5)
                    fprintf(stderr,
                            "  between halfs 0x%04x and 0x%04x (sign %d): mid %a -> 0x%04x (want "
                            "0x%04x), "
                            "below -> 0x%04x (want 0x%04x), above -> 0x%04x (want 0x%04x)\n",
                            h, h + 1, s, (double)mid, got_mid, want_mid, got_below, want_below,
                            got_above, want_above);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);

    /* named cases */
    CHECK_EQ_U64(quant_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);     /* tie, even is 1.0 */
    CHECK_EQ_U64(quant_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* tie, even is up */
    CHECK_EQ_U64(quant_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_U64(quant_f32_to_f16(65520.0f), 0x7c00); /* tie between max and 2^16: rounds to inf */
    CHECK_EQ_U64(quant_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_U64(quant_f32_to_f16(-1e10f), 0xfc00);
    CHECK_EQ_U64(quant_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_U64(quant_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_U64(quant_f32_to_f16(ldexpf(1.0f, -25)),
                 0x0000); /* tie between 0 and the smallest subnormal */
    CHECK_EQ_U64(quant_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    CHECK_EQ_U64(quant_f32_to_f16(ldexpf(3.0f, -25)),
                 0x0002);                            /* tie 1.5 subnormal ulps: up to even 2 */
    CHECK_EQ_U64(quant_f32_to_f16(1e-10f), 0x0000);  /* underflows to zero */
    CHECK_EQ_U64(quant_f32_to_f16(-1e-10f), 0x8000); /* ... keeping the sign */
    CHECK_EQ_U64(quant_f32_to_f16(FLT_TRUE_MIN), 0x0000);
    CHECK_EQ_U64(quant_f32_to_f16(ldexpf(1023.5f, -24)),
                 0x0400); /* largest subnormal rounds up to normal */
    CHECK_EQ_U64(quant_f32_to_f16(-0.0f), 0x8000);
    CHECK(half_is_nan(quant_f32_to_f16(NAN)));
    CHECK(half_is_nan(quant_f32_to_f16(f32_from_bits(0x7f800001u)))); /* payload only in low bits */
    CHECK(half_is_nan(quant_f32_to_f16(f32_from_bits(0xffc00000u))));
}

static void test_bf16(void)
{
    long bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = quant_bf16_to_f32(h);
        CHECK_EQ_U64(f32_bits(f), (uint32_t)h << 16);
        uint16_t back = quant_f32_to_bf16(f);
        if (bf16_is_nan(h) ? (!bf16_is_nan(back) || (back & 0x8000) != (h & 0x8000)) : back != h) {
            if (bad++ < 5) fprintf(stderr, "  bf16 0x%04x -> 0x%04x\n", h, back);
        }
    }
    CHECK_EQ_INT(bad, 0);

    bad = 0;
    for (uint32_t h = 0; h < 0x7f80; h++) {
        /* the midpoint between adjacent bf16 values is the float with only bit 15 set below them */
        uint32_t mid_bits = (h << 16) | 0x8000u;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int s = 0; s < 2; s++) {
            uint32_t sign = s ? 0x80000000u : 0;
            uint16_t got_mid = quant_f32_to_bf16(f32_from_bits(sign | mid_bits));
            uint16_t got_below = quant_f32_to_bf16(f32_from_bits(sign | (mid_bits - 1)));
            uint16_t got_above = quant_f32_to_bf16(f32_from_bits(sign | (mid_bits + 1)));
            if (got_mid != (uint16_t)((sign >> 16) | even) ||
                got_below != (uint16_t)((sign >> 16) | h) ||
                got_above != (uint16_t)((sign >> 16) | (h + 1))) {
                if (bad++ < 5)
                    fprintf(stderr,
                            "  bf16 rounding between 0x%04x and 0x%04x: 0x%04x 0x%04x 0x%04x\n", h,
                            h + 1, got_below, got_mid, got_above);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);

    CHECK_EQ_U64(quant_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_U64(quant_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds up to infinity */
    CHECK_EQ_U64(quant_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_U64(quant_f32_to_bf16(f32_from_bits(0x00010000u)), 0x0001); /* subnormals are kept */
    CHECK(
        bf16_is_nan(quant_f32_to_bf16(f32_from_bits(0x7f800001u)))); /* must not become infinity */
    CHECK(bf16_is_nan(
        quant_f32_to_bf16(f32_from_bits(0x7fffffffu)))); /* must not carry into the sign */
    CHECK_EQ_U64(quant_f32_to_bf16(f32_from_bits(0x7fffffffu)) & 0x8000, 0);
}

/* ---- rng ---------------------------------------------------------------- */

static void test_rng(void)
{
    /* First outputs of xoshiro256** seeded through splitmix64, computed by an
     * independent implementation of the published algorithms: the stream must
     * not change between platforms or releases (synthetic models depend on it). */
    static const uint64_t want0[] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull,
                                     0x1a5f849d4933e6e0ull, 0x6aa594f1262d2d2cull};
    static const uint64_t want42[] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull,
                                      0xae17533239e499a1ull, 0xecb8ad4703b360a1ull};
    struct rng r;
    rng_init(&r, 0);
    for (int i = 0; i < 4; i++) CHECK_EQ_U64(rng_u64(&r), want0[i]);
    rng_init(&r, 42);
    for (int i = 0; i < 4; i++) CHECK_EQ_U64(rng_u64(&r), want42[i]);

    struct rng a, b;
    rng_init(&a, 7);
    rng_init(&b, 7);
    long differ = 0;
    for (int i = 0; i < 1000; i++) differ += rng_u64(&a) != rng_u64(&b);
    CHECK_EQ_INT(differ, 0);
    rng_init(&b, 8);
    CHECK(rng_u64(&a) != rng_u64(&b));

    rng_init(&r, 1);
    double sum = 0, sum2 = 0;
    bool in_range = true;
    for (int i = 0; i < 20000; i++) {
        double u = rng_uniform(&r);
        in_range &= u >= 0.0 && u < 1.0;
        uint64_t k = rng_below(&r, 10);
        in_range &= k < 10;
        double z = rng_normal(&r);
        sum += z;
        sum2 += z * z;
    }
    CHECK(in_range);
    CHECK_NEAR(sum / 20000, 0.0, 0.05);
    CHECK_NEAR(sum2 / 20000, 1.0, 0.05);

    int perm[100];
    int seen[100] = {0};
    for (int i = 0; i < 100; i++) perm[i] = i;
    rng_shuffle(&r, perm, 100);
    int moved = 0;
    for (int i = 0; i < 100; i++) {
        if (perm[i] >= 0 && perm[i] < 100) seen[perm[i]]++;
        moved += perm[i] != i;
    }
    bool is_perm = true;
    for (int i = 0; i < 100; i++) is_perm &= seen[i] == 1;
    CHECK(is_perm);
    CHECK(moved > 50);
}

/* ---- quant traits ------------------------------------------------------- */

static void test_quant_traits(void)
{
    /* Block geometry as ggml defines it (ggml.c type_traits). */
    /* clang-format off */
    static const struct {
        uint32_t id;
        const char *name;
        uint32_t block_size, block_bytes;
        bool quantized;
    } want[] = {
        {0, "F32", 1, 4, false},        {1, "F16", 1, 2, false},
        {2, "Q4_0", 32, 18, true},      {3, "Q4_1", 32, 20, true},
        {6, "Q5_0", 32, 22, true},      {7, "Q5_1", 32, 24, true},
        {8, "Q8_0", 32, 34, true},      {9, "Q8_1", 32, 36, true},
        {10, "Q2_K", 256, 84, true},    {11, "Q3_K", 256, 110, true},
        {12, "Q4_K", 256, 144, true},   {13, "Q5_K", 256, 176, true},
        {14, "Q6_K", 256, 210, true},   {15, "Q8_K", 256, 292, true},
        {16, "IQ2_XXS", 256, 66, true}, {17, "IQ2_XS", 256, 74, true},
        {18, "IQ3_XXS", 256, 98, true}, {19, "IQ1_S", 256, 50, true},
        {20, "IQ4_NL", 32, 18, true},   {21, "IQ3_S", 256, 110, true},
        {22, "IQ2_S", 256, 82, true},   {23, "IQ4_XS", 256, 136, true},
        {24, "I8", 1, 1, false},        {25, "I16", 1, 2, false},
        {26, "I32", 1, 4, false},       {27, "I64", 1, 8, false},
        {28, "F64", 1, 8, false},       {29, "IQ1_M", 256, 56, true},
        {30, "BF16", 1, 2, false},      {34, "TQ1_0", 256, 54, true},
        {35, "TQ2_0", 256, 66, true},   {39, "MXFP4", 32, 17, true},
    };
    /* clang-format on */
    bool known[HY_TYPE_COUNT + 64] = {false};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct quant_traits *t = quant_traits(want[i].id);
        known[want[i].id] = true;
        if (!CHECK(t != NULL)) {
            fprintf(stderr, "  type id %u\n", want[i].id);
            continue;
        }
        CHECK_EQ_STR(t->name, want[i].name);
        CHECK_EQ_INT(t->block_size, want[i].block_size);
        CHECK_EQ_INT(t->block_bytes, want[i].block_bytes);
        CHECK_EQ_INT(t->is_quantized, want[i].quantized);
        CHECK_EQ_STR(quant_type_name(want[i].id), want[i].name);
        CHECK_EQ_INT(quant_type_from_name(want[i].name), want[i].id);
        CHECK_EQ_U64(quant_bytes(want[i].id, (uint64_t)want[i].block_size * 3),
                     3ull * want[i].block_bytes);
    }
    /* retired (4, 5, 31-33, 36-38) and out-of-range ids are unknown */
    for (uint32_t id = 0; id < HY_TYPE_COUNT + 64; id++) {
        if (known[id]) continue;
        if (!CHECK(quant_traits(id) == NULL))
            fprintf(stderr, "  type id %u should be unknown\n", id);
    }
    CHECK(quant_traits(UINT32_MAX) == NULL);
    CHECK_EQ_STR(quant_type_name(31), "type#31");
    CHECK_EQ_STR(quant_type_name(4000000000u), "type#4000000000");

    CHECK_EQ_INT(quant_type_from_name("q4_k"), HY_TYPE_Q4_K);
    CHECK_EQ_INT(quant_type_from_name("bf16"), HY_TYPE_BF16);
    CHECK_EQ_INT(quant_type_from_name("iq2_xxs"), HY_TYPE_IQ2_XXS);
    CHECK_EQ_INT(quant_type_from_name("Q4_K_M"), -1); /* a file type, not a tensor type */
    CHECK_EQ_INT(quant_type_from_name(""), -1);
    CHECK_EQ_INT(quant_type_from_name("type#31"), -1);
    CHECK_EQ_U64(quant_bytes(HY_TYPE_Q4_K, 0), 0);
    CHECK_EQ_U64(quant_bytes(HY_TYPE_F32, 1ull << 40), 4ull << 40);
}

/* ---- thread pool -------------------------------------------------------- */

#define POOL_MAX 8

/* One run's record: how many times each ith was called, the nth each call
 * saw, and (after) whether the run before it had been called for every ith
 * when any of its calls began. */
struct pool_run {
    atomic_int calls[POOL_MAX];
    atomic_int bad_nth;
    atomic_int before_incomplete;
    const struct pool_run *before;
    int n;
};

static void pool_fn(void *ctx, int ith, int nth)
{
    struct pool_run *r = ctx;
    if (nth != r->n || ith < 0 || ith >= POOL_MAX) {
        atomic_fetch_add(&r->bad_nth, 1);
        return;
    }
    if (r->before)
        for (int i = 0; i < r->n; i++)
            if (atomic_load(&r->before->calls[i]) != 1) atomic_fetch_add(&r->before_incomplete, 1);
    atomic_fetch_add(&r->calls[ith], 1);
}

static void pool_run_init(struct pool_run *r, int n, const struct pool_run *before)
{
    for (int i = 0; i < POOL_MAX; i++) atomic_init(&r->calls[i], 0);
    atomic_init(&r->bad_nth, 0);
    atomic_init(&r->before_incomplete, 0);
    r->before = before;
    r->n = n;
}

/* Every ith called once per run, with nth; true when so. */
static bool pool_run_whole(struct pool_run *r)
{
    int bad = atomic_load(&r->bad_nth) + atomic_load(&r->before_incomplete);
    for (int i = 0; i < r->n; i++) bad += atomic_load(&r->calls[i]) != 1;
    return bad == 0;
}

/* threadpool_run calls fn once for every ith (runs back to back, and with
 * pauses longer than the workers' spin, so that they block and are woken);
 * threadpool_start leaves ith 0 to the join and the others run on their own;
 * a run or start after a start joins that one first; one thread runs
 * nothing before the join. */
static void test_threadpool(void)
{
    static const int sizes[] = {1, 2, 3, 5, POOL_MAX};
    struct pool_run a, b;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int n = sizes[si];
        struct threadpool *p = NULL;
        if (!CHECK_OK(threadpool_init(n, &p))) return;
        CHECK_EQ_INT(threadpool_n_threads(p), n);
        int whole = 0;
        for (int it = 0; it < 300; it++) {
            pool_run_init(&a, n, NULL);
            threadpool_run(p, pool_fn, &a);
            whole += pool_run_whole(&a);
            if (it % 50 == 49) { /* past the spin: the workers block */
                const struct timespec pause = {0, 2 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
        }
        CHECK_EQ_INT(whole, 300);

        /* started: the workers run their ith at once, ith 0 waits for the join */
        pool_run_init(&a, n, NULL);
        threadpool_start(p, pool_fn, &a);
        int done = 0;
        const int64_t t0 = timing_now_us();
        while (done < n - 1 && timing_now_us() - t0 < 10 * 1000 * 1000) {
            done = 0;
            for (int i = 1; i < n; i++) done += atomic_load(&a.calls[i]);
            sched_yield();
        }
        CHECK_EQ_INT(done, n - 1);
        CHECK_EQ_INT(atomic_load(&a.calls[0]), 0);
        threadpool_join(p);
        CHECK(pool_run_whole(&a));
        threadpool_join(p); /* nothing started: a no-op */
        CHECK(pool_run_whole(&a));

        /* a run after a start: the started one is whole before it begins */
        pool_run_init(&a, n, NULL);
        pool_run_init(&b, n, &a);
        threadpool_start(p, pool_fn, &a);
        threadpool_run(p, pool_fn, &b);
        CHECK(pool_run_whole(&a));
        CHECK(pool_run_whole(&b));
        /* and a start after a start */
        pool_run_init(&a, n, NULL);
        pool_run_init(&b, n, &a);
        threadpool_start(p, pool_fn, &a);
        threadpool_start(p, pool_fn, &b);
        threadpool_join(p);
        CHECK(pool_run_whole(&a));
        CHECK(pool_run_whole(&b));
        threadpool_free(p);
    }
    threadpool_free(NULL);
    struct threadpool *p = NULL;
    CHECK(threadpool_init(0, &p) != HY_OK && p == NULL);
    err_clear();
}

/* A loose run's work: items claimed from a counter, each counted as done;
 * calls in fn counted while in it, and every call's entry. */
#define LOOSE_ITEMS 64

struct loose_run {
    atomic_int next;
    atomic_int done[LOOSE_ITEMS];
    atomic_int in_fn, entries;
};

static void loose_fn(void *ctx, int ith, int nth)
{
    (void)ith, (void)nth;
    struct loose_run *r = ctx;
    atomic_fetch_add(&r->in_fn, 1);
    atomic_fetch_add(&r->entries, 1);
    for (int i; (i = atomic_fetch_add(&r->next, 1)) < LOOSE_ITEMS;)
        atomic_fetch_add(&r->done[i], 1);
    atomic_fetch_sub(&r->in_fn, 1);
}

static void loose_run_init(struct loose_run *r)
{
    atomic_init(&r->next, 0);
    for (int i = 0; i < LOOSE_ITEMS; i++) atomic_init(&r->done[i], 0);
    atomic_init(&r->in_fn, 0);
    atomic_init(&r->entries, 0);
}

/* Loose runs, back to back (workers often not begun when the join closes
 * the run) and between strict runs and pauses: every item done once, no
 * call in fn once joined, no call of a joined run later, and every strict
 * run still has every ith. */
static void test_threadpool_loose(void)
{
    static const int sizes[] = {1, 2, 3, POOL_MAX};
    enum { RUNS = 64 };
    static struct loose_run runs[RUNS];
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int n = sizes[si];
        struct threadpool *p = NULL;
        if (!CHECK_OK(threadpool_init(n, &p))) return;
        int bad_items = 0, in_after = 0, late = 0, strict_bad = 0;
        int entries_at_join[RUNS];
        for (int round = 0; round < 30; round++) {
            for (int r = 0; r < RUNS; r++) {
                loose_run_init(&runs[r]);
                threadpool_start_loose(p, loose_fn, &runs[r]);
                if (n == 1) CHECK_EQ_INT(atomic_load(&runs[r].entries), 0);
                threadpool_join(p);
                in_after += atomic_load(&runs[r].in_fn) != 0;
                entries_at_join[r] = atomic_load(&runs[r].entries);
                for (int i = 0; i < LOOSE_ITEMS; i++)
                    bad_items += atomic_load(&runs[r].done[i]) != 1;
                if (r % 16 == 15) { /* a strict run between: every ith */
                    struct pool_run a;
                    pool_run_init(&a, n, NULL);
                    threadpool_run(p, pool_fn, &a);
                    strict_bad += !pool_run_whole(&a);
                }
            }
            /* a joined run is never entered again */
            for (int r = 0; r < RUNS; r++)
                late += atomic_load(&runs[r].entries) != entries_at_join[r];
            if (round % 10 == 9) { /* past the spin: the workers block */
                const struct timespec pause = {0, 2 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
        }
        CHECK_EQ_INT(bad_items, 0);
        CHECK_EQ_INT(in_after, 0);
        CHECK_EQ_INT(late, 0);
        CHECK_EQ_INT(strict_bad, 0);
        /* a loose start after a loose start joins it first */
        loose_run_init(&runs[0]);
        loose_run_init(&runs[1]);
        threadpool_start_loose(p, loose_fn, &runs[0]);
        threadpool_start_loose(p, loose_fn, &runs[1]);
        CHECK_EQ_INT(atomic_load(&runs[0].next) >= LOOSE_ITEMS, 1);
        CHECK_EQ_INT(atomic_load(&runs[0].in_fn), 0);
        threadpool_free(p); /* joins the started run */
        CHECK_EQ_INT(atomic_load(&runs[1].in_fn), 0);
        int bad = 0;
        for (int i = 0; i < LOOSE_ITEMS; i++)
            bad += (atomic_load(&runs[0].done[i]) != 1) + (atomic_load(&runs[1].done[i]) != 1);
        CHECK_EQ_INT(bad, 0);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    test_sizes_parse();
    test_sizes_format();
    test_strmap();
    test_f16_round_trip();
    test_f16_rounding();
    test_bf16();
    test_rng();
    test_quant_traits();
    test_threadpool();
    test_threadpool_loose();
    return check_report(argv[0]);
}
