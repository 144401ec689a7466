/*
 * The generated Unicode property table (src/text/unicode_data.c, written by
 * scripts/gen_unicode_data.py). Read it through src/text/unicode.h; only
 * unicode.c includes this header.
 */
#ifndef HY_TEXT_UNICODE_DATA_H
#define HY_TEXT_UNICODE_DATA_H

#include <stddef.h>
#include <stdint.h>

struct unicode_data_range {
    uint32_t first; /* first code point of the range */
    uint16_t flags; /* UNICODE_* bits of every code point up to the next range's first */
};

/* Sorted by first; the last entry is a sentinel with first = 0x110000. */
extern const struct unicode_data_range unicode_data_ranges[];
extern const size_t unicode_data_n_ranges;
/* Flags of U+0000..U+007F. */
extern const uint16_t unicode_data_ascii[128];

#endif
