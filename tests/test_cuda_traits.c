/*
 * The CUDA kernels' per-type arithmetic, run on the CPU (no GPU needed):
 * for every type the kernels take, each item's values as the kernels
 * dequantize them against the reference dequantizer, bit for bit, and the
 * products summed item by item as the matvec over x in global memory sums
 * them against a double dot product of the dequantized rows. A lane layout
 * that misplaces a column or a scale fails here, in CI, before any device
 * runs it. Exit 77 in a build without the CUDA backend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "check.h"
#include "core/rng.h"
#include "quant/quant.h"

#define N_COLS 1024

static struct rng rng;

/* Uniform in [-1, 1). */
static float frand(void)
{
    return (float)(2.0 * rng_uniform(&rng) - 1.0);
}

/* Two rows of type t from random floats (an outlier every 37 columns, so
 * that blocks' scales differ), checked as the header says. */
static void check_type(uint32_t t)
{
    const struct quant_traits *qt = quant_traits(t);
    if (!CHECK(qt && qt->from_float && qt->to_float)) return;
    static float w[2 * N_COLS], deq[2 * N_COLS], values[2 * N_COLS];
    static float x[N_COLS] __attribute__((aligned(16)));
    const size_t row_bytes = (size_t)quant_bytes(t, N_COLS);
    uint8_t *q = malloc(2 * row_bytes);
    if (!CHECK(q != NULL)) return;
    for (int i = 0; i < 2 * N_COLS; i++) w[i] = frand() + (i % 37 == 0 ? 4.0f * frand() : 0.0f);
    for (int i = 0; i < N_COLS; i++) x[i] = frand();
    for (int r = 0; r < 2; r++) {
        qt->from_float(w + r * N_COLS, q + r * row_bytes, N_COLS);
        qt->to_float(q + r * row_bytes, deq + r * N_COLS, N_COLS);
    }
    for (int i = 0; i < 2 * N_COLS; i++) values[i] = NAN;
    float dots[2] = {NAN, NAN};
    if (!CHECK_OK(cuda_host_check_rows(t, q, row_bytes, N_COLS, x, values, dots))) {
        free(q);
        return;
    }
    int wrong = 0;
    for (int i = 0; i < 2 * N_COLS; i++) {
        if (memcmp(&values[i], &deq[i], sizeof(float)) != 0 && wrong++ < 4)
            fprintf(stderr, "  %s row %d column %d: kernels' value %.9g, reference %.9g\n",
                    qt->name, i / N_COLS, i % N_COLS, values[i], deq[i]);
    }
    CHECK_EQ_INT(wrong, 0);
    for (int r = 0; r < 2; r++) {
        double ref = 0.0, mag = 0.0;
        for (int i = 0; i < N_COLS; i++) {
            ref += (double)deq[r * N_COLS + i] * x[i];
            mag += fabs((double)deq[r * N_COLS + i] * x[i]);
        }
        /* float sums of N_COLS terms: a few ulps of the terms' magnitude */
        const double err = fabs((double)dots[r] - ref) / (mag > 0.0 ? mag : 1.0);
        if (!CHECK(err < 1e-5))
            fprintf(stderr, "  %s row %d: product %.9g, reference %.9g (error %.2e of %.3g)\n",
                    qt->name, r, dots[r], ref, err, mag);
    }
    free(q);
}

int main(int argc, char **argv)
{
    (void)argc;
    static const uint32_t types[] = {HY_TYPE_F32,  HY_TYPE_F16,  HY_TYPE_BF16, HY_TYPE_Q4_0,
                                     HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0,
                                     HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K, HY_TYPE_Q5_K,
                                     HY_TYPE_Q6_K};
    rng_init(&rng, 0x9e3779b97f4a7c15ull);
    float dots[2];
    static float x[256] __attribute__((aligned(16))), values[512];
    static uint8_t q[2 * 210];
    if (cuda_host_check_rows(HY_TYPE_Q6_K, q, 210, 256, x, values, dots) == HY_ERR_UNSUPPORTED) {
        printf("%s: a build without CUDA: skipped\n", argv[0]);
        return 77;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_type(types[i]);
    /* a partial block is refused by name */
    CHECK(cuda_host_check_rows(HY_TYPE_Q4_K, q, 144, 100, x, values, dots) == HY_ERR_INVALID_ARG);
    return check_report(argv[0]);
}
