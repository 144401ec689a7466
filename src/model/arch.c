#include "model/arch.h"

#include <stdlib.h>
#include <string.h>

#include "core/base.h"

static const struct arch_info arch_table[] = {
    {"llama", ARCH_MOE_OPTIONAL, "Llama 2/3, Mistral, TinyLlama; Mixtral when expert_count > 0"},
    {"qwen2", ARCH_QKV_BIAS | ARCH_ROPE_NEOX, "Qwen2, Qwen2.5"},
    {"qwen3", ARCH_QK_NORM | ARCH_ROPE_NEOX, "Qwen3 dense"},
    {"qwen2moe",
     ARCH_MOE | ARCH_MOE_NO_RENORM | ARCH_SHARED_EXPERT | ARCH_QKV_BIAS | ARCH_ROPE_NEOX,
     "Qwen1.5-MoE, Qwen2-MoE (routed + shared expert)"},
    {"qwen3moe", ARCH_MOE | ARCH_QK_NORM | ARCH_ROPE_NEOX, "Qwen3 MoE"},
};

const struct arch_info *arch_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < HY_ARRAY_LEN(arch_table); i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

const struct arch_info *arch_all(int *n)
{
    *n = (int)HY_ARRAY_LEN(arch_table);
    return arch_table;
}

static const char *const role_names[ROLE_COUNT] = {
    [ROLE_EMBED] = "embeddings", [ROLE_ATTN] = "attention",   [ROLE_FFN] = "dense FFN",
    [ROLE_EXPERT] = "experts",   [ROLE_SHARED_EXPERT] = "shared experts",
    [ROLE_ROUTER] = "router",    [ROLE_NORM] = "norms",       [ROLE_OUTPUT] = "output",
    [ROLE_OTHER] = "other",
};

const char *arch_role_name(enum tensor_role role)
{
    return (unsigned)role < ROLE_COUNT ? role_names[role] : "?";
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool contains(const char *s, const char *p)
{
    return strstr(s, p) != NULL;
}

enum tensor_role arch_tensor_role(const char *name, int *layer)
{
    *layer = -1;
    if (has_prefix(name, "blk.")) {
        char *end = NULL;
        long l = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && l >= 0 && l < 1000000) {
            *layer = (int)l;
            const char *part = end + 1;
            if (contains(part, "norm")) return ROLE_NORM;
            if (has_prefix(part, "ffn_gate_inp_shexp")) return ROLE_SHARED_EXPERT;
            if (has_prefix(part, "ffn_gate_inp") || has_prefix(part, "exp_probs_b")) return ROLE_ROUTER;
            if (contains(part, "_exps")) return ROLE_EXPERT;
            if (contains(part, "_shexp")) return ROLE_SHARED_EXPERT;
            if (has_prefix(part, "ffn_")) return ROLE_FFN;
            if (has_prefix(part, "attn_")) return ROLE_ATTN;
            return ROLE_OTHER;
        }
    }
    if (has_prefix(name, "token_embd_norm")) return ROLE_NORM;
    if (has_prefix(name, "token_embd") || has_prefix(name, "position_embd")) return ROLE_EMBED;
    if (has_prefix(name, "output_norm")) return ROLE_NORM;
    if (has_prefix(name, "output")) return ROLE_OUTPUT;
    return ROLE_OTHER;
}
