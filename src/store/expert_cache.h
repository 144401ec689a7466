/*
 * The expert cache of the weight store's expert-stream mode (DESIGN.md §5).
 *
 * Definitions.
 *   expert slice  expert e of layer l: its rows of the three stacked tensors
 *                 blk.l.ffn_{gate,up,down}_exps, three contiguous byte ranges
 *                 of the file (e · n_bytes / n_expert, one per tensor).
 *   entry         a buffer holding one expert slice (each range's aligned
 *                 covering read); `capacity` entries allocated at open. An
 *                 entry is FREE, LOADING (reads in flight), READY or IN_USE
 *                 (pinned by the forward pass), as the store's pool slots.
 *   route         the experts a layer's router picked for the tokens being
 *                 evaluated (model_route): the union over a batch, each read
 *                 at most once per route.
 *   wanted        an entry of the current route not yet used by it: never
 *                 evicted, so that what the route started reading stays.
 *   prefetch      a read issued for a guess (the next layer's router on the
 *                 current hidden state, model_hint; co-activation statistics,
 *                 coact.h) while the current layer computes.
 *
 * Per route: every picked expert found in the cache (READY, or LOADING
 * because a prefetch got there first) is a hit, the others misses, whose
 * reads start at once, all of the layer's reads in flight together. Then
 * the predictions for the next layer are read ahead into entries that are
 * neither wanted nor pinned, chosen by the eviction policy
 * (expert_policy.h: recency and frequency). A route larger than the cache
 * (a prompt batch touching every expert) reads what fits and the rest when
 * the forward pass acquires it, reusing entries whose use is over.
 *
 * Counters, per unique (layer, expert) per route: hits, misses, those the
 * backend held itself (a GPU's VRAM cache in front of this one), and of the
 * prefetched entries those used and those evicted unused (wasted); bytes
 * read, stalls (an acquire that waited) and their time; per layer hits and
 * misses; precision and recall of each predictor against the next route of
 * single-token steps.
 *
 * Invariants (expert_cache_check): an entry holds (layer, expert) ⇔ the map
 * points at it; FREE ⇔ no expert; LOADING ⇔ reads > 0, unpinned; IN_USE ⇔
 * pins > 0; the I/O layer's outstanding reads equal the entries' sum.
 */
#ifndef HY_STORE_EXPERT_CACHE_H
#define HY_STORE_EXPERT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "io/io.h"
#include "model/model.h"

struct coact;

struct expert_cache_stats {
    uint64_t hits, misses;
    uint64_t held_elsewhere; /* routed experts the backend held itself (model_route) */
    uint64_t prefetched, prefetch_used, prefetch_wasted;
    uint64_t bytes_read;
    uint64_t stalls;
    int64_t stall_us;
    uint64_t late_loads; /* misses read at acquire (a route larger than the cache) */
    /* predictors against the next single-token route: true positives, predicted, actual */
    uint64_t hint_tp, hint_pred, hint_actual;
    uint64_t coact_tp, coact_pred, coact_actual;
    int capacity;
    uint64_t entry_bytes;
    const uint64_t *layer_hits, *layer_misses; /* [n_layer] */
};

struct expert_cache_config {
    struct model *m;      /* borrowed */
    struct io *io;        /* borrowed; the cache reaps every completion on it */
    int capacity;         /* entries; at least 2 * n_expert_used */
    struct coact *coact;  /* borrowed; NULL: no co-activation prediction */
    bool hints;           /* use model_hint's guesses */
    bool lru;             /* plain LRU instead of the recency+frequency policy (tests, benches) */
};

struct expert_cache;

HY_MUST_CHECK enum hy_status expert_cache_open(const struct expert_cache_config *cfg,
                                               struct expert_cache **out);
/* Waits for reads in flight, counts unused prefetches as wasted, frees. */
void expert_cache_close(struct expert_cache *c);

/* The entries' memory (one allocation), for registering it with a GPU backend. */
void expert_cache_memory(const struct expert_cache *c, void **p, uint64_t *bytes);

/* Bytes one entry takes (the largest expert slice's covering reads). */
uint64_t expert_cache_entry_bytes(const struct model *m, uint32_t align);

/* elsewhere (NULL: none): model_route's; those experts are counted in
 * held_elsewhere, not as hits or misses, and not read (model_hint's: not
 * read ahead). */
void expert_cache_route(struct expert_cache *c, int layer, const int32_t *ids, int64_t n,
                        const bool *elsewhere);
void expert_cache_hint(struct expert_cache *c, int layer, const int32_t *ids, int64_t n,
                       const bool *elsewhere);
void expert_cache_routed(struct expert_cache *c, const int32_t *ids, int64_t n_tok,
                         int64_t n_layer, int64_t k);
/* Reads the most popular experts of every layer (from the co-activation
 * statistics) into free entries, leaving room for one route. */
void expert_cache_warm(struct expert_cache *c);

/* which: 0 gate, 1 up, 2 down. byte_off within the expert's slice. */
HY_MUST_CHECK enum hy_status expert_cache_acquire(struct expert_cache *c, int layer, int which,
                                                  int expert, const uint8_t **data);
void expert_cache_release(struct expert_cache *c, int layer, int which);

struct expert_cache_stats expert_cache_stats(const struct expert_cache *c);
HY_MUST_CHECK enum hy_status expert_cache_check(const struct expert_cache *c);

#endif
