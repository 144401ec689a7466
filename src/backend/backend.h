/*
 * Compute backends: the small table of operations that the forward pass is
 * written in. The CPU backend (backend/cpu) implements all of it and is the
 * reference that other backends (CUDA next) are tested against, op by op.
 *
 * Data model. Activations are F32 arrays in memory the backend allocated
 * (backend_alloc); for the CPU that is host memory, for a GPU it will be
 * device memory, so the forward pass never dereferences an activation itself:
 * it reads results back with backend_download. Weights arrive as a
 * struct backend_weight, a borrowed view of one matrix (or one expert's
 * slice of a stacked tensor) in its file type, row-major: row r starts at
 * data + r * row_bytes and holds n_cols elements (GGUF ne[0]). The view
 * comes from the weight store (model_acquire), which decides where the bytes
 * live; the backend only computes on them.
 *
 * Shapes. A batch of n_tok tokens is stored token-major: x[t * n + i].
 * matmul computes y[t][r] = sum_c W[r][c] * x[t][c] for every token: the
 * same product as a matvec, so one op serves decode (n_tok = 1) and prompt
 * batches. The CPU backend computes each output element the same way in both,
 * which keeps batch and token-by-token evaluation bit-identical; the CUDA
 * backend does not (dequantizing matrix-vector kernels for decode, cuBLAS
 * for batches): its two agree to rounding.
 *
 * Ops take no status: their inputs were validated when the model was bound
 * (shapes, types) and sizes were reserved up front (backend_reserve), so a
 * failure inside an op is a bug (HY_ASSERT). Ops allocate nothing.
 *
 * Weight types: whatever the type-traits table (src/quant/quant.h) can
 * compute with; supports_type reports what a backend can do. matmul converts
 * the activations once per call to the weight type's vec_dot_type (Q8_0,
 * Q8_K, F16, ...), as llama.cpp does, so results agree with it.
 *
 * Not here yet: multi-sequence batches (positions are one contiguous run per
 * call).
 */
#ifndef HY_BACKEND_BACKEND_H
#define HY_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "quant/quant.h"

/* Where the bytes of a weight lie. Backend memory is what backend_alloc
 * returned (weights placed there with backend_upload); for the CPU backend
 * both are host memory. A GPU backend computes on host weights too: it copies
 * them over PCIe or has the CPU compute where they lie (src/backend/cuda). */
enum backend_mem {
    BACKEND_MEM_HOST = 0, /* host RAM (the weight store's arena, slots, expert cache) */
    BACKEND_MEM_BACKEND,  /* backend memory */
};

/* A weight matrix as the backend sees it. */
struct backend_weight {
    const void *data; /* borrowed from the weight store; valid until model_release */
    uint32_t type;    /* enum hy_type of the elements */
    int64_t n_cols;   /* elements per row: the input length */
    int64_t n_rows;   /* rows: the output length */
    size_t row_bytes; /* bytes from one row to the next */
    const char *name; /* tensor name for messages; borrowed, may be NULL */
    uint8_t mem;      /* enum backend_mem of data */
    /* Identity of these bytes for a backend's own weight cache: the same key
     * always means the same bytes (wherever they lie now); 0: not cacheable.
     * The store gives each expert slice one. */
    uint64_t key;
    /* data stays as it is until the model closes (resident, mapped or in
     * backend memory), not only until model_release: a backend may still
     * be copying from it when the call returns */
    bool stable;
};

enum backend_rope_mode {
    BACKEND_ROPE_NORM = 0, /* rotates adjacent pairs (x[2i], x[2i+1]): llama */
    BACKEND_ROPE_NEOX = 1, /* rotates halves (x[i], x[i + n_rot/2]): NeoX, qwen2, qwen3 */
};

/* Rotation angle of pair i (i < n_rot / 2) at position pos, as llama.cpp's
 * ggml_rope_ext computes it without YaRN:
 *
 *   theta_i = pos * freq_scale * freq_base^(-2i / n_rot) / freq_factors[i]
 *
 * freq_scale is 1 / factor of linear position interpolation
 * (rope.scaling.type = linear), so that position 2p with factor 2 rotates
 * exactly as position p without scaling. freq_factors are Llama 3's
 * per-frequency divisors (the rope_freqs.weight tensor). */
struct backend_rope {
    enum backend_rope_mode mode;
    int64_t n_rot;     /* rotated dims per head: even, <= head_dim; the rest pass through */
    double freq_base;  /* rope.freq_base, > 0 */
    double freq_scale; /* (0, 1]: 1 / linear scaling factor; 1: no scaling */
    /* borrowed host memory, [n_rot / 2], valid while the rope is used; NULL: all 1 */
    const float *freq_factors;
};

/* Worst case sizes, given once before any op runs (backend_reserve). */
struct backend_limits {
    int64_t max_batch;    /* tokens per op call */
    int64_t max_ctx;      /* KV cache rows */
    int64_t max_head_dim; /* head_dim and head_dim_v */
    int64_t max_cols;     /* longest weight row (n_cols) any matmul gets */
    int64_t max_heads;    /* query heads of an attention call (0: not known) */
    int64_t max_top;      /* longest vector top_k picks from (the logits; 0: none) */
    /* MoE models (0 for dense ones): experts a token picks, the experts'
     * hidden width and the model's, for a backend that keeps buffers for a
     * batch's routed rows (moe_batch) */
    int64_t moe_k, moe_ff, moe_embd;
};

/* One layer's attention over its KV cache.
 *
 * Cache types and layouts (both caches hold n_ctx positions):
 *   K, any type: row-major, row p = the keys of position p, n_head_kv * head_dim
 *     elements of k_type, quant_bytes(k_type, n_head_kv * head_dim) bytes;
 *   V, F32 or F16: transposed, row d (d < n_head_kv * head_dim_v) = dim d of
 *     every position, n_ctx elements of v_type;
 *   V, Q8_0: row-major like K (a block must lie along the head dimension).
 * These are llama.cpp's layouts: without flash attention it stores V
 * transposed, and it quantizes V only with flash attention, row by row.
 *
 * The arithmetic follows llama.cpp's CPU path for each type, so that results
 * agree with it: q is converted to the vec_dot_type of k_type (F16 for F16,
 * Q8_0 for Q8_0) and each score is one vec_dot with a cached key; the
 * softmax is in F32; for a transposed V the softmax weights are converted to
 * v_type and each output dim is one vec_dot with a V row (llama.cpp's
 * kq · V^T matmul); for a Q8_0 V each cached row is dequantized and summed
 * with the F32 weights (its flash-attention path). Types: F32, F16, Q8_0;
 * head_dim and head_dim_v multiples of the block size (32 for Q8_0). */
struct backend_attn {
    void *k_cache;  /* backend memory, layout above */
    void *v_cache;  /* backend memory, layout above */
    int64_t n_ctx;  /* positions in the cache */
    int64_t n_head; /* query heads; a multiple of n_head_kv (GQA) */
    int64_t n_head_kv;
    int64_t head_dim;   /* of queries and keys */
    int64_t head_dim_v; /* of values */
    int64_t pos0;    /* position of the first new token: cache rows [0, pos0) hold earlier tokens */
    int64_t n_tok;   /* new tokens, at positions pos0 .. pos0 + n_tok - 1; pos0 + n_tok <= n_ctx */
    float scale;     /* applied to q.k before the softmax (1/sqrt(head_dim) for llama) */
    uint32_t k_type; /* enum hy_type of the K cache */
    uint32_t v_type; /* enum hy_type of the V cache */
    /* NULL: q and k arrive rotated. Else the op rotates them first, as the
     * rope op would (token t at pos0 + t; q over n_head heads, k over
     * n_head_kv): a GPU folds that into its cache writes. */
    const struct backend_rope *rope;
};

/* What matmul_fused does after its products (see there). */
enum backend_fuse {
    BACKEND_FUSE_NONE = 0, /* ys[i] = W_i x for each weight */
    BACKEND_FUSE_ADD,      /* one weight: ys[0] += W_0 x (a residual add) */
    BACKEND_FUSE_SWIGLU,   /* two weights of equal n_rows: ys[0] = silu(W_0 x) * (W_1 x) */
};

/* True when V of this type is stored transposed (see struct backend_attn). */
static inline bool backend_kv_v_transposed(uint32_t v_type)
{
    return v_type == HY_TYPE_F32 || v_type == HY_TYPE_F16;
}

struct backend;

struct backend_ops {
    const char *name;
    void (*free)(struct backend *be);
    /* True when matmul and get_rows accept weights of this type. */
    bool (*supports_type)(uint32_t type);
    /* Sizes scratch for the limits; HY_ERR_OOM naming the size. May be called
     * again with larger limits. */
    enum hy_status (*reserve)(struct backend *be, const struct backend_limits *lim);
    /* Backend memory of bytes (aligned for any op); NULL when out of memory. */
    void *(*alloc)(struct backend *be, size_t bytes);
    void (*dealloc)(struct backend *be, void *buf);
    /* Copies backend memory to host memory (waits for the ops before it). */
    void (*download)(struct backend *be, const void *src, void *host_dst, size_t bytes);
    /* Copies host memory to backend memory (in order with the ops). */
    void (*upload)(struct backend *be, void *dst, const void *host_src, size_t bytes);
    /* Optional (NULL: download at once): starts a copy of backend memory to
     * host memory after the ops queued so far and returns without waiting;
     * host_dst is written by download_wait, which waits for that copy only
     * (ops queued after the start may still run). One copy at a time. */
    void (*download_start)(struct backend *be, const void *src, void *host_dst, size_t bytes);
    enum hy_status (*download_wait)(struct backend *be);
    /* Waits for every op queued so far; the first failure since the backend
     * was made (a GPU call's error, naming the call and file:line), else
     * HY_OK. Ops return nothing: a backend that can fail at run time records
     * the failure, skips the later ops and reports it here. */
    enum hy_status (*sync)(struct backend *be);
    /* Optional (NULL: the caller downloads x and picks on the host). The k
     * best of x[0..n) (backend memory, after the ops queued so far): their
     * indices into ids[0..k) and values into vals[0..k) (host memory), in
     * descending value, ties to the lower index, -0 equal to +0 (given as
     * +0), NaNs below every number; 1 <= k <= min(n, BACKEND_TOP_K_MAX),
     * n < 2^31. Waits for them. A failure is recorded as the other ops'
     * are (sync reports it; ids and vals hold nothing then). Sampling's
     * candidates: a vocabulary's logits stay where they were computed. */
    void (*top_k)(struct backend *be, const float *x, int64_t n, int k, int32_t *ids, float *vals);
    /* Optional (NULL: nothing to do): makes host memory that weights are
     * read from fast to copy to the backend (page-locks it for DMA), and
     * undoes that before the memory is freed. */
    enum hy_status (*host_register)(struct backend *be, void *p, size_t bytes);
    void (*host_unregister)(struct backend *be, void *p);

    /* y[t][r] = sum_c W[r][c] * x[t][c]; x [n_tok][W.n_cols], y [n_tok][W.n_rows]. */
    void (*matmul)(struct backend *be, const struct backend_weight *w, const float *x,
                   int64_t n_tok, float *y);
    /* out[i] = row ids[i] of w converted to F32; out [n][w.n_cols]. Ids are in range. */
    void (*get_rows)(struct backend *be, const struct backend_weight *w, const int32_t *ids,
                     int64_t n, float *out);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, for n_tok rows of n; y may be x. */
    void (*rms_norm)(struct backend *be, const float *x, const float *weight, float eps,
                     int64_t n_tok, int64_t n, float *y);
    /* Rotates x [n_tok][n_head][head_dim] in place; token t is at position pos0 + t. */
    void (*rope)(struct backend *be, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                 int64_t pos0, const struct backend_rope *rope);
    /* Optional (NULL: the forward pass calls matmul, add and silu_mul): the
     * products of one x [n_tok][n_cols] with n_w <= 3 weights of that n_cols,
     * and the element-wise op of kind after them, in as few steps as the
     * backend can (one kernel for decode's q/k/v, gate/up). The results agree
     * with the separate ops to rounding. ys[i]: [n_tok][ws[i].n_rows]; tmp: backend
     * memory as large as ys[0], scratch for a backend that computes ADD and SWIGLU's
     * products separately (weights it cannot fuse). bias (NONE only; NULL: none):
     * bias[i] NULL or F32 [ws[i].n_rows] in backend memory, added to every row of
     * ys[i] as add_bias adds it (the same sums). */
    void (*matmul_fused)(struct backend *be, enum backend_fuse kind,
                         const struct backend_weight *ws, int n_w, const float *x, int64_t n_tok,
                         float *const *ys, const float *const *bias, float *tmp);
    /* Routing of n_tok tokens over n experts: each row of x [n_tok][n] (router
     * logits) becomes its softmax, in place; ids [n_tok][k] are the k most
     * probable experts of each token, in descending probability, ties to the
     * lower id; w [n_tok][k] their probabilities, renormalised to sum 1 when
     * renorm. ids and w are backend memory. */
    void (*route)(struct backend *be, float *x, int64_t n_tok, int64_t n, int64_t k, bool renorm,
                  int32_t *ids, float *w);
    /* Stores k [n_tok][n_head_kv * head_dim] and v [n_tok][n_head_kv * head_dim_v] (F32) in
     * the caches at positions pos0.. (converted to their types), then
     * out[t] = softmax(scale * q[t] . K[0..pos0+t]) V for every head (causal).
     * q [n_tok][n_head * head_dim], out [n_tok][n_head * head_dim_v]. On the CPU the
     * output of a token does not depend on n_tok (a batch equals token-by-token calls, bit
     * for bit); the CUDA backend's agree to rounding (its kernels differ by batch size).
     * With a->rope the op rotates q and k first; their buffers hold no defined values
     * afterwards. */
    void (*attention)(struct backend *be, const struct backend_attn *a, float *q, float *k,
                      const float *v, float *out);
    /* Softmax of each of n_rows rows of n, in place. */
    void (*softmax)(struct backend *be, float *x, int64_t n_rows, int64_t n);
    /* gate[i] = silu(gate[i]) * up[i] for i < n. */
    void (*silu_mul)(struct backend *be, float *gate, const float *up, int64_t n);
    /* y[i] += alpha * x[i] for i < n. */
    void (*add)(struct backend *be, float *y, const float *x, float alpha, int64_t n);
    /* y[t][i] += b[i] for n_tok rows of n: one bias vector added to every token's row, as
     * add with alpha 1 does it row by row. */
    void (*add_bias)(struct backend *be, float *y, const float *b, int64_t n_tok, int64_t n);
    /* Row i of x [n_rows][n] times alpha[i] added to row rows[i] of y, for i < n_rows, as
     * add does it (the MoE combine: one call per expert). rows are distinct; rows and
     * alpha are host memory. */
    void (*add_rows)(struct backend *be, float *y, const float *x, const int32_t *rows,
                     const float *alpha, int64_t n_rows, int64_t n);
    /* Optional (NULL: the forward pass runs the experts op by op). One token's
     * routed experts: y[0..n_embd) += sum_j alpha[j] * down_j(silu(gate_j x) *
     * up_j x), where w[3j], w[3j + 1], w[3j + 2] are expert j's gate, up and down
     * slices (all stable), x [n_embd] and y backend memory, alpha on the host;
     * h, h2 [k][gate rows] and o [k][n_embd] backend scratch. The backend picks
     * where each expert is computed; the result agrees with the op-by-op one
     * to rounding (the CPU backend's: bit for bit). k <= BACKEND_MOE_MAX_K. */
    void (*moe_token)(struct backend *be, const float *x, const struct backend_weight *w,
                      const float *alpha, int k, float *y, float *h, float *h2, float *o);
    /* Optional (NULL, or false returned: nothing was queued, the routes go
     * to the host and moe_token takes the experts). One token's routed
     * experts left on the backend: ids [k] and alpha [k] are backend memory
     * (the route op's outputs, not read by the host), and every expert of
     * the layer lies in backend memory: w[0..3) are expert 0's gate, up and
     * down slices, expert e's at data + e * stride[i]. y[0..n_embd) += the k
     * experts' shares as moe_token adds them (in ascending order of their
     * ids). With shw (the shared expert's gate, up and down weights, in
     * backend memory) the op then adds y += sigmoid(*sh_gate) * sh, sh =
     * down(silu(gate x) * up x), as add_rows adds a row (the gate logit in
     * backend memory; sh [n_embd], backend memory, is scratch it may use).
     * x [n_embd], h [k][gate rows], h2 [the shared expert's gate rows] and
     * o [k][n_embd] backend memory. k <= BACKEND_MOE_MAX_K. */
    bool (*moe_routed)(struct backend *be, const float *x, const struct backend_weight *w,
                       const size_t *stride, const int32_t *ids, const float *alpha, int k,
                       const struct backend_weight *shw, const float *sh_gate, float *sh, float *y,
                       float *h, float *h2, float *o);
    /* Optional (NULL, or false returned: the forward pass runs the experts
     * op by op). A batch's routed experts of one layer: for each token and
     * each expert it was routed to, y[t] += weight * down(silu(gate x[t]) *
     * up x[t]), the experts' shares added in increasing expert order (as
     * add_rows calls, one per expert in that order, add them). Expert sel[j]
     * (j < n_sel, sel increasing) has the slices w[3j], w[3j + 1], w[3j + 2]
     * (gate, up, down; stable) and cnt[sel[j]] tokens, tok[sel[j] * ld + i]
     * with weights wt[sel[j] * ld + i] for i < that count. x [n_tok][n_embd]
     * and y are backend memory, the rest host memory. Returns whether it
     * queued them (false: nothing was done); the result agrees with the op
     * by op one to rounding. */
    bool (*moe_batch)(struct backend *be, const float *x, int64_t n_tok,
                      const struct backend_weight *w, const int32_t *sel, int n_sel,
                      const int64_t *cnt, const int32_t *tok, const float *wt, int64_t ld,
                      float *y);
    /* Optional (NULL: nothing to do): moe_token calls with this x [n] follow,
     * and x does not change before them; the backend may start moving x to
     * where it computes experts (the CUDA backend's CPU side) as soon as the
     * ops queued so far have made it. */
    void (*moe_prepare)(struct backend *be, const float *x, int64_t n);
    /* Optional (NULL: nothing to do): products of the weights w[0..n) are
     * likely to come (decode's guess at the next layer's experts); the
     * backend may start copying those in host memory (stable and keyed)
     * into its own, without holding back the ops queued after. Only a hint:
     * the results of every op stay the same. */
    void (*prefetch)(struct backend *be, const struct backend_weight *w, int n);
    /* Optional (NULL: holds nothing). Whether the backend keeps the bytes of
     * key (a backend_weight's, not 0) in memory of its own, so that a matmul
     * of the weight with that key reads them there: its data may then be
     * NULL (model_describe's), and a streamed expert slice need not be read
     * from the file. A true answer holds for the next matmul if no call with
     * another key comes between; later the backend may have let it go. The
     * backend may count the question as a use (its eviction order). */
    bool (*holds)(struct backend *be, uint64_t key);
};

#define BACKEND_MOE_MAX_K 64
#define BACKEND_TOP_K_MAX 256

struct backend {
    const struct backend_ops *ops;
    int n_threads; /* threads the backend computes with (informational) */
    uint64_t scratch_bytes; /* host memory its scratch takes (set by reserve) */
};

/* Wrappers, so that the forward pass reads as a list of operations. */
static inline void backend_free(struct backend *be)
{
    if (be) be->ops->free(be);
}

HY_MUST_CHECK static inline enum hy_status backend_reserve(struct backend *be,
                                                           const struct backend_limits *lim)
{
    return be->ops->reserve(be, lim);
}

static inline void backend_matmul(struct backend *be, const struct backend_weight *w,
                                  const float *x, int64_t n_tok, float *y)
{
    be->ops->matmul(be, w, x, n_tok, y);
}

static inline void backend_get_rows(struct backend *be, const struct backend_weight *w,
                                    const int32_t *ids, int64_t n, float *out)
{
    be->ops->get_rows(be, w, ids, n, out);
}

static inline void backend_rms_norm(struct backend *be, const float *x, const float *weight,
                                    float eps, int64_t n_tok, int64_t n, float *y)
{
    be->ops->rms_norm(be, x, weight, eps, n_tok, n, y);
}

static inline void backend_rope(struct backend *be, float *x, int64_t n_tok, int64_t n_head,
                                int64_t head_dim, int64_t pos0, const struct backend_rope *rope)
{
    be->ops->rope(be, x, n_tok, n_head, head_dim, pos0, rope);
}

static inline void backend_attention(struct backend *be, const struct backend_attn *a, float *q,
                                     float *k, const float *v, float *out)
{
    be->ops->attention(be, a, q, k, v, out);
}

static inline void backend_route(struct backend *be, float *x, int64_t n_tok, int64_t n,
                                 int64_t k, bool renorm, int32_t *ids, float *w)
{
    be->ops->route(be, x, n_tok, n, k, renorm, ids, w);
}

static inline void backend_softmax(struct backend *be, float *x, int64_t n_rows, int64_t n)
{
    be->ops->softmax(be, x, n_rows, n);
}

static inline void backend_silu_mul(struct backend *be, float *gate, const float *up, int64_t n)
{
    be->ops->silu_mul(be, gate, up, n);
}

static inline void backend_add(struct backend *be, float *y, const float *x, float alpha, int64_t n)
{
    be->ops->add(be, y, x, alpha, n);
}

static inline void backend_add_bias(struct backend *be, float *y, const float *b, int64_t n_tok,
                                    int64_t n)
{
    be->ops->add_bias(be, y, b, n_tok, n);
}

static inline void backend_add_rows(struct backend *be, float *y, const float *x,
                                    const int32_t *rows, const float *alpha, int64_t n_rows,
                                    int64_t n)
{
    be->ops->add_rows(be, y, x, rows, alpha, n_rows, n);
}

static inline void backend_download(struct backend *be, const void *src, void *host_dst,
                                    size_t bytes)
{
    be->ops->download(be, src, host_dst, bytes);
}

static inline void backend_upload(struct backend *be, void *dst, const void *host_src,
                                  size_t bytes)
{
    be->ops->upload(be, dst, host_src, bytes);
}

HY_MUST_CHECK static inline enum hy_status backend_sync(struct backend *be)
{
    return be->ops->sync(be);
}

/* download_start, or where the backend has none a download then and there
 * (backend_download_wait then waits for every op queued). */
static inline void backend_download_start(struct backend *be, const void *src, void *host_dst,
                                          size_t bytes)
{
    if (be->ops->download_start)
        be->ops->download_start(be, src, host_dst, bytes);
    else
        be->ops->download(be, src, host_dst, bytes);
}

HY_MUST_CHECK static inline enum hy_status backend_download_wait(struct backend *be)
{
    return be->ops->download_wait ? be->ops->download_wait(be) : be->ops->sync(be);
}

static inline void backend_moe_prepare(struct backend *be, const float *x, int64_t n)
{
    if (be->ops->moe_prepare) be->ops->moe_prepare(be, x, n);
}

#endif
