/*
 * The CUDA devices present, for the hardware profile. Built only with
 * HY_CUDA; callers test HY_HAVE_CUDA.
 */
#ifndef HY_BACKEND_CUDA_CUDA_PROBE_H
#define HY_BACKEND_CUDA_CUDA_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cuda_probe_device {
    char name[256];
    uint64_t total_bytes;
    uint64_t free_bytes;
    int cc_major, cc_minor;
};

/* Makes device dev current in the calling thread and, the first time, sets
 * its context's per-thread stack to CUDA_STACK_BYTES. The context keeps
 * local memory for that stack in every thread the device can hold at once:
 * on an H100 (132 multiprocessors x 2048 threads) the driver's default of
 * 1 KiB made a new context hold 527 MiB, 128 bytes 295 MiB: VRAM that
 * neither the budget nor the weights could use. The kernels here keep at
 * most 56 bytes a thread (ptxas, sm_90); a kernel that needs more (a
 * library's) makes the driver grow the stack at its launch, and it stays
 * grown. false: the device cannot be made current. */
#define CUDA_STACK_BYTES 128
bool cuda_device_open(int dev);

/* Number of usable devices (0 when there is no driver or no GPU: never an
 * error); fills up to cap entries of out. */
int cuda_probe_devices(struct cuda_probe_device *out, int cap);

#ifdef __cplusplus
}
#endif

#endif
