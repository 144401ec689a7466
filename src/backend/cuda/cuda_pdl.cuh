/*
 * Programmatic dependent launch (compute capability 9.0 and up), shared by
 * the kernel files. A kernel launched with pdl_launch(early = true) may start
 * while the kernel before it on the stream finishes: it lets the next kernel
 * start at once (pdl_trigger), does what needs nothing from the previous one
 * (the matrix-vector kernels issue their first weight loads), then waits for
 * it (pdl_wait) before it touches memory that kernel writes. Launched
 * without it, or compiled for older GPUs, both are no-ops.
 */
#ifndef HY_BACKEND_CUDA_CUDA_PDL_CUH
#define HY_BACKEND_CUDA_CUDA_PDL_CUH

#include <cuda_runtime.h>

__device__ __forceinline__ void pdl_trigger()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* kern<<<grid, threads, smem, s>>>(args), with programmatic dependent launch
 * when early; the launch's error. */
template <class... P, class... A>
static cudaError_t pdl_launch(void (*kern)(P...), dim3 grid, unsigned threads, size_t smem,
                              cudaStream_t s, bool early, A... args)
{
    if (!early) {
        kern<<<grid, threads, smem, s>>>(args...);
        return cudaGetLastError();
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kern, (P)args...);
}

#endif
