/*
 * hypura serve -m MODEL [--host H] [--port P] [-c CTX] [--parallel N] [options]
 *
 * Loads a model as `hypura run` does (the same plan, --mode and --io) and serves it over the Ollama and
 * OpenAI HTTP APIs (src/server/server.h) until SIGINT or SIGTERM. The line
 * "hypura: listening on http://HOST:PORT (model NAME)" on stderr says when
 * it is ready (with --port 0, which port it got); nothing goes to stdout.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/chat_template.h"
#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/sizes.h"
#include "engine/engine.h"
#include "io/io.h"
#include "quant/quant.h"
#include "server/server.h"

#define SERVE_DEFAULT_CTX 4096

struct serve_opts {
    const char *model;
    const char *host;
    int64_t port;
    int64_t n_ctx;
    int64_t n_parallel;
    int64_t n_threads;
    int64_t n_batch;
    uint32_t kv_type;
    uint64_t ram_budget;
    uint64_t max_body;
    const char *chat_template; /* a family name forcing the format */
    const char *mode;          /* --mode, passed to the engine; NULL: the plan's */
    struct cli_gpu gpu;
    enum io_kind io;
};

static void serve_help(void)
{
    printf(
        "usage: hypura serve -m MODEL.gguf [options]\n\n"
        "Serves the model over HTTP with the Ollama API (/api/generate, /api/chat, /api/tags,\n"
        "/api/show, /api/ps, /api/version) and the OpenAI API (/v1/chat/completions,\n"
        "/v1/completions, /v1/models), streaming as NDJSON or server-sent events. The model's\n"
        "API name is its file name without .gguf (\":latest\" may follow). Stop with Ctrl-C.\n\n"
        "options:\n"
        "  -m, --model FILE       GGUF model to serve (required)\n"
        "  --host ADDR            address to listen on (default: 127.0.0.1; 0.0.0.0: all)\n"
        "  --port N               port; 0: any free one, printed (default: %d)\n"
        "  -c, --ctx-size N       context length of each sequence in tokens; 0: the model's\n"
        "                         training context (default: %d)\n"
        "  --parallel N           sequences (KV caches) generating at once; more requests\n"
        "                         wait in a queue (default: 1)\n"
        "  -t, --threads N        CPU threads (default: physical cores, here %d)\n"
        "  -b, --batch-size N     prompt tokens evaluated per step (default: %d)\n"
        "  --kv-type TYPE         KV cache type: f32, f16 or q8_0 (default: f16)\n"
        "  --ram-budget SIZE      RAM the weights may take, e.g. 16G (default: as hypura plan)\n"
        "  --mode MODE            placement: auto (the plan's), resident, dense-stream,\n"
        "                         expert-stream, mmap; as hypura run (default: auto)\n"
        "  --io KIND              reads of streamed weights: auto, uring, pread (default: auto)\n"
        "  --gpu WHEN             CUDA GPU: auto, on, off (default: auto)\n"
        "  --gpu-budget SIZE      VRAM the weights, KV caches and buffers may take (default,\n"
        "                         and for a SIZE past the free VRAM: free VRAM minus headroom)\n"
        "  -ngl, --n-gpu-layers N llama.cpp's layer count: the budget of its -ngl N (the GPU\n"
        "                         minimum and the weights llama.cpp offloads for N layers:\n"
        "                         the output head, then the last N - 1 blocks); instead of\n"
        "                         --gpu-budget (default: not given, --gpu-budget's default)\n"
        "  --gpu-host HOW         host weights with a GPU: auto (by measured PCIe and CPU\n"
        "                         rates), cpu, copy (default: auto)\n"
        "  --max-body SIZE        largest request body; larger ones get 413 (default: 8M)\n"
        "  --chat-template NAME   use this chat format instead of the one detected from the\n"
        "                         model: chatml, llama2, llama3, mistral-v7, gemma, phi3, ...\n"
        "  -h, --help             show this help\n",
        SERVER_DEFAULT_PORT, SERVE_DEFAULT_CTX, cli_physical_cores(), FORWARD_DEFAULT_BATCH);
}

static int parse_opts(struct cli *c, struct serve_opts *o, enum hy_status *st)
{
    *st = HY_OK;
    while (cli_more(c) && !*st) {
        if (cli_match(c, "-h", "--help")) {
            serve_help();
            return -1;
        } else if (cli_match(c, "-m", "--model")) {
            *st = cli_value(c, &o->model);
        } else if (cli_match(c, NULL, "--host")) {
            *st = cli_value(c, &o->host);
        } else if (cli_match(c, NULL, "--port")) {
            *st = cli_int(c, 0, 65535, &o->port);
        } else if (cli_match(c, "-c", "--ctx-size")) {
            *st = cli_int(c, 0, INT32_MAX, &o->n_ctx);
        } else if (cli_match(c, "-np", "--parallel")) {
            *st = cli_int(c, 1, 256, &o->n_parallel);
        } else if (cli_match(c, "-t", "--threads")) {
            *st = cli_int(c, 1, 1024, &o->n_threads);
        } else if (cli_match(c, "-b", "--batch-size")) {
            *st = cli_int(c, 1, 1 << 20, &o->n_batch);
        } else if (cli_match(c, NULL, "--kv-type")) {
            const char *v = NULL;
            if (!(*st = cli_value(c, &v))) {
                int t = quant_type_from_name(v);
                if (t != HY_TYPE_F32 && t != HY_TYPE_F16 && t != HY_TYPE_Q8_0)
                    *st = err_set(HY_ERR_INVALID_ARG,
                                  "option --kv-type: '%s' is not a KV cache type (f32, f16, q8_0)", v);
                else
                    o->kv_type = (uint32_t)t;
            }
        } else if (cli_match(c, NULL, "--ram-budget")) {
            *st = cli_size(c, &o->ram_budget);
        } else if (cli_match(c, NULL, "--mode")) {
            *st = cli_value(c, &o->mode);
        } else if (cli_match_gpu(c, &o->gpu, st)) {
        } else if (cli_match(c, NULL, "--io")) {
            const char *v = NULL;
            if (!(*st = cli_value(c, &v)) && !io_kind_parse(v, &o->io))
                *st = err_set(HY_ERR_INVALID_ARG, "option --io: '%s' is not auto, uring or pread", v);
        } else if (cli_match(c, NULL, "--max-body")) {
            *st = cli_size(c, &o->max_body);
        } else if (cli_match(c, NULL, "--chat-template")) {
            if (!(*st = cli_value(c, &o->chat_template)) &&
                chat_template_from_name(o->chat_template) == CHAT_TEMPLATE_UNKNOWN)
                *st = err_set(HY_ERR_INVALID_ARG, "option --chat-template: unknown format '%s'",
                              o->chat_template);
        } else {
            *st = cli_unknown(c);
        }
    }
    if (!*st && !o->model) *st = err_set(HY_ERR_INVALID_ARG, "no model given (-m MODEL.gguf)");
    return 0;
}

static void load_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    cli_progress("loading", done, total);
}

int cmd_serve(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "serve", argc - 1, argv + 1);
    struct serve_opts o = {
        .host = "127.0.0.1",
        .port = SERVER_DEFAULT_PORT,
        .n_ctx = SERVE_DEFAULT_CTX,
        .n_parallel = 1,
        .n_batch = FORWARD_DEFAULT_BATCH,
        .kv_type = FORWARD_DEFAULT_KV_TYPE,
        .gpu = CLI_GPU_DEFAULT,
    };
    struct engine *e = NULL;
    struct server *srv = NULL;
    enum hy_status st;
    int rc = 1;

    if (parse_opts(&c, &o, &st) < 0) return 0;
    if (st) goto fail;
    if (!o.n_threads) o.n_threads = cli_physical_cores();
    struct plan_hw phw;
    char hw_source[PATH_MAX + 96];
    cli_load_hw(&phw, &o.ram_budget, hw_source, sizeof hw_source);
    struct engine_opts eo = {
        .model_path = o.model,
        .n_ctx = o.n_ctx,
        .n_threads = o.n_threads,
        .n_batch = o.n_batch,
        .kv_type = o.kv_type,
        .n_seq = (int)o.n_parallel,
        .hw = &phw,
        .ram_budget_bytes = o.ram_budget,
        .gpu = o.gpu.when,
        .gpu_budget_bytes = o.gpu.budget,
        .gpu_layers_set = o.gpu.layers >= 0,
        .gpu_layers = o.gpu.layers,
        .gpu_host = o.gpu.host,
        .mode = o.mode,
        .io = {.kind = o.io},
    };
    if ((st = engine_open(&eo, &e))) goto fail;
    char kv[32], w[32];
    uint64_t kv_bytes = 0;
    for (int i = 0; i < e->n_seq; i++) kv_bytes += forward_kv_bytes(e->seq[i].f);
    fprintf(stderr,
            "model: %s: %s, weights %s, %d sequence%s of %" PRId64 " tokens (KV cache %s), %d "
            "threads\n",
            o.model, e->m->info.arch, sizes_format(e->m->weight_bytes, w, sizeof w), e->n_seq,
            e->n_seq == 1 ? "" : "s", e->n_ctx, sizes_format(kv_bytes, kv, sizeof kv),
            (int)o.n_threads);
    if (e->gpu_note[0]) fprintf(stderr, "note: %s\n", e->gpu_note);
    if (e->have_plan)
        fprintf(stderr, "plan: mode %s for this budget (hardware from %s), predicted decode %.1f "
                        "tok/s\n",
                plan_mode_name(e->plan.mode), hw_source, e->plan.predicted_gen_tok_per_s);
    else
        fprintf(stderr, "plan: no placement for this budget: %s\n", e->plan_err);
    if ((st = engine_load_weights(e, load_progress, NULL))) goto fail;
    cli_progress_end();
    fprintf(stderr, "weights: mode %s\n", e->mode);
    cli_print_gpu(e);

    /* SIGINT/SIGTERM are waited for below, not delivered to a thread */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct server_opts so = {.host = o.host, .port = (int)o.port, .max_body_bytes = o.max_body};
    if ((st = server_open(e, &so, &srv))) goto fail;
    if (o.chat_template) {
        server_set_chat_template(srv, chat_template_from_name(o.chat_template));
        fprintf(stderr, "chat template: %s (--chat-template)\n", o.chat_template);
    } else {
        enum chat_template t = chat_template_detect(e->chat_template);
        if (t != CHAT_TEMPLATE_UNKNOWN)
            fprintf(stderr, "chat template: %s (detected from tokenizer.chat_template)\n",
                    chat_template_name(t));
        else
            fprintf(stderr, "chat template: warning: %s; chat requests are formatted as ChatML\n",
                    e->chat_template ? "tokenizer.chat_template is not a format hypura knows"
                                     : "the model has no tokenizer.chat_template");
    }
    fprintf(stderr, "hypura: listening on http://%s:%d (model %s)\n", o.host, server_port(srv),
            server_model_name(srv));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "hypura: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = 0;
    goto done;
fail:
    cli_progress_end();
    rc = cli_fail("serve", st);
done:
    server_close(srv);
    engine_close(e);
    return rc;
}
