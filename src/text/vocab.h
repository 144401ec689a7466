/*
 * What the SPM and BPE tokenizers share about a vocabulary, done the way
 * llama.cpp does it (llama_vocab::impl) so that ids agree:
 *
 * Special tokens in text. Control, user-defined and unknown tokens are cut
 * out of the text before the tokenizer proper sees it, and become their ids
 * directly. User-defined tokens always; control and unknown tokens only with
 * parse_special. The order is llama.cpp's, which is not "longest match at
 * each position": the tokens are taken longest first (ties: lower id first),
 * and each one claims all its non-overlapping occurrences, left to right,
 * inside the text that earlier tokens left over. So with specials "bcd" and
 * "ab", "abcd" gives "a" + <bcd>. A token with VOCAB_LSTRIP swallows the
 * white space before it, one with VOCAB_RSTRIP the white space after it
 * (llama.cpp sets RSTRIP on the specials of Phi-3 models, by their name).
 * To stay fast with vocabularies of thousands of specials, one pass over
 * the text with a byte trie first finds which specials occur at all; only
 * those get their own pass.
 *
 * End of generation. Besides eos, llama.cpp stops on: the eot, eom,
 * fim_pad, fim_rep and fim_sep tokens (tokenizer.ggml.*_token_id, or when a
 * key is absent, a token whose text is a known marker such as <|eot_id|> or
 * <|file_sep|>: the first marker of llama.cpp's list that the vocabulary
 * has), and every token whose text is one of <|eot_id|> <|im_end|> <|end|>
 * <|return|> <|call|> <end_of_turn> <|endoftext|> <|eom_id|> <EOT> _<EOT>
 * <|end_of_text|> <end_of_utterance>. Tokens found by their text are made
 * CONTROL, as llama.cpp does (so they print nothing and are matched in text
 * only with parse_special). gpt-oss quirks included: <|channel|>
 * <|message|> <|start|> <|constrain|> become USER_DEFINED, and <|end|> is
 * no end of generation when <|return|> and <|call|> are.
 */
#ifndef HY_TEXT_VOCAB_H
#define HY_TEXT_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "core/strmap.h"
#include "gguf/gguf.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type) */
enum vocab_token_type {
    VOCAB_TOK_UNDEFINED = 0,
    VOCAB_TOK_NORMAL = 1,
    VOCAB_TOK_UNKNOWN = 2,
    VOCAB_TOK_CONTROL = 3,
    VOCAB_TOK_USER_DEFINED = 4,
    VOCAB_TOK_UNUSED = 5,
    VOCAB_TOK_BYTE = 6,
};

#define VOCAB_LSTRIP 1u /* white space before the token is dropped */
#define VOCAB_RSTRIP 2u /* white space after the token is dropped */

/* A tokenizer's token arrays, borrowed for the calls below. */
struct vocab_view {
    int32_t n;
    const char *const *pieces; /* [n] NUL-terminated */
    const uint32_t *piece_len; /* [n] bytes */
    uint8_t *types;            /* [n] enum vocab_token_type; vocab_find_eog may change some */
    const struct strmap *map;  /* piece -> id */
};

struct vocab_trie_node;

struct vocab_specials {
    int32_t n;
    int32_t *ids;   /* owned [n]: control, user-defined, unknown tokens, longest first */
    uint8_t *strip; /* owned [n]: VOCAB_LSTRIP / VOCAB_RSTRIP of ids[i] */
    int32_t *node_of;              /* owned [n]: the trie node where the piece of ids[i] ends */
    struct vocab_trie_node *nodes; /* owned: byte trie of the pieces of ids[] */
    int32_t n_nodes;
    int32_t root[256]; /* child of the root per first byte, -1 when none */
};

/* A piece of tokenizer input: a special token, or a run of raw text. */
struct vocab_frag {
    int32_t id; /* the special token, or -1 for text[off, off + len) */
    size_t off, len;
};

/* Collects the special tokens of v (non-empty pieces of type control,
 * user-defined or unknown); model_name is general.name (may be NULL), which
 * decides llama.cpp's Phi-3 RSTRIP rule. Call after vocab_find_eog, which may
 * change types. */
void vocab_specials_init(struct vocab_specials *s, const struct vocab_view *v,
                         const char *model_name);
void vocab_specials_free(struct vocab_specials *s);

/* Splits text[0..len) into special tokens and raw runs (see the header
 * comment). *out gets a malloc'd array (free() it) of the returned count of
 * fragments, in text order; raw runs are never empty. No allocation failure
 * is reported: bookkeeping allocations abort. */
size_t vocab_partition(const struct vocab_specials *s, const struct vocab_view *v, const char *text,
                       size_t len, bool parse_special, struct vocab_frag **out);

/* Finds the end-of-generation tokens of v (see the header comment) and
 * adjusts the types of the tokens found by their text. eos_id is the EOS
 * token or -1. *eog gets an owned array of *n_eog ids, ascending.
 * Errors: HY_ERR_FORMAT when a tokenizer.ggml.*_token_id key is not an
 * integer (the message names it). */
HY_MUST_CHECK enum hy_status vocab_find_eog(const struct gguf_ctx *g, const struct vocab_view *v,
                                            int32_t eos_id, int32_t **eog, int32_t *n_eog);

/* True when id is in eog[0..n_eog) (ascending). */
bool vocab_is_eog(const int32_t *eog, int32_t n_eog, int32_t id);

#endif
