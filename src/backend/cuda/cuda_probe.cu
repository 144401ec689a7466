#include "backend/cuda/cuda_probe.h"

#include <cuda_runtime.h>

#include <atomic>
#include <string.h>

extern "C" bool cuda_device_open(int dev)
{
    if (cudaSetDevice(dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    /* once per device: a stack the driver has grown since (for a kernel
     * that needs it) stays as it is */
    static std::atomic<bool> set[64];
    size_t stack = 0;
    if (dev < 64 && !set[dev].exchange(true) &&
        (cudaDeviceGetLimit(&stack, cudaLimitStackSize) != cudaSuccess ||
         (stack > CUDA_STACK_BYTES &&
          cudaDeviceSetLimit(cudaLimitStackSize, CUDA_STACK_BYTES) != cudaSuccess)))
        cudaGetLastError(); /* the default stack: more VRAM held, nothing wrong */
    return true;
}

extern "C" int cuda_probe_devices(struct cuda_probe_device *out, int cap)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error */
        return 0;
    }
    int filled = 0;
    for (int i = 0; i < n && filled < cap; i++) {
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        struct cuda_probe_device *d = &out[filled++];
        memset(d, 0, sizeof(*d));
        strncpy(d->name, prop.name, sizeof(d->name) - 1);
        d->cc_major = prop.major;
        d->cc_minor = prop.minor;
        d->total_bytes = prop.totalGlobalMem;
        size_t free_b = 0, total_b = 0;
        if (cuda_device_open(i) && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            d->free_bytes = free_b;
    }
    return filled;
}
