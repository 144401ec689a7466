/*
 * Unit tests of model binding and of the forward pass on tiny models written
 * here with the GGUF writer:
 *
 *  - binding errors: a missing tensor, a wrong shape, a non-F32 norm and an
 *    architecture the forward pass lacks each fail with their status and a
 *    message naming the tensor (or architecture); a model without
 *    output.weight uses token_embd (tied);
 *  - MoE against dense: with a zero router every expert is equally likely, so
 *    the top-2 are experts 0 and 1 with weight 1/2 each. Expert 0 holds the
 *    dense model's FFN with its down projection doubled, expert 1 a zero down
 *    projection, the others large garbage. The MoE model must then compute
 *    the dense model's logits; a wrong expert slice, weight or choice shows;
 *  - MoE bookkeeping on a synth model: a prompt as one batch, in steps of 5
 *    and token by token gives identical logits and routes; weights sum to 1,
 *    ids are distinct and in range, counts add up to tokens * k per layer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "core/rng.h"
#include "gguf/gguf_writer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/quant.h"

#define EMBD     8
#define FF       16
#define HEADS    2
#define KV_HEADS 1
#define HD       (EMBD / HEADS)
#define LAYERS   2
#define VOCAB    32
#define EXPERTS  4

enum tiny_variant {
    TINY_DENSE,
    TINY_MOE,
    TINY_NO_FFN_DOWN, /* blk.0.ffn_down.weight left out */
    TINY_BAD_K,       /* blk.1.attn_k.weight with n_head * head_dim rows */
    TINY_F16_NORM,    /* blk.0.attn_norm.weight in F16 */
    TINY_TIED,        /* no output.weight */
    TINY_QWEN2,       /* general.architecture qwen2 (its biases are optional) */
    TINY_UNKNOWN_ARCH, /* general.architecture falcon, which hypura does not know */
};

struct tensor_spec {
    char name[64];
    uint32_t type;
    int n_dims;
    int64_t ne[3];
    float *data; /* owned, F32 values (converted on write for F16) */
};

struct tiny {
    struct tensor_spec t[64];
    int n;
};

static float *add(struct tiny *m, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                  int64_t ne2)
{
    struct tensor_spec *s = &m->t[m->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->type = HY_TYPE_F32;
    s->n_dims = n_dims;
    s->ne[0] = ne0;
    s->ne[1] = ne1;
    s->ne[2] = ne2;
    s->data = calloc((size_t)(ne0 * ne1 * ne2), sizeof(float));
    return s->data;
}

static void fill(struct rng *r, float *x, size_t n, float scale, float offset)
{
    for (size_t i = 0; i < n; i++) x[i] = offset + scale * (float)rng_normal(r);
}

/* The same seed gives the same attention, embeddings and dense FFN weights for every variant. */
static void build_tiny(struct tiny *m, enum tiny_variant v)
{
    struct rng r;
    rng_init(&r, 1234);
    memset(m, 0, sizeof(*m));
    char name[64];
    fill(&r, add(m, "token_embd.weight", 2, EMBD, VOCAB, 1), EMBD * VOCAB, 1.0f, 0);
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        fill(&r, add(m, name, 1, EMBD, 1, 1), EMBD, 0.1f, 1.0f);
        if (v == TINY_F16_NORM && l == 0) m->t[m->n - 1].type = HY_TYPE_F16;
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        fill(&r, add(m, name, 2, EMBD, HEADS * HD, 1), EMBD * HEADS * HD, 0.4f, 0);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", l);
        int64_t k_rows = (v == TINY_BAD_K && l == 1) ? HEADS * HD : KV_HEADS * HD;
        fill(&r, add(m, name, 2, EMBD, k_rows, 1), (size_t)(EMBD * k_rows), 0.4f, 0);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        fill(&r, add(m, name, 2, EMBD, KV_HEADS * HD, 1), EMBD * KV_HEADS * HD, 0.4f, 0);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        fill(&r, add(m, name, 2, HEADS * HD, EMBD, 1), HEADS * HD * EMBD, 0.4f, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        fill(&r, add(m, name, 1, EMBD, 1, 1), EMBD, 0.1f, 1.0f);
        float gate[EMBD * FF], up[EMBD * FF], down[FF * EMBD];
        fill(&r, gate, EMBD * FF, 0.4f, 0);
        fill(&r, up, EMBD * FF, 0.4f, 0);
        fill(&r, down, FF * EMBD, 0.3f, 0);
        if (v != TINY_MOE) {
            snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l);
            memcpy(add(m, name, 2, EMBD, FF, 1), gate, sizeof gate);
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
            memcpy(add(m, name, 2, EMBD, FF, 1), up, sizeof up);
            if (!(v == TINY_NO_FFN_DOWN && l == 0)) {
                snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
                memcpy(add(m, name, 2, FF, EMBD, 1), down, sizeof down);
            }
            continue;
        }
        struct rng junk;
        rng_init(&junk, 99 + (uint64_t)l);
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
        add(m, name, 2, EMBD, EXPERTS, 1); /* zeros: a uniform router */
        snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", l);
        float *ge = add(m, name, 3, EMBD, FF, EXPERTS);
        snprintf(name, sizeof name, "blk.%d.ffn_up_exps.weight", l);
        float *ue = add(m, name, 3, EMBD, FF, EXPERTS);
        snprintf(name, sizeof name, "blk.%d.ffn_down_exps.weight", l);
        float *de = add(m, name, 3, FF, EMBD, EXPERTS);
        fill(&junk, ge, EMBD * FF * EXPERTS, 5.0f, 0);
        fill(&junk, ue, EMBD * FF * EXPERTS, 5.0f, 0);
        fill(&junk, de, FF * EMBD * EXPERTS, 5.0f, 0);
        memcpy(ge, gate, sizeof gate);
        memcpy(ue, up, sizeof up);
        for (int i = 0; i < FF * EMBD; i++) de[i] = 2.0f * down[i];
        memset(de + FF * EMBD, 0, sizeof down);
    }
    fill(&r, add(m, "output_norm.weight", 1, EMBD, 1, 1), EMBD, 0.1f, 1.0f);
    if (v != TINY_TIED) fill(&r, add(m, "output.weight", 2, EMBD, VOCAB, 1), EMBD * VOCAB, 0.5f, 0);
}

static bool write_tiny(const char *path, enum tiny_variant v)
{
    struct tiny m;
    build_tiny(&m, v);
    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    const char *arch = v == TINY_QWEN2 ? "qwen2" : v == TINY_UNKNOWN_ARCH ? "falcon" : "llama";
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    gguf_writer_set_str(w, "general.architecture", arch);
    gguf_writer_set_u32(w, KEY("embedding_length"), EMBD);
    gguf_writer_set_u32(w, KEY("block_count"), LAYERS);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), FF);
    gguf_writer_set_u32(w, KEY("attention.head_count"), HEADS);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), KV_HEADS);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (v == TINY_MOE) {
        gguf_writer_set_u32(w, KEY("expert_count"), EXPERTS);
        gguf_writer_set_u32(w, KEY("expert_used_count"), 2);
    }
#undef KEY
    for (int i = 0; i < m.n; i++)
        gguf_writer_add_tensor(w, m.t[i].name, m.t[i].type, (uint32_t)m.t[i].n_dims, m.t[i].ne);
    struct gguf_writer_file f;
    bool ok = CHECK_OK(gguf_writer_file_open(&f, path, true));
    if (ok) {
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        ok = CHECK_OK(gguf_writer_begin(w, &sink));
        for (int i = 0; ok && i < m.n; i++) {
            const struct tensor_spec *s = &m.t[i];
            size_t n = (size_t)(s->ne[0] * s->ne[1] * s->ne[2]);
            if (s->type == HY_TYPE_F16) {
                uint16_t *h = malloc(n * 2);
                for (size_t j = 0; j < n; j++) h[j] = quant_f32_to_f16(s->data[j]);
                ok = CHECK_OK(gguf_writer_write_data(w, h, n * 2));
                free(h);
            } else {
                ok = CHECK_OK(gguf_writer_write_data(w, s->data, n * 4));
            }
        }
        ok = ok && CHECK_OK(gguf_writer_finish(w)) && CHECK_OK(gguf_writer_file_commit(&f));
        if (!ok) gguf_writer_file_abort(&f);
    }
    gguf_writer_free(w);
    for (int i = 0; i < m.n; i++) free(m.t[i].data);
    return ok;
}

static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int next;
    char *p = buf[next++ & 3];
    snprintf(p, 128, "%s/%s", tmp_dir, name);
    return p;
}

static void test_binding_errors(void)
{
    struct model *m = NULL;
    const char *p = tmp_path("no_down.gguf");
    if (write_tiny(p, TINY_NO_FFN_DOWN)) {
        CHECK_STATUS(model_open(p, &m), HY_ERR_FORMAT);
        CHECK_CONTAINS(err_msg(), "missing tensor 'blk.0.ffn_down.weight'");
        CHECK(m == NULL);
    }
    p = tmp_path("bad_k.gguf");
    if (write_tiny(p, TINY_BAD_K)) {
        CHECK_STATUS(model_open(p, &m), HY_ERR_FORMAT);
        CHECK_CONTAINS(err_msg(), "'blk.1.attn_k.weight' has shape [8, 8], expected [8, 4]");
    }
    p = tmp_path("f16_norm.gguf");
    if (write_tiny(p, TINY_F16_NORM)) {
        CHECK_STATUS(model_open(p, &m), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "blk.0.attn_norm.weight");
    }
    p = tmp_path("qwen2.gguf");
    if (write_tiny(p, TINY_QWEN2) && CHECK_OK(model_open(p, &m))) {
        CHECK(m->arch_flags & ARCH_ROPE_NEOX);
        CHECK(!model_has_weight(m, 0, MODEL_W_ATTN_Q_BIAS));
        model_close(m);
        m = NULL;
    }
    p = tmp_path("unknown_arch.gguf");
    if (write_tiny(p, TINY_UNKNOWN_ARCH)) {
        CHECK_STATUS(model_open(p, &m), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "'falcon' is not known");
    }
    p = tmp_path("tied.gguf");
    if (write_tiny(p, TINY_TIED) && CHECK_OK(model_open(p, &m))) {
        CHECK(m->tied_output);
        struct backend_weight a, b;
        if (CHECK_OK(model_load(m, NULL, NULL)) &&
            CHECK_OK(model_acquire(m, -1, MODEL_W_OUTPUT, -1, &a)) &&
            CHECK_OK(model_acquire(m, -1, MODEL_W_TOKEN_EMBD, -1, &b)))
            CHECK(a.data == b.data);
        model_close(m);
    }
}

static bool eval_all(const char *path, const int32_t *toks, int64_t n, float *logits_out,
                     int64_t n_batch, int64_t step, struct forward_routes *routes_out,
                     int32_t *ids_out)
{
    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f = NULL;
    struct cpu_backend_opts bo = {.n_threads = 2, .portable = false};
    struct forward_config fc = {.n_ctx = 64, .n_batch = n_batch};
    bool ok = CHECK_OK(model_open(path, &m)) && CHECK_OK(cpu_backend_init(&bo, &be)) &&
              CHECK_OK(forward_init(m, be, &fc, &f)) && CHECK_OK(model_load(m, NULL, NULL));
    const float *logits = NULL;
    for (int64_t i = 0; ok && i < n; i += step) {
        ok = CHECK_OK(forward_eval(f, toks + i, HY_MIN(step, n - i), &logits));
        /* collect each step's routes: the struct holds the last step only */
        if (ok && ids_out && m->is_moe) {
            const struct forward_routes *r = forward_routes(f);
            size_t per_tok = (size_t)(r->n_layer * r->n_used);
            memcpy(ids_out + (size_t)r->pos0 * per_tok, r->ids,
                   (size_t)r->n_tok * per_tok * sizeof(int32_t));
        }
    }
    if (ok) {
        memcpy(logits_out, logits, sizeof(float) * (size_t)m->n_vocab);
        if (routes_out) {
            const struct forward_routes *r = forward_routes(f);
            *routes_out = *r;
            size_t nc = (size_t)(r->n_layer * r->n_expert);
            routes_out->counts = malloc(nc * sizeof(uint64_t) + 1);
            memcpy(routes_out->counts, r->counts, nc * sizeof(uint64_t));
            size_t nw = (size_t)(r->n_tok * r->n_layer * r->n_used);
            routes_out->weights = malloc(nw * sizeof(float) + 1);
            memcpy(routes_out->weights, r->weights, nw * sizeof(float));
            routes_out->ids = malloc(nw * sizeof(int32_t) + 1);
            memcpy(routes_out->ids, r->ids, nw * sizeof(int32_t));
        }
    }
    forward_free(f);
    backend_free(be);
    model_close(m);
    return ok;
}

static void test_moe_matches_dense(void)
{
    const char *pd = tmp_path("dense.gguf"), *pm = tmp_path("moe.gguf");
    if (!write_tiny(pd, TINY_DENSE) || !write_tiny(pm, TINY_MOE)) return;
    const int32_t toks[6] = {1, 5, 9, 30, 2, 17};
    float ld[VOCAB], lm[VOCAB];
    struct forward_routes r = {0};
    if (!eval_all(pd, toks, 6, ld, 0, 6, NULL, NULL) || !eval_all(pm, toks, 6, lm, 0, 6, &r, NULL))
        return;
    double err = 0, mag = 0;
    for (int i = 0; i < VOCAB; i++) {
        err = fmax(err, fabs(ld[i] - lm[i]));
        mag = fmax(mag, fabs(ld[i]));
    }
    if (!CHECK(err <= 1e-5 * (1 + mag)))
        fprintf(stderr, "  MoE vs dense: max logit difference %g\n", err);
    /* uniform router: experts 0 and 1, weights 1/2 */
    CHECK_EQ_INT(r.n_tok, 6);
    int bad = 0;
    for (int64_t i = 0; i < r.n_tok * r.n_layer; i++) {
        bad += r.ids[i * 2] != 0 || r.ids[i * 2 + 1] != 1;
        bad += r.weights[i * 2] != 0.5f || r.weights[i * 2 + 1] != 0.5f;
    }
    CHECK_EQ_INT(bad, 0);
    free(r.counts);
    free(r.weights);
    free(r.ids);
}

static void test_moe_routes(void)
{
    const char *p = tmp_path("synth_moe.gguf");
    struct synth_config cfg = synth_find_preset("mini-moe")->cfg;
    cfg.n_embd = 64;
    cfg.n_ff = cfg.n_ff_exp = 96;
    cfg.n_head = 4;
    cfg.n_head_kv = 2;
    cfg.head_dim = 0;
    cfg.n_layer = 3;
    cfg.n_vocab = 400;
    cfg.n_expert = 6;
    cfg.n_expert_used = 2;
    cfg.ftype = QUANT_MIX_F16;
    struct synth_route_stats rs;
    if (!CHECK_OK(synth_write(&cfg, p, true, NULL, NULL, &rs))) return;
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = (int32_t)(1 + (i * 37) % 399);
    float l_batch[400], l_steps[400], l_one[400];
    struct forward_routes r = {0};
    int32_t ids_batch[20 * 6], ids_steps[20 * 6], ids_one[20 * 6];
    if (!eval_all(p, toks, 20, l_batch, 0, 20, &r, ids_batch)) return;
    /* internal steps of 5 tokens; calls of 7 tokens (routes of every call kept); calls of 1 */
    float l_calls[400];
    bool ok = eval_all(p, toks, 20, l_steps, 5, 20, NULL, NULL) &&
              eval_all(p, toks, 20, l_calls, 0, 7, NULL, ids_steps) &&
              eval_all(p, toks, 20, l_one, 0, 1, NULL, ids_one);
    if (ok) {
        CHECK(memcmp(l_batch, l_steps, sizeof l_batch) == 0);
        CHECK(memcmp(l_batch, l_calls, sizeof l_batch) == 0);
        CHECK(memcmp(l_batch, l_one, sizeof l_batch) == 0);
        CHECK(memcmp(ids_batch, ids_steps, sizeof ids_batch) == 0);
        CHECK(memcmp(ids_batch, ids_one, sizeof ids_batch) == 0);
    }
    CHECK_EQ_INT(r.n_layer, 3);
    CHECK_EQ_INT(r.n_expert, 6);
    CHECK_EQ_INT(r.n_used, 2);
    CHECK_EQ_INT(r.n_tok, 20);
    CHECK_EQ_U64(r.n_routed, 20);
    int bad = 0;
    for (int64_t i = 0; i < 20 * 3; i++) {
        const int32_t *id = r.ids + i * 2;
        const float *w = r.weights + i * 2;
        bad += id[0] < 0 || id[0] >= 6 || id[1] < 0 || id[1] >= 6 || id[0] == id[1];
        bad += fabs((double)w[0] + w[1] - 1.0) > 1e-6 || w[0] < w[1];
    }
    CHECK_EQ_INT(bad, 0);
    for (int l = 0; l < 3; l++) {
        uint64_t sum = 0;
        for (int e = 0; e < 6; e++) sum += r.counts[l * 6 + e];
        CHECK_EQ_U64(sum, 20 * 2);
    }
    free(r.counts);
    free(r.weights);
    free(r.ids);
}

int main(int argc, char **argv)
{
    (void)argc;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/hy_test_forward_XXXXXX");
    if (!CHECK(mkdtemp(tmp_dir) != NULL)) return check_report(argv[0]);
    test_binding_errors();
    test_moe_matches_dense();
    test_moe_routes();
    static const char *const files[] = {"no_down.gguf", "bad_k.gguf",    "f16_norm.gguf",
                                        "qwen2.gguf",   "tied.gguf",     "dense.gguf",
                                        "moe.gguf",     "synth_moe.gguf", "unknown_arch.gguf"};
    for (size_t i = 0; i < HY_ARRAY_LEN(files); i++) unlink(tmp_path(files[i]));
    rmdir(tmp_dir);
    return check_report(argv[0]);
}
