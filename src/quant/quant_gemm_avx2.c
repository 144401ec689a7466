/*
 * AVX2 prompt kernels (see quant_gemm.h) for the 32-element types. Compiled
 * with the same flags as quant_avx2.c, whose vec_dots they reproduce; offered
 * at the AVX2 level only (quant_gemm.c).
 */
#include "quant/quant_cpu.h"
#include "quant/quant_gemm.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_avx2_inl.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Q4_0, Q5_0 and Q8_0 against Q8_0 for a tile of L2_ROWS weight rows by
 * L2_TOK tokens: each block's unpacked weights (nibbles, the high bits,
 * Q8_0's widened halves) and its scale serve every token of the tile, each
 * token's activation block (with Q4_0's and Q5_0's c * v, Q8_0's widened
 * halves) and its scale every row. Per output the operations are those of
 * quant_avx2.c's vec_dot, in its order: block i's scaled sum goes into chain i % 2
 * (a pair's first block into acc0, its second into acc1, an odd last block
 * into acc0), and the two chains are summed by hsum_ps at the end; so every
 * output equals vec_dot's bit for bit, and batch and token-by-token logits
 * agree (tests/test_quant_gemm.c checks it). Rows are walked in blocks of
 * L2_ROW_BLOCK and tokens in blocks of L2_TOK_BLOCK, so that a block of
 * rows stays in L1/L2 while the token tiles pass over it. */
#define L2_ROWS      2
#define L2_TOK       3
#define L2_ROW_BLOCK 16
#define L2_TOK_BLOCK 64

#define L2_INLINE static inline __attribute__((always_inline))

enum leg2 { L2_Q4_0, L2_Q5_0, L2_Q8_0 };

L2_INLINE size_t l2_bytes(enum leg2 k)
{
    return k == L2_Q4_0   ? sizeof(struct block_q4_0)
           : k == L2_Q5_0 ? sizeof(struct block_q5_0)
                          : sizeof(struct block_q8_0);
}

/* A row's block as vec_dot unpacks it: q (Q4_0, Q5_0), or the widened
 * halves a, b (Q8_0). */
struct l2_half {
    __m256i a, b;
};

L2_INLINE struct l2_half l2_weights(const uint8_t *blk, enum leg2 k)
{
    struct l2_half w;
    if (k == L2_Q8_0) {
        const struct block_q8_0 *x = (const struct block_q8_0 *)blk;
        w.a = _mm256_cvtepi8_epi16(load128(x->qs));
        w.b = _mm256_cvtepi8_epi16(load128(x->qs + 16));
    } else if (k == L2_Q5_0) {
        const struct block_q5_0 *x = (const struct block_q5_0 *)blk;
        w.a = q5_values32(x->qs, x->qh);
        w.b = _mm256_setzero_si256();
    } else {
        w.a = nibbles32(((const struct block_q4_0 *)blk)->qs);
        w.b = _mm256_setzero_si256();
    }
    return w;
}

/* A token's block: v and c * v by maddubs (Q4_0 c = 8, Q5_0 c = 16), or the
 * widened halves (Q8_0). */
L2_INLINE struct l2_half l2_act(const struct block_q8_0 *y, enum leg2 k)
{
    struct l2_half v;
    if (k == L2_Q8_0) {
        v.a = _mm256_cvtepi8_epi16(load128(y->qs));
        v.b = _mm256_cvtepi8_epi16(load128(y->qs + 16));
    } else {
        v.a = load256(y->qs);
        v.b = _mm256_maddubs_epi16(_mm256_set1_epi8(k == L2_Q5_0 ? 16 : 8), v.a);
    }
    return v;
}

/* q4_0_block, q5_0_block or q8_0_block from the unpacked sides. */
L2_INLINE __m256 l2_dot(struct l2_half w, struct l2_half v, enum leg2 k)
{
    if (k == L2_Q8_0)
        return _mm256_cvtepi32_ps(
            _mm256_add_epi32(_mm256_madd_epi16(w.a, v.a), _mm256_madd_epi16(w.b, v.b)));
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(w.a, v.a), v.b);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* acc[r][t] += scale * dot of block i for nr rows and nt tokens. */
L2_INLINE void l2_block(const uint8_t *x, size_t w_row, int nr, enum leg2 k, int64_t i,
                        const uint8_t *xq, size_t xq_row, int nt, __m256 acc[L2_ROWS][L2_TOK])
{
    const size_t bb = l2_bytes(k);
    struct l2_half w[L2_ROWS];
    __m256 dx[L2_ROWS];
    for (int r = 0; r < nr; r++) {
        const uint8_t *blk = x + (size_t)r * w_row + (size_t)i * bb;
        hy_half d;
        memcpy(&d, blk, sizeof(d));
        w[r] = l2_weights(blk, k);
        dx[r] = _mm256_broadcast_ss(&quant_cpu_f16_table[d]);
    }
    for (int t = 0; t < nt; t++) {
        const struct block_q8_0 *yb = (const struct block_q8_0 *)(xq + (size_t)t * xq_row) + i;
        const struct l2_half v = l2_act(yb, k);
        const __m256 dy = _mm256_broadcast_ss(&quant_cpu_f16_table[yb->d]);
        for (int r = 0; r < nr; r++)
            acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dx[r], dy), l2_dot(w[r], v, k), acc[r][t]);
    }
}

L2_INLINE void l2_tile(int64_t nb, const uint8_t *x, size_t w_row, int nr, enum leg2 k,
                       const uint8_t *xq, size_t xq_row, int nt, float *y, int64_t ldy)
{
    const size_t bb = l2_bytes(k);
    __m256 acc0[L2_ROWS][L2_TOK], acc1[L2_ROWS][L2_TOK];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc0[r][t] = acc1[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        for (int r = 0; r < nr; r++) prefetch_ahead(x + (size_t)r * w_row + (size_t)i * bb, 2 * bb);
        l2_block(x, w_row, nr, k, i, xq, xq_row, nt, acc0);
        l2_block(x, w_row, nr, k, i + 1, xq, xq_row, nt, acc1);
    }
    if (i < nb) l2_block(x, w_row, nr, k, i, xq, xq_row, nt, acc0);
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            y[t * ldy + r] = hsum_ps(_mm256_add_ps(acc0[r][t], acc1[r][t]));
}

/* A tile with nr and nt made constants (the accumulators stay in registers). */
L2_INLINE void l2_tile_any(int64_t nb, const uint8_t *x, size_t w_row, int nr, enum leg2 k,
                           const uint8_t *xq, size_t xq_row, int nt, float *y, int64_t ldy)
{
    if (nr == 2) {
        if (nt == 3) return l2_tile(nb, x, w_row, 2, k, xq, xq_row, 3, y, ldy);
        if (nt == 2) return l2_tile(nb, x, w_row, 2, k, xq, xq_row, 2, y, ldy);
        return l2_tile(nb, x, w_row, 2, k, xq, xq_row, 1, y, ldy);
    }
    if (nt == 3) return l2_tile(nb, x, w_row, 1, k, xq, xq_row, 3, y, ldy);
    if (nt == 2) return l2_tile(nb, x, w_row, 1, k, xq, xq_row, 2, y, ldy);
    l2_tile(nb, x, w_row, 1, k, xq, xq_row, 1, y, ldy);
}

L2_INLINE void l2_gemm(enum leg2 k, int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                       const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    const int64_t nb = n_cols / QK8_0;
    for (int64_t t0 = 0; t0 < n_tok; t0 += L2_TOK_BLOCK) {
        const int64_t t1 = t0 + L2_TOK_BLOCK < n_tok ? t0 + L2_TOK_BLOCK : n_tok;
        for (int64_t r0 = 0; r0 < n_rows; r0 += L2_ROW_BLOCK) {
            const int64_t r1 = r0 + L2_ROW_BLOCK < n_rows ? r0 + L2_ROW_BLOCK : n_rows;
            for (int64_t ts = t0; ts < t1; ts += L2_TOK) {
                const int nt = (int)(t1 - ts < L2_TOK ? t1 - ts : L2_TOK);
                for (int64_t r = r0; r < r1; r += L2_ROWS) {
                    const int nr = (int)(r1 - r < L2_ROWS ? r1 - r : L2_ROWS);
                    l2_tile_any(nb, wb + (size_t)r * w_row, w_row, nr, k, xb + (size_t)ts * xq_row,
                                xq_row, nt, y + ts * ldy + r, ldy);
                }
            }
        }
    }
}

#define L2_ENTRY(name, kind)                                                                       \
    static void name##_gemm(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,           \
                            const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)   \
    {                                                                                              \
        l2_gemm(kind, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, ldy);                        \
    }

L2_ENTRY(q4_0, L2_Q4_0)
L2_ENTRY(q5_0, L2_Q5_0)
L2_ENTRY(q8_0, L2_Q8_0)

#undef L2_ENTRY

const quant_gemm_fn quant_gemm_avx2_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q4_0] = q4_0_gemm,
    [HY_TYPE_Q5_0] = q5_0_gemm,
    [HY_TYPE_Q8_0] = q8_0_gemm,
};

#else

const quant_gemm_fn quant_gemm_avx2_table[HY_TYPE_COUNT] = {NULL};

#endif
