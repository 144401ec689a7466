/*
 * hypura run -m MODEL (-p PROMPT | -f FILE) [-n N] [options]
 *
 * Loads a model, prints the plan (mode, budget, sizes, KV cache, RoPE) to
 * stderr, evaluates the prompt and streams the generated text to stdout, then
 * prints timings, a one-line summary and, for MoE models, how the routers
 * spread their picks over the experts, all on stderr.
 *
 * stdout carries exactly the generated text, so that it can be piped: no
 * prompt echo, no logs, and the text of a stop string is never printed (the
 * stream holds back what could still become one, src/sample/stop_filter.h).
 * Only when stdout is a terminal does a final newline follow. The first
 * generated piece keeps its leading space, as llama.cpp prints it: the text
 * continues the prompt.
 *
 * Generation ends at an end-of-generation token (EOS, EOT, <|im_end|>, ...:
 * the tokenizer's set, as llama.cpp's), a stop string, the -n limit or a full context. --stats-json
 * writes the run's numbers as one JSON object (see write_stats).
 *
 * Only the resident mode exists so far: a model above the RAM budget is
 * still loaded whole, with a line saying so.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "engine/engine.h"
#include "run_chat.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/quant.h"
#include "sample/sampler.h"
#include "store/store.h"
#include "text/tokenizer.h"

#define RUN_DEFAULT_N_PREDICT 128
#define RUN_DEFAULT_CTX       ENGINE_DEFAULT_CTX

struct run_opts {
    const char *model;
    const char *prompt;      /* -p, or the contents of -f (owned by prompt_buf) */
    const char *prompt_file; /* -f */
    char *prompt_buf;        /* owned: the file's text */
    int64_t n_predict;
    int64_t n_ctx;
    int64_t n_threads;
    int64_t n_batch;
    struct sampler_params sp;
    int64_t repeat_last_n; /* -1: the context length */
    bool seed_set;
    const char **stops; /* owned array of borrowed argv strings */
    int n_stops;
    uint32_t kv_type;
    const char *stats_json;
    uint64_t ram_budget;
    const char *mode;
    bool no_bos;
    bool verbose_prompt;
    bool chat;          /* --chat: -p is the system message */
    bool n_predict_set; /* -n given (--chat replies default to no limit) */
    enum io_kind io;
    struct cli_gpu gpu;
};

/* What a finished generation reports (stderr lines and --stats-json). */
struct run_stats {
    const struct plan *plan; /* borrowed; NULL when the budget has no plan */
    int64_t n_prompt;
    int64_t n_gen;
    int64_t n_decode; /* forward passes of one token */
    int64_t prompt_us;
    int64_t gen_us; /* sampling, detokenizing and decoding after the prompt */
    int64_t decode_us;
    uint64_t gen_bytes_read; /* read from the model file during generation (streaming) */
    int64_t gen_stall_us;    /* waited for those reads during generation */
    const char *stop;        /* why generation ended */
    const struct engine *e;  /* borrowed */
};

static void run_help(void)
{
    struct sampler_params d = sampler_default_params();
    printf(
        "usage: hypura run -m MODEL.gguf [-p PROMPT | -f FILE] [options]\n\n"
        "Generates text from a prompt on the CPU. stdout gets exactly the generated text (no\n"
        "prompt echo, no logs), so it can be piped; the plan, timings and a summary go to\n"
        "stderr. Architectures: llama (Llama 2/3, Mistral, Mixtral-style MoE), qwen2, qwen3,\n"
        "qwen2moe, qwen3moe; types F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the\n"
        "K-quants (Q4_K_M, Q5_K_M, ... files).\n\n"
        "options:\n"
        "  -m, --model FILE       GGUF model to run (required)\n"
        "  -p, --prompt TEXT      prompt; control-token text such as <s> in it is that token\n"
        "                         (default: empty: generate from BOS)\n"
        "  -f, --file FILE        read the prompt from FILE (one trailing newline dropped, as\n"
        "                         llama.cpp does); not together with -p\n"
        "  -n, --n-predict N      tokens to generate; -1: until end of generation or a full\n"
        "                         context (default: %d)\n"
        "  -c, --ctx-size N       context length (KV cache) in tokens; 0: the model's training\n"
        "                         context (default: %d)\n"
        "  -t, --threads N        CPU threads (default: physical cores, here %d)\n"
        "  -b, --batch-size N     prompt tokens evaluated per step (default: %d)\n"
        "  --kv-type TYPE         KV cache type: f32, f16 or q8_0 (default: f16)\n"
        "  --temp X               temperature; 0: greedy (default: %.2f)\n"
        "  --top-k N              keep the N most likely tokens; 0: off (default: %d)\n"
        "  --top-p X              nucleus sampling threshold; 1: off (default: %.2f)\n"
        "  --min-p X              drop tokens below X times the top probability; 0: off\n"
        "                         (default: %.2f)\n"
        "  --repeat-penalty X     divide (multiply, if negative) the logits of recent tokens by\n"
        "                         X; 1: off (default: %.2f)\n"
        "  --repeat-last-n N      recent tokens the penalties look at; 0: off, -1: the context\n"
        "                         (default: %d)\n"
        "  --frequency-penalty X  subtract X per occurrence of a recent token; 0: off (default:\n"
        "                         %.2f)\n"
        "  --presence-penalty X   subtract X once from each recent token; 0: off (default: %.2f)\n"
        "  --seed N               random seed (default: random, printed with the plan)\n"
        "  --stop TEXT            stop when the output contains TEXT (not printed); repeatable\n"
        "  --stats-json FILE      write the run's statistics as one JSON object to FILE: mode,\n"
        "                         n_prompt, n_gen, prompt_tok_per_s, gen_tok_per_s,\n"
        "                         peak_rss_bytes, bytes_read (from the model file, loading\n"
        "                         included), bytes_read_per_token (read per generated token while\n"
        "                         generating: 0 when resident), and more\n"
        "  --ram-budget SIZE      RAM the weights may take, e.g. 16G (default: available\n"
        "                         RAM minus headroom, never above a cgroup memory limit; as\n"
        "                         hypura plan)\n"
        "  --mode MODE            placement: auto (the plan's choice), resident, dense-stream\n"
        "                         (FFN layers that do not fit stream from the file),\n"
        "                         expert-stream (MoE: experts through a cache), mmap (the\n"
        "                         baseline: weights through a memory map, as llama.cpp) (default:\n"
        "                         auto)\n"
        "  --io KIND              how streamed weights are read: auto (io_uring, else a pread\n"
        "                         thread pool), uring, pread (default: auto)\n"
        "  --gpu WHEN             CUDA GPU: auto (when a device is present), on, off\n"
        "                         (default: auto)\n"
        "  --gpu-budget SIZE      VRAM for weights, KV cache and buffers, e.g. 20G (default,\n"
        "                         and for a SIZE past the free VRAM: free VRAM minus\n"
        "                         headroom); what does not fit stays in RAM or the file and\n"
        "                         is computed by the CPU or copied over PCIe\n"
        "  -ngl, --n-gpu-layers N llama.cpp's layer count: the budget of its -ngl N (the GPU\n"
        "                         minimum and the weights llama.cpp offloads for N layers:\n"
        "                         the output head, then the last N - 1 blocks); instead of\n"
        "                         --gpu-budget (default: not given, --gpu-budget's default)\n"
        "  --gpu-host HOW         host weights with a GPU: auto (by measured PCIe and CPU\n"
        "                         rates), cpu, copy (default: auto)\n"
        "  --chat                 interactive chat in the model's chat format (one line per\n"
        "                         turn; /exit or EOF ends); -p is the system message, -n\n"
        "                         bounds each reply (default: none); the KV cache is kept\n"
        "                         between turns\n"
        "  --no-bos               do not put the BOS token before the prompt\n"
        "  --verbose-prompt       print the prompt's tokens to stderr\n"
        "  -h, --help             show this help\n",
        RUN_DEFAULT_N_PREDICT, RUN_DEFAULT_CTX, cli_physical_cores(), FORWARD_DEFAULT_BATCH,
        (double)d.temp, (int)d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
        (int)d.repeat_last_n, (double)d.frequency_penalty, (double)d.presence_penalty);
}

/* The KV cache type of a --kv-type value. */
HY_MUST_CHECK static enum hy_status parse_kv_type(struct cli *c, uint32_t *out)
{
    const char *v = NULL;
    enum hy_status st = cli_value(c, &v);
    if (st) return st;
    int t = quant_type_from_name(v);
    if (t != HY_TYPE_F32 && t != HY_TYPE_F16 && t != HY_TYPE_Q8_0)
        return err_set(HY_ERR_INVALID_ARG,
                       "option %s: '%s' is not a KV cache type (f32, f16, q8_0)", c->opt, v);
    *out = (uint32_t)t;
    return HY_OK;
}

/* Returns -1 after --help, else a status. */
static int parse_opts(struct cli *c, struct run_opts *o, enum hy_status *st)
{
    *st = HY_OK;
    const char *prompt = NULL;
    while (cli_more(c) && !*st) {
        int64_t iv;
        double dv;
        if (cli_match(c, "-h", "--help")) {
            run_help();
            return -1;
        } else if (cli_match(c, "-m", "--model")) {
            *st = cli_value(c, &o->model);
        } else if (cli_match(c, "-p", "--prompt")) {
            *st = cli_value(c, &prompt);
        } else if (cli_match(c, "-f", "--file")) {
            *st = cli_value(c, &o->prompt_file);
        } else if (cli_match(c, "-n", "--n-predict")) {
            *st = cli_int(c, -1, INT32_MAX, &o->n_predict);
            o->n_predict_set = true;
        } else if (cli_match(c, "-c", "--ctx-size")) {
            *st = cli_int(c, 0, INT32_MAX, &o->n_ctx);
        } else if (cli_match(c, "-t", "--threads")) {
            *st = cli_int(c, 1, 1024, &o->n_threads);
        } else if (cli_match(c, "-b", "--batch-size")) {
            *st = cli_int(c, 1, 1 << 20, &o->n_batch);
        } else if (cli_match(c, NULL, "--kv-type")) {
            *st = parse_kv_type(c, &o->kv_type);
        } else if (cli_match(c, NULL, "--temp")) {
            if (!(*st = cli_double(c, 0.0, 100.0, &dv))) o->sp.temp = (float)dv;
        } else if (cli_match(c, NULL, "--top-k")) {
            if (!(*st = cli_int(c, 0, INT32_MAX, &iv))) o->sp.top_k = (int32_t)iv;
        } else if (cli_match(c, NULL, "--top-p")) {
            if (!(*st = cli_double(c, 0.0, 1.0, &dv))) o->sp.top_p = (float)dv;
        } else if (cli_match(c, NULL, "--min-p")) {
            if (!(*st = cli_double(c, 0.0, 1.0, &dv))) o->sp.min_p = (float)dv;
        } else if (cli_match(c, NULL, "--repeat-penalty")) {
            if (!(*st = cli_double(c, 0.01, 100.0, &dv))) o->sp.repeat_penalty = (float)dv;
        } else if (cli_match(c, NULL, "--repeat-last-n")) {
            *st = cli_int(c, -1, 1 << 24, &o->repeat_last_n);
        } else if (cli_match(c, NULL, "--frequency-penalty")) {
            if (!(*st = cli_double(c, -100.0, 100.0, &dv))) o->sp.frequency_penalty = (float)dv;
        } else if (cli_match(c, NULL, "--presence-penalty")) {
            if (!(*st = cli_double(c, -100.0, 100.0, &dv))) o->sp.presence_penalty = (float)dv;
        } else if (cli_match(c, NULL, "--seed")) {
            if (!(*st = cli_int(c, 0, INT64_MAX, &iv))) {
                o->sp.seed = (uint64_t)iv;
                o->seed_set = true;
            }
        } else if (cli_match(c, NULL, "--stop")) {
            const char *v = NULL;
            if (!(*st = cli_value(c, &v))) {
                if (!v[0])
                    *st = err_set(HY_ERR_INVALID_ARG, "option --stop: the stop string is empty");
                else
                    o->stops[o->n_stops++] = v;
            }
        } else if (cli_match(c, NULL, "--stats-json")) {
            *st = cli_value(c, &o->stats_json);
        } else if (cli_match(c, NULL, "--ram-budget")) {
            *st = cli_size(c, &o->ram_budget);
        } else if (cli_match(c, NULL, "--mode")) {
            *st = cli_value(c, &o->mode);
        } else if (cli_match(c, NULL, "--io")) {
            const char *v = NULL;
            if (!(*st = cli_value(c, &v)) && !io_kind_parse(v, &o->io))
                *st = err_set(HY_ERR_INVALID_ARG, "option --io: '%s' is not auto, uring or pread", v);
        } else if (cli_match_gpu(c, &o->gpu, st)) {
        } else if (cli_match(c, NULL, "--chat")) {
            o->chat = true;
        } else if (cli_match(c, NULL, "--no-bos")) {
            o->no_bos = true;
        } else if (cli_match(c, NULL, "--verbose-prompt")) {
            o->verbose_prompt = true;
        } else {
            *st = cli_unknown(c);
        }
    }
    if (*st) return 0;
    if (!o->model)
        *st = err_set(HY_ERR_INVALID_ARG, "no model given (-m MODEL.gguf)");
    else if (prompt && o->prompt_file)
        *st =
            err_set(HY_ERR_INVALID_ARG, "both -p and -f given: the prompt comes from one of them");
    if (prompt) o->prompt = prompt;
    return 0;
}

/* The prompt file's text, without one trailing newline (as llama.cpp's -f). */
HY_MUST_CHECK static enum hy_status read_prompt_file(struct run_opts *o)
{
    FILE *f = fopen(o->prompt_file, "rb");
    if (!f)
        return err_set(HY_ERR_IO, "%s: cannot open the prompt file: %s", o->prompt_file,
                       strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = mem_xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = mem_xrealloc(buf, cap *= 2);
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    const bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return err_set(HY_ERR_IO, "%s: cannot read the prompt file", o->prompt_file);
    }
    if (len > 0 && buf[len - 1] == '\n') len--;
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return err_set(HY_ERR_INVALID_ARG, "%s: the prompt file contains a NUL byte",
                       o->prompt_file);
    }
    o->prompt_buf = buf;
    o->prompt = buf;
    return HY_OK;
}

static void load_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    cli_progress("loading", done, total);
}

static void print_plan(const struct run_opts *o, const struct model *m, const struct forward *f,
                       const struct backend *be)
{
    const struct hparams *hp = m->hp;
    char a[32], b[32], k[32];
    const char *ft = model_info_ftype_name(m->info.file_type);
    fprintf(stderr, "model: %s: %s%s, %" PRId64 " layers, embd %" PRId64, o->model, m->info.arch,
            m->is_moe ? " (MoE)" : "", hp->n_layer, hp->n_embd);
    if (m->is_moe)
        fprintf(stderr, ", %" PRId64 " experts top-%" PRId64, hp->n_expert, hp->n_expert_used);
    fprintf(stderr, ", vocab %" PRId64 ", %s%s%s weights\n", m->n_vocab, ft ? ft : "",
            ft ? " " : "", sizes_format(m->weight_bytes, a, sizeof a));
    fprintf(stderr,
            "plan: RAM budget %s, weights %s + KV cache %s (%s, ctx %" PRId64
            "), %d threads (%s kernels)\n",
            sizes_format(o->ram_budget, b, sizeof b), a,
            sizes_format(forward_kv_bytes(f), k, sizeof k), quant_type_name(forward_kv_type(f)),
            forward_n_ctx(f), be->n_threads,
            backend_is_cuda(be) ? "cuda" : cpu_backend_kernels(be));
    const struct backend_rope *rp = forward_rope(f);
    fprintf(stderr, "rope: %s, %" PRId64 " of %" PRId64 " dims, base %g, linear scale %g%s\n",
            rp->mode == BACKEND_ROPE_NEOX ? "neox" : "normal", rp->n_rot, hp->head_dim,
            rp->freq_base, 1.0 / rp->freq_scale,
            rp->freq_factors ? ", frequency factors (rope_freqs.weight)" : "");
    if (hp->n_ctx_train > 0 && forward_n_ctx(f) > hp->n_ctx_train)
        fprintf(stderr,
                "plan: warning: context %" PRId64
                " is longer than the model was trained for (%" PRId64
                "); output may degrade past it\n",
                forward_n_ctx(f), hp->n_ctx_train);
    const struct sampler_params *sp = &o->sp;
    if (sp->temp > 0.0f)
        fprintf(stderr, "sampling: temp %.2f, top-k %d, top-p %.2f, min-p %.2f, seed %" PRIu64 "\n",
                (double)sp->temp, (int)sp->top_k, (double)sp->top_p, (double)sp->min_p, sp->seed);
    else
        fprintf(stderr, "sampling: greedy (temp 0)\n");
    fprintf(stderr,
            "penalties: repeat %.2f, frequency %.2f, presence %.2f over the last %d tokens\n",
            (double)sp->repeat_penalty, (double)sp->frequency_penalty, (double)sp->presence_penalty,
            (int)sp->repeat_last_n);
}

static void write_out(const char *s, size_t n)
{
    if (n) fwrite(s, 1, n, stdout);
}

static int cmp_count_desc(const void *a, const void *b, const uint64_t *counts)
{
    uint64_t x = counts[*(const int *)a], y = counts[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* Per layer: picks, the three busiest experts, and the share of the busiest 20%. */
static void print_routes(const struct forward_routes *r)
{
    const int64_t X = r->n_expert;
    const int64_t top = X / 5 > 0 ? X / 5 : 1;
    fprintf(stderr,
            "experts: %" PRIu64 " tokens routed, top-%" PRId64 " of %" PRId64
            " per layer; busiest experts as id:picks\n",
            r->n_routed, r->n_used, X);
    int *order = mem_xcalloc((size_t)X, sizeof(int));
    double share_sum = 0.0;
    for (int64_t l = 0; l < r->n_layer; l++) {
        const uint64_t *cnt = r->counts + l * X;
        uint64_t total = 0;
        for (int64_t e = 0; e < X; e++) {
            order[e] = (int)e;
            total += cnt[e];
        }
        for (int64_t i = 1; i < X; i++) {
            int v = order[i];
            int64_t j = i - 1;
            while (j >= 0 && cmp_count_desc(&order[j], &v, cnt) > 0) {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = v;
        }
        uint64_t top_sum = 0;
        for (int64_t i = 0; i < top; i++) top_sum += cnt[order[i]];
        double share = total ? (double)top_sum / (double)total : 0.0;
        share_sum += share;
        fprintf(stderr, "  layer %3" PRId64 ": %" PRIu64 " picks; busiest", l, total);
        for (int64_t i = 0; i < HY_MIN(3, X); i++)
            fprintf(stderr, " %d:%" PRIu64, order[i], cnt[order[i]]);
        fprintf(stderr, "; busiest 20%% (%" PRId64 " of %" PRId64 ") take %.0f%%\n", top, X,
                100.0 * share);
    }
    if (r->n_layer > 0)
        fprintf(
            stderr,
            "experts: the busiest 20%% take %.0f%% of picks on average (uniform routing: %.0f%%)\n",
            100.0 * share_sum / (double)r->n_layer, 100.0 * (double)top / (double)X);
    free(order);
}

/* RAM the run holds for its model: the store's arena and pool, the
 * sequences' buffers (KV cache, activations, logits) and the backend's scratch. */
static uint64_t run_resident_bytes(const struct engine *e)
{
    const struct engine_io io = engine_io(e);
    uint64_t b = io.resident_bytes + io.pool_bytes + e->be->scratch_bytes;
    for (int i = 0; i < e->n_seq; i++) b += forward_buffer_bytes(e->seq[i].f);
    return b;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

static double per_s(int64_t n, int64_t us)
{
    return us > 0 ? (double)n * 1e6 / (double)us : 0.0;
}

/* Peak resident set of this process in bytes (Linux reports ru_maxrss in KiB). */
static uint64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024;
}

/* One JSON object with the run's numbers; HY_ERR_IO naming the path when it cannot be written. */
HY_MUST_CHECK static enum hy_status write_stats(const struct run_opts *o, const struct model *m,
                                                const struct forward *f, const struct run_stats *s)
{
    const struct engine_io eio0 = engine_io(s->e);
    const uint64_t bytes_read = eio0.load_bytes + eio0.run_bytes;
    json_t *j = json_object();
    const struct engine_io eio = engine_io(s->e);
    json_object_set_new(j, "mode", json_string(s->e->mode));
    json_object_set_new(j, "io", json_string(s->e->m->store && store_io_kind(s->e->m->store)
                                                 ? store_io_kind(s->e->m->store) : "mmap"));
    json_object_set_new(j, "ram_budget_bytes", json_integer((json_int_t)o->ram_budget));
    json_object_set_new(j, "backend", json_string(s->e->on_gpu ? "cuda" : "cpu"));
    {
        const bool g = s->e->on_gpu;
        const struct cuda_backend_stats cs = g ? cuda_backend_stats(s->e->be)
                                               : (struct cuda_backend_stats){0};
        const uint64_t gw = g && s->e->m->store ? store_stats(s->e->m->store).gpu_bytes : 0;
        json_object_set_new(j, "gpu_budget_bytes",
                            json_integer((json_int_t)(g ? s->e->gpu_budget_bytes : 0)));
        json_object_set_new(j, "gpu_used_bytes",
                            json_integer((json_int_t)(g ? cuda_backend_device_bytes(s->e->be) : 0)));
        json_object_set_new(j, "gpu_weights_bytes", json_integer((json_int_t)gw));
        json_object_set_new(j, "gpu_host_cpu_bytes", json_integer((json_int_t)cs.host_cpu_bytes));
        json_object_set_new(j, "gpu_host_copy_bytes", json_integer((json_int_t)cs.host_copy_bytes));
        json_object_set_new(j, "gpu_cache_hits", json_integer((json_int_t)cs.cache_hits));
        json_object_set_new(j, "gpu_cache_misses", json_integer((json_int_t)cs.cache_misses));
        json_object_set_new(j, "gpu_cache_bytes", json_integer((json_int_t)cs.cache_bytes));
        json_object_set_new(j, "gpu_host_calls", json_integer((json_int_t)cs.host_calls));
        json_object_set_new(j, "gpu_host_x_wait_s", json_real((double)cs.host_x_wait_us / 1e6));
        json_object_set_new(j, "gpu_host_queue_s", json_real((double)cs.host_queue_us / 1e6));
        json_object_set_new(j, "gpu_host_cpu_s", json_real((double)cs.host_cpu_us / 1e6));
        json_object_set_new(j, "gpu_host_copy_wait_s",
                            json_real((double)cs.host_copy_wait_us / 1e6));
        json_object_set_new(j, "gpu_moe_calls", json_integer((json_int_t)cs.moe_calls));
        json_object_set_new(j, "gpu_moe_gpu_experts", json_integer((json_int_t)cs.moe_gpu_experts));
        json_object_set_new(j, "gpu_moe_copy_experts",
                            json_integer((json_int_t)cs.moe_copy_experts));
        json_object_set_new(j, "gpu_moe_cpu_experts", json_integer((json_int_t)cs.moe_cpu_experts));
        json_object_set_new(j, "gpu_moe_half_experts",
                            json_integer((json_int_t)cs.moe_half_experts));
        json_object_set_new(j, "gpu_moe_half_split", json_integer((json_int_t)cs.moe_half_split));
        json_object_set_new(j, "gpu_moe_half_down", json_integer((json_int_t)cs.moe_half_down));
        json_object_set_new(j, "gpu_moe_cpu_s", json_real((double)cs.moe_cpu_us / 1e6));
        json_object_set_new(j, "gpu_moe_x_wait_s", json_real((double)cs.moe_x_wait_us / 1e6));
        json_object_set_new(j, "gpu_moe_pass_setup_s",
                            json_real((double)cs.moe_pass_setup_us / 1e6));
        json_object_set_new(j, "gpu_moe_pass_wake_s", json_real((double)cs.moe_pass_wake_us / 1e6));
        json_object_set_new(j, "gpu_moe_pass_gate_up_s",
                            json_real((double)cs.moe_pass_gate_up_us / 1e6));
        json_object_set_new(j, "gpu_moe_pass_down_s", json_real((double)cs.moe_pass_down_us / 1e6));
        json_object_set_new(j, "gpu_moe_gpu_timed", json_integer((json_int_t)cs.moe_gpu_timed));
        json_object_set_new(j, "gpu_moe_gpu_late", json_integer((json_int_t)cs.moe_gpu_late));
        json_object_set_new(j, "gpu_moe_gpu_own_s", json_real((double)cs.moe_gpu_own_us / 1e6));
        json_object_set_new(j, "gpu_moe_gpu_wait_s", json_real((double)cs.moe_gpu_wait_us / 1e6));
        json_object_set_new(j, "gpu_prefetch_slices", json_integer((json_int_t)cs.prefetch_slices));
        json_object_set_new(j, "gpu_prefetch_used", json_integer((json_int_t)cs.prefetch_used));
        json_object_set_new(j, "gpu_prefetch_guessed",
                            json_integer((json_int_t)cs.prefetch_guessed));
        json_object_set_new(j, "gpu_prefetch_guessed_right",
                            json_integer((json_int_t)cs.prefetch_guessed_right));
        json_object_set_new(j, "gpu_sync_calls", json_integer((json_int_t)cs.sync_calls));
        json_object_set_new(j, "gpu_sync_s", json_real((double)cs.sync_us / 1e6));
        /* the rates the backend measured at start and splits host weights by */
        const struct cuda_backend_rates cr = g ? cuda_backend_rates(s->e->be)
                                               : (struct cuda_backend_rates){0};
        json_object_set_new(j, "gpu_pcie_bytes_per_s", json_real(cr.pcie_h2d_bytes_per_s));
        json_object_set_new(j, "gpu_mem_read_bytes_per_s", json_real(cr.device_read_bytes_per_s));
        json_object_set_new(j, "gpu_host_both_bytes_per_s", json_real(cr.host_both_bytes_per_s));
        json_object_set_new(j, "gpu_cpu_matvec_bytes_per_s", json_real(cr.cpu_matvec_bytes_per_s));
        json_object_set_new(j, "gpu_moe_pcie_bytes_per_s", json_real(cr.moe_pcie_bytes_per_s));
    }
    json_object_set_new(j, "resident_bytes", json_integer((json_int_t)run_resident_bytes(s->e)));
    json_object_set_new(j, "predicted_gen_tok_per_s",
                        json_real(s->plan ? s->plan->predicted_gen_tok_per_s : 0.0));
    json_object_set_new(j, "io_stall_s", json_real((double)eio.stall_us / 1e6));
    json_object_set_new(j, "io_stalls", json_integer((json_int_t)eio.stalls));
    /* of io_stall_s, the part while generating (gen_s's) */
    json_object_set_new(j, "gen_io_stall_s", json_real((double)s->gen_stall_us / 1e6));
    if (s->e->m->store) {
        const struct store_stats ss = store_stats(s->e->m->store);
        const struct expert_cache_stats *x = &ss.experts;
        const uint64_t seen = x->hits + x->misses;
        json_object_set_new(j, "expert_hits", json_integer((json_int_t)x->hits));
        json_object_set_new(j, "expert_misses", json_integer((json_int_t)x->misses));
        /* routed experts the GPU's VRAM cache held: not looked up, not read */
        json_object_set_new(j, "expert_gpu_held", json_integer((json_int_t)x->held_elsewhere));
        json_object_set_new(j, "expert_hit_rate", json_real(seen ? (double)x->hits / (double)seen : 0.0));
        json_object_set_new(j, "expert_cache_bytes",
                            json_integer((json_int_t)((uint64_t)x->capacity * x->entry_bytes)));
        json_object_set_new(j, "expert_stalls", json_integer((json_int_t)x->stalls));
        json_object_set_new(j, "prefetch_precision", json_real(ratio(x->prefetch_used, x->prefetched)));
        json_object_set_new(j, "prefetch_recall",
                            json_real(ratio(x->prefetch_used, x->prefetch_used + x->misses)));
        json_object_set_new(j, "prefetched", json_integer((json_int_t)x->prefetched));
        json_object_set_new(j, "prefetch_used", json_integer((json_int_t)x->prefetch_used));
        json_object_set_new(j, "prefetch_wasted", json_integer((json_int_t)x->prefetch_wasted));
        json_t *pr = json_object();
        json_object_set_new(pr, "router_precision", json_real(ratio(x->hint_tp, x->hint_pred)));
        json_object_set_new(pr, "router_recall", json_real(ratio(x->hint_tp, x->hint_actual)));
        json_object_set_new(pr, "coact_precision", json_real(ratio(x->coact_tp, x->coact_pred)));
        json_object_set_new(pr, "coact_recall", json_real(ratio(x->coact_tp, x->coact_actual)));
        json_object_set_new(j, "predictors", pr);
    }
    json_object_set_new(j, "disk_gb_per_s",
                        json_real(s->gen_us > 0 ? (double)s->gen_bytes_read / 1e9 / ((double)s->gen_us / 1e6) : 0.0));
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "n_prompt", json_integer(s->n_prompt));
    json_object_set_new(j, "n_gen", json_integer(s->n_gen));
    json_object_set_new(j, "n_ctx", json_integer(forward_n_ctx(f)));
    json_object_set_new(j, "n_threads", json_integer(o->n_threads));
    json_object_set_new(j, "kv_type", json_string(quant_type_name(forward_kv_type(f))));
    json_object_set_new(j, "kv_bytes", json_integer((json_int_t)forward_kv_bytes(f)));
    json_object_set_new(j, "weight_bytes", json_integer((json_int_t)m->weight_bytes));
    json_object_set_new(j, "load_s", json_real((double)m->load_us / 1e6));
    json_object_set_new(j, "prompt_s", json_real((double)s->prompt_us / 1e6));
    json_object_set_new(j, "gen_s", json_real((double)s->gen_us / 1e6));
    json_object_set_new(j, "prompt_tok_per_s", json_real(per_s(s->n_prompt, s->prompt_us)));
    json_object_set_new(j, "gen_tok_per_s", json_real(per_s(s->n_gen, s->gen_us)));
    /* the forward passes alone (no sampling or text), as llama-bench's tg counts */
    json_object_set_new(j, "decode_tok_per_s", json_real(per_s(s->n_decode, s->decode_us)));
    json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)peak_rss_bytes()));
    json_object_set_new(j, "bytes_read", json_integer((json_int_t)bytes_read));
    json_object_set_new(
        j, "bytes_read_per_token",
        json_real(s->n_gen > 0 ? (double)s->gen_bytes_read / (double)s->n_gen : 0.0));
    json_object_set_new(j, "stop_reason", json_string(s->stop));
    const int rc = json_dump_file(j, o->stats_json, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (rc != 0)
        return err_set(HY_ERR_IO, "--stats-json %s: cannot write the file: %s", o->stats_json,
                       strerror(errno));
    return HY_OK;
}

static void print_stats(const struct model *m, const struct run_stats *s)
{
    char a[32], b[32];
    fprintf(stderr, "load: %.3f s, %s read (%.1f MiB/s)\n", (double)m->load_us / 1e6,
            sizes_format(m->bytes_read, a, sizeof a),
            m->load_us > 0 ? (double)m->bytes_read / 1048576.0 / ((double)m->load_us / 1e6) : 0.0);
    fprintf(stderr, "prompt: %" PRId64 " tokens in %.3f s (%.1f tok/s)\n", s->n_prompt,
            (double)s->prompt_us / 1e6, per_s(s->n_prompt, s->prompt_us));
    fprintf(stderr, "generate: %" PRId64 " tokens in %.3f s (%.1f tok/s); stopped at %s\n",
            s->n_gen, (double)s->gen_us / 1e6, per_s(s->n_gen, s->gen_us), s->stop);
    if (s->n_decode > 0)
        fprintf(stderr,
                "decode: %" PRId64 " forward passes of 1 token, %.2f ms each (%.1f tok/s)\n",
                s->n_decode, (double)s->decode_us / 1e3 / (double)s->n_decode,
                per_s(s->n_decode, s->decode_us));
    const struct engine_io eio = engine_io(s->e);
    if (eio.run_bytes > 0 || eio.stalls > 0)
        fprintf(stderr, "stream: %s read while running (%.2f GB/s while generating), %" PRIu64
                        " read stalls, %.3f s waiting\n",
                sizes_format(eio.run_bytes, a, sizeof a),
                s->gen_us > 0 ? (double)s->gen_bytes_read / 1e9 / ((double)s->gen_us / 1e6) : 0.0,
                eio.stalls, (double)eio.stall_us / 1e6);
    if (s->e->m->store && store_stats(s->e->m->store).has_experts) {
        const struct store_stats ss = store_stats(s->e->m->store);
        const struct expert_cache_stats *x = &ss.experts;
        fprintf(stderr,
                "experts: cache of %d entries (%s), %" PRIu64 " hits, %" PRIu64
                " misses (hit rate %.1f%%), %" PRIu64 " late reads, %" PRIu64 " stalls",
                x->capacity, sizes_format((uint64_t)x->capacity * x->entry_bytes, a, sizeof a),
                x->hits, x->misses, 100.0 * ratio(x->hits, x->hits + x->misses), x->late_loads,
                x->stalls);
        if (s->e->on_gpu)
            fprintf(stderr, "; %" PRIu64 " held by the GPU's VRAM cache (not read)",
                    x->held_elsewhere);
        fputc('\n', stderr);
        fprintf(stderr,
                "prefetch: %" PRIu64 " read ahead, %" PRIu64 " used, %" PRIu64
                " wasted (precision %.2f, recall %.2f); next-layer router precision %.2f recall "
                "%.2f, co-activation precision %.2f recall %.2f\n",
                x->prefetched, x->prefetch_used, x->prefetch_wasted,
                ratio(x->prefetch_used, x->prefetched),
                ratio(x->prefetch_used, x->prefetch_used + x->misses), ratio(x->hint_tp, x->hint_pred),
                ratio(x->hint_tp, x->hint_actual), ratio(x->coact_tp, x->coact_pred),
                ratio(x->coact_tp, x->coact_actual));
    }
    if (s->plan && s->n_decode > 0 && !s->e->use_mmap)
        fprintf(stderr, "predicted: decode %.1f tok/s by the plan, measured %.1f (measured/predicted %.2f)\n",
                s->plan->predicted_gen_tok_per_s, per_s(s->n_decode, s->decode_us),
                per_s(s->n_decode, s->decode_us) / s->plan->predicted_gen_tok_per_s);
    fprintf(stderr,
            "summary: mode %s, prompt %" PRId64 " tok at %.1f tok/s, generated %" PRId64
            " tok at %.1f tok/s, peak RSS %s, read %s (%.0f B/token while generating), stopped "
            "at %s\n",
            s->e->mode, s->n_prompt, per_s(s->n_prompt, s->prompt_us), s->n_gen,
            per_s(s->n_gen, s->gen_us), sizes_format(peak_rss_bytes(), a, sizeof a),
            sizes_format(eio.load_bytes + eio.run_bytes, b, sizeof b),
            s->n_gen > 0 ? (double)s->gen_bytes_read / (double)s->n_gen : 0.0, s->stop);
}

static bool write_piece(void *user, const char *text, size_t len)
{
    (void)user;
    write_out(text, len);
    fflush(stdout);
    return true;
}

int cmd_run(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "run", argc - 1, argv + 1);
    struct run_opts o = {
        .prompt = "",
        .n_predict = RUN_DEFAULT_N_PREDICT,
        .n_ctx = RUN_DEFAULT_CTX,
        .n_threads = 0,
        .n_batch = FORWARD_DEFAULT_BATCH,
        .sp = sampler_default_params(),
        .kv_type = FORWARD_DEFAULT_KV_TYPE,
        .mode = "auto",
        .gpu = CLI_GPU_DEFAULT,
    };
    o.repeat_last_n = o.sp.repeat_last_n;
    o.stops = mem_xcalloc((size_t)argc + 1, sizeof(*o.stops));

    struct engine *e = NULL;
    int32_t *prompt = NULL;
    int rc = 1;
    enum hy_status st;

    if (parse_opts(&c, &o, &st) < 0) {
        rc = 0;
        goto done;
    }
    if (st) goto fail;
    if (o.prompt_file && (st = read_prompt_file(&o))) goto fail;
    if (!o.n_threads) o.n_threads = cli_physical_cores();
    if (!o.seed_set) o.sp.seed = (uint64_t)timing_now_us() ^ ((uint64_t)getpid() << 32);
    struct plan_hw phw;
    char hw_source[PATH_MAX + 96];
    cli_load_hw(&phw, &o.ram_budget, hw_source, sizeof hw_source);

    /* per-model statistics (expert co-activation) persist in the cache directory */
    char cache_dir[PATH_MAX];
    if (cli_cache_dir(cache_dir, sizeof cache_dir) != HY_OK) {
        cache_dir[0] = 0;
        err_clear();
    }
    /* the engine plans the placement `hypura plan` gives this budget and
     * runs in its mode (or the one --mode forces) */
    struct engine_opts eo = {
        .model_path = o.model,
        .n_ctx = o.n_ctx,
        .n_threads = o.n_threads,
        .n_batch = o.n_batch,
        .kv_type = o.kv_type,
        .hw = &phw,
        .ram_budget_bytes = o.ram_budget,
        .mode = o.mode,
        .io = {.kind = o.io},
        .cache_dir = cache_dir[0] ? cache_dir : NULL,
        .gpu = o.gpu.when,
        .gpu_budget_bytes = o.gpu.budget,
        .gpu_layers_set = o.gpu.layers >= 0,
        .gpu_layers = o.gpu.layers,
        .gpu_host = o.gpu.host,
    };
    if ((st = engine_open(&eo, &e))) goto fail;
    o.n_ctx = e->n_ctx;
    o.sp.repeat_last_n = (int32_t)(o.repeat_last_n < 0 ? o.n_ctx : o.repeat_last_n);

    print_plan(&o, e->m, e->seq[0].f, e->be);
    if (e->gpu_note[0]) fprintf(stderr, "note: %s\n", e->gpu_note);
    if (e->have_plan) {
        const struct plan *pl = &e->plan;
        char r[32], w[32], q[32], t[32];
        fprintf(stderr, "plan: placement for this budget (hypura plan; hardware from %s): mode %s%s, predicted "
                        "decode %.1f tok/s (bound: %s), prompt %.1f tok/s\n",
                hw_source, e->use_mmap ? "mmap" : plan_mode_name(pl->mode),
                pl->forced ? " (--mode)" : "", pl->predicted_gen_tok_per_s,
                plan_bound_name(pl->gen_bound), pl->predicted_prompt_tok_per_s);
        fprintf(stderr, "plan: RAM %s (weights %s, KV cache, compute buffers, pool %d x %s), "
                        "streamed %s of weights, %.1f MiB read per token, prefetch depth %d%s\n",
                sizes_format(pl->resident_bytes, r, sizeof r),
                sizes_format(pl->weights_resident_bytes, w, sizeof w), pl->pool_slots,
                sizes_format(pl->pool_slot_bytes, q, sizeof q),
                sizes_format(pl->weights_streamed_bytes, t, sizeof t),
                pl->streamed_bytes_per_token / 1048576.0, pl->prefetch_depth,
                pl->over_budget ? " (over the budget: --mode resident)" : "");
    } else
        fprintf(stderr, "plan: no placement for this budget: %s\n", e->plan_err);

    /* tokenize before loading, so that a prompt that does not fit fails fast;
     * as llama.cpp's CLI: the vocabulary's BOS/EOS, and control-token text in
     * the prompt ("<s>") is that token */
    int64_t n_prompt = 0;
    unsigned flags =
        TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_EOS | (o.no_bos ? 0 : TOKENIZER_ADD_BOS);
    if ((st = engine_tokenize(e, o.prompt, strlen(o.prompt), flags, &prompt, &n_prompt)))
        goto fail;
    if (n_prompt == 0) {
        st = err_set(HY_ERR_INVALID_ARG,
                     "nothing to evaluate: the prompt is empty and --no-bos is set (or the "
                     "vocabulary has no BOS token)");
        goto fail;
    }
    if (n_prompt >= o.n_ctx) {
        st = err_set(HY_ERR_INVALID_ARG,
                     "the prompt has %" PRId64
                     " tokens, which leaves no room in a context of %" PRId64 "\nhint: raise -c",
                     n_prompt, o.n_ctx);
        goto fail;
    }
    if (o.verbose_prompt) {
        fprintf(stderr, "prompt: %" PRId64 " tokens\n", n_prompt);
        for (int64_t i = 0; i < n_prompt; i++) {
            int32_t id = prompt[i];
            fprintf(stderr, "%8d -> '%s'\n", (int)id, tokenizer_token_text(&e->tok, id));
        }
    }

    if ((st = engine_load_weights(e, load_progress, NULL))) goto fail;
    cli_progress_end();
    cli_print_gpu(e);

    if (o.chat) {
        struct engine_gen_params cp = {.sp = o.sp,
                                       .n_predict = o.n_predict_set ? o.n_predict : -1,
                                       .stops = o.stops,
                                       .n_stops = o.n_stops};
        rc = run_chat(e, o.prompt, &cp);
        goto done;
    }

    struct engine_gen_params gp = {
        .sp = o.sp, .n_predict = o.n_predict, .stops = o.stops, .n_stops = o.n_stops};
    struct engine_gen_stats gs;
    const int seq = engine_seq_acquire(e, prompt, n_prompt);
    st = engine_generate(e, seq, prompt, n_prompt, &gp, write_piece, NULL, &gs);
    engine_seq_release(e, seq);
    if (st) goto fail;
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    fflush(stdout);

    struct run_stats rs = {
        .plan = e->have_plan ? &e->plan : NULL,
        .n_prompt = gs.n_prompt,
        .n_gen = gs.n_gen,
        .n_decode = gs.n_decode,
        .prompt_us = gs.prompt_us,
        .gen_us = gs.gen_us,
        .decode_us = gs.decode_us,
        .stop = engine_stop_text(gs.stop),
        .gen_bytes_read = gs.gen_read_bytes,
        .gen_stall_us = gs.gen_stall_us,
        .e = e,
    };
    print_stats(e->m, &rs);
    if (e->m->is_moe) print_routes(forward_routes(e->seq[0].f));
    if (o.stats_json && (st = write_stats(&o, e->m, e->seq[0].f, &rs))) goto fail;
    rc = 0;
    goto done;
fail:
    cli_progress_end();
    fflush(stdout);
    rc = cli_fail("run", st);
done:
    free(prompt);
    engine_close(e);
    free(o.stops);
    free(o.prompt_buf);
    return rc;
}
