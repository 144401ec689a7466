/*
 * One interface over the model's tokenizer, whichever kind its GGUF
 * metadata names (tokenizer.ggml.model):
 *   "llama" -> SentencePiece (src/text/spm.h)
 *   "gpt2"  -> byte-level BPE (src/text/bpe.h)
 * Anything else is refused with HY_ERR_UNSUPPORTED naming the kind.
 *
 * What the caller gets: text -> ids (with the BOS/EOS the vocabulary asks
 * for, and special-token text parsed or not), id -> bytes, a streaming
 * detokenizer that only ever returns whole UTF-8 characters, and the ids
 * that matter for generation (bos, eos, the end-of-generation set).
 *
 * Not here: chat templates; llama.cpp's whole-text detokenizer options
 * (clean_up_tokenization_spaces, rendering control tokens).
 */
#ifndef HY_TEXT_TOKENIZER_H
#define HY_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "gguf/gguf.h"
#include "text/bpe.h"
#include "text/spm.h"

enum tokenizer_kind {
    TOKENIZER_SPM,
    TOKENIZER_BPE,
};

/* Flags of tokenizer_tokenize. */
#define TOKENIZER_ADD_BOS       1u /* BOS first, when the vocabulary says so (add_bos) */
#define TOKENIZER_ADD_EOS       2u /* EOS last, when the vocabulary says so (add_eos) */
#define TOKENIZER_ADD_SPECIAL   (TOKENIZER_ADD_BOS | TOKENIZER_ADD_EOS)
#define TOKENIZER_PARSE_SPECIAL 4u /* control-token text ("<|im_end|>", "<s>") becomes that token */

/* Read-only after tokenizer_init; tokenizing and tokenizer_piece may run on
 * several threads at once. */
struct tokenizer {
    enum tokenizer_kind kind;
    struct spm spm; /* kind == TOKENIZER_SPM */
    struct bpe bpe; /* kind == TOKENIZER_BPE */
    int32_t n_vocab;
    int32_t bos_id, eos_id; /* -1 when none */
    bool add_bos, add_eos;  /* what the vocabulary asks for (tokenizer.ggml.add_*_token) */
    const int32_t *eog_ids; /* borrowed from spm/bpe: [n_eog] ascending */
    int32_t n_eog;
};

/* Reads the tokenizer of a parsed GGUF (which need not outlive it).
 * Errors: HY_ERR_UNSUPPORTED (no vocabulary, an unknown tokenizer.ggml.model
 * or pre-tokenizer, named), HY_ERR_FORMAT (malformed vocabulary metadata,
 * naming the key). */
HY_MUST_CHECK enum hy_status tokenizer_init(struct tokenizer *t, const struct gguf_ctx *g);
void tokenizer_free(struct tokenizer *t);

/* Most tokens that len bytes of text can give, specials included. */
int64_t tokenizer_max_tokens(const struct tokenizer *t, size_t len);

/* Tokenizes text[0..len) (any bytes) into out[0..*n_out). Errors:
 * HY_ERR_INVALID_ARG when cap is too small (tokenizer_max_tokens always
 * suffices). */
HY_MUST_CHECK enum hy_status tokenizer_tokenize(const struct tokenizer *t, const char *text,
                                                size_t len, unsigned flags, int32_t *out,
                                                int64_t cap, int64_t *n_out);

/* The bytes token id stands for in output (control tokens: none), written
 * to buf (up to cap bytes, no NUL); returns the full length, which may
 * exceed cap. Not necessarily whole UTF-8 characters. 0 for an id outside
 * the vocabulary. */
size_t tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap);

/* The token's string as the vocabulary stores it ("<|im_end|>", "Ġthe",
 * "▁the"), for diagnostics; NULL for an id outside the vocabulary. */
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id);

/* End of generation: eos, eot, <|im_end|>, ... (src/text/vocab.h). */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t id);

/* Streaming detokenizer: push ids, get back text that ends on a character
 * boundary. For SPM the space the tokenizer put before the text is dropped
 * from the first piece. */
struct tokenizer_stream {
    const struct tokenizer *tok; /* borrowed; must outlive the stream */
    char *buf;                   /* owned, cap bytes: the text returned by the last push */
    size_t cap;
    unsigned char pend[4]; /* an unfinished UTF-8 sequence held back */
    int n_pend;
    bool at_start; /* nothing written yet */
};

void tokenizer_stream_init(struct tokenizer_stream *s, const struct tokenizer *t);
void tokenizer_stream_free(struct tokenizer_stream *s);
/* Appends id's piece; returns the text that is complete now (*len bytes,
 * possibly 0), valid until the next call on s. */
const char *tokenizer_stream_push(struct tokenizer_stream *s, int32_t id, size_t *len);
/* Returns what is held back (an unfinished sequence at the end of the
 * stream, written as is) and resets the stream. */
const char *tokenizer_stream_flush(struct tokenizer_stream *s, size_t *len);

#endif
