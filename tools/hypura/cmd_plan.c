/*
 * hypura plan -m MODEL [--ram-budget SIZE] [--gpu-budget SIZE] [--gpu-mem SIZE] [-c CTX] [--disk-gbs X]
 *             [--mem-gbs X] [--json]
 *
 * Reads the model's header and prints where every tensor would live, the
 * mode, pool and cache sizes, bytes read per token and the predicted speed
 * (src/plan/plan.h). Hardware numbers come from flags and simple defaults
 * until the hardware profile feeds them.
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/sizes.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/model_info.h"
#include "hw/hw.h"
#include "plan/plan.h"

#define DEFAULT_CTX 4096

static void plan_help(void)
{
    printf("usage: hypura plan -m MODEL.gguf [options]\n\n"
           "Plans where every tensor of a model lives (RAM or streamed from the file), the mode,\n"
           "the KV cache, streaming pool and expert cache, bytes read per token and the predicted\n"
           "speed. Reads the header only.\n\n"
           "options:\n"
           "  -m, --model FILE     the GGUF model (required)\n"
           "  --ram-budget SIZE    RAM for weights, KV cache and pools, e.g. 24G, 512MiB\n"
           "                       (default: available RAM minus headroom; never above a\n"
           "                       cgroup memory limit minus headroom)\n"
           "  --gpu-budget SIZE    GPU memory for the KV cache, GPU buffers and weights (default: 0,\n"
           "                       no GPU tier; with --gpu-mem: that minus headroom)\n"
           "  -ngl, --n-gpu-layers N\n"
           "                       GPU budget of llama.cpp's -ngl N: the GPU minimum and the weights\n"
           "                       llama.cpp offloads for N layers (the output head, then the\n"
           "                       last N - 1 blocks); instead of --gpu-budget (default: not\n"
           "                       given)\n"
           "  --gpu-mem SIZE       plan for one GPU with this much memory (default: none, or one of\n"
           "                       --gpu-budget's size when that is given)\n"
           "  -c, --ctx-size N     context length for the KV cache (default: %d, at most the\n"
           "                       model's training context)\n"
           "  -b, --batch-size N   prompt tokens per step, which sizes the compute buffers the plan\n"
           "                       counts in RAM and, with a GPU, in VRAM (default: %d, as run)\n"
           "  --disk-gbs X         disk read bandwidth in GB/s (default: the cached 'hypura profile',\n"
           "                       else 3)\n"
           "  --mem-gbs X          RAM read bandwidth in GB/s (default: the cached profile, else 20);\n"
           "                       the CPU matvec rate per type also comes from the profile\n"
           "  -t, --threads N      CPU threads for the prompt estimate (default: physical cores)\n"
           "  --json               print the plan as one JSON object, every tensor included\n"
           "  -h, --help           show this help\n",
           DEFAULT_CTX, FORWARD_DEFAULT_BATCH);
}

static const char *fmt(uint64_t b, char *buf)
{
    return sizes_format(b, buf, 32);
}

static void print_text(const struct model_info *mi, const struct plan *p, const struct plan_hw *hw, const char *path)
{
    char a[32], b[32], c[32];
    printf("model:        %s (%s, %d layers%s)\n", path, mi->arch ? mi->arch : "?", p->n_layer,
           p->n_expert ? ", MoE" : "");
    if (p->n_expert) printf("experts:      %" PRId64 " per layer, %" PRId64 " used\n", p->n_expert, p->n_expert_used);
    printf("hardware:     disk %.2f GB/s, memory %.1f GB/s, %d threads\n", hw->disk_read_bytes_per_s / 1e9,
           hw->mem_read_bytes_per_s / 1e9, hw->n_threads);
    printf("budgets:      RAM %s, GPU %s\n", fmt(p->ram_budget_bytes, a), fmt(p->gpu_budget_bytes, b));
    if (p->gpu_on) {
        char d[32], e[32], f[32], g[32], h[32];
        printf("gpu:          budget %s, minimum %s (KV cache %s, buffers %s, norms %s), used %s; weights %s "
               "placed%s; expert cache %s\n",
               fmt(p->gpu_budget_bytes, a), fmt(p->gpu_min_bytes, b), fmt(p->kv_bytes, c),
               fmt(p->gpu_compute_bytes, d), fmt(p->bytes_by_role_gpu[ROLE_NORM], e), fmt(p->gpu_used_bytes, f),
               fmt(p->gpu_weights_bytes, g), p->all_on_gpu ? " (all)" : "", fmt(p->gpu_expert_cache_bytes, h));
        printf("tiers:        weights gpu %s, ram %s, nvme %s; KV cache on the GPU; output head placed %s the "
               "dense FFN\n",
               fmt(p->gpu_weights_bytes, a), fmt(p->weights_resident_bytes, b), fmt(p->weights_streamed_bytes, c),
               p->gpu_head_last ? "after" : "before");
    } else {
        printf("gpu:          off\n");
    }
    printf("mode:         %s\n", plan_mode_name(p->mode));
    printf("RAM use:      %s of %s (minimum %s)\n", fmt(p->resident_bytes, a), fmt(p->ram_budget_bytes, b),
           fmt(p->min_resident_bytes, c));
    printf("weights:      %s resident, %s streamed from the file\n", fmt(p->weights_resident_bytes, a),
           fmt(p->weights_streamed_bytes, b));
    printf("KV cache:     %s (F16, %" PRId64 " positions)\n", fmt(p->kv_bytes, a), p->n_ctx);
    if (p->pool_slots)
        printf("stream pool:  %d slots x %s = %s, prefetch depth %d\n", p->pool_slots, fmt(p->pool_slot_bytes, a),
               fmt(p->pool_bytes, b), p->prefetch_depth);
    else
        printf("stream pool:  none (nothing streams), prefetch depth 0\n");
    if (p->n_expert)
        printf("expert cache: %d..%d of %" PRId64 " experts per layer, %" PRIu64 " entries, %s; assumed hit rate "
               "%.1f%% (Zipf popularity, s = %.1f)\n",
               p->expert_cache_min, p->expert_cache_max, p->n_expert, p->expert_cache_entries,
               fmt(p->expert_cache_bytes, a), 100 * p->expert_hit_rate, p->expert_zipf_s);
    printf("read/token:   %s from the disk\n", fmt((uint64_t)(p->streamed_bytes_per_token + 0.5), a));
    printf("decode:       %.2f tok/s predicted (compute %.1f ms, disk %.1f ms per token), bound: %s\n",
           p->predicted_gen_tok_per_s, 1e3 * p->t_compute_per_token_s, 1e3 * p->t_io_per_token_s,
           plan_bound_name(p->gen_bound));
    printf("prompt:       %.1f tok/s predicted (batches of %d), bound: %s\n", p->predicted_prompt_tok_per_s,
           PLAN_PROMPT_BATCH, plan_bound_name(p->prompt_bound));

    if (p->gpu_on)
        printf("\nby role:\n  %-16s %12s %12s %12s\n", "role", "gpu", "resident", "streamed");
    else
        printf("\nby role:\n  %-16s %12s %12s\n", "role", "resident", "streamed");
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (!p->bytes_by_role_resident[r] && !p->bytes_by_role_streamed[r] && !p->bytes_by_role_gpu[r]) continue;
        if (p->gpu_on)
            printf("  %-16s %12s %12s %12s\n", arch_role_name((enum tensor_role)r), fmt(p->bytes_by_role_gpu[r], c),
                   fmt(p->bytes_by_role_resident[r], a), fmt(p->bytes_by_role_streamed[r], b));
        else
            printf("  %-16s %12s %12s\n", arch_role_name((enum tensor_role)r), fmt(p->bytes_by_role_resident[r], a),
                   fmt(p->bytes_by_role_streamed[r], b));
    }
    printf("\nby layer:\n  %5s %12s %12s %12s %6s %9s %9s\n", "layer", "resident", "streamed", "read/token",
           p->n_expert ? "cache" : "ffn", "t_comp ms", "t_layer ms");
    for (int l = 0; l < p->n_layer; l++) {
        const struct plan_layer *L = &p->layers[l];
        char cache[16];
        if (p->n_expert && L->experts_on_gpu) snprintf(cache, sizeof cache, "gpu");
        else if (p->n_expert) snprintf(cache, sizeof cache, "%d", L->expert_cache);
        else snprintf(cache, sizeof cache, "%s", L->ffn_on_gpu ? "gpu" : L->ffn_streamed ? "nvme" : "ram");
        printf("  %5d %12s %12s %12s %6s %9.3f %9.3f\n", l, fmt(L->resident_bytes, a), fmt(L->streamed_bytes, b),
               fmt((uint64_t)(L->read_bytes_per_token + 0.5), c), cache, 1e3 * L->t_compute_s, 1e3 * L->t_layer_s);
    }
}

static json_t *plan_json(const struct model_info *mi, const struct plan *p, const struct plan_hw *hw, const char *path)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "architecture", mi->arch ? json_string(mi->arch) : json_null());
    json_object_set_new(o, "mode", json_string(plan_mode_name(p->mode)));
    json_object_set_new(o, "ram_budget_bytes", json_integer((json_int_t)p->ram_budget_bytes));
    json_object_set_new(o, "gpu_budget_bytes", json_integer((json_int_t)p->gpu_budget_bytes));
    json_object_set_new(o, "min_resident_bytes", json_integer((json_int_t)p->min_resident_bytes));
    json_object_set_new(o, "resident_bytes", json_integer((json_int_t)p->resident_bytes));
    json_object_set_new(o, "weights_resident_bytes", json_integer((json_int_t)p->weights_resident_bytes));
    json_object_set_new(o, "weights_streamed_bytes", json_integer((json_int_t)p->weights_streamed_bytes));
    json_object_set_new(o, "gpu_on", json_boolean(p->gpu_on));
    json_object_set_new(o, "kv_on_gpu", json_boolean(p->kv_on_gpu));
    json_object_set_new(o, "all_on_gpu", json_boolean(p->all_on_gpu));
    json_object_set_new(o, "gpu_head_last", json_boolean(p->gpu_head_last));
    json_object_set_new(o, "gpu_min_bytes", json_integer((json_int_t)p->gpu_min_bytes));
    json_object_set_new(o, "gpu_compute_bytes", json_integer((json_int_t)p->gpu_compute_bytes));
    json_object_set_new(o, "gpu_weights_bytes", json_integer((json_int_t)p->gpu_weights_bytes));
    json_object_set_new(o, "gpu_used_bytes", json_integer((json_int_t)p->gpu_used_bytes));
    json_object_set_new(o, "gpu_expert_cache_bytes", json_integer((json_int_t)p->gpu_expert_cache_bytes));
    json_t *by_role = json_object();
    for (int r = 0; r < ROLE_COUNT; r++)
        json_object_set_new(by_role, arch_role_name((enum tensor_role)r),
                            json_pack("{s:I, s:I, s:I}", "gpu", (json_int_t)p->bytes_by_role_gpu[r], "resident",
                                      (json_int_t)p->bytes_by_role_resident[r], "streamed",
                                      (json_int_t)p->bytes_by_role_streamed[r]));
    json_object_set_new(o, "bytes_by_role", by_role);
    json_object_set_new(o, "n_ctx", json_integer(p->n_ctx));
    json_object_set_new(o, "kv_bytes", json_integer((json_int_t)p->kv_bytes));
    json_object_set_new(o, "pool_slots", json_integer(p->pool_slots));
    json_object_set_new(o, "pool_slot_bytes", json_integer((json_int_t)p->pool_slot_bytes));
    json_object_set_new(o, "pool_bytes", json_integer((json_int_t)p->pool_bytes));
    json_object_set_new(o, "prefetch_depth", json_integer(p->prefetch_depth));
    json_object_set_new(o, "n_expert", json_integer(p->n_expert));
    json_object_set_new(o, "n_expert_used", json_integer(p->n_expert_used));
    json_object_set_new(o, "expert_cache_min", json_integer(p->expert_cache_min));
    json_object_set_new(o, "expert_cache_max", json_integer(p->expert_cache_max));
    json_object_set_new(o, "expert_cache_entries", json_integer((json_int_t)p->expert_cache_entries));
    json_object_set_new(o, "expert_cache_bytes", json_integer((json_int_t)p->expert_cache_bytes));
    json_object_set_new(o, "expert_hit_rate_assumed", json_real(p->expert_hit_rate));
    json_object_set_new(o, "expert_zipf_s", json_real(p->expert_zipf_s));
    json_object_set_new(o, "streamed_bytes_per_token", json_integer((json_int_t)(p->streamed_bytes_per_token + 0.5)));
    json_object_set_new(o, "t_compute_per_token_s", json_real(p->t_compute_per_token_s));
    json_object_set_new(o, "t_io_per_token_s", json_real(p->t_io_per_token_s));
    json_object_set_new(o, "predicted_gen_tok_per_s", json_real(p->predicted_gen_tok_per_s));
    json_object_set_new(o, "gen_bound", json_string(plan_bound_name(p->gen_bound)));
    json_object_set_new(o, "predicted_prompt_tok_per_s", json_real(p->predicted_prompt_tok_per_s));
    json_object_set_new(o, "prompt_bound", json_string(plan_bound_name(p->prompt_bound)));
    json_object_set_new(o, "hw", json_pack("{s:f, s:f, s:i, s:I, s:I}", "disk_read_bytes_per_s",
                                           hw->disk_read_bytes_per_s, "mem_read_bytes_per_s",
                                           hw->mem_read_bytes_per_s, "n_threads", hw->n_threads,
                                           "ram_total_bytes", (json_int_t)hw->ram_total_bytes,
                                           "cgroup_limit_bytes", (json_int_t)hw->cgroup_limit_bytes));
    json_t *jhw = json_object_get(o, "hw");
    json_object_set_new(jhw, "n_gpu", json_integer(hw->n_gpu));
    json_object_set_new(jhw, "gpu_mem_bytes", json_integer((json_int_t)hw->gpu_mem_bytes));
    json_t *layers = json_array();
    for (int l = 0; l < p->n_layer; l++) {
        const struct plan_layer *L = &p->layers[l];
        json_array_append_new(
            layers, json_pack("{s:i, s:I, s:I, s:I, s:I, s:b, s:b, s:b, s:i, s:f, s:f, s:f, s:f}", "layer", l,
                              "resident_bytes", (json_int_t)L->resident_bytes, "streamed_bytes",
                              (json_int_t)L->streamed_bytes, "gpu_bytes", (json_int_t)L->gpu_bytes,
                              "read_bytes_per_token", (json_int_t)(L->read_bytes_per_token + 0.5), "ffn_streamed",
                              L->ffn_streamed, "ffn_on_gpu", L->ffn_on_gpu, "experts_on_gpu", L->experts_on_gpu,
                              "expert_cache", L->expert_cache, "hit_rate", L->hit_rate, "t_compute_s",
                              L->t_compute_s, "t_io_s", L->t_io_s, "t_layer_s", L->t_layer_s));
    }
    json_object_set_new(o, "layers", layers);
    json_t *tensors = json_array();
    for (uint64_t i = 0; i < p->n_tensors; i++) {
        const struct plan_tensor *t = &p->tensors[i];
        json_array_append_new(tensors, json_pack("{s:s, s:s, s:i, s:s, s:I, s:s, s:I}", "name", t->name, "role",
                                                 arch_role_name(t->role), "layer", t->layer, "type",
                                                 quant_type_name(t->type), "bytes", (json_int_t)t->bytes, "tier",
                                                 plan_tier_name(t->tier), "resident_bytes",
                                                 (json_int_t)t->resident_bytes));
    }
    json_object_set_new(o, "tensors", tensors);
    return o;
}

int cmd_plan(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "plan", argc, argv);
    const char *path = NULL;
    uint64_t ram_budget = 0, gpu_budget = 0, gpu_mem = 0;
    int64_t n_ctx = 0, n_threads = 0, n_batch = 0, n_gpu_layers = -1;
    double disk_gbs = 0, mem_gbs = 0; /* 0: from the profile or the defaults */
    char hw_source[PATH_MAX + 96];
    bool json = false;
    enum hy_status st = HY_OK;
    while (cli_more(&c)) {
        if (cli_match(&c, "-h", "--help")) {
            plan_help();
            return 0;
        } else if (cli_match(&c, "-m", "--model")) st = cli_value(&c, &path);
        else if (cli_match(&c, NULL, "--ram-budget")) st = cli_size(&c, &ram_budget);
        else if (cli_match(&c, NULL, "--gpu-budget")) st = cli_size(&c, &gpu_budget);
        else if (cli_match(&c, NULL, "--gpu-mem")) st = cli_size(&c, &gpu_mem);
        else if (cli_match_gpu_layers(&c))
            st = cli_int(&c, 0, INT32_MAX, &n_gpu_layers);
        else if (cli_match(&c, "-c", "--ctx-size")) st = cli_int(&c, 1, INT32_MAX, &n_ctx);
        else if (cli_match(&c, "-b", "--batch-size")) st = cli_int(&c, 1, 1 << 20, &n_batch);
        else if (cli_match(&c, NULL, "--disk-gbs")) st = cli_double(&c, 1e-3, 1e4, &disk_gbs);
        else if (cli_match(&c, NULL, "--mem-gbs")) st = cli_double(&c, 1e-3, 1e5, &mem_gbs);
        else if (cli_match(&c, "-t", "--threads")) st = cli_int(&c, 1, 4096, &n_threads);
        else if (cli_match(&c, NULL, "--json")) json = true;
        else if (cli_is_opt(&c)) st = cli_unknown(&c);
        else if (!path) path = cli_positional(&c);
        else st = cli_unknown(&c);
        if (st) return cli_fail("plan", st);
    }
    if (!path) {
        fprintf(stderr, "hypura plan: a model is required (-m MODEL.gguf); see 'hypura plan --help'\n");
        return 2;
    }
    if (n_gpu_layers >= 0 && gpu_budget) {
        fprintf(stderr, "hypura plan: error: options -ngl and --gpu-budget: give one of them\n");
        return 2;
    }

    struct gguf_ctx *g = NULL;
    if ((st = gguf_open(path, &g))) return cli_fail("plan", st);
    struct model_info mi;
    if ((st = model_info_init(&mi, g))) {
        gguf_free(g);
        return cli_fail("plan", st);
    }

    struct plan_hw hw;
    cli_plan_hw(&hw, disk_gbs, mem_gbs, hw_source, sizeof hw_source);
    if (n_threads) hw.n_threads = (int)n_threads;
    fprintf(stderr, "hypura plan: hardware from %s\n", hw_source);

    bool clamped = false;
    uint64_t budget = plan_ram_budget(ram_budget, hw.ram_available_bytes, hw.cgroup_limit_bytes, &clamped);
    char a[32], b[32], l[32];
    if (clamped)
        fprintf(stderr, "hypura plan: RAM budget %s lowered to %s: the cgroup memory limit is %s\n",
                fmt(ram_budget, a), fmt(budget, b), fmt(hw.cgroup_limit_bytes, l));
    /* a GPU from the flags: --gpu-mem, or one of --gpu-budget's size */
    if (gpu_mem || gpu_budget) {
        hw.n_gpu = 1;
        hw.gpu_mem_bytes = gpu_mem ? gpu_mem : gpu_budget;
        if (!gpu_budget) gpu_budget = gpu_mem - plan_headroom_bytes(gpu_mem);
        if (gpu_budget > hw.gpu_mem_bytes) {
            fprintf(stderr, "hypura plan: GPU budget %s lowered to the GPU's memory %s\n", fmt(gpu_budget, a),
                    fmt(hw.gpu_mem_bytes, b));
            gpu_budget = hw.gpu_mem_bytes;
        }
    }
    if (!n_ctx) n_ctx = mi.hp.n_ctx_train > 0 && mi.hp.n_ctx_train < DEFAULT_CTX ? mi.hp.n_ctx_train : DEFAULT_CTX;

    /* the compute buffers a run holds beside the weights and the KV cache
     * (an F16 KV cache, one sequence, as run has them by default); with
     * -ngl, as a run has them at the device's default budget (the GEMM tile
     * follows it: --gpu-mem's, or a device of 64 GiB, whose tile any device
     * of 2 GiB or more has) */
    uint64_t work = 0, gpu_work = 0;
    const uint64_t tile_budget = n_gpu_layers < 0 || gpu_mem ? gpu_budget : (uint64_t)64 << 30;
    if ((st = engine_plan_work(&mi, n_ctx, n_batch, FORWARD_DEFAULT_KV_TYPE, tile_budget, &work,
                               &gpu_work))) {
        model_info_free(&mi);
        gguf_free(g);
        return cli_fail("plan", st);
    }
    if (n_gpu_layers >= 0) {
        /* -ngl: the budget of llama.cpp's offload of that many layers */
        const uint64_t want =
            plan_gpu_layers_budget(&mi, plan_kv_bytes(&mi.hp, n_ctx), gpu_work, n_gpu_layers);
        if (!want && !gpu_mem) {
            fprintf(stderr,
                    "hypura plan: error: -ngl %" PRId64
                    " takes every layer: give the GPU's memory (--gpu-mem)\n",
                    n_gpu_layers);
            model_info_free(&mi);
            gguf_free(g);
            return 2;
        }
        if (want && (!gpu_mem || want < gpu_budget)) gpu_budget = want;
        if (!gpu_mem) {
            hw.n_gpu = 1;
            hw.gpu_mem_bytes = gpu_budget;
        }
        fprintf(stderr, "hypura plan: -ngl %" PRId64 ": GPU budget %s\n", n_gpu_layers,
                fmt(gpu_budget, a));
    }
    struct plan_params pp = {.ram_budget_bytes = budget, .gpu_budget_bytes = gpu_budget, .n_ctx = n_ctx,
                             .compute_bytes = work, .gpu_compute_bytes = gpu_work};
    struct plan p;
    if ((st = plan_init(&p, &mi, &hw, &pp))) {
        model_info_free(&mi);
        gguf_free(g);
        return cli_fail("plan", st);
    }
    if (json) {
        json_t *o = plan_json(&mi, &p, &hw, path);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
    } else {
        print_text(&mi, &p, &hw, path);
    }
    plan_free(&p);
    model_info_free(&mi);
    gguf_free(g);
    return 0;
}
