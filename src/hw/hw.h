/*
 * Hardware profile: what this machine offers a model larger than its memory.
 * The placement planner (src/plan/) reads it; `hypura profile` measures it
 * once and caches it as JSON.
 *
 * What is measured, and how (each measurement has a fixed small byte and
 * time budget, so a whole profile takes well under a minute):
 *   - CPU model (/proc/cpuinfo), physical cores (affinity mask + sysfs
 *     topology), SIMD level (quant_isa_detect).
 *   - RAM total and available (/proc/meminfo) and the cgroup memory limit
 *     and usage when one applies (v1 memory controller or v2 memory.max of
 *     this process's cgroup and its ancestors, smallest wins).
 *   - GPUs (name, total and free memory) when built with CUDA, else none.
 *   - Storage holding a directory (hw_storage.c): O_DIRECT read bandwidth
 *     over request sizes x queue depths on a temporary file created there and
 *     unlinked at once, plus 4 KiB random reads at queue depth 1. Queue depth
 *     is a pool of threads each issuing one pread at a time. Never through
 *     the page cache.
 *   - RAM read bandwidth with 1 thread and with every CPU of the affinity mask.
 *   - CPU matrix-vector throughput per weight type (the CPU backend's
 *     backend_matmul, one token, all physical cores) in bytes of weights/s.
 *
 * Not measured here: write bandwidth (hypura only reads weights), io_uring
 * (a later issue; the pool of preads is the portable baseline), PCIe
 * host-to-device bandwidth (later, with the CUDA tiers).
 *
 * Units: every bandwidth is bytes per second (double), sizes are bytes. A
 * value of 0 means "not measured" (e.g. storage skipped, no CUDA).
 */
#ifndef HY_HW_HW_H
#define HY_HW_HW_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"
#include "quant/quant.h"

/* Version of the JSON layout; a cache file with another version is stale. */
#define HW_PROFILE_VERSION 1

#define HW_MAX_GPUS 16
#define HW_N_REQ_SIZES 5
#define HW_N_QDS 5

/* The storage grid: request sizes (bytes) and queue depths measured. */
extern const uint32_t hw_req_sizes[HW_N_REQ_SIZES]; /* 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB */
extern const int hw_queue_depths[HW_N_QDS];         /* 1, 4, 8, 16, 32 */

struct hw_gpu {
    char name[256];
    uint64_t total_bytes;
    uint64_t free_bytes; /* at measurement time */
    int cc_major, cc_minor;
};

struct hw_storage {
    char dir[1024];              /* the directory measured (as given) */
    uint64_t file_bytes;         /* size of the temporary test file */
    /* O_DIRECT sequential read bandwidth, [request size index][queue depth
     * index] of hw_req_sizes x hw_queue_depths; 0 = not measured */
    double read_bytes_per_s[HW_N_REQ_SIZES][HW_N_QDS];
    /* best cell of the grid */
    uint32_t best_req_bytes;
    int best_queue_depth;
    double best_read_bytes_per_s;
    /* 4 KiB O_DIRECT reads at random aligned offsets, queue depth 1 */
    double rand4k_iops;
    double rand4k_latency_us; /* mean */
};

struct hw_matvec {
    uint32_t type;      /* enum hy_type */
    double bytes_per_s; /* weight bytes consumed per second, one token */
};

struct hw_profile {
    int version;             /* HW_PROFILE_VERSION */
    int64_t created_unix;    /* seconds since the epoch, when measured */

    char cpu_model[256];     /* "unknown" when not found */
    int physical_cores;      /* >= 1 */
    int logical_cpus;        /* CPUs in the affinity mask, >= 1 */
    char simd[32];           /* quant_isa_name(quant_isa_detect()) */

    uint64_t ram_total_bytes;     /* MemTotal */
    uint64_t ram_available_bytes; /* MemAvailable */
    /* cgroup memory limit: cgroup_version is 0 when no limit applies (then
     * both fields are 0), else 1 or 2 */
    int cgroup_version;
    uint64_t cgroup_limit_bytes;
    uint64_t cgroup_usage_bytes;

    int n_gpu;
    struct hw_gpu gpus[HW_MAX_GPUS];

    bool has_storage;
    struct hw_storage storage;

    double ram_read_bytes_per_s_1t;  /* one thread */
    double ram_read_bytes_per_s_all; /* ram_threads threads */
    int ram_threads;

    int matvec_threads; /* threads backend_matmul ran on */
    int n_matvec;
    struct hw_matvec matvec[HY_TYPE_COUNT];
};

/* Progress callback: stage is a short human label ("storage", "matvec q4_k"),
 * done/total count the steps of the whole profile. Called from the measuring
 * thread. */
typedef void (*hw_progress_fn)(void *user, const char *stage, int done, int total);

struct hw_measure_opts {
    const char *storage_dir;      /* NULL: storage is not measured */
    uint64_t storage_file_bytes;  /* 0: 256 MiB */
    uint64_t storage_cell_bytes;  /* byte budget per grid cell; 0: 128 MiB */
    int64_t storage_cell_us;      /* time budget per grid cell; 0: 250 ms */
    uint64_t ram_bytes;           /* RAM bandwidth array; 0: hw_probe_bytes(256 MiB) */
    uint64_t matvec_bytes;        /* matrix per type; 0: hw_probe_bytes(64 MiB) */
    bool skip_matvec;
    bool skip_ram_bw;
    hw_progress_fn progress;      /* may be NULL */
    void *progress_user;
};

/* Measures everything opts asks for into *out (zeroed first). The storage
 * measurement creates a file in opts->storage_dir, unlinks it at once and
 * needs storage_file_bytes free there. Errors: HY_ERR_IO (the directory
 * cannot hold the test file or a read failed), HY_ERR_UNSUPPORTED (the
 * filesystem refuses O_DIRECT, e.g. tmpfs), HY_ERR_OOM (a measurement
 * buffer). Not thread-safe with other measurements (they would disturb it). */
HY_MUST_CHECK enum hy_status hw_measure(const struct hw_measure_opts *opts, struct hw_profile *out);

/* The cheap part only (CPU, RAM sizes, cgroup, GPUs): milliseconds. */
void hw_probe_static(struct hw_profile *out);

/* Memory this process can still use: MemAvailable capped by the cgroup
 * limit minus its usage. 0 when unknown. */
uint64_t hw_available_bytes(const struct hw_profile *p);

/* Matrix-vector throughput of type, or 0 when it was not measured. */
double hw_matvec_bytes_per_s(const struct hw_profile *p, uint32_t type);

/* Read bandwidth of memory, bytes/s: the best of 3 sums of a[0..n) split over
 * threads (<= 256), with the independent accumulators and the prefetch the
 * kernels use, so that it is the ceiling they are compared with. */
double hw_ram_read_bw(const float *a, size_t n, int threads);

/* The largest CPU cache of cpu0 in bytes (sysfs: the size files under cpu0/cache; on
 * a server the shared last level, tens to hundreds of MiB); 0 when unknown. */
uint64_t hw_llc_bytes(void);

/* Bytes for a memory-rate probe's buffer: twice the largest cache, so that
 * a probe that reads it repeatedly reads memory rather than a cache holding
 * all of it (servers with a 300 MiB last level exist), at least floor and at
 * most HW_PROBE_MAX_BYTES (floor when the cache is unknown). */
#define HW_PROBE_MAX_BYTES ((uint64_t)1 << 30)
uint64_t hw_probe_bytes(uint64_t floor);

/* ---- parsers over file contents (text), testable without the files ---- */

/* A sysfs cache size ("32K", "32768K", "300M", "1G", or bytes): bytes, 0 when
 * the text is not a size. */
uint64_t hw_parse_cache_size(const char *text);

/* /proc/meminfo: MemTotal and MemAvailable (bytes; 0 when a line is missing). */
void hw_parse_meminfo(const char *text, uint64_t *total_bytes, uint64_t *available_bytes);

/* /proc/self/cgroup: the path of this process's memory cgroup. Returns the
 * version (1: a v1 line whose controller list holds "memory"; 2: the "0::"
 * line, used only when there is no v1 memory line) and copies the path
 * ("/a/b") into path; 0 when neither line is there. */
int hw_parse_proc_cgroup(const char *text, char *path, size_t cap);

/* A limit file's contents (v2 memory.max, v1 memory.limit_in_bytes): true and
 * *bytes when it is a limit; false for "max", for v1's "unlimited" values
 * (>= 2^60), and for text that is not a number. */
bool hw_parse_cgroup_limit(const char *text, uint64_t *bytes);

/* ---- JSON (the cache file) ---- */

/* A new NUL-terminated JSON text (free with free()). */
char *hw_profile_to_json(const struct hw_profile *p);

/* Parses JSON text into *out (zeroed first). Errors: HY_ERR_FORMAT naming
 * what is malformed or missing, HY_ERR_UNSUPPORTED when "version" is not
 * HW_PROFILE_VERSION. */
HY_MUST_CHECK enum hy_status hw_profile_from_json(const char *text, struct hw_profile *out);

/* Writes the JSON to path (through path.tmp and rename). The directory must
 * exist. Errors: HY_ERR_IO naming the path. */
HY_MUST_CHECK enum hy_status hw_profile_save(const struct hw_profile *p, const char *path);

/* Reads path. Errors: HY_ERR_IO (cannot open or read), else
 * as hw_profile_from_json, prefixed with the path. */
HY_MUST_CHECK enum hy_status hw_profile_load(const char *path, struct hw_profile *out);

#endif
