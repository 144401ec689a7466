/*
 * Routing traces: the experts an MoE model's routers pick over a generated
 * text, for replaying through cache policies (tests, bench/moe_policy).
 *
 * The model reads a one-token prompt, then samples n_tok tokens at
 * temperature 1 (no top-k/top-p cut, seeded), one token per step, so that
 * the text wanders as a conversation does and the routing follows it.
 */
#ifndef HY_MODEL_ROUTE_TRACE_H
#define HY_MODEL_ROUTE_TRACE_H

#include <stdint.h>

#include "core/base.h"

struct route_trace {
    int n_tok, n_layer, n_expert, k;
    int32_t *ids; /* owned, [n_tok][n_layer][k] */
};

/* Records the trace of the model at path (resident, n_threads CPU threads).
 * Errors: those of model_open/model_load/forward_eval; HY_ERR_INVALID_ARG
 * for a dense model. */
HY_MUST_CHECK enum hy_status route_trace_record(const char *path, int n_tok, uint64_t seed,
                                                int n_threads, struct route_trace *out);
void route_trace_free(struct route_trace *t);

/* Share of picks that repeat an expert the previous token picked at the same layer. */
double route_trace_repeat_share(const struct route_trace *t);

#endif
