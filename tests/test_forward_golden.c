/*
 * Golden tests of the whole CPU inference path against outputs nobody here
 * computed (see ../shared/testdata/SOURCES.md and synth/README.md):
 *
 *  - stories260K.gguf (F32, a trained model): greedy decoding from BOS alone
 *    for 256 steps must give exactly the 256 ids of stories260K.greedy-t0.ids
 *    (llama2.c's output for this model), with the SIMD and the portable kernels;
 *  - the synth/ models (llama in every type, mixtral, qwen2, qwen2moe): for both
 *    cases of each in greedy.jsonl (the prompt tokenized by the model's own
 *    tokenizer, BOS as the case says, evaluated as one batch, then argmax
 *    steps), the ids llama.cpp produced. Expected ids and prompts are read from the jsonl
 *    file; nothing expected is written here.
 *
 * Also: evaluating a prompt as a batch and token by token gives bit-identical
 * logits, and a quantized model is refused with HY_ERR_UNSUPPORTED naming a
 * tensor and its type.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "gguf/gguf_writer.h"
#include "model/forward.h"
#include "model/model.h"
#include "text/tokenizer.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

struct runner {
    struct model *m;
    struct backend *be;
    struct forward *f;
};

static bool runner_open(struct runner *r, const char *path, int n_threads, bool portable,
                        int64_t n_ctx)
{
    memset(r, 0, sizeof(*r));
    struct cpu_backend_opts bo = {.n_threads = n_threads, .portable = portable};
    struct forward_config fc = {.n_ctx = n_ctx};
    return CHECK_OK(model_open(path, &r->m)) && CHECK_OK(cpu_backend_init(&bo, &r->be)) &&
           CHECK_OK(forward_init(r->m, r->be, &fc, &r->f)) &&
           CHECK_OK(model_load(r->m, NULL, NULL));
}

static void runner_close(struct runner *r)
{
    forward_free(r->f);
    backend_free(r->be);
    model_close(r->m);
}

/* portable: the reference kernels instead of the SIMD ones */
static void test_stories(bool portable)
{
    char *txt = check_read_file(HY_TESTDATA_DIR "/models/stories260K.greedy-t0.ids", NULL);
    if (!CHECK(txt != NULL)) return;
    int32_t want[256];
    int n_want = 0;
    for (char *p = txt, *end; n_want < 256; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        want[n_want++] = (int32_t)v;
    }
    free(txt);
    CHECK_EQ_INT(n_want, 256);

    struct runner r;
    if (runner_open(&r, HY_TESTDATA_DIR "/models/stories260K.gguf", 2, portable, 512)) {
        int32_t tok = 1; /* BOS */
        const float *logits = NULL;
        int first_bad = -1;
        for (int i = 0; i < n_want; i++) {
            if (!CHECK_OK(forward_eval(r.f, &tok, 1, &logits))) break;
            tok = argmax(logits, r.m->n_vocab);
            if (tok != want[i] && first_bad < 0) first_bad = i;
        }
        if (!CHECK_EQ_INT(first_bad, -1))
            fprintf(stderr, "  stories260K (%s kernels): first wrong id at step %d\n",
                    cpu_backend_kernels(r.be), first_bad);
        CHECK_EQ_INT(forward_n_past(r.f), 256);
    }
    runner_close(&r);
}

/* The JSON string value of "key" in line (escapes \" \\ \/ \n \t \r \uXXXX of the BMP), malloc'd.
 */
static char *json_str(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    char *out = malloc(strlen(p) * 3 + 1);
    size_t n = 0;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') {
            out[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'n':
            out[n++] = '\n';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xc0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[n++] = (char)(0xe0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            out[n++] = *p;
            break;
        }
    }
    out[n] = '\0';
    return out;
}

static long json_int(const char *line, const char *key, long def)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : def;
}

static bool json_bool(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": true", key);
    return strstr(line, pat) != NULL;
}

static int json_int_array(const char *line, const char *key, int32_t *out, int cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": [", key);
    const char *p = strstr(line, pat);
    if (!p) return -1;
    p += strlen(pat);
    int n = 0;
    while (*p && *p != ']' && n < cap) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        out[n++] = (int32_t)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    return n;
}

/* Every case of greedy.jsonl for one model: llama.cpp's greedy ids exactly. */
static void test_synth_greedy(const char *model_name)
{
    char *jsonl = check_read_file(HY_TESTDATA_DIR "/synth/greedy.jsonl", NULL);
    if (!CHECK(jsonl != NULL)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/synth/%s", HY_TESTDATA_DIR, model_name);
    struct runner r, rs;
    if (!runner_open(&r, path, 2, false, 256)) {
        runner_close(&r);
        free(jsonl);
        return;
    }
    struct tokenizer tok;
    if (!CHECK_OK(tokenizer_init(&tok, r.m->gguf))) {
        runner_close(&r);
        free(jsonl);
        return;
    }
    /* a second forward over the same model, fed token by token */
    bool have_single = runner_open(&rs, path, 1, false, 256);
    int n_cases = 0;
    for (char *line = jsonl; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *model = json_str(line, "model");
        if (model && strcmp(model, model_name) == 0) {
            char *prompt = json_str(line, "prompt");
            long n_predict = json_int(line, "n_predict", -1);
            bool add_bos = json_bool(line, "add_bos");
            int32_t want[256];
            int n_want = json_int_array(line, "expected_ids", want, 256);
            if (CHECK(prompt != NULL) && CHECK_EQ_INT(n_want, n_predict) && CHECK(n_want > 0)) {
                int32_t ids[256];
                int64_t n_ids = 0;
                if (CHECK_OK(tokenizer_tokenize(&tok, prompt, strlen(prompt),
                                                add_bos ? TOKENIZER_ADD_BOS : 0, ids, 256,
                                                &n_ids))) {
                    forward_reset(r.f);
                    const float *logits = NULL;
                    int first_bad = -1;
                    if (CHECK_OK(forward_eval(r.f, ids, n_ids, &logits))) {
                        /* the batch's last logits equal those of token-by-token evaluation */
                        if (have_single) {
                            forward_reset(rs.f);
                            const float *ls = NULL;
                            for (int64_t i = 0; i < n_ids; i++)
                                if (!CHECK_OK(forward_eval(rs.f, &ids[i], 1, &ls))) break;
                            if (ls)
                                CHECK(memcmp(ls, logits, sizeof(float) * (size_t)rs.m->n_vocab) ==
                                      0);
                        }
                        for (int i = 0; i < n_want; i++) {
                            int32_t next = argmax(logits, r.m->n_vocab);
                            if (next != want[i] && first_bad < 0) first_bad = i;
                            if (!CHECK_OK(forward_eval(r.f, &next, 1, &logits))) break;
                        }
                    }
                    if (!CHECK_EQ_INT(first_bad, -1))
                        fprintf(stderr, "  %s \"%s\": first wrong id at step %d\n", model_name,
                                prompt, first_bad);
                }
                n_cases++;
            }
            free(prompt);
        }
        free(model);
        line = nl ? nl + 1 : NULL;
    }
    CHECK_EQ_INT(n_cases, 2);
    if (have_single) runner_close(&rs);
    tokenizer_free(&tok);
    runner_close(&r);
    free(jsonl);
}

/* A model with a tensor of a type hypura does not compute with (IQ4_NL):
 * refused at load, naming the tensor and the type. The file is llama-F16.gguf
 * rewritten with that one tensor's type changed (its data zeroed). */
static void test_unsupported_type(void)
{
    struct gguf_ctx *src = NULL;
    if (!CHECK_OK(gguf_open(HY_TESTDATA_DIR "/synth/llama-F16.gguf", &src))) return;
    struct gguf_writer *w = gguf_writer_init(src->alignment);
    for (uint64_t i = 0; i < src->n_kv; i++) gguf_writer_set_value(w, src->kv[i].key, &src->kv[i].val);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        uint32_t type = strcmp(t->name, "blk.1.attn_q.weight") == 0 ? HY_TYPE_IQ4_NL : t->type;
        gguf_writer_add_tensor(w, t->name, type, t->n_dims, t->ne);
    }
    const char *path = "unsupported-iq4_nl.gguf";
    struct gguf_writer_file f;
    bool written = false;
    if (CHECK_OK(gguf_writer_file_open(&f, path, true))) {
        struct gguf_sink sink = gguf_writer_file_sink(&f);
        static const uint8_t zeros[4096];
        bool ok = CHECK_OK(gguf_writer_begin(w, &sink));
        for (uint64_t i = 0; ok && i < gguf_writer_n_tensors(w); i++)
            for (uint64_t left = gguf_writer_tensor_bytes(w, i); ok && left > 0;) {
                size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
                ok = CHECK_OK(gguf_writer_write_data(w, zeros, n));
                left -= n;
            }
        if (ok && CHECK_OK(gguf_writer_finish(w))) written = CHECK_OK(gguf_writer_file_commit(&f));
        else gguf_writer_file_abort(&f);
    }
    gguf_writer_free(w);
    gguf_free(src);
    if (!written) return;

    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f2 = NULL;
    struct cpu_backend_opts bo = {.n_threads = 1, .portable = false};
    struct forward_config fc = {.n_ctx = 64};
    if (CHECK_OK(model_open(path, &m)) && CHECK_OK(cpu_backend_init(&bo, &be))) {
        CHECK_STATUS(forward_init(m, be, &fc, &f2), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "IQ4_NL");
        CHECK_CONTAINS(err_msg(), "blk.1.attn_q.weight");
        CHECK(f2 == NULL);
    }
    backend_free(be);
    model_close(m);
    remove(path);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_stories(false);
    test_stories(true);
    /* llama.cpp's greedy continuations on the models it quantized: llama in
     * every type, the Mixtral-style MoE, qwen2 (biases, NeoX RoPE, BPE) and
     * qwen2moe (shared expert, unnormalised expert weights) */
    const char *models[] = {"llama-F16.gguf",    "llama-Q8_0.gguf", "llama-Q6_K.gguf",
                            "llama-Q4_K_M.gguf", "llama-Q4_0.gguf", "llama-Q2_K.gguf",
                            "mixtral-Q4_K_M.gguf", "qwen2-Q5_K_M.gguf", "qwen2moe-Q4_K_M.gguf"};
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) test_synth_greedy(models[i]);
    test_unsupported_type();
    return check_report(argv[0]);
}
