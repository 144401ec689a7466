/*
 * Unit tests of src/text/unicode.h and src/text/pretok.h: the generated
 * category table on known code points, llama.cpp's lenient UTF-8 decoding,
 * encoding, the byte-level BPE alphabet, the "whole characters only" check
 * of streaming output (unicode_utf8_ready), and the pre-tokenizers on small
 * texts whose splits follow from their regexes.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "text/pretok.h"
#include "text/unicode.h"

static void test_flags(void)
{
    struct {
        uint32_t cp;
        unsigned flags;
    } cases[] = {
        {'A', UNICODE_LETTER},
        {'z', UNICODE_LETTER},
        {'0', UNICODE_NUMBER},
        {'!', UNICODE_PUNCT},
        {'_', UNICODE_PUNCT},
        {'$', UNICODE_SYMBOL},
        {'~', UNICODE_SYMBOL},
        {' ', UNICODE_SEPARATOR | UNICODE_WHITESPACE},
        {'\t', UNICODE_CONTROL | UNICODE_WHITESPACE},
        {'\n', UNICODE_CONTROL | UNICODE_WHITESPACE},
        {0x00, UNICODE_CONTROL},
        {0x1C, UNICODE_CONTROL}, /* str.isspace() says yes, White_Space says no */
        {0x85, UNICODE_CONTROL | UNICODE_WHITESPACE},
        {0xA0, UNICODE_SEPARATOR | UNICODE_WHITESPACE},
        {0xB5, UNICODE_LETTER}, /* µ */
        {0xE9, UNICODE_LETTER}, /* é */
        {0xB2, UNICODE_NUMBER}, /* ² (No) */
        {0x0301, UNICODE_MARK}, /* combining acute */
        {0x0378, UNICODE_UNASSIGNED},
        {0x0660, UNICODE_NUMBER}, /* Arabic-Indic zero */
        {0x2009, UNICODE_SEPARATOR | UNICODE_WHITESPACE},
        {0x200B, UNICODE_CONTROL}, /* zero width space is Cf, no white space */
        {0x2028, UNICODE_SEPARATOR | UNICODE_WHITESPACE},
        {0x2018, UNICODE_PUNCT},
        {0x20AC, UNICODE_SYMBOL}, /* € */
        {0x2167, UNICODE_NUMBER}, /* Ⅷ (Nl) */
        {0x3000, UNICODE_SEPARATOR | UNICODE_WHITESPACE},
        {0x3002, UNICODE_PUNCT},
        {0x4E00, UNICODE_LETTER},
        {0xAC00, UNICODE_LETTER},
        {0xD800, UNICODE_CONTROL}, /* Cs */
        {0xE000, UNICODE_CONTROL}, /* Co */
        {0xFF01, UNICODE_PUNCT},
        {0xFFFD, UNICODE_SYMBOL},
        {0x1F600, UNICODE_SYMBOL},
        {0x10FFFF, UNICODE_UNASSIGNED},
        {0x110000, UNICODE_UNASSIGNED},
    };
    for (size_t i = 0; i < HY_ARRAY_LEN(cases); i++)
        if (!CHECK_EQ_INT(unicode_flags(cases[i].cp), cases[i].flags))
            fprintf(stderr, "  code point U+%04X\n", (unsigned)cases[i].cp);
    /* exactly one category bit everywhere (sampled) */
    for (uint32_t cp = 0; cp <= UNICODE_MAX_CP; cp += 97) {
        unsigned cat = unicode_flags(cp) & ~UNICODE_WHITESPACE;
        if (!CHECK(cat != 0 && (cat & (cat - 1)) == 0)) break;
    }
}

static uint32_t decode_one(const char *s, size_t len, size_t *adv)
{
    size_t off = 0;
    uint32_t cp = unicode_decode_utf8(s, len, &off);
    *adv = off;
    return cp;
}

static void test_utf8(void)
{
    size_t adv;
    CHECK_EQ_INT(decode_one("A", 1, &adv), 'A');
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(decode_one("\xc3\xa9", 2, &adv), 0xE9);
    CHECK_EQ_INT(adv, 2);
    CHECK_EQ_INT(decode_one("\xe4\xb8\x80", 3, &adv), 0x4E00);
    CHECK_EQ_INT(adv, 3);
    CHECK_EQ_INT(decode_one("\xf0\x9f\x98\x80", 4, &adv), 0x1F600);
    CHECK_EQ_INT(adv, 4);
    /* a stray continuation byte, a lead byte cut short, a lead byte
     * followed by no continuation, 0xF8+: U+FFFD for one byte */
    CHECK_EQ_INT(decode_one("\x80", 1, &adv), UNICODE_REPLACEMENT);
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(decode_one("\xe4\xb8", 2, &adv), UNICODE_REPLACEMENT);
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(decode_one("\xc3"
                            "A",
                            2, &adv),
                 UNICODE_REPLACEMENT);
    CHECK_EQ_INT(adv, 1);
    CHECK_EQ_INT(decode_one("\xff", 1, &adv), UNICODE_REPLACEMENT);
    CHECK_EQ_INT(adv, 1);
    /* above U+10FFFF */
    CHECK_EQ_INT(decode_one("\xf7\xbf\xbf\xbf", 4, &adv), UNICODE_REPLACEMENT);
    CHECK_EQ_INT(adv, 1);
    /* llama.cpp does not reject overlong forms */
    CHECK_EQ_INT(decode_one("\xc1\x81", 2, &adv), 'A');

    const uint32_t cps[] = {0, 'a', 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF};
    for (size_t i = 0; i < HY_ARRAY_LEN(cps); i++) {
        char buf[4];
        int n = unicode_encode_utf8(cps[i], buf);
        CHECK_EQ_INT(n, cps[i] < 0x80 ? 1 : cps[i] < 0x800 ? 2 : cps[i] < 0x10000 ? 3 : 4);
        CHECK_EQ_INT(decode_one(buf, (size_t)n, &adv), cps[i]);
        CHECK_EQ_INT(adv, n);
    }
}

static void test_byte_alphabet(void)
{
    CHECK_EQ_INT(unicode_byte_to_cp(' '), 0x120);  /* Ġ */
    CHECK_EQ_INT(unicode_byte_to_cp('\n'), 0x10A); /* Ċ */
    CHECK_EQ_INT(unicode_byte_to_cp('\t'), 0x109); /* ĉ */
    CHECK_EQ_INT(unicode_byte_to_cp('A'), 'A');
    CHECK_EQ_INT(unicode_byte_to_cp(0xE9), 0xE9);
    CHECK_EQ_INT(unicode_byte_to_cp(0x7F), 0x121);
    CHECK_EQ_INT(unicode_byte_to_cp(0xA0), 0x142);
    CHECK_EQ_INT(unicode_byte_to_cp(0xAD), 0x143);
    bool seen[0x144] = {false};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = unicode_byte_to_cp((uint8_t)b);
        if (!CHECK(cp < 0x144 && !seen[cp])) break;
        seen[cp] = true;
        CHECK_EQ_INT(unicode_cp_to_byte(cp), b);
    }
    CHECK_EQ_INT(unicode_cp_to_byte(0x144), -1);
    CHECK_EQ_INT(unicode_cp_to_byte(' '), -1);
    CHECK_EQ_INT(unicode_cp_to_byte(0xAD), -1);
}

static void test_ready(void)
{
    /* whole characters go out; an unfinished tail waits */
    CHECK_EQ_INT(unicode_utf8_ready("ab", 2), 2);
    CHECK_EQ_INT(unicode_utf8_ready("a\xc3", 2), 1);
    CHECK_EQ_INT(unicode_utf8_ready("a\xc3\xa9", 3), 3);
    CHECK_EQ_INT(unicode_utf8_ready("\xf0\x9f\x98", 3), 0);
    CHECK_EQ_INT(unicode_utf8_ready("\xf0\x9f\x98\x80", 4), 4);
    /* broken sequences are not held: the lead byte passes */
    CHECK_EQ_INT(unicode_utf8_ready("\xc3"
                                    "a",
                                    2),
                 2);
    CHECK_EQ_INT(unicode_utf8_ready("\xe4\xb8"
                                    "a\xe4",
                                    4),
                 3);
    CHECK_EQ_INT(unicode_utf8_ready("\x80\x80", 2), 2);
    CHECK_EQ_INT(unicode_utf8_ready("", 0), 0);
}

/* The words of text under pre-tokenizer pre, joined with '|'. */
static void check_split(const char *pre, const char *text, const char *want)
{
    const struct pretok_info *pi = pretok_find(pre);
    if (!CHECK(pi != NULL)) return;
    const size_t len = strlen(text);
    uint32_t *cp = calloc(len + 1, sizeof(*cp)), *ends = calloc(len + 1, sizeof(*ends)),
             *tmp = calloc(len + 1, sizeof(*tmp));
    uint16_t *fl = calloc(len + 1, sizeof(*fl));
    size_t *byte_off = calloc(len + 2, sizeof(*byte_off));
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        byte_off[n] = off;
        cp[n] = unicode_decode_utf8(text, len, &off);
        fl[n] = (uint16_t)unicode_flags(cp[n]);
    }
    byte_off[n] = len;
    size_t n_words = pretok_split(pi->kind, cp, fl, n, ends, tmp);
    char got[512];
    size_t g = 0, start = 0;
    for (size_t w = 0; w < n_words && g + 64 < sizeof got; w++) {
        if (w) got[g++] = '|';
        size_t a = byte_off[start], b = byte_off[ends[w]];
        memcpy(got + g, text + a, b - a);
        g += b - a;
        start = ends[w];
    }
    got[g] = '\0';
    if (!CHECK_EQ_STR(got, want)) fprintf(stderr, "  pre-tokenizer %s\n", pre);
    free(cp);
    free(ends);
    free(tmp);
    free(fl);
    free(byte_off);
}

static void test_pretok(void)
{
    CHECK(pretok_find(NULL) && pretok_find(NULL)->kind == PRETOK_DEFAULT);
    CHECK(pretok_find("") && pretok_find("")->kind == PRETOK_DEFAULT);
    CHECK(pretok_find("llama3") && pretok_find("llama3")->ignore_merges &&
          pretok_find("llama3")->add_bos);
    CHECK(pretok_find("smaug-bpe") && pretok_find("smaug-bpe")->kind == PRETOK_LLAMA3);
    CHECK(pretok_find("deepseek-r1-qwen") && pretok_find("deepseek-r1-qwen")->kind == PRETOK_QWEN2);
    CHECK(pretok_find("refact") && pretok_find("refact")->kind == PRETOK_STARCODER);
    CHECK(pretok_find("no-such-pre") == NULL);
    CHECK_EQ_STR(pretok_kind_name(PRETOK_QWEN2), "qwen2");

    check_split("gpt-2", "Hello world", "Hello| world");
    check_split("gpt-2", "I'm here", "I|'m| here");
    check_split("gpt-2", "a  b", "a| | b");      /* \s+(?!\S) leaves one space */
    check_split("gpt-2", "a\n\nb", "a|\n|\n|b"); /* and the lone \n stays unmatched */
    check_split("gpt-2", "x  ", "x|  ");
    check_split("gpt-2", "12345", "12345");
    check_split("llama3", "12345", "123|45");
    check_split("llama3", "I'M", "I|'M");
    check_split("llama3", "a\n\n b", "a|\n\n| b");
    check_split("llama3", "(word", "(word");
    check_split("llama3", "x!!\n\ny", "x|!!\n\n|y");
    check_split("qwen2", "12345", "1|2|3|4|5");
    check_split("qwen2", "I'M", "I|'M");
    check_split("starcoder", "a 123", "a| |1|2|3");
    check_split("default", "1234567", "123|456|7");
    check_split("default", "a.b", "a|.|b");
    check_split("falcon", "x`y", "x|`|y");
    check_split("deepseek-coder", "ab\ncd 12", "ab|\n|cd| |1|2");
    check_split("deepseek-llm", "ab 12  ", "ab| |12|  ");
    check_split("deepseek-llm", "\xe4\xb8\x80\xe4\xb8\x81x", "\xe4\xb8\x80\xe4\xb8\x81|x");
    check_split("deepseek-llm",
                "a\xe3\x80\x80"
                "b",
                "a|\xe3\x80\x80"
                "b"); /* U+3000 is \s */
    check_split("gpt-4o", "HelloWorld", "Hello|World");
    check_split("gpt-4o", "ABCdef", "ABCdef");
    check_split("gpt-4o", "I'm", "I'm");
    check_split("gpt-4o", "path/to\n", "path|/to|\n");
    check_split("llama4", "12345", "123|45");
    check_split("gpt-4o",
                "\xc3\x89"
                "Ab",
                "\xc3\x89"
                "Ab"); /* É is upper and lower */
    check_split("tekken", "12", "1|2");
    check_split("tekken", "I'm", "I|'m");
    check_split("deepseek-v3", "a~b", "a|~b");
    check_split("deepseek-v3", "x~~", "x|~~"); /* '~' is no \p{S} to llama.cpp */
    check_split("deepseek-v3", "1234", "123|4");
    check_split("deepseek-v3", "it's ok", "it|'s| ok");
    check_split("gpt-2", "", "");
}

int main(int argc, char **argv)
{
    (void)argc;
    test_flags();
    test_utf8();
    test_byte_alphabet();
    test_ready();
    test_pretok();
    return check_report(argv[0]);
}
