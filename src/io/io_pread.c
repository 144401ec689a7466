/*
 * The pread thread pool: `depth` threads, each taking a started read from a
 * shared ring, calling pread until the read is complete, at end of file or
 * failed, and putting the completion on a second ring that io_wait drains.
 *
 * Both rings have max_queued entries, allocated at init; started reads never
 * exceed depth ≤ max_queued, so neither ring can overflow. A partial pread
 * (a signal, a device limit) continues where it stopped; 0 bytes means end of
 * file and finishes the read with what it has, which io_check then calls
 * short when that is fewer bytes than needed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "io/io_internal.h"

struct io_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, fin;
    struct io_read *todo; /* ring */
    int todo_head, todo_n;
    struct io_done *done; /* ring */
    int done_head, done_n;
    int cap;
    bool stop;
    int n_threads;
    pthread_t *threads;
    int fd;
};

static int64_t read_all(int fd, const struct io_read *r)
{
    uint64_t got = 0;
    while (got < r->len) {
        ssize_t n = pread(fd, (uint8_t *)r->buf + got, (size_t)(r->len - got), (off_t)(r->off + got));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break;
        got += (uint64_t)n;
    }
    return (int64_t)got;
}

static void *worker(void *arg)
{
    struct io_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->todo_n == 0) pthread_cond_wait(&p->work, &p->mu);
        if (p->todo_n == 0) break; /* stop, and nothing left */
        struct io_read r = p->todo[p->todo_head];
        p->todo_head = (p->todo_head + 1) % p->cap;
        p->todo_n--;
        pthread_mutex_unlock(&p->mu);
        struct io_done d = {.r = r, .res = read_all(p->fd, &r)};
        pthread_mutex_lock(&p->mu);
        p->done[(p->done_head + p->done_n) % p->cap] = d;
        p->done_n++;
        pthread_cond_signal(&p->fin);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_start(struct io *io, const struct io_read *r)
{
    struct io_pool *p = io->impl;
    pthread_mutex_lock(&p->mu);
    p->todo[(p->todo_head + p->todo_n) % p->cap] = *r;
    p->todo_n++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

static int pool_reap(struct io *io, struct io_done *out, int max, bool block)
{
    struct io_pool *p = io->impl;
    pthread_mutex_lock(&p->mu);
    while (block && p->done_n == 0) pthread_cond_wait(&p->fin, &p->mu);
    int k = 0;
    while (k < max && p->done_n > 0) {
        out[k++] = p->done[p->done_head];
        p->done_head = (p->done_head + 1) % p->cap;
        p->done_n--;
    }
    pthread_mutex_unlock(&p->mu);
    return k;
}

static void pool_destroy(struct io *io)
{
    struct io_pool *p = io->impl;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->fin);
    free(p->threads);
    free(p->todo);
    free(p->done);
    free(p);
}

static const struct io_impl_ops pool_ops = {pool_start, pool_reap, pool_destroy};

enum hy_status io_pread_init(struct io *io)
{
    struct io_pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(HY_ERR_OOM, "io: out of memory");
    if (io->depth > io->max_queued) io->depth = io->max_queued;
    p->cap = io->max_queued;
    p->fd = io->fd;
    p->todo = calloc((size_t)p->cap, sizeof *p->todo);
    p->done = calloc((size_t)p->cap, sizeof *p->done);
    p->threads = calloc((size_t)io->depth, sizeof *p->threads);
    if (!p->todo || !p->done || !p->threads) {
        free(p->todo);
        free(p->done);
        free(p->threads);
        free(p);
        return err_set(HY_ERR_OOM, "io: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->fin, NULL);
    io->impl = p;
    io->ops = &pool_ops;
    for (int i = 0; i < io->depth; i++) {
        int e = pthread_create(&p->threads[i], NULL, worker, p);
        if (e) {
            pool_destroy(io);
            io->ops = NULL;
            io->impl = NULL;
            return err_set(HY_ERR_IO, "io: cannot start a read thread: %s", strerror(e));
        }
        p->n_threads++;
    }
    return HY_OK;
}
