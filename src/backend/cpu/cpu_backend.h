/*
 * The CPU backend: every op of backend.h on host memory, multithreaded over
 * rows (matmul) and over (token, head) pairs (attention) with a persistent
 * thread pool. The small element-wise ops run on the calling thread: at the
 * sizes of one token they cost less than waking the workers.
 *
 * Weights: F32, F16 and BF16. A row of a 16-bit type is converted to F32 in
 * chunks of CPU_BACKEND_CHUNK elements on the stack and dotted with the
 * activations of every token of the batch, so a matrix is never converted as
 * a whole and a prompt batch converts each chunk once per tile of tokens.
 *
 * Kernels: a portable version of each (the reference) and, on x86-64 CPUs
 * that have them, AVX2/FMA/F16C versions chosen once at init. Both accumulate
 * in F32 over a fixed lane structure, so results do not depend on the thread
 * count or the batch size; they do differ in the last bits between the two
 * kernel sets (FMA), which the unit tests bound.
 */
#ifndef HY_BACKEND_CPU_CPU_BACKEND_H
#define HY_BACKEND_CPU_CPU_BACKEND_H

#include <stdbool.h>

#include "backend/backend.h"

#define CPU_BACKEND_CHUNK 256

struct cpu_backend_opts {
    int n_threads; /* >= 1, including the calling thread */
    bool portable; /* use the portable kernels even where SIMD ones exist (tests) */
};

/* A new CPU backend (free with backend_free). Errors: HY_ERR_INVALID_ARG
 * (n_threads < 1), HY_ERR_OOM (a thread could not be started). */
HY_MUST_CHECK enum hy_status cpu_backend_init(const struct cpu_backend_opts *opts,
                                              struct backend **out);

/* Name of the kernel set in use ("avx2+fma+f16c" or "portable"). */
const char *cpu_backend_kernels(const struct backend *be);

#endif
