/*
 * SentencePiece (BPE-by-score) tokenizer for GGUF vocabularies with
 * tokenizer.ggml.model = "llama" (Llama 1/2, Mistral, Mixtral, TinyLlama,
 * hypura synth models), giving the ids llama.cpp gives.
 *
 * Vocabulary (from GGUF metadata): tokenizer.ggml.tokens (pieces, "▁" =
 * U+2581 marks a space), .scores (merge priority; 0 when absent),
 * .token_type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
 * 6 byte; all normal when absent), bos/eos/unknown_token_id,
 * .add_bos_token (default true) and .add_space_prefix (default true).
 *
 * Tokenizing text:
 *   1. Special pieces are cut out first and become their ids directly:
 *      user-defined tokens always, control and unknown tokens only with
 *      SPM_PARSE_SPECIAL (a prompt containing "<s>"), in llama.cpp's order
 *      (longest piece first over the whole text; see src/text/vocab.h).
 *   2. Each remaining run of text gets a leading space when it starts the
 *      text or follows a special piece (add_space_prefix), and every ' '
 *      becomes "▁".
 *   3. The run is split into UTF-8 characters. Repeatedly, of all adjacent
 *      pairs whose concatenation is a piece of the vocabulary, the one with
 *      the highest score is merged (ties: the leftmost); a pair is stale
 *      once either side has been merged into something else.
 *   4. Every final symbol is its piece's id, or when the vocabulary lacks it
 *      (a character never seen in training), its UTF-8 bytes as the byte
 *      tokens <0xXX> (byte fallback), or the unknown token without them.
 *
 * Detokenizing: a normal piece with "▁" turned back into ' ', a byte token
 * as its byte, a user-defined token as its text, control and unused tokens
 * as nothing, the unknown token as "▅". A multi-byte character may be
 * spread over several byte tokens, so streamed output goes through struct
 * spm_stream, which holds back an incomplete UTF-8 sequence until its last
 * byte arrives (unicode_utf8_ready) and never writes half a character. The
 * leading space that step 2 added is dropped from the first piece, as
 * SentencePiece's decoder does.
 *
 * End of generation: eos plus the tokens llama.cpp also stops on
 * (src/text/vocab.h), in eog_ids.
 *
 * Not here: BPE vocabularies (src/text/bpe.h); one interface over both is
 * src/text/tokenizer.h.
 */
#ifndef HY_TEXT_SPM_H
#define HY_TEXT_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "core/mem.h"
#include "core/strmap.h"
#include "gguf/gguf.h"
#include "text/vocab.h"

/* enum vocab_token_type under this module's names */
enum spm_token_type {
    SPM_TOK_NORMAL = VOCAB_TOK_NORMAL,
    SPM_TOK_UNKNOWN = VOCAB_TOK_UNKNOWN,
    SPM_TOK_CONTROL = VOCAB_TOK_CONTROL,
    SPM_TOK_USER_DEFINED = VOCAB_TOK_USER_DEFINED,
    SPM_TOK_UNUSED = VOCAB_TOK_UNUSED,
    SPM_TOK_BYTE = VOCAB_TOK_BYTE,
};

/* Flags of spm_tokenize. */
#define SPM_ADD_BOS       1u /* put the BOS token first (when the vocabulary has one) */
#define SPM_PARSE_SPECIAL 2u /* control-token text in the input ("<s>") becomes that token */

struct spm {
    int32_t n_vocab;
    const char **pieces; /* [n_vocab], arena-owned, NUL-terminated */
    uint32_t *piece_len; /* owned, [n_vocab] bytes */
    float *scores;       /* owned, [n_vocab] */
    uint8_t *types;      /* owned, [n_vocab] enum spm_token_type */
    struct strmap
        map; /* piece → id; keys borrowed from the arena; the last of duplicate pieces wins */
    int32_t byte_ids[256];          /* id of <0xXX>, -1 when absent */
    int32_t bos_id, eos_id, unk_id; /* -1 when absent */
    bool add_bos;                   /* tokenizer.ggml.add_bos_token, default true */
    bool add_eos;                   /* tokenizer.ggml.add_eos_token, default false */
    bool add_space_prefix;          /* tokenizer.ggml.add_space_prefix, default true */
    int32_t *eog_ids;               /* owned, [n_eog] ascending: end-of-generation tokens */
    int32_t n_eog;
    struct vocab_specials specials; /* pieces matched whole before tokenizing */
    size_t max_piece_bytes;
    struct arena arena; /* owns the piece strings */
};

/* Reads the vocabulary from a parsed GGUF (which need not outlive it).
 * Errors: HY_ERR_UNSUPPORTED (no vocabulary, or tokenizer.ggml.model is not
 * "llama"), HY_ERR_FORMAT (arrays of the wrong type or length, naming the
 * key). */
HY_MUST_CHECK enum hy_status spm_init(struct spm *t, const struct gguf_ctx *g);
void spm_free(struct spm *t);

/* Most tokens that len bytes of text can give (byte fallback of a space
 * turned into "▁" is 3 tokens per byte), BOS and prefix included. */
int64_t spm_max_tokens(size_t len);

/* Tokenizes text[0..len) (any bytes; need not be NUL-terminated) into
 * out[0..*n_out). Errors: HY_ERR_INVALID_ARG when cap < the tokens needed
 * (cap >= spm_max_tokens(len) always suffices). */
HY_MUST_CHECK enum hy_status spm_tokenize(const struct spm *t, const char *text, size_t len,
                                          unsigned flags, int32_t *out, int64_t cap,
                                          int64_t *n_out);

/* The bytes token id stands for (see the header comment) written to buf
 * (up to cap bytes, no NUL); returns the full length, which may exceed
 * cap. An id outside the vocabulary gives 0. */
size_t spm_piece(const struct spm *t, int32_t id, char *buf, size_t cap);

/* Streaming detokenizer: push token ids, get back text that ends on a
 * character boundary. */
struct spm_stream {
    const struct spm *spm; /* borrowed */
    char *buf;             /* owned, cap bytes: the text returned by the last push */
    size_t cap;
    unsigned char pend[4]; /* bytes of an incomplete UTF-8 sequence */
    int n_pend;
    bool at_start; /* nothing written yet: strip the prefix space */
};

void spm_stream_init(struct spm_stream *s, const struct spm *t);
void spm_stream_free(struct spm_stream *s);
/* Appends id's piece; returns the text that is complete now (*len bytes,
 * possibly 0), valid until the next call. */
const char *spm_stream_push(struct spm_stream *s, int32_t id, size_t *len);
/* Returns what is held back (an incomplete sequence at the end of the
 * stream, written as is) and resets the stream. */
const char *spm_stream_flush(struct spm_stream *s, size_t *len);

#endif
