/*
 * The SIMD kernels (quant_cpu.c and quant_avx2.c, quant_avx512.c,
 * quant_neon.c) against the reference functions of quant_ref.c, at every ISA
 * level this CPU runs: each level is forced in turn with quant_isa_select().
 *
 *   vec_dot     |simd - ref| <= 1e-5 * mag. The integer sums are the same, so
 *               the difference is float reassociation only, which is bounded
 *               by the magnitudes of the terms summed: mag adds |x_i * y_i|
 *               and, for the types whose blocks have an offset (a min), twice
 *               the block's largest |x| times |y_i|, since the scaled part
 *               and the offset part are summed separately and may cancel.
 *               A wrong scale, nibble or bit changes the result by a term,
 *               which is far above that bound.
 *   from_float  the same bytes, for the activation types (Q8_0, Q8_1, Q8_K,
 *               F16, BF16), on rounding ties, zeros, tiny, huge, inf, NaN and
 *               random bit patterns.
 *   to_float    the same floats, bit for bit.
 *
 * Inputs: rows quantized by the reference from random floats (what models
 * hold), raw random bytes with finite scales (every bit pattern of the
 * quants), scale extremes (largest half, subnormal halves, negative), and
 * activations at q = -128 (below anything the quantizer makes, but legal
 * bytes). Rows start 2 or 4 bytes past an aligned address, as rows of a
 * tensor do, so that the kernels are exercised on unaligned data.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/base.h"
#include "core/rng.h"
#include "quant/blocks.h"
#include "quant/quant.h"

#define MAX_N         8192
#define MAX_ROW_BYTES (MAX_N * 4 + 64)

static const uint32_t k_weight_types[] = {
    HY_TYPE_F32,  HY_TYPE_F16,  HY_TYPE_BF16, HY_TYPE_Q4_0, HY_TYPE_Q4_1,
    HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0, HY_TYPE_Q2_K, HY_TYPE_Q3_K,
    HY_TYPE_Q4_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K,
};

static const uint32_t k_act_types[] = {
    HY_TYPE_Q8_0, HY_TYPE_Q8_1, HY_TYPE_Q8_K, HY_TYPE_F16, HY_TYPE_BF16,
};

static const enum quant_isa k_levels[] = {
    QUANT_ISA_SCALAR,     QUANT_ISA_NEON,        QUANT_ISA_AVX2,
    QUANT_ISA_AVX512,     QUANT_ISA_AVX512_VNNI, QUANT_ISA_AVX512_AMX,
};

/* Levels this CPU and build run, filled by main. */
static enum quant_isa g_levels[8];
static int g_n_levels;

/* Largest |simd - ref| / mag seen per level, for the summary. */
static double g_worst[8];

/* Offsets of the half-precision fields of a block that must hold finite
 * values in a raw random block (-1: none). */
struct half_fields {
    uint32_t type;
    int off[2];
};

static const struct half_fields k_halves[] = {
    {HY_TYPE_Q4_0, {offsetof(struct block_q4_0, d), -1}},
    {HY_TYPE_Q4_1, {offsetof(struct block_q4_1, d), offsetof(struct block_q4_1, m)}},
    {HY_TYPE_Q5_0, {offsetof(struct block_q5_0, d), -1}},
    {HY_TYPE_Q5_1, {offsetof(struct block_q5_1, d), offsetof(struct block_q5_1, m)}},
    {HY_TYPE_Q8_0, {offsetof(struct block_q8_0, d), -1}},
    {HY_TYPE_Q8_1, {offsetof(struct block_q8_1, d), -1}},
    {HY_TYPE_Q2_K, {offsetof(struct block_q2_K, d), offsetof(struct block_q2_K, dmin)}},
    {HY_TYPE_Q3_K, {offsetof(struct block_q3_K, d), -1}},
    {HY_TYPE_Q4_K, {offsetof(struct block_q4_K, d), offsetof(struct block_q4_K, dmin)}},
    {HY_TYPE_Q5_K, {offsetof(struct block_q5_K, d), offsetof(struct block_q5_K, dmin)}},
    {HY_TYPE_Q6_K, {offsetof(struct block_q6_K, d), -1}},
};

/* Types whose blocks add an offset to the scaled quants. */
static bool has_offset(uint32_t type)
{
    return type == HY_TYPE_Q4_1 || type == HY_TYPE_Q5_1 || type == HY_TYPE_Q2_K ||
           type == HY_TYPE_Q4_K || type == HY_TYPE_Q5_K;
}

static const struct quant_traits *tr(uint32_t type)
{
    return quant_traits(type);
}

/* ---- inputs --------------------------------------------------------------- */

enum scale_kind {
    SCALE_NORMAL,  /* |h| in [2^-10, 1], either sign */
    SCALE_EXTREME, /* largest finite, smallest subnormal, smallest normal, ... */
};

static hy_half random_half(struct rng *r, enum scale_kind kind)
{
    if (kind == SCALE_EXTREME) {
        static const hy_half k[] = {0x7bff, 0xfbff, 0x0001, 0x8001, 0x0400, 0x03ff, 0x3c00, 0x0000};
        return k[rng_below(r, HY_ARRAY_LEN(k))];
    }
    const float v = (float)ldexp(1.0 + rng_uniform(r), -(int)rng_below(r, 11));
    return quant_f32_to_f16(rng_below(r, 2) ? -v : v);
}

static void fill_random_bytes(struct rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng_u64(r);
}

/* Overwrites the half fields of every block of a raw random row with finite values. */
static void fix_halves(struct rng *r, uint32_t type, uint8_t *row, int64_t n, enum scale_kind kind)
{
    const struct quant_traits *t = tr(type);
    const int64_t nb = n / t->block_size;
    for (size_t k = 0; k < HY_ARRAY_LEN(k_halves); k++) {
        if (k_halves[k].type != type) continue;
        for (int64_t b = 0; b < nb; b++) {
            for (int f = 0; f < 2; f++) {
                if (k_halves[k].off[f] < 0) continue;
                const hy_half h = random_half(r, kind);
                memcpy(row + b * t->block_bytes + k_halves[k].off[f], &h, sizeof(h));
            }
        }
    }
}

/* Makes the derived fields of raw activation blocks consistent, as the
 * quantizer would: Q8_1's s = d * sum(q), Q8_K's bsums (and a finite d). */
static void fix_activation(struct rng *r, uint32_t type, uint8_t *row, int64_t n)
{
    if (type == HY_TYPE_Q8_1) {
        struct block_q8_1 *b = (struct block_q8_1 *)row;
        for (int64_t i = 0; i < n / QK8_1; i++) {
            struct block_q8_1 blk;
            memcpy(&blk, &b[i], sizeof(blk));
            int sum = 0;
            for (int j = 0; j < QK8_1; j++) sum += blk.qs[j];
            blk.s = quant_f32_to_f16((float)sum * quant_f16_to_f32(blk.d));
            memcpy(&b[i], &blk, sizeof(blk));
        }
    } else if (type == HY_TYPE_Q8_K) {
        for (int64_t i = 0; i < n / QK_K; i++) {
            struct block_q8_K blk;
            memcpy(&blk, row + i * sizeof(blk), sizeof(blk));
            blk.d = (float)(rng_uniform(r) * 2 - 1) * 1e-2f;
            for (int j = 0; j < QK_K / 16; j++) {
                int sum = 0;
                for (int l = 0; l < 16; l++) sum += blk.qs[16 * j + l];
                blk.bsums[j] = (int16_t)sum;
            }
            memcpy(row + i * sizeof(blk), &blk, sizeof(blk));
        }
    }
}

/* Random floats as activations and weights look: normal, with a few outliers. */
static void fill_floats(struct rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        double v = rng_normal(r);
        if (rng_below(r, 64) == 0) v *= 20;
        x[i] = (float)v * scale;
    }
}

/* ---- vec_dot -------------------------------------------------------------- */

/* Bound on the magnitudes summed by vec_dot(x, y); see the file comment. */
static double dot_magnitude(uint32_t wtype, const void *x, const void *y, int64_t n, float *fx,
                            float *fy)
{
    const struct quant_traits *t = tr(wtype);
    tr(wtype)->to_float(x, fx, n);
    tr(t->vec_dot_type)->to_float(y, fy, n);
    double mag = 0;
    const int64_t bs = has_offset(wtype) ? t->block_size : 1;
    for (int64_t b = 0; b < n; b += bs) {
        double amax = 0, ysum = 0;
        for (int64_t i = b; i < b + bs; i++) {
            mag += fabs((double)fx[i] * fy[i]);
            amax = fmax(amax, fabs(fx[i]));
            ysum += fabs(fy[i]);
        }
        if (has_offset(wtype)) mag += 2 * amax * ysum;
    }
    return mag;
}

struct dot_case {
    const char *what;
    uint32_t wtype;
    int64_t n;
    const void *x;
    const void *y;
};

/* Reference once, then every level. */
static void check_dot(const struct dot_case *c, float *fx, float *fy)
{
    const struct quant_traits *t = tr(c->wtype);
    const float ref = t->vec_dot(c->n, c->x, c->y);
    const double mag = dot_magnitude(c->wtype, c->x, c->y, c->n, fx, fy);
    const double tol = 1e-5 * mag + 1e-30;
    for (int l = 0; l < g_n_levels; l++) {
        quant_isa_select(g_levels[l]);
        const float got = quant_kernels(c->wtype)->vec_dot(c->n, c->x, c->y);
        const double err = fabs((double)got - (double)ref);
        if (mag > 0 && err / mag > g_worst[l]) g_worst[l] = err / mag;
        if (!CHECK(err <= tol))
            fprintf(stderr, "  %s vec_dot, %s, n=%lld, %s: simd %.9g ref %.9g (mag %.3g)\n",
                    t->name, quant_isa_name(g_levels[l]), (long long)c->n, c->what, got, ref, mag);
    }
}

/* Rows copied into buffers of exactly their size, at every level: under
 * AddressSanitizer a kernel reading past the end of a row (a vector load
 * that runs over the last block) is caught here. */
static void check_tight(uint32_t wtype, int64_t n, const void *x, const void *y, float *f0)
{
    const struct quant_traits *t = tr(wtype);
    const size_t xb = quant_bytes(wtype, n), yb = quant_bytes(t->vec_dot_type, n);
    void *tx = malloc(xb), *ty = malloc(yb);
    float *out = malloc((size_t)n * sizeof(float));
    if (!CHECK(tx && ty && out)) return;
    memcpy(tx, x, xb);
    memcpy(ty, y, yb);
    const float ref = t->vec_dot(n, tx, ty);
    t->to_float(tx, f0, n);
    for (int l = 0; l < g_n_levels; l++) {
        quant_isa_select(g_levels[l]);
        const struct quant_kernels *k = quant_kernels(wtype);
        const float got = k->vec_dot(n, tx, ty);
        CHECK(fabsf(got - ref) <= 1e-3f * fabsf(ref) + 1e-3f || got == ref);
        k->to_float(tx, out, n);
        CHECK(memcmp(out, f0, (size_t)n * sizeof(float)) == 0);
    }
    free(tx);
    free(ty);
    free(out);
}

static void test_vec_dot_type(uint32_t wtype, struct rng *r, uint8_t *xbuf, uint8_t *ybuf,
                              float *f0, float *f1)
{
    const struct quant_traits *t = tr(wtype);
    const uint32_t vtype = t->vec_dot_type;
    const struct quant_traits *v = tr(vtype);
    const bool is_float = !t->is_quantized;
    /* weights at +2 bytes (+4 for F32 and Q8_K, whose fields are floats) */
    uint8_t *x = xbuf + (wtype == HY_TYPE_F32 ? 4 : 2);
    uint8_t *y = ybuf + (vtype == HY_TYPE_F32 || vtype == HY_TYPE_Q8_K ? 4 : 2);

    static const int64_t lens_k[] = {256, 512, 768, 4096, 8192};
    static const int64_t lens_32[] = {32, 64, 96, 160, 256, 4096, 8192};
    static const int64_t lens_f[] = {1, 7, 8, 33, 100, 257, 4096, 8192 - 3};
    const int64_t *lens = t->block_size == QK_K ? lens_k : is_float ? lens_f : lens_32;
    const size_t n_lens = t->block_size == QK_K ? HY_ARRAY_LEN(lens_k)
                          : is_float            ? HY_ARRAY_LEN(lens_f)
                                                : HY_ARRAY_LEN(lens_32);

    for (size_t li = 0; li < n_lens; li++) {
        const int64_t n = lens[li];
        const int reps = n <= 1024 ? 6 : 2;
        for (int rep = 0; rep < reps; rep++) {
            /* quantized from random floats by the reference, as in a model */
            fill_floats(r, f0, n, 1.0f);
            t->from_float(f0, x, n);
            fill_floats(r, f1, n, 0.5f);
            v->from_float(f1, y, n);
            check_dot(&(struct dot_case){"quantized", wtype, n, x, y}, f0, f1);
            if (is_float) continue;

            /* raw random bytes, finite scales; activations raw too */
            fill_random_bytes(r, x, quant_bytes(wtype, n));
            fix_halves(r, wtype, x, n, SCALE_NORMAL);
            check_dot(&(struct dot_case){"raw weights", wtype, n, x, y}, f0, f1);
            fill_random_bytes(r, y, quant_bytes(vtype, n));
            fix_halves(r, vtype, y, n, SCALE_NORMAL);
            fix_activation(r, vtype, y, n);
            check_dot(&(struct dot_case){"raw weights and activations", wtype, n, x, y}, f0, f1);

            /* scale extremes */
            fix_halves(r, wtype, x, n, SCALE_EXTREME);
            check_dot(&(struct dot_case){"extreme scales", wtype, n, x, y}, f0, f1);
        }

        if (li < 2) check_tight(wtype, n, x, y, f0);

        /* all zero */
        memset(x, 0, quant_bytes(wtype, n));
        memset(y, 0, quant_bytes(vtype, n));
        check_dot(&(struct dot_case){"all zero", wtype, n, x, y}, f0, f1);
        if (is_float) continue;

        /* activations all at -128, weights at their most negative quants
         * (raw bytes 0: q = 0 is -8 for Q4_0, -32 for Q6_K, ...) and at
         * their largest */
        for (int fill = 0; fill < 2; fill++) {
            memset(x, fill ? 0xff : 0x00, quant_bytes(wtype, n));
            fix_halves(r, wtype, x, n, SCALE_NORMAL);
            if (wtype == HY_TYPE_Q8_0 && !fill) {
                for (int64_t b = 0; b < n / QK8_0; b++)
                    memset(x + b * sizeof(struct block_q8_0) + offsetof(struct block_q8_0, qs),
                           0x80, QK8_0);
            }
            memset(y, 0x80, quant_bytes(vtype, n));
            fix_halves(r, vtype, y, n, SCALE_NORMAL);
            fix_activation(r, vtype, y, n);
            check_dot(&(struct dot_case){fill ? "q8 = -128, weights max" : "q8 = -128, weights min",
                                         wtype, n, x, y},
                      f0, f1);
        }
    }
}

/* ---- from_float ------------------------------------------------------------ */

enum float_kind {
    FK_NORMAL,
    FK_SMALL,    /* scaled by 1e-3 */
    FK_LARGE,    /* scaled by 1e3 */
    FK_TIES,     /* x * id lands on k + 0.5 (Q8_0/Q8_1 and Q8_K) */
    FK_ZERO_BLK, /* every other 32 values zero */
    FK_SIGN_TIE, /* largest magnitude twice, with both signs */
    FK_TINY,     /* ~1e-38: the reciprocal scale overflows */
    FK_DENORMAL, /* subnormal floats only */
    FK_HUGE,     /* ~1e38 */
    FK_INF,      /* one inf per 256 */
    FK_NAN,      /* one NaN per 256 */
    FK_BITS,     /* random bit patterns: anything */
    FK_COUNT
};

static const char *const k_float_kind_names[FK_COUNT] = {
    "normal", "small",    "large", "ties", "zero blocks", "sign tie",
    "tiny",   "denormal", "huge",  "inf",  "NaN",         "random bits",
};

static void fill_kind(struct rng *r, float *x, int64_t n, enum float_kind kind)
{
    switch (kind) {
    case FK_NORMAL:
        fill_floats(r, x, n, 1.0f);
        break;
    case FK_SMALL:
        fill_floats(r, x, n, 1e-3f);
        break;
    case FK_LARGE:
        fill_floats(r, x, n, 1e3f);
        break;
    case FK_TIES:
        /* per 32: one value +-127 (d = 1 for Q8_0/Q8_1), the others k + 0.5;
         * the first of each 256 is -127 (iscale = 1 for Q8_K) */
        for (int64_t i = 0; i < n; i++) {
            if (i % 32 == 0) {
                x[i] = (i % 256 == 0 || rng_below(r, 2)) ? -127.0f : 127.0f;
            } else {
                const float k = (float)((int)rng_below(r, 253) - 126);
                x[i] = k + (k < 0 ? -0.5f : 0.5f);
            }
        }
        break;
    case FK_ZERO_BLK:
        fill_floats(r, x, n, 1.0f);
        for (int64_t i = 0; i < n; i++)
            if ((i / 32) % 2 == 0) x[i] = 0.0f;
        break;
    case FK_SIGN_TIE:
        fill_floats(r, x, n, 1.0f);
        /* the largest magnitude with both signs, in one group of 8 lanes
         * (2, 6) and across groups (6, 9): Q8_K takes the sign of the first */
        for (int64_t b = 0; b < n; b += 32) {
            x[b + 2] = (b / 32) % 2 ? 1000.0f : -1000.0f;
            x[b + 6] = -x[b + 2];
            x[b + 9] = x[b + 2];
        }
        break;
    case FK_TINY:
        fill_floats(r, x, n, 1e-38f);
        break;
    case FK_DENORMAL:
        fill_floats(r, x, n, 1e-41f);
        break;
    case FK_HUGE:
        fill_floats(r, x, n, 1e37f);
        break;
    case FK_INF:
        fill_floats(r, x, n, 1.0f);
        for (int64_t b = 0; b < n; b += 256)
            x[b + rng_below(r, 256)] = rng_below(r, 2) ? INFINITY : -INFINITY;
        break;
    case FK_NAN:
        fill_floats(r, x, n, 1.0f);
        for (int64_t b = 0; b < n; b += 256) x[b + rng_below(r, 256)] = NAN;
        break;
    case FK_BITS:
        for (int64_t i = 0; i < n; i++) {
            const uint32_t u = (uint32_t)rng_u64(r);
            memcpy(&x[i], &u, sizeof(u));
        }
        break;
    case FK_COUNT:
        break;
    }
}

static void test_from_float(struct rng *r, float *f0, uint8_t *ref, uint8_t *got)
{
    static const int64_t lens[] = {256, 512, 4096};
    for (size_t ti = 0; ti < HY_ARRAY_LEN(k_act_types); ti++) {
        const uint32_t type = k_act_types[ti];
        const struct quant_traits *t = tr(type);
        uint8_t *dr = ref + 4, *dg = got + 4;
        for (size_t li = 0; li < HY_ARRAY_LEN(lens); li++) {
            const int64_t n = lens[li];
            const size_t bytes = quant_bytes(type, n);
            for (int kind = 0; kind < FK_COUNT; kind++) {
                for (int rep = 0; rep < 3; rep++) {
                    fill_kind(r, f0, n, (enum float_kind)kind);
                    memset(dr, 0xa5, bytes);
                    t->from_float(f0, dr, n);
                    for (int l = 0; l < g_n_levels; l++) {
                        quant_isa_select(g_levels[l]);
                        memset(dg, 0xa5, bytes);
                        quant_kernels(type)->from_float(f0, dg, n);
                        if (!CHECK(memcmp(dr, dg, bytes) == 0)) {
                            size_t at = 0;
                            while (dr[at] == dg[at]) at++;
                            fprintf(stderr,
                                    "  %s from_float, %s, n=%lld, %s: first difference at byte %zu "
                                    "(ref 0x%02x, simd 0x%02x)\n",
                                    t->name, quant_isa_name(g_levels[l]), (long long)n,
                                    k_float_kind_names[kind], at, dr[at], dg[at]);
                        }
                    }
                }
            }
        }
    }
}

/* ---- to_float -------------------------------------------------------------- */

static void test_to_float(struct rng *r, float *f0, uint8_t *row, float *ref, float *got)
{
    static const int64_t lens[] = {256, 768, 4096};
    for (uint32_t type = 0; type < HY_TYPE_COUNT; type++) {
        const struct quant_traits *t = tr(type);
        if (!t || !t->to_float || !t->from_float) continue;
        uint8_t *x = row + (type == HY_TYPE_F32 || type == HY_TYPE_Q8_K ? 4 : 2);
        for (size_t li = 0; li < HY_ARRAY_LEN(lens); li++) {
            const int64_t n = lens[li];
            const size_t bytes = quant_bytes(type, n);
            for (int mode = 0; mode < 3; mode++) {
                if (mode == 0) {
                    fill_floats(r, f0, n, 1.0f);
                    t->from_float(f0, x, n);
                } else if (t->is_quantized) {
                    fill_random_bytes(r, x, bytes);
                    fix_halves(r, type, x, n, mode == 1 ? SCALE_NORMAL : SCALE_EXTREME);
                    if (type == HY_TYPE_Q8_K) fix_activation(r, type, x, n);
                } else if (type != HY_TYPE_F32) {
                    /* every half / bfloat16 bit pattern: inf, NaN, subnormals */
                    fill_random_bytes(r, x, bytes);
                } else {
                    continue; /* F32 raw bits could be signalling NaNs; memcpy anyway */
                }
                t->to_float(x, ref, n);
                for (int l = 0; l < g_n_levels; l++) {
                    quant_isa_select(g_levels[l]);
                    memset(got, 0xa5, (size_t)n * sizeof(float));
                    quant_kernels(type)->to_float(x, got, n);
                    if (!CHECK(memcmp(ref, got, (size_t)n * sizeof(float)) == 0)) {
                        int64_t at = 0;
                        while (memcmp(&ref[at], &got[at], sizeof(float)) == 0) at++;
                        fprintf(stderr,
                                "  %s to_float, %s, n=%lld, mode %d: first difference at %lld "
                                "(ref %.9g, simd %.9g)\n",
                                t->name, quant_isa_name(g_levels[l]), (long long)n, mode,
                                (long long)at, ref[at], got[at]);
                    }
                }
            }
        }
    }
}

/* ---- dispatch ----------------------------------------------------------------- */

static void test_dispatch(void)
{
    const enum quant_isa best = quant_isa_detect();
    CHECK(quant_isa_name(best) != NULL);
    CHECK_EQ_INT(quant_isa_select(QUANT_ISA_SCALAR), QUANT_ISA_SCALAR);
    CHECK_EQ_INT(quant_isa_current(), QUANT_ISA_SCALAR);
    /* the scalar level is the reference itself */
    for (uint32_t type = 0; type < HY_TYPE_COUNT; type++) {
        const struct quant_traits *t = tr(type);
        if (!t) {
            CHECK(quant_kernels(type) == NULL);
            continue;
        }
        const struct quant_kernels *k = quant_kernels(type);
        if (!CHECK(k != NULL)) continue;
        CHECK(k->vec_dot == t->vec_dot && k->to_float == t->to_float &&
              k->from_float == t->from_float);
    }
    CHECK(quant_kernels(HY_TYPE_COUNT) == NULL);
    /* asking for more than the CPU has gives the best there is, never more */
    const enum quant_isa top = quant_isa_select(QUANT_ISA_AVX512_AMX);
    CHECK(top == best || (best == QUANT_ISA_NEON && top == QUANT_ISA_NEON));
    for (size_t l = 0; l < HY_ARRAY_LEN(k_levels); l++) {
        const enum quant_isa got = quant_isa_select(k_levels[l]);
        CHECK(got <= k_levels[l]);
        CHECK_EQ_INT(quant_isa_current(), got);
        if (got == k_levels[l]) g_levels[g_n_levels++] = got;
        /* every supported type keeps all three functions at every level */
        for (size_t ti = 0; ti < HY_ARRAY_LEN(k_weight_types); ti++) {
            const struct quant_kernels *k = quant_kernels(k_weight_types[ti]);
            CHECK(k && k->vec_dot && k->to_float && k->from_float);
        }
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    test_dispatch();
    printf("levels tested:");
    for (int l = 0; l < g_n_levels; l++) printf(" %s", quant_isa_name(g_levels[l]));
    printf(" (best here: %s)\n", quant_isa_name(quant_isa_detect()));

    struct rng r;
    rng_init(&r, 20240611);
    uint8_t *xbuf = malloc(MAX_ROW_BYTES), *ybuf = malloc(MAX_ROW_BYTES);
    float *f0 = malloc(MAX_N * sizeof(float)), *f1 = malloc(MAX_N * sizeof(float));
    float *f2 = malloc(MAX_N * sizeof(float));
    if (!CHECK(xbuf && ybuf && f0 && f1 && f2)) return check_report(argv[0]);

    for (size_t ti = 0; ti < HY_ARRAY_LEN(k_weight_types); ti++)
        test_vec_dot_type(k_weight_types[ti], &r, xbuf, ybuf, f0, f1);
    for (int l = 0; l < g_n_levels; l++)
        printf("vec_dot %-12s largest |simd - ref| / magnitude: %.3g\n",
               quant_isa_name(g_levels[l]), g_worst[l]);
    test_from_float(&r, f0, xbuf, ybuf);
    test_to_float(&r, f0, xbuf, f1, f2);

    quant_isa_select(quant_isa_detect());
    free(xbuf);
    free(ybuf);
    free(f0);
    free(f1);
    free(f2);
    return check_report(argv[0]);
}
