/*
 * io_uring through liburing: one ring of `depth` entries; a started read is
 * one submission whose user data points at its slot. A slot holds the read
 * and the bytes that arrived so far: a completion with fewer bytes than
 * asked, but a whole number of blocks and not yet `need`, is continued with
 * a new submission for the rest (the kernel may split large direct reads);
 * 0 bytes is end of file and finishes the read.
 *
 * Slots: depth of them, allocated at init, found through a free list; in
 * flight ≤ depth is guaranteed by io.c, so one is always free at start.
 * Submissions go to the kernel at once (one io_uring_submit per read:
 * reads are ≥ 1 MiB, the syscall is noise next to them).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "io/io_internal.h"

#ifdef HY_HAVE_LIBURING
#include <liburing.h>

struct uring_slot {
    struct io_read r;
    uint64_t got;
    int next_free;
};

struct io_ur {
    struct io_uring ring;
    struct uring_slot *slots;
    int free_head;
};

bool io_uring_built(void) { return true; }

static void ur_push(struct io *io, struct uring_slot *s)
{
    struct io_ur *u = io->impl;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    /* at most depth reads are in flight and the ring has depth entries */
    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    io_uring_prep_read(sqe, io->fd, (uint8_t *)s->r.buf + s->got, (unsigned)(s->r.len - s->got),
                       s->r.off + s->got);
    io_uring_sqe_set_data(sqe, s);
    io_uring_submit(&u->ring);
}

static void ur_start(struct io *io, const struct io_read *r)
{
    struct io_ur *u = io->impl;
    int i = u->free_head;
    struct uring_slot *s = &u->slots[i];
    u->free_head = s->next_free;
    s->r = *r;
    s->got = 0;
    ur_push(io, s);
}

static int ur_reap(struct io *io, struct io_done *out, int max, bool block)
{
    struct io_ur *u = io->impl;
    int k = 0;
    while (k < max) {
        struct io_uring_cqe *cqe = NULL;
        int e;
        if (k == 0 && block)
            e = io_uring_wait_cqe(&u->ring, &cqe);
        else
            e = io_uring_peek_cqe(&u->ring, &cqe);
        if (e == -EINTR) continue;
        if (e < 0 || !cqe) break;
        struct uring_slot *s = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        if (res > 0) {
            s->got += (uint64_t)res;
            if (s->got < s->r.need && s->got % io->align == 0) {
                ur_push(io, s); /* a split read: continue it */
                continue;
            }
        }
        out[k].r = s->r;
        out[k].res = res < 0 ? res : (int64_t)s->got;
        k++;
        s->next_free = u->free_head;
        u->free_head = (int)(s - u->slots);
    }
    return k;
}

static void ur_destroy(struct io *io)
{
    struct io_ur *u = io->impl;
    io_uring_queue_exit(&u->ring);
    free(u->slots);
    free(u);
}

static const struct io_impl_ops ur_ops = {ur_start, ur_reap, ur_destroy};

enum hy_status io_uring_impl_init(struct io *io)
{
    if (io->depth > io->max_queued) io->depth = io->max_queued;
    struct io_ur *u = calloc(1, sizeof *u);
    if (u) u->slots = calloc((size_t)io->depth, sizeof *u->slots);
    if (!u || !u->slots) {
        if (u) free(u->slots);
        free(u);
        return err_set(HY_ERR_OOM, "io: out of memory");
    }
    int e = io_uring_queue_init((unsigned)io->depth, &u->ring, 0);
    if (e < 0) {
        free(u->slots);
        free(u);
        return err_set(HY_ERR_IO, "io_uring is unavailable: %s", strerror(-e));
    }
    for (int i = 0; i < io->depth; i++) u->slots[i].next_free = i + 1 < io->depth ? i + 1 : -1;
    u->free_head = 0;
    io->impl = u;
    io->ops = &ur_ops;
    return HY_OK;
}

#else

bool io_uring_built(void) { return false; }

enum hy_status io_uring_impl_init(struct io *io)
{
    (void)io;
    return err_set(HY_ERR_IO, "io_uring support was not built (liburing missing at build time)");
}

#endif
