/*
 * Synthetic models: random weights at a real model's shape, written as GGUF
 * that llama.cpp's loader accepts. They exercise every code path (sizes,
 * placement, streaming, MoE routing) without a download; their text is noise.
 *
 * Weights are Gaussian with scales that keep activations of order one through
 * the layers: projections N(0, 1/fan_in), layer outputs scaled down by
 * sqrt(n_layer) so the residual stream stays dominated by the token
 * embedding. Norm weights are 1, but for a tied head (--tied) the output
 * norm's, 1/sqrt(n_embd): the head then reads token_embd (unit variance)
 * and its logits keep the untied head's scale.
 *
 * MoE routing realism. Real routers are far from uniform: a few experts of a
 * layer take a large share of the tokens, and the experts a token picks in
 * layer l say a lot about the ones it picks in layer l+1. Both are built into
 * the router weights (ffn_gate_inp, kept in F32 as llama.cpp keeps it):
 *   - every token embedding carries a shared direction u; the router row of
 *     expert e is z_e / sqrt(n_embd) + b_e * u / (u . h_mean), so its logit is
 *     (token-dependent part, std ~1) + b_e. The offsets b_e ~ N(0, skew²)
 *     (--route-skew) make some experts popular;
 *   - layer l+1's rows are a random permutation of layer l's, mixed with fresh
 *     noise: z' = corr * z + sqrt(1 - corr²) * fresh (same for b), with
 *     corr = --route-corr. Since the hidden state changes slowly across
 *     layers, a token's choice in l+1 follows its choice in l through the
 *     permutation, which a co-activation predictor can learn.
 * synth_route_stats() measures what that gives on the embedding directions
 * (top-20% share, layer-to-layer agreement), so the report states outcomes,
 * not just parameters.
 *
 * Determinism: chunk j of tensor i (whole rows, about 1M values) comes from a
 * generator seeded by (seed, i, j), so the output does not depend on the
 * number of threads that generate and quantize the chunks.
 */
#ifndef HY_MODEL_SYNTH_H
#define HY_MODEL_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"
#include "model/quant_mix.h"

struct synth_config {
    const char *arch;  /* "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe" */
    const char *name;  /* general.name */
    int64_t n_embd;
    int64_t n_ff;      /* dense FFN width (also written for MoE archs) */
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;  /* 0: n_embd / n_head */
    int64_t n_layer;
    int64_t n_vocab;
    int64_t n_ctx;
    int64_t n_expert;  /* 0: dense */
    int64_t n_expert_used;
    int64_t n_ff_exp;  /* expert FFN width */
    int64_t n_ff_shexp; /* shared expert FFN width (qwen2moe) */
    double rope_base;
    double rms_eps;
    bool tied_output;  /* no output.weight: the head reuses token_embd */
    enum quant_mix_ftype ftype; /* file type: the matrices' types follow llama.cpp's mixture (quant_mix.h) */
    uint64_t seed;
    int n_threads;     /* threads generating and quantizing (0: 1), at most SYNTH_MAX_THREADS */
    double route_skew; /* std of the per-expert router logit offsets, in units of the token-dependent std */
    double route_corr; /* correlation of router rows between consecutive layers, in [0, 1] */
    /* each layer tensor's first rows (SYNTH_REPEAT_ELEMS values, whole rows)
     * made once and their bytes repeated through it (routers, the token
     * embeddings and the output head made in full, so that tokens still
     * have distinct logits): for speed measurements, whose times do not
     * depend on the values, at a fraction of the generation's time */
    bool repeat;
};

#define SYNTH_MAX_THREADS 256
#define SYNTH_REPEAT_ELEMS       (1u << 16)
#define SYNTH_DEFAULT_ROUTE_SKEW 0.4
#define SYNTH_DEFAULT_ROUTE_CORR 0.7

struct synth_preset {
    const char *like; /* "--like" name */
    const char *desc;
    struct synth_config cfg;
};

/* Preset by name, or NULL. */
const struct synth_preset *synth_find_preset(const char *like);
const struct synth_preset *synth_presets(int *n);

/* Checks a configuration; HY_ERR_INVALID_ARG naming the field and value. */
HY_MUST_CHECK enum hy_status synth_validate(const struct synth_config *cfg);

/* Bytes of the GGUF file that synth_write would produce. */
HY_MUST_CHECK enum hy_status synth_file_bytes(const struct synth_config *cfg, uint64_t *out);

/* The file's header alone (key/values, tensor directory, padding up to the
 * data section) in a new malloc'd buffer *out (*out_bytes long, free with
 * free()), and the size the whole file would have in *file_bytes. With a
 * source that reads zeros past the header, gguf_parse and model_info_init
 * then see the full-size model without its weights: plans and size reports
 * for 70B shapes in tests. Errors as synth_validate. */
HY_MUST_CHECK enum hy_status synth_header(const struct synth_config *cfg, void **out, uint64_t *out_bytes,
                                          uint64_t *file_bytes);

struct synth_route_stats {
    double top20_share;    /* share of selections taken by the 20% most popular experts, mean over layers */
    double uniform_top20;  /* the same for uniform routing */
    double next_layer_hit; /* fraction of layer l+1 picks predicted by mapping layer l picks through the permutation */
    double uniform_hit;    /* the same for independent uniform routing: k / E */
};

typedef void (*synth_progress_fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);

/* Writes the model to path (refusing an existing file unless force; the file
 * appears under its name only when complete). Fills *stats for MoE configs
 * (zeros otherwise). Errors: HY_ERR_INVALID_ARG (config), HY_ERR_EXISTS,
 * HY_ERR_IO. */
HY_MUST_CHECK enum hy_status synth_write(const struct synth_config *cfg, const char *path, bool force,
                                         synth_progress_fn progress, void *user,
                                         struct synth_route_stats *stats);

#endif
