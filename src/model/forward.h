/*
 * The llama forward pass (Llama 2/3, Mistral; Mixtral when the model has
 * experts), written as backend ops over a KV cache:
 *
 *   x = token_embd[tokens]
 *   per layer:  x += W_o · attention(rope(W_q · norm(x)), rope(W_k · norm(x)), W_v · norm(x))
 *               x += FFN(norm(x))      dense: W_down · (silu(W_gate · h) * (W_up · h))
 *                                      MoE:   sum over the top-k experts e of w_e · FFN_e(h)
 *   logits = W_out · norm(x)   (last token only)
 *
 * RMSNorm with the model's epsilon; RoPE on adjacent pairs with
 * rope.freq_base over rope.dimension_count dims; grouped-query attention
 * (query head h reads KV head h / (n_head / n_head_kv)) with scores scaled by
 * 1/sqrt(head_dim); an F32 KV cache of n_ctx positions per layer.
 *
 * MoE routing, as Mixtral: router logits = ffn_gate_inp · h, softmax over
 * all experts, the k most probable (ties: the lower id), their
 * probabilities renormalised to sum 1. A batch is grouped by expert: each
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

#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

#define FORWARD_DEFAULT_BATCH 512

struct forward_config {
    int64_t n_ctx;   /* KV cache length in tokens, >= 1 */
    int64_t n_batch; /* tokens per step; 0: FORWARD_DEFAULT_BATCH; clamped to n_ctx */
};

/* Router decisions. ids and weights hold the last step of forward_eval (all
 * tokens of a call of at most n_batch tokens); counts accumulate. */
struct forward_routes {
    int64_t n_layer;  /* layers with a router: every layer of an MoE llama, 0 for a dense model */
    int64_t n_expert; /* experts per layer */
    int64_t n_used;   /* experts chosen per token (k) */
    int64_t pos0;     /* position of the first token of the last step */
    int64_t n_tok;    /* tokens of the last step */
    /* owned, [n_batch][n_layer][n_used]: token t of the step, layer l, choice j is at
     * [(t * n_layer + l) * n_used + j]; choices in descending probability */
    int32_t *ids;
    float *weights;   /* owned, same layout: renormalised weights, summing to 1 over j */
    uint64_t *counts; /* owned, [n_layer][n_expert]: selections since init or forward_reset_stats */
    uint64_t n_routed; /* tokens routed since then (each token once, not once per layer) */
};

struct forward;

/* Sizes and allocates everything for a model: checks that the backend
 * supports every weight's type, reserves backend scratch, allocates the KV
 * cache and activations. The model's weights need not be loaded yet (they
 * are first touched by forward_eval). m and be are borrowed and must outlive
 * the forward. Errors: HY_ERR_INVALID_ARG (config), HY_ERR_UNSUPPORTED (a
 * weight type the backend cannot compute on, naming the tensor), HY_ERR_OOM
 * (naming the buffer and its size). */
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

/* Tokens in the KV cache. */
int64_t forward_n_past(const struct forward *f);
int64_t forward_n_ctx(const struct forward *f);
/* Bytes of the KV cache (K and V, all layers). */
uint64_t forward_kv_bytes(const struct forward *f);

/* Empties the KV cache (the next token is at position 0). */
void forward_reset(struct forward *f);

/* Router decisions and counters; valid for the forward's lifetime. */
const struct forward_routes *forward_routes(const struct forward *f);

/* Zeroes the selection counters. */
void forward_reset_stats(struct forward *f);

#endif
