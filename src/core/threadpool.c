#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/timing.h"

/* How long a waiting thread spins before it blocks. Long enough to bridge
 * the gap between two kernels of one token, short enough not to burn a core
 * while the caller samples or prints. */
#define SPIN_US 200

struct worker {
    struct threadpool *pool;
    pthread_t thread;
    int ith;
};

struct threadpool {
    int n_threads;
    struct worker *workers; /* owned, n_threads - 1 */

    /* The current run. Written by the caller before it bumps generation;
     * read by the workers after they see the new generation. */
    threadpool_fn fn;
    void *ctx;
    bool started; /* a run started and not joined yet (the caller's alone) */
    bool loose;   /* the run started is a loose one (threadpool_start_loose) */

    atomic_uint generation; /* bumped once per run (and once to stop) */
    atomic_int pending;     /* workers that have not finished the current run */
    atomic_bool stop;
    /* Which run a generation is: strict_gen, the last strict run's (every
     * worker runs it, pending counts them); open_gen, the loose run's
     * generation until its join closes it (0). A worker enters a loose run
     * by counting itself inside, then finding it still open; the join
     * closes it, then waits for none inside: sequentially consistent, so
     * that one of the two always sees the other. */
    atomic_uint strict_gen, open_gen;
    atomic_int inside;
    /* Who is blocked (rather than spinning): the condition variables are
     * only touched when someone sleeps on them, which keeps the mutex out of
     * the common path. Sequentially consistent atomics make the handshake
     * safe: a sleeper announces itself before its last check under the
     * mutex, and a waker bumps the state before it reads the announcement,
     * so one of the two always sees the other. */
    atomic_int n_sleeping;       /* workers blocked on wake */
    atomic_bool caller_sleeping; /* the caller blocked on done */

    pthread_mutex_t mu;
    pthread_cond_t wake; /* generation changed */
    pthread_cond_t done; /* pending reached 0 */
};

/* One step of a spin-wait: nothing but the caller's atomic load, and now
 * and then a yield, so that a thread we wait for that shares our core (an
 * oversubscribed machine) gets to run before our time slice ends.
 *
 * Why no pause instruction: under a hypervisor, a loop of pauses triggers
 * pause-loop exiting, which takes the vCPU off the core. Measured on the
 * 2-vCPU development VM: an empty run took 0.4 us with plain loads, 10 us
 * with a pause per iteration plus yields, and 100-300 us with pauses alone. */
static inline void spin_pause(unsigned i)
{
    if ((i & 4095) == 4095) sched_yield();
}

/* Waits until generation differs from seen; returns the new generation. */
static unsigned wait_generation(struct threadpool *p, unsigned seen)
{
    int64_t t0 = timing_now_us();
    for (unsigned i = 0;; i++) {
        unsigned g = atomic_load(&p->generation);
        if (g != seen) return g;
        spin_pause(i);
        if ((i & 63) == 63 && timing_now_us() - t0 > SPIN_US) break;
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct threadpool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_generation(p, seen);
        if (atomic_load(&p->stop)) break;
        if (atomic_load(&p->strict_gen) != seen) {
            /* a loose run: in while it is open (else it has ended without
             * this worker, or a newer run has begun: the next wait sees it) */
            atomic_fetch_add(&p->inside, 1);
            if (atomic_load(&p->open_gen) == seen) p->fn(p->ctx, w->ith, p->n_threads);
            atomic_fetch_sub(&p->inside, 1);
            continue;
        }
        p->fn(p->ctx, w->ith, p->n_threads);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static void stop_workers(struct threadpool *p, int n_started)
{
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < n_started; i++) pthread_join(p->workers[i].thread, NULL);
}

enum hy_status threadpool_init(int n_threads, struct threadpool **out)
{
    *out = NULL;
    if (n_threads < 1)
        return err_set(HY_ERR_INVALID_ARG, "thread pool: %d threads (need at least 1)", n_threads);
    struct threadpool *p = mem_xcalloc(1, sizeof(*p));
    p->n_threads = n_threads;
    p->workers = mem_xcalloc((size_t)n_threads, sizeof(*p->workers));
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_sleeping, false);
    atomic_init(&p->strict_gen, 0);
    atomic_init(&p->open_gen, 0);
    atomic_init(&p->inside, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n_threads - 1; i++) {
        struct worker *w = &p->workers[i];
        w->pool = p;
        w->ith = i + 1;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            stop_workers(p, i);
            pthread_cond_destroy(&p->done);
            pthread_cond_destroy(&p->wake);
            pthread_mutex_destroy(&p->mu);
            free(p->workers);
            free(p);
            return err_set(HY_ERR_OOM, "thread pool: cannot start worker thread %d of %d: %s",
                           i + 1, n_threads - 1, strerror(rc));
        }
    }
    *out = p;
    return HY_OK;
}

void threadpool_free(struct threadpool *p)
{
    if (!p) return;
    threadpool_join(p);
    stop_workers(p, p->n_threads - 1);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int threadpool_n_threads(const struct threadpool *p)
{
    return p->n_threads;
}

/* Starts a run (after joining the one before): the next generation, the
 * workers woken. */
static void start_run(struct threadpool *p, threadpool_fn fn, void *ctx, bool loose)
{
    threadpool_join(p);
    p->fn = fn;
    p->ctx = ctx;
    p->started = true;
    p->loose = loose;
    if (p->n_threads == 1) return;
    unsigned g = atomic_load(&p->generation) + 1;
    if (g == 0) g = 1; /* 0 means closed in open_gen */
    if (loose) {
        atomic_store(&p->open_gen, g);
    } else {
        atomic_store(&p->pending, p->n_threads - 1);
        atomic_store(&p->strict_gen, g);
    }
    atomic_store(&p->generation, g);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

void threadpool_start(struct threadpool *p, threadpool_fn fn, void *ctx)
{
    start_run(p, fn, ctx, false);
}

void threadpool_start_loose(struct threadpool *p, threadpool_fn fn, void *ctx)
{
    start_run(p, fn, ctx, true);
}

/* threadpool_wait_until's sleep between two looks, once past the spin */
#define NAP_NS 20000

void threadpool_wait_until(bool (*ready)(void *arg), void *arg)
{
    const int64_t t0 = timing_now_us();
    for (unsigned i = 0; !ready(arg); i++) {
        if ((i & 63) == 63 && timing_now_us() - t0 > SPIN_US) {
            const struct timespec nap = {0, NAP_NS};
            nanosleep(&nap, NULL);
        } else {
            spin_pause(i);
        }
    }
}

static bool none_inside(void *arg)
{
    struct threadpool *p = arg;
    return atomic_load(&p->inside) == 0;
}

/* A loose run's end: closed to workers not in it yet, then the wait for
 * those in it. */
static void join_loose(struct threadpool *p)
{
    atomic_store(&p->open_gen, 0);
    threadpool_wait_until(none_inside, p);
}

void threadpool_join(struct threadpool *p)
{
    if (!p->started) return;
    p->started = false;
    p->fn(p->ctx, 0, p->n_threads);
    if (p->n_threads == 1) return;
    if (p->loose) {
        join_loose(p);
        return;
    }

    int64_t t0 = timing_now_us();
    for (unsigned i = 0; atomic_load(&p->pending) != 0; i++) {
        spin_pause(i);
        if ((i & 63) == 63 && timing_now_us() - t0 > SPIN_US) break;
    }
    if (atomic_load(&p->pending) != 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, true);
        while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, false);
        pthread_mutex_unlock(&p->mu);
    }
}

void threadpool_run(struct threadpool *p, threadpool_fn fn, void *ctx)
{
    threadpool_start(p, fn, ctx);
    threadpool_join(p);
}
