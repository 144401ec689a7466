#include "backend/cpu/cpu_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/threadpool.h"
#include "quant/quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define CPU_HAVE_X86_KERNELS 1
#endif

/* Tokens whose activations are dotted with one converted chunk of a row.
 * Bounds the x tile a row pass touches (TILE * n_cols floats) so that it
 * stays in cache for the next row. */
#define MATMUL_TILE 16

typedef float (*dot_fn)(const float *a, const float *b, int64_t n);
typedef void (*f16_to_f32_fn)(const uint16_t *src, float *dst, int64_t n);

struct cpu_backend {
    struct backend base;     /* first: a struct backend * is a struct cpu_backend * */
    struct threadpool *pool; /* owned */
    int n_threads;
    dot_fn dot;
    f16_to_f32_fn f16_to_f32;
    const char *kernels;
    struct backend_limits lim;
    float *att_scratch; /* owned, [n_threads][lim.max_ctx] attention scores */
    float *rope_cs;     /* owned, [lim.max_head_dim] cos then sin of one position */
};

static struct cpu_backend *cpu_of(struct backend *be)
{
    return (struct cpu_backend *)be;
}

/* ---- kernels ------------------------------------------------------------ */

/* Eight independent partial sums combined in a fixed tree: the same order on
 * every call, and vectorizable without reassociation. */
static float dot_portable(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void f16_to_f32_portable(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = quant_f16_to_f32(src[i]);
}

static void bf16_to_f32(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_f32(src[i]);
}

#ifdef CPU_HAVE_X86_KERNELS
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_hadd_ps(h, h);
    h = _mm_hadd_ps(h, h);
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* Exact (every half is a float), so it agrees bit for bit with the portable
 * conversion. */
__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const uint16_t *src, float *dst,
                                                                 int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + i))));
    for (; i < n; i++) dst[i] = quant_f16_to_f32(src[i]);
}
#endif

#ifdef CPU_HAVE_X86_KERNELS
/* CPUID and XGETBV directly: __builtin_cpu_supports does not know "f16c" in
 * every compiler we build with. */
static bool x86_has_avx2_fma_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6u) != 6u) return false; /* the OS saves XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) != 0; /* AVX2 */
}
#endif

/* Elements [c0, c0 + n) of a row as F32: a pointer into the row for F32,
 * else converted into buf (n <= CPU_BACKEND_CHUNK). */
static const float *row_chunk(const struct cpu_backend *cb, uint32_t type, const void *row,
                              int64_t c0, int64_t n, float *buf)
{
    switch (type) {
    case HY_TYPE_F32:
        return (const float *)row + c0;
    case HY_TYPE_F16:
        cb->f16_to_f32((const uint16_t *)row + c0, buf, n);
        return buf;
    case HY_TYPE_BF16:
        bf16_to_f32((const uint16_t *)row + c0, buf, n);
        return buf;
    default:
        HY_ASSERT(!"weight type not supported by the CPU backend");
        return NULL;
    }
}

static bool cpu_supports_type(uint32_t type)
{
    return type == HY_TYPE_F32 || type == HY_TYPE_F16 || type == HY_TYPE_BF16;
}

/* ---- matmul --------------------------------------------------------------- */

struct matmul_task {
    const struct cpu_backend *cb;
    const struct backend_weight *w;
    const float *x;
    int64_t n_tok;
    float *y;
};

static void matmul_worker(void *arg, int ith, int nth)
{
    const struct matmul_task *task = arg;
    const struct backend_weight *w = task->w;
    const int64_t n_rows = w->n_rows, n_cols = w->n_cols;
    const int64_t r0 = n_rows * ith / nth, r1 = n_rows * (ith + 1) / nth;
    float buf[CPU_BACKEND_CHUNK];
    float acc[MATMUL_TILE];
    for (int64_t t0 = 0; t0 < task->n_tok; t0 += MATMUL_TILE) {
        const int64_t nt = HY_MIN(MATMUL_TILE, task->n_tok - t0);
        const float *xt = task->x + t0 * n_cols;
        for (int64_t r = r0; r < r1; r++) {
            const void *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            for (int64_t t = 0; t < nt; t++) acc[t] = 0.0f;
            for (int64_t c0 = 0; c0 < n_cols; c0 += CPU_BACKEND_CHUNK) {
                const int64_t n = HY_MIN(CPU_BACKEND_CHUNK, n_cols - c0);
                const float *wf = row_chunk(task->cb, w->type, row, c0, n, buf);
                for (int64_t t = 0; t < nt; t++)
                    acc[t] += task->cb->dot(wf, xt + t * n_cols + c0, n);
            }
            for (int64_t t = 0; t < nt; t++) task->y[(t0 + t) * n_rows + r] = acc[t];
        }
    }
}

static void cpu_matmul(struct backend *be, const struct backend_weight *w, const float *x,
                       int64_t n_tok, float *y)
{
    struct cpu_backend *cb = cpu_of(be);
    HY_ASSERT(cpu_supports_type(w->type) && n_tok >= 1);
    struct matmul_task task = {cb, w, x, n_tok, y};
    /* a tiny matrix (a router) is not worth waking the workers for */
    if (w->n_rows * w->n_cols * n_tok < 32768)
        matmul_worker(&task, 0, 1);
    else
        threadpool_run(cb->pool, matmul_worker, &task);
}

static void cpu_get_rows(struct backend *be, const struct backend_weight *w, const int32_t *ids,
                         int64_t n, float *out)
{
    struct cpu_backend *cb = cpu_of(be);
    for (int64_t i = 0; i < n; i++) {
        HY_ASSERT(ids[i] >= 0 && ids[i] < w->n_rows);
        const void *row = (const uint8_t *)w->data + (size_t)ids[i] * w->row_bytes;
        float *dst = out + i * w->n_cols;
        switch (w->type) {
        case HY_TYPE_F32:
            memcpy(dst, row, (size_t)w->n_cols * sizeof(float));
            break;
        case HY_TYPE_F16:
            cb->f16_to_f32(row, dst, w->n_cols);
            break;
        case HY_TYPE_BF16:
            bf16_to_f32(row, dst, w->n_cols);
            break;
        default:
            HY_ASSERT(!"weight type not supported by the CPU backend");
        }
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
            scores[j] = task->cb->dot(q, k + j * k_stride, a->head_dim) * a->scale;
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
    cb->dot = dot_portable;
    cb->f16_to_f32 = f16_to_f32_portable;
    cb->kernels = "portable";
#ifdef CPU_HAVE_X86_KERNELS
    if (!opts->portable && x86_has_avx2_fma_f16c()) {
        cb->dot = dot_avx2;
        cb->f16_to_f32 = f16_to_f32_f16c;
        cb->kernels = "avx2+fma+f16c";
    }
#endif
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
