/*
 * Stop strings over streamed text: generated text goes in piece by piece,
 * and comes out as soon as it is certain not to be part of a stop string.
 *
 * After each push the filter holds back the longest tail of the text that
 * is a proper prefix of some stop string (it may still grow into one) and
 * returns everything before it. When a stop string is complete, the text
 * before its earliest occurrence is returned, the stop string itself and
 * anything after it are dropped, and push reports the hit. At the end of
 * generation, stop_filter_flush returns what is still held back (it never
 * became a stop string). Matching is on bytes: a stop string is found
 * wherever its bytes occur, across piece boundaries.
 *
 * Memory: sized at init for the longest stop string plus the longest push
 * the caller announces; a longer push grows the buffer (never in practice:
 * the caller's pieces are bounded by the tokenizer).
 */
#ifndef HY_SAMPLE_STOP_FILTER_H
#define HY_SAMPLE_STOP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base.h"

struct stop_filter {
    const char *const *stops; /* borrowed, [n_stops] non-empty NUL-terminated strings */
    int n_stops;
    size_t max_stop; /* bytes of the longest */
    char *buf;       /* owned, cap bytes: [off, off + len) is the held-back text */
    size_t cap;
    size_t off; /* start of the held text; the bytes before it were returned by the last push */
    size_t len;
};

/* stops[0..n_stops) must outlive the filter; n_stops may be 0 (all text
 * passes through). max_push: the longest text a push is expected to get.
 * Errors: HY_ERR_INVALID_ARG when a stop string is empty. */
HY_MUST_CHECK enum hy_status stop_filter_init(struct stop_filter *sf, const char *const *stops,
                                              int n_stops, size_t max_push);
void stop_filter_free(struct stop_filter *sf);

/* Appends text[0..len); *out and *out_len get the text that is safe to
 * print now (valid until the next call). Returns true when a stop string
 * completed: *out is then the text before it, and the filter is empty. */
bool stop_filter_push(struct stop_filter *sf, const char *text, size_t len, const char **out,
                      size_t *out_len);

/* Everything held back (at the end of generation), and the filter is empty. */
void stop_filter_flush(struct stop_filter *sf, const char **out, size_t *out_len);

#endif
