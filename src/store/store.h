/*
 * The weight store (DESIGN.md §1, §2): where every weight the forward pass
 * uses comes from. model_acquire / model_release / model_route forward to it
 * once store_open has attached it to a model.
 *
 * Definitions.
 *   resident tensor  a bound tensor the plan keeps in RAM. All resident
 *                    tensors live in one arena, read once at open with large
 *                    O_DIRECT reads (runs of tensors adjacent in the file are
 *                    read as one range).
 *   unit             what streams as one: the dense FFN tensors (gate, up,
 *                    down) of one layer the plan left on the NVMe tier. Units
 *                    are numbered in layer order, 0 .. n_units − 1.
 *   slot             a buffer of the streaming pool, allocated at open, large
 *                    enough for any unit (each tensor's aligned covering
 *                    range). There are S = plan.pool_slots of them.
 *   sequence number  the forward pass walks the layers in order, token after
 *                    token, so the units it needs form the endless sequence
 *                    g = 0, 1, 2, ... with unit(g) = g mod n_units. Unit g is
 *                    read into slot g mod S: any S consecutive sequence
 *                    numbers use S different slots, which is what lets the
 *                    reads of g + 1 .. g + S − 1 (the prefetch depth d =
 *                    S − 1) be in flight while g computes.
 *   current          the sequence number being computed (cur).
 *
 * Slot state machine:
 *   FREE ──issue(g)──► LOADING ──last read done──► READY ──acquire──► IN_USE
 *                         ▲                          ▲ │                 │
 *                         └──────issue(g + S)────────┘ └───◄─release─────┘
 *   A read error turns the slot FREE and is reported by the acquire that
 *   needs it (HY_ERR_IO naming the file, offset and length).
 *
 * Prefetch. When every tensor of the current unit has been acquired and
 * released once (the unit is done), its slot is reissued at once for g + S.
 * When the forward pass asks for a tensor of another unit, the store moves
 * cur to the next g with that unit (normally cur + 1), issues whatever of
 * g .. g + S − 1 is not yet issued, and waits only if the unit's reads are
 * still in flight: that wait is a stall, counted and timed. An access out of
 * the expected order (an error mid-pass, a restart) is still served right:
 * cur jumps forward to the next g of the unit asked for.
 * When n_units ≤ S every unit gets a slot of its own and is read once.
 *
 * Invariants (store_check):
 *   - FREE ⇔ no unit; LOADING ⇔ reads in flight > 0 and not pinned;
 *     READY: loaded, not pinned; IN_USE ⇔ pins > 0 and loaded.
 *   - unit u in slot s ⇔ slot s holds u (at most one slot per unit).
 *   - the I/O layer's outstanding reads == the sum of the slots' reads in flight.
 *   - only the current unit's slot may be pinned.
 *
 * Modes: STORE_RESIDENT (everything in the arena), STORE_DENSE_STREAM (the
 * plan's NVMe-tier FFN layers stream), STORE_EXPERT_STREAM (everything but
 * the routed experts resident; experts through the expert cache,
 * expert_cache.h), STORE_MMAP (the baseline: the file mapped, weights read
 * through the page cache as llama.cpp and Ollama do).
 *
 * Threads: the forward's thread only. Memory: the arena, the pool and the
 * I/O queues are allocated at open; acquire, release and route allocate
 * nothing.
 */
#ifndef HY_STORE_STORE_H
#define HY_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "io/io.h"
#include "model/model.h"
#include "plan/plan.h"
#include "store/expert_cache.h"

enum store_mode { STORE_RESIDENT = 0, STORE_DENSE_STREAM, STORE_MMAP, STORE_EXPERT_STREAM };

/* "resident", "dense-stream", "mmap", "expert-stream" */
const char *store_mode_name(enum store_mode m);

struct store_config {
    enum store_mode mode;
    /* STORE_DENSE_STREAM: which tensors stream (tier NVME) and the pool's
     * slot count; borrowed for store_open only. */
    const struct plan *plan;
    struct io_config io;
    /* tests: read through this I/O instead of opening the file (owned by
     * the store from then on, also on error) */
    struct io *io_override;
    model_progress_fn progress; /* resident load progress; may be NULL */
    void *progress_user;
    /* STORE_EXPERT_STREAM: where co-activation statistics persist (NULL:
     * not persisted); switches for tests and benches */
    const char *cache_dir;
    bool no_coact, no_hints, lru;
    int expert_capacity; /* entries of the expert cache; 0: from the plan */
    /* The GPU tier: tensors the plan puts on PLAN_TIER_GPU are read through
     * a staging buffer into this backend's memory and never kept in RAM, and
     * the store's host memory is registered with it for fast copies. NULL:
     * no GPU tier (the plan's GPU tiers are then an error). */
    struct backend *gpu;
};

struct store_stats {
    uint64_t load_bytes;     /* read at open (resident tensors) */
    int64_t load_us;
    uint64_t stream_bytes;   /* read while running (streamed units) */
    uint64_t stream_reads;   /* reads issued while running */
    uint64_t unit_loads;     /* units read into a slot */
    uint64_t stalls;         /* acquires that waited for a read */
    int64_t stall_us;        /* time spent waiting */
    uint64_t resident_bytes; /* arena bytes */
    uint64_t pool_bytes;     /* slot bytes, all slots */
    int pool_slots;
    int n_units;
    uint64_t gpu_bytes;   /* weights placed in GPU memory */
    bool has_experts; /* STORE_EXPERT_STREAM: the expert cache's counters */
    struct expert_cache_stats experts;
};

struct store;

/* Builds the store for m according to cfg, loads the resident tensors and
 * attaches it to m (model_acquire & co. use it from then on; model_close
 * closes it). Errors: HY_ERR_IO (open or read, naming the file, offset and
 * length), HY_ERR_OOM (naming the tier and size), HY_ERR_INVALID_ARG (dense
 * streaming without a plan, or a plan for another file). */
HY_MUST_CHECK enum hy_status store_open(struct model *m, const struct store_config *cfg,
                                        struct store **out);

/* Detaches from the model and frees everything (waits for reads in flight). */
void store_close(struct store *s);

enum store_mode store_mode_of(const struct store *s);
struct store_stats store_stats(const struct store *s);
/* The I/O layer's kind ("uring", "pread"); NULL in mmap mode. */
const char *store_io_kind(const struct store *s);

/* HY_OK when every invariant above holds, else HY_ERR_INTERNAL naming the
 * first broken one. For tests and debug builds. */
HY_MUST_CHECK enum hy_status store_check(const struct store *s);

/* Called by model_acquire / model_release / model_route (model.h). */
HY_MUST_CHECK enum hy_status store_acquire(struct store *s, int layer, enum model_wrole role,
                                           int expert, const struct gguf_tensor *t,
                                           uint64_t byte_off, const uint8_t **data,
                                           bool *on_gpu, bool *stable);
void store_release(struct store *s, int layer, enum model_wrole role);
void store_route(struct store *s, int layer, const int32_t *ids, int64_t n, const bool *elsewhere);
void store_routed(struct store *s, const int32_t *ids, int64_t n_tok, int64_t n_layer, int64_t k);
bool store_wants_hints(const struct store *s);
/* model_weight_stable (model.h). */
bool store_weight_stable(const struct store *s, int layer, enum model_wrole role);
void store_hint(struct store *s, int layer, const int32_t *ids, int64_t n, const bool *elsewhere);

#endif
