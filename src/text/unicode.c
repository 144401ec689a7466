#include "text/unicode.h"

#include <stdbool.h>

#include "core/base.h"
#include "text/unicode_data.h"

unsigned unicode_flags(uint32_t cp)
{
    if (cp < 128) return unicode_data_ascii[cp];
    if (cp > UNICODE_MAX_CP) return UNICODE_UNASSIGNED;
    /* last range whose first <= cp; the sentinel keeps hi in bounds */
    size_t lo = 0, hi = unicode_data_n_ranges - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (unicode_data_ranges[mid].first <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return unicode_data_ranges[lo].flags;
}

static bool is_cont(const char *s, size_t len, size_t i)
{
    return i < len && ((unsigned char)s[i] & 0xc0) == 0x80;
}

uint32_t unicode_decode_utf8(const char *s, size_t len, size_t *off)
{
    const size_t i = *off;
    const unsigned char b0 = (unsigned char)s[i];
    if (b0 < 0x80) {
        *off = i + 1;
        return b0;
    }
    uint32_t cp = UNICODE_REPLACEMENT;
    size_t n = 1;
    if ((b0 & 0xe0) == 0xc0) {
        if (is_cont(s, len, i + 1)) {
            cp = ((uint32_t)(b0 & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3f);
            n = 2;
        }
    } else if ((b0 & 0xf0) == 0xe0) {
        if (is_cont(s, len, i + 1) && is_cont(s, len, i + 2)) {
            cp = ((uint32_t)(b0 & 0x0f) << 12) | ((uint32_t)((unsigned char)s[i + 1] & 0x3f) << 6) |
                 ((unsigned char)s[i + 2] & 0x3f);
            n = 3;
        }
    } else if ((b0 & 0xf8) == 0xf0) {
        if (is_cont(s, len, i + 1) && is_cont(s, len, i + 2) && is_cont(s, len, i + 3)) {
            cp = ((uint32_t)(b0 & 0x07) << 18) |
                 ((uint32_t)((unsigned char)s[i + 1] & 0x3f) << 12) |
                 ((uint32_t)((unsigned char)s[i + 2] & 0x3f) << 6) |
                 ((unsigned char)s[i + 3] & 0x3f);
            n = 4;
            /* llama.cpp decodes up to 0x1FFFFF and then cannot encode it */
            if (cp > UNICODE_MAX_CP) {
                cp = UNICODE_REPLACEMENT;
                n = 1;
            }
        }
    }
    *off = i + n;
    return cp;
}

int unicode_encode_utf8(uint32_t cp, char out[4])
{
    HY_ASSERT(cp <= UNICODE_MAX_CP);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int unicode_utf8_seq_len(unsigned char lead)
{
    if (lead < 0xc0) return 1;
    if (lead < 0xe0) return 2;
    if (lead < 0xf0) return 3;
    if (lead < 0xf8) return 4;
    return 1;
}

/* The 68 bytes that are not printable stand for themselves nowhere: they
 * are, in order, 0x00..0x20 (33), 0x7F..0xA0 (34) and 0xAD (1). */
uint32_t unicode_byte_to_cp(uint8_t b)
{
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7f && b <= 0xa0) return 0x100u + 33 + (b - 0x7fu);
    if (b == 0xad) return 0x100u + 67;
    return b;
}

int unicode_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) {
        if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || cp >= 0xae) return (int)cp;
        return -1;
    }
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7f);
    if (cp == 0x100 + 67) return 0xad;
    return -1;
}

size_t unicode_utf8_ready(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t need = (size_t)unicode_utf8_seq_len((unsigned char)buf[i]);
        if (need == 1) {
            i++;
            continue;
        }
        size_t j = 1;
        while (j < need && i + j < n && ((unsigned char)buf[i + j] & 0xc0) == 0x80) j++;
        if (j == need)
            i += need; /* complete */
        else if (i + j == n)
            break; /* unfinished so far: hold it back */
        else
            i++; /* broken: the lead byte goes out as it is */
    }
    return i;
}
