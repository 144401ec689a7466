/*
 * Golden test of the SentencePiece tokenizer against llama.cpp's tokenizer
 * test set (../shared/testdata/vocab, see its SOURCES.md): for the Llama 2
 * vocabulary, every case of ggml-vocab-llama-spm.gguf.inp (separated by
 * "\n__ggml_vocab_test__\n") must give exactly the ids on the same line of
 * the .out file, tokenized without BOS and without parsing special tokens.
 * The same vocabulary inside llama-2-tiny-random.gguf must give the same ids.
 * Detokenizing the ids through the streaming detokenizer must give the text
 * back (the added prefix space dropped).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf/gguf.h"
#include "text/spm.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif

#define SEP "\n__ggml_vocab_test__\n"

static void run_cases(const char *model_path, const char *inp, const char *out_txt)
{
    struct gguf_ctx *g = NULL;
    if (!CHECK_OK(gguf_open(model_path, &g))) return;
    struct spm t;
    if (!CHECK_OK(spm_init(&t, g))) {
        gguf_free(g);
        return;
    }
    CHECK_EQ_INT(t.n_vocab, 32000);
    CHECK_EQ_INT(t.bos_id, 1);
    CHECK_EQ_INT(t.eos_id, 2);
    CHECK(t.add_bos);

    int n_cases = 0, n_bad = 0, n_bad_decode = 0;
    const char *p = inp, *line = out_txt;
    for (;;) {
        const char *end = strstr(p, SEP);
        if (!end) break;
        const size_t len = (size_t)(end - p);
        const char *eol = strchr(line, '\n');
        if (!CHECK(eol != NULL)) break;
        /* expected ids of this case */
        int32_t want[256];
        int n_want = 0;
        for (const char *q = line; q < eol;) {
            char *next;
            long v = strtol(q, &next, 10);
            if (next == q) break;
            if (n_want < 256) want[n_want++] = (int32_t)v;
            q = next;
        }
        int64_t cap = spm_max_tokens(len), n = 0;
        int32_t *got = malloc(sizeof(int32_t) * (size_t)cap);
        if (CHECK_OK(spm_tokenize(&t, p, len, 0, got, cap, &n))) {
            bool same = n == n_want;
            for (int i = 0; same && i < n_want; i++) same = got[i] == want[i];
            if (!same) {
                n_bad++;
                fprintf(stderr, "%s: case %d \"%.*s\":\n  got ", model_path, n_cases, (int)len, p);
                for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)got[i]);
                fprintf(stderr, "\n  want");
                for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", (int)want[i]);
                fprintf(stderr, "\n");
            }
            /* round trip */
            struct spm_stream s;
            spm_stream_init(&s, &t);
            char *text = malloc(len * 4 + 64);
            size_t tl = 0, k;
            for (int64_t i = 0; i < n; i++) {
                const char *piece = spm_stream_push(&s, got[i], &k);
                memcpy(text + tl, piece, k);
                tl += k;
            }
            const char *rest = spm_stream_flush(&s, &k);
            memcpy(text + tl, rest, k);
            tl += k;
            if (tl != len || memcmp(text, p, len) != 0) {
                n_bad_decode++;
                fprintf(stderr, "%s: case %d: decodes to \"%.*s\", not \"%.*s\"\n", model_path,
                        n_cases, (int)tl, text, (int)len, p);
            }
            free(text);
            spm_stream_free(&s);
        }
        free(got);
        n_cases++;
        p = end + strlen(SEP);
        line = eol + 1;
    }
    CHECK_EQ_INT(n_cases, 46);
    CHECK_EQ_INT(n_bad, 0);
    CHECK_EQ_INT(n_bad_decode, 0);

    /* with BOS */
    int32_t ids[8];
    int64_t n = 0;
    if (CHECK_OK(spm_tokenize(&t, "Hello world", 11, SPM_ADD_BOS, ids, 8, &n)) &&
        CHECK_EQ_INT(n, 3)) {
        CHECK_EQ_INT(ids[0], 1);
        CHECK_EQ_INT(ids[1], 15043);
        CHECK_EQ_INT(ids[2], 3186);
    }
    spm_free(&t);
    gguf_free(g);
}

int main(int argc, char **argv)
{
    (void)argc;
    size_t n_inp, n_out;
    char *inp = check_read_file(HY_TESTDATA_DIR "/vocab/ggml-vocab-llama-spm.gguf.inp", &n_inp);
    char *out = check_read_file(HY_TESTDATA_DIR "/vocab/ggml-vocab-llama-spm.gguf.out", &n_out);
    if (!CHECK(inp && out)) {
        fprintf(stderr, "hint: the golden tests read ../shared/testdata next to the source tree\n");
        return check_report(argv[0]);
    }
    run_cases(HY_TESTDATA_DIR "/vocab/ggml-vocab-llama-spm.gguf", inp, out);
    run_cases(HY_TESTDATA_DIR "/models/llama-2-tiny-random.gguf", inp, out);
    free(inp);
    free(out);
    return check_report(argv[0]);
}
