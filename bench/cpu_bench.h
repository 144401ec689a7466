/*
 * What the CPU benchmark programs share: a comma-separated list of
 * integers, int64_t order for qsort, the plain memory read rate their
 * tables print beside each thread count, and weights of random values.
 */
#ifndef HY_BENCH_CPU_BENCH_H
#define HY_BENCH_CPU_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "hw/hw.h"
#include "quant/quant.h"

/* Up to max integers of the comma-separated v into out; their count, or -1
 * where an item is not an integer. */
static inline int parse_list(const char *v, int *out, int max)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    int n = 0;
    for (char *t = strtok(buf, ","); t && n < max; t = strtok(NULL, ",")) {
        char *end;
        const long x = strtol(t, &end, 10);
        if (end == t || *end != '\0' || x < -1000000 || x > 1000000) return -1;
        out[n++] = (int)x;
    }
    return n;
}

static inline int cmp_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* GB/s of a plain read of 512 MiB (past the last-level cache) with each of
 * the n thread counts into gbs; false when the buffer cannot be had. */
static inline bool mem_read_rates(const int *threads, int n, double *gbs)
{
    const size_t mem_n = (size_t)512 << 20 >> 2;
    float *mem = malloc(mem_n * sizeof(float));
    if (!mem) return false;
    for (size_t i = 0; i < mem_n; i++) mem[i] = (float)(i & 1023);
    for (int t = 0; t < n; t++) gbs[t] = hw_ram_read_bw(mem, mem_n, threads[t]) / 1e9;
    free(mem);
    return true;
}

/* A matrix of rows x cols of type, each row random values quantized (src:
 * cols floats of scratch); NULL when out of memory. */
static inline uint8_t *random_matrix(struct rng *r, uint32_t type, int64_t rows, int64_t cols,
                                     float *src)
{
    const size_t rb = (size_t)quant_bytes(type, (uint64_t)cols);
    uint8_t *m = malloc(rb * (size_t)rows);
    if (!m) return NULL;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t c = 0; c < cols; c++) src[c] = (float)rng_normal(r) * 0.02f;
        quant_traits(type)->from_float(src, m + (size_t)i * rb, cols);
    }
    return m;
}

/* A copy of n bytes at an address of its own; NULL when out of memory. */
static inline uint8_t *copy_of(const void *src, size_t n)
{
    uint8_t *p = malloc(n);
    if (p) memcpy(p, src, n);
    return p;
}

#endif
