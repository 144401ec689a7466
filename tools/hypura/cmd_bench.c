/*
 * hypura bench -m MODEL [-p N] [-n N] [-r REPS] [--baseline] [--cold] [options]
 *
 * Prompt and decode speed of a model over repetitions, in hypura's placement
 * and, with --baseline, in the memory-map baseline (--mode mmap: the same
 * engine with the weights behind a memory map, as llama.cpp runs them), with
 * the speedup between the two. One table on stdout; progress on stderr;
 * --json appends one line per run, --plot writes an SVG chart.
 *
 * Each run is a separate process: bench re-executes its own binary
 * (/proc/self/exe) as `hypura run ... --stats-json FILE` and reads the JSON
 * back. A run therefore starts with a fresh address space, and its peak RSS
 * (getrusage in the child), bytes read and expert cache counters are its own;
 * the baseline's mapped pages and heap cannot inflate hypura's numbers. What
 * is shared between runs is the page cache, which is what warm and cold are
 * about. Rejected: one engine per repetition inside this process (the peak
 * RSS of a process never goes down, so every run after the first would
 * report the largest peak so far, and a freed mmap run still leaves the
 * allocator's high-water mark behind).
 *
 * The prompt is synthetic: English prose repeated, cut so that `run`
 * tokenizes it (with BOS, as run does) to exactly -p tokens; bench tokenizes
 * it here (header and vocabulary only) and hands it over with `run -f`. All
 * runs use the same --seed, so every mode generates the same tokens (the
 * modes compute the same logits). Generation may end early at an end-of-
 * generation token; the table then says how many tokens were generated.
 *
 * Warm and cold. Without --cold the file's pages stay in the page cache
 * between runs, and the results are labelled warm (the first run may still
 * read from the disk). With --cold, before each run the file is flushed and
 * dropped with posix_fadvise(POSIX_FADV_DONTNEED) and, as root, the whole
 * page cache with `sync; echo 3 > /proc/sys/vm/drop_caches`; bench then
 * measures with mincore how much of the file is still cached and says so.
 *
 * Guardrail. A memory-mapped run of a model larger than memory makes the
 * kernel evict and re-read the weights on every token, which can stall the
 * whole machine for hours. The baseline is skipped (with the sizes) when the
 * file is larger than RAM total - 4 GiB, or the cgroup memory limit - 4 GiB
 * when that is smaller, unless --force-baseline. The environment variable
 * HYPURA_BENCH_RAM_BYTES replaces RAM total (tests make a small model look
 * too big with it).
 *
 * --plot draws per-run values (prompt and decode tok/s, bytes read per
 * generated token, expert hit rate): `run` reports totals for a run, not a
 * per-token series, so a hit rate over the tokens is not drawn.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "gguf/gguf.h"
#include "hw/hw.h"
#include "hypura.h"
#include "text/tokenizer.h"

#define BENCH_DEFAULT_PROMPT 512
#define BENCH_DEFAULT_GEN    128
#define BENCH_DEFAULT_REPS   3
#define BENCH_SEED           "42"
#define BENCH_HEADROOM_BYTES (4ull << 30)

struct bench_opts {
    const char *model;
    int64_t n_prompt, n_gen, reps;
    int64_t n_threads; /* 0: run's default */
    int64_t n_ctx;     /* 0: run's default */
    uint64_t ram_budget;
    bool ram_budget_set;
    const char *mode; /* hypura's run: --mode */
    const char *gpu; /* passed to run: --gpu, --gpu-budget, --gpu-host, -ngl; NULL: run's default */
    const char *gpu_budget;
    const char *gpu_host;
    const char *gpu_layers;
    bool baseline, force_baseline, cold;
    const char *json_path, *plot_path;
};

/* One run, as `run --stats-json` reported it. */
struct bench_run {
    bool baseline;
    int rep; /* 1-based */
    char mode[32];
    int64_t n_prompt, n_gen;
    double prompt_tok_per_s, gen_tok_per_s;
    double decode_tok_per_s; /* forward passes alone; NaN from a run that lacks it */
    double bytes_read_per_token;
    double hit_rate; /* < 0: no expert cache */
    double predicted_gen_tok_per_s;
    uint64_t peak_rss_bytes, bytes_read, ram_budget_bytes, resident_bytes;
    double io_stall_s, disk_gb_per_s;
    /* GPU runs: bytes of host weights the run's products moved (computed by
     * the CPU where they lie plus copied over PCIe); NaN on the CPU backend */
    double gpu_host_bytes;
    char cache[320]; /* "warm" or "cold: ..." */
};

static void bench_help(void)
{
    printf("usage: hypura bench -m MODEL.gguf [-p N] [-n N] [-r REPS] [--baseline] [options]\n\n"
           "Measures prompt and decode tok/s over repetitions (median, min, max), with the mode,\n"
           "bytes read per generated token, expert hit rate, peak RSS and the plan's prediction.\n"
           "Each run is a separate `hypura run` process. The table goes to stdout.\n\n"
           "options:\n"
           "  -m, --model FILE     GGUF model (required)\n"
           "  -p, --n-prompt N     prompt tokens, BOS included (default: %d)\n"
           "  -n, --n-gen N        tokens to generate (default: %d)\n"
           "  -r, --reps N         repetitions per mode (default: %d)\n"
           "  --baseline           first run the same engine with --mode mmap (the weights behind\n"
           "                       a memory map, as llama.cpp), then hypura's plan; print the\n"
           "                       speedup. Skipped when the model is larger than RAM - 4 GiB\n"
           "                       (or the cgroup memory limit - 4 GiB)\n"
           "  --force-baseline     run the baseline even above that limit (it may thrash)\n"
           "  --cold               drop the model file from the page cache before each run\n"
           "                       (posix_fadvise; drop_caches too when root); default: warm\n"
           "  --json FILE          append one JSON line per run to FILE\n"
           "  --plot FILE.svg      write an SVG chart of the runs\n"
           "  --mode MODE          hypura's placement: auto, resident, dense-stream,\n"
           "                       expert-stream (default: auto)\n"
           "  --ram-budget SIZE    RAM budget of every run, e.g. 16G (default: run's)\n"
           "  --gpu WHEN, --gpu-budget SIZE, --gpu-host HOW, -ngl N\n"
           "                       passed to every hypura run (see hypura run --help)\n"
           "  -t, --threads N      CPU threads (default: run's, physical cores)\n"
           "  -c, --ctx-size N     context length (default: run's)\n"
           "  -h, --help           show this help\n\n"
           "environment: HYPURA_BENCH_RAM_BYTES replaces RAM total in the baseline's guardrail.\n",
           BENCH_DEFAULT_PROMPT, BENCH_DEFAULT_GEN, BENCH_DEFAULT_REPS);
}

/* Returns -1 after --help, else 0 with *st set. */
static int parse_opts(struct cli *c, struct bench_opts *o, enum hy_status *st)
{
    *st = HY_OK;
    while (cli_more(c) && !*st) {
        if (cli_match(c, "-h", "--help")) {
            bench_help();
            return -1;
        } else if (cli_match(c, "-m", "--model")) {
            *st = cli_value(c, &o->model);
        } else if (cli_match(c, "-p", "--n-prompt")) {
            *st = cli_int(c, 1, 1 << 20, &o->n_prompt);
        } else if (cli_match(c, "-n", "--n-gen")) {
            *st = cli_int(c, 1, 1 << 20, &o->n_gen);
        } else if (cli_match(c, "-r", "--reps")) {
            *st = cli_int(c, 1, 1000, &o->reps);
        } else if (cli_match(c, "-t", "--threads")) {
            *st = cli_int(c, 1, 1024, &o->n_threads);
        } else if (cli_match(c, "-c", "--ctx-size")) {
            *st = cli_int(c, 1, INT32_MAX, &o->n_ctx);
        } else if (cli_match(c, NULL, "--ram-budget")) {
            *st = cli_size(c, &o->ram_budget);
            o->ram_budget_set = true;
        } else if (cli_match(c, NULL, "--gpu")) {
            *st = cli_value(c, &o->gpu);
        } else if (cli_match(c, NULL, "--gpu-budget")) {
            *st = cli_value(c, &o->gpu_budget);
        } else if (cli_match(c, NULL, "--gpu-host")) {
            *st = cli_value(c, &o->gpu_host);
        } else if (cli_match_gpu_layers(c)) {
            *st = cli_value(c, &o->gpu_layers);
        } else if (cli_match(c, NULL, "--mode")) {
            *st = cli_value(c, &o->mode);
        } else if (cli_match(c, NULL, "--baseline")) {
            o->baseline = true;
        } else if (cli_match(c, NULL, "--force-baseline")) {
            o->force_baseline = true;
        } else if (cli_match(c, NULL, "--cold")) {
            o->cold = true;
        } else if (cli_match(c, NULL, "--json")) {
            *st = cli_value(c, &o->json_path);
        } else if (cli_match(c, NULL, "--plot")) {
            *st = cli_value(c, &o->plot_path);
        } else {
            *st = cli_unknown(c);
        }
    }
    if (*st) return 0;
    static const char *const modes[] = {"auto", "resident", "dense-stream", "expert-stream"};
    bool mode_ok = false;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        mode_ok |= !strcmp(o->mode, modes[i]);
    if (!o->model)
        *st = err_set(HY_ERR_INVALID_ARG, "no model given (-m MODEL.gguf)");
    else if (!mode_ok)
        *st =
            err_set(HY_ERR_INVALID_ARG,
                    "option --mode: '%s' is not auto, resident, dense-stream or expert-stream%s",
                    o->mode, !strcmp(o->mode, "mmap") ? " (the mmap baseline is --baseline)" : "");
    else if (o->force_baseline && !o->baseline)
        *st = err_set(HY_ERR_INVALID_ARG, "--force-baseline without --baseline");
    else if (o->n_ctx && o->n_prompt + o->n_gen > o->n_ctx)
        *st = err_set(HY_ERR_INVALID_ARG,
                      "-p %" PRId64 " plus -n %" PRId64 " tokens do not fit a context of %" PRId64
                      "\nhint: raise -c",
                      o->n_prompt, o->n_gen, o->n_ctx);
    return 0;
}

/* ---- the synthetic prompt ---- */

static const char bench_prose[] =
    "The old lighthouse keeper climbed the spiral stairs every evening, counting the steps as "
    "his father had taught him. From the lamp room he could see the fishing boats coming home "
    "across the bay, their sails dark against the last light of the sun. He wrote the weather "
    "in a leather book: the direction of the wind, the height of the waves, the colour of the "
    "sky, and the names of the ships that passed before the night closed in. ";

/* Count of tokens `run` gives text (its flags: specials parsed, BOS/EOS as
 * the vocabulary asks). */
HY_MUST_CHECK static enum hy_status count_tokens(const struct tokenizer *t, const char *text,
                                                 size_t len, unsigned flags, int64_t *n)
{
    const int64_t cap = tokenizer_max_tokens(t, len);
    int32_t *ids = mem_xcalloc((size_t)cap, sizeof(*ids));
    enum hy_status st = tokenizer_tokenize(t, text, len, flags, ids, cap, n);
    free(ids);
    return st;
}

/* *out (owned, NUL-terminated): a text `run -f` tokenizes to exactly
 * n_prompt tokens. The prose, repeated, is tokenized without specials and
 * the pieces of its first tokens are joined; a cut is kept when the joined
 * text tokenizes back to the count (cuts near the wanted one are tried,
 * with and without the leading space the first piece carries). */
HY_MUST_CHECK static enum hy_status make_prompt(const char *model, int64_t n_prompt, char **out)
{
    const unsigned run_flags = TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_EOS | TOKENIZER_ADD_BOS;
    struct gguf_ctx *g = NULL;
    struct tokenizer tok;
    bool have_tok = false;
    char *prose = NULL, *text = NULL;
    int32_t *ids = NULL;
    enum hy_status st;
    if ((st = gguf_open(model, &g))) goto done;
    if ((st = tokenizer_init(&tok, g))) goto done;
    have_tok = true;

    int64_t n_special = 0;
    if ((st = count_tokens(&tok, "", 0, run_flags, &n_special))) goto done;
    if (n_prompt < n_special) {
        st = err_set(HY_ERR_INVALID_ARG,
                     "-p %" PRId64 ": a prompt of this model has at least %" PRId64
                     " tokens (BOS/EOS)",
                     n_prompt, n_special);
        goto done;
    }
    const int64_t want = n_prompt - n_special; /* tokens of the text itself */
    size_t prose_len = 0, reps = 1;
    int64_t n_ids = 0;
    for (;;) {
        prose_len = reps * (sizeof bench_prose - 1);
        prose = mem_xrealloc(prose, prose_len + 1);
        for (size_t i = 0; i < reps; i++)
            memcpy(prose + i * (sizeof bench_prose - 1), bench_prose, sizeof bench_prose - 1);
        prose[prose_len] = '\0';
        const int64_t cap = tokenizer_max_tokens(&tok, prose_len);
        free(ids);
        ids = mem_xcalloc((size_t)cap, sizeof(*ids));
        if ((st = tokenizer_tokenize(&tok, prose, prose_len, 0, ids, cap, &n_ids))) goto done;
        if (n_ids >= want + 32) break;
        reps *= 2;
    }
    size_t text_cap = 64;
    text = mem_xmalloc(text_cap);
    for (int64_t delta = 0; delta <= 16; delta = delta > 0 ? -delta : 1 - delta) {
        const int64_t cut = want + delta;
        if (cut < 0 || cut > n_ids) continue;
        size_t len = 0;
        for (int64_t i = 0; i < cut; i++) {
            const size_t need = tokenizer_piece(&tok, ids[i], NULL, 0);
            if (len + need + 1 > text_cap) {
                while (len + need + 1 > text_cap) text_cap *= 2;
                text = mem_xrealloc(text, text_cap);
            }
            len += tokenizer_piece(&tok, ids[i], text + len, text_cap - len);
        }
        text[len] = '\0';
        for (int strip = 0; strip < 2; strip++) {
            const size_t skip = strip && text[0] == ' ';
            if (strip && !skip) break;
            const char *s = text + skip;
            const size_t s_len = len - skip;
            if (memchr(s, '\0', s_len)) break; /* `run -f` refuses a NUL byte */
            int64_t n = 0;
            if ((st = count_tokens(&tok, s, s_len, run_flags, &n))) goto done;
            if (n == n_prompt) {
                *out = mem_xstrdup(s);
                goto done;
            }
        }
    }
    st = err_set(HY_ERR_UNSUPPORTED,
                 "%s: no text of exactly %" PRId64 " tokens found for the synthetic prompt\n"
                 "hint: try a nearby -p",
                 model, n_prompt);
done:
    free(ids);
    free(prose);
    free(text);
    if (have_tok) tokenizer_free(&tok);
    gguf_free(g);
    return st;
}

/* ---- page cache ---- */

/* Fraction of the file's pages in the page cache (mincore), or -1 when it
 * cannot be measured. */
static double cached_fraction(int fd, uint64_t size)
{
    if (size == 0) return 0.0;
    const long page = sysconf(_SC_PAGESIZE);
    const uint64_t chunk = 1ull << 30;
    uint64_t resident = 0, pages = 0;
    unsigned char *vec = mem_xmalloc((size_t)(chunk / (uint64_t)page) + 1);
    for (uint64_t off = 0; off < size; off += chunk) {
        const size_t len = (size_t)HY_MIN(chunk, size - off);
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
        if (p == MAP_FAILED) {
            free(vec);
            return -1.0;
        }
        const size_t n = (len + (size_t)page - 1) / (size_t)page;
        const bool ok = mincore(p, len, vec) == 0;
        munmap(p, len);
        if (!ok) {
            free(vec);
            return -1.0;
        }
        for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
        pages += n;
    }
    free(vec);
    return (double)resident / (double)pages;
}

/* Drops the model file from the page cache; *how gets what was done and
 * what is left ("posix_fadvise DONTNEED + drop_caches; 0.0% of the file
 * still cached"). Errors: HY_ERR_IO when the file cannot be opened. */
HY_MUST_CHECK static enum hy_status drop_cache(const char *path, char *how, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    const uint64_t size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    char fadv[64], drop[64];
    (void)fdatasync(fd); /* dirty pages (a file just written) are not dropped */
    const int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    snprintf(fadv, sizeof fadv, rc == 0 ? "posix_fadvise DONTNEED" : "posix_fadvise failed (%s)",
             strerror(rc));
    if (geteuid() != 0) {
        snprintf(drop, sizeof drop, "drop_caches not tried (not root)");
    } else {
        sync();
        errno = 0;
        FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
        bool ok = f && fputs("3\n", f) >= 0;
        if (f && fclose(f) != 0) ok = false;
        const int err = errno;
        snprintf(drop, sizeof drop, ok ? "drop_caches" : "drop_caches failed (%s)", strerror(err));
    }
    const double left = cached_fraction(fd, size);
    close(fd);
    if (left < 0)
        snprintf(how, cap, "%s + %s; cached share not measurable", fadv, drop);
    else
        snprintf(how, cap, "%s + %s; %.1f%% of the file still cached", fadv, drop, 100.0 * left);
    return HY_OK;
}

/* ---- one run ---- */

static double jnum(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The last lines of a log file on stderr, indented. */
static void print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    const long start = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, start, SEEK_SET);
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t end = n;
    while (end > 0 && buf[end - 1] == '\n') buf[--end] = '\0';
    size_t i = end;
    for (int seen = 0; i > 0; i--)
        if (buf[i - 1] == '\n' && ++seen == lines) break;
    fprintf(stderr, "%s\n", buf + i);
}

/* Runs `hypura run` in mode for one repetition (stdout discarded, stderr to
 * a log in dir) and reads its statistics into *r. Errors: HY_ERR_IO when the
 * process cannot be started, fails (its exit status or signal; its last log
 * lines are printed to stderr first) or its statistics cannot be read;
 * HY_ERR_FORMAT when they lack the speeds. */
HY_MUST_CHECK static enum hy_status run_once(const struct bench_opts *o, const char *exe,
                                             const char *dir, const char *mode, struct bench_run *r)
{
    char prompt_path[PATH_MAX + 16], stats_path[PATH_MAX + 16], log_path[PATH_MAX + 16];
    snprintf(prompt_path, sizeof prompt_path, "%s/prompt.txt", dir);
    snprintf(stats_path, sizeof stats_path, "%s/stats.json", dir);
    snprintf(log_path, sizeof log_path, "%s/run.log", dir);
    unlink(stats_path);
    char n_gen[32], threads[32], ctx[32], budget[32];
    snprintf(n_gen, sizeof n_gen, "%" PRId64, o->n_gen);
    snprintf(threads, sizeof threads, "%" PRId64, o->n_threads);
    snprintf(ctx, sizeof ctx, "%" PRId64, o->n_ctx);
    snprintf(budget, sizeof budget, "%" PRIu64, o->ram_budget);
    const char *argv[32];
    int a = 0;
    argv[a++] = exe;
    argv[a++] = "run";
    argv[a++] = "-m", argv[a++] = o->model;
    argv[a++] = "-f", argv[a++] = prompt_path;
    argv[a++] = "-n", argv[a++] = n_gen;
    argv[a++] = "--seed", argv[a++] = BENCH_SEED;
    argv[a++] = "--mode", argv[a++] = mode;
    argv[a++] = "--stats-json", argv[a++] = stats_path;
    if (o->n_threads) argv[a++] = "-t", argv[a++] = threads;
    if (o->n_ctx) argv[a++] = "-c", argv[a++] = ctx;
    if (o->ram_budget_set) argv[a++] = "--ram-budget", argv[a++] = budget;
    if (o->gpu) argv[a++] = "--gpu", argv[a++] = o->gpu;
    if (o->gpu_budget) argv[a++] = "--gpu-budget", argv[a++] = o->gpu_budget;
    if (o->gpu_host) argv[a++] = "--gpu-host", argv[a++] = o->gpu_host;
    if (o->gpu_layers) argv[a++] = "-ngl", argv[a++] = o->gpu_layers;
    argv[a] = NULL;

    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) return err_set(HY_ERR_IO, "cannot start a run: fork: %s", strerror(errno));
    if (pid == 0) {
        const int out = open("/dev/null", O_WRONLY);
        const int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || log < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(log, STDERR_FILENO) < 0)
            _exit(126);
        execv(exe, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return err_set(HY_ERR_IO, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "hypura bench: the run in mode %s failed; its last lines:\n", mode);
        print_log_tail(log_path, 4);
        if (WIFSIGNALED(status))
            return err_set(HY_ERR_IO, "`hypura run --mode %s` was killed by signal %d%s", mode,
                           WTERMSIG(status),
                           WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
        return err_set(HY_ERR_IO, "`hypura run --mode %s` exited with status %d", mode,
                       WEXITSTATUS(status));
    }
    json_error_t je;
    json_t *j = json_load_file(stats_path, 0, &je);
    if (!j)
        return err_set(HY_ERR_IO, "%s: cannot read the run's statistics: %s", stats_path, je.text);
    const char *m = json_string_value(json_object_get(j, "mode"));
    snprintf(r->mode, sizeof r->mode, "%s", m ? m : "?");
    r->n_prompt = (int64_t)jnum(j, "n_prompt");
    r->n_gen = (int64_t)jnum(j, "n_gen");
    r->prompt_tok_per_s = jnum(j, "prompt_tok_per_s");
    r->gen_tok_per_s = jnum(j, "gen_tok_per_s");
    r->decode_tok_per_s = jnum(j, "decode_tok_per_s");
    r->bytes_read_per_token = jnum(j, "bytes_read_per_token");
    const double hits = jnum(j, "expert_hits"), misses = jnum(j, "expert_misses");
    r->hit_rate = hits + misses > 0 ? jnum(j, "expert_hit_rate") : -1.0;
    r->predicted_gen_tok_per_s = jnum(j, "predicted_gen_tok_per_s");
    r->peak_rss_bytes = (uint64_t)jnum(j, "peak_rss_bytes");
    r->bytes_read = (uint64_t)jnum(j, "bytes_read");
    r->ram_budget_bytes = (uint64_t)jnum(j, "ram_budget_bytes");
    r->resident_bytes = (uint64_t)jnum(j, "resident_bytes");
    r->io_stall_s = jnum(j, "io_stall_s");
    r->disk_gb_per_s = jnum(j, "disk_gb_per_s");
    const char *be = json_string_value(json_object_get(j, "backend"));
    r->gpu_host_bytes = be && !strcmp(be, "cuda")
                            ? jnum(j, "gpu_host_cpu_bytes") + jnum(j, "gpu_host_copy_bytes")
                            : NAN;
    json_decref(j);
    if (isnan(r->prompt_tok_per_s) || isnan(r->gen_tok_per_s) || isnan(r->bytes_read_per_token))
        return err_set(HY_ERR_FORMAT, "%s: the run's statistics lack tok/s or bytes per token",
                       stats_path);
    return HY_OK;
}

/* Appends r as one JSON line to path. */
HY_MUST_CHECK static enum hy_status append_json(const char *path, const struct bench_opts *o,
                                                const struct bench_run *r, bool cold)
{
    char ts[32];
    const time_t now = time(NULL);
    struct tm tmv;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    json_t *j = json_object();
    json_object_set_new(j, "timestamp", json_string(ts));
    json_object_set_new(j, "hypura_version", json_string(hy_version()));
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "mode", json_string(r->mode));
    json_object_set_new(j, "role", json_string(r->baseline ? "baseline" : "hypura"));
    json_object_set_new(j, "rep", json_integer(r->rep));
    json_object_set_new(j, "cache", json_string(cold ? "cold" : "warm"));
    json_object_set_new(j, "cache_detail", json_string(r->cache));
    json_object_set_new(j, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(j, "n_gen", json_integer(r->n_gen));
    json_object_set_new(j, "prompt_tok_per_s", json_real(r->prompt_tok_per_s));
    json_object_set_new(j, "gen_tok_per_s", json_real(r->gen_tok_per_s));
    json_object_set_new(j, "decode_tok_per_s",
                        isnan(r->decode_tok_per_s) ? json_null() : json_real(r->decode_tok_per_s));
    json_object_set_new(j, "bytes_read_per_token", json_real(r->bytes_read_per_token));
    json_object_set_new(j, "bytes_read", json_integer((json_int_t)r->bytes_read));
    json_object_set_new(j, "expert_hit_rate",
                        r->hit_rate >= 0 ? json_real(r->hit_rate) : json_null());
    json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss_bytes));
    json_object_set_new(j, "predicted_gen_tok_per_s",
                        r->baseline || isnan(r->predicted_gen_tok_per_s)
                            ? json_null()
                            : json_real(r->predicted_gen_tok_per_s));
    json_object_set_new(j, "ram_budget_bytes", json_integer((json_int_t)r->ram_budget_bytes));
    json_object_set_new(j, "resident_bytes", json_integer((json_int_t)r->resident_bytes));
    json_object_set_new(j, "io_stall_s", json_real(isnan(r->io_stall_s) ? 0.0 : r->io_stall_s));
    json_object_set_new(j, "disk_gb_per_s",
                        json_real(isnan(r->disk_gb_per_s) ? 0.0 : r->disk_gb_per_s));
    json_object_set_new(j, "gpu_host_bytes",
                        isnan(r->gpu_host_bytes) ? json_null() : json_real(r->gpu_host_bytes));
    char *line = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    FILE *f = fopen(path, "a");
    if (!f) {
        free(line);
        return err_set(HY_ERR_IO, "--json %s: cannot open: %s", path, strerror(errno));
    }
    bool ok = fprintf(f, "%s\n", line) >= 0;
    ok = fclose(f) == 0 && ok;
    free(line);
    if (!ok) return err_set(HY_ERR_IO, "--json %s: cannot write: %s", path, strerror(errno));
    return HY_OK;
}

/* ---- summary ---- */

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stat3 {
    double med, min, max;
};

/* Median, min and max of field (offset into struct bench_run) over the runs
 * of one role; NAN when there are none. */
static struct stat3 stat_of(const struct bench_run *runs, int n, bool baseline, size_t off)
{
    double v[1000]; /* -r is at most 1000 */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (runs[i].baseline == baseline) v[k++] = *(const double *)((const char *)&runs[i] + off);
    struct stat3 s = {NAN, NAN, NAN};
    if (!k) return s;
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    s.min = v[0];
    s.max = v[k - 1];
    s.med = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    return s;
}

static void print_row(const struct bench_run *runs, int n, bool baseline)
{
    const struct bench_run *first = NULL;
    uint64_t rss = 0;
    for (int i = 0; i < n; i++)
        if (runs[i].baseline == baseline) {
            if (!first) first = &runs[i];
            rss = HY_MAX(rss, runs[i].peak_rss_bytes);
        }
    if (!first) return;
    const struct stat3 pp =
        stat_of(runs, n, baseline, offsetof(struct bench_run, prompt_tok_per_s));
    const struct stat3 tg = stat_of(runs, n, baseline, offsetof(struct bench_run, gen_tok_per_s));
    const struct stat3 bpt =
        stat_of(runs, n, baseline, offsetof(struct bench_run, bytes_read_per_token));
    const struct stat3 hr = stat_of(runs, n, baseline, offsetof(struct bench_run, hit_rate));
    char pps[48], tgs[48], bps[32], hrs[16], rs[32], pred[32];
    snprintf(pps, sizeof pps, "%.1f [%.1f-%.1f]", pp.med, pp.min, pp.max);
    snprintf(tgs, sizeof tgs, "%.2f [%.2f-%.2f]", tg.med, tg.min, tg.max);
    if (bpt.med > 0)
        sizes_format((uint64_t)bpt.med, bps, sizeof bps);
    else
        snprintf(bps, sizeof bps, "0");
    if (hr.med >= 0)
        snprintf(hrs, sizeof hrs, "%.1f%%", 100.0 * hr.med);
    else
        snprintf(hrs, sizeof hrs, "-");
    sizes_format(rss, rs, sizeof rs);
    if (!baseline && first->predicted_gen_tok_per_s > 0)
        snprintf(pred, sizeof pred, "%.2f (x%.2f)", first->predicted_gen_tok_per_s,
                 tg.med / first->predicted_gen_tok_per_s);
    else
        snprintf(pred, sizeof pred, "-");
    printf("%-9s %-14s %-26s %-26s %10s %8s %10s  %s\n", baseline ? "baseline" : "hypura",
           first->mode, pps, tgs, bps, hrs, rs, pred);
}

static void print_table(const struct bench_opts *o, const struct bench_run *runs, int n,
                        const char *cache, uint64_t file_bytes)
{
    char fs[32];
    printf("hypura bench: %s (%s), prompt %" PRId64 " tokens, generate %" PRId64 ", %" PRId64
           " repetition%s per mode, %s page cache\n",
           o->model, sizes_format(file_bytes, fs, sizeof fs), o->n_prompt, o->n_gen, o->reps,
           o->reps == 1 ? "" : "s", cache);
    printf("%-9s %-14s %-26s %-26s %10s %8s %10s  %s\n", "role", "mode", "prompt tok/s med [range]",
           "decode tok/s med [range]", "read/token", "hit rate", "peak RSS",
           "predicted decode (measured/predicted)");
    print_row(runs, n, true);
    print_row(runs, n, false);
    for (int i = 0; i < n; i++)
        if (runs[i].n_gen < o->n_gen) {
            printf("note: run %d (%s) generated %" PRId64 " of %" PRId64
                   " tokens (end of generation)\n",
                   i + 1, runs[i].mode, runs[i].n_gen, o->n_gen);
            break;
        }
    bool have_base = false;
    for (int i = 0; i < n; i++) have_base |= runs[i].baseline;
    if (have_base) {
        const struct stat3 bp =
            stat_of(runs, n, true, offsetof(struct bench_run, prompt_tok_per_s));
        const struct stat3 bg = stat_of(runs, n, true, offsetof(struct bench_run, gen_tok_per_s));
        const struct stat3 hp =
            stat_of(runs, n, false, offsetof(struct bench_run, prompt_tok_per_s));
        const struct stat3 hg = stat_of(runs, n, false, offsetof(struct bench_run, gen_tok_per_s));
        printf("speedup (hypura / mmap baseline, medians): prompt x%.2f, decode x%.2f\n",
               bp.med > 0 ? hp.med / bp.med : 0.0, bg.med > 0 ? hg.med / bg.med : 0.0);
    }
}

/* ---- SVG ---- */

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            /* XML 1.0 forbids most control characters */
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n') fputc(*s, f);
        }
    }
}

#define SVG_W     960
#define SVG_LEFT  70
#define SVG_PANEL 170
#define SVG_GAP   60

/* One bar per run of field, in panel idx (0-based from the top). */
static void svg_panel(FILE *f, int idx, const char *title, const struct bench_run *runs, int n,
                      size_t off, double scale, const char *fmt)
{
    const int y0 = 70 + idx * (SVG_PANEL + SVG_GAP);
    const int plot_w = SVG_W - SVG_LEFT - 30;
    double vmax = 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        const double v = *(const double *)((const char *)&runs[i] + off) * scale;
        if (v >= 0 && !isnan(v)) any = true, vmax = HY_MAX(vmax, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">", SVG_LEFT, y0 - 10);
    svg_text(f, title);
    fprintf(f, "</text>\n");
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", SVG_LEFT,
            y0 + SVG_PANEL, SVG_LEFT + plot_w, y0 + SVG_PANEL);
    if (!any) {
        fprintf(f,
                "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#666\">no value in these "
                "runs (no expert cache: a dense model or a mode without one)</text>\n",
                SVG_LEFT + 10, y0 + SVG_PANEL / 2);
        return;
    }
    if (vmax <= 0) vmax = 1;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">", SVG_LEFT - 6,
            y0 + 4);
    fprintf(f, fmt, vmax);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">0</text>\n",
            SVG_LEFT - 6, y0 + SVG_PANEL);
    const double slot = (double)plot_w / n;
    const double bw = HY_MIN(slot * 0.7, 80.0);
    for (int i = 0; i < n; i++) {
        const double v = *(const double *)((const char *)&runs[i] + off) * scale;
        const double x = SVG_LEFT + slot * i + (slot - bw) / 2;
        const double h = v >= 0 && !isnan(v) ? v / vmax * SVG_PANEL : 0;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x,
                y0 + SVG_PANEL - h, bw, h, runs[i].baseline ? "#999999" : "#2b6cb0");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">",
                x + bw / 2, y0 + SVG_PANEL - h - 3);
        if (v >= 0 && !isnan(v))
            fprintf(f, fmt, v);
        else
            fputs("-", f);
        fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">",
                x + bw / 2, y0 + SVG_PANEL + 14);
        svg_text(f, runs[i].mode);
        fprintf(f, " #%d</text>\n", runs[i].rep);
    }
}

HY_MUST_CHECK static enum hy_status write_plot(const char *path, const struct bench_opts *o,
                                               const struct bench_run *runs, int n,
                                               const char *cache)
{
    FILE *f = fopen(path, "w");
    if (!f) return err_set(HY_ERR_IO, "--plot %s: cannot open: %s", path, strerror(errno));
    const int h = 70 + 4 * (SVG_PANEL + SVG_GAP);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">hypura bench: ",
            SVG_W, h, SVG_W, h, SVG_LEFT);
    svg_text(f, o->model);
    fprintf(f,
            "</text>\n<text x=\"%d\" y=\"44\" font-size=\"12\">prompt %" PRId64
            " tokens, generate %" PRId64 ", %s page cache; grey: mmap baseline, blue: hypura; "
            "values per run (run totals, not per token)</text>\n",
            SVG_LEFT, o->n_prompt, o->n_gen, cache);
    svg_panel(f, 0, "prompt tok/s", runs, n, offsetof(struct bench_run, prompt_tok_per_s), 1.0,
              "%.1f");
    svg_panel(f, 1, "decode tok/s", runs, n, offsetof(struct bench_run, gen_tok_per_s), 1.0,
              "%.2f");
    svg_panel(f, 2, "MiB read from the file per generated token", runs, n,
              offsetof(struct bench_run, bytes_read_per_token), 1.0 / 1048576.0, "%.1f");
    svg_panel(f, 3, "expert cache hit rate (%)", runs, n, offsetof(struct bench_run, hit_rate),
              100.0, "%.1f");
    fputs("</svg>\n", f);
    const bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok)
        return err_set(HY_ERR_IO, "--plot %s: cannot write: %s", path, strerror(errno));
    return HY_OK;
}

/* ---- the command ---- */

/* The limit the guardrail compares the file with: RAM total (or
 * HYPURA_BENCH_RAM_BYTES), or the cgroup limit when smaller; *what names it. */
HY_MUST_CHECK static enum hy_status guard_limit(uint64_t *limit, const char **what)
{
    struct hw_profile p;
    hw_probe_static(&p);
    *limit = p.ram_total_bytes;
    *what = "RAM total";
    const char *env = getenv("HYPURA_BENCH_RAM_BYTES");
    if (env && *env) {
        if (sizes_parse(env, limit))
            return err_prefix(HY_ERR_INVALID_ARG, "HYPURA_BENCH_RAM_BYTES: ");
        *what = "RAM total (HYPURA_BENCH_RAM_BYTES)";
    }
    if (p.cgroup_version && p.cgroup_limit_bytes < *limit) {
        *limit = p.cgroup_limit_bytes;
        *what = "the cgroup memory limit";
    }
    return HY_OK;
}

int cmd_bench(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "bench", argc - 1, argv + 1);
    struct bench_opts o = {
        .n_prompt = BENCH_DEFAULT_PROMPT,
        .n_gen = BENCH_DEFAULT_GEN,
        .reps = BENCH_DEFAULT_REPS,
        .mode = "auto",
    };
    enum hy_status st;
    if (parse_opts(&c, &o, &st) < 0) return 0;
    if (st) return cli_fail("bench", st);

    struct stat sb;
    if (stat(o.model, &sb) != 0)
        return cli_fail("bench", err_set(HY_ERR_IO, "%s: %s", o.model, strerror(errno)));
    const uint64_t file_bytes = (uint64_t)sb.st_size;
    char exe[PATH_MAX];
    const ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0)
        return cli_fail("bench", err_set(HY_ERR_IO, "cannot find this program (/proc/self/exe): %s",
                                         strerror(errno)));
    exe[el] = '\0';

    bool run_baseline = o.baseline;
    if (o.baseline) {
        uint64_t limit = 0;
        const char *what = NULL;
        if ((st = guard_limit(&limit, &what))) return cli_fail("bench", st);
        const uint64_t allowed = limit > BENCH_HEADROOM_BYTES ? limit - BENCH_HEADROOM_BYTES : 0;
        if (file_bytes > allowed) {
            char a[32], b[32], d[32];
            sizes_format(file_bytes, a, sizeof a);
            sizes_format(limit, b, sizeof b);
            sizes_format(allowed, d, sizeof d);
            if (o.force_baseline) {
                fprintf(stderr,
                        "bench: the model file (%s) is larger than %s (%s) - 4 GiB = %s; "
                        "running the mmap baseline anyway (--force-baseline): it may thrash\n",
                        a, what, b, d);
            } else {
                run_baseline = false;
                printf("baseline skipped: the model file (%s) is larger than %s (%s) - 4 GiB "
                       "headroom = %s; a memory-mapped run would evict and re-read the weights "
                       "on every token and could stall the machine (--force-baseline runs it "
                       "anyway)\n",
                       a, what, b, d);
            }
        }
    }

    char dir[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/hypura-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return cli_fail("bench", err_set(HY_ERR_IO, "%s: cannot create a temporary directory: %s",
                                         dir, strerror(errno)));
    char prompt_path[PATH_MAX + 16];
    snprintf(prompt_path, sizeof prompt_path, "%s/prompt.txt", dir);
    char *prompt = NULL;
    const int n_runs = (int)(o.reps * (run_baseline ? 2 : 1));
    struct bench_run *runs = mem_xcalloc((size_t)n_runs, sizeof(*runs));
    int done = 0;
    if ((st = make_prompt(o.model, o.n_prompt, &prompt))) goto out;
    {
        FILE *pf = fopen(prompt_path, "wb");
        /* run -f drops one trailing newline: the one written here */
        bool ok = pf && fprintf(pf, "%s\n", prompt) >= 0;
        if (pf && fclose(pf) != 0) ok = false;
        if (!ok) {
            st =
                err_set(HY_ERR_IO, "%s: cannot write the prompt: %s", prompt_path, strerror(errno));
            goto out;
        }
    }
    const char *cache = o.cold ? "cold" : "warm";
    for (int role = run_baseline ? 0 : 1; role < 2; role++) {
        const char *mode = role == 0 ? "mmap" : o.mode;
        for (int rep = 1; rep <= o.reps; rep++) {
            struct bench_run *r = &runs[done];
            r->baseline = role == 0;
            r->rep = rep;
            snprintf(r->cache, sizeof r->cache, "warm");
            if (o.cold) {
                char how[256];
                if ((st = drop_cache(o.model, how, sizeof how))) goto out;
                snprintf(r->cache, sizeof r->cache, "cold: %s", how);
                fprintf(stderr, "bench: page cache: %s\n", how);
            }
            fprintf(stderr, "bench: %s run %d/%" PRId64 " (--mode %s) ...\n",
                    role == 0 ? "baseline" : "hypura", rep, o.reps, mode);
            if ((st = run_once(&o, exe, dir, mode, r))) goto out;
            done++;
            fprintf(stderr,
                    "bench:   mode %s: prompt %" PRId64 " tok at %.1f tok/s, decode %" PRId64
                    " tok at %.2f tok/s, %.0f B read/token, peak RSS %.1f MiB\n",
                    r->mode, r->n_prompt, r->prompt_tok_per_s, r->n_gen, r->gen_tok_per_s,
                    r->bytes_read_per_token, (double)r->peak_rss_bytes / 1048576.0);
            if (r->n_prompt != o.n_prompt)
                fprintf(stderr,
                        "bench: warning: the run evaluated %" PRId64 " prompt tokens, not %" PRId64
                        "\n",
                        r->n_prompt, o.n_prompt);
            if (o.json_path && (st = append_json(o.json_path, &o, r, o.cold))) goto out;
        }
    }
    print_table(&o, runs, done, cache, file_bytes);
    if (o.plot_path && (st = write_plot(o.plot_path, &o, runs, done, cache))) goto out;
out:
    free(prompt);
    free(runs);
    {
        char p[PATH_MAX + 16];
        static const char *const names[] = {"prompt.txt", "stats.json", "run.log"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            unlink(p);
        }
        rmdir(dir);
    }
    fflush(stdout);
    return st ? cli_fail("bench", st) : 0;
}
