/*
 * A small persistent thread pool for data-parallel kernels.
 *
 * threadpool_run(p, fn, ctx) calls fn(ctx, ith, nth) once for every ith in
 * [0, nth), nth = the pool's thread count, and returns when all calls have
 * returned. The calling thread is ith 0; the pool starts nth - 1 workers once,
 * at init, so a run allocates nothing and creates no thread. Kernels split
 * their work by ith/nth themselves (rows, heads), which keeps each output
 * element computed by exactly one thread in a fixed order: results do not
 * depend on the thread count.
 *
 * Workers wait for the next run by spinning briefly, then blocking on a
 * condition variable: decode issues many short runs back to back, and a
 * futex wake-up per run would cost more than the work of a small matvec.
 *
 * threadpool_start(p, fn, ctx) starts the workers on a run and returns at
 * once; threadpool_join(p) then calls fn(ctx, 0, nth) on the calling thread
 * (kernels that hand out work from a shared counter give it what is left)
 * and waits for the workers. threadpool_run is the two in one. A loose run
 * (threadpool_start_loose) is for such kernels alone: its join does not
 * wait for a worker that has not begun it, which then never does. A run started
 * and not yet joined is joined by the next start or run, so fn's ctx must
 * live until then. The CUDA backend starts the CPU's share of a token's
 * experts this way and queues the GPU's next ops while the workers compute.
 *
 * Threads: one run at a time, always from the thread that created the pool.
 * fn must not call threadpool_run on the same pool.
 *
 * Rejected: a work queue with per-task allocation (the per-token path must
 * not allocate) and OpenMP (not in the dependency list, and its spin policy
 * is not ours to control).
 */
#ifndef HY_CORE_THREADPOOL_H
#define HY_CORE_THREADPOOL_H

#include <stdbool.h>

#include "core/base.h"

struct threadpool;

typedef void (*threadpool_fn)(void *ctx, int ith, int nth);

/* Starts a pool of n_threads (>= 1) threads including the caller. Errors:
 * HY_ERR_INVALID_ARG (n_threads < 1), HY_ERR_OOM naming the thread that
 * could not be started (the ones started before are stopped again). */
HY_MUST_CHECK enum hy_status threadpool_init(int n_threads, struct threadpool **out);

/* Stops and joins the workers. NULL is a no-op. */
void threadpool_free(struct threadpool *p);

int threadpool_n_threads(const struct threadpool *p);

/* Runs fn(ctx, ith, nth) for every ith and waits for all of them. */
void threadpool_run(struct threadpool *p, threadpool_fn fn, void *ctx);

/* Starts fn(ctx, ith, nth) for ith 1 .. nth - 1 on the workers (joining the
 * run started before, if any) and returns. With one thread nothing runs
 * until threadpool_join. */
void threadpool_start(struct threadpool *p, threadpool_fn fn, void *ctx);

/* threadpool_start for a run whose fn hands its work out by claims (each
 * call takes what is left until nothing is, so that the calls on the
 * threads that run give all of it): a worker that has not begun by the
 * time the run is joined never does, and the join waits only for the
 * workers in fn then. A thread that lost its core before its turn holds
 * nothing up; it takes part in the next run it finds open. */
void threadpool_start_loose(struct threadpool *p, threadpool_fn fn, void *ctx);

/* Waits until ready(arg) holds, as a join waits: spinning at first, then
 * looking again after short sleeps, so that the thread's core is free for
 * a worker that waits for one. */
void threadpool_wait_until(bool (*ready)(void *arg), void *arg);

/* The run started last, if not joined yet: fn(ctx, 0, nth) on the calling
 * thread, then waits for the workers (for a loose run, those in fn). */
void threadpool_join(struct threadpool *p);

#endif
