/*
 * moe_token_bench: one token's routed experts on the CPU backend (its
 * moe_token op: the gate and up products of k experts, SwiGLU, their down
 * products and the weighted sum, as one pass over the thread pool). That pass
 * is each MoE decode step of the CPU engine, and the CPU's share of an MoE
 * layer whose experts lie in RAM when a GPU computes the rest (the CUDA
 * backend's moe_token), where its time sits between the GPU's kernels.
 * Prints a markdown table: per thread count and k, microseconds per pass
 * (median, best, and the ninth decile: where the median is far above the
 * best, passes wait for threads that lost their core to other work), the
 * time until the sum is complete (cpu_backend_pass_wait: what the CUDA
 * backend waits for; the pass's join, which may wait longer for a thread
 * that lost its core, comes after) and the experts' bytes over the median
 * pass, next to a plain read of memory with the same threads measured in
 * the same run; then the medians of two marks inside a pass
 * (cpu_backend_pass_times), from its call: its first chunk taken (the
 * workers' start) and its gate and up products done (its downs' phase comes
 * after, overlapping the last of them).
 *
 *   moe_token_bench [--embd N (2048)] [--ff N (1408)] [--k 1,2,4,8]
 *                   [--threads 1,2] [--types q4_k,q5_0] [--mib N (512)]
 *                   [--passes N (200)] [--warm 0|1|2 (0)] [--gap US (0)]
 *                   [--distinct N (8)] [--chunk BYTES (0)]
 *
 * --types: the gate and up type, then the down type (the default is what
 * llama.cpp's Q4_K_M gives a qwen1.5-moe-a2.7b expert: its 1408 columns are
 * no multiple of 256). The defaults are that model's expert shape; a
 * qwen3-30b-a3b expert is --embd 2048 --ff 768 --types q4_k,q4_k. Each pass
 * takes the next k of enough random experts to fill --mib of memory, so
 * that the weights come from DRAM, as decode reads them (past the last-level
 * cache: some servers have hundreds of MiB of it). --warm 1 reads each pass's
 * experts on the calling thread just before it (untimed): a pass over
 * weights that one core has just pulled into its caches; --warm 2 reads
 * them with the pool's threads (cpu_backend_warm) after the gap, just
 * before the pass. --gap US: the
 * calling thread spins US microseconds between a pass's join and the next
 * pass (untimed), as the CUDA backend's waits for the GPU's part of a layer
 * do, so that the workers go to sleep between passes as they do in decode
 * (their spin is 200 us). --distinct N: experts quantized from random values
 * (the rest are copies of them; fewer start faster at large shapes).
 * --chunk BYTES: the pass's chunks' least bytes (cpu_backend_opts'
 * moe_chunk_bytes; 0 the backend's default, 1 a product's own chunking).
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

#define MAX_LIST 8

static int usage(void)
{
    fprintf(stderr,
            "usage: moe_token_bench [--embd N (2048)] [--ff N (1408)] [--k LIST (1,2,4,8)]\n"
            "                       [--threads LIST (1,2)] [--types GATE_UP,DOWN (q4_k,q5_0)]\n"
            "                       [--mib N (512)] [--passes N (200)] [--warm 0|1|2 (0)]\n"
            "                       [--gap US (0)] [--distinct N (8)] [--chunk BYTES (0)]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int64_t E = 2048, F = 1408;
    int ks[MAX_LIST] = {1, 2, 4, 8}, n_k = 4;
    int threads[MAX_LIST] = {1, 2}, n_threads = 2;
    uint32_t t_gu = HY_TYPE_Q4_K, t_down = HY_TYPE_Q5_0;
    double mib = 512;
    int passes = 200;
    int warm = 0;
    int gap_us = 0, n_distinct = 8;
    int64_t chunk_bytes = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(argv[i], "--embd")) {
            E = atoll(v);
        } else if (!strcmp(argv[i], "--ff")) {
            F = atoll(v);
        } else if (!strcmp(argv[i], "--k")) {
            n_k = parse_list(v, ks, MAX_LIST);
        } else if (!strcmp(argv[i], "--threads")) {
            n_threads = parse_list(v, threads, MAX_LIST);
        } else if (!strcmp(argv[i], "--mib")) {
            mib = atof(v);
        } else if (!strcmp(argv[i], "--chunk")) {
            chunk_bytes = atoll(v);
        } else if (!strcmp(argv[i], "--warm")) {
            if (strcmp(v, "0") && strcmp(v, "1") && strcmp(v, "2")) return usage();
            warm = atoi(v);
        } else if (!strcmp(argv[i], "--gap")) {
            gap_us = atoi(v);
        } else if (!strcmp(argv[i], "--distinct")) {
            n_distinct = atoi(v);
        } else if (!strcmp(argv[i], "--passes")) {
            passes = atoi(v);
        } else if (!strcmp(argv[i], "--types")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            char *comma = strchr(buf, ',');
            if (!comma) return usage();
            *comma = '\0';
            const int a = quant_type_from_name(buf), b = quant_type_from_name(comma + 1);
            if (a < 0 || b < 0 || !quant_is_supported((uint32_t)a) ||
                !quant_is_supported((uint32_t)b)) {
                fprintf(stderr, "moe_token_bench: unknown or unsupported type in '%s'\n", v);
                return 2;
            }
            t_gu = (uint32_t)a;
            t_down = (uint32_t)b;
        } else {
            return usage();
        }
        i++;
    }
    const uint32_t bs_gu = quant_traits(t_gu)->block_size,
                   bs_down = quant_traits(t_down)->block_size;
    if (E <= 0 || F <= 0 || E % bs_gu || E % bs_down || F % bs_down || mib <= 0 || passes < 1 ||
        n_k < 1 || n_threads < 1 || gap_us < 0 || gap_us > 1000000 || n_distinct < 1 ||
        n_distinct > 64) {
        fprintf(stderr, "moe_token_bench: --embd a multiple of both types' blocks, --ff of the "
                        "down type's; --mib and --passes > 0; --gap 0..1000000; --distinct "
                        "1..64; --k and --threads lists of integers\n");
        return 2;
    }
    int kmax = 0;
    for (int i = 0; i < n_k; i++) {
        if (ks[i] < 1 || ks[i] > BACKEND_MOE_MAX_K) {
            fprintf(stderr, "moe_token_bench: k must be in [1, %d]\n", BACKEND_MOE_MAX_K);
            return 2;
        }
        kmax = ks[i] > kmax ? ks[i] : kmax;
    }
    for (int t = 0; t < n_threads; t++)
        if (threads[t] < 1 || threads[t] > 256) {
            fprintf(stderr, "moe_token_bench: thread counts must be in [1, 256]\n");
            return 2;
        }

    const size_t gu_rb = (size_t)quant_bytes(t_gu, (uint64_t)E);
    const size_t d_rb = (size_t)quant_bytes(t_down, (uint64_t)F);
    const double expert_bytes = (double)(2 * gu_rb * (size_t)F + d_rb * (size_t)E);
    int n_exp = (int)(mib * 1048576.0 / expert_bytes);
    if (n_exp < kmax) n_exp = kmax;

    double mem_bw[MAX_LIST];
    if (!mem_read_rates(threads, n_threads, mem_bw)) return 1;

    struct rng r;
    rng_init(&r, 5);
    float *src = malloc(sizeof(float) * (size_t)(E > F ? E : F));
    struct backend_weight *w = calloc((size_t)(3 * n_exp), sizeof *w);
    if (!src || !w) return 1;
    /* the first n_distinct experts quantized from random values, the rest
     * copies of them at their own addresses (quantizing hundreds of MiB
     * takes minutes; a pass's time does not depend on the values) */
    for (int e = 0; e < n_exp; e++) {
        uint8_t *g, *u, *d;
        if (e < n_distinct) {
            g = random_matrix(&r, t_gu, F, E, src);
            u = random_matrix(&r, t_gu, F, E, src);
            d = random_matrix(&r, t_down, E, F, src);
        } else {
            const struct backend_weight *c = &w[3 * (e % n_distinct)];
            g = copy_of(c[0].data, gu_rb * (size_t)F);
            u = copy_of(c[1].data, gu_rb * (size_t)F);
            d = copy_of(c[2].data, d_rb * (size_t)E);
        }
        if (!g || !u || !d) {
            fprintf(stderr, "moe_token_bench: out of memory for %d experts\n", n_exp);
            return 1;
        }
        w[3 * e] = (struct backend_weight){g, t_gu, E, F, gu_rb, "gate", BACKEND_MEM_HOST, 0, true};
        w[3 * e + 1] =
            (struct backend_weight){u, t_gu, E, F, gu_rb, "up", BACKEND_MEM_HOST, 0, true};
        w[3 * e + 2] =
            (struct backend_weight){d, t_down, F, E, d_rb, "down", BACKEND_MEM_HOST, 0, true};
    }
    float *x = malloc(sizeof(float) * (size_t)E), *y = calloc((size_t)E, sizeof(float));
    float *h = malloc(sizeof(float) * (size_t)(kmax * F)),
          *h2 = malloc(sizeof(float) * (size_t)(kmax * F));
    float *o = malloc(sizeof(float) * (size_t)(kmax * E)), alpha[BACKEND_MOE_MAX_K];
    int64_t *us = malloc(sizeof(int64_t) * (size_t)passes);
    int64_t *us_sum = malloc(sizeof(int64_t) * (size_t)passes);
    /* from the pass's call: its first chunk taken, its gate and up done */
    int64_t *us_first = malloc(sizeof(int64_t) * (size_t)passes);
    int64_t *us_a = malloc(sizeof(int64_t) * (size_t)passes);
    if (!x || !y || !h || !h2 || !o || !us || !us_sum || !us_first || !us_a) return 1;
    for (int64_t i = 0; i < E; i++) x[i] = (float)rng_normal(&r);
    for (int j = 0; j < BACKEND_MOE_MAX_K; j++) alpha[j] = 1.0f / (float)(j + 1);

    printf("moe_token, experts %lld x %lld (gate/up %s, down %s, %.2f MB each), %d experts "
           "rotated (%.0f MiB)\n\n",
           (long long)F, (long long)E, quant_type_name(t_gu), quant_type_name(t_down),
           expert_bytes / 1e6, n_exp, n_exp * expert_bytes / 1048576.0);
    printf("| threads | k | us a pass (median) | best | 9th decile | us to the sum (median) | 9th "
           "decile | GB/s (median) | memory read GB/s | us to the first chunk (median) | us to "
           "gate and up done (median) |\n");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    int next = 0;
    for (int t = 0; t < n_threads; t++) {
        struct backend *be = NULL;
        struct cpu_backend_opts bo = {
            .n_threads = threads[t], .portable = false, .moe_chunk_bytes = chunk_bytes};
        struct backend_limits lim = {.max_batch = kmax + 4, /* the pass converts k + 2 rows */
                                     .max_ctx = 1,
                                     .max_head_dim = 128,
                                     .max_cols = E > F ? E : F,
                                     .moe_k = kmax,
                                     .moe_ff = F,
                                     .moe_embd = E};
        if (cpu_backend_init(&bo, &be) || backend_reserve(be, &lim)) {
            fprintf(stderr, "moe_token_bench: %s\n", hy_last_error());
            return 1;
        }
        for (int ki = 0; ki < n_k; ki++) {
            const int k = ks[ki];
            for (int p = -passes / 10 - 1; p < passes; p++) { /* the first ones warm up */
                if (next + k > n_exp) next = 0;
                if (warm == 1) { /* every cache line of the pass's experts, read here */
                    volatile uint8_t sink = 0;
                    for (int j = 0; j < 3 * k; j++) {
                        const struct backend_weight *wj = &w[3 * next + j];
                        const uint8_t *b = wj->data;
                        const size_t nb = (size_t)wj->n_rows * wj->row_bytes;
                        for (size_t at = 0; at < nb; at += 64) sink += b[at];
                    }
                }
                if (gap_us) { /* the calling thread busy elsewhere */
                    const int64_t g0 = timing_now_us();
                    while (timing_now_us() - g0 < gap_us) {
                    }
                }
                /* every cache line of the pass's experts, read by the pool */
                if (warm == 2) cpu_backend_warm(be, w + 3 * next, 3 * k);
                /* moe_token as the op runs it (the caller takes part at the
                 * join), the sum's completion seen on the way */
                const int64_t t0 = timing_now_us();
                cpu_backend_moe_token_start(be, x, w + 3 * next, alpha, k, y, h, h2, o, 0, 0, 0,
                                            NULL, NULL, 0);
                const int64_t t_sum = cpu_backend_pass_wait(be);
                cpu_backend_join(be);
                if (p >= 0) {
                    us[p] = timing_now_us() - t0;
                    us_sum[p] = t_sum - t0;
                    int64_t t_start, t_first, t_a;
                    cpu_backend_pass_times(be, &t_start, &t_first, &t_a);
                    us_first[p] = t_first - t0;
                    us_a[p] = t_a - t0;
                }
                next += k;
            }
            qsort(us, (size_t)passes, sizeof *us, cmp_i64);
            qsort(us_sum, (size_t)passes, sizeof *us_sum, cmp_i64);
            qsort(us_first, (size_t)passes, sizeof *us_first, cmp_i64);
            qsort(us_a, (size_t)passes, sizeof *us_a, cmp_i64);
            const double med = (double)us[passes / 2];
            printf("| %d | %d | %.1f | %lld | %lld | %lld | %lld | %.1f | %.1f | %lld | %lld |\n",
                   threads[t], k, med, (long long)us[0], (long long)us[passes * 9 / 10],
                   (long long)us_sum[passes / 2], (long long)us_sum[passes * 9 / 10],
                   med > 0 ? k * expert_bytes / (med * 1e3) : 0.0, mem_bw[t],
                   (long long)us_first[passes / 2], (long long)us_a[passes / 2]);
            fflush(stdout);
        }
        backend_free(be);
    }
    return 0;
}
