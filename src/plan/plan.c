/*
 * Placement plan and cost model; the rules and assumptions are in plan.h.
 *
 * Rejected: a knapsack over individual tensors. The value of a byte is the
 * same within a class (dense FFN: read every token; experts: k/E of tokens),
 * so filling by class in the order of the rules is optimal up to the
 * granularity of a layer, and it keeps the streamed set regular (whole
 * layers, the same cache size per MoE layer) for the store and prefetcher.
 */
#include "plan/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"

#define MIB (1024ull * 1024ull)

/* Decode on the GPU beside its bytes (plan.h), measured for this engine's
 * kernels on an H100 (BENCHMARKS.md, per-op times): a matrix product takes
 * at least GPU_PRODUCT_S; every layer adds GPU_LAYER_S (its norms and
 * attention) and an MoE layer GPU_MOE_LAYER_S more (routing, the routes'
 * download, the weighted sums); a product on host weights adds
 * HOST_CALL_S (the activations down, the copies queued and waited for). */
#define GPU_PRODUCT_S   4e-6
#define GPU_LAYER_S     18e-6
#define GPU_MOE_LAYER_S 26e-6
#define HOST_CALL_S     20e-6

/* The share of the device's read rate a one-token product of this type
 * streams its weights at (H100: F16 2.6-2.9 TB/s of 3.04, Q4_K and Q6_K
 * 1.2-2.1); other quantized types take the K-quants' share. */
static double gpu_type_share(uint32_t type)
{
    switch (type) {
    case HY_TYPE_F32:
    case HY_TYPE_F16:
    case HY_TYPE_BF16: return 0.9;
    case HY_TYPE_Q8_0: return 0.75;
    default: return 0.6;
    }
}

void plan_hw_defaults(struct plan_hw *hw)
{
    memset(hw, 0, sizeof(*hw));
    hw->disk_read_bytes_per_s = 3e9;
    hw->disk_best_request_bytes = 4 * MIB;
    hw->mem_read_bytes_per_s = 20e9;
    hw->n_threads = 4;
}

const char *plan_tier_name(enum plan_tier t)
{
    switch (t) {
    case PLAN_TIER_GPU: return "gpu";
    case PLAN_TIER_RAM: return "ram";
    case PLAN_TIER_NVME: return "nvme";
    }
    return "?";
}

const char *plan_mode_name(enum plan_mode m)
{
    switch (m) {
    case PLAN_MODE_RESIDENT: return "resident";
    case PLAN_MODE_DENSE_STREAM: return "dense-stream";
    case PLAN_MODE_EXPERT_STREAM: return "expert-stream";
    }
    return "?";
}

const char *plan_bound_name(enum plan_bound b)
{
    switch (b) {
    case PLAN_BOUND_COMPUTE: return "compute";
    case PLAN_BOUND_DISK: return "disk";
    case PLAN_BOUND_PCIE: return "pcie";
    }
    return "?";
}

uint64_t plan_kv_bytes(const struct hparams *hp, int64_t n_ctx)
{
    if (n_ctx <= 0 || hp->n_layer <= 0) return 0;
    uint64_t per_pos = (uint64_t)(hp->n_head_kv * hp->head_dim + hp->n_head_kv * hp->head_dim_v);
    return (uint64_t)hp->n_layer * (uint64_t)n_ctx * per_pos * 2;
}

uint64_t plan_headroom_bytes(uint64_t bytes)
{
    uint64_t h = HY_MAX(512 * MIB, bytes / 16);
    return HY_MIN(h, bytes);
}

uint64_t plan_ram_budget(uint64_t requested, uint64_t available, uint64_t cgroup_limit, bool *clamped)
{
    uint64_t b = requested ? requested : available - plan_headroom_bytes(available);
    bool c = false;
    if (cgroup_limit) {
        /* a budget asked for may come up to the margin the process needs
         * beyond its budget; a default one keeps the usual headroom */
        uint64_t cap = requested ? (cgroup_limit > PLAN_CGROUP_MARGIN
                                        ? cgroup_limit - PLAN_CGROUP_MARGIN
                                        : cgroup_limit / 2)
                                 : cgroup_limit - plan_headroom_bytes(cgroup_limit);
        if (b > cap) {
            c = requested != 0;
            b = cap;
        }
    }
    if (clamped) *clamped = c;
    return b;
}

static double harmonic_s(int64_t n, double s)
{
    double h = 0;
    for (int64_t i = 1; i <= n; i++) h += pow((double)i, -s);
    return h;
}

double plan_expert_hit_rate(int64_t c, int64_t n_expert)
{
    if (n_expert <= 0 || c <= 0) return 0;
    if (c >= n_expert) return 1;
    return harmonic_s(c, PLAN_EXPERT_ZIPF_S) / harmonic_s(n_expert, PLAN_EXPERT_ZIPF_S);
}

void plan_free(struct plan *p)
{
    if (!p) return;
    free(p->layers);
    free(p->tensors);
    memset(p, 0, sizeof(*p));
}

/* Whether layer l is among r of n evenly spread layers. */
static bool spread_pick(int l, int r, int n)
{
    if (r <= 0) return false;
    if (r >= n) return true;
    return (int64_t)(l + 1) * r / n > (int64_t)l * r / n;
}

static double matvec_rate(const struct plan_hw *hw, uint32_t type)
{
    double r = type < HY_TYPE_COUNT ? hw->cpu_matvec_bytes_per_s[type] : 0;
    return r > 0 ? r : hw->mem_read_bytes_per_s;
}

struct layer_sizes {
    uint64_t ffn, exp;       /* dense FFN and routed-expert weight bytes */
};

/* Steady-state decode over the layers (see plan.h): reads go one after
 * another on the disk, each into a slot freed when the layer that used it
 * S streamed layers earlier finished computing. Returns the token time; fills
 * t_layer_s from the last simulated token. */
static double simulate(struct plan_layer *L, int n, double t_tail, int n_slots)
{
    enum { TOKENS = 3, MAX_SLOTS = 16 };
    double slot_free[MAX_SLOTS] = {0};
    int slot = 0;
    double disk_free = 0, t = 0, t_tok_start = 0;
    if (n_slots < 1) n_slots = 1;
    if (n_slots > MAX_SLOTS) n_slots = MAX_SLOTS;
    for (int tok = 0; tok < TOKENS; tok++) {
        t_tok_start = t;
        for (int l = 0; l < n; l++) {
            double read_end = 0, t0 = t;
            bool reads = L[l].t_io_s > 0;
            if (reads) {
                double start = HY_MAX(disk_free, slot_free[slot]);
                read_end = start + L[l].t_io_s;
                disk_free = read_end;
            }
            t = HY_MAX(t, read_end) + L[l].t_compute_s;
            if (reads) {
                slot_free[slot] = t;
                slot = (slot + 1) % n_slots;
            }
            if (tok == TOKENS - 1) L[l].t_layer_s = t - t0;
        }
        t += t_tail;
    }
    return t - t_tok_start;
}

static enum hy_status below_minimum(uint64_t budget, uint64_t min, const uint64_t *by_role, uint64_t kv,
                                    uint64_t work, uint64_t pool)
{
    char b[32], m[32], x[6][32];
    uint64_t attn = by_role[ROLE_ATTN];
    uint64_t emb = by_role[ROLE_EMBED] + by_role[ROLE_OUTPUT];
    uint64_t rest = by_role[ROLE_NORM] + by_role[ROLE_ROUTER] + by_role[ROLE_SHARED_EXPERT] + by_role[ROLE_OTHER];
    return err_set(HY_ERR_INVALID_ARG,
                   "RAM budget %s is below the resident minimum %s (attention %s, embeddings+output %s, "
                   "norms+routers+shared experts %s, KV cache %s, compute buffers %s, stream pool %s)\n"
                   "hint: raise --ram-budget, or shrink the KV cache with a smaller context (-c) and the compute buffers with a smaller batch (-b)",
                   sizes_format(budget, b, sizeof b), sizes_format(min, m, sizeof m),
                   sizes_format(attn, x[0], sizeof x[0]), sizes_format(emb, x[1], sizeof x[1]),
                   sizes_format(rest, x[2], sizeof x[2]), sizes_format(kv, x[3], sizeof x[3]),
                   sizes_format(work, x[4], sizeof x[4]), sizes_format(pool, x[5], sizeof x[5]));
}

/* Every norm tensor's bytes: on the GPU whatever the budget (rule G2). */
static uint64_t norm_bytes(const struct model_info *info)
{
    uint64_t b = 0;
    for (uint64_t i = 0; i < info->gguf->n_tensors; i++)
        if (info->tensor_role[i] == ROLE_NORM) b += info->gguf->tensors[i].n_bytes;
    return b;
}

uint64_t plan_gpu_layers_budget(const struct model_info *info, uint64_t kv_bytes,
                                uint64_t gpu_compute_bytes, int64_t n_gpu_layers)
{
    const int n = info->n_layer_seen;
    if (n_gpu_layers > n) return 0;
    uint64_t b = kv_bytes + gpu_compute_bytes + norm_bytes(info);
    if (n_gpu_layers < 1) return b;
    const bool tied = info->bytes_by_role[ROLE_OUTPUT] == 0;
    b += info->bytes_by_role[tied ? ROLE_EMBED : ROLE_OUTPUT];
    for (int l = n - (int)(n_gpu_layers - 1); l < n; l++)
        for (int r = 0; r < ROLE_COUNT; r++)
            if (r != ROLE_NORM) b += info->bytes_by_layer_role[(size_t)l * ROLE_COUNT + (size_t)r];
    return b;
}

static enum hy_status below_gpu_minimum(uint64_t budget, uint64_t min, uint64_t kv, uint64_t work, uint64_t norms)
{
    char b[32], m[32], x[3][32];
    return err_set(HY_ERR_INVALID_ARG,
                   "GPU budget %s is below the GPU minimum %s (KV cache %s, GPU compute buffers %s, norms %s)\n"
                   "hint: raise --gpu-budget, shrink the KV cache with a smaller context (-c), or run without "
                   "the GPU (--gpu off)",
                   sizes_format(budget, b, sizeof b), sizes_format(min, m, sizeof m),
                   sizes_format(kv, x[0], sizeof x[0]), sizes_format(work, x[1], sizeof x[1]),
                   sizes_format(norms, x[2], sizeof x[2]));
}

/* GPU placement state: on[i] for tensor i, what is left of the budget and
 * what the weights placed take. */
struct gpu_fill {
    const struct model_info *info;
    int n;
    int64_t E;
    bool *on;
    uint64_t left, weights;
};

/* A tensor placed with its layer's FFN or expert unit rather than alone. */
static bool gpu_unit_tensor(const struct gpu_fill *f, uint64_t i)
{
    enum tensor_role r = f->info->tensor_role[i];
    int l = f->info->tensor_layer[i];
    return l >= 0 && (r == ROLE_FFN || (r == ROLE_EXPERT && f->E > 0));
}

/* Places the single tensors of role r (with loose FFN / expert tensors when
 * r is ROLE_OTHER) in layer order, each if it fits; `force` places them
 * whatever is left (their bytes are part of the minimum). */
static void gpu_place_role(struct gpu_fill *f, enum tensor_role r, bool force)
{
    const struct gguf_ctx *g = f->info->gguf;
    for (int l = -1; l < f->n; l++)
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            enum tensor_role ri = f->info->tensor_role[i];
            if (f->on[i] || f->info->tensor_layer[i] != l || gpu_unit_tensor(f, i)) continue;
            bool match = ri == r || (r == ROLE_OTHER && (ri == ROLE_FFN || ri == ROLE_EXPERT));
            uint64_t b = g->tensors[i].n_bytes;
            if (!match || (!force && b > f->left)) continue;
            f->on[i] = true;
            f->weights += b;
            if (!force) f->left -= b;
        }
}

/* Places layer l's unit tensors of role r (FFN or EXPERT) together if they
 * fit; returns whether they did (true too when the layer has none). */
static bool gpu_place_unit(struct gpu_fill *f, int l, enum tensor_role r)
{
    const struct gguf_ctx *g = f->info->gguf;
    uint64_t need = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (f->info->tensor_layer[i] == l && f->info->tensor_role[i] == r && gpu_unit_tensor(f, i))
            need += g->tensors[i].n_bytes;
    if (need > f->left) return false;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (f->info->tensor_layer[i] == l && f->info->tensor_role[i] == r && gpu_unit_tensor(f, i)) f->on[i] = true;
    f->left -= need;
    f->weights += need;
    return true;
}

/* Places layer l's unit tensors of role r one by one, the largest first,
 * each if it fits in what is left. */
static void gpu_place_layer_singles(struct gpu_fill *f, int l, enum tensor_role r)
{
    const struct gguf_ctx *g = f->info->gguf;
    for (;;) {
        uint64_t best = UINT64_MAX;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            if (f->on[i] || f->info->tensor_layer[i] != l || f->info->tensor_role[i] != r ||
                !gpu_unit_tensor(f, i) || g->tensors[i].n_bytes > f->left)
                continue;
            if (best == UINT64_MAX || g->tensors[i].n_bytes > g->tensors[best].n_bytes) best = i;
        }
        if (best == UINT64_MAX) return;
        f->on[best] = true;
        f->left -= g->tensors[best].n_bytes;
        f->weights += g->tensors[best].n_bytes;
    }
}

/* Rules G2-G3 (plan.h): fills on[], the GPU minimum and the weights placed. */
static enum hy_status gpu_place(const struct model_info *info, int n, int64_t E, uint64_t kv,
                                uint64_t work, uint64_t budget, enum plan_force force,
                                bool head_last, bool embd_gpu, bool *on, uint64_t *min_out,
                                uint64_t *weights_out)
{
    const uint64_t norms = norm_bytes(info);
    const uint64_t min = kv + work + norms;
    *min_out = min;
    if (budget < min) return below_gpu_minimum(budget, min, kv, work, norms);
    struct gpu_fill f = {info, n, E, on, budget - min, 0};
    const bool tied = info->bytes_by_role[ROLE_OUTPUT] == 0;
    gpu_place_role(&f, ROLE_NORM, true);
    gpu_place_role(&f, ROLE_ATTN, false);
    gpu_place_role(&f, ROLE_ROUTER, false);
    gpu_place_role(&f, ROLE_SHARED_EXPERT, false);
    gpu_place_role(&f, ROLE_OTHER, false);
    if (!head_last) gpu_place_role(&f, tied ? ROLE_EMBED : ROLE_OUTPUT, false);
    /* a forced streaming mode keeps what it streams off the GPU tier (the
     * GPU backend's VRAM cache still holds hot experts) */
    if (force != PLAN_FORCE_DENSE_STREAM) {
        int l = 0;
        while (l < n && gpu_place_unit(&f, l, ROLE_FFN)) l++; /* a prefix of the layers */
        /* then single FFN tensors of the layers after it, each layer's
         * largest first, each if it fits: a dense weight's every byte is read
         * each token wherever it lies, so what fits of a layer saves its
         * bytes of host traffic (and a whole product's round trip) */
        for (; l < n; l++) gpu_place_layer_singles(&f, l, ROLE_FFN);
    }
    if (head_last) gpu_place_role(&f, tied ? ROLE_EMBED : ROLE_OUTPUT, false);
    if (E > 0 && force != PLAN_FORCE_EXPERT_STREAM)
        for (int l = 0; l < n; l++) (void)gpu_place_unit(&f, l, ROLE_EXPERT);
    if (!tied && embd_gpu) gpu_place_role(&f, ROLE_EMBED, false);
    *weights_out = f.weights;
    return HY_OK;
}

/* Whether the plan has a GPU tier: a GPU and a budget for it. */
static bool gpu_tier_on(const struct plan_hw *hw, const struct plan_params *params)
{
    return hw->n_gpu > 0 && params->gpu_budget_bytes > 0;
}

/* The plan with the output head placed before or after the dense FFN, and
 * untied token embeddings last on the GPU or left in RAM (rule G3);
 * plan_init picks between them. */
static enum hy_status plan_build(struct plan *p, const struct model_info *info,
                                 const struct plan_hw *hw, const struct plan_params *params,
                                 bool head_last, bool embd_gpu)
{
    memset(p, 0, sizeof(*p));
    const struct hparams *hp = &info->hp;
    const struct gguf_ctx *g = info->gguf;
    if (params->n_ctx <= 0)
        return err_set(HY_ERR_INVALID_ARG, "context length %lld must be positive", (long long)params->n_ctx);
    if (!(hw->disk_read_bytes_per_s > 0) || !(hw->mem_read_bytes_per_s > 0))
        return err_set(HY_ERR_INVALID_ARG, "disk (%g B/s) and memory (%g B/s) bandwidths must be positive",
                       hw->disk_read_bytes_per_s, hw->mem_read_bytes_per_s);
    const int n = info->n_layer_seen;
    if (n <= 0) return err_set(HY_ERR_UNSUPPORTED, "%s: the model has no layers (blk.N tensors) to plan", g->name);

    const int64_t E = hp->n_expert, k = hp->n_expert_used;
    const uint64_t kv = plan_kv_bytes(hp, params->n_ctx);

    /* the GPU tier first (rules G1-G3); the RAM plan runs over the rest */
    const bool gpu_on = gpu_tier_on(hw, params);
    const uint64_t gpu_work = gpu_on ? params->gpu_compute_bytes : 0;
    bool *on_gpu = mem_xcalloc((size_t)g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*on_gpu));
    uint64_t gpu_min = 0, gpu_weights = 0;
    if (gpu_on) {
        enum hy_status st =
            gpu_place(info, n, E, kv, gpu_work, params->gpu_budget_bytes, params->force, head_last,
                      embd_gpu, on_gpu, &gpu_min, &gpu_weights);
        if (st) {
            free(on_gpu);
            return st;
        }
    }
    const uint64_t kv_ram = gpu_on ? 0 : kv; /* the KV cache's share of the RAM budget */

    uint64_t fixed_by_role[ROLE_COUNT] = {0}, fixed = 0;
    struct layer_sizes *ls = mem_xcalloc((size_t)n, sizeof(*ls));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        enum tensor_role r = info->tensor_role[i];
        int l = info->tensor_layer[i];
        uint64_t b = g->tensors[i].n_bytes;
        if (on_gpu[i]) continue;
        if (r == ROLE_FFN && l >= 0) ls[l].ffn += b;
        else if (r == ROLE_EXPERT && l >= 0 && E > 0) ls[l].exp += b;
        else {
            fixed_by_role[r] += b;
            fixed += b;
        }
    }
    uint64_t sum_ffn = 0, sum_exp = 0, max_ffn = 0, max_kslice = 0;
    for (int l = 0; l < n; l++) {
        sum_ffn += ls[l].ffn;
        sum_exp += ls[l].exp;
        max_ffn = HY_MAX(max_ffn, ls[l].ffn);
        if (E > 0) max_kslice = HY_MAX(max_kslice, (uint64_t)k * (ls[l].exp / (uint64_t)E));
    }
    const uint64_t budget = params->ram_budget_bytes;
    const uint64_t work = params->compute_bytes;
    const uint64_t all = fixed + kv_ram + work + sum_ffn + sum_exp;
    const int n_slots = PLAN_PREFETCH_DEPTH + 1;

    /* worst-case pool: dense FFN layers may stream */
    uint64_t slot_bytes = HY_MAX(max_ffn, max_kslice);
    const uint64_t min = fixed + kv_ram + work + (uint64_t)n_slots * slot_bytes;
    p->min_resident_bytes = min;
    int *cache = mem_xcalloc((size_t)n, sizeof(*cache));
    bool *ffn_res = mem_xcalloc((size_t)n, sizeof(*ffn_res));
    const enum plan_force force = params->force;
    if (force == PLAN_FORCE_DENSE_STREAM && sum_ffn == 0) {
        free(ls);
        free(cache);
        free(ffn_res);
        free(on_gpu);
        if (info->bytes_by_role[ROLE_FFN] > 0)
            return err_set(HY_ERR_INVALID_ARG, "%s: mode dense-stream: every dense FFN layer is on the GPU",
                           g->name);
        return err_set(HY_ERR_INVALID_ARG, "%s: mode dense-stream: the model has no dense FFN layers "
                       "to stream\nhint: its experts stream in mode expert-stream", g->name);
    }
    if (force == PLAN_FORCE_EXPERT_STREAM && sum_exp == 0) {
        free(ls);
        free(cache);
        free(ffn_res);
        free(on_gpu);
        if (info->bytes_by_role[ROLE_EXPERT] > 0 && E > 0)
            return err_set(HY_ERR_INVALID_ARG, "%s: mode expert-stream: every expert is on the GPU", g->name);
        return err_set(HY_ERR_INVALID_ARG, "%s: mode expert-stream: the model has no experts",
                       g->name);
    }
    bool resident = force == PLAN_FORCE_RESIDENT || (budget >= all && force == PLAN_FORCE_NONE);
    if (resident) {
        for (int l = 0; l < n; l++) {
            ffn_res[l] = true;
            cache[l] = (int)E;
        }
        slot_bytes = 0;
    } else {
        if (budget < min) {
            free(ls);
            free(cache);
            free(ffn_res);
            free(on_gpu);
            return below_minimum(budget, min, fixed_by_role, kv_ram, work, (uint64_t)n_slots * slot_bytes);
        }
        /* a smaller pool when every dense FFN fits beside an experts-only pool */
        if (sum_exp > 0 && fixed + kv_ram + work + sum_ffn + (uint64_t)n_slots * max_kslice <= budget)
            slot_bytes = max_kslice;
        uint64_t avail = budget - fixed - kv_ram - work - (uint64_t)n_slots * slot_bytes;
        /* rule 3: whole dense FFN layers, as many as fit, evenly spread */
        int n_ffn_layers = 0;
        for (int l = 0; l < n; l++) n_ffn_layers += ls[l].ffn > 0;
        for (int r = n_ffn_layers; r >= 0; r--) {
            uint64_t need = 0;
            for (int l = 0, j = 0; l < n; l++)
                if (ls[l].ffn > 0) need += spread_pick(j++, r, n_ffn_layers) ? ls[l].ffn : 0;
            /* forced streaming with a budget that holds everything streams all */
            if (force == PLAN_FORCE_DENSE_STREAM && budget >= all && r > 0) continue;
            if (need <= avail) {
                for (int l = 0, j = 0; l < n; l++)
                    if (ls[l].ffn > 0) ffn_res[l] = spread_pick(j++, r, n_ffn_layers);
                avail -= need;
                break;
            }
        }
        /* rule 4: the expert cache, the same size in every MoE layer, the
         * rest one more in evenly spread layers; only with every dense FFN
         * resident (dense bytes are worth more) */
        bool all_ffn = true;
        for (int l = 0; l < n; l++) all_ffn &= ls[l].ffn == 0 || ffn_res[l];
        if (E > 0 && sum_exp > 0 && all_ffn) {
            uint64_t per_round = 0; /* one expert more in every MoE layer */
            int n_moe = 0;
            for (int l = 0; l < n; l++)
                if (ls[l].exp) {
                    per_round += ls[l].exp / (uint64_t)E;
                    n_moe++;
                }
            int64_t c = per_round ? (int64_t)(avail / per_round) : 0;
            if (c > E) c = E;
            /* forced expert streaming keeps at least one expert per layer streamed */
            if (force == PLAN_FORCE_EXPERT_STREAM && c >= E) c = E - 1;
            avail -= (uint64_t)c * per_round;
            for (int l = 0; l < n; l++) cache[l] = ls[l].exp ? (int)c : 0;
            if (c < E) {
                for (int r = force == PLAN_FORCE_EXPERT_STREAM ? 0 : n_moe; r > 0; r--) {
                    uint64_t need = 0;
                    for (int l = 0, j = 0; l < n; l++)
                        if (ls[l].exp) need += spread_pick(j++, r, n_moe) ? ls[l].exp / (uint64_t)E : 0;
                    if (need <= avail) {
                        for (int l = 0, j = 0; l < n; l++)
                            if (ls[l].exp) cache[l] += spread_pick(j++, r, n_moe);
                        break;
                    }
                }
            }
        }
    }

    /* per tensor tiers and per layer accounting */
    p->tensors = mem_xcalloc((size_t)g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*p->tensors));
    p->n_tensors = g->n_tensors;
    p->layers = mem_xcalloc((size_t)n, sizeof(*p->layers));
    p->n_layer = n;
    double t_tail = 0, active_params = 0;
    bool has_output = info->bytes_by_role[ROLE_OUTPUT] > 0;
    const double gpu_bw = hw->gpu_mem_bytes_per_s > 0 ? hw->gpu_mem_bytes_per_s : 2e12;
    const double pcie = hw->pcie_bytes_per_s > 0 ? hw->pcie_bytes_per_s : 25e9;
    double pcie_prompt_bytes = 0; /* host bytes copied to the GPU per prompt batch */
    bool all_on_gpu = gpu_on && g->n_tensors > 0, host_experts = false;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        struct plan_tensor *pt = &p->tensors[i];
        enum tensor_role r = info->tensor_role[i];
        int l = info->tensor_layer[i];
        *pt = (struct plan_tensor){t->name, r, l, t->type, t->n_bytes, PLAN_TIER_RAM, t->n_bytes};
        double use = (double)t->n_bytes, params_used = (double)t->n_elements; /* bytes a token reads */
        const bool is_exp = r == ROLE_EXPERT && l >= 0 && E > 0;
        if (on_gpu[i]) {
            pt->tier = PLAN_TIER_GPU;
            pt->resident_bytes = 0;
        } else if (r == ROLE_FFN && l >= 0 && !ffn_res[l]) {
            pt->tier = PLAN_TIER_NVME;
            pt->resident_bytes = 0;
        } else if (is_exp && cache[l] < E) {
            pt->tier = PLAN_TIER_NVME;
            pt->resident_bytes = t->n_bytes / (uint64_t)E * (uint64_t)cache[l];
        }
        all_on_gpu &= on_gpu[i];
        host_experts |= is_exp && !on_gpu[i];
        if (is_exp) {
            use *= (double)k / (double)E;
            params_used *= (double)k / (double)E;
        }
        if (r == ROLE_EMBED) {
            /* a row lookup, unless the embeddings double as the output head */
            use = has_output ? 0 : use;
            params_used = has_output ? 0 : params_used;
        }
        active_params += params_used;
        /* a product's weight (not a norm, a bias or an embeddings lookup) */
        const bool product = t->n_dims >= 2 && use > 0 && r != ROLE_NORM;
        double tc;
        if (!gpu_on) tc = use / matvec_rate(hw, t->type);
        else if (on_gpu[i]) {
            tc = use / (gpu_bw * gpu_type_share(t->type));
            if (product) tc = HY_MAX(tc, GPU_PRODUCT_S);
        } else {
            /* rows split between the CPU and the GPU after a PCIe copy */
            double host = matvec_rate(hw, t->type) + pcie;
            if (hw->host_both_bytes_per_s > 0) host = HY_MIN(host, hw->host_both_bytes_per_s);
            tc = use / host + (product ? HOST_CALL_S : 0);
            pcie_prompt_bytes += r == ROLE_EMBED && has_output ? 0 : (double)t->n_bytes;
        }
        if (l >= 0 && l < n) {
            struct plan_layer *pl = &p->layers[l];
            pl->t_compute_s += tc;
            if (on_gpu[i]) {
                pl->gpu_bytes += pt->bytes;
                pl->ffn_on_gpu |= r == ROLE_FFN;
                pl->experts_on_gpu |= is_exp;
                if (is_exp) pl->expert_slice_bytes += t->n_bytes / (uint64_t)E;
            } else {
                pl->resident_bytes += pt->resident_bytes;
                pl->streamed_bytes += pt->bytes - pt->resident_bytes;
            }
        } else {
            t_tail += tc;
        }
        if (pt->tier == PLAN_TIER_GPU) {
            p->bytes_by_role_gpu[r] += pt->bytes;
            continue;
        }
        if (pt->tier == PLAN_TIER_RAM) p->bytes_by_role_resident[r] += pt->bytes;
        else {
            p->bytes_by_role_resident[r] += pt->resident_bytes;
            p->bytes_by_role_streamed[r] += pt->bytes - pt->resident_bytes;
        }
        p->weights_resident_bytes += pt->resident_bytes;
        p->weights_streamed_bytes += pt->bytes - pt->resident_bytes;
    }

    /* the GPU's VRAM expert cache in front of the RAM one (rule G4): the
     * budget left after placement in sets of one expert's slices of every
     * layer whose experts lie on the host (the backend cuts its entries in
     * that proportion), so as many experts in each such layer as whole sets
     * fit; the RAM cache keeps much of what it holds too (a miss in both
     * fills both), so a layer counts the larger of the two; E sets hold
     * every expert, and the cache is never more */
    int64_t vram_c = 0;
    uint64_t set = 0;
    if (gpu_on && E > 0) {
        for (uint64_t i = 0; i < g->n_tensors; i++)
            if (info->tensor_role[i] == ROLE_EXPERT && !on_gpu[i] && info->tensor_layer[i] >= 0)
                set += base_align_up(g->tensors[i].n_bytes / (uint64_t)E, 256);
        const uint64_t used = kv + gpu_work + gpu_weights;
        if (set && params->gpu_budget_bytes > used)
            vram_c = (int64_t)HY_MIN((params->gpu_budget_bytes - used) / set, (uint64_t)E);
    }
    bool any_ffn_stream = false, any_exp_stream = false;
    double sel_hit = 0, prompt_bytes = 0;
    int n_moe_layers = 0, n_cache_layers = 0;
    for (int l = 0; l < n; l++) {
        struct plan_layer *pl = &p->layers[l];
        pl->ffn_streamed = ls[l].ffn > 0 && !ffn_res[l];
        if (pl->ffn_streamed) {
            any_ffn_stream = true;
            pl->read_bytes_per_token += (double)ls[l].ffn;
            prompt_bytes += (double)ls[l].ffn;
        }
        if (pl->experts_on_gpu) {
            /* never read from the disk: counts as hits */
            n_moe_layers++;
            pl->hit_rate = 1;
            sel_hit += 1;
        }
        if (ls[l].exp && E > 0) {
            n_moe_layers++;
            n_cache_layers++;
            pl->expert_cache = cache[l];
            pl->expert_slice_bytes = ls[l].exp / (uint64_t)E;
            const int64_t held = HY_MAX((int64_t)cache[l], vram_c);
            pl->hit_rate = plan_expert_hit_rate(held, E);
            sel_hit += pl->hit_rate;
            if (cache[l] < E) {
                any_exp_stream = true;
                pl->read_bytes_per_token += (double)k * (double)pl->expert_slice_bytes * (1.0 - pl->hit_rate);
                prompt_bytes += (double)(E - held) * (double)pl->expert_slice_bytes;
            }
            p->expert_cache_entries += (uint64_t)cache[l];
            p->expert_cache_bytes += (uint64_t)cache[l] * pl->expert_slice_bytes;
            if (n_cache_layers == 1 || cache[l] < p->expert_cache_min) p->expert_cache_min = cache[l];
            if (cache[l] > p->expert_cache_max) p->expert_cache_max = cache[l];
        }
        if (gpu_on) {
            const bool moe = pl->experts_on_gpu || (ls[l].exp && E > 0);
            pl->t_compute_s += GPU_LAYER_S + (moe ? GPU_MOE_LAYER_S : 0);
        }
        pl->t_io_s = pl->read_bytes_per_token / hw->disk_read_bytes_per_s;
        p->streamed_bytes_per_token += pl->read_bytes_per_token;
        p->t_compute_per_token_s += pl->t_compute_s;
        p->t_io_per_token_s += pl->t_io_s;
    }
    p->t_compute_per_token_s += t_tail;
    p->mode = any_exp_stream ? PLAN_MODE_EXPERT_STREAM : any_ffn_stream ? PLAN_MODE_DENSE_STREAM : PLAN_MODE_RESIDENT;
    bool streams = p->mode != PLAN_MODE_RESIDENT;
    p->pool_slots = streams ? n_slots : 0;
    p->pool_slot_bytes = streams ? slot_bytes : 0;
    p->pool_bytes = (uint64_t)p->pool_slots * p->pool_slot_bytes;
    p->prefetch_depth = streams ? PLAN_PREFETCH_DEPTH : 0;
    p->ram_budget_bytes = budget;
    p->gpu_budget_bytes = params->gpu_budget_bytes;
    p->n_ctx = params->n_ctx;
    p->kv_bytes = kv;
    p->n_expert = E;
    p->n_expert_used = k;
    p->expert_hit_rate = n_moe_layers ? sel_hit / n_moe_layers : 0;
    p->expert_zipf_s = PLAN_EXPERT_ZIPF_S;
    /* the expert cache's share is counted in weights_resident_bytes */
    p->compute_bytes = work;
    p->resident_bytes = p->weights_resident_bytes + kv_ram + work + p->pool_bytes;
    if (gpu_on) {
        p->gpu_on = true;
        p->kv_on_gpu = true;
        p->all_on_gpu = all_on_gpu;
        p->gpu_compute_bytes = gpu_work;
        p->gpu_min_bytes = gpu_min;
        p->gpu_weights_bytes = gpu_weights;
        p->gpu_used_bytes = kv + gpu_work + gpu_weights;
        HY_ASSERT(p->gpu_used_bytes <= p->gpu_budget_bytes);
        p->gpu_expert_cache_bytes =
            host_experts ? HY_MIN(p->gpu_budget_bytes - p->gpu_used_bytes, set * (uint64_t)E) : 0;
        p->gpu_head_last = head_last;
    }
    p->forced = force != PLAN_FORCE_NONE;
    p->over_budget = p->resident_bytes > budget;
    HY_ASSERT(!p->over_budget || force == PLAN_FORCE_RESIDENT);

    p->t_token_s = simulate(p->layers, n, t_tail, p->pool_slots);
    p->predicted_gen_tok_per_s = p->t_token_s > 0 ? 1.0 / p->t_token_s : 0;
    p->gen_bound = p->t_io_per_token_s > p->t_compute_per_token_s ? PLAN_BOUND_DISK : PLAN_BOUND_COMPUTE;

    double flops = hw->cpu_flops_per_s > 0 ? hw->cpu_flops_per_s : 50e9 * (hw->n_threads > 0 ? hw->n_threads : 1);
    if (gpu_on) flops = hw->gpu_flops_per_s > 0 ? hw->gpu_flops_per_s : 1e14; /* the whole batch on the GPU */
    double t_batch_c = PLAN_PROMPT_BATCH * 2.0 * active_params / flops;
    double t_batch_io = prompt_bytes / hw->disk_read_bytes_per_s;
    double t_batch_pcie = pcie_prompt_bytes / pcie; /* 0 without the GPU tier */
    double t_batch = HY_MAX(HY_MAX(t_batch_c, t_batch_io), t_batch_pcie);
    p->predicted_prompt_tok_per_s = t_batch > 0 ? PLAN_PROMPT_BATCH / t_batch : 0;
    p->prompt_bound = t_batch_io > t_batch_c ? PLAN_BOUND_DISK : PLAN_BOUND_COMPUTE;
    if (t_batch_pcie > t_batch_c && t_batch_pcie > t_batch_io) p->prompt_bound = PLAN_BOUND_PCIE;

    free(ls);
    free(cache);
    free(ffn_res);
    free(on_gpu);
    return HY_OK;
}

/* Rule G3's one choice. A dense weight's every byte is read each token
 * wherever it lies, so the output head in VRAM keeps as many bytes off the
 * host as FFN tensors of its size would; but the host computes a head left
 * to it in one product, and FFN bytes of the head's size in several, each
 * with its round trip (activations down, the CPU's pass, the rows up), so
 * the head goes after the dense FFN. Except where that costs more than it
 * saves: a head left on the host is always resident in RAM, where the FFN
 * bytes it displaces may stream, so with a RAM budget that streams the
 * disk can make the head first the faster plan. Unless params->head_order
 * names one, both orders are planned and the faster prediction is kept (the
 * head after the FFN on a tie); the token embeddings as embd_gpu says. */
static enum hy_status plan_head(struct plan *p, const struct model_info *info,
                                const struct plan_hw *hw, const struct plan_params *params,
                                bool embd_gpu)
{
    const enum plan_head_order order = params->head_order;
    if (!gpu_tier_on(hw, params) || order != PLAN_HEAD_AUTO)
        return plan_build(p, info, hw, params, order != PLAN_HEAD_FIRST, embd_gpu);
    /* a RAM budget can hold the resident minimum of one order and not the
     * other's (the head in RAM is part of it): the order that plans wins;
     * where neither does, the error is the head first's, whose minimum is
     * the lower */
    struct plan first;
    const enum hy_status st_last = plan_build(p, info, hw, params, true, embd_gpu);
    const enum hy_status st_first = plan_build(&first, info, hw, params, false, embd_gpu);
    if (st_first) return st_last ? st_first : HY_OK;
    if (st_last || first.predicted_gen_tok_per_s > p->predicted_gen_tok_per_s) {
        plan_free(p);
        *p = first;
    } else {
        plan_free(&first);
    }
    return HY_OK;
}

enum hy_status plan_init(struct plan *p, const struct model_info *info, const struct plan_hw *hw,
                         const struct plan_params *params)
{
    enum hy_status st = plan_head(p, info, hw, params, true);
    /* rule G3's other choice: untied token embeddings on the GPU where
     * routed experts stay on the host give their VRAM to the expert cache
     * where the RAM holds them and still nothing streams (a plan forced
     * resident past the RAM budget keeps them: no more RAM); tied ones are
     * the head, placed as it is either way */
    const bool tied = info->bytes_by_role[ROLE_OUTPUT] == 0;
    if (st || tied || !p->gpu_expert_cache_bytes || !p->bytes_by_role_gpu[ROLE_EMBED] ||
        p->weights_streamed_bytes || p->over_budget)
        return st;
    struct plan ram;
    if (plan_head(&ram, info, hw, params, false) || ram.weights_streamed_bytes || ram.over_budget) {
        err_clear();
        plan_free(&ram);
        return HY_OK;
    }
    plan_free(p);
    *p = ram;
    return HY_OK;
}
