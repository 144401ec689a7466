/*
 * AVX-512 kernels (F, BW, VL, DQ) and their VNNI variants. Compiled with the
 * AVX-512 and VNNI flags by CMake for this file only; quant_cpu.c uses the
 * plain table after CPUID and XCR0 said AVX-512 F/BW/VL/DQ is usable, and
 * the VNNI table only when the CPU also has AVX512_VNNI. Only dot products
 * are here: activation quantization and dequantization are a small part of
 * a matrix-vector product and the AVX2 versions (quant_avx2.c) serve both
 * levels.
 *
 * Contract: as in quant_avx2.c, the same integer sums as the reference and
 * float scaling in another order (see quant_cpu.h). Each kernel is written
 * once as an always-inline worker taking `vnni`, a constant: true uses
 * vpdpbusd (u8 x s8, four products into int32) and vpdpwssd (s16 x s16 pairs
 * into int32), false the maddubs/madd/add sequences they replace. The VNNI
 * forms never saturate; the others are used only where no int16 pair sum
 * can overflow (weights unsigned and at most 63, as in quant_avx2.c).
 *
 * Layout choices, made so that the shuffle port (port 5, the only one that
 * moves data across 128-bit lanes) does little:
 *   - legacy 32-blocks go two per 512-bit vector; the second block's bytes
 *     come from a masked broadcast or an insert from memory, not a shuffle,
 *     and the two block scales come from quant_cpu_f16_table by broadcast
 *     loads;
 *   - K-quant weights are loaded with a 256-bit broadcast and split into
 *     their two nibble (or bit-pair) planes with a per-64-bit-lane variable
 *     shift, which puts 64 consecutive elements in element order, so that
 *     the activations are a plain load;
 *   - high bits (Q5_K, Q3_K) are brought to their place with a per-lane
 *     rotate, whose amounts keep every bit inside its byte.
 * Rejected: vpermb-based nibble spreading (needs VBMI, which the AVX-512
 * level does not require) and float scaling per sub-block (needs as many
 * shuffles to build the scale vectors as the int16 scales do, plus converts).
 */
#include "quant/quant_cpu.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__) && defined(__AVX2__) && defined(__FMA__) &&   \
    defined(__F16C__)

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_avx512_inl.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Workers are specialised per `vnni` value by inlining. */
#define K_INLINE static inline __attribute__((always_inline))

/* ---- helpers ------------------------------------------------------------ */





static inline const float *half_table(void)
{
    return quant_cpu_f16_table;
}



/* acc + the sums of four u[k] * s[k] per int32 lane (u unsigned, s signed).
 * Without VNNI exact while every pair u * s + u' * s' fits int16. */
K_INLINE __m512i dot_us(__m512i acc, __m512i u, __m512i s, bool vnni)
{
    if (vnni) return _mm512_dpbusd_epi32(acc, u, s);
    __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
    __asm__("" : "+v"(p)); /* as in madd_acc */
    return _mm512_add_epi32(acc, p);
}

/* acc + a[2k] * b[2k] + a[2k+1] * b[2k+1] per int32 lane (int16 inputs). */
K_INLINE __m512i madd_acc(__m512i acc, __m512i a, __m512i b, bool vnni)
{
    if (vnni) return _mm512_dpwssd_epi32(acc, a, b);
    __m512i p = _mm512_madd_epi16(a, b);
    /* This file is compiled with -mavx512vnni, and clang fuses madd + add
     * into vpdpwssd, which would fault on an AVX-512 CPU without VNNI: the
     * empty asm makes p opaque so that the two stay apart. */
    __asm__("" : "+v"(p));
    return _mm512_add_epi32(acc, p);
}

/* hf(xa) * hf(ya) in the low 8 lanes, hf(xb) * hf(yb) (or 0) in the high 8. */
K_INLINE __m512 scale_pair(hy_half xa, hy_half ya, hy_half xb, hy_half yb, bool two)
{
    const float *t = half_table();
    __m512 dx = _mm512_set1_ps(t[xa]), dy = _mm512_set1_ps(t[ya]);
    if (!two) return _mm512_maskz_mul_ps(0x00ff, dx, dy);
    dx = _mm512_mask_mov_ps(dx, 0xff00, _mm512_set1_ps(t[xb]));
    dy = _mm512_mask_mov_ps(dy, 0xff00, _mm512_set1_ps(t[yb]));
    return _mm512_mul_ps(dx, dy);
}

/* ---- float types -------------------------------------------------------- */

static float f32_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        prefetch_ahead(x + i, 256);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}


static float f16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const hy_half *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        prefetch_ahead(x + i, 128);
        a0 = _mm512_fmadd_ps(f16x16(x + i), f16x16(y + i), a0);
        a1 = _mm512_fmadd_ps(f16x16(x + i + 16), f16x16(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(f16x16(x + i + 32), f16x16(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(f16x16(x + i + 48), f16x16(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(f16x16(x + i), f16x16(y + i), a0);
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        const __m512 yv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + i));
        a1 = _mm512_fmadd_ps(xv, yv, a1);
    }
    return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* 32 bfloat16 as two float vectors, the even elements and the odd ones
 * (both operands of the dot product split alike). */
static inline void bf16x32(__m512i v, __m512 *even, __m512 *odd)
{
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int32_t)0xffff0000)));
}

static float bf16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 xe, xo, ye, yo;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        prefetch_ahead(x + i, 128);
        bf16x32(load512(x + i), &xe, &xo);
        bf16x32(load512(y + i), &ye, &yo);
        a0 = _mm512_fmadd_ps(xe, ye, a0);
        a1 = _mm512_fmadd_ps(xo, yo, a1);
        bf16x32(load512(x + i + 32), &xe, &xo);
        bf16x32(load512(y + i + 32), &ye, &yo);
        a2 = _mm512_fmadd_ps(xe, ye, a2);
        a3 = _mm512_fmadd_ps(xo, yo, a3);
    }
    if (i < n) {
        /* masked: the missing elements are zero in both */
        const int64_t left = n - i;
        const __mmask32 m0 = left >= 32 ? 0xffffffffu : (__mmask32)((1u << left) - 1);
        bf16x32(_mm512_maskz_loadu_epi16(m0, x + i), &xe, &xo);
        bf16x32(_mm512_maskz_loadu_epi16(m0, y + i), &ye, &yo);
        a0 = _mm512_fmadd_ps(xe, ye, a0);
        a1 = _mm512_fmadd_ps(xo, yo, a1);
        if (left > 32) {
            const __mmask32 m1 = (__mmask32)((1u << (left - 32)) - 1);
            bf16x32(_mm512_maskz_loadu_epi16(m1, x + i + 32), &xe, &xo);
            bf16x32(_mm512_maskz_loadu_epi16(m1, y + i + 32), &ye, &yo);
            a2 = _mm512_fmadd_ps(xe, ye, a2);
            a3 = _mm512_fmadd_ps(xo, yo, a3);
        }
    }
    return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ---- 32-element blocks -------------------------------------------------- */

/* Sums of (q - off) * y per int32 lane for a block pair, q unsigned (<= 31),
 * y signed: q * y - off * y, exact in both forms. */
K_INLINE __m512i offset_dot(__m512i q, __m512i y, int off, bool vnni)
{
    const __m512i o = _mm512_set1_epi8((char)off);
    if (vnni)
        return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y),
                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), o, y));
    const __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(q, y), _mm512_maddubs_epi16(o, y));
    return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
}

K_INLINE __m512 q4_0_pair(const struct block_q4_0 *x, const struct block_q8_0 *y, bool two,
                          bool vnni)
{
    const __m512i q = nibbles_pair(x[0].qs, x[two].qs, two);
    const __m512i v = load_pair32(y[0].qs, y[two].qs, two);
    return _mm512_cvtepi32_ps(offset_dot(q, v, 8, vnni));
}

K_INLINE float q4_0_dot(int64_t n, const struct block_q4_0 *x, const struct block_q8_0 *y,
                        bool vnni)
{
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(x + i, 4 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d, true),
                               q4_0_pair(x + i, y + i, true, vnni), acc0);
        acc1 = _mm512_fmadd_ps(scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d, true),
                               q4_0_pair(x + i + 2, y + i + 2, true, vnni), acc1);
    }
    for (; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + two].d, y[i + two].d, two),
                               q4_0_pair(x + i, y + i, two, vnni), acc0);
    }
    return hsum512(_mm512_add_ps(acc0, acc1));
}

K_INLINE __m512 q4_1_pair(const struct block_q4_1 *x, const struct block_q8_1 *y, bool two,
                          bool vnni)
{
    const __m512i q = nibbles_pair(x[0].qs, x[two].qs, two);
    const __m512i v = load_pair32(y[0].qs, y[two].qs, two);
    return _mm512_cvtepi32_ps(dot_us(_mm512_setzero_si512(), q, v, vnni));
}

/* m * s of Q4_1/Q5_1 blocks, in lane 0. */
static inline __m128 offset_term(hy_half m, hy_half s, __m128 acc)
{
    const float *t = half_table();
    return _mm_fmadd_ss(_mm_load_ss(&t[m]), _mm_load_ss(&t[s]), acc);
}

K_INLINE float q4_1_dot(int64_t n, const struct block_q4_1 *x, const struct block_q8_1 *y,
                        bool vnni)
{
    const int64_t nb = n / QK8_1;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(x + i, 4 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d, true),
                               q4_1_pair(x + i, y + i, true, vnni), acc0);
        acc1 = _mm512_fmadd_ps(scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d, true),
                               q4_1_pair(x + i + 2, y + i + 2, true, vnni), acc1);
        m0 = offset_term(x[i].m, y[i].s, offset_term(x[i + 1].m, y[i + 1].s, m0));
        m1 = offset_term(x[i + 2].m, y[i + 2].s, offset_term(x[i + 3].m, y[i + 3].s, m1));
    }
    for (; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + two].d, y[i + two].d, two),
                               q4_1_pair(x + i, y + i, two, vnni), acc0);
        m0 = offset_term(x[i].m, y[i].s, m0);
        if (two) m1 = offset_term(x[i + 1].m, y[i + 1].s, m1);
    }
    return hsum512(_mm512_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(m0, m1));
}

K_INLINE __m512 q5_0_pair(const struct block_q5_0 *x, const struct block_q8_0 *y, bool two,
                          bool vnni)
{
    const __m512i q = q5_pair(x[0].qs, x[0].qh, x[two].qs, x[two].qh, two);
    const __m512i v = load_pair32(y[0].qs, y[two].qs, two);
    return _mm512_cvtepi32_ps(offset_dot(q, v, 16, vnni));
}

K_INLINE float q5_0_dot(int64_t n, const struct block_q5_0 *x, const struct block_q8_0 *y,
                        bool vnni)
{
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(x + i, 4 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d, true),
                               q5_0_pair(x + i, y + i, true, vnni), acc0);
        acc1 = _mm512_fmadd_ps(scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d, true),
                               q5_0_pair(x + i + 2, y + i + 2, true, vnni), acc1);
    }
    for (; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + two].d, y[i + two].d, two),
                               q5_0_pair(x + i, y + i, two, vnni), acc0);
    }
    return hsum512(_mm512_add_ps(acc0, acc1));
}

K_INLINE __m512 q5_1_pair(const struct block_q5_1 *x, const struct block_q8_1 *y, bool two,
                          bool vnni)
{
    const __m512i q = q5_pair(x[0].qs, x[0].qh, x[two].qs, x[two].qh, two);
    const __m512i v = load_pair32(y[0].qs, y[two].qs, two);
    return _mm512_cvtepi32_ps(dot_us(_mm512_setzero_si512(), q, v, vnni));
}

K_INLINE float q5_1_dot(int64_t n, const struct block_q5_1 *x, const struct block_q8_1 *y,
                        bool vnni)
{
    const int64_t nb = n / QK8_1;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(x + i, 4 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d, true),
                               q5_1_pair(x + i, y + i, true, vnni), acc0);
        acc1 = _mm512_fmadd_ps(scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d, true),
                               q5_1_pair(x + i + 2, y + i + 2, true, vnni), acc1);
        m0 = offset_term(x[i].m, y[i].s, offset_term(x[i + 1].m, y[i + 1].s, m0));
        m1 = offset_term(x[i + 2].m, y[i + 2].s, offset_term(x[i + 3].m, y[i + 3].s, m1));
    }
    for (; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + two].d, y[i + two].d, two),
                               q5_1_pair(x + i, y + i, two, vnni), acc0);
        m0 = offset_term(x[i].m, y[i].s, m0);
        if (two) m1 = offset_term(x[i + 1].m, y[i + 1].s, m1);
    }
    return hsum512(_mm512_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(m0, m1));
}

/* Q8_0 x Q8_0, both signed with -128 allowed. VNNI: (x + 128) * y - 128 * y,
 * x + 128 being x ^ 0x80 read as unsigned. Without: widened to int16. */
K_INLINE __m512 q8_0_pair(const struct block_q8_0 *x, const struct block_q8_0 *y, bool two)
{
    const __m512i u =
        _mm512_xor_si512(load_pair32(x[0].qs, x[two].qs, two), _mm512_set1_epi8((char)0x80));
    const __m512i v = load_pair32(y[0].qs, y[two].qs, two);
    const __m512i s = _mm512_sub_epi32(
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, v),
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), v));
    return _mm512_cvtepi32_ps(s);
}

static float q8_0_vec_dot_vnni(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q8_0 *x = vx;
    const struct block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(x + i, 4 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d, true),
                               q8_0_pair(x + i, y + i, true), acc0);
        acc1 = _mm512_fmadd_ps(scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d, true),
                               q8_0_pair(x + i + 2, y + i + 2, true), acc1);
    }
    for (; i < nb; i += 2) {
        const bool two = i + 1 < nb;
        acc0 = _mm512_fmadd_ps(scale_pair(x[i].d, y[i].d, x[i + two].d, y[i + two].d, two),
                               q8_0_pair(x + i, y + i, two), acc0);
    }
    return hsum512(_mm512_add_ps(acc0, acc1));
}

static inline __m512 q8_0_block(const struct block_q8_0 *x, const struct block_q8_0 *y)
{
    const __m512i a = _mm512_cvtepi8_epi16(load256(x->qs));
    const __m512i b = _mm512_cvtepi8_epi16(load256(y->qs));
    return _mm512_cvtepi32_ps(_mm512_madd_epi16(a, b));
}

static inline __m512 scale1(hy_half a, hy_half b)
{
    const float *t = half_table();
    return _mm512_mul_ps(_mm512_set1_ps(t[a]), _mm512_set1_ps(t[b]));
}

static float q8_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q8_0 *x = vx;
    const struct block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm512_fmadd_ps(scale1(x[i].d, y[i].d), q8_0_block(x + i, y + i), acc0);
        acc1 =
            _mm512_fmadd_ps(scale1(x[i + 1].d, y[i + 1].d), q8_0_block(x + i + 1, y + i + 1), acc1);
    }
    if (i < nb) acc0 = _mm512_fmadd_ps(scale1(x[i].d, y[i].d), q8_0_block(x + i, y + i), acc0);
    return hsum512(_mm512_add_ps(acc0, acc1));
}

/* ---- K-quants ------------------------------------------------------------ */

/* Word indices for vpermw. k_pair32[j]: words 0-15 take scale 2j, 16-31
 * scale 2j + 1 (64 elements of two 32-element sub-blocks after maddubs).
 * k_quad16[g]: each 8 words take one of the scales 4g..4g+3 (64 elements of
 * four 16-element sub-blocks). k_dup_mins: words 8..15 each twice. */
/* clang-format off */
static const int16_t k_pair32[4][32] = {
#define W16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    {W16(0), W16(1)}, {W16(2), W16(3)}, {W16(4), W16(5)}, {W16(6), W16(7)},
#undef W16
};
static const int16_t k_quad16[4][32] = {
#define W8(v) v, v, v, v, v, v, v, v
    {W8(0), W8(1), W8(2), W8(3)},
    {W8(4), W8(5), W8(6), W8(7)},
    {W8(8), W8(9), W8(10), W8(11)},
    {W8(12), W8(13), W8(14), W8(15)},
#undef W8
};
static const int16_t k_dup_mins[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};
/* clang-format on */




/* Q4_K and Q5_K: 8 sub-blocks of 32, 6-bit scales and mins. `hbits`
 * selects Q5_K (the fifth bit from qh). */
K_INLINE float k4_dot(int64_t nb, const uint8_t *base, size_t block_bytes, size_t qs_off,
                      size_t qh_off, bool hbits, const struct block_q8_K *y, bool vnni)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const float *t = half_table();
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(base + i * block_bytes, block_bytes);
        const uint8_t *b = base + i * block_bytes;
        hy_half hd, hmin;
        memcpy(&hd, b, sizeof(hd));
        memcpy(&hmin, b + 2, sizeof(hmin));
        const __m128i scmin = k4_scales(b + 4);
        const __m256i sm16 = _mm256_cvtepu8_epi16(scmin); /* words 0-7 scales, 8-15 mins */
        const __m256i mins = _mm256_madd_epi16(
            _mm256_permutexvar_epi16(_mm256_loadu_si256((const __m256i *)k_dup_mins), sm16),
            load256(y[i].bsums));
        const __m512i sc = _mm512_zextsi256_si512(sm16);
        const __m512i hb =
            hbits ? _mm512_broadcast_i64x4(load256(b + qh_off)) : _mm512_setzero_si512();
        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
            __m512i q = _mm512_and_si512(planes(b + qs_off + 32 * j, nib), m4);
            if (hbits) {
                /* bit 2j of qh[l] (low half) and 2j + 1 (high half) to bit 4:
                 * rotate left by 4 - 2j and 3 - 2j, inside each byte */
                const __m512i rot = _mm512_rolv_epi64(
                    hb, _mm512_setr_epi64((4 - 2 * j) & 63, (4 - 2 * j) & 63, (4 - 2 * j) & 63,
                                          (4 - 2 * j) & 63, (3 - 2 * j) & 63, (3 - 2 * j) & 63,
                                          (3 - 2 * j) & 63, (3 - 2 * j) & 63));
                q = _mm512_ternarylogic_epi32(q, rot, m16, 0xf8); /* q | (rot & 0x10) */
            }
            const __m512i p = _mm512_maddubs_epi16(q, load512(y[i].qs + 64 * j));
            sumi = madd_acc(sumi, p, perm16(k_pair32[j], sc), vnni);
        }
        const __m512 d = _mm512_mul_ps(_mm512_set1_ps(t[hd]), _mm512_set1_ps(y[i].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
        const __m256 dmin = _mm256_mul_ps(_mm256_set1_ps(t[hmin]), _mm256_set1_ps(y[i].d));
        acc_m = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(mins), acc_m);
    }
    return hsum512(acc) - hsum256(acc_m);
}

K_INLINE float q4_K_dot(int64_t n, const void *x, const void *y, bool vnni)
{
    return k4_dot(n / QK_K, x, sizeof(struct block_q4_K), offsetof(struct block_q4_K, qs), 0, false,
                  y, vnni);
}

K_INLINE float q5_K_dot(int64_t n, const void *x, const void *y, bool vnni)
{
    return k4_dot(n / QK_K, x, sizeof(struct block_q5_K), offsetof(struct block_q5_K, qs),
                  offsetof(struct block_q5_K, qh), true, y, vnni);
}

K_INLINE float q6_K_dot(int64_t n, const struct block_q6_K *x, const struct block_q8_K *y,
                        bool vnni)
{
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const float *t = half_table();
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[i].scales));
        /* q - 32: the -32 is taken out as 32 * scale * bsum (one bsum per sub-block) */
        const __m256i off = _mm256_madd_epi16(sc16, load256(y[i].bsums));
        const __m512i sc = _mm512_zextsi256_si512(sc16);
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i l = load512(x[i].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * h));
            /* elements 0-63 of the half: low nibbles of l, qh bits 0-1 (first
             * 32) and 2-3 (next 32) moved to bits 4-5 */
            const __m512i h01 = _mm512_and_si512(
                _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)), m30);
            const __m512i q01 = _mm512_ternarylogic_epi32(l, h01, m4, 0xec); /* (l & 0x0f) | h */
            /* elements 64-127: high nibbles of l, qh bits 4-5 and 6-7 */
            const __m512i h23 = _mm512_and_si512(
                _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)), m30);
            const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h23, m4, 0xec);
            const __m512i p01 = _mm512_maddubs_epi16(q01, load512(y[i].qs + 128 * h));
            const __m512i p23 = _mm512_maddubs_epi16(q23, load512(y[i].qs + 128 * h + 64));
            sumi = madd_acc(sumi, p01, perm16(k_quad16[2 * h], sc), vnni);
            sumi = madd_acc(sumi, p23, perm16(k_quad16[2 * h + 1], sc), vnni);
        }
        sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
        const __m512 d = _mm512_mul_ps(_mm512_set1_ps(t[x[i].d]), _mm512_set1_ps(y[i].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
    }
    return hsum512(acc);
}

K_INLINE float q2_K_dot(int64_t n, const struct block_q2_K *x, const struct block_q8_K *y,
                        bool vnni)
{
    const int64_t nb = n / QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m512i c01 = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i c23 = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
    const float *t = half_table();
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m128i sm = load128(x[i].scales);
        const __m512i sc = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sm, m4)));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i mins = _mm256_madd_epi16(mn, load256(y[i].bsums));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* elements 32m + l of the half: bits 2m of byte l */
            const __m512i q01 = _mm512_and_si512(planes(x[i].qs + 32 * h, c01), m3);
            const __m512i q23 = _mm512_and_si512(planes(x[i].qs + 32 * h, c23), m3);
            const __m512i p01 = _mm512_maddubs_epi16(q01, load512(y[i].qs + 128 * h));
            const __m512i p23 = _mm512_maddubs_epi16(q23, load512(y[i].qs + 128 * h + 64));
            sumi = madd_acc(sumi, p01, perm16(k_quad16[2 * h], sc), vnni);
            sumi = madd_acc(sumi, p23, perm16(k_quad16[2 * h + 1], sc), vnni);
        }
        const __m512 d = _mm512_mul_ps(_mm512_set1_ps(t[x[i].d]), _mm512_set1_ps(y[i].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
        const __m256 dmin = _mm256_mul_ps(_mm256_set1_ps(t[x[i].dmin]), _mm256_set1_ps(y[i].d));
        acc_m = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(mins), acc_m);
    }
    return hsum512(acc) - hsum256(acc_m);
}

/* Q3_K scales: see quant_avx2.c's q3_K_scales. */
static inline __m128i q3_K_scales(const struct block_q3_K *b)
{
    const __m128i v = _mm_srli_si128(load128((const uint8_t *)b + sizeof(*b) - 16), 2);
    const __m128i lo =
        _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, 0x44), _mm_setr_epi32(0, 0, 4, 4)),
                      _mm_set1_epi8(0x0f));
    const __m128i w2 = _mm_shuffle_epi32(v, 0xaa);
    const __m128i hi = _mm_or_si128(_mm_sllv_epi32(w2, _mm_setr_epi32(4, 2, 0, 32)),
                                    _mm_srlv_epi32(w2, _mm_setr_epi32(32, 32, 32, 2)));
    const __m128i sc = _mm_or_si128(lo, _mm_and_si128(hi, _mm_set1_epi8(0x30)));
    return _mm_sub_epi8(sc, _mm_set1_epi8(32));
}

K_INLINE float q3_K_dot(int64_t n, const struct block_q3_K *x, const struct block_q8_K *y,
                        bool vnni)
{
    const int64_t nb = n / QK_K;
    const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
    const __m512i c01 = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i c23 = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
    const float *t = half_table();
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3_K_scales(&x[i]));
        /* q = low2 + 4 * hbit - 4: the -4 is taken out as 4 * scale * bsum */
        const __m256i off = _mm256_madd_epi16(sc16, load256(y[i].bsums));
        const __m512i sc = _mm512_zextsi256_si512(sc16);
        const __m512i hm = _mm512_broadcast_i64x4(load256(x[i].hmask));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* element 32m + l of the half has its high bit in bit 4h + m of
             * hmask[l]; rotate it to bit 2 (amounts 2 - (4h + m), mod 64) */
            const int r = 4 * h;
            const __m512i rot01 = _mm512_rolv_epi64(
                hm, _mm512_setr_epi64((2 - r) & 63, (2 - r) & 63, (2 - r) & 63, (2 - r) & 63,
                                      (1 - r) & 63, (1 - r) & 63, (1 - r) & 63, (1 - r) & 63));
            const __m512i rot23 = _mm512_rolv_epi64(
                hm, _mm512_setr_epi64((0 - r) & 63, (0 - r) & 63, (0 - r) & 63, (0 - r) & 63,
                                      (-1 - r) & 63, (-1 - r) & 63, (-1 - r) & 63, (-1 - r) & 63));
            const __m512i lo01 = _mm512_and_si512(planes(x[i].qs + 32 * h, c01), m3);
            const __m512i lo23 = _mm512_and_si512(planes(x[i].qs + 32 * h, c23), m3);
            const __m512i q01 =
                _mm512_ternarylogic_epi32(lo01, rot01, m4, 0xf8); /* lo | (rot & 4) */
            const __m512i q23 = _mm512_ternarylogic_epi32(lo23, rot23, m4, 0xf8);
            const __m512i p01 = _mm512_maddubs_epi16(q01, load512(y[i].qs + 128 * h));
            const __m512i p23 = _mm512_maddubs_epi16(q23, load512(y[i].qs + 128 * h + 64));
            sumi = madd_acc(sumi, p01, perm16(k_quad16[2 * h], sc), vnni);
            sumi = madd_acc(sumi, p23, perm16(k_quad16[2 * h + 1], sc), vnni);
        }
        sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 2)));
        const __m512 d = _mm512_mul_ps(_mm512_set1_ps(t[x[i].d]), _mm512_set1_ps(y[i].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
    }
    return hsum512(acc);
}

/* ---- entry points: one per type and level ------------------------------- */

#define K_ENTRY(name, worker, xt, yt)                                                              \
    static float name##_vec_dot(int64_t n, const void *restrict x, const void *restrict y)         \
    {                                                                                              \
        return worker(n, (const xt *)x, (const yt *)y, false);                                     \
    }                                                                                              \
    static float name##_vec_dot_vnni(int64_t n, const void *restrict x, const void *restrict y)    \
    {                                                                                              \
        return worker(n, (const xt *)x, (const yt *)y, true);                                      \
    }

K_ENTRY(q4_0, q4_0_dot, struct block_q4_0, struct block_q8_0)
K_ENTRY(q4_1, q4_1_dot, struct block_q4_1, struct block_q8_1)
K_ENTRY(q5_0, q5_0_dot, struct block_q5_0, struct block_q8_0)
K_ENTRY(q5_1, q5_1_dot, struct block_q5_1, struct block_q8_1)
K_ENTRY(q2_K, q2_K_dot, struct block_q2_K, struct block_q8_K)
K_ENTRY(q3_K, q3_K_dot, struct block_q3_K, struct block_q8_K)
K_ENTRY(q4_K, q4_K_dot, void, void)
K_ENTRY(q5_K, q5_K_dot, void, void)
K_ENTRY(q6_K, q6_K_dot, struct block_q6_K, struct block_q8_K)

#undef K_ENTRY

const bool quant_avx512_built = true;

const struct quant_kernels quant_avx512_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F32] = {NULL, NULL, f32_vec_dot},   [HY_TYPE_F16] = {NULL, NULL, f16_vec_dot},
    [HY_TYPE_BF16] = {NULL, NULL, bf16_vec_dot}, [HY_TYPE_Q4_0] = {NULL, NULL, q4_0_vec_dot},
    [HY_TYPE_Q4_1] = {NULL, NULL, q4_1_vec_dot}, [HY_TYPE_Q5_0] = {NULL, NULL, q5_0_vec_dot},
    [HY_TYPE_Q5_1] = {NULL, NULL, q5_1_vec_dot}, [HY_TYPE_Q8_0] = {NULL, NULL, q8_0_vec_dot},
    [HY_TYPE_Q2_K] = {NULL, NULL, q2_K_vec_dot}, [HY_TYPE_Q3_K] = {NULL, NULL, q3_K_vec_dot},
    [HY_TYPE_Q4_K] = {NULL, NULL, q4_K_vec_dot}, [HY_TYPE_Q5_K] = {NULL, NULL, q5_K_vec_dot},
    [HY_TYPE_Q6_K] = {NULL, NULL, q6_K_vec_dot},
};

const struct quant_kernels quant_avx512_vnni_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q4_0] = {NULL, NULL, q4_0_vec_dot_vnni},
    [HY_TYPE_Q4_1] = {NULL, NULL, q4_1_vec_dot_vnni},
    [HY_TYPE_Q5_0] = {NULL, NULL, q5_0_vec_dot_vnni},
    [HY_TYPE_Q5_1] = {NULL, NULL, q5_1_vec_dot_vnni},
    [HY_TYPE_Q8_0] = {NULL, NULL, q8_0_vec_dot_vnni},
    [HY_TYPE_Q2_K] = {NULL, NULL, q2_K_vec_dot_vnni},
    [HY_TYPE_Q3_K] = {NULL, NULL, q3_K_vec_dot_vnni},
    [HY_TYPE_Q4_K] = {NULL, NULL, q4_K_vec_dot_vnni},
    [HY_TYPE_Q5_K] = {NULL, NULL, q5_K_vec_dot_vnni},
    [HY_TYPE_Q6_K] = {NULL, NULL, q6_K_vec_dot_vnni},
};

#else

const bool quant_avx512_built = false;
const struct quant_kernels quant_avx512_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};
const struct quant_kernels quant_avx512_vnni_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};

#endif
