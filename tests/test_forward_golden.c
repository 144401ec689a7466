/*
 * Golden tests of the whole CPU inference path against outputs nobody here
 * computed (see ../shared/testdata/SOURCES.md and synth/README.md):
 *
 *  - stories260K.gguf (F32, a trained model): greedy decoding from BOS alone
 *    for 256 steps must give exactly the 256 ids of stories260K.greedy-t0.ids
 *    (llama2.c's output for this model), with the SIMD and the portable kernels;
 *  - synth/llama-F16.gguf: for both of its cases in greedy.jsonl (the prompt
 *    tokenized with BOS, evaluated as one batch, then argmax steps), the ids
 *    llama.cpp produced. Expected ids and prompts are read from the jsonl
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
#include "model/forward.h"
#include "model/model.h"
#include "text/spm.h"

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
    struct cpu_backend_opts bo = {n_threads, portable};
    struct forward_config fc = {n_ctx, 0};
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

static void test_llama_f16(void)
{
    char *jsonl = check_read_file(HY_TESTDATA_DIR "/synth/greedy.jsonl", NULL);
    if (!CHECK(jsonl != NULL)) return;
    struct runner r, rs;
    if (!runner_open(&r, HY_TESTDATA_DIR "/synth/llama-F16.gguf", 2, false, 256)) {
        runner_close(&r);
        free(jsonl);
        return;
    }
    struct spm tok;
    if (!CHECK_OK(spm_init(&tok, r.m->gguf))) {
        runner_close(&r);
        free(jsonl);
        return;
    }
    /* a second forward over the same model, fed token by token */
    bool have_single = runner_open(&rs, HY_TESTDATA_DIR "/synth/llama-F16.gguf", 1, false, 256);
    int n_cases = 0;
    for (char *line = jsonl; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *model = json_str(line, "model");
        if (model && strcmp(model, "llama-F16.gguf") == 0) {
            char *prompt = json_str(line, "prompt");
            long n_predict = json_int(line, "n_predict", -1);
            bool add_bos = json_bool(line, "add_bos");
            int32_t want[256];
            int n_want = json_int_array(line, "expected_ids", want, 256);
            if (CHECK(prompt != NULL) && CHECK_EQ_INT(n_want, n_predict) && CHECK(n_want > 0)) {
                int32_t ids[256];
                int64_t n_ids = 0;
                if (CHECK_OK(spm_tokenize(&tok, prompt, strlen(prompt), add_bos ? SPM_ADD_BOS : 0,
                                          ids, 256, &n_ids))) {
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
                        fprintf(stderr, "  llama-F16 \"%s\": first wrong id at step %d\n", prompt,
                                first_bad);
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
    spm_free(&tok);
    runner_close(&r);
    free(jsonl);
}

static void test_unsupported_type(void)
{
    struct model *m = NULL;
    struct backend *be = NULL;
    struct forward *f = NULL;
    struct cpu_backend_opts bo = {1, false};
    struct forward_config fc = {64, 0};
    if (CHECK_OK(model_open(HY_TESTDATA_DIR "/synth/llama-Q8_0.gguf", &m)) &&
        CHECK_OK(cpu_backend_init(&bo, &be))) {
        CHECK_STATUS(forward_init(m, be, &fc, &f), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "Q8_0");
        CHECK_CONTAINS(err_msg(), ".weight'");
        CHECK_CONTAINS(err_msg(), "quantization issue");
        CHECK(f == NULL);
    }
    backend_free(be);
    model_close(m);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_stories(false);
    test_stories(true);
    test_llama_f16();
    test_unsupported_type();
    return check_report(argv[0]);
}
