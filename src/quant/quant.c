#include "quant/quant.h"

#include <stdio.h>
#include <strings.h>

#include "core/base.h"
#include "quant/quant_ref.h"

/*
 * Block geometry as GGUF defines it, and for the types hypura computes with
 * the reference functions of quant_ref.c (see the checklist in quant.h).
 * GEOM: name, elements per block, bytes per block, block-quantized; REF: the
 * reference functions of type t, the vec_dot_type and the vec_dot. Q8_1 and
 * Q8_K are activation types only (no vec_dot of their own); vec_dot_type means
 * nothing where vec_dot is NULL.
 */
#define GEOM(n, bs, bb, q) .name = n, .block_size = bs, .block_bytes = bb, .is_quantized = q
#define REF(t, vt, dot)                                                                            \
    .to_float = quant_ref_to_float_##t, .from_float = quant_ref_from_float_##t, .vec_dot_type = vt, \
    .vec_dot = dot
static const struct quant_traits quant_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F32] = {GEOM("F32", 1, 4, false),
        REF(f32, HY_TYPE_F32, quant_ref_vec_dot_f32)},
    [HY_TYPE_F16] = {GEOM("F16", 1, 2, false),
        REF(f16, HY_TYPE_F16, quant_ref_vec_dot_f16)},
    [HY_TYPE_Q4_0] = {GEOM("Q4_0", 32, 18, true),
        REF(q4_0, HY_TYPE_Q8_0, quant_ref_vec_dot_q4_0_q8_0)},
    [HY_TYPE_Q4_1] = {GEOM("Q4_1", 32, 20, true),
        REF(q4_1, HY_TYPE_Q8_1, quant_ref_vec_dot_q4_1_q8_1)},
    [HY_TYPE_Q5_0] = {GEOM("Q5_0", 32, 22, true),
        REF(q5_0, HY_TYPE_Q8_0, quant_ref_vec_dot_q5_0_q8_0)},
    [HY_TYPE_Q5_1] = {GEOM("Q5_1", 32, 24, true),
        REF(q5_1, HY_TYPE_Q8_1, quant_ref_vec_dot_q5_1_q8_1)},
    [HY_TYPE_Q8_0] = {GEOM("Q8_0", 32, 34, true),
        REF(q8_0, HY_TYPE_Q8_0, quant_ref_vec_dot_q8_0_q8_0)},
    [HY_TYPE_Q8_1] = {GEOM("Q8_1", 32, 36, true),
        REF(q8_1, HY_TYPE_Q8_1, NULL)},
    [HY_TYPE_Q2_K] = {GEOM("Q2_K", 256, 84, true),
        REF(q2_K, HY_TYPE_Q8_K, quant_ref_vec_dot_q2_K_q8_K)},
    [HY_TYPE_Q3_K] = {GEOM("Q3_K", 256, 110, true),
        REF(q3_K, HY_TYPE_Q8_K, quant_ref_vec_dot_q3_K_q8_K)},
    [HY_TYPE_Q4_K] = {GEOM("Q4_K", 256, 144, true),
        REF(q4_K, HY_TYPE_Q8_K, quant_ref_vec_dot_q4_K_q8_K)},
    [HY_TYPE_Q5_K] = {GEOM("Q5_K", 256, 176, true),
        REF(q5_K, HY_TYPE_Q8_K, quant_ref_vec_dot_q5_K_q8_K)},
    [HY_TYPE_Q6_K] = {GEOM("Q6_K", 256, 210, true),
        REF(q6_K, HY_TYPE_Q8_K, quant_ref_vec_dot_q6_K_q8_K)},
    [HY_TYPE_Q8_K] = {GEOM("Q8_K", 256, 292, true),
        REF(q8_K, HY_TYPE_Q8_K, NULL)},
    [HY_TYPE_IQ2_XXS] = {GEOM("IQ2_XXS", 256, 66, true)},
    [HY_TYPE_IQ2_XS] = {GEOM("IQ2_XS", 256, 74, true)},
    [HY_TYPE_IQ3_XXS] = {GEOM("IQ3_XXS", 256, 98, true)},
    [HY_TYPE_IQ1_S] = {GEOM("IQ1_S", 256, 50, true)},
    [HY_TYPE_IQ4_NL] = {GEOM("IQ4_NL", 32, 18, true)},
    [HY_TYPE_IQ3_S] = {GEOM("IQ3_S", 256, 110, true)},
    [HY_TYPE_IQ2_S] = {GEOM("IQ2_S", 256, 82, true)},
    [HY_TYPE_IQ4_XS] = {GEOM("IQ4_XS", 256, 136, true)},
    [HY_TYPE_I8] = {GEOM("I8", 1, 1, false)},
    [HY_TYPE_I16] = {GEOM("I16", 1, 2, false)},
    [HY_TYPE_I32] = {GEOM("I32", 1, 4, false)},
    [HY_TYPE_I64] = {GEOM("I64", 1, 8, false)},
    [HY_TYPE_F64] = {GEOM("F64", 1, 8, false)},
    [HY_TYPE_IQ1_M] = {GEOM("IQ1_M", 256, 56, true)},
    [HY_TYPE_BF16] = {GEOM("BF16", 1, 2, false),
        REF(bf16, HY_TYPE_BF16, quant_ref_vec_dot_bf16)},
    [HY_TYPE_TQ1_0] = {GEOM("TQ1_0", 256, 54, true)},
    [HY_TYPE_TQ2_0] = {GEOM("TQ2_0", 256, 66, true)},
    [HY_TYPE_MXFP4] = {GEOM("MXFP4", 32, 17, true)},
};
#undef GEOM
#undef REF

const struct quant_traits *quant_traits(uint32_t type)
{
    if (type >= HY_TYPE_COUNT || !quant_table[type].name) return NULL;
    return &quant_table[type];
}

const char *quant_type_name(uint32_t type)
{
    const struct quant_traits *t = quant_traits(type);
    if (t) return t->name;
    static _Thread_local char buf[24];
    snprintf(buf, sizeof(buf), "type#%u", type);
    return buf;
}

int quant_type_from_name(const char *name)
{
    for (int i = 0; i < HY_TYPE_COUNT; i++)
        if (quant_table[i].name && strcasecmp(quant_table[i].name, name) == 0) return i;
    return -1;
}

uint64_t quant_bytes(uint32_t type, uint64_t n_elements)
{
    const struct quant_traits *t = quant_traits(type);
    HY_ASSERT(t && n_elements % t->block_size == 0);
    return n_elements / t->block_size * t->block_bytes;
}

bool quant_is_supported(uint32_t type)
{
    const struct quant_traits *t = quant_traits(type);
    return t && t->vec_dot && t->to_float;
}
