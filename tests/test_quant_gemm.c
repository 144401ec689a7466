/*
 * The gemm kernels (quant_gemm.h) against vec_dot: for every weight type with
 * a kernel at the selected ISA level, each output must equal the selected
 * vec_dot of quant_kernels() bit for bit (the gemm contract, which keeps
 * batch and token-by-token logits equal) and the reference vec_dot up to
 * float rounding. Odd row counts (below and above the kernel's row block),
 * token counts 1..33 (every register-tile remainder, more than one tile),
 * column counts with an odd number of 32-blocks, an output stride wider than
 * the rows (the gaps must stay untouched), and weights and activations in
 * buffers of exactly their size, so that ASan sees any read past them.
 * quant_gemm_ref, the naive form, is checked too.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "quant/quant.h"
#include "quant/quant_gemm.h"

#define MAX_TOK  70
#define SENTINEL (-12345.0f)

static int64_t g_kernels_tested, g_gemv_tested;

/* Token counts: every count up to 33 for the small shapes; for the wide
 * ones (two AMX token blocks) those around the tile and block edges. */
static bool tok_count_tested(int64_t n_tok, bool wide)
{
    if (!wide) return n_tok <= 33;
    static const int64_t k_wide[] = {1, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 70};
    for (size_t i = 0; i < sizeof(k_wide) / sizeof(k_wide[0]); i++)
        if (k_wide[i] == n_tok) return true;
    return false;
}

/* The bound on float reassociation test_quant_simd uses for vec_dot: the
 * sum of |x_i * y_i| and, for the types with a min, twice the block's
 * largest |x| times |y_i| (the scaled and the min part may cancel). The
 * wide shapes are held to it: 1e-5 * (|ref| + 1), made for a few blocks,
 * does not bound the rounding of 37 super-blocks summed in another order. */
static double dot_magnitude(uint32_t type, const void *x, const void *y, int64_t n)
{
    const struct quant_traits *tr = quant_traits(type);
    float *fx = malloc(sizeof(float) * (size_t)n), *fy = malloc(sizeof(float) * (size_t)n);
    HY_ASSERT(fx && fy);
    tr->to_float(x, fx, n);
    quant_traits(tr->vec_dot_type)->to_float(y, fy, n);
    const bool offset = type == HY_TYPE_Q4_1 || type == HY_TYPE_Q5_1 || type == HY_TYPE_Q2_K ||
                        type == HY_TYPE_Q4_K || type == HY_TYPE_Q5_K;
    const int64_t bs = offset ? tr->block_size : 1;
    double mag = 0;
    for (int64_t b = 0; b < n; b += bs) {
        double amax = 0, ysum = 0;
        for (int64_t i = b; i < b + bs; i++) {
            mag += fabs((double)fx[i] * fy[i]);
            amax = fmax(amax, fabs(fx[i]));
            ysum += fabs(fy[i]);
        }
        if (offset) mag += 2 * amax * ysum;
    }
    free(fx);
    free(fy);
    return mag;
}

static void check_shape(uint32_t type, int64_t rows, int64_t cols, struct rng *r, bool wide)
{
    const struct quant_traits *tr = quant_traits(type);
    const struct quant_traits *at = quant_traits(tr->vec_dot_type);
    const quant_vec_dot_fn fast = quant_kernels(type)->vec_dot;
    const quant_gemm_fn gemm = quant_gemm_kernel(type);
    const size_t row_bytes = (size_t)quant_bytes(type, (uint64_t)cols);
    const size_t xq_row = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)cols);
    const int64_t ldy = rows + 3;
    float *src = malloc(sizeof(float) * (size_t)(rows * cols));
    float *x = malloc(sizeof(float) * (size_t)(MAX_TOK * cols));
    uint8_t *wq = malloc(row_bytes * (size_t)rows);
    float *y = malloc(sizeof(float) * (size_t)(MAX_TOK * ldy));
    float *yr = malloc(sizeof(float) * (size_t)(MAX_TOK * ldy));
    HY_ASSERT(src && x && wq && y && yr);
    for (int64_t i = 0; i < rows * cols; i++) src[i] = (float)rng_normal(r) * 0.05f;
    for (int64_t i = 0; i < MAX_TOK * cols; i++) x[i] = (float)rng_normal(r);
    for (int64_t i = 0; i < rows; i++)
        tr->from_float(src + i * cols, wq + (size_t)i * row_bytes, cols);
    /* exactly n_tok activation rows per call below, so that a read past them
     * faults under ASan; the expected outputs are those of all MAX_TOK */
    uint8_t *xall = malloc(xq_row * MAX_TOK);
    float *want = malloc(sizeof(float) * (size_t)(MAX_TOK * rows));
    float *want_fast = malloc(sizeof(float) * (size_t)(MAX_TOK * rows));
    double *tol = malloc(sizeof(double) * (size_t)(MAX_TOK * rows));
    HY_ASSERT(xall && want && want_fast && tol);
    for (int64_t t = 0; t < MAX_TOK; t++) {
        const uint8_t *xt = xall + (size_t)t * xq_row;
        at->from_float(x + t * cols, xall + (size_t)t * xq_row, cols);
        for (int64_t i = 0; i < rows; i++) {
            want[t * rows + i] = tr->vec_dot(cols, wq + (size_t)i * row_bytes, xt);
            want_fast[t * rows + i] = fast(cols, wq + (size_t)i * row_bytes, xt);
            tol[t * rows + i] =
                wide && tr->to_float && at->to_float
                    ? 1e-5 * dot_magnitude(type, wq + (size_t)i * row_bytes, xt, cols)
                    : 1e-5 * (fabs((double)want[t * rows + i]) + 1.0);
        }
    }
    int64_t bad_fast = 0, bad_ref = 0, bad_naive = 0, bad_gap = 0, bad_gemv = 0;
    /* the one-token form, for the first and the last activation row */
    const quant_gemv_fn gemv = quant_gemv_kernel(type);
    for (int k = 0; gemv && k < 2; k++) {
        const int64_t t = k ? MAX_TOK - 1 : 0;
        uint8_t *x1 = malloc(xq_row);
        float *y1 = malloc(sizeof(float) * (size_t)rows);
        HY_ASSERT(x1 && y1);
        memcpy(x1, xall + (size_t)t * xq_row, xq_row);
        gemv(cols, wq, row_bytes, rows, x1, y1);
        for (int64_t i = 0; i < rows; i++) bad_gemv += y1[i] != want_fast[t * rows + i];
        free(x1);
        free(y1);
    }
    for (int64_t i = 0; i < MAX_TOK * ldy; i++) yr[i] = SENTINEL;
    quant_gemm_ref(type, cols, wq, row_bytes, rows, xall, xq_row, MAX_TOK, yr, ldy);
    for (int64_t t = 0; t < MAX_TOK; t++) {
        for (int64_t i = 0; i < rows; i++) bad_naive += yr[t * ldy + i] != want[t * rows + i];
        for (int64_t i = rows; i < ldy; i++) bad_gap += yr[t * ldy + i] != SENTINEL;
    }
    for (int64_t n_tok = 1; gemm && n_tok <= MAX_TOK; n_tok++) {
        if (!tok_count_tested(n_tok, wide)) continue;
        uint8_t *xq = malloc(xq_row * (size_t)n_tok);
        HY_ASSERT(xq);
        memcpy(xq, xall, xq_row * (size_t)n_tok);
        for (int64_t i = 0; i < MAX_TOK * ldy; i++) y[i] = SENTINEL;
        gemm(cols, wq, row_bytes, rows, xq, xq_row, n_tok, y, ldy);
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t i = 0; i < rows; i++) {
                const float got = y[t * ldy + i], w = want[t * rows + i];
                bad_fast += got != want_fast[t * rows + i];
                bad_ref += !(fabs((double)got - w) <= tol[t * rows + i]);
            }
            for (int64_t i = rows; i < ldy; i++) bad_gap += y[t * ldy + i] != SENTINEL;
        }
        for (int64_t i = n_tok * ldy; i < MAX_TOK * ldy; i++) bad_gap += y[i] != SENTINEL;
        free(xq);
    }
    if (!CHECK_EQ_INT(bad_fast, 0) || !CHECK_EQ_INT(bad_ref, 0) || !CHECK_EQ_INT(bad_naive, 0) ||
        !CHECK_EQ_INT(bad_gap, 0) || !CHECK_EQ_INT(bad_gemv, 0))
        fprintf(stderr, "  type %s (%s), %lld rows x %lld cols\n", tr->name,
                quant_isa_name(quant_isa_current()), (long long)rows, (long long)cols);
    g_kernels_tested += gemm != NULL;
    g_gemv_tested += gemv != NULL;
    free(src);
    free(x);
    free(wq);
    free(y);
    free(yr);
    free(xall);
    free(want);
    free(want_fast);
    free(tol);
}

static void check_level(struct rng *r)
{
    static const int64_t row_counts[] = {1, 2, 7, 8, 19}; /* tiles of 2, 3 and 4 rows with tails */
    for (uint32_t type = 0; type < HY_TYPE_COUNT; type++) {
        const struct quant_traits *tr = quant_traits(type);
        if (!tr || !tr->vec_dot || !quant_traits(tr->vec_dot_type)->from_float) continue;
        /* block types: 1, 3, 4, 5 blocks (of 32 at least); float types also
         * lengths with a masked tail and whole 16s after the last 64 */
        const int64_t bs = tr->block_size < 32 ? 32 : tr->block_size;
        const int64_t block_cols[] = {bs, 3 * bs, 4 * bs, 5 * bs};
        const int64_t float_cols[] = {7, 48, 71, 160, 200};
        const bool is_float = tr->block_size == 1;
        const int64_t *cols = is_float ? float_cols : block_cols;
        const size_t n_cols = is_float ? 5 : 4;
        for (size_t ri = 0; ri < sizeof(row_counts) / sizeof(row_counts[0]); ri++)
            for (size_t ci = 0; ci < n_cols; ci++)
                check_shape(type, row_counts[ri], cols[ci], r, false);
        /* more than one group of 16 blocks (the AMX level's float order)
         * with a partial last one, 2 whole 16-row tiles and a tail, more
         * tokens than one AMX token block */
        if (!is_float) {
            check_shape(type, 35, 37 * bs, r, true);
            check_shape(type, 32, 16 * bs, r, true);
        }
    }
}

int main(void)
{
    struct rng r;
    rng_init(&r, 11);
    const enum quant_isa best = quant_isa_detect();
    /* levels below VNNI: the AVX2 level's tiles for the 32-element types
     * (checked by check_level below or at the end), no kernel elsewhere (the
     * caller loops vec_dot) */
    for (int level = (int)best; level >= QUANT_ISA_SCALAR; level--) {
        if (level >= QUANT_ISA_AVX512_VNNI) continue;
        if (quant_isa_select((enum quant_isa)level) != (enum quant_isa)level) continue;
        for (uint32_t type = 0; type < HY_TYPE_COUNT; type++) {
            const bool tile =
                level == QUANT_ISA_AVX2 &&
                (type == HY_TYPE_Q4_0 || type == HY_TYPE_Q5_0 || type == HY_TYPE_Q8_0);
            CHECK((quant_gemm_kernel(type) != NULL) == tile && quant_gemv_kernel(type) == NULL);
        }
        if (level == QUANT_ISA_AVX2 && level != (int)best) check_level(&r);
    }
    /* the levels with kernels: VNNI (quant_gemm_avx512.c), then AMX
     * (quant_amx.c's Q8_0, and the VNNI kernels beside its own vec_dot) */
    for (int level = QUANT_ISA_AVX512_VNNI; level <= (int)best; level++) {
        if (quant_isa_select((enum quant_isa)level) != (enum quant_isa)level) continue;
        check_level(&r);
        CHECK(quant_gemm_kernel(HY_TYPE_Q4_K) != NULL);
        CHECK(quant_gemm_kernel(HY_TYPE_Q6_K) != NULL);
        CHECK(quant_gemm_kernel(HY_TYPE_Q8_0) != NULL);
        CHECK(quant_gemm_kernel(HY_TYPE_Q5_0) != NULL);
        CHECK(quant_gemm_kernel(HY_TYPE_F16) != NULL);
        CHECK(quant_gemv_kernel(HY_TYPE_F16) != NULL);
        CHECK(quant_gemv_kernel(HY_TYPE_Q5_0) != NULL);
        CHECK(quant_gemv_kernel(HY_TYPE_Q8_0) != NULL);
    }
    quant_isa_select(best);
    if (best < QUANT_ISA_AVX512_VNNI) check_level(&r);
    fprintf(stderr, "test_quant_gemm: %s, %lld shapes with a gemm kernel, %lld with a gemv one\n",
            quant_isa_name(best), (long long)g_kernels_tested, (long long)g_gemv_tested);
    return check_report("test_quant_gemm");
}
