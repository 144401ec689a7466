/*
 * Hardware profile: the static probe (CPU, memory, cgroup, GPUs), the RAM
 * bandwidth and matrix-vector measurements, and hw_measure tying them to the
 * storage measurement (hw_storage.c). JSON is in hw_profile.c.
 *
 * The parsers take file contents, not paths, so tests can feed them samples
 * of every layout (cgroup v1, v2, hybrid, unlimited).
 */
#include "hw/hw.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "core/err.h"
#include "core/rng.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "hw/hw_storage.h"
#ifdef HY_HAVE_CUDA
#include "backend/cuda/cuda_probe.h"
#endif

#define MAX_RAM_THREADS 256
#define MATVEC_COLS 4096

/* ---- parsers ---- */

void hw_parse_meminfo(const char *text, uint64_t *total_bytes, uint64_t *available_bytes)
{
    *total_bytes = *available_bytes = 0;
    for (const char *line = text; line && *line;) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) *total_bytes = (uint64_t)kib * 1024;
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) *available_bytes = (uint64_t)kib * 1024;
        line = strchr(line, '\n');
        if (line) line++;
    }
}

/* Copies [s, e) into path (at most cap-1 bytes). */
static void copy_span(const char *s, const char *e, char *path, size_t cap)
{
    size_t n = (size_t)(e - s);
    if (n >= cap) n = cap - 1;
    memcpy(path, s, n);
    path[n] = '\0';
}

int hw_parse_proc_cgroup(const char *text, char *path, size_t cap)
{
    /* lines "ID:controllers:path"; v2 is "0::path" */
    int version = 0;
    if (cap) path[0] = '\0';
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        const char *c1 = memchr(line, ':', (size_t)(end - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        if (c2) {
            const char *ctl = c1 + 1;
            bool has_memory = false;
            for (const char *p = ctl; p < c2;) {
                const char *comma = memchr(p, ',', (size_t)(c2 - p));
                const char *tok_end = comma ? comma : c2;
                if (tok_end - p == 6 && !memcmp(p, "memory", 6)) has_memory = true;
                p = comma ? comma + 1 : c2;
            }
            if (has_memory) {
                copy_span(c2 + 1, end, path, cap);
                return 1;
            }
            if (c2 == ctl && c1 - line == 1 && line[0] == '0' && version == 0) {
                copy_span(c2 + 1, end, path, cap);
                version = 2;
            }
        }
        line = *end ? end + 1 : NULL;
    }
    return version;
}

bool hw_parse_cgroup_limit(const char *text, uint64_t *bytes)
{
    while (*text == ' ' || *text == '\t') text++;
    if (*text < '0' || *text > '9') return false; /* "max", empty, junk */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno) return false;
    while (*end == ' ' || *end == '\n' || *end == '\t') end++;
    if (*end) return false;
    /* v1 writes "unlimited" as LONG_MAX rounded down to a page */
    if (v >= (1ull << 60)) return false;
    *bytes = (uint64_t)v;
    return true;
}

/* Reads a small file into buf (NUL-terminated); false when it cannot. */
static bool read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return true;
}

/* Smallest limit over the cgroup at path and its ancestors, under root with
 * the given file names; false when none has a limit. */
static bool cgroup_walk(const char *root, const char *cg_path, const char *limit_file, const char *usage_file,
                        uint64_t *limit, uint64_t *usage)
{
    char p[1024], f[1400], buf[128];
    snprintf(p, sizeof p, "%s", cg_path);
    bool found = false;
    for (;;) {
        uint64_t lim, use;
        snprintf(f, sizeof f, "%s%s/%s", root, p, limit_file);
        if (read_small(f, buf, sizeof buf) && hw_parse_cgroup_limit(buf, &lim) && (!found || lim < *limit)) {
            found = true;
            *limit = lim;
            *usage = 0;
            snprintf(f, sizeof f, "%s%s/%s", root, p, usage_file);
            if (read_small(f, buf, sizeof buf) && hw_parse_cgroup_limit(buf, &use)) *usage = use;
        }
        char *slash = strrchr(p, '/');
        if (!slash || p[0] == '\0') break;
        *slash = '\0'; /* "/a/b" → "/a" → "" (the root itself) */
    }
    return found;
}

static void probe_cgroup(struct hw_profile *p)
{
    char text[4096], path[1024];
    if (!read_small("/proc/self/cgroup", text, sizeof text)) return;
    const int v = hw_parse_proc_cgroup(text, path, sizeof path);
    uint64_t limit = 0, usage = 0;
    if (!strcmp(path, "/")) path[0] = '\0';
    /* Inside a container the cgroup namespace or the mount often shows the
     * process's own cgroup at the root, so the path may not exist under the
     * mount: the walk up ends at the root, which is then the right one. */
    if (v == 1 && cgroup_walk("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes",
                              &limit, &usage)) {
        p->cgroup_version = 1;
    } else if (v == 2 && (cgroup_walk("/sys/fs/cgroup", path, "memory.max", "memory.current", &limit, &usage) ||
                          cgroup_walk("/sys/fs/cgroup/unified", path, "memory.max", "memory.current", &limit,
                                      &usage))) {
        p->cgroup_version = 2;
    }
    if (p->cgroup_version) {
        p->cgroup_limit_bytes = limit;
        p->cgroup_usage_bytes = usage;
    }
}

static void probe_cpu_model(struct hw_profile *p)
{
    snprintf(p->cpu_model, sizeof p->cpu_model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* x86 "model name", arm64 often only "CPU part"; others "cpu model" */
        if (strncmp(line, "model name", 10) && strncmp(line, "cpu model", 9) && strncmp(line, "Hardware", 8))
            continue;
        const char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(p->cpu_model, sizeof p->cpu_model, "%s", colon);
        p->cpu_model[strcspn(p->cpu_model, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static int64_t read_int_file(const char *path)
{
    char buf[64];
    if (!read_small(path, buf, sizeof buf)) return -1;
    char *end;
    long long v = strtoll(buf, &end, 10);
    return end == buf ? -1 : (int64_t)v;
}

uint64_t hw_parse_cache_size(const char *text)
{
    /* sysfs ends the value with a newline, which sizes_parse does not take */
    char buf[64];
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
    if (n >= sizeof buf) return 0;
    memcpy(buf, text, n);
    buf[n] = '\0';
    uint64_t v = 0;
    if (sizes_parse(buf, &v)) {
        err_clear();
        return 0;
    }
    return v;
}

uint64_t hw_llc_bytes(void)
{
    uint64_t best = 0;
    for (int i = 0; i < 16; i++) {
        char path[96], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!read_small(path, buf, sizeof buf)) continue;
        best = HY_MAX(best, hw_parse_cache_size(buf));
    }
    return best;
}

uint64_t hw_probe_bytes(uint64_t floor)
{
    const uint64_t llc = hw_llc_bytes();
    const uint64_t want = llc > HW_PROBE_MAX_BYTES / 2 ? HW_PROBE_MAX_BYTES : 2 * llc;
    return HY_MAX(floor, want);
}

static void probe_cores(struct hw_profile *p)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p->logical_cpus = p->physical_cores = n > 0 ? (int)n : 1;
        return;
    }
    int64_t seen[CPU_SETSIZE][2]; /* (package, core) pairs seen so far */
    int n_seen = 0, n_cpus = 0;
    bool topo_ok = true;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        n_cpus++;
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        const int64_t pkg = read_int_file(path);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        const int64_t core = read_int_file(path);
        if (pkg < 0 || core < 0) {
            topo_ok = false;
            continue;
        }
        bool dup = false;
        for (int i = 0; i < n_seen && !dup; i++) dup = seen[i][0] == pkg && seen[i][1] == core;
        if (!dup) {
            seen[n_seen][0] = pkg;
            seen[n_seen][1] = core;
            n_seen++;
        }
    }
    p->logical_cpus = n_cpus > 0 ? n_cpus : 1;
    p->physical_cores = topo_ok && n_seen > 0 ? n_seen : p->logical_cpus;
}

void hw_probe_static(struct hw_profile *p)
{
    memset(p, 0, sizeof *p);
    p->version = HW_PROFILE_VERSION;
    p->created_unix = (int64_t)time(NULL);
    probe_cpu_model(p);
    probe_cores(p);
    snprintf(p->simd, sizeof p->simd, "%s", quant_isa_name(quant_isa_detect()));
    char text[8192];
    if (read_small("/proc/meminfo", text, sizeof text))
        hw_parse_meminfo(text, &p->ram_total_bytes, &p->ram_available_bytes);
    probe_cgroup(p);
#ifdef HY_HAVE_CUDA
    struct cuda_probe_device dev[HW_MAX_GPUS];
    const int n = cuda_probe_devices(dev, HW_MAX_GPUS);
    p->n_gpu = HY_MIN(n, HW_MAX_GPUS);
    for (int i = 0; i < p->n_gpu; i++) {
        _Static_assert(sizeof p->gpus[i].name == sizeof dev[i].name, "GPU name buffers differ");
        memcpy(p->gpus[i].name, dev[i].name, sizeof p->gpus[i].name);
        p->gpus[i].name[sizeof p->gpus[i].name - 1] = '\0';
        p->gpus[i].total_bytes = dev[i].total_bytes;
        p->gpus[i].free_bytes = dev[i].free_bytes;
        p->gpus[i].cc_major = dev[i].cc_major;
        p->gpus[i].cc_minor = dev[i].cc_minor;
    }
#endif
}

uint64_t hw_available_bytes(const struct hw_profile *p)
{
    uint64_t avail = p->ram_available_bytes;
    if (p->cgroup_version) {
        const uint64_t left =
            p->cgroup_usage_bytes < p->cgroup_limit_bytes ? p->cgroup_limit_bytes - p->cgroup_usage_bytes : 0;
        if (avail == 0 || left < avail) avail = left;
    }
    return avail;
}

double hw_matvec_bytes_per_s(const struct hw_profile *p, uint32_t type)
{
    for (int i = 0; i < p->n_matvec; i++)
        if (p->matvec[i].type == type) return p->matvec[i].bytes_per_s;
    return 0;
}

/* ---- RAM read bandwidth ---- */

struct sum_job {
    const float *a;
    size_t n;
    double out;
};

static void *sum_thread(void *arg)
{
    struct sum_job *j = arg;
    float acc[16] = {0};
    size_t i = 0;
    /* independent accumulators and a prefetch 4 KiB ahead, as the kernels
     * read: the ceiling they are compared with is the best a core gets */
    for (; i + 16 <= j->n; i += 16) {
        __builtin_prefetch(j->a + i + 1024);
        for (int k = 0; k < 16; k++) acc[k] += j->a[i + k];
    }
    double s = 0;
    for (int k = 0; k < 16; k++) s += acc[k];
    j->out = s;
    return NULL;
}

double hw_ram_read_bw(const float *a, size_t n, int threads)
{
    double best = 0;
    for (int r = 0; r < 3; r++) {
        pthread_t th[MAX_RAM_THREADS];
        struct sum_job jobs[MAX_RAM_THREADS];
        bool started[MAX_RAM_THREADS];
        const int64_t t0 = timing_now_us();
        for (int t = 0; t < threads; t++) {
            const size_t lo = n * (size_t)t / (size_t)threads, hi = n * (size_t)(t + 1) / (size_t)threads;
            jobs[t] = (struct sum_job){a + lo, hi - lo, 0};
            started[t] = pthread_create(&th[t], NULL, sum_thread, &jobs[t]) == 0;
            if (!started[t]) sum_thread(&jobs[t]);
        }
        for (int t = 0; t < threads; t++)
            if (started[t]) pthread_join(th[t], NULL);
        const int64_t us = timing_now_us() - t0;
        const double bps = us > 0 ? (double)(n * sizeof(float)) * 1e6 / (double)us : 0;
        if (bps > best) best = bps;
    }
    return best;
}

static enum hy_status measure_ram(struct hw_profile *p, uint64_t bytes)
{
    const size_t n = (size_t)(bytes / sizeof(float));
    float *a = malloc(n * sizeof(float));
    if (!a) return err_set(HY_ERR_OOM, "RAM bandwidth test: cannot allocate %llu bytes", (unsigned long long)bytes);
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
    p->ram_threads = HY_MIN(p->logical_cpus, MAX_RAM_THREADS);
    p->ram_read_bytes_per_s_1t = hw_ram_read_bw(a, n, 1);
    p->ram_read_bytes_per_s_all = hw_ram_read_bw(a, n, p->ram_threads);
    free(a);
    return HY_OK;
}

/* ---- matrix-vector throughput ---- */

static const uint32_t matvec_types[] = {HY_TYPE_Q4_0, HY_TYPE_Q4_1, HY_TYPE_Q5_0, HY_TYPE_Q5_1, HY_TYPE_Q8_0,
                                        HY_TYPE_Q2_K, HY_TYPE_Q3_K, HY_TYPE_Q4_K, HY_TYPE_Q5_K, HY_TYPE_Q6_K,
                                        HY_TYPE_F16,  HY_TYPE_BF16, HY_TYPE_F32};

static int n_matvec_types(void)
{
    int n = 0;
    for (size_t k = 0; k < HY_ARRAY_LEN(matvec_types); k++) n += quant_is_supported(matvec_types[k]);
    return n;
}

static enum hy_status measure_matvec(struct hw_profile *p, uint64_t bytes, const struct hw_measure_opts *o,
                                     int *step, int total)
{
    struct backend *be = NULL;
    struct cpu_backend_opts bo = {.n_threads = p->physical_cores, .portable = false};
    struct backend_limits lim = {
        .max_batch = 1, .max_ctx = 1, .max_head_dim = 128, .max_cols = MATVEC_COLS};
    enum hy_status st = cpu_backend_init(&bo, &be);
    if (!st) st = backend_reserve(be, &lim);
    if (st) {
        backend_free(be);
        return err_prefix(st, "matvec test: ");
    }
    p->matvec_threads = p->physical_cores;
    struct rng r;
    rng_init(&r, 11);
    float *x = malloc(MATVEC_COLS * sizeof(float));
    float *src = malloc(MATVEC_COLS * sizeof(float));
    HY_ASSERT(x && src);
    for (int i = 0; i < MATVEC_COLS; i++) {
        x[i] = (float)rng_normal(&r);
        src[i] = (float)rng_normal(&r) * 0.02f;
    }
    for (size_t k = 0; k < HY_ARRAY_LEN(matvec_types) && !st; k++) {
        const uint32_t type = matvec_types[k];
        if (!quant_is_supported(type)) continue;
        const uint64_t row_bytes = quant_bytes(type, MATVEC_COLS);
        const int64_t rows = (int64_t)HY_MAX((uint64_t)1, bytes / row_bytes);
        uint8_t *w = malloc(row_bytes * (uint64_t)rows);
        float *y = malloc((size_t)rows * sizeof(float));
        if (!w || !y) {
            free(w);
            free(y);
            st = err_set(HY_ERR_OOM, "matvec test: cannot allocate %llu bytes of %s weights",
                         (unsigned long long)(row_bytes * (uint64_t)rows), quant_type_name(type));
            break;
        }
        /* real quantized data: one random row quantized, repeated */
        quant_traits(type)->from_float(src, w, MATVEC_COLS);
        for (int64_t row = 1; row < rows; row++) memcpy(w + (uint64_t)row * row_bytes, w, row_bytes);
        struct backend_weight bw = {w, type, MATVEC_COLS, rows, (size_t)row_bytes, quant_type_name(type),
                                    BACKEND_MEM_HOST, 0, false};
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            const int64_t t0 = timing_now_us();
            backend_matmul(be, &bw, x, 1, y);
            const int64_t us = timing_now_us() - t0;
            const double bps = us > 0 ? (double)(row_bytes * (uint64_t)rows) * 1e6 / (double)us : 0;
            if (bps > best) best = bps;
        }
        p->matvec[p->n_matvec++] = (struct hw_matvec){type, best};
        free(w);
        free(y);
        if (o->progress) {
            char stage[48];
            snprintf(stage, sizeof stage, "matvec %s", quant_type_name(type));
            o->progress(o->progress_user, stage, ++*step, total);
        }
    }
    free(x);
    free(src);
    backend_free(be);
    return st;
}

enum hy_status hw_measure(const struct hw_measure_opts *o, struct hw_profile *out)
{
    hw_probe_static(out);
    const int n_storage = o->storage_dir ? HW_N_REQ_SIZES * HW_N_QDS + 1 : 0;
    const int n_mv = o->skip_matvec ? 0 : n_matvec_types();
    const int total = 1 + n_storage + (o->skip_ram_bw ? 0 : 1) + n_mv;
    int step = 1;
    if (o->progress) o->progress(o->progress_user, "system", step, total);
    enum hy_status st = HY_OK;
    if (o->storage_dir) {
        st = hw_storage_measure(o->storage_dir, o->storage_file_bytes ? o->storage_file_bytes : 256u << 20,
                                o->storage_cell_bytes ? o->storage_cell_bytes : 128u << 20,
                                o->storage_cell_us ? o->storage_cell_us : 250000, o->progress, o->progress_user,
                                step, total, &out->storage);
        if (st) return st;
        out->has_storage = true;
        step += n_storage;
    }
    if (!o->skip_ram_bw) {
        st = measure_ram(out, o->ram_bytes ? o->ram_bytes : hw_probe_bytes((uint64_t)256 << 20));
        if (st) return st;
        if (o->progress) o->progress(o->progress_user, "RAM bandwidth", ++step, total);
    }
    if (!o->skip_matvec)
        st = measure_matvec(out, o->matvec_bytes ? o->matvec_bytes : hw_probe_bytes((uint64_t)64 << 20), o,
                            &step, total);
    return st;
}
