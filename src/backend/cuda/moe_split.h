/*
 * How one token's routed experts that lie in RAM are shared between the
 * CPU, computing them where they lie, and the GPU, computing them after
 * their slices are copied over PCIe (the CUDA backend's moe_token under
 * policy auto). An expert may also be split in two: its gate and up on the
 * CPU, its down on the GPU (a half). Plain C without CUDA, so that the
 * choice is tested on any machine.
 */
#ifndef HY_BACKEND_CUDA_MOE_SPLIT_H
#define HY_BACKEND_CUDA_MOE_SPLIT_H

#include <stdbool.h>
#include <stdint.h>

/* An expert the CPU may take: its index in the call, its bytes (what the
 * CPU reads), and those of its slices not in VRAM (what the GPU copies);
 * the same of its gate and up alone (what a half moves from one side to
 * the other). */
struct moe_split_cand {
    int j;
    uint64_t all, far;
    uint64_t gu, gu_far;
};

/* Orders cand[0..n) (n <= MOE_SPLIT_MAX) by far bytes, most first (stable: otherwise in call
 * order), so that the CPU takes the experts with the least in VRAM and the
 * slices already there (a prefetch's, cache hits) are read there. Then the
 * count c of the first candidates the CPU takes: the one whose later side
 * ends first, the CPU's c experts at cpu_rate[c] bytes/s, or cpu_rate_cp[c]
 * where the GPU's side copies anything (the two share host memory; NULL:
 * cpu_rate) (n + 1 entries each; one of 0 or less: never that count), the
 * copies of the others' far bytes plus far_other (bytes the GPU's side
 * copies whatever the choice) at pcie_rate (0 or less: copies never end),
 * their end counted lead seconds later where there are any (so that they
 * end that much before the CPU's pass where both sides would end together).
 * The first of equal times.
 *
 * With *half non-NULL, one more candidate may be a half: the CPU reads its
 * gu bytes (a pass of c + 1 experts, at cpu_rate[c + 1]), the copies leave
 * out its gu_far. For each count every other candidate is tried as the
 * half, the c whole ones the first c of the others; where a half ends
 * sooner than any choice without, *half is true and it is moved to
 * cand[c] (the c whole ones before it, in order); of equal times the one
 * of fewer whole ones, then of the half latest in the order.
 *
 * With share non-NULL too, a half none of whose gate and up is in VRAM
 * (gu_far == gu) may leave the GPU some of its gate and up rows: the CPU
 * reads a share s of its gu bytes, the copies the rest, s set so that both
 * sides end together, the copies lead before the CPU (at least
 * MOE_SPLIT_SHARE_MIN; 1: a plain half). *share is the chosen half's (1
 * where none).
 *
 * With down non-NULL (and half), a plain half none of whose down is in
 * VRAM may give the CPU a share d of its down rows too: the CPU reads its gu
 * bytes and d of its down's, the copies the rest of the down, d set so that
 * both sides end together as above (at most 1 - MOE_SPLIT_SHARE_MIN).
 * *down is the chosen half's (0 where none, or where the half has none). */
#define MOE_SPLIT_SHARE_MIN 0.125
/* Candidates of one call, at most (BACKEND_MOE_MAX_K). */
#define MOE_SPLIT_MAX 64

int moe_split_choose(struct moe_split_cand *cand, int n, uint64_t far_other, const double *cpu_rate,
                     const double *cpu_rate_cp, double pcie_rate, double lead, bool *half,
                     double *share, double *down);

/* The CPU rate the split weighs for a count of experts whose passes showed
 * rate `seen`, age calls ago: it moves linearly toward the optimistic r0
 * over drift calls (reaching it there), so that a count measured slow once
 * and no longer taken gets tried again; seen where it is r0 or more, or
 * where drift is 0 (no drift). */
double moe_split_rate_drift(double seen, double r0, uint64_t age, int drift);

#endif
