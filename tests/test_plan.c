/*
 * The placement plan on full-size model shapes without their weights:
 * synth_header() gives the GGUF header of a preset at its real size, a source
 * that reads zeros past it makes the parser see the whole file, and the plan
 * works from the header alone. Checks, over a range of budgets: resident
 * bytes within the budget, streamed bytes per token non-increasing as the
 * budget grows, sensible modes, a clean error below the resident minimum;
 * and the budget clamping rule, KV cache size and hit-rate assumption.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
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

static bool shape_open(struct shape *s, const char *like)
{
    memset(s, 0, sizeof(*s));
    const struct synth_preset *pr = synth_find_preset(like);
    if (!CHECK(pr != NULL)) return false;
    struct synth_config cfg = pr->cfg;
    cfg.ftype = QUANT_MIX_Q4_K_M;
    uint64_t n = 0;
    if (!CHECK_OK(synth_header(&cfg, &s->hdr, &n, &s->file_bytes))) return false;
    s->src = (struct header_src){s->hdr, n};
    struct gguf_source gs = {header_read, &s->src, s->file_bytes, like};
    if (!CHECK_OK(gguf_parse(&gs, &s->g))) return false;
    if (!CHECK_OK(model_info_init(&s->mi, s->g))) return false;
    return true;
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
    return check_report(argv[0]);
}
