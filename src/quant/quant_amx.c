/*
 * The AVX-512 AMX level (QUANT_ISA_AVX512_AMX): prompt kernels on the AMX
 * int8 tiles for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K, and the vec_dots whose float
 * order they share. Every other kernel of this level is the AVX-512 VNNI
 * one (quant_cpu.c layers this file's table over the VNNI tables;
 * quant_gemm.c takes the VNNI or AVX-512 kernels where this file has none).
 *
 * Why a level of its own: a tile product gives whole-block integer sums
 * (tdpbssd over K = 32 bytes is the exact int32 dot product of a weight
 * block and an activation block), while the VNNI vec_dots scale per-lane
 * partial sums of 4 products, so the two cannot agree bit for bit. The
 * vec_dots here work on whole-block (Q4_0, Q8_0) or whole-super-block (K-quants)
 * integer sums, in a float order the gemm can follow; the orders are spelled
 * out in the Q8_0 and K-quant sections. The integer sums are exact either
 * way and each output sees the same float operations in the same order, so
 * batch and token-by-token logits stay equal (quant_gemm.h); against the
 * reference the results differ by float reassociation only
 * (tests/test_quant_simd.c, tests/test_quant_gemm.c).
 *
 * The gemms: the activations are the B tiles, which AMX wants with 4
 * consecutive bytes of a token side by side for 16 tokens, so a thread
 * repacks a block of tokens (a 16 x 16 dword transpose per 64 bytes; as
 * many tokens as keep them within 1 MiB of L2) before it walks its rows.
 * Q8_0's weight rows are the A tiles straight from the GGUF layout (16 rows
 * x a block's 32 bytes, loaded with the row stride); Q4_0's nibbles are
 * unpacked into signed bytes q - 8 once per row tile and token block (a
 * row tile's blocks, 512 bytes each, stay in L2). The K-quants' 4-6 bit
 * values and 6-8 bit scales are repacked per row tile and token block into
 * int8 "planes" that fold the scales into the tile products (see there).
 * Rows past the last whole 16 are computed with the vec_dot.
 *
 * AMX on Linux: the tile data state must be requested once per process
 * (arch_prctl ARCH_REQ_XCOMP_PERM, see quant_amx_usable); each thread loads
 * its tile configuration at the start of a gemm call and releases the tiles
 * at the end, so that no tile state lives across calls. The per-thread
 * buffer (scratch_get) grows on first use and is freed at thread exit.
 *
 * Rejected: repacking the weights at load (a second copy of the model, or
 * a layout that the decode path and the GGUF mapping cannot share); the B
 * tiles on the weight side (each weight block transposed once per token
 * block instead of each activation block once per row chunk); for the
 * K-quants, one tile product per sub-block and an integer multiply by its
 * scale afterwards (16 vpmulld per row and super-block: no faster than the
 * VNNI kernel for Q6_K); in the Q8_0 gemv, making the activation side of
 * each block pair once per call instead of once per row (no faster: decode
 * is bound by the weight streams); AMX-BF16 for F16 weights (BF16 rounds F16 values
 * to 8 significant bits, and even split into exact BF16 pairs the tiles'
 * own accumulation order is not one a decode vec_dot can follow).
 */
#include "quant/quant_cpu.h"
#include "quant/quant_gemm.h"

#include <stdint.h>

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) &&                      \
    defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) &&                     \
    defined(__AVX512VNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) &&       \
    defined(__linux__)

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"
#include "quant/blocks.h"
#include "quant/quant_avx512_inl.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The per-block and per-group helpers are inlined into their loops: as
 * calls, they reload their constants every time (the compiler left the
 * group sums out of line, 17% of decode time). */
#define A_INLINE static inline __attribute__((always_inline))

/* Lane c of a group's sums holds block k_perm[c] of the group (the order the
 * reduction in legacy_group_sums leaves them in); block b goes to lane k_lane[b]. */
static const int k_perm[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
static const int k_lane[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};

/* ---- Q8_0 and Q4_0 vec_dot ----------------------------------------------------
 * Float order (n / 32 = nb blocks): sixteen chains (one chain of FMAs per
 * 34-byte block would bound the decode vec_dot by FMA latency). Block b
 * belongs to group b / 16 and to chain k_lane[b % 16]; chain c starts at +0
 * and takes, for its blocks in increasing b, acc = fma(dx_b * dy_b,
 * (float)s_b, acc), s_b the exact int32 block dot product, dx_b and dy_b
 * the block scales as floats (their product rounded once). The result is
 * hsum512 of the chains, chain c in lane c: ((c0 + c8) + (c4 + c12)) +
 * ((c2 + c10) + (c6 + c14)) for the even lanes, likewise the odd, then
 * their sum. The vec_dot holds the chains in the lanes of one vector and
 * gets a group's 16 block sums from vpdpbusd and a transposing reduction,
 * which leaves block k_perm[c] of the group in lane c (k_lane is its
 * inverse); the gemm holds a vector of tokens per (chain, weight row) and
 * updates chain k_lane[b % 16] from the tile product of block b. */

/* Q4_0 shares Q8_0's float order and tile kernel. Both blocks are a half
 * scale and 32 values: Q8_0's signed bytes, Q4_0's nibbles q taken as q - 8.
 * A block is bb bytes (34 or 18), its values from byte 2; q4 says which. */

/* The 32 values of the block at x as unsigned bytes u, value = u - c: Q8_0's
 * bytes with the sign bit flipped (c = 128), Q4_0's nibbles (c = 8), the low
 * nibbles first. */
A_INLINE __m256i legacy_u256(const uint8_t *x, bool q4)
{
    if (!q4) return _mm256_xor_si256(load256(x + 2), _mm256_set1_epi8((char)0x80));
    const __m256i v = _mm256_broadcastsi128_si256(load128(x + 2));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0f));
}

/* The int32 sums of x * y for the blocks at xa and xb against ya, yb:
 * lanes 0-7 four products each of the first, lanes 8-15 of the second. With
 * the values as u - c (legacy_u256), c * y is taken out as the start value
 * (exact: no lane can overflow). */
A_INLINE __m512i legacy_two_lanes(const uint8_t *xa, const uint8_t *xb, bool q4,
                                  const struct block_q8_0 *ya, const struct block_q8_0 *yb)
{
    const __m512i c = _mm512_set1_epi8((char)(q4 ? 8 : 0x80));
    const __m512i u =
        _mm512_inserti64x4(_mm512_castsi256_si512(legacy_u256(xa, q4)), legacy_u256(xb, q4), 1);
    const __m512i v =
        _mm512_inserti64x4(_mm512_castsi256_si512(load256(ya->qs)), load256(yb->qs), 1);
    const __m512i negc =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, v));
    return _mm512_dpbusd_epi32(negc, u, v);
}

/* The same for the consecutive blocks at x and y. */
A_INLINE __m512i legacy_pair_lanes(const uint8_t *x, size_t bb, bool q4, const struct block_q8_0 *y)
{
    return legacy_two_lanes(x, x + bb, q4, y, y + 1);
}

/* The 16 block sums of a group from its 8 pair vectors, block k_perm[c] in
 * lane c: pairs of vectors summed within 128-bit lanes (32-bit, then 64-bit
 * interleave), then the two 128-bit lanes of each block. */
A_INLINE __m512i q8_reduce(const __m512i v[8])
{
    __m512i a[4], b[2];
    for (int k = 0; k < 4; k++)
        a[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        b[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]),
                                _mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The 16 block dot products of a group, block k_perm[c] in lane c. */
A_INLINE __m512i legacy_group_sums(const uint8_t *x, size_t bb, bool q4, const struct block_q8_0 *y)
{
    __m512i v[8];
    for (int k = 0; k < 8; k++) v[k] = legacy_pair_lanes(x + 2 * k * bb, bb, q4, y + 2 * k);
    return q8_reduce(v);
}

/* The scales of a group's 16 blocks of bb bytes as floats, block k_perm[c]
 * in lane c: one gather of the dwords at the blocks' starts, their low
 * halves converted by vcvtph2ps (the same values as quant_cpu_f16_table). */
A_INLINE __m512 group_scales(const void *b, size_t bb)
{
    const __m512i off = _mm512_mullo_epi32(_mm512_loadu_si512(k_perm), _mm512_set1_epi32((int)bb));
    const __m512i v = _mm512_i32gather_epi32(off, b, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/* acc + the group of 16 blocks at x against y (scales dy), lane by lane. */
A_INLINE __m512 legacy_group(const uint8_t *x, size_t bb, bool q4, const struct block_q8_0 *y,
                             __m512 dy, __m512 acc)
{
    const __m512i s = legacy_group_sums(x, bb, q4, y);
    return _mm512_fmadd_ps(_mm512_mul_ps(group_scales(x, bb), dy), _mm512_cvtepi32_ps(s), acc);
}

/* A block of zeros, weights and activations alike: the stand-in for the
 * blocks past a row's end in its last, partial group (sums 0, its lanes not
 * accumulated). Larger than any legacy block. */
static const uint8_t k_zero_block[64] = {0};

/* acc + the last, partial group (blocks g..nb-1), lanes of absent blocks
 * kept: legacy_group's operations on the blocks present, their pairs
 * completed by zero blocks, and the scales gathered for present lanes only
 * (rows of 1408 values have 12 of their 44 blocks here). */
A_INLINE __m512 legacy_tail(const uint8_t *x, size_t bb, bool q4, const struct block_q8_0 *y,
                            int64_t g, int64_t nb, __m512 acc)
{
    const int64_t left = nb - g; /* 1..15 */
    const uint8_t *xg = x + (size_t)g * bb;
    const struct block_q8_0 *yg = y + g, *yz = (const struct block_q8_0 *)k_zero_block;
    __m512i v[8];
    for (int p = 0; p < 8; p++) {
        const int64_t b0 = 2 * p, b1 = b0 + 1;
        if (b0 >= left) {
            v[p] = _mm512_setzero_si512();
            continue;
        }
        v[p] =
            legacy_two_lanes(xg + (size_t)b0 * bb, b1 < left ? xg + (size_t)b1 * bb : k_zero_block,
                             q4, yg + b0, b1 < left ? yg + b1 : yz);
    }
    const __m512i s = q8_reduce(v);
    /* lane c holds block k_perm[c]: present where k_perm[c] < left */
    const __m512i perm = _mm512_loadu_si512(k_perm);
    const __mmask16 m = _mm512_cmplt_epi32_mask(perm, _mm512_set1_epi32((int)left));
    const __m512i offx = _mm512_mullo_epi32(perm, _mm512_set1_epi32((int)bb));
    const __m512i offy =
        _mm512_mullo_epi32(perm, _mm512_set1_epi32((int)sizeof(struct block_q8_0)));
    const __m512i hx = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, offx, xg, 1);
    const __m512i hy = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, offy, yg, 1);
    const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(hx)),
                                   _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hy)));
    return _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc, m);
}

A_INLINE float legacy_vec_dot_amx(int64_t n, const uint8_t *x, size_t bb, bool q4,
                                  const struct block_q8_0 *y)
{
    const int64_t nb = n / QK8_0;
    __m512 acc = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 16 <= nb; g += 16) {
        prefetch_ahead(x + (size_t)g * bb, 16 * bb);
        acc = legacy_group(x + (size_t)g * bb, bb, q4, y + g,
                           group_scales(y + g, sizeof(struct block_q8_0)), acc);
    }
    if (g < nb) acc = legacy_tail(x, bb, q4, y, g, nb, acc);
    return hsum512(acc);
}

static float q8_0_vec_dot_amx(int64_t n, const void *restrict vx, const void *restrict vy)
{
    return legacy_vec_dot_amx(n, vx, sizeof(struct block_q8_0), false, vy);
}

static float q4_0_vec_dot_amx(int64_t n, const void *restrict vx, const void *restrict vy)
{
    return legacy_vec_dot_amx(n, vx, sizeof(struct block_q4_0), true, vy);
}

/* ---- gemm ------------------------------------------------------------------ */

#define AMX_TOK_TILE 16 /* tokens per B tile (its 16 int32 columns) */
#define AMX_ROW_TILE 16 /* weight rows per A tile */

/* The tile configuration, the layout ldtilecfg reads (palette 1). */
struct amx_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
_Static_assert(sizeof(struct amx_tilecfg) == 64, "ldtilecfg reads 64 bytes");

/* Per-thread buffer, grown on demand (a thread keeps it until it exits):
 * the repacked activations of a token block and their scales, the K-quant
 * weight planes of a row tile, the stored tile products. */
struct amx_scratch {
    size_t bytes;
    uint8_t *mem; /* owned, 64-byte aligned */
};

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static bool g_key_ok;

static void scratch_free(void *p)
{
    struct amx_scratch *s = p;
    free(s->mem);
    free(s);
}

static void key_init(void)
{
    g_key_ok = pthread_key_create(&g_key, scratch_free) == 0;
}

/* At least `bytes` of this thread's buffer, or NULL when out of memory. */
static uint8_t *scratch_get(size_t bytes)
{
    pthread_once(&g_key_once, key_init);
    if (!g_key_ok) return NULL;
    struct amx_scratch *s = pthread_getspecific(g_key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) return NULL;
        if (pthread_setspecific(g_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->bytes < bytes) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0) return NULL;
        free(s->mem);
        s->mem = p;
        s->bytes = bytes;
    }
    return s->mem;
}

/* r[m] dword k becomes r[k] dword m (a 16 x 16 dword transpose): 32-bit
 * then 64-bit interleaves within 128-bit lanes, then the lanes. */
static inline void transpose16(__m512i r[16])
{
    __m512i a[16], b[16];
    for (int j = 0; j < 8; j++) {
        a[2 * j] = _mm512_unpacklo_epi32(r[2 * j], r[2 * j + 1]);
        a[2 * j + 1] = _mm512_unpackhi_epi32(r[2 * j], r[2 * j + 1]);
    }
    /* b[4j + q], lane L: dword 4L + q of rows 4j..4j+3 */
    for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++) {
            b[4 * j + 2 * h] = _mm512_unpacklo_epi64(a[4 * j + h], a[4 * j + 2 + h]);
            b[4 * j + 2 * h + 1] = _mm512_unpackhi_epi64(a[4 * j + h], a[4 * j + 2 + h]);
        }
    /* row 4L + q: lane L of b[q], b[4 + q], b[8 + q], b[12 + q] */
    for (int q = 0; q < 4; q++) {
        const __m512i c0 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0x44);
        const __m512i c1 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0xee);
        const __m512i c2 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0x44);
        const __m512i c3 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0xee);
        r[q] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        r[4 + q] = _mm512_shuffle_i32x4(c0, c2, 0xdd);
        r[8 + q] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        r[12 + q] = _mm512_shuffle_i32x4(c1, c3, 0xdd);
    }
}

/* One token (quant_gemm.h's gemv): GEMV_ROWS rows at once, each row's
 * operations those of legacy_vec_dot_amx (Q8_0, Q4_0), so that one core
 * keeps several streams of weights in flight. Each stream prefetches QUANT_PREFETCH_BYTES
 * ahead in its row and, past the row's end, in the same row of the next
 * group (the next row is its neighbour stream's): without that, the rows
 * after the first of a group (4 KiB ahead is most of a 4352-byte row) ran
 * without software prefetch and the kernel was no faster than vec_dot. */
#define GEMV_ROWS 4

A_INLINE void legacy_gemv_amx(size_t bb, bool q4, int64_t n_cols, const void *w, size_t w_row,
                              int64_t n_rows, const void *xq, float *out)
{
    const struct block_q8_0 *y = xq;
    const int64_t nb = n_cols / QK8_0;
    const size_t grp_bytes = 16 * bb;
    for (int64_t r0 = 0; r0 < n_rows; r0 += GEMV_ROWS) {
        const int nr = (int)(n_rows - r0 < GEMV_ROWS ? n_rows - r0 : GEMV_ROWS);
        const uint8_t *x[GEMV_ROWS];
        __m512 acc[GEMV_ROWS];
        for (int r = 0; r < nr; r++) {
            x[r] = (const uint8_t *)w + (size_t)(r0 + r) * w_row;
            acc[r] = _mm512_setzero_ps();
        }
        int64_t g = 0;
        for (; g + 16 <= nb; g += 16) {
            const __m512 dy = group_scales(y + g, sizeof(struct block_q8_0));
            const size_t ahead = (size_t)g * bb + QUANT_PREFETCH_BYTES;
            const size_t skip = ahead >= w_row ? (size_t)(GEMV_ROWS - 1) * w_row : 0;
            for (int r = 0; r < nr; r++) {
                const uintptr_t pf = (uintptr_t)x[r] + ahead + skip;
                for (size_t o = 0; o < grp_bytes; o += 64)
                    _mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
                acc[r] = legacy_group(x[r] + (size_t)g * bb, bb, q4, y + g, dy, acc[r]);
            }
        }
        for (int r = 0; r < nr; r++) {
            if (g < nb) acc[r] = legacy_tail(x[r], bb, q4, y, g, nb, acc[r]);
            out[r0 + r] = hsum512(acc[r]);
        }
    }
}

static void q8_0_gemv_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                          const void *xq, float *out)
{
    legacy_gemv_amx(sizeof(struct block_q8_0), false, n_cols, w, w_row, n_rows, xq, out);
}

static void q4_0_gemv_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                          const void *xq, float *out)
{
    legacy_gemv_amx(sizeof(struct block_q4_0), true, n_cols, w, w_row, n_rows, xq, out);
}

/* Token tiles per block of a gemm call: as many as keep the block's packed
 * activations (tile_bytes per tile and block) within 1 MiB of L2, 4..32. */
static int tiles_per_block(int64_t nb, size_t tile_bytes)
{
    const int64_t fit = ((int64_t)1 << 20) / (nb * (int64_t)tile_bytes);
    return (int)(fit < 4 ? 4 : fit > 32 ? 32 : fit);
}

/* Activations of tokens [t0, t0 + nt) (nt <= 16 ntb), block by block:
 * bp[(b * ntb + tt) * 512 + k * 64 + m * 4 + j] = byte 4k + j of block b of
 * token t0 + 16 tt + m, and dyp[(b * ntb + tt) * 16 + m] its scale; zero
 * for the tokens past nt. Two blocks per 16 x 16 dword transpose. */
static void pack_tokens(const uint8_t *xq, size_t xq_row, int64_t t0, int nt, int ntb, int64_t nb,
                        uint8_t *bp, float *dyp)
{
    const float *tab = quant_cpu_f16_table;
    const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
    for (int tt = 0; tt < n_tt; tt++) {
        const struct block_q8_0 *row[AMX_TOK_TILE];
        for (int m = 0; m < AMX_TOK_TILE; m++) {
            const int t = tt * AMX_TOK_TILE + m;
            row[m] = t < nt ? (const struct block_q8_0 *)(xq + (size_t)(t0 + t) * xq_row) : NULL;
        }
        for (int64_t b = 0; b < nb; b += 2) {
            const bool two = b + 1 < nb;
            __m512i r[16];
            for (int m = 0; m < AMX_TOK_TILE; m++) {
                if (!row[m]) {
                    r[m] = _mm512_setzero_si512();
                    dyp[(b * ntb + tt) * 16 + m] = 0.0f;
                    if (two) dyp[((b + 1) * ntb + tt) * 16 + m] = 0.0f;
                    continue;
                }
                const __m256i lo = load256(row[m][b].qs);
                r[m] = two ? _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                                                load256(row[m][b + 1].qs), 1)
                           : _mm512_zextsi256_si512(lo);
                dyp[(b * ntb + tt) * 16 + m] = tab[row[m][b].d];
                if (two) dyp[((b + 1) * ntb + tt) * 16 + m] = tab[row[m][b + 1].d];
            }
            transpose16(r);
            uint8_t *d0 = bp + (size_t)(b * ntb + tt) * 512;
            for (int k = 0; k < 8; k++) _mm512_storeu_si512(d0 + 64 * k, r[k]);
            if (two) {
                uint8_t *d1 = bp + (size_t)((b + 1) * ntb + tt) * 512;
                for (int k = 0; k < 8; k++) _mm512_storeu_si512(d1 + 64 * k, r[8 + k]);
            }
        }
    }
}

/* Rows [r, r + 16) against token tiles tp and tp + 1 (when two) of the
 * packed block: y of tokens t0 + 16 (tp + u) + m, m < nt[u]. Block b's A
 * tile (16 rows of its 32 signed bytes) at a + b * a_blk, a row apart; row
 * n's scale (a half) at sc + b * sc_blk + n * sc_row. A weight tile
 * serves both token tiles; the products of a block go to one of two sets
 * of C tiles (3, 4 and 5, 6; A is 0, B 1 and 2), and the float work of a
 * block is done while the tile products of the next one run. */
A_INLINE void legacy_tile_pair(int64_t nb, const uint8_t *a, size_t a_row, size_t a_blk,
                               const uint8_t *sc, size_t sc_row, size_t sc_blk, const uint8_t *bp,
                               const float *dyp, int ntb, int tp, int two, int32_t *cbuf, float *y,
                               int64_t ldy, const int nt[2])
{
    /* acc[(c * 16 + n) * 2 + u]: chain c, weight row n, token tile u */
    __m512 acc[16 * AMX_ROW_TILE * 2];
    for (int i = 0; i < 16 * AMX_ROW_TILE * 2; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b <= nb; b++) {
        if (b < nb) {
            const uint8_t *bt = bp + (size_t)(b * ntb + tp) * 512;
            int32_t *cb = cbuf + (b % 2) * 512;
            _tile_loadd(0, a + (size_t)b * a_blk, (long)a_row);
            _tile_loadd(1, bt, 64);
            if (two) _tile_loadd(2, bt + 512, 64);
            if (b % 2) {
                _tile_zero(5);
                _tile_dpbssd(5, 0, 1);
                _tile_stored(5, cb, 64);
                if (two) {
                    _tile_zero(6);
                    _tile_dpbssd(6, 0, 2);
                    _tile_stored(6, cb + 256, 64);
                }
            } else {
                _tile_zero(3);
                _tile_dpbssd(3, 0, 1);
                _tile_stored(3, cb, 64);
                if (two) {
                    _tile_zero(4);
                    _tile_dpbssd(4, 0, 2);
                    _tile_stored(4, cb + 256, 64);
                }
            }
        }
        if (b > 0) {
            const int64_t pb = b - 1;
            const float *tab = quant_cpu_f16_table;
            const uint8_t *sb = sc + (size_t)pb * sc_blk;
            const int32_t *cb = cbuf + (pb % 2) * 512;
            __m512 *ac = acc + k_lane[pb % 16] * 32;
            const __m512 dy0 = _mm512_loadu_ps(dyp + (pb * ntb + tp) * 16);
            const __m512 dy1 = _mm512_loadu_ps(dyp + (pb * ntb + tp + two) * 16);
            for (int n = 0; n < AMX_ROW_TILE; n++) {
                hy_half h;
                memcpy(&h, sb + (size_t)n * sc_row, sizeof(h));
                const __m512 dx = _mm512_set1_ps(tab[h]);
                ac[2 * n] =
                    _mm512_fmadd_ps(_mm512_mul_ps(dx, dy0),
                                    _mm512_cvtepi32_ps(_mm512_load_si512(cb + 16 * n)), ac[2 * n]);
                if (two)
                    ac[2 * n + 1] = _mm512_fmadd_ps(
                        _mm512_mul_ps(dx, dy1),
                        _mm512_cvtepi32_ps(_mm512_load_si512(cb + 256 + 16 * n)), ac[2 * n + 1]);
            }
        }
    }
    /* the chains combined as hsum512 combines lanes */
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        for (int u = 0; u <= two; u++) {
            __m512 s8[8];
            for (int c = 0; c < 8; c++)
                s8[c] = _mm512_add_ps(acc[(c * 16 + n) * 2 + u], acc[((c + 8) * 16 + n) * 2 + u]);
            for (int c = 0; c < 4; c++) s8[c] = _mm512_add_ps(s8[c], s8[c + 4]);
            for (int c = 0; c < 2; c++) s8[c] = _mm512_add_ps(s8[c], s8[c + 2]);
            float r[16];
            _mm512_storeu_ps(r, _mm512_add_ps(s8[0], s8[1]));
            float *yo = y + (int64_t)(tp + u) * AMX_TOK_TILE * ldy + n;
            for (int m = 0; m < nt[u]; m++) yo[m * ldy] = r[m];
        }
    }
}

/* Q4_0's A tiles: rows [r, r + 16) of every block as signed bytes q - 8,
 * block b's 16 rows of 32 at ap + 512 b. */
static void q4_0_pack_rows(const uint8_t *w, size_t w_row, int64_t nb, uint8_t *ap)
{
    const __m256i eight = _mm256_set1_epi8(8);
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        const uint8_t *x = w + (size_t)n * w_row;
        for (int64_t b = 0; b < nb; b++)
            _mm256_storeu_si256(
                (__m256i *)(ap + (size_t)b * 512 + 32 * n),
                _mm256_sub_epi8(legacy_u256(x + (size_t)b * sizeof(struct block_q4_0), true),
                                eight));
    }
}

/* Q8_0 (q4 false: its weight rows are the A tiles where they lie) and Q4_0
 * (q4: each row tile's values unpacked by q4_0_pack_rows first). */
A_INLINE void legacy_gemm_amx(bool q4, int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                              const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    const size_t bb = q4 ? sizeof(struct block_q4_0) : sizeof(struct block_q8_0);
    const int64_t nb = n_cols / QK8_0;
    const int64_t n_full = n_rows / AMX_ROW_TILE * AMX_ROW_TILE;
    const int ntb = tiles_per_block(nb, 512);
    const size_t bp_bytes = (size_t)nb * (size_t)ntb * 512;
    const size_t dy_bytes = (size_t)nb * (size_t)ntb * 16 * sizeof(float);
    const size_t c_bytes = 2 * 512 * sizeof(int32_t);
    const size_t a_bytes = q4 ? (size_t)nb * 512 : 0;
    uint8_t *mem = n_full ? scratch_get(c_bytes + bp_bytes + dy_bytes + a_bytes) : NULL;
    const uint8_t *wb = w, *xb = xq;
    if (mem) {
        int32_t *cbuf = (int32_t *)mem;
        uint8_t *bp = mem + c_bytes;
        float *dyp = (float *)(bp + bp_bytes);
        uint8_t *ap = (uint8_t *)dyp + dy_bytes;
        /* tile 0: A (16 weight rows x 32 bytes); 1, 2: B (8 rows x 16 tokens
         * x 4 bytes); 3-6: C (16 rows x 16 int32) */
        const struct amx_tilecfg cfg = {.palette = 1,
                                        .colsb = {32, 64, 64, 64, 64, 64, 64},
                                        .rows = {16, 8, 8, 16, 16, 16, 16}};
        _tile_loadconfig(&cfg);
        const int64_t tok_block = (int64_t)ntb * AMX_TOK_TILE;
        for (int64_t t0 = 0; t0 < n_tok; t0 += tok_block) {
            const int nt = (int)(n_tok - t0 < tok_block ? n_tok - t0 : tok_block);
            pack_tokens(xb, xq_row, t0, nt, ntb, nb, bp, dyp);
            const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
            for (int64_t r = 0; r < n_full; r += AMX_ROW_TILE) {
                const uint8_t *wr = wb + (size_t)r * w_row;
                if (q4) q4_0_pack_rows(wr, w_row, nb, ap);
                for (int tp = 0; tp < n_tt; tp += 2) {
                    int ntu[2];
                    for (int u = 0; u < 2; u++) {
                        const int left = nt - (tp + u) * AMX_TOK_TILE;
                        ntu[u] = left < 0 ? 0 : left < AMX_TOK_TILE ? left : AMX_TOK_TILE;
                    }
                    if (q4)
                        legacy_tile_pair(nb, ap, 32, 512, wr, w_row, bb, bp, dyp, ntb, tp,
                                         tp + 1 < n_tt, cbuf, y + t0 * ldy + r, ldy, ntu);
                    else
                        legacy_tile_pair(nb, wr + offsetof(struct block_q8_0, qs), w_row, bb, wr,
                                         w_row, bb, bp, dyp, ntb, tp, tp + 1 < n_tt, cbuf,
                                         y + t0 * ldy + r, ldy, ntu);
                }
            }
        }
        _tile_release();
    }
    /* the rows past the last whole tile (all rows if there was no buffer) */
    for (int64_t r = mem ? n_full : 0; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            y[t * ldy + r] =
                legacy_vec_dot_amx(n_cols, wb + (size_t)r * w_row, bb, q4,
                                   (const struct block_q8_0 *)(xb + (size_t)t * xq_row));
}

static void q8_0_gemm_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                          const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    legacy_gemm_amx(false, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, ldy);
}

static void q4_0_gemm_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                          const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    legacy_gemm_amx(true, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, ldy);
}

/* ---- K-quants ---------------------------------------------------------------
 * Float order (Q4_K, Q5_K, Q6_K): four chains. Super-block i gives the
 * exact int32 S_i = sum over its sub-blocks of scale * (the sub-block's dot
 * product; Q6_K's values taken as q - 32) and, for Q4_K/Q5_K, M_i = sum of
 * min * (the activation sum of the sub-block). Chain c = i % 4 takes, for
 * its super-blocks in increasing i from +0, acc_c = fma(dx_i * dy_i,
 * (float)S_i, acc_c) and accm_c = fma(dmin_i * dy_i, (float)M_i, accm_c);
 * the result is ((acc_0 + acc_2) + (acc_1 + acc_3)) minus the same of accm
 * (Q6_K: no accm). Four chains, not one: the vec_dot then reduces the lanes
 * of four super-blocks' integer sums together and does the float work on
 * 4-lane vectors, where one chain cost it a horizontal sum and scalar
 * operations per super-block (a third of its speed in a compute-bound
 * test). The vec_dot forms the lane sums with the VNNI level's integer
 * code; the gemm S_i and M_i from tile products of weight planes (below). */

/* clang-format off */
#define W16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const int16_t k_pair32[4][32] = {
    {W16(0), W16(1)}, {W16(2), W16(3)}, {W16(4), W16(5)}, {W16(6), W16(7)},
};
#undef W16
#define W8(v) v, v, v, v, v, v, v, v
static const int16_t k_quad16[4][32] = {
    {W8(0), W8(1), W8(2), W8(3)},     {W8(4), W8(5), W8(6), W8(7)},
    {W8(8), W8(9), W8(10), W8(11)},   {W8(12), W8(13), W8(14), W8(15)},
};
#undef W8
static const int16_t k_dup_mins[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};
/* clang-format on */

/* The sums of the 8-lane vectors h[0..3] in lanes 0..3. */
A_INLINE __m128i sum4_256(const __m256i h[4])
{
    const __m256i t01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(h[0], h[1]), _mm256_unpackhi_epi32(h[0], h[1]));
    const __m256i t23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(h[2], h[3]), _mm256_unpackhi_epi32(h[2], h[3]));
    const __m256i u =
        _mm256_add_epi32(_mm256_unpacklo_epi64(t01, t23), _mm256_unpackhi_epi64(t01, t23));
    return _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

/* The sums of the 16-lane vectors v[0..3] in lanes 0..3. */
A_INLINE __m128i sum4_512(const __m512i v[4])
{
    __m256i h[4];
    for (int k = 0; k < 4; k++)
        h[k] = _mm256_add_epi32(_mm512_castsi512_si256(v[k]), _mm512_extracti64x4_epi64(v[k], 1));
    return sum4_256(h);
}

/* (v0 + v2) + (v1 + v3), as the gemm combines its chains. */
static inline float hsum128(__m128 v)
{
    const __m128 t = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/* acc + fx * fy * s in lane 0, as the gemm's vector FMA per lane. */
static inline __m128 fma_scalar(float fx, float fy, int32_t s, __m128 acc)
{
    const __m128 d = _mm_mul_ss(_mm_set_ss(fx), _mm_set_ss(fy));
    return _mm_fmadd_ss(d, _mm_cvtsi32_ss(_mm_setzero_ps(), s), acc);
}

/* The integer lanes of a Q4_K/Q5_K super-block at b against y: S_i is the
 * sum of *s's 16 lanes, M_i of *m's 8. */
A_INLINE void k4_lanes(const uint8_t *b, size_t qs_off, size_t qh_off, bool hbits,
                       const struct block_q8_K *y, __m512i *s, __m256i *m)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const __m256i sm16 = _mm256_cvtepu8_epi16(k4_scales(b + 4)); /* 0-7 scales, 8-15 mins */
    *m = _mm256_madd_epi16(
        _mm256_permutexvar_epi16(_mm256_loadu_si256((const __m256i *)k_dup_mins), sm16),
        load256(y->bsums));
    const __m512i sc = _mm512_zextsi256_si512(sm16);
    const __m512i hb = hbits ? _mm512_broadcast_i64x4(load256(b + qh_off)) : _mm512_setzero_si512();
    __m512i sumi = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
        __m512i q = _mm512_and_si512(planes(b + qs_off + 32 * j, nib), m4);
        if (hbits) {
            const __m512i rot = _mm512_rolv_epi64(
                hb, _mm512_setr_epi64((4 - 2 * j) & 63, (4 - 2 * j) & 63, (4 - 2 * j) & 63,
                                      (4 - 2 * j) & 63, (3 - 2 * j) & 63, (3 - 2 * j) & 63,
                                      (3 - 2 * j) & 63, (3 - 2 * j) & 63));
            q = _mm512_ternarylogic_epi32(q, rot, m16, 0xf8);
        }
        const __m512i p = _mm512_maddubs_epi16(q, load512(y->qs + 64 * j));
        sumi = _mm512_dpwssd_epi32(sumi, p, perm16(k_pair32[j], sc));
    }
    *s = sumi;
}

static inline float k4_vec_dot_amx(int64_t n, const uint8_t *x, size_t bb, size_t qs_off,
                                   size_t qh_off, bool hbits, const struct block_q8_K *y)
{
    const float *tab = quant_cpu_f16_table;
    const int64_t nb = n / QK_K;
    __m128 acc = _mm_setzero_ps(), accm = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512i s[4];
        __m256i m[4];
        float dx[4], dm[4], dy[4];
        for (int k = 0; k < 4; k++) {
            const uint8_t *b = x + (size_t)(i + k) * bb;
            prefetch_ahead(b, bb);
            k4_lanes(b, qs_off, qh_off, hbits, y + i + k, &s[k], &m[k]);
            hy_half hd, hmin;
            memcpy(&hd, b, sizeof(hd));
            memcpy(&hmin, b + 2, sizeof(hmin));
            dx[k] = tab[hd];
            dm[k] = tab[hmin];
            dy[k] = y[i + k].d;
        }
        const __m128 vy = _mm_loadu_ps(dy);
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dx), vy), _mm_cvtepi32_ps(sum4_512(s)), acc);
        accm = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dm), vy), _mm_cvtepi32_ps(sum4_256(m)), accm);
    }
    if (i < nb) {
        /* the last 1-3 super-blocks, chain by chain */
        float a[4], am[4];
        _mm_storeu_ps(a, acc);
        _mm_storeu_ps(am, accm);
        for (int c = 0; i + c < nb; c++) {
            const uint8_t *b = x + (size_t)(i + c) * bb;
            __m512i s;
            __m256i m;
            k4_lanes(b, qs_off, qh_off, hbits, y + i + c, &s, &m);
            hy_half hd, hmin;
            memcpy(&hd, b, sizeof(hd));
            memcpy(&hmin, b + 2, sizeof(hmin));
            a[c] = _mm_cvtss_f32(
                fma_scalar(tab[hd], y[i + c].d, _mm512_reduce_add_epi32(s), _mm_set_ss(a[c])));
            am[c] = _mm_cvtss_f32(fma_scalar(tab[hmin], y[i + c].d,
                                             _mm512_reduce_add_epi32(_mm512_zextsi256_si512(m)),
                                             _mm_set_ss(am[c])));
        }
        acc = _mm_loadu_ps(a);
        accm = _mm_loadu_ps(am);
    }
    return hsum128(acc) - hsum128(accm);
}

static float q4_K_vec_dot_amx(int64_t n, const void *restrict x, const void *restrict y)
{
    return k4_vec_dot_amx(n, x, sizeof(struct block_q4_K), offsetof(struct block_q4_K, qs), 0,
                          false, y);
}

static float q5_K_vec_dot_amx(int64_t n, const void *restrict x, const void *restrict y)
{
    return k4_vec_dot_amx(n, x, sizeof(struct block_q5_K), offsetof(struct block_q5_K, qs),
                          offsetof(struct block_q5_K, qh), true, y);
}

/* The integer lanes of a Q6_K super-block (values q - 32, 16 sub-blocks of
 * 16): S_i is the sum of the 16 lanes. */
A_INLINE __m512i q6_lanes(const struct block_q6_K *x, const struct block_q8_K *y)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x->scales));
    const __m256i off = _mm256_madd_epi16(sc16, load256(y->bsums));
    const __m512i sc = _mm512_zextsi256_si512(sc16);
    __m512i sumi = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        const __m512i l = load512(x->ql + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(load256(x->qh + 32 * h));
        const __m512i h01 =
            _mm512_and_si512(_mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)), m30);
        const __m512i q01 = _mm512_ternarylogic_epi32(l, h01, m4, 0xec);
        const __m512i h23 =
            _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)), m30);
        const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h23, m4, 0xec);
        const __m512i p01 = _mm512_maddubs_epi16(q01, load512(y->qs + 128 * h));
        const __m512i p23 = _mm512_maddubs_epi16(q23, load512(y->qs + 128 * h + 64));
        sumi = _mm512_dpwssd_epi32(sumi, p01, perm16(k_quad16[2 * h], sc));
        sumi = _mm512_dpwssd_epi32(sumi, p23, perm16(k_quad16[2 * h + 1], sc));
    }
    return _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
}

static float q6_K_vec_dot_amx(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q6_K *x = vx;
    const struct block_q8_K *y = vy;
    const float *tab = quant_cpu_f16_table;
    const int64_t nb = n / QK_K;
    __m128 acc = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512i s[4];
        float dx[4], dy[4];
        for (int k = 0; k < 4; k++) {
            prefetch_ahead(x + i + k, sizeof(*x));
            s[k] = q6_lanes(x + i + k, y + i + k);
            dx[k] = tab[x[i + k].d];
            dy[k] = y[i + k].d;
        }
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dx), _mm_loadu_ps(dy)),
                           _mm_cvtepi32_ps(sum4_512(s)), acc);
    }
    if (i < nb) {
        float a[4];
        _mm_storeu_ps(a, acc);
        for (int c = 0; i + c < nb; c++)
            a[c] = _mm_cvtss_f32(fma_scalar(tab[x[i + c].d], y[i + c].d,
                                            _mm512_reduce_add_epi32(q6_lanes(x + i + c, y + i + c)),
                                            _mm_set_ss(a[c])));
        acc = _mm_loadu_ps(a);
    }
    return hsum128(acc);
}

/* The gemm. The row scales are folded into the tile products: each scale
 * is split into small digits, and a weight "plane" holds the value times
 * one digit, small enough for int8 (a last plane of Q4_K/Q5_K holds the
 * sub-block's min itself); the AMX
 * product of a plane with the activations over a whole super-block (4 tile
 * products of K = 64, accumulated in the tile) is then the sum over the
 * sub-blocks of digit * (sub-block dot product), and S_i is the digit
 * planes' results weighted by the powers of the base (integer, exact):
 *   Q4_K: q <= 15, scale = d0 + 8 d1 (digits 0..7): S = C0 + 8 C1;
 *         a min plane (the min of the value's sub-block) gives M_i = C2.
 *   Q5_K: q <= 31, scale = d0 + 4 d1 + 16 d2 (0..3): S = C0 + 4 C1 + 16 C2;
 *         the min plane gives M_i = C3.
 *   Q6_K: v = q - 32 in -32..31, scale (-128..127) = d0 + 8 d1 + 64 d2
 *         with digits -3..4: S = C0 + 8 C1 + 64 C2.
 * Every plane value fits int8 (15 * 7, 31 * 3, 63 for a min, and -32 * 4 =
 * -128 .. 31 * 4 = 124).
 * What is left per output is the float work of vec_dot; the cost moved to
 * the weight repacking, which a row tile pays once per block of 64 or 128
 * tokens. Per token block the activations are repacked per super-block
 * i, token tile tt and 64-value chunk c (B tiles of 16 rows); per row tile
 * the planes per (i, c, plane) (A tiles, 16 rows x 64 bytes). */
struct kq_layout {
    int type;     /* HY_TYPE_Q4_K, Q5_K or Q6_K */
    size_t bb;    /* weight block bytes */
    int n_planes; /* digit planes, then the min (Q4_K, Q5_K) or scale (Q6_K) plane */
    bool mins;    /* a min term: M_i is the last plane */
};

static const struct kq_layout k_q4_K = {HY_TYPE_Q4_K, sizeof(struct block_q4_K), 3, true};
static const struct kq_layout k_q5_K = {HY_TYPE_Q5_K, sizeof(struct block_q5_K), 4, true};
static const struct kq_layout k_q6_K = {HY_TYPE_Q6_K, sizeof(struct block_q6_K), 3, false};

#define KQ_MAX_PLANES 4

/* Q6_K scale digits: g_q6_digits[sc + 128][p], sc = sum 8^p d_p, d_p in -3..4. */
static int8_t g_q6_digits[256][3];

static void q6_digits_init(void)
{
    for (int v0 = -128; v0 < 128; v0++) {
        int v = v0;
        for (int p = 0; p < 3; p++) {
            const int r = ((v + 3) % 8 + 8) % 8 - 3;
            g_q6_digits[v0 + 128][p] = (int8_t)r;
            v = (v - r) / 8;
        }
        HY_ASSERT(v == 0);
    }
}

/* Activations of tokens [t0, t0 + nt) (nt <= 16 ntb): bp[((i * ntb + tt) *
 * 4 + c) * 1024 + k * 64 + m * 4 + j] = value 64c + 4k + j of super-block i
 * of token t0 + 16 tt + m, dyp[(i * ntb + tt) * 16 + m] its scale; zero
 * past nt. */
static void kq_pack_tokens(const uint8_t *xq, size_t xq_row, int64_t t0, int nt, int ntb,
                           int64_t nb, uint8_t *bp, float *dyp)
{
    const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
    for (int tt = 0; tt < n_tt; tt++) {
        const struct block_q8_K *row[AMX_TOK_TILE];
        for (int m = 0; m < AMX_TOK_TILE; m++) {
            const int t = tt * AMX_TOK_TILE + m;
            row[m] = t < nt ? (const struct block_q8_K *)(xq + (size_t)(t0 + t) * xq_row) : NULL;
        }
        for (int64_t i = 0; i < nb; i++) {
            for (int m = 0; m < AMX_TOK_TILE; m++)
                dyp[(i * ntb + tt) * 16 + m] = row[m] ? row[m][i].d : 0.0f;
            for (int c = 0; c < 4; c++) {
                __m512i r[16];
                for (int m = 0; m < AMX_TOK_TILE; m++)
                    r[m] = row[m] ? load512(row[m][i].qs + 64 * c) : _mm512_setzero_si512();
                transpose16(r);
                uint8_t *dst = bp + (size_t)((i * ntb + tt) * 4 + c) * 1024;
                for (int k = 0; k < 16; k++) _mm512_storeu_si512(dst + 64 * k, r[k]);
            }
        }
    }
}

/* Bytes v * d (v signed, d signed, every product within int8): vpmaddubsw
 * wants one side unsigned, so |d| times v with d's sign. */
static inline __m512i mul_bytes_signed(__m512i v, __m512i d)
{
    const __m512i sv = _mm512_mask_sub_epi8(v, _mm512_movepi8_mask(d), _mm512_setzero_si512(), v);
    const __m512i ad = _mm512_abs_epi8(d);
    const __m512i lo = _mm512_set1_epi16(0x00ff);
    const __m512i even = _mm512_maddubs_epi16(_mm512_and_si512(ad, lo), sv);
    const __m512i odd = _mm512_maddubs_epi16(_mm512_andnot_si512(lo, ad), sv);
    return _mm512_ternarylogic_epi32(even, _mm512_slli_epi16(odd, 8), lo, 0xe4);
}

/* Bytes v * d (v unsigned, d signed, every product within int8). */
static inline __m512i mul_bytes(__m512i v, __m512i d)
{
    const __m512i lo = _mm512_set1_epi16(0x00ff);
    const __m512i even = _mm512_maddubs_epi16(v, _mm512_and_si512(d, lo));
    const __m512i odd = _mm512_maddubs_epi16(v, _mm512_andnot_si512(lo, d));
    return _mm512_ternarylogic_epi32(even, _mm512_slli_epi16(odd, 8), lo,
                                     0xe4); /* lo ? even : odd<<8 */
}

/* Weights of rows [r, r + 16): ap[((i * 4 + c) * P + p) * 1024 + n * 64 + e]
 * = plane p of value 64c + e of super-block i of row r + n; dxp, dmp[i * 16 +
 * n] the super-block scales as floats. */
static void kq_pack_rows(const struct kq_layout *L, const uint8_t *w, size_t w_row, int64_t nb,
                         int8_t *ap, float *dxp, float *dmp)
{
    const float *tab = quant_cpu_f16_table;
    const int P = L->n_planes;
    /* sub-block of each value of a chunk, per chunk: 32-value sub-blocks
     * (Q4_K, Q5_K) or 16-value ones (Q6_K), as pshufb indices */
    __m512i idx[4];
    for (int c = 0; c < 4; c++)
        idx[c] = L->type == HY_TYPE_Q6_K
                     ? _mm512_setr_epi32(0x01010101 * (4 * c), 0x01010101 * (4 * c),
                                         0x01010101 * (4 * c), 0x01010101 * (4 * c),
                                         0x01010101 * (4 * c + 1), 0x01010101 * (4 * c + 1),
                                         0x01010101 * (4 * c + 1), 0x01010101 * (4 * c + 1),
                                         0x01010101 * (4 * c + 2), 0x01010101 * (4 * c + 2),
                                         0x01010101 * (4 * c + 2), 0x01010101 * (4 * c + 2),
                                         0x01010101 * (4 * c + 3), 0x01010101 * (4 * c + 3),
                                         0x01010101 * (4 * c + 3), 0x01010101 * (4 * c + 3))
                     : _mm512_inserti64x4(_mm512_set1_epi8((char)(2 * c)),
                                          _mm256_set1_epi8((char)(2 * c + 1)), 1);
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b = w + (size_t)n * w_row + (size_t)i * L->bb;
            __m512i v[4];              /* values 64c..64c+63 (Q6_K: q - 32) */
            __m128i dg[KQ_MAX_PLANES]; /* per plane: the digit (or min, scale) per sub-block */
            if (L->type == HY_TYPE_Q6_K) {
                const struct block_q6_K *x = (const struct block_q6_K *)b;
                for (int h = 0; h < 2; h++) {
                    const __m512i l = load512(x->ql + 64 * h);
                    const __m512i qh = _mm512_broadcast_i64x4(load256(x->qh + 32 * h));
                    const __m512i h01 = _mm512_and_si512(
                        _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)), m30);
                    v[2 * h] = _mm512_ternarylogic_epi32(l, h01, m4, 0xec);
                    const __m512i h23 = _mm512_and_si512(
                        _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)), m30);
                    v[2 * h + 1] =
                        _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h23, m4, 0xec);
                }
                for (int c = 0; c < 4; c++) v[c] = _mm512_sub_epi8(v[c], _mm512_set1_epi8(32));
                int8_t d[3][16];
                for (int s = 0; s < 16; s++)
                    for (int p = 0; p < 3; p++) d[p][s] = g_q6_digits[x->scales[s] + 128][p];
                for (int p = 0; p < 3; p++) dg[p] = _mm_loadu_si128((const __m128i *)d[p]);
                dxp[i * 16 + n] = tab[x->d];
            } else {
                const bool q5 = L->type == HY_TYPE_Q5_K;
                const uint8_t *qs =
                    b + (q5 ? offsetof(struct block_q5_K, qs) : offsetof(struct block_q4_K, qs));
                const __m512i hb =
                    q5 ? _mm512_broadcast_i64x4(load256(b + offsetof(struct block_q5_K, qh)))
                       : _mm512_setzero_si512();
                for (int j = 0; j < 4; j++) {
                    v[j] = _mm512_and_si512(planes(qs + 32 * j, nib), m4);
                    if (q5) {
                        const __m512i rot = _mm512_rolv_epi64(
                            hb,
                            _mm512_setr_epi64((4 - 2 * j) & 63, (4 - 2 * j) & 63, (4 - 2 * j) & 63,
                                              (4 - 2 * j) & 63, (3 - 2 * j) & 63, (3 - 2 * j) & 63,
                                              (3 - 2 * j) & 63, (3 - 2 * j) & 63));
                        v[j] = _mm512_ternarylogic_epi32(v[j], rot, m16, 0xf8);
                    }
                }
                const __m128i sm = k4_scales(b + 4); /* 0-7 scales, 8-15 mins */
                const __m128i mins = _mm_srli_si128(sm, 8);
                if (q5) {
                    dg[0] = _mm_and_si128(sm, _mm_set1_epi8(3));
                    dg[1] = _mm_and_si128(_mm_srli_epi16(sm, 2), _mm_set1_epi8(3));
                    dg[2] = _mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(3));
                    dg[3] = mins;
                } else {
                    dg[0] = _mm_and_si128(sm, _mm_set1_epi8(7));
                    dg[1] = _mm_and_si128(_mm_srli_epi16(sm, 3), _mm_set1_epi8(7));
                    dg[2] = mins;
                }
                hy_half hd, hmin;
                memcpy(&hd, b, sizeof(hd));
                memcpy(&hmin, b + 2, sizeof(hmin));
                dxp[i * 16 + n] = tab[hd];
                dmp[i * 16 + n] = tab[hmin];
            }
            for (int p = 0; p < P; p++) {
                const __m512i dv = _mm512_broadcast_i32x4(dg[p]);
                for (int c = 0; c < 4; c++) {
                    const __m512i d = _mm512_shuffle_epi8(dv, idx[c]);
                    /* Q4_K, Q5_K: the last plane holds the min itself */
                    const __m512i a =
                        L->mins ? (p == P - 1 ? d : mul_bytes(v[c], d)) : mul_bytes_signed(v[c], d);
                    _mm512_storeu_si512(ap + ((size_t)(i * 4 + c) * (size_t)P + (size_t)p) * 1024 +
                                            (size_t)n * 64,
                                        a);
                }
            }
        }
    }
}

/* Rows [r, r + 16) (packed) against token tile tt: the P plane products of a
 * super-block accumulate in tiles 0..P-1; A and B use the tiles left. */
static void kq_tile(const struct kq_layout *L, int64_t nb, const int8_t *ap, const float *dxp,
                    const float *dmp, const uint8_t *bp, const float *dyp, int ntb, int tt,
                    int32_t *cbuf, float *y, int64_t ldy, int nt)
{
    const int P = L->n_planes;
    /* chain c, weight row n: the chains of super-blocks i % 4 (vectors over tokens) */
    __m512 acc[4][AMX_ROW_TILE], accm[4][AMX_ROW_TILE];
    for (int c = 0; c < 4; c++)
        for (int n = 0; n < AMX_ROW_TILE; n++) acc[c][n] = accm[c][n] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        if (P > 3) _tile_zero(3);
        /* A and B go to alternating tiles so that a load need not wait for
         * the product still reading the tile it would overwrite */
        for (int c = 0; c < 4; c++) {
            const int8_t *a = ap + (size_t)(i * 4 + c) * (size_t)P * 1024;
            const uint8_t *bt = bp + (size_t)((i * ntb + tt) * 4 + c) * 1024;
            if (P == 3) {
                _tile_loadd(3, a, 64);
                _tile_loadd(4, a + 1024, 64);
                _tile_loadd(5, a + 2048, 64);
                if (c % 2) {
                    _tile_loadd(7, bt, 64);
                    _tile_dpbssd(0, 3, 7);
                    _tile_dpbssd(1, 4, 7);
                    _tile_dpbssd(2, 5, 7);
                } else {
                    _tile_loadd(6, bt, 64);
                    _tile_dpbssd(0, 3, 6);
                    _tile_dpbssd(1, 4, 6);
                    _tile_dpbssd(2, 5, 6);
                }
            } else {
                if (c % 2) {
                    _tile_loadd(7, bt, 64);
                    _tile_loadd(4, a, 64);
                    _tile_dpbssd(0, 4, 7);
                    _tile_loadd(5, a + 1024, 64);
                    _tile_dpbssd(1, 5, 7);
                    _tile_loadd(4, a + 2048, 64);
                    _tile_dpbssd(2, 4, 7);
                    _tile_loadd(5, a + 3072, 64);
                    _tile_dpbssd(3, 5, 7);
                } else {
                    _tile_loadd(6, bt, 64);
                    _tile_loadd(4, a, 64);
                    _tile_dpbssd(0, 4, 6);
                    _tile_loadd(5, a + 1024, 64);
                    _tile_dpbssd(1, 5, 6);
                    _tile_loadd(4, a + 2048, 64);
                    _tile_dpbssd(2, 4, 6);
                    _tile_loadd(5, a + 3072, 64);
                    _tile_dpbssd(3, 5, 6);
                }
            }
        }
        _tile_stored(0, cbuf, 64);
        _tile_stored(1, cbuf + 256, 64);
        _tile_stored(2, cbuf + 512, 64);
        if (P > 3) _tile_stored(3, cbuf + 768, 64);
        const int ch = (int)(i % 4);
        const __m512 dy = _mm512_loadu_ps(dyp + (i * ntb + tt) * 16);
        for (int n = 0; n < AMX_ROW_TILE; n++) {
            const __m512i c0 = _mm512_load_si512(cbuf + 16 * n);
            const __m512i c1 = _mm512_load_si512(cbuf + 256 + 16 * n);
            const __m512i c2 = _mm512_load_si512(cbuf + 512 + 16 * n);
            __m512i s, m = _mm512_setzero_si512();
            if (L->type == HY_TYPE_Q4_K) {
                s = _mm512_add_epi32(c0, _mm512_slli_epi32(c1, 3));
                m = c2;
            } else if (L->type == HY_TYPE_Q5_K) {
                s = _mm512_add_epi32(
                    c0, _mm512_add_epi32(_mm512_slli_epi32(c1, 2), _mm512_slli_epi32(c2, 4)));
                m = _mm512_load_si512(cbuf + 768 + 16 * n);
            } else {
                s = _mm512_add_epi32(
                    c0, _mm512_add_epi32(_mm512_slli_epi32(c1, 3), _mm512_slli_epi32(c2, 6)));
            }
            const __m512 d = _mm512_mul_ps(_mm512_set1_ps(dxp[i * 16 + n]), dy);
            acc[ch][n] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[ch][n]);
            if (L->mins) {
                const __m512 dm = _mm512_mul_ps(_mm512_set1_ps(dmp[i * 16 + n]), dy);
                accm[ch][n] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(m), accm[ch][n]);
            }
        }
    }
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        /* as hsum128: (c0 + c2) + (c1 + c3) */
        const __m512 a =
            _mm512_add_ps(_mm512_add_ps(acc[0][n], acc[2][n]), _mm512_add_ps(acc[1][n], acc[3][n]));
        const __m512 am = _mm512_add_ps(_mm512_add_ps(accm[0][n], accm[2][n]),
                                        _mm512_add_ps(accm[1][n], accm[3][n]));
        float r[16];
        _mm512_storeu_ps(r, L->mins ? _mm512_sub_ps(a, am) : a);
        float *yo = y + (int64_t)tt * AMX_TOK_TILE * ldy + n;
        for (int m = 0; m < nt; m++) yo[m * ldy] = r[m];
    }
}

static pthread_once_t g_digits_once = PTHREAD_ONCE_INIT;

static void kq_gemm_amx(const struct kq_layout *L, quant_vec_dot_fn dot, int64_t n_cols,
                        const void *w, size_t w_row, int64_t n_rows, const void *xq, size_t xq_row,
                        int64_t n_tok, float *y, int64_t ldy)
{
    pthread_once(&g_digits_once, q6_digits_init);
    const int64_t nb = n_cols / QK_K;
    const int64_t n_full = n_rows / AMX_ROW_TILE * AMX_ROW_TILE;
    /* the planes of a row tile are made once per token block */
    const int ntb = tiles_per_block(nb, 4096);
    const size_t bp_bytes = (size_t)nb * (size_t)ntb * 4096;
    const size_t dy_bytes = (size_t)nb * (size_t)ntb * 16 * sizeof(float);
    const size_t ap_bytes = (size_t)nb * 4 * (size_t)L->n_planes * 1024;
    const size_t dx_bytes = (size_t)nb * 16 * sizeof(float), c_bytes = KQ_MAX_PLANES * 1024;
    uint8_t *mem =
        n_full ? scratch_get(c_bytes + bp_bytes + ap_bytes + dy_bytes + 2 * dx_bytes) : NULL;
    const uint8_t *wb = w, *xb = xq;
    if (mem) {
        int32_t *cbuf = (int32_t *)mem;
        uint8_t *bp = mem + c_bytes;
        int8_t *ap = (int8_t *)(bp + bp_bytes);
        float *dyp = (float *)((uint8_t *)ap + ap_bytes);
        float *dxp = (float *)((uint8_t *)dyp + dy_bytes);
        float *dmp = (float *)((uint8_t *)dxp + dx_bytes);
        /* all eight tiles 16 rows x 64 bytes: C of the planes (16 x 16
         * int32), A (16 rows x 64 values), B (16 rows x 16 tokens x 4) */
        const struct amx_tilecfg cfg = {.palette = 1,
                                        .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                        .rows = {16, 16, 16, 16, 16, 16, 16, 16}};
        _tile_loadconfig(&cfg);
        const int64_t tok_block = (int64_t)ntb * AMX_TOK_TILE;
        for (int64_t t0 = 0; t0 < n_tok; t0 += tok_block) {
            const int nt = (int)(n_tok - t0 < tok_block ? n_tok - t0 : tok_block);
            kq_pack_tokens(xb, xq_row, t0, nt, ntb, nb, bp, dyp);
            const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
            for (int64_t r = 0; r < n_full; r += AMX_ROW_TILE) {
                kq_pack_rows(L, wb + (size_t)r * w_row, w_row, nb, ap, dxp, dmp);
                for (int tt = 0; tt < n_tt; tt++) {
                    const int left = nt - tt * AMX_TOK_TILE;
                    kq_tile(L, nb, ap, dxp, dmp, bp, dyp, ntb, tt, cbuf, y + t0 * ldy + r, ldy,
                            left < AMX_TOK_TILE ? left : AMX_TOK_TILE);
                }
            }
        }
        _tile_release();
    }
    for (int64_t r = mem ? n_full : 0; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            y[t * ldy + r] = dot(n_cols, wb + (size_t)r * w_row, xb + (size_t)t * xq_row);
}

#define KQ_ENTRY(name)                                                                             \
    static void name##_gemm_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,       \
                                const void *xq, size_t xq_row, int64_t n_tok, float *y,            \
                                int64_t ldy)                                                       \
    {                                                                                              \
        kq_gemm_amx(&k_##name, name##_vec_dot_amx, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, \
                    ldy);                                                                          \
    }

KQ_ENTRY(q4_K)
KQ_ENTRY(q5_K)
KQ_ENTRY(q6_K)

#undef KQ_ENTRY

const bool quant_amx_built = true;

const struct quant_kernels quant_amx_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q4_0] = {NULL, NULL, q4_0_vec_dot_amx},
    [HY_TYPE_Q8_0] = {NULL, NULL, q8_0_vec_dot_amx},
    [HY_TYPE_Q4_K] = {NULL, NULL, q4_K_vec_dot_amx},
    [HY_TYPE_Q5_K] = {NULL, NULL, q5_K_vec_dot_amx},
    [HY_TYPE_Q6_K] = {NULL, NULL, q6_K_vec_dot_amx},
};

const quant_gemv_fn quant_gemv_amx_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q4_0] = q4_0_gemv_amx,
    [HY_TYPE_Q8_0] = q8_0_gemv_amx,
};

const quant_gemm_fn quant_gemm_amx_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q4_0] = q4_0_gemm_amx, [HY_TYPE_Q8_0] = q8_0_gemm_amx, [HY_TYPE_Q4_K] = q4_K_gemm_amx,
    [HY_TYPE_Q5_K] = q5_K_gemm_amx, [HY_TYPE_Q6_K] = q6_K_gemm_amx,
};

#else

const bool quant_amx_built = false;
const struct quant_kernels quant_amx_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};
const quant_gemm_fn quant_gemm_amx_table[HY_TYPE_COUNT] = {NULL};
const quant_gemv_fn quant_gemv_amx_table[HY_TYPE_COUNT] = {NULL};

#endif

/* Linux: the tile data state (XFEATURE_XTILEDATA, 18) is off for a process
 * until it asks for it; the request is process-wide and idempotent. */
bool quant_amx_usable(void)
{
#if defined(__x86_64__) && defined(__linux__) && defined(SYS_arch_prctl)
    if (!quant_amx_built) return false;
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return false;
#endif
}
