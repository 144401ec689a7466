/*
 * The CUDA backend object (see cuda_backend.h): memory, streams, the error
 * record, the op table, and the three ways a weight product is computed
 * (from VRAM, by the CPU where a host weight lies, copied over PCIe).
 *
 * Streams. Ops are queued in order on one compute stream; PCIe copies of
 * host weights go on a second (copy) stream into a ring of COPY_SLOTS device
 * slots. A piece's copy records an event the compute stream waits for before
 * the piece's kernel; the kernel records an event the next copy into the same
 * slot waits for. A call on a host weight that may move returns only once
 * its copies are done, because the weight store may reuse that host memory
 * after model_release; its kernels may still run. moe_token's CPU experts,
 * and one token's CPU rows of a host weight that stays, may still run too,
 * on the CPU backend's workers: the compute stream waits for them at a
 * kernel that polls a flag in pinned memory, and every call that waits on
 * the device or needs the CPU backend joins them first (pass_join).
 */
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/moe_split.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_probe.h"
#include "core/err.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "hw/hw.h"
#include "store/expert_policy.h"

_Static_assert(BACKEND_MOE_MAX_K <= MOE_SPLIT_MAX, "a call's candidates fit moe_split_choose");

/* cuBLAS is opened when a CUDA backend is made, not at program start: its
 * libraries map and touch over 100 MiB, which a CPU-only run (most runs on a
 * machine without a GPU) must not pay in resident memory. */
static struct {
    bool tried, ok;
    __typeof__(&cublasCreate_v2) create;
    __typeof__(&cublasDestroy_v2) destroy;
    __typeof__(&cublasSetStream_v2) set_stream;
    __typeof__(&cublasSetMathMode) set_math_mode;
    __typeof__(&cublasSgemm_v2) sgemm;
    __typeof__(&cublasGemmEx) gemm_ex;
    __typeof__(&cublasSetPointerMode_v2) set_pointer_mode;
} blas_fn;

HY_MUST_CHECK static enum hy_status blas_open(void)
{
    if (blas_fn.tried)
        return blas_fn.ok
                   ? HY_OK
                   : err_set(HY_ERR_UNSUPPORTED, "CUDA: cannot load cuBLAS (libcublas.so.13)");
    blas_fn.tried = true;
    void *h = dlopen("libcublas.so.13", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libcublas.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return err_set(HY_ERR_UNSUPPORTED, "CUDA: cannot load cuBLAS: %s", dlerror());
    void *p[7];
    static const char *const names[7] = {
        "cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2",     "cublasSetMathMode",
        "cublasSgemm_v2",  "cublasGemmEx",     "cublasSetPointerMode_v2"};
    for (int i = 0; i < 7; i++)
        if (!(p[i] = dlsym(h, names[i])))
            return err_set(HY_ERR_UNSUPPORTED, "CUDA: cuBLAS lacks %s", names[i]);
    memcpy(&blas_fn.create, &p[0], sizeof p[0]);
    memcpy(&blas_fn.destroy, &p[1], sizeof p[1]);
    memcpy(&blas_fn.set_stream, &p[2], sizeof p[2]);
    memcpy(&blas_fn.set_math_mode, &p[3], sizeof p[3]);
    memcpy(&blas_fn.sgemm, &p[4], sizeof p[4]);
    memcpy(&blas_fn.gemm_ex, &p[5], sizeof p[5]);
    memcpy(&blas_fn.set_pointer_mode, &p[6], sizeof p[6]);
    blas_fn.ok = true;
    return HY_OK;
}

#define COPY_SLOTS       CUDA_COPY_SLOTS
/* prefetch's bytes a call: where it starts and its bounds */
#define PF_BYTES_START ((double)(8 << 20))
#define PF_BYTES_MIN   ((double)(1 << 20))
#define PF_BYTES_MAX   ((double)(256 << 20))
#define CPU_BATCH_TOKENS 4 /* the CPU's cost grows with the batch past this */
/* Prompt GEMMs are as wide as the batch rounded up to a multiple of this:
 * cuBLAS picks its kernel for each new shape at its first call, at a cost of
 * up to milliseconds, and an MoE layer's expert batches (one per expert,
 * each as many tokens as picked it) would otherwise bring new widths on
 * every prompt. */
#define GEMM_COL_STEP   CUDA_GEMM_COL_STEP
#define GEMM_SHAPES_MAX 64  /* weight shapes whose GEMMs were warmed */
#define ROPE_INV_MAX    CUDA_ROPE_INV_MAX
#define WC_SIZES        CUDA_WEIGHT_CACHE_SIZES

/* A VRAM cache entry's last use: cold fills (wc_cold) count below every
 * warm use, so that they go first, but in the order they came among
 * themselves (a call's cold fill must not take the entry of one it has
 * just made, whose product has yet to read it: its copy would wait for that
 * product). */
#define WC_WARM (1ull << 62)

struct wc_entry {
    uint64_t key; /* 0: free */
    uint64_t tick;      /* 0: never used; cold fills below WC_WARM */
    uint64_t off, size; /* its bytes in the cache's allocation */
    bool filled;
    /* filled by prefetch: its copy, at fill_ev, is not yet waited for by
     * the compute stream (the first reader does) */
    bool pending;
    /* taken by wc_take for a product not yet queued: no other weight takes
     * it, and the entries are not re-cut */
    bool held;
    /* marks the entry's last queued reader; created at its first use and
     * kept when the entries are re-cut (it then marks a point the fence
     * already covers) */
    cudaEvent_t read_ev;
    cudaEvent_t fill_ev; /* prefetch's copy (created at the first one) */
};

/* The prompt GEMMs' alpha and beta in device memory (cuBLAS in device
 * pointer mode): x16's scale, set by its conversion; 1 and 0 for F32
 * weights and the warm-up. */
struct gemm_consts {
    struct cuk_f16_scale x16;
    float one, zero;
};

struct cuda_backend {
    struct backend base; /* first */
    int dev;
    cudaStream_t st, cp;
    cublasHandle_t blas;
    struct backend *cpu; /* owned: computes host weights where they lie */
    enum cuda_host_policy policy;
    /* matvecs of weights in device memory, RMSNorm and decode attention
     * launched with programmatic dependent launch (compute capability 9.0
     * and up; off with HYPURA_CUDA_PDL=0): each starts during the previous
     * kernel's tail */
    bool pdl;
    /* RMSNorm of one token deferred into the matvec that reads its output
     * (off with HYPURA_CUDA_FOLD_NORM=0): cu_rms_norm records it here; the
     * product whose x is its output folds it into its prologue, every other
     * op launches it first (norm_flush) */
    bool fold_norm;
    /* one token's q/k/v of two types in VRAM in one launch (off with
     * HYPURA_CUDA_PAIR=0: a launch a type) */
    bool pair;
    struct pending_norm {
        bool on;
        int64_t n_tok, n;
        struct cuq_norm nm; /* nm.x, nm.w, nm.eps, nm.y: the op's arguments */
    } pn;
    /* an RMSNorm of rows in place (a layer's q head norms), deferred for an
     * in-place one of rows as long that may come next (its k head norms):
     * the two in one launch (off with HYPURA_CUDA_NORM_PAIRS=0); every other
     * op launches it first (norm_flush) */
    bool norm_pairs;
    struct pending_norm pq;
    /* the in-place one of rows as long after pq's, with it: held for decode
     * attention, which applies both to its q and k (off with
     * HYPURA_CUDA_ATT_NORMS=0: the two launched at once) */
    bool att_norms;
    struct pending_norm pk;

    enum hy_status err; /* first failure; later ops are skipped */
    char err_msg[512];

    struct backend_limits lim;
    /* device scratch */
    uint16_t *x16; /* activations as binary16, [gemm width of max_batch][max_cols] */
    size_t x16_bytes;
    uint16_t *w16; /* w16_bytes of dequantized rows, then padded GEMM outputs */
    size_t w16_bytes;
    /* weights (kind, rows, columns) whose GEMMs at every width were warmed */
    struct gemm_shape {
        int kind;
        int64_t n_rows, n_cols;
    } warmed[GEMM_SHAPES_MAX];
    int n_warmed;
    int32_t *ids; /* row ids of get_rows */
    size_t ids_bytes;
    void *ar; /* add_rows: its rows, then its weights */
    size_t ar_bytes;
    float *part; /* attention split partials */
    size_t part_bytes;
    float *ff; /* RoPE frequency factors */
    float *ff_host;
    int64_t ff_n;
    size_t ff_bytes;
    uint64_t ff_gen; /* counts the uploads of ff */
    /* RoPE pair frequencies (struct cuk_rope's inv), rinv_n of them, for the
     * rope of the other fields (rinv_ff_gen: ff_gen of its factors; 0: none) */
    double *rinv;
    size_t rinv_bytes;
    int64_t rinv_n;
    double rinv_base, rinv_scale;
    uint64_t rinv_ff_gen;
    double rinv_host[ROPE_INV_MAX]; /* the same frequencies on the host */
    uint64_t rinv_gen;              /* counts their computations */
    /* RoPE's cos and sin at position cs_pos (struct cuk_attn's cs), from the
     * frequencies of computation cs_gen (0: none yet) */
    float cs[2 * ROPE_INV_MAX];
    int64_t cs_pos;
    uint64_t cs_gen;
    /* pinned host staging for the CPU path */
    float *hx, *hy;
    size_t hx_bytes, hy_bytes;
    /* hx holds the hx_len bytes of device activations hx_src, unchanged since
     * (gate and up products share their input: one download serves both);
     * every op that may write device memory clears hx_src */
    const float *hx_src;
    size_t hx_len;
    /* PCIe copy ring */
    uint8_t *slot[COPY_SLOTS];
    uint64_t slot_bytes;
    cudaEvent_t copied[COPY_SLOTS], freed[COPY_SLOTS];
    cudaEvent_t wc_copied;    /* a VRAM cache fill */
    cudaEvent_t st_mark;      /* the compute stream's progress, for the copy stream to wait on */
    cudaEvent_t hy_free;      /* the last upload from hy has left */
    /* marks of the compute stream's events, counted as they are recorded:
     * hy_free's last and dl_done's last; st_seen, the last one the host has
     * seen done (a download waited for): an event recorded on the stream
     * before it is done too, and not waited for again */
    uint64_t st_marks, hy_free_mark, dl_mark, st_seen;
    cudaEvent_t cp_t0, cp_t1; /* timing: the first and last copy of a split call */
    /* a started host product's copies timed (cp_t0, cp_t1; hc_bytes of them),
     * read at a later call once cp_t1 is done */
    bool hc_pending;
    uint64_t hc_bytes;
    /* a one-token product of a RAM weight that stays (stable) started on the
     * CPU's workers (host_matmul, async_host): its rows go into ha[ha_i]
     * (pinned; the two in turn, so that a pass may fill one while the stream
     * still reads the other, free at ha_free), the stream taking them up
     * once pass_flag says so, while the calling thread returns and queues
     * the ops after it (HYPURA_CUDA_ASYNC_HOST=0: it computes with the
     * workers and waits for the copies, as for a weight that may move) */
    bool async_host;
    bool swiglu_host; /* gate and up in one such call (HYPURA_CUDA_SWIGLU_HOST=0: two) */
    bool in_moe;      /* moe_token's experts being queued (not host_swiglu's) */
    float *ha[2];
    size_t ha_bytes[2];
    cudaEvent_t ha_free[2];
    int ha_i;
    /* a started SwiGLU's activations for the down product (host_swiglu):
     * its CPU rows written by the pass into hh, the GPU's rows coming down
     * into it at hh_down (hx_pending until waited for); then hh and hx trade
     * places, hx_src being that product's input on the device */
    float *hh;
    size_t hh_bytes;
    cudaEvent_t hh_down;
    bool hx_pending;
    /* timing: a moe_token call's copies beside its CPU pass (mc_bytes of
     * them, read at a later call once mc_t1 is done), and the call at which
     * rates.moe_pcie_bytes_per_s last changed */
    cudaEvent_t mc_t0, mc_t1;
    bool mc_pending;
    uint64_t mc_bytes, mc_at;
    /* timing: a moe_token call's GPU side with a CPU pass beside it (one call
     * at a time, read at a later call): its start on the compute stream, its
     * own experts done, the CPU's sum added */
    cudaEvent_t mg_t0, mg_t1, mg_t2;
    bool mg_pending;
    /* HYPURA_CUDA_MOE_TRACE=FILE: a line per moe_token call with a CPU pass,
     * written when the pass is joined: what the split predicted (the rates
     * it took, each side's time) against what ran (the pass's time, the GPU
     * side's and its copies' where timed) */
    FILE *trace;
    int64_t trace_t0; /* the trace's time origin */
    /* the trace's: the last download waited for (a layer's routes), when
     * it was in hand, and the GPU's time from the last timed call's sum
     * added (mg_t2) to its arrival (tr_dl; -1: another download came between) */
    int64_t tr_dl_us, tr_chain_us; /* tr_dl_us 0: none yet */
    cudaEvent_t tr_dl; /* a download's arrival, timed (dl_done is not) */
    bool tr_t2;        /* mg_t2 recorded and not yet taken for tr_chain_us */
    struct moe_trace {
        uint64_t seq;
        int n_cpu, n_half;
        int64_t half_rows, F, half_down;
        uint64_t cpu_bytes, gpu_far, copied;
        int64_t queue_us; /* the GPU side's queuing from the pass's start */
        int64_t at_us;    /* the pass's start, from the backend's start */
        int64_t x_us;     /* the wait for x before it */
        int64_t dl_us;    /* from the routes' arrival to the pass's start (-1: none came) */
        int64_t in_us;    /* from this call's entry to the pass's start */
        int64_t chain_us; /* the GPU's, from the last call's sum to the routes */
        /* from the call's entry: its slices looked up, the split made, x
         * waited for (the pass's start is in_us) */
        int64_t look_us, split_us, xd_us;
        double rate, pcie;
        bool gpu_timed, copy_timed;
    } tr;
    /* a split call's activations come down on their own stream (dl), after
     * x_ready, and are waited for after its copies are queued; copy_first
     * false: before (HYPURA_CUDA_COPY_FIRST=0) */
    cudaStream_t dl;
    cudaEvent_t x_ready;
    /* one token's head (HEAD_SPLIT_ROWS rows or more) is two products: rows
     * [0, head_r1) of head_y are final at head_ev, and cu_download brings
     * them down on dl (head_dl: done) while the rest computes, when no op
     * ran between (op_seq: ops begun, head_seq: its value after the head's) */
    float *head_y;
    int64_t head_r1, head_rows;
    uint64_t op_seq, head_seq;
    /* the last head's rows were picked from by top_k, not downloaded: the
     * next head is one product (head_r1 0), until one comes down whole */
    bool head_whole;
    cudaEvent_t head_ev, head_dl;
    /* top_k's scratch and its result (device), and the result's pinned copy */
    unsigned long long *topk_dev, *topk_host;
    size_t topk_dev_bytes, topk_host_bytes;
    bool copy_first;
    bool zero_copy; /* small_copy by a kernel (HYPURA_CUDA_ZERO_COPY=0: by the copy engines) */
    /* several MoE experts' products per kernel (HYPURA_CUDA_GROUP_EXPERTS=0: one by one) */
    bool group_experts;
    /* a routed expert's gate and up of at least this many bytes make a
     * launch of their own (HYPURA_CUDA_EXPERT_OWN_MIB; 0: never) */
    uint64_t expert_own;
    /* moe_rate_weighed's drift (HYPURA_CUDA_MOE_RATE_DRIFT=N calls; 0: none) */
    int rate_drift;
    /* seconds the split's copies are to end before the CPU's pass
     * (MOE_COPY_LEAD_US; HYPURA_CUDA_COPY_LEAD_US) */
    double copy_lead;
    /* a token's product of host weights with an element-wise op (an
     * expert's gate and up, its down with the add) in one kernel from their
     * VRAM cache entries (HYPURA_CUDA_FUSE_HOST=0: each product, then the op) */
    bool fuse_host;
    bool routed; /* moe_routed takes what it can (HYPURA_CUDA_ROUTED=0: declines) */
    /* prefetch copies guessed experts (HYPURA_CUDA_PREFETCH=0: it does nothing),
     * pf_bytes of them a call, while its guesses come true often enough and
     * its copies are read: pf_guess, the keys of the slices its last call
     * took (or would have taken), pf_hit_rate, how many of them the next
     * moe_token read (an average over calls); pf_copied, the entries (and
     * keys) its last call filled, pf_use_rate, how many of them a GPU
     * product read before the next call (an average); pf_idle, its calls
     * since it last copied */
    bool prefetch;
    double pf_bytes;
    uint64_t pf_guess[3 * BACKEND_MOE_MAX_K];
    int pf_n_guess;
    double pf_hit_rate;
    int pf_copied[3 * BACKEND_MOE_MAX_K];
    uint64_t pf_copied_key[3 * BACKEND_MOE_MAX_K];
    int pf_n_copied, pf_idle;
    double pf_use_rate;
    /* moe_token's GPU experts being queued while the CPU's pass over its
     * own runs: a host product then goes whole over PCIe (the CPU's threads
     * are that pass's) */
    bool cpu_busy;
    /* moe_token's CPU experts running on the pool's workers while the
     * calling thread returns and queues the GPU's next ops (on by default
     * where the pool has workers and pinned memory is the device's to read;
     * HYPURA_CUDA_ASYNC_CPU=0: the thread computes with them and queues the
     * rest once they are done): the compute stream waits at a cuk_wait_add
     * for pass_flag (pinned) to reach pass_seq, which the pass stores when
     * its sum is in hy. pass_on until pass_join; pass_nc experts, pass_bytes
     * of them, started at pass_t0, their count's rate fresh then or not.
     * Halves (gate and up on the CPU, down on the GPU): the pass stores
     * pass_seq into pass_flag[PASS_HALF_FLAG] once their activations are in
     * hm, and a cuk_wait_copy takes them up. moe_half: whether they are
     * chosen (cuda_backend_config); moe_half_min: the gate and up bytes under
     * which auto makes none (HYPURA_CUDA_MOE_HALF_MIN_MIB); moe_rows: whether
     * a half may leave gate and up rows to the GPU (HYPURA_CUDA_MOE_ROWS=0:
     * never); moe_down: whether a half may take down rows onto the CPU
     * (HYPURA_CUDA_MOE_DOWN=0: never). */
    bool async_cpu;
    /* the VRAM cache's fills while set are the first to go (a half's rows
     * left to the GPU: keyed by their share, seldom read again) */
    bool wc_cold;
    enum cuda_moe_half moe_half;
    uint64_t moe_half_min;
    bool moe_rows, moe_down;
    uint32_t *pass_flag;
    uint32_t *pass_dflag; /* device words of the waits on pass_flag's (cuk_wait_add) */
    struct gemm_consts *gk;
    uint32_t pass_seq;
    bool pass_on, pass_fresh, pass_beside;
    bool pass_dense; /* the pass is a started host product's (of type pass_type) */
    uint32_t pass_type;
    int pass_nc;
    int64_t pass_t0;
    uint64_t pass_bytes;
    /* moe_token's CPU side: the CPU experts' gate, up and down rows (pinned) */
    float *hm;
    size_t hm_bytes;
    /* moe_token's x on the host (pinned), down at mx_down; mx_src: the
     * device x that moe_prepare sent down there (NULL: none). Where a
     * download is to follow, moe_prepare only notes x (mx_defer) and it goes
     * down in the download's kernel (mx_mark: that download's mark, 0 for
     * none), arrived once the host has seen that mark done (st_seen):
     * moe_token then waits for nothing */
    float *mx;
    size_t mx_bytes;
    const float *mx_src, *mx_defer;
    int64_t mx_len, mx_defer_len;
    uint64_t mx_mark;
    cudaEvent_t mx_down;
    /* download_start's copy: staged in hd (pinned) until dl_done, then
     * copied to dl_dst (dl_len bytes) by download_wait */
    void *hd;
    size_t hd_bytes;
    void *dl_dst;
    size_t dl_len;
    cudaEvent_t dl_done;
    int next_slot;
    /* VRAM weight cache: entries carved from one allocation, of the sizes
     * the keyed weights come in (wc_size[], wc_count[]: cuda_backend_weight_
     * cache_sizes) or, past those, all of the largest size seen */
    uint8_t *wc;
    uint64_t wc_bytes, wc_entry_bytes; /* the largest entry */
    uint64_t wc_size[WC_SIZES];
    int wc_count[WC_SIZES], wc_n_size;
    struct wc_entry *wce; /* [wc_cap] */
    /* the entries by key (those with one): wc_head[hash of the key] the
     * first of a chain, wc_next[entry] the next; [wc_hash_n], a power of
     * two, and [wc_cap]. A one-token MoE call looks up each of its slices
     * on its way from its routes to its CPU pass, where a scan of every
     * entry grows with the cache (up to 2^20 entries) */
    int *wc_head, *wc_next;
    uint64_t wc_hash_n;
    bool wc_fence;        /* entries re-cut: the next fill waits for the whole stream */
    int wc_n, wc_cap;
    int wc_held; /* entries held (wc_take): their products are not launched early */
    uint64_t wc_tick;
    /* the keyed weights' uses (wc_touch), whose values order the warm
     * entries' eviction once moe_token has run (NULL: by recency alone,
     * HYPURA_CUDA_WC_LRFU=0); wc_layer0: the first moe_token's gate tensor
     * (its key >> 20) and the call it came in, until the period is learnt */
    struct expert_history *wc_hist;
    uint64_t wc_layer0, wc_layer0_at;
    bool wc_period_set;

    uint64_t dev_bytes; /* allocated through alloc + scratch */
    /* what alloc handed out, so that dealloc can take it off dev_bytes */
    struct dev_alloc {
        void *p;
        size_t bytes;
    } * allocs;
    int n_allocs, cap_allocs;
    struct cuda_backend_rates rates;
    /* the CPU's rate per weight type, as observed (0: none yet, the common
     * rate stands in): its kernels differ, and a Q6_K head split by the Q4_K
     * rate leaves the PCIe side waiting */
    double cpu_type_rate[HY_TYPE_COUNT];
    /* moe_token's CPU side as it ran, by whether copies ran beside it (the
     * two share host memory's bandwidth) and by its count of experts
     * (bytes/s; 0: not seen): a call of one expert pays the threads' start
     * as four do; moe_rate_at: moe_seq (moe_token calls) when each was last
     * seen */
    double moe_cpu_rate[2][BACKEND_MOE_MAX_K + 1];
    uint64_t moe_rate_at[2][BACKEND_MOE_MAX_K + 1], moe_seq;
    struct cuda_backend_stats stats;
    /* moe_batch (mb_mode, HYPURA_CUDA_MOE_BATCH: 0 off, 1 each expert its
     * way (mb_by_gemm), 2 every expert by the integer kernels): its tables,
     * built in mb_host (pinned; mb_up: the last upload from it has left) and
     * copied to mb_dev, each token's count of experts in mb_k, and the
     * gathered x, h and o in mb_x */
    int mb_mode;
    void *mb_host, *mb_dev;
    size_t mb_host_bytes, mb_dev_bytes;
    int32_t *mb_k;
    int64_t mb_k_n;
    float *mb_x;
    size_t mb_x_bytes;
    cudaEvent_t mb_up;
    struct op_prof *prof; /* HYPURA_CUDA_PROFILE set: time of each op on the GPU */
    struct cuk_trace kt;  /* HYPURA_CUDA_TRACE set: the kernels' records (kt.rec) */
    char *kt_path;
};

static struct cuda_backend *cb_of(struct backend *be)
{
    return (struct cuda_backend *)be;
}
static const struct cuda_backend *cb_ofc(const struct backend *be)
{
    return (const struct cuda_backend *)be;
}

/* ---- errors ------------------------------------------------------------- */

static void fail(struct cuda_backend *cb, enum hy_status st, const char *call, const char *what,
                 const char *file, int line)
{
    if (cb->err) return;
    cb->err = st;
    snprintf(cb->err_msg, sizeof cb->err_msg, "CUDA: %s failed at %s:%d: %s", call, file, line,
             what);
}

static bool cuda_ok(struct cuda_backend *cb, cudaError_t e, const char *call, const char *file,
                    int line)
{
    if (e == cudaSuccess) return true;
    fail(cb, e == cudaErrorMemoryAllocation ? HY_ERR_OOM : HY_ERR_INTERNAL, call,
         cudaGetErrorString(e), file, line);
    return false;
}

static bool blas_ok(struct cuda_backend *cb, cublasStatus_t e, const char *call, const char *file,
                    int line)
{
    if (e == CUBLAS_STATUS_SUCCESS) return true;
    char what[64];
    snprintf(what, sizeof what, "cuBLAS status %d", (int)e);
    fail(cb, e == CUBLAS_STATUS_ALLOC_FAILED ? HY_ERR_OOM : HY_ERR_INTERNAL, call, what, file,
         line);
    return false;
}

#define CK(call)  cuda_ok(cb, (call), #call, __FILE__, __LINE__)
#define CKB(call) blas_ok(cb, (call), #call, __FILE__, __LINE__)

/* Waits for moe_token's CPU pass started last, if one runs (the calling
 * thread takes what is left of it), until its sum is complete: before
 * anything that waits on the device (the stream may wait for the pass),
 * that uses the CPU backend, or that frees the pinned buffers the pass
 * reads and writes. */
static void pass_join(struct cuda_backend *cb);

/* ---- op timing ---------------------------------------------------------- */

/* With HYPURA_CUDA_PROFILE set, every op records a pair of events on the
 * compute stream; the pairs are read back when the pool fills or the backend
 * syncs, summed per kind of op, and the table goes to stderr when the backend
 * is freed. The spans are GPU time (copies waited for included); the gaps
 * between them are the host's. HYPURA_CUDA_TIMELINE=FILE (which turns the
 * profile on) writes each span to FILE as "start end name" in us from an
 * event recorded on the compute stream once it is idle, and beside them the
 * host's MoE passes and its waits for a layer's routes ("host ..." lines, in
 * us from the host's clock when that event was seen done: a few us late).
 * Both start again at each read of the pairs (prof_rebase: the clocks drift
 * apart), a "rebase" line after each read's. Sort a read's lines by start. */
#define PROF_PAIRS 2048
#define PROF_KINDS 128

struct op_prof {
    cudaEvent_t ev[2 * PROF_PAIRS];
    int kind[PROF_PAIRS];
    int n;     /* pairs recorded and not yet read */
    int depth; /* pairs begun and not ended (a gemm's parts nest in it) */
    struct {
        char name[48];
        double ms, min_ms, max_ms;
        uint64_t calls;
    } k[PROF_KINDS];
    int n_kinds;
    double span_ms; /* first event to last, over all reads */
    FILE *tl;       /* HYPURA_CUDA_TIMELINE's file, or NULL */
    cudaEvent_t base;
    int64_t base_us; /* the host's clock when base was seen done */
};

/* A host interval [t0, t1] (timing_now_us) on the timeline, if one is kept. */
static void prof_host(struct cuda_backend *cb, const char *what, int64_t t0, int64_t t1)
{
    if (cb->prof && cb->prof->tl)
        fprintf(cb->prof->tl, "%.1f %.1f host %s\n", (double)(t0 - cb->prof->base_us),
                (double)(t1 - cb->prof->base_us), what);
}

/* The timeline's base event again, recorded on s once what is queued there
 * is done, and the host's clock then. The two clocks drift apart: from one
 * base alone, 2.3 s into a run on an H200, a host wait for the routes came
 * out ending 160 us after the GPU had begun the ops queued after it. The
 * spans of a read are taken from the base before it. */
static bool prof_rebase(struct op_prof *p, cudaStream_t s)
{
    if (!p->base) return false;
    if (cudaEventRecord(p->base, s) != cudaSuccess ||
        cudaEventSynchronize(p->base) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    p->base_us = timing_now_us();
    return true;
}

static void prof_read(struct cuda_backend *cb)
{
    struct op_prof *p = cb->prof;
    if (!p || !p->n) return;
    pass_join(cb);
    if (cudaEventSynchronize(p->ev[2 * p->n - 1]) == cudaSuccess) {
        for (int i = 0; i < p->n; i++) {
            float ms = 0;
            if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) != cudaSuccess) continue;
            __typeof__(p->k[0]) *k = &p->k[p->kind[i]];
            float a = 0;
            if (p->tl && cudaEventElapsedTime(&a, p->base, p->ev[2 * i]) == cudaSuccess)
                fprintf(p->tl, "%.1f %.1f %s\n", 1e3 * (double)a, 1e3 * (double)(a + ms), k->name);
            k->min_ms = k->ms == 0 || ms < k->min_ms ? ms : k->min_ms;
            k->max_ms = HY_MAX(k->max_ms, (double)ms);
            k->ms += ms;
        }
        float all = 0;
        if (cudaEventElapsedTime(&all, p->ev[0], p->ev[2 * p->n - 1]) == cudaSuccess)
            p->span_ms += all;
    }
    (void)cudaGetLastError();
    p->n = 0;
    if (p->tl && prof_rebase(p, cb->st)) fprintf(p->tl, "rebase\n");
}

/* Starts timing an op: the pair's index, or -1 when not profiling. */
static int prof_begin(struct cuda_backend *cb)
{
    struct op_prof *p = cb->prof;
    if (!p || cb->err) return -1;
    if (p->depth == 0 && p->n > PROF_PAIRS - 16) prof_read(cb);
    if (p->n == PROF_PAIRS) return -1;
    if (cudaEventRecord(p->ev[2 * p->n], cb->st) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    p->depth++;
    return p->n++;
}

/* Ends pair i as a row named kind (with the weight type unless UINT32_MAX,
 * and the weight's shape unless rows is 0). */
static void prof_end_shape(struct cuda_backend *cb, int i, const char *kind, uint32_t type,
                           int64_t rows, int64_t cols)
{
    struct op_prof *p = cb->prof;
    if (i < 0) return;
    p->depth--;
    char name[48];
    if (type == UINT32_MAX)
        snprintf(name, sizeof name, "%s", kind);
    else if (!rows)
        snprintf(name, sizeof name, "%s %s", kind, quant_type_name(type));
    else
        snprintf(name, sizeof name, "%s %s %" PRId64 "x%" PRId64, kind, quant_type_name(type), rows,
                 cols);
    int k = 0;
    while (k < p->n_kinds && strcmp(p->k[k].name, name) != 0) k++;
    if (k == p->n_kinds) {
        if (k == PROF_KINDS)
            k = PROF_KINDS - 1; /* the last row takes the overflow */
        else
            snprintf(p->k[p->n_kinds++].name, sizeof p->k[k].name, "%s", name);
    }
    p->k[k].calls++;
    p->kind[i] = k;
    if (cudaEventRecord(p->ev[2 * i + 1], cb->st) != cudaSuccess) (void)cudaGetLastError();
}

static void prof_end(struct cuda_backend *cb, int i, const char *kind, uint32_t type)
{
    prof_end_shape(cb, i, kind, type, 0, 0);
}

static int prof_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static void prof_report(struct cuda_backend *cb)
{
    struct op_prof *p = cb->prof;
    prof_read(cb);
    double total = 0;
    for (int k = 0; k < p->n_kinds; k++) total += p->k[k].ms;
    /* rows by time, largest first: sort (ms, index) pairs */
    double order[2 * PROF_KINDS];
    for (int k = 0; k < p->n_kinds; k++) {
        order[2 * k] = p->k[k].ms;
        order[2 * k + 1] = k;
    }
    qsort(order, (size_t)p->n_kinds, 2 * sizeof(double), prof_cmp);
    fprintf(stderr,
            "CUDA op times (GPU, ms; ops cover %.1f of %.1f ms between first and last event; "
            "rows \"(in gemm)\" are parts of gemm rows):\n",
            total, p->span_ms);
    fprintf(stderr, "  %-36s %8s %10s %9s %9s %9s %6s\n", "op", "calls", "total", "mean us",
            "min us", "max us", "%");
    for (int j = 0; j < p->n_kinds; j++) {
        const int k = (int)order[2 * j + 1];
        fprintf(stderr, "  %-36s %8" PRIu64 " %10.2f %9.1f %9.1f %9.1f %6.1f\n", p->k[k].name,
                p->k[k].calls, p->k[k].ms,
                1e3 * p->k[k].ms / (double)HY_MAX((uint64_t)1, p->k[k].calls), 1e3 * p->k[k].min_ms,
                1e3 * p->k[k].max_ms, total > 0 ? 100 * p->k[k].ms / total : 0);
    }
}

static void prof_free(struct cuda_backend *cb)
{
    if (!cb->prof) return;
    for (int i = 0; i < 2 * PROF_PAIRS; i++)
        if (cb->prof->ev[i]) cudaEventDestroy(cb->prof->ev[i]);
    if (cb->prof->base) cudaEventDestroy(cb->prof->base);
    if (cb->prof->tl) fclose(cb->prof->tl);
    free(cb->prof);
    cb->prof = NULL;
}

static void prof_init(struct cuda_backend *cb)
{
    const char *e = getenv("HYPURA_CUDA_PROFILE"), *tl = getenv("HYPURA_CUDA_TIMELINE");
    if ((!e || !*e || strcmp(e, "0") == 0) && (!tl || !*tl)) return;
    cb->prof = mem_xcalloc(1, sizeof *cb->prof);
    for (int i = 0; i < 2 * PROF_PAIRS; i++)
        if (cudaEventCreate(&cb->prof->ev[i]) != cudaSuccess) {
            (void)cudaGetLastError();
            prof_free(cb);
            return;
        }
    if (!tl || !*tl) return;
    struct op_prof *p = cb->prof;
    if (cudaEventCreate(&p->base) != cudaSuccess) p->base = NULL;
    if (!prof_rebase(p, cb->st)) {
        (void)cudaGetLastError();
        LOG_W("HYPURA_CUDA_TIMELINE: no base event; no timeline kept");
        return;
    }
    p->tl = fopen(tl, "w");
    if (!p->tl) LOG_W("HYPURA_CUDA_TIMELINE: cannot open %s: %s", tl, strerror(errno));
}

/* Whether environment variable name holds a whole number (in *v); one that
 * is not a decimal number of 0 .. max (a sign, other characters, past max)
 * is warned of, naming it and what is taken instead (def). */
static bool env_whole(const char *name, uint64_t max, const char *def, uint64_t *v)
{
    const char *e = getenv(name);
    if (!e || !*e) return false;
    char *end = NULL;
    errno = 0;
    const unsigned long long n = e[0] >= '0' && e[0] <= '9' ? strtoull(e, &end, 10) : 0;
    if (!end || *end || errno == ERANGE || n > max) {
        LOG_W("%s=%s: not a whole number from 0 to %" PRIu64 "; using %s", name, e, max, def);
        return false;
    }
    *v = (uint64_t)n;
    return true;
}

/* The whole number in environment variable name, def where it is unset,
 * empty or not a whole number of 0 .. max (warned of, as env_whole). */
static uint64_t env_count(const char *name, uint64_t def, uint64_t max)
{
    char d[24];
    snprintf(d, sizeof d, "%" PRIu64, def);
    uint64_t v;
    return env_whole(name, max, d, &v) ? v : def;
}

/* HYPURA_CUDA_TRACE=FILE: the instrumented kernels record their CTAs
 * (cuda_trace.cuh), HYPURA_CUDA_TRACE_SKIP records skipped and up to
 * HYPURA_CUDA_TRACE_CAP (default 2^18) kept; kt_write puts them in FILE
 * (struct cuk_trace_rec's bytes) when the backend is freed. */
static void kt_init(struct cuda_backend *cb)
{
    const char *path = getenv("HYPURA_CUDA_TRACE");
    if (!path || !*path) return;
    struct cuk_trace t = {.skip = env_count("HYPURA_CUDA_TRACE_SKIP", 0, UINT64_MAX),
                          .cap = env_count("HYPURA_CUDA_TRACE_CAP", 1ull << 18, 1ull << 28)};
    if (cudaMalloc((void **)&t.rec, t.cap * sizeof *t.rec) != cudaSuccess ||
        cudaMalloc((void **)&t.n, sizeof *t.n) != cudaSuccess ||
        cudaMemset(t.n, 0, sizeof *t.n) != cudaSuccess || cuk_trace_set(&t) != cudaSuccess ||
        cuq_trace_set(&t) != cudaSuccess) {
        (void)cudaGetLastError();
        LOG_W("HYPURA_CUDA_TRACE: no device buffer; no trace kept");
        cudaFree(t.rec);
        cudaFree(t.n);
        return;
    }
    cb->kt = t;
    cb->kt_path = mem_xstrdup(path);
}

static void kt_write(struct cuda_backend *cb)
{
    if (!cb->kt.rec) return;
    unsigned long long n = 0;
    struct cuk_trace off = {0};
    cuk_trace_set(&off);
    cuq_trace_set(&off);
    if (cudaMemcpy(&n, cb->kt.n, sizeof n, cudaMemcpyDeviceToHost) == cudaSuccess) {
        n = n > cb->kt.skip ? n - cb->kt.skip : 0;
        if (n > cb->kt.cap) n = cb->kt.cap;
        struct cuk_trace_rec *r = mem_xmalloc(n * sizeof *r + 1);
        FILE *f = fopen(cb->kt_path, "wb");
        if (!f)
            LOG_W("HYPURA_CUDA_TRACE: cannot open %s: %s", cb->kt_path, strerror(errno));
        else if (cudaMemcpy(r, cb->kt.rec, n * sizeof *r, cudaMemcpyDeviceToHost) != cudaSuccess)
            LOG_W("HYPURA_CUDA_TRACE: the records did not come back; %s left empty", cb->kt_path);
        else if (fwrite(r, sizeof *r, n, f) != n)
            LOG_W("HYPURA_CUDA_TRACE: cannot write %s: %s", cb->kt_path, strerror(errno));
        if (f && fclose(f) != 0)
            LOG_W("HYPURA_CUDA_TRACE: cannot write %s: %s", cb->kt_path, strerror(errno));
        free(r);
    }
    cudaFree(cb->kt.rec);
    cudaFree(cb->kt.n);
    free(cb->kt_path);
}

/* ---- the deferred RMSNorm ------------------------------------------------ */

/* Launches the RMSNorm that p holds, if it holds one. */
static void norm_launch(struct cuda_backend *cb, struct pending_norm *p)
{
    if (!p->on) return;
    p->on = false;
    const struct cuq_norm *nm = &p->nm;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_rms_norm(nm->x, nm->w, nm->eps, p->n_tok, p->n, nm->y, cb->st, cb->pdl));
    prof_end(cb, pi, "rms_norm", UINT32_MAX);
}

/* Launches the two in-place RMSNorms pq and pk hold in one launch, or one
 * after the other where the 16-byte kernel does not take them. */
static void norm_pair_launch(struct cuda_backend *cb)
{
    const struct cuq_norm *a = &cb->pq.nm, *b = &cb->pk.nm;
    const int pi = prof_begin(cb);
    const cudaError_t e = cb->err ? cudaSuccess
                                  : cuk_rms_norm2(a->x, a->w, a->y, cb->pq.n_tok, b->x, b->w, b->y,
                                                  cb->pk.n_tok, a->eps, cb->pq.n, cb->st, cb->pdl);
    if (e != cudaErrorNotSupported) {
        cb->pq.on = cb->pk.on = false;
        CK(e);
        prof_end(cb, pi, "rms_norm pair", UINT32_MAX);
        return;
    }
    prof_end(cb, pi, "rms_norm pair not taken", UINT32_MAX); /* an empty span, counted */
    norm_launch(cb, &cb->pq);
    norm_launch(cb, &cb->pk);
}

/* Launches the pending RMSNorms, if any: every op but the product that folds
 * them (pn) and decode attention (pq and pk) calls this before it queues
 * anything (or reads device memory). */
static void norm_flush(struct cuda_backend *cb)
{
    if (cb->pk.on) norm_pair_launch(cb);
    norm_launch(cb, &cb->pq); /* (pq and pk, or pn, are pending) */
    norm_launch(cb, &cb->pn);
}

/* Whether p holds an in-place RMSNorm of n_rows rows of n at x. */
static bool norm_holds(const struct pending_norm *p, const float *x, int64_t n_rows, int64_t n)
{
    return p->on && p->nm.x == x && p->nm.y == x && p->n_tok == n_rows && p->n == n;
}

/* The backend of an op, counted (op_seq). Every op begins so or with
 * op_begin. */
static struct cuda_backend *op_mark(struct backend *be)
{
    struct cuda_backend *cb = cb_of(be);
    cb->op_seq++;
    return cb;
}

/* The backend of an op that neither folds nor defers a norm: the pending
 * one is launched first. Every op begins so but matmul and matmul_fused,
 * which may fold it (matvec_multi) and begin with op_mark. */
static struct cuda_backend *op_begin(struct backend *be)
{
    struct cuda_backend *cb = op_mark(be);
    norm_flush(cb);
    return cb;
}

/* Whether a product of n_tok rows of x (n_cols each) reads the pending
 * norm's output. */
static bool norm_pending_for(const struct cuda_backend *cb, const float *x, int64_t n_tok,
                             int64_t n_cols)
{
    return cb->pn.on && cb->pn.nm.y == x && cb->pn.n_tok == n_tok && cb->pn.n == n_cols;
}

/* ---- memory ------------------------------------------------------------- */

/* Device scratch of at least bytes (grown once, never per token: sizes are
 * bounded by the limits given to reserve). soft: a failed allocation only
 * answers false (the caller has another way), and new memory is zeroed. */
static bool grow_dev(struct cuda_backend *cb, void **p, size_t *have, size_t bytes, bool soft)
{
    if (*have >= bytes) return true;
    if (*p) {
        pass_join(cb);
        if (!CK(cudaStreamSynchronize(cb->st))) return false;
        cudaFree(*p);
        cb->dev_bytes -= *have;
        *p = NULL;
        *have = 0;
    }
    if (soft && cudaMalloc(p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        *p = NULL;
        return false;
    }
    if (!soft && !CK(cudaMalloc(p, bytes))) return false;
    *have = bytes;
    cb->dev_bytes += bytes;
    return !soft || CK(cudaMemsetAsync(*p, 0, bytes, cb->st));
}

static bool ensure_dev(struct cuda_backend *cb, void **p, size_t *have, size_t bytes)
{
    return grow_dev(cb, p, have, bytes, false);
}

/* n_rows rows of n floats between device and pinned host memory on stream s
 * (row strides ld_dst, ld_src). Up to ZERO_COPY_MAX bytes (a token's
 * activations) by a kernel that reads or writes the host memory itself
 * (cb->zero_copy): by the copy engines they queue behind the weight copies in
 * flight (a CPU expert's sum behind the copies of the GPU's experts). More
 * (a prompt's) by the copy engines, faster than the kernel's stores. */
#define ZERO_COPY_MAX ((int64_t)256 << 10)
static bool small_copy(struct cuda_backend *cb, float *dst, int64_t ld_dst, const float *src,
                       int64_t ld_src, int64_t n, int64_t n_rows, enum cudaMemcpyKind kind,
                       cudaStream_t s)
{
    if (cb->zero_copy && n * n_rows * (int64_t)sizeof(float) <= ZERO_COPY_MAX)
        return CK(cuk_copy_rows(dst, ld_dst, src, ld_src, n, n_rows, s));
    return CK(cudaMemcpy2DAsync(dst, (size_t)ld_dst * sizeof(float), src,
                                (size_t)ld_src * sizeof(float), (size_t)n * sizeof(float),
                                (size_t)n_rows, kind, s));
}

static bool ensure_host(struct cuda_backend *cb, void **p, size_t *have, size_t bytes)
{
    if (*have >= bytes) return true;
    if (*p) {
        pass_join(cb);
        if (!CK(cudaStreamSynchronize(cb->st)) || !CK(cudaStreamSynchronize(cb->dl))) return false;
        cudaFreeHost(*p);
        cb->base.scratch_bytes -= *have;
        *p = NULL;
        *have = 0;
    }
    if (!CK(cudaMallocHost(p, bytes))) return false;
    *have = bytes;
    cb->base.scratch_bytes += bytes;
    return true;
}

static void *cu_alloc(struct backend *be, size_t bytes)
{
    struct cuda_backend *cb = cb_of(be);
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky: clear it */
        return NULL;
    }
    if (cb->n_allocs == cb->cap_allocs) {
        cb->cap_allocs = cb->cap_allocs ? 2 * cb->cap_allocs : 64;
        cb->allocs = mem_xrealloc(cb->allocs, (size_t)cb->cap_allocs * sizeof *cb->allocs);
    }
    cb->allocs[cb->n_allocs++] = (struct dev_alloc){p, bytes};
    cb->dev_bytes += bytes;
    return p;
}

static void cu_dealloc(struct backend *be, void *buf)
{
    struct cuda_backend *cb = op_begin(be);
    if (!buf) return;
    for (int i = cb->n_allocs - 1; i >= 0; i--)
        if (cb->allocs[i].p == buf) {
            cb->dev_bytes -= cb->allocs[i].bytes;
            cb->allocs[i] = cb->allocs[--cb->n_allocs];
            break;
        }
    cudaFree(buf);
}

/* Whether p, bytes long, is the last head's output, with no op begun since. */
static bool head_output(const struct cuda_backend *cb, const void *p, size_t bytes)
{
    return cb->head_y == p && cb->head_seq == cb->op_seq &&
           bytes == (size_t)cb->head_rows * sizeof(float);
}

/* hy_free recorded on the compute stream after what is queued there, and
 * waited for unless a download waited for since was queued after it. */
static void hy_free_record(struct cuda_backend *cb)
{
    if (CK(cudaEventRecord(cb->hy_free, cb->st))) cb->hy_free_mark = ++cb->st_marks;
}

static bool hy_free_wait(struct cuda_backend *cb)
{
    return cb->hy_free_mark <= cb->st_seen || CK(cudaEventSynchronize(cb->hy_free));
}

static void cu_download(struct backend *be, const void *src, void *host_dst, size_t bytes)
{
    struct cuda_backend *cb = cb_of(be);
    /* the head's first rows, final before the rest: down while the rest computes */
    bool head = head_output(cb, src, bytes);
    if (head && !cb->head_r1) { /* the logits wanted here after all: split them again */
        cb->head_whole = false;
        head = false;
    }
    op_begin(be);
    pass_join(cb);
    if (cb->err || !bytes) return;
    const int pi = prof_begin(cb);
    bool queued;
    if (head) { /* the first part on dl, the rest on st, which then waits for dl */
        const size_t b1 = (size_t)cb->head_r1 * sizeof(float);
        queued = CK(cudaStreamWaitEvent(cb->dl, cb->head_ev, 0)) &&
                 CK(cudaMemcpyAsync(host_dst, src, b1, cudaMemcpyDeviceToHost, cb->dl)) &&
                 CK(cudaEventRecord(cb->head_dl, cb->dl)) &&
                 CK(cudaMemcpyAsync((char *)host_dst + b1, (const char *)src + b1, bytes - b1,
                                    cudaMemcpyDeviceToHost, cb->st)) &&
                 CK(cudaStreamWaitEvent(cb->st, cb->head_dl, 0));
    } else {
        queued = CK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cb->st));
    }
    if (queued) {
        prof_end(cb, pi, head ? "download (head split)" : "download", UINT32_MAX);
        CK(cudaStreamSynchronize(cb->st));
    }
}

/* Sends n floats of x down into mx on dl, after the ops queued so far on
 * st (mx_down: arrived). */
static bool mx_send(struct cuda_backend *cb, const float *x, int64_t n)
{
    return ensure_host(cb, (void **)&cb->mx, &cb->mx_bytes, (size_t)n * sizeof(float)) &&
           CK(cudaEventRecord(cb->x_ready, cb->st)) &&
           CK(cudaStreamWaitEvent(cb->dl, cb->x_ready, 0)) &&
           small_copy(cb, cb->mx, n, x, n, n, 1, cudaMemcpyDeviceToHost, cb->dl) &&
           CK(cudaEventRecord(cb->mx_down, cb->dl));
}

static void cu_download_start(struct backend *be, const void *src, void *host_dst, size_t bytes)
{
    struct cuda_backend *cb = op_begin(be);
    const float *xs = cb->mx_defer;
    const int64_t xn = cb->mx_defer_len;
    cb->mx_defer = NULL;
    cb->dl_dst = host_dst;
    cb->dl_len = 0;
    if (cb->err || !bytes || !ensure_host(cb, &cb->hd, &cb->hd_bytes, bytes)) return;
    const int pi = prof_begin(cb);
    /* a layer's routes, a few hundred bytes: by small_copy's kernel where it
     * may. On an H200 the GPU's time from a partial MoE layer's sum to the
     * next layer's routes in hand went from 55-56 to 50-53 us (the
     * qwen1.5-moe shape; Mixtral's 66-67 to 63). x for moe_token, where
     * moe_prepare noted it, in the same kernel (or on its own way first) */
    const int64_t n = (int64_t)(bytes / sizeof(float));
    const bool with_x =
        xs && !(bytes % sizeof(float)) && cb->zero_copy &&
        (n + xn) * (int64_t)sizeof(float) <= ZERO_COPY_MAX &&
        ensure_host(cb, (void **)&cb->mx, &cb->mx_bytes, (size_t)xn * sizeof(float));
    if (xs && !with_x && mx_send(cb, xs, xn)) {
        cb->mx_src = xs;
        cb->mx_len = xn;
    }
    if (!(bytes % sizeof(float)
              ? CK(cudaMemcpyAsync(cb->hd, src, bytes, cudaMemcpyDeviceToHost, cb->st))
          : with_x ? CK(cuk_copy_two(cb->hd, src, n, cb->mx, xs, xn, cb->st))
                   : small_copy(cb, cb->hd, n, src, n, n, 1, cudaMemcpyDeviceToHost, cb->st)) ||
        !CK(cudaEventRecord(cb->dl_done, cb->st)) ||
        (cb->tr_dl && !CK(cudaEventRecord(cb->tr_dl, cb->st))))
        return;
    cb->dl_mark = ++cb->st_marks;
    if (with_x) {
        cb->mx_src = xs;
        cb->mx_len = xn;
        cb->mx_mark = cb->dl_mark;
    }
    prof_end(cb, pi, "download (started)", UINT32_MAX);
    cb->dl_len = bytes;
}

static enum hy_status cu_download_wait(struct backend *be)
{
    struct cuda_backend *cb = cb_of(be);
    const int64_t t0 = timing_now_us();
    pass_join(cb);
    if (!cb->err && cb->dl_len && CK(cudaEventSynchronize(cb->dl_done))) {
        cb->st_seen = HY_MAX(cb->st_seen, cb->dl_mark);
        memcpy(cb->dl_dst, cb->hd, cb->dl_len);
        if (cb->trace) {
            cb->tr_dl_us = timing_now_us();
            float ms = -1e-3f;
            if (cb->tr_t2 && cb->tr_dl &&
                (cudaEventSynchronize(cb->tr_dl) != cudaSuccess ||
                 cudaEventElapsedTime(&ms, cb->mg_t2, cb->tr_dl) != cudaSuccess))
                ms = -1e-3f;
            cb->tr_t2 = false;
            cb->tr_chain_us = (int64_t)(ms * 1e3f);
        }
    }
    cb->dl_len = 0;
    cb->stats.sync_calls++;
    const int64_t t1 = timing_now_us();
    cb->stats.sync_us += t1 - t0;
    prof_host(cb, "wait for the routes", t0, t1);
    if (cb->err) return err_set(cb->err, "%s", cb->err_msg);
    return HY_OK;
}

static void cu_upload(struct backend *be, void *dst, const void *host_src, size_t bytes)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    pass_join(cb);
    if (cb->err || !bytes) return;
    /* from pageable memory the call returns once the source is staged */
    CK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cb->st));
}

static enum hy_status cu_sync(struct backend *be)
{
    struct cuda_backend *cb = op_begin(be);
    const int64_t t0 = timing_now_us();
    pass_join(cb);
    if (!cb->err) CK(cudaStreamSynchronize(cb->st));
    cb->stats.sync_calls++;
    cb->stats.sync_us += timing_now_us() - t0;
    if (cb->err) return err_set(cb->err, "%s", cb->err_msg);
    return HY_OK;
}

static enum hy_status cu_host_register(struct backend *be, void *p, size_t bytes)
{
    (void)be;
    if (!p || !bytes) return HY_OK;
    cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        char sz[32];
        return err_set(HY_ERR_OOM, "CUDA: cudaHostRegister of %s failed: %s",
                       sizes_format(bytes, sz, sizeof sz), cudaGetErrorString(e));
    }
    return HY_OK;
}

static void cu_host_unregister(struct backend *be, void *p)
{
    (void)be;
    if (p && cudaHostUnregister(p) != cudaSuccess) (void)cudaGetLastError();
}

static bool cu_supports_type(uint32_t type)
{
    return cuq_supports(type);
}

/* cuBLAS sets itself up (tens of milliseconds) and loads its kernels at its
 * first products: one small product of the batch shape here, on the scratch
 * (its values do not matter), takes that out of the first prompt. */
static void warm_up(struct cuda_backend *cb)
{
    const struct backend_limits *l = &cb->lim;
    if (cb->err || l->max_batch <= CUQ_MATVEC_MAX_TOK || l->max_cols <= 0) return;
    const int rows = 64;
    const size_t a_bytes = (size_t)rows * (size_t)l->max_cols * sizeof(uint16_t);
    const size_t c_bytes = (size_t)rows * (size_t)l->max_batch * sizeof(float);
    if (a_bytes + c_bytes > cb->w16_bytes) return;
    CKB(blas_fn.gemm_ex(
        cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, (int)l->max_batch, (int)l->max_cols, &cb->gk->one,
        cb->w16, CUDA_R_16F, (int)l->max_cols, cb->x16, CUDA_R_16F, (int)l->max_cols, &cb->gk->zero,
        (uint8_t *)cb->w16 + a_bytes, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static enum hy_status cu_reserve(struct backend *be, const struct backend_limits *lim)
{
    struct cuda_backend *cb = op_begin(be);
    pass_join(cb);
    _Static_assert(CUK_ATT_MAX_DIM == CUDA_ATT_MAX_HEAD_DIM, "one limit");
    enum hy_status st = cuda_check_head_dim(lim->max_head_dim, "run without the GPU (--gpu off)");
    if (st) return st;
    if ((st = backend_reserve(cb->cpu, lim))) return st;
    struct backend_limits l = cb->lim;
    l.max_batch = HY_MAX(l.max_batch, lim->max_batch);
    l.max_ctx = HY_MAX(l.max_ctx, lim->max_ctx);
    l.max_head_dim = HY_MAX(l.max_head_dim, lim->max_head_dim);
    l.max_cols = HY_MAX(l.max_cols, lim->max_cols);
    l.max_heads = HY_MAX(l.max_heads, lim->max_heads);
    l.max_top = HY_MAX(l.max_top, lim->max_top);
    l.moe_k = HY_MAX(l.moe_k, lim->moe_k);
    l.moe_ff = HY_MAX(l.moe_ff, lim->moe_ff);
    l.moe_embd = HY_MAX(l.moe_embd, lim->moe_embd);
    /* the warm-up product has the batch shape: again only when that grew
     * (every sequence's forward reserves the same limits) */
    const bool grown = l.max_batch != cb->lim.max_batch || l.max_cols != cb->lim.max_cols;
    cb->lim = l;
    const size_t x16 = (size_t)(cuda_gemm_width(l.max_batch) * l.max_cols) * sizeof(uint16_t);
    if (!ensure_dev(cb, (void **)&cb->x16, &cb->x16_bytes, x16)) return cu_sync(be);
    size_t have = cb->w16 ? cb->w16_bytes : 0;
    if (!ensure_dev(cb, (void **)&cb->w16, &have, cb->w16_bytes)) return cu_sync(be);
    const size_t hx = (size_t)(l.max_batch * l.max_cols) * sizeof(float);
    if (!ensure_host(cb, (void **)&cb->hx, &cb->hx_bytes, hx)) return cu_sync(be);
    /* the small buffers of later calls, held from here (and counted by the
     * plan, cuda_backend_reserved_bytes) rather than grown past the budget */
    _Static_assert(CUK_ATT_MAX_SPLIT == CUDA_ATT_MAX_SPLIT, "one split limit");
    const struct cuda_small_bytes sb = cuda_small_bytes_of(&l);
    if (!ensure_dev(cb, (void **)&cb->ids, &cb->ids_bytes, sb.ids) ||
        !ensure_dev(cb, &cb->ar, &cb->ar_bytes, sb.rows) ||
        !ensure_dev(cb, (void **)&cb->ff, &cb->ff_bytes, sb.ff) ||
        !ensure_dev(cb, (void **)&cb->rinv, &cb->rinv_bytes, sb.inv) ||
        !ensure_dev(cb, (void **)&cb->part, &cb->part_bytes, sb.part))
        return cu_sync(be);
    _Static_assert(CUK_TOP_K_MAX == BACKEND_TOP_K_MAX, "one top_k limit");
    HY_ASSERT(!l.max_top || cuk_top_k_scratch(l.max_top, BACKEND_TOP_K_MAX) +
                                    BACKEND_TOP_K_MAX * sizeof *cb->topk_host ==
                                sb.top);
    if (sb.top && (!ensure_dev(cb, (void **)&cb->topk_dev, &cb->topk_dev_bytes, sb.top) ||
                   !ensure_host(cb, (void **)&cb->topk_host, &cb->topk_host_bytes,
                                BACKEND_TOP_K_MAX * sizeof *cb->topk_host)))
        return cu_sync(be);
    /* moe_batch's buffers at the largest batch, held from here (the plan
     * counts them, cuda_backend_reserved_bytes) rather than grown by the
     * first prompt past the budget */
    uint64_t mx, mt;
    cuda_moe_batch_bytes(&l, &mx, &mt);
    _Static_assert(CUDA_MOE_GROUP_TOK == CUQ_GROUP_TOK, "one chunk size");
    _Static_assert(CUDA_MOE_CHUNK_BYTES >= sizeof(struct cuq_chunk), "a chunk's bytes");
    if (mx && cb->mb_x_bytes < mx && /* zeroed, as moe_batch's own growth leaves it */
        (!ensure_dev(cb, (void **)&cb->mb_x, &cb->mb_x_bytes, (size_t)mx) ||
         !CK(cudaMemsetAsync(cb->mb_x, 0, cb->mb_x_bytes, cb->st))))
        return cu_sync(be);
    if (mt && (!ensure_dev(cb, &cb->mb_dev, &cb->mb_dev_bytes, (size_t)mt) ||
               !ensure_host(cb, &cb->mb_host, &cb->mb_host_bytes, (size_t)mt)))
        return cu_sync(be);
    if (grown) {
        /* the widths and the padded tiles follow the batch: warm again */
        cb->n_warmed = 0;
        warm_up(cb);
    }
    return cu_sync(be);
}

/* ---- prompt GEMMs ------------------------------------------------------- */

/* How a weight enters its GEMM: F32 as it is (x in binary32), F16 as it is,
 * or dequantized to binary16 in w16 a tile of rows at a time. */
enum gemm_kind { GEMM_F32, GEMM_F16, GEMM_DEQUANT };

static enum gemm_kind gemm_kind_of(uint32_t type)
{
    return type == HY_TYPE_F32 ? GEMM_F32 : type == HY_TYPE_F16 ? GEMM_F16 : GEMM_DEQUANT;
}

/* Rows of a tile that fit n: a multiple of 128 where n allows (the outputs'
 * row stride is the tile's rows in the padded layout: cuBLAS's fast kernels
 * want it aligned). */
static int64_t gemm_tile_rows(int64_t n)
{
    return n >= 128 ? n / 128 * 128 : n;
}

/* The padded layout: a product narrower than its GEMM reads x from a padded
 * copy (x16, or for F32 the head of w16) and writes [width][rows] outputs
 * into w16 (after the dequantized tile), a tile of rows at a time; the
 * outputs of the real tokens are copied out. The tile's rows do not depend
 * on the width, so every width of a weight has the same few shapes. Returns
 * 0 when the scratch cannot hold one row. */
static int64_t padded_tile_rows(const struct cuda_backend *cb, enum gemm_kind kind, int64_t n_cols,
                                size_t *c_off)
{
    const size_t wmax = (size_t)cuda_gemm_width(cb->lim.max_batch);
    size_t head = 0, per_row = wmax * sizeof(float);
    if (kind == GEMM_DEQUANT) per_row += (size_t)n_cols * sizeof(uint16_t);
    if (kind == GEMM_F32) head = wmax * (size_t)n_cols * sizeof(float);
    if (head + per_row > cb->w16_bytes) return 0;
    const int64_t rows = gemm_tile_rows((int64_t)((cb->w16_bytes - head) / per_row));
    /* outputs after the dequantized tile (or x), 256-byte aligned */
    const size_t a = kind == GEMM_DEQUANT ? (size_t)rows * (size_t)n_cols * sizeof(uint16_t) : head;
    *c_off = (a + 255) & ~(size_t)255;
    if (*c_off + (size_t)rows * wmax * sizeof(float) <= cb->w16_bytes) return rows;
    return rows > 128 ? rows - 128 : rows - 1;
}

/* The row stride of a weight's A operand, in elements: a dequantized tile's
 * rows are n_cols binary16 values; a weight used as it is keeps its rows. */
static int64_t gemm_lda(enum gemm_kind kind, size_t row_bytes, int64_t n_cols)
{
    return kind == GEMM_DEQUANT ? n_cols : (int64_t)(row_bytes / (kind == GEMM_F32 ? 4 : 2));
}

/* C[t][r] = sum_k A[r][k] B[t][k] for m rows, width n_w: A binary16 (or F32)
 * with row stride k, B likewise, C binary32 with row stride ldc. B in
 * binary16 is x16, its products multiplied by x16's scale. */
static void blas_gemm(struct cuda_backend *cb, enum gemm_kind kind, int64_t m, int64_t n_w,
                      int64_t k, const void *a, int64_t lda, const void *b, float *c, int64_t ldc)
{
    const int pi = prof_begin(cb);
    if (kind == GEMM_F32)
        CKB(blas_fn.sgemm(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n_w, (int)k,
                          &cb->gk->one, (const float *)a, (int)lda, (const float *)b, (int)k,
                          &cb->gk->zero, c, (int)ldc));
    else
        CKB(blas_fn.gemm_ex(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n_w, (int)k,
                            &cb->gk->x16.alpha, a, CUDA_R_16F, (int)lda, b, CUDA_R_16F, (int)k,
                            &cb->gk->zero, c, CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    prof_end(cb, pi, "(in gemm) cublas", UINT32_MAX);
}

/* The first prompt product of a weight shape runs its padded layout's GEMMs
 * at every width up to the batch's (on scratch; the values do not matter),
 * so that cuBLAS has chosen their kernels before a later batch of another
 * width needs them: the engine's warm-up pass (one full batch) shows every
 * shape once, the experts of an MoE layer sharing theirs. */
static void warm_gemms(struct cuda_backend *cb, enum gemm_kind kind, const uint8_t *w,
                       size_t row_bytes, int64_t n_rows, int64_t n_cols)
{
    for (int i = 0; i < cb->n_warmed; i++)
        if (cb->warmed[i].kind == (int)kind && cb->warmed[i].n_rows == n_rows &&
            cb->warmed[i].n_cols == n_cols)
            return;
    if (cb->n_warmed == GEMM_SHAPES_MAX) return;
    cb->warmed[cb->n_warmed++] = (struct gemm_shape){(int)kind, n_rows, n_cols};
    size_t c_off;
    const int64_t tile = padded_tile_rows(cb, kind, n_cols, &c_off);
    if (tile < 1) return;
    const int64_t shapes[2] = {HY_MIN(tile, n_rows), n_rows > tile ? n_rows % tile : 0};
    const void *a = kind == GEMM_DEQUANT ? (const void *)cb->w16 : (const void *)w;
    const int64_t lda = gemm_lda(kind, row_bytes, n_cols);
    const void *b = kind == GEMM_F32 ? (const void *)cb->w16 : (const void *)cb->x16;
    float *c = (float *)((uint8_t *)cb->w16 + c_off);
    for (int64_t n_w = GEMM_COL_STEP; n_w <= cuda_gemm_width(cb->lim.max_batch);
         n_w += GEMM_COL_STEP)
        for (int s = 0; s < 2 && !cb->err; s++)
            if (shapes[s] > 0) blas_gemm(cb, kind, shapes[s], n_w, n_cols, a, lda, b, c, shapes[s]);
}

/* ---- weight products ---------------------------------------------------- */

/* Whether the next one-token product may launch early (during the previous
 * kernel's tail): not while it reads held VRAM cache entries, whose copies
 * are waited for on the stream. */
static bool products_early(const struct cuda_backend *cb)
{
    return cb->pdl && !cb->wc_held;
}

/* y[t][r0 + r] (row stride ldy) for the n_rows rows of a weight in device
 * memory at w. x16_ready: x has already been converted to binary16 in
 * cb->x16 by this call (prompt batches only). */
static void gpu_matmul(struct cuda_backend *cb, uint32_t type, const uint8_t *w, size_t row_bytes,
                       int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tok, float *y,
                       int64_t ldy, bool *x16_ready, bool in_place)
{
    if (cb->err || n_rows <= 0) return;
    if (n_tok <= CUQ_MATVEC_MAX_TOK) {
        CK(cuq_matvec(type, w, row_bytes, n_rows, n_cols, x, n_tok, y, ldy, cb->st,
                      in_place && products_early(cb)));
        return;
    }
    const enum gemm_kind kind = gemm_kind_of(type);
    const int64_t n_w = cuda_gemm_width(n_tok);
    size_t c_off = 0;
    const int64_t ptile = padded_tile_rows(cb, kind, n_cols, &c_off);
    /* The batch's own layout (outputs straight into y) where its width is
     * the GEMM's and either y's rows are the tile's or it is the full batch
     * (the engine's warm-up pass has shown it); else the padded layout. */
    const bool direct =
        ptile < 1 || n_w > cuda_gemm_width(cb->lim.max_batch) ||
        (n_tok == n_w && (n_w == cuda_gemm_width(cb->lim.max_batch) ||
                          (kind != GEMM_DEQUANT && ldy == n_rows && n_rows <= ptile)));
    if (ptile >= 1) warm_gemms(cb, kind, w, row_bytes, n_rows, n_cols);
    /* x: F32 as it is, or padded with zeros at the head of w16; else in x16 */
    const void *b = cb->x16;
    if (kind == GEMM_F32) {
        b = direct ? (const void *)x : (const void *)cb->w16;
        if (!direct &&
            (!CK(cudaMemcpyAsync(cb->w16, x, (size_t)(n_tok * n_cols) * sizeof(float),
                                 cudaMemcpyDeviceToDevice, cb->st)) ||
             !CK(cudaMemsetAsync((float *)cb->w16 + n_tok * n_cols, 0,
                                 (size_t)((n_w - n_tok) * n_cols) * sizeof(float), cb->st))))
            return;
    } else if (!*x16_ready) {
        if (!CK(cuk_f32_to_f16(x, n_tok * n_cols, cb->x16, &cb->gk->x16, cb->st))) return;
        if (n_w > n_tok && !CK(cudaMemsetAsync(cb->x16 + n_tok * n_cols, 0,
                                               (size_t)((n_w - n_tok) * n_cols) * 2, cb->st)))
            return;
        *x16_ready = true;
    }
    /* a weight as it is: one GEMM; dequantized: tiles that fill w16 */
    const int64_t tile =
        !direct ? ptile
        : kind == GEMM_DEQUANT
            ? HY_MAX((int64_t)1, gemm_tile_rows((int64_t)(cb->w16_bytes / (size_t)(n_cols * 2))))
            : n_rows;
    const int64_t lda = gemm_lda(kind, row_bytes, n_cols);
    for (int64_t r0 = 0; r0 < n_rows && !cb->err; r0 += tile) {
        const int64_t nr = HY_MIN(tile, n_rows - r0);
        const void *a = w + (size_t)r0 * row_bytes;
        if (kind == GEMM_DEQUANT) {
            const int pi = prof_begin(cb);
            if (!CK(cuq_dequant_f16(type, a, row_bytes, nr, n_cols, cb->w16, cb->st))) return;
            prof_end(cb, pi, "(in gemm) dequant", type);
            a = cb->w16;
        }
        if (direct) {
            blas_gemm(cb, kind, nr, n_tok, n_cols, a, lda, b, y + r0, ldy);
            continue;
        }
        float *c = (float *)((uint8_t *)cb->w16 + c_off);
        blas_gemm(cb, kind, nr, n_w, n_cols, a, lda, b, c, nr);
        CK(cudaMemcpy2DAsync(y + r0, (size_t)ldy * 4, c, (size_t)nr * 4, (size_t)nr * 4,
                             (size_t)n_tok, cudaMemcpyDeviceToDevice, cb->st));
    }
}

/* Rows [a, end) of host weight w copied over PCIe in pieces of whole rows
 * and computed on the GPU as each piece lands, queued a piece at a time
 * (copy_piece): host_matmul queues some while the activations come down and
 * the rest while the CPU computes its rows. last: the slot of the last copy
 * (the caller waits for it before the host memory may change), -1 while
 * none. */
struct copy_run {
    struct cuda_backend *cb;
    const struct backend_weight *w;
    const float *x;
    int64_t n_tok;
    float *y;
    int64_t a, end, per;
    bool x16_ready;
    bool timed; /* cp_t1 recorded after the last copy */
    int last;
};

static void copy_start(struct copy_run *r, struct cuda_backend *cb, const struct backend_weight *w,
                       int64_t r0, int64_t n, const float *x, int64_t n_tok, float *y, bool timed)
{
    *r = (struct copy_run){cb, w, x, n_tok, y, r0, r0 + HY_MAX((int64_t)0, n), 0, false, timed, -1};
    if (n <= 0 || cb->err) return;
    if (w->row_bytes > cb->slot_bytes) {
        fail(cb, HY_ERR_INTERNAL, "copy_matmul", "a weight row is larger than a copy slot",
             __FILE__, __LINE__);
        r->end = r0;
        return;
    }
    r->per = (int64_t)(cb->slot_bytes / w->row_bytes);
    cb->stats.host_copy_bytes += (uint64_t)n * w->row_bytes;
}

/* Queues the next piece; false when none is left (or on an error). */
static bool copy_piece(struct copy_run *r)
{
    struct cuda_backend *cb = r->cb;
    const struct backend_weight *w = r->w;
    if (r->a >= r->end || cb->err) return false;
    const int64_t rows = HY_MIN(r->per, r->end - r->a);
    const size_t bytes = (size_t)rows * w->row_bytes;
    const int s = cb->next_slot;
    cb->next_slot = (s + 1) % COPY_SLOTS;
    const int64_t a = r->a;
    r->a += rows;
    if (!CK(cudaStreamWaitEvent(cb->cp, cb->freed[s], 0)) ||
        !CK(cudaMemcpyAsync(cb->slot[s], (const uint8_t *)w->data + (size_t)a * w->row_bytes, bytes,
                            cudaMemcpyHostToDevice, cb->cp)) ||
        !CK(cudaEventRecord(cb->copied[s], cb->cp)))
        return false;
    r->last = s;
    if (!CK(cudaStreamWaitEvent(cb->st, cb->copied[s], 0))) return false;
    gpu_matmul(cb, w->type, cb->slot[s], w->row_bytes, rows, w->n_cols, r->x, r->n_tok, r->y + a,
               w->n_rows, &r->x16_ready, false);
    if (!CK(cudaEventRecord(cb->freed[s], cb->st))) return false;
    if (r->a >= r->end && r->timed) CK(cudaEventRecord(cb->cp_t1, cb->cp));
    return r->a < r->end;
}

/* Queues every piece left (a threadpool caller's first task: ctx is the run). */
static void copy_rest(void *ctx)
{
    while (copy_piece(ctx)) {
    }
}

/* A rate refined by an observation: the rates measured at start are
 * estimates (the CPU's on a matrix that may sit in its caches, both without
 * the other running); what the products of a split call show, each side
 * while the other runs, moves them. */
#define RATE_MIN_BYTES ((uint64_t)4 << 20) /* smaller calls time too coarsely */
static void rate_update(double *rate, double bytes, double seconds)
{
    if (!(seconds > 0) || bytes < (double)RATE_MIN_BYTES) return;
    const double seen = bytes / seconds;
    *rate = *rate > 0 ? 0.75 * *rate + 0.25 * seen : seen;
}

/* Whether the events of a call timed on the device (*pending until read),
 * the last of them `last`, are done and readable: then *pending is
 * cleared. false while they run, or on an error (recorded). */
static bool timed_done(struct cuda_backend *cb, bool *pending, cudaEvent_t last)
{
    if (!*pending) return false;
    const cudaError_t q = cudaEventQuery(last);
    if (q == cudaErrorNotReady) return false;
    *pending = false;
    return CK(q);
}

/* Rows [0, n) of host weight w computed by the CPU where they lie, from the
 * activations already downloaded to hx; the rows go up into y. The calling
 * thread queues the copies left in cr first, while the workers start (n > 0:
 * it returns before that only on an error, when nothing more is queued). */
static void cpu_rows(struct cuda_backend *cb, const struct backend_weight *w, int64_t n,
                     const float *hx, int64_t n_tok, float *y, struct copy_run *cr)
{
    if (n <= 0 || cb->err) return;
    if (!ensure_host(cb, (void **)&cb->hy, &cb->hy_bytes, (size_t)(n * n_tok) * sizeof(float)))
        return;
    /* the last upload from hy must have left before hy is rewritten */
    if (!hy_free_wait(cb)) return;
    struct backend_weight part = *w;
    part.n_rows = n;
    const int64_t t0 = timing_now_us();
    cpu_backend_matmul_after(cb->cpu, &part, hx, n_tok, cb->hy, copy_rest, cr);
    if (n_tok <= CPU_BATCH_TOKENS) {
        const double bytes = (double)n * (double)w->row_bytes;
        const double sec = (double)(timing_now_us() - t0) * 1e-6;
        rate_update(&cb->rates.cpu_matvec_bytes_per_s, bytes, sec);
        if (w->type < HY_TYPE_COUNT) rate_update(&cb->cpu_type_rate[w->type], bytes, sec);
    }
    small_copy(cb, y, w->n_rows, cb->hy, n, n, n_tok, cudaMemcpyHostToDevice, cb->st);
    hy_free_record(cb);
    cb->stats.host_cpu_bytes += (uint64_t)n * w->row_bytes;
}

/* Rows the CPU takes of a host weight (none while its threads run a
 * moe_token pass): by policy, or so that the CPU and the
 * PCIe copy finish together (both run at once). */
static int64_t cpu_share(const struct cuda_backend *cb, const struct backend_weight *w,
                         int64_t n_tok)
{
    if (cb->cpu_busy || cb->policy == CUDA_HOST_COPY) return 0;
    if (cb->policy == CUDA_HOST_CPU) return w->n_rows;
    const double typed = w->type < HY_TYPE_COUNT ? cb->cpu_type_rate[w->type] : 0.0;
    const double cpu = (typed > 0 ? typed : cb->rates.cpu_matvec_bytes_per_s) /
                       (double)HY_MAX((int64_t)1, n_tok / CPU_BATCH_TOKENS);
    const double pcie = cb->rates.pcie_h2d_bytes_per_s;
    if (!(cpu > 0)) return 0;
    if (!(pcie > 0)) return w->n_rows;
    int64_t r = (int64_t)llround((double)w->n_rows * cpu / (cpu + pcie));
    /* small shares are not worth the round trip of the activations */
    if (r < w->n_rows / 16) r = 0;
    if (w->n_rows - r < w->n_rows / 16) r = w->n_rows;
    return r;
}

/* key's chain in the entries' index */
static int *wc_chain(const struct cuda_backend *cb, uint64_t key)
{
    return &cb->wc_head[(key * 0x9E3779B97F4A7C15ull) >> 32 & (cb->wc_hash_n - 1)];
}

/* Entry e into the index under its key (not 0), or out of it. */
static void wc_index_add(struct cuda_backend *cb, int e)
{
    int *h = wc_chain(cb, cb->wce[e].key);
    cb->wc_next[e] = *h;
    *h = e;
}

static void wc_index_del(struct cuda_backend *cb, int e)
{
    for (int *p = wc_chain(cb, cb->wce[e].key); *p >= 0; p = &cb->wc_next[*p])
        if (*p == e) {
            *p = cb->wc_next[e];
            return;
        }
}

/* Cuts the VRAM cache into entries able to hold a weight of bytes: of the
 * sizes given (cuda_backend_weight_cache_sizes) in the proportion given, as
 * many whole sets as fit, where bytes is at most the largest of them; else
 * all of bytes (rounded up). Every entry is emptied; 0: none fits (nothing
 * changed). */
static int wc_cut(struct cuda_backend *cb, size_t bytes)
{
    int n = 0;
    uint64_t set = 0, top = 0, per_set = 0; /* a set's bytes, its largest entry, its entries */
    for (int c = 0; c < cb->wc_n_size; c++) {
        set += cb->wc_size[c] * (uint64_t)cb->wc_count[c];
        top = HY_MAX(top, cb->wc_size[c]);
        per_set += (uint64_t)cb->wc_count[c];
    }
    const uint64_t sets = set ? cb->wc_bytes / set : 0;
    if (sets > 0 && bytes <= top && sets * per_set <= (uint64_t)cb->wc_cap) {
        uint64_t off = 0;
        for (int c = 0; c < cb->wc_n_size; c++)
            for (uint64_t i = 0; i < sets * (uint64_t)cb->wc_count[c]; i++, n++) {
                cb->wce[n].off = off;
                cb->wce[n].size = cb->wc_size[c];
                off += cb->wc_size[c];
            }
        /* what is left of a set: entries of the largest size */
        for (; off + top <= cb->wc_bytes && n < cb->wc_cap; n++) {
            cb->wce[n].off = off;
            cb->wce[n].size = top;
            off += top;
        }
        cb->wc_entry_bytes = top;
    } else {
        const uint64_t eb = base_align_up(bytes, 256);
        n = (int)HY_MIN((uint64_t)cb->wc_cap, cb->wc_bytes / eb);
        if (n == 0) return 0; /* larger than the cache: it stays as it is */
        for (int i = 0; i < n; i++) {
            cb->wce[i].off = (uint64_t)i * eb;
            cb->wce[i].size = eb;
        }
        cb->wc_entry_bytes = eb;
    }
    for (int i = 0; i < cb->wc_cap; i++) {
        const struct wc_entry o = cb->wce[i];
        cb->wce[i] = (struct wc_entry){
            .off = o.off, .size = o.size, .read_ev = o.read_ev, .fill_ev = o.fill_ev};
    }
    for (uint64_t i = 0; i < cb->wc_hash_n; i++) cb->wc_head[i] = -1;
    cb->wc_n = n;
    /* the new entries overlap the old ones: the next fill waits for
     * everything queued before it */
    cb->wc_fence = true;
    return n;
}

/* Key's filled entry of the VRAM cache, -1 where none (its recency untouched). */
static int wc_find(const struct cuda_backend *cb, uint64_t key)
{
    if (!cb->wc_cap || !key) return -1;
    for (int i = *wc_chain(cb, key); i >= 0; i = cb->wc_next[i])
        if (cb->wce[i].key == key && cb->wce[i].filled) return i;
    return -1;
}

/* A use of keyed weight key now (moe_token's calls are the clock; before
 * the first one every use is at 0, so that values tie and recency decides). */
static void wc_touch(struct cuda_backend *cb, uint64_t key)
{
    if (cb->wc_hist && !cb->wc_cold) expert_history_touch(cb->wc_hist, key, cb->moe_seq);
}

/* The value that orders entry i's eviction (the least goes first): -INFINITY
 * where free or cold (their ticks order them), else its key's value in
 * wc_hist, or 0 without one (recency alone). */
static double wc_value(const struct cuda_backend *cb, int i)
{
    const struct wc_entry *en = &cb->wce[i];
    if (!en->key || en->tick < WC_WARM) return -INFINITY;
    return cb->wc_hist ? expert_history_value(cb->wc_hist, en->key, cb->moe_seq) : 0;
}

/* The VRAM cache entry of key: hit (filled) or a slot to fill, of the
 * smallest entries that hold bytes the one of least value (wc_value), the
 * least recent of equal ones; -1: not cacheable. */
static int wc_lookup(struct cuda_backend *cb, uint64_t key, size_t bytes, bool *hit)
{
    *hit = false;
    if (!cb->wc_cap || !key) return -1;
    /* entries are cut at the first keyed weight, and again (emptied) for a
     * larger one than they hold */
    if (bytes > cb->wc_entry_bytes && (cb->wc_held || wc_cut(cb, bytes) == 0)) return -1;
    const int f = wc_find(cb, key);
    if (f >= 0) {
        cb->wce[f].tick = WC_WARM | ++cb->wc_tick;
        *hit = true;
        return f;
    }
    uint64_t fit = UINT64_MAX;
    for (int i = 0; i < cb->wc_n; i++)
        if (cb->wce[i].size >= bytes && cb->wce[i].size < fit) fit = cb->wce[i].size;
    int victim = -1;
    double vv = 0;
    for (int i = 0; i < cb->wc_n; i++) {
        if (cb->wce[i].size != fit || cb->wce[i].held) continue;
        const double v = wc_value(cb, i);
        if (victim < 0 || v < vv || (v == vv && cb->wce[i].tick < cb->wce[victim].tick)) {
            victim = i;
            vv = v;
        }
    }
    if (victim < 0) return -1;
    if (cb->wce[victim].key) wc_index_del(cb, victim);
    cb->wce[victim].key = key;
    wc_index_add(cb, victim);
    cb->wce[victim].tick = cb->wc_cold ? ++cb->wc_tick : WC_WARM | ++cb->wc_tick;
    cb->wce[victim].filled = false;
    cb->wce[victim].pending = false;
    return victim;
}

/* Holds the copy stream until entry e's bytes are no longer read by the
 * kernels queued before (every queued kernel after a re-cut). */
static bool wc_await_readers(struct cuda_backend *cb, int e)
{
    if (cb->wc_fence) {
        if (!CK(cudaEventRecord(cb->st_mark, cb->st)) ||
            !CK(cudaStreamWaitEvent(cb->cp, cb->st_mark, 0)))
            return false;
        cb->wc_fence = false;
        return true;
    }
    return !cb->wce[e].read_ev || CK(cudaStreamWaitEvent(cb->cp, cb->wce[e].read_ev, 0));
}

/* Adds the time since *t to *acc and moves *t on (host_matmul's phases). */
static void lap(int64_t *t, int64_t *acc)
{
    const int64_t now = timing_now_us();
    *acc += now - *t;
    *t = now;
}

/* Waits for the activations x that host_matmul sent down on dl (xb bytes):
 * hx holds them from then on. */
static bool x_arrived(struct cuda_backend *cb, const float *x, size_t xb)
{
    if (!CK(cudaStreamSynchronize(cb->dl))) return false;
    cb->hx_src = x;
    cb->hx_len = xb;
    return true;
}

/* Rows [0, n) of host weight w (one token) started on the CPU's workers
 * from hx, into the next of ha; the copies left in cr queued meanwhile, then
 * the stream's wait for the rows, which go up into y. With two weights
 * (gate and up, n_w 2) the pass takes SwiGLU's rows into hh instead (up's
 * rows into the next of ha), the GPU its rows of both and their SwiGLU, y
 * holding those (tmp up's), which go down into hh; hh then holds the down
 * product's activations on the host and hx_src is y (hx_pending until the
 * GPU's rows are down). The pass is joined by the next call that needs the
 * CPU or waits on the device (pass_join). */
static void host_rows_start(struct cuda_backend *cb, const struct backend_weight *w, int n_w,
                            int64_t n, float *y, float *tmp, struct copy_run *cr)
{
    const int b = cb->ha_i;
    cb->ha_i ^= 1;
    const int64_t F = w->n_rows;
    if (!ensure_host(cb, (void **)&cb->ha[b], &cb->ha_bytes[b], (size_t)n * sizeof(float)) ||
        (n_w == 2 &&
         !ensure_host(cb, (void **)&cb->hh, &cb->hh_bytes, (size_t)F * sizeof(float))) ||
        !CK(cudaEventSynchronize(cb->ha_free[b])))
        return;
    struct backend_weight part[2] = {w[0], w[n_w - 1]};
    part[0].n_rows = part[1].n_rows = n;
    const uint32_t seq = ++cb->pass_seq;
    cb->pass_t0 = timing_now_us();
    float *rows = n_w == 2 ? cb->hh : cb->ha[b];
    if (n_w == 2)
        cpu_backend_swiglu_start(cb->cpu, &part[0], &part[1], cb->hx, rows, cb->ha[b],
                                 cb->pass_flag, seq);
    else
        cpu_backend_matmul_start(cb->cpu, &part[0], cb->hx, rows, cb->pass_flag, seq);
    cb->pass_on = cb->pass_dense = true;
    cb->pass_bytes = (uint64_t)(n_w * n) * w->row_bytes;
    cb->pass_type = w->type;
    cb->stats.host_cpu_bytes += cb->pass_bytes;
    for (int i = 0; i < n_w; i++) copy_rest(&cr[i]);
    if (n_w == 2 && n < F) {
        /* the GPU's rows of SwiGLU, then down to the host beside the CPU's */
        if (!CK(cuk_silu_mul(y + n, tmp + n, F - n, cb->st)) ||
            !CK(cudaEventRecord(cb->x_ready, cb->st)) ||
            !CK(cudaStreamWaitEvent(cb->dl, cb->x_ready, 0)) ||
            !small_copy(cb, cb->hh + n, F - n, y + n, F - n, F - n, 1, cudaMemcpyDeviceToHost,
                        cb->dl) ||
            !CK(cudaEventRecord(cb->hh_down, cb->dl)))
            return;
        cb->hx_pending = true;
    }
    const int pi = prof_begin(cb);
    if (CK(cuk_wait_copy(y, rows, n, cb->pass_flag, cb->pass_dflag, seq, cb->st)))
        CK(cudaEventRecord(cb->ha_free[b], cb->st));
    prof_end(cb, pi, "wait for the CPU's rows", UINT32_MAX);
    if (n_w == 2) {
        /* hh is read by that wait: the next download into it (as hx) is
         * queued after it on st's order */
        float *const h = cb->hh;
        const size_t hb = cb->hh_bytes;
        cb->hh = cb->hx;
        cb->hh_bytes = cb->hx_bytes;
        cb->hx = h;
        cb->hx_bytes = hb;
        cb->hx_src = y;
        cb->hx_len = (size_t)F * sizeof(float);
    }
}

/* The PCIe rate as a split call's copies (bytes of them, cp_t0 to cp_t1,
 * both done) show it. */
static void copies_seen(struct cuda_backend *cb, uint64_t bytes)
{
    float ms = 0;
    if (CK(cudaEventElapsedTime(&ms, cb->cp_t0, cb->cp_t1)))
        rate_update(&cb->rates.pcie_h2d_bytes_per_s, (double)bytes, (double)ms * 1e-3);
}

/* Queues the next piece of the first of the n runs with pieces left; false
 * when none has (or on an error). */
static bool copy_next(struct copy_run *cr, int n)
{
    for (int i = 0; i < n; i++)
        if (cr[i].a < cr[i].end) {
            copy_piece(&cr[i]);
            return !cr[i].cb->err;
        }
    return false;
}

/* Whether one token's products of host weights w[0..n_w) may start the
 * CPU's rows on its workers and return (async_host): weights that stay, no
 * moe_token pass on the workers. */
static bool may_start(const struct cuda_backend *cb, const struct backend_weight *w, int n_w,
                      int64_t n_tok)
{
    bool stable = true;
    for (int i = 0; i < n_w; i++) stable &= w[i].stable;
    return cb->async_host && !cb->cpu_busy && n_tok == 1 && stable;
}

/* A host weight's product (not one the VRAM cache keeps): its rows split
 * between the CPU, computing them where they lie, and the GPU, computing
 * them after a copy over PCIe (cpu_share). The copies and the GPU's pieces
 * are queued while the activations come down (their own stream, after the
 * ops that make them: on an H100 decode queuing took 0.7-1.2 ms per token
 * and the wait for those ops 0.35-0.6 ms, which overlap), until they are
 * down. One token's product of a weight that stays (started: async_host)
 * queues its copies while the CPU's pass before it still runs, then joins
 * that pass, starts the CPU's rows on the workers (host_rows_start) and
 * returns. Otherwise the rest of the copies are queued by the calling thread
 * inside the CPU's product, whose workers start on the rows meanwhile, and
 * the call returns once its copies are done: the store may refill that host
 * memory after model_release. n_w 2: gate and up with SwiGLU after them into
 * y (tmp: up's rows on the GPU), which only a started call takes
 * (host_swiglu). The calling thread's time goes into the stats by phase. */
static void host_products(struct cuda_backend *cb, const struct backend_weight *w, int n_w,
                          const float *x, int64_t n_tok, float *y, float *tmp)
{
    const int64_t nc = cpu_share(cb, w, n_tok);
    /* the CPU's rows started, not waited for (async_host) */
    const bool started = may_start(cb, w, n_w, n_tok) && nc > 0;
    HY_ASSERT(n_w == 1 || started);
    int64_t t = timing_now_us();
    cb->stats.host_calls++;
    if (timed_done(cb, &cb->hc_pending, cb->cp_t1)) copies_seen(cb, cb->hc_bytes);
    const int64_t nx = n_tok * w->n_cols;
    const size_t xb = (size_t)nx * sizeof(float);
    const bool down = nc > 0 && (cb->hx_src != x || cb->hx_len != xb);
    /* x comes down from where the compute stream has made it: before the
     * GPU's pieces of this call, which do not need it to come down */
    if (down && !CK(cudaEventRecord(cb->x_ready, cb->st))) return;
    const bool timed = nc > 0 && nc < w->n_rows && n_tok <= CPU_BATCH_TOKENS && !cb->hc_pending;
    if (timed && !CK(cudaEventRecord(cb->cp_t0, cb->cp))) return;
    struct copy_run cr[2];
    for (int i = 0; i < n_w; i++)
        copy_start(&cr[i], cb, &w[i], nc, w->n_rows - nc, x, n_tok, i ? tmp : y,
                   timed && i == n_w - 1);
    /* a started product's copies need nothing of the pass before it:
     * queued while that runs (its sum stores pass_seq) */
    if (started)
        while (cb->pass_on &&
               (int32_t)(__atomic_load_n(cb->pass_flag, __ATOMIC_ACQUIRE) - cb->pass_seq) < 0 &&
               copy_next(cr, n_w)) {
        }
    /* (not while moe_token queues its GPU experts beside its own pass: the
     * CPU takes no rows then, and the pass must not wait for this) */
    if (!cb->cpu_busy && cb->pass_on) {
        lap(&t, &cb->stats.host_queue_us);
        pass_join(cb);
        lap(&t, &cb->stats.host_cpu_us);
    }
    if (down) {
        /* on their own stream (hx is free once the pass before is joined;
         * a started SwiGLU's rows still coming down into it come first
         * there); waited for once the copies and the GPU's pieces are
         * queued, or (not copy_first) before */
        cb->hx_src = NULL;
        cb->hx_pending = false;
        if (!ensure_host(cb, (void **)&cb->hx, &cb->hx_bytes, xb) ||
            !CK(cudaStreamWaitEvent(cb->dl, cb->x_ready, 0)) ||
            !small_copy(cb, cb->hx, nx, x, nx, nx, 1, cudaMemcpyDeviceToHost, cb->dl))
            return;
        if (!cb->copy_first) {
            if (!x_arrived(cb, x, xb)) return;
            lap(&t, &cb->stats.host_x_wait_us);
        }
    }
    if (nc == 0) {
        while (copy_next(cr, n_w)) {
        }
    } else if (down && cb->copy_first) {
        /* pieces queued until the activations are down, the rest by the
         * CPU's call (its workers start on the rows meanwhile) */
        cudaError_t q;
        while ((q = cudaStreamQuery(cb->dl)) == cudaErrorNotReady && copy_next(cr, n_w)) {
        }
        if (q != cudaSuccess && q != cudaErrorNotReady) CK(q);
    }
    lap(&t, &cb->stats.host_queue_us);
    if (down && cb->copy_first) {
        if (!x_arrived(cb, x, xb)) return;
        const int64_t t0 = t;
        lap(&t, &cb->stats.host_x_wait_us);
        prof_host(cb, "x down", t0, t);
    }
    if (nc > 0 && cb->hx_pending) { /* a started SwiGLU's GPU rows, on their way into hx */
        if (!CK(cudaEventSynchronize(cb->hh_down))) return;
        cb->hx_pending = false;
        lap(&t, &cb->stats.host_x_wait_us);
    }
    if (started) {
        host_rows_start(cb, w, n_w, nc, y, tmp, cr);
        if (timed && cr[n_w - 1].last >= 0) {
            cb->hc_pending = true;
            cb->hc_bytes = (uint64_t)(n_w * (w->n_rows - nc)) * w->row_bytes;
        }
        lap(&t, &cb->stats.host_queue_us);
        return;
    }
    cpu_rows(cb, w, nc, cb->hx, n_tok, y, &cr[0]);
    const int last = cr[0].last;
    lap(&t, &cb->stats.host_cpu_us);
    if (timed && last >= 0 && CK(cudaEventSynchronize(cb->cp_t1)))
        copies_seen(cb, (uint64_t)(w->n_rows - nc) * w->row_bytes);
    if (last >= 0) CK(cudaEventSynchronize(cb->copied[last]));
    lap(&t, &cb->stats.host_copy_wait_us);
}

static void host_matmul(struct cuda_backend *cb, const struct backend_weight *w, const float *x,
                        int64_t n_tok, float *y)
{
    host_products(cb, w, 1, x, n_tok, y, NULL);
}

/* One token's gate and up products of weights in RAM (neither kept by the
 * VRAM cache) with SwiGLU after them into y, as one started call
 * (host_rows_start): the CPU computes SwiGLU's rows of its share itself,
 * and the down product that follows finds its activations on the host.
 * false: not such a call (nothing was queued). */
static bool host_swiglu(struct cuda_backend *cb, const struct backend_weight *ws, const float *x,
                        int64_t n_tok, float *y, float *tmp)
{
    const struct backend_weight *g = &ws[0], *u = &ws[1];
    if (cb->in_moe || !cb->swiglu_host || !may_start(cb, ws, 2, n_tok)) return false;
    for (int i = 0; i < 2; i++)
        if (ws[i].mem == BACKEND_MEM_BACKEND || ws[i].key) return false;
    if (g->type != u->type || g->row_bytes != u->row_bytes || g->n_cols != u->n_cols ||
        cpu_share(cb, g, 1) == 0)
        return false;
    const int pi = prof_begin(cb);
    host_products(cb, ws, 2, x, 1, y, tmp);
    prof_end_shape(cb, pi, "swiglu host", g->type, 2 * g->n_rows, g->n_cols);
    return true;
}

/* A host weight's VRAM cache entry, taken for the products queued next. */
struct wc_hold {
    int e;
    bool hit, stable;
};

/* Host weight w in its VRAM cache entry for the products queued next on st:
 * a hit (a prefetch's copy waited for), or a miss whose copy from w->data
 * goes on cp after the entry's last readers, the compute stream waiting for
 * it. The entry is held (no other weight takes it, and the entries are not
 * re-cut) until wc_done. Returns its bytes' device address; NULL where the
 * cache does not keep w (the caller computes it otherwise) or on an error. */
static const uint8_t *wc_take(struct cuda_backend *cb, const struct backend_weight *w,
                              struct wc_hold *h)
{
    const size_t bytes = (size_t)w->n_rows * w->row_bytes;
    h->hit = false;
    h->stable = w->stable;
    if (cb->policy != CUDA_HOST_CPU) wc_touch(cb, w->key);
    h->e = cb->policy == CUDA_HOST_CPU ? -1 : wc_lookup(cb, w->key, bytes, &h->hit);
    if (!w->data && !h->hit) { /* holds said yes: nothing else may have come between */
        fail(cb, HY_ERR_INTERNAL, "matmul", "a weight without data is not in the VRAM cache",
             __FILE__, __LINE__);
        return NULL;
    }
    if (h->e < 0) return NULL;
    struct wc_entry *en = &cb->wce[h->e];
    uint8_t *dst = cb->wc + en->off;
    if (h->hit) {
        cb->stats.cache_hits++;
        if (en->pending) { /* a prefetch's copy: the first reader waits for it */
            if (!CK(cudaStreamWaitEvent(cb->st, en->fill_ev, 0))) return NULL;
            en->pending = false;
            cb->stats.prefetch_used++;
        }
    } else {
        /* a miss fills the entry: the copy overlaps the previous ops; the
         * entry may hold a weight that queued kernels still read: the copy
         * waits for the last of them, not for the whole stream */
        cb->stats.cache_misses++;
        if (!wc_await_readers(cb, h->e) ||
            !CK(cudaMemcpyAsync(dst, w->data, bytes, cudaMemcpyHostToDevice, cb->cp)) ||
            !CK(cudaEventRecord(cb->wc_copied, cb->cp)) ||
            !CK(cudaStreamWaitEvent(cb->st, cb->wc_copied, 0)))
            return NULL;
        cb->stats.host_copy_bytes += bytes;
    }
    en->held = true;
    cb->wc_held++;
    return dst;
}

/* After the products that read h's entry are queued: its last reader
 * marked, the hold let go, and a miss's entry filled, where its source may
 * be refilled after model_release (a stream slot, the expert cache) once
 * the copy is done. */
static void wc_done(struct cuda_backend *cb, const struct wc_hold *h)
{
    struct wc_entry *en = &cb->wce[h->e];
    en->held = false;
    cb->wc_held--;
    if (cb->err) return;
    if (!en->read_ev && !CK(cudaEventCreateWithFlags(&en->read_ev, cudaEventDisableTiming))) return;
    if (!CK(cudaEventRecord(en->read_ev, cb->st))) return;
    /* the entry's later readers queue on st after the copy (stream order) */
    if (!h->hit && (h->stable || (pass_join(cb), CK(cudaEventSynchronize(cb->wc_copied)))))
        en->filled = true;
}

static void matmul(struct cuda_backend *cb, const struct backend_weight *w, const float *x,
                   int64_t n_tok, float *y)
{
    bool x16_ready = false;
    if (w->mem == BACKEND_MEM_BACKEND) {
        gpu_matmul(cb, w->type, w->data, w->row_bytes, w->n_rows, w->n_cols, x, n_tok, y, w->n_rows,
                   &x16_ready, true);
        return;
    }
    struct wc_hold h;
    const uint8_t *dst = wc_take(cb, w, &h);
    if (dst) {
        gpu_matmul(cb, w->type, dst, w->row_bytes, w->n_rows, w->n_cols, x, n_tok, y, w->n_rows,
                   &x16_ready, false);
        wc_done(cb, &h);
        return;
    }
    if (cb->err) return;
    host_matmul(cb, w, x, n_tok, y);
}

/* cuq_matvec_multi of weights in device memory, with the pending norm
 * folded in when x is its output; where the kernels cannot fold it, the norm
 * is launched and the products tried without. cudaErrorNotSupported: the
 * caller computes them another way (no norm is pending then). *folded:
 * whether the norm went in. */
static cudaError_t matvec_multi(struct cuda_backend *cb, uint32_t type, struct cuq_multi *m,
                                size_t row_bytes, int64_t n_cols, const float *x, int64_t n_tok,
                                bool *folded)
{
    m->norm = norm_pending_for(cb, x, n_tok, n_cols) ? &cb->pn.nm : NULL;
    if (!m->norm) norm_flush(cb);
    const bool early = products_early(cb);
    cudaError_t e = cuq_matvec_multi(type, m, row_bytes, n_cols, x, n_tok, cb->st, early);
    if (e == cudaErrorNotSupported && m->norm) {
        norm_flush(cb);
        m->norm = NULL;
        e = cuq_matvec_multi(type, m, row_bytes, n_cols, x, n_tok, cb->st, early);
    }
    *folded = m->norm != NULL;
    if (*folded) cb->pn.on = false;
    return e;
}

/* One product of cu_matmul: the head after the output norm with the norm in
 * the product's prologue, else matmul. */
static void product(struct cuda_backend *cb, const struct backend_weight *w, const float *x,
                    int64_t n_tok, float *y)
{
    const int pi = prof_begin(cb);
    if (w->mem == BACKEND_MEM_BACKEND && norm_pending_for(cb, x, n_tok, w->n_cols)) {
        struct cuq_multi m = {
            .n_w = 1, .ep = CUQ_EP_STORE, .w = {w->data}, .n_rows = {w->n_rows}, .y = {y}};
        bool folded;
        const cudaError_t e =
            matvec_multi(cb, w->type, &m, w->row_bytes, w->n_cols, x, n_tok, &folded);
        if (e != cudaErrorNotSupported) {
            CK(e);
            cb->hx_src = NULL;
            prof_end_shape(cb, pi, folded ? "norm+matvec" : "matvec", w->type, w->n_rows,
                           w->n_cols);
            return;
        }
    }
    norm_flush(cb);
    matmul(cb, w, x, n_tok, y);
    /* y was written: the host copy of x stays valid only if y is elsewhere */
    const uintptr_t y0 = (uintptr_t)y, y1 = y0 + (size_t)(n_tok * w->n_rows) * sizeof(float);
    const uintptr_t h0 = (uintptr_t)cb->hx_src, h1 = h0 + cb->hx_len;
    if (cb->hx_src && y0 < h1 && h0 < y1) cb->hx_src = NULL;
    static const char *const kind[2][2] = {{"matvec host", "gemm host"}, {"matvec", "gemm"}};
    prof_end_shape(cb, pi, kind[w->mem == BACKEND_MEM_BACKEND][n_tok > CUQ_MATVEC_MAX_TOK], w->type,
                   w->n_rows, w->n_cols);
}

/* Rows from which one token's product in backend memory is split for its
 * download (a vocabulary's head: 128256 rows, 501 KiB of logits, about 20 us
 * over PCIe that would follow the product); the first part ends 1/8 of the
 * rows early, so that its download hides behind the last eighth. Not where
 * the last head's logits stayed on the device (top_k picked from them): one
 * product then, the smaller second one being the slower per byte. */
#define HEAD_SPLIT_ROWS 65536

static void cu_matmul(struct backend *be, const struct backend_weight *w, const float *x,
                      int64_t n_tok, float *y)
{
    struct cuda_backend *cb = op_mark(be);
    if (cb->err) return;
    if (n_tok != 1 || w->mem != BACKEND_MEM_BACKEND || w->n_rows < HEAD_SPLIT_ROWS) {
        product(cb, w, x, n_tok, y);
        return;
    }
    const int64_t r1 = cb->head_whole ? 0 : w->n_rows / 8 * 7 / 64 * 64;
    if (r1) {
        struct backend_weight a = *w, b = *w;
        a.n_rows = r1;
        b.n_rows = w->n_rows - r1;
        b.data = (const uint8_t *)w->data + (size_t)r1 * w->row_bytes;
        product(cb, &a, x, 1, y); /* folds a pending norm; b reads its output */
        if (!CK(cudaEventRecord(cb->head_ev, cb->st))) return;
        product(cb, &b, x, 1, y + r1);
    } else {
        product(cb, w, x, 1, y);
    }
    if (cb->err) return;
    cb->head_y = y;
    cb->head_r1 = r1;
    cb->head_rows = w->n_rows;
    cb->head_seq = cb->op_seq;
}

static void get_rows(struct cuda_backend *cb, const struct backend_weight *w, const int32_t *ids,
                     int64_t n, float *out)
{
    if (w->mem == BACKEND_MEM_BACKEND) {
        if (n == 1) { /* a decoded token: its row by address, no id to upload before it */
            const uint8_t *row = (const uint8_t *)w->data + (size_t)ids[0] * w->row_bytes;
            CK(cuq_get_rows(w->type, row, w->row_bytes, w->n_cols, NULL, 1, out, cb->st));
            return;
        }
        if (!ensure_dev(cb, (void **)&cb->ids, &cb->ids_bytes, (size_t)n * sizeof(int32_t))) return;
        if (!CK(cudaMemcpyAsync(cb->ids, ids, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                                cb->st)))
            return;
        CK(cuq_get_rows(w->type, w->data, w->row_bytes, w->n_cols, cb->ids, n, out, cb->st));
        return;
    }
    /* rows of a host weight (token embeddings in RAM): gathered by the CPU */
    const size_t bytes = (size_t)(n * w->n_cols) * sizeof(float);
    pass_join(cb);
    if (!ensure_host(cb, (void **)&cb->hy, &cb->hy_bytes, bytes)) return;
    if (!hy_free_wait(cb)) return;
    backend_get_rows(cb->cpu, w, ids, n, cb->hy);
    CK(cudaMemcpyAsync(out, cb->hy, bytes, cudaMemcpyHostToDevice, cb->st));
    hy_free_record(cb);
}

static void cu_get_rows(struct backend *be, const struct backend_weight *w, const int32_t *ids,
                        int64_t n, float *out)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    if (cb->err || n <= 0) return;
    const int pi = prof_begin(cb);
    get_rows(cb, w, ids, n, out);
    prof_end(cb, pi, "get_rows", w->type);
}

/* ---- the other ops ------------------------------------------------------ */

static void cu_rms_norm(struct backend *be, const float *x, const float *weight, float eps,
                        int64_t n_tok, int64_t n, float *y)
{
    struct cuda_backend *cb = op_mark(be);
    cb->hx_src = NULL;
    /* this op, as a pending norm holds it: held by one of them, or launched */
    struct pending_norm op = {
        .on = true, .n_tok = n_tok, .n = n, .nm = {.x = x, .w = weight, .eps = eps, .y = y}};
    /* in place after an in-place one of rows as long: the two held for
     * decode attention, or in one launch */
    if (cb->pq.on && !cb->pk.on && x == y && n == cb->pq.n && eps == cb->pq.nm.eps && !cb->err) {
        cb->pk = op;
        if (!cb->att_norms) norm_pair_launch(cb);
        return;
    }
    norm_flush(cb);
    if (cb->norm_pairs && x == y && !cb->err) {
        cb->pq = op;
        return;
    }
    /* one token, out of place: deferred, for the product that reads y */
    const uintptr_t x0 = (uintptr_t)x, y0 = (uintptr_t)y, len = (uintptr_t)n * sizeof(float);
    if (cb->fold_norm && !cb->err && n_tok == 1 && (x0 + len <= y0 || y0 + len <= x0)) {
        cb->pn = op;
        return;
    }
    norm_launch(cb, &op);
}

/* The rope's frequency factors in device memory (uploaded when they change);
 * NULL without factors. *ok false on a failure (recorded). */
static const float *rope_ff(struct cuda_backend *cb, const struct backend_rope *rp, bool *ok)
{
    *ok = true;
    if (!rp->freq_factors) return NULL;
    const int64_t half = rp->n_rot / 2;
    const size_t b = (size_t)half * sizeof(float);
    if (cb->ff_n != half || memcmp(cb->ff_host, rp->freq_factors, b) != 0) {
        if (!ensure_dev(cb, (void **)&cb->ff, &cb->ff_bytes, b)) return *ok = false, NULL;
        free(cb->ff_host);
        cb->ff_host = mem_xcalloc((size_t)half, sizeof(float));
        memcpy(cb->ff_host, rp->freq_factors, b);
        cb->ff_n = half;
        cb->ff_gen++;
        if (!CK(cudaMemcpyAsync(cb->ff, cb->ff_host, b, cudaMemcpyHostToDevice, cb->st)))
            return *ok = false, NULL;
    }
    return cb->ff;
}

/* The rope's pair frequencies (struct cuk_rope's inv) in device memory,
 * computed and uploaded when the rope changes, with the kernels' own
 * arithmetic; NULL without rotation or for more than ROPE_INV_MAX pairs (the
 * kernels then compute them). Call it after rope_ff (its factors' upload
 * count is part of the rope). *ok false on a failure (recorded). */
static const double *rope_inv(struct cuda_backend *cb, const struct backend_rope *rp, bool *ok)
{
    *ok = true;
    const int64_t half = rp->n_rot / 2;
    if (half <= 0 || half > ROPE_INV_MAX) return NULL;
    const uint64_t ff_gen = rp->freq_factors ? cb->ff_gen : 0;
    if (cb->rinv_n == half && cb->rinv_base == rp->freq_base && cb->rinv_scale == rp->freq_scale &&
        cb->rinv_ff_gen == ff_gen)
        return cb->rinv;
    if (!ensure_dev(cb, (void **)&cb->rinv, &cb->rinv_bytes, ROPE_INV_MAX * sizeof(double)))
        return *ok = false, NULL;
    double *f = cb->rinv_host;
    for (int64_t i = 0; i < half; i++) {
        f[i] = rp->freq_scale * pow(rp->freq_base, -2.0 * (double)i / (double)rp->n_rot);
        if (rp->freq_factors) f[i] /= (double)rp->freq_factors[i];
    }
    cb->rinv_gen++;
    /* from pageable memory: the call returns once f is staged */
    if (!CK(cudaMemcpyAsync(cb->rinv, f, (size_t)half * sizeof(double), cudaMemcpyHostToDevice,
                            cb->st)))
        return *ok = false, NULL;
    cb->rinv_n = half;
    cb->rinv_base = rp->freq_base;
    cb->rinv_scale = rp->freq_scale;
    cb->rinv_ff_gen = ff_gen;
    return cb->rinv;
}

/* cos and sin of each RoPE pair at position pos (struct cuk_attn's cs), as
 * the CPU backend computes them (angles in double), from the frequencies
 * rope_inv gave last (call it after rope_inv returned them), kept for the
 * next call at the same position. */
static const float *rope_cs_at(struct cuda_backend *cb, int64_t pos)
{
    if (cb->cs_gen != cb->rinv_gen || cb->cs_pos != pos) {
        for (int64_t i = 0; i < cb->rinv_n; i++) {
            const double ang = (double)pos * cb->rinv_host[i];
            cb->cs[2 * i] = (float)cos(ang);
            cb->cs[2 * i + 1] = (float)sin(ang);
        }
        cb->cs_gen = cb->rinv_gen;
        cb->cs_pos = pos;
    }
    return cb->cs;
}

static void cu_rope(struct backend *be, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                    int64_t pos0, const struct backend_rope *rp)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    if (cb->err) return;
    bool ok;
    const float *ff = rope_ff(cb, rp, &ok);
    if (!ok) return;
    const int pi = prof_begin(cb);
    CK(cuk_rope(x, n_tok, n_head, head_dim, pos0, rp->mode == BACKEND_ROPE_NEOX, rp->n_rot,
                (float)rp->freq_base, (float)rp->freq_scale, ff, cb->st));
    prof_end(cb, pi, "rope", UINT32_MAX);
}

static void cu_attention(struct backend *be, const struct backend_attn *a, float *q, float *k,
                         const float *v, float *out)
{
    struct cuda_backend *cb = op_mark(be);
    /* the heads' norms of this q and k, held: applied by the decode kernel */
    const bool norms = a->n_tok == 1 && cb->pk.on &&
                       norm_holds(&cb->pq, q, a->n_head, a->head_dim) &&
                       norm_holds(&cb->pk, k, a->n_head_kv, a->head_dim);
    const struct cuq_norm nq = cb->pq.nm, nk = cb->pk.nm;
    if (norms) cb->pq.on = cb->pk.on = false;
    norm_flush(cb);
    cb->hx_src = NULL;
    if (cb->err) return;
    const size_t part = cuk_attention_scratch(a->n_head, a->head_dim_v) * sizeof(float);
    if (!ensure_dev(cb, (void **)&cb->part, &cb->part_bytes, part)) return;
    struct cuk_attn c = {.k_cache = a->k_cache,
                         .v_cache = a->v_cache,
                         .n_ctx = a->n_ctx,
                         .n_head = a->n_head,
                         .n_head_kv = a->n_head_kv,
                         .head_dim = a->head_dim,
                         .head_dim_v = a->head_dim_v,
                         .pos0 = a->pos0,
                         .n_tok = a->n_tok,
                         .scale = a->scale,
                         .k_type = a->k_type,
                         .v_type = a->v_type,
                         /* the heads' norms held for this op */
                         .q_norm = norms ? nq.w : NULL,
                         .k_norm = norms ? nk.w : NULL,
                         .norm_eps = norms ? nq.eps : 0.0f};
    if (a->rope) {
        bool ok;
        c.rope.ff = rope_ff(cb, a->rope, &ok);
        if (!ok) return;
        c.rope.n_rot = a->rope->n_rot;
        c.rope.neox = a->rope->mode == BACKEND_ROPE_NEOX;
        c.rope.freq_base = a->rope->freq_base;
        c.rope.freq_scale = a->rope->freq_scale;
        c.rope.inv = rope_inv(cb, a->rope, &ok);
        if (!ok) return;
        if (a->n_tok == 1 && c.rope.inv) c.cs = rope_cs_at(cb, a->pos0);
    }
    const int pi = prof_begin(cb);
    CK(cuk_attention(&c, q, k, v, out, cb->part, cb->st, cb->pdl));
    prof_end(cb, pi,
             norms           ? "attention 1 token, head norms"
             : a->n_tok == 1 ? "attention 1 token"
                             : "attention batch",
             UINT32_MAX);
}

static void cu_softmax(struct backend *be, float *x, int64_t n_rows, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_softmax(x, n_rows, n, cb->st));
    prof_end(cb, pi, "softmax", UINT32_MAX);
}

static void cu_top_k(struct backend *be, const float *x, int64_t n, int k, int32_t *ids,
                     float *vals)
{
    struct cuda_backend *cb = cb_of(be);
    /* a head's rows picked from here: the next head need not be split */
    if (head_output(cb, x, (size_t)n * sizeof(float))) cb->head_whole = true;
    op_begin(be);
    cb->hx_src = NULL;
    pass_join(cb);
    if (cb->err) return;
    const size_t sb = cuk_top_k_scratch(n, k), kb = (size_t)k * sizeof *cb->topk_host;
    if (!ensure_dev(cb, (void **)&cb->topk_dev, &cb->topk_dev_bytes, sb + kb) ||
        !ensure_host(cb, (void **)&cb->topk_host, &cb->topk_host_bytes,
                     BACKEND_TOP_K_MAX * sizeof *cb->topk_host))
        return;
    unsigned long long *out = cb->topk_dev + sb / sizeof *cb->topk_dev;
    const int pi = prof_begin(cb);
    if (!CK(cuk_top_k(x, n, k, cb->topk_dev, out, cb->st, cb->pdl)) ||
        !CK(cudaMemcpyAsync(cb->topk_host, out, kb, cudaMemcpyDeviceToHost, cb->st)))
        return;
    prof_end(cb, pi, "top_k", UINT32_MAX);
    if (!CK(cudaStreamSynchronize(cb->st))) return;
    /* the keys back to indices and values (cuk_top_k's key) */
    for (int i = 0; i < k; i++) {
        const unsigned long long key = cb->topk_host[i];
        const uint32_t hi = (uint32_t)(key >> 32);
        const uint32_t u = hi & 0x80000000u ? hi & 0x7FFFFFFFu : ~hi;
        float v;
        memcpy(&v, &u, sizeof v);
        ids[i] = (int32_t)(0xFFFFFFFFu - (uint32_t)key);
        vals[i] = v;
    }
}

static void cu_route(struct backend *be, float *x, int64_t n_tok, int64_t n, int64_t k, bool renorm,
                     int32_t *ids, float *w)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_route(x, n_tok, n, k, renorm, ids, w, cb->st, cb->pdl));
    prof_end(cb, pi, "route", UINT32_MAX);
}

static void cu_silu_mul(struct backend *be, float *gate, const float *up, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_silu_mul(gate, up, n, cb->st));
    prof_end(cb, pi, "silu_mul", UINT32_MAX);
}

static void cu_add(struct backend *be, float *y, const float *x, float alpha, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_add(y, x, alpha, n, cb->st));
    prof_end(cb, pi, "add", UINT32_MAX);
}

static void cu_add_bias(struct backend *be, float *y, const float *b, int64_t n_tok, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    if (!cb->err) CK(cuk_add_bias(y, b, n_tok, n, cb->st));
    prof_end(cb, pi, "add_bias", UINT32_MAX);
}

/* m (weights like w0's: type, row_bytes, n_cols; rows virtual rows in all)
 * as one kernel, timed as an op named name[whether the pending norm went
 * in]; false where the kernels cannot take it (nothing queued but the
 * pending norm: the caller computes the products another way). */
static bool multi_op(struct cuda_backend *cb, struct cuq_multi *m, const struct backend_weight *w0,
                     const float *x, int64_t n_tok, int64_t rows, const char *const name[2])
{
    cb->hx_src = NULL;
    const int pi = prof_begin(cb);
    bool folded;
    const cudaError_t e =
        matvec_multi(cb, w0->type, m, w0->row_bytes, w0->n_cols, x, n_tok, &folded);
    if (e == cudaErrorNotSupported) {
        prof_end(cb, pi, "matvec not fused", w0->type); /* an empty span, counted */
        return false;
    }
    CK(e);
    prof_end_shape(cb, pi, name[folded], w0->type, rows, w0->n_cols);
    return true;
}

/* Whether one cuq_matvec_multi launch can take a beside w0: a is in device
 * memory with w0's type, row length and columns. */
static bool multi_alike(const struct backend_weight *a, const struct backend_weight *w0)
{
    return a->mem == BACKEND_MEM_BACKEND && a->type == w0->type && a->row_bytes == w0->row_bytes &&
           a->n_cols == w0->n_cols;
}

/* One token's products of x with n_w weights in device memory of two
 * types (q and k beside a v of another type, their biases) as one launch
 * (cuq_matvec_pair), folding the pending norm where x is its output. false:
 * not such a call or no kernel for it (nothing was queued, the norm still
 * pending if it was). */
static bool pair_op(struct cuda_backend *cb, const struct backend_weight *ws, int n_w,
                    const float *x, float *const *ys, const float *const *bias)
{
    struct cuq_multi m[2] = {{.ep = CUQ_EP_STORE}, {.ep = CUQ_EP_STORE}};
    const struct backend_weight *w0[2] = {&ws[0], NULL};
    int64_t rows = 0;
    for (int i = 0; i < n_w; i++) {
        if (ws[i].mem != BACKEND_MEM_BACKEND || ws[i].n_cols != ws[0].n_cols) return false;
        const int g = multi_alike(&ws[i], w0[0]) ? 0 : 1;
        if (g == 1 && !w0[1]) w0[1] = &ws[i];
        if (g == 1 && !multi_alike(&ws[i], w0[1])) return false;
        struct cuq_multi *mg = &m[g];
        mg->w[mg->n_w] = ws[i].data;
        mg->n_rows[mg->n_w] = ws[i].n_rows;
        mg->y[mg->n_w] = ys[i];
        mg->b[mg->n_w] = bias ? bias[i] : NULL;
        mg->n_w++;
        rows += ws[i].n_rows;
    }
    if (!w0[1]) return false;
    const bool fold = norm_pending_for(cb, x, 1, ws[0].n_cols);
    m[0].norm = m[1].norm = fold ? &cb->pn.nm : NULL;
    if (!fold) norm_flush(cb);
    const int pi = prof_begin(cb);
    const bool early = products_early(cb);
    const cudaError_t e = cuq_matvec_pair(w0[0]->type, &m[0], w0[0]->row_bytes, w0[1]->type, &m[1],
                                          w0[1]->row_bytes, ws[0].n_cols, x, cb->st, early);
    if (e == cudaErrorNotSupported) {
        prof_end(cb, pi, "matvec pair not taken", w0[0]->type); /* an empty span, counted */
        return false;
    }
    CK(e);
    if (fold) cb->pn.on = false;
    cb->hx_src = NULL;
    prof_end_shape(cb, pi, fold ? "norm+matvec pair" : "matvec pair", w0[0]->type, rows,
                   ws[0].n_cols);
    return true;
}

/* Products of one x with n_w weights and kind's element-wise op (backend.h):
 * one kernel when every weight is in device memory with one type and row
 * length and the batch is a matvec's (NONE, one token: two types in one,
 * pair_op); else each product wherever its weight lies, then the op (on
 * the caller's scratch tmp). */
static void fused_products(struct backend *be, enum backend_fuse kind,
                           const struct backend_weight *ws, int n_w, const float *x, int64_t n_tok,
                           float *const *ys, const float *const *bias, float *tmp)
{
    struct cuda_backend *cb = cb_of(be);
    static const char *const name[3][2] = {{"matvec x", "norm+matvec x"},
                                           {"matvec +", "norm+matvec +"},
                                           {"matvec swiglu", "norm+matvec swiglu"}};
    if (kind == BACKEND_FUSE_NONE && n_tok == 1 && cb->pair && !cb->err &&
        pair_op(cb, ws, n_w, x, ys, bias))
        return;
    bool done[3] = {false, false, false};
    int left = n_w;
    /* the weights in VRAM of one type and shape in one kernel (NONE: q/k/v of
     * two types without a pair_op kernel in two, the first folding the
     * pending norm); ADD and SWIGLU only when that is all of them */
    for (int i = 0; i < n_w && n_tok <= CUQ_MATVEC_MAX_TOK; i++) {
        if (done[i] || ws[i].mem != BACKEND_MEM_BACKEND) continue;
        struct cuq_multi m = {.ep = kind == BACKEND_FUSE_ADD      ? CUQ_EP_ADD
                                    : kind == BACKEND_FUSE_SWIGLU ? CUQ_EP_SWIGLU
                                                                  : CUQ_EP_STORE};
        int idx[3] = {0, 0, 0};
        int64_t rows = 0;
        for (int j = i; j < n_w; j++) {
            if (done[j] || !multi_alike(&ws[j], &ws[i])) continue;
            idx[m.n_w] = j;
            m.w[m.n_w] = ws[j].data;
            m.n_rows[m.n_w] = ws[j].n_rows;
            /* SwiGLU writes ys[0] only: a caller's ys may hold just that */
            m.y[m.n_w] = m.n_w == 0 || kind != BACKEND_FUSE_SWIGLU ? ys[j] : NULL;
            m.b[m.n_w] = bias ? bias[j] : NULL;
            rows += ws[j].n_rows;
            m.n_w++;
        }
        if (kind != BACKEND_FUSE_NONE && m.n_w != n_w) break;
        if (!multi_op(cb, &m, &ws[i], x, n_tok, rows, name[kind])) break;
        for (int k = 0; k < m.n_w; k++) done[idx[k]] = true;
        left -= m.n_w;
    }
    if (left == 0) return;
    norm_flush(cb); /* the separate products below take x as it is */
    if (kind == BACKEND_FUSE_NONE) {
        for (int i = 0; i < n_w; i++) {
            if (done[i]) continue;
            cu_matmul(be, &ws[i], x, n_tok, ys[i]);
            if (bias && bias[i]) cu_add_bias(be, ys[i], bias[i], n_tok, ws[i].n_rows);
        }
        return;
    }
    const int64_t n = n_tok * ws[0].n_rows;
    if (kind == BACKEND_FUSE_ADD) {
        cu_matmul(be, &ws[0], x, n_tok, tmp);
        cu_add(be, ys[0], tmp, 1.0f, n);
    } else if (!host_swiglu(cb, ws, x, n_tok, ys[0], tmp)) {
        cu_matmul(be, &ws[0], x, n_tok, ys[0]);
        cu_matmul(be, &ws[1], x, n_tok, tmp);
        cu_silu_mul(be, ys[0], tmp, n);
    }
}

/* Views in device memory of the weights ws (n_w of them) for one launch: in
 * VRAM already, or host weights taken into VRAM cache entries (hold[], *n_held
 * of them, for wc_done after the launch). false: some host weight is not kept
 * by the cache (none is held then; the ones taken stay filled). */
static bool device_views(struct cuda_backend *cb, const struct backend_weight *ws, int n_w,
                         struct backend_weight *v, struct wc_hold *hold, int *n_held)
{
    *n_held = 0;
    for (int i = 0; i < n_w; i++) {
        v[i] = ws[i];
        if (ws[i].mem == BACKEND_MEM_BACKEND) continue;
        const uint8_t *p = wc_take(cb, &ws[i], &hold[*n_held]);
        if (!p) {
            while (*n_held > 0) wc_done(cb, &hold[--*n_held]);
            return false;
        }
        (*n_held)++;
        v[i].data = p;
        v[i].mem = BACKEND_MEM_BACKEND;
    }
    return true;
}

/* backend.h's matmul_fused. A token's host weights that the VRAM cache keeps
 * (an expert's gate and up) go into its entries first, so that one kernel
 * takes them, as it takes weights in VRAM: one launch instead of gate, up
 * and SwiGLU's three. */
static void cu_matmul_fused(struct backend *be, enum backend_fuse kind,
                            const struct backend_weight *ws, int n_w, const float *x, int64_t n_tok,
                            float *const *ys, const float *const *bias, float *tmp)
{
    struct cuda_backend *cb = op_mark(be);
    HY_ASSERT(n_w >= 1 && n_w <= 3);
    HY_ASSERT(kind != BACKEND_FUSE_ADD || n_w == 1);
    HY_ASSERT(kind != BACKEND_FUSE_SWIGLU || (n_w == 2 && ws[0].n_rows == ws[1].n_rows));
    HY_ASSERT(!bias || kind == BACKEND_FUSE_NONE);
    if (cb->err) return;
    struct backend_weight v[3];
    struct wc_hold hold[3];
    int n_held = 0;
    bool host = false;
    for (int i = 0; i < n_w; i++) host |= ws[i].mem != BACKEND_MEM_BACKEND;
    if (host && kind != BACKEND_FUSE_NONE && n_tok <= CUQ_MATVEC_MAX_TOK && cb->fuse_host &&
        device_views(cb, ws, n_w, v, hold, &n_held))
        ws = v;
    if (cb->err) return;
    fused_products(be, kind, ws, n_w, x, n_tok, ys, bias, tmp);
    while (n_held > 0) wc_done(cb, &hold[--n_held]);
}

static void cu_add_rows(struct backend *be, float *y, const float *x, const int32_t *rows,
                        const float *alpha, int64_t n_rows, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    if (cb->err || n_rows <= 0) return;
    if (n_rows == 1) { /* one row (a token's shared expert): the factor as an argument */
        const int pi = prof_begin(cb);
        CK(cuk_add(y + (int64_t)rows[0] * n, x, alpha[0], n, cb->st));
        prof_end(cb, pi, "add_rows", UINT32_MAX);
        return;
    }
    const size_t rb = (size_t)n_rows * sizeof(int32_t), ab = (size_t)n_rows * sizeof(float);
    /* the previous call's kernel, earlier on the stream, has read the scratch
     * before these copies overwrite it */
    if (!ensure_dev(cb, &cb->ar, &cb->ar_bytes, rb + ab)) return;
    int32_t *dr = cb->ar;
    float *da = (float *)((uint8_t *)cb->ar + rb);
    if (!CK(cudaMemcpyAsync(dr, rows, rb, cudaMemcpyHostToDevice, cb->st))) return;
    if (!CK(cudaMemcpyAsync(da, alpha, ab, cudaMemcpyHostToDevice, cb->st))) return;
    const int pi = prof_begin(cb);
    CK(cuk_add_rows(y, x, dr, da, n_rows, n, cb->st));
    prof_end(cb, pi, "add_rows", UINT32_MAX);
}

/* ---- a batch's experts -------------------------------------------------- */

/* Whether slice i (0 gate, 1 up, 2 down) of each of n experts (w[3j + i])
 * lies in device memory with rows x cols of the first one's type and row
 * bytes, in a layout cuq_group takes. */
static bool batch_alike(const struct backend_weight *w, int n, int i, int64_t rows, int64_t cols)
{
    const struct backend_weight *a = &w[i];
    for (int j = 0; j < n; j++) {
        const struct backend_weight *e = &w[3 * j + i];
        if (e->mem != BACKEND_MEM_BACKEND || e->type != a->type || e->n_rows != rows ||
            e->n_cols != cols || e->row_bytes != a->row_bytes ||
            !cuq_group_supports(e->type, cols, e->row_bytes, e->data))
            return false;
    }
    return true;
}

/* moe_batch's choice per expert: its rows in the one-launch integer
 * products (cuq_group: each chunk of CUQ_GROUP_TOK rows reads the weights
 * again, and they take about MB_GROUP_MACS multiply-adds a second) or its
 * own three GEMMs (cuBLAS on binary16 tiles: about MB_GEMM_FIXED_S of
 * launches and calls, the dequantized weights written and read, four
 * bytes an element at the device's read rate). A few rows an expert (an
 * MoE with many small experts, or a short prompt) go to the first; many
 * rows of large matrices (Mixtral's experts) to the second. */
#define MB_GROUP_MACS   2e13
#define MB_GEMM_FIXED_S 9e-5
static bool mb_by_gemm(const struct cuda_backend *cb, int64_t rows, int64_t E, int64_t F)
{
    if (cb->mb_mode == 2) return false;
    const double elems = 3.0 * (double)E * (double)F;
    const double rate =
        cb->rates.device_read_bytes_per_s > 0 ? cb->rates.device_read_bytes_per_s : 2e12;
    return (double)rows * elems / MB_GROUP_MACS > MB_GEMM_FIXED_S + 4.0 * elems / rate;
}

/* backend.h's moe_batch: the rows of x routed to each expert gathered in
 * expert order (assignment a: the a-th of them), gate and up with SwiGLU of
 * every expert's rows in one launch (chunks of CUQ_GROUP_TOK rows of one
 * expert), down likewise, and each token's shares added in expert order by
 * one kernel: five calls a layer where the op-by-op path makes about ten an
 * expert. An expert that mb_by_gemm gives its own GEMMs has them between,
 * on its gathered rows. The tables (the gathered rows' tokens, each token's
 * slots, the chunks) are built on the host and copied up in one piece. */
static bool cu_moe_batch(struct backend *be, const float *x, int64_t n_tok,
                         const struct backend_weight *w, const int32_t *sel, int n_sel,
                         const int64_t *cnt, const int32_t *tok, const float *wt, int64_t ld,
                         float *y)
{
    struct cuda_backend *cb = op_begin(be);
    if (cb->err || !cb->mb_mode || n_tok < 1 || n_sel < 1) return false;
    const int64_t E = w[0].n_cols, F = w[0].n_rows;
    if (!batch_alike(w, n_sel, 0, F, E) || !batch_alike(w, n_sel, 1, F, E) ||
        !batch_alike(w, n_sel, 2, E, F))
        return false;
    enum { TOK = CUQ_GROUP_TOK };
    int64_t A = 0, C = 0, U = 0; /* rows, chunks, the most rows of an expert by GEMMs */
    for (int j = 0; j < n_sel; j++) {
        const int64_t c = cnt[sel[j]];
        if (c < 1 || c > n_tok) return false;
        A += c;
        if (mb_by_gemm(cb, c, E, F))
            U = HY_MAX(U, c);
        else
            C += (c + TOK - 1) / TOK;
    }
    if (C > 65535 || A > INT32_MAX) return false;
    /* each token's count of experts: its slots */
    if (cb->mb_k_n < n_tok) {
        free(cb->mb_k);
        cb->mb_k = mem_xcalloc((size_t)n_tok, sizeof(int32_t));
        cb->mb_k_n = n_tok;
    }
    int32_t *kn = cb->mb_k;
    memset(kn, 0, (size_t)n_tok * sizeof(int32_t));
    int k = 0;
    for (int j = 0; j < n_sel; j++)
        for (int64_t i = 0; i < cnt[sel[j]]; i++) {
            const int32_t t = tok[sel[j] * ld + i];
            if (t < 0 || t >= n_tok) return false;
            k = HY_MAX(k, ++kn[t]);
        }
    const size_t o_slot = cuda_align16((size_t)A * 4),
                 o_alpha = o_slot + cuda_align16((size_t)(n_tok * k) * 4),
                 o_gu = o_alpha + cuda_align16((size_t)(n_tok * k) * 4),
                 o_d = o_gu + (size_t)C * sizeof(struct cuq_chunk),
                 total = o_d + (size_t)C * sizeof(struct cuq_chunk);
    /* gathered x and h with TOK - 1 rows after the last (read, not used),
     * o, and the up outputs of an expert by GEMMs */
    const size_t xg = cuda_align16((size_t)((A + TOK - 1) * E) * 4),
                 hg = cuda_align16((size_t)((A + TOK - 1) * F) * 4),
                 og = cuda_align16((size_t)(A * E) * 4), ug = (size_t)(U * F) * 4;
    if (!grow_dev(cb, (void **)&cb->mb_x, &cb->mb_x_bytes, xg + hg + og + ug, true) ||
        !grow_dev(cb, &cb->mb_dev, &cb->mb_dev_bytes, total, true))
        return false;
    /* the last upload from mb_host has left before it is written again */
    if (!CK(cudaEventSynchronize(cb->mb_up)) ||
        !ensure_host(cb, &cb->mb_host, &cb->mb_host_bytes, total))
        return true;
    uint8_t *h = cb->mb_host;
    int32_t *tok_g = (int32_t *)h, *slot = (int32_t *)(h + o_slot);
    float *alpha = (float *)(h + o_alpha);
    struct cuq_chunk *cgu = (struct cuq_chunk *)(h + o_gu), *cd = (struct cuq_chunk *)(h + o_d);
    for (int64_t i = 0; i < n_tok * k; i++) {
        slot[i] = -1;
        alpha[i] = 0.0f;
    }
    memset(kn, 0, (size_t)n_tok * sizeof(int32_t));
    int64_t a = 0, ci = 0;
    for (int j = 0; j < n_sel; j++) { /* experts in increasing order: each token's slots too */
        const int64_t c = cnt[sel[j]];
        for (int64_t i = 0; i < c; i++) {
            const int32_t t = tok[sel[j] * ld + i];
            const int64_t s = (int64_t)t * k + kn[t]++;
            tok_g[a + i] = t;
            slot[s] = (int32_t)(a + i);
            alpha[s] = wt[sel[j] * ld + i];
        }
        const int64_t kc = mb_by_gemm(cb, c, E, F) ? 0 : c; /* its rows in chunks */
        for (int64_t q = 0; q < kc; q += TOK, ci++) {
            const int32_t a0 = (int32_t)(a + q), nq = (int32_t)HY_MIN((int64_t)TOK, c - q);
            cgu[ci] = (struct cuq_chunk){w[3 * j].data, w[3 * j + 1].data, a0, nq};
            cd[ci] = (struct cuq_chunk){w[3 * j + 2].data, NULL, a0, nq};
        }
        a += c;
    }
    uint8_t *d = cb->mb_dev;
    float *X = cb->mb_x, *H = (float *)((uint8_t *)cb->mb_x + xg),
          *O = (float *)((uint8_t *)cb->mb_x + xg + hg),
          *Up = (float *)((uint8_t *)cb->mb_x + xg + hg + og);
    cb->hx_src = NULL;
    if (!CK(cudaMemcpyAsync(d, h, total, cudaMemcpyHostToDevice, cb->st)) ||
        !CK(cudaEventRecord(cb->mb_up, cb->st)))
        return true;
    int pi = prof_begin(cb);
    if (!CK(cuk_gather_f32(x, E, (const int32_t *)d, A, X, cb->st))) return true;
    prof_end(cb, pi, "moe batch gather", UINT32_MAX);
    if (C > 0) {
        pi = prof_begin(cb);
        if (!CK(cuq_group(w[0].type, true, (const struct cuq_chunk *)(d + o_gu), (int)C,
                          w[0].row_bytes, F, E, X, H, F, cb->st)))
            return true;
        prof_end_shape(cb, pi, "moe batch gate/up", w[0].type, F, E);
        pi = prof_begin(cb);
        if (!CK(cuq_group(w[2].type, false, (const struct cuq_chunk *)(d + o_d), (int)C,
                          w[2].row_bytes, E, F, H, O, E, cb->st)))
            return true;
        prof_end_shape(cb, pi, "moe batch down", w[2].type, E, F);
    }
    a = 0;
    for (int j = 0; j < n_sel && U > 0 && !cb->err; j++) { /* the GEMM experts */
        const int64_t c = cnt[sel[j]];
        if (mb_by_gemm(cb, c, E, F)) {
            const struct backend_weight *e = &w[3 * j];
            float *hr = H + a * F;
            bool x16 = false;
            pi = prof_begin(cb);
            gpu_matmul(cb, e[0].type, e[0].data, e[0].row_bytes, F, E, X + a * E, c, hr, F, &x16,
                       true);
            gpu_matmul(cb, e[1].type, e[1].data, e[1].row_bytes, F, E, X + a * E, c, Up, F, &x16,
                       true);
            CK(cuk_silu_mul(hr, Up, c * F, cb->st));
            x16 = false;
            gpu_matmul(cb, e[2].type, e[2].data, e[2].row_bytes, E, F, hr, c, O + a * E, E, &x16,
                       true);
            prof_end(cb, pi, "moe batch expert gemms", UINT32_MAX);
        }
        a += c;
    }
    pi = prof_begin(cb);
    CK(cuk_moe_combine(y, O, (const int32_t *)(d + o_slot), (const float *)(d + o_alpha), n_tok, k,
                       E, cb->st));
    prof_end(cb, pi, "moe batch combine", UINT32_MAX);
    return true;
}

/* Whether slices g0 .. g1 - 1 of the n experts w + 3 * js[i] can share
 * multi-product launches with the first expert's slice g0: each alike with it
 * (multi_alike) and of its row count. */
static bool experts_alike(const struct backend_weight *w, const int *js, int n, int g0, int g1)
{
    const struct backend_weight *w0 = &w[3 * js[0] + g0];
    for (int i = 0; i < n; i++)
        for (int g = g0; g < g1; g++) {
            const struct backend_weight *s = &w[3 * js[i] + g];
            if (!multi_alike(s, w0) || s->n_rows != w0->n_rows) return false;
        }
    return true;
}

/* Gate and up with SwiGLU of the n experts w + 3 * js[i], expert i's into
 * h + i * n_rows, several experts to a kernel (as many pairs as it takes)
 * while every slice is in device memory with one type and shape (each
 * product the one cu_matmul_fused computes). Returns how many of the first
 * experts it queued; the caller runs the rest one by one. */
static int moe_gate_up(struct cuda_backend *cb, const struct backend_weight *w, const int *js,
                       int n, const float *x, float *h)
{
    if (n < 2 || !cb->group_experts || !experts_alike(w, js, n, 0, 2)) return 0;
    const struct backend_weight *w0 = &w[3 * js[0]];
    static const char *const name[2] = {"matvec swiglu experts", "norm+matvec swiglu experts"};
    int done = 0;
    while (done < n) {
        const int np = HY_MIN(n - done, CUQ_MULTI_MAX / 2);
        struct cuq_multi m = {.n_w = 2 * np, .ep = CUQ_EP_SWIGLU};
        for (int p = 0; p < np; p++) {
            const struct backend_weight *e = &w[3 * js[done + p]];
            m.w[2 * p] = e[0].data;
            m.w[2 * p + 1] = e[1].data;
            m.n_rows[2 * p] = m.n_rows[2 * p + 1] = w0->n_rows;
            m.y[2 * p] = h + (int64_t)(done + p) * w0->n_rows;
        }
        if (!multi_op(cb, &m, w0, x, 1, 2 * np * w0->n_rows, name)) break;
        done += np;
    }
    return done;
}

/* The down products of the n experts w + 3 * js[i] (expert i's x at
 * h + i * n_cols) with their weighted adds into y, several experts to a
 * kernel (each expert's product into its row of o, [n][n_embd], then the
 * adds with factors alpha[js[i]] in one launch, in order) while every slice
 * is in device memory with one type and shape. Returns how many of the
 * first experts it queued; the caller runs the rest one by one. */
static int moe_down(struct cuda_backend *cb, const struct backend_weight *w, const int *js, int n,
                    const float *h, const float *alpha, float *o, float *y)
{
    if (n < 2 || !experts_alike(w, js, n, 2, 3)) return 0;
    const struct backend_weight *w0 = &w[3 * js[0] + 2];
    static const char *const name[2] = {"matvec experts", "norm+matvec experts"};
    enum { G = HY_MIN(CUQ_MULTI_MAX / 2, CUK_ADD_N_MAX) };
    const int64_t E = w0->n_rows;
    int done = 0;
    while (done < n) {
        const int ng = HY_MIN(n - done, G);
        struct cuq_multi m = {.n_w = ng, .ep = CUQ_EP_DIAG};
        float a[G];
        for (int i = 0; i < ng; i++) {
            m.w[i] = w[3 * js[done + i] + 2].data;
            m.n_rows[i] = E;
            m.y[i] = o + (int64_t)(done + i) * E;
            a[i] = alpha[js[done + i]];
        }
        if (!multi_op(cb, &m, w0, h + (int64_t)done * w0->n_cols, ng, ng * E, name)) break;
        const int pi = prof_begin(cb);
        if (!CK(cuk_add_n(y, o + (int64_t)done * E, a, ng, E, cb->st))) break;
        prof_end(cb, pi, "add_n", UINT32_MAX);
        done += ng;
    }
    return done;
}

/* pass_flag's word for the halves' activations (its own 32 bytes) */
#define PASS_HALF_FLAG 8

/* Gate and up bytes of an expert under which policy auto makes no halves
 * (HYPURA_CUDA_MOE_HALF_MIN_MIB sets it). None: while halves were whole,
 * qwen1.5-moe's (3.2 MB of gate and up) gained nothing, and a floor of 12 MiB
 * kept them off; with their rows shared they gained about 2 % there (five of
 * six pairs alternated on one H200). */
#define MOE_HALF_MIN_BYTES ((uint64_t)0)

/* A down product with its weighted add into y (moe_gpu_experts' last step). */
static void moe_down_add(struct backend *be, const struct backend_weight *d, const float *hj,
                         float alpha, float *o, float *y)
{
    struct cuda_backend *cb = cb_of(be);
    struct backend_weight v;
    struct wc_hold h;
    int n_held = 0;
    /* a host down the VRAM cache keeps: into its entry, then as one in VRAM */
    if (d->mem != BACKEND_MEM_BACKEND && cb->fuse_host && device_views(cb, d, 1, &v, &h, &n_held))
        d = &v;
    if (cb->err) return;
    bool done = false;
    if (d->mem == BACKEND_MEM_BACKEND) {
        struct cuq_multi m = {.n_w = 1,
                              .ep = CUQ_EP_AXPY,
                              .w = {d->data},
                              .n_rows = {d->n_rows},
                              .y = {y},
                              .alpha = alpha};
        static const char *const name[2] = {"matvec axpy", "norm+matvec axpy"};
        done = multi_op(cb, &m, d, hj, 1, d->n_rows, name);
    }
    if (!done) {
        cu_matmul(be, d, hj, 1, o);
        cu_add(be, y, o, alpha, d->n_rows);
    }
    if (n_held) wc_done(cb, &h);
}

/* The experts of one moe_token call that the GPU computes (w + 3 * js[i]):
 * gate and up of those whose slices are in VRAM in one kernel (h row i: the
 * i-th one's), the others' one by one, their downs with the weighted adds
 * into y. */
struct moe_gpu_side {
    struct backend *be;
    const struct backend_weight *w;
    const float *x, *alpha;
    float *y, *h, *h2, *o;
    int js[BACKEND_MOE_MAX_K];
    int n;
    /* the halves: experts w + 3 * hs[i], their activations at hh + i * F in
     * host memory (the CPU's pass writes them), taken up into h after the
     * GPU's own experts' rows; of gate and up rows [0, half_rows), the rest
     * copied and computed here; their down rows [0, half_down) are the
     * CPU's (0: none), the rest copied and computed here */
    int hs[BACKEND_MOE_MAX_K];
    int n_half;
    const float *hh;
    int64_t half_rows, half_down;
};

static void moe_gpu_experts_run(const struct moe_gpu_side *g);

/* moe_gpu_experts_run, its gate and up products kept from host_swiglu (an
 * expert's slices go by their own split) */
static void moe_gpu_experts(void *ctx)
{
    struct cuda_backend *cb = cb_of(((const struct moe_gpu_side *)ctx)->be);
    cb->in_moe = true;
    moe_gpu_experts_run(ctx);
    cb->in_moe = false;
}

static void moe_gpu_experts_run(const struct moe_gpu_side *g)
{
    struct backend *be = g->be;
    struct cuda_backend *cb = cb_of(be);
    const struct backend_weight *w = g->w;
    const int64_t F = w[0].n_rows;
    const int grouped = moe_gate_up(cb, w, g->js, g->n, g->x, g->h);
    const int downs =
        grouped == g->n ? moe_down(cb, w, g->js, g->n, g->h, g->alpha, g->o, g->y) : 0;
    for (int i = downs; i < g->n && !cb->err; i++) {
        const int j = g->js[i];
        const struct backend_weight *e = w + 3 * j;
        float *hj = g->h + i * F;
        if (i >= grouped) { /* gate and up with SwiGLU in one kernel where both are in VRAM */
            float *const hs[1] = {hj};
            cu_matmul_fused(be, BACKEND_FUSE_SWIGLU, e, 2, g->x, 1, hs, NULL, g->h2);
        }
        /* down with its weighted add into y in one kernel, where it is in VRAM */
        moe_down_add(be, &e[2], hj, g->alpha[j], g->o, g->y);
    }
}

/* Rows of a half's gate and up that the CPU computes for a share of them
 * (moe_split_choose's): whole units of MOE_HALF_ROW_UNIT rows, all of them
 * where that leaves the GPU none or the CPU none. */
#define MOE_HALF_ROW_UNIT 32
static int64_t moe_half_rows(int64_t F, double share)
{
    const int64_t r = (int64_t)(share * (double)F) / MOE_HALF_ROW_UNIT * MOE_HALF_ROW_UNIT;
    return r <= 0 || r >= F ? F : r;
}

/* Rows of a half's down that the CPU computes for a share of them: as
 * moe_half_rows rounds them, none where that leaves the CPU none or the GPU
 * none. */
static int64_t moe_half_down_rows(int64_t E, double share)
{
    const int64_t r = moe_half_rows(E, share);
    return r < E ? r : 0;
}

/* The key of rows [r, ...) of the slice keyed key (0: none): a bijection of
 * key for each r (distinct slices keep distinct keys; the finalizer of
 * splitmix64 scatters them away from the slices' own), never 0. */
static uint64_t rows_key(uint64_t key, int64_t r)
{
    if (!key) return 0;
    uint64_t z = key ^ (0x9e3779b97f4a7c15ull * (uint64_t)(r + 1));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

/* Rows [r, n_rows) of a half's slices (n of them from e: gate and up, or
 * its down): the GPU's share, keyed apart from the whole slices (0: not
 * cached, as the slice). */
static void half_rest(const struct backend_weight *e, int n, int64_t r, struct backend_weight *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = e[i];
        out[i].data = (const uint8_t *)e[i].data + (size_t)r * e[i].row_bytes;
        out[i].n_rows = e[i].n_rows - r;
        out[i].key = rows_key(e[i].key, r);
    }
}

/* The halves' downs: their rows of gate and up past half_rows computed
 * here, their activations up from hh once the pass's half flag has reached
 * seq (seq 0: the pass is over, copied as they are), then each down with
 * its add into y. */
static void moe_half_downs(const struct moe_gpu_side *g, uint32_t seq)
{
    struct backend *be = g->be;
    struct cuda_backend *cb = cb_of(be);
    if (!g->n_half || cb->err) return;
    const int64_t F = g->w[0].n_rows, r = g->half_rows, n = g->n_half * F;
    float *hd = g->h + g->n * F;
    for (int i = 0; r < F && i < g->n_half && !cb->err; i++) {
        struct backend_weight gu[2];
        half_rest(&g->w[3 * g->hs[i]], 2, r, gu);
        float *const ys[1] = {hd + i * F + r};
        cb->wc_cold = true;
        cu_matmul_fused(be, BACKEND_FUSE_SWIGLU, gu, 2, g->x, 1, ys, NULL, g->h2);
        cb->wc_cold = false;
    }
    if (cb->err) return;
    const int pi = prof_begin(cb);
    uint32_t *flag = cb->pass_flag + PASS_HALF_FLAG;
    /* one copy where every row is the CPU's (the halves' rows contiguous),
     * else the first r of each half's */
    const int64_t len = r == F ? n : r;
    for (int i = 0; i < (r == F ? 1 : g->n_half); i++)
        if (seq ? !CK(cuk_wait_copy(hd + i * F, g->hh + i * F, len, flag,
                                    cb->pass_dflag + PASS_HALF_FLAG, seq, cb->st))
                : !small_copy(cb, hd + i * F, len, g->hh + i * F, len, len, 1,
                              cudaMemcpyHostToDevice, cb->st))
            return;
    prof_end(cb, pi, "wait for the halves", UINT32_MAX);
    /* the down rows past the CPU's (cold, as the gate and up rows above) */
    const int64_t dr = g->half_down;
    for (int i = 0; i < g->n_half && !cb->err; i++) {
        const int j = g->hs[i];
        struct backend_weight d = g->w[3 * j + 2];
        if (dr) half_rest(&g->w[3 * j + 2], 1, dr, &d);
        cb->wc_cold = dr > 0;
        moe_down_add(be, &d, hd + i * F, g->alpha[j], g->o + dr, g->y + dr);
        cb->wc_cold = false;
    }
}

/* The share of prefetch's guessed slices that the next moe_token must read
 * below which it only guesses (a wrong guess's copy holds the PCIe link
 * that the token's own copies need), and the weight of one call's share in
 * the average. */
#define PF_HIT_RATE_MIN  0.5
#define PF_HIT_RATE_STEP 0.2

/* The share of its copies that GPU products read below which prefetch
 * stops copying (a right guess's copy goes unread where the CPU takes that
 * expert's gate and up: whole, or as a half), and the calls after which it
 * copies once anyway while that share is low, to measure it again. */
#define PF_USE_RATE_MIN 0.5
#define PF_PROBE_CALLS  8

/* backend.h's prefetch: host weights that are stable, keyed and not in the
 * VRAM cache are copied into entries of it on the copy stream, behind the
 * copies queued before (this layer's experts), while the compute stream
 * goes on (the next layer's attention); an entry's first reader waits for
 * its copy. As many of them, in order, as pf_bytes allows (at least one,
 * at most half the cache's entries): moe_token moves that by whether the
 * copies had landed when their products came. The slices taken are noted as
 * the guess that the next moe_token scores; while fewer than
 * PF_HIT_RATE_MIN of the guesses come true, nothing is copied (the guesses
 * are still made and scored, so that the copies resume when they improve).
 * The copies of the call before are scored too, by whether a GPU product
 * read them; while fewer than PF_USE_RATE_MIN of them are, nothing is copied
 * but at every PF_PROBE_CALLS-th call. Not with --gpu-host cpu. */
static void cu_prefetch(struct backend *be, const struct backend_weight *w, int n)
{
    struct cuda_backend *cb = op_mark(be);
    cb->pf_n_guess = 0;
    if (cb->err || !cb->prefetch || cb->policy == CUDA_HOST_CPU) return;
    if (cb->pf_n_copied) {
        int used = 0;
        for (int i = 0; i < cb->pf_n_copied; i++) {
            const struct wc_entry *en = &cb->wce[cb->pf_copied[i]];
            used += en->key == cb->pf_copied_key[i] && en->filled && !en->pending;
        }
        cb->pf_use_rate += PF_HIT_RATE_STEP * ((double)used / cb->pf_n_copied - cb->pf_use_rate);
        cb->pf_n_copied = 0;
    }
    const bool copy = cb->pf_hit_rate >= PF_HIT_RATE_MIN &&
                      (cb->pf_use_rate >= PF_USE_RATE_MIN || cb->pf_idle >= PF_PROBE_CALLS);
    cb->pf_idle = copy ? 0 : cb->pf_idle + 1;
    double queued = 0;
    for (int i = 0, slices = 0; i < n && slices < cb->wc_n / 2; i++) {
        const struct backend_weight *wi = &w[i];
        if (wi->mem != BACKEND_MEM_HOST || !wi->stable || !wi->key) continue;
        const size_t bytes = (size_t)wi->n_rows * wi->row_bytes;
        if (slices > 0 && queued + (double)bytes > cb->pf_bytes) break;
        if (cb->pf_n_guess == (int)HY_ARRAY_LEN(cb->pf_guess)) break;
        /* a slice the cache holds, or cannot hold, is not guessed; copying,
         * one it can hold gets an entry */
        int e = -1;
        bool take;
        if (copy) {
            bool hit;
            e = wc_lookup(cb, wi->key, bytes, &hit);
            take = e >= 0 && !hit;
        } else {
            take = bytes <= cb->wc_entry_bytes && wc_find(cb, wi->key) < 0;
        }
        if (!take) continue;
        cb->pf_guess[cb->pf_n_guess++] = wi->key;
        queued += (double)bytes;
        slices++;
        if (!copy) continue;
        struct wc_entry *en = &cb->wce[e];
        if (!en->fill_ev && !CK(cudaEventCreateWithFlags(&en->fill_ev, cudaEventDisableTiming)))
            return;
        if (!wc_await_readers(cb, e) ||
            !CK(cudaMemcpyAsync(cb->wc + en->off, wi->data, bytes, cudaMemcpyHostToDevice,
                                cb->cp)) ||
            !CK(cudaEventRecord(en->fill_ev, cb->cp)))
            return;
        en->filled = true;
        en->pending = true;
        cb->pf_copied[cb->pf_n_copied] = e;
        cb->pf_copied_key[cb->pf_n_copied++] = wi->key;
        cb->stats.host_copy_bytes += bytes;
        cb->stats.prefetch_slices++;
    }
}

/* backend.h's holds: key's filled entry of the VRAM cache (a prefetch's
 * still copying too: its reader waits for it), made the most recent, so
 * that the fills of the slices asked about after it take other entries.
 * Not with --gpu-host cpu, whose products do not look at the cache. */
static bool cu_holds(struct backend *be, uint64_t key)
{
    struct cuda_backend *cb = cb_of(be);
    if (cb->err || cb->policy == CUDA_HOST_CPU) return false;
    wc_touch(cb, key);
    const int e = wc_find(cb, key);
    if (e < 0) return false;
    cb->wce[e].tick = WC_WARM | ++cb->wc_tick;
    return true;
}

/* VRAM cache entry e as prefetch left it: 0 not a prefetch's (or read
 * since), 1 its copy has landed, 2 still copying. */
static int wc_prefetch_state(struct cuda_backend *cb, int e)
{
    if (!cb->wce[e].pending) return 0;
    const cudaError_t q = cudaEventQuery(cb->wce[e].fill_ev);
    if (q == cudaErrorNotReady) return 2;
    return CK(q) ? 1 : 0;
}

/* Whether prefetch's last copy has landed: its copies land in the order
 * queued (one stream), so then every one has, and one question of the
 * device answers for all of a moe_token call's slices. */
static bool pf_last_landed(struct cuda_backend *cb)
{
    if (!cb->pf_n_copied) return false;
    const int e = cb->pf_copied[cb->pf_n_copied - 1];
    if (cb->wce[e].key != cb->pf_copied_key[cb->pf_n_copied - 1] || !cb->wce[e].fill_ev)
        return false;
    const cudaError_t q = cudaEventQuery(cb->wce[e].fill_ev);
    return q != cudaErrorNotReady && CK(q);
}

/* Calls after which the rate of a count of CPU experts that the split has
 * not used since is stale: one call measured slow (a host busy for a moment)
 * would otherwise keep that count off for good. A stale count is tried at
 * the optimistic rate, and the rate it then shows replaces the old one. */
#define MOE_RATE_STALE_CALLS 512

/* Whether a rate last changed at moe_token call `at` is seen and not stale. */
static bool rate_fresh(const struct cuda_backend *cb, double rate, uint64_t at)
{
    return rate > 0 && cb->moe_seq - at <= MOE_RATE_STALE_CALLS;
}

static bool moe_rate_fresh(const struct cuda_backend *cb, bool beside, int n)
{
    return rate_fresh(cb, cb->moe_cpu_rate[beside][n], cb->moe_rate_at[beside][n]);
}

/* Calls over which the rate of a count of CPU experts that the split has
 * not used drifts from what its calls showed to the optimistic one. A
 * count the split stopped taking is measured no more: one slow measure (a
 * pass beside heavy copies, a host busy for a moment) kept it off for the
 * rest of a run. On an H200 the Mixtral shape's runs that had few halves
 * were among its slowest; with the drift, decode medians 301.3 -> 315.6
 * tok/s (eight runs each; the qwen1.5-moe shape's the same). */
#define MOE_RATE_DRIFT_CALLS 64

/* How long before the CPU's pass the split has its copies end, us (the
 * copies' time counted that much longer). A read across PCIe waits behind
 * the copies in flight: the CPU's sum, read by the GPU as the pass ends,
 * arrives later beside them (cuda_handoff_bench: a round trip 20 us beside
 * the copy engines, 8 us idle), and copies that end with the pass put that
 * wait on each host layer. On H200 machines (HYPURA_CUDA_COPY_LEAD_US,
 * partial decode at bench/gpu's budgets, the two alternated) 50 against 0:
 * the qwen1.5-moe shape faster in 10 of 11 pairs of runs over three
 * machines (medians 683.1 -> 755.4 tok/s on one) and in 2 of bench/gpu's 4
 * (-2.8 to +6.7 %), the Mixtral shape in 8 of 10; 100 slower than 50 on the
 * first. */
#define MOE_COPY_LEAD_US 50

/* The CPU rate the split weighs for n experts (beside copies or not): what
 * its calls showed, moving toward r0 as calls go by without one (over
 * cb->rate_drift calls; 0: held until stale); r0 where none is fresh. */
static double moe_rate_weighed(const struct cuda_backend *cb, bool beside, int n, double r0)
{
    if (!moe_rate_fresh(cb, beside, n)) return r0;
    return moe_split_rate_drift(cb->moe_cpu_rate[beside][n], r0,
                                cb->moe_seq - cb->moe_rate_at[beside][n], cb->rate_drift);
}

/* A CPU pass of nc experts (bytes of them) that ran from t0 to t1 (us),
 * beside copies or not: the stats and the rate the split uses, the CPU's
 * experts as they ran (a stale rate, fresh false, is replaced by this one). */
static void moe_cpu_seen(struct cuda_backend *cb, bool beside, int nc, uint64_t bytes, int64_t t0,
                         int64_t t1, bool fresh)
{
    cb->stats.moe_cpu_us += t1 - t0;
    double *r = &cb->moe_cpu_rate[beside][nc];
    if (!fresh) *r = 0;
    rate_update(r, (double)bytes, (double)(t1 - t0) * 1e-6);
    cb->moe_rate_at[beside][nc] = cb->moe_seq;
}

/* The PCIe rate of an earlier call's copies beside its CPU pass, once they
 * are done (asked after a call's pass has started: not on its way there). */
static void moe_pcie_seen(struct cuda_backend *cb)
{
    double *r = &cb->rates.moe_pcie_bytes_per_s;
    float ms = 0;
    if (timed_done(cb, &cb->mc_pending, cb->mc_t1) &&
        CK(cudaEventElapsedTime(&ms, cb->mc_t0, cb->mc_t1))) {
        if (!rate_fresh(cb, *r, cb->mc_at)) *r = 0; /* a stale rate is replaced */
        rate_update(r, (double)cb->mc_bytes, (double)ms * 1e-3);
        cb->mc_at = cb->moe_seq;
    }
}

/* The rate moe_token's split takes: the one its calls' copies showed while
 * fresh, else the one measured at start (optimistic, so that copies get
 * tried and measured again). */
static double moe_pcie_rate(struct cuda_backend *cb)
{
    const double r = cb->rates.moe_pcie_bytes_per_s;
    return rate_fresh(cb, r, cb->mc_at) ? r : cb->rates.pcie_h2d_bytes_per_s;
}

/* The half-life of the VRAM cache's values, in tokens (as the expert
 * cache's in RAM). */
#define WC_HALF_LIFE_TOKENS EXPERT_POLICY_HALF_LIFE_TOKENS

/* A moe_token call's routed slices, each a use in wc_hist, whichever side
 * computes it; the period (calls a token) learnt from the first layer's
 * return. */
static void moe_uses(struct cuda_backend *cb, const struct backend_weight *w, int k)
{
    if (!cb->wc_hist) return;
    const uint64_t layer = w[0].key >> 20;
    if (!cb->wc_layer0) {
        cb->wc_layer0 = layer;
        cb->wc_layer0_at = cb->moe_seq;
    } else if (!cb->wc_period_set && layer == cb->wc_layer0) {
        expert_history_set_period(cb->wc_hist, cb->moe_seq - cb->wc_layer0_at);
        cb->wc_period_set = true;
    }
    for (int i = 0; i < 3 * k; i++) wc_touch(cb, w[i].key);
}

/* A wait for the CPU's sum under which the GPU's side counts as the later
 * one (the add itself, reading the sum from host memory, takes a few us). */
#define MOE_GPU_LATE_US 20

/* The stats of an earlier call's GPU side timed beside its CPU pass, once
 * its events are done. */
static void moe_gpu_seen(struct cuda_backend *cb)
{
    float own = 0, wait = 0;
    if (timed_done(cb, &cb->mg_pending, cb->mg_t2) &&
        CK(cudaEventElapsedTime(&own, cb->mg_t0, cb->mg_t1)) &&
        CK(cudaEventElapsedTime(&wait, cb->mg_t1, cb->mg_t2))) {
        cb->stats.moe_gpu_timed++;
        cb->stats.moe_gpu_own_us += (int64_t)llround(own * 1e3);
        cb->stats.moe_gpu_wait_us += (int64_t)llround(wait * 1e3);
        cb->stats.moe_gpu_late += wait * 1e3 < MOE_GPU_LATE_US;
    }
}

/* The trace's line of the call whose pass took cpu_us (struct cuda_backend's
 * trace): its GPU side's events are read as they are (waited for). */
static void moe_trace_line(struct cuda_backend *cb, int64_t cpu_us)
{
    const struct moe_trace *t = &cb->tr;
    float own = -1e-3f, wait = -1e-3f, copy = -1e-3f, ahead = -1e-3f;
    if (t->gpu_timed && CK(cudaEventSynchronize(cb->mg_t2))) {
        CK(cudaEventElapsedTime(&own, cb->mg_t0, cb->mg_t1));
        CK(cudaEventElapsedTime(&wait, cb->mg_t1, cb->mg_t2));
    }
    if (t->copy_timed && CK(cudaEventSynchronize(cb->mc_t1))) {
        CK(cudaEventElapsedTime(&copy, cb->mc_t0, cb->mc_t1));
        /* the queue ahead of the call's copies, from its GPU side's start */
        if (t->gpu_timed) CK(cudaEventElapsedTime(&ahead, cb->mg_t0, cb->mc_t0));
    }
    const double pc = t->rate > 0 ? (double)t->cpu_bytes / t->rate * 1e6 : -1;
    const double pp = t->pcie > 0 ? (double)t->gpu_far / t->pcie * 1e6 : -1;
    fprintf(cb->trace,
            "%" PRIu64 " cpu %d half %d rows %" PRId64 "/%" PRId64 " down %" PRId64
            " cpu_mb %.1f far_mb %.1f "
            "rate %.1f pcie %.1f pred_cpu %.0f pred_pcie %.0f | cpu %" PRId64 " queue %" PRId64
            " gpu_own %.0f gpu_wait %.0f copy %.0f ahead %.0f copied_mb %.1f at %" PRId64
            " x_wait %" PRId64 " dl %" PRId64 " in %" PRId64 " chain %" PRId64 " look %" PRId64
            " split %" PRId64 " xd %" PRId64 "\n",
            t->seq, t->n_cpu, t->n_half, t->half_rows, t->F, t->half_down,
            (double)t->cpu_bytes / 1e6, (double)t->gpu_far / 1e6, t->rate / 1e9, t->pcie / 1e9, pc,
            pp, cpu_us, t->queue_us, (double)own * 1e3, (double)wait * 1e3, (double)copy * 1e3,
            (double)ahead * 1e3, (double)t->copied / 1e6, t->at_us, t->x_us, t->dl_us, t->in_us,
            t->chain_us, t->look_us, t->split_us, t->xd_us);
}

static void pass_join(struct cuda_backend *cb)
{
    if (!cb->pass_on) return;
    cb->pass_on = false;
    /* until the sum is complete, not until a worker that lost its core has
     * come back: the CPU backend's next op joins that one */
    const int64_t t1 = cpu_backend_pass_wait(cb->cpu);
    if (cb->pass_dense) {
        /* the rate the split takes: the pass's own, as cpu_rows times its call */
        const double sec = (double)(t1 - cb->pass_t0) * 1e-6;
        rate_update(&cb->rates.cpu_matvec_bytes_per_s, (double)cb->pass_bytes, sec);
        if (cb->pass_type < HY_TYPE_COUNT)
            rate_update(&cb->cpu_type_rate[cb->pass_type], (double)cb->pass_bytes, sec);
        prof_host(cb, "CPU rows", cb->pass_t0, t1);
        return;
    }
    moe_cpu_seen(cb, cb->pass_beside, cb->pass_nc, cb->pass_bytes, cb->pass_t0, t1, cb->pass_fresh);
    if (cb->trace) moe_trace_line(cb, t1 - cb->pass_t0);
    prof_host(cb, "CPU pass", cb->pass_t0, t1);
    int64_t ts, tf, ta;
    cpu_backend_pass_times(cb->cpu, &ts, &tf, &ta);
    if (ts >= cb->pass_t0 && tf >= ts && ta >= tf && t1 >= ta) {
        cb->stats.moe_pass_setup_us += ts - cb->pass_t0;
        cb->stats.moe_pass_wake_us += tf - ts;
        cb->stats.moe_pass_gate_up_us += ta - tf;
        cb->stats.moe_pass_down_us += t1 - ta;
    }
}

/* backend.h's moe_prepare: x comes down for the CPU's experts while the GPU
 * goes on (the shared expert) and the routes come down, instead of after:
 * with them, in their download's kernel, where one is to come. */
static void cu_moe_prepare(struct backend *be, const float *x, int64_t n)
{
    struct cuda_backend *cb = op_begin(be);
    cb->mx_src = cb->mx_defer = NULL;
    cb->mx_mark = 0;
    if (cb->err || cb->policy == CUDA_HOST_COPY) return;
    /* none started: the routes' download is to come, x goes with it */
    if (cb->zero_copy && !cb->dl_len) {
        cb->mx_defer = x;
        cb->mx_defer_len = n;
        return;
    }
    if (mx_send(cb, x, n)) {
        cb->mx_src = x;
        cb->mx_len = n;
    }
}

/* One token's routed experts (backend.h's moe_token). An expert whose
 * slices are all in VRAM (placed there, or VRAM cache hits) runs on the GPU;
 * one with slices in RAM runs either on the GPU, its slices copied over PCIe
 * into the VRAM cache, or whole on the CPU where it lies, the choice made
 * expert by expert (policy auto) so that the PCIe copies and the CPU's
 * products end together, by the measured rates; --gpu-host cpu or copy puts
 * all of them on that side. Under auto one of them may also be split (a
 * half, where that ends sooner): its gate and up on the CPU, first in the
 * pass, its down on the GPU, which takes the activations up once the pass
 * flags them and copies the down slice meanwhile; where the rates say so, the
 * GPU also takes some of the half's gate and up rows (copied, computed
 * before the wait), or the CPU the first rows of its down (the first of the
 * pass's downs, in its sum; the GPU copies the rest), so that both sides end
 * together. The CPU's experts start once x has come down
 * (it is ready: the routing was waited for); the calling thread queues the
 * GPU's experts and copies while the CPU's workers start on theirs (queued
 * first, the copies held the CPU's start back by the time the queuing took),
 * then joins them; their weighted sum goes up and is added last. */
static void cu_moe_token(struct backend *be, const float *x, const struct backend_weight *w,
                         const float *alpha, int k, float *y, float *h, float *h2, float *o)
{
    const int64_t t_in = timing_now_us();
    struct cuda_backend *cb = op_begin(be);
    cb->hx_src = NULL;
    pass_join(cb);
    if (cb->err || k <= 0) return;
    HY_ASSERT(k <= BACKEND_MOE_MAX_K);
    const int64_t E = w[0].n_cols, F = w[0].n_rows;
    bool on_cpu[BACKEND_MOE_MAX_K], far_of[BACKEND_MOE_MAX_K], half_of[BACKEND_MOE_MAX_K];
    /* the experts the CPU may take (every slice in RAM, one not in VRAM), in
     * order; the PCIe bytes of the others */
    struct moe_split_cand cand[BACKEND_MOE_MAX_K];
    int n_cand = 0;
    uint64_t far_other = 0;
    int pf_seen = 0, pf_late = 0; /* prefetched slices of this call; not landed yet */
    int pf_all = -1;              /* pf_last_landed: -1 not asked yet */
    for (int j = 0; j < k; j++) {
        const struct backend_weight *e = w + 3 * j;
        uint64_t far = 0, all = 0, gu = 0, gu_far = 0;
        bool host = true;
        for (int i = 0; i < 3; i++) {
            const uint64_t b = (uint64_t)e[i].n_rows * e[i].row_bytes;
            all += b;
            if (i < 2) gu += b;
            host = host && e[i].mem == BACKEND_MEM_HOST;
            if (e[i].mem == BACKEND_MEM_BACKEND) continue;
            const int en = wc_find(cb, e[i].key);
            if (en < 0) {
                far += b;
                if (i < 2) gu_far += b;
                continue;
            }
            /* a prefetch still copying: its bytes are ahead on PCIe */
            int pf = 0;
            if (cb->wce[en].pending) {
                if (pf_all < 0) pf_all = pf_last_landed(cb);
                pf = pf_all ? 1 : wc_prefetch_state(cb, en);
            }
            pf_seen += pf > 0;
            pf_late += pf == 2;
            if (pf == 2) far_other += b;
        }
        on_cpu[j] = half_of[j] = false;
        far_of[j] = far > 0;
        if (far && host && cb->policy != CUDA_HOST_COPY) {
            cand[n_cand++] =
                (struct moe_split_cand){.j = j, .all = all, .far = far, .gu = gu, .gu_far = gu_far};
        } else {
            far_other += far;
        }
    }
    const int64_t t_look = timing_now_us();
    /* policy auto: moe_split_choose orders the candidates (those with the
     * least in VRAM first) and picks how many the CPU takes, the CPU at the
     * rate its calls of that many experts showed (until seen, or once stale,
     * the matrix-vector rate: optimistic, so each count gets tried), the
     * copies at the PCIe rate; a half, where allowed, after the c whole ones */
    int n_cpu = n_cand, n_half = 0;
    int64_t half_rows = F, half_down = 0;
    double tr_rate[2] = {0, 0}, tr_pcie = 0; /* the split's rates, for the trace */
    if (cb->policy == CUDA_HOST_AUTO && n_cand &&
        (cb->moe_half == CUDA_MOE_HALF_ALL || cb->moe_half == CUDA_MOE_HALF_ROWS ||
         cb->moe_half == CUDA_MOE_HALF_DOWN)) {
        n_cpu = 0;
        n_half = n_cand;
        if (cb->moe_half == CUDA_MOE_HALF_ROWS) half_rows = moe_half_rows(F, 0.5);
        if (cb->moe_half == CUDA_MOE_HALF_DOWN) half_down = moe_half_down_rows(E, 0.5);
    } else if (cb->policy == CUDA_HOST_AUTO && n_cand) {
        const uint32_t ty = w[3 * cand[0].j].type;
        const double typed = ty < HY_TYPE_COUNT ? cb->cpu_type_rate[ty] : 0.0;
        const double r0 = typed > 0 ? typed : cb->rates.cpu_matvec_bytes_per_s;
        double rate[2][BACKEND_MOE_MAX_K + 1];
        for (int b = 0; b < 2; b++)
            for (int n = 0; n <= n_cand; n++) rate[b][n] = moe_rate_weighed(cb, b, n, r0);
        uint64_t gu_min = UINT64_MAX;
        for (int i = 0; i < n_cand; i++) gu_min = HY_MIN(gu_min, cand[i].gu);
        bool half = false;
        double share = 1, down = 0;
        tr_pcie = moe_pcie_rate(cb);
        n_cpu = moe_split_choose(
            cand, n_cand, far_other, rate[0], rate[1], tr_pcie, cb->copy_lead,
            cb->moe_half == CUDA_MOE_HALF_AUTO && gu_min >= cb->moe_half_min ? &half : NULL,
            cb->moe_rows ? &share : NULL, cb->moe_down ? &down : NULL);
        n_half = half;
        if (half) {
            half_rows = moe_half_rows(F, share);
            if (half_rows == F) half_down = moe_half_down_rows(E, down);
        }
        tr_rate[0] = rate[0][n_cpu + n_half];
        tr_rate[1] = rate[1][n_cpu + n_half];
    }
    /* the CPU's bytes, and the GPU side's copies beside them (what the
     * split weighed: the CPU's rate beside copies or alone) */
    uint64_t cpu_bytes = 0, gpu_far = far_other;
    for (int i = 0; i < n_cpu; i++) {
        on_cpu[cand[i].j] = true;
        cpu_bytes += cand[i].all;
    }
    for (int i = n_cpu; i < n_cpu + n_half; i++) {
        half_of[cand[i].j] = true;
        /* the down's rows the CPU takes, and its bytes not in VRAM */
        const uint64_t dn = (cand[i].all - cand[i].gu) / (uint64_t)E * (uint64_t)half_down;
        const uint64_t down_far = cand[i].far - cand[i].gu_far;
        cpu_bytes += cand[i].gu / (uint64_t)F * (uint64_t)half_rows + dn;
        gpu_far += down_far - HY_MIN(dn, down_far) +
                   (half_rows < F ? cand[i].gu / (uint64_t)F * (uint64_t)(F - half_rows) : 0);
    }
    for (int i = n_cpu + n_half; i < n_cand; i++) gpu_far += cand[i].far;
    const int n_pass = n_cpu + n_half; /* the CPU pass's experts */
    const int64_t t_split = timing_now_us();
    cb->stats.moe_calls++;
    cb->moe_seq++;
    moe_uses(cb, w, k);
    /* prefetch's guess for this call, scored: the share of its slices read here */
    if (cb->pf_n_guess) {
        int right = 0;
        for (int g = 0; g < cb->pf_n_guess; g++)
            for (int i = 0; i < 3 * k; i++)
                if (w[i].key == cb->pf_guess[g]) {
                    right++;
                    break;
                }
        cb->stats.prefetch_guessed += (uint64_t)cb->pf_n_guess;
        cb->stats.prefetch_guessed_right += (uint64_t)right;
        cb->pf_hit_rate += PF_HIT_RATE_STEP * ((double)right / cb->pf_n_guess - cb->pf_hit_rate);
        cb->pf_n_guess = 0;
    }
    /* prefetch takes more while its copies land in time, less once they do not */
    if (pf_seen)
        cb->pf_bytes =
            HY_MAX(PF_BYTES_MIN, HY_MIN(PF_BYTES_MAX, cb->pf_bytes * (pf_late ? 0.8 : 1.25)));
    for (int j = 0; j < k; j++) {
        if (on_cpu[j])
            cb->stats.moe_cpu_experts++;
        else if (half_of[j]) {
            cb->stats.moe_half_experts++;
            cb->stats.moe_half_split += half_rows < F;
            cb->stats.moe_half_down += half_down > 0;
        } else if (far_of[j])
            cb->stats.moe_copy_experts++;
        else
            cb->stats.moe_gpu_experts++;
    }

    /* x down for the CPU's experts, unless moe_prepare has sent it */
    const bool x_sent = cb->mx_src == x && cb->mx_len == E;
    /* down with the routes: here once they were waited for, else at dl_done */
    const bool x_dl = x_sent && cb->mx_mark;
    const bool x_here = x_dl && cb->mx_mark <= cb->st_seen;
    cb->mx_src = cb->mx_defer = NULL;
    cb->mx_mark = 0;
    float *hg = NULL, *hu = NULL, *hd = NULL;
    if (n_pass) {
        const size_t need = (size_t)(n_pass * (2 * F + E)) * sizeof(float);
        if (!ensure_host(cb, (void **)&cb->hm, &cb->hm_bytes, need)) return;
        hg = cb->hm;
        hu = hg + n_pass * F;
        hd = hu + n_pass * F;
        if (!x_sent && !mx_send(cb, x, E)) return;
    }
    struct moe_gpu_side g = {.be = be,
                             .w = w,
                             .x = x,
                             .alpha = alpha,
                             .y = y,
                             .h = h,
                             .h2 = h2,
                             .o = o,
                             .hh = hg,
                             .half_rows = half_rows,
                             .half_down = half_down};
    for (int j = 0; j < k; j++)
        if (!on_cpu[j] && !half_of[j]) g.js[g.n++] = j;
    if (!n_pass) {
        moe_pcie_seen(cb);
        moe_gpu_experts(&g);
        return;
    }

    /* the CPU's experts, summed in hy (free once its last upload has left) */
    const int64_t tw = timing_now_us();
    if (!x_here && !CK(cudaEventSynchronize(x_dl ? cb->dl_done : cb->mx_down))) return;
    const int64_t t_xd = timing_now_us();
    if (!ensure_host(cb, (void **)&cb->hy, &cb->hy_bytes, (size_t)E * sizeof(float))) return;
    if (!hy_free_wait(cb)) return;
    /* the pass: the halves first, then the whole ones, in call order */
    struct backend_weight cw[3 * BACKEND_MOE_MAX_K];
    float ca[BACKEND_MOE_MAX_K];
    int nc = 0;
    for (int side = 0; side < 2; side++)
        for (int j = 0; j < k; j++) {
            if (!(side ? on_cpu[j] : half_of[j])) continue;
            if (!side) g.hs[g.n_half++] = j;
            for (int i = 0; i < 3; i++) cw[3 * nc + i] = w[3 * j + i];
            ca[nc++] = alpha[j];
        }
    cb->stats.host_cpu_bytes += cpu_bytes;
    memset(cb->hy, 0, (size_t)E * sizeof(float));
    const int64_t t0 = timing_now_us();
    cb->stats.moe_x_wait_us += t0 - tw;
    /* the GPU's experts queued by this thread while the workers start on the CPU's */
    const uint32_t seq = ++cb->pass_seq;
    cpu_backend_moe_token_start(cb->cpu, cb->mx, cw, ca, nc, cb->hy, hg, hu, hd, n_half, half_rows,
                                half_down, cb->pass_flag + PASS_HALF_FLAG, cb->pass_flag, seq);
    moe_pcie_seen(cb);
    cb->pass_on = true;
    cb->pass_dense = false;
    cb->pass_nc = nc;
    cb->pass_bytes = cpu_bytes;
    cb->pass_t0 = t0;
    cb->pass_beside = gpu_far > 0;
    cb->pass_fresh = moe_rate_fresh(cb, cb->pass_beside, nc);
    cb->tr = (struct moe_trace){.seq = cb->moe_seq,
                                .n_cpu = n_cpu,
                                .n_half = n_half,
                                .half_rows = half_rows,
                                .F = F,
                                .half_down = half_down,
                                .cpu_bytes = cpu_bytes,
                                .gpu_far = gpu_far,
                                .rate = tr_rate[gpu_far > 0],
                                .pcie = tr_pcie,
                                .at_us = t0 - cb->trace_t0,
                                .x_us = t0 - tw,
                                .dl_us = cb->tr_dl_us ? t0 - cb->tr_dl_us : -1,
                                .in_us = t0 - t_in,
                                .chain_us = cb->tr_chain_us,
                                .look_us = t_look - t_in,
                                .split_us = t_split - t_in,
                                .xd_us = t_xd - t_in};
    cb->tr_chain_us = -1;
    moe_gpu_seen(cb);
    const bool gpu_timed =
        cb->async_cpu && !cb->mg_pending && CK(cudaEventRecord(cb->mg_t0, cb->st));
    cb->cpu_busy = true;
    /* the call's copies timed beside the pass (one call at a time) */
    const bool timed = cb->async_cpu && !cb->mc_pending && CK(cudaEventRecord(cb->mc_t0, cb->cp));
    const uint64_t copied0 = cb->stats.host_copy_bytes;
    moe_gpu_experts(&g);
    if (cb->async_cpu) moe_half_downs(&g, seq);
    const uint64_t copied = cb->stats.host_copy_bytes - copied0;
    cb->tr.copied = copied;
    cb->tr.queue_us = timing_now_us() - t0;
    if (timed && copied >= RATE_MIN_BYTES && CK(cudaEventRecord(cb->mc_t1, cb->cp))) {
        cb->tr.copy_timed = true;
        cb->mc_pending = true;
        cb->mc_bytes = copied;
    }
    cb->cpu_busy = false;
    if (cb->async_cpu) {
        /* the stream waits for the pass's sum and adds it; this thread
         * returns and queues what follows (pass_join: stats and rate) */
        if (gpu_timed && !CK(cudaEventRecord(cb->mg_t1, cb->st))) return;
        const int pi = prof_begin(cb);
        if (CK(cuk_wait_add(y, cb->hy, E, cb->pass_flag, cb->pass_dflag, seq, cb->st)))
            hy_free_record(cb);
        prof_end(cb, pi, "wait for the CPU's sum, add", UINT32_MAX);
        if (gpu_timed && CK(cudaEventRecord(cb->mg_t2, cb->st)))
            cb->mg_pending = cb->tr.gpu_timed = cb->tr_t2 = true;
        return;
    }
    pass_join(cb); /* this thread takes what is left of the pass */
    moe_half_downs(&g, 0);
    if (cb->err) return;
    /* o's last reader is queued before this copy on the same stream */
    if (!small_copy(cb, o, E, cb->hy, E, E, 1, cudaMemcpyHostToDevice, cb->st)) return;
    hy_free_record(cb);
    cu_add(be, y, o, 1.0f, E);
}

/* multi_op where the product was checked beforehand (cuq_multi_supports): a
 * refusal is an internal error naming what. */
static bool multi_checked(struct cuda_backend *cb, struct cuq_multi *m,
                          const struct backend_weight *w0, const float *x, int64_t n_tok,
                          int64_t rows, const char *const name[2], const char *what)
{
    if (multi_op(cb, m, w0, x, n_tok, rows, name)) return true;
    fail(cb, HY_ERR_INTERNAL, "cuq_matvec_multi", what, __FILE__, __LINE__);
    return false;
}

/* An expert's gate and up bytes from which cu_moe_routed gives them a
 * launch of their own: the Mixtral shape's (66 MB, 6.8 waves of tiles on an
 * H200) took 23.1 us a launch, the two of a token in one launch 50.5 us
 * against 2 x 23.1 + 3.8 apart (decode of its 4 layers +2.6 %, 1713.2 ->
 * 1758.1 tok/s); qwen1.5-moe's 3.2 MB make less than a wave and are
 * grouped. Where between them one launch an expert starts to pay is not
 * measured. */
#define EXPERT_OWN_BYTES ((uint64_t)32 << 20)

/* backend.h's moe_routed: gate and up with SwiGLU of the experts (and the
 * shared expert's, as pairs of the experts' row count where its rows are
 * a multiple of it) up to eight pairs a kernel (one where an expert's gate
 * and up are EXPERT_OWN_BYTES or more), each kernel finding the
 * experts' slices from the ids the route op left in device memory; the
 * experts' downs likewise up to eight a kernel; then the shared expert's
 * down, whose epilogue adds the experts' shares in ascending order of the
 * ids and its own (without a shared expert, or where its kernels cannot,
 * one more kernel adds them). No routes come down, the host goes on
 * queuing. Nothing is queued where the multi-product kernels cannot take
 * the slices (checked first). */
static bool cu_moe_routed(struct backend *be, const float *x, const struct backend_weight *w,
                          const size_t *stride, const int32_t *ids, const float *alpha, int k,
                          const struct backend_weight *shw, const float *sh_gate, float *sh,
                          float *y, float *h, float *h2, float *o)
{
    struct cuda_backend *cb = op_begin(be);
    if (cb->err) return true; /* backend_sync reports it */
    const struct backend_weight *g = &w[0], *u = &w[1], *d = &w[2];
    const int64_t F = g->n_rows, E = d->n_rows;
    if (!cb->routed || !cb->group_experts || k < 1 || k > CUK_MOE_COMBINE_MAX ||
        k > BACKEND_MOE_MAX_K || g->mem != BACKEND_MEM_BACKEND || !multi_alike(u, g) ||
        u->n_rows != F || stride[1] != stride[0] || d->mem != BACKEND_MEM_BACKEND ||
        d->n_cols != F || g->n_cols != E || stride[0] > INT64_MAX || stride[2] > INT64_MAX ||
        !cuq_multi_supports(g->type, g->data, g->row_bytes, E, x, (int64_t)stride[0]) ||
        !cuq_multi_supports(d->type, d->data, d->row_bytes, F, h, (int64_t)stride[2]))
        return false;
    /* the shared expert: its gate/up in one kernel, as pairs of F rows in
     * the experts' kernels where its rows are a multiple of F, else a pair
     * of its own */
    int n_sp = 0;
    if (shw) {
        const struct backend_weight *sg = &shw[0], *su = &shw[1];
        if (sg->mem != BACKEND_MEM_BACKEND || !multi_alike(su, sg) ||
            shw[2].mem != BACKEND_MEM_BACKEND || sg->n_cols != E || su->n_rows != sg->n_rows ||
            shw[2].n_rows != E || shw[2].n_cols != sg->n_rows ||
            !cuq_multi_supports(sg->type, sg->data, sg->row_bytes, E, x, 0) ||
            !cuq_multi_supports(sg->type, su->data, sg->row_bytes, E, x, 0))
            return false;
        if (multi_alike(sg, g) && sg->n_rows % F == 0 && sg->n_rows / F <= CUQ_MULTI_MAX / 2)
            n_sp = (int)(sg->n_rows / F);
    }
    static const char *const gu_name[2] = {"matvec swiglu routed", "norm+matvec swiglu routed"};
    if (shw && !n_sp) {
        struct cuq_multi m = {.n_w = 2,
                              .ep = CUQ_EP_SWIGLU,
                              .w = {shw[0].data, shw[1].data},
                              .n_rows = {shw[0].n_rows, shw[0].n_rows},
                              .y = {h2}};
        if (!multi_checked(cb, &m, &shw[0], x, 1, 2 * shw[0].n_rows, gu_name,
                           "shared gate/up refused"))
            return true;
    }
    static const char *const d_name[2] = {"matvec routed", "norm+matvec routed"};
    enum { G = CUQ_MULTI_MAX / 2 };
    /* an expert's gate and up that fill the GPU for several waves of tiles
     * each: a launch of their own (EXPERT_OWN_BYTES) */
    const uint64_t gu_bytes = 2 * (uint64_t)F * g->row_bytes;
    const int gu_max = cb->expert_own && gu_bytes >= cb->expert_own ? 1 : G;
    for (int done = 0; done < n_sp + k;) { /* pairs: the shared expert's, then the experts' */
        const int np = HY_MIN(n_sp + k - done, gu_max);
        const int from = HY_MAX(0, n_sp - done); /* this launch's first routed pair */
        struct cuq_multi m = {.n_w = 2 * np,
                              .ep = CUQ_EP_SWIGLU,
                              .ids = from < np ? ids + (done + from - n_sp) : NULL,
                              .estride = (int64_t)stride[0],
                              .ids_from = from};
        for (int p = 0; p < np; p++) {
            const int q = done + p;
            const size_t off = q < n_sp ? (size_t)q * (size_t)F * g->row_bytes : 0;
            m.w[2 * p] = q < n_sp ? (const uint8_t *)shw[0].data + off : g->data;
            m.w[2 * p + 1] = q < n_sp ? (const uint8_t *)shw[1].data + off : u->data;
            m.n_rows[2 * p] = m.n_rows[2 * p + 1] = F;
            m.y[2 * p] = q < n_sp ? h2 + (int64_t)q * F : h + (int64_t)(q - n_sp) * F;
        }
        if (!multi_checked(cb, &m, g, x, 1, 2 * np * F, gu_name, "routed gate/up refused"))
            return true;
        done += np;
    }
    for (int done = 0; done < k;) {
        const int np = HY_MIN(k - done, HY_MIN(G, CUQ_MATVEC_MAX_TOK));
        struct cuq_multi m = {
            .n_w = np, .ep = CUQ_EP_DIAG, .ids = ids + done, .estride = (int64_t)stride[2]};
        for (int p = 0; p < np; p++) {
            m.w[p] = d->data;
            m.n_rows[p] = E;
            m.y[p] = o + (int64_t)(done + p) * E;
        }
        if (!multi_checked(cb, &m, d, h + (int64_t)done * F, np, np * E, d_name,
                           "routed down refused"))
            return true;
        done += np;
    }
    cb->stats.moe_calls++;
    cb->stats.moe_gpu_experts += (uint64_t)k;
    if (shw) {
        /* the shared expert's down adds the experts' shares and its own
         * (the combine's sums in its epilogue); else its product, then the
         * combine */
        static const char *const sd_name[2] = {"matvec shared down + combine",
                                               "norm+matvec shared down + combine"};
        struct cuq_multi m = {.n_w = 1,
                              .ep = CUQ_EP_MOE,
                              .w = {shw[2].data},
                              .n_rows = {E},
                              .y = {y},
                              .moe_o = o,
                              .moe_alpha = alpha,
                              .moe_gate = sh_gate,
                              .moe_ids = ids,
                              .moe_k = k};
        if (k <= CUQ_MOE_MAX_K && multi_op(cb, &m, &shw[2], h2, 1, E, sd_name)) return true;
        cu_matmul(be, &shw[2], h2, 1, sh);
    }
    const int pi = prof_begin(cb);
    if (!CK(cuk_moe_token_combine(y, o, ids, alpha, k, E, shw ? sh : NULL, sh_gate, cb->st,
                                  cb->pdl)))
        return true;
    prof_end(cb, pi, "moe combine", UINT32_MAX);
    return true;
}

static void cu_free(struct backend *be)
{
    struct cuda_backend *cb = cb_of(be);
    cudaSetDevice(cb->dev);
    pass_join(cb);
    cudaDeviceSynchronize();
    if (cb->trace) fclose(cb->trace);
    kt_write(cb);
    if (cb->prof) prof_report(cb);
    prof_free(cb);
    cudaFree(cb->x16);
    cudaFree(cb->w16);
    cudaFree(cb->ids);
    cudaFree(cb->ar);
    cudaFree(cb->part);
    cudaFree(cb->topk_dev);
    cudaFree(cb->ff);
    cudaFree(cb->rinv);
    cudaFree(cb->wc);
    for (int i = 0; i < COPY_SLOTS; i++) {
        cudaFree(cb->slot[i]);
        if (cb->copied[i]) cudaEventDestroy(cb->copied[i]);
        if (cb->freed[i]) cudaEventDestroy(cb->freed[i]);
    }
    if (cb->wc_copied) cudaEventDestroy(cb->wc_copied);
    if (cb->st_mark) cudaEventDestroy(cb->st_mark);
    if (cb->hy_free) cudaEventDestroy(cb->hy_free);
    for (int i = 0; i < 2; i++) {
        if (cb->ha_free[i]) cudaEventDestroy(cb->ha_free[i]);
        if (cb->ha[i]) cudaFreeHost(cb->ha[i]);
    }
    if (cb->hh_down) cudaEventDestroy(cb->hh_down);
    if (cb->hh) cudaFreeHost(cb->hh);
    if (cb->mb_up) cudaEventDestroy(cb->mb_up);
    if (cb->mb_host) cudaFreeHost(cb->mb_host);
    cudaFree(cb->mb_dev);
    cudaFree(cb->mb_x);
    free(cb->mb_k);
    if (cb->x_ready) cudaEventDestroy(cb->x_ready);
    if (cb->head_ev) cudaEventDestroy(cb->head_ev);
    if (cb->head_dl) cudaEventDestroy(cb->head_dl);
    if (cb->mx_down) cudaEventDestroy(cb->mx_down);
    if (cb->dl_done) cudaEventDestroy(cb->dl_done);
    if (cb->cp_t0) cudaEventDestroy(cb->cp_t0);
    if (cb->cp_t1) cudaEventDestroy(cb->cp_t1);
    if (cb->mc_t0) cudaEventDestroy(cb->mc_t0);
    if (cb->mc_t1) cudaEventDestroy(cb->mc_t1);
    if (cb->mg_t0) cudaEventDestroy(cb->mg_t0);
    if (cb->mg_t1) cudaEventDestroy(cb->mg_t1);
    if (cb->mg_t2) cudaEventDestroy(cb->mg_t2);
    if (cb->tr_dl) cudaEventDestroy(cb->tr_dl);
    if (cb->hx) cudaFreeHost(cb->hx);
    if (cb->hy) cudaFreeHost(cb->hy);
    if (cb->hm) cudaFreeHost(cb->hm);
    if (cb->mx) cudaFreeHost(cb->mx);
    if (cb->hd) cudaFreeHost(cb->hd);
    if (cb->pass_flag) cudaFreeHost(cb->pass_flag);
    if (cb->topk_host) cudaFreeHost(cb->topk_host);
    if (cb->pass_dflag) cudaFree(cb->pass_dflag);
    if (cb->gk) cudaFree(cb->gk);
    if (cb->blas) blas_fn.destroy(cb->blas);
    if (cb->st) cudaStreamDestroy(cb->st);
    if (cb->cp) cudaStreamDestroy(cb->cp);
    if (cb->dl) cudaStreamDestroy(cb->dl);
    (void)cudaGetLastError();
    backend_free(cb->cpu);
    free(cb->ff_host);
    for (int i = 0; cb->wce && i < cb->wc_cap; i++) {
        if (cb->wce[i].read_ev) cudaEventDestroy(cb->wce[i].read_ev);
        if (cb->wce[i].fill_ev) cudaEventDestroy(cb->wce[i].fill_ev);
    }
    free(cb->wce);
    free(cb->wc_head);
    free(cb->wc_next);
    expert_history_free(cb->wc_hist);
    free(cb->allocs);
    free(cb);
}

static const struct backend_ops cuda_ops = {
    .name = "cuda",
    .free = cu_free,
    .supports_type = cu_supports_type,
    .reserve = cu_reserve,
    .alloc = cu_alloc,
    .dealloc = cu_dealloc,
    .download = cu_download,
    .upload = cu_upload,
    .download_start = cu_download_start,
    .download_wait = cu_download_wait,
    .sync = cu_sync,
    .top_k = cu_top_k,
    .host_register = cu_host_register,
    .host_unregister = cu_host_unregister,
    .matmul = cu_matmul,
    .matmul_fused = cu_matmul_fused,
    .get_rows = cu_get_rows,
    .rms_norm = cu_rms_norm,
    .rope = cu_rope,
    .attention = cu_attention,
    .softmax = cu_softmax,
    .route = cu_route,
    .silu_mul = cu_silu_mul,
    .add = cu_add,
    .add_bias = cu_add_bias,
    .add_rows = cu_add_rows,
    .moe_token = cu_moe_token,
    .moe_routed = cu_moe_routed,
    .moe_batch = cu_moe_batch,
    .moe_prepare = cu_moe_prepare,
    .prefetch = cu_prefetch,
    .holds = cu_holds,
};

/* ---- rates -------------------------------------------------------------- */

/* Device memory read rate: the best of six streaming reads of 1 GiB
 * (halves of a 2 GiB buffer in turn, so that no read finds its data in
 * the L2), less where free memory is short (a quarter of it; none below
 * 64 MiB: 0, not measured). The ceiling a memory-bound product approaches
 * (on an H100, 256 MiB reads measured 2.8-2.9 TB/s, 1 GiB ones 3.0-3.1). */
static double measure_device_read(struct cuda_backend *cb)
{
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    size_t half = (size_t)1 << 30;
    while (half >= ((size_t)32 << 20) && 2 * half > fr / 4) half /= 2;
    if (half < ((size_t)32 << 20)) return 0;
    uint8_t *d = NULL;
    double best = 0;
    cudaEvent_t a = NULL, b = NULL;
    if (cudaMalloc((void **)&d, 2 * half + 16) != cudaSuccess ||
        cudaMemsetAsync(d, 1, 2 * half + 16, cb->st) != cudaSuccess ||
        cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess)
        goto out;
    for (int i = 0; i < 6; i++) {
        cudaEventRecord(a, cb->st);
        if (cuk_read(d + (i & 1) * half, half, (uint32_t *)(d + 2 * half), cb->st) != cudaSuccess)
            break;
        cudaEventRecord(b, cb->st);
        if (cudaEventSynchronize(b) != cudaSuccess) break;
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        if (ms > 0) best = HY_MAX(best, (double)half / (ms * 1e-3));
    }
out:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (d) cudaFree(d);
    (void)cudaGetLastError();
    return best;
}

/* Pinned host-to-device copy rate: the best of three 64 MiB copies. */
static double measure_pcie(struct cuda_backend *cb)
{
    const size_t n = (size_t)64 << 20;
    void *h = NULL, *d = NULL;
    double best = 0;
    cudaEvent_t a = NULL, b = NULL;
    if (cudaMallocHost(&h, n) != cudaSuccess || cudaMalloc(&d, n) != cudaSuccess ||
        cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess)
        goto out;
    memset(h, 1, n);
    for (int i = 0; i < 3; i++) {
        cudaEventRecord(a, cb->cp);
        cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, cb->cp);
        cudaEventRecord(b, cb->cp);
        if (cudaEventSynchronize(b) != cudaSuccess) break;
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        if (ms > 0) best = HY_MAX(best, (double)n / (ms * 1e-3));
    }
out:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (d) cudaFree(d);
    if (h) cudaFreeHost(h);
    (void)cudaGetLastError();
    return best;
}

/* The host's rate with the CPU product of bw and PCIe copies running at once
 * (both read the host's memory; on some machines their sum is far above what
 * that memory gives): copies of 16 MiB queued to outlast the product, the
 * bytes of the product and of the copies done when it ends, over its time;
 * the best of three. The copies read a pinned buffer larger than the CPU's
 * largest cache, in turn, after a product has pushed it out of the cache
 * (copied from the cache, 16 MiB over and over, the two ran above what the
 * memory gives). 0 when it cannot be measured. */
static double measure_both(struct cuda_backend *cb, const struct backend_weight *bw, const float *x,
                           float *y, double cpu_alone)
{
    enum { MAX_COPIES = 64 };
    const size_t n = (size_t)16 << 20;
    const double wbytes = (double)bw->n_rows * (double)bw->row_bytes;
    const double pcie = cb->rates.pcie_h2d_bytes_per_s;
    if (!(pcie > 0)) return 0;
    int k = (int)(2.0 * wbytes / cpu_alone * pcie / (double)n) + 2;
    k = HY_MIN(k, (int)MAX_COPIES);
    /* pieces of the source: more than the cache holds, at most one per copy */
    const int pieces = (int)HY_MIN((uint64_t)k, hw_llc_bytes() / n + 2);
    void *h = NULL, *d = NULL;
    cudaEvent_t ev[MAX_COPIES] = {0};
    double best = 0;
    bool ok = cudaMallocHost(&h, (size_t)pieces * n) == cudaSuccess &&
              cudaMalloc(&d, n) == cudaSuccess;
    for (int i = 0; i < k && ok; i++)
        ok = cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming) == cudaSuccess;
    if (ok) {
        memset(h, 1, (size_t)pieces * n);
        backend_matmul(cb->cpu, bw, x, 1, y); /* reads more than the cache: h leaves it */
    }
    for (int rep = 0; rep < 3 && ok; rep++) {
        for (int i = 0; i < k && ok; i++)
            ok = cudaMemcpyAsync(d, (const uint8_t *)h + (size_t)(i % pieces) * n, n,
                                 cudaMemcpyHostToDevice, cb->cp) == cudaSuccess &&
                 cudaEventRecord(ev[i], cb->cp) == cudaSuccess;
        const int64_t t0 = timing_now_us();
        backend_matmul(cb->cpu, bw, x, 1, y);
        const int64_t dt = timing_now_us() - t0;
        int done = 0;
        while (done < k && cudaEventQuery(ev[done]) == cudaSuccess) done++;
        ok = ok && cudaStreamSynchronize(cb->cp) == cudaSuccess;
        if (ok && dt > 0 && done < k) /* the copies outlasted the product */
            best = HY_MAX(best, (wbytes + (double)done * (double)n) / ((double)dt * 1e-6));
    }
    for (int i = 0; i < k; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    if (d) cudaFree(d);
    if (h) cudaFreeHost(h);
    (void)cudaGetLastError();
    return best;
}

/* The CPU's decode rate on a Q4_K matrix larger than the caches (twice the
 * largest, at least 108 MiB: a rate read from a cache that holds the matrix
 * gave the CPU twice its share): the best of three products, in weight
 * bytes per second. */
static double measure_cpu(struct cuda_backend *cb)
{
    const int64_t cols = 4096;
    const size_t rb = (size_t)quant_bytes(HY_TYPE_Q4_K, (uint64_t)cols);
    const int64_t rows = (int64_t)(hw_probe_bytes((uint64_t)108 << 20) / rb);
    uint8_t *w = mem_aligned_alloc(64, rb * (size_t)rows);
    float *x = mem_xcalloc((size_t)cols, sizeof(float)),
          *y = mem_xcalloc((size_t)rows, sizeof(float));
    if (!w) {
        free(x);
        free(y);
        return 0;
    }
    /* valid blocks: small scales (set below), fixed nibbles (the kernels
     * take the same time whatever the values) */
    memset(w, 0x5a, rb * (size_t)rows);
    const size_t blk = rb / (size_t)(cols / 256);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < cols / 256; b++) {
            uint8_t *p = w + (size_t)r * rb + (size_t)b * blk;
            p[0] = 0x00;
            p[1] = 0x1c; /* d = 2^-8 */
            p[2] = 0x00;
            p[3] = 0x1c;
        }
    for (int64_t i = 0; i < cols; i++) x[i] = (float)(i % 7) * 0.1f;
    struct backend_weight bw = {w, HY_TYPE_Q4_K, cols, rows, rb, "rate probe", BACKEND_MEM_HOST,
                                0, false};
    double best = 0;
    const struct backend_limits lim = {
        .max_batch = 1, .max_ctx = 1, .max_head_dim = 32, .max_cols = cols};
    if (backend_reserve(cb->cpu, &lim) != HY_OK) {
        err_clear();
        mem_aligned_free(w);
        free(x);
        free(y);
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        int64_t t0 = timing_now_us();
        backend_matmul(cb->cpu, &bw, x, 1, y);
        int64_t dt = timing_now_us() - t0;
        if (dt > 0) best = HY_MAX(best, (double)(rb * (size_t)rows) / ((double)dt * 1e-6));
    }
    if (best > 0) cb->rates.host_both_bytes_per_s = measure_both(cb, &bw, x, y, best);
    mem_aligned_free(w);
    free(x);
    free(y);
    return best;
}

/* ---- public ------------------------------------------------------------- */

static void wc_alloc(struct cuda_backend *cb, uint64_t bytes)
{
    if (cb->wc || !bytes) return;
    if (!CK(cudaMalloc((void **)&cb->wc, bytes))) return;
    cb->wc_bytes = bytes;
    cb->dev_bytes += bytes;
    /* at most one entry per 64 KiB until the entry size is known */
    cb->wc_cap = (int)HY_MIN((uint64_t)1 << 20, HY_MAX((uint64_t)1, bytes >> 16));
    cb->wc_n = cb->wc_cap;
    cb->wce = mem_xcalloc((size_t)cb->wc_cap, sizeof *cb->wce);
    cb->wc_hash_n = 1;
    while (cb->wc_hash_n < (uint64_t)cb->wc_cap) cb->wc_hash_n <<= 1;
    cb->wc_head = mem_xcalloc((size_t)cb->wc_hash_n, sizeof *cb->wc_head);
    cb->wc_next = mem_xcalloc((size_t)cb->wc_cap, sizeof *cb->wc_next);
    for (uint64_t i = 0; i < cb->wc_hash_n; i++) cb->wc_head[i] = -1;
    const char *e = getenv("HYPURA_CUDA_WC_LRFU");
    if (!(e && !strcmp(e, "0"))) cb->wc_hist = expert_history_new(WC_HALF_LIFE_TOKENS);
}

void cuda_backend_attention_groups(int64_t min_keys)
{
    _Static_assert(CUDA_ATT_GROUPS_FILL == CUK_ATT_GQA_FILL, "one default");
    cuk_attention_gqa(min_keys);
}

enum hy_status cuda_backend_set_weight_cache(struct backend *be, uint64_t bytes)
{
    struct cuda_backend *cb = op_begin(be);
    wc_alloc(cb, bytes);
    if (cb->err) return err_set(cb->err, "%s", cb->err_msg);
    return HY_OK;
}

void cuda_backend_weight_cache_sizes(struct backend *be, const uint64_t *sizes, const int *counts,
                                     int n)
{
    struct cuda_backend *cb = cb_of(be);
    cb->wc_n_size = 0; /* (entries cut already keep their sizes until the next cut) */
    for (int i = 0; i < n && cb->wc_n_size < WC_SIZES; i++) {
        if (!sizes[i] || counts[i] <= 0) continue;
        cb->wc_size[cb->wc_n_size] = base_align_up(sizes[i], 256);
        cb->wc_count[cb->wc_n_size++] = counts[i];
    }
}

int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

bool cuda_device_memory(int dev, uint64_t *free_bytes, uint64_t *total_bytes)
{
    size_t f = 0, t = 0;
    if (dev < 0 || dev >= cuda_device_count() || !cuda_device_open(dev) ||
        cudaMemGetInfo(&f, &t) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    *free_bytes = f;
    *total_bytes = t;
    return true;
}

enum hy_status cuda_backend_create(const struct cuda_backend_config *cfg, struct backend **out)
{
    *out = NULL;
    const int n_dev = cuda_device_count();
    if (n_dev == 0) return err_set(HY_ERR_UNSUPPORTED, "no CUDA device: the driver reports none");
    if (cfg->device < 0 || cfg->device >= n_dev)
        return err_set(HY_ERR_UNSUPPORTED, "no CUDA device %d (%d present)", cfg->device, n_dev);
    enum hy_status bst = blas_open();
    if (bst) return bst;
    struct cuda_backend *cb = mem_xcalloc(1, sizeof *cb);
    cb->base.ops = &cuda_ops;
    cb->base.n_threads = HY_MAX(1, cfg->n_threads);
    cb->dev = cfg->device;
    cb->policy = cfg->host_policy;
    {
        int major = 0;
        const char *e = getenv("HYPURA_CUDA_PDL");
        cb->pdl = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cb->dev) ==
                      cudaSuccess &&
                  major >= 9 && !(e && !strcmp(e, "0"));
        (void)cudaGetLastError();
        uint64_t keys;
        if (env_whole("HYPURA_CUDA_ATT_GQA", (uint64_t)1 << 30, "the blocks' fill", &keys))
            cuda_backend_attention_groups((int64_t)keys);
        e = getenv("HYPURA_CUDA_FOLD_NORM");
        cb->fold_norm = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_PAIR");
        cb->pair = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_NORM_PAIRS");
        cb->norm_pairs = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_ATT_NORMS");
        cb->att_norms = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_COPY_FIRST");
        cb->copy_first = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_GROUP_EXPERTS");
        cb->group_experts = !(e && !strcmp(e, "0"));
        cb->expert_own = env_count("HYPURA_CUDA_EXPERT_OWN_MIB", EXPERT_OWN_BYTES >> 20, 1u << 24)
                         << 20;
        cb->rate_drift =
            (int)env_count("HYPURA_CUDA_MOE_RATE_DRIFT", MOE_RATE_DRIFT_CALLS, 1u << 30);
        cb->copy_lead =
            1e-6 * (double)env_count("HYPURA_CUDA_COPY_LEAD_US", MOE_COPY_LEAD_US, 1000000);
        e = getenv("HYPURA_CUDA_FUSE_HOST");
        cb->fuse_host = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_ROUTED");
        cb->routed = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_MOE_BATCH");
        cb->mb_mode = !e ? 1 : !strcmp(e, "0") ? 0 : !strcmp(e, "2") ? 2 : 1;
        e = getenv("HYPURA_CUDA_PREFETCH");
        cb->prefetch = !(e && !strcmp(e, "0"));
        cb->pf_bytes = PF_BYTES_START;
        cb->pf_hit_rate = 1.0; /* copies from the start, until guesses are seen */
        cb->pf_use_rate = 1.0; /* and until copies are seen read or not */
        /* pinned host memory is the device's to read and write where
         * addresses are unified (every 64-bit platform CUDA 13 runs on) */
        int unified = 0;
        e = getenv("HYPURA_CUDA_ZERO_COPY");
        const bool uva = cudaDeviceGetAttribute(&unified, cudaDevAttrUnifiedAddressing, cb->dev) ==
                             cudaSuccess &&
                         unified;
        cb->zero_copy = uva && !(e && !strcmp(e, "0"));
        (void)cudaGetLastError();
        /* the pass needs workers: with none, nothing would compute it before its join */
        e = getenv("HYPURA_CUDA_ASYNC_CPU");
        cb->async_cpu = uva && cb->base.n_threads > 1 && !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_ASYNC_HOST");
        cb->async_host = cb->async_cpu && !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_SWIGLU_HOST");
        cb->swiglu_host = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_MOE_HALF");
        cb->moe_half = !e                ? cfg->moe_half
                       : !strcmp(e, "0") ? CUDA_MOE_HALF_OFF
                       : !strcmp(e, "2") ? CUDA_MOE_HALF_ALL
                       : !strcmp(e, "3") ? CUDA_MOE_HALF_ROWS
                       : !strcmp(e, "4") ? CUDA_MOE_HALF_DOWN
                                         : CUDA_MOE_HALF_AUTO;
        cb->moe_half_min =
            env_count("HYPURA_CUDA_MOE_HALF_MIN_MIB", MOE_HALF_MIN_BYTES >> 20, 1u << 24) << 20;
        e = getenv("HYPURA_CUDA_MOE_ROWS");
        cb->moe_rows = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_MOE_DOWN");
        cb->moe_down = !(e && !strcmp(e, "0"));
        e = getenv("HYPURA_CUDA_MOE_TRACE");
        cb->trace = e && *e ? fopen(e, "w") : NULL;
        cb->trace_t0 = timing_now_us();
        cb->tr_chain_us = -1;
        if (cb->trace) CK(cudaEventCreate(&cb->tr_dl));
        if (e && *e && !cb->trace)
            fprintf(stderr, "hypura: HYPURA_CUDA_MOE_TRACE=%s: %s; no trace written\n", e,
                    strerror(errno));
    }
    cb->slot_bytes = cuda_copy_slot_bytes(cfg);
    cb->w16_bytes = (size_t)cuda_gemm_tile_bytes(cfg);
    enum hy_status st;
    struct cpu_backend_opts co = {.n_threads = cb->base.n_threads};
    if ((st = cpu_backend_init(&co, &cb->cpu))) {
        free(cb);
        return st;
    }
    if (!cuda_device_open(cb->dev)) CK(cudaSetDevice(cb->dev)); /* the error, as a status */
    CK(cudaStreamCreateWithFlags(&cb->st, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&cb->cp, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&cb->dl, cudaStreamNonBlocking));
    /* cuBLAS gives each handle a workspace pool when it is made, 64 MiB on
     * an H100 (cuBLAS 13): VRAM outside the budget. One buffer of 4 MiB
     * instead, unless the environment names one: prompt GEMMs ran as fast
     * (H100, 8-layer llama-3-8b-shaped Q4_K_M, 512-token prompts: 66.5-67.1
     * k tok/s with pools of 0, 4 and 32 MiB and the default). Set before
     * the first handle is made; nothing else here reads it. */
    if (!getenv("CUBLAS_WORKSPACE_CONFIG")) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:1", 0);
    if (!cb->err && CKB(blas_fn.create(&cb->blas))) {
        CKB(blas_fn.set_stream(cb->blas, cb->st));
        CKB(blas_fn.set_math_mode(cb->blas, CUBLAS_DEFAULT_MATH));
        CKB(blas_fn.set_pointer_mode(cb->blas, CUBLAS_POINTER_MODE_DEVICE));
    }
    for (int i = 0; i < COPY_SLOTS && !cb->err; i++) {
        if (!CK(cudaMalloc((void **)&cb->slot[i], cb->slot_bytes))) break;
        cb->dev_bytes += cb->slot_bytes;
        CK(cudaEventCreateWithFlags(&cb->copied[i], cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->freed[i], cudaEventDisableTiming));
        if (!cb->err) CK(cudaEventRecord(cb->freed[i], cb->st));
    }
    if (!cb->err) {
        CK(cudaEventCreateWithFlags(&cb->wc_copied, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->st_mark, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->hy_free, cudaEventDisableTiming));
        for (int i = 0; i < 2; i++)
            CK(cudaEventCreateWithFlags(&cb->ha_free[i], cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->hh_down, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->mb_up, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->x_ready, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->head_ev, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->head_dl, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->mx_down, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&cb->dl_done, cudaEventDisableTiming));
        CK(cudaEventCreate(&cb->cp_t0));
        CK(cudaEventCreate(&cb->cp_t1));
        CK(cudaEventCreate(&cb->mc_t0));
        CK(cudaEventCreate(&cb->mc_t1));
        CK(cudaEventCreate(&cb->mg_t0));
        CK(cudaEventCreate(&cb->mg_t1));
        CK(cudaEventCreate(&cb->mg_t2));
    }
    if (!cb->err) hy_free_record(cb);
    for (int i = 0; i < 2 && !cb->err; i++) CK(cudaEventRecord(cb->ha_free[i], cb->st));
    if (!cb->err && CK(cudaMallocHost((void **)&cb->pass_flag, CUDA_PASS_FLAG_BYTES)))
        memset(cb->pass_flag, 0, CUDA_PASS_FLAG_BYTES);
    if (!cb->err && CK(cudaMalloc((void **)&cb->pass_dflag, CUDA_PASS_FLAG_BYTES)) &&
        CK(cudaMemset(cb->pass_dflag, 0, CUDA_PASS_FLAG_BYTES)))
        cb->dev_bytes += CUDA_PASS_FLAG_BYTES;
    _Static_assert(sizeof(struct gemm_consts) <= CUDA_GEMM_CONST_BYTES, "one line");
    const struct gemm_consts gk = {.x16.alpha = 1.0f, .one = 1.0f};
    if (!cb->err && CK(cudaMalloc((void **)&cb->gk, CUDA_GEMM_CONST_BYTES)) &&
        CK(cudaMemcpy(cb->gk, &gk, sizeof gk, cudaMemcpyHostToDevice)))
        cb->dev_bytes += CUDA_GEMM_CONST_BYTES;
    if (!cb->err && cfg->weight_cache_bytes > 0) wc_alloc(cb, cfg->weight_cache_bytes);
    if (cb->err) {
        st = err_set(cb->err, "%s", cb->err_msg);
        cu_free(&cb->base);
        return st;
    }
    cb->rates.pcie_h2d_bytes_per_s = measure_pcie(cb);
    cb->rates.device_read_bytes_per_s = measure_device_read(cb);
    cb->rates.cpu_matvec_bytes_per_s = measure_cpu(cb);
    prof_init(cb);
    kt_init(cb);
    *out = &cb->base;
    return HY_OK;
}

enum hy_status cuda_host_check_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                                    const float *x, float *values, float dots[2])
{
    if (cuq_host_rows(type, w, row_bytes, n_cols, x, values, dots) != cudaSuccess)
        return err_set(HY_ERR_INVALID_ARG,
                       "cuda_host_check_rows: type %" PRIu32 " with %" PRId64
                       " columns: not a type of the kernels, or not whole blocks",
                       type, n_cols);
    return HY_OK;
}

bool backend_is_cuda(const struct backend *be)
{
    return be && be->ops == &cuda_ops;
}

struct cuda_backend_rates cuda_backend_rates(const struct backend *be)
{
    return cb_ofc(be)->rates;
}

struct cuda_backend_stats cuda_backend_stats(const struct backend *be)
{
    struct cuda_backend_stats s = cb_ofc(be)->stats;
    uint64_t filled = 0;
    for (int i = 0; i < cb_ofc(be)->wc_n; i++)
        if (cb_ofc(be)->wce[i].filled) filled += cb_ofc(be)->wce[i].size;
    s.cache_bytes = filled;
    return s;
}

void cuda_backend_reset_stats(struct backend *be)
{
    struct cuda_backend *cb = cb_of(be);
    memset(&cb->stats, 0, sizeof cb->stats);
    if (cb->prof) { /* the profile too: the engine's warm-up is not the run */
        prof_read(cb);
        memset(cb->prof->k, 0, sizeof cb->prof->k);
        cb->prof->n_kinds = 0;
        cb->prof->span_ms = 0;
    }
}

uint64_t cuda_backend_device_bytes(const struct backend *be)
{
    return cb_ofc(be)->dev_bytes;
}
