/*
 * Deterministic pseudo-random numbers (xoshiro256** seeded by splitmix64):
 * the same seed gives the same stream on every platform, which synthetic
 * models and tests depend on. Not for cryptography.
 */
#ifndef HY_CORE_RNG_H
#define HY_CORE_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

void rng_init(struct rng *r, uint64_t seed);
uint64_t rng_u64(struct rng *r);
/* Uniform in [0, 1). */
double rng_uniform(struct rng *r);
/* Uniform integer in [0, n), n > 0. */
uint64_t rng_below(struct rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
double rng_normal(struct rng *r);
/* Fisher-Yates shuffle of perm[0..n). */
void rng_shuffle(struct rng *r, int *perm, int n);

#endif
