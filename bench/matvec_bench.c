/*
 * matvec_bench: the CPU backend's matrix-vector product (decode: one token)
 * per weight type at 1..N threads, in GB/s of weight bytes, next to the
 * memory read bandwidth with the same thread counts measured in the same run.
 * Prints a markdown table. Unlike quant_bench (one kernel, one thread, every
 * ISA), this is the whole path the forward pass takes: activation conversion
 * to the vec_dot type, rows split over the thread pool, the best ISA.
 *
 *   matvec_bench [--mib N (256)] [--cols N (4096)] [--threads 1,2] [--reps N (5)]
 *                [--types q4_k,q8_0,...]
 *
 * The matrix (default 256 MiB) is larger than the last-level cache, so a
 * product streams from DRAM, as decode of a model larger than the cache does.
 * Each cell is the best of --reps products.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_bench.h"

#include "backend/cpu/cpu_backend.h"
#include "core/rng.h"
#include "core/timing.h"
#include "hw/hw.h"
#include "quant/quant.h"

#define MAX_THREADS 64

static const uint32_t all_types[] = {HY_TYPE_Q4_0, HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1,
                                     HY_TYPE_Q8_0, HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K,
                                     HY_TYPE_Q5_K, HY_TYPE_Q6_K, HY_TYPE_F16,  HY_TYPE_BF16,
                                     HY_TYPE_F32};

int main(int argc, char **argv)
{
    double mib = 256;
    int64_t cols = 4096;
    int reps = 5;
    int threads[8] = {1, 2};
    int n_threads = 2;
    bool want[HY_TYPE_COUNT] = {false}, any = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--mib") && v) {
            mib = atof(v);
            i++;
        } else if (!strcmp(argv[i], "--cols") && v) {
            cols = atoll(v);
            i++;
        } else if (!strcmp(argv[i], "--reps") && v) {
            reps = atoi(v);
            i++;
        } else if (!strcmp(argv[i], "--threads") && v) {
            n_threads = parse_list(v, threads, 8);
            i++;
        } else if (!strcmp(argv[i], "--types") && v) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                int ty = quant_type_from_name(t);
                if (ty < 0 || !quant_is_supported((uint32_t)ty)) {
                    fprintf(stderr, "matvec_bench: unknown or unsupported type '%s'\n", t);
                    return 2;
                }
                want[ty] = any = true;
            }
            i++;
        } else {
            fprintf(stderr, "usage: matvec_bench [--mib N (256)] [--cols N (4096)] [--threads 1,2] "
                            "[--reps N (5)] "
                            "[--types q4_k,q8_0,...]\n");
            return 2;
        }
    }
    if (n_threads < 1) {
        fprintf(stderr, "matvec_bench: --threads: a list of integers\n");
        return 2;
    }
    for (int t = 0; t < n_threads; t++)
        if (threads[t] < 1 || threads[t] > MAX_THREADS) {
            fprintf(stderr, "matvec_bench: thread counts must be in [1, %d]\n", MAX_THREADS);
            return 2;
        }
    if (mib <= 0 || cols <= 0 || cols % 256 != 0 || reps < 1) {
        fprintf(stderr, "matvec_bench: --mib and --reps must be > 0, --cols a multiple of 256\n");
        return 2;
    }
    if (!any)
        for (size_t k = 0; k < sizeof(all_types) / sizeof(all_types[0]); k++)
            want[all_types[k]] = true;

    double mem_bw[8];
    if (!mem_read_rates(threads, n_threads, mem_bw)) return 1;

    struct backend *be[8];
    for (int t = 0; t < n_threads; t++) {
        struct cpu_backend_opts bo = {.n_threads = threads[t], .portable = false};
        struct backend_limits lim = {
            .max_batch = 1, .max_ctx = 1, .max_head_dim = 128, .max_cols = cols};
        if (cpu_backend_init(&bo, &be[t]) || backend_reserve(be[t], &lim)) {
            fprintf(stderr, "matvec_bench: %s\n", hy_last_error());
            return 1;
        }
    }
    printf("matrix-vector product, %lld columns, %.0f MiB of weights, kernels %s\n\n",
           (long long)cols, mib, cpu_backend_kernels(be[0]));
    printf("| type |");
    for (int t = 0; t < n_threads; t++) printf(" %d thr GB/s | of mem BW |", threads[t]);
    printf("\n| --- |");
    for (int t = 0; t < n_threads; t++) printf(" ---: | ---: |");
    printf("\n| memory read |");
    for (int t = 0; t < n_threads; t++) printf(" %.1f | 100%% |", mem_bw[t]);
    printf("\n");

    struct rng r;
    rng_init(&r, 11);
    float *x = malloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++) x[i] = (float)rng_normal(&r);
    for (size_t k = 0; k < sizeof(all_types) / sizeof(all_types[0]); k++) {
        const uint32_t type = all_types[k];
        if (!want[type]) continue;
        const uint64_t row_bytes = quant_bytes(type, (uint64_t)cols);
        const int64_t rows = (int64_t)(mib * 1048576.0 / (double)row_bytes);
        /* real quantized data: one random row quantized, repeated */
        float *src = malloc((size_t)cols * sizeof(float));
        for (int64_t i = 0; i < cols; i++) src[i] = (float)rng_normal(&r) * 0.02f;
        uint8_t *w = malloc(row_bytes * (uint64_t)rows);
        float *y = malloc((size_t)rows * sizeof(float));
        if (!w || !y) {
            fprintf(stderr, "matvec_bench: out of memory for %s\n", quant_type_name(type));
            return 1;
        }
        quant_traits(type)->from_float(src, w, cols);
        for (int64_t row = 1; row < rows; row++)
            memcpy(w + (uint64_t)row * row_bytes, w, row_bytes);
        struct backend_weight bw = {
            w, type, cols, rows, (size_t)row_bytes, quant_type_name(type), BACKEND_MEM_HOST,
            0, false};
        printf("| %s |", quant_type_name(type));
        for (int t = 0; t < n_threads; t++) {
            double best = 0;
            for (int rep = 0; rep < reps; rep++) {
                const int64_t t0 = timing_now_us();
                backend_matmul(be[t], &bw, x, 1, y);
                const double gbs =
                    (double)(row_bytes * (uint64_t)rows) / ((double)(timing_now_us() - t0) * 1e3);
                if (gbs > best) best = gbs;
            }
            printf(" %.1f | %.0f%% |", best, 100.0 * best / mem_bw[t]);
        }
        printf("\n");
        fflush(stdout);
        free(src);
        free(w);
        free(y);
    }
    free(x);
    for (int t = 0; t < n_threads; t++) backend_free(be[t]);
    return 0;
}
