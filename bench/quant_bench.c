/*
 * quant_bench: single-threaded matrix-vector product speed of each weight
 * type's vec_dot, at every ISA level this CPU runs, next to the memory read
 * bandwidth measured in the same run. Prints a markdown table.
 *
 * One product: quantize a random activation row to the type's vec_dot_type
 * (the selected from_float), then one vec_dot per matrix row, rows walked in
 * order as the CPU backend does. GB/s counts the weight bytes only. The
 * matrix is about --mib MiB of weights (default 64) in rows of --cols
 * (default 4096) values; the weights are random bytes with finite scales
 * (the kernels' speed does not depend on the values). Each cell is the best
 * of the passes run in about --seconds (default 0.5; at least 2 passes), and
 * of --rounds (default 3) rounds over the whole table: on a shared machine a
 * burst of load from a neighbour then spoils one round rather than one cell.
 * The table is printed at the end.
 *
 * Memory bandwidth: the best of 5 sums of a 256 MiB float array (larger
 * than the caches of the machines this runs on), read the way the kernels
 * read, with a software prefetch ahead. A matrix smaller than the last-level
 * cache may partly stay there between passes and then read faster than
 * that; use --mib 256 to rule it out.
 *
 *   quant_bench [--mib N] [--cols N] [--seconds S] [--rounds N] [--types q4_k,q8_0,...]
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "core/rng.h"
#include "core/timing.h"
#include "quant/blocks.h"
#include "quant/quant.h"

static const uint32_t k_types[] = {
    HY_TYPE_Q4_0, HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0,
    HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K,
    HY_TYPE_F16,  HY_TYPE_BF16, HY_TYPE_F32,
};

static const enum quant_isa k_levels[] = {
    QUANT_ISA_SCALAR,     QUANT_ISA_NEON,        QUANT_ISA_AVX2,
    QUANT_ISA_AVX512,     QUANT_ISA_AVX512_VNNI, QUANT_ISA_AVX512_AMX,
};

/* Sum of a float array with independent vector accumulators, so that the
 * loop is bound by memory, not by the latency of one add chain, and with a
 * software prefetch 4 KiB ahead as the kernels do (quant_cpu.h): one core
 * streaming from DRAM is bound by the misses it keeps in flight, and the
 * ceiling the kernels are compared with should be the best one core gets. */
static float bench_sum(const float *a, size_t n)
{
    size_t i = 0;
    const size_t n16 = n - n % 16;
    float s = 0.0f;
#if defined(__SSE2__)
    __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; i < n16; i += 16) {
        __builtin_prefetch((const char *)((uintptr_t)(a + i) + 4096));
        s0 = _mm_add_ps(s0, _mm_load_ps(a + i));
        s1 = _mm_add_ps(s1, _mm_load_ps(a + i + 4));
        s2 = _mm_add_ps(s2, _mm_load_ps(a + i + 8));
        s3 = _mm_add_ps(s3, _mm_load_ps(a + i + 12));
    }
    float lanes[4];
    _mm_storeu_ps(lanes, _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3)));
    s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#elif defined(__ARM_NEON)
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    for (; i < n16; i += 16) {
        __builtin_prefetch((const char *)((uintptr_t)(a + i) + 4096));
        s0 = vaddq_f32(s0, vld1q_f32(a + i));
        s1 = vaddq_f32(s1, vld1q_f32(a + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(a + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(a + i + 12));
    }
    s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
#else
    (void)n16;
#endif
    for (; i < n; i++) s += a[i];
    return s;
}

static double bench_mem_gbs(void)
{
    const size_t n = (size_t)256 << 20 >> 2;
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) return 0;
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        const int64_t t0 = timing_now_us();
        sink += bench_sum(a, n);
        const int64_t us = timing_now_us() - t0;
        const double gbs = (double)(n * sizeof(float)) / ((double)us * 1e3);
        if (gbs > best) best = gbs;
    }
    (void)sink;
    free(a);
    return best;
}

/* Finite half scales in every block of a random matrix, so that no NaN or
 * inf slows a float unit down (the kernels read them the same way). */
static void bench_fix_scales(uint32_t type, uint8_t *w, uint64_t bytes)
{
    static const struct {
        uint32_t type;
        size_t off[2];
        int n;
    } fields[] = {
        {HY_TYPE_Q4_0, {offsetof(struct block_q4_0, d)}, 1},
        {HY_TYPE_Q4_1, {offsetof(struct block_q4_1, d), offsetof(struct block_q4_1, m)}, 2},
        {HY_TYPE_Q5_0, {offsetof(struct block_q5_0, d)}, 1},
        {HY_TYPE_Q5_1, {offsetof(struct block_q5_1, d), offsetof(struct block_q5_1, m)}, 2},
        {HY_TYPE_Q8_0, {offsetof(struct block_q8_0, d)}, 1},
        {HY_TYPE_Q2_K, {offsetof(struct block_q2_K, d), offsetof(struct block_q2_K, dmin)}, 2},
        {HY_TYPE_Q3_K, {offsetof(struct block_q3_K, d)}, 1},
        {HY_TYPE_Q4_K, {offsetof(struct block_q4_K, d), offsetof(struct block_q4_K, dmin)}, 2},
        {HY_TYPE_Q5_K, {offsetof(struct block_q5_K, d), offsetof(struct block_q5_K, dmin)}, 2},
        {HY_TYPE_Q6_K, {offsetof(struct block_q6_K, d)}, 1},
    };
    const struct quant_traits *t = quant_traits(type);
    const hy_half h = quant_f32_to_f16(0.01f);
    if (!t->is_quantized) {
        /* small finite values of the float types */
        for (uint64_t i = 0; i + t->block_bytes <= bytes; i += t->block_bytes) {
            if (type == HY_TYPE_F32) {
                const float f = 0.01f;
                memcpy(w + i, &f, sizeof(f));
            } else {
                const uint16_t v = type == HY_TYPE_F16 ? h : quant_f32_to_bf16(0.01f);
                memcpy(w + i, &v, sizeof(v));
            }
        }
        return;
    }
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
        if (fields[k].type != type) continue;
        for (uint64_t b = 0; b + t->block_bytes <= bytes; b += t->block_bytes)
            for (int f = 0; f < fields[k].n; f++) memcpy(w + b + fields[k].off[f], &h, sizeof(h));
    }
}

struct bench_opts {
    double mib;
    int64_t cols;
    double seconds;
    int rounds;
    bool want[HY_TYPE_COUNT];
};

static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
    o->mib = 64;
    o->cols = 4096;
    o->seconds = 0.5;
    o->rounds = 3;
    bool any = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mib") && v) {
            o->mib = atof(v);
            i++;
        } else if (!strcmp(a, "--cols") && v) {
            o->cols = atoll(v);
            i++;
        } else if (!strcmp(a, "--seconds") && v) {
            o->seconds = atof(v);
            i++;
        } else if (!strcmp(a, "--rounds") && v) {
            o->rounds = atoi(v);
            i++;
        } else if (!strcmp(a, "--types") && v) {
            char buf[256];
            snprintf(buf, sizeof(buf), "%s", v);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                const int t = quant_type_from_name(tok);
                if (t < 0) {
                    fprintf(stderr, "quant_bench: unknown type '%s'\n", tok);
                    return 2;
                }
                o->want[t] = any = true;
            }
            i++;
        } else {
            fprintf(stderr,
                    "usage: quant_bench [--mib N (64)] [--cols N (4096)] [--seconds S (0.5)] "
                    "[--rounds N (3)] [--types q4_k,q8_0,...]\n");
            return 2;
        }
    }
    if (o->mib <= 0 || o->cols <= 0 || o->cols % QK_K != 0 || o->seconds <= 0 || o->rounds < 1) {
        fprintf(stderr, "quant_bench: --mib, --seconds and --rounds must be > 0, --cols a "
                        "multiple of 256\n");
        return 2;
    }
    if (!any)
        for (size_t k = 0; k < sizeof(k_types) / sizeof(k_types[0]); k++)
            o->want[k_types[k]] = true;
    return 0;
}

/* One cell: the best GB/s of the passes run in about o->seconds (at least
 * 2) of type's vec_dot over a fresh random matrix, at the selected level. */
static double bench_cell(const struct bench_opts *o, uint32_t type, const uint8_t *w, int64_t rows,
                         const float *act, void *xq, float *out)
{
    const struct quant_traits *t = quant_traits(type);
    const uint64_t row_bytes = quant_bytes(type, (uint64_t)o->cols);
    const struct quant_kernels *kk = quant_kernels(type);
    const struct quant_kernels *ka = quant_kernels(t->vec_dot_type);
    double best = 0;
    int64_t spent = 0;
    for (int pass = 0; pass < 2 || spent < (int64_t)(o->seconds * 1e6); pass++) {
        const int64_t t0 = timing_now_us();
        const void *x = act;
        if (t->vec_dot_type != HY_TYPE_F32) {
            ka->from_float(act, xq, o->cols);
            x = xq;
        }
        for (int64_t row = 0; row < rows; row++)
            out[row] = kk->vec_dot(o->cols, w + (uint64_t)row * row_bytes, x);
        const int64_t us = timing_now_us() - t0;
        spent += us;
        const double gbs = (double)(row_bytes * (uint64_t)rows) / ((double)us * 1e3);
        if (gbs > best) best = gbs;
    }
    return best;
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    memset(&o, 0, sizeof(o));
    const int rc = bench_parse(argc, argv, &o);
    if (rc) return rc;

    enum quant_isa levels[8];
    int n_levels = 0;
    for (size_t l = 0; l < sizeof(k_levels) / sizeof(k_levels[0]); l++)
        if (quant_isa_select(k_levels[l]) == k_levels[l]) levels[n_levels++] = k_levels[l];

    struct rng r;
    rng_init(&r, 7);
    float *act = malloc((size_t)o.cols * sizeof(float));
    if (!act) return 1;
    for (int64_t i = 0; i < o.cols; i++) act[i] = (float)rng_normal(&r);

    /* rounds: the whole table again, each cell keeping its best */
    static double cells[HY_TYPE_COUNT][8];
    double mem = 0;
    for (int round = 0; round < o.rounds; round++) {
        const double m = bench_mem_gbs();
        if (m > mem) mem = m;
        for (size_t k = 0; k < sizeof(k_types) / sizeof(k_types[0]); k++) {
            const uint32_t type = k_types[k];
            if (!o.want[type]) continue;
            const struct quant_traits *t = quant_traits(type);
            const uint64_t row_bytes = quant_bytes(type, (uint64_t)o.cols);
            const int64_t rows = (int64_t)(o.mib * 1048576.0 / (double)row_bytes + 0.5);
            const uint64_t bytes = row_bytes * (uint64_t)rows;
            uint8_t *w = aligned_alloc(64, (bytes + 63) / 64 * 64);
            void *xq = malloc(quant_bytes(t->vec_dot_type, (uint64_t)o.cols) + 64);
            float *out = malloc((size_t)rows * sizeof(float));
            if (!w || !xq || !out) {
                fprintf(stderr, "quant_bench: out of memory for %s\n", t->name);
                return 1;
            }
            for (uint64_t i = 0; i < bytes; i += 8) {
                const uint64_t v = rng_u64(&r);
                memcpy(w + i, &v, bytes - i < 8 ? bytes - i : 8);
            }
            bench_fix_scales(type, w, bytes);
            for (int l = 0; l < n_levels; l++) {
                quant_isa_select(levels[l]);
                const double g = bench_cell(&o, type, w, rows, act, xq, out);
                if (g > cells[type][l]) cells[type][l] = g;
            }
            free(w);
            free(xq);
            free(out);
        }
    }

    printf("Single-threaded matrix-vector product, weights only counted, %lld columns, ~%.0f MiB "
           "matrix, best of %d rounds; best ISA here: %s.\n\n",
           (long long)o.cols, o.mib, o.rounds, quant_isa_name(quant_isa_detect()));
    printf("Memory read bandwidth (sum of a 256 MiB float array, 1 thread): **%.1f GB/s**\n\n",
           mem);
    printf("| type | bits/weight |");
    for (int l = 0; l < n_levels; l++) printf(" %s GB/s |", quant_isa_name(levels[l]));
    printf(" best / memory BW |\n| --- | ---: |");
    for (int l = 0; l < n_levels; l++) printf(" ---: |");
    printf(" ---: |\n");
    for (size_t k = 0; k < sizeof(k_types) / sizeof(k_types[0]); k++) {
        const uint32_t type = k_types[k];
        if (!o.want[type]) continue;
        const struct quant_traits *t = quant_traits(type);
        printf("| %s | %.2f |", t->name, 8.0 * t->block_bytes / t->block_size);
        double best = 0;
        for (int l = 0; l < n_levels; l++) {
            printf(" %.1f |", cells[type][l]);
            if (cells[type][l] > best) best = cells[type][l];
        }
        printf(" %.0f%% |\n", mem > 0 ? 100.0 * best / mem : 0.0);
    }
    free(act);
    quant_isa_select(quant_isa_detect());
    return 0;
}
