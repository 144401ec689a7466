#include "model/route_trace.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "core/err.h"
#include "core/mem.h"
#include "model/forward.h"
#include "model/model.h"
#include "sample/sampler.h"

enum hy_status route_trace_record(const char *path, int n_tok, uint64_t seed, int n_threads,
                                  struct route_trace *out)
{
    memset(out, 0, sizeof *out);
    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f = NULL;
    struct sampler smp;
    bool have_smp = false;
    enum hy_status st;
    struct cpu_backend_opts bo = {.n_threads = n_threads};
    struct forward_config fc = {.n_ctx = n_tok + 1, .n_batch = 1, .kv_type = HY_TYPE_F16};
    if ((st = model_open(path, &m))) goto done;
    if (!m->is_moe) {
        st = err_set(HY_ERR_INVALID_ARG, "%s: not an MoE model: no routing to record", path);
        goto done;
    }
    if ((st = model_load(m, NULL, NULL)) || (st = cpu_backend_init(&bo, &be)) ||
        (st = forward_init(m, be, &fc, &f)))
        goto done;
    struct sampler_params sp = sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = seed;
    if ((st = sampler_init(&smp, (int32_t)m->n_vocab, &sp))) goto done;
    have_smp = true;
    out->n_tok = n_tok;
    out->n_layer = (int)m->hp->n_layer;
    out->n_expert = (int)m->hp->n_expert;
    out->k = (int)m->hp->n_expert_used;
    const size_t per_tok = (size_t)out->n_layer * (size_t)out->k;
    out->ids = mem_xcalloc((size_t)n_tok * per_tok, sizeof(int32_t));
    int32_t tok = 1;
    for (int t = 0; t < n_tok; t++) {
        const float *lg;
        if ((st = forward_eval(f, &tok, 1, &lg))) goto done;
        memcpy(out->ids + (size_t)t * per_tok, forward_routes(f)->ids, per_tok * sizeof(int32_t));
        tok = sampler_sample(&smp, lg);
        sampler_accept(&smp, tok);
    }
done:
    if (have_smp) sampler_free(&smp);
    forward_free(f);
    backend_free(be);
    model_close(m);
    if (st) route_trace_free(out);
    return st;
}

void route_trace_free(struct route_trace *t)
{
    free(t->ids);
    memset(t, 0, sizeof *t);
}

double route_trace_repeat_share(const struct route_trace *t)
{
    uint64_t rep = 0, tot = 0;
    const int L = t->n_layer, K = t->k;
    for (int i = 1; i < t->n_tok; i++)
        for (int l = 0; l < L; l++)
            for (int j = 0; j < K; j++) {
                const int32_t e = t->ids[((size_t)i * L + l) * K + j];
                for (int q = 0; q < K; q++)
                    if (t->ids[((size_t)(i - 1) * L + l) * K + q] == e) rep++;
                tot++;
            }
    return tot ? (double)rep / (double)tot : 0.0;
}
