/*
 * Batched matrix products for prompt processing: many activation rows
 * (tokens) against a block of weight rows, computing for every (row, token)
 * what the selected vec_dot of quant_kernels() computes, bit for bit.
 *
 * Why: a vec_dot per (row, token) unpacks the weight row (nibbles, 6-bit
 * scales, bit planes) once per token, and for prompt batches that unpacking,
 * not memory, bounds the speed. A gemm kernel unpacks a weight block once per
 * tile of tokens and keeps one accumulator set per token in registers.
 *
 * Contract: y[t * ldy + r] for r < n_rows, t < n_tok equals
 * quant_kernels(type)->vec_dot(n_cols, row r, activation row t) exactly —
 * the same integer sums, the same float operations in the same order — so a
 * prompt computed as one batch gives the same logits as token by token, and
 * results do not depend on the thread count or the tiling. Weights and
 * activations are as for vec_dot: rows of the weight type, row stride w_row
 * bytes, and rows of its vec_dot_type, stride xq_row bytes. Read-only on
 * both; writes only its outputs; no allocation; safe to call from several
 * threads on disjoint outputs.
 *
 * Kernels exist only where they pay and only for the AVX-512 VNNI level
 * (quant_gemm_avx512.c) and the AMX level (quant_amx.c for Q8_0, the VNNI
 * ones for the rest); quant_gemm_kernel() returns NULL elsewhere and the
 * caller loops vec_dot. quant_gemm_ref() is the naive form (the reference
 * vec_dot per output) that tests hold the kernels against.
 * Rejected: repacking weights at load (a second copy of the model, or a
 * layout the decode path and the GGUF mapping cannot share).
 */
#ifndef HY_QUANT_QUANT_GEMM_H
#define HY_QUANT_QUANT_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Batches below this many tokens are better served by vec_dot per output. */
#define QUANT_GEMM_MIN_TOK 8

typedef void (*quant_gemm_fn)(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                              const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy);

/* The gemm kernel of `type` at the ISA level selected now (quant_isa_current),
 * or NULL when there is none: then loop quant_kernels(type)->vec_dot. */
quant_gemm_fn quant_gemm_kernel(uint32_t type);

/* Matrix-vector form for one token (decode): y[r] for r < n_rows equals
 * quant_kernels(type)->vec_dot(n_cols, row r, xq) bit for bit, like the gemm
 * kernels, but several rows are read at once: on some cores one row at a
 * time keeps too few misses in flight (F16 decode: 21 against 25 GB/s on 2
 * cores of a Xeon), on others several streams are the slower (a Zen 4: 14
 * against 25 GB/s a core for rows of 4096), so the CPU backend times both
 * ways and keeps the faster. Same rules as quant_gemm_fn otherwise. */
typedef void (*quant_gemv_fn)(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                              const void *xq, float *y);

/* The gemv kernel of `type` at the ISA level selected now, or NULL: then
 * loop quant_kernels(type)->vec_dot. */
quant_gemv_fn quant_gemv_kernel(uint32_t type);

/* The naive form: the reference vec_dot of quant_traits(type) per output.
 * type must be supported (quant_is_supported). */
void quant_gemm_ref(uint32_t type, int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                    const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy);

/* Internal to src/quant: the AVX-512 VNNI kernels, indexed by type id (NULL
 * where none), and whether quant_gemm_avx512.c was compiled for that level. */
extern const bool quant_gemm_avx512_built;
extern const quant_gemm_fn quant_gemm_avx512_vnni_table[HY_TYPE_COUNT];
/* The AVX-512 gemv kernels (quant_gemm_avx512.c), offered at the VNNI and
 * AMX levels (whose vec_dot for these types is the AVX-512 one). */
extern const quant_gemv_fn quant_gemv_avx512_table[HY_TYPE_COUNT];
/* The AVX2 level's prompt kernels (quant_gemm_avx2.c): Q4_0, Q5_0 and Q8_0. */
extern const quant_gemm_fn quant_gemm_avx2_table[HY_TYPE_COUNT];
/* The AMX level's kernels (quant_amx.c), NULL where the VNNI one serves. */
extern const quant_gemm_fn quant_gemm_amx_table[HY_TYPE_COUNT];
extern const quant_gemv_fn quant_gemv_amx_table[HY_TYPE_COUNT];

#endif
