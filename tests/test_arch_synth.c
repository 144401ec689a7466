/*
 * Every architecture of the table runs, on models `hypura synth` writes
 * (synth_write, random weights, scaled down to 2 layers of 256):
 *
 *  - llama (dense and Mixtral-style), qwen2 (biases; also with a tied output
 *    head), qwen3 (Q/K norms, head_dim 128 != n_embd / n_head), qwen2moe
 *    (shared expert, unnormalised expert weights) and qwen3moe, each in F32
 *    and Q4_K_M: a prompt batch and decode steps give finite logits;
 *  - router bookkeeping of every MoE model: per layer the selection counts
 *    add up to tokens x k, a token's choices are distinct and in range, and
 *    its weights sum to 1 (renormalised archs) or lie in (0, 1] with a sum
 *    of at most 1 (qwen2moe);
 *  - expert permutation: a copy of each MoE model whose experts are
 *    permuted (the rows of ffn_gate_inp and the slices of the stacked
 *    ffn_*_exps tensors together, written with gguf_writer) gives the same
 *    logits up to float rounding (the experts' contributions are summed in
 *    another order), and layer 0 picks the permuted experts exactly.
 *
 * Agreement with llama.cpp on these architectures is test_forward_golden's
 * and test_engine_golden's (qwen2, qwen2moe files llama.cpp quantized).
 * qwen3 and qwen3moe have no file from llama.cpp here; they were verified by
 * hand against llama.cpp build 7597 (commit 13814eb, which has both graphs):
 * synth models of both in F32 and Q4_K_M gave the same 24 greedy tokens with
 * llama-simple, and llama-perplexity agreed within 0.1 %. That comparison is
 * not automated (llama.cpp is not a dependency of the tests).
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "gguf/gguf_writer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synth.h"
#include "synth_small.h"

#define N_PROMPT 12
#define N_DECODE 4

struct runner {
    struct model *m;
    struct backend *be;
    struct forward *f;
};

static bool runner_open(struct runner *r, const char *path)
{
    memset(r, 0, sizeof(*r));
    struct cpu_backend_opts bo = {.n_threads = 2, .portable = false};
    struct forward_config fc = {.n_ctx = 64};
    if (!(CHECK_OK(model_open(path, &r->m)) && CHECK_OK(cpu_backend_init(&bo, &r->be)) &&
          CHECK_OK(forward_init(r->m, r->be, &fc, &r->f)) && CHECK_OK(model_load(r->m, NULL, NULL))))
        return false;
    /* hypura plan's count of the forward buffers, from the header alone,
     * is what forward_init allocated */
    struct forward_sizes fs;
    if (CHECK_OK(forward_sizes_of(&r->m->info, &fc, &fs))) {
        CHECK_EQ_U64(fs.device_bytes + fs.host_bytes, forward_buffer_bytes(r->f));
        CHECK_EQ_U64(fs.kv_bytes, forward_kv_bytes(r->f));
        CHECK_EQ_INT((int)fs.n_batch, (int)forward_n_batch(r->f));
    }
    return true;
}

static void runner_close(struct runner *r)
{
    forward_free(r->f);
    backend_free(r->be);
    model_close(r->m);
}

static bool all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static const int32_t prompt[N_PROMPT] = {1, 17, 230, 45, 999, 3, 512, 77, 128, 640, 8, 300};

/* Router bookkeeping after a forward_eval of n_tok tokens on a fresh forward. */
static void check_routes(const struct forward *f, bool renorm, int64_t n_tok)
{
    const struct forward_routes *r = forward_routes(f);
    CHECK(r->n_layer > 0);
    CHECK_EQ_U64(r->n_routed, (uint64_t)n_tok);
    for (int64_t l = 0; l < r->n_layer; l++) {
        uint64_t sum = 0;
        for (int64_t e = 0; e < r->n_expert; e++) sum += r->counts[l * r->n_expert + e];
        CHECK_EQ_U64(sum, (uint64_t)n_tok * (uint64_t)r->n_used);
    }
    for (int64_t t = 0; t < r->n_tok; t++)
        for (int64_t l = 0; l < r->n_layer; l++) {
            const int32_t *ids = r->ids + (t * r->n_layer + l) * r->n_used;
            const float *w = r->weights + (t * r->n_layer + l) * r->n_used;
            double wsum = 0.0;
            for (int64_t j = 0; j < r->n_used; j++) {
                CHECK(ids[j] >= 0 && ids[j] < r->n_expert);
                for (int64_t i = 0; i < j; i++) CHECK(ids[i] != ids[j]);
                CHECK(w[j] > 0.0f && w[j] <= 1.0f);
                if (j > 0) CHECK(w[j] <= w[j - 1]);
                wsum += w[j];
            }
            if (renorm)
                CHECK_NEAR(wsum, 1.0, 1e-5);
            else
                CHECK(wsum < 1.0 + 1e-5);
        }
}

/* Runs one synth model: finite logits for a prompt and decode steps. */
static void test_runs(const char *like, enum quant_mix_ftype ftype, const char *type_name,
                      int64_t head_dim, bool tied)
{
    struct synth_config c = synth_small_config(like, ftype);
    if (head_dim) c.head_dim = head_dim;
    c.tied_output = tied;
    char path[128];
    snprintf(path, sizeof path, "arch-%s-%s%s.gguf", c.arch, type_name, tied ? "-tied" : "");
    struct synth_route_stats stats;
    if (!CHECK_OK(synth_write(&c, path, true, NULL, NULL, &stats))) return;
    struct runner r;
    if (runner_open(&r, path)) {
        CHECK_EQ_STR(r.m->info.arch, c.arch);
        CHECK(r.m->tied_output == tied);
        if (head_dim) CHECK_EQ_INT(r.m->hp->head_dim, head_dim);
        const float *logits = NULL;
        bool ok = CHECK_OK(forward_eval(r.f, prompt, N_PROMPT, &logits)) &&
                  CHECK(all_finite(logits, r.m->n_vocab));
        if (ok && r.m->is_moe) check_routes(r.f, !(r.m->arch_flags & ARCH_MOE_NO_RENORM), N_PROMPT);
        for (int i = 0; ok && i < N_DECODE; i++) {
            int32_t next = (int32_t)(i * 37 + 5);
            ok = CHECK_OK(forward_eval(r.f, &next, 1, &logits)) &&
                 CHECK(all_finite(logits, r.m->n_vocab));
        }
        if (!ok) fprintf(stderr, "  %s (%s, %s) failed\n", path, like, type_name);
    }
    runner_close(&r);
    remove(path);
}

static bool read_at(int fd, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (k <= 0) return false;
        done += (size_t)k;
    }
    return true;
}

static bool is_stacked(const char *name)
{
    return strstr(name, "_exps.weight") != NULL;
}

/* Writes a copy of src_path with the experts permuted: new expert e is old
 * expert perm[e] in the router's rows and every stacked tensor. */
static bool write_permuted(const char *src_path, const char *dst_path, const int32_t *perm,
                           int64_t n_expert)
{
    struct gguf_ctx *src = NULL;
    if (!CHECK_OK(gguf_open(src_path, &src))) return false;
    int fd = open(src_path, O_RDONLY);
    struct gguf_writer *w = gguf_writer_init(src->alignment);
    for (uint64_t i = 0; i < src->n_kv; i++)
        gguf_writer_set_value(w, src->kv[i].key, &src->kv[i].val);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    struct gguf_writer_file f;
    bool ok = CHECK(fd >= 0) && CHECK_OK(gguf_writer_file_open(&f, dst_path, true));
    const bool opened = ok;
    if (ok) {
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        ok = CHECK_OK(gguf_writer_begin(w, &sink));
    }
    for (uint64_t i = 0; ok && i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        uint8_t *buf = malloc((size_t)t->n_bytes);
        uint8_t *out = malloc((size_t)t->n_bytes);
        ok = CHECK(buf && out) && CHECK(read_at(fd, buf, (size_t)t->n_bytes, t->file_off));
        const bool router = strstr(t->name, "ffn_gate_inp.weight") != NULL;
        if (ok && (router || is_stacked(t->name))) {
            /* router: ne[1] = n_expert rows; stacked: ne[2] = n_expert slices */
            CHECK_EQ_INT(router ? t->ne[1] : t->ne[2], n_expert);
            const size_t part = (size_t)(t->n_bytes / (uint64_t)n_expert);
            for (int64_t e = 0; e < n_expert; e++)
                memcpy(out + (size_t)e * part, buf + (size_t)perm[e] * part, part);
        } else if (ok) {
            memcpy(out, buf, (size_t)t->n_bytes);
        }
        ok = ok && CHECK_OK(gguf_writer_write_data(w, out, (size_t)t->n_bytes));
        free(buf);
        free(out);
    }
    if (ok && CHECK_OK(gguf_writer_finish(w)))
        ok = CHECK_OK(gguf_writer_file_commit(&f));
    else if (opened)
        gguf_writer_file_abort(&f);
    if (fd >= 0) close(fd);
    gguf_writer_free(w);
    gguf_free(src);
    return ok;
}

static void test_expert_permutation(const char *like, enum quant_mix_ftype ftype,
                                    const char *type_name)
{
    struct synth_config c = synth_small_config(like, ftype);
    HY_ASSERT(c.n_expert == 8);
    char path[128], path_p[160];
    snprintf(path, sizeof path, "perm-%s-%s.gguf", c.arch, type_name);
    snprintf(path_p, sizeof path_p, "perm-%s-%s-permuted.gguf", c.arch, type_name);
    struct synth_route_stats stats;
    if (!CHECK_OK(synth_write(&c, path, true, NULL, NULL, &stats))) return;
    int32_t perm[8] = {5, 2, 7, 0, 3, 6, 1, 4}, inv[8];
    for (int e = 0; e < 8; e++) inv[perm[e]] = e;
    if (write_permuted(path, path_p, perm, c.n_expert)) {
        struct runner a, b;
        if (runner_open(&a, path) && runner_open(&b, path_p)) {
            const float *la = NULL, *lb = NULL;
            if (CHECK_OK(forward_eval(a.f, prompt, N_PROMPT, &la)) &&
                CHECK_OK(forward_eval(b.f, prompt, N_PROMPT, &lb))) {
                const int64_t n = a.m->n_vocab;
                double max_abs = 0.0, max_diff = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    max_abs = fmax(max_abs, fabs(la[i]));
                    max_diff = fmax(max_diff, fabs((double)la[i] - lb[i]));
                }
                fprintf(stderr,
                        "  %-9s %-7s permuted experts: max |logit diff| %.3g (max |logit| %.3g)\n",
                        c.arch, type_name, max_diff, max_abs);
                CHECK(max_diff <= 1e-3 * max_abs + 1e-5);
                /* layer 0 sees identical inputs: the same choices, renamed */
                const struct forward_routes *ra = forward_routes(a.f), *rb = forward_routes(b.f);
                bool renamed = false;
                for (int64_t e = 0; e < c.n_expert; e++) {
                    CHECK_EQ_U64(ra->counts[e], rb->counts[inv[e]]);
                    renamed |= ra->counts[e] != rb->counts[e];
                }
                CHECK(renamed); /* the copy's routing really changed */
                check_routes(b.f, !(b.m->arch_flags & ARCH_MOE_NO_RENORM), N_PROMPT);
            }
        }
        runner_close(&a);
        runner_close(&b);
    }
    remove(path);
    remove(path_p);
}

/* synth's repeat (SYNTH_REPEAT_ELEMS): against the same config written in
 * full, the same directory; each layer tensor's first rows the same bytes
 * and the rest those bytes repeated (some tensor longer than them), the
 * routers, token embeddings and output head the same throughout; the model
 * runs. */
static void test_repeat(const char *like, enum quant_mix_ftype ftype, const char *type_name)
{
    struct synth_config c = synth_small_config(like, ftype);
    if (c.n_expert == 0) c.n_ff = 1024; /* 4 x 65536 values in each FFN matrix */
    char path[128], path_r[160];
    snprintf(path, sizeof path, "rep-%s-%s.gguf", c.arch, type_name);
    snprintf(path_r, sizeof path_r, "rep-%s-%s-repeat.gguf", c.arch, type_name);
    struct synth_route_stats stats;
    struct synth_config cr = c;
    cr.repeat = true;
    struct gguf_ctx *a = NULL, *b = NULL;
    int fa = -1, fb = -1;
    if (CHECK_OK(synth_write(&c, path, true, NULL, NULL, &stats)) &&
        CHECK_OK(synth_write(&cr, path_r, true, NULL, NULL, &stats)) &&
        CHECK_OK(gguf_open(path, &a)) && CHECK_OK(gguf_open(path_r, &b)) &&
        CHECK_EQ_U64(a->n_tensors, b->n_tensors) && CHECK_EQ_U64(a->file_size, b->file_size)) {
        fa = open(path, O_RDONLY);
        fb = open(path_r, O_RDONLY);
        int n_repeated = 0;
        for (uint64_t i = 0; CHECK(fa >= 0 && fb >= 0) && i < a->n_tensors; i++) {
            const struct gguf_tensor *ta = &a->tensors[i], *tb = &b->tensors[i];
            if (!CHECK(!strcmp(ta->name, tb->name) && ta->type == tb->type &&
                       ta->file_off == tb->file_off && ta->n_bytes == tb->n_bytes))
                break;
            const size_t n = (size_t)ta->n_bytes;
            uint8_t *ba = malloc(n), *bb = malloc(n);
            HY_ASSERT(ba && bb);
            if (CHECK(read_at(fa, ba, n, ta->file_off)) &&
                CHECK(read_at(fb, bb, n, tb->file_off))) {
                const bool layer =
                    !strncmp(ta->name, "blk.", 4) && !strstr(ta->name, "ffn_gate_inp.weight");
                size_t period = n;
                if (layer) {
                    const uint64_t rows = ta->n_elements / (uint64_t)ta->ne[0];
                    const uint64_t per = HY_MAX(SYNTH_REPEAT_ELEMS / (uint64_t)ta->ne[0], 1);
                    period = (size_t)(HY_MIN(per, rows) * (ta->n_bytes / rows));
                    n_repeated += period < n;
                }
                size_t bad = 0;
                for (size_t k = 0; k < n; k++)
                    bad += bb[k] != (k < period ? ba[k] : bb[k % period]);
                if (!CHECK(bad == 0))
                    fprintf(stderr, "  %s %s: %s: %zu of %zu bytes not as the repeat makes them\n",
                            like, type_name, ta->name, bad, n);
            }
            free(ba);
            free(bb);
        }
        CHECK(n_repeated > 0);
        struct runner r;
        if (runner_open(&r, path_r)) {
            const float *logits = NULL;
            if (CHECK_OK(forward_eval(r.f, prompt, N_PROMPT, &logits))) {
                bool finite = true;
                for (int64_t i = 0; i < r.m->n_vocab; i++) finite &= isfinite(logits[i]) != 0;
                CHECK(finite);
            }
        }
        runner_close(&r);
    }
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    gguf_free(a);
    gguf_free(b);
    remove(path);
    remove(path_r);
}

int main(int argc, char **argv)
{
    (void)argc;
    static const struct {
        const char *like;
        int64_t head_dim;
    } archs[] = {
        {"tiny-llama", 0}, {"mixtral-8x7b", 0},      {"qwen2.5-14b", 0},
        {"qwen3-8b", 128}, {"qwen1.5-moe-a2.7b", 0}, {"qwen3-30b-a3b", 0},
    };
    for (size_t i = 0; i < HY_ARRAY_LEN(archs); i++) {
        test_runs(archs[i].like, QUANT_MIX_F32, "f32", archs[i].head_dim, false);
        test_runs(archs[i].like, QUANT_MIX_Q4_K_M, "q4_k_m", archs[i].head_dim, false);
    }
    test_runs("qwen2.5-14b", QUANT_MIX_Q4_K_M, "q4_k_m", 0, true);
    static const char *const moe[] = {"mixtral-8x7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b"};
    for (size_t i = 0; i < HY_ARRAY_LEN(moe); i++) {
        test_expert_permutation(moe[i], QUANT_MIX_F32, "f32");
        test_expert_permutation(moe[i], QUANT_MIX_Q4_K_M, "q4_k_m");
    }
    test_repeat("tiny-llama", QUANT_MIX_Q4_K_M, "q4_k_m");
    test_repeat("mixtral-8x7b", QUANT_MIX_Q4_K_M, "q4_k_m");
    test_repeat("qwen1.5-moe-a2.7b", QUANT_MIX_F32, "f32");
    return check_report(argv[0]);
}
