#include "quant/quant.h"

#include <stdio.h>
#include <strings.h>

#include "core/base.h"

/* Block geometry as GGUF defines it (see the checklist in quant.h). */
static const struct quant_traits quant_table[HY_TYPE_COUNT] = {
    [HY_TYPE_F32] = {"F32", 1, 4, false},
    [HY_TYPE_F16] = {"F16", 1, 2, false},
    [HY_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [HY_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [HY_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [HY_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [HY_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [HY_TYPE_Q8_1] = {"Q8_1", 32, 36, true},
    [HY_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [HY_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [HY_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [HY_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [HY_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [HY_TYPE_Q8_K] = {"Q8_K", 256, 292, true},
    [HY_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, true},
    [HY_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, true},
    [HY_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, true},
    [HY_TYPE_IQ1_S] = {"IQ1_S", 256, 50, true},
    [HY_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [HY_TYPE_IQ3_S] = {"IQ3_S", 256, 110, true},
    [HY_TYPE_IQ2_S] = {"IQ2_S", 256, 82, true},
    [HY_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, true},
    [HY_TYPE_I8] = {"I8", 1, 1, false},
    [HY_TYPE_I16] = {"I16", 1, 2, false},
    [HY_TYPE_I32] = {"I32", 1, 4, false},
    [HY_TYPE_I64] = {"I64", 1, 8, false},
    [HY_TYPE_F64] = {"F64", 1, 8, false},
    [HY_TYPE_IQ1_M] = {"IQ1_M", 256, 56, true},
    [HY_TYPE_BF16] = {"BF16", 1, 2, false},
    [HY_TYPE_TQ1_0] = {"TQ1_0", 256, 54, true},
    [HY_TYPE_TQ2_0] = {"TQ2_0", 256, 66, true},
    [HY_TYPE_MXFP4] = {"MXFP4", 32, 17, true},
};

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
