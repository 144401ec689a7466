/*
 * moe_split_choose, the share of one token's RAM-resident experts between
 * the CPU and the GPU's copies (the CUDA backend's moe_token, policy auto),
 * on made-up sizes and rates: the experts with the least in VRAM go to the
 * CPU first; equal ones keep their order; the count is the one whose later
 * side ends first, which for experts of one size is as good as any subset
 * of the experts (brute force over every subset); rates of zero rule a side
 * out; bytes the GPU copies whatever the choice count. With halves (gate
 * and up on the CPU, down copied): a Mixtral-sized layer of two experts in
 * RAM takes one whole and one half; the choice is as good as any of whole
 * experts and at most one half (brute force), and no worse than without.
 * With a half's gate and up rows shared: the share where both sides end
 * together, only for a half whose gate and up are all in RAM, as good as any
 * share of the half on a grid, and never worse than whole halves. With a
 * plain half's down rows shared too: the share where both sides end
 * together, only for a half whose down is all in RAM, at most the bound, as
 * good as any share of either on a grid, never worse than gate and up rows
 * alone. A
 * count's rate drifting toward the optimistic one, and the split taking
 * that count again once it has.
 */
#include <math.h>
#include <stdio.h>

#include "backend/cuda/moe_split.h"
#include "check.h"
#include "core/rng.h"

#define MB 1000000ull

/* The later side's time of CPU experts mask (bit i: cand[i]) and half h
 * (-1: none; the CPU's share sh of its gate and up, dsh of its down) at the
 * rates, the copies' end counted lead seconds later. */
static double down_time_cp(const struct moe_split_cand *cand, int n, unsigned mask, int h,
                           double sh, double dsh, uint64_t far_other, const double *cpu_rate,
                           const double *cpu_rate_cp, double pcie_rate, double lead)
{
    double cpu = 0, far = (double)far_other;
    int c = 0;
    for (int i = 0; i < n; i++) {
        if (i == h) {
            const double dn = (double)(cand[i].all - cand[i].gu);
            cpu += sh * (double)cand[i].gu + dsh * dn;
            far +=
                (double)(cand[i].far - cand[i].gu_far) + (1 - sh) * (double)cand[i].gu - dsh * dn;
            c++;
        } else if (mask >> i & 1) {
            cpu += (double)cand[i].all;
            c++;
        } else {
            far += (double)cand[i].far;
        }
    }
    const double rate = far > 0 ? cpu_rate_cp[c] : cpu_rate[c];
    const double tc = c == 0 ? 0 : rate > 0 ? cpu / rate : INFINITY;
    const double tp = far <= 0 ? 0 : pcie_rate > 0 ? far / pcie_rate + lead : INFINITY;
    return tc > tp ? tc : tp;
}

static double share_time_cp(const struct moe_split_cand *cand, int n, unsigned mask, int h,
                            double sh, uint64_t far_other, const double *cpu_rate,
                            const double *cpu_rate_cp, double pcie_rate, double lead)
{
    return down_time_cp(cand, n, mask, h, sh, 0, far_other, cpu_rate, cpu_rate_cp, pcie_rate, lead);
}

static double share_time(const struct moe_split_cand *cand, int n, unsigned mask, int h, double sh,
                         uint64_t far_other, const double *cpu_rate, double pcie_rate)
{
    return share_time_cp(cand, n, mask, h, sh, far_other, cpu_rate, cpu_rate, pcie_rate, 0);
}

static double half_time(const struct moe_split_cand *cand, int n, unsigned mask, int h,
                        uint64_t far_other, const double *cpu_rate, double pcie_rate)
{
    return share_time(cand, n, mask, h, 1, far_other, cpu_rate, pcie_rate);
}

static double side_time(const struct moe_split_cand *cand, int n, unsigned mask, uint64_t far_other,
                        const double *cpu_rate, double pcie_rate)
{
    return half_time(cand, n, mask, -1, far_other, cpu_rate, pcie_rate);
}

/* Expert 0 has its gate in VRAM (a prefetch's), expert 1 nothing: with
 * rates that give the CPU one of them, it must be expert 1. */
static void test_prefers_far(void)
{
    struct moe_split_cand c[2] = {{0, 150 * MB, 100 * MB, 0, 0}, {1, 150 * MB, 150 * MB, 0, 0}};
    const double rate[3] = {0, 100e9, 100e9};
    const int n = moe_split_choose(c, 2, 0, rate, NULL, 50e9, 0, NULL, NULL, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(c[0].j, 1);
    CHECK_EQ_INT(c[1].j, 0);
}

/* Equal far bytes keep the call's order; unequal ones go most first. */
static void test_order(void)
{
    struct moe_split_cand c[5] = {
        {0, 9 * MB, 3 * MB, 0, 0}, {1, 9 * MB, 9 * MB, 0, 0}, {2, 9 * MB, 3 * MB, 0, 0},
        {3, 9 * MB, 6 * MB, 0, 0}, {4, 9 * MB, 9 * MB, 0, 0},
    };
    const double rate[6] = {0, 0, 0, 0, 0, 0}; /* the CPU never: the order alone */
    CHECK_EQ_INT(moe_split_choose(c, 5, 0, rate, NULL, 50e9, 0, NULL, NULL, NULL), 0);
    const int want[5] = {1, 4, 3, 0, 2};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(c[i].j, want[i]);
}

/* Rates of zero: with no PCIe rate the CPU takes every candidate it can
 * (copies would never end); with no CPU rate for some counts those counts
 * are never chosen; with none at all, nothing. No candidates: 0. */
static void test_rates(void)
{
    struct moe_split_cand c[3] = {
        {0, 10 * MB, 10 * MB, 0, 0}, {1, 10 * MB, 10 * MB, 0, 0}, {2, 10 * MB, 10 * MB, 0, 0}};
    const double all[4] = {0, 80e9, 80e9, 80e9};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, NULL, 0, 0, NULL, NULL, NULL), 3);
    const double no_three[4] = {0, 80e9, 80e9, 0};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, no_three, NULL, 0, 0, NULL, NULL, NULL),
                 0); /* every count infinite: the first */
    const double none[4] = {0, 0, 0, 0};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, none, NULL, 50e9, 0, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(moe_split_choose(c, 0, 5 * MB, none, NULL, 50e9, 0, NULL, NULL, NULL), 0);
    /* the CPU at 80 GB/s, PCIe at 50, 10 MB experts: 0, 1, 2, 3 on the CPU
     * end after 0.6, 0.4, 0.25 and 0.375 ms */
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, NULL, 50e9, 0, NULL, NULL, NULL), 2);
    /* 20 MB already queued on PCIe: 1.0, 0.8, 0.6, 0.375 ms */
    CHECK_EQ_INT(moe_split_choose(c, 3, 20 * MB, all, NULL, 50e9, 0, NULL, NULL, NULL), 3);
}

/* Random experts of one size, some of their slices in VRAM: the chosen
 * prefix is as good as the best subset of any size. */
static void test_best_subset(void)
{
    struct rng r;
    rng_init(&r, 0x6d6f655f73706c74ull);
    int worse = 0;
    for (int round = 0; round < 2000; round++) {
        const int n = 1 + (int)rng_below(&r, 8);
        const uint64_t slice = (1 + rng_below(&r, 40)) * MB / 4;
        struct moe_split_cand c[8];
        for (int i = 0; i < n; i++) {
            const uint64_t in_vram = rng_below(&r, 3); /* of three slices */
            c[i] = (struct moe_split_cand){i, 3 * slice, (3 - in_vram) * slice, 0, 0};
        }
        double rate[9] = {0};
        const double base = (20 + (double)rng_below(&r, 120)) * 1e9;
        for (int k = 1; k <= n; k++) /* a pass's fixed cost: fewer bytes a second for few experts */
            rate[k] = base * (double)k / ((double)k + (double)rng_below(&r, 3) * 0.25);
        const double pcie = (10 + (double)rng_below(&r, 60)) * 1e9;
        const uint64_t other = rng_below(&r, 4) * slice;
        struct moe_split_cand orig[8];
        for (int i = 0; i < n; i++) orig[i] = c[i];
        const int take = moe_split_choose(c, n, other, rate, NULL, pcie, 0, NULL, NULL, NULL);
        if (!CHECK(take >= 0 && take <= n)) return;
        /* the result is a permutation of the input */
        unsigned seen = 0;
        for (int i = 0; i < n; i++) seen |= 1u << c[i].j;
        if (!CHECK_EQ_INT(seen, (1u << n) - 1)) return;
        const double got = side_time(c, n, (1u << take) - 1, other, rate, pcie);
        double best = INFINITY;
        for (unsigned m = 0; m < 1u << n; m++) {
            const double t = side_time(orig, n, m, other, rate, pcie);
            if (t < best) best = t;
        }
        if (!(got <= best * (1 + 1e-12))) {
            if (worse++ < 5)
                fprintf(stderr,
                        "round %d: %d experts, the CPU takes %d: %.6g s, best subset %.6g s\n",
                        round, n, take, got, best);
        }
    }
    CHECK_EQ_INT(worse, 0);
}

/* Two Mixtral experts in RAM (gate and up 33 MB each, down 48 MB), the CPU
 * at 107 GB/s, PCIe at 55: whole experts end after 2.07 ms at best (one
 * each side), one whole and one half after 1.68 ms. One expert alone: the
 * CPU 1.07 ms, a half 0.87 ms (its down's copy). */
static void test_half_mixtral(void)
{
    const double rate[3] = {0, 107e9, 107e9};
    struct moe_split_cand c[2] = {{0, 114 * MB, 114 * MB, 66 * MB, 66 * MB},
                                  {1, 114 * MB, 114 * MB, 66 * MB, 66 * MB}};
    bool half = false;
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, NULL, 55e9, 0, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, NULL, 55e9, 0, &half, NULL, NULL), 1);
    CHECK(half);
    CHECK_EQ_INT(c[0].j, 0);
    CHECK_EQ_INT(c[1].j, 1);
    struct moe_split_cand one[1] = {{0, 114 * MB, 114 * MB, 66 * MB, 66 * MB}};
    half = false;
    CHECK_EQ_INT(moe_split_choose(one, 1, 0, rate, NULL, 55e9, 0, &half, NULL, NULL), 0);
    CHECK(half);
    /* its down already in VRAM: the half copies nothing */
    struct moe_split_cand cached[1] = {{0, 114 * MB, 66 * MB, 66 * MB, 66 * MB}};
    half = false;
    CHECK_EQ_INT(moe_split_choose(cached, 1, 0, rate, NULL, 55e9, 0, &half, NULL, NULL), 0);
    CHECK(half);
    /* no PCIe rate: every expert whole on the CPU, no half */
    half = true;
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, NULL, 0, 0, &half, NULL, NULL), 2);
    CHECK(!half);

    /* rows shared: one whole and a half of which the CPU reads the share s
     * where (114 + 66 s) / 107 = (48 + 66 (1 - s)) / 55, 1.41 ms */
    double share = 0;
    half = false;
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, NULL, 55e9, 0, &half, &share, NULL), 1);
    CHECK(half);
    const double s2 = (107.0 * (48 + 66) - 55.0 * 114) / (66.0 * (107 + 55));
    CHECK(fabs(share - s2) < 1e-9);
    CHECK(fabs((114 + 66 * share) / 107 - (48 + 66 * (1 - share)) / 55) < 1e-9);
    /* one alone: its down's copy already takes longer than its gate and up */
    share = 0;
    CHECK_EQ_INT(moe_split_choose(one, 1, 0, rate, NULL, 55e9, 0, &half, &share, NULL), 0);
    CHECK(half && share == 1);
    /* with down rows taken by the CPU: the share d where (66 + 48 d) / 107 =
     * 48 (1 - d) / 55, 0.70 ms */
    double down = -1;
    CHECK_EQ_INT(moe_split_choose(one, 1, 0, rate, NULL, 55e9, 0, &half, &share, &down), 0);
    const double d1 = (107.0 * 48 - 55.0 * 66) / (48.0 * (107 + 55));
    CHECK(half && share == 1 && fabs(down - d1) < 1e-9);
    CHECK(fabs((66 + 48 * down) / 107 - 48 * (1 - down) / 55) < 1e-9);
    /* two: the CPU is the later side, gate and up rows go the other way */
    down = -1;
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, NULL, 55e9, 0, &half, &share, &down), 1);
    CHECK(half && fabs(share - s2) < 1e-9 && down == 0);
    /* its down in VRAM: none of it to take */
    down = -1;
    CHECK_EQ_INT(moe_split_choose(cached, 1, 0, rate, NULL, 55e9, 0, &half, &share, &down), 0);
    CHECK(half && down == 0);
    /* a CPU so fast that the down's share would pass the bound: at the bound */
    const double fast[2] = {0, 1000e9};
    moe_split_choose(one, 1, 0, fast, NULL, 55e9, 0, &half, NULL, &down);
    CHECK(half && down == 1 - MOE_SPLIT_SHARE_MIN);
    /* its down in VRAM: gate and up shared at the rates' ratio */
    share = 0;
    CHECK_EQ_INT(moe_split_choose(cached, 1, 0, rate, NULL, 55e9, 0, &half, &share, NULL), 0);
    CHECK(half && fabs(share - 107.0 / 162) < 1e-9);
    /* its gate in VRAM: no rows shared */
    struct moe_split_cand gate_in[1] = {{0, 114 * MB, 81 * MB, 66 * MB, 33 * MB}};
    share = 0;
    CHECK_EQ_INT(moe_split_choose(gate_in, 1, 0, rate, NULL, 55e9, 0, &half, &share, NULL), 0);
    CHECK(half && share == 1);
    /* a share under MOE_SPLIT_SHARE_MIN is taken at the minimum */
    const double slow[2] = {0, 1e9};
    struct moe_split_cand lone[1] = {{0, 114 * MB, 66 * MB, 66 * MB, 66 * MB}};
    share = 0;
    moe_split_choose(lone, 1, 0, slow, NULL, 55e9, 0, &half, &share, NULL);
    CHECK(!half || share == MOE_SPLIT_SHARE_MIN);
}

/* Random experts of one size, some slices in VRAM: the choice with a half
 * allowed is as good as the best of every assignment of whole experts and at
 * most one half, never worse than without, and the half is cand[take]. */
static void test_half_best(void)
{
    struct rng r;
    rng_init(&r, 0x68616c665f737074ull);
    int worse = 0, halves = 0, shared = 0, downs = 0;
    for (int round = 0; round < 2000; round++) {
        const int n = 1 + (int)rng_below(&r, 6);
        const uint64_t gs = (1 + rng_below(&r, 40)) * MB / 4, ds = gs + rng_below(&r, 3) * gs / 2;
        struct moe_split_cand c[8];
        for (int i = 0; i < n; i++) {
            const bool g_in = rng_below(&r, 4) == 0, u_in = rng_below(&r, 4) == 0;
            const bool d_in = rng_below(&r, 3) == 0;
            const uint64_t gu_far = (g_in ? 0 : gs) + (u_in ? 0 : gs);
            const uint64_t far = gu_far + (d_in ? 0 : ds);
            if (!far) {
                i--;
                continue;
            }
            c[i] = (struct moe_split_cand){i, 2 * gs + ds, far, 2 * gs, gu_far};
        }
        double rate[9] = {0};
        const double base = (20 + (double)rng_below(&r, 120)) * 1e9;
        for (int k = 1; k <= n; k++)
            rate[k] = base * (double)k / ((double)k + (double)rng_below(&r, 3) * 0.25);
        /* the CPU beside copies: as fast, or slower (every other round) */
        double rate_cp[9] = {0};
        for (int k = 1; k <= n; k++)
            rate_cp[k] = round % 2 ? rate[k] : rate[k] * (0.5 + 0.5 * rng_uniform(&r));
        const double pcie = (10 + (double)rng_below(&r, 60)) * 1e9;
        const uint64_t other = rng_below(&r, 4) * gs;
        /* the rows' and downs' shares with the copies ending up to 0.2 ms
         * before the CPU (every third round none) */
        const double lead = round % 3 ? 2e-4 * rng_uniform(&r) : 0;
        struct moe_split_cand orig[8], plain[8], rc[8], hc[8], dc[8];
        for (int i = 0; i < n; i++) orig[i] = plain[i] = rc[i] = hc[i] = dc[i] = c[i];
        bool half = false, rhalf = false, hhalf = false, dhalf = false;
        double share = 0, dshare = 0, down = 0;
        const int take = moe_split_choose(c, n, other, rate, NULL, pcie, 0, &half, NULL, NULL);
        const int take0 = moe_split_choose(plain, n, other, rate, NULL, pcie, 0, NULL, NULL, NULL);
        const int rtake =
            moe_split_choose(rc, n, other, rate, rate_cp, pcie, lead, &rhalf, &share, NULL);
        const int htake =
            moe_split_choose(hc, n, other, rate, rate_cp, pcie, lead, &hhalf, NULL, NULL);
        const int dtake =
            moe_split_choose(dc, n, other, rate, rate_cp, pcie, lead, &dhalf, &dshare, &down);
        if (!CHECK(take >= 0 && take + (half ? 1 : 0) <= n)) return;
        unsigned seen = 0;
        for (int i = 0; i < n; i++) seen |= 1u << c[i].j;
        if (!CHECK_EQ_INT(seen, (1u << n) - 1)) return;
        halves += half;
        const double got = half_time(c, n, (1u << take) - 1, half ? take : -1, other, rate, pcie);
        const double without = side_time(plain, n, (1u << take0) - 1, other, rate, pcie);
        double best = INFINITY;
        for (int h = -1; h < n; h++)
            for (unsigned m = 0; m < 1u << n; m++) {
                if (h >= 0 && (m >> h & 1)) continue;
                const double t = half_time(orig, n, m, h, other, rate, pcie);
                if (t < best) best = t;
            }
        if (!(got <= best * (1 + 1e-12)) || !(got <= without * (1 + 1e-12))) {
            if (worse++ < 5)
                fprintf(stderr,
                        "round %d: %d experts, %d whole%s: %.6g s, best %.6g s, without %.6g s\n",
                        round, n, take, half ? " and a half" : "", got, best, without);
        }
        /* rows shared, the CPU at its rate beside copies where there are
         * any, the copies lead before it: no worse than whole halves, as good as any choice of
         * whole experts, whole halves and shares of a grid, a share below 1 only for a half with
         * gate and up in RAM */
        if (!CHECK(rtake >= 0 && rtake + (rhalf ? 1 : 0) <= n)) return;
        if (!CHECK(share >= MOE_SPLIT_SHARE_MIN && share <= 1)) return;
        if (!CHECK(share == 1 || (rhalf && rc[rtake].gu_far == rc[rtake].gu))) return;
        shared += share < 1;
        const double rgot = share_time_cp(rc, n, (1u << rtake) - 1, rhalf ? rtake : -1, share,
                                          other, rate, rate_cp, pcie, lead);
        const double hgot = share_time_cp(hc, n, (1u << htake) - 1, hhalf ? htake : -1, 1, other,
                                          rate, rate_cp, pcie, lead);
        double rbest = INFINITY;
        for (int h = -1; h < n; h++)
            for (unsigned m = 0; m < 1u << n; m++) {
                if (h >= 0 && (m >> h & 1)) continue;
                const bool rows = h >= 0 && orig[h].gu_far == orig[h].gu;
                for (int q = rows ? 8 : 64; q <= 64; q++) {
                    const double t =
                        share_time_cp(orig, n, m, h, q / 64.0, other, rate, rate_cp, pcie, lead);
                    if (t < rbest) rbest = t;
                }
            }
        if (!(rgot <= rbest * (1 + 1e-12)) || !(rgot <= hgot * (1 + 1e-12))) {
            if (worse++ < 5)
                fprintf(stderr,
                        "round %d: %d experts, %d whole, share %.4f: %.6g s, best on the grid "
                        "%.6g s, whole halves %.6g s\n",
                        round, n, rtake, share, rgot, rbest, hgot);
        }
        /* down rows taken by the CPU too: no worse than gate and up rows
         * alone, as good as any choice with shares of either on a grid, a
         * down share only for a plain half with its down in RAM */
        if (!CHECK(dtake >= 0 && dtake + (dhalf ? 1 : 0) <= n)) return;
        if (!CHECK(down >= 0 && down <= 1 - MOE_SPLIT_SHARE_MIN)) return;
        if (!CHECK(down == 0 || (dhalf && dshare == 1 &&
                                 dc[dtake].far - dc[dtake].gu_far == dc[dtake].all - dc[dtake].gu)))
            return;
        downs += down > 0;
        const double dgot = down_time_cp(dc, n, (1u << dtake) - 1, dhalf ? dtake : -1, dshare, down,
                                         other, rate, rate_cp, pcie, lead);
        double dbest = rbest;
        for (int h = 0; h < n; h++) {
            if (orig[h].far - orig[h].gu_far != orig[h].all - orig[h].gu) continue;
            for (unsigned m = 0; m < 1u << n; m++) {
                if (m >> h & 1) continue;
                for (int q = 1; q <= 56; q++) {
                    const double t =
                        down_time_cp(orig, n, m, h, 1, q / 64.0, other, rate, rate_cp, pcie, lead);
                    if (t < dbest) dbest = t;
                }
            }
        }
        if (!(dgot <= dbest * (1 + 1e-12)) || !(dgot <= rgot * (1 + 1e-12))) {
            if (worse++ < 5)
                fprintf(stderr,
                        "round %d: %d experts, %d whole, share %.4f, down %.4f: %.6g s, best on "
                        "the grid %.6g s, gate and up rows alone %.6g s\n",
                        round, n, dtake, dshare, down, dgot, dbest, rgot);
        }
    }
    CHECK_EQ_INT(worse, 0);
    CHECK(shared > 100); /* shares came up */
    printf("rows shared in %d of 2000 rounds\n", shared);
    CHECK(downs > 100); /* down shares came up */
    printf("down rows shared in %d of 2000 rounds\n", downs);
    CHECK(halves > 100 && halves < 1900); /* both kinds of choice came up */
    printf("halves chosen in %d of 2000 rounds\n", halves);
}

/* A count's rate drifting toward the optimistic one: linear over the
 * drift, there from then on; a rate at or above it, or no drift, as seen. */
static void test_rate_drift(void)
{
    CHECK(moe_split_rate_drift(60e9, 100e9, 0, 64) == 60e9);
    CHECK(fabs(moe_split_rate_drift(60e9, 100e9, 16, 64) - 70e9) < 1);
    CHECK(fabs(moe_split_rate_drift(60e9, 100e9, 32, 64) - 80e9) < 1);
    CHECK(moe_split_rate_drift(60e9, 100e9, 64, 64) == 100e9);
    CHECK(moe_split_rate_drift(60e9, 100e9, 1000, 64) == 100e9);
    CHECK(moe_split_rate_drift(120e9, 100e9, 32, 64) == 120e9);
    CHECK(moe_split_rate_drift(60e9, 100e9, 32, 0) == 60e9);
    /* a split that drops a count measured slow takes it again once drifted:
     * two experts of 3 MB, nothing in VRAM, PCIe at 40 GB/s, the CPU's rate
     * for one expert 40 GB/s (one on each side: 75 us), for two seen at 20
     * (300 us); drifted to the optimistic 100, two take 60 us */
    struct moe_split_cand c[2];
    for (int i = 0; i < 2; i++)
        c[i] = (struct moe_split_cand){.j = i, .all = 3 * MB, .far = 3 * MB};
    double rate[3] = {80e9, 40e9, 20e9};
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, rate, 40e9, 0, NULL, NULL, NULL), 1);
    rate[2] = moe_split_rate_drift(20e9, 100e9, 64, 64);
    CHECK_EQ_INT(moe_split_choose(c, 2, 0, rate, rate, 40e9, 0, NULL, NULL, NULL), 2);
}

/* The copies counted lead seconds longer: three 10 MB experts, the CPU at
 * 80 GB/s, PCIe at 50 (0, 1, 2, 3 on the CPU: 0.6, 0.4, 0.25, 0.375 ms
 * without a lead). A lead of 0.1 ms: 0.7, 0.5, 0.3, 0.375 (still 2); of 0.2
 * ms: 0.8, 0.6, 0.4, 0.375 (all three, whose pass copies nothing). A half's
 * shares end their copies the lead before the CPU. */
static void test_lead(void)
{
    struct moe_split_cand c[3] = {
        {0, 10 * MB, 10 * MB, 0, 0}, {1, 10 * MB, 10 * MB, 0, 0}, {2, 10 * MB, 10 * MB, 0, 0}};
    const double all[4] = {0, 80e9, 80e9, 80e9};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, NULL, 50e9, 0, NULL, NULL, NULL), 2);
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, NULL, 50e9, 0.1e-3, NULL, NULL, NULL), 2);
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, NULL, 50e9, 0.2e-3, NULL, NULL, NULL), 3);

    /* test_half_mixtral's two experts, a lead of 0.1 ms: the share s where
     * (114 + 66 s) / 107 = (48 + 66 (1 - s)) / 55 + 0.1 */
    const double rate[3] = {0, 107e9, 107e9};
    struct moe_split_cand two[2] = {{0, 114 * MB, 114 * MB, 66 * MB, 66 * MB},
                                    {1, 114 * MB, 114 * MB, 66 * MB, 66 * MB}};
    bool half = false;
    double share = 0, down = -1;
    CHECK_EQ_INT(moe_split_choose(two, 2, 0, rate, NULL, 55e9, 0.1e-3, &half, &share, NULL), 1);
    CHECK(half);
    CHECK(fabs((114 + 66 * share) / 107 - ((48 + 66 * (1 - share)) / 55 + 0.1)) < 1e-9);
    const double s0 = (107.0 * (48 + 66) - 55.0 * 114) / (66.0 * (107 + 55));
    CHECK(share > s0);
    /* one, its down's rows shared: (66 + 48 d) / 107 = 48 (1 - d) / 55 + 0.1 */
    struct moe_split_cand one[1] = {{0, 114 * MB, 114 * MB, 66 * MB, 66 * MB}};
    CHECK_EQ_INT(moe_split_choose(one, 1, 0, rate, NULL, 55e9, 0.1e-3, &half, &share, &down), 0);
    CHECK(half && share == 1);
    CHECK(fabs((66 + 48 * down) / 107 - (48 * (1 - down) / 55 + 0.1)) < 1e-9);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_rate_drift();
    test_prefers_far();
    test_order();
    test_rates();
    test_best_subset();
    test_half_mixtral();
    test_half_best();
    test_lead();
    return check_report(argv[0]);
}
