/*
 * Golden tests of the inference engine against llama.cpp's outputs for the
 * synthetic models (../shared/testdata/synth, see its README.md); every
 * expected value is read from the data files at run time:
 *
 *  - perplexity: for every model in ppl.jsonl (llama, mixtral, qwen2, qwen2moe), hypura's
 *    perplexity by llama-perplexity's protocol (src/model/perplexity.h) on
 *    ppl-visible.txt with the same context, an F16 KV cache (llama.cpp's
 *    default, which made the file) and the same batch, within 1 % of the
 *    recorded value. One recorded value is known to be wrong (see
 *    bad_reference); it is reported, not checked;
 *  - greedy decoding with an F16 and a Q8_0 KV cache gives llama.cpp's ids of
 *    greedy.jsonl (the F32 cache is test_forward_golden's), and the logits of
 *    every token (forward_eval_all) equal forward_eval's bit for bit;
 *  - RoPE metadata: copies of llama-F16.gguf with rope.scaling keys and a
 *    rope_freqs.weight tensor resolve to the expected scale and factors,
 *    frequency factors of 1 leave the logits unchanged bit for bit, factors
 *    of 2 equal a linear scaling factor of 2 bit for bit, and unsupported or
 *    malformed settings fail with a message naming the key or tensor;
 *  - KV cache types the engine refuses, and perplexity_eval's refusals,
 *    with their messages.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "gguf/gguf_writer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "text/tokenizer.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif

#define SYNTH HY_TESTDATA_DIR "/synth/"

/* Recorded values that llama.cpp itself no longer reproduces. llama-Q4_0's
 * perplexity in ppl.jsonl (1.98e11) came from llama.cpp c392e50 on a CPU with
 * AMX, whose AMX Q4_0 matmul for batches of more than 16 tokens gave wrong
 * results (later llama.cpp no longer does). The same build with
 * -ub 16 or less, and current llama.cpp with any batch, give 2.91e13 for this
 * file; hypura gives that too. Listed here by name so that the rest of the
 * file still checks every other model; the values come from the file. */
static const struct {
    const char *model;
    const char *why;
} bad_reference[] = {
    {"llama-Q4_0.gguf", "recorded with llama.cpp c392e50's AMX Q4_0 batch kernel; the same build "
                        "with -ub 16, and current llama.cpp, give ~2.91e13"},
};

struct runner {
    struct model *m;
    struct backend *be;
    struct forward *f;
};

static bool runner_open(struct runner *r, const char *path, const struct forward_config *fc)
{
    memset(r, 0, sizeof(*r));
    struct cpu_backend_opts bo = {.n_threads = 2};
    return CHECK_OK(model_open(path, &r->m)) && CHECK_OK(cpu_backend_init(&bo, &r->be)) &&
           CHECK_OK(forward_init(r->m, r->be, fc, &r->f)) && CHECK_OK(model_load(r->m, NULL, NULL));
}

static void runner_close(struct runner *r)
{
    forward_free(r->f);
    backend_free(r->be);
    model_close(r->m);
}

/* Every line of a jsonl file, parsed; NULL-terminated array (free with free_lines). */
static json_t **read_jsonl(const char *path)
{
    char *txt = check_read_file(path, NULL);
    if (!CHECK(txt != NULL)) return NULL;
    size_t n = 0, cap = 16;
    json_t **lines = calloc(cap, sizeof(*lines));
    for (char *line = txt; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line) {
            json_error_t e;
            json_t *j = json_loads(line, 0, &e);
            if (!CHECK(j != NULL)) fprintf(stderr, "  %s: %s\n", path, e.text);
            if (j) {
                if (n + 1 >= cap) lines = realloc(lines, (cap *= 2) * sizeof(*lines));
                lines[n++] = j;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    lines[n] = NULL;
    free(txt);
    return lines;
}

static void free_lines(json_t **lines)
{
    for (size_t i = 0; lines && lines[i]; i++) json_decref(lines[i]);
    free(lines);
}

/* general.architecture of a file, copied into buf ("" when unreadable). */
static void file_arch(const char *path, char *buf, size_t cap)
{
    struct gguf_ctx *g = NULL;
    const char *arch = NULL;
    buf[0] = '\0';
    if (gguf_open(path, &g) == HY_OK && gguf_get_str(g, "general.architecture", &arch) == HY_OK)
        snprintf(buf, cap, "%s", arch);
    gguf_free(g);
}

/* ---- perplexity --------------------------------------------------------------- */

static double model_perplexity(const char *path, const char *text_path, int64_t n_ctx)
{
    double ppl = NAN;
    size_t len = 0;
    char *text = check_read_file(text_path, &len);
    if (!CHECK(text != NULL)) return ppl;
    if (len > 0 && text[len - 1] == '\n') text[--len] = '\0'; /* as llama.cpp's -f */
    struct forward_config fc = {
        .n_ctx = n_ctx, .n_batch = n_ctx, .kv_type = HY_TYPE_F16, .logits_all = true};
    struct runner r;
    struct tokenizer tok;
    bool have_tok = false;
    int32_t *ids = NULL;
    if (runner_open(&r, path, &fc) && (have_tok = CHECK_OK(tokenizer_init(&tok, r.m->gguf)))) {
        const int64_t cap = tokenizer_max_tokens(&tok, len);
        ids = calloc((size_t)cap, sizeof(int32_t));
        int64_t n = 0;
        struct perplexity_params pp = {.n_ctx = n_ctx, .bos_id = tok.add_bos ? tok.bos_id : -1};
        struct perplexity_result res;
        if (CHECK_OK(tokenizer_tokenize(&tok, text, len, TOKENIZER_ADD_BOS, ids, cap, &n)) &&
            CHECK_OK(perplexity_eval(r.f, ids, n, &pp, NULL, NULL, &res))) {
            ppl = res.ppl;
            CHECK_EQ_INT(res.n_scored, res.n_chunks * (n_ctx - n_ctx / 2 - 1));
            CHECK(res.ppl_err > 0);
        }
    }
    free(ids);
    if (have_tok) tokenizer_free(&tok);
    runner_close(&r);
    free(text);
    return ppl;
}

static void test_perplexity(void)
{
    json_t **lines = read_jsonl(SYNTH "ppl.jsonl");
    int n_checked = 0;
    for (size_t i = 0; lines && lines[i]; i++) {
        const char *model = json_string_value(json_object_get(lines[i], "model"));
        const char *text = json_string_value(json_object_get(lines[i], "text"));
        const json_t *ctx = json_object_get(lines[i], "ctx");
        const double want = json_number_value(json_object_get(lines[i], "ppl"));
        if (!CHECK(model && text && json_is_integer(ctx) && want > 0)) continue;
        char path[512], text_path[512], arch[64];
        snprintf(path, sizeof path, SYNTH "%s", model);
        snprintf(text_path, sizeof text_path, SYNTH "%s", text);
        file_arch(path, arch, sizeof arch);
        const double got = model_perplexity(path, text_path, (int64_t)json_integer_value(ctx));
        const char *why = NULL;
        for (size_t b = 0; b < HY_ARRAY_LEN(bad_reference); b++)
            if (strcmp(bad_reference[b].model, model) == 0) why = bad_reference[b].why;
        const double rel = got / want - 1.0;
        fprintf(stderr, "  %-22s %-9s PPL %.6g, llama.cpp %.6g: %+.3f%%%s%s\n", model, arch, got,
                want, 100.0 * rel, why ? "; not checked: " : "", why ? why : "");
        if (why) {
            CHECK(isfinite(got) && got > 0);
            continue;
        }
        if (!CHECK(fabs(rel) < 0.01)) fprintf(stderr, "  %s: more than 1 %% off\n", model);
        n_checked++;
    }
    CHECK(n_checked >= 1);
    free_lines(lines);
}

/* ---- greedy decoding with F16 and Q8_0 caches --------------------------------- */

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static void test_greedy_kv(const char *model_name, uint32_t kv_type)
{
    json_t **lines = read_jsonl(SYNTH "greedy.jsonl");
    char path[512];
    snprintf(path, sizeof path, SYNTH "%s", model_name);
    struct forward_config fc = {.n_ctx = 256, .kv_type = kv_type, .logits_all = true};
    struct runner r;
    struct tokenizer tok;
    if (!runner_open(&r, path, &fc) || !CHECK_OK(tokenizer_init(&tok, r.m->gguf))) {
        runner_close(&r);
        free_lines(lines);
        return;
    }
    const int64_t n_vocab = r.m->n_vocab;
    int n_cases = 0;
    for (size_t i = 0; lines && lines[i]; i++) {
        const char *model = json_string_value(json_object_get(lines[i], "model"));
        if (!model || strcmp(model, model_name) != 0) continue;
        const char *prompt = json_string_value(json_object_get(lines[i], "prompt"));
        const json_t *want = json_object_get(lines[i], "expected_ids");
        const bool add_bos = json_is_true(json_object_get(lines[i], "add_bos"));
        if (!CHECK(prompt && json_is_array(want))) continue;
        int32_t ids[256];
        int64_t n_ids = 0;
        if (!CHECK_OK(tokenizer_tokenize(&tok, prompt, strlen(prompt),
                                         add_bos ? TOKENIZER_ADD_BOS : 0, ids, 256, &n_ids)))
            continue;
        n_cases++;
        /* every token's logits in one step: the last row is what forward_eval gives */
        forward_reset(r.f);
        const float *all = NULL;
        float *last = malloc((size_t)n_vocab * sizeof(float));
        if (CHECK_OK(forward_eval_all(r.f, ids, n_ids, &all)))
            memcpy(last, all + (n_ids - 1) * n_vocab, (size_t)n_vocab * sizeof(float));
        forward_reset(r.f);
        const float *logits = NULL;
        int first_bad = -1;
        if (CHECK_OK(forward_eval(r.f, ids, n_ids, &logits))) {
            CHECK(memcmp(last, logits, (size_t)n_vocab * sizeof(float)) == 0);
            for (size_t k = 0; k < json_array_size(want); k++) {
                const int32_t next = argmax(logits, n_vocab);
                if (next != (int32_t)json_integer_value(json_array_get(want, k)) && first_bad < 0)
                    first_bad = (int)k;
                if (!CHECK_OK(forward_eval(r.f, &next, 1, &logits))) break;
            }
        }
        free(last);
        if (!CHECK_EQ_INT(first_bad, -1))
            fprintf(stderr, "  %s, %s KV cache, \"%s\": first wrong id at step %d\n", model_name,
                    quant_type_name(kv_type), prompt, first_bad);
    }
    CHECK(n_cases >= 1);
    tokenizer_free(&tok);
    runner_close(&r);
    free_lines(lines);
}

/* ---- RoPE metadata ------------------------------------------------------------- */

struct variant {
    const char *scaling_type; /* llama.rope.scaling.type, or NULL */
    float scaling_factor;     /* llama.rope.scaling.factor when > 0 or < 0 */
    float scale_linear;       /* legacy llama.rope.scale_linear when != 0 */
    int64_t n_freqs;          /* rope_freqs.weight elements; 0: no tensor */
    float freq;               /* its value for every element */
};

/* llama-F16.gguf with the keys and tensor of v, written to path. */
static bool write_variant(const char *path, const struct variant *v)
{
    struct gguf_ctx *src = NULL;
    if (!CHECK_OK(gguf_open(SYNTH "llama-F16.gguf", &src))) return false;
    struct gguf_writer *w = gguf_writer_init(src->alignment);
    for (uint64_t i = 0; i < src->n_kv; i++)
        gguf_writer_set_value(w, src->kv[i].key, &src->kv[i].val);
    if (v->scaling_type) gguf_writer_set_str(w, "llama.rope.scaling.type", v->scaling_type);
    if (v->scaling_factor != 0)
        gguf_writer_set_f32(w, "llama.rope.scaling.factor", v->scaling_factor);
    if (v->scale_linear != 0) gguf_writer_set_f32(w, "llama.rope.scale_linear", v->scale_linear);
    if (v->n_freqs) gguf_writer_add_tensor(w, "rope_freqs.weight", HY_TYPE_F32, 1, &v->n_freqs);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    bool ok = false;
    struct gguf_writer_file f;
    FILE *in = fopen(SYNTH "llama-F16.gguf", "rb");
    if (CHECK(in != NULL) && CHECK_OK(gguf_writer_file_open(&f, path, true))) {
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        ok = CHECK_OK(gguf_writer_begin(w, &sink));
        for (int64_t i = 0; ok && i < v->n_freqs; i++)
            ok = CHECK_OK(gguf_writer_write_data(w, &v->freq, sizeof v->freq));
        for (uint64_t i = 0; ok && i < src->n_tensors; i++) {
            const struct gguf_tensor *t = &src->tensors[i];
            void *buf = malloc(t->n_bytes);
            ok = CHECK(fseek(in, (long)t->file_off, SEEK_SET) == 0) &&
                 CHECK(fread(buf, 1, t->n_bytes, in) == t->n_bytes) &&
                 CHECK_OK(gguf_writer_write_data(w, buf, t->n_bytes));
            free(buf);
        }
        if (ok)
            ok = CHECK_OK(gguf_writer_finish(w)) && CHECK_OK(gguf_writer_file_commit(&f));
        else
            gguf_writer_file_abort(&f);
    }
    if (in) fclose(in);
    gguf_writer_free(w);
    gguf_free(src);
    return ok;
}

/* Opens a variant and makes a forward; the status of forward_init. */
static enum hy_status open_variant(const struct variant *v, struct runner *r)
{
    const char *path = "engine-golden-variant.gguf";
    memset(r, 0, sizeof(*r));
    if (!write_variant(path, v)) return HY_ERR_IO;
    struct cpu_backend_opts bo = {.n_threads = 2};
    struct forward_config fc = {.n_ctx = 64};
    enum hy_status st = model_open(path, &r->m);
    if (!st) st = cpu_backend_init(&bo, &r->be);
    if (!st) st = forward_init(r->m, r->be, &fc, &r->f);
    if (!st) st = model_load(r->m, NULL, NULL);
    remove(path);
    return st;
}

/* The last token's logits of a fixed prompt on a variant (malloc'd, *n_vocab
 * floats), or NULL. */
static float *variant_logits(const struct variant *v, int64_t *n_vocab)
{
    struct runner r;
    float *out = NULL;
    const int32_t ids[] = {1, 405, 1755, 50, 1083, 932, 666, 730, 1251, 346, 83};
    const float *logits = NULL;
    if (CHECK_OK(open_variant(v, &r)) &&
        CHECK_OK(forward_eval(r.f, ids, (int64_t)HY_ARRAY_LEN(ids), &logits))) {
        *n_vocab = r.m->n_vocab;
        out = malloc((size_t)r.m->n_vocab * sizeof(float));
        memcpy(out, logits, (size_t)r.m->n_vocab * sizeof(float));
    }
    runner_close(&r);
    return out;
}

static void test_rope_metadata(void)
{
    struct runner r;
    /* scale resolution: rope.scaling.factor, the legacy key, "none" */
    struct variant lin4 = {.scaling_type = "linear", .scaling_factor = 4.0f};
    if (CHECK_OK(open_variant(&lin4, &r))) {
        CHECK_NEAR(forward_rope(r.f)->freq_scale, 0.25, 0);
        CHECK(forward_rope(r.f)->freq_factors == NULL);
        CHECK_EQ_INT(forward_rope(r.f)->mode, BACKEND_ROPE_NORM);
    }
    runner_close(&r);
    struct variant legacy = {.scale_linear = 2.0f};
    if (CHECK_OK(open_variant(&legacy, &r))) CHECK_NEAR(forward_rope(r.f)->freq_scale, 0.5, 0);
    runner_close(&r);
    struct variant none = {.scaling_type = "none", .scaling_factor = 4.0f};
    if (CHECK_OK(open_variant(&none, &r))) CHECK_NEAR(forward_rope(r.f)->freq_scale, 1.0, 0);
    runner_close(&r);
    struct variant freqs = {.n_freqs = 16, .freq = 3.0f};
    if (CHECK_OK(open_variant(&freqs, &r))) {
        const float *ff = forward_rope(r.f)->freq_factors;
        if (CHECK(ff != NULL)) {
            CHECK_NEAR(ff[0], 3.0, 0);
            CHECK_NEAR(ff[15], 3.0, 0);
        }
    }
    runner_close(&r);

    /* refused, naming the key or tensor */
    struct variant yarn = {.scaling_type = "yarn", .scaling_factor = 4.0f};
    CHECK_STATUS(open_variant(&yarn, &r), HY_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err_msg(), "llama.rope.scaling.type");
    CHECK_CONTAINS(err_msg(), "yarn");
    runner_close(&r);
    struct variant negative = {.scaling_type = "linear", .scaling_factor = -2.0f};
    CHECK_STATUS(open_variant(&negative, &r), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "llama.rope.scaling.factor");
    runner_close(&r);
    struct variant short_freqs = {.n_freqs = 8, .freq = 1.0f};
    CHECK_STATUS(open_variant(&short_freqs, &r), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "rope_freqs.weight");
    runner_close(&r);
    struct variant zero_freqs = {.n_freqs = 16, .freq = 0.0f};
    CHECK_STATUS(open_variant(&zero_freqs, &r), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "rope_freqs.weight");
    runner_close(&r);

    /* the whole model: factors of 1 change nothing, factors of 2 are linear scaling by 2 */
    struct variant plain = {0}, ones = {.n_freqs = 16, .freq = 1.0f},
                   twos = {.n_freqs = 16, .freq = 2.0f},
                   lin2 = {.scaling_type = "linear", .scaling_factor = 2.0f};
    int64_t n_vocab = 0;
    float *a = variant_logits(&plain, &n_vocab), *b = variant_logits(&ones, &n_vocab);
    float *c = variant_logits(&twos, &n_vocab), *d = variant_logits(&lin2, &n_vocab);
    if (a && b && c && d) {
        const size_t bytes = (size_t)n_vocab * sizeof(float);
        CHECK(memcmp(a, b, bytes) == 0);
        CHECK(memcmp(c, d, bytes) == 0);
        CHECK(memcmp(a, c, bytes) != 0);
    }
    free(a);
    free(b);
    free(c);
    free(d);
}

/* KV cache types the engine refuses. */
static void test_kv_refused(void)
{
    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f = NULL;
    struct cpu_backend_opts bo = {.n_threads = 1};
    if (CHECK_OK(model_open(HY_TESTDATA_DIR "/models/stories260K.gguf", &m)) &&
        CHECK_OK(cpu_backend_init(&bo, &be))) {
        /* head_dim 8: Q8_0 blocks of 32 do not fit a head */
        struct forward_config fc = {.n_ctx = 32, .kv_type = HY_TYPE_Q8_0};
        CHECK_STATUS(forward_init(m, be, &fc, &f), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "multiples of 32");
        CHECK(f == NULL);
        fc.kv_type = HY_TYPE_Q4_0;
        CHECK_STATUS(forward_init(m, be, &fc, &f), HY_ERR_INVALID_ARG);
        CHECK_CONTAINS(err_msg(), "Q4_0");
        fc.kv_type = HY_TYPE_F16;
        if (CHECK_OK(forward_init(m, be, &fc, &f))) {
            /* per layer: K and V, 32 positions of n_head_kv * head_dim halves */
            const struct hparams *hp = m->hp;
            CHECK_EQ_U64(forward_kv_bytes(f), (uint64_t)hp->n_layer * 32 * 2 *
                                                  (uint64_t)(hp->n_head_kv * hp->head_dim +
                                                             hp->n_head_kv * hp->head_dim_v));
            const float *l = NULL;
            const int32_t tok = 1;
            /* a forward made without logits_all has no every-token logits */
            CHECK_STATUS(forward_eval_all(f, &tok, 1, &l), HY_ERR_INVALID_ARG);
        }
    }
    forward_free(f);
    backend_free(be);
    model_close(m);
}

/* perplexity_eval's refusals, before anything is evaluated. */
static void test_perplexity_refused(void)
{
    struct forward_config fc = {.n_ctx = 16, .logits_all = true};
    struct runner r;
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = 1 + i;
    struct perplexity_params pp = {.n_ctx = 16, .bos_id = 1};
    struct perplexity_result res;
    if (runner_open(&r, HY_TESTDATA_DIR "/models/stories260K.gguf", &fc)) {
        CHECK_STATUS(perplexity_eval(r.f, ids, 31, &pp, NULL, NULL, &res), HY_ERR_INVALID_ARG);
        CHECK_CONTAINS(err_msg(), "at least 32");
        pp.n_ctx = 17;
        CHECK_STATUS(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res), HY_ERR_INVALID_ARG);
        CHECK_CONTAINS(err_msg(), "context of 16");
        pp.n_ctx = 16;
        ids[35] = (int32_t)r.m->n_vocab;
        CHECK_STATUS(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res), HY_ERR_INVALID_ARG);
        CHECK_CONTAINS(err_msg(), "outside the vocabulary");
        ids[35] = 3;
        if (CHECK_OK(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res))) {
            CHECK_EQ_INT(res.n_chunks, 2);
            CHECK_EQ_INT(res.n_scored, 2 * 7);
            CHECK(res.ppl > 1.0 && isfinite(res.ppl));
            /* rows scored by three threads: the same sums, bit for bit */
            struct perplexity_result res3;
            pp.n_threads = 3;
            if (CHECK_OK(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res3))) {
                CHECK_EQ_INT(res3.n_scored, res.n_scored);
                CHECK(res3.nll == res.nll && res3.ppl_err == res.ppl_err);
            }
            pp.n_threads = 0;
        }
    }
    runner_close(&r);
    /* steps of 5 tokens: the scored rows (positions 8 .. 14 of each chunk)
     * cut across steps; the same tokens scored, the same loss but for the
     * batch kernels' rounding */
    fc.n_batch = 5;
    if (runner_open(&r, HY_TESTDATA_DIR "/models/stories260K.gguf", &fc)) {
        struct perplexity_result res5;
        pp.n_threads = 2;
        if (CHECK_OK(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res5))) {
            CHECK_EQ_INT(res5.n_scored, 2 * 7);
            CHECK(fabs(res5.nll - res.nll) <= 1e-3 * fabs(res.nll));
        }
        pp.n_threads = 0;
    }
    runner_close(&r);
    fc.n_batch = 0;
    fc.logits_all = false;
    if (runner_open(&r, HY_TESTDATA_DIR "/models/stories260K.gguf", &fc)) {
        CHECK_STATUS(perplexity_eval(r.f, ids, 40, &pp, NULL, NULL, &res), HY_ERR_INVALID_ARG);
        CHECK_CONTAINS(err_msg(), "logits_all");
    }
    runner_close(&r);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_perplexity();
    test_greedy_kv("llama-F16.gguf", HY_TYPE_F16);
    test_greedy_kv("llama-F16.gguf", HY_TYPE_Q8_0);
    test_greedy_kv("llama-Q4_K_M.gguf", HY_TYPE_F16);
    test_greedy_kv("mixtral-Q4_K_M.gguf", HY_TYPE_F16);
    test_greedy_kv("mixtral-Q4_K_M.gguf", HY_TYPE_Q8_0);
    test_greedy_kv("qwen2-Q5_K_M.gguf", HY_TYPE_F16);
    test_greedy_kv("qwen2moe-Q4_K_M.gguf", HY_TYPE_F16);
    test_rope_metadata();
    test_kv_refused();
    test_perplexity_refused();
    return check_report(argv[0]);
}
