/*
 * The placement plan and its cost model (DESIGN.md §3): which tensor lives in
 * which tier, which mode the run is in, how large the KV cache, the streaming
 * pool and the expert cache are, how deep the prefetch goes, how many bytes a
 * generated token reads from the disk and what speed that predicts.
 *
 * Inputs are plain numbers: the model as `model_info` describes it from the
 * GGUF header (no tensor data is touched), `struct plan_hw` (what the machine
 * can do; filled by the tool from flags now, from the hardware profile later)
 * and `struct plan_params` (budgets and context length). The plan is a pure
 * function of them: no I/O, no clock, no environment.
 *
 * GPU tier (on when hw->n_gpu > 0 and params->gpu_budget_bytes > 0; when it
 * is off the plan is exactly the RAM plan below and the GPU fields stay 0):
 *   G1. The KV cache moves to the GPU: it counts against the GPU budget, not
 *       the RAM budget (kv_on_gpu).
 *   G2. The GPU minimum: KV cache + gpu_compute_bytes (the forward pass's
 *       activations, logits and scratch on the GPU) + every norm tensor
 *       (they must be on the GPU). A GPU budget below it fails with
 *       HY_ERR_INVALID_ARG naming the minimum and its parts.
 *   G3. Then tensors go to the GPU whole, in this priority order, each one
 *       if it fits in what is left of the budget (a tensor that does not fit
 *       is skipped, and later, smaller ones may still go): norms, attention
 *       (layer order), routers, shared experts, anything else (ROLE_OTHER,
 *       and FFN or expert tensors outside blocks), dense FFN layers whole
 *       (gate+up+down) in layer order up to the first that does not fit
 *       (so a prefix of the layers), then the single FFN tensors of the
 *       layers from there on, in layer order, each layer's largest first,
 *       each if it fits; the output head (with tied embeddings token_embd
 *       is the head and goes here: every byte of it is read each token, as
 *       a dense FFN tensor's is, but left on the host it is one host
 *       product where FFN bytes of its size are several; plan_init plans
 *       the head before the dense FFN too, right after ROLE_OTHER, and
 *       keeps that order where its predicted decode is faster: a head on
 *       the host is resident in RAM, where the FFN bytes it displaces could
 *       stream); routed experts a whole
 *       layer's stacked tensors at a time in layer order (a layer that does
 *       not fit is skipped), and last the token embeddings (untied: a row
 *       a token is all decode reads of them). Where routed experts stay on
 *       the host, untied embeddings stay in RAM instead if the RAM plan
 *       (G5) holds them and still streams nothing: their VRAM goes to the
 *       expert cache of G4, which serves the routed experts of every token
 *       (the qwen1.5-moe shape's 167 MiB of them took its cache from 73 to
 *       240 MiB). Where anything streams, RAM is the scarcer tier and they
 *       stay on the GPU.
 *   G4. What is left of the GPU budget, when routed experts stay on the
 *       host, is the VRAM expert cache (gpu_expert_cache_bytes), up to room
 *       for every one of those experts (a forced expert-stream plan with a
 *       GPU larger than the model took all of a device's memory). It sits in
 *       front of the RAM expert cache: a streamed expert it holds is not
 *       read. The hit rate of a layer whose experts stream counts the larger
 *       of its RAM cache and its share of the VRAM cache: as many experts as
 *       whole sets of one expert's slices of every such layer fit (a miss in
 *       both fills both, so they hold much the same experts).
 *   G5. The RAM rules below run over the tensors not on the GPU; a layer
 *       whose dense FFN or experts are on the GPU has none on the RAM side
 *       (never streamed, nothing in the RAM expert cache).
 *
 * Placement rules (RAM / NVMe), in order:
 *   1. Always resident (the "resident minimum"): embeddings, attention,
 *      norms, routers, shared experts, the output head, anything unknown
 *      (of these, those not on the GPU), the KV cache (F16, n_ctx positions;
 *      not when it is on the GPU), the forward pass's compute buffers
 *      (plan_params.compute_bytes), and one streaming pool of
 *      PLAN_PREFETCH_DEPTH + 1 slots (one being computed on, the others being
 *      read ahead). A budget below this fails with HY_ERR_INVALID_ARG naming
 *      the minimum and what takes it.
 *   2. If everything fits: mode resident, no pool.
 *   3. Otherwise dense FFN layers become resident (a layer's gate/up/down go
 *      together: a streamed layer is one read into one pool slot), as many
 *      as fit, spread evenly over the depth so that the disk can read ahead
 *      while resident layers compute. Dense FFN comes first because every one
 *      of its bytes is read every token (1 byte/token per byte) while an
 *      expert's bytes are read k/E of the time.
 *   4. Then experts: the expert cache gets the same number of experts in
 *      every MoE layer, and what is left one more in evenly spread layers.
 *      Whatever does not fit streams.
 *
 * Expert hit rate (an assumption, stated in the output): routers are skewed,
 * so the cache is assumed to hold each layer's most popular experts, with
 * popularity following a Zipf law p_i ∝ i^-PLAN_EXPERT_ZIPF_S. A cache of c of
 * E experts then hits h(c) = H_s(c) / H_s(E) of the selections (H_s the
 * generalized harmonic number). With s = 0.7 the top 20% of 128 experts take
 * about half of the selections, the top 2 of 8 about 40% — in the range that
 * published router statistics and `hypura synth`'s default skew show. Misses
 * per token and layer: k · (1 − h(c)), each reading one expert slice (its
 * rows of gate, up and down).
 *
 * Timing model (decode): per layer, t_compute = Σ bytes used / the CPU's
 * matvec rate for the tensor's type (experts: k/E of their bytes), t_io =
 * bytes read / disk bandwidth. Reads for layer i + d are issued while layer i
 * computes (d = prefetch depth, bounded by the pool's slots), and the disk
 * reads one layer after another. A small pipeline simulation over two
 * tokens gives t_layer = max(t_compute, t_io − overlap), the overlap being
 * what the reads could start early behind earlier layers' compute; the
 * steady-state token time is Σ t_layer plus the output head. The deciding
 * bound is the disk when Σ t_io > Σ t_compute, the compute otherwise.
 * Expert reads are assumed issued early by prediction (DESIGN.md §5), as
 * dense reads are; a wrong prediction's stall is not modelled. Attention over
 * the KV cache is not counted (small at moderate context next to weights).
 * With the GPU tier on, a GPU tensor's compute time is bytes used /
 * (hw->gpu_mem_bytes_per_s x the share of it a product of its type streams
 * at), at least a product kernel's time, and a host tensor's (RAM or NVMe)
 * bytes used / (CPU matvec rate + hw->pcie_bytes_per_s, or the rate of the
 * two at once where lower) plus the host call's own time: the backend splits
 * its rows between the CPU, computing them where they lie, and the GPU,
 * computing them after a copy over PCIe. Each layer adds the time of its
 * small kernels (norms, attention; routing for an MoE layer). The shares and
 * times are plan.c's, measured on an H100. Disk reads are as without the GPU.
 * A layer whose experts are on the GPU counts with hit rate 1 in
 * expert_hit_rate.
 *
 * Prompt model: batches of PLAN_PROMPT_BATCH tokens; compute = 2 FLOPs per
 * active parameter per token at hw->cpu_flops_per_s; every streamed byte is
 * read once per batch (a batch of hundreds of tokens touches every expert);
 * reads overlap compute. With the GPU tier on, the whole batch computes on
 * the GPU at hw->gpu_flops_per_s, and every host tensor's bytes (all of an
 * expert tensor; token embeddings only when they are the head) are copied
 * once per batch over PCIe, t = bytes / pcie; disk reads, copies and compute
 * overlap, so a batch takes the longest of the three (prompt_bound says
 * which).
 *
 * Not done yet: per-tensor rather than per-layer streaming of dense FFN;
 * several GPUs (n_gpu > 1 is planned as one GPU of gpu_budget_bytes); the
 * VRAM expert cache's hit rate (its size is reported, not used).
 */
#ifndef HY_PLAN_PLAN_H
#define HY_PLAN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base.h"
#include "model/arch.h"
#include "model/model_info.h"
#include "quant/quant.h"

#define PLAN_PREFETCH_DEPTH 2   /* layers read ahead of the one computing */
#define PLAN_EXPERT_ZIPF_S 0.7  /* assumed expert popularity skew (see above) */
#define PLAN_PROMPT_BATCH 512   /* prompt tokens per batch in the prompt model */

/* What the machine can do. Rates of 0 fall back as noted; the tool fills
 * this from flags (and, later, from the hardware profile). */
struct plan_hw {
    uint64_t ram_total_bytes;
    uint64_t ram_available_bytes;
    uint64_t cgroup_limit_bytes;     /* 0: none */
    double disk_read_bytes_per_s;    /* O_DIRECT sequential read; must be > 0 */
    uint64_t disk_best_request_bytes; /* request size that reaches it; 0: 4 MiB */
    double mem_read_bytes_per_s;     /* RAM read bandwidth, all threads; must be > 0 */
    /* CPU matvec throughput in weight bytes per second, per enum hy_type;
     * 0: mem_read_bytes_per_s (the memory-bound case) */
    double cpu_matvec_bytes_per_s[HY_TYPE_COUNT];
    double cpu_flops_per_s;          /* batched matmul rate; 0: 50 GFLOP/s per thread */
    int n_threads;                   /* 0: 1 */
    /* GPU tier (see above); n_gpu 0: no GPU */
    int n_gpu;
    uint64_t gpu_mem_bytes;
    double pcie_bytes_per_s;         /* host-to-device copy rate; 0: 25e9 */
    /* the CPU's products and the copies at once (they share the host's
     * memory); 0: not measured, their sum */
    double host_both_bytes_per_s;
    double gpu_mem_bytes_per_s;      /* HBM read bandwidth; 0: 2e12 */
    double gpu_flops_per_s;          /* batched matmul rate; 0: 1e14 */
};

/* Conservative defaults (3 GB/s disk, 20 GB/s memory, 4 threads); RAM sizes 0. */
void plan_hw_defaults(struct plan_hw *hw);

/* A mode the user asked for (--mode), instead of the plan's choice:
 *   RESIDENT       everything in RAM, even above the budget (over_budget says so);
 *   DENSE_STREAM   dense FFN layers stream: as many as the budget holds stay
 *                  resident, and all of them stream when it would hold them all
 *                  (a model without dense FFN layers is an error);
 *   EXPERT_STREAM  experts stream through the cache the budget allows, at
 *                  most E − 1 per layer (a model without experts is an error). */
enum plan_force { PLAN_FORCE_NONE = 0, PLAN_FORCE_RESIDENT, PLAN_FORCE_DENSE_STREAM, PLAN_FORCE_EXPERT_STREAM };

/* Where rule G3 puts the output head: the faster of the two by the plan's
 * prediction (AUTO), or as asked. */
enum plan_head_order { PLAN_HEAD_AUTO = 0, PLAN_HEAD_FIRST, PLAN_HEAD_LAST };

struct plan_params {
    uint64_t ram_budget_bytes; /* > 0; see plan_ram_budget for the default */
    uint64_t gpu_budget_bytes; /* 0: no GPU tier (nor when hw->n_gpu is 0) */
    int64_t n_ctx;             /* > 0: KV cache positions */
    /* activations, logits and scratch of the forward pass (forward_buffer_bytes
     * minus the KV cache): part of the resident minimum; 0 when unknown */
    uint64_t compute_bytes;
    /* activations, logits and scratch the forward pass allocates on the GPU:
     * part of the GPU minimum; ignored without the GPU tier */
    uint64_t gpu_compute_bytes;
    enum plan_force force;
    enum plan_head_order head_order; /* ignored without the GPU tier */
};

enum plan_tier { PLAN_TIER_GPU, PLAN_TIER_RAM, PLAN_TIER_NVME };
enum plan_mode { PLAN_MODE_RESIDENT, PLAN_MODE_DENSE_STREAM, PLAN_MODE_EXPERT_STREAM };
enum plan_bound { PLAN_BOUND_COMPUTE, PLAN_BOUND_DISK, PLAN_BOUND_PCIE /* prompt, GPU tier on */ };

const char *plan_tier_name(enum plan_tier t);   /* "gpu", "ram", "nvme" */
const char *plan_mode_name(enum plan_mode m);   /* "resident", "dense-stream", "expert-stream" */
const char *plan_bound_name(enum plan_bound b); /* "compute", "disk", "pcie" */

struct plan_tensor {
    const char *name;     /* borrowed from the gguf ctx */
    enum tensor_role role;
    int layer;            /* -1 outside blocks */
    uint32_t type;        /* enum hy_type */
    uint64_t bytes;
    enum plan_tier tier;  /* GPU: on the GPU; RAM: whole tensor resident; NVME: read from the file */
    uint64_t resident_bytes; /* bytes kept in RAM: all, 0, or (experts) the cache's share; 0 on the GPU */
};

struct plan_layer {
    uint64_t resident_bytes;   /* weights of this layer held in RAM (expert cache included) */
    uint64_t streamed_bytes;   /* weights of this layer left on the NVMe tier */
    uint64_t gpu_bytes;        /* weights of this layer on the GPU */
    bool ffn_on_gpu;           /* its dense FFN is on the GPU */
    bool experts_on_gpu;       /* its routed experts are on the GPU */
    double read_bytes_per_token; /* expected disk reads per generated token */
    bool ffn_streamed;         /* dense FFN read each token */
    int expert_cache;          /* experts of this layer in the RAM cache (MoE layers; 0 on the GPU) */
    uint64_t expert_slice_bytes; /* one expert's rows of gate+up+down */
    double hit_rate;           /* assumed expert cache hit rate */
    double t_compute_s, t_io_s, t_layer_s; /* decode, steady state */
};

struct plan {
    enum plan_mode mode;
    uint64_t ram_budget_bytes, gpu_budget_bytes;
    int64_t n_ctx;
    uint64_t kv_bytes;
    uint64_t min_resident_bytes;   /* the resident minimum (rule 1) */
    uint64_t compute_bytes;        /* plan_params.compute_bytes */
    /* the GPU tier; all 0 / false when it is off */
    bool gpu_on;
    bool kv_on_gpu;                /* the KV cache counts against the GPU budget */
    bool all_on_gpu;               /* every tensor is on the GPU */
    uint64_t gpu_compute_bytes;    /* plan_params.gpu_compute_bytes */
    uint64_t gpu_min_bytes;        /* KV cache + GPU compute buffers + norms (rule G2) */
    uint64_t gpu_weights_bytes;    /* weights placed on the GPU */
    uint64_t gpu_used_bytes;       /* KV cache + GPU compute buffers + GPU weights */
    uint64_t gpu_expert_cache_bytes; /* GPU budget left for a VRAM expert cache (rule G4) */
    bool gpu_head_last;            /* the output head was placed after the dense FFN (rule G3) */
    uint64_t bytes_by_role_gpu[ROLE_COUNT];
    /* RAM used: weights + expert cache + KV (unless on the GPU) + compute buffers + pool; ≤ budget
     * unless over_budget (only with PLAN_FORCE_RESIDENT) */
    uint64_t resident_bytes;
    bool forced, over_budget;
    uint64_t weights_resident_bytes; /* weights in RAM, expert cache included (GPU weights not) */
    uint64_t weights_streamed_bytes; /* weights on the NVMe tier */
    uint64_t bytes_by_role_resident[ROLE_COUNT];
    uint64_t bytes_by_role_streamed[ROLE_COUNT];
    int pool_slots;                /* 0 when nothing streams */
    uint64_t pool_slot_bytes, pool_bytes;
    int prefetch_depth;            /* 0 when nothing streams */
    int64_t n_expert, n_expert_used;
    int expert_cache_min, expert_cache_max; /* experts per MoE layer in the cache */
    uint64_t expert_cache_entries, expert_cache_bytes;
    double expert_hit_rate;        /* assumed, selection-weighted mean over MoE layers */
    double expert_zipf_s;          /* the skew behind it */
    double streamed_bytes_per_token;
    double t_compute_per_token_s, t_io_per_token_s, t_token_s;
    double predicted_gen_tok_per_s;
    enum plan_bound gen_bound;
    double predicted_prompt_tok_per_s;
    enum plan_bound prompt_bound;
    int n_layer;
    struct plan_layer *layers;     /* owned, n_layer */
    uint64_t n_tensors;
    struct plan_tensor *tensors;   /* owned, file order */
};

/* Plans the placement of info's model. info (and its gguf ctx) must outlive
 * *p (tensor names are borrowed). Errors: HY_ERR_INVALID_ARG when the budget
 * is below the resident minimum or the GPU budget below the GPU minimum
 * (naming it and its parts), or when a
 * parameter is out of range (n_ctx ≤ 0, rates ≤ 0); HY_ERR_UNSUPPORTED when
 * the model has no layers. On error *p is left empty (plan_free is safe). */
HY_MUST_CHECK enum hy_status plan_init(struct plan *p, const struct model_info *info, const struct plan_hw *hw,
                                       const struct plan_params *params);
void plan_free(struct plan *p);

/* Bytes of an F16 KV cache for n_ctx positions:
 * n_layer · n_ctx · (n_head_kv · head_dim + n_head_kv · head_dim_v) · 2. */
uint64_t plan_kv_bytes(const struct hparams *hp, int64_t n_ctx);

/* The GPU budget of llama.cpp's `-ngl n_gpu_layers`: the GPU minimum (rule
 * G2: kv_bytes, gpu_compute_bytes and every norm) plus the weights
 * llama.cpp offloads for that count, which takes the output layer for one
 * more layer after the blocks: the output head (the token embeddings where
 * they are tied to it) from n_gpu_layers 1 on, and the last n_gpu_layers - 1
 * blocks. 0 where n_gpu_layers is more than the blocks (every block and the
 * head: the default budget). */
uint64_t plan_gpu_layers_budget(const struct model_info *info, uint64_t kv_bytes,
                                uint64_t gpu_compute_bytes, int64_t n_gpu_layers);

/* RAM kept free for the OS, activations and compute buffers when a budget is
 * derived from `bytes` of memory: max(512 MiB, bytes / 16), at most bytes. */
uint64_t plan_headroom_bytes(uint64_t bytes);

/* What a process needs beyond its RAM budget under a cgroup memory limit:
 * the fixed overhead (code, tokenizer, header, thread stacks; README) with
 * room to spare. */
#define PLAN_CGROUP_MARGIN ((uint64_t)256 << 20)

/* The RAM budget. requested = 0 means "default": available − headroom. A
 * cgroup limit (0: none) caps it, since the kernel kills the process past
 * the limit whatever /proc/meminfo says: a default budget at limit −
 * headroom(limit), a requested one at limit − PLAN_CGROUP_MARGIN (half the
 * limit when the limit is not above the margin). *clamped (may be NULL) says whether a
 * requested budget was lowered. */
uint64_t plan_ram_budget(uint64_t requested, uint64_t available, uint64_t cgroup_limit, bool *clamped);

/* Assumed hit rate of a cache of c of n_expert experts (see above). */
double plan_expert_hit_rate(int64_t c, int64_t n_expert);

#endif
