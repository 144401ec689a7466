/*
 * cuda_attention_bench: the CUDA backend's one-token decode attention
 * (cuk_attention with n_tok 1: the split kernel and its combine) at several
 * lengths of context, next to a plain streaming read of the bytes of K and V
 * it reads (cuk_read) in the same run: what attention costs above moving the
 * cache.
 *
 *   cuda_attention_bench [--heads 32] [--kv-heads 8] [--head-dim 128]
 *                        [--keys 72,1100,3000] [--reps 60]
 *
 * The caches are F16 (hypura's default), V transposed, n_ctx the most keys
 * rounded up to 256; as many copies of them (the layers of a model) as take
 * the reads past four times the L2 cache, each launch on the next copy, so
 * that every launch reads its keys from device memory as decode does. Each
 * length of context is timed for each way the kernel may take a KV group's
 * query heads (cuk_attention_gqa: one head a block, the default rule, the
 * group's heads a block at every length), with programmatic dependent launch
 * (early, as decode launches it) and without; the read without. q, the new
 * key and value are random; no RoPE (q and k arrive rotated). Times are the
 * mean per launch of reps launches between two events. Prints a markdown
 * table. Exits 0 without a CUDA device (nothing measured).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_BENCH_NAME "cuda_attention_bench"
#include "cuda_bench.h"

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_probe.h"
#include "core/rng.h"
#include "quant/quant.h"

#define MAX_KEYS   16
#define MAX_COPIES 256

struct run {
    struct cuk_attn a;
    void *copy[MAX_COPIES]; /* each: K rows [n_ctx][kv dims], then V [kv dims][n_ctx] */
    int n_copies;
    size_t k_bytes, read_bytes;
    float *q, *k, *v, *out, *part;
    uint32_t *sink;
    cudaStream_t s;
    bool early;
};

static void launch_attention(void *ctx, int i)
{
    struct run *r = ctx;
    uint8_t *c = r->copy[i % r->n_copies];
    r->a.k_cache = c;
    r->a.v_cache = c + r->k_bytes;
    CK(cuk_attention(&r->a, r->q, r->k, r->v, r->out, r->part, r->s, r->early));
}

static void launch_read(void *ctx, int i)
{
    const struct run *r = ctx;
    CK(cuk_read(r->copy[i % r->n_copies], r->read_bytes, r->sink, r->s));
}

static void usage(void)
{
    fprintf(stderr, "usage: cuda_attention_bench [--heads N (32)] [--kv-heads N (8)] "
                    "[--head-dim N (128)] [--keys N,N,... (72,1100,3000)] [--reps N (60)]\n");
    exit(2);
}

/* n random values of a normal distribution, as floats in device memory. */
static float *dev_random(struct rng *r, int64_t n)
{
    float *h = malloc(sizeof(float) * (size_t)n), *d;
    if (!h) {
        fprintf(stderr, "cuda_attention_bench: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) h[i] = (float)rng_normal(r);
    CK(cudaMalloc((void **)&d, sizeof(float) * (size_t)n));
    CK(cudaMemcpy(d, h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

int main(int argc, char **argv)
{
    int64_t n_head = 32, n_head_kv = 8, head_dim = 128;
    int64_t keys[MAX_KEYS] = {72, 1100, 3000};
    int n_keys = 3, reps = 60;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *f = argv[i], *v = argv[++i];
        if (!strcmp(f, "--heads")) {
            n_head = arg_int(f, v, 1, 1024);
        } else if (!strcmp(f, "--kv-heads")) {
            n_head_kv = arg_int(f, v, 1, 1024);
        } else if (!strcmp(f, "--head-dim")) {
            head_dim = arg_int(f, v, 1, CUK_ATT_MAX_DIM);
        } else if (!strcmp(f, "--reps")) {
            reps = (int)arg_int(f, v, 1, 1 << 20);
        } else if (!strcmp(f, "--keys")) {
            n_keys = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                if (n_keys == MAX_KEYS) usage();
                keys[n_keys++] = arg_int(f, t, 1, 1 << 20);
            }
            if (n_keys == 0) usage();
        } else {
            usage();
        }
    }
    if (n_head % n_head_kv) {
        fprintf(stderr,
                "cuda_attention_bench: %lld heads over %lld KV heads: the heads must be a "
                "multiple of the KV heads\n",
                (long long)n_head, (long long)n_head_kv);
        return 2;
    }

    struct cuda_probe_device dev;
    if (cuda_probe_devices(&dev, 1) < 1 || !cuda_device_open(0)) {
        printf("cuda_attention_bench: no CUDA device: nothing measured\n");
        return 0;
    }
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    int64_t n_ctx = 0;
    for (int i = 0; i < n_keys; i++)
        if (keys[i] > n_ctx) n_ctx = keys[i];
    n_ctx = (n_ctx + 255) / 256 * 256;
    const int64_t kv_dim = n_head_kv * head_dim;

    struct run r = {.a = {.n_ctx = n_ctx,
                          .n_head = n_head,
                          .n_head_kv = n_head_kv,
                          .head_dim = head_dim,
                          .head_dim_v = head_dim,
                          .n_tok = 1,
                          .scale = 1.0f / sqrtf((float)head_dim),
                          .k_type = HY_TYPE_F16,
                          .v_type = HY_TYPE_F16}};
    r.k_bytes = (size_t)quant_bytes(HY_TYPE_F16, (uint64_t)(n_ctx * kv_dim));
    const size_t copy_bytes = 2 * r.k_bytes;
    r.n_copies = (int)((4 * (size_t)l2 + copy_bytes - 1) / copy_bytes) + 1;
    if (r.n_copies > MAX_COPIES) r.n_copies = MAX_COPIES;
    {
        /* the caches' values: random binary16 (one copy's, uploaded to all) */
        struct rng g;
        rng_init(&g, 11);
        const int64_t n = (int64_t)(copy_bytes / 2);
        uint8_t *h = malloc(copy_bytes);
        float *f = malloc(sizeof(float) * (size_t)n);
        if (!h || !f) {
            fprintf(stderr, "cuda_attention_bench: out of memory for %zu bytes\n", copy_bytes);
            return 1;
        }
        for (int64_t i = 0; i < n; i++) f[i] = (float)rng_normal(&g);
        quant_traits(HY_TYPE_F16)->from_float(f, h, n);
        free(f);
        for (int c = 0; c < r.n_copies; c++) {
            CK(cudaMalloc(&r.copy[c], copy_bytes));
            CK(cudaMemcpy(r.copy[c], h, copy_bytes, cudaMemcpyHostToDevice));
        }
        free(h);
        struct rng x;
        rng_init(&x, 7);
        r.q = dev_random(&x, n_head * head_dim);
        r.k = dev_random(&x, kv_dim);
        r.v = dev_random(&x, kv_dim);
    }
    CK(cudaMalloc((void **)&r.out, sizeof(float) * (size_t)(n_head * head_dim)));
    CK(cudaMalloc((void **)&r.part, sizeof(float) * cuk_attention_scratch(n_head, head_dim)));
    CK(cudaMalloc((void **)&r.sink, sizeof(uint32_t)));
    CK(cudaStreamCreateWithFlags(&r.s, cudaStreamNonBlocking));

    static const struct {
        const char *name;
        int64_t min_keys; /* cuk_attention_gqa's */
    } modes[] = {{"one head a block", 0}, {"the rule", CUK_ATT_GQA_FILL}, {"group a block", 1}};
    printf("cuda_attention_bench: %s (compute capability %d.%d, L2 %d MiB), %lld heads, %lld KV "
           "heads of %lld dims, F16 caches of %lld keys (%d copies), %d launches each, us per "
           "launch\n\n",
           dev.name, dev.cc_major, dev.cc_minor, l2 >> 20, (long long)n_head, (long long)n_head_kv,
           (long long)head_dim, (long long)n_ctx, r.n_copies, reps);
    printf("| keys | K and V MB | read us | heads a block | attention us (early) | attention us "
           "(plain) | GB/s (early) | attention / read |\n");
    printf("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_keys; i++) {
        r.a.pos0 = keys[i] - 1;
        r.read_bytes = 2 * (size_t)quant_bytes(HY_TYPE_F16, (uint64_t)(keys[i] * kv_dim));
        const double rd = time_launches(launch_read, &r, reps, r.s);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            cuk_attention_gqa(modes[m].min_keys);
            r.early = true;
            const double ae = time_launches(launch_attention, &r, reps, r.s);
            r.early = false;
            const double ap = time_launches(launch_attention, &r, reps, r.s);
            printf("| %lld | %.1f | %.2f | %s | %.2f | %.2f | %.0f | %.2f |\n", (long long)keys[i],
                   r.read_bytes / 1e6, rd, modes[m].name, ae, ap, r.read_bytes / 1e3 / ae, ae / rd);
            fflush(stdout);
        }
        cuk_attention_gqa(CUK_ATT_GQA_FILL);
    }
    for (int c = 0; c < r.n_copies; c++) CK(cudaFree(r.copy[c]));
    CK(cudaFree(r.q));
    CK(cudaFree(r.k));
    CK(cudaFree(r.v));
    CK(cudaFree(r.out));
    CK(cudaFree(r.part));
    CK(cudaFree(r.sink));
    CK(cudaStreamDestroy(r.s));
    return 0;
}
