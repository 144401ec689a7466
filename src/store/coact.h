/*
 * Co-activation statistics of a Mixture-of-Experts model's router, persisted
 * per model so that expert prefetch is informed from the first token of the
 * next run (issue 8, item 3a).
 *
 * What it counts, per token (coact_observe), for the experts chosen at every
 * MoE layer:
 *   pop[l][a]        tokens that chose expert a at layer l (popularity);
 *   with[l][a][b]    tokens that chose a and b together at layer l (a ≠ b;
 *                    symmetric, both halves stored so that a row is one
 *                    contiguous read);
 *   trans[l][a][b]   tokens that chose a at layer l and b at layer l + 1
 *                    (l < n_layer − 1).
 * What it answers: the experts of layer l + 1 likely to follow the ones
 * chosen at l (coact_predict_next), the experts of l likely to come with
 * given ones (coact_predict_with), and the most popular experts of a layer
 * (coact_popular, for warming a cold cache). It does not decide what to
 * prefetch or evict: the weight store does, with these as inputs.
 *
 * Rejected: a model of the router itself (the next layer's gate applied to
 * the current hidden state is the other predictor, in the forward pass);
 * decayed counts (a model's routing statistics are a property of the model
 * and the kind of text, and the file must mean the same thing on every run);
 * uint64 counts (twice the memory and file for no gain, see saturation).
 *
 * Invariants:
 *   1. Every count is < COACT_COUNT_HALVE_AT after coact_observe returns:
 *      when an increment reaches it, every count (not the token count) is
 *      halved, which keeps every ratio the predictions use (to within
 *      rounding) and never wraps.
 *   2. For ids that are distinct within a layer: trans[l][a][b] ≤ pop[l][a]
 *      and with[l][a][b] ≤ pop[l][a]; halving keeps this (floor is monotone).
 *   3. A loaded file passed every check below; anything else starts empty.
 *
 * File <dir>/coact-<16 lowercase hex digits of the model key>.bin, all
 * integers little-endian:
 *      offset  size                       field
 *        0      8                          magic "HYCOACT1"
 *        8      4                          version (1)
 *       12      4                          n_layer
 *       16      4                          n_expert
 *       20      4                          reserved, 0
 *       24      8                          model key (coact_model_key)
 *       32      8                          tokens observed
 *       40      4·L·E                      pop   u32[L][E]
 *        …      4·L·E·E                    with  u32[L][E][E]
 *        …      4·(L−1)·E·E                trans u32[L−1][E][E]
 *      end−8    8                          FNV-1a 64 of every byte before it
 * The size is therefore fixed by the shape; a file of another size, another
 * magic, version, shape or key, or a failed checksum is ignored with one
 * warning. coact_save writes <path>.tmp.<pid>, fsyncs it and renames it over
 * the path, so a reader sees the old file or the new one, never half of one.
 * For 48 layers × 128 experts the file (and the memory) is about 6.3 MB.
 *
 * Threads: one object is used by one thread at a time (the forward's); the
 * predictions are const and may run concurrently with each other, not with
 * coact_observe. Memory: all counts are allocated at open; observe and the
 * predictions allocate nothing.
 */
#ifndef HY_STORE_COACT_H
#define HY_STORE_COACT_H

#include <stdint.h>

#include "core/base.h"

#define COACT_MAX_EXPERT     1024          /* more: HY_ERR_UNSUPPORTED from coact_open */
#define COACT_COUNT_HALVE_AT (1u << 31)    /* invariant 1 */

struct coact;

/* Opens the statistics of a model with n_layer MoE layers (≥ 1) of n_expert
 * experts (1 .. COACT_MAX_EXPERT). model_key identifies the model file
 * (coact_model_key). dir is the cache directory (e.g. ~/.cache/hypura),
 * borrowed for this call only; NULL: no persistence (coact_save is a no-op).
 * A valid file of the same shape and key is loaded. A missing file starts
 * empty silently; an unreadable, truncated, corrupt or mismatching one starts
 * empty with one LOG_W naming the file and why (it is overwritten by the next
 * coact_save). The directory is not created here but by coact_save.
 * Errors: HY_ERR_INVALID_ARG for a shape out of range (message names it),
 * HY_ERR_UNSUPPORTED for n_expert > COACT_MAX_EXPERT. *out is NULL on error. */
HY_MUST_CHECK enum hy_status coact_open(int n_layer, int n_expert, uint64_t model_key,
                                        const char *dir, struct coact **out);

/* Frees c; does not save. NULL is a no-op. */
void coact_close(struct coact *c);

/* One token's choices at every layer: ids[l * k + j], l < n_layer, j < k,
 * each in [0, n_expert) (asserted: they come from our router). Ids repeated
 * within a layer are counted once per occurrence in pop and trans and never
 * paired with themselves. */
void coact_observe(struct coact *c, const int32_t *ids, int k);

/* The experts of layer + 1 most likely to be chosen given cur[0..n), the
 * experts chosen at layer (0 ≤ layer < n_layer − 1). Score of b:
 * sum over a in cur of trans[layer][a][b] / pop[layer][a] (an estimate of the
 * expected number of the chosen a that lead to b). Writes to out the experts
 * with a score > 0, best first — ties broken by popularity at layer + 1, then
 * lower id — at most max of them, and returns how many: 0 when nothing has
 * been observed for these experts yet. Ids of cur out of range are ignored. */
int coact_predict_next(const struct coact *c, int layer, const int32_t *cur, int n, int32_t *out,
                       int max);

/* The experts of layer (not in cur) most likely to be chosen together with
 * cur[0..n): score sum over a in cur of with[layer][a][b] / pop[layer][a];
 * otherwise as coact_predict_next (ties broken by popularity at layer). */
int coact_predict_with(const struct coact *c, int layer, const int32_t *cur, int n, int32_t *out,
                       int max);

/* The most popular experts of layer (pop > 0), most popular first, ties to
 * the lower id; at most max; returns how many. */
int coact_popular(const struct coact *c, int layer, int32_t *out, int max);

/* Tokens observed: loaded from the file plus observed in this run. */
uint64_t coact_tokens(const struct coact *c);

/* The path of the statistics file ("" without a dir); valid until close. */
const char *coact_path(const struct coact *c);

/* Writes the statistics atomically (see the top), creating the directory
 * (and its parents) if missing. No-op returning HY_OK without a dir.
 * Errors: HY_ERR_IO naming the directory or the path and the system's
 * reason; the previous file, if any, is left as it was. */
HY_MUST_CHECK enum hy_status coact_save(const struct coact *c);

/* FNV-1a 64 of the first n_header_bytes of the file at path (pass the GGUF
 * header: bytes [0, data offset)), read with pread. Two files with the same
 * header (names, shapes, types, offsets, metadata) get the same key.
 * Errors: HY_ERR_IO naming the path when it cannot be opened or read, or is
 * shorter than n_header_bytes. */
HY_MUST_CHECK enum hy_status coact_model_key(const char *path, uint64_t n_header_bytes,
                                             uint64_t *key);

#endif
