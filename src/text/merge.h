/*
 * The pairwise merge loop both tokenizers share. A run of text starts as one
 * symbol per UTF-8 character; while some adjacent pair may merge, the pair
 * that comes first (lowest priority, then leftmost) is merged into one
 * symbol. What "may merge" and the priority are the tokenizer's: SPM asks
 * whether the concatenation is a piece and ranks by its score (priority =
 * -score), BPE asks for the pair's merge rank (priority = rank).
 *
 * Pairs wait in a heap; a queued pair whose sides have changed since (one was
 * merged away, or grew) is stale and skipped when it comes out, which is
 * cheaper than removing it.
 */
#ifndef HY_TEXT_MERGE_H
#define HY_TEXT_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/heap.h"

struct merge_symbol {
    int32_t prev, next; /* neighbours in the current segmentation, -1 at the ends */
    uint32_t off;       /* start in the run's text */
    uint32_t n;         /* bytes; 0 once merged into its left neighbour */
};

/* Whether text[l_off, +l_n) and text[r_off, +r_n) may merge, and with what
 * priority (lower merges first). */
typedef bool (*merge_pair_fn)(void *ctx, uint32_t l_off, uint32_t l_n, uint32_t r_off, uint32_t r_n,
                              double *priority);

struct merge_bigram;

struct merge {
    struct merge_symbol *sym;    /* owned, cap entries: the result of merge_run */
    struct merge_bigram *queued; /* owned, 3 * cap + 1 entries */
    size_t cap;
    struct heap heap;
};

void merge_init(struct merge *m);
void merge_free(struct merge *m);
/* Room for runs of up to n bytes. */
void merge_reserve(struct merge *m, size_t n);

/* Segments text[0..len) (len <= the reserved size) by merging; the symbols
 * are m->sym[0], then following next links, until -1. Returns the number of
 * initial symbols (0 for an empty run). */
int32_t merge_run(struct merge *m, const char *text, size_t len, merge_pair_fn pair, void *ctx);

#endif
