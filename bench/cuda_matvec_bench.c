/*
 * cuda_matvec_bench: the CUDA backend's one-token matrix-vector products
 * (cuq_matvec, the decode path) on the product shapes of a decoder layer,
 * each next to a plain streaming read of the same bytes (cuk_read) in the
 * same run: what a product costs above moving its weights.
 *
 *   cuda_matvec_bench [--types q4_k,q6_k,...] [--embd 4096] [--ff 14336]
 *                     [--kv 1024] [--reps 60]
 *
 * Shapes (rows x columns): q/k/v (embd + 2 kv) x embd, o embd x embd,
 * gate/up (2 ff) x embd, down embd x ff: Llama-3-8B's by default. Each
 * product is launched reps times back to back on one stream, each launch on
 * the next of enough copies of the weights that together they are past four
 * times the L2 cache (every launch reads its weights from device memory, as
 * decode does), once with programmatic dependent launch (early: a product
 * starts while the one before it finishes, as in decode) and once without.
 * The read is timed the same way, without programmatic launch. Times are
 * the mean per launch of the reps launches between two events. Prints a
 * markdown table. Exits 0 without a CUDA device (nothing measured).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_BENCH_NAME "cuda_matvec_bench"
#include "cuda_bench.h"

#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_probe.h"
#include "core/rng.h"
#include "quant/quant.h"

#define MAX_TYPES  16
#define MAX_COPIES 64

struct shape {
    const char *name;
    int64_t rows, cols;
};

/* Distinct quantized rows a matrix holds; the rest repeat them. A product's
 * time does not depend on its values (every byte is read, the arithmetic has
 * no data-dependent branch) and each copy lies at its own addresses, so the
 * repeats change nothing measured. Quantizing every row (about 68 ns a value
 * for Q4_K on one core of the development machine) took about a minute a
 * type at Llama-3-70B's shapes. */
#define DISTINCT_ROWS 512

/* One matrix of type with rows x cols of normal random values, quantized by
 * the reference quantizer, in host memory (row_bytes set): its first
 * DISTINCT_ROWS rows, repeated. */
static void *make_matrix(uint32_t type, int64_t rows, int64_t cols, size_t *row_bytes)
{
    const struct quant_traits *qt = quant_traits(type);
    if (cols % qt->block_size != 0) {
        fprintf(stderr, "cuda_matvec_bench: %s rows of %lld columns: not whole blocks of %u\n",
                qt->name, (long long)cols, qt->block_size);
        exit(2);
    }
    *row_bytes = (size_t)quant_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(*row_bytes * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (!w || !row) {
        fprintf(stderr, "cuda_matvec_bench: out of memory for a %lld x %lld matrix\n",
                (long long)rows, (long long)cols);
        exit(1);
    }
    struct rng r;
    rng_init(&r, 0x5eed + (uint64_t)type);
    const int64_t distinct = rows < DISTINCT_ROWS ? rows : DISTINCT_ROWS;
    for (int64_t i = 0; i < distinct; i++) {
        for (int64_t c = 0; c < cols; c++) row[c] = (float)(0.02 * rng_normal(&r));
        qt->from_float(row, w + (size_t)i * *row_bytes, cols);
    }
    for (int64_t i = distinct; i < rows; i += distinct) {
        const int64_t n = rows - i < distinct ? rows - i : distinct;
        memcpy(w + (size_t)i * *row_bytes, w, (size_t)n * *row_bytes);
    }
    free(row);
    return w;
}

struct run {
    uint32_t type;
    void *copy[MAX_COPIES];
    int n_copies;
    size_t row_bytes;
    int64_t rows, cols;
    const float *x;
    float *y;
    uint32_t *sink;
    cudaStream_t s;
    bool early;
};

static void launch_matvec(void *ctx, int i)
{
    struct run *r = ctx;
    CK(cuq_matvec(r->type, r->copy[i % r->n_copies], r->row_bytes, r->rows, r->cols, r->x, 1, r->y,
                  r->rows, r->s, r->early));
}

static void launch_read(void *ctx, int i)
{
    struct run *r = ctx;
    CK(cuk_read(r->copy[i % r->n_copies], r->row_bytes * (size_t)r->rows, r->sink, r->s));
}

static void usage(void)
{
    fprintf(stderr, "usage: cuda_matvec_bench [--types T,T,... (q4_k,q6_k)] [--embd N (4096)] "
                    "[--ff N (14336)] [--kv N (1024)] [--reps N (60)]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint32_t types[MAX_TYPES] = {HY_TYPE_Q4_K, HY_TYPE_Q6_K};
    int n_types = 2;
    int64_t embd = 4096, ff = 14336, kv = 1024;
    int reps = 60;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *f = argv[i], *v = argv[++i];
        if (!strcmp(f, "--embd")) {
            embd = arg_int(f, v, 256, 1 << 20);
        } else if (!strcmp(f, "--ff")) {
            ff = arg_int(f, v, 256, 1 << 20);
        } else if (!strcmp(f, "--kv")) {
            kv = arg_int(f, v, 0, 1 << 20);
        } else if (!strcmp(f, "--reps")) {
            reps = (int)arg_int(f, v, 1, 1 << 20);
        } else if (!strcmp(f, "--types")) {
            n_types = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                const int ty = quant_type_from_name(t);
                if (ty < 0 || !cuq_supports((uint32_t)ty) ||
                    !quant_traits((uint32_t)ty)->from_float) {
                    fprintf(stderr,
                            "cuda_matvec_bench: --types: '%s' is not a type the CUDA "
                            "products take\n",
                            t);
                    return 2;
                }
                if (n_types == MAX_TYPES) usage();
                types[n_types++] = (uint32_t)ty;
            }
            if (n_types == 0) usage();
        } else {
            usage();
        }
    }

    struct cuda_probe_device dev;
    if (cuda_probe_devices(&dev, 1) < 1 || !cuda_device_open(0)) {
        printf("cuda_matvec_bench: no CUDA device: nothing measured\n");
        return 0;
    }
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    const struct shape shapes[] = {{"q/k/v", embd + 2 * kv, embd},
                                   {"o", embd, embd},
                                   {"gate/up", 2 * ff, embd},
                                   {"down", embd, ff}};
    const int64_t max_cols = ff > embd ? ff : embd;

    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float *x, *y;
    uint32_t *sink;
    CK(cudaMalloc((void **)&x, sizeof(float) * (size_t)max_cols));
    CK(cudaMalloc((void **)&y, sizeof(float) * (size_t)(2 * ff + embd + 2 * kv)));
    CK(cudaMalloc((void **)&sink, sizeof(uint32_t)));
    {
        float *hx = malloc(sizeof(float) * (size_t)max_cols);
        struct rng r;
        rng_init(&r, 7);
        for (int64_t c = 0; c < max_cols; c++) hx[c] = (float)rng_normal(&r);
        CK(cudaMemcpy(x, hx, sizeof(float) * (size_t)max_cols, cudaMemcpyHostToDevice));
        free(hx);
    }

    printf("cuda_matvec_bench: %s (compute capability %d.%d, L2 %d MiB), %d launches each, "
           "us per launch\n\n",
           dev.name, dev.cc_major, dev.cc_minor, l2 >> 20, reps);
    printf("| type | product | rows x cols | MB | read us | product us (early) | product us "
           "(plain) | GB/s (early) | product / read |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int t = 0; t < n_types; t++) {
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const struct shape *sh = &shapes[k];
            struct run r = {.type = types[t],
                            .rows = sh->rows,
                            .cols = sh->cols,
                            .x = x,
                            .y = y,
                            .sink = sink,
                            .s = s};
            void *hw = make_matrix(types[t], sh->rows, sh->cols, &r.row_bytes);
            const size_t bytes = r.row_bytes * (size_t)sh->rows;
            r.n_copies = (int)((4 * (size_t)l2 + bytes - 1) / bytes) + 1;
            if (r.n_copies > MAX_COPIES) r.n_copies = MAX_COPIES;
            for (int c = 0; c < r.n_copies; c++) {
                CK(cudaMalloc(&r.copy[c], bytes));
                CK(cudaMemcpy(r.copy[c], hw, bytes, cudaMemcpyHostToDevice));
            }
            free(hw);
            const double rd = time_launches(launch_read, &r, reps, s);
            r.early = true;
            const double pe = time_launches(launch_matvec, &r, reps, s);
            r.early = false;
            const double pp = time_launches(launch_matvec, &r, reps, s);
            printf("| %s | %s | %lld x %lld | %.1f | %.2f | %.2f | %.2f | %.0f | %.2f |\n",
                   quant_type_name(types[t]), sh->name, (long long)sh->rows, (long long)sh->cols,
                   bytes / 1e6, rd, pe, pp, bytes / 1e3 / pe, pe / rd);
            fflush(stdout);
            for (int c = 0; c < r.n_copies; c++) CK(cudaFree(r.copy[c]));
        }
    }
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(sink));
    CK(cudaStreamDestroy(s));
    return 0;
}
