/*
 * The CUDA backend against the CPU backend, op by op, on the same inputs
 * (label cuda). Exits 77 (ctest: skipped) in a build without CUDA or on a
 * machine without a device.
 *
 *  - matmul on F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K at
 *    shapes with rows that are no multiple of 32/64/128, columns 256*k (32*k
 *    for the legacy and float types), n_tok 1, 2, 7, 8 (matvec kernels), 9,
 *    33, 64, 100, 512 (cuBLAS: widths padded to 64 but 512, the batch's, and
 *    2600 x 14336 in two tiles of rows), 4096 x 4096 and 256 x 14336 for
 *    n_tok 1 and 9; each
 *    case with the weight in backend memory (alloc + upload), in host memory
 *    under each host policy (cpu, copy, auto, copy with 256 KiB slots; every
 *    other case page-locked with host_register), and keyed (key != 0) twice
 *    through a 256 MiB weight cache (cfg.weight_cache_bytes; the second call
 *    must be a hit) and a 1 MiB one (cuda_backend_set_weight_cache; a weight
 *    above 1 MiB can never hit, one under 512 KiB must); the host byte counters
 *    of cuda_backend_stats follow the policy;
 *  - get_rows on every type (host and backend-memory weights; F32 rows of
 *    backend memory are the MoE gather), rms_norm (in place too; two in place
 *    in a row, as q and k head norms come), rope (norm
 *    and neox, n_rot < head_dim, frequency factors, freq_scale != 1,
 *    positions up to 30000), softmax, silu_mul, add, add_bias;
 *  - top_k (no CPU op: against a full sort on the host) for k 1..256 over
 *    1 to 2^21 values, ties, signed zeros, -inf and NaNs;
 *  - moe_token (one token's routed experts in one call) on every backend
 *    against the CPU op by op: host experts (stable, keyed), one expert in
 *    backend memory, twice per backend (cache hits the second time), the
 *    host byte counters following the policy; on a backend that splits
 *    every expert in RAM (gate and up on the CPU, the down on the GPU after
 *    the CPU flags its activations), each of them split;
 *  - prefetch's copies scored by whether GPU products read them: none but
 *    a probe's after rounds of unread copies;
 *  - prefetch's guesses scored by the moe_token that follows: no copies
 *    after rounds of wrong guesses (the guesses still counted), copies
 *    again after rounds of right ones;
 *  - moe_routed (one token's experts picked by ids in backend memory, out
 *    of whole expert tensors there, with a shared expert computed beside
 *    them and gated) against the CPU op by op, up to 11 experts, shared
 *    experts in the experts' kernels and on their own, and declined (y left
 *    as it was) for tensors in host memory;
 *  - attention with F32, F16 and Q8_0 caches, GQA 8/2, head_dim 64 and 128
 *    (and 4, 6, 20, 48, 80 with F32 and F16 caches, 256 with F16 and Q8_0):
 *    decode at positions 0, 1, 100, 1000 after filling the cache by earlier
 *    calls, prompt batches of 17 and 128 at position 0 and later; every call
 *    against the CPU, the caches the GPU wrote (downloaded) equal to the
 *    CPU's byte for byte over the filled positions (the conversions F32 ->
 *    F16 and F32 -> Q8_0 are defined to the bit: round to nearest even;
 *    d = amax / 127, q = roundf(x / d) as quant_ref.c), and the three call
 *    sequences giving bit-identical outputs at the positions they share
 *    (backend.h: a token's output does not depend on n_tok);
 *  - error paths: absurd allocations return NULL and leave the backend
 *    working (sync HY_OK), a device that does not exist is refused.
 *
 * Every GPU output buffer is filled with NaN before the call (an element the
 * kernel does not write stays NaN), the K/V caches with 0xff bytes (NaN in
 * all three types: a kernel that lets a position past pos0 + t contribute
 * gives NaN). No output may hold NaN or inf; after each case backend_sync
 * must return HY_OK (a backend that fails is skipped from then on).
 *
 * Metric: e = ||gpu - cpu||_2 / ||cpu||_2 over one call's output. Bounds
 * (measured maxima are printed in a table at the end, to tighten them):
 *
 *   op, type              bound   why
 *   matmul quantized      3e-2    the CPU converts x to Q8_0 / Q8_1 / Q8_K (vec_dot_type),
 *                                 the GPU may keep F32 or F16 x: e(cpu, exact) measures
 *                                 0.5-0.6 % (Q8_0/Q8_1) and 0.7 % (Q8_K) on N(0,1) x;
 *                                 a GPU quantizing x itself (Q8_1, as llama.cpp's MMVQ)
 *                                 adds an independent 0.55 %: <= ~0.9 %; x3 for cases
 *                                 with few outputs (>= 14 here)
 *   matmul BF16           8e-3    the CPU rounds x to BF16 (1.7e-3 measured)
 *   matmul F16            1.5e-3  the CPU rounds x to F16 (2.0e-4 measured against F32 x)
 *   matmul F32 matvec     1e-5    F32 both sides: summation order only (1.6e-7 measured)
 *   matmul F32 gemm       2e-3    n_tok > 8 goes through F16 tiles and cuBLAS: F16
 *                                 rounding of w and x (3.3e-4 measured); TF32 the same
 *   get_rows              1e-6    dequantization in F32: last-bit differences (FMA)
 *   rms_norm, softmax,    1e-5    F32 with another summation order, expf vs __expf
 *   silu_mul
 *   add                   1e-6    y + a*x rounded once (FMA) or twice
 *   moe_token             3e-2    the quantized matmul's: products of Q4_K/Q6_K slices
 *   moe_routed            3e-2    the same products, slices found on the device
 *   rope                  1e-6 + 2e-8 * last position
 *                                 the CPU takes angles in double; an angle computed in
 *                                 float (as llama.cpp) is off by ~pos * 2^-24 rad:
 *                                 7e-6 measured at 1000, 1.8e-4 at 30000
 *   attention F32         2e-5    F32 throughout; 3e-7 against a double reference
 *   attention F16         2e-3    the CPU rounds q and the softmax weights to F16 (5e-4
 *                                 against F32 arithmetic, q ~ 2 N(0,1))
 *   attention Q8_0        4e-2    the CPU quantizes q to Q8_0: 1.1e-2 per decode call
 *                                 against F32 q (q ~ 2 N(0,1))
 *
 * The K/V caches must match exactly; outputs of the same positions from
 * different call sequences must match exactly (backend.h's contract).
 *
 * Inputs are fresh per case from the printed seed (xoshiro256**, seeded by
 * splitmix64 from the run's seed: `test_cuda_ops SEED` repeats a run).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "check.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "quant/quant.h"

#define TEST_SKIP 77

#ifndef HY_HAVE_CUDA

int main(int argc, char **argv)
{
    (void)argc;
    printf("%s: built without CUDA (HY_CUDA=OFF): skipped\n", argv[0]);
    return TEST_SKIP;
}

#else

/* CUQ_MATVEC_MAX_TOK (cuda_kernels.h): matvec up to here, cuBLAS above */
#define MATVEC_MAX_TOK 8
#define MAX_TOK        512
#define MAX_COLS       14336
#define MAX_CTX        1024
#define MAX_HD         128
#define ATT_MAX_HD     256 /* attention's largest head (the backend's limit) */
#define N_BUF          6
#define BUF_FLOATS     ((size_t)4 << 20) /* each device scratch buffer: 16 MiB */
#define CACHE_BIG      ((uint64_t)256 << 20)
#define CACHE_SMALL    ((uint64_t)1 << 20)
#define SLOT_SMALL     ((uint64_t)256 << 10)

#define BOUND_MM_QUANT      3e-2
#define BOUND_MM_BF16       8e-3
#define BOUND_MM_F16        1.5e-3
#define BOUND_MM_F32_MATVEC 1e-5
#define BOUND_MM_F32_GEMM   2e-3
#define BOUND_GET_ROWS      1e-6
#define BOUND_F32_OP        1e-5
#define BOUND_ADD           1e-6
#define BOUND_ATT_F32       2e-5
#define BOUND_ATT_F16       2e-3
#define BOUND_ATT_Q8_0      4e-2

/* The CUDA backends under test: one per host policy, and two weight caches. */
enum gpu_kind { G_AUTO, G_CPU, G_COPY, G_SLOT, G_CACHE, G_SMALL, G_HALF, G_ROWS, G_DOWN, N_GPU };

static const struct {
    const char *name;
    enum cuda_host_policy policy;
    uint64_t cache_bytes, slot_bytes;
    bool cache_later; /* the cache given by cuda_backend_set_weight_cache, as the engine does */
    enum cuda_moe_half half;
} gpu_cfg[N_GPU] = {
    [G_AUTO] = {"auto", CUDA_HOST_AUTO, 0, 0, false},
    [G_CPU] = {"host-cpu", CUDA_HOST_CPU, 0, 0, false},
    [G_COPY] = {"host-copy", CUDA_HOST_COPY, 0, 0, false},
    [G_SLOT] = {"copy-256KiB-slots", CUDA_HOST_COPY, 0, SLOT_SMALL, false},
    [G_CACHE] = {"cache-256MiB", CUDA_HOST_AUTO, CACHE_BIG, 0, false},
    [G_SMALL] = {"cache-1MiB", CUDA_HOST_AUTO, CACHE_SMALL, 0, true},
    /* moe_token: every expert in RAM split, gate and up on the CPU */
    [G_HALF] = {"halves", CUDA_HOST_AUTO, 0, 0, false, CUDA_MOE_HALF_ALL},
    /* the same, half of each one's gate and up rows copied and computed on the GPU */
    [G_ROWS] = {"halves-rows", CUDA_HOST_AUTO, 0, 0, false, CUDA_MOE_HALF_ROWS},
    /* the same, half of each one's down rows computed on the CPU */
    [G_DOWN] = {"halves-down", CUDA_HOST_AUTO, 0, 0, false, CUDA_MOE_HALF_DOWN},
};

static struct {
    struct backend *cpu;
    struct threadpool *pool; /* quantizes the test weights */
    struct backend *gpu[N_GPU];
    bool dead[N_GPU];         /* failed (create, alloc or sync): skipped from then on */
    float *buf[N_GPU][N_BUF]; /* device scratch, BUF_FLOATS floats each */
    float *poison;            /* host, BUF_FLOATS quiet NaNs */
    uint64_t seed0, n_case, next_key;
    int n_threads;
} T;

/* ---- helpers ----------------------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    HY_ASSERT(p);
    return p;
}

static uint64_t case_seed(void)
{
    return T.seed0 + 0x9e3779b97f4a7c15ull * ++T.n_case;
}

static void fill_normal(struct rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(r) * scale;
}

static bool live(int g)
{
    return T.gpu[g] && !T.dead[g];
}

/* Waits for backend g; a failure is reported once and the backend skipped from then on. */
static bool gpu_sync(int g, const char *what)
{
    if (!live(g)) return false;
    if (!CHECK_OK(backend_sync(T.gpu[g]))) {
        fprintf(stderr, "  backend %s, after %s: its later cases are skipped\n", gpu_cfg[g].name,
                what);
        T.dead[g] = true;
        return false;
    }
    return true;
}

static void gpu_poison(int g, void *dst, size_t n_floats)
{
    HY_ASSERT(n_floats <= BUF_FLOATS);
    backend_upload(T.gpu[g], dst, T.poison, n_floats * sizeof(float));
}

/* Largest measured error per check name, for the table at the end. */
struct tally {
    char name[48];
    double bound, max;
    long n, failed;
};
static struct tally tallies[160];
static int n_tallies;

static struct tally *tally_get(const char *name, double bound)
{
    for (int i = 0; i < n_tallies; i++)
        if (!strcmp(tallies[i].name, name)) return &tallies[i];
    HY_ASSERT(n_tallies < (int)HY_ARRAY_LEN(tallies));
    struct tally *t = &tallies[n_tallies++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->bound = bound;
    return t;
}

/* e(got, want) with the checks: every element finite (the NaN poison
 * overwritten), e <= bound. Returns e (inf when an element is not finite). */
static double check_close(const char *tally_name, double bound, const float *got, const float *want,
                          size_t n, const char *what)
{
    double num = 0.0, den = 0.0, worst = -1.0;
    size_t n_bad = 0, first_bad = 0, worst_i = 0, n_ref_bad = 0;
    for (size_t i = 0; i < n; i++) n_ref_bad += !isfinite(want[i]);
    if (!CHECK(n_ref_bad == 0))
        fprintf(stderr, "  %s: %zu CPU reference values are not finite (a test bug)\n", what,
                n_ref_bad);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            if (!n_bad++) first_bad = i;
            continue;
        }
        const double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
        if (fabs(d) > worst) {
            worst = fabs(d);
            worst_i = i;
        }
    }
    double e = den > 0.0 ? sqrt(num / den) : sqrt(num);
    if (n_bad) e = INFINITY;
    struct tally *t = tally_get(tally_name, bound);
    t->n++;
    if (e > t->max || isnan(t->max)) t->max = e;
    bool ok = true;
    if (!CHECK(n_bad == 0)) {
        fprintf(stderr,
                "  %s: %zu of %zu outputs NaN/inf, the first at index %zu (%g; CPU %g)\n"
                "  (outputs are poisoned with NaN before the call: an element not written, or a\n"
                "  cache position past pos0 + t (0xff bytes) read into the result)\n",
                what, n_bad, n, first_bad, (double)got[first_bad], (double)want[first_bad]);
        ok = false;
    }
    if (!check_true(n_bad || e <= bound, "error <= bound", __FILE__, __LINE__)) {
        fprintf(stderr,
                "  %s: error %.3g above the bound %.3g; largest difference at index %zu: "
                "GPU %.9g, CPU %.9g\n",
                what, e, bound, worst_i, (double)got[worst_i], (double)want[worst_i]);
        ok = false;
    }
    if (!ok) t->failed++;
    return e;
}

/* "1.2e-03", "-" (not run), "inf" (NaN outputs). */
static const char *fmt_err(char *buf, size_t cap, double e)
{
    if (isnan(e))
        snprintf(buf, cap, "-");
    else if (isinf(e))
        snprintf(buf, cap, "inf");
    else
        snprintf(buf, cap, "%.1e", e);
    return buf;
}

/* ---- test weights ------------------------------------------------------------ */

struct tweight {
    struct backend_weight w; /* the host view */
    void *host;              /* owned, page-aligned */
    size_t bytes, alloc_bytes;
};

struct quant_job {
    const struct quant_traits *tr;
    int64_t rows, cols;
    float scale;
    uint64_t seed;
    uint8_t *dst;
    size_t row_bytes;
};

/* Row i from its own stream (seed, i): the weight does not depend on the thread count. */
static void quant_worker(void *arg, int ith, int nth)
{
    const struct quant_job *j = arg;
    float *row = xmalloc(sizeof(float) * (size_t)j->cols);
    for (int64_t i = j->rows * ith / nth; i < j->rows * (ith + 1) / nth; i++) {
        struct rng r;
        rng_init(&r, j->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
        fill_normal(&r, row, (size_t)j->cols, j->scale);
        j->tr->from_float(row, j->dst + (size_t)i * j->row_bytes, j->cols);
    }
    free(row);
}

/* rows x cols of N(0, scale) values quantized to type by the reference quantizer. */
static void tweight_make(struct rng *r, uint32_t type, int64_t rows, int64_t cols, float scale,
                         struct tweight *tw)
{
    const struct quant_traits *tr = quant_traits(type);
    HY_ASSERT(tr && tr->from_float && cols % tr->block_size == 0);
    const size_t row_bytes = (size_t)quant_bytes(type, (uint64_t)cols);
    tw->bytes = row_bytes * (size_t)rows;
    tw->alloc_bytes = (size_t)base_align_up(tw->bytes, 4096);
    tw->host = mem_aligned_alloc(4096, tw->alloc_bytes);
    HY_ASSERT(tw->host);
    struct quant_job job = {tr, rows, cols, scale, rng_u64(r), tw->host, row_bytes};
    if (rows * cols < 65536)
        quant_worker(&job, 0, 1);
    else
        threadpool_run(T.pool, quant_worker, &job);
    tw->w = (struct backend_weight){tw->host,         type, cols, rows, row_bytes, "test weight",
                                    BACKEND_MEM_HOST, 0,    false};
}

static void tweight_free(struct tweight *tw)
{
    mem_aligned_free(tw->host);
}

/* The weight copied to backend g's memory; NULL (checked) when alloc fails. */
static void *tweight_upload(int g, const struct tweight *tw, struct backend_weight *w)
{
    struct backend *be = T.gpu[g];
    void *d = be->ops->alloc(be, tw->bytes);
    if (!CHECK(d != NULL)) {
        fprintf(stderr, "  %s: alloc of %zu bytes failed\n", gpu_cfg[g].name, tw->bytes);
        return NULL;
    }
    backend_upload(be, d, tw->host, tw->bytes);
    *w = tw->w;
    w->data = d;
    w->mem = BACKEND_MEM_BACKEND;
    return d;
}

/* ---- matmul ------------------------------------------------------------------- */

static double matmul_bound(uint32_t type, bool gemm)
{
    switch (type) {
    case HY_TYPE_F32:
        return gemm ? BOUND_MM_F32_GEMM : BOUND_MM_F32_MATVEC;
    case HY_TYPE_F16:
        return BOUND_MM_F16;
    case HY_TYPE_BF16:
        return BOUND_MM_BF16;
    default:
        return BOUND_MM_QUANT;
    }
}

/* One matmul on backend g (x uploaded, the output poisoned) against want. */
static double gpu_matmul(int g, const struct backend_weight *w, const float *x, int64_t n_tok,
                         const float *want, float *got, const char *tally_name, double bound,
                         const char *what)
{
    if (!live(g)) return NAN;
    struct backend *be = T.gpu[g];
    const size_t nx = (size_t)(n_tok * w->n_cols), ny = (size_t)(n_tok * w->n_rows);
    HY_ASSERT(nx <= BUF_FLOATS && ny <= BUF_FLOATS);
    backend_upload(be, T.buf[g][0], x, nx * sizeof(float));
    gpu_poison(g, T.buf[g][1], ny);
    backend_matmul(be, w, T.buf[g][0], n_tok, T.buf[g][1]);
    backend_download(be, T.buf[g][1], got, ny * sizeof(float));
    char label[256];
    snprintf(label, sizeof label, "%s on %s", what, gpu_cfg[g].name);
    if (!gpu_sync(g, label)) return NAN;
    return check_close(tally_name, bound, got, want, ny, label);
}

/* e(y, exact) on a sample of outputs (up to 4 tokens x 48 rows, the first and
 * last rows included), exact = the weights as stored times x, in double: what
 * each side's activation conversion costs (printed, not checked). */
static double sample_err_exact(const struct backend_weight *w, const float *x, int64_t n_tok,
                               const float *y)
{
    const struct quant_traits *tr = quant_traits(w->type);
    const int64_t nt = HY_MIN(n_tok, (int64_t)4), nr = HY_MIN(w->n_rows, (int64_t)48);
    float *row = xmalloc(sizeof(float) * (size_t)w->n_cols);
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < nr; i++) {
        const int64_t r = nr > 1 ? i * (w->n_rows - 1) / (nr - 1) : 0;
        tr->to_float((const uint8_t *)w->data + (size_t)r * w->row_bytes, row, w->n_cols);
        for (int64_t t = 0; t < nt; t++) {
            const int64_t tt = nt > 1 ? t * (n_tok - 1) / (nt - 1) : 0;
            double s = 0.0;
            for (int64_t c = 0; c < w->n_cols; c++) s += (double)row[c] * x[tt * w->n_cols + c];
            const double d = (double)y[tt * w->n_rows + r] - s;
            num += d * d;
            den += s * s;
        }
    }
    free(row);
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void host_stats_check(int g, const struct cuda_backend_stats *s0,
                             const struct cuda_backend_stats *s1, size_t bytes, const char *what)
{
    const uint64_t dc = s1->host_cpu_bytes - s0->host_cpu_bytes;
    const uint64_t dp = s1->host_copy_bytes - s0->host_copy_bytes;
    bool ok;
    switch (gpu_cfg[g].policy) {
    case CUDA_HOST_CPU:
        ok = CHECK(dc >= bytes && dp == 0);
        break;
    case CUDA_HOST_COPY:
        ok = CHECK(dp >= bytes && dc == 0);
        break;
    default:
        ok = CHECK(dc + dp >= bytes);
        break;
    }
    if (!ok)
        fprintf(stderr,
                "  %s on %s: host weight of %zu bytes, stats: +%llu bytes computed on the CPU, "
                "+%llu copied\n",
                what, gpu_cfg[g].name, bytes, (unsigned long long)dc, (unsigned long long)dp);
}

/* Two calls with a keyed host weight on cache backend g. */
static void keyed_pair(int g, const struct backend_weight *w, const float *x, int64_t n_tok,
                       const float *want, float *got, const char *tally_name, double bound,
                       const char *what, double *e1, double *e2)
{
    *e1 = *e2 = NAN;
    if (!live(g)) return;
    const uint64_t cap = gpu_cfg[g].cache_bytes;
    const size_t bytes = (size_t)w->n_rows * w->row_bytes;
    char label[256];
    const struct cuda_backend_stats s0 = cuda_backend_stats(T.gpu[g]);
    snprintf(label, sizeof label, "%s, key %#llx, call 1", what, (unsigned long long)w->key);
    *e1 = gpu_matmul(g, w, x, n_tok, want, got, tally_name, bound, label);
    const struct cuda_backend_stats s1 = cuda_backend_stats(T.gpu[g]);
    snprintf(label, sizeof label, "%s, key %#llx, call 2", what, (unsigned long long)w->key);
    *e2 = gpu_matmul(g, w, x, n_tok, want, got, tally_name, bound, label);
    const struct cuda_backend_stats s2 = cuda_backend_stats(T.gpu[g]);
    if (!live(g)) return;
    if (!CHECK(s1.cache_bytes <= cap && s2.cache_bytes <= cap))
        fprintf(stderr, "  %s on %s: %llu bytes in a cache of %llu\n", what, gpu_cfg[g].name,
                (unsigned long long)HY_MAX(s1.cache_bytes, s2.cache_bytes),
                (unsigned long long)cap);
    if (bytes <= cap / 2) {
        /* fits: a new key misses, the same key again hits */
        if (!CHECK(s1.cache_misses == s0.cache_misses + 1 && s1.cache_hits == s0.cache_hits))
            fprintf(stderr,
                    "  %s on %s: first keyed call: misses +%llu, hits +%llu (want +1, +0)\n", what,
                    gpu_cfg[g].name, (unsigned long long)(s1.cache_misses - s0.cache_misses),
                    (unsigned long long)(s1.cache_hits - s0.cache_hits));
        if (!CHECK(s2.cache_hits == s1.cache_hits + 1))
            fprintf(stderr,
                    "  %s on %s: the second call with the same key (%zu bytes, cache %llu) "
                    "was not a hit (hits +%llu, misses +%llu)\n",
                    what, gpu_cfg[g].name, bytes, (unsigned long long)cap,
                    (unsigned long long)(s2.cache_hits - s1.cache_hits),
                    (unsigned long long)(s2.cache_misses - s1.cache_misses));
    } else if (bytes > cap) {
        if (!CHECK(s2.cache_hits == s1.cache_hits))
            fprintf(stderr, "  %s on %s: a hit for %zu bytes in a cache of %llu\n", what,
                    gpu_cfg[g].name, bytes, (unsigned long long)cap);
    }
}

/* x of N(0, x_scale) values; false (nothing checked) where the CPU's own
 * outputs are not finite at that scale (activation types that keep a
 * binary16 scale or sum). */
static bool matmul_case_x(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok, float x_scale)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    struct tweight tw;
    tweight_make(&r, type, rows, cols, 0.05f, &tw);
    const size_t nx = (size_t)(n_tok * cols), ny = (size_t)(n_tok * rows);
    float *x = xmalloc(nx * sizeof(float)), *want = xmalloc(ny * sizeof(float));
    float *got = xmalloc(ny * sizeof(float));
    fill_normal(&r, x, nx, x_scale);
    backend_matmul(T.cpu, &tw.w, x, n_tok, want);
    size_t n_inf = 0;
    for (size_t i = 0; i < ny; i++) n_inf += !isfinite(want[i]);
    if (n_inf && x_scale != 1.0f) {
        printf("matmul %-4s %5lldx%-5lld n_tok %3lld x scale %g: not run (%zu CPU outputs not "
               "finite)\n",
               quant_type_name(type), (long long)rows, (long long)cols, (long long)n_tok,
               (double)x_scale, n_inf);
        free(x);
        free(want);
        free(got);
        tweight_free(&tw);
        return false;
    }

    const bool gemm = n_tok > MATVEC_MAX_TOK;
    const double bound = matmul_bound(type, gemm);
    char tname[48], what[160], xs[32] = "";
    if (x_scale != 1.0f) snprintf(xs, sizeof xs, " x scale %g", (double)x_scale);
    snprintf(tname, sizeof tname, "matmul %s %s", quant_type_name(type), gemm ? "gemm" : "matvec");
    snprintf(what, sizeof what, "matmul %s [%lld rows x %lld cols] n_tok %lld%s (seed %#llx)",
             quant_type_name(type), (long long)rows, (long long)cols, (long long)n_tok, xs,
             (unsigned long long)seed);

    /* weights in backend memory */
    double e_dev = NAN, ex_gpu = NAN;
    if (live(G_AUTO)) {
        struct backend_weight wd;
        void *d = tweight_upload(G_AUTO, &tw, &wd);
        if (d) {
            char label[200];
            snprintf(label, sizeof label, "%s, backend memory", what);
            e_dev = gpu_matmul(G_AUTO, &wd, x, n_tok, want, got, tname, bound, label);
            if (!isnan(e_dev)) ex_gpu = sample_err_exact(&tw.w, x, n_tok, got);
            T.gpu[G_AUTO]->ops->dealloc(T.gpu[G_AUTO], d);
        }
    }
    const double ex_cpu = sample_err_exact(&tw.w, x, n_tok, want);

    /* host weights under each policy; every other case page-locked */
    bool reg = false;
    if ((T.n_case & 1) && live(G_COPY) && T.gpu[G_COPY]->ops->host_register) {
        reg = CHECK_OK(T.gpu[G_COPY]->ops->host_register(T.gpu[G_COPY], tw.host, tw.alloc_bytes));
    }
    static const int host_g[] = {G_CPU, G_COPY, G_AUTO, G_SLOT};
    double e_host[4];
    for (size_t i = 0; i < HY_ARRAY_LEN(host_g); i++) {
        const int g = host_g[i];
        e_host[i] = NAN;
        if (!live(g)) continue;
        char label[200];
        snprintf(label, sizeof label, "%s, host memory%s", what, reg ? " (registered)" : "");
        const struct cuda_backend_stats s0 = cuda_backend_stats(T.gpu[g]);
        e_host[i] = gpu_matmul(g, &tw.w, x, n_tok, want, got, tname, bound, label);
        const struct cuda_backend_stats s1 = cuda_backend_stats(T.gpu[g]);
        if (!isnan(e_host[i])) host_stats_check(g, &s0, &s1, tw.bytes, label);
    }

    /* keyed host weights through the two caches */
    struct backend_weight wk = tw.w;
    wk.key = ++T.next_key;
    double ek[4];
    keyed_pair(G_CACHE, &wk, x, n_tok, want, got, tname, bound, what, &ek[0], &ek[1]);
    keyed_pair(G_SMALL, &wk, x, n_tok, want, got, tname, bound, what, &ek[2], &ek[3]);

    if (reg) T.gpu[G_COPY]->ops->host_unregister(T.gpu[G_COPY], tw.host);

    char b[12][16];
    printf(
        "matmul %-4s %5lldx%-5lld n_tok %3lld %-6s%s seed %016llx | dev %s | host cpu %s copy %s "
        "auto %s slots %s | keyed %s/%s small-cache %s/%s | bound %.1e | vs exact: cpu %s gpu %s\n",
        quant_type_name(type), (long long)rows, (long long)cols, (long long)n_tok,
        gemm ? "gemm" : "matvec", xs, (unsigned long long)seed, fmt_err(b[0], 16, e_dev),
        fmt_err(b[1], 16, e_host[0]), fmt_err(b[2], 16, e_host[1]), fmt_err(b[3], 16, e_host[2]),
        fmt_err(b[4], 16, e_host[3]), fmt_err(b[5], 16, ek[0]), fmt_err(b[6], 16, ek[1]),
        fmt_err(b[7], 16, ek[2]), fmt_err(b[8], 16, ek[3]), bound, fmt_err(b[9], 16, ex_cpu),
        fmt_err(b[10], 16, ex_gpu));
    fflush(stdout);
    free(x);
    free(want);
    free(got);
    tweight_free(&tw);
    return true;
}

static void matmul_case(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok)
{
    matmul_case_x(type, rows, cols, n_tok, 1.0f);
}

static const uint32_t all_types[] = {HY_TYPE_F32,  HY_TYPE_F16,  HY_TYPE_BF16, HY_TYPE_Q4_0,
                                     HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0,
                                     HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K, HY_TYPE_Q5_K,
                                     HY_TYPE_Q6_K};

static bool gpu_supports(uint32_t type)
{
    bool ok = true;
    for (int g = 0; g < N_GPU; g++)
        if (T.gpu[g]) ok &= T.gpu[g]->ops->supports_type(type);
    if (!CHECK(ok)) fprintf(stderr, "  supports_type(%s) is false\n", quant_type_name(type));
    return ok;
}

static void test_matmul(void)
{
    /* a shape runs for the types whose block size divides cols */
    static const struct {
        int64_t rows, cols;
        int64_t toks[8]; /* 0-terminated */
    } shapes[] = {
        {37, 256, {1, 2, 7, 8, 9, 33, 512}},
        {100, 768, {1, 8, 9, 33}},
        {333, 2304, {1, 7, 9, 512}},
        {2500, 1024, {1, 9, 64, 512}},
        {2600, 14336, {1, 100}}, /* a padded GEMM in two tiles of rows */
        {256, 14336, {1, 9}},
        {4096, 4096, {1, 9}},
        {7, 32, {2, 9, 33}}, /* >= 14 outputs: see the bounds */
        {65, 96, {1, 8, 33, 512}},
        {129, 4000, {1, 9}},
        {65600, 256, {1, 2}}, /* one token's head: two products, the first rows down early */
    };
    for (size_t ti = 0; ti < HY_ARRAY_LEN(all_types); ti++) {
        const uint32_t type = all_types[ti];
        if (!gpu_supports(type)) continue;
        for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++) {
            if (shapes[si].cols % quant_traits(type)->block_size) continue;
            for (int k = 0; k < 8 && shapes[si].toks[k]; k++)
                matmul_case(type, shapes[si].rows, shapes[si].cols, shapes[si].toks[k]);
        }
    }
    /* activations past binary16's range (up to about 5e5): a prompt's GEMM
     * takes x in binary16, scaled into its range, and the products as the
     * CPU's (whose activation types keep scales of their own) */
    int n_large = 0;
    for (size_t ti = 0; ti < HY_ARRAY_LEN(all_types); ti++) {
        const uint32_t type = all_types[ti];
        if (!gpu_supports(type)) continue;
        static const int64_t toks[] = {1, 33, 512};
        for (size_t k = 0; k < HY_ARRAY_LEN(toks); k++)
            n_large += matmul_case_x(type, 333, 2304, toks[k], 1e5f);
    }
    if (!CHECK(n_large > 0)) fprintf(stderr, "  no type ran the large activations' case\n");
}

/* ---- matmul_fused ------------------------------------------------------------ */

/* fused_case's variants */
enum {
    FC_HOST_W = 1, /* the first weight in host memory: the unfused path */
    /* x comes from rms_norm (the CUDA backend folds it into the product when
     * it can); with one weight and FUSE_NONE, through matmul (the head) */
    FC_NORM = 2,
    FC_BIAS = 4, /* NONE: biases on the first and the last weight (q/k/v with biases) */
};

/* n_w weights of types[i] (one n_cols), kind's op after them: the CUDA op
 * (weights in backend memory, but for FC_HOST_W) against the CPU's matmul,
 * add and silu_mul, and with FC_NORM the norm's output too. Outputs
 * poisoned; ADD's y starts as N(0, 1) values. */
static void fused_case(enum backend_fuse kind, const uint32_t *types, const int64_t *rows, int n_w,
                       int64_t cols, int64_t n_tok, int flags)
{
    const bool host_w = flags & FC_HOST_W, norm = flags & FC_NORM, with_b = flags & FC_BIAS;
    HY_ASSERT(!with_b || kind == BACKEND_FUSE_NONE);
    const bool via_matmul = norm && kind == BACKEND_FUSE_NONE && n_w == 1;
    static const char *const kname[3] = {"none", "add", "swiglu"};
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    struct tweight tw[3];
    float *want[3], *got = NULL, *x = xmalloc(sizeof(float) * (size_t)(n_tok * cols));
    int64_t max_rows = 0;
    for (int i = 0; i < n_w; i++) {
        tweight_make(&r, types[i], rows[i], cols, 0.05f, &tw[i]);
        want[i] = xmalloc(sizeof(float) * (size_t)(n_tok * rows[i]));
        max_rows = HY_MAX(max_rows, rows[i]);
    }
    got = xmalloc(sizeof(float) * (size_t)(n_tok * max_rows));
    fill_normal(&r, x, (size_t)(n_tok * cols), 1.0f);
    /* FC_NORM: x is the raw input, xn the normed one the products take */
    float *nw = xmalloc(sizeof(float) * (size_t)cols),
          *xn = xmalloc(sizeof(float) * (size_t)(n_tok * cols));
    const float eps = 1e-5f;
    memcpy(xn, x, sizeof(float) * (size_t)(n_tok * cols));
    if (norm) {
        for (int64_t t = 0; t < n_tok; t++) /* rows of different magnitudes */
            for (int64_t i = 0; i < cols; i++) xn[t * cols + i] *= t % 2 ? 7.0f : 0.3f;
        memcpy(x, xn, sizeof(float) * (size_t)(n_tok * cols));
        for (int64_t i = 0; i < cols; i++) nw[i] = 1.0f + 0.3f * (float)rng_normal(&r);
        backend_rms_norm(T.cpu, x, nw, eps, n_tok, cols, xn);
    }
    const size_t n0 = (size_t)(n_tok * rows[0]);
    float *y0 = xmalloc(sizeof(float) * n0),
          *tmp = xmalloc(sizeof(float) * (size_t)(n_tok * max_rows));
    fill_normal(&r, y0, n0, 1.0f);
    float *bias[3] = {NULL, NULL, NULL};
    for (int i = 0; with_b && i < n_w; i++)
        if (i == 0 || i == n_w - 1) {
            bias[i] = xmalloc(sizeof(float) * (size_t)rows[i]);
            fill_normal(&r, bias[i], (size_t)rows[i], 0.5f);
        }
    /* the CPU's separate ops */
    if (kind == BACKEND_FUSE_NONE) {
        for (int i = 0; i < n_w; i++) {
            backend_matmul(T.cpu, &tw[i].w, xn, n_tok, want[i]);
            if (bias[i]) backend_add_bias(T.cpu, want[i], bias[i], n_tok, rows[i]);
        }
    } else if (kind == BACKEND_FUSE_ADD) {
        memcpy(want[0], y0, n0 * sizeof(float));
        backend_matmul(T.cpu, &tw[0].w, xn, n_tok, tmp);
        backend_add(T.cpu, want[0], tmp, 1.0f, (int64_t)n0);
    } else {
        backend_matmul(T.cpu, &tw[0].w, xn, n_tok, want[0]);
        backend_matmul(T.cpu, &tw[1].w, xn, n_tok, tmp);
        backend_silu_mul(T.cpu, want[0], tmp, (int64_t)n0);
    }
    const int n_out = kind == BACKEND_FUSE_NONE ? n_w : 1;
    char what[200], tname[48];
    snprintf(what, sizeof what,
             "%s%s %s%s, %d x %s..., rows %lld/%lld/%lld x %lld, n_tok %lld%s (seed %#llx)",
             norm ? "rms_norm + " : "", via_matmul ? "matmul" : "matmul_fused", kname[kind],
             with_b ? " with biases" : "", n_w, quant_type_name(types[0]), (long long)rows[0],
             (long long)(n_w > 1 ? rows[1] : 0), (long long)(n_w > 2 ? rows[2] : 0),
             (long long)cols, (long long)n_tok, host_w ? ", first weight in host memory" : "",
             (unsigned long long)seed);
    /* a sum of two products' errors for swiglu */
    const double bound =
        matmul_bound(types[0], n_tok > MATVEC_MAX_TOK) * (kind == BACKEND_FUSE_SWIGLU ? 2 : 1);
    snprintf(tname, sizeof tname, "%s %s %s", norm ? "norm+matmul_fused" : "matmul_fused",
             kname[kind], quant_type_name(types[0]));
    double e = NAN;
    if (live(G_AUTO)) {
        struct backend *be = T.gpu[G_AUTO];
        struct backend_weight wd[3];
        void *d[3] = {NULL, NULL, NULL}, *db[3] = {NULL, NULL, NULL};
        bool ok = true;
        for (int i = 0; i < n_w; i++) {
            if (!bias[i]) continue;
            const size_t bb = sizeof(float) * (size_t)rows[i];
            ok &= (db[i] = be->ops->alloc(be, bb)) != NULL;
            if (db[i]) backend_upload(be, db[i], bias[i], bb);
        }
        for (int i = 0; i < n_w; i++) {
            if (i == 0 && host_w) {
                wd[0] = tw[0].w;
                continue;
            }
            ok &= (d[i] = tweight_upload(G_AUTO, &tw[i], &wd[i])) != NULL;
        }
        float *const *b = T.buf[G_AUTO];
        HY_ASSERT(n_w <= 3 && (size_t)(n_tok * max_rows) <= BUF_FLOATS);
        if (ok) {
            backend_upload(be, b[0], x, sizeof(float) * (size_t)(n_tok * cols));
            float *xin = b[0];
            if (norm) { /* b[5] = rms_norm(b[0]) */
                backend_upload(be, b[4], nw, sizeof(float) * (size_t)cols);
                gpu_poison(G_AUTO, b[5], (size_t)(n_tok * cols));
                backend_rms_norm(be, b[0], b[4], eps, n_tok, cols, b[5]);
                xin = b[5];
            }
            float *ys[3] = {b[1], b[2], b[3]};
            for (int i = 0; i < n_out; i++) gpu_poison(G_AUTO, ys[i], (size_t)(n_tok * rows[i]));
            if (kind == BACKEND_FUSE_ADD) backend_upload(be, ys[0], y0, n0 * sizeof(float));
            /* scratch for the unfused paths: the third buffer when it holds no output */
            float *scratch = n_out < 3 ? b[3] : NULL;
            if (scratch) gpu_poison(G_AUTO, scratch, (size_t)(n_tok * rows[0]));
            if (via_matmul)
                backend_matmul(be, &wd[0], xin, n_tok, ys[0]);
            else
                be->ops->matmul_fused(be, kind, wd, n_w, xin, n_tok, ys,
                                      with_b ? (const float *const *)db : NULL, scratch);
            e = 0.0;
            if (norm) { /* the norm's output is there too (a folded norm stores it) */
                float *gx = xmalloc(sizeof(float) * (size_t)(n_tok * cols));
                backend_download(be, xin, gx, sizeof(float) * (size_t)(n_tok * cols));
                char label[240];
                snprintf(label, sizeof label, "%s: the norm's output", what);
                if (gpu_sync(G_AUTO, label))
                    e = check_close("rms_norm before a product", BOUND_F32_OP, gx, xn,
                                    (size_t)(n_tok * cols), label);
                else
                    e = NAN;
                free(gx);
            }
            for (int i = 0; i < n_out && !isnan(e); i++) {
                backend_download(be, ys[i], got, sizeof(float) * (size_t)(n_tok * rows[i]));
                char label[240];
                snprintf(label, sizeof label, "%s: output %d", what, i);
                if (!gpu_sync(G_AUTO, label)) {
                    e = NAN;
                    break;
                }
                /* one check a output (HY_MAX would evaluate it twice) */
                const double ei =
                    check_close(tname, bound, got, want[i], (size_t)(n_tok * rows[i]), label);
                e = HY_MAX(e, ei);
            }
        }
        for (int i = 0; i < n_w; i++) {
            if (d[i]) be->ops->dealloc(be, d[i]);
            if (db[i]) be->ops->dealloc(be, db[i]);
        }
    }
    char eb[16];
    printf("%s: %s (bound %.1e)\n", what, fmt_err(eb, sizeof eb, e), bound);
    for (int i = 0; i < n_w; i++) {
        tweight_free(&tw[i]);
        free(want[i]);
        free(bias[i]);
    }
    free(got);
    free(x);
    free(xn);
    free(nw);
    free(y0);
    free(tmp);
}

static void test_matmul_fused(void)
{
    static const int64_t toks[] = {1, 3, 8, 9};
    for (size_t ti = 0; ti < HY_ARRAY_LEN(all_types); ti++) {
        const uint32_t t = all_types[ti], t3[3] = {t, t, t};
        if (!gpu_supports(t)) continue;
        for (size_t k = 0; k < HY_ARRAY_LEN(toks); k++) {
            const int64_t qkv[3] = {64, 16, 16}, gu[2] = {352, 352}, o[1] = {96};
            fused_case(BACKEND_FUSE_NONE, t3, qkv, 3, 256, toks[k], 0);
            fused_case(BACKEND_FUSE_NONE, t3, qkv, 3, 256, toks[k], FC_BIAS);
            fused_case(BACKEND_FUSE_SWIGLU, t3, gu, 2, 512, toks[k], 0);
            fused_case(BACKEND_FUSE_ADD, t3, o, 1, 768, toks[k], 0);
            /* the decode's norms before q/k/v, gate/up and the head */
            fused_case(BACKEND_FUSE_NONE, t3, qkv, 3, 256, toks[k], FC_NORM);
            fused_case(BACKEND_FUSE_SWIGLU, t3, gu, 2, 512, toks[k], FC_NORM);
            fused_case(BACKEND_FUSE_NONE, t3, o, 1, 768, toks[k], FC_NORM);
        }
        const int64_t qkv[3] = {4096, 1024, 1024}, gu[2] = {2816, 2816}, o[1] = {4096};
        fused_case(BACKEND_FUSE_NONE, t3, qkv, 3, 4096, 1, 0);
        fused_case(BACKEND_FUSE_NONE, t3, qkv, 3, 4096, 1, FC_BIAS | FC_NORM);
        fused_case(BACKEND_FUSE_SWIGLU, t3, gu, 2, 4096, 1, 0);
        fused_case(BACKEND_FUSE_ADD, t3, o, 1, 2816, 2, 0);
        fused_case(BACKEND_FUSE_SWIGLU, t3, gu, 2, 4096, 1, FC_NORM);
        fused_case(BACKEND_FUSE_NONE, t3, o, 1, 4096, 1, FC_NORM);
        /* products of llama-3-8b's gate/up and down shapes, one token (on an
         * H100 down takes 2 warps a row) */
        const int64_t gu8[2] = {4096, 4096}, down[1] = {4096};
        fused_case(BACKEND_FUSE_SWIGLU, t3, gu8, 2, 4096, 1, FC_NORM);
        fused_case(BACKEND_FUSE_ADD, t3, down, 1, 14336, 1, 0);
        /* the head after the output norm, one token: two products, the first
         * folding the norm where the type can */
        const int64_t head[1] = {65600};
        fused_case(BACKEND_FUSE_NONE, t3, head, 1, 256, 1, FC_NORM);
        /* an MoE router and a second weight after the FFN norm (a float
         * router folds it; the second has 4 rows, not the shared expert's
         * gate's one: an error normalized over one output is that output's
         * relative error, large where its sum cancels) */
        const int64_t router[2] = {60, 4};
        fused_case(BACKEND_FUSE_NONE, t3, router, 2, 2048, 1, FC_NORM);
    }
    /* mixed types (one kernel per type), a host weight (the unfused path) */
    const uint32_t mixed[3] = {HY_TYPE_Q4_K, HY_TYPE_Q4_K, HY_TYPE_Q6_K};
    const int64_t qkv[3] = {512, 128, 128}, gu[2] = {704, 704}, o[1] = {256};
    fused_case(BACKEND_FUSE_NONE, mixed, qkv, 3, 1024, 1, 0);
    fused_case(BACKEND_FUSE_NONE, mixed, qkv, 3, 1024, 2, FC_BIAS);
    fused_case(BACKEND_FUSE_SWIGLU, mixed, gu, 2, 1024, 1, FC_HOST_W);
    fused_case(BACKEND_FUSE_ADD, mixed + 2, o, 1, 1024, 2, FC_HOST_W);
    /* a norm before products of two types (the first kernel folds it), and before
     * a host weight (no kernel folds it) */
    fused_case(BACKEND_FUSE_NONE, mixed, qkv, 3, 1024, 1, FC_NORM);
    fused_case(BACKEND_FUSE_NONE, mixed, qkv, 3, 1024, 1, FC_NORM | FC_BIAS);
    fused_case(BACKEND_FUSE_SWIGLU, mixed, gu, 2, 1024, 1, FC_HOST_W | FC_NORM);
    /* one token's q/k/v of two types after the norm (one launch where the
     * types pair, each share folding the norm; else the first type's
     * kernel folds it, the other's reads its output), either order and
     * interleaved, at decode shapes (llama-3-8b, qwen2.5-14b with its
     * biases, qwen1.5-moe); q beside k and v of Q8_0 (Mixtral's Q4_K_M),
     * either order */
    static const uint32_t pairs[][3] = {
        {HY_TYPE_Q4_K, HY_TYPE_Q4_K, HY_TYPE_Q6_K}, {HY_TYPE_Q5_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K},
        {HY_TYPE_Q6_K, HY_TYPE_Q6_K, HY_TYPE_Q4_K}, {HY_TYPE_Q4_K, HY_TYPE_Q6_K, HY_TYPE_Q4_K},
        {HY_TYPE_Q4_K, HY_TYPE_Q4_K, HY_TYPE_Q8_0}, {HY_TYPE_Q4_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K},
        {HY_TYPE_Q4_K, HY_TYPE_Q8_0, HY_TYPE_Q8_0}, {HY_TYPE_Q8_0, HY_TYPE_Q8_0, HY_TYPE_Q5_K}};
    const int64_t l3[3] = {4096, 1024, 1024}, q14[3] = {5120, 1024, 1024},
                  qm[3] = {2048, 2048, 2048}, small[3] = {256, 64, 64};
    for (size_t i = 0; i < HY_ARRAY_LEN(pairs); i++) {
        fused_case(BACKEND_FUSE_NONE, pairs[i], l3, 3, 4096, 1, FC_NORM);
        fused_case(BACKEND_FUSE_NONE, pairs[i], small, 3, 256, 1, FC_NORM | FC_BIAS);
    }
    fused_case(BACKEND_FUSE_NONE, pairs[0], q14, 3, 5120, 1, FC_NORM | FC_BIAS);
    fused_case(BACKEND_FUSE_NONE, pairs[1], qm, 3, 2048, 1, FC_NORM);
    fused_case(BACKEND_FUSE_NONE, pairs[3], qm, 2, 2048, 1, FC_NORM);
}

/* ---- route ---------------------------------------------------------------------- */

/* Logits of test_route: normal, or with ties (ROUTE_TIES: multiples of
 * 0.5, so that picks tie on equal probabilities and go to the lower
 * expert), or with all but ROUTE_FEW of a row far below (ROUTE_ZEROS: their
 * probabilities underflow to 0, and the picks past the few tie at 0). */
enum { ROUTE_NORMAL, ROUTE_TIES, ROUTE_ZEROS, ROUTE_FEW = 5 };

static void test_route(void)
{
    static const struct {
        int64_t n_tok, n, k;
        bool renorm;
        int logits;
    } cases[] = {
        {1, 8, 2, true, ROUTE_NORMAL},    {7, 8, 2, true, ROUTE_NORMAL},
        {1, 60, 4, false, ROUTE_NORMAL},  {64, 60, 4, true, ROUTE_NORMAL},
        {3, 128, 8, true, ROUTE_NORMAL},  {1, 256, 8, false, ROUTE_NORMAL},
        {33, 256, 1, true, ROUTE_NORMAL}, {2, 2048, 32, true, ROUTE_NORMAL},
        {16, 128, 8, true, ROUTE_TIES},   {16, 60, 4, false, ROUTE_TIES},
        {16, 2048, 32, true, ROUTE_TIES}, {8, 128, 8, true, ROUTE_ZEROS},
        {8, 60, 16, false, ROUTE_ZEROS},
    };
    for (size_t ci = 0; ci < HY_ARRAY_LEN(cases); ci++) {
        const int64_t nt = cases[ci].n_tok, n = cases[ci].n, k = cases[ci].k;
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *x = xmalloc(sizeof(float) * (size_t)(nt * n)),
              *p_cpu = xmalloc(sizeof(float) * (size_t)(nt * n));
        float *p_gpu = xmalloc(sizeof(float) * (size_t)(nt * n));
        int32_t *id_cpu = xmalloc(sizeof(int32_t) * (size_t)(nt * k)),
                *id_gpu = xmalloc(sizeof(int32_t) * (size_t)(nt * k));
        float *w_cpu = xmalloc(sizeof(float) * (size_t)(nt * k)),
              *w_gpu = xmalloc(sizeof(float) * (size_t)(nt * k));
        fill_normal(&r, x, (size_t)(nt * n), 2.0f);
        for (int64_t i = 0; i < nt * n; i++) {
            if (cases[ci].logits == ROUTE_TIES) x[i] = 0.5f * roundf(x[i]);
            if (cases[ci].logits == ROUTE_ZEROS && i % n >= ROUTE_FEW) x[i] = -200.0f;
        }
        memcpy(p_cpu, x, sizeof(float) * (size_t)(nt * n));
        backend_route(T.cpu, p_cpu, nt, n, k, cases[ci].renorm, id_cpu, w_cpu);
        static const char *const kind[] = {"", ", logits with ties", ", most probabilities 0"};
        char what[192];
        snprintf(what, sizeof what,
                 "route %lld tokens over %lld experts, top %lld%s%s (seed %#llx)", (long long)nt,
                 (long long)n, (long long)k, cases[ci].renorm ? ", renormalised" : "",
                 kind[cases[ci].logits], (unsigned long long)seed);
        double e = NAN;
        if (live(G_AUTO)) {
            struct backend *be = T.gpu[G_AUTO];
            float *const *b = T.buf[G_AUTO];
            backend_upload(be, b[0], x, sizeof(float) * (size_t)(nt * n));
            gpu_poison(G_AUTO, b[1], (size_t)(nt * k));
            gpu_poison(G_AUTO, b[2], (size_t)(nt * k));
            backend_route(be, b[0], nt, n, k, cases[ci].renorm, (int32_t *)b[1], b[2]);
            backend_download(be, b[0], p_gpu, sizeof(float) * (size_t)(nt * n));
            backend_download(be, b[1], id_gpu, sizeof(int32_t) * (size_t)(nt * k));
            backend_download(be, b[2], w_gpu, sizeof(float) * (size_t)(nt * k));
            if (gpu_sync(G_AUTO, what)) {
                e = check_close("route probabilities", BOUND_F32_OP, p_gpu, p_cpu, (size_t)(nt * n),
                                what);
                const double ew = check_close("route weights", BOUND_F32_OP, w_gpu, w_cpu,
                                              (size_t)(nt * k), what);
                e = HY_MAX(e, ew);
                for (int64_t i = 0; i < nt * k; i++)
                    if (!CHECK(id_gpu[i] == id_cpu[i])) {
                        fprintf(stderr, "  %s: token %lld pick %lld: GPU expert %d, CPU %d\n", what,
                                (long long)(i / k), (long long)(i % k), id_gpu[i], id_cpu[i]);
                        break;
                    }
            }
        }
        char eb[16];
        printf("%s: %s\n", what, fmt_err(eb, sizeof eb, e));
        free(x);
        free(p_cpu);
        free(p_gpu);
        free(id_cpu);
        free(id_gpu);
        free(w_cpu);
        free(w_gpu);
    }
}

/* ---- get_rows ------------------------------------------------------------------ */

static void get_rows_case(uint32_t type, int64_t rows, int64_t cols, int64_t n)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    struct tweight tw;
    tweight_make(&r, type, rows, cols, 1.0f, &tw);
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)rng_below(&r, (uint64_t)rows);
    ids[0] = (int32_t)(rows - 1);
    if (n > 1) ids[1] = 0;
    if (n > 3) ids[n - 1] = ids[2]; /* a repeat */
    const size_t ny = (size_t)(n * cols);
    float *want = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
    backend_get_rows(T.cpu, &tw.w, ids, n, want);
    char what[160], tname[48];
    snprintf(what, sizeof what, "get_rows %s [%lld x %lld] %lld ids (seed %#llx)",
             quant_type_name(type), (long long)rows, (long long)cols, (long long)n,
             (unsigned long long)seed);
    snprintf(tname, sizeof tname, "get_rows %s", quant_type_name(type));
    /* variant 0: backend memory on auto; 1..4: host memory on each policy */
    static const int vg[] = {G_AUTO, G_CPU, G_COPY, G_AUTO, G_SLOT};
    double e[5];
    for (size_t v = 0; v < HY_ARRAY_LEN(vg); v++) {
        const int g = vg[v];
        e[v] = NAN;
        if (!live(g)) continue;
        struct backend *be = T.gpu[g];
        struct backend_weight w = tw.w;
        void *d = NULL;
        if (v == 0 && !(d = tweight_upload(g, &tw, &w))) continue;
        char label[240];
        snprintf(label, sizeof label, "%s, %s memory on %s", what, v ? "host" : "backend",
                 gpu_cfg[g].name);
        gpu_poison(g, T.buf[g][1], ny);
        backend_get_rows(be, &w, ids, n, T.buf[g][1]);
        backend_download(be, T.buf[g][1], got, ny * sizeof(float));
        if (gpu_sync(g, label)) e[v] = check_close(tname, BOUND_GET_ROWS, got, want, ny, label);
        if (d) be->ops->dealloc(be, d);
    }
    char b[5][16];
    printf("get_rows %-4s %5lldx%-5lld n %3lld seed %016llx | dev %s | host cpu %s copy %s auto %s "
           "slots %s\n",
           quant_type_name(type), (long long)rows, (long long)cols, (long long)n,
           (unsigned long long)seed, fmt_err(b[0], 16, e[0]), fmt_err(b[1], 16, e[1]),
           fmt_err(b[2], 16, e[2]), fmt_err(b[3], 16, e[3]), fmt_err(b[4], 16, e[4]));
    free(ids);
    free(want);
    free(got);
    tweight_free(&tw);
}

/* The top_k op's order: descending value, ties to the lower index, -0
 * equal to +0, NaNs below every number (their ties by index too). */
static const float *topk_x;
static int topk_cmp(const void *a, const void *b)
{
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    const float x = topk_x[i], y = topk_x[j];
    if (isnan(x) != isnan(y)) return isnan(x) ? 1 : -1;
    if (!isnan(x) && x != y) return x > y ? -1 : 1;
    return i < j ? -1 : (i > j);
}

/* top_k against a full sort on the host: indices and values exactly, over
 * vocabulary-sized and odd lengths (one chunk, chunk edges, three passes),
 * spread values, a few values with many ties, signed zeros with -inf and
 * NaNs. */
static void test_top_k(void)
{
    static const int64_t sizes[] = {1, 5, 4096, 4097, 128256, 151936, 262144, (int64_t)1 << 21};
    static const int ks[] = {1, 2, 40, 64, 256};
    const size_t nmax = (size_t)1 << 21;
    float *x = xmalloc(sizeof(float) * nmax);
    int32_t *order = xmalloc(sizeof(int32_t) * nmax), ids[256];
    float vals[256];
    for (size_t si = 0; si < HY_ARRAY_LEN(sizes); si++)
        for (int pattern = 0; pattern < 3; pattern++) {
            const int64_t n = sizes[si];
            const uint64_t seed = case_seed();
            struct rng r;
            rng_init(&r, seed);
            fill_normal(&r, x, (size_t)n, 4.0f);
            for (int64_t i = 0; i < n && pattern > 0; i++) {
                const float v = x[i];
                if (pattern == 1) /* five values */
                    x[i] = floorf(fabsf(v)) > 4.0f ? 4.0f : floorf(fabsf(v));
                else /* signed zeros, -inf and NaNs among a few values */
                    x[i] = v > 6.0f   ? NAN
                           : v > 5.0f ? -INFINITY
                           : v > 0.0f ? (v > 2.0f ? 0.0f : -0.0f)
                                      : floorf(v);
            }
            for (int64_t i = 0; i < n; i++) order[i] = (int32_t)i;
            topk_x = x;
            qsort(order, (size_t)n, sizeof *order, topk_cmp);
            for (size_t ki = 0; ki < HY_ARRAY_LEN(ks); ki++) {
                const int k = ks[ki];
                if (k > n || !live(G_AUTO)) continue;
                char what[160];
                snprintf(what, sizeof what, "top_k %d of %lld, pattern %d (seed %#llx)", k,
                         (long long)n, pattern, (unsigned long long)seed);
                struct backend *be = T.gpu[G_AUTO];
                float *b = T.buf[G_AUTO][0];
                backend_upload(be, b, x, sizeof(float) * (size_t)n);
                memset(ids, 0xff, sizeof ids);
                memset(vals, 0xff, sizeof vals);
                be->ops->top_k(be, b, n, k, ids, vals);
                if (!gpu_sync(G_AUTO, what)) continue;
                bool good = true;
                for (int i = 0; i < k && good; i++) {
                    const float want = x[order[i]];
                    const bool same_val = isnan(want) ? isnan(vals[i]) : vals[i] == want;
                    if (!CHECK(ids[i] == order[i] && same_val)) {
                        fprintf(stderr, "  %s: pick %d: GPU %d (%g), host %d (%g)\n", what, i,
                                ids[i], (double)vals[i], order[i], (double)want);
                        good = false;
                    }
                }
                if (good) printf("%s: same\n", what);
            }
        }
    free(x);
    free(order);
}

static void test_get_rows(void)
{
    for (size_t ti = 0; ti < HY_ARRAY_LEN(all_types); ti++) {
        const uint32_t type = all_types[ti];
        if (!gpu_supports(type)) continue;
        get_rows_case(type, 100, 256, 7);
        get_rows_case(type, 513, 4096, 33); /* F32: the MoE gather of token rows */
        if (quant_traits(type)->block_size == 32 || !quant_traits(type)->is_quantized)
            get_rows_case(type, 50, 96, 5);
    }
}

/* ---- element-wise ops --------------------------------------------------------------- */

static void test_rms_norm(void)
{
    static const struct {
        int64_t n_tok, n;
        float eps;
        bool in_place;
    } cases[] = {
        {1, 4096, 1e-5f, false},  {7, 4096, 1e-6f, true},  {33, 896, 1e-6f, false},
        {512, 4096, 1e-5f, true}, {136, 128, 1e-6f, true}, /* per-head norm: rows of head_dim */
        {3, 64, 1e-5f, false},    {2, 5120, 1e-5f, false},
        /* rows not of whole 16-byte pieces, and longer than the vector
         * kernel takes: the CUDA backend's other kernel */
        {2, 1002, 1e-5f, false},  {3, 20480, 1e-6f, true},
    };
    for (size_t ci = 0; ci < HY_ARRAY_LEN(cases); ci++) {
        const int64_t n_tok = cases[ci].n_tok, n = cases[ci].n;
        const size_t nx = (size_t)(n_tok * n);
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *x = xmalloc(nx * sizeof(float)), *w = xmalloc((size_t)n * sizeof(float));
        float *want = xmalloc(nx * sizeof(float)), *got = xmalloc(nx * sizeof(float));
        fill_normal(&r, x, nx, 3.0f);
        /* rows of different magnitudes, one tiny (eps matters there) */
        for (int64_t t = 0; t < n_tok; t++) {
            const float s = t % 3 == 0 ? 1.0f : t % 3 == 1 ? 20.0f : 1e-3f;
            for (int64_t i = 0; i < n; i++) x[t * n + i] *= s;
        }
        for (int64_t i = 0; i < n; i++) w[i] = 1.0f + 0.2f * (float)rng_normal(&r);
        memcpy(want, x, nx * sizeof(float));
        backend_rms_norm(T.cpu, want, w, cases[ci].eps, n_tok, n, want);
        char what[160];
        snprintf(what, sizeof what, "rms_norm %lld x %lld eps %g%s (seed %#llx)", (long long)n_tok,
                 (long long)n, (double)cases[ci].eps, cases[ci].in_place ? " in place" : "",
                 (unsigned long long)seed);
        double e = NAN;
        if (live(G_AUTO)) {
            struct backend *be = T.gpu[G_AUTO];
            float *const *b = T.buf[G_AUTO];
            backend_upload(be, b[0], x, nx * sizeof(float));
            backend_upload(be, b[2], w, (size_t)n * sizeof(float));
            float *y = cases[ci].in_place ? b[0] : b[1];
            if (!cases[ci].in_place) gpu_poison(G_AUTO, b[1], nx);
            backend_rms_norm(be, b[0], b[2], cases[ci].eps, n_tok, n, y);
            backend_download(be, y, got, nx * sizeof(float));
            if (gpu_sync(G_AUTO, what))
                e = check_close("rms_norm", BOUND_F32_OP, got, want, nx, what);
        }
        char eb[16];
        printf("%s: %s\n", what, fmt_err(eb, sizeof eb, e));
        free(x);
        free(w);
        free(want);
        free(got);
    }
}

/* Two in-place RMSNorms in a row, as a layer's q and k head norms come (the
 * CUDA backend launches such a pair as one kernel): rows of n1 and n2 heads
 * with their own weights, against the CPU; and pairs it must not join (other
 * row lengths, another eps: each launched alone, the first before the
 * second). */
static void test_rms_norm_pairs(void)
{
    static const struct {
        int64_t n1, n2, len1, len2;
        float eps1, eps2;
    } cases[] = {
        {32, 4, 128, 128, 1e-6f, 1e-6f},  /* qwen3's heads: joined */
        {40, 8, 64, 64, 1e-5f, 1e-5f},    /* joined */
        {16, 8, 128, 64, 1e-6f, 1e-6f},   /* other lengths: apart */
        {16, 4, 128, 128, 1e-6f, 1e-5f},  /* another eps: apart */
        {6, 2, 1002, 1002, 1e-5f, 1e-5f}, /* rows the 16-byte kernel does not take */
    };
    for (size_t ci = 0; ci < HY_ARRAY_LEN(cases); ci++) {
        const int64_t n1 = cases[ci].n1, n2 = cases[ci].n2;
        const int64_t l1 = cases[ci].len1, l2 = cases[ci].len2;
        const size_t nx1 = (size_t)(n1 * l1), nx2 = (size_t)(n2 * l2);
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *x1 = xmalloc(nx1 * sizeof(float)), *x2 = xmalloc(nx2 * sizeof(float));
        float *w1 = xmalloc((size_t)l1 * sizeof(float)), *w2 = xmalloc((size_t)l2 * sizeof(float));
        float *want = xmalloc((nx1 + nx2) * sizeof(float)),
              *got = xmalloc((nx1 + nx2) * sizeof(float));
        fill_normal(&r, x1, nx1, 3.0f);
        fill_normal(&r, x2, nx2, 0.5f);
        for (int64_t i = 0; i < l1; i++) w1[i] = 1.0f + 0.2f * (float)rng_normal(&r);
        for (int64_t i = 0; i < l2; i++) w2[i] = 0.5f + 0.1f * (float)rng_normal(&r);
        memcpy(want, x1, nx1 * sizeof(float));
        memcpy(want + nx1, x2, nx2 * sizeof(float));
        backend_rms_norm(T.cpu, want, w1, cases[ci].eps1, n1, l1, want);
        backend_rms_norm(T.cpu, want + nx1, w2, cases[ci].eps2, n2, l2, want + nx1);
        char what[160];
        snprintf(
            what, sizeof what,
            "rms_norm in place twice: %lld x %lld eps %g, then %lld x %lld eps %g (seed %#llx)",
            (long long)n1, (long long)l1, (double)cases[ci].eps1, (long long)n2, (long long)l2,
            (double)cases[ci].eps2, (unsigned long long)seed);
        double e = NAN;
        if (live(G_AUTO)) {
            struct backend *be = T.gpu[G_AUTO];
            float *const *b = T.buf[G_AUTO];
            backend_upload(be, b[0], x1, nx1 * sizeof(float));
            backend_upload(be, b[1], x2, nx2 * sizeof(float));
            backend_upload(be, b[2], w1, (size_t)l1 * sizeof(float));
            backend_upload(be, b[3], w2, (size_t)l2 * sizeof(float));
            backend_rms_norm(be, b[0], b[2], cases[ci].eps1, n1, l1, b[0]);
            backend_rms_norm(be, b[1], b[3], cases[ci].eps2, n2, l2, b[1]);
            backend_download(be, b[0], got, nx1 * sizeof(float));
            backend_download(be, b[1], got + nx1, nx2 * sizeof(float));
            if (gpu_sync(G_AUTO, what))
                e = check_close("rms_norm pair", BOUND_F32_OP, got, want, nx1 + nx2, what);
        }
        char eb[16];
        printf("%s: %s\n", what, fmt_err(eb, sizeof eb, e));
        free(x1);
        free(x2);
        free(w1);
        free(w2);
        free(want);
        free(got);
    }
}

static void test_rope(void)
{
    static const struct {
        int64_t head_dim, n_rot;
    } dims[] = {{128, 128}, {128, 64}, {64, 32}};
    static const struct {
        bool factors;
        double scale, base;
    } freqs[] = {
        {false, 1.0, 10000.0}, {true, 1.0, 500000.0}, {false, 0.25, 1e6}, {true, 0.5, 500000.0}};
    static const struct {
        int64_t pos0, n_tok;
    } runs[] = {{0, 1}, {0, 17}, {5, 1}, {1000, 17}, {30000, 3}};
    float ff[MAX_HD / 2];
    for (int i = 0; i < MAX_HD / 2; i++) ff[i] = 1.0f + 7.0f * (float)i / (float)(MAX_HD / 2);
    for (int mode = 0; mode < 2; mode++) {
        for (size_t di = 0; di < HY_ARRAY_LEN(dims); di++) {
            for (size_t fi = 0; fi < HY_ARRAY_LEN(freqs); fi++) {
                for (size_t ri = 0; ri < HY_ARRAY_LEN(runs); ri++) {
                    const int64_t hd = dims[di].head_dim, n_tok = runs[ri].n_tok;
                    const int64_t pos0 = runs[ri].pos0;
                    const int64_t n_head = (ri + fi) % 2 ? 2 : 8; /* k and q heads */
                    const size_t nx = (size_t)(n_tok * n_head * hd);
                    const uint64_t seed = case_seed();
                    struct rng r;
                    rng_init(&r, seed);
                    float *x = xmalloc(nx * sizeof(float)), *want = xmalloc(nx * sizeof(float));
                    float *got = xmalloc(nx * sizeof(float));
                    fill_normal(&r, x, nx, 1.0f);
                    memcpy(want, x, nx * sizeof(float));
                    const struct backend_rope rp = {
                        .mode = mode ? BACKEND_ROPE_NEOX : BACKEND_ROPE_NORM,
                        .n_rot = dims[di].n_rot,
                        .freq_base = freqs[fi].base,
                        .freq_scale = freqs[fi].scale,
                        .freq_factors = freqs[fi].factors ? ff : NULL,
                    };
                    backend_rope(T.cpu, want, n_tok, n_head, hd, pos0, &rp);
                    const double bound = 1e-6 + 2e-8 * (double)(pos0 + n_tok);
                    char what[256];
                    snprintf(what, sizeof what,
                             "rope %s head_dim %lld n_rot %lld base %g scale %g%s, %lld heads, "
                             "pos0 %lld n_tok %lld (seed %#llx)",
                             mode ? "neox" : "norm", (long long)hd, (long long)dims[di].n_rot,
                             freqs[fi].base, freqs[fi].scale, freqs[fi].factors ? " factors" : "",
                             (long long)n_head, (long long)pos0, (long long)n_tok,
                             (unsigned long long)seed);
                    double e = NAN;
                    if (live(G_AUTO)) {
                        struct backend *be = T.gpu[G_AUTO];
                        backend_upload(be, T.buf[G_AUTO][0], x, nx * sizeof(float));
                        backend_rope(be, T.buf[G_AUTO][0], n_tok, n_head, hd, pos0, &rp);
                        backend_download(be, T.buf[G_AUTO][0], got, nx * sizeof(float));
                        if (gpu_sync(G_AUTO, what))
                            e = check_close("rope", bound, got, want, nx, what);
                    }
                    char eb[16];
                    printf("%s: %s (bound %.1e)\n", what, fmt_err(eb, sizeof eb, e), bound);
                    free(x);
                    free(want);
                    free(got);
                }
            }
        }
    }
}

static void test_softmax(void)
{
    static const int64_t cases[][2] = {{1, 8}, {7, 8}, {3, 60}, {2, 1000}, {1, 32768}, {512, 128}};
    for (size_t ci = 0; ci < HY_ARRAY_LEN(cases); ci++) {
        const int64_t n_rows = cases[ci][0], n = cases[ci][1];
        const size_t nx = (size_t)(n_rows * n);
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *x = xmalloc(nx * sizeof(float)), *want = xmalloc(nx * sizeof(float));
        float *got = xmalloc(nx * sizeof(float));
        fill_normal(&r, x, nx, 3.0f);
        /* the last row far from 0: the maximum must be subtracted */
        for (int64_t i = 0; i < n; i++) x[(n_rows - 1) * n + i] += n_rows > 1 ? 90.0f : 0.0f;
        memcpy(want, x, nx * sizeof(float));
        backend_softmax(T.cpu, want, n_rows, n);
        char what[120];
        snprintf(what, sizeof what, "softmax %lld x %lld (seed %#llx)", (long long)n_rows,
                 (long long)n, (unsigned long long)seed);
        double e = NAN;
        if (live(G_AUTO)) {
            struct backend *be = T.gpu[G_AUTO];
            backend_upload(be, T.buf[G_AUTO][0], x, nx * sizeof(float));
            backend_softmax(be, T.buf[G_AUTO][0], n_rows, n);
            backend_download(be, T.buf[G_AUTO][0], got, nx * sizeof(float));
            if (gpu_sync(G_AUTO, what))
                e = check_close("softmax", BOUND_F32_OP, got, want, nx, what);
        }
        char eb[16];
        printf("%s: %s\n", what, fmt_err(eb, sizeof eb, e));
        free(x);
        free(want);
        free(got);
    }
}

/* An element-wise op of (y, x) on the CPU and on G_AUTO (y at float offset
 * off of its buffer, x in the next), y compared; run applies it with arg. */
struct ew_args {
    int64_t n, n_tok, n_rows;
    float alpha;
    const int32_t *rows;
    const float *alphas;
};
typedef void (*ew_fn)(struct backend *be, float *y, const float *x, const struct ew_args *a);

static void ew_case(const char *tally, double bound, const char *what, ew_fn run,
                    const struct ew_args *a, const float *y, size_t ny, int64_t off, const float *x,
                    size_t nx)
{
    float *want = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
    memcpy(want, y, ny * sizeof(float));
    run(T.cpu, want, x, a);
    double e = NAN;
    if (live(G_AUTO)) {
        struct backend *be = T.gpu[G_AUTO];
        float *yd = T.buf[G_AUTO][0] + off;
        HY_ASSERT((size_t)off + ny <= BUF_FLOATS && nx <= BUF_FLOATS);
        backend_upload(be, yd, y, ny * sizeof(float));
        backend_upload(be, T.buf[G_AUTO][1], x, nx * sizeof(float));
        run(be, yd, T.buf[G_AUTO][1], a);
        backend_download(be, yd, got, ny * sizeof(float));
        if (gpu_sync(G_AUTO, what)) e = check_close(tally, bound, got, want, ny, what);
    }
    char eb[16];
    printf("%s: %s\n", what, fmt_err(eb, sizeof eb, e));
    free(want);
    free(got);
}

static void ew_silu_mul(struct backend *be, float *y, const float *x, const struct ew_args *a)
{
    backend_silu_mul(be, y, x, a->n);
}
static void ew_add(struct backend *be, float *y, const float *x, const struct ew_args *a)
{
    backend_add(be, y, x, a->alpha, a->n);
}
static void ew_add_bias(struct backend *be, float *y, const float *x, const struct ew_args *a)
{
    backend_add_bias(be, y, x, a->n_tok, a->n);
}
static void ew_add_rows(struct backend *be, float *y, const float *x, const struct ew_args *a)
{
    backend_add_rows(be, y, x, a->rows, a->alphas, a->n_rows, a->n);
}

static void test_silu_mul_add(void)
{
    char what[120];
    static const int64_t sizes[] = {1, 1000, 14336 * 9, ((int64_t)1 << 20) + 3};
    for (size_t ci = 0; ci < HY_ARRAY_LEN(sizes); ci++) {
        const int64_t n = sizes[ci];
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *g = xmalloc((size_t)n * sizeof(float)), *u = xmalloc((size_t)n * sizeof(float));
        fill_normal(&r, g, (size_t)n, 3.0f);
        fill_normal(&r, u, (size_t)n, 1.0f);
        snprintf(what, sizeof what, "silu_mul n %lld (seed %#llx)", (long long)n,
                 (unsigned long long)seed);
        const struct ew_args a = {.n = n};
        ew_case("silu_mul", BOUND_F32_OP, what, ew_silu_mul, &a, g, (size_t)n, 0, u, (size_t)n);
        free(g);
        free(u);
    }

    static const struct {
        int64_t n, y_off; /* y at a row offset into the buffer, as the MoE scatter adds */
        float alpha;
    } adds[] = {
        {1, 0, 1.0f}, {4096, 4096 * 3, 0.37f}, {4096 * 33 + 1, 0, -2.0f}, {896, 896 * 5, 1.0f}};
    for (size_t ci = 0; ci < HY_ARRAY_LEN(adds); ci++) {
        const int64_t n = adds[ci].n, off = adds[ci].y_off;
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *y = xmalloc((size_t)n * sizeof(float)), *x = xmalloc((size_t)n * sizeof(float));
        fill_normal(&r, y, (size_t)n, 1.0f);
        fill_normal(&r, x, (size_t)n, 1.0f);
        snprintf(what, sizeof what, "add n %lld alpha %g at offset %lld (seed %#llx)", (long long)n,
                 (double)adds[ci].alpha, (long long)off, (unsigned long long)seed);
        const struct ew_args a = {.n = n, .alpha = adds[ci].alpha};
        ew_case("add", BOUND_ADD, what, ew_add, &a, y, (size_t)n, off, x, (size_t)n);
        free(y);
        free(x);
    }

    /* add_bias: one vector added to every token's row (q/k/v biases) */
    static const struct {
        int64_t n_tok, n;
    } biases[] = {{1, 5120}, {7, 896}, {513, 1024}};
    for (size_t ci = 0; ci < HY_ARRAY_LEN(biases); ci++) {
        const int64_t nt = biases[ci].n_tok, n = biases[ci].n;
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *y = xmalloc((size_t)(nt * n) * sizeof(float)),
              *b = xmalloc((size_t)n * sizeof(float));
        fill_normal(&r, y, (size_t)(nt * n), 1.0f);
        fill_normal(&r, b, (size_t)n, 1.0f);
        snprintf(what, sizeof what, "add_bias %lld rows of %lld (seed %#llx)", (long long)nt,
                 (long long)n, (unsigned long long)seed);
        const struct ew_args a = {.n = n, .n_tok = nt};
        ew_case("add_bias", BOUND_ADD, what, ew_add_bias, &a, y, (size_t)(nt * n), 0, b, (size_t)n);
        free(y);
        free(b);
    }

    /* add_rows: x rows scattered into y rows (the MoE combine) */
    static const struct {
        int64_t n_rows, n, y_rows;
    } adds_r[] = {{1, 4096, 1}, {7, 4096, 16}, {130, 896, 512}};
    for (size_t ci = 0; ci < HY_ARRAY_LEN(adds_r); ci++) {
        const int64_t nr = adds_r[ci].n_rows, n = adds_r[ci].n, yr = adds_r[ci].y_rows;
        const uint64_t seed = case_seed();
        struct rng r;
        rng_init(&r, seed);
        float *y = xmalloc((size_t)(yr * n) * sizeof(float)),
              *x = xmalloc((size_t)(nr * n) * sizeof(float));
        int32_t *rows = xmalloc((size_t)yr * sizeof(int32_t));
        float *alpha = xmalloc((size_t)nr * sizeof(float));
        for (int64_t i = 0; i < yr; i++) rows[i] = (int32_t)i;
        for (int64_t i = yr - 1; i > 0; i--) { /* distinct rows in random order */
            const int64_t j = (int64_t)rng_below(&r, (uint64_t)(i + 1));
            const int32_t t = rows[i];
            rows[i] = rows[j];
            rows[j] = t;
        }
        for (int64_t i = 0; i < nr; i++) alpha[i] = i % 3 ? (float)rng_normal(&r) : 1.0f;
        fill_normal(&r, y, (size_t)(yr * n), 1.0f);
        fill_normal(&r, x, (size_t)(nr * n), 1.0f);
        snprintf(what, sizeof what, "add_rows %lld rows of %lld into %lld (seed %#llx)",
                 (long long)nr, (long long)n, (long long)yr, (unsigned long long)seed);
        const struct ew_args a = {.n = n, .n_rows = nr, .rows = rows, .alphas = alpha};
        ew_case("add_rows", BOUND_ADD, what, ew_add_rows, &a, y, (size_t)(yr * n), 0, x,
                (size_t)(nr * n));
        free(y);
        free(x);
        free(rows);
        free(alpha);
    }
}

/* ---- moe_token ------------------------------------------------------------------ */

/* The CPU's op-by-op sum of k experts w + 3 j (gate, up, silu_mul, down,
 * add with alpha[j], expert after expert) added into y; g, u [F] and d [E]
 * scratch. */
static void moe_ref(const struct backend_weight *w, int k, const float *alpha, const float *x,
                    int64_t E, int64_t F, float *y, float *g, float *u, float *d)
{
    for (int j = 0; j < k; j++) {
        backend_matmul(T.cpu, &w[3 * j], x, 1, g);
        backend_matmul(T.cpu, &w[3 * j + 1], x, 1, u);
        backend_silu_mul(T.cpu, g, u, F);
        backend_matmul(T.cpu, &w[3 * j + 2], g, 1, d);
        backend_add(T.cpu, y, d, alpha[j], E);
    }
}

/* A case's inputs: x of N(0, 1), y0 of N(0, 0.2), and want = y0 plus the
 * op-by-op sum of the k experts w + 3 j on x. */
static void moe_inputs(struct rng *r, const struct backend_weight *w, int k, const float *alpha,
                       int64_t E, int64_t F, float *x, float *y0, float *want)
{
    float *s = xmalloc((size_t)(2 * F + E) * sizeof(float));
    fill_normal(r, x, (size_t)E, 1.0f);
    fill_normal(r, y0, (size_t)E, 0.2f);
    memcpy(want, y0, (size_t)E * sizeof(float));
    moe_ref(w, k, alpha, x, E, F, want, s, s + F, s + 2 * F);
    free(s);
}

/* An expert's host slices, stable and without a key: gate and up F x E in
 * Q4_K, down E x F in Q6_K, each of N(0, 0.05) values. */
static void expert_make(struct rng *r, int64_t E, int64_t F, struct tweight *tw,
                        struct backend_weight *w)
{
    tweight_make(r, HY_TYPE_Q4_K, F, E, 0.05f, &tw[0]);
    tweight_make(r, HY_TYPE_Q4_K, F, E, 0.05f, &tw[1]);
    tweight_make(r, HY_TYPE_Q6_K, E, F, 0.05f, &tw[2]);
    for (int i = 0; i < 3; i++) {
        w[i] = tw[i].w;
        w[i].stable = true;
    }
}

/* Where moe_token_case's expert slices lie. */
enum moe_place {
    MOE_HOST,    /* all in host memory (stable, keyed) */
    MOE_ONE_DEV, /* expert 1's in backend memory, the others' in host memory */
    MOE_ALL_DEV, /* all in backend memory (the GPU's gate/up of several experts per kernel) */
};

/* One token's experts in one moe_token call on every backend, against the CPU
 * op by op (gate, up, silu_mul, down, add with the expert's weight, expert
 * after expert): k experts of Q4_K gate/up and Q6_K down slices, stable host
 * weights with keys, or in backend memory as place says. Two calls per
 * backend (the second finds the cache backends' copies); the host byte
 * counters follow the policy on the first. The second comes as the forward
 * pass's does: after moe_prepare of its x, and a download_start (of y, which
 * must come back as it was when the copy started) whose wait follows another
 * op. A third, with the host slices under new keys, comes after a prefetch
 * of them: the 256 MiB cache backend copies at least the first expert's
 * three (in order, as many as its budget allows), and the GPU's products of
 * that expert read them. */
static void moe_token_case(int k, int64_t E, int64_t F, enum moe_place place)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    enum { KMAX = 12 };
    struct tweight tw[3 * KMAX];
    struct backend_weight w[3 * KMAX];
    HY_ASSERT(k <= KMAX);
    float alpha[KMAX];
    size_t host_bytes = 0;
    for (int j = 0; j < k; j++) {
        expert_make(&r, E, F, &tw[3 * j], &w[3 * j]);
        alpha[j] = 0.1f + 0.8f * (float)rng_uniform(&r);
        const bool dev = place == MOE_ALL_DEV || (place == MOE_ONE_DEV && j == 1);
        for (int i = 0; i < 3; i++) {
            w[3 * j + i].key = ++T.next_key;
            if (!dev) host_bytes += tw[3 * j + i].bytes;
        }
    }
    float *x = xmalloc((size_t)E * sizeof(float)), *y0 = xmalloc((size_t)E * sizeof(float));
    float *want = xmalloc((size_t)E * sizeof(float)), *got = xmalloc((size_t)E * sizeof(float));
    float *g = xmalloc((size_t)F * sizeof(float)), *u = xmalloc((size_t)F * sizeof(float));
    float *d = xmalloc((size_t)E * sizeof(float));
    fill_normal(&r, x, (size_t)E, 1.0f);
    fill_normal(&r, y0, (size_t)E, 0.2f);
    memcpy(want, y0, (size_t)E * sizeof(float));
    moe_ref(w, k, alpha, x, E, F, want, g, u, d);
    char what[160];
    static const char *const where[3] = {"", ", one in backend memory", ", all in backend memory"};
    snprintf(what, sizeof what, "moe_token %d experts, n_embd %lld, ff %lld%s (seed %#llx)", k,
             (long long)E, (long long)F, where[place], (unsigned long long)seed);
    printf("%s |", what);
    for (int gi = 0; gi < N_GPU; gi++) {
        if (!live(gi)) continue;
        struct backend *be = T.gpu[gi];
        if (!CHECK(be->ops->moe_token != NULL)) break;
        struct backend_weight wg[3 * KMAX];
        void *dev[3 * KMAX] = {NULL};
        memcpy(wg, w, sizeof(struct backend_weight) * 3 * (size_t)k);
        bool ok = true;
        for (int j = 0; j < k; j++) {
            if (!(place == MOE_ALL_DEV || (place == MOE_ONE_DEV && j == 1))) continue;
            for (int i = 0; i < 3; i++) {
                dev[3 * j + i] = tweight_upload(gi, &tw[3 * j + i], &wg[3 * j + i]);
                ok = ok && dev[3 * j + i];
            }
        }
        double e[3] = {NAN, NAN, NAN};
        for (int call = 0; call < 3 && ok; call++) {
            int n_host = 0;
            const uint64_t pre = cuda_backend_stats(be).prefetch_slices;
            if (call == 2) {
                for (int i = 0; i < 3 * k; i++)
                    if (wg[i].mem == BACKEND_MEM_HOST) {
                        wg[i].key = ++T.next_key;
                        n_host++;
                    }
                if (!CHECK(be->ops->prefetch != NULL)) break;
                be->ops->prefetch(be, wg, 3 * k);
            }
            const struct cuda_backend_stats s0 = cuda_backend_stats(be);
            backend_upload(be, T.buf[gi][0], x, (size_t)E * sizeof(float));
            backend_upload(be, T.buf[gi][1], y0, (size_t)E * sizeof(float));
            gpu_poison(gi, T.buf[gi][2], (size_t)(k * F));
            gpu_poison(gi, T.buf[gi][3], (size_t)(k * F));
            char label[240];
            snprintf(label, sizeof label, "%s on %s, call %d", what, gpu_cfg[gi].name, call + 1);
            if (call == 1) {
                backend_moe_prepare(be, T.buf[gi][0], E);
                backend_download_start(be, T.buf[gi][1], got, (size_t)E * sizeof(float));
                gpu_poison(gi, T.buf[gi][1], (size_t)E);
                const enum hy_status st = backend_download_wait(be);
                if (!CHECK(st == HY_OK) ||
                    !CHECK(memcmp(got, y0, (size_t)E * sizeof(float)) == 0)) {
                    fprintf(stderr, "%s: download_start did not bring y back as it was\n",
                            label);
                    break;
                }
                backend_upload(be, T.buf[gi][1], y0, (size_t)E * sizeof(float));
            }
            gpu_poison(gi, T.buf[gi][4], (size_t)(k * E));
            be->ops->moe_token(be, T.buf[gi][0], wg, alpha, k, T.buf[gi][1], T.buf[gi][2],
                               T.buf[gi][3], T.buf[gi][4]);
            backend_download(be, T.buf[gi][1], got, (size_t)E * sizeof(float));
            if (!gpu_sync(gi, label)) break;
            e[call] = check_close("moe_token", BOUND_MM_QUANT, got, want, (size_t)E, label);
            const struct cuda_backend_stats s1 = cuda_backend_stats(be);
            if (call == 0) host_stats_check(gi, &s0, &s1, host_bytes, label);
            /* every expert in RAM a half: its gate and up on the CPU */
            const int n_ram = place == MOE_HOST ? k : place == MOE_ONE_DEV ? k - 1 : 0;
            const uint64_t halves = s1.moe_half_experts - s0.moe_half_experts;
            const uint64_t split = s1.moe_half_split - s0.moe_half_split;
            const uint64_t downs = s1.moe_half_down - s0.moe_half_down;
            if ((gi == G_HALF || gi == G_ROWS || gi == G_DOWN) &&
                !(CHECK_EQ_INT((int)halves, n_ram) &
                  CHECK_EQ_INT((int)split, gi == G_ROWS ? n_ram : 0) &
                  CHECK_EQ_INT((int)downs, gi == G_DOWN ? n_ram : 0)))
                fprintf(stderr,
                        "  %s: %d experts in RAM, %llu halves, %llu with rows on the GPU, %llu "
                        "with down rows on the CPU\n",
                        label, n_ram, (unsigned long long)halves, (unsigned long long)split,
                        (unsigned long long)downs);
            const uint64_t pf = s1.prefetch_slices - pre;
            const uint64_t used = s1.prefetch_used - s0.prefetch_used;
            if (call == 2 && gi == G_CACHE && n_host >= 3 &&
                !CHECK(pf >= 3 && used >= 3 && used <= pf))
                fprintf(stderr,
                        "  %s: %d host slices, %llu prefetched, %llu of them read from the cache\n",
                        label, n_host, (unsigned long long)pf, (unsigned long long)used);
        }
        for (int i = 0; i < 3 * k; i++)
            if (dev[i]) be->ops->dealloc(be, dev[i]);
        char b[3][16];
        printf(" %s %s/%s/%s", gpu_cfg[gi].name, fmt_err(b[0], 16, e[0]), fmt_err(b[1], 16, e[1]),
               fmt_err(b[2], 16, e[2]));
    }
    printf("\n");
    fflush(stdout);
    for (int i = 0; i < 3 * k; i++) tweight_free(&tw[i]);
    free(x);
    free(y0);
    free(want);
    free(got);
    free(g);
    free(u);
    free(d);
}

static void test_moe_token(void)
{
    moe_token_case(4, 512, 768, MOE_HOST);
    moe_token_case(4, 512, 768, MOE_ONE_DEV);
    moe_token_case(8, 2048, 1536, MOE_HOST);
    /* several experts' gate/up per kernel: one kernel of 4 pairs, of 8, and 8 + 3 */
    moe_token_case(4, 2048, 1280, MOE_ALL_DEV);
    moe_token_case(8, 1024, 768, MOE_ALL_DEV);
    moe_token_case(11, 512, 512, MOE_ALL_DEV);
}

/* The 256 MiB cache backend for the prefetch and split cases, or NULL when
 * it is not alive or lacks prefetch or moe_token. */
static struct backend *moe_cache_backend(void)
{
    if (!live(G_CACHE)) return NULL;
    struct backend *be = T.gpu[G_CACHE];
    return CHECK(be->ops->prefetch != NULL && be->ops->moe_token != NULL) ? be : NULL;
}

/* One round of the prefetch and split cases on the cache backend: the
 * n_w slices of w under fresh keys, a prefetch of the n_pf from w + pf,
 * then moe_token of w's first k experts on x (y starting as y0) into got,
 * checked against want. The normalized error, or -1 once the backend has
 * failed. */
static double moe_round(struct backend_weight *w, int n_w, int pf, int n_pf, const float *alpha,
                        int k, const float *x, const float *y0, int64_t E, const float *want,
                        float *got, const char *what)
{
    const int g = G_CACHE;
    struct backend *be = T.gpu[g];
    for (int i = 0; i < n_w; i++) w[i].key = ++T.next_key;
    be->ops->prefetch(be, w + pf, n_pf);
    backend_upload(be, T.buf[g][0], x, (size_t)E * sizeof(float));
    backend_upload(be, T.buf[g][1], y0, (size_t)E * sizeof(float));
    be->ops->moe_token(be, T.buf[g][0], w, alpha, k, T.buf[g][1], T.buf[g][2], T.buf[g][3],
                       T.buf[g][4]);
    backend_download(be, T.buf[g][1], got, (size_t)E * sizeof(float));
    if (!gpu_sync(g, what)) return -1;
    return check_close("moe_token", BOUND_MM_QUANT, got, want, (size_t)E, what);
}

/* prefetch's guesses scored by the moe_token that follows (the 256 MiB cache
 * backend): after rounds whose guesses are never read (slices under fresh
 * keys that the call does not use) it copies nothing, while it still counts
 * its guesses; after rounds whose guesses are all read (the call's own
 * slices, re-keyed each round) it copies again. Each round's moe_token
 * agrees with the CPU op by op. */
static void test_prefetch_gate(void)
{
    const int g = G_CACHE;
    struct backend *be = moe_cache_backend();
    if (!be) return;
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    enum { K = 2, E = 512, F = 768 };
    /* experts 0 and 1 the call's, 2 and 3 the wrong guesses */
    struct tweight tw[3 * 2 * K];
    struct backend_weight w[3 * 2 * K];
    for (int j = 0; j < 2 * K; j++) expert_make(&r, E, F, &tw[3 * j], &w[3 * j]);
    const float alpha[K] = {0.6f, 0.4f};
    float x[E], y0[E], want[E], got[E];
    moe_inputs(&r, w, K, alpha, E, F, x, y0, want);
    char what[128];
    snprintf(what, sizeof what, "prefetch gate on %s (seed %#llx)", gpu_cfg[g].name,
             (unsigned long long)seed);
    double worst = 0;
    /* one round: the guess (the call's slices, or the others), then the call */
    struct cuda_backend_stats st[4];
    for (int phase = 0; phase < 2; phase++) {
        st[2 * phase] = cuda_backend_stats(be);
        for (int round = 0; round < 12 && live(g); round++) {
            const double e = moe_round(w, 3 * 2 * K, phase ? 0 : 3 * K, 3 * K, alpha, K, x, y0, E,
                                       want, got, what);
            if (e < 0) break;
            worst = fmax(worst, e);
            /* the state after the first rounds of the phase */
            if (round == 7) st[2 * phase + 1] = cuda_backend_stats(be);
        }
    }
    if (live(g)) {
        /* wrong guesses: after 8 rounds, 4 more guessed and none copied */
        const uint64_t wrong_copied = st[2].prefetch_slices - st[1].prefetch_slices;
        const uint64_t wrong_guessed = st[2].prefetch_guessed - st[1].prefetch_guessed;
        const uint64_t wrong_right = st[2].prefetch_guessed_right - st[0].prefetch_guessed_right;
        /* right guesses: copies again before the phase ends, every guess read */
        const uint64_t right_copied =
            cuda_backend_stats(be).prefetch_slices - st[3].prefetch_slices;
        const uint64_t right_guessed = st[3].prefetch_guessed - st[2].prefetch_guessed;
        const uint64_t right_right = st[3].prefetch_guessed_right - st[2].prefetch_guessed_right;
        if (!CHECK(wrong_copied == 0 && wrong_guessed >= 4 && wrong_right == 0 &&
                   right_copied > 0 && right_guessed > 0 && right_right == right_guessed))
            fprintf(
                stderr,
                "  %s: wrong guesses: %llu copied, %llu guessed (%llu read) in the last rounds; "
                "right guesses: %llu copied in the last rounds, %llu guessed (%llu read)\n",
                what, (unsigned long long)wrong_copied, (unsigned long long)wrong_guessed,
                (unsigned long long)wrong_right, (unsigned long long)right_copied,
                (unsigned long long)right_guessed, (unsigned long long)right_right);
    }
    char b[16];
    printf("%s | moe_token %s\n", what, fmt_err(b, 16, worst));
    fflush(stdout);
    for (int i = 0; i < 3 * 2 * K; i++) tweight_free(&tw[i]);
}

/* prefetch's copies scored by whether GPU products read them, on a backend
 * of its own (a 256 MiB cache, every RAM expert a half with half its gate
 * and up rows left to the GPU, which reads those under keys of their own):
 * each round prefetches expert 0's gate under fresh keys (a right guess),
 * then moe_token of experts 0 and 1 reads that gate on the CPU, never the
 * copy. After the first rounds prefetch copies nothing while its guesses
 * still come true, but for one copy after every 8 calls without. Each call
 * agrees with the CPU op by op. */
static void test_prefetch_use(void)
{
    if (!live(G_CACHE)) return;
    const struct cuda_backend_config cfg = {.device = 0,
                                            .n_threads = T.n_threads,
                                            .weight_cache_bytes = CACHE_BIG,
                                            .host_policy = CUDA_HOST_AUTO,
                                            .moe_half = CUDA_MOE_HALF_ROWS};
    const struct backend_limits lim = {
        .max_batch = 8, .max_ctx = 64, .max_head_dim = 64, .max_cols = 4096};
    struct backend *be = NULL;
    enum { K = 2, E = 512, F = 768, ROUNDS = 22 };
    float *buf[5] = {NULL};
    if (!CHECK_OK(cuda_backend_create(&cfg, &be))) return;
    bool ok = CHECK_OK(backend_reserve(be, &lim));
    for (int i = 0; i < 5 && ok; i++) ok = CHECK((buf[i] = be->ops->alloc(be, (size_t)K * F * 4)));
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    struct tweight tw[3 * K];
    struct backend_weight w[3 * K];
    for (int j = 0; j < K; j++) expert_make(&r, E, F, &tw[3 * j], &w[3 * j]);
    const float alpha[K] = {0.3f, 0.7f};
    float x[E], y0[E], want[E], got[E];
    moe_inputs(&r, w, K, alpha, E, F, x, y0, want);
    char what[128];
    snprintf(what, sizeof what, "prefetch's copies unread (seed %#llx)", (unsigned long long)seed);
    double worst = 0;
    uint64_t copies[ROUNDS] = {0}, guessed = 0, right = 0;
    for (int round = 0; round < ROUNDS && ok; round++) {
        for (int i = 0; i < 3 * K; i++) w[i].key = ++T.next_key;
        const struct cuda_backend_stats s0 = cuda_backend_stats(be);
        be->ops->prefetch(be, w, 1);
        backend_upload(be, buf[0], x, sizeof x);
        backend_upload(be, buf[1], y0, sizeof y0);
        be->ops->moe_token(be, buf[0], w, alpha, K, buf[1], buf[2], buf[3], buf[4]);
        backend_download(be, buf[1], got, sizeof got);
        if (!(ok = CHECK_OK(backend_sync(be)))) break;
        worst = fmax(worst, check_close("moe_token", BOUND_MM_QUANT, got, want, E, what));
        const struct cuda_backend_stats s1 = cuda_backend_stats(be);
        copies[round] = s1.prefetch_slices - s0.prefetch_slices;
        if (round > 0) { /* a round's guess is scored by the next call */
            guessed += s1.prefetch_guessed - s0.prefetch_guessed;
            right += s1.prefetch_guessed_right - s0.prefetch_guessed_right;
        }
    }
    if (ok) {
        /* the first four copy (the share read falls from 1 to under 0.5),
         * the next eight not, then one of the next nine (after 8 without) */
        uint64_t first = 0, quiet = 0, probe = 0;
        for (int i = 0; i < 4; i++) first += copies[i];
        for (int i = 4; i < 12; i++) quiet += copies[i];
        for (int i = 12; i < 21; i++) probe += copies[i];
        if (!CHECK(first == 4 && quiet == 0 && probe == 1 && guessed > 0 && right == guessed))
            fprintf(stderr,
                    "  %s: copies in rounds 1-4 %llu, 5-12 %llu, 13-21 %llu; guesses %llu, "
                    "right %llu\n",
                    what, (unsigned long long)first, (unsigned long long)quiet,
                    (unsigned long long)probe, (unsigned long long)guessed,
                    (unsigned long long)right);
    }
    char b[16];
    printf("%s | moe_token %s\n", what, fmt_err(b, 16, worst));
    fflush(stdout);
    for (int i = 0; i < 5; i++)
        if (buf[i]) be->ops->dealloc(be, buf[i]);
    backend_free(be);
    for (int i = 0; i < 3 * K; i++) tweight_free(&tw[i]);
}

/* moe_token's split when one of its experts has a slice in VRAM (the 256
 * MiB cache backend, policy auto): expert 0's gate slice prefetched, expert
 * 1's nothing, then the call. Whenever the CPU takes one of the two (whole,
 * or its gate and up as a half) it must be expert 1, so that the prefetched
 * gate is read from VRAM: the slice is read unless the CPU took both (in
 * the rounds where prefetch copied it: while its copies go unread it copies
 * only a probe's, at least every ninth round). Rounds under fresh keys; each
 * call agrees with the CPU op by op. The experts (about 16 MB) are large enough that the measured
 * rates give the CPU one of them in some rounds. */
static void test_moe_split_order(void)
{
    const int g = G_CACHE;
    struct backend *be = moe_cache_backend();
    if (!be) return;
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    enum { K = 2, E = 2048, F = 4096 };
    float *buf = malloc((size_t)4 * E * sizeof(float));
    if (!CHECK(buf != NULL)) return;
    struct tweight tw[3 * K];
    struct backend_weight w[3 * K];
    for (int j = 0; j < K; j++) expert_make(&r, E, F, &tw[3 * j], &w[3 * j]);
    const float alpha[K] = {0.7f, 0.3f};
    float *x = buf, *y0 = x + E, *want = y0 + E, *got = want + E;
    moe_inputs(&r, w, K, alpha, E, F, x, y0, want);
    char what[128];
    snprintf(what, sizeof what, "moe_token split order on %s (seed %#llx)", gpu_cfg[g].name,
             (unsigned long long)seed);
    double worst = 0;
    int by_cpu[K + 1] = {0}, bad = 0, with_copy = 0;
    for (int round = 0; round < 24 && live(g); round++) {
        const struct cuda_backend_stats s0 = cuda_backend_stats(be);
        /* the prefetch: expert 0's gate only */
        const double e = moe_round(w, 3 * K, 0, 1, alpha, K, x, y0, E, want, got, what);
        if (e < 0) break;
        worst = fmax(worst, e);
        const struct cuda_backend_stats s1 = cuda_backend_stats(be);
        const uint64_t cpu =
            s1.moe_cpu_experts - s0.moe_cpu_experts + s1.moe_half_experts - s0.moe_half_experts;
        const uint64_t used = s1.prefetch_used - s0.prefetch_used;
        const uint64_t copied = s1.prefetch_slices - s0.prefetch_slices;
        if (cpu <= K) by_cpu[cpu]++;
        /* a round without the copy (prefetch stops while its copies go
         * unread, but for a probe's) says nothing of the order */
        with_copy += copied == 1;
        if (!CHECK(cpu <= K && copied <= 1 && (!copied || used == (cpu < K ? 1u : 0u)))) {
            bad++;
            fprintf(stderr,
                    "  %s, round %d: %llu experts on the CPU, %llu slice prefetched, "
                    "%llu read from VRAM\n",
                    what, round, (unsigned long long)cpu, (unsigned long long)copied,
                    (unsigned long long)used);
        }
    }
    if (live(g) && !CHECK(with_copy >= 2)) /* a probe at least every ninth round */
        fprintf(stderr, "  %s: the slice prefetched in %d rounds of 24\n", what, with_copy);
    char b[16];
    printf("%s | moe_token %s | rounds with 0 / 1 / 2 experts on the CPU: %d / %d / %d, with the "
           "slice prefetched %d%s\n",
           what, fmt_err(b, 16, worst), by_cpu[0], by_cpu[1], by_cpu[2], with_copy,
           bad ? " (failed)" : "");
    fflush(stdout);
    for (int i = 0; i < 3 * K; i++) tweight_free(&tw[i]);
    free(buf);
}

/* ---- moe_routed ----------------------------------------------------------------- */

/* One token's experts with their routes in backend memory (moe_routed)
 * against the CPU op by op: X experts as whole tensors (gate/up of type tg,
 * down of td, expert e's slice e rows-of-one-expert into each), k of them
 * picked in a random order with random weights, added in ascending order of
 * their ids, then (S > 0) a shared expert of S rows (gate/up of type ts,
 * down of td) times the sigmoid of its gate logit. Twice (the second call
 * reuses the first's scratch). in_dev false: the tensors in host memory,
 * which moe_routed must decline, leaving y as it was. */
static void moe_routed_case(int X, int k, int64_t E, int64_t F, uint32_t tg, uint32_t td, int64_t S,
                            uint32_t ts, bool in_dev)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    enum { XMAX = 64 };
    HY_ASSERT(X <= XMAX && k <= X && k * HY_MAX(E, F) <= (int64_t)BUF_FLOATS && E >= 256);
    struct tweight tw[6]; /* the experts' gate, up, down; the shared expert's */
    tweight_make(&r, tg, (int64_t)X * F, E, 0.05f, &tw[0]);
    tweight_make(&r, tg, (int64_t)X * F, E, 0.05f, &tw[1]);
    tweight_make(&r, td, (int64_t)X * E, F, 0.05f, &tw[2]);
    const int n_tw = S > 0 ? 6 : 3;
    if (S > 0) {
        tweight_make(&r, ts, S, E, 0.05f, &tw[3]);
        tweight_make(&r, ts, S, E, 0.05f, &tw[4]);
        tweight_make(&r, td, E, S, 0.05f, &tw[5]);
    }
    int32_t ids[XMAX];
    float alpha[XMAX];
    bool used[XMAX] = {false};
    for (int j = 0; j < k; j++) {
        int e;
        do e = (int)rng_below(&r, (uint64_t)X);
        while (used[e]);
        used[e] = true;
        ids[j] = e;
        alpha[j] = 0.1f + 0.8f * (float)rng_uniform(&r);
    }
    /* host vectors in one block: x, y0, want, got, d, sh of E; g, u of max(F, S) */
    const int64_t H = HY_MAX(F, S);
    float *vec = xmalloc((size_t)(6 * E + 2 * H) * sizeof(float));
    float *x = vec, *y0 = x + E, *want = y0 + E, *got = want + E, *d = got + E, *sh = d + E;
    float *g = sh + E, *u = g + H;
    fill_normal(&r, x, (size_t)E, 1.0f);
    fill_normal(&r, y0, (size_t)E, 0.2f);
    const float gate_logit = (float)(rng_uniform(&r) * 4.0 - 2.0);
    memcpy(want, y0, (size_t)E * sizeof(float));
    for (int e = 0; e < X; e++) { /* ascending ids */
        int j = 0;
        while (j < k && ids[j] != e) j++;
        if (j == k) continue;
        struct backend_weight ws[3];
        for (int i = 0; i < 3; i++) {
            ws[i] = tw[i].w;
            ws[i].n_rows = i < 2 ? F : E;
            ws[i].data =
                (const uint8_t *)tw[i].host + (size_t)e * (size_t)ws[i].n_rows * ws[i].row_bytes;
        }
        backend_matmul(T.cpu, &ws[0], x, 1, g);
        backend_matmul(T.cpu, &ws[1], x, 1, u);
        backend_silu_mul(T.cpu, g, u, F);
        backend_matmul(T.cpu, &ws[2], g, 1, d);
        backend_add(T.cpu, want, d, alpha[j], E);
    }
    if (S > 0) { /* as the forward pass: the shared expert's FFN, its gate, add_rows */
        backend_matmul(T.cpu, &tw[3].w, x, 1, g);
        backend_matmul(T.cpu, &tw[4].w, x, 1, u);
        backend_silu_mul(T.cpu, g, u, S);
        backend_matmul(T.cpu, &tw[5].w, g, 1, sh);
        const int32_t row0 = 0;
        const float sig = 1.0f / (1.0f + expf(-gate_logit));
        backend_add_rows(T.cpu, want, sh, &row0, &sig, 1, E);
    }

    char what[220];
    char shx[64] = "";
    if (S > 0)
        snprintf(shx, sizeof shx, ", shared expert of %lld %s", (long long)S,
                 quant_traits(ts)->name);
    snprintf(what, sizeof what,
             "moe_routed %d of %d experts, n_embd %lld, ff %lld, %s/%s%s%s (seed %#llx)", k, X,
             (long long)E, (long long)F, quant_traits(tg)->name, quant_traits(td)->name, shx,
             in_dev ? "" : ", host memory", (unsigned long long)seed);
    printf("%s |", what);
    const int gi = G_AUTO;
    struct backend *be = T.gpu[gi];
    struct backend_weight w[6];
    void *dev[6] = {NULL};
    size_t stride[3];
    bool ok = CHECK(be->ops->moe_routed != NULL);
    for (int i = 0; i < n_tw && ok; i++) {
        w[i] = tw[i].w;
        w[i].stable = true;
        if (in_dev) {
            dev[i] = tweight_upload(gi, &tw[i], &w[i]);
            ok = ok && dev[i];
        }
        if (i < 3) {
            w[i].n_rows = i < 2 ? F : E; /* expert 0's slice */
            stride[i] = (size_t)w[i].n_rows * w[i].row_bytes;
        }
    }
    /* the routes and the shared expert's gate logit in backend memory */
    float *rb = T.buf[gi][5];
    int32_t *ids_dev = (int32_t *)rb;
    float *alpha_dev = rb + 64, *gate_dev = rb + 128, *sh_dev = rb + 256;
    double err = NAN;
    for (int call = 0; call < 2 && ok; call++) {
        backend_upload(be, T.buf[gi][0], x, (size_t)E * sizeof(float));
        backend_upload(be, T.buf[gi][1], y0, (size_t)E * sizeof(float));
        backend_upload(be, ids_dev, ids, (size_t)k * sizeof(int32_t));
        backend_upload(be, alpha_dev, alpha, (size_t)k * sizeof(float));
        backend_upload(be, gate_dev, &gate_logit, sizeof(float));
        gpu_poison(gi, T.buf[gi][2], (size_t)(k * F));
        gpu_poison(gi, T.buf[gi][3], (size_t)H);
        gpu_poison(gi, T.buf[gi][4], (size_t)(k * E));
        gpu_poison(gi, sh_dev, (size_t)E);
        const bool took = be->ops->moe_routed(be, T.buf[gi][0], w, stride, ids_dev, alpha_dev, k,
                                              S > 0 ? &w[3] : NULL, gate_dev, sh_dev, T.buf[gi][1],
                                              T.buf[gi][2], T.buf[gi][3], T.buf[gi][4]);
        backend_download(be, T.buf[gi][1], got, (size_t)E * sizeof(float));
        char label[280];
        snprintf(label, sizeof label, "%s, call %d", what, call + 1);
        if (!gpu_sync(gi, label)) break;
        if (!CHECK(took == in_dev)) {
            fprintf(stderr, "  %s: moe_routed %s them\n", label, took ? "took" : "did not take");
            break;
        }
        if (!took) {
            if (!CHECK(memcmp(got, y0, (size_t)E * sizeof(float)) == 0))
                fprintf(stderr, "  %s: y changed, though moe_routed answered false\n", label);
            continue;
        }
        err = check_close("moe_routed", BOUND_MM_QUANT, got, want, (size_t)E, label);
    }
    for (int i = 0; i < n_tw; i++)
        if (dev[i]) be->ops->dealloc(be, dev[i]);
    char b[16];
    printf(" %s %s\n", in_dev ? fmt_err(b, 16, err) : "declined", gpu_cfg[gi].name);
    fflush(stdout);
    for (int i = 0; i < n_tw; i++) tweight_free(&tw[i]);
    free(vec);
}

static void test_moe_routed(void)
{
    if (!live(G_AUTO)) return;
    /* a shared expert of 2 x ff rows: its gate/up as two pairs in the experts' kernel */
    moe_routed_case(16, 4, 1024, 768, HY_TYPE_Q4_K, HY_TYPE_Q6_K, 1536, HY_TYPE_Q4_K, true);
    /* qwen1.5-moe's shape (a Q8_0 down of 1408 columns, 4 x 1408 shared rows) */
    moe_routed_case(24, 4, 2048, 1408, HY_TYPE_Q4_K, HY_TYPE_Q8_0, 5632, HY_TYPE_Q4_K, true);
    /* more pairs than one kernel takes: 3 shared + 7 routed, then 8 + 3 routed */
    moe_routed_case(16, 7, 512, 512, HY_TYPE_Q8_0, HY_TYPE_Q4_0, 1536, HY_TYPE_Q8_0, true);
    moe_routed_case(16, 11, 512, 512, HY_TYPE_Q8_0, HY_TYPE_Q4_0, 0, HY_TYPE_Q8_0, true);
    /* shared rows no multiple of ff, and another type: a pair of its own */
    moe_routed_case(8, 2, 512, 1024, HY_TYPE_F16, HY_TYPE_Q5_K, 1280, HY_TYPE_F16, true);
    moe_routed_case(8, 2, 512, 512, HY_TYPE_Q4_K, HY_TYPE_Q4_K, 512, HY_TYPE_Q8_0, true);
    moe_routed_case(8, 2, 512, 512, HY_TYPE_Q4_K, HY_TYPE_Q4_K, 512, HY_TYPE_Q4_K, false);
}

/* ---- moe_batch ------------------------------------------------------------------ */

/* A batch's routed experts in one moe_batch call against the CPU op by op (for
 * each expert in increasing order: its tokens' rows gathered, gate, up,
 * silu_mul, down, add_rows with their weights). X experts of gate/up type tg
 * and down type td, each of n_tok tokens routed to k distinct experts (a
 * skewed choice: some experts get one token or none, some many, counts not
 * multiples of the kernel's chunk). in_dev: the slices in backend memory;
 * expect: whether the backend takes them (else it must leave y as it was). */
static void moe_batch_case(int X, int k, int64_t n_tok, int64_t E, int64_t F, uint32_t tg,
                           uint32_t td, bool in_dev, bool expect)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    enum { XMAX = 24 };
    HY_ASSERT(X <= XMAX && k <= X && n_tok * HY_MAX(E, F) <= (int64_t)BUF_FLOATS);
    struct tweight tw[3 * XMAX];
    for (int e = 0; e < X; e++) {
        tweight_make(&r, tg, F, E, 0.05f, &tw[3 * e]);
        tweight_make(&r, tg, F, E, 0.05f, &tw[3 * e + 1]);
        tweight_make(&r, td, E, F, 0.05f, &tw[3 * e + 2]);
    }
    /* routing as the forward pass keeps it: per expert its tokens and weights */
    int64_t cnt[XMAX] = {0};
    int32_t *tok = xmalloc((size_t)(X * n_tok) * sizeof(int32_t));
    float *wt = xmalloc((size_t)(X * n_tok) * sizeof(float));
    for (int64_t t = 0; t < n_tok; t++) {
        bool used[XMAX] = {false};
        for (int j = 0; j < k; j++) {
            int e;
            do { /* expert 0 and 1 busy, the rest uniform */
                const uint64_t u = rng_below(&r, 4);
                e = u < 2 ? (int)u : (int)rng_below(&r, (uint64_t)X);
            } while (used[e]);
            used[e] = true;
            tok[e * n_tok + cnt[e]] = (int32_t)t;
            wt[e * n_tok + cnt[e]++] = 0.1f + 0.8f * (float)rng_uniform(&r);
        }
    }
    int32_t sel[XMAX];
    int n_sel = 0;
    for (int e = 0; e < X; e++)
        if (cnt[e]) sel[n_sel++] = e;
    float *x = xmalloc((size_t)(n_tok * E) * sizeof(float)),
          *y0 = xmalloc((size_t)(n_tok * E) * sizeof(float)),
          *want = xmalloc((size_t)(n_tok * E) * sizeof(float)),
          *got = xmalloc((size_t)(n_tok * E) * sizeof(float)),
          *xg = xmalloc((size_t)(n_tok * E) * sizeof(float)),
          *g = xmalloc((size_t)(n_tok * F) * sizeof(float)),
          *u = xmalloc((size_t)(n_tok * F) * sizeof(float)),
          *d = xmalloc((size_t)(n_tok * E) * sizeof(float));
    fill_normal(&r, x, (size_t)(n_tok * E), 1.0f);
    fill_normal(&r, y0, (size_t)(n_tok * E), 0.2f);
    memcpy(want, y0, (size_t)(n_tok * E) * sizeof(float));
    for (int j = 0; j < n_sel; j++) {
        const int e = sel[j];
        const int64_t c = cnt[e];
        for (int64_t i = 0; i < c; i++)
            memcpy(xg + i * E, x + (int64_t)tok[e * n_tok + i] * E, (size_t)E * sizeof(float));
        backend_matmul(T.cpu, &tw[3 * e].w, xg, c, g);
        backend_matmul(T.cpu, &tw[3 * e + 1].w, xg, c, u);
        backend_silu_mul(T.cpu, g, u, c * F);
        backend_matmul(T.cpu, &tw[3 * e + 2].w, g, c, d);
        backend_add_rows(T.cpu, want, d, tok + e * n_tok, wt + e * n_tok, c, E);
    }
    char what[200];
    snprintf(what, sizeof what,
             "moe_batch %d of %d experts, %lld tokens, top-%d, n_embd %lld, ff %lld, %s/%s%s "
             "(seed %#llx)",
             n_sel, X, (long long)n_tok, k, (long long)E, (long long)F, quant_traits(tg)->name,
             quant_traits(td)->name, in_dev ? "" : ", host memory", (unsigned long long)seed);
    printf("%s |", what);
    const int gi = G_AUTO;
    struct backend *be = T.gpu[gi];
    struct backend_weight w[3 * XMAX];
    void *dev[3 * XMAX] = {NULL};
    bool ok = CHECK(be->ops->moe_batch != NULL);
    for (int j = 0; j < n_sel && ok; j++)
        for (int i = 0; i < 3; i++) {
            struct tweight *t = &tw[3 * sel[j] + i];
            w[3 * j + i] = t->w;
            w[3 * j + i].stable = true;
            if (in_dev) {
                dev[3 * j + i] = tweight_upload(gi, t, &w[3 * j + i]);
                ok = ok && dev[3 * j + i];
            }
        }
    double err = NAN;
    for (int call = 0; call < 2 && ok; call++) { /* the second reuses the first's scratch */
        backend_upload(be, T.buf[gi][0], x, (size_t)(n_tok * E) * sizeof(float));
        backend_upload(be, T.buf[gi][1], y0, (size_t)(n_tok * E) * sizeof(float));
        const bool took = be->ops->moe_batch(be, T.buf[gi][0], n_tok, w, sel, n_sel, cnt, tok, wt,
                                             n_tok, T.buf[gi][1]);
        backend_download(be, T.buf[gi][1], got, (size_t)(n_tok * E) * sizeof(float));
        char label[260];
        snprintf(label, sizeof label, "%s, call %d", what, call + 1);
        if (!gpu_sync(gi, label)) break;
        if (!CHECK(took == expect)) {
            fprintf(stderr, "  %s: moe_batch %s them\n", label, took ? "took" : "did not take");
            break;
        }
        if (!took) { /* nothing done */
            if (!CHECK(memcmp(got, y0, (size_t)(n_tok * E) * sizeof(float)) == 0))
                fprintf(stderr, "  %s: y changed, though moe_batch answered false\n", label);
            continue;
        }
        err = check_close("moe_batch", BOUND_MM_QUANT, got, want, (size_t)(n_tok * E), label);
    }
    for (int i = 0; i < 3 * n_sel; i++)
        if (dev[i]) be->ops->dealloc(be, dev[i]);
    char b[16];
    printf(" %s %s\n", expect ? fmt_err(b, 16, err) : "declined", gpu_cfg[gi].name);
    fflush(stdout);
    for (int i = 0; i < 3 * X; i++) tweight_free(&tw[i]);
    free(tok);
    free(wt);
    free(x);
    free(y0);
    free(want);
    free(got);
    free(xg);
    free(g);
    free(u);
    free(d);
}

static void test_moe_batch(void)
{
    if (!live(G_AUTO)) return;
    moe_batch_case(16, 4, 300, 1024, 768, HY_TYPE_Q4_K, HY_TYPE_Q6_K, true, true);
    /* qwen1.5-moe's shape: a Q8_0 down of 1408 columns */
    moe_batch_case(12, 4, 100, 2048, 1408, HY_TYPE_Q4_K, HY_TYPE_Q8_0, true, true);
    moe_batch_case(12, 4, 90, 2048, 1408, HY_TYPE_Q4_K, HY_TYPE_Q5_0, true, true);
    moe_batch_case(6, 2, 37, 512, 512, HY_TYPE_Q5_K, HY_TYPE_Q4_0, true, true);
    moe_batch_case(8, 2, 2, 256, 512, HY_TYPE_Q8_0, HY_TYPE_Q4_K, true, true);
    moe_batch_case(6, 2, 37, 512, 768, HY_TYPE_Q3_K, HY_TYPE_Q2_K, true, true);
    moe_batch_case(6, 2, 37, 512, 768, HY_TYPE_Q4_1, HY_TYPE_Q5_1, true, true);
    /* large experts: the two busy ones by their own GEMMs, the others by the kernels */
    moe_batch_case(8, 2, 300, 2048, 4096, HY_TYPE_Q4_K, HY_TYPE_Q6_K, true, true);
    /* declined: a type without the integer kernels, slices in host memory */
    moe_batch_case(4, 2, 20, 256, 256, HY_TYPE_F16, HY_TYPE_Q4_K, true, false);
    moe_batch_case(4, 2, 20, 256, 256, HY_TYPE_Q4_K, HY_TYPE_Q4_K, false, false);
}

/* ---- attention ------------------------------------------------------------------ */

enum { ATT_NH = 8, ATT_CTX = MAX_CTX, ATT_NPOS = 1001, ATT_SHARED = 146 };

struct att_call {
    int64_t pos0, n_tok;
};

/* Three ways through the same positions (the inputs of a position are the
 * same in all three): their outputs at positions < ATT_SHARED must agree. */
static const struct att_call seq_decode[] = {
    {0, 1},     {1, 1},     {2, 17},    {19, 81},   {100, 1},   {101, 128}, {229, 128},
    {357, 128}, {485, 128}, {613, 128}, {741, 128}, {869, 128}, {997, 3},   {1000, 1}};
static const struct att_call seq_p128[] = {{0, 128}, {128, 17}, {145, 1}};
static const struct att_call seq_p17[] = {{0, 17}, {17, 128}, {145, 1}};
static const struct {
    const char *name;
    const struct att_call *calls;
    int n;
} att_seqs[] = {
    {"decode+fill", seq_decode, (int)HY_ARRAY_LEN(seq_decode)},
    {"prompt128-first", seq_p128, (int)HY_ARRAY_LEN(seq_p128)},
    {"prompt17-first", seq_p17, (int)HY_ARRAY_LEN(seq_p17)},
};

static double att_bound(uint32_t type)
{
    return type == HY_TYPE_F32   ? BOUND_ATT_F32
           : type == HY_TYPE_F16 ? BOUND_ATT_F16
                                 : BOUND_ATT_Q8_0;
}

/* Compares the caches over positions [0, filled): elements for F32/F16,
 * blocks for Q8_0; src [position][dim] is what was stored. Returns the
 * number of differing units. */
static long cache_diff(const char *what, uint32_t type, bool transposed, const uint8_t *cpu,
                       const uint8_t *gpu, int64_t filled, int64_t dim, const float *src)
{
    const struct quant_traits *tr = quant_traits(type);
    const size_t unit = tr->block_bytes;
    const int64_t unit_elems = tr->block_size, n_units = dim / unit_elems;
    long n_diff = 0;
    for (int64_t p = 0; p < filled; p++) {
        for (int64_t u = 0; u < n_units; u++) {
            size_t off;
            if (transposed) /* row d = u, position p */
                off = (size_t)u * (size_t)quant_bytes(type, ATT_CTX) + (size_t)p * unit;
            else
                off = (size_t)p * (size_t)quant_bytes(type, (uint64_t)dim) + (size_t)u * unit;
            if (!memcmp(cpu + off, gpu + off, unit)) continue;
            if (n_diff++) continue;
            const float s = src[p * dim + u * unit_elems];
            if (type == HY_TYPE_F32) {
                float a, b;
                memcpy(&a, cpu + off, 4);
                memcpy(&b, gpu + off, 4);
                fprintf(stderr,
                        "  %s: first difference at position %lld dim %lld: CPU %.9g, GPU %.9g\n",
                        what, (long long)p, (long long)u, (double)a, (double)b);
            } else if (type == HY_TYPE_F16) {
                uint16_t a, b;
                memcpy(&a, cpu + off, 2);
                memcpy(&b, gpu + off, 2);
                fprintf(stderr,
                        "  %s: first difference at position %lld dim %lld: x = %.9g, CPU 0x%04x, "
                        "GPU 0x%04x (the CPU rounds to nearest even: quant_f32_to_f16)\n",
                        what, (long long)p, (long long)u, (double)s, a, b);
            } else {
                uint16_t da, db;
                memcpy(&da, cpu + off, 2);
                memcpy(&db, gpu + off, 2);
                int j = 0;
                while (j < 32 && cpu[off + 2 + j] == gpu[off + 2 + j]) j++;
                fprintf(
                    stderr,
                    "  %s: first difference at position %lld block %lld: d CPU 0x%04x GPU 0x%04x, "
                    "first differing q at %d (x = %.9g): CPU %d, GPU %d\n"
                    "  (the CPU: d = amax / 127, id = d ? 1 / d : 0 (IEEE divisions), "
                    "q = roundf(x * id), d stored as F16 rounded to nearest even)\n",
                    what, (long long)p, (long long)u, da, db, j,
                    j < 32 ? (double)src[p * dim + u * unit_elems + j] : 0.0,
                    j < 32 ? (int)(int8_t)cpu[off + 2 + j] : 0,
                    j < 32 ? (int)(int8_t)gpu[off + 2 + j] : 0);
            }
        }
    }
    return n_diff;
}

/* ATT_NH query heads over n_kv KV heads; rope: NULL, or RoPE folded into
 * the op (q and k go in unrotated); norms: the heads' RMSNorms of q and k in
 * place before each call (ARCH_QK_NORM; the GPU's decode kernel applies them
 * itself). */
static void attention_config(uint32_t type, int64_t hd, const struct backend_rope *rope, int n_kv,
                             bool norms)
{
    const uint64_t seed = case_seed();
    struct rng r;
    rng_init(&r, seed);
    const int64_t qd = ATT_NH * hd, kd = n_kv * hd;
    float *q = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * qd));
    float *k = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * kd));
    float *v = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * kd));
    fill_normal(&r, q, (size_t)(ATT_NPOS * qd), 2.0f); /* scores ~ 2 N(0,1): peaked softmax */
    fill_normal(&r, k, (size_t)(ATT_NPOS * kd), 1.0f);
    fill_normal(&r, v, (size_t)(ATT_NPOS * kd), 1.0f);
    /* the heads' norm weights (q's about 1, k's about 1.5: other scores than
     * without them; eps as Qwen3's) */
    const float eps = 1e-6f;
    float *wq = xmalloc(sizeof(float) * (size_t)hd), *wk = xmalloc(sizeof(float) * (size_t)hd);
    for (int64_t i = 0; i < hd; i++) {
        wq[i] = 1.0f + 0.2f * (float)rng_normal(&r);
        wk[i] = 1.5f + 0.3f * (float)rng_normal(&r);
    }
    const bool vt = backend_kv_v_transposed(type);
    const size_t k_bytes = (size_t)ATT_CTX * (size_t)quant_bytes(type, (uint64_t)kd);
    const size_t v_bytes = vt ? (size_t)kd * (size_t)quant_bytes(type, ATT_CTX) : k_bytes;
    const size_t c_bytes = HY_MAX(k_bytes, v_bytes);
    uint8_t *kc = xmalloc(k_bytes), *vc = xmalloc(v_bytes);
    uint8_t *kg = xmalloc(k_bytes), *vg = xmalloc(v_bytes), *ff = xmalloc(c_bytes);
    memset(ff, 0xff, c_bytes);
    float *out_cpu = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * qd));
    float *out_gpu = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * qd));
    /* the CPU rotates its q and k in place: copies of them */
    float *q_cpu = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * qd));
    float *k_cpu = xmalloc(sizeof(float) * (size_t)(ATT_NPOS * kd));
    float *sh_cpu[3], *sh_gpu[3];
    for (int s = 0; s < 3; s++) {
        sh_cpu[s] = xmalloc(sizeof(float) * (size_t)(ATT_SHARED * qd));
        sh_gpu[s] = xmalloc(sizeof(float) * (size_t)(ATT_SHARED * qd));
    }
    struct backend *be = live(G_AUTO) ? T.gpu[G_AUTO] : NULL;
    void *kd_dev = be ? be->ops->alloc(be, k_bytes) : NULL;
    void *vd_dev = be ? be->ops->alloc(be, v_bytes) : NULL;
    if (be && !CHECK(kd_dev && vd_dev)) {
        if (kd_dev) be->ops->dealloc(be, kd_dev);
        if (vd_dev) be->ops->dealloc(be, vd_dev);
        be = NULL;
    }
    if (be) {
        backend_upload(be, T.buf[G_AUTO][4], wq, sizeof(float) * (size_t)hd);
        backend_upload(be, T.buf[G_AUTO][5], wk, sizeof(float) * (size_t)hd);
    }
    char tname[48], cfg[200], rope_cfg[64] = "";
    if (rope)
        snprintf(rope_cfg, sizeof rope_cfg, ", RoPE %s %lld dims in the op",
                 rope->mode == BACKEND_ROPE_NEOX ? "neox" : "norm", (long long)rope->n_rot);
    snprintf(tname, sizeof tname, "attention %s%s%s", quant_type_name(type), rope ? " +rope" : "",
             norms ? " +norms" : "");
    snprintf(cfg, sizeof cfg, "attention %s cache, head_dim %lld, %d/%d heads%s%s (seed %#llx)",
             quant_type_name(type), (long long)hd, ATT_NH, n_kv, rope_cfg,
             norms ? ", q and k head norms before it" : "", (unsigned long long)seed);
    bool gpu_ran[3] = {false, false, false};
    for (int s = 0; s < 3; s++) {
        memset(kc, 0xff, k_bytes);
        memset(vc, 0xff, v_bytes);
        if (be) {
            backend_upload(be, kd_dev, ff, k_bytes);
            backend_upload(be, vd_dev, ff, v_bytes);
        }
        struct backend_attn a = {.k_cache = kc,
                                 .v_cache = vc,
                                 .n_ctx = ATT_CTX,
                                 .n_head = ATT_NH,
                                 .n_head_kv = n_kv,
                                 .head_dim = hd,
                                 .head_dim_v = hd,
                                 .scale = (float)(1.0 / sqrt((double)hd)),
                                 .k_type = type,
                                 .v_type = type,
                                 .rope = rope};
        struct backend_attn ag = a;
        ag.k_cache = kd_dev;
        ag.v_cache = vd_dev;
        int64_t filled = 0;
        bool ok = be != NULL;
        for (int c = 0; c < att_seqs[s].n; c++) {
            const int64_t p0 = att_seqs[s].calls[c].pos0, nt = att_seqs[s].calls[c].n_tok;
            HY_ASSERT(p0 == filled && p0 + nt <= ATT_NPOS);
            a.pos0 = ag.pos0 = p0;
            a.n_tok = ag.n_tok = nt;
            memcpy(q_cpu + p0 * qd, q + p0 * qd, sizeof(float) * (size_t)(nt * qd));
            memcpy(k_cpu + p0 * kd, k + p0 * kd, sizeof(float) * (size_t)(nt * kd));
            if (norms) {
                backend_rms_norm(T.cpu, q_cpu + p0 * qd, wq, eps, nt * ATT_NH, hd, q_cpu + p0 * qd);
                backend_rms_norm(T.cpu, k_cpu + p0 * kd, wk, eps, nt * n_kv, hd, k_cpu + p0 * kd);
            }
            backend_attention(T.cpu, &a, q_cpu + p0 * qd, k_cpu + p0 * kd, v + p0 * kd,
                              out_cpu + p0 * qd);
            filled = p0 + nt;
            if (!ok || !live(G_AUTO)) {
                ok = false;
                continue;
            }
            float *const *b = T.buf[G_AUTO];
            backend_upload(be, b[0], q + p0 * qd, sizeof(float) * (size_t)(nt * qd));
            backend_upload(be, b[1], k + p0 * kd, sizeof(float) * (size_t)(nt * kd));
            backend_upload(be, b[2], v + p0 * kd, sizeof(float) * (size_t)(nt * kd));
            gpu_poison(G_AUTO, b[3], (size_t)(nt * qd));
            if (norms) {
                backend_rms_norm(be, b[0], b[4], eps, nt * ATT_NH, hd, b[0]);
                backend_rms_norm(be, b[1], b[5], eps, nt * n_kv, hd, b[1]);
            }
            backend_attention(be, &ag, b[0], b[1], b[2], b[3]);
            backend_download(be, b[3], out_gpu + p0 * qd, sizeof(float) * (size_t)(nt * qd));
            char what[320];
            snprintf(what, sizeof what, "%s, %s: pos0 %lld n_tok %lld", cfg, att_seqs[s].name,
                     (long long)p0, (long long)nt);
            if (!gpu_sync(G_AUTO, what)) {
                ok = false;
                continue;
            }
            const double e = check_close(tname, att_bound(type), out_gpu + p0 * qd,
                                         out_cpu + p0 * qd, (size_t)(nt * qd), what);
            char eb[16];
            printf("%s: %s (bound %.1e)\n", what, fmt_err(eb, sizeof eb, e), att_bound(type));
        }
        memcpy(sh_cpu[s], out_cpu, sizeof(float) * (size_t)(ATT_SHARED * qd));
        if (!ok) continue;
        gpu_ran[s] = true;
        memcpy(sh_gpu[s], out_gpu, sizeof(float) * (size_t)(ATT_SHARED * qd));
        /* the caches the GPU wrote, byte for byte */
        backend_download(be, kd_dev, kg, k_bytes);
        backend_download(be, vd_dev, vg, v_bytes);
        char what[320];
        snprintf(what, sizeof what, "%s, %s: caches", cfg, att_seqs[s].name);
        if (!gpu_sync(G_AUTO, what)) continue;
        char kw[320], vw[320];
        snprintf(kw, sizeof kw, "%s: K cache", cfg);
        snprintf(vw, sizeof vw, "%s: V cache%s", cfg, vt ? " (transposed)" : "");
        /* with RoPE in the op the K rows are the rotated keys, whose angles
         * may differ in the last bit (the rope bound): the outputs check them;
         * with the heads' norms the rows are the normed keys (k_cpu's) */
        const long nk =
            rope ? 0 : cache_diff(kw, type, false, kc, kg, filled, kd, norms ? k_cpu : k);
        const long nv = cache_diff(vw, type, vt, vc, vg, filled, kd, v);
        if (!CHECK(nk == 0 && nv == 0))
            fprintf(stderr,
                    "  %s, %s: %ld K and %ld V %s differ from the CPU's over %lld positions\n", cfg,
                    att_seqs[s].name, nk, nv, type == HY_TYPE_Q8_0 ? "blocks" : "elements",
                    (long long)filled);
        printf("%s, %s: caches over %lld positions: %ld K, %ld V %s differ\n", cfg,
               att_seqs[s].name, (long long)filled, nk, nv,
               type == HY_TYPE_Q8_0 ? "blocks" : "elements");
    }
    /* How the positions were batched: the CPU's outputs are bit-identical
     * (backend.h); the GPU's agree within the bound (its decode kernel splits
     * the keys, its batch kernel tiles them: the sums run in other orders). */
    const size_t sh_n = (size_t)(ATT_SHARED * qd);
    for (int s = 1; s < 3; s++) {
        if (!CHECK(memcmp(sh_cpu[s], sh_cpu[0], sh_n * sizeof(float)) == 0))
            fprintf(stderr, "  %s: the CPU's outputs of %s differ from %s (test bug?)\n", cfg,
                    att_seqs[s].name, att_seqs[0].name);
        if (!gpu_ran[s] || !gpu_ran[0]) continue;
        char what[320];
        snprintf(what, sizeof what, "%s: GPU outputs of %s against %s", cfg, att_seqs[s].name,
                 att_seqs[0].name);
        const double e = check_close(tname, att_bound(type), sh_gpu[s], sh_gpu[0], sh_n, what);
        char eb[16];
        printf("%s: %s (bound %.1e)\n", what, fmt_err(eb, sizeof eb, e), att_bound(type));
    }
    if (be) {
        be->ops->dealloc(be, kd_dev);
        be->ops->dealloc(be, vd_dev);
    }
    for (int s = 0; s < 3; s++) {
        free(sh_cpu[s]);
        free(sh_gpu[s]);
    }
    free(q);
    free(k);
    free(v);
    free(wq);
    free(wk);
    free(kc);
    free(vc);
    free(kg);
    free(vg);
    free(ff);
    free(out_cpu);
    free(out_gpu);
    free(q_cpu);
    free(k_cpu);
}

static void test_attention(void)
{
    static const uint32_t types[] = {HY_TYPE_F32, HY_TYPE_F16, HY_TYPE_Q8_0};
    /* Llama 3's rope with frequency factors; a NeoX rope over part of the head */
    static float ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1.0f + 0.25f * (float)(i % 7);
    const struct backend_rope rope_norm = {BACKEND_ROPE_NORM, 64, 500000.0, 1.0, ff};
    const struct backend_rope rope_neox = {BACKEND_ROPE_NEOX, 96, 10000.0, 0.5, NULL};
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        attention_config(types[ti], 64, NULL, 2, false);
        attention_config(types[ti], 128, NULL, 2, false);
        attention_config(types[ti], 64, &rope_norm, 2, false);
        attention_config(types[ti], 128, &rope_neox, 2, false);
    }
    /* heads of any size (F32 and F16 caches; Q8_0 needs whole blocks): 4 and 6
     * (no 16-byte pieces; 6 not even in fours), 20 (F16 rows of whole pieces
     * only in fours), 48 and 80 (decode's key parts must divide the pieces),
     * the largest, 256 */
    const struct backend_rope rope_4 = {BACKEND_ROPE_NORM, 4, 10000.0, 1.0, NULL};
    const struct backend_rope rope_20 = {BACKEND_ROPE_NEOX, 20, 10000.0, 1.0, NULL};
    const struct backend_rope rope_64 = {BACKEND_ROPE_NEOX, 64, 1000000.0, 1.0, NULL};
    const struct backend_rope rope_256 = {BACKEND_ROPE_NORM, 256, 10000.0, 1.0, NULL};
    for (size_t ti = 0; ti < 2; ti++) {
        attention_config(types[ti], 4, &rope_4, 2, false);
        attention_config(types[ti], 6, NULL, 2, false);
        attention_config(types[ti], 20, &rope_20, 2, false);
        attention_config(types[ti], 48, NULL, 2, false);
        attention_config(types[ti], 80, &rope_64, 2, false);
    }
    attention_config(HY_TYPE_F16, 256, &rope_256, 2, false);
    attention_config(HY_TYPE_Q8_0, 256, &rope_64, 2, false);
    /* groups of 8, 2 and 1 query heads a KV head */
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        attention_config(types[ti], 128, &rope_neox, 1, false);
        attention_config(types[ti], 64, &rope_norm, 4, false);
    }
    attention_config(HY_TYPE_F16, 128, &rope_norm, 8, false);
    /* the heads' norms before it (Qwen3's q and k norms: decode applies them
     * in its kernel, batches launch them), with RoPE over the whole head or
     * part of it, and without (the K cache then compared byte for byte) */
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        attention_config(types[ti], 128, &rope_neox, 2, true);
        attention_config(types[ti], 64, NULL, 4, true);
    }
    attention_config(HY_TYPE_F16, 256, &rope_256, 1, true);
    attention_config(HY_TYPE_F32, 80, &rope_64, 2, true);
    attention_config(HY_TYPE_F16, 20, &rope_20, 2, true);
    /* decode with a group's heads in one block at every context (by default
     * only where such blocks fill the device: longer contexts than these) */
    cuda_backend_attention_groups(1);
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        attention_config(types[ti], 128, &rope_neox, 1, false);
        attention_config(types[ti], 64, &rope_norm, 2, false);
        attention_config(types[ti], 64, &rope_norm, 4, false);
        attention_config(types[ti], 128, &rope_neox, 2, true);
    }
    attention_config(HY_TYPE_F16, 256, &rope_256, 2, false);
    attention_config(HY_TYPE_F16, 128, &rope_neox, 1, true);
    cuda_backend_attention_groups(CUDA_ATT_GROUPS_FILL);
}

/* ---- error paths --------------------------------------------------------------------- */

static void test_errors(void)
{
    /* absurd sizes: NULL, and the backend goes on working */
    if (live(G_AUTO)) {
        struct backend *be = T.gpu[G_AUTO];
        static const size_t sizes[] = {(size_t)1 << 50, SIZE_MAX / 2, SIZE_MAX - 100};
        for (size_t i = 0; i < HY_ARRAY_LEN(sizes); i++) {
            void *p = be->ops->alloc(be, sizes[i]);
            if (!CHECK(p == NULL)) {
                fprintf(stderr, "  alloc(%zu bytes) did not fail\n", sizes[i]);
                be->ops->dealloc(be, p);
            }
        }
        float y[64], x[64], want[64], got[64];
        for (int i = 0; i < 64; i++) {
            y[i] = (float)i;
            x[i] = 1.0f;
            want[i] = (float)i + 0.5f;
        }
        backend_upload(be, T.buf[G_AUTO][0], y, sizeof y);
        backend_upload(be, T.buf[G_AUTO][1], x, sizeof x);
        backend_add(be, T.buf[G_AUTO][0], T.buf[G_AUTO][1], 0.5f, 64);
        backend_download(be, T.buf[G_AUTO][0], got, sizeof got);
        if (!CHECK_OK(backend_sync(be)))
            fprintf(stderr, "  a failed alloc is not an op failure: it only returns NULL (clear "
                            "the CUDA error, or a later launch check reports it)\n");
        else
            CHECK(memcmp(got, want, sizeof got) == 0);
    }
    /* a device that does not exist */
    struct cuda_backend_config cfg = {.device = cuda_device_count(), .n_threads = 1};
    struct backend *nb = NULL;
    CHECK_STATUS(cuda_backend_create(&cfg, &nb), HY_ERR_UNSUPPORTED);
    if (!CHECK(nb == NULL)) backend_free(nb);
    nb = NULL;
    cfg.device = -1;
    CHECK(cuda_backend_create(&cfg, &nb) != HY_OK);
    if (!CHECK(nb == NULL)) backend_free(nb);
    printf("error paths: done\n");
}

/* ---- setup ---------------------------------------------------------------------------- */

static bool setup(void)
{
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    T.n_threads = (int)HY_MAX(1, HY_MIN(ncpu, 16));
    const struct backend_limits lim = {
        .max_batch = MAX_TOK, .max_ctx = MAX_CTX, .max_head_dim = ATT_MAX_HD, .max_cols = MAX_COLS};
    struct cpu_backend_opts co = {.n_threads = T.n_threads};
    if (!CHECK_OK(cpu_backend_init(&co, &T.cpu))) return false;
    if (!CHECK_OK(backend_reserve(T.cpu, &lim))) return false;
    if (!CHECK_OK(threadpool_init(T.n_threads, &T.pool))) return false;
    CHECK(!backend_is_cuda(T.cpu));
    printf("CPU reference: %d threads, kernels %s\n", T.n_threads, cpu_backend_kernels(T.cpu));
    T.poison = xmalloc(BUF_FLOATS * sizeof(float));
    const uint32_t nan_bits = 0x7fc0dead; /* a quiet NaN */
    for (size_t i = 0; i < BUF_FLOATS; i++) memcpy(&T.poison[i], &nan_bits, 4);
    for (int g = 0; g < N_GPU; g++) {
        struct cuda_backend_config cfg = {.device = 0,
                                          .n_threads = T.n_threads,
                                          .weight_cache_bytes =
                                              gpu_cfg[g].cache_later ? 0 : gpu_cfg[g].cache_bytes,
                                          .copy_slot_bytes = gpu_cfg[g].slot_bytes,
                                          .host_policy = gpu_cfg[g].policy,
                                          .moe_half = gpu_cfg[g].half};
        if (!CHECK_OK(cuda_backend_create(&cfg, &T.gpu[g]))) {
            fprintf(stderr, "  backend %s: not made; its cases are skipped\n", gpu_cfg[g].name);
            T.gpu[g] = NULL;
            continue;
        }
        struct backend *be = T.gpu[g];
        CHECK(backend_is_cuda(be));
        if (gpu_cfg[g].cache_later)
            T.dead[g] |= !CHECK_OK(cuda_backend_set_weight_cache(be, gpu_cfg[g].cache_bytes));
        /* reserve may be called again with larger limits (one backend tries it) */
        if (g == G_SLOT) {
            const struct backend_limits small = {
                .max_batch = 8, .max_ctx = 64, .max_head_dim = 64, .max_cols = 256};
            T.dead[g] |= !CHECK_OK(backend_reserve(be, &small));
        }
        T.dead[g] |= !CHECK_OK(backend_reserve(be, &lim));
        for (int i = 0; i < N_BUF && !T.dead[g]; i++) {
            T.buf[g][i] = be->ops->alloc(be, BUF_FLOATS * sizeof(float));
            T.dead[g] |= !CHECK(T.buf[g][i] != NULL);
        }
        const struct cuda_backend_rates rt = cuda_backend_rates(be);
        printf("CUDA backend %-18s: PCIe %.1f GB/s, device memory read %.0f GB/s, CPU matvec %.1f "
               "GB/s, device memory held %.0f MiB%s\n",
               gpu_cfg[g].name, rt.pcie_h2d_bytes_per_s / 1e9, rt.device_read_bytes_per_s / 1e9,
               rt.cpu_matvec_bytes_per_s / 1e9, (double)cuda_backend_device_bytes(be) / 1048576.0,
               T.dead[g] ? " (FAILED)" : "");
        /* device memory is read faster than host memory comes over PCIe */
        T.dead[g] |= !CHECK(rt.device_read_bytes_per_s > rt.pcie_h2d_bytes_per_s);
        gpu_sync(g, "setup");
    }
    return live(G_AUTO);
}

static void print_tallies(void)
{
    printf("\nnormalized errors ||gpu - cpu|| / ||cpu||, largest per check:\n\n");
    printf("| check | bound | largest | cases | failed |\n| --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_tallies; i++) {
        const struct tally *t = &tallies[i];
        char b[16];
        printf("| %s | %.1e | %s | %ld | %ld |\n", t->name, t->bound, fmt_err(b, sizeof b, t->max),
               t->n, t->failed);
    }
    printf("(rope's bound grows with the position: the one shown is the first case's)\n\n");
}

int main(int argc, char **argv)
{
    const int n_dev = cuda_device_count();
    if (n_dev <= 0) {
        printf("%s: no CUDA device: skipped\n", argv[0]);
        return TEST_SKIP;
    }
    T.seed0 = argc > 1 ? strtoull(argv[1], NULL, 0) : 0x6a09e667f3bcc908ull;
    T.next_key = 0x5eed000000000000ull;
    uint64_t free_b = 0, total_b = 0;
    if (CHECK(cuda_device_memory(0, &free_b, &total_b))) CHECK(free_b <= total_b && total_b > 0);
    printf("%d CUDA device(s); device 0: %.1f of %.1f GiB free; seed %#llx (rerun: %s SEED)\n",
           n_dev, (double)free_b / 1073741824.0, (double)total_b / 1073741824.0,
           (unsigned long long)T.seed0, argv[0]);
    if (setup()) {
        /* first: the cache backends' entries are then cut to expert slices
         * (the prefetch check), not yet to the larger keyed weights below */
        test_moe_token();
        test_prefetch_gate();
        test_prefetch_use();
        test_moe_split_order();
        test_moe_batch();
        test_moe_routed();
        test_matmul();
        test_matmul_fused();
        test_route();
        test_top_k();
        test_get_rows();
        test_rms_norm();
        test_rms_norm_pairs();
        test_rope();
        test_softmax();
        test_silu_mul_add();
        test_attention();
        test_errors();
        print_tallies();
    }
    for (int g = 0; g < N_GPU; g++) {
        if (!T.gpu[g]) continue;
        for (int i = 0; i < N_BUF; i++)
            if (T.buf[g][i]) T.gpu[g]->ops->dealloc(T.gpu[g], T.buf[g][i]);
        backend_free(T.gpu[g]);
    }
    backend_free(T.cpu);
    threadpool_free(T.pool);
    free(T.poison);
    return check_report(argv[0]);
}

#endif /* HY_HAVE_CUDA */
