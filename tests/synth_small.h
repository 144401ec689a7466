/*
 * A synth preset's architecture at test size (2 layers of 256, vocabulary
 * 1000; MoE: 8 experts of 256, top-2), for the tests that write their own
 * models with synth_write.
 */
#ifndef HY_TESTS_SYNTH_SMALL_H
#define HY_TESTS_SYNTH_SMALL_H

#include <string.h>

#include "core/base.h"
#include "model/synth.h"

static inline struct synth_config synth_small_config(const char *like, enum quant_mix_ftype ftype)
{
    const struct synth_preset *p = synth_find_preset(like);
    HY_ASSERT(p != NULL);
    struct synth_config c = p->cfg;
    c.n_layer = 2;
    c.n_embd = 256;
    c.n_ff = 512;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 0;
    c.n_vocab = 1000;
    c.n_ctx = 256;
    if (c.n_expert > 0) {
        c.n_expert = 8;
        c.n_expert_used = 2;
        c.n_ff_exp = 256;
        if (c.n_ff_shexp > 0) c.n_ff_shexp = 256;
        /* llama (Mixtral) stores the expert width as feed_forward_length */
        if (strcmp(c.arch, "llama") == 0) c.n_ff = c.n_ff_exp;
    }
    c.ftype = ftype;
    c.n_threads = 2;
    return c;
}

#endif
