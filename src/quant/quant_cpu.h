/*
 * The per-ISA kernel tables that quant_cpu.c dispatches over (internal to
 * src/quant). Each SIMD source file (quant_avx2.c, quant_avx512.c,
 * quant_neon.c) defines its tables, indexed by the GGUF type id; an entry
 * holds only the kernels that the file implements for that type, NULL for the
 * rest. A file compiled without its instruction set (for example quant_neon.c
 * on x86, or quant_avx2.c by a compiler that does not target x86) defines its
 * tables all NULL and its _built flag false, so that every file is always in
 * the library and the dispatcher needs no build-time knowledge.
 *
 * quant_cpu.c resolves the kernels of a level by layering: reference, then
 * each table the level includes, from the lowest (AVX2 under AVX-512, AVX-512
 * under AVX-512 VNNI); a non-NULL entry wins. Every kernel must compute what
 * the reference function of quant.h computes: the same bytes for from_float
 * and to_float, the same integer sums and the same result up to float
 * reassociation for vec_dot. tests/test_quant_simd.c checks each level.
 */
#ifndef HY_QUANT_QUANT_CPU_H
#define HY_QUANT_QUANT_CPU_H

#include <stdbool.h>

#include "quant/quant.h"

/* Every half-precision bit pattern as a float (quant_f16_to_f32), for the
 * block scales of the dot products: a load converts a scalar half without
 * the shuffle port that F16C and a broadcast would take from the kernel's
 * own shuffles. 256 KiB, filled by quant_cpu.c before quant_kernels() first
 * returns, so before any kernel that reads it can run; read-only after. */
extern float quant_cpu_f16_table[1 << 16];

/* How far ahead of the weights being read the x86 dot products prefetch,
 * in bytes. A matrix-vector product reads the rows of a matrix one after
 * another, one vec_dot per row, so "ahead" runs into the next rows. One core
 * streaming from DRAM is bound by how many misses it keeps in flight; the
 * hardware prefetchers alone left the kernels at 75-90% of the bandwidth a
 * plain sum reaches, and 4 KiB ahead brought them to it (bench/quant_bench.c,
 * 256 MiB matrices, on a 2.9 GHz Xeon with AVX-512: 1 KiB got half of the
 * gain, 2 KiB most of it, 8 KiB no more).
 * Prefetches past the end of the matrix are harmless: they do not fault. */
#ifndef QUANT_PREFETCH_BYTES
#define QUANT_PREFETCH_BYTES 4096
#endif

/* AVX2 + FMA + F16C (quant_avx2.c). */
extern const bool quant_avx2_built;
extern const struct quant_kernels quant_avx2_table[HY_TYPE_COUNT];

/* AVX-512 F/BW/VL/DQ, and with VNNI (quant_avx512.c). */
extern const bool quant_avx512_built;
extern const struct quant_kernels quant_avx512_table[HY_TYPE_COUNT];
extern const struct quant_kernels quant_avx512_vnni_table[HY_TYPE_COUNT];

/* The AVX-512 AMX level's own kernels (quant_amx.c): only those whose
 * order differs from the VNNI level's; the rest come from the VNNI table.
 * quant_amx_usable asks the OS for the tile data state (Linux arch_prctl,
 * process-wide) and says whether AMX code may run; false where the file was
 * built without AMX. */
extern const bool quant_amx_built;
extern const struct quant_kernels quant_amx_table[HY_TYPE_COUNT];
bool quant_amx_usable(void);

/* arm64 Advanced SIMD (quant_neon.c). */
extern const bool quant_neon_built;
extern const struct quant_kernels quant_neon_table[HY_TYPE_COUNT];

#endif
