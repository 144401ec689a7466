/*
 * hypura perplexity -m MODEL -f TEXT_FILE [-c CTX] [-b N] [-t N] [options]
 *
 * Perplexity of a model on a text by llama.cpp's llama-perplexity protocol
 * (src/model/perplexity.h), so that the two compare: the same chunks, the
 * same scored tokens, the same estimate and error formula. The plan and
 * progress go to stderr; stdout gets the running estimate after each chunk
 * ("[1]12.3456,[2]..." as llama.cpp prints it) and, as its last line,
 * "Final estimate: PPL = <value> +/- <error>".
 *
 * The text is read as llama.cpp's -f reads it (one trailing newline
 * dropped) and tokenized as it does for perplexity: BOS first when the
 * vocabulary adds one, control-token text left as text.
 *
 * The model is placed as `hypura run` places it (the engine: the plan for
 * --ram-budget, --mode, and the GPU tier for --gpu / --gpu-budget /
 * --gpu-host), so a model larger than RAM streams and a CUDA device
 * computes what it holds, as llama-perplexity -ngl does.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "engine/engine.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "quant/quant.h"
#include "text/tokenizer.h"

#define PPL_DEFAULT_CTX   512
#define PPL_DEFAULT_BATCH 2048

struct ppl_opts {
    const char *model;
    const char *file;
    int64_t n_ctx;
    int64_t n_batch;
    int64_t n_threads;
    int64_t n_chunks;
    uint32_t kv_type;
    uint64_t ram_budget;
    const char *mode;
    struct cli_gpu gpu;
};

static void ppl_help(void)
{
    printf("usage: hypura perplexity -m MODEL.gguf -f TEXT_FILE [options]\n\n"
           "Perplexity of the model on a text, computed as llama.cpp's llama-perplexity does:\n"
           "the text (BOS first when the model adds one) is cut into chunks of CTX tokens, each\n"
           "evaluated from an empty cache with BOS in place of its first token, and the second\n"
           "half of each chunk is scored. The running estimate is printed after each chunk;\n"
           "the last line is \"Final estimate: PPL = <value> +/- <error>\".\n\n"
           "options:\n"
           "  -m, --model FILE       GGUF model (required)\n"
           "  -f, --file FILE        text to score (required; needs at least 2 * CTX tokens)\n"
           "  -c, --ctx-size N       tokens per chunk (default: %d)\n"
           "  -b, --batch-size N     tokens per forward step, at most CTX (default: %d, so CTX)\n"
           "  -t, --threads N        CPU threads (default: physical cores, here %d)\n"
           "  --chunks N             score only the first N chunks; -1: all (default: -1)\n"
           "  --kv-type TYPE         KV cache type: f32, f16 or q8_0 (default: f16)\n"
           "  --ram-budget SIZE      RAM the weights may take, e.g. 16G (default: available\n"
           "                         RAM minus headroom; as hypura run)\n"
           "  --mode MODE            placement: auto, resident, dense-stream, expert-stream,\n"
           "                         mmap (as hypura run; default: auto)\n"
           "  --gpu WHEN             CUDA GPU: auto (when a device is present), on, off\n"
           "                         (default: auto)\n"
           "  --gpu-budget SIZE      VRAM for weights, KV cache, logits and buffers (default:\n"
           "                         free VRAM minus headroom); the rest stays on the host\n"
           "  -ngl, --n-gpu-layers N llama.cpp's layer count: the budget of its -ngl N (the GPU\n"
           "                         minimum and the weights llama.cpp offloads for N layers:\n"
           "                         the output head, then the last N - 1 blocks); instead of\n"
           "                         --gpu-budget (default: not given, --gpu-budget's default)\n"
           "  --gpu-host HOW         host weights with a GPU: auto, cpu, copy (default: auto)\n"
           "  -h, --help             show this help\n",
           PPL_DEFAULT_CTX, PPL_DEFAULT_BATCH, cli_physical_cores());
}

/* Returns -1 after --help, else a status. */
static int parse_opts(struct cli *c, struct ppl_opts *o, enum hy_status *st)
{
    *st = HY_OK;
    while (cli_more(c) && !*st) {
        if (cli_match(c, "-h", "--help")) {
            ppl_help();
            return -1;
        } else if (cli_match(c, "-m", "--model")) {
            *st = cli_value(c, &o->model);
        } else if (cli_match(c, "-f", "--file")) {
            *st = cli_value(c, &o->file);
        } else if (cli_match(c, "-c", "--ctx-size")) {
            *st = cli_int(c, 4, INT32_MAX, &o->n_ctx);
        } else if (cli_match(c, "-b", "--batch-size")) {
            *st = cli_int(c, 1, INT32_MAX, &o->n_batch);
        } else if (cli_match(c, "-t", "--threads")) {
            *st = cli_int(c, 1, 1024, &o->n_threads);
        } else if (cli_match(c, NULL, "--chunks")) {
            *st = cli_int(c, -1, INT32_MAX, &o->n_chunks);
        } else if (cli_match(c, NULL, "--ram-budget")) {
            *st = cli_size(c, &o->ram_budget);
        } else if (cli_match(c, NULL, "--mode")) {
            *st = cli_value(c, &o->mode);
        } else if (cli_match_gpu(c, &o->gpu, st)) {
        } else if (cli_match(c, NULL, "--kv-type")) {
            const char *v = NULL;
            if (!(*st = cli_value(c, &v))) {
                int t = quant_type_from_name(v);
                if (t != HY_TYPE_F32 && t != HY_TYPE_F16 && t != HY_TYPE_Q8_0)
                    *st = err_set(HY_ERR_INVALID_ARG,
                                  "option --kv-type: '%s' is not a KV cache type (f32, f16, q8_0)",
                                  v);
                else
                    o->kv_type = (uint32_t)t;
            }
        } else {
            *st = cli_unknown(c);
        }
    }
    if (*st) return 0;
    if (!o->model)
        *st = err_set(HY_ERR_INVALID_ARG, "no model given (-m MODEL.gguf)");
    else if (!o->file)
        *st = err_set(HY_ERR_INVALID_ARG, "no text given (-f TEXT_FILE)");
    else if (o->n_chunks == 0)
        *st = err_set(HY_ERR_INVALID_ARG, "option --chunks: 0 chunks score nothing");
    return 0;
}

/* The whole file, without one trailing newline (llama.cpp's -f); *len its bytes. */
HY_MUST_CHECK static enum hy_status read_text(const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mem_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = mem_xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    const bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return err_set(HY_ERR_IO, "%s: read failed", path);
    }
    if (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return HY_OK;
}

static void load_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    cli_progress("loading", done, total);
}

static void chunk_done(void *user, int64_t chunk, int64_t n_chunks, double ppl)
{
    const int64_t t0 = *(const int64_t *)user;
    if (chunk == 1) {
        const double s = (double)(timing_now_us() - t0) / 1e6;
        fprintf(stderr, "perplexity: %.2f s per chunk, about %.1f s for %" PRId64 " chunks\n", s,
                s * (double)n_chunks, n_chunks);
    }
    printf("[%" PRId64 "]%.4f,", chunk, ppl);
    fflush(stdout);
}

int cmd_perplexity(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "perplexity", argc - 1, argv + 1);
    struct ppl_opts o = {
        .n_ctx = PPL_DEFAULT_CTX,
        .n_batch = PPL_DEFAULT_BATCH,
        .n_chunks = -1,
        .kv_type = FORWARD_DEFAULT_KV_TYPE,
        .mode = "auto",
        .gpu = CLI_GPU_DEFAULT,
    };
    enum hy_status st;
    if (parse_opts(&c, &o, &st) < 0) return 0;
    if (st) return cli_fail("perplexity", st);
    if (!o.n_threads) o.n_threads = cli_physical_cores();

    struct engine *e = NULL;
    char *text = NULL;
    int32_t *tokens = NULL;
    int rc = 1;
    size_t text_len = 0;

    if ((st = read_text(o.file, &text, &text_len))) goto fail;
    struct plan_hw phw;
    char hw_source[PATH_MAX + 96];
    cli_load_hw(&phw, &o.ram_budget, hw_source, sizeof hw_source);
    struct engine_opts eo = {
        .model_path = o.model,
        .n_ctx = o.n_ctx,
        .n_threads = o.n_threads,
        .n_batch = HY_MIN(o.n_batch, o.n_ctx),
        .kv_type = o.kv_type,
        .logits_all = true,
        .hw = &phw,
        .ram_budget_bytes = o.ram_budget,
        .mode = o.mode,
        .gpu = o.gpu.when,
        .gpu_budget_bytes = o.gpu.budget,
        .gpu_layers_set = o.gpu.layers >= 0,
        .gpu_layers = o.gpu.layers,
        .gpu_host = o.gpu.host,
    };
    if ((st = engine_open(&eo, &e))) goto fail;
    if (e->gpu_note[0]) fprintf(stderr, "note: %s\n", e->gpu_note);
    struct forward *f = e->seq[0].f;
    const struct model *m = e->m;

    int64_t n_tokens = 0;
    /* llama.cpp: common_tokenize(text, add_special = true, parse_special = false); it
     * refuses a vocabulary that appends EOS, so only BOS is asked for */
    if ((st = engine_tokenize(e, text, text_len, TOKENIZER_ADD_BOS, &tokens, &n_tokens))) goto fail;
    if (n_tokens < 2 * o.n_ctx) {
        st = err_set(HY_ERR_INVALID_ARG,
                     "%s: %" PRId64 " tokens, fewer than 2 * ctx (%" PRId64
                     ") that perplexity needs\nhint: a longer text or a smaller -c",
                     o.file, n_tokens, 2 * o.n_ctx);
        goto fail;
    }

    char a[32], k[32];
    const int64_t n_chunk_max = n_tokens / o.n_ctx;
    const int64_t n_chunk = o.n_chunks > 0 ? HY_MIN(o.n_chunks, n_chunk_max) : n_chunk_max;
    fprintf(stderr,
            "model: %s: %s, %s weights; KV cache %s (%s); %d threads (%s kernels)\n"
            "perplexity: %s: %zu bytes, %" PRId64 " tokens; %" PRId64 " chunks of %" PRId64
            " tokens in steps of %" PRId64 "\n",
            o.model, m->info.arch, sizes_format(m->weight_bytes, a, sizeof a),
            sizes_format(forward_kv_bytes(f), k, sizeof k), quant_type_name(forward_kv_type(f)),
            e->be->n_threads, e->on_gpu ? "cuda" : cpu_backend_kernels(e->be), o.file, text_len,
            n_tokens, n_chunk, o.n_ctx, forward_n_batch(f));
    if (e->have_plan)
        fprintf(stderr, "plan: mode %s%s (hardware from %s)\n",
                e->use_mmap ? "mmap" : plan_mode_name(e->plan.mode),
                e->plan.forced ? " (--mode)" : "", hw_source);
    else
        fprintf(stderr, "plan: no placement for this budget: %s\n", e->plan_err);

    if ((st = engine_load_weights(e, load_progress, NULL))) goto fail;
    cli_progress_end();
    cli_print_gpu(e);

    struct perplexity_params pp = {
        .n_ctx = o.n_ctx,
        .n_chunks = o.n_chunks,
        .bos_id = e->tok.add_bos ? e->tok.bos_id : -1,
        .n_threads = (int)o.n_threads,
    };
    struct perplexity_result res;
    int64_t t0 = timing_now_us();
    if ((st = perplexity_eval(f, tokens, n_tokens, &pp, chunk_done, &t0, &res))) goto fail;
    const double secs = (double)(timing_now_us() - t0) / 1e6;
    printf("\n");
    fprintf(stderr,
            "perplexity: %" PRId64 " chunks, %" PRId64 " tokens scored in %.2f s (%.1f tok/s)\n",
            res.n_chunks, res.n_scored, secs,
            secs > 0 ? (double)(res.n_chunks * o.n_ctx) / secs : 0.0);
    printf("Final estimate: PPL = %.4f +/- %.5f\n", res.ppl, res.ppl_err);
    fflush(stdout);
    rc = 0;
    goto done;
fail:
    cli_progress_end();
    fflush(stdout);
    rc = cli_fail("perplexity", st);
done:
    free(tokens);
    engine_close(e);
    free(text);
    return rc;
}
