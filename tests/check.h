/*
 * Minimal test checks for the ctest programs.
 *
 * Each CHECK_* macro evaluates its arguments once, prints "file:line: ..."
 * with the expression and the values when the check fails, counts the
 * failure, and yields true when the check passed, so that a test can stop
 * early where going on would only cascade:
 *
 *     if (!CHECK_OK(gguf_parse(&src, &ctx))) return;
 *
 * main() ends with `return check_report(argv[0]);`, which prints a summary and
 * returns non-zero when any check failed.
 *
 * Deliberately not a framework: no registration, no fixtures, no forking. A
 * crash ends the program, which ctest reports as a failure.
 */
#ifndef HY_TESTS_CHECK_H
#define HY_TESTS_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "hypura.h"

/* Counters live in functions so that every program gets one copy without a
 * definition in each test file. */
static inline long *check_n_failed(void)
{
    static long n;
    return &n;
}

static inline long *check_n_run(void)
{
    static long n;
    return &n;
}

static inline bool check_result(bool ok)
{
    ++*check_n_run();
    if (!ok) ++*check_n_failed();
    return ok;
}

static inline bool check_true(bool ok, const char *expr, const char *file, int line)
{
    if (!ok) fprintf(stderr, "%s:%d: CHECK(%s) failed\n", file, line, expr);
    return check_result(ok);
}

static inline bool check_eq_int(int64_t a, int64_t b, const char *ea, const char *eb,
                                const char *file, int line)
{
    bool ok = a == b;
    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_EQ_INT(%s, %s) failed: %" PRId64 " != %" PRId64 "\n", file,
                line, ea, eb, a, b);
    return check_result(ok);
}

static inline bool check_eq_u64(uint64_t a, uint64_t b, const char *ea, const char *eb,
                                const char *file, int line)
{
    bool ok = a == b;
    if (!ok)
        fprintf(stderr,
                "%s:%d: CHECK_EQ_U64(%s, %s) failed: %" PRIu64 " (0x%" PRIx64 ") != %" PRIu64
                " (0x%" PRIx64 ")\n",
                file, line, ea, eb, a, a, b, b);
    return check_result(ok);
}

static inline bool check_eq_str(const char *a, const char *b, const char *ea, const char *eb,
                                const char *file, int line)
{
    bool ok = (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_EQ_STR(%s, %s) failed: %s%s%s != %s%s%s\n", file, line, ea,
                eb, a ? "\"" : "", a ? a : "NULL", a ? "\"" : "", b ? "\"" : "", b ? b : "NULL",
                b ? "\"" : "");
    return check_result(ok);
}

static inline bool check_near(double a, double b, double tol, const char *ea, const char *eb,
                              const char *file, int line)
{
    bool ok = fabs(a - b) <= tol;
    if (!ok)
        fprintf(stderr,
                "%s:%d: CHECK_NEAR(%s, %s) failed: %.17g vs %.17g (difference %.3g > %.3g)\n", file,
                line, ea, eb, a, b, fabs(a - b), tol);
    return check_result(ok);
}

static inline bool check_contains(const char *hay, const char *needle, const char *eh,
                                  const char *file, int line)
{
    bool ok = hay && needle && strstr(hay, needle) != NULL;
    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_CONTAINS(%s) failed: \"%s\" does not contain \"%s\"\n", file,
                line, eh, hay ? hay : "NULL", needle ? needle : "NULL");
    return check_result(ok);
}

/* The last error message is printed with the status, since it says why. */
static inline bool check_status(enum hy_status got, enum hy_status want, const char *expr,
                                const char *file, int line)
{
    bool ok = got == want;
    if (!ok)
        fprintf(stderr, "%s:%d: %s returned %s, expected %s%s%s\n", file, line, expr,
                hy_status_str(got), hy_status_str(want), got != HY_OK ? "; message: " : "",
                got != HY_OK ? err_msg() : "");
    return check_result(ok);
}

#define CHECK(cond)        check_true((cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ_INT(a, b) check_eq_int((int64_t)(a), (int64_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_EQ_U64(a, b) check_eq_u64((uint64_t)(a), (uint64_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_EQ_STR(a, b) check_eq_str((a), (b), #a, #b, __FILE__, __LINE__)
#define CHECK_NEAR(a, b, tol)                                                                      \
    check_near((double)(a), (double)(b), (double)(tol), #a, #b, __FILE__, __LINE__)
#define CHECK_CONTAINS(hay, needle) check_contains((hay), (needle), #hay, __FILE__, __LINE__)
#define CHECK_STATUS(expr, want)    check_status((expr), (want), #expr, __FILE__, __LINE__)
#define CHECK_OK(expr)              check_status((expr), HY_OK, #expr, __FILE__, __LINE__)

/* Whole file as a NUL-terminated buffer (free() it); *len gets its size when
 * len is not NULL. NULL with a message naming the path when it cannot be read. */
static inline char *check_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\nhint: tests read ../shared/testdata next to the source tree\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    size_t got = buf && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    buf[got] = '\0';
    if (len) *len = got;
    return buf;
}

/* Token ids got[0..n) equal want[0..n_want); on a mismatch prints both after
 * the label (e.g. the text and flags that produced them). */
static inline bool check_ids(const int32_t *got, int64_t n, const int32_t *want, int n_want,
                             const char *label)
{
    bool same = n == n_want;
    for (int i = 0; same && i < n_want; i++) same = got[i] == want[i];
    if (!check_true(same, "token ids equal", __FILE__, __LINE__)) {
        fprintf(stderr, "  %s: got", label);
        for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)got[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", (int)want[i]);
        fprintf(stderr, "\n");
    }
    return same;
}

/* Prints the summary; the value to return from main. */
static inline int check_report(const char *prog)
{
    long failed = *check_n_failed(), run = *check_n_run();
    if (failed) {
        fprintf(stderr, "%s: %ld of %ld checks FAILED\n", prog, failed, run);
        return 1;
    }
    printf("%s: all %ld checks passed\n", prog, run);
    return 0;
}

#endif
