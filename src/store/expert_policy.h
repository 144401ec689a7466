/*
 * Eviction policy of the expert cache (issue 8, item 2): which cached
 * (layer, expert) entry to give up when a missed expert needs room.
 *
 * The cache (the weight store) owns N entries, indices 0 .. N − 1, and which
 * expert each holds; the policy sees only indices, the times they were used
 * (expert_policy_touch) and refilled (expert_policy_reset), and asks the
 * store which entries may go (pinned ones, and the ones the current layer
 * needs, may not). It allocates nothing after expert_policy_new.
 *
 * Time: `now` is any non-decreasing counter the caller chooses; half_life is
 * in its units. The store should pass the MoE step, token · n_moe_layer +
 * moe_layer_idx, and half_life = EXPERT_POLICY_HALF_LIFE_TOKENS · n_moe_layer
 * (what expert_policy_simulate does): an expert of a layer can be used at
 * most once per token, so decay per token is the natural scale, and the step
 * orders the layers within a token for the recency tie-break and for LRU.
 *
 * LRFU (Lee et al., 2001). Each entry keeps its combined recency-frequency
 * value at its last use, crf, updated on a use at time now as
 *     crf ← 1 + crf · 2^(−(now − last) / half_life),   last ← now,
 * so crf is the sum of 2^(−age / half_life) over all its past uses. The
 * victim is the evictable entry with the smallest crf · 2^(−(now − last) /
 * half_life). Comparing log2 of that, log2(crf) + last / half_life − now /
 * half_life, the last term is common to every entry, so each entry keeps
 * key = log2(crf) + last / half_life, updated on use, and the scan compares
 * keys without calling exp2 and without `now`. Ties (equal keys, e.g. −∞ for
 * entries never used since reset) go to the older `last`, then the lower index.
 * A half-life → 0 makes the key order the `last` order: LRU. A half-life → ∞
 * makes it LFU.
 *
 * Why LRFU, and the half-life. The layers are walked in order every token,
 * so with a cache smaller than the working set plain LRU evicts the entries
 * of the layers about to come next (the classic loop pattern) and keeps
 * one-off experts as long as hot ones; frequency keeps each layer's hot
 * experts across the sweep. But routing drifts with the text (a new topic,
 * code after prose), so pure frequency would cling to a stale hot set:
 * a half-life of a few tens of tokens forgets it. Measured on the synthetic
 * trace of tests/test_expert_policy.c (Zipf popularity per layer, repeats of
 * the previous token's experts, phase changes every ~200 tokens) at
 * capacities 12.5 %, 25 % and 50 % of all experts: hit rates are flat within
 * about a point for half-lives of 16 .. 128 tokens, lose at 4 (too close to
 * LRU) and slowly at ≥ 1024 (too close to LFU after a phase change); 32 is the
 * default (the test prints the table).
 *
 * Rejected: ARC/2Q (tuned for scans of one-off blocks, which routing does
 * not produce; more state for no measured gain here), a heap (the scan is
 * O(N) once per miss, N ≤ a few thousand, cheaper than the read it precedes,
 * and a heap would need the evictable test ahead of time).
 *
 * Threads: one thread at a time per policy.
 */
#ifndef HY_STORE_EXPERT_POLICY_H
#define HY_STORE_EXPERT_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define EXPERT_POLICY_HALF_LIFE_TOKENS 32.0

enum expert_policy_kind { EXPERT_POLICY_LRFU = 0, EXPERT_POLICY_LRU };

const char *expert_policy_kind_name(enum expert_policy_kind kind); /* "lrfu", "lru" */

struct expert_policy;

/* A policy over n_entries ≥ 1 entries, all empty (never used: the first to
 * go). half_life > 0 in units of `now`; ignored by LRU. Aborts on OOM
 * (bookkeeping: 16 bytes per entry). */
struct expert_policy *expert_policy_new(enum expert_policy_kind kind, int n_entries,
                                        double half_life, int period);

/* NULL is a no-op. */
void expert_policy_free(struct expert_policy *p);

/* A use of entry at time now (≥ the entry's last time). */
void expert_policy_touch(struct expert_policy *p, int entry, uint64_t now);

/* The entry got new contents at time now: its history is forgotten. It
 * counts as not yet used (LRFU value 0, so an expert prefetched and never
 * used goes first) but as recent for LRU and for the tie-break; a load on
 * demand is a reset followed by a touch. */
void expert_policy_reset(struct expert_policy *p, int entry, uint64_t now);

/* The entry to evict among those for which evictable(user, entry) is true
 * (evictable NULL: all are); -1 when none is. O(N). */
int expert_policy_victim(const struct expert_policy *p, uint64_t now,
                         bool (*evictable)(void *user, int entry), void *user);

/* The hit rate of a cache of capacity entries run by this policy over trace
 * (int32 [n_tok][n_layer][k] expert ids in [0, n_expert)): for each token,
 * for each layer in order, for each of the k experts: a hit when
 * (layer, expert) is cached, else a miss that loads it into a free entry or
 * the victim among entries the current layer's k experts do not need (with
 * capacity < k it may not be cached at all). half_life in tokens (scaled by
 * n_layer to steps, see the top). Allocates its own bookkeeping. */
double expert_policy_simulate(enum expert_policy_kind kind, int capacity, double half_life,
                              const int32_t *trace, int n_tok, int n_layer, int k, int n_expert);

#endif
