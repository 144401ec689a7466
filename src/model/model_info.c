#include "model/model_info.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"

const char *model_info_ftype_name(int64_t ft)
{
    static const char *const names[] = {
        [0] = "F32",      [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",    [7] = "Q8_0",
        [8] = "Q5_0",     [9] = "Q5_1",     [10] = "Q2_K",    [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L",  [14] = "Q4_K_S",  [15] = "Q4_K_M",  [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS",  [21] = "Q2_K_S", [22] = "IQ3_XS",
        [23] = "IQ3_XXS", [24] = "IQ1_S",   [25] = "IQ4_NL",  [26] = "IQ3_S",  [27] = "IQ3_M",
        [28] = "IQ2_S",   [29] = "IQ2_M",   [30] = "IQ4_XS",  [31] = "IQ1_M",  [32] = "BF16",
        [36] = "TQ1_0",   [37] = "TQ2_0",   [38] = "MXFP4_MOE",
    };
    int64_t base = ft & ~(int64_t)1024; /* 1024: LLAMA_FTYPE_GUESSED */
    if (base < 0 || base >= (int64_t)HY_ARRAY_LEN(names)) return NULL;
    return names[base];
}

/* "<arch>.<suffix>" into buf. */
static const char *akey(char *buf, size_t cap, const char *arch, const char *suffix)
{
    snprintf(buf, cap, "%s.%s", arch, suffix);
    return buf;
}

/* Integer that may be stored per layer as an array: the max; *varies set when
 * the array's values differ. */
HY_MUST_CHECK static enum hy_status get_int_or_layer_max(const struct gguf_ctx *g, const char *key,
                                                         int64_t def, int64_t *out, bool *varies)
{
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    if (kv && kv->val.type == GGUF_ARRAY) {
        const struct gguf_array *a = &kv->val.v.arr;
        if (!gguf_vtype_is_int(a->elem_type) || a->n == 0)
            return err_set(HY_ERR_FORMAT, "%s: key '%s' is an array of %" PRIu64 " %s, expected integers",
                           g->name, key, a->n, gguf_vtype_name(a->elem_type));
        int64_t mx = gguf_arr_int(a, 0);
        for (uint64_t i = 1; i < a->n; i++) {
            int64_t v = gguf_arr_int(a, i);
            if (v != mx) *varies = true;
            if (v > mx) mx = v;
        }
        *out = mx;
        return HY_OK;
    }
    return gguf_get_int_or(g, key, def, out);
}

HY_MUST_CHECK static enum hy_status read_hparams(struct model_info *info)
{
    const struct gguf_ctx *g = info->gguf;
    struct hparams *hp = &info->hp;
    const char *a = info->arch;
    char k[160];
    enum hy_status st;
    memset(hp, 0, sizeof(*hp));
    bool known = info->arch_row != NULL;
    /* required for a known architecture; best effort otherwise */
    if (known) {
        if ((st = gguf_get_int(g, akey(k, sizeof k, a, "embedding_length"), &hp->n_embd))) return st;
        if ((st = gguf_get_int(g, akey(k, sizeof k, a, "block_count"), &hp->n_layer))) return st;
        if (!gguf_find_kv(g, akey(k, sizeof k, a, "attention.head_count")))
            return err_set(HY_ERR_FORMAT, "%s: missing key '%s'", g->name, k);
    } else {
        if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "embedding_length"), 0, &hp->n_embd))) return st;
        if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "block_count"), 0, &hp->n_layer))) return st;
    }
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "context_length"), 0, &hp->n_ctx_train))) return st;
    if ((st = get_int_or_layer_max(g, akey(k, sizeof k, a, "feed_forward_length"), 0, &hp->n_ff,
                                   &hp->per_layer_heads)))
        return st;
    if ((st = get_int_or_layer_max(g, akey(k, sizeof k, a, "attention.head_count"), 0, &hp->n_head,
                                   &hp->per_layer_heads)))
        return st;
    if ((st = get_int_or_layer_max(g, akey(k, sizeof k, a, "attention.head_count_kv"), hp->n_head,
                                   &hp->n_head_kv, &hp->per_layer_heads)))
        return st;
    int64_t def_hd = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "attention.key_length"), def_hd, &hp->head_dim))) return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "attention.value_length"), hp->head_dim, &hp->head_dim_v)))
        return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "rope.dimension_count"), hp->head_dim, &hp->n_rot))) return st;
    if ((st = gguf_get_float_or(g, akey(k, sizeof k, a, "rope.freq_base"), 10000.0, &hp->rope_freq_base))) return st;
    if ((st = gguf_get_float_or(g, akey(k, sizeof k, a, "attention.layer_norm_rms_epsilon"), 1e-5, &hp->rms_eps)))
        return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "expert_count"), 0, &hp->n_expert))) return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "expert_used_count"), 0, &hp->n_expert_used))) return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "expert_feed_forward_length"), hp->n_ff, &hp->n_ff_exp)))
        return st;
    if ((st = gguf_get_int_or(g, akey(k, sizeof k, a, "expert_shared_feed_forward_length"), 0, &hp->n_ff_shexp)))
        return st;
    if (known) {
        if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
            hp->n_head % hp->n_head_kv != 0)
            return err_set(HY_ERR_FORMAT,
                           "%s: inconsistent hyperparameters: embedding_length %" PRId64 ", block_count %" PRId64
                           ", head_count %" PRId64 ", head_count_kv %" PRId64,
                           g->name, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv);
        if (hp->n_expert < 0 || hp->n_expert_used < 0 || hp->n_expert_used > hp->n_expert)
            return err_set(HY_ERR_FORMAT, "%s: expert_used_count %" PRId64 " with expert_count %" PRId64,
                           g->name, hp->n_expert_used, hp->n_expert);
    }
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status read_vocab(struct model_info *info)
{
    const struct gguf_ctx *g = info->gguf;
    struct vocab_info *v = &info->vocab;
    enum hy_status st;
    const struct gguf_array *tokens, *merges;
    if ((st = gguf_get_str_or_null(g, "tokenizer.ggml.model", &v->model))) return st;
    if ((st = gguf_get_str_or_null(g, "tokenizer.ggml.pre", &v->pre))) return st;
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.tokens", GGUF_STRING, &tokens))) return st;
    if ((st = gguf_get_arr_or_null(g, "tokenizer.ggml.merges", GGUF_STRING, &merges))) return st;
    v->n_tokens = tokens ? (int64_t)tokens->n : 0;
    v->n_merges = merges ? merges->n : 0;
    const char *keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                           "tokenizer.ggml.unknown_token_id"};
    int64_t *dst[3] = {&v->bos_id, &v->eos_id, &v->unk_id};
    for (int i = 0; i < 3; i++) {
        if ((st = gguf_get_int_or(g, keys[i], -1, dst[i]))) return st;
        /* 0xFFFFFFFF (and anything outside the vocab) means "none" */
        if (*dst[i] >= v->n_tokens) *dst[i] = -1;
    }
    v->has_add_bos = gguf_find_kv(g, "tokenizer.ggml.add_bos_token") != NULL;
    if ((st = gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", false, &v->add_bos))) return st;
    v->has_chat_template = gguf_find_kv(g, "tokenizer.chat_template") != NULL;
    return HY_OK;
}

enum hy_status model_info_init(struct model_info *info, const struct gguf_ctx *g)
{
    memset(info, 0, sizeof(*info));
    info->gguf = g;
    enum hy_status st;
    if ((st = gguf_get_str_or_null(g, "general.architecture", &info->arch))) return st;
    if ((st = gguf_get_str_or_null(g, "general.name", &info->name))) return st;
    if ((st = gguf_get_int_or(g, "general.file_type", -1, &info->file_type))) return st;
    info->arch_row = arch_find(info->arch);
    if (info->arch && (st = read_hparams(info))) return st;
    if ((st = read_vocab(info))) return st;

    info->file_bytes = g->file_size;
    info->tensor_role = mem_xcalloc(g->n_tensors ? g->n_tensors : 1, sizeof(*info->tensor_role));
    info->tensor_layer = mem_xcalloc(g->n_tensors ? g->n_tensors : 1, sizeof(*info->tensor_layer));
    int max_layer = -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        info->tensor_role[i] = arch_tensor_role(t->name, &info->tensor_layer[i]);
        if (info->tensor_layer[i] > max_layer) max_layer = info->tensor_layer[i];
        info->n_params += t->n_elements;
        info->tensor_bytes += t->n_bytes;
        info->bytes_by_type[t->type] += t->n_bytes;
        info->count_by_type[t->type]++;
        info->bytes_by_role[info->tensor_role[i]] += t->n_bytes;
    }
    info->n_layer_seen = max_layer + 1;
    info->bytes_by_layer_role = mem_xcalloc((size_t)(info->n_layer_seen ? info->n_layer_seen : 1) * ROLE_COUNT,
                                            sizeof(uint64_t));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l = info->tensor_layer[i];
        if (l >= 0) info->bytes_by_layer_role[(size_t)l * ROLE_COUNT + info->tensor_role[i]] += g->tensors[i].n_bytes;
    }
    return HY_OK;
}

void model_info_free(struct model_info *info)
{
    if (!info) return;
    free(info->bytes_by_layer_role);
    free(info->tensor_role);
    free(info->tensor_layer);
    info->bytes_by_layer_role = NULL;
    info->tensor_role = NULL;
    info->tensor_layer = NULL;
}
