/*
 * What a GGUF model is, read from its header alone: architecture,
 * hyperparameters, vocabulary summary, and where its bytes are (per tensor
 * type, per role, per layer). Used by `inspect`, `plan` and the loader.
 *
 * Hyperparameter keys are "<arch>.<name>" as llama.cpp writes them; values
 * that some models store per layer (head counts, FFN length) are read from an
 * array too, keeping the maximum and noting that they vary.
 */
#ifndef HY_MODEL_MODEL_INFO_H
#define HY_MODEL_MODEL_INFO_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "model/arch.h"
#include "quant/quant.h"

struct hparams {
    int64_t n_ctx_train;
    int64_t n_embd;
    int64_t n_layer;
    int64_t n_ff;        /* dense FFN width (max over layers) */
    int64_t n_head;      /* max over layers */
    int64_t n_head_kv;   /* max over layers */
    bool per_layer_heads; /* head counts or n_ff given per layer */
    int64_t head_dim;    /* attention.key_length, or n_embd / n_head */
    int64_t head_dim_v;  /* attention.value_length, or head_dim */
    int64_t n_rot;       /* rope.dimension_count, or head_dim */
    double rope_freq_base;
    double rms_eps;
    int64_t n_expert;      /* 0 for dense models */
    int64_t n_expert_used;
    int64_t n_ff_exp;      /* expert_feed_forward_length (or n_ff) */
    int64_t n_ff_shexp;    /* expert_shared_feed_forward_length, 0 if none */
};

struct vocab_info {
    const char *model; /* tokenizer.ggml.model, borrowed from the ctx; NULL if absent */
    const char *pre;   /* tokenizer.ggml.pre; NULL if absent */
    int64_t n_tokens;  /* 0 when the file has no vocabulary */
    int64_t bos_id, eos_id, unk_id; /* -1 when absent */
    bool add_bos;
    bool has_add_bos;
    uint64_t n_merges;
    bool has_chat_template;
};

struct model_info {
    const struct gguf_ctx *gguf; /* borrowed; must outlive this */
    const char *arch;            /* general.architecture (borrowed), NULL if absent */
    const struct arch_info *arch_row; /* NULL for an architecture hypura cannot run */
    const char *name;            /* general.name, borrowed, may be NULL */
    int64_t file_type;           /* general.file_type, -1 if absent */
    struct hparams hp;
    struct vocab_info vocab;
    uint64_t n_params;
    uint64_t file_bytes;
    uint64_t tensor_bytes;
    uint64_t bytes_by_type[HY_TYPE_COUNT];
    uint32_t count_by_type[HY_TYPE_COUNT];
    uint64_t bytes_by_role[ROLE_COUNT];
    int n_layer_seen;            /* 1 + highest block index among tensors */
    uint64_t *bytes_by_layer_role; /* owned, [n_layer_seen][ROLE_COUNT] */
    enum tensor_role *tensor_role; /* owned, per tensor */
    int *tensor_layer;             /* owned, per tensor, -1 outside blocks */
};

/* Fills *info from a parsed file. Fails with HY_ERR_FORMAT naming the key
 * when a present key has the wrong type, or a required key of a known
 * architecture is missing. An unknown architecture is not an error here
 * (inspect still shows it); arch_row is NULL then. */
HY_MUST_CHECK enum hy_status model_info_init(struct model_info *info, const struct gguf_ctx *gguf);
void model_info_free(struct model_info *info);

/* llama.cpp's name for general.file_type ("Q4_K_M"), or NULL. */
const char *model_info_ftype_name(int64_t file_type);

#endif
