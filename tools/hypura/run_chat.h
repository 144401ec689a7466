/* `hypura run --chat`: an interactive conversation in the terminal (run_chat.c). */
#ifndef HY_TOOLS_RUN_CHAT_H
#define HY_TOOLS_RUN_CHAT_H

#include "engine/engine.h"

/* Reads user turns from stdin (one line each; a line ending in '\' goes on
 * to the next) until EOF or "/exit", formats the conversation with the
 * model's chat template (ChatML with a warning when it has none hypura
 * knows), and streams each reply to stdout. system (may be NULL or "") is
 * the system message. The conversation stays in sequence 0's KV cache:
 * each turn evaluates only what it adds. p->n_predict bounds each reply.
 * Returns the process exit code. */
int run_chat(struct engine *e, const char *system, const struct engine_gen_params *p);

#endif
