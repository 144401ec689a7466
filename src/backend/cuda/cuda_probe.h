/*
 * The CUDA devices present, for the hardware profile. Built only with
 * HY_CUDA; callers test HY_HAVE_CUDA.
 */
#ifndef HY_BACKEND_CUDA_CUDA_PROBE_H
#define HY_BACKEND_CUDA_CUDA_PROBE_H

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

/* Number of usable devices (0 when there is no driver or no GPU: never an
 * error); fills up to cap entries of out. */
int cuda_probe_devices(struct cuda_probe_device *out, int cap);

#ifdef __cplusplus
}
#endif

#endif
