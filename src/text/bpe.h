/*
 * Byte-level BPE tokenizer (GPT-2 style) for GGUF vocabularies with
 * tokenizer.ggml.model = "gpt2": GPT-2, Llama 3, Qwen, DeepSeek, Falcon,
 * StarCoder, MPT, ... It gives the ids llama.cpp gives.
 *
 * Vocabulary (from GGUF metadata): tokenizer.ggml.tokens (pieces in the
 * byte-level alphabet, see src/text/unicode.h: ' ' is "Ġ"), .merges ("a b":
 * the pair a, b merges into ab; earlier entries first), .token_type (all
 * normal when absent), .pre (the pre-tokenizer, src/text/pretok.h),
 * bos/eos_token_id (llama.cpp's default for both is 11 when a key is absent
 * or outside the vocabulary, and no BOS for GLM-4), add_bos_token (default
 * false, true for the Llama 3 family), add_eos_token (default false).
 *
 * Tokenizing text:
 *   1. Special tokens are cut out and become their ids (src/text/vocab.h):
 *      user-defined ones always, control ones with BPE_PARSE_SPECIAL.
 *   2. Each remaining run is decoded to code points (llama.cpp's lenient
 *      UTF-8 decoding: a stray byte becomes U+FFFD) and cut into words by
 *      the pre-tokenizer.
 *   3. Each word's UTF-8 bytes are mapped to the byte-level alphabet, one
 *      character per byte. With ignore_merges (Llama 3) a word that is a
 *      token is that token. Otherwise, starting from single characters, the
 *      adjacent pair with the lowest merge rank is merged (ties: leftmost)
 *      until no pair has a rank.
 *   4. Every final symbol is its token; a symbol that is no token (a broken
 *      vocabulary) becomes the tokens of its single bytes that exist.
 *
 * Detokenizing: a normal token gives the bytes its characters stand for
 * (a character outside the byte alphabet is copied as UTF-8), a
 * user-defined token its text as is, control, unknown and other tokens
 * nothing. The bytes of one token need not be whole UTF-8 characters; see
 * tokenizer_stream in src/text/tokenizer.h for output. llama.cpp's
 * clean_up_tokenization_spaces (a whole-text rewrite of " ," and such) is
 * not applied: streamed output never had it.
 *
 * Cost: linear in the text apart from the merges inside a word (a heap:
 * n log n in the word's length); 100 KB of mixed text takes a few ms. Each
 * token's output bytes are decoded once at load.
 *
 * Rejected: merging on token-id pairs through an (id, id) -> (rank, id)
 * table. It is faster, but the merge loop here works on strings, as
 * llama.cpp's does, so that a vocabulary whose merge results are not all
 * tokens still gives llama.cpp's ids (step 4).
 */
#ifndef HY_TEXT_BPE_H
#define HY_TEXT_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "core/mem.h"
#include "core/strmap.h"
#include "gguf/gguf.h"
#include "text/pretok.h"
#include "text/vocab.h"

/* Flags of bpe_tokenize. */
#define BPE_ADD_BOS       1u /* put the BOS token first (when the vocabulary has one) */
#define BPE_ADD_EOS       2u /* put the EOS token last (when the vocabulary has one) */
#define BPE_PARSE_SPECIAL 4u /* control-token text in the input ("<|im_end|>") becomes that token */

struct bpe {
    int32_t n_vocab;
    const char **pieces; /* [n_vocab], arena-owned, NUL-terminated, byte-level alphabet */
    uint32_t *piece_len; /* owned, [n_vocab] bytes */
    uint8_t *types;      /* owned, [n_vocab] enum vocab_token_type */
    const char **text;   /* [n_vocab], arena-owned: the bytes a token detokenizes to */
    uint32_t *text_len;  /* owned, [n_vocab] */
    struct strmap map;   /* piece -> id; keys borrowed from the arena; last duplicate wins */
    struct strmap ranks; /* merge "a b" -> rank; keys in the arena; first duplicate wins */
    const struct pretok_info *pre; /* static */
    int32_t bos_id, eos_id;        /* -1 when none */
    bool add_bos, add_eos;
    int32_t *eog_ids; /* owned, [n_eog] ascending: end-of-generation tokens */
    int32_t n_eog;
    struct vocab_specials specials;
    size_t max_text_bytes; /* longest text[] */
    struct arena arena;    /* owns the strings */
};

/* Reads the vocabulary from a parsed GGUF (which need not outlive it).
 * Errors: HY_ERR_UNSUPPORTED (no vocabulary, tokenizer.ggml.model is not
 * "gpt2", or a pre-tokenizer hypura does not implement, named),
 * HY_ERR_FORMAT (merges missing, arrays of the wrong type or length, naming
 * the key). */
HY_MUST_CHECK enum hy_status bpe_init(struct bpe *t, const struct gguf_ctx *g);
void bpe_free(struct bpe *t);

/* Most tokens that len bytes of text can give, BOS and EOS included (a byte
 * can become 3 bytes of U+FFFD, each 2 single-byte fallbacks). */
int64_t bpe_max_tokens(size_t len);

/* Tokenizes text[0..len) (any bytes; need not be NUL-terminated) into
 * out[0..*n_out). Thread-safe: t is only read. Errors: HY_ERR_INVALID_ARG
 * when cap < the tokens needed (cap >= bpe_max_tokens(len) always suffices). */
HY_MUST_CHECK enum hy_status bpe_tokenize(const struct bpe *t, const char *text, size_t len,
                                          unsigned flags, int32_t *out, int64_t cap,
                                          int64_t *n_out);

/* The bytes token id detokenizes to (see the header comment) written to buf
 * (up to cap bytes, no NUL); returns the full length, which may exceed cap.
 * An id outside the vocabulary gives 0. */
size_t bpe_piece(const struct bpe *t, int32_t id, char *buf, size_t cap);

#endif
