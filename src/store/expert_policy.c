/*
 * LRFU and LRU over entry indices; design in expert_policy.h.
 */
#include "store/expert_policy.h"

#include <math.h>
#include <stdlib.h>

#include "core/base.h"
#include "core/mem.h"
#include "core/rng.h"

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

/* log2 of an LRFU value at now, lcrf at its last use: log2(crf) − whole
 * periods since then (in units of now) / half-life (in units of now). */
static double lrfu_value(double lcrf, uint64_t last, uint64_t now, uint64_t period,
                         double inv_half_life)
{
    uint64_t age = (now - last) / period * period;
    return lcrf - (double)age * inv_half_life;
}

/* log2 of the value after a use whose value before it was log2 v. */
static double lrfu_use(double v)
{
    return log2(1.0 + exp2(v));
}

static double expert_policy_value(const struct expert_policy *p, int i, uint64_t now)
{
    return lrfu_value(p->lcrf[i], p->last[i], now, p->period, p->inv_half_life);
}

void expert_policy_touch(struct expert_policy *p, int entry, uint64_t now)
{
    HY_ASSERT(entry >= 0 && entry < p->n);
    HY_ASSERT(now >= p->last[entry]);
    if (p->kind == EXPERT_POLICY_LRFU)
        p->lcrf[entry] = lrfu_use(expert_policy_value(p, entry, now));
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

/* The victim of a keyed-history cache: the evictable entry whose key has
 * the least value, the earlier-filled of equal ones; -1 when none is. */
static int history_victim(const struct expert_history *h, struct sim *s, const uint64_t *filled,
                          int capacity, uint64_t now)
{
    int e = -1;
    double best = 0;
    for (int i = 0; i < capacity; i++) {
        if (!sim_evictable(s, i)) continue;
        const double v = expert_history_value(h, (uint64_t)s->holds[i] + 1, now);
        if (e < 0 || v < best || (v == best && filled[i] < filled[e])) {
            e = i;
            best = v;
        }
    }
    return e;
}

/* expert_tier_simulate's cache, run by p (hits and fills as uses and
 * resets) or, with p NULL, by h (every request a use of its key). */
static double simulate(const struct expert_tier_sim *c, struct expert_policy *p,
                       struct expert_history *h, const int32_t *trace, int n_tok, int n_layer,
                       int k, int n_expert)
{
    const int capacity = c->capacity, n_whole = c->n_whole;
    struct rng r;
    rng_init(&r, c->seed);
    size_t n_keys = (size_t)n_layer * (size_t)n_expert;
    int32_t *where = mem_xmalloc(n_keys * sizeof(*where)); /* key → entry or −1 */
    int32_t *holds = mem_xmalloc((size_t)HY_MAX(capacity, 1) * sizeof(*holds));
    uint64_t *filled = mem_xcalloc((size_t)HY_MAX(capacity, 1), sizeof(*filled));
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
                if (l < n_whole) { /* held whole, outside the cache */
                    hits++;
                    continue;
                }
                if (!p) expert_history_touch(h, (uint64_t)key + 1, now);
                int e = where[key];
                if (e >= 0) {
                    hits++;
                    if (p) expert_policy_touch(p, e, now);
                    continue;
                }
                if (capacity == 0 || !(rng_uniform(&r) < c->admit)) continue; /* not copied */
                e = n_used < capacity ? n_used++
                    : p               ? expert_policy_victim(p, now, sim_evictable, &s)
                                      : history_victim(h, &s, filled, capacity, now);
                if (e < 0) continue; /* capacity < k: served without caching */
                if (holds[e] >= 0) where[holds[e]] = -1;
                holds[e] = key;
                where[key] = e;
                filled[e] = now;
                if (p) {
                    expert_policy_reset(p, e, now);
                    expert_policy_touch(p, e, now);
                }
            }
        }
    free(where);
    free(holds);
    free(filled);
    return (double)hits / (double)total;
}

double expert_policy_simulate(enum expert_policy_kind kind, int capacity, double half_life,
                              const int32_t *trace, int n_tok, int n_layer, int k, int n_expert)
{
    HY_ASSERT(capacity >= 1);
    const struct expert_tier_sim c = {
        .kind = kind, .capacity = capacity, .half_life = half_life, .admit = 1};
    return expert_tier_simulate(&c, trace, n_tok, n_layer, k, n_expert);
}

double expert_tier_simulate(const struct expert_tier_sim *c, const int32_t *trace, int n_tok,
                            int n_layer, int k, int n_expert)
{
    HY_ASSERT(c->capacity >= 0 && c->n_whole >= 0 && n_tok >= 1 && n_layer >= 1 && k >= 1 &&
              n_expert >= 1 && c->half_life > 0);
    struct expert_policy *p = NULL;
    struct expert_history *h = NULL;
    if (c->keyed) {
        h = expert_history_new(c->half_life);
        expert_history_set_period(h, (uint64_t)n_layer);
    } else {
        p = expert_policy_new(c->kind, HY_MAX(c->capacity, 1), c->half_life * n_layer);
        expert_policy_set_period(p, (uint64_t)n_layer);
    }
    const double hit = simulate(c, p, h, trace, n_tok, n_layer, k, n_expert);
    expert_policy_free(p);
    expert_history_free(h);
    return hit;
}

/* ---- keyed history ------------------------------------------------------- */

struct expert_history {
    double half_life;     /* in periods */
    double inv_half_life; /* per unit of `now` */
    uint64_t period;
    uint64_t cap, n; /* slots (a power of two, at most half full), keys held */
    uint64_t *key;   /* [cap] 0: empty; owned */
    double *lcrf;    /* [cap] */
    uint64_t *last;  /* [cap] */
};

/* h's tables of h->cap empty slots. */
static void history_tables_new(struct expert_history *h)
{
    h->key = mem_xcalloc(h->cap, sizeof(*h->key));
    h->lcrf = mem_xcalloc(h->cap, sizeof(*h->lcrf));
    h->last = mem_xcalloc(h->cap, sizeof(*h->last));
}

static void history_tables_free(struct expert_history *h)
{
    free(h->key);
    free(h->lcrf);
    free(h->last);
}

struct expert_history *expert_history_new(double half_life_periods)
{
    HY_ASSERT(half_life_periods > 0);
    struct expert_history *h = mem_xcalloc(1, sizeof(*h));
    h->half_life = half_life_periods;
    expert_history_set_period(h, 1);
    h->cap = 64;
    history_tables_new(h);
    return h;
}

void expert_history_free(struct expert_history *h)
{
    if (!h) return;
    history_tables_free(h);
    free(h);
}

void expert_history_set_period(struct expert_history *h, uint64_t period)
{
    HY_ASSERT(period >= 1);
    h->period = period;
    h->inv_half_life = 1.0 / (h->half_life * (double)period);
}

/* key's slot: where it is, or the empty one where it would go */
static uint64_t history_slot(const struct expert_history *h, uint64_t key)
{
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> 17 & (h->cap - 1);
    while (h->key[i] && h->key[i] != key) i = (i + 1) & (h->cap - 1);
    return i;
}

static void history_grow(struct expert_history *h)
{
    struct expert_history o = *h;
    h->cap *= 2;
    history_tables_new(h);
    for (uint64_t i = 0; i < o.cap; i++) {
        if (!o.key[i]) continue;
        const uint64_t j = history_slot(h, o.key[i]);
        h->key[j] = o.key[i];
        h->lcrf[j] = o.lcrf[i];
        h->last[j] = o.last[i];
    }
    history_tables_free(&o);
}

void expert_history_touch(struct expert_history *h, uint64_t key, uint64_t now)
{
    if (!key) return;
    uint64_t i = history_slot(h, key);
    if (!h->key[i]) {
        if (2 * (h->n + 1) > h->cap) {
            history_grow(h);
            i = history_slot(h, key);
        }
        h->key[i] = key;
        h->lcrf[i] = -INFINITY;
        h->last[i] = now;
        h->n++;
    } else {
        HY_ASSERT(now >= h->last[i]);
        if (now == h->last[i] && h->lcrf[i] > -INFINITY) return; /* once per now */
    }
    h->lcrf[i] = lrfu_use(lrfu_value(h->lcrf[i], h->last[i], now, h->period, h->inv_half_life));
    h->last[i] = now;
}

double expert_history_value(const struct expert_history *h, uint64_t key, uint64_t now)
{
    if (!key) return -INFINITY;
    const uint64_t i = history_slot(h, key);
    if (!h->key[i]) return -INFINITY;
    return lrfu_value(h->lcrf[i], h->last[i], now, h->period, h->inv_half_life);
}

double expert_history_simulate(int capacity, double half_life, const int32_t *trace, int n_tok,
                               int n_layer, int k, int n_expert)
{
    HY_ASSERT(capacity >= 1);
    const struct expert_tier_sim c = {
        .keyed = true, .capacity = capacity, .half_life = half_life, .admit = 1};
    return expert_tier_simulate(&c, trace, n_tok, n_layer, k, n_expert);
}
