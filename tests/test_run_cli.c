/*
 * The `hypura run` and `hypura perplexity` commands as a user runs them
 * (the binary is spawned; stdout and stderr are captured apart):
 *
 *  - `run --temp 0` on llama-F16.gguf prints exactly greedy.jsonl's
 *    expected_text on stdout (nothing else: no prompt, no newline, no logs),
 *    with every KV cache type, with the prompt from -p or -f;
 *  - --stats-json writes one valid JSON object with the documented fields;
 *  - --stop ends the text before the first occurrence of any stop string,
 *    which is not printed, and the run still exits 0;
 *  - bad flags exit 2 with an "error:" line on stderr and nothing on stdout;
 *  - `perplexity` ends its stdout with "Final estimate: PPL = X +/- Y", X
 *    within 1 % of ppl.jsonl's value.
 *
 * Expected texts and values are read from ../shared/testdata/synth.
 */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#ifndef HY_TESTDATA_DIR
#error "HY_TESTDATA_DIR must be defined (tests/CMakeLists.txt does)"
#endif
#ifndef HY_HYPURA_BIN
#error "HY_HYPURA_BIN must be defined (tests/CMakeLists.txt does)"
#endif

#define SYNTH HY_TESTDATA_DIR "/synth/"
#define MODEL SYNTH "llama-F16.gguf"

struct result {
    int rc;    /* exit code; -1 when it did not exit normally */
    char *out; /* stdout, NUL-terminated (free) */
    char *err; /* stderr */
    size_t out_len;
};

/* Runs hypura with args (NULL-terminated, without argv[0]). */
static struct result run(const char *const *args)
{
    struct result r = {-1, NULL, NULL, 0};
    const char *out_path = "run-cli.out", *err_path = "run-cli.err";
    const char *argv[64] = {HY_HYPURA_BIN};
    int n = 1;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0) _exit(126);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(HY_HYPURA_BIN, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    if (CHECK(pid > 0) && CHECK(waitpid(pid, &status, 0) == pid))
        r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = check_read_file(out_path, &r.out_len);
    r.err = check_read_file(err_path, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    remove(out_path);
    remove(err_path);
    return r;
}

static void result_free(struct result *r)
{
    free(r->out);
    free(r->err);
}

/* The first llama-F16 case of greedy.jsonl (a new reference; json_decref it). */
static json_t *greedy_case(void)
{
    char *txt = check_read_file(SYNTH "greedy.jsonl", NULL);
    if (!CHECK(txt != NULL)) return NULL;
    json_t *found = NULL;
    for (char *line = txt; line && *line && !found;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        const char *model = json_string_value(json_object_get(j, "model"));
        if (model && strcmp(model, "llama-F16.gguf") == 0)
            found = j;
        else
            json_decref(j);
        line = nl ? nl + 1 : NULL;
    }
    free(txt);
    CHECK(found != NULL);
    return found;
}

static void test_greedy_text(const char *prompt, const char *n_predict, const char *want)
{
    const char *kv_types[] = {"f16", "f32", "q8_0"};
    for (size_t i = 0; i < HY_ARRAY_LEN(kv_types); i++) {
        const char *args[] = {"run", "-m", MODEL, "-p", prompt, "-n",        n_predict,   "--temp",
                              "0",   "-t", "2",   "-c", "256",  "--kv-type", kv_types[i], NULL};
        struct result r = run(args);
        CHECK_EQ_INT(r.rc, 0);
        if (!CHECK_EQ_STR(r.out, want)) fprintf(stderr, "  --kv-type %s\n", kv_types[i]);
        CHECK_CONTAINS(r.err, "mode resident");
        CHECK_CONTAINS(r.err, "summary:");
        result_free(&r);
    }
    /* the prompt from a file with a trailing newline (dropped, as llama.cpp's -f) */
    const char *path = "run-cli-prompt.txt";
    FILE *f = fopen(path, "wb");
    if (CHECK(f != NULL)) {
        fprintf(f, "%s\n", prompt);
        fclose(f);
        const char *args[] = {"run",    "-m", MODEL, "-f", path, "-n",  n_predict,
                              "--temp", "0",  "-t",  "2",  "-c", "256", NULL};
        struct result r = run(args);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_EQ_STR(r.out, want);
        result_free(&r);
        remove(path);
    }
}

static void test_stats_json(const char *prompt, const char *n_predict)
{
    const char *path = "run-cli-stats.json";
    const char *args[] = {"run", "-m", MODEL, "-p", prompt, "-n",           n_predict, "--temp",
                          "0",   "-t", "2",   "-c", "256",  "--stats-json", path,      NULL};
    struct result r = run(args);
    CHECK_EQ_INT(r.rc, 0);
    result_free(&r);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!CHECK(j != NULL && json_is_object(j))) {
        fprintf(stderr, "  %s: %s\n", path, j ? "not an object" : e.text);
        json_decref(j);
        return;
    }
    CHECK_EQ_STR(json_string_value(json_object_get(j, "mode")), "resident");
    const json_t *n_prompt = json_object_get(j, "n_prompt"), *n_gen = json_object_get(j, "n_gen");
    CHECK(json_is_integer(n_prompt) && json_integer_value(n_prompt) > 1);
    CHECK(json_is_integer(n_gen) && json_integer_value(n_gen) == atoi(n_predict));
    const char *positive[] = {"prompt_tok_per_s", "gen_tok_per_s", "peak_rss_bytes", "bytes_read"};
    for (size_t i = 0; i < HY_ARRAY_LEN(positive); i++) {
        const json_t *v = json_object_get(j, positive[i]);
        if (!CHECK(json_is_number(v) && json_number_value(v) > 0))
            fprintf(stderr, "  field %s missing or not positive\n", positive[i]);
    }
    CHECK(json_is_integer(json_object_get(j, "peak_rss_bytes")));
    const char *present[] = {"disk_gb_per_s",           "io_stall_s",       "gen_io_stall_s",
                             "predicted_gen_tok_per_s", "ram_budget_bytes", "resident_bytes"};
    for (size_t i = 0; i < HY_ARRAY_LEN(present); i++)
        if (!CHECK(json_is_number(json_object_get(j, present[i]))))
            fprintf(stderr, "  field %s missing\n", present[i]);
    const json_t *bpt = json_object_get(j, "bytes_read_per_token");
    CHECK(json_is_number(bpt) && json_number_value(bpt) >= 0);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "kv_type")), "F16");
    json_decref(j);
    remove(path);
}

/* want_len: bytes of the expected text before the stop string (-1: no stop). */
static void check_stop(const char *prompt, const char *n_predict, const char *const *stops,
                       int n_stops, const char *full, int want_len)
{
    const char *args[32] = {"run",    "-m", MODEL, "-p", prompt, "-n", n_predict,
                            "--temp", "0",  "-t",  "2",  "-c",   "256"};
    int n = 13;
    for (int i = 0; i < n_stops; i++) {
        args[n++] = "--stop";
        args[n++] = stops[i];
    }
    args[n] = NULL;
    struct result r = run(args);
    CHECK_EQ_INT(r.rc, 0);
    const size_t len = want_len < 0 ? strlen(full) : (size_t)want_len;
    if (!CHECK(r.out_len == len && memcmp(r.out, full, len) == 0))
        fprintf(stderr, "  stop \"%s\": got \"%s\"\n", stops[0], r.out);
    if (want_len >= 0) CHECK_CONTAINS(r.err, "stopped at a stop string");
    result_free(&r);
}

static void test_stop(const char *prompt, const char *n_predict, const char *full)
{
    /* a stop string from the middle of the text, spanning token pieces */
    const size_t len = strlen(full);
    char mid[8];
    memcpy(mid, full + len / 2, 5);
    mid[5] = '\0';
    const int at = (int)(strstr(full, mid) - full);
    const char *s1[] = {mid};
    check_stop(prompt, n_predict, s1, 1, full, at);
    /* several: the earliest occurrence wins, whichever string it is */
    char early[8];
    memcpy(early, full + len / 4, 4);
    early[4] = '\0';
    const char *s2[] = {mid, early};
    const int at2 = (int)(strstr(full, early) - full);
    check_stop(prompt, n_predict, s2, 2, full, at2 < at ? at2 : at);
    /* at the very start: nothing printed */
    char first[4];
    memcpy(first, full, 3);
    first[3] = '\0';
    const char *s3[] = {first};
    check_stop(prompt, n_predict, s3, 1, full, 0);
    /* never occurring: all of it */
    const char *s4[] = {"\x01never\x02"};
    check_stop(prompt, n_predict, s4, 1, full, -1);
}

static void test_bad_flags(void)
{
    const char *cases[][8] = {
        {"run", "-m", MODEL, "--temp", "abc", NULL},
        {"run", "-m", MODEL, "--top-p", "2", NULL},
        {"run", "-m", MODEL, "--kv-type", "q4_0", NULL},
        {"run", "-m", MODEL, "--bogus", NULL},
        {"run", "-m", MODEL, "-n", NULL},
        {"run", "-m", MODEL, "--stop", "", NULL},
        {"run", "-m", MODEL, "-p", "x", "-f", "y", NULL},
        {"run", "-m", MODEL, "--repeat-last-n", "-2", NULL},
        {"run", "-p", "no model", NULL},
        {"perplexity", "-m", MODEL, NULL},
        {"perplexity", "-m", MODEL, "-f", SYNTH "ppl-visible.txt", "-c", "2", NULL},
        {"perplexity", "-m", MODEL, "-f", SYNTH "ppl-visible.txt", "--kv-type", "x", NULL},
    };
    for (size_t i = 0; i < HY_ARRAY_LEN(cases); i++) {
        struct result r = run(cases[i]);
        if (!CHECK_EQ_INT(r.rc, 2) | !CHECK_CONTAINS(r.err, "error:") | !CHECK_EQ_INT(r.out_len, 0))
            fprintf(stderr, "  case %zu (%s %s %s)\n", i, cases[i][0],
                    cases[i][3] ? cases[i][3] : "", cases[i][3] && cases[i][4] ? cases[i][4] : "");
        result_free(&r);
    }
    /* a prompt file that is not there is an I/O error (1), not a usage error */
    const char *missing[] = {"run", "-m", MODEL, "-f", "no-such-prompt.txt", NULL};
    struct result r = run(missing);
    CHECK_EQ_INT(r.rc, 1);
    CHECK_CONTAINS(r.err, "no-such-prompt.txt");
    result_free(&r);
    /* --help lists the options */
    const char *help[] = {"run", "--help", NULL};
    r = run(help);
    CHECK_EQ_INT(r.rc, 0);
    const char *opts[] = {"--file",
                          "--stop",
                          "--stats-json",
                          "--kv-type",
                          "--frequency-penalty",
                          "--presence-penalty",
                          "--repeat-last-n",
                          "--min-p",
                          "--seed"};
    for (size_t i = 0; i < HY_ARRAY_LEN(opts); i++) CHECK_CONTAINS(r.out, opts[i]);
    result_free(&r);
}

static void test_perplexity_cli(void)
{
    char *txt = check_read_file(SYNTH "ppl.jsonl", NULL);
    if (!CHECK(txt != NULL)) return;
    double want = 0;
    for (char *line = txt; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        const char *model = json_string_value(json_object_get(j, "model"));
        if (model && strcmp(model, "llama-F16.gguf") == 0)
            want = json_number_value(json_object_get(j, "ppl"));
        json_decref(j);
        line = nl ? nl + 1 : NULL;
    }
    free(txt);
    const char *args[] = {"perplexity", "-m",  MODEL, "-f",  SYNTH "ppl-visible.txt",
                          "-c",         "128", "-b",  "128", "-t",
                          "2",          NULL};
    struct result r = run(args);
    CHECK_EQ_INT(r.rc, 0);
    /* the last line, exactly in llama.cpp's form */
    char *end = r.out + r.out_len;
    if (end > r.out && end[-1] == '\n') *--end = '\0';
    char *last = strrchr(r.out, '\n');
    last = last ? last + 1 : r.out;
    double ppl = 0, err = 0;
    char tail = 0;
    CHECK_EQ_INT(sscanf(last, "Final estimate: PPL = %lf +/- %lf%c", &ppl, &err, &tail), 2);
    CHECK(strncmp(last, "Final estimate: PPL = ", 22) == 0);
    if (!CHECK(want > 0 && fabs(ppl / want - 1.0) < 0.01))
        fprintf(stderr, "  PPL %g, llama.cpp %g\n", ppl, want);
    CHECK(err > 0);
    CHECK_CONTAINS(r.out, "[1]");
    result_free(&r);
}

int main(int argc, char **argv)
{
    (void)argc;
    json_t *c = greedy_case();
    if (c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        const char *want = json_string_value(json_object_get(c, "expected_text"));
        char n_predict[16];
        snprintf(n_predict, sizeof n_predict, "%d",
                 (int)json_integer_value(json_object_get(c, "n_predict")));
        if (CHECK(prompt && want && strlen(want) > 16)) {
            test_greedy_text(prompt, n_predict, want);
            test_stats_json(prompt, n_predict);
            test_stop(prompt, n_predict, want);
        }
        json_decref(c);
    }
    test_bad_flags();
    test_perplexity_cli();
    return check_report(argv[0]);
}
