/*
 * The per-tensor type mixture (src/model/quant_mix.c) against files that
 * llama.cpp's llama-quantize wrote: for every tensor of every quantized model
 * in ../shared/testdata/synth, the rule must give the type the file has.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "gguf/gguf.h"
#include "model/model_info.h"
#include "model/quant_mix.h"
#include "quant/quant.h"

static void check_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/synth/%s", HY_TESTDATA_DIR, name);
    struct gguf_ctx *g = NULL;
    if (!CHECK_OK(gguf_open(path, &g))) return;
    struct model_info mi;
    if (!CHECK_OK(model_info_init(&mi, g))) {
        gguf_free(g);
        return;
    }
    const struct hparams *hp = &mi.hp;
    struct quant_mix_model m = {hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_expert,
                                !strcmp(mi.arch, "llama") && hp->n_layer == 80,
                                gguf_find_tensor(g, "output.weight") == NULL};
    CHECK(mi.file_type >= 0);
    enum quant_mix_ftype ft = (enum quant_mix_ftype)mi.file_type;
    int checked = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        uint32_t want = 0;
        if (!CHECK_OK(quant_mix_tensor_type(&m, ft, t->name, t->n_dims, t->ne[0], &want))) continue;
        if (want != t->type)
            fprintf(stderr, "%s: tensor '%s': rule gives %s, llama.cpp wrote %s\n", name, t->name,
                    quant_type_name(want), quant_type_name(t->type));
        CHECK_EQ_INT(want, t->type);
        checked++;
    }
    CHECK(checked > 10);
    model_info_free(&mi);
    gguf_free(g);
}

int main(void)
{
    const char *files[] = {"llama-F16.gguf",       "llama-Q8_0.gguf",     "llama-Q6_K.gguf",
                           "llama-Q4_K_M.gguf",    "llama-Q4_0.gguf",     "llama-Q2_K.gguf",
                           "mixtral-Q4_K_M.gguf",  "qwen2-Q5_K_M.gguf",   "qwen2moe-Q4_K_M.gguf"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) check_file(files[i]);

    /* the fallback for rows that are not whole super-blocks */
    struct quant_mix_model m = {4, 8, 4, 0, false, false};
    uint32_t t = 0;
    CHECK_OK(quant_mix_tensor_type(&m, QUANT_MIX_Q4_K_M, "blk.0.attn_q.weight", 2, 64, &t));
    CHECK_EQ_INT(t, HY_TYPE_Q5_0);
    CHECK_OK(quant_mix_tensor_type(&m, QUANT_MIX_Q4_K_M, "output.weight", 2, 64, &t));
    CHECK_EQ_INT(t, HY_TYPE_Q8_0);
    CHECK_STATUS(quant_mix_tensor_type(&m, QUANT_MIX_Q2_K, "blk.0.attn_q.weight", 2, 64, &t), HY_ERR_UNSUPPORTED);
    CHECK_CONTAINS(hy_last_error(), "blk.0.attn_q.weight");
    /* vectors and the router stay F32 */
    CHECK_OK(quant_mix_tensor_type(&m, QUANT_MIX_Q4_0, "blk.0.ffn_gate_inp.weight", 2, 256, &t));
    CHECK_EQ_INT(t, HY_TYPE_F32);
    CHECK_OK(quant_mix_tensor_type(&m, QUANT_MIX_Q4_0, "blk.0.attn_norm.weight", 1, 256, &t));
    CHECK_EQ_INT(t, HY_TYPE_F32);
    enum quant_mix_ftype ft;
    CHECK(quant_mix_ftype_from_name("Q4_K_M", &ft) && ft == QUANT_MIX_Q4_K_M);
    CHECK(!quant_mix_ftype_from_name("q4_k", &ft));
    return check_report("test_quant_mix");
}
