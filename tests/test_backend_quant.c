/*
 * The CPU backend's matmul on every quantized weight type: each output equals
 * the reference vec_dot of the weight row with the activation row converted
 * by the reference quantizer (up to float rounding), and does not depend on
 * the thread count or on how tokens are batched.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "core/rng.h"
#include "quant/quant.h"

static struct backend *make_backend(int threads, bool portable)
{
    struct backend *be = NULL;
    struct cpu_backend_opts o = {.n_threads = threads, .portable = portable};
    if (!CHECK_OK(cpu_backend_init(&o, &be))) exit(1);
    struct backend_limits lim = {.max_batch = 64, .max_ctx = 64, .max_head_dim = 128, .max_cols = 1024};
    if (!CHECK_OK(backend_reserve(be, &lim))) exit(1);
    return be;
}

int main(void)
{
    static const uint32_t types[] = {HY_TYPE_Q4_0, HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0,
                                     HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K};
    static const int64_t shapes[][2] = {{37, 256}, {64, 512}, {5, 1024}};
    struct backend *b1 = make_backend(1, false), *b3 = make_backend(3, false), *bp = make_backend(2, true);
    struct rng r;
    rng_init(&r, 5);
    const int64_t n_tok = 19;
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        const struct quant_traits *tr = quant_traits(types[ti]);
        for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            const size_t row_bytes = (size_t)quant_bytes(types[ti], (uint64_t)cols);
            const size_t xq_bytes = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)cols);
            float *src = malloc(sizeof(float) * (size_t)(rows * cols));
            float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
            uint8_t *wq = malloc(row_bytes * (size_t)rows);
            uint8_t *xq = malloc(xq_bytes);
            float *y1 = malloc(sizeof(float) * (size_t)(n_tok * rows)), *y3 = malloc(sizeof(float) * (size_t)(n_tok * rows));
            float *yp = malloc(sizeof(float) * (size_t)(n_tok * rows)), *yo = malloc(sizeof(float) * (size_t)rows);
            for (int64_t i = 0; i < rows * cols; i++) src[i] = (float)rng_normal(&r) * 0.05f;
            for (int64_t i = 0; i < n_tok * cols; i++) x[i] = (float)rng_normal(&r);
            for (int64_t row = 0; row < rows; row++) tr->from_float(src + row * cols, wq + (size_t)row * row_bytes, cols);
            struct backend_weight w = {wq, types[ti], cols, rows, row_bytes, "test",
                                       BACKEND_MEM_HOST, 0, false};
            backend_matmul(b1, &w, x, n_tok, y1);
            backend_matmul(b3, &w, x, n_tok, y3);
            backend_matmul(bp, &w, x, n_tok, yp);
            int bad_ref = 0, bad_thr = 0, bad_one = 0;
            for (int64_t t = 0; t < n_tok; t++) {
                quant_traits(tr->vec_dot_type)->from_float(x + t * cols, xq, cols);
                for (int64_t row = 0; row < rows; row++) {
                    const float want = tr->vec_dot(cols, wq + (size_t)row * row_bytes, xq);
                    /* float rounding of a reordered sum: relative to the result, plus an absolute floor */
                    const double tol = 1e-5 * (fabs((double)want) + 1.0);
                    bad_ref += fabs((double)y1[t * rows + row] - want) > tol;
                    bad_ref += yp[t * rows + row] != want; /* the portable backend is the reference */
                    bad_thr += y1[t * rows + row] != y3[t * rows + row];
                }
            }
            for (int64_t t = 0; t < n_tok; t++) {
                backend_matmul(b3, &w, x + t * cols, 1, yo);
                for (int64_t row = 0; row < rows; row++) bad_one += fabsf(yo[row] - y3[t * rows + row]) > 1e-5f * (fabsf(yo[row]) + 1.0f);
            }
            if (!CHECK_EQ_INT(bad_ref, 0) || !CHECK_EQ_INT(bad_thr, 0) || !CHECK_EQ_INT(bad_one, 0))
                fprintf(stderr, "  type %s, shape [%lld, %lld]\n", tr->name, (long long)cols, (long long)rows);
            free(src); free(x); free(wq); free(xq); free(y1); free(y3); free(yp); free(yo);
        }
    }
    backend_free(b1);
    backend_free(b3);
    backend_free(bp);
    return check_report("test_backend_quant");
}
