#include "chat/chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static const char *const names[CHAT_TEMPLATE_COUNT] = {
    [CHAT_TEMPLATE_UNKNOWN] = "unknown",
    [CHAT_TEMPLATE_CHATML] = "chatml",
    [CHAT_TEMPLATE_PHI4] = "phi4",
    [CHAT_TEMPLATE_MISTRAL_V7] = "mistral-v7",
    [CHAT_TEMPLATE_MISTRAL_V1] = "mistral-v1",
    [CHAT_TEMPLATE_MISTRAL_V3] = "mistral-v3",
    [CHAT_TEMPLATE_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_TEMPLATE_LLAMA2] = "llama2",
    [CHAT_TEMPLATE_LLAMA2_SYS] = "llama2-sys",
    [CHAT_TEMPLATE_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_TEMPLATE_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_TEMPLATE_PHI3] = "phi3",
    [CHAT_TEMPLATE_ZEPHYR] = "zephyr",
    [CHAT_TEMPLATE_GEMMA] = "gemma",
    [CHAT_TEMPLATE_DEEPSEEK] = "deepseek",
    [CHAT_TEMPLATE_LLAMA3] = "llama3",
    [CHAT_TEMPLATE_DEEPSEEK2] = "deepseek2",
    [CHAT_TEMPLATE_DEEPSEEK3] = "deepseek3",
};

const char *chat_template_name(enum chat_template t)
{
    return (unsigned)t < CHAT_TEMPLATE_COUNT ? names[t] : names[CHAT_TEMPLATE_UNKNOWN];
}

enum chat_template chat_template_from_name(const char *name)
{
    for (int i = 1; i < CHAT_TEMPLATE_COUNT; i++)
        if (!strcmp(names[i], name)) return (enum chat_template)i;
    return CHAT_TEMPLATE_UNKNOWN;
}

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

enum chat_template chat_template_detect(const char *j)
{
    if (!j || !*j) return CHAT_TEMPLATE_UNKNOWN;
    if (has(j, "<|im_start|>")) return has(j, "<|im_sep|>") ? CHAT_TEMPLATE_PHI4 : CHAT_TEMPLATE_CHATML;
    if (has(j, "[INST]")) {
        if (has(j, "[SYSTEM_PROMPT]")) return CHAT_TEMPLATE_MISTRAL_V7;
        if (has(j, "' [INST] ' + system_message") || has(j, "[AVAILABLE_TOOLS]")) {
            if (has(j, " [INST]")) return CHAT_TEMPLATE_MISTRAL_V1;
            if (has(j, "\"[INST]\"")) return CHAT_TEMPLATE_MISTRAL_V3_TEKKEN;
            return CHAT_TEMPLATE_MISTRAL_V3;
        }
        if (has(j, "content.strip()")) return CHAT_TEMPLATE_LLAMA2_SYS_STRIP;
        if (has(j, "bos_token + '[INST]")) return CHAT_TEMPLATE_LLAMA2_SYS_BOS;
        if (has(j, "<<SYS>>")) return CHAT_TEMPLATE_LLAMA2_SYS;
        return CHAT_TEMPLATE_LLAMA2;
    }
    if (has(j, "<|assistant|>") && has(j, "<|end|>")) return CHAT_TEMPLATE_PHI3;
    if (has(j, "<|user|>") && has(j, "<|endoftext|>")) return CHAT_TEMPLATE_ZEPHYR;
    if (has(j, "<start_of_turn>")) return CHAT_TEMPLATE_GEMMA;
    if (has(j, "### Instruction:") && has(j, "<|EOT|>")) return CHAT_TEMPLATE_DEEPSEEK;
    if (has(j, "<|start_header_id|>") && has(j, "<|end_header_id|>")) return CHAT_TEMPLATE_LLAMA3;
    if (has(j, "'Assistant: ' + message['content'] + eos_token")) return CHAT_TEMPLATE_DEEPSEEK2;
    if (has(j, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(j, "<\xef\xbd\x9cUser\xef\xbd\x9c>") &&
        has(j, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return CHAT_TEMPLATE_DEEPSEEK3;
    return CHAT_TEMPLATE_UNKNOWN;
}

/* A growing string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_addn(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = mem_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(struct sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* s without leading and trailing ASCII whitespace (Jinja's trim / Python's strip). */
static void sb_add_trimmed(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    sb_addn(b, s, n);
}

#define DS_BAR "\xef\xbd\x9c" /* U+FF5C FULLWIDTH VERTICAL LINE */
#define DS_SP  "\xe2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */
#define DS_EOS "<" DS_BAR "end" DS_SP "of" DS_SP "sentence" DS_BAR ">"

/* One line per message: <open role sep> content <close>. */
static void fmt_tagged(struct sbuf *b, const struct chat_msg *m, size_t n, const char *pre,
                       const char *mid, const char *post, bool trim)
{
    for (size_t i = 0; i < n; i++) {
        sb_add(b, pre);
        sb_add(b, m[i].role);
        sb_add(b, mid);
        if (trim)
            sb_add_trimmed(b, m[i].content);
        else
            sb_add(b, m[i].content);
        sb_add(b, post);
    }
}

/* Mistral v1/v3/v3-tekken: [INST] opens a turn holding any system text and
 * the user message; the reply follows [/INST] and ends with </s>. v1 puts a
 * space before [INST] and [/INST], tekken none after them, v3 trims replies. */
static void fmt_mistral(struct sbuf *b, enum chat_template t, const struct chat_msg *m, size_t n)
{
    const char *lead = t == CHAT_TEMPLATE_MISTRAL_V1 ? " " : "";
    const char *trail = t == CHAT_TEMPLATE_MISTRAL_V3_TEKKEN ? "" : " ";
    bool in_turn = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            sb_add(b, lead);
            sb_add(b, "[INST]");
            sb_add(b, trail);
            in_turn = true;
        }
        if (!strcmp(m[i].role, "system")) {
            sb_add(b, m[i].content);
            sb_add(b, "\n\n");
        } else if (!strcmp(m[i].role, "assistant")) {
            sb_add(b, trail);
            if (t == CHAT_TEMPLATE_MISTRAL_V3)
                sb_add_trimmed(b, m[i].content);
            else
                sb_add(b, m[i].content);
            sb_add(b, "</s>");
            in_turn = false;
        } else {
            sb_add(b, m[i].content);
            sb_add(b, lead);
            sb_add(b, "[/INST]");
        }
    }
}

/* Llama 2: "[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]reply</s>[INST] ..."
 * (the first [INST] follows the BOS the tokenizer adds). */
static void fmt_llama2(struct sbuf *b, enum chat_template t, const struct chat_msg *m, size_t n)
{
    const bool sys_block = t != CHAT_TEMPLATE_LLAMA2;
    const bool strip = t == CHAT_TEMPLATE_LLAMA2_SYS_STRIP;
    bool in_turn = true;
    sb_add(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            sb_add(b, t == CHAT_TEMPLATE_LLAMA2_SYS_BOS ? "<s>[INST] " : "[INST] ");
            in_turn = true;
        }
        const bool sys = !strcmp(m[i].role, "system");
        if (sys) sb_add(b, sys_block ? "<<SYS>>\n" : "");
        if (strip)
            sb_add_trimmed(b, m[i].content);
        else
            sb_add(b, m[i].content);
        if (sys) {
            sb_add(b, sys_block ? "\n<</SYS>>\n\n" : "\n");
        } else if (!strcmp(m[i].role, "assistant")) {
            sb_add(b, "</s>");
            in_turn = false;
        } else {
            sb_add(b, " [/INST]");
        }
    }
}

/* Gemma has no system role: system text opens the next user turn; the
 * assistant is "model"; contents are trimmed. */
static void fmt_gemma(struct sbuf *b, const struct chat_msg *m, size_t n, bool gen)
{
    struct sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            sb_add_trimmed(&sys, m[i].content);
            continue;
        }
        const bool model = !strcmp(m[i].role, "assistant");
        sb_add(b, "<start_of_turn>");
        sb_add(b, model ? "model" : m[i].role);
        sb_add(b, "\n");
        if (sys.len && !model) {
            sb_add(b, sys.p);
            sb_add(b, "\n\n");
            sys.len = 0;
        }
        sb_add_trimmed(b, m[i].content);
        sb_add(b, "<end_of_turn>\n");
    }
    free(sys.p);
    if (gen) sb_add(b, "<start_of_turn>model\n");
}

/* Formats where each role has a fixed prefix and suffix. */
static void fmt_roles(struct sbuf *b, const struct chat_msg *m, size_t n, const char *sys_pre,
                      const char *sys_post, const char *user_pre, const char *user_post,
                      const char *asst_pre, const char *asst_post)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            sb_add(b, sys_pre);
            sb_add(b, m[i].content);
            sb_add(b, sys_post);
        } else if (!strcmp(m[i].role, "assistant")) {
            sb_add(b, asst_pre);
            sb_add(b, m[i].content);
            sb_add(b, asst_post);
        } else {
            sb_add(b, user_pre);
            sb_add(b, m[i].content);
            sb_add(b, user_post);
        }
    }
}

char *chat_template_format(enum chat_template t, const struct chat_msg *m, size_t n, bool gen)
{
    struct sbuf b = {0};
    sb_add(&b, "");
    switch (t) {
    case CHAT_TEMPLATE_UNKNOWN:
    case CHAT_TEMPLATE_COUNT:
    case CHAT_TEMPLATE_CHATML:
        fmt_tagged(&b, m, n, "<|im_start|>", "\n", "<|im_end|>\n", false);
        if (gen) sb_add(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_TEMPLATE_PHI4:
        fmt_tagged(&b, m, n, "<|im_start|>", "<|im_sep|>", "<|im_end|>", false);
        if (gen) sb_add(&b, "<|im_start|>assistant<|im_sep|>");
        break;
    case CHAT_TEMPLATE_MISTRAL_V7:
        fmt_roles(&b, m, n, "[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT]", "[INST] ", "[/INST]", " ",
                  "</s>");
        break;
    case CHAT_TEMPLATE_MISTRAL_V1:
    case CHAT_TEMPLATE_MISTRAL_V3:
    case CHAT_TEMPLATE_MISTRAL_V3_TEKKEN:
        fmt_mistral(&b, t, m, n);
        break;
    case CHAT_TEMPLATE_LLAMA2:
    case CHAT_TEMPLATE_LLAMA2_SYS:
    case CHAT_TEMPLATE_LLAMA2_SYS_BOS:
    case CHAT_TEMPLATE_LLAMA2_SYS_STRIP:
        fmt_llama2(&b, t, m, n);
        break;
    case CHAT_TEMPLATE_PHI3:
        fmt_tagged(&b, m, n, "<|", "|>\n", "<|end|>\n", false);
        if (gen) sb_add(&b, "<|assistant|>\n");
        break;
    case CHAT_TEMPLATE_ZEPHYR:
        fmt_tagged(&b, m, n, "<|", "|>\n", "<|endoftext|>\n", false);
        if (gen) sb_add(&b, "<|assistant|>\n");
        break;
    case CHAT_TEMPLATE_GEMMA:
        fmt_gemma(&b, m, n, gen);
        break;
    case CHAT_TEMPLATE_DEEPSEEK:
        fmt_roles(&b, m, n, "", "", "### Instruction:\n", "\n", "### Response:\n", "\n<|EOT|>\n");
        if (gen) sb_add(&b, "### Response:\n");
        break;
    case CHAT_TEMPLATE_LLAMA3:
        fmt_tagged(&b, m, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true);
        if (gen) sb_add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_TEMPLATE_DEEPSEEK2:
        fmt_roles(&b, m, n, "", "\n\n", "User: ", "\n\n", "Assistant: ", DS_EOS);
        if (gen) sb_add(&b, "Assistant:");
        break;
    case CHAT_TEMPLATE_DEEPSEEK3:
        fmt_roles(&b, m, n, "", "\n\n", "<" DS_BAR "User" DS_BAR ">", "",
                  "<" DS_BAR "Assistant" DS_BAR ">", DS_EOS);
        if (gen) sb_add(&b, "<" DS_BAR "Assistant" DS_BAR ">");
        break;
    }
    return b.p;
}
