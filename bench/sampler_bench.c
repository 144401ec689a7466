/*
 * sampler_bench: the time sampler_sample takes for one token, per sampler
 * setting, over a vocabulary of llama-3's size by default. On a GPU a token's
 * forward pass can take about a millisecond; the sampler runs between two of
 * them while the GPU waits, so its time is a share of every token's.
 *
 *   sampler_bench [--vocab N (128256)] [--reps N (2000)]
 *
 * Logits: a sum of six uniform draws per id (a bell shape, as real logits
 * roughly are), one of them changed before each sample so that no result is
 * reused; 64 accepted tokens in the penalty window. Prints a markdown table
 * of microseconds per token (the median of 9 rounds of --reps / 9 samples).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/timing.h"
#include "sample/sampler.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int32_t n = 128256;
    int reps = 2000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: sampler_bench [--vocab N (128256)] [--reps N (2000)]\n");
            return 2;
        }
    }
    if (n < 1 || reps < 9) {
        fprintf(stderr, "sampler_bench: --vocab must be >= 1 and --reps >= 9\n");
        return 2;
    }
    float *l = malloc((size_t)n * sizeof *l);
    if (!l) return 1;
    struct rng r;
    rng_init(&r, 1);
    for (int32_t i = 0; i < n; i++) {
        double u = 0;
        for (int k = 0; k < 6; k++) u += rng_uniform(&r);
        l[i] = (float)(3.0 * (u - 3.0));
    }
    static const char *const names[] = {
        "greedy (temp 0)",
        "greedy, repeat penalty 1.1",
        "defaults (temp 0.8, top-k 40, top-p 0.95, min-p 0.05)",
        "defaults, repeat penalty 1.1",
    };
    printf("| sampler (vocabulary %d) | us per token |\n| --- | ---: |\n", (int)n);
    for (int mode = 0; mode < 4; mode++) {
        struct sampler_params p = sampler_default_params();
        if (mode < 2) p.temp = 0.0f;
        if (mode % 2) p.repeat_penalty = 1.1f;
        struct sampler s;
        if (sampler_init(&s, n, &p)) return 1;
        for (int i = 0; i < 64; i++) sampler_accept(&s, (int32_t)((i * 7919) % n));
        double t[9];
        volatile int32_t sink = 0;
        for (int round = 0; round < 9; round++) {
            const int per = reps / 9;
            const int64_t t0 = timing_now_us();
            for (int i = 0; i < per; i++) {
                l[(size_t)(i * 131) % (size_t)n] += 1e-3f;
                sink += sampler_sample(&s, l);
            }
            t[round] = (double)(timing_now_us() - t0) / per;
        }
        qsort(t, 9, sizeof t[0], cmp_double);
        printf("| %s | %.1f |\n", names[mode], t[4]);
        sampler_free(&s);
    }
    free(l);
    return 0;
}
