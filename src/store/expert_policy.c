/*
 * LRFU and LRU over entry indices; design in expert_policy.h.
 */
#include "store/expert_policy.h"

#include <math.h>
#include <stdlib.h>

#include "core/base.h"
#include "core/mem.h"

struct expert_policy {
    enum expert_policy_kind kind;
    int n;
    double inv_half_life; /* 1 / half_life, per unit of `now` */
    uint64_t period;      /* ages are whole multiples of this (expert_policy_set_period) */
    double *lcrf;         /* [n] log2 of the LRFU value at `last`; −∞: not used since reset; owned */
    uint64_t *last;       /* [n] time of the last touch or reset; owned */
};

const char *expert_policy_kind_name(enum expert_policy_kind kind)
{
    return kind == EXPERT_POLICY_LRU ? "lru" : "lrfu";
}

struct expert_policy *expert_policy_new(enum expert_policy_kind kind, int n_entries,
                                        double half_life)
{
    HY_ASSERT(n_entries >= 1);
    HY_ASSERT(kind == EXPERT_POLICY_LRU || half_life > 0);
    struct expert_policy *p = mem_xcalloc(1, sizeof(*p));
    p->kind = kind;
    p->n = n_entries;
    p->inv_half_life = kind == EXPERT_POLICY_LRU ? 0 : 1.0 / half_life;
    p->period = 1;
    p->lcrf = mem_xcalloc((size_t)n_entries, sizeof(*p->lcrf));
    p->last = mem_xcalloc((size_t)n_entries, sizeof(*p->last));
    for (int i = 0; i < n_entries; i++) p->lcrf[i] = -INFINITY;
    return p;
}

void expert_policy_set_period(struct expert_policy *p, uint64_t period)
{
    HY_ASSERT(period >= 1);
    p->period = period;
}

void expert_policy_free(struct expert_policy *p)
{
    if (!p) return;
    free(p->lcrf);
    free(p->last);
    free(p);
}

/* log2 of the entry's LRFU value at now: log2(crf) − whole tokens since its
 * last use / half-life. */
static double expert_policy_value(const struct expert_policy *p, int i, uint64_t now)
{
    uint64_t age = (now - p->last[i]) / p->period * p->period;
    return p->lcrf[i] - (double)age * p->inv_half_life;
}

void expert_policy_touch(struct expert_policy *p, int entry, uint64_t now)
{
    HY_ASSERT(entry >= 0 && entry < p->n);
    HY_ASSERT(now >= p->last[entry]);
    if (p->kind == EXPERT_POLICY_LRFU)
        p->lcrf[entry] = log2(1.0 + exp2(expert_policy_value(p, entry, now)));
    p->last[entry] = now;
}

void expert_policy_reset(struct expert_policy *p, int entry, uint64_t now)
{
    HY_ASSERT(entry >= 0 && entry < p->n);
    p->lcrf[entry] = -INFINITY;
    p->last[entry] = now;
}

int expert_policy_victim(const struct expert_policy *p, uint64_t now,
                         bool (*evictable)(void *user, int entry), void *user)
{
    int best = -1;
    double best_v = 0;
    for (int i = 0; i < p->n; i++) {
        if (evictable && !evictable(user, i)) continue;
        if (p->kind == EXPERT_POLICY_LRU) {
            if (best < 0 || p->last[i] < p->last[best]) best = i;
            continue;
        }
        /* equal values: the later `last` goes (see the top) */
        double v = expert_policy_value(p, i, now);
        if (best < 0 || v < best_v || (v == best_v && p->last[i] > p->last[best])) {
            best = i;
            best_v = v;
        }
    }
    return best;
}

struct sim {
    int n_expert;
    int layer;             /* the layer being served */
    const int32_t *need;   /* [k] its experts */
    int k;
    const int32_t *holds;  /* [capacity] (layer · n_expert + expert) or −1 */
};

static bool sim_evictable(void *user, int entry)
{
    const struct sim *s = user;
    int32_t h = s->holds[entry];
    if (h < 0 || h / s->n_expert != s->layer) return true;
    for (int j = 0; j < s->k; j++)
        if (s->need[j] == h % s->n_expert) return false;
    return true;
}

double expert_policy_simulate(enum expert_policy_kind kind, int capacity, double half_life,
                              const int32_t *trace, int n_tok, int n_layer, int k, int n_expert)
{
    HY_ASSERT(capacity >= 1 && n_tok >= 1 && n_layer >= 1 && k >= 1 && n_expert >= 1);
    struct expert_policy *p = expert_policy_new(kind, capacity, half_life * n_layer);
    expert_policy_set_period(p, (uint64_t)n_layer);
    size_t n_keys = (size_t)n_layer * (size_t)n_expert;
    int32_t *where = mem_xmalloc(n_keys * sizeof(*where)); /* key → entry or −1 */
    int32_t *holds = mem_xmalloc((size_t)capacity * sizeof(*holds));
    for (size_t i = 0; i < n_keys; i++) where[i] = -1;
    for (int i = 0; i < capacity; i++) holds[i] = -1;
    int n_used = 0;
    uint64_t hits = 0, total = 0;
    struct sim s = {.n_expert = n_expert, .k = k, .holds = holds};
    for (int t = 0; t < n_tok; t++)
        for (int l = 0; l < n_layer; l++) {
            const int32_t *need = trace + ((size_t)t * (size_t)n_layer + (size_t)l) * (size_t)k;
            uint64_t now = (uint64_t)t * (uint64_t)n_layer + (uint64_t)l;
            s.layer = l;
            s.need = need;
            for (int j = 0; j < k; j++) {
                HY_ASSERT(need[j] >= 0 && need[j] < n_expert);
                int32_t key = l * n_expert + need[j];
                total++;
                int e = where[key];
                if (e >= 0) {
                    hits++;
                    expert_policy_touch(p, e, now);
                    continue;
                }
                e = n_used < capacity ? n_used++ : expert_policy_victim(p, now, sim_evictable, &s);
                if (e < 0) continue; /* capacity < k: served without caching */
                if (holds[e] >= 0) where[holds[e]] = -1;
                holds[e] = key;
                where[key] = e;
                expert_policy_reset(p, e, now);
                expert_policy_touch(p, e, now);
            }
        }
    free(where);
    free(holds);
    expert_policy_free(p);
    return (double)hits / (double)total;
}
