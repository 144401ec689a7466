/*
 * Unit tests of the CPU backend's ops against naive double-precision
 * references written out here: matmul for F32, F16 and BF16 weights (both
 * kernel sets, several thread counts, batch against one token at a time;
 * one-token F16 products both ways the backend tries, against vec_dot),
 * get_rows, rms_norm, RoPE in both orderings (with pass-through dims),
 * attention over a KV cache (a prompt batch against token-by-token decode
 * and against the reference), softmax, silu*mul and add, and moe_token
 * (waited for, and started with its completion flag) against the op-by-op
 * sequence.
 *
 * Tolerances are relative to the magnitude of the terms summed, since F32
 * accumulation over n terms is accurate to about n * 2^-24 of that.
 * Bit-identity is required where the design promises it: across thread
 * counts and between batch and single-token evaluation.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "core/rng.h"
#include "core/timing.h"
#include "quant/quant.h"

static struct backend *make_backend_opts(const struct cpu_backend_opts *o)
{
    struct backend *be = NULL;
    if (!CHECK_OK(cpu_backend_init(o, &be))) exit(1);
    struct backend_limits lim = {
        .max_batch = 64, .max_ctx = 64, .max_head_dim = 128, .max_cols = 4096};
    if (!CHECK_OK(backend_reserve(be, &lim))) exit(1);
    return be;
}

/* moe_chunk_bytes: cpu_backend_opts' (0: the default) */
static struct backend *make_backend_moe(int n_threads, bool portable, int64_t moe_chunk_bytes)
{
    struct cpu_backend_opts o = {
        .n_threads = n_threads, .portable = portable, .moe_chunk_bytes = moe_chunk_bytes};
    return make_backend_opts(&o);
}

static struct backend *make_backend(int n_threads, bool portable)
{
    return make_backend_moe(n_threads, portable, 0);
}

static void fill_normal(struct rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(r) * scale;
}

/* A weight of the given type holding (a rounding of) src [rows][cols];
 * *ref receives the exact values the weight holds. */
static void *make_weight(uint32_t type, const float *src, int64_t rows, int64_t cols, float *ref,
                         struct backend_weight *w)
{
    size_t n = (size_t)(rows * cols);
    size_t esz = type == HY_TYPE_F32 ? 4 : 2;
    void *data = malloc(n * esz);
    for (size_t i = 0; i < n; i++) {
        if (type == HY_TYPE_F32) {
            ((float *)data)[i] = src[i];
            ref[i] = src[i];
        } else if (type == HY_TYPE_F16) {
            uint16_t h = quant_f32_to_f16(src[i]);
            ((uint16_t *)data)[i] = h;
            ref[i] = quant_f16_to_f32(h);
        } else {
            uint16_t h = quant_f32_to_bf16(src[i]);
            ((uint16_t *)data)[i] = h;
            ref[i] = quant_bf16_to_f32(h);
        }
    }
    *w = (struct backend_weight){data, type, cols, rows, (size_t)cols * esz, "test",
                                 BACKEND_MEM_HOST, 0, false};
    return data;
}

static void test_matmul(void)
{
    static const uint32_t types[] = {HY_TYPE_F32, HY_TYPE_F16, HY_TYPE_BF16};
    /* odd sizes: tails of the 8/32-lane loops and of the 256-element chunks */
    static const int64_t shapes[][2] = {{37, 300}, {64, 256}, {5, 7}, {130, 1000}};
    struct rng r;
    rng_init(&r, 42);
    struct backend *be1 = make_backend(1, false), *be3 = make_backend(3, false);
    struct backend *bp1 = make_backend(1, true), *bp2 = make_backend(2, true);
    const int64_t n_tok = 19;
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            float *src = malloc(sizeof(float) * (size_t)(rows * cols));
            float *ref = malloc(sizeof(float) * (size_t)(rows * cols));
            float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
            float *y[4], *y_one = malloc(sizeof(float) * (size_t)rows);
            for (int k = 0; k < 4; k++) y[k] = malloc(sizeof(float) * (size_t)(n_tok * rows));
            fill_normal(&r, src, (size_t)(rows * cols), 1.0f);
            fill_normal(&r, x, (size_t)(n_tok * cols), 1.0f);
            struct backend_weight w;
            void *data = make_weight(types[ti], src, rows, cols, ref, &w);
            /* the activations as the dot product sees them: converted to the
             * weight's vec_dot_type (F16 for F16 weights, BF16 for BF16), as llama.cpp does */
            float *xr = malloc(sizeof(float) * (size_t)(n_tok * cols));
            for (int64_t i = 0; i < n_tok * cols; i++)
                xr[i] = types[ti] == HY_TYPE_F16    ? quant_f16_to_f32(quant_f32_to_f16(x[i]))
                        : types[ti] == HY_TYPE_BF16 ? quant_bf16_to_f32(quant_f32_to_bf16(x[i]))
                                                    : x[i];
            backend_matmul(be1, &w, x, n_tok, y[0]);
            backend_matmul(be3, &w, x, n_tok, y[1]);
            backend_matmul(bp1, &w, x, n_tok, y[2]);
            backend_matmul(bp2, &w, x, n_tok, y[3]);
            int bad_ref = 0, bad_thr = 0, bad_one = 0;
            for (int64_t t = 0; t < n_tok; t++) {
                for (int64_t rr = 0; rr < rows; rr++) {
                    double s = 0, mag = 0;
                    for (int64_t c = 0; c < cols; c++) {
                        s += (double)ref[rr * cols + c] * xr[t * cols + c];
                        mag += fabs((double)ref[rr * cols + c] * xr[t * cols + c]);
                    }
                    /* n * 2^-24 * sum|terms|: a bound for any order of F32 summation */
                    const double tol = (double)cols * 6e-8 * mag + 1e-6;
                    for (int k = 0; k < 4; k++) bad_ref += fabs(y[k][t * rows + rr] - s) > tol;
                    bad_thr += y[0][t * rows + rr] != y[1][t * rows + rr];
                    bad_thr += y[2][t * rows + rr] != y[3][t * rows + rr];
                }
            }
            /* one token at a time gives exactly the batch's rows */
            for (int64_t t = 0; t < n_tok; t++) {
                backend_matmul(be3, &w, x + t * cols, 1, y_one);
                for (int64_t rr = 0; rr < rows; rr++) bad_one += y_one[rr] != y[1][t * rows + rr];
            }
            if (!CHECK_EQ_INT(bad_ref, 0) || !CHECK_EQ_INT(bad_thr, 0) || !CHECK_EQ_INT(bad_one, 0))
                fprintf(stderr, "  type %s, shape [%lld, %lld]\n", quant_type_name(types[ti]),
                        (long long)cols, (long long)rows);
            free(data);
            free(xr);
            free(src);
            free(ref);
            free(x);
            free(y_one);
            for (int k = 0; k < 4; k++) free(y[k]);
        }
    }
    backend_free(be1);
    backend_free(be3);
    backend_free(bp1);
    backend_free(bp2);
}

/* One-token products of F16 weights large enough to be timed: the backend
 * tries both ways (gemv, rows at once, and vec_dot row by row) on the first
 * calls, then keeps the faster; every call must give exactly the vec_dot of
 * each row, before the choice and after it, at 1 and 2 threads. */
static void test_matmul_one_token_ways(void)
{
    static const int64_t shapes[][2] = {{1040, 4096}, {304, 14336}}; /* 8.5 and 8.7 MB */
    struct rng r;
    rng_init(&r, 9);
    const struct quant_kernels *k = quant_kernels(HY_TYPE_F16);
    for (int nt = 1; nt <= 2; nt++) {
        struct backend *be = NULL;
        struct cpu_backend_opts o = {.n_threads = nt, .portable = false};
        if (!CHECK_OK(cpu_backend_init(&o, &be))) return;
        struct backend_limits lim = {
            .max_batch = 4, .max_ctx = 1, .max_head_dim = 64, .max_cols = 14336};
        if (!CHECK_OK(backend_reserve(be, &lim))) return;
        for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            float *src = malloc(sizeof(float) * (size_t)(rows * cols));
            float *ref = malloc(sizeof(float) * (size_t)(rows * cols));
            float *x = malloc(sizeof(float) * (size_t)cols);
            float *y = malloc(sizeof(float) * (size_t)rows),
                  *want = malloc(sizeof(float) * (size_t)rows);
            uint16_t *xq = malloc(sizeof(uint16_t) * (size_t)cols);
            fill_normal(&r, src, (size_t)(rows * cols), 1.0f);
            fill_normal(&r, x, (size_t)cols, 1.0f);
            struct backend_weight w;
            void *data = make_weight(HY_TYPE_F16, src, rows, cols, ref, &w);
            k->from_float(x, xq, cols);
            for (int64_t i = 0; i < rows; i++)
                want[i] = k->vec_dot(cols, (const uint8_t *)data + (size_t)i * w.row_bytes, xq);
            int bad = 0;
            for (int call = 0; call < 12; call++) {
                memset(y, 0xff, sizeof(float) * (size_t)rows);
                backend_matmul(be, &w, x, 1, y);
                for (int64_t i = 0; i < rows; i++)
                    bad += memcmp(&y[i], &want[i], sizeof(float)) != 0;
            }
            if (!CHECK_EQ_INT(bad, 0))
                fprintf(stderr, "  F16 [%lld, %lld], %d threads\n", (long long)cols,
                        (long long)rows, nt);
            free(data);
            free(src);
            free(ref);
            free(x);
            free(y);
            free(want);
            free(xq);
        }
        backend_free(be);
    }
}

static void test_get_rows(void)
{
    struct backend *be = make_backend(2, false);
    struct rng r;
    rng_init(&r, 7);
    const int64_t rows = 10, cols = 33;
    float src[330], ref[330], out[3 * 33];
    fill_normal(&r, src, 330, 2.0f);
    static const uint32_t types[] = {HY_TYPE_F32, HY_TYPE_F16, HY_TYPE_BF16};
    const int32_t ids[3] = {9, 0, 4};
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        struct backend_weight w;
        void *data = make_weight(types[ti], src, rows, cols, ref, &w);
        backend_get_rows(be, &w, ids, 3, out);
        int bad = 0;
        for (int i = 0; i < 3; i++)
            for (int64_t c = 0; c < cols; c++) bad += out[i * cols + c] != ref[ids[i] * cols + c];
        CHECK_EQ_INT(bad, 0);
        free(data);
    }
    backend_free(be);
}

static void test_elementwise(void)
{
    struct backend *be = make_backend(1, false);
    struct rng r;
    rng_init(&r, 9);
    float x[2 * 50], w[50], y[2 * 50];
    fill_normal(&r, x, 100, 3.0f);
    fill_normal(&r, w, 50, 1.0f);
    backend_rms_norm(be, x, w, 1e-5f, 2, 50, y);
    for (int t = 0; t < 2; t++) {
        double ss = 0;
        for (int i = 0; i < 50; i++) ss += (double)x[t * 50 + i] * x[t * 50 + i];
        double s = 1.0 / sqrt(ss / 50 + 1e-5);
        double err = 0;
        for (int i = 0; i < 50; i++)
            err = fmax(err, fabs(y[t * 50 + i] - x[t * 50 + i] * s * w[i]));
        CHECK(err < 1e-5);
    }

    float sm[2 * 5] = {1, 2, 3, 4, 5, -100, 0, 100, 0, 0};
    backend_softmax(be, sm, 2, 5);
    double sum0 = 0;
    for (int i = 0; i < 5; i++) sum0 += sm[i];
    CHECK_NEAR(sum0, 1.0, 1e-6);
    CHECK_NEAR(sm[4], exp(5.0) / (exp(1.0) + exp(2.0) + exp(3.0) + exp(4.0) + exp(5.0)), 1e-6);
    CHECK_NEAR(sm[7], 1.0, 1e-6);

    float g[4] = {-2, 0, 1, 3}, u[4] = {1, 2, 3, -1};
    backend_silu_mul(be, g, u, 4);
    const double gin[4] = {-2, 0, 1, 3};
    for (int i = 0; i < 4; i++) CHECK_NEAR(g[i], gin[i] / (1 + exp(-gin[i])) * u[i], 1e-6);

    float a[3] = {1, 2, 3}, b[3] = {10, 20, 30};
    backend_add(be, a, b, 0.5f, 3);
    CHECK_NEAR(a[2], 18.0, 0);
    backend_add(be, a, b, 1.0f, 3);
    CHECK_NEAR(a[0], 16.0, 0);
    backend_free(be);
}

/* RoPE reference: pairs (2i, 2i+1) or (i, i + n_rot/2), angle pos * base^(-2i/n_rot). */
static void rope_ref(double *v, int64_t head_dim, int64_t n_rot, int64_t pos, double base,
                     bool neox)
{
    (void)head_dim;
    for (int64_t i = 0; i < n_rot / 2; i++) {
        double th = (double)pos * pow(base, -2.0 * (double)i / (double)n_rot);
        int64_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

static void test_rope(void)
{
    struct backend *be = make_backend(1, false);
    struct rng r;
    rng_init(&r, 11);
    const int64_t n_tok = 3, n_head = 2, hd = 16, pos0 = 1000;
    for (int mode = 0; mode < 2; mode++) {
        for (int64_t n_rot = 8; n_rot <= 16; n_rot += 8) {
            float x[3 * 2 * 16];
            double ref[3 * 2 * 16];
            fill_normal(&r, x, HY_ARRAY_LEN(x), 1.0f);
            for (size_t i = 0; i < HY_ARRAY_LEN(x); i++) ref[i] = x[i];
            struct backend_rope rp = {.mode = mode ? BACKEND_ROPE_NEOX : BACKEND_ROPE_NORM,
                                      .n_rot = n_rot, .freq_base = 10000.0, .freq_scale = 1.0};
            backend_rope(be, x, n_tok, n_head, hd, pos0, &rp);
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t h = 0; h < n_head; h++)
                    rope_ref(ref + (t * n_head + h) * hd, hd, n_rot, pos0 + t, 1e4, mode);
            double err = 0;
            for (size_t i = 0; i < HY_ARRAY_LEN(x); i++) err = fmax(err, fabs(x[i] - ref[i]));
            if (!CHECK(err < 1e-5))
                fprintf(stderr, "  mode %d n_rot %lld: max error %g\n", mode, (long long)n_rot,
                        err);
        }
    }
    /* the two orderings differ (a NORM/NEOX mix-up must not go unnoticed) */
    float a[16], b[16];
    for (int i = 0; i < 16; i++) a[i] = b[i] = (float)(i + 1);
    struct backend_rope
        norm = {.mode = BACKEND_ROPE_NORM, .n_rot = 16, .freq_base = 1e4, .freq_scale = 1},
        neox = {.mode = BACKEND_ROPE_NEOX, .n_rot = 16, .freq_base = 1e4, .freq_scale = 1};
    backend_rope(be, a, 1, 1, 16, 5, &norm);
    backend_rope(be, b, 1, 1, 16, 5, &neox);
    CHECK(memcmp(a, b, sizeof a) != 0);
    backend_free(be);
}

/* Causal GQA attention reference for token t at position pos over cache rows [0, pos]. */
static void attn_ref(const float *q, const float *kc, const float *vc, int64_t pos, int64_t n_head,
                     int64_t n_kv, int64_t hd, double *out)
{
    double s[64];
    for (int64_t h = 0; h < n_head; h++) {
        int64_t g = h / (n_head / n_kv);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= pos; j++) {
            double d = 0;
            for (int64_t i = 0; i < hd; i++)
                d += (double)q[h * hd + i] * kc[j * n_kv * hd + g * hd + i];
            s[j] = d / sqrt((double)hd);
            mx = fmax(mx, s[j]);
        }
        for (int64_t j = 0; j <= pos; j++) sum += (s[j] = exp(s[j] - mx));
        for (int64_t i = 0; i < hd; i++) {
            double o = 0;
            for (int64_t j = 0; j <= pos; j++) o += s[j] / sum * vc[j * n_kv * hd + g * hd + i];
            out[h * hd + i] = o;
        }
    }
}

static void test_attention(void)
{
    const int64_t n_head = 4, n_kv = 2, hd = 8, n_ctx = 16, n_tok = 10;
    struct rng r;
    rng_init(&r, 13);
    float q[10 * 4 * 8], k[10 * 2 * 8], v[10 * 2 * 8];
    fill_normal(&r, q, HY_ARRAY_LEN(q), 1.0f);
    fill_normal(&r, k, HY_ARRAY_LEN(k), 1.0f);
    fill_normal(&r, v, HY_ARRAY_LEN(v), 1.0f);
    for (int threads = 1; threads <= 3; threads += 2) {
        struct backend *be = make_backend(threads, false);
        float kc1[16 * 16], vc1[16 * 16], kc2[16 * 16], vc2[16 * 16];
        float out_batch[10 * 32], out_step[10 * 32];
        struct backend_attn a = {.k_cache = kc1, .v_cache = vc1, .n_ctx = n_ctx, .n_head = n_head,
                                 .n_head_kv = n_kv, .head_dim = hd, .head_dim_v = hd,
                                 .scale = (float)(1.0 / sqrt((double)hd)), .k_type = HY_TYPE_F32,
                                 .v_type = HY_TYPE_F32};
        /* 3 tokens, then a batch of 7: a prompt split in two steps */
        a.pos0 = 0;
        a.n_tok = 3;
        backend_attention(be, &a, q, k, v, out_batch);
        a.pos0 = 3;
        a.n_tok = 7;
        backend_attention(be, &a, q + 3 * 32, k + 3 * 16, v + 3 * 16, out_batch + 3 * 32);
        /* one token at a time */
        struct backend_attn b = a;
        b.k_cache = kc2;
        b.v_cache = vc2;
        b.n_tok = 1;
        for (int64_t t = 0; t < n_tok; t++) {
            b.pos0 = t;
            backend_attention(be, &b, q + t * 32, k + t * 16, v + t * 16, out_step + t * 32);
        }
        CHECK(memcmp(out_batch, out_step, sizeof out_batch) == 0);
        double err = 0, ref[32];
        for (int64_t t = 0; t < n_tok; t++) {
            attn_ref(q + t * 32, k, v, t, n_head, n_kv, hd, ref);
            for (int i = 0; i < 32; i++) err = fmax(err, fabs(out_batch[t * 32 + i] - ref[i]));
        }
        if (!CHECK(err < 1e-5))
            fprintf(stderr, "  attention max error %g (%d threads)\n", err, threads);
        backend_free(be);
    }
}

/* cpu_backend_matmul_after: the first task runs once, on the calling
 * thread, and the product is backend_matmul's, bit for bit. */
struct first_seen {
    int calls;
    pthread_t thread;
};

static void note_first(void *ctx)
{
    struct first_seen *f = ctx;
    f->calls++;
    f->thread = pthread_self();
}

static void test_matmul_after(void)
{
    /* a tiny product (serial) and pool-sized ones, one token and a batch */
    static const int64_t shapes[][2] = {{5, 7}, {130, 1000}, {512, 256}};
    static const int64_t toks[] = {1, 19};
    struct rng r;
    rng_init(&r, 7);
    for (int nt = 1; nt <= 3; nt += 2) {
        struct backend *be = make_backend(nt, false);
        for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++)
            for (size_t ki = 0; ki < HY_ARRAY_LEN(toks); ki++) {
                const int64_t rows = shapes[si][0], cols = shapes[si][1], n_tok = toks[ki];
                float *src = malloc(sizeof(float) * (size_t)(rows * cols));
                float *ref = malloc(sizeof(float) * (size_t)(rows * cols));
                float *x = malloc(sizeof(float) * (size_t)(n_tok * cols));
                float *y0 = malloc(sizeof(float) * (size_t)(n_tok * rows));
                float *y1 = malloc(sizeof(float) * (size_t)(n_tok * rows));
                fill_normal(&r, src, (size_t)(rows * cols), 1.0f);
                fill_normal(&r, x, (size_t)(n_tok * cols), 1.0f);
                struct backend_weight w;
                void *data = make_weight(HY_TYPE_F16, src, rows, cols, ref, &w);
                backend_matmul(be, &w, x, n_tok, y0);
                for (int64_t i = 0; i < n_tok * rows; i++) y1[i] = NAN;
                struct first_seen f = {0};
                cpu_backend_matmul_after(be, &w, x, n_tok, y1, note_first, &f);
                CHECK_EQ_INT(f.calls, 1);
                CHECK(f.calls == 1 && pthread_equal(f.thread, pthread_self()));
                int bad = 0;
                for (int64_t i = 0; i < n_tok * rows; i++) bad += memcmp(&y0[i], &y1[i], sizeof(float)) != 0;
                if (!CHECK_EQ_INT(bad, 0))
                    fprintf(stderr, "  %d threads, shape [%lld, %lld], %lld tokens\n", nt, (long long)cols,
                            (long long)rows, (long long)n_tok);
                free(data);
                free(src);
                free(ref);
                free(x);
                free(y0);
                free(y1);
            }
        backend_free(be);
    }
}

/* A weight of a block-quantized type: src's rows quantized by the reference. */
static void *make_qweight(uint32_t type, const float *src, int64_t rows, int64_t cols,
                          struct backend_weight *w)
{
    const size_t rb = (size_t)quant_bytes(type, (uint64_t)cols);
    uint8_t *data = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows; i++)
        quant_traits(type)->from_float(src + i * cols, data + (size_t)i * rb, cols);
    *w = (struct backend_weight){data, type, cols, rows, rb, "test", BACKEND_MEM_HOST, 0, false};
    return data;
}

/* A weight of any type: make_qweight's for a block-quantized one, else
 * make_weight's (*ref its exact values). */
static void *make_any_weight(uint32_t type, const float *src, int64_t rows, int64_t cols,
                             float *ref, struct backend_weight *w)
{
    return quant_traits(type)->is_quantized ? make_qweight(type, src, rows, cols, w)
                                            : make_weight(type, src, rows, cols, ref, w);
}

/* *flag once it holds v, or as it is after 10 s. */
static uint32_t flag_wait(uint32_t *flag, uint32_t v)
{
    const int64_t t0 = timing_now_us();
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != v && timing_now_us() - t0 < 10 * 1000 * 1000)
        sched_yield();
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/* cpu_backend_matmul_start against backend_matmul and cpu_backend_swiglu_start
 * against backend_matmul twice and backend_silu_mul, bit for bit, one token:
 * a product of a pool's size and a small one, of F16 and K-quant weights (x
 * converted before the start; gate and up of one type, sharing x's
 * conversion, or of two), the rows handed out in chunks that end short of
 * the last (the backend's chunk count, and pass_chunks' 64 a thread). Where
 * the pool has workers they complete a pass and store the
 * flag without a join (with none nothing runs before it); pass_wait returns
 * with every row; an op after a start joins it first. */
static void test_matmul_start(void)
{
    static const int64_t shapes[][2] = {{1000, 256}, {24, 512}};
    static const uint32_t types[] = {HY_TYPE_F16, HY_TYPE_Q4_K, HY_TYPE_Q6_K};
    struct rng r;
    rng_init(&r, 11);
    for (int run = 0; run < 4; run++) {
        /* 1 and 3 threads; the backend's chunks, then 64 a thread (16 rows
         * each, the last of 1000 rows short) */
        const int nt = run % 2 ? 3 : 1;
        const struct cpu_backend_opts o = {.n_threads = nt, .pass_chunks = run < 2 ? 0 : 64};
        struct backend *be = make_backend_opts(&o);
        for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++)
            for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
                const int64_t rows = shapes[si][0], cols = shapes[si][1];
                /* two weights' values, a reference, x, the product, SwiGLU's
                 * reference, the outputs of a pass (two) */
                float *src = malloc(sizeof(float) * (size_t)(3 * rows * cols + cols + 5 * rows));
                float *src2 = src + rows * cols, *ref = src2 + rows * cols, *x = ref + rows * cols,
                      *y0 = x + cols, *h0 = y0 + rows, *y1 = h0 + rows, *y2 = y1 + rows;
                fill_normal(&r, src, (size_t)(2 * rows * cols), 1.0f);
                fill_normal(&r, x, (size_t)cols, 1.0f);
                const uint32_t t2 = types[(ti + 1) % HY_ARRAY_LEN(types)];
                struct backend_weight w, w2;
                void *data = make_any_weight(types[ti], src, rows, cols, ref, &w);
                void *data2 = make_any_weight(t2, src2, rows, cols, ref, &w2);
                backend_matmul(be, &w, x, 1, y0);
                backend_matmul(be, &w2, x, 1, h0);
                backend_silu_mul(be, h0, y0, rows); /* silu(w2 x) * (w x): w2 the gate below */
                backend_matmul(be, &w, x, 1, y0);
                for (int way = 0; way < 6; way++) {
                    const bool swiglu = way >= 3;
                    for (int64_t i = 0; i < 2 * rows; i++) y1[i] = NAN;
                    uint32_t flag = 3;
                    if (swiglu)
                        cpu_backend_swiglu_start(be, &w2, &w, x, y1, y2, &flag, 4);
                    else
                        cpu_backend_matmul_start(be, &w, x, y1, &flag, 4);
                    if (way % 3 == 0) { /* the workers finish it, then the join */
                        if (nt > 1) {
                            CHECK_EQ_INT((int)flag_wait(&flag, 4), 4);
                        } else {
                            CHECK_EQ_INT((int)flag, 3);
                        }
                        CHECK(cpu_backend_join(be) > 0);
                    } else if (way % 3 == 1) { /* waited for */
                        CHECK(cpu_backend_pass_wait(be) > 0);
                    } else { /* another op first: it joins the pass */
                        float probe[24];
                        struct backend_weight small = w;
                        small.n_rows = 24;
                        backend_matmul(be, &small, x, 1, probe);
                        CHECK(memcmp(probe, y0, sizeof probe) == 0);
                    }
                    CHECK_EQ_INT((int)flag, 4);
                    const float *want = swiglu ? h0 : y0;
                    if (!CHECK_EQ_INT(memcmp(want, y1, sizeof(float) * (size_t)rows) != 0, 0))
                        fprintf(stderr,
                                "  %s_start: types %u %u, %d threads, %d chunks a thread, "
                                "[%lld, %lld], way %d\n",
                                swiglu ? "swiglu" : "matmul", types[ti], t2, nt, o.pass_chunks,
                                (long long)cols, (long long)rows, way % 3);
                }
                free(data);
                free(data2);
                free(src);
            }
        backend_free(be);
    }
}

/* moe_token and cpu_backend_moe_token_start against the op-by-op sequence
 * (gate, up, silu_mul, down, add with the weight, expert after expert),
 * bit for bit; the started pass stores its flag without being joined when
 * the pool has workers, cpu_backend_pass_wait returns with the sum, and an
 * op after it joins it first. The quantized types convert h by groups of
 * rows spread over the pool (Q8_0 and Q8_K blocks): expert widths whose
 * groups end short of a whole group included. A pass whose first experts
 * are halves (all of one, 2 of 3, 1 of 8), of all their rows or of the
 * first rows only (a third; one row): their silu_mul of those rows in h as the
 * op-by-op gate, up and silu_mul give it, their other rows of h untouched,
 * the half flag stored (without a join where the pool has workers), y the
 * others' sum; and halves of all their rows whose down rows [0, r) are the
 * pass's too (half of them and one more; all of them): y with those rows
 * added in expert order. */
static void test_moe_token(void)
{
    enum { EMAX = 256, FMAX = 768, KMAX = 8 };
    static const int ks[] = {1, 3, KMAX};
    static const struct {
        uint32_t type;
        int E, F;
    } cfgs[] = {{HY_TYPE_F16, 96, 200},
                {HY_TYPE_F32, 96, 200},
                {HY_TYPE_Q4_0, 96, 352},
                {HY_TYPE_Q8_0, 64, 224},
                {HY_TYPE_Q4_K, 256, 768},
                {HY_TYPE_Q6_K, 256, 512}};
    struct rng r;
    rng_init(&r, 21);
    float *src = malloc(sizeof(float) * FMAX * EMAX), *ref = malloc(sizeof(float) * FMAX * EMAX);
    float x[EMAX], alpha[KMAX], y0[EMAX], y1[EMAX], y2[EMAX], y3[EMAX], y4[EMAX], o[KMAX * EMAX];
    float y5[EMAX], y6[EMAX], y7[EMAX], y8[EMAX], yi[EMAX];
    float *hw = malloc(sizeof(float) * KMAX * FMAX); /* the halves' silu_mul, op by op */
    float *h = malloc(sizeof(float) * KMAX * FMAX), *h2 = malloc(sizeof(float) * KMAX * FMAX);
    float probe_x[EMAX], probe_y[FMAX], probe_ref[FMAX];
    fill_normal(&r, probe_x, EMAX, 1.0f);
    for (size_t ci = 0; ci < HY_ARRAY_LEN(cfgs); ci++) {
        const int E = cfgs[ci].E, F = cfgs[ci].F;
        const uint32_t type = cfgs[ci].type;
        struct backend_weight w[3 * KMAX];
        void *data[3 * KMAX];
        for (int j = 0; j < 3 * KMAX; j++) {
            const bool down = j % 3 == 2;
            fill_normal(&r, src, (size_t)F * E, 0.1f);
            data[j] = make_any_weight(type, src, down ? E : F, down ? F : E, ref, &w[j]);
        }
        /* the pass's chunks as a product alone cuts them (1 byte at least:
         * many a product, groups of several), and of 64 KiB at least (the
         * default: one a product at these sizes) */
        for (int bc = 0; bc < 8; bc++) {
            const int nt = 1 + bc / 2;
            struct backend *be = make_backend_moe(nt, false, bc % 2 ? 0 : 1);
            for (size_t ki = 0; ki < HY_ARRAY_LEN(ks); ki++) {
                const int k = ks[ki];
                fill_normal(&r, x, E, 1.0f);
                fill_normal(&r, alpha, (size_t)k, 0.5f);
                fill_normal(&r, y0, E, 1.0f);
                memcpy(y1, y0, sizeof y0);
                memcpy(y2, y0, sizeof y0);
                memcpy(y3, y0, sizeof y0);
                memcpy(y4, y0, sizeof y0);
                memcpy(y5, y0, sizeof y0);
                memcpy(yi, y0, sizeof y0);
                for (int j = 0; j < k; j++) {
                    backend_matmul(be, &w[3 * j], x, 1, h);
                    backend_matmul(be, &w[3 * j + 1], x, 1, h2);
                    backend_silu_mul(be, h, h2, F);
                    backend_matmul(be, &w[3 * j + 2], h, 1, o);
                    backend_add(be, y0, o, alpha[j], E);
                }
                be->ops->moe_token(be, x, w, alpha, k, y1, h, h2, o);
                int bad = 0;
                for (int i = 0; i < E; i++) bad += memcmp(&y0[i], &y1[i], sizeof(float)) != 0;
                if (!CHECK_EQ_INT(bad, 0))
                    fprintf(stderr, "  moe_token: type %u, %d threads, k %d\n", type, nt, k);

                /* started: the workers finish it and store the flag on their own */
                uint32_t flag = 7;
                cpu_backend_moe_token_start(be, x, w, alpha, k, y2, h, h2, o, 0, 0, 0, NULL, &flag,
                                            8);
                if (nt > 1) {
                    CHECK_EQ_INT((int)flag_wait(&flag, 8), 8);
                } else {
                    CHECK_EQ_INT((int)flag, 7); /* no worker: nothing runs before the join */
                }
                CHECK(cpu_backend_join(be) > 0);
                CHECK_EQ_INT((int)flag, 8);
                bad = 0;
                for (int i = 0; i < E; i++) bad += memcmp(&y0[i], &y2[i], sizeof(float)) != 0;
                if (!CHECK_EQ_INT(bad, 0))
                    fprintf(stderr, "  moe_token start: type %u, %d threads, k %d\n", type, nt, k);

                /* waited for: the sum complete without the workers' join */
                cpu_backend_moe_token_start(be, x, w, alpha, k, y4, h, h2, o, 0, 0, 0, NULL, NULL,
                                            0);
                CHECK(cpu_backend_pass_wait(be) > 0);
                bad = 0;
                for (int i = 0; i < E; i++) bad += memcmp(&y0[i], &y4[i], sizeof(float)) != 0;
                if (!CHECK_EQ_INT(bad, 0))
                    fprintf(stderr, "  moe_token pass_wait: type %u, %d threads, k %d\n", type, nt,
                            k);

                /* started, then another op without a join: it joins first */
                cpu_backend_moe_token_start(be, x, w, alpha, k, y3, h, h2, o, 0, 0, 0, NULL, NULL,
                                            0);
                backend_matmul(be, &w[0], probe_x, 1, probe_y);
                CHECK(cpu_backend_join(be) > 0);
                backend_matmul(be, &w[0], probe_x, 1, probe_ref);
                CHECK(memcmp(probe_y, probe_ref, sizeof(float) * (size_t)F) == 0);
                bad = 0;
                for (int i = 0; i < E; i++) bad += memcmp(&y0[i], &y3[i], sizeof(float)) != 0;
                if (!CHECK_EQ_INT(bad, 0))
                    fprintf(stderr, "  moe_token start + matmul: type %u, %d threads, k %d\n",
                            type, nt, k);

                /* the first n_half experts as halves, of rows [0, hr); y7
                 * with their down rows [0, E / 2 + 1) too */
                const int n_half = ki == 1 ? 2 : 1;
                const int64_t dr_of[2] = {E / 2 + 1, E};
                memcpy(y7, yi, sizeof yi);
                memcpy(y8, yi, sizeof yi);
                for (int j = 0; j < k; j++) {
                    backend_matmul(be, &w[3 * j], x, 1, h);
                    backend_matmul(be, &w[3 * j + 1], x, 1, h2);
                    backend_silu_mul(be, h, h2, F);
                    backend_matmul(be, &w[3 * j + 2], h, 1, o);
                    if (j < n_half) {
                        memcpy(hw + j * F, h, sizeof(float) * (size_t)F);
                        backend_add(be, y8, o, alpha[j], E);
                        struct backend_weight d = w[3 * j + 2];
                        d.n_rows = dr_of[0];
                        backend_matmul(be, &d, h, 1, o);
                        backend_add(be, y7, o, alpha[j], dr_of[0]);
                        continue;
                    }
                    backend_add(be, y5, o, alpha[j], E);
                    backend_add(be, y7, o, alpha[j], E);
                    backend_add(be, y8, o, alpha[j], E);
                }
                /* halves of rows [0, hr) (all, a third, one), then of all
                 * rows with down rows [0, dr) on the pass too */
                const struct {
                    int64_t hr, dr;
                    const float *want;
                } runs[] = {
                    {F, 0, y5}, {F / 3, 0, y5}, {1, 0, y5}, {F, dr_of[0], y7}, {F, dr_of[1], y8}};
                for (size_t ri = 0; ri < HY_ARRAY_LEN(runs); ri++) {
                    const int64_t hr = runs[ri].hr, dr = runs[ri].dr;
                    memcpy(y6, yi, sizeof yi);
                    for (int64_t i = 0; i < (int64_t)n_half * F; i++) h[i] = -7.25f;
                    uint32_t half = 5;
                    flag = 5;
                    cpu_backend_moe_token_start(be, x, w, alpha, k, y6, h, h2, o, n_half, hr, dr,
                                                &half, &flag, 6);
                    if (nt > 1) CHECK_EQ_INT((int)flag_wait(&half, 6), 6);
                    CHECK(cpu_backend_join(be) > 0);
                    CHECK_EQ_INT((int)half, 6);
                    CHECK_EQ_INT((int)flag, 6);
                    bad = 0;
                    for (int i = 0; i < E; i++)
                        bad += memcmp(&runs[ri].want[i], &y6[i], sizeof(float)) != 0;
                    for (int64_t i = 0; i < (int64_t)n_half * F; i++)
                        bad +=
                            i % F < hr ? memcmp(&hw[i], &h[i], sizeof(float)) != 0 : h[i] != -7.25f;
                    if (!CHECK_EQ_INT(bad, 0))
                        fprintf(stderr,
                                "  moe_token halves: type %u, %d threads, k %d, %d halves of "
                                "%" PRId64 " rows, down rows %" PRId64 "\n",
                                type, nt, k, n_half, hr, dr);
                }
            }
            backend_free(be);
        }
        for (int j = 0; j < 3 * KMAX; j++) free(data[j]);
    }
    free(src);
    free(ref);
    free(h);
    free(h2);
    free(hw);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_matmul();
    test_matmul_one_token_ways();
    test_matmul_after();
    test_get_rows();
    test_elementwise();
    test_rope();
    test_attention();
    test_moe_token();
    test_matmul_start();
    return check_report(argv[0]);
}
