/*
 * Block layouts of the quantized GGUF types, byte for byte as GGUF (ggml)
 * defines them. Included by C and by CUDA (.cu) code: plain structs, no C11-
 * only syntax outside the static-assert macro. Halves are IEEE binary16 bit
 * patterns (uint16_t).
 *
 * Legacy types: blocks of 32 values.
 *   Q4_0  x = d * (q - 8),           q in 0..15, two per byte: byte j holds
 *         value j in its low nibble and value j + 16 in its high nibble.
 *   Q4_1  x = d * q + m,             same packing.
 *   Q5_0  x = d * (q - 16),          low 4 bits as Q4_0, bit 4 of value j in
 *         bit j of qh (little-endian u32).
 *   Q5_1  x = d * q + m,             as Q5_0.
 *   Q8_0  x = d * q,                 q int8.
 *   Q8_1  as Q8_0 plus s = d * sum(q) (activation type for Q4_1/Q5_1).
 *
 * K-quants: super-blocks of 256 values (QK_K) in sub-blocks.
 *   Q2_K  16 sub-blocks of 16: scales[i] low nibble = scale, high = min;
 *         x = d * sc * q - dmin * m, q 2-bit; qs packs 4 values per byte:
 *         for each half of 128, byte l (0..31) holds values l, l+32, l+64,
 *         l+96 in bit pairs 0-1, 2-3, 4-5, 6-7.
 *   Q3_K  16 sub-blocks of 16, 6-bit signed scales (offset 32) packed in
 *         12 bytes; x = d * (sc - 32) * (q - 4 * !hbit), q low 2 bits in qs
 *         (packed as Q2_K), the high bit in hmask (bit j of hmask[l] for
 *         value 32 * j + l within the 256).
 *   Q4_K  8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes;
 *         x = d * sc * q - dmin * m, q 4-bit: for each 64 values, byte l
 *         (0..31) holds value l (low nibble) and l + 32 (high nibble).
 *   Q5_K  as Q4_K plus the 5th bit of each value in qh (bit j of qh[l] for
 *         value 32 * j + l).
 *   Q6_K  16 sub-blocks of 16, int8 scales; x = d * sc * (q - 32), q 6-bit:
 *         low 4 bits in ql, high 2 bits in qh.
 *   Q8_K  activation type of the K-quants: float d, int8 q, and bsums = the
 *         sums of each 16 consecutive q (for the min terms).
 *
 * The 12-byte scale packing of Q4_K/Q5_K: for sub-block j < 4, scale =
 * scales[j] & 63 and min = scales[j + 4] & 63; for j >= 4, scale =
 * (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4) and min =
 * (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4).
 */
#ifndef HY_QUANT_BLOCKS_H
#define HY_QUANT_BLOCKS_H

#include <stdint.h>

#ifdef __cplusplus
#define HY_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define HY_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t hy_half;

struct block_q4_0 {
    hy_half d;
    uint8_t qs[QK4_0 / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q4_0) == 18, "block_q4_0 size");

struct block_q4_1 {
    hy_half d;
    hy_half m;
    uint8_t qs[QK4_1 / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q4_1) == 20, "block_q4_1 size");

struct block_q5_0 {
    hy_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q5_0) == 22, "block_q5_0 size");

struct block_q5_1 {
    hy_half d;
    hy_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q5_1) == 24, "block_q5_1 size");

struct block_q8_0 {
    hy_half d;
    int8_t qs[QK8_0];
};
HY_STATIC_ASSERT(sizeof(struct block_q8_0) == 34, "block_q8_0 size");

struct block_q8_1 {
    hy_half d;
    hy_half s; /* d * sum(qs) */
    int8_t qs[QK8_1];
};
HY_STATIC_ASSERT(sizeof(struct block_q8_1) == 36, "block_q8_1 size");

struct block_q2_K {
    uint8_t scales[QK_K / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[QK_K / 4];
    hy_half d;
    hy_half dmin;
};
HY_STATIC_ASSERT(sizeof(struct block_q2_K) == 84, "block_q2_K size");

struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    hy_half d;
};
HY_STATIC_ASSERT(sizeof(struct block_q3_K) == 110, "block_q3_K size");

struct block_q4_K {
    hy_half d;
    hy_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q4_K) == 144, "block_q4_K size");

struct block_q5_K {
    hy_half d;
    hy_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
HY_STATIC_ASSERT(sizeof(struct block_q5_K) == 176, "block_q5_K size");

struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    hy_half d;
};
HY_STATIC_ASSERT(sizeof(struct block_q6_K) == 210, "block_q6_K size");

struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
HY_STATIC_ASSERT(sizeof(struct block_q8_K) == 292, "block_q8_K size");

#endif
