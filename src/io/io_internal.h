/*
 * Internal to src/io: the implementation interface behind io.h.
 *
 * io.c owns the queue discipline (validation, the FIFO of reads not yet
 * started, the depth limit, statistics, fault injection); an implementation
 * only starts one read and reaps finished ones. Invariant: in_flight ==
 * reads started and not yet reaped ≤ depth; fifo_n + in_flight ≤ max_queued.
 */
#ifndef HY_IO_IO_INTERNAL_H
#define HY_IO_IO_INTERNAL_H

#include "io/io.h"

struct io_impl_ops {
    /* Starts r (in_flight < depth is guaranteed). Errors are reported as a
     * completion with res < 0, so this cannot fail. */
    void (*start)(struct io *io, const struct io_read *r);
    /* Moves up to max finished reads to out; blocks for one when block. */
    int (*reap)(struct io *io, struct io_done *out, int max, bool block);
    /* Frees the implementation; nothing is in flight. */
    void (*destroy)(struct io *io);
};

struct io {
    const struct io_impl_ops *ops;
    void *impl;
    char *path; /* owned */
    int fd;     /* -1 for memory */
    bool direct;
    uint32_t align;
    enum io_kind kind;
    int depth, max_queued;
    int in_flight;
    struct io_read *fifo; /* owned, max_queued entries: a ring of reads not yet started */
    int fifo_head, fifo_n;
    struct io_stats st;
    uint64_t n_reaped;            /* for fault injection */
    uint64_t fail_at, short_at;   /* 0: off */
};

/* Implementation constructors: set io->ops and io->impl. */
HY_MUST_CHECK enum hy_status io_pread_init(struct io *io);
HY_MUST_CHECK enum hy_status io_uring_impl_init(struct io *io);
bool io_uring_built(void);

#endif
