#include "sample/stop_filter.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"

enum hy_status stop_filter_init(struct stop_filter *sf, const char *const *stops, int n_stops,
                                size_t max_push)
{
    memset(sf, 0, sizeof(*sf));
    for (int i = 0; i < n_stops; i++) {
        const size_t n = strlen(stops[i]);
        if (n == 0) return err_set(HY_ERR_INVALID_ARG, "stop string %d is empty", i + 1);
        sf->max_stop = HY_MAX(sf->max_stop, n);
    }
    sf->stops = stops;
    sf->n_stops = n_stops;
    sf->cap = sf->max_stop + max_push + 1;
    sf->buf = mem_xmalloc(sf->cap);
    return HY_OK;
}

void stop_filter_free(struct stop_filter *sf)
{
    if (!sf) return;
    free(sf->buf);
    memset(sf, 0, sizeof(*sf));
}

/* Earliest position of a whole stop string in s[0..n), or -1. */
static ptrdiff_t find_stop(const struct stop_filter *sf, const char *s, size_t n)
{
    ptrdiff_t best = -1;
    for (int i = 0; i < sf->n_stops; i++) {
        const char *hit = memmem(s, n, sf->stops[i], strlen(sf->stops[i]));
        if (hit && (best < 0 || hit - s < best)) best = hit - s;
    }
    return best;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of a stop string. */
static size_t held_tail(const struct stop_filter *sf, const char *s, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < sf->n_stops; i++) {
        const size_t m = strlen(sf->stops[i]);
        for (size_t k = HY_MIN(n, m - 1); k > best; k--)
            if (memcmp(s + n - k, sf->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

bool stop_filter_push(struct stop_filter *sf, const char *text, size_t len, const char **out,
                      size_t *out_len)
{
    if (sf->off) {
        memmove(sf->buf, sf->buf + sf->off, sf->len);
        sf->off = 0;
    }
    if (sf->len + len > sf->cap) {
        sf->cap = sf->len + len;
        sf->buf = mem_xrealloc(sf->buf, sf->cap);
    }
    memcpy(sf->buf + sf->len, text, len);
    const size_t n = sf->len + len;
    *out = sf->buf;
    const ptrdiff_t at = find_stop(sf, sf->buf, n);
    if (at >= 0) {
        *out_len = (size_t)at;
        sf->len = 0;
        return true;
    }
    const size_t keep = held_tail(sf, sf->buf, n);
    *out_len = n - keep;
    sf->off = n - keep;
    sf->len = keep;
    return false;
}

void stop_filter_flush(struct stop_filter *sf, const char **out, size_t *out_len)
{
    *out = sf->buf + sf->off;
    *out_len = sf->len;
    sf->off = 0;
    sf->len = 0;
}
