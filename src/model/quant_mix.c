#include "model/quant_mix.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "quant/quant.h"

static const struct {
    const char *name;
    enum quant_mix_ftype ftype;
    uint32_t base;
} ftypes[] = {
    {"f32", QUANT_MIX_F32, HY_TYPE_F32},       {"f16", QUANT_MIX_F16, HY_TYPE_F16},
    {"bf16", QUANT_MIX_BF16, HY_TYPE_BF16},    {"q4_0", QUANT_MIX_Q4_0, HY_TYPE_Q4_0},
    {"q4_1", QUANT_MIX_Q4_1, HY_TYPE_Q4_1},    {"q5_0", QUANT_MIX_Q5_0, HY_TYPE_Q5_0},
    {"q5_1", QUANT_MIX_Q5_1, HY_TYPE_Q5_1},    {"q8_0", QUANT_MIX_Q8_0, HY_TYPE_Q8_0},
    {"q2_k", QUANT_MIX_Q2_K, HY_TYPE_Q2_K},    {"q3_k_m", QUANT_MIX_Q3_K_M, HY_TYPE_Q3_K},
    {"q4_k_m", QUANT_MIX_Q4_K_M, HY_TYPE_Q4_K}, {"q5_k_m", QUANT_MIX_Q5_K_M, HY_TYPE_Q5_K},
    {"q6_k", QUANT_MIX_Q6_K, HY_TYPE_Q6_K},
};

bool quant_mix_ftype_from_name(const char *name, enum quant_mix_ftype *out)
{
    for (size_t i = 0; i < HY_ARRAY_LEN(ftypes); i++) {
        if (strcasecmp(ftypes[i].name, name) == 0) {
            *out = ftypes[i].ftype;
            return true;
        }
    }
    return false;
}

const char *quant_mix_ftype_names(void)
{
    return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k";
}

uint32_t quant_mix_base_type(enum quant_mix_ftype ftype)
{
    for (size_t i = 0; i < HY_ARRAY_LEN(ftypes); i++)
        if (ftypes[i].ftype == ftype) return ftypes[i].base;
    HY_ASSERT(!"unknown file type");
    return HY_TYPE_F32;
}

static bool more_bits(int64_t i, int64_t n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool has(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

/* Block index of "blk.<i>.…", or 0. */
static int64_t layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0) return 0;
    return strtol(name + 4, NULL, 10);
}

enum hy_status quant_mix_tensor_type(const struct quant_mix_model *m, enum quant_mix_ftype ftype,
                                     const char *name, uint32_t n_dims, int64_t ne0, uint32_t *out)
{
    const uint32_t base = quant_mix_base_type(ftype);
    const size_t len = strlen(name);
    const bool is_weight = len >= 7 && strcmp(name + len - 7, ".weight") == 0;
    if (n_dims < 2 || !is_weight || has(name, "ffn_gate_inp")) {
        *out = HY_TYPE_F32;
        return HY_OK;
    }
    if (ftype == QUANT_MIX_F32 || ftype == QUANT_MIX_F16 || ftype == QUANT_MIX_BF16) {
        *out = base;
        return HY_OK;
    }
    const bool moe8 = m->n_expert == 8;
    const int64_t i = layer_of(name), n = m->n_layer;
    uint32_t t = base;
    if (strcmp(name, "output.weight") == 0 || (m->tied_output && strcmp(name, "token_embd.weight") == 0)) {
        if (ne0 % 256 != 0) t = HY_TYPE_Q8_0;
        else if (base != HY_TYPE_Q8_0) t = HY_TYPE_Q6_K;
    } else if (has(name, "attn_v.weight")) {
        if (ftype == QUANT_MIX_Q2_K) t = m->n_head_kv > 0 && m->n_head / m->n_head_kv >= 4 ? HY_TYPE_Q4_K : HY_TYPE_Q3_K;
        else if (ftype == QUANT_MIX_Q3_K_M) t = i < 2 ? HY_TYPE_Q5_K : HY_TYPE_Q4_K;
        else if ((ftype == QUANT_MIX_Q4_K_M || ftype == QUANT_MIX_Q5_K_M) && more_bits(i, n)) t = HY_TYPE_Q6_K;
        if (m->is_70b && (t == HY_TYPE_Q3_K || t == HY_TYPE_Q4_K)) t = HY_TYPE_Q5_K;
        if (moe8) t = HY_TYPE_Q8_0;
    } else if (has(name, "attn_k.weight")) {
        if (moe8) t = HY_TYPE_Q8_0;
    } else if (has(name, "attn_output.weight")) {
        if (moe8) {
            if (ftype == QUANT_MIX_Q2_K || ftype == QUANT_MIX_Q3_K_M || ftype == QUANT_MIX_Q4_K_M) t = HY_TYPE_Q5_K;
        } else if (ftype == QUANT_MIX_Q2_K) {
            t = HY_TYPE_Q3_K;
        } else if (ftype == QUANT_MIX_Q3_K_M) {
            t = HY_TYPE_Q4_K;
        }
    } else if (has(name, "ffn_down")) {
        if (ftype == QUANT_MIX_Q2_K) t = HY_TYPE_Q3_K;
        else if (ftype == QUANT_MIX_Q3_K_M) t = i < n / 16 ? HY_TYPE_Q5_K : HY_TYPE_Q4_K;
        else if ((ftype == QUANT_MIX_Q4_K_M || ftype == QUANT_MIX_Q5_K_M) && more_bits(i, n)) t = HY_TYPE_Q6_K;
    }
    if (ne0 % 256 != 0) {
        switch (t) {
        case HY_TYPE_Q4_K: t = HY_TYPE_Q5_0; break;
        case HY_TYPE_Q5_K: t = HY_TYPE_Q5_1; break;
        case HY_TYPE_Q6_K: t = HY_TYPE_Q8_0; break;
        case HY_TYPE_Q2_K:
        case HY_TYPE_Q3_K:
            return err_set(HY_ERR_UNSUPPORTED,
                           "tensor '%s': rows of %lld values are not a multiple of 256, so %s would "
                           "fall back to IQ4_NL, which hypura does not write\n"
                           "hint: use dimensions that are multiples of 256 or a legacy type (q4_0, q8_0, ...)",
                           name, (long long)ne0, quant_type_name(t));
        default: break;
        }
    }
    const struct quant_traits *tr = quant_traits(t);
    if (ne0 % tr->block_size != 0)
        return err_set(HY_ERR_UNSUPPORTED, "tensor '%s': rows of %lld values are not a multiple of the %s block size %u",
                       name, (long long)ne0, tr->name, tr->block_size);
    *out = t;
    return HY_OK;
}
