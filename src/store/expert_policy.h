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
 * in its units. The store should pass the MoE route number, token ·
 * n_moe_layer + moe_layer_idx, half_life = EXPERT_POLICY_HALF_LIFE_TOKENS ·
 * n_moe_layer, and set the period to n_moe_layer (what
 * expert_policy_simulate does): an expert of a layer can be used at most once
 * per token, so whole tokens are the natural unit of age.
 *
 * LRFU (Lee et al., 2001), adapted to the layer walk. Each entry keeps
 * lcrf = log2 of its combined recency-frequency value at its last use; a use
 * at time now sets crf ← 1 + crf · 2^(−age / half_life), and the victim is
 * the evictable entry with the smallest crf · 2^(−age / half_life), where
 * age = now − last rounded down to a whole number of periods
 * (expert_policy_set_period; 1 = the classic LRFU). With period = the number
 * of MoE layers and now counting routes, age counts the passes over the
 * entry's layer it missed, so an expert of layer l − 1 used this token and
 * one of layer l + 1 used last token look the same: both were used at their
 * last chance. Equal values: the later `last` goes (its next chance is the
 * farthest away; this is what stops the loop pattern, where LRU evicts the
 * layers about to come and gets 0 % once the cache is below one token's
 * experts). Entries reset and not used since have value 0 and go first.
 * With period 1 and a half-life → 0 this is exactly LRU (tested).
 *
 * Measured (bench/moe_policy, tests/test_expert_policy.c) on the routing
 * of `hypura synth` models over a sampled text: LRFU beats LRU on average
 * over cache sizes of 12.5 .. 75 % of all experts (Mixtral shape, 8 layers:
 * +19, +6, +18, +12, +3 points; Qwen3-MoE shape, 128 experts top-8: +4, +5,
 * +3, +1, 0). LRU fails badly on the layer loop (0 % once the cache is below
 * one token's experts) and only wins where the cache holds exactly one
 * token's experts and tokens repeat their predecessor's choices. Half-life:
 * a sweep over 0.5 .. 256 tokens peaks at 8 (Mixtral) to 16 (Qwen); 8 is
 * the default.
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

#define EXPERT_POLICY_HALF_LIFE_TOKENS 8.0

enum expert_policy_kind { EXPERT_POLICY_LRFU = 0, EXPERT_POLICY_LRU };

const char *expert_policy_kind_name(enum expert_policy_kind kind); /* "lrfu", "lru" */

struct expert_policy;

/* A policy over n_entries ≥ 1 entries, all empty (never used: the first to
 * go). half_life > 0 in units of `now`; ignored by LRU. Aborts on OOM
 * (bookkeeping: 16 bytes per entry). */
struct expert_policy *expert_policy_new(enum expert_policy_kind kind, int n_entries,
                                        double half_life);

/* Ages count whole periods only (default 1): pass the number of MoE layers
 * when `now` counts routes (see the top). */
void expert_policy_set_period(struct expert_policy *p, uint64_t period);

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

/* A keyed history: the LRFU value of each key (a weight's, not 0) over all
 * its uses, cached or not, for a cache whose entries are filled by others
 * (the CUDA backend's VRAM cache, filled by the copies its split and its
 * prefetch choose): a slice the router picks often keeps a high value while
 * the CPU computes it, so that the fill that brings it in can keep it, and a
 * fill of a slice seldom picked goes first. Values as the policy's
 * (log2 of 1 + the decayed value at the last use, each use once per `now`),
 * with ages in whole periods and the half-life in periods. Grows as keys
 * come (16 bytes and a key each; aborts on OOM). One thread at a time. */
struct expert_history;

struct expert_history *expert_history_new(double half_life_periods);
void expert_history_free(struct expert_history *h); /* NULL is a no-op */

/* Ages count whole periods of `now` (default 1). */
void expert_history_set_period(struct expert_history *h, uint64_t period);

/* A use of key at time now (>= its last one); a second use at the same now
 * counts once. key 0 is ignored. */
void expert_history_touch(struct expert_history *h, uint64_t key, uint64_t now);

/* log2 of key's value at now; -INFINITY for a key never used. */
double expert_history_value(const struct expert_history *h, uint64_t key, uint64_t now);

/* The hit rate of expert_policy_simulate's cache (same trace and arguments)
 * run with victims chosen by an expert_history of every use: the evictable
 * entry whose key has the least value (the earlier-filled of equal ones). */
double expert_history_simulate(int capacity, double half_life, const int32_t *trace, int n_tok,
                               int n_layer, int k, int n_expert);

/* A GPU tier in front of the host, simulated over a trace as
 * expert_policy_simulate's cache: the experts of layers [0, n_whole) held
 * whole (outside the cache: the plan's whole layers), a cache of capacity
 * experts (0: none) over the other layers' in front of the host, where each
 * miss is cached only with probability admit (the copies a split chooses;
 * an expert the CPU computes where it lies is not copied), drawn from seed.
 * The cache is run by kind, or with keyed by an expert_history of every
 * pick; half_life in tokens. Returns the share of all picks held on the
 * GPU. */
struct expert_tier_sim {
    enum expert_policy_kind kind;
    bool keyed;
    int capacity, n_whole;
    double half_life, admit;
    uint64_t seed;
};

double expert_tier_simulate(const struct expert_tier_sim *c, const int32_t *trace, int n_tok,
                            int n_layer, int k, int n_expert);

#endif
