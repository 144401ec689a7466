/*
 * Macros every module uses: assertions for internal invariants, the
 * must-check attribute, small arithmetic helpers.
 *
 * HY_ASSERT is for invariants of our own code only, never for data that came
 * from outside (files, requests, flags): those return a status.
 */
#ifndef HY_CORE_BASE_H
#define HY_CORE_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "hypura.h"

#if defined(__GNUC__) || defined(__clang__)
#define HY_MUST_CHECK __attribute__((warn_unused_result))
#define HY_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define HY_NORETURN __attribute__((noreturn))
#else
#define HY_MUST_CHECK
#define HY_PRINTF(fmt_idx, arg_idx)
#define HY_NORETURN
#endif

HY_NORETURN void base_assert_fail(const char *expr, const char *file, int line);

/* Always compiled in: a broken invariant must stop the program, not corrupt output. */
#define HY_ASSERT(expr) ((expr) ? (void)0 : base_assert_fail(#expr, __FILE__, __LINE__))

#define HY_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HY_MAX(a, b) ((a) > (b) ? (a) : (b))
#define HY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Round x up to a multiple of align (a power of two). Caller guarantees no overflow. */
static inline uint64_t base_align_up(uint64_t x, uint64_t align)
{
    return (x + align - 1) & ~(align - 1);
}

static inline int base_is_pow2(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

#endif
