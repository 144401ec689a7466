/*
 * End to end on the GPU against the CPU by the logits, not the text: a model
 * of random weights has near ties that a sum in another order may flip, and
 * then the greedy texts part without anything being wrong; the logits tell.
 *
 * For each model: the CPU engine (--gpu off) evaluates a prompt as one batch,
 * then 32 greedy tokens one at a time, keeping every step's logits; the GPU
 * engine (the whole model in VRAM, or --budget BYTES for a partial placement)
 * is fed the same tokens in the same calls. Per step:
 *   - the normalized error ||gpu - cpu|| / ||cpu|| must stay under REL_BOUND
 *     (a wrong op, layout or mapping gives errors of order one);
 *   - the top token must agree wherever the CPU's margin (top-1 minus top-2
 *     logit) exceeds TIE_FACTOR times the step's largest logit difference;
 *     below that a different top token is a near tie and is only counted.
 * MoE models: where a token of the step was routed to another set of experts
 * than on the CPU (router scores a sum in another order may reorder), the
 * step's output may move by more than REL_BOUND; those steps are counted and
 * printed, not held to it (sets that differ at more than a quarter of the
 * steps are a failure: not a near tie).
 * Prints each model's largest error, its smallest margin and the near ties.
 *
 *   test_cuda_e2e [--budget BYTES] [--kv-type f32|f16|q8_0] [MODEL.gguf ...]
 *
 * Without models: every synth model of the test data and the two small real
 * llama files (models/stories260K.gguf, head dim 8; llama-2-tiny-random.gguf,
 * head dim 4), then models written here by synth_write at test size
 * (synth_small.h) for what those leave out: qwen3 (Q/K norms, a head
 * dimension other than n_embd / n_head), qwen3moe, qwen2 in another type, a
 * tied head, and the types Q4_1, Q5_0, Q5_1, Q3_K_M, Q5_K_M and BF16. Exit
 * 77 (skipped) without a CUDA device or without CUDA in the build.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "check.h"
#include "core/err.h"
#include "engine/engine.h"
#include "model/synth.h"
#include "synth_small.h"
#include "quant/quant.h"

#ifndef HY_TESTDATA_DIR
#define HY_TESTDATA_DIR "../shared/testdata"
#endif

#define N_STEPS    32
#define N_CTX      128
/* normalized logits error: on an H100, 5.5e-5 to 1.7e-2 over the test data's
 * models and 33 synthesized ones of other shapes, types and architectures
 * (the quantized types' products round the activations differently on each
 * side); a wrong op gives errors of order one */
#define REL_BOUND  4e-2
#define TIE_FACTOR 4.0

static const char *const default_models[] = {
    "synth/llama-F16.gguf",    "synth/llama-Q8_0.gguf",       "synth/llama-Q6_K.gguf",
    "synth/llama-Q4_K_M.gguf", "synth/llama-Q4_0.gguf",       "synth/llama-Q2_K.gguf",
    "synth/mixtral-Q4_K_M.gguf", "synth/qwen2-Q5_K_M.gguf",   "synth/qwen2moe-Q4_K_M.gguf",
    "models/stories260K.gguf", "models/llama-2-tiny-random.gguf",
};

struct opts {
    uint64_t budget;
    uint32_t kv_type;
    int n_threads;
};

/* The logits of the calls of one run: [1 + N_STEPS][n_vocab]. */
struct trace {
    int64_t n_vocab, n_prompt, n_steps;
    int32_t *tokens; /* prompt, then the CPU's greedy tokens */
    float *logits;
    /* MoE: each step's expert sets, [1 + N_STEPS][n_prompt][n_layer][n_used],
     * each set sorted; route_n[s] ids filled at step s (0 for a dense model,
     * -1 where the forward kept only the last of the step's batches) */
    int32_t *routes;
    int64_t route_n[1 + N_STEPS];
};

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int64_t argmax(const float *x, int64_t n, int64_t *second)
{
    int64_t a = 0, b = -1;
    for (int64_t i = 1; i < n; i++) {
        if (x[i] > x[a]) {
            b = a;
            a = i;
        } else if (b < 0 || x[i] > x[b]) {
            b = i;
        }
    }
    if (second) *second = b < 0 ? a : b;
    return a;
}

/* Opens the model on the CPU (gpu "off") or the GPU and runs the trace's
 * calls: the prompt as one batch, then one token a call. greedy: the tokens
 * after the prompt are chosen here (argmax), else they are the trace's. */
static bool run(const char *path, const struct opts *o, bool gpu, bool greedy, struct trace *t)
{
    struct engine_opts eo = {.model_path = path,
                             .n_ctx = N_CTX,
                             .n_threads = o->n_threads,
                             .kv_type = o->kv_type,
                             .gpu = gpu ? "on" : "off",
                             .gpu_budget_bytes = gpu ? o->budget : 0};
    struct engine *e = NULL;
    if (!CHECK_OK(engine_open(&eo, &e))) {
        fprintf(stderr, "  %s (%s): %s\n", path, gpu ? "GPU" : "CPU", err_msg());
        return false;
    }
    bool ok = CHECK_OK(engine_load_weights(e, NULL, NULL));
    if (ok && greedy) {
        const char *text = "The old clock in the hall";
        int32_t *p = NULL;
        int64_t np = 0;
        ok = CHECK_OK(engine_tokenize(e, text, strlen(text),
                                      TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_BOS, &p, &np)) &&
             CHECK(np > 0 && np + N_STEPS < N_CTX);
        if (ok) {
            t->n_vocab = e->m->n_vocab;
            t->n_prompt = np;
            t->n_steps = N_STEPS;
            t->tokens = malloc(sizeof(int32_t) * (size_t)(np + N_STEPS));
            t->logits = malloc(sizeof(float) * (size_t)((1 + N_STEPS) * t->n_vocab));
            ok = CHECK(t->tokens && t->logits);
            if (ok) memcpy(t->tokens, p, sizeof(int32_t) * (size_t)np);
        }
        free(p);
    }
    struct forward *f = e->seq[0].f;
    const struct forward_routes *r = forward_routes(f);
    const int64_t per = r ? r->n_layer * r->n_used : 0; /* ids per token */
    if (ok && !t->routes) {
        t->routes = calloc((size_t)HY_MAX(1, (1 + N_STEPS) * t->n_prompt * per), sizeof(int32_t));
        ok = CHECK(t->routes != NULL);
    }
    if (ok && !CHECK_EQ_INT(e->m->n_vocab, t->n_vocab)) ok = false;
    if (ok && gpu && !CHECK(e->on_gpu)) ok = false;
    for (int64_t s = 0; ok && s <= t->n_steps; s++) {
        const int32_t *tok = s == 0 ? t->tokens : t->tokens + t->n_prompt + s - 1;
        const int64_t n = s == 0 ? t->n_prompt : 1;
        const float *lg = NULL;
        if (!CHECK_OK(forward_eval(f, tok, n, &lg))) {
            fprintf(stderr, "  %s (%s), step %" PRId64 ": %s\n", path, gpu ? "GPU" : "CPU", s,
                    err_msg());
            ok = false;
            break;
        }
        float *dst = t->logits + s * t->n_vocab;
        memcpy(dst, lg, sizeof(float) * (size_t)t->n_vocab);
        if (greedy && s < t->n_steps)
            t->tokens[t->n_prompt + s] = (int32_t)argmax(dst, t->n_vocab, NULL);
        t->route_n[s] = per > 0 ? -1 : 0; /* -1: not all of the step's tokens kept */
        if (per > 0 && r->n_tok == n) {
            int32_t *rt = t->routes + s * t->n_prompt * per;
            memcpy(rt, r->ids, sizeof(int32_t) * (size_t)(n * per));
            for (int64_t i = 0; i < n * r->n_layer; i++)
                qsort(rt + i * r->n_used, (size_t)r->n_used, sizeof(int32_t), cmp_i32);
            t->route_n[s] = n * per;
        }
    }
    engine_close(e);
    return ok;
}

static void compare(const char *path, const struct opts *o)
{
    struct trace cpu = {0}, gpu = {0};
    if (!run(path, o, false, true, &cpu)) goto done;
    gpu = cpu;
    gpu.logits = malloc(sizeof(float) * (size_t)((1 + N_STEPS) * cpu.n_vocab));
    gpu.routes = NULL;
    if (!CHECK(gpu.logits)) goto done;
    if (!run(path, o, true, false, &gpu)) goto done;
    double worst_rel = 0.0, min_margin = INFINITY;
    int ties = 0, flips = 0, rerouted = 0;
    for (int64_t s = 0; s <= cpu.n_steps; s++) {
        const float *c = cpu.logits + s * cpu.n_vocab, *g = gpu.logits + s * cpu.n_vocab;
        double dd = 0.0, cc = 0.0, amax = 0.0;
        bool finite = true;
        for (int64_t i = 0; i < cpu.n_vocab; i++) {
            const double d = (double)g[i] - (double)c[i];
            if (!isfinite(g[i])) finite = false;
            dd += d * d;
            cc += (double)c[i] * c[i];
            amax = fmax(amax, fabs(d));
        }
        const double rel = cc > 0.0 ? sqrt(dd / cc) : sqrt(dd);
        int64_t c2, g2;
        const int64_t c1 = argmax(c, cpu.n_vocab, &c2), g1 = argmax(g, cpu.n_vocab, &g2);
        const double margin = (double)c[c1] - (double)c[c2];
        min_margin = fmin(min_margin, margin);
        /* a token of the step routed to other experts */
        const size_t per_step = (size_t)cpu.n_prompt * (size_t)(cpu.route_n[0] / cpu.n_prompt);
        const bool rerouted_here =
            cpu.route_n[s] >= 0 && gpu.route_n[s] >= 0 &&
            (cpu.route_n[s] != gpu.route_n[s] ||
             memcmp(cpu.routes + s * per_step, gpu.routes + s * per_step,
                    sizeof(int32_t) * (size_t)cpu.route_n[s]) != 0);
        if (rerouted_here) {
            rerouted++;
            printf("  %s, step %" PRId64 ": a token routed to other experts than on the CPU "
                   "(normalized logits error %.3e)\n",
                   path, s, rel);
        } else {
            worst_rel = fmax(worst_rel, finite ? rel : INFINITY);
        }
        if (!CHECK(finite && (rerouted_here || rel <= REL_BOUND)))
            fprintf(stderr, "  %s, step %" PRId64 ": normalized logits error %.3e (bound %.1e)%s\n",
                    path, s, rel, REL_BOUND, finite ? "" : ", non-finite GPU logits");
        if (c1 != g1) {
            const bool tie = margin <= TIE_FACTOR * amax;
            if (tie)
                ties++;
            else
                flips++;
            printf("  %s, step %" PRId64 ": top token CPU %" PRId64 ", GPU %" PRId64
                   " (CPU margin %.4f, largest logit difference %.4f: %s)\n",
                   path, s, c1, g1, margin, amax, tie ? "a near tie" : "NOT a tie");
        }
    }
    CHECK(flips == 0);
    /* routes that differ at most steps: not scores in another order */
    if (!CHECK(rerouted <= cpu.n_steps / 4))
        fprintf(stderr, "  %s: %d of %" PRId64 " steps routed to other experts than on the CPU\n",
                path, rerouted, cpu.n_steps + 1);
    printf("%s: %" PRId64 " prompt tokens + %" PRId64
           " steps, normalized logits error at most %.2e (steps routed alike), smallest CPU "
           "margin %.4f, %d near ties, %d flips, %d steps routed otherwise\n",
           path, cpu.n_prompt, cpu.n_steps, worst_rel, min_margin, ties, flips, rerouted);
done:
    free(cpu.tokens);
    free(cpu.logits);
    free(cpu.routes);
    free(gpu.logits);
    free(gpu.routes);
}

/* The synthesized models: a preset at test size, its file type (a name of
 * `synth --type`), and what it changes from the preset. */
static const struct {
    const char *like, *type;
    int64_t head_dim;
    bool tied;
} synth_models[] = {
    {"qwen3-8b", "q4_k_m", 128, false},    {"qwen3-8b", "q8_0", 128, false},
    {"qwen3-30b-a3b", "q4_k_m", 0, false}, {"qwen2.5-14b", "q6_k", 0, false},
    {"tiny-llama", "q5_k_m", 0, true},     {"tiny-llama", "q4_1", 0, false},
    {"tiny-llama", "q5_0", 0, false},      {"tiny-llama", "q5_1", 0, false},
    {"tiny-llama", "q3_k_m", 0, false},    {"tiny-llama", "bf16", 0, false},
};

/* synth_models[i] written under dir and compared; the file removed after. */
static void compare_synth(size_t i, const char *dir, const struct opts *o)
{
    enum quant_mix_ftype ftype;
    if (!CHECK(quant_mix_ftype_from_name(synth_models[i].type, &ftype))) return;
    struct synth_config c = synth_small_config(synth_models[i].like, ftype);
    c.head_dim = synth_models[i].head_dim;
    c.tied_output = synth_models[i].tied;
    c.n_threads = HY_MIN(o->n_threads, SYNTH_MAX_THREADS);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s%s.gguf", dir, synth_models[i].like,
             synth_models[i].type, synth_models[i].tied ? "-tied" : "");
    struct synth_route_stats stats;
    if (!CHECK_OK(synth_write(&c, path, true, NULL, NULL, &stats))) {
        fprintf(stderr, "  %s: %s\n", path, err_msg());
        return;
    }
    compare(path, o);
    remove(path);
}

int main(int argc, char **argv)
{
    if (cuda_device_count() <= 0) {
        printf("%s: no CUDA device (or a build without CUDA): skipped\n", argv[0]);
        return 77;
    }
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct opts o = {.budget = 0, .kv_type = HY_TYPE_F16, .n_threads = (int)(ncpu > 0 ? ncpu : 1)};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--budget") && i + 1 < argc) {
            o.budget = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--kv-type") && i + 1 < argc) {
            const char *k = argv[++i];
            if (!strcmp(k, "f32")) {
                o.kv_type = HY_TYPE_F32;
            } else if (!strcmp(k, "f16")) {
                o.kv_type = HY_TYPE_F16;
            } else if (!strcmp(k, "q8_0")) {
                o.kv_type = HY_TYPE_Q8_0;
            } else {
                fprintf(stderr, "%s: --kv-type %s: expected f32, f16 or q8_0\n", argv[0], k);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--budget BYTES] [--kv-type f32|f16|q8_0] [MODEL.gguf ...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (i < argc) {
        for (; i < argc; i++) compare(argv[i], &o);
    } else {
        for (size_t m = 0; m < sizeof default_models / sizeof default_models[0]; m++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", HY_TESTDATA_DIR, default_models[m]);
            compare(path, &o);
        }
        char dir[] = "/tmp/hypura-cuda-e2e-XXXXXX";
        if (CHECK(mkdtemp(dir) != NULL)) {
            for (size_t m = 0; m < sizeof synth_models / sizeof synth_models[0]; m++)
                compare_synth(m, dir, &o);
            rmdir(dir);
        }
    }
    return check_report(argv[0]);
}
