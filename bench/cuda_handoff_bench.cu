/*
 * cuda_handoff_bench: the round trip of one token's handoffs between the
 * CPU and the GPU in partial decode, by way of doing them. The host stores a
 * flag into pinned memory (the CPU's rows are done); the GPU, waiting at it
 * already, takes the rows up (n floats read across PCIe) and sends n floats
 * back down (the activations the CPU needs next); the host spins until they
 * have arrived. The time from the store to the arrival, median and 90th
 * percentile of --reps trips, for each way of doing both halves:
 *
 *   stream:  cuk_wait_copy on the compute stream, then the host waits for
 *            that stream (no way down: the floor of a wait and a sync);
 *   main:    cuk_wait_copy, then as the backend sends activations down: an
 *            event, a second stream waiting for it, cuk_copy_rows into
 *            pinned memory on that stream, the host waiting for that stream;
 *   put:     cuk_wait_copy, then a kernel on the same stream writing the n
 *            floats into pinned memory and then a flag the host polls;
 *   fused:   one kernel: one thread polls the host's flag, the block reads
 *            the rows, writes them down and stores the host's flag;
 *   ce:      the host has a copy engine take the rows and then a flag up
 *            into device memory (two cudaMemcpyAsync on a stream of their
 *            own) instead of storing the flag; one kernel polls that device
 *            word, writes the rows down and stores the host's flag.
 *
 * Each once with PCIe idle and once beside each kind of host-to-device
 * copies named by --beside (as partial decode copies weights while the CPU
 * computes its rows), kept queued on a third stream, pieces of 8 MiB:
 *
 *   ce:        by the copy engines (cudaMemcpyAsync), three pieces queued;
 *   k:C:T:U:   by a kernel of C CTAs of T threads, each thread with U
 *              16-byte loads of pinned memory in flight before it stores
 *              them (C x T x U x 16 bytes in all; the copy engines keep
 *              their own number in flight).
 *
 * Beside each, the copies' own rate over the trips. Prints a Markdown
 * table. Exits 0 without a CUDA device (nothing measured).
 *
 *   cuda_handoff_bench [--n 4096] [--reps 2000] [--ways stream,main,put,fused,ce]
 *                      [--beside ce,k:8:256:4]
 */
#include <algorithm>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <vector>

#define CUDA_BENCH_NAME "cuda_handoff_bench"
#include "cuda_bench.h"

#include "backend/cuda/cuda_kernels.h"

#define BULK_PIECE (8u << 20)
#define BULK_DEPTH 3
#define MAX_BESIDE 9

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Until *flag reaches value: thread 0 polls it (an acquire at system scope
 * for host memory, at device scope for device memory), sleeping sleep_ns
 * between looks; the block waits for it. */
__device__ static void block_wait_word(const uint32_t *flag, uint32_t value, bool sys,
                                       unsigned sleep_ns)
{
    if (threadIdx.x == 0)
        for (;;) {
            uint32_t v;
            if (sys)
                asm volatile("ld.acquire.sys.u32 %0, [%1];" : "=r"(v) : "l"(flag) : "memory");
            else
                asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(flag) : "memory");
            if ((int32_t)(v - value) >= 0) break;
            __nanosleep(sleep_ns);
        }
    __syncthreads();
}

/* value into *flag (pinned host memory) once the block's stores before it
 * are visible to the host. */
__device__ static void block_store_flag(uint32_t *flag, uint32_t value)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence_system();
        asm volatile("st.release.sys.u32 [%0], %1;" ::"l"(flag), "r"(value) : "memory");
    }
}

/* n floats of x into host memory h, then value into *flag once they are
 * visible to the host. */
__global__ static void k_put(const float *x, int64_t n, float *h, uint32_t *flag, uint32_t value)
{
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) h[i] = x[i];
    block_store_flag(flag, value);
}

/* Until *flag reaches value (thread 0 polls), then n floats of rows (host
 * memory) into y and down into h, then value into *done. One block. */
__global__ static void k_fused(const float *rows, int64_t n, float *y, float *h,
                               const uint32_t *flag, uint32_t *done, uint32_t value)
{
    block_wait_word(flag, value, true, 128);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = rows[i];
        y[i] = v;
        h[i] = v;
    }
    block_store_flag(done, value);
}

/* Until *dflag (device memory, written by a copy) reaches value (thread 0
 * polls), then n floats of drows (device memory) down into h, then value
 * into *done. One block. */
__global__ static void k_dev_put(const float *drows, int64_t n, float *h, const uint32_t *dflag,
                                 uint32_t *done, uint32_t value)
{
    block_wait_word(dflag, value, false, 64);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) h[i] = drows[i];
    block_store_flag(done, value);
}

/* n16 16-byte words of pinned host memory h into d: each thread loads U
 * of them (all in flight) and then stores them, CTA by CTA over the range. */
template <int U>
__global__ static void k_h2d(const int4 *__restrict__ h, int4 *__restrict__ d, int64_t n16)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x * U;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x * U + threadIdx.x; i < n16; i += step) {
        int4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * blockDim.x < n16) v[u] = __ldcs(h + i + u * blockDim.x);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * blockDim.x < n16) d[i + u * blockDim.x] = v[u];
    }
}

/* the background copies: none, the copy engines, or k_h2d<U> of C CTAs of
 * T threads */
struct beside {
    char kind; /* 0, 'c', 'k' */
    int ctas, threads, loads;
};

enum way { WAY_STREAM, WAY_MAIN, WAY_PUT, WAY_FUSED, WAY_CE, N_WAYS };
static const char *const way_name[N_WAYS] = {"stream", "main", "put", "fused", "ce"};

struct bench {
    int64_t n;
    cudaStream_t st, dl, cp;
    cudaEvent_t ready;
    float *rows, *hx;           /* pinned: the CPU's rows, the activations down */
    uint32_t *flag, *done;      /* pinned */
    float *y;                   /* device */
    uint32_t *dflag;            /* device */
    float *drows;               /* device: the rows as the "ce" way's copy lands them */
    uint32_t *ce_flag, *ce_src; /* the device word that copy writes; its pinned source */
    cudaStream_t ce;
    uint32_t seq;
    /* the background copies */
    void *bulk_h, *bulk_d;
    cudaEvent_t bulk_ev[BULK_DEPTH];
    bool bulk_on[BULK_DEPTH];
    struct beside bs;
    int64_t bulk_pieces; /* queued since the counts were reset */
};

static void bulk_piece(struct bench *b, int i)
{
    const uint8_t *h = (const uint8_t *)b->bulk_h + (size_t)i * BULK_PIECE;
    uint8_t *d = (uint8_t *)b->bulk_d + (size_t)i * BULK_PIECE;
    const int64_t n16 = BULK_PIECE / 16;
    const int c = b->bs.ctas, t = b->bs.threads;
    b->bulk_pieces++;
    if (b->bs.kind == 'c') {
        CK(cudaMemcpyAsync(d, h, BULK_PIECE, cudaMemcpyHostToDevice, b->cp));
        return;
    }
    const int4 *h4 = (const int4 *)h;
    int4 *d4 = (int4 *)d;
    switch (b->bs.loads) {
    case 1: k_h2d<1><<<c, t, 0, b->cp>>>(h4, d4, n16); break;
    case 2: k_h2d<2><<<c, t, 0, b->cp>>>(h4, d4, n16); break;
    case 4: k_h2d<4><<<c, t, 0, b->cp>>>(h4, d4, n16); break;
    case 8: k_h2d<8><<<c, t, 0, b->cp>>>(h4, d4, n16); break;
    default: k_h2d<16><<<c, t, 0, b->cp>>>(h4, d4, n16); break;
    }
    CK(cudaGetLastError());
}

/* Keeps BULK_DEPTH pieces queued on cp. */
static void bulk_feed(struct bench *b)
{
    for (int i = 0; i < BULK_DEPTH; i++) {
        if (b->bulk_on[i]) {
            const cudaError_t q = cudaEventQuery(b->bulk_ev[i]);
            if (q == cudaErrorNotReady) continue;
            CK(q);
        }
        bulk_piece(b, i);
        CK(cudaEventRecord(b->bulk_ev[i], b->cp));
        b->bulk_on[i] = true;
    }
}

/* One round trip the given way; ns from the flag's store to the arrival. */
static int64_t trip(struct bench *b, enum way w, bool bulk)
{
    const uint32_t seq = ++b->seq;
    switch (w) {
    case WAY_STREAM:
        CK(cuk_wait_copy(b->y, b->rows, b->n, b->flag, b->dflag, seq, b->st));
        break;
    case WAY_MAIN:
        CK(cuk_wait_copy(b->y, b->rows, b->n, b->flag, b->dflag, seq, b->st));
        CK(cudaEventRecord(b->ready, b->st));
        CK(cudaStreamWaitEvent(b->dl, b->ready, 0));
        CK(cuk_copy_rows(b->hx, b->n, b->y, b->n, b->n, 1, b->dl));
        break;
    case WAY_PUT:
        CK(cuk_wait_copy(b->y, b->rows, b->n, b->flag, b->dflag, seq, b->st));
        k_put<<<1, 1024, 0, b->st>>>(b->y, b->n, b->hx, b->done, seq);
        CK(cudaGetLastError());
        break;
    case WAY_CE:
        k_dev_put<<<1, 1024, 0, b->st>>>(b->drows, b->n, b->hx, b->ce_flag, b->done, seq);
        CK(cudaGetLastError());
        break;
    case WAY_FUSED:
        k_fused<<<1, 1024, 0, b->st>>>(b->rows, b->n, b->y, b->hx, b->flag, b->done, seq);
        CK(cudaGetLastError());
        break;
    default:
        break;
    }
    /* the GPU is waiting at the flag by now, as in decode */
    const int64_t t_wait = now_ns() + 30000;
    while (now_ns() < t_wait)
        if (bulk) bulk_feed(b);
    for (int64_t i = 0; i < b->n; i++) b->rows[i] = (float)(seq + i);
    const int64_t t0 = now_ns();
    if (w == WAY_CE) { /* the rows and then the flag copied up by a copy engine */
        *b->ce_src = seq;
        CK(cudaMemcpyAsync(b->drows, b->rows, (size_t)b->n * sizeof(float), cudaMemcpyHostToDevice,
                           b->ce));
        CK(cudaMemcpyAsync(b->ce_flag, b->ce_src, sizeof(uint32_t), cudaMemcpyHostToDevice, b->ce));
    } else {
        __atomic_store_n(b->flag, seq, __ATOMIC_RELEASE);
    }
    int64_t t1;
    for (;;) {
        if (w == WAY_PUT || w == WAY_FUSED || w == WAY_CE) {
            if ((int32_t)(__atomic_load_n(b->done, __ATOMIC_ACQUIRE) - seq) >= 0) break;
        } else {
            const cudaError_t q = cudaStreamQuery(w == WAY_MAIN ? b->dl : b->st);
            if (q != cudaErrorNotReady) {
                CK(q);
                break;
            }
        }
        if ((t1 = now_ns()) - t0 > 2000000000) {
            fprintf(stderr,
                    "cuda_handoff_bench: %s: no arrival 2 s after the flag (trip %u; done %u; "
                    "compute stream %s)\n",
                    way_name[w], seq, __atomic_load_n(b->done, __ATOMIC_ACQUIRE),
                    cudaGetErrorString(cudaStreamQuery(b->st)));
            exit(1);
        }
    }
    t1 = now_ns();
    if (w != WAY_STREAM && b->hx[b->n - 1] != (float)(seq + b->n - 1)) {
        fprintf(stderr, "cuda_handoff_bench: %s: the rows came back wrong\n", way_name[w]);
        exit(1);
    }
    CK(cudaStreamSynchronize(b->st));
    CK(cudaStreamSynchronize(b->dl));
    CK(cudaStreamSynchronize(b->ce));
    return t1 - t0;
}

int main(int argc, char **argv)
{
    int64_t n = 4096, reps = 2000;
    bool on[N_WAYS] = {true, true, true, true, true};
    struct beside bs[MAX_BESIDE] = {{0, 0, 0, 0}, {'c', 0, 0, 0}};
    int n_bs = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            n = arg_int("--n", argv[++i], 1, 1 << 20);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = arg_int("--reps", argv[++i], 10, 1000000);
        } else if (!strcmp(argv[i], "--ways") && i + 1 < argc) {
            const char *list = argv[++i];
            memset(on, 0, sizeof on);
            for (const char *p = list; *p;) {
                const size_t len = strcspn(p, ",");
                int w = 0;
                while (w < N_WAYS && (strlen(way_name[w]) != len || strncmp(p, way_name[w], len)))
                    w++;
                if (w == N_WAYS) {
                    fprintf(stderr,
                            "cuda_handoff_bench: --ways: '%.*s' is not one of stream, "
                            "main, put, fused, ce\n",
                            (int)len, p);
                    return 2;
                }
                on[w] = true;
                p += len + (p[len] == ',');
            }
        } else if (!strcmp(argv[i], "--beside") && i + 1 < argc) {
            n_bs = 1; /* idle first */
            for (const char *p = argv[++i]; *p;) {
                const size_t len = strcspn(p, ",");
                struct beside v = {};
                char tail = 0;
                if (len == 2 && !strncmp(p, "ce", 2)) {
                    v.kind = 'c';
                } else if (sscanf(p, "k:%d:%d:%d%c", &v.ctas, &v.threads, &v.loads, &tail) >= 3 &&
                           (tail == 0 || tail == ',') && v.ctas >= 1 && v.ctas <= 1024 &&
                           v.threads >= 32 && v.threads <= 1024 && v.threads % 32 == 0 &&
                           (v.loads & (v.loads - 1)) == 0 && v.loads >= 1 && v.loads <= 16) {
                    v.kind = 'k';
                } else {
                    fprintf(stderr,
                            "cuda_handoff_bench: --beside: '%.*s' is neither ce nor k:C:T:U (C "
                            "CTAs from 1 to 1024, T threads a multiple of 32 up to 1024, U "
                            "loads 1, 2, 4, 8 or 16)\n",
                            (int)len, p);
                    return 2;
                }
                if (n_bs == MAX_BESIDE) {
                    fprintf(stderr, "cuda_handoff_bench: --beside: at most %d kinds\n",
                            MAX_BESIDE - 1);
                    return 2;
                }
                bs[n_bs++] = v;
                p += len + (p[len] == ',');
            }
        } else {
            fprintf(stderr, "usage: cuda_handoff_bench [--n 4096] [--reps 2000] "
                            "[--ways stream,main,put,fused,ce] [--beside ce,k:C:T:U,...]\n");
            return 2;
        }
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("cuda_handoff_bench: no CUDA device: nothing measured\n");
        return 0;
    }
    struct bench b = {};
    b.n = n;
    CK(cudaStreamCreateWithFlags(&b.st, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&b.dl, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&b.cp, cudaStreamNonBlocking));
    CK(cudaEventCreateWithFlags(&b.ready, cudaEventDisableTiming));
    CK(cudaMallocHost((void **)&b.rows, (size_t)n * sizeof(float)));
    CK(cudaMallocHost((void **)&b.hx, (size_t)n * sizeof(float)));
    CK(cudaMallocHost((void **)&b.flag, 64));
    CK(cudaMallocHost((void **)&b.done, 64));
    memset(b.flag, 0, 64);
    memset(b.done, 0, 64);
    CK(cudaMalloc((void **)&b.y, (size_t)n * sizeof(float)));
    CK(cudaMalloc((void **)&b.dflag, 64));
    CK(cudaMalloc((void **)&b.drows, (size_t)n * sizeof(float)));
    CK(cudaMalloc((void **)&b.ce_flag, 64));
    CK(cudaMemset(b.ce_flag, 0, 64));
    CK(cudaMallocHost((void **)&b.ce_src, 64));
    CK(cudaStreamCreateWithFlags(&b.ce, cudaStreamNonBlocking));
    CK(cudaMemset(b.dflag, 0, 64));
    CK(cudaMallocHost(&b.bulk_h, (size_t)BULK_DEPTH * BULK_PIECE));
    CK(cudaMalloc(&b.bulk_d, (size_t)BULK_DEPTH * BULK_PIECE));
    memset(b.bulk_h, 1, (size_t)BULK_DEPTH * BULK_PIECE);
    for (int i = 0; i < BULK_DEPTH; i++)
        CK(cudaEventCreateWithFlags(&b.bulk_ev[i], cudaEventDisableTiming));

    /* the bench's kernels loaded now: loaded at a first launch behind a
     * kernel that waits for the host, the launch would wait for that kernel,
     * which waits for this thread */
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, k_put));
    CK(cudaFuncGetAttributes(&fa, k_fused));
    CK(cudaFuncGetAttributes(&fa, k_dev_put));
    CK(cudaFuncGetAttributes(&fa, k_h2d<1>));
    CK(cudaFuncGetAttributes(&fa, k_h2d<2>));
    CK(cudaFuncGetAttributes(&fa, k_h2d<4>));
    CK(cudaFuncGetAttributes(&fa, k_h2d<8>));
    CK(cudaFuncGetAttributes(&fa, k_h2d<16>));
    printf("| way | PCIe | median us | p90 us | copies beside, GB/s |\n"
           "| --- | --- | ---: | ---: | ---: |\n");
    for (int k = 0; k < n_bs; k++) {
        b.bs = bs[k];
        const bool bulk = bs[k].kind != 0;
        char label[64];
        if (!bulk)
            snprintf(label, sizeof label, "idle");
        else if (bs[k].kind == 'c')
            snprintf(label, sizeof label, "copy engines beside");
        else
            snprintf(label, sizeof label, "kernel copies beside (%d CTAs x %d threads x %d loads)",
                     bs[k].ctas, bs[k].threads, bs[k].loads);
        for (int w = 0; w < N_WAYS; w++) {
            if (!on[w]) continue;
            std::vector<int64_t> t((size_t)reps);
            for (int i = 0; i < 20; i++) trip(&b, (enum way)w, bulk);
            CK(cudaStreamSynchronize(b.cp));
            b.bulk_pieces = 0;
            const int64_t t0 = now_ns();
            for (int64_t i = 0; i < reps; i++) t[(size_t)i] = trip(&b, (enum way)w, bulk);
            CK(cudaStreamSynchronize(b.cp));
            const double gbs = bulk ? (double)b.bulk_pieces * BULK_PIECE / (double)(now_ns() - t0) : 0;
            char rate[32] = "-";
            if (bulk) snprintf(rate, sizeof rate, "%.1f", gbs);
            std::sort(t.begin(), t.end());
            printf("| %s | %s | %.1f | %.1f | %s |\n", way_name[w], label,
                   1e-3 * t[(size_t)reps / 2], 1e-3 * t[(size_t)(reps * 9 / 10)], rate);
            fflush(stdout);
        }
    }
    CK(cudaStreamSynchronize(b.cp));
    return 0;
}
