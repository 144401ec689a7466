/*
 * Choice of the gemm kernel for the selected ISA level, and the naive form
 * (see quant_gemm.h). A kernel is returned only at the level whose vec_dot it
 * reproduces bit for bit: the AVX2 tiles match the AVX2 vec_dot, the VNNI
 * gemm the VNNI vec_dot, not the AVX-512 one without VNNI, whose float work
 * is the same but whose tests do not cover the pairing. The AMX level keeps
 * the VNNI vec_dots except where quant_amx.c has its own, and then has the
 * matching gemm.
 */
#include "quant/quant_gemm.h"

#include "core/base.h"
#include "quant/quant_cpu.h"

quant_gemm_fn quant_gemm_kernel(uint32_t type)
{
    if (type >= HY_TYPE_COUNT) return NULL;
    const enum quant_isa isa = quant_isa_current();
    if (isa == QUANT_ISA_AVX2) return quant_avx2_built ? quant_gemm_avx2_table[type] : NULL;
    if (!quant_gemm_avx512_built) return NULL;
    if (isa == QUANT_ISA_AVX512_AMX && quant_gemm_amx_table[type])
        return quant_gemm_amx_table[type];
    if (isa != QUANT_ISA_AVX512_VNNI && isa != QUANT_ISA_AVX512_AMX) return NULL;
    return quant_gemm_avx512_vnni_table[type];
}

quant_gemv_fn quant_gemv_kernel(uint32_t type)
{
    if (type >= HY_TYPE_COUNT || !quant_gemm_avx512_built) return NULL;
    const enum quant_isa isa = quant_isa_current();
    if (isa == QUANT_ISA_AVX512_AMX && quant_gemv_amx_table[type])
        return quant_gemv_amx_table[type];
    if (isa != QUANT_ISA_AVX512_VNNI && isa != QUANT_ISA_AVX512_AMX) return NULL;
    return quant_gemv_avx512_table[type];
}

void quant_gemm_ref(uint32_t type, int64_t n_cols, const void *w, size_t w_row, int64_t n_rows,
                    const void *xq, size_t xq_row, int64_t n_tok, float *y, int64_t ldy)
{
    const struct quant_traits *tr = quant_traits(type);
    HY_ASSERT(tr && tr->vec_dot);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            y[t * ldy + r] = tr->vec_dot(n_cols, (const uint8_t *)w + (size_t)r * w_row,
                                         (const uint8_t *)xq + (size_t)t * xq_row);
}
