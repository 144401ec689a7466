/*
 * Co-activation statistics: counting, prediction, the file. Design, file
 * layout and invariants in coact.h.
 */
#include "store/coact.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/mem.h"

#define COACT_MAGIC       "HYCOACT1"
#define COACT_VERSION     1u
#define COACT_HEADER_BYTES 40u
#define COACT_TRAILER_BYTES 8u

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull

struct coact {
    int n_layer;
    int n_expert;
    uint64_t model_key;
    uint64_t n_token;
    /* pop, with and trans back to back, the order of the file:
     * [L·E | L·E·E | (L−1)·E·E] counts; owned */
    uint32_t *counts;
    size_t n_counts;
    uint32_t *pop;   /* [n_layer][n_expert], into counts */
    uint32_t *with;  /* [n_layer][n_expert][n_expert], into counts */
    uint32_t *trans; /* [n_layer − 1][n_expert][n_expert], into counts */
    char *dir;       /* owned; NULL: no persistence */
    char *path;      /* owned; "" without dir */
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static size_t coact_file_bytes(const struct coact *c)
{
    return COACT_HEADER_BYTES + c->n_counts * 4 + COACT_TRAILER_BYTES;
}

/* Fills c from the file at c->path when it is valid; otherwise leaves c
 * empty, warning unless the file does not exist. */
static void coact_load(struct coact *c)
{
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            LOG_W("%s: cannot open co-activation statistics (%s); starting empty", c->path,
                  strerror(errno));
        return;
    }
    const char *why = NULL;
    char why_buf[160];
    uint8_t *buf = NULL;
    struct stat st;
    size_t want = coact_file_bytes(c);
    if (fstat(fd, &st) != 0) {
        snprintf(why_buf, sizeof(why_buf), "fstat: %s", strerror(errno));
        why = why_buf;
        goto done;
    }
    if ((uint64_t)st.st_size < COACT_HEADER_BYTES + COACT_TRAILER_BYTES) {
        snprintf(why_buf, sizeof(why_buf), "%" PRIu64 " bytes, too short for a header",
                 (uint64_t)st.st_size);
        why = why_buf;
        goto done;
    }
    /* Shape checks come before the size check, so that a file of another
     * model says so rather than "wrong size". */
    uint8_t hdr[COACT_HEADER_BYTES];
    ssize_t got = pread(fd, hdr, sizeof(hdr), 0);
    if (got != (ssize_t)sizeof(hdr)) {
        snprintf(why_buf, sizeof(why_buf), "reading the header: %s",
                 got < 0 ? strerror(errno) : "short read");
        why = why_buf;
        goto done;
    }
    if (memcmp(hdr, COACT_MAGIC, 8) != 0) {
        why = "not a co-activation file (bad magic)";
        goto done;
    }
    uint32_t version = get_u32(hdr + 8), n_layer = get_u32(hdr + 12),
             n_expert = get_u32(hdr + 16);
    uint64_t key = get_u64(hdr + 24);
    if (version != COACT_VERSION) {
        snprintf(why_buf, sizeof(why_buf), "version %" PRIu32 ", expected %u", version,
                 COACT_VERSION);
        why = why_buf;
        goto done;
    }
    if (n_layer != (uint32_t)c->n_layer || n_expert != (uint32_t)c->n_expert) {
        snprintf(why_buf, sizeof(why_buf),
                 "shape %" PRIu32 " layers x %" PRIu32 " experts, the model has %d x %d",
                 n_layer, n_expert, c->n_layer, c->n_expert);
        why = why_buf;
        goto done;
    }
    if (key != c->model_key) {
        snprintf(why_buf, sizeof(why_buf),
                 "model key %016" PRIx64 ", expected %016" PRIx64 " (another model file)", key,
                 c->model_key);
        why = why_buf;
        goto done;
    }
    if ((uint64_t)st.st_size != want) {
        snprintf(why_buf, sizeof(why_buf), "%" PRIu64 " bytes, expected %zu (truncated?)",
                 (uint64_t)st.st_size, want);
        why = why_buf;
        goto done;
    }
    buf = mem_xmalloc(want);
    size_t off = 0;
    while (off < want) {
        got = pread(fd, buf + off, want - off, (off_t)off);
        if (got <= 0) break;
        off += (size_t)got;
    }
    if (off != want) {
        snprintf(why_buf, sizeof(why_buf), "read %zu of %zu bytes: %s", off, want,
                 got < 0 ? strerror(errno) : "end of file");
        why = why_buf;
        goto done;
    }
    if (fnv1a(FNV_OFFSET, buf, want - 8) != get_u64(buf + want - 8)) {
        why = "checksum mismatch (corrupt)";
        goto done;
    }
    for (size_t i = 0; i < c->n_counts; i++) {
        uint32_t v = get_u32(buf + COACT_HEADER_BYTES + 4 * i);
        /* a count at or over the halving point cannot come from coact_save */
        if (v >= COACT_COUNT_HALVE_AT) {
            why = "count out of range (corrupt)";
            memset(c->counts, 0, c->n_counts * sizeof(*c->counts));
            goto done;
        }
        c->counts[i] = v;
    }
    c->n_token = get_u64(hdr + 32);
done:
    if (why) LOG_W("%s: ignoring co-activation statistics: %s; starting empty", c->path, why);
    free(buf);
    close(fd);
}

enum hy_status coact_open(int n_layer, int n_expert, uint64_t model_key, const char *dir,
                          struct coact **out)
{
    *out = NULL;
    if (n_layer < 1 || n_layer > 65536 || n_expert < 1)
        return err_set(HY_ERR_INVALID_ARG,
                       "co-activation statistics: %d layers x %d experts is out of range",
                       n_layer, n_expert);
    if (n_expert > COACT_MAX_EXPERT)
        return err_set(HY_ERR_UNSUPPORTED,
                       "co-activation statistics: %d experts per layer, at most %d supported",
                       n_expert, COACT_MAX_EXPERT);
    struct coact *c = mem_xcalloc(1, sizeof(*c));
    c->n_layer = n_layer;
    c->n_expert = n_expert;
    c->model_key = model_key;
    size_t le = (size_t)n_layer * (size_t)n_expert;
    size_t ee = (size_t)n_expert * (size_t)n_expert;
    c->n_counts = le + (size_t)n_layer * ee + (size_t)(n_layer - 1) * ee;
    c->counts = mem_xcalloc(c->n_counts, sizeof(*c->counts));
    c->pop = c->counts;
    c->with = c->pop + le;
    c->trans = c->with + (size_t)n_layer * ee;
    if (dir) {
        c->dir = mem_xstrdup(dir);
        size_t n = strlen(dir) + 64;
        c->path = mem_xmalloc(n);
        snprintf(c->path, n, "%s/coact-%016" PRIx64 ".bin", dir, model_key);
        coact_load(c);
    } else {
        c->path = mem_xstrdup("");
    }
    *out = c;
    return HY_OK;
}

void coact_close(struct coact *c)
{
    if (!c) return;
    free(c->counts);
    free(c->dir);
    free(c->path);
    free(c);
}

static void coact_halve(struct coact *c)
{
    for (size_t i = 0; i < c->n_counts; i++) c->counts[i] >>= 1;
}

/* Increments *v; true when it reached the halving point. */
static inline bool coact_inc(uint32_t *v)
{
    return ++*v >= COACT_COUNT_HALVE_AT;
}

void coact_observe(struct coact *c, const int32_t *ids, int k)
{
    int E = c->n_expert;
    bool full = false;
    for (int l = 0; l < c->n_layer; l++) {
        const int32_t *cur = ids + (size_t)l * (size_t)k;
        uint32_t *pop = c->pop + (size_t)l * (size_t)E;
        uint32_t *with = c->with + (size_t)l * (size_t)E * (size_t)E;
        for (int i = 0; i < k; i++) {
            int32_t a = cur[i];
            HY_ASSERT(a >= 0 && a < E);
            full |= coact_inc(&pop[a]);
            for (int j = 0; j < k; j++)
                if (cur[j] != a) full |= coact_inc(&with[(size_t)a * (size_t)E + (size_t)cur[j]]);
        }
        if (l + 1 == c->n_layer) break;
        const int32_t *next = cur + k;
        uint32_t *trans = c->trans + (size_t)l * (size_t)E * (size_t)E;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                HY_ASSERT(next[j] >= 0 && next[j] < E);
                full |= coact_inc(&trans[(size_t)cur[i] * (size_t)E + (size_t)next[j]]);
            }
    }
    c->n_token++;
    if (full) coact_halve(c);
}

/* Is expert a ranked before b? score, then popularity, then lower id. */
static bool coact_before(const double *score, const uint32_t *pop, int32_t a, int32_t b)
{
    if (score[a] != score[b]) return score[a] > score[b];
    if (pop[a] != pop[b]) return pop[a] > pop[b];
    return a < b;
}

/* The up to max experts with score > 0, best first, into out (insertion into
 * a sorted prefix: O(E · max), no allocation). */
static int coact_top(const double *score, const uint32_t *pop, int n_expert, int32_t *out,
                     int max)
{
    int n = 0;
    for (int32_t b = 0; b < n_expert; b++) {
        if (!(score[b] > 0)) continue;
        if (n == max && (max == 0 || !coact_before(score, pop, b, out[n - 1]))) continue;
        int i = n < max ? n++ : n - 1;
        while (i > 0 && coact_before(score, pop, b, out[i - 1])) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = b;
    }
    return n;
}

/* score[b] = sum over a in cur of rows[a][b] / pop[a]; excluded: the ids of
 * cur (for within-layer prediction). */
static void coact_score(const struct coact *c, const uint32_t *rows, const uint32_t *pop,
                        const int32_t *cur, int n, bool exclude_cur, double *score)
{
    int E = c->n_expert;
    for (int b = 0; b < E; b++) score[b] = 0;
    for (int i = 0; i < n; i++) {
        int32_t a = cur[i];
        if (a < 0 || a >= E || pop[a] == 0) continue;
        const uint32_t *row = rows + (size_t)a * (size_t)E;
        double inv = 1.0 / pop[a];
        for (int b = 0; b < E; b++) score[b] += row[b] * inv;
    }
    if (exclude_cur)
        for (int i = 0; i < n; i++)
            if (cur[i] >= 0 && cur[i] < E) score[cur[i]] = 0;
}

int coact_predict_next(const struct coact *c, int layer, const int32_t *cur, int n, int32_t *out,
                       int max)
{
    HY_ASSERT(layer >= 0 && layer + 1 < c->n_layer);
    double score[COACT_MAX_EXPERT];
    size_t E = (size_t)c->n_expert;
    coact_score(c, c->trans + (size_t)layer * E * E, c->pop + (size_t)layer * E, cur, n, false,
                score);
    return coact_top(score, c->pop + (size_t)(layer + 1) * E, c->n_expert, out, max);
}

int coact_predict_with(const struct coact *c, int layer, const int32_t *cur, int n, int32_t *out,
                       int max)
{
    HY_ASSERT(layer >= 0 && layer < c->n_layer);
    double score[COACT_MAX_EXPERT];
    size_t E = (size_t)c->n_expert;
    const uint32_t *pop = c->pop + (size_t)layer * E;
    coact_score(c, c->with + (size_t)layer * E * E, pop, cur, n, true, score);
    return coact_top(score, pop, c->n_expert, out, max);
}

int coact_popular(const struct coact *c, int layer, int32_t *out, int max)
{
    HY_ASSERT(layer >= 0 && layer < c->n_layer);
    double score[COACT_MAX_EXPERT];
    const uint32_t *pop = c->pop + (size_t)layer * (size_t)c->n_expert;
    for (int b = 0; b < c->n_expert; b++) score[b] = pop[b];
    return coact_top(score, pop, c->n_expert, out, max);
}

uint64_t coact_tokens(const struct coact *c)
{
    return c->n_token;
}

const char *coact_path(const struct coact *c)
{
    return c->path;
}

/* mkdir -p; HY_ERR_IO naming the component that failed. */
static enum hy_status coact_mkdirs(const char *dir)
{
    char *p = mem_xstrdup(dir);
    enum hy_status st = HY_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            st = err_set(HY_ERR_IO, "%s: cannot create the cache directory: %s", p,
                         strerror(errno));
            break;
        }
        *s = saved;
        if (saved == '\0') break;
    }
    free(p);
    if (st != HY_OK) return st;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return err_set(HY_ERR_IO, "%s: cache directory is not a directory", dir);
    return HY_OK;
}

static bool coact_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

enum hy_status coact_save(const struct coact *c)
{
    if (!c->dir) return HY_OK;
    enum hy_status st = coact_mkdirs(c->dir);
    if (st != HY_OK) return st;

    size_t n_bytes = coact_file_bytes(c);
    uint8_t *buf = mem_xmalloc(n_bytes);
    memcpy(buf, COACT_MAGIC, 8);
    put_u32(buf + 8, COACT_VERSION);
    put_u32(buf + 12, (uint32_t)c->n_layer);
    put_u32(buf + 16, (uint32_t)c->n_expert);
    put_u32(buf + 20, 0);
    put_u64(buf + 24, c->model_key);
    put_u64(buf + 32, c->n_token);
    for (size_t i = 0; i < c->n_counts; i++) put_u32(buf + COACT_HEADER_BYTES + 4 * i, c->counts[i]);
    put_u64(buf + n_bytes - 8, fnv1a(FNV_OFFSET, buf, n_bytes - 8));

    size_t tmp_n = strlen(c->path) + 32;
    char *tmp = mem_xmalloc(tmp_n);
    snprintf(tmp, tmp_n, "%s.tmp.%ld", c->path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = err_set(HY_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    /* fsync before rename: otherwise a crash can leave the new name
     * pointing at an empty file on some file systems. */
    bool ok = coact_write_all(fd, buf, n_bytes) && fsync(fd) == 0;
    int saved_errno = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved_errno = errno;
    }
    if (!ok) {
        st = err_set(HY_ERR_IO, "%s: cannot write %zu bytes: %s", tmp, n_bytes,
                     strerror(saved_errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, c->path) != 0) {
        st = err_set(HY_ERR_IO, "%s: cannot rename %s over it: %s", c->path, tmp,
                     strerror(errno));
        unlink(tmp);
        goto out;
    }
out:
    free(tmp);
    free(buf);
    return st;
}

enum hy_status coact_model_key(const char *path, uint64_t n_header_bytes, uint64_t *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum hy_status st = HY_OK;
    size_t chunk = 1u << 16;
    uint8_t *buf = mem_xmalloc(chunk);
    uint64_t h = FNV_OFFSET, off = 0;
    while (off < n_header_bytes) {
        size_t want = (size_t)HY_MIN((uint64_t)chunk, n_header_bytes - off);
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            st = err_set(HY_ERR_IO, "%s: reading the header [0, %" PRIu64 ") for its key: %s at %" PRIu64,
                         path, n_header_bytes, got < 0 ? strerror(errno) : "end of file", off);
            break;
        }
        h = fnv1a(h, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    close(fd);
    if (st == HY_OK) *key = h;
    return st;
}
