#include "model/synth.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "gguf/gguf_writer.h"
#include "model/arch.h"
#include "model/quant_mix.h"
#include "model/synth_vocab.h"
#include "quant/quant.h"

/* ---- presets ------------------------------------------------------------ */

#define P(...) {__VA_ARGS__, .ftype = QUANT_MIX_F16, .seed = 1, \
                .route_skew = SYNTH_DEFAULT_ROUTE_SKEW, .route_corr = SYNTH_DEFAULT_ROUTE_CORR}

static const struct synth_preset presets[] = {
    {"llama-3-8b", "Llama 3 8B (dense, GQA 32/8)",
     P(.arch = "llama", .name = "synth llama-3-8b", .n_embd = 4096, .n_ff = 14336, .n_head = 32,
       .n_head_kv = 8, .n_layer = 32, .n_vocab = 128256, .n_ctx = 8192, .rope_base = 500000.0,
       .rms_eps = 1e-5)},
    {"llama-3-70b", "Llama 3 70B (dense, GQA 64/8)",
     P(.arch = "llama", .name = "synth llama-3-70b", .n_embd = 8192, .n_ff = 28672, .n_head = 64,
       .n_head_kv = 8, .n_layer = 80, .n_vocab = 128256, .n_ctx = 8192, .rope_base = 500000.0,
       .rms_eps = 1e-5)},
    {"mixtral-8x7b", "Mixtral 8x7B (llama with 8 experts, top-2)",
     P(.arch = "llama", .name = "synth mixtral-8x7b", .n_embd = 4096, .n_ff = 14336, .n_head = 32,
       .n_head_kv = 8, .n_layer = 32, .n_vocab = 32000, .n_ctx = 32768, .rope_base = 1e6, .rms_eps = 1e-5,
       .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 14336)},
    {"qwen2.5-14b", "Qwen2.5 14B (qwen2: q/k/v biases)",
     P(.arch = "qwen2", .name = "synth qwen2.5-14b", .n_embd = 5120, .n_ff = 13824, .n_head = 40,
       .n_head_kv = 8, .n_layer = 48, .n_vocab = 152064, .n_ctx = 32768, .rope_base = 1e6, .rms_eps = 1e-6)},
    {"qwen3-8b", "Qwen3 8B (qwen3: Q/K norm, head dim 128)",
     P(.arch = "qwen3", .name = "synth qwen3-8b", .n_embd = 4096, .n_ff = 12288, .n_head = 32, .n_head_kv = 8,
       .head_dim = 128, .n_layer = 36, .n_vocab = 151936, .n_ctx = 40960, .rope_base = 1e6, .rms_eps = 1e-6)},
    {"qwen3-30b-a3b", "Qwen3 30B-A3B (qwen3moe: 128 experts, top-8)",
     P(.arch = "qwen3moe", .name = "synth qwen3-30b-a3b", .n_embd = 2048, .n_ff = 6144, .n_head = 32,
       .n_head_kv = 4, .head_dim = 128, .n_layer = 48, .n_vocab = 151936, .n_ctx = 40960, .rope_base = 1e6,
       .rms_eps = 1e-6, .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 768)},
    {"qwen1.5-moe-a2.7b", "Qwen1.5-MoE-A2.7B (qwen2moe: 60 experts top-4 + shared expert)",
     P(.arch = "qwen2moe", .name = "synth qwen1.5-moe-a2.7b", .n_embd = 2048, .n_ff = 5632, .n_head = 16,
       .n_head_kv = 16, .n_layer = 24, .n_vocab = 151936, .n_ctx = 8192, .rope_base = 1e6, .rms_eps = 1e-6,
       .n_expert = 60, .n_expert_used = 4, .n_ff_exp = 1408, .n_ff_shexp = 5632)},
    {"mini-moe", "small Mixtral-style model for demos and tests (~150 MiB in F16)",
     P(.arch = "llama", .name = "synth mini-moe", .n_embd = 512, .n_ff = 768, .n_head = 8, .n_head_kv = 4,
       .n_layer = 8, .n_vocab = 4096, .n_ctx = 2048, .rope_base = 10000.0, .rms_eps = 1e-5, .n_expert = 8,
       .n_expert_used = 2, .n_ff_exp = 768)},
    {"tiny-llama", "tiny dense llama for tests (~2 MiB in F16)",
     P(.arch = "llama", .name = "synth tiny-llama", .n_embd = 128, .n_ff = 384, .n_head = 4, .n_head_kv = 2,
       .n_layer = 2, .n_vocab = 1024, .n_ctx = 512, .rope_base = 10000.0, .rms_eps = 1e-5)},
};

#undef P

const struct synth_preset *synth_find_preset(const char *like)
{
    for (size_t i = 0; i < HY_ARRAY_LEN(presets); i++)
        if (strcmp(presets[i].like, like) == 0) return &presets[i];
    return NULL;
}

const struct synth_preset *synth_presets(int *n)
{
    *n = (int)HY_ARRAY_LEN(presets);
    return presets;
}

/* ---- validation --------------------------------------------------------- */

static int64_t head_dim_of(const struct synth_config *c)
{
    return c->head_dim ? c->head_dim : c->n_embd / c->n_head;
}

/* Expert FFN width as the file stores it: llama (Mixtral) uses n_ff. */
static int64_t expert_ff_of(const struct synth_config *c, const struct arch_info *a)
{
    return (a->flags & ARCH_MOE_OPTIONAL) ? c->n_ff : c->n_ff_exp;
}

enum hy_status synth_validate(const struct synth_config *c)
{
    const struct arch_info *a = arch_find(c->arch);
    if (!a) {
        int n;
        const struct arch_info *all = arch_all(&n);
        char names[256] = "";
        for (int i = 0; i < n; i++) {
            strncat(names, all[i].name, sizeof(names) - strlen(names) - 1);
            if (i + 1 < n) strncat(names, ", ", sizeof(names) - strlen(names) - 1);
        }
        return err_set(HY_ERR_INVALID_ARG, "unknown architecture '%s' (known: %s)", c->arch ? c->arch : "", names);
    }
    struct {
        const char *what;
        int64_t v;
    } pos[] = {{"embedding length (--embd)", c->n_embd}, {"feed-forward length (--ff)", c->n_ff},
               {"head count (--heads)", c->n_head}, {"KV head count (--kv-heads)", c->n_head_kv},
               {"layer count (--layers)", c->n_layer}, {"context length (--ctx)", c->n_ctx}};
    for (size_t i = 0; i < HY_ARRAY_LEN(pos); i++)
        if (pos[i].v <= 0) return err_set(HY_ERR_INVALID_ARG, "%s must be positive, got %" PRId64, pos[i].what, pos[i].v);
    if (c->n_embd > (1 << 20) || c->n_ff > (1 << 22) || c->n_layer > 4096 || c->n_head > 4096)
        return err_set(HY_ERR_INVALID_ARG, "dimensions too large (embd %" PRId64 ", ff %" PRId64 ", layers %" PRId64 ")",
                       c->n_embd, c->n_ff, c->n_layer);
    if (c->n_head % c->n_head_kv != 0)
        return err_set(HY_ERR_INVALID_ARG, "head count %" PRId64 " is not a multiple of the KV head count %" PRId64,
                       c->n_head, c->n_head_kv);
    if (c->head_dim < 0) return err_set(HY_ERR_INVALID_ARG, "head dim must be positive, got %" PRId64, c->head_dim);
    if (!c->head_dim && c->n_embd % c->n_head != 0)
        return err_set(HY_ERR_INVALID_ARG,
                       "embedding length %" PRId64 " is not a multiple of the head count %" PRId64 " (or give --head-dim)",
                       c->n_embd, c->n_head);
    if (head_dim_of(c) % 2 != 0)
        return err_set(HY_ERR_INVALID_ARG, "head dim %" PRId64 " must be even (RoPE rotates pairs)", head_dim_of(c));
    if (c->n_vocab < SYNTH_VOCAB_MIN || c->n_vocab > (1 << 24))
        return err_set(HY_ERR_INVALID_ARG, "vocabulary size %" PRId64 " is out of range [%d, %d]", c->n_vocab,
                       SYNTH_VOCAB_MIN, 1 << 24);
    bool moe = (a->flags & ARCH_MOE) || ((a->flags & ARCH_MOE_OPTIONAL) && c->n_expert > 0);
    if ((a->flags & ARCH_MOE) && c->n_expert <= 0)
        return err_set(HY_ERR_INVALID_ARG, "architecture %s needs --experts > 0", a->name);
    if (!(a->flags & (ARCH_MOE | ARCH_MOE_OPTIONAL)) && c->n_expert > 0)
        return err_set(HY_ERR_INVALID_ARG, "architecture %s has no experts (got --experts %" PRId64 ")", a->name,
                       c->n_expert);
    if (moe) {
        if (c->n_expert > 1024)
            return err_set(HY_ERR_INVALID_ARG, "expert count %" PRId64 " is above 1024", c->n_expert);
        if (c->n_expert_used <= 0 || c->n_expert_used > c->n_expert)
            return err_set(HY_ERR_INVALID_ARG, "experts used per token (%" PRId64 ") must be in [1, %" PRId64 "]",
                           c->n_expert_used, c->n_expert);
        if (expert_ff_of(c, a) <= 0)
            return err_set(HY_ERR_INVALID_ARG, "expert feed-forward length must be positive, got %" PRId64,
                           expert_ff_of(c, a));
    }
    if ((a->flags & ARCH_SHARED_EXPERT) && c->n_ff_shexp <= 0)
        return err_set(HY_ERR_INVALID_ARG, "architecture %s needs a shared expert width (--shared-ff > 0)", a->name);
    if (c->n_threads < 0 || c->n_threads > SYNTH_MAX_THREADS)
        return err_set(HY_ERR_INVALID_ARG, "threads %d out of range [1, %d]", c->n_threads, SYNTH_MAX_THREADS);
    if (!(c->route_skew >= 0 && c->route_skew <= 10))
        return err_set(HY_ERR_INVALID_ARG, "--route-skew %g is out of range [0, 10]", c->route_skew);
    if (!(c->route_corr >= 0 && c->route_corr <= 1))
        return err_set(HY_ERR_INVALID_ARG, "--route-corr %g is out of range [0, 1]", c->route_corr);
    return HY_OK;
}

/* ---- tensor plan -------------------------------------------------------- */

enum gen_kind {
    GEN_EMBED,  /* N(0,1) + alpha * u per row */
    GEN_NORMAL, /* N(0, sigma^2) */
    GEN_CONST,  /* every value sigma (norm weights) */
    GEN_ROUTER, /* structured router rows (see synth.h) */
};

struct gen_tensor {
    enum gen_kind kind;
    uint32_t type; /* enum hy_type */
    int64_t ne0;   /* row length */
    float sigma;
    int layer;
};

struct synth_state {
    const struct synth_config *cfg;
    const struct arch_info *arch;
    struct gen_tensor *gens; /* owned, per tensor in writer order */
    uint64_t n_gens, cap_gens;
    int64_t n_ff_exp;
    int64_t max_ne0;          /* longest row of any tensor */
    struct quant_mix_model mix; /* what the type mixture needs */
    enum hy_status status;    /* first failure while laying out */
    float alpha;   /* weight of the shared direction u in embeddings */
    float *u;      /* owned, n_embd, |u|^2 = n_embd */
    /* router state of the previous MoE layer */
    float *z_prev, *b_prev; /* owned, n_expert x n_embd, n_expert */
    float *z_cur, *b_cur;
    int *perm;              /* owned: row e of the previous layer became row perm[e] */
    bool have_prev;
    struct rng route_rng;
    /* routing statistics on sampled hidden states */
    int n_probe;
    float *probe_h;         /* owned, n_probe x n_embd */
    int *sel_prev, *sel_cur; /* owned, n_probe x k */
    double top20_sum, hit_sum;
    int top20_layers, hit_layers;
};

/* Adds a tensor; its type is F32 for vectors and routers, else the file
 * type's mixture. A failure (a row length the mixture cannot take) is kept in
 * s->status and reported by build_layout. */
static void add_tensor(struct gguf_writer *w, struct synth_state *s, const char *name, uint32_t n_dims,
                       int64_t ne0, int64_t ne1, int64_t ne2, enum gen_kind kind, float sigma, int layer)
{
    int64_t ne[3] = {ne0, ne1, ne2};
    uint32_t type = HY_TYPE_F32;
    if (s->status) return;
    if (kind != GEN_ROUTER && (s->status = quant_mix_tensor_type(&s->mix, s->cfg->ftype, name, n_dims, ne0, &type)))
        return;
    gguf_writer_add_tensor(w, name, type, n_dims, ne);
    if (ne0 > s->max_ne0) s->max_ne0 = ne0;
    if (s->n_gens == s->cap_gens) {
        s->cap_gens = s->cap_gens ? s->cap_gens * 2 : 256;
        s->gens = mem_xrealloc(s->gens, s->cap_gens * sizeof(*s->gens));
    }
    s->gens[s->n_gens++] = (struct gen_tensor){kind, type, ne0, sigma, layer};
}

HY_MUST_CHECK static enum hy_status build_layout(struct gguf_writer *w, struct synth_state *s,
                                                const struct synth_vocab *vocab)
{
    const struct synth_config *c = s->cfg;
    const struct arch_info *a = s->arch;
    const char *an = a->name;
    char k[160];
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, an), k)
    int64_t hd = head_dim_of(c);
    bool moe = c->n_expert > 0;
    gguf_writer_set_str(w, "general.architecture", an);
    gguf_writer_set_str(w, "general.name", c->name ? c->name : "synth");
    gguf_writer_set_str(w, "general.description", "hypura synth: random weights, generated text is noise");
    gguf_writer_set_u32(w, "general.file_type", (uint32_t)c->ftype);
    if (quant_traits(quant_mix_base_type(c->ftype))->is_quantized)
        gguf_writer_set_u32(w, "general.quantization_version", 2);
    s->mix = (struct quant_mix_model){c->n_layer, c->n_head, c->n_head_kv, c->n_expert,
                                      !strcmp(an, "llama") && c->n_layer == 80, c->tied_output};
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)hd);
    gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)c->rope_base);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->rms_eps);
    gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab);
    if (moe) {
        gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)c->n_expert);
        gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
        gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)s->n_ff_exp);
    }
    if (a->flags & ARCH_SHARED_EXPERT)
        gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)c->n_ff_shexp);
#undef KEY
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)vocab->tokens, (uint64_t)vocab->n);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", vocab->scores, (uint64_t)vocab->n);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", vocab->types, (uint64_t)vocab->n);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);

    const int64_t E = c->n_embd, q_dim = c->n_head * hd, kv_dim = c->n_head_kv * hd;
    const float s_in = 1.0f / sqrtf((float)E);
    /* layer outputs small against the embedding: the residual stream (and so
     * the router input) changes slowly from layer to layer */
    const float s_out = 0.5f / sqrtf((float)c->n_layer);
    char name[96];
    add_tensor(w, s, "token_embd.weight", 2, E, c->n_vocab, 1, GEN_EMBED, 1.0f, -1);
    for (int l = 0; l < c->n_layer; l++) {
#define TN(part) (snprintf(name, sizeof name, "blk.%d." part, l), name)
        add_tensor(w, s, TN("attn_norm.weight"), 1, E, 1, 1, GEN_CONST, 1.0f, l);
        add_tensor(w, s, TN("attn_q.weight"), 2, E, q_dim, 1, GEN_NORMAL, s_in, l);
        add_tensor(w, s, TN("attn_k.weight"), 2, E, kv_dim, 1, GEN_NORMAL, s_in, l);
        add_tensor(w, s, TN("attn_v.weight"), 2, E, kv_dim, 1, GEN_NORMAL, s_in, l);
        if (a->flags & ARCH_QKV_BIAS) {
            add_tensor(w, s, TN("attn_q.bias"), 1, q_dim, 1, 1, GEN_NORMAL, 0.1f, l);
            add_tensor(w, s, TN("attn_k.bias"), 1, kv_dim, 1, 1, GEN_NORMAL, 0.1f, l);
            add_tensor(w, s, TN("attn_v.bias"), 1, kv_dim, 1, 1, GEN_NORMAL, 0.1f, l);
        }
        if (a->flags & ARCH_QK_NORM) {
            add_tensor(w, s, TN("attn_q_norm.weight"), 1, hd, 1, 1, GEN_CONST, 1.0f, l);
            add_tensor(w, s, TN("attn_k_norm.weight"), 1, hd, 1, 1, GEN_CONST, 1.0f, l);
        }
        add_tensor(w, s, TN("attn_output.weight"), 2, q_dim, E, 1, GEN_NORMAL, s_out / sqrtf((float)q_dim), l);
        add_tensor(w, s, TN("ffn_norm.weight"), 1, E, 1, 1, GEN_CONST, 1.0f, l);
        if (moe) {
            int64_t F = s->n_ff_exp, X = c->n_expert;
            add_tensor(w, s, TN("ffn_gate_inp.weight"), 2, E, X, 1, GEN_ROUTER, 0, l);
            add_tensor(w, s, TN("ffn_gate_exps.weight"), 3, E, F, X, GEN_NORMAL, s_in, l);
            add_tensor(w, s, TN("ffn_up_exps.weight"), 3, E, F, X, GEN_NORMAL, s_in, l);
            add_tensor(w, s, TN("ffn_down_exps.weight"), 3, F, E, X, GEN_NORMAL, 2.0f * s_out / sqrtf((float)F), l);
            if (a->flags & ARCH_SHARED_EXPERT) {
                int64_t S = c->n_ff_shexp;
                add_tensor(w, s, TN("ffn_gate_inp_shexp.weight"), 1, E, 1, 1, GEN_NORMAL, s_in, l);
                add_tensor(w, s, TN("ffn_gate_shexp.weight"), 2, E, S, 1, GEN_NORMAL, s_in, l);
                add_tensor(w, s, TN("ffn_up_shexp.weight"), 2, E, S, 1, GEN_NORMAL, s_in, l);
                add_tensor(w, s, TN("ffn_down_shexp.weight"), 2, S, E, 1, GEN_NORMAL,
                           2.0f * s_out / sqrtf((float)S), l);
            }
        } else {
            int64_t F = c->n_ff;
            add_tensor(w, s, TN("ffn_gate.weight"), 2, E, F, 1, GEN_NORMAL, s_in, l);
            add_tensor(w, s, TN("ffn_up.weight"), 2, E, F, 1, GEN_NORMAL, s_in, l);
            add_tensor(w, s, TN("ffn_down.weight"), 2, F, E, 1, GEN_NORMAL, 2.0f * s_out / sqrtf((float)F), l);
        }
#undef TN
    }
    /* a tied head reads token_embd (unit variance, not output.weight's
     * s_in): the output norm's weights take s_in instead of 1, so that the
     * logits have the untied head's scale */
    add_tensor(w, s, "output_norm.weight", 1, E, 1, 1, GEN_CONST, c->tied_output ? s_in : 1.0f, -1);
    if (!c->tied_output)
        add_tensor(w, s, "output.weight", 2, E, c->n_vocab, 1, GEN_NORMAL, s_in, -1);
    return s->status;
}

/* ---- value generation --------------------------------------------------- */

/* Approximately standard normal from one 64-bit draw: the sum of four 16-bit
 * uniforms (Irwin-Hall), centred and scaled to unit variance. Several times
 * faster than Box-Muller, which matters for tens of GiB of weights. */
static inline float fast_normal(struct rng *r)
{
    uint64_t x = rng_u64(r);
    uint32_t sum = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) + (uint32_t)((x >> 32) & 0xffff) +
                   (uint32_t)(x >> 48);
    return ((float)sum - 131070.0f) * (1.7320508f / 65536.0f);
}

static void state_free(struct synth_state *s)
{
    free(s->gens);
    free(s->u);
    free(s->z_prev);
    free(s->b_prev);
    free(s->z_cur);
    free(s->b_cur);
    free(s->perm);
    free(s->probe_h);
    free(s->sel_prev);
    free(s->sel_cur);
}

static void state_init_routing(struct synth_state *s)
{
    const struct synth_config *c = s->cfg;
    int64_t E = c->n_embd;
    struct rng r;
    rng_init(&r, c->seed ^ 0x5eed0u);
    s->alpha = 0.5f;
    s->u = mem_xmalloc((size_t)E * sizeof(float));
    double norm2 = 0;
    for (int64_t j = 0; j < E; j++) {
        s->u[j] = (float)rng_normal(&r);
        norm2 += (double)s->u[j] * s->u[j];
    }
    float scale = (float)sqrt((double)E / norm2);
    for (int64_t j = 0; j < E; j++) s->u[j] *= scale;
    if (c->n_expert <= 0) return;
    int64_t X = c->n_expert, k = c->n_expert_used;
    s->z_prev = mem_xmalloc((size_t)(X * E) * sizeof(float));
    s->z_cur = mem_xmalloc((size_t)(X * E) * sizeof(float));
    s->b_prev = mem_xmalloc((size_t)X * sizeof(float));
    s->b_cur = mem_xmalloc((size_t)X * sizeof(float));
    s->perm = mem_xmalloc((size_t)X * sizeof(int));
    rng_init(&s->route_rng, c->seed ^ 0x7011u);
    /* probe hidden states: embedding-like vectors after RMSNorm */
    s->n_probe = 512;
    s->probe_h = mem_xmalloc((size_t)s->n_probe * (size_t)E * sizeof(float));
    s->sel_prev = mem_xmalloc((size_t)s->n_probe * (size_t)k * sizeof(int));
    s->sel_cur = mem_xmalloc((size_t)s->n_probe * (size_t)k * sizeof(int));
    for (int t = 0; t < s->n_probe; t++) {
        float *h = s->probe_h + (size_t)t * (size_t)E;
        double ss = 0;
        for (int64_t j = 0; j < E; j++) {
            h[j] = fast_normal(&r) + s->alpha * s->u[j];
            ss += (double)h[j] * h[j];
        }
        float inv = (float)(1.0 / sqrt(ss / (double)E + c->rms_eps));
        for (int64_t j = 0; j < E; j++) h[j] *= inv;
    }
}

/* Router rows of the next MoE layer into w[X][E] (row e = expert e). */
static void gen_router(struct synth_state *s, float *w)
{
    const struct synth_config *c = s->cfg;
    int64_t E = c->n_embd, X = c->n_expert;
    struct rng *r = &s->route_rng;
    double rho = s->have_prev ? c->route_corr : 0.0;
    double fresh = sqrt(1.0 - rho * rho);
    for (int64_t e = 0; e < X; e++) s->perm[e] = (int)e;
    rng_shuffle(r, s->perm, (int)X);
    for (int64_t e = 0; e < X; e++) {
        int64_t to = s->perm[e];
        float *z = s->z_cur + to * E;
        const float *zp = s->z_prev + e * E;
        double dot = 0;
        for (int64_t j = 0; j < E; j++) {
            z[j] = (float)(rho * (s->have_prev ? zp[j] : 0.0f) + fresh * fast_normal(r));
            dot += (double)z[j] * s->u[j];
        }
        /* remove the u component so that popularity comes from b alone */
        float proj = (float)(dot / (double)E);
        for (int64_t j = 0; j < E; j++) z[j] -= proj * s->u[j];
        s->b_cur[to] = (float)(rho * (s->have_prev ? s->b_prev[e] : 0.0f) + fresh * c->route_skew * rng_normal(r));
    }
    /* logit_e = tau * (z_e . h / sqrt(E) + b_e * (u . h) / (u . h)_mean) */
    const float tau = 2.0f;
    double a = s->alpha;
    float uh_mean = (float)(a * (double)E / sqrt(1.0 + a * a));
    float inv_sqrt_e = 1.0f / sqrtf((float)E);
    for (int64_t e = 0; e < X; e++)
        for (int64_t j = 0; j < E; j++)
            w[e * E + j] = tau * (s->z_cur[e * E + j] * inv_sqrt_e + s->b_cur[e] * s->u[j] / uh_mean);

    /* statistics over the probe states */
    int64_t k = c->n_expert_used;
    uint64_t *count = mem_xcalloc((size_t)X, sizeof(uint64_t));
    float *logit = mem_xmalloc((size_t)X * sizeof(float));
    uint64_t hits = 0;
    for (int t = 0; t < s->n_probe; t++) {
        const float *h = s->probe_h + (size_t)t * (size_t)E;
        for (int64_t e = 0; e < X; e++) {
            double acc = 0;
            for (int64_t j = 0; j < E; j++) acc += (double)w[e * E + j] * h[j];
            logit[e] = (float)acc;
        }
        int *sel = s->sel_cur + (size_t)t * (size_t)k;
        for (int64_t i = 0; i < k; i++) {
            int best = -1;
            for (int64_t e = 0; e < X; e++) {
                bool taken = false;
                for (int64_t q = 0; q < i; q++) taken |= sel[q] == e;
                if (!taken && (best < 0 || logit[e] > logit[best])) best = (int)e;
            }
            sel[i] = best;
            count[best]++;
        }
        if (s->have_prev) {
            const int *prev = s->sel_prev + (size_t)t * (size_t)k;
            for (int64_t i = 0; i < k; i++)
                for (int64_t q = 0; q < k; q++) hits += s->perm[prev[i]] == sel[q];
        }
    }
    /* share of the most popular 20% (at least one expert) */
    int64_t top = X / 5 > 0 ? X / 5 : 1;
    uint64_t top_sum = 0;
    for (int64_t i = 0; i < top; i++) {
        int64_t best = 0;
        for (int64_t e = 1; e < X; e++)
            if (count[e] > count[best]) best = e;
        top_sum += count[best];
        count[best] = 0;
    }
    s->top20_sum += (double)top_sum / (double)(s->n_probe * k);
    s->top20_layers++;
    if (s->have_prev) {
        s->hit_sum += (double)hits / (double)(s->n_probe * k);
        s->hit_layers++;
    }
    free(count);
    free(logit);
    float *tz = s->z_prev; s->z_prev = s->z_cur; s->z_cur = tz;
    float *tb = s->b_prev; s->b_prev = s->b_cur; s->b_cur = tb;
    int *ts = s->sel_prev; s->sel_prev = s->sel_cur; s->sel_cur = ts;
    s->have_prev = true;
}

#define CHUNK_ELEMS (1u << 20)

/* One tensor's values, generated and converted chunk by chunk: chunk j
 * (whole rows) has its own generator seeded from (tensor seed, j), so the
 * bytes do not depend on the thread count. */
struct gen_job {
    const struct synth_state *s;
    const struct gen_tensor *g;
    const struct quant_traits *tr;
    uint64_t seed;  /* of the tensor */
    uint64_t n_el;
    uint64_t chunk; /* elements per chunk, a multiple of the row length */
    uint64_t first; /* chunk that thread 0 makes in this run */
    float **vals;   /* per thread, chunk floats */
    void **packed;  /* per thread, the chunk in the tensor's type */
    uint64_t *out_bytes; /* per thread */
};

static void gen_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    const struct gen_job *job = ctx;
    const uint64_t j = job->first + (uint64_t)ith;
    const uint64_t off = j * job->chunk;
    if (off >= job->n_el) return;
    const uint64_t m = HY_MIN(job->chunk, job->n_el - off), ne0 = (uint64_t)job->g->ne0;
    float *v = job->vals[ith];
    struct rng r;
    rng_init(&r, job->seed ^ (j * 0xd1b54a32d192ed03ull));
    for (uint64_t k = 0; k < m; k++) {
        switch (job->g->kind) {
        case GEN_CONST: v[k] = job->g->sigma; break;
        case GEN_EMBED: v[k] = fast_normal(&r) + job->s->alpha * job->s->u[(off + k) % ne0]; break;
        default: v[k] = job->g->sigma * fast_normal(&r); break;
        }
    }
    if (job->g->type == HY_TYPE_F32) memcpy(job->packed[ith], v, m * sizeof(float));
    else job->tr->from_float(v, job->packed[ith], (int64_t)m);
    job->out_bytes[ith] = quant_bytes(job->g->type, m);
}

/* Validates cfg and lays the file out: vocabulary, key/values and tensor
 * infos in *w, generators in *s. On success the caller frees all three. */
HY_MUST_CHECK static enum hy_status synth_prepare(const struct synth_config *cfg, struct synth_vocab *vocab,
                                                  struct synth_state *s, struct gguf_writer **w)
{
    enum hy_status st = synth_validate(cfg);
    if (st) return st;
    if ((st = synth_vocab_init(vocab, cfg->n_vocab))) return st;
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->arch = arch_find(cfg->arch);
    s->n_ff_exp = expert_ff_of(cfg, s->arch);
    *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    if ((st = build_layout(*w, s, vocab))) {
        gguf_writer_free(*w);
        synth_vocab_free(vocab);
        state_free(s);
    }
    return st;
}

enum hy_status synth_file_bytes(const struct synth_config *cfg, uint64_t *out)
{
    struct synth_vocab vocab;
    struct synth_state s;
    struct gguf_writer *w;
    enum hy_status st = synth_prepare(cfg, &vocab, &s, &w);
    if (st) return st;
    *out = gguf_writer_total_bytes(w);
    gguf_writer_free(w);
    synth_vocab_free(&vocab);
    state_free(&s);
    return HY_OK;
}

struct mem_sink {
    unsigned char *buf; /* owned */
    uint64_t n, cap;
};

static int mem_sink_write(void *user, const void *p, size_t n)
{
    struct mem_sink *m = user;
    if (m->n + n > m->cap) {
        m->cap = HY_MAX(m->cap * 2, m->n + n);
        m->buf = mem_xrealloc(m->buf, (size_t)m->cap);
    }
    memcpy(m->buf + m->n, p, n);
    m->n += n;
    return 0;
}

enum hy_status synth_header(const struct synth_config *cfg, void **out, uint64_t *out_bytes, uint64_t *file_bytes)
{
    struct synth_vocab vocab;
    struct synth_state s;
    struct gguf_writer *w;
    *out = NULL;
    *out_bytes = 0;
    enum hy_status st = synth_prepare(cfg, &vocab, &s, &w);
    if (st) return st;
    struct mem_sink m = {0};
    struct gguf_sink sink = {mem_sink_write, &m};
    /* begin writes everything before the first tensor's data */
    if ((st = gguf_writer_begin(w, &sink)) == HY_OK && (st = gguf_writer_flush(w)) == HY_OK)
        *file_bytes = gguf_writer_total_bytes(w);
    gguf_writer_free(w);
    synth_vocab_free(&vocab);
    state_free(&s);
    if (st) {
        free(m.buf);
        return st;
    }
    *out = m.buf;
    *out_bytes = m.n;
    return HY_OK;
}

enum hy_status synth_write(const struct synth_config *cfg, const char *path, bool force, synth_progress_fn progress,
                           void *user, struct synth_route_stats *stats)
{
    memset(stats, 0, sizeof(*stats));
    struct synth_vocab vocab;
    struct synth_state s;
    struct gguf_writer *w;
    enum hy_status st = synth_prepare(cfg, &vocab, &s, &w);
    if (st) return st;
    state_init_routing(&s);
    uint64_t total = gguf_writer_total_bytes(w), done = 0;

    struct gguf_writer_file f = {.fd = -1};
    /* chunks of whole rows (quantization works row by row), one per thread */
    const int n_threads = cfg->n_threads > 0 ? cfg->n_threads : 1;
    const uint64_t cap_el = HY_MAX((uint64_t)CHUNK_ELEMS, (uint64_t)s.max_ne0);
    float *vals[SYNTH_MAX_THREADS];
    void *packed[SYNTH_MAX_THREADS]; /* no type takes more than 4 bytes a value */
    uint64_t out_bytes[SYNTH_MAX_THREADS];
    for (int t = 0; t < n_threads; t++) {
        vals[t] = mem_xmalloc(cap_el * sizeof(float));
        packed[t] = mem_xmalloc(cap_el * sizeof(float));
    }
    float *router = NULL;
    struct threadpool *pool = NULL;
    if ((st = threadpool_init(n_threads, &pool))) goto out;
    if ((st = gguf_writer_file_open(&f, path, force))) goto out;
    struct gguf_sink sink = gguf_writer_file_sink(&f);
    if ((st = gguf_writer_begin(w, &sink))) goto fail;
    for (uint64_t i = 0; i < s.n_gens; i++) {
        const struct gen_tensor *g = &s.gens[i];
        uint64_t n_bytes = gguf_writer_tensor_bytes(w, i);
        if (g->kind == GEN_ROUTER) {
            int64_t X = cfg->n_expert, E = cfg->n_embd;
            router = mem_xrealloc(router, (size_t)(X * E) * sizeof(float));
            gen_router(&s, router);
            if ((st = gguf_writer_write_data(w, router, (size_t)(X * E) * sizeof(float)))) goto fail;
            done += n_bytes;
            if (progress) progress(user, done, total);
            continue;
        }
        const struct quant_traits *tr = quant_traits(g->type);
        const uint64_t n_el = n_bytes / tr->block_bytes * tr->block_size;
        const uint64_t ne0 = (uint64_t)g->ne0;
        struct gen_job job = {&s, g, tr, cfg->seed * 0x9e3779b97f4a7c15ull + i + 1, n_el,
                              cap_el / ne0 * ne0, 0, vals, packed, out_bytes};
        if (cfg->repeat && g->layer >= 0) { /* one chunk of whole rows, its bytes again and again */
            job.chunk = HY_MAX(SYNTH_REPEAT_ELEMS / ne0, 1) * ne0;
            gen_worker(&job, 0, 1);
            for (uint64_t off = 0; off < n_el; off += job.chunk) {
                const uint64_t b = quant_bytes(g->type, HY_MIN(job.chunk, n_el - off));
                if ((st = gguf_writer_write_data(w, packed[0], (size_t)b))) goto fail;
                done += b;
                if (progress) progress(user, done, total);
            }
            continue;
        }
        const uint64_t n_chunks = (n_el + job.chunk - 1) / job.chunk;
        for (job.first = 0; job.first < n_chunks; job.first += (uint64_t)n_threads) {
            threadpool_run(pool, gen_worker, &job);
            for (int t = 0; t < n_threads && job.first + (uint64_t)t < n_chunks; t++) {
                if ((st = gguf_writer_write_data(w, packed[t], (size_t)out_bytes[t]))) goto fail;
                done += out_bytes[t];
                if (progress) progress(user, done, total);
            }
        }
    }
    if ((st = gguf_writer_finish(w))) goto fail;
    if ((st = gguf_writer_file_commit(&f))) goto out;
    if (cfg->n_expert > 0) {
        stats->top20_share = s.top20_layers ? s.top20_sum / s.top20_layers : 0;
        int64_t top = cfg->n_expert / 5 > 0 ? cfg->n_expert / 5 : 1;
        stats->uniform_top20 = (double)top / (double)cfg->n_expert;
        stats->next_layer_hit = s.hit_layers ? s.hit_sum / s.hit_layers : 0;
        stats->uniform_hit = (double)cfg->n_expert_used / (double)cfg->n_expert;
    }
    goto out;
fail:
    gguf_writer_file_abort(&f);
out:
    for (int t = 0; t < n_threads; t++) {
        free(vals[t]);
        free(packed[t]);
    }
    threadpool_free(pool);
    free(router);
    gguf_writer_free(w);
    synth_vocab_free(&vocab);
    state_free(&s);
    return st;
}
