/*
 * Storage read measurement: a list of read requests run by a small pool of
 * threads, each issuing one pread at a time, so the pool size is the queue
 * depth the device sees. Used by the hardware profile (on a temporary file)
 * and by `hypura iobench` (on a model file, read-only).
 *
 * Rejected: io_uring (a later issue, in src/io/); libaio (needs O_DIRECT and
 * still blocks on some filesystems). A pread pool works everywhere and is the
 * baseline io_uring will be compared with.
 */
#ifndef HY_HW_HW_STORAGE_H
#define HY_HW_HW_STORAGE_H

#include <stdint.h>

#include "core/base.h"
#include "hw/hw.h"

struct hw_storage_req {
    uint64_t off; /* bytes from the start of the file */
    uint64_t len; /* bytes; with O_DIRECT both are multiples of 4096 */
};

struct hw_storage_result {
    uint64_t bytes;  /* bytes read (a read past EOF counts what it got) */
    uint64_t n_reqs; /* requests completed */
    int64_t us;      /* wall time */
};

/* Reads reqs[0..n) in order with queue_depth threads (each takes the next
 * request), into per-thread buffers aligned to 4096, until every request is
 * done, max_bytes were read or max_us elapsed (0: no limit) — whichever comes
 * first. fd is the caller's (O_DIRECT or not); nothing is written.
 * Errors: HY_ERR_OOM (buffers), HY_ERR_IO naming the offset and errno. */
HY_MUST_CHECK enum hy_status hw_storage_run(int fd, const struct hw_storage_req *reqs, uint64_t n_reqs,
                                            int queue_depth, uint64_t max_bytes, int64_t max_us,
                                            struct hw_storage_result *out);

/* The storage part of the profile: creates a file of file_bytes in dir
 * (unlinked at once, so nothing is left behind), writes random data with
 * O_DIRECT, then measures the grid and the 4 KiB random reads. cell_bytes and
 * cell_us bound each cell. progress (may be NULL) is called once per cell
 * with done counting from done0 of total. Errors: as hw_measure. */
HY_MUST_CHECK enum hy_status hw_storage_measure(const char *dir, uint64_t file_bytes, uint64_t cell_bytes,
                                                int64_t cell_us, hw_progress_fn progress, void *user,
                                                int done0, int total, struct hw_storage *out);

#endif
