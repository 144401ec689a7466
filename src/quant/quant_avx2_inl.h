/*
 * AVX2 helpers shared by the vec_dot kernels (quant_avx2.c) and the prompt
 * tiles (quant_gemm_avx2.c), which must compute every output operation for
 * operation alike: one definition, included by both (each is compiled with
 * the same AVX2 flags). Internal to src/quant.
 */
#ifndef HY_QUANT_QUANT_AVX2_INL_H
#define HY_QUANT_QUANT_AVX2_INL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant_cpu.h"

/* Prefetch of the weights QUANT_PREFETCH_BYTES ahead of p, for a step that
 * reads `bytes` from p (64-byte lines; a line split between two steps is
 * covered by the next step's first prefetch). By integer arithmetic: the
 * address may lie past the end of the matrix. */
static inline void prefetch_ahead(const void *p, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)((uintptr_t)p + QUANT_PREFETCH_BYTES + o), _MM_HINT_T0);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline __m128i load128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

/* 16 bytes of nibbles → 32 bytes 0..15: the low nibbles, then the high ones
 * (the element order of Q4_0/Q4_1/Q5_0/Q5_1 blocks). */
static inline __m256i nibbles32(const uint8_t *p)
{
    /* both lanes loaded by one broadcast; the high lane shifted by 4 */
    const __m256i b = _mm256_broadcastsi128_si256(load128(p));
    const __m256i s = _mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(s, _mm256_set1_epi8(0x0f));
}

/* The 32 bits at p (little-endian) → 32 bytes, 0x10 where the bit is set. */
static inline __m256i bits32_to_0x10(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof(w));
    /* byte k takes byte k / 8 of w, then keeps bit k % 8 */
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int32_t)w),
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* The 32 five-bit values 0..31 of a Q5_0/Q5_1 block in element order: its
 * nibbles (qs) with 16 added where its high bit (qh) is set. */
static inline __m256i q5_values32(const uint8_t *qs, const uint8_t *qh)
{
    return _mm256_or_si256(nibbles32(qs), bits32_to_0x10(qh));
}

#endif
