/*
 * hypura run -m MODEL [-p PROMPT] [-n N] [options]
 *
 * Loads a model, prints the plan (mode, budget, sizes) to stderr, echoes the
 * prompt and streams the generated text to stdout, then prints timings and,
 * for MoE models, how the routers spread their picks over the experts.
 * Only the resident mode exists so far: a model above the RAM budget is
 * still loaded whole, with a line saying so.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/quant.h"
#include "sample/sampler.h"
#include "text/spm.h"

#define RUN_DEFAULT_N_PREDICT 128
#define RUN_DEFAULT_CTX       2048
#define RUN_RAM_HEADROOM      ((uint64_t)1 << 30)

struct run_opts {
    const char *model;
    const char *prompt;
    int64_t n_predict;
    int64_t n_ctx;
    int64_t n_threads;
    int64_t n_batch;
    struct sampler_params sp;
    bool seed_set;
    uint64_t ram_budget;
    bool ram_budget_set;
    const char *mode;
    bool no_bos;
    bool verbose_prompt;
};

static void run_help(void)
{
    struct sampler_params d = sampler_default_params();
    printf(
        "usage: hypura run -m MODEL.gguf [options]\n\n"
        "Generates text from a prompt on the CPU and streams it to stdout (the prompt is echoed\n"
        "first). The plan goes to stderr before loading, timings after. Runs llama-architecture\n"
        "models (dense and Mixtral-style MoE) in F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0\n"
        "and the K-quants (Q2_K..Q6_K: Q4_K_M, Q5_K_M, ... files).\n\n"
        "options:\n"
        "  -m, --model FILE       GGUF model to run (required)\n"
        "  -p, --prompt TEXT      prompt; control-token text such as <s> in it is that token\n"
        "                         (default: empty: generate from BOS)\n"
        "  -n, --n-predict N      tokens to generate; -1: until EOS or the context is full "
        "(default: %d)\n"
        "  -c, --ctx-size N       context length (KV cache) in tokens; 0: the model's training\n"
        "                         context (default: %d)\n"
        "  -t, --threads N        CPU threads (default: physical cores, here %d)\n"
        "  -b, --batch-size N     prompt tokens evaluated per step (default: %d)\n"
        "  --temp X               temperature; 0: greedy (default: %.2f)\n"
        "  --top-k N              keep the N most likely tokens; 0: off (default: %d)\n"
        "  --top-p X              nucleus sampling threshold; 1: off (default: %.2f)\n"
        "  --min-p X              drop tokens below X times the top probability; 0: off (default: "
        "%.2f)\n"
        "  --repeat-penalty X     penalty for recently seen tokens; 1: off (default: %.2f)\n"
        "  --repeat-last-n N      tokens the penalty looks back over (default: %d)\n"
        "  --seed N               random seed (default: random, printed with the plan)\n"
        "  --ram-budget SIZE      RAM the weights may take, e.g. 16G (default: available RAM\n"
        "                         minus 1 GiB)\n"
        "  --mode MODE            placement mode; only 'resident' exists yet (default: resident)\n"
        "  --no-bos               do not put the BOS token before the prompt\n"
        "  --verbose-prompt       print the prompt's tokens to stderr\n"
        "  -h, --help             show this help\n",
        RUN_DEFAULT_N_PREDICT, RUN_DEFAULT_CTX, cli_physical_cores(), FORWARD_DEFAULT_BATCH,
        (double)d.temp, (int)d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
        (int)d.repeat_last_n);
}

/* Returns -1 after --help, else a status. */
static int parse_opts(struct cli *c, struct run_opts *o, enum hy_status *st)
{
    *st = HY_OK;
    while (cli_more(c) && !*st) {
        int64_t iv;
        double dv;
        if (cli_match(c, "-h", "--help")) {
            run_help();
            return -1;
        } else if (cli_match(c, "-m", "--model")) {
            *st = cli_value(c, &o->model);
        } else if (cli_match(c, "-p", "--prompt")) {
            *st = cli_value(c, &o->prompt);
        } else if (cli_match(c, "-n", "--n-predict")) {
            *st = cli_int(c, -1, INT32_MAX, &o->n_predict);
        } else if (cli_match(c, "-c", "--ctx-size")) {
            *st = cli_int(c, 0, INT32_MAX, &o->n_ctx);
        } else if (cli_match(c, "-t", "--threads")) {
            *st = cli_int(c, 1, 1024, &o->n_threads);
        } else if (cli_match(c, "-b", "--batch-size")) {
            *st = cli_int(c, 1, 1 << 20, &o->n_batch);
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
            if (!(*st = cli_int(c, 0, 1 << 20, &iv))) o->sp.repeat_last_n = (int32_t)iv;
        } else if (cli_match(c, NULL, "--seed")) {
            if (!(*st = cli_int(c, 0, INT64_MAX, &iv))) {
                o->sp.seed = (uint64_t)iv;
                o->seed_set = true;
            }
        } else if (cli_match(c, NULL, "--ram-budget")) {
            *st = cli_size(c, &o->ram_budget);
            o->ram_budget_set = true;
        } else if (cli_match(c, NULL, "--mode")) {
            *st = cli_value(c, &o->mode);
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
    else if (strcmp(o->mode, "resident") != 0)
        *st = err_set(HY_ERR_INVALID_ARG,
                      "--mode '%s': only 'resident' is implemented yet (the streaming modes "
                      "of the plan come with the weight store)",
                      o->mode);
    return 0;
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
            "plan: mode resident, RAM budget %s, weights %s + KV cache %s (ctx %" PRId64
            "), %d threads (%s kernels)\n",
            sizes_format(o->ram_budget, b, sizeof b), a,
            sizes_format(forward_kv_bytes(f), k, sizeof k), forward_n_ctx(f), be->n_threads,
            cpu_backend_kernels(be));
    if (hp->n_ctx_train > 0 && forward_n_ctx(f) > hp->n_ctx_train)
        fprintf(stderr,
                "plan: warning: context %" PRId64
                " is longer than the model was trained for (%" PRId64
                "); output may degrade past it\n",
                forward_n_ctx(f), hp->n_ctx_train);
    if (o->ram_budget < m->weight_bytes)
        fprintf(
            stderr,
            "plan: the weights (%s) exceed the RAM budget (%s), but streaming is not implemented "
            "yet: all weights are loaded resident anyway\n",
            a, b);
    if (o->sp.temp > 0.0f)
        fprintf(
            stderr,
            "sampling: temp %.2f, top-k %d, top-p %.2f, min-p %.2f, repeat-penalty %.2f (last %d), "
            "seed %" PRIu64 "\n",
            (double)o->sp.temp, (int)o->sp.top_k, (double)o->sp.top_p, (double)o->sp.min_p,
            (double)o->sp.repeat_penalty, (int)o->sp.repeat_last_n, o->sp.seed);
    else
        fprintf(stderr, "sampling: greedy (temp 0), repeat-penalty %.2f (last %d)\n",
                (double)o->sp.repeat_penalty, (int)o->sp.repeat_last_n);
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

static double per_s(int64_t n, int64_t us)
{
    return us > 0 ? (double)n * 1e6 / (double)us : 0.0;
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
        .mode = "resident",
    };
    enum hy_status st;
    if (parse_opts(&c, &o, &st) < 0) return 0;
    if (st) return cli_fail("run", st);
    if (!o.n_threads) o.n_threads = cli_physical_cores();
    if (!o.seed_set) o.sp.seed = (uint64_t)timing_now_us() ^ ((uint64_t)getpid() << 32);
    if (!o.ram_budget_set) {
        uint64_t avail = cli_available_ram();
        o.ram_budget = avail > RUN_RAM_HEADROOM ? avail - RUN_RAM_HEADROOM : 0;
    }

    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f = NULL;
    struct spm tok = {0};
    struct sampler smp = {0};
    struct spm_stream stream = {0};
    int32_t *prompt = NULL;
    bool have_tok = false, have_smp = false, have_stream = false;
    int rc = 1;

    if ((st = model_open(o.model, &m))) goto fail;
    if (o.n_ctx == 0) o.n_ctx = m->hp->n_ctx_train > 0 ? m->hp->n_ctx_train : RUN_DEFAULT_CTX;
    struct cpu_backend_opts bo = {.n_threads = (int)o.n_threads};
    if ((st = cpu_backend_init(&bo, &be))) goto fail;
    struct forward_config fc = {.n_ctx = o.n_ctx, .n_batch = o.n_batch};
    if ((st = forward_init(m, be, &fc, &f))) goto fail;
    if ((st = spm_init(&tok, m->gguf))) goto fail;
    have_tok = true;
    if (tok.n_vocab > m->n_vocab) {
        st = err_set(HY_ERR_FORMAT, "%s: vocabulary of %d tokens for %" PRId64 " embedding rows",
                     o.model, (int)tok.n_vocab, m->n_vocab);
        goto fail;
    }
    if ((st = sampler_init(&smp, (int32_t)m->n_vocab, &o.sp))) goto fail;
    have_smp = true;

    print_plan(&o, m, f, be);

    /* tokenize before loading, so that a prompt that does not fit fails fast */
    const size_t plen = strlen(o.prompt);
    const int64_t pcap = spm_max_tokens(plen);
    prompt = mem_xcalloc((size_t)pcap, sizeof(int32_t));
    int64_t n_prompt = 0;
    /* as llama.cpp's CLI: control-token text in the prompt ("<s>") is that token */
    unsigned flags = SPM_PARSE_SPECIAL | ((tok.add_bos && !o.no_bos) ? SPM_ADD_BOS : 0);
    if ((st = spm_tokenize(&tok, o.prompt, plen, flags, prompt, pcap, &n_prompt))) goto fail;
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
            fprintf(stderr, "%8d -> '%s'\n", (int)id, tok.pieces[id]);
        }
    }

    if ((st = model_load(m, load_progress, NULL))) goto fail;
    cli_progress_end();

    spm_stream_init(&stream, &tok);
    have_stream = true;
    size_t n_txt;
    const char *txt;
    for (int64_t i = 0; i < n_prompt; i++) {
        sampler_accept(&smp, prompt[i]);
        txt = spm_stream_push(&stream, prompt[i], &n_txt);
        write_out(txt, n_txt);
    }
    fflush(stdout);

    const float *logits = NULL;
    int64_t t0 = timing_now_us();
    if ((st = forward_eval(f, prompt, n_prompt, &logits))) goto fail;
    const int64_t prompt_us = timing_now_us() - t0;

    const char *stop = "the -n limit";
    int64_t n_gen = 0, n_decode = 0, decode_us = 0;
    t0 = timing_now_us();
    for (;;) {
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        int32_t id = sampler_sample(&smp, logits);
        if (id == tok.eos_id) {
            stop = "end of sequence";
            break;
        }
        n_gen++;
        sampler_accept(&smp, id);
        txt = spm_stream_push(&stream, id, &n_txt);
        write_out(txt, n_txt);
        fflush(stdout);
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        if (forward_n_past(f) >= o.n_ctx) {
            stop = "a full context";
            break;
        }
        int64_t t1 = timing_now_us();
        if ((st = forward_eval(f, &id, 1, &logits))) goto fail;
        decode_us += timing_now_us() - t1;
        n_decode++;
    }
    const int64_t gen_us = timing_now_us() - t0;
    txt = spm_stream_flush(&stream, &n_txt);
    write_out(txt, n_txt);
    fputc('\n', stdout);
    fflush(stdout);

    char a[32];
    fprintf(stderr, "\nload: %.3f s, %s read (%.1f MiB/s)\n", (double)m->load_us / 1e6,
            sizes_format(m->bytes_read, a, sizeof a),
            m->load_us > 0 ? (double)m->bytes_read / 1048576.0 / ((double)m->load_us / 1e6) : 0.0);
    fprintf(stderr, "prompt: %" PRId64 " tokens in %.3f s (%.1f tok/s)\n", n_prompt,
            (double)prompt_us / 1e6, per_s(n_prompt, prompt_us));
    fprintf(stderr, "generate: %" PRId64 " tokens in %.3f s (%.1f tok/s); stopped at %s\n", n_gen,
            (double)gen_us / 1e6, per_s(n_gen, gen_us), stop);
    if (n_decode > 0)
        fprintf(stderr,
                "decode: %" PRId64 " forward passes of 1 token, %.2f ms each (%.1f tok/s)\n",
                n_decode, (double)decode_us / 1e3 / (double)n_decode, per_s(n_decode, decode_us));
    if (m->is_moe) print_routes(forward_routes(f));
    rc = 0;
    goto done;
fail:
    cli_progress_end();
    fflush(stdout);
    rc = cli_fail("run", st);
done:
    if (have_stream) spm_stream_free(&stream);
    free(prompt);
    if (have_smp) sampler_free(&smp);
    if (have_tok) spm_free(&tok);
    forward_free(f);
    backend_free(be);
    model_close(m);
    return rc;
}
