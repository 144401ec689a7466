/*
 * The CUDA kernels of every op but the weight products (cuda_quant.cu):
 * norms, RoPE, softmax, element-wise ops, gathers and attention. Each
 * follows the arithmetic of the CPU backend (src/backend/cpu) where that
 * matters for agreement: RMSNorm sums squares in double, RoPE angles are
 * computed in double, the KV cache conversions round as the reference
 * converters do.
 *
 * Attention. Decode (one token) runs one block of ATT_THREADS threads per
 * (head, split), or per (G heads of one KV group, split) at long contexts:
 * the keys are split over up to ATT_MAX_SPLIT blocks per head
 * (flash-decoding), enough to fill the multiprocessors. In a block a thread
 * scores one key (its whole K row, so that many loads are in flight; or
 * neighbouring lanes share a key's dims where keys are fewer than threads), an
 * online softmax runs across chunks of ATT_CHUNK keys, and a thread per value
 * dimension sums its V row (transposed cache) or column (row-major). Each
 * block writes its (maximum, sum, partial output) and a second kernel
 * combines them.
 *
 * Batches (prompts) are tiled: a block takes FA_QT queries of one head and
 * walks the keys of their causal range in chunks of FA_KC, staging each
 * chunk's K and then V rows in shared memory once for all its queries (as
 * F32, converted from the cache type); a warp owns FA_ROWS query rows and
 * each lane one key of the chunk for the scores and FA_ROWS x head_dim_v / 32
 * output values for the weighted sum, with the same online softmax.
 */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_moe.cuh"
#include "backend/cuda/cuda_pdl.cuh"
#include "backend/cuda/cuda_trace.cuh"

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "quant/blocks.h"

/* enum hy_type ids (src/quant/quant.h) of the KV cache types */
#define T_F32  0u
#define T_F16  1u
#define T_Q8_0 8u

#define ATT_THREADS   128
#define ATT_WARPS     (ATT_THREADS / 32)
#define ATT_CHUNK     256
#define ATT_MAX_SPLIT CUK_ATT_MAX_SPLIT
#define ATT_MAX_DIM   CUK_ATT_MAX_DIM /* head_dim and head_dim_v */
#define ATT_MIN_KEYS  32  /* fewest keys of a decode split */
#define ATT_SPLIT_ALIGN 8 /* a decode split's first key: a multiple of it */
#define ATT_GQA_KEYS  64  /* keys a split of a KV group's heads, where they fill the device */
#define ATT_KB        16  /* K row pieces (16 bytes) a decode thread loads at once */
#define ATT_VB        8   /* V row pieces likewise */

#define FA_THREADS 256
#define FA_WARPS   (FA_THREADS / 32)
#define FA_ROWS    4                    /* query rows per warp */
#define FA_QT      (FA_WARPS * FA_ROWS) /* query rows per block */
#define FA_KC      32                   /* keys per chunk: one per lane */
static_assert(FA_ROWS == 4, "k_attention_tiled handles a warp's rows as one float4");

static inline unsigned n_blocks(int64_t n, int per)
{
    int64_t b = (n + per - 1) / per;
    return (unsigned)(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

struct op_sum {
    template <class T> __device__ T operator()(T a, T b) const
    {
        return a + b;
    }
};
struct op_max {
    __device__ float operator()(float a, float b) const
    {
        return fmaxf(a, b);
    }
};

/* v reduced over the whole block (every thread gets the result); id is the
 * operation's identity. Starts and ends with a barrier, so that it may be
 * called again right away. */
template <class T, class Op> __device__ static T block_reduce(T v, Op op, T id)
{
    __shared__ T part[32];
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : id;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    return part[0];
}

/* Each of v's G values reduced over the whole block, as block_reduce
 * (every thread gets the results; two barriers, the first before any
 * write, so that it may be called again right away). */
template <int G, class T, class Op> __device__ static void block_reduce_g(T (&v)[G], Op op, T id)
{
    __shared__ T part[G][32];
#pragma unroll
    for (int g = 0; g < G; g++)
        for (int o = 16; o > 0; o >>= 1) v[g] = op(v[g], __shfl_xor_sync(0xffffffffu, v[g], o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int g = 0; g < G; g++) part[g][threadIdx.x >> 5] = v[g];
    __syncthreads();
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int g = 0; g < G; g++) {
        T x = lane < (int)(blockDim.x >> 5) ? part[g][lane] : id;
        for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
        v[g] = x;
    }
}

/* ---- RMSNorm ------------------------------------------------------------ */

#define RMS_V4 4 /* 16-byte pieces of a row per thread (k_rms_norm4) */

/* The norm's factor of a row of n with sum of squares ss: 1 / sqrt(mean +
 * eps) in double, rounded to float once, as the CPU backend's. */
__device__ __forceinline__ static float rms_scale(double ss, int64_t n, float eps)
{
    return (float)(1.0 / sqrt(ss / (double)n + (double)eps));
}

/* RMSNorm of row blockIdx.x: the sum of squares in double, as the CPU
 * backend's, then x * scale * w. Rows of any length and alignment;
 * k_rms_norm4 takes those of whole 16-byte pieces. */
__global__ static void k_rms_norm(const float *x, const float *w, float eps, int64_t n, float *y)
{
    pdl_trigger();
    pdl_wait();
    const float *xt = x + blockIdx.x * n;
    float *yt = y + blockIdx.x * n;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xt[i] * xt[i];
    ss = block_reduce(ss, op_sum(), 0.0);
    const float s = rms_scale(ss, n, eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yt[i] = xt[i] * s * w[i];
}

/* k_rms_norm for rows of whole 16-byte pieces (n4 of them), each thread
 * holding up to RMS_V4 of a row: few warps (few instructions for the
 * block's one multiprocessor to issue), each with its loads in flight at once.
 * Blocks from `split` on take the rows of a second norm (x2, w2, y2). */
__global__ static void k_rms_norm4(const float4 *x, const float4 *w, float4 *y, unsigned split,
                                   const float4 *x2, const float4 *w2, float4 *y2, float eps,
                                   int64_t n4)
{
    pdl_trigger();
    unsigned r = blockIdx.x;
    if (r >= split) {
        r -= split;
        x = x2;
        w = w2;
        y = y2;
    }
    const float4 *xt = x + r * n4;
    float4 *yt = y + r * n4;
    const int bd = (int)blockDim.x;
    const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 wr[RMS_V4], xr[RMS_V4];
#pragma unroll
    for (int k = 0; k < RMS_V4; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * bd;
        wr[k] = i < n4 ? w[i] : z; /* before the previous kernel is done */
    }
    pdl_wait();
#pragma unroll
    for (int k = 0; k < RMS_V4; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * bd;
        xr[k] = i < n4 ? xt[i] : z;
    }
    double ss = 0.0;
#pragma unroll
    for (int k = 0; k < RMS_V4; k++) {
        ss += (double)xr[k].x * xr[k].x;
        ss += (double)xr[k].y * xr[k].y;
        ss += (double)xr[k].z * xr[k].z;
        ss += (double)xr[k].w * xr[k].w;
    }
    ss = block_reduce(ss, op_sum(), 0.0);
    const float sc = rms_scale(ss, 4 * n4, eps);
#pragma unroll
    for (int k = 0; k < RMS_V4; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * bd;
        if (i < n4)
            yt[i] = make_float4(xr[k].x * sc * wr[k].x, xr[k].y * sc * wr[k].y,
                                xr[k].z * sc * wr[k].z, xr[k].w * sc * wr[k].w);
    }
}

/* Whether k_rms_norm4 takes rows of n at x, w and y. */
static bool rms_norm4_takes(const float *x, const float *w, const float *y, int64_t n)
{
    return n % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)w & 15) == 0 &&
           ((uintptr_t)y & 15) == 0 && n <= 4 * RMS_V4 * 1024;
}

/* k_rms_norm4 over n1 rows of (x1, w1, y1) and n2 of (x2, w2, y2): a row per
 * block, of as few warps as hold it. */
static cudaError_t rms_norm4(const float *x1, const float *w1, float *y1, int64_t n1,
                             const float *x2, const float *w2, float *y2, int64_t n2, float eps,
                             int64_t n, cudaStream_t s, bool early)
{
    const int64_t n4 = n / 4;
    int threads = (int)((n4 + RMS_V4 - 1) / RMS_V4 + 31) / 32 * 32;
    threads = threads < 128 ? 128 : threads;
    return pdl_launch(k_rms_norm4, dim3((unsigned)(n1 + n2)), (unsigned)threads, 0, s, early,
                      (const float4 *)x1, (const float4 *)w1, (float4 *)y1, (unsigned)n1,
                      (const float4 *)x2, (const float4 *)w2, (float4 *)y2, eps, n4);
}

extern "C" cudaError_t cuk_rms_norm2(const float *x1, const float *w1, float *y1, int64_t n1,
                                     const float *x2, const float *w2, float *y2, int64_t n2,
                                     float eps, int64_t n, cudaStream_t s, bool early)
{
    if (n1 <= 0 || n2 <= 0 || n1 + n2 > INT32_MAX || !rms_norm4_takes(x1, w1, y1, n) ||
        !rms_norm4_takes(x2, w2, y2, n))
        return cudaErrorNotSupported;
    return rms_norm4(x1, w1, y1, n1, x2, w2, y2, n2, eps, n, s, early);
}

extern "C" cudaError_t cuk_rms_norm(const float *x, const float *w, float eps, int64_t n_tok,
                                    int64_t n, float *y, cudaStream_t s, bool early)
{
    if (n_tok <= 0) return cudaSuccess;
    if (rms_norm4_takes(x, w, y, n))
        return rms_norm4(x, w, y, n_tok, NULL, NULL, NULL, 0, eps, n, s, early);
    /* a row per block, wide (many loads in flight) */
    const int threads = n >= 4096 ? 1024 : n >= 1024 ? 256 : 128;
    return pdl_launch(k_rms_norm, dim3((unsigned)n_tok), (unsigned)threads, 0, s, early, x, w, eps,
                      n, y);
}

/* ---- RoPE --------------------------------------------------------------- */

/* cos and sin of RoPE pair i at position pos (angles in double). */
__device__ static inline void rope_cs(const struct cuk_rope &r, int64_t pos, int64_t i, float &c,
                                      float &sn)
{
    double f;
    if (r.inv) {
        f = r.inv[i];
    } else {
        f = r.freq_scale * pow(r.freq_base, -2.0 * (double)i / (double)r.n_rot);
        if (r.ff) f /= (double)r.ff[i];
    }
    const double ang = (double)pos * f;
    c = (float)cos(ang);
    sn = (float)sin(ang);
}

/* Rotates pair i of one head v in place, at position pos. */
__device__ static inline void rope_pair(const struct cuk_rope &r, float *v, int64_t pos, int64_t i)
{
    const int64_t half = r.n_rot / 2;
    float c, sn;
    rope_cs(r, pos, i, c, sn);
    const int64_t a = r.neox ? i : 2 * i, b = r.neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * sn;
    v[b] = x0 * sn + x1 * c;
}

__global__ static void k_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                              int64_t pos0, bool neox, int64_t n_rot, double freq_base,
                              double freq_scale, const float *ff)
{
    const struct cuk_rope r = {n_rot, neox, freq_base, freq_scale, ff, NULL};
    const int64_t half = n_rot / 2;
    const int64_t total = n_tok * n_head * half;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t th = g / half; /* t * n_head + h */
        rope_pair(r, x + th * head_dim, pos0 + th / n_head, g % half);
    }
}

extern "C" cudaError_t cuk_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                                int64_t pos0, bool neox, int64_t n_rot, float freq_base,
                                float freq_scale, const float *ff, cudaStream_t s)
{
    const int64_t total = n_tok * n_head * (n_rot / 2);
    if (total <= 0) return cudaSuccess;
    k_rope<<<n_blocks(total, 256), 256, 0, s>>>(x, n_tok, n_head, head_dim, pos0, neox, n_rot,
                                                (double)freq_base, (double)freq_scale, ff);
    return cudaGetLastError();
}

/* ---- softmax, element-wise ---------------------------------------------- */

/* One block per row: maximum, exponentials and their sum (in double, as the
 * CPU backend sums), then the scaling. */
__global__ static void k_softmax(float *x, int64_t n)
{
    float *r = x + (int64_t)blockIdx.x * n;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, r[i]);
    mx = block_reduce(mx, op_max(), -INFINITY);
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(r[i] - mx);
        r[i] = e;
        sum += e;
    }
    sum = block_reduce(sum, op_sum(), 0.0);
    const float inv = (float)(1.0 / sum);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) r[i] *= inv;
}

extern "C" cudaError_t cuk_softmax(float *x, int64_t n_rows, int64_t n, cudaStream_t s)
{
    if (n_rows <= 0 || n <= 0) return cudaSuccess;
    k_softmax<<<(unsigned)n_rows, n >= 1024 ? 1024 : 128, 0, s>>>(x, n);
    return cudaGetLastError();
}

/* ---- routing ------------------------------------------------------------ */

/* One warp per token: the softmax of its router logits (as k_softmax: float
 * exponentials, their sum in double), then k rounds of a warp arg-max over the
 * experts not yet taken (a lane holds experts lane, lane + 32, ...: its taken
 * ones in a mask), ties to the lower id; weights renormalised in double as
 * the CPU backend does. n <= 32 * ROUTE_MAX_PER_LANE. */
#define ROUTE_MAX_PER_LANE 64

/* The warp's best (bp, be) of its lanes' (largest bp, ties to the lower
 * be), in every lane. A lane's bp is a probability (not negative, not NaN)
 * or -1 (none left): from compute capability 8.0 two warp reductions over
 * integers, whose order is the values' (bits of a float >= 0; -1 as 0,
 * below them, with be = n, above every expert), else five rounds of
 * shuffles. */
__device__ static inline void route_pick(float &bp, int &be)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned key = bp >= 0.0f ? __float_as_uint(bp) : 0u;
    const unsigned top = __reduce_max_sync(0xffffffffu, key);
    be = (int)__reduce_min_sync(0xffffffffu, key == top ? (unsigned)be : UINT32_MAX);
    bp = __uint_as_float(top);
#else
    for (int o = 16; o > 0; o >>= 1) {
        const float op = __shfl_xor_sync(0xffffffffu, bp, o);
        const int oe = __shfl_xor_sync(0xffffffffu, be, o);
        if (op > bp || (op == bp && oe < be)) {
            bp = op;
            be = oe;
        }
    }
#endif
}

__global__ static void k_route(float *x, int64_t n_tok, int n, int k, bool renorm, int32_t *ids,
                               float *w)
{
    pdl_trigger();
    pdl_wait();
    const int64_t t = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (t >= n_tok) return;
    float *r = x + t * n;
    float mx = -INFINITY;
    for (int e = lane; e < n; e += 32) mx = fmaxf(mx, r[e]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int e = lane; e < n; e += 32) {
        const float v = expf(r[e] - mx);
        r[e] = v;
        sum += v;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = (float)(1.0 / sum);
    for (int e = lane; e < n; e += 32) r[e] *= inv;
    __syncwarp();

    uint64_t taken = 0;
    double wsum = 0.0;
    float mine = 0.0f; /* lane j < k: the weight of pick j */
    int32_t mine_id = 0;
    for (int j = 0; j < k; j++) {
        float bp = -1.0f;
        int be = n;
        for (int e = lane, i = 0; e < n; e += 32, i++)
            if (!(taken >> i & 1) && r[e] > bp) { /* ascending e: the first of equals stays */
                bp = r[e];
                be = e;
            }
        route_pick(bp, be);
        if ((be & 31) == lane) taken |= 1ull << (be >> 5);
        if (lane == j) {
            mine = bp;
            mine_id = be;
        }
        wsum += bp;
    }
    if (lane < k) {
        ids[t * k + lane] = mine_id;
        w[t * k + lane] = !renorm ? mine : wsum > 0.0 ? (float)(mine / wsum) : 1.0f / (float)k;
    }
}

extern "C" cudaError_t cuk_route(float *x, int64_t n_tok, int64_t n, int64_t k, bool renorm,
                                 int32_t *ids, float *w, cudaStream_t s, bool early)
{
    if (n <= 0 || n > 32 * ROUTE_MAX_PER_LANE || k < 1 || k > n || k > 32)
        return cudaErrorInvalidValue;
    if (n_tok <= 0) return cudaSuccess;
    return pdl_launch(k_route, dim3(n_blocks(n_tok * 32, 128)), 128, 0, s, early, x, n_tok, (int)n,
                      (int)k, renorm, ids, w);
}

__global__ static void k_silu_mul(float *g, const float *u, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

extern "C" cudaError_t cuk_silu_mul(float *gate, const float *up, int64_t n, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    k_silu_mul<<<n_blocks(n, 256), 256, 0, s>>>(gate, up, n);
    return cudaGetLastError();
}

__global__ static void k_add(float *y, const float *x, float alpha, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = alpha == 1.0f ? y[i] + x[i] : y[i] + alpha * x[i];
}

extern "C" cudaError_t cuk_add(float *y, const float *x, float alpha, int64_t n, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    k_add<<<n_blocks(n, 256), 256, 0, s>>>(y, x, alpha, n);
    return cudaGetLastError();
}

struct AddN {
    float a[CUK_ADD_N_MAX];
};

__global__ static void k_add_n(float *y, const float *x, const AddN alpha, int n_rows, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = y[i];
#pragma unroll
        for (int r = 0; r < CUK_ADD_N_MAX; r++)
            if (r < n_rows) {
                const float a = alpha.a[r], xv = x[r * n + i];
                v = a == 1.0f ? v + xv : v + a * xv;
            }
        y[i] = v;
    }
}

extern "C" cudaError_t cuk_add_n(float *y, const float *x, const float *alpha, int n_rows,
                                 int64_t n, cudaStream_t s)
{
    if (n_rows < 1 || n_rows > CUK_ADD_N_MAX) return cudaErrorInvalidValue;
    if (n <= 0) return cudaSuccess;
    AddN a = {};
    for (int r = 0; r < n_rows; r++) a.a[r] = alpha[r];
    k_add_n<<<n_blocks(n, 256), 256, 0, s>>>(y, x, a, n_rows, n);
    return cudaGetLastError();
}

__global__ static void k_copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src,
                                   int64_t n, int64_t n_rows)
{
    const int64_t total = n_rows * n;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x)
        dst[g / n * ld_dst + g % n] = src[g / n * ld_src + g % n];
}

extern "C" cudaError_t cuk_copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src,
                                     int64_t n, int64_t n_rows, cudaStream_t s)
{
    if (n <= 0 || n_rows <= 0) return cudaSuccess;
    k_copy_rows<<<n_blocks(n_rows * n, 256), 256, 0, s>>>(dst, ld_dst, src, ld_src, n, n_rows);
    return cudaGetLastError();
}

__global__ static void k_copy_two(float *dst_a, const float *src_a, int64_t n_a, float *dst_b,
                                  const float *src_b, int64_t n_b)
{
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < n_a + n_b;
         g += (int64_t)gridDim.x * blockDim.x) {
        if (g < n_a)
            dst_a[g] = src_a[g];
        else
            dst_b[g - n_a] = src_b[g - n_a];
    }
}

extern "C" cudaError_t cuk_copy_two(float *dst_a, const float *src_a, int64_t n_a, float *dst_b,
                                    const float *src_b, int64_t n_b, cudaStream_t s)
{
    if (n_a < 0 || n_b < 0) return cudaErrorInvalidValue;
    if (n_a + n_b == 0) return cudaSuccess;
    k_copy_two<<<n_blocks(n_a + n_b, 256), 256, 0, s>>>(dst_a, src_a, n_a, dst_b, src_b, n_b);
    return cudaGetLastError();
}

/* Until the host has stored a value v into *flag with (int32_t)(v - value)
 * >= 0. Block 0's thread 0 alone polls flag, in host memory, and passes the
 * value on in *dflag (device memory) once it is there; the other blocks'
 * thread 0 poll dflag. Each poll of host memory is a read across PCIe:
 * tens of pollers took an H200's host-to-device copies beside them from
 * 54 GB/s to 9. Block 0 is scheduled first (the grid is small), so the
 * others' wait ends. The block waits for its thread 0. */
__device__ static void block_wait_flag(const uint32_t *flag, uint32_t *dflag, uint32_t value)
{
    if (threadIdx.x == 0) {
        const uint32_t *f = blockIdx.x == 0 ? flag : dflag;
        for (;;) {
            uint32_t v;
            asm volatile("ld.acquire.sys.u32 %0, [%1];" : "=r"(v) : "l"(f) : "memory");
            if ((int32_t)(v - value) >= 0) break;
            __nanosleep(128);
        }
        if (blockIdx.x == 0 && gridDim.x > 1)
            asm volatile("st.release.sys.u32 [%0], %1;" ::"l"(dflag), "r"(value) : "memory");
    }
    __syncthreads();
}

__global__ static void k_wait_add(float *y, const float *x, int64_t n, const uint32_t *flag,
                                  uint32_t *dflag, uint32_t value)
{
    block_wait_flag(flag, dflag, value);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = y[i] + x[i];
}

extern "C" cudaError_t cuk_wait_add(float *y, const float *x, int64_t n, const uint32_t *flag,
                                    uint32_t *dflag, uint32_t value, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    k_wait_add<<<n_blocks(n, 256), 256, 0, s>>>(y, x, n, flag, dflag, value);
    return cudaGetLastError();
}

/* Waits as k_wait_add does, then copies n floats of x (host memory the
 * device reads) into y. */
__global__ static void k_wait_copy(float *y, const float *x, int64_t n, const uint32_t *flag,
                                   uint32_t *dflag, uint32_t value)
{
    block_wait_flag(flag, dflag, value);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = x[i];
}

extern "C" cudaError_t cuk_wait_copy(float *y, const float *x, int64_t n, const uint32_t *flag,
                                     uint32_t *dflag, uint32_t value, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    k_wait_copy<<<n_blocks(n, 256), 256, 0, s>>>(y, x, n, flag, dflag, value);
    return cudaGetLastError();
}

__global__ static void k_add_bias(float *y, const float *b, int64_t n_tok, int64_t n)
{
    const int64_t total = n_tok * n;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x)
        y[g] += b[g % n];
}

extern "C" cudaError_t cuk_add_bias(float *y, const float *b, int64_t n_tok, int64_t n,
                                    cudaStream_t s)
{
    if (n_tok <= 0 || n <= 0) return cudaSuccess;
    k_add_bias<<<n_blocks(n_tok * n, 256), 256, 0, s>>>(y, b, n_tok, n);
    return cudaGetLastError();
}

__global__ static void k_add_rows(float *y, const float *x, const int32_t *rows, const float *alpha,
                                  int64_t n_rows, int64_t n)
{
    const int64_t total = n_rows * n;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = g / n, i = g % n;
        y[(int64_t)rows[r] * n + i] += alpha[r] * x[g];
    }
}

extern "C" cudaError_t cuk_add_rows(float *y, const float *x, const int32_t *rows,
                                    const float *alpha, int64_t n_rows, int64_t n, cudaStream_t s)
{
    if (n_rows <= 0 || n <= 0) return cudaSuccess;
    k_add_rows<<<n_blocks(n_rows * n, 256), 256, 0, s>>>(y, x, rows, alpha, n_rows, n);
    return cudaGetLastError();
}

/* The MoE combine of a batch: token t's k slots, in order, each the row of
 * o and the factor of one of its experts (row -1: none), added as k_add_rows
 * adds one expert's rows (the experts' shares in the order of the slots). */
__global__ static void k_moe_combine(float *y, const float *o, const int32_t *rows,
                                     const float *alpha, int64_t n_tok, int k, int64_t n)
{
    const int64_t total = n_tok * n;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = g / n, i = g % n;
        float v = y[g];
        for (int j = 0; j < k; j++) {
            const int32_t r = rows[t * k + j];
            if (r >= 0) v += alpha[t * k + j] * o[(int64_t)r * n + i];
        }
        y[g] = v;
    }
}

extern "C" cudaError_t cuk_moe_combine(float *y, const float *o, const int32_t *rows,
                                       const float *alpha, int64_t n_tok, int k, int64_t n,
                                       cudaStream_t s)
{
    if (n_tok <= 0 || n <= 0 || k <= 0) return cudaSuccess;
    k_moe_combine<<<n_blocks(n_tok * n, 256), 256, 0, s>>>(y, o, rows, alpha, n_tok, k, n);
    return cudaGetLastError();
}

/* One token's experts picked on the device: slot j's output o row j, its
 * expert ids[j] and factor alpha[j]; the slots are added in cuda_moe.cuh's
 * order, then the shared expert's output sh times sigmoid(*sh_gate) as
 * k_add_rows adds a row. */
__global__ static void k_moe_token_combine(float *y, const float *o, const int32_t *ids,
                                           const float *alpha, int k, int64_t n, const float *sh,
                                           const float *sh_gate)
{
    __shared__ int order[CUK_MOE_COMBINE_MAX];
    __shared__ float a[CUK_MOE_COMBINE_MAX];
    __shared__ float g;
    pdl_trigger();
    pdl_wait();
    if (threadIdx.x < k) { /* slot j's rank: the slots of smaller experts (ties: earlier slots) */
        const int j = threadIdx.x, e = ids[j];
        int r = 0;
        for (int i = 0; i < k; i++) r += moe_slot_before(ids[i], i, e, j);
        order[r] = j;
        a[r] = alpha[j];
    }
    if (threadIdx.x == 0 && sh) g = moe_shared_factor(*sh_gate);
    __syncthreads();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = y[i];
        for (int r = 0; r < k; r++) v = moe_share_add(v, a[r], o[(int64_t)order[r] * n + i]);
        if (sh) v += g * sh[i];
        y[i] = v;
    }
}

extern "C" cudaError_t cuk_moe_token_combine(float *y, const float *o, const int32_t *ids,
                                             const float *alpha, int k, int64_t n, const float *sh,
                                             const float *sh_gate, cudaStream_t s, bool early)
{
    if (k < 0 || k > CUK_MOE_COMBINE_MAX || (sh && !sh_gate)) return cudaErrorInvalidValue;
    if (n <= 0) return cudaSuccess;
    return pdl_launch(k_moe_token_combine, dim3(n_blocks(n, 256)), 256, 0, s, early, y, o, ids,
                      alpha, k, n, sh, sh_gate);
}

__global__ static void k_gather_f32(const float *x, int64_t n, const int32_t *ids, int64_t n_ids,
                                    float *out)
{
    const int64_t total = n_ids * n;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (int64_t)gridDim.x * blockDim.x)
        out[g] = x[(int64_t)ids[g / n] * n + g % n];
}

extern "C" cudaError_t cuk_gather_f32(const float *x, int64_t n, const int32_t *ids, int64_t n_ids,
                                      float *out, cudaStream_t s)
{
    if (n_ids <= 0 || n <= 0) return cudaSuccess;
    k_gather_f32<<<n_blocks(n_ids * n, 256), 256, 0, s>>>(x, n, ids, n_ids, out);
    return cudaGetLastError();
}

/* The largest finite binary16 value. */
#define F16_MAX 65504.0f
/* Blocks of the conversion: each walks the array with the grid's stride,
 * then counts itself done with one atomic on sc's ticket. */
#define F16_BLOCKS  1024
#define F16_THREADS 256

/* The power of two 2^e, e >= 0, that brings m to at most F16_MAX (1 where
 * it is there already, or is not finite). */
__device__ static float f16_alpha(float m)
{
    float a = 1.0f;
    if (!(m <= 3.0e38f)) return a;
    while (m > F16_MAX * a) a *= 2.0f;
    return a;
}

__global__ static void __launch_bounds__(F16_THREADS)
    k_f32_to_f16(const float *x, int64_t n, __half *out, struct cuk_f16_scale *sc)
{
    float m = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        out[i] = __float2half_rn(v);
        m = fmaxf(m, fabsf(v));
    }
    m = block_reduce(m, op_max(), 0.0f);
    __shared__ bool last;
    if (threadIdx.x == 0) {
        /* non-negative floats order as their bits do; NaN was left out by fmaxf */
        atomicMax(&sc->max_bits, __float_as_uint(m));
        __threadfence();
        last = atomicAdd(&sc->ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    /* the last block: every block's maximum is in; past binary16's range,
     * all of x again at 2^-e, and the products scaled back by alpha */
    __threadfence();
    const float a = f16_alpha(__uint_as_float(atomicAdd(&sc->max_bits, 0u)));
    if (a > 1.0f)
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            out[i] = __float2half_rn(x[i] / a);
    if (threadIdx.x == 0) {
        sc->alpha = a;
        sc->max_bits = 0;
        sc->ticket = 0;
    }
}

extern "C" cudaError_t cuk_f32_to_f16(const float *x, int64_t n, uint16_t *out,
                                      struct cuk_f16_scale *sc, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    const unsigned b = n_blocks(n, F16_THREADS);
    const unsigned blocks = b < F16_BLOCKS ? b : F16_BLOCKS;
    k_f32_to_f16<<<blocks, F16_THREADS, 0, s>>>(x, n, (__half *)out, sc);
    return cudaGetLastError();
}

/* ---- device memory read rate --------------------------------------------- */

/* Reads n 16-byte units of p, 8 per thread in flight per step, streaming
 * (evict-first: the rate is of device memory, not of the L2). */
__global__ static void k_read(const uint4 *__restrict__ p, int64_t n, uint32_t *sink)
{
    constexpr int U = 8;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    uint32_t acc = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++) v[u] = i + u * stride < n ? __ldcs(p + i + u * stride) : uint4{};
#pragma unroll
        for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

extern "C" cudaError_t cuk_read(const void *p, size_t bytes, uint32_t *sink, cudaStream_t s)
{
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return cudaGetLastError();
    k_read<<<4 * sms, 256, 0, s>>>((const uint4 *)p, (int64_t)(bytes / 16), sink);
    return cudaGetLastError();
}

/* ---- attention: cache writes -------------------------------------------- */

/* Q8_0 of one 32-element block, by the whole warp (lane l holding element l)
 * with the reference quantizer's rounding: d = amax / 127, q = round(x / d)
 * through the reciprocal, d kept as binary16. Lane l's q; d for all. */
__device__ static inline int q8_0_round(float v, __half &d)
{
    const float amax = warp_max(fabsf(v));
    const float df = amax / 127;
    const float id = df != 0.0f ? 1.0f / df : 0.0f;
    const float r = roundf(v * id);
    d = __float2half_rn(df);
    return r > 127.0f ? 127 : (r < -128.0f ? -128 : (int)r);
}

/* One element of a cache row of type ty: F32 and F16 by any thread; Q8_0 by
 * the whole warp at once (q8_0_round). */
__device__ static inline void store_elem(uint8_t *row, int64_t i, uint32_t ty, float v, int lane)
{
    if (ty == T_F32) {
        ((float *)row)[i] = v;
    } else if (ty == T_F16) {
        ((__half *)row)[i] = __float2half_rn(v);
    } else {
        struct block_q8_0 *blk = (struct block_q8_0 *)row + (i >> 5);
        __half d;
        blk->qs[lane] = (int8_t)q8_0_round(v, d);
        if (lane == 0) blk->d = *(const uint16_t *)&d;
    }
}

/* v as a cache of type ty gives it back (the same rounding as store_elem;
 * for Q8_0 the whole warp calls it, lane l holding element l of a block). */
__device__ static inline float kv_round(uint32_t ty, float v)
{
    if (ty == T_F32) return v;
    if (ty == T_F16) return __half2float(__float2half_rn(v));
    __half d;
    const int q = q8_0_round(v, d);
    return __half2float(d) * (float)q;
}

/* Element d of one head's rotated vector, from the unrotated head v, with
 * pair i's cos and sin from cs[i] (NULL: computed at position pos). */
__device__ static inline float rope_elem(const struct cuk_rope &r, const float *v, int64_t d,
                                         int64_t pos, const float2 *cs = NULL)
{
    if (d >= r.n_rot) return v[d];
    const int64_t half = r.n_rot / 2;
    int64_t i, a, b;
    if (r.neox) {
        i = d < half ? d : d - half;
        a = i;
        b = i + half;
    } else {
        i = d >> 1;
        a = 2 * i;
        b = a + 1;
    }
    float c, sn;
    if (cs) {
        c = cs[i].x;
        sn = cs[i].y;
    } else {
        rope_cs(r, pos, i, c, sn);
    }
    const float x0 = v[a], x1 = v[b];
    return d == a ? x0 * c - x1 * sn : x0 * sn + x1 * c;
}

/* The cache writes of one attention call in one launch, with RoPE when
 * rope.n_rot > 0: a thread per item of three ranges, each a multiple of 32
 * items (so that a warp stays in one and Q8_0 blocks are whole warps):
 *   q pairs (rope only, padded to a multiple of 32): q rotated in place;
 *   K elements: k rotated into the cache rows (k itself is left as it was);
 *   V elements: into the V cache, transposed or row-major. */
struct store_args {
    float *q;
    const float *k, *v;
    void *k_cache, *v_cache;
    size_t k_row, v_row;
    int64_t n_tok, n_head, n_head_kv, head_dim, k_dim, v_dim, n_ctx, pos0, q_items;
    uint32_t k_type, v_type;
    bool v_trans;
    struct cuk_rope rope;
};

__global__ static void k_store_rope(struct store_args g)
{
    pdl_trigger();
    pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    if (i < g.q_items) {
        const int64_t half = g.rope.n_rot / 2;
        if (i >= g.n_tok * g.n_head * half) return;
        const int64_t th = i / half;
        rope_pair(g.rope, g.q + th * g.head_dim, g.pos0 + th / g.n_head, i % half);
        return;
    }
    i -= g.q_items;
    if (i < g.n_tok * g.k_dim) {
        const int64_t t = i / g.k_dim, e = i % g.k_dim;
        const float *head = g.k + t * g.k_dim + e / g.head_dim * g.head_dim;
        const float val = g.rope.n_rot > 0 ? rope_elem(g.rope, head, e % g.head_dim, g.pos0 + t)
                                           : head[e % g.head_dim];
        store_elem((uint8_t *)g.k_cache + (size_t)(g.pos0 + t) * g.k_row, e, g.k_type, val, lane);
        return;
    }
    i -= g.n_tok * g.k_dim;
    if (i >= g.n_tok * g.v_dim) return;
    if (g.v_trans) {
        const int64_t d = i / g.n_tok, t = i % g.n_tok;
        const float val = g.v[t * g.v_dim + d];
        if (g.v_type == T_F32)
            ((float *)g.v_cache)[d * g.n_ctx + g.pos0 + t] = val;
        else
            ((__half *)g.v_cache)[d * g.n_ctx + g.pos0 + t] = __float2half_rn(val);
    } else {
        const int64_t t = i / g.v_dim, e = i % g.v_dim;
        store_elem((uint8_t *)g.v_cache + (size_t)(g.pos0 + t) * g.v_row, e, g.v_type,
                   g.v[t * g.v_dim + e], lane);
    }
}

/* ---- attention: compute ------------------------------------------------- */

/* Element d of cache row p (row-major layout) as F32. */
__device__ static inline float kv_at(const uint8_t *base, size_t row_bytes, uint32_t ty, int64_t p,
                                     int64_t d)
{
    const uint8_t *row = base + (size_t)p * row_bytes;
    if (ty == T_F32) return ((const float *)row)[d];
    if (ty == T_F16) return __half2float(((const __half *)row)[d]);
    const struct block_q8_0 *blk = (const struct block_q8_0 *)row + (d >> 5);
    return __half2float(*(const __half *)&blk->d) * (float)blk->qs[d & 31];
}

struct att_args {
    const uint8_t *k, *v;
    size_t k_row, v_row; /* bytes of one cache row (row-major layouts) */
    int64_t n_ctx, n_head, group, head_dim, head_dim_v, pos0, n_tok;
    float scale;
    uint32_t k_type, v_type;
    bool v_trans;
    bool k_vec, v_vec; /* K rows, V rows readable in 16-byte pieces */
    int n_split;       /* decode: blocks per head, each over split_keys keys */
    float2 cs[ATT_MAX_DIM / 2]; /* decode with rotation: RoPE's cos and sin at pos0 */
    int64_t split_keys;
    /* decode with the new token's cache writes folded in (else NULL: q
     * rotated, the caches written before): its k (unrotated) and v as F32;
     * q arrives unrotated too, rope rotates both (n_rot 0: none) */
    const float *kin, *vin;
    struct cuk_rope rope;
    /* decode: the heads' RMSNorms of q and kin before their rotation (both
     * set, or neither) */
    const float *q_norm, *k_norm;
    float norm_eps;
};

static_assert(ATT_CHUNK >= ATT_MAX_DIM, "a head's q fits in a row of the scores");

/* The heads' RMSNorms folded into decode attention (qwen3's q and k norms):
 * the block's G q heads (rows of head_dim from q) into qo (rows ATT_CHUNK
 * apart) and, with kin, its KV head's new K row into ko, each row as
 * k_rms_norm computes it (its sum of squares in double, x * s * w). Ends
 * with a barrier. */
template <int G>
__device__ static void head_norms(const struct att_args &a, const float *q, float *qo,
                                  const float *kin, float *ko)
{
    const int64_t hd = a.head_dim;
    double ss[G + 1];
#pragma unroll
    for (int g = 0; g <= G; g++) ss[g] = 0.0;
#pragma unroll
    for (int g = 0; g < G; g++)
        for (int64_t d = threadIdx.x; d < hd; d += ATT_THREADS) {
            const float x = q[g * hd + d];
            qo[g * ATT_CHUNK + d] = x;
            ss[g] += (double)x * x;
        }
    if (kin)
        for (int64_t d = threadIdx.x; d < hd; d += ATT_THREADS) {
            const float x = kin[d];
            ko[d] = x;
            ss[G] += (double)x * x;
        }
    block_reduce_g<G + 1>(ss, op_sum(), 0.0);
    /* each thread scales the elements it staged */
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float s = rms_scale(ss[g], hd, a.norm_eps);
        for (int64_t d = threadIdx.x; d < hd; d += ATT_THREADS)
            qo[g * ATT_CHUNK + d] = qo[g * ATT_CHUNK + d] * s * a.q_norm[d];
    }
    if (kin) {
        const float s = rms_scale(ss[G], hd, a.norm_eps);
        for (int64_t d = threadIdx.x; d < hd; d += ATT_THREADS) ko[d] = ko[d] * s * a.k_norm[d];
    }
    __syncthreads();
}

/* The G heads' scores of one key: q (shared, scaled; head g at qs + g *
 * ATT_MAX_DIM) . K row p of head offset kh, the row read once by one
 * thread, in 16-byte pieces where the cache type allows. */
template <int G>
__device__ static inline void key_scores(const struct att_args &a, const float *qs, int64_t p,
                                         int64_t kh, int pt, int parts, float (&s)[G])
{
    const uint8_t *row = a.k + (size_t)p * a.k_row;
    if (a.k_type == T_F16 && a.k_vec) {
        /* ATT_KB pieces loaded before any is used: one memory latency per
         * ATT_KB * 8 dims (a loop of dependent steps waited head_dim / 16).
         * Part pt of parts: that share of the row's pieces. */
        const int np = (int)(a.head_dim / 8) / parts;
        const uint4 *kr = (const uint4 *)((const __half *)row + kh) + pt * np;
        qs += 8 * pt * np;
        float s4[G][4]; /* four chains of FMAs a head, not one */
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int e = 0; e < 4; e++) s4[g][e] = 0.0f;
        for (int c0 = 0; c0 < np; c0 += ATT_KB) {
            uint4 u[ATT_KB];
#pragma unroll
            for (int c = 0; c < ATT_KB; c++)
                if (c0 + c < np) u[c] = kr[c0 + c];
#pragma unroll
            for (int c = 0; c < ATT_KB; c++) {
                if (c0 + c >= np) break;
                const __half2 *h = (const __half2 *)&u[c];
#pragma unroll
                for (int g = 0; g < G; g++) {
                    const float4 *qc = (const float4 *)(qs + g * ATT_MAX_DIM + 8 * (c0 + c));
                    const float4 qa = qc[0], qb = qc[1];
                    const float qv[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float2 f = __half22float2(h[e]);
                        s4[g][e] += qv[2 * e] * f.x;
                        s4[g][e] += qv[2 * e + 1] * f.y;
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) s[g] = (s4[g][0] + s4[g][1]) + (s4[g][2] + s4[g][3]);
    } else if (a.k_type == T_F32 && a.k_vec) {
        const float4 *kr = (const float4 *)((const float *)row + kh);
        for (int64_t c = 0; c < a.head_dim / 4; c++) {
            const float4 f = kr[c];
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float *qg = qs + g * ATT_MAX_DIM;
                s[g] += qg[4 * c] * f.x + qg[4 * c + 1] * f.y + qg[4 * c + 2] * f.z +
                        qg[4 * c + 3] * f.w;
            }
        }
    } else {
        for (int64_t d = 0; d < a.head_dim; d++) {
            const float kv = kv_at(a.k, a.k_row, a.k_type, p, kh + d);
#pragma unroll
            for (int g = 0; g < G; g++) s[g] += qs[g * ATT_MAX_DIM + d] * kv;
        }
    }
}

/* Decode (one token): block (heads h0 .. h0 + G - 1 with h0 = G *
 * blockIdx.x, all of one KV head's group, and split blockIdx.y). A thread
 * per key for the scores (its K row read whole, once for the G heads, so that
 * a thread has many loads in flight; up to four lanes per key, each over a
 * share of its dims, when a chunk has fewer keys than threads), then a thread
 * per value dimension over the transposed V row (or over the keys' row-major
 * V values), read once for the G heads. RoPE's cos and sin come from the host
 * (a.cs). Output, for each head h: with one split, out[h * head_dim_v + d];
 * with several, the split's (max, sum, unnormalised output) in part. With
 * a.kin the block rotates its q heads itself, and the split that ends with
 * the new key (position pos0, the last) takes that key's K and V rows from
 * kin and vin, rounded as the caches will hold them, instead of the caches;
 * its block for the group's first head writes them there (no block reads a
 * cache's row pos0). */
template <int G>
__global__ static void __launch_bounds__(ATT_THREADS)
    k_attention(const __grid_constant__ struct att_args a, const float *q, float *out, float *part)
{
    const int64_t h0 = G * (int64_t)blockIdx.x, sp = blockIdx.y;
    const int64_t hk = h0 / a.group;
    const int64_t n_kv = a.pos0 + 1;
    const int64_t k0 = min(n_kv, sp * a.split_keys), k1 = min(n_kv, k0 + a.split_keys);
    uint64_t tt[4] = {cut_now(), 0, 0, 0};
    const bool traced = cut_on();
    pdl_trigger();

    /* before the previous kernel is done: RoPE's cos and sin at pos0 */
    __shared__ float2 cs[ATT_MAX_DIM / 2];
    const bool rot = a.kin && a.rope.n_rot > 0;
    if (rot)
        for (int64_t i = threadIdx.x; i < a.rope.n_rot / 2; i += ATT_THREADS) cs[i] = a.cs[i];
    pdl_wait();

    tt[1] = cut_now();
    __shared__ __align__(16) float qs[G][ATT_MAX_DIM];
    __shared__ __align__(16) float sc[G][ATT_CHUNK];
    __syncthreads(); /* cs */
    const bool fresh = a.kin && k0 < k1 && k1 == n_kv;
    /* q's heads and the new key as they enter the rotation: with the heads'
     * norms, normed into sc (free until the first chunk's scores) and
     * k_normed */
    const float *qh = q + h0 * a.head_dim, *kin = fresh ? a.kin + hk * a.head_dim : NULL;
    int64_t q_ld = a.head_dim;
    __shared__ __align__(16) float k_normed[ATT_MAX_DIM];
    if (a.q_norm) {
        head_norms<G>(a, qh, &sc[0][0], kin, k_normed);
        qh = &sc[0][0];
        q_ld = ATT_CHUNK;
        if (kin) kin = k_normed;
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float *qt = qh + g * q_ld;
        for (int64_t d = threadIdx.x; d < a.head_dim; d += ATT_THREADS)
            qs[g][d] = (rot ? rope_elem(a.rope, qt, d, a.pos0, cs) : qt[d]) * a.scale;
    }
    /* the new key's rows (for a Q8_0 cache d runs over whole warps: its
     * dims are multiples of 32; F32 and F16 take any) */
    __shared__ __align__(16) float kn[ATT_MAX_DIM];
    __shared__ float vn[ATT_MAX_DIM];
    if (fresh) {
        const int lane = threadIdx.x & 31;
        const bool writer = h0 % a.group == 0;
        const float *vin = a.vin + hk * a.head_dim_v;
        uint8_t *krow = (uint8_t *)a.k + (size_t)a.pos0 * a.k_row;
        for (int64_t d = threadIdx.x; d < a.head_dim; d += ATT_THREADS) {
            const float val = rot ? rope_elem(a.rope, kin, d, a.pos0, cs) : kin[d];
            kn[d] = kv_round(a.k_type, val);
            if (writer) store_elem(krow, hk * a.head_dim + d, a.k_type, val, lane);
        }
        for (int64_t d = threadIdx.x; d < a.head_dim_v; d += ATT_THREADS) {
            const float val = vin[d];
            const int64_t e = hk * a.head_dim_v + d;
            vn[d] = kv_round(a.v_type, val);
            if (!writer) continue; /* block-uniform */
            if (!a.v_trans)
                store_elem((uint8_t *)a.v + (size_t)a.pos0 * a.v_row, e, a.v_type, val, lane);
            else if (a.v_type == T_F32)
                ((float *)a.v)[e * a.n_ctx + a.pos0] = val;
            else
                ((__half *)a.v)[e * a.n_ctx + a.pos0] = __float2half_rn(val);
        }
    }

    float acc[G][ATT_MAX_DIM / ATT_THREADS], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int i = 0; i < ATT_MAX_DIM / ATT_THREADS; i++) acc[g][i] = 0.0f;
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    __syncthreads();

    tt[2] = cut_now();
    const int64_t kh = hk * a.head_dim, vh = hk * a.head_dim_v;
    for (int64_t c0 = k0; c0 < k1; c0 += ATT_CHUNK) {
        const int64_t cn = min((int64_t)ATT_CHUNK, k1 - c0);
        /* keys read from the caches: all but a fresh split's new one */
        const int64_t cv = fresh && c0 + cn == k1 ? cn - 1 : cn;
        float cm[G];
#pragma unroll
        for (int g = 0; g < G; g++) cm[g] = -INFINITY;
        /* a key's score by parts neighbouring lanes, each over that share
         * of its dims (F16 rows), where the chunk leaves threads idle */
        int lp = 0; /* log2 of parts */
        if (a.k_type == T_F16 && a.k_vec) /* a part: whole 16-byte pieces */
            while (lp < 2 && (cn << (lp + 1)) <= ATT_THREADS && (a.head_dim / 8) % (2 << lp) == 0)
                lp++;
        const int parts = 1 << lp;
        for (int64_t r0 = 0; r0 < cn << lp; r0 += ATT_THREADS) { /* every lane: shuffles */
            const int64_t jj = r0 + threadIdx.x, j = jj >> lp;
            const int pt = (int)jj & (parts - 1);
            float s[G];
#pragma unroll
            for (int g = 0; g < G; g++) s[g] = 0.0f;
            if (j < cv) {
                key_scores<G>(a, &qs[0][0], c0 + j, kh, pt, parts, s);
            } else if (j < cn) {
                /* the new key, from shared memory: four chains of FMAs */
                const int64_t n4 = a.head_dim / 4 / parts;
                const float4 *k4 = (const float4 *)kn + pt * n4;
#pragma unroll
                for (int g = 0; g < G; g++) {
                    const float4 *q4 = (const float4 *)qs[g] + pt * n4;
                    float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 8
                    for (int64_t d = 0; d < n4; d++) {
                        const float4 u = q4[d], w = k4[d];
                        s4[0] += u.x * w.x;
                        s4[1] += u.y * w.y;
                        s4[2] += u.z * w.z;
                        s4[3] += u.w * w.w;
                    }
                    s[g] = (s4[0] + s4[1]) + (s4[2] + s4[3]);
                    /* dims past the last four (one part: head_dim % 4 != 0) */
                    for (int64_t d = 4 * n4 * parts; d < a.head_dim; d++) s[g] += qs[g][d] * kn[d];
                }
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                for (int o = parts / 2; o > 0; o >>= 1) s[g] += __shfl_xor_sync(0xffffffffu, s[g], o);
                if (j < cn && pt == 0) {
                    sc[g][j] = s[g];
                    cm[g] = fmaxf(cm[g], s[g]);
                }
            }
        }
        block_reduce_g<G>(cm, op_max(), -INFINITY);
        float corr[G], ls[G];
#pragma unroll
        for (int g = 0; g < G; g++) {
            cm[g] = fmaxf(m[g], cm[g]); /* the new maximum */
            corr[g] = expf(m[g] - cm[g]); /* 0 on the first chunk (m = -inf) */
            ls[g] = 0.0f;
        }
        for (int64_t j = threadIdx.x; j < cn; j += ATT_THREADS)
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float e = expf(sc[g][j] - cm[g]);
                sc[g][j] = e;
                ls[g] += e;
            }
        block_reduce_g<G>(ls, op_sum(), 0.0f); /* its barriers publish sc */
#pragma unroll
        for (int g = 0; g < G; g++) {
            l[g] = l[g] * corr[g] + ls[g];
            m[g] = cm[g];
        }
#pragma unroll
        for (int i = 0; i < ATT_MAX_DIM / ATT_THREADS; i++) {
            const int64_t d = threadIdx.x + i * ATT_THREADS;
            if (d >= a.head_dim_v) break;
            float s[G];
#pragma unroll
            for (int g = 0; g < G; g++) s[g] = 0.0f;
            if (a.v_trans && a.v_type == T_F16) {
                const __half *vr = (const __half *)a.v + (vh + d) * a.n_ctx + c0;
                int64_t j = 0;
                if (a.v_vec) { /* c0 and the row are 16-byte aligned */
                    const int64_t nv = cv & ~(int64_t)7; /* keys in whole pieces */
                    float s4[G][4]; /* four chains of FMAs a head */
#pragma unroll
                    for (int g = 0; g < G; g++)
#pragma unroll
                        for (int e = 0; e < 4; e++) s4[g][e] = 0.0f;
                    for (; j < nv; j += 8 * ATT_VB) { /* ATT_VB loads in flight */
                        uint4 u[ATT_VB];
#pragma unroll
                        for (int c = 0; c < ATT_VB; c++)
                            if (j + 8 * c < nv) u[c] = *(const uint4 *)(vr + j + 8 * c);
#pragma unroll
                        for (int c = 0; c < ATT_VB; c++) {
                            if (j + 8 * c >= nv) break;
                            const __half2 *hv = (const __half2 *)&u[c];
#pragma unroll
                            for (int g = 0; g < G; g++) {
                                const float4 *sj = (const float4 *)(sc[g] + j + 8 * c);
                                const float4 sa = sj[0], sb = sj[1];
                                const float sv[8] = {sa.x, sa.y, sa.z, sa.w,
                                                     sb.x, sb.y, sb.z, sb.w};
#pragma unroll
                                for (int e = 0; e < 4; e++) {
                                    const float2 f = __half22float2(hv[e]);
                                    s4[g][e] += sv[2 * e] * f.x + sv[2 * e + 1] * f.y;
                                }
                            }
                        }
                    }
#pragma unroll
                    for (int g = 0; g < G; g++) s[g] = (s4[g][0] + s4[g][1]) + (s4[g][2] + s4[g][3]);
                    j = nv;
                }
                if (a.v_vec && j < cv) {
                    /* the last keys: the whole piece at once (it lies in
                     * the row: n_ctx is a multiple of 8), the others' lanes
                     * left out, not multiplied (the new key's slot may hold
                     * anything) */
                    const uint4 u = *(const uint4 *)(vr + j);
                    const __half *hv = (const __half *)&u;
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        if (j + e < cv)
#pragma unroll
                            for (int g = 0; g < G; g++) s[g] += sc[g][j + e] * __half2float(hv[e]);
                    j = cv;
                }
                for (; j < cv; j++) {
                    const float vf = __half2float(vr[j]);
#pragma unroll
                    for (int g = 0; g < G; g++) s[g] += sc[g][j] * vf;
                }
            } else if (a.v_trans) {
                const float *vr = (const float *)a.v + (vh + d) * a.n_ctx + c0;
                for (int64_t j = 0; j < cv; j++)
#pragma unroll
                    for (int g = 0; g < G; g++) s[g] += sc[g][j] * vr[j];
            } else {
                for (int64_t j = 0; j < cv; j++) {
                    const float vf = kv_at(a.v, a.v_row, a.v_type, c0 + j, vh + d);
#pragma unroll
                    for (int g = 0; g < G; g++) s[g] += sc[g][j] * vf;
                }
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                if (cv < cn) s[g] += sc[g][cv] * vn[d];
                acc[g][i] = acc[g][i] * corr[g] + s[g];
            }
        }
        __syncthreads(); /* sc is rewritten by the next chunk */
    }

#pragma unroll
    for (int g = 0; g < G; g++) {
        const int64_t h = h0 + g;
        if (a.n_split == 1) {
            float *o = out + h * a.head_dim_v;
            const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
#pragma unroll
            for (int i = 0; i < ATT_MAX_DIM / ATT_THREADS; i++) {
                const int64_t d = threadIdx.x + i * ATT_THREADS;
                if (d < a.head_dim_v) o[d] = acc[g][i] * inv;
            }
        } else {
            /* part[h * n_split + sp] = {m, l, acc[head_dim_v]} */
            float *p = part + (h * a.n_split + sp) * (a.head_dim_v + 2);
            if (threadIdx.x == 0) {
                p[0] = m[g];
                p[1] = l[g];
            }
#pragma unroll
            for (int i = 0; i < ATT_MAX_DIM / ATT_THREADS; i++) {
                const int64_t d = threadIdx.x + i * ATT_THREADS;
                if (d < a.head_dim_v) p[2 + d] = acc[g][i];
            }
        }
    }
    if (traced) {
        __syncthreads();
        tt[3] = cut_now();
        if (threadIdx.x == 0) cut_put(CUK_TRACE_ATTENTION, (uint32_t)a.n_head, (uint32_t)n_kv, tt);
    }
}

/* The loads of a chunk of FA_KC cache rows for k_attention_tiled: all of a
 * thread's 16-byte pieces are issued before any is stored (one memory
 * latency per chunk, not one per element). Rows past cn are zero. */
#define FA_PIECES (FA_KC * ATT_MAX_DIM / 8 / FA_THREADS) /* binary16 pieces per thread, at most */

/* K rows [FA_KC][head_dim] of head offset kh into ks (row stride kvs), F32. */
__device__ static inline void fa_load_k(const struct att_args &a, float *ks, int kvs, int64_t c0,
                                        int cn, int64_t kh)
{
    const int hd = (int)a.head_dim;
    if (a.k_type == T_F16 && a.k_vec) {
        const int per = hd / 8; /* pieces per row */
        uint4 u[FA_PIECES];
#pragma unroll
        for (int i = 0; i < FA_PIECES; i++) {
            const int idx = threadIdx.x + i * FA_THREADS, j = idx / per, c = idx - j * per;
            u[i] = make_uint4(0u, 0u, 0u, 0u);
            if (j < cn)
                u[i] = *(const uint4 *)((const __half *)(a.k + (size_t)(c0 + j) * a.k_row) + kh +
                                        8 * c);
        }
#pragma unroll
        for (int i = 0; i < FA_PIECES; i++) {
            const int idx = threadIdx.x + i * FA_THREADS, j = idx / per, c = idx - j * per;
            if (j >= FA_KC) break;
            const __half2 *h = (const __half2 *)&u[i];
            float *dst = ks + j * kvs + 8 * c;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __half22float2(h[e]);
                dst[2 * e] = f.x;
                dst[2 * e + 1] = f.y;
            }
        }
        return;
    }
    for (int idx = threadIdx.x; idx < FA_KC * hd; idx += FA_THREADS) {
        const int j = idx / hd, d = idx % hd;
        ks[j * kvs + d] = j < cn ? kv_at(a.k, a.k_row, a.k_type, c0 + j, kh + d) : 0.0f;
    }
}

/* V rows [FA_KC][head_dim_v] of head offset vh into ks from the transposed
 * binary16 cache (v_vec: its rows and c0 16-byte aligned, n_ctx a multiple
 * of 8, so a piece that starts before cn ends inside the row). */
__device__ static inline void fa_load_vt16(const struct att_args &a, float *ks, int kvs, int64_t c0,
                                           int cn, int64_t vh)
{
    constexpr int per = FA_KC / 8; /* pieces per value dimension */
    const int hdv = (int)a.head_dim_v;
    uint4 u[FA_PIECES];
#pragma unroll
    for (int i = 0; i < FA_PIECES; i++) {
        const int idx = threadIdx.x + i * FA_THREADS, d = idx / per, c = idx - d * per;
        u[i] = make_uint4(0u, 0u, 0u, 0u);
        if (d < hdv && 8 * c < cn)
            u[i] = *(const uint4 *)((const __half *)a.v + (vh + d) * a.n_ctx + c0 + 8 * c);
    }
#pragma unroll
    for (int i = 0; i < FA_PIECES; i++) {
        const int idx = threadIdx.x + i * FA_THREADS, d = idx / per, c = idx - d * per;
        if (d >= hdv) break;
        const __half *h = (const __half *)&u[i];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int j = 8 * c + e;
            ks[j * kvs + d] = j < cn ? __half2float(h[e]) : 0.0f;
        }
    }
}

/* Batch attention, tiled (see the top of the file): block (head, tile of
 * FA_QT queries). Shared memory: Q^T [head_dim][FA_QT] (scaled), the chunk's
 * K rows then V rows [FA_KC][dim + 1] (padded: lanes read different rows),
 * and the probabilities P^T [FA_KC][FA_QT]. */
__global__ static void __launch_bounds__(FA_THREADS)
    k_attention_tiled(struct att_args a, const float *q, float *out)
{
    extern __shared__ float4 fa_smem[];
    const int hd = (int)a.head_dim, hdv = (int)a.head_dim_v;
    const int kvs = (hd > hdv ? hd : hdv) + 1;
    float *qs = (float *)fa_smem; /* [hd][FA_QT] */
    float *ks = qs + hd * FA_QT;  /* [FA_KC][kvs] */
    float *ps = ks + FA_KC * kvs; /* [FA_KC][FA_QT] */
    const int64_t h = blockIdx.x, t0 = (int64_t)blockIdx.y * FA_QT;
    const int64_t hk = h / a.group;
    const int nq = (int)min((int64_t)FA_QT, a.n_tok - t0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r0 = warp * FA_ROWS; /* this warp's first query row */

    for (int idx = threadIdx.x; idx < hd * FA_QT; idx += FA_THREADS) {
        const int qi = idx % FA_QT, d = idx / FA_QT;
        qs[idx] = qi < nq ? q[((t0 + qi) * a.n_head + h) * hd + d] * a.scale : 0.0f;
    }
    constexpr int ND = ATT_MAX_DIM / 32; /* value dims per lane, at most */
    float acc[FA_ROWS][ND];
    float m[FA_ROWS], l[FA_ROWS];
#pragma unroll
    for (int i = 0; i < FA_ROWS; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < ND; dd++) acc[i][dd] = 0.0f;
    }
    const int64_t kh = hk * a.head_dim, vh = hk * a.head_dim_v;
    const int64_t end = a.pos0 + t0 + nq; /* keys [0, end) are seen by some query */
    for (int64_t c0 = 0; c0 < end; c0 += FA_KC) {
        const int cn = (int)min((int64_t)FA_KC, end - c0);
        __syncthreads(); /* the last chunk's V and P have been read (and Q is in) */
        fa_load_k(a, ks, kvs, c0, cn, kh);
        __syncthreads();
        /* scores: lane = key, FA_ROWS rows per warp */
        float s[FA_ROWS];
#pragma unroll
        for (int i = 0; i < FA_ROWS; i++) s[i] = 0.0f;
        const float *kr = ks + lane * kvs;
        for (int d = 0; d < hd; d++) {
            const float kd = kr[d];
            const float4 qv = *(const float4 *)(qs + d * FA_QT + r0);
            s[0] += qv.x * kd;
            s[1] += qv.y * kd;
            s[2] += qv.z * kd;
            s[3] += qv.w * kd;
        }
        float pv[FA_ROWS];
#pragma unroll
        for (int i = 0; i < FA_ROWS; i++) {
            const int64_t qpos = a.pos0 + t0 + r0 + i;
            const bool ok = lane < cn && r0 + i < nq && c0 + lane <= qpos;
            const float si = ok ? s[i] : -INFINITY;
            const float m_new = fmaxf(m[i], warp_max(si));
            /* a row with no key yet (or a padding row) keeps m = -inf */
            const float corr = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
            pv[i] = ok ? expf(si - m_new) : 0.0f;
            l[i] = l[i] * corr + warp_sum(pv[i]);
            m[i] = m_new;
#pragma unroll
            for (int dd = 0; dd < ND; dd++) acc[i][dd] *= corr;
        }
        *(float4 *)(ps + lane * FA_QT + r0) = make_float4(pv[0], pv[1], pv[2], pv[3]);
        __syncthreads(); /* K has been read: V goes in its place */
        if (a.v_trans && a.v_type == T_F16 && a.v_vec) {
            fa_load_vt16(a, ks, kvs, c0, cn, vh);
        } else if (a.v_trans) {
            for (int idx = threadIdx.x; idx < FA_KC * hdv; idx += FA_THREADS) {
                const int j = idx % FA_KC, d = idx / FA_KC;
                float v = 0.0f;
                if (j < cn) {
                    const int64_t o = (vh + d) * a.n_ctx + c0 + j;
                    v = a.v_type == T_F32 ? ((const float *)a.v)[o]
                                          : __half2float(((const __half *)a.v)[o]);
                }
                ks[j * kvs + d] = v;
            }
        } else {
            for (int idx = threadIdx.x; idx < FA_KC * hdv; idx += FA_THREADS) {
                const int j = idx / hdv, d = idx % hdv;
                ks[j * kvs + d] = j < cn ? kv_at(a.v, a.v_row, a.v_type, c0 + j, vh + d) : 0.0f;
            }
        }
        __syncthreads();
        for (int j = 0; j < cn; j++) {
            const float4 p = *(const float4 *)(ps + j * FA_QT + r0);
            const float *vr = ks + j * kvs;
#pragma unroll
            for (int dd = 0; dd < ND; dd++) {
                if (lane + 32 * dd >= hdv) break;
                const float v = vr[lane + 32 * dd];
                acc[0][dd] += p.x * v;
                acc[1][dd] += p.y * v;
                acc[2][dd] += p.z * v;
                acc[3][dd] += p.w * v;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < FA_ROWS; i++) {
        if (r0 + i >= nq) break;
        float *o = out + ((t0 + r0 + i) * a.n_head + h) * hdv;
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
#pragma unroll
        for (int dd = 0; dd < ND; dd++)
            if (lane + 32 * dd < hdv) o[lane + 32 * dd] = acc[i][dd] * inv;
    }
}

/* Combines the splits of head h = blockIdx.x: each split's weight
 * exp(m_s - M) / L computed once in shared memory by the first warp, then a
 * thread per value dimension sums the weighted partial outputs, ATT_CB
 * splits' loads in flight at once. */
#define ATT_CB 8
__global__ static void k_attention_combine(const float *part, int n_split, int64_t head_dim_v,
                                           float *out)
{
    const int64_t h = blockIdx.x, stride = head_dim_v + 2;
    const float *p = part + h * n_split * stride;
    __shared__ float wt[ATT_MAX_SPLIT];
    uint64_t tt[4] = {cut_now(), 0, 0, 0};
    const bool traced = cut_on();
    pdl_trigger();
    pdl_wait();
    tt[1] = tt[2] = cut_now();
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float ms[ATT_MAX_SPLIT / 32], ls[ATT_MAX_SPLIT / 32], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < ATT_MAX_SPLIT / 32; i++) {
            const int sp = lane + 32 * i;
            ms[i] = sp < n_split ? p[sp * stride] : -INFINITY;
            ls[i] = sp < n_split ? p[sp * stride + 1] : 0.0f;
            mx = fmaxf(mx, ms[i]);
        }
        const float M = warp_max(mx);
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_MAX_SPLIT / 32; i++) {
            ms[i] = ms[i] == -INFINITY ? 0.0f : expf(ms[i] - M);
            sum += ms[i] * ls[i];
        }
        const float L = warp_sum(sum);
#pragma unroll
        for (int i = 0; i < ATT_MAX_SPLIT / 32; i++)
            if (lane + 32 * i < n_split) wt[lane + 32 * i] = L > 0.0f ? ms[i] / L : 0.0f;
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < head_dim_v; d += blockDim.x) {
        const float *pd = p + 2 + d;
        float o = 0.0f;
        int sp = 0;
        for (; sp + ATT_CB <= n_split; sp += ATT_CB) {
            float v[ATT_CB];
#pragma unroll
            for (int j = 0; j < ATT_CB; j++) v[j] = pd[(sp + j) * stride];
#pragma unroll
            for (int j = 0; j < ATT_CB; j++) o += wt[sp + j] * v[j];
        }
        for (; sp < n_split; sp++) o += wt[sp] * pd[sp * stride];
        out[h * head_dim_v + d] = o;
    }
    if (traced) {
        __syncthreads();
        tt[3] = cut_now();
        if (threadIdx.x == 0) cut_put(CUK_TRACE_COMBINE, (uint32_t)n_split, (uint32_t)head_dim_v, tt);
    }
}

extern "C" size_t cuk_attention_scratch(int64_t n_head, int64_t head_dim_v)
{
    /* splits are used for single tokens only */
    return (size_t)n_head * ATT_MAX_SPLIT * (size_t)(head_dim_v + 2);
}

static size_t row_bytes_of(uint32_t ty, int64_t dim)
{
    if (ty == T_F32) return (size_t)dim * 4;
    if (ty == T_F16) return (size_t)dim * 2;
    return (size_t)(dim / 32) * sizeof(struct block_q8_0);
}

typedef void (*att_kernel)(const struct att_args, const float *, float *, float *);
static const att_kernel att_kernels[4] = {k_attention<1>, k_attention<2>, k_attention<4>,
                                          k_attention<8>};

/* Decode: a KV group's heads in one block from this many keys of context
 * (0: never; below 0, CUK_ATT_GQA_FILL: where such blocks fill the device;
 * HYPURA_CUDA_ATT_GQA, cuk_attention_gqa). */
static int64_t att_gqa_keys = CUK_ATT_GQA_FILL;

extern "C" void cuk_attention_gqa(int64_t min_keys)
{
    att_gqa_keys = min_keys;
}

/* The blocks of att_kernels[gl] that fit on the device's multiprocessors at
 * once (the first device asked: one device a process). */
static int64_t att_slots(int gl)
{
    static int64_t slots[4];
    if (!slots[gl]) {
        int dev = 0, n_sm = 0, per_sm = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, att_kernels[gl], ATT_THREADS,
                                                          0) != cudaSuccess ||
            n_sm < 1 || per_sm < 1) {
            (void)cudaGetLastError();
            n_sm = 128;
            per_sm = 2;
        }
        slots[gl] = (int64_t)n_sm * per_sm;
    }
    return slots[gl];
}

extern "C" cudaError_t cuk_attention(const struct cuk_attn *a, float *q, const float *k,
                                     const float *v, float *out, float *part, cudaStream_t s,
                                     bool early)
{
    /* any head dimension up to ATT_MAX_DIM; a Q8_0 cache's rows are whole
     * blocks of one head (forward.c's kv_init refuses others) */
    if (a->head_dim < 1 || a->head_dim_v < 1 || a->head_dim > ATT_MAX_DIM ||
        a->head_dim_v > ATT_MAX_DIM || (a->k_type == T_Q8_0 && a->head_dim % 32) ||
        (a->v_type == T_Q8_0 && a->head_dim_v % 32) || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv || a->n_tok <= 0 || !a->q_norm != !a->k_norm ||
        (a->q_norm && a->n_tok != 1))
        return cudaErrorInvalidValue;
    const int64_t k_dim = a->n_head_kv * a->head_dim, v_dim = a->n_head_kv * a->head_dim_v;
    const bool v_trans = a->v_type == T_F32 || a->v_type == T_F16;
    const size_t k_row = row_bytes_of(a->k_type, k_dim), v_row = row_bytes_of(a->v_type, v_dim);

    /* q rotated, the new rows into the caches: one launch */
    struct store_args st = {.q = q,
                            .k = k,
                            .v = v,
                            .k_cache = a->k_cache,
                            .v_cache = a->v_cache,
                            .k_row = k_row,
                            .v_row = v_row,
                            .n_tok = a->n_tok,
                            .n_head = a->n_head,
                            .n_head_kv = a->n_head_kv,
                            .head_dim = a->head_dim,
                            .k_dim = k_dim,
                            .v_dim = v_dim,
                            .n_ctx = a->n_ctx,
                            .pos0 = a->pos0,
                            .q_items = 0,
                            .k_type = a->k_type,
                            .v_type = a->v_type,
                            .v_trans = v_trans,
                            .rope = a->rope};
    if (st.rope.n_rot < 0 || st.rope.n_rot % 2 || st.rope.n_rot > a->head_dim)
        return cudaErrorInvalidValue;
    st.q_items = (a->n_tok * a->n_head * (st.rope.n_rot / 2) + 31) / 32 * 32;
    const int64_t items = st.q_items + a->n_tok * (k_dim + v_dim);
    if (items / 256 >= 65535 * 32) return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    if (a->n_tok > 1) { /* one token: k_attention does it */
        e = pdl_launch(k_store_rope, dim3((unsigned)((items + 255) / 256)), 256, 0, s, early, st);
        if (e != cudaSuccess) return e;
    }

    struct att_args g = {.k = (const uint8_t *)a->k_cache,
                         .v = (const uint8_t *)a->v_cache,
                         .k_row = k_row,
                         .v_row = v_row,
                         .n_ctx = a->n_ctx,
                         .n_head = a->n_head,
                         .group = a->n_head / a->n_head_kv,
                         .head_dim = a->head_dim,
                         .head_dim_v = a->head_dim_v,
                         .pos0 = a->pos0,
                         .n_tok = a->n_tok,
                         .scale = a->scale,
                         .k_type = a->k_type,
                         .v_type = a->v_type,
                         .v_trans = v_trans,
                         /* a head's K row starts on 16 bytes where its
                          * dims fill whole pieces */
                         .k_vec = ((uintptr_t)a->k_cache & 15) == 0 &&
                                  (a->k_type == T_F16   ? a->head_dim % 8 == 0
                                   : a->k_type == T_F32 ? a->head_dim % 4 == 0
                                                        : false),
                         .v_vec = ((uintptr_t)a->v_cache & 15) == 0 && a->n_ctx % 8 == 0,
                         .n_split = 1,
                         .split_keys = 0,
                         .kin = NULL,
                         .vin = NULL,
                         .rope = a->rope,
                         .q_norm = a->q_norm,
                         .k_norm = a->k_norm,
                         .norm_eps = a->norm_eps};
    if (a->n_tok > 1) {
        const int kvs = (int)(a->head_dim > a->head_dim_v ? a->head_dim : a->head_dim_v) + 1;
        const size_t smem =
            sizeof(float) * ((size_t)a->head_dim * FA_QT + (size_t)FA_KC * kvs + FA_KC * FA_QT);
        static size_t smem_set = 48 << 10; /* the limit without opting in */
        if (smem > smem_set) {
            e = cudaFuncSetAttribute(k_attention_tiled, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)smem);
            if (e != cudaSuccess) return e;
            smem_set = smem;
        }
        dim3 tg((unsigned)a->n_head, (unsigned)((a->n_tok + FA_QT - 1) / FA_QT));
        k_attention_tiled<<<tg, FA_THREADS, smem, s>>>(g, q, out);
        return cudaGetLastError();
    }
    /* one token: a block takes the G heads of one KV group (G the largest
     * power of two up to 8 that divides the group; each K and V row read once
     * for them) where its blocks fill the slots (the blocks that fit on the
     * multiprocessors at once: the G kernel's occupancy) in splits of
     * ATT_GQA_KEYS keys (cuk_attention_gqa's count of keys instead where
     * set), else one head; enough splits for the slots, each of at least
     * ATT_MIN_KEYS keys, starting at a multiple of ATT_SPLIT_ALIGN keys
     * (16-byte V pieces), none empty. On the 32-layer Llama-3-8B shape on an
     * H100 (groups of four, 8 KV heads, 264 slots of the four-head kernel:
     * from 2049 keys), decode with four heads a block against one: 3 % slower
     * at 1100 keys of context, 0.3 % at 1600, 0.7 % at 2100, 3 % faster at
     * 3000. */
    const int64_t n_kv = a->pos0 + 1, min_splits = (n_kv + ATT_MIN_KEYS - 1) / ATT_MIN_KEYS;
    int gl = 0; /* log2 of G */
    if (att_gqa_keys != 0) {
        while (gl < 3 && g.group % (2 << gl) == 0) gl++;
        if (att_gqa_keys > 0 ? n_kv < att_gqa_keys
                             : (a->n_head >> gl) * ((n_kv + ATT_GQA_KEYS - 1) / ATT_GQA_KEYS) <
                                   att_slots(gl))
            gl = 0;
    }
    const int64_t blocks = a->n_head >> gl;
    int64_t sp = att_slots(gl) / blocks;
    if (sp > min_splits) sp = min_splits;
    if (sp > ATT_MAX_SPLIT) sp = ATT_MAX_SPLIT;
    if (sp < 1) sp = 1;
    const int64_t per = (n_kv + sp - 1) / sp;
    g.split_keys = (per + ATT_SPLIT_ALIGN - 1) / ATT_SPLIT_ALIGN * ATT_SPLIT_ALIGN;
    sp = (n_kv + g.split_keys - 1) / g.split_keys;
    g.n_split = (int)sp;
    g.kin = k; /* the cache writes and the rotation in the attention kernel */
    g.vin = v;
    if (g.rope.n_rot > 0) {
        if (!a->cs) return cudaErrorInvalidValue;
        for (int64_t i = 0; i < g.rope.n_rot / 2; i++)
            g.cs[i] = make_float2(a->cs[2 * i], a->cs[2 * i + 1]);
    }
    dim3 grid((unsigned)blocks, (unsigned)g.n_split, 1u);
    e = pdl_launch(att_kernels[gl], grid, ATT_THREADS, 0, s, early, g, (const float *)q, out, part);
    if (e != cudaSuccess || g.n_split == 1) return e;
    return pdl_launch(k_attention_combine, dim3((unsigned)a->n_head), 128, 0, s, early,
                      (const float *)part, g.n_split, a->head_dim_v, out);
}

/* ---- the k best of a vector (backend.h's top_k op) ----------------------
 * Keys: a value's 32 bits made to sort as unsigned integers (a positive
 * value with its sign bit set, a negative one inverted; -0 as +0, a NaN as
 * 0, below -inf), above the complement of its index, so that descending
 * keys are descending values with ties to the lower index. A pass cuts its
 * input into chunks of TOPK_CHUNK keys, and each block sorts one chunk in
 * shared memory (bitonic, descending; the last chunk padded with key 0, which
 * no element has) and writes its first k keys; passes repeat over those
 * until one chunk is left. k = 1: a maximum instead of the sort. */
#define TOPK_CHUNK   1024 /* at least 2 * CUK_TOP_K_MAX: a pass cuts m keys to m / 4 at least */
#define TOPK_THREADS (TOPK_CHUNK / 2) /* a compare-exchange per thread and stage */

__device__ static inline unsigned long long topk_key(float v, uint32_t i)
{
    const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
    const uint32_t k = v != v ? 0u : (u & 0x80000000u) ? ~u : u | 0x80000000u;
    return ((unsigned long long)k << 32) | (0xFFFFFFFFu - i);
}

__device__ static inline unsigned long long max_u64(unsigned long long a, unsigned long long b)
{
    return a > b ? a : b;
}

/* x (the first pass: floats) or kin (keys) [n]; kout[blockIdx.x * k ...] */
__global__ static void __launch_bounds__(TOPK_THREADS)
    k_top_k(const float *x, const unsigned long long *kin, int64_t n, int k,
            unsigned long long *kout)
{
    __shared__ unsigned long long s[TOPK_CHUNK];
    const int64_t c0 = (int64_t)blockIdx.x * TOPK_CHUNK;
    pdl_trigger();
    pdl_wait();
    if (k == 1) {
        unsigned long long m = 0;
        for (int i = threadIdx.x; i < TOPK_CHUNK && c0 + i < n; i += TOPK_THREADS)
            m = max_u64(m, x ? topk_key(x[c0 + i], (uint32_t)(c0 + i)) : kin[c0 + i]);
        for (int o = 16; o > 0; o >>= 1) m = max_u64(m, __shfl_xor_sync(0xffffffffu, m, o));
        if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = m;
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < TOPK_THREADS / 32; w++) m = max_u64(m, s[w]);
            kout[blockIdx.x] = m;
        }
        return;
    }
    for (int i = threadIdx.x; i < TOPK_CHUNK; i += TOPK_THREADS) {
        const int64_t j = c0 + i;
        s[i] = j >= n ? 0ull : x ? topk_key(x[j], (uint32_t)j) : kin[j];
    }
    __syncthreads();
    const int t = threadIdx.x;
    for (int size = 2; size <= TOPK_CHUNK; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            /* below 32 a warp's pairs lie in its own 64 keys: no block barrier */
            if (stride >= 32)
                __syncthreads();
            else
                __syncwarp();
            /* thread t's pair: i with bit stride clear, j = i + stride */
            const int i = ((t & ~(stride - 1)) << 1) | (t & (stride - 1)), j = i + stride;
            const unsigned long long a = s[i], b = s[j];
            /* descending runs where bit size of i is clear */
            if ((a < b) == ((i & size) == 0)) {
                s[i] = b;
                s[j] = a;
            }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < k; i += TOPK_THREADS) kout[blockIdx.x * (int64_t)k + i] = s[i];
}

extern "C" size_t cuk_top_k_scratch(int64_t n, int k)
{
    const int64_t c = (n + TOPK_CHUNK - 1) / TOPK_CHUNK;
    return (size_t)(2 * c * k) * sizeof(unsigned long long);
}

extern "C" cudaError_t cuk_top_k(const float *x, int64_t n, int k, unsigned long long *scratch,
                                 unsigned long long *out, cudaStream_t s, bool early)
{
    static_assert(2 * CUK_TOP_K_MAX <= TOPK_CHUNK, "a pass must shrink its input");
    if (n < 1 || n > UINT32_MAX || k < 1 || k > CUK_TOP_K_MAX || k > n)
        return cudaErrorInvalidValue;
    /* pass p reads src (x first) and writes its chunks' keys to dst: the
     * halves of scratch in turn, out at the last */
    const int64_t c = (n + TOPK_CHUNK - 1) / TOPK_CHUNK;
    unsigned long long *half[2] = {scratch, scratch + c * k};
    const unsigned long long *src = NULL;
    int64_t m = n;
    for (int p = 0;; p++) {
        const int64_t chunks = (m + TOPK_CHUNK - 1) / TOPK_CHUNK;
        unsigned long long *dst = chunks == 1 ? out : half[p & 1];
        cudaError_t e = pdl_launch(k_top_k, dim3((unsigned)chunks), TOPK_THREADS, 0, s,
                                   early || p > 0, p == 0 ? x : (const float *)NULL, src, m, k,
                                   dst);
        if (e != cudaSuccess || chunks == 1) return e;
        src = dst;
        m = chunks * k;
    }
}

extern "C" cudaError_t cuk_trace_set(const struct cuk_trace *t)
{
    return cut_set(t);
}
