/*
 * Pre-tokenizers of byte-level BPE vocabularies: the rules that cut text
 * into words before BPE merges run inside each word, selected by
 * tokenizer.ggml.pre. Each gives the words llama.cpp gives.
 *
 * llama.cpp describes a pre-tokenizer as a list of regexes applied in turn:
 * each regex cuts every piece left by the previous one into its matches and
 * the runs between them (so a later regex only refines). The regexes use
 * Unicode classes (\p{L}, \p{N}, \p{P}, \s) and lookahead. Here every regex
 * is a hand-written matcher over code points that answers "how long is the
 * match starting at this position" with the regex's own semantics (ordered
 * alternation, greedy quantifiers with backtracking, lookahead at the end of
 * the piece), and one search loop does what a regex iterator does: the
 * leftmost match, then on after it. No regex library, and linear time.
 *
 * Where llama.cpp runs a regex through std::regex rather than a hand-written
 * splitter, its semantics are those of that path, and they are what the
 * matchers reproduce: classes test the Unicode properties of
 * src/text/unicode.h, \s is White_Space, and a literal character class
 * ([一-龥], the DeepSeek ranges) never matches non-ASCII white space (llama.cpp
 * rewrites those to U+000B before matching). Case-insensitive contractions
 * fold ASCII only, which is exact: no other code point folds to s, t, r, e,
 * v, m, l or d.
 *
 * Implemented (canonical kind: the tokenizer.ggml.pre names that select it):
 *   default          "default", or no pre at all (llama.cpp warns: degraded)
 *   gpt2             gpt-2, mpt, olmo, jais, phi-2, roberta-bpe, jina-*, ...
 *   llama3           llama3, llama-v3, llama-bpe, falcon3, dbrx, smaug-bpe, glm4, ...
 *   qwen2            qwen2, deepseek-r1-qwen, stablelm2, hunyuan, megrez, grok-2, bailingmoe, ...
 *   seed-coder       seed-coder
 *   deepseek-llm     deepseek-llm
 *   deepseek-coder   deepseek-coder
 *   falcon           falcon
 *   starcoder        starcoder, refact, command-r, smollm, codeshell, exaone, minerva-7b
 *   deepseek-v3      deepseek-v3, hunyuan-dense
 *   gpt-4o           gpt-4o, llama4, minimax-m2 (also gpt-oss files, which say gpt-4o)
 *   tekken           tekken
 * Not implemented (pretok_find gives NULL): the pre-tokenizers of Chameleon,
 * Kimi K2, BLOOM/Poro/GPT3-Finnish, Viking, SuperBPE, AFMoE.
 */
#ifndef HY_TEXT_PRETOK_H
#define HY_TEXT_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pretok_kind {
    PRETOK_DEFAULT,
    PRETOK_GPT2,
    PRETOK_LLAMA3,
    PRETOK_QWEN2,
    PRETOK_SEED_CODER,
    PRETOK_DEEPSEEK_LLM,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_FALCON,
    PRETOK_STARCODER,
    PRETOK_DEEPSEEK3,
    PRETOK_GPT4O,
    PRETOK_TEKKEN,
    PRETOK_KIND_COUNT
};

/* What a tokenizer.ggml.pre name selects, including the vocabulary defaults
 * llama.cpp ties to it. */
struct pretok_info {
    const char *name; /* the tokenizer.ggml.pre value */
    enum pretok_kind kind;
    bool ignore_merges; /* a word that is a whole token is that token, merges or not */
    bool add_bos;       /* default of tokenizer.ggml.add_bos_token */
    bool no_bos;        /* no BOS token unless tokenizer.ggml.bos_token_id names one */
};

/* The entry for tokenizer.ggml.pre = pre (NULL or "" mean "default");
 * NULL when hypura does not know it. */
const struct pretok_info *pretok_find(const char *pre);

/* Canonical name of a kind ("gpt2", "qwen2", ...). */
const char *pretok_kind_name(enum pretok_kind kind);

/* Cuts the code points cp[0..n), whose unicode_flags are fl[0..n), into
 * words: writes the end offset (in code points) of each word to ends and
 * returns the number of words (0 when n is 0). ends and tmp must hold n
 * entries each. Never fails; any code points are accepted. */
size_t pretok_split(enum pretok_kind kind, const uint32_t *cp, const uint16_t *fl, size_t n,
                    uint32_t *ends, uint32_t *tmp);

#endif
