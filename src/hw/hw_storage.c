/*
 * Storage read measurement (see hw_storage.h). The test file is written
 * once with O_DIRECT from random bytes (so neither compression nor zero-page
 * tricks flatter the device) and read with O_DIRECT only: nothing goes
 * through the page cache, so what is measured is the device (and whatever
 * cache the host of a VM keeps, which we cannot see past).
 *
 * Sequential cells start at a different offset each (rotating through the
 * file) so that one cell does not re-read what a device-side cache just
 * kept from the previous one.
 */
#include "hw/hw_storage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/timing.h"

#define ALIGN 4096u
#define MAX_QD 64

const uint32_t hw_req_sizes[HW_N_REQ_SIZES] = {64u << 10, 256u << 10, 1u << 20, 4u << 20, 16u << 20};
const int hw_queue_depths[HW_N_QDS] = {1, 4, 8, 16, 32};

struct run_shared {
    int fd;
    const struct hw_storage_req *reqs;
    uint64_t n_reqs;
    uint64_t max_bytes;
    int64_t deadline_us; /* 0: none */
    uint64_t buf_bytes;
    atomic_uint_fast64_t next;
    atomic_uint_fast64_t bytes;
    atomic_uint_fast64_t done;
    atomic_int failed;
    uint64_t fail_off; /* written by the one thread that set failed */
    int fail_errno;
};

static void *run_thread(void *arg)
{
    struct run_shared *s = arg;
    void *buf = NULL;
    if (posix_memalign(&buf, ALIGN, s->buf_bytes) != 0) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&s->failed, &expected, 2)) s->fail_errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        if (atomic_load(&s->failed)) break;
        if (s->max_bytes && atomic_load(&s->bytes) >= s->max_bytes) break;
        /* the time limit ends a run only once a request has completed: a loaded machine can pass
           the deadline before a thread starts, and a cell with no read measured nothing */
        if (s->deadline_us && atomic_load(&s->done) > 0 && timing_now_us() >= s->deadline_us) break;
        const uint64_t i = atomic_fetch_add(&s->next, 1);
        if (i >= s->n_reqs) break;
        const struct hw_storage_req *r = &s->reqs[i];
        uint64_t got = 0;
        while (got < r->len) {
            ssize_t n = pread(s->fd, (char *)buf + got, (size_t)(r->len - got), (off_t)(r->off + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                int expected = 0;
                if (atomic_compare_exchange_strong(&s->failed, &expected, 1)) {
                    s->fail_off = r->off + got;
                    s->fail_errno = errno;
                }
                free(buf);
                return NULL;
            }
            if (n == 0) break; /* end of file */
            got += (uint64_t)n;
        }
        atomic_fetch_add(&s->bytes, got);
        atomic_fetch_add(&s->done, 1);
    }
    free(buf);
    return NULL;
}

enum hy_status hw_storage_run(int fd, const struct hw_storage_req *reqs, uint64_t n_reqs, int queue_depth,
                              uint64_t max_bytes, int64_t max_us, struct hw_storage_result *out)
{
    memset(out, 0, sizeof *out);
    if (queue_depth < 1 || queue_depth > MAX_QD)
        return err_set(HY_ERR_INVALID_ARG, "queue depth %d is outside [1, %d]", queue_depth, MAX_QD);
    uint64_t buf_bytes = ALIGN;
    for (uint64_t i = 0; i < n_reqs; i++)
        if (reqs[i].len > buf_bytes) buf_bytes = reqs[i].len;
    buf_bytes = base_align_up(buf_bytes, ALIGN);

    struct run_shared s = {.fd = fd, .reqs = reqs, .n_reqs = n_reqs, .max_bytes = max_bytes, .buf_bytes = buf_bytes};
    atomic_init(&s.next, 0);
    atomic_init(&s.bytes, 0);
    atomic_init(&s.done, 0);
    atomic_init(&s.failed, 0);
    const int64_t t0 = timing_now_us();
    s.deadline_us = max_us > 0 ? t0 + max_us : 0;
    pthread_t th[MAX_QD];
    int n_started = 0;
    for (int t = 0; t < queue_depth; t++) {
        if (pthread_create(&th[t], NULL, run_thread, &s) != 0) break;
        n_started++;
    }
    if (n_started == 0) run_thread(&s); /* no threads at all: run in place */
    for (int t = 0; t < n_started; t++) pthread_join(th[t], NULL);
    out->us = timing_now_us() - t0;
    out->bytes = atomic_load(&s.bytes);
    out->n_reqs = atomic_load(&s.done);
    const int failed = atomic_load(&s.failed);
    if (failed == 2)
        return err_set(HY_ERR_OOM, "read buffers: cannot allocate %llu bytes per thread",
                       (unsigned long long)buf_bytes);
    if (failed)
        return err_set(HY_ERR_IO, "read at offset %llu failed: %s", (unsigned long long)s.fail_off,
                       strerror(s.fail_errno));
    return HY_OK;
}

static double rate(const struct hw_storage_result *r)
{
    return r->us > 0 ? (double)r->bytes * 1e6 / (double)r->us : 0;
}

/* Writes file_bytes of random data with O_DIRECT in 4 MiB chunks. */
static enum hy_status write_test_file(int fd, uint64_t file_bytes, const char *path)
{
    const size_t chunk = 4u << 20;
    void *buf = NULL;
    if (posix_memalign(&buf, ALIGN, chunk) != 0)
        return err_set(HY_ERR_OOM, "storage test: cannot allocate a %zu-byte write buffer", chunk);
    struct rng r;
    rng_init(&r, 0x5eed);
    uint64_t *w = buf;
    for (size_t i = 0; i < chunk / 8; i++) w[i] = rng_u64(&r);
    for (uint64_t off = 0; off < file_bytes; off += chunk) {
        w[0] = off; /* chunks differ, so no dedup either */
        const size_t n = (size_t)HY_MIN((uint64_t)chunk, file_bytes - off);
        size_t put = 0;
        while (put < n) {
            ssize_t k = pwrite(fd, (char *)buf + put, n - put, (off_t)(off + put));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                const int e = k < 0 ? errno : ENOSPC;
                free(buf);
                return err_set(HY_ERR_IO, "%s: writing the %llu-byte test file failed at %llu: %s", path,
                               (unsigned long long)file_bytes, (unsigned long long)(off + put), strerror(e));
            }
            put += (size_t)k;
        }
    }
    free(buf);
    if (fsync(fd) != 0) return err_set(HY_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    return HY_OK;
}

enum hy_status hw_storage_measure(const char *dir, uint64_t file_bytes, uint64_t cell_bytes, int64_t cell_us,
                                  hw_progress_fn progress, void *user, int done0, int total,
                                  struct hw_storage *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->dir, sizeof out->dir, "%s", dir);
    file_bytes = base_align_up(HY_MAX(file_bytes, (uint64_t)hw_req_sizes[HW_N_REQ_SIZES - 1]), ALIGN);
    out->file_bytes = file_bytes;

    char path[1200];
    snprintf(path, sizeof path, "%s/.hypura-iotest-%ld", dir, (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EINVAL) {
        /* created but O_DIRECT refused (tmpfs and some FUSE filesystems) */
        unlink(path);
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: the filesystem does not support O_DIRECT, so its storage cannot be measured "
                       "without the page cache\nhint: measure a directory on the disk the models live on",
                       dir);
    }
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot create a test file: %s", path, strerror(errno));
    unlink(path); /* gone when fd closes, whatever happens */

    enum hy_status st = write_test_file(fd, file_bytes, path);
    if (st) {
        close(fd);
        return st;
    }

    /* enough requests to cover cell_bytes, wrapping around the file */
    struct hw_storage_req *reqs = NULL;
    uint64_t rot = 0;
    int step = done0;
    for (int si = 0; si < HW_N_REQ_SIZES && !st; si++) {
        const uint64_t len = hw_req_sizes[si];
        const uint64_t per_file = file_bytes / len;
        const uint64_t n = HY_MAX((uint64_t)1, (cell_bytes + len - 1) / len);
        free(reqs);
        reqs = malloc(n * sizeof *reqs);
        if (!reqs) {
            st = err_set(HY_ERR_OOM, "storage test: request list");
            break;
        }
        for (int qi = 0; qi < HW_N_QDS && !st; qi++) {
            for (uint64_t i = 0; i < n; i++) reqs[i] = (struct hw_storage_req){((rot + i) % per_file) * len, len};
            rot += n;
            struct hw_storage_result r;
            st = hw_storage_run(fd, reqs, n, hw_queue_depths[qi], cell_bytes, cell_us, &r);
            if (st) break;
            const double bps = rate(&r);
            out->read_bytes_per_s[si][qi] = bps;
            if (bps > out->best_read_bytes_per_s) {
                out->best_read_bytes_per_s = bps;
                out->best_req_bytes = (uint32_t)len;
                out->best_queue_depth = hw_queue_depths[qi];
            }
            if (progress) progress(user, "storage", ++step, total);
        }
    }
    free(reqs);
    reqs = NULL;

    if (!st) {
        /* 4 KiB random reads, queue depth 1: latency-bound, so a time budget */
        const uint64_t n = 4096;
        reqs = malloc(n * sizeof *reqs);
        if (!reqs) st = err_set(HY_ERR_OOM, "storage test: request list");
        if (reqs) {
            struct rng r;
            rng_init(&r, 4096);
            for (uint64_t i = 0; i < n; i++) reqs[i] = (struct hw_storage_req){rng_below(&r, file_bytes / ALIGN) * ALIGN, ALIGN};
            struct hw_storage_result res;
            st = hw_storage_run(fd, reqs, n, 1, 0, cell_us, &res);
            if (!st && res.n_reqs > 0 && res.us > 0) {
                out->rand4k_iops = (double)res.n_reqs * 1e6 / (double)res.us;
                out->rand4k_latency_us = (double)res.us / (double)res.n_reqs;
            }
            if (progress) progress(user, "storage 4k random", ++step, total);
        }
        free(reqs);
    }
    close(fd);
    if (st) return err_prefix(st, "%s: ", dir);
    return HY_OK;
}
