#include "backend/cuda/moe_split.h"

#include <math.h>

#include "core/base.h"

int moe_split_choose(struct moe_split_cand *cand, int n, uint64_t far_other, const double *cpu_rate,
                     double pcie_rate)
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
        const double tc = c == 0 ? 0 : cpu_rate[c] > 0 ? cpu / cpu_rate[c] : INFINITY;
        const double tp = far <= 0 ? 0 : pcie_rate > 0 ? far / pcie_rate : INFINITY;
        const double t = HY_MAX(tc, tp);
        if (t < best) {
            best = t;
            take = c;
        }
    }
    return take;
}
