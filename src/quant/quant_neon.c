/*
 * arm64 Advanced SIMD (NEON) kernels: the ARMv8.0 base instruction set, which
 * every arm64 CPU has, so no run-time check (quant_cpu.c). On other targets
 * this file defines empty tables.
 *
 * Contract as in quant_cpu.h: vec_dot with the reference's integer sums,
 * from_float with the reference's bytes, to_float with its floats.
 *
 * Integer products use vmull_s8 (int8 x int8 into int16) and vpadalq_s16
 * (pairwise add into int32), which cannot overflow for any pair of bytes
 * (|-128 * -128| < 32768), so unlike the x86 kernels no operand needs to be
 * kept unsigned: weights are made signed (q - 8, q - 32, ...) before the
 * product, and sub-block scales multiply the int32 sums.
 *
 * Not here: the ARMv8.2 dot-product instructions (SDOT), which would need a
 * run-time check and a level of their own; dequantization of the less common
 * types (the reference serves them).
 */
#include "quant/quant_cpu.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_ref.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- helpers ------------------------------------------------------------ */

static inline float hf(hy_half h)
{
    return quant_cpu_f16_table[h];
}

/* acc + sum of a[k] * b[k], 16 signed bytes, in 4 int32 lanes. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* 16 bytes of nibbles → the low nibbles (elements 0..15) and the high ones. */
static inline void nibbles(const uint8_t *p, uint8x16_t *lo, uint8x16_t *hi)
{
    const uint8x16_t v = vld1q_u8(p);
    *lo = vandq_u8(v, vdupq_n_u8(0x0f));
    *hi = vshrq_n_u8(v, 4);
}

/* The 32 bits at p: 0x10 in byte k (of two vectors of 16) where bit k is set. */
static inline void bits_to_0x10(const uint8_t *p, uint8x16_t *b0, uint8x16_t *b1)
{
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t s = vld1q_u8(sel);
    const uint8x16_t v0 = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
    const uint8x16_t v1 = vcombine_u8(vdup_n_u8(p[2]), vdup_n_u8(p[3]));
    *b0 = vandq_u8(vtstq_u8(v0, s), vdupq_n_u8(0x10));
    *b1 = vandq_u8(vtstq_u8(v1, s), vdupq_n_u8(0x10));
}

static inline int8x16_t s8(uint8x16_t v)
{
    return vreinterpretq_s8_u8(v);
}

/* Scales and mins of a Q4_K/Q5_K block (layout in blocks.h). */
static inline void k4_scales(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/* Signed scales of a Q3_K block (minus 32 done). */
static inline void q3_K_scales(const uint8_t *s, int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* ---- float types -------------------------------------------------------- */

static float f32_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

static inline float32x4_t f16x4(const hy_half *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static float f16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const hy_half *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, f16x4(x + i), f16x4(y + i));
        a1 = vfmaq_f32(a1, f16x4(x + i + 4), f16x4(y + i + 4));
        a2 = vfmaq_f32(a2, f16x4(x + i + 8), f16x4(y + i + 8));
        a3 = vfmaq_f32(a3, f16x4(x + i + 12), f16x4(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, f16x4(x + i), f16x4(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += hf(x[i]) * hf(y[i]);
    return sum;
}

static inline float32x4_t bf16x4(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static float bf16_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const uint16_t *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, bf16x4(x + i), bf16x4(y + i));
        a1 = vfmaq_f32(a1, bf16x4(x + i + 4), bf16x4(y + i + 4));
        a2 = vfmaq_f32(a2, bf16x4(x + i + 8), bf16x4(y + i + 8));
        a3 = vfmaq_f32(a3, bf16x4(x + i + 12), bf16x4(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, bf16x4(x + i), bf16x4(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += quant_bf16_to_f32(x[i]) * quant_bf16_to_f32(y[i]);
    return sum;
}

/* FCVTL converts like quant_f16_to_f32 except that it quiets a signalling
 * NaN; groups holding an inf/NaN half go the scalar way. */
static void f16_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const hy_half *h = src;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint16x4_t v = vld1_u16(h + i);
        const uint16x4_t special = vceq_u16(vand_u16(v, vdup_n_u16(0x7c00)), vdup_n_u16(0x7c00));
        if (vmaxv_u16(special)) {
            for (int k = 0; k < 4; k++) dst[i + k] = quant_f16_to_f32(h[i + k]);
            continue;
        }
        vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(v)));
    }
    for (; i < n; i++) dst[i] = quant_f16_to_f32(h[i]);
}

/* FCVTN rounds to nearest even like quant_f32_to_f16 but keeps NaN payload
 * bits; groups holding a NaN go the scalar way. */
static void f16_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    hy_half *h = dst;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(src + i);
        if (vminvq_u32(vceqq_f32(v, v)) == 0) {
            for (int k = 0; k < 4; k++) h[i + k] = quant_f32_to_f16(src[i + k]);
            continue;
        }
        vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(v)));
    }
    for (; i < n; i++) h[i] = quant_f32_to_f16(src[i]);
}

static void bf16_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, bf16x4(h + i));
    for (; i < n; i++) dst[i] = quant_bf16_to_f32(h[i]);
}

/* ---- activation quantizers --------------------------------------------- */

/* Largest |x| of n floats (a multiple of 4) and whether any was NaN. */
static inline float absmax(const float *x, int n, bool *nan)
{
    float32x4_t m = vdupq_n_f32(0);
    uint32x4_t ok = vdupq_n_u32(0xffffffffu);
    for (int k = 0; k < n; k += 4) {
        const float32x4_t v = vld1q_f32(x + k);
        ok = vandq_u32(ok, vceqq_f32(v, v));
        m = vmaxnmq_f32(m, vabsq_f32(v)); /* maxNum: a NaN lane leaves m as it was */
    }
    *nan = vminvq_u32(ok) == 0;
    return vmaxvq_f32(m);
}

/* As quant_avx2.c: blocks with NaN, inf or a tiny largest magnitude go to the reference. */
static inline bool q8_block_is_odd(float amax, bool nan)
{
    return nan || !(amax <= 3.0e38f) || (amax != 0.0f && amax < 1.0e-30f);
}

/* q = roundf(x * id) for 32 values (FCVTAS rounds half away from zero);
 * stores the low bytes and returns sum(q). */
static inline int q8_round32(const float *x, float id, int8_t *qs)
{
    int32x4_t sum = vdupq_n_s32(0);
    for (int k = 0; k < 32; k += 8) {
        const int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + k), id));
        const int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 4), id));
        sum = vaddq_s32(sum, vaddq_s32(a, b));
        const int16x8_t h = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        vst1_s8(qs + k, vmovn_s16(h));
    }
    return vaddvq_s32(sum);
}

static void q8_0_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        bool nan;
        const float amax = absmax(x, QK8_0, &nan);
        if (q8_block_is_odd(amax, nan)) {
            quant_ref_from_float_q8_0(x, &y[i], QK8_0);
            continue;
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        (void)q8_round32(x, id, y[i].qs);
    }
}

static void q8_1_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const float *x = src + i * QK8_1;
        bool nan;
        const float amax = absmax(x, QK8_1, &nan);
        if (q8_block_is_odd(amax, nan)) {
            quant_ref_from_float_q8_1(x, &y[i], QK8_1);
            continue;
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        const int sum = q8_round32(x, id, y[i].qs);
        y[i].s = quant_f32_to_f16((float)sum * d);
    }
}

static void q8_K_from_float(const float *restrict src, void *restrict dst, int64_t n)
{
    struct block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        bool nan;
        const float amax = absmax(x, QK_K, &nan);
        if (q8_block_is_odd(amax, nan) || amax == 0.0f) {
            quant_ref_from_float_q8_K(x, &y[i], QK_K);
            continue;
        }
        float max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (x[j] == amax || x[j] == -amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.f / max;
        for (int k = 0; k < QK_K; k += 16) {
            int16x8_t h[2];
            for (int j = 0; j < 2; j++) {
                /* FCVTNS: to nearest, ties to even, as ggml's nearest_int */
                int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 8 * j), iscale));
                int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 8 * j + 4), iscale));
                a = vminq_s32(a, vdupq_n_s32(127));
                b = vminq_s32(b, vdupq_n_s32(127));
                h[j] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            }
            const int8x16_t q = vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1]));
            vst1q_s8(y[i].qs + k, q);
            y[i].bsums[k / 16] = (int16_t)vaddlvq_s8(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- 32-element blocks -------------------------------------------------- */

static float q4_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint8x16_t lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        const int8x16_t a = vsubq_s8(s8(lo), vdupq_n_s8(8)), b = vsubq_s8(s8(hi), vdupq_n_s8(8));
        int32x4_t s = dot16(vdupq_n_s32(0), a, vld1q_s8(y[i].qs));
        s = dot16(s, b, vld1q_s8(y[i].qs + 16));
        const float d = hf(x[i].d) * hf(y[i].d);
        if (i & 1)
            acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(s), d);
        else
            acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(s), d);
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

static float q4_1_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_1 *x = vx;
    const struct block_q8_1 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float summs = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        uint8x16_t lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        int32x4_t s = dot16(vdupq_n_s32(0), s8(lo), vld1q_s8(y[i].qs));
        s = dot16(s, s8(hi), vld1q_s8(y[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), hf(x[i].d) * hf(y[i].d));
        summs += hf(x[i].m) * hf(y[i].s);
    }
    return vaddvq_f32(acc) + summs;
}

static float q5_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint8x16_t lo, hi, b0, b1;
        nibbles(x[i].qs, &lo, &hi);
        bits_to_0x10(x[i].qh, &b0, &b1);
        const int8x16_t a = vsubq_s8(s8(vorrq_u8(lo, b0)), vdupq_n_s8(16));
        const int8x16_t b = vsubq_s8(s8(vorrq_u8(hi, b1)), vdupq_n_s8(16));
        int32x4_t s = dot16(vdupq_n_s32(0), a, vld1q_s8(y[i].qs));
        s = dot16(s, b, vld1q_s8(y[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), hf(x[i].d) * hf(y[i].d));
    }
    return vaddvq_f32(acc);
}

static float q5_1_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_1 *x = vx;
    const struct block_q8_1 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float summs = 0.0f;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        uint8x16_t lo, hi, b0, b1;
        nibbles(x[i].qs, &lo, &hi);
        bits_to_0x10(x[i].qh, &b0, &b1);
        int32x4_t s = dot16(vdupq_n_s32(0), s8(vorrq_u8(lo, b0)), vld1q_s8(y[i].qs));
        s = dot16(s, s8(vorrq_u8(hi, b1)), vld1q_s8(y[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), hf(x[i].d) * hf(y[i].d));
        summs += hf(x[i].m) * hf(y[i].s);
    }
    return vaddvq_f32(acc) + summs;
}

static float q8_0_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q8_0 *x = vx;
    const struct block_q8_0 *y = vy;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32x4_t s = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        s = dot16(s, vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        const float d = hf(x[i].d) * hf(y[i].d);
        if (i & 1)
            acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(s), d);
        else
            acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(s), d);
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* ---- K-quants ------------------------------------------------------------ */

/* Q4_K / Q5_K: per 256-block, d * sum(scale * sum(q * y)) - dmin * sum(min * bsums). */
static float q4_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q4_K *x = vx;
    const struct block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        k4_scales(x[i].scales, sc, m);
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        int32x4_t sumi = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            const int8_t *q8 = y[i].qs + 64 * j;
            uint8x16_t l0, h0, l1, h1;
            nibbles(x[i].qs + 32 * j, &l0, &h0);
            nibbles(x[i].qs + 32 * j + 16, &l1, &h1);
            int32x4_t a = dot16(vdupq_n_s32(0), s8(l0), vld1q_s8(q8));
            a = dot16(a, s8(l1), vld1q_s8(q8 + 16));
            int32x4_t b = dot16(vdupq_n_s32(0), s8(h0), vld1q_s8(q8 + 32));
            b = dot16(b, s8(h1), vld1q_s8(q8 + 48));
            sumi = vmlaq_n_s32(sumi, a, sc[2 * j]);
            sumi = vmlaq_n_s32(sumi, b, sc[2 * j + 1]);
        }
        const float d = hf(x[i].d) * y[i].d, dmin = hf(x[i].dmin) * y[i].d;
        sumf += d * (float)vaddvq_s32(sumi) - dmin * (float)summ;
    }
    return sumf;
}

static float q5_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q5_K *x = vx;
    const struct block_q8_K *y = vy;
    const uint8x16_t m16 = vdupq_n_u8(0x10);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];
        k4_scales(x[i].scales, sc, m);
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        uint8x16_t qh0 = vld1q_u8(x[i].qh), qh1 = vld1q_u8(x[i].qh + 16);
        int32x4_t sumi = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            const int8_t *q8 = y[i].qs + 64 * j;
            uint8x16_t l0, h0, l1, h1;
            nibbles(x[i].qs + 32 * j, &l0, &h0);
            nibbles(x[i].qs + 32 * j + 16, &l1, &h1);
            /* bit 2j of qh[l] for the low nibbles, 2j + 1 for the high ones */
            l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(qh0, 4), m16));
            l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(qh1, 4), m16));
            h0 = vorrq_u8(h0, vandq_u8(vshlq_n_u8(qh0, 3), m16));
            h1 = vorrq_u8(h1, vandq_u8(vshlq_n_u8(qh1, 3), m16));
            qh0 = vshrq_n_u8(qh0, 2);
            qh1 = vshrq_n_u8(qh1, 2);
            int32x4_t a = dot16(vdupq_n_s32(0), s8(l0), vld1q_s8(q8));
            a = dot16(a, s8(l1), vld1q_s8(q8 + 16));
            int32x4_t b = dot16(vdupq_n_s32(0), s8(h0), vld1q_s8(q8 + 32));
            b = dot16(b, s8(h1), vld1q_s8(q8 + 48));
            sumi = vmlaq_n_s32(sumi, a, sc[2 * j]);
            sumi = vmlaq_n_s32(sumi, b, sc[2 * j + 1]);
        }
        const float d = hf(x[i].d) * y[i].d, dmin = hf(x[i].dmin) * y[i].d;
        sumf += d * (float)vaddvq_s32(sumi) - dmin * (float)summ;
    }
    return sumf;
}

static float q6_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q6_K *x = vx;
    const struct block_q8_K *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const int8x16_t m32 = vdupq_n_s8(32);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t sumi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) { /* elements 16k..16k+15 of each quarter */
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                int8x16_t q[4];
                q[0] =
                    vsubq_s8(s8(vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(hb, 4), m30))), m32);
                q[1] =
                    vsubq_s8(s8(vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(hb, 2), m30))), m32);
                q[2] = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30))), m32);
                q[3] = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30))),
                                m32);
                for (int m = 0; m < 4; m++) {
                    /* quarter m, elements 32m + 16k..: sub-block 2m + k of the half */
                    const int32x4_t s = dot16(vdupq_n_s32(0), q[m], vld1q_s8(q8 + 32 * m + 16 * k));
                    sumi = vmlaq_n_s32(sumi, s, sc[2 * m + k]);
                }
            }
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), hf(x[i].d) * y[i].d);
    }
    return vaddvq_f32(acc);
}

static float q2_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q2_K *x = vx;
    const struct block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t summ = 0;
        for (int j = 0; j < 16; j++) summ += y[i].bsums[j] * (x[i].scales[j] >> 4);
        int32x4_t sumi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            for (int k = 0; k < 2; k++) {
                const uint8x16_t q = vld1q_u8(x[i].qs + 32 * h + 16 * k);
                for (int m = 0; m < 4; m++) {
                    /* elements 128h + 32m + 16k..: sub-block 8h + 2m + k */
                    const uint8x16_t qm = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * m))), m3);
                    const int32x4_t s = dot16(vdupq_n_s32(0), s8(qm),
                                              vld1q_s8(y[i].qs + 128 * h + 32 * m + 16 * k));
                    sumi = vmlaq_n_s32(sumi, s, x[i].scales[8 * h + 2 * m + k] & 0xF);
                }
            }
        }
        const float d = y[i].d * hf(x[i].d), dmin = y[i].d * hf(x[i].dmin);
        sumf += d * (float)vaddvq_s32(sumi) - dmin * (float)summ;
    }
    return sumf;
}

static float q3_K_vec_dot(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q3_K *x = vx;
    const struct block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(4);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        q3_K_scales(x[i].scales, sc);
        int32x4_t sumi = vdupq_n_s32(0);
        for (int k = 0; k < 2; k++) {
            const uint8x16_t hm = vld1q_u8(x[i].hmask + 16 * k);
            for (int h = 0; h < 2; h++) {
                const uint8x16_t q = vld1q_u8(x[i].qs + 32 * h + 16 * k);
                for (int m = 0; m < 4; m++) {
                    const uint8x16_t lo = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * m))), m3);
                    /* bit 4h + m of hmask moved to bit 2; q = (lo | 4 * hbit) - 4 */
                    const int8_t sh = (int8_t)(2 - (4 * h + m));
                    const uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8(sh)), m4);
                    const int8x16_t v = vsubq_s8(s8(vorrq_u8(lo, hb)), s8(m4));
                    const int32x4_t s =
                        dot16(vdupq_n_s32(0), v, vld1q_s8(y[i].qs + 128 * h + 32 * m + 16 * k));
                    sumi = vmlaq_n_s32(sumi, s, sc[8 * h + 2 * m + k]);
                }
            }
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), hf(x[i].d) * y[i].d);
    }
    return vaddvq_f32(acc);
}

/* ---- to_float ------------------------------------------------------------ */

/* 16 signed bytes times d (one product per element, as the reference). */
static inline void store_scaled16(float *y, int8x16_t q, float d)
{
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(y, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

static void q4_0_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        uint8x16_t lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        const float d = hf(x[i].d);
        store_scaled16(dst + i * QK4_0, vsubq_s8(s8(lo), vdupq_n_s8(8)), d);
        store_scaled16(dst + i * QK4_0 + 16, vsubq_s8(s8(hi), vdupq_n_s8(8)), d);
    }
}

static void q8_0_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float d = hf(x[i].d);
        store_scaled16(dst + i * QK8_0, vld1q_s8(x[i].qs), d);
        store_scaled16(dst + i * QK8_0 + 16, vld1q_s8(x[i].qs + 16), d);
    }
}

/* y = d1 * q - m1 for 16 unsigned bytes q, product and difference rounded separately. */
static inline void store_affine16(float *y, uint8x16_t q, float d1, float m1)
{
    const uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
    const float32x4_t m = vdupq_n_f32(m1);
    vst1q_f32(y, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d1), m));
    vst1q_f32(y + 4, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(lo)), d1), m));
    vst1q_f32(y + 8, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d1), m));
    vst1q_f32(y + 12, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(hi)), d1), m));
}

static void q4_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = hf(x[i].d), min = hf(x[i].dmin);
        uint8_t sc[8], m[8];
        k4_scales(x[i].scales, sc, m);
        float *y = dst + i * QK_K;
        for (int j = 0; j < 4; j++) {
            for (int k = 0; k < 2; k++) {
                uint8x16_t lo, hi;
                nibbles(x[i].qs + 32 * j + 16 * k, &lo, &hi);
                store_affine16(y + 64 * j + 16 * k, lo, d * (float)sc[2 * j],
                               min * (float)m[2 * j]);
                store_affine16(y + 64 * j + 32 + 16 * k, hi, d * (float)sc[2 * j + 1],
                               min * (float)m[2 * j + 1]);
            }
        }
    }
}

static void q6_K_to_float(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct block_q6_K *x = src;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const int8x16_t m32 = vdupq_n_s8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = hf(x[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            float *y = dst + i * QK_K + 128 * h;
            for (int k = 0; k < 2; k++) {
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                int8x16_t q[4];
                q[0] =
                    vsubq_s8(s8(vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(hb, 4), m30))), m32);
                q[1] =
                    vsubq_s8(s8(vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(hb, 2), m30))), m32);
                q[2] = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30))), m32);
                q[3] = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30))),
                                m32);
                for (int m = 0; m < 4; m++) {
                    /* (d * scale) * q, as the reference groups it */
                    const int s = 8 * h + 2 * m + k;
                    store_scaled16(y + 32 * m + 16 * k, q[m], d * (float)x[i].scales[s]);
                }
            }
        }
    }
}

const bool quant_neon_built = true;

const struct quant_kernels quant_neon_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F32] = {NULL, NULL, f32_vec_dot},
    [HY_TYPE_F16] = {f16_to_float, f16_from_float, f16_vec_dot},
    [HY_TYPE_BF16] = {bf16_to_float, NULL, bf16_vec_dot},
    [HY_TYPE_Q4_0] = {q4_0_to_float, NULL, q4_0_vec_dot},
    [HY_TYPE_Q4_1] = {NULL, NULL, q4_1_vec_dot},
    [HY_TYPE_Q5_0] = {NULL, NULL, q5_0_vec_dot},
    [HY_TYPE_Q5_1] = {NULL, NULL, q5_1_vec_dot},
    [HY_TYPE_Q8_0] = {q8_0_to_float, q8_0_from_float, q8_0_vec_dot},
    [HY_TYPE_Q8_1] = {NULL, q8_1_from_float, NULL},
    [HY_TYPE_Q2_K] = {NULL, NULL, q2_K_vec_dot},
    [HY_TYPE_Q3_K] = {NULL, NULL, q3_K_vec_dot},
    [HY_TYPE_Q4_K] = {q4_K_to_float, NULL, q4_K_vec_dot},
    [HY_TYPE_Q5_K] = {NULL, NULL, q5_K_vec_dot},
    [HY_TYPE_Q6_K] = {q6_K_to_float, NULL, q6_K_vec_dot},
    [HY_TYPE_Q8_K] = {NULL, q8_K_from_float, NULL},
};

#else

const bool quant_neon_built = false;
const struct quant_kernels quant_neon_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};

#endif
