/*
 * The expert cache (see expert_cache.h for the definitions and invariants).
 */
#include "store/expert_cache.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/timing.h"
#include "store/coact.h"
#include "store/expert_policy.h"

/* Half-life, in routes (one per MoE layer per step), of the
 * recency+frequency policy's memory: see expert_policy.h for how it was
 * chosen; ages count whole passes over the layers (the policy's period). */
#define XC_HALF_LIFE_ROUTES(n_layer) (EXPERT_POLICY_HALF_LIFE_TOKENS * (double)(n_layer))

enum xstate { X_FREE = 0, X_LOADING, X_READY, X_IN_USE };

struct xentry {
    enum xstate state;
    int layer, expert; /* -1 when FREE */
    int pins, reads;
    bool failed;
    struct io_done fail;
    bool prefetched;    /* read for a guess and not used since */
    uint64_t want;      /* the route number that wants it (0: none) */
    unsigned used;      /* slices released during that route */
    uint8_t *buf;
    uint64_t seg_off[3]; /* where each slice's covering range starts in buf */
    uint64_t data_at[3]; /* the slice's first byte within its covering range */
};

struct expert_cache {
    struct model *m;
    struct io *io;
    struct coact *coact;
    struct expert_policy *pol;
    bool hints;
    int n_layer, n_expert, k;
    int cap;
    uint64_t entry_bytes;
    uint8_t *pool;
    struct xentry *e;
    int *map; /* [layer * n_expert + expert] -> entry, -1 */
    const struct gguf_tensor **t; /* [layer * 3 + which] */
    uint64_t route_no;  /* routes so far (the policy's clock) */
    int cur_layer;
    int last[3];        /* entry acquired last per slice kind, for release */
    /* predictions for a layer made during the previous one, to score them */
    int32_t *pred_hint, *pred_coact; /* [n_expert] */
    int n_pred_hint, n_pred_coact, pred_layer;
    int32_t *scratch;  /* [n_expert] */
    uint64_t *l_hits, *l_misses;
    struct expert_cache_stats st;
    struct io_done done[32];
};

static uint64_t slice_bytes(const struct gguf_tensor *t, int n_expert)
{
    return t->n_bytes / (uint64_t)n_expert;
}

uint64_t expert_cache_entry_bytes(const struct model *m, uint32_t align)
{
    static const enum model_wrole roles[3] = {MODEL_W_FFN_GATE_EXPS, MODEL_W_FFN_UP_EXPS,
                                              MODEL_W_FFN_DOWN_EXPS};
    uint64_t best = 0;
    for (int l = 0; l < m->hp->n_layer; l++) {
        uint64_t b = 0;
        for (int r = 0; r < 3; r++) {
            const struct gguf_tensor *t = m->bound[(size_t)(l + 1) * MODEL_W_COUNT + roles[r]];
            if (!t) continue;
            /* the covering range of a slice is at most one block longer at each end */
            b += (slice_bytes(t, (int)m->hp->n_expert) + 2 * (uint64_t)align - 1) / align * align;
        }
        if (b > best) best = b;
    }
    return best;
}

/* ---- completions ------------------------------------------------------ */

static void free_entry(struct expert_cache *c, int i)
{
    struct xentry *x = &c->e[i];
    if (x->layer >= 0) c->map[x->layer * c->n_expert + x->expert] = -1;
    x->layer = x->expert = -1;
    x->state = X_FREE;
    x->prefetched = false;
    x->want = 0;
}

static void reap(struct expert_cache *c, bool block)
{
    int k = io_wait(c->io, c->done, (int)(sizeof c->done / sizeof c->done[0]), block);
    for (int i = 0; i < k; i++) {
        const struct io_done *d = &c->done[i];
        struct xentry *x = &c->e[d->r.tag];
        HY_ASSERT(x->state == X_LOADING && x->reads > 0);
        if (io_check(c->io, d) != HY_OK && !x->failed) {
            x->failed = true;
            x->fail = *d;
        }
        err_clear();
        c->st.bytes_read += d->res > 0 ? (uint64_t)d->res : 0;
        if (--x->reads == 0) {
            if (x->failed) {
                /* keep the failure for the acquire that needs it */
                bool failed = true;
                struct io_done f = x->fail;
                free_entry(c, (int)d->r.tag);
                x->failed = failed;
                x->fail = f;
            } else {
                x->state = X_READY;
            }
        }
    }
}

static void drain(struct expert_cache *c, int i)
{
    while (c->e[i].reads > 0) reap(c, true);
}

/* ---- choosing and filling entries ---------------------------------------- */

struct victim_ctx {
    const struct expert_cache *c;
    bool allow_used; /* also entries of the current route whose use is over */
};

static bool evictable(void *user, int i)
{
    const struct victim_ctx *v = user;
    const struct xentry *x = &v->c->e[i];
    if (x->pins > 0 || x->state == X_LOADING) return false;
    if (x->want == v->c->route_no && x->state != X_FREE)
        return v->allow_used && x->used == 7u;
    return true;
}

/* A free entry, or the policy's victim; -1 when every entry is busy. */
static int take_entry(struct expert_cache *c, bool allow_used)
{
    for (int i = 0; i < c->cap; i++)
        if (c->e[i].state == X_FREE && c->e[i].reads == 0) return i;
    struct victim_ctx v = {c, allow_used};
    int i = expert_policy_victim(c->pol, c->route_no, evictable, &v);
    if (i < 0) return -1;
    if (c->e[i].prefetched) c->st.prefetch_wasted++;
    free_entry(c, i);
    return i;
}

/* Starts the reads of (layer, expert) into entry i. */
static enum hy_status load(struct expert_cache *c, int i, int layer, int expert)
{
    struct xentry *x = &c->e[i];
    HY_ASSERT(x->state == X_FREE && x->pins == 0 && x->reads == 0);
    x->layer = layer;
    x->expert = expert;
    x->failed = false;
    x->used = 0;
    x->state = X_LOADING;
    c->map[layer * c->n_expert + expert] = i;
    expert_policy_reset(c->pol, i, c->route_no);
    const uint32_t al = io_align(c->io);
    uint64_t at = 0;
    enum hy_status st = HY_OK;
    for (int r = 0; r < 3 && st == HY_OK; r++) {
        const struct gguf_tensor *t = c->t[layer * 3 + r];
        const uint64_t sb = slice_bytes(t, c->n_expert);
        uint64_t a_off, a_len;
        io_cover(al, t->file_off + (uint64_t)expert * sb, sb, &a_off, &a_len);
        x->seg_off[r] = at;
        x->data_at[r] = t->file_off + (uint64_t)expert * sb - a_off;
        int n = 0;
        st = io_submit_range(c->io, a_off, a_len, x->data_at[r] + sb, x->buf + at, (uint64_t)i, &n);
        x->reads += n;
        at += a_len;
    }
    HY_ASSERT(at <= c->entry_bytes);
    if (st) {
        drain(c, i);
        free_entry(c, i);
        return st;
    }
    return HY_OK;
}

/* Reads ahead the guessed experts of layer that are not cached. */
static void prefetch(struct expert_cache *c, int layer, const int32_t *ids, int n)
{
    for (int j = 0; j < n; j++) {
        if (c->map[layer * c->n_expert + ids[j]] >= 0) continue;
        int i = take_entry(c, false);
        if (i < 0) return;
        if (load(c, i, layer, ids[j]) != HY_OK) {
            err_clear();
            return;
        }
        c->e[i].prefetched = true;
        c->st.prefetched++;
    }
}

/* ---- the store's calls ---------------------------------------------------- */

static void score(uint64_t *tp, uint64_t *pred, uint64_t *actual, const int32_t *p, int np,
                  const int32_t *a, int64_t na)
{
    for (int i = 0; i < np; i++)
        for (int64_t j = 0; j < na; j++)
            if (p[i] == a[j]) (*tp)++;
    *pred += (uint64_t)np;
    *actual += (uint64_t)na;
}

void expert_cache_route(struct expert_cache *c, int layer, const int32_t *ids, int64_t n,
                        const bool *elsewhere)
{
    c->route_no++;
    c->cur_layer = layer;
    reap(c, false);
    /* score the guesses made for this layer (single-token steps) */
    if (c->pred_layer == layer && n <= c->k) {
        if (c->n_pred_hint)
            score(&c->st.hint_tp, &c->st.hint_pred, &c->st.hint_actual, c->pred_hint,
                  c->n_pred_hint, ids, n);
        if (c->n_pred_coact)
            score(&c->st.coact_tp, &c->st.coact_pred, &c->st.coact_actual, c->pred_coact,
                  c->n_pred_coact, ids, n);
    }
    c->pred_layer = -1;
    c->n_pred_hint = c->n_pred_coact = 0;
    /* the backend's own: neither looked up nor read */
    for (int64_t j = 0; elsewhere && j < n; j++) c->st.held_elsewhere += elsewhere[j];
    /* hits first, so that no miss evicts a hit */
    for (int64_t j = 0; j < n; j++) {
        if (elsewhere && elsewhere[j]) continue;
        int i = c->map[layer * c->n_expert + ids[j]];
        if (i < 0) continue;
        struct xentry *x = &c->e[i];
        c->st.hits++;
        c->l_hits[layer]++;
        if (x->prefetched) {
            c->st.prefetch_used++;
            x->prefetched = false;
        }
        x->want = c->route_no;
        x->used = 0;
        expert_policy_touch(c->pol, i, c->route_no);
    }
    for (int64_t j = 0; j < n; j++) {
        if ((elsewhere && elsewhere[j]) || c->map[layer * c->n_expert + ids[j]] >= 0) continue;
        c->st.misses++;
        c->l_misses[layer]++;
        int i = take_entry(c, false);
        if (i < 0) continue; /* read when acquired */
        if (load(c, i, layer, ids[j]) != HY_OK) {
            err_clear(); /* the acquire reads it again and reports */
            continue;
        }
        c->e[i].want = c->route_no;
        expert_policy_touch(c->pol, i, c->route_no);
    }
    /* guesses for the next layer from co-activation, when a single token routes */
    if (c->coact && layer + 1 < c->n_layer && n <= c->k) {
        int np = coact_predict_next(c->coact, layer, ids, (int)n, c->scratch, c->k);
        memcpy(c->pred_coact, c->scratch, (size_t)np * sizeof(int32_t));
        c->n_pred_coact = np;
        c->pred_layer = layer + 1;
        if (!c->hints) prefetch(c, layer + 1, c->pred_coact, np);
    }
}

void expert_cache_hint(struct expert_cache *c, int layer, const int32_t *ids, int64_t n,
                       const bool *elsewhere)
{
    if (!c->hints || layer >= c->n_layer) return;
    int np = (int)(n < c->k ? n : c->k);
    memcpy(c->pred_hint, ids, (size_t)np * sizeof(int32_t));
    c->n_pred_hint = np;
    c->pred_layer = layer;
    /* read ahead what the backend does not hold */
    int na = 0;
    for (int j = 0; j < np; j++)
        if (!elsewhere || !elsewhere[j]) c->scratch[na++] = ids[j];
    prefetch(c, layer, c->scratch, na);
}

void expert_cache_routed(struct expert_cache *c, const int32_t *ids, int64_t n_tok,
                         int64_t n_layer, int64_t k)
{
    if (!c->coact) return;
    for (int64_t t = 0; t < n_tok; t++) coact_observe(c->coact, ids + t * n_layer * k, (int)k);
}

void expert_cache_warm(struct expert_cache *c)
{
    if (!c->coact || coact_tokens(c->coact) == 0) return;
    /* per layer an equal share of the entries a route does not need */
    const int spare = c->cap - 2 * c->k;
    if (spare <= 0) return;
    const int per = spare / c->n_layer, rem = spare % c->n_layer;
    for (int l = 0; l < c->n_layer; l++) {
        const int quota = per + (l < rem);
        if (quota == 0) break;
        int np = coact_popular(c->coact, l, c->scratch, quota);
        for (int j = 0; j < np; j++) {
            if (c->map[l * c->n_expert + c->scratch[j]] >= 0) continue;
            int i = take_entry(c, false);
            if (i < 0 || load(c, i, l, c->scratch[j]) != HY_OK) {
                err_clear();
                return;
            }
            c->e[i].prefetched = true;
            c->st.prefetched++;
        }
    }
}

enum hy_status expert_cache_acquire(struct expert_cache *c, int layer, int which, int expert,
                                    const uint8_t **data)
{
    int i = c->map[layer * c->n_expert + expert];
    if (i < 0) {
        /* not started at the route: the cache was full of this route's experts */
        i = take_entry(c, true);
        HY_ASSERT(i >= 0); /* capacity ≥ 2k leaves an entry whose use is over */
        enum hy_status st = load(c, i, layer, expert);
        if (st) return st;
        c->e[i].want = c->route_no;
        c->st.late_loads++;
    }
    struct xentry *x = &c->e[i];
    if (x->state == X_LOADING) {
        int64_t t0 = timing_now_us();
        c->st.stalls++;
        drain(c, i);
        c->st.stall_us += timing_now_us() - t0;
    }
    if (x->state == X_FREE) {
        struct io_done d = x->fail;
        x->failed = false;
        return io_check(c->io, &d);
    }
    if (x->prefetched) { /* a guess used by an acquire of a route that did not see it */
        c->st.prefetch_used++;
        x->prefetched = false;
    }
    x->pins++;
    x->state = X_IN_USE;
    c->last[which] = i;
    *data = x->buf + x->seg_off[which] + x->data_at[which];
    return HY_OK;
}

void expert_cache_release(struct expert_cache *c, int layer, int which)
{
    (void)layer;
    int i = c->last[which];
    HY_ASSERT(i >= 0);
    struct xentry *x = &c->e[i];
    HY_ASSERT(x->pins > 0);
    if (--x->pins == 0) x->state = X_READY;
    x->used |= 1u << which;
    c->last[which] = -1;
}

/* ---- open / close --------------------------------------------------------- */

enum hy_status expert_cache_open(const struct expert_cache_config *cfg, struct expert_cache **out)
{
    *out = NULL;
    struct model *m = cfg->m;
    struct expert_cache *c = mem_xcalloc(1, sizeof *c);
    c->m = m;
    c->io = cfg->io;
    c->coact = cfg->coact;
    c->hints = cfg->hints;
    c->n_layer = (int)m->hp->n_layer;
    c->n_expert = (int)m->hp->n_expert;
    c->k = (int)m->hp->n_expert_used;
    c->cap = cfg->capacity;
    if (c->cap < 2 * c->k) c->cap = 2 * c->k;
    c->cur_layer = -1;
    c->pred_layer = -1;
    c->last[0] = c->last[1] = c->last[2] = -1;
    c->entry_bytes = expert_cache_entry_bytes(m, io_align(c->io));
    c->t = mem_xcalloc((size_t)c->n_layer * 3, sizeof *c->t);
    static const enum model_wrole roles[3] = {MODEL_W_FFN_GATE_EXPS, MODEL_W_FFN_UP_EXPS,
                                              MODEL_W_FFN_DOWN_EXPS};
    for (int l = 0; l < c->n_layer; l++)
        for (int r = 0; r < 3; r++)
            c->t[l * 3 + r] = m->bound[(size_t)(l + 1) * MODEL_W_COUNT + roles[r]];
    c->map = mem_xcalloc((size_t)c->n_layer * (size_t)c->n_expert, sizeof(int));
    for (int i = 0; i < c->n_layer * c->n_expert; i++) c->map[i] = -1;
    c->e = mem_xcalloc((size_t)c->cap, sizeof *c->e);
    c->pred_hint = mem_xcalloc((size_t)c->n_expert, sizeof(int32_t));
    c->pred_coact = mem_xcalloc((size_t)c->n_expert, sizeof(int32_t));
    c->scratch = mem_xcalloc((size_t)c->n_expert, sizeof(int32_t));
    c->l_hits = mem_xcalloc((size_t)c->n_layer, sizeof(uint64_t));
    c->l_misses = mem_xcalloc((size_t)c->n_layer, sizeof(uint64_t));
    const uint64_t bytes = c->entry_bytes * (uint64_t)c->cap;
    const uint64_t huge = (uint64_t)2 << 20;
    c->pool = mem_aligned_alloc((size_t)huge, (size_t)((bytes + huge - 1) / huge * huge));
    c->pol = expert_policy_new(cfg->lru ? EXPERT_POLICY_LRU : EXPERT_POLICY_LRFU, c->cap,
                               XC_HALF_LIFE_ROUTES(c->n_layer));
    if (c->pol) expert_policy_set_period(c->pol, (uint64_t)c->n_layer);
    if (!c->pool || !c->pol) {
        expert_cache_close(c);
        return err_set(HY_ERR_OOM, "expert cache: cannot allocate %d entries of %" PRIu64 " bytes",
                       cfg->capacity, c->entry_bytes);
    }
    for (int i = 0; i < c->cap; i++) {
        c->e[i] = (struct xentry){.layer = -1, .expert = -1,
                                  .buf = c->pool + c->entry_bytes * (uint64_t)i};
    }
    c->st.capacity = c->cap;
    c->st.entry_bytes = c->entry_bytes;
    *out = c;
    return HY_OK;
}

void expert_cache_memory(const struct expert_cache *c, void **p, uint64_t *bytes)
{
    const uint64_t huge = (uint64_t)2 << 20;
    *p = c->pool;
    *bytes = (c->entry_bytes * (uint64_t)c->cap + huge - 1) / huge * huge;
}

void expert_cache_close(struct expert_cache *c)
{
    if (!c) return;
    if (c->e) {
        for (int i = 0; i < c->cap; i++) {
            drain(c, i);
            if (c->e[i].prefetched) c->st.prefetch_wasted++;
        }
    }
    expert_policy_free(c->pol);
    mem_aligned_free(c->pool);
    free(c->e);
    free(c->map);
    free(c->t);
    free(c->pred_hint);
    free(c->pred_coact);
    free(c->scratch);
    free(c->l_hits);
    free(c->l_misses);
    free(c);
}

struct expert_cache_stats expert_cache_stats(const struct expert_cache *c)
{
    struct expert_cache_stats s = c->st;
    s.layer_hits = c->l_hits;
    s.layer_misses = c->l_misses;
    return s;
}

enum hy_status expert_cache_check(const struct expert_cache *c)
{
    int reads = 0;
    for (int i = 0; i < c->cap; i++) {
        const struct xentry *x = &c->e[i];
        reads += x->reads;
        const bool holds = x->layer >= 0;
        if ((x->state == X_FREE) == holds)
            return err_set(HY_ERR_INTERNAL, "expert cache: entry %d state %d holds (%d, %d)", i,
                           x->state, x->layer, x->expert);
        if (holds && c->map[x->layer * c->n_expert + x->expert] != i)
            return err_set(HY_ERR_INTERNAL, "expert cache: entry %d holds (%d, %d), the map says %d",
                           i, x->layer, x->expert, c->map[x->layer * c->n_expert + x->expert]);
        if ((x->state == X_LOADING) != (x->reads > 0) || (x->state == X_IN_USE) != (x->pins > 0) ||
            (x->state == X_LOADING && x->pins))
            return err_set(HY_ERR_INTERNAL, "expert cache: entry %d state %d with %d reads, %d pins",
                           i, x->state, x->reads, x->pins);
    }
    for (int j = 0; j < c->n_layer * c->n_expert; j++) {
        int i = c->map[j];
        if (i >= 0 && (c->e[i].layer * c->n_expert + c->e[i].expert != j))
            return err_set(HY_ERR_INTERNAL, "expert cache: map %d points at entry %d holding (%d, %d)",
                           j, i, c->e[i].layer, c->e[i].expert);
    }
    if (io_pending(c->io) != reads)
        return err_set(HY_ERR_INTERNAL, "expert cache: %d reads outstanding, entries account for %d",
                       io_pending(c->io), reads);
    if (c->st.hits + c->st.misses != 0 && c->st.prefetch_used > c->st.prefetched)
        return err_set(HY_ERR_INTERNAL, "expert cache: %" PRIu64 " prefetches used of %" PRIu64,
                       c->st.prefetch_used, c->st.prefetched);
    return HY_OK;
}
