/*
 * AVX-512 VNNI gemm kernels (see quant_gemm.h): a register tile of weight
 * rows against a tile of tokens. Each row's block is unpacked once (nibble
 * planes, 6-bit scales into int16 scale words, Q8_0's sign flip, F16 to F32)
 * and used for every token of the tile, each (row, token) keeping its own
 * accumulators, so the unpacking that bounds vec_dot in prompt batches is
 * paid once per tile of tokens instead of once per token.
 *   - Q4_K, Q5_K, Q6_K: 1 row x GEMM_TILE (8) tokens; the unpacked super-
 *     block (4 vectors of weights, 4 of scale words) is the large part.
 *   - Q4_0, Q8_0: 2 rows x 4 tokens; per token and block pair, -c * v and
 *     the activation scales serve both rows.
 *   - F16: 4 rows x 6 tokens; a converted vector serves the other side.
 *
 * Exactness: for each output the float operations are those of the VNNI
 * vec_dot of quant_avx512.c for that type — the same int32 lane sums, the
 * same float products, the same accumulators fed in the same order and the
 * same horizontal sums — so every output equals that vec_dot bit for bit,
 * and a prompt gives the same logits in one batch as token by token. The
 * integer lane sums may be formed differently (K-quants: vpdpbusd per chunk
 * and one vpdpwssd per two chunks, see pack_pair, where vec_dot has maddubs
 * and vpdpwssd per chunk; Q4_0/Q8_0: the offset term as the vpdpbusd start
 * value) as long as each int32 lane ends with the same value. The helpers
 * both use (hsum512, k4_scales, ...) are defined once, in
 * quant_avx512_inl.h; tests/test_quant_gemm.c checks the equality, so a
 * change to either file that breaks it fails there.
 *
 * Tiling, for the caches: a thread's tokens go in tiles of GEMM_TOK_BLOCK
 * (their converted activations stay in L2), its rows in blocks of
 * GEMM_ROW_BLOCK (the weights of a block stay in L1/L2 while every register
 * tile of tokens passes over them), so the weights come from memory once per
 * GEMM_TOK_BLOCK tokens.
 *
 * Rejected: vpmulld for the K-quant sub-block scales (two port-0 uops per
 * chunk), float scaling per sub-block (other rounding than vec_dot), and
 * more K-quant tokens per tile (the accumulators of 8 tokens and the
 * unpacked block fill the 32 vector registers).
 */
#include "quant/quant_cpu.h"
#include "quant/quant_gemm.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__) && defined(__AVX2__) && defined(__FMA__) &&   \
    defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant_avx512_inl.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define G_INLINE static inline __attribute__((always_inline))

/* K-quant tokens per register tile: 8 sets of accumulators (2.5 vectors
 * each) plus the unpacked block fit the 32 vector registers. */
#define GEMM_TILE      8
#define GEMM_TOK_BLOCK 64
#define GEMM_ROW_BLOCK 16

/* ---- helpers (the shared ones are in quant_avx512_inl.h) ----------------- */

/* clang-format off */
static const int16_t g_dup_mins[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};
/* clang-format on */

/* Scale words for two chunks' vpdpbusd sums packed as word pairs (see
 * pack_pair): word 2k the scale of lane k of the first chunk, 2k + 1 of the
 * second. Q4_K/Q5_K, pair p = chunks 2p and 2p + 1 (a chunk's lanes 0-7
 * are sub-block 2j, 8-15 sub-block 2j + 1). Q6_K, half h = chunks q01 and
 * q23 (lanes 4m..4m+3 are 16-element sub-block 8h + m, resp. 8h + 4 + m). */
#define PAIR8(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
static const int16_t g_k4_pair[2][32] = {
    {PAIR8(0, 2), PAIR8(1, 3)},
    {PAIR8(4, 6), PAIR8(5, 7)},
};
#define PAIR4(a, b) a, b, a, b, a, b, a, b
static const int16_t g_q6_pair[2][32] = {
    {PAIR4(0, 4), PAIR4(1, 5), PAIR4(2, 6), PAIR4(3, 7)},
    {PAIR4(8, 12), PAIR4(9, 13), PAIR4(10, 14), PAIR4(11, 15)},
};
#undef PAIR4
#undef PAIR8

/* vec_dot's int32 lane k of a chunk of 4 bytes x 4 is the scale times
 * maddubs' two words = scale * (the vpdpbusd sum of lane k), a sum of 4
 * products of at most 63 * 128, which fits int16. So two chunks' vpdpbusd
 * sums a, b go as the word pair (a_k, b_k) in lane k (b's low word moved up
 * by one masked byte shuffle, port 5) into one vpdpwssd with the scale
 * pairs: the same lane sums with 3 port-0 operations per two chunks instead
 * of maddubs + vpdpwssd twice (4). */
static inline __m512i pack_pair(__m512i a, __m512i b)
{
    const __m512i up = _mm512_set4_epi32(0x0d0c8080, 0x09088080, 0x05048080, 0x01008080);
    return _mm512_mask_shuffle_epi8(a, 0xccccccccccccccccull, b, up);
}

/* A zero register made by the zeroing idiom in place: with setzero the
 * compiler keeps one zero and copies it into every vpdpbusd destination, a
 * vector move each that the idiom (handled at register renaming) avoids. */
static inline __m512i zero_idiom(void)
{
    __m512i z;
    __asm__("vpxord %0, %0, %0" : "=v"(z));
    return z;
}

static inline __m512i dot_pair(__m512i acc, __m512i qa, const void *ya, __m512i qb, const void *yb,
                               __m512i scales)
{
    const __m512i da = _mm512_dpbusd_epi32(zero_idiom(), qa, load512(ya));
    const __m512i db = _mm512_dpbusd_epi32(zero_idiom(), qb, load512(yb));
    return _mm512_dpwssd_epi32(acc, pack_pair(da, db), scales);
}

/* v, which the compiler then cannot see is a broadcast: it would turn
 * set1(a) * set1(b) per token into a scalar multiply and a broadcast (two
 * vector operations) instead of one multiply from memory. Same value. */
static inline __m512 opaque_ps(__m512 v)
{
    __asm__("" : "+v"(v));
    return v;
}

/* Activation super-block i of token t of a tile. */
static inline const struct block_q8_K *act_k(const uint8_t *xq, size_t xq_row, int t, int64_t i)
{
    return (const struct block_q8_K *)(xq + (size_t)t * xq_row) + i;
}

static inline const struct block_q8_0 *act_0(const uint8_t *xq, size_t xq_row, int t, int64_t i)
{
    return (const struct block_q8_0 *)(xq + (size_t)t * xq_row) + i;
}

/* ---- Q4_K and Q5_K (quant_avx512.c's k4_dot per token) ------------------ */

G_INLINE void k4_tile(int64_t nb, const uint8_t *base, size_t block_bytes, size_t qs_off,
                      size_t qh_off, bool hbits, const uint8_t *xq, size_t xq_row, int nt, float *y,
                      int64_t ldy)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const float *tab = quant_cpu_f16_table;
    /* acc_m[t / 2]: vec_dot's 8-lane min accumulator of token t in the low
     * half, of token t + 1 in the high half (one instruction for two tokens,
     * the same operation per lane); an odd last token fills both halves. */
    __m512 acc[GEMM_TILE], acc_m[GEMM_TILE / 2];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int t = 0; t < GEMM_TILE / 2; t++) acc_m[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = base + i * block_bytes;
        prefetch_ahead(b, block_bytes);
        hy_half hd, hmin;
        memcpy(&hd, b, sizeof(hd));
        memcpy(&hmin, b + 2, sizeof(hmin));
        const __m256i sm16 = _mm256_cvtepu8_epi16(k4_scales(b + 4));
        const __m512i dup = _mm512_broadcast_i64x4(
            _mm256_permutexvar_epi16(_mm256_loadu_si256((const __m256i *)g_dup_mins), sm16));
        const __m512i sc = _mm512_zextsi256_si512(sm16);
        const __m512i hb =
            hbits ? _mm512_broadcast_i64x4(load256(b + qh_off)) : _mm512_setzero_si512();
        __m512i sumi[GEMM_TILE];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) sumi[t] = _mm512_setzero_si512();
        for (int pr = 0; pr < 2; pr++) {
            __m512i q[2];
            for (int c = 0; c < 2; c++) {
                const int j = 2 * pr + c;
                q[c] = _mm512_and_si512(planes(b + qs_off + 32 * j, nib), m4);
                if (hbits) {
                    /* bit 2j of qh[l] (low half) and 2j + 1 (high half) to
                     * bit 4: rotate left by 4 - 2j and 3 - 2j, inside each byte */
                    const __m512i rot = _mm512_rolv_epi64(
                        hb, _mm512_setr_epi64((4 - 2 * j) & 63, (4 - 2 * j) & 63, (4 - 2 * j) & 63,
                                              (4 - 2 * j) & 63, (3 - 2 * j) & 63, (3 - 2 * j) & 63,
                                              (3 - 2 * j) & 63, (3 - 2 * j) & 63));
                    q[c] = _mm512_ternarylogic_epi32(q[c], rot, m16, 0xf8);
                }
            }
            const __m512i sp = perm16(g_k4_pair[pr], sc);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *yq = act_k(xq, xq_row, t, i)->qs + 128 * pr;
                sumi[t] = dot_pair(sumi[t], q[0], yq, q[1], yq + 64, sp);
            }
        }
        const __m512 dx = opaque_ps(_mm512_set1_ps(tab[hd]));
        const __m512 dmx = opaque_ps(_mm512_set1_ps(tab[hmin]));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const struct block_q8_K *yb = act_k(xq, xq_row, t, i);
            const __m512 d = _mm512_mul_ps(dx, _mm512_set1_ps(yb->d));
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[t]), acc[t]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t += 2) {
            const struct block_q8_K *ya = act_k(xq, xq_row, t, i);
            const struct block_q8_K *yb = act_k(xq, xq_row, t + 1 < nt ? t + 1 : t, i);
            const __m512i bs = _mm512_inserti64x4(_mm512_castsi256_si512(load256(ya->bsums)),
                                                  load256(yb->bsums), 1);
            const __m512i mins = _mm512_madd_epi16(dup, bs);
            const __m512 yd =
                _mm512_mask_mov_ps(_mm512_set1_ps(ya->d), 0xff00, _mm512_set1_ps(yb->d));
            const __m512 dmin = _mm512_mul_ps(dmx, yd);
            acc_m[t / 2] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(mins), acc_m[t / 2]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const __m512 m = acc_m[t / 2];
        const __m256 half = t % 2 ? _mm512_extractf32x8_ps(m, 1) : _mm512_castps512_ps256(m);
        y[t * ldy] = hsum512(acc[t]) - hsum256(half);
    }
}

/* ---- Q6_K (quant_avx512.c's q6_K_dot per token) -------------------------- */

G_INLINE void q6_K_tile(int64_t nb, const struct block_q6_K *x, const uint8_t *xq, size_t xq_row,
                        int nt, float *y, int64_t ldy)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const float *tab = quant_cpu_f16_table;
    __m512 acc[GEMM_TILE];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_ahead(x + i, sizeof(*x));
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(x[i].scales));
        const __m512i sc = _mm512_zextsi256_si512(sc16);
        __m512i sumi[GEMM_TILE];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) sumi[t] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i l = load512(x[i].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * h));
            const __m512i h01 = _mm512_and_si512(
                _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)), m30);
            const __m512i q01 = _mm512_ternarylogic_epi32(l, h01, m4, 0xec);
            const __m512i h23 = _mm512_and_si512(
                _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)), m30);
            const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h23, m4, 0xec);
            const __m512i sp = perm16(g_q6_pair[h], sc);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *yq = act_k(xq, xq_row, t, i)->qs + 128 * h;
                sumi[t] = dot_pair(sumi[t], q01, yq, q23, yq + 64, sp);
            }
        }
        const __m512 dx = opaque_ps(_mm512_set1_ps(tab[x[i].d]));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const struct block_q8_K *yb = act_k(xq, xq_row, t, i);
            const __m256i off = _mm256_madd_epi16(sc16, load256(yb->bsums));
            const __m512i s =
                _mm512_sub_epi32(sumi[t], _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
            const __m512 d = _mm512_mul_ps(dx, _mm512_set1_ps(yb->d));
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[t * ldy] = hsum512(acc[t]);
}

/* ---- Q4_0, Q5_0 and Q8_0 against Q8_0 (quant_avx512.c's VNNI q4_0_dot,
 * q5_0_dot, q8_0_dot). All are (u - c) * v for a block pair with u unsigned:
 * Q4_0's nibbles with c = 8, Q5_0's nibbles plus 16 where the high bit is
 * set with c = 16, Q8_0's bytes xor 0x80 with c = 128. vec_dot subtracts
 * c * v after the dot; here -c * v is computed once per token and block pair
 * and is the start of the dot product of each row (the same int32 sums: no
 * term can overflow). The accumulator of each block pair follows vec_dot:
 * pairs of a group of four alternate acc0 / acc1, the tail pairs go to acc0.
 * A tile is LEG_ROWS rows by LEG_TOK tokens, so that -c * v and the
 * activation scales serve three rows (four spill the 32 vector registers:
 * the accumulators of two chains are 2 x LEG_ROWS x LEG_TOK). */
#define LEG_ROWS 3
#define LEG_TOK  4

enum legacy { LEG_Q4_0, LEG_Q5_0, LEG_Q8_0 };

G_INLINE size_t legacy_bytes(enum legacy k)
{
    return k == LEG_Q4_0   ? sizeof(struct block_q4_0)
           : k == LEG_Q5_0 ? sizeof(struct block_q5_0)
                           : sizeof(struct block_q8_0);
}

G_INLINE __m512i legacy_u(const uint8_t *x, enum legacy k, int64_t i, bool two)
{
    const size_t bb = legacy_bytes(k);
    const uint8_t *a = x + (size_t)i * bb, *b = a + (two ? bb : 0);
    if (k == LEG_Q8_0)
        return _mm512_xor_si512(load_pair32(a + 2, b + 2, two), _mm512_set1_epi8((char)0x80));
    if (k == LEG_Q5_0)
        return q5_pair(a + offsetof(struct block_q5_0, qs), a + offsetof(struct block_q5_0, qh),
                       b + offsetof(struct block_q5_0, qs), b + offsetof(struct block_q5_0, qh),
                       two);
    return nibbles_pair(a + 2, b + 2, two);
}

G_INLINE float legacy_d(const uint8_t *x, size_t bb, int64_t i)
{
    hy_half d;
    memcpy(&d, x + (size_t)i * bb, sizeof(d));
    return quant_cpu_f16_table[d];
}

/* One side of quant_avx512.c's scale_pair: a in the low 8 lanes, b (when
 * two) in the high 8; the product of the two sides is scale_pair's. */
G_INLINE __m512 legacy_half_pair(float a, float b, bool two)
{
    const __m512 v = _mm512_set1_ps(a);
    return two ? _mm512_mask_mov_ps(v, 0xff00, _mm512_set1_ps(b)) : v;
}

/* acc[r][t] += scale * dot for the block pair (i, i + two) of every row and token. */
G_INLINE void legacy_pair(const uint8_t *x, size_t w_row, int nr, enum legacy k, int64_t i,
                          bool two, const uint8_t *xq, size_t xq_row, int nt,
                          __m512 acc[LEG_ROWS][LEG_TOK])
{
    const size_t bb = legacy_bytes(k);
    const __m512i c = _mm512_set1_epi8((char)(k == LEG_Q8_0 ? 0x80 : k == LEG_Q5_0 ? 16 : 8));
    __m512i u[LEG_ROWS];
    __m512 dx[LEG_ROWS];
#pragma GCC unroll 3
    for (int r = 0; r < nr; r++) {
        const uint8_t *xr = x + (size_t)r * w_row;
        u[r] = legacy_u(xr, k, i, two);
        dx[r] = legacy_half_pair(legacy_d(xr, bb, i), legacy_d(xr, bb, i + two), two);
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        const struct block_q8_0 *yb = act_0(xq, xq_row, t, i);
        const __m512i v = load_pair32(yb[0].qs, yb[two].qs, two);
        const __m512i negc = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, v));
        const float *tab = quant_cpu_f16_table;
        const __m512 dy = legacy_half_pair(tab[yb[0].d], tab[yb[two].d], two);
#pragma GCC unroll 3
        for (int r = 0; r < nr; r++) {
            const __m512 scale =
                two ? _mm512_mul_ps(dx[r], dy) : _mm512_maskz_mul_ps(0x00ff, dx[r], dy);
            const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(negc, u[r], v));
            acc[r][t] = _mm512_fmadd_ps(scale, dot, acc[r][t]);
        }
    }
}

G_INLINE void legacy_tile(int64_t nb, const uint8_t *x, size_t w_row, int nr, enum legacy k,
                          const uint8_t *xq, size_t xq_row, int nt, float *y, int64_t ldy)
{
    const size_t bb = legacy_bytes(k);
    __m512 acc0[LEG_ROWS][LEG_TOK], acc1[LEG_ROWS][LEG_TOK];
#pragma GCC unroll 3
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc0[r][t] = acc1[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
#pragma GCC unroll 3
        for (int r = 0; r < nr; r++) prefetch_ahead(x + (size_t)r * w_row + (size_t)i * bb, 4 * bb);
        legacy_pair(x, w_row, nr, k, i, true, xq, xq_row, nt, acc0);
        legacy_pair(x, w_row, nr, k, i + 2, true, xq, xq_row, nt, acc1);
    }
    for (; i < nb; i += 2) {
        if (i + 1 < nb)
            legacy_pair(x, w_row, nr, k, i, true, xq, xq_row, nt, acc0);
        else
            legacy_pair(x, w_row, nr, k, i, false, xq, xq_row, nt, acc0);
    }
#pragma GCC unroll 3
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
            y[t * ldy + r] = hsum512(_mm512_add_ps(acc0[r][t], acc1[r][t]));
}

/* clang-format off */
#define G_SWITCH4(nt, call_with_NT)                                                                \
    switch (nt) {                                                                                  \
    case 4: { enum { NT = 4 }; call_with_NT; } break;                                              \
    case 3: { enum { NT = 3 }; call_with_NT; } break;                                              \
    case 2: { enum { NT = 2 }; call_with_NT; } break;                                              \
    default: { enum { NT = 1 }; call_with_NT; } break;                                             \
    }
/* clang-format on */

/* Rows [r, r1) of the tokens at xt: tiles of LEG_ROWS rows, then two, then one. */
G_INLINE void legacy_rows(int64_t nb, const uint8_t *wb, size_t w_row, int64_t r, int64_t r1,
                          enum legacy k, const uint8_t *xt, size_t xq_row, int nt, float *y,
                          int64_t ldy)
{
    for (; r + LEG_ROWS <= r1; r += LEG_ROWS)
        G_SWITCH4(nt, legacy_tile(nb, wb + (size_t)r * w_row, w_row, LEG_ROWS, k, xt, xq_row, NT,
                                  y + r, ldy))
    if (r + 2 <= r1) {
        G_SWITCH4(nt,
                  legacy_tile(nb, wb + (size_t)r * w_row, w_row, 2, k, xt, xq_row, NT, y + r, ldy))
        r += 2;
    }
    if (r < r1)
        G_SWITCH4(nt,
                  legacy_tile(nb, wb + (size_t)r * w_row, w_row, 1, k, xt, xq_row, NT, y + r, ldy))
}

G_INLINE void legacy_gemm(enum legacy k, int64_t n_cols, const void *w, size_t w_row,
                          int64_t n_rows, const void *xq, size_t xq_row, int64_t n_tok, float *y,
                          int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    const int64_t nb = n_cols / 32;
    for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_BLOCK) {
        const int64_t t1 = t0 + GEMM_TOK_BLOCK < n_tok ? t0 + GEMM_TOK_BLOCK : n_tok;
        for (int64_t r0 = 0; r0 < n_rows; r0 += GEMM_ROW_BLOCK) {
            const int64_t r1 = r0 + GEMM_ROW_BLOCK < n_rows ? r0 + GEMM_ROW_BLOCK : n_rows;
            for (int64_t ts = t0; ts < t1; ts += LEG_TOK) {
                const int nt = (int)(t1 - ts < LEG_TOK ? t1 - ts : LEG_TOK);
                legacy_rows(nb, wb, w_row, r0, r1, k, xb + (size_t)ts * xq_row, xq_row, nt,
                            y + ts * ldy, ldy);
            }
        }
    }
}

/* One token (quant_gemm.h's gemv): the same tiles, each activation pair and
 * its -c * v serving LEG_ROWS rows, whose weights stream side by side. */
G_INLINE void legacy_gemv(enum legacy k, int64_t n_cols, const void *w, size_t w_row,
                          int64_t n_rows, const void *xq, float *y)
{
    legacy_rows(n_cols / 32, w, w_row, 0, n_rows, k, xq, 0, 1, y, 0);
}

#define LEG_ENTRY(name, kind)                                                                      \
    static void name##_gemm(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,           \
                            const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)   \
    {                                                                                              \
        legacy_gemm(kind, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, ldy);                    \
    }                                                                                              \
    static void name##_gemv(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,           \
                            const void *xq, float *y)                                              \
    {                                                                                              \
        legacy_gemv(kind, n_cols, w, w_row, n_rows, xq, y);                                        \
    }

LEG_ENTRY(q4_0, LEG_Q4_0)
LEG_ENTRY(q5_0, LEG_Q5_0)
LEG_ENTRY(q8_0, LEG_Q8_0)

#undef LEG_ENTRY

/* ---- F16 (quant_avx512.c's f16_vec_dot per output) ---------------------
 * vec_dot keeps four accumulator chains: chain c takes elements 16c..16c+15
 * of every 64, chain 0 then the whole 16s after the last 64, chain 1 the
 * masked tail. Each chain's FMAs here come in the same order, one chain per
 * pass over the rows (the four chains of a whole tile would not fit the
 * registers), and the sums are combined as vec_dot does. A tile is
 * F16_ROWS rows by F16_TOK tokens: each converted weight vector serves
 * F16_TOK tokens, each converted activation vector F16_ROWS rows. */
#define F16_ROWS 4
#define F16_TOK  6

static inline __m512 f16x16_masked(const hy_half *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

G_INLINE void f16_tile(int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *xq,
                       size_t xq_row, int nt, float *y, int64_t ldy)
{
    const hy_half *xr[F16_ROWS], *yt[F16_TOK];
    for (int r = 0; r < nr; r++) xr[r] = (const hy_half *)(w + (size_t)r * w_row);
    for (int t = 0; t < nt; t++) yt[t] = (const hy_half *)(xq + (size_t)t * xq_row);
    __m512 part[4][F16_ROWS][F16_TOK];
    const int64_t n64 = n / 64 * 64, n16 = n / 16 * 16;
    for (int c = 0; c < 4; c++) {
        __m512 acc[F16_ROWS][F16_TOK];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
        for (int64_t i = 16 * c; i < n64; i += 64) {
            __m512 wv[F16_ROWS];
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                if (c == 0) prefetch_ahead(xr[r] + i, 128);
                wv[r] = f16x16(xr[r] + i);
            }
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) {
                const __m512 yv = f16x16(yt[t] + i);
#pragma GCC unroll 4
                for (int r = 0; r < nr; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], yv, acc[r][t]);
            }
        }
        if (c == 0) {
            for (int64_t i = n64; i < n16; i += 16) {
#pragma GCC unroll 6
                for (int t = 0; t < nt; t++) {
                    const __m512 yv = f16x16(yt[t] + i);
#pragma GCC unroll 4
                    for (int r = 0; r < nr; r++)
                        acc[r][t] = _mm512_fmadd_ps(f16x16(xr[r] + i), yv, acc[r][t]);
                }
            }
        } else if (c == 1 && n16 < n) {
            const __mmask16 m = (__mmask16)((1u << (n - n16)) - 1);
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) {
                const __m512 yv = f16x16_masked(yt[t] + n16, m);
#pragma GCC unroll 4
                for (int r = 0; r < nr; r++)
                    acc[r][t] = _mm512_fmadd_ps(f16x16_masked(xr[r] + n16, m), yv, acc[r][t]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) part[c][r][t] = acc[r][t];
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            y[t * ldy + r] = hsum512(_mm512_add_ps(_mm512_add_ps(part[0][r][t], part[1][r][t]),
                                                   _mm512_add_ps(part[2][r][t], part[3][r][t])));
}

/* clang-format off */
#define G_SWITCH6(nt, call_with_NT)                                                                \
    switch (nt) {                                                                                  \
    case 6: { enum { NT = 6 }; call_with_NT; } break;                                              \
    case 5: { enum { NT = 5 }; call_with_NT; } break;                                              \
    case 4: { enum { NT = 4 }; call_with_NT; } break;                                              \
    case 3: { enum { NT = 3 }; call_with_NT; } break;                                              \
    case 2: { enum { NT = 2 }; call_with_NT; } break;                                              \
    default: { enum { NT = 1 }; call_with_NT; } break;                                             \
    }
/* clang-format on */

static void f16_gemm(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows, const void *xq,
                     size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_BLOCK) {
        const int64_t t1 = t0 + GEMM_TOK_BLOCK < n_tok ? t0 + GEMM_TOK_BLOCK : n_tok;
        for (int64_t r0 = 0; r0 < n_rows; r0 += GEMM_ROW_BLOCK) {
            const int64_t r1 = r0 + GEMM_ROW_BLOCK < n_rows ? r0 + GEMM_ROW_BLOCK : n_rows;
            for (int64_t ts = t0; ts < t1; ts += F16_TOK) {
                const int nt = (int)(t1 - ts < F16_TOK ? t1 - ts : F16_TOK);
                const uint8_t *xt = xb + (size_t)ts * xq_row;
                int64_t r = r0;
                for (; r + F16_ROWS <= r1; r += F16_ROWS)
                    G_SWITCH6(nt, f16_tile(n_cols, wb + (size_t)r * w_row, w_row, F16_ROWS, xt,
                                           xq_row, NT, y + ts * ldy + r, ldy))
                for (; r < r1; r++)
                    G_SWITCH6(nt, f16_tile(n_cols, wb + (size_t)r * w_row, w_row, 1, xt, xq_row, NT,
                                           y + ts * ldy + r, ldy))
            }
        }
    }
}

/* ---- F16 matrix-vector (quant_avx512.c's f16_vec_dot per row) -----------
 * Four rows at once, each with vec_dot's four chains (16 accumulators), each
 * FMA of a row as in vec_dot; the activation vector converted once serves
 * the four rows. */
#define GEMV_ROWS 4

G_INLINE void f16_gemv_rows(int64_t n, const uint8_t *w, size_t w_row, int nr, const hy_half *y,
                            float *out)
{
    const hy_half *x[GEMV_ROWS];
    __m512 a[GEMV_ROWS][4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        x[r] = (const hy_half *)(w + (size_t)r * w_row);
        for (int c = 0; c < 4; c++) a[r][c] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 y0 = f16x16(y + i), y1 = f16x16(y + i + 16);
        const __m512 y2 = f16x16(y + i + 32), y3 = f16x16(y + i + 48);
        /* QUANT_PREFETCH_BYTES ahead in each row; past a row's end, in the
         * same row of the next group of GEMV_ROWS (the next row is read by
         * its own stream already) */
        const size_t ahead = (size_t)(2 * i) + QUANT_PREFETCH_BYTES;
        const size_t skip = ahead >= w_row ? (size_t)(GEMV_ROWS - 1) * w_row : 0;
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const uintptr_t pf = (uintptr_t)x[r] + ahead + skip;
            _mm_prefetch((const char *)pf, _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + 64), _MM_HINT_T0);
            a[r][0] = _mm512_fmadd_ps(f16x16(x[r] + i), y0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(f16x16(x[r] + i + 16), y1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(f16x16(x[r] + i + 32), y2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(f16x16(x[r] + i + 48), y3, a[r][3]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 yv = f16x16(y + i);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) a[r][0] = _mm512_fmadd_ps(f16x16(x[r] + i), yv, a[r][0]);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 yv = f16x16_masked(y + i, m);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
            a[r][1] = _mm512_fmadd_ps(f16x16_masked(x[r] + i, m), yv, a[r][1]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
        out[r] = hsum512(
            _mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_add_ps(a[r][2], a[r][3])));
}

static void f16_gemv(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows, const void *xq,
                     float *y)
{
    const uint8_t *wb = w;
    int64_t r = 0;
    for (; r + GEMV_ROWS <= n_rows; r += GEMV_ROWS)
        f16_gemv_rows(n_cols, wb + (size_t)r * w_row, w_row, GEMV_ROWS, xq, y + r);
    for (; r < n_rows; r++) f16_gemv_rows(n_cols, wb + (size_t)r * w_row, w_row, 1, xq, y + r);
}

/* ---- drivers ------------------------------------------------------------- */

/* One row against nt tokens (1..GEMM_TILE), nt made a constant for the
 * tile functions so that their per-token arrays live in registers. */
/* clang-format off */
#define G_SWITCH(nt, call_with_NT)                                                                 \
    switch (nt) {                                                                                  \
    case 8: { enum { NT = 8 }; call_with_NT; } break;                                              \
    case 7: { enum { NT = 7 }; call_with_NT; } break;                                              \
    case 6: { enum { NT = 6 }; call_with_NT; } break;                                              \
    case 5: { enum { NT = 5 }; call_with_NT; } break;                                              \
    case 4: { enum { NT = 4 }; call_with_NT; } break;                                              \
    case 3: { enum { NT = 3 }; call_with_NT; } break;                                              \
    case 2: { enum { NT = 2 }; call_with_NT; } break;                                              \
    default: { enum { NT = 1 }; call_with_NT; } break;                                             \
    }
/* clang-format on */

static void q4_K_row(int64_t n, const uint8_t *row, const uint8_t *xq, size_t xq_row, int nt,
                     float *y, int64_t ldy)
{
    G_SWITCH(nt, k4_tile(n / QK_K, row, sizeof(struct block_q4_K), offsetof(struct block_q4_K, qs),
                         0, false, xq, xq_row, NT, y, ldy))
}

static void q5_K_row(int64_t n, const uint8_t *row, const uint8_t *xq, size_t xq_row, int nt,
                     float *y, int64_t ldy)
{
    G_SWITCH(nt, k4_tile(n / QK_K, row, sizeof(struct block_q5_K), offsetof(struct block_q5_K, qs),
                         offsetof(struct block_q5_K, qh), true, xq, xq_row, NT, y, ldy))
}

static void q6_K_row(int64_t n, const uint8_t *row, const uint8_t *xq, size_t xq_row, int nt,
                     float *y, int64_t ldy)
{
    G_SWITCH(nt, q6_K_tile(n / QK_K, (const struct block_q6_K *)row, xq, xq_row, NT, y, ldy))
}

typedef void (*gemm_row_fn)(int64_t n, const uint8_t *row, const uint8_t *xq, size_t xq_row, int nt,
                            float *y, int64_t ldy);

static inline void gemm_blocked(gemm_row_fn row_fn, int64_t n_cols, const void *w, size_t w_row,
                                int64_t n_rows, const void *xq, size_t xq_row, int64_t n_tok,
                                float *y, int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_BLOCK) {
        const int64_t t1 = t0 + GEMM_TOK_BLOCK < n_tok ? t0 + GEMM_TOK_BLOCK : n_tok;
        for (int64_t r0 = 0; r0 < n_rows; r0 += GEMM_ROW_BLOCK) {
            const int64_t r1 = r0 + GEMM_ROW_BLOCK < n_rows ? r0 + GEMM_ROW_BLOCK : n_rows;
            for (int64_t ts = t0; ts < t1; ts += GEMM_TILE) {
                const int nt = (int)(t1 - ts < GEMM_TILE ? t1 - ts : GEMM_TILE);
                for (int64_t r = r0; r < r1; r++)
                    row_fn(n_cols, wb + (size_t)r * w_row, xb + (size_t)ts * xq_row, xq_row, nt,
                           y + ts * ldy + r, ldy);
            }
        }
    }
}

#define G_ENTRY(name)                                                                              \
    static void name##_gemm(int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,           \
                            const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)   \
    {                                                                                              \
        gemm_blocked(name##_row, n_cols, w, w_row, n_rows, xq, xq_row, n_tok, y, ldy);             \
    }

G_ENTRY(q4_K)
G_ENTRY(q5_K)
G_ENTRY(q6_K)

#undef G_ENTRY

const bool quant_gemm_avx512_built = true;

const quant_gemm_fn quant_gemm_avx512_vnni_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F16] = f16_gemm,   [HY_TYPE_Q4_0] = q4_0_gemm, [HY_TYPE_Q5_0] = q5_0_gemm,
    [HY_TYPE_Q8_0] = q8_0_gemm, [HY_TYPE_Q4_K] = q4_K_gemm, [HY_TYPE_Q5_K] = q5_K_gemm,
    [HY_TYPE_Q6_K] = q6_K_gemm,
};

const quant_gemv_fn quant_gemv_avx512_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F16] = f16_gemv,
    [HY_TYPE_Q4_0] = q4_0_gemv,
    [HY_TYPE_Q5_0] = q5_0_gemv,
    [HY_TYPE_Q8_0] = q8_0_gemv,
};

#else

const bool quant_gemm_avx512_built = false;
const quant_gemv_fn quant_gemv_avx512_table[HY_TYPE_COUNT] = {NULL};
const quant_gemm_fn quant_gemm_avx512_vnni_table[HY_TYPE_COUNT] = {NULL};

#endif
