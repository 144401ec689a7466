#include "backend/cpu/cpu_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/threadpool.h"
#include "quant/quant.h"


/* Tokens whose activations are dotted with one converted chunk of a row.
 * Bounds the x tile a row pass touches (TILE * n_cols floats) so that it
 * stays in cache for the next row. */
#define MATMUL_TILE 16


struct cpu_backend {
    struct backend base;     /* first: a struct backend * is a struct cpu_backend * */
    struct threadpool *pool; /* owned */
    int n_threads;
    quant_vec_dot_fn dot; /* F32 dot product (attention scores) */
    const char *kernels;
    struct backend_limits lim;
    bool portable;      /* reference quant kernels instead of the selected SIMD ones */
    void *act;          /* owned: activations converted to a vec_dot_type, [max_batch][row] */
    size_t act_bytes;
    float *att_scratch; /* owned, [n_threads][lim.max_ctx] attention scores */
    float *rope_cs;     /* owned, [lim.max_head_dim] cos then sin of one position */
};

static struct cpu_backend *cpu_of(struct backend *be)
{
    return (struct cpu_backend *)be;
}

static bool cpu_supports_type(uint32_t type)
{
    return quant_is_supported(type);
}

/* The dot product and conversions this backend uses for a type: the
 * selected SIMD kernels, or the reference ones when portable. */
static quant_vec_dot_fn kernel_vec_dot(const struct cpu_backend *cb, uint32_t type)
{
    return cb->portable ? quant_traits(type)->vec_dot : quant_kernels(type)->vec_dot;
}

static quant_from_float_fn kernel_from_float(const struct cpu_backend *cb, uint32_t type)
{
    return cb->portable ? quant_traits(type)->from_float : quant_kernels(type)->from_float;
}

static quant_to_float_fn kernel_to_float(const struct cpu_backend *cb, uint32_t type)
{
    return cb->portable ? quant_traits(type)->to_float : quant_kernels(type)->to_float;
}

/* ---- matmul --------------------------------------------------------------- */

/* Every output y[t][r] is one vec_dot of weight row r with activation row t,
 * computed by one thread, so results do not depend on the thread count or on
 * how a prompt is split into batches. Rows are split among the threads; each
 * thread walks its rows once per tile of MATMUL_TILE tokens, so a weight row
 * is read from memory once per tile and the tile's activations stay in cache.
 * The activations are converted to the weight's vec_dot_type once per call
 * (in parallel over tokens for prompt batches). */
struct matmul_task {
    const struct cpu_backend *cb;
    const struct backend_weight *w;
    const float *x;
    int64_t n_tok;
    float *y;
    const void *xq;   /* activations in vec_dot_type */
    size_t xq_row;    /* bytes per activation row */
    quant_vec_dot_fn vec_dot;
    quant_from_float_fn from_float;
};

static void convert_worker(void *arg, int ith, int nth)
{
    const struct matmul_task *task = arg;
    const int64_t t0 = task->n_tok * ith / nth, t1 = task->n_tok * (ith + 1) / nth;
    const int64_t n = task->w->n_cols;
    for (int64_t t = t0; t < t1; t++)
        task->from_float(task->x + t * n, (uint8_t *)task->xq + (size_t)t * task->xq_row, n);
}

static void matmul_worker(void *arg, int ith, int nth)
{
    const struct matmul_task *task = arg;
    const struct backend_weight *w = task->w;
    const int64_t n_rows = w->n_rows, n_cols = w->n_cols;
    const int64_t r0 = n_rows * ith / nth, r1 = n_rows * (ith + 1) / nth;
    for (int64_t t0 = 0; t0 < task->n_tok; t0 += MATMUL_TILE) {
        const int64_t nt = HY_MIN(MATMUL_TILE, task->n_tok - t0);
        const uint8_t *xt = (const uint8_t *)task->xq + (size_t)t0 * task->xq_row;
        for (int64_t r = r0; r < r1; r++) {
            const void *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            float *yr = task->y + t0 * n_rows + r;
            for (int64_t t = 0; t < nt; t++)
                yr[t * n_rows] = task->vec_dot(n_cols, row, xt + (size_t)t * task->xq_row);
        }
    }
}

static void cpu_matmul(struct backend *be, const struct backend_weight *w, const float *x,
                       int64_t n_tok, float *y)
{
    struct cpu_backend *cb = cpu_of(be);
    const struct quant_traits *tr = quant_traits(w->type);
    HY_ASSERT(tr && tr->vec_dot && n_tok >= 1 && n_tok <= cb->lim.max_batch);
    struct matmul_task task = {cb, w, x, n_tok, y, x, (size_t)w->n_cols * sizeof(float),
                               kernel_vec_dot(cb, w->type), NULL};
    /* a tiny matrix (a router) is not worth waking the workers for */
    const bool serial = w->n_rows * w->n_cols * n_tok < 32768;
    if (tr->vec_dot_type != HY_TYPE_F32) {
        task.xq_row = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)w->n_cols);
        HY_ASSERT((size_t)n_tok * task.xq_row <= cb->act_bytes);
        task.xq = cb->act;
        task.from_float = kernel_from_float(cb, tr->vec_dot_type);
        if (serial || n_tok == 1)
            convert_worker(&task, 0, 1);
        else
            threadpool_run(cb->pool, convert_worker, &task);
    }
    if (serial)
        matmul_worker(&task, 0, 1);
    else
        threadpool_run(cb->pool, matmul_worker, &task);
}

static void cpu_get_rows(struct backend *be, const struct backend_weight *w, const int32_t *ids,
                         int64_t n, float *out)
{
    struct cpu_backend *cb = cpu_of(be);
    quant_to_float_fn to_float = kernel_to_float(cb, w->type);
    HY_ASSERT(to_float);
    for (int64_t i = 0; i < n; i++) {
        HY_ASSERT(ids[i] >= 0 && ids[i] < w->n_rows);
        const void *row = (const uint8_t *)w->data + (size_t)ids[i] * w->row_bytes;
        to_float(row, out + i * w->n_cols, w->n_cols);
    }
}

/* ---- element-wise ops ------------------------------------------------------ */

static void cpu_rms_norm(struct backend *be, const float *x, const float *weight, float eps,
                         int64_t n_tok, int64_t n, float *y)
{
    (void)be;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xt = x + t * n;
        float *yt = y + t * n;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xt[i] * xt[i];
        const float s = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) yt[i] = xt[i] * s * weight[i];
    }
}

/* cos and sin of pos * base^(-2i / n_rot) for i < n_rot / 2, computed in
 * double: positions reach 1e5 and more, where a float angle has lost digits. */
static void rope_angles(const struct backend_rope *rp, int64_t pos, float *cs)
{
    const int64_t half = rp->n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        double theta = (double)pos * pow(rp->freq_base, -2.0 * (double)i / (double)rp->n_rot);
        cs[i] = (float)cos(theta);
        cs[half + i] = (float)sin(theta);
    }
}

static void cpu_rope(struct backend *be, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                     int64_t pos0, const struct backend_rope *rp)
{
    struct cpu_backend *cb = cpu_of(be);
    HY_ASSERT(rp->n_rot > 0 && rp->n_rot % 2 == 0 && rp->n_rot <= head_dim &&
              head_dim <= cb->lim.max_head_dim);
    const int64_t half = rp->n_rot / 2;
    float *cs = cb->rope_cs;
    for (int64_t t = 0; t < n_tok; t++) {
        rope_angles(rp, pos0 + t, cs);
        for (int64_t h = 0; h < n_head; h++) {
            float *v = x + (t * n_head + h) * head_dim;
            for (int64_t i = 0; i < half; i++) {
                /* NORM pairs dims (2i, 2i+1); NEOX pairs (i, i + n_rot/2) */
                const int64_t a = rp->mode == BACKEND_ROPE_NEOX ? i : 2 * i;
                const int64_t b = rp->mode == BACKEND_ROPE_NEOX ? i + half : 2 * i + 1;
                const float c = cs[i], s = cs[half + i];
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

static void softmax_row(float *x, int64_t n)
{
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void cpu_softmax(struct backend *be, float *x, int64_t n_rows, int64_t n)
{
    (void)be;
    for (int64_t r = 0; r < n_rows; r++) softmax_row(x + r * n, n);
}

static void cpu_silu_mul(struct backend *be, float *gate, const float *up, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void cpu_add(struct backend *be, float *y, const float *x, float alpha, int64_t n)
{
    (void)be;
    if (alpha == 1.0f) {
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
    }
}

/* ---- attention ------------------------------------------------------------- */

struct attn_task {
    const struct cpu_backend *cb;
    const struct backend_attn *a;
    const float *q;
    float *out;
};

static void attn_worker(void *arg, int ith, int nth)
{
    const struct attn_task *task = arg;
    const struct backend_attn *a = task->a;
    const int64_t n_work = a->n_tok * a->n_head;
    const int64_t w0 = n_work * ith / nth, w1 = n_work * (ith + 1) / nth;
    const int64_t group = a->n_head / a->n_head_kv;
    const int64_t k_stride = a->n_head_kv * a->head_dim, v_stride = a->n_head_kv * a->head_dim_v;
    float *scores = task->cb->att_scratch + (size_t)ith * (size_t)task->cb->lim.max_ctx;
    for (int64_t wi = w0; wi < w1; wi++) {
        const int64_t t = wi / a->n_head, h = wi % a->n_head, g = h / group;
        const int64_t n_kv = a->pos0 + t + 1;
        const float *q = task->q + (t * a->n_head + h) * a->head_dim;
        const float *k = a->k_cache + g * a->head_dim;
        for (int64_t j = 0; j < n_kv; j++)
            scores[j] = task->cb->dot(a->head_dim, q, k + j * k_stride) * a->scale;
        softmax_row(scores, n_kv);
        float *o = task->out + (t * a->n_head + h) * a->head_dim_v;
        const float *v = a->v_cache + g * a->head_dim_v;
        for (int64_t d = 0; d < a->head_dim_v; d++) o[d] = 0.0f;
        for (int64_t j = 0; j < n_kv; j++) {
            const float s = scores[j];
            const float *vj = v + j * v_stride;
            for (int64_t d = 0; d < a->head_dim_v; d++) o[d] += s * vj[d];
        }
    }
}

static void cpu_attention(struct backend *be, const struct backend_attn *a, const float *q,
                          const float *k, const float *v, float *out)
{
    struct cpu_backend *cb = cpu_of(be);
    HY_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    HY_ASSERT(a->pos0 >= 0 && a->n_tok >= 1 && a->pos0 + a->n_tok <= a->n_ctx &&
              a->n_ctx <= cb->lim.max_ctx);
    const size_t k_row = (size_t)(a->n_head_kv * a->head_dim),
                 v_row = (size_t)(a->n_head_kv * a->head_dim_v);
    memcpy(a->k_cache + (size_t)a->pos0 * k_row, k, (size_t)a->n_tok * k_row * sizeof(float));
    memcpy(a->v_cache + (size_t)a->pos0 * v_row, v, (size_t)a->n_tok * v_row * sizeof(float));
    struct attn_task task = {cb, a, q, out};
    threadpool_run(cb->pool, attn_worker, &task);
}

/* ---- memory and lifetime ----------------------------------------------------- */

static enum hy_status cpu_reserve(struct backend *be, const struct backend_limits *lim)
{
    struct cpu_backend *cb = cpu_of(be);
    if (lim->max_ctx > cb->lim.max_ctx) {
        size_t bytes = (size_t)cb->n_threads * (size_t)lim->max_ctx * sizeof(float);
        float *p = mem_aligned_alloc(64, bytes);
        if (!p)
            return err_set(HY_ERR_OOM, "RAM: cannot allocate %zu bytes of attention scratch",
                           bytes);
        mem_aligned_free(cb->att_scratch);
        cb->att_scratch = p;
        cb->lim.max_ctx = lim->max_ctx;
    }
    if (lim->max_head_dim > cb->lim.max_head_dim) {
        free(cb->rope_cs);
        cb->rope_cs = mem_xcalloc((size_t)lim->max_head_dim, sizeof(float));
        cb->lim.max_head_dim = lim->max_head_dim;
    }
    cb->lim.max_batch = HY_MAX(cb->lim.max_batch, lim->max_batch);
    cb->lim.max_cols = HY_MAX(cb->lim.max_cols, lim->max_cols);
    /* the widest activation row of any vec_dot_type: F32 is never converted,
     * F16/BF16 take 2 bytes per value, Q8_1 (36 bytes per 32) the most of the
     * 8-bit types; rounded up to whole Q8_K super-blocks */
    const int64_t cols = (cb->lim.max_cols + 255) / 256 * 256;
    const size_t need = (size_t)cb->lim.max_batch * (size_t)cols * 2;
    if (need > cb->act_bytes) {
        void *p = mem_aligned_alloc(64, need);
        if (!p) return err_set(HY_ERR_OOM, "RAM: cannot allocate %zu bytes of activation scratch", need);
        mem_aligned_free(cb->act);
        cb->act = p;
        cb->act_bytes = need;
    }
    return HY_OK;
}

static void *cpu_alloc(struct backend *be, size_t bytes)
{
    (void)be;
    return mem_aligned_alloc(64, bytes);
}

static void cpu_dealloc(struct backend *be, void *buf)
{
    (void)be;
    mem_aligned_free(buf);
}

static void cpu_download(struct backend *be, const void *src, void *host_dst, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(host_dst, src, bytes);
}

static void cpu_free(struct backend *be)
{
    struct cpu_backend *cb = cpu_of(be);
    threadpool_free(cb->pool);
    mem_aligned_free(cb->att_scratch);
    mem_aligned_free(cb->act);
    free(cb->rope_cs);
    free(cb);
}

static const struct backend_ops cpu_ops = {
    .name = "cpu",
    .free = cpu_free,
    .supports_type = cpu_supports_type,
    .reserve = cpu_reserve,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .download = cpu_download,
    .matmul = cpu_matmul,
    .get_rows = cpu_get_rows,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .softmax = cpu_softmax,
    .silu_mul = cpu_silu_mul,
    .add = cpu_add,
};

enum hy_status cpu_backend_init(const struct cpu_backend_opts *opts, struct backend **out)
{
    *out = NULL;
    if (opts->n_threads < 1)
        return err_set(HY_ERR_INVALID_ARG, "cpu backend: %d threads (need at least 1)",
                       opts->n_threads);
    struct cpu_backend *cb = mem_xcalloc(1, sizeof(*cb));
    cb->base.ops = &cpu_ops;
    cb->base.n_threads = opts->n_threads;
    cb->n_threads = opts->n_threads;
    cb->portable = opts->portable;
    cb->dot = kernel_vec_dot(cb, HY_TYPE_F32);
    cb->kernels = opts->portable ? "reference" : quant_isa_name(quant_isa_current());
    enum hy_status st = threadpool_init(opts->n_threads, &cb->pool);
    if (st) {
        free(cb);
        return err_prefix(st, "cpu backend: ");
    }
    *out = &cb->base;
    return HY_OK;
}

const char *cpu_backend_kernels(const struct backend *be)
{
    HY_ASSERT(be->ops == &cpu_ops);
    return ((const struct cpu_backend *)be)->kernels;
}
