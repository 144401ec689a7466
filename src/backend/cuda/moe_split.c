#include "backend/cuda/moe_split.h"

#include <math.h>

#include "core/base.h"

/* The later side's end: a CPU pass of n experts (none: 0), cpu bytes at
 * rate; far bytes at pcie. */
static double split_end(int n, double cpu, double rate, double far, double pcie)
{
    const double tc = n == 0 ? 0 : rate > 0 ? cpu / rate : INFINITY;
    const double tp = far <= 0 ? 0 : pcie > 0 ? far / pcie : INFINITY;
    return HY_MAX(tc, tp);
}

int moe_split_choose(struct moe_split_cand *cand, int n, uint64_t far_other, const double *cpu_rate,
                     double pcie_rate, bool *half)
{
    for (int i = 1; i < n; i++) {
        const struct moe_split_cand c = cand[i];
        int m = i;
        for (; m > 0 && c.far > cand[m - 1].far; m--) cand[m] = cand[m - 1];
        cand[m] = c;
    }
    double far = (double)far_other, cpu = 0, best = INFINITY;
    for (int i = 0; i < n; i++) far += (double)cand[i].far;
    int take = 0;
    for (int c = 0; c <= n; c++) {
        if (c > 0) {
            cpu += (double)cand[c - 1].all;
            far -= (double)cand[c - 1].far;
        }
        const double t = split_end(c, cpu, cpu_rate[c], far, pcie_rate);
        if (t < best) {
            best = t;
            take = c;
        }
    }
    if (!half) return take;
    *half = false;
    /* halves: c whole ones, the first c of the others, and cand[h] */
    int hc = -1, hh = -1;
    for (int c = 0; c < n; c++)
        for (int h = n - 1; h >= 0; h--) {
            double cb = (double)cand[h].gu,
                   fb = (double)far_other + (double)cand[h].far - (double)cand[h].gu_far;
            for (int i = 0, whole = 0; i < n; i++) {
                if (i == h) continue;
                if (whole < c) {
                    cb += (double)cand[i].all;
                    whole++;
                } else {
                    fb += (double)cand[i].far;
                }
            }
            const double t = split_end(c + 1, cb, cpu_rate[c + 1], fb, pcie_rate);
            if (t < best) {
                best = t;
                hc = c;
                hh = h;
            }
        }
    if (hh < 0) return take;
    /* cand[hh] to position hc: the whole ones are the first hc of the others */
    const struct moe_split_cand m = cand[hh];
    if (hh >= hc) {
        for (int i = hh; i > hc; i--) cand[i] = cand[i - 1];
    } else {
        for (int i = hh; i < hc; i++) cand[i] = cand[i + 1];
    }
    cand[hc] = m;
    *half = true;
    return hc;
}
