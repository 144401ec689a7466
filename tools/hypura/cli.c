#include "cli.h"

#include "hw/hw.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "core/err.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "engine/engine.h"
#include "store/store.h"

void cli_init(struct cli *c, const char *cmd, int argc, char **argv)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->argc = argc;
    c->argv = argv;
}

bool cli_more(const struct cli *c)
{
    return c->i < c->argc;
}

bool cli_is_opt(const struct cli *c)
{
    const char *a = c->argv[c->i];
    return a[0] == '-' && a[1] != '\0';
}

bool cli_match(struct cli *c, const char *short_name, const char *long_name)
{
    const char *a = c->argv[c->i];
    const char *names[2] = {short_name, long_name};
    for (int k = 0; k < 2; k++) {
        const char *n = names[k];
        if (!n) continue;
        size_t len = strlen(n);
        if (strncmp(a, n, len) != 0) continue;
        if (a[len] == '\0') {
            c->opt = n;
            c->inline_val = NULL;
            c->i++;
            return true;
        }
        if (a[len] == '=' && n[1] == '-') {
            c->opt = n;
            c->inline_val = a + len + 1;
            c->i++;
            return true;
        }
    }
    return false;
}

enum hy_status cli_value(struct cli *c, const char **out)
{
    if (c->inline_val) {
        *out = c->inline_val;
        c->inline_val = NULL;
        return HY_OK;
    }
    if (c->i >= c->argc)
        return err_set(HY_ERR_INVALID_ARG, "option %s needs a value", c->opt);
    *out = c->argv[c->i++];
    return HY_OK;
}

enum hy_status cli_int(struct cli *c, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = NULL;
    enum hy_status st = cli_value(c, &v);
    if (st) return st;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0')
        return err_set(HY_ERR_INVALID_ARG, "option %s: '%s' is not an integer", c->opt, v);
    if (x < lo || x > hi)
        return err_set(HY_ERR_INVALID_ARG, "option %s: %lld is out of range [%lld, %lld]", c->opt, x,
                       (long long)lo, (long long)hi);
    *out = x;
    return HY_OK;
}

enum hy_status cli_double(struct cli *c, double lo, double hi, double *out)
{
    const char *v = NULL;
    enum hy_status st = cli_value(c, &v);
    if (st) return st;
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || !isfinite(x))
        return err_set(HY_ERR_INVALID_ARG, "option %s: '%s' is not a number", c->opt, v);
    if (x < lo || x > hi)
        return err_set(HY_ERR_INVALID_ARG, "option %s: %g is out of range [%g, %g]", c->opt, x, lo, hi);
    *out = x;
    return HY_OK;
}

enum hy_status cli_size(struct cli *c, uint64_t *out)
{
    const char *v = NULL;
    enum hy_status st = cli_value(c, &v);
    if (st) return st;
    st = sizes_parse(v, out);
    if (st) return err_prefix(st, "option %s: ", c->opt);
    return HY_OK;
}

bool cli_match_gpu_layers(struct cli *c)
{
    return cli_match(c, "-ngl", "--n-gpu-layers") || cli_match(c, NULL, "--gpu-layers");
}

bool cli_match_gpu(struct cli *c, struct cli_gpu *g, enum hy_status *st)
{
    const char *v = NULL;
    if (cli_match(c, NULL, "--gpu")) {
        if (!(*st = cli_value(c, &g->when)) && strcmp(g->when, "auto") &&
            strcmp(g->when, "on") && strcmp(g->when, "off"))
            *st = err_set(HY_ERR_INVALID_ARG, "option --gpu: '%s' is not auto, on or off", g->when);
    } else if (cli_match(c, NULL, "--gpu-budget")) {
        if (!(*st = cli_size(c, &g->budget)) && g->budget == 0)
            *st = err_set(HY_ERR_INVALID_ARG, "option --gpu-budget: 0 (use --gpu off)");
        else if (!*st && g->layers >= 0)
            *st = err_set(HY_ERR_INVALID_ARG, "options -ngl and --gpu-budget: give one of them");
    } else if (cli_match_gpu_layers(c)) {
        if (!(*st = cli_int(c, 0, INT32_MAX, &g->layers)) && g->budget)
            *st = err_set(HY_ERR_INVALID_ARG, "options -ngl and --gpu-budget: give one of them");
    } else if (cli_match(c, NULL, "--gpu-host")) {
        if ((*st = cli_value(c, &v))) return true;
        if (strcmp(v, "auto") == 0) g->host = CUDA_HOST_AUTO;
        else if (strcmp(v, "cpu") == 0) g->host = CUDA_HOST_CPU;
        else if (strcmp(v, "copy") == 0) g->host = CUDA_HOST_COPY;
        else *st = err_set(HY_ERR_INVALID_ARG, "option --gpu-host: '%s' is not auto, cpu or copy", v);
    } else {
        return false;
    }
    return true;
}

const char *cli_positional(struct cli *c)
{
    return c->i < c->argc ? c->argv[c->i++] : NULL;
}

enum hy_status cli_unknown(struct cli *c)
{
    const char *a = c->argv[c->i];
    if (a[0] == '-') return err_set(HY_ERR_INVALID_ARG, "unknown option '%s' (see hypura %s --help)", a, c->cmd);
    return err_set(HY_ERR_INVALID_ARG, "unexpected argument '%s' (see hypura %s --help)", a, c->cmd);
}

int cli_fail(const char *cmd, enum hy_status st)
{
    fprintf(stderr, "hypura %s: error: %s\n", cmd, err_msg());
    return st == HY_ERR_INVALID_ARG ? 2 : 1;
}

int cli_physical_cores(void)
{
    struct hw_profile p;
    hw_probe_static(&p);
    return p.physical_cores > 0 ? p.physical_cores : 1;
}

uint64_t cli_available_ram(void)
{
    struct hw_profile p;
    hw_probe_static(&p);
    return hw_available_bytes(&p);
}

bool cli_stderr_is_tty(void)
{
    return isatty(STDERR_FILENO) == 1;
}

static int64_t progress_last_us;

void cli_progress(const char *label, uint64_t done, uint64_t total)
{
    if (!cli_stderr_is_tty()) return;
    int64_t now = timing_now_us();
    if (done < total && now - progress_last_us < 100000) return;
    progress_last_us = now;
    char a[32], b[32];
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    fprintf(stderr, "\r%s %5.1f%% (%s / %s)  ", label, pct, sizes_format(done, a, sizeof a),
            sizes_format(total, b, sizeof b));
    fflush(stderr);
}

void cli_progress_end(void)
{
    if (!cli_stderr_is_tty()) return;
    fputc('\n', stderr);
    progress_last_us = 0;
}

/* "$XDG_CACHE_HOME/hypura" or "$HOME/.cache/hypura"; created. */
enum hy_status cli_cache_dir(char *out, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && xdg[0] == '/')
        snprintf(base, sizeof base, "%s", xdg);
    else if (home && home[0])
        snprintf(base, sizeof base, "%s/.cache", home);
    else
        return err_set(HY_ERR_IO, "cannot locate the cache directory: neither XDG_CACHE_HOME nor HOME is set");
    if (mkdir(base, 0755) != 0 && errno != EEXIST)
        return err_set(HY_ERR_IO, "%s: cannot create: %s", base, strerror(errno));
    if (snprintf(out, cap, "%s/hypura", base) >= (int)cap)
        return err_set(HY_ERR_IO, "%s: cache directory path too long", base);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return err_set(HY_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
    return HY_OK;
}

/* The plan's hardware: RAM and the cgroup limit probed now; bandwidths from
 * the cached `hypura profile` when there is one, else conservative
 * defaults; --disk-gbs / --mem-gbs override either. *source says which. */
void cli_plan_hw(struct plan_hw *hw, double disk_gbs, double mem_gbs, char *source, size_t cap)
{
    plan_hw_defaults(hw);
    struct hw_profile now;
    hw_probe_static(&now);
    hw->ram_total_bytes = now.ram_total_bytes;
    hw->ram_available_bytes = hw_available_bytes(&now);
    hw->cgroup_limit_bytes = now.cgroup_version ? now.cgroup_limit_bytes : 0;
    hw->n_threads = now.physical_cores > 0 ? now.physical_cores : 1;
    snprintf(source, cap, "defaults (no measured profile: run 'hypura profile')");
    char dir[PATH_MAX], path[PATH_MAX + 16];
    struct hw_profile prof;
    if (cli_cache_dir(dir, sizeof dir) == HY_OK) {
        snprintf(path, sizeof path, "%s/profile.json", dir);
        if (access(path, R_OK) == 0 && hw_profile_load(path, &prof) == HY_OK) {
            if (prof.has_storage && prof.storage.best_read_bytes_per_s > 0) {
                hw->disk_read_bytes_per_s = prof.storage.best_read_bytes_per_s;
                hw->disk_best_request_bytes = prof.storage.best_req_bytes;
            }
            if (prof.ram_read_bytes_per_s_all > 0) hw->mem_read_bytes_per_s = prof.ram_read_bytes_per_s_all;
            for (int i = 0; i < prof.n_matvec; i++)
                if (prof.matvec[i].type < HY_TYPE_COUNT)
                    hw->cpu_matvec_bytes_per_s[prof.matvec[i].type] = prof.matvec[i].bytes_per_s;
            snprintf(source, cap, "measured profile %s", path);
        }
    }
    if (disk_gbs > 0) hw->disk_read_bytes_per_s = disk_gbs * 1e9;
    if (mem_gbs > 0) hw->mem_read_bytes_per_s = mem_gbs * 1e9;
    if (disk_gbs > 0 || mem_gbs > 0) strncat(source, ", with flags overriding bandwidths", cap - strlen(source) - 1);
}

void cli_load_hw(struct plan_hw *hw, uint64_t *ram_budget, char *source, size_t cap)
{
    cli_plan_hw(hw, 0, 0, source, cap);
    bool clamped = false;
    *ram_budget = plan_ram_budget(*ram_budget, hw->ram_available_bytes, hw->cgroup_limit_bytes, &clamped);
    if (clamped) fprintf(stderr, "plan: RAM budget lowered to the cgroup memory limit minus headroom\n");
}

void cli_print_gpu(const struct engine *e)
{
    if (!e->on_gpu) return;
    char g[32], a[32], h[32], b[32];
    const uint64_t gw = e->m->store ? store_stats(e->m->store).gpu_bytes : 0;
    fprintf(stderr, "gpu: %s of the %s weights on the GPU, VRAM held %s of the budget %s\n",
            sizes_format(gw, g, sizeof g), sizes_format(e->m->weight_bytes, a, sizeof a),
            sizes_format(cuda_backend_device_bytes(e->be), h, sizeof h),
            sizes_format(e->gpu_budget_bytes, b, sizeof b));
}
