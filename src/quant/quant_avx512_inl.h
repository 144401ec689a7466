/*
 * AVX-512 helpers shared by the vec_dot kernels (quant_avx512.c) and the
 * batched ones (quant_gemm_avx512.c), which must compute every output
 * operation for operation alike: one definition, included by both (each is
 * compiled with the same AVX-512 flags). Internal to src/quant.
 */
#ifndef HY_QUANT_QUANT_AVX512_INL_H
#define HY_QUANT_QUANT_AVX512_INL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
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

static inline __m128i load128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

static inline float hsum512(__m512 v)
{
    const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

static inline float hsum256(__m256 s)
{
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

static inline __m512i perm16(const int16_t *idx, __m512i words)
{
    return _mm512_permutexvar_epi16(load512(idx), words);
}

/* 32 bytes at p in both halves, each 64-bit lane shifted right by the
 * lane's count: 64 elements of two bit planes in element order. */
static inline __m512i planes(const uint8_t *p, __m512i counts)
{
    return _mm512_srlv_epi64(_mm512_broadcast_i64x4(load256(p)), counts);
}

/* The 12 scale bytes of Q4_K/Q5_K unpacked into bytes 0..7 = scales, 8..15
 * = mins (the same arithmetic as quant_avx2.c's k4_scales). */
static inline __m128i k4_scales(const uint8_t *scales)
{
    const __m128i v = load128(scales);
    const __m128i a = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0x98), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i b = _mm_srli_epi32(_mm_shuffle_epi32(v, 0x50), 2);
    return _mm_or_si128(
        _mm_and_si128(a, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
        _mm_and_si128(b, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030)));
}

static inline __m512 f16x16(const hy_half *p)
{
    return _mm512_cvtph_ps(load256(p));
}

/* Legacy 32-element blocks go two per vector. `two` false (the odd last
 * block of a row): the upper half is zero and b is not read. The workers
 * below are always inlined, so that `two`, a constant at each call, selects
 * the code. */
#define AVX512_PAIR_INLINE static inline __attribute__((always_inline))

/* 32 bytes at a in the low half, 32 at b in the high half. */
AVX512_PAIR_INLINE __m512i load_pair32(const void *a, const void *b, bool two)
{
    if (two) return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1);
    return _mm512_zextsi256_si512(load256(a));
}

/* The 16 nibble bytes at a and at b as 64 bytes 0..15 in element order:
 * a's low nibbles, a's high nibbles, b's low, b's high. */
AVX512_PAIR_INLINE __m512i nibbles_pair(const uint8_t *a, const uint8_t *b, bool two)
{
    __m512i v = _mm512_broadcast_i32x4(load128(a));
    if (two)
        v = _mm512_mask_broadcast_i32x4(v, 0xff00, load128(b));
    else
        v = _mm512_maskz_mov_epi32(0x00ff, v);
    v = _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

/* The 32 + 32 high bits of a Q5 block pair as a byte mask. */
AVX512_PAIR_INLINE __mmask64 qh_pair(const uint8_t *a, const uint8_t *b, bool two)
{
    uint32_t lo, hi = 0;
    memcpy(&lo, a, sizeof(lo));
    if (two) memcpy(&hi, b, sizeof(hi));
    return _cvtu64_mask64((uint64_t)lo | (uint64_t)hi << 32);
}

/* q5 = nibble + 16 * bit: the bit mask adds 16 where set. */
AVX512_PAIR_INLINE __m512i q5_pair(const uint8_t *qs_a, const uint8_t *qh_a, const uint8_t *qs_b,
                                   const uint8_t *qh_b, bool two)
{
    const __m512i q = nibbles_pair(qs_a, qs_b, two);
    return _mm512_mask_add_epi8(q, qh_pair(qh_a, qh_b, two), q, _mm512_set1_epi8(16));
}

#undef AVX512_PAIR_INLINE

#endif
