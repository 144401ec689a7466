/*
 * The I/O layer's common part (see io.h): opening the file, the queue of
 * reads not yet started, statistics, fault injection, the memory
 * implementation and the synchronous range reader.
 */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "io/io_internal.h"

#define IO_DEFAULT_ALIGN 4096u

const char *io_kind_name(enum io_kind k)
{
    switch (k) {
    case IO_KIND_AUTO: return "auto";
    case IO_KIND_URING: return "uring";
    case IO_KIND_PREAD: return "pread";
    case IO_KIND_MEM: return "mem";
    }
    return "?";
}

bool io_kind_parse(const char *s, enum io_kind *out)
{
    static const enum io_kind kinds[] = {IO_KIND_AUTO, IO_KIND_URING, IO_KIND_PREAD};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(s, io_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return true;
        }
    }
    return false;
}

void io_cover(uint32_t align, uint64_t off, uint64_t len, uint64_t *a_off, uint64_t *a_len)
{
    uint64_t lo = off / align * align;
    uint64_t hi = (off + len + align - 1) / align * align;
    *a_off = lo;
    *a_len = hi - lo;
}

static enum hy_status io_alloc(const char *name, int max_queued, struct io **out)
{
    *out = NULL;
    struct io *io = calloc(1, sizeof *io);
    if (!io) return err_set(HY_ERR_OOM, "io: out of memory");
    io->fd = -1;
    io->max_queued = max_queued > 0 ? max_queued : 1024;
    io->path = strdup(name);
    io->fifo = calloc((size_t)io->max_queued, sizeof *io->fifo);
    if (!io->path || !io->fifo) {
        free(io->path);
        free(io->fifo);
        free(io);
        return err_set(HY_ERR_OOM, "io: out of memory");
    }
    *out = io;
    return HY_OK;
}

static void io_free(struct io *io)
{
    if (io->fd >= 0) close(io->fd);
    free(io->fifo);
    free(io->path);
    free(io);
}

/* The direct-I/O alignment the file system asks for (statx STATX_DIOALIGN,
 * Linux 6.1+), at least IO_DEFAULT_ALIGN: a 4 KiB multiple is right for
 * every device with 512-byte or 4 KiB logical blocks. */
static uint32_t dio_align(int fd)
{
    uint32_t a = IO_DEFAULT_ALIGN;
#if defined(STATX_DIOALIGN)
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        if (sx.stx_dio_offset_align > a) a = sx.stx_dio_offset_align;
        if (sx.stx_dio_mem_align > a) a = sx.stx_dio_mem_align;
    }
#else
    (void)fd;
#endif
    return a;
}

enum hy_status io_open(const char *path, const struct io_config *cfg, struct io **out)
{
    *out = NULL;
    struct io_config c = cfg ? *cfg : (struct io_config){0};
    if (c.kind == IO_KIND_MEM)
        return err_set(HY_ERR_INVALID_ARG, "io: the memory implementation opens with io_open_mem");
    struct io *io = NULL;
    enum hy_status st = io_alloc(path, c.max_queued, &io);
    if (st) return st;
    io->depth = c.depth > 0 ? c.depth : IO_DEFAULT_DEPTH;
    io->align = IO_DEFAULT_ALIGN;
    if (!c.no_direct) {
        io->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (io->fd >= 0) {
            io->direct = true;
        } else if (errno == EINVAL) {
            LOG_W("%s: the file system does not support O_DIRECT; reading through the page cache",
                  path);
        }
    }
    if (io->fd < 0) io->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (io->fd < 0) {
        int e = errno;
        io_free(io);
        return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    if (io->direct) io->align = dio_align(io->fd);
    if (c.kind == IO_KIND_URING || c.kind == IO_KIND_AUTO) {
        st = io_uring_impl_init(io);
        if (st == HY_OK) {
            io->kind = IO_KIND_URING;
        } else if (c.kind == IO_KIND_URING) {
            io_free(io);
            return err_prefix(st, "%s: --io uring: ", path);
        } else {
            LOG_D("%s: io_uring unavailable (%s); using the pread thread pool", path, err_msg());
            err_clear();
        }
    }
    if (!io->ops) {
        if ((st = io_pread_init(io))) {
            io_free(io);
            return st;
        }
        io->kind = IO_KIND_PREAD;
    }
    *out = io;
    return HY_OK;
}

/* Memory implementation: a read completes at once, into a ring of
 * completions as large as the queue. */
struct io_mem {
    const uint8_t *data;
    uint64_t size;
    struct io_done *done; /* ring of max_queued */
    int head, n;
};

static void mem_start(struct io *io, const struct io_read *r)
{
    struct io_mem *m = io->impl;
    struct io_done d = {.r = *r, .res = 0};
    if (r->off < m->size) {
        uint64_t n = r->len;
        if (n > m->size - r->off) n = m->size - r->off;
        memcpy(r->buf, m->data + r->off, (size_t)n);
        d.res = (int64_t)n;
    }
    m->done[(m->head + m->n) % io->max_queued] = d;
    m->n++;
}

static int mem_reap(struct io *io, struct io_done *out, int max, bool block)
{
    (void)block;
    struct io_mem *m = io->impl;
    int k = 0;
    while (k < max && m->n > 0) {
        out[k++] = m->done[m->head];
        m->head = (m->head + 1) % io->max_queued;
        m->n--;
    }
    return k;
}

static void mem_destroy(struct io *io)
{
    struct io_mem *m = io->impl;
    free(m->done);
    free(m);
}

static const struct io_impl_ops mem_ops = {mem_start, mem_reap, mem_destroy};

enum hy_status io_open_mem(const void *data, uint64_t size, const char *name, uint32_t align,
                           int max_queued, struct io **out)
{
    *out = NULL;
    struct io *io = NULL;
    enum hy_status st = io_alloc(name, max_queued, &io);
    if (st) return st;
    struct io_mem *m = calloc(1, sizeof *m);
    if (m) m->done = calloc((size_t)io->max_queued, sizeof *m->done);
    if (!m || !m->done) {
        free(m);
        io_free(io);
        return err_set(HY_ERR_OOM, "io: out of memory");
    }
    m->data = data;
    m->size = size;
    io->ops = &mem_ops;
    io->impl = m;
    io->kind = IO_KIND_MEM;
    io->align = align ? align : IO_DEFAULT_ALIGN;
    io->depth = io->max_queued;
    *out = io;
    return HY_OK;
}

enum hy_status io_open_fault(struct io *inner, uint64_t fail_at, uint64_t short_at, struct io **out)
{
    inner->fail_at = fail_at;
    inner->short_at = short_at;
    *out = inner;
    return HY_OK;
}

/* Starts queued reads while the depth allows. */
static void pump(struct io *io)
{
    while (io->fifo_n > 0 && io->in_flight < io->depth) {
        struct io_read r = io->fifo[io->fifo_head];
        io->fifo_head = (io->fifo_head + 1) % io->max_queued;
        io->fifo_n--;
        io->in_flight++;
        io->ops->start(io, &r);
    }
}

enum hy_status io_submit(struct io *io, const struct io_read *reads, int n)
{
    if (io->fifo_n + io->in_flight + n > io->max_queued)
        return err_set(HY_ERR_INVALID_ARG,
                       "%s: %d reads queued on top of %d outstanding exceed the queue of %d",
                       io->path, n, io->fifo_n + io->in_flight, io->max_queued);
    for (int i = 0; i < n; i++) {
        const struct io_read *r = &reads[i];
        if (r->off % io->align || r->len % io->align || (uintptr_t)r->buf % io->align ||
            r->need > r->len || r->len == 0)
            return err_set(HY_ERR_INVALID_ARG,
                           "%s: read of %" PRIu64 " bytes (%" PRIu64
                           " needed) at offset %" PRIu64 " is not aligned to %u bytes",
                           io->path, r->len, r->need, r->off, io->align);
    }
    for (int i = 0; i < n; i++) {
        io->fifo[(io->fifo_head + io->fifo_n) % io->max_queued] = reads[i];
        io->fifo_n++;
    }
    pump(io);
    return HY_OK;
}

int io_wait(struct io *io, struct io_done *out, int max, bool block)
{
    if (max <= 0) return 0;
    int k = io->ops->reap(io, out, max, block && io->in_flight > 0);
    io->in_flight -= k;
    for (int i = 0; i < k; i++) {
        struct io_done *d = &out[i];
        io->n_reaped++;
        if (io->fail_at && io->n_reaped == io->fail_at) d->res = -EIO;
        if (io->short_at && io->n_reaped == io->short_at && d->res > 0) d->res /= 2;
        io->st.n_reads++;
        if (d->res >= 0 && (uint64_t)d->res >= d->r.need)
            io->st.bytes_read += (uint64_t)d->res;
        else
            io->st.n_errors++;
    }
    pump(io);
    return k;
}

enum hy_status io_check(const struct io *io, const struct io_done *d)
{
    if (d->res < 0)
        return err_set(HY_ERR_IO, "%s: read of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                       io->path, d->r.len, d->r.off, strerror((int)-d->res));
    if ((uint64_t)d->res < d->r.need)
        return err_set(HY_ERR_IO,
                       "%s: short read of %" PRIu64 " bytes at offset %" PRIu64 ": got %" PRId64
                       " of the %" PRIu64 " bytes the model needs (was the file truncated?)",
                       io->path, d->r.len, d->r.off, d->res, d->r.need);
    return HY_OK;
}

int io_pending(const struct io *io) { return io->fifo_n + io->in_flight; }
uint32_t io_align(const struct io *io) { return io->align; }
const char *io_path(const struct io *io) { return io->path; }
enum io_kind io_kind_of(const struct io *io) { return io->kind; }
bool io_direct(const struct io *io) { return io->direct; }
struct io_stats io_stats(const struct io *io) { return io->st; }

void io_close(struct io *io)
{
    if (!io) return;
    struct io_done d[16];
    while (io_pending(io) > 0) io_wait(io, d, 16, true);
    if (io->ops) io->ops->destroy(io);
    io_free(io);
}

enum hy_status io_submit_range(struct io *io, uint64_t a_off, uint64_t a_len, uint64_t need,
                               void *buf, uint64_t tag, int *n_queued)
{
    *n_queued = 0;
    for (uint64_t o = 0; o < a_len; o += IO_MAX_READ_BYTES) {
        const uint64_t len = a_len - o < IO_MAX_READ_BYTES ? a_len - o : IO_MAX_READ_BYTES;
        const uint64_t r_need = need <= o ? 0 : (need - o < len ? need - o : len);
        const struct io_read r = {.off = a_off + o, .len = len, .need = r_need,
                                  .buf = (uint8_t *)buf + o, .tag = tag};
        enum hy_status st = io_submit(io, &r, 1);
        if (st) return st;
        (*n_queued)++;
    }
    return HY_OK;
}

enum hy_status io_read_range(struct io *io, uint64_t off, uint64_t need, void *buf,
                             void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                             uint64_t *data_at)
{
    uint64_t a_off, a_len;
    io_cover(io->align, off, need, &a_off, &a_len);
    *data_at = off - a_off;
    const uint64_t end_need = off + need; /* bytes before this must arrive */
    uint64_t next = 0, done = 0;
    enum hy_status st = HY_OK;
    struct io_done d[16];
    const int in_flight_max = io->depth < io->max_queued ? io->depth : io->max_queued;
    int mine = 0;
    while (done < a_len) {
        while (st == HY_OK && next < a_len && mine < in_flight_max &&
               io_pending(io) < io->max_queued) {
            uint64_t len = a_len - next;
            if (len > IO_MAX_READ_BYTES) len = IO_MAX_READ_BYTES;
            uint64_t r_off = a_off + next;
            uint64_t r_need = r_off + len <= end_need ? len : (end_need > r_off ? end_need - r_off : 0);
            struct io_read r = {.off = r_off, .len = len, .need = r_need,
                                .buf = (uint8_t *)buf + next, .tag = r_off};
            if ((st = io_submit(io, &r, 1))) break;
            next += len;
            mine++;
        }
        if (mine == 0) break;
        int k = io_wait(io, d, 16, true);
        for (int i = 0; i < k; i++) {
            mine--;
            done += d[i].r.len;
            if (st == HY_OK) st = io_check(io, &d[i]);
        }
        if (st == HY_OK && progress) progress(user, done < a_len ? done : a_len, a_len);
    }
    return st;
}
