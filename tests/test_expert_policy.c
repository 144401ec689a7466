/*
 * Expert cache eviction policy (src/store/expert_policy.c): exact behaviour
 * of LRFU and LRU on hand-made sequences, then hit rates of both on a
 * synthetic routing trace with the properties real MoE routing has:
 *   - skewed popularity: per layer, Zipf (s = 1.1) over a random order of
 *     the experts, so every layer has its own hot set;
 *   - temporal locality: each of the previous token's experts at a layer is
 *     chosen again with probability 0.3;
 *   - phase changes (a new topic): every 100 .. 400 tokens, in each layer,
 *     each of the 8 hottest ranks swaps places with a random rank w.p. 0.5.
 * Two shapes: Mixtral-like (32 layers, 8 experts, top-2) and Qwen-MoE-like
 * (24 layers, 64 experts, top-4). The hit rates are printed (for
 * BENCHMARKS.md), with a half-life sweep that justifies the default.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "store/expert_policy.h"

static bool all_but(void *user, int entry)
{
    return entry != *(const int *)user;
}

static bool none(void *user, int entry)
{
    (void)user;
    (void)entry;
    return false;
}

static bool by_mask(void *user, int entry)
{
    return ((const bool *)user)[entry];
}

static void test_exact(void)
{
    /* LRU: oldest first; a pinned entry is skipped; nothing evictable: -1 */
    struct expert_policy *p = expert_policy_new(EXPERT_POLICY_LRU, 4, 1, 1);
    for (int i = 0; i < 4; i++) expert_policy_touch(p, i, (uint64_t)(10 + i));
    expert_policy_touch(p, 0, 20);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), 1);
    int pinned = 1;
    CHECK_EQ_INT(expert_policy_victim(p, 100000, all_but, &pinned), 2);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, none, NULL), -1);
    expert_policy_free(p);

    /* LRFU: fresh entries (never used) go first, ties to the lower index */
    p = expert_policy_new(EXPERT_POLICY_LRFU, 4, 8, 1);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), 0);
    for (int i = 0; i < 4; i++) expert_policy_touch(p, i, 0);
    /* frequency beats recency: 0 used 10 times long ago, 1 once lately */
    for (uint64_t t = 1; t < 10; t++) expert_policy_touch(p, 0, t);
    expert_policy_touch(p, 1, 12);
    expert_policy_touch(p, 2, 12);
    expert_policy_touch(p, 3, 12);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), 1);
    /* a refilled entry has no history: it goes first though it is recent */
    expert_policy_reset(p, 3, 13);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), 3);
    pinned = 3;
    CHECK_EQ_INT(expert_policy_victim(p, 100000, all_but, &pinned), 1);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, none, NULL), -1);
    expert_policy_free(p);

    /* the formula at its boundary (half-life h = 8): two uses at 0 weigh as
     * much as one use at h; a step either way tips it */
    for (int d = -1; d <= 1; d++) {
        p = expert_policy_new(EXPERT_POLICY_LRFU, 2, 8, 1);
        expert_policy_touch(p, 0, 0);
        expert_policy_touch(p, 0, 0);
        expert_policy_touch(p, 1, (uint64_t)(8 + d));
        /* equal value: the later one goes (see expert_policy.h) */
        CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), d <= 0 ? 1 : 0);
        expert_policy_free(p);
    }

    /* a tiny half-life is LRU, on a random sequence with random pins */
    struct rng r;
    rng_init(&r, 7);
    enum { N = 16 };
    struct expert_policy *lrfu = expert_policy_new(EXPERT_POLICY_LRFU, N, 1e-6, 1);
    struct expert_policy *lru = expert_policy_new(EXPERT_POLICY_LRU, N, 1, 1);
    int same = 0, n_cmp = 0;
    bool mask[N];
    for (uint64_t t = 1; t < 3000; t++) {
        int e = (int)rng_below(&r, N);
        if (rng_below(&r, 4) == 0) {
            expert_policy_reset(lrfu, e, t);
            expert_policy_reset(lru, e, t);
        }
        expert_policy_touch(lrfu, e, t);
        expert_policy_touch(lru, e, t);
        for (int i = 0; i < N; i++) mask[i] = rng_below(&r, 3) != 0;
        same += expert_policy_victim(lrfu, t, by_mask, mask) ==
                expert_policy_victim(lru, t, by_mask, mask);
        n_cmp++;
    }
    CHECK_EQ_INT(same, n_cmp);
    expert_policy_free(lrfu);
    expert_policy_free(lru);

    CHECK_EQ_STR(expert_policy_kind_name(EXPERT_POLICY_LRFU), "lrfu");
    CHECK_EQ_STR(expert_policy_kind_name(EXPERT_POLICY_LRU), "lru");
    expert_policy_free(NULL);
}

struct shape {
    const char *name;
    int n_layer, n_expert, k;
};

/* The trace described at the top: int32 [n_tok][n_layer][k]; free() it. */
static int32_t *make_trace(const struct shape *s, int n_tok, uint64_t seed)
{
    int L = s->n_layer, E = s->n_expert, K = s->k;
    struct rng r;
    rng_init(&r, seed);
    double *cdf = malloc((size_t)E * sizeof(*cdf));
    double sum = 0;
    for (int i = 0; i < E; i++) {
        sum += 1.0 / pow(i + 1, 1.1);
        cdf[i] = sum;
    }
    for (int i = 0; i < E; i++) cdf[i] /= sum;
    int *perm = malloc((size_t)L * (size_t)E * sizeof(*perm)); /* [l][rank] → expert */
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < E; i++) perm[l * E + i] = i;
        rng_shuffle(&r, perm + l * E, E);
    }
    int32_t *trace = malloc((size_t)n_tok * (size_t)L * (size_t)K * sizeof(*trace));
    int phase_left = 0;
    for (int t = 0; t < n_tok; t++) {
        if (phase_left-- <= 0) {
            phase_left = 100 + (int)rng_below(&r, 301);
            if (t > 0)
                for (int l = 0; l < L; l++)
                    for (int i = 0; i < HY_MIN(8, E); i++) {
                        if (rng_below(&r, 2)) continue;
                        int j = (int)rng_below(&r, (uint64_t)E), *pl = perm + l * E;
                        int tmp = pl[i];
                        pl[i] = pl[j];
                        pl[j] = tmp;
                    }
        }
        for (int l = 0; l < L; l++) {
            int32_t *cur = trace + ((size_t)t * L + l) * K;
            const int32_t *prev = t > 0 ? cur - (size_t)L * K : NULL;
            int n = 0;
            for (int j = 0; prev && j < K; j++)
                if (rng_uniform(&r) < 0.3) cur[n++] = prev[j];
            while (n < K) {
                double u = rng_uniform(&r);
                int lo = 0, hi = E - 1;
                while (lo < hi) {
                    int mid = (lo + hi) / 2;
                    if (cdf[mid] > u) hi = mid;
                    else lo = mid + 1;
                }
                int32_t e = perm[l * E + lo];
                bool dup = false;
                for (int j = 0; j < n; j++) dup |= cur[j] == e;
                if (!dup) cur[n++] = e;
            }
        }
    }
    free(cdf);
    free(perm);
    return trace;
}

static void test_hit_rates(void)
{
    static const struct shape shapes[] = {
        {"mixtral-like 32x8 top-2", 32, 8, 2},
        {"qwen-moe-like 24x64 top-4", 24, 64, 4},
    };
    static const double fracs[] = {0.125, 0.25, 0.5, 0.75};
    static const double sweep[] = {1, 4, 16, 32, 64, 256, 4096};
    const int n_tok = 3000;
    const double hl = EXPERT_POLICY_HALF_LIFE_TOKENS;
    for (size_t si = 0; si < HY_ARRAY_LEN(shapes); si++) {
        const struct shape *s = &shapes[si];
        int32_t *trace = make_trace(s, n_tok, 1234 + si);
        int all = s->n_layer * s->n_expert;
        printf("%s, %d tokens: hit rate by capacity (share of all %d experts)\n", s->name,
               n_tok, all);
        printf("  capacity      LRU    LRFU(hl=%g)   gain\n", hl);
        for (size_t fi = 0; fi < HY_ARRAY_LEN(fracs); fi++) {
            int cap = (int)(fracs[fi] * all);
            double lru = expert_policy_simulate(EXPERT_POLICY_LRU, cap, 1, trace, n_tok,
                                                s->n_layer, s->k, s->n_expert);
            double lrfu = expert_policy_simulate(EXPERT_POLICY_LRFU, cap, hl, trace, n_tok,
                                                 s->n_layer, s->k, s->n_expert);
            printf("  %4d (%4.1f%%)  %5.1f%%  %5.1f%%       %+5.1f\n", cap, 100 * fracs[fi],
                   100 * lru, 100 * lrfu, 100 * (lrfu - lru));
            /* a clear win where the cache is tight, never a real loss */
            if (fracs[fi] <= 0.5) CHECK(lrfu >= lru + 0.05);
            CHECK(lrfu >= lru - 0.01);
        }
        printf("  LRFU half-life sweep (tokens) at 25%% / 50%%:");
        for (size_t hi = 0; hi < HY_ARRAY_LEN(sweep); hi++) {
            double a = expert_policy_simulate(EXPERT_POLICY_LRFU, all / 4, sweep[hi], trace,
                                              n_tok, s->n_layer, s->k, s->n_expert);
            double b = expert_policy_simulate(EXPERT_POLICY_LRFU, all / 2, sweep[hi], trace,
                                              n_tok, s->n_layer, s->k, s->n_expert);
            printf(" %g: %.1f/%.1f", sweep[hi], 100 * a, 100 * b);
        }
        printf("\n");
        /* capacity below k: nothing can stay, nothing breaks */
        CHECK(expert_policy_simulate(EXPERT_POLICY_LRFU, 1, hl, trace, 10, s->n_layer, s->k,
                                     s->n_expert) >= 0);
        free(trace);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    test_exact();
    test_hit_rates();
    return check_report(argv[0]);
}
