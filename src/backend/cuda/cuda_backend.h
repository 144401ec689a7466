/*
 * The CUDA backend: every op of backend.h on one NVIDIA GPU (kernels in
 * cuda_quant.cu and cuda_ops.cu, cuBLAS for prompt batches), with host
 * weights handled where they lie.
 *
 * Weights in backend memory (the GPU tier) are computed on the GPU: decode
 * (n_tok <= CUQ_MATVEC_MAX_TOK) by matrix-vector kernels that dequantize on
 * the fly, prompt batches by dequantizing row tiles to binary16 and one
 * cuBLAS GEMM per tile (F32 accumulation).
 *
 * Host weights (BACKEND_MEM_HOST: the RAM tier and the store's streaming
 * slots) are computed one of two ways, chosen per call from measured rates
 * (cuda_backend_rates): the CPU computes them where they lie (the activations
 * cross PCIe: download x, CPU matmul, upload y), or they are copied to a GPU
 * slot over PCIe on the copy stream, in pieces, each piece's compute waiting
 * on its copy's event, so that copying and computing overlap. With both
 * available a call splits its rows: the CPU computes the first rows while the
 * rest are copied and computed on the GPU. Weights with a key (expert slices)
 * are kept in a VRAM cache (LRU over cfg.weight_cache_bytes, in entries of
 * the sizes cuda_backend_weight_cache_sizes names) in front of the RAM tier:
 * a hit computes from VRAM, and backend.h's holds lets the forward pass skip
 * reading a streamed slice the cache holds.
 *
 * Errors: each CUDA or cuBLAS call is checked; the first failure is
 * recorded as HY_ERR_INTERNAL (HY_ERR_OOM for memory) naming the call and
 * file:line, later ops are skipped, and backend_sync reports it.
 */
#ifndef HY_BACKEND_CUDA_CUDA_BACKEND_H
#define HY_BACKEND_CUDA_CUDA_BACKEND_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/err.h"

/* How a call on host weights is computed. */
enum cuda_host_policy {
    CUDA_HOST_AUTO = 0, /* from the measured rates, splitting rows when both help */
    CUDA_HOST_CPU,      /* always on the CPU where the weights lie */
    CUDA_HOST_COPY,     /* always copied to the GPU */
};

/* moe_token under policy auto: whether an expert in RAM may be split in
 * two, its gate and up computed on the CPU where they lie and its down on
 * the GPU (its slice copied unless in VRAM), the activations between
 * crossing PCIe (a half); a half may leave some of its gate and up rows to
 * the GPU too (copied), or take some of its down rows onto the CPU, where
 * that balances the two sides. */
enum cuda_moe_half {
    CUDA_MOE_HALF_AUTO = 0, /* where the measured rates say the token ends sooner */
    CUDA_MOE_HALF_OFF,      /* never */
    CUDA_MOE_HALF_ALL,      /* every expert the CPU could take (tests) */
    CUDA_MOE_HALF_ROWS,     /* every one, half its gate and up rows left to the GPU (tests) */
    CUDA_MOE_HALF_DOWN,     /* every one, half its down rows taken by the CPU (tests) */
};

struct cuda_backend_config {
    int device;                   /* CUDA device index */
    int n_threads;                /* CPU threads for host weights (>= 1) */
    uint64_t weight_cache_bytes;  /* VRAM for keyed host weights (expert slices); 0: none yet */
    uint64_t copy_slot_bytes;     /* one PCIe copy piece; 0: 8 MiB */
    /* prompt GEMMs' tile of dequantized rows (and padded outputs); 0: 64 MiB,
     * else at least 16 MiB */
    uint64_t gemm_tile_bytes;
    enum cuda_host_policy host_policy;
    enum cuda_moe_half moe_half; /* HYPURA_CUDA_MOE_HALF=0 sets OFF, 2 ALL, 3 ROWS, 4 DOWN */
};

/* Fixed sizes of the backend's device memory (the plan counts them). */
#define CUDA_COPY_SLOTS      3                    /* PCIe copy pieces in flight */
#define CUDA_COPY_SLOT_BYTES ((uint64_t)8 << 20)  /* one piece, by default */
#define CUDA_GEMM_TILE_BYTES ((uint64_t)64 << 20) /* the GEMM tile, by default */
#define CUDA_GEMM_TILE_MIN   ((uint64_t)16 << 20)
#define CUDA_PASS_FLAG_BYTES 64 /* the CPU passes' flags and the waits' device words: a line each  \
                                 */
#define CUDA_GEMM_CONST_BYTES 64 /* the prompt GEMMs' alpha and beta in device memory: a line */
#define CUDA_ATT_MAX_HEAD_DIM 256 /* attention's largest head dimension (keys and values) */
#define CUDA_GEMM_COL_STEP   64 /* prompt GEMM widths: the batch rounded up to a multiple */

/* A backend made with cfg: its PCIe copy piece and its GEMM tile. */
static inline uint64_t cuda_copy_slot_bytes(const struct cuda_backend_config *cfg)
{
    return cfg->copy_slot_bytes ? cfg->copy_slot_bytes : CUDA_COPY_SLOT_BYTES;
}

static inline uint64_t cuda_gemm_tile_bytes(const struct cuda_backend_config *cfg)
{
    return !cfg->gemm_tile_bytes                        ? CUDA_GEMM_TILE_BYTES
           : cfg->gemm_tile_bytes < CUDA_GEMM_TILE_MIN ? CUDA_GEMM_TILE_MIN
                                                         : cfg->gemm_tile_bytes;
}

/* The width of the prompt GEMM for n tokens (CUDA_GEMM_COL_STEP). */
static inline int64_t cuda_gemm_width(int64_t n)
{
    return (n + CUDA_GEMM_COL_STEP - 1) / CUDA_GEMM_COL_STEP * CUDA_GEMM_COL_STEP;
}

/* HY_OK, or HY_ERR_UNSUPPORTED naming the limit when a model's heads
 * (head_dim: the larger of its key and value head dimensions) are larger
 * than the GPU's attention takes; hint ends the message. The backend's
 * reserve and the plan of a GPU budget check the same. */
static inline enum hy_status cuda_check_head_dim(int64_t head_dim, const char *hint)
{
    if (head_dim <= CUDA_ATT_MAX_HEAD_DIM) return HY_OK;
    return err_set(HY_ERR_UNSUPPORTED,
                   "CUDA: attention takes head dimensions up to %d, and this model's is %" PRId64
                   "\nhint: %s",
                   CUDA_ATT_MAX_HEAD_DIM, head_dim, hint);
}

/* moe_batch's buffers for the largest batch of lim (none for a dense
 * model): the routed rows of x gathered, their gate/up outputs (each with
 * CUDA_MOE_GROUP_TOK - 1 rows more, read past the last chunk), their down
 * outputs and an expert's up outputs by GEMMs (at most a whole batch of
 * rows), in *x; the tables (each row's token, each token's slots and
 * weights, two lists of chunks of at most one row each) in *tables, on the
 * device and again in page-locked host memory. */
#define CUDA_MOE_GROUP_TOK   8  /* rows of a chunk: CUQ_GROUP_TOK */
#define CUDA_MOE_CHUNK_BYTES 24 /* sizeof(struct cuq_chunk) */
static inline uint64_t cuda_align16(uint64_t n)
{
    return (n + 15) & ~(uint64_t)15;
}

static inline void cuda_moe_batch_bytes(const struct backend_limits *lim, uint64_t *x,
                                        uint64_t *tables)
{
    *x = *tables = 0;
    if (lim->moe_k <= 0 || lim->moe_ff <= 0 || lim->moe_embd <= 0) return;
    const uint64_t n = (uint64_t)lim->max_batch, a = n * (uint64_t)lim->moe_k;
    const uint64_t e = (uint64_t)lim->moe_embd, f = (uint64_t)lim->moe_ff;
    const uint64_t pad = CUDA_MOE_GROUP_TOK - 1;
    *x = cuda_align16((a + pad) * e * 4) + cuda_align16((a + pad) * f * 4) +
         cuda_align16(a * e * 4) + n * f * 4;
    *tables = 3 * cuda_align16(a * 4) + 2 * a * CUDA_MOE_CHUNK_BYTES;
}

/* The small device buffers of lim's calls, held from the reserve on: a
 * prompt's token ids (get_rows), add_rows' rows and weights, RoPE's
 * frequency factors and pair frequencies, decode attention's split
 * partial results (CUDA_ATT_MAX_SPLIT blocks a head, each head_dim_v + 2
 * floats, for lim->max_heads heads; none where that is 0, not known: the
 * first attention call allocates them), and top_k's keys for
 * BACKEND_TOP_K_MAX of lim->max_top (a pass's chunks' best, twice, and the
 * result: cuk_top_k_scratch). */
#define CUDA_ATT_MAX_SPLIT 64   /* CUK_ATT_MAX_SPLIT */
#define CUDA_ROPE_INV_MAX  128  /* RoPE pairs whose frequencies the backend uploads */
#define CUDA_TOP_K_CHUNK   1024 /* keys a block of top_k's passes takes (cuda_ops.cu) */
struct cuda_small_bytes {
    uint64_t ids, rows, ff, inv, part, top;
};

static inline struct cuda_small_bytes cuda_small_bytes_of(const struct backend_limits *lim)
{
    const uint64_t b = (uint64_t)lim->max_batch, hd = (uint64_t)lim->max_head_dim;
    const uint64_t heads = lim->max_heads > 0 ? (uint64_t)lim->max_heads : 0;
    return (struct cuda_small_bytes){
        .ids = b * 4,
        .rows = b * 8,
        .ff = hd / 2 * 4,
        .inv = CUDA_ROPE_INV_MAX * 8,
        .part = heads * CUDA_ATT_MAX_SPLIT * (hd + 2) * 4,
        .top =
            lim->max_top > 0
                ? (2 * (((uint64_t)lim->max_top + CUDA_TOP_K_CHUNK - 1) / CUDA_TOP_K_CHUNK) + 1) *
                      BACKEND_TOP_K_MAX * 8
                : 0};
}

/* What a backend made with cfg holds once reserved for lim, before any
 * weight or forward buffer: device memory (the copy slots, the activations
 * in binary16 at the widest GEMM, the GEMM tile, moe_batch's buffers, the
 * small buffers above, the CPU passes' flag line, the GEMMs' constants'
 * line) and page-locked host memory (the activations' host copy,
 * moe_batch's tables). Pure arithmetic: also in builds without CUDA. */
static inline void cuda_backend_reserved_bytes(const struct cuda_backend_config *cfg,
                                               const struct backend_limits *lim,
                                               uint64_t *device, uint64_t *host)
{
    uint64_t mx, mt;
    cuda_moe_batch_bytes(lim, &mx, &mt);
    const struct cuda_small_bytes sb = cuda_small_bytes_of(lim);
    *device = CUDA_COPY_SLOTS * cuda_copy_slot_bytes(cfg) +
              (uint64_t)cuda_gemm_width(lim->max_batch) * (uint64_t)lim->max_cols * 2 +
              cuda_gemm_tile_bytes(cfg) + mx + mt + sb.ids + sb.rows + sb.ff + sb.inv + sb.part +
              sb.top + CUDA_PASS_FLAG_BYTES + CUDA_GEMM_CONST_BYTES;
    *host = (uint64_t)lim->max_batch * (uint64_t)lim->max_cols * sizeof(float) + mt +
            (sb.top ? BACKEND_TOP_K_MAX * 8 : 0);
}

/* Measured when the backend is made, then refined by the split products
 * (each side timed while the other runs; decode-sized calls of 4 MiB or more). */
struct cuda_backend_rates {
    double pcie_h2d_bytes_per_s; /* pinned host to device */
    double device_read_bytes_per_s; /* device memory read by a streaming kernel; 0: not measured */
    double cpu_matvec_bytes_per_s; /* CPU decode rate on Q4_K weights, all threads */
    /* both at once: the CPU's product and the copies' bytes over the time (at
     * start only; 0: not measured). Below the sum of the two where they share
     * the host's memory bandwidth. */
    double host_both_bytes_per_s;
    /* PCIe as moe_token's copies ran beside its CPU pass (0: not yet): the
     * split of a token's experts takes this one once seen */
    double moe_pcie_bytes_per_s;
};

struct cuda_backend_stats {
    uint64_t host_cpu_bytes;    /* host weight bytes computed on the CPU */
    uint64_t host_copy_bytes;   /* host weight bytes copied to the GPU */
    uint64_t cache_hits, cache_misses; /* VRAM weight cache, per keyed call */
    uint64_t cache_bytes;       /* in the VRAM cache now */
    /* Products of host weights that are not cached (dense weights in RAM):
     * calls, and the calling thread's wall time in them by what it did */
    uint64_t host_calls;
    int64_t host_x_wait_us;    /* activations down: waiting for the GPU's earlier ops */
    int64_t host_queue_us;     /* queuing the copies and the GPU's pieces */
    int64_t host_cpu_us;       /* the CPU's rows, and sending them up */
    int64_t host_copy_wait_us; /* after the CPU's rows: the copies still running */
    /* moe_token: calls, their experts by where they ran (VRAM: placed or
     * cached; copied over PCIe; the CPU), the calling thread's time in the
     * CPU's experts and in waiting for x to come down before them */
    uint64_t moe_calls, moe_gpu_experts, moe_copy_experts, moe_cpu_experts;
    uint64_t moe_half_experts; /* gate and up on the CPU, down on the GPU */
    uint64_t moe_half_split;   /* of them, with gate and up rows on the GPU too */
    uint64_t moe_half_down;    /* of them, with down rows on the CPU too */
    int64_t moe_cpu_us, moe_x_wait_us;
    /* the CPU's passes by phase: x converted and the pass set up, the
     * workers' start (to the first chunk taken), gate and up, the downs and
     * the sum */
    int64_t moe_pass_setup_us, moe_pass_wake_us, moe_pass_gate_up_us, moe_pass_down_us;
    /* the GPU's side of calls with a CPU pass, timed on the device (a call
     * at a time): calls timed, their time from the call's start to the
     * GPU's own experts done (their copies included), then to the CPU's
     * sum added (the wait for the CPU, or about the add's few us where the
     * GPU's side ended last) */
    uint64_t moe_gpu_timed, moe_gpu_late; /* late: waited under 20 us */
    int64_t moe_gpu_own_us, moe_gpu_wait_us;
    /* prefetch: weight slices it copied into the VRAM cache, and how many
     * of them a product then read (before the entry went to another); the
     * slices it guessed (copied or, while its guesses were poor, not), and
     * how many of them the next moe_token read */
    uint64_t prefetch_slices, prefetch_used, prefetch_guessed, prefetch_guessed_right;
    /* backend_sync: calls and the calling thread's time waiting in them */
    uint64_t sync_calls;
    int64_t sync_us;
};

/* Number of usable CUDA devices (0 without a driver, a device, or a build
 * without CUDA). */
int cuda_device_count(void);

/* The kernels' arithmetic for one type run on the CPU (no device needed):
 * rows 0 and 1 of w (n_cols a multiple of the type's block size, row r at
 * w + r * row_bytes) dequantized item by item as the kernels do, into
 * values [2][n_cols], and their products with x (n_cols floats, 16-byte
 * aligned) as the matvec over x in global memory sums them, into dots. For
 * tests. HY_ERR_UNSUPPORTED in a build without CUDA; HY_ERR_INVALID_ARG for
 * a type the kernels do not take or a partial block. */
enum hy_status cuda_host_check_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                                    const float *x, float *values, float dots[2]);

/* Free and total memory of device dev; false when there is none. */
bool cuda_device_memory(int dev, uint64_t *free_bytes, uint64_t *total_bytes);

/* A new CUDA backend. Errors: HY_ERR_UNSUPPORTED (built without CUDA, or no
 * such device), HY_ERR_OOM, HY_ERR_INTERNAL (a CUDA call failed; named). */
HY_MUST_CHECK enum hy_status cuda_backend_create(const struct cuda_backend_config *cfg,
                                                 struct backend **out);

/* Gives the VRAM weight cache bytes (once, before the first product; the
 * engine sizes it from the plan). HY_ERR_OOM naming the size. */
HY_MUST_CHECK enum hy_status cuda_backend_set_weight_cache(struct backend *be, uint64_t bytes);

/* Entry sizes the VRAM weight cache keeps (cuda_backend_weight_cache_sizes). */
#define CUDA_WEIGHT_CACHE_SIZES 8

/* The sizes of the keyed weights to come (sizes[i] bytes, counts[i] of them
 * in every set of n: an expert's gate, up and down slices): the VRAM cache
 * is cut into entries of those sizes in that proportion, as many sets as
 * fit, instead of entries all of the largest (a weight larger than all of
 * them still re-cuts it so). The first CUDA_WEIGHT_CACHE_SIZES are kept. */
void cuda_backend_weight_cache_sizes(struct backend *be, const uint64_t *sizes, const int *counts,
                                     int n);

/* Decode attention, process-wide: a block takes the query heads of one KV
 * group from min_keys keys of context on (0: never; CUDA_ATT_GROUPS_FILL,
 * the default: where such blocks fill the device's multiprocessors in
 * splits of 64 keys).
 * HYPURA_CUDA_ATT_GQA=N at cuda_backend_create sets it to N. */
#define CUDA_ATT_GROUPS_FILL (-1)
void cuda_backend_attention_groups(int64_t min_keys);

/* True for a backend made by cuda_backend_create. */
bool backend_is_cuda(const struct backend *be);
struct cuda_backend_rates cuda_backend_rates(const struct backend *be);
struct cuda_backend_stats cuda_backend_stats(const struct backend *be);
/* Zeroes the counters of cuda_backend_stats (the VRAM cache keeps its contents). */
void cuda_backend_reset_stats(struct backend *be);
/* Device memory the backend holds now (allocations, scratch, caches). */
uint64_t cuda_backend_device_bytes(const struct backend *be);

#endif
