/*
 * Co-activation statistics (src/store/coact.c): predictions on a synthetic
 * routing with known structure, the file surviving a restart, every kind of
 * bad file ignored with exactly one warning, save errors naming the path,
 * count halving, and the model key.
 *
 * The routing: layer 0 chooses x (skewed to 0 .. 3) and x + E/2; layer l + 1
 * chooses a + 1 (mod E) for each a chosen at layer l. So the experts of l + 1
 * are determined by those of l, and within a layer x comes with x + E/2.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "store/coact.h"

#define L 6
#define E 16
#define K 2

static char tmp_dir[64];

static void route(struct rng *r, int32_t *ids)
{
    int32_t x = rng_uniform(r) < 0.7 ? (int32_t)rng_below(r, 4) : (int32_t)rng_below(r, E);
    ids[0] = x;
    ids[1] = (x + E / 2) % E;
    for (int l = 1; l < L; l++)
        for (int j = 0; j < K; j++) ids[l * K + j] = (ids[(l - 1) * K + j] + 1) % E;
}

static void observe_n(struct coact *c, int n, uint64_t seed)
{
    struct rng r;
    rng_init(&r, seed);
    int32_t ids[L * K];
    for (int t = 0; t < n; t++) {
        route(&r, ids);
        coact_observe(c, ids, K);
    }
}

/* The predictions the structure implies, for a few inputs. */
static void check_predictions(const struct coact *c)
{
    int32_t out[E];
    for (int l = 0; l + 1 < L; l++)
        for (int32_t x = 0; x < 4; x++) {
            int32_t cur[2] = {(x + l) % E, (x + l + E / 2) % E};
            int32_t n0 = (cur[0] + 1) % E, n1 = (cur[1] + 1) % E;
            /* both successors at score 2 (from cur) or 1 (from cur[0] alone:
             * its partner's successor always follows it too) */
            int n = coact_predict_next(c, l, cur, 2, out, E);
            if (CHECK_EQ_INT(n, 2))
                CHECK((out[0] == n0 && out[1] == n1) || (out[0] == n1 && out[1] == n0));
            n = coact_predict_next(c, l, cur, 1, out, E);
            if (CHECK_EQ_INT(n, 2))
                CHECK((out[0] == n0 && out[1] == n1) || (out[0] == n1 && out[1] == n0));
            CHECK_EQ_INT(coact_predict_with(c, l, cur, 1, out, E), 1);
            CHECK_EQ_INT(out[0], cur[1]);
        }
    /* layer 0 popularity: 0 .. 3 (with 8 .. 11, their partners) lead */
    int32_t pop[E];
    int n = coact_popular(c, 0, pop, 8);
    CHECK_EQ_INT(n, 8);
    for (int i = 0; i < n; i++) CHECK(pop[i] % (E / 2) < 4);
    /* max bounds the output; max 0 writes nothing */
    CHECK_EQ_INT(coact_popular(c, 0, pop, 3), 3);
    CHECK_EQ_INT(coact_popular(c, 0, pop, 0), 0);
}

/* Runs coact_open with stderr captured; returns the number of "warning:"
 * lines and copies the captured text into log. */
static int open_captured(int n_layer, int n_expert, uint64_t key, struct coact **c, char *log,
                         size_t log_n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/stderr.txt", tmp_dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    CHECK_OK(coact_open(n_layer, n_expert, key, tmp_dir, c));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len = 0;
    char *text = check_read_file(path, &len);
    int n = 0;
    for (char *s = text; s && (s = strstr(s, "warning:")) != NULL; s++) n++;
    snprintf(log, log_n, "%s", text ? text : "");
    free(text);
    return n;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!CHECK(f != NULL)) return;
    CHECK_EQ_INT(fwrite(p, 1, n, f), n);
    fclose(f);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A bad file: opens empty with one warning that names the file and says why. */
static void check_bad(const char *what, const void *bytes, size_t n, int n_layer, int n_expert,
                      uint64_t key, const char *path, const char *why)
{
    write_bytes(path, bytes, n);
    struct coact *c = NULL;
    char log[1024];
    int n_warn = open_captured(n_layer, n_expert, key, &c, log, sizeof(log));
    if (!CHECK_EQ_INT(n_warn, 1) || !CHECK_CONTAINS(log, path) || !CHECK_CONTAINS(log, why))
        fprintf(stderr, "  case: %s; log: %s\n", what, log);
    if (!c) return;
    CHECK_EQ_U64(coact_tokens(c), 0);
    int32_t out[E], cur[1] = {0};
    CHECK_EQ_INT(coact_popular(c, 0, out, E), 0);
    if (n_layer > 1) CHECK_EQ_INT(coact_predict_next(c, 0, cur, 1, out, E), 0);
    coact_close(c);
}

static void test_persist_and_corrupt(void)
{
    const uint64_t key = 0x0123456789abcdefull;
    struct coact *c = NULL;
    char log[1024];
    /* missing file: empty, silent */
    CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 0);
    if (!c) return;
    CHECK_EQ_U64(coact_tokens(c), 0);
    char want_path[128];
    snprintf(want_path, sizeof(want_path), "%s/coact-0123456789abcdef.bin", tmp_dir);
    CHECK_EQ_STR(coact_path(c), want_path);
    observe_n(c, 2000, 1);
    CHECK_EQ_U64(coact_tokens(c), 2000);
    check_predictions(c);
    CHECK_OK(coact_save(c));
    coact_close(c);

    /* reopened: same predictions and count, no warning; more tokens add up */
    CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 0);
    if (!c) return;
    CHECK_EQ_U64(coact_tokens(c), 2000);
    check_predictions(c);
    observe_n(c, 500, 2);
    CHECK_EQ_U64(coact_tokens(c), 2500);
    CHECK_OK(coact_save(c));
    coact_close(c);

    size_t n = 0;
    uint8_t *good = (uint8_t *)check_read_file(want_path, &n);
    if (!CHECK(good != NULL)) return;
    CHECK_EQ_INT(n, 40 + 4 * (L * E + L * E * E + (L - 1) * E * E) + 8);
    uint8_t *bad = malloc(n);

    memcpy(bad, good, n);
    bad[n / 2] ^= 0x10;
    check_bad("flipped byte", bad, n, L, E, key, want_path, "checksum");
    memcpy(bad, good, n);
    bad[n - 1] ^= 0x01;
    check_bad("flipped checksum", bad, n, L, E, key, want_path, "checksum");
    check_bad("truncated", good, n - 100, L, E, key, want_path, "truncated");
    check_bad("truncated to 20 bytes", good, 20, L, E, key, want_path, "too short");
    check_bad("empty", good, 0, L, E, key, want_path, "too short");
    memcpy(bad, good, n);
    bad[0] = 'X';
    check_bad("magic", bad, n, L, E, key, want_path, "magic");
    memcpy(bad, good, n);
    put_le(bad + 8, 2, 4);
    check_bad("version", bad, n, L, E, key, want_path, "version 2");
    /* the same key with another shape: the model changed under its name */
    check_bad("shape", good, n, L, E / 2, key, want_path, "shape 6 layers x 16 experts");
    check_bad("shape", good, n, L - 1, E, key, want_path, "shape 6 layers x 16 experts");
    memcpy(bad, good, n);
    put_le(bad + 24, key ^ 1, 8);
    put_le(bad + n - 8, fnv1a(bad, n - 8), 8);
    check_bad("key", bad, n, L, E, key, want_path, "model key");
    memcpy(bad, good, n);
    put_le(bad + 40, 0xffffffffu, 4);
    put_le(bad + n - 8, fnv1a(bad, n - 8), 8);
    check_bad("count", bad, n, L, E, key, want_path, "out of range");

    /* a bad file is overwritten by the next save */
    CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 1);
    if (c) {
        observe_n(c, 10, 3);
        CHECK_OK(coact_save(c));
        coact_close(c);
        CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 0);
        if (c) CHECK_EQ_U64(coact_tokens(c), 10);
        coact_close(c);
    }

    /* halving: pop[0][x] one below the halving point; one more use of x at
     * layer 0 halves every count and the predictions survive */
    memcpy(bad, good, n);
    uint32_t before = (uint32_t)get_le(bad + 40, 4);
    put_le(bad + 40, COACT_COUNT_HALVE_AT - 1, 4);
    put_le(bad + n - 8, fnv1a(bad, n - 8), 8);
    write_bytes(want_path, bad, n);
    CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 0);
    if (c) {
        int32_t ids[L * K];
        for (int l = 0; l < L; l++) {
            ids[l * K] = (int32_t)l;
            ids[l * K + 1] = (int32_t)(l + E / 2);
        }
        coact_observe(c, ids, K);
        CHECK_OK(coact_save(c));
        coact_close(c);
        size_t n2 = 0;
        uint8_t *after = (uint8_t *)check_read_file(want_path, &n2);
        if (CHECK(after != NULL) && CHECK_EQ_INT(n2, n)) {
            CHECK_EQ_U64(get_le(after + 40, 4), COACT_COUNT_HALVE_AT / 2);
            CHECK_EQ_U64(get_le(after + 44, 4), (get_le(good + 44, 4) + 0) / 2);
            CHECK(before > 0);
        }
        free(after);
        CHECK_EQ_INT(open_captured(L, E, key, &c, log, sizeof(log)), 0);
        if (c) {
            int32_t out[E], cur[1] = {5};
            CHECK_EQ_INT(coact_predict_next(c, 0, cur, 1, out, E), 2);
            CHECK_EQ_INT(out[0], 6);
            CHECK_EQ_INT(out[1], 6 + E / 2);
        }
        coact_close(c);
    }
    free(bad);
    free(good);
}

/* Ranking: score, then popularity at the predicted layer, then lower id. */
static void test_ranking(void)
{
    struct coact *c = NULL;
    if (!CHECK_OK(coact_open(2, 4, 0, NULL, &c))) return;
    static const int32_t toks[][2] = {{0, 1}, {0, 1}, {0, 1}, {0, 2}, {0, 3},
                                      {1, 3}, {1, 3}, {1, 3}, {1, 3}, {1, 3}};
    for (size_t t = 0; t < HY_ARRAY_LEN(toks); t++) coact_observe(c, toks[t], 1);
    int32_t out[4], cur[2] = {0, 1};
    /* from 0: 1 at 3/5, 2 and 3 at 1/5, 3 more popular at layer 1 */
    CHECK_EQ_INT(coact_predict_next(c, 0, cur, 1, out, 4), 3);
    CHECK(out[0] == 1 && out[1] == 3 && out[2] == 2);
    CHECK_EQ_INT(coact_predict_next(c, 0, cur, 1, out, 2), 2);
    CHECK(out[0] == 1 && out[1] == 3);
    /* from 0 and 1: 3 at 6/5, 1 at 3/5, 2 at 1/5 */
    CHECK_EQ_INT(coact_predict_next(c, 0, cur, 2, out, 4), 3);
    CHECK(out[0] == 3 && out[1] == 1 && out[2] == 2);
    /* popularity: layer 0 ties 5:5 go to the lower id */
    CHECK_EQ_INT(coact_popular(c, 0, out, 4), 2);
    CHECK(out[0] == 0 && out[1] == 1);
    CHECK_EQ_INT(coact_popular(c, 1, out, 4), 3);
    CHECK(out[0] == 3 && out[1] == 1 && out[2] == 2);
    /* k = 1: nothing chosen together; ids out of range are ignored */
    CHECK_EQ_INT(coact_predict_with(c, 0, cur, 2, out, 4), 0);
    int32_t odd[2] = {-1, 9};
    CHECK_EQ_INT(coact_predict_next(c, 0, odd, 2, out, 4), 0);
    CHECK_EQ_U64(coact_tokens(c), 10);
    coact_close(c);
}

static void test_save_errors(void)
{
    /* a regular file where a directory should be: fails even as root */
    char file[128], dir[160];
    snprintf(file, sizeof(file), "%s/not-a-dir", tmp_dir);
    write_bytes(file, "x", 1);
    snprintf(dir, sizeof(dir), "%s/sub", file);
    struct coact *c = NULL;
    if (!CHECK_OK(coact_open(2, 4, 1, dir, &c))) return;
    int32_t ids[4] = {0, 1, 2, 3};
    coact_observe(c, ids, 2);
    CHECK_STATUS(coact_save(c), HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), file);
    coact_close(c);

    /* the target path is a directory: the rename fails and names it */
    if (!CHECK_OK(coact_open(2, 4, 2, tmp_dir, &c))) return;
    CHECK_EQ_INT(mkdir(coact_path(c), 0755), 0);
    coact_observe(c, ids, 2);
    CHECK_STATUS(coact_save(c), HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), coact_path(c));
    rmdir(coact_path(c));
    coact_close(c);

    /* nested directories are created; no dir: save is a no-op */
    snprintf(dir, sizeof(dir), "%s/a/b/c", tmp_dir);
    if (!CHECK_OK(coact_open(2, 4, 3, dir, &c))) return;
    coact_observe(c, ids, 2);
    CHECK_OK(coact_save(c));
    CHECK(access(coact_path(c), R_OK) == 0);
    coact_close(c);
    if (!CHECK_OK(coact_open(2, 4, 3, NULL, &c))) return;
    CHECK_EQ_STR(coact_path(c), "");
    CHECK_OK(coact_save(c));
    coact_close(c);

    CHECK_STATUS(coact_open(0, 4, 1, NULL, &c), HY_ERR_INVALID_ARG);
    CHECK(c == NULL);
    CHECK_STATUS(coact_open(2, COACT_MAX_EXPERT + 1, 1, NULL, &c), HY_ERR_UNSUPPORTED);
}

static void test_model_key(void)
{
    char a[128], b[128];
    snprintf(a, sizeof(a), "%s/a.gguf", tmp_dir);
    snprintf(b, sizeof(b), "%s/b.gguf", tmp_dir);
    uint8_t buf[100000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 7);
    write_bytes(a, buf, sizeof(buf));
    buf[70000] ^= 1; /* past the first chunk of the hash's reads */
    write_bytes(b, buf, sizeof(buf));
    uint64_t ka = 0, kb = 0, ka2 = 0, kb2 = 0;
    CHECK_OK(coact_model_key(a, sizeof(buf), &ka));
    CHECK_OK(coact_model_key(b, sizeof(buf), &kb));
    CHECK(ka != kb);
    /* bytes past the header do not matter */
    CHECK_OK(coact_model_key(a, 70000, &ka2));
    CHECK_OK(coact_model_key(b, 70000, &kb2));
    CHECK_EQ_U64(ka2, kb2);
    char *text = check_read_file(a, NULL);
    if (CHECK(text != NULL)) CHECK_EQ_U64(ka, fnv1a((const uint8_t *)text, sizeof(buf)));
    free(text);
    uint64_t k = 0;
    CHECK_STATUS(coact_model_key(a, sizeof(buf) + 1, &k), HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), a);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.gguf", tmp_dir);
    CHECK_STATUS(coact_model_key(missing, 10, &k), HY_ERR_IO);
    CHECK_CONTAINS(err_msg(), missing);
}

int main(int argc, char **argv)
{
    (void)argc;
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/hy-test-coact-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_persist_and_corrupt();
    test_ranking();
    test_save_errors();
    test_model_key();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return check_report(argv[0]);
}
