#include "engine/engine.h"

#include "backend/cuda/cuda_backend.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/err.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "sample/stop_filter.h"
#include "store/store.h"

struct engine_gen {
    struct engine *e;      /* borrowed */
    struct engine_seq *s;  /* borrowed: held by the caller for the generation's lifetime */
    int64_t n_predict;
    struct sampler smp;
    struct tokenizer_stream stream;
    struct stop_filter stopf;
    bool have_smp, have_stream, have_stopf;
    /* for the next sample: the sequence's forward's logits, or (n_top > 0)
     * the n_top best of them picked where they were computed */
    const float *logits;
    int n_top;
    int32_t top_ids[BACKEND_TOP_K_MAX];
    float top_vals[BACKEND_TOP_K_MAX];
    int32_t *gen;        /* owned, [n_ctx]: generated ids */
    char *out;           /* owned, out_cap bytes: the text of the last engine_gen_next */
    size_t out_cap, out_len;
    int64_t t_gen0; /* timing_now_us when the prompt was done */
    uint64_t read_gen0; /* engine_io().run_bytes then */
    int64_t stall_gen0; /* engine_io().stall_us then */
    atomic_bool cancel;
    bool done;
    struct engine_gen_stats st;
};

/* VRAM the default GPU budget leaves free (the CUDA context's growth,
 * other programs). */
static uint64_t gpu_headroom(uint64_t total_bytes)
{
    return HY_MAX((uint64_t)512 << 20, total_bytes / 20);
}

/* The prompt GEMMs' tile in VRAM: 1/32 of the GPU budget (asked for, or
 * free VRAM less the usual headroom), from 16 to 64 MiB. The tile counts
 * against the budget like any buffer; where the budget holds only part of
 * the model, 48 MiB of weights more in VRAM is worth more to decode than
 * GEMMs of fewer rows are to the prompt (on an H100, a partial-offload
 * prompt is bound by the copies over PCIe, not by the GEMMs). */
static uint64_t gemm_tile_for(uint64_t budget)
{
    if (!budget) {
        uint64_t free_b = 0, total_b = 0;
        if (!cuda_device_memory(0, &free_b, &total_b)) return 0;
        budget = free_b > gpu_headroom(total_b) ? free_b - gpu_headroom(total_b) : 0;
    }
    const uint64_t mib = (uint64_t)1 << 20;
    return HY_MIN(CUDA_GEMM_TILE_BYTES, HY_MAX(CUDA_GEMM_TILE_MIN, budget / 32 / mib * mib));
}

enum hy_status engine_plan_work(const struct model_info *mi, int64_t n_ctx, int64_t n_batch,
                                uint32_t kv_type, uint64_t gpu_budget, uint64_t *ram_work,
                                uint64_t *gpu_work)
{
    *ram_work = *gpu_work = 0;
    struct forward_config fc = {.n_ctx = n_ctx, .n_batch = n_batch, .kv_type = kv_type};
    struct forward_sizes fs;
    enum hy_status st = forward_sizes_of(mi, &fc, &fs);
    if (st) return st;
    /* as engine_open and gpu_plan_params take them: the KV cache the plan
     * counts (plan_kv_bytes) comes off the forward's buffers */
    const uint64_t kv = plan_kv_bytes(&mi->hp, n_ctx);
    if (!gpu_budget) {
        const uint64_t all = fs.device_bytes + fs.host_bytes;
        *ram_work = all > kv ? all - kv : 0;
        return HY_OK;
    }
    if ((st = cuda_check_head_dim(
             fs.lim.max_head_dim,
             "plan without a GPU budget (a run with --gpu auto runs it on the CPU)")))
        return st;
    struct cuda_backend_config cc = {.gemm_tile_bytes = gemm_tile_for(gpu_budget)};
    uint64_t dev = 0, host = 0;
    cuda_backend_reserved_bytes(&cc, &fs.lim, &dev, &host);
    const uint64_t held = dev + fs.device_bytes;
    *gpu_work = held > kv ? held - kv : 0;
    *ram_work = host + fs.host_bytes;
    return HY_OK;
}

/* The compute backend: CUDA when o->gpu asks for it and a device is
 * present (never for the mmap baseline, which places nothing), else the CPU. */
HY_MUST_CHECK static enum hy_status open_backend(struct engine *e, const struct engine_opts *o)
{
    const char *g = o->gpu ? o->gpu : "off";
    if (strcmp(g, "off") != 0 && strcmp(g, "auto") != 0 && strcmp(g, "on") != 0)
        return err_set(HY_ERR_INVALID_ARG, "--gpu '%s': not auto, on or off", g);
    if (o->gpu_host < CUDA_HOST_AUTO || o->gpu_host > CUDA_HOST_COPY)
        return err_set(HY_ERR_INVALID_ARG, "--gpu-host %d: not auto, cpu or copy", o->gpu_host);
    const bool device = cuda_device_count() > 0, autom = strcmp(g, "auto") == 0;
    bool want = strcmp(g, "on") == 0 || (autom && device);
    if (!device && autom && o->gpu_budget_bytes) {
        char b[32];
        snprintf(e->gpu_note, sizeof e->gpu_note,
                 "--gpu-budget %s is not used: no CUDA device (the CPU runs the model)",
                 sizes_format(o->gpu_budget_bytes, b, sizeof b));
    } else if (!device && autom && o->gpu_layers_set) {
        snprintf(e->gpu_note, sizeof e->gpu_note,
                 "-ngl %" PRId64 " is not used: no CUDA device (the CPU runs the model)",
                 o->gpu_layers);
    }
    const int64_t hd = HY_MAX(e->m->hp->head_dim, e->m->hp->head_dim_v);
    if (want && autom && hd > CUDA_ATT_MAX_HEAD_DIM) {
        /* --gpu on says why (forward_init: the backend's reserve) */
        snprintf(e->gpu_note, sizeof e->gpu_note,
                 "the GPU's attention takes head dimensions up to %d and this model's is %" PRId64
                 ": running on the CPU",
                 CUDA_ATT_MAX_HEAD_DIM, hd);
        want = false;
    }
    if (want && e->use_mmap) {
        if (strcmp(g, "on") == 0)
            return err_set(HY_ERR_INVALID_ARG,
                           "--mode mmap runs on the CPU (the baseline places nothing on a GPU); "
                           "use --gpu off or another mode");
        want = false;
    }
    if (want) {
        struct cuda_backend_config cc = {.device = 0, .n_threads = (int)o->n_threads,
                                         .host_policy = (enum cuda_host_policy)o->gpu_host,
                                         .gemm_tile_bytes = gemm_tile_for(o->gpu_budget_bytes)};
        enum hy_status st = cuda_backend_create(&cc, &e->be);
        if (st) return st;
        e->on_gpu = true;
        return HY_OK;
    }
    struct cpu_backend_opts bo = {.n_threads = (int)o->n_threads};
    return cpu_backend_init(&bo, &e->be);
}

/* The sizes of the expert slices the plan leaves on the host, each with how
 * many of its kind the model has, for the VRAM expert cache's entries. */
static void expert_cache_sizes(struct engine *e)
{
    uint64_t sizes[CUDA_WEIGHT_CACHE_SIZES];
    int counts[CUDA_WEIGHT_CACHE_SIZES], n = 0;
    const int64_t E = e->m->hp->n_expert;
    for (uint64_t i = 0; E > 0 && i < e->plan.n_tensors; i++) {
        const struct plan_tensor *t = &e->plan.tensors[i];
        if (t->role != ROLE_EXPERT || t->tier == PLAN_TIER_GPU || t->layer < 0) continue;
        const uint64_t b = t->bytes / (uint64_t)E;
        int j = 0;
        while (j < n && sizes[j] != b) j++;
        if (j == n) {
            /* past the backend's sizes: a larger entry holds it, or it re-cuts them */
            if (n == CUDA_WEIGHT_CACHE_SIZES) continue;
            sizes[n] = b;
            counts[n++] = 0;
        }
        counts[j]++;
    }
    if (n > 0) cuda_backend_weight_cache_sizes(e->be, sizes, counts, n);
}

/* The GPU side of the plan's inputs: the GPU budget (asked for, or free
 * VRAM plus what this engine already holds, minus headroom: that too where
 * more was asked for than the device has, with a note), the memory the
 * forward passes hold there beyond the KV cache, and the measured PCIe and
 * device memory read rates.
 * The KV cache and activations live on the GPU, so the RAM side keeps only
 * the logits and the backend's pinned staging. */
static void gpu_plan_params(struct engine *e, struct plan_hw *hw, struct plan_params *pp)
{
    uint64_t free_b = 0, total_b = 0;
    const bool known = cuda_device_memory(0, &free_b, &total_b);
    const uint64_t held = cuda_backend_device_bytes(e->be);
    const uint64_t kv = plan_kv_bytes(e->m->hp, e->n_ctx);
    const uint64_t headroom = gpu_headroom(total_b);
    const uint64_t avail = free_b + held > headroom ? free_b + held - headroom : 0;
    uint64_t budget = e->gpu_budget_bytes;
    const uint64_t want =
        budget || e->gpu_layers < 0
            ? 0
            : plan_gpu_layers_budget(&e->m->info, kv, held > kv ? held - kv : 0, e->gpu_layers);
    if (want) {
        /* -ngl: the budget llama.cpp's offload of that many layers takes */
        char b[32], a[32];
        budget = HY_MIN(want, avail);
        if (want > avail)
            snprintf(e->gpu_note, sizeof e->gpu_note,
                     "-ngl %" PRId64 " asks for %s of VRAM, more than the GPU has: using %s",
                     e->gpu_layers, sizes_format(want, b, sizeof b),
                     sizes_format(avail, a, sizeof a));
        else
            snprintf(e->gpu_note, sizeof e->gpu_note,
                     "-ngl %" PRId64 ": GPU budget %s (the GPU minimum and the weights llama.cpp "
                     "offloads for %" PRId64 " layers)",
                     e->gpu_layers, sizes_format(budget, b, sizeof b), e->gpu_layers);
    } else if (budget && known && budget > free_b + held) {
        /* more than could be allocated: the default's (as -ngl 999 asks for
         * every layer and gets what there is) */
        char b[32], f[32], t[32], u[32];
        snprintf(e->gpu_note, sizeof e->gpu_note,
                 "--gpu-budget %s is more than the GPU has (%s free of %s): using %s",
                 sizes_format(budget, b, sizeof b), sizes_format(free_b, f, sizeof f),
                 sizes_format(total_b, t, sizeof t), sizes_format(avail, u, sizeof u));
        budget = avail;
    }
    if (!budget) budget = avail;
    e->gpu_budget_bytes = budget;
    hw->n_gpu = 1;
    hw->gpu_mem_bytes = total_b;
    const struct cuda_backend_rates rates = cuda_backend_rates(e->be);
    hw->pcie_bytes_per_s = rates.pcie_h2d_bytes_per_s;
    hw->gpu_mem_bytes_per_s = rates.device_read_bytes_per_s;
    hw->host_both_bytes_per_s = rates.host_both_bytes_per_s;
    pp->gpu_budget_bytes = budget;
    pp->gpu_compute_bytes = held > kv ? held - kv : 0;
    const uint64_t rows = e->seq[0].f ? (uint64_t)forward_logit_rows(e->seq[0].f) : 1;
    pp->compute_bytes =
        e->be->scratch_bytes + (uint64_t)e->n_seq * rows * (uint64_t)e->m->n_vocab * 4;
}

/* The CPU's one-token rate the backend measured at start (Q4_K, all
 * threads), for the types whose rate no profile gave (the plan would take
 * the default RAM read rate: predictions of partial GPU decode at half the
 * measured rate). false: none taken. */
static bool gpu_cpu_rates(struct engine *e, struct plan_hw *hw)
{
    const double r = cuda_backend_rates(e->be).cpu_matvec_bytes_per_s;
    bool any = false;
    for (int t = 0; r > 0 && t < HY_TYPE_COUNT; t++)
        if (!(hw->cpu_matvec_bytes_per_s[t] > 0)) {
            hw->cpu_matvec_bytes_per_s[t] = r;
            any = true;
        }
    return any;
}

enum hy_status engine_open(const struct engine_opts *o, struct engine **out)
{
    *out = NULL;
    struct engine *e = mem_xcalloc(1, sizeof(*e));
    e->model_path = mem_xstrdup(o->model_path);
    e->io = o->io;
    if (o->cache_dir) e->cache_dir = mem_xstrdup(o->cache_dir);
    e->force = PLAN_FORCE_NONE;
    if (o->mode && strcmp(o->mode, "auto") != 0) {
        if (strcmp(o->mode, "resident") == 0) e->force = PLAN_FORCE_RESIDENT;
        else if (strcmp(o->mode, "dense-stream") == 0) e->force = PLAN_FORCE_DENSE_STREAM;
        else if (strcmp(o->mode, "expert-stream") == 0) e->force = PLAN_FORCE_EXPERT_STREAM;
        else if (strcmp(o->mode, "mmap") == 0) e->use_mmap = true;
        else {
            free(e->cache_dir);
            free(e->model_path);
            free(e);
            return err_set(HY_ERR_INVALID_ARG,
                           "--mode '%s': not a mode (auto, resident, dense-stream, expert-stream, "
                           "mmap)",
                           o->mode);
        }
    }
    e->mode = e->use_mmap ? "mmap" : "resident";
    e->n_threads = o->n_threads;
    e->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    e->gpu_budget_bytes = o->gpu_budget_bytes;
    e->gpu_layers = o->gpu_layers_set ? HY_MAX(o->gpu_layers, (int64_t)0) : -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->seq_free, NULL);
    enum hy_status st;

    if ((st = model_open(o->model_path, &e->m))) goto fail;
    e->n_ctx = o->n_ctx;
    if (e->n_ctx == 0) e->n_ctx = e->m->hp->n_ctx_train > 0 ? e->m->hp->n_ctx_train : ENGINE_DEFAULT_CTX;
    if ((st = open_backend(e, o))) goto fail;
    e->seq = mem_xcalloc((size_t)e->n_seq, sizeof(*e->seq));
    struct forward_config fc = {.n_ctx = e->n_ctx, .n_batch = o->n_batch, .kv_type = o->kv_type,
                                .logits_all = o->logits_all};
    for (int i = 0; i < e->n_seq; i++) {
        if ((st = forward_init(e->m, e->be, &fc, &e->seq[i].f))) goto fail;
        e->seq[i].tokens = mem_xcalloc((size_t)e->n_ctx, sizeof(int32_t));
    }
    if ((st = tokenizer_init(&e->tok, e->m->gguf))) goto fail;
    e->have_tok = true;
    if (e->tok.n_vocab > e->m->n_vocab) {
        st = err_set(HY_ERR_FORMAT, "%s: vocabulary of %d tokens for %" PRId64 " embedding rows",
                     o->model_path, (int)e->tok.n_vocab, e->m->n_vocab);
        goto fail;
    }
    const char *tmpl = NULL;
    if (gguf_get_str_or_null(e->m->gguf, "tokenizer.chat_template", &tmpl) == HY_OK && tmpl)
        e->chat_template = mem_xstrdup(tmpl);
    err_clear();
    struct plan_hw dhw;
    if (e->on_gpu && !o->hw) plan_hw_defaults(&dhw); /* the GPU tier needs a plan */
    const struct plan_hw *ohw = o->hw ? o->hw : e->on_gpu ? &dhw : NULL;
    const uint64_t ram_budget = o->hw ? o->ram_budget_bytes : UINT64_MAX / 4;
    if (ohw) {
        struct plan_hw hw = *ohw;
        hw.n_threads = (int)o->n_threads;
        /* the compute buffers are part of the budget: all sequences' forward
         * buffers and the backend's scratch, beyond the KV cache the plan counts */
        uint64_t work = e->be->scratch_bytes;
        for (int i = 0; i < e->n_seq; i++) work += forward_buffer_bytes(e->seq[i].f);
        const uint64_t kv = plan_kv_bytes(e->m->hp, e->n_ctx);
        work = work > kv ? work - kv : 0;
        struct plan_params pp = {.ram_budget_bytes = ram_budget, .n_ctx = e->n_ctx,
                                 .compute_bytes = work, .force = e->force};
        if (e->on_gpu) gpu_plan_params(e, &hw, &pp);
        if (plan_init(&e->plan, &e->m->info, &hw, &pp) == HY_OK) {
            e->have_plan = true;
            /* the placement is `hypura plan`'s (the head's order chosen with
             * the rates it has); its predictions with the CPU's measured */
            struct plan q;
            if (e->on_gpu && gpu_cpu_rates(e, &hw)) {
                pp.head_order = e->plan.gpu_head_last ? PLAN_HEAD_LAST : PLAN_HEAD_FIRST;
                if (plan_init(&q, &e->m->info, &hw, &pp) == HY_OK) {
                    plan_free(&e->plan);
                    e->plan = q;
                }
                err_clear();
            }
            if (!e->use_mmap) e->mode = plan_mode_name(e->plan.mode);
            if (e->on_gpu && e->plan.gpu_expert_cache_bytes > 0) {
                if ((st = cuda_backend_set_weight_cache(e->be, e->plan.gpu_expert_cache_bytes)))
                    goto fail;
                expert_cache_sizes(e);
            }
        } else if (e->on_gpu ||
                   (!e->use_mmap &&
                    (e->force != PLAN_FORCE_NONE || o->ram_budget_bytes < e->m->weight_bytes))) {
            /* the budget cannot be honoured: refuse rather than overrun it (the
             * mmap baseline places nothing: the page cache decides) */
            st = HY_ERR_INVALID_ARG;
            goto fail;
        } else {
            snprintf(e->plan_err, sizeof e->plan_err, "%s", err_msg());
            err_clear();
        }
    }
    *out = e;
    return HY_OK;
fail:
    engine_close(e);
    return st;
}

void engine_close(struct engine *e)
{
    if (!e) return;
    if (e->have_plan) plan_free(&e->plan);
    free(e->chat_template);
    if (e->have_tok) tokenizer_free(&e->tok);
    for (int i = 0; e->seq && i < e->n_seq; i++) {
        forward_free(e->seq[i].f);
        free(e->seq[i].tokens);
    }
    free(e->seq);
    /* the store holds memory of the backend (the GPU tier): it goes first */
    if (e->m && e->m->store) store_close(e->m->store);
    backend_free(e->be);
    model_close(e->m);
    pthread_cond_destroy(&e->seq_free);
    pthread_mutex_destroy(&e->lock);
    free(e->cache_dir);
    free(e->model_path);
    free(e);
}

/* Bytes the kernel read from storage for this process (/proc/self/io
 * read_bytes); 0 when unavailable. */
static uint64_t proc_read_bytes(void)
{
    FILE *fp = fopen("/proc/self/io", "r");
    if (!fp) return 0;
    char line[128];
    unsigned long long v = 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "read_bytes: %llu", &v) == 1) break;
    fclose(fp);
    return (uint64_t)v;
}

/* The first products on a GPU pay one-time costs (cuBLAS sets itself up,
 * kernels load at their first launch: tens of milliseconds). One prompt step
 * and one decode step of throwaway tokens take them out of the first
 * request, as llama.cpp's warm-up run does; the cache and the counters are
 * emptied after. Only when no weight streams from the file, so that the pass
 * reads nothing from the disk. */
static enum hy_status warm_up(struct engine *e)
{
    struct forward *f = e->seq[0].f;
    const int64_t n = HY_MIN(forward_n_batch(f), forward_n_ctx(f) - 1);
    if (n < 1) return HY_OK;
    int32_t *tok = mem_xcalloc((size_t)n, sizeof *tok); /* token 0: any id works */
    const float *logits;
    enum hy_status st = forward_eval(f, tok, n, &logits);
    if (!st) st = forward_eval(f, tok, 1, &logits);
    free(tok);
    forward_reset(f);
    forward_reset_stats(f);
    cuda_backend_reset_stats(e->be);
    return st;
}

enum hy_status engine_load_weights(struct engine *e, model_progress_fn progress, void *user)
{
    if (e->m->store) return HY_OK;
    struct store_config sc = {.mode = STORE_RESIDENT, .io = e->io, .progress = progress,
                              .progress_user = user};
    if (e->on_gpu && e->have_plan) {
        sc.gpu = e->be;
        sc.plan = &e->plan;
    }
    if (e->use_mmap) {
        sc.mode = STORE_MMAP;
    } else if (e->have_plan && e->plan.mode == PLAN_MODE_DENSE_STREAM) {
        sc.mode = STORE_DENSE_STREAM;
        sc.plan = &e->plan;
    } else if (e->have_plan && e->plan.mode == PLAN_MODE_EXPERT_STREAM) {
        sc.mode = STORE_EXPERT_STREAM;
        sc.plan = &e->plan;
        sc.cache_dir = e->cache_dir;
    }
    struct store *s;
    enum hy_status st = store_open(e->m, &sc, &s);
    if (st) return st;
    e->mode = store_mode_name(sc.mode);
    if (e->on_gpu && sc.mode == STORE_RESIDENT && (st = warm_up(e))) return st;
    e->proc_read0 = proc_read_bytes();
    return HY_OK;
}

struct engine_io engine_io(const struct engine *e)
{
    struct engine_io r = {0};
    if (!e->m->store) return r;
    struct store_stats ss = store_stats(e->m->store);
    r.load_bytes = ss.load_bytes;
    r.run_bytes = ss.stream_bytes;
    r.stalls = ss.stalls;
    r.stall_us = ss.stall_us;
    r.resident_bytes = ss.resident_bytes;
    r.pool_bytes = ss.pool_bytes;
    if (store_mode_of(e->m->store) == STORE_MMAP) {
        uint64_t now = proc_read_bytes();
        r.run_bytes = now > e->proc_read0 ? now - e->proc_read0 : 0;
    }
    return r;
}

enum hy_status engine_tokenize(const struct engine *e, const char *text, size_t len,
                               unsigned flags, int32_t **out, int64_t *n_out)
{
    const int64_t cap = tokenizer_max_tokens(&e->tok, len);
    int32_t *ids = mem_xcalloc((size_t)(cap > 0 ? cap : 1), sizeof(int32_t));
    enum hy_status st = tokenizer_tokenize(&e->tok, text, len, flags, ids, cap, n_out);
    if (st) {
        free(ids);
        *out = NULL;
        return st;
    }
    *out = ids;
    return HY_OK;
}

static int64_t common_prefix(const int32_t *a, int64_t na, const int32_t *b, int64_t nb)
{
    int64_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

int engine_seq_acquire(struct engine *e, const int32_t *prompt, int64_t n_prompt)
{
    pthread_mutex_lock(&e->lock);
    for (;;) {
        int best = -1;
        int64_t best_len = -1;
        for (int i = 0; i < e->n_seq; i++) {
            const struct engine_seq *s = &e->seq[i];
            if (s->busy) continue;
            int64_t l = common_prefix(s->tokens, s->n_tokens, prompt, n_prompt);
            if (l > best_len) {
                best = i;
                best_len = l;
            }
        }
        if (best >= 0) {
            e->seq[best].busy = true;
            pthread_mutex_unlock(&e->lock);
            return best;
        }
        pthread_cond_wait(&e->seq_free, &e->lock);
    }
}

void engine_seq_release(struct engine *e, int seq)
{
    pthread_mutex_lock(&e->lock);
    HY_ASSERT(seq >= 0 && seq < e->n_seq && e->seq[seq].busy);
    e->seq[seq].busy = false;
    pthread_cond_signal(&e->seq_free);
    pthread_mutex_unlock(&e->lock);
}

const char *engine_stop_text(enum engine_stop s)
{
    switch (s) {
    case ENGINE_STOP_EOG: return "end of generation";
    case ENGINE_STOP_STRING: return "a stop string";
    case ENGINE_STOP_LIMIT: return "the -n limit";
    case ENGINE_STOP_CTX: return "a full context";
    case ENGINE_STOP_CANCEL: return "cancelled";
    case ENGINE_STOP_NONE: break;
    }
    return "running";
}

const char *engine_stop_api(enum engine_stop s)
{
    return s == ENGINE_STOP_LIMIT || s == ENGINE_STOP_CTX ? "length" : "stop";
}

/* Evaluates tokens[0..n) in g's sequence under the engine's lock and records
 * them as cached; on an error the cache is emptied (it may hold part of
 * them). Leaves what g's sampler needs next: the best few logits, where the
 * backend picks them, or all. */
HY_MUST_CHECK static enum hy_status gen_eval(struct engine_gen *g, const int32_t *tokens, int64_t n)
{
    struct engine *e = g->e;
    struct engine_seq *s = g->s;
    HY_ASSERT(forward_n_past(s->f) == s->n_tokens);
    const int k = (int)sampler_top_needed(&g->smp, BACKEND_TOP_K_MAX);
    pthread_mutex_lock(&e->lock);
    enum hy_status st =
        forward_eval_top(s->f, tokens, n, k, g->top_ids, g->top_vals, &g->n_top, &g->logits);
    pthread_mutex_unlock(&e->lock);
    if (st) {
        forward_reset(s->f);
        s->n_tokens = 0;
        return st;
    }
    memcpy(s->tokens + s->n_tokens, tokens, (size_t)n * sizeof(int32_t));
    s->n_tokens += n;
    return HY_OK;
}

void engine_gen_free(struct engine_gen *g)
{
    if (!g) return;
    if (g->have_stopf) stop_filter_free(&g->stopf);
    if (g->have_stream) tokenizer_stream_free(&g->stream);
    if (g->have_smp) sampler_free(&g->smp);
    free(g->gen);
    free(g->out);
    free(g);
}

enum hy_status engine_gen_start(struct engine *e, int seq, const int32_t *prompt, int64_t n_prompt,
                                const struct engine_gen_params *p, struct engine_gen **out)
{
    *out = NULL;
    HY_ASSERT(seq >= 0 && seq < e->n_seq);
    if (n_prompt < 1)
        return err_set(HY_ERR_INVALID_ARG,
                       "nothing to evaluate: the prompt has no tokens (and the vocabulary adds "
                       "no BOS token)");
    if (n_prompt >= e->n_ctx)
        return err_set(HY_ERR_INVALID_ARG,
                       "the prompt has %" PRId64
                       " tokens, which leaves no room in a context of %" PRId64,
                       n_prompt, e->n_ctx);
    struct engine_gen *g = mem_xcalloc(1, sizeof(*g));
    g->e = e;
    g->s = &e->seq[seq];
    g->n_predict = p->n_predict;
    atomic_init(&g->cancel, false);
    enum hy_status st;
    if ((st = sampler_init(&g->smp, (int32_t)e->m->n_vocab, &p->sp))) goto fail;
    g->have_smp = true;
    tokenizer_stream_init(&g->stream, &e->tok);
    g->have_stream = true;
    /* generated text continues the prompt: its first piece keeps its leading space */
    g->stream.at_start = false;
    if ((st = stop_filter_init(&g->stopf, p->stops, p->n_stops, g->stream.cap))) goto fail;
    g->have_stopf = true;
    size_t max_stop = 0;
    for (int i = 0; i < p->n_stops; i++) max_stop = HY_MAX(max_stop, strlen(p->stops[i]));
    /* one push and the flushes after it: the stream's piece, its held-back
     * UTF-8 bytes and the stop filter's held-back text */
    g->out_cap = 2 * g->stream.cap + 2 * max_stop + 64;
    g->out = mem_xmalloc(g->out_cap);
    g->gen = mem_xcalloc((size_t)e->n_ctx, sizeof(int32_t));

    for (int64_t i = 0; i < n_prompt; i++) sampler_accept(&g->smp, prompt[i]);
    g->st.n_prompt = n_prompt;
    const int64_t t0 = timing_now_us();
    struct engine_seq *s = g->s;
    int64_t keep = common_prefix(s->tokens, s->n_tokens, prompt, n_prompt);
    if (keep >= n_prompt) keep = n_prompt - 1; /* the last token's logits are needed */
    forward_truncate(s->f, keep);
    s->n_tokens = keep;
    g->st.n_prompt_eval = n_prompt - keep;
    const uint64_t read0 = engine_io(e).run_bytes;
    if ((st = gen_eval(g, prompt + keep, n_prompt - keep))) goto fail;
    const struct engine_io io0 = engine_io(e);
    g->read_gen0 = io0.run_bytes;
    g->stall_gen0 = io0.stall_us;
    g->st.prompt_read_bytes = g->read_gen0 - read0;
    g->t_gen0 = timing_now_us();
    g->st.prompt_us = g->t_gen0 - t0;
    *out = g;
    return HY_OK;
fail:
    engine_gen_free(g);
    return st;
}

static void out_append(struct engine_gen *g, const char *s, size_t n)
{
    if (!n) return;
    if (g->out_len + n > g->out_cap) {
        g->out_cap = 2 * (g->out_len + n);
        g->out = mem_xrealloc(g->out, g->out_cap);
    }
    memcpy(g->out + g->out_len, s, n);
    g->out_len += n;
}

/* Ends the generation for reason: what the detokenizer and the stop filter
 * still hold goes out (a stop string completed by it still counts). */
static void gen_finish(struct engine_gen *g, enum engine_stop reason)
{
    size_t n_txt, n_out;
    const char *out;
    g->st.stop = reason;
    const char *txt = tokenizer_stream_flush(&g->stream, &n_txt);
    if (stop_filter_push(&g->stopf, txt, n_txt, &out, &n_out)) g->st.stop = ENGINE_STOP_STRING;
    out_append(g, out, n_out);
    stop_filter_flush(&g->stopf, &out, &n_out);
    out_append(g, out, n_out);
    g->done = true;
    g->st.gen_us = timing_now_us() - g->t_gen0;
}

enum hy_status engine_gen_next(struct engine_gen *g, const char **text, size_t *len, bool *done)
{
    g->out_len = 0;
    *text = g->out;
    *len = 0;
    *done = true;
    if (g->done) return HY_OK;
    struct engine_gen_stats *st = &g->st;
    if (atomic_load(&g->cancel)) {
        gen_finish(g, ENGINE_STOP_CANCEL);
    } else if (g->n_predict >= 0 && st->n_gen >= g->n_predict) {
        gen_finish(g, ENGINE_STOP_LIMIT);
    } else {
        int32_t id = g->n_top ? sampler_sample_top(&g->smp, g->top_ids, g->top_vals, g->n_top)
                              : sampler_sample(&g->smp, g->logits);
        if (tokenizer_is_eog(&g->e->tok, id)) {
            gen_finish(g, ENGINE_STOP_EOG);
        } else {
            g->gen[st->n_gen++] = id;
            sampler_accept(&g->smp, id);
            size_t n_txt, n_out;
            const char *out;
            const char *txt = tokenizer_stream_push(&g->stream, id, &n_txt);
            const bool stopped = stop_filter_push(&g->stopf, txt, n_txt, &out, &n_out);
            out_append(g, out, n_out);
            if (stopped) {
                /* the text after a stop string is dropped, held-back bytes too */
                st->stop = ENGINE_STOP_STRING;
                g->done = true;
                st->gen_us = timing_now_us() - g->t_gen0;
            } else if (g->n_predict >= 0 && st->n_gen >= g->n_predict) {
                gen_finish(g, ENGINE_STOP_LIMIT);
            } else if (forward_n_past(g->s->f) >= g->e->n_ctx) {
                gen_finish(g, ENGINE_STOP_CTX);
            } else {
                const int64_t t1 = timing_now_us();
                enum hy_status es = gen_eval(g, &id, 1);
                if (es) {
                    g->done = true;
                    st->stop = ENGINE_STOP_CANCEL;
                    st->gen_us = timing_now_us() - g->t_gen0;
                    g->out_len = 0;
                    return es;
                }
                st->decode_us += timing_now_us() - t1;
                st->n_decode++;
                const struct engine_io io = engine_io(g->e);
                st->gen_read_bytes = io.run_bytes - g->read_gen0;
                st->gen_stall_us = io.stall_us - g->stall_gen0;
            }
        }
    }
    *len = g->out_len;
    *done = g->done;
    return HY_OK;
}

void engine_gen_cancel(struct engine_gen *g)
{
    atomic_store(&g->cancel, true);
}

const struct engine_gen_stats *engine_gen_stats(const struct engine_gen *g)
{
    return &g->st;
}

const int32_t *engine_gen_tokens(const struct engine_gen *g, int64_t *n)
{
    *n = g->st.n_gen;
    return g->gen;
}

enum hy_status engine_generate(struct engine *e, int seq, const int32_t *prompt, int64_t n_prompt,
                               const struct engine_gen_params *p, engine_piece_fn piece,
                               void *user, struct engine_gen_stats *stats)
{
    struct engine_gen *g = NULL;
    enum hy_status st = engine_gen_start(e, seq, prompt, n_prompt, p, &g);
    if (st) return st;
    bool done = false;
    while (!done) {
        const char *txt;
        size_t n;
        if ((st = engine_gen_next(g, &txt, &n, &done))) break;
        if (n && !piece(user, txt, n)) engine_gen_cancel(g);
    }
    *stats = g->st;
    engine_gen_free(g);
    return st;
}
