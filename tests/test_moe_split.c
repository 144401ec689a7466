/*
 * moe_split_choose, the share of one token's RAM-resident experts between
 * the CPU and the GPU's copies (the CUDA backend's moe_token, policy auto),
 * on made-up sizes and rates: the experts with the least in VRAM go to the
 * CPU first; equal ones keep their order; the count is the one whose later
 * side ends first, which for experts of one size is as good as any subset
 * of the experts (brute force over every subset); rates of zero rule a side
 * out; bytes the GPU copies whatever the choice count.
 */
#include <math.h>
#include <stdio.h>

#include "backend/cuda/moe_split.h"
#include "check.h"
#include "core/rng.h"

#define MB 1000000ull

/* The later side's time of CPU experts mask (bit i: cand[i]) at the rates. */
static double side_time(const struct moe_split_cand *cand, int n, unsigned mask, uint64_t far_other,
                        const double *cpu_rate, double pcie_rate)
{
    double cpu = 0, far = (double)far_other;
    int c = 0;
    for (int i = 0; i < n; i++) {
        if (mask >> i & 1) {
            cpu += (double)cand[i].all;
            c++;
        } else {
            far += (double)cand[i].far;
        }
    }
    const double tc = c == 0 ? 0 : cpu_rate[c] > 0 ? cpu / cpu_rate[c] : INFINITY;
    const double tp = far <= 0 ? 0 : pcie_rate > 0 ? far / pcie_rate : INFINITY;
    return tc > tp ? tc : tp;
}

/* Expert 0 has its gate in VRAM (a prefetch's), expert 1 nothing: with
 * rates that give the CPU one of them, it must be expert 1. */
static void test_prefers_far(void)
{
    struct moe_split_cand c[2] = {{0, 150 * MB, 100 * MB}, {1, 150 * MB, 150 * MB}};
    const double rate[3] = {0, 100e9, 100e9};
    const int n = moe_split_choose(c, 2, 0, rate, 50e9);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(c[0].j, 1);
    CHECK_EQ_INT(c[1].j, 0);
}

/* Equal far bytes keep the call's order; unequal ones go most first. */
static void test_order(void)
{
    struct moe_split_cand c[5] = {
        {0, 9 * MB, 3 * MB}, {1, 9 * MB, 9 * MB}, {2, 9 * MB, 3 * MB},
        {3, 9 * MB, 6 * MB}, {4, 9 * MB, 9 * MB},
    };
    const double rate[6] = {0, 0, 0, 0, 0, 0}; /* the CPU never: the order alone */
    CHECK_EQ_INT(moe_split_choose(c, 5, 0, rate, 50e9), 0);
    const int want[5] = {1, 4, 3, 0, 2};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(c[i].j, want[i]);
}

/* Rates of zero: with no PCIe rate the CPU takes every candidate it can
 * (copies would never end); with no CPU rate for some counts those counts
 * are never chosen; with none at all, nothing. No candidates: 0. */
static void test_rates(void)
{
    struct moe_split_cand c[3] = {
        {0, 10 * MB, 10 * MB}, {1, 10 * MB, 10 * MB}, {2, 10 * MB, 10 * MB}};
    const double all[4] = {0, 80e9, 80e9, 80e9};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, 0), 3);
    const double no_three[4] = {0, 80e9, 80e9, 0};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, no_three, 0), 0); /* every count infinite: the first */
    const double none[4] = {0, 0, 0, 0};
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, none, 50e9), 0);
    CHECK_EQ_INT(moe_split_choose(c, 0, 5 * MB, none, 50e9), 0);
    /* the CPU at 80 GB/s, PCIe at 50, 10 MB experts: 0, 1, 2, 3 on the CPU
     * end after 0.6, 0.4, 0.25 and 0.375 ms */
    CHECK_EQ_INT(moe_split_choose(c, 3, 0, all, 50e9), 2);
    /* 20 MB already queued on PCIe: 1.0, 0.8, 0.6, 0.375 ms */
    CHECK_EQ_INT(moe_split_choose(c, 3, 20 * MB, all, 50e9), 3);
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
            c[i] = (struct moe_split_cand){i, 3 * slice, (3 - in_vram) * slice};
        }
        double rate[9] = {0};
        const double base = (20 + (double)rng_below(&r, 120)) * 1e9;
        for (int k = 1; k <= n; k++) /* a pass's fixed cost: fewer bytes a second for few experts */
            rate[k] = base * (double)k / ((double)k + (double)rng_below(&r, 3) * 0.25);
        const double pcie = (10 + (double)rng_below(&r, 60)) * 1e9;
        const uint64_t other = rng_below(&r, 4) * slice;
        struct moe_split_cand orig[8];
        for (int i = 0; i < n; i++) orig[i] = c[i];
        const int take = moe_split_choose(c, n, other, rate, pcie);
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

int main(int argc, char **argv)
{
    (void)argc;
    test_prefers_far();
    test_order();
    test_rates();
    test_best_subset();
    return check_report(argv[0]);
}
