/*
 * Diagnostics on stderr. Library code logs only through here (never stdout);
 * the CLI sets the level from -v/--quiet.
 */
#ifndef HY_CORE_LOG_H
#define HY_CORE_LOG_H

#include "core/base.h"

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...) HY_PRINTF(2, 3);

#define LOG_W(...) log_msg(LOG_WARN, __VA_ARGS__)
#define LOG_I(...) log_msg(LOG_INFO, __VA_ARGS__)
#define LOG_D(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
