/*
 * moe_policy MODEL [N_TOKENS] [SEED]
 *
 * Records the routing of an MoE model over N_TOKENS generated tokens (a short
 * prompt, then sampling at temperature 1 with SEED, so the text wanders as a
 * real conversation does) and replays it through the expert cache's eviction
 * policies at several cache sizes: the hit rate of the recency+frequency
 * policy against plain LRU, against the same policy over every use of an
 * expert (expert_history: what the CUDA backend's VRAM cache weighs) and
 * against a cache that knows the future (Belady's rule: the bound no policy
 * passes), as markdown rows. With MOE_POLICY_TIER=CAP_ALL:N_WHOLE:CAP_REST (expert
 * counts) also a GPU tier: layers [0, N_WHOLE) held whole and a cache of
 * CAP_REST over the others, against a cache of CAP_ALL over all layers,
 * where only a share of the misses is cached (expert_tier_simulate). Also prints how often a token
 * repeats the previous token's experts and how much the busiest experts take,
 * to say what kind of routing it was.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/err.h"
#include "model/route_trace.h"
#include "store/expert_policy.h"

/* The expert of the trace's access i (token i / (L K), layer (i / K) % L)
 * as one key over all layers. */
static size_t trace_key(const int32_t *trace, size_t i, int L, int K, int E)
{
    return (i / (size_t)K) % (size_t)L * (size_t)E + (size_t)trace[i];
}

/* The hit rate of a cache of cap experts that knows the future (Belady's
 * rule): on a miss with the cache full it evicts the expert whose next pick
 * comes last (never: first), an expert of the route being served excepted.
 * No policy of the same size can hit more often on this trace: the bound
 * against which LRU and LRFU are read. -1: out of memory. */
static double belady_simulate(int cap, const int32_t *trace, int n_tok, int L, int K, int E)
{
    const size_t n = (size_t)n_tok * (size_t)L * (size_t)K, n_keys = (size_t)L * (size_t)E;
    size_t *next = malloc(n * sizeof *next), *seen = malloc(n_keys * sizeof *seen);
    int32_t *holds = malloc((size_t)cap * sizeof *holds);
    char *in = calloc(n_keys, 1);
    if (!next || !seen || !holds || !in) {
        free(next), free(seen), free(holds), free(in);
        return -1;
    }
    /* next[i]: the access of the same expert after access i (n: none) */
    for (size_t k = 0; k < n_keys; k++) seen[k] = n;
    for (size_t i = n; i-- > 0;) {
        const size_t key = trace_key(trace, i, L, K, E);
        next[i] = seen[key];
        seen[key] = i;
    }
    /* the next use of a key held: refreshed at each of its accesses */
    size_t *nu = seen; /* reused: n_keys entries */
    int used = 0;
    uint64_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t route = i / (size_t)K * (size_t)K;
        const size_t key = trace_key(trace, i, L, K, E);
        nu[key] = next[i];
        if (in[key]) {
            hits++;
            continue;
        }
        int v = -1;
        if (used < cap) {
            v = used++;
        } else {
            size_t far = 0;
            for (int e = 0; e < cap; e++) {
                const size_t h = (size_t)holds[e];
                bool current = false; /* picked by the route being served */
                for (size_t j = route; j < route + (size_t)K; j++)
                    current |= trace_key(trace, j, L, K, E) == h;
                if (current) continue;
                if (v < 0 || nu[h] > far) {
                    v = e;
                    far = nu[h];
                }
            }
            if (v < 0) continue; /* cap < K: served without caching */
            in[holds[v]] = 0;
        }
        holds[v] = (int32_t)key;
        in[key] = 1;
    }
    free(next), free(seen), free(holds), free(in);
    return (double)hits / (double)n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: moe_policy MODEL [N_TOKENS] [SEED]\n");
        return 2;
    }
    const int n_tok = argc > 2 ? atoi(argv[2]) : 400;
    const uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    struct route_trace tr;
    if (route_trace_record(argv[1], n_tok, seed, 2, &tr)) {
        fprintf(stderr, "moe_policy: %s\n", err_msg());
        return 1;
    }
    const int L = tr.n_layer, E = tr.n_expert, K = tr.k;
    const int32_t *trace = tr.ids;
    printf("model %s: %d layers, top-%d of %d; %d tokens; %.0f%% of picks repeat the previous token's\n\n",
           argv[1], L, K, E, n_tok, 100.0 * route_trace_repeat_share(&tr));
    printf(
        "| cache (share of all experts) | LRU hit rate | LRFU hit rate (half-life %.0f tokens) | "
        "LRFU over every use (expert_history) | the future known (Belady) |\n",
        EXPERT_POLICY_HALF_LIFE_TOKENS);
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    const double shares[] = {0.125, 0.25, 0.375, 0.5, 0.75};
    for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
        int cap = (int)(shares[i] * L * E + 0.5);
        if (cap < K) cap = K;
        double lru = expert_policy_simulate(EXPERT_POLICY_LRU, cap, EXPERT_POLICY_HALF_LIFE_TOKENS,
                                            trace, n_tok, L, K, E);
        double lrfu = expert_policy_simulate(EXPERT_POLICY_LRFU, cap, EXPERT_POLICY_HALF_LIFE_TOKENS,
                                             trace, n_tok, L, K, E);
        double hist =
            expert_history_simulate(cap, EXPERT_POLICY_HALF_LIFE_TOKENS, trace, n_tok, L, K, E);
        double opt = belady_simulate(cap, trace, n_tok, L, K, E);
        if (opt < 0) {
            fprintf(stderr, "moe_policy: out of memory replaying %d tokens\n", n_tok);
            route_trace_free(&tr);
            return 1;
        }
        printf("| %d (%.1f%%) | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", cap, 100.0 * shares[i],
               100 * lru, 100 * lrfu, 100 * hist, 100 * opt);
    }
    if (getenv("MOE_POLICY_SWEEP")) {
        printf("\nhalf-life sweep (LRFU hit rate at 25%% / 50%%):\n");
        const double hls[] = {0.5, 1, 2, 4, 8, 16, 32, 64, 256};
        for (size_t h = 0; h < sizeof hls / sizeof hls[0]; h++) {
            double a = expert_policy_simulate(EXPERT_POLICY_LRFU, (int)(0.25 * L * E + 0.5), hls[h], trace, n_tok, L, K, E);
            double b = expert_policy_simulate(EXPERT_POLICY_LRFU, (int)(0.5 * L * E + 0.5), hls[h], trace, n_tok, L, K, E);
            printf("  %6.1f: %.1f%% / %.1f%%\n", hls[h], 100 * a, 100 * b);
        }
    }
    const char *tier = getenv("MOE_POLICY_TIER");
    int cap_all = 0, n_whole = 0, cap_rest = 0;
    if (tier && sscanf(tier, "%d:%d:%d", &cap_all, &n_whole, &cap_rest) == 3 && cap_all >= 0 &&
        n_whole >= 0 && n_whole <= L && cap_rest >= 0) {
        printf(
            "\nA GPU tier (the share of all picks held there): layers [0, %d) whole and a cache of"
            " %d experts over the rest, against a cache of %d over all layers; a miss cached with"
            " the probability on the left (the copies; the CPU's experts are not):\n\n",
            n_whole, cap_rest, cap_all);
        printf(
            "| misses cached | whole + cache, LRU | whole + cache, keyed LRFU | cache alone, LRU |"
            " cache alone, keyed LRFU |\n| ---: | ---: | ---: | ---: | ---: |\n");
        const double admits[] = {1.0, 0.5, 0.3, 0.15};
        for (size_t i = 0; i < sizeof admits / sizeof admits[0]; i++) {
            double v[4];
            for (int j = 0; j < 4; j++) {
                const struct expert_tier_sim c = {.kind = EXPERT_POLICY_LRU,
                                                  .keyed = j % 2 == 1,
                                                  .capacity = j < 2 ? cap_rest : cap_all,
                                                  .n_whole = j < 2 ? n_whole : 0,
                                                  .half_life = EXPERT_POLICY_HALF_LIFE_TOKENS,
                                                  .admit = admits[i],
                                                  .seed = seed};
                v[j] = expert_tier_simulate(&c, trace, n_tok, L, K, E);
            }
            printf("| %.2f | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", admits[i], 100 * v[0],
                   100 * v[1], 100 * v[2], 100 * v[3]);
        }
    }
    route_trace_free(&tr);
    return 0;
}
