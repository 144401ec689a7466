/*
 * What the CUDA benchmark programs share: a CUDA call checked (the program
 * exits 1 naming the call, the error and the place), a run of launches
 * timed between two events, an integer argument checked.
 * Each program defines CUDA_BENCH_NAME (its name, for messages) before
 * including this.
 */
#ifndef HY_BENCH_CUDA_BENCH_H
#define HY_BENCH_CUDA_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        const cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, CUDA_BENCH_NAME ": %s: %s (%s:%d)\n", #call, cudaGetErrorString(e_),   \
                    __FILE__, __LINE__);                                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Mean us per launch of reps launches of fn(ctx, i) on s, after four
 * launches that load the kernels and bring the clocks up. */
typedef void (*launch_fn)(void *ctx, int i);

static inline double time_launches(launch_fn fn, void *ctx, int reps, cudaStream_t s)
{
    for (int i = 0; i < 4; i++) fn(ctx, i);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a, s));
    for (int i = 0; i < reps; i++) fn(ctx, i);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return 1000.0 * ms / reps;
}

/* The integer v of flag, from lo to hi; anything else exits 2 naming it. */
static inline int64_t arg_int(const char *flag, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    const long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < lo || n > hi) {
        fprintf(stderr, CUDA_BENCH_NAME ": %s: '%s' is not an integer from %lld to %lld\n", flag, v,
                (long long)lo, (long long)hi);
        exit(2);
    }
    return n;
}

#endif
