#include "text/spm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "text/merge.h"
#include "text/unicode.h"

/* "▁" (U+2581), SentencePiece's visible space. */
static const char SPACE_MARK[] = "\xe2\x96\x81";
#define SPACE_MARK_LEN 3
/* "▅" (U+2585): how llama.cpp prints the unknown token. */
static const char UNK_TEXT[] = "\xe2\x96\x85";

enum hy_status spm_init(struct spm *t, const struct gguf_ctx *g)
{
    memset(t, 0, sizeof(*t));
    enum hy_status st;
    const char *model = NULL;
    const struct gguf_array *tokens = NULL, *scores = NULL, *types = NULL;
    if ((st = gguf_get_str_or_null(g, "tokenizer.ggml.model", &model))) return st;
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.tokens", GGUF_STRING, &tokens))) return st;
    if (!model || !tokens || tokens->n == 0)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: the file has no vocabulary (tokenizer.ggml.model/tokens)", g->name);
    if (strcmp(model, "llama") != 0)
        return err_set(
            HY_ERR_UNSUPPORTED,
            "%s: tokenizer '%s' is not supported yet; the SentencePiece tokenizer ('llama') is\n"
            "hint: BPE vocabularies (gpt2) arrive with the BPE tokenizer issue",
            g->name, model);
    if (tokens->n > INT32_MAX)
        return err_set(HY_ERR_FORMAT, "%s: %" PRIu64 " tokens is too many", g->name, tokens->n);
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.scores", GGUF_FLOAT32, &scores))) return st;
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.token_type", GGUF_VTYPE_COUNT, &types)))
        return st;
    if (scores && scores->n != tokens->n)
        return err_set(HY_ERR_FORMAT,
                       "%s: tokenizer.ggml.scores has %" PRIu64 " entries for %" PRIu64 " tokens",
                       g->name, scores->n, tokens->n);
    if (types && (types->n != tokens->n || !gguf_vtype_is_int(types->elem_type)))
        return err_set(HY_ERR_FORMAT,
                       "%s: tokenizer.ggml.token_type has %" PRIu64 " %s entries for %" PRIu64
                       " tokens (expected integers)",
                       g->name, types->n, gguf_vtype_name(types->elem_type), tokens->n);
    int64_t bos, eos, unk;
    bool add_bos, add_eos, add_space;
    const char *model_name = NULL;
    if ((st = gguf_get_int_or(g, "tokenizer.ggml.bos_token_id", -1, &bos))) return st;
    if ((st = gguf_get_int_or(g, "tokenizer.ggml.eos_token_id", -1, &eos))) return st;
    if ((st = gguf_get_int_or(g, "tokenizer.ggml.unknown_token_id", -1, &unk))) return st;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", true, &add_bos))) return st;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_eos_token", false, &add_eos))) return st;
    if ((st = gguf_get_str_or_null(g, "general.name", &model_name))) return st;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", true, &add_space))) return st;

    const int32_t n = (int32_t)tokens->n;
    const struct gguf_str *strs = tokens->data;
    t->n_vocab = n;
    /* ids outside the vocabulary (0xFFFFFFFF is common) mean "none" */
    t->bos_id = bos >= 0 && bos < n ? (int32_t)bos : -1;
    t->eos_id = eos >= 0 && eos < n ? (int32_t)eos : -1;
    t->unk_id = unk >= 0 && unk < n ? (int32_t)unk : -1;
    t->add_bos = add_bos;
    t->add_eos = add_eos;
    t->add_space_prefix = add_space;
    arena_init(&t->arena, 256 * 1024);
    t->pieces = mem_xcalloc((size_t)n, sizeof(*t->pieces));
    t->piece_len = mem_xcalloc((size_t)n, sizeof(*t->piece_len));
    t->scores = mem_xcalloc((size_t)n, sizeof(*t->scores));
    t->types = mem_xcalloc((size_t)n, sizeof(*t->types));
    for (int32_t i = 0; i < n; i++) {
        t->pieces[i] = arena_strndup(&t->arena, strs[i].data, (size_t)strs[i].len);
        t->piece_len[i] = (uint32_t)strs[i].len;
        t->scores[i] = scores ? (float)gguf_arr_float(scores, (uint64_t)i) : 0.0f;
        int64_t ty = types ? gguf_arr_int(types, (uint64_t)i) : SPM_TOK_NORMAL;
        t->types[i] = ty >= SPM_TOK_NORMAL && ty <= SPM_TOK_BYTE ? (uint8_t)ty : SPM_TOK_NORMAL;
        if (t->piece_len[i] > t->max_piece_bytes) t->max_piece_bytes = t->piece_len[i];
    }
    /* in reverse so that, as in llama.cpp, the highest id of duplicate pieces wins */
    strmap_init(&t->map, (size_t)n);
    for (int32_t i = n - 1; i >= 0; i--) strmap_put(&t->map, t->pieces[i], i);
    struct vocab_view v = {n, t->pieces, t->piece_len, t->types, &t->map};
    if ((st = vocab_find_eog(g, &v, t->eos_id, &t->eog_ids, &t->n_eog))) {
        spm_free(t);
        return st;
    }
    vocab_specials_init(&t->specials, &v, model_name);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int64_t id = strmap_find(&t->map, name);
        t->byte_ids[b] = id >= 0 && t->types[id] == SPM_TOK_BYTE ? (int32_t)id : -1;
    }
    return HY_OK;
}

void spm_free(struct spm *t)
{
    if (!t) return;
    strmap_free(&t->map);
    arena_free(&t->arena);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->eog_ids);
    vocab_specials_free(&t->specials);
    memset(t, 0, sizeof(*t));
}

int64_t spm_max_tokens(size_t len)
{
    return 3 * (int64_t)len + 1 + SPACE_MARK_LEN;
}

/* ---- the merge loop --------------------------------------------------------- */

struct session {
    const struct spm *t;
    const char *text; /* escaped run */
    struct merge merge;
    char *key; /* scratch for NUL-terminated lookups, max_piece_bytes + 1 */
    int32_t *out;
    int64_t cap, n_out;
};

/* Id of text[off, off + n) as a whole piece, or -1. */
static int64_t lookup(struct session *s, size_t off, size_t n)
{
    if (n > s->t->max_piece_bytes) return -1;
    memcpy(s->key, s->text + off, n);
    s->key[n] = '\0';
    return strmap_find(&s->t->map, s->key);
}

/* Two adjacent symbols may merge when their concatenation is a piece; the
 * higher its score, the earlier. */
static bool pair_priority(void *ctx, uint32_t l_off, uint32_t l_n, uint32_t r_off, uint32_t r_n,
                          double *priority)
{
    (void)r_off;
    struct session *s = ctx;
    int64_t id = lookup(s, l_off, (size_t)l_n + r_n);
    if (id < 0) return false;
    *priority = -(double)s->t->scores[id];
    return true;
}

static bool emit(struct session *s, int32_t id)
{
    if (s->n_out >= s->cap) return false;
    s->out[s->n_out++] = id;
    return true;
}

/* A final symbol: its piece, or its bytes. */
static bool emit_symbol(struct session *s, const struct merge_symbol *sym)
{
    int64_t id = lookup(s, sym->off, sym->n);
    if (id >= 0) return emit(s, (int32_t)id);
    for (size_t i = 0; i < sym->n; i++) {
        int32_t b = s->t->byte_ids[(unsigned char)s->text[sym->off + i]];
        if (b < 0) b = s->t->unk_id;
        if (b >= 0 && !emit(s, b)) return false;
    }
    return true;
}

/* Tokenizes an escaped run text[0..len). */
static bool tokenize_run(struct session *s, size_t len)
{
    const int32_t n_sym = merge_run(&s->merge, s->text, len, pair_priority, s);
    const struct merge_symbol *sym = s->merge.sym;
    for (int32_t i = 0; i >= 0 && i < n_sym; i = sym[i].next)
        if (!emit_symbol(s, &sym[i])) return false;
    return true;
}

enum hy_status spm_tokenize(const struct spm *t, const char *text, size_t len, unsigned flags,
                            int32_t *out, int64_t cap, int64_t *n_out)
{
    *n_out = 0;
    const struct vocab_view v = {t->n_vocab, t->pieces, t->piece_len, t->types, &t->map};
    struct vocab_frag *frags = NULL;
    const size_t n_frags = vocab_partition(&t->specials, &v, text, len,
                                           (flags & SPM_PARSE_SPECIAL) != 0, &frags);
    size_t max_run = 0;
    for (size_t i = 0; i < n_frags; i++)
        if (frags[i].id < 0 && frags[i].len > max_run) max_run = frags[i].len;
    /* escaped run: "▁" prefix + every byte possibly tripled */
    const size_t esc_cap = SPACE_MARK_LEN + 3 * max_run + 1;
    struct session s = {
        .t = t,
        .key = mem_xmalloc(t->max_piece_bytes + 1),
        .out = out,
        .cap = cap,
    };
    merge_init(&s.merge);
    merge_reserve(&s.merge, esc_cap);
    char *esc = mem_xmalloc(esc_cap);
    s.text = esc;
    bool ok = true;
    if ((flags & SPM_ADD_BOS) && t->bos_id >= 0) ok = emit(&s, t->bos_id);
    bool prev_special = true; /* the text's start counts as following a special piece */
    for (size_t f = 0; ok && f < n_frags; f++) {
        if (frags[f].id >= 0) {
            ok = emit(&s, frags[f].id);
            prev_special = true;
            continue;
        }
        size_t n = 0;
        if (t->add_space_prefix && prev_special) {
            memcpy(esc, SPACE_MARK, SPACE_MARK_LEN);
            n = SPACE_MARK_LEN;
        }
        const char *run = text + frags[f].off;
        for (size_t i = 0; i < frags[f].len; i++) {
            if (run[i] == ' ') {
                memcpy(esc + n, SPACE_MARK, SPACE_MARK_LEN);
                n += SPACE_MARK_LEN;
            } else {
                esc[n++] = run[i];
            }
        }
        ok = tokenize_run(&s, n);
        prev_special = false;
    }
    free(frags);
    free(esc);
    merge_free(&s.merge);
    free(s.key);
    if (!ok)
        return err_set(HY_ERR_INVALID_ARG,
                       "tokenizer: output buffer of %" PRId64 " tokens is too small for %zu bytes"
                       " of text",
                       cap, len);
    *n_out = s.n_out;
    return HY_OK;
}

/* ---- detokenizing ---------------------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static size_t put(char *buf, size_t cap, size_t at, const char *src, size_t n)
{
    if (at < cap) memcpy(buf + at, src, HY_MIN(n, cap - at));
    return at + n;
}

size_t spm_piece(const struct spm *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab) return 0;
    const char *p = t->pieces[id];
    const size_t n = t->piece_len[id];
    switch (t->types[id]) {
    case SPM_TOK_CONTROL:
    case SPM_TOK_UNUSED:
        return 0;
    case SPM_TOK_UNKNOWN:
        return put(buf, cap, 0, UNK_TEXT, sizeof(UNK_TEXT) - 1);
    case SPM_TOK_USER_DEFINED:
        return put(buf, cap, 0, p, n);
    case SPM_TOK_BYTE:
        if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' &&
            hex_digit(p[3]) >= 0 && hex_digit(p[4]) >= 0) {
            char b = (char)(hex_digit(p[3]) * 16 + hex_digit(p[4]));
            return put(buf, cap, 0, &b, 1);
        }
        break;
    default:
        break;
    }
    size_t at = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= SPACE_MARK_LEN && memcmp(p + i, SPACE_MARK, SPACE_MARK_LEN) == 0) {
            at = put(buf, cap, at, " ", 1);
            i += SPACE_MARK_LEN;
        } else {
            at = put(buf, cap, at, p + i, 1);
            i++;
        }
    }
    return at;
}

void spm_stream_init(struct spm_stream *s, const struct spm *t)
{
    memset(s, 0, sizeof(*s));
    s->spm = t;
    s->cap = t->max_piece_bytes + sizeof(UNK_TEXT) + sizeof(s->pend) + 1;
    s->buf = mem_xmalloc(s->cap);
    s->at_start = true;
}

void spm_stream_free(struct spm_stream *s)
{
    if (!s) return;
    free(s->buf);
    s->buf = NULL;
}

const char *spm_stream_push(struct spm_stream *s, int32_t id, size_t *len)
{
    size_t n = (size_t)s->n_pend;
    memcpy(s->buf, s->pend, n);
    size_t piece_cap = s->cap - n;
    size_t pn = spm_piece(s->spm, id, s->buf + n, piece_cap);
    HY_ASSERT(pn <= piece_cap);
    if (s->at_start && pn > 0) {
        if (s->spm->add_space_prefix && s->buf[n] == ' ') {
            memmove(s->buf + n, s->buf + n + 1, pn - 1);
            pn--;
        }
        s->at_start = false;
    }
    n += pn;
    const size_t i = unicode_utf8_ready(s->buf, n);
    s->n_pend = (int)(n - i);
    HY_ASSERT(s->n_pend <= 3);
    memcpy(s->pend, s->buf + i, (size_t)s->n_pend);
    *len = i;
    return s->buf;
}

const char *spm_stream_flush(struct spm_stream *s, size_t *len)
{
    memcpy(s->buf, s->pend, (size_t)s->n_pend);
    *len = (size_t)s->n_pend;
    s->n_pend = 0;
    s->at_start = true;
    return s->buf;
}
