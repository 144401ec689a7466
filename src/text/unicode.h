/*
 * Unicode for the tokenizers: code point properties, UTF-8 decoding and
 * encoding, the byte <-> code point mapping of byte-level BPE, and the
 * check a streaming detokenizer uses to never emit half a character.
 *
 * Properties come from a table generated at development time from Python's
 * unicodedata (src/text/unicode_data.c, scripts/gen_unicode_data.py): the
 * general category collapsed to the classes the pre-tokenizer regexes ask
 * for (\p{L}, \p{N}, \p{P}, ...) and the White_Space property (\s). No
 * case mapping and no normalization: the pre-tokenizers implemented here
 * only need ASCII case folding.
 *
 * UTF-8 decoding is deliberately llama.cpp's, not a validating decoder,
 * because token ids must match what it gives: a lead byte announces 1-4
 * bytes and only the continuation bytes are checked (overlong forms and
 * surrogates decode to their value); a byte that starts no valid sequence
 * decodes to U+FFFD and consumes one byte. The one departure: a 4-byte form
 * above U+10FFFF (llama.cpp fails on it later) also gives U+FFFD.
 *
 * Byte-level BPE (GPT-2) stores every byte as a printable code point so that
 * token strings never hold raw control bytes or spaces: the bytes '!'..'~',
 * 0xA1..0xAC and 0xAE..0xFF stand for themselves, the other 68 bytes
 * (0x00..0x20, 0x7F..0xA0, 0xAD) in increasing order become U+0100..U+0143
 * (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
 */
#ifndef HY_TEXT_UNICODE_H
#define HY_TEXT_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Property flags: exactly one category bit, plus UNICODE_WHITESPACE. */
#define UNICODE_UNASSIGNED 0x001u /* Cn */
#define UNICODE_NUMBER     0x002u /* \p{N}: Nd Nl No */
#define UNICODE_LETTER     0x004u /* \p{L}: Lu Ll Lt Lm Lo */
#define UNICODE_SEPARATOR  0x008u /* \p{Z}: Zs Zl Zp */
#define UNICODE_MARK       0x010u /* \p{M}: Mn Mc Me */
#define UNICODE_PUNCT      0x020u /* \p{P}: Pc Pd Ps Pe Pi Pf Po */
#define UNICODE_SYMBOL     0x040u /* \p{S}: Sm Sc Sk So */
#define UNICODE_CONTROL    0x080u /* \p{C} except Cn: Cc Cf Cs Co */
#define UNICODE_WHITESPACE 0x100u /* White_Space (\s) */

#define UNICODE_REPLACEMENT 0xFFFDu
#define UNICODE_MAX_CP      0x10FFFFu

/* Flags of code point cp; UNICODE_UNASSIGNED beyond U+10FFFF. */
unsigned unicode_flags(uint32_t cp);

/* Decodes the code point at s[*off] (s has len bytes, *off < len) and
 * advances *off past it; see the header comment for invalid input. */
uint32_t unicode_decode_utf8(const char *s, size_t len, size_t *off);

/* Writes cp as 1-4 UTF-8 bytes to out and returns how many; cp must be
 * <= UNICODE_MAX_CP. */
int unicode_encode_utf8(uint32_t cp, char out[4]);

/* Bytes a UTF-8 sequence with this lead byte has: 2, 3 or 4, and 1 for
 * ASCII and for bytes that cannot start a sequence. */
int unicode_utf8_seq_len(unsigned char lead);

/* Byte-level BPE: the code point that stands for byte b, and back (-1 when
 * cp stands for no byte). */
uint32_t unicode_byte_to_cp(uint8_t b);
int unicode_cp_to_byte(uint32_t cp);

/* Streaming output: of buf[0..n), the length of the longest prefix that
 * does not end inside a UTF-8 sequence that may still be completed by the
 * bytes that follow. A broken sequence (a lead byte followed by a byte that
 * is no continuation) is passed through as it is; only a valid but
 * unfinished tail (at most 3 bytes) is held back. */
size_t unicode_utf8_ready(const char *buf, size_t n);

#endif
