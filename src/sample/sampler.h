/*
 * Picks the next token from logits.
 *
 * temp <= 0: greedy (the highest logit after the repetition penalty; ties to
 * the lower id). Otherwise, in llama.cpp's default order:
 *   1. repetition penalty on the last repeat_last_n accepted tokens: a
 *      positive logit is divided by the penalty, a negative one multiplied;
 *   2. top-k: keep the k highest logits (k <= 0: all);
 *   3. top-p: keep the smallest prefix, by descending probability, whose mass
 *      reaches top_p (at least one token);
 *   4. min-p: keep the tokens whose probability is at least min_p times the
 *      largest;
 *   5. temperature: softmax(logit / temp) over what is left, and draw with
 *      the seeded generator (the same seed and logits give the same tokens).
 * Probabilities in 3 and 4 are those of the untempered logits.
 *
 * Memory: sized for n_vocab at init; sampling allocates nothing.
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
    int32_t repeat_last_n; /* tokens the penalty looks back over; 0: off */
    uint64_t seed;
};

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalty. */
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
    int32_t *recent;           /* owned, ring of the last repeat_last_n accepted ids */
    int32_t n_recent;
    int32_t recent_head;
    struct rng rng;
};

/* Errors: HY_ERR_INVALID_ARG naming a parameter out of range (top_p and
 * min_p in [0, 1], penalty > 0, repeat_last_n >= 0, n_vocab >= 1). */
HY_MUST_CHECK enum hy_status sampler_init(struct sampler *s, int32_t n_vocab,
                                          const struct sampler_params *p);
void sampler_free(struct sampler *s);

/* Records a token for the repetition penalty (prompt tokens too). */
void sampler_accept(struct sampler *s, int32_t id);

/* The next token for logits[0..n_vocab) (not modified). */
int32_t sampler_sample(struct sampler *s, const float *logits);

#endif
