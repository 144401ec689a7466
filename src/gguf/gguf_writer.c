#include "gguf/gguf_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mem.h"
#include "quant/quant.h"

#define WRITER_BUF_BYTES (8u << 20)

struct wtensor {
    char *name; /* owned */
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t offset; /* from the data section */
};

struct gguf_writer {
    uint32_t alignment;
    struct arena arena; /* owns keys and copied values */
    struct gguf_kv *kv;
    uint64_t n_kv, cap_kv;
    struct strmap kv_map;
    struct wtensor *tensors;
    uint64_t n_tensors, cap_tensors;
    struct strmap tensor_map;
    uint64_t data_bytes; /* data section size, padded */

    struct gguf_sink sink; /* copied in gguf_writer_begin: the caller's may go out of scope */
    unsigned char *buf; /* owned, WRITER_BUF_BYTES */
    size_t buf_len;
    uint64_t cur_tensor;  /* tensor whose data is being written */
    uint64_t cur_written; /* bytes of it written so far */
    bool began;
};

struct gguf_writer *gguf_writer_init(uint32_t alignment)
{
    HY_ASSERT(base_is_pow2(alignment));
    struct gguf_writer *w = mem_xcalloc(1, sizeof(*w));
    w->alignment = alignment;
    arena_init(&w->arena, 64 * 1024);
    strmap_init(&w->kv_map, 64);
    strmap_init(&w->tensor_map, 256);
    if (alignment != GGUF_DEFAULT_ALIGNMENT) gguf_writer_set_u32(w, "general.alignment", alignment);
    return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv);
    strmap_free(&w->kv_map);
    strmap_free(&w->tensor_map);
    arena_free(&w->arena);
    free(w->buf);
    free(w);
}

static struct gguf_value *writer_slot(struct gguf_writer *w, const char *key)
{
    HY_ASSERT(!w->began);
    int64_t i = strmap_find(&w->kv_map, key);
    if (i >= 0) return &w->kv[i].val;
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? w->cap_kv * 2 : 32;
        w->kv = mem_xrealloc(w->kv, w->cap_kv * sizeof(*w->kv));
    }
    struct gguf_kv *kv = &w->kv[w->n_kv];
    kv->key = arena_strndup(&w->arena, key, strlen(key));
    strmap_put(&w->kv_map, kv->key, (int64_t)w->n_kv);
    w->n_kv++;
    return &kv->val;
}

void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_UINT32;
    s->v.u64 = v;
}

void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_INT32;
    s->v.i64 = v;
}

void gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_UINT64;
    s->v.u64 = v;
}

void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_FLOAT32;
    s->v.f64 = v;
}

void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_BOOL;
    s->v.b = v;
}

static struct gguf_str copy_str(struct arena *a, const char *p, uint64_t len)
{
    struct gguf_str s = {len, arena_strndup(a, p, (size_t)len)};
    return s;
}

void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    struct gguf_value *s = writer_slot(w, key);
    s->type = GGUF_STRING;
    s->v.str = copy_str(&w->arena, v, strlen(v));
}

void gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
    struct gguf_value *s = writer_slot(w, key);
    struct gguf_str *d = arena_alloc(&w->arena, (size_t)n * sizeof(*d));
    for (uint64_t i = 0; i < n; i++) d[i] = copy_str(&w->arena, v[i], strlen(v[i]));
    s->type = GGUF_ARRAY;
    s->v.arr = (struct gguf_array){GGUF_STRING, n, d};
}

static void set_arr_raw(struct gguf_writer *w, const char *key, enum gguf_vtype et, const void *v,
                        uint64_t n, size_t esz)
{
    struct gguf_value *s = writer_slot(w, key);
    void *d = arena_alloc(&w->arena, (size_t)n * esz);
    if (n) memcpy(d, v, (size_t)n * esz);
    s->type = GGUF_ARRAY;
    s->v.arr = (struct gguf_array){et, n, d};
}

void gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    set_arr_raw(w, key, GGUF_FLOAT32, v, n, sizeof(float));
}

void gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    set_arr_raw(w, key, GGUF_INT32, v, n, sizeof(int32_t));
}

static size_t native_elem_bytes(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: return 1;
    case GGUF_BOOL: return sizeof(bool);
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    case GGUF_STRING: return sizeof(struct gguf_str);
    case GGUF_ARRAY: return sizeof(struct gguf_array);
    default: HY_ASSERT(!"bad value type"); return 0;
    }
}

static struct gguf_array copy_array(struct arena *a, const struct gguf_array *src)
{
    struct gguf_array d = {src->elem_type, src->n, NULL};
    size_t esz = native_elem_bytes(src->elem_type);
    void *data = arena_alloc(a, (size_t)src->n * esz);
    if (src->elem_type == GGUF_STRING) {
        const struct gguf_str *s = src->data;
        struct gguf_str *o = data;
        for (uint64_t i = 0; i < src->n; i++) o[i] = copy_str(a, s[i].data, s[i].len);
    } else if (src->elem_type == GGUF_ARRAY) {
        const struct gguf_array *s = src->data;
        struct gguf_array *o = data;
        for (uint64_t i = 0; i < src->n; i++) o[i] = copy_array(a, &s[i]);
    } else if (src->n) {
        memcpy(data, src->data, (size_t)src->n * esz);
    }
    d.data = data;
    return d;
}

void gguf_writer_set_value(struct gguf_writer *w, const char *key, const struct gguf_value *v)
{
    struct gguf_value *s = writer_slot(w, key);
    *s = *v;
    if (v->type == GGUF_STRING) s->v.str = copy_str(&w->arena, v->v.str.data, v->v.str.len);
    if (v->type == GGUF_ARRAY) s->v.arr = copy_array(&w->arena, &v->v.arr);
}

uint64_t gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
                                uint32_t n_dims, const int64_t *ne)
{
    HY_ASSERT(!w->began);
    HY_ASSERT(n_dims >= 1 && n_dims <= GGUF_MAX_DIMS);
    const struct quant_traits *tr = quant_traits(type);
    HY_ASSERT(tr && ne[0] % tr->block_size == 0);
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? w->cap_tensors * 2 : 64;
        w->tensors = mem_xrealloc(w->tensors, w->cap_tensors * sizeof(*w->tensors));
    }
    struct wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = mem_xstrdup(name);
    t->type = type;
    t->n_dims = n_dims;
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        HY_ASSERT(t->ne[d] >= 0);
        n_el *= (uint64_t)t->ne[d];
    }
    t->n_bytes = quant_bytes(type, n_el);
    t->offset = w->data_bytes;
    w->data_bytes = base_align_up(t->offset + t->n_bytes, w->alignment);
    HY_ASSERT(strmap_put(&w->tensor_map, t->name, (int64_t)w->n_tensors) < 0);
    return w->n_tensors++;
}

uint64_t gguf_writer_n_tensors(const struct gguf_writer *w)
{
    return w->n_tensors;
}

uint64_t gguf_writer_tensor_bytes(const struct gguf_writer *w, uint64_t i)
{
    HY_ASSERT(i < w->n_tensors);
    return w->tensors[i].n_bytes;
}

/* ---- serialisation ------------------------------------------------------ */

HY_MUST_CHECK static enum hy_status wflush(struct gguf_writer *w)
{
    if (w->buf_len == 0) return HY_OK;
    if (w->sink.write(w->sink.user, w->buf, w->buf_len) != 0) return HY_ERR_IO;
    w->buf_len = 0;
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status wbytes(struct gguf_writer *w, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        if (w->buf_len == 0 && n >= WRITER_BUF_BYTES) {
            /* big chunk: straight through */
            if (w->sink.write(w->sink.user, b, n) != 0) return HY_ERR_IO;
            return HY_OK;
        }
        size_t take = HY_MIN(n, WRITER_BUF_BYTES - w->buf_len);
        memcpy(w->buf + w->buf_len, b, take);
        w->buf_len += take;
        b += take;
        n -= take;
        if (w->buf_len == WRITER_BUF_BYTES) {
            enum hy_status st = wflush(w);
            if (st) return st;
        }
    }
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status wzeros(struct gguf_writer *w, uint64_t n)
{
    static const unsigned char zeros[256];
    while (n > 0) {
        size_t take = (size_t)HY_MIN(n, (uint64_t)sizeof(zeros));
        enum hy_status st = wbytes(w, zeros, take);
        if (st) return st;
        n -= take;
    }
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status wu32(struct gguf_writer *w, uint32_t v)
{
    return wbytes(w, &v, 4);
}

HY_MUST_CHECK static enum hy_status wu64(struct gguf_writer *w, uint64_t v)
{
    return wbytes(w, &v, 8);
}

HY_MUST_CHECK static enum hy_status wstr(struct gguf_writer *w, const char *p, uint64_t len)
{
    enum hy_status st = wu64(w, len);
    return st ? st : wbytes(w, p, (size_t)len);
}

HY_MUST_CHECK static enum hy_status wscalar(struct gguf_writer *w, enum gguf_vtype t, const void *native)
{
    switch (t) {
    case GGUF_BOOL: {
        uint8_t b = *(const bool *)native ? 1 : 0;
        return wbytes(w, &b, 1);
    }
    default:
        return wbytes(w, native, native_elem_bytes(t));
    }
}

HY_MUST_CHECK static enum hy_status warray(struct gguf_writer *w, const struct gguf_array *a)
{
    enum hy_status st;
    if ((st = wu32(w, a->elem_type)) || (st = wu64(w, a->n))) return st;
    if (a->elem_type == GGUF_STRING) {
        const struct gguf_str *s = a->data;
        for (uint64_t i = 0; i < a->n; i++)
            if ((st = wstr(w, s[i].data, s[i].len))) return st;
        return HY_OK;
    }
    if (a->elem_type == GGUF_ARRAY) {
        const struct gguf_array *s = a->data;
        for (uint64_t i = 0; i < a->n; i++)
            if ((st = warray(w, &s[i]))) return st;
        return HY_OK;
    }
    if (a->elem_type == GGUF_BOOL) {
        const bool *b = a->data;
        for (uint64_t i = 0; i < a->n; i++)
            if ((st = wscalar(w, GGUF_BOOL, &b[i]))) return st;
        return HY_OK;
    }
    return wbytes(w, a->data, (size_t)a->n * native_elem_bytes(a->elem_type));
}

HY_MUST_CHECK static enum hy_status wvalue(struct gguf_writer *w, const struct gguf_value *v)
{
    union {
        uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; float f32; double f64; bool b;
    } x;
    switch (v->type) {
    case GGUF_UINT8: case GGUF_INT8: x.u8 = (uint8_t)v->v.u64; return wbytes(w, &x.u8, 1);
    case GGUF_UINT16: case GGUF_INT16: x.u16 = (uint16_t)v->v.u64; return wbytes(w, &x.u16, 2);
    case GGUF_UINT32: case GGUF_INT32: x.u32 = (uint32_t)v->v.u64; return wbytes(w, &x.u32, 4);
    case GGUF_UINT64: case GGUF_INT64: return wbytes(w, &v->v.u64, 8);
    case GGUF_FLOAT32: x.f32 = (float)v->v.f64; return wbytes(w, &x.f32, 4);
    case GGUF_FLOAT64: return wbytes(w, &v->v.f64, 8);
    case GGUF_BOOL: x.b = v->v.b; return wscalar(w, GGUF_BOOL, &x.b);
    case GGUF_STRING: return wstr(w, v->v.str.data, v->v.str.len);
    case GGUF_ARRAY: return warray(w, &v->v.arr);
    default: HY_ASSERT(!"bad value type"); return HY_ERR_INTERNAL;
    }
}

/* A sink that only counts, to size the header exactly. */
static int count_write(void *user, const void *p, size_t n)
{
    (void)p;
    *(uint64_t *)user += n;
    return 0;
}

HY_MUST_CHECK static enum hy_status write_header(struct gguf_writer *w)
{
    enum hy_status st;
    if ((st = wu32(w, GGUF_MAGIC)) || (st = wu32(w, 3)) || (st = wu64(w, w->n_tensors)) ||
        (st = wu64(w, w->n_kv)))
        return st;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        const struct gguf_kv *kv = &w->kv[i];
        if ((st = wstr(w, kv->key, strlen(kv->key))) || (st = wu32(w, kv->val.type)) ||
            (st = wvalue(w, &kv->val)))
            return st;
    }
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        if ((st = wstr(w, t->name, strlen(t->name))) || (st = wu32(w, t->n_dims))) return st;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = wu64(w, (uint64_t)t->ne[d]))) return st;
        if ((st = wu32(w, t->type)) || (st = wu64(w, t->offset))) return st;
    }
    return HY_OK;
}

/* Header bytes (before padding), by serialising into a counting sink. */
static uint64_t header_size(const struct gguf_writer *w)
{
    uint64_t count = 0;
    struct gguf_sink counter = {count_write, &count};
    struct gguf_writer c = *w;
    c.sink = counter;
    c.buf = mem_xmalloc(WRITER_BUF_BYTES);
    c.buf_len = 0;
    enum hy_status st = write_header(&c);
    if (!st) st = wflush(&c);
    HY_ASSERT(st == HY_OK); /* the counting sink cannot fail */
    free(c.buf);
    return count;
}

uint64_t gguf_writer_total_bytes(const struct gguf_writer *w)
{
    return base_align_up(header_size(w), w->alignment) + w->data_bytes;
}

enum hy_status gguf_writer_begin(struct gguf_writer *w, const struct gguf_sink *sink)
{
    HY_ASSERT(!w->began);
    w->sink = *sink;
    w->buf = mem_xmalloc(WRITER_BUF_BYTES);
    w->buf_len = 0;
    w->began = true;
    w->cur_tensor = 0;
    w->cur_written = 0;
    uint64_t hdr = header_size(w);
    enum hy_status st = write_header(w);
    if (st) return st;
    return wzeros(w, base_align_up(hdr, w->alignment) - hdr);
}

/* Skips over finished tensors, writing their padding. */
HY_MUST_CHECK static enum hy_status advance(struct gguf_writer *w)
{
    while (w->cur_tensor < w->n_tensors && w->cur_written == w->tensors[w->cur_tensor].n_bytes) {
        const struct wtensor *t = &w->tensors[w->cur_tensor];
        uint64_t end = t->offset + t->n_bytes;
        enum hy_status st = wzeros(w, base_align_up(end, w->alignment) - end);
        if (st) return st;
        w->cur_tensor++;
        w->cur_written = 0;
    }
    return HY_OK;
}

enum hy_status gguf_writer_write_data(struct gguf_writer *w, const void *p, size_t n)
{
    HY_ASSERT(w->began);
    const unsigned char *b = p;
    while (n > 0) {
        enum hy_status st = advance(w);
        if (st) return st;
        if (w->cur_tensor >= w->n_tensors)
            return err_set(HY_ERR_INTERNAL, "gguf writer: %zu bytes of data past the last tensor", n);
        const struct wtensor *t = &w->tensors[w->cur_tensor];
        uint64_t room = t->n_bytes - w->cur_written;
        size_t take = (size_t)HY_MIN((uint64_t)n, room);
        if ((st = wbytes(w, b, take))) return st;
        w->cur_written += take;
        b += take;
        n -= take;
    }
    return HY_OK;
}

enum hy_status gguf_writer_flush(struct gguf_writer *w)
{
    HY_ASSERT(w->began);
    return wflush(w);
}

enum hy_status gguf_writer_finish(struct gguf_writer *w)
{
    HY_ASSERT(w->began);
    enum hy_status st = advance(w);
    if (st) return st;
    if (w->cur_tensor < w->n_tensors)
        return err_set(HY_ERR_INTERNAL, "gguf writer: tensor '%s' got %" PRIu64 " of %" PRIu64 " bytes",
                       w->tensors[w->cur_tensor].name, w->cur_written, w->tensors[w->cur_tensor].n_bytes);
    return wflush(w);
}

/* ---- sinks -------------------------------------------------------------- */

static int file_write(void *user, const void *p, size_t n)
{
    struct gguf_writer_file *f = user;
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t k = write(f->fd, b, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            err_set(HY_ERR_IO, "%s: write failed: %s", f->tmp_path, strerror(errno));
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

enum hy_status gguf_writer_file_open(struct gguf_writer_file *f, const char *path, bool force)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    struct stat sb;
    if (stat(path, &sb) == 0 && !force)
        return err_set(HY_ERR_EXISTS, "%s: file exists\nhint: pass --force to overwrite it", path);
    size_t n = strlen(path);
    f->path = mem_xstrdup(path);
    f->tmp_path = mem_xmalloc(n + sizeof(".partial"));
    memcpy(f->tmp_path, path, n);
    memcpy(f->tmp_path + n, ".partial", sizeof(".partial"));
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        enum hy_status st = err_set(HY_ERR_IO, "%s: cannot create: %s", f->tmp_path, strerror(errno));
        free(f->path);
        free(f->tmp_path);
        f->path = f->tmp_path = NULL;
        return st;
    }
    return HY_OK;
}

struct gguf_sink gguf_writer_file_sink(struct gguf_writer_file *f)
{
    struct gguf_sink s = {file_write, f};
    return s;
}

enum hy_status gguf_writer_file_commit(struct gguf_writer_file *f)
{
    enum hy_status st = HY_OK;
    if (fsync(f->fd) != 0) st = err_set(HY_ERR_IO, "%s: fsync failed: %s", f->tmp_path, strerror(errno));
    if (close(f->fd) != 0 && !st) st = err_set(HY_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    f->fd = -1;
    if (!st && rename(f->tmp_path, f->path) != 0)
        st = err_set(HY_ERR_IO, "%s: cannot rename to %s: %s", f->tmp_path, f->path, strerror(errno));
    if (st) unlink(f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    return st;
}

void gguf_writer_file_abort(struct gguf_writer_file *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
}

static int mem_write(void *user, const void *p, size_t n)
{
    struct gguf_writer_mem *m = user;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + n) cap *= 2;
        m->data = mem_xrealloc(m->data, cap);
        m->cap = cap;
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
    return 0;
}

struct gguf_sink gguf_writer_mem_sink(struct gguf_writer_mem *m)
{
    struct gguf_sink s = {mem_write, m};
    return s;
}
