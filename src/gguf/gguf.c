#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "quant/quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* ---- byte sources ------------------------------------------------------- */

/* The buffer source keeps its pointer in `user`; the size check is done by the
 * cursor before every read, so read_at only copies. */
static int gguf_buffer_read_at(void *user, uint64_t off, void *dst, size_t n)
{
    memcpy(dst, (const unsigned char *)user + off, n);
    return 0;
}

struct gguf_source gguf_source_buffer(const void *buf, uint64_t size, const char *name)
{
    struct gguf_source s = {gguf_buffer_read_at, (void *)buf, size, name};
    return s;
}

struct fd_source {
    int fd;
};

static int gguf_fd_read_at(void *user, uint64_t off, void *dst, size_t n)
{
    struct fd_source *fs = user;
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t got = pread(fs->fd, p, n, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) {
            errno = EIO;
            return -1;
        }
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return 0;
}

/* ---- cursor ------------------------------------------------------------- */

#define CUR_BUF_BYTES (64 * 1024)

struct cur {
    const struct gguf_source *src;
    uint64_t pos; /* absolute offset of the next byte */
    unsigned char *buf;
    uint64_t buf_off;
    size_t buf_len;
    char where[320]; /* what is being parsed, for messages */
    unsigned flags;  /* enum gguf_parse_flags */
};

static void cur_where(struct cur *c, const char *fmt, ...) HY_PRINTF(2, 3);
static void cur_where(struct cur *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->where, sizeof(c->where), fmt, ap);
    va_end(ap);
}

static uint64_t cur_left(const struct cur *c)
{
    return c->src->size - c->pos;
}

static enum hy_status cur_truncated(const struct cur *c, uint64_t need)
{
    return err_set(HY_ERR_FORMAT,
                   "%s: truncated in %s at offset %" PRIu64 ": needs %" PRIu64
                   " bytes, %" PRIu64 " left in the file (%" PRIu64 " bytes)",
                   c->src->name, c->where, c->pos, need, cur_left(c), c->src->size);
}

HY_MUST_CHECK static enum hy_status cur_read(struct cur *c, void *dst, uint64_t n)
{
    if (n > cur_left(c)) return cur_truncated(c, n);
    unsigned char *out = dst;
    while (n > 0) {
        if (c->pos >= c->buf_off && c->pos < c->buf_off + c->buf_len) {
            size_t in_buf = (size_t)(c->buf_off + c->buf_len - c->pos);
            size_t take = n < in_buf ? (size_t)n : in_buf;
            memcpy(out, c->buf + (c->pos - c->buf_off), take);
            out += take;
            c->pos += take;
            n -= take;
            continue;
        }
        if (n >= CUR_BUF_BYTES) {
            /* large string or array: read straight into the destination */
            if (c->src->read_at(c->src->user, c->pos, out, (size_t)n) != 0)
                return err_set(HY_ERR_IO, "%s: read of %" PRIu64 " bytes at offset %" PRIu64
                                          " failed: %s", c->src->name, n, c->pos, strerror(errno));
            c->pos += n;
            return HY_OK;
        }
        size_t fill = (size_t)HY_MIN((uint64_t)CUR_BUF_BYTES, cur_left(c));
        if (c->src->read_at(c->src->user, c->pos, c->buf, fill) != 0)
            return err_set(HY_ERR_IO, "%s: read of %zu bytes at offset %" PRIu64 " failed: %s",
                           c->src->name, fill, c->pos, strerror(errno));
        c->buf_off = c->pos;
        c->buf_len = fill;
    }
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status cur_u32(struct cur *c, uint32_t *v)
{
    return cur_read(c, v, 4);
}

HY_MUST_CHECK static enum hy_status cur_u64(struct cur *c, uint64_t *v)
{
    return cur_read(c, v, 8);
}

/* Reads a GGUF string into the arena. */
HY_MUST_CHECK static enum hy_status cur_str(struct cur *c, struct arena *a, struct gguf_str *s)
{
    uint64_t len;
    enum hy_status st = cur_u64(c, &len);
    if (st) return st;
    if (len > cur_left(c)) {
        return err_set(HY_ERR_FORMAT,
                       "%s: %s: string length %" PRIu64 " at offset %" PRIu64
                       " is past the end of the file (%" PRIu64 " bytes left)",
                       c->src->name, c->where, len, c->pos - 8, cur_left(c));
    }
    char *d = arena_alloc(a, (size_t)len + 1);
    st = cur_read(c, d, len);
    if (st) return st;
    d[len] = '\0';
    s->len = len;
    s->data = d;
    return HY_OK;
}

/* ---- values ------------------------------------------------------------- */

static const char *const vtype_names[GGUF_VTYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *gguf_vtype_name(enum gguf_vtype t)
{
    if ((unsigned)t >= GGUF_VTYPE_COUNT) return "invalid";
    return vtype_names[t];
}

bool gguf_vtype_is_int(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_UINT16: case GGUF_INT16:
    case GGUF_UINT32: case GGUF_INT32: case GGUF_UINT64: case GGUF_INT64:
        return true;
    default:
        return false;
    }
}

/* Bytes one element of type t takes in the file at least. */
static uint64_t vtype_min_file_bytes(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    case GGUF_STRING: return 8;
    case GGUF_ARRAY: return 12;
    default: return 1;
    }
}

/* Native bytes of one packed element in struct gguf_array.data. */
static size_t vtype_native_bytes(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_STRING: return sizeof(struct gguf_str);
    case GGUF_ARRAY: return sizeof(struct gguf_array);
    case GGUF_BOOL: return sizeof(bool);
    default: return (size_t)vtype_min_file_bytes(t);
    }
}

HY_MUST_CHECK static enum hy_status parse_value(struct cur *c, struct arena *a, enum gguf_vtype type,
                                                struct gguf_value *out, int depth);

HY_MUST_CHECK static enum hy_status parse_array(struct cur *c, struct arena *a,
                                                struct gguf_array *arr, int depth)
{
    uint32_t et;
    uint64_t n;
    enum hy_status st = cur_u32(c, &et);
    if (st) return st;
    if (et >= GGUF_VTYPE_COUNT)
        return err_set(HY_ERR_FORMAT, "%s: %s: array element type %u is not a GGUF value type (0..%d)",
                       c->src->name, c->where, et, GGUF_VTYPE_COUNT - 1);
    if (et == GGUF_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return err_set(HY_ERR_FORMAT, "%s: %s: arrays nested more than %d deep",
                       c->src->name, c->where, GGUF_MAX_ARRAY_DEPTH);
    st = cur_u64(c, &n);
    if (st) return st;
    uint64_t min_bytes = vtype_min_file_bytes((enum gguf_vtype)et);
    if (n > cur_left(c) / min_bytes)
        return err_set(HY_ERR_FORMAT,
                       "%s: %s: array of %" PRIu64 " %s elements at offset %" PRIu64
                       " does not fit in the %" PRIu64 " bytes left in the file",
                       c->src->name, c->where, n, vtype_names[et], c->pos - 12, cur_left(c));
    arr->elem_type = (enum gguf_vtype)et;
    arr->n = n;
    size_t esz = vtype_native_bytes(arr->elem_type);
    void *data = arena_alloc(a, (size_t)n * esz);
    arr->data = data;
    switch (arr->elem_type) {
    case GGUF_STRING: {
        struct gguf_str *s = data;
        for (uint64_t i = 0; i < n; i++)
            if ((st = cur_str(c, a, &s[i]))) return st;
        return HY_OK;
    }
    case GGUF_ARRAY: {
        struct gguf_array *sub = data;
        for (uint64_t i = 0; i < n; i++)
            if ((st = parse_array(c, a, &sub[i], depth + 1))) return st;
        return HY_OK;
    }
    case GGUF_BOOL: {
        unsigned char *b = data;
        if ((st = cur_read(c, b, n))) return st;
        for (uint64_t i = 0; i < n; i++) {
            if (b[i] > 1)
                return err_set(HY_ERR_FORMAT, "%s: %s: bool element %" PRIu64 " has value %u (must be 0 or 1)",
                               c->src->name, c->where, i, b[i]);
        }
        return HY_OK;
    }
    default:
        return cur_read(c, data, n * esz);
    }
}

static enum hy_status parse_value(struct cur *c, struct arena *a, enum gguf_vtype type,
                                  struct gguf_value *out, int depth)
{
    enum hy_status st;
    out->type = type;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64; float f32; double f64;
    } x;
    switch (type) {
    case GGUF_UINT8: if ((st = cur_read(c, &x.u8, 1))) return st; out->v.u64 = x.u8; return HY_OK;
    case GGUF_INT8: if ((st = cur_read(c, &x.i8, 1))) return st; out->v.i64 = x.i8; return HY_OK;
    case GGUF_UINT16: if ((st = cur_read(c, &x.u16, 2))) return st; out->v.u64 = x.u16; return HY_OK;
    case GGUF_INT16: if ((st = cur_read(c, &x.i16, 2))) return st; out->v.i64 = x.i16; return HY_OK;
    case GGUF_UINT32: if ((st = cur_read(c, &x.u32, 4))) return st; out->v.u64 = x.u32; return HY_OK;
    case GGUF_INT32: if ((st = cur_read(c, &x.i32, 4))) return st; out->v.i64 = x.i32; return HY_OK;
    case GGUF_UINT64: if ((st = cur_read(c, &x.u64, 8))) return st; out->v.u64 = x.u64; return HY_OK;
    case GGUF_INT64: if ((st = cur_read(c, &x.i64, 8))) return st; out->v.i64 = x.i64; return HY_OK;
    case GGUF_FLOAT32: if ((st = cur_read(c, &x.f32, 4))) return st; out->v.f64 = x.f32; return HY_OK;
    case GGUF_FLOAT64: if ((st = cur_read(c, &x.f64, 8))) return st; out->v.f64 = x.f64; return HY_OK;
    case GGUF_BOOL:
        if ((st = cur_read(c, &x.u8, 1))) return st;
        if (x.u8 > 1)
            return err_set(HY_ERR_FORMAT, "%s: %s: bool has value %u (must be 0 or 1)",
                           c->src->name, c->where, x.u8);
        out->v.b = x.u8 != 0;
        return HY_OK;
    case GGUF_STRING: return cur_str(c, a, &out->v.str);
    case GGUF_ARRAY: return parse_array(c, a, &out->v.arr, depth);
    default: break;
    }
    return err_set(HY_ERR_FORMAT, "%s: %s: value type %u is not a GGUF value type (0..%d)",
                   c->src->name, c->where, (unsigned)type, GGUF_VTYPE_COUNT - 1);
}

/* ---- header ------------------------------------------------------------- */

HY_MUST_CHECK static enum hy_status parse_magic_version(struct cur *c, struct gguf_ctx *ctx)
{
    unsigned char magic[4];
    cur_where(c, "the header");
    if (c->src->size < 4)
        return err_set(HY_ERR_FORMAT, "%s: not a GGUF file: %" PRIu64 " bytes, too short for the magic",
                       c->src->name, c->src->size);
    enum hy_status st = cur_read(c, magic, 4);
    if (st) return st;
    if (memcmp(magic, "GGUF", 4) != 0) {
        char shown[32];
        snprintf(shown, sizeof(shown), "%02x %02x %02x %02x", magic[0], magic[1], magic[2], magic[3]);
        return err_set(HY_ERR_FORMAT, "%s: not a GGUF file: magic bytes are %s, expected 47 47 55 46 (\"GGUF\")",
                       c->src->name, shown);
    }
    uint32_t version;
    if ((st = cur_u32(c, &version))) return st;
    if (version == 1)
        return err_set(HY_ERR_FORMAT,
                       "%s: this is a GGUF v1 file (32-bit counts); only GGUF v2 and v3 are supported"
                       "\nhint: convert the model again with a current llama.cpp convert script",
                       c->src->name);
    if (version == 0x02000000u || version == 0x03000000u)
        return err_set(HY_ERR_FORMAT, "%s: big-endian GGUF files are not supported", c->src->name);
    if (version != 2 && version != 3)
        return err_set(HY_ERR_FORMAT, "%s: unsupported GGUF version %u (supported: 2 and 3)",
                       c->src->name, version);
    ctx->version = version;
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status parse_kvs(struct cur *c, struct gguf_ctx *ctx)
{
    enum hy_status st;
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        struct gguf_kv *kv = &ctx->kv[i];
        struct gguf_str key;
        cur_where(c, "key/value %" PRIu64 " (its key)", i);
        if ((st = cur_str(c, &ctx->arena, &key))) return st;
        if (key.len == 0 || strlen(key.data) != key.len)
            return err_set(HY_ERR_FORMAT, "%s: key/value %" PRIu64 ": key is %s", ctx->name, i,
                           key.len == 0 ? "empty" : "not a string (contains a NUL byte)");
        kv->key = key.data;
        cur_where(c, "key/value %" PRIu64 " ('%s')", i, kv->key);
        int64_t prev = strmap_put(&ctx->kv_map, kv->key, (int64_t)i);
        if (prev >= 0)
            return err_set(HY_ERR_FORMAT, "%s: duplicate key '%s' (key/values %" PRId64 " and %" PRIu64 ")",
                           ctx->name, kv->key, prev, i);
        uint32_t type;
        if ((st = cur_u32(c, &type))) return st;
        if (type >= GGUF_VTYPE_COUNT)
            return err_set(HY_ERR_FORMAT, "%s: key '%s': value type %u is not a GGUF value type (0..%d)",
                           ctx->name, kv->key, type, GGUF_VTYPE_COUNT - 1);
        if ((st = parse_value(c, &ctx->arena, (enum gguf_vtype)type, &kv->val, 0))) return st;
    }
    return HY_OK;
}

HY_MUST_CHECK static enum hy_status parse_tensor_infos(struct cur *c, struct gguf_ctx *ctx)
{
    enum hy_status st;
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        struct gguf_tensor *t = &ctx->tensors[i];
        struct gguf_str name;
        cur_where(c, "tensor info %" PRIu64 " (its name)", i);
        if ((st = cur_str(c, &ctx->arena, &name))) return st;
        if (name.len == 0 || strlen(name.data) != name.len)
            return err_set(HY_ERR_FORMAT, "%s: tensor %" PRIu64 ": name is %s", ctx->name, i,
                           name.len == 0 ? "empty" : "not a string (contains a NUL byte)");
        t->name = name.data;
        cur_where(c, "tensor info %" PRIu64 " ('%s')", i, t->name);
        int64_t prev = strmap_put(&ctx->tensor_map, t->name, (int64_t)i);
        if (prev >= 0)
            return err_set(HY_ERR_FORMAT, "%s: duplicate tensor name '%s' (tensors %" PRId64 " and %" PRIu64 ")",
                           ctx->name, t->name, prev, i);
        if ((st = cur_u32(c, &t->n_dims))) return st;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return err_set(HY_ERR_FORMAT, "%s: tensor '%s': %u dimensions (must be 1..%d)",
                           ctx->name, t->name, t->n_dims, GGUF_MAX_DIMS);
        uint64_t n_el = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((st = cur_u64(c, &ne))) return st;
            if (ne > (uint64_t)INT64_MAX)
                return err_set(HY_ERR_FORMAT, "%s: tensor '%s': dimension %u is negative (%" PRId64 ")",
                               ctx->name, t->name, d, (int64_t)ne);
            if (ne != 0 && n_el > (uint64_t)INT64_MAX / ne)
                return err_set(HY_ERR_FORMAT,
                               "%s: tensor '%s': element count overflows 63 bits at dimension %u (%" PRIu64 ")",
                               ctx->name, t->name, d, ne);
            n_el *= ne;
            t->ne[d] = (int64_t)ne;
        }
        t->n_elements = n_el;
        if ((st = cur_u32(c, &t->type))) return st;
        const struct quant_traits *tr = quant_traits(t->type);
        if (!tr)
            return err_set(HY_ERR_FORMAT, "%s: tensor '%s': unknown type id %u", ctx->name, t->name, t->type);
        /* ragged rows: see GGUF_PARSE_ALLOW_RAGGED_ROWS in gguf.h */
        bool ragged_ok = (c->flags & GGUF_PARSE_ALLOW_RAGGED_ROWS) && n_el % tr->block_size == 0;
        if (t->ne[0] % tr->block_size != 0 && !ragged_ok)
            return err_set(HY_ERR_FORMAT,
                           "%s: tensor '%s': row length ne[0]=%" PRId64 " is not a multiple of the %s block size %u",
                           ctx->name, t->name, t->ne[0], tr->name, tr->block_size);
        uint64_t n_blocks = n_el / tr->block_size;
        if (n_blocks > UINT64_MAX / tr->block_bytes)
            return err_set(HY_ERR_FORMAT, "%s: tensor '%s': byte size overflows 64 bits", ctx->name, t->name);
        t->n_bytes = n_blocks * tr->block_bytes;
        if ((st = cur_u64(c, &t->offset))) return st;
    }
    return HY_OK;
}

static int cmp_by_offset(const void *a, const void *b, void *arg)
{
    const struct gguf_tensor *ts = arg;
    const struct gguf_tensor *x = &ts[*(const uint64_t *)a], *y = &ts[*(const uint64_t *)b];
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Alignment, bounds and overlaps of tensor data (needs data_off). */
HY_MUST_CHECK static enum hy_status check_tensor_data(struct gguf_ctx *ctx)
{
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        struct gguf_tensor *t = &ctx->tensors[i];
        if (t->offset % ctx->alignment != 0)
            return err_set(HY_ERR_FORMAT,
                           "%s: tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %u",
                           ctx->name, t->name, t->offset, ctx->alignment);
        if (t->offset > UINT64_MAX - ctx->data_off || t->offset + ctx->data_off > ctx->file_size ||
            t->n_bytes > ctx->file_size - (t->offset + ctx->data_off)) {
            return err_set(HY_ERR_FORMAT,
                           "%s: tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") is past the end of the file (%" PRIu64 " bytes)",
                           ctx->name, t->name,
                           t->offset > UINT64_MAX - ctx->data_off ? t->offset : ctx->data_off + t->offset,
                           t->n_bytes, ctx->file_size);
        }
        t->file_off = ctx->data_off + t->offset;
    }
    if (ctx->n_tensors < 2) return HY_OK;
    uint64_t *order = mem_xmalloc(ctx->n_tensors * sizeof(*order));
    for (uint64_t i = 0; i < ctx->n_tensors; i++) order[i] = i;
    qsort_r(order, ctx->n_tensors, sizeof(*order), cmp_by_offset, ctx->tensors);
    enum hy_status st = HY_OK;
    const struct gguf_tensor *prev = NULL;
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        const struct gguf_tensor *t = &ctx->tensors[order[i]];
        if (t->n_bytes == 0) continue;
        if (prev && prev->offset + prev->n_bytes > t->offset) {
            st = err_set(HY_ERR_FORMAT,
                         "%s: tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") overlaps tensor '%s' data [%" PRIu64
                         ", +%" PRIu64 ")", ctx->name, t->name, t->file_off, t->n_bytes, prev->name,
                         prev->file_off, prev->n_bytes);
            break;
        }
        prev = t;
    }
    free(order);
    return st;
}

HY_MUST_CHECK static enum hy_status parse_all(struct cur *c, struct gguf_ctx *ctx)
{
    enum hy_status st;
    if ((st = parse_magic_version(c, ctx))) return st;
    cur_where(c, "the header counts");
    if ((st = cur_u64(c, &ctx->n_tensors))) return st;
    if ((st = cur_u64(c, &ctx->n_kv))) return st;
    /* smallest key/value: 8-byte key length + 1 byte + 4-byte type + 1-byte value */
    if (ctx->n_kv > cur_left(c) / 14)
        return err_set(HY_ERR_FORMAT, "%s: key/value count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left",
                       ctx->name, ctx->n_kv, cur_left(c));
    /* smallest tensor info: name 8+1, n_dims 4, one dim 8, type 4, offset 8 */
    if (ctx->n_tensors > (cur_left(c) - ctx->n_kv * 14) / 33)
        return err_set(HY_ERR_FORMAT, "%s: tensor count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left",
                       ctx->name, ctx->n_tensors, cur_left(c));
    ctx->kv = mem_xcalloc((size_t)ctx->n_kv, sizeof(*ctx->kv));
    ctx->tensors = mem_xcalloc((size_t)ctx->n_tensors, sizeof(*ctx->tensors));
    strmap_init(&ctx->kv_map, (size_t)ctx->n_kv);
    strmap_init(&ctx->tensor_map, (size_t)ctx->n_tensors);

    if ((st = parse_kvs(c, ctx))) return st;

    ctx->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *al = gguf_find_kv(ctx, "general.alignment");
    if (al) {
        if (!gguf_vtype_is_int(al->val.type))
            return err_set(HY_ERR_FORMAT, "%s: key 'general.alignment' has type %s, expected UINT32",
                           ctx->name, gguf_vtype_name(al->val.type));
        int64_t v = al->val.v.i64;
        bool neg = al->val.type == GGUF_INT8 || al->val.type == GGUF_INT16 ||
                   al->val.type == GGUF_INT32 || al->val.type == GGUF_INT64;
        if ((neg && v <= 0) || !base_is_pow2(al->val.v.u64) || al->val.v.u64 > (1u << 30))
            return err_set(HY_ERR_FORMAT,
                           "%s: key 'general.alignment' is %" PRId64 " (must be a power of two, at most 2^30)",
                           ctx->name, v);
        ctx->alignment = (uint32_t)al->val.v.u64;
    }

    if ((st = parse_tensor_infos(c, ctx))) return st;
    ctx->header_bytes = c->pos;
    ctx->data_off = base_align_up(c->pos, ctx->alignment);
    return check_tensor_data(ctx);
}

enum hy_status gguf_parse(const struct gguf_source *src, struct gguf_ctx **out)
{
    return gguf_parse_flags(src, 0, out);
}

enum hy_status gguf_parse_flags(const struct gguf_source *src, unsigned flags, struct gguf_ctx **out)
{
    *out = NULL;
    struct gguf_ctx *ctx = mem_xcalloc(1, sizeof(*ctx));
    arena_init(&ctx->arena, 256 * 1024);
    ctx->name = arena_strndup(&ctx->arena, src->name ? src->name : "<gguf>",
                              strlen(src->name ? src->name : "<gguf>"));
    ctx->file_size = src->size;
    struct gguf_source named = *src;
    named.name = ctx->name;
    struct cur c = {.src = &named, .buf = mem_xmalloc(CUR_BUF_BYTES), .flags = flags};
    enum hy_status st = parse_all(&c, ctx);
    free(c.buf);
    if (st) {
        gguf_free(ctx);
        return st;
    }
    *out = ctx;
    return HY_OK;
}

enum hy_status gguf_open(const char *path, struct gguf_ctx **out)
{
    return gguf_open_flags(path, 0, out);
}

enum hy_status gguf_open_flags(const char *path, unsigned flags, struct gguf_ctx **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return err_set(HY_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
        close(fd);
        return err_set(HY_ERR_IO, "%s: not a regular file", path);
    }
    struct fd_source fs = {fd};
    struct gguf_source src = {gguf_fd_read_at, &fs, (uint64_t)sb.st_size, path};
    enum hy_status st = gguf_parse_flags(&src, flags, out);
    close(fd);
    return st;
}

void gguf_free(struct gguf_ctx *ctx)
{
    if (!ctx) return;
    free(ctx->kv);
    free(ctx->tensors);
    strmap_free(&ctx->kv_map);
    strmap_free(&ctx->tensor_map);
    arena_free(&ctx->arena);
    free(ctx);
}

/* ---- lookup ------------------------------------------------------------- */

const struct gguf_kv *gguf_find_kv(const struct gguf_ctx *ctx, const char *key)
{
    int64_t i = strmap_find(&ctx->kv_map, key);
    return i < 0 ? NULL : &ctx->kv[i];
}

int64_t gguf_find_tensor_idx(const struct gguf_ctx *ctx, const char *name)
{
    return strmap_find(&ctx->tensor_map, name);
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_ctx *ctx, const char *name)
{
    int64_t i = strmap_find(&ctx->tensor_map, name);
    return i < 0 ? NULL : &ctx->tensors[i];
}

static bool vtype_is_signed(enum gguf_vtype t)
{
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}

static enum hy_status wrong_type(const struct gguf_ctx *ctx, const char *key, enum gguf_vtype got,
                                 const char *want)
{
    return err_set(HY_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", ctx->name, key,
                   gguf_vtype_name(got), want);
}

enum hy_status gguf_get_int(const struct gguf_ctx *ctx, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = gguf_find_kv(ctx, key);
    if (!kv) return err_set(HY_ERR_FORMAT, "%s: missing key '%s'", ctx->name, key);
    if (!gguf_vtype_is_int(kv->val.type)) return wrong_type(ctx, key, kv->val.type, "an integer");
    if (!vtype_is_signed(kv->val.type) && kv->val.v.u64 > (uint64_t)INT64_MAX)
        return err_set(HY_ERR_FORMAT, "%s: key '%s' value %" PRIu64 " is too large", ctx->name, key,
                       kv->val.v.u64);
    *out = kv->val.v.i64;
    return HY_OK;
}

enum hy_status gguf_get_int_or(const struct gguf_ctx *ctx, const char *key, int64_t def, int64_t *out)
{
    if (!gguf_find_kv(ctx, key)) {
        *out = def;
        return HY_OK;
    }
    return gguf_get_int(ctx, key, out);
}

enum hy_status gguf_get_float_or(const struct gguf_ctx *ctx, const char *key, double def, double *out)
{
    const struct gguf_kv *kv = gguf_find_kv(ctx, key);
    if (!kv) {
        *out = def;
        return HY_OK;
    }
    if (kv->val.type == GGUF_FLOAT32 || kv->val.type == GGUF_FLOAT64) {
        *out = kv->val.v.f64;
        return HY_OK;
    }
    if (gguf_vtype_is_int(kv->val.type)) {
        *out = vtype_is_signed(kv->val.type) ? (double)kv->val.v.i64 : (double)kv->val.v.u64;
        return HY_OK;
    }
    return wrong_type(ctx, key, kv->val.type, "FLOAT32");
}

enum hy_status gguf_get_bool_or(const struct gguf_ctx *ctx, const char *key, bool def, bool *out)
{
    const struct gguf_kv *kv = gguf_find_kv(ctx, key);
    if (!kv) {
        *out = def;
        return HY_OK;
    }
    if (kv->val.type != GGUF_BOOL) return wrong_type(ctx, key, kv->val.type, "BOOL");
    *out = kv->val.v.b;
    return HY_OK;
}

enum hy_status gguf_get_str_or_null(const struct gguf_ctx *ctx, const char *key, const char **out)
{
    const struct gguf_kv *kv = gguf_find_kv(ctx, key);
    *out = NULL;
    if (!kv) return HY_OK;
    if (kv->val.type != GGUF_STRING) return wrong_type(ctx, key, kv->val.type, "STRING");
    *out = kv->val.v.str.data;
    return HY_OK;
}

enum hy_status gguf_get_str(const struct gguf_ctx *ctx, const char *key, const char **out)
{
    enum hy_status st = gguf_get_str_or_null(ctx, key, out);
    if (st) return st;
    if (!*out) return err_set(HY_ERR_FORMAT, "%s: missing key '%s'", ctx->name, key);
    return HY_OK;
}

enum hy_status gguf_get_arr_or_null(const struct gguf_ctx *ctx, const char *key,
                                    enum gguf_vtype elem_type, const struct gguf_array **out)
{
    const struct gguf_kv *kv = gguf_find_kv(ctx, key);
    *out = NULL;
    if (!kv) return HY_OK;
    if (kv->val.type != GGUF_ARRAY) return wrong_type(ctx, key, kv->val.type, "ARRAY");
    if (elem_type != GGUF_VTYPE_COUNT && kv->val.v.arr.elem_type != elem_type) {
        bool both_int = gguf_vtype_is_int(elem_type) && gguf_vtype_is_int(kv->val.v.arr.elem_type);
        if (!both_int)
            return err_set(HY_ERR_FORMAT, "%s: key '%s' is an array of %s, expected an array of %s",
                           ctx->name, key, gguf_vtype_name(kv->val.v.arr.elem_type),
                           gguf_vtype_name(elem_type));
    }
    *out = &kv->val.v.arr;
    return HY_OK;
}

int64_t gguf_arr_int(const struct gguf_array *arr, uint64_t i)
{
    HY_ASSERT(i < arr->n);
    switch (arr->elem_type) {
    case GGUF_UINT8: return ((const uint8_t *)arr->data)[i];
    case GGUF_INT8: return ((const int8_t *)arr->data)[i];
    case GGUF_UINT16: return ((const uint16_t *)arr->data)[i];
    case GGUF_INT16: return ((const int16_t *)arr->data)[i];
    case GGUF_UINT32: return ((const uint32_t *)arr->data)[i];
    case GGUF_INT32: return ((const int32_t *)arr->data)[i];
    case GGUF_UINT64: return (int64_t)((const uint64_t *)arr->data)[i];
    case GGUF_INT64: return ((const int64_t *)arr->data)[i];
    case GGUF_BOOL: return ((const bool *)arr->data)[i];
    default: HY_ASSERT(!"gguf_arr_int on a non-integer array"); return 0;
    }
}

double gguf_arr_float(const struct gguf_array *arr, uint64_t i)
{
    HY_ASSERT(i < arr->n);
    if (arr->elem_type == GGUF_FLOAT32) return ((const float *)arr->data)[i];
    if (arr->elem_type == GGUF_FLOAT64) return ((const double *)arr->data)[i];
    return (double)gguf_arr_int(arr, i);
}
