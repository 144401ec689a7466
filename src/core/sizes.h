/*
 * Byte sizes as people write them. Parsing accepts a decimal number with an
 * optional fraction and one suffix: K/M/G/T (powers of 1024, as llama.cpp and
 * Ollama users expect), KiB/MiB/GiB/TiB (the same), KB/MB/GB/TB (powers of
 * 1000), B or none (bytes). Case-insensitive.
 */
#ifndef HY_CORE_SIZES_H
#define HY_CORE_SIZES_H

#include <stdint.h>

#include "core/base.h"

/* Parses text into *out_bytes. HY_ERR_INVALID_ARG naming the text when it is
 * not a size or overflows 64 bits. */
HY_MUST_CHECK enum hy_status sizes_parse(const char *text, uint64_t *out_bytes);

/* Formats bytes with a binary unit ("1.50 GiB", "512 B") into buf. Returns buf. */
char *sizes_format(uint64_t bytes, char *buf, size_t cap);

#endif
