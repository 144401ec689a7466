#include "model/perplexity.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/threadpool.h"

/* -log softmax(logits)[tok], as llama.cpp's log_softmax in perplexity.cpp:
 * max and differences in float, the sum of exponentials in double. */
static double token_nll(const float *logits, int64_t n_vocab, int32_t tok)
{
    float mx = logits[0];
    for (int64_t i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n_vocab; i++) sum += expf(logits[i] - mx);
    return -((double)(logits[tok] - mx) - log(sum));
}

/* One step's scored rows: nll[i] of row r0 + i, rows split over the
 * threads (each value computed by one thread alone, so the sums in order
 * after it do not depend on the thread count). */
struct score_task {
    const float *logits;
    const int32_t *next; /* the token after each row's position */
    int64_t r0, n, n_vocab;
    double *nll;
};

static void score_rows(void *ctx, int ith, int nth)
{
    const struct score_task *t = ctx;
    const int64_t i0 = t->n * ith / nth, i1 = t->n * (ith + 1) / nth;
    for (int64_t i = i0; i < i1; i++)
        t->nll[i] = token_nll(t->logits + (t->r0 + i) * t->n_vocab, t->n_vocab, t->next[i]);
}

enum hy_status perplexity_eval(struct forward *f, const int32_t *tokens, int64_t n_tokens,
                               const struct perplexity_params *p, perplexity_progress_fn progress,
                               void *user, struct perplexity_result *out)
{
    memset(out, 0, sizeof(*out));
    const int64_t n_ctx = p->n_ctx;
    if (n_ctx < 4 || n_ctx > forward_n_ctx(f))
        return err_set(HY_ERR_INVALID_ARG,
                       "perplexity: chunks of %" PRId64
                       " tokens (need at least 4, and at most the context of %" PRId64 ")",
                       n_ctx, forward_n_ctx(f));
    if (n_tokens < 2 * n_ctx)
        return err_set(HY_ERR_INVALID_ARG,
                       "perplexity: the text has %" PRId64 " tokens; a context of %" PRId64
                       " needs at least %" PRId64 "\nhint: a smaller -c or a longer text",
                       n_tokens, n_ctx, 2 * n_ctx);
    const int64_t n_vocab = forward_n_vocab(f);
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return err_set(HY_ERR_INVALID_ARG,
                           "perplexity: token %" PRId64 " has id %" PRId32
                           ", outside the vocabulary [0, %" PRId64 ")",
                           i, tokens[i], n_vocab);
    if (p->bos_id >= n_vocab)
        return err_set(HY_ERR_INVALID_ARG,
                       "perplexity: BOS id %" PRId32 " is outside the vocabulary [0, %" PRId64 ")",
                       p->bos_id, n_vocab);
    const int64_t n_chunk_max = n_tokens / n_ctx;
    const int64_t n_chunk = p->n_chunks > 0 ? HY_MIN(p->n_chunks, n_chunk_max) : n_chunk_max;
    const int64_t first = n_ctx / 2, n_batch = forward_n_batch(f);
    enum hy_status st0;

    /* a vocabulary of 150k makes scoring a step's rows as long as the step
     * on a GPU: the rows go to a pool as llama-perplexity spreads them */
    struct threadpool *pool = NULL;
    if (p->n_threads > 1 && (st0 = threadpool_init(p->n_threads, &pool))) return st0;
    int32_t *chunk = mem_xcalloc((size_t)n_ctx, sizeof(int32_t));
    double *step_nll = mem_xcalloc((size_t)n_batch, sizeof(double));
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    enum hy_status st = HY_OK;
    for (int64_t c = 0; c < n_chunk && !st; c++) {
        const int32_t *src = tokens + c * n_ctx;
        memcpy(chunk, src, (size_t)n_ctx * sizeof(int32_t));
        if (p->bos_id >= 0) chunk[0] = p->bos_id;
        forward_reset(f);
        for (int64_t j0 = 0; j0 < n_ctx && !st; j0 += n_batch) {
            const int64_t n = HY_MIN(n_batch, n_ctx - j0);
            const float *logits = NULL;
            if ((st = forward_eval_all(f, chunk + j0, n, &logits))) break;
            /* the step's rows at positions first .. n_ctx - 2 */
            const int64_t k0 = HY_MAX(first - j0, (int64_t)0);
            const int64_t k1 = HY_MIN(n, n_ctx - 1 - j0);
            if (k1 <= k0) continue;
            struct score_task t = {logits, src + j0 + k0 + 1, k0, k1 - k0, n_vocab, step_nll};
            if (pool)
                threadpool_run(pool, score_rows, &t);
            else
                score_rows(&t, 0, 1);
            for (int64_t i = 0; i < t.n; i++) {
                nll += step_nll[i];
                nll2 += step_nll[i] * step_nll[i];
            }
            count += t.n;
        }
        if (!st && progress) progress(user, c + 1, n_chunk, exp(nll / (double)count));
    }
    free(step_nll);
    free(chunk);
    threadpool_free(pool);
    if (st) return err_prefix(st, "perplexity: ");

    out->n_chunks = n_chunk;
    out->n_scored = count;
    out->nll = nll / (double)count;
    out->ppl = exp(out->nll);
    const double var = nll2 / (double)count - out->nll * out->nll;
    out->ppl_err = var > 0.0 && count > 1 ? sqrt(var / (double)(count - 1)) * out->ppl : 0.0;
    return HY_OK;
}
