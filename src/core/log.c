#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level log_level_cur = LOG_INFO;

void log_set_level(enum log_level level)
{
    log_level_cur = level;
}

enum log_level log_get_level(void)
{
    return log_level_cur;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_level_cur) return;
    static const char *const tags[] = {"error: ", "warning: ", "", ""};
    fputs(tags[level], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
