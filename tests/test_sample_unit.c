/*
 * Unit tests of the sample layer: the sampler's penalties (repeat,
 * frequency, presence; the window), the order of its truncations (top-k,
 * then top-p over what top-k kept, then min-p, then temperature), seed
 * determinism, greedy and top-k over a large vocabulary against plain scans
 * (ties, NaNs, signed zeros, block tails), sampling from the best few logits
 * against sampling from all, and the stop-string filter's hold-back.
 *
 * Expected values are worked out in the comments from the definitions in
 * src/sample/sampler.h, which follow llama.cpp's samplers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sample/sampler.h"
#include "sample/stop_filter.h"

static struct sampler_params params(float temp, uint64_t seed)
{
    struct sampler_params p = {
        .temp = temp, .top_p = 1.0f, .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = seed};
    return p;
}

/* Draws n tokens and counts them per id (ids < n_vocab <= 16). */
static void histogram(struct sampler *s, const float *logits, int n, int *hist)
{
    memset(hist, 0, sizeof(int) * 16);
    for (int i = 0; i < n; i++) hist[sampler_sample(s, logits)]++;
}

static void test_penalties(void)
{
    struct sampler s;
    /* frequency: id 0 (logit 3) seen 3 times loses 3 * 0.6 = 1.8 -> 1.2 < 1.5 (id 1) */
    const float lg[3] = {3.0f, 1.5f, 0.0f};
    struct sampler_params p = params(0.0f, 1);
    p.frequency_penalty = 0.6f;
    CHECK_OK(sampler_init(&s, 3, &p));
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    for (int i = 0; i < 3; i++) sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 1);
    sampler_free(&s);
    /* twice: 3 - 1.2 = 1.8 > 1.5: id 0 still wins; the count matters */
    CHECK_OK(sampler_init(&s, 3, &p));
    sampler_accept(&s, 0);
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    sampler_free(&s);

    /* presence: once per present id, whatever the count: 3 - 1.4 = 1.6 > 1.5
     * after any number of occurrences; 1.4 + 0.2 more would not be */
    p = params(0.0f, 1);
    p.presence_penalty = 1.4f;
    CHECK_OK(sampler_init(&s, 3, &p));
    for (int i = 0; i < 5; i++) sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    sampler_free(&s);
    p.presence_penalty = 1.6f;
    CHECK_OK(sampler_init(&s, 3, &p));
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 1);
    sampler_free(&s);

    /* the repeat penalty comes first, then frequency and presence:
     * 3.2 / 2 - 0.1 - 0.05 = 1.45 < 1.5 (id 1 wins), while the other order would
     * give (3.2 - 0.15) / 2 = 1.525 > 1.5 (id 0) */
    const float lg2[3] = {3.2f, 1.5f, 0.0f};
    p = params(0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.05f;
    CHECK_OK(sampler_init(&s, 3, &p));
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg2), 1);
    sampler_free(&s);

    /* a negative logit is multiplied by the repeat penalty: -1 * 3 = -3 < -2.5 */
    const float neg[2] = {-1.0f, -2.5f};
    p = params(0.0f, 1);
    p.repeat_penalty = 3.0f;
    CHECK_OK(sampler_init(&s, 2, &p));
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, neg), 1);
    sampler_free(&s);

    /* the window: with repeat_last_n 2, id 0 leaves it after two newer tokens,
     * and its count goes back to 0 (frequency 0.6 * 3 would make id 1 win) */
    p = params(0.0f, 1);
    p.frequency_penalty = 0.6f;
    p.repeat_last_n = 2;
    CHECK_OK(sampler_init(&s, 3, &p));
    sampler_accept(&s, 0);
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 0); /* 3 - 1.2 = 1.8 */
    sampler_accept(&s, 0);                   /* still 2 in the window */
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    sampler_accept(&s, 2);
    sampler_accept(&s, 2);
    CHECK_EQ_INT(s.count[0], 0);
    CHECK_EQ_INT(s.count[2], 2);
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    /* ids outside the vocabulary are ignored, reset forgets */
    sampler_accept(&s, -1);
    sampler_accept(&s, 3);
    CHECK_EQ_INT(s.n_recent, 2);
    sampler_reset(&s);
    CHECK_EQ_INT(s.n_recent, 0);
    CHECK_EQ_INT(s.count[2], 0);
    sampler_free(&s);

    /* repeat_last_n 0 turns all penalties off */
    p = params(0.0f, 1);
    p.frequency_penalty = 10.0f;
    p.repeat_last_n = 0;
    CHECK_OK(sampler_init(&s, 3, &p));
    sampler_accept(&s, 0);
    CHECK_EQ_INT(sampler_sample(&s, lg), 0);
    sampler_free(&s);
}

static void test_truncation_order(void)
{
    struct sampler s;
    int hist[16];
    /* probabilities 0.4, 0.3, 0.2, 0.1 */
    const float lp[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};

    /* top-p 0.75 alone keeps 0.4 + 0.3 + 0.2 (0.7 < 0.75): ids 0, 1, 2 */
    struct sampler_params p = params(1.0f, 11);
    p.top_p = 0.75f;
    CHECK_OK(sampler_init(&s, 4, &p));
    histogram(&s, lp, 3000, hist);
    CHECK(hist[0] > 0 && hist[1] > 0 && hist[2] > 0 && hist[3] == 0);
    sampler_free(&s);

    /* top-k 2 first, then top-p over the two kept (renormalised 4/7, 3/7): 4/7 = 0.571
     * < 0.75, so both stay. Top-p before top-k would have kept three, then two: the
     * same; so make top-p decide: 0.55 keeps only id 0 after top-k (4/7 >= 0.55),
     * while over all four 0.4 < 0.55 would keep ids 0 and 1 */
    p = params(1.0f, 12);
    p.top_k = 2;
    p.top_p = 0.55f;
    CHECK_OK(sampler_init(&s, 4, &p));
    histogram(&s, lp, 500, hist);
    CHECK_EQ_INT(hist[0], 500);
    sampler_free(&s);

    /* min-p after top-p, and relative to the largest probability left: top-p 0.95
     * keeps all four; min-p 0.45 keeps p >= 0.18: ids 0, 1, 2 */
    p = params(1.0f, 13);
    p.top_p = 0.95f;
    p.min_p = 0.45f;
    CHECK_OK(sampler_init(&s, 4, &p));
    histogram(&s, lp, 3000, hist);
    CHECK(hist[0] > 0 && hist[1] > 0 && hist[2] > 0 && hist[3] == 0);
    sampler_free(&s);

    /* truncation uses the untempered probabilities, temperature only reshapes what
     * is left: at temp 100 the four would be near uniform, but top-k 2 still
     * removes ids 2 and 3, and ids 0 and 1 come out about equally often */
    p = params(100.0f, 14);
    p.top_k = 2;
    CHECK_OK(sampler_init(&s, 4, &p));
    histogram(&s, lp, 4000, hist);
    CHECK(hist[2] == 0 && hist[3] == 0);
    CHECK_NEAR((double)hist[0] / 4000.0, 0.5, 0.05);
    sampler_free(&s);

    /* temperature 0.5 squares the odds: 0.4^2 : 0.3^2 : 0.2^2 : 0.1^2 = 16:9:4:1 */
    p = params(0.5f, 15);
    CHECK_OK(sampler_init(&s, 4, &p));
    int big[16] = {0};
    for (int i = 0; i < 30000; i++) big[sampler_sample(&s, lp)]++;
    CHECK_NEAR((double)big[0] / 30000.0, 16.0 / 30.0, 0.015);
    CHECK_NEAR((double)big[3] / 30000.0, 1.0 / 30.0, 0.01);
    sampler_free(&s);
}

static void test_seeds(void)
{
    struct sampler s;
    float flat[500];
    for (int i = 0; i < 500; i++) flat[i] = (float)(i % 7) * 0.1f;
    int32_t a[64], b[64], c[64];
    struct sampler_params pa = sampler_default_params(), pc;
    pa.seed = 1234;
    pc = pa;
    pc.seed = 1235;
    CHECK_OK(sampler_init(&s, 500, &pa));
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK_OK(sampler_init(&s, 500, &pa));
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK_OK(sampler_init(&s, 500, &pc));
    for (int i = 0; i < 64; i++) c[i] = sampler_sample(&s, flat);
    sampler_free(&s);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* the defaults are llama.cpp's (common/common.h) */
    struct sampler_params d = sampler_default_params();
    CHECK_NEAR(d.temp, 0.8, 1e-7);
    CHECK_EQ_INT(d.top_k, 40);
    CHECK_NEAR(d.top_p, 0.95, 1e-7);
    CHECK_NEAR(d.min_p, 0.05, 1e-7);
    CHECK_NEAR(d.repeat_penalty, 1.0, 0);
    CHECK_EQ_INT(d.repeat_last_n, 64);
    CHECK_NEAR(d.frequency_penalty, 0.0, 0);
    CHECK_NEAR(d.presence_penalty, 0.0, 0);

    /* bad parameters name themselves */
    struct sampler_params p = params(1.0f, 1);
    p.frequency_penalty = NAN;
    CHECK_STATUS(sampler_init(&s, 4, &p), HY_ERR_INVALID_ARG);
    CHECK_CONTAINS(err_msg(), "frequency penalty");
    p = params(1.0f, 1);
    p.presence_penalty = INFINITY;
    CHECK_STATUS(sampler_init(&s, 4, &p), HY_ERR_INVALID_ARG);
    CHECK_CONTAINS(err_msg(), "presence penalty");
}

/* The first index of the largest logit: a plain scan keeping the first
 * strictly larger value (sampler.h's greedy rule; a NaN never wins). */
static int32_t scan_argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

/* Fills l[0..n) by pattern: 0 spread values, 1 four values (ties), 2 signed
 * zeros and one later 0.5 or none, 3 spread with NaNs (also at 0 when nan0). */
static void fill_logits(float *l, int32_t n, int pattern, unsigned *seed, bool nan0)
{
    for (int32_t i = 0; i < n; i++) {
        const int r = rand_r(seed);
        switch (pattern) {
        case 0:
            l[i] = (float)(r % 100000) * 1e-3f - 50.0f;
            break;
        case 1:
            l[i] = (float)(r % 4);
            break;
        case 2:
            l[i] = r % 2 ? 0.0f : -0.0f;
            break;
        default:
            l[i] = r % 37 == 0 ? NAN : (float)(r % 1000) * 0.01f;
            break;
        }
    }
    if (pattern == 2 && rand_r(seed) % 2) l[rand_r(seed) % n] = 0.5f;
    if (nan0) l[0] = NAN;
}

/* Greedy over a large vocabulary is the plain scan's choice, with and
 * without penalties (applied to a copy here as sampler.h defines them), for
 * sizes around the sampler's blocks of 16; top-k then a near-uniform draw
 * (temperature 1e4) picks exactly the k best by (logit, lower id): with four
 * distinct values most of the k are ties broken by id. */
static void test_large_vocab(void)
{
    static const int32_t sizes[] = {1, 15, 16, 17, 33, 4099, 50003};
    unsigned seed = 77;
    float *l = malloc(50003 * sizeof *l), *pen = malloc(50003 * sizeof *pen);
    CHECK(l && pen);
    if (!l || !pen) goto out;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int pattern = 0; pattern < 4; pattern++)
            for (int nan0 = 0; nan0 < 2; nan0++) {
                const int32_t n = sizes[si];
                fill_logits(l, n, pattern, &seed, nan0);
                struct sampler s;
                struct sampler_params p = params(0.0f, 1);
                CHECK_OK(sampler_init(&s, n, &p));
                CHECK_EQ_INT(sampler_sample(&s, l), scan_argmax(l, n));
                sampler_free(&s);

                /* penalties: ids 0, n/2 (twice) and n - 1 in the window */
                p.repeat_penalty = 1.5f;
                p.frequency_penalty = 0.25f;
                CHECK_OK(sampler_init(&s, n, &p));
                const int32_t seen[4] = {0, n / 2, n / 2, n - 1};
                memcpy(pen, l, (size_t)n * sizeof *pen);
                for (int k = 0; k < 4; k++) sampler_accept(&s, seen[k]);
                for (int k = 0; k < 4; k++) { /* once per distinct id, by its count */
                    int cnt = 0, dup = 0;
                    for (int j = 0; j < 4; j++)
                        if (seen[j] == seen[k]) {
                            cnt++;
                            dup |= j < k;
                        }
                    if (dup) continue;
                    float *v = &pen[seen[k]];
                    *v = *v <= 0.0f ? *v * 1.5f : *v / 1.5f;
                    *v -= (float)cnt * 0.25f;
                }
                CHECK_EQ_INT(sampler_sample(&s, l), scan_argmax(pen, n));
                sampler_free(&s);

                if (pattern != 1 || nan0 || n < 64) continue;
                /* top-k 7 over four values: the 7 lowest ids holding value 3 */
                int32_t want[7], nw = 0;
                for (int32_t i = 0; i < n && nw < 7; i++)
                    if (l[i] == 3.0f) want[nw++] = i;
                CHECK_EQ_INT(nw, 7);
                p = params(1e4f, 5);
                p.top_k = 7;
                CHECK_OK(sampler_init(&s, n, &p));
                int got[7] = {0}, other = 0;
                for (int d = 0; d < 700; d++) {
                    const int32_t id = sampler_sample(&s, l);
                    int k = 0;
                    while (k < 7 && want[k] != id) k++;
                    if (k < 7)
                        got[k]++;
                    else
                        other++;
                }
                CHECK_EQ_INT(other, 0);
                for (int k = 0; k < 7; k++) CHECK(got[k] > 0);
                sampler_free(&s);
            }
out:
    free(l);
    free(pen);
}

/* The order of sampler.h's candidates (and the top_k op's): descending
 * logit, ties to the lower id; -0 equals +0. */
static const float *cand_logits;
static int by_logit(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const float lx = cand_logits[x], ly = cand_logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* Sampling from the k best logits alone (what a GPU brings down) picks what
 * sampling from all of them picks, draw by draw from one seed: greedy and
 * top-k with top-p, min-p and temperature, with and without penalties that
 * lower logits (then k grows by the window: the draws' own tokens, accepted,
 * fill it), over spread values, four values (ties broken by id) and signed
 * zeros; sampler_top_needed asks for all of them where a penalty can raise
 * a logit or no top-k cuts the candidates. */
static void test_top_candidates(void)
{
    static const int32_t sizes[] = {1, 17, 4099, 50003};
    unsigned seed = 91;
    float *l = malloc(50003 * sizeof *l), *vals = malloc(50003 * sizeof *vals);
    int32_t *order = malloc(50003 * sizeof *order);
    CHECK(l && vals && order);
    if (!l || !vals || !order) goto out;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int pattern = 0; pattern < 3; pattern++)
            for (int cfg = 0; cfg < 6; cfg++) {
                const int32_t n = sizes[si];
                fill_logits(l, n, pattern, &seed, false);
                for (int32_t i = 0; i < n; i++) order[i] = i;
                cand_logits = l;
                qsort(order, (size_t)n, sizeof *order, by_logit);
                for (int32_t i = 0; i < n; i++) vals[i] = l[order[i]];
                const bool greedy = cfg == 0 || cfg == 4, pen = cfg >= 4;
                struct sampler_params p = params(greedy ? 0.0f : 0.8f, 3 + (uint64_t)cfg);
                p.top_k = cfg == 1 ? 1 : cfg == 2 || cfg == 5 ? 5 : 40;
                p.top_p = cfg == 3 ? 0.95f : 1.0f;
                p.min_p = cfg == 3 ? 0.05f : 0.0f;
                if (pen) {
                    p.repeat_penalty = 1.3f;
                    p.frequency_penalty = 0.2f;
                    p.presence_penalty = 0.1f;
                    p.repeat_last_n = 8;
                }
                struct sampler a, b;
                CHECK_OK(sampler_init(&a, n, &p));
                CHECK_OK(sampler_init(&b, n, &p));
                int32_t k = sampler_top_needed(&b, 256);
                CHECK_EQ_INT(k, greedy ? 1 : p.top_k <= n ? p.top_k : 0);
                for (int d = 0; d < 64 && k > 0; d++) {
                    const int32_t ia = sampler_sample(&a, l);
                    const int32_t ib = sampler_sample_top(&b, order, vals, k);
                    CHECK_EQ_INT(ib, ia);
                    if (ib != ia) break;
                    sampler_accept(&a, ia);
                    sampler_accept(&b, ib);
                    const int32_t want = (greedy ? 1 : p.top_k) + (pen ? HY_MIN(d + 1, 8) : 0);
                    k = sampler_top_needed(&b, 256);
                    CHECK_EQ_INT(k, want <= n ? want : 0);
                }
                if (!pen) CHECK_EQ_INT(sampler_top_needed(&b, p.top_k - 1), greedy ? 1 : 0);
                sampler_free(&a);
                sampler_free(&b);
            }
    /* penalties that may raise a logit, once a token is in their window, or
     * no top-k: all; lowering ones: one more per token in the window */
    struct sampler s;
    struct sampler_params p = params(0.0f, 1);
    p.repeat_penalty = 0.9f;
    CHECK_OK(sampler_init(&s, 100, &p));
    CHECK_EQ_INT(sampler_top_needed(&s, 256), 1);
    sampler_accept(&s, 7);
    CHECK_EQ_INT(sampler_top_needed(&s, 256), 0);
    sampler_free(&s);
    p = params(0.0f, 1);
    p.repeat_penalty = 1.1f;
    p.presence_penalty = -0.5f;
    CHECK_OK(sampler_init(&s, 100, &p));
    sampler_accept(&s, 7);
    CHECK_EQ_INT(sampler_top_needed(&s, 256), 0);
    sampler_free(&s);
    p = params(0.0f, 1);
    p.repeat_penalty = 1.1f;
    CHECK_OK(sampler_init(&s, 100, &p));
    sampler_accept(&s, 7);
    sampler_accept(&s, 7);
    CHECK_EQ_INT(sampler_top_needed(&s, 256), 3);
    CHECK_EQ_INT(sampler_top_needed(&s, 2), 0);
    sampler_free(&s);
    p = params(0.8f, 1);
    p.top_k = 0;
    CHECK_OK(sampler_init(&s, 100, &p));
    CHECK_EQ_INT(sampler_top_needed(&s, 256), 0);
    sampler_free(&s);
out:
    free(l);
    free(vals);
    free(order);
}

/* Pushes pieces through a filter; returns what was printed and whether a stop hit. */
static bool filter(const char *const *stops, int n_stops, const char *const *pieces, int n,
                   char *printed, size_t cap)
{
    struct stop_filter sf;
    printed[0] = '\0';
    if (!CHECK_OK(stop_filter_init(&sf, stops, n_stops, 8))) return false;
    size_t len = 0;
    bool hit = false;
    const char *out;
    size_t n_out;
    for (int i = 0; i < n && !hit; i++) {
        hit = stop_filter_push(&sf, pieces[i], strlen(pieces[i]), &out, &n_out);
        CHECK(len + n_out < cap);
        memcpy(printed + len, out, n_out);
        len += n_out;
    }
    if (!hit) {
        stop_filter_flush(&sf, &out, &n_out);
        memcpy(printed + len, out, n_out);
        len += n_out;
    }
    printed[len] = '\0';
    stop_filter_free(&sf);
    return hit;
}

static void test_stop_filter(void)
{
    char buf[256];
    const char *stops[] = {"END", "\n\n"};
    /* a stop string across pieces: nothing of it is printed, nor what follows */
    const char *p1[] = {"Hello E", "N", "D tail", "more"};
    CHECK(filter(stops, 2, p1, 4, buf, sizeof buf));
    CHECK_EQ_STR(buf, "Hello ");
    /* held back while it could still become a stop string */
    struct stop_filter sf;
    const char *out;
    size_t n_out;
    if (CHECK_OK(stop_filter_init(&sf, stops, 2, 8))) {
        CHECK(!stop_filter_push(&sf, "abcE", 4, &out, &n_out));
        CHECK_EQ_INT(n_out, 3);
        CHECK(memcmp(out, "abc", 3) == 0);
        CHECK(!stop_filter_push(&sf, "N", 1, &out, &n_out));
        CHECK_EQ_INT(n_out, 0);
        /* it did not become one: out it comes, with the rest */
        CHECK(!stop_filter_push(&sf, "x", 1, &out, &n_out));
        CHECK_EQ_INT(n_out, 3);
        CHECK(memcmp(out, "ENx", 3) == 0);
        stop_filter_free(&sf);
    }
    /* no stop string: everything comes out, the held tail at the end */
    const char *p2[] = {"one\n", "two E"};
    CHECK(!filter(stops, 2, p2, 2, buf, sizeof buf));
    CHECK_EQ_STR(buf, "one\ntwo E");
    /* the earliest of several stop strings wins */
    const char *p3[] = {"a\n\nbEND"};
    CHECK(filter(stops, 2, p3, 1, buf, sizeof buf));
    CHECK_EQ_STR(buf, "a");
    /* a push longer than announced grows the buffer */
    const char *p4[] = {"0123456789abcdefghijklmnopqrstuvwxyzEN", "D"};
    CHECK(filter(stops, 2, p4, 2, buf, sizeof buf));
    CHECK_EQ_STR(buf, "0123456789abcdefghijklmnopqrstuvwxyz");
    /* without stop strings the filter passes everything through */
    const char *p5[] = {"x", "y"};
    CHECK(!filter(NULL, 0, p5, 2, buf, sizeof buf));
    CHECK_EQ_STR(buf, "xy");
    /* an empty stop string is refused */
    const char *empty[] = {"ok", ""};
    CHECK_STATUS(stop_filter_init(&sf, empty, 2, 8), HY_ERR_INVALID_ARG);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_penalties();
    test_truncation_order();
    test_seeds();
    test_large_vocab();
    test_top_candidates();
    test_stop_filter();
    return check_report(argv[0]);
}
