#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MSG_CAP 2048

static _Thread_local char err_buf[ERR_MSG_CAP];

static const char *const status_names[HY_STATUS_COUNT] = {
    [HY_OK] = "HY_OK",
    [HY_ERR_INVALID_ARG] = "HY_ERR_INVALID_ARG",
    [HY_ERR_IO] = "HY_ERR_IO",
    [HY_ERR_FORMAT] = "HY_ERR_FORMAT",
    [HY_ERR_UNSUPPORTED] = "HY_ERR_UNSUPPORTED",
    [HY_ERR_OOM] = "HY_ERR_OOM",
    [HY_ERR_CUDA] = "HY_ERR_CUDA",
    [HY_ERR_EXISTS] = "HY_ERR_EXISTS",
    [HY_ERR_INTERNAL] = "HY_ERR_INTERNAL",
};

const char *hy_status_str(enum hy_status status)
{
    if ((unsigned)status >= HY_STATUS_COUNT) return "HY_ERR_UNKNOWN";
    return status_names[status];
}

const char *hy_last_error(void)
{
    return err_buf;
}

const char *hy_version(void)
{
    return HY_VERSION_STRING;
}

void base_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "hypura: internal error: assertion failed at %s:%d: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

enum hy_status err_setv(enum hy_status status, const char *fmt, va_list ap)
{
    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    return status;
}

enum hy_status err_set(enum hy_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_setv(status, fmt, ap);
    va_end(ap);
    return status;
}

enum hy_status err_prefix(enum hy_status status, const char *fmt, ...)
{
    char prefix[ERR_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (n <= 0) return status;
    size_t plen = strlen(prefix);
    size_t mlen = strlen(err_buf);
    if (plen >= ERR_MSG_CAP - 1) return status;
    if (plen + mlen >= ERR_MSG_CAP) mlen = ERR_MSG_CAP - 1 - plen;
    memmove(err_buf + plen, err_buf, mlen);
    memcpy(err_buf, prefix, plen);
    err_buf[plen + mlen] = '\0';
    return status;
}

const char *err_msg(void)
{
    return err_buf;
}

void err_clear(void)
{
    err_buf[0] = '\0';
}
