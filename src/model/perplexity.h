/*
 * Perplexity of a model on a token sequence, by the protocol of llama.cpp's
 * llama-perplexity (tools/perplexity, its default mode), so that the numbers
 * compare with its:
 *
 *   - the text, tokenized with BOS when the vocabulary adds one, is cut into
 *     n_chunk = n_tokens / n_ctx chunks of n_ctx tokens (the tail is dropped);
 *   - each chunk is evaluated from an empty KV cache, its first token
 *     replaced by BOS (when the vocabulary adds one);
 *   - only the second half is scored: the logits at positions
 *     n_ctx/2 .. n_ctx-2 predict the tokens that follow them, so every scored
 *     token has at least n_ctx/2 tokens of context;
 *   - a token's negative log-likelihood is log(sum_j exp(l_j - max)) + max - l_tok,
 *     the sum in double over float exponentials as llama.cpp computes it;
 *   - PPL = exp(mean nll); its error estimate is llama.cpp's:
 *     sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)) * PPL.
 *
 * Not here: llama.cpp's other modes (strided perplexity, KL divergence,
 * HellaSwag, ...), and evaluating several chunks as parallel sequences in
 * one batch (it changes nothing in the result).
 */
#ifndef HY_MODEL_PERPLEXITY_H
#define HY_MODEL_PERPLEXITY_H

#include <stdint.h>

#include "model/forward.h"

struct perplexity_params {
    int64_t n_ctx;    /* tokens per chunk, >= 4; the forward's context must hold them */
    int64_t n_chunks; /* chunks to evaluate; <= 0: every whole chunk of the text */
    int32_t bos_id;   /* put in place of each chunk's first token; -1: none */
    int n_threads;    /* threads scoring a step's logits rows; <= 1: the caller alone */
};

struct perplexity_result {
    int64_t n_chunks; /* evaluated */
    int64_t n_scored; /* tokens scored */
    double nll;       /* mean negative log-likelihood, nats per token */
    double ppl;       /* exp(nll) */
    double ppl_err;   /* llama.cpp's error estimate; 0 when the variance came out <= 0 */
};

/* Called after each chunk with the running estimate (exp of the mean nll so far). */
typedef void (*perplexity_progress_fn)(void *user, int64_t chunk, int64_t n_chunks, double ppl);

/* Evaluates tokens[0..n_tokens) chunk by chunk on f, which must have been
 * made with logits_all and a context of at least p->n_ctx (the KV cache is
 * reset before each chunk; chunks go through f in steps of its batch size).
 * progress may be NULL. Allocates one chunk of tokens per call, nothing per
 * token. Errors: HY_ERR_INVALID_ARG (n_ctx < 4 or beyond the forward's
 * context, a forward without logits_all, fewer than 2 * n_ctx tokens, as
 * llama.cpp requires, a token or bos_id outside the vocabulary), or what
 * forward_eval_all returns. */
HY_MUST_CHECK enum hy_status perplexity_eval(struct forward *f, const int32_t *tokens,
                                             int64_t n_tokens, const struct perplexity_params *p,
                                             perplexity_progress_fn progress, void *user,
                                             struct perplexity_result *out);

#endif
