#include "backend/cuda/moe_split.h"

#include <math.h>

#include "core/base.h"

/* The later side's end: a CPU pass of n experts (none: 0), cpu bytes at
 * rate (rate_cp beside copies); far bytes at pcie, counted lead seconds
 * later (none: 0). */
static double split_end(int n, double cpu, double rate, double rate_cp, double far, double pcie,
                        double lead)
{
    if (far > 0) rate = rate_cp;
    const double tc = n == 0 ? 0 : rate > 0 ? cpu / rate : INFINITY;
    const double tp = far <= 0 ? 0 : pcie > 0 ? far / pcie + lead : INFINITY;
    return HY_MAX(tc, tp);
}

/* The share x of b bytes where both sides end together: the CPU reads cpu +
 * x b at rate, the copies far - x b at pcie lead seconds before it (far
 * holds b); unbounded. */
static double split_even(double cpu, double far, double b, double rate, double pcie, double lead)
{
    return (rate * (far + lead * pcie) - pcie * cpu) / (b * (rate + pcie));
}

/* The CPU's share of a half's gate and up (gu bytes; far: the copies without
 * them): in [MOE_SPLIT_SHARE_MIN, 1]. */
static double split_share(double cpu, double far, double gu, double rate, double pcie, double lead)
{
    if (!(rate > 0) || !(pcie > 0) || !(gu > 0)) return 1;
    const double s = split_even(cpu, far + gu, gu, rate, pcie, lead);
    return HY_MIN(1.0, HY_MAX(MOE_SPLIT_SHARE_MIN, s));
}

/* The CPU's share of a half's down (dn bytes, none of them in VRAM; cpu: the
 * CPU's bytes with the half's gate and up, far: the copies with its down):
 * in [0, 1 - MOE_SPLIT_SHARE_MIN], 0 where the CPU ends later even without
 * any. */
static double split_down(double cpu, double far, double dn, double rate, double pcie, double lead)
{
    if (!(rate > 0) || !(pcie > 0) || !(dn > 0)) return 0;
    const double d = split_even(cpu, far, dn, rate, pcie, lead);
    return HY_MIN(1.0 - MOE_SPLIT_SHARE_MIN, HY_MAX(0.0, d));
}

int moe_split_choose(struct moe_split_cand *cand, int n, uint64_t far_other, const double *cpu_rate,
                     const double *cpu_rate_cp, double pcie_rate, double lead, bool *half,
                     double *share, double *down)
{
    if (share) *share = 1;
    if (down) *down = 0;
    if (!cpu_rate_cp) cpu_rate_cp = cpu_rate;
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
        const double t = split_end(c, cpu, cpu_rate[c], cpu_rate_cp[c], far, pcie_rate, lead);
        if (t < best) {
            best = t;
            take = c;
        }
    }
    if (!half) return take;
    *half = false;
    /* halves: c whole ones, the first c of the others, and cand[h] (a
     * share s of its gate and up, or all of them and a share d of its
     * down) */
    int hc = -1, hh = -1;
    double hs = 1, hd = 0;
    /* the candidates' bytes before each index (whole bytes: the sums are
     * exact), so that each (c, h) finds its whole ones' and its copies'
     * without a pass over the others */
    uint64_t p_all[MOE_SPLIT_MAX + 1], p_far[MOE_SPLIT_MAX + 1];
    HY_ASSERT(n <= MOE_SPLIT_MAX);
    p_all[0] = p_far[0] = 0;
    for (int i = 0; i < n; i++) {
        p_all[i + 1] = p_all[i] + cand[i].all;
        p_far[i + 1] = p_far[i] + cand[i].far;
    }
    for (int c = 0; c < n; c++)
        for (int h = n - 1; h >= 0; h--) {
            const double gu = (double)cand[h].gu;
            /* whole: the first c of the others, [0, w) less h; the rest copied */
            const int w = h < c ? c + 1 : c;
            const uint64_t whole = p_all[w] - (h < c ? cand[h].all : 0);
            const uint64_t rest = p_far[n] - p_far[w] - (h < c ? 0 : cand[h].far);
            const double cb = (double)whole;
            const double fb = (double)(far_other + cand[h].far - cand[h].gu_far + rest);
            /* the half whole, then with gate and up rows left to the GPU,
             * or down rows taken by the CPU (copies beside the CPU) */
            const double rc = cpu_rate[c + 1], rp = cpu_rate_cp[c + 1];
            const double dn = (double)(cand[h].all - cand[h].gu);
            const double s1 = share && cand[h].gu_far == cand[h].gu
                                  ? split_share(cb, fb, gu, rp, pcie_rate, lead)
                                  : 1;
            const double d1 = down && cand[h].far - cand[h].gu_far == cand[h].all - cand[h].gu
                                  ? split_down(cb + gu, fb, dn, rp, pcie_rate, lead)
                                  : 0;
            for (int v = 0; v < 3; v++) {
                if ((v == 1 && !(s1 < 1)) || (v == 2 && !(d1 > 0))) continue;
                const double s = v == 1 ? s1 : 1, d = v == 2 ? d1 : 0;
                const double t = split_end(c + 1, cb + s * gu + d * dn, rc, rp,
                                           fb + (1 - s) * gu - d * dn, pcie_rate, lead);
                if (t < best) {
                    best = t;
                    hc = c;
                    hh = h;
                    hs = s;
                    hd = d;
                }
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
    if (share) *share = hs;
    if (down) *down = hd;
    return hc;
}

double moe_split_rate_drift(double seen, double r0, uint64_t age, int drift)
{
    if (drift <= 0 || !(seen < r0)) return seen;
    const double f = (double)age / (double)drift;
    return f >= 1 ? r0 : seen + (r0 - seen) * f;
}
