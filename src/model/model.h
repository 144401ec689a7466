/*
 * A model ready to run: the parsed GGUF header, hyperparameters, every tensor
 * the forward pass needs bound to its role and checked against the
 * hyperparameters, and the weights' bytes.
 *
 * Binding. A table names each role (token_embd, blk.N.attn_q, ...), whether
 * it is global or per layer, whether dense or MoE models need it, and its
 * shape from the hyperparameters. model_open checks all of it before any
 * weight is read, so that a wrong file fails in milliseconds with the
 * tensor's name, its shape and the expected one.
 *
 * Weight access. The forward pass gets every weight through model_acquire,
 * right before it uses it, and hands it back with model_release; it never
 * holds a pointer across layers. The three functions forward to the weight
 * store (src/store/store.h) attached by model_load (everything resident) or
 * store_open (a plan's placement, streaming, or the mmap baseline): acquire
 * may then block on a read and fail with HY_ERR_IO, and release unpins.
 * The forward pass does not know which. model_route is where
 * the forward pass tells the store which experts a layer's router picked,
 * before it acquires them.
 *
 * Stacked experts: blk.N.ffn_{gate,up,down}_exps have the expert index as the
 * outermost dimension (ne[2]), so expert e of a tensor is the contiguous
 * byte range [e * slice, (e + 1) * slice) with slice = n_bytes / n_expert.
 *
 * Architecture features (arch.h flags) add roles: q/k/v biases (bound when
 * present), per-head Q/K norms, the shared expert. A role whose flag the
 * architecture lacks is never bound, so the forward pass asks
 * model_has_weight before using an optional one.
 *
 * Not here: quantized types (checked by the backend through
 * model_check_types).
 */
#ifndef HY_MODEL_MODEL_H
#define HY_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "gguf/gguf.h"
#include "model/model_info.h"

/* What a weight is for. Global roles first, then per-layer ones. */
enum model_wrole {
    MODEL_W_TOKEN_EMBD = 0,     /* token_embd [n_embd, n_vocab] */
    MODEL_W_OUTPUT_NORM,        /* output_norm [n_embd], F32 */
    MODEL_W_OUTPUT,             /* output [n_embd, n_vocab]; token_embd when absent (tied) */
    MODEL_W_ATTN_NORM,          /* blk.N.attn_norm [n_embd], F32 */
    MODEL_W_ATTN_Q,             /* [n_embd, n_head * head_dim] */
    MODEL_W_ATTN_K,             /* [n_embd, n_head_kv * head_dim] */
    MODEL_W_ATTN_V,             /* [n_embd, n_head_kv * head_dim_v] */
    MODEL_W_ATTN_OUT,           /* [n_head * head_dim_v, n_embd] */
    MODEL_W_ATTN_Q_BIAS,        /* ARCH_QKV_BIAS, when present: [n_head * head_dim], F32 */
    MODEL_W_ATTN_K_BIAS,        /* ARCH_QKV_BIAS, when present: [n_head_kv * head_dim], F32 */
    MODEL_W_ATTN_V_BIAS,        /* ARCH_QKV_BIAS, when present: [n_head_kv * head_dim_v], F32 */
    MODEL_W_ATTN_Q_NORM,        /* ARCH_QK_NORM: per-head RMSNorm weight [head_dim], F32 */
    MODEL_W_ATTN_K_NORM,        /* ARCH_QK_NORM: [head_dim], F32 */
    MODEL_W_FFN_NORM,           /* [n_embd], F32 */
    MODEL_W_FFN_GATE,           /* dense: [n_embd, n_ff] */
    MODEL_W_FFN_UP,             /* dense: [n_embd, n_ff] */
    MODEL_W_FFN_DOWN,           /* dense: [n_ff, n_embd] */
    MODEL_W_FFN_ROUTER,         /* MoE: ffn_gate_inp [n_embd, n_expert] */
    MODEL_W_FFN_GATE_EXPS,      /* MoE: [n_embd, n_ff_exp, n_expert] */
    MODEL_W_FFN_UP_EXPS,        /* MoE: [n_embd, n_ff_exp, n_expert] */
    MODEL_W_FFN_DOWN_EXPS,      /* MoE: [n_ff_exp, n_embd, n_expert] */
    MODEL_W_FFN_GATE_INP_SHEXP, /* ARCH_SHARED_EXPERT: shared expert's gate [n_embd] (1 row) */
    MODEL_W_FFN_GATE_SHEXP,     /* ARCH_SHARED_EXPERT: [n_embd, n_ff_shexp] */
    MODEL_W_FFN_UP_SHEXP,       /* ARCH_SHARED_EXPERT: [n_embd, n_ff_shexp] */
    MODEL_W_FFN_DOWN_SHEXP,     /* ARCH_SHARED_EXPERT: [n_ff_shexp, n_embd] */
    MODEL_W_COUNT
};

#define MODEL_W_FIRST_LAYER_ROLE MODEL_W_ATTN_NORM

typedef void (*model_progress_fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);

struct store;

struct model {
    char *path;               /* owned */
    struct gguf_ctx *gguf;    /* owned */
    struct model_info info;   /* owned; borrows gguf */
    const struct hparams *hp; /* &info.hp */
    int64_t n_vocab;          /* rows of token_embd (the logits' length) */
    bool is_moe;              /* n_expert > 0 */
    bool tied_output;         /* no output.weight: the head is token_embd */
    unsigned arch_flags;      /* enum arch_flag of the architecture's row */
    int64_t n_ff_shexp;       /* shared expert width (n_ff when the key is 0); 0 without one */
    /* owned, [(1 + n_layer) * MODEL_W_COUNT]: slot 0 holds the global roles,
     * slot 1 + l the roles of layer l; NULL where the model has no such tensor */
    const struct gguf_tensor **bound;
    uint64_t weight_bytes; /* bytes of the distinct bound tensors */

    /* Where the weights come from (src/store): attached by store_open or
     * model_load; NULL until then. Owned: model_close closes it. */
    struct store *store;
    uint64_t bytes_read; /* read at load (the store's resident tensors) */
    int64_t load_us;     /* wall time of the load */
};

/* Opens a GGUF file, reads hyperparameters and binds every tensor the
 * forward pass needs. Reads the header only. Errors: HY_ERR_IO, HY_ERR_FORMAT
 * (malformed file; a missing tensor or a wrong shape, naming it and the
 * expected shape), HY_ERR_UNSUPPORTED (an architecture or architecture
 * feature the forward pass does not have yet, or a norm weight that is not
 * F32). */
HY_MUST_CHECK enum hy_status model_open(const char *path, struct model **out);

/* Closes the model and frees its memory. NULL is a no-op. */
void model_close(struct model *m);

/* HY_ERR_UNSUPPORTED naming the first bound tensor whose type supported()
 * rejects, and the type. */
HY_MUST_CHECK enum hy_status model_check_types(const struct model *m,
                                               bool (*supported)(uint32_t type));

/* Attaches a weight store that keeps every bound weight resident (one RAM
 * allocation, large direct reads; src/store); progress (may be NULL) is
 * called as bytes arrive. Other placements: store_open. Errors: HY_ERR_OOM
 * (naming the RAM tier and the size), HY_ERR_IO (naming the file, offset and
 * the system's reason). A no-op when a store is attached. */
HY_MUST_CHECK enum hy_status model_load(struct model *m, model_progress_fn progress, void *user);

/* The weight of role in layer (-1 for global roles); expert >= 0 selects one
 * expert's slice of a stacked *_EXPS tensor and must be -1 otherwise. Valid
 * until model_release. The role must exist for this model (asserted): dense
 * roles for dense models, MoE roles for MoE ones. A weight store must be
 * attached (model_load or store_open). Errors: HY_ERR_IO from a streamed
 * read (naming the file, offset and length). */
HY_MUST_CHECK enum hy_status model_acquire(struct model *m, int layer, enum model_wrole role,
                                           int expert, struct backend_weight *out);

/* What model_acquire gives for the same arguments but where the bytes lie:
 * data NULL, mem BACKEND_MEM_HOST, not stable. For a backend that holds the
 * weight by its key (backend.h, holds); nothing is read or pinned. */
void model_describe(const struct model *m, int layer, enum model_wrole role, int expert,
                    struct backend_weight *out);

/* True when the model has a tensor for role (in layer; -1 for global roles). */
bool model_has_weight(const struct model *m, int layer, enum model_wrole role);

/* Ends the use of the weight model_acquire gave for (layer, role); for a
 * stacked expert tensor, of the expert acquired last. */
void model_release(struct model *m, int layer, enum model_wrole role);

/* The experts layer's router picked for the tokens being evaluated
 * (ids[0..n), distinct, ascending), told before any of them is acquired.
 * Resident weights need no preparation; a streaming store starts reads here.
 * elsewhere (NULL: none): elsewhere[j] set where the backend holds expert
 * ids[j]'s slices itself (backend.h, holds), so that the store reads nothing
 * for it; it may still be acquired (the backend let it go meanwhile). */
void model_route(struct model *m, int layer, const int32_t *ids, int64_t n, const bool *elsewhere);

/* The routing of a whole step, for statistics (co-activation): token t's
 * choices at layer l are ids[(t * n_layer + l) * k + j]. */
void model_routed(struct model *m, const int32_t *ids, int64_t n_tok, int64_t n_layer, int64_t k);

/* Whether the weight of role in layer stays where model_acquire puts it until
 * the model closes (resident, mapped or GPU memory; struct backend_weight's
 * stable), for every expert of a stacked tensor: several may be held at once. */
bool model_weight_stable(const struct model *m, int layer, enum model_wrole role);

/* Whether the store reads experts ahead and wants model_hint. */
bool model_wants_hints(const struct model *m);

/* A guess at the experts layer will pick (ids[0..n), most likely first),
 * told while the layer before computes, so that the store can read them
 * ahead. Only a hint: model_route still says what is used. elsewhere as
 * model_route's: those guesses are not read ahead. */
void model_hint(struct model *m, int layer, const int32_t *ids, int64_t n, const bool *elsewhere);

/* Name of a role for messages ("attn_q"). */
const char *model_wrole_name(enum model_wrole role);

#endif
