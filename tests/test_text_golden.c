/*
 * Golden tests of the tokenizers (src/text/tokenizer.h) against llama.cpp's
 * tokenizer test set (../shared/testdata/vocab, see its SOURCES.md):
 *
 *  - for every vocabulary file with a .inp/.out pair (SentencePiece:
 *    llama-spm, phi-3; byte-level BPE: gpt-2, deepseek-llm, deepseek-coder,
 *    falcon, mpt, starcoder, refact), every case of the .inp (separated by
 *    "\n__ggml_vocab_test__\n") must give exactly the ids of the same line of
 *    the .out, tokenized as llama.cpp's test-tokenizer-0 does: no BOS, special
 *    tokens not parsed;
 *  - the ids, pushed through the streaming detokenizer, must give the case's
 *    text back byte for byte (every vocabulary here can represent every case;
 *    SPM drops the space it added in front);
 *  - the llama-bpe and qwen2 cases have no vocabulary file here. The qwen2
 *    pre-tokenizer is checked on synth/qwen2-Q5_K_M.gguf (a small BPE
 *    vocabulary with pre "qwen2"): its greedy.jsonl prompts and all .inp
 *    cases must round-trip, and control-token text must become the ChatML ids
 *    only when parsed; its end-of-generation set is <|endoftext|> and
 *    <|im_end|>;
 *  - 100 KB of mixed text (the .inp cases repeated) round-trips through each
 *    BPE vocabulary (a quadratic slip would hit ctest's timeout; the time is
 *    printed, never asserted).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gguf/gguf.h"
#include "text/tokenizer.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif

#define VOCAB_DIR HY_TESTDATA_DIR "/vocab/"
#define SEP       "\n__ggml_vocab_test__\n"

static bool open_tokenizer(const char *path, struct gguf_ctx **g, struct tokenizer *t)
{
    *g = NULL;
    if (!CHECK_OK(gguf_open(path, g))) return false;
    if (!CHECK_OK(tokenizer_init(t, *g))) {
        gguf_free(*g);
        *g = NULL;
        return false;
    }
    return true;
}

/* ids of text[0..len), malloc'd; NULL on failure (reported) */
static int32_t *tokenize(const struct tokenizer *t, const char *text, size_t len, unsigned flags,
                         int64_t *n)
{
    int64_t cap = tokenizer_max_tokens(t, len);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (!CHECK_OK(tokenizer_tokenize(t, text, len, flags, ids, cap, n))) {
        free(ids);
        return NULL;
    }
    return ids;
}

/* The text of ids through the streaming detokenizer, malloc'd, *len bytes. */
static char *detokenize(const struct tokenizer *t, const int32_t *ids, int64_t n, size_t *len)
{
    struct tokenizer_stream s;
    tokenizer_stream_init(&s, t);
    size_t cap = 64, tl = 0, k;
    char *text = malloc(cap);
    for (int64_t i = 0; i <= n; i++) {
        const char *piece =
            i < n ? tokenizer_stream_push(&s, ids[i], &k) : tokenizer_stream_flush(&s, &k);
        while (tl + k + 1 > cap) text = realloc(text, cap *= 2);
        memcpy(text + tl, piece, k);
        tl += k;
    }
    tokenizer_stream_free(&s);
    *len = tl;
    return text;
}

static bool round_trips(const struct tokenizer *t, const char *what, const char *text, size_t len)
{
    int64_t n = 0;
    int32_t *ids = tokenize(t, text, len, 0, &n);
    if (!ids) return false;
    size_t dl;
    char *back = detokenize(t, ids, n, &dl);
    bool ok = dl == len && memcmp(back, text, len) == 0;
    if (!ok)
        fprintf(stderr, "%s: \"%.*s\" decodes to \"%.*s\"\n", what, (int)HY_MIN(len, 200), text,
                (int)HY_MIN(dl, 200), back);
    free(back);
    free(ids);
    return ok;
}

/* Every case of name.inp against name.out. */
static void run_vocab(const char *name, int32_t n_vocab)
{
    char path[512], p_inp[512], p_out[512];
    snprintf(path, sizeof path, VOCAB_DIR "ggml-vocab-%s.gguf", name);
    snprintf(p_inp, sizeof p_inp, VOCAB_DIR "ggml-vocab-%s.gguf.inp", name);
    snprintf(p_out, sizeof p_out, VOCAB_DIR "ggml-vocab-%s.gguf.out", name);
    char *inp = check_read_file(p_inp, NULL), *out = check_read_file(p_out, NULL);
    struct gguf_ctx *g = NULL;
    struct tokenizer t;
    if (!CHECK(inp && out) || !open_tokenizer(path, &g, &t)) {
        free(inp);
        free(out);
        return;
    }
    CHECK_EQ_INT(t.n_vocab, n_vocab);
    int n_cases = 0, n_bad = 0, n_bad_decode = 0;
    const char *p = inp, *line = out;
    for (const char *end; (end = strstr(p, SEP)) != NULL; p = end + strlen(SEP)) {
        const size_t len = (size_t)(end - p);
        const char *eol = strchr(line, '\n');
        if (!CHECK(eol != NULL)) break;
        int32_t want[512];
        int n_want = 0;
        for (const char *q = line; q < eol && n_want < 512;) {
            char *next;
            long v = strtol(q, &next, 10);
            if (next == q) break;
            want[n_want++] = (int32_t)v;
            q = next;
        }
        int64_t n = 0;
        int32_t *got = tokenize(&t, p, len, 0, &n);
        if (got) {
            bool same = n == n_want;
            for (int i = 0; same && i < n_want; i++) same = got[i] == want[i];
            if (!same) {
                n_bad++;
                fprintf(stderr, "%s: case %d \"%.*s\":\n  got ", name, n_cases, (int)len, p);
                for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)got[i]);
                fprintf(stderr, "\n  want");
                for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", (int)want[i]);
                fprintf(stderr, "\n");
            }
            free(got);
        }
        if (!round_trips(&t, name, p, len)) n_bad_decode++;
        n_cases++;
        line = eol + 1;
    }
    printf("%-16s %d cases, %d wrong ids, %d not round-tripping\n", name, n_cases, n_bad,
           n_bad_decode);
    CHECK_EQ_INT(n_cases, 46);
    CHECK_EQ_INT(n_bad, 0);
    CHECK_EQ_INT(n_bad_decode, 0);
    tokenizer_free(&t);
    gguf_free(g);
    free(inp);
    free(out);
}

/* Every .inp case in turn, up to 100 KB, round-tripped as one text. */
static void run_big(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, VOCAB_DIR "ggml-vocab-%s.gguf", name);
    size_t n_inp = 0;
    char *inp = check_read_file(VOCAB_DIR "ggml-vocab-gpt-2.gguf.inp", &n_inp);
    struct gguf_ctx *g = NULL;
    struct tokenizer t;
    if (!CHECK(inp != NULL) || !open_tokenizer(path, &g, &t)) {
        free(inp);
        return;
    }
    const size_t big = 100 * 1024;
    char *text = malloc(big);
    for (size_t i = 0; i < big; i += n_inp) memcpy(text + i, inp, HY_MIN(n_inp, big - i));
    /* the cut may split a character: end on a boundary */
    size_t len = big;
    while (len > 0 && ((unsigned char)text[len - 1] & 0xc0) == 0x80) len--;
    if (len > 0 && (unsigned char)text[len - 1] >= 0xc0) len--;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t n = 0;
    int32_t *ids = tokenize(&t, text, len, 0, &n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%-16s %zu bytes -> %lld tokens in %.1f ms\n", name, len, (long long)n,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    free(ids);
    CHECK(round_trips(&t, name, text, len));
    free(text);
    tokenizer_free(&t);
    gguf_free(g);
    free(inp);
}

static void check_tokens(const struct tokenizer *t, const char *text, unsigned flags,
                         const int32_t *want, int n_want)
{
    int64_t n = 0;
    int32_t *got = tokenize(t, text, strlen(text), flags, &n);
    if (!got) return;
    char label[160];
    snprintf(label, sizeof label, "\"%s\" flags %u", text, flags);
    check_ids(got, n, want, n_want, label);
    free(got);
}

/* synth/qwen2-Q5_K_M.gguf: prompts of greedy.jsonl and the qwen2 .inp cases. */
static void run_qwen2_synth(void)
{
    struct gguf_ctx *g = NULL;
    struct tokenizer t;
    if (!open_tokenizer(HY_TESTDATA_DIR "/synth/qwen2-Q5_K_M.gguf", &g, &t)) return;
    CHECK_EQ_INT(t.kind, TOKENIZER_BPE);
    CHECK_EQ_STR(pretok_kind_name(t.bpe.pre->kind), "qwen2");
    CHECK(!t.add_bos);
    const char *im_start = "<|im_start|>", *im_end = "<|im_end|>", *eot = "<|endoftext|>";
    int32_t id_start = -1, id_end = -1, id_eot = -1;
    for (int32_t i = 0; i < t.n_vocab; i++) {
        const char *s = tokenizer_token_text(&t, i);
        if (!strcmp(s, im_start)) id_start = i;
        if (!strcmp(s, im_end)) id_end = i;
        if (!strcmp(s, eot)) id_eot = i;
    }
    if (CHECK(id_start >= 0 && id_end >= 0 && id_eot >= 0)) {
        CHECK(tokenizer_is_eog(&t, id_end));
        CHECK(tokenizer_is_eog(&t, id_eot));
        CHECK(!tokenizer_is_eog(&t, id_start));
        CHECK_EQ_INT(t.n_eog, 2);
        /* parsed, the markers are their tokens; else plain text */
        int64_t n = 0;
        int32_t *ids =
            tokenize(&t, "<|im_start|>user\nhi<|im_end|>", 29, TOKENIZER_PARSE_SPECIAL, &n);
        if (ids && CHECK(n >= 3)) {
            CHECK_EQ_INT(ids[0], id_start);
            CHECK_EQ_INT(ids[n - 1], id_end);
        }
        free(ids);
        ids = tokenize(&t, "<|im_start|>user\nhi<|im_end|>", 29, 0, &n);
        for (int64_t i = 0; ids && i < n; i++) CHECK(ids[i] != id_start && ids[i] != id_end);
        free(ids);
        /* control tokens print nothing */
        char buf[16];
        CHECK_EQ_INT(tokenizer_piece(&t, id_end, buf, sizeof buf), 0);
        CHECK(round_trips(&t, "qwen2 synth", "<|im_end|>", 10));
    }

    char *jsonl = check_read_file(HY_TESTDATA_DIR "/synth/greedy.jsonl", NULL);
    int n_prompts = 0;
    for (char *line = jsonl, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!CHECK(o != NULL)) continue;
        const char *model = json_string_value(json_object_get(o, "model"));
        const char *prompt = json_string_value(json_object_get(o, "prompt"));
        if (model && prompt && !strcmp(model, "qwen2-Q5_K_M.gguf")) {
            n_prompts++;
            CHECK(!json_is_true(json_object_get(o, "add_bos")));
            CHECK(round_trips(&t, "qwen2 prompt", prompt, strlen(prompt)));
            int64_t n = 0;
            int32_t *ids = tokenize(&t, prompt, strlen(prompt), TOKENIZER_ADD_SPECIAL, &n);
            CHECK(ids && n > 0 && n < (int64_t)strlen(prompt));
            for (int64_t i = 0; ids && i < n; i++) CHECK(ids[i] >= 0 && ids[i] < t.n_vocab);
            free(ids);
        }
        json_decref(o);
    }
    CHECK_EQ_INT(n_prompts, 2);
    free(jsonl);

    /* the qwen2 and llama-bpe test strings through the qwen2 pre-tokenizer */
    const char *inps[] = {VOCAB_DIR "ggml-vocab-qwen2.gguf.inp",
                          VOCAB_DIR "ggml-vocab-llama-bpe.gguf.inp"};
    for (size_t f = 0; f < HY_ARRAY_LEN(inps); f++) {
        char *inp = check_read_file(inps[f], NULL);
        int n_cases = 0;
        for (const char *p = inp, *end; p && (end = strstr(p, SEP)) != NULL;
             p = end + strlen(SEP)) {
            CHECK(round_trips(&t, "qwen2 synth", p, (size_t)(end - p)));
            n_cases++;
        }
        CHECK_EQ_INT(n_cases, 46);
        free(inp);
    }
    tokenizer_free(&t);
    gguf_free(g);
}

/* BOS, EOS and end of generation as the metadata says. */
static void run_specials(void)
{
    struct gguf_ctx *g = NULL;
    struct tokenizer t;
    if (open_tokenizer(VOCAB_DIR "ggml-vocab-deepseek-llm.gguf", &g, &t)) {
        /* add_bos_token true; the BOS is <｜begin▁of▁sentence｜> (100000) */
        CHECK(t.add_bos);
        CHECK_EQ_INT(t.bos_id, 100000);
        CHECK_EQ_INT(t.eos_id, 100001);
        CHECK(tokenizer_is_eog(&t, 100001));
        const int32_t hello[] = {100000, 17464, 1843};
        check_tokens(&t, "Hello world", TOKENIZER_ADD_SPECIAL, hello, 3);
        check_tokens(&t, "Hello world", 0, hello + 1, 2);
        tokenizer_free(&t);
        gguf_free(g);
    }
    if (open_tokenizer(VOCAB_DIR "ggml-vocab-gpt-2.gguf", &g, &t)) {
        /* no add_bos_token: a gpt2 vocabulary adds nothing */
        CHECK(!t.add_bos && !t.add_eos);
        CHECK(tokenizer_is_eog(&t, 50256));
        const int32_t hello[] = {15496, 995};
        check_tokens(&t, "Hello world", TOKENIZER_ADD_SPECIAL, hello, 2);
        /* <|endoftext|> is control: a token only when parsed */
        const int32_t eot[] = {15496, 50256};
        check_tokens(&t, "Hello<|endoftext|>", TOKENIZER_PARSE_SPECIAL, eot, 2);
        tokenizer_free(&t);
        gguf_free(g);
    }
    if (open_tokenizer(VOCAB_DIR "ggml-vocab-phi-3.gguf", &g, &t)) {
        /* <|end|> (32007) stops generation besides eos <|endoftext|> (32000);
         * Phi-3's specials swallow the white space after them */
        CHECK(tokenizer_is_eog(&t, 32000));
        CHECK(tokenizer_is_eog(&t, 32007));
        int64_t n1 = 0, n2 = 0;
        int32_t *a = tokenize(&t, "<|user|>\nHi", 11, TOKENIZER_PARSE_SPECIAL, &n1);
        int32_t *b = tokenize(&t, "<|user|>Hi", 10, TOKENIZER_PARSE_SPECIAL, &n2);
        if (a && b && CHECK_EQ_INT(n1, n2))
            for (int64_t i = 0; i < n1; i++) CHECK_EQ_INT(a[i], b[i]);
        if (a) CHECK_EQ_INT(a[0], 32010);
        free(a);
        free(b);
        tokenizer_free(&t);
        gguf_free(g);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    run_vocab("llama-spm", 32000);
    run_vocab("phi-3", 32064);
    run_vocab("gpt-2", 50257);
    run_vocab("deepseek-llm", 102400);
    run_vocab("deepseek-coder", 32256);
    run_vocab("falcon", 65024);
    run_vocab("mpt", 50432);
    run_vocab("starcoder", 49152);
    run_vocab("refact", 49216);
    run_qwen2_synth();
    run_specials();
    const char *big[] = {"gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "mpt", "starcoder"};
    for (size_t i = 0; i < HY_ARRAY_LEN(big); i++) run_big(big[i]);
    return check_report(argv[0]);
}
