/*
 * Quantized weights on the GPU: the decode matrix-vector product, and full
 * dequantization (to binary16 for cuBLAS, to F32 for row gathers). Contracts
 * in cuda_kernels.h; block layouts in quant/blocks.h; the values are those of
 * the reference dequantizers in quant/quant_ref.c.
 *
 * Work item. Every type is cut into items: P lanes (threads) share a block,
 * each taking a fixed part of it: NRUN runs of 4 consecutive columns, in NG
 * scale groups (a group is the lane's elements of one sub-block). Lanes
 * take consecutive parts of consecutive blocks, so a warp's loads cover a
 * contiguous span. A type is a struct of static functions (the traits
 * below): load the item's bytes, decode its group scales, give run j's 4
 * integers as the bytes of a word (value = (byte - OFF) * d (+ bias)). They
 * are __host__ __device__: a host program checks them against the reference
 * C dequantizers, bit for bit.
 *
 *   type  P  lane's part                                 loads
 *   Q4_0  2  qs bytes 8p..8p+7: cols 8p.., 16+8p..       u16
 *   Q4_1  2  as Q4_0                                     u32
 *   Q5_0  2  as Q4_0, with qh                            u16
 *   Q5_1  2  as Q4_0, with qh                            u32
 *   Q8_0  2  qs bytes 16p..16p+15                        u32 + funnel shift
 *   Q2_K  8  half p/4, bytes l in 8(p%4).. of each qs    u32
 *            row of 32: 4 quarters of 8 columns
 *   Q3_K  8  as Q2_K, plus the hmask bytes l             u16
 *   Q4_K  4  64-column group p: its 32 qs bytes          16-byte
 *   Q5_K  8  group p/2, half p%2 of its qs; 16 qh bytes  16-byte
 *   Q6_K  8  as Q2_K over ql/qh                          u16
 *   F32/F16/BF16  1  16 bytes: 4 or 8 columns            16-byte
 *
 * Dequantizers. A byte b becomes a float without I2F (quarter rate): b in
 * the mantissa of 2^23 (bits 0x4B0000bb, one PRMT) minus 2^23 + OFF is
 * b - OFF exactly; then q * d (+ bias) with the reference's operations and
 * rounding (__fmul_rn/__fadd_rn: no FMA contraction): bit-exact. A thread per
 * item, its runs stored as 8-byte (16-byte for adjacent runs) pieces.
 *
 * Matvec. Persistent CTAs of 8 warps, one x per CTA staged in shared memory
 * (cp.async; swizzled so that the lanes' 16-byte reads hit 8 bank groups) with
 * the sums of each 8 columns; a warp takes R = 2 rows and walks their items a
 * step (32 items) at a time, the next step's weights loaded (16-byte loads
 * skip L1) before this step's products. Each x run is read once per item for
 * both rows. When there are too few rows to fill the GPU, the warps of a CTA
 * split the items of a row (KS = 2, 4 or 8) and add in shared memory. For
 * quantized types the shared x is x * 2^64 and a weight byte enters the FMA
 * as the denormal b * 2^-149 (one PRMT, no conversion); a scale group adds
 * up as d * sum(b x) + (bias - OFF d) * sum(x) with sum(x) from the 8-column
 * sums (few tokens), or each weight is fmaf(b, d, bias - OFF d) first (many).
 * So the matvec's rounding is not the reference's order of operations (F32
 * accumulation throughout; |x| must stay below 2^64); the weights are exact.
 * When x is too large for shared memory: x from global memory (__ldg) and
 * the plain float path of cq_mv_item. The quantized types take the integer
 * path instead where its x fits (see "integer matvec" below):
 * x quantized to int8 as the CPU backend quantizes it, dp4a products.
 *
 * Alignment. The item loads need w and row_bytes aligned to ALIGN (the load
 * width), x 16-byte aligned and n_cols a multiple of 4; otherwise (rare: odd
 * views) a per-element fallback runs, byte loads and all.
 */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_moe.cuh"
#include "backend/cuda/cuda_pdl.cuh"
#include "backend/cuda/cuda_trace.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include "quant/blocks.h"

/* Type ids: enum hy_type in quant/quant.h (GGUF numbering; quant.h is C-only,
 * so they are repeated here; a test compiles both and compares). */
enum {
    CQ_F32 = 0,
    CQ_F16 = 1,
    CQ_Q4_0 = 2,
    CQ_Q4_1 = 3,
    CQ_Q5_0 = 6,
    CQ_Q5_1 = 7,
    CQ_Q8_0 = 8,
    CQ_Q2_K = 10,
    CQ_Q3_K = 11,
    CQ_Q4_K = 12,
    CQ_Q5_K = 13,
    CQ_Q6_K = 14,
    CQ_BF16 = 30,
};

#define CQ_HD __host__ __device__ __forceinline__

/* ---- scalar helpers (host versions for the host-side check) ------------- */

CQ_HD float cq_as_float(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* __byte_perm: result byte n = byte (s >> 4n) & 7 of the pair {y:x}. */
CQ_HD uint32_t cq_perm(uint32_t x, uint32_t y, uint32_t s)
{
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = ((uint64_t)y << 32) | x;
    uint32_t r = 0;
    for (int n = 0; n < 4; n++)
        r |= (uint32_t)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xff) << (8 * n);
    return r;
#endif
}

CQ_HD float cq_h2f(uint32_t h)
{
    return __half2float(__ushort_as_half((unsigned short)h));
}

CQ_HD uint16_t cq_f2h(float f)
{
    return __half_as_ushort(__float2half_rn(f));
}

/* Products and sums that the compiler may not fuse into an FMA. */
CQ_HD float cq_mul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

CQ_HD float cq_add(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* Loads. 16-byte ones skip L1 (weights are read once); narrower ones go
 * through it, since the lanes of a block read neighbouring halfwords. */
CQ_HD uint32_t cq_ld8(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}

CQ_HD uint32_t cq_ld16(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned short *)p);
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

CQ_HD uint32_t cq_ld32(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned int *)p);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

CQ_HD uint4 cq_ld128(const uint8_t *p)
{
    uint4 v;
#ifdef __CUDA_ARCH__
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
#else
    memcpy(&v, p, 16);
#endif
    return v;
}

/* Where a type's load() reads its block bytes: global memory (the loads
 * above) or shared memory, where the staged one-token kernel copies each
 * step's bytes first (same address modulo 16, so the same alignment). */
struct CqGmem {
    static CQ_HD uint32_t ld16(const uint8_t *p)
    {
        return cq_ld16(p);
    }
    static CQ_HD uint32_t ld32(const uint8_t *p)
    {
        return cq_ld32(p);
    }
    static CQ_HD uint4 ld128(const uint8_t *p)
    {
        return cq_ld128(p);
    }
};

struct CqSmem {
    static __device__ uint32_t ld16(const uint8_t *p)
    {
        return *(const unsigned short *)p;
    }
    static __device__ uint32_t ld32(const uint8_t *p)
    {
        return *(const uint32_t *)p;
    }
    static __device__ uint4 ld128(const uint8_t *p)
    {
        return *(const uint4 *)p;
    }
};

/* Two aligned halfwords at p and p + 2 as one word. */
template <class M = CqGmem> CQ_HD uint32_t cq_ld16x2(const uint8_t *p)
{
    return cq_perm(M::ld16(p), M::ld16(p + 2), 0x5410);
}

CQ_HD float4 cq_ldx4(const float *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const float4 *)p);
#else
    float4 v;
    memcpy(&v, p, 16);
    return v;
#endif
}

CQ_HD float cq_ldx(const float *p)
{
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}

CQ_HD uint32_t cq_u4(const uint4 &v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

CQ_HD int cq_i4(const int4 &v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* The 32 bits at bit sh (0..31) of the pair {hi:lo}. */
CQ_HD uint32_t cq_funnel(uint32_t lo, uint32_t hi, uint32_t sh)
{
#ifdef __CUDA_ARCH__
    return __funnelshift_r(lo, hi, sh);
#else
    return sh ? (lo >> sh) | (hi << (32 - sh)) : lo;
#endif
}

/* Bytes k of v as floats, each minus off: 2^23 + b built by PRMT, then one
 * exact subtraction. */
CQ_HD void cq_bytes(uint32_t v, float off, float (&q)[4])
{
    const float base = 8388608.0f + off;
    q[0] = cq_as_float(cq_perm(v, 0x4B000000u, 0x7440)) - base;
    q[1] = cq_as_float(cq_perm(v, 0x4B000000u, 0x7441)) - base;
    q[2] = cq_as_float(cq_perm(v, 0x4B000000u, 0x7442)) - base;
    q[3] = cq_as_float(cq_perm(v, 0x4B000000u, 0x7443)) - base;
}

/* Bit 4 of byte k = bit k of h4 (h4 < 16): the four shifted copies of h4
 * in the product do not overlap, so there are no carries. */
CQ_HD uint32_t cq_spread4(uint32_t h4)
{
    return (h4 * 0x02040810u) & 0x10101010u;
}

/* ---- type traits ---------------------------------------------------------
 * BS elements and BB bytes per block; P lanes per block; NRUN runs of 4 per
 * lane in NG scale groups (runs g*NRUN/NG .. of group g; runs 2k, 2k + 1 of
 * a group are 8 adjacent columns); ALIGN: what the loads need of block
 * addresses. cbase(p) + coff(j): the column of run j in the block. xsw(L):
 * the swizzle of line L of the shared x (see cq_xs_quad). scales(): each
 * group's d and bias, value = (byte - OFF) * d + bias (bias only when
 * HASMIN), rounded as the reference rounds. bytes(): the 4 bytes of run j.
 * FLOAT types have neither; their run() gives the values. */

/* The run layout (cbase, coff, xsw) of Q4_0, Q4_1, Q5_0, Q5_1: lane p
 * holds bytes 8p .. 8p + 7 of the block's 16 bytes of nibbles; runs 0, 1
 * are their low nibbles (columns 8p .. 8p + 7), runs 2, 3 the high ones
 * (columns 16 + 8p ..). */
struct CqLayout32 {
    static CQ_HD int cbase(int p)
    {
        return 8 * p;
    }
    static CQ_HD int coff(int j)
    {
        return (j & 1) * 4 + (j >> 1) * 16;
    }
    static CQ_HD int xsw(int L)
    {
        return (L & 1) | ((L & 2) << 1);
    }
};

/* The run layout of Q2_K and Q6_K: h = p / 4 the half of 128, c = p % 4;
 * the lane holds bytes l = 8c .. 8c + 7 of that half's 32-byte rows, which
 * are columns 128h + 32q + l for the 4 quarters q: run j = 2q + u is
 * columns 128h + 32q + 8c + 4u .. + 3, in sub-block 8h + 2q + c / 2 (group
 * q). */
struct CqLayoutK {
    static CQ_HD int cbase(int p)
    {
        return 128 * (p >> 2) + 8 * (p & 3);
    }
    static CQ_HD int coff(int j)
    {
        return 32 * (j >> 1) + 4 * (j & 1);
    }
    static CQ_HD int xsw(int L)
    {
        return (L >> 2) & 1;
    }
};

struct TQ4_0 : CqLayout32 {
    static constexpr int BS = 32, BB = 18, P = 2, NRUN = 4, NG = 1, ALIGN = 2;
    static constexpr bool HASMIN = false, FLOAT = false;
    static constexpr float OFF = 8.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t d, w0, w1;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.d = M::ld16(b);
        r.w0 = cq_ld16x2<M>(b + 2 + 8 * p);
        r.w1 = cq_ld16x2<M>(b + 6 + 8 * p);
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        d[0] = cq_h2f(r.d);
        b[0] = 0.0f;
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = (j & 1) ? r.w1 : r.w0;
        return (j >> 1) ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
    }
};

struct TQ4_1 : CqLayout32 {
    static constexpr int BS = 32, BB = 20, P = 2, NRUN = 4, NG = 1, ALIGN = 4;
    static constexpr bool HASMIN = true, FLOAT = false;
    static constexpr float OFF = 0.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t dm, w0, w1;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.dm = M::ld32(b);
        r.w0 = M::ld32(b + 4 + 8 * p);
        r.w1 = M::ld32(b + 8 + 8 * p);
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        d[0] = cq_h2f(r.dm & 0xffff);
        b[0] = cq_h2f(r.dm >> 16);
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = (j & 1) ? r.w1 : r.w0;
        return (j >> 1) ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
    }
};

struct TQ5_0 : CqLayout32 {
    static constexpr int BS = 32, BB = 22, P = 2, NRUN = 4, NG = 1, ALIGN = 2;
    static constexpr bool HASMIN = false, FLOAT = false;
    static constexpr float OFF = 16.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t d, qh, w0, w1;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.d = M::ld16(b);
        r.qh = cq_ld16x2<M>(b + 2) >> (8 * p); /* bit i: element 8p + i */
        r.w0 = cq_ld16x2<M>(b + 6 + 8 * p);
        r.w1 = cq_ld16x2<M>(b + 10 + 8 * p);
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        d[0] = cq_h2f(r.d);
        b[0] = 0.0f;
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = (j & 1) ? r.w1 : r.w0;
        const uint32_t lo = (j >> 1) ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
        return lo | cq_spread4((r.qh >> coff(j)) & 0xF);
    }
};

struct TQ5_1 : CqLayout32 {
    static constexpr int BS = 32, BB = 24, P = 2, NRUN = 4, NG = 1, ALIGN = 4;
    static constexpr bool HASMIN = true, FLOAT = false;
    static constexpr float OFF = 0.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t dm, qh, w0, w1;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.dm = M::ld32(b);
        r.qh = M::ld32(b + 4) >> (8 * p);
        r.w0 = M::ld32(b + 8 + 8 * p);
        r.w1 = M::ld32(b + 12 + 8 * p);
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        d[0] = cq_h2f(r.dm & 0xffff);
        b[0] = cq_h2f(r.dm >> 16);
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = (j & 1) ? r.w1 : r.w0;
        const uint32_t lo = (j >> 1) ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
        return lo | cq_spread4((r.qh >> coff(j)) & 0xF);
    }
};

/* The lane's 16 qs bytes start 2 bytes into a word or on one: read as 4
 * aligned words (5 when not aligned; the fifth word's last 2 bytes lie past
 * the lane's bytes, in the same 4-byte word) and funnel-shifted. */
struct TQ8_0 {
    static constexpr int BS = 32, BB = 34, P = 2, NRUN = 4, NG = 1, ALIGN = 2;
    static constexpr bool HASMIN = false, FLOAT = false;
    static constexpr float OFF = 128.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t d, sh, w[5];
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        const uint8_t *q = b + 2 + 16 * p;
        const uint8_t *a = q - ((uintptr_t)q & 3);
        r.sh = (uint32_t)((uintptr_t)q & 3) * 8;
        r.d = M::ld16(b);
#pragma unroll
        for (int i = 0; i < 4; i++) r.w[i] = M::ld32(a + 4 * i);
        r.w[4] = r.sh ? M::ld32(a + 16) : 0;
    }
    static CQ_HD int cbase(int p)
    {
        return 16 * p;
    }
    static CQ_HD int coff(int j)
    {
        return 4 * j;
    }
    static CQ_HD int xsw(int L)
    {
        return L & 3;
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        d[0] = cq_h2f(r.d);
        b[0] = 0.0f;
    }
    /* int8 v: (v ^ 0x80) read unsigned is v + 128 */
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        return cq_funnel(r.w[j], r.w[j + 1], r.sh) ^ 0x80808080u;
    }
};

struct TQ2_K : CqLayoutK {
    static constexpr int BS = 256, BB = 84, P = 8, NRUN = 8, NG = 4, ALIGN = 4;
    static constexpr bool HASMIN = true, FLOAT = false;
    static constexpr float OFF = 0.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t w0, w1, s0, s1, dm;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        const int h = p >> 2, c = p & 3;
        r.w0 = M::ld32(b + 16 + 32 * h + 8 * c);
        r.w1 = M::ld32(b + 20 + 32 * h + 8 * c);
        r.s0 = M::ld32(b + 8 * h); /* scales[8h .. 8h + 7] */
        r.s1 = M::ld32(b + 8 * h + 4);
        r.dm = M::ld32(b + 80);
    }
    /* group q's byte scales[8h + 2q + c/2]: its scale in the low nibble, its
     * min in the high one */
    static CQ_HD void scales_int(const Raw &r, int p, int (&sc)[NG], int (&mn)[NG])
    {
        const int sh = 8 * ((p & 3) >> 1);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const uint32_t v = ((q < 2 ? r.s0 : r.s1) >> (16 * (q & 1) + sh)) & 0xff;
            sc[q] = (int)(v & 0xF);
            mn[q] = (int)(v >> 4);
        }
    }
    static CQ_HD void scales(const Raw &r, int p, float (&d)[NG], float (&b)[NG])
    {
        const float dd = cq_h2f(r.dm & 0xffff), dmin = cq_h2f(r.dm >> 16);
        int sc[NG], mn[NG];
        scales_int(r, p, sc, mn);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            d[q] = cq_mul(dd, (float)sc[q]);
            b[q] = -cq_mul(dmin, (float)mn[q]);
        }
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = (j & 1) ? r.w1 : r.w0;
        return (w >> (2 * (j >> 1))) & 0x03030303u;
    }
};

/* Q3_K lanes (4 per block): c = p; the lane holds bytes l = 8c .. 8c + 7 of
 * both halves' 32-byte qs rows and of hmask: run j = 8h + 2q + u is columns
 * 128h + 32q + 8c + 4u .. + 3 (half h, quarter q), in sub-block 8h + 2q +
 * c/2 (group 4h + q); the high bit of column 128h + 32q + l is bit 4h + q
 * of hmask[l]. With 8 lanes a block (a half each) every lane loaded all 12
 * scale bytes and the hmask bytes for 32 columns; 4 share those over 64. */
struct TQ3_K {
    static constexpr int BS = 256, BB = 110, P = 4, NRUN = 16, NG = 8, ALIGN = 2;
    static constexpr bool HASMIN = false, FLOAT = false;
    static constexpr float OFF = 4.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t hm0, hm1, w[4], lo, hi, d;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.hm0 = cq_ld16x2<M>(b + 8 * p);
        r.hm1 = cq_ld16x2<M>(b + 8 * p + 4);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            r.w[2 * h] = cq_ld16x2<M>(b + 32 + 32 * h + 8 * p);
            r.w[2 * h + 1] = cq_ld16x2<M>(b + 36 + 32 * h + 8 * p);
        }
        /* byte q of lo: scales[2q + c/2] (the low nibbles of sub-blocks
         * 2q + c/2 and 8 + 2q + c/2); byte k of hi: scales[8 + 2k + c/2] */
        const uint32_t s0 = (uint32_t)(p >> 1);
        const uint32_t sel = s0 | ((s0 + 2) << 4) | ((s0 + 4) << 8) | ((s0 + 6) << 12);
        r.lo = cq_perm(cq_ld16x2<M>(b + 96), cq_ld16x2<M>(b + 100), sel);
        r.hi = cq_perm(cq_ld16x2<M>(b + 104), 0, sel & 0xffu);
        r.d = M::ld16(b + 108);
    }
    static CQ_HD int cbase(int p)
    {
        return 8 * p;
    }
    static CQ_HD int coff(int j)
    {
        return 128 * (j >> 3) + 32 * ((j >> 1) & 3) + 4 * (j & 1);
    }
    /* a lane's runs lie in the 8 lines of its block, and the 8 blocks of a
     * warp's round take distinct swizzles */
    static CQ_HD int xsw(int L)
    {
        return (L >> 3) & 7;
    }
    /* The 6-bit scales less 32 of groups g = 4h + q (sub-block s = 8h + 2q +
     * c/2): low 4 bits in nibble h of scales[2q + c/2], high 2 bits at bit
     * 2 * (s / 4) of scales[8 + s % 4]. */
    static CQ_HD void scales_int(const Raw &r, int, int (&sc)[NG])
    {
#pragma unroll
        for (int g = 0; g < NG; g++) {
            const int h = g >> 2, q = g & 3;
            const uint32_t lo = (r.lo >> (8 * q + 4 * h)) & 0xF;
            const uint32_t hi = (r.hi >> (8 * (q & 1) + 2 * (2 * h + (q >> 1)))) & 3;
            sc[g] = (int)(lo | (hi << 4)) - 32;
        }
    }
    static CQ_HD void scales(const Raw &r, int p, float (&d)[NG], float (&b)[NG])
    {
        const float dd = cq_h2f(r.d);
        int sc[NG];
        scales_int(r, p, sc);
#pragma unroll
        for (int g = 0; g < NG; g++) {
            d[g] = cq_mul(dd, (float)sc[g]);
            b[g] = 0.0f;
        }
    }
    /* value = low 2 bits + 4 * hmask bit - 4 */
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const int h = j >> 3, q = (j >> 1) & 3, u = j & 1;
        const uint32_t hm = u ? r.hm1 : r.hm0;
        const uint32_t hb = ((hm >> (4 * h + q)) & 0x01010101u) << 2;
        return ((r.w[2 * h + u] >> (2 * q)) & 0x03030303u) | hb;
    }
};

/* Q4_K lanes: g = p the 64-column group; the lane holds its 32 qs
 * bytes: runs 0..7 their low nibbles, columns 64g + 4j (sub-block 2g),
 * runs 8..15 the high nibbles, 32 columns on (sub-block 2g + 1). Scale
 * and min of sub-block s (blocks.h): s < 4: scales[s] & 63 and
 * scales[s + 4] & 63; else the low (high) nibble of scales[s + 4] and the
 * top 2 bits of scales[s - 4] (scales[s]) above it. hdr.y/z/w = scales[0..3],
 * [4..7], [8..11]: for sub-blocks 2g and 2g + 1 those are bytes 2g & 3 and
 * 2g & 3 + 1 of hdr.y and hdr.z (g < 2) or of hdr.w with hdr.y/z (g >= 2). */
/* The 6-bit scales (sc) and mins (m) of sub-blocks 2g and 2g + 1 of a
 * Q4_K/Q5_K header, one per byte in the low two bytes. */
CQ_HD void cq_k4_scale_bytes(const uint4 &hdr, int g, uint32_t &sc, uint32_t &m)
{
    const uint32_t sel = 0x4400u | (uint32_t)((2 * g) & 3) | ((uint32_t)((2 * g + 1) & 3) << 4);
    const uint32_t y = cq_perm(hdr.y, 0, sel), z = cq_perm(hdr.z, 0, sel),
                   w = cq_perm(hdr.w, 0, sel);
    const bool hi = g >= 2;
    sc = hi ? (w & 0x0F0Fu) | ((y >> 2) & 0x3030u) : y & 0x3F3Fu;
    m = hi ? ((w >> 4) & 0x0F0Fu) | ((z >> 2) & 0x3030u) : z & 0x3F3Fu;
}

/* As cq_k4_scales, in integers for the dp4a path: the scales and mins of
 * sub-blocks 2g, 2g + 1, and the header's d and dmin. */
CQ_HD void cq_k4_scales_int(const uint4 &hdr, int g, int (&sc)[2], int (&mn)[2], float &d,
                            float &dmin)
{
    uint32_t s, m;
    cq_k4_scale_bytes(hdr, g, s, m);
    sc[0] = (int)(s & 0xff);
    sc[1] = (int)(s >> 8);
    mn[0] = (int)(m & 0xff);
    mn[1] = (int)(m >> 8);
    d = cq_h2f(hdr.x & 0xffff);
    dmin = cq_h2f(hdr.x >> 16);
}

CQ_HD void cq_k4_scales(const uint4 &hdr, int g, float (&d)[2], float (&b)[2])
{
    const float dd = cq_h2f(hdr.x & 0xffff), dmin = cq_h2f(hdr.x >> 16);
    uint32_t sc, m;
    cq_k4_scale_bytes(hdr, g, sc, m);
    d[0] = cq_mul(dd, cq_as_float(0x4B000000u | (sc & 0xff)) - 8388608.0f);
    d[1] = cq_mul(dd, cq_as_float(0x4B000000u | (sc >> 8)) - 8388608.0f);
    b[0] = -cq_mul(dmin, cq_as_float(0x4B000000u | (m & 0xff)) - 8388608.0f);
    b[1] = -cq_mul(dmin, cq_as_float(0x4B000000u | (m >> 8)) - 8388608.0f);
}

/* The high nibbles are read in place, as 16 q (mask 0xF0): exact with the
 * scale d / 16, a power-of-two step (d is at least 2^-24 or zero). */
struct TQ4_K {
    static constexpr int BS = 256, BB = 144, P = 4, NRUN = 16, NG = 2, ALIGN = 16;
    static constexpr bool HASMIN = true, FLOAT = false;
    static constexpr float OFF = 0.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint4 hdr, q0, q1;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.hdr = M::ld128(b);
        r.q0 = M::ld128(b + 16 + 32 * p);
        r.q1 = M::ld128(b + 32 + 32 * p);
    }
    static CQ_HD int cbase(int p)
    {
        return 64 * p;
    }
    static CQ_HD int coff(int j)
    {
        return (j & 7) * 4 + (j >> 3) * 32;
    }
    static CQ_HD int xsw(int L)
    {
        return (L >> 1) & 7;
    }
    static CQ_HD void scales(const Raw &r, int p, float (&d)[NG], float (&b)[NG])
    {
        cq_k4_scales(r.hdr, p, d, b);
        d[1] = cq_mul(d[1], 0.0625f);
    }
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const uint32_t w = cq_u4((j & 4) ? r.q1 : r.q0, j & 3);
        return w & ((j >> 3) ? 0xF0F0F0F0u : 0x0F0F0F0Fu);
    }
};

/* Q5_K lanes (8 per block, to keep the loads in flight within registers):
 * g = p / 2 the 64-column group, hh = p % 2; the lane holds qs bytes
 * 32g + 16hh .. + 15 (runs 0..3 low nibbles, columns 64g + 16hh + 4j,
 * sub-block 2g; runs 4..7 high nibbles, 32 columns on, sub-block 2g + 1)
 * and qh bytes 16hh .. + 15: the 5th bit of column 32s + l is bit s of qh[l]. */
struct TQ5_K {
    static constexpr int BS = 256, BB = 176, P = 8, NRUN = 8, NG = 2, ALIGN = 16;
    static constexpr bool HASMIN = true, FLOAT = false;
    static constexpr float OFF = 0.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint4 hdr, qh, qs;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        r.hdr = M::ld128(b);
        r.qh = M::ld128(b + 16 + 16 * (p & 1));
        r.qs = M::ld128(b + 48 + 16 * p);
    }
    static CQ_HD int cbase(int p)
    {
        return 64 * (p >> 1) + 16 * (p & 1);
    }
    static CQ_HD int coff(int j)
    {
        return (j & 3) * 4 + (j >> 2) * 32;
    }
    static CQ_HD int xsw(int L)
    {
        return (L >> 1) & 3;
    }
    static CQ_HD void scales(const Raw &r, int p, float (&d)[NG], float (&b)[NG])
    {
        cq_k4_scales(r.hdr, p >> 1, d, b);
    }
    static CQ_HD uint32_t bytes(const Raw &r, int p, int j)
    {
        const uint32_t w = cq_u4(r.qs, j & 3);
        const uint32_t hb = cq_u4(r.qh, j & 3) >> (2 * (p >> 1));
        return (j >> 2) ? ((w >> 4) & 0x0F0F0F0Fu) | ((hb << 3) & 0x10101010u)
                        : (w & 0x0F0F0F0Fu) | ((hb << 4) & 0x10101010u);
    }
};

struct TQ6_K : CqLayoutK {
    static constexpr int BS = 256, BB = 210, P = 8, NRUN = 8, NG = 4, ALIGN = 2;
    static constexpr bool HASMIN = false, FLOAT = false;
    static constexpr float OFF = 32.0f; /* value = (byte - OFF) * d (+ bias) */
    struct Raw {
        uint32_t l0[2], l1[2], hq[2], sc, d;
    };
    template <class M = CqGmem> static CQ_HD void load(Raw &r, const uint8_t *b, int p)
    {
        const int h = p >> 2, c = p & 3;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            r.l0[u] = cq_ld16x2<M>(b + 64 * h + 8 * c + 4 * u);      /* ql, quarters 0 and 2 */
            r.l1[u] = cq_ld16x2<M>(b + 64 * h + 32 + 8 * c + 4 * u); /* ql, quarters 1 and 3 */
            r.hq[u] = cq_ld16x2<M>(b + 128 + 32 * h + 8 * c + 4 * u);
        }
        /* scales[8h + 2q + c/2] as byte q */
        const uint32_t a = cq_ld16x2<M>(b + 192 + 8 * h), bb = cq_ld16x2<M>(b + 196 + 8 * h);
        const uint32_t s0 = (uint32_t)(c >> 1);
        r.sc = cq_perm(a, bb, s0 | ((s0 + 2) << 4) | ((s0 + 4) << 8) | ((s0 + 6) << 12));
        r.d = M::ld16(b + 208);
    }
    /* the int8 scales of groups q = 0..3 */
    static CQ_HD void scales_int(const Raw &r, int (&sc)[NG])
    {
#pragma unroll
        for (int q = 0; q < 4; q++) sc[q] = (int)(int8_t)(r.sc >> (8 * q));
    }
    static CQ_HD void scales(const Raw &r, int, float (&d)[NG], float (&b)[NG])
    {
        const float dd = cq_h2f(r.d);
        int sc[NG];
        scales_int(r, sc);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            d[q] = cq_mul(dd, (float)sc[q]);
            b[q] = 0.0f;
        }
    }
    /* low 4 bits: quarter q's nibble of ql; bits 4-5: bits 2q of qh */
    static CQ_HD uint32_t bytes(const Raw &r, int, int j)
    {
        const int qq = j >> 1, u = j & 1;
        const uint32_t w = (qq & 1) ? r.l1[u] : r.l0[u];
        const uint32_t lo = qq < 2 ? w & 0x0F0F0F0Fu : (w >> 4) & 0x0F0F0F0Fu;
        const uint32_t hq = r.hq[u];
        const uint32_t hi = qq == 0 ? hq << 4 : qq == 1 ? hq << 2 : qq == 2 ? hq : hq >> 2;
        return lo | (hi & 0x30303030u);
    }
};

struct TF32 {
    static constexpr int BS = 4, BB = 16, P = 1, NRUN = 1, NG = 1, ALIGN = 16, ESIZE = 4;
    static constexpr bool HASMIN = false, FLOAT = true;
    static constexpr float OFF = 0.0f;
    struct Raw {
        uint4 v;
    };
    static CQ_HD void load(Raw &r, const uint8_t *b, int)
    {
        r.v = cq_ld128(b);
    }
    static CQ_HD int cbase(int)
    {
        return 0;
    }
    static CQ_HD int coff(int)
    {
        return 0;
    }
    static CQ_HD int xsw(int)
    {
        return 0;
    }
    static CQ_HD void scales(const Raw &, int, float (&)[NG], float (&)[NG]) {}
    static CQ_HD void run(const Raw &r, int, int, float (&q)[4])
    {
        q[0] = cq_as_float(r.v.x);
        q[1] = cq_as_float(r.v.y);
        q[2] = cq_as_float(r.v.z);
        q[3] = cq_as_float(r.v.w);
    }
    static CQ_HD float elem(const uint8_t *row, int64_t c)
    {
        return cq_as_float(cq_ld32(row + 4 * c));
    }
};

/* 16-bit float types: 8 values per 16-byte piece; Wide turns one 16-bit
 * pattern into the float (binary16 conversion, or the bf16 shift). */
template <class Wide> struct THalfBits {
    static constexpr int BS = 8, BB = 16, P = 1, NRUN = 2, NG = 1, ALIGN = 16, ESIZE = 2;
    static constexpr bool HASMIN = false, FLOAT = true;
    static constexpr float OFF = 0.0f;
    struct Raw {
        uint4 v;
    };
    static CQ_HD void load(Raw &r, const uint8_t *b, int)
    {
        r.v = cq_ld128(b);
    }
    static CQ_HD int cbase(int)
    {
        return 0;
    }
    static CQ_HD int coff(int j)
    {
        return 4 * j;
    }
    static CQ_HD int xsw(int L)
    {
        return L & 1;
    }
    static CQ_HD void scales(const Raw &, int, float (&)[NG], float (&)[NG]) {}
    static CQ_HD void run(const Raw &r, int, int j, float (&q)[4])
    {
        const uint32_t a = j ? r.v.z : r.v.x, b = j ? r.v.w : r.v.y;
        q[0] = Wide::f(a & 0xffff);
        q[1] = Wide::f(a >> 16);
        q[2] = Wide::f(b & 0xffff);
        q[3] = Wide::f(b >> 16);
    }
    static CQ_HD float elem(const uint8_t *row, int64_t c)
    {
        return Wide::f(cq_ld16(row + 2 * c));
    }
};

struct WideF16 {
    static CQ_HD float f(uint32_t h)
    {
        return cq_h2f(h);
    }
};
struct WideBF16 {
    static CQ_HD float f(uint32_t h)
    {
        return cq_as_float(h << 16);
    }
};
typedef THalfBits<WideF16> TF16;
typedef THalfBits<WideBF16> TBF16;

/* The 4 values of run j as integers minus OFF (quantized types), or the
 * values themselves (float types). */
template <class T> CQ_HD void cq_run(const typename T::Raw &r, int part, int j, float (&q)[4])
{
    if constexpr (T::FLOAT)
        T::run(r, part, j, q);
    else
        cq_bytes(T::bytes(r, part, j), T::OFF, q);
}

/* Byte k of v as a float's bit pattern: the denormal k * 2^-149, exact. */
CQ_HD float cq_den(uint32_t v, int k)
{
    return cq_as_float(cq_perm(v, 0, 0x4440u | (uint32_t)k));
}

/* ---- one element, any alignment (fallback kernels; checked too) -------- */

CQ_HD uint32_t cq_b16(const uint8_t *p)
{
    return cq_ld8(p) | (cq_ld8(p + 1) << 8);
}

CQ_HD float cq_elem(uint32_t type, const uint8_t *row, int64_t c)
{
    switch (type) {
    case CQ_F32:
        return cq_as_float(cq_b16(row + 4 * c) | (cq_b16(row + 4 * c + 2) << 16));
    case CQ_F16:
        return cq_h2f(cq_b16(row + 2 * c));
    case CQ_BF16:
        return cq_as_float(cq_b16(row + 2 * c) << 16);
    case CQ_Q4_0:
    case CQ_Q4_1:
    case CQ_Q5_0:
    case CQ_Q5_1: {
        const int bb = type == CQ_Q4_0 ? 18 : type == CQ_Q4_1 ? 20 : type == CQ_Q5_0 ? 22 : 24;
        const bool has_m = type == CQ_Q4_1 || type == CQ_Q5_1;
        const bool q5 = type == CQ_Q5_0 || type == CQ_Q5_1;
        const uint8_t *b = row + (c / 32) * bb;
        const int j = (int)(c % 32);
        const int qs_off = (has_m ? 4 : 2) + (q5 ? 4 : 0);
        int q = j < 16 ? cq_ld8(b + qs_off + j) & 0xF : cq_ld8(b + qs_off + j - 16) >> 4;
        if (q5) q |= (int)((cq_ld8(b + qs_off - 4 + j / 8) >> (j % 8)) & 1) << 4;
        const float d = cq_h2f(cq_b16(b));
        if (has_m) return cq_add(cq_mul((float)q, d), cq_h2f(cq_b16(b + 2)));
        return cq_mul((float)(q - (q5 ? 16 : 8)), d);
    }
    case CQ_Q8_0: {
        const uint8_t *b = row + (c / 32) * 34;
        return cq_mul((float)(int8_t)cq_ld8(b + 2 + c % 32), cq_h2f(cq_b16(b)));
    }
    case CQ_Q2_K: {
        const uint8_t *b = row + (c / 256) * 84;
        const int e = (int)(c % 256);
        const uint32_t sc = cq_ld8(b + e / 16);
        const float dl = cq_mul(cq_h2f(cq_b16(b + 80)), (float)(sc & 0xF));
        const float ml = cq_mul(cq_h2f(cq_b16(b + 82)), (float)(sc >> 4));
        const int q = (cq_ld8(b + 16 + (e / 128) * 32 + e % 32) >> (2 * ((e % 128) / 32))) & 3;
        return cq_add(cq_mul(dl, (float)q), -ml);
    }
    case CQ_Q3_K: {
        const uint8_t *b = row + (c / 256) * 110;
        const int e = (int)(c % 256), s = e / 16;
        const int lo = s < 8 ? cq_ld8(b + 96 + s) & 0xF : cq_ld8(b + 96 + s - 8) >> 4;
        const int hi = (cq_ld8(b + 96 + 8 + s % 4) >> (2 * (s / 4))) & 3;
        const float dl = cq_mul(cq_h2f(cq_b16(b + 108)), (float)((lo | (hi << 4)) - 32));
        const int q = (cq_ld8(b + 32 + (e / 128) * 32 + e % 32) >> (2 * ((e % 128) / 32))) & 3;
        const int hb = (cq_ld8(b + e % 32) >> (e / 32)) & 1;
        return cq_mul(dl, (float)(q - (hb ? 0 : 4)));
    }
    case CQ_Q4_K:
    case CQ_Q5_K: {
        const bool q5 = type == CQ_Q5_K;
        const uint8_t *b = row + (c / 256) * (q5 ? 176 : 144);
        const int e = (int)(c % 256), s = e / 32;
        const uint8_t *sc = b + 4;
        uint32_t scale, m;
        if (s < 4) {
            scale = cq_ld8(sc + s) & 63;
            m = cq_ld8(sc + s + 4) & 63;
        } else {
            scale = (cq_ld8(sc + s + 4) & 0xF) | ((cq_ld8(sc + s - 4) >> 6) << 4);
            m = (cq_ld8(sc + s + 4) >> 4) | ((cq_ld8(sc + s) >> 6) << 4);
        }
        const float d1 = cq_mul(cq_h2f(cq_b16(b)), (float)scale);
        const float m1 = cq_mul(cq_h2f(cq_b16(b + 2)), (float)m);
        const uint32_t byte = cq_ld8(b + (q5 ? 48 : 16) + (e / 64) * 32 + e % 32);
        int q = (int)((e % 64) < 32 ? byte & 0xF : byte >> 4);
        if (q5) q += ((cq_ld8(b + 16 + e % 32) >> (e / 32)) & 1) ? 16 : 0;
        return cq_add(cq_mul(d1, (float)q), -m1);
    }
    case CQ_Q6_K: {
        const uint8_t *b = row + (c / 256) * 210;
        const int e = (int)(c % 256);
        const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        const uint32_t ql = cq_ld8(b + 64 * half + l + 32 * (quarter & 1));
        const int lo = (int)(quarter < 2 ? ql & 0xF : ql >> 4);
        const int hi = (int)(cq_ld8(b + 128 + 32 * half + l) >> (2 * quarter)) & 3;
        const float dl = cq_mul(cq_h2f(cq_b16(b + 208)), (float)(int8_t)cq_ld8(b + 192 + e / 16));
        return cq_mul(dl, (float)((lo | (hi << 4)) - 32));
    }
    default:
        return 0.0f;
    }
}

/* ---- item arithmetic ------------------------------------------------------ */

/* The matvec with x from global memory (x too large for shared memory; and
 * the host check of the arithmetic): whether it sums a scale group as
 * d * sum(q x) (+ bias * sum(x)) rather than weight by weight: per element
 * that costs NT FMAs (+ NT / R adds for sum(x)) against 1 + NT, per group
 * R * NT (or 2 R NT) more. */
template <class T, int NT, int R> struct CqFactor {
    static constexpr int GE = 4 * T::NRUN / T::NG;
    static constexpr bool value =
        !T::FLOAT && (T::HASMIN ? NT * GE + 2 * R * R * NT < R * GE : R * NT < GE);
};

/* acc[r][t] += sum over the item's columns of W[r][col] * x[t][col] for
 * the R rows' items raw[r]; xp = x + the item's first column. */
template <class T, int NT, int R>
CQ_HD void cq_mv_item(const typename T::Raw (&raw)[R], int part, const float *xp, int64_t n_cols,
                      float (&acc)[R][NT])
{
    constexpr int RPG = T::NRUN / T::NG;
    constexpr bool FACT = CqFactor<T, NT, R>::value;
    float d[R][T::NG], bias[R][T::NG];
#pragma unroll
    for (int r = 0; r < R; r++) T::scales(raw[r], part, d[r], bias[r]);
#pragma unroll
    for (int g = 0; g < T::NG; g++) {
        float s[R][NT], xs[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            xs[t] = 0.0f;
#pragma unroll
            for (int r = 0; r < R; r++) s[r][t] = 0.0f;
        }
#pragma unroll
        for (int jj = 0; jj < RPG; jj++) {
            const int j = g * RPG + jj;
            float4 xv[NT];
#pragma unroll
            for (int t = 0; t < NT; t++) xv[t] = cq_ldx4(xp + T::coff(j) + t * n_cols);
            if (FACT && T::HASMIN) {
#pragma unroll
                for (int t = 0; t < NT; t++) xs[t] += (xv[t].x + xv[t].y) + (xv[t].z + xv[t].w);
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float q[4];
                cq_run<T>(raw[r], part, j, q);
                if (FACT) {
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        float v = s[r][t];
                        v = fmaf(q[0], xv[t].x, v);
                        v = fmaf(q[1], xv[t].y, v);
                        v = fmaf(q[2], xv[t].z, v);
                        v = fmaf(q[3], xv[t].w, v);
                        s[r][t] = v;
                    }
                } else {
                    if (!T::FLOAT) {
#pragma unroll
                        for (int k = 0; k < 4; k++)
                            q[k] = T::HASMIN ? fmaf(q[k], d[r][g], bias[r][g]) : q[k] * d[r][g];
                    }
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        float v = acc[r][t];
                        v = fmaf(q[0], xv[t].x, v);
                        v = fmaf(q[1], xv[t].y, v);
                        v = fmaf(q[2], xv[t].z, v);
                        v = fmaf(q[3], xv[t].w, v);
                        acc[r][t] = v;
                    }
                }
            }
        }
        if (FACT) {
#pragma unroll
            for (int r = 0; r < R; r++) {
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    acc[r][t] = fmaf(d[r][g], s[r][t], acc[r][t]);
                    if (T::HASMIN) acc[r][t] = fmaf(bias[r][g], xs[t], acc[r][t]);
                }
            }
        }
    }
}

/* The item's values, exactly as the reference dequantizer gives them, in
 * v[j][k]: column cbase(part) + coff(j) + k of the block. */
template <class T>
CQ_HD void cq_dq_item(const typename T::Raw &raw, int part, float (&v)[T::NRUN][4])
{
    constexpr int RPG = T::NRUN / T::NG;
    float d[T::NG], bias[T::NG];
    T::scales(raw, part, d, bias);
#pragma unroll
    for (int j = 0; j < T::NRUN; j++) {
        cq_run<T>(raw, part, j, v[j]);
        if (!T::FLOAT) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float p = cq_mul(v[j][k], d[j / RPG]);
                v[j][k] = T::HASMIN ? cq_add(p, bias[j / RPG]) : p;
            }
        }
    }
}

/* ---- kernels ---------------------------------------------------------------- */

#define CQ_THREADS 256
#define CQ_WARPS   (CQ_THREADS / 32)
/* Most shared memory for the staged x (all tokens, with its sums), below the
 * device's opt-in limit; a larger x is read from global memory through L1,
 * at more L1 traffic (lanes of a block read scattered 16-byte pieces). */
#define CQ_XS_MAX_BYTES (200 * 1024)

template <int P> struct CqLog2 {
    static constexpr int value = P == 1 ? 0 : P == 2 ? 1 : P == 4 ? 2 : 3;
};

/* Rows per warp, and CTAs per SM to fit (registers), by token count. */
template <class T, int NT> struct CqShape {
    static constexpr int R = 2;
    /* registers of the two steps' loads in flight; CTAs per SM asked of ptxas */
    static constexpr int RAWREGS = (int)sizeof(typename T::Raw) * R * 2 / 4;
    static constexpr int MINB = NT <= 2 && RAWREGS <= 40 ? 3 : 2;
};

/* x in shared memory: token t's row at t * xstride floats (xstride a
 * multiple of 32, one 128-byte line per 32 columns); within line L the
 * 16-byte quad k of a row sits at quad k ^ T::xsw(L). Each type's xsw
 * spreads the quads its lanes read at once over all 8 bank groups (lanes
 * of one block otherwise share a few), and depends only on line bits that
 * a warp's step does not change, so a lane's swizzle is fixed. */
CQ_HD int cq_xs_quad(int q, int sw)
{
    return (q & ~7) | ((q & 7) ^ sw);
}

extern __shared__ float4 cq_xs[];

/* The shared-memory address of p (a pointer into shared memory). */
__device__ __forceinline__ unsigned cq_smem_addr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cq_cp_async16(void *smem, const void *gmem)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(cq_smem_addr(smem)), "l"(gmem)
                 : "memory");
}

/* The matvec's shared-memory x, for quantized types: x * 2^CQ_XSHIFT, so that
 * a weight byte used as the denormal byte * 2^-149 (cq_den: one PRMT, no
 * conversion) times x is a normal float, byte * x * 2^(CQ_XSHIFT - 149),
 * rounded once as byte * x would be (for |byte * x| above 2^-41; below, the
 * absolute error stays under 2^-64). The scale d * 2^(149 - CQ_XSHIFT) takes
 * it back. |x| must stay below 2^64. After the rows: the plain sums of each
 * 8 columns, for the offset and min terms: sum((byte - OFF) d + bias) x =
 * d sum(byte x) + (bias - OFF d) sum(x). */
#define CQ_XSHIFT 64
#define CQ_XSCALE 18446744073709551616.0f       /* 2^64 */
#define CQ_DSCALE 38685626227668133590597632.0f /* 2^85 = 2^(149 - 64) */

/* Group sums (d sum(byte x) per group) pay when a group has more than 2 NT
 * elements: they save one FMA per weight and cost 2 NT per group and row. */
template <class T, int NT> struct CqGroupSums {
    static constexpr bool value = !T::FLOAT && 2 * NT < 4 * (T::NRUN / T::NG);
};

/* One step's item of a warp's R rows: acc[r][t] += its products. XS: x from
 * shared memory at byte offset xo of cq_xs (swizzled, scaled as above), col
 * the item's first column (for the sums); else from global memory at xg. */
template <class T, int NT, int R, bool XS>
__device__ __forceinline__ void cq_mv_step(const typename T::Raw (&raw)[R], int part, uint32_t xo,
                                           uint32_t col, const float *xg, int64_t xstride,
                                           float (&acc)[R][NT])
{
    if constexpr (XS) {
        constexpr int RPG = T::NRUN / T::NG;
        constexpr bool GS = CqGroupSums<T, NT>::value;
        const float *sums = (const float *)cq_xs + NT * xstride;
        float dd[R][T::NG], bb[R][T::NG];
        if constexpr (!T::FLOAT) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                float d[T::NG], bias[T::NG];
                T::scales(raw[r], part, d, bias);
#pragma unroll
                for (int g = 0; g < T::NG; g++) {
                    const float b0 = T::HASMIN ? fmaf(-T::OFF, d[g], bias[g]) : -T::OFF * d[g];
                    dd[r][g] = d[g] * CQ_DSCALE;
                    bb[r][g] = GS ? b0 : b0 * (1.0f / CQ_XSCALE);
                }
            }
        }
#pragma unroll
        for (int g = 0; g < T::NG; g++) {
            float s[R][NT][2], xs[NT]; /* two chains per sum: even and odd runs */
            if (GS) {
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    float v = 0.0f;
                    if (RPG == 8) { /* Q4_K, Q5_K: 4 segments in a row, 16-byte aligned */
                        const float4 f = *(
                            const float4 *)&sums[t * (xstride / 8) + (col + T::coff(g * RPG)) / 8];
                        v = (f.x + f.y) + (f.z + f.w);
                    } else {
#pragma unroll
                        for (int jj = 0; jj < RPG; jj += 2) /* runs pair into 8-column segments */
                            v += sums[t * (xstride / 8) + (col + T::coff(g * RPG + jj)) / 8];
                    }
                    xs[t] = v;
#pragma unroll
                    for (int r = 0; r < R; r++) s[r][t][0] = s[r][t][1] = 0.0f;
                }
            }
#pragma unroll
            for (int jj = 0; jj < RPG; jj++) {
                const int j = g * RPG + jj;
                const int qo = T::coff(j) / 4;
                const uint32_t xr = (xo + (qo & ~7) * 16) ^ ((qo & 7) * 16);
                float4 xv[NT];
#pragma unroll
                for (int t = 0; t < NT; t++)
                    xv[t] =
                        *(const float4 *)((const char *)cq_xs + xr + (uint32_t)(t * xstride * 4));
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float q[4];
                    if constexpr (T::FLOAT) {
                        T::run(raw[r], part, j, q);
                    } else {
                        const uint32_t v = T::bytes(raw[r], part, j);
#pragma unroll
                        for (int k = 0; k < 4; k++) q[k] = cq_den(v, k);
                        if (!GS) {
#pragma unroll
                            for (int k = 0; k < 4; k++) q[k] = fmaf(q[k], dd[r][g], bb[r][g]);
                        }
                    }
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        float v = GS ? s[r][t][jj & 1] : acc[r][t];
                        v = fmaf(q[0], xv[t].x, v);
                        v = fmaf(q[1], xv[t].y, v);
                        v = fmaf(q[2], xv[t].z, v);
                        v = fmaf(q[3], xv[t].w, v);
                        if (GS)
                            s[r][t][jj & 1] = v;
                        else
                            acc[r][t] = v;
                    }
                }
            }
            if (GS) {
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        acc[r][t] = fmaf(dd[r][g], s[r][t][0] + s[r][t][1], acc[r][t]);
                        if (T::HASMIN || T::OFF != 0.0f)
                            acc[r][t] = fmaf(bb[r][g], xs[t], acc[r][t]);
                    }
            }
        }
    } else {
        cq_mv_item<T, NT, R>(raw, part, xg, xstride, acc);
    }
}

/* The rows of a matvec launch: virtual rows 0 .. n_rows - 1 of one to three
 * weights, and what is done with their sums (enum cuq_epilogue). STORE and
 * ADD: the weights' rows one after another, virtual row v in weight i when
 * end[i - 1] <= v < end[i] (end[-1] = 0; unused weights end where the last
 * one does), with w[i] and y[i] moved back by end[i - 1] rows so that row v
 * is at w[i] + v * row_bytes and its outputs at y[i] + t * ldy[i] + v.
 * SWIGLU: virtual row 2j is W_0's row j and 2j + 1 W_1's (w as given), so
 * that both rows of an output are in one warp; n_rows is twice W_0's. */
struct CqRows {
    /* STORE, ADD, AXPY: weight i's row v at w[i] + v * row_bytes for virtual
     * rows end[i - 1] <= v < end[i] (w[i] and y[i], b[i] offset back by
     * end[i - 1]); SWIGLU: pair p's gate and up at w[2p], w[2p + 1], virtual
     * row 2(p * pr + r) its gate's row r and the next one its up's */
    const uint8_t *w[CUQ_MULTI_MAX];
    float *y[CUQ_MULTI_MAX / 2]; /* SWIGLU: pair p's output y[p] */
    const float *b[3];           /* STORE: biases or NULL */
    int64_t end[3];
    int64_t ldy[3];
    int64_t pr; /* SWIGLU: rows of each weight */
    int np;     /* SWIGLU: pairs */
    int ep;
    float alpha; /* CUQ_EP_AXPY */
    /* RMSNorm folded into the prologue (cuq_norm), when nx is not NULL: x is
     * rmsnorm(nx) * nw, which CTA 0 also stores at ny (the kernel's x) */
    const float *nx, *nw;
    float *ny;
    float eps;
    /* SWIGLU, DIAG: pair (weight) p >= p0's bytes at w[.] + ids[p - p0] *
     * estride when ids is not NULL (device memory: experts picked on the
     * device) */
    const int32_t *ids;
    int64_t estride;
    int p0;
    /* CUQ_EP_MOE (cuq_multi's moe_*): mo's rows of end[0] floats */
    const float *mo, *malpha, *mgate;
    const int32_t *mids;
    int mk;
    bool add_early; /* ADD in the staged kernel: old outputs loaded at a tile's start */
};

/* The norm's factor from the CTA's warps' sums of squares (ss, double, in
 * warp order): 1 / sqrt(mean + eps), rounded to float once. */
__device__ __forceinline__ float cq_norm_scale(const double *ss, int64_t n, float eps)
{
    double t = 0.0;
#pragma unroll
    for (int w = 0; w < CQ_WARPS; w++) t += ss[w];
    return (float)(1.0 / sqrt(t / (double)n + (double)eps));
}

/* The prologue of a product with a folded RMSNorm (one token): x =
 * rmsnorm(rs.nx) * rs.nw into shared memory, quad q (columns 4q .. 4q + 3)
 * at dst[quad(q)], with k_rms_norm's arithmetic (the squares summed in
 * double, the scale rounded to float once, x * scale * w); CTA 0 also
 * stores x at rs.ny. x arrives by cp.async (ASYNC; else by plain loads)
 * while the first weights of the norm load. The whole CTA calls it; it ends
 * with a barrier. n: a multiple
 * of 4, nx and nw 16-byte aligned. */
template <bool ASYNC = true, class Q>
__device__ void cq_norm_stage(const CqRows &rs, int64_t n, float4 *dst, Q quad)
{
    constexpr int K = 4; /* norm weight quads per thread loaded ahead */
    __shared__ double part[CQ_WARPS];
    __shared__ float scale;
    const int nq = (int)(n / 4);
    if (ASYNC) {
        for (int q = threadIdx.x; q < nq; q += CQ_THREADS)
            cq_cp_async16(&dst[quad(q)], rs.nx + 4 * q);
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    float4 wv[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int q = threadIdx.x + k * CQ_THREADS;
        if (q < nq) wv[k] = __ldg((const float4 *)(rs.nw + 4 * q));
    }
    if (ASYNC) {
        asm volatile("cp.async.wait_all;" ::: "memory");
    } else { /* x to shared memory by plain loads: K quads a thread at once */
        for (int q0 = threadIdx.x; q0 < nq; q0 += K * CQ_THREADS) {
            float4 v[K];
#pragma unroll
            for (int k = 0; k < K; k++)
                if (q0 + k * CQ_THREADS < nq)
                    v[k] = *(const float4 *)(rs.nx + 4 * (q0 + k * CQ_THREADS));
#pragma unroll
            for (int k = 0; k < K; k++)
                if (q0 + k * CQ_THREADS < nq) dst[quad(q0 + k * CQ_THREADS)] = v[k];
        }
    }
    __syncthreads();
    double ss = 0.0;
    for (int q = threadIdx.x; q < nq; q += CQ_THREADS) {
        const float4 v = dst[quad(q)];
        ss += (double)v.x * v.x;
        ss += (double)v.y * v.y;
        ss += (double)v.z * v.z;
        ss += (double)v.w * v.w;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) scale = cq_norm_scale(part, n, rs.eps);
    __syncthreads();
    const float sc = scale;
    auto put = [&](int q, float4 w) {
        float4 *p = &dst[quad(q)];
        const float4 a = *p;
        const float4 v =
            make_float4(a.x * sc * w.x, a.y * sc * w.y, a.z * sc * w.z, a.w * sc * w.w);
        *p = v;
        if (blockIdx.x == 0) *(float4 *)(rs.ny + 4 * q) = v;
    };
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int q = threadIdx.x + k * CQ_THREADS;
        if (q < nq) put(q, wv[k]);
    }
    for (int q = threadIdx.x + K * CQ_THREADS; q < nq; q += CQ_THREADS)
        put(q, __ldg((const float4 *)(rs.nw + 4 * q)));
    __syncthreads();
}

/* SWIGLU's pair or DIAG's weight of virtual row v, and the row of its weights. */
__device__ __forceinline__ int cq_pair(const CqRows &rs, int64_t v, int64_t &row)
{
    row = rs.ep == CUQ_EP_SWIGLU ? v >> 1 : v;
    if (rs.np == 1) return 0;
    /* 32-bit: a weight's rows are far fewer than 2^32 (a 64-bit division is a long routine) */
    const uint32_t p = (uint32_t)row / (uint32_t)rs.pr;
    row -= (int64_t)p * rs.pr;
    return (int)p;
}

/* SWIGLU's pair or DIAG's weight of virtual row v, and in off where its row
 * starts in that weight's bytes: the row's offset, plus its expert's where
 * the pair's weights are indexed by expert ids. */
__device__ __forceinline__ int cq_pair_off(const CqRows &rs, int64_t v, size_t row_bytes,
                                           int64_t &off)
{
    int64_t row;
    const int p = cq_pair(rs, v, row);
    off = row * (int64_t)row_bytes;
    if (rs.ids && p >= rs.p0) off += (int64_t)rs.ids[p - rs.p0] * rs.estride;
    return p;
}

/* Which of a STORE/ADD/AXPY/MOE launch's weights (0..2) virtual row v is in. */
__device__ __forceinline__ int cq_rows_part(const CqRows &rs, int64_t v)
{
    return (v >= rs.end[0]) + (v >= rs.end[1]);
}

/* The bytes of virtual row v. */
__device__ __forceinline__ const uint8_t *cq_rows_ptr(const CqRows &rs, int64_t v, size_t row_bytes)
{
    if (rs.ep == CUQ_EP_SWIGLU || rs.ep == CUQ_EP_DIAG) {
        int64_t off;
        const int p = cq_pair_off(rs, v, row_bytes, off);
        /* an indexed load of the kernel's parameters (__grid_constant__: no copy of them) */
        return rs.w[rs.ep == CUQ_EP_SWIGLU ? 2 * p + (int)(v & 1) : p] + off;
    }
    const int i = cq_rows_part(rs, v);
    return (i == 0 ? rs.w[0] : i == 1 ? rs.w[1] : rs.w[2]) + v * row_bytes;
}

/* The bytes of virtual row v, or of the last row where v is past n_rows (a
 * tile's rows past the end read the last one's bytes). */
__device__ __forceinline__ const uint8_t *cq_rows_ptr_last(const CqRows &rs, int64_t v,
                                                           int64_t n_rows, size_t row_bytes)
{
    return cq_rows_ptr(rs, v < n_rows ? v : n_rows - 1, row_bytes);
}

/* The bytes of virtual rows r0 .. r0 + R - 1 (past n_rows: the last row's).
 * SWIGLU with r0 and R even: rows r0 + 2k and the next are one pair's gate
 * and up at one row, so the pair, its expert's id and the row are found
 * once for both (n_rows is even: rows past it take the last pair's). */
template <int R>
__device__ __forceinline__ void cq_rows_ptrs(const CqRows &rs, int64_t r0, int64_t n_rows,
                                             size_t row_bytes, const uint8_t *(&p)[R])
{
    if constexpr (R % 2 == 0) {
        if (rs.ep == CUQ_EP_SWIGLU) {
#pragma unroll
            for (int k = 0; k < R; k += 2) {
                int64_t off;
                const int q =
                    cq_pair_off(rs, r0 + k < n_rows ? r0 + k : n_rows - 2, row_bytes, off);
                p[k] = rs.w[2 * q] + off;
                p[k + 1] = rs.w[2 * q + 1] + off;
            }
            return;
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        p[r] = cq_rows_ptr_last(rs, r0 + r, n_rows, row_bytes);
}

/* CUQ_EP_MOE's output of one row, as k_moe_token_combine sums it: *y plus
 * slot j's o[j * ld] times alpha[j] for the k slots in ascending order of
 * their experts (ties: the earlier slot), then sigmoid(*gate) * s. Not
 * inlined: the products' kernels keep their registers for the other
 * epilogues. */
__device__ __noinline__ void cq_moe_put(float *y, float s, const float *o, int64_t ld,
                                        const int32_t *ids, const float *alpha, const float *gate,
                                        int k)
{
    float a = *y;
    int pe = -1, pj = -1; /* the last slot added: its expert and index */
    for (int r = 0; r < k; r++) {
        int be = 0, bj = -1; /* the next slot in cuda_moe.cuh's order */
        for (int j = 0; j < k; j++) {
            const int e = ids[j];
            if (moe_slot_before(pe, pj, e, j) && (bj < 0 || moe_slot_before(e, j, be, bj))) {
                be = e;
                bj = j;
            }
        }
        a = moe_share_add(a, alpha[bj], o[(int64_t)bj * ld]);
        pe = be;
        pj = bj;
    }
    *y = a + moe_shared_factor(*gate) * s;
}

/* Where the output of virtual row v for token t goes (STORE, ADD, AXPY,
 * MOE); i: cq_rows_part(rs, v). */
__device__ __forceinline__ float *cq_rows_yp(const CqRows &rs, int i, int64_t v, int t)
{
    return (i == 0   ? rs.y[0]
            : i == 1 ? rs.y[1]
                     : rs.y[2]) +
           t * (i == 0   ? rs.ldy[0]
                : i == 1 ? rs.ldy[1]
                         : rs.ldy[2]) +
           v;
}

/* The output of virtual row v for token t, from s, its sum, and (SWIGLU) u,
 * the sum of row v + 1: SWIGLU's even rows store silu(s) * u as
 * cuk_silu_mul computes it, its odd rows nothing; CUQ_EP_MOE by cq_moe_put.
 * ypre: ADD's old output loaded already, yold. */
__device__ __forceinline__ void cq_rows_put(const CqRows &rs, int64_t v, int t, float s, float u,
                                            bool ypre = false, float yold = 0.0f)
{
    if (rs.ep == CUQ_EP_SWIGLU || rs.ep == CUQ_EP_DIAG) {
        if (rs.ep == CUQ_EP_SWIGLU && (v & 1)) return;
        int64_t row;
        const int p = cq_pair(rs, v, row);
        if (rs.ep == CUQ_EP_DIAG && t != p) return; /* weight p's product with x row p only */
        float *y = rs.y[p];
        if (rs.ep == CUQ_EP_DIAG)
            y[row] = s;
        else
            y[t * rs.ldy[0] + row] = s / (1.0f + expf(-s)) * u;
        return;
    }
    const int i = cq_rows_part(rs, v);
    float *y = cq_rows_yp(rs, i, v, t);
    if (rs.ep == CUQ_EP_STORE) {
        const float *b = i == 0 ? rs.b[0] : i == 1 ? rs.b[1] : rs.b[2];
        *y = b ? s + b[v] : s;
        return;
    }
    if (rs.ep == CUQ_EP_MOE) {
        cq_moe_put(y, s, rs.mo + v, rs.end[0], rs.mids, rs.malpha, rs.mgate, rs.mk);
        return;
    }
    if (rs.ep == CUQ_EP_ADD)
        *y = (ypre ? yold : *y) + s;
    else
        *y = *y + rs.alpha * s;
}

/* Each of acc's sums over the warp's lanes, in every lane. */
template <int NT, int R> __device__ __forceinline__ void cq_lane_sums(float (&acc)[R][NT])
{
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][t] = v;
        }
}

/* The end of a tile of the matvec kernels: each warp's sums over its lanes,
 * then (KS > 1) over the KS warps that split the tile's columns (through
 * red, [CQ_WARPS][R * NT] shared), and the outputs of virtual rows r0 + r
 * in range. Every thread of the CTA calls it (it has barriers when KS > 1). */
template <int NT, int R>
__device__ __forceinline__ void cq_mv_store(float (&acc)[R][NT], float (*red)[R * NT], int lane,
                                            int warp, int kidx, int G, int KS, const CqRows &rs,
                                            int64_t r0, int64_t n_rows, bool ypre = false,
                                            float yold = 0.0f)
{
    static_assert(R % 2 == 0, "SWIGLU's row pairs in one warp: r0 is a multiple of R");
    cq_lane_sums<NT, R>(acc);
    /* every lane holds the sums; lane r * NT + t stores (r, t), SWIGLU's
     * with (r + 1, t), the sum of lane (r + 1) * NT + t */
    const int r = lane / NT, t = lane % NT;
    float v = 0.0f;
    if (KS == 1) {
#pragma unroll
        for (int rr = 0; rr < R; rr++)
#pragma unroll
            for (int tt = 0; tt < NT; tt++)
                if (lane == rr * NT + tt) v = acc[rr][tt];
    } else {
#pragma unroll
        for (int rr = 0; rr < R; rr++)
#pragma unroll
            for (int tt = 0; tt < NT; tt++)
                if (lane == rr * NT + tt) red[warp][rr * NT + tt] = acc[rr][tt];
        __syncthreads();
        if (kidx == 0 && lane < R * NT) {
            v = red[warp][lane];
            for (int k = 1; k < KS; k++) v += red[warp + k * G][lane];
        }
    }
    if (kidx == 0) { /* all of the warp */
        const float u = rs.ep == CUQ_EP_SWIGLU ? __shfl_down_sync(0xffffffffu, v, NT) : 0.0f;
        if (lane < R * NT && r0 + r < n_rows) cq_rows_put(rs, r0 + r, t, v, u, ypre, yold);
    }
    if (KS > 1) __syncthreads();
}

/* Persistent CTAs; tile = G = 8 / KS row groups of R rows; warp w is group
 * w % G and takes steps w / G, w / G + KS, ... of 32 items (32 / P blocks)
 * of its rows. XS: x staged in shared memory first (cp.async), the first
 * step's weights already on their way. The loads of the next step are
 * issued before the products of this one. n_rows: virtual rows of rs.
 * NORM (with XS): rs's RMSNorm folded in (x is rs.ny, written here). */
template <class T, int NT, int R, bool XS, bool NORM>
__global__ void __launch_bounds__(CQ_THREADS, CqShape<T, NT>::MINB)
    cq_matvec_kernel(const __grid_constant__ CqRows rs, size_t row_bytes, int64_t n_rows,
                     int64_t n_cols, const float *__restrict__ x, int ks_log2)
{
    constexpr int LP = CqLog2<T::P>::value;
    constexpr int SB = 32 >> LP; /* blocks per step */
    __shared__ float red[CQ_WARPS][R * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int G = CQ_WARPS >> ks_log2, KS = 1 << ks_log2;
    const int grp = warp & (G - 1), kidx = warp >> (3 - ks_log2);
    const int part = lane & (T::P - 1), lblk = lane >> LP;
    const int64_t nb = n_cols / T::BS;
    const int64_t tile_rows = (int64_t)G * R;
    const int64_t n_tiles = (n_rows + tile_rows - 1) / tile_rows;
    const int64_t xstride = XS ? (n_cols + 31) & ~(int64_t)31 : n_cols;
    const size_t ustep =
        (size_t)KS * SB * T::BB;       /* weight bytes from one step of a warp to its next */
    const int ucols = KS * SB * T::BS; /* columns likewise */
    const int64_t b0 = (int64_t)kidx * SB + lblk; /* the lane's block at its first step */

    typename T::Raw raw[R];
    const uint8_t *wp[R];
    int64_t tile = blockIdx.x;
    auto tile_start =
        [&](int64_t tl) { /* row pointers of tile tl; its first step's loads */
                          const int64_t r0 = tl * tile_rows + (int64_t)grp * R;
#pragma unroll
                          for (int r = 0; r < R; r++)
                              wp[r] = cq_rows_ptr_last(rs, r0 + r, n_rows, row_bytes) +
                                      b0 * T::BB;
                          if (b0 < nb) {
#pragma unroll
                              for (int r = 0; r < R; r++) T::load(raw[r], wp[r], part);
                          }
        };
    /* the trace's times, thread 0's, in shared memory (no registers held) */
    __shared__ uint64_t kt[3];
    const bool traced = cut_on();
    if (traced && threadIdx.x == 0) kt[0] = cut_now();
    pdl_trigger();
    if (rs.ids) pdl_wait();               /* the rows' experts come from the kernels before */
    if (tile < n_tiles) tile_start(tile); /* weights: before the previous kernel is done */
    pdl_wait();
    if (traced && threadIdx.x == 0) kt[1] = cut_now();

    /* this lane's x at its first step; a step moves it by a multiple of 32
     * columns, which leaves its swizzle alone */
    const int c0 = lblk * T::BS + T::cbase(part) + kidx * SB * T::BS;
    uint32_t xo0 = 0;
    if (XS) {
        const int nq = (int)(n_cols / 4);
        if constexpr (NORM) {
            static_assert(NT == 1, "a folded norm is one token's");
            cq_norm_stage(rs, n_cols, cq_xs, [](int q) { return cq_xs_quad(q, T::xsw(q >> 3)); });
        } else {
            for (int i = threadIdx.x; i < NT * nq; i += CQ_THREADS) {
                const int t = i / nq, q = i - t * nq;
                cq_cp_async16(&cq_xs[t * (xstride / 4) + cq_xs_quad(q, T::xsw(q >> 3))],
                              x + (int64_t)t * n_cols + 4 * q);
            }
            asm volatile("cp.async.commit_group;\ncp.async.wait_all;" ::: "memory");
            __syncthreads();
        }
        if (!T::FLOAT) { /* the 8-column sums, and x scaled */
            const int ns = (int)(n_cols / 8), xq = (int)(xstride / 4);
            float *sums = (float *)cq_xs + NT * xstride;
            for (int i = threadIdx.x; i < NT * ns; i += CQ_THREADS) {
                const int t = i / ns, sg = i - t * ns;
                float4 *p0 = cq_xs + t * xq + cq_xs_quad(2 * sg, T::xsw(sg >> 2));
                float4 *p1 = cq_xs + t * xq + cq_xs_quad(2 * sg + 1, T::xsw(sg >> 2));
                const float4 a = *p0, b = *p1;
                sums[t * (xstride / 8) + sg] =
                    ((a.x + a.y) + (a.z + a.w)) + ((b.x + b.y) + (b.z + b.w));
                *p0 =
                    make_float4(a.x * CQ_XSCALE, a.y * CQ_XSCALE, a.z * CQ_XSCALE, a.w * CQ_XSCALE);
                *p1 =
                    make_float4(b.x * CQ_XSCALE, b.y * CQ_XSCALE, b.z * CQ_XSCALE, b.w * CQ_XSCALE);
            }
            __syncthreads();
        }
        xo0 = 16 * cq_xs_quad(c0 / 4, T::xsw(c0 / 32));
    }
    if (traced && threadIdx.x == 0) kt[2] = cut_now();

    for (; tile < n_tiles; tile += gridDim.x) {
        const int64_t r0 = tile * tile_rows + (int64_t)grp * R;
        float acc[R][NT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

        uint32_t xo = xo0, col = (uint32_t)c0;
        const float *xg = x + c0;
        for (int64_t b = b0; b - lblk < nb; b += KS * SB) {
            /* next step's loads first */
            typename T::Raw nxt[R];
            const bool ok = b < nb, ok_next = b + KS * SB < nb;
#pragma unroll
            for (int r = 0; r < R; r++) {
                wp[r] += ustep;
                if (ok_next) T::load(nxt[r], wp[r], part);
            }
            if (ok) cq_mv_step<T, NT, R, XS>(raw, part, xo, col, xg, xstride, acc);
#pragma unroll
            for (int r = 0; r < R; r++) raw[r] = nxt[r];
            xo += (uint32_t)ucols * 4;
            col += (uint32_t)ucols;
            xg += ucols;
        }
        if (T::FLOAT && kidx == 0) { /* columns past the last 16-byte chunk */
            const int64_t c = nb * T::BS + lane;
            if (c < n_cols) {
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const uint8_t *row = cq_rows_ptr_last(rs, r0 + r, n_rows, row_bytes);
                    float wv = 0.0f;
                    if constexpr (T::FLOAT) wv = T::elem(row, c);
#pragma unroll
                    for (int t = 0; t < NT; t++)
                        acc[r][t] = fmaf(wv, cq_ldx(x + t * n_cols + c), acc[r][t]);
                }
            }
        }
        if (tile + gridDim.x < n_tiles)
            tile_start(tile + gridDim.x); /* in flight during the sums */

        cq_mv_store<NT, R>(acc, red, lane, warp, kidx, G, KS, rs, r0, n_rows);
    }
    if (traced) {
        __syncthreads();
        if (threadIdx.x == 0) {
            const uint64_t t[4] = {kt[0], kt[1], kt[2], cut_now()};
            cut_put(CUK_TRACE_PRODUCT, (uint32_t)n_rows, (uint32_t)n_cols, t);
        }
    }
}

/* ---- integer matvec (dp4a) ------------------------------------------------
 * For the quantized types the matvec works as the CPU backend does: x
 * quantized to the type's vec_dot type (Q8_K for the K-quants, Q8_0 for the
 * others; Q4_1's and Q5_1's Q8_1 has Q8_0's integers and scale) with the
 * reference quantizer's arithmetic, products summed in integers by dp4a, so
 * each block's integer sums are the CPU's and only the float sums around
 * them differ. Each CTA quantizes x into shared memory
 * itself (a warp per 256 values), the first step's weights already on their
 * way; then the tile loop of cq_matvec_kernel.
 *
 * Shared layout, per token (stride xts bytes, a multiple of 128): the int8 x
 * in item order: item i = block * P + part holds the ITEMB = 4 NRUN bytes
 * of its runs in run order, so a lane reads its x as whole 16-byte chunks,
 * chunk k at k ^ sw(i) (sw spreads a warp's reads over all 32 banks). After
 * all tokens' x: per item NSUM integers (the x sums of its scale groups,
 * times -OFF where there is an offset; Q4_1's and Q5_1's: see CqI8Off32),
 * then one float per block: the x block's scale. */

/* dp4a of unsigned bytes (Q4_K's high nibbles in place, up to 240) and signed ones. */
__device__ __forceinline__ int cq_dp4a_us(uint32_t a, int b, int c)
{
    int r;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

/* Integer-path traits: Q8K (x type Q8_K, else Q8_0), NSUM, and for x's
 * 8-column piece at byte off of a block (the prologue's unit of work) the
 * part holding it and the byte within that part's item (where the piece's
 * 8 bytes are contiguous); sums() stores the group sums of a lane's piece
 * when ok (all lanes call it: it shuffles; a lane past the end of x has no
 * block). step() adds the R rows' products. */
template <class T> struct CqI8 {
    static constexpr bool ON = false;
};

/* Q4_K: item p = columns 64p .. 64p + 63 in order (chunk k: q0 low, q1 low,
 * q0 high, q1 high nibbles); group sums of sub-blocks 2p, 2p + 1. */
template <> struct CqI8<TQ4_K> {
    typedef TQ4_K T;
    static constexpr bool ON = true;
    static constexpr bool Q8K = true;
    static constexpr int NSUM = 2;
    static __device__ int part_of(int off, int &win)
    {
        win = off & 63;
        return off >> 6;
    }
    static __device__ void sums(int *s, int lane, int s8, bool ok)
    {
        int v = s8 + __shfl_xor_sync(0xffffffffu, s8, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        if (ok && (lane & 3) == 0) s[lane >> 2] = v;
    }
    template <int NT, int R>
    static __device__ void step(const T::Raw (&raw)[R], int part, const uint8_t *xi, uint32_t sw,
                                int xts, const int *si, int sts, const float *dy, int dts,
                                float (&acc)[R][NT])
    {
        int sc[R][2], mn[R][2];
        float dd[R], dm[R];
#pragma unroll
        for (int r = 0; r < R; r++) cq_k4_scales_int(raw[r].hdr, part, sc[r], mn[r], dd[r], dm[r]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int4 xc[4];
#pragma unroll
            for (int k = 0; k < 4; k++) xc[k] = *(const int4 *)(xi + t * xts + 16 * (k ^ sw));
            const int2 gs = *(const int2 *)(si + t * sts);
            const float d8 = dy[t * dts];
#pragma unroll
            for (int r = 0; r < R; r++) {
                int lo = 0, hi = 0;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const uint4 &q = k ? raw[r].q1 : raw[r].q0;
                    lo = __dp4a((int)(q.x & 0x0F0F0F0Fu), xc[k].x, lo);
                    lo = __dp4a((int)(q.y & 0x0F0F0F0Fu), xc[k].y, lo);
                    lo = __dp4a((int)(q.z & 0x0F0F0F0Fu), xc[k].z, lo);
                    lo = __dp4a((int)(q.w & 0x0F0F0F0Fu), xc[k].w, lo);
                    hi = cq_dp4a_us(q.x & 0xF0F0F0F0u, xc[2 + k].x, hi);
                    hi = cq_dp4a_us(q.y & 0xF0F0F0F0u, xc[2 + k].y, hi);
                    hi = cq_dp4a_us(q.z & 0xF0F0F0F0u, xc[2 + k].z, hi);
                    hi = cq_dp4a_us(q.w & 0xF0F0F0F0u, xc[2 + k].w, hi);
                }
                /* hi is 16 times the high nibbles' sum: the shift is exact */
                const int isum = sc[r][0] * lo + sc[r][1] * (hi >> 4);
                const int msum = mn[r][0] * gs.x + mn[r][1] * gs.y;
                acc[r][t] = fmaf(d8, fmaf(dd[r], (float)isum, -dm[r] * (float)msum), acc[r][t]);
            }
        }
    }
};

/* Q5_K: item p (g = p / 2, hh = p % 2): runs 0..3 columns 64g + 16hh ..,
 * runs 4..7 32 columns on; group sums of those two 16-column pieces. */
template <> struct CqI8<TQ5_K> {
    typedef TQ5_K T;
    static constexpr bool ON = true;
    static constexpr bool Q8K = true;
    static constexpr int NSUM = 2;
    static __device__ int part_of(int off, int &win)
    {
        const int w = off & 63; /* within the 64-column group */
        win = 16 * (w >> 5) + (w & 8);
        return 2 * (off >> 6) + ((w >> 4) & 1);
    }
    static __device__ void sums(int *s, int lane, int s8, bool ok)
    {
        const int v = s8 + __shfl_xor_sync(0xffffffffu, s8, 1);
        const int w = lane & 7;
        if (ok && (lane & 1) == 0) s[2 * (2 * (lane >> 3) + ((w >> 1) & 1)) + (w >> 2)] = v;
    }
    template <int NT, int R>
    static __device__ void step(const T::Raw (&raw)[R], int part, const uint8_t *xi, uint32_t sw,
                                int xts, const int *si, int sts, const float *dy, int dts,
                                float (&acc)[R][NT])
    {
        int sc[R][2], mn[R][2];
        float dd[R], dm[R];
        const int g = part >> 1;
#pragma unroll
        for (int r = 0; r < R; r++) cq_k4_scales_int(raw[r].hdr, g, sc[r], mn[r], dd[r], dm[r]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int4 xc[2];
#pragma unroll
            for (int k = 0; k < 2; k++) xc[k] = *(const int4 *)(xi + t * xts + 16 * (k ^ sw));
            const int2 gs = *(const int2 *)(si + t * sts);
            const float d8 = dy[t * dts];
#pragma unroll
            for (int r = 0; r < R; r++) {
                int lo = 0, hi = 0;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    lo = __dp4a((int)T::bytes(raw[r], part, j), cq_i4(xc[0], j), lo);
                    hi = __dp4a((int)T::bytes(raw[r], part, 4 + j), cq_i4(xc[1], j), hi);
                }
                const int isum = sc[r][0] * lo + sc[r][1] * hi;
                const int msum = mn[r][0] * gs.x + mn[r][1] * gs.y;
                acc[r][t] = fmaf(d8, fmaf(dd[r], (float)isum, -dm[r] * (float)msum), acc[r][t]);
            }
        }
    }
};

/* Q6_K, Q2_K (CqLayoutK) and Q3_K: an item holds HL halves of 128 columns,
 * one (8 lanes a block, item p: half p / 4, c = p % 4) or both (Q3_K, 4
 * lanes: c = p); its run 8k + 2q + u, k its k-th half h, is columns 128h +
 * 32q + 8c + 4u .., group 4k + q. One group per 8 columns, its sum stored
 * times S::SUMK (Q6_K -32 and Q3_K -4: the values' offsets; Q2_K 1, for its
 * mins). S::scales() gives a lane's 4 HL groups' integer scales (and Q2_K's
 * mins: S::MINS) and the block's d (and dmin). */
template <class TT, class S> struct CqI8K {
    typedef TT T;
    static constexpr bool ON = true;
    static constexpr bool Q8K = true;
    static constexpr int HL = 8 / T::P;
    static constexpr int NSUM = 4 * HL;
    /* x's 8 columns at off are lane l = off / 8's: h = l / 16, q = l / 4 % 4,
     * c = l % 4 */
    static __device__ int part_of(int off, int &win)
    {
        const int l = off >> 3, h = l >> 4, q = (l >> 2) & 3;
        win = 8 * q + (HL == 2 ? 32 * h : 0);
        return HL == 2 ? (l & 3) : 4 * h + (l & 3);
    }
    static __device__ void sums(int *s, int lane, int s8, bool ok)
    {
        const int h = lane >> 4, q = (lane >> 2) & 3, c = lane & 3;
        if (ok) s[HL == 2 ? 8 * c + 4 * h + q : 4 * (4 * h + c) + q] = S::SUMK * s8;
    }
    template <int NT, int R>
    static __device__ void step(const typename T::Raw (&raw)[R], int part, const uint8_t *xi,
                                uint32_t sw, int xts, const int *si, int sts, const float *dy,
                                int dts, float (&acc)[R][NT])
    {
        float dd[R], dm[R];
        int sc[R][NSUM], mn[R][NSUM];
#pragma unroll
        for (int r = 0; r < R; r++) S::scales(raw[r], part, sc[r], mn[r], dd[r], dm[r]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int4 xc[2 * HL], gs[HL];
#pragma unroll
            for (int k = 0; k < 2 * HL; k++) xc[k] = *(const int4 *)(xi + t * xts + 16 * (k ^ sw));
#pragma unroll
            for (int h = 0; h < HL; h++) gs[h] = *(const int4 *)(si + t * sts + 4 * h);
            const float d8 = dy[t * dts];
#pragma unroll
            for (int r = 0; r < R; r++) {
                int tot = 0, msum = 0;
#pragma unroll
                for (int h = 0; h < HL; h++)
#pragma unroll
                    for (int q = 0; q < 4; q++) {
                        const int4 &xv = xc[2 * h + (q >> 1)];
                        const int g = cq_i4(gs[h], q);
                        const int j = 8 * h + 2 * q;
                        int v = S::MINS ? 0 : g;
                        v = __dp4a((int)T::bytes(raw[r], part, j), (q & 1) ? xv.z : xv.x, v);
                        v = __dp4a((int)T::bytes(raw[r], part, j + 1), (q & 1) ? xv.w : xv.y, v);
                        tot += sc[r][4 * h + q] * v;
                        if constexpr (S::MINS) msum += mn[r][4 * h + q] * g;
                    }
                if constexpr (S::MINS)
                    acc[r][t] = fmaf(d8, fmaf(dd[r], (float)tot, -dm[r] * (float)msum), acc[r][t]);
                else
                    acc[r][t] = fmaf(d8, dd[r] * (float)tot, acc[r][t]);
            }
        }
    }
};

template <> struct CqI8<TQ6_K> : CqI8K<TQ6_K, CqI8<TQ6_K>> {
    static constexpr int SUMK = -32;
    static constexpr bool MINS = false;
    static __device__ void scales(const TQ6_K::Raw &r, int, int (&sc)[4], int (&)[4], float &d,
                                  float &)
    {
        d = cq_h2f(r.d);
        TQ6_K::scales_int(r, sc);
    }
};

/* Q3_K: the 6-bit scales less 32. */
template <> struct CqI8<TQ3_K> : CqI8K<TQ3_K, CqI8<TQ3_K>> {
    static constexpr int SUMK = -4;
    static constexpr bool MINS = false;
    static __device__ void scales(const TQ3_K::Raw &r, int p, int (&sc)[8], int (&)[8], float &d,
                                  float &)
    {
        d = cq_h2f(r.d);
        TQ3_K::scales_int(r, p, sc);
    }
};

/* Q2_K: its 4-bit scales and mins. */
template <> struct CqI8<TQ2_K> : CqI8K<TQ2_K, CqI8<TQ2_K>> {
    static constexpr int SUMK = 1;
    static constexpr bool MINS = true;
    static __device__ void scales(const TQ2_K::Raw &r, int p, int (&sc)[4], int (&mn)[4],
                                  float &d, float &dmin)
    {
        d = cq_h2f(r.dm & 0xffff);
        dmin = cq_h2f(r.dm >> 16);
        TQ2_K::scales_int(r, p, sc, mn);
    }
};

/* Q8_0: item p = columns 16p .. 16p + 15; no offset, no sums. */
template <> struct CqI8<TQ8_0> {
    typedef TQ8_0 T;
    static constexpr bool ON = true;
    static constexpr bool Q8K = false;
    static constexpr int NSUM = 0;
    static __device__ int part_of(int off, int &win)
    {
        win = off & 15;
        return off >> 4;
    }
    static __device__ void sums(int *, int, int, bool) {}
    template <int NT, int R>
    static __device__ void step(const T::Raw (&raw)[R], int, const uint8_t *xi, uint32_t, int xts,
                                const int *, int, const float *dy, int dts, float (&acc)[R][NT])
    {
        int w[R][4];
        float dd[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            dd[r] = cq_h2f(raw[r].d);
#pragma unroll
            for (int j = 0; j < 4; j++)
                w[r][j] = (int)cq_funnel(raw[r].w[j], raw[r].w[j + 1], raw[r].sh);
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int4 xv = *(const int4 *)(xi + t * xts);
            const float d8 = dy[t * dts];
#pragma unroll
            for (int r = 0; r < R; r++) {
                int v = __dp4a(w[r][0], xv.x, 0);
                v = __dp4a(w[r][1], xv.y, v);
                v = __dp4a(w[r][2], xv.z, v);
                v = __dp4a(w[r][3], xv.w, v);
                acc[r][t] = fmaf((float)v, dd[r] * d8, acc[r][t]);
            }
        }
    }
};

/* Q4_0, Q5_0 (OFFS 8 and 16), Q4_1 and Q5_1 (T::HASMIN, OFFS 0): item p =
 * columns 8p .. 8p + 7 (low nibbles) and 16 + 8p .. (high; Q5_0 and Q5_1:
 * each byte's fifth bit from qh); its sum stored times -OFFS. For the min's
 * term, the CPU's Q8_1 x (Q8_0's integers and scale) carries s, the block's
 * sum times its unrounded scale in binary16: item 0 holds s's float bits,
 * item 1 zero, and the min is multiplied by s as the CPU multiplies it. */
template <class TT, int OFFS> struct CqI8Off32 {
    typedef TT T;
    static constexpr bool ON = true;
    static constexpr bool Q8K = false;
    static constexpr int NSUM = 1;
    static __device__ int part_of(int off, int &win)
    {
        win = (off >> 1) & 8;
        return (off >> 3) & 1;
    }
    /* dr: the x block's unrounded scale (unused without a min). With a min,
     * item 0 holds the bits of the block's x sum times dr rounded to
     * binary16 (Q8_1's s), item 1 zero. */
    static __device__ void sums(int *s, int lane, int s8, bool ok, float dr)
    {
        const int v = s8 + __shfl_xor_sync(0xffffffffu, s8, 2);
        if constexpr (T::HASMIN) {
            const int blk = v + __shfl_xor_sync(0xffffffffu, v, 1);
            if (ok && (lane & 2) == 0)
                s[lane & 1] =
                    (lane & 1) ? 0 : __float_as_int(cq_h2f(cq_f2h(__fmul_rn((float)blk, dr))));
        } else if (ok && (lane & 2) == 0) {
            s[lane & 1] = -OFFS * v;
        }
    }
    template <int NT, int R>
    static __device__ void step(const typename T::Raw (&raw)[R], int part, const uint8_t *xi,
                                uint32_t, int xts, const int *si, int sts, const float *dy, int dts,
                                float (&acc)[R][NT])
    {
        uint32_t q[R][4];
        float dd[R][1], mm[R][1];
#pragma unroll
        for (int r = 0; r < R; r++) {
            T::scales(raw[r], part, dd[r], mm[r]);
#pragma unroll
            for (int j = 0; j < 4; j++) q[r][j] = T::bytes(raw[r], part, j);
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int4 xv = *(const int4 *)(xi + t * xts);
            const int s = si[t * sts];
            const float d8 = dy[t * dts];
#pragma unroll
            for (int r = 0; r < R; r++) {
                int v = __dp4a((int)q[r][0], xv.x, T::HASMIN ? 0 : s);
                v = __dp4a((int)q[r][1], xv.y, v);
                v = __dp4a((int)q[r][2], xv.z, v);
                v = __dp4a((int)q[r][3], xv.w, v);
                if constexpr (T::HASMIN)
                    acc[r][t] =
                        fmaf(mm[r][0], __int_as_float(s), fmaf(d8 * dd[r][0], (float)v, acc[r][t]));
                else
                    acc[r][t] = fmaf((float)v, dd[r][0] * d8, acc[r][t]);
            }
        }
    }
};
template <> struct CqI8<TQ4_0> : CqI8Off32<TQ4_0, 8> {};
template <> struct CqI8<TQ5_0> : CqI8Off32<TQ5_0, 16> {};
template <> struct CqI8<TQ4_1> : CqI8Off32<TQ4_1, 0> {};
template <> struct CqI8<TQ5_1> : CqI8Off32<TQ5_1, 0> {};

/* Shared bytes of the integer path's x for NT tokens of n_cols. */
CQ_HD int64_t cq_i8_xts(int64_t n_cols)
{
    return (n_cols + 127) & ~(int64_t)127;
}

template <class T> CQ_HD int64_t cq_i8_smem(int64_t n_cols, int nt)
{
    const int64_t nb = n_cols / T::BS;
    return nt * (cq_i8_xts(n_cols) + nb * (T::P * CqI8<T>::NSUM * 4 + 4));
}

/* With a folded norm (one token): where its staged F32 x starts, after the
 * integer layout; n_cols floats. */
template <class T> CQ_HD int64_t cq_i8_norm_off(int64_t n_cols)
{
    return (cq_i8_smem<T>(n_cols, 1) + 15) & ~(int64_t)15;
}

/* The chunk swizzle of item i: the items of 128 bytes (8 lanes' 16-byte
 * reads) take distinct chunks. */
template <class T> __device__ __forceinline__ uint32_t cq_i8_sw(int64_t i)
{
    constexpr int ITEMB = 4 * T::NRUN;
    return (uint32_t)(i / (128 / ITEMB)) & (ITEMB / 16 - 1);
}

/* U Q8_K blocks (256 values each: a warp's, lane l's f[u] at 8l) at once,
 * their dependent chains side by side: block u's integers q[u] of lane l's
 * values and its d[u] (quant_ref_from_float_q8_K): the signed value of
 * largest magnitude (the first of equals) max, iscale = -127 / max, q =
 * min(127, round-half-even(iscale * x)), d = 1 / iscale. */
template <int U>
__device__ __forceinline__ void cq_q8k_units(const float (&f)[U][8], int lane, int (&q)[U][8],
                                             float (&d)[U])
{
    float am[U], mx[U];
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 800
    int bl[U];
#pragma unroll
    for (int u = 0; u < U; u++) bl[u] = lane; /* equals: the lower lane is the earlier column */
#endif
#pragma unroll
    for (int u = 0; u < U; u++) {
        am[u] = mx[u] = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float a = fabsf(f[u][k]);
            if (a > am[u]) {
                am[u] = a;
                mx[u] = f[u][k];
            }
        }
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    /* the warp's largest am (>= 0 and not NaN: its bits order as the
     * values), then mx of the lowest lane that holds it */
#pragma unroll
    for (int u = 0; u < U; u++) {
        const unsigned bits = __float_as_uint(am[u]);
        const unsigned top = __reduce_max_sync(0xffffffffu, bits);
        const int src = __ffs(__ballot_sync(0xffffffffu, bits == top)) - 1;
        mx[u] = __shfl_sync(0xffffffffu, mx[u], src);
        am[u] = __uint_as_float(top);
    }
#else
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float oam = __shfl_xor_sync(0xffffffffu, am[u], o);
            const float omx = __shfl_xor_sync(0xffffffffu, mx[u], o);
            const int obl = __shfl_xor_sync(0xffffffffu, bl[u], o);
            if (oam > am[u] || (oam == am[u] && obl < bl[u])) {
                am[u] = oam;
                mx[u] = omx;
                bl[u] = obl;
            }
        }
#endif
#pragma unroll
    for (int u = 0; u < U; u++) {
        const float iscale = am[u] != 0.0f ? __fdiv_rn(-127.0f, mx[u]) : 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int r = __float2int_rn(__fmul_rn(iscale, f[u][k]));
            q[u][k] = r < 127 ? r : 127;
        }
        d[u] = am[u] != 0.0f ? __fdiv_rn(1.0f, iscale) : 0.0f;
    }
}

/* U Q8_0 pieces of 32 values (4 lanes' 8, lane l's f[u]) at once
 * (ref_quantize_q8_block): d = amax / 127, id = 1 / d (0 for d = 0), q =
 * roundf(x * id) (out of range: 0, as ref_trunc and the int8 store), its
 * scale the binary16 d. */
template <int U>
__device__ __forceinline__ void cq_q80_units(const float (&f)[U][8], int (&q)[U][8], float (&d)[U],
                                             float (&dr)[U])
{
    float am[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        am[u] = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) am[u] = fmaxf(am[u], fabsf(f[u][k]));
    }
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1)
#pragma unroll
        for (int u = 0; u < U; u++) am[u] = fmaxf(am[u], __shfl_xor_sync(0xffffffffu, am[u], o));
#pragma unroll
    for (int u = 0; u < U; u++) {
        const float dq = __fdiv_rn(am[u], 127.0f);
        const float id = dq != 0.0f ? __fdiv_rn(1.0f, dq) : 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float r = roundf(__fmul_rn(f[u][k], id));
            q[u][k] = r >= -2147483648.0f && r < 2147483648.0f ? (int)(int8_t)(int)r : 0;
        }
        d[u] = cq_h2f(cq_f2h(dq));
        dr[u] = dq;
    }
}

/* A lane's unit of 8 quantized values at column off of block b of one token
 * into that token's rows of the layout above: the integers q into row xr,
 * the block's d (its first lane) at *dy, the lane's sum into the block's sums
 * sb (I::sums); ok: the unit lies inside the row (the sums take every lane). */
template <class T>
__device__ __forceinline__ void cq_i8_unit_store(uint8_t *xr, int b, int off, const int (&q)[8],
                                                 float d, float dr, int *sb, float *dy, int lane,
                                                 bool ok)
{
    typedef CqI8<T> I;
    int s8 = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) s8 += q[k];
    int win;
    const int64_t item = (int64_t)b * T::P + I::part_of(off, win);
    if (ok) {
        const uint32_t lo =
            (q[0] & 0xff) | (q[1] & 0xff) << 8 | (q[2] & 0xff) << 16 | (uint32_t)q[3] << 24;
        const uint32_t hi =
            (q[4] & 0xff) | (q[5] & 0xff) << 8 | (q[6] & 0xff) << 16 | (uint32_t)q[7] << 24;
        const int chunk = (win >> 4) ^ (int)cq_i8_sw<T>(item);
        *(uint2 *)(xr + item * (4 * T::NRUN) + 16 * chunk + (win & 15)) = make_uint2(lo, hi);
        if (off == 0) *dy = d;
    }
    if constexpr (I::NSUM > 0) {
        if constexpr (I::Q8K)
            I::sums(sb, lane, s8, ok);
        else
            I::sums(sb, lane, s8, ok, dr); /* Q8_0's x, whose unrounded scale Q8_1's s takes */
    }
}

/* Quantize the NT rows of x (global, F32) into shared memory as above: a
 * warp per 256 values, lane l its 8 values at 8l, U units at once (their
 * loads, then their arithmetic side by side: cq_q8k_units, or cq_q80_units
 * for Q8_0 x, whose scale is the binary16 d), in 32-bit index arithmetic
 * (a 64-bit division is a call that keeps the units' chains apart). NORM:
 * x is in shared memory (cq_norm_stage's). */
template <class T, int NT, bool NORM>
__device__ void cq_i8_quantize(const float *__restrict__ x, int64_t n_cols, uint8_t *xs)
{
    typedef CqI8<T> I;
    constexpr int U = 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nb = (int)(n_cols / T::BS), ncol = (int)n_cols;
    const int xts = (int)cq_i8_xts(n_cols);
    int *sums = (int *)(xs + NT * xts);
    float *dys = (float *)(sums + NT * nb * T::P * I::NSUM);
    const int n = NT * ncol, units = (n + 255) / 256;
    for (int u0 = warp; u0 < units; u0 += U * CQ_WARPS) {
        float f[U][8];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int e = (u0 + u * CQ_WARPS) * 256 + 8 * lane;
            float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), c = a;
            if (e < n) {
                if (NORM) { /* x in shared memory */
                    a = *(const float4 *)(x + e);
                    c = *(const float4 *)(x + e + 4);
                } else {
                    a = __ldg((const float4 *)(x + e));
                    c = __ldg((const float4 *)(x + e + 4));
                }
            }
            f[u][0] = a.x, f[u][1] = a.y, f[u][2] = a.z, f[u][3] = a.w;
            f[u][4] = c.x, f[u][5] = c.y, f[u][6] = c.z, f[u][7] = c.w;
        }
        int q[U][8];
        float d[U], dr[U];
        if constexpr (I::Q8K)
            cq_q8k_units<U>(f, lane, q, d);
        else
            cq_q80_units<U>(f, q, d, dr);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (u0 + u * CQ_WARPS >= units) break; /* warp-uniform */
            const int e = (u0 + u * CQ_WARPS) * 256 + 8 * lane;
            const int gb = e / T::BS; /* block over all tokens */
            const int t = gb / nb, b = gb - t * nb;
            cq_i8_unit_store<T>(xs + t * xts, b, e - gb * T::BS, q[u], d[u], I::Q8K ? 0.0f : dr[u],
                                sums + gb * T::P * I::NSUM, dys + gb, lane, e < n);
        }
    }
}

/* The folded RMSNorm's prologue without its own pass, for x of Q8_K
 * blocks (one token): x * w quantized as cq_i8_quantize quantizes rmsnorm(x)
 * * w (a Q8_K block's integers do not depend on a common factor: iscale =
 * -127 / max scales with it; only d does), the squares of x summed in double
 * on the way, each warp's sum at ss[warp]. The caller's barrier, then
 * cq_norm_scale, give the norm's factor, by which the products are
 * multiplied at their end (d = 1 / iscale of x * w, not of the normed x).
 * Loads: x and w of the next units issued before the arithmetic. */
template <class T>
__device__ void cq_i8_quantize_normed(const CqRows &rs, int64_t n_cols, uint8_t *xs, double *ss)
{
    typedef CqI8<T> I;
    static_assert(I::Q8K, "a common factor leaves Q8_K's integers as they are, not Q8_0's");
    constexpr int U = 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nb = (int)(n_cols / T::BS), n = (int)n_cols;
    const int xts = (int)cq_i8_xts(n_cols);
    int *sums = (int *)(xs + xts);
    float *dys = (float *)(sums + nb * T::P * I::NSUM);
    const int units = (n + 255) / 256;
    double acc = 0.0;
    for (int u0 = warp; u0 < units; u0 += U * CQ_WARPS) {
        float4 v[U][2], wv[U][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int e = (u0 + u * CQ_WARPS) * 256 + 8 * lane;
            if (e < n) {
                v[u][0] = __ldg((const float4 *)(rs.nx + e));
                v[u][1] = __ldg((const float4 *)(rs.nx + e + 4));
                wv[u][0] = __ldg((const float4 *)(rs.nw + e));
                wv[u][1] = __ldg((const float4 *)(rs.nw + e + 4));
            } else {
                v[u][0] = v[u][1] = wv[u][0] = wv[u][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
        }
        float f[U][8];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float xv[8] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w,
                                 v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};
            const float ww[8] = {wv[u][0].x, wv[u][0].y, wv[u][0].z, wv[u][0].w,
                                 wv[u][1].x, wv[u][1].y, wv[u][1].z, wv[u][1].w};
#pragma unroll
            for (int k = 0; k < 8; k++) {
                acc += (double)xv[k] * xv[k];
                f[u][k] = xv[k] * ww[k];
            }
        }
        int q[U][8];
        float d[U];
        cq_q8k_units<U>(f, lane, q, d);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (u0 + u * CQ_WARPS >= units) break; /* warp-uniform */
            const int e = (u0 + u * CQ_WARPS) * 256 + 8 * lane;
            const int b = e / T::BS;
            cq_i8_unit_store<T>(xs, b, e - b * T::BS, q[u], d[u], 0.0f, sums + b * T::P * I::NSUM,
                                dys + b, lane, e < n);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) ss[warp] = acc;
}

/* The normed x, rmsnorm(x) * w with cq_norm_stage's arithmetic, stored at
 * rs.ny by n_cta CTAs between them (a share each; this one cta), for the
 * kernels after. */
__device__ __forceinline__ void cq_norm_store(const CqRows &rs, int64_t n, float sc, int64_t cta,
                                              int64_t n_cta)
{
    const int64_t nq = n / 4;
    for (int64_t q = cta * CQ_THREADS + threadIdx.x; q < nq; q += n_cta * CQ_THREADS) {
        const float4 a = __ldg((const float4 *)(rs.nx + 4 * q));
        const float4 w = __ldg((const float4 *)(rs.nw + 4 * q));
        *(float4 *)(rs.ny + 4 * q) =
            make_float4(a.x * sc * w.x, a.y * sc * w.y, a.z * sc * w.z, a.w * sc * w.w);
    }
}

/* CTAs per SM asked of ptxas for cq_matvec_i8_kernel: 3 (80 registers) for
 * one token where the two steps' loads fit without spills, else 2. Q4_K and
 * Q5_K (48 bytes per lane and row) spill at 80, and so does Q6_K (36 bytes;
 * Q3_K, 36, is kept at 2 with it):
 * ncu on an H100 counted 32 k local-memory requests in its 4096 x 14336
 * product (39.5 us) and 349 k in a 128256-row head. At 2 CTAs that product
 * took 35.0 us against 40.1 and decode of llama-3-8b-shaped Q4_K_M went from
 * 1030.5 to 1060.6 tok/s (8 layers), 312.8 to 323.4 (32 layers). */
template <class T, int NT> struct CqI8Blocks {
    static constexpr int value =
        NT == 1 && sizeof(typename T::Raw) <= 36 && !std::is_same<T, TQ6_K>::value &&
                !std::is_same<T, TQ3_K>::value
            ? 3
            : 2;
};

/* One tile of cq_matvec_i8_kernel and cq_group_i8_kernel: acc (zeroed
 * first) the products of the warp's R rows over its steps from block b0
 * (the lane's; bstep blocks a step, the rows' pointers wp ustep bytes),
 * raw holding the first step's weights, the next step's loaded before this
 * one's products. */
template <class T, int NT, int R>
__device__ __forceinline__ void cq_i8_tile(typename T::Raw (&raw)[R], const uint8_t *(&wp)[R],
                                           int64_t b0, int lblk, int64_t nb, int bstep,
                                           size_t ustep, int part, const uint8_t *xs, uint32_t sw,
                                           int xts, const int *sums, int sts, const float *dys,
                                           int dts, float (&acc)[R][NT])
{
    typedef CqI8<T> I;
    constexpr int ITEMB = 4 * T::NRUN;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    for (int64_t b = b0; b - lblk < nb; b += bstep) {
        typename T::Raw nxt[R];
        const bool ok = b < nb, ok_next = b + bstep < nb;
#pragma unroll
        for (int r = 0; r < R; r++) {
            wp[r] += ustep;
            if (ok_next) T::load(nxt[r], wp[r], part);
        }
        if (ok) {
            const int64_t it = b * T::P + part;
            I::template step<NT, R>(raw, part, xs + it * ITEMB, sw, xts, sums + it * I::NSUM, sts,
                                    dys + b, dts, acc);
        }
#pragma unroll
        for (int r = 0; r < R; r++) raw[r] = nxt[r];
    }
}

/* As cq_matvec_kernel, with x quantized into shared memory (see above).
 * NORM: rs's RMSNorm folded in (x is rs.ny, written here). */
template <class T, int NT, int R, bool NORM>
__global__ void __launch_bounds__(CQ_THREADS, CqI8Blocks<T, NT>::value)
    cq_matvec_i8_kernel(const __grid_constant__ CqRows rs, size_t row_bytes, int64_t n_rows,
                        int64_t n_cols, const float *__restrict__ x, int ks_log2)
{
    typedef CqI8<T> I;
    constexpr int LP = CqLog2<T::P>::value;
    constexpr int SB = 32 >> LP; /* blocks per step */
    __shared__ float red[CQ_WARPS][R * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int G = CQ_WARPS >> ks_log2, KS = 1 << ks_log2;
    const int grp = warp & (G - 1), kidx = warp >> (3 - ks_log2);
    const int part = lane & (T::P - 1), lblk = lane >> LP;
    const int64_t nb = n_cols / T::BS;
    const int64_t tile_rows = (int64_t)G * R;
    const int64_t n_tiles = (n_rows + tile_rows - 1) / tile_rows;
    const size_t ustep = (size_t)KS * SB * T::BB;
    const int64_t b0 = (int64_t)kidx * SB + lblk;

    typename T::Raw raw[R];
    const uint8_t *wp[R];
    int64_t tile = blockIdx.x;
    auto tile_start = [&](int64_t tl) {
        const int64_t r0 = tl * tile_rows + (int64_t)grp * R;
#pragma unroll
        for (int r = 0; r < R; r++)
            wp[r] = cq_rows_ptr_last(rs, r0 + r, n_rows, row_bytes) + b0 * T::BB;
        if (b0 < nb) {
#pragma unroll
            for (int r = 0; r < R; r++) T::load(raw[r], wp[r], part);
        }
    };
    pdl_trigger();
    if (rs.ids) pdl_wait();               /* the rows' experts come from the kernels before */
    if (tile < n_tiles) tile_start(tile); /* weights: before the previous kernel is done */
    pdl_wait();

    uint8_t *xs = (uint8_t *)cq_xs;
    if constexpr (NORM) { /* the normed x as floats after the integer layout first */
        static_assert(NT == 1, "a folded norm is one token's");
        float4 *xf = (float4 *)(xs + cq_i8_norm_off<T>(n_cols));
        cq_norm_stage(rs, n_cols, xf, [](int q) { return q; });
        cq_i8_quantize<T, NT, true>((const float *)xf, n_cols, xs);
    } else {
        cq_i8_quantize<T, NT, false>(x, n_cols, xs);
    }
    __syncthreads();

    const int xts = (int)cq_i8_xts(n_cols);
    const int sts = (int)(nb * T::P * I::NSUM), dts = (int)nb;
    const int *sums = (const int *)(xs + NT * xts);
    const float *dys = (const float *)(sums + NT * sts);
    /* a step moves the lane's item by KS * 32: its swizzle stays */
    const uint32_t sw = cq_i8_sw<T>(b0 * T::P + part);

    for (; tile < n_tiles; tile += gridDim.x) {
        const int64_t r0 = tile * tile_rows + (int64_t)grp * R;
        float acc[R][NT];
        cq_i8_tile<T, NT, R>(raw, wp, b0, lblk, nb, KS * SB, ustep, part, xs, sw, xts,
                             sums, sts, dys, dts, acc);
        if (tile + gridDim.x < n_tiles) tile_start(tile + gridDim.x);

        cq_mv_store<NT, R>(acc, red, lane, warp, kidx, G, KS, rs, r0, n_rows);
    }
}

/* ---- staged one-token integer matvec --------------------------------------
 * cq_matvec_i8_kernel holds each warp's next step in registers: one step of
 * R rows in flight per warp, its 16-byte loads spread over a block's parts
 * (a lane reads its part and the block's header, so a warp's load touches
 * about twice the bytes it uses). Here each warp keeps a ring of CQ_STAGES
 * steps in shared memory: a step's blocks of a row are contiguous bytes,
 * copied from the 16-byte boundary at or before them to the one at or after
 * their end (the copy keeps each byte's address modulo 16, so the types'
 * loads read it as they read global memory; the bytes around stay within
 * the 16-byte pieces that hold the row's, so no page is touched that the
 * row's bytes are not on). From compute capability 9.0 lane 0 copies each
 * row's step with one bulk copy that completes on the slot's mbarrier; before
 * it, the warp's lanes copy 16-byte pieces with cp.async, one commit group a
 * step. A step: wait for its slot, read the lanes' blocks from it
 * (T::load<CqSmem>), queue the copy of the step CQ_STAGES - 1 on into the
 * slot the previous step read (its reads are done: the previous products
 * used them), then the products (CqI8's). One token. The folded norm loads x
 * with plain loads (cq_norm_stage's cp.async would wait for the weights'
 * copies queued before it). Three slots (two steps ahead): with the copies
 * evict-first, against four on an H100 (decode medians of four rounds) the
 * qwen1.5-moe shape 1289.8 -> 1324.5 tok/s, the Mixtral shape 1350.5 ->
 * 1375.7, the llama-3-8b shape the same (8 layers 1208.0 -> 1209.8, 32
 * layers 364.6 -> 364.9 in three); five lost (qwen1.5-moe 1284 -> 1254, two). */
#define CQ_STAGES 3

/* A step of a row: M rounds of the warp's lanes over LB = 32 / P blocks,
 * SB = M * LB blocks. A step's fixed cost (the wait for its slot, the next
 * copy's issue) is spread over M rounds' bytes: with one round, Q4_0's
 * products took twice the time of a plain read of their bytes on an H100
 * (288-byte steps), Q4_K's 1.1-1.4 times (1152). The counts were measured
 * there type by type (cuda_matvec_bench): Q4_0 four rounds (1152 bytes),
 * Q5_0 and Q8_0 two (704, 1088), Q5_K two (1408: q/k/v 12.4 -> 11.2 us,
 * gate/up 34.0 -> 31.6 against one round), Q4_K and Q6_K one; Q3_K two of
 * its 4 lanes a block (1760 bytes: against one, q/k/v 10.5 -> 9.7 us, o 7.9
 * -> 7.5, gate/up 29.6 -> 27.4, down 17.2 -> 17.8), Q2_K four (1344:
 * against three, q/k/v 9.5 -> 8.3 us, o 6.8 -> 6.5, gate/up 27.9 -> 22.0,
 * down 15.6 -> 14.8; five and six slower over the four products); Q4_1 four
 * and Q5_1 two (1280, 768: two and three rounds for Q4_1, one and three for
 * Q5_1 were no faster over a layer's four products). Q5_0 at three
 * rounds (1056 bytes) gained 0.6-0.7 us on q/k/v and gate/up, lost 0.5 on o:
 * 48 blocks a step leave a 4096-column row's 128 blocks to the warps
 * unevenly. Q6_K at two rounds (1680 bytes) needs a ring of three slots (four
 * leave one CTA an SM): q/k/v 13.5 -> 11.9 us, o 10.0 -> 10.3, decode the
 * same. SLOT: shared bytes of one row's step in the ring, SB blocks from
 * any address (the copy starts up to 15 bytes before it), a multiple of 16. */
template <class T> struct CqRounds {
    static constexpr int M = 1;
};
template <> struct CqRounds<TQ4_0> {
    static constexpr int M = 4;
};
template <> struct CqRounds<TQ5_0> {
    static constexpr int M = 2;
};
template <> struct CqRounds<TQ4_1> {
    static constexpr int M = 4;
};
template <> struct CqRounds<TQ5_1> {
    static constexpr int M = 2;
};
template <> struct CqRounds<TQ8_0> {
    static constexpr int M = 2;
};
template <> struct CqRounds<TQ5_K> {
    static constexpr int M = 2;
};
template <> struct CqRounds<TQ3_K> {
    static constexpr int M = 2;
};
template <> struct CqRounds<TQ2_K> {
    static constexpr int M = 4;
};
template <class T> struct CqStage {
    static constexpr int LB = 32 / T::P;
    static constexpr int M = CqRounds<T>::M;
    static constexpr int SB = M * LB;
    static constexpr int SLOT = (SB * T::BB + 15 + 15) / 16 * 16;
};

template <class T, int R> CQ_HD int64_t cq_i8s_ring_bytes()
{
    return (int64_t)CQ_WARPS * CQ_STAGES * R * CqStage<T>::SLOT;
}

/* As cq_cp_async16, reading n <= 16 bytes (the rest of the 16 zero). */
__device__ __forceinline__ void cq_cp_async16n(void *smem, const void *gmem, int n)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(cq_smem_addr(smem)),
                 "l"(gmem), "r"(n)
                 : "memory");
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define CQ_BULK 1
/* Whether the mbarrier at bar has completed the phase of the given parity. */
__device__ __forceinline__ bool cq_mbar_done(unsigned bar, unsigned parity)
{
    unsigned ok;
    asm volatile("{\n\t.reg .pred p;\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                 "selp.u32 %0, 1, 0, p;\n\t}"
                 : "=r"(ok)
                 : "r"(bar), "r"(parity)
                 : "memory");
    return ok != 0;
}
#else
#define CQ_BULK 0
#endif

/* cq_matvec_i8s_kernel's work as CTA cta of n_cta (the kernel's, or a
 * share of cq_matvec_i8s_pair_kernel's); with NORM it stores the normed x
 * where store_norm. */
template <class T, int R, bool NORM>
__device__ __forceinline__ void cq_i8s_body(const CqRows &rs, size_t row_bytes, int64_t n_rows,
                                            int64_t n_cols, const float *__restrict__ x,
                                            int ks_log2, int ring_off, bool first, int64_t cta,
                                            int64_t n_cta, bool store_norm)
{
    typedef CqI8<T> I;
    constexpr int SB = CqStage<T>::SB, LB = CqStage<T>::LB, M = CqStage<T>::M;
    constexpr int SLOT = CqStage<T>::SLOT, S = CQ_STAGES;
    constexpr int ITEMB = 4 * T::NRUN;
    __shared__ float red[CQ_WARPS][R];
    /* the thread's place in the tiles, as cq_matvec_i8_kernel's */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, KS = 1 << ks_log2;
    const int G = CQ_WARPS / KS, grp = warp % G, kidx = warp / G;
    const int part = lane % T::P, lblk = lane / T::P;
    const int64_t nb = n_cols / T::BS, tile_rows = (int64_t)G * R;
    const int64_t n_tiles = (n_rows + tile_rows - 1) / tile_rows;
    const int64_t bw0 = (int64_t)kidx * SB; /* the warp's first block of a row */
    const int64_t wstep = (int64_t)KS * SB;
    const int nsw = bw0 < nb ? (int)((nb - bw0 + wstep - 1) / wstep) : 0; /* steps a tile */
    uint8_t *xs = (uint8_t *)cq_xs;
    uint8_t *ring = xs + ring_off + (int64_t)warp * (S * R * SLOT);
    /* each row's offset in its slot (its step's first byte past the 16-byte
     * boundary the copy starts at): lane 0 writes it as it queues the copy,
     * the warp reads it past the slot's wait (a __syncwarp between), so only
     * the queuing side looks rows up (and loads experts' ids), once a tile */
    __shared__ uint8_t heads[CQ_WARPS][S][R];
#if CQ_BULK
    __shared__ __align__(8) uint64_t bars[CQ_WARPS][S];
    const unsigned bar0 = cq_smem_addr(&bars[warp][0]);
    if (lane == 0) {
#pragma unroll
        for (int k = 0; k < S; k++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar0 + 8 * k) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();
    uint64_t pol = 0; /* the copies' L2 policy where first */
    if (first)
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
#endif

    /* the copy cursor: tile it_tile, step it_j, the rows' bytes */
    int64_t it_tile = cta;
    int it_j = 0;
    const uint8_t *irow[R];
    auto issue = [&](int slot) {
        if (it_tile < n_tiles && nsw > 0) {
            if (it_j == 0)
                cq_rows_ptrs<R>(rs, it_tile * tile_rows + (int64_t)grp * R, n_rows, row_bytes,
                                irow);
            const int64_t bw = bw0 + (int64_t)it_j * wstep;
            const int len = (int)((nb - bw < SB ? nb - bw : SB) * T::BB);
#if CQ_BULK
            if (lane == 0) {
                uintptr_t a[R]; /* each row's span: from its 16-byte boundary, n[r] bytes */
                int n[R], total = 0;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const uintptr_t src = (uintptr_t)(irow[r] + bw * T::BB);
                    a[r] = src & ~(uintptr_t)15;
                    heads[warp][slot][r] = (uint8_t)(src - a[r]);
                    n[r] = ((int)(src - a[r]) + len + 15) & ~15;
                    total += n[r];
                }
                const unsigned bar = bar0 + 8 * slot;
                /* the generic reads of the slot (a step ago) before the copy's writes */
                asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
                asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
                             "r"(total)
                             : "memory");
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const unsigned dst = cq_smem_addr(ring + (slot * R + r) * SLOT);
                    if (first)
                        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
                                     "bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(dst),
                                     "l"(a[r]), "r"(n[r]), "r"(bar), "l"(pol)
                                     : "memory");
                    else
                        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
                                     "bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                                     "l"(a[r]), "r"(n[r]), "r"(bar)
                                     : "memory");
                }
            }
#else
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint8_t *src = irow[r] + bw * T::BB;
                const int head = (int)((uintptr_t)src & 15);
                if (lane == 0) heads[warp][slot][r] = (uint8_t)head;
                const uint8_t *a = src - head;
                uint8_t *dst = ring + (slot * R + r) * SLOT;
                for (int c = lane; 16 * c < head + len; c += 32) {
                    const int rem = head + len - 16 * c;
                    cq_cp_async16n(dst + 16 * c, a + 16 * c, rem < 16 ? rem : 16);
                }
            }
#endif
            if (++it_j == nsw) {
                it_j = 0;
                it_tile += n_cta;
            }
        }
#if !CQ_BULK
        asm volatile("cp.async.commit_group;" ::: "memory");
#endif
    };
    uint64_t tt[4] = {cut_now(), 0, 0, 0};
    const bool traced = cut_on();
    pdl_trigger();
    if (rs.ids) pdl_wait(); /* the rows' experts come from the kernels before */
#pragma unroll
    for (int k = 0; k < S - 1; k++) issue(k); /* weights: before the previous kernel is done */
    pdl_wait();
    tt[1] = cut_now();

    /* NFAC: the norm's factor applied to the products at their end, x * w
     * quantized at once (Q8_K blocks); else the normed x as floats after the
     * integer layout first */
    constexpr bool NFAC = NORM && CqI8<T>::Q8K;
    __shared__ double ss[CQ_WARPS];
    if constexpr (NFAC) {
        cq_i8_quantize_normed<T>(rs, n_cols, xs, ss);
    } else if constexpr (NORM) {
        float4 *xf = (float4 *)(xs + cq_i8_norm_off<T>(n_cols));
        cq_norm_stage<false>(rs, n_cols, xf, [](int q) { return q; });
        cq_i8_quantize<T, 1, true>((const float *)xf, n_cols, xs);
    } else {
        cq_i8_quantize<T, 1, false>(x, n_cols, xs);
    }
    __syncthreads();
    tt[2] = cut_now();
    const float nsc = NFAC ? cq_norm_scale(ss, n_cols, rs.eps) : 1.0f;

    const int xts = (int)cq_i8_xts(n_cols);
    const int sts = (int)(nb * T::P * I::NSUM), dts = (int)nb;
    const int *sums = (const int *)(xs + xts);
    const float *dys = (const float *)(sums + sts);
    const uint32_t sw = cq_i8_sw<T>((bw0 + lblk) * T::P + part);

    int slot = 0;
    unsigned parity = 0; /* of the ring's current turn */
    for (int64_t tile = cta; tile < n_tiles; tile += n_cta) {
        const int64_t r0 = tile * tile_rows + (int64_t)grp * R;
        /* ADD's old outputs asked for now, their latency behind the steps:
         * lane r of a tile's storing warps keeps row r's */
        float yold = 0.0f;
        const bool ypre = rs.ep == CUQ_EP_ADD && rs.add_early;
        if (ypre && kidx == 0 && lane < R && r0 + lane < n_rows)
            yold = *cq_rows_yp(rs, cq_rows_part(rs, r0 + lane), r0 + lane, 0);
        float acc[R][1];
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][0] = 0.0f;
        for (int j = 0; j < nsw; j++) {
#if CQ_BULK
            while (!cq_mbar_done(bar0 + 8 * slot, parity)) {
            }
#else
            asm volatile("cp.async.wait_group %0;" ::"n"(S - 2) : "memory");
            __syncwarp();
#endif
            const int64_t bw = bw0 + (int64_t)j * wstep;
            typename T::Raw raw[M][R];
            int head[R];
#pragma unroll
            for (int r = 0; r < R; r++) head[r] = heads[warp][slot][r];
#pragma unroll
            for (int m = 0; m < M; m++) {
                if (bw + lblk + m * LB >= nb) continue;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    T::template load<CqSmem>(
                        raw[m][r], ring + (slot * R + r) * SLOT + head[r] + (lblk + m * LB) * T::BB,
                        part);
                }
            }
            __syncwarp();
            issue(slot == 0 ? S - 1 : slot - 1); /* the slot the previous step read */
#pragma unroll
            for (int m = 0; m < M; m++) {
                const int64_t b = bw + lblk + m * LB;
                if (b >= nb) continue;
                const int64_t it = b * T::P + part;
                I::template step<1, R>(raw[m], part, xs + it * ITEMB, sw, xts, sums + it * I::NSUM,
                                       sts, dys + b, dts, acc);
            }
            if (++slot == S) {
                slot = 0;
                parity ^= 1;
            }
        }
        if constexpr (NFAC) {
#pragma unroll
            for (int r = 0; r < R; r++) acc[r][0] *= nsc;
        }
        cq_mv_store<1, R>(acc, red, lane, warp, kidx, G, KS, rs, r0, n_rows, ypre, yold);
    }
    if constexpr (NFAC)
        if (store_norm) cq_norm_store(rs, n_cols, nsc, cta, n_cta);
#if !CQ_BULK
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
    if (traced) {
        __syncthreads();
        tt[3] = cut_now();
        if (threadIdx.x == 0) cut_put(CUK_TRACE_PRODUCT, (uint32_t)n_rows, (uint32_t)n_cols, tt);
    }
}

template <class T, int R, bool NORM>
__global__ void __launch_bounds__(CQ_THREADS, 2)
    cq_matvec_i8s_kernel(const __grid_constant__ CqRows rs, size_t row_bytes, int64_t n_rows,
                         int64_t n_cols, const float *__restrict__ x, int ks_log2, int ring_off,
                         bool first)
{
    cq_i8s_body<T, R, NORM>(rs, row_bytes, n_rows, n_cols, x, ks_log2, ring_off, first, blockIdx.x,
                            gridDim.x, true);
}

/* Two products of one token's x in one launch, weights of two types (a
 * layer's q and k beside a v of another type): CTAs [0, c1) take rs1's rows
 * of type T1, the others rs2's of T2, each share as cq_matvec_i8s_kernel
 * would with that many CTAs; both fold the norm (NORM), the first share
 * storing its output. */
template <class T1, int R1, class T2, int R2, bool NORM>
__global__ void __launch_bounds__(CQ_THREADS, 2)
    cq_matvec_i8s_pair_kernel(const __grid_constant__ CqRows rs1, const __grid_constant__ CqRows rs2,
                              size_t row_bytes1, size_t row_bytes2, int64_t n_rows1,
                              int64_t n_rows2, int64_t n_cols, const float *__restrict__ x,
                              int ks1, int ks2, int ring_off1, int ring_off2, unsigned c1,
                              bool first)
{
    if (blockIdx.x < c1)
        cq_i8s_body<T1, R1, NORM>(rs1, row_bytes1, n_rows1, n_cols, x, ks1, ring_off1, first,
                                  blockIdx.x, c1, true);
    else
        cq_i8s_body<T2, R2, NORM>(rs2, row_bytes2, n_rows2, n_cols, x, ks2, ring_off2, first,
                                  blockIdx.x - c1, gridDim.x - c1, false);
}

/* A token's experts' down products (CUQ_EP_DIAG, k of them) in one launch
 * of the staged kernel: CTAs [p share, (p + 1) share) take weight p with
 * x row p, each share as cq_matvec_i8s_kernel would with that many CTAs
 * (d.r[p]: weight p alone, its expert's id). Up to CUQ_MATVEC_MAX_TOK of
 * them, the most a DIAG call has (eight: qwen3moe's top-8), whose rows
 * (3 KiB) fit in a launch's 4 KiB of parameters. */
#define CQ_DIAG_MAX CUQ_MATVEC_MAX_TOK
struct CqDiagRows {
    CqRows r[CQ_DIAG_MAX];
};
static_assert(sizeof(CqDiagRows) <= 3584, "a launch's parameters: the rows and the rest in 4 KiB");

template <class T, int R>
__global__ void __launch_bounds__(CQ_THREADS, 2)
    cq_matvec_i8s_diag_kernel(const __grid_constant__ CqDiagRows d, size_t row_bytes,
                              int64_t n_rows, int64_t n_cols, const float *__restrict__ x,
                              int ks_log2, int ring_off, bool first, unsigned share)
{
    const unsigned p = blockIdx.x / share;
    cq_i8s_body<T, R, false>(d.r[p], row_bytes, n_rows, n_cols, x + (int64_t)p * n_cols, ks_log2,
                             ring_off, first, blockIdx.x - p * share, share, false);
}

/* ---- a prompt batch's routed experts in one launch ---------------------
 * Chunk c (blockIdx.y) is up to CUQ_GROUP_TOK rows of x, rows ck.a0 ..
 * ck.a0 + ck.n - 1, routed to one expert whose weights are ck.w0 (and, with
 * SWIGLU, its up weights ck.w1); the CTAs of a chunk share its row tiles
 * (blockIdx.x, gridDim.x apart). Each CTA quantizes the chunk's
 * CUQ_GROUP_TOK rows of x into shared memory as cq_matvec_i8_kernel does
 * (rows past the chunk's n are computed and not stored: x has
 * CUQ_GROUP_TOK - 1 rows after the last chunk's), then computes its tiles
 * with the products of CqI8<T>, a warp R rows (SWIGLU: a gate row and its up
 * row, the pair's output silu(g) * u as cq_rows_put stores it), the next
 * step's weights loaded before this one's products. Output row of token
 * a0 + t: y + (a0 + t) * ldy. */
template <class T, bool SWIGLU>
__global__ void __launch_bounds__(CQ_THREADS, 2)
    cq_group_i8_kernel(const cuq_chunk *__restrict__ chunks, size_t row_bytes, int64_t n_rows,
                       int64_t n_cols, const float *__restrict__ x, float *__restrict__ y,
                       int64_t ldy)
{
    typedef CqI8<T> I;
    constexpr int NT = CUQ_GROUP_TOK, R = 2;
    constexpr int LP = CqLog2<T::P>::value;
    constexpr int SB = 32 >> LP; /* blocks per step */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int part = lane & (T::P - 1), lblk = lane >> LP;
    const cuq_chunk ck = chunks[blockIdx.y];
    const int64_t nb = n_cols / T::BS;
    const int64_t nv = SWIGLU ? 2 * n_rows : n_rows; /* rows of the tiles */
    const int64_t tile_rows = (int64_t)CQ_WARPS * R;
    const int64_t n_tiles = (nv + tile_rows - 1) / tile_rows;
    const size_t ustep = (size_t)SB * T::BB;
    auto row_ptr = [&](int64_t v) {
        v = v < nv ? v : nv - 1;
        if (SWIGLU) return (const uint8_t *)((v & 1) ? ck.w1 : ck.w0) + (v >> 1) * row_bytes;
        return (const uint8_t *)ck.w0 + v * row_bytes;
    };

    typename T::Raw raw[R];
    const uint8_t *wp[R];
    int64_t tile = blockIdx.x;
    auto tile_start = [&](int64_t tl) {
        const int64_t r0 = tl * tile_rows + (int64_t)warp * R;
#pragma unroll
        for (int r = 0; r < R; r++) wp[r] = row_ptr(r0 + r) + (int64_t)lblk * T::BB;
        if (lblk < nb) {
#pragma unroll
            for (int r = 0; r < R; r++) T::load(raw[r], wp[r], part);
        }
    };
    if (tile < n_tiles) tile_start(tile);

    uint8_t *xs = (uint8_t *)cq_xs;
    cq_i8_quantize<T, NT, false>(x + (int64_t)ck.a0 * n_cols, n_cols, xs);
    __syncthreads();

    const int xts = (int)cq_i8_xts(n_cols);
    const int sts = (int)(nb * T::P * I::NSUM), dts = (int)nb;
    const int *sums = (const int *)(xs + NT * xts);
    const float *dys = (const float *)(sums + NT * sts);
    const uint32_t sw = cq_i8_sw<T>((int64_t)lblk * T::P + part);

    for (; tile < n_tiles; tile += gridDim.x) {
        const int64_t r0 = tile * tile_rows + (int64_t)warp * R;
        float acc[R][NT];
        cq_i8_tile<T, NT, R>(raw, wp, lblk, lblk, nb, SB, ustep, part, xs, sw, xts, sums, sts, dys,
                             dts, acc);
        if (tile + gridDim.x < n_tiles) tile_start(tile + gridDim.x);

        /* the sums over the lanes; lane r * NT + t keeps row r's for token t */
        cq_lane_sums<NT, R>(acc);
        float v = 0.0f;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == r * NT + t) v = acc[r][t];
        const int r = lane / NT, t = lane % NT;
        const bool mine = lane < R * NT && t < ck.n && r0 + r < nv;
        float *yt = y + ((int64_t)ck.a0 + t) * ldy;
        if (SWIGLU) {
            const float u = __shfl_down_sync(0xffffffffu, v, NT); /* the up row's sum */
            if (mine && (r & 1) == 0) yt[(r0 + r) >> 1] = v / (1.0f + expf(-v)) * u;
        } else if (mine) {
            yt[r0 + r] = v;
        }
    }
}

/* Stores 4 values of a run, or 8 of two adjacent runs, as binary16 or F32. */
template <bool F16OUT>
__device__ __forceinline__ void cq_store4(void *out, int64_t idx, const float (&v)[4])
{
    if (F16OUT) {
        uint2 h;
        h.x = cq_f2h(v[0]) | ((uint32_t)cq_f2h(v[1]) << 16);
        h.y = cq_f2h(v[2]) | ((uint32_t)cq_f2h(v[3]) << 16);
        *(uint2 *)((uint16_t *)out + idx) = h;
    } else {
        *(float4 *)((float *)out + idx) = make_float4(v[0], v[1], v[2], v[3]);
    }
}

/* Dequantize rows of a quantized type to binary16 (dequant_f16, no ids):
 * the 32 items of a warp are 32 / P whole blocks, consecutive in the dense
 * output, so the warp gathers their values in shared memory (16-byte units
 * swizzled: unit u at u ^ (u / 8 % 8)) and writes the span with 16-byte
 * stores across the lanes. */
template <class T>
__global__ void __launch_bounds__(CQ_THREADS)
    cq_dequant_f16_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
                          int64_t n_cols, uint16_t *__restrict__ out)
{
    constexpr int LP = CqLog2<T::P>::value;
    constexpr int SPAN = (32 >> LP) * T::BS; /* halves per warp step */
    __shared__ uint4 stage[CQ_WARPS][SPAN / 8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int part = lane & (T::P - 1);
    const int64_t nb = n_cols / T::BS;
    const int64_t nblk = n_rows * nb; /* blocks of all rows, in output order */
    uint16_t *st = (uint16_t *)stage[warp];
    for (int64_t b0 = ((int64_t)blockIdx.x * CQ_WARPS + warp) * (32 >> LP); b0 < nblk;
         b0 += (int64_t)gridDim.x * CQ_WARPS * (32 >> LP)) {
        const int64_t b = b0 + (lane >> LP);
        if (b < nblk) {
            const int64_t i = nblk <= 0xffffffff ? (int64_t)((uint32_t)b / (uint32_t)nb) : b / nb;
            typename T::Raw raw;
            T::load(raw, w + i * row_bytes + (b - i * nb) * T::BB, part);
            float v[T::NRUN][4];
            cq_dq_item<T>(raw, part, v);
            const int c = (lane >> LP) * T::BS + T::cbase(part);
#pragma unroll
            for (int j = 0; j < T::NRUN; j++) {
                uint2 h;
                h.x = cq_f2h(v[j][0]) | ((uint32_t)cq_f2h(v[j][1]) << 16);
                h.y = cq_f2h(v[j][2]) | ((uint32_t)cq_f2h(v[j][3]) << 16);
                const int hx = c + T::coff(j), u = hx >> 3; /* 16-byte unit, swizzled */
                *(uint2 *)(st + ((u ^ ((u >> 3) & 7)) << 3) + (hx & 7)) = h;
            }
        }
        __syncwarp();
        const int64_t nb_here = nblk - b0 < (32 >> LP) ? nblk - b0 : (32 >> LP);
        uint4 *o = (uint4 *)(out + b0 * T::BS);
        for (int k = lane; k < nb_here * T::BS / 8; k += 32) o[k] = stage[warp][k ^ ((k >> 3) & 7)];
        __syncwarp();
    }
}

/* Dequantize rows to out (binary16 or F32): a thread per item, items of all
 * rows in one sequence (row i's items at i * nitems ...; a float type's
 * row has one more item for its tail). ids: the source rows. */
template <class T, bool F16OUT>
__global__ void __launch_bounds__(CQ_THREADS)
    cq_dequant_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
                      int64_t n_cols, const int32_t *__restrict__ ids, void *__restrict__ out,
                      bool wide)
{
    constexpr int LP = CqLog2<T::P>::value;
    const int64_t nb = n_cols / T::BS;
    const bool tail = T::FLOAT && nb * T::BS < n_cols;
    const int64_t nitems = nb * T::P + (tail ? 1 : 0);
    const int64_t total = n_rows * nitems;
    for (int64_t gi = (int64_t)blockIdx.x * CQ_THREADS + threadIdx.x; gi < total;
         gi += (int64_t)gridDim.x * CQ_THREADS) {
        const int64_t i =
            total <= 0xffffffff ? (int64_t)((uint32_t)gi / (uint32_t)nitems) : gi / nitems;
        const int64_t it = gi - i * nitems;
        const uint8_t *row = w + (ids ? (int64_t)ids[i] : i) * row_bytes;
        if (it < nb * T::P) {
            const int64_t b = it >> LP;
            const int part = (int)(it & (T::P - 1));
            typename T::Raw raw;
            T::load(raw, row + b * T::BB, part);
            float v[T::NRUN][4];
            cq_dq_item<T>(raw, part, v);
            const int64_t col = i * n_cols + b * T::BS + T::cbase(part);
#pragma unroll
            for (int j = 0; j < T::NRUN; j++) {
                /* runs j, j + 1 adjacent: 8 halves in one 16-byte store when wide */
                const bool pair =
                    (j & 1) == 0 && j + 1 < T::NRUN && T::coff(j + 1) == T::coff(j) + 4;
                if (F16OUT && std::is_same<T, TF16>::value) { /* F16 to F16: the bits themselves */
                    if constexpr (std::is_same<T, TF16>::value) {
                        uint16_t *o = (uint16_t *)out + col + T::coff(j);
                        if (wide && j == 0)
                            *(uint4 *)o = raw.v;
                        else if (!wide)
                            *(uint2 *)o =
                                j ? make_uint2(raw.v.z, raw.v.w) : make_uint2(raw.v.x, raw.v.y);
                    }
                } else if (F16OUT && pair && wide) {
                    uint4 h;
                    h.x = cq_f2h(v[j][0]) | ((uint32_t)cq_f2h(v[j][1]) << 16);
                    h.y = cq_f2h(v[j][2]) | ((uint32_t)cq_f2h(v[j][3]) << 16);
                    h.z = cq_f2h(v[j + 1][0]) | ((uint32_t)cq_f2h(v[j + 1][1]) << 16);
                    h.w = cq_f2h(v[j + 1][2]) | ((uint32_t)cq_f2h(v[j + 1][3]) << 16);
                    *(uint4 *)((uint16_t *)out + col + T::coff(j)) = h;
                } else if (!F16OUT || !wide || (j & 1) == 0 || T::coff(j) != T::coff(j - 1) + 4) {
                    cq_store4<F16OUT>(out, col + T::coff(j), v[j]);
                }
            }
        } else {
            for (int64_t k = nb * T::BS; k < n_cols; k++) {
                float e = 0.0f;
                if constexpr (T::FLOAT) e = T::elem(row, k);
                if (F16OUT)
                    ((uint16_t *)out)[i * n_cols + k] = cq_f2h(e);
                else
                    ((float *)out)[i * n_cols + k] = e;
            }
        }
    }
}

/* Fallbacks for any alignment: a warp per row, lanes over columns. */
template <int NT>
__global__ void __launch_bounds__(CQ_THREADS)
    cq_matvec_any_kernel(uint32_t type, const uint8_t *__restrict__ w, size_t row_bytes,
                         int64_t n_rows, int64_t n_cols, const float *__restrict__ x,
                         float *__restrict__ y, int64_t ldy)
{
    const int lane = threadIdx.x & 31;
    for (int64_t r = ((int64_t)blockIdx.x * CQ_THREADS + threadIdx.x) >> 5; r < n_rows;
         r += ((int64_t)gridDim.x * CQ_THREADS) >> 5) {
        const uint8_t *row = w + r * row_bytes;
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        for (int64_t c = lane; c < n_cols; c += 32) {
            const float wv = cq_elem(type, row, c);
#pragma unroll
            for (int t = 0; t < NT; t++) acc[t] = fmaf(wv, cq_ldx(x + t * n_cols + c), acc[t]);
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == t) y[t * ldy + r] = v;
        }
    }
}

template <bool F16OUT>
__global__ void __launch_bounds__(CQ_THREADS)
    cq_dequant_any_kernel(uint32_t type, const uint8_t *__restrict__ w, size_t row_bytes,
                          int64_t n_rows, int64_t n_cols, const int32_t *__restrict__ ids,
                          void *__restrict__ out)
{
    const int64_t n = n_rows * n_cols;
    for (int64_t e = (int64_t)blockIdx.x * CQ_THREADS + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * CQ_THREADS) {
        const int64_t i = e / n_cols, c = e - i * n_cols;
        const float v = cq_elem(type, w + (ids ? (int64_t)ids[i] : i) * row_bytes, c);
        if (F16OUT)
            ((uint16_t *)out)[e] = cq_f2h(v);
        else
            ((float *)out)[e] = v;
    }
}

/* ---- launchers ---------------------------------------------------------------- */

/* Multiprocessors and shared memory (per SM; a block's opt-in limit) of the
 * current device, cached per device. */
struct CqDev {
    int id, sms, smem_sm, smem_optin;
};

static CqDev cq_dev(void)
{
    static std::atomic<int> sms[64], smem_sm[64], optin[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        cudaGetLastError();
        return CqDev{-1, 132, 228 * 1024, 48 * 1024};
    }
    CqDev d{dev, sms[dev].load(std::memory_order_relaxed),
            smem_sm[dev].load(std::memory_order_relaxed),
            optin[dev].load(std::memory_order_relaxed)};
    if (d.sms == 0) {
        bool ok =
            cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&d.smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) ==
                cudaSuccess &&
            cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) ==
                cudaSuccess;
        if (!ok || d.sms <= 0 || d.smem_optin <= 0 || d.smem_sm <= 0) {
            cudaGetLastError();
            return CqDev{-1, 132, 228 * 1024, 48 * 1024};
        }
        smem_sm[dev].store(d.smem_sm, std::memory_order_relaxed);
        optin[dev].store(d.smem_optin, std::memory_order_relaxed);
        sms[dev].store(d.sms, std::memory_order_relaxed);
    }
    return d;
}

/* The dynamic shared memory a kernel of this file may take on dev: the
 * opt-in limit less 2 KB for its static part, at most CQ_XS_MAX_BYTES. */
static int cq_smem_max(const CqDev &dev)
{
    return dev.smem_optin - 2048 < CQ_XS_MAX_BYTES ? dev.smem_optin - 2048 : CQ_XS_MAX_BYTES;
}

static unsigned cq_grid(int64_t work)
{
    const int64_t cap = (int64_t)1 << 30;
    return (unsigned)(work < 1 ? 1 : work > cap ? cap : work);
}

static bool cq_aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* CTAs of kernel kern resident per SM with smem bytes of x: the limit of
 * registers and threads (asked of the runtime once per device, in occ_regs,
 * when the kernel's dynamic shared memory limit is raised) and that of
 * shared memory (the static part and 1 KB the system keeps per CTA). */
template <class K>
static int cq_occupancy(K kern, std::atomic<int> (&occ_regs)[64], bool dyn, size_t smem,
                        size_t smem_static, const CqDev &dev, int smem_max)
{
    const int id = dev.id >= 0 && dev.id < 64 ? dev.id : 0;
    int occ = dev.id >= 0 ? occ_regs[id].load(std::memory_order_relaxed) : 0;
    if (occ == 0) {
        if (dyn) cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_max);
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, CQ_THREADS, 0) !=
                cudaSuccess ||
            occ < 1) {
            cudaGetLastError();
            occ = 1;
        } else if (dev.id >= 0) {
            occ_regs[id].store(occ, std::memory_order_relaxed);
        }
    }
    const size_t per_cta = smem + smem_static + 1024;
    const int occ_smem = (int)((size_t)dev.smem_sm / per_cta);
    return occ_smem < 1 ? 1 : occ_smem < occ ? occ_smem : occ;
}

/* Whether the switch name is on: anything but "0" in the environment (as
 * cuda_backend.c's switches). */
static bool cq_switch_on(const char *name)
{
    const char *e = getenv(name);
    return !(e && !strcmp(e, "0"));
}

/* cq_matvec_split's rule for products of one wave of tiles (most tiles;
 * HYPURA_CUDA_SPLIT_WAVE=0: as for the others). */
static bool cq_split_wave_on()
{
    static const bool on = cq_switch_on("HYPURA_CUDA_SPLIT_WAVE");
    return on;
}

/* Persistent grid: as many CTAs as fit (or tiles), tiles dealt round-robin:
 * CTA i and CTA i + n_SM share an SM, so each SM gets within one tile of the
 * others. Warps split rows (KS = 2^ks_log2, while a warp keeps at least two
 * steps of its row) where tiles of fewer rows fill the CTAs' last wave of
 * tiles better (F16 gate/up on an H100: 1792 tiles in 5 waves of 396 CTAs at
 * KS 1, 14336 in 37 at KS 8: 88.9 -> 85.9 us). The quantized types split
 * by the same rule (before, only until there were as many tiles as CTAs: a
 * Q6_K down product of 4096 rows made 512 tiles for 396 CTAs, two waves, the
 * second a third full; now 1024 in three): decode of llama-3-8b-shaped
 * Q4_K_M 995.9 -> 1010.6 tok/s, Q8_0 772.7 -> 782.8 (H100, medians of 4).
 * Returns the grid. */
template <class T, int R, int M = 1>
static unsigned cq_matvec_split(int64_t n_rows, int64_t n_cols, int64_t slots, int &ks_log2)
{
    /* a row's steps: M rounds of a warp's 32 lanes' items each */
    const int64_t steps = (n_cols / T::BS * T::P + 32 * M - 1) / (32 * M);
    ks_log2 = 0;
    double best = -1.0;
    int64_t best_tiles = 0;
    for (int k = 0; k <= 3; k++) {
        if (k > 0 && (steps >> k) < 2) break;
        const int64_t tile_rows = (int64_t)(CQ_WARPS >> k) * R;
        const int64_t tiles = (n_rows + tile_rows - 1) / tile_rows;
        const int64_t waves = (tiles + slots - 1) / slots;
        /* the share of CTA-tile slots used; a finer split must gain 2 %;
         * in one wave (a router's few rows), the most tiles: a warp's chain
         * of loads, one step after another, is then the product's time */
        const double eff = (double)tiles / (double)(waves * slots);
        if ((waves == 1 && cq_split_wave_on()) ? tiles > best_tiles : eff > best + 0.02) {
            best = eff;
            best_tiles = tiles;
            ks_log2 = k;
        }
    }
    const int64_t tile_rows = (int64_t)(CQ_WARPS >> ks_log2) * R;
    const int64_t tiles = (n_rows + tile_rows - 1) / tile_rows;
    return cq_grid(tiles < slots ? tiles : slots);
}

/* The bytes of weights the busiest CTA reads when n_rows rows share slots
 * CTAs as cq_matvec_split deals them (its ks_log2 and grid given back). */
template <class T, int R, int M>
static int64_t cq_split_bytes(int64_t n_rows, int64_t n_cols, size_t row_bytes, int64_t slots,
                              int &ks_log2, unsigned &grid)
{
    grid = cq_matvec_split<T, R, M>(n_rows, n_cols, slots, ks_log2);
    const int64_t tile_rows = (int64_t)(CQ_WARPS >> ks_log2) * R;
    const int64_t tiles = (n_rows + tile_rows - 1) / tile_rows;
    return (tiles + grid - 1) / grid * tile_rows * (int64_t)row_bytes;
}

template <class T, int NT, bool XS, bool NORM>
static void cq_matvec_launch(const CqRows &rs, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                             const float *x, size_t smem, const CqDev &dev, int smem_max,
                             cudaStream_t s, bool early)
{
    constexpr int R = CqShape<T, NT>::R;
    static std::atomic<int> occ_regs[64];
    const int occ = cq_occupancy(cq_matvec_kernel<T, NT, R, XS, NORM>, occ_regs, XS, smem,
                                 sizeof(float) * CQ_WARPS * R * NT, dev, smem_max);
    int ks_log2;
    const unsigned grid = cq_matvec_split<T, R>(n_rows, n_cols, (int64_t)occ * dev.sms, ks_log2);
    pdl_launch(cq_matvec_kernel<T, NT, R, XS, NORM>, dim3(grid), CQ_THREADS, smem, s, early, rs,
               row_bytes, n_rows, n_cols, x, ks_log2);
}

template <class T, int NT, bool NORM>
static void cq_matvec_i8_launch(const CqRows &rs, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                                const float *x, size_t smem, const CqDev &dev, int smem_max,
                                cudaStream_t s, bool early)
{
    constexpr int R = CqShape<T, NT>::R;
    static std::atomic<int> occ_regs[64];
    const int occ = cq_occupancy(cq_matvec_i8_kernel<T, NT, R, NORM>, occ_regs, true, smem,
                                 sizeof(float) * CQ_WARPS * R * NT, dev, smem_max);
    int ks_log2;
    const unsigned grid = cq_matvec_split<T, R>(n_rows, n_cols, (int64_t)occ * dev.sms, ks_log2);
    pdl_launch(cq_matvec_i8_kernel<T, NT, R, NORM>, dim3(grid), CQ_THREADS, smem, s, early, rs,
               row_bytes, n_rows, n_cols, x, ks_log2);
}

/* The staged one-token kernel (cq_matvec_i8s_kernel) where x and the
 * rings fit two CTAs an SM; HYPURA_CUDA_STAGED=0 keeps cq_matvec_i8_kernel
 * (to compare them). Returns false where it does not launch. */
static bool cq_staged_on()
{
    static const bool on = cq_switch_on("HYPURA_CUDA_STAGED");
    return on;
}

/* The staged kernel's weight copies (compute capability 9.0's bulk copies)
 * at the L2 cache's evict-first priority (HYPURA_CUDA_L2_FIRST=0: the normal
 * one): a product reads each weight byte once, and the lines its stream
 * would evict are read again (activations, the KV cache, norm weights). On
 * an H200, decode of the llama-3-8b shape in Q4_K_M 377.4 -> 397.3 tok/s (32
 * layers), 1252 -> 1304 (8 layers), the qwen1.5-moe shape 1303 -> 1334
 * (medians). The same hint on the other kernels' weight loads (F16's among
 * them) gained nothing there. */
static bool cq_l2_first_on()
{
    static const bool on = cq_switch_on("HYPURA_CUDA_L2_FIRST");
    return on;
}

/* The staged kernel's residual add with the old outputs loaded at a
 * tile's start, so that their L2 round trip runs beside the tile's steps
 * instead of after them (HYPURA_CUDA_ADD_EARLY=0: loaded at the store). On
 * an H200, decode of the llama-3-8b shape in Q4_K_M 427.9 -> 429.9 tok/s (32
 * layers), 1415.7 -> 1422.6 (8 layers), the llama-3-70b shape's 10 layers
 * 501.5 -> 502.9, Q8_0 306.5 -> 307.1 (medians of three). */
static bool cq_add_early_on()
{
    static const bool on = cq_switch_on("HYPURA_CUDA_ADD_EARLY");
    return on;
}

/* The staged kernel's shared bytes for T with smem8 bytes of x: x, then
 * its ring from the next 16-byte boundary (*ring_off). */
template <class T> static int64_t cq_i8s_smem(int64_t smem8, int64_t *ring_off)
{
    *ring_off = (smem8 + 15) & ~(int64_t)15;
    return *ring_off + cq_i8s_ring_bytes<T, CqShape<T, 1>::R>();
}

/* The staged kernel's bytes of one token's x for T: with a folded norm,
 * the types of Q8_K x quantize x * w in one pass and stage no floats; the
 * others stage the normed floats after x's integer layout. */
template <class T> static int64_t cq_i8s_x_bytes(int64_t n_cols, bool norm)
{
    return norm && !CqI8<T>::Q8K ? cq_i8_norm_off<T>(n_cols) + n_cols * 4
                                 : cq_i8_smem<T>(n_cols, 1);
}

template <class T, bool NORM>
static bool cq_matvec_i8s_launch(const CqRows &rs, size_t row_bytes, int64_t n_rows,
                                 int64_t n_cols, const float *x, int64_t smem8, const CqDev &dev,
                                 int smem_max, cudaStream_t s, bool early)
{
    constexpr int R = CqShape<T, 1>::R;
    int64_t ring_off;
    const int64_t smem = cq_i8s_smem<T>(smem8, &ring_off);
    if (!cq_staged_on() || smem > smem_max) return false;
    static std::atomic<int> occ_regs[64];
    const int occ = cq_occupancy(cq_matvec_i8s_kernel<T, R, NORM>, occ_regs, true, (size_t)smem,
                                 sizeof(float) * CQ_WARPS * R, dev, smem_max);
    if (occ < 2) return false;
    int ks_log2;
    const unsigned grid =
        cq_matvec_split<T, R, CqStage<T>::M>(n_rows, n_cols, (int64_t)occ * dev.sms, ks_log2);
    pdl_launch(cq_matvec_i8s_kernel<T, R, NORM>, dim3(grid), CQ_THREADS, (size_t)smem, s, early,
               rs, row_bytes, n_rows, n_cols, x, ks_log2, (int)ring_off, cq_l2_first_on());
    return true;
}

/* Float products up to this many weight bytes fold a pending norm. */
#define CQ_FLOAT_FOLD_BYTES ((int64_t)2 << 20)

/* The integer path for its types when x fits in shared memory; else, for
 * a quantized type, x in shared memory (rows of xstride floats, then the
 * 8-column sums) when it fits. n_rows: virtual rows of rs. NORM (one token,
 * rs.nx set): the kernels' instances with the RMSNorm folded in, x staged
 * (their own instances, so that the others' registers stay as they were);
 * cudaErrorNotSupported where x does not fit in shared memory, and for the
 * float types past CQ_FLOAT_FOLD_BYTES, whose one-token kernel reads x through
 * L1 without staging it (staging x and the norm's weight in every CTA cost
 * what the norm's own launch did: F16 decode on an H100 551 tok/s folded, 559
 * not). */
template <class T, int NT, bool NORM>
static cudaError_t cq_matvec_launch(const CqRows &rs, size_t row_bytes, int64_t n_rows,
                                    int64_t n_cols, const float *x, cudaStream_t s, bool early)
{
    static_assert(!NORM || NT == 1, "a folded norm is one token's");
    const CqDev dev = cq_dev();
    const int smem_max = cq_smem_max(dev);
    const int64_t xstride = (n_cols + 31) & ~(int64_t)31;
    const int64_t smem = NT * xstride * 4 + (T::FLOAT ? 0 : NT * xstride / 2);
    if constexpr (CqI8<T>::ON) { /* the integer path where its x fits */
        const int64_t smem8 =
            NORM ? cq_i8_norm_off<T>(n_cols) + n_cols * 4 : cq_i8_smem<T>(n_cols, NT);
        if (NT == 1 && cq_matvec_i8s_launch<T, NORM>(rs, row_bytes, n_rows, n_cols, x,
                                                     cq_i8s_x_bytes<T>(n_cols, NORM), dev,
                                                     smem_max, s, early))
            return cudaGetLastError();
        if (smem8 <= smem_max) {
            cq_matvec_i8_launch<T, NT, NORM>(rs, row_bytes, n_rows, n_cols, x, (size_t)smem8, dev,
                                             smem_max, s, early);
            return cudaGetLastError();
        }
    }
    /* float types: x from L1 is as good for few tokens, but a small product
     * (a router's) folds a norm: its own launch cost more than the staging.
     * Its columns fill whole blocks (8 covers F32's 4 and F16's 8): the kernel
     * reads columns past the last block from x, the norm's output, which only
     * CTA 0 writes during the kernel. */
    if constexpr (!T::FLOAT || NT >= 5 || NORM) {
        const bool fold_ok = n_cols % 8 == 0 && (int64_t)row_bytes * n_rows <= CQ_FLOAT_FOLD_BYTES;
        if ((!T::FLOAT || NT >= 5 || fold_ok) && smem <= smem_max) {
            cq_matvec_launch<T, NT, true, NORM>(rs, row_bytes, n_rows, n_cols, x, (size_t)smem, dev,
                                                smem_max, s, early);
            return cudaGetLastError();
        }
    }
    if (NORM) return cudaErrorNotSupported;
    cq_matvec_launch<T, NT, false, false>(rs, row_bytes, n_rows, n_cols, x, 0, dev, smem_max, s,
                                          early);
    return cudaGetLastError();
}

/* The aligned kernels for n_tok tokens (1 .. CUQ_MATVEC_MAX_TOK). */
template <class T>
static cudaError_t cq_matvec_rows(const CqRows &rs, size_t row_bytes, int64_t n_rows,
                                  int64_t n_cols, const float *x, int64_t n_tok, cudaStream_t s,
                                  bool early)
{
    if (rs.nx) { /* a folded norm: one token */
        if (n_tok != 1) return cudaErrorNotSupported;
        return cq_matvec_launch<T, 1, true>(rs, row_bytes, n_rows, n_cols, x, s, early);
    }
    switch (n_tok) {
    case 1:
        return cq_matvec_launch<T, 1, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 2:
        return cq_matvec_launch<T, 2, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 3:
        return cq_matvec_launch<T, 3, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 4:
        return cq_matvec_launch<T, 4, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 5:
        return cq_matvec_launch<T, 5, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 6:
        return cq_matvec_launch<T, 6, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 7:
        return cq_matvec_launch<T, 7, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    case 8:
        return cq_matvec_launch<T, 8, false>(rs, row_bytes, n_rows, n_cols, x, s, early);
    }
    return cudaErrorInvalidValue;
}

/* Whether the aligned kernels take weight w and x. */
template <class T>
static bool cq_matvec_fast(const void *w, size_t row_bytes, int64_t n_cols, const float *x)
{
    return cq_aligned(w, T::ALIGN) && row_bytes % T::ALIGN == 0 && cq_aligned(x, 16) &&
           n_cols % 4 == 0;
}

template <class T>
static cudaError_t cq_matvec_type(uint32_t type, const void *w, size_t row_bytes, int64_t n_rows,
                                  int64_t n_cols, const float *x, int64_t n_tok, float *y,
                                  int64_t ldy, cudaStream_t s, bool early)
{
    if (!T::FLOAT && n_cols % T::BS != 0) return cudaErrorInvalidValue;
    if (!cq_matvec_fast<T>(w, row_bytes, n_cols, x)) {
        const unsigned grid = cq_grid((n_rows + CQ_WARPS - 1) / CQ_WARPS);
        const uint8_t *wb = (const uint8_t *)w;
        switch (n_tok) {
#define CQ_ANY(n)                                                                                  \
    case n:                                                                                        \
        cq_matvec_any_kernel<n>                                                                    \
            <<<grid, CQ_THREADS, 0, s>>>(type, wb, row_bytes, n_rows, n_cols, x, y, ldy);          \
        break;
            CQ_ANY(1) CQ_ANY(2) CQ_ANY(3) CQ_ANY(4) CQ_ANY(5) CQ_ANY(6) CQ_ANY(7) CQ_ANY(8)
#undef CQ_ANY
        }
        return cudaGetLastError();
    }
    CqRows rs = {};
    rs.w[0] = rs.w[1] = rs.w[2] = (const uint8_t *)w;
    rs.y[0] = rs.y[1] = rs.y[2] = y; /* no biases */
    rs.end[0] = rs.end[1] = rs.end[2] = n_rows;
    rs.ldy[0] = rs.ldy[1] = rs.ldy[2] = ldy;
    rs.ep = CUQ_EP_STORE;
    return cq_matvec_rows<T>(rs, row_bytes, n_rows, n_cols, x, n_tok, s, early);
}

/* Whether the multi-product kernels take weight w of type T (and, with an
 * expert stride, w plus its multiples), row_bytes, n_cols and x. */
template <class T>
static cudaError_t cq_multi_check(const void *w, size_t row_bytes, int64_t n_cols, const float *x,
                                  int64_t estride)
{
    const bool ok = (T::FLOAT || n_cols % T::BS == 0) &&
                    cq_matvec_fast<T>(w, row_bytes, n_cols, x) && estride % T::ALIGN == 0;
    return ok ? cudaSuccess : cudaErrorNotSupported;
}

/* rs's rows of a STORE, ADD or AXPY cuq_multi: its weights one after the
 * other (see CqRows). */
static void cq_rows_of(const struct cuq_multi *m, size_t row_bytes, CqRows &rs)
{
    int64_t end = 0;
    for (int i = 0; i < 3; i++) {
        if (i < m->n_w) {
            rs.w[i] = (const uint8_t *)((uintptr_t)m->w[i] - (uintptr_t)end * row_bytes);
            rs.y[i] = (float *)((uintptr_t)m->y[i] - (uintptr_t)end * sizeof(float));
            if (m->b[i])
                rs.b[i] = (const float *)((uintptr_t)m->b[i] - (uintptr_t)end * sizeof(float));
            rs.ldy[i] = m->n_rows[i];
            end += m->n_rows[i];
        }
        rs.end[i] = end;
    }
}

/* m's folded norm into rs; false where the kernels cannot fold it. */
static bool cq_rows_norm(const struct cuq_multi *m, int64_t n_cols, const float *x, CqRows &rs)
{
    const struct cuq_norm *nm = m->norm;
    if (!nm) return true;
    if (nm->y != x || !cq_aligned(nm->x, 16) || !cq_aligned(nm->w, 16) || n_cols % 4 != 0)
        return false;
    rs.nx = nm->x;
    rs.nw = nm->w;
    rs.ny = nm->y;
    rs.eps = nm->eps;
    return true;
}

/* A DIAG call's k >= 2 products in cq_matvec_i8s_diag_kernel
 * (HYPURA_CUDA_DIAG_STAGED=0: in the integer kernel of k tokens);
 * cudaErrorNotSupported where it does not take them. */
static bool cq_diag_staged_on()
{
    static const bool on = cq_switch_on("HYPURA_CUDA_DIAG_STAGED");
    return on;
}

template <class T>
static cudaError_t cq_diag_staged(const CqRows &rs, size_t row_bytes, int64_t n_cols,
                                  const float *x, int64_t n_tok, cudaStream_t s, bool early)
{
    if constexpr (!CqI8<T>::ON) {
        return cudaErrorNotSupported;
    } else {
        constexpr int R = CqShape<T, 1>::R;
        if (!cq_staged_on() || !cq_diag_staged_on() || n_tok < 2 || n_tok > CQ_DIAG_MAX ||
            rs.np != n_tok || n_cols % T::BS != 0)
            return cudaErrorNotSupported;
        const CqDev dev = cq_dev();
        const int smem_max = cq_smem_max(dev);
        int64_t ring_off;
        const int64_t smem = cq_i8s_smem<T>(cq_i8s_x_bytes<T>(n_cols, false), &ring_off);
        if (smem > smem_max) return cudaErrorNotSupported;
        static std::atomic<int> occ_regs[64];
        const int occ = cq_occupancy(cq_matvec_i8s_diag_kernel<T, R>, occ_regs, true,
                                     (size_t)smem, sizeof(float) * CQ_WARPS * R, dev, smem_max);
        if (occ < 2) return cudaErrorNotSupported;
        int ks_log2;
        const unsigned share = cq_matvec_split<T, R, CqStage<T>::M>(
            rs.pr, n_cols, (int64_t)occ * dev.sms / n_tok, ks_log2);
        CqDiagRows d = {};
        for (int p = 0; p < n_tok; p++) {
            CqRows &r = d.r[p];
            r = rs;
            r.np = 1;
            r.w[0] = rs.w[p];
            r.y[0] = rs.y[p];
            r.ids = rs.ids && p >= rs.p0 ? rs.ids + (p - rs.p0) : NULL;
            r.p0 = 0;
        }
        pdl_launch(cq_matvec_i8s_diag_kernel<T, R>, dim3(share * (unsigned)n_tok), CQ_THREADS,
                   (size_t)smem, s, early, d, row_bytes, rs.pr, n_cols, x, ks_log2, (int)ring_off,
                   cq_l2_first_on(), share);
        return cudaGetLastError();
    }
}

/* cuq_matvec_multi for type T; m checked but for the alignment. */
template <class T>
static cudaError_t cq_matvec_multi_type(const struct cuq_multi *m, size_t row_bytes, int64_t n_cols,
                                        const float *x, int64_t n_tok, cudaStream_t s, bool early)
{
    if (!T::FLOAT && n_cols % T::BS != 0) return cudaErrorInvalidValue;
    const bool swiglu = m->ep == CUQ_EP_SWIGLU, diag = m->ep == CUQ_EP_DIAG;
    CqRows rs = {};
    for (int i = 0; i < m->n_w; i++)
        if (cq_multi_check<T>(m->w[i], row_bytes, n_cols, x, m->ids ? m->estride : 0) !=
            cudaSuccess)
            return cudaErrorNotSupported;
    if (swiglu || diag) {
        rs.np = swiglu ? m->n_w / 2 : m->n_w;
        rs.pr = m->n_rows[0];
        for (int i = 0; i < m->n_w; i++) rs.w[i] = (const uint8_t *)m->w[i];
        for (int p = 0; p < rs.np; p++) rs.y[p] = m->y[swiglu ? 2 * p : p];
        rs.ldy[0] = rs.pr;
        rs.ids = m->ids;
        rs.estride = m->estride;
        rs.p0 = m->ids_from;
    } else {
        cq_rows_of(m, row_bytes, rs);
    }
    rs.ep = m->ep;
    rs.add_early = m->ep == CUQ_EP_ADD && cq_add_early_on();
    rs.alpha = m->alpha;
    rs.mo = m->moe_o;
    rs.malpha = m->moe_alpha;
    rs.mgate = m->moe_gate;
    rs.mids = m->moe_ids;
    rs.mk = m->moe_k;
    if (!cq_rows_norm(m, n_cols, x, rs)) return cudaErrorNotSupported;
    if (diag) {
        const cudaError_t e = cq_diag_staged<T>(rs, row_bytes, n_cols, x, n_tok, s, early);
        if (e != cudaErrorNotSupported) return e;
    }
    const int64_t n_rows = swiglu ? 2 * rs.np * rs.pr : diag ? rs.np * rs.pr : rs.end[2];
    return cq_matvec_rows<T>(rs, row_bytes, n_rows, n_cols, x, n_tok, s, early);
}

/* The slots CTAs that fit at once shared between a pair launch's n1 rows
 * of T1 and n2 rows of T2 (their splits and grids given back): so that the
 * CTA with the most bytes has the fewest (whole tiles: a share's CTAs get
 * within one tile of each other), then so that the fewest CTAs run (each
 * quantizes x). On an H100 the llama-3-8b shape's q and k (Q4_K, 320 tiles)
 * take 160 CTAs, two tiles each, and v (Q6_K) 64 of one tile. The last
 * shapes' choices are kept (a model's layers repeat a few). */
template <class T1, int R1, class T2, int R2>
static void cq_pair_split(int64_t n1, int64_t n2, int64_t n_cols, size_t row_bytes1,
                          size_t row_bytes2, int64_t slots, int &ks1, int &ks2, unsigned &g1,
                          unsigned &g2)
{
    struct choice {
        int64_t n1, n2, n_cols, slots;
        int ks1, ks2;
        unsigned g1, g2;
    };
    static thread_local choice kept[4];
    static thread_local int next;
    choice *c = NULL;
    for (choice &k : kept)
        if (k.n1 == n1 && k.n2 == n2 && k.n_cols == n_cols && k.slots == slots) c = &k;
    if (!c) {
        c = &kept[next];
        next = (next + 1) % 4;
        *c = {n1, n2, n_cols, slots, 0, 0, 1, 1};
        int64_t best = INT64_MAX;
        for (int64_t c2 = 1; c2 < slots; c2++) {
            int k1, k2;
            unsigned h1, h2;
            const int64_t t1 = cq_split_bytes<T1, R1, CqStage<T1>::M>(n1, n_cols, row_bytes1,
                                                                     slots - c2, k1, h1);
            const int64_t t2 =
                cq_split_bytes<T2, R2, CqStage<T2>::M>(n2, n_cols, row_bytes2, c2, k2, h2);
            const int64_t t = t1 > t2 ? t1 : t2;
            if (t < best || (t == best && h1 + h2 < c->g1 + c->g2)) {
                best = t;
                c->ks1 = k1, c->ks2 = k2, c->g1 = h1, c->g2 = h2;
            }
        }
    }
    ks1 = c->ks1, ks2 = c->ks2, g1 = c->g1, g2 = c->g2;
}

/* cuq_matvec_pair for types T1 and T2 (m1 and m2 checked as
 * cuq_matvec_pair says, but for their types and alignment). */
template <class T1, class T2>
static cudaError_t cq_matvec_pair_type(const struct cuq_multi *m1, size_t row_bytes1,
                                       const struct cuq_multi *m2, size_t row_bytes2,
                                       int64_t n_cols, const float *x, cudaStream_t s, bool early)
{
    if constexpr (!CqI8<T1>::ON || !CqI8<T2>::ON) {
        return cudaErrorNotSupported;
    } else {
        if (n_cols % T1::BS != 0 || n_cols % T2::BS != 0 || !cq_staged_on())
            return cudaErrorNotSupported;
        for (int i = 0; i < m1->n_w; i++)
            if (cq_multi_check<T1>(m1->w[i], row_bytes1, n_cols, x, 0) != cudaSuccess)
                return cudaErrorNotSupported;
        for (int i = 0; i < m2->n_w; i++)
            if (cq_multi_check<T2>(m2->w[i], row_bytes2, n_cols, x, 0) != cudaSuccess)
                return cudaErrorNotSupported;
        CqRows rs1 = {}, rs2 = {};
        cq_rows_of(m1, row_bytes1, rs1);
        cq_rows_of(m2, row_bytes2, rs2);
        rs1.ep = rs2.ep = CUQ_EP_STORE;
        if (!cq_rows_norm(m1, n_cols, x, rs1) || !cq_rows_norm(m2, n_cols, x, rs2))
            return cudaErrorNotSupported;
        const int64_t n1 = rs1.end[2], n2 = rs2.end[2];
        constexpr int R1 = CqShape<T1, 1>::R, R2 = CqShape<T2, 1>::R;
        const CqDev dev = cq_dev();
        const int smem_max = cq_smem_max(dev);
        /* each share's x and then its ring */
        const bool norm = rs1.nx != NULL;
        int64_t ring1, ring2;
        const int64_t end1 = cq_i8s_smem<T1>(cq_i8s_x_bytes<T1>(n_cols, norm), &ring1);
        const int64_t end2 = cq_i8s_smem<T2>(cq_i8s_x_bytes<T2>(n_cols, norm), &ring2);
        const int64_t smem = end1 > end2 ? end1 : end2;
        if (smem > smem_max) return cudaErrorNotSupported;
        auto kern = norm ? cq_matvec_i8s_pair_kernel<T1, R1, T2, R2, true>
                         : cq_matvec_i8s_pair_kernel<T1, R1, T2, R2, false>;
        static std::atomic<int> occ_regs[2][64];
        const int occ = cq_occupancy(kern, occ_regs[norm], true, (size_t)smem,
                                     sizeof(float) * CQ_WARPS * (R1 + R2), dev, smem_max);
        if (occ < 2) return cudaErrorNotSupported;
        int ks1, ks2;
        unsigned g1, g2;
        cq_pair_split<T1, R1, T2, R2>(n1, n2, n_cols, row_bytes1, row_bytes2,
                                      (int64_t)occ * dev.sms, ks1, ks2, g1, g2);
        pdl_launch(kern, dim3(g1 + g2), CQ_THREADS, (size_t)smem, s, early, rs1, rs2, row_bytes1,
                   row_bytes2, n1, n2, n_cols, x, ks1, ks2, (int)ring1, (int)ring2, g1,
                   cq_l2_first_on());
        return cudaGetLastError();
    }
}

/* cuq_group's launch of cq_group_i8_kernel<T, SWIGLU>: each chunk's tiles
 * dealt to enough CTAs that all chunks make about four waves of CTAs (a
 * CTA quantizes its chunk's x first: fewer CTAs a chunk repeat that less). */
template <class T, bool SWIGLU>
static void cq_group_launch(const cuq_chunk *chunks, int n_chunks, size_t row_bytes, int64_t n_rows,
                            int64_t n_cols, const float *x, float *y, int64_t ldy, size_t smem,
                            const CqDev &dev, int smem_max, cudaStream_t s)
{
    static std::atomic<int> occ_regs[64];
    const int occ =
        cq_occupancy(cq_group_i8_kernel<T, SWIGLU>, occ_regs, true, smem, 0, dev, smem_max);
    const int64_t tile_rows = (int64_t)CQ_WARPS * 2;
    const int64_t n_tiles = ((SWIGLU ? 2 * n_rows : n_rows) + tile_rows - 1) / tile_rows;
    const int64_t want = (4 * (int64_t)occ * dev.sms + n_chunks - 1) / n_chunks;
    const unsigned gx = (unsigned)(want < 1 ? 1 : want < n_tiles ? want : n_tiles);
    cq_group_i8_kernel<T, SWIGLU><<<dim3(gx, (unsigned)n_chunks), CQ_THREADS, smem, s>>>(
        chunks, row_bytes, n_rows, n_cols, x, y, ldy);
}

/* Whether cuq_group takes weights of type T, n_cols and row_bytes at w
 * (NULL: any 16-byte aligned address) on dev; its shared bytes in *smem. */
template <class T>
static cudaError_t cq_group_check(int64_t n_cols, size_t row_bytes, const void *w,
                                  const CqDev &dev, size_t *smem)
{
    if constexpr (!CqI8<T>::ON) {
        return cudaErrorNotSupported;
    } else {
        if (n_cols <= 0 || n_cols % T::BS != 0 || row_bytes % T::ALIGN != 0 ||
            (w && !cq_aligned(w, T::ALIGN)))
            return cudaErrorNotSupported;
        const int64_t b = cq_i8_smem<T>(n_cols, CUQ_GROUP_TOK);
        if (b > cq_smem_max(dev)) return cudaErrorNotSupported;
        *smem = (size_t)b;
        return cudaSuccess;
    }
}

template <class T>
static cudaError_t cq_group_type(bool swiglu, const cuq_chunk *chunks, int n_chunks,
                                 size_t row_bytes, int64_t n_rows, int64_t n_cols, const float *x,
                                 float *y, int64_t ldy, cudaStream_t s)
{
    const CqDev dev = cq_dev();
    size_t smem = 0;
    const cudaError_t e = cq_group_check<T>(n_cols, row_bytes, NULL, dev, &smem);
    if (e != cudaSuccess) return e;
    if (!cq_aligned(x, 16)) return cudaErrorNotSupported;
    if constexpr (CqI8<T>::ON) {
        if (swiglu)
            cq_group_launch<T, true>(chunks, n_chunks, row_bytes, n_rows, n_cols, x, y, ldy, smem,
                                     dev, cq_smem_max(dev), s);
        else
            cq_group_launch<T, false>(chunks, n_chunks, row_bytes, n_rows, n_cols, x, y, ldy, smem,
                                      dev, cq_smem_max(dev), s);
    }
    return cudaGetLastError();
}

template <class T>
static cudaError_t cq_dequant_type(uint32_t type, const void *w, size_t row_bytes, int64_t n_rows,
                                   int64_t n_cols, const int32_t *ids, void *out, bool f16,
                                   cudaStream_t s)
{
    if (!T::FLOAT && n_cols % T::BS != 0) return cudaErrorInvalidValue;
    const bool fast = cq_aligned(w, T::ALIGN) && row_bytes % T::ALIGN == 0 &&
                      cq_aligned(out, f16 ? 8 : 16) && n_cols % 4 == 0;
    const uint8_t *wb = (const uint8_t *)w;
    if (!fast) {
        const unsigned grid = cq_grid((n_rows * n_cols + CQ_THREADS - 1) / CQ_THREADS);
        if (f16)
            cq_dequant_any_kernel<true>
                <<<grid, CQ_THREADS, 0, s>>>(type, wb, row_bytes, n_rows, n_cols, ids, out);
        else
            cq_dequant_any_kernel<false>
                <<<grid, CQ_THREADS, 0, s>>>(type, wb, row_bytes, n_rows, n_cols, ids, out);
        return cudaGetLastError();
    }
    const int64_t nb = n_cols / T::BS;
    const int64_t items = nb * T::P + (nb * T::BS < n_cols ? 1 : 0);
    const unsigned grid = cq_grid(n_rows * items / CQ_THREADS + 1);
    const bool wide = n_cols % 8 == 0 && cq_aligned(out, 16);
    if constexpr (!T::FLOAT) {
        if (f16 && !ids && wide) {
            const int64_t per_warp = 32 >> CqLog2<T::P>::value; /* blocks */
            const int64_t warps = (n_rows * nb + per_warp - 1) / per_warp;
            cq_dequant_f16_kernel<T>
                <<<cq_grid((warps + CQ_WARPS - 1) / CQ_WARPS), CQ_THREADS, 0, s>>>(
                    wb, row_bytes, n_rows, n_cols, (uint16_t *)out);
            return cudaGetLastError();
        }
    }
    if (f16)
        cq_dequant_kernel<T, true>
            <<<grid, CQ_THREADS, 0, s>>>(wb, row_bytes, n_rows, n_cols, ids, out, wide);
    else
        cq_dequant_kernel<T, false>
            <<<grid, CQ_THREADS, 0, s>>>(wb, row_bytes, n_rows, n_cols, ids, out, wide);
    return cudaGetLastError();
}

/* Calls F<T>(args...) for the traits of type; cudaErrorInvalidValue for others. */
#define CQ_DISPATCH(type, F, ...)                                                                  \
    switch (type) {                                                                                \
    case CQ_F32:                                                                                   \
        return F<TF32>(__VA_ARGS__);                                                               \
    case CQ_F16:                                                                                   \
        return F<TF16>(__VA_ARGS__);                                                               \
    case CQ_BF16:                                                                                  \
        return F<TBF16>(__VA_ARGS__);                                                              \
    case CQ_Q4_0:                                                                                  \
        return F<TQ4_0>(__VA_ARGS__);                                                              \
    case CQ_Q4_1:                                                                                  \
        return F<TQ4_1>(__VA_ARGS__);                                                              \
    case CQ_Q5_0:                                                                                  \
        return F<TQ5_0>(__VA_ARGS__);                                                              \
    case CQ_Q5_1:                                                                                  \
        return F<TQ5_1>(__VA_ARGS__);                                                              \
    case CQ_Q8_0:                                                                                  \
        return F<TQ8_0>(__VA_ARGS__);                                                              \
    case CQ_Q2_K:                                                                                  \
        return F<TQ2_K>(__VA_ARGS__);                                                              \
    case CQ_Q3_K:                                                                                  \
        return F<TQ3_K>(__VA_ARGS__);                                                              \
    case CQ_Q4_K:                                                                                  \
        return F<TQ4_K>(__VA_ARGS__);                                                              \
    case CQ_Q5_K:                                                                                  \
        return F<TQ5_K>(__VA_ARGS__);                                                              \
    case CQ_Q6_K:                                                                                  \
        return F<TQ6_K>(__VA_ARGS__);                                                              \
    default:                                                                                       \
        return cudaErrorInvalidValue;                                                              \
    }

/* ---- host check -------------------------------------------------------
 * The items' arithmetic run on the CPU, no device needed: rows 0 and 1 of w
 * as cq_dq_item gives their values, put at their columns, and their
 * products with x as cq_mv_item sums them for the matvec that reads x from
 * global memory (cuq_host_rows). */
template <class T>
static cudaError_t cq_host_rows(const uint8_t *w, size_t row_bytes, int64_t n_cols,
                                const float *x, float *values, float *dots)
{
    if (n_cols <= 0 || n_cols % T::BS != 0) return cudaErrorInvalidValue;
    const int64_t nb = n_cols / T::BS;
    float acc[2][1] = {{0.0f}, {0.0f}};
    for (int64_t b = 0; b < nb; b++) {
        for (int p = 0; p < T::P; p++) {
            typename T::Raw raw[2];
            for (int r = 0; r < 2; r++) {
                T::load(raw[r], w + r * row_bytes + b * T::BB, p);
                float v[T::NRUN][4];
                cq_dq_item<T>(raw[r], p, v);
                for (int j = 0; j < T::NRUN; j++)
                    for (int k = 0; k < 4; k++)
                        values[r * n_cols + b * T::BS + T::cbase(p) + T::coff(j) + k] = v[j][k];
            }
            cq_mv_item<T, 1, 2>(raw, p, x + b * T::BS + T::cbase(p), n_cols, acc);
        }
    }
    dots[0] = acc[0][0];
    dots[1] = acc[1][0];
    return cudaSuccess;
}

extern "C" cudaError_t cuq_host_rows(uint32_t type, const void *w, size_t row_bytes,
                                     int64_t n_cols, const float *x, float *values, float *dots)
{
    CQ_DISPATCH(type, cq_host_rows, (const uint8_t *)w, row_bytes, n_cols, x, values, dots)
}

extern "C" bool cuq_supports(uint32_t type)
{
    switch (type) {
    case CQ_F32:
    case CQ_F16:
    case CQ_BF16:
    case CQ_Q4_0:
    case CQ_Q4_1:
    case CQ_Q5_0:
    case CQ_Q5_1:
    case CQ_Q8_0:
    case CQ_Q2_K:
    case CQ_Q3_K:
    case CQ_Q4_K:
    case CQ_Q5_K:
    case CQ_Q6_K:
        return true;
    default:
        return false;
    }
}

extern "C" cudaError_t cuq_matvec(uint32_t type, const void *w, size_t row_bytes, int64_t n_rows,
                                  int64_t n_cols, const float *x, int64_t n_tok, float *y,
                                  int64_t ldy, cudaStream_t s, bool early)
{
    if (!cuq_supports(type) || n_tok < 0 || n_tok > CUQ_MATVEC_MAX_TOK || n_rows < 0 || n_cols < 0)
        return cudaErrorInvalidValue;
    if (n_rows == 0 || n_tok == 0) return cudaSuccess;
    CQ_DISPATCH(type, cq_matvec_type, type, w, row_bytes, n_rows, n_cols, x, n_tok, y, ldy, s,
                early)
}

extern "C" cudaError_t cuq_matvec_multi(uint32_t type, const struct cuq_multi *m, size_t row_bytes,
                                        int64_t n_cols, const float *x, int64_t n_tok,
                                        cudaStream_t s, bool early)
{
    if (!m || n_tok < 0 || n_cols < 0) return cudaErrorInvalidValue;
    const bool swiglu = m->ep == CUQ_EP_SWIGLU, diag = m->ep == CUQ_EP_DIAG;
    const int max_w = swiglu ? CUQ_MULTI_MAX : diag ? CUQ_MULTI_MAX / 2 : 3;
    if (m->n_w < 1 || m->n_w > max_w || n_tok > CUQ_MATVEC_MAX_TOK || !cuq_supports(type))
        return cudaErrorNotSupported;
    int64_t rows = 0;
    for (int i = 0; i < m->n_w; i++) {
        if (m->n_rows[i] < 0) return cudaErrorInvalidValue;
        if ((swiglu || diag) && m->n_rows[i] != m->n_rows[0]) return cudaErrorNotSupported;
        rows += m->n_rows[i];
    }
    if (m->ids && ((!swiglu && !diag) || m->ids_from < 0)) return cudaErrorNotSupported;
    const bool ep_ok =
        m->ep == CUQ_EP_STORE || ((m->ep == CUQ_EP_ADD || m->ep == CUQ_EP_AXPY) && m->n_w == 1) ||
        (swiglu && m->n_w % 2 == 0) || (diag && n_tok == m->n_w && !m->norm) ||
        (m->ep == CUQ_EP_MOE && m->n_w == 1 && n_tok == 1 && m->moe_k >= 1 &&
         m->moe_k <= CUQ_MOE_MAX_K && m->moe_o && m->moe_alpha && m->moe_gate && m->moe_ids);
    if (!ep_ok) return cudaErrorNotSupported;
    if (m->ep != CUQ_EP_STORE)
        for (int i = 0; i < 3; i++)
            if (m->b[i]) return cudaErrorNotSupported;
    if (rows == 0 || n_tok == 0) return cudaSuccess;
    CQ_DISPATCH(type, cq_matvec_multi_type, m, row_bytes, n_cols, x, n_tok, s, early)
}

extern "C" cudaError_t cuq_matvec_pair(uint32_t type1, const struct cuq_multi *m1,
                                       size_t row_bytes1, uint32_t type2,
                                       const struct cuq_multi *m2, size_t row_bytes2,
                                       int64_t n_cols, const float *x, cudaStream_t s, bool early)
{
    if (!m1 || !m2 || n_cols <= 0) return cudaErrorInvalidValue;
    for (const struct cuq_multi *m : {m1, m2}) {
        if (m->ep != CUQ_EP_STORE || m->n_w < 1 || m->n_w > 3 || m->ids) return cudaErrorNotSupported;
        for (int i = 0; i < m->n_w; i++)
            if (m->n_rows[i] <= 0) return cudaErrorNotSupported;
    }
    if (m1->norm != m2->norm) return cudaErrorNotSupported;
    /* q and k of Q4_K or Q5_K beside a Q6_K v (Q4_K_M, Q5_K_M), q beside k
     * and v of Q8_0 (those files of 8-expert models) */
    const auto pair = type1 == CQ_Q4_K && type2 == CQ_Q6_K   ? cq_matvec_pair_type<TQ4_K, TQ6_K>
                      : type1 == CQ_Q5_K && type2 == CQ_Q6_K ? cq_matvec_pair_type<TQ5_K, TQ6_K>
                      : type1 == CQ_Q4_K && type2 == CQ_Q8_0 ? cq_matvec_pair_type<TQ4_K, TQ8_0>
                      : type1 == CQ_Q5_K && type2 == CQ_Q8_0 ? cq_matvec_pair_type<TQ5_K, TQ8_0>
                                                             : nullptr;
    if (pair) return pair(m1, row_bytes1, m2, row_bytes2, n_cols, x, s, early);
    if ((type1 == CQ_Q6_K || type1 == CQ_Q8_0) && (type2 == CQ_Q4_K || type2 == CQ_Q5_K))
        /* the same, in that order */
        return cuq_matvec_pair(type2, m2, row_bytes2, type1, m1, row_bytes1, n_cols, x, s, early);
    return cudaErrorNotSupported;
}

extern "C" bool cuq_multi_supports(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                                   const float *x, int64_t estride)
{
    if (!cuq_supports(type) || n_cols <= 0 || estride < 0) return false;
    const cudaError_t e = [&]() -> cudaError_t {
        CQ_DISPATCH(type, cq_multi_check, w, row_bytes, n_cols, x, estride)
    }();
    return e == cudaSuccess;
}

extern "C" bool cuq_group_supports(uint32_t type, int64_t n_cols, size_t row_bytes, const void *w)
{
    if (!cuq_supports(type)) return false;
    size_t smem = 0;
    const cudaError_t e = [&]() -> cudaError_t {
        CQ_DISPATCH(type, cq_group_check, n_cols, row_bytes, w, cq_dev(), &smem)
    }();
    return e == cudaSuccess;
}

extern "C" cudaError_t cuq_group(uint32_t type, bool swiglu, const struct cuq_chunk *chunks,
                                 int n_chunks, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                                 const float *x, float *y, int64_t ldy, cudaStream_t s)
{
    if (!cuq_supports(type) || n_chunks < 0 || n_chunks > 65535 || n_rows < 0 || n_cols < 0)
        return cudaErrorInvalidValue;
    if (n_chunks == 0 || n_rows == 0) return cudaSuccess;
    CQ_DISPATCH(type, cq_group_type, swiglu, chunks, n_chunks, row_bytes, n_rows, n_cols, x, y, ldy,
                s)
}

extern "C" cudaError_t cuq_dequant_f16(uint32_t type, const void *w, size_t row_bytes,
                                       int64_t n_rows, int64_t n_cols, uint16_t *out,
                                       cudaStream_t s)
{
    if (!cuq_supports(type) || n_rows < 0 || n_cols < 0) return cudaErrorInvalidValue;
    if (n_rows == 0 || n_cols == 0) return cudaSuccess;
    CQ_DISPATCH(type, cq_dequant_type, type, w, row_bytes, n_rows, n_cols, (const int32_t *)NULL,
                (void *)out, true, s)
}

extern "C" cudaError_t cuq_get_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                                    const int32_t *ids, int64_t n, float *out, cudaStream_t s)
{
    if (!cuq_supports(type) || n < 0 || n_cols < 0) return cudaErrorInvalidValue;
    if (n == 0 || n_cols == 0) return cudaSuccess;
    CQ_DISPATCH(type, cq_dequant_type, type, w, row_bytes, n, n_cols, ids, (void *)out, false, s)
}

extern "C" cudaError_t cuq_trace_set(const struct cuk_trace *t)
{
    return cut_set(t);
}
