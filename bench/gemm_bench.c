/*
 * gemm_bench: single-threaded speed of the batched prompt kernels
 * (quant_gemm.h) per weight type, in multiply-accumulates per second, next
 * to the vec_dot loop they replace; then one token's product by the gemv
 * kernel (several rows at once) next to vec_dot row by row, for the types
 * that have one. Prints a markdown table.
 *
 * A matrix of --rows rows (default 512) by --cols columns (default 4096) of
 * random weights against --tok activation rows (default 128), the product
 * as the CPU backend's matmul computes one chunk of rows: activations
 * already converted to the vec_dot type. Each cell is the best of --reps
 * (default 5) products in CPU time of the thread, so that a burst of load
 * from a neighbour on a shared machine spoils one product rather than the
 * cell (cache and core sharing still show). The default matrix (1.1-2.1 MiB
 * for the quantized types) stays in the caches between products: these are
 * the kernels' rates, not memory's.
 *
 *   gemm_bench [--rows N] [--cols N] [--tok N] [--reps N] [--types q4_k,q8_0,...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "quant/quant.h"
#include "quant/quant_gemm.h"

static const uint32_t k_types[] = {HY_TYPE_Q4_0, HY_TYPE_Q5_0, HY_TYPE_Q8_0, HY_TYPE_Q4_K,
                                   HY_TYPE_Q5_K, HY_TYPE_Q6_K, HY_TYPE_F16};

/* CPU time of this thread in microseconds: on a machine shared with other
 * work a product that is descheduled for a while is not counted as slow. */
static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* The best time of reps products by gemm, or gemv (one token), or dot. */
static double best_us(int reps, quant_gemm_fn gemm, quant_gemv_fn gemv, quant_vec_dot_fn dot,
                      int64_t cols, const void *w, size_t w_row, int64_t rows, const void *xq,
                      size_t xq_row, int64_t n_tok, float *y)
{
    double best = 1e30;
    for (int k = 0; k < reps; k++) {
        const double t0 = cpu_us();
        if (gemm) {
            gemm(cols, w, w_row, rows, xq, xq_row, n_tok, y, rows);
        } else if (gemv) {
            gemv(cols, w, w_row, rows, xq, y);
        } else {
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < rows; r++)
                    y[t * rows + r] = dot(cols, (const uint8_t *)w + (size_t)r * w_row,
                                          (const uint8_t *)xq + (size_t)t * xq_row);
        }
        const double us = cpu_us() - t0;
        if (us < best) best = us;
    }
    return best;
}

int main(int argc, char **argv)
{
    int64_t rows = 512, cols = 4096, n_tok = 128;
    int reps = 5;
    bool want[HY_TYPE_COUNT] = {false}, any = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--rows") && v) {
            rows = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--cols") && v) {
            cols = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--tok") && v) {
            n_tok = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && v) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--types") && v) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                const int ty = quant_type_from_name(t);
                if (ty < 0 || !quant_is_supported((uint32_t)ty)) {
                    fprintf(stderr, "gemm_bench: unknown or unsupported type '%s'\n", t);
                    return 2;
                }
                want[ty] = any = true;
            }
        } else {
            fprintf(stderr, "usage: gemm_bench [--rows N (512)] [--cols N (4096)] [--tok N (128)] "
                            "[--reps N (5)] [--types q4_k,q8_0,...]\n");
            return 2;
        }
    }
    if (rows < 1 || cols < 256 || cols % 256 || n_tok < 1 || reps < 1) {
        fprintf(stderr,
                "gemm_bench: --rows, --tok, --reps must be > 0, --cols a multiple of 256\n");
        return 2;
    }
    struct rng r;
    rng_init(&r, 42);
    float *src = malloc(sizeof(float) * (size_t)cols * (size_t)(rows > n_tok ? rows : n_tok));
    float *y = malloc(sizeof(float) * (size_t)(rows * n_tok));
    if (!src || !y) return 1;
    printf("isa %s, %lld x %lld weights, %lld tokens, best of %d\n\n",
           quant_isa_name(quant_isa_current()), (long long)rows, (long long)cols, (long long)n_tok,
           reps);
    printf("| type | gemm GMAC/s | vec_dot GMAC/s | speed-up | one token: gemv GMAC/s | vec_dot "
           "GMAC/s | speed-up |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        const uint32_t type = k_types[k];
        if (any && !want[type]) continue;
        const struct quant_traits *tr = quant_traits(type);
        const size_t w_row = (size_t)quant_bytes(type, (uint64_t)cols);
        const size_t xq_row = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)cols);
        const size_t xg_row = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)cols);
        uint8_t *w = malloc(w_row * (size_t)rows), *xq = malloc(xq_row * (size_t)n_tok);
        uint8_t *xg = malloc(xg_row * (size_t)n_tok);
        if (!w || !xq || !xg) return 1;
        for (int64_t i = 0; i < rows * cols; i++) src[i] = (float)rng_normal(&r) * 0.05f;
        for (int64_t i = 0; i < rows; i++)
            quant_kernels(type)->from_float(src + i * cols, w + (size_t)i * w_row, cols);
        for (int64_t i = 0; i < n_tok * cols; i++) src[i] = (float)rng_normal(&r);
        for (int64_t t = 0; t < n_tok; t++) {
            quant_kernels(tr->vec_dot_type)
                ->from_float(src + t * cols, xq + (size_t)t * xq_row, cols);
            memcpy(xg + (size_t)t * xg_row, xq + (size_t)t * xq_row, xq_row);
        }
        const quant_gemm_fn gemm = quant_gemm_kernel(type);
        const double macs = (double)rows * (double)cols * (double)n_tok;
        const quant_vec_dot_fn dot = quant_kernels(type)->vec_dot;
        const double g_us =
            gemm ? best_us(reps, gemm, NULL, NULL, cols, w, w_row, rows, xg, xg_row, n_tok, y) : 0;
        const double d_us = best_us(reps > 2 ? 2 : reps, NULL, NULL, dot, cols, w, w_row, rows, xq,
                                    xq_row, n_tok, y);
        printf("| %s | %.1f | %.1f | %.2f |", tr->name, gemm ? macs / g_us / 1e3 : 0.0,
               macs / d_us / 1e3, gemm ? d_us / g_us : 0.0);
        /* one token: enough products to time (each about a row block's work) */
        const quant_gemv_fn gemv = quant_gemv_kernel(type);
        const int reps1 = 20 * reps;
        if (gemv) {
            const double macs1 = (double)rows * (double)cols;
            const double v_us = best_us(reps1, NULL, gemv, NULL, cols, w, w_row, rows, xq, 0, 1, y);
            const double d1_us = best_us(reps1, NULL, NULL, dot, cols, w, w_row, rows, xq, 0, 1, y);
            printf(" %.1f | %.1f | %.2f |\n", macs1 / v_us / 1e3, macs1 / d1_us / 1e3,
                   d1_us / v_us);
        } else {
            printf(" - | - | - |\n");
        }
        free(w);
        free(xq);
        free(xg);
    }
    free(src);
    free(y);
    return 0;
}
