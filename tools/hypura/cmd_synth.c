/*
 * hypura synth -o OUT.gguf [--like PRESET] [shape flags] [--type TYPE] ...
 *
 * Writes a random-weight model (see src/model/synth.h). Explicit shape flags
 * override the preset's values.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "model/synth.h"
#include "quant/quant.h"

static void synth_help(void)
{
    int n;
    const struct synth_preset *p = synth_presets(&n);
    printf("usage: hypura synth -o OUT.gguf [options]\n\n"
           "Writes a GGUF model with random weights at a real model's shape, with a built-in\n"
           "SentencePiece-style vocabulary. Its generated text is noise: it exists to exercise\n"
           "sizes, placement, streaming and MoE routing without a download.\n\n"
           "options:\n"
           "  -o, --output FILE     output path (required); refuses to overwrite without --force\n"
           "  --like PRESET         start from a real model's shape (default: tiny-llama); the\n"
           "                        options from --arch to --rope-base default to its values\n"
           "  --arch NAME           architecture: llama, qwen2, qwen3, qwen2moe, qwen3moe\n"
           "  --embd N              embedding length\n"
           "  --ff N                dense feed-forward length (llama MoE: also the expert width)\n"
           "  --heads N             attention heads\n"
           "  --kv-heads N          key/value heads (GQA)\n"
           "  --head-dim N          head dimension (default: the preset's; embd / heads where it\n"
           "                        has none, or with --embd or --heads)\n"
           "  --layers N            number of layers (scales a preset down or up)\n"
           "  --vocab N             vocabulary size (at least 354)\n"
           "  --ctx N               training context length written to the file\n"
           "  --experts N           routed experts per layer (0: dense)\n"
           "  --experts-used N      experts chosen per token\n"
           "  --expert-ff N         expert feed-forward length\n"
           "  --shared-ff N         shared expert feed-forward length (qwen2moe)\n"
           "  --rope-base X         RoPE frequency base\n"
           "  --tied                no output.weight: the output head reuses token_embd\n"
           "                        (default: off)\n"
           "  --type TYPE           file type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k,\n"
           "                        q3_k_m, q4_k_m, q5_k_m, q6_k (default: f16). Matrices get the\n"
           "                        per-tensor types llama.cpp's quantizer gives that file type;\n"
           "                        norms, biases and the router stay f32\n"
           "  --seed N              random seed (default: 1); the same seed gives the same file\n"
           "  -t, --threads N       threads generating and quantizing (default: physical cores, here %d);\n"
           "                        the file does not depend on it\n"
           "  --route-skew X        expert popularity skew: std of per-expert router offsets in units\n"
           "                        of the token-dependent logit std (default: %.1f; 0 = uniform)\n"
           "  --route-corr X        correlation of routers between consecutive layers, 0..1 (default: %.1f)\n"
           "  --repeat              each layer tensor's first %u values (whole rows) made once\n"
           "                        and repeated through it: a large shape in a fraction of the\n"
           "                        time, for speed measurements (routers, token embeddings and\n"
           "                        the output head are made in full; default: off)\n"
           "  --force               overwrite OUT if it exists (default: off)\n"
           "  --list-presets        list the presets and exit\n"
           "  -h, --help            show this help\n\npresets:\n",
           cli_physical_cores(), SYNTH_DEFAULT_ROUTE_SKEW, SYNTH_DEFAULT_ROUTE_CORR,
           SYNTH_REPEAT_ELEMS);
    for (int i = 0; i < n; i++) printf("  %-20s %s\n", p[i].like, p[i].desc);
}

static void synth_progress(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    cli_progress("writing", done, total);
}

struct override {
    bool set;
    int64_t v;
};

int cmd_synth(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "synth", argc - 1, argv + 1);
    const char *out = NULL, *like = NULL, *arch = NULL, *type_name = NULL;
    bool force = false, tied = false, list = false, repeat = false;
    struct override embd = {0}, ff = {0}, heads = {0}, kv = {0}, hd = {0}, layers = {0}, vocab = {0}, ctx = {0},
                    experts = {0}, used = {0}, eff = {0}, sff = {0}, seed = {0}, threads = {0};
    double rope = 0, skew = -1, corr = -1;
    enum hy_status st = HY_OK;
    const int64_t big = (int64_t)1 << 40;
    while (cli_more(&c) && !st) {
        if (cli_match(&c, "-h", "--help")) {
            synth_help();
            return 0;
        }
        struct {
            const char *name;
            struct override *o;
            int64_t lo;
        } ints[] = {{"--embd", &embd, 1},      {"--ff", &ff, 1},           {"--heads", &heads, 1},
                    {"--kv-heads", &kv, 1},    {"--head-dim", &hd, 1},     {"--layers", &layers, 1},
                    {"--vocab", &vocab, 1},    {"--ctx", &ctx, 1},         {"--experts", &experts, 0},
                    {"--experts-used", &used, 1}, {"--expert-ff", &eff, 1}, {"--shared-ff", &sff, 1},
                    {"--seed", &seed, 0},         {"--threads", &threads, 1}};
        bool matched = false;
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]) && !matched; i++) {
            if (cli_match(&c, NULL, ints[i].name)) {
                matched = true;
                st = cli_int(&c, ints[i].lo, big, &ints[i].o->v);
                ints[i].o->set = true;
            }
        }
        if (matched) continue;
        if (cli_match(&c, "-t", NULL)) {
            st = cli_int(&c, 1, SYNTH_MAX_THREADS, &threads.v);
            threads.set = true;
        } else if (cli_match(&c, "-o", "--output")) st = cli_value(&c, &out);
        else if (cli_match(&c, NULL, "--like")) st = cli_value(&c, &like);
        else if (cli_match(&c, NULL, "--arch")) st = cli_value(&c, &arch);
        else if (cli_match(&c, NULL, "--type")) st = cli_value(&c, &type_name);
        else if (cli_match(&c, NULL, "--rope-base")) st = cli_double(&c, 1.0, 1e12, &rope);
        else if (cli_match(&c, NULL, "--route-skew")) st = cli_double(&c, 0.0, 10.0, &skew);
        else if (cli_match(&c, NULL, "--route-corr")) st = cli_double(&c, 0.0, 1.0, &corr);
        else if (cli_match(&c, NULL, "--tied")) tied = true;
        else if (cli_match(&c, NULL, "--repeat")) repeat = true;
        else if (cli_match(&c, NULL, "--force")) force = true;
        else if (cli_match(&c, NULL, "--list-presets")) list = true;
        else st = cli_unknown(&c);
    }
    if (st) return cli_fail("synth", st);
    if (list) {
        int n;
        const struct synth_preset *p = synth_presets(&n);
        for (int i = 0; i < n; i++) printf("%-20s %s\n", p[i].like, p[i].desc);
        return 0;
    }
    if (!out) return cli_fail("synth", err_set(HY_ERR_INVALID_ARG, "no output given (-o OUT.gguf)"));

    const struct synth_preset *preset = synth_find_preset(like ? like : "tiny-llama");
    if (!preset) {
        int n;
        const struct synth_preset *p = synth_presets(&n);
        char names[512] = "";
        for (int i = 0; i < n; i++) {
            strncat(names, p[i].like, sizeof(names) - strlen(names) - 1);
            if (i + 1 < n) strncat(names, ", ", sizeof(names) - strlen(names) - 1);
        }
        return cli_fail("synth", err_set(HY_ERR_INVALID_ARG, "unknown preset '%s' (known: %s)", like, names));
    }
    struct synth_config cfg = preset->cfg;
    char name[128];
    if (arch) cfg.arch = arch;
    if (embd.set) cfg.n_embd = embd.v;
    if (ff.set) cfg.n_ff = ff.v;
    if (heads.set) cfg.n_head = heads.v;
    if (kv.set) cfg.n_head_kv = kv.v;
    else if (heads.set && cfg.n_head % cfg.n_head_kv != 0) cfg.n_head_kv = cfg.n_head;
    if (hd.set) cfg.head_dim = hd.v;
    else if (embd.set || heads.set) cfg.head_dim = 0;
    if (layers.set) cfg.n_layer = layers.v;
    if (vocab.set) cfg.n_vocab = vocab.v;
    if (ctx.set) cfg.n_ctx = ctx.v;
    if (experts.set) cfg.n_expert = experts.v;
    if (used.set) cfg.n_expert_used = used.v;
    if (cfg.n_expert > 0 && cfg.n_expert_used == 0) cfg.n_expert_used = cfg.n_expert >= 2 ? 2 : 1;
    if (eff.set) {
        cfg.n_ff_exp = eff.v;
        /* llama (Mixtral) stores the expert width as feed_forward_length */
        if (!strcmp(cfg.arch, "llama") && !ff.set) cfg.n_ff = eff.v;
    }
    if (cfg.n_expert > 0 && cfg.n_ff_exp == 0) cfg.n_ff_exp = cfg.n_ff;
    if (sff.set) cfg.n_ff_shexp = sff.v;
    if (rope > 0) cfg.rope_base = rope;
    if (tied) cfg.tied_output = true;
    cfg.repeat = repeat;
    if (seed.set) cfg.seed = (uint64_t)seed.v;
    cfg.n_threads = threads.set ? (int)threads.v : cli_physical_cores();
    if (skew >= 0) cfg.route_skew = skew;
    if (corr >= 0) cfg.route_corr = corr;
    if (type_name) {
        if (!quant_mix_ftype_from_name(type_name, &cfg.ftype))
            return cli_fail("synth", err_set(HY_ERR_INVALID_ARG, "--type '%s' is not one of: %s", type_name,
                                             quant_mix_ftype_names()));
    }
    snprintf(name, sizeof name, "%s%s%s", preset->cfg.name, layers.set ? " (layers rescaled)" : "",
             repeat ? " (rows repeated)" : "");
    cfg.name = name;

    uint64_t bytes = 0;
    if ((st = synth_file_bytes(&cfg, &bytes))) return cli_fail("synth", st);
    char a[32], b[32];
    /* check the free space of the output's directory up front */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    else snprintf(dir, sizeof dir, ".");
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (avail < bytes)
            return cli_fail("synth", err_set(HY_ERR_IO, "%s: needs %s but only %s are free in %s", out,
                                             sizes_format(bytes, a, sizeof a), sizes_format(avail, b, sizeof b), dir));
    }
    fprintf(stderr, "synth: %s-like %s, %" PRId64 " layers, embd %" PRId64 ", ff %" PRId64 ", heads %" PRId64 "/%" PRId64
            ", vocab %" PRId64, preset->like, cfg.arch, cfg.n_layer, cfg.n_embd, cfg.n_ff, cfg.n_head, cfg.n_head_kv,
            cfg.n_vocab);
    if (cfg.n_expert > 0)
        fprintf(stderr, ", experts %" PRId64 " (top-%" PRId64 ", ff %" PRId64 ")", cfg.n_expert, cfg.n_expert_used,
                cfg.n_ff_exp);
    fprintf(stderr, ", %s, %s\n", type_name ? type_name : "f16", sizes_format(bytes, a, sizeof a));

    struct synth_route_stats rs;
    int64_t t0 = timing_now_us();
    st = synth_write(&cfg, out, force, synth_progress, NULL, &rs);
    cli_progress_end();
    if (st) return cli_fail("synth", st);
    double secs = (double)(timing_now_us() - t0) / 1e6;
    printf("wrote %s: %s in %.1f s (%.0f MiB/s); random weights%s, generated text is noise\n", out,
           sizes_format(bytes, a, sizeof a), secs, secs > 0 ? (double)bytes / 1048576.0 / secs : 0.0,
           repeat ? " in repeated rows" : "");
    if (cfg.n_expert > 0) {
        int64_t top = cfg.n_expert / 5 > 0 ? cfg.n_expert / 5 : 1;
        printf("routing (measured on 512 sampled embedding states): the busiest %" PRId64 " of %" PRId64
               " experts take %.0f%% of picks (uniform: %.0f%%); layer l picks mapped to l+1 hit %.0f%% "
               "(independent routing: %.0f%%)\n",
               top, cfg.n_expert, 100 * rs.top20_share, 100 * rs.uniform_top20, 100 * rs.next_layer_hit,
               100 * rs.uniform_hit);
    }
    return 0;
}
