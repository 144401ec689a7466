/*
 * The hardware profile as JSON (the cache file of `hypura profile`).
 *
 * Layout (version 1; bandwidths in bytes/s, sizes in bytes):
 *   { "version": 1, "created_unix": 1763700000,
 *     "cpu": { "model": "...", "physical_cores": 2, "logical_cpus": 2, "simd": "avx2" },
 *     "memory": { "total_bytes": N, "available_bytes": N,
 *                 "cgroup": null | { "version": 1|2, "limit_bytes": N, "usage_bytes": N },
 *                 "read_bytes_per_s_1t": X, "read_bytes_per_s_all": X, "read_threads": 2 },
 *     "gpus": [ { "name": "...", "total_bytes": N, "free_bytes": N, "cc_major": 9, "cc_minor": 0 } ],
 *     "storage": null | { "dir": "...", "file_bytes": N,
 *                 "req_sizes": [65536, ...], "queue_depths": [1, ...],
 *                 "read_bytes_per_s": [[X per queue depth] per request size],
 *                 "best": { "req_bytes": N, "queue_depth": N, "read_bytes_per_s": X },
 *                 "rand4k_iops": X, "rand4k_latency_us": X },
 *     "matvec": { "threads": 2, "bytes_per_s": { "q4_k": X, ... } } }
 * A file whose grid (req_sizes, queue_depths) differs from this build's is
 * refused as unsupported, like another version: the caller re-measures.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "hw/hw.h"

static json_t *num(double v)
{
    return json_real(v);
}

static json_t *u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

char *hw_profile_to_json(const struct hw_profile *p)
{
    json_t *root = json_object();
    json_object_set_new(root, "version", json_integer(p->version));
    json_object_set_new(root, "created_unix", json_integer(p->created_unix));
    json_object_set_new(root, "cpu",
                        json_pack("{s:s, s:i, s:i, s:s}", "model", p->cpu_model, "physical_cores",
                                  p->physical_cores, "logical_cpus", p->logical_cpus, "simd", p->simd));
    json_t *mem = json_object();
    json_object_set_new(mem, "total_bytes", u64(p->ram_total_bytes));
    json_object_set_new(mem, "available_bytes", u64(p->ram_available_bytes));
    if (p->cgroup_version) {
        json_t *cg = json_object();
        json_object_set_new(cg, "version", json_integer(p->cgroup_version));
        json_object_set_new(cg, "limit_bytes", u64(p->cgroup_limit_bytes));
        json_object_set_new(cg, "usage_bytes", u64(p->cgroup_usage_bytes));
        json_object_set_new(mem, "cgroup", cg);
    } else {
        json_object_set_new(mem, "cgroup", json_null());
    }
    json_object_set_new(mem, "read_bytes_per_s_1t", num(p->ram_read_bytes_per_s_1t));
    json_object_set_new(mem, "read_bytes_per_s_all", num(p->ram_read_bytes_per_s_all));
    json_object_set_new(mem, "read_threads", json_integer(p->ram_threads));
    json_object_set_new(root, "memory", mem);

    json_t *gpus = json_array();
    for (int i = 0; i < p->n_gpu; i++) {
        const struct hw_gpu *g = &p->gpus[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(g->name));
        json_object_set_new(o, "total_bytes", u64(g->total_bytes));
        json_object_set_new(o, "free_bytes", u64(g->free_bytes));
        json_object_set_new(o, "cc_major", json_integer(g->cc_major));
        json_object_set_new(o, "cc_minor", json_integer(g->cc_minor));
        json_array_append_new(gpus, o);
    }
    json_object_set_new(root, "gpus", gpus);

    if (p->has_storage) {
        const struct hw_storage *s = &p->storage;
        json_t *o = json_object(), *sizes = json_array(), *qds = json_array(), *grid = json_array();
        json_object_set_new(o, "dir", json_string(s->dir));
        json_object_set_new(o, "file_bytes", u64(s->file_bytes));
        for (int i = 0; i < HW_N_REQ_SIZES; i++) json_array_append_new(sizes, u64(hw_req_sizes[i]));
        for (int j = 0; j < HW_N_QDS; j++) json_array_append_new(qds, json_integer(hw_queue_depths[j]));
        for (int i = 0; i < HW_N_REQ_SIZES; i++) {
            json_t *row = json_array();
            for (int j = 0; j < HW_N_QDS; j++) json_array_append_new(row, num(s->read_bytes_per_s[i][j]));
            json_array_append_new(grid, row);
        }
        json_object_set_new(o, "req_sizes", sizes);
        json_object_set_new(o, "queue_depths", qds);
        json_object_set_new(o, "read_bytes_per_s", grid);
        json_object_set_new(o, "best",
                            json_pack("{s:I, s:i, s:f}", "req_bytes", (json_int_t)s->best_req_bytes, "queue_depth",
                                      s->best_queue_depth, "read_bytes_per_s", s->best_read_bytes_per_s));
        json_object_set_new(o, "rand4k_iops", num(s->rand4k_iops));
        json_object_set_new(o, "rand4k_latency_us", num(s->rand4k_latency_us));
        json_object_set_new(root, "storage", o);
    } else {
        json_object_set_new(root, "storage", json_null());
    }

    json_t *mv = json_object(), *types = json_object();
    json_object_set_new(mv, "threads", json_integer(p->matvec_threads));
    for (int i = 0; i < p->n_matvec; i++)
        json_object_set_new(types, quant_type_name(p->matvec[i].type), num(p->matvec[i].bytes_per_s));
    json_object_set_new(mv, "bytes_per_s", types);
    json_object_set_new(root, "matvec", mv);

    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    HY_ASSERT(text);
    return text;
}

/* ---- parsing ---- */

static enum hy_status get(json_t *obj, const char *where, const char *key, json_t **out)
{
    *out = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!*out) return err_set(HY_ERR_FORMAT, "hardware profile: %s: missing \"%s\"", where, key);
    return HY_OK;
}

static enum hy_status get_num(json_t *obj, const char *where, const char *key, double *out)
{
    json_t *v;
    enum hy_status st = get(obj, where, key, &v);
    if (st) return st;
    if (!json_is_number(v) || json_number_value(v) < 0)
        return err_set(HY_ERR_FORMAT, "hardware profile: %s: \"%s\" is not a non-negative number", where, key);
    *out = json_number_value(v);
    return HY_OK;
}

static enum hy_status get_u64(json_t *obj, const char *where, const char *key, uint64_t *out)
{
    json_t *v;
    enum hy_status st = get(obj, where, key, &v);
    if (st) return st;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return err_set(HY_ERR_FORMAT, "hardware profile: %s: \"%s\" is not a non-negative integer", where, key);
    *out = (uint64_t)json_integer_value(v);
    return HY_OK;
}

static enum hy_status get_int(json_t *obj, const char *where, const char *key, int *out)
{
    uint64_t v = 0;
    enum hy_status st = get_u64(obj, where, key, &v);
    if (st) return st;
    if (v > 1u << 30) return err_set(HY_ERR_FORMAT, "hardware profile: %s: \"%s\" is too large", where, key);
    *out = (int)v;
    return HY_OK;
}

static enum hy_status get_str(json_t *obj, const char *where, const char *key, char *out, size_t cap)
{
    json_t *v;
    enum hy_status st = get(obj, where, key, &v);
    if (st) return st;
    if (!json_is_string(v)) return err_set(HY_ERR_FORMAT, "hardware profile: %s: \"%s\" is not a string", where, key);
    snprintf(out, cap, "%s", json_string_value(v));
    return HY_OK;
}

#define TRY(expr)                                                                                                    \
    do {                                                                                                             \
        enum hy_status st_ = (expr);                                                                                 \
        if (st_) return st_;                                                                                         \
    } while (0)

static enum hy_status parse_storage(json_t *o, struct hw_storage *s)
{
    TRY(get_str(o, "storage", "dir", s->dir, sizeof s->dir));
    TRY(get_u64(o, "storage", "file_bytes", &s->file_bytes));
    json_t *sizes, *qds, *grid, *best;
    TRY(get(o, "storage", "req_sizes", &sizes));
    TRY(get(o, "storage", "queue_depths", &qds));
    TRY(get(o, "storage", "read_bytes_per_s", &grid));
    bool same = json_array_size(sizes) == HW_N_REQ_SIZES && json_array_size(qds) == HW_N_QDS;
    for (int i = 0; same && i < HW_N_REQ_SIZES; i++)
        same = json_integer_value(json_array_get(sizes, (size_t)i)) == (json_int_t)hw_req_sizes[i];
    for (int j = 0; same && j < HW_N_QDS; j++)
        same = json_integer_value(json_array_get(qds, (size_t)j)) == hw_queue_depths[j];
    if (!same)
        return err_set(HY_ERR_UNSUPPORTED, "hardware profile: storage: measured over another grid of request "
                                           "sizes and queue depths than this build's");
    if (json_array_size(grid) != HW_N_REQ_SIZES)
        return err_set(HY_ERR_FORMAT, "hardware profile: storage: read_bytes_per_s must have %d rows",
                       HW_N_REQ_SIZES);
    for (int i = 0; i < HW_N_REQ_SIZES; i++) {
        json_t *row = json_array_get(grid, (size_t)i);
        if (json_array_size(row) != HW_N_QDS)
            return err_set(HY_ERR_FORMAT, "hardware profile: storage: read_bytes_per_s row %d must have %d values",
                           i, HW_N_QDS);
        for (int j = 0; j < HW_N_QDS; j++) {
            json_t *v = json_array_get(row, (size_t)j);
            if (!json_is_number(v) || json_number_value(v) < 0)
                return err_set(HY_ERR_FORMAT, "hardware profile: storage: read_bytes_per_s[%d][%d] is not a "
                                              "non-negative number", i, j);
            s->read_bytes_per_s[i][j] = json_number_value(v);
        }
    }
    TRY(get(o, "storage", "best", &best));
    uint64_t req;
    TRY(get_u64(best, "storage.best", "req_bytes", &req));
    s->best_req_bytes = (uint32_t)HY_MIN(req, UINT32_MAX);
    TRY(get_int(best, "storage.best", "queue_depth", &s->best_queue_depth));
    TRY(get_num(best, "storage.best", "read_bytes_per_s", &s->best_read_bytes_per_s));
    TRY(get_num(o, "storage", "rand4k_iops", &s->rand4k_iops));
    TRY(get_num(o, "storage", "rand4k_latency_us", &s->rand4k_latency_us));
    return HY_OK;
}

static enum hy_status parse_root(json_t *root, struct hw_profile *p)
{
    if (!json_is_object(root)) return err_set(HY_ERR_FORMAT, "hardware profile: not a JSON object");
    TRY(get_int(root, "top level", "version", &p->version));
    if (p->version != HW_PROFILE_VERSION)
        return err_set(HY_ERR_UNSUPPORTED, "hardware profile: version %d, this build writes version %d",
                       p->version, HW_PROFILE_VERSION);
    json_t *v, *cpu, *mem, *gpus, *st, *mv, *types;
    TRY(get(root, "top level", "created_unix", &v));
    if (!json_is_integer(v)) return err_set(HY_ERR_FORMAT, "hardware profile: \"created_unix\" is not an integer");
    p->created_unix = (int64_t)json_integer_value(v);

    TRY(get(root, "top level", "cpu", &cpu));
    TRY(get_str(cpu, "cpu", "model", p->cpu_model, sizeof p->cpu_model));
    TRY(get_int(cpu, "cpu", "physical_cores", &p->physical_cores));
    TRY(get_int(cpu, "cpu", "logical_cpus", &p->logical_cpus));
    TRY(get_str(cpu, "cpu", "simd", p->simd, sizeof p->simd));

    TRY(get(root, "top level", "memory", &mem));
    TRY(get_u64(mem, "memory", "total_bytes", &p->ram_total_bytes));
    TRY(get_u64(mem, "memory", "available_bytes", &p->ram_available_bytes));
    json_t *cg;
    TRY(get(mem, "memory", "cgroup", &cg));
    if (!json_is_null(cg)) {
        TRY(get_int(cg, "memory.cgroup", "version", &p->cgroup_version));
        if (p->cgroup_version != 1 && p->cgroup_version != 2)
            return err_set(HY_ERR_FORMAT, "hardware profile: memory.cgroup: version must be 1 or 2");
        TRY(get_u64(cg, "memory.cgroup", "limit_bytes", &p->cgroup_limit_bytes));
        TRY(get_u64(cg, "memory.cgroup", "usage_bytes", &p->cgroup_usage_bytes));
    }
    TRY(get_num(mem, "memory", "read_bytes_per_s_1t", &p->ram_read_bytes_per_s_1t));
    TRY(get_num(mem, "memory", "read_bytes_per_s_all", &p->ram_read_bytes_per_s_all));
    TRY(get_int(mem, "memory", "read_threads", &p->ram_threads));

    TRY(get(root, "top level", "gpus", &gpus));
    if (!json_is_array(gpus) || json_array_size(gpus) > HW_MAX_GPUS)
        return err_set(HY_ERR_FORMAT, "hardware profile: \"gpus\" must be an array of at most %d", HW_MAX_GPUS);
    p->n_gpu = (int)json_array_size(gpus);
    for (int i = 0; i < p->n_gpu; i++) {
        json_t *g = json_array_get(gpus, (size_t)i);
        struct hw_gpu *d = &p->gpus[i];
        TRY(get_str(g, "gpus[]", "name", d->name, sizeof d->name));
        TRY(get_u64(g, "gpus[]", "total_bytes", &d->total_bytes));
        TRY(get_u64(g, "gpus[]", "free_bytes", &d->free_bytes));
        TRY(get_int(g, "gpus[]", "cc_major", &d->cc_major));
        TRY(get_int(g, "gpus[]", "cc_minor", &d->cc_minor));
    }

    TRY(get(root, "top level", "storage", &st));
    if (!json_is_null(st)) {
        TRY(parse_storage(st, &p->storage));
        p->has_storage = true;
    }

    TRY(get(root, "top level", "matvec", &mv));
    TRY(get_int(mv, "matvec", "threads", &p->matvec_threads));
    TRY(get(mv, "matvec", "bytes_per_s", &types));
    if (!json_is_object(types)) return err_set(HY_ERR_FORMAT, "hardware profile: matvec.bytes_per_s is not an object");
    const char *key;
    json_t *val;
    json_object_foreach(types, key, val)
    {
        const int type = quant_type_from_name(key);
        if (type < 0) return err_set(HY_ERR_FORMAT, "hardware profile: matvec: unknown type '%s'", key);
        if (!json_is_number(val) || json_number_value(val) < 0)
            return err_set(HY_ERR_FORMAT, "hardware profile: matvec: '%s' is not a non-negative number", key);
        if (p->n_matvec >= HY_TYPE_COUNT) return err_set(HY_ERR_FORMAT, "hardware profile: matvec: too many types");
        p->matvec[p->n_matvec++] = (struct hw_matvec){(uint32_t)type, json_number_value(val)};
    }
    return HY_OK;
}

enum hy_status hw_profile_from_json(const char *text, struct hw_profile *out)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root)
        return err_set(HY_ERR_FORMAT, "hardware profile: not JSON: line %d column %d: %s", je.line, je.column,
                       je.text);
    enum hy_status st = parse_root(root, out);
    json_decref(root);
    return st;
}

enum hy_status hw_profile_save(const struct hw_profile *p, const char *path)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(HY_ERR_IO, "%s: path too long", path);
    char *text = hw_profile_to_json(p);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        const int e = errno;
        free(text);
        return err_set(HY_ERR_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    const size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok) {
        remove(tmp);
        return err_set(HY_ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        const int e = errno;
        remove(tmp);
        return err_set(HY_ERR_IO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return HY_OK;
}

enum hy_status hw_profile_load(const char *path, struct hw_profile *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    HY_ASSERT(buf);
    size_t k;
    while ((k = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            if (cap >= (16u << 20)) break;
            cap *= 2;
            buf = realloc(buf, cap);
            HY_ASSERT(buf);
        }
    }
    const bool err = ferror(f);
    fclose(f);
    buf[n] = '\0';
    if (err) {
        free(buf);
        return err_set(HY_ERR_IO, "%s: read failed", path);
    }
    enum hy_status st = hw_profile_from_json(buf, out);
    free(buf);
    if (st) return err_prefix(st, "%s: ", path);
    return HY_OK;
}
