/*
 * Command-line helpers shared by the subcommands: a tiny option parser over
 * argv that understands "--flag value", "--flag=value" and short "-m value",
 * and prints clear errors for unknown flags and bad values.
 */
#ifndef HY_TOOLS_CLI_H
#define HY_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"
#include "plan/plan.h"

struct cli {
    int argc;
    char **argv;
    int i;             /* next argument */
    const char *cmd;   /* subcommand name, for messages */
    const char *opt;   /* the option just matched */
    const char *inline_val; /* value after '=' in --flag=value */
};

void cli_init(struct cli *c, const char *cmd, int argc, char **argv);
/* True while arguments remain. */
bool cli_more(const struct cli *c);
/* Current argument is an option (starts with '-' and is not just "-"). */
bool cli_is_opt(const struct cli *c);
/* If the current argument is one of the names (NULL-terminated list of up to
 * two: short, long), consume it and return true. */
bool cli_match(struct cli *c, const char *short_name, const char *long_name);
/* Value of the option just matched; HY_ERR_INVALID_ARG when missing. */
HY_MUST_CHECK enum hy_status cli_value(struct cli *c, const char **out);
HY_MUST_CHECK enum hy_status cli_int(struct cli *c, int64_t lo, int64_t hi, int64_t *out);
HY_MUST_CHECK enum hy_status cli_double(struct cli *c, double lo, double hi, double *out);
HY_MUST_CHECK enum hy_status cli_size(struct cli *c, uint64_t *out);
/* The GPU options run and serve share. */
struct cli_gpu {
    const char *when; /* --gpu: "auto", "on" or "off" */
    uint64_t budget;  /* --gpu-budget; 0: free VRAM minus headroom */
    int host;         /* --gpu-host: enum cuda_host_policy */
    int64_t layers;   /* -ngl (llama.cpp's layer count); -1: not given */
};
#define CLI_GPU_DEFAULT {"auto", 0, 0, -1}
/* If the current argument is --gpu, --gpu-budget, --gpu-host or -ngl
 * (--n-gpu-layers, --gpu-layers), consumes it and its value into *g, sets
 * *st (HY_ERR_INVALID_ARG naming a bad value, or -ngl given with
 * --gpu-budget) and returns true. */
bool cli_match_gpu(struct cli *c, struct cli_gpu *g, enum hy_status *st);
/* If the current argument is -ngl, --n-gpu-layers or --gpu-layers (llama.cpp's
 * names of its layer count), consumes it and returns true (its value next). */
bool cli_match_gpu_layers(struct cli *c);
/* Consumes a positional argument. */
const char *cli_positional(struct cli *c);
/* Error for the current (unknown) argument. */
HY_MUST_CHECK enum hy_status cli_unknown(struct cli *c);

/* Prints "hypura <cmd>: <message>" for a failed status to stderr; returns the
 * process exit code (1, or 2 for usage errors). */
int cli_fail(const char *cmd, enum hy_status st);

/* Physical cores this process may run on (hyperthread siblings counted
 * once), from the affinity mask and /sys topology; at least 1. */
int cli_physical_cores(void);

/* Memory this process can still use: MemAvailable from /proc/meminfo,
 * capped by the cgroup v2 limit minus its current usage when there is one.
 * 0 when neither can be read. */
uint64_t cli_available_ram(void);

/* True when stderr is a terminal (progress display). */
bool cli_stderr_is_tty(void);

/* Progress line on stderr when it is a TTY: "label  42% (1.2 GiB / 2.8 GiB)". */
void cli_progress(const char *label, uint64_t done, uint64_t total);
void cli_progress_end(void);

/* hypura's cache directory, "$XDG_CACHE_HOME/hypura" or "$HOME/.cache/hypura",
 * created when missing. HY_ERR_IO naming the path when it cannot be. */
HY_MUST_CHECK enum hy_status cli_cache_dir(char *out, size_t cap);

/* Hardware for the placement plan: RAM and the process's cgroup limit probed
 * now; disk, RAM and matvec bandwidths from the cached `hypura profile` when
 * there is one, else conservative defaults; disk_gbs / mem_gbs > 0 override.
 * source gets a line saying where the numbers came from. */
void cli_plan_hw(struct plan_hw *hw, double disk_gbs, double mem_gbs, char *source, size_t cap);

/* What a command that loads a model plans with (run, serve, perplexity):
 * cli_plan_hw without overrides, and the RAM budget, *ram_budget (0: the
 * default, available RAM minus headroom) cut to the cgroup limit with a note
 * on stderr when it is. */
void cli_load_hw(struct plan_hw *hw, uint64_t *ram_budget, char *source, size_t cap);

struct engine;
/* After the weights are loaded on a GPU: "gpu: <weights> of the <all> weights
 * on the GPU, VRAM held <bytes> of the budget <bytes>" on stderr; nothing on
 * the CPU. */
void cli_print_gpu(const struct engine *e);

#endif
