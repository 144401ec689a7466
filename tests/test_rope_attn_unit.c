/*
 * Unit tests of the CPU backend's RoPE and attention ops beyond the basics of
 * test_backend_cpu.c:
 *
 *  - RoPE scaling: a linear factor of 2 at position 2p rotates exactly (bit
 *    for bit) as no scaling at position p; frequency factors of 2 equal a
 *    linear factor of 2; arbitrary frequency factors against a reference in
 *    double; partial rotary dims (n_rot < head_dim) leave the other dims
 *    untouched and rotate the first n_rot as a head of n_rot would be;
 *  - attention over an F32, F16 and Q8_0 KV cache against references that
 *    follow llama.cpp's CPU arithmetic for each type (q converted to the K
 *    type's vec_dot_type; for F16 the softmax weights rounded to F16 before
 *    they meet V), and a prompt split into batches equal to token-by-token
 *    evaluation bit for bit, with 1 and 3 threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "core/rng.h"
#include "quant/quant.h"

static struct backend *make_backend(int n_threads, int64_t max_ctx, int64_t max_hd)
{
    struct backend *be = NULL;
    struct cpu_backend_opts o = {.n_threads = n_threads};
    if (!CHECK_OK(cpu_backend_init(&o, &be))) abort();
    struct backend_limits lim = {
        .max_batch = 32, .max_ctx = max_ctx, .max_head_dim = max_hd, .max_cols = 256};
    if (!CHECK_OK(backend_reserve(be, &lim))) abort();
    return be;
}

static void fill_normal(struct rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(r);
}

/* RoPE reference in double with scaling and factors (backend.h's formula). */
static void rope_ref(double *v, int64_t n_rot, int64_t pos, double base, double scale,
                     const float *ff, bool neox)
{
    for (int64_t i = 0; i < n_rot / 2; i++) {
        double th = (double)pos * scale * pow(base, -2.0 * (double)i / (double)n_rot);
        if (ff) th /= ff[i];
        int64_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

static void test_rope_scaling(void)
{
    struct backend *be = make_backend(1, 16, 64);
    struct rng r;
    rng_init(&r, 21);
    enum { N_TOK = 5, N_HEAD = 3, HD = 64 };
    float x[N_TOK * N_HEAD * HD];
    for (int mode = 0; mode < 2; mode++) {
        const enum backend_rope_mode m = mode ? BACKEND_ROPE_NEOX : BACKEND_ROPE_NORM;
        for (int64_t n_rot = 32; n_rot <= HD; n_rot += 32) {
            struct backend_rope plain = {
                .mode = m, .n_rot = n_rot, .freq_base = 10000.0, .freq_scale = 1.0};
            struct backend_rope lin2 = plain;
            lin2.freq_scale = 0.5;
            fill_normal(&r, x, HY_ARRAY_LEN(x));
            /* position 2p with factor 2 against position p: one token at a time */
            for (int64_t p = 0; p < 40; p += 7) {
                float a[HD], b[HD];
                memcpy(a, x, sizeof a);
                memcpy(b, x, sizeof b);
                backend_rope(be, a, 1, 1, HD, 2 * p, &lin2);
                backend_rope(be, b, 1, 1, HD, p, &plain);
                if (!CHECK(memcmp(a, b, sizeof a) == 0))
                    fprintf(stderr, "  mode %d n_rot %d: linear 2 at %d != none at %d\n", mode,
                            (int)n_rot, (int)(2 * p), (int)p);
            }
            /* frequency factors of 2 everywhere are a linear factor of 2 */
            float twos[HD / 2];
            for (int i = 0; i < HD / 2; i++) twos[i] = 2.0f;
            struct backend_rope ff2 = plain;
            ff2.freq_factors = twos;
            float a[N_TOK * N_HEAD * HD], b[N_TOK * N_HEAD * HD];
            memcpy(a, x, sizeof a);
            memcpy(b, x, sizeof b);
            backend_rope(be, a, N_TOK, N_HEAD, HD, 100, &ff2);
            backend_rope(be, b, N_TOK, N_HEAD, HD, 100, &lin2);
            CHECK(memcmp(a, b, sizeof a) == 0);
            /* Llama-3-like factors (1 for high frequencies, up to 8 for low ones) and
             * linear scaling together, against the reference */
            float ff[HD / 2];
            for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + 7.0f * (float)i / (float)(HD / 2);
            struct backend_rope both = plain;
            both.freq_factors = ff;
            both.freq_scale = 0.25;
            double ref[N_TOK * N_HEAD * HD];
            for (size_t i = 0; i < HY_ARRAY_LEN(x); i++) ref[i] = x[i];
            memcpy(a, x, sizeof a);
            backend_rope(be, a, N_TOK, N_HEAD, HD, 3000, &both);
            double err = 0;
            for (int64_t t = 0; t < N_TOK; t++)
                for (int64_t h = 0; h < N_HEAD; h++) {
                    rope_ref(ref + (t * N_HEAD + h) * HD, n_rot, 3000 + t, 1e4, 0.25, ff, mode);
                }
            for (size_t i = 0; i < HY_ARRAY_LEN(x); i++) err = fmax(err, fabs(a[i] - ref[i]));
            if (!CHECK(err < 2e-5))
                fprintf(stderr, "  mode %d n_rot %d: factors + scale, max error %g\n", mode,
                        (int)n_rot, err);
        }
    }
    backend_free(be);
}

/* n_rot < head_dim: dims past n_rot pass through; the first n_rot rotate as a head of n_rot. */
static void test_rope_partial(void)
{
    struct backend *be = make_backend(1, 16, 64);
    struct rng r;
    rng_init(&r, 22);
    for (int mode = 0; mode < 2; mode++) {
        const enum backend_rope_mode m = mode ? BACKEND_ROPE_NEOX : BACKEND_ROPE_NORM;
        float full[2 * 64], part[2 * 32];
        fill_normal(&r, full, HY_ARRAY_LEN(full));
        for (int h = 0; h < 2; h++) memcpy(part + h * 32, full + h * 64, 32 * sizeof(float));
        float orig[2 * 64];
        memcpy(orig, full, sizeof orig);
        struct backend_rope rp = {.mode = m, .n_rot = 32, .freq_base = 500000.0, .freq_scale = 1};
        backend_rope(be, full, 1, 2, 64, 77, &rp);
        backend_rope(be, part, 1, 2, 32, 77, &rp);
        for (int h = 0; h < 2; h++) {
            CHECK(memcmp(full + h * 64, part + h * 32, 32 * sizeof(float)) == 0);
            CHECK(memcmp(full + h * 64 + 32, orig + h * 64 + 32, 32 * sizeof(float)) == 0);
        }
    }
    backend_free(be);
}

/* ---- attention per KV type ------------------------------------------------- */

enum { NH = 4, NKV = 2, HD = 32, NCTX = 24, NTOK = 19 };

/* x after a round trip through type (what the cache or a conversion keeps). */
static void round_trip(uint32_t type, const float *x, float *y, int64_t n)
{
    const struct quant_traits *tr = quant_traits(type);
    uint8_t buf[4 * 64];
    HY_ASSERT((size_t)quant_bytes(type, (uint64_t)n) <= sizeof buf);
    tr->from_float(x, buf, n);
    tr->to_float(buf, y, n);
}

/* llama.cpp's arithmetic for a cache of type kv, in double: keys and values
 * as stored, q as converted for the K dot product, and for an F16 cache the
 * softmax weights rounded to F16 (its kq . V^T matmul converts them). */
static void attn_ref(uint32_t kv, const float *q, const float *k, const float *v, int64_t t,
                     double *out)
{
    const uint32_t qt = quant_traits(kv)->vec_dot_type;
    double s[NCTX];
    for (int64_t h = 0; h < NH; h++) {
        const int64_t g = h / (NH / NKV);
        float qh[HD];
        round_trip(qt, q + (t * NH + h) * HD, qh, HD);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= t; j++) {
            float kj[HD];
            round_trip(kv, k + (j * NKV + g) * HD, kj, HD);
            double d = 0;
            for (int i = 0; i < HD; i++) d += (double)qh[i] * kj[i];
            s[j] = (double)(float)(d * (1.0 / sqrt((double)HD)));
            mx = fmax(mx, s[j]);
        }
        for (int64_t j = 0; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
        for (int64_t j = 0; j <= t; j++) {
            s[j] /= sum;
            if (kv == HY_TYPE_F16) s[j] = quant_f16_to_f32(quant_f32_to_f16((float)s[j]));
        }
        for (int i = 0; i < HD; i++) out[h * HD + i] = 0;
        for (int64_t j = 0; j <= t; j++) {
            float vj[HD];
            round_trip(kv, v + (j * NKV + g) * HD, vj, HD);
            for (int i = 0; i < HD; i++) out[h * HD + i] += s[j] * vj[i];
        }
    }
}

static void test_attention_types(void)
{
    struct rng r;
    rng_init(&r, 23);
    static float q[NTOK * NH * HD], k[NTOK * NKV * HD], v[NTOK * NKV * HD];
    fill_normal(&r, q, HY_ARRAY_LEN(q));
    fill_normal(&r, k, HY_ARRAY_LEN(k));
    fill_normal(&r, v, HY_ARRAY_LEN(v));
    const uint32_t types[] = {HY_TYPE_F32, HY_TYPE_F16, HY_TYPE_Q8_0};
    for (size_t ti = 0; ti < HY_ARRAY_LEN(types); ti++) {
        const uint32_t kv = types[ti];
        const size_t k_bytes = NCTX * (size_t)quant_bytes(kv, NKV * HD);
        for (int threads = 1; threads <= 3; threads += 2) {
            struct backend *be = make_backend(threads, NCTX, HD);
            void *kc1 = calloc(1, k_bytes), *vc1 = calloc(1, k_bytes);
            void *kc2 = calloc(1, k_bytes), *vc2 = calloc(1, k_bytes);
            static float out_batch[NTOK * NH * HD], out_step[NTOK * NH * HD];
            struct backend_attn a = {.k_cache = kc1,
                                     .v_cache = vc1,
                                     .n_ctx = NCTX,
                                     .n_head = NH,
                                     .n_head_kv = NKV,
                                     .head_dim = HD,
                                     .head_dim_v = HD,
                                     .scale = (float)(1.0 / sqrt((double)HD)),
                                     .k_type = kv,
                                     .v_type = kv};
            /* 5 tokens, then a batch of 14 */
            a.pos0 = 0;
            a.n_tok = 5;
            backend_attention(be, &a, q, k, v, out_batch);
            a.pos0 = 5;
            a.n_tok = NTOK - 5;
            backend_attention(be, &a, q + 5 * NH * HD, k + 5 * NKV * HD, v + 5 * NKV * HD,
                              out_batch + 5 * NH * HD);
            struct backend_attn b = a;
            b.k_cache = kc2;
            b.v_cache = vc2;
            b.n_tok = 1;
            for (int64_t t = 0; t < NTOK; t++) {
                b.pos0 = t;
                backend_attention(be, &b, q + t * NH * HD, k + t * NKV * HD, v + t * NKV * HD,
                                  out_step + t * NH * HD);
            }
            if (!CHECK(memcmp(out_batch, out_step, sizeof out_batch) == 0))
                fprintf(stderr, "  %s cache, %d threads: batch != token by token\n",
                        quant_type_name(kv), threads);
            double err = 0, ref[NH * HD];
            for (int64_t t = 0; t < NTOK; t++) {
                attn_ref(kv, q, k, v, t, ref);
                for (int i = 0; i < NH * HD; i++)
                    err = fmax(err, fabs(out_batch[t * NH * HD + i] - ref[i]));
            }
            if (!CHECK(err < 2e-4))
                fprintf(stderr, "  %s cache, %d threads: max error %g against the reference\n",
                        quant_type_name(kv), threads, err);
            free(kc1);
            free(vc1);
            free(kc2);
            free(vc2);
            backend_free(be);
        }
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    test_rope_scaling();
    test_rope_partial();
    test_attention_types();
    return check_report(argv[0]);
}
