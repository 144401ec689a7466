#include "text/merge.h"

#include <stdlib.h>

#include "core/base.h"
#include "core/mem.h"
#include "text/unicode.h"

struct merge_bigram {
    int32_t left, right; /* symbol indices */
    double priority;
    uint32_t size; /* bytes of left + right when it was queued */
};

/* a before b: lower priority, then further left */
static bool bigram_before(const void *pa, const void *pb)
{
    const struct merge_bigram *a = pa, *b = pb;
    if (a->priority != b->priority) return a->priority < b->priority;
    return a->left < b->left;
}

void merge_init(struct merge *m)
{
    m->sym = NULL;
    m->queued = NULL;
    m->cap = 0;
}

void merge_free(struct merge *m)
{
    free(m->sym);
    free(m->queued);
    merge_init(m);
}

void merge_reserve(struct merge *m, size_t n)
{
    HY_ASSERT(n <= UINT32_MAX);
    if (n <= m->cap) return;
    m->cap = n;
    m->sym = mem_xrealloc(m->sym, sizeof(*m->sym) * n);
    m->queued = mem_xrealloc(m->queued, sizeof(*m->queued) * (3 * n + 1));
}

static void try_pair(struct merge *m, merge_pair_fn pair, void *ctx, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const struct merge_symbol *l = &m->sym[left], *r = &m->sym[right];
    double priority;
    if (!pair(ctx, l->off, l->n, r->off, r->n, &priority)) return;
    heap_push(&m->heap, &(struct merge_bigram){left, right, priority, l->n + r->n});
}

int32_t merge_run(struct merge *m, const char *text, size_t len, merge_pair_fn pair, void *ctx)
{
    HY_ASSERT(len <= m->cap);
    int32_t n_sym = 0;
    for (size_t off = 0; off < len; n_sym++) {
        size_t k = (size_t)unicode_utf8_seq_len((unsigned char)text[off]);
        if (k > len - off) k = len - off;
        m->sym[n_sym] = (struct merge_symbol){n_sym - 1, -1, (uint32_t)off, (uint32_t)k};
        if (n_sym > 0) m->sym[n_sym - 1].next = n_sym;
        off += k;
    }
    heap_init(&m->heap, m->queued, 3 * m->cap + 1, sizeof(struct merge_bigram), bigram_before);
    for (int32_t i = 1; i < n_sym; i++) try_pair(m, pair, ctx, i - 1, i);
    while (m->heap.n) {
        struct merge_bigram bg;
        heap_pop(&m->heap, &bg);
        struct merge_symbol *l = &m->sym[bg.left], *r = &m->sym[bg.right];
        /* stale: one side was merged away, or grew, since this pair was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) m->sym[r->next].prev = bg.left;
        try_pair(m, pair, ctx, l->prev, bg.left);
        try_pair(m, pair, ctx, bg.left, l->next);
    }
    return n_sym;
}
