/*
 * pass_bench: one token's product of a weight in RAM started on the CPU
 * backend's workers (cpu_backend_matmul_start, or with --swiglu 1 gate and
 * up with SwiGLU after them: cpu_backend_swiglu_start), as the CUDA backend
 * starts the CPU's share of a weight in RAM in partial decode, for each
 * count of chunks a thread in --chunks (0: the backend's default). The
 * calling thread does not take part: it spins on the pass's flag, as the GPU
 * does while the CUDA backend's thread queues its copies, then joins the
 * pass. Prints a markdown
 * table: per thread count and chunk count, us from the start to the flag
 * (median, best, ninth decile) and GB/s of the weights' bytes over the
 * median, next to a plain read of memory with the same threads measured in
 * the same run.
 *
 *   pass_bench [--rows N (9472)] [--cols N (4096)] [--type q4_k]
 *              [--swiglu 0|1 (1)] [--threads LIST (2)] [--chunks LIST (0,4,16,32)]
 *              [--mib N (512)] [--passes N (200)] [--gap US (60)]
 *
 * The defaults: two thirds of the gate and up rows of a Llama-3-8B layer,
 * the CPU's share in partial decode. Each pass takes the next of enough
 * copies of the weights to fill --mib of memory, so that they come from
 * DRAM. --gap US: the calling thread spins US microseconds between a pass's
 * join and the next start (untimed), as the CUDA backend's chain between
 * two passes does.
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
    fprintf(
        stderr,
        "usage: pass_bench [--rows N (9472)] [--cols N (4096)] [--type q4_k]\n"
        "                  [--swiglu 0|1 (1)] [--threads LIST (2)] [--chunks LIST (0,4,16,32)]\n"
        "                  [--mib N (512)] [--passes N (200)] [--gap US (60)]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int64_t rows = 9472, cols = 4096;
    uint32_t type = HY_TYPE_Q4_K;
    int swiglu = 1, passes = 200, gap_us = 60;
    int threads[MAX_LIST] = {2}, n_threads = 1;
    int chunks[MAX_LIST] = {0, 4, 16, 32}, n_chunks = 4;
    double mib = 512;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(argv[i], "--rows")) {
            rows = atoll(v);
        } else if (!strcmp(argv[i], "--cols")) {
            cols = atoll(v);
        } else if (!strcmp(argv[i], "--type")) {
            const int t = quant_type_from_name(v);
            if (t < 0 || !quant_is_supported((uint32_t)t)) {
                fprintf(stderr, "pass_bench: --type: unknown or unsupported type '%s'\n", v);
                return 2;
            }
            type = (uint32_t)t;
        } else if (!strcmp(argv[i], "--swiglu")) {
            if (strcmp(v, "0") && strcmp(v, "1")) return usage();
            swiglu = v[0] == '1';
        } else if (!strcmp(argv[i], "--threads")) {
            n_threads = parse_list(v, threads, MAX_LIST);
        } else if (!strcmp(argv[i], "--chunks")) {
            n_chunks = parse_list(v, chunks, MAX_LIST);
        } else if (!strcmp(argv[i], "--mib")) {
            mib = atof(v);
        } else if (!strcmp(argv[i], "--passes")) {
            passes = atoi(v);
        } else if (!strcmp(argv[i], "--gap")) {
            gap_us = atoi(v);
        } else {
            return usage();
        }
        i++;
    }
    if (rows < 1 || cols < 1 || cols % quant_traits(type)->block_size || mib <= 0 || passes < 1 ||
        gap_us < 0 || gap_us > 1000000 || n_threads < 1 || n_chunks < 1) {
        fprintf(stderr, "pass_bench: --rows >= 1, --cols a multiple of the type's block, --mib "
                        "and --passes > 0, --gap 0..1000000, --threads and --chunks lists of "
                        "integers\n");
        return 2;
    }
    for (int t = 0; t < n_threads; t++)
        if (threads[t] < 2 || threads[t] > 256) {
            fprintf(stderr, "pass_bench: thread counts must be in [2, 256] (the caller does not "
                            "take part)\n");
            return 2;
        }
    for (int c = 0; c < n_chunks; c++)
        if (chunks[c] < 0 || chunks[c] > 4096) {
            fprintf(stderr, "pass_bench: chunk counts must be in [0, 4096] (0: the backend's "
                            "default)\n");
            return 2;
        }

    const int n_w = swiglu ? 2 : 1;
    const size_t rb = (size_t)quant_bytes(type, (uint64_t)cols);
    const size_t wbytes = rb * (size_t)rows;
    int n_sets = (int)(mib * 1048576.0 / (double)(n_w * wbytes));
    if (n_sets < 2) n_sets = 2;

    double mem_bw[MAX_LIST];
    if (!mem_read_rates(threads, n_threads, mem_bw)) return 1;

    /* the first set quantized from random values, the rest copies of it at
     * their own addresses (a pass's time does not depend on the values) */
    struct rng r;
    rng_init(&r, 7);
    float *src = malloc(sizeof(float) * (size_t)cols);
    struct backend_weight *w = calloc((size_t)(n_w * n_sets), sizeof *w);
    if (!src || !w) return 1;
    for (int s = 0; s < n_sets; s++)
        for (int j = 0; j < n_w; j++) {
            uint8_t *m =
                s == 0 ? random_matrix(&r, type, rows, cols, src) : copy_of(w[j].data, wbytes);
            if (!m) {
                fprintf(stderr, "pass_bench: out of memory for %d copies of the weights\n", n_sets);
                return 1;
            }
            w[n_w * s + j] = (struct backend_weight){
                m, type, cols, rows, rb, j ? "up" : "gate", BACKEND_MEM_HOST, 0, true};
        }
    float *x = malloc(sizeof(float) * (size_t)cols);
    float *h = malloc(sizeof(float) * (size_t)rows), *h2 = malloc(sizeof(float) * (size_t)rows);
    int64_t *us = malloc(sizeof(int64_t) * (size_t)passes);
    uint32_t *flag = calloc(16, sizeof(uint32_t));
    if (!x || !h || !h2 || !us || !flag) return 1;
    for (int64_t i = 0; i < cols; i++) x[i] = (float)rng_normal(&r);

    printf("%s %lld x %lld (%s, %.1f MB a pass), %d copies rotated (%.0f MiB)\n\n",
           swiglu ? "gate and up with SwiGLU," : "one product,", (long long)rows, (long long)cols,
           quant_type_name(type), (double)(n_w * wbytes) / 1e6, n_sets,
           (double)(n_w * wbytes) * n_sets / 1048576.0);
    printf("| threads | chunks a thread | us to the flag (median) | best | 9th decile | GB/s "
           "(median) | memory read GB/s |\n");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    uint32_t seq = 0;
    int next = 0;
    for (int t = 0; t < n_threads; t++)
        for (int c = 0; c < n_chunks; c++) {
            struct backend *be = NULL;
            struct cpu_backend_opts bo = {
                .n_threads = threads[t], .portable = false, .pass_chunks = chunks[c]};
            struct backend_limits lim = {.max_batch = 4,
                                         .max_ctx = 1,
                                         .max_head_dim = 128,
                                         .max_cols = cols > rows ? cols : rows};
            if (cpu_backend_init(&bo, &be) || backend_reserve(be, &lim)) {
                fprintf(stderr, "pass_bench: %s\n", hy_last_error());
                return 1;
            }
            for (int p = -passes / 10 - 1; p < passes; p++) { /* the first ones warm up */
                const int64_t g0 = timing_now_us();
                while (timing_now_us() - g0 < gap_us) {
                }
                const struct backend_weight *ws = &w[n_w * next];
                next = (next + 1) % n_sets;
                const int64_t t0 = timing_now_us();
                if (swiglu)
                    cpu_backend_swiglu_start(be, &ws[0], &ws[1], x, h, h2, flag, ++seq);
                else
                    cpu_backend_matmul_start(be, &ws[0], x, h, flag, ++seq);
                while ((int32_t)(__atomic_load_n(flag, __ATOMIC_ACQUIRE) - seq) < 0) {
                }
                const int64_t t1 = timing_now_us();
                cpu_backend_join(be);
                if (p >= 0) us[p] = t1 - t0;
            }
            qsort(us, (size_t)passes, sizeof *us, cmp_i64);
            const double med = (double)us[passes / 2];
            printf("| %d | %d | %.0f | %lld | %lld | %.1f | %.1f |\n", threads[t], chunks[c], med,
                   (long long)us[0], (long long)us[passes * 9 / 10],
                   med > 0 ? (double)(n_w * wbytes) / (med * 1e3) : 0.0, mem_bw[t]);
            fflush(stdout);
            backend_free(be);
        }
    return 0;
}
