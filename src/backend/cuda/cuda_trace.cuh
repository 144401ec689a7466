/*
 * A decode timeline from inside the kernels (HYPURA_CUDA_TRACE=FILE): the
 * instrumented kernels' CTAs each write one record of the global timer at
 * up to four points (start, past the wait for the kernel before, past their
 * prologue, end) and the SM they ran on. Records past skip are kept, up to
 * cap; the backend writes them to FILE when it is freed. Each file that
 * includes this has its own copy of the buffer's address (cut_set).
 */
#ifndef HY_BACKEND_CUDA_CUDA_TRACE_CUH
#define HY_BACKEND_CUDA_CUDA_TRACE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda_kernels.h"

static __device__ struct cuk_trace cut_dev;

__device__ __forceinline__ uint64_t cut_now()
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* Thread 0's record of its CTA (a, b: the kernel's shape). */
__device__ __forceinline__ void cut_put(enum cuk_trace_kind kind, uint32_t a, uint32_t b,
                                        const uint64_t *t)
{
    const struct cuk_trace c = cut_dev;
    if (!c.rec) return;
    const unsigned long long i = atomicAdd(c.n, 1ull);
    if (i < c.skip || i - c.skip >= c.cap) return;
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    struct cuk_trace_rec r;
    r.kind = (uint16_t)kind;
    r.sm = (uint16_t)sm;
    r.cta = blockIdx.x + blockIdx.y * gridDim.x;
    r.a = a;
    r.b = b;
    for (int k = 0; k < 4; k++) r.t[k] = t[k];
    c.rec[i - c.skip] = r;
}

/* Whether a trace is being written. A kernel reads it at its start and keeps
 * it for its end: read at the end, its load's round trip was the CTA's last
 * step (in a 72-key decode attention on an H100, 9 % of the stall samples
 * Nsight Compute took). */
__device__ __forceinline__ bool cut_on()
{
    return cut_dev.rec != NULL;
}

static cudaError_t cut_set(const struct cuk_trace *t)
{
    return cudaMemcpyToSymbol(cut_dev, t, sizeof *t);
}

#endif
