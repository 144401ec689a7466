/*
 * Chat templates: a conversation (role, content messages) as the prompt text
 * a chat model was trained on.
 *
 * A GGUF file carries its chat format as a Jinja program in
 * tokenizer.chat_template. hypura does not run Jinja: like llama.cpp's
 * built-in templates, it recognises the family by strings that only that
 * family's templates contain, and formats the messages itself. Detection, in
 * this order (the first match wins; earlier families' markers can occur in
 * later families' templates, not the other way round):
 *
 *   "<|im_start|>"                   ChatML (Qwen, Yi, Hermes...); with "<|im_sep|>": Phi-4
 *   "[INST]"                         Mistral or Llama 2:
 *       "[SYSTEM_PROMPT]"                Mistral v7
 *       "' [INST] ' + system_message"
 *        or "[AVAILABLE_TOOLS]"          Mistral v1 (" [INST]" present), v3-tekken
 *                                        ("\"[INST]\"" present), else v3
 *       otherwise Llama 2: "content.strip()" -> stripped, "bos_token + '[INST]"
 *                                        -> <s> inside the history, "<<SYS>>" -> system block
 *   "<|assistant|>" and "<|end|>"    Phi-3
 *   "<|user|>" and "<|endoftext|>"   Zephyr
 *   "<start_of_turn>"                Gemma
 *   "### Instruction:" and "<|EOT|>" DeepSeek Coder
 *   "<|start_header_id|>" and "<|end_header_id|>"  Llama 3
 *   "'Assistant: ' + message['content'] + eos_token"  DeepSeek V2
 *   "<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>"  DeepSeek V3 / R1
 *
 * Anything else (or no template) is CHAT_TEMPLATE_UNKNOWN, which callers
 * format as ChatML after warning. The formats (what goes around each message,
 * and the generation prompt that opens the assistant's turn) are written at
 * each family's case in chat_template.c. The BOS token is not part of the
 * text: the tokenizer adds it when the vocabulary asks for it.
 *
 * Not here: tool calls, images, Jinja.
 */
#ifndef HY_CHAT_CHAT_TEMPLATE_H
#define HY_CHAT_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

enum chat_template {
    CHAT_TEMPLATE_UNKNOWN = 0,
    CHAT_TEMPLATE_CHATML,
    CHAT_TEMPLATE_PHI4,
    CHAT_TEMPLATE_MISTRAL_V7,
    CHAT_TEMPLATE_MISTRAL_V1,
    CHAT_TEMPLATE_MISTRAL_V3,
    CHAT_TEMPLATE_MISTRAL_V3_TEKKEN,
    CHAT_TEMPLATE_LLAMA2,
    CHAT_TEMPLATE_LLAMA2_SYS,
    CHAT_TEMPLATE_LLAMA2_SYS_BOS,
    CHAT_TEMPLATE_LLAMA2_SYS_STRIP,
    CHAT_TEMPLATE_PHI3,
    CHAT_TEMPLATE_ZEPHYR,
    CHAT_TEMPLATE_GEMMA,
    CHAT_TEMPLATE_DEEPSEEK,
    CHAT_TEMPLATE_LLAMA3,
    CHAT_TEMPLATE_DEEPSEEK2,
    CHAT_TEMPLATE_DEEPSEEK3,
    CHAT_TEMPLATE_COUNT
};

struct chat_msg {
    const char *role;    /* "system", "user", "assistant" (others are formatted as their name) */
    const char *content; /* UTF-8 */
};

/* The family of a Jinja template text; CHAT_TEMPLATE_UNKNOWN for NULL or none. */
enum chat_template chat_template_detect(const char *jinja);

/* "chatml", "llama2", "llama3", "mistral-v7", ... ("unknown"). */
const char *chat_template_name(enum chat_template t);

/* The family named name (as chat_template_name); CHAT_TEMPLATE_UNKNOWN when none is. */
enum chat_template chat_template_from_name(const char *name);

/* msgs[0..n) as prompt text in family t (CHAT_TEMPLATE_UNKNOWN: ChatML),
 * followed by the opening of the assistant's turn when add_generation_prompt.
 * Returns a NUL-terminated string the caller frees. */
char *chat_template_format(enum chat_template t, const struct chat_msg *msgs, size_t n,
                           bool add_generation_prompt);

#endif
