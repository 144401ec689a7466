/*
 * AVX2 + FMA + F16C kernels (x86-64, Haswell and later). Compiled with
 * -mavx2 -mfma -mf16c by CMake for this file only; quant_cpu.c calls into it
 * only after CPUID said the CPU has all three.
 *
 * What each kernel computes is defined by the reference (quant_ref.c):
 *
 *   vec_dot     the same integer sum per block (or per sub-block, scaled by
 *               the same integer scales), then float scaling and accumulation
 *               in another order: results agree up to float reassociation.
 *   from_float  the same bytes, including the rounding (roundf for Q8_0/Q8_1,
 *               ties to even for Q8_K) and the low-8-bit store of an
 *               out-of-range value. Blocks whose values are NaN, inf or tiny
 *               enough for the reciprocal scale to overflow go through the
 *               reference itself: rare, and exactness there is not worth
 *               vector code.
 *   to_float    the same floats: the same multiplications and additions in
 *               the same order, never fused into FMA.
 *
 * How the integer dot products stay exact. _mm256_maddubs_epi16 multiplies
 * an unsigned byte by a signed one and adds pairs with int16 saturation, so
 * the weight side is always kept unsigned (0..63 at most: the offset of Q4_0,
 * Q5_0, Q3_K and Q6_K is subtracted afterwards as offset * sum(activations),
 * and for the K-quants that sum is the activation's bsums) and no pair sum
 * can reach 32767 even at q8 = -128. The common sign trick (|x| times y with
 * x's sign) is not used: it overflows at y = -128. Q8_0 x Q8_0 widens both
 * sides to int16 instead.
 *
 * Not here: AVX-512 (quant_avx512.c, which falls back to these for what it
 * does not implement), the prompt tiles (quant_gemm_avx2.c), repacked layouts.
 */
#include "quant/quant_cpu.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_ref.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- helpers ------------------------------------------------------------ */

#include "quant/quant_avx2_inl.h"

static inline float h2f(hy_half h)
{
    return _cvtsh_ss(h);
}

/* A block scale as a float, by table (see quant_cpu.h). */
static inline float hf(hy_half h)
{
    return quant_cpu_f16_table[h];
}

/* hf(a) * hf(b) in all lanes: two broadcast loads and a multiply, no shuffle. */
static inline __m256 scale2(hy_half a, hy_half b)
{
    return _mm256_mul_ps(_mm256_broadcast_ss(&quant_cpu_f16_table[a]),
                         _mm256_broadcast_ss(&quant_cpu_f16_table[b]));
}

static inline hy_half f2h(float f)
{
    return (hy_half)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static inline float hsum_ps128(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Sum of u[k] * s[k] (u unsigned bytes, s signed) in 8 int32 lanes; exact
 * while every u[k] * s[k] pair sum fits int16 (u <= 127). */
static inline __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The 12 scale bytes of Q4_K/Q5_K (layout in blocks.h) unpacked into bytes
 * 0..7 = the 6-bit scales and 8..15 = the 6-bit mins. The 16-byte load
 * reads 4 bytes of qs beyond the scales, inside the block. As dwords
 * w0..w2: scales 0-3 = w0 & 63, 4-7 = (w2 & 15) | (w0 >> 6) << 4, mins
 * 0-3 = w1 & 63, 4-7 = (w2 >> 4) | (w1 >> 6) << 4, per byte. */
static inline __m128i k4_scales(const uint8_t *scales)
{
    const __m128i v = load128(scales);
    const __m128i a = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0x98), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i b = _mm_srli_epi32(_mm_shuffle_epi32(v, 0x50), 2);
    return _mm_or_si128(
        _mm_and_si128(a, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
        _mm_and_si128(b, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030)));
}

/* The 12 scale bytes of Q3_K unpacked into 16 signed scales (minus 32
 * done). As dwords w0..w2: scale j has low 4 bits from w0 (j < 4), w1 (4-7),
 * w0 >> 4 (8-11), w1 >> 4 (12-15), and bits 4-5 from bits 2 * (j / 4) of
 * byte j % 4 of w2. p points at the block's last 16 bytes (qs[62] on): the
 * scales are bytes 2..13. */
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

/* Byte shuffles that broadcast int16 scales. With 8 scales of 32-element
 * sub-blocks in both 128-bit lanes, k_bcast8[j] puts scale j in all 16 words.
 * With 8 scales of 16-element sub-blocks, k_pair8[m] puts scale 2m in the low
 * lane and scale 2m + 1 in the high lane (the 32 elements of one vector). */
/* clang-format off */
static const uint8_t k_bcast8[8][32] = {
#define B16(j) 2 * (j), 2 * (j) + 1
#define ROW(j) {B16(j), B16(j), B16(j), B16(j), B16(j), B16(j), B16(j), B16(j), \
                B16(j), B16(j), B16(j), B16(j), B16(j), B16(j), B16(j), B16(j)}
    ROW(0), ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6), ROW(7),
#undef ROW
};
static const uint8_t k_pair8[4][32] = {
#define ROW(m) {B16(2 * m), B16(2 * m), B16(2 * m), B16(2 * m), B16(2 * m), B16(2 * m),         \
                B16(2 * m), B16(2 * m), B16(2 * m + 1), B16(2 * m + 1), B16(2 * m + 1),         \
                B16(2 * m + 1), B16(2 * m + 1), B16(2 * m + 1), B16(2 * m + 1), B16(2 * m + 1)}
    ROW(0), ROW(1), ROW(2), ROW(3),
#undef ROW
#undef B16
};
/* clang-format on */

/* ---- float types -------------------------------------------------------- */

static float f32_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead(x + i, 128);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

static inline __m256 f16x8(const hy_half *p)
{
    return _mm256_cvtph_ps(load128(p));
}

static float f16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const hy_half *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead(x + i, 64);
        a0 = _mm256_fmadd_ps(f16x8(x + i), f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(f16x8(x + i + 8), f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(f16x8(x + i + 16), f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(f16x8(x + i + 24), f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(f16x8(x + i), f16x8(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += h2f(x[i]) * h2f(y[i]);
    return sum;
}

static inline __m256 bf16x8(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

/* 16 bfloat16 as two float vectors: the even elements (shifted up) and the
 * odd ones (masked), without a shuffle. Both operands of a dot product are
 * split alike, so the pairs still meet. */
static inline void bf16x16(const uint16_t *p, __m256 *even, __m256 *odd)
{
    const __m256i v = load256(p);
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int32_t)0xffff0000)));
}

static float bf16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        prefetch_ahead(x + i, 64);
        __m256 xe, xo, ye, yo;
        bf16x16(x + i, &xe, &xo);
        bf16x16(y + i, &ye, &yo);
        a0 = _mm256_fmadd_ps(xe, ye, a0);
        a1 = _mm256_fmadd_ps(xo, yo, a1);
        bf16x16(x + i + 16, &xe, &xo);
        bf16x16(y + i + 16, &ye, &yo);
        a2 = _mm256_fmadd_ps(xe, ye, a2);
        a3 = _mm256_fmadd_ps(xo, yo, a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(x + i), bf16x8(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += quant_bf16_to_f32(x[i]) * quant_bf16_to_f32(y[i]);
    return sum;
}

/* F16C converts like quant_f16_to_f32 except that it quiets a signalling
 * NaN; groups holding an inf/NaN half (exponent all ones) go the scalar way. */
static void f16_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const hy_half *h = src;
    const __m128i exp = _mm_set1_epi16(0x7c00);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i v = load128(h + i);
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(v, exp), exp))) {
            for (int k = 0; k < 8; k++) dst[i + k] = quant_f16_to_f32(h[i + k]);
            continue;
        }
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(v));
    }
    for (; i < n; i++) dst[i] = quant_f16_to_f32(h[i]);
}

/* F16C rounds like quant_f32_to_f16 but keeps NaN payload bits where the
 * reference stores 0x7e00; groups holding a NaN go the scalar way. */
static void f16_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    hy_half *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(src + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; k++) h[i + k] = quant_f32_to_f16(src[i + k]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) h[i] = quant_f32_to_f16(src[i]);
}

static void bf16_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(h + i));
    for (; i < n; i++) dst[i] = quant_bf16_to_f32(h[i]);
}

/* Rounds to nearest even on the bit pattern, as quant_f32_to_bf16; groups
 * holding a NaN go the scalar way. */
static void bf16_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    uint16_t *h = dst;
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(src + i), v1 = _mm256_loadu_ps(src + i + 8);
        const __m256 nan =
            _mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q));
        if (_mm256_movemask_ps(nan)) {
            for (int k = 0; k < 16; k++) h[i + k] = quant_f32_to_bf16(src[i + k]);
            continue;
        }
        __m256i b0 = _mm256_castps_si256(v0), b1 = _mm256_castps_si256(v1);
        b0 = _mm256_add_epi32(
            b0, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b0, 16), one)));
        b1 = _mm256_add_epi32(
            b1, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b1, 16), one)));
        const __m256i p = _mm256_packus_epi32(_mm256_srli_epi32(b0, 16), _mm256_srli_epi32(b1, 16));
        _mm256_storeu_si256((__m256i *)(h + i), _mm256_permute4x64_epi64(p, 0xd8));
    }
    for (; i < n; i++) h[i] = quant_f32_to_bf16(src[i]);
}

/* ---- activation quantizers --------------------------------------------- */

/* roundf: to nearest, ties away from zero. x - trunc(x) is exact in float. */
static inline __m256 round_away(__m256 v)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* The low bytes of 32 int32 (as a C store into int8_t keeps them), in order. */
static inline __m256i low_bytes32(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    const __m256i m = _mm256_set1_epi32(0xff);
    /* values 0..255 now: the unsigned packs below cannot saturate */
    const __m256i a = _mm256_packus_epi32(_mm256_and_si256(i0, m), _mm256_and_si256(i1, m));
    const __m256i b = _mm256_packus_epi32(_mm256_and_si256(i2, m), _mm256_and_si256(i3, m));
    const __m256i p = _mm256_packus_epi16(a, b);
    /* the packs worked per 128-bit lane: dwords are in order 0 4 1 5 2 6 3 7 */
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Largest |x| of 32 floats (NaN lanes skipped) and whether any was NaN. */
static inline float absmax32(const float *x, bool *nan)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps(), u = _mm256_setzero_ps();
    for (int k = 0; k < 32; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v), m);
        u = _mm256_or_ps(u, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    *nan = _mm256_movemask_ps(u) != 0;
    return _mm_cvtss_f32(s);
}

/* Blocks the vector path leaves to the reference: NaN, inf, or a largest
 * magnitude so small that a reciprocal scale may overflow. */
static inline bool q8_block_is_odd(float amax, bool nan)
{
    return nan || !(amax <= 3.0e38f) || (amax != 0.0f && amax < 1.0e-30f);
}

/* Quantizes 32 values with q = roundf(x * id) (q8_0/q8_1); returns sum(q). */
static inline int q8_round32(const float *x, float id, int8_t *qs)
{
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i[4];
    for (int k = 0; k < 4; k++)
        i[k] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul)));
    _mm256_storeu_si256((__m256i *)qs, low_bytes32(i[0], i[1], i[2], i[3]));
    return hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
}

static void q8_0_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        bool nan;
        const float amax = absmax32(x, &nan);
        if (q8_block_is_odd(amax, nan)) {
            quant_ref_from_float_q8_0(x, &y[i], QK8_0);
            continue;
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        (void)q8_round32(x, id, y[i].qs);
    }
}

static void q8_1_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const float *x = src + i * QK8_1;
        bool nan;
        const float amax = absmax32(x, &nan);
        if (q8_block_is_odd(amax, nan)) {
            quant_ref_from_float_q8_1(x, &y[i], QK8_1);
            continue;
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        /* the sums of the rounded values equal those of the stored bytes: |q| <= 127 here */
        const int sum = q8_round32(x, id, y[i].qs);
        y[i].s = f2h((float)sum * d);
    }
}

/* Sums of the two 16-byte halves of 32 signed bytes. */
static inline void bsums32(__m256i q, int16_t *out)
{
    __m256i s =
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
    s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0x4e));
    s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0xb1));
    out[0] = (int16_t)_mm256_extract_epi32(s, 0);
    out[1] = (int16_t)_mm256_extract_epi32(s, 4);
}

static void q8_K_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_K *y = dst;
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        __m256 m = _mm256_setzero_ps(), u = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8) {
            const __m256 v = _mm256_loadu_ps(x + k);
            m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v), m);
            u = _mm256_or_ps(u, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        s = _mm_max_ss(s, _mm_movehdup_ps(s));
        const float amax = _mm_cvtss_f32(s);
        if (q8_block_is_odd(amax, _mm256_movemask_ps(u) != 0) || amax == 0.0f) {
            quant_ref_from_float_q8_K(x, &y[i], QK_K);
            continue;
        }
        /* the signed value of the first element of largest magnitude */
        float max = 0.0f;
        const __m256 am = _mm256_set1_ps(amax);
        for (int k = 0; k < QK_K; k += 8) {
            const __m256 v = _mm256_loadu_ps(x + k);
            const int hit =
                _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign_bit, v), am, _CMP_EQ_OQ));
            if (hit) {
                max = x[k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            /* cvtps rounds to nearest even under the default MXCSR, as ggml's nearest_int */
            for (int j = 0; j < 4; j++)
                q[j] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), mul)), top);
            const __m256i b = low_bytes32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + k), b);
            bsums32(b, y[i].bsums + k / 16);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- 32-element blocks: vec_dot ----------------------------------------- */

/* Each legacy dot walks two blocks per step into two accumulators, so that
 * the FMA latency (4 cycles) is not a bound per block. The per-block sums
 * are vectors of 8 int32 partial sums, converted to float and scaled. */

/* (q - 8) * v summed as q * v - 8 * v: both maddubs exact in int16. */
static inline __m256 q4_0_block(const struct block_q4_0 *x, const struct block_q8_0 *y)
{
    const __m256i q = nibbles32(x->qs);
    const __m256i v = load256(y->qs);
    const __m256i p =
        _mm256_sub_epi16(_mm256_maddubs_epi16(q, v), _mm256_maddubs_epi16(_mm256_set1_epi8(8), v));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static float q4_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_0 *x = vx;
    const struct block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q4_0_block(x + i, y + i), acc0);
        acc1 =
            _mm256_fmadd_ps(scale2(x[i + 1].d, y[i + 1].d), q4_0_block(x + i + 1, y + i + 1), acc1);
    }
    if (i < nb) acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q4_0_block(x + i, y + i), acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static inline __m256 q4_1_block(const struct block_q4_1 *x, const struct block_q8_1 *y)
{
    return _mm256_cvtepi32_ps(dot_us(nibbles32(x->qs), load256(y->qs)));
}

/* The offset term m * s of Q4_1/Q5_1 blocks, in lane 0. */
static inline __m128 offset_term(hy_half m, hy_half s, __m128 acc)
{
    return _mm_fmadd_ss(_mm_load_ss(&quant_cpu_f16_table[m]), _mm_load_ss(&quant_cpu_f16_table[s]),
                        acc);
}

static float q4_1_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_1 *x = vx;
    const struct block_q8_1 *y = vy;
    const int64_t nb = n / QK8_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m128 accm0 = _mm_setzero_ps(), accm1 = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q4_1_block(x + i, y + i), acc0);
        acc1 =
            _mm256_fmadd_ps(scale2(x[i + 1].d, y[i + 1].d), q4_1_block(x + i + 1, y + i + 1), acc1);
        accm0 = offset_term(x[i].m, y[i].s, accm0);
        accm1 = offset_term(x[i + 1].m, y[i + 1].s, accm1);
    }
    if (i < nb) {
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q4_1_block(x + i, y + i), acc0);
        accm0 = offset_term(x[i].m, y[i].s, accm0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(accm0, accm1));
}

static inline __m256 q5_0_block(const struct block_q5_0 *x, const struct block_q8_0 *y)
{
    const __m256i q = q5_values32(x->qs, x->qh);
    const __m256i v = load256(y->qs);
    const __m256i p =
        _mm256_sub_epi16(_mm256_maddubs_epi16(q, v), _mm256_maddubs_epi16(_mm256_set1_epi8(16), v));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static float q5_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_0 *x = vx;
    const struct block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q5_0_block(x + i, y + i), acc0);
        acc1 =
            _mm256_fmadd_ps(scale2(x[i + 1].d, y[i + 1].d), q5_0_block(x + i + 1, y + i + 1), acc1);
    }
    if (i < nb) acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q5_0_block(x + i, y + i), acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static inline __m256 q5_1_block(const struct block_q5_1 *x, const struct block_q8_1 *y)
{
    const __m256i q = q5_values32(x->qs, x->qh);
    return _mm256_cvtepi32_ps(dot_us(q, load256(y->qs)));
}

static float q5_1_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_1 *x = vx;
    const struct block_q8_1 *y = vy;
    const int64_t nb = n / QK8_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m128 accm0 = _mm_setzero_ps(), accm1 = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q5_1_block(x + i, y + i), acc0);
        acc1 =
            _mm256_fmadd_ps(scale2(x[i + 1].d, y[i + 1].d), q5_1_block(x + i + 1, y + i + 1), acc1);
        accm0 = offset_term(x[i].m, y[i].s, accm0);
        accm1 = offset_term(x[i + 1].m, y[i + 1].s, accm1);
    }
    if (i < nb) {
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q5_1_block(x + i, y + i), acc0);
        accm0 = offset_term(x[i].m, y[i].s, accm0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(accm0, accm1));
}

/* Both sides signed and -128 allowed: widened to int16, no saturation. */
static inline __m256 q8_0_block(const struct block_q8_0 *x, const struct block_q8_0 *y)
{
    const __m256i x0 = _mm256_cvtepi8_epi16(load128(x->qs));
    const __m256i x1 = _mm256_cvtepi8_epi16(load128(x->qs + 16));
    const __m256i y0 = _mm256_cvtepi8_epi16(load128(y->qs));
    const __m256i y1 = _mm256_cvtepi8_epi16(load128(y->qs + 16));
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(x0, y0), _mm256_madd_epi16(x1, y1));
    return _mm256_cvtepi32_ps(s);
}

static float q8_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q8_0 *x = vx;
    const struct block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(x + i, 2 * sizeof(*x));
        acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q8_0_block(x + i, y + i), acc0);
        acc1 =
            _mm256_fmadd_ps(scale2(x[i + 1].d, y[i + 1].d), q8_0_block(x + i + 1, y + i + 1), acc1);
    }
    if (i < nb) acc0 = _mm256_fmadd_ps(scale2(x[i].d, y[i].d), q8_0_block(x + i, y + i), acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- K-quants: vec_dot -------------------------------------------------- */

/* Per 256-block: d * sum over sub-blocks of scale * sum(q * y), minus
 * dmin * sum over sub-blocks of min * bsums: the reference's integers, in
 * 8 int32 lanes instead of its order. */

static float q2_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q2_K *x = vx;
    const struct block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m128i sm = load128(x[i].scales);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i mins = _mm256_madd_epi16(mn, load256(y[i].bsums));
        const __m256i scl[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h);
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int m = 0; m < 4; m++) {
                const __m256i qm = _mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3);
                const __m256i p = _mm256_maddubs_epi16(qm, load256(q8 + 32 * m));
                const __m256i s = _mm256_shuffle_epi8(scl[h], load256(k_pair8[m]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        const float d = y[i].d * hf(x[i].d), dmin = y[i].d * hf(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(mins), acc_m);
    }
    return hsum_ps(acc) - hsum_ps(acc_m);
}

static float q3_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q3_K *x = vx;
    const struct block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m256i sc = _mm256_cvtepi8_epi16(q3_K_scales(&x[i]));
        /* q = low2 + 4 * hbit - 4: the -4 is taken out as 4 * scale * bsum */
        const __m256i off = _mm256_madd_epi16(sc, load256(y[i].bsums));
        const __m256i scl[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        __m256i hm = load256(x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h);
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int m = 0; m < 4; m++) {
                /* bit 4h + m of each hmask byte, moved to bit 2 */
                const __m256i hb = _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4);
                hm = _mm256_srli_epi16(hm, 1);
                const __m256i qm =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3), hb);
                const __m256i p = _mm256_maddubs_epi16(qm, load256(q8 + 32 * m));
                const __m256i s = _mm256_shuffle_epi8(scl[h], load256(k_pair8[m]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 2));
        const float d = hf(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* Mins term of Q4_K/Q5_K: sum of min[j] * (bsums[2j] + bsums[2j + 1]), in 4 lanes. */
static inline __m128i k4_mins_dot(__m128i scmin, const int16_t *bsums)
{
    const __m128i mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scmin, scmin));
    const __m128i pair = _mm_hadd_epi16(load128(bsums), load128(bsums + 8));
    return _mm_madd_epi16(mins, pair);
}

static float q4_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_K *x = vx;
    const struct block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m128i scmin = k4_scales(x[i].scales);
        const __m128i mins = k4_mins_dot(scmin, y[i].bsums);
        const __m256i scl = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[i].qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i p0 = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * j));
            const __m256i p1 = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * j + 32));
            const __m256i s0 = _mm256_shuffle_epi8(scl, load256(k_bcast8[2 * j]));
            const __m256i s1 = _mm256_shuffle_epi8(scl, load256(k_bcast8[2 * j + 1]));
            sumi = _mm256_add_epi32(
                sumi, _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
        }
        const float d = hf(x[i].d) * y[i].d, dmin = hf(x[i].dmin) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins), acc_m);
    }
    return hsum_ps(acc) - hsum_ps128(acc_m);
}

static float q5_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_K *x = vx;
    const struct block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m16 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m128i scmin = k4_scales(x[i].scales);
        const __m128i mins = k4_mins_dot(scmin, y[i].bsums);
        const __m256i scl = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scmin));
        __m256i hb = load256(x[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[i].qs + 32 * j);
            /* bit 2j, then 2j + 1, of each qh byte moved to bit 4 */
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 4), m16));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 3), m16));
            hb = _mm256_srli_epi16(hb, 2);
            const __m256i p0 = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * j));
            const __m256i p1 = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * j + 32));
            const __m256i s0 = _mm256_shuffle_epi8(scl, load256(k_bcast8[2 * j]));
            const __m256i s1 = _mm256_shuffle_epi8(scl, load256(k_bcast8[2 * j + 1]));
            sumi = _mm256_add_epi32(
                sumi, _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
        }
        const float d = hf(x[i].d) * y[i].d, dmin = hf(x[i].dmin) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins), acc_m);
    }
    return hsum_ps(acc) - hsum_ps128(acc_m);
}

static float q6_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q6_K *x = vx;
    const struct block_q8_K *y = vy;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m256i sc = _mm256_cvtepi8_epi16(load128(x[i].scales));
        /* q - 32: the -32 is taken out as 32 * scale * bsum (one bsum per sub-block) */
        const __m256i off = _mm256_madd_epi16(sc, load256(y[i].bsums));
        const __m256i scl[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                _mm256_permute2x128_si256(sc, sc, 0x11)};
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = load256(x[i].ql + 64 * h), l1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            const int8_t *q8 = y[i].qs + 128 * h;
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int m = 0; m < 4; m++) {
                const __m256i p = _mm256_maddubs_epi16(q[m], load256(q8 + 32 * m));
                const __m256i s = _mm256_shuffle_epi8(scl[h], load256(k_pair8[m]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
        const float d = hf(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* ---- to_float ------------------------------------------------------------ */

/* 8 unsigned bytes → 8 floats (exact). */
static inline __m256 u8x8_to_ps(__m128i b)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
}

static inline __m256 i8x8_to_ps(__m128i b)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

/* The 32 bytes of v as 4 groups of 8, each in the low 64 bits of an xmm. */
static inline void split8(__m256i v, __m128i out[4])
{
    const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    out[0] = lo;
    out[1] = _mm_unpackhi_epi64(lo, lo);
    out[2] = hi;
    out[3] = _mm_unpackhi_epi64(hi, hi);
}

static void q4_0_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d));
        __m128i g[4];
        split8(_mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8)), g);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + i * QK4_0 + 8 * k, _mm256_mul_ps(i8x8_to_ps(g[k]), d));
    }
}

static void q4_1_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d)), m = _mm256_set1_ps(h2f(x[i].m));
        __m128i g[4];
        split8(nibbles32(x[i].qs), g);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + i * QK4_1 + 8 * k,
                             _mm256_add_ps(_mm256_mul_ps(u8x8_to_ps(g[k]), d), m));
    }
}

static void q5_0_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d));
        const __m256i q = q5_values32(x[i].qs, x[i].qh);
        __m128i g[4];
        split8(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), g);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + i * QK5_0 + 8 * k, _mm256_mul_ps(i8x8_to_ps(g[k]), d));
    }
}

static void q5_1_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d)), m = _mm256_set1_ps(h2f(x[i].m));
        __m128i g[4];
        split8(q5_values32(x[i].qs, x[i].qh), g);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + i * QK5_1 + 8 * k,
                             _mm256_add_ps(_mm256_mul_ps(u8x8_to_ps(g[k]), d), m));
    }
}

static void q8_0_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d));
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(
                dst + i * QK8_0 + 8 * k,
                _mm256_mul_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i *)(x[i].qs + 8 * k))), d));
    }
}

/* y = dl * q - ml for 32 unsigned bytes q, in order; dl and ml scalars as in
 * the reference, product and difference rounded separately. */
static inline void store_affine32(float *y, __m256i q, float dl, float ml)
{
    const __m256 d = _mm256_set1_ps(dl), m = _mm256_set1_ps(ml);
    __m128i g[4];
    split8(q, g);
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(g[k])), m));
}

/* y = dl * q for 16 signed bytes q, dl per 16. */
static inline void store_scaled16(float *y, __m128i q, float dl)
{
    const __m256 d = _mm256_set1_ps(dl);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, i8x8_to_ps(q)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_unpackhi_epi64(q, q))));
}

static void q2_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q2_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        float *y = dst + i * QK_K;
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h);
            for (int m = 0; m < 4; m++) {
                const __m256i qm = _mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3);
                __m128i g[4];
                split8(qm, g);
                for (int s = 0; s < 2; s++) {
                    const uint8_t sc = x[i].scales[8 * h + 2 * m + s];
                    const __m256 dl = _mm256_set1_ps(d * (float)(sc & 0xF));
                    const __m256 ml = _mm256_set1_ps(min * (float)(sc >> 4));
                    float *o = y + 128 * h + 32 * m + 16 * s;
                    _mm256_storeu_ps(o, _mm256_sub_ps(_mm256_mul_ps(dl, u8x8_to_ps(g[2 * s])), ml));
                    _mm256_storeu_ps(
                        o + 8, _mm256_sub_ps(_mm256_mul_ps(dl, u8x8_to_ps(g[2 * s + 1])), ml));
                }
            }
        }
    }
}

static void q3_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q3_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        int8_t sc[16];
        _mm_storeu_si128((__m128i *)sc, q3_K_scales(&x[i]));
        __m256i hm = load256(x[i].hmask);
        float *y = dst + i * QK_K;
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h);
            for (int m = 0; m < 4; m++) {
                const __m256i hb = _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4);
                hm = _mm256_srli_epi16(hm, 1);
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3);
                /* low2 - 4 * !hbit = (low2 | 4 * hbit) - 4 */
                const __m256i v = _mm256_sub_epi8(_mm256_or_si256(lo, hb), m4);
                const int s = 8 * h + 2 * m;
                store_scaled16(y + 16 * s, _mm256_castsi256_si128(v), d * (float)sc[s]);
                store_scaled16(y + 16 * s + 16, _mm256_extracti128_si256(v, 1),
                               d * (float)sc[s + 1]);
            }
        }
    }
}

static void q4_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q4_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        uint8_t scmin[16];
        _mm_storeu_si128((__m128i *)scmin, k4_scales(x[i].scales));
        float *y = dst + i * QK_K;
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[i].qs + 32 * j);
            store_affine32(y + 64 * j, _mm256_and_si256(q, m4), d * (float)scmin[2 * j],
                           min * (float)scmin[8 + 2 * j]);
            store_affine32(y + 64 * j + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                           d * (float)scmin[2 * j + 1], min * (float)scmin[8 + 2 * j + 1]);
        }
    }
}

static void q5_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q5_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m16 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        uint8_t scmin[16];
        _mm_storeu_si128((__m128i *)scmin, k4_scales(x[i].scales));
        __m256i hb = load256(x[i].qh);
        float *y = dst + i * QK_K;
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[i].qs + 32 * j);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 4), m16));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 3), m16));
            hb = _mm256_srli_epi16(hb, 2);
            store_affine32(y + 64 * j, lo, d * (float)scmin[2 * j], min * (float)scmin[8 + 2 * j]);
            store_affine32(y + 64 * j + 32, hi, d * (float)scmin[2 * j + 1],
                           min * (float)scmin[8 + 2 * j + 1]);
        }
    }
}

static void q6_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q6_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30),
                  m32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        float *y = dst + i * QK_K;
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = load256(x[i].ql + 64 * h), l1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int m = 0; m < 4; m++) {
                const __m256i v = _mm256_sub_epi8(q[m], m32);
                const int s = 8 * h + 2 * m;
                /* (d * scale) * q, as the reference groups it */
                store_scaled16(y + 16 * s, _mm256_castsi256_si128(v), d * (float)x[i].scales[s]);
                store_scaled16(y + 16 * s + 16, _mm256_extracti128_si256(v, 1),
                               d * (float)x[i].scales[s + 1]);
            }
        }
    }
}

static void q8_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256 d = _mm256_set1_ps(x[i].d);
        for (int k = 0; k < QK_K; k += 8)
            _mm256_storeu_ps(
                dst + i * QK_K + k,
                _mm256_mul_ps(d, i8x8_to_ps(_mm_loadl_epi64((const __m128i *)(x[i].qs + k)))));
    }
}

const bool quant_avx2_built = true;

const struct quant_kernels quant_avx2_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F32] = {NULL, NULL, f32_vec_dot},
    [HY_TYPE_F16] = {f16_to_float, f16_from_float, f16_vec_dot},
    [HY_TYPE_BF16] = {bf16_to_float, bf16_from_float, bf16_vec_dot},
    [HY_TYPE_Q4_0] = {q4_0_to_float, NULL, q4_0_vec_dot},
    [HY_TYPE_Q4_1] = {q4_1_to_float, NULL, q4_1_vec_dot},
    [HY_TYPE_Q5_0] = {q5_0_to_float, NULL, q5_0_vec_dot},
    [HY_TYPE_Q5_1] = {q5_1_to_float, NULL, q5_1_vec_dot},
    [HY_TYPE_Q8_0] = {q8_0_to_float, q8_0_from_float, q8_0_vec_dot},
    [HY_TYPE_Q8_1] = {NULL, q8_1_from_float, NULL},
    [HY_TYPE_Q2_K] = {q2_K_to_float, NULL, q2_K_vec_dot},
    [HY_TYPE_Q3_K] = {q3_K_to_float, NULL, q3_K_vec_dot},
    [HY_TYPE_Q4_K] = {q4_K_to_float, NULL, q4_K_vec_dot},
    [HY_TYPE_Q5_K] = {q5_K_to_float, NULL, q5_K_vec_dot},
    [HY_TYPE_Q6_K] = {q6_K_to_float, NULL, q6_K_vec_dot},
    [HY_TYPE_Q8_K] = {q8_K_to_float, q8_K_from_float, NULL},
};

#else

const bool quant_avx2_built = false;
const struct quant_kernels quant_avx2_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};

#endif
