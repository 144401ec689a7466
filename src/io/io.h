/*
 * The I/O layer: asynchronous reads of a model file into caller buffers
 * (DESIGN.md §4). The weight store is its only user on the hot path.
 *
 * One small interface, several implementations:
 *   - io_uring (liburing) on a file opened with O_DIRECT: the default;
 *   - a pread thread pool: used when io_uring is unavailable (seccomp
 *     sandboxes, kernels without it, io_uring_disabled) or asked for with
 *     IO_KIND_PREAD (`--io pread`);
 *   - memory: reads from a byte array, for tests;
 *   - fault injection: wraps any of them and fails the N-th read with EIO or
 *     cuts it short, for tests.
 *
 * Definitions. A read is [off, off + len) of the file into buf. off, len and
 * buf are multiples of io_align(io) (the device's direct-I/O alignment; GGUF
 * only promises 32-byte alignment of tensors, so callers read the covering
 * aligned range and point inside it). `need` ≤ len is how many bytes must
 * arrive: the covering range of a tensor at the end of the file may reach
 * past the end, and a read that stops at end of file after `need` bytes is
 * complete, not short. Fewer than `need` bytes is a short read: an error
 * naming the file, the offset and the length, never a hang and never a retry
 * loop on a file that is shorter than its header says.
 *
 * Life of a read: io_submit queues it (any number may be queued; at most
 * depth are in flight at the kernel or the pool, the rest wait in a FIFO
 * allocated at open: the per-token path allocates nothing); io_wait returns
 * finished reads, each exactly once, in completion order. Every queued read
 * completes (with success or an error) before io_close returns, so a buffer
 * is never written after its owner stopped waiting for it.
 *
 * Threads: one thread submits and waits (the compute thread). The pread pool
 * reads on its own threads; completions cross over under a mutex.
 *
 * Never writes to the file: it is opened O_RDONLY.
 *
 * Rejected: mmap with MADV_WILLNEED (the page cache, not the plan, would
 * decide what stays in memory, and its pages count against a cgroup limit);
 * buffered reads (same page-cache problem, and a copy).
 */
#ifndef HY_IO_IO_H
#define HY_IO_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"

enum io_kind {
    IO_KIND_AUTO = 0, /* io_uring, else the pread pool */
    IO_KIND_URING,
    IO_KIND_PREAD,
    IO_KIND_MEM, /* io_open_mem only */
};

/* "auto", "uring", "pread", "mem"; io_kind_parse returns false on other text. */
const char *io_kind_name(enum io_kind k);
bool io_kind_parse(const char *s, enum io_kind *out);

struct io_read {
    uint64_t off;  /* file offset, aligned */
    uint64_t len;  /* bytes to read, aligned */
    uint64_t need; /* bytes that must arrive, ≤ len */
    void *buf;     /* aligned, len bytes */
    uint64_t tag;  /* the caller's; returned with the completion */
};

struct io_done {
    struct io_read r;
    int64_t res; /* bytes read (≥ r.need on success), or -errno */
};

struct io_stats {
    uint64_t n_reads;    /* reads completed */
    uint64_t bytes_read; /* bytes they brought */
    uint64_t n_errors;
};

struct io;

struct io_config {
    enum io_kind kind;
    int depth;           /* reads in flight; 0: IO_DEFAULT_DEPTH */
    int max_queued;      /* reads queued and in flight at once; 0: 1024 */
    bool no_direct;      /* buffered reads (tests on file systems without O_DIRECT) */
};

#define IO_DEFAULT_DEPTH 16
#define IO_MAX_READ_BYTES (8u << 20) /* callers split larger ranges */

/* Opens path read-only with O_DIRECT (buffered, with a warning, when the file
 * system refuses O_DIRECT) through the configured implementation. Errors:
 * HY_ERR_IO (open, naming the path and reason; io_uring asked for explicitly
 * and unavailable), HY_ERR_OOM. */
HY_MUST_CHECK enum hy_status io_open(const char *path, const struct io_config *cfg, struct io **out);

/* Reads from data[0..size) instead of a file; completions are immediate.
 * The name appears in messages. */
HY_MUST_CHECK enum hy_status io_open_mem(const void *data, uint64_t size, const char *name,
                                         uint32_t align, int max_queued, struct io **out);

/* Wraps inner (taking ownership): the fail_at-th read (1-based; 0: never)
 * completes with -EIO, the short_at-th returns half of its bytes. */
HY_MUST_CHECK enum hy_status io_open_fault(struct io *inner, uint64_t fail_at, uint64_t short_at,
                                           struct io **out);

/* Waits for every queued read, then closes. NULL is a no-op. */
void io_close(struct io *io);

/* Queues reads. Errors: HY_ERR_INVALID_ARG (misaligned, need > len, more than
 * max_queued outstanding). */
HY_MUST_CHECK enum hy_status io_submit(struct io *io, const struct io_read *reads, int n);

/* Up to max finished reads into out; blocks until at least one is finished
 * when block is true and reads are outstanding. Returns how many. A read's
 * failure is reported in its io_done (see io_check), not here. */
int io_wait(struct io *io, struct io_done *out, int max, bool block);

/* HY_OK for a successful completion; otherwise HY_ERR_IO with a message
 * naming the file, offset, length and reason (or the short count). */
HY_MUST_CHECK enum hy_status io_check(const struct io *io, const struct io_done *d);

/* Reads outstanding (queued or in flight). */
int io_pending(const struct io *io);

uint32_t io_align(const struct io *io);
const char *io_path(const struct io *io);
enum io_kind io_kind_of(const struct io *io);
/* True when the file is read with O_DIRECT. */
bool io_direct(const struct io *io);
struct io_stats io_stats(const struct io *io);

/* Queues the reads of the aligned range [a_off, a_off + a_len) into buf
 * (aligned), in pieces of at most IO_MAX_READ_BYTES, all with tag; the first
 * `need` bytes of the range must arrive (the rest may lie past the end of
 * the file). *n_queued gets how many pieces were queued, also on error.
 * Errors: those of io_submit. */
HY_MUST_CHECK enum hy_status io_submit_range(struct io *io, uint64_t a_off, uint64_t a_len,
                                             uint64_t need, void *buf, uint64_t tag,
                                             int *n_queued);

/* Synchronous helper: reads [off, off + need) (aligned covering range) into
 * buf (aligned, at least the covering length) in IO_MAX_READ_BYTES pieces
 * with the full queue depth; for loading resident tensors. *data_at is set to
 * the byte of buf where `off` landed. progress (may be NULL) gets done/total. */
HY_MUST_CHECK enum hy_status io_read_range(struct io *io, uint64_t off, uint64_t need, void *buf,
                                           void (*progress)(void *user, uint64_t done, uint64_t total),
                                           void *user, uint64_t *data_at);

/* The aligned covering range [*a_off, *a_off + *a_len) of [off, off + len). */
void io_cover(uint32_t align, uint64_t off, uint64_t len, uint64_t *a_off, uint64_t *a_len);

#endif
