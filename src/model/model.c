#include "model/model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "quant/quant.h"
#include "store/store.h"

/* Architecture features the forward pass implements. An arch row with any
 * other flag is refused by name until its graph code exists. */
#define MODEL_SUPPORTED_ARCH_FLAGS                                                                 \
    ((unsigned)(ARCH_MOE | ARCH_MOE_OPTIONAL | ARCH_SHARED_EXPERT | ARCH_QK_NORM | ARCH_QKV_BIAS | \
                ARCH_ROPE_NEOX | ARCH_MOE_NO_RENORM))

/* Reads of this size keep the disk busy without a huge bounce buffer. */
#define MODEL_HUGE_PAGE_BYTES ((uint64_t)2 << 20)
#define LOAD_READ_BYTES       ((size_t)16 << 20)

enum bind_need {
    NEED_ALWAYS,
    NEED_DENSE,    /* dense FFN models only */
    NEED_MOE,      /* MoE models only */
    NEED_OPTIONAL, /* bound when present (output falls back to token_embd) */
};

struct bind_row {
    enum model_wrole role;
    const char *name; /* GGUF name; "%d" is the layer */
    bool per_layer;
    enum bind_need need;
    unsigned arch_flag; /* bound only for architectures with this enum arch_flag; 0: all */
    const char *dims;   /* the expected shape in hyperparameter names, for messages */
};

static const struct bind_row bind_table[MODEL_W_COUNT] = {
    {MODEL_W_TOKEN_EMBD, "token_embd.weight", false, NEED_ALWAYS, 0, "n_embd, n_vocab"},
    {MODEL_W_OUTPUT_NORM, "output_norm.weight", false, NEED_ALWAYS, 0, "n_embd"},
    {MODEL_W_OUTPUT, "output.weight", false, NEED_OPTIONAL, 0, "n_embd, n_vocab"},
    {MODEL_W_ATTN_NORM, "blk.%d.attn_norm.weight", true, NEED_ALWAYS, 0, "n_embd"},
    {MODEL_W_ATTN_Q, "blk.%d.attn_q.weight", true, NEED_ALWAYS, 0, "n_embd, n_head * head_dim"},
    {MODEL_W_ATTN_K, "blk.%d.attn_k.weight", true, NEED_ALWAYS, 0, "n_embd, n_head_kv * head_dim"},
    {MODEL_W_ATTN_V, "blk.%d.attn_v.weight", true, NEED_ALWAYS, 0,
     "n_embd, n_head_kv * head_dim_v"},
    {MODEL_W_ATTN_OUT, "blk.%d.attn_output.weight", true, NEED_ALWAYS, 0,
     "n_head * head_dim_v, n_embd"},
    /* optional as in llama.cpp, which loads qwen2moe files without them */
    {MODEL_W_ATTN_Q_BIAS, "blk.%d.attn_q.bias", true, NEED_OPTIONAL, ARCH_QKV_BIAS,
     "n_head * head_dim"},
    {MODEL_W_ATTN_K_BIAS, "blk.%d.attn_k.bias", true, NEED_OPTIONAL, ARCH_QKV_BIAS,
     "n_head_kv * head_dim"},
    {MODEL_W_ATTN_V_BIAS, "blk.%d.attn_v.bias", true, NEED_OPTIONAL, ARCH_QKV_BIAS,
     "n_head_kv * head_dim_v"},
    {MODEL_W_ATTN_Q_NORM, "blk.%d.attn_q_norm.weight", true, NEED_ALWAYS, ARCH_QK_NORM, "head_dim"},
    {MODEL_W_ATTN_K_NORM, "blk.%d.attn_k_norm.weight", true, NEED_ALWAYS, ARCH_QK_NORM, "head_dim"},
    {MODEL_W_FFN_NORM, "blk.%d.ffn_norm.weight", true, NEED_ALWAYS, 0, "n_embd"},
    {MODEL_W_FFN_GATE, "blk.%d.ffn_gate.weight", true, NEED_DENSE, 0, "n_embd, n_ff"},
    {MODEL_W_FFN_UP, "blk.%d.ffn_up.weight", true, NEED_DENSE, 0, "n_embd, n_ff"},
    {MODEL_W_FFN_DOWN, "blk.%d.ffn_down.weight", true, NEED_DENSE, 0, "n_ff, n_embd"},
    {MODEL_W_FFN_ROUTER, "blk.%d.ffn_gate_inp.weight", true, NEED_MOE, 0, "n_embd, n_expert"},
    {MODEL_W_FFN_GATE_EXPS, "blk.%d.ffn_gate_exps.weight", true, NEED_MOE, 0,
     "n_embd, n_ff_exp, n_expert"},
    {MODEL_W_FFN_UP_EXPS, "blk.%d.ffn_up_exps.weight", true, NEED_MOE, 0,
     "n_embd, n_ff_exp, n_expert"},
    {MODEL_W_FFN_DOWN_EXPS, "blk.%d.ffn_down_exps.weight", true, NEED_MOE, 0,
     "n_ff_exp, n_embd, n_expert"},
    {MODEL_W_FFN_GATE_INP_SHEXP, "blk.%d.ffn_gate_inp_shexp.weight", true, NEED_MOE,
     ARCH_SHARED_EXPERT, "n_embd"},
    {MODEL_W_FFN_GATE_SHEXP, "blk.%d.ffn_gate_shexp.weight", true, NEED_MOE, ARCH_SHARED_EXPERT,
     "n_embd, n_ff_shexp"},
    {MODEL_W_FFN_UP_SHEXP, "blk.%d.ffn_up_shexp.weight", true, NEED_MOE, ARCH_SHARED_EXPERT,
     "n_embd, n_ff_shexp"},
    {MODEL_W_FFN_DOWN_SHEXP, "blk.%d.ffn_down_shexp.weight", true, NEED_MOE, ARCH_SHARED_EXPERT,
     "n_ff_shexp, n_embd"},
};

const char *model_wrole_name(enum model_wrole role)
{
    static const char *const names[MODEL_W_COUNT] = {
        [MODEL_W_TOKEN_EMBD] = "token_embd",
        [MODEL_W_OUTPUT_NORM] = "output_norm",
        [MODEL_W_OUTPUT] = "output",
        [MODEL_W_ATTN_NORM] = "attn_norm",
        [MODEL_W_ATTN_Q] = "attn_q",
        [MODEL_W_ATTN_K] = "attn_k",
        [MODEL_W_ATTN_V] = "attn_v",
        [MODEL_W_ATTN_OUT] = "attn_output",
        [MODEL_W_FFN_NORM] = "ffn_norm",
        [MODEL_W_FFN_GATE] = "ffn_gate",
        [MODEL_W_FFN_UP] = "ffn_up",
        [MODEL_W_FFN_DOWN] = "ffn_down",
        [MODEL_W_FFN_ROUTER] = "ffn_gate_inp",
        [MODEL_W_FFN_GATE_EXPS] = "ffn_gate_exps",
        [MODEL_W_FFN_UP_EXPS] = "ffn_up_exps",
        [MODEL_W_FFN_DOWN_EXPS] = "ffn_down_exps",
        [MODEL_W_ATTN_Q_BIAS] = "attn_q.bias",
        [MODEL_W_ATTN_K_BIAS] = "attn_k.bias",
        [MODEL_W_ATTN_V_BIAS] = "attn_v.bias",
        [MODEL_W_ATTN_Q_NORM] = "attn_q_norm",
        [MODEL_W_ATTN_K_NORM] = "attn_k_norm",
        [MODEL_W_FFN_GATE_INP_SHEXP] = "ffn_gate_inp_shexp",
        [MODEL_W_FFN_GATE_SHEXP] = "ffn_gate_shexp",
        [MODEL_W_FFN_UP_SHEXP] = "ffn_up_shexp",
        [MODEL_W_FFN_DOWN_SHEXP] = "ffn_down_shexp",
    };
    return (unsigned)role < MODEL_W_COUNT ? names[role] : "?";
}

/* Vectors the backend reads as F32 (norm weights and biases). */
static bool is_f32_vector(enum model_wrole role)
{
    switch (role) {
    case MODEL_W_OUTPUT_NORM:
    case MODEL_W_ATTN_NORM:
    case MODEL_W_FFN_NORM:
    case MODEL_W_ATTN_Q_NORM:
    case MODEL_W_ATTN_K_NORM:
    case MODEL_W_ATTN_Q_BIAS:
    case MODEL_W_ATTN_K_BIAS:
    case MODEL_W_ATTN_V_BIAS:
        return true;
    default:
        return false;
    }
}

/* Expected ne[0..3) of a role; unused dims are 1. */
static void expected_shape(const struct model *m, enum model_wrole role, int64_t ne[3])
{
    const struct hparams *hp = m->hp;
    ne[0] = ne[1] = ne[2] = 1;
    switch (role) {
    case MODEL_W_TOKEN_EMBD:
    case MODEL_W_OUTPUT:
        ne[0] = hp->n_embd;
        ne[1] = m->n_vocab;
        break;
    case MODEL_W_OUTPUT_NORM:
    case MODEL_W_ATTN_NORM:
    case MODEL_W_FFN_NORM:
        ne[0] = hp->n_embd;
        break;
    case MODEL_W_ATTN_Q:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_head * hp->head_dim;
        break;
    case MODEL_W_ATTN_K:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_head_kv * hp->head_dim;
        break;
    case MODEL_W_ATTN_V:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_head_kv * hp->head_dim_v;
        break;
    case MODEL_W_ATTN_OUT:
        ne[0] = hp->n_head * hp->head_dim_v;
        ne[1] = hp->n_embd;
        break;
    case MODEL_W_ATTN_Q_BIAS:
        ne[0] = hp->n_head * hp->head_dim;
        break;
    case MODEL_W_ATTN_K_BIAS:
        ne[0] = hp->n_head_kv * hp->head_dim;
        break;
    case MODEL_W_ATTN_V_BIAS:
        ne[0] = hp->n_head_kv * hp->head_dim_v;
        break;
    case MODEL_W_ATTN_Q_NORM:
    case MODEL_W_ATTN_K_NORM:
        ne[0] = hp->head_dim;
        break;
    case MODEL_W_FFN_GATE_INP_SHEXP:
        ne[0] = hp->n_embd;
        break;
    case MODEL_W_FFN_GATE_SHEXP:
    case MODEL_W_FFN_UP_SHEXP:
        ne[0] = hp->n_embd;
        ne[1] = m->n_ff_shexp;
        break;
    case MODEL_W_FFN_DOWN_SHEXP:
        ne[0] = m->n_ff_shexp;
        ne[1] = hp->n_embd;
        break;
    case MODEL_W_FFN_GATE:
    case MODEL_W_FFN_UP:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_ff;
        break;
    case MODEL_W_FFN_DOWN:
        ne[0] = hp->n_ff;
        ne[1] = hp->n_embd;
        break;
    case MODEL_W_FFN_ROUTER:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_expert;
        break;
    case MODEL_W_FFN_GATE_EXPS:
    case MODEL_W_FFN_UP_EXPS:
        ne[0] = hp->n_embd;
        ne[1] = hp->n_ff_exp;
        ne[2] = hp->n_expert;
        break;
    case MODEL_W_FFN_DOWN_EXPS:
        ne[0] = hp->n_ff_exp;
        ne[1] = hp->n_embd;
        ne[2] = hp->n_expert;
        break;
    case MODEL_W_COUNT:
        HY_ASSERT(!"no shape for MODEL_W_COUNT");
    }
}

static const struct gguf_tensor **slot(const struct model *m, int layer, enum model_wrole role)
{
    HY_ASSERT(layer >= -1 && layer < m->hp->n_layer && (unsigned)role < MODEL_W_COUNT);
    return &m->bound[(size_t)(layer + 1) * MODEL_W_COUNT + role];
}

static void shape_str(const int64_t *ne, int n_dims, char *buf, size_t cap)
{
    size_t len = 0;
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (int i = 0; i < n_dims && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", ne[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

HY_MUST_CHECK static enum hy_status bind_one(struct model *m, const struct bind_row *row, int layer)
{
    char name[96];
    if (row->per_layer)
        snprintf(name, sizeof name, row->name, layer);
    else
        snprintf(name, sizeof name, "%s", row->name);
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (row->need == NEED_OPTIONAL) return HY_OK;
        return err_set(HY_ERR_FORMAT, "%s: missing tensor '%s' (%s needs it: %s%s)", m->gguf->name,
                       name, m->info.arch, model_wrole_name(row->role),
                       row->need == NEED_MOE ? ", an MoE layer's tensor" : "");
    }
    int64_t want[3];
    expected_shape(m, row->role, want);
    int n_want = want[2] != 1 ? 3 : want[1] != 1 ? 2 : 1;
    bool ok = t->ne[0] == want[0] && t->ne[1] == want[1] && t->ne[2] == want[2] && t->ne[3] == 1;
    if (!ok) {
        char got_s[96], want_s[96];
        shape_str(t->ne, (int)t->n_dims, got_s, sizeof got_s);
        shape_str(want, n_want, want_s, sizeof want_s);
        return err_set(HY_ERR_FORMAT,
                       "%s: tensor '%s' has shape %s, expected %s = [%s] from the hyperparameters",
                       m->gguf->name, name, got_s, want_s, row->dims);
    }
    if (is_f32_vector(row->role) && t->type != HY_TYPE_F32)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: tensor '%s' is %s; norm weights and biases must be F32", m->gguf->name,
                       name, quant_type_name(t->type));
    *slot(m, layer, row->role) = t;
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status check_arch(struct model *m)
{
    const struct model_info *mi = &m->info;
    const char *file = m->gguf->name;
    if (!mi->arch) return err_set(HY_ERR_FORMAT, "%s: no general.architecture key", file);
    if (!mi->arch_row)
        return err_set(HY_ERR_UNSUPPORTED, "%s: architecture '%s' is not known to hypura", file,
                       mi->arch);
    unsigned missing = mi->arch_row->flags & ~MODEL_SUPPORTED_ARCH_FLAGS;
    if (missing) {
        static const struct {
            unsigned flag;
            const char *what;
        } feats[] = {
            {ARCH_MOE, "routed experts"},  {ARCH_SHARED_EXPERT, "shared experts"},
            {ARCH_QK_NORM, "Q/K norms"},   {ARCH_QKV_BIAS, "q/k/v biases"},
            {ARCH_ROPE_NEOX, "NeoX RoPE"}, {ARCH_MOE_NO_RENORM, "unnormalised expert weights"},
        };
        char list[160] = "";
        for (size_t i = 0; i < HY_ARRAY_LEN(feats); i++) {
            if (!(missing & feats[i].flag)) continue;
            if (list[0]) strncat(list, ", ", sizeof list - strlen(list) - 1);
            strncat(list, feats[i].what, sizeof list - strlen(list) - 1);
        }
        return err_set(
            HY_ERR_UNSUPPORTED,
            "%s: architecture '%s' is not supported by the forward pass yet (it needs %s)\n"
            "hint: llama, qwen2, qwen3, qwen2moe and qwen3moe models run today",
            file, mi->arch, list);
    }
    const struct hparams *hp = &mi->hp;
    if (hp->per_layer_heads)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: head counts or FFN lengths that vary per layer are not supported",
                       file);
    if (hp->head_dim <= 0 || hp->head_dim_v <= 0 || hp->n_rot <= 0 || hp->n_rot % 2 != 0 ||
        hp->n_rot > hp->head_dim)
        return err_set(
            HY_ERR_FORMAT,
            "%s: head_dim %" PRId64 ", value head_dim %" PRId64 ", rope.dimension_count %" PRId64
            ": need positive head sizes and an even rope dimension no larger than head_dim",
            file, hp->head_dim, hp->head_dim_v, hp->n_rot);
    if (!(hp->rope_freq_base > 0.0) || !(hp->rms_eps >= 0.0))
        return err_set(HY_ERR_FORMAT, "%s: rope.freq_base %g, rms epsilon %g: need a positive base",
                       file, hp->rope_freq_base, hp->rms_eps);
    if (hp->n_expert > 0 && (hp->n_expert_used < 1 || hp->n_ff_exp <= 0))
        return err_set(HY_ERR_FORMAT,
                       "%s: %" PRId64 " experts but expert_used_count %" PRId64
                       " and expert FFN length %" PRId64,
                       file, hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    if ((mi->arch_row->flags & ARCH_MOE) && hp->n_expert == 0)
        return err_set(
            HY_ERR_FORMAT,
            "%s: architecture '%s' has routed experts but %s.expert_count is 0 or missing", file,
            mi->arch, mi->arch);
    if ((mi->arch_row->flags & ARCH_SHARED_EXPERT) && m->n_ff_shexp <= 0)
        return err_set(
            HY_ERR_FORMAT,
            "%s: the shared expert's width is 0 (neither %s.expert_shared_feed_forward_length "
            "nor %s.feed_forward_length is set)",
            file, mi->arch, mi->arch);
    if (hp->n_expert == 0 && hp->n_ff <= 0)
        return err_set(HY_ERR_FORMAT, "%s: missing or zero %s.feed_forward_length", file, mi->arch);
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status bind_all(struct model *m)
{
    const struct gguf_tensor *embd = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!embd)
        return err_set(HY_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", m->gguf->name);
    m->n_vocab = embd->ne[1];
    if (m->info.vocab.n_tokens > m->n_vocab)
        return err_set(HY_ERR_FORMAT,
                       "%s: the vocabulary has %" PRId64 " tokens but token_embd only %" PRId64
                       " rows",
                       m->gguf->name, m->info.vocab.n_tokens, m->n_vocab);
    const int64_t n_layer = m->hp->n_layer;
    m->bound = mem_xcalloc((size_t)(n_layer + 1) * MODEL_W_COUNT, sizeof(*m->bound));
    enum hy_status st;
    for (size_t i = 0; i < HY_ARRAY_LEN(bind_table); i++) {
        const struct bind_row *row = &bind_table[i];
        if ((row->need == NEED_DENSE && m->is_moe) || (row->need == NEED_MOE && !m->is_moe))
            continue;
        if (row->arch_flag && !(m->arch_flags & row->arch_flag)) continue;
        if (!row->per_layer) {
            if ((st = bind_one(m, row, -1))) return st;
            continue;
        }
        for (int l = 0; l < n_layer; l++)
            if ((st = bind_one(m, row, l))) return st;
    }
    if (!*slot(m, -1, MODEL_W_OUTPUT)) {
        m->tied_output = true;
        *slot(m, -1, MODEL_W_OUTPUT) = *slot(m, -1, MODEL_W_TOKEN_EMBD);
    }
    for (size_t i = 0; i < (size_t)(n_layer + 1) * MODEL_W_COUNT; i++)
        if (m->bound[i] && !(m->tied_output && i == MODEL_W_OUTPUT))
            m->weight_bytes += m->bound[i]->n_bytes;
    return HY_OK;
}

enum hy_status model_open(const char *path, struct model **out)
{
    *out = NULL;
    struct model *m = mem_xcalloc(1, sizeof(*m));
    m->path = mem_xstrdup(path);
    enum hy_status st = gguf_open(path, &m->gguf);
    if (!st) st = model_info_init(&m->info, m->gguf);
    if (!st) {
        m->hp = &m->info.hp;
        m->is_moe = m->info.hp.n_expert > 0;
        if (m->info.arch_row) {
            m->arch_flags = m->info.arch_row->flags;
            /* llama.cpp's default for a missing or zero key */
            if (m->arch_flags & ARCH_SHARED_EXPERT)
                m->n_ff_shexp = m->info.hp.n_ff_shexp ? m->info.hp.n_ff_shexp : m->info.hp.n_ff;
        }
        st = check_arch(m);
    }
    if (!st) st = bind_all(m);
    if (st) {
        model_close(m);
        return st;
    }
    *out = m;
    return HY_OK;
}

void model_close(struct model *m)
{
    if (!m) return;
    store_close(m->store);
    free(m->bound);
    if (m->gguf) model_info_free(&m->info);
    gguf_free(m->gguf);
    free(m->path);
    free(m);
}

enum hy_status model_check_types(const struct model *m, bool (*supported)(uint32_t type))
{
    for (size_t i = 0; i < (size_t)(m->hp->n_layer + 1) * MODEL_W_COUNT; i++) {
        const struct gguf_tensor *t = m->bound[i];
        if (t && !supported(t->type))
            return err_set(
                HY_ERR_UNSUPPORTED,
                "%s: tensor '%s' has type %s, which hypura cannot compute with yet\n"
                "hint: supported types are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the "
                "K-quants Q2_K..Q6_K (files such as Q4_K_M, Q5_K_M, Q6_K)",
                m->gguf->name, t->name, quant_type_name(t->type));
    }
    return HY_OK;
}

enum hy_status model_load(struct model *m, model_progress_fn progress, void *user)
{
    if (m->store) return HY_OK;
    struct store *st;
    const struct store_config cfg = {.mode = STORE_RESIDENT, .progress = progress,
                                     .progress_user = user};
    return store_open(m, &cfg, &st);
}

/* out for role's tensor t (expert's slice of a stacked one), all but where
 * its bytes lie. */
static void describe(const struct model *m, const struct gguf_tensor *t, enum model_wrole role,
                     int expert, struct backend_weight *out)
{
    const bool stacked = role == MODEL_W_FFN_GATE_EXPS || role == MODEL_W_FFN_UP_EXPS ||
                         role == MODEL_W_FFN_DOWN_EXPS;
    HY_ASSERT(stacked ? (expert >= 0 && expert < t->ne[2]) : expert == -1);
    *out = (struct backend_weight){
        .type = t->type,
        .n_cols = t->ne[0],
        .n_rows = t->ne[1],
        .row_bytes = (size_t)quant_bytes(t->type, (uint64_t)t->ne[0]),
        .name = t->name,
        .mem = BACKEND_MEM_HOST,
        /* an expert slice's identity, for a GPU backend's VRAM cache */
        .key = stacked ? ((uint64_t)(t - m->gguf->tensors) + 1) << 20 | (uint64_t)(expert + 1) : 0,
    };
}

enum hy_status model_acquire(struct model *m, int layer, enum model_wrole role, int expert,
                             struct backend_weight *out)
{
    HY_ASSERT((role < MODEL_W_FIRST_LAYER_ROLE) == (layer < 0));
    const struct gguf_tensor *t = *slot(m, layer, role);
    HY_ASSERT(t != NULL && m->store != NULL);
    describe(m, t, role, expert, out);
    const uint64_t off = out->key ? (uint64_t)expert * (t->n_bytes / (uint64_t)t->ne[2]) : 0;
    const uint8_t *data;
    bool on_gpu = false, stable = false;
    enum hy_status st =
        store_acquire(m->store, layer, role, expert, t, off, &data, &on_gpu, &stable);
    if (st) return st;
    out->data = data;
    out->mem = on_gpu ? BACKEND_MEM_BACKEND : BACKEND_MEM_HOST;
    out->stable = stable;
    return HY_OK;
}

void model_describe(const struct model *m, int layer, enum model_wrole role, int expert,
                    struct backend_weight *out)
{
    HY_ASSERT((role < MODEL_W_FIRST_LAYER_ROLE) == (layer < 0));
    const struct gguf_tensor *t = *slot(m, layer, role);
    HY_ASSERT(t != NULL);
    describe(m, t, role, expert, out);
}

bool model_has_weight(const struct model *m, int layer, enum model_wrole role)
{
    return *slot(m, layer, role) != NULL;
}

void model_release(struct model *m, int layer, enum model_wrole role)
{
    store_release(m->store, layer, role);
}

void model_route(struct model *m, int layer, const int32_t *ids, int64_t n, const bool *elsewhere)
{
    store_route(m->store, layer, ids, n, elsewhere);
}

void model_routed(struct model *m, const int32_t *ids, int64_t n_tok, int64_t n_layer, int64_t k)
{
    store_routed(m->store, ids, n_tok, n_layer, k);
}

bool model_weight_stable(const struct model *m, int layer, enum model_wrole role)
{
    return store_weight_stable(m->store, layer, role);
}

bool model_wants_hints(const struct model *m)
{
    return store_wants_hints(m->store);
}

void model_hint(struct model *m, int layer, const int32_t *ids, int64_t n, const bool *elsewhere)
{
    store_hint(m->store, layer, ids, n, elsewhere);
}
