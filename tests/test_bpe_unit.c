/*
 * Unit tests of the byte-level BPE tokenizer and of the tokenizer interface
 * on a small hand-made vocabulary: merge order by rank (a lower rank wins
 * even to the right; stale pairs), the byte alphabet, special tokens
 * (user-defined always, control only when parsed, llama.cpp's longest-first
 * order), BOS/EOS defaults per pre-tokenizer, ignore_merges, the
 * end-of-generation set, the streaming detokenizer (a character split over
 * byte tokens is held back until complete), and the errors of a vocabulary
 * hypura cannot read.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

/* ids: 0..255 the bytes (in the byte alphabet, id = byte), then these */
enum {
    T_HE = 256,
    T_LL,
    T_HELL,
    T_SPACE_W,
    T_HELLO,
    T_BC,
    T_AB,
    T_EOT,    /* <|endoftext|> control */
    T_IM_END, /* <|im_end|> control: end of generation by its text */
    T_TOOL,   /* <tool> user-defined */
    T_TOOLS,  /* <tools> user-defined, longer */
    T_XYZ,    /* a token no merge reaches */
    T_PQ,     /* pq user-defined */
    T_QRS,    /* qrs user-defined, longer */
    T_COUNT
};

static const char *const MERGES[] = {
    "h e", "l l", "he ll", "\xc4\xa0 w", "hell o", "b c", "a b",
};

struct opts {
    const char *model; /* tokenizer.ggml.model */
    const char *pre;   /* NULL: no key */
    int add_bos;       /* -1: no key */
    bool merges;       /* write tokenizer.ggml.merges */
    bool bos_key;      /* write bos_token_id = T_EOT */
};

static struct gguf_ctx *make_vocab(const struct opts *o)
{
    static char bytes[256][4];
    const char *tok[T_COUNT];
    int32_t type[T_COUNT];
    for (int b = 0; b < 256; b++) {
        int n = unicode_encode_utf8(unicode_byte_to_cp((uint8_t)b), bytes[b]);
        bytes[b][n] = '\0';
        tok[b] = bytes[b];
        type[b] = VOCAB_TOK_NORMAL;
    }
    const char *more[T_COUNT - T_HE] = {
        "he", "ll", "hell", "\xc4\xa0w", "hello", "bc", "ab", "<|endoftext|>", "<|im_end|>",
        "<tool>", "<tools>", "xyz", "pq", "qrs"};
    for (int i = T_HE; i < T_COUNT; i++) {
        tok[i] = more[i - T_HE];
        type[i] = VOCAB_TOK_NORMAL;
    }
    type[T_EOT] = type[T_IM_END] = VOCAB_TOK_CONTROL;
    type[T_TOOL] = type[T_TOOLS] = type[T_PQ] = type[T_QRS] = VOCAB_TOK_USER_DEFINED;

    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_set_str(w, "general.architecture", "qwen2");
    gguf_writer_set_str(w, "tokenizer.ggml.model", o->model);
    if (o->pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", o->pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, T_COUNT);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, T_COUNT);
    if (o->merges)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", MERGES, HY_ARRAY_LEN(MERGES));
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", T_EOT);
    if (o->bos_key) gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", T_EOT);
    if (o->add_bos >= 0) gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", o->add_bos != 0);
    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    struct gguf_ctx *g = NULL;
    if (CHECK_OK(gguf_writer_begin(w, &sink)) && CHECK_OK(gguf_writer_finish(w))) {
        struct gguf_source src = gguf_source_buffer(mem.data, mem.len, "test-bpe");
        if (!CHECK_OK(gguf_parse(&src, &g))) g = NULL;
    }
    gguf_writer_free(w);
    free(mem.data);
    return g;
}

static void check_tokens(const struct tokenizer *t, const char *text, unsigned flags,
                         const int32_t *want, int n_want)
{
    int32_t out[128];
    int64_t n = 0;
    if (!CHECK_OK(tokenizer_tokenize(t, text, strlen(text), flags, out, 128, &n))) return;
    char label[160];
    snprintf(label, sizeof label, "text \"%s\" flags %u", text, flags);
    check_ids(out, n, want, n_want, label);
}

#define TOKS(t, text, flags, ...)                                                                  \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        check_tokens((t), (text), (flags), want_, (int)HY_ARRAY_LEN(want_));                       \
    } while (0)

static bool open_vocab(const struct opts *o, struct gguf_ctx **g, struct tokenizer *t)
{
    *g = make_vocab(o);
    if (!*g) return false;
    if (!CHECK_OK(tokenizer_init(t, *g))) {
        gguf_free(*g);
        return false;
    }
    return true;
}

static void test_merges(void)
{
    struct opts o = {"gpt2", "gpt-2", -1, true, false};
    struct gguf_ctx *g;
    struct tokenizer t;
    if (!open_vocab(&o, &g, &t)) return;
    CHECK_EQ_INT(t.kind, TOKENIZER_BPE);
    CHECK_EQ_INT(t.n_vocab, T_COUNT);
    /* h e l l o: he (0), ll (1), hell (2), hello (4) */
    TOKS(&t, "hello", 0, T_HELLO);
    /* " world": Ġ w (3), the rest has no merges */
    TOKS(&t, "hello world", 0, T_HELLO, T_SPACE_W, 'o', 'r', 'l', 'd');
    /* "abc": b c (5) before a b (6), which is then stale */
    TOKS(&t, "abc", 0, 'a', T_BC);
    TOKS(&t, "ab", 0, T_AB);
    /* "hell" stops at hell; "helo" at he + l + o */
    TOKS(&t, "hell", 0, T_HELL);
    TOKS(&t, "helo", 0, T_HE, 'l', 'o');
    /* no merges apply across words */
    TOKS(&t, "he llo", 0, T_HE, ' ', T_LL, 'o');
    /* bytes: a space is the token of byte 0x20, é its two bytes */
    TOKS(&t, "\xc3\xa9", 0, 0xc3, 0xa9);
    TOKS(&t, "\n", 0, '\n');
    /* ignore_merges is off for gpt-2: xyz is three tokens */
    TOKS(&t, "xyz", 0, 'x', 'y', 'z');
    /* no BOS for a gpt2 vocabulary without add_bos_token */
    CHECK(!t.add_bos);
    TOKS(&t, "ab", TOKENIZER_ADD_SPECIAL, T_AB);
    int32_t out[4];
    int64_t n = -1;
    CHECK_OK(tokenizer_tokenize(&t, "", 0, TOKENIZER_ADD_SPECIAL, out, 4, &n));
    CHECK_EQ_INT(n, 0);
    CHECK_STATUS(tokenizer_tokenize(&t, "xyzxyz", 6, 0, out, 4, &n), HY_ERR_INVALID_ARG);
    tokenizer_free(&t);
    gguf_free(g);
}

static void test_specials(void)
{
    struct opts o = {"gpt2", "qwen2", -1, true, false};
    struct gguf_ctx *g;
    struct tokenizer t;
    if (!open_vocab(&o, &g, &t)) return;
    /* user-defined: always, longest first */
    TOKS(&t, "a<tool>b", 0, 'a', T_TOOL, 'b');
    TOKS(&t, "a<tools>b", 0, 'a', T_TOOLS, 'b');
    /* llama.cpp's order: the longer qrs claims its text first, though pq starts earlier */
    TOKS(&t, "pqrs", 0, 'p', T_QRS);
    TOKS(&t, "pqpq", 0, T_PQ, T_PQ);
    /* control: only parsed */
    TOKS(&t, "a<|im_end|>", TOKENIZER_PARSE_SPECIAL, 'a', T_IM_END);
    TOKS(&t, "<|im_end|>", 0, '<', '|', 'i', 'm', '_', 'e', 'n', 'd', '|', '>');
    /* eos is <|endoftext|>; <|im_end|> stops generation by its text */
    CHECK_EQ_INT(t.eos_id, T_EOT);
    CHECK(tokenizer_is_eog(&t, T_EOT));
    CHECK(tokenizer_is_eog(&t, T_IM_END));
    CHECK(!tokenizer_is_eog(&t, T_TOOL));
    CHECK(!tokenizer_is_eog(&t, -1));
    CHECK_EQ_INT(t.n_eog, 2);
    /* llama.cpp's default BOS of a BPE vocabulary without the key is 11 */
    CHECK_EQ_INT(t.bos_id, 11);
    CHECK_EQ_STR(tokenizer_token_text(&t, T_SPACE_W), "\xc4\xa0w");
    CHECK(tokenizer_token_text(&t, T_COUNT) == NULL);

    /* pieces: normal tokens as their bytes, user-defined as text, control as nothing */
    char buf[16];
    CHECK_EQ_INT(tokenizer_piece(&t, T_SPACE_W, buf, sizeof buf), 2);
    CHECK(memcmp(buf, " w", 2) == 0);
    CHECK_EQ_INT(tokenizer_piece(&t, '\n', buf, sizeof buf), 1);
    CHECK_EQ_INT(buf[0], '\n');
    CHECK_EQ_INT(tokenizer_piece(&t, T_TOOL, buf, sizeof buf), 6);
    CHECK_EQ_INT(tokenizer_piece(&t, T_IM_END, buf, sizeof buf), 0);
    CHECK_EQ_INT(tokenizer_piece(&t, T_COUNT, buf, sizeof buf), 0);
    /* the full length even when the buffer is short */
    CHECK_EQ_INT(tokenizer_piece(&t, T_HELLO, buf, 2), 5);
    tokenizer_free(&t);
    gguf_free(g);
}

static void push_expect(struct tokenizer_stream *s, int32_t id, const char *want)
{
    size_t len = 0;
    const char *p = tokenizer_stream_push(s, id, &len);
    bool ok = len == strlen(want) && memcmp(p, want, len) == 0;
    if (!CHECK(ok))
        fprintf(stderr, "  push %d: got \"%.*s\" (%zu bytes), want \"%s\"\n", (int)id, (int)len, p,
                len, want);
}

static void test_stream(void)
{
    struct opts o = {"gpt2", "gpt-2", -1, true, false};
    struct gguf_ctx *g;
    struct tokenizer t;
    if (!open_vocab(&o, &g, &t)) return;
    struct tokenizer_stream s;
    tokenizer_stream_init(&s, &t);
    push_expect(&s, T_HELLO, "hello");
    push_expect(&s, T_SPACE_W, " w"); /* BPE keeps its leading spaces */
    /* "é" over two byte tokens: nothing until the second */
    push_expect(&s, 0xc3, "");
    push_expect(&s, 0xa9, "\xc3\xa9");
    /* a 4-byte character (U+1F600) over four pushes */
    push_expect(&s, 0xf0, "");
    push_expect(&s, 0x9f, "");
    push_expect(&s, 0x98, "");
    push_expect(&s, 0x80, "\xf0\x9f\x98\x80");
    /* a control token prints nothing and does not break a pending sequence */
    push_expect(&s, 0xc3, "");
    push_expect(&s, T_EOT, "");
    push_expect(&s, 0xa9, "\xc3\xa9");
    /* a broken sequence goes out as it is, with what follows */
    push_expect(&s, 0xc3, "");
    push_expect(&s, 'a',
                "\xc3"
                "a");
    /* an unfinished sequence at the end comes out on flush */
    push_expect(&s, 0xe2, "");
    push_expect(&s, 0x82, "");
    size_t len = 0;
    const char *p = tokenizer_stream_flush(&s, &len);
    CHECK(len == 2 && (unsigned char)p[0] == 0xe2 && (unsigned char)p[1] == 0x82);
    p = tokenizer_stream_flush(&s, &len);
    CHECK_EQ_INT(len, 0);
    tokenizer_stream_free(&s);
    tokenizer_free(&t);
    gguf_free(g);
}

static void test_defaults(void)
{
    struct gguf_ctx *g;
    struct tokenizer t;
    /* the Llama 3 family adds BOS by default and keeps whole-token words */
    struct opts o = {"gpt2", "llama-bpe", -1, true, true};
    if (open_vocab(&o, &g, &t)) {
        CHECK(t.add_bos);
        CHECK_EQ_INT(t.bos_id, T_EOT);
        TOKS(&t, "xyz", TOKENIZER_ADD_SPECIAL, T_EOT, T_XYZ);
        TOKS(&t, "xyz", 0, T_XYZ);
        tokenizer_free(&t);
        gguf_free(g);
    }
    /* ... unless the key says otherwise */
    o.add_bos = 0;
    if (open_vocab(&o, &g, &t)) {
        CHECK(!t.add_bos);
        TOKS(&t, "xyz", TOKENIZER_ADD_SPECIAL, T_XYZ);
        tokenizer_free(&t);
        gguf_free(g);
    }
    /* no pre at all: llama.cpp's "default" */
    o = (struct opts){"gpt2", NULL, 1, true, true};
    if (open_vocab(&o, &g, &t)) {
        CHECK_EQ_INT(t.bpe.pre->kind, PRETOK_DEFAULT);
        TOKS(&t, "ab", TOKENIZER_ADD_SPECIAL, T_EOT, T_AB);
        TOKS(&t, "ab", TOKENIZER_ADD_EOS, T_AB); /* add_eos_token is absent: false */
        tokenizer_free(&t);
        gguf_free(g);
    }
}

static void test_errors(void)
{
    struct opts o = {"bert", "gpt-2", -1, true, false};
    struct gguf_ctx *g = make_vocab(&o);
    struct tokenizer t;
    if (g) {
        CHECK_STATUS(tokenizer_init(&t, g), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "'bert'");
        gguf_free(g);
    }
    o = (struct opts){"gpt2", "no-such-pre", -1, true, false};
    if ((g = make_vocab(&o))) {
        CHECK_STATUS(tokenizer_init(&t, g), HY_ERR_UNSUPPORTED);
        CHECK_CONTAINS(err_msg(), "'no-such-pre'");
        CHECK_CONTAINS(err_msg(), "test-bpe");
        gguf_free(g);
    }
    o = (struct opts){"gpt2", "gpt-2", -1, false, false};
    if ((g = make_vocab(&o))) {
        CHECK_STATUS(tokenizer_init(&t, g), HY_ERR_FORMAT);
        CHECK_CONTAINS(err_msg(), "tokenizer.ggml.merges");
        gguf_free(g);
    }
    /* a file without a vocabulary */
    struct gguf_writer *w = gguf_writer_init(GGUF_DEFAULT_ALIGNMENT);
    gguf_writer_set_str(w, "general.architecture", "llama");
    struct gguf_writer_mem mem = {0};
    struct gguf_sink sink = gguf_writer_mem_sink(&mem);
    if (CHECK_OK(gguf_writer_begin(w, &sink)) && CHECK_OK(gguf_writer_finish(w))) {
        struct gguf_source src = gguf_source_buffer(mem.data, mem.len, "no-vocab");
        if (CHECK_OK(gguf_parse(&src, &g))) {
            CHECK_STATUS(tokenizer_init(&t, g), HY_ERR_UNSUPPORTED);
            CHECK_CONTAINS(err_msg(), "no vocabulary");
            gguf_free(g);
        }
    }
    gguf_writer_free(w);
    free(mem.data);
    tokenizer_free(NULL);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_merges();
    test_specials();
    test_stream();
    test_defaults();
    test_errors();
    return check_report(argv[0]);
}
