/*
 * Error reporting: a status code returned up the stack plus a message that is
 * written once, at the point of failure, into a per-thread buffer.
 *
 * Message style: "<what>: <where>: <what is wrong>", e.g.
 *   model.gguf: tensor 'blk.3.ffn_down.weight': data [1234567, +4096) is past
 *   the end of the file (1200000 bytes)
 * Callers higher up add context with err_prefix() ("model.gguf: ") rather than
 * overwrite the message. A next step for the user goes after "\nhint: ".
 */
#ifndef HY_CORE_ERR_H
#define HY_CORE_ERR_H

#include <stdarg.h>

#include "core/base.h"

/* Sets the thread's message and returns status, so that callers can write
 * `return err_set(HY_ERR_FORMAT, "...", ...);`. */
enum hy_status err_set(enum hy_status status, const char *fmt, ...) HY_PRINTF(2, 3);
enum hy_status err_setv(enum hy_status status, const char *fmt, va_list ap);

/* Prepends formatted text to the current message; returns status unchanged. */
enum hy_status err_prefix(enum hy_status status, const char *fmt, ...) HY_PRINTF(2, 3);

/* The current message ("" when none). */
const char *err_msg(void);

void err_clear(void);

#endif
