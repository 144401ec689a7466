/*
 * Run-time choice of the quant kernels for this CPU.
 *
 * quant_isa_detect() asks the CPU (CPUID, and XGETBV for whether the OS saves
 * the AVX and AVX-512 register state; a CPU may have AVX-512 that the kernel
 * does not enable; for AMX also the OS's grant of the tile state, see
 * quant_amx.c) and caps the answer by what this build compiled (see
 * quant_cpu.h). On arm64 Advanced SIMD is part of the base architecture.
 * CPUID is used rather than __builtin_cpu_supports: clang 14 does not know
 * "f16c" there, and the OS state check would still be needed.
 *
 * The kernels of the selected level are resolved once into one table
 * (cpu_kernels) by layering the reference functions of quant_traits() and
 * the SIMD tables of every level that the selected one includes; callers then
 * pay one indirect call per row. The first quant_kernels() resolves the best
 * level (pthread_once, so that threads may race to it); quant_isa_select()
 * re-resolves and is not thread-safe, as quant.h says. The same once also
 * fills quant_cpu_f16_table, which the SIMD kernels read.
 *
 * Rejected: picking the kernel per call with a switch on the ISA (a branch
 * per row for nothing), and ifunc resolvers (glibc only, and hard to force a
 * lower level from a test).
 */
#include "quant/quant_cpu.h"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

float quant_cpu_f16_table[1 << 16];

static struct quant_kernels cpu_kernels[HY_TYPE_COUNT];
static enum quant_isa cpu_isa;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
/* XCR0: which register state the OS saves on a context switch. Inline asm
 * rather than _xgetbv(), which would need -mxsave on this file. */
static uint64_t cpu_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static enum quant_isa cpu_detect_x86(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return QUANT_ISA_SCALAR;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return QUANT_ISA_SCALAR;
    const uint64_t xcr0 = cpu_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return QUANT_ISA_SCALAR; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return QUANT_ISA_SCALAR;
    __get_cpuid_count(7, 0, &a, &b, &c, &d);
    if (!(b & (1u << 5))) return QUANT_ISA_SCALAR; /* AVX2 */
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31),
               vnni = c & (1u << 11);
    /* opmask, upper halves of ZMM0-15 and ZMM16-31 state */
    const bool os_zmm = (xcr0 & 0xe0) == 0xe0;
    if (!(f && dq && bw && vl && os_zmm)) return QUANT_ISA_AVX2;
    if (!vnni) return QUANT_ISA_AVX512;
    /* AMX-TILE and AMX-INT8, XCR0 tile config and data, and the OS's grant */
    const bool amx = (d & (1u << 24)) && (d & (1u << 25));
    if (amx && (xcr0 & 0x60000) == 0x60000 && quant_amx_usable()) return QUANT_ISA_AVX512_AMX;
    return QUANT_ISA_AVX512_VNNI;
}
#endif

/* The best level of the CPU, before the build caps it. */
static enum quant_isa cpu_detect_raw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return cpu_detect_x86();
#elif defined(__aarch64__)
    return QUANT_ISA_NEON;
#else
    return QUANT_ISA_SCALAR;
#endif
}

enum quant_isa quant_isa_detect(void)
{
    enum quant_isa isa = cpu_detect_raw();
    if (isa == QUANT_ISA_NEON) return quant_neon_built ? isa : QUANT_ISA_SCALAR;
    if (isa == QUANT_ISA_AVX512_AMX && !quant_amx_built) isa = QUANT_ISA_AVX512_VNNI;
    if (isa >= QUANT_ISA_AVX512 && !quant_avx512_built) isa = QUANT_ISA_AVX2;
    if (isa >= QUANT_ISA_AVX2 && !quant_avx2_built) isa = QUANT_ISA_SCALAR;
    return isa;
}

/* Whether `isa` can run here: the scalar level always; NEON and the x86
 * levels are different families, the x86 ones ordered. */
static bool cpu_isa_available(enum quant_isa isa, enum quant_isa best)
{
    if (isa == QUANT_ISA_SCALAR) return true;
    if (isa == QUANT_ISA_NEON) return best == QUANT_ISA_NEON;
    return best >= QUANT_ISA_AVX2 && isa <= best;
}

/* Kernels of t replace those resolved so far, where the reference exists
 * (a fast kernel is only ever used where it can be tested against one). */
static void cpu_layer(const struct quant_kernels *t)
{
    for (uint32_t i = 0; i < HY_TYPE_COUNT; i++) {
        const struct quant_traits *tr = quant_traits(i);
        if (!tr) continue;
        if (t[i].to_float && tr->to_float) cpu_kernels[i].to_float = t[i].to_float;
        if (t[i].from_float && tr->from_float) cpu_kernels[i].from_float = t[i].from_float;
        if (t[i].vec_dot && tr->vec_dot) cpu_kernels[i].vec_dot = t[i].vec_dot;
    }
}

static void cpu_resolve(enum quant_isa isa)
{
    for (uint32_t i = 0; i < HY_TYPE_COUNT; i++) {
        const struct quant_traits *tr = quant_traits(i);
        cpu_kernels[i] = (struct quant_kernels){
            tr ? tr->to_float : NULL,
            tr ? tr->from_float : NULL,
            tr ? tr->vec_dot : NULL,
        };
    }
    switch (isa) {
    case QUANT_ISA_SCALAR:
        break;
    case QUANT_ISA_NEON:
        cpu_layer(quant_neon_table);
        break;
    case QUANT_ISA_AVX512_AMX:
        cpu_layer(quant_avx2_table);
        cpu_layer(quant_avx512_table);
        cpu_layer(quant_avx512_vnni_table);
        cpu_layer(quant_amx_table);
        break;
    case QUANT_ISA_AVX512_VNNI:
        cpu_layer(quant_avx2_table);
        cpu_layer(quant_avx512_table);
        cpu_layer(quant_avx512_vnni_table);
        break;
    case QUANT_ISA_AVX512:
        cpu_layer(quant_avx2_table);
        cpu_layer(quant_avx512_table);
        break;
    case QUANT_ISA_AVX2:
        cpu_layer(quant_avx2_table);
        break;
    }
    cpu_isa = isa;
}

static void cpu_init_once(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        quant_cpu_f16_table[h] = quant_f16_to_f32((uint16_t)h);
    cpu_resolve(quant_isa_detect());
}

const struct quant_kernels *quant_kernels(uint32_t type)
{
    pthread_once(&cpu_once, cpu_init_once);
    if (!quant_traits(type)) return NULL;
    return &cpu_kernels[type];
}

enum quant_isa quant_isa_select(enum quant_isa isa)
{
    pthread_once(&cpu_once, cpu_init_once);
    const enum quant_isa best = quant_isa_detect();
    int level = (int)isa;
    while (level > QUANT_ISA_SCALAR && !cpu_isa_available((enum quant_isa)level, best)) level--;
    cpu_resolve((enum quant_isa)level);
    return cpu_isa;
}

enum quant_isa quant_isa_current(void)
{
    pthread_once(&cpu_once, cpu_init_once);
    return cpu_isa;
}

const char *quant_isa_name(enum quant_isa isa)
{
    switch (isa) {
    case QUANT_ISA_SCALAR:
        return "scalar";
    case QUANT_ISA_NEON:
        return "neon";
    case QUANT_ISA_AVX2:
        return "avx2";
    case QUANT_ISA_AVX512:
        return "avx512";
    case QUANT_ISA_AVX512_VNNI:
        return "avx512-vnni";
    case QUANT_ISA_AVX512_AMX:
        return "avx512-amx";
    }
    return "unknown";
}
