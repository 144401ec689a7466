/*
 * Reference conversions: portable scalar C for every type hypura computes
 * with. They are the definition that the SIMD kernels (quant_cpu.c) and the
 * CUDA kernels are tested against, and they reproduce llama.cpp (ggml):
 *
 *   to_float    ggml's dequantize_row_* : the same floats, bit for bit.
 *   from_float  the bytes llama-quantize writes without an importance matrix
 *               (ggml's quantize_row_*_ref), bit for bit; for the activation
 *               types Q8_0, Q8_1 and Q8_K, ggml's reference quantizers.
 *   vec_dot     ggml's generic (scalar) dot product of a weight row with an
 *               activation row of its vec_dot_type: integer sums within a
 *               block where ggml has them and the same float operations in
 *               the same order, so the result is ggml's to the last bit
 *               (as long as neither side contracts a*b+c into an FMA).
 *
 * The table in quant.c points at these; code normally reaches them through
 * quant_traits(type) or quant_kernels(type) rather than by name.
 *
 * Contract common to all functions (the typedefs in quant.h):
 *   n    element count, > 0 and a multiple of the type's block size (1 for
 *        F32/F16/BF16, 32 for Q4_0..Q8_1, 256 for the K-quants and Q8_K);
 *        checked with HY_ASSERT since callers size rows from validated shapes.
 *   src/dst, x/y  non-overlapping; blocks need no particular alignment beyond
 *        their struct's (2 bytes; 4 for Q8_K).
 *   Thread-safe: no state. Any float input is safe (no undefined behaviour,
 *   inf and NaN included); agreement with ggml is tested for finite inputs
 *   from subnormals to 1e33 (see quant_ref.c on x86-64 and tiny blocks).
 *
 * vec_dot pairs (weight · activation):
 *   F32·F32  F16·F16  BF16·BF16          products in float, sum in double
 *   Q4_0·Q8_0  Q5_0·Q8_0  Q8_0·Q8_0      per 32-block: int sum × d_x × d_y
 *   Q4_1·Q8_1  Q5_1·Q8_1                 per 32-block, plus m_x × s_y
 *   Q2_K..Q6_K · Q8_K                    per 256-block, Q8_K's bsums for mins
 */
#ifndef HY_QUANT_QUANT_REF_H
#define HY_QUANT_QUANT_REF_H

#include <stdint.h>

/* ---- to_float: dequantize n values ---- */
void quant_ref_to_float_f32(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_f16(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_bf16(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q4_0(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q4_1(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q5_0(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q5_1(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q8_0(const void *restrict src, float *restrict dst, int64_t n);
/* d * q; ggml has no Q8_1 dequantize, this one is for tests. */
void quant_ref_to_float_q8_1(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q2_K(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q3_K(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q4_K(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q5_K(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q6_K(const void *restrict src, float *restrict dst, int64_t n);
void quant_ref_to_float_q8_K(const void *restrict src, float *restrict dst, int64_t n);

/* ---- from_float: quantize n values ---- */
void quant_ref_from_float_f32(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_f16(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_bf16(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q4_0(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q4_1(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q5_0(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q5_1(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q8_0(const float *restrict src, void *restrict dst, int64_t n);
/* Q8_0 plus s = d * sum(q), d before its rounding to half. */
void quant_ref_from_float_q8_1(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q2_K(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q3_K(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q4_K(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q5_K(const float *restrict src, void *restrict dst, int64_t n);
void quant_ref_from_float_q6_K(const float *restrict src, void *restrict dst, int64_t n);
/* float d = max / -127 (so q = -127 at the largest magnitude), q rounded to
 * nearest even, bsums = sums of each 16 q. An all-zero block is all zero
 * (ggml leaves its bsums unwritten; they are zeroed here). */
void quant_ref_from_float_q8_K(const float *restrict src, void *restrict dst, int64_t n);

/* ---- vec_dot: x a row of the weight type, y a row of its vec_dot_type ---- */
float quant_ref_vec_dot_f32(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_f16(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_bf16(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q4_0_q8_0(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q4_1_q8_1(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q5_0_q8_0(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q5_1_q8_1(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q8_0_q8_0(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q2_K_q8_K(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q3_K_q8_K(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q4_K_q8_K(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q5_K_q8_K(int64_t n, const void *restrict x, const void *restrict y);
float quant_ref_vec_dot_q6_K_q8_K(int64_t n, const void *restrict x, const void *restrict y);

#endif
