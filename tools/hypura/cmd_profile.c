/*
 * hypura profile [--force] [--json] [--dir DIR]
 *
 * Measures the hardware profile (src/hw/hw.h) and caches it as JSON in
 * $XDG_CACHE_HOME/hypura/profile.json (else ~/.cache/hypura/profile.json).
 * A cached profile is reused for 30 days, unless --force, or --dir names
 * another directory than the one whose storage it measured.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/sizes.h"
#include "hw/hw.h"

#define MAX_AGE_S (30 * 24 * 3600)

static void profile_help(void)
{
    printf("usage: hypura profile [--force] [--json] [--dir DIR]\n\n"
           "Measures this machine for placing models: CPU, SIMD level, RAM and its bandwidth, the cgroup\n"
           "memory limit, GPUs, the read bandwidth of the storage holding DIR (O_DIRECT, request sizes\n"
           "64 KiB..16 MiB x queue depths 1..32, 4 KiB random reads) and the CPU's matrix-vector speed per\n"
           "weight type. Takes under a minute; the result is cached for 30 days in\n"
           "$XDG_CACHE_HOME/hypura/profile.json (default ~/.cache/hypura/profile.json).\n\n"
           "options:\n"
           "  --force      measure again even when the cached profile is fresh\n"
           "  --json       print the profile as JSON instead of a summary\n"
           "  --dir DIR    directory whose storage is measured (default: current directory); it needs\n"
           "               256 MiB free for a temporary file, removed at once\n"
           "  -h, --help   show this help\n");
}

static void on_progress(void *user, const char *stage, int done, int total)
{
    (void)user;
    if (!cli_stderr_is_tty()) return;
    fprintf(stderr, "\r\033[Kprofiling: %-20s %3d/%d", stage, done, total);
    fflush(stderr);
}

static double gbs(double bytes_per_s)
{
    return bytes_per_s / 1e9;
}

static void print_summary(const struct hw_profile *p, const char *path, bool fresh)
{
    char a[32], b[32];
    char when[64];
    const time_t t = (time_t)p->created_unix;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    printf("hardware profile (%s %s; %s)\n", fresh ? "measured" : "cached, measured", when, path);
    printf("  CPU      %s\n", p->cpu_model);
    printf("           %d physical cores, %d logical CPUs, SIMD %s\n", p->physical_cores, p->logical_cpus, p->simd);
    printf("  RAM      %s total, %s available\n", sizes_format(p->ram_total_bytes, a, sizeof a),
           sizes_format(p->ram_available_bytes, b, sizeof b));
    if (p->ram_read_bytes_per_s_1t > 0)
        printf("           read %.1f GB/s with 1 thread, %.1f GB/s with %d\n", gbs(p->ram_read_bytes_per_s_1t),
               gbs(p->ram_read_bytes_per_s_all), p->ram_threads);
    if (p->cgroup_version)
        printf("  cgroup   v%d memory limit %s, %s in use\n", p->cgroup_version,
               sizes_format(p->cgroup_limit_bytes, a, sizeof a), sizes_format(p->cgroup_usage_bytes, b, sizeof b));
    else
        printf("  cgroup   no memory limit\n");
#ifdef HY_HAVE_CUDA
    if (p->n_gpu == 0) printf("  GPUs     none found\n");
#else
    if (p->n_gpu == 0) printf("  GPUs     none (built without CUDA)\n");
#endif
    for (int i = 0; i < p->n_gpu; i++)
        printf("  GPU %-4d %s, %s (%s free), compute %d.%d\n", i, p->gpus[i].name,
               sizes_format(p->gpus[i].total_bytes, a, sizeof a), sizes_format(p->gpus[i].free_bytes, b, sizeof b),
               p->gpus[i].cc_major, p->gpus[i].cc_minor);
    if (p->has_storage) {
        const struct hw_storage *s = &p->storage;
        printf("  storage  %s: best %.2f GB/s (O_DIRECT, %s requests, queue depth %d)\n", s->dir,
               gbs(s->best_read_bytes_per_s), sizes_format(s->best_req_bytes, a, sizeof a), s->best_queue_depth);
        printf("           4 KiB random reads, queue depth 1: %.0f IOPS, %.0f us each\n", s->rand4k_iops,
               s->rand4k_latency_us);
        printf("           %-11s", "GB/s");
        for (int j = 0; j < HW_N_QDS; j++) {
            char h[16];
            snprintf(h, sizeof h, "QD%d", hw_queue_depths[j]);
            printf("  %6s", h);
        }
        printf("\n");
        for (int i = 0; i < HW_N_REQ_SIZES; i++) {
            printf("           %-11s", sizes_format(hw_req_sizes[i], a, sizeof a));
            for (int j = 0; j < HW_N_QDS; j++) printf("  %6.2f", gbs(s->read_bytes_per_s[i][j]));
            printf("\n");
        }
    }
    if (p->n_matvec) {
        printf("  matvec   GB/s of weights, 1 token, %d threads:\n", p->matvec_threads);
        for (int i = 0; i < p->n_matvec; i++)
            printf("%s%-5s %5.1f%s", i % 5 == 0 ? "           " : "   ", quant_type_name(p->matvec[i].type),
                   gbs(p->matvec[i].bytes_per_s), i % 5 == 4 || i + 1 == p->n_matvec ? "\n" : "");
    }
}

int cmd_profile(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "profile", argc - 1, argv + 1);
    bool force = false, json = false;
    const char *dir = ".";
    bool dir_given = false;
    enum hy_status st = HY_OK;
    while (cli_more(&c) && !st) {
        if (cli_match(&c, "-h", "--help")) {
            profile_help();
            return 0;
        }
        if (cli_match(&c, NULL, "--force"))
            force = true;
        else if (cli_match(&c, NULL, "--json"))
            json = true;
        else if (cli_match(&c, NULL, "--dir")) {
            st = cli_value(&c, &dir);
            dir_given = true;
        } else
            st = cli_unknown(&c);
    }
    if (st) return cli_fail("profile", st);
    char dir_abs[PATH_MAX];
    if (!realpath(dir, dir_abs))
        return cli_fail("profile", err_set(HY_ERR_INVALID_ARG, "--dir %s: %s", dir, strerror(errno)));

    char cdir[PATH_MAX - 32], path[PATH_MAX];
    if ((st = cli_cache_dir(cdir, sizeof cdir))) return cli_fail("profile", st);
    snprintf(path, sizeof path, "%s/profile.json", cdir);

    struct hw_profile *p = calloc(1, sizeof *p);
    if (!p) return cli_fail("profile", err_set(HY_ERR_OOM, "profile: out of memory"));
    bool fresh = true;
    if (!force && hw_profile_load(path, p) == HY_OK) {
        const int64_t age = (int64_t)time(NULL) - p->created_unix;
        const bool same_dir = !dir_given || (p->has_storage && !strcmp(p->storage.dir, dir_abs));
        if (age >= 0 && age < MAX_AGE_S && same_dir && p->has_storage) fresh = false;
    }
    err_clear();
    if (fresh) {
        struct hw_measure_opts o = {.storage_dir = dir_abs, .progress = on_progress};
        st = hw_measure(&o, p);
        if (cli_stderr_is_tty()) fprintf(stderr, "\r\033[K");
        if (st) {
            free(p);
            return cli_fail("profile", st);
        }
        if ((st = hw_profile_save(p, path))) {
            free(p);
            return cli_fail("profile", st);
        }
    }
    if (json) {
        char *text = hw_profile_to_json(p);
        printf("%s\n", text);
        free(text);
    } else {
        print_summary(p, path, fresh);
    }
    free(p);
    return 0;
}
