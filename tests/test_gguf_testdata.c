/*
 * Golden test of the GGUF parser against the real files in ../shared/testdata
 * (see its SOURCES.md and synth/README.md for where the values come from;
 * they were also cross-checked with an independent reader).
 *
 * For every file: the header (version, counts, data offset, alignment), a
 * handful of metadata values, selected tensors (type, shape), tensor type
 * counts, and that the last tensor ends at the end of the file. Two files are
 * negative cases with exact messages: the GGUF v1 file and the Q8_0 file whose
 * ffn_down rows (172) are not whole Q8_0 blocks. Every file is parsed both by
 * gguf_open and by gguf_parse over its bytes in memory, with equal results.
 * Every .gguf found in the directories is parsed, listed here or not.
 *
 * HY_TESTDATA_DIR is set by tests/CMakeLists.txt; a missing directory is a
 * failure with a message, not a skip.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "gguf/gguf.h"
#include "gguf_equal.h"
#include "quant/quant.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif

enum kv_kind { KV_END, KV_STR, KV_INT, KV_LEN, KV_FLOAT, KV_ABSENT };

struct kv_want {
    enum kv_kind kind;
    const char *key;
    const char *s; /* KV_STR */
    int64_t i;     /* KV_INT value, KV_LEN array length */
    double f;      /* KV_FLOAT */
};

struct tensor_want {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[3];
};

struct type_count {
    uint32_t type;
    int count;
};

struct file_want {
    const char *path; /* relative to HY_TESTDATA_DIR */
    uint32_t version;
    uint64_t file_size;
    uint64_t n_kv, n_tensors, data_off;
    struct kv_want kv[16];
    struct tensor_want tensors[4];
    struct type_count types[6];
};

/* clang-format off */
#define S(k, v) {KV_STR, (k), (v), 0, 0}
#define I(k, v) {KV_INT, (k), NULL, (v), 0}
#define LEN(k, n) {KV_LEN, (k), NULL, (n), 0}
#define F(k, v) {KV_FLOAT, (k), NULL, 0, (v)}
#define ABSENT(k) {KV_ABSENT, (k), NULL, 0, 0}

/* Shared by the six llama-*.gguf files of synth/. */
#define SYNTH_LLAMA                                                                    \
    S("general.architecture", "llama"), I("llama.block_count", 4),                     \
        I("llama.embedding_length", 256), I("llama.attention.head_count", 8),          \
        I("llama.attention.head_count_kv", 4), I("llama.feed_forward_length", 768),    \
        LEN("tokenizer.ggml.tokens", 1807), S("tokenizer.ggml.model", "llama")

static const struct file_want files[] = {
    /* models/ */
    {"models/stories260K.gguf", 3, 1185376, 19, 48, 14176,
     {S("general.architecture", "llama"), I("llama.block_count", 5),
      I("llama.embedding_length", 64), I("llama.attention.head_count", 8),
      I("llama.attention.head_count_kv", 4),
      I("llama.feed_forward_length", 172), I("llama.context_length", 2048),
      I("llama.rope.dimension_count", 8), F("llama.attention.layer_norm_rms_epsilon", 1e-5),
      S("tokenizer.ggml.model", "llama"), LEN("tokenizer.ggml.tokens", 512),
      LEN("tokenizer.ggml.scores", 512), I("tokenizer.ggml.bos_token_id", 1),
      I("tokenizer.ggml.eos_token_id", 2), I("tokenizer.ggml.padding_token_id", 4294967295),
      ABSENT("tokenizer.ggml.pre")},
     {{"token_embd.weight", HY_TYPE_F32, 2, {64, 512}},
      {"output.weight", HY_TYPE_F32, 2, {64, 512}},
      {"blk.0.ffn_down.weight", HY_TYPE_F32, 2, {172, 64}},
      {"blk.4.attn_k.weight", HY_TYPE_F32, 2, {64, 32}}},
     {{HY_TYPE_F32, 48}}},
    {"models/llama-2-tiny-random.gguf", 3, 1750560, 18, 12, 724416,
     {S("general.architecture", "llama"), S("general.name", "LLaMA v2"), I("llama.block_count", 1),
      I("llama.embedding_length", 8), I("llama.attention.head_count", 2),
      I("llama.attention.head_count_kv", 2), I("llama.feed_forward_length", 32),
      I("llama.context_length", 4096), I("llama.rope.dimension_count", 4),
      I("general.file_type", 1), S("tokenizer.ggml.model", "llama"),
      LEN("tokenizer.ggml.tokens", 32000),
      I("tokenizer.ggml.unknown_token_id", 0)},
     {{"token_embd.weight", HY_TYPE_F16, 2, {8, 32000}},
      {"output.weight", HY_TYPE_F16, 2, {8, 32000}},
      {"blk.0.attn_q.weight", HY_TYPE_F16, 2, {8, 8}},
      {"output_norm.weight", HY_TYPE_F32, 1, {8}}},
     {{HY_TYPE_F16, 9}, {HY_TYPE_F32, 3}}},

    /* vocab/: metadata only (no tensors), so the data offset lies past the end */
    {"vocab/ggml-vocab-llama-spm.gguf", 3, 723869, 22, 0, 723872,
     {S("general.architecture", "llama"), S("tokenizer.ggml.model", "llama"),
      S("tokenizer.ggml.pre", "default"), LEN("tokenizer.ggml.tokens", 32000),
      LEN("tokenizer.ggml.scores", 32000), LEN("tokenizer.ggml.token_type", 32000),
      I("tokenizer.ggml.bos_token_id", 1), I("tokenizer.ggml.eos_token_id", 2),
      ABSENT("tokenizer.ggml.merges")},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-phi-3.gguf", 3, 726019, 26, 0, 726048,
     {S("general.architecture", "phi3"), S("tokenizer.ggml.model", "llama"),
      S("tokenizer.ggml.pre", "default"), LEN("tokenizer.ggml.tokens", 32064),
      I("tokenizer.ggml.eos_token_id", 32000), I("phi3.block_count", 32)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-gpt-2.gguf", 3, 1766807, 16, 0, 1766816,
     {S("general.architecture", "gpt2"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "gpt-2"), LEN("tokenizer.ggml.tokens", 50257),
      LEN("tokenizer.ggml.merges", 50000), I("tokenizer.ggml.bos_token_id", 50256)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-deepseek-llm.gguf", 3, 3970167, 23, 0, 3970176,
     {S("general.architecture", "llama"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "deepseek-llm"), LEN("tokenizer.ggml.tokens", 102400),
      LEN("tokenizer.ggml.merges", 99757), I("tokenizer.ggml.bos_token_id", 100000)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-deepseek-coder.gguf", 3, 1156067, 25, 0, 1156096,
     {S("general.architecture", "llama"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "deepseek-coder"), LEN("tokenizer.ggml.tokens", 32256),
      LEN("tokenizer.ggml.merges", 31757), S("llama.rope.scaling.type", "linear")},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-falcon.gguf", 3, 2287728, 18, 0, 2287744,
     {S("general.architecture", "falcon"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "falcon"), LEN("tokenizer.ggml.tokens", 65024),
      LEN("tokenizer.ggml.merges", 64784), I("falcon.attention.head_count_kv", 1)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-mpt.gguf", 3, 1771393, 17, 0, 1771424,
     {S("general.architecture", "mpt"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "mpt"), LEN("tokenizer.ggml.tokens", 50432),
      LEN("tokenizer.ggml.merges", 50009)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-starcoder.gguf", 3, 1719346, 19, 0, 1719360,
     {S("general.architecture", "starcoder2"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "starcoder"), LEN("tokenizer.ggml.tokens", 49152),
      LEN("tokenizer.ggml.merges", 48872)},
     {{0}},
     {{0}}},
    {"vocab/ggml-vocab-refact.gguf", 3, 1720710, 18, 0, 1720736,
     {S("general.architecture", "refact"), S("tokenizer.ggml.model", "gpt2"),
      S("tokenizer.ggml.pre", "refact"), LEN("tokenizer.ggml.tokens", 49216),
      LEN("tokenizer.ggml.merges", 48891)},
     {{0}},
     {{0}}},

    /* synth/: our own random models quantized by llama.cpp (synth/README.md) */
    {"synth/llama-F16.gguf", 3, 8192992, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 1)},
     {{"token_embd.weight", HY_TYPE_F16, 2, {256, 1807}}, {"blk.3.ffn_down.weight", HY_TYPE_F16, 2,
       {768, 256}}},
     {{HY_TYPE_F16, 30}, {HY_TYPE_F32, 9}}},
    {"synth/llama-Q8_0.gguf", 3, 4376544, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 7)},
     {{"token_embd.weight", HY_TYPE_Q8_0, 2, {256, 1807}}},
     {{HY_TYPE_Q8_0, 30}, {HY_TYPE_F32, 9}}},
    {"synth/llama-Q6_K.gguf", 3, 3390624, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 18)},
     {{"token_embd.weight", HY_TYPE_Q6_K, 2, {256, 1807}}},
     {{HY_TYPE_Q6_K, 30}, {HY_TYPE_F32, 9}}},
    {"synth/llama-Q4_K_M.gguf", 3, 2578624, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 15)},
     {{"token_embd.weight", HY_TYPE_Q4_K, 2, {256, 1807}}, {"output.weight", HY_TYPE_Q6_K, 2, {256,
       1807}}},
     {{HY_TYPE_Q4_K, 25}, {HY_TYPE_Q6_K, 5}, {HY_TYPE_F32, 9}}},
    {"synth/llama-Q4_0.gguf", 3, 2460352, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 2)},
     {{"token_embd.weight", HY_TYPE_Q4_0, 2, {256, 1807}}},
     {{HY_TYPE_Q4_0, 29}, {HY_TYPE_Q6_K, 1}, {HY_TYPE_F32, 9}}},
    {"synth/llama-Q2_K.gguf", 3, 1734464, 23, 39, 41952,
     {SYNTH_LLAMA, I("general.file_type", 10)},
     {{"token_embd.weight", HY_TYPE_Q2_K, 2, {256, 1807}}},
     {{HY_TYPE_Q2_K, 17}, {HY_TYPE_Q3_K, 12}, {HY_TYPE_Q6_K, 1}, {HY_TYPE_F32, 9}}},
    {"synth/mixtral-Q4_K_M.gguf", 3, 8809664, 25, 43, 42464,
     {S("general.architecture", "llama"), S("general.name", "hypura-test-mixtral"),
      I("llama.block_count", 4), I("llama.embedding_length", 256),
      I("llama.attention.head_count", 8), I("llama.attention.head_count_kv", 2),
      I("llama.feed_forward_length", 512), I("llama.expert_count", 8),
      I("llama.expert_used_count", 2), LEN("tokenizer.ggml.tokens", 1807),
      I("general.file_type", 15)},
     {{"blk.0.ffn_gate_exps.weight", HY_TYPE_Q4_K, 3, {256, 512, 8}},
      {"blk.0.ffn_down_exps.weight", HY_TYPE_Q4_K, 3, {512, 256, 8}},
      {"blk.0.ffn_gate_inp.weight", HY_TYPE_F32, 2, {256, 8}}},
     {{HY_TYPE_Q4_K, 15}, {HY_TYPE_F32, 13}, {HY_TYPE_Q8_0, 8}, {HY_TYPE_Q5_K, 4}, {HY_TYPE_Q6_K,
       3}}},
    {"synth/qwen2-Q5_K_M.gguf", 3, 2377024, 24, 39, 51520,
     {S("general.architecture", "qwen2"), I("qwen2.block_count", 3),
      I("qwen2.embedding_length", 256), I("qwen2.attention.head_count", 4),
      I("qwen2.attention.head_count_kv", 2), F("qwen2.rope.freq_base", 1e6),
      S("tokenizer.ggml.model", "gpt2"), S("tokenizer.ggml.pre", "qwen2"),
      LEN("tokenizer.ggml.tokens", 1709), LEN("tokenizer.ggml.merges", 1450),
      I("general.file_type", 17)},
     {{"blk.0.attn_q.bias", HY_TYPE_F32, 1, {256}},
      {"blk.0.attn_k.bias", HY_TYPE_F32, 1, {128}},
      {"blk.0.attn_k.weight", HY_TYPE_Q5_K, 2, {256, 128}}},
     {{HY_TYPE_Q5_K, 20}, {HY_TYPE_F32, 16}, {HY_TYPE_Q6_K, 3}}},
    {"synth/qwen2moe-Q4_K_M.gguf", 3, 3240928, 28, 54, 52864,
     {S("general.architecture", "qwen2moe"), I("qwen2moe.block_count", 3),
      I("qwen2moe.embedding_length", 256), I("qwen2moe.expert_count", 4),
      I("qwen2moe.expert_used_count", 2), I("qwen2moe.expert_feed_forward_length", 256),
      I("qwen2moe.expert_shared_feed_forward_length", 512), S("tokenizer.ggml.pre", "qwen2"),
      LEN("tokenizer.ggml.tokens", 1709), I("general.file_type", 15)},
     {{"blk.0.ffn_gate_exps.weight", HY_TYPE_Q4_K, 3, {256, 256, 4}},
      {"blk.0.ffn_gate_inp.weight", HY_TYPE_F32, 2, {256, 4}},
      {"blk.0.ffn_gate_inp_shexp.weight", HY_TYPE_F32, 1, {256}}},
     {{HY_TYPE_Q4_K, 28}, {HY_TYPE_F32, 22}, {HY_TYPE_Q6_K, 4}}},
};

/* Files the parser must refuse, with substrings of the message. */
static const struct {
    const char *path;
    const char *want[3];
} refused[] = {
    {"models/tinyllamas-stories-260k-f32.gguf", {"GGUF v1", "only GGUF v2 and v3 are supported"}},
    {"models/tinyllamas-stories-260k-q8_0.gguf",
     {"tensor 'blk.0.ffn_down.weight'",
      "row length ne[0]=172 is not a multiple of the Q8_0 block size 32"}},
};
/* clang-format on */

/* ---- helpers ------------------------------------------------------------ */

static void full_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", HY_TESTDATA_DIR, rel);
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *p = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            p = realloc(p, cap);
        }
        size_t got = fread(p + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *len = n;
    return p;
}

/* gguf_open and gguf_parse over the same bytes in memory give the same status,
 * the same message and an equal context. Returns the opened context or NULL. */
static struct gguf_ctx *open_both_ways(const char *path, enum hy_status *status, char *msg,
                                       size_t msg_cap)
{
    struct gguf_ctx *from_file = NULL, *from_mem = NULL;
    enum hy_status st_file = gguf_open(path, &from_file);
    snprintf(msg, msg_cap, "%s", st_file ? err_msg() : "");
    size_t len = 0;
    unsigned char *bytes = read_whole(path, &len);
    if (!CHECK(bytes != NULL)) {
        *status = st_file;
        return from_file;
    }
    struct gguf_source src = gguf_source_buffer(bytes, len, path);
    enum hy_status st_mem = gguf_parse(&src, &from_mem);
    if (!CHECK_EQ_STR(hy_status_str(st_mem), hy_status_str(st_file)))
        fprintf(stderr, "  file %s\n", path);
    if (st_file && st_mem) CHECK_EQ_STR(err_msg(), msg);
    if (from_file && from_mem && !CHECK(gguf_equal_ctx(from_file, from_mem)))
        fprintf(stderr, "  file %s\n", path);
    gguf_free(from_mem);
    free(bytes);
    *status = st_file;
    return from_file;
}

static void check_kv(const struct gguf_ctx *g, const struct kv_want *w, const char *path)
{
    bool ok = true;
    switch (w->kind) {
    case KV_STR: {
        const char *s = NULL;
        ok = CHECK_OK(gguf_get_str(g, w->key, &s)) && CHECK_EQ_STR(s, w->s);
        break;
    }
    case KV_INT: {
        int64_t v = 0;
        ok = CHECK_OK(gguf_get_int(g, w->key, &v)) && CHECK_EQ_INT(v, w->i);
        break;
    }
    case KV_LEN: {
        const struct gguf_array *a = NULL;
        ok = CHECK_OK(gguf_get_arr_or_null(g, w->key, GGUF_VTYPE_COUNT, &a)) && CHECK(a != NULL) &&
             CHECK_EQ_U64(a->n, w->i);
        break;
    }
    case KV_FLOAT: {
        double v = 0;
        ok = CHECK_OK(gguf_get_float_or(g, w->key, -1.0, &v)) &&
             CHECK(gguf_find_kv(g, w->key) != NULL) && CHECK_NEAR(v, w->f, 1e-6 * w->f);
        break;
    }
    case KV_ABSENT:
        ok = CHECK(gguf_find_kv(g, w->key) == NULL);
        break;
    case KV_END:
        break;
    }
    if (!ok) fprintf(stderr, "  file %s, key %s\n", path, w->key);
}

static void check_file(const struct file_want *w)
{
    char path[1024], msg[2048];
    full_path(path, sizeof(path), w->path);
    enum hy_status st;
    struct gguf_ctx *g = open_both_ways(path, &st, msg, sizeof(msg));
    if (!CHECK_OK(st)) {
        fprintf(stderr, "  file %s: %s\n", w->path, msg);
        return;
    }
    CHECK_EQ_INT(g->version, w->version);
    CHECK_EQ_U64(g->file_size, w->file_size);
    CHECK_EQ_U64(g->n_kv, w->n_kv);
    CHECK_EQ_U64(g->n_tensors, w->n_tensors);
    CHECK_EQ_U64(g->data_off, w->data_off);
    CHECK_EQ_INT(g->alignment, 32);
    for (size_t i = 0; i < sizeof(w->kv) / sizeof(w->kv[0]) && w->kv[i].kind != KV_END; i++)
        check_kv(g, &w->kv[i], w->path);

    for (size_t i = 0; i < sizeof(w->tensors) / sizeof(w->tensors[0]) && w->tensors[i].name; i++) {
        const struct tensor_want *tw = &w->tensors[i];
        const struct gguf_tensor *t = gguf_find_tensor(g, tw->name);
        if (!CHECK(t != NULL)) {
            fprintf(stderr, "  file %s: tensor %s missing\n", w->path, tw->name);
            continue;
        }
        bool ok = CHECK_EQ_STR(quant_type_name(t->type), quant_type_name(tw->type));
        ok &= CHECK_EQ_INT(t->n_dims, tw->n_dims);
        for (uint32_t d = 0; d < tw->n_dims; d++) ok &= CHECK_EQ_INT(t->ne[d], tw->ne[d]);
        if (!ok) fprintf(stderr, "  file %s, tensor %s\n", w->path, tw->name);
    }

    /* tensor types: the listed counts add up to all tensors */
    int total = 0;
    for (size_t k = 0; k < sizeof(w->types) / sizeof(w->types[0]) && w->types[k].count; k++) {
        int n = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) n += g->tensors[i].type == w->types[k].type;
        if (!CHECK_EQ_INT(n, w->types[k].count))
            fprintf(stderr, "  file %s, %s tensors\n", w->path, quant_type_name(w->types[k].type));
        total += w->types[k].count;
    }
    CHECK_EQ_U64(total, g->n_tensors);

    /* the data section is exactly the tensors: the last one ends at the end of the file */
    if (g->n_tensors) {
        uint64_t end = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++)
            end = HY_MAX(end, g->tensors[i].file_off + g->tensors[i].n_bytes);
        if (!CHECK_EQ_U64(end, g->file_size)) fprintf(stderr, "  file %s\n", w->path);
    }
    gguf_free(g);
}

static void check_refused(size_t i)
{
    char path[1024], msg[2048];
    full_path(path, sizeof(path), refused[i].path);
    enum hy_status st;
    struct gguf_ctx *g = open_both_ways(path, &st, msg, sizeof(msg));
    if (!CHECK_STATUS(st, HY_ERR_FORMAT)) {
        gguf_free(g);
        return;
    }
    CHECK(g == NULL);
    CHECK(strncmp(msg, path, strlen(path)) == 0); /* the message names the file first */
    for (int k = 0; k < 3 && refused[i].want[k]; k++) CHECK_CONTAINS(msg, refused[i].want[k]);
}

static bool listed(const char *rel)
{
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (strcmp(files[i].path, rel) == 0) return true;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strcmp(refused[i].path, rel) == 0) return true;
    return false;
}

/* Every .gguf in the directory parses (those listed are checked in detail). */
static int scan_dir(const char *sub)
{
    char dir[1024];
    full_path(dir, sizeof(dir), sub);
    DIR *d = opendir(dir);
    if (!CHECK(d != NULL)) {
        fprintf(stderr, "  cannot open %s\n", dir);
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") != 0) continue;
        n++;
        char rel[512];
        snprintf(rel, sizeof(rel), "%s/%s", sub, e->d_name);
        if (listed(rel)) continue;
        fprintf(stderr, "note: %s has no expectations in %s; checking only that it parses\n", rel,
                __FILE__);
        char path[1024], msg[2048];
        full_path(path, sizeof(path), rel);
        enum hy_status st;
        struct gguf_ctx *g = open_both_ways(path, &st, msg, sizeof(msg));
        if (!CHECK_OK(st)) fprintf(stderr, "  file %s: %s\n", rel, msg);
        gguf_free(g);
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    (void)argc;
    struct stat sb;
    char probe[1024];
    full_path(probe, sizeof(probe), "models/stories260K.gguf");
    if (stat(HY_TESTDATA_DIR, &sb) != 0 || !S_ISDIR(sb.st_mode) || stat(probe, &sb) != 0) {
        fprintf(
            stderr,
            "%s: error: test data not found: %s (or models/stories260K.gguf in it) does not exist\n"
            "hint: the golden tests read ../shared/testdata next to the source tree "
            "(HY_TESTDATA_DIR, set in tests/CMakeLists.txt)\n",
            argv[0], HY_TESTDATA_DIR);
        return 1;
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) check_file(&files[i]);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) check_refused(i);
    int n_models = scan_dir("models"), n_vocab = scan_dir("vocab"), n_synth = scan_dir("synth");
    CHECK(n_models >= 4);
    CHECK(n_vocab >= 9);
    CHECK(n_synth >= 9);
    return check_report(argv[0]);
}
