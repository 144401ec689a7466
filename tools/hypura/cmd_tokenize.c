/*
 * hypura tokenize -m MODEL (-p TEXT | -f FILE) [--no-bos] [--parse-special]
 *
 * Prints the token ids of a text as one JSON array on one line. Reads only
 * the GGUF header (the vocabulary is metadata), so vocab-only files work.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "core/err.h"
#include "core/mem.h"
#include "gguf/gguf.h"
#include "text/tokenizer.h"

static void tokenize_help(void)
{
    printf(
        "usage: hypura tokenize -m MODEL.gguf (-p TEXT | -f FILE) [options]\n\n"
        "Prints the token ids of TEXT under the model's tokenizer (SentencePiece or\n"
        "byte-level BPE) as one JSON array on one line, e.g. [1, 15043, 3186].\n"
        "Reads only the file's metadata: vocabulary-only GGUF files work.\n\n"
        "options:\n"
        "  -m, --model FILE      GGUF file with the vocabulary (required; no default)\n"
        "  -p, --prompt TEXT     text to tokenize (no default; give -p or -f)\n"
        "  -f, --file FILE       read the text from FILE instead, bytes as they are\n"
        "                        (no default)\n"
        "  --no-bos              do not add BOS (default: added when the model's\n"
        "                        tokenizer.ggml.add_bos_token says so; EOS likewise with\n"
        "                        add_eos_token)\n"
        "  --parse-special       text of control tokens (\"<s>\", \"<|im_end|>\") becomes those\n"
        "                        tokens (default: off, it is plain text; user-defined tokens\n"
        "                        are always matched)\n"
        "  -h, --help            show this help\n");
}

/* Whole file into a malloc'd buffer. */
HY_MUST_CHECK static enum hy_status read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(HY_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mem_xmalloc(cap);
    for (;;) {
        if (n == cap) buf = mem_xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        free(buf);
        return err_set(HY_ERR_IO, "%s: read failed", path);
    }
    *out = buf;
    *len = n;
    return HY_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    struct cli c;
    cli_init(&c, "tokenize", argc - 1, argv + 1);
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool no_bos = false, parse_special = false;
    enum hy_status st = HY_OK;
    while (cli_more(&c) && !st) {
        if (cli_match(&c, "-h", "--help")) {
            tokenize_help();
            return 0;
        }
        if (cli_match(&c, "-m", "--model"))
            st = cli_value(&c, &model);
        else if (cli_match(&c, "-p", "--prompt"))
            st = cli_value(&c, &prompt);
        else if (cli_match(&c, "-f", "--file"))
            st = cli_value(&c, &file);
        else if (cli_match(&c, NULL, "--no-bos"))
            no_bos = true;
        else if (cli_match(&c, NULL, "--parse-special"))
            parse_special = true;
        else
            st = cli_unknown(&c);
    }
    if (st) return cli_fail("tokenize", st);
    if (!model)
        return cli_fail("tokenize", err_set(HY_ERR_INVALID_ARG, "no model given (-m MODEL.gguf)"));
    if (!prompt == !file)
        return cli_fail(
            "tokenize",
            err_set(HY_ERR_INVALID_ARG, "give the text with exactly one of -p TEXT and -f FILE"));

    char *text = NULL;
    size_t len = 0;
    if (file) {
        if ((st = read_file(file, &text, &len))) return cli_fail("tokenize", st);
    } else {
        len = strlen(prompt);
    }
    struct gguf_ctx *g = NULL;
    struct tokenizer tok;
    int32_t *ids = NULL;
    bool have_tok = false;
    int64_t n = 0;
    /* tensors are never read: accept the legacy layouts inspect accepts */
    if ((st = gguf_open_flags(model, GGUF_PARSE_ALLOW_RAGGED_ROWS, &g))) goto done;
    if ((st = tokenizer_init(&tok, g))) goto done;
    have_tok = true;
    const int64_t cap = tokenizer_max_tokens(&tok, len);
    ids = mem_xcalloc((size_t)cap, sizeof(*ids));
    unsigned flags = (no_bos ? TOKENIZER_ADD_EOS : TOKENIZER_ADD_SPECIAL) |
                     (parse_special ? TOKENIZER_PARSE_SPECIAL : 0);
    if ((st = tokenizer_tokenize(&tok, file ? text : prompt, len, flags, ids, cap, &n))) goto done;
    putchar('[');
    for (int64_t i = 0; i < n; i++) printf("%s%" PRId32, i ? ", " : "", ids[i]);
    printf("]\n");
done:
    free(ids);
    free(text);
    if (have_tok) tokenizer_free(&tok);
    gguf_free(g);
    if (st) return cli_fail("tokenize", st);
    return fflush(stdout) == 0 ? 0 : 1;
}
