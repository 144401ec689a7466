/*
 * Launchers of the CUDA kernels, callable from C (the backend object in
 * cuda_backend.c is C; the kernels are in .cu files). Every launcher queues
 * its work on stream s and returns the launch's error (cudaGetLastError), so
 * that the caller can name the call that failed. Pointers are device memory
 * unless a comment says otherwise. Layouts follow backend.h: a batch of
 * n_tok rows is token-major, x[t * n + i].
 */
#ifndef HY_BACKEND_CUDA_CUDA_KERNELS_H
#define HY_BACKEND_CUDA_CUDA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- quantized weights (cuda_quant.cu) --------------------------------
 * Types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, in the GGUF block layouts of src/quant/blocks.h. A weight is
 * n_rows rows of n_cols elements, row r at w + r * row_bytes. */

/* True when the kernels below take weights of this type. */
bool cuq_supports(uint32_t type);

/* On the CPU, no device needed: rows 0 and 1 of w (host memory) dequantized
 * item by item as the kernels do, into values [2][n_cols], and their
 * products with x (host, 16-byte aligned) as the matvec over x in global
 * memory sums them, into dots[2]. cudaErrorInvalidValue for a type not
 * taken or n_cols not whole blocks. */
cudaError_t cuq_host_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                          const float *x, float *values, float *dots);

/* Most tokens cuq_matvec takes in one call. */
#define CUQ_MATVEC_MAX_TOK 8

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok <= CUQ_MATVEC_MAX_TOK. The
 * quantized types: x quantized to int8 as the CPU backend quantizes it (Q8_0
 * or Q8_K blocks), integer products per block (dp4a), F32 sums of the scaled
 * blocks; the other types: F32 activations and accumulation,
 * weights dequantized on the fly. Each weight byte is read once per call: the
 * decode path, memory bound. x is [n_tok][n_cols], y [n_tok][ldy] (ldy >=
 * n_rows: rows of a larger output). early: launched so that it may start
 * while the kernel before it on s finishes (programmatic dependent launch,
 * compute capability 9.0 and up): it reads w before that kernel is done, so
 * nothing queued may still write w (weights in place, not a slot being
 * filled); x and y wait for it. */
cudaError_t cuq_matvec(uint32_t type, const void *w, size_t row_bytes, int64_t n_rows,
                       int64_t n_cols, const float *x, int64_t n_tok, float *y, int64_t ldy,
                       cudaStream_t s, bool early);

/* Epilogues of cuq_matvec_multi. */
enum cuq_epilogue {
    CUQ_EP_STORE = 0, /* y[i] = W_i x (+ b[i]), for each weight i < n_w <= 3 */
    CUQ_EP_ADD = 1,   /* n_w == 1: y[0] += W_0 x (the residual add folded into the product) */
    /* n_w an even count up to CUQ_MULTI_MAX, all n_rows equal: pairs p of a
     * gate W_2p and an up W_2p+1 (one token's experts in one launch), y[2p] =
     * silu(W_2p x) * (W_2p+1 x) */
    CUQ_EP_SWIGLU = 2,
    /* n_w == 1: y[0] += alpha * (W_0 x), as cuk_add computes it (an expert's share) */
    CUQ_EP_AXPY = 3,
    /* n_tok == n_w <= CUQ_MULTI_MAX / 2, all n_rows equal: y[i] = W_i x[i], each
     * weight with its own row of x (a token's experts' down products in one
     * launch: the kernel of n_tok tokens, of whose products each weight's
     * row keeps one; the weights are read once, as for any batch) */
    CUQ_EP_DIAG = 4,
    /* n_w == 1, one token: an MoE layer's end in the shared expert's down
     * product. y[0][i] += the moe_k rows of moe_o (slot j's at moe_o + j *
     * n_rows[0]) times moe_alpha[j], in ascending order of moe_ids (ties:
     * the earlier slot), then sigmoid(*moe_gate) * (W_0 x)[i]: the sums
     * cuk_moe_token_combine makes after a product of W_0, without its launch */
    CUQ_EP_MOE = 5,
};
/* Most slots of CUQ_EP_MOE. */
#define CUQ_MOE_MAX_K 16
/* Most weights of one cuq_matvec_multi (SWIGLU's pairs: 8). */
#define CUQ_MULTI_MAX 16
/* An RMSNorm folded into cuq_multi's products: their x is
 * x[t] / sqrt(mean(x[t]^2) + eps) * w as cuk_rms_norm computes it (the same
 * floats), and the kernel also stores it at y, which must be the products' x
 * argument: the op cuk_rms_norm(x, w, eps, 1, n_cols, y) without its
 * launch. One token (n_tok 1); x and y must not overlap; x, w 16-byte
 * aligned. The staged one-token kernel of Q2_K..Q6_K weights
 * quantizes x * w instead and multiplies its sums by the norm's factor at the
 * end (a Q8_K block's integers do not depend on a common factor, up to
 * rounding): its prologue then needs one pass over x, not two. */
struct cuq_norm {
    const float *x, *w;
    float eps;
    float *y;
};
struct cuq_multi {
    int n_w; /* 1 .. 3; SWIGLU: 2, 4, .. CUQ_MULTI_MAX; DIAG: 1 .. CUQ_MULTI_MAX / 2 */
    int ep;  /* enum cuq_epilogue */
    /* device memory: n_rows[i] rows of n_cols, all of one type and row_bytes */
    const void *w[CUQ_MULTI_MAX];
    int64_t n_rows[CUQ_MULTI_MAX];
    float *y[CUQ_MULTI_MAX]; /* [n_tok][n_rows[i]]; SWIGLU: the even ones */
    /* STORE: F32 [n_rows[i]] added to weight i's outputs (a bias: the sum
     * rounded as cuk_add_bias rounds it), or NULL */
    const float *b[3];
    float alpha;                 /* CUQ_EP_AXPY's factor */
    const struct cuq_norm *norm; /* NULL: none */
    /* SWIGLU and DIAG, or NULL: experts picked on the device. Pair (DIAG:
     * weight) p >= ids_from has its weights at w[.] + ids[p - ids_from] *
     * estride, the pairs before it at w[.] (ids: device memory, written by
     * kernels queued before: an early launch waits for the previous kernel
     * before its first weight loads, instead of issuing them during it) */
    const int32_t *ids;
    int64_t estride;
    int ids_from;
    /* CUQ_EP_MOE's routed outputs, their experts and factors, the shared
     * expert's gate logit (device memory, written by kernels queued before) */
    const float *moe_o, *moe_alpha, *moe_gate;
    const int32_t *moe_ids;
    int moe_k;
};
/* As cuq_matvec for each weight, in one launch (decode's q/k/v with their
 * biases, gate/up, the output projection with its residual add, a token's
 * experts' gate/up). cudaErrorNotSupported when the
 * fused kernels cannot take these arguments (alignment, type, n_tok > 8, a norm
 * whose x does not fit in shared memory): the caller then uses cuk_rms_norm,
 * cuq_matvec and the elementwise kernels. */
cudaError_t cuq_matvec_multi(uint32_t type, const struct cuq_multi *m, size_t row_bytes,
                             int64_t n_cols, const float *x, int64_t n_tok, cudaStream_t s,
                             bool early);

/* One token's CUQ_EP_STORE products of x with two groups of weights of two
 * types in one launch (a layer's q and k beside a v of another type), each
 * group as cuq_matvec_multi takes it (one to three weights, biases allowed,
 * no ids), both with the same norm or none. cudaErrorNotSupported where no
 * kernel takes that pair of types (Q4_K or Q5_K beside Q6_K) or these
 * arguments: the caller launches cuq_matvec_multi for each group. */
cudaError_t cuq_matvec_pair(uint32_t type1, const struct cuq_multi *m1, size_t row_bytes1,
                            uint32_t type2, const struct cuq_multi *m2, size_t row_bytes2,
                            int64_t n_cols, const float *x, cudaStream_t s, bool early);

/* True when cuq_matvec_multi takes weights of this type at w (or, with
 * ids, at w plus multiples of estride) with row_bytes, n_cols and x, so
 * that a SWIGLU or DIAG launch of up to CUQ_MULTI_MAX weights (one token;
 * DIAG: up to CUQ_MATVEC_MAX_TOK rows of x) is not refused. */
bool cuq_multi_supports(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                        const float *x, int64_t estride);

/* ---- a prompt batch's routed experts (cuq_group) ----------------------
 * Chunk c: rows a0 .. a0 + n - 1 (n <= CUQ_GROUP_TOK) of x routed to one
 * expert, whose weights (n_rows rows of n_cols, row_bytes apart) are w0
 * and, for SWIGLU, its up weights w1. */
#define CUQ_GROUP_TOK 8
struct cuq_chunk {
    const void *w0, *w1;
    int32_t a0, n;
};

/* True when cuq_group takes weights of this type with n_cols and row_bytes
 * at w (NULL: only the type and shape are checked). */
bool cuq_group_supports(uint32_t type, int64_t n_cols, size_t row_bytes, const void *w);

/* Every chunk's product in one launch: y[a][r] = sum_c W[r][c] x[a][c] for
 * the chunk's rows a, or with swiglu y[a][r] = silu(W0 x[a])[r] * (W1
 * x[a])[r]; x [rows][n_cols], CUQ_GROUP_TOK - 1 rows readable after the
 * last chunk's (their products are not stored), y rows ldy apart. x is
 * quantized as cuq_matvec quantizes it and the products are its (the
 * quantized types: cuq_group_supports). chunks: device memory,
 * n_chunks <= 65535. */
cudaError_t cuq_group(uint32_t type, bool swiglu, const struct cuq_chunk *chunks, int n_chunks,
                      size_t row_bytes, int64_t n_rows, int64_t n_cols, const float *x, float *y,
                      int64_t ldy, cudaStream_t s);

/* out[r][c] = W[r][c] as binary16, for the n_rows rows from w (the prompt
 * path: tiles of dequantized rows for cuBLAS). out is [n_rows][n_cols]. */
cudaError_t cuq_dequant_f16(uint32_t type, const void *w, size_t row_bytes, int64_t n_rows,
                            int64_t n_cols, uint16_t *out, cudaStream_t s);

/* out[i] = row ids[i] of W as F32; ids in device memory, in range. */
cudaError_t cuq_get_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                         const int32_t *ids, int64_t n, float *out, cudaStream_t s);

/* ---- everything else (cuda_ops.cu) ----------------------------------- */

/* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, n_tok rows of n; y may be x.
 * early: as cuq_matvec's (w is read before the previous kernel is done). */
cudaError_t cuk_rms_norm(const float *x, const float *w, float eps, int64_t n_tok, int64_t n,
                         float *y, cudaStream_t s, bool early);
/* Two RMSNorms of rows of n in one launch: n1 rows of x1 with w1 into y1,
 * n2 of x2 with w2 into y2, each row as cuk_rms_norm computes it (a layer's
 * q and k head norms). cudaErrorNotSupported where the 16-byte kernel does
 * not take both (alignment, n). */
cudaError_t cuk_rms_norm2(const float *x1, const float *w1, float *y1, int64_t n1, const float *x2,
                          const float *w2, float *y2, int64_t n2, float eps, int64_t n,
                          cudaStream_t s, bool early);

/* RoPE of x [n_tok][n_head][head_dim] in place (backend.h's definition);
 * neox: rotate halves, else adjacent pairs; ff: [n_rot / 2] frequency
 * divisors or NULL. */
cudaError_t cuk_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t pos0,
                     bool neox, int64_t n_rot, float freq_base, float freq_scale, const float *ff,
                     cudaStream_t s);

/* Softmax of n_rows rows of n, in place. */
cudaError_t cuk_softmax(float *x, int64_t n_rows, int64_t n, cudaStream_t s);

/* gate[i] = silu(gate[i]) * up[i]. */
cudaError_t cuk_silu_mul(float *gate, const float *up, int64_t n, cudaStream_t s);

/* y[i] += alpha * x[i]. */
cudaError_t cuk_add(float *y, const float *x, float alpha, int64_t n, cudaStream_t s);
/* Most rows of one cuk_add_n. */
#define CUK_ADD_N_MAX 8
/* y[i] += alpha[r] * x[r][i] for r = 0 .. n_rows - 1 in turn, each step as
 * cuk_add computes it (one token's experts' outputs, in one launch); alpha
 * host memory, x [n_rows][n]. */
cudaError_t cuk_add_n(float *y, const float *x, const float *alpha, int n_rows, int64_t n,
                      cudaStream_t s);
/* dst[r][i] = src[r][i] for n_rows rows of n (row strides ld_dst, ld_src).
 * Either side may be pinned host memory (the device reads or writes it over
 * PCIe itself): small transfers that must not queue behind large copies on
 * the copy engines. */
cudaError_t cuk_copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t n,
                          int64_t n_rows, cudaStream_t s);
/* dst_a[i] = src_a[i] for i < n_a and dst_b[i] = src_b[i] for i < n_b, in
 * one launch (as cuk_copy_rows: either side may be pinned host memory). */
cudaError_t cuk_copy_two(float *dst_a, const float *src_a, int64_t n_a, float *dst_b,
                         const float *src_b, int64_t n_b, cudaStream_t s);
/* y[i] += x[i] for i < n (as cuk_add with alpha 1), once the host has
 * stored a value v into *flag with (int32_t)(v - value) >= 0: x and flag
 * pinned host memory that the CPU writes, x before flag (a release store).
 * The stream waits there for the CPU's share of a product while the ops
 * queued after it wait with it, instead of being queued once the CPU is
 * done. One thread polls flag and passes the value on to the others in
 * dflag (a device word of this flag's alone, 0 or an earlier value). */
cudaError_t cuk_wait_add(float *y, const float *x, int64_t n, const uint32_t *flag, uint32_t *dflag,
                         uint32_t value, cudaStream_t s);
/* y[i] = x[i] for i < n, x host memory, once *flag has reached value as
 * for cuk_wait_add (the CPU's half experts' activations for their downs). */
cudaError_t cuk_wait_copy(float *y, const float *x, int64_t n, const uint32_t *flag,
                          uint32_t *dflag, uint32_t value, cudaStream_t s);
/* y[t][i] += b[i] for n_tok rows of n. */
cudaError_t cuk_add_bias(float *y, const float *b, int64_t n_tok, int64_t n, cudaStream_t s);

/* y[i] += alpha[i / n] * x[i] for rows of n: per-row weights from device memory,
 * scattered: y row rows[i] gets x row i (rows: device memory, [n_rows]). */
cudaError_t cuk_add_rows(float *y, const float *x, const int32_t *rows, const float *alpha,
                         int64_t n_rows, int64_t n, cudaStream_t s);

/* y[t] += alpha[t][j] * o[rows[t][j]] for j < k in order (rows[t][j] -1:
 * none), each add as cuk_add_rows's: the MoE combine of a batch's experts in
 * one launch. rows and alpha [n_tok][k]. */
cudaError_t cuk_moe_combine(float *y, const float *o, const int32_t *rows, const float *alpha,
                            int64_t n_tok, int k, int64_t n, cudaStream_t s);

/* One token's k experts picked on the device (ids and alpha [k], device
 * memory: the route op's): y[i] += alpha[j] * o[j][i] for the slots j in
 * ascending order of ids[j], each add as cuk_add_n's, then (sh not NULL)
 * y[i] += sigmoid(*sh_gate) * sh[i] as cuk_add_rows adds (the shared
 * expert, its gate logit in device memory). o [k][n]. early: as cuk_route's. */
#define CUK_MOE_COMBINE_MAX 64
cudaError_t cuk_moe_token_combine(float *y, const float *o, const int32_t *ids, const float *alpha,
                                  int k, int64_t n, const float *sh, const float *sh_gate,
                                  cudaStream_t s, bool early);

/* out[i] = F32 rows ids[i] of x (rows of n); ids in device memory. */
cudaError_t cuk_gather_f32(const float *x, int64_t n, const int32_t *ids, int64_t n_ids, float *out,
                           cudaStream_t s);

/* A conversion's scale, in device memory (max_bits and ticket zero before
 * the first conversion; each leaves them zero again). alpha: what the
 * products of the binary16 values are multiplied by, a power of two, 1
 * unless x held finite values past binary16's range. */
struct cuk_f16_scale {
    unsigned max_bits, ticket;
    float alpha;
};

/* out[i] = (binary16) (x[i] / sc->alpha), where sc->alpha is the least
 * power of two, 1 or more, that keeps every finite |x[i]| (up to 3e38) /
 * alpha within binary16's range (the alpha of the GEMMs that read out:
 * cuBLAS in device pointer mode). */
cudaError_t cuk_f32_to_f16(const float *x, int64_t n, uint16_t *out, struct cuk_f16_scale *sc,
                           cudaStream_t s);

/* Reads bytes (a multiple of 16) of p once, as a stream of independent
 * 16-byte loads: the device memory read rate is bytes over its time. The
 * loaded words are xor-ed (so that the loads are kept) and the result is
 * stored at sink only if it equals a constant that memory filled with one
 * byte value (xor 0) never gives. */
cudaError_t cuk_read(const void *p, size_t bytes, uint32_t *sink, cudaStream_t s);

/* Attention (backend.h's struct backend_attn, with its cache types and
 * layouts): rotates q and k when rope.n_rot > 0 and stores k and v of the
 * n_tok new tokens in the caches (a launch of its own for a batch; inside
 * the attention kernel for one token, where q is left unrotated), then
 * out = softmax(scale * q K^T) V, causal. part: scratch of
 * cuk_attention_scratch floats (split-K partial results of decode: the splits
 * are used for single tokens only). early: the decode kernels use
 * programmatic dependent launch (as cuq_matvec). Head dimensions: any up to
 * CUK_ATT_MAX_DIM (a Q8_0 cache's: multiples of 32). */
#define CUK_ATT_MAX_DIM 256
#define CUK_ATT_MAX_SPLIT 64 /* decode: blocks a head's keys are split over, at most */
struct cuk_rope {
    int64_t n_rot; /* 0: q and k arrive rotated */
    bool neox;
    double freq_base, freq_scale;
    const float *ff; /* [n_rot / 2] frequency divisors (device memory) or NULL */
    /* [n_rot / 2] the pairs' frequencies, freq_scale * freq_base^(-2i / n_rot) / ff[i],
     * in device memory (so that kernels do not take a power per element), or NULL:
     * computed from the fields above */
    const double *inv;
};
struct cuk_attn {
    void *k_cache, *v_cache;
    int64_t n_ctx, n_head, n_head_kv, head_dim, head_dim_v, pos0, n_tok;
    float scale;
    uint32_t k_type, v_type;
    struct cuk_rope rope; /* RoPE of q and of k on its way into the cache */
    /* one token with rotation (required there): cos and sin of each RoPE pair
     * at pos0, interleaved, computed by the host as the CPU backend does */
    const float *cs;
    /* one token: the heads' RMSNorms (ARCH_QK_NORM) applied to q and k on
     * their way in, as cuk_rms_norm over rows of head_dim with eps (weights
     * of head_dim in device memory); NULL, NULL: q and k arrive normed */
    const float *q_norm, *k_norm;
    float norm_eps;
};
size_t cuk_attention_scratch(int64_t n_head, int64_t head_dim_v);
/* Decode attention takes the heads of a KV group in one block from min_keys
 * keys of context on (0: never; CUK_ATT_GQA_FILL, the default: where such
 * blocks fill the device in splits of 64 keys). Process-wide. */
#define CUK_ATT_GQA_FILL (-1)
void cuk_attention_gqa(int64_t min_keys);
cudaError_t cuk_attention(const struct cuk_attn *a, float *q, const float *k, const float *v,
                          float *out, float *part, cudaStream_t s, bool early);

/* Routing (backend.h's route op): softmax of each row of x [n_tok][n] in
 * place, ids [n_tok][k] and weights w [n_tok][k] of the k most probable
 * experts. n <= 2048, k <= 32. early: launched to start during the previous
 * kernel's tail (programmatic dependent launch); it waits for that kernel
 * before it reads anything. */
cudaError_t cuk_route(float *x, int64_t n_tok, int64_t n, int64_t k, bool renorm, int32_t *ids,
                      float *w, cudaStream_t s, bool early);

/* The k best of x[0..n) (backend.h's top_k op), as keys: (value's bits made
 * to sort as unsigned, -0 as +0, a NaN as 0) << 32 | (2^32 - 1 - index), the
 * k largest keys in descending order into out [k] (device memory). n <
 * 2^32, 1 <= k <= min(n, CUK_TOP_K_MAX); scratch: cuk_top_k_scratch(n, k)
 * bytes. early: as cuk_route's. */
#define CUK_TOP_K_MAX 256
size_t cuk_top_k_scratch(int64_t n, int k);
cudaError_t cuk_top_k(const float *x, int64_t n, int k, unsigned long long *scratch,
                      unsigned long long *out, cudaStream_t s, bool early);

/* HYPURA_CUDA_TRACE's records (cuda_trace.cuh; bench/ktrace reads them):
 * the kind of kernel and its shape a, b as below; t[] the global timer (ns)
 * at the CTA's start, past its wait for the kernel before, past its
 * prologue, at its end. */
enum cuk_trace_kind {
    CUK_TRACE_PRODUCT = 1,   /* a staged one-token product: a rows, b columns */
    CUK_TRACE_ATTENTION = 2, /* decode attention: a heads, b keys */
    CUK_TRACE_COMBINE = 3,   /* its splits combined: a splits, b value dims */
};
struct cuk_trace_rec {
    uint16_t kind, sm;
    uint32_t cta, a, b;
    uint64_t t[4];
};
struct cuk_trace {
    struct cuk_trace_rec *rec; /* NULL: off */
    unsigned long long *n;     /* records begun */
    unsigned long long skip, cap;
};
cudaError_t cuk_trace_set(const struct cuk_trace *t);
cudaError_t cuq_trace_set(const struct cuk_trace *t);

#ifdef __cplusplus
}
#endif

#endif
