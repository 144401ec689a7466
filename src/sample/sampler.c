#include "sample/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"

struct sampler_params sampler_default_params(void)
{
    return (struct sampler_params){
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
    };
}

enum hy_status sampler_init(struct sampler *s, int32_t n_vocab, const struct sampler_params *p)
{
    memset(s, 0, sizeof(*s));
    if (n_vocab < 1)
        return err_set(HY_ERR_INVALID_ARG, "sampler: vocabulary of %d tokens", (int)n_vocab);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return err_set(HY_ERR_INVALID_ARG, "top-p %g is outside [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return err_set(HY_ERR_INVALID_ARG, "min-p %g is outside [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return err_set(HY_ERR_INVALID_ARG, "repeat penalty %g must be positive",
                       (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty))
        return err_set(HY_ERR_INVALID_ARG, "frequency penalty %g is not a finite number",
                       (double)p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return err_set(HY_ERR_INVALID_ARG, "presence penalty %g is not a finite number",
                       (double)p->presence_penalty);
    if (p->repeat_last_n < 0)
        return err_set(HY_ERR_INVALID_ARG, "repeat-last-n %d is negative", (int)p->repeat_last_n);
    if (isnan(p->temp)) return err_set(HY_ERR_INVALID_ARG, "temperature is not a number");
    s->par = *p;
    s->n_vocab = n_vocab;
    s->cand = mem_xcalloc((size_t)n_vocab, sizeof(*s->cand));
    s->pen = mem_xcalloc((size_t)n_vocab, sizeof(*s->pen));
    s->count = mem_xcalloc((size_t)n_vocab, sizeof(*s->count));
    s->recent =
        mem_xcalloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1), sizeof(*s->recent));
    rng_init(&s->rng, p->seed);
    return HY_OK;
}

void sampler_free(struct sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s->pen);
    free(s->count);
    free(s->recent);
    memset(s, 0, sizeof(*s));
}

void sampler_accept(struct sampler *s, int32_t id)
{
    const int32_t n = s->par.repeat_last_n;
    if (n <= 0 || id < 0 || id >= s->n_vocab) return;
    if (s->n_recent == n)
        s->count[s->recent[s->recent_head]]--; /* the oldest leaves the window */
    else
        s->n_recent++;
    s->recent[s->recent_head] = id;
    s->count[id]++;
    s->recent_head = (s->recent_head + 1) % n;
}

void sampler_reset(struct sampler *s)
{
    for (int32_t i = 0; i < s->n_recent; i++) s->count[s->recent[i]] = 0;
    s->n_recent = 0;
    s->recent_head = 0;
}

/* cand sorted by descending logit, ties to the lower id */
static int cand_cmp(const void *a, const void *b)
{
    const struct sampler_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static bool cand_worse(const struct sampler_cand *a, const struct sampler_cand *b)
{
    return cand_cmp(a, b) > 0;
}

/* Restores the heap c[0..k) (the worst candidate at the root) below slot i. */
static void sift_down(struct sampler_cand *c, int32_t k, int32_t i)
{
    for (;;) {
        int32_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && cand_worse(&c[l], &c[w])) w = l;
        if (r < k && cand_worse(&c[r], &c[w])) w = r;
        if (w == i) break;
        struct sampler_cand t = c[i];
        c[i] = c[w];
        c[w] = t;
        i = w;
    }
}

/* The k best candidates of logits l[0..n) into c[0..k) (unordered): a
 * min-heap of the best k so far, O(n log k), the vocabulary read once and
 * not copied. A later id can displace the root only with a logit that is not
 * <= the root's (an equal one has the higher id, so it is worse; a NaN
 * compares as cand_cmp orders it), which a block of 16 is tested for at
 * once: after the first thousands of ids almost every block is skipped. */
static void select_top_k(struct sampler_cand *c, const float *l, int32_t n, int32_t k)
{
    for (int32_t i = 0; i < k; i++) c[i] = (struct sampler_cand){i, l[i], 0.0f};
    for (int32_t start = k / 2 - 1; start >= 0; start--) sift_down(c, k, start);
    int32_t j = k;
    while (j < n) {
        const int32_t end = j + 16 <= n ? j + 16 : n;
        const float root = c[0].logit;
        int any = 0;
        for (int32_t i = j; i < end; i++) any |= !(l[i] <= root);
        if (any)
            for (int32_t i = j; i < end; i++) {
                if (l[i] <= c[0].logit) continue;
                c[0] = (struct sampler_cand){i, l[i], 0.0f};
                sift_down(c, k, 0);
            }
        j = end;
    }
}

/* Four floats (GNU C vectors: SSE on x86-64, NEON on arm64, or scalar code). */
typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

static inline f4 load4(const float *p)
{
    f4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a > m ? a : m per lane (a NaN keeps m) */
static inline f4 max4(f4 a, f4 m)
{
    const i4 k = a > m;
    return (f4)(((i4)a & k) | ((i4)m & ~k));
}

/* The first index of the largest of l[0..n), as a scan keeping the first
 * strictly larger value finds it (NaNs never win; l[0] NaN gives 0): the
 * largest value over four vectors of lanes, then the first block of 16 that
 * holds it. A scan carrying the index from element to element makes every
 * compare wait for the one before: 4x slower on a large vocabulary. */
static int32_t argmax_first(const float *l, int32_t n)
{
    f4 m0 = {l[0], l[0], l[0], l[0]}, m1 = m0, m2 = m0, m3 = m0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = max4(load4(l + i), m0);
        m1 = max4(load4(l + i + 4), m1);
        m2 = max4(load4(l + i + 8), m2);
        m3 = max4(load4(l + i + 12), m3);
    }
    m0 = max4(max4(m1, m0), max4(m3, m2));
    float mx = m0[0];
    for (int k = 1; k < 4; k++) mx = m0[k] > mx ? m0[k] : mx;
    for (; i < n; i++) mx = l[i] > mx ? l[i] : mx;

    const f4 b = {mx, mx, mx, mx};
    for (i = 0; i + 16 <= n; i += 16) {
        const i4 eq = (load4(l + i) == b) | (load4(l + i + 4) == b) | (load4(l + i + 8) == b) |
                      (load4(l + i + 12) == b);
        if (eq[0] | eq[1] | eq[2] | eq[3]) break;
    }
    for (; i < n; i++)
        if (l[i] == mx) return i;
    return 0;
}

/* True when the penalties change some logit: recent tokens and a penalty set. */
static bool penalties_on(const struct sampler *s)
{
    const struct sampler_params *p = &s->par;
    return s->n_recent > 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                               p->presence_penalty != 0.0f);
}

/* Logit l of a token seen cnt > 0 times in the window, penalised. */
static inline float penalised(const struct sampler_params *p, float l, int32_t cnt)
{
    l = l <= 0.0f ? l * p->repeat_penalty : l / p->repeat_penalty;
    return l - ((float)cnt * p->frequency_penalty + p->presence_penalty);
}

/* The penalties of every distinct id in the window, on logits l. The first
 * walk marks an id as done by negating its count (so that a repeated entry is
 * skipped); the second restores the counts. */
static void apply_penalties(struct sampler *s, float *lg)
{
    const struct sampler_params *p = &s->par;
    for (int32_t i = 0; i < s->n_recent; i++) {
        const int32_t id = s->recent[i];
        const int32_t cnt = s->count[id];
        if (cnt <= 0) continue; /* negative: applied earlier in this walk */
        lg[id] = penalised(p, lg[id], cnt);
        s->count[id] = -cnt;
    }
    for (int32_t i = 0; i < s->n_recent; i++) {
        const int32_t id = s->recent[i];
        if (s->count[id] < 0) s->count[id] = -s->count[id];
    }
}

/* Softmax of c[0..n).logit / temp into c[].p; c sorted descending. */
static void softmax_cands(struct sampler_cand *c, int32_t n, float temp)
{
    const float mx = c[0].logit;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - mx) / temp);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

static int32_t sample_cands(struct sampler *s, int32_t m);

int32_t sampler_sample(struct sampler *s, const float *logits)
{
    const int32_t n = s->n_vocab;
    const float *l = logits;
    if (penalties_on(s)) {
        memcpy(s->pen, logits, (size_t)n * sizeof(*s->pen));
        apply_penalties(s, s->pen);
        l = s->pen;
    }
    if (!(s->par.temp > 0.0f)) return argmax_first(l, n);

    struct sampler_cand *c = s->cand;
    int32_t m = n;
    if (s->par.top_k > 0 && s->par.top_k < n) {
        m = s->par.top_k;
        select_top_k(c, l, n, m);
    } else {
        for (int32_t i = 0; i < n; i++) c[i] = (struct sampler_cand){i, l[i], 0.0f};
    }
    return sample_cands(s, m);
}

/* Penalties that lower a logit or leave it (repeat >= 1, frequency and
 * presence >= 0): the best k penalised logits are then among the best k + R
 * of the logits, R the ids in the window (of the best k + R, at least k keep
 * their logits, and every id past them has a lower one, or an equal one and
 * a higher id, penalised or not). */
static bool penalties_lower(const struct sampler_params *p)
{
    return p->repeat_penalty >= 1.0f && p->frequency_penalty >= 0.0f && p->presence_penalty >= 0.0f;
}

int32_t sampler_top_needed(const struct sampler *s, int32_t max_k)
{
    const bool greedy = !(s->par.temp > 0.0f);
    int32_t k = greedy ? 1 : s->par.top_k;
    if (k <= 0) return 0;
    if (penalties_on(s)) {
        if (!penalties_lower(&s->par)) return 0;
        k += s->n_recent; /* an upper bound of the distinct ids in the window */
    }
    return k <= s->n_vocab && k <= max_k ? k : 0;
}

int32_t sampler_sample_top(struct sampler *s, const int32_t *ids, const float *vals, int32_t k)
{
    HY_ASSERT(k >= 1 && k <= s->n_vocab);
    const bool pen = penalties_on(s);
    if (!pen && !(s->par.temp > 0.0f)) return ids[0];
    struct sampler_cand *c = s->cand;
    for (int32_t i = 0; i < k; i++) {
        const int32_t cnt = pen ? s->count[ids[i]] : 0;
        c[i] = (struct sampler_cand){ids[i], cnt > 0 ? penalised(&s->par, vals[i], cnt) : vals[i],
                                     0.0f};
    }
    if (!(s->par.temp > 0.0f)) { /* greedy: the best penalised one */
        int32_t best = 0;
        for (int32_t i = 1; i < k; i++)
            if (cand_cmp(&c[i], &c[best]) < 0) best = i;
        return c[best].id;
    }
    if (pen) { /* the top-k of the penalised logits: the best top_k of these */
        qsort(c, (size_t)k, sizeof(*c), cand_cmp);
        k = HY_MIN(k, s->par.top_k);
    }
    return sample_cands(s, k);
}

/* Steps 4-6 over the candidates c[0..m) (any order). */
static int32_t sample_cands(struct sampler *s, int32_t m)
{
    struct sampler_cand *c = s->cand;
    qsort(c, (size_t)m, sizeof(*c), cand_cmp);

    softmax_cands(c, m, 1.0f);
    if (s->par.top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = m;
        for (int32_t i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= s->par.top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
    }
    if (s->par.min_p > 0.0f) {
        const float floor_p = s->par.min_p * c[0].p;
        int32_t keep = 1;
        while (keep < m && c[keep].p >= floor_p) keep++;
        m = keep;
    }

    softmax_cands(c, m, s->par.temp);
    double u = rng_uniform(&s->rng), cum = 0.0;
    for (int32_t i = 0; i < m; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[m - 1].id;
}
