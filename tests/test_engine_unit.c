/*
 * The engine (src/engine/engine.h) on a synthetic Llama model:
 *  - KV prefix reuse: a prompt that extends what a sequence holds evaluates
 *    only the new tokens, the same prompt again only its last token, and the
 *    text is the same as from an empty sequence;
 *  - stop reasons (limit, cancel) and their API names; a prompt longer than
 *    the context is refused;
 *  - engine_seq_acquire picks the sequence sharing the longest prefix.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/mem.h"
#include "engine/engine.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif
#define MODEL HY_TESTDATA_DIR "/synth/llama-Q4_K_M.gguf"

struct out {
    char buf[4096];
    size_t len;
    int pieces;
    int cancel_after; /* return false after this many pieces; 0: never */
};

static bool collect(void *user, const char *text, size_t len)
{
    struct out *o = user;
    if (o->len + len < sizeof o->buf) {
        memcpy(o->buf + o->len, text, len);
        o->len += len;
        o->buf[o->len] = '\0';
    }
    o->pieces++;
    return !(o->cancel_after && o->pieces >= o->cancel_after);
}

static struct engine_gen_params greedy(int64_t n)
{
    struct engine_gen_params p = {.sp = sampler_default_params(), .n_predict = n};
    p.sp.temp = 0.0f;
    return p;
}

/* Generates from prompt in seq; the text in *o, the stats returned. */
static struct engine_gen_stats gen(struct engine *e, int seq, const int32_t *prompt, int64_t n,
                                   int64_t n_predict, struct out *o)
{
    struct engine_gen_params p = greedy(n_predict);
    struct engine_gen_stats st = {0};
    o->len = 0;
    o->buf[0] = '\0';
    o->pieces = 0;
    CHECK_OK(engine_generate(e, seq, prompt, n, &p, collect, o, &st));
    return st;
}

int main(int argc, char **argv)
{
    (void)argc;
    struct engine_opts eo = {
        .model_path = MODEL, .n_ctx = 256, .n_threads = 2, .kv_type = HY_TYPE_F16, .n_seq = 2};
    struct engine *e = NULL;
    if (!CHECK_OK(engine_open(&eo, &e))) return check_report(argv[0]);
    CHECK_OK(engine_load_weights(e, NULL, NULL));
    CHECK_EQ_INT(e->n_seq, 2);

    int32_t *a = NULL;
    int64_t na = 0;
    const char *text = "Once upon a time";
    CHECK_OK(engine_tokenize(e, text, strlen(text), TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_BOS,
                             &a, &na));
    CHECK(na > 2);

    /* fresh, then the same prompt again: only its last token is evaluated */
    struct out o1 = {0}, o2 = {0};
    struct engine_gen_stats s1 = gen(e, 0, a, na, 12, &o1);
    CHECK_EQ_INT(s1.n_prompt, na);
    CHECK_EQ_INT(s1.n_prompt_eval, na);
    CHECK_EQ_INT(s1.n_gen, 12);
    CHECK_EQ_INT(s1.stop, ENGINE_STOP_LIMIT);
    CHECK_EQ_STR(engine_stop_api(s1.stop), "length");
    CHECK(o1.len > 0);
    /* the cache holds the prompt and every generated token but the last */
    CHECK_EQ_INT(e->seq[0].n_tokens, na + 11);
    struct engine_gen_stats s2 = gen(e, 0, a, na, 12, &o2);
    CHECK_EQ_INT(s2.n_prompt_eval, 1);
    CHECK_EQ_STR(o2.buf, o1.buf);

    /* the prompt and its reply as the next prompt: one new token evaluated,
     * and the continuation is the one an empty sequence gives */
    struct engine_gen *g = NULL;
    struct engine_gen_params p = greedy(12);
    CHECK_OK(engine_gen_start(e, 0, a, na, &p, &g));
    bool done = false;
    while (!done) {
        const char *t;
        size_t n;
        CHECK_OK(engine_gen_next(g, &t, &n, &done));
    }
    int64_t n_reply = 0;
    const int32_t *reply = engine_gen_tokens(g, &n_reply);
    CHECK_EQ_INT(n_reply, 12);
    const int64_t nb = na + n_reply;
    int32_t *b = mem_xcalloc((size_t)nb, sizeof(int32_t));
    memcpy(b, a, (size_t)na * sizeof(int32_t));
    memcpy(b + na, reply, (size_t)n_reply * sizeof(int32_t));
    engine_gen_free(g);
    struct out o3 = {0}, o4 = {0};
    struct engine_gen_stats s3 = gen(e, 0, b, nb, 8, &o3);
    CHECK_EQ_INT(s3.n_prompt_eval, 1);
    CHECK_EQ_INT(e->seq[1].n_tokens, 0);
    struct engine_gen_stats s4 = gen(e, 1, b, nb, 8, &o4);
    CHECK_EQ_INT(s4.n_prompt_eval, nb);
    CHECK_EQ_STR(o3.buf, o4.buf);

    /* a prompt that only shares the BOS re-evaluates everything after it */
    int32_t *c = NULL;
    int64_t nc = 0;
    CHECK_OK(engine_tokenize(e, "Hello", 5, TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_BOS, &c, &nc));
    struct out o5 = {0};
    struct engine_gen_stats s5 = gen(e, 0, c, nc, 4, &o5);
    CHECK_EQ_INT(s5.n_prompt_eval, nc - 1);

    /* the sequence sharing the longest prefix is chosen: seq 1 holds b */
    int seq = engine_seq_acquire(e, b, nb);
    CHECK_EQ_INT(seq, 1);
    int other = engine_seq_acquire(e, b, nb);
    CHECK_EQ_INT(other, 0);
    engine_seq_release(e, other);
    engine_seq_release(e, seq);

    /* n_predict 0; cancel after the first piece; a prompt that does not fit */
    struct out o6 = {0};
    struct engine_gen_stats s6 = gen(e, 0, a, na, 0, &o6);
    CHECK_EQ_INT(s6.n_gen, 0);
    CHECK_EQ_INT(s6.stop, ENGINE_STOP_LIMIT);
    CHECK_EQ_INT(o6.len, 0);
    struct out o7 = {.cancel_after = 1};
    struct engine_gen_stats s7 = gen(e, 0, a, na, 100, &o7);
    CHECK_EQ_INT(s7.stop, ENGINE_STOP_CANCEL);
    CHECK_EQ_STR(engine_stop_api(s7.stop), "stop");
    CHECK(s7.n_gen < 100);
    int32_t *big = mem_xcalloc(256, sizeof(int32_t));
    struct engine_gen_params pb = greedy(4);
    CHECK_STATUS(engine_gen_start(e, 0, big, 256, &pb, &g), HY_ERR_INVALID_ARG);
    CHECK_STATUS(engine_gen_start(e, 0, big, 0, &pb, &g), HY_ERR_INVALID_ARG);

    free(big);
    free(a);
    free(b);
    free(c);
    engine_close(e);
    return check_report(argv[0]);
}
