/*
 * The forward pass of every architecture in the arch table (llama: Llama 2/3,
 * Mistral, Mixtral; qwen2, qwen3, qwen2moe, qwen3moe), written as backend
 * ops over a KV cache:
 *
 *   x = token_embd[tokens]
 *   per layer:  q, k, v = W_q · norm(x) (+ b_q), W_k · norm(x) (+ b_k), W_v · norm(x) (+ b_v)
 *               q, k = qk_norm(q), qk_norm(k)          (ARCH_QK_NORM: RMSNorm per head)
 *               x += W_o · attention(rope(q), rope(k), v)
 *               x += FFN(norm(x))      dense: W_down · (silu(W_gate · h) * (W_up · h))
 *                                      MoE:   sum over the top-k experts e of w_e · FFN_e(h)
 *                                             + sigmoid(g_shexp · h) · FFN_shexp(h)
 *                                               (ARCH_SHARED_EXPERT)
 *   logits = W_out · norm(x)   (last token only; W_out is token_embd when the
 *                               file has no output.weight)
 *
 * The architecture only switches these optional pieces on through its arch
 * flags (arch.h); there is one graph. Biases are added when the layer has
 * them (ARCH_QKV_BIAS binds them when present).
 *
 * RMSNorm with the model's epsilon; grouped-query attention (query head h
 * reads KV head h / (n_head / n_head_kv)) with scores scaled by
 * 1/sqrt(head_dim); a KV cache of n_ctx positions per layer in F32, F16 or
 * Q8_0 (forward_config.kv_type; the attention op computes on the cache in
 * its type as llama.cpp does, see backend.h).
 *
 * RoPE, resolved from the metadata at init as llama.cpp resolves it:
 * adjacent pairs (NeoX halves for architectures flagged so) over the first
 * rope.dimension_count dims of each head (the rest pass through), base
 * rope.freq_base; linear position scaling when <arch>.rope.scaling.type is
 * "linear" (or absent) with the factor <arch>.rope.scaling.factor, or the
 * legacy <arch>.rope.scale_linear; "none" means no scaling, and YaRN or
 * LongRoPE are refused (not implemented). A rope_freqs.weight tensor (Llama
 * 3.1's frequency factors, F32 [n_rot / 2]) divides each pair's frequency.
 * That tensor is not a role of the model's binding table, so forward_init
 * reads its few bytes from the file itself.
 *
 * MoE routing, as llama.cpp's build_moe_ffn with softmax gating: router
 * logits = ffn_gate_inp · h, softmax over all experts, the k most probable
 * (ties: the lower id), their probabilities renormalised to sum 1 (Mixtral,
 * qwen3moe) or used as they are (ARCH_MOE_NO_RENORM: qwen2moe). A batch is grouped by expert: each
 * chosen expert's weights are acquired once and applied to all the tokens
 * that chose it, in ascending expert order. Every decision is recorded in
 * struct forward_routes and counted per layer and expert.
 *
 * Batches. forward_eval takes any number of tokens and evaluates them in
 * steps of up to n_batch tokens, each step as one batch through every op
 * (causal attention inside the batch). Every output element is computed the
 * same way whatever the batch size, so evaluating a prompt in one call and
 * token by token gives bit-identical logits.
 *
 * Logits: of the last token of a call (forward_eval), or with
 * forward_config.logits_all of every token of a step (forward_eval_all, for
 * perplexity); each token's logits are computed the same way in both.
 *
 * Memory: all buffers (KV cache, activations for n_batch tokens, logits) are
 * allocated by forward_init from the worst case; forward_eval allocates
 * nothing. Weights are acquired from the model right before each use and
 * released right after (see model.h), never held across layers.
 *
 * Threads: one forward per thread at a time; the backend parallelises inside
 * ops.
 */
#ifndef HY_MODEL_FORWARD_H
#define HY_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

#define FORWARD_DEFAULT_BATCH 512
/* The KV cache type commands use unless told otherwise: llama.cpp's default,
 * half the memory of F32 (the zero value of forward_config.kv_type). */
#define FORWARD_DEFAULT_KV_TYPE HY_TYPE_F16

struct forward_config {
    int64_t n_ctx;   /* KV cache length in tokens, >= 1 */
    int64_t n_batch; /* tokens per step; 0: FORWARD_DEFAULT_BATCH; clamped to n_ctx */
    /* enum hy_type of the K and V caches: HY_TYPE_F32 (the zero value), HY_TYPE_F16
     * (llama.cpp's default, and the CLI's) or HY_TYPE_Q8_0 (head dims multiples of 32) */
    uint32_t kv_type;
    bool logits_all; /* size for forward_eval_all: logits of every token of a step */
};

/* Router decisions. ids and weights hold the last step of forward_eval (all
 * tokens of a call of at most n_batch tokens); counts accumulate. */
struct forward_routes {
    int64_t n_layer;  /* layers with a router: every layer of an MoE model, 0 for a dense one */
    int64_t n_expert; /* experts per layer */
    int64_t n_used;   /* experts chosen per token (k) */
    int64_t pos0;     /* position of the first token of the last step */
    int64_t n_tok;    /* tokens of the last step */
    /* owned, [n_batch][n_layer][n_used]: token t of the step, layer l, choice j is at
     * [(t * n_layer + l) * n_used + j]; choices in descending probability */
    int32_t *ids;
    /* owned, same layout: the weights applied, renormalised to sum 1 over j, or
     * the softmax probabilities themselves for ARCH_MOE_NO_RENORM */
    float *weights;
    uint64_t *counts; /* owned, [n_layer][n_expert]: selections since init or forward_reset_stats */
    uint64_t n_routed; /* tokens routed since then (each token once, not once per layer) */
};

struct forward;

/* Sizes and allocates everything for a model: checks that the backend
 * supports every weight's type, resolves RoPE from the metadata, reserves
 * backend scratch, allocates the KV cache and activations. The model's
 * weights need not be loaded yet (they are first touched by forward_eval).
 * m and be are borrowed and must outlive the forward. Errors:
 * HY_ERR_INVALID_ARG (config: sizes, a KV type other than F32/F16/Q8_0),
 * HY_ERR_UNSUPPORTED (a weight type the backend cannot compute on, naming the
 * tensor; Q8_0 KV with head dims that are not multiples of 32; a RoPE scaling
 * type other than none/linear, naming the key and value), HY_ERR_FORMAT (a
 * bad scaling factor or rope_freqs.weight, naming it), HY_ERR_IO (reading
 * rope_freqs.weight), HY_ERR_OOM (naming the buffer and its size). */
HY_MUST_CHECK enum hy_status forward_init(struct model *m, struct backend *be,
                                          const struct forward_config *cfg, struct forward **out);

void forward_free(struct forward *f);

/* Evaluates tokens[0..n) at positions n_past .. n_past + n - 1, appends them to
 * the KV cache and sets *logits to the last token's logits (host memory,
 * n_vocab floats, valid until the next call). Errors: HY_ERR_INVALID_ARG (n <
 * 1, a token id outside the vocabulary, or the context would overflow
 * n_ctx; nothing is evaluated then), or what model_acquire returns. */
HY_MUST_CHECK enum hy_status forward_eval(struct forward *f, const int32_t *tokens, int64_t n,
                                          const float **logits);

/* Like forward_eval, for sampling's candidates: where the backend picks the
 * best logits itself (a GPU's top_k op) and 1 <= k <= min(n_vocab,
 * BACKEND_TOP_K_MAX), only the k best come down: ids[0..k) and vals[0..k)
 * as that op orders them (descending, ties to the lower id), *n_top = k and
 * *logits NULL. Otherwise (k = 0 among them, or HYPURA_DEVICE_TOP_K=0 in
 * the environment when the forward was made) as forward_eval, *n_top = 0. */
HY_MUST_CHECK enum hy_status forward_eval_top(struct forward *f, const int32_t *tokens, int64_t n,
                                              int k, int32_t *ids, float *vals, int *n_top,
                                              const float **logits);

/* Like forward_eval for n <= the step size (forward_config.n_batch after
 * clamping) tokens evaluated as one step, but *logits gets every token's
 * logits: [n][n_vocab] host memory, row i for tokens[i], valid until the next
 * call. Errors: those of forward_eval, and HY_ERR_INVALID_ARG when the
 * forward was not made with logits_all or n exceeds the step size. */
HY_MUST_CHECK enum hy_status forward_eval_all(struct forward *f, const int32_t *tokens, int64_t n,
                                              const float **logits);

/* Tokens evaluated per step (forward_config.n_batch after defaults and clamping). */
int64_t forward_n_batch(const struct forward *f);

/* Rows of logits a step keeps: forward_n_batch with logits_all, else 1. */
int64_t forward_logit_rows(const struct forward *f);

/* Length of a logits row (the model's n_vocab). */
int64_t forward_n_vocab(const struct forward *f);

/* Tokens in the KV cache. */
int64_t forward_n_past(const struct forward *f);
int64_t forward_n_ctx(const struct forward *f);
/* Bytes of the KV cache (K and V, all layers). */
uint64_t forward_kv_bytes(const struct forward *f);
/* Bytes forward_init allocated: the KV cache, activations and logits (the
 * backend's own scratch not included: backend_scratch_bytes). */
uint64_t forward_buffer_bytes(const struct forward *f);

/* What forward_init allocates for a model with header info mi and config
 * cfg, from the header alone (hypura plan; the engine measures instead):
 * forward_init checks that it allocated exactly this. */
struct forward_sizes {
    uint64_t kv_bytes;     /* the K and V caches (through the backend) */
    uint64_t device_bytes; /* everything through the backend: KV cache, activations, logits */
    uint64_t host_bytes;   /* the logits' host copy */
    int64_t n_batch;       /* the batch after clamping */
    struct backend_limits lim; /* what forward_init reserves the backend for */
};
HY_MUST_CHECK enum hy_status forward_sizes_of(const struct model_info *mi,
                                              const struct forward_config *cfg,
                                              struct forward_sizes *out);
/* enum hy_type of the KV cache. */
uint32_t forward_kv_type(const struct forward *f);
/* The RoPE the model runs with (resolved from its metadata); valid for the forward's lifetime. */
const struct backend_rope *forward_rope(const struct forward *f);

/* Empties the KV cache (the next token is at position 0). */
void forward_reset(struct forward *f);

/* Keeps the first n_past tokens of the KV cache and forgets the rest (the
 * next token is at position n_past): a sequence that shares a prefix with the
 * cached one re-evaluates only what differs. n_past at or above the tokens in
 * the cache changes nothing; below 0 it is taken as 0. The entries past it
 * are not cleared: attention never reads beyond the current position, and
 * the next eval overwrites them. */
void forward_truncate(struct forward *f, int64_t n_past);

/* Router decisions and counters; valid for the forward's lifetime. */
const struct forward_routes *forward_routes(const struct forward *f);

/* Zeroes the selection counters. */
void forward_reset_stats(struct forward *f);

#endif
