#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "text/unicode.h"
#include "text/vocab.h"

enum hy_status tokenizer_init(struct tokenizer *t, const struct gguf_ctx *g)
{
    memset(t, 0, sizeof(*t));
    const char *model = NULL;
    enum hy_status st = gguf_get_str_or_null(g, "tokenizer.ggml.model", &model);
    if (st) return st;
    if (!model)
        return err_set(HY_ERR_UNSUPPORTED,
                       "%s: the file has no vocabulary (tokenizer.ggml.model is missing)", g->name);
    if (strcmp(model, "llama") == 0) {
        if ((st = spm_init(&t->spm, g))) return st;
        t->kind = TOKENIZER_SPM;
        t->n_vocab = t->spm.n_vocab;
        t->bos_id = t->spm.bos_id;
        t->eos_id = t->spm.eos_id;
        t->add_bos = t->spm.add_bos;
        t->add_eos = t->spm.add_eos;
        t->eog_ids = t->spm.eog_ids;
        t->n_eog = t->spm.n_eog;
        return HY_OK;
    }
    if (strcmp(model, "gpt2") == 0) {
        if ((st = bpe_init(&t->bpe, g))) return st;
        t->kind = TOKENIZER_BPE;
        t->n_vocab = t->bpe.n_vocab;
        t->bos_id = t->bpe.bos_id;
        t->eos_id = t->bpe.eos_id;
        t->add_bos = t->bpe.add_bos;
        t->add_eos = t->bpe.add_eos;
        t->eog_ids = t->bpe.eog_ids;
        t->n_eog = t->bpe.n_eog;
        return HY_OK;
    }
    return err_set(HY_ERR_UNSUPPORTED,
                   "%s: tokenizer '%s' (tokenizer.ggml.model) is not supported\n"
                   "hint: hypura reads SentencePiece ('llama') and byte-level BPE ('gpt2') "
                   "vocabularies",
                   g->name, model);
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t) return;
    if (t->kind == TOKENIZER_SPM)
        spm_free(&t->spm);
    else
        bpe_free(&t->bpe);
    memset(t, 0, sizeof(*t));
}

int64_t tokenizer_max_tokens(const struct tokenizer *t, size_t len)
{
    /* + 1: the EOS that spm_tokenize leaves to us */
    return t->kind == TOKENIZER_SPM ? spm_max_tokens(len) + 1 : bpe_max_tokens(len);
}

enum hy_status tokenizer_tokenize(const struct tokenizer *t, const char *text, size_t len,
                                  unsigned flags, int32_t *out, int64_t cap, int64_t *n_out)
{
    const bool bos = (flags & TOKENIZER_ADD_BOS) && t->add_bos;
    const bool eos = (flags & TOKENIZER_ADD_EOS) && t->add_eos;
    const bool parse = (flags & TOKENIZER_PARSE_SPECIAL) != 0;
    if (t->kind == TOKENIZER_BPE)
        return bpe_tokenize(&t->bpe, text, len,
                            (bos ? BPE_ADD_BOS : 0) | (eos ? BPE_ADD_EOS : 0) |
                                (parse ? BPE_PARSE_SPECIAL : 0),
                            out, cap, n_out);
    enum hy_status st =
        spm_tokenize(&t->spm, text, len, (bos ? SPM_ADD_BOS : 0) | (parse ? SPM_PARSE_SPECIAL : 0),
                     out, cap, n_out);
    if (st || !eos || t->eos_id < 0) return st;
    if (*n_out >= cap)
        return err_set(HY_ERR_INVALID_ARG,
                       "tokenizer: output buffer of %lld tokens is too small for %zu bytes of text",
                       (long long)cap, len);
    out[(*n_out)++] = t->eos_id;
    return HY_OK;
}

size_t tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap)
{
    return t->kind == TOKENIZER_SPM ? spm_piece(&t->spm, id, buf, cap)
                                    : bpe_piece(&t->bpe, id, buf, cap);
}

const char *tokenizer_token_text(const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    return t->kind == TOKENIZER_SPM ? t->spm.pieces[id] : t->bpe.pieces[id];
}

bool tokenizer_is_eog(const struct tokenizer *t, int32_t id)
{
    return vocab_is_eog(t->eog_ids, t->n_eog, id);
}

/* ---- streaming ------------------------------------------------------------- */

void tokenizer_stream_init(struct tokenizer_stream *s, const struct tokenizer *t)
{
    memset(s, 0, sizeof(*s));
    s->tok = t;
    /* the longest piece an SPM token gives is its piece (▁ -> ' ' only
     * shrinks) or "▅"; a BPE token its decoded text */
    size_t piece_max =
        t->kind == TOKENIZER_SPM ? t->spm.max_piece_bytes + 3 : t->bpe.max_text_bytes;
    s->cap = piece_max + sizeof(s->pend) + 1;
    s->buf = mem_xmalloc(s->cap);
    s->at_start = true;
}

void tokenizer_stream_free(struct tokenizer_stream *s)
{
    if (!s) return;
    free(s->buf);
    s->buf = NULL;
}

const char *tokenizer_stream_push(struct tokenizer_stream *s, int32_t id, size_t *len)
{
    size_t n = (size_t)s->n_pend;
    memcpy(s->buf, s->pend, n);
    const size_t piece_cap = s->cap - n;
    size_t pn = tokenizer_piece(s->tok, id, s->buf + n, piece_cap);
    HY_ASSERT(pn <= piece_cap);
    if (s->at_start && pn > 0) {
        if (s->tok->kind == TOKENIZER_SPM && s->tok->spm.add_space_prefix && s->buf[n] == ' ') {
            memmove(s->buf + n, s->buf + n + 1, pn - 1);
            pn--;
        }
        s->at_start = false;
    }
    n += pn;
    const size_t ready = unicode_utf8_ready(s->buf, n);
    s->n_pend = (int)(n - ready);
    HY_ASSERT(s->n_pend <= 3);
    memcpy(s->pend, s->buf + ready, (size_t)s->n_pend);
    *len = ready;
    return s->buf;
}

const char *tokenizer_stream_flush(struct tokenizer_stream *s, size_t *len)
{
    memcpy(s->buf, s->pend, (size_t)s->n_pend);
    *len = (size_t)s->n_pend;
    s->n_pend = 0;
    s->at_start = true;
    return s->buf;
}
