/*
 * The built-in vocabulary of synthetic models: SentencePiece-style pieces
 * ("▁" marks a word start) with scores and byte fallback, so that synthetic
 * models tokenize and detokenize any text with a stock SPM tokenizer.
 *
 * Layout: 0 <unk>, 1 <s>, 2 </s>, 3..258 the byte tokens <0x00>..<0xFF>, then
 * "▁", the printable ASCII characters, then word pieces. Every multi-character
 * piece is "▁" followed by a prefix of a word, and every prefix of a piece is
 * itself a piece, so SPM's pairwise merging always reaches the longest piece
 * for each word whatever the merge order. Pieces come from a list of common
 * English words first, then from all lowercase letter strings in order of
 * length, until the requested size is reached. Scores decrease with the id.
 */
#ifndef HY_MODEL_SYNTH_VOCAB_H
#define HY_MODEL_SYNTH_VOCAB_H

#include <stdint.h>

#include "core/base.h"

#define SYNTH_VOCAB_MIN 354 /* specials + bytes + "▁" + printable ASCII */

/* llama.cpp's token types. */
enum synth_token_type {
    SYNTH_TOK_NORMAL = 1,
    SYNTH_TOK_UNKNOWN = 2,
    SYNTH_TOK_CONTROL = 3,
    SYNTH_TOK_BYTE = 6,
};

struct synth_vocab {
    int64_t n;
    char **tokens;  /* owned, n NUL-terminated UTF-8 strings */
    float *scores;  /* owned, n */
    int32_t *types; /* owned, n (enum synth_token_type) */
};

/* Builds a vocabulary of exactly n tokens. HY_ERR_INVALID_ARG when n is below
 * SYNTH_VOCAB_MIN or above what the generator can produce (2^24). */
HY_MUST_CHECK enum hy_status synth_vocab_init(struct synth_vocab *v, int64_t n);
void synth_vocab_free(struct synth_vocab *v);

#endif
