#include "backend/cpu/cpu_backend.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/threadpool.h"
#include "core/timing.h"
#include "quant/quant.h"
#include "quant/quant_gemm.h"


/* Tokens whose activations are dotted with one converted chunk of a row.
 * Bounds the x tile a row pass touches (TILE * n_cols floats) so that it
 * stays in cache for the next row. */
#define MATMUL_TILE 16

/* Row chunks per thread and matmul: enough for the counter to even out a slow
 * thread, few enough that taking a chunk costs nothing next to computing it. */
#define MATMUL_CHUNKS_PER_THREAD 8

/* The same for the gemm kernels: each call repacks the activations of all
 * tokens (and AMX, the weight tiles per token block), which bigger chunks
 * amortize (Q4_K_M prompt +15% at 4 against 8 on a 2-core Xeon). */
#define MATMUL_GEMM_CHUNKS_PER_THREAD 4

/* One-token products of a type that has a gemv kernel (quant_gemm.h: several
 * rows at once) go to it or to vec_dot row by row, whichever streams faster
 * on this machine: that depends on the core and the row length (F16 rows of
 * 4096 on a Zen 4 core: 25 GB/s a row at a time against 14 four at a time;
 * rows of 14336: 13 against 17; on a Xeon four at a time won 25 against 21).
 * Both give the same bits, so the choice changes no output. For each type
 * and row length the first GEMV_TRIALS products of each way alternate, each
 * timed; then the way with the higher median rate stays. Products under
 * GEMV_MIN_BYTES (from the caches, too short to time) are not timed and use
 * gemv until the choice is made; past GEMV_SHAPES row lengths, gemv. */
#define GEMV_TRIALS    4
#define GEMV_MIN_BYTES ((size_t)4 << 20)
#define GEMV_SHAPES    16

struct gemv_shape {
    uint32_t type;
    int64_t n_cols;
    int n[2];                    /* products timed: [0] row by row, [1] gemv */
    double rate[2][GEMV_TRIALS]; /* their bytes per second */
    int pick;                    /* -1 while timing; 0 row by row; 1 gemv */
};

struct cpu_backend {
    struct backend base;     /* first: a struct backend * is a struct cpu_backend * */
    struct threadpool *pool; /* owned */
    int n_threads;
    const char *kernels;
    struct backend_limits lim;
    bool portable;      /* reference quant kernels instead of the selected SIMD ones */
    int64_t moe_chunk_bytes; /* a pass's chunks' least bytes (MOE_CHUNK_BYTES) */
    int pass_chunks;         /* a started product's chunks per thread (0: the matmul's) */
    void *act;          /* owned: activations converted to a vec_dot_type, [max_batch][row] */
    size_t act_bytes;
    /* owned, [n_threads][att_stride] floats: per attention worker, the scores
     * [max_ctx], the scores converted to the V type [max_ctx], the query
     * converted to the K vec_dot_type [max_head_dim] and one dequantized V
     * row [max_head_dim] (see attn_worker) */
    float *att_scratch;
    size_t att_stride;
    double *rope_tab; /* owned, [3 * lim.max_head_dim / 2]: frequencies, cos, sin of one call */
    struct moe_job *job; /* owned: moe_token's pass (created at the first) */
    struct mm_pass *mm;  /* owned: cpu_backend_matmul_start's pass (created at the first) */
    bool mm_last;        /* the pass started last is mm's, not job's */
    struct gemv_shape gemv[GEMV_SHAPES]; /* see gemv_choose */
    int n_gemv;
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
 * how a prompt is split into batches. Rows are handed out in chunks from a
 * shared counter, so a thread that runs slower (a busy core, a neighbour on
 * the VM) takes fewer chunks instead of holding everyone up at the end, as a
 * fixed split would; which thread computes a row changes nothing in the
 * result. A thread walks its chunk once per tile of MATMUL_TILE tokens, so a
 * weight row is read from memory once per tile and the tile's activations
 * stay in cache.
 * The activations are converted to the weight's vec_dot_type once per call
 * (in parallel over tokens for prompt batches).
 * Batches of QUANT_GEMM_MIN_TOK tokens or more go to the type's gemm kernel
 * where there is one (quant_gemm.h): it unpacks a weight row once per tile of
 * tokens rather than once per token, and computes each output exactly as the
 * vec_dot would, so batch and token-by-token results stay equal bit for bit. */
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
    quant_gemm_fn gemm; /* NULL: vec_dot per output */
    quant_gemv_fn gemv; /* one token: several rows at once; NULL: vec_dot per row */
    int64_t chunk_rows;
    atomic_llong next_row; /* first row of the next chunk to hand out */
    void (*first)(void *ctx); /* run by thread 0 before it takes chunks (NULL: none) */
    void *first_ctx;
};

static void convert_worker(void *arg, int ith, int nth)
{
    const struct matmul_task *task = arg;
    const int64_t t0 = task->n_tok * ith / nth, t1 = task->n_tok * (ith + 1) / nth;
    const int64_t n = task->w->n_cols;
    for (int64_t t = t0; t < t1; t++)
        task->from_float(task->x + t * n, (uint8_t *)task->xq + (size_t)t * task->xq_row, n);
}

/* Rows [r0, r1) for every token. */
static void matmul_rows(const struct matmul_task *task, int64_t r0, int64_t r1)
{
    const struct backend_weight *w = task->w;
    const int64_t n_rows = w->n_rows, n_cols = w->n_cols;
    if (task->gemm) {
        task->gemm(n_cols, (const uint8_t *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes,
                   r1 - r0, task->xq, task->xq_row, task->n_tok, task->y + r0, n_rows);
        return;
    }
    if (task->gemv) {
        task->gemv(n_cols, (const uint8_t *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes,
                   r1 - r0, task->xq, task->y + r0);
        return;
    }
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

static void matmul_worker(void *arg, int ith, int nth)
{
    (void)nth;
    struct matmul_task *task = arg;
    if (ith == 0 && task->first) task->first(task->first_ctx);
    const int64_t n_rows = task->w->n_rows;
    for (;;) {
        const int64_t r0 = atomic_fetch_add_explicit(&task->next_row, task->chunk_rows, memory_order_relaxed);
        if (r0 >= n_rows) break;
        matmul_rows(task, r0, HY_MIN(r0 + task->chunk_rows, n_rows));
    }
}

/* Rows a chunk for about `chunks` chunks a thread over n_rows, in multiples of
 * 16 rows (the gemm kernels block rows by 2, 4 and, AMX, 16), 16 at least. */
static int64_t chunk_rows_for(const struct cpu_backend *cb, int64_t n_rows, int64_t chunks)
{
    const int64_t per = n_rows / ((int64_t)cb->n_threads * chunks);
    return HY_MAX((int64_t)16, (per + 15) / 16 * 16);
}

/* The task of y = w x for n_tok tokens, activations not converted yet: the
 * kernels and the chunk of rows handed out at a time. */
static void matmul_setup(const struct cpu_backend *cb, const struct backend_weight *w,
                         const float *x, int64_t n_tok, float *y, struct matmul_task *task)
{
    const struct quant_traits *tr = quant_traits(w->type);
    HY_ASSERT(tr && tr->vec_dot && n_tok >= 1 && n_tok <= cb->lim.max_batch);
    *task = (struct matmul_task){cb, w, x, n_tok, y, x, (size_t)w->n_cols * sizeof(float),
                                 kernel_vec_dot(cb, w->type), NULL, NULL, NULL, 0, 0, NULL, NULL};
    if (!cb->portable && n_tok >= QUANT_GEMM_MIN_TOK) task->gemm = quant_gemm_kernel(w->type);
    if (!cb->portable && n_tok == 1) task->gemv = quant_gemv_kernel(w->type);
    /* about MATMUL_CHUNKS_PER_THREAD chunks per thread (MATMUL_GEMM_CHUNKS_PER_THREAD
     * for a gemm kernel) */
    task->chunk_rows = chunk_rows_for(
        cb, w->n_rows, task->gemm ? MATMUL_GEMM_CHUNKS_PER_THREAD : MATMUL_CHUNKS_PER_THREAD);
    atomic_init(&task->next_row, 0);
    if (tr->vec_dot_type != HY_TYPE_F32) {
        task->xq_row = (size_t)quant_bytes(tr->vec_dot_type, (uint64_t)w->n_cols);
        task->from_float = kernel_from_float(cb, tr->vec_dot_type);
    }
}

/* The entry of w's type and row length, NULL where there is none yet. */
static const struct gemv_shape *gemv_find(const struct cpu_backend *cb,
                                          const struct backend_weight *w)
{
    for (int i = 0; i < cb->n_gemv; i++)
        if (cb->gemv[i].type == w->type && cb->gemv[i].n_cols == w->n_cols) return &cb->gemv[i];
    return NULL;
}

/* The entry of w's type and row length, made where there is none (NULL:
 * the table is full). */
static struct gemv_shape *gemv_shape_of(struct cpu_backend *cb, const struct backend_weight *w)
{
    const struct gemv_shape *found = gemv_find(cb, w);
    if (found) return &cb->gemv[found - cb->gemv];
    if (cb->n_gemv == GEMV_SHAPES) return NULL;
    struct gemv_shape *g = &cb->gemv[cb->n_gemv++];
    *g = (struct gemv_shape){.type = w->type, .n_cols = w->n_cols, .pick = -1};
    return g;
}

/* Whether the choice for w's type and row length is made, for row by row
 * (moe_token's products follow it; they are not timed themselves). */
static bool gemv_off(const struct cpu_backend *cb, const struct backend_weight *w)
{
    const struct gemv_shape *g = gemv_find(cb, w);
    return g && g->pick == 0;
}

/* Whether a one-token product of w (its task has a gemv kernel) runs as
 * gemv; *timed: the way to time, -1 for none (see struct gemv_shape). */
static bool gemv_choose(struct cpu_backend *cb, const struct backend_weight *w, int *timed)
{
    *timed = -1;
    struct gemv_shape *g = gemv_shape_of(cb, w);
    if (!g) return true;
    if (g->pick >= 0) return g->pick == 1;
    if ((size_t)w->n_rows * w->row_bytes < GEMV_MIN_BYTES) return true;
    *timed = g->n[0] <= g->n[1] ? 0 : 1;
    return *timed == 1;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A timed product of w the way `way` took, bytes in sec seconds. */
static void gemv_seen(struct cpu_backend *cb, const struct backend_weight *w, int way, double sec)
{
    struct gemv_shape *g = gemv_shape_of(cb, w);
    if (!g || g->pick >= 0 || !(sec > 0) || g->n[way] == GEMV_TRIALS) return;
    g->rate[way][g->n[way]++] = (double)w->n_rows * (double)w->row_bytes / sec;
    if (g->n[0] < GEMV_TRIALS || g->n[1] < GEMV_TRIALS) return;
    double med[2];
    for (int k = 0; k < 2; k++) {
        qsort(g->rate[k], GEMV_TRIALS, sizeof(double), cmp_double);
        med[k] = (g->rate[k][(GEMV_TRIALS - 1) / 2] + g->rate[k][GEMV_TRIALS / 2]) / 2;
    }
    g->pick = med[1] >= med[0];
}

static void matmul_run(struct cpu_backend *cb, const struct backend_weight *w, const float *x,
                       int64_t n_tok, float *y, void (*first)(void *ctx), void *ctx)
{
    threadpool_join(cb->pool); /* a pass started before reads act */
    struct matmul_task task;
    matmul_setup(cb, w, x, n_tok, y, &task);
    task.first = first;
    task.first_ctx = ctx;
    int timed = -1;
    if (task.gemv && !gemv_choose(cb, w, &timed)) task.gemv = NULL;
    const int64_t t0 = timed >= 0 ? timing_now_us() : 0;
    /* a tiny matrix (a router) is not worth waking the workers for */
    const bool serial = w->n_rows * w->n_cols * n_tok < 32768;
    if (task.from_float) {
        HY_ASSERT((size_t)n_tok * task.xq_row <= cb->act_bytes);
        task.xq = cb->act;
        if (serial || n_tok == 1)
            convert_worker(&task, 0, 1);
        else
            threadpool_run(cb->pool, convert_worker, &task);
    }
    if (serial) {
        matmul_worker(&task, 0, 1);
    } else {
        /* rows are claimed: a worker that has not begun by the join is not waited for */
        threadpool_start_loose(cb->pool, matmul_worker, &task);
        threadpool_join(cb->pool);
    }
    if (timed >= 0) gemv_seen(cb, w, timed, (double)(timing_now_us() - t0) * 1e-6);
}

static void cpu_matmul(struct backend *be, const struct backend_weight *w, const float *x,
                       int64_t n_tok, float *y)
{
    matmul_run(cpu_of(be), w, x, n_tok, y, NULL, NULL);
}

void cpu_backend_matmul_after(struct backend *be, const struct backend_weight *w, const float *x,
                              int64_t n_tok, float *y, void (*first)(void *ctx), void *ctx)
{
    matmul_run(cpu_of(be), w, x, n_tok, y, first, ctx);
}

static void cpu_silu_mul(struct backend *be, float *gate, const float *up, int64_t n);

/* One token's product started on the pool's workers (cpu_backend_matmul_start,
 * and with two weights cpu_backend_swiglu_start): matmul_worker's chunks of
 * rows, of both weights and then their SwiGLU, counted as they are done; the
 * thread that completes the last one stores the time, then the flag. The
 * weights are copies. */
struct mm_pass {
    struct cpu_backend *cb;
    struct backend_weight w[2];
    struct matmul_task task[2];
    int n_w;
    int timed; /* gemv_choose's way to time (one weight), -1 none */
    uint32_t *flag;
    uint32_t flag_value;
    int64_t t_start_us, t_end_us;
    _Alignas(64) atomic_llong rows_done;
    atomic_bool finished; /* t_end_us is set (release) */
};

static void mm_pass_worker(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    struct mm_pass *m = arg;
    const int64_t n_rows = m->w[0].n_rows, per = m->task[0].chunk_rows;
    for (;;) {
        const int64_t r0 =
            atomic_fetch_add_explicit(&m->task[0].next_row, per, memory_order_relaxed);
        if (r0 >= n_rows) break;
        const int64_t r1 = HY_MIN(r0 + per, n_rows);
        matmul_rows(&m->task[0], r0, r1);
        if (m->n_w == 2) {
            matmul_rows(&m->task[1], r0, r1);
            cpu_silu_mul(&m->cb->base, m->task[0].y + r0, m->task[1].y + r0, r1 - r0);
        }
        if (atomic_fetch_add_explicit(&m->rows_done, r1 - r0, memory_order_acq_rel) + (r1 - r0) ==
            n_rows) {
            m->t_end_us = timing_now_us();
            /* the flag first: a pass waited for has stored it */
            if (m->flag) __atomic_store_n(m->flag, m->flag_value, __ATOMIC_RELEASE);
            atomic_store_explicit(&m->finished, true, memory_order_release);
        }
    }
}

static bool mm_pass_finished(void *arg)
{
    struct mm_pass *m = arg;
    return atomic_load_explicit(&m->finished, memory_order_acquire);
}

/* The pass of n_w weights w (equal rows and columns) into ys, started. */
static void mm_pass_start(struct cpu_backend *cb, const struct backend_weight *w, int n_w,
                          const float *x, float *const *ys, uint32_t *flag, uint32_t flag_value)
{
    HY_ASSERT(w[0].n_rows >= 1);
    threadpool_join(cb->pool); /* act and the workers are this pass's now */
    if (!cb->mm) cb->mm = mem_aligned_xzalloc(64, sizeof *cb->mm);
    struct mm_pass *m = cb->mm;
    m->cb = cb;
    m->n_w = n_w;
    m->timed = -1;
    size_t used = 0;
    for (int i = 0; i < n_w; i++) {
        HY_ASSERT(w[i].n_rows == w[0].n_rows && w[i].n_cols == w[0].n_cols);
        m->w[i] = w[i];
        struct matmul_task *t = &m->task[i];
        matmul_setup(cb, &m->w[i], x, 1, ys[i], t);
        if (cb->pass_chunks > 0) t->chunk_rows = chunk_rows_for(cb, w[i].n_rows, cb->pass_chunks);
        if (t->gemv && (n_w == 1 ? !gemv_choose(cb, &m->w[i], &m->timed) : gemv_off(cb, &m->w[i])))
            t->gemv = NULL;
        if (!t->from_float) continue; /* F32 weights read x as it is */
        if (i == 1 && t->from_float == m->task[0].from_float) {
            t->xq = m->task[0].xq; /* x converted once per vec_dot_type */
            continue;
        }
        HY_ASSERT(used + t->xq_row <= cb->act_bytes);
        t->xq = (uint8_t *)cb->act + used;
        convert_worker(t, 0, 1);
        used += (t->xq_row + 63) / 64 * 64;
    }
    m->flag = flag;
    m->flag_value = flag_value;
    atomic_init(&m->rows_done, 0);
    atomic_init(&m->finished, false);
    cb->mm_last = true;
    m->t_start_us = timing_now_us();
    /* rows are claimed: a worker that has not begun by the join is not waited for */
    threadpool_start_loose(cb->pool, mm_pass_worker, m);
}

void cpu_backend_matmul_start(struct backend *be, const struct backend_weight *w, const float *x,
                              float *y, uint32_t *flag, uint32_t flag_value)
{
    mm_pass_start(cpu_of(be), w, 1, x, &y, flag, flag_value);
}

void cpu_backend_swiglu_start(struct backend *be, const struct backend_weight *gate,
                              const struct backend_weight *up, const float *x, float *h, float *h2,
                              uint32_t *flag, uint32_t flag_value)
{
    const struct backend_weight w[2] = {*gate, *up};
    float *const ys[2] = {h, h2};
    mm_pass_start(cpu_of(be), w, 2, x, ys, flag, flag_value);
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

/* The angle of pair i at position pos is pos * freq[i] with
 * freq[i] = freq_scale * base^(-2i / n_rot) / freq_factors[i] (backend.h).
 * Frequencies are computed once per call and the angles in double:
 * positions reach 1e5 and more, where a float angle has lost digits.
 * (llama.cpp multiplies a float theta by base^(-2 / n_rot) pair after pair;
 * at the positions of its test outputs the two differ in the last bits of
 * cos and sin only.) */
static void rope_freqs(const struct backend_rope *rp, double *freq)
{
    const int64_t half = rp->n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = rp->freq_scale * pow(rp->freq_base, -2.0 * (double)i / (double)rp->n_rot);
        freq[i] = rp->freq_factors ? f / (double)rp->freq_factors[i] : f;
    }
}

static void cpu_rope(struct backend *be, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                     int64_t pos0, const struct backend_rope *rp)
{
    struct cpu_backend *cb = cpu_of(be);
    HY_ASSERT(rp->n_rot > 0 && rp->n_rot % 2 == 0 && rp->n_rot <= head_dim &&
              head_dim <= cb->lim.max_head_dim && rp->freq_scale > 0.0 && rp->freq_base > 0.0);
    const int64_t half = rp->n_rot / 2;
    double *freq = cb->rope_tab, *cs = freq + half, *sn = cs + half;
    rope_freqs(rp, freq);
    for (int64_t t = 0; t < n_tok; t++) {
        const double pos = (double)(pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            cs[i] = cos(pos * freq[i]);
            sn[i] = sin(pos * freq[i]);
        }
        for (int64_t h = 0; h < n_head; h++) {
            float *v = x + (t * n_head + h) * head_dim;
            for (int64_t i = 0; i < half; i++) {
                /* NORM pairs dims (2i, 2i+1); NEOX pairs (i, i + n_rot/2) */
                const int64_t a = rp->mode == BACKEND_ROPE_NEOX ? i : 2 * i;
                const int64_t b = rp->mode == BACKEND_ROPE_NEOX ? i + half : 2 * i + 1;
                const float c = (float)cs[i], s = (float)sn[i];
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

/* Top-k of one token's probabilities p[0..n): descending, ties to the lower
 * id; weights renormalised to sum 1 (in double), or the probabilities. */
static void route_row(const float *p, int64_t n, int64_t k, bool renorm, int32_t *ids, float *w)
{
    double sum = 0.0;
    for (int64_t j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t e = 0; e < n; e++) {
            bool taken = false;
            for (int64_t i = 0; i < j; i++) taken |= ids[i] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        ids[j] = (int32_t)best;
        w[j] = p[best];
        sum += p[best];
    }
    if (!renorm) return;
    for (int64_t j = 0; j < k; j++) w[j] = sum > 0.0 ? (float)(w[j] / sum) : 1.0f / (float)k;
}

static void cpu_route(struct backend *be, float *x, int64_t n_tok, int64_t n, int64_t k,
                      bool renorm, int32_t *ids, float *w)
{
    (void)be;
    HY_ASSERT(k >= 1 && k <= n);
    for (int64_t t = 0; t < n_tok; t++) {
        softmax_row(x + t * n, n);
        route_row(x + t * n, n, k, renorm, ids + t * k, w + t * k);
    }
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

static void cpu_add_bias(struct backend *be, float *y, const float *b, int64_t n_tok, int64_t n)
{
    for (int64_t t = 0; t < n_tok; t++) cpu_add(be, y + t * n, b, 1.0f, n);
}

static void cpu_add_rows(struct backend *be, float *y, const float *x, const int32_t *rows,
                         const float *alpha, int64_t n_rows, int64_t n)
{
    for (int64_t i = 0; i < n_rows; i++) cpu_add(be, y + rows[i] * n, x + i * n, alpha[i], n);
}

/* A cache line: the pass's counters each have their own (struct moe_job). */
#define MOE_LINE 64

/* The least bytes of a pass's chunk. The pass has every expert's products
 * in one phase, so MATMUL_CHUNKS_PER_THREAD chunks of each product are many
 * a thread; small experts' rows (1-2 KB: qwen1.5-moe's) then came 16 to a
 * chunk, short streams of reads. On the 16-core Xeon host of an H200, a
 * pass of that expert shape at 16 threads alone (moe_token_bench, k = 1 to
 * 4, two rounds) took 58-65 against 72-75 us at k = 1 and 196-215 against
 * 250-268 at k = 4; decode there, beside the GPU or on the CPU alone, did
 * not move beyond its spread. Mixtral's experts' chunks were larger already. */
#define MOE_CHUNK_BYTES ((int64_t)64 << 10)

/* Task t's chunk rows for a pass: at least min_bytes (whole 16s of rows),
 * at most its rows. */
static void moe_chunk_rows(struct matmul_task *t, int64_t min_bytes)
{
    const int64_t rb = (int64_t)t->w->row_bytes, n = t->w->n_rows;
    const int64_t want = (min_bytes + rb - 1) / rb;
    const int64_t rows = HY_MAX(t->chunk_rows, (want + 15) / 16 * 16);
    t->chunk_rows = HY_MIN(rows, (n + 15) / 16 * 16);
}

/* A count of gate and up chunks not done (a middle-step group's, or an
 * expert's), on its own line (threads on neighbouring groups count down at
 * once). */
struct moe_grp {
    _Alignas(MOE_LINE) atomic_int left;
};

/* One token's experts as one pass over the pool (moe_token): phase A, the
 * gate and up products of every expert, each followed by the middle step of
 * the rows it completes; phase B, the down products; then the weighted adds
 * in expert order into y, by the thread that finished B's last chunk, which
 * then stores flag (release). Chunks of chunk_rows rows are handed out from
 * one counter over A then B, so a thread takes B work only after every A
 * chunk is taken; before computing a down chunk it waits for its expert's
 * gate and up chunks (and their middle steps) alone, so that the threads
 * done with A go on with the first experts' downs while the last expert's
 * A chunks are still being computed.
 *
 * The middle step (silu_mul and h converted for the down product) goes by
 * groups of grp_rows rows of an expert, a multiple of both the chunk and the
 * conversion's block: the thread whose gate or up chunk is the group's last
 * computes the group's silu_mul and converts its blocks, so that the step is
 * spread over the pool instead of one thread's while the others wait. Each
 * element and block comes out as the whole-row step gives it.
 *
 * The pass runs on the workers alone once started (the caller may join late
 * or not compute at all), and lives here until joined: w and alpha are
 * copies. Its sum is complete once B's last chunk is done and added, and no
 * thread computes after that: cpu_backend_pass_wait returns then, without
 * waiting for workers that have not run yet (a thread that lost its core
 * before its turn) or are on their way out. It is a loose run of the pool:
 * its join, too, waits only for the workers in it.
 *
 * The first n_half experts are halves: their gate, up and middle step only
 * (h without the conversion), of their first half_rows rows, their chunks
 * first in phase A; once the last of them is done its thread stores
 * half_flag, so that another device can take their h for the down products
 * (and compute their other rows) while the pass goes on. They take no part
 * in phase B or the sum (with no other expert the sum is y as it was), but
 * where half_down is set (their gate and up whole): rows [0, half_down) of
 * their downs, first in phase B, added into y in expert order as the whole
 * ones are (the other device computes the rest). */
struct moe_job {
    struct cpu_backend *cb;
    struct backend_weight w[3 * BACKEND_MOE_MAX_K];
    float alpha[BACKEND_MOE_MAX_K];
    int k;
    int64_t E, F;
    float *y, *h, *h2, *o;
    struct matmul_task a[2 * BACKEND_MOE_MAX_K], b[BACKEND_MOE_MAX_K];
    uint8_t *xq_b; /* the converted h rows, row bytes apart */
    size_t row;
    int64_t per_a, per_b; /* chunks of each task of a phase (one row count per phase) */
    int64_t per_h;        /* chunks of a half's gate or up (its half_rows) */
    int64_t n_a, n_b;     /* work items of each phase */
    int64_t grp_rows;     /* rows of a middle-step group */
    int64_t n_grp;        /* groups of an expert */
    struct moe_grp *grp_left; /* owned, [k][n_grp]: gate and up chunks of each group not done */
    int64_t grp_cap;          /* grp_left's entries */
    int n_half;
    int64_t half_rows; /* the halves' gate and up rows computed here */
    int64_t half_down; /* the halves' down rows computed here (0: none) */
    int64_t n_h;       /* work items of the halves (phase A's first) */
    int64_t per_hb;    /* chunks of a half's down (its half_down rows) */
    int64_t n_hb;      /* work items of the halves' downs (phase B's first) */
    uint32_t *flag, *half_flag;
    uint32_t flag_value;
    /* what the workers change, each on its own cache line: the fields above,
     * read for every chunk, would otherwise be fetched again after every
     * other thread's claim */
    _Alignas(MOE_LINE) atomic_llong next;
    _Alignas(MOE_LINE) atomic_llong done_a;
    _Alignas(MOE_LINE) atomic_llong done_b, done_h;
    /* each whole expert's gate and up chunks not done, middle steps included */
    struct moe_grp exp_left[BACKEND_MOE_MAX_K];
    /* timing_now_us: the workers started, the first chunk taken, phase A
     * done, y complete */
    _Alignas(MOE_LINE) int64_t t_start_us;
    atomic_llong t_first_us;
    int64_t t_a_us, t_end_us;
    atomic_bool finished; /* t_end_us is set (release) */
};

/* The middle step of group g of expert e: silu_mul of its gate and up rows,
 * and its part of h converted for the down product (its blocks alone: a
 * group starts on a block's first element). */
static void moe_job_middle(struct moe_job *j, int e, int64_t g)
{
    const int64_t r0 = g * j->grp_rows,
                  n = HY_MIN(j->grp_rows, (e < j->n_half ? j->half_rows : j->F) - r0);
    float *h = j->h + e * j->F + r0;
    cpu_silu_mul(&j->cb->base, h, j->h2 + e * j->F + r0, n);
    const struct matmul_task *t = &j->b[e];
    if ((e >= j->n_half || j->half_down) && t->from_float) {
        const uint32_t vt = quant_traits(t->w->type)->vec_dot_type;
        t->from_float(h, (uint8_t *)t->xq + quant_bytes(vt, (uint64_t)r0), n);
    }
}

/* y is complete: the time, the flag, then the pass counts as done. */
static void moe_job_done(struct moe_job *j)
{
    j->t_end_us = timing_now_us();
    /* the flag first, as a started product's: a pass waited for has stored it */
    if (j->flag) __atomic_store_n(j->flag, j->flag_value, __ATOMIC_RELEASE);
    atomic_store_explicit(&j->finished, true, memory_order_release);
}

static void moe_job_end(struct moe_job *j)
{
    for (int e = j->half_down ? 0 : j->n_half; e < j->k; e++)
        cpu_add(&j->cb->base, j->y, j->o + e * j->E, j->alpha[e],
                e < j->n_half ? j->half_down : j->E);
    moe_job_done(j);
}

/* Work item i of a phase whose tasks have per chunks each, of rows
 * [0, rows) (0: all of them). */
static void moe_job_chunk(const struct matmul_task *tasks, int64_t per, int64_t i, int64_t rows)
{
    const struct matmul_task *t = &tasks[i / per];
    const int64_t r0 = (i % per) * t->chunk_rows;
    matmul_rows(t, r0, HY_MIN(r0 + t->chunk_rows, rows ? rows : t->w->n_rows));
}

static void moe_job_worker(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    struct moe_job *j = arg;
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->n_a + j->n_b) break;
        if (i == 0) atomic_store_explicit(&j->t_first_us, timing_now_us(), memory_order_relaxed);
        if (i < j->n_a) {
            /* the halves' chunks of their rows, then the whole experts' */
            const bool hi = i < j->n_h;
            const int64_t per = hi ? j->per_h : j->per_a, ii = hi ? i : i - j->n_h;
            const struct matmul_task *ta = hi ? j->a : j->a + 2 * j->n_half;
            moe_job_chunk(ta, per, ii, hi ? j->half_rows : 0);
            /* the group's last gate or up chunk computes its middle step;
             * the chunk counts as done after that */
            const int e = (int)(ii / per / 2) + (hi ? 0 : j->n_half);
            const int64_t g = (ii % per) * j->a[0].chunk_rows / j->grp_rows;
            if (atomic_fetch_sub_explicit(&j->grp_left[e * j->n_grp + g].left, 1,
                                          memory_order_acq_rel) == 1)
                moe_job_middle(j, e, g);
            atomic_fetch_sub_explicit(&j->exp_left[e].left, 1, memory_order_acq_rel);
            if (i < j->n_h &&
                atomic_fetch_add_explicit(&j->done_h, 1, memory_order_acq_rel) + 1 == j->n_h &&
                j->half_flag)
                __atomic_store_n(j->half_flag, j->flag_value, __ATOMIC_RELEASE);
            if (atomic_fetch_add_explicit(&j->done_a, 1, memory_order_acq_rel) + 1 == j->n_a) {
                j->t_a_us = timing_now_us();
                if (!j->n_b) moe_job_end(j); /* halves only */
            }
            continue;
        }
        /* the halves' down rows, then the whole ones' downs; the expert's
         * last A chunks (and their middle steps) are in the hands of threads
         * computing them */
        const int64_t ib = i - j->n_a;
        const bool hb = ib < j->n_hb;
        const int e = hb ? (int)(ib / j->per_hb) : j->n_half + (int)((ib - j->n_hb) / j->per_b);
        const struct moe_grp *ready = &j->exp_left[e];
        for (unsigned s = 1; atomic_load_explicit(&ready->left, memory_order_acquire) != 0; s++)
            if ((s & 1023) == 0) sched_yield();
        if (hb)
            moe_job_chunk(j->b, j->per_hb, ib, j->half_down);
        else
            moe_job_chunk(j->b + j->n_half, j->per_b, ib - j->n_hb, 0);
        if (atomic_fetch_add_explicit(&j->done_b, 1, memory_order_acq_rel) + 1 == j->n_b)
            moe_job_end(j);
    }
}

/* One token's experts: the gate and up products of all of them, silu_mul,
 * then all the down products, and the weighted adds in expert order (see
 * struct moe_job). Each product's rows are chunked as cpu_matmul chunks them
 * and x is converted once per vec_dot_type (and each expert's h once), so
 * every output is what the op-by-op sequence (gate, up, silu_mul, down, add
 * with the weight, expert after expert) computes, bit for bit. h, h2:
 * [k][gate rows]; o: [k][n_embd]. The first n_half experts are halves
 * (struct moe_job): expert e's silu_mul of rows [0, half_rows) in h + e * F,
 * and with half_down its down's rows [0, half_down) added into y. */
void cpu_backend_moe_token_start(struct backend *be, const float *x, const struct backend_weight *w,
                                 const float *alpha, int k, float *y, float *h, float *h2, float *o,
                                 int n_half, int64_t half_rows, int64_t half_down,
                                 uint32_t *half_flag, uint32_t *flag, uint32_t flag_value)
{
    struct cpu_backend *cb = cpu_of(be);
    HY_ASSERT(k >= 1 && k <= BACKEND_MOE_MAX_K && n_half >= 0 && n_half <= k);
    HY_ASSERT(!n_half || (half_rows > 0 && half_rows <= w[0].n_rows));
    HY_ASSERT(half_down >= 0 && half_down <= w[2].n_rows &&
              (!half_down || (n_half && half_rows == w[0].n_rows)));
    threadpool_join(cb->pool); /* the job, act and the workers are this pass's now */
    if (!cb->job) cb->job = mem_aligned_xzalloc(MOE_LINE, sizeof *cb->job);
    cb->mm_last = false;
    struct moe_job *j = cb->job;
    const int64_t E = w[0].n_cols, F = w[0].n_rows;
    j->flag = flag;
    j->half_flag = half_flag;
    j->flag_value = flag_value;
    atomic_init(&j->finished, false);
    /* the converted rows (x in up to two types, then every h), each 64-byte
     * aligned as cpu_matmul's one-token row is: where the scratch is short of
     * them, the op-by-op sequence itself */
    size_t row = 0;
    for (int i = 0; i < 3; i++) {
        const uint32_t vt = quant_traits(w[i].type)->vec_dot_type;
        const size_t bytes = vt == HY_TYPE_F32 ? 0 : (size_t)quant_bytes(vt, (uint64_t)w[i].n_cols);
        row = HY_MAX(row, (bytes + 63) / 64 * 64);
    }
    if ((size_t)(k + 2) * row > cb->act_bytes) {
        j->t_start_us = timing_now_us();
        atomic_init(&j->t_first_us, j->t_start_us);
        for (int e = 0; e < k; e++) {
            float *he = h + e * F, *h2e = h2 + e * F;
            struct backend_weight g = w[3 * e], u = w[3 * e + 1];
            if (e < n_half) g.n_rows = u.n_rows = half_rows;
            cpu_matmul(be, &g, x, 1, he);
            cpu_matmul(be, &u, x, 1, h2e);
            cpu_silu_mul(be, he, h2e, g.n_rows);
            if (e + 1 == n_half && half_flag)
                __atomic_store_n(half_flag, flag_value, __ATOMIC_RELEASE);
            if (e + 1 == k) j->t_a_us = timing_now_us(); /* not phased: all of it as A */
            if (e < n_half && !half_down) continue;
            struct backend_weight d = w[3 * e + 2];
            if (e < n_half) d.n_rows = half_down;
            cpu_matmul(be, &d, he, 1, o);
            cpu_add(be, y, o, alpha[e], d.n_rows);
        }
        moe_job_done(j);
        return;
    }
    j->cb = cb;
    memcpy(j->w, w, (size_t)(3 * k) * sizeof *w);
    memcpy(j->alpha, alpha, (size_t)k * sizeof *alpha);
    j->k = k;
    j->n_half = n_half;
    j->half_rows = n_half ? half_rows : F;
    j->half_down = n_half ? half_down : 0;
    j->E = E;
    j->F = F;
    j->y = y, j->h = h, j->h2 = h2, j->o = o;
    j->row = row;
    /* gate and up: x in each vec_dot_type they use (at most two), then the products */
    uint8_t *act = cb->act;
    size_t used = 0;
    const void *xq_of[2] = {NULL, NULL};
    quant_from_float_fn conv_of[2] = {NULL, NULL};
    for (int t = 0; t < 2 * k; t++) {
        const struct backend_weight *e = &j->w[3 * (t / 2) + (t % 2)];
        HY_ASSERT(e->n_rows == F && e->n_cols == E);
        matmul_setup(cb, e, x, 1, (t % 2 ? h2 : h) + (t / 2) * F, &j->a[t]);
        moe_chunk_rows(&j->a[t], cb->moe_chunk_bytes);
        if (j->a[t].gemv && gemv_off(cb, e)) j->a[t].gemv = NULL;
        if (!j->a[t].from_float) continue; /* F32 weights read x as it is */
        int c = 0;
        while (c < 2 && conv_of[c] && conv_of[c] != j->a[t].from_float) c++;
        HY_ASSERT(c < 2); /* all gates are one tensor's, all ups another's */
        if (!conv_of[c]) {
            conv_of[c] = j->a[t].from_float;
            xq_of[c] = act + used;
            j->a[t].from_float(x, act + used, E);
            used += row;
        }
        j->a[t].xq = xq_of[c];
    }
    /* down: h converted in the middle steps */
    j->xq_b = act + used;
    int64_t blk = 1; /* the conversion's block (elements) */
    const int b0 = j->half_down ? 0 : n_half; /* the first expert with down rows here */
    for (int e = b0; e < k; e++) {
        const struct backend_weight *d = &j->w[3 * e + 2];
        HY_ASSERT(d->n_rows == E && d->n_cols == F);
        matmul_setup(cb, d, h + e * F, 1, o + e * E, &j->b[e]);
        moe_chunk_rows(&j->b[e], cb->moe_chunk_bytes);
        if (j->b[e].gemv && gemv_off(cb, d)) j->b[e].gemv = NULL;
        if (j->b[e].from_float) {
            j->b[e].xq = j->xq_b + (size_t)e * row;
            const uint32_t vt = quant_traits(d->type)->vec_dot_type;
            blk = HY_MAX(blk, (int64_t)quant_traits(vt)->block_size);
        }
    }
    const int64_t cr = j->a[0].chunk_rows;
    for (int t = 1; t < 2 * k; t++) HY_ASSERT(j->a[t].chunk_rows == cr);
    /* a group: whole chunks and whole blocks (chunk rows are multiples of
     * 16, blocks of 32 or 256 elements or 1) */
    int64_t gr = cr;
    while (gr % blk) gr += cr;
    j->grp_rows = gr;
    j->n_grp = (F + gr - 1) / gr;
    if (k * j->n_grp > j->grp_cap) {
        mem_aligned_free(j->grp_left);
        j->grp_cap = k * j->n_grp;
        j->grp_left = mem_aligned_xzalloc(MOE_LINE, (size_t)j->grp_cap * sizeof *j->grp_left);
    }
    for (int e = 0; e < k; e++)
        for (int64_t g = 0; g < j->n_grp; g++) {
            /* a half's groups past its rows: none of its chunks come */
            const int64_t rows = HY_MIN(gr, (e < n_half ? j->half_rows : F) - g * gr);
            atomic_init(&j->grp_left[e * j->n_grp + g].left,
                        rows > 0 ? (int)(2 * ((rows + cr - 1) / cr)) : 0);
        }
    j->per_a = (F + cr - 1) / cr;
    j->per_h = (j->half_rows + cr - 1) / cr;
    /* the downs' chunk rows, as cr is the gate and up products' */
    const int64_t cr_b = b0 < k ? j->b[b0].chunk_rows : 1;
    for (int e = b0 + 1; e < k; e++) HY_ASSERT(j->b[e].chunk_rows == cr_b);
    j->per_b = n_half < k ? (E + cr_b - 1) / cr_b : 0;
    j->per_hb = (j->half_down + cr_b - 1) / cr_b;
    j->n_h = 2 * n_half * j->per_h;
    j->n_a = j->n_h + 2 * (k - n_half) * j->per_a;
    j->n_hb = n_half * j->per_hb;
    j->n_b = j->n_hb + (k - n_half) * j->per_b;
    atomic_init(&j->next, 0);
    atomic_init(&j->done_a, 0);
    atomic_init(&j->done_b, 0);
    atomic_init(&j->done_h, 0);
    for (int e = 0; e < k; e++)
        atomic_init(&j->exp_left[e].left, (int)(2 * (e < n_half ? j->per_h : j->per_a)));
    /* chunks are claimed: a worker that has not begun when the pass is
     * joined is not waited for */
    j->t_start_us = timing_now_us();
    atomic_init(&j->t_first_us, 0);
    threadpool_start_loose(cb->pool, moe_job_worker, j);
}

/* cpu_backend_warm's run: n weights' bytes in order, thread ith's share
 * [ith, ith + 1) * total / nth; sink keeps the loads. */
struct warm_run {
    const struct backend_weight *w;
    int n;
    uint64_t total;
    _Alignas(MOE_LINE) atomic_uint_fast64_t sink;
};

static void warm_worker(void *arg, int ith, int nth)
{
    struct warm_run *r = arg;
    const uint64_t lo = r->total * (uint64_t)ith / (uint64_t)nth,
                   hi = r->total * (uint64_t)(ith + 1) / (uint64_t)nth;
    uint64_t at = 0, sum = 0;
    for (int i = 0; i < r->n && at < hi; i++) {
        const uint64_t b = (uint64_t)r->w[i].n_rows * r->w[i].row_bytes;
        const uint64_t s = HY_MAX(at, lo), e = HY_MIN(at + b, hi);
        const uint8_t *d = (const uint8_t *)r->w[i].data - at;
        for (uint64_t o = s; o < e; o += MOE_LINE) sum += d[o];
        at += b;
    }
    atomic_fetch_add_explicit(&r->sink, sum, memory_order_relaxed);
}

void cpu_backend_warm(struct backend *be, const struct backend_weight *w, int n)
{
    struct cpu_backend *cb = cpu_of(be);
    struct warm_run r = {.w = w, .n = n};
    for (int i = 0; i < n; i++) r.total += (uint64_t)w[i].n_rows * w[i].row_bytes;
    atomic_init(&r.sink, 0);
    threadpool_run(cb->pool, warm_worker, &r);
}

static bool moe_job_finished(void *arg)
{
    struct moe_job *j = arg;
    return atomic_load_explicit(&j->finished, memory_order_acquire);
}

/* The started product's timing seen once it is done (its gemv choice). */
static int64_t mm_pass_end(struct cpu_backend *cb)
{
    struct mm_pass *m = cb->mm;
    if (m->timed >= 0) {
        gemv_seen(cb, &m->w[0], m->timed, (double)(m->t_end_us - m->t_start_us) * 1e-6);
        m->timed = -1;
    }
    return m->t_end_us;
}

int64_t cpu_backend_pass_wait(struct backend *be)
{
    struct cpu_backend *cb = cpu_of(be);
    if (cb->mm_last) {
        struct mm_pass *m = cb->mm;
        if (!mm_pass_finished(m)) {
            mm_pass_worker(m, 0, threadpool_n_threads(cb->pool));
            threadpool_wait_until(mm_pass_finished, m);
        }
        return mm_pass_end(cb);
    }
    struct moe_job *j = cb->job;
    if (!j) return 0;
    if (!moe_job_finished(j)) {
        /* as the pool's join would: what is left, on this thread (the
         * join's own call later finds nothing), then the wait */
        moe_job_worker(j, 0, threadpool_n_threads(cb->pool));
        threadpool_wait_until(moe_job_finished, j);
    }
    return j->t_end_us;
}

void cpu_backend_pass_times(struct backend *be, int64_t *start, int64_t *first, int64_t *gate_up)
{
    const struct cpu_backend *cb = cpu_of(be);
    if (cb->mm_last) {
        *start = *first = cb->mm->t_start_us;
        *gate_up = cb->mm->t_end_us;
        return;
    }
    const struct moe_job *j = cb->job;
    *start = j ? j->t_start_us : 0;
    *first = j ? atomic_load_explicit(&j->t_first_us, memory_order_relaxed) : 0;
    *gate_up = j ? j->t_a_us : 0;
}

int64_t cpu_backend_join(struct backend *be)
{
    struct cpu_backend *cb = cpu_of(be);
    threadpool_join(cb->pool);
    if (cb->mm_last) return mm_pass_end(cb);
    return cb->job ? cb->job->t_end_us : 0;
}

static void cpu_moe_token(struct backend *be, const float *x, const struct backend_weight *w,
                          const float *alpha, int k, float *y, float *h, float *h2, float *o)
{
    cpu_backend_moe_token_start(be, x, w, alpha, k, y, h, h2, o, 0, 0, 0, NULL, NULL, 0);
    cpu_backend_join(be);
}

/* ---- attention ------------------------------------------------------------- */

/* Work is split over (token, head) pairs; each pair is computed by one
 * thread start to end, so its output does not depend on the thread count or
 * on the other tokens of the batch. The kernels are resolved once per call. */
struct attn_task {
    const struct cpu_backend *cb;
    const struct backend_attn *a;
    const float *q;
    float *out;
    size_t k_row, k_head;       /* bytes of a K cache row and of one KV head in it */
    uint32_t q_type;            /* the K type's vec_dot_type */
    quant_from_float_fn q_conv; /* F32 -> q_type; NULL when q_type is F32 */
    quant_vec_dot_fn k_dot;
    bool v_trans;
    size_t v_row, v_head;       /* transposed: bytes of a row; else as k_row, k_head */
    quant_from_float_fn w_conv; /* transposed, F16: the softmax weights -> F16 */
    quant_vec_dot_fn v_dot;     /* transposed: weights . V row */
    quant_to_float_fn v_deq;    /* row-major: one V row -> F32 */
    /* the same dot products several rows at once (quant_gemv_fn, equal to
     * k_dot and v_dot bit for bit); NULL: k_dot, v_dot per row */
    quant_gemv_fn k_gemv, v_gemv;
};

static void attn_worker(void *arg, int ith, int nth)
{
    const struct attn_task *task = arg;
    const struct backend_attn *a = task->a;
    const int64_t n_work = a->n_tok * a->n_head;
    const int64_t w0 = n_work * ith / nth, w1 = n_work * (ith + 1) / nth;
    const int64_t group = a->n_head / a->n_head_kv;
    const int64_t max_ctx = task->cb->lim.max_ctx, max_hd = task->cb->lim.max_head_dim;
    float *scores = task->cb->att_scratch + (size_t)ith * task->cb->att_stride;
    float *wconv = scores + max_ctx;
    float *qconv = wconv + max_ctx;
    float *vrow = qconv + max_hd;
    const uint8_t *kc = a->k_cache, *vc = a->v_cache;
    for (int64_t wi = w0; wi < w1; wi++) {
        const int64_t t = wi / a->n_head, h = wi % a->n_head, g = h / group;
        const int64_t n_kv = a->pos0 + t + 1;
        const float *q = task->q + (t * a->n_head + h) * a->head_dim;
        const void *qc = q;
        if (task->q_conv) {
            task->q_conv(q, qconv, a->head_dim);
            qc = qconv;
        }
        const uint8_t *k = kc + (size_t)g * task->k_head;
        if (task->k_gemv) {
            task->k_gemv(a->head_dim, k, task->k_row, n_kv, qc, scores);
            for (int64_t j = 0; j < n_kv; j++) scores[j] *= a->scale;
        } else {
            for (int64_t j = 0; j < n_kv; j++)
                scores[j] = task->k_dot(a->head_dim, k + (size_t)j * task->k_row, qc) * a->scale;
        }
        softmax_row(scores, n_kv);
        float *o = task->out + (t * a->n_head + h) * a->head_dim_v;
        if (task->v_trans) {
            const void *wc = scores;
            if (task->w_conv) {
                task->w_conv(scores, wconv, n_kv);
                wc = wconv;
            }
            const uint8_t *v = vc + (size_t)(g * a->head_dim_v) * task->v_row;
            if (task->v_gemv)
                task->v_gemv(n_kv, v, task->v_row, a->head_dim_v, wc, o);
            else
                for (int64_t d = 0; d < a->head_dim_v; d++)
                    o[d] = task->v_dot(n_kv, v + (size_t)d * task->v_row, wc);
        } else {
            for (int64_t d = 0; d < a->head_dim_v; d++) o[d] = 0.0f;
            const uint8_t *v = vc + (size_t)g * task->v_head;
            for (int64_t j = 0; j < n_kv; j++) {
                task->v_deq(v + (size_t)j * task->v_row, vrow, a->head_dim_v);
                const float s = scores[j];
                for (int64_t d = 0; d < a->head_dim_v; d++) o[d] += s * vrow[d];
            }
        }
    }
}

static bool attn_type_ok(uint32_t type, int64_t dim)
{
    if (type != HY_TYPE_F32 && type != HY_TYPE_F16 && type != HY_TYPE_Q8_0) return false;
    return dim % quant_traits(type)->block_size == 0;
}

/* Writes the new tokens' keys and values into the caches, converted to their types. */
static void attn_store(const struct cpu_backend *cb, const struct backend_attn *a,
                       const struct attn_task *task, const float *k, const float *v)
{
    const int64_t k_dim = a->n_head_kv * a->head_dim, v_dim = a->n_head_kv * a->head_dim_v;
    quant_from_float_fn k_put = kernel_from_float(cb, a->k_type);
    for (int64_t t = 0; t < a->n_tok; t++)
        k_put(k + t * k_dim, (uint8_t *)a->k_cache + (size_t)(a->pos0 + t) * task->k_row, k_dim);
    if (!task->v_trans) {
        quant_from_float_fn v_put = kernel_from_float(cb, a->v_type);
        for (int64_t t = 0; t < a->n_tok; t++)
            v_put(v + t * v_dim, (uint8_t *)a->v_cache + (size_t)(a->pos0 + t) * task->v_row,
                  v_dim);
    } else if (a->v_type == HY_TYPE_F32) {
        float *vt = a->v_cache;
        for (int64_t t = 0; t < a->n_tok; t++)
            for (int64_t d = 0; d < v_dim; d++) vt[d * a->n_ctx + a->pos0 + t] = v[t * v_dim + d];
    } else {
        uint16_t *vt = a->v_cache;
        for (int64_t t = 0; t < a->n_tok; t++)
            for (int64_t d = 0; d < v_dim; d++)
                vt[d * a->n_ctx + a->pos0 + t] = quant_f32_to_f16(v[t * v_dim + d]);
    }
}

static void cpu_attention(struct backend *be, const struct backend_attn *a, float *q, float *k,
                          const float *v, float *out)
{
    struct cpu_backend *cb = cpu_of(be);
    if (a->rope) { /* in place, as separate rope calls would */
        cpu_rope(be, q, a->n_tok, a->n_head, a->head_dim, a->pos0, a->rope);
        cpu_rope(be, k, a->n_tok, a->n_head_kv, a->head_dim, a->pos0, a->rope);
    }
    HY_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    HY_ASSERT(a->pos0 >= 0 && a->n_tok >= 1 && a->pos0 + a->n_tok <= a->n_ctx &&
              a->n_ctx <= cb->lim.max_ctx);
    HY_ASSERT(a->head_dim <= cb->lim.max_head_dim && a->head_dim_v <= cb->lim.max_head_dim);
    HY_ASSERT(attn_type_ok(a->k_type, a->head_dim) && attn_type_ok(a->v_type, a->head_dim_v));
    const struct quant_traits *kt = quant_traits(a->k_type);
    struct attn_task task = {
        .cb = cb,
        .a = a,
        .q = q,
        .out = out,
        .k_row = (size_t)quant_bytes(a->k_type, (uint64_t)(a->n_head_kv * a->head_dim)),
        .k_head = (size_t)quant_bytes(a->k_type, (uint64_t)a->head_dim),
        .q_type = kt->vec_dot_type,
        .k_dot = kernel_vec_dot(cb, a->k_type),
        .v_trans = backend_kv_v_transposed(a->v_type),
    };
    if (task.q_type != HY_TYPE_F32) task.q_conv = kernel_from_float(cb, task.q_type);
    if (!cb->portable) task.k_gemv = quant_gemv_kernel(a->k_type);
    if (task.v_trans) {
        task.v_row = (size_t)quant_bytes(a->v_type, (uint64_t)a->n_ctx);
        task.v_dot = kernel_vec_dot(cb, a->v_type);
        if (!cb->portable) task.v_gemv = quant_gemv_kernel(a->v_type);
        if (a->v_type != HY_TYPE_F32) task.w_conv = kernel_from_float(cb, a->v_type);
    } else {
        task.v_row = (size_t)quant_bytes(a->v_type, (uint64_t)(a->n_head_kv * a->head_dim_v));
        task.v_head = (size_t)quant_bytes(a->v_type, (uint64_t)a->head_dim_v);
        task.v_deq = kernel_to_float(cb, a->v_type);
    }
    attn_store(cb, a, &task, k, v);
    threadpool_run(cb->pool, attn_worker, &task);
}

/* ---- memory and lifetime ----------------------------------------------------- */

static enum hy_status cpu_reserve(struct backend *be, const struct backend_limits *lim)
{
    struct cpu_backend *cb = cpu_of(be);
    threadpool_join(cb->pool);
    if (lim->max_ctx > cb->lim.max_ctx || lim->max_head_dim > cb->lim.max_head_dim) {
        const int64_t max_ctx = HY_MAX(lim->max_ctx, cb->lim.max_ctx);
        const int64_t max_hd = HY_MAX(lim->max_head_dim, cb->lim.max_head_dim);
        /* see att_scratch; a multiple of 16 floats keeps each thread's part 64-byte aligned */
        const size_t stride = (size_t)(2 * max_ctx + 2 * max_hd + 15) / 16 * 16;
        size_t bytes = (size_t)cb->n_threads * stride * sizeof(float);
        float *p = mem_aligned_alloc(64, bytes);
        if (!p)
            return err_set(HY_ERR_OOM, "RAM: cannot allocate %zu bytes of attention scratch",
                           bytes);
        mem_aligned_free(cb->att_scratch);
        cb->att_scratch = p;
        cb->att_stride = stride;
        free(cb->rope_tab);
        cb->rope_tab = mem_xcalloc((size_t)(3 * max_hd / 2 + 1), sizeof(double));
        cb->lim.max_ctx = max_ctx;
        cb->lim.max_head_dim = max_hd;
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

static void cpu_upload(struct backend *be, void *dst, const void *host_src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(dst, host_src, bytes);
}

static enum hy_status cpu_sync(struct backend *be)
{
    (void)be;
    return HY_OK;
}

static void cpu_free(struct backend *be)
{
    struct cpu_backend *cb = cpu_of(be);
    threadpool_free(cb->pool);
    if (cb->job) mem_aligned_free(cb->job->grp_left);
    mem_aligned_free(cb->job);
    mem_aligned_free(cb->mm);
    mem_aligned_free(cb->att_scratch);
    mem_aligned_free(cb->act);
    free(cb->rope_tab);
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
    .upload = cpu_upload,
    .sync = cpu_sync,
    .matmul = cpu_matmul,
    .get_rows = cpu_get_rows,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .softmax = cpu_softmax,
    .route = cpu_route,
    .silu_mul = cpu_silu_mul,
    .add = cpu_add,
    .add_bias = cpu_add_bias,
    .add_rows = cpu_add_rows,
    .moe_token = cpu_moe_token,
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
    cb->moe_chunk_bytes = opts->moe_chunk_bytes > 0 ? opts->moe_chunk_bytes : MOE_CHUNK_BYTES;
    cb->pass_chunks = opts->pass_chunks > 0 ? opts->pass_chunks : 0;
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
