/*
 * The regexes, as llama.cpp lists them per pre-tokenizer (src/llama-vocab.cpp,
 * llm_tokenizer_bpe), each followed by the matcher that implements it:
 *
 *   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 *           -> match_gpt2
 *   llama3  (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
 *           |[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
 *           |\s*[\r\n]+|\s+(?!\S)|\s+                          -> match_llama3
 *   qwen2   the same with \p{N} for \p{N}{1,3}                  -> match_qwen2
 *           (bailingmoe's '(?:[sSdDmMtT]|...)...\s*[\r\n] variant gives the
 *           same matches: after backtracking, \s*[\r\n]+ and \s*[\r\n] both
 *           end right after the last \r or \n of the white-space run)
 *   seed    the same with \p{N}{1} and  ?[^\s\p{L}\p{N}\r\n]+  (no [\r\n]*)
 *           -> match_seed_coder
 *   default [\p{P}\$\+<=>\^~\|]+, gpt2, \p{N}+, [0-9][0-9][0-9]
 *   falcon  [\p{P}\$\+<=>\^~\|`]+, gpt2, [0-9][0-9][0-9]
 *   starcoder  \p{N}, gpt2
 *   deepseek-coder  [\r\n], \s?\p{L}+, \s?\p{P}+, [一-龥ࠀ-一가-퟿]+, \p{N}
 *   deepseek-llm    [\r\n], \s?[A-Za-zµÀ-Ö...𞤀-𞥃]+, \s?[!-/:-~！-／：-～‘-‟　-。]+,
 *                   \s+$, [一-龥ࠀ-一가-퟿]+, \p{N}+
 *   deepseek-v3     \p{N}{1,3}, [一-龥぀-ゟ゠-ヿ]+,
 *                   [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *                   |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*
 *                   |\s*[\r\n]+|\s+(?!\S)|\s+                   -> match_deepseek3
 *   gpt-4o  [^\r\n\p{L}\p{N}]?U*L+C?|[^\r\n\p{L}\p{N}]?U+L*C?|\p{N}{1,3}
 *           | ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+  -> match_gpt4o
 *           where U is ((?=[\p{L}])([^a-z])) (a letter but a-z), L is
 *           ((?=[\p{L}])([^A-Z])) (a letter but A-Z) and C the contractions
 *           of llama3; so a non-ASCII letter is both U and L
 *   tekken  the same without C and with \p{N}                 -> match_tekken
 *
 * One quirk is kept on purpose: llama.cpp's std::regex path gives ASCII
 * characters the classes of a fixed table in which '~' is neither \p{P}
 * nor \p{S} (Unicode says Sm), and deepseek-v3 is the one regex here that
 * asks for \p{S}.
 *
 * A matcher returns the length of the match at pos within the piece
 * [.., end), or 0 for none; then *skip may be raised to the first position
 * where a match could start, so that a failed scan over a long run is not
 * repeated one position later (\s+$ needs that to stay linear). No regex
 * here can match the empty string.
 *
 * Each matcher was checked during development against Python's regex
 * module running llama.cpp's regex strings (with its cut-then-refine loop
 * and the U+000B rewrite) on thousands of random texts mixing ASCII,
 * Latin, CJK, kana, marks, digits of other scripts, emoji and every kind
 * of white space: no difference.
 *
 * Alternatives rejected: a regex engine (a dependency, and std::regex
 * semantics would still need checking case by case); llama.cpp's trick of
 * collapsing code points to one byte per category (its only purpose is to
 * feed std::regex).
 */
#include "text/pretok.h"

#include <string.h>

#include "core/base.h"
#include "text/unicode.h"

struct text {
    const uint32_t *cp;
    const uint16_t *fl;
};

typedef size_t (*match_fn)(const struct text *t, size_t pos, size_t end, size_t *skip);

static bool is_l(const struct text *t, size_t i)
{
    return (t->fl[i] & UNICODE_LETTER) != 0;
}

static bool is_n(const struct text *t, size_t i)
{
    return (t->fl[i] & UNICODE_NUMBER) != 0;
}

static bool is_p(const struct text *t, size_t i)
{
    return (t->fl[i] & UNICODE_PUNCT) != 0;
}

static bool is_ws(const struct text *t, size_t i)
{
    return (t->fl[i] & UNICODE_WHITESPACE) != 0;
}

/* [^\s\p{L}\p{N}] */
static bool is_other(const struct text *t, size_t i)
{
    return (t->fl[i] & (UNICODE_WHITESPACE | UNICODE_LETTER | UNICODE_NUMBER)) == 0;
}

static bool is_nl(uint32_t c)
{
    return c == '\r' || c == '\n';
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* First position >= i in [i, end) where pred fails. */
static size_t run(const struct text *t, size_t i, size_t end,
                  bool (*pred)(const struct text *, size_t))
{
    while (i < end && pred(t, i)) i++;
    return i;
}

/* 's|'t|'re|'ve|'m|'ll|'d, ASCII case folded when fold. */
static size_t contraction(const struct text *t, size_t pos, size_t end, bool fold)
{
    if (t->cp[pos] != '\'' || pos + 1 >= end) return 0;
    uint32_t c1 = fold ? ascii_lower(t->cp[pos + 1]) : t->cp[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t c2 = fold ? ascii_lower(t->cp[pos + 2]) : t->cp[pos + 2];
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

/* ---- gpt2 ------------------------------------------------------------------ */

static size_t match_gpt2(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    size_t m = contraction(t, pos, end, false);
    if (m) return m;
    /* " ?X+" for X in \p{L}, \p{N}, [^\s\p{L}\p{N}]: the space is taken
     * only when an X follows it (otherwise the optional space backtracks
     * and X+ fails on the space itself) */
    size_t p = t->cp[pos] == ' ' && pos + 1 < end ? pos + 1 : pos;
    if (is_l(t, p)) return run(t, p, end, is_l) - pos;
    if (is_n(t, p)) return run(t, p, end, is_n) - pos;
    if (is_other(t, p)) return run(t, p, end, is_other) - pos;
    /* \s+(?!\S): all of the run at the end of the piece, else all but its
     * last character, which must then stay unmatched */
    size_t k = run(t, pos, end, is_ws) - pos;
    if (k == 0) return 0;
    if (pos + k == end) return k;
    if (k > 1) return k - 1;
    *skip = pos + 1;
    return 0;
}

/* ---- llama3 / qwen2 / seed-coder ------------------------------------------- */

static size_t match_llama3_family(const struct text *t, size_t pos, size_t end, size_t max_digits,
                                  bool punct_newlines)
{
    size_t m = contraction(t, pos, end, true);
    if (m) return m;
    const uint32_t c = t->cp[pos];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (is_l(t, pos)) return run(t, pos, end, is_l) - pos;
    if (!is_nl(c) && !is_n(t, pos) && pos + 1 < end && is_l(t, pos + 1))
        return run(t, pos + 1, end, is_l) - pos;
    /* \p{N}{1,max_digits} */
    if (is_n(t, pos)) {
        size_t k = run(t, pos, end, is_n) - pos;
        return k < max_digits ? k : max_digits;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t p = c == ' ' ? pos + 1 : pos;
    if (p < end && is_other(t, p)) {
        size_t q = run(t, p, end, is_other);
        if (punct_newlines)
            while (q < end && is_nl(t->cp[q])) q++;
        return q - pos;
    }
    size_t k = run(t, pos, end, is_ws) - pos;
    if (k == 0) return 0; /* unreachable: every code point is in one class */
    /* \s*[\r\n]+: \s* backtracks to the last \r or \n of the run */
    for (size_t i = pos + k; i > pos; i--)
        if (is_nl(t->cp[i - 1])) return i - pos;
    /* \s+(?!\S) | \s+ */
    if (pos + k < end && k > 1) return k - 1;
    return k;
}

static size_t match_llama3(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return match_llama3_family(t, pos, end, 3, true);
}

static size_t match_qwen2(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return match_llama3_family(t, pos, end, 1, true);
}

static size_t match_seed_coder(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return match_llama3_family(t, pos, end, 1, false);
}

/* ---- single-class matchers ------------------------------------------------- */

/* [\p{P}\$\+<=>\^~\|]+ */
static bool is_punct_default(const struct text *t, size_t i)
{
    const uint32_t c = t->cp[i];
    return is_p(t, i) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|';
}

static size_t match_punct_default(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return run(t, pos, end, is_punct_default) - pos;
}

/* [\p{P}\$\+<=>\^~\|`]+ */
static bool is_punct_falcon(const struct text *t, size_t i)
{
    return is_punct_default(t, i) || t->cp[i] == '`';
}

static size_t match_punct_falcon(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return run(t, pos, end, is_punct_falcon) - pos;
}

/* \p{N}+ */
static size_t match_numbers(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return run(t, pos, end, is_n) - pos;
}

/* \p{N} */
static size_t match_number(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return is_n(t, pos) ? 1 : 0;
}

/* [0-9][0-9][0-9] */
static size_t match_ascii_digits3(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    for (size_t i = 0; i < 3; i++)
        if (pos + i >= end || t->cp[pos + i] < '0' || t->cp[pos + i] > '9') return 0;
    return 3;
}

/* [\r\n] */
static size_t match_newline(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return is_nl(t->cp[pos]) ? 1 : 0;
}

/* \s?X+: the white space only when an X follows */
static size_t ws_opt_run(const struct text *t, size_t pos, size_t end,
                         bool (*pred)(const struct text *, size_t))
{
    if (pred(t, pos)) return run(t, pos, end, pred) - pos;
    if (is_ws(t, pos) && pos + 1 < end && pred(t, pos + 1)) return run(t, pos + 1, end, pred) - pos;
    return 0;
}

/* \s?\p{L}+ */
static size_t match_ws_letters(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return ws_opt_run(t, pos, end, is_l);
}

/* \s?\p{P}+ */
static size_t match_ws_punct(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return ws_opt_run(t, pos, end, is_p);
}

/* \s+$ */
static size_t match_ws_tail(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    size_t q = run(t, pos, end, is_ws);
    if (q == pos) return 0;
    if (q == end) return q - pos;
    *skip = q; /* every start inside this run fails the same way */
    return 0;
}

/* ---- literal character classes (DeepSeek) ---------------------------------- */

struct cp_range {
    uint32_t lo, hi;
};

/* Code point in one of the ranges, as a literal class of llama.cpp's
 * std::wregex sees it: non-ASCII white space has become U+000B by then. */
static bool in_ranges(const struct text *t, size_t i, const struct cp_range *r, size_t n)
{
    const uint32_t c = t->cp[i];
    if (c > 0x7f && is_ws(t, i)) return false;
    for (size_t k = 0; k < n; k++)
        if (c >= r[k].lo && c <= r[k].hi) return true;
    return false;
}

/* [一-龥ࠀ-一가-퟿] */
static const struct cp_range CJK[] = {{0x0800, 0x9FA5}, {0xAC00, 0xD7FF}};

static bool is_cjk(const struct text *t, size_t i)
{
    return in_ranges(t, i, CJK, HY_ARRAY_LEN(CJK));
}

static size_t match_cjk(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return run(t, pos, end, is_cjk) - pos;
}

/* The letter class of DeepSeek LLM's second regex, sorted. */
static const struct cp_range DS_LETTERS[] = {
    {0x0041, 0x005A},   {0x0061, 0x007A},   {0x00B5, 0x00B5},   {0x00C0, 0x00D6},
    {0x00D8, 0x00F6},   {0x00F8, 0x01BA},   {0x01BC, 0x01BF},   {0x01C4, 0x0293},
    {0x0295, 0x02AF},   {0x0370, 0x0373},   {0x0376, 0x0377},   {0x037B, 0x037D},
    {0x037F, 0x037F},   {0x0386, 0x0386},   {0x0388, 0x038A},   {0x038C, 0x038C},
    {0x038E, 0x03A1},   {0x03A3, 0x03F5},   {0x03F7, 0x0481},   {0x048A, 0x052F},
    {0x0531, 0x0556},   {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static bool is_ds_letter(const struct text *t, size_t i)
{
    const uint32_t c = t->cp[i];
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (is_ws(t, i)) return false;
    size_t lo = 0, hi = HY_ARRAY_LEN(DS_LETTERS);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c > DS_LETTERS[mid].hi)
            lo = mid + 1;
        else if (c < DS_LETTERS[mid].lo)
            hi = mid;
        else
            return true;
    }
    return false;
}

/* [!-/:-~！-／：-～‘-‟　-。]: ASCII 0x21-0x2F and 0x3A-0x7E (letters included) */
static const struct cp_range DS_PUNCT[] = {{0x0021, 0x002F}, {0x003A, 0x007E}, {0xFF01, 0xFF0F},
                                           {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};

static bool is_ds_punct(const struct text *t, size_t i)
{
    return in_ranges(t, i, DS_PUNCT, HY_ARRAY_LEN(DS_PUNCT));
}

static size_t match_ds_letters(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return ws_opt_run(t, pos, end, is_ds_letter);
}

static size_t match_ds_punct(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return ws_opt_run(t, pos, end, is_ds_punct);
}

/* ---- deepseek-v3 ----------------------------------------------------------- */

/* \p{P} or \p{S} as llama.cpp's regex path sees them: '~' is neither */
static bool is_ps(const struct text *t, size_t i)
{
    return (t->fl[i] & (UNICODE_PUNCT | UNICODE_SYMBOL)) != 0 && t->cp[i] != '~';
}

static bool is_lm(const struct text *t, size_t i)
{
    return (t->fl[i] & (UNICODE_LETTER | UNICODE_MARK)) != 0;
}

static bool is_ascii_letter(const struct text *t, size_t i)
{
    const uint32_t c = t->cp[i];
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* [一-龥぀-ゟ゠-ヿ] */
static const struct cp_range CJK_KANA[] = {{0x3040, 0x30FF}, {0x4E00, 0x9FA5}};

static bool is_cjk_kana(const struct text *t, size_t i)
{
    return in_ranges(t, i, CJK_KANA, HY_ARRAY_LEN(CJK_KANA));
}

static size_t match_cjk_kana(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return run(t, pos, end, is_cjk_kana) - pos;
}

/* \p{N}{1,3} */
static size_t match_numbers3(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    size_t k = run(t, pos, end, is_n) - pos;
    return k < 3 ? k : 3;
}

static size_t match_deepseek3(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    const uint32_t c = t->cp[pos];
    /* [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+: ASCII punctuation and symbols */
    const bool ascii_ps = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                          (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
    if (ascii_ps && pos + 1 < end && is_ascii_letter(t, pos + 1))
        return run(t, pos + 1, end, is_ascii_letter) - pos;
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
    if (is_lm(t, pos)) return run(t, pos, end, is_lm) - pos;
    if (!is_nl(c) && !is_l(t, pos) && !is_ps(t, pos) && pos + 1 < end && is_lm(t, pos + 1))
        return run(t, pos + 1, end, is_lm) - pos;
    /*  ?[\p{P}\p{S}]+[\r\n]* */
    size_t p = c == ' ' ? pos + 1 : pos;
    if (p < end && is_ps(t, p)) {
        size_t q = run(t, p, end, is_ps);
        while (q < end && is_nl(t->cp[q])) q++;
        return q - pos;
    }
    /* \s*[\r\n]+|\s+(?!\S)|\s+ */
    size_t k = run(t, pos, end, is_ws) - pos;
    if (k == 0) {
        *skip = pos + 1; /* a digit, '~' or a control character on its own */
        return 0;
    }
    for (size_t i = pos + k; i > pos; i--)
        if (is_nl(t->cp[i - 1])) return i - pos;
    if (pos + k < end && k > 1) return k - 1;
    return k;
}

/* ---- gpt-4o / tekken -------------------------------------------------------- */

/* ((?=[\p{L}])([^a-z])) */
static bool is_u(const struct text *t, size_t i)
{
    return is_l(t, i) && !(t->cp[i] >= 'a' && t->cp[i] <= 'z');
}

/* ((?=[\p{L}])([^A-Z])) */
static bool is_lo(const struct text *t, size_t i)
{
    return is_l(t, i) && !(t->cp[i] >= 'A' && t->cp[i] <= 'Z');
}

/* End of U*L+ from s, 0 when it does not match. U* is greedy; when L+
 * fails after it, U* gives back characters until one is an L (a non-ASCII
 * letter), from which L+ runs. */
static size_t upper_lower(const struct text *t, size_t s, size_t end)
{
    size_t q = run(t, s, end, is_u);
    if (q < end && is_lo(t, q)) return run(t, q, end, is_lo);
    for (size_t j = q; j > s; j--)
        if (is_lo(t, j - 1)) return run(t, j - 1, end, is_lo);
    return 0;
}

static size_t match_gpt4o_family(const struct text *t, size_t pos, size_t end, bool contractions,
                                 size_t max_digits)
{
    const uint32_t c = t->cp[pos];
    /* [^\r\n\p{L}\p{N}]?U*L+C? | [^\r\n\p{L}\p{N}]?U+L*C? : the optional
     * character is taken only when letters follow it */
    size_t s = pos;
    if (!is_l(t, pos)) {
        if (is_nl(c) || is_n(t, pos) || pos + 1 >= end || !is_l(t, pos + 1))
            s = end;
        else
            s = pos + 1;
    }
    if (s < end) {
        size_t e = upper_lower(t, s, end);
        /* else U+L*, which then holds: U*L+ fails only after an A-Z */
        if (e == 0) e = run(t, run(t, s, end, is_u), end, is_lo);
        if (contractions) e += contraction(t, e, end, true);
        return e - pos;
    }
    /* \p{N}{1,max_digits} */
    if (is_n(t, pos)) {
        size_t k = run(t, pos, end, is_n) - pos;
        return k < max_digits ? k : max_digits;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n/]* */
    size_t p = c == ' ' ? pos + 1 : pos;
    if (p < end && is_other(t, p)) {
        size_t q = run(t, p, end, is_other);
        while (q < end && (is_nl(t->cp[q]) || t->cp[q] == '/')) q++;
        return q - pos;
    }
    size_t k = run(t, pos, end, is_ws) - pos;
    if (k == 0) return 0; /* unreachable: every code point is in one class */
    for (size_t i = pos + k; i > pos; i--)
        if (is_nl(t->cp[i - 1])) return i - pos;
    if (pos + k < end && k > 1) return k - 1;
    return k;
}

static size_t match_gpt4o(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return match_gpt4o_family(t, pos, end, true, 3);
}

static size_t match_tekken(const struct text *t, size_t pos, size_t end, size_t *skip)
{
    return match_gpt4o_family(t, pos, end, false, 1);
}

/* ---- the pre-tokenizers ---------------------------------------------------- */

#define MAX_STEPS 6

struct recipe {
    const char *name;
    match_fn steps[MAX_STEPS]; /* NULL-terminated */
};

static const struct recipe RECIPES[PRETOK_KIND_COUNT] = {
    [PRETOK_DEFAULT] = {"default",
                        {match_punct_default, match_gpt2, match_numbers, match_ascii_digits3}},
    [PRETOK_GPT2] = {"gpt2", {match_gpt2}},
    [PRETOK_LLAMA3] = {"llama3", {match_llama3}},
    [PRETOK_QWEN2] = {"qwen2", {match_qwen2}},
    [PRETOK_SEED_CODER] = {"seed-coder", {match_seed_coder}},
    [PRETOK_DEEPSEEK_LLM] = {"deepseek-llm",
                             {match_newline, match_ds_letters, match_ds_punct, match_ws_tail,
                              match_cjk, match_numbers}},
    [PRETOK_DEEPSEEK_CODER] = {"deepseek-coder",
                               {match_newline, match_ws_letters, match_ws_punct, match_cjk,
                                match_number}},
    [PRETOK_FALCON] = {"falcon", {match_punct_falcon, match_gpt2, match_ascii_digits3}},
    [PRETOK_STARCODER] = {"starcoder", {match_number, match_gpt2}},
    [PRETOK_DEEPSEEK3] = {"deepseek-v3", {match_numbers3, match_cjk_kana, match_deepseek3}},
    [PRETOK_GPT4O] = {"gpt-4o", {match_gpt4o}},
    [PRETOK_TEKKEN] = {"tekken", {match_tekken}},
};

/* tokenizer.ggml.pre names, as llama.cpp maps them (llama_vocab::impl::load) */
static const struct pretok_info INFOS[] = {
    {"default", PRETOK_DEFAULT, false, false, false},
    {"llama3", PRETOK_LLAMA3, true, true, false},
    {"llama-v3", PRETOK_LLAMA3, true, true, false},
    {"llama-bpe", PRETOK_LLAMA3, true, true, false},
    {"falcon3", PRETOK_LLAMA3, true, true, false},
    {"falcon-h1", PRETOK_LLAMA3, true, true, false},
    {"pixtral", PRETOK_LLAMA3, true, true, false},
    {"midm-2.0", PRETOK_LLAMA3, true, true, false},
    {"lfm2", PRETOK_LLAMA3, true, true, false},
    {"dbrx", PRETOK_LLAMA3, false, false, false},
    {"smaug-bpe", PRETOK_LLAMA3, false, false, false},
    {"glm4", PRETOK_LLAMA3, false, false, true},
    {"chatglm-bpe", PRETOK_LLAMA3, false, false, true},
    {"deepseek-llm", PRETOK_DEEPSEEK_LLM, false, false, false},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, false, false, false},
    {"falcon", PRETOK_FALCON, false, false, false},
    {"mpt", PRETOK_GPT2, false, false, false},
    {"starcoder", PRETOK_STARCODER, false, false, false},
    {"gpt-2", PRETOK_GPT2, false, false, false},
    {"phi-2", PRETOK_GPT2, false, false, false},
    {"jina-es", PRETOK_GPT2, false, false, false},
    {"jina-de", PRETOK_GPT2, false, false, false},
    {"gigachat", PRETOK_GPT2, false, false, false},
    {"jina-v2-es", PRETOK_GPT2, false, false, false},
    {"jina-v2-de", PRETOK_GPT2, false, false, false},
    {"a.x-4.0", PRETOK_GPT2, false, false, false},
    {"mellum", PRETOK_GPT2, false, false, false},
    {"modern-bert", PRETOK_GPT2, false, false, false},
    {"jina-v1-en", PRETOK_GPT2, false, false, false},
    {"jina-v2-code", PRETOK_GPT2, false, false, false},
    {"roberta-bpe", PRETOK_GPT2, false, false, false},
    {"exaone4", PRETOK_GPT2, false, false, false},
    {"olmo", PRETOK_GPT2, false, false, false},
    {"jais", PRETOK_GPT2, false, false, false},
    {"trillion", PRETOK_GPT2, false, false, false},
    {"granite-docling", PRETOK_GPT2, false, false, false},
    {"refact", PRETOK_STARCODER, false, false, false},
    {"command-r", PRETOK_STARCODER, false, false, false},
    {"smollm", PRETOK_STARCODER, false, false, false},
    {"codeshell", PRETOK_STARCODER, false, false, false},
    {"exaone", PRETOK_STARCODER, false, false, false},
    {"minerva-7b", PRETOK_STARCODER, false, false, false},
    {"qwen2", PRETOK_QWEN2, false, false, false},
    {"deepseek-r1-qwen", PRETOK_QWEN2, false, false, false},
    {"kormo", PRETOK_QWEN2, false, false, false},
    {"stablelm2", PRETOK_QWEN2, false, false, false},
    {"hunyuan", PRETOK_QWEN2, false, false, false},
    {"megrez", PRETOK_QWEN2, false, false, false},
    {"grok-2", PRETOK_QWEN2, false, false, false},
    {"bailingmoe", PRETOK_QWEN2, false, false, false},
    {"bailingmoe2", PRETOK_QWEN2, false, false, false},
    {"llada-moe", PRETOK_QWEN2, false, false, false},
    {"seed-coder", PRETOK_SEED_CODER, false, false, false},
    {"deepseek-v3", PRETOK_DEEPSEEK3, false, false, false},
    {"hunyuan-dense", PRETOK_DEEPSEEK3, false, false, false},
    {"gpt-4o", PRETOK_GPT4O, false, false, false},
    {"llama4", PRETOK_GPT4O, false, false, false},
    {"minimax-m2", PRETOK_GPT4O, false, false, false},
    {"tekken", PRETOK_TEKKEN, true, true, false},
};

const struct pretok_info *pretok_find(const char *pre)
{
    if (!pre || !*pre) return &INFOS[0];
    for (size_t i = 0; i < HY_ARRAY_LEN(INFOS); i++)
        if (strcmp(pre, INFOS[i].name) == 0) return &INFOS[i];
    return NULL;
}

const char *pretok_kind_name(enum pretok_kind kind)
{
    HY_ASSERT((unsigned)kind < PRETOK_KIND_COUNT);
    return RECIPES[kind].name;
}

/* One regex over every piece: pieces in[0..n_in) (end offsets) become the
 * matches and the unmatched runs between them, written to out. */
static size_t apply(const struct text *t, match_fn match, const uint32_t *in, size_t n_in,
                    uint32_t *out)
{
    size_t n_out = 0, start = 0;
    for (size_t i = 0; i < n_in; i++) {
        const size_t end = in[i];
        size_t gap = start, pos = start;
        while (pos < end) {
            size_t skip = pos + 1;
            size_t m = match(t, pos, end, &skip);
            if (m == 0) {
                pos = skip;
                continue;
            }
            HY_ASSERT(pos + m <= end);
            if (pos > gap) out[n_out++] = (uint32_t)pos;
            pos += m;
            out[n_out++] = (uint32_t)pos;
            gap = pos;
        }
        if (gap < end) out[n_out++] = (uint32_t)end;
        start = end;
    }
    return n_out;
}

size_t pretok_split(enum pretok_kind kind, const uint32_t *cp, const uint16_t *fl, size_t n,
                    uint32_t *ends, uint32_t *tmp)
{
    HY_ASSERT((unsigned)kind < PRETOK_KIND_COUNT);
    HY_ASSERT(n <= UINT32_MAX);
    if (n == 0) return 0;
    const struct text t = {cp, fl};
    const struct recipe *r = &RECIPES[kind];
    /* alternate between the two buffers so that the result lands in ends */
    size_t n_steps = 0;
    while (n_steps < MAX_STEPS && r->steps[n_steps]) n_steps++;
    uint32_t *cur = n_steps % 2 ? tmp : ends, *next = n_steps % 2 ? ends : tmp;
    cur[0] = (uint32_t)n;
    size_t n_cur = 1;
    for (size_t s = 0; s < n_steps; s++) {
        n_cur = apply(&t, r->steps[s], cur, n_cur, next);
        uint32_t *x = cur;
        cur = next;
        next = x;
    }
    HY_ASSERT(cur == ends);
    return n_cur;
}
