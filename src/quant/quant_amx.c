/*
 * The AVX-512 AMX level (QUANT_ISA_AVX512_AMX): prompt kernels on the AMX
 * int8 tiles for Q8_0, Q4_K and Q5_K, and the vec_dots whose float order
 * they share.
 * Every other kernel of this level is the AVX-512 VNNI one (quant_cpu.c
 * layers this file's table over the VNNI tables; quant_gemm.c takes the VNNI
 * gemm for the types that have none here, their vec_dots being unchanged).
 *
 * Why a level of its own: an AMX tile product sums whole 32-element blocks
 * (tdpbssd over K = 32 bytes gives the exact int32 dot product of a weight
 * block and an activation block), while the VNNI vec_dot scales per-lane
 * partial sums of 4 products, so the two cannot agree bit for bit. Here the
 * vec_dot works on whole-block sums too, in an order both can follow:
 *
 *   Float order (Q8_0, n / 32 = nb blocks): sixteen chains (one chain of
 *   FMAs per 34-byte block would bound the decode vec_dot by FMA latency). Block b belongs
 *   to group b / 16 and to chain k_lane[b % 16]; chain c's value starts at
 *   +0 and takes, for its blocks in increasing b, acc = fma(dx_b * dy_b,
 *   (float)s_b, acc), where s_b is the exact int32 block dot product and
 *   dx_b, dy_b the block scales as floats (dx_b * dy_b rounded once). The
 *   result is hsum512 of the sixteen chains, chain c in lane c (that is
 *   ((c0 + c8) + (c4 + c12)) + ((c2 + c10) + (c6 + c14)) for the even
 *   lanes, likewise the odd, then their sum).
 *
 * The vec_dot holds the chains in the lanes of one vector and computes a
 * group's sixteen block sums with vpdpbusd and a transposing reduction, which
 * leaves block k_perm[c] of the group in lane c (k_lane is its inverse). The
 * gemm holds a vector of tokens per (chain, weight row) in a per-thread
 * buffer and updates chain k_lane[b % 16] from the tile product of block b.
 * The integer sums are exact either way, the float operations per output the
 * same, so batch and token-by-token logits stay equal (quant_gemm.h), and
 * the result differs from the reference only by float reassociation.
 *
 * The gemm: weight rows are the A tiles (16 rows x one block's 32 bytes,
 * loaded straight from the GGUF layout with the row stride); activations
 * are the B tiles, which AMX wants with 4 consecutive bytes of a token
 * side by side for the 16 tokens, so a thread repacks the activations of
 * GEMM_TOK_BLOCK tokens (small next to the weights) into its buffer before
 * it walks the rows, and keeps the weight rows of a row tile in L2 while
 * the token tiles of the block pass over them. Two token tiles go per
 * tile product (tiles: A, B0, B1, C0, C1), so a weight tile load serves 32
 * tokens. Rows past the last whole 16 are computed with the vec_dot.
 *
 * AMX on Linux: the tile data state must be requested once per process
 * (arch_prctl ARCH_REQ_XCOMP_PERM, see quant_amx_usable); each thread loads
 * its tile configuration at the start of a gemm call and releases the tiles
 * at the end, so that no tile state lives across calls.
 *
 * Rejected: repacking the weights at load (a second copy of the model or a
 * layout that the decode path and the GGUF mapping cannot share); the B
 * tiles on the weight side (each weight block would be transposed once per
 * token block instead of each activation block once per row chunk); Q6_K
 * here (16 sub-blocks of 16 values: 16 tile products and 16 integer
 * multiplies per row, super-block and token tile; measured no faster than
 * the VNNI kernel, so Q6_K keeps the VNNI vec_dot and gemm at this level).
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

#include "quant/blocks.h"
#include "quant/quant_avx512_inl.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Lane c of a group's sums holds block k_perm[c] of the group (the order the
 * reduction in q8_group_sums leaves them in); block b goes to lane k_lane[b]. */
static const int k_perm[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
static const int k_lane[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};

/* ---- vec_dot --------------------------------------------------------------- */

/* The int32 sums of x * y for blocks x[0], x[1] against y[0], y[1]: lanes 0-7
 * four products each of block 0, lanes 8-15 of block 1. x is signed; with
 * the sign bit flipped it is x + 128 unsigned, and 128 * y is taken out as
 * the start value (exact: no lane can overflow). */
static inline __m512i q8_pair_lanes(const struct block_q8_0 *x, const struct block_q8_0 *y)
{
    const __m512i c = _mm512_set1_epi8((char)0x80);
    const __m512i u = _mm512_xor_si512(
        _mm512_inserti64x4(_mm512_castsi256_si512(load256(x[0].qs)), load256(x[1].qs), 1), c);
    const __m512i v =
        _mm512_inserti64x4(_mm512_castsi256_si512(load256(y[0].qs)), load256(y[1].qs), 1);
    const __m512i negc =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, v));
    return _mm512_dpbusd_epi32(negc, u, v);
}

/* The 16 block dot products of a group, block k_perm[c] in lane c: pairs of
 * vectors summed within 128-bit lanes (32-bit, then 64-bit interleave), then
 * the two 128-bit lanes of each block. */
static inline __m512i q8_group_sums(const struct block_q8_0 *x, const struct block_q8_0 *y)
{
    __m512i v[8], a[4], b[2];
    for (int k = 0; k < 8; k++) v[k] = q8_pair_lanes(x + 2 * k, y + 2 * k);
    for (int k = 0; k < 4; k++)
        a[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        b[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]),
                                _mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One block's dot product (the tail of a row), exact. */
static inline int32_t q8_block_sum(const struct block_q8_0 *x, const struct block_q8_0 *y)
{
    const __m256i c = _mm256_set1_epi8((char)0x80);
    const __m256i u = _mm256_xor_si256(load256(x->qs), c), v = load256(y->qs);
    const __m256i s = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, v),
                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), c, v));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

static float q8_0_vec_dot_amx(int64_t n, const void *restrict vx, const void *restrict vy)
{
    const struct block_q8_0 *x = vx, *y = vy;
    const float *tab = quant_cpu_f16_table;
    const int64_t nb = n / QK8_0;
    __m512 acc = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 16 <= nb; g += 16) {
        prefetch_ahead(x + g, 16 * sizeof(*x));
        const __m512i s = q8_group_sums(x + g, y + g);
        float dx[16], dy[16];
        for (int c = 0; c < 16; c++) {
            dx[c] = tab[x[g + k_perm[c]].d];
            dy[c] = tab[y[g + k_perm[c]].d];
        }
        const __m512 d = _mm512_mul_ps(_mm512_loadu_ps(dx), _mm512_loadu_ps(dy));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc);
    }
    if (g < nb) {
        int32_t s[16] = {0};
        float dx[16] = {0}, dy[16] = {0};
        __mmask16 m = 0;
        for (int c = 0; c < 16; c++) {
            const int64_t b = g + k_perm[c];
            if (b >= nb) continue;
            s[c] = q8_block_sum(x + b, y + b);
            dx[c] = tab[x[b].d];
            dy[c] = tab[y[b].d];
            m |= (__mmask16)(1u << c);
        }
        const __m512 d = _mm512_mul_ps(_mm512_loadu_ps(dx), _mm512_loadu_ps(dy));
        acc = _mm512_mask3_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_loadu_si512(s)), acc, m);
    }
    return hsum512(acc);
}

/* ---- gemm ------------------------------------------------------------------ */

#define AMX_TOK_TILE   16 /* tokens per B tile (its 16 int32 columns) */
#define AMX_ROW_TILE   16 /* weight rows per A tile */
#define GEMM_TOK_BLOCK 64 /* tokens repacked at once: 2 pairs of token tiles */

/* The tile configuration (the layout ldtilecfg reads): palette 1; tiles
 * 0, 1 = C of token tiles 0, 1 (16 rows x 16 int32); 2 = A (16 weight rows x
 * 32 bytes); 3, 4 = B of token tiles 0, 1 (8 rows x 16 tokens x 4 bytes). */
struct amx_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
_Static_assert(sizeof(struct amx_tilecfg) == 64, "ldtilecfg reads 64 bytes");

static const struct amx_tilecfg k_cfg = {
    .palette = 1,
    .colsb = {64, 64, 32, 64, 64},
    .rows = {16, 16, 16, 8, 8},
};

/* Per-thread buffer, grown on demand (a thread keeps it until it exits):
 * the repacked activations of a token block, their scales, the chain
 * accumulators of a tile pair and the stored tile products. */
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

/* Activations of tokens [t0, t0 + nt) (nt <= GEMM_TOK_BLOCK), block by
 * block: bp[(b * 4 + tt) * 512 + k * 64 + m * 4 + j] = byte 4k + j of block
 * b of token t0 + 16 tt + m, and dyp[(b * 4 + tt) * 16 + m] its scale; zero
 * for the tokens past nt. */
static void pack_tokens(const uint8_t *xq, size_t xq_row, int64_t t0, int nt, int64_t nb,
                        uint8_t *bp, float *dyp)
{
    const float *tab = quant_cpu_f16_table;
    const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
    for (int64_t b = 0; b < nb; b++) {
        for (int tt = 0; tt < n_tt; tt++) {
            uint32_t *dst = (uint32_t *)(bp + (size_t)(b * 4 + tt) * 512);
            float *d = dyp + (b * 4 + tt) * 16;
            for (int m = 0; m < AMX_TOK_TILE; m++) {
                const int t = tt * AMX_TOK_TILE + m;
                if (t >= nt) {
                    for (int k = 0; k < 8; k++) dst[k * 16 + m] = 0;
                    d[m] = 0.0f;
                    continue;
                }
                const struct block_q8_0 *blk =
                    (const struct block_q8_0 *)(xq + (size_t)(t0 + t) * xq_row) + b;
                uint32_t q[8];
                memcpy(q, blk->qs, sizeof(q));
                for (int k = 0; k < 8; k++) dst[k * 16 + m] = q[k];
                d[m] = tab[blk->d];
            }
        }
    }
}

/* Rows [r, r + 16) against the token tiles tp, tp + 1 of the packed block
 * (n_tt of them valid, 1 or 2): y of token t0 + 16 (tp + u) + m, m < nt_u. */
static void q8_0_tile_pair(int64_t nb, const uint8_t *w, size_t w_row, const uint8_t *bp,
                           const float *dyp, int tp, int two, __m512 *acc, int32_t *cbuf,
                           float *y, int64_t ldy, const int nt_u[2])
{
    const float *tab = quant_cpu_f16_table;
    /* acc[(c * 16 + n) * 2 + u]: chain c, weight row n, token tile u */
    for (int i = 0; i < 16 * 16 * 2; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wa = w + (size_t)b * sizeof(struct block_q8_0);
        _tile_loadd(2, wa + offsetof(struct block_q8_0, qs), (long)w_row);
        _tile_loadd(3, bp + (size_t)(b * 4 + tp) * 512, 64);
        _tile_zero(0);
        _tile_dpbssd(0, 2, 3);
        _tile_stored(0, cbuf, 64);
        if (two) {
            _tile_loadd(4, bp + (size_t)(b * 4 + tp + 1) * 512, 64);
            _tile_zero(1);
            _tile_dpbssd(1, 2, 4);
            _tile_stored(1, cbuf + 256, 64);
        }
        __m512 *ac = acc + k_lane[b % 16] * 32;
        const __m512 dy0 = _mm512_loadu_ps(dyp + (b * 4 + tp) * 16);
        const __m512 dy1 = _mm512_loadu_ps(dyp + (b * 4 + tp + two) * 16);
        for (int n = 0; n < AMX_ROW_TILE; n++) {
            hy_half h;
            memcpy(&h, wa + (size_t)n * w_row, sizeof(h));
            const __m512 dx = _mm512_set1_ps(tab[h]);
            ac[2 * n] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy0),
                                        _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 16 * n)),
                                        ac[2 * n]);
            if (two)
                ac[2 * n + 1] =
                    _mm512_fmadd_ps(_mm512_mul_ps(dx, dy1),
                                    _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 256 + 16 * n)),
                                    ac[2 * n + 1]);
        }
    }
    /* the chains combined as hsum512 combines lanes */
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        for (int u = 0; u <= two; u++) {
            __m512 s[8];
            for (int c = 0; c < 8; c++)
                s[c] = _mm512_add_ps(acc[(c * 16 + n) * 2 + u], acc[((c + 8) * 16 + n) * 2 + u]);
            for (int c = 0; c < 4; c++) s[c] = _mm512_add_ps(s[c], s[c + 4]);
            for (int c = 0; c < 2; c++) s[c] = _mm512_add_ps(s[c], s[c + 2]);
            float r[16];
            _mm512_storeu_ps(r, _mm512_add_ps(s[0], s[1]));
            float *yo = y + (int64_t)(tp + u) * AMX_TOK_TILE * ldy + n;
            for (int m = 0; m < nt_u[u]; m++) yo[m * ldy] = r[m];
        }
    }
}

static void q8_0_gemm_amx(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                          const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    const int64_t nb = n_cols / QK8_0;
    const int64_t n_full = n_rows / AMX_ROW_TILE * AMX_ROW_TILE;
    const size_t bp_bytes = (size_t)nb * 4 * 512, dy_bytes = (size_t)nb * 4 * 16 * sizeof(float);
    const size_t acc_bytes = 16 * 16 * 2 * sizeof(__m512), c_bytes = 2 * 256 * sizeof(int32_t);
    uint8_t *mem = n_full ? scratch_get(bp_bytes + dy_bytes + acc_bytes + c_bytes) : NULL;
    const uint8_t *wb = w, *xb = xq;
    if (mem) {
        uint8_t *bp = mem;
        float *dyp = (float *)(mem + bp_bytes);
        __m512 *acc = (__m512 *)(mem + bp_bytes + dy_bytes);
        int32_t *cbuf = (int32_t *)(mem + bp_bytes + dy_bytes + acc_bytes);
        _tile_loadconfig(&k_cfg);
        for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_BLOCK) {
            const int nt = (int)(n_tok - t0 < GEMM_TOK_BLOCK ? n_tok - t0 : GEMM_TOK_BLOCK);
            pack_tokens(xb, xq_row, t0, nt, nb, bp, dyp);
            const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
            for (int64_t r = 0; r < n_full; r += AMX_ROW_TILE) {
                for (int tp = 0; tp < n_tt; tp += 2) {
                    const int two = tp + 1 < n_tt;
                    int nt_u[2];
                    for (int u = 0; u < 2; u++) {
                        const int left = nt - (tp + u) * AMX_TOK_TILE;
                        nt_u[u] = left < 0 ? 0 : left < AMX_TOK_TILE ? left : AMX_TOK_TILE;
                    }
                    q8_0_tile_pair(nb, wb + (size_t)r * w_row, w_row, bp, dyp, tp, two, acc, cbuf,
                                   y + t0 * ldy + r, ldy, nt_u);
                }
            }
        }
        _tile_release();
    }
    /* the rows past the last whole tile (all rows if there was no buffer) */
    for (int64_t r = mem ? n_full : 0; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            y[t * ldy + r] = q8_0_vec_dot_amx(n_cols, wb + (size_t)r * w_row, xb + (size_t)t * xq_row);
}

/* ---- K-quants ---------------------------------------------------------------
 * Float order (Q4_K, Q5_K): one chain. Super-block i gives the exact int32
 * S_i = sum over its 8 sub-blocks of scale * (the sub-block's dot product)
 * and M_i = sum of min * (the activation sum of the sub-block); then
 * acc = fma(dx_i * dy_i,
 * (float)S_i, acc) and accm = fma(dmin_i * dy_i, (float)M_i, accm), i in
 * increasing order from +0, and the result is acc - accm. One chain costs
 * the vec_dot nothing: a super-block's integer work is far longer than the
 * FMA latency. The vec_dot forms S_i and M_i with the VNNI level's integer
 * code and a horizontal sum; the gemm S_i from one tile product per
 * sub-block (K = 32) and an integer multiply by the row's scale, M_i from
 * the activation sums with vpmaddwd. */

/* clang-format off */
#define W16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const int16_t k_pair32[4][32] = {
    {W16(0), W16(1)}, {W16(2), W16(3)}, {W16(4), W16(5)}, {W16(6), W16(7)},
};
#undef W16
static const int16_t k_dup_mins[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};
/* clang-format on */

/* acc + fx * fy * s in lane 0, as the gemm's vector FMA per lane. */
static inline __m128 fma_scalar(float fx, float fy, int32_t s, __m128 acc)
{
    const __m128 d = _mm_mul_ss(_mm_set_ss(fx), _mm_set_ss(fy));
    return _mm_fmadd_ss(d, _mm_cvtsi32_ss(_mm_setzero_ps(), s), acc);
}

/* S_i and M_i of a Q4_K/Q5_K super-block at b against y. */
static inline void k4_sums(const uint8_t *b, size_t qs_off, size_t qh_off, bool hbits,
                           const struct block_q8_K *y, int32_t *s, int32_t *m)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const __m256i sm16 = _mm256_cvtepu8_epi16(k4_scales(b + 4)); /* 0-7 scales, 8-15 mins */
    const __m256i mins = _mm256_madd_epi16(
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
    *s = _mm512_reduce_add_epi32(sumi);
    *m = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(mins));
}

static inline float k4_vec_dot_amx(int64_t n, const uint8_t *x, size_t bb, size_t qs_off,
                                   size_t qh_off, bool hbits, const struct block_q8_K *y)
{
    const float *tab = quant_cpu_f16_table;
    __m128 acc = _mm_setzero_ps(), accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *b = x + (size_t)i * bb;
        prefetch_ahead(b, bb);
        int32_t s, m;
        k4_sums(b, qs_off, qh_off, hbits, y + i, &s, &m);
        hy_half hd, hmin;
        memcpy(&hd, b, sizeof(hd));
        memcpy(&hmin, b + 2, sizeof(hmin));
        acc = fma_scalar(tab[hd], y[i].d, s, acc);
        accm = fma_scalar(tab[hmin], y[i].d, m, accm);
    }
    return _mm_cvtss_f32(_mm_sub_ss(acc, accm));
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

/* The gemm. Per token block: the activations repacked per super-block i,
 * sub-block s and token tile tt (B tiles of sub/4 rows), their scales and,
 * for the mins, their 16-element sums in pairs. Per row tile: the weights
 * unpacked to one int8 per value (A tiles, 16 rows x sub bytes), the
 * scales as int32, the mins as int16 pairs, the super-block scales as
 * floats. */
struct kq_layout {
    int sub;      /* values per sub-block (one tile product): 32 */
    int n_sub;    /* sub-blocks per super-block */
    bool mins;    /* a min term (both types here have one) */
    int type;     /* HY_TYPE_Q4_K or HY_TYPE_Q5_K */
    size_t bb;    /* weight block bytes */
};

/* Activations of tokens [t0, t0 + nt): bp[((i * n_sub + s) * 4 + tt) * sub *
 * 16 + k * 64 + m * 4 + j] = value s * sub + 4k + j of super-block i of
 * token t0 + 16 tt + m; dyp[(i * 4 + tt) * 16 + m] its scale; bsp[((i * 8 +
 * p) * 4 + tt) * 16 + m] = bsums 2p and 2p + 1 as an int16 pair. */
static void kq_pack_tokens(const struct kq_layout *L, const uint8_t *xq, size_t xq_row, int64_t t0,
                           int nt, int64_t nb, uint8_t *bp, float *dyp, int32_t *bsp)
{
    const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
    const int kr = L->sub / 4; /* B tile rows */
    for (int64_t i = 0; i < nb; i++) {
        for (int tt = 0; tt < n_tt; tt++) {
            for (int m = 0; m < AMX_TOK_TILE; m++) {
                const int t = tt * AMX_TOK_TILE + m;
                const struct block_q8_K *blk =
                    t < nt ? (const struct block_q8_K *)(xq + (size_t)(t0 + t) * xq_row) + i : NULL;
                dyp[(i * 4 + tt) * 16 + m] = blk ? blk->d : 0.0f;
                for (int p = 0; p < 8; p++) {
                    uint32_t pr = 0;
                    if (blk)
                        pr = (uint16_t)blk->bsums[2 * p] | (uint32_t)(uint16_t)blk->bsums[2 * p + 1] << 16;
                    bsp[((i * 8 + p) * 4 + tt) * 16 + m] = (int32_t)pr;
                }
                for (int s = 0; s < L->n_sub; s++) {
                    uint32_t *dst = (uint32_t *)(bp + (size_t)((i * L->n_sub + s) * 4 + tt) * (size_t)L->sub * 16);
                    uint32_t q[8] = {0};
                    if (blk) memcpy(q, blk->qs + s * L->sub, (size_t)L->sub);
                    for (int k = 0; k < kr; k++) dst[k * 16 + m] = q[k];
                }
            }
        }
    }
}

/* Weights of rows [r, r + 16): ap[((i * n_sub + s) * 16 + n) * sub + e] =
 * value s * sub + e of super-block i of row r + n (int8);
 * scp[(i * n_sub + s) * 16 + n] its scale; mnp[(i * 8 + p) * 16 + n] min p
 * in both halves; dxp / dmp[i * 16 + n] the super-block scales. */
static void kq_pack_rows(const struct kq_layout *L, const uint8_t *w, size_t w_row, int64_t nb,
                         int8_t *ap, int32_t *scp, int32_t *mnp, float *dxp, float *dmp)
{
    const float *tab = quant_cpu_f16_table;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b = w + (size_t)n * w_row + (size_t)i * L->bb;
            int8_t v[QK_K];
            {
                const bool q5 = L->type == HY_TYPE_Q5_K;
                const uint8_t *qs = b + (q5 ? offsetof(struct block_q5_K, qs) : offsetof(struct block_q4_K, qs));
                const __m256i hb = q5 ? load256(b + offsetof(struct block_q5_K, qh)) : _mm256_setzero_si256();
                for (int j = 0; j < 4; j++) {
                    const __m256i q = load256(qs + 32 * j);
                    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    if (q5) {
                        /* bit s of qh[l]: the fifth bit of value 32 s + l */
                        const __m128i s0 = _mm_cvtsi32_si128(2 * j), s1 = _mm_cvtsi32_si128(2 * j + 1);
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, s0), one), 4));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, s1), one), 4));
                    }
                    _mm256_storeu_si256((__m256i *)(v + 64 * j), lo);
                    _mm256_storeu_si256((__m256i *)(v + 64 * j + 32), hi);
                }
                uint8_t sm[16];
                _mm_storeu_si128((__m128i *)sm, k4_scales(b + 4));
                for (int s = 0; s < 8; s++) {
                    scp[(i * 8 + s) * 16 + n] = sm[s];
                    mnp[(i * 8 + s) * 16 + n] = (int32_t)(sm[8 + s] | (uint32_t)sm[8 + s] << 16);
                }
                hy_half hd, hmin;
                memcpy(&hd, b, sizeof(hd));
                memcpy(&hmin, b + 2, sizeof(hmin));
                dxp[i * 16 + n] = tab[hd];
                dmp[i * 16 + n] = tab[hmin];
            }
            for (int s = 0; s < L->n_sub; s++)
                memcpy(ap + ((i * L->n_sub + s) * 16 + n) * L->sub, v + s * L->sub, (size_t)L->sub);
        }
    }
}

/* Rows [r, r + 16) (packed) against token tiles tp, tp + two. */
static void kq_tile_pair(const struct kq_layout *L, int64_t nb, const int8_t *ap,
                         const int32_t *scp, const int32_t *mnp, const float *dxp, const float *dmp,
                         const uint8_t *bp, const float *dyp, const int32_t *bsp, int tp, int two,
                         int32_t *cbuf, float *y, int64_t ldy, const int nt_u[2])
{
    __m512 acc[AMX_ROW_TILE][2], accm[AMX_ROW_TILE][2];
    for (int n = 0; n < AMX_ROW_TILE; n++)
        for (int u = 0; u < 2; u++) acc[n][u] = accm[n][u] = _mm512_setzero_ps();
    const size_t b_bytes = (size_t)L->sub * 16, a_bytes = (size_t)L->sub * 16;
    for (int64_t i = 0; i < nb; i++) {
        for (int s = 0; s < L->n_sub; s++) {
            const int64_t is = i * L->n_sub + s;
            _tile_loadd(2, ap + (size_t)is * a_bytes, L->sub);
            _tile_loadd(3, bp + (size_t)(is * 4 + tp) * b_bytes, 64);
            _tile_zero(0);
            _tile_dpbssd(0, 2, 3);
            _tile_stored(0, cbuf + (s * 2) * 256, 64);
            if (two) {
                _tile_loadd(4, bp + (size_t)(is * 4 + tp + 1) * b_bytes, 64);
                _tile_zero(1);
                _tile_dpbssd(1, 2, 4);
                _tile_stored(1, cbuf + (s * 2 + 1) * 256, 64);
            }
        }
        for (int u = 0; u <= two; u++) {
            const __m512 dy = _mm512_loadu_ps(dyp + (i * 4 + tp + u) * 16);
            __m512i bs[8];
            if (L->mins)
                for (int p = 0; p < 8; p++) bs[p] = _mm512_loadu_si512(bsp + ((i * 8 + p) * 4 + tp + u) * 16);
            for (int n = 0; n < AMX_ROW_TILE; n++) {
                __m512i sv = _mm512_setzero_si512();
                for (int s = 0; s < L->n_sub; s++)
                    sv = _mm512_add_epi32(
                        sv, _mm512_mullo_epi32(_mm512_set1_epi32(scp[(i * L->n_sub + s) * 16 + n]),
                                               _mm512_load_si512(cbuf + (s * 2 + u) * 256 + 16 * n)));
                const __m512 d = _mm512_mul_ps(_mm512_set1_ps(dxp[i * 16 + n]), dy);
                acc[n][u] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sv), acc[n][u]);
                if (L->mins) {
                    __m512i mv = _mm512_setzero_si512();
                    for (int p = 0; p < 8; p++)
                        mv = _mm512_add_epi32(
                            mv, _mm512_madd_epi16(bs[p], _mm512_set1_epi32(mnp[(i * 8 + p) * 16 + n])));
                    const __m512 dm = _mm512_mul_ps(_mm512_set1_ps(dmp[i * 16 + n]), dy);
                    accm[n][u] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(mv), accm[n][u]);
                }
            }
        }
    }
    for (int n = 0; n < AMX_ROW_TILE; n++) {
        for (int u = 0; u <= two; u++) {
            float r[16];
            _mm512_storeu_ps(r, L->mins ? _mm512_sub_ps(acc[n][u], accm[n][u]) : acc[n][u]);
            float *yo = y + (int64_t)(tp + u) * AMX_TOK_TILE * ldy + n;
            for (int m = 0; m < nt_u[u]; m++) yo[m * ldy] = r[m];
        }
    }
}

static void kq_gemm_amx(const struct kq_layout *L, quant_vec_dot_fn dot, int64_t n_cols,
                        const void *w, size_t w_row, int64_t n_rows, const void *xq, size_t xq_row,
                        int64_t n_tok, float *y, int64_t ldy)
{
    const int64_t nb = n_cols / QK_K;
    const int64_t n_full = n_rows / AMX_ROW_TILE * AMX_ROW_TILE;
    const size_t bp_bytes = (size_t)nb * QK_K * 4 * 16, dy_bytes = (size_t)nb * 4 * 16 * 4;
    const size_t bs_bytes = (size_t)nb * 8 * 4 * 16 * 4, ap_bytes = (size_t)nb * QK_K * 16;
    const size_t sc_bytes = (size_t)nb * 16 * 16 * 4, mn_bytes = (size_t)nb * 8 * 16 * 4;
    const size_t dx_bytes = (size_t)nb * 16 * 4, c_bytes = 16 * 2 * 256 * 4;
    const size_t total = bp_bytes + dy_bytes + bs_bytes + ap_bytes + sc_bytes + mn_bytes +
                         2 * dx_bytes + c_bytes;
    uint8_t *mem = n_full ? scratch_get(total) : NULL;
    const uint8_t *wb = w, *xb = xq;
    if (mem) {
        uint8_t *p = mem;
        int32_t *cbuf = (int32_t *)p;
        p += c_bytes;
        uint8_t *bp = p;
        p += bp_bytes;
        int8_t *ap = (int8_t *)p;
        p += ap_bytes;
        float *dyp = (float *)p;
        p += dy_bytes;
        int32_t *bsp = (int32_t *)p;
        p += bs_bytes;
        int32_t *scp = (int32_t *)p;
        p += sc_bytes;
        int32_t *mnp = (int32_t *)p;
        p += mn_bytes;
        float *dxp = (float *)p;
        p += dx_bytes;
        float *dmp = (float *)p;
        struct amx_tilecfg cfg = {.palette = 1,
                                  .colsb = {64, 64, (uint16_t)L->sub, 64, 64},
                                  .rows = {16, 16, 16, (uint8_t)(L->sub / 4), (uint8_t)(L->sub / 4)}};
        _tile_loadconfig(&cfg);
        for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_BLOCK) {
            const int nt = (int)(n_tok - t0 < GEMM_TOK_BLOCK ? n_tok - t0 : GEMM_TOK_BLOCK);
            kq_pack_tokens(L, xb, xq_row, t0, nt, nb, bp, dyp, bsp);
            const int n_tt = (nt + AMX_TOK_TILE - 1) / AMX_TOK_TILE;
            for (int64_t r = 0; r < n_full; r += AMX_ROW_TILE) {
                kq_pack_rows(L, wb + (size_t)r * w_row, w_row, nb, ap, scp, mnp, dxp, dmp);
                for (int tp = 0; tp < n_tt; tp += 2) {
                    const int two = tp + 1 < n_tt;
                    int nt_u[2];
                    for (int u = 0; u < 2; u++) {
                        const int left = nt - (tp + u) * AMX_TOK_TILE;
                        nt_u[u] = left < 0 ? 0 : left < AMX_TOK_TILE ? left : AMX_TOK_TILE;
                    }
                    kq_tile_pair(L, nb, ap, scp, mnp, dxp, dmp, bp, dyp, bsp, tp, two, cbuf,
                                 y + t0 * ldy + r, ldy, nt_u);
                }
            }
        }
        _tile_release();
    }
    for (int64_t r = mem ? n_full : 0; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            y[t * ldy + r] = dot(n_cols, wb + (size_t)r * w_row, xb + (size_t)t * xq_row);
}

static const struct kq_layout k_q4_K = {32, 8, true, HY_TYPE_Q4_K, sizeof(struct block_q4_K)};
static const struct kq_layout k_q5_K = {32, 8, true, HY_TYPE_Q5_K, sizeof(struct block_q5_K)};

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

#undef KQ_ENTRY

const bool quant_amx_built = true;

const struct quant_kernels quant_amx_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q8_0] = {NULL, NULL, q8_0_vec_dot_amx},
    [HY_TYPE_Q4_K] = {NULL, NULL, q4_K_vec_dot_amx},
    [HY_TYPE_Q5_K] = {NULL, NULL, q5_K_vec_dot_amx},
};

const quant_gemm_fn quant_gemm_amx_table[HY_TYPE_COUNT] = {
    [HY_TYPE_Q8_0] = q8_0_gemm_amx,
    [HY_TYPE_Q4_K] = q4_K_gemm_amx,
    [HY_TYPE_Q5_K] = q5_K_gemm_amx,
};

#else

const bool quant_amx_built = false;
const struct quant_kernels quant_amx_table[HY_TYPE_COUNT] = {[0] = {NULL, NULL, NULL}};
const quant_gemm_fn quant_gemm_amx_table[HY_TYPE_COUNT] = {NULL};

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
