#include "model/perplexity.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"

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

    int32_t *chunk = mem_xcalloc((size_t)n_ctx, sizeof(int32_t));
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
            for (int64_t k = 0; k < n; k++) {
                const int64_t pos = j0 + k;
                if (pos < first || pos >= n_ctx - 1) continue;
                const double v = token_nll(logits + k * n_vocab, n_vocab, src[pos + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        if (!st && progress) progress(user, c + 1, n_chunk, exp(nll / (double)count));
    }
    free(chunk);
    if (st) return err_prefix(st, "perplexity: ");

    out->n_chunks = n_chunk;
    out->n_scored = count;
    out->nll = nll / (double)count;
    out->ppl = exp(out->nll);
    const double var = nll2 / (double)count - out->nll * out->nll;
    out->ppl_err = var > 0.0 && count > 1 ? sqrt(var / (double)(count - 1)) * out->ppl : 0.0;
    return HY_OK;
}
