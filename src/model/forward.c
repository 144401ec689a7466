#include "model/forward.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "quant/quant.h"

#define FORWARD_MAX_BUFS 24

struct forward {
    uint64_t buf_bytes; /* KV cache, activations and logits allocated by forward_init */
    struct model *m;    /* borrowed; outlives this */
    struct backend *be; /* borrowed; outlives this */
    const struct hparams *hp;
    int64_t n_ctx;
    int64_t n_batch;
    int64_t n_past;           /* tokens in the KV cache */
    int64_t q_dim;            /* n_head * head_dim */
    int64_t k_dim;            /* n_head_kv * head_dim: one KV cache row of K */
    int64_t v_dim;            /* n_head_kv * head_dim_v */
    int64_t att_dim;          /* n_head * head_dim_v */
    int64_t ff_dim;           /* n_ff (dense) or n_ff_exp (MoE) */
    int64_t shexp_dim;        /* the shared expert's width (model n_ff_shexp); 0: none */
    struct backend_rope rope; /* freq_factors borrowed from rope_factors */
    float *rope_factors;      /* owned, [n_rot / 2] from rope_freqs.weight; NULL without it */
    uint32_t kv_type;         /* enum hy_type of both caches */
    bool logits_all;
    bool device_top_k;    /* forward_eval_top asks the backend's top_k */
    size_t k_layer_bytes; /* one layer's K cache: n_ctx rows of k_dim elements of kv_type */
    size_t v_layer_bytes; /* one layer's V cache (transposed or not, see backend.h) */

    /* Backend memory. */
    uint8_t *k_cache;  /* [n_layer][k_layer_bytes] */
    uint8_t *v_cache;  /* [n_layer][v_layer_bytes] */
    float *x;          /* [n_batch][n_embd] residual stream */
    float *xb;         /* [n_batch][n_embd] normed input of a block */
    float *xb2;        /* [n_batch][n_embd] block output; MoE: one expert's outputs */
    float *q;          /* [n_batch][q_dim] */
    float *k;          /* [n_batch][k_dim] */
    float *v;          /* [n_batch][v_dim] */
    float *att;        /* [n_batch][att_dim] */
    float *hb;         /* [n_batch][max(ff_dim, shexp_dim)] */
    float *hb2;        /* [n_batch][max(ff_dim, shexp_dim)] */
    float *xg;         /* MoE: [n_batch][n_embd] the inputs of the tokens routed to one expert */
    float *router;     /* MoE: [n_batch + 1][n_expert] router probabilities */
    /* MoE: one step's routes, downloaded in one piece: for n tokens and r
     * rows routed (n, or n + 1 with decode's guess at the next layer's), the
     * experts route picked ([r][n_expert_used] int32), their weights
     * ([r][n_expert_used] float), the shared expert's gate logits ([n]) */
    uint32_t *step_routes; /* [n_batch + 1][2 n_expert_used + 1] */
    /* MoE decode: the routes of layers whose experts took them on the
     * backend (moe_routed), [n_layer][2 n_expert_used + 1] in step_routes'
     * layout for one token; downloaded once, after the step's ops */
    uint32_t *dev_routes;
    float *shexp_out;  /* shared expert: [n_batch][n_embd] its FFN's outputs, added last */
    float *logits_dev; /* [n_vocab], or [n_batch][n_vocab] with logits_all */
    void *bufs[FORWARD_MAX_BUFS]; /* every backend allocation above, for forward_free */
    int n_bufs;
    uint64_t kv_bytes;

    /* Host memory. */
    float *logits;          /* owned (mem_aligned_alloc), as logits_dev */
    bool logits_pinned;     /* logits registered with the backend (host_register) */
    uint32_t *step_routes_host; /* owned, as step_routes */
    uint32_t *dev_routes_host;  /* in step_routes_host's allocation, as dev_routes */
    /* owned, [n_layer]: the layers of this step whose routes are in dev_routes */
    uint8_t *routed_dev;
    int n_routed_dev;
    /* MoE: a step's routes started down (routes_start), not yet recorded
     * (routes_finish), of the step's routes_n tokens from routes_pos0 */
    bool routes_pending;
    int64_t routes_pos0, routes_n;
    int32_t *grp_tok; /* owned, [n_expert][n_batch]: tokens (batch indices) routed to each expert */
    float *grp_w;     /* owned, [n_expert][n_batch]: their weights */
    int64_t *grp_n;   /* owned, [n_expert] */
    int32_t *sel_ids; /* owned, [n_expert]: the experts a layer uses in a step */
    bool *sel_held;   /* owned, [n_expert]: of sel_ids (then of a guess), those the backend
                         holds itself (backend.h, holds) */
    int32_t *tok_rows; /* owned, [n_batch]: 0, 1, ... (every token's row, for add_rows) */
    /* owned, [3 * max(n_expert_used, n_expert)]: one token's experts (moe_token), a batch's
     * (moe_batch) */
    struct backend_weight *moe_w;
    float *moe_alpha; /* owned, [n_expert_used]: their weights */
    /* owned, [n_layer]: whether a layer's expert tensors lie in backend
     * memory (1), not all of them (0), not looked at yet (-1) */
    int8_t *exps_on_be;
    /* owned, [n_layer][3]: where exps_on_be is 1, the bytes from one
     * expert's slice to the next in each tensor (gate, up, down) when every
     * slice lies at expert 0's plus that many bytes per expert, else 0 */
    size_t *exps_stride;
    struct forward_routes routes;
};

/* Backend memory of bytes, freed by forward_free; p is the address of the
 * pointer to set (of any object type, hence memcpy rather than a void ** cast). */
HY_MUST_CHECK static enum hy_status alloc_buf(struct forward *f, void *p, uint64_t bytes,
                                              const char *what)
{
    HY_ASSERT(f->n_bufs < FORWARD_MAX_BUFS);
    void *b = bytes <= SIZE_MAX ? f->be->ops->alloc(f->be, (size_t)bytes) : NULL;
    if (!b) {
        char sz[32];
        return err_set(HY_ERR_OOM, "%s memory: cannot allocate %s for the %s", f->be->ops->name,
                       sizes_format(bytes, sz, sizeof sz), what);
    }
    f->bufs[f->n_bufs++] = b;
    f->buf_bytes += bytes;
    memcpy(p, &b, sizeof b);
    return HY_OK;
}

/* Reads rope_freqs.weight (F32 [n_rot / 2]) from the model file into f->rope_factors. */
HY_MUST_CHECK static enum hy_status read_rope_factors(struct forward *f,
                                                      const struct gguf_tensor *t)
{
    const char *file = f->m->gguf->name;
    const int64_t half = f->hp->n_rot / 2;
    if (t->type != HY_TYPE_F32 || t->n_dims != 1 || t->ne[0] != half)
        return err_set(HY_ERR_FORMAT,
                       "%s: tensor 'rope_freqs.weight' is %s with %" PRIu32 " dims [%" PRId64
                       ", ...], expected F32 [%" PRId64 "] (rope.dimension_count / 2)",
                       file, quant_type_name(t->type), t->n_dims, t->ne[0], half);
    f->rope_factors = mem_xcalloc((size_t)half, sizeof(float));
    int fd = open(f->m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot open: %s", f->m->path, strerror(errno));
    const size_t want = (size_t)half * sizeof(float);
    size_t done = 0;
    while (done < want) {
        ssize_t n =
            pread(fd, (uint8_t *)f->rope_factors + done, want - done, (off_t)(t->file_off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            close(fd);
            return err_set(
                HY_ERR_IO,
                "%s: reading tensor 'rope_freqs.weight' (%zu bytes at offset %" PRIu64 "): %s",
                f->m->path, want, t->file_off, e ? strerror(e) : "unexpected end of file");
        }
        done += (size_t)n;
    }
    close(fd);
    for (int64_t i = 0; i < half; i++)
        if (!(f->rope_factors[i] > 0.0f) || !isfinite(f->rope_factors[i]))
            return err_set(HY_ERR_FORMAT,
                           "%s: tensor 'rope_freqs.weight': factor %" PRId64
                           " is %g; frequency factors must be positive and finite",
                           file, i, (double)f->rope_factors[i]);
    f->rope.freq_factors = f->rope_factors;
    return HY_OK;
}

/* RoPE from the metadata, as llama.cpp's loader resolves it (see forward.h). */
HY_MUST_CHECK static enum hy_status rope_init(struct forward *f)
{
    const struct model *m = f->m;
    const struct gguf_ctx *g = m->gguf;
    const char *arch = m->info.arch;
    const bool neox = m->info.arch_row && (m->info.arch_row->flags & ARCH_ROPE_NEOX);
    f->rope.mode = neox ? BACKEND_ROPE_NEOX : BACKEND_ROPE_NORM;
    f->rope.n_rot = f->hp->n_rot;
    f->rope.freq_base = f->hp->rope_freq_base;
    f->rope.freq_scale = 1.0;
    f->rope.freq_factors = NULL;

    char key[128], key_type[128];
    enum hy_status st;
    const char *type = NULL;
    snprintf(key_type, sizeof key_type, "%s.rope.scaling.type", arch);
    if ((st = gguf_get_str_or_null(g, key_type, &type))) return st;
    double factor = 0.0;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    if (!gguf_find_kv(g, key)) snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
    if ((st = gguf_get_float_or(g, key, 0.0, &factor))) return st;
    if (!type || strcmp(type, "linear") == 0) {
        if (!isfinite(factor) || factor < 0.0)
            return err_set(
                HY_ERR_FORMAT,
                "%s: %s = %g: a linear RoPE scaling factor must be positive (or 0: none)", g->name,
                key, factor);
        if (factor > 0.0) f->rope.freq_scale = 1.0 / factor;
    } else if (strcmp(type, "none") != 0) {
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: %s = '%s': only 'linear' and 'none' RoPE scaling are implemented "
                       "(YaRN and LongRoPE are not yet)",
                       g->name, key_type, type);
    }
    const struct gguf_tensor *t = gguf_find_tensor(g, "rope_freqs.weight");
    return t ? read_rope_factors(f, t) : HY_OK;
}

/* The KV cache type and its bytes per layer, checked against the model. */
HY_MUST_CHECK static enum hy_status kv_init(struct forward *f, uint32_t kv_type)
{
    if (kv_type != HY_TYPE_F32 && kv_type != HY_TYPE_F16 && kv_type != HY_TYPE_Q8_0)
        return err_set(HY_ERR_INVALID_ARG,
                       "KV cache type %s is not supported (use F32, F16 or Q8_0)",
                       quant_type_name(kv_type));
    const uint32_t bs = quant_traits(kv_type)->block_size;
    if (f->hp->head_dim % bs != 0 || f->hp->head_dim_v % bs != 0)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: a %s KV cache needs head dimensions that are multiples of %" PRIu32
                       ", and this model's are %" PRId64 " (keys) and %" PRId64
                       " (values)\nhint: use an F16 KV cache (--kv-type f16)",
                       f->m->gguf->name, quant_type_name(kv_type), bs, f->hp->head_dim,
                       f->hp->head_dim_v);
    f->kv_type = kv_type;
    const uint64_t C = (uint64_t)f->n_ctx;
    f->k_layer_bytes = (size_t)(C * quant_bytes(kv_type, (uint64_t)f->k_dim));
    /* transposed, V is v_dim rows of n_ctx elements; a block size of 1 makes
     * that the same number of bytes */
    f->v_layer_bytes = (size_t)(C * quant_bytes(kv_type, (uint64_t)f->v_dim));
    return HY_OK;
}

/* The limits a forward reserves its backend for: batches of n_batch tokens,
 * n_ctx cache rows, products as wide as the widest of the model width, the
 * FFN (ff: the experts' for an MoE model) and shared expert widths and the
 * attention output; an MoE model's routing shape; top_k over the logits. */
static struct backend_limits forward_limits(const struct hparams *hp, int64_t n_batch,
                                            int64_t n_ctx, int64_t ff, int64_t shexp,
                                            int64_t n_vocab)
{
    const int64_t att_dim = hp->n_head * hp->head_dim_v;
    struct backend_limits lim = {.max_batch = n_batch,
                                 .max_ctx = n_ctx,
                                 .max_head_dim = HY_MAX(hp->head_dim, hp->head_dim_v),
                                 .max_cols = HY_MAX(HY_MAX(hp->n_embd, ff), HY_MAX(att_dim, shexp)),
                                 .max_heads = hp->n_head,
                                 .max_top = n_vocab};
    if (hp->n_expert > 0) {
        lim.moe_k = hp->n_expert_used;
        lim.moe_ff = hp->n_ff_exp;
        lim.moe_embd = hp->n_embd;
    }
    return lim;
}

enum hy_status forward_sizes_of(const struct model_info *mi, const struct forward_config *cfg,
                                struct forward_sizes *out)
{
    memset(out, 0, sizeof *out);
    const struct hparams *hp = &mi->hp;
    if (cfg->n_ctx < 1)
        return err_set(HY_ERR_INVALID_ARG, "context length %" PRId64 " (need at least 1)",
                       cfg->n_ctx);
    const struct gguf_tensor *embd = gguf_find_tensor(mi->gguf, "token_embd.weight");
    if (!embd || embd->n_dims < 2)
        return err_set(HY_ERR_FORMAT, "%s: no two-dimensional tensor 'token_embd.weight'",
                       mi->gguf->name);
    const uint32_t kt = cfg->kv_type;
    if (kt != HY_TYPE_F32 && kt != HY_TYPE_F16 && kt != HY_TYPE_Q8_0)
        return err_set(HY_ERR_INVALID_ARG,
                       "KV cache type %s is not supported (use F32, F16 or Q8_0)",
                       quant_type_name(kt));
    /* as forward_init and model_open have them */
    const bool moe = hp->n_expert > 0;
    const int64_t shexp_ff = mi->arch_row && (mi->arch_row->flags & ARCH_SHARED_EXPERT)
                                 ? (hp->n_ff_shexp ? hp->n_ff_shexp : hp->n_ff)
                                 : 0;
    const int64_t ff = moe ? hp->n_ff_exp : hp->n_ff, shexp = moe ? shexp_ff : 0;
    const int64_t q_dim = hp->n_head * hp->head_dim, k_dim = hp->n_head_kv * hp->head_dim;
    const int64_t v_dim = hp->n_head_kv * hp->head_dim_v, att_dim = hp->n_head * hp->head_dim_v;
    const uint64_t nb = (uint64_t)HY_MIN(cfg->n_batch ? cfg->n_batch : FORWARD_DEFAULT_BATCH,
                                         cfg->n_ctx);
    const uint64_t L = (uint64_t)hp->n_layer, C = (uint64_t)cfg->n_ctx, E = (uint64_t)hp->n_embd;
    const uint64_t F = sizeof(float), hb = (uint64_t)HY_MAX(ff, shexp);
    out->kv_bytes = L * C * (quant_bytes(kt, (uint64_t)k_dim) + quant_bytes(kt, (uint64_t)v_dim));
    uint64_t act = nb * F * (3 * E + (uint64_t)(q_dim + k_dim + v_dim + att_dim) + 2 * hb);
    if (moe) {
        const uint64_t X = (uint64_t)hp->n_expert, K = (uint64_t)hp->n_expert_used;
        act += nb * F * E + (nb + 1) * F * X + (nb + 1 + L) * (2 * K + 1) * 4 +
               (shexp > 0 ? nb * E * F : 0);
    }
    const uint64_t logits = (cfg->logits_all ? nb : 1) * (uint64_t)embd->ne[1] * F;
    out->device_bytes = out->kv_bytes + act + logits;
    out->host_bytes = logits;
    out->n_batch = (int64_t)nb;
    out->lim = forward_limits(hp, (int64_t)nb, cfg->n_ctx, ff, shexp, (int64_t)embd->ne[1]);
    return HY_OK;
}

enum hy_status forward_init(struct model *m, struct backend *be, const struct forward_config *cfg,
                            struct forward **out)
{
    *out = NULL;
    const struct hparams *hp = m->hp;
    if (cfg->n_ctx < 1)
        return err_set(HY_ERR_INVALID_ARG, "context length %" PRId64 " (need at least 1)",
                       cfg->n_ctx);
    if (cfg->n_batch < 0)
        return err_set(HY_ERR_INVALID_ARG, "batch size %" PRId64 " is negative", cfg->n_batch);
    enum hy_status st = model_check_types(m, be->ops->supports_type);
    if (st) return st;

    struct forward *f = mem_xcalloc(1, sizeof(*f));
    f->m = m;
    f->be = be;
    f->hp = hp;
    f->n_ctx = cfg->n_ctx;
    f->n_batch = HY_MIN(cfg->n_batch ? cfg->n_batch : FORWARD_DEFAULT_BATCH, cfg->n_ctx);
    f->logits_all = cfg->logits_all;
    const char *dtk = getenv("HYPURA_DEVICE_TOP_K");
    f->device_top_k = be->ops->top_k && m->n_vocab < INT32_MAX && !(dtk && !strcmp(dtk, "0"));
    f->q_dim = hp->n_head * hp->head_dim;
    f->k_dim = hp->n_head_kv * hp->head_dim;
    f->v_dim = hp->n_head_kv * hp->head_dim_v;
    f->att_dim = hp->n_head * hp->head_dim_v;
    f->ff_dim = m->is_moe ? hp->n_ff_exp : hp->n_ff;
    f->shexp_dim = m->is_moe ? m->n_ff_shexp : 0;
    const uint64_t hb_dim = (uint64_t)HY_MAX(f->ff_dim, f->shexp_dim);
    if ((st = kv_init(f, cfg->kv_type))) goto fail;
    if ((st = rope_init(f))) goto fail;

    const uint64_t nb = (uint64_t)f->n_batch, L = (uint64_t)hp->n_layer;
    const uint64_t E = (uint64_t)hp->n_embd, F = sizeof(float);
    const struct backend_limits lim =
        forward_limits(hp, f->n_batch, f->n_ctx, f->ff_dim, f->shexp_dim, m->n_vocab);
    if ((st = backend_reserve(be, &lim))) goto fail;
    if ((st = alloc_buf(f, &f->k_cache, L * f->k_layer_bytes, "KV cache (K)"))) goto fail;
    if ((st = alloc_buf(f, &f->v_cache, L * f->v_layer_bytes, "KV cache (V)"))) goto fail;
    f->kv_bytes = L * (f->k_layer_bytes + f->v_layer_bytes);
    if ((st = alloc_buf(f, &f->x, nb * E * F, "activations (residual)"))) goto fail;
    if ((st = alloc_buf(f, &f->xb, nb * E * F, "activations (normed)"))) goto fail;
    if ((st = alloc_buf(f, &f->xb2, nb * E * F, "activations (block output)"))) goto fail;
    if ((st = alloc_buf(f, &f->q, nb * (uint64_t)f->q_dim * F, "activations (Q)"))) goto fail;
    if ((st = alloc_buf(f, &f->k, nb * (uint64_t)f->k_dim * F, "activations (K)"))) goto fail;
    if ((st = alloc_buf(f, &f->v, nb * (uint64_t)f->v_dim * F, "activations (V)"))) goto fail;
    if ((st = alloc_buf(f, &f->att, nb * (uint64_t)f->att_dim * F, "activations (attention)")))
        goto fail;
    if ((st = alloc_buf(f, &f->hb, nb * hb_dim * F, "activations (FFN gate)"))) goto fail;
    if ((st = alloc_buf(f, &f->hb2, nb * hb_dim * F, "activations (FFN up)"))) goto fail;
    const uint64_t logit_bytes = (f->logits_all ? nb : 1) * (uint64_t)m->n_vocab * F;
    if ((st = alloc_buf(f, &f->logits_dev, logit_bytes, "logits"))) goto fail;
    f->logits = logit_bytes <= SIZE_MAX ? mem_aligned_alloc(64, (size_t)logit_bytes) : NULL;
    f->buf_bytes += logit_bytes;
    if (!f->logits) {
        char sz[32];
        st = err_set(HY_ERR_OOM, "RAM: cannot allocate %s for the logits",
                     sizes_format(logit_bytes, sz, sizeof sz));
        goto fail;
    }
    /* a GPU copies the logits every step: from page-locked memory that is a
     * DMA straight into them (pageable memory is staged and slower: a
     * perplexity step's rows, 262 MB at 512 tokens of a 128k vocabulary,
     * most of all); when locking fails the copy still works */
    if (be->ops->host_register) {
        f->logits_pinned = be->ops->host_register(be, f->logits, (size_t)logit_bytes) == HY_OK;
        if (!f->logits_pinned) err_clear();
    }

    struct forward_routes *r = &f->routes;
    if (m->is_moe) {
        const uint64_t X = (uint64_t)hp->n_expert;
        if ((st = alloc_buf(f, &f->xg, nb * E * F, "activations (expert inputs)"))) goto fail;
        const uint64_t K = (uint64_t)hp->n_expert_used;
        /* one row more: decode's guess at the next layer's routes */
        if ((st = alloc_buf(f, &f->router, (nb + 1) * X * F, "activations (router)"))) goto fail;
        if ((st = alloc_buf(f, &f->step_routes, (nb + 1 + L) * (2 * K + 1) * 4, "routes")))
            goto fail;
        f->dev_routes = f->step_routes + (nb + 1) * (2 * K + 1);
        f->step_routes_host = mem_xcalloc((nb + 1 + L) * (2 * K + 1), 4);
        f->dev_routes_host = f->step_routes_host + (nb + 1) * (2 * K + 1);
        f->routed_dev = mem_xcalloc(L, 1);
        if (f->shexp_dim > 0 &&
            (st = alloc_buf(f, &f->shexp_out, nb * E * F, "activations (shared expert)")))
            goto fail;
        f->grp_tok = mem_xcalloc(X * nb, sizeof(int32_t));
        f->grp_w = mem_xcalloc(X * nb, sizeof(float));
        f->grp_n = mem_xcalloc(X, sizeof(int64_t));
        f->sel_ids = mem_xcalloc(X, sizeof(int32_t));
        f->sel_held = mem_xcalloc(X, sizeof(bool));
        f->tok_rows = mem_xcalloc(nb, sizeof(int32_t));
        for (uint64_t t = 0; t < nb; t++) f->tok_rows[t] = (int32_t)t;
        f->moe_w = mem_xcalloc(3 * HY_MAX(K, X), sizeof(struct backend_weight));
        f->moe_alpha = mem_xcalloc(K, sizeof(float));
        f->exps_on_be = mem_xcalloc((size_t)hp->n_layer, 1);
        memset(f->exps_on_be, -1, (size_t)hp->n_layer);
        f->exps_stride = mem_xcalloc(3 * L, sizeof(size_t));
        r->n_layer = hp->n_layer;
        r->n_expert = hp->n_expert;
        r->n_used = hp->n_expert_used;
        r->ids = mem_xcalloc(nb * L * (uint64_t)r->n_used, sizeof(int32_t));
        r->weights = mem_xcalloc(nb * L * (uint64_t)r->n_used, sizeof(float));
        r->counts = mem_xcalloc(L * X, sizeof(uint64_t));
    }
    {
        /* what hypura plan counts from the header (forward_sizes_of; the
         * tests hold the two equal on every architecture) */
        struct forward_sizes fs;
        if (forward_sizes_of(&m->info, cfg, &fs) != HY_OK) err_clear();
        else if (fs.device_bytes + fs.host_bytes != f->buf_bytes)
            LOG_W("%s: the plan counts %" PRIu64 " bytes of forward buffers, %" PRIu64
                  " were allocated",
                  m->gguf->name, fs.device_bytes + fs.host_bytes, f->buf_bytes);
    }
    *out = f;
    return HY_OK;
fail:
    forward_free(f);
    return st;
}

void forward_free(struct forward *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_bufs; i++) f->be->ops->dealloc(f->be, f->bufs[i]);
    if (f->logits_pinned) f->be->ops->host_unregister(f->be, f->logits);
    mem_aligned_free(f->logits);
    free(f->rope_factors);
    free(f->step_routes_host);
    free(f->grp_tok);
    free(f->grp_w);
    free(f->grp_n);
    free(f->sel_ids);
    free(f->sel_held);
    free(f->tok_rows);
    free(f->moe_w);
    free(f->moe_alpha);
    free(f->exps_on_be);
    free(f->exps_stride);
    free(f->routed_dev);
    free(f->routes.ids);
    free(f->routes.weights);
    free(f->routes.counts);
    free(f);
}

int64_t forward_n_past(const struct forward *f)
{
    return f->n_past;
}

int64_t forward_n_ctx(const struct forward *f)
{
    return f->n_ctx;
}

uint64_t forward_buffer_bytes(const struct forward *f)
{
    return f->buf_bytes;
}

uint64_t forward_kv_bytes(const struct forward *f)
{
    return f->kv_bytes;
}

uint32_t forward_kv_type(const struct forward *f)
{
    return f->kv_type;
}

const struct backend_rope *forward_rope(const struct forward *f)
{
    return &f->rope;
}

int64_t forward_n_batch(const struct forward *f)
{
    return f->n_batch;
}

int64_t forward_logit_rows(const struct forward *f)
{
    return f->logits_all ? f->n_batch : 1;
}

int64_t forward_n_vocab(const struct forward *f)
{
    return f->m->n_vocab;
}

void forward_reset(struct forward *f)
{
    f->n_past = 0;
}

void forward_truncate(struct forward *f, int64_t n_past)
{
    if (n_past < 0) n_past = 0;
    if (n_past < f->n_past) f->n_past = n_past;
}

const struct forward_routes *forward_routes(const struct forward *f)
{
    return &f->routes;
}

void forward_reset_stats(struct forward *f)
{
    struct forward_routes *r = &f->routes;
    if (r->counts) memset(r->counts, 0, (size_t)(r->n_layer * r->n_expert) * sizeof(uint64_t));
    r->n_routed = 0;
}

/* y = norm(x) with the F32 norm weight of role. */
HY_MUST_CHECK static enum hy_status norm(struct forward *f, int layer, enum model_wrole role,
                                         const float *x, int64_t n_tok, float *y)
{
    struct backend_weight w;
    enum hy_status st = model_acquire(f->m, layer, role, -1, &w);
    if (st) return st;
    backend_rms_norm(f->be, x, (const float *)w.data, (float)f->hp->rms_eps, n_tok, f->hp->n_embd,
                     y);
    model_release(f->m, layer, role);
    return HY_OK;
}

/* y = W(role) · x for n_tok tokens; expert selects a slice of a stacked tensor (-1: none). */
HY_MUST_CHECK static enum hy_status linear(struct forward *f, int layer, enum model_wrole role,
                                           int expert, const float *x, int64_t n_tok, float *y)
{
    struct backend_weight w;
    enum hy_status st = model_acquire(f->m, layer, role, expert, &w);
    if (st) return st;
    backend_matmul(f->be, &w, x, n_tok, y);
    model_release(f->m, layer, role);
    return HY_OK;
}

/* The products of x with the weights w[0..n) and the element-wise op of kind
 * after them (backend.h, matmul_fused): in one call when the backend fuses,
 * else as matmul, add_bias, add and silu_mul calls (tmp: scratch for one
 * product, as large as ys[0]; bias: NONE's, NULL or one per weight). */
static void fused_products(struct backend *be, enum backend_fuse kind,
                           const struct backend_weight *w, int n, const float *x, int64_t n_tok,
                           float *const *ys, const float *const *bias, float *tmp)
{
    if (be->ops->matmul_fused) {
        be->ops->matmul_fused(be, kind, w, n, x, n_tok, ys, bias, tmp);
    } else if (kind == BACKEND_FUSE_NONE) {
        for (int i = 0; i < n; i++) {
            backend_matmul(be, &w[i], x, n_tok, ys[i]);
            if (bias && bias[i]) backend_add_bias(be, ys[i], bias[i], n_tok, w[i].n_rows);
        }
    } else if (kind == BACKEND_FUSE_ADD) {
        backend_matmul(be, &w[0], x, n_tok, tmp);
        backend_add(be, ys[0], tmp, 1.0f, n_tok * w[0].n_rows);
    } else {
        backend_matmul(be, &w[0], x, n_tok, ys[0]);
        backend_matmul(be, &w[1], x, n_tok, tmp);
        backend_silu_mul(be, ys[0], tmp, n_tok * w[0].n_rows);
    }
}

/* fused_products with the weights of n roles of layer l (n <= 3, one n_cols)
 * and, for NONE, the biases of bias_roles where the layer has them (NULL:
 * none). */
HY_MUST_CHECK static enum hy_status linear_fused(struct forward *f, int layer,
                                                 enum backend_fuse kind,
                                                 const enum model_wrole *roles, int n,
                                                 const float *x, int64_t n_tok, float *const *ys,
                                                 const enum model_wrole *bias_roles, float *tmp)
{
    struct backend_weight w[3], b;
    const float *bias[3] = {NULL, NULL, NULL};
    enum hy_status st = HY_OK;
    int got = 0, got_b = 0;
    for (; got < n; got++)
        if ((st = model_acquire(f->m, layer, roles[got], -1, &w[got]))) break;
    for (; bias_roles && got_b < n && !st; got_b++) {
        if (!model_has_weight(f->m, layer, bias_roles[got_b])) continue;
        if ((st = model_acquire(f->m, layer, bias_roles[got_b], -1, &b))) break;
        bias[got_b] = (const float *)b.data;
    }
    if (st == HY_OK) fused_products(f->be, kind, w, n, x, n_tok, ys, bias_roles ? bias : NULL, tmp);
    for (int i = 0; i < got; i++) model_release(f->m, layer, roles[i]);
    for (int i = 0; i < got_b; i++)
        if (bias[i]) model_release(f->m, layer, bias_roles[i]);
    return st;
}

/* RMSNorm of each of n_rows heads of head_dim in place (ARCH_QK_NORM): the
 * same op as the block norms, over head-sized rows. */
HY_MUST_CHECK static enum hy_status head_norm(struct forward *f, int layer, enum model_wrole role,
                                              float *x, int64_t n_rows)
{
    struct backend_weight w;
    enum hy_status st = model_acquire(f->m, layer, role, -1, &w);
    if (st) return st;
    backend_rms_norm(f->be, x, (const float *)w.data, (float)f->hp->rms_eps, n_rows,
                     f->hp->head_dim, x);
    model_release(f->m, layer, role);
    return HY_OK;
}

/* Attention of layer l over n tokens at pos0.. (their K and V enter the
 * cache); the output projection and the residual only for rows r0..n-1 (the
 * rows a later op still needs). */
HY_MUST_CHECK static enum hy_status attention_block(struct forward *f, int l, int64_t n,
                                                    int64_t pos0, int64_t r0)
{
    const struct hparams *hp = f->hp;
    enum hy_status st;
    if ((st = norm(f, l, MODEL_W_ATTN_NORM, f->x, n, f->xb))) return st;
    static const enum model_wrole qkv[3] = {MODEL_W_ATTN_Q, MODEL_W_ATTN_K, MODEL_W_ATTN_V};
    float *const qkv_out[3] = {f->q, f->k, f->v};
    static const enum model_wrole qkv_bias[3] = {MODEL_W_ATTN_Q_BIAS, MODEL_W_ATTN_K_BIAS,
                                                 MODEL_W_ATTN_V_BIAS};
    if ((st = linear_fused(f, l, BACKEND_FUSE_NONE, qkv, 3, f->xb, n, qkv_out, qkv_bias, NULL)))
        return st;
    if (f->m->arch_flags & ARCH_QK_NORM) {
        if ((st = head_norm(f, l, MODEL_W_ATTN_Q_NORM, f->q, n * hp->n_head))) return st;
        if ((st = head_norm(f, l, MODEL_W_ATTN_K_NORM, f->k, n * hp->n_head_kv))) return st;
    }
    struct backend_attn a = {
        .k_cache = f->k_cache + (size_t)l * f->k_layer_bytes,
        .v_cache = f->v_cache + (size_t)l * f->v_layer_bytes,
        .n_ctx = f->n_ctx,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .head_dim_v = hp->head_dim_v,
        .pos0 = pos0,
        .n_tok = n,
        .scale = (float)(1.0 / sqrt((double)hp->head_dim)),
        .k_type = f->kv_type,
        .v_type = f->kv_type,
        .rope = &f->rope,
    };
    backend_attention(f->be, &a, f->q, f->k, f->v, f->att);
    if (r0 >= n) return HY_OK;
    static const enum model_wrole out_role[1] = {MODEL_W_ATTN_OUT};
    float *const res[1] = {f->x + r0 * hp->n_embd};
    return linear_fused(f, l, BACKEND_FUSE_ADD, out_role, 1, f->att + r0 * f->att_dim, n - r0,
                        res, NULL, f->xb2);
}

/* x[0..n) += FFN(xb[0..n)) for a dense layer. */
HY_MUST_CHECK static enum hy_status dense_ffn(struct forward *f, int l, int64_t n, float *x)
{
    static const enum model_wrole gate_up[2] = {MODEL_W_FFN_GATE, MODEL_W_FFN_UP};
    static const enum model_wrole down[1] = {MODEL_W_FFN_DOWN};
    float *const h[1] = {f->hb}, *const res[1] = {x};
    enum hy_status st =
        linear_fused(f, l, BACKEND_FUSE_SWIGLU, gate_up, 2, f->xb, n, h, NULL, f->hb2);
    if (st) return st;
    return linear_fused(f, l, BACKEND_FUSE_ADD, down, 1, f->hb, n, res, NULL, f->xb2);
}

/* The shared expert (ARCH_SHARED_EXPERT), first half: FFN_shexp(h) into
 * shexp_out for every token (moe_ffn says when; its gate logits come with
 * the router's). */
HY_MUST_CHECK static enum hy_status shared_expert_start(struct forward *f, int l, int64_t n)
{
    static const enum model_wrole gate_up[2] = {MODEL_W_FFN_GATE_SHEXP, MODEL_W_FFN_UP_SHEXP};
    float *const h[1] = {f->hb};
    enum hy_status st =
        linear_fused(f, l, BACKEND_FUSE_SWIGLU, gate_up, 2, f->xb, n, h, NULL, f->hb2);
    if (st) return st;
    return linear(f, l, MODEL_W_FFN_DOWN_SHEXP, -1, f->hb, n, f->shexp_out);
}

/* Second half, after the routed experts: x += sigmoid(g) * FFN_shexp(h),
 * g the gate logits on the host (turned into the factors). */
static void shared_expert_add(struct forward *f, int64_t n, float *g)
{
    for (int64_t t = 0; t < n; t++) g[t] = 1.0f / (1.0f + expf(-g[t]));
    backend_add_rows(f->be, f->x, f->shexp_out, f->tok_rows, g, n, f->hp->n_embd);
}

static const enum model_wrole expert_roles[3] = {MODEL_W_FFN_GATE_EXPS, MODEL_W_FFN_UP_EXPS,
                                                 MODEL_W_FFN_DOWN_EXPS};

/* Whether the backend holds slice i (gate, up, down) of expert e of layer l
 * itself (backend.h, holds; asking counts as a use); *w: the slice without
 * its data (model_describe). */
static bool slice_held(struct forward *f, int l, int i, int32_t e, struct backend_weight *w)
{
    model_describe(f->m, l, expert_roles[i], e, w);
    return f->be->ops->holds(f->be, w->key);
}

/* Whether the backend holds all three slices of expert e of layer l. */
static bool expert_held(struct forward *f, int l, int32_t e)
{
    struct backend_weight w;
    for (int i = 0; i < 3; i++)
        if (!slice_held(f, l, i, e, &w)) return false;
    return true;
}

/* linear of slice i of expert e of layer l; with ask, from the backend's own
 * copy where it still holds one, without the store (a streamed slice is then
 * not read). */
HY_MUST_CHECK static enum hy_status linear_expert(struct forward *f, int l, int i, int32_t e,
                                                  bool ask, const float *x, int64_t n_tok, float *y)
{
    struct backend_weight w;
    if (ask && slice_held(f, l, i, e, &w)) {
        backend_matmul(f->be, &w, x, n_tok, y);
        return HY_OK;
    }
    return linear(f, l, expert_roles[i], e, x, n_tok, y);
}

/* Whether layer l's expert slices stay where they are while held (not
 * streamed: acquiring one reads nothing). */
static bool experts_stable(const struct forward *f, int l)
{
    for (int i = 0; i < 3; i++)
        if (!model_weight_stable(f->m, l, expert_roles[i])) return false;
    return true;
}

/* Whether one token's experts of layer l go to the backend in one moe_token
 * call: it has the op, and the expert slices stay where they are while all
 * of them are held. */
static bool moe_in_one_call(const struct forward *f, int l, int64_t k)
{
    /* the scratch of k experts: hb, hb2 and xb2 hold n_batch rows */
    if (!f->be->ops->moe_token || k > BACKEND_MOE_MAX_K || k > f->n_batch) return false;
    return experts_stable(f, l);
}

/* The gate, up and down slices of experts ids[0..k) of layer l into
 * f->moe_w; *held: how many were acquired (moe_release's count, also on
 * an error). */
HY_MUST_CHECK static enum hy_status moe_acquire(struct forward *f, int l, const int32_t *ids,
                                                int64_t k, int64_t *held)
{
    enum hy_status st = HY_OK;
    *held = 0;
    for (int64_t j = 0; j < k && !st; j++)
        for (int i = 0; i < 3 && !st; i++) {
            st = model_acquire(f->m, l, expert_roles[i], ids[j], &f->moe_w[3 * j + i]);
            if (!st) ++*held;
        }
    return st;
}

static void moe_release(struct forward *f, int l, int64_t held)
{
    for (int64_t i = 0; i < held; i++) model_release(f->m, l, expert_roles[i % 3]);
}

/* One token's n_sel experts (f->sel_ids, weights in f->grp_w) of layer l in
 * one moe_token call, added to x. */
HY_MUST_CHECK static enum hy_status moe_one_call(struct forward *f, int l, int64_t n_sel)
{
    for (int64_t j = 0; j < n_sel; j++) f->moe_alpha[j] = f->grp_w[f->sel_ids[j] * f->n_batch];
    int64_t held;
    const enum hy_status st = moe_acquire(f, l, f->sel_ids, n_sel, &held);
    if (!st)
        f->be->ops->moe_token(f->be, f->xb, f->moe_w, f->moe_alpha, (int)n_sel, f->x, f->hb,
                              f->hb2, f->xb2);
    moe_release(f, l, held);
    return st;
}

/* Whether layer l's expert tensors all lie in backend memory (their slices
 * stable: acquiring one reads nothing; a tensor lies in one place). */
HY_MUST_CHECK static enum hy_status experts_on_backend(struct forward *f, int l, bool *on)
{
    if (f->exps_on_be[l] < 0) {
        bool all = true;
        const int32_t last = (int32_t)f->hp->n_expert - 1;
        for (int i = 0; i < 3; i++) {
            struct backend_weight w0, wl;
            enum hy_status st = model_acquire(f->m, l, expert_roles[i], 0, &w0);
            if (st) return st;
            st = model_acquire(f->m, l, expert_roles[i], last, &wl);
            if (st) {
                model_release(f->m, l, expert_roles[i]);
                return st;
            }
            all = all && w0.mem == BACKEND_MEM_BACKEND && wl.mem == BACKEND_MEM_BACKEND;
            /* the slices one tensor apart by the same step (as the file lays them out) */
            const size_t step = (size_t)w0.n_rows * w0.row_bytes;
            const bool even =
                (const uint8_t *)wl.data == (const uint8_t *)w0.data + (size_t)last * step;
            f->exps_stride[3 * l + i] = even ? step : 0;
            model_release(f->m, l, expert_roles[i]);
            model_release(f->m, l, expert_roles[i]);
        }
        f->exps_on_be[l] = all;
    }
    *on = f->exps_on_be[l] == 1;
    return HY_OK;
}

/* The backend's prefetch of the k guessed experts ids of layer l (their
 * slices stable: acquiring them reads nothing). */
HY_MUST_CHECK static enum hy_status moe_copy_ahead(struct forward *f, int l, const int32_t *ids,
                                                   int64_t k)
{
    int64_t held;
    const enum hy_status st = moe_acquire(f, l, ids, k, &held);
    if (!st) f->be->ops->prefetch(f->be, f->moe_w, (int)(3 * k));
    moe_release(f, l, held);
    return st;
}

/* A batch's n_sel experts of layer l (f->sel_ids, their tokens in grp_*)
 * in one moe_batch call, added to x, where they all lie in backend memory
 * and the backend takes them; *done: whether it did. A streamed layer's
 * are not looked at (acquiring an expert outside the route would read it). */
HY_MUST_CHECK static enum hy_status moe_batch_call(struct forward *f, int l, int64_t n,
                                                   int64_t n_sel, bool *done)
{
    *done = false;
    if (n < 2 || !f->be->ops->moe_batch || !experts_stable(f, l)) return HY_OK;
    bool on;
    enum hy_status st = experts_on_backend(f, l, &on);
    if (st || !on) return st;
    int64_t held;
    st = moe_acquire(f, l, f->sel_ids, n_sel, &held);
    if (!st)
        *done = f->be->ops->moe_batch(f->be, f->xb, n, f->moe_w, f->sel_ids, (int)n_sel, f->grp_n,
                                      f->grp_tok, f->grp_w, f->n_batch, f->x);
    moe_release(f, l, held);
    return st;
}

/* Token t's routes of layer l (K ids and weights from src_ids, src_w) into
 * f->routes, counted; an id out of range is an error (a route op's output
 * went wrong). */
HY_MUST_CHECK static enum hy_status routes_record(struct forward *f, int64_t t, int64_t l,
                                                  const int32_t *src_ids, const float *src_w)
{
    struct forward_routes *r = &f->routes;
    const int64_t K = r->n_used, X = r->n_expert;
    int32_t *ids = r->ids + (t * r->n_layer + l) * K;
    memcpy(ids, src_ids, (size_t)K * sizeof(int32_t));
    memcpy(r->weights + (t * r->n_layer + l) * K, src_w, (size_t)K * sizeof(float));
    for (int64_t j = 0; j < K; j++)
        if (ids[j] < 0 || ids[j] >= X)
            return err_set(HY_ERR_INTERNAL,
                           "layer %" PRId64 ": routed to expert %" PRId32 " of %" PRId64, l, ids[j],
                           X);
    for (int64_t j = 0; j < K; j++) r->counts[l * X + ids[j]]++;
    return HY_OK;
}

/* One token's experts of layer l (all in backend memory, exps_stride set)
 * and its shared expert by moe_routed, with the routes the route op left
 * at ids and w in backend memory; *done: whether the backend took them. */
HY_MUST_CHECK static enum hy_status moe_routed_call(struct forward *f, int l, const int32_t *ids,
                                                    const float *w, const float *shexp_gate,
                                                    bool *done)
{
    static const enum model_wrole shexp_roles[3] = {MODEL_W_FFN_GATE_SHEXP, MODEL_W_FFN_UP_SHEXP,
                                                    MODEL_W_FFN_DOWN_SHEXP};
    struct backend_weight ew[3], sw[3];
    size_t stride[3];
    const int n_sw = f->shexp_dim > 0 ? 3 : 0;
    int n_ew = 0, held_sw = 0;
    enum hy_status st = HY_OK;
    for (int i = 0; i < 3 && !st; i++) {
        st = model_acquire(f->m, l, expert_roles[i], 0, &ew[i]);
        if (!st) n_ew++;
        stride[i] = f->exps_stride[3 * l + i];
    }
    for (int i = 0; i < n_sw && !st; i++) {
        st = model_acquire(f->m, l, shexp_roles[i], -1, &sw[i]);
        if (!st) held_sw++;
    }
    *done = !st && f->be->ops->moe_routed(f->be, f->xb, ew, stride, ids, w,
                                          (int)f->hp->n_expert_used, n_sw ? sw : NULL, shexp_gate,
                                          f->shexp_out, f->x, f->hb, f->hb2, f->xb2);
    for (int i = 0; i < n_ew; i++) model_release(f->m, l, expert_roles[i]);
    for (int i = 0; i < held_sw; i++) model_release(f->m, l, shexp_roles[i]);
    if (!st && *done) {
        f->routed_dev[l] = 1;
        f->n_routed_dev++;
    }
    return st;
}

HY_MUST_CHECK static enum hy_status moe_ffn(struct forward *f, int l, int64_t n)
{
    const struct hparams *hp = f->hp;
    const int64_t X = hp->n_expert, K = hp->n_expert_used, E = hp->n_embd;
    enum hy_status st;
    /* decode: a guess at the next layer's experts, that layer's router
     * applied to this layer's FFN input, routed as a second row beside this
     * layer's (the route of a row depends on that row only) and downloaded
     * with them: for a streaming store to read ahead (model_hint) and for
     * the backend to copy ahead (prefetch) where that layer's experts lie
     * still. A prompt batch touches most experts anyway. */
    bool copy_ahead = n == 1 && l + 1 < hp->n_layer && f->be->ops->prefetch &&
                      moe_in_one_call(f, l + 1, K);
    if (copy_ahead) {
        bool placed;
        if ((st = experts_on_backend(f, l + 1, &placed))) return st;
        copy_ahead = !placed;
    }
    const bool guess =
        n == 1 && l + 1 < hp->n_layer && (model_wants_hints(f->m) || copy_ahead);
    const int64_t nr = n + (guess ? 1 : 0); /* rows routed */
    /* one token's routes left on the backend where its moe_routed takes
     * every expert of the layer there and no guess is wanted: nothing comes
     * down, the host goes on queuing the next layer */
    bool on_dev = false;
    if (n == 1 && !guess && f->be->ops->moe_routed && K <= BACKEND_MOE_MAX_K &&
        K <= f->n_batch /* the scratch of K experts: hb and xb2 hold n_batch rows */ &&
        experts_stable(f, l)) {
        if ((st = experts_on_backend(f, l, &on_dev))) return st;
        for (int i = 0; i < 3; i++) on_dev = on_dev && f->exps_stride[3 * l + i] > 0;
    }
    uint32_t *rt = on_dev ? f->dev_routes + l * (2 * K + 1) : f->step_routes;
    uint32_t *rt_host = on_dev ? f->dev_routes_host + l * (2 * K + 1) : f->step_routes_host;
    /* the router's logits and the shared expert's gate logits: one product */
    int32_t *route_ids = (int32_t *)rt;
    float *route_w = (float *)rt + nr * K, *shexp_gate = route_w + nr * K;
    static const enum model_wrole router_roles[2] = {MODEL_W_FFN_ROUTER,
                                                     MODEL_W_FFN_GATE_INP_SHEXP};
    float *const router_out[2] = {f->router, shexp_gate};
    if ((st = linear_fused(f, l, BACKEND_FUSE_NONE, router_roles, f->shexp_dim > 0 ? 2 : 1, f->xb,
                           n, router_out, NULL, NULL)))
        return st;
    /* one token's experts in one moe_token call may start on x: it goes down
     * once the router's product (which may fold the norm that makes it) is
     * done, beside the routing and the routes' own download; with the routes
     * left on the backend, only once the layer is not taken there (below) */
    const bool x_down = n == 1 && moe_in_one_call(f, l, K);
    if (x_down && !on_dev) backend_moe_prepare(f->be, f->xb, E);
    if (guess && (st = linear(f, l + 1, MODEL_W_FFN_ROUTER, -1, f->xb, 1, f->router + n * X)))
        return st;
    /* this step's routes and the shared expert's gate logits: one download,
     * started before one token's shared expert is queued and waited for
     * after it (the GPU computes it while the routes come down and the host
     * queues the routed experts); a batch's shared expert comes after the
     * routed experts (its products then overlap the host's queuing of
     * theirs). */
    const bool shexp_first = f->shexp_dim > 0 && n == 1;
    const int32_t *ids_host = (const int32_t *)rt_host;
    const float *w_host = (const float *)rt_host + nr * K;
    float *gate_host = (float *)rt_host + 2 * nr * K;
    backend_route(f->be, f->router, nr, X, K, !(f->m->arch_flags & ARCH_MOE_NO_RENORM), route_ids,
                  route_w);
    if (on_dev) {
        bool done;
        if ((st = moe_routed_call(f, l, route_ids, route_w, shexp_gate, &done))) return st;
        if (done) return HY_OK;
        /* not taken: the routes come down after all */
    }
    backend_download_start(f->be, rt, rt_host,
                           (size_t)(2 * nr * K + (f->shexp_dim > 0 ? n : 0)) * 4);
    if (x_down && on_dev) backend_moe_prepare(f->be, f->xb, E);
    if (shexp_first && (st = shared_expert_start(f, l, n))) return st;
    if ((st = backend_download_wait(f->be))) return st;

    memset(f->grp_n, 0, (size_t)X * sizeof(int64_t));
    for (int64_t t = 0; t < n; t++) {
        if ((st = routes_record(f, t, l, ids_host + t * K, w_host + t * K))) return st;
        for (int64_t j = 0; j < K; j++) {
            const int32_t e = ids_host[t * K + j];
            f->grp_tok[e * f->n_batch + f->grp_n[e]] = (int32_t)t;
            f->grp_w[e * f->n_batch + f->grp_n[e]] = w_host[t * K + j];
            f->grp_n[e]++;
        }
    }
    /* tell the store which experts come, before acquiring any, and which of
     * them a streamed layer need not read: those the backend holds (a GPU's
     * VRAM cache in front of the store's) */
    int64_t n_sel = 0;
    for (int64_t e = 0; e < X; e++)
        if (f->grp_n[e]) f->sel_ids[n_sel++] = (int32_t)e;
    const bool ask = f->be->ops->holds && !experts_stable(f, l);
    for (int64_t j = 0; ask && j < n_sel; j++) f->sel_held[j] = expert_held(f, l, f->sel_ids[j]);
    model_route(f->m, l, f->sel_ids, n_sel, ask ? f->sel_held : NULL);
    const int32_t *guessed = ids_host + n * K;
    if (guess && model_wants_hints(f->m)) {
        const bool ask_next = f->be->ops->holds && !experts_stable(f, l + 1);
        for (int64_t j = 0; ask_next && j < K; j++)
            f->sel_held[j] = expert_held(f, l + 1, guessed[j]);
        model_hint(f->m, l + 1, guessed, K, ask_next ? f->sel_held : NULL);
    }

    if (n == 1 && moe_in_one_call(f, l, n_sel)) {
        if ((st = moe_one_call(f, l, n_sel))) return st;
        /* after this layer's experts, so that their copies go first */
        if (copy_ahead && (st = moe_copy_ahead(f, l + 1, guessed, K))) return st;
        if (f->shexp_dim > 0) shared_expert_add(f, n, gate_host);
        return HY_OK;
    }

    bool done; /* a batch's experts, where the backend takes them in one call */
    if ((st = moe_batch_call(f, l, n, n_sel, &done))) return st;

    /* the normed inputs as a matrix, to gather the rows routed to an expert */
    const struct backend_weight xb_rows = {f->xb, HY_TYPE_F32, E, n, (size_t)E * sizeof(float),
                                           "ffn input", BACKEND_MEM_BACKEND, 0, false};
    for (int64_t e = 0; e < X && !done; e++) {
        const int64_t cnt = f->grp_n[e];
        if (!cnt) continue;
        const int32_t *toks = f->grp_tok + e * f->n_batch;
        const float *ws = f->grp_w + e * f->n_batch;
        backend_get_rows(f->be, &xb_rows, toks, cnt, f->xg);
        if ((st = linear_expert(f, l, 0, (int32_t)e, ask, f->xg, cnt, f->hb))) return st;
        if ((st = linear_expert(f, l, 1, (int32_t)e, ask, f->xg, cnt, f->hb2))) return st;
        backend_silu_mul(f->be, f->hb, f->hb2, cnt * f->ff_dim);
        if ((st = linear_expert(f, l, 2, (int32_t)e, ask, f->hb, cnt, f->xb2))) return st;
        backend_add_rows(f->be, f->x, f->xb2, toks, ws, cnt, E);
    }
    if (f->shexp_dim > 0) {
        if (!shexp_first && (st = shared_expert_start(f, l, n))) return st;
        shared_expert_add(f, n, gate_host);
    }
    return HY_OK;
}

/* A step's routes, once its layers are queued: those of the layers that
 * moe_routed took (left on the backend) start down, behind the step's ops,
 * and routes_finish records them after the logits are down. Waiting for
 * them here had waited for the output head too, and the logits' download
 * then came whole after it instead of its first part during the head's
 * last rows (cu_download's split). The qwen1.5-moe shape whole in VRAM on
 * an H200 decoded at 1263 tok/s with that wait, 1305 without it (medians of
 * six runs). */
static void routes_start(struct forward *f, int64_t pos0, int64_t n)
{
    f->routes_pending = true;
    f->routes_pos0 = pos0;
    f->routes_n = n;
    if (!f->n_routed_dev) return;
    const int64_t L = f->routes.n_layer, K = f->routes.n_used;
    backend_download_start(f->be, f->dev_routes, f->dev_routes_host, (size_t)(L * (2 * K + 1)) * 4);
}

/* The routes of the step routes_start saw into f->routes, as moe_ffn
 * records the others', and the routing statistics. */
HY_MUST_CHECK static enum hy_status routes_finish(struct forward *f)
{
    if (!f->routes_pending) return HY_OK;
    f->routes_pending = false;
    const int64_t L = f->routes.n_layer, K = f->routes.n_used;
    enum hy_status st;
    if (f->n_routed_dev) {
        if ((st = backend_download_wait(f->be))) return st;
        for (int64_t l = 0; l < L; l++) {
            if (!f->routed_dev[l]) continue;
            f->routed_dev[l] = 0;
            const uint32_t *src = f->dev_routes_host + l * (2 * K + 1);
            if ((st = routes_record(f, 0, l, (const int32_t *)src, (const float *)(src + K))))
                return st;
        }
        f->n_routed_dev = 0;
    }
    f->routes.pos0 = f->routes_pos0;
    f->routes.n_tok = f->routes_n;
    f->routes.n_routed += (uint64_t)f->routes_n;
    model_routed(f->m, f->routes.ids, f->routes_n, f->hp->n_layer, f->hp->n_expert_used);
    return HY_OK;
}

/* One step of n <= n_batch tokens at positions pos0...; logits of the last
 * n_out tokens (0: none, 1: the last token's, n: all). In a dense model's
 * last layer only the rows whose logits are wanted go past attention (as
 * llama.cpp does): every op is per token, so their logits are the same. */
HY_MUST_CHECK static enum hy_status eval_step(struct forward *f, const int32_t *tokens, int64_t n,
                                              int64_t pos0, int64_t n_out)
{
    const struct hparams *hp = f->hp;
    enum hy_status st;
    struct backend_weight w;
    if (f->n_routed_dev) { /* a step that failed before its routes came down */
        memset(f->routed_dev, 0, (size_t)hp->n_layer);
        f->n_routed_dev = 0;
    }
    f->routes_pending = false;
    if ((st = model_acquire(f->m, -1, MODEL_W_TOKEN_EMBD, -1, &w))) return st;
    backend_get_rows(f->be, &w, tokens, n, f->x);
    model_release(f->m, -1, MODEL_W_TOKEN_EMBD);

    for (int l = 0; l < hp->n_layer; l++) {
        /* MoE layers route every token (the routing statistics count them all) */
        const int64_t r0 = l == hp->n_layer - 1 && !f->m->is_moe ? n - n_out : 0;
        if ((st = attention_block(f, l, n, pos0, r0))) return st;
        if (r0 >= n) continue;
        float *x = f->x + r0 * hp->n_embd;
        if ((st = norm(f, l, MODEL_W_FFN_NORM, x, n - r0, f->xb))) return st;
        st = f->m->is_moe ? moe_ffn(f, l, n) : dense_ffn(f, l, n - r0, x);
        if (st) return st;
    }

    if (f->m->is_moe) routes_start(f, pos0, n);
    /* one token's logits are computed alike either way: norm and matmul are per token */
    if (n_out > 0) {
        const float *first = f->x + (n - n_out) * hp->n_embd;
        if ((st = norm(f, -1, MODEL_W_OUTPUT_NORM, first, n_out, f->xb))) return st;
        if ((st = linear(f, -1, MODEL_W_OUTPUT, -1, f->xb, n_out, f->logits_dev))) return st;
    }
    return HY_OK;
}

/* The checks both evaluation calls share; nothing is evaluated when they fail. */
HY_MUST_CHECK static enum hy_status check_tokens(const struct forward *f, const int32_t *tokens,
                                                 int64_t n)
{
    if (n < 1) return err_set(HY_ERR_INVALID_ARG, "forward: nothing to evaluate (0 tokens)");
    if (n > f->n_ctx - f->n_past)
        return err_set(HY_ERR_INVALID_ARG,
                       "context full: %" PRId64 " tokens in the KV cache + %" PRId64
                       " new > context length %" PRId64
                       "\nhint: a larger -c gives the model more context",
                       f->n_past, n, f->n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= f->m->n_vocab)
            return err_set(HY_ERR_INVALID_ARG,
                           "forward: token %" PRId64 " has id %" PRId32
                           ", outside the vocabulary [0, %" PRId64 ")",
                           i, tokens[i], f->m->n_vocab);
    return HY_OK;
}

/* forward_eval's steps, up to the last one's logits in logits_dev. */
HY_MUST_CHECK static enum hy_status eval_steps(struct forward *f, const int32_t *tokens, int64_t n)
{
    enum hy_status st = check_tokens(f, tokens, n);
    if (st) return st;
    for (int64_t i = 0; i < n; i += f->n_batch) {
        const int64_t step = HY_MIN(f->n_batch, n - i);
        const bool last = i + step >= n;
        if ((st = eval_step(f, tokens + i, step, f->n_past, last ? 1 : 0))) return st;
        f->n_past += step;
        if (!last && (st = routes_finish(f))) return st;
    }
    return HY_OK;
}

enum hy_status forward_eval(struct forward *f, const int32_t *tokens, int64_t n,
                            const float **logits)
{
    *logits = NULL;
    enum hy_status st = eval_steps(f, tokens, n);
    if (st) return st;
    backend_download(f->be, f->logits_dev, f->logits, (size_t)f->m->n_vocab * sizeof(float));
    if ((st = backend_sync(f->be)) || (st = routes_finish(f))) return st;
    *logits = f->logits;
    return HY_OK;
}

enum hy_status forward_eval_top(struct forward *f, const int32_t *tokens, int64_t n, int k,
                                int32_t *ids, float *vals, int *n_top, const float **logits)
{
    *n_top = 0;
    if (!f->device_top_k || k < 1 || k > BACKEND_TOP_K_MAX || k > f->m->n_vocab)
        return forward_eval(f, tokens, n, logits);
    *logits = NULL;
    enum hy_status st = eval_steps(f, tokens, n);
    if (st) return st;
    f->be->ops->top_k(f->be, f->logits_dev, f->m->n_vocab, k, ids, vals);
    if ((st = backend_sync(f->be)) || (st = routes_finish(f))) return st;
    *n_top = k;
    return HY_OK;
}

enum hy_status forward_eval_all(struct forward *f, const int32_t *tokens, int64_t n,
                                const float **logits)
{
    *logits = NULL;
    if (!f->logits_all)
        return err_set(HY_ERR_INVALID_ARG,
                       "forward: logits of every token need a forward made with logits_all");
    if (n > f->n_batch)
        return err_set(HY_ERR_INVALID_ARG,
                       "forward: %" PRId64 " tokens in one step, more than the step size %" PRId64,
                       n, f->n_batch);
    enum hy_status st = check_tokens(f, tokens, n);
    if (st) return st;
    if ((st = eval_step(f, tokens, n, f->n_past, n))) return st;
    f->n_past += n;
    backend_download(f->be, f->logits_dev, f->logits, (size_t)(n * f->m->n_vocab) * sizeof(float));
    if ((st = backend_sync(f->be)) || (st = routes_finish(f))) return st;
    *logits = f->logits;
    return HY_OK;
}
