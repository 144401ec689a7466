/*
 * The weight store (see store.h for the definitions, the slot state machine
 * and the invariants).
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sizes.h"
#include "core/timing.h"
#include "store/coact.h"
#include "store/expert_cache.h"

#define STORE_HUGE_PAGE ((uint64_t)2 << 20)
/* Resident tensors closer than this in the file are read as one range (the
 * gap is read too): fewer, larger reads. */
#define STORE_RUN_GAP ((uint64_t)1 << 20)
#define STORE_MAX_SEGS 3 /* tensors per unit: gate, up, down */

enum slot_state { SLOT_FREE = 0, SLOT_LOADING, SLOT_READY, SLOT_IN_USE };

struct seg {
    const struct gguf_tensor *t;
    uint64_t a_off, a_len; /* aligned covering range in the file */
    uint64_t slot_off;     /* where the covering range starts in a slot */
    uint64_t data_at;      /* the tensor's first byte within the covering range */
};

struct unit {
    int layer;
    int n_seg;
    struct seg seg[STORE_MAX_SEGS];
    uint64_t bytes; /* covering bytes of all segments */
    int slot;       /* -1 when in no slot */
    unsigned used;  /* segments acquired and released since it became current */
};

struct slot {
    enum slot_state state;
    int unit;       /* -1 when FREE */
    int64_t seq;    /* sequence number it was issued for */
    int pins;
    int reads;      /* in flight */
    bool failed;
    struct io_done fail; /* the first failed read */
    uint8_t *buf;
};

#define LOC_EXPERT (-2) /* loc.unit of an expert tensor in expert-stream mode */
#define LOC_GPU (-3)    /* loc.unit of a tensor on the GPU tier */
#define GPU_STAGE_BYTES ((uint64_t)64 << 20) /* read piece of a GPU tensor */
#define STORE_MAX_REG 3 /* host buffers registered with the GPU backend */

/* Where a bound (layer, role) lives: resident pointer, unit and segment, or
 * the expert cache (unit LOC_EXPERT, seg = gate 0, up 1, down 2). */
struct loc {
    const uint8_t *data; /* resident, mapped or in GPU memory; NULL when streamed */
    int unit, seg;
    bool gpu; /* data is GPU memory */
};

struct store {
    struct model *m;
    enum store_mode mode;
    struct io *io;
    struct loc *locs; /* per bound slot of the model: (1 + n_layer) * MODEL_W_COUNT */
    uint8_t *arena;   /* resident tensors */
    uint64_t arena_bytes;
    void *map;        /* STORE_MMAP */
    uint64_t map_bytes;
    struct unit *units;
    int n_units;
    struct slot *slots;
    int n_slots;
    uint8_t *pool;
    uint64_t slot_bytes;
    bool ring;          /* n_units > n_slots */
    int64_t cur;        /* current sequence number; -1 before the first */
    int64_t issued_end; /* sequence numbers below this have been issued (ring) */
    struct expert_cache *xc; /* STORE_EXPERT_STREAM */
    bool hints;              /* the expert cache takes model_hint's guesses */
    struct coact *coact;     /* STORE_EXPERT_STREAM: co-activation statistics */
    struct store_stats st;
    struct io_done done[32];
    struct backend *gpu;  /* the GPU tier's backend; NULL: none */
    void **gpu_bufs;      /* GPU tensors' memory, freed by store_close */
    int n_gpu_bufs;
    void *reg[STORE_MAX_REG]; /* host memory registered with gpu */
    int n_reg;
};

const char *store_mode_name(enum store_mode m)
{
    switch (m) {
    case STORE_RESIDENT: return "resident";
    case STORE_DENSE_STREAM: return "dense-stream";
    case STORE_MMAP: return "mmap";
    case STORE_EXPERT_STREAM: return "expert-stream";
    }
    return "?";
}

static size_t loc_index(const struct model *m, int layer, enum model_wrole role)
{
    return (size_t)(layer + 1) * MODEL_W_COUNT + role;
}

/* ---- completions ---------------------------------------------------- */

/* Applies finished reads to their slots; blocks for one when block. */
static void reap(struct store *s, bool block)
{
    int k = io_wait(s->io, s->done, (int)(sizeof s->done / sizeof s->done[0]), block);
    for (int i = 0; i < k; i++) {
        const struct io_done *d = &s->done[i];
        struct slot *sl = &s->slots[d->r.tag];
        HY_ASSERT(sl->state == SLOT_LOADING && sl->reads > 0);
        if (io_check(s->io, d) != HY_OK && !sl->failed) {
            sl->failed = true;
            sl->fail = *d;
        }
        err_clear();
        s->st.stream_bytes += d->res > 0 ? (uint64_t)d->res : 0;
        if (--sl->reads == 0) {
            if (sl->failed) {
                s->units[sl->unit].slot = -1;
                sl->unit = -1;
                sl->state = SLOT_FREE;
            } else {
                sl->state = SLOT_READY;
            }
        }
    }
}

/* Waits until slot si has no read in flight. */
static void drain_slot(struct store *s, int si)
{
    while (s->slots[si].reads > 0) reap(s, true);
}

/* ---- issuing ---------------------------------------------------------- */

/* Reads unit u into slot si for sequence number seq. The slot must not be
 * pinned. */
static enum hy_status issue(struct store *s, int si, int u, int64_t seq)
{
    struct slot *sl = &s->slots[si];
    HY_ASSERT(sl->pins == 0);
    drain_slot(s, si);
    if (sl->unit >= 0) s->units[sl->unit].slot = -1;
    struct unit *un = &s->units[u];
    if (un->slot >= 0) {
        /* the unit is in another slot (an out-of-order jump): leave it there
         * and give that slot up, so that a unit is never in two slots */
        struct slot *old = &s->slots[un->slot];
        drain_slot(s, un->slot);
        if (old->unit == u) {
            HY_ASSERT(old->pins == 0);
            old->unit = -1;
            old->state = SLOT_FREE;
        }
        un->slot = -1;
    }
    sl->unit = u;
    sl->seq = seq;
    sl->failed = false;
    sl->state = SLOT_LOADING;
    un->slot = si;
    un->used = 0;
    enum hy_status st = HY_OK;
    for (int i = 0; i < un->n_seg && st == HY_OK; i++) {
        const struct seg *g = &un->seg[i];
        int n = 0;
        st = io_submit_range(s->io, g->a_off, g->a_len, g->data_at + g->t->n_bytes,
                             sl->buf + g->slot_off, (uint64_t)si, &n);
        sl->reads += n;
    }
    s->st.stream_reads += (uint64_t)sl->reads;
    s->st.unit_loads++;
    if (st) {
        /* queue full: cannot happen with the queue sized at open */
        drain_slot(s, si);
        un->slot = -1;
        sl->unit = -1;
        sl->state = SLOT_FREE;
        return st;
    }
    if (sl->reads == 0) sl->state = SLOT_READY;
    return HY_OK;
}

static int unit_of_seq(const struct store *s, int64_t g) { return (int)(g % s->n_units); }

/* Ring: issues every sequence number in [from, to) not yet issued. */
static enum hy_status issue_upto(struct store *s, int64_t to)
{
    if (s->issued_end < s->cur) s->issued_end = s->cur;
    for (int64_t g = s->issued_end; g < to; g++) {
        int si = (int)(g % s->n_slots);
        const struct slot *sl = &s->slots[si];
        if (sl->pins > 0) break; /* the current unit still in use */
        if (sl->seq == g && sl->unit == unit_of_seq(s, g) && sl->state != SLOT_FREE) {
            s->issued_end = g + 1; /* already there or on its way */
            continue;
        }
        enum hy_status st = issue(s, si, unit_of_seq(s, g), g);
        if (st) return st;
        s->issued_end = g + 1;
    }
    return HY_OK;
}

/* Makes unit u current (ring mode) and returns its slot, waiting for it. */
static enum hy_status enter_unit(struct store *s, int u, int *slot_out)
{
    struct unit *un = &s->units[u];
    bool is_cur = s->cur >= 0 && unit_of_seq(s, s->cur) == u && un->slot >= 0 &&
                  s->slots[un->slot].seq == s->cur;
    if (!is_cur) {
        int64_t g;
        if (s->cur < 0) {
            g = u;
        } else {
            g = s->cur + 1;
            g += ((int64_t)u - unit_of_seq(s, g) + s->n_units) % s->n_units;
        }
        s->cur = g;
        /* unless the prefetch got here first, issue from g on (a jump) */
        if (!(un->slot >= 0 && s->slots[un->slot].seq == g) && s->issued_end > g)
            s->issued_end = g;
        enum hy_status st = issue_upto(s, g + s->n_slots);
        if (st) return st;
        un->used = 0;
    }
    HY_ASSERT(un->slot >= 0);
    *slot_out = un->slot;
    return HY_OK;
}

static enum hy_status wait_ready(struct store *s, int si, int u)
{
    struct slot *sl = &s->slots[si];
    if (sl->state == SLOT_LOADING) {
        int64_t t0 = timing_now_us();
        s->st.stalls++;
        drain_slot(s, si);
        s->st.stall_us += timing_now_us() - t0;
    }
    if (sl->state == SLOT_FREE || sl->unit != u) {
        /* its read failed: report it, and let the next pass start over */
        struct io_done d = sl->fail;
        sl->failed = false;
        s->cur = -1;
        s->issued_end = 0;
        return io_check(s->io, &d);
    }
    return HY_OK;
}

enum hy_status store_acquire(struct store *s, int layer, enum model_wrole role, int expert,
                             const struct gguf_tensor *t, uint64_t byte_off, const uint8_t **data,
                             bool *on_gpu, bool *stable)
{
    const struct loc *lc = &s->locs[loc_index(s->m, layer, role)];
    *on_gpu = lc->gpu;
    *stable = lc->data != NULL; /* slots and the expert cache are refilled after release */
    if (lc->data) {
        *data = lc->data + byte_off;
        return HY_OK;
    }
    if (lc->unit == LOC_EXPERT) return expert_cache_acquire(s->xc, layer, lc->seg, expert, data);
    HY_ASSERT(lc->unit >= 0 && lc->unit < s->n_units);
    int si;
    enum hy_status st;
    if (s->ring) {
        if ((st = enter_unit(s, lc->unit, &si))) return st;
    } else {
        struct unit *un = &s->units[lc->unit];
        if (un->slot < 0 && (st = issue(s, lc->unit, lc->unit, lc->unit))) return st;
        si = un->slot;
    }
    if ((st = wait_ready(s, si, lc->unit))) return st;
    struct slot *sl = &s->slots[si];
    const struct seg *g = &s->units[lc->unit].seg[lc->seg];
    HY_ASSERT(g->t == t);
    sl->pins++;
    sl->state = SLOT_IN_USE;
    *data = sl->buf + g->slot_off + g->data_at + byte_off;
    return HY_OK;
}

void store_release(struct store *s, int layer, enum model_wrole role)
{
    const struct loc *lc = &s->locs[loc_index(s->m, layer, role)];
    if (lc->data) return;
    if (lc->unit == LOC_EXPERT) {
        expert_cache_release(s->xc, layer, lc->seg);
        return;
    }
    struct unit *un = &s->units[lc->unit];
    HY_ASSERT(un->slot >= 0);
    struct slot *sl = &s->slots[un->slot];
    HY_ASSERT(sl->pins > 0);
    if (--sl->pins == 0) sl->state = SLOT_READY;
    un->used |= 1u << lc->seg;
    if (s->ring && sl->pins == 0 && un->used == (1u << un->n_seg) - 1 && sl->seq == s->cur) {
        /* the unit is done: its slot can take the read S ahead now. A
         * failure here is seen again by the acquire that needs it. */
        if (issue_upto(s, s->cur + 1 + s->n_slots) != HY_OK) err_clear();
    }
}

/* Whether layer's experts are on the GPU tier (not in the expert cache). */
static bool experts_on_gpu(const struct store *s, int layer)
{
    return layer >= 0 && layer < s->m->hp->n_layer &&
           s->locs[loc_index(s->m, layer, MODEL_W_FFN_GATE_EXPS)].unit == LOC_GPU;
}

void store_route(struct store *s, int layer, const int32_t *ids, int64_t n, const bool *elsewhere)
{
    if (s->xc && !experts_on_gpu(s, layer)) expert_cache_route(s->xc, layer, ids, n, elsewhere);
}

void store_routed(struct store *s, const int32_t *ids, int64_t n_tok, int64_t n_layer, int64_t k)
{
    if (s->xc) expert_cache_routed(s->xc, ids, n_tok, n_layer, k);
}

bool store_weight_stable(const struct store *s, int layer, enum model_wrole role)
{
    return s->locs[loc_index(s->m, layer, role)].data != NULL;
}

bool store_wants_hints(const struct store *s)
{
    return s->xc != NULL && s->hints;
}

void store_hint(struct store *s, int layer, const int32_t *ids, int64_t n, const bool *elsewhere)
{
    if (s->xc && !experts_on_gpu(s, layer)) expert_cache_hint(s->xc, layer, ids, n, elsewhere);
}

/* ---- open / close ----------------------------------------------------- */

static int cmp_tensor_off(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return x->file_off < y->file_off ? -1 : x->file_off > y->file_off;
}

struct load_progress {
    model_progress_fn fn;
    void *user;
    uint64_t base, total;
};

static void run_progress(void *user, uint64_t done, uint64_t total)
{
    (void)total;
    struct load_progress *p = user;
    if (p->fn) p->fn(p->user, p->base + done, p->total);
}

/* Reads the resident tensors (those of res[0..n), sorted by offset, distinct)
 * into one arena and points their locs at it. */
static enum hy_status load_resident(struct store *s, const struct gguf_tensor **res, size_t n,
                                    const struct store_config *cfg)
{
    if (n == 0) return HY_OK;
    const uint32_t al = io_align(s->io);
    /* runs: [first, last] tensor index, aligned covering range */
    uint64_t total = 0;
    size_t n_runs = 0;
    uint64_t *run_lo = mem_xcalloc(n, sizeof(uint64_t)), *run_hi = mem_xcalloc(n, sizeof(uint64_t));
    size_t *run_first = mem_xcalloc(n + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = res[i]->file_off, hi = lo + res[i]->n_bytes;
        if (n_runs > 0 && lo <= run_hi[n_runs - 1] + STORE_RUN_GAP) {
            run_hi[n_runs - 1] = HY_MAX(run_hi[n_runs - 1], hi);
        } else {
            run_first[n_runs] = i;
            run_lo[n_runs] = lo;
            run_hi[n_runs] = hi;
            n_runs++;
        }
    }
    run_first[n_runs] = n;
    uint64_t *run_at = mem_xcalloc(n_runs, sizeof(uint64_t)); /* arena offset of each run's cover */
    for (size_t r = 0; r < n_runs; r++) {
        uint64_t a_off, a_len;
        io_cover(al, run_lo[r], run_hi[r] - run_lo[r], &a_off, &a_len);
        run_at[r] = total;
        total += a_len;
    }
    enum hy_status st = HY_OK;
    char sz[32];
    const size_t alloc = (size_t)base_align_up(total, STORE_HUGE_PAGE);
    s->arena = mem_aligned_alloc(STORE_HUGE_PAGE, alloc);
    if (!s->arena) {
        st = err_set(HY_ERR_OOM, "RAM tier: cannot allocate %s for the resident weights of %s",
                     sizes_format(total, sz, sizeof sz), s->m->path);
        goto out;
    }
#ifdef MADV_HUGEPAGE
    /* decode streams every weight once per token: with 4 KiB pages its TLB
     * misses cost a measurable share of the bandwidth */
    (void)madvise(s->arena, alloc, MADV_HUGEPAGE);
#endif
    s->arena_bytes = total;
    struct load_progress lp = {cfg->progress, cfg->progress_user, 0, total};
    int64_t t0 = timing_now_us();
    for (size_t r = 0; r < n_runs && st == HY_OK; r++) {
        uint64_t at;
        lp.base = run_at[r];
        st = io_read_range(s->io, run_lo[r], run_hi[r] - run_lo[r], s->arena + run_at[r],
                           run_progress, &lp, &at);
        if (st) break;
        for (size_t i = run_first[r]; i < run_first[r + 1]; i++) {
            const uint8_t *p = s->arena + run_at[r] + at + (res[i]->file_off - run_lo[r]);
            /* every bound slot of this tensor (tied embeddings: two) */
            const size_t n_loc = (size_t)(s->m->hp->n_layer + 1) * MODEL_W_COUNT;
            for (size_t k = 0; k < n_loc; k++)
                if (s->m->bound[k] == res[i]) s->locs[k].data = p;
        }
    }
    s->st.load_us = timing_now_us() - t0;
    s->st.load_bytes = io_stats(s->io).bytes_read;
out:
    free(run_lo);
    free(run_hi);
    free(run_first);
    free(run_at);
    return st;
}

/* Entries of the expert cache: the plan's cache plus its stream pool (k
 * slices per slot), at least two routes' worth. */
static int expert_capacity(const struct model *m, const struct plan *p)
{
    const int64_t k = m->hp->n_expert_used;
    int64_t c = p ? (int64_t)p->expert_cache_entries + (int64_t)p->pool_slots * k : 0;
    return (int)HY_MAX(c, 2 * k);
}

static enum hy_status open_experts(struct store *s, const struct store_config *cfg)
{
    struct model *m = s->m;
    enum hy_status st;
    if (cfg->cache_dir && !cfg->no_coact) {
        uint64_t key = 0;
        if ((st = coact_model_key(m->path, m->gguf->data_off, &key))) return st;
        if ((st = coact_open((int)m->hp->n_layer, (int)m->hp->n_expert, key, cfg->cache_dir,
                             &s->coact)))
            return st;
    } else if (!cfg->no_coact) {
        if ((st = coact_open((int)m->hp->n_layer, (int)m->hp->n_expert, 0, NULL, &s->coact)))
            return st;
    }
    s->hints = !cfg->no_hints;
    const int cap = cfg->expert_capacity > 0 ? cfg->expert_capacity : expert_capacity(m, cfg->plan);
    struct expert_cache_config xc = {.m = m, .io = s->io, .capacity = cap,
                                     .coact = s->coact, .hints = s->hints, .lru = cfg->lru};
    if ((st = expert_cache_open(&xc, &s->xc))) return st;
    expert_cache_warm(s->xc);
    return HY_OK;
}

/* Whether the plan puts tensor t on the NVMe tier. */
static bool plan_streams(const struct plan *p, const struct gguf_ctx *g, const struct gguf_tensor *t)
{
    size_t i = (size_t)(t - g->tensors);
    HY_ASSERT(i < p->n_tensors);
    return p->tensors[i].tier == PLAN_TIER_NVME;
}

static enum hy_status open_mmap(struct store *s)
{
    int fd = open(s->m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot open: %s", s->m->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return err_set(HY_ERR_IO, "%s: cannot stat: %s", s->m->path, strerror(e));
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return err_set(HY_ERR_IO, "%s: cannot map: %s", s->m->path, strerror(e));
    s->map = p;
    s->map_bytes = (uint64_t)sb.st_size;
    const size_t n_loc = (size_t)(s->m->hp->n_layer + 1) * MODEL_W_COUNT;
    for (size_t k = 0; k < n_loc; k++) {
        const struct gguf_tensor *t = s->m->bound[k];
        if (!t) continue;
        if (t->file_off + t->n_bytes > s->map_bytes)
            return err_set(HY_ERR_IO, "%s: tensor '%s' ends past the end of the file", s->m->path,
                           t->name);
        s->locs[k].data = (const uint8_t *)p + t->file_off;
    }
    return HY_OK;
}

/* Reads every GPU-tier tensor through a staging buffer into GPU memory. */
static enum hy_status load_gpu(struct store *s)
{
    struct model *m = s->m;
    const size_t n_loc = (size_t)(m->hp->n_layer + 1) * MODEL_W_COUNT;
    const uint32_t al = io_align(s->io);
    uint8_t *stage = NULL;
    enum hy_status st = HY_OK;
    char sz[32];
    s->gpu_bufs = mem_xcalloc(n_loc, sizeof *s->gpu_bufs);
    for (size_t k = 0; k < n_loc && st == HY_OK; k++) {
        const struct gguf_tensor *t = m->bound[k];
        if (!t || s->locs[k].unit != LOC_GPU || s->locs[k].data) continue;
        uint8_t *dev = s->gpu->ops->alloc(s->gpu, (size_t)t->n_bytes);
        if (!dev) {
            st = err_set(HY_ERR_OOM, "GPU tier: cannot allocate %s for tensor '%s' of %s",
                         sizes_format(t->n_bytes, sz, sizeof sz), t->name, m->path);
            break;
        }
        s->gpu_bufs[s->n_gpu_bufs++] = dev;
        if (!stage) {
            stage = mem_aligned_alloc(al, (size_t)(GPU_STAGE_BYTES + 2 * (uint64_t)al));
            if (!stage) {
                st = err_set(HY_ERR_OOM, "GPU tier: cannot allocate the staging buffer");
                break;
            }
        }
        for (uint64_t o = 0; o < t->n_bytes && st == HY_OK; o += GPU_STAGE_BYTES) {
            const uint64_t n = HY_MIN(GPU_STAGE_BYTES, t->n_bytes - o);
            uint64_t at;
            if ((st = io_read_range(s->io, t->file_off + o, n, stage, NULL, NULL, &at))) break;
            backend_upload(s->gpu, dev + o, stage + at, (size_t)n);
            /* the staging buffer is rewritten next: the copy must have left */
            st = backend_sync(s->gpu);
        }
        s->st.gpu_bytes += t->n_bytes;
        /* every bound slot of this tensor (tied embeddings: two) */
        for (size_t j = 0; j < n_loc; j++)
            if (m->bound[j] == t) {
                s->locs[j].data = dev;
                s->locs[j].gpu = true;
            }
    }
    mem_aligned_free(stage);
    s->st.load_bytes = io_stats(s->io).bytes_read;
    return st;
}

/* Page-locks host memory the GPU backend copies weights from; a failure
 * only makes copies slower (a warning). */
static void register_host(struct store *s, void *p, uint64_t bytes)
{
    if (!s->gpu || !p || !bytes || !s->gpu->ops->host_register || s->n_reg >= STORE_MAX_REG)
        return;
    if (s->gpu->ops->host_register(s->gpu, p, (size_t)bytes) == HY_OK) {
        s->reg[s->n_reg++] = p;
    } else {
        LOG_W("%s (host weights are copied to the GPU through pageable memory)", err_msg());
        err_clear();
    }
}

enum hy_status store_open(struct model *m, const struct store_config *cfg, struct store **out)
{
    *out = NULL;
    struct io *override = cfg->io_override;
    if (m->store) {
        io_close(override);
        return err_set(HY_ERR_INVALID_ARG, "%s: the model already has a weight store", m->path);
    }
    if (cfg->mode == STORE_DENSE_STREAM && !cfg->plan) {
        io_close(override);
        return err_set(HY_ERR_INVALID_ARG, "dense streaming needs a plan");
    }
    if (cfg->plan && cfg->plan->n_tensors != m->gguf->n_tensors) {
        io_close(override);
        return err_set(HY_ERR_INVALID_ARG, "%s: the plan is for another file", m->path);
    }
    struct store *s = mem_xcalloc(1, sizeof *s);
    s->m = m;
    s->mode = cfg->mode;
    s->cur = -1;
    const size_t n_loc = (size_t)(m->hp->n_layer + 1) * MODEL_W_COUNT;
    s->locs = mem_xcalloc(n_loc, sizeof *s->locs);
    for (size_t k = 0; k < n_loc; k++) s->locs[k].unit = -1;
    s->gpu = cfg->gpu;
    enum hy_status st = HY_OK;
    const struct gguf_tensor **res = NULL;
    /* the GPU tier, from the plan */
    if (cfg->plan && cfg->mode != STORE_MMAP) {
        for (size_t k = 0; k < n_loc; k++) {
            const struct gguf_tensor *t = m->bound[k];
            if (!t || cfg->plan->tensors[t - m->gguf->tensors].tier != PLAN_TIER_GPU) continue;
            if (!cfg->gpu) {
                io_close(override);
                st = err_set(HY_ERR_INVALID_ARG,
                             "%s: the plan puts tensor '%s' on the GPU, and there is no GPU backend",
                             m->path, t->name);
                goto fail;
            }
            s->locs[k].unit = LOC_GPU;
        }
    }
    if (cfg->mode == STORE_MMAP) {
        io_close(override);
        if ((st = open_mmap(s))) goto fail;
        goto done;
    }
    s->io = override; /* else opened below, once the queue's size is known */

    /* units: the plan's streamed dense FFN layers */
    res = mem_xcalloc(n_loc + 1, sizeof *res);
    size_t n_res = 0;
    if (cfg->mode == STORE_DENSE_STREAM) {
        s->units = mem_xcalloc((size_t)m->hp->n_layer, sizeof *s->units);
        for (int l = 0; l < m->hp->n_layer; l++) {
            struct unit *un = &s->units[s->n_units];
            *un = (struct unit){.layer = l, .slot = -1};
            static const enum model_wrole roles[] = {MODEL_W_FFN_GATE, MODEL_W_FFN_UP,
                                                     MODEL_W_FFN_DOWN};
            for (int r = 0; r < 3; r++) {
                size_t k = loc_index(m, l, roles[r]);
                const struct gguf_tensor *t = m->bound[k];
                if (!t || !plan_streams(cfg->plan, m->gguf, t)) continue;
                s->locs[k].unit = s->n_units;
                s->locs[k].seg = un->n_seg;
                un->seg[un->n_seg++] = (struct seg){.t = t};
            }
            if (un->n_seg > 0) s->n_units++;
        }
    }
    if (cfg->mode == STORE_EXPERT_STREAM) {
        if (!m->is_moe) {
            st = err_set(HY_ERR_INVALID_ARG, "%s: expert streaming needs an MoE model", m->path);
            goto fail;
        }
        static const enum model_wrole xroles[3] = {MODEL_W_FFN_GATE_EXPS, MODEL_W_FFN_UP_EXPS,
                                                   MODEL_W_FFN_DOWN_EXPS};
        for (int l = 0; l < m->hp->n_layer; l++)
            for (int r = 0; r < 3; r++) {
                size_t k = loc_index(m, l, xroles[r]);
                if (!m->bound[k] || s->locs[k].unit == LOC_GPU) continue;
                s->locs[k].unit = LOC_EXPERT;
                s->locs[k].seg = r;
            }
    }
    /* resident tensors: every other bound tensor, once each */
    for (size_t k = 0; k < n_loc; k++) {
        const struct gguf_tensor *t = m->bound[k];
        if (!t || s->locs[k].unit != -1) continue;
        bool seen = false;
        for (size_t j = 0; j < n_res && !seen; j++) seen = res[j] == t;
        if (!seen) res[n_res++] = t;
    }
    qsort(res, n_res, sizeof *res, cmp_tensor_off);

    if (s->n_units > 0) {
        s->n_slots = cfg->plan->pool_slots > 0 ? cfg->plan->pool_slots : 1;
        if (s->n_slots > s->n_units) s->n_slots = s->n_units;
        s->ring = s->n_units > s->n_slots;
    }
    if (!s->io) {
        /* per slot: each segment's covering range in IO_MAX_READ_BYTES pieces */
        uint64_t max_unit = 0;
        for (int u = 0; u < s->n_units; u++) {
            uint64_t b = 0;
            for (int i = 0; i < s->units[u].n_seg; i++)
                b += s->units[u].seg[i].t->n_bytes / IO_MAX_READ_BYTES + 3;
            max_unit = HY_MAX(max_unit, b);
        }
        /* the queue holds every slot's reads, or a resident load's */
        struct io_config ic = cfg->io;
        ic.max_queued = (int)HY_MAX((uint64_t)64, max_unit * (uint64_t)(s->n_slots + 1));
        if (cfg->mode == STORE_EXPERT_STREAM) {
            /* every entry loading at once, each slice in IO_MAX_READ_BYTES pieces */
            uint64_t per = 3 * (expert_cache_entry_bytes(m, 4096) / 3 / IO_MAX_READ_BYTES + 2);
            ic.max_queued = (int)HY_MIN((uint64_t)1 << 20,
                                        HY_MAX((uint64_t)ic.max_queued,
                                               per * (uint64_t)HY_MAX(cfg->expert_capacity,
                                                                      expert_capacity(m, cfg->plan))));
        }
        if ((st = io_open(m->path, &ic, &s->io))) goto fail;
    }
    const uint32_t al = io_align(s->io);
    for (int u = 0; u < s->n_units; u++) {
        struct unit *un = &s->units[u];
        for (int i = 0; i < un->n_seg; i++) {
            struct seg *g = &un->seg[i];
            io_cover(al, g->t->file_off, g->t->n_bytes, &g->a_off, &g->a_len);
            g->data_at = g->t->file_off - g->a_off;
            g->slot_off = un->bytes;
            un->bytes += g->a_len;
        }
        s->slot_bytes = HY_MAX(s->slot_bytes, un->bytes);
    }
    if ((st = load_resident(s, res, n_res, cfg))) goto fail;
    if (s->gpu && (st = load_gpu(s))) goto fail;
    if (s->arena) register_host(s, s->arena, base_align_up(s->arena_bytes, STORE_HUGE_PAGE));
    if (cfg->mode == STORE_EXPERT_STREAM && (st = open_experts(s, cfg))) goto fail;
    if (s->xc) {
        void *xp;
        uint64_t xb;
        expert_cache_memory(s->xc, &xp, &xb);
        register_host(s, xp, xb);
    }
    if (s->n_units > 0) {
        char sz[32];
        s->slots = mem_xcalloc((size_t)s->n_slots, sizeof *s->slots);
        uint64_t pool = s->slot_bytes * (uint64_t)s->n_slots;
        s->pool = mem_aligned_alloc(STORE_HUGE_PAGE, (size_t)base_align_up(pool, STORE_HUGE_PAGE));
        if (!s->pool) {
            st = err_set(HY_ERR_OOM, "streaming pool: cannot allocate %d slots of %s",
                         s->n_slots, sizes_format(s->slot_bytes, sz, sizeof sz));
            goto fail;
        }
#ifdef MADV_HUGEPAGE
        (void)madvise(s->pool, (size_t)base_align_up(pool, STORE_HUGE_PAGE), MADV_HUGEPAGE);
#endif
        register_host(s, s->pool, base_align_up(pool, STORE_HUGE_PAGE));
        for (int i = 0; i < s->n_slots; i++)
            s->slots[i] = (struct slot){.unit = -1, .seq = -1, .buf = s->pool + s->slot_bytes * (uint64_t)i};
        s->st.pool_bytes = pool;
        /* the first pass's reads start now, behind the rest of the set-up */
        if (s->ring) {
            s->issued_end = 0;
            s->cur = 0;
            st = issue_upto(s, s->n_slots);
            s->cur = -1;
        } else {
            for (int u = 0; u < s->n_units && st == HY_OK; u++) st = issue(s, u, u, u);
        }
        if (st) goto fail;
    }
done:
    free(res);
    s->st.resident_bytes = s->arena_bytes;
    s->st.pool_slots = s->n_slots;
    s->st.n_units = s->n_units;
    m->store = s;
    m->bytes_read = s->st.load_bytes;
    m->load_us = s->st.load_us;
    *out = s;
    return HY_OK;
fail:
    free(res);
    store_close(s);
    return st;
}

void store_close(struct store *s)
{
    if (!s) return;
    if (s->m && s->m->store == s) s->m->store = NULL;
    if (s->gpu) {
        /* kernels may still read GPU tensors or copy from host memory */
        if (backend_sync(s->gpu) != HY_OK) err_clear();
        for (int i = 0; i < s->n_reg; i++) s->gpu->ops->host_unregister(s->gpu, s->reg[i]);
        for (int i = 0; i < s->n_gpu_bufs; i++) s->gpu->ops->dealloc(s->gpu, s->gpu_bufs[i]);
    }
    free(s->gpu_bufs);
    expert_cache_close(s->xc);
    if (s->coact && coact_save(s->coact) != HY_OK) {
        LOG_W("%s", err_msg());
        err_clear();
    }
    coact_close(s->coact);
    io_close(s->io);
    mem_aligned_free(s->arena);
    mem_aligned_free(s->pool);
    if (s->map) munmap(s->map, (size_t)s->map_bytes);
    free(s->slots);
    free(s->units);
    free(s->locs);
    free(s);
}

enum store_mode store_mode_of(const struct store *s) { return s->mode; }

struct store_stats store_stats(const struct store *s)
{
    struct store_stats st = s->st;
    if (s->xc) {
        st.experts = expert_cache_stats(s->xc);
        st.has_experts = true;
        st.stream_bytes += st.experts.bytes_read;
        st.stalls += st.experts.stalls;
        st.stall_us += st.experts.stall_us;
        st.pool_bytes = (uint64_t)st.experts.capacity * st.experts.entry_bytes;
    }
    return st;
}

const char *store_io_kind(const struct store *s)
{
    return s->io ? io_kind_name(io_kind_of(s->io)) : NULL;
}

enum hy_status store_check(const struct store *s)
{
    if (s->xc) return expert_cache_check(s->xc);
    int reads = 0, pinned = 0;
    for (int i = 0; i < s->n_slots; i++) {
        const struct slot *sl = &s->slots[i];
        reads += sl->reads;
        switch (sl->state) {
        case SLOT_FREE:
            if (sl->unit != -1 || sl->pins || sl->reads)
                return err_set(HY_ERR_INTERNAL, "store: FREE slot %d holds unit %d, %d pins, %d reads", i,
                               sl->unit, sl->pins, sl->reads);
            break;
        case SLOT_LOADING:
            if (sl->reads <= 0 || sl->pins || sl->unit < 0)
                return err_set(HY_ERR_INTERNAL, "store: LOADING slot %d: unit %d, %d pins, %d reads", i,
                               sl->unit, sl->pins, sl->reads);
            break;
        case SLOT_READY:
        case SLOT_IN_USE:
            if (sl->reads || sl->unit < 0 || (sl->state == SLOT_IN_USE) != (sl->pins > 0))
                return err_set(HY_ERR_INTERNAL, "store: %s slot %d: unit %d, %d pins, %d reads",
                               sl->state == SLOT_READY ? "READY" : "IN_USE", i, sl->unit, sl->pins,
                               sl->reads);
            break;
        }
        if (sl->unit >= 0 && s->units[sl->unit].slot != i)
            return err_set(HY_ERR_INTERNAL, "store: slot %d holds unit %d, which says slot %d", i,
                           sl->unit, s->units[sl->unit].slot);
        if (sl->pins > 0) {
            pinned++;
            if (s->ring && sl->seq != s->cur)
                return err_set(HY_ERR_INTERNAL, "store: slot %d pinned for sequence %" PRId64
                               " while %" PRId64 " is current", i, sl->seq, s->cur);
        }
    }
    for (int u = 0; u < s->n_units; u++) {
        int si = s->units[u].slot;
        if (si >= 0 && (si >= s->n_slots || s->slots[si].unit != u))
            return err_set(HY_ERR_INTERNAL, "store: unit %d says slot %d, which does not hold it", u, si);
    }
    if (pinned > 1) return err_set(HY_ERR_INTERNAL, "store: %d slots pinned at once", pinned);
    if (s->io && io_pending(s->io) != reads)
        return err_set(HY_ERR_INTERNAL, "store: %d reads outstanding, slots account for %d",
                       io_pending(s->io), reads);
    return HY_OK;
}
