#include "text/bpe.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "text/merge.h"
#include "text/unicode.h"

static struct vocab_view view_of(const struct bpe *t)
{
    return (struct vocab_view){t->n_vocab, t->pieces, t->piece_len, t->types, &t->map};
}

/* Names of the implemented pre-tokenizers, for the hint of an unknown one. */
static void known_pre_names(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 0; k < PRETOK_KIND_COUNT && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k ? ", " : "",
                              pretok_kind_name((enum pretok_kind)k));
}

/* What a token detokenizes to, into the arena. */
static void decode_piece(struct bpe *t, int32_t id)
{
    const char *p = t->pieces[id];
    const size_t n = t->piece_len[id];
    switch (t->types[id]) {
    case VOCAB_TOK_NORMAL: {
        /* at most as long as the piece: every character is >= 1 byte and
         * stands for 1 byte, or is copied */
        char *dst = arena_alloc(&t->arena, n + 1);
        size_t len = 0;
        for (size_t off = 0; off < n;) {
            const size_t at = off;
            uint32_t cp = unicode_decode_utf8(p, n, &off);
            int b = unicode_cp_to_byte(cp);
            if (b >= 0) {
                dst[len++] = (char)b;
            } else {
                memcpy(dst + len, p + at, off - at);
                len += off - at;
            }
        }
        dst[len] = '\0';
        t->text[id] = dst;
        t->text_len[id] = (uint32_t)len;
        break;
    }
    case VOCAB_TOK_USER_DEFINED:
        t->text[id] = p;
        t->text_len[id] = (uint32_t)n;
        break;
    default: /* control, unknown, unused, byte, undefined: nothing */
        t->text[id] = "";
        t->text_len[id] = 0;
        break;
    }
    if (t->text_len[id] > t->max_text_bytes) t->max_text_bytes = t->text_len[id];
}

/* The id of a special-token key: the key's value when it names a token,
 * else def (llama.cpp keeps its default for a missing or bad id). */
HY_MUST_CHECK static enum hy_status special_id(const struct gguf_ctx *g, const char *key, int32_t n,
                                               int32_t def, int32_t *out)
{
    int64_t id;
    enum hy_status st = gguf_get_int_or(g, key, -1, &id);
    if (st) return st;
    *out = id >= 0 && id < n ? (int32_t)id : def;
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status load(struct bpe *t, const struct gguf_ctx *g)
{
    enum hy_status st;
    const char *model = NULL, *pre = NULL, *name = NULL;
    const struct gguf_array *tokens = NULL, *types = NULL, *merges = NULL;
    if ((st = gguf_get_str_or_null(g, "tokenizer.ggml.model", &model))) return st;
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.tokens", GGUF_STRING, &tokens))) return st;
    if (!model || !tokens || tokens->n == 0)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: the file has no vocabulary (tokenizer.ggml.model/tokens)", g->name);
    if (strcmp(model, "gpt2") != 0)
        return err_set(HY_ERR_UNSUPPORTED, "%s: tokenizer '%s' is not byte-level BPE ('gpt2')",
                       g->name, model);
    if (tokens->n > INT32_MAX)
        return err_set(HY_ERR_FORMAT, "%s: %" PRIu64 " tokens is too many", g->name, tokens->n);
    if ((st = gguf_get_str_or_null(g, "tokenizer.ggml.pre", &pre))) return st;
    t->pre = pretok_find(pre);
    if (!t->pre) {
        char names[256];
        known_pre_names(names, sizeof names);
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported\n"
                       "hint: hypura implements %s and their aliases",
                       g->name, pre, names);
    }
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.merges", GGUF_STRING, &merges))) return st;
    if (!merges)
        return err_set(HY_ERR_FORMAT,
                       "%s: tokenizer.ggml.merges is missing (a BPE vocabulary needs its merges)",
                       g->name);
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.token_type", GGUF_VTYPE_COUNT, &types)))
        return st;
    if (types && (types->n != tokens->n || !gguf_vtype_is_int(types->elem_type)))
        return err_set(HY_ERR_FORMAT,
                       "%s: tokenizer.ggml.token_type has %" PRIu64 " %s entries for %" PRIu64
                       " tokens (expected integers)",
                       g->name, types->n, gguf_vtype_name(types->elem_type), tokens->n);
    if ((st = gguf_get_str_or_null(g, "general.name", &name))) return st;

    const int32_t n = (int32_t)tokens->n;
    const struct gguf_str *strs = tokens->data;
    t->n_vocab = n;
    const int32_t def_id = n > 11 ? 11 : -1;
    if ((st = special_id(g, "tokenizer.ggml.bos_token_id", n, t->pre->no_bos ? -1 : def_id,
                         &t->bos_id)))
        return st;
    if ((st = special_id(g, "tokenizer.ggml.eos_token_id", n, def_id, &t->eos_id))) return st;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", t->pre->add_bos, &t->add_bos)))
        return st;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_eos_token", false, &t->add_eos))) return st;

    t->pieces = mem_xcalloc((size_t)n, sizeof(*t->pieces));
    t->piece_len = mem_xcalloc((size_t)n, sizeof(*t->piece_len));
    t->types = mem_xcalloc((size_t)n, sizeof(*t->types));
    t->text = mem_xcalloc((size_t)n, sizeof(*t->text));
    t->text_len = mem_xcalloc((size_t)n, sizeof(*t->text_len));
    for (int32_t i = 0; i < n; i++) {
        t->pieces[i] = arena_strndup(&t->arena, strs[i].data, (size_t)strs[i].len);
        t->piece_len[i] = (uint32_t)strs[i].len;
        int64_t ty = types ? gguf_arr_int(types, (uint64_t)i) : VOCAB_TOK_NORMAL;
        t->types[i] =
            ty >= VOCAB_TOK_UNDEFINED && ty <= VOCAB_TOK_BYTE ? (uint8_t)ty : VOCAB_TOK_UNDEFINED;
    }
    /* in reverse so that, as in llama.cpp, the highest id of duplicate pieces wins */
    strmap_init(&t->map, (size_t)n);
    for (int32_t i = n - 1; i >= 0; i--) strmap_put(&t->map, t->pieces[i], i);

    /* "a b" (split at the first space after the first byte, as llama.cpp
     * does); a string without one can never match and is skipped */
    const struct gguf_str *ms = merges->data;
    strmap_init(&t->ranks, (size_t)merges->n);
    for (uint64_t i = 0; i < merges->n; i++) {
        if (ms[i].len < 3 || !memchr(ms[i].data + 1, ' ', (size_t)ms[i].len - 1)) continue;
        if (i > INT32_MAX) break;
        const char *key = arena_strndup(&t->arena, ms[i].data, (size_t)ms[i].len);
        strmap_put(&t->ranks, key, (int64_t)i);
    }

    struct vocab_view v = view_of(t);
    if ((st = vocab_find_eog(g, &v, t->eos_id, &t->eog_ids, &t->n_eog))) return st;
    vocab_specials_init(&t->specials, &v, name);
    for (int32_t i = 0; i < n; i++) decode_piece(t, i);
    return HY_OK;
}

enum hy_status bpe_init(struct bpe *t, const struct gguf_ctx *g)
{
    memset(t, 0, sizeof(*t));
    arena_init(&t->arena, 256 * 1024);
    enum hy_status st = load(t, g);
    if (st) bpe_free(t);
    return st;
}

void bpe_free(struct bpe *t)
{
    if (!t) return;
    strmap_free(&t->map);
    strmap_free(&t->ranks);
    vocab_specials_free(&t->specials);
    arena_free(&t->arena);
    free(t->pieces);
    free(t->piece_len);
    free(t->types);
    free(t->text);
    free(t->text_len);
    free(t->eog_ids);
    memset(t, 0, sizeof(*t));
}

int64_t bpe_max_tokens(size_t len)
{
    return 6 * (int64_t)len + 2;
}

/* ---- the merge loop --------------------------------------------------------- */

struct session {
    const struct bpe *t;
    int32_t *out;
    int64_t cap, n_out;
    /* one raw run: its code points, their flags, word ends (n_cp each) */
    uint32_t *cp;
    uint16_t *fl;
    uint32_t *ends, *tmp;
    /* one word, grown on demand */
    char *enc; /* the word in the byte-level alphabet */
    size_t enc_cap;
    char *key; /* NUL-terminated lookups: "a b" or a symbol */
    struct merge merge;
};

/* Two adjacent symbols may merge when "left right" is a merge; the lower its
 * rank, the earlier. */
static bool pair_priority(void *ctx, uint32_t l_off, uint32_t l_n, uint32_t r_off, uint32_t r_n,
                          double *priority)
{
    struct session *s = ctx;
    memcpy(s->key, s->enc + l_off, l_n);
    s->key[l_n] = ' ';
    memcpy(s->key + l_n + 1, s->enc + r_off, r_n);
    s->key[l_n + 1 + r_n] = '\0';
    int64_t rank = strmap_find(&s->t->ranks, s->key);
    if (rank < 0) return false;
    *priority = (double)rank;
    return true;
}

static bool emit(struct session *s, int32_t id)
{
    if (s->n_out >= s->cap) return false;
    s->out[s->n_out++] = id;
    return true;
}

/* Id of enc[off, off + n) as a whole token, or -1. */
static int64_t lookup(struct session *s, size_t off, size_t n)
{
    memcpy(s->key, s->enc + off, n);
    s->key[n] = '\0';
    return strmap_find(&s->t->map, s->key);
}

static bool emit_symbol(struct session *s, const struct merge_symbol *sym)
{
    int64_t id = lookup(s, sym->off, sym->n);
    if (id >= 0) return emit(s, (int32_t)id);
    for (size_t i = 0; i < sym->n; i++) {
        id = lookup(s, sym->off + i, 1);
        if (id >= 0 && !emit(s, (int32_t)id)) return false;
    }
    return true;
}

/* Grows the per-word buffers for a word of n code points. */
static void reserve_word(struct session *s, size_t n)
{
    /* <= 4 UTF-8 bytes per code point, <= 2 encoded bytes per byte */
    const size_t enc_need = 8 * n + 1;
    if (enc_need > s->enc_cap) {
        s->enc_cap = enc_need;
        s->enc = mem_xrealloc(s->enc, s->enc_cap);
        s->key = mem_xrealloc(s->key, s->enc_cap + 2);
    }
    merge_reserve(&s->merge, enc_need);
}

static bool tokenize_word(struct session *s, const uint32_t *cp, size_t n)
{
    reserve_word(s, n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int k = unicode_encode_utf8(cp[i], u);
        for (int j = 0; j < k; j++)
            len += (size_t)unicode_encode_utf8(unicode_byte_to_cp((uint8_t)u[j]), s->enc + len);
    }
    s->enc[len] = '\0';
    if (s->t->pre->ignore_merges) {
        int64_t id = strmap_find(&s->t->map, s->enc);
        if (id >= 0) return emit(s, (int32_t)id);
    }
    const int32_t n_sym = merge_run(&s->merge, s->enc, len, pair_priority, s);
    const struct merge_symbol *sym = s->merge.sym;
    for (int32_t i = 0; i >= 0 && i < n_sym; i = sym[i].next)
        if (!emit_symbol(s, &sym[i])) return false;
    return true;
}

/* Pre-tokenizes and tokenizes the raw run text[0..len). */
static bool tokenize_run(struct session *s, const char *text, size_t len)
{
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        uint32_t c = unicode_decode_utf8(text, len, &off);
        s->cp[n] = c;
        s->fl[n] = (uint16_t)unicode_flags(c);
    }
    size_t n_words = pretok_split(s->t->pre->kind, s->cp, s->fl, n, s->ends, s->tmp);
    size_t start = 0;
    for (size_t w = 0; w < n_words; w++) {
        if (!tokenize_word(s, s->cp + start, s->ends[w] - start)) return false;
        start = s->ends[w];
    }
    return true;
}

enum hy_status bpe_tokenize(const struct bpe *t, const char *text, size_t len, unsigned flags,
                            int32_t *out, int64_t cap, int64_t *n_out)
{
    *n_out = 0;
    const struct vocab_view v = view_of(t);
    struct vocab_frag *frags = NULL;
    size_t n_frags =
        vocab_partition(&t->specials, &v, text, len, (flags & BPE_PARSE_SPECIAL) != 0, &frags);
    size_t max_run = 0;
    for (size_t i = 0; i < n_frags; i++)
        if (frags[i].id < 0 && frags[i].len > max_run) max_run = frags[i].len;
    struct session s = {
        .t = t,
        .out = out,
        .cap = cap,
        .cp = mem_xcalloc(max_run + 1, sizeof(uint32_t)),
        .fl = mem_xcalloc(max_run + 1, sizeof(uint16_t)),
        .ends = mem_xcalloc(max_run + 1, sizeof(uint32_t)),
        .tmp = mem_xcalloc(max_run + 1, sizeof(uint32_t)),
    };
    bool ok = true;
    if ((flags & BPE_ADD_BOS) && t->bos_id >= 0) ok = emit(&s, t->bos_id);
    for (size_t i = 0; ok && i < n_frags; i++) {
        if (frags[i].id >= 0)
            ok = emit(&s, frags[i].id);
        else
            ok = tokenize_run(&s, text + frags[i].off, frags[i].len);
    }
    if (ok && (flags & BPE_ADD_EOS) && t->eos_id >= 0) ok = emit(&s, t->eos_id);
    free(frags);
    free(s.cp);
    free(s.fl);
    free(s.ends);
    free(s.tmp);
    free(s.enc);
    free(s.key);
    merge_free(&s.merge);
    if (!ok)
        return err_set(HY_ERR_INVALID_ARG,
                       "tokenizer: output buffer of %" PRId64 " tokens is too small for %zu bytes"
                       " of text",
                       cap, len);
    *n_out = s.n_out;
    return HY_OK;
}

size_t bpe_piece(const struct bpe *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab) return 0;
    const size_t n = t->text_len[id];
    if (cap > 0) memcpy(buf, t->text[id], HY_MIN(n, cap));
    return n;
}
