/*
 * Expert cache eviction policy (src/store/expert_policy.c): exact behaviour
 * of LRFU and LRU on hand-made sequences and of the keyed history (the VRAM
 * cache's) and the GPU tier's simulation, then hit rates of the three on the
 * routing the synth MoE models produce over a sampled text (recorded with
 * route_trace_record), at cache sizes from 12.5 % to 75 % of all experts.
 * The hit rates are printed (BENCHMARKS.md has the larger runs of
 * bench/moe_policy).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "model/route_trace.h"
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
    struct expert_policy *p = expert_policy_new(EXPERT_POLICY_LRU, 4, 1);
    for (int i = 0; i < 4; i++) expert_policy_touch(p, i, (uint64_t)(10 + i));
    expert_policy_touch(p, 0, 20);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, NULL, NULL), 1);
    int pinned = 1;
    CHECK_EQ_INT(expert_policy_victim(p, 100000, all_but, &pinned), 2);
    CHECK_EQ_INT(expert_policy_victim(p, 100000, none, NULL), -1);
    expert_policy_free(p);

    /* LRFU: fresh entries (never used) go first, ties to the lower index */
    p = expert_policy_new(EXPERT_POLICY_LRFU, 4, 8);
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
        p = expert_policy_new(EXPERT_POLICY_LRFU, 2, 8);
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
    struct expert_policy *lrfu = expert_policy_new(EXPERT_POLICY_LRFU, N, 1e-6);
    struct expert_policy *lru = expert_policy_new(EXPERT_POLICY_LRU, N, 1);
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

/* The keyed history: values by hand, uses once per now, whole periods, keys
 * never used, key 0, and the table's growth. */
static void test_history_exact(void)
{
    struct expert_history *h = expert_history_new(1.0); /* half-life: one period */
    CHECK(isinf(expert_history_value(h, 7, 0)) && expert_history_value(h, 7, 0) < 0);
    expert_history_touch(h, 7, 0);
    CHECK_NEAR(expert_history_value(h, 7, 0), 0.0, 1e-12); /* log2(1) */
    expert_history_touch(h, 7, 0);                         /* the same now: counts once */
    CHECK_NEAR(expert_history_value(h, 7, 0), 0.0, 1e-12);
    CHECK_NEAR(expert_history_value(h, 7, 2), -2.0, 1e-12); /* two half-lives */
    expert_history_touch(h, 7, 1);                          /* 1 + 1/2 */
    CHECK_NEAR(expert_history_value(h, 7, 1), log2(1.5), 1e-12);
    /* ages in whole periods: 3 calls of a period of 4 are no age */
    expert_history_set_period(h, 4);
    expert_history_touch(h, 9, 8);
    CHECK_NEAR(expert_history_value(h, 9, 11), 0.0, 1e-12);
    CHECK_NEAR(expert_history_value(h, 9, 12), -1.0, 1e-12);
    expert_history_touch(h, 9, 12);
    CHECK_NEAR(expert_history_value(h, 9, 12), log2(1.5), 1e-12);
    /* the more often used of two keys last used together is worth more */
    expert_history_touch(h, 7, 12);
    expert_history_touch(h, 11, 12);
    CHECK(expert_history_value(h, 9, 12) > expert_history_value(h, 11, 12));
    /* key 0 is no key */
    expert_history_touch(h, 0, 12);
    CHECK(expert_history_value(h, 0, 12) < -1e300);
    /* many keys: the table grows and keeps every value */
    for (uint64_t key = 100; key < 5100; key++)
        for (uint64_t t = 0; t < key % 3 + 1; t++) expert_history_touch(h, key, 16 + 4 * t);
    bool ok = true;
    for (uint64_t key = 100; key < 5100; key++) {
        const uint64_t n = key % 3 + 1; /* uses at 16, 20, ...: each a half */
        double want = 0;
        for (uint64_t t = 0; t < n; t++) want = want / 2 + 1;
        ok = ok && fabs(expert_history_value(h, key, 16 + 4 * (n - 1)) - log2(want)) < 1e-12;
    }
    CHECK(ok);
    CHECK_NEAR(expert_history_value(h, 9, 12), log2(1.5), 1e-12);
    expert_history_free(h);
    expert_history_free(NULL);
}

/* Hit rates on the routing of the synth MoE models (routers with the
 * popularity skew and layer-to-layer correlation `hypura synth` calibrates,
 * over a text sampled at temperature 1): the recency+frequency policy must
 * beat LRU on average over cache sizes by at least 3 points, and lose by no
 * more than 5 at any size (it can lose a little where the cache holds exactly
 * one token's experts: LRU then keeps precisely the previous token's). */
static void test_hit_rates(void)
{
    static const char *const models[] = {HY_TESTDATA_DIR "/synth/mixtral-Q4_K_M.gguf",
                                         HY_TESTDATA_DIR "/synth/qwen2moe-Q4_K_M.gguf"};
    static const double fracs[] = {0.125, 0.25, 0.375, 0.5, 0.75};
    const double hl = EXPERT_POLICY_HALF_LIFE_TOKENS;
    for (size_t mi = 0; mi < HY_ARRAY_LEN(models); mi++) {
        struct route_trace tr;
        if (!CHECK_OK(route_trace_record(models[mi], 300, 7, 2, &tr))) continue;
        const int all = tr.n_layer * tr.n_expert;
        printf("%s: %d tokens, %.0f%% of picks repeat the previous token's\n", models[mi],
               tr.n_tok, 100 * route_trace_repeat_share(&tr));
        printf("  capacity      LRU    LRFU(hl=%g)   gain   keyed   gain\n", hl);
        double gain = 0, kgain = 0;
        for (size_t fi = 0; fi < HY_ARRAY_LEN(fracs); fi++) {
            int cap = (int)(fracs[fi] * all + 0.5);
            if (cap < tr.k) cap = tr.k;
            double lru = expert_policy_simulate(EXPERT_POLICY_LRU, cap, hl, tr.ids, tr.n_tok,
                                                tr.n_layer, tr.k, tr.n_expert);
            double lrfu = expert_policy_simulate(EXPERT_POLICY_LRFU, cap, hl, tr.ids, tr.n_tok,
                                                 tr.n_layer, tr.k, tr.n_expert);
            double keyed =
                expert_history_simulate(cap, hl, tr.ids, tr.n_tok, tr.n_layer, tr.k, tr.n_expert);
            printf("  %4d (%4.1f%%)  %5.1f%%  %5.1f%%       %+5.1f  %5.1f%%  %+5.1f\n", cap,
                   100 * fracs[fi], 100 * lru, 100 * lrfu, 100 * (lrfu - lru), 100 * keyed,
                   100 * (keyed - lru));
            CHECK(lrfu >= lru - 0.05);
            CHECK(keyed >= lru - 0.05);
            gain += (lrfu - lru) / (double)HY_ARRAY_LEN(fracs);
            kgain += (keyed - lru) / (double)HY_ARRAY_LEN(fracs);
        }
        printf("  mean gain %+.1f points, keyed %+.1f\n", 100 * gain, 100 * kgain);
        CHECK(gain >= 0.03);
        CHECK(kgain >= 0.03);
        /* capacity below k: nothing can stay, nothing breaks */
        CHECK(expert_policy_simulate(EXPERT_POLICY_LRFU, 1, hl, tr.ids, 10, tr.n_layer, tr.k,
                                     tr.n_expert) >= 0);
        route_trace_free(&tr);
    }
}

/* The GPU tier's simulation: first a trace worked by hand, one layer, one
 * expert a token, a cache of two, experts 0 0 0 1 2 1 2 0. LRU: misses at
 * 0, 1 and 2 (2 takes 0's entry, the older), 1 and 2 hit, the last 0 misses:
 * 4 hits of 8. By value (half-life 8 tokens): at 2's miss 0 (three uses) is
 * worth more than 1 (one), so 1 goes; then 1 misses and 2 (one use) goes;
 * then 2 misses and 1 (uses at 3 and 5: log2(1 + 2^(-1/4)) - 1/8 = 0.755)
 * goes before 0 (uses at 0-2: log2(1 + 2^(-1/8) + 2^(-1/4)) - 1/2 = 0.964);
 * the last 0 hits: 3 of 8, for the RAM cache's LRFU (each fill reset) and
 * the keyed history alike. Then on the synth Mixtral's routing: whole
 * layers always hit, a cache that admits no miss leaves only the whole
 * layers, and the share cached lies between. */
static void test_tier(void)
{
    static const int32_t hand[8] = {0, 0, 0, 1, 2, 1, 2, 0};
    const double hl = EXPERT_POLICY_HALF_LIFE_TOKENS;
    struct expert_tier_sim h = {
        .kind = EXPERT_POLICY_LRU, .capacity = 2, .half_life = hl, .admit = 1, .seed = 5};
    CHECK_NEAR(expert_tier_simulate(&h, hand, 8, 1, 1, 3), 4.0 / 8, 1e-15);
    CHECK_NEAR(expert_policy_simulate(EXPERT_POLICY_LRU, 2, hl, hand, 8, 1, 1, 3), 4.0 / 8, 1e-15);
    CHECK_NEAR(expert_policy_simulate(EXPERT_POLICY_LRFU, 2, hl, hand, 8, 1, 1, 3), 3.0 / 8, 1e-15);
    CHECK_NEAR(expert_history_simulate(2, hl, hand, 8, 1, 1, 3), 3.0 / 8, 1e-15);

    struct route_trace tr;
    if (!CHECK_OK(route_trace_record(HY_TESTDATA_DIR "/synth/mixtral-Q4_K_M.gguf", 120, 3, 2, &tr)))
        return;
    const int L = tr.n_layer, K = tr.k, E = tr.n_expert, T = tr.n_tok;
    struct expert_tier_sim c = {
        .keyed = true, .capacity = 3, .half_life = hl, .admit = 1, .seed = 5};
    const double all = expert_tier_simulate(&c, tr.ids, T, L, K, E);
    c.n_whole = L;
    CHECK_NEAR(expert_tier_simulate(&c, tr.ids, T, L, K, E), 1.0, 1e-15);
    c.n_whole = 1;
    c.admit = 0;
    CHECK_NEAR(expert_tier_simulate(&c, tr.ids, T, L, K, E), 1.0 / L, 1e-15);
    c.capacity = 0;
    c.admit = 1;
    CHECK_NEAR(expert_tier_simulate(&c, tr.ids, T, L, K, E), 1.0 / L, 1e-15);
    c.capacity = 3;
    c.admit = 0.3;
    const double some = expert_tier_simulate(&c, tr.ids, T, L, K, E);
    CHECK(some > 1.0 / L && some < 1.0);
    c.n_whole = 0;
    c.admit = 0;
    CHECK_NEAR(expert_tier_simulate(&c, tr.ids, T, L, K, E), 0.0, 1e-15);
    printf("tier: keyed cache of 3 %.1f%%, layer 0 whole + 30%% of misses cached %.1f%%\n",
           100 * all, 100 * some);
    route_trace_free(&tr);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_exact();
    test_history_exact();
    test_hit_rates();
    test_tier();
    return check_report(argv[0]);
}
