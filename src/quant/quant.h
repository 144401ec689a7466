/*
 * Tensor element types, indexed by the GGUF type id (ggml_type numbering):
 * the one type-traits table of the project.
 *
 * quant_traits() gives, for every id that a GGUF file may carry, its name, the
 * number of elements per block and the bytes per block. Row bytes of a tensor
 * are ne[0] / block_size * block_bytes; ne[0] must be a multiple of the block
 * size. Ids that GGUF once used and then retired (31-33, 36-38) are unknown.
 * For the types hypura computes with, the table also gives the reference
 * (scalar, portable) dequantize, quantize and dot product, and the type the
 * activations are converted to for that dot product (vec_dot_type): Q8_0 for
 * Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F16/BF16/F32 for
 * those float types — as llama.cpp does, so that results agree with it.
 *
 * The reference functions are the definition. quant_kernels() returns the
 * fastest implementation for this CPU (AVX2, AVX-512, AVX-512 VNNI, NEON or
 * scalar, chosen at run time), which tests check against the reference.
 *
 * Adding a type — checklist:
 *   1. its id in enum hy_type and its row in quant_table (name, block geometry);
 *   2. its block struct in blocks.h with a static assert on the size;
 *   3. reference to_float, from_float (bit-exact with llama.cpp's reference
 *      quantizer), vec_dot against its vec_dot_type, in quant_ref.c;
 *   4. SIMD kernels where they pay, registered in quant_cpu.c;
 *   5. tests: quantize/dequantize error bound, vec_dot vs float64, SIMD vs
 *      reference, vectors compared with llama.cpp; a CUDA kernel when the
 *      CUDA backend exists.
 */
#ifndef HY_QUANT_QUANT_H
#define HY_QUANT_QUANT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum hy_type {
    HY_TYPE_F32 = 0,
    HY_TYPE_F16 = 1,
    HY_TYPE_Q4_0 = 2,
    HY_TYPE_Q4_1 = 3,
    HY_TYPE_Q5_0 = 6,
    HY_TYPE_Q5_1 = 7,
    HY_TYPE_Q8_0 = 8,
    HY_TYPE_Q8_1 = 9,
    HY_TYPE_Q2_K = 10,
    HY_TYPE_Q3_K = 11,
    HY_TYPE_Q4_K = 12,
    HY_TYPE_Q5_K = 13,
    HY_TYPE_Q6_K = 14,
    HY_TYPE_Q8_K = 15,
    HY_TYPE_IQ2_XXS = 16,
    HY_TYPE_IQ2_XS = 17,
    HY_TYPE_IQ3_XXS = 18,
    HY_TYPE_IQ1_S = 19,
    HY_TYPE_IQ4_NL = 20,
    HY_TYPE_IQ3_S = 21,
    HY_TYPE_IQ2_S = 22,
    HY_TYPE_IQ4_XS = 23,
    HY_TYPE_I8 = 24,
    HY_TYPE_I16 = 25,
    HY_TYPE_I32 = 26,
    HY_TYPE_I64 = 27,
    HY_TYPE_F64 = 28,
    HY_TYPE_IQ1_M = 29,
    HY_TYPE_BF16 = 30,
    HY_TYPE_TQ1_0 = 34,
    HY_TYPE_TQ2_0 = 35,
    HY_TYPE_MXFP4 = 39,
    HY_TYPE_COUNT = 40
};

/* n is always a multiple of the type's block size. restrict: no overlap. */
typedef void (*quant_to_float_fn)(const void *restrict src, float *restrict dst, int64_t n);
typedef void (*quant_from_float_fn)(const float *restrict src, void *restrict dst, int64_t n);
/* Dot product of n elements: x a row of the weight type, y a row of its vec_dot_type. */
typedef float (*quant_vec_dot_fn)(int64_t n, const void *restrict x, const void *restrict y);

struct quant_traits {
    const char *name;     /* "Q4_K"; NULL for an id that is not a type */
    uint32_t block_size;  /* elements per block */
    uint32_t block_bytes; /* bytes per block */
    bool is_quantized;    /* block-quantized (not a plain scalar type) */
    /* NULL below: hypura does not compute with this type */
    quant_to_float_fn to_float;     /* reference dequantize */
    quant_from_float_fn from_float; /* reference quantize, bit-exact with llama.cpp's */
    uint32_t vec_dot_type;          /* enum hy_type the activations are converted to */
    quant_vec_dot_fn vec_dot;       /* reference dot product against vec_dot_type */
};

/* Fast kernels for one type on this CPU. Never NULL where the reference
 * function exists (falls back to it). */
struct quant_kernels {
    quant_to_float_fn to_float;
    quant_from_float_fn from_float; /* used for activation types (Q8_0, Q8_1, Q8_K, F16, ...) */
    quant_vec_dot_fn vec_dot;
};

enum quant_isa {
    QUANT_ISA_SCALAR = 0,
    QUANT_ISA_NEON,
    QUANT_ISA_AVX2,        /* AVX2 + FMA + F16C */
    QUANT_ISA_AVX512,      /* AVX-512 F/BW/VL/DQ */
    QUANT_ISA_AVX512_VNNI, /* AVX-512 + VNNI */
    QUANT_ISA_AVX512_AMX,  /* AVX-512 VNNI + AMX-TILE/INT8, tile state granted by the OS */
};

/* Traits of type id, or NULL when the id is not a known type. */
const struct quant_traits *quant_traits(uint32_t type);

/* Name of type id, "type#N" (static buffer per thread) when unknown. */
const char *quant_type_name(uint32_t type);

/* Type id for a name ("q4_k", "F16"; case-insensitive), or -1. */
int quant_type_from_name(const char *name);

/* Bytes of n_elements of a known type; n_elements a multiple of its block size. */
uint64_t quant_bytes(uint32_t type, uint64_t n_elements);

/* True when hypura can compute with the type (reference functions exist). */
bool quant_is_supported(uint32_t type);

/* Fast kernels of a supported type for the selected ISA (quant_cpu.c). */
const struct quant_kernels *quant_kernels(uint32_t type);
/* The best ISA this CPU and build support. */
enum quant_isa quant_isa_detect(void);
/* Selects the kernels of at most `isa` (tests compare levels); returns the
 * level actually selected. Not thread-safe: call before computing. */
enum quant_isa quant_isa_select(enum quant_isa isa);
/* The ISA whose kernels quant_kernels() returns now. */
enum quant_isa quant_isa_current(void);
const char *quant_isa_name(enum quant_isa isa);

/* IEEE half and bfloat16 conversions (round to nearest even, NaN kept and made
 * quiet, overflow to inf), bit for bit as ggml's GGML_FP32_TO_FP16,
 * GGML_FP16_TO_FP32 and GGML_FP32_TO_BF16 (checked on all inputs against
 * ggml when the test vectors of tests/data/quant were made). */
static inline float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        /* inf, or NaN made quiet as ggml's conversion and F16C do */
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static inline uint16_t quant_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow → inf */
    if (absx < 0x38800000u) {
        /* result is subnormal or zero: value / 2^-24, rounded to nearest even */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float quant_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static inline uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

#endif
