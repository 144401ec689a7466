/*
 * The placement plan on full-size model shapes without their weights:
 * synth_header() gives the GGUF header of a preset at its real size, a source
 * that reads zeros past it makes the parser see the whole file, and the plan
 * works from the header alone. Checks, over a range of budgets: resident
 * bytes within the budget, streamed bytes per token non-increasing as the
 * budget grows, sensible modes, a clean error below the resident minimum;
 * the budget clamping rule, KV cache size and hit-rate assumption; and the
 * GPU tier: placement against a reference of the priority rules, the GPU
 * minimum, the VRAM expert cache, and a plan without a GPU unchanged by the
 * GPU parameters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/sizes.h"
#include "gguf/gguf.h"
#include "model/model_info.h"
#include "model/synth.h"
#include "plan/plan.h"

#define GiB (1024ull * 1024 * 1024)
#define MiB (1024ull * 1024)

struct header_src {
    const unsigned char *buf;
    uint64_t n;
};

static int header_read(void *user, uint64_t off, void *dst, size_t n)
{
    const struct header_src *h = user;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = off + i < h->n ? h->buf[off + i] : 0;
    return 0;
}

struct shape {
    void *hdr;
    struct header_src src;
    struct gguf_ctx *g;
    struct model_info mi;
    uint64_t file_bytes;
};

static bool shape_open_tied(struct shape *s, const char *like, bool tied)
{
    memset(s, 0, sizeof(*s));
    const struct synth_preset *pr = synth_find_preset(like);
    if (!CHECK(pr != NULL)) return false;
    struct synth_config cfg = pr->cfg;
    cfg.ftype = QUANT_MIX_Q4_K_M;
    cfg.tied_output = tied;
    uint64_t n = 0;
    if (!CHECK_OK(synth_header(&cfg, &s->hdr, &n, &s->file_bytes))) return false;
    s->src = (struct header_src){s->hdr, n};
    struct gguf_source gs = {header_read, &s->src, s->file_bytes, like};
    if (!CHECK_OK(gguf_parse(&gs, &s->g))) return false;
    if (!CHECK_OK(model_info_init(&s->mi, s->g))) return false;
    return true;
}

static bool shape_open(struct shape *s, const char *like)
{
    return shape_open_tied(s, like, false);
}

static void shape_close(struct shape *s)
{
    model_info_free(&s->mi);
    gguf_free(s->g);
    free(s->hdr);
}

static void hw_fixed(struct plan_hw *hw)
{
    plan_hw_defaults(hw);
    hw->disk_read_bytes_per_s = 5e9;
    hw->mem_read_bytes_per_s = 40e9;
    hw->n_threads = 8;
}

/* Plans at budgets from 1 GiB to past the whole model; checks the
 * invariants and the expected sequence of modes. */
static void sweep(const char *like, enum plan_mode mid_mode)
{
    struct shape s;
    if (!shape_open(&s, like)) return;
    struct plan_hw hw;
    hw_fixed(&hw);
    const int64_t ctx = 4096;
    uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx);
    uint64_t top = s.mi.tensor_bytes + kv + GiB;
    double prev_read = -1;
    double prev_tps = 0;
    bool saw_error = false, saw_mid = false, saw_resident = false;
    uint64_t min_seen = 0;
    for (uint64_t budget = GiB; budget <= top + 2 * GiB; budget += budget < 16 * GiB ? GiB / 2 : 2 * GiB) {
        struct plan p;
        struct plan_params pp = {.ram_budget_bytes = budget, .n_ctx = ctx};
        enum hy_status st = plan_init(&p, &s.mi, &hw, &pp);
        if (st) {
            CHECK_EQ_INT(st, HY_ERR_INVALID_ARG);
            CHECK_CONTAINS(err_msg(), "below the resident minimum");
            CHECK_CONTAINS(err_msg(), "attention");
            CHECK_CONTAINS(err_msg(), "KV cache");
            CHECK_CONTAINS(err_msg(), "stream pool");
            CHECK(!saw_mid && !saw_resident); /* errors only below every success */
            saw_error = true;
            plan_free(&p);
            continue;
        }
        if (!min_seen) min_seen = p.min_resident_bytes;
        CHECK(p.resident_bytes <= budget);
        CHECK(budget >= p.min_resident_bytes || p.mode == PLAN_MODE_RESIDENT);
        CHECK_EQ_U64(p.kv_bytes, kv);
        CHECK_EQ_U64(p.weights_resident_bytes + p.weights_streamed_bytes, s.mi.tensor_bytes);
        if (prev_read >= 0) CHECK(p.streamed_bytes_per_token <= prev_read + 1e-6);
        CHECK(p.predicted_gen_tok_per_s >= prev_tps * (1 - 1e-9));
        CHECK(p.predicted_gen_tok_per_s > 0 && p.predicted_prompt_tok_per_s > 0);
        prev_read = p.streamed_bytes_per_token;
        prev_tps = p.predicted_gen_tok_per_s;
        if (p.mode == PLAN_MODE_RESIDENT) {
            saw_resident = true;
            CHECK(p.streamed_bytes_per_token == 0);
            CHECK_EQ_INT(p.pool_bytes, 0);
            CHECK_EQ_INT(p.prefetch_depth, 0);
            CHECK_EQ_U64(p.weights_streamed_bytes, 0);
            CHECK_EQ_INT(p.gen_bound, PLAN_BOUND_COMPUTE);
        } else {
            CHECK_EQ_INT(p.mode, mid_mode);
            CHECK(!saw_resident);
            saw_mid = true;
            CHECK(p.streamed_bytes_per_token > 0);
            CHECK(p.pool_bytes > 0 && p.prefetch_depth >= 1);
            /* attention, norms and embeddings never stream */
            CHECK_EQ_U64(p.bytes_by_role_streamed[ROLE_ATTN], 0);
            CHECK_EQ_U64(p.bytes_by_role_streamed[ROLE_EMBED], 0);
            CHECK_EQ_U64(p.bytes_by_role_streamed[ROLE_NORM], 0);
            for (uint64_t i = 0; i < p.n_tensors; i++)
                if (p.tensors[i].tier == PLAN_TIER_NVME)
                    CHECK(p.tensors[i].role == ROLE_FFN || p.tensors[i].role == ROLE_EXPERT);
            if (mid_mode == PLAN_MODE_EXPERT_STREAM) {
                CHECK(p.expert_cache_max - p.expert_cache_min <= 1); /* spread evenly */
                CHECK(p.expert_hit_rate >= 0 && p.expert_hit_rate < 1);
            }
        }
        plan_free(&p);
    }
    CHECK(saw_error);
    CHECK(saw_mid);
    CHECK(saw_resident);
    printf("%s: file %.1f GiB, resident minimum %.2f GiB\n", like, (double)s.file_bytes / GiB,
           (double)min_seen / GiB);
    shape_close(&s);
}

static void test_error_message(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-70b")) return;
    struct plan_hw hw;
    hw_fixed(&hw);
    struct plan p;
    struct plan_params pp = {.ram_budget_bytes = 512 * MiB, .n_ctx = 4096};
    CHECK_STATUS(plan_init(&p, &s.mi, &hw, &pp), HY_ERR_INVALID_ARG);
    CHECK_CONTAINS(err_msg(), "RAM budget 512");
    CHECK_CONTAINS(err_msg(), "embeddings+output");
    plan_free(&p); /* safe on a failed plan */
    pp = (struct plan_params){.ram_budget_bytes = 64 * GiB, .n_ctx = 0};
    CHECK_STATUS(plan_init(&p, &s.mi, &hw, &pp), HY_ERR_INVALID_ARG);
    shape_close(&s);
}

static void test_dense_spread(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-70b")) return;
    struct plan_hw hw;
    hw_fixed(&hw);
    struct plan p;
    struct plan_params pp = {.ram_budget_bytes = 24 * GiB, .n_ctx = 4096};
    if (CHECK_OK(plan_init(&p, &s.mi, &hw, &pp))) {
        CHECK_EQ_INT(p.mode, PLAN_MODE_DENSE_STREAM);
        CHECK_EQ_INT(p.gen_bound, PLAN_BOUND_DISK);
        /* streamed layers are spread: no run of more than ceil(n/resident) */
        int n_res = 0, run = 0, max_run = 0;
        for (int l = 0; l < p.n_layer; l++) {
            n_res += !p.layers[l].ffn_streamed;
            run = p.layers[l].ffn_streamed ? run + 1 : 0;
            max_run = run > max_run ? run : max_run;
        }
        CHECK(n_res > 0 && n_res < p.n_layer);
        CHECK(max_run <= (p.n_layer + n_res - 1) / n_res + 1);
        /* the disk bound: tok/s no better than disk_bw / bytes read */
        CHECK(p.predicted_gen_tok_per_s <= hw.disk_read_bytes_per_s / p.streamed_bytes_per_token * 1.0001);
        plan_free(&p);
    }
    shape_close(&s);
}

static void test_budget_rules(void)
{
    bool cl = true;
    CHECK_EQ_U64(plan_headroom_bytes(4 * GiB), 512 * MiB);
    CHECK_EQ_U64(plan_headroom_bytes(64 * GiB), 4 * GiB);
    CHECK_EQ_U64(plan_headroom_bytes(100), 100);
    /* default: available minus headroom */
    CHECK_EQ_U64(plan_ram_budget(0, 64 * GiB, 0, &cl), 60 * GiB);
    CHECK(!cl);
    /* a request is taken as it is without a cgroup limit */
    CHECK_EQ_U64(plan_ram_budget(100 * GiB, 64 * GiB, 0, &cl), 100 * GiB);
    CHECK(!cl);
    /* a request never above the cgroup limit minus the margin */
    CHECK_EQ_U64(plan_ram_budget(100 * GiB, 64 * GiB, 32 * GiB, &cl), 32 * GiB - 256 * MiB);
    CHECK(cl);
    CHECK_EQ_U64(plan_ram_budget(8 * GiB, 64 * GiB, 32 * GiB, &cl), 8 * GiB);
    CHECK(!cl);
    CHECK_EQ_U64(plan_ram_budget(0, 64 * GiB, 16 * GiB, &cl), 15 * GiB);
    CHECK(!cl); /* a default is not "lowered" */
    CHECK_EQ_U64(plan_ram_budget(0, 0, 0, NULL), 0);
    /* a requested budget may use a small cgroup up to the margin */
    CHECK_EQ_U64(plan_ram_budget(112 * MiB, 64 * GiB, 368 * MiB, &cl), 112 * MiB);
    CHECK(!cl);
    CHECK_EQ_U64(plan_ram_budget(200 * MiB, 64 * GiB, 368 * MiB, &cl), 112 * MiB);
    CHECK(cl);
}

static void test_kv_and_hits(void)
{
    struct hparams hp = {0};
    hp.n_layer = 32;
    hp.n_head_kv = 8;
    hp.head_dim = 128;
    hp.head_dim_v = 128;
    /* Llama 3 8B at 8192: 1 GiB, as llama.cpp reports */
    CHECK_EQ_U64(plan_kv_bytes(&hp, 8192), 1 * GiB);
    CHECK_EQ_U64(plan_kv_bytes(&hp, 0), 0);
    CHECK(plan_expert_hit_rate(0, 8) == 0);
    CHECK(plan_expert_hit_rate(8, 8) == 1);
    double prev = 0;
    for (int c = 1; c <= 128; c++) {
        double h = plan_expert_hit_rate(c, 128);
        CHECK(h > prev);
        CHECK(h >= (double)c / 128 - 1e-12); /* skew: better than a uniform router */
        prev = h;
    }
    double top20 = plan_expert_hit_rate(25, 128);
    CHECK(top20 > 0.4 && top20 < 0.65);
}

/* ---- the GPU tier ---- */

static void hw_gpu(struct plan_hw *hw)
{
    hw_fixed(hw);
    hw->n_gpu = 1;
    hw->gpu_mem_bytes = 80 * GiB;
}

static uint64_t role_bytes(const struct shape *s, enum tensor_role r)
{
    return s->mi.bytes_by_role[r];
}

/* The GPU budget rule G3 fills before any dense FFN tensor or the head:
 * the KV cache for ctx, gwork of buffers, norms, attention and the rest. */
static uint64_t gpu_base_bytes(const struct shape *s, int64_t ctx, uint64_t gwork)
{
    return plan_kv_bytes(&s->mi.hp, ctx) + gwork + role_bytes(s, ROLE_NORM) + role_bytes(s, ROLE_ATTN) +
           role_bytes(s, ROLE_OTHER);
}

/* Bytes of role r in layers [l0, l1) (layers differ: Q4_K_M mixes types). */
static uint64_t layer_role_bytes(const struct shape *s, int l0, int l1, enum tensor_role r)
{
    uint64_t b = 0;
    for (int l = l0; l < l1; l++) b += s->mi.bytes_by_layer_role[(size_t)l * ROLE_COUNT + r];
    return b;
}

/* Bytes of layer l's tensors of role r that plan p puts on the GPU. */
static uint64_t layer_gpu_bytes(const struct plan *p, int l, enum tensor_role r)
{
    uint64_t b = 0;
    for (uint64_t i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].layer == l && p->tensors[i].role == r && p->tensors[i].tier == PLAN_TIER_GPU)
            b += p->tensors[i].bytes;
    return b;
}

/* The placement rules G2-G3 of plan.h written out directly: which tensors
 * the GPU gets for a budget (false when it is below the minimum), untied
 * token embeddings last where embd_gpu, else none of them. */
static bool ref_place(const struct shape *s, uint64_t budget, uint64_t kv, uint64_t work,
                      bool head_last, bool embd_gpu, bool *on)
{
    const struct gguf_ctx *g = s->g;
    const struct model_info *mi = &s->mi;
    const int n = mi->n_layer_seen;
    const int64_t E = mi->hp.n_expert;
    const bool tied = mi->bytes_by_role[ROLE_OUTPUT] == 0;
    memset(on, 0, g->n_tensors * sizeof(*on));
    uint64_t min = kv + work + mi->bytes_by_role[ROLE_NORM];
    if (budget < min) return false;
    uint64_t left = budget - min;
    /* the single-tensor classes in order; -1 marks where the dense FFN
     * layers go, -2 where the expert layers go; ROLE_COUNT is no class */
    const int head = tied ? ROLE_EMBED : ROLE_OUTPUT,
              embd = tied || !embd_gpu ? ROLE_COUNT : ROLE_EMBED;
    const int order[] = {ROLE_NORM, ROLE_ATTN, ROLE_ROUTER, ROLE_SHARED_EXPERT, ROLE_OTHER,
                         head_last ? ROLE_COUNT : head, -1, head_last ? head : ROLE_COUNT, -2,
                         embd};
    for (size_t c = 0; c < sizeof order / sizeof order[0]; c++) {
        if (order[c] < 0) {
            const enum tensor_role r = order[c] == -2 ? ROLE_EXPERT : ROLE_FFN;
            if (r == ROLE_EXPERT && E <= 0) continue;
            for (int l = 0; l < n; l++) {
                uint64_t need = 0;
                for (uint64_t i = 0; i < g->n_tensors; i++)
                    if (mi->tensor_role[i] == r && mi->tensor_layer[i] == l) need += g->tensors[i].n_bytes;
                if (need > left && r == ROLE_FFN) {
                    /* this layer and the later ones: single tensors,
                     * each layer's largest first, where they fit */
                    for (int m = l; m < n; m++)
                        for (;;) {
                            uint64_t best = g->n_tensors;
                            for (uint64_t i = 0; i < g->n_tensors; i++)
                                if (mi->tensor_role[i] == r && mi->tensor_layer[i] == m && !on[i] &&
                                    g->tensors[i].n_bytes <= left &&
                                    (best == g->n_tensors || g->tensors[i].n_bytes > g->tensors[best].n_bytes))
                                    best = i;
                            if (best == g->n_tensors) break;
                            on[best] = true;
                            left -= g->tensors[best].n_bytes;
                        }
                    break;
                }
                if (need > left) continue;
                for (uint64_t i = 0; i < g->n_tensors; i++)
                    if (mi->tensor_role[i] == r && mi->tensor_layer[i] == l) on[i] = true;
                left -= need;
            }
            continue;
        }
        for (int l = -1; l < n; l++)
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                if (mi->tensor_role[i] != (enum tensor_role)order[c] || mi->tensor_layer[i] != l) continue;
                if (order[c] == ROLE_NORM) {
                    on[i] = true;
                    continue;
                }
                if (g->tensors[i].n_bytes > left) continue;
                on[i] = true;
                left -= g->tensors[i].n_bytes;
            }
    }
    return true;
}

/* Invariants of any plan with the GPU tier on. */
/* VRAM for every expert that plan p leaves on the host: E sets of one
 * expert's slices (each 256-byte aligned, as the backend's entries are) of
 * every such layer. */
static uint64_t host_expert_room(const struct plan *p)
{
    uint64_t set = 0;
    for (uint64_t i = 0; i < p->n_tensors && p->n_expert > 0; i++)
        if (p->tensors[i].role == ROLE_EXPERT && p->tensors[i].layer >= 0 &&
            p->tensors[i].tier != PLAN_TIER_GPU)
            set += base_align_up(p->tensors[i].bytes / (uint64_t)p->n_expert, 256);
    return set * (uint64_t)p->n_expert;
}

static void check_gpu_plan(const struct shape *s, const struct plan *p, uint64_t gpu_budget, uint64_t kv,
                           uint64_t gwork, uint64_t ram_budget, uint64_t work)
{
    CHECK(p->gpu_on && p->kv_on_gpu);
    CHECK_EQ_U64(p->kv_bytes, kv);
    CHECK_EQ_U64(p->gpu_budget_bytes, gpu_budget);
    CHECK_EQ_U64(p->gpu_compute_bytes, gwork);
    CHECK_EQ_U64(p->gpu_min_bytes, kv + gwork + role_bytes(s, ROLE_NORM));
    CHECK_EQ_U64(p->gpu_used_bytes, kv + gwork + p->gpu_weights_bytes);
    CHECK(p->gpu_used_bytes <= gpu_budget);
    CHECK_EQ_U64(p->gpu_weights_bytes + p->weights_resident_bytes + p->weights_streamed_bytes, s->mi.tensor_bytes);
    /* RAM: no KV cache, the compute buffers stay */
    CHECK_EQ_U64(p->resident_bytes, p->weights_resident_bytes + work + p->pool_bytes);
    CHECK(p->resident_bytes <= ram_budget);
    uint64_t on = 0, by_role = 0;
    bool all = true;
    for (uint64_t i = 0; i < p->n_tensors; i++) {
        const struct plan_tensor *t = &p->tensors[i];
        if (t->tier == PLAN_TIER_GPU) {
            on += t->bytes;
            CHECK_EQ_U64(t->resident_bytes, 0);
        }
        all &= t->tier == PLAN_TIER_GPU;
        if (t->role == ROLE_NORM) CHECK_EQ_INT(t->tier, PLAN_TIER_GPU);
    }
    for (int r = 0; r < ROLE_COUNT; r++) {
        by_role += p->bytes_by_role_gpu[r];
        CHECK_EQ_U64(p->bytes_by_role_gpu[r] + p->bytes_by_role_resident[r] + p->bytes_by_role_streamed[r],
                     s->mi.bytes_by_role[r]);
    }
    CHECK_EQ_U64(on, p->gpu_weights_bytes);
    CHECK_EQ_U64(by_role, p->gpu_weights_bytes);
    CHECK(all == p->all_on_gpu);
    for (int l = 0; l < p->n_layer; l++) {
        const struct plan_layer *L = &p->layers[l];
        /* a layer may keep part of its FFN on the GPU: it streams only
         * where an FFN tensor of it is on the NVMe tier */
        bool ffn_nvme = false;
        for (uint64_t i = 0; i < p->n_tensors; i++)
            ffn_nvme |= p->tensors[i].layer == l && p->tensors[i].role == ROLE_FFN &&
                        p->tensors[i].tier == PLAN_TIER_NVME;
        CHECK(L->ffn_streamed == ffn_nvme);
        if (L->experts_on_gpu) {
            CHECK_EQ_INT(L->expert_cache, 0);
            CHECK(L->hit_rate == 1);
            CHECK(L->read_bytes_per_token == 0);
        }
    }
    /* the VRAM expert cache: what is left when experts stay on the host */
    bool host_exp = p->n_expert > 0 && p->bytes_by_role_resident[ROLE_EXPERT] + p->bytes_by_role_streamed[ROLE_EXPERT] > 0;
    CHECK_EQ_U64(p->gpu_expert_cache_bytes,
                 host_exp ? HY_MIN(gpu_budget - p->gpu_used_bytes, host_expert_room(p)) : 0);
    CHECK(p->predicted_gen_tok_per_s > 0 && p->predicted_prompt_tok_per_s > 0);
}

/* Plans with the GPU tier, the output head where `order` says, and
 * compares the placement with ref_place. */
static bool gpu_plan_order(const struct shape *s, struct plan *p, enum plan_head_order order, uint64_t gpu_budget,
                           uint64_t ram_budget, int64_t ctx, uint64_t work, uint64_t gwork)
{
    struct plan_hw hw;
    hw_gpu(&hw);
    struct plan_params pp = {.ram_budget_bytes = ram_budget, .gpu_budget_bytes = gpu_budget, .n_ctx = ctx,
                             .compute_bytes = work, .gpu_compute_bytes = gwork, .head_order = order};
    if (!CHECK_OK(plan_init(p, &s->mi, &hw, &pp))) return false;
    uint64_t kv = plan_kv_bytes(&s->mi.hp, ctx);
    check_gpu_plan(s, p, gpu_budget, kv, gwork, ram_budget, work);
    if (order != PLAN_HEAD_AUTO) CHECK_EQ_INT(p->gpu_head_last, order == PLAN_HEAD_LAST);
    /* untied token embeddings stay in RAM where routed experts stay on the
     * host and the RAM holds them with nothing streamed: then the plan,
     * resident, takes their bytes more in RAM */
    const uint64_t embd = role_bytes(s, ROLE_EMBED);
    const bool untied = role_bytes(s, ROLE_OUTPUT) > 0;
    const bool ram_ok = untied && p->gpu_expert_cache_bytes > 0 && !p->weights_streamed_bytes &&
                        p->mode == PLAN_MODE_RESIDENT;
    bool *on = calloc(s->g->n_tensors, sizeof(*on));
    CHECK(ref_place(s, gpu_budget, kv, gwork, p->gpu_head_last, true, on));
    bool embd_fit = false; /* the reference places them */
    for (uint64_t i = 0; i < s->g->n_tensors; i++)
        embd_fit |= on[i] && s->mi.tensor_role[i] == ROLE_EMBED;
    if (embd_fit && p->bytes_by_role_gpu[ROLE_EMBED] == 0) {
        CHECK(ram_ok);
        CHECK(ref_place(s, gpu_budget, kv, gwork, p->gpu_head_last, false, on));
    } else if (embd_fit && ram_ok) {
        /* left on the GPU: the RAM could not take them too */
        CHECK(p->resident_bytes + embd > ram_budget);
    }
    uint64_t diff = 0;
    for (uint64_t i = 0; i < p->n_tensors; i++) diff += on[i] != (p->tensors[i].tier == PLAN_TIER_GPU);
    CHECK_EQ_U64(diff, 0);
    free(on);
    return true;
}

/* gpu_plan_order with the head's place left to the plan: it must be the
 * plan of the two orders that predicts the faster decode, the head last on
 * a tie. */
static bool gpu_plan_ref(const struct shape *s, struct plan *p, uint64_t gpu_budget, uint64_t ram_budget,
                         int64_t ctx, uint64_t work, uint64_t gwork)
{
    if (!gpu_plan_order(s, p, PLAN_HEAD_AUTO, gpu_budget, ram_budget, ctx, work, gwork)) return false;
    struct plan first, last;
    if (gpu_plan_order(s, &first, PLAN_HEAD_FIRST, gpu_budget, ram_budget, ctx, work, gwork)) {
        if (gpu_plan_order(s, &last, PLAN_HEAD_LAST, gpu_budget, ram_budget, ctx, work, gwork)) {
            const bool want_last = last.predicted_gen_tok_per_s >= first.predicted_gen_tok_per_s;
            CHECK_EQ_INT(p->gpu_head_last, want_last);
            CHECK(p->predicted_gen_tok_per_s == (want_last ? last : first).predicted_gen_tok_per_s);
            plan_free(&last);
        }
        plan_free(&first);
    }
    return true;
}

/* The plan's decode time for a model wholly on the GPU, by plan.h's rules:
 * each product's used bytes at rate x its type's share (F32, F16, BF16 0.9,
 * Q8_0 0.75, others 0.6), at least 4 us, and 18 us per layer (44 for an MoE
 * layer). Token embeddings (a lookup beside an output head) are left out. */
static double gpu_decode_time(const struct shape *s, int n_layer, double rate, bool moe)
{
    double t = 0;
    const double k = s->mi.hp.n_expert > 0 ? (double)s->mi.hp.n_expert_used / (double)s->mi.hp.n_expert : 1;
    for (uint64_t i = 0; i < s->g->n_tensors; i++) {
        const struct gguf_tensor *g = &s->g->tensors[i];
        const enum tensor_role r = s->mi.tensor_role[i];
        if (r == ROLE_EMBED) continue;
        const double share = g->type == HY_TYPE_F32 || g->type == HY_TYPE_F16 || g->type == HY_TYPE_BF16 ? 0.9
                             : g->type == HY_TYPE_Q8_0                                                    ? 0.75
                                                                                                          : 0.6;
        const double use = (double)g->n_bytes * (r == ROLE_EXPERT ? k : 1);
        double x = use / (rate * share);
        if (g->n_dims >= 2 && r != ROLE_NORM && x < 4e-6) x = 4e-6;
        t += x;
    }
    return t + n_layer * (moe ? 44e-6 : 18e-6);
}

/* A model wholly on the GPU (an MoE one: its experts' share of bytes, k of
 * E, and the routing's time in every layer), then one byte short of it. */
static void test_gpu_everything(const char *like)
{
    struct shape s;
    if (!shape_open(&s, like)) return;
    const bool moe = s.mi.hp.n_expert > 0;
    const int64_t ctx = 8192;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx), gwork = 300 * MiB, work = 100 * MiB;
    struct plan p;
    /* exactly the whole model + KV + compute: everything on the GPU */
    uint64_t gb = s.mi.tensor_bytes + kv + gwork;
    if (gpu_plan_ref(&s, &p, gb, 1 * GiB, ctx, work, gwork)) {
        CHECK(p.all_on_gpu);
        CHECK_EQ_U64(p.gpu_weights_bytes, s.mi.tensor_bytes);
        CHECK_EQ_U64(p.gpu_used_bytes, gb);
        CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
        CHECK_EQ_U64(p.resident_bytes, work); /* RAM: the compute buffers alone */
        CHECK_EQ_U64(p.weights_resident_bytes, 0);
        CHECK_EQ_U64(p.weights_streamed_bytes, 0);
        CHECK_EQ_U64(p.pool_bytes, 0);
        CHECK_EQ_U64(p.min_resident_bytes, work);
        CHECK_EQ_U64(p.gpu_expert_cache_bytes, 0);
        for (int l = 0; l < p.n_layer; l++) CHECK(moe ? p.layers[l].experts_on_gpu : p.layers[l].ffn_on_gpu);
        /* decode reads every used byte at the GPU's bandwidth (default 2
         * TB/s) times its type's share, a product taking 4 us at least, and
         * each layer's small kernels add 18 us, 44 with routing (plan.c's
         * H100 figures) */
        double want = gpu_decode_time(&s, p.n_layer, 2e12, moe);
        CHECK_NEAR(p.t_compute_per_token_s, want, want * 1e-9);
        if (moe) {
            CHECK(p.t_compute_per_token_s > gpu_decode_time(&s, p.n_layer, 2e12, false) + p.n_layer * 25e-6);
        } else {
            double used = (double)(s.mi.tensor_bytes - role_bytes(&s, ROLE_EMBED));
            CHECK(p.t_compute_per_token_s > used / 2e12 + p.n_layer * 18e-6);
        }
        CHECK_EQ_INT(p.prompt_bound, PLAN_BOUND_COMPUTE);
        /* faster than the same model in RAM */
        struct plan_hw hw;
        hw_fixed(&hw);
        struct plan q;
        struct plan_params pp = {.ram_budget_bytes = 64 * GiB, .n_ctx = ctx, .compute_bytes = work};
        if (CHECK_OK(plan_init(&q, &s.mi, &hw, &pp))) {
            CHECK(p.predicted_gen_tok_per_s > 10 * q.predicted_gen_tok_per_s);
            CHECK(p.predicted_prompt_tok_per_s > 10 * q.predicted_prompt_tok_per_s);
            plan_free(&q);
        }
        plan_free(&p);
    }
    /* one byte less: the embeddings, placed last, stay in RAM */
    if (gpu_plan_ref(&s, &p, gb - 1, 2 * GiB, ctx, work, gwork)) {
        CHECK(!p.all_on_gpu);
        CHECK_EQ_U64(p.bytes_by_role_resident[ROLE_EMBED], role_bytes(&s, ROLE_EMBED));
        CHECK_EQ_U64(p.gpu_weights_bytes, s.mi.tensor_bytes - role_bytes(&s, ROLE_EMBED));
        CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
        plan_free(&p);
    }
    shape_close(&s);
}

static void test_gpu_priority(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-70b")) return;
    const int64_t ctx = 4096;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx), gwork = 512 * MiB, work = 256 * MiB;
    const uint64_t base = gpu_base_bytes(&s, ctx, gwork);
    const uint64_t ffn = role_bytes(&s, ROLE_FFN), head = role_bytes(&s, ROLE_OUTPUT);
    struct plan p;
    /* norms, attention and about 40% of the dense FFN layers; the head,
     * after every FFN tensor, stays on the host */
    uint64_t gb = base + ffn * 2 / 5;
    if (gpu_plan_order(&s, &p, PLAN_HEAD_LAST, gb, 12 * GiB, ctx, work, gwork)) {
        CHECK(!p.all_on_gpu);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_NORM], role_bytes(&s, ROLE_NORM));
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_ATTN], role_bytes(&s, ROLE_ATTN));
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], 0);
        CHECK(p.gpu_weights_bytes <= gb - kv - gwork);
        /* dense FFN on the GPU: a prefix of the layers whole, then single
         * tensors of the layers after it */
        int n_on = 0;
        while (n_on < p.n_layer &&
               layer_gpu_bytes(&p, n_on, ROLE_FFN) == layer_role_bytes(&s, n_on, n_on + 1, ROLE_FFN))
            n_on++;
        CHECK(n_on > 0 && n_on < p.n_layer);
        CHECK(n_on >= p.n_layer * 2 / 5 - 2 && n_on <= p.n_layer * 2 / 5 + 2);
        CHECK(p.bytes_by_role_gpu[ROLE_FFN] >= layer_role_bytes(&s, 0, n_on, ROLE_FFN));
        /* not one more FFN tensor fits */
        uint64_t smallest = UINT64_MAX;
        for (uint64_t i = 0; i < p.n_tensors; i++)
            if (p.tensors[i].role == ROLE_FFN && p.tensors[i].tier != PLAN_TIER_GPU)
                smallest = HY_MIN(smallest, p.tensors[i].bytes);
        CHECK(p.gpu_budget_bytes - p.gpu_used_bytes < smallest);
        /* the RAM side streams, but only what is off the GPU */
        CHECK_EQ_INT(p.mode, PLAN_MODE_DENSE_STREAM);
        for (int l = 0; l < n_on; l++) CHECK_EQ_U64(p.layers[l].streamed_bytes, 0);
        printf("llama-3-70b, RAM 12 GiB, GPU %.1f GiB: %d of %d FFN layers on the GPU, %.2f tok/s (RAM only: ",
               (double)gb / GiB, n_on, p.n_layer, p.predicted_gen_tok_per_s);
        plan_free(&p);
        struct plan_hw hw;
        hw_fixed(&hw);
        struct plan_params pp = {.ram_budget_bytes = 12 * GiB, .n_ctx = ctx, .compute_bytes = work};
        if (CHECK_OK(plan_init(&p, &s.mi, &hw, &pp))) {
            printf("%.2f tok/s)\n", p.predicted_gen_tok_per_s);
            plan_free(&p);
        }
    }
    /* room for 3 whole FFN layers and the largest tensor of the fourth:
     * that tensor goes too, alone */
    uint64_t big = 0, big_i = 0;
    for (uint64_t i = 0; i < s.g->n_tensors; i++)
        if (s.mi.tensor_role[i] == ROLE_FFN && s.mi.tensor_layer[i] == 3 && s.g->tensors[i].n_bytes > big) {
            big = s.g->tensors[i].n_bytes;
            big_i = i;
        }
    gb = base + layer_role_bytes(&s, 0, 3, ROLE_FFN) + big + MiB;
    if (big > 0 && gpu_plan_order(&s, &p, PLAN_HEAD_LAST, gb, 16 * GiB, ctx, work, gwork)) {
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_FFN], layer_role_bytes(&s, 0, 3, ROLE_FFN) + big);
        CHECK_EQ_INT(p.tensors[big_i].tier, PLAN_TIER_GPU);
        CHECK(p.layers[3].ffn_on_gpu && p.layers[3].ffn_streamed);
        CHECK(!p.layers[4].ffn_on_gpu);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], 0);
        plan_free(&p);
    }
    /* room for every FFN tensor and the head: the head goes too; a byte
     * less, and the head alone stays on the host */
    gb = base + ffn + head;
    if (head > 0 && gpu_plan_order(&s, &p, PLAN_HEAD_LAST, gb, 16 * GiB, ctx, work, gwork)) {
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_FFN], ffn);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], head);
        CHECK_EQ_U64(p.gpu_used_bytes, gb);
        plan_free(&p);
    }
    if (head > 0 && gpu_plan_order(&s, &p, PLAN_HEAD_LAST, gb - 1, 16 * GiB, ctx, work, gwork)) {
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_FFN], ffn);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], 0);
        CHECK_EQ_U64(p.bytes_by_role_resident[ROLE_OUTPUT], head);
        CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
        plan_free(&p);
    }
    /* a sweep of GPU budgets at a fixed RAM budget: always the reference
     * placement, and more GPU is never slower */
    double prev = 0;
    for (uint64_t gb2 = kv + gwork + role_bytes(&s, ROLE_NORM); gb2 <= s.mi.tensor_bytes + kv + gwork + GiB;
         gb2 += 3 * GiB / 2) {
        if (!gpu_plan_ref(&s, &p, gb2, 16 * GiB, ctx, work, gwork)) break;
        CHECK(p.predicted_gen_tok_per_s >= prev * (1 - 1e-9));
        prev = p.predicted_gen_tok_per_s;
        plan_free(&p);
    }
    shape_close(&s);
}

static void test_gpu_minimum(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-70b")) return;
    const int64_t ctx = 8192;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx), gwork = 512 * MiB;
    const uint64_t min = kv + gwork + role_bytes(&s, ROLE_NORM);
    struct plan_hw hw;
    hw_gpu(&hw);
    struct plan p;
    struct plan_params pp = {.ram_budget_bytes = 64 * GiB, .gpu_budget_bytes = min - 1, .n_ctx = ctx,
                             .gpu_compute_bytes = gwork};
    CHECK_STATUS(plan_init(&p, &s.mi, &hw, &pp), HY_ERR_INVALID_ARG);
    CHECK_CONTAINS(err_msg(), "GPU budget");
    CHECK_CONTAINS(err_msg(), "below the GPU minimum");
    CHECK_CONTAINS(err_msg(), "KV cache 2.5");
    CHECK_CONTAINS(err_msg(), "norms");
    CHECK_CONTAINS(err_msg(), "-c");
    CHECK_CONTAINS(err_msg(), "--gpu off");
    plan_free(&p);
    /* exactly the minimum: the norms alone */
    pp.gpu_budget_bytes = min;
    if (CHECK_OK(plan_init(&p, &s.mi, &hw, &pp))) {
        CHECK_EQ_U64(p.gpu_min_bytes, min);
        CHECK_EQ_U64(p.gpu_weights_bytes, role_bytes(&s, ROLE_NORM));
        CHECK_EQ_U64(p.gpu_used_bytes, min);
        plan_free(&p);
    }
    shape_close(&s);
}

static void test_gpu_moe(void)
{
    struct shape s;
    if (!shape_open(&s, "qwen3-30b-a3b")) return;
    const int64_t ctx = 4096;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx), gwork = 256 * MiB, work = 128 * MiB;
    const uint64_t exp = role_bytes(&s, ROLE_EXPERT);
    const uint64_t exp01 = layer_role_bytes(&s, 0, 2, ROLE_EXPERT), exp2 = layer_role_bytes(&s, 2, 3, ROLE_EXPERT);
    /* everything but the experts and the embeddings, and 2.5 expert layers */
    uint64_t gb = kv + gwork + s.mi.tensor_bytes - exp - role_bytes(&s, ROLE_EMBED) + exp01 + exp2 / 2;
    struct plan p;
    if (gpu_plan_ref(&s, &p, gb, 4 * GiB, ctx, work, gwork)) {
        int n_on = 0;
        for (int l = 0; l < p.n_layer; l++) n_on += p.layers[l].experts_on_gpu;
        CHECK_EQ_INT(n_on, 2);
        CHECK(p.layers[0].experts_on_gpu && p.layers[1].experts_on_gpu);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EXPERT], exp01);
        CHECK_EQ_U64(p.gpu_expert_cache_bytes, gb - p.gpu_used_bytes);
        /* the embeddings, last, fit in what the third layer left */
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], role_bytes(&s, ROLE_EMBED));
        CHECK_EQ_U64(p.gpu_expert_cache_bytes, exp2 / 2 - role_bytes(&s, ROLE_EMBED));
        CHECK_EQ_U64(p.bytes_by_role_resident[ROLE_EXPERT] + p.bytes_by_role_streamed[ROLE_EXPERT], exp - exp01);
        CHECK_EQ_U64(p.bytes_by_role_resident[ROLE_ROUTER], 0);
        CHECK_EQ_INT(p.mode, PLAN_MODE_EXPERT_STREAM);
        CHECK(p.expert_cache_max - p.expert_cache_min <= 1);
        plan_free(&p);
    }
    /* with RAM for every host expert and the embeddings: the embeddings in
     * RAM, their VRAM the expert cache's; one byte of RAM short of that,
     * on the GPU again, nothing streamed either way */
    const uint64_t embd = role_bytes(&s, ROLE_EMBED);
    if (gpu_plan_ref(&s, &p, gb, 64 * GiB, ctx, work, gwork)) {
        CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], 0);
        CHECK_EQ_U64(p.bytes_by_role_resident[ROLE_EMBED], embd);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EXPERT], exp01);
        CHECK_EQ_U64(p.gpu_expert_cache_bytes, exp2 / 2);
        const uint64_t ram = p.resident_bytes;
        plan_free(&p);
        if (gpu_plan_ref(&s, &p, gb, ram - 1, ctx, work, gwork)) {
            CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
            CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], embd);
            CHECK_EQ_U64(p.gpu_expert_cache_bytes, exp2 / 2 - embd);
            CHECK_EQ_U64(p.resident_bytes, ram - embd);
            plan_free(&p);
        }
        /* forced resident past a RAM budget: no more RAM for them either */
        struct plan_hw hw;
        hw_gpu(&hw);
        struct plan_params pp = {.ram_budget_bytes = ram - embd - 1,
                                 .gpu_budget_bytes = gb,
                                 .n_ctx = ctx,
                                 .compute_bytes = work,
                                 .gpu_compute_bytes = gwork,
                                 .force = PLAN_FORCE_RESIDENT};
        if (CHECK_OK(plan_init(&p, &s.mi, &hw, &pp))) {
            CHECK(p.over_budget);
            CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], embd);
            CHECK_EQ_U64(p.resident_bytes, ram - embd);
            plan_free(&p);
        }
    }
    /* the whole model: no expert cache */
    if (gpu_plan_ref(&s, &p, s.mi.tensor_bytes + kv + gwork + GiB, 1 * GiB, ctx, work, gwork)) {
        CHECK(p.all_on_gpu);
        CHECK_EQ_U64(p.gpu_expert_cache_bytes, 0);
        CHECK(p.expert_hit_rate == 1);
        plan_free(&p);
    }
    /* forced expert streaming: the experts stay on the host and the GPU's
     * budget past the rest is the VRAM expert cache, in front of the RAM
     * one: a layer's hit rate is that of the larger of its RAM cache and
     * its share of the VRAM one (whole sets of one expert's slices of every
     * layer), so a larger GPU budget reads less per token */
    {
        struct plan_hw hw;
        hw_gpu(&hw);
        const uint64_t rest = kv + gwork + s.mi.tensor_bytes - exp;
        struct plan q[3];
        const uint64_t gbs[3] = {rest, rest + exp / 4, rest + 2 * exp};
        int ok = 0;
        for (int i = 0; i < 3; i++) {
            struct plan_params pp = {.ram_budget_bytes = 2 * GiB,
                                     .gpu_budget_bytes = gbs[i],
                                     .n_ctx = ctx,
                                     .compute_bytes = work,
                                     .gpu_compute_bytes = gwork,
                                     .force = PLAN_FORCE_EXPERT_STREAM};
            if (!CHECK_OK(plan_init(&q[i], &s.mi, &hw, &pp))) break;
            ok++;
            CHECK_EQ_U64(q[i].bytes_by_role_gpu[ROLE_EXPERT], 0);
            CHECK_EQ_INT(q[i].mode, PLAN_MODE_EXPERT_STREAM);
        }
        if (ok == 3) {
            const int64_t E = s.mi.hp.n_expert;
            uint64_t set = 0; /* one expert's slices of every layer */
            for (uint64_t i = 0; i < s.g->n_tensors; i++)
                if (s.mi.tensor_role[i] == ROLE_EXPERT)
                    set += base_align_up(s.g->tensors[i].n_bytes / (uint64_t)E, 256);
            for (int i = 0; i < 3; i++) {
                const int64_t vc = (int64_t)HY_MIN(q[i].gpu_expert_cache_bytes / set, (uint64_t)E);
                const struct plan_layer *pl = &q[i].layers[0];
                CHECK(pl->hit_rate == plan_expert_hit_rate(HY_MAX(pl->expert_cache, vc), E));
            }
            CHECK(q[1].streamed_bytes_per_token < q[0].streamed_bytes_per_token);
            CHECK(q[2].streamed_bytes_per_token < q[1].streamed_bytes_per_token);
            CHECK(q[2].expert_hit_rate == 1); /* room for every expert */
            /* and no more: a budget past that leaves the rest unused */
            CHECK_EQ_U64(q[2].gpu_expert_cache_bytes, set * (uint64_t)E);
            CHECK(q[2].gpu_used_bytes + q[2].gpu_expert_cache_bytes < gbs[2]);
            CHECK(q[1].predicted_gen_tok_per_s > q[0].predicted_gen_tok_per_s);
        }
        for (int i = 0; i < ok; i++) plan_free(&q[i]);
    }
    /* a sweep: the reference placement everywhere */
    for (uint64_t gb2 = kv + gwork + GiB; gb2 <= s.mi.tensor_bytes + kv + gwork + GiB; gb2 += GiB) {
        if (!gpu_plan_ref(&s, &p, gb2, 8 * GiB, ctx, work, gwork)) break;
        plan_free(&p);
    }
    shape_close(&s);
}

static void test_gpu_tied(void)
{
    struct shape s;
    if (!shape_open_tied(&s, "llama-3-8b", true)) return;
    CHECK_EQ_U64(role_bytes(&s, ROLE_OUTPUT), 0);
    const int64_t ctx = 4096;
    const uint64_t gwork = 256 * MiB;
    /* the embeddings are the head: they go after the dense FFN, and before
     * nothing else is left */
    const uint64_t base = gpu_base_bytes(&s, ctx, gwork);
    const uint64_t embd = role_bytes(&s, ROLE_EMBED), ffn = role_bytes(&s, ROLE_FFN);
    struct plan p;
    if (gpu_plan_order(&s, &p, PLAN_HEAD_LAST, base + embd + MiB, 16 * GiB, ctx, 64 * MiB, gwork)) {
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], 0);
        CHECK(p.bytes_by_role_gpu[ROLE_FFN] > embd / 2);
        plan_free(&p);
    }
    if (gpu_plan_ref(&s, &p, base + ffn + embd, 16 * GiB, ctx, 64 * MiB, gwork)) {
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_EMBED], embd);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_FFN], ffn);
        CHECK(p.all_on_gpu);
        plan_free(&p);
    }
    shape_close(&s);
}

/* Rule G3's choice of the head's place. With the host's weights resident,
 * the head after the dense FFN is the faster plan: the same bytes on the
 * host in fewer host products. With a RAM budget that streams FFN layers, a
 * head on the host displaces resident FFN bytes into the stream, and the
 * head first can win. */
static void test_gpu_head_order(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-8b")) return;
    const int64_t ctx = 4096;
    const uint64_t gwork = 256 * MiB, work = 128 * MiB;
    const uint64_t base = gpu_base_bytes(&s, ctx, gwork);
    const uint64_t ffn = role_bytes(&s, ROLE_FFN), head = role_bytes(&s, ROLE_OUTPUT);
    const uint64_t gb = base + head + ffn / 4;
    struct plan p, first, last;
    if (gpu_plan_ref(&s, &p, gb, 64 * GiB, ctx, work, gwork)) {
        CHECK(p.gpu_head_last);
        CHECK_EQ_INT(p.mode, PLAN_MODE_RESIDENT);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], 0);
        plan_free(&p);
    }
    if (gpu_plan_order(&s, &first, PLAN_HEAD_FIRST, gb, 64 * GiB, ctx, work, gwork)) {
        if (gpu_plan_order(&s, &last, PLAN_HEAD_LAST, gb, 64 * GiB, ctx, work, gwork)) {
            CHECK_EQ_U64(first.bytes_by_role_gpu[ROLE_OUTPUT], head);
            CHECK(last.predicted_gen_tok_per_s > first.predicted_gen_tok_per_s);
            printf("llama-3-8b, GPU %.2f GiB, RAM 64 GiB: head first %.1f tok/s, head last %.1f\n",
                   (double)gb / GiB, first.predicted_gen_tok_per_s, last.predicted_gen_tok_per_s);
            /* a RAM budget at the head first's resident minimum, below the
             * head last's (the head in RAM is part of it): the head goes
             * first rather than the plan failing; a byte less, the error
             * names the head first's minimum */
            const uint64_t min_first = first.min_resident_bytes;
            CHECK(last.min_resident_bytes > min_first);
            struct plan_hw hw;
            hw_gpu(&hw);
            struct plan_params pp = {.ram_budget_bytes = min_first, .gpu_budget_bytes = gb, .n_ctx = ctx,
                                     .compute_bytes = work, .gpu_compute_bytes = gwork};
            if (CHECK_OK(plan_init(&p, &s.mi, &hw, &pp))) {
                CHECK(!p.gpu_head_last);
                CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], head);
                plan_free(&p);
            }
            pp.head_order = PLAN_HEAD_LAST;
            CHECK_STATUS(plan_init(&p, &s.mi, &hw, &pp), HY_ERR_INVALID_ARG);
            plan_free(&p);
            pp.head_order = PLAN_HEAD_AUTO;
            pp.ram_budget_bytes = min_first - 1;
            CHECK_STATUS(plan_init(&p, &s.mi, &hw, &pp), HY_ERR_INVALID_ARG);
            char size[32], want[64];
            snprintf(want, sizeof want, "below the resident minimum %s ",
                     sizes_format(min_first, size, sizeof size));
            CHECK_CONTAINS(err_msg(), want);
            plan_free(&p);
            plan_free(&last);
        }
        plan_free(&first);
    }
    shape_close(&s);

    if (!shape_open(&s, "llama-3-70b")) return;
    const uint64_t gb70 = gpu_base_bytes(&s, ctx, gwork) + role_bytes(&s, ROLE_OUTPUT) +
                          role_bytes(&s, ROLE_FFN) * 2 / 5;
    if (gpu_plan_ref(&s, &p, gb70, 19 * GiB, ctx, work, gwork)) {
        CHECK(!p.gpu_head_last);
        CHECK_EQ_INT(p.mode, PLAN_MODE_DENSE_STREAM);
        CHECK_EQ_U64(p.bytes_by_role_gpu[ROLE_OUTPUT], role_bytes(&s, ROLE_OUTPUT));
        if (gpu_plan_order(&s, &last, PLAN_HEAD_LAST, gb70, 19 * GiB, ctx, work, gwork)) {
            CHECK(last.streamed_bytes_per_token > p.streamed_bytes_per_token);
            printf("llama-3-70b, GPU %.1f GiB, RAM 19 GiB: head first %.3f tok/s (%.2f GiB read a token), "
                   "head last %.3f (%.2f GiB)\n",
                   (double)gb70 / GiB, p.predicted_gen_tok_per_s, p.streamed_bytes_per_token / GiB,
                   last.predicted_gen_tok_per_s, last.streamed_bytes_per_token / GiB);
            plan_free(&last);
        }
        plan_free(&p);
    }
    shape_close(&s);
}

/* Without a GPU (n_gpu 0, or no GPU budget) the GPU parameters change nothing. */
static bool same_plan(const struct plan *a, const struct plan *b)
{
    struct plan x = *a, y = *b;
    x.layers = y.layers = NULL;
    x.tensors = y.tensors = NULL;
    y.gpu_budget_bytes = x.gpu_budget_bytes; /* recorded as given */
    bool same = memcmp(&x, &y, sizeof x) == 0 && a->n_layer == b->n_layer && a->n_tensors == b->n_tensors;
    same = same && memcmp(a->layers, b->layers, (size_t)a->n_layer * sizeof(*a->layers)) == 0;
    for (uint64_t i = 0; same && i < a->n_tensors; i++) {
        const struct plan_tensor *s = &a->tensors[i], *t = &b->tensors[i];
        same = s->name == t->name && s->role == t->role && s->layer == t->layer && s->type == t->type &&
               s->bytes == t->bytes && s->tier == t->tier && s->resident_bytes == t->resident_bytes;
    }
    return same;
}

static void test_gpu_off_unchanged(void)
{
    const char *likes[] = {"llama-3-70b", "mixtral-8x7b", "qwen3-30b-a3b"};
    const enum plan_force forces[] = {PLAN_FORCE_NONE, PLAN_FORCE_RESIDENT, PLAN_FORCE_DENSE_STREAM,
                                      PLAN_FORCE_EXPERT_STREAM};
    for (size_t m = 0; m < sizeof likes / sizeof likes[0]; m++) {
        struct shape s;
        if (!shape_open(&s, likes[m])) continue;
        for (uint64_t budget = 4 * GiB; budget <= s.mi.tensor_bytes + 4 * GiB; budget += 6 * GiB)
            for (size_t f = 0; f < sizeof forces / sizeof forces[0]; f++) {
                struct plan_hw hw0, hw1, hw2;
                hw_fixed(&hw0);
                hw1 = hw0; /* GPU rates but no GPU */
                hw1.gpu_mem_bytes = 80 * GiB;
                hw1.pcie_bytes_per_s = 50e9;
                hw1.gpu_mem_bytes_per_s = 3e12;
                hw1.gpu_flops_per_s = 5e14;
                hw2 = hw1; /* a GPU but no GPU budget */
                hw2.n_gpu = 1;
                struct plan_params pp0 = {.ram_budget_bytes = budget, .n_ctx = 4096, .compute_bytes = 200 * MiB,
                                          .force = forces[f]};
                struct plan_params pp1 = pp0;
                pp1.gpu_budget_bytes = 16 * GiB;
                pp1.gpu_compute_bytes = GiB;
                struct plan_params pp2 = pp1;
                pp2.gpu_budget_bytes = 0;
                struct plan a, b, c;
                enum hy_status sa = plan_init(&a, &s.mi, &hw0, &pp0);
                enum hy_status sb = plan_init(&b, &s.mi, &hw1, &pp1);
                enum hy_status sc = plan_init(&c, &s.mi, &hw2, &pp2);
                CHECK_EQ_INT(sb, sa);
                CHECK_EQ_INT(sc, sa);
                if (sa == HY_OK && sb == HY_OK && sc == HY_OK) {
                    CHECK(same_plan(&a, &b));
                    CHECK(same_plan(&a, &c));
                    CHECK(!b.gpu_on && !b.kv_on_gpu && b.gpu_used_bytes == 0);
                    CHECK_EQ_U64(b.gpu_budget_bytes, 16 * GiB);
                }
                plan_free(&a);
                plan_free(&b);
                plan_free(&c);
            }
        shape_close(&s);
    }
}

/* The host's rate with the CPU and the copies at once (hw.host_both_bytes_per_s):
 * below their sum it caps the host products' time, above it changes nothing. */
static void test_gpu_host_both(void)
{
    struct shape s;
    if (!shape_open(&s, "llama-3-8b")) return;
    const int64_t ctx = 4096;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, ctx), gwork = 300 * MiB, work = 100 * MiB;
    struct plan_hw hw;
    hw_gpu(&hw);
    const struct plan_params pp = {.ram_budget_bytes = 32 * GiB,
                                   .gpu_budget_bytes = kv + gwork + s.mi.tensor_bytes / 2,
                                   .n_ctx = ctx,
                                   .compute_bytes = work,
                                   .gpu_compute_bytes = gwork};
    struct plan a, b;
    if (CHECK_OK(plan_init(&a, &s.mi, &hw, &pp))) {
        CHECK(!a.all_on_gpu);
        hw.host_both_bytes_per_s = 1e15;
        if (CHECK_OK(plan_init(&b, &s.mi, &hw, &pp))) {
            CHECK_NEAR(b.t_compute_per_token_s, a.t_compute_per_token_s, a.t_compute_per_token_s * 1e-12);
            plan_free(&b);
        }
        hw.host_both_bytes_per_s = 5e9;
        if (CHECK_OK(plan_init(&b, &s.mi, &hw, &pp))) {
            /* every host byte a token reads (the embeddings: one row) at 5 GB/s at least */
            const double host = (double)(b.weights_resident_bytes - b.bytes_by_role_resident[ROLE_EMBED]);
            CHECK(host > 0);
            CHECK(b.t_compute_per_token_s >= host / 5e9 * (1 - 1e-9));
            CHECK(b.predicted_gen_tok_per_s < a.predicted_gen_tok_per_s);
            plan_free(&b);
        }
        plan_free(&a);
    }
    shape_close(&s);
}

/* llama.cpp's -ngl as a budget: the GPU minimum, then the output head (the
 * embeddings where tied) and the last blocks' tensors other than norms,
 * summed here tensor by tensor; 0 past the block count. */
static uint64_t ngl_ref(const struct shape *s, uint64_t kv, uint64_t gwork, int ngl)
{
    const int n = s->mi.n_layer_seen;
    if (ngl > n) return 0;
    uint64_t b = kv + gwork;
    const bool tied = role_bytes(s, ROLE_OUTPUT) == 0;
    for (uint64_t i = 0; i < s->g->n_tensors; i++) {
        const enum tensor_role r = s->mi.tensor_role[i];
        const int l = s->mi.tensor_layer[i];
        const bool head = ngl >= 1 && r == (tied ? ROLE_EMBED : ROLE_OUTPUT);
        if (r == ROLE_NORM || head || (l >= 0 && l >= n - (ngl - 1) && ngl >= 1))
            b += s->g->tensors[i].n_bytes;
    }
    return b;
}

static void test_gpu_layers_budget(const char *like, bool tied)
{
    struct shape s;
    if (!shape_open_tied(&s, like, tied)) return;
    const int n = s.mi.n_layer_seen;
    const uint64_t kv = plan_kv_bytes(&s.mi.hp, 4096), gwork = 200 * MiB;
    const int counts[] = {0, 1, 2, n / 2, n - 1, n, n + 1, n + 2, 999};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        CHECK_EQ_U64(plan_gpu_layers_budget(&s.mi, kv, gwork, counts[i]),
                     ngl_ref(&s, kv, gwork, counts[i]));
    /* the minimum alone, then the head alone, then one block more each */
    CHECK_EQ_U64(plan_gpu_layers_budget(&s.mi, kv, gwork, 0),
                 kv + gwork + role_bytes(&s, ROLE_NORM));
    CHECK_EQ_U64(plan_gpu_layers_budget(&s.mi, kv, gwork, 1) -
                     plan_gpu_layers_budget(&s.mi, kv, gwork, 0),
                 role_bytes(&s, tied ? ROLE_EMBED : ROLE_OUTPUT));
    uint64_t blocks = 0;
    for (int r = 0; r < ROLE_COUNT; r++)
        if (r != ROLE_NORM) blocks += layer_role_bytes(&s, 1, n, (enum tensor_role)r);
    CHECK_EQ_U64(plan_gpu_layers_budget(&s.mi, kv, gwork, n) -
                     plan_gpu_layers_budget(&s.mi, kv, gwork, 1),
                 blocks);
    CHECK_EQ_U64(plan_gpu_layers_budget(&s.mi, kv, gwork, n + 1), 0);
    shape_close(&s);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_budget_rules();
    test_kv_and_hits();
    test_error_message();
    test_dense_spread();
    sweep("llama-3-70b", PLAN_MODE_DENSE_STREAM);
    sweep("mixtral-8x7b", PLAN_MODE_EXPERT_STREAM);
    sweep("qwen3-30b-a3b", PLAN_MODE_EXPERT_STREAM);
    test_gpu_everything("llama-3-8b");
    test_gpu_everything("mixtral-8x7b");
    test_gpu_priority();
    test_gpu_minimum();
    test_gpu_moe();
    test_gpu_tied();
    test_gpu_head_order();
    test_gpu_off_unchanged();
    test_gpu_host_both();
    test_gpu_layers_budget("llama-3-8b", false);
    test_gpu_layers_budget("llama-3-8b", true);
    test_gpu_layers_budget("mixtral-8x7b", false);
    test_gpu_layers_budget("qwen1.5-moe-a2.7b", false);
    return check_report(argv[0]);
}
