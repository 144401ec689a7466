/*
 * Architectures as data, and the role of every tensor.
 *
 * One row per architecture: the GGUF arch string and flags for what its graph
 * has (MoE, shared expert, Q/K norm, q/k/v biases, RoPE ordering). Code that
 * depends on the architecture tests these flags; nothing switches on the name.
 *
 * Tensor roles come from the GGUF tensor names, which llama.cpp's converters
 * use for every architecture: "token_embd", "output_norm", "output", and per
 * layer "blk.<i>.<part>". Roles decide placement (embeddings, attention and
 * norms stay resident; dense FFN and experts may stream) and the accounting
 * that `inspect` and the plan print.
 */
#ifndef HY_MODEL_ARCH_H
#define HY_MODEL_ARCH_H

#include <stdbool.h>
#include <stdint.h>

enum arch_flag {
    ARCH_MOE = 1u << 0,           /* routed experts in stacked ffn_*_exps tensors */
    ARCH_MOE_OPTIONAL = 1u << 1,  /* MoE when <arch>.expert_count > 0 (llama/Mixtral) */
    ARCH_SHARED_EXPERT = 1u << 2, /* dense shared expert beside the routed ones */
    ARCH_QK_NORM = 1u << 3,       /* per-head RMSNorm on Q and K */
    ARCH_QKV_BIAS = 1u << 4,      /* biases on q, k, v projections */
    ARCH_ROPE_NEOX = 1u << 5,     /* RoPE rotates halves (NeoX) instead of adjacent pairs */
    /* expert weights are the softmax probabilities of the chosen experts as
     * they are, not renormalised over the top k (qwen2moe) */
    ARCH_MOE_NO_RENORM = 1u << 6,
};

struct arch_info {
    const char *name; /* GGUF general.architecture */
    unsigned flags;   /* enum arch_flag */
    const char *desc;
};

/* Row for a GGUF architecture string, or NULL when hypura does not know it. */
const struct arch_info *arch_find(const char *name);
/* All rows (for --help and tests). */
const struct arch_info *arch_all(int *n);

enum tensor_role {
    ROLE_EMBED = 0,     /* token (and position) embeddings */
    ROLE_ATTN,          /* attention projections and their biases */
    ROLE_FFN,           /* dense feed-forward */
    ROLE_EXPERT,        /* routed experts (stacked) */
    ROLE_SHARED_EXPERT, /* shared expert and its gate */
    ROLE_ROUTER,        /* expert router */
    ROLE_NORM,          /* normalisation weights */
    ROLE_OUTPUT,        /* output head */
    ROLE_OTHER,
    ROLE_COUNT
};

const char *arch_role_name(enum tensor_role role);

/* Role of a tensor by its GGUF name; *layer = the block index or -1 for
 * tensors outside blocks. */
enum tensor_role arch_tensor_role(const char *name, int *layer);

#endif
