/*
 * hypura inspect MODEL [--tensors] [--kv] [--json]
 *
 * Reads only the header (the tensor data is never touched) and prints what
 * the model is and where its bytes are.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/sizes.h"
#include "gguf/gguf.h"
#include "model/model_info.h"

static void inspect_help(void)
{
    printf("usage: hypura inspect MODEL.gguf [options]\n\n"
           "Shows a GGUF model's architecture, hyperparameters, vocabulary, parameter count and\n"
           "where its bytes are (per tensor type, per role, per layer). Reads the header only.\n\n"
           "options:\n"
           "  --tensors   also list every tensor: name, type, shape, bytes, offset, role (default: off)\n"
           "  --kv        also list every metadata key/value, long arrays shortened (default: off)\n"
           "  --json      print everything as one JSON object on stdout, tensors and\n"
           "              metadata included (default: text)\n"
           "  -h, --help  show this help\n");
}

static const char *or_none(const char *s)
{
    return s ? s : "(none)";
}

static void shape_str(const struct gguf_tensor *t, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (uint32_t d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Scalar or short value as text; arrays summarised. */
static void value_str(const struct gguf_value *v, char *buf, size_t cap)
{
    switch (v->type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
        snprintf(buf, cap, "%" PRIu64, v->v.u64);
        break;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
        snprintf(buf, cap, "%" PRId64, v->v.i64);
        break;
    case GGUF_FLOAT32: case GGUF_FLOAT64: snprintf(buf, cap, "%g", v->v.f64); break;
    case GGUF_BOOL: snprintf(buf, cap, "%s", v->v.b ? "true" : "false"); break;
    case GGUF_STRING: {
        size_t n = 0;
        n += (size_t)snprintf(buf, cap, "\"");
        for (uint64_t i = 0; i < v->v.str.len && n + 8 < cap; i++) {
            unsigned char ch = (unsigned char)v->v.str.data[i];
            if (i >= 60) {
                n += (size_t)snprintf(buf + n, cap - n, "...(%" PRIu64 " bytes)", v->v.str.len);
                break;
            }
            if (ch == '\n') n += (size_t)snprintf(buf + n, cap - n, "\\n");
            else if (ch < 0x20) n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", ch);
            else buf[n++] = (char)ch;
        }
        if (n + 2 < cap) {
            buf[n++] = '"';
            buf[n] = '\0';
        }
        break;
    }
    case GGUF_ARRAY:
        snprintf(buf, cap, "array of %" PRIu64 " %s", v->v.arr.n, gguf_vtype_name(v->v.arr.elem_type));
        break;
    default: snprintf(buf, cap, "?"); break;
    }
}

static void print_text(const char *path, const struct gguf_ctx *g, const struct model_info *mi, bool tensors,
                       bool kvs)
{
    char a[32], b[32];
    const struct hparams *hp = &mi->hp;
    printf("file: %s\n", path);
    printf("file size: %s (%" PRIu64 " bytes)\n", sizes_format(mi->file_bytes, a, sizeof a), mi->file_bytes);
    printf("gguf version: %u\n", g->version);
    printf("alignment: %u\n", g->alignment);
    printf("data offset: %" PRIu64 "\n", g->data_off);
    printf("key/values: %" PRIu64 "\n", g->n_kv);
    printf("tensors: %" PRIu64 "\n", g->n_tensors);
    printf("architecture: %s%s\n", or_none(mi->arch),
           mi->arch && !mi->arch_row ? " (not supported by hypura's engine)" : "");
    if (mi->name) printf("name: %s\n", mi->name);
    if (mi->file_type >= 0) {
        const char *ftn = model_info_ftype_name(mi->file_type);
        printf("file type: %s (%" PRId64 ")\n", ftn ? ftn : "unknown", mi->file_type);
    }
    printf("parameters: %" PRIu64 " (%.2f M)\n", mi->n_params, (double)mi->n_params / 1e6);
    if (mi->arch) {
        printf("context length: %" PRId64 "\n", hp->n_ctx_train);
        printf("layers: %" PRId64 "\n", hp->n_layer);
        printf("embedding: %" PRId64 "\n", hp->n_embd);
        printf("feed forward: %" PRId64 "%s\n", hp->n_ff, hp->per_layer_heads ? " (max over layers)" : "");
        printf("heads: %" PRId64 "\n", hp->n_head);
        printf("kv heads: %" PRId64 "\n", hp->n_head_kv);
        printf("head dim: %" PRId64 "\n", hp->head_dim);
        printf("rope dims: %" PRId64 "\n", hp->n_rot);
        printf("rope freq base: %g\n", hp->rope_freq_base);
        printf("rms epsilon: %g\n", hp->rms_eps);
        if (hp->n_expert > 0) {
            printf("experts: %" PRId64 "\n", hp->n_expert);
            printf("experts used: %" PRId64 "\n", hp->n_expert_used);
            printf("expert feed forward: %" PRId64 "\n", hp->n_ff_exp);
            if (hp->n_ff_shexp > 0) printf("shared expert feed forward: %" PRId64 "\n", hp->n_ff_shexp);
        }
    }
    const struct vocab_info *v = &mi->vocab;
    printf("vocab: %" PRId64 "\n", v->n_tokens);
    printf("tokenizer: %s\n", or_none(v->model));
    printf("pre-tokenizer: %s\n", or_none(v->pre));
    if (v->n_merges) printf("merges: %" PRIu64 "\n", v->n_merges);
    printf("special tokens: bos %" PRId64 ", eos %" PRId64 ", unk %" PRId64 "\n", v->bos_id, v->eos_id, v->unk_id);
    printf("add bos: %s\n", v->has_add_bos ? (v->add_bos ? "true" : "false") : "(not set)");
    printf("chat template: %s\n", v->has_chat_template ? "yes" : "no");

    printf("\nbytes per tensor type:\n");
    for (int t = 0; t < HY_TYPE_COUNT; t++) {
        if (!mi->count_by_type[t]) continue;
        printf("  %-8s %5u tensors  %12s  %5.1f%%\n", quant_type_name((uint32_t)t), mi->count_by_type[t],
               sizes_format(mi->bytes_by_type[t], a, sizeof a),
               mi->tensor_bytes ? 100.0 * (double)mi->bytes_by_type[t] / (double)mi->tensor_bytes : 0.0);
    }
    printf("\nbytes per role:\n");
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (!mi->bytes_by_role[r]) continue;
        printf("  %-15s %12s  %5.1f%%\n", arch_role_name((enum tensor_role)r),
               sizes_format(mi->bytes_by_role[r], a, sizeof a),
               100.0 * (double)mi->bytes_by_role[r] / (double)mi->tensor_bytes);
    }
    if (mi->n_layer_seen > 0) {
        printf("\nbytes per layer:\n  layer  %12s", "total");
        for (int r = 0; r < ROLE_COUNT; r++) {
            bool any = false;
            for (int l = 0; l < mi->n_layer_seen; l++) any |= mi->bytes_by_layer_role[(size_t)l * ROLE_COUNT + r] != 0;
            if (any) printf("  %14s", arch_role_name((enum tensor_role)r));
        }
        printf("\n");
        for (int l = 0; l < mi->n_layer_seen; l++) {
            uint64_t tot = 0;
            for (int r = 0; r < ROLE_COUNT; r++) tot += mi->bytes_by_layer_role[(size_t)l * ROLE_COUNT + r];
            printf("  %5d  %12s", l, sizes_format(tot, a, sizeof a));
            for (int r = 0; r < ROLE_COUNT; r++) {
                bool any = false;
                for (int k = 0; k < mi->n_layer_seen; k++) any |= mi->bytes_by_layer_role[(size_t)k * ROLE_COUNT + r] != 0;
                if (any) printf("  %14s", sizes_format(mi->bytes_by_layer_role[(size_t)l * ROLE_COUNT + r], b, sizeof b));
            }
            printf("\n");
        }
    }
    if (kvs) {
        printf("\nmetadata:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
            char val[256];
            value_str(&g->kv[i].val, val, sizeof val);
            printf("  %-45s %-8s %s\n", g->kv[i].key, gguf_vtype_name(g->kv[i].val.type), val);
        }
    }
    if (tensors) {
        printf("\ntensors:\n  %-40s %-7s %-24s %12s %12s  %s\n", "name", "type", "shape", "bytes", "offset", "role");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct gguf_tensor *t = &g->tensors[i];
            char shape[96];
            shape_str(t, shape, sizeof shape);
            printf("  %-40s %-7s %-24s %12" PRIu64 " %12" PRIu64 "  %s\n", t->name, quant_type_name(t->type), shape,
                   t->n_bytes, t->file_off, arch_role_name(mi->tensor_role[i]));
        }
    }
}

static json_t *value_json(const struct gguf_value *v);

static json_t *array_json(const struct gguf_array *a)
{
    json_t *arr = json_array();
    for (uint64_t i = 0; i < a->n; i++) {
        struct gguf_value e = {.type = a->elem_type};
        switch (a->elem_type) {
        case GGUF_STRING: e.v.str = ((const struct gguf_str *)a->data)[i]; break;
        case GGUF_ARRAY: e.v.arr = ((const struct gguf_array *)a->data)[i]; break;
        case GGUF_FLOAT32: case GGUF_FLOAT64: e.v.f64 = gguf_arr_float(a, i); break;
        case GGUF_BOOL: e.v.b = ((const bool *)a->data)[i]; break;
        case GGUF_UINT64: e.v.u64 = ((const uint64_t *)a->data)[i]; break;
        default: e.v.i64 = gguf_arr_int(a, i); break;
        }
        json_array_append_new(arr, value_json(&e));
    }
    return arr;
}

static json_t *value_json(const struct gguf_value *v)
{
    switch (v->type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: return json_integer((json_int_t)v->v.u64);
    case GGUF_UINT64:
        return v->v.u64 > (uint64_t)INT64_MAX ? json_real((double)v->v.u64) : json_integer((json_int_t)v->v.u64);
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64: return json_integer((json_int_t)v->v.i64);
    case GGUF_FLOAT32: case GGUF_FLOAT64: return json_real(v->v.f64);
    case GGUF_BOOL: return json_boolean(v->v.b);
    case GGUF_STRING: return json_stringn_nocheck(v->v.str.data, (size_t)v->v.str.len);
    case GGUF_ARRAY: return array_json(&v->v.arr);
    default: return json_null();
    }
}

/* Long arrays (vocabularies, merges) are summarised unless they are short. */
static json_t *kv_json(const struct gguf_kv *kv)
{
    const struct gguf_value *v = &kv->val;
    if (v->type == GGUF_ARRAY && v->v.arr.n > 64) {
        return json_pack("{s:s, s:s, s:I}", "type", "ARRAY", "elem_type", gguf_vtype_name(v->v.arr.elem_type), "n",
                         (json_int_t)v->v.arr.n);
    }
    if (v->type == GGUF_STRING && v->v.str.len > 4096) {
        return json_pack("{s:s, s:I}", "type", "STRING", "bytes", (json_int_t)v->v.str.len);
    }
    return value_json(v);
}

static void print_json(const char *path, const struct gguf_ctx *g, const struct model_info *mi)
{
    const struct hparams *hp = &mi->hp;
    const struct vocab_info *v = &mi->vocab;
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "file_bytes", json_integer((json_int_t)mi->file_bytes));
    json_object_set_new(o, "gguf_version", json_integer(g->version));
    json_object_set_new(o, "alignment", json_integer(g->alignment));
    json_object_set_new(o, "data_offset", json_integer((json_int_t)g->data_off));
    json_object_set_new(o, "n_kv", json_integer((json_int_t)g->n_kv));
    json_object_set_new(o, "n_tensors", json_integer((json_int_t)g->n_tensors));
    json_object_set_new(o, "architecture", mi->arch ? json_string(mi->arch) : json_null());
    json_object_set_new(o, "architecture_supported", json_boolean(mi->arch_row != NULL));
    json_object_set_new(o, "name", mi->name ? json_string(mi->name) : json_null());
    const char *ftn = model_info_ftype_name(mi->file_type);
    json_object_set_new(o, "file_type", mi->file_type >= 0 ? json_integer(mi->file_type) : json_null());
    json_object_set_new(o, "file_type_name", ftn ? json_string(ftn) : json_null());
    json_object_set_new(o, "n_params", json_integer((json_int_t)mi->n_params));
    json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)mi->tensor_bytes));
    if (mi->arch) {
        json_t *h = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:b}",
                              "context_length", (json_int_t)hp->n_ctx_train, "n_layer", (json_int_t)hp->n_layer,
                              "n_embd", (json_int_t)hp->n_embd, "n_ff", (json_int_t)hp->n_ff, "n_head",
                              (json_int_t)hp->n_head, "n_head_kv", (json_int_t)hp->n_head_kv, "head_dim",
                              (json_int_t)hp->head_dim, "head_dim_v", (json_int_t)hp->head_dim_v, "n_rot",
                              (json_int_t)hp->n_rot, "rope_freq_base", hp->rope_freq_base, "rms_eps", hp->rms_eps,
                              "n_expert", (json_int_t)hp->n_expert, "n_expert_used", (json_int_t)hp->n_expert_used,
                              "n_ff_exp", (json_int_t)hp->n_ff_exp, "n_ff_shexp", (json_int_t)hp->n_ff_shexp,
                              "per_layer_values", hp->per_layer_heads);
        json_object_set_new(o, "hparams", h);
    }
    json_t *vj = json_object();
    json_object_set_new(vj, "n_tokens", json_integer((json_int_t)v->n_tokens));
    json_object_set_new(vj, "model", v->model ? json_string(v->model) : json_null());
    json_object_set_new(vj, "pre", v->pre ? json_string(v->pre) : json_null());
    json_object_set_new(vj, "n_merges", json_integer((json_int_t)v->n_merges));
    json_object_set_new(vj, "bos_id", json_integer((json_int_t)v->bos_id));
    json_object_set_new(vj, "eos_id", json_integer((json_int_t)v->eos_id));
    json_object_set_new(vj, "unk_id", json_integer((json_int_t)v->unk_id));
    json_object_set_new(vj, "add_bos", v->has_add_bos ? json_boolean(v->add_bos) : json_null());
    json_object_set_new(vj, "chat_template", json_boolean(v->has_chat_template));
    json_object_set_new(o, "vocab", vj);

    json_t *bt = json_object();
    for (int t = 0; t < HY_TYPE_COUNT; t++) {
        if (!mi->count_by_type[t]) continue;
        json_object_set_new(bt, quant_type_name((uint32_t)t),
                            json_pack("{s:i, s:I}", "tensors", (int)mi->count_by_type[t], "bytes",
                                      (json_int_t)mi->bytes_by_type[t]));
    }
    json_object_set_new(o, "bytes_by_type", bt);
    json_t *br = json_object();
    for (int r = 0; r < ROLE_COUNT; r++)
        json_object_set_new(br, arch_role_name((enum tensor_role)r), json_integer((json_int_t)mi->bytes_by_role[r]));
    json_object_set_new(o, "bytes_by_role", br);
    json_t *layers = json_array();
    for (int l = 0; l < mi->n_layer_seen; l++) {
        json_t *lr = json_object();
        uint64_t tot = 0;
        for (int r = 0; r < ROLE_COUNT; r++) {
            uint64_t x = mi->bytes_by_layer_role[(size_t)l * ROLE_COUNT + r];
            tot += x;
            if (x) json_object_set_new(lr, arch_role_name((enum tensor_role)r), json_integer((json_int_t)x));
        }
        json_array_append_new(layers, json_pack("{s:i, s:I, s:o}", "layer", l, "bytes", (json_int_t)tot, "by_role", lr));
    }
    json_object_set_new(o, "layers", layers);

    json_t *md = json_object();
    for (uint64_t i = 0; i < g->n_kv; i++) json_object_set_new(md, g->kv[i].key, kv_json(&g->kv[i]));
    json_object_set_new(o, "metadata", md);

    json_t *ts = json_array();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *t = &g->tensors[i];
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I, s:s, s:i}", "name", t->name, "type",
                                            quant_type_name(t->type), "shape", shape, "bytes", (json_int_t)t->n_bytes,
                                            "offset", (json_int_t)t->file_off, "role",
                                            arch_role_name(mi->tensor_role[i]), "layer", mi->tensor_layer[i]));
    }
    json_object_set_new(o, "tensors", ts);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

int cmd_inspect(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "inspect", argc - 1, argv + 1);
    const char *path = NULL;
    bool tensors = false, kvs = false, json = false;
    enum hy_status st = HY_OK;
    while (cli_more(&c) && !st) {
        if (cli_match(&c, "-h", "--help")) {
            inspect_help();
            return 0;
        } else if (cli_match(&c, NULL, "--tensors")) {
            tensors = true;
        } else if (cli_match(&c, NULL, "--kv")) {
            kvs = true;
        } else if (cli_match(&c, NULL, "--json")) {
            json = true;
        } else if (cli_match(&c, "-m", "--model")) {
            st = cli_value(&c, &path);
        } else if (!cli_is_opt(&c) && !path) {
            path = cli_positional(&c);
        } else {
            st = cli_unknown(&c);
        }
    }
    if (!st && !path) st = err_set(HY_ERR_INVALID_ARG, "no model given (usage: hypura inspect MODEL.gguf)");
    if (st) return cli_fail("inspect", st);

    struct gguf_ctx *g = NULL;
    if ((st = gguf_open(path, &g))) return cli_fail("inspect", st);
    struct model_info mi;
    st = model_info_init(&mi, g);
    if (st) {
        gguf_free(g);
        return cli_fail("inspect", st);
    }
    if (json) print_json(path, g, &mi);
    else print_text(path, g, &mi, tensors, kvs);
    model_info_free(&mi);
    gguf_free(g);
    return 0;
}
