/*
 * The CPU backend: every op of backend.h on host memory, multithreaded over
 * rows (matmul) and over (token, head) pairs (attention) with a persistent
 * thread pool. The small element-wise ops run on the calling thread: at the
 * sizes of one token they cost less than waking the workers.
 *
 * Weights: every type the type-traits table computes with (F32, F16, BF16,
 * the legacy and K quants). matmul converts the activations once per call to
 * the weight type's vec_dot_type and takes each output from one vec_dot of
 * the quant kernels selected for this CPU (src/quant/quant_cpu.c).
 *
 * Kernels: matmul, get_rows and attention (vec_dots and conversions of the
 * KV cache types) use the quant kernels of the ISA selected when the backend is made, or the
 * reference ones with opts.portable. Results do not depend on the thread
 * count or the batch size; the two kernel sets differ in the last bits
 * (summation order, FMA), which the unit tests bound.
 */
#ifndef HY_BACKEND_CPU_CPU_BACKEND_H
#define HY_BACKEND_CPU_CPU_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

struct cpu_backend_opts {
    int n_threads; /* >= 1, including the calling thread */
    bool portable; /* reference kernels even where SIMD ones exist (tests) */
    /* the least bytes of a chunk of moe_token's pass (0: 64 KiB; 1: the
     * chunks of a product alone, as tests of the pass's many-chunk paths
     * want) */
    int64_t moe_chunk_bytes;
    /* chunks per thread of a started one-token product's rows
     * (cpu_backend_matmul_start, cpu_backend_swiglu_start; 0: the count
     * backend_matmul takes; pass_bench measures others) */
    int pass_chunks;
};

/* A new CPU backend (free with backend_free). Errors: HY_ERR_INVALID_ARG
 * (n_threads < 1), HY_ERR_OOM (a thread could not be started). */
HY_MUST_CHECK enum hy_status cpu_backend_init(const struct cpu_backend_opts *opts,
                                              struct backend **out);

/* backend_matmul on a CPU backend, where the calling thread first runs
 * first(ctx) and then joins the workers, which start on the rows at once
 * (their chunks are handed out as they go, so the caller takes fewer). The
 * GPU backend queues its copies there while the CPU computes its rows. */
void cpu_backend_matmul_after(struct backend *be, const struct backend_weight *w, const float *x,
                              int64_t n_tok, float *y, void (*first)(void *ctx), void *ctx);

/* One token's y = w x started on the pool's workers (x converted first);
 * returns at once, taking the pool as cpu_backend_moe_token_start does.
 * Once y holds every row, the thread that finished it stores flag_value
 * into *flag (release; flag may be NULL), before the pass counts as done
 * (cpu_backend_pass_wait returns after the store). x and y must stay until the pass
 * is joined or waited for (cpu_backend_pass_wait); w is copied. Each row
 * comes out as backend_matmul gives it. The GPU backend's RAM weights: its
 * calling thread queues the ops after the product while the CPU computes. */
void cpu_backend_matmul_start(struct backend *be, const struct backend_weight *w, const float *x,
                              float *y, uint32_t *flag, uint32_t flag_value);

/* cpu_backend_matmul_start of two weights of equal shape with SwiGLU after
 * them: h = silu(gate x) * (up x), each element as backend_matmul and
 * backend_silu_mul give it; h2 (as long as h) holds up x. */
void cpu_backend_swiglu_start(struct backend *be, const struct backend_weight *gate,
                              const struct backend_weight *up, const float *x, float *h, float *h2,
                              uint32_t *flag, uint32_t flag_value);

/* The backend's moe_token started on the pool's workers (x converted
 * first); returns at once (taking the pool: every other op of this backend
 * joins the pass first). The GPU backend queues its own experts' copies and
 * kernels meanwhile.
 * Once y holds the sum, the thread that finished it stores flag_value into
 * *flag (release; flag may be NULL): the CUDA backend's GPU waits for that
 * while the calling thread queues the GPU's next ops. x, the scratch and y
 * must stay until the pass is joined or waited for (cpu_backend_pass_wait);
 * w and alpha are copied.
 * The first n_half experts are halves: their gate, up and silu_mul alone, of
 * their first half_rows rows (1 to all of them), expert e's into h + e * (gate
 * rows), done first; once all of them are,
 * the pass stores flag_value into *half_flag (release; may be NULL) and goes
 * on with the others. Their downs are the caller's: they are not in y,
 * except rows [0, half_down) of each (0: none; only where half_rows is all
 * of them), computed first among the downs and added into y with the
 * others' in expert order. */
void cpu_backend_moe_token_start(struct backend *be, const float *x, const struct backend_weight *w,
                                 const float *alpha, int k, float *y, float *h, float *h2, float *o,
                                 int n_half, int64_t half_rows, int64_t half_down,
                                 uint32_t *half_flag, uint32_t *flag, uint32_t flag_value);

/* The pass started last, once joined or waited for: when its workers were
 * started (after x was converted), when its first chunk was taken, and when
 * its gate and up products were done (timing_now_us; 0: no pass yet). A
 * started product's: its start twice, then its end. */
void cpu_backend_pass_times(struct backend *be, int64_t *start, int64_t *first, int64_t *gate_up);

/* Joins the pass started last, if any (the calling thread takes what is
 * left of it, then waits for the workers); returns when the last pass's sum
 * was complete (timing_now_us; 0: none yet). */
int64_t cpu_backend_join(struct backend *be);

/* The pass started last, if any, until its sum is complete (the calling
 * thread takes what is left of it first): returns what cpu_backend_join
 * would, without waiting for workers that have not run yet (a thread that
 * lost its core before its turn) or are on their way out; no thread of the
 * pass computes after its sum is complete. x, the scratch, y and the
 * weights may be reused after it; the next op of this backend joins the
 * workers first. */
int64_t cpu_backend_pass_wait(struct backend *be);

/* The bytes of weights w[0..n) read by the pool's threads (the calling
 * thread among them), each thread a contiguous share, one load a cache
 * line, so that a pass right after reads them from the caches; joins the
 * pass started last first. */
void cpu_backend_warm(struct backend *be, const struct backend_weight *w, int n);

/* Name of the kernel set in use (an ISA name such as "avx512-vnni", or "reference"). */
const char *cpu_backend_kernels(const struct backend *be);

#endif
