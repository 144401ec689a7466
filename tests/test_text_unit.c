/*
 * Unit tests of the SentencePiece tokenizer on a small hand-made vocabulary
 * (merge order by score, stale pairs, byte fallback, the space prefix,
 * special tokens), of the streaming detokenizer (a character split over byte
 * tokens is held back until complete; broken sequences pass through), and of
 * the sampler (greedy, truncations, temperature, seeds, repetition penalty).
 *
 * The real-vocabulary cases are in test_spm_vocab (golden).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "sample/sampler.h"
#include "text/spm.h"

/* ids of the test vocabulary */
enum {
    T_UNK = 0,
    T_BOS = 1,
    T_EOS = 2,
    T_BYTE0 = 3, /* <0x00> .. <0xFF> at 3..258 */
    T_SPACE = 259,
    T_A,
    T_B,
    T_C,
    T_AB,
    T_BC,
    T_SPACE_A,
    T_E_ACUTE,
    T_USER, /* user-defined "<tool>" */
    T_COUNT
};

static struct gguf_ctx *make_vocab_gguf(void)
{
    static char bytes[256][8];
    const char *tok[T_COUNT];
    float score[T_COUNT];
    int32_t type[T_COUNT];
    tok[T_UNK] = "<unk>", type[T_UNK] = SPM_TOK_UNKNOWN;
    tok[T_BOS] = "<s>", type[T_BOS] = SPM_TOK_CONTROL;
    tok[T_EOS] = "</s>", type[T_EOS] = SPM_TOK_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[T_BYTE0 + b] = bytes[b];
        type[T_BYTE0 + b] = SPM_TOK_BYTE;
    }
    struct {
        int id;
        const char *text;
        float score;
    } normal[] = {
        {T_SPACE, "\xe2\x96\x81", -10},
        {T_A, "a", -10},
        {T_B, "b", -10},
        {T_C, "c", -10},
        {T_AB, "ab", -2},
        {T_BC, "bc", -1},
        {T_SPACE_A,
         "\xe2\x96\x81"
         "a",
         -3},
        {T_E_ACUTE, "\xc3\xa9", -10},
    };
    for (int i = 0; i < T_COUNT; i++) score[i] = 0;
    for (size_t i = 0; i < HY_ARRAY_LEN(normal); i++) {
        tok[normal[i].id] = normal[i].text;
        score[normal[i].id] = normal[i].score;
        type[normal[i].id] = SPM_TOK_NORMAL;
    }
    tok[T_USER] = "<tool>", type[T_USER] = SPM_TOK_USER_DEFINED;

    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, T_COUNT);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", score, T_COUNT);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, T_COUNT);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", T_BOS);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", T_EOS);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", T_UNK);
    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    struct gguf_ctx *g = NULL;
    if (CHECK_OK(gguf_writer_begin(w, &sink)) && CHECK_OK(gguf_writer_finish(w))) {
        struct gguf_source src = gguf_source_buffer(mem.data, mem.len, "test-vocab");
        if (!CHECK_OK(gguf_parse(&src, &g))) g = NULL;
    }
    gguf_writer_free(w);
    free(mem.data);
    return g;
}

static void check_tokens(const struct spm *t, const char *text, unsigned flags, const int32_t *want,
                         int n_want)
{
    int32_t out[64];
    int64_t n = 0;
    if (!CHECK_OK(spm_tokenize(t, text, strlen(text), flags, out, 64, &n))) return;
    char label[160];
    snprintf(label, sizeof label, "text \"%s\" flags %u", text, flags);
    check_ids(out, n, want, n_want, label);
}

#define TOKS(t, text, flags, ...)                                                                  \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        check_tokens((t), (text), (flags), want_, (int)HY_ARRAY_LEN(want_));                       \
    } while (0)

static void test_tokenize(const struct spm *t)
{
    /* "▁abc": bc (-1) merges before ab (-2), which is then stale; ▁a (-3) next */
    TOKS(t, "abc", 0, T_SPACE_A, T_BC);
    /* "▁ab": ab (-2) before ▁a (-3), and "▁ab" is no piece */
    TOKS(t, "ab", 0, T_SPACE, T_AB);
    TOKS(t, "ab", SPM_ADD_BOS, T_BOS, T_SPACE, T_AB);
    /* byte fallback for a character the vocabulary lacks, one token per byte */
    TOKS(t, "x", 0, T_SPACE, T_BYTE0 + 'x');
    TOKS(t, "\xc3\xbc", 0, T_SPACE, T_BYTE0 + 0xc3, T_BYTE0 + 0xbc);
    TOKS(t, "\xc3\xa9", 0, T_SPACE, T_E_ACUTE);
    /* every space is "▁" */
    TOKS(t, "a a", 0, T_SPACE_A, T_SPACE_A);
    /* control-token text is plain text unless parsed */
    TOKS(t, "<s>a", 0, T_SPACE, T_BYTE0 + '<', T_BYTE0 + 's', T_BYTE0 + '>', T_A);
    TOKS(t, "<s>a", SPM_PARSE_SPECIAL, T_BOS, T_SPACE_A);
    /* user-defined tokens are always whole, and the text after them gets the prefix */
    TOKS(t, "a<tool>a", 0, T_SPACE_A, T_USER, T_SPACE_A);
    int64_t n = -1;
    int32_t out[4];
    CHECK_OK(spm_tokenize(t, "", 0, 0, out, 4, &n));
    CHECK_EQ_INT(n, 0);
    CHECK_OK(spm_tokenize(t, "", 0, SPM_ADD_BOS, out, 4, &n));
    CHECK_EQ_INT(n, 1);
    /* a buffer too small is an error, not an overflow */
    CHECK_STATUS(spm_tokenize(t, "xxxx", 4, 0, out, 4, &n), HY_ERR_INVALID_ARG);
}

static void push_expect(struct spm_stream *s, int32_t id, const char *want)
{
    size_t len = 0;
    const char *p = spm_stream_push(s, id, &len);
    bool ok = len == strlen(want) && memcmp(p, want, len) == 0;
    if (!CHECK(ok))
        fprintf(stderr, "  push %d: got \"%.*s\" (%zu bytes), want \"%s\"\n", (int)id, (int)len, p,
                len, want);
}

static void test_stream(const struct spm *t)
{
    struct spm_stream s;
    spm_stream_init(&s, t);
    push_expect(&s, T_BOS, "");
    push_expect(&s, T_SPACE_A, "a"); /* the prefix space is dropped once */
    push_expect(&s, T_SPACE_A, " a");
    /* "ü" over two byte tokens: nothing until the second */
    push_expect(&s, T_BYTE0 + 0xc3, "");
    push_expect(&s, T_BYTE0 + 0xbc, "\xc3\xbc");
    /* a 4-byte character (U+1F999) over four pushes */
    push_expect(&s, T_BYTE0 + 0xf0, "");
    push_expect(&s, T_BYTE0 + 0x9f, "");
    push_expect(&s, T_BYTE0 + 0xa6, "");
    push_expect(&s, T_BYTE0 + 0x99, "\xf0\x9f\xa6\x99");
    /* a broken sequence goes out as it is, with what follows */
    push_expect(&s, T_BYTE0 + 0xc3, "");
    push_expect(&s, T_A,
                "\xc3"
                "a");
    push_expect(&s, T_UNK, "\xe2\x96\x85");
    push_expect(&s, T_EOS, "");
    /* an incomplete sequence at the end comes out on flush */
    push_expect(&s, T_BYTE0 + 0xe2, "");
    size_t len = 0;
    const char *p = spm_stream_flush(&s, &len);
    CHECK(len == 1 && (unsigned char)p[0] == 0xe2);
    spm_stream_free(&s);

    char buf[8];
    CHECK_EQ_INT(spm_piece(t, T_SPACE_A, buf, sizeof buf), 2);
    CHECK(memcmp(buf, " a", 2) == 0);
    CHECK_EQ_INT(spm_piece(t, T_BYTE0 + 0x41, buf, sizeof buf), 1);
    CHECK_EQ_INT(buf[0], 'A');
    CHECK_EQ_INT(spm_piece(t, T_COUNT + 5, buf, sizeof buf), 0);
}

/* ---- sampler ------------------------------------------------------------- */

static struct sampler_params plain(float temp, uint64_t seed)
{
    struct sampler_params p = {.temp = temp, .top_p = 1.0f, .repeat_penalty = 1.0f,
                               .repeat_last_n = 64, .seed = seed};
    return p;
}

static void test_sampler(void)
{
    struct sampler s;
    float lg[6] = {0.5f, 3.0f, 3.0f, -1.0f, 2.0f, 0.0f};
    /* greedy: ties to the lower id */
    struct sampler_params p = plain(0.0f, 1);
    CHECK_OK(sampler_init(&s, 6, &p));
    CHECK_EQ_INT(sampler_sample(&s, lg), 1);
    sampler_free(&s);

    /* top-k 1 is greedy at any temperature */
    p = plain(1.5f, 3);
    p.top_k = 1;
    CHECK_OK(sampler_init(&s, 6, &p));
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(sampler_sample(&s, lg), 1);
    sampler_free(&s);

    /* frequencies follow softmax(logits / temp) without truncation */
    const float lp[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    p = plain(1.0f, 5);
    CHECK_OK(sampler_init(&s, 3, &p));
    int hist[3] = {0};
    const int n_draw = 20000;
    for (int i = 0; i < n_draw; i++) hist[sampler_sample(&s, lp)]++;
    CHECK_NEAR((double)hist[0] / n_draw, 0.5, 0.02);
    CHECK_NEAR((double)hist[1] / n_draw, 0.3, 0.02);
    CHECK_NEAR((double)hist[2] / n_draw, 0.2, 0.02);
    sampler_free(&s);

    /* top-p 0.6: 0.5 is not enough, 0.5 + 0.3 is: ids 0 and 1 only */
    p = plain(1.0f, 6);
    p.top_p = 0.6f;
    CHECK_OK(sampler_init(&s, 3, &p));
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < 2000; i++) hist[sampler_sample(&s, lp)]++;
    CHECK(hist[0] > 0 && hist[1] > 0 && hist[2] == 0);
    sampler_free(&s);

    /* min-p 0.5: 0.3 < 0.5 * 0.5 is false, 0.2 < 0.25 is true: ids 0 and 1 */
    p = plain(1.0f, 7);
    p.min_p = 0.5f;
    CHECK_OK(sampler_init(&s, 3, &p));
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < 2000; i++) hist[sampler_sample(&s, lp)]++;
    CHECK(hist[0] > 0 && hist[1] > 0 && hist[2] == 0);
    sampler_free(&s);

    /* the same seed gives the same draws; another seed other draws */
    float flat[1000];
    for (int i = 0; i < 1000; i++) flat[i] = 0.0f;
    int32_t a[40], b[40], c[40];
    struct sampler_params pa = plain(1.0f, 99), pc = plain(1.0f, 100);
    CHECK_OK(sampler_init(&s, 1000, &pa));
    for (int i = 0; i < 40; i++) a[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK_OK(sampler_init(&s, 1000, &pa));
    for (int i = 0; i < 40; i++) b[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK_OK(sampler_init(&s, 1000, &pc));
    for (int i = 0; i < 40; i++) c[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* repetition penalty divides a positive logit and multiplies a negative one */
    const float pos[2] = {1.0f, 0.9f}, neg[2] = {-1.0f, -1.2f};
    p = plain(0.0f, 1);
    p.repeat_penalty = 1.5f;
    CHECK_OK(sampler_init(&s, 2, &p));
    CHECK_EQ_INT(sampler_sample(&s, pos), 0);
    sampler_accept(&s, 0);
    sampler_accept(&s, 0); /* applied once per distinct token */
    CHECK_EQ_INT(sampler_sample(&s, pos), 1);
    CHECK_EQ_INT(sampler_sample(&s, neg), 1);
    sampler_free(&s);
    /* the window forgets: with repeat_last_n 1, only the last token counts */
    p.repeat_last_n = 1;
    CHECK_OK(sampler_init(&s, 2, &p));
    sampler_accept(&s, 0);
    sampler_accept(&s, 1);
    CHECK_EQ_INT(sampler_sample(&s, pos), 0);
    sampler_free(&s);

    /* bad parameters */
    p = plain(1.0f, 1);
    p.top_p = 1.5f;
    CHECK_STATUS(sampler_init(&s, 10, &p), HY_ERR_INVALID_ARG);
    p = plain(1.0f, 1);
    p.repeat_penalty = 0.0f;
    CHECK_STATUS(sampler_init(&s, 10, &p), HY_ERR_INVALID_ARG);
}

int main(int argc, char **argv)
{
    (void)argc;
    struct gguf_ctx *g = make_vocab_gguf();
    if (g) {
        struct spm t;
        if (CHECK_OK(spm_init(&t, g))) {
            CHECK_EQ_INT(t.n_vocab, T_COUNT);
            CHECK_EQ_INT(t.bos_id, T_BOS);
            CHECK(t.add_bos && t.add_space_prefix);
            test_tokenize(&t);
            test_stream(&t);
            spm_free(&t);
        }
        gguf_free(g);
    }
    test_sampler();
    return check_report(argv[0]);
}
