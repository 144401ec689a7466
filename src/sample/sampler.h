/*
 * Picks the next token from logits, with llama.cpp's samplers in its default
 * order (common/common.h: penalties, top-k, top-p, min-p, temperature, dist):
 *
 *   1. penalties over the last repeat_last_n accepted tokens (prompt tokens
 *      too), once per distinct token that occurs there count > 0 times:
 *      the repeat penalty divides a positive logit and multiplies one <= 0,
 *      then logit -= count * frequency_penalty + presence_penalty;
 *   2. temp <= 0: greedy: the highest penalised logit, ties to the lower id.
 *      Otherwise:
 *   3. top-k: keep the k highest logits (k <= 0: all);
 *   4. top-p: keep the smallest prefix, by descending probability, whose mass
 *      reaches top_p (at least one token);
 *   5. min-p: keep the tokens whose probability is at least min_p times the
 *      largest;
 *   6. temperature: softmax(logit / temp) over what is left, and a draw with
 *      the seeded generator (the same seed and logits give the same tokens;
 *      the stream is not llama.cpp's mt19937, so seeds do not carry over).
 * Probabilities in 4 and 5 are the softmax of the untempered logits of the
 * candidates still in, as llama.cpp computes them.
 *
 * Memory: sized for n_vocab and repeat_last_n at init; sampling and
 * accepting allocate nothing. One sampler per thread.
 */
#ifndef HY_SAMPLE_SAMPLER_H
#define HY_SAMPLE_SAMPLER_H

#include <stdint.h>

#include "core/base.h"
#include "core/rng.h"

struct sampler_params {
    float temp;            /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* tokens the penalties look back over; 0: off */
    uint64_t seed;
    float frequency_penalty; /* subtracted once per occurrence; 0: off */
    float presence_penalty;  /* subtracted once per token present; 0: off */
};

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, the
 * penalties off (1, 0, 0) over the last 64 tokens, seed 0. */
struct sampler_params sampler_default_params(void);

struct sampler_cand {
    int32_t id;
    float logit;
    float p;
};

struct sampler {
    struct sampler_params par;
    int32_t n_vocab;
    struct sampler_cand *cand; /* owned, [n_vocab] */
    float *pen;                /* owned, [n_vocab]: the logits with the penalties applied */
    int32_t *recent;           /* owned, ring of the last repeat_last_n accepted ids */
    int32_t n_recent;
    int32_t recent_head; /* next slot of the ring to write */
    int32_t *count;      /* owned, [n_vocab]: occurrences of each id in the ring */
    struct rng rng;
};

/* Errors: HY_ERR_INVALID_ARG naming a parameter out of range (top_p and
 * min_p in [0, 1], repeat penalty > 0, penalties finite, repeat_last_n >= 0,
 * temp not NaN, n_vocab >= 1). */
HY_MUST_CHECK enum hy_status sampler_init(struct sampler *s, int32_t n_vocab,
                                          const struct sampler_params *p);
void sampler_free(struct sampler *s);

/* Records a token for the penalties (prompt tokens too); ids outside the
 * vocabulary are ignored. */
void sampler_accept(struct sampler *s, int32_t id);

/* Forgets the accepted tokens (a new sequence); the random stream goes on. */
void sampler_reset(struct sampler *s);

/* The next token for logits[0..n_vocab) (not modified). */
int32_t sampler_sample(struct sampler *s, const float *logits);

/* How many of the best logits sampler_sample_top needs for the next token:
 * 1 (greedy) or top_k, plus the tokens in the penalties' window where the
 * penalties are on (they may push that many out of the best), if that is
 * at most max_k and below the vocabulary; or 0 when it needs them all
 * (sampler_sample): no top-k cuts the candidates, or a penalty that can
 * raise a logit (repeat < 1, frequency or presence < 0). Asked after the
 * last sampler_accept before the token is sampled (the window decides). */
int32_t sampler_top_needed(const struct sampler *s, int32_t max_k);

/* The token sampler_sample would pick, from the k = sampler_top_needed best
 * logits only (before the penalties, which it applies to them): ids[i] and
 * their logits vals[i], in descending logit, ties to the lower id. */
int32_t sampler_sample_top(struct sampler *s, const int32_t *ids, const float *vals, int32_t k);

#endif
