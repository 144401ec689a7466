/*
 * The conversation loop of `hypura run --chat`.
 *
 * Each turn re-formats the whole conversation with the chat template and
 * hands it to the engine, whose prefix reuse keeps the KV cache of
 * everything the previous turns already evaluated: only the reply's end
 * marker and the new user turn are evaluated (the line after each reply on
 * stderr says how many tokens that was). Re-formatting rather than
 * appending tokens keeps the prompt exactly what the template gives, which
 * is also what the server sends for the same conversation.
 *
 * Prompts ("> ") and per-turn numbers go to stderr, replies to stdout.
 * Ctrl-C during a reply ends the reply (the conversation goes on); at the
 * prompt it ends the chat.
 */
#include "run_chat.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/chat_template.h"
#include "cli.h"
#include "core/err.h"
#include "core/mem.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct reply {
    char *text; /* owned */
    size_t len, cap;
};

static bool on_piece(void *user, const char *text, size_t len)
{
    struct reply *r = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) {
        r->cap = 2 * (r->len + len + 1);
        r->text = mem_xrealloc(r->text, r->cap);
    }
    memcpy(r->text + r->len, text, len);
    r->len += len;
    r->text[r->len] = '\0';
    return !interrupted;
}

/* One user turn from stdin into *line (owned); false at EOF with nothing read. */
static bool read_turn(char **line)
{
    size_t cap = 256, len = 0;
    char *buf = mem_xmalloc(cap);
    bool any = false;
    for (;;) {
        int ch = getchar();
        if (ch == EOF) break;
        any = true;
        if (ch == '\n') {
            if (len > 0 && buf[len - 1] == '\\') {
                buf[len - 1] = '\n';
                if (isatty(STDIN_FILENO)) fputs(". ", stderr);
                continue;
            }
            break;
        }
        if (len + 2 > cap) buf = mem_xrealloc(buf, cap *= 2);
        buf[len++] = (char)ch;
    }
    buf[len] = '\0';
    if (!any) {
        free(buf);
        return false;
    }
    *line = buf;
    return true;
}

int run_chat(struct engine *e, const char *system, const struct engine_gen_params *p)
{
    enum chat_template t = chat_template_detect(e->chat_template);
    if (t == CHAT_TEMPLATE_UNKNOWN)
        fprintf(stderr, "chat: warning: %s; using ChatML\n",
                e->chat_template ? "tokenizer.chat_template is not a format hypura knows"
                                 : "the model has no tokenizer.chat_template");
    else
        fprintf(stderr, "chat: template %s; end with /exit or Ctrl-D\n", chat_template_name(t));

    size_t n_msg = 0, cap_msg = 16;
    struct chat_msg *msgs = mem_xcalloc(cap_msg, sizeof(*msgs));
    char **owned = mem_xcalloc(cap_msg, sizeof(char *)); /* the texts of msgs */
    if (system && *system) {
        owned[n_msg] = mem_xstrdup(system);
        msgs[n_msg++] = (struct chat_msg){"system", owned[0]};
    }
    const bool tty = isatty(STDIN_FILENO);
    /* no SA_RESTART: a Ctrl-C at the prompt ends the read */
    struct sigaction sa = {.sa_handler = on_sigint}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    int rc = 0;
    for (int turn = 1;; turn++) {
        if (tty) fputs("> ", stderr);
        interrupted = 0;
        char *line = NULL;
        if (!read_turn(&line) || interrupted) {
            free(line);
            break;
        }
        interrupted = 0;
        if (!strcmp(line, "/exit")) {
            free(line);
            break;
        }
        if (n_msg + 2 > cap_msg) {
            cap_msg *= 2;
            msgs = mem_xrealloc(msgs, cap_msg * sizeof(*msgs));
            owned = mem_xrealloc(owned, cap_msg * sizeof(char *));
        }
        owned[n_msg] = line;
        msgs[n_msg++] = (struct chat_msg){"user", line};

        char *text = chat_template_format(t, msgs, n_msg, true);
        int32_t *prompt = NULL;
        int64_t n_prompt = 0;
        enum hy_status st = engine_tokenize(e, text, strlen(text),
                                            TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_BOS, &prompt,
                                            &n_prompt);
        free(text);
        if (!st && n_prompt >= e->n_ctx)
            st = err_set(HY_ERR_INVALID_ARG,
                         "the conversation has %" PRId64 " tokens, which fills the context of "
                         "%" PRId64 "\nhint: raise -c",
                         n_prompt, e->n_ctx);
        struct reply r = {0};
        struct engine_gen_stats gs = {0};
        if (!st) st = engine_generate(e, 0, prompt, n_prompt, p, on_piece, &r, &gs);
        free(prompt);
        fputc('\n', stdout);
        fflush(stdout);
        if (st) {
            free(r.text);
            rc = cli_fail("run", st);
            break;
        }
        fprintf(stderr,
                "[turn %d: prompt %" PRId64 " tokens, %" PRId64 " evaluated (the rest from the KV "
                "cache); reply %" PRId64 " tokens at %.1f tok/s; stopped at %s]\n",
                turn, gs.n_prompt, gs.n_prompt_eval, gs.n_gen,
                gs.gen_us > 0 ? (double)gs.n_gen * 1e6 / (double)gs.gen_us : 0.0,
                engine_stop_text(gs.stop));
        owned[n_msg] = r.text ? r.text : mem_xstrdup("");
        msgs[n_msg] = (struct chat_msg){"assistant", owned[n_msg]};
        n_msg++;
    }
    sigaction(SIGINT, &old_sa, NULL);
    for (size_t i = 0; i < n_msg; i++) free(owned[i]);
    free(owned);
    free(msgs);
    return rc;
}
