/*
 * Reference dequantize / quantize / dot product (contracts in quant_ref.h).
 *
 * What "reference" means here: these functions reproduce llama.cpp's ggml
 * (build 7597) exactly, and tests/test_quant_ref.c checks that against vectors
 * produced by ggml itself. Exactness is not a matter of the algorithm alone:
 * every float operation must be the same operation, on the same operands, in
 * the same order. Rules for anyone editing this file:
 *
 *   - Keep each expression's shape: a * b * c is (a * b) * c, and an int
 *     operand is converted to float before the operation, as C does.
 *     Reassociating, hoisting a reciprocal or "simplifying" x / d into
 *     x * (1 / d) changes bytes.
 *   - No FMA contraction: CMakeLists.txt compiles this file with
 *     -ffp-contract=off, and for clang the pragma below says the same (GCC in
 *     -std=c11 mode would not contract either, but does in its default gnu
 *     mode, and clang contracts within an expression by default). With
 *     contraction, a third of the K-quant rows come out different. ggml's
 *     quantizers live in ggml-base, which x86-64 builds compile without FMA;
 *     builds for aarch64 (where FMA is baseline and GCC contracts in gnu
 *     mode) can write other bytes. Never build this file with -ffast-math.
 *   - Rounding: the K-quants round with ggml's nearest_int (add 1.5 * 2^23 and
 *     read the mantissa: round half to even, for |x| < 2^22); Q8_0/Q8_1 use
 *     roundf (half away from zero); Q4_0/Q4_1/Q5_0/Q5_1 add 0.5 (or the
 *     offset + 0.5) and truncate. Mixing these up passes most tests and fails
 *     on ties.
 *
 * Non-finite intermediate values. When a block's largest magnitude is tiny
 * (below about 3.7e-37 for Q8_0), the reciprocal of its scale overflows to
 * inf and x * (1/d) is inf or NaN. ggml then converts that to an integer,
 * which C leaves undefined; x86-64 gives INT32_MIN. ref_trunc() defines the
 * conversion that way, so the bytes agree with ggml built for x86-64 (an
 * ARM build of ggml stores different q there). Such a block's scale is zero
 * in half precision, so every dequantized value is zero on any platform.
 * Likewise, out-of-range ints stored into int8/uint8 fields keep their low
 * 8 bits, as ggml's implicit conversions do with GCC and clang.
 *
 * Only the quantizer paths llama-quantize takes without an importance matrix
 * are here (ggml's quantize_row_*_ref; with an imatrix ggml switches to other
 * searches, make_qkx3_quants / make_qp_quants, not implemented). Rejected: a
 * single parameterised quantizer for all types. The searches differ in small
 * details (which rounding, which clamp, strict or non-strict comparisons,
 * weights) that all matter for exactness, so each type keeps its own code,
 * as ggml does.
 */
#include "quant/quant_ref.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/base.h"
#include "quant/blocks.h"
#include "quant/quant.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ggml's threshold below which a K-quant sub-block counts as all zero */
#define REF_GROUP_MAX_EPS 1e-15f

/* ---- helpers ------------------------------------------------------------ */

/* Round to nearest, ties to even, for |f| <= 2^22 (ggml's nearest_int): the
 * addition puts the integer part in the low mantissa bits. Defined for every
 * float; outside that range the result is what ggml's trick gives. */
static inline int ref_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* C's float-to-int truncation, with x86-64's INT32_MIN where C leaves it
 * undefined (NaN, inf, out of range). See the file comment. */
static inline int32_t ref_trunc(float f)
{
    if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;
    return (int32_t)f;
}

/* The value an int8_t field holds after storing v: its low 8 bits, signed. */
static inline int ref_i8(int32_t v)
{
    int b = (int)((uint32_t)v & 0xffu);
    return b >= 128 ? b - 256 : b;
}

static inline float ref_h2f(hy_half h)
{
    return quant_f16_to_f32(h);
}

static inline hy_half ref_f2h(float f)
{
    return quant_f32_to_f16(f);
}

/* Scale and min (6 bits each) of sub-block j of a Q4_K/Q5_K block; layout in blocks.h. */
static inline void ref_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* 6-bit signed scale j (already minus 32) of a Q3_K block; layout in blocks.h. */
static inline int ref_q3_K_scale(const uint8_t *scales, int j)
{
    int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Packs 2-bit values L[0..256) as Q2_K/Q3_K do: per 128, byte l holds
 * L[l], L[l+32], L[l+64], L[l+96] in bit pairs 0-1, 2-3, 4-5, 6-7. */
static void ref_pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
        }
    }
}

/* ---- float types -------------------------------------------------------- */

void quant_ref_to_float_f32(const void *restrict src, float *restrict dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void quant_ref_from_float_f32(const float *restrict src, void *restrict dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void quant_ref_to_float_f16(const void *restrict src, float *restrict dst, int64_t n)
{
    const hy_half *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = quant_f16_to_f32(h[i]);
}

void quant_ref_from_float_f16(const float *restrict src, void *restrict dst, int64_t n)
{
    hy_half *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = quant_f32_to_f16(src[i]);
}

void quant_ref_to_float_bf16(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_f32(h[i]);
}

void quant_ref_from_float_bf16(const float *restrict src, void *restrict dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = quant_f32_to_bf16(src[i]);
}

/* ggml's scalar float dot products multiply in float and sum in double. */
float quant_ref_vec_dot_f32(int64_t n, const void *restrict x, const void *restrict y)
{
    const float *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(a[i] * b[i]);
    return (float)sum;
}

float quant_ref_vec_dot_f16(int64_t n, const void *restrict x, const void *restrict y)
{
    const hy_half *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(quant_f16_to_f32(a[i]) * quant_f16_to_f32(b[i]));
    return (float)sum;
}

float quant_ref_vec_dot_bf16(int64_t n, const void *restrict x, const void *restrict y)
{
    const uint16_t *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(quant_bf16_to_f32(a[i]) * quant_bf16_to_f32(b[i]));
    return (float)sum;
}

/* ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 ------------------------------------------ */

/* Largest magnitude of a block and the value carrying it (the first one on ties). */
static float ref_signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

void quant_ref_from_float_q4_0(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK4_0 == 0);
    struct block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        const float max = ref_signed_absmax(x, QK4_0);
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ref_f2h(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + QK4_0 / 2] * id;
            const int q0 = HY_MIN(15, ref_i8(ref_trunc(x0 + 8.5f)));
            const int q1 = HY_MIN(15, ref_i8(ref_trunc(x1 + 8.5f)));
            y[i].qs[j] = (uint8_t)((uint8_t)q0 | ((uint8_t)q1 << 4));
        }
    }
}

void quant_ref_to_float_q4_0(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK4_0 == 0);
    const struct block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float d = ref_h2f(x[i].d);
        float *y = dst + i * QK4_0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* Smallest and largest value of a block. */
static void ref_min_max(const float *x, int n, float *min, float *max)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo;
    *max = hi;
}

void quant_ref_from_float_q4_1(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK4_1 == 0);
    struct block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const float *x = src + i * QK4_1;
        float min, max;
        ref_min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ref_f2h(d);
        y[i].m = ref_f2h(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + QK4_1 / 2] - min) * id;
            const int q0 = HY_MIN(15, ref_i8(ref_trunc(x0 + 0.5f)));
            const int q1 = HY_MIN(15, ref_i8(ref_trunc(x1 + 0.5f)));
            y[i].qs[j] = (uint8_t)((uint8_t)q0 | ((uint8_t)q1 << 4));
        }
    }
}

void quant_ref_to_float_q4_1(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK4_1 == 0);
    const struct block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const float d = ref_h2f(x[i].d);
        const float m = ref_h2f(x[i].m);
        float *y = dst + i * QK4_1;
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* Stores 5-bit values q0 (element j) and q1 (element j + 16) of a Q5 block. */
static inline void ref_put_q5(uint8_t *qs, uint32_t *qh, int j, uint8_t q0, uint8_t q1)
{
    qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    *qh |= ((q0 & 0x10u) >> 4) << j;
    *qh |= ((q1 & 0x10u) >> 4) << (j + 16);
}

/* 5-bit value of element j (0..31) of a Q5 block. */
static inline int ref_get_q5(const uint8_t *qs, uint32_t qh, int j)
{
    int lo = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
    return lo | (int)(((qh >> j) & 1u) << 4);
}

void quant_ref_from_float_q5_0(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK5_0 == 0);
    struct block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const float *x = src + i * QK5_0;
        const float max = ref_signed_absmax(x, QK5_0);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ref_f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + QK5_0 / 2] * id;
            const uint8_t q0 = (uint8_t)HY_MIN(31, ref_i8(ref_trunc(x0 + 16.5f)));
            const uint8_t q1 = (uint8_t)HY_MIN(31, ref_i8(ref_trunc(x1 + 16.5f)));
            ref_put_q5(y[i].qs, &qh, j, q0, q1);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

void quant_ref_to_float_q5_0(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK5_0 == 0);
    const struct block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const float d = ref_h2f(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof(qh));
        float *y = dst + i * QK5_0;
        for (int j = 0; j < QK5_0; j++) y[j] = (float)(ref_get_q5(x[i].qs, qh, j) - 16) * d;
    }
}

void quant_ref_from_float_q5_1(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK5_1 == 0);
    struct block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const float *x = src + i * QK5_1;
        float min, max;
        ref_min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ref_f2h(d);
        y[i].m = ref_f2h(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + QK5_1 / 2] - min) * id;
            /* no clamp to 31 here, unlike Q4_1: ggml has none either */
            const uint8_t q0 = (uint8_t)ref_trunc(x0 + 0.5f);
            const uint8_t q1 = (uint8_t)ref_trunc(x1 + 0.5f);
            ref_put_q5(y[i].qs, &qh, j, q0, q1);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

void quant_ref_to_float_q5_1(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK5_1 == 0);
    const struct block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const float d = ref_h2f(x[i].d);
        const float m = ref_h2f(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof(qh));
        float *y = dst + i * QK5_1;
        for (int j = 0; j < QK5_1; j++) y[j] = (float)ref_get_q5(x[i].qs, qh, j) * d + m;
    }
}

/* ---- Q8_0 / Q8_1 -------------------------------------------------------- */

/* d = amax / 127 and q = roundf(x / d) for one block of 32; returns sum(q). */
static int ref_quantize_q8_block(const float *x, hy_half *dh, int8_t *qs, float *d_out)
{
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) amax = HY_MAX(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *dh = ref_f2h(d);
    *d_out = d;
    int sum = 0;
    for (int j = 0; j < QK8_0; j++) {
        qs[j] = (int8_t)ref_i8(ref_trunc(roundf(x[j] * id)));
        sum += qs[j];
    }
    return sum;
}

void quant_ref_from_float_q8_0(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK8_0 == 0);
    struct block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d;
        (void)ref_quantize_q8_block(src + i * QK8_0, &y[i].d, y[i].qs, &d);
    }
}

void quant_ref_from_float_q8_1(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK8_1 == 0);
    struct block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d;
        int sum = ref_quantize_q8_block(src + i * QK8_1, &y[i].d, y[i].qs, &d);
        y[i].s = ref_f2h((float)sum * d);
    }
}

void quant_ref_to_float_q8_0(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK8_0 == 0);
    const struct block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float d = ref_h2f(x[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = (float)x[i].qs[j] * d;
    }
}

void quant_ref_to_float_q8_1(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK8_1 == 0);
    const struct block_q8_1 *x = src;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const float d = ref_h2f(x[i].d);
        for (int j = 0; j < QK8_1; j++) dst[i * QK8_1 + j] = (float)x[i].qs[j] * d;
    }
}

/* ---- dot products of the 32-blocks -------------------------------------- */

float quant_ref_vec_dot_q4_0_q8_0(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK8_0 == 0);
    const struct block_q4_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK8_0 / 2];
        }
        sumf += (float)sumi * ref_h2f(x[i].d) * ref_h2f(y[i].d);
    }
    return sumf;
}

float quant_ref_vec_dot_q4_1_q8_1(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK8_1 == 0);
    const struct block_q4_1 *x = vx;
    const struct block_q8_1 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK8_1 / 2];
        }
        sumf += (ref_h2f(x[i].d) * ref_h2f(y[i].d)) * (float)sumi +
                ref_h2f(x[i].m) * ref_h2f(y[i].s);
    }
    return sumf;
}

float quant_ref_vec_dot_q5_0_q8_0(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK8_0 == 0);
    const struct block_q5_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof(qh));
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += (ref_get_q5(x[i].qs, qh, j) - 16) * y[i].qs[j];
        sumf += (ref_h2f(x[i].d) * ref_h2f(y[i].d)) * (float)sumi;
    }
    return sumf;
}

float quant_ref_vec_dot_q5_1_q8_1(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK8_1 == 0);
    const struct block_q5_1 *x = vx;
    const struct block_q8_1 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof(qh));
        int sumi = 0;
        for (int j = 0; j < QK8_1; j++) sumi += ref_get_q5(x[i].qs, qh, j) * y[i].qs[j];
        sumf += (ref_h2f(x[i].d) * ref_h2f(y[i].d)) * (float)sumi +
                ref_h2f(x[i].m) * ref_h2f(y[i].s);
    }
    return sumf;
}

float quant_ref_vec_dot_q8_0_q8_0(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK8_0 == 0);
    const struct block_q8_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += (float)sumi * (ref_h2f(x[i].d) * ref_h2f(y[i].d));
    }
    return sumf;
}

/* ---- K-quant scale searches (ggml's, the no-imatrix variants) ------------ */

/*
 * Symmetric search (ggml's make_qx_quants with rmse_type 1 and no weights;
 * used by Q6_K): L[i] = l + nmax with l in [-nmax, nmax), weights x^2. Starts
 * from the scale that maps the largest magnitude to -nmax, then tries 18
 * nearby scales and keeps the one with the best weighted fit. Returns the
 * least-squares scale of the chosen L.
 */
static float ref_make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < REF_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = ref_nearest_int(iscale * x[i]);
        l = HY_MAX(-nmax, HY_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = ref_nearest_int(iscale * x[i]);
            l = HY_MAX(-nmax, HY_MIN(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = ref_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + HY_MAX(-nmax, HY_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/*
 * Symmetric search of Q3_K (ggml's make_q3_quants with do_rmse): from the
 * scale that maps the largest magnitude to -nmax, up to 5 passes of moving
 * single values to the level that improves the x^2-weighted fit. L[i] in
 * [0, 2 * nmax). Returns the least-squares scale.
 */
static float ref_make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < REF_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = ref_nearest_int(iscale * x[i]);
        l = HY_MAX(-nmax, HY_MIN(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = ref_nearest_int(x[i] * sl2 / slx);
                new_l = HY_MAX(-nmax, HY_MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/*
 * Asymmetric search (ggml's make_qkx2_quants; Q2_K, Q4_K, Q5_K): x ≈ scale *
 * L - the_min with L in [0, nmax] and the_min >= 0. Starts from the min/max
 * mapping, then for nstep + 1 candidate scales solves the weighted least
 * squares for (scale, min) and keeps the one with the smallest weighted error
 * (absolute when use_mad, squared otherwise). Laux: scratch of n.
 */
static float ref_make_qkx2_quants(int n, int nmax, const float *x, const float *weights,
                                  uint8_t *L, float *the_min, uint8_t *Laux, float rmin,
                                  float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = ref_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)HY_MAX(0, HY_MIN(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = ref_nearest_int(iscale * (x[i] - min));
            l = HY_MAX(0, HY_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ---- Q2_K --------------------------------------------------------------- */

void quant_ref_from_float_q2_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q2_K *y = dst;
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max_scale = 0, max_min = 0; /* scales are >= 0 once the min is taken out */
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = ref_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                             Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j)
                y[i].scales[j] = (uint8_t)ref_nearest_int(iscale * scales[j]);
            y[i].d = ref_f2h(max_scale / q4scale);
        } else {
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = ref_f2h(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j) {
                int l = ref_nearest_int(iscale * mins[j]);
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | ((unsigned)l << 4));
            }
            y[i].dmin = ref_f2h(max_min / q4scale);
        } else {
            y[i].dmin = ref_f2h(0.f);
        }

        /* requantize against the scales as stored */
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = ref_h2f(y[i].d) * (float)(y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = ref_h2f(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = ref_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)HY_MAX(0, HY_MIN(3, l));
            }
        }
        ref_pack_2bit(L, y[i].qs);
    }
}

void quant_ref_to_float_q2_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ref_h2f(x[i].d);
        const float min = ref_h2f(x[i].dmin);
        float *y = dst + i * QK_K;
        /* element e: sub-block e / 16, bits 2 * ((e % 128) / 32) of byte (e / 128) * 32 + e % 32 */
        for (int e = 0; e < QK_K; e++) {
            const uint8_t sc = x[i].scales[e / 16];
            const float dl = d * (float)(sc & 0xF);
            const float ml = min * (float)(sc >> 4);
            const int q = (x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            y[e] = dl * (float)q - ml;
        }
    }
}

float quant_ref_vec_dot_q2_K_q8_K(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q2_K *x = vx;
    const struct block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
        const float dall = y[i].d * ref_h2f(x[i].d);
        const float dmin = y[i].d * ref_h2f(x[i].dmin);
        int isum = 0;
        for (int s = 0; s < QK_K / 16; s++) {
            int isuml = 0;
            for (int e = 16 * s; e < 16 * s + 16; e++) {
                const int q = (x[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                isuml += y[i].qs[e] * q;
            }
            isum += (x[i].scales[s] & 0xF) * isuml;
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

/* ---- Q3_K --------------------------------------------------------------- */

void quant_ref_from_float_q3_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q3_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = ref_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }

        memset(y[i].scales, 0, sizeof(y[i].scales));
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int l = ref_i8(ref_nearest_int(iscale * scales[j]));
                l = HY_MAX(-32, HY_MIN(31, l)) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] = (uint8_t)(y[i].scales[j - 8] | ((l & 0xF) << 4));
                l >>= 4;
                y[i].scales[j % 4 + 8] = (uint8_t)(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            y[i].d = ref_f2h(1 / iscale);
        } else {
            y[i].d = ref_f2h(0.f);
        }

        /* requantize against the scales as stored */
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = ref_h2f(y[i].d) * (float)ref_q3_K_scale(y[i].scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = ref_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(HY_MAX(-4, HY_MIN(3, l)) + 4);
            }
        }

        /* high bit of value e in bit e / 32 of hmask[e % 32]; low 2 bits packed as Q2_K */
        uint8_t low[QK_K];
        memset(y[i].hmask, 0, sizeof(y[i].hmask));
        for (int e = 0; e < QK_K; ++e) {
            int l = L[e];
            if (l > 3) {
                y[i].hmask[e % 32] = (uint8_t)(y[i].hmask[e % 32] | (1u << (e / 32)));
                l -= 4;
            }
            low[e] = (uint8_t)l;
        }
        ref_pack_2bit(low, y[i].qs);
    }
}

/* Signed 3-bit value (-4..3) of element e of a Q3_K block. */
static inline int ref_q3_K_value(const struct block_q3_K *b, int e)
{
    const int lo = (b->qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const int hi = (b->hmask[e % 32] >> (e / 32)) & 1;
    return lo - (hi ? 0 : 4);
}

void quant_ref_to_float_q3_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = ref_h2f(x[i].d);
        float *y = dst + i * QK_K;
        for (int e = 0; e < QK_K; e++) {
            const float dl = d_all * (float)ref_q3_K_scale(x[i].scales, e / 16);
            y[e] = dl * (float)ref_q3_K_value(&x[i], e);
        }
    }
}

/*
 * The K-quant dot products of ggml's generic code accumulate, per block, the
 * integer products into 8 lanes (element e into lane e % 8), scale each lane
 * sum by d into 8 float partial sums that run across all blocks, and add the
 * 8 partial sums only at the end. The float result depends on that order, so
 * it is kept: lane[] holds the exact integer lane sums of one block.
 */
static void ref_lanes_add(float sums[8], const int32_t lane[8], float d)
{
    for (int l = 0; l < 8; ++l) sums[l] += d * (float)lane[l];
}

float quant_ref_vec_dot_q3_K_q8_K(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q3_K *x = vx;
    const struct block_q8_K *y = vy;
    float sums[8] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t lane[8] = {0};
        for (int e = 0; e < QK_K; e++) {
            const int sc = ref_q3_K_scale(x[i].scales, e / 16);
            lane[e % 8] += sc * (y[i].qs[e] * ref_q3_K_value(&x[i], e));
        }
        ref_lanes_add(sums, lane, ref_h2f(x[i].d) * y[i].d);
    }
    float sumf = 0;
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

/* ---- Q4_K / Q5_K -------------------------------------------------------- */

/* Packs the 6-bit scale ls and min lm of sub-block j (layout in blocks.h). */
static void ref_put_scale_min_k4(uint8_t *scales, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] = (uint8_t)(scales[j - 4] | ((ls >> 4) << 6));
        scales[j] = (uint8_t)(scales[j] | ((lm >> 4) << 6));
    }
}

/*
 * What Q4_K and Q5_K share: per sub-block of 32 the asymmetric search with
 * weights av_x + |x|, 6-bit scales and mins relative to the largest, then
 * the values requantized against the stored scales into L[0..256) (0..nmax).
 */
static void ref_quantize_k4_scales(const float *x, int nmax, float rmin, int nstep,
                                   hy_half *d_out, hy_half *dmin_out, uint8_t *scales_out,
                                   uint8_t *L)
{
    uint8_t Laux[32];
    float weights[32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = ref_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j],
                                         Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        /* ggml stores the rounded value into a uint8_t before clamping */
        uint8_t ls = (uint8_t)ref_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)ref_nearest_int(inv_min * mins[j]);
        ref_put_scale_min_k4(scales_out, j, HY_MIN(63, ls), HY_MIN(63, lm));
    }
    *d_out = ref_f2h(max_scale / 63.f);
    *dmin_out = ref_f2h(max_min / 63.f);

    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        ref_get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = ref_h2f(*d_out) * (float)sc;
        if (!d) continue;
        const float dm = ref_h2f(*dmin_out) * (float)m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = ref_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)HY_MAX(0, HY_MIN(nmax, l));
        }
    }
}

void quant_ref_from_float_q4_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        ref_quantize_k4_scales(src + i * QK_K, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* per 64 values: byte l holds value l (low nibble) and l + 32 (high) */
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* 4-bit value of element e of a Q4_K/Q5_K block's qs. */
static inline int ref_k4_low(const uint8_t *qs, int e)
{
    const uint8_t b = qs[(e / 64) * 32 + e % 32];
    return (e % 64) < 32 ? (b & 0xF) : (b >> 4);
}

void quant_ref_to_float_q4_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ref_h2f(x[i].d);
        const float min = ref_h2f(x[i].dmin);
        float *y = dst + i * QK_K;
        for (int s = 0; s < QK_K / 32; s++) {
            uint8_t sc, m;
            ref_get_scale_min_k4(s, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc;
            const float m1 = min * (float)m;
            for (int e = 32 * s; e < 32 * s + 32; e++)
                y[e] = d1 * (float)ref_k4_low(x[i].qs, e) - m1;
        }
    }
}

void quant_ref_from_float_q5_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        ref_quantize_k4_scales(src + i * QK_K, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales,
                               L);
        /* low 4 bits as Q4_K; bit 4 of value e in bit e / 32 of qh[e % 32] */
        memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 15) {
                y[i].qh[e % 32] = (uint8_t)(y[i].qh[e % 32] | (1u << (e / 32)));
                L[e] = (uint8_t)(L[e] - 16);
            }
        }
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static inline int ref_q5_K_value(const struct block_q5_K *b, int e)
{
    return ref_k4_low(b->qs, e) + (((b->qh[e % 32] >> (e / 32)) & 1) ? 16 : 0);
}

void quant_ref_to_float_q5_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ref_h2f(x[i].d);
        const float min = ref_h2f(x[i].dmin);
        float *y = dst + i * QK_K;
        for (int s = 0; s < QK_K / 32; s++) {
            uint8_t sc, m;
            ref_get_scale_min_k4(s, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc;
            const float m1 = min * (float)m;
            for (int e = 32 * s; e < 32 * s + 32; e++)
                y[e] = d1 * (float)ref_q5_K_value(&x[i], e) - m1;
        }
    }
}

/* Integer parts of a Q4_K/Q5_K block against a Q8_K block: the lane sums of
 * sc * q8 * v (v[e] the unsigned quant of element e) and sum(bsums * m). */
static void ref_k4_block_ints(const uint8_t *scales, const uint8_t *v, const struct block_q8_K *y,
                              int32_t lane[8], int *sum_mins)
{
    int summ = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        uint8_t sc, m;
        ref_get_scale_min_k4(j / 2, scales, &sc, &m);
        summ += y->bsums[j] * m;
    }
    for (int l = 0; l < 8; ++l) lane[l] = 0;
    for (int e = 0; e < QK_K; e++) {
        uint8_t sc, m;
        ref_get_scale_min_k4(e / 32, scales, &sc, &m);
        lane[e % 8] += sc * (y->qs[e] * v[e]);
    }
    *sum_mins = summ;
}

float quant_ref_vec_dot_q4_K_q8_K(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q4_K *x = vx;
    const struct block_q8_K *y = vy;
    float sums[8] = {0};
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t v[QK_K];
        for (int e = 0; e < QK_K; e++) v[e] = (uint8_t)ref_k4_low(x[i].qs, e);
        int32_t lane[8];
        int summ;
        ref_k4_block_ints(x[i].scales, v, &y[i], lane, &summ);
        ref_lanes_add(sums, lane, ref_h2f(x[i].d) * y[i].d);
        sumf -= ref_h2f(x[i].dmin) * y[i].d * (float)summ;
    }
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

float quant_ref_vec_dot_q5_K_q8_K(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q5_K *x = vx;
    const struct block_q8_K *y = vy;
    float sums[8] = {0};
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t v[QK_K];
        for (int e = 0; e < QK_K; e++) v[e] = (uint8_t)ref_q5_K_value(&x[i], e);
        int32_t lane[8];
        int summ;
        ref_k4_block_ints(x[i].scales, v, &y[i], lane, &summ);
        ref_lanes_add(sums, lane, ref_h2f(x[i].d) * y[i].d);
        sumf -= ref_h2f(x[i].dmin) * y[i].d * (float)summ;
    }
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

/* ---- Q6_K --------------------------------------------------------------- */

void quant_ref_from_float_q6_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q6_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float scale = ref_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }

        if (max_abs_scale < REF_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            y[i].d = ref_f2h(0.f);
            continue;
        }

        float iscale = -128.f / max_scale;
        y[i].d = ref_f2h(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ++ib)
            y[i].scales[ib] = (int8_t)ref_i8(HY_MIN(127, ref_nearest_int(iscale * scales[ib])));

        /* requantize against the scales as stored */
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = ref_h2f(y[i].d) * (float)y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = ref_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(HY_MAX(-32, HY_MIN(31, l)) + 32);
            }
        }

        /* per 128 values: ql[l] = low nibbles of values l and l+64, ql[l+32]
         * of l+32 and l+96; qh[l] = their top 2 bits (l, l+32, l+64, l+96) */
        uint8_t *ql = y[i].ql;
        uint8_t *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = (uint8_t)(L[j + l + 0] & 0xF);
                const uint8_t q2 = (uint8_t)(L[j + l + 32] & 0xF);
                const uint8_t q3 = (uint8_t)(L[j + l + 64] & 0xF);
                const uint8_t q4 = (uint8_t)(L[j + l + 96] & 0xF);
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* Signed 6-bit value (-32..31) of element e of a Q6_K block. */
static inline int ref_q6_K_value(const struct block_q6_K *b, int e)
{
    const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t ql = b->ql[64 * half + l + 32 * (quarter & 1)];
    const int lo = quarter < 2 ? (ql & 0xF) : (ql >> 4);
    const int hi = (b->qh[32 * half + l] >> (2 * quarter)) & 3;
    return (lo | (hi << 4)) - 32;
}

void quant_ref_to_float_q6_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ref_h2f(x[i].d);
        float *y = dst + i * QK_K;
        for (int e = 0; e < QK_K; e++)
            y[e] = d * (float)x[i].scales[e / 16] * (float)ref_q6_K_value(&x[i], e);
    }
}

float quant_ref_vec_dot_q6_K_q8_K(int64_t n, const void *restrict vx, const void *restrict vy)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q6_K *x = vx;
    const struct block_q8_K *y = vy;
    float sums[8] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t lane[8] = {0};
        for (int e = 0; e < QK_K; e++)
            lane[e % 8] += x[i].scales[e / 16] * (y[i].qs[e] * ref_q6_K_value(&x[i], e));
        ref_lanes_add(sums, lane, ref_h2f(x[i].d) * y[i].d);
    }
    float sumf = 0;
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

/* ---- Q8_K --------------------------------------------------------------- */

void quant_ref_from_float_q8_K(const float *restrict src, void *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    struct block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        /* -127, not -128: ggml's AVX kernels of the IQ types rely on |q| <= 127 */
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) {
            int v = ref_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)ref_i8(HY_MIN(127, v));
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void quant_ref_to_float_q8_K(const void *restrict src, float *restrict dst, int64_t n)
{
    HY_ASSERT(n % QK_K == 0);
    const struct block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = x[i].d * (float)x[i].qs[j];
}
