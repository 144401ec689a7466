/*
 * Chat templates (src/chat/chat_template.h): family detection on excerpts of
 * the templates the models ship, and the formatted text of one conversation
 * per family, written out by hand from each family's documented format
 * (model cards, Mistral's tokenization cookbook, llama.cpp's template list).
 */
#include <stdlib.h>
#include <string.h>

#include "chat/chat_template.h"
#include "check.h"

/* system, user, assistant, user: the conversation every format test uses */
static const struct chat_msg conv[] = {
    {"system", "test"},
    {"user", "hello"},
    {"assistant", "response"},
    {"user", "again"},
};

static void check_format(enum chat_template t, const struct chat_msg *m, size_t n, bool gen,
                         const char *want)
{
    char *got = chat_template_format(t, m, n, gen);
    if (!CHECK_EQ_STR(got, want)) fprintf(stderr, "  template %s\n", chat_template_name(t));
    free(got);
}

static void test_detect(void)
{
    static const struct {
        const char *jinja;
        enum chat_template want;
    } cases[] = {
        /* Qwen2 */
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
         "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' "
         "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
         CHAT_TEMPLATE_CHATML},
        /* Phi-4 */
        {"{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>'}}",
         CHAT_TEMPLATE_PHI4},
        /* Llama 2 chat */
        {"{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
         "messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + "
         "content | trim + ' [/INST]' }}",
         CHAT_TEMPLATE_LLAMA2_SYS_BOS},
        {"{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
         "{% elif message['role'] == 'system' %}{% set content = message['content'] %}{{ "
         "'<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% endif %}",
         CHAT_TEMPLATE_LLAMA2_SYS_STRIP},
        /* Mistral 7B Instruct v0.2 */
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' "
         "+ message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
         "message['content'] + eos_token}}{% endif %}{% endfor %}",
         CHAT_TEMPLATE_LLAMA2},
        /* Mistral's official v1, v3, v3-tekken and v7 */
        {"{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
         CHAT_TEMPLATE_MISTRAL_V1},
        {"{%- if messages[0]['role'] == 'system' %}[AVAILABLE_TOOLS] {{- '[INST] ' + "
         "message['content'] + '[/INST]' }}",
         CHAT_TEMPLATE_MISTRAL_V3},
        {"{{- \"[AVAILABLE_TOOLS]\" }}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}",
         CHAT_TEMPLATE_MISTRAL_V3_TEKKEN},
        {"{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{- '[INST]' + "
         "message['content'] + '[/INST]' }}",
         CHAT_TEMPLATE_MISTRAL_V7},
        /* Llama 3 Instruct */
        {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
         "message['content'] | trim + '<|eot_id|>' %}",
         CHAT_TEMPLATE_LLAMA3},
        /* Gemma */
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
         CHAT_TEMPLATE_GEMMA},
        /* Phi-3 mini */
        {"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}",
         CHAT_TEMPLATE_PHI3},
        /* Zephyr */
        {"{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}", CHAT_TEMPLATE_ZEPHYR},
        /* DeepSeek Coder, V2, V3 */
        {"{{'### Instruction:\\n' + message['content'] + '\\n'}}{{'### Response:\\n' + "
         "message['content'] + '\\n<|EOT|>\\n'}}",
         CHAT_TEMPLATE_DEEPSEEK},
        {"{{ 'User: ' + message['content'] + '\\n\\n' }}{{ 'Assistant: ' + message['content'] + "
         "eos_token }}",
         CHAT_TEMPLATE_DEEPSEEK2},
        {"{{'<\xef\xbd\x9cUser\xef\xbd\x9c>' + message['content']}}{{'<\xef\xbd\x9c"
         "Assistant\xef\xbd\x9c>' + content + '<\xef\xbd\x9c"
         "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>'}}",
         CHAT_TEMPLATE_DEEPSEEK3},
        /* not a family: ChatML with a warning, the caller's job */
        {"{{ message['content'] }}", CHAT_TEMPLATE_UNKNOWN},
        {"", CHAT_TEMPLATE_UNKNOWN},
    };
    for (size_t i = 0; i < HY_ARRAY_LEN(cases); i++) {
        enum chat_template got = chat_template_detect(cases[i].jinja);
        if (!CHECK_EQ_STR(chat_template_name(got), chat_template_name(cases[i].want)))
            fprintf(stderr, "  case %zu\n", i);
    }
    CHECK_EQ_INT(chat_template_detect(NULL), CHAT_TEMPLATE_UNKNOWN);
    for (int t = 1; t < CHAT_TEMPLATE_COUNT; t++)
        CHECK_EQ_INT(chat_template_from_name(chat_template_name((enum chat_template)t)), t);
    CHECK_EQ_INT(chat_template_from_name("no-such"), CHAT_TEMPLATE_UNKNOWN);
}

static void test_formats(void)
{
    const size_t n = HY_ARRAY_LEN(conv);
    check_format(CHAT_TEMPLATE_CHATML, conv, n, true,
                 "<|im_start|>system\ntest<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
                 "<|im_start|>assistant\nresponse<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n"
                 "<|im_start|>assistant\n");
    /* unknown formats as ChatML */
    check_format(CHAT_TEMPLATE_UNKNOWN, conv + 1, 1, true,
                 "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");
    check_format(CHAT_TEMPLATE_CHATML, conv + 1, 1, false, "<|im_start|>user\nhello<|im_end|>\n");
    check_format(CHAT_TEMPLATE_PHI4, conv, 2, true,
                 "<|im_start|>system<|im_sep|>test<|im_end|><|im_start|>user<|im_sep|>hello"
                 "<|im_end|><|im_start|>assistant<|im_sep|>");
    /* Llama 2 (Mistral v0.2's own template without the BOS: the tokenizer adds it) */
    check_format(CHAT_TEMPLATE_LLAMA2, conv + 1, 3, true,
                 "[INST] hello [/INST]response</s>[INST] again [/INST]");
    check_format(CHAT_TEMPLATE_LLAMA2_SYS, conv, n, true,
                 "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]response</s>[INST] again [/INST]");
    check_format(CHAT_TEMPLATE_LLAMA2_SYS_BOS, conv, n, true,
                 "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]response</s><s>[INST] again "
                 "[/INST]");
    static const struct chat_msg padded[] = {{"system", " test "}, {"user", "\nhello  "}};
    check_format(CHAT_TEMPLATE_LLAMA2_SYS_STRIP, padded, 2, true,
                 "[INST] <<SYS>>\ntest\n<</SYS>>\n\nhello [/INST]");
    /* Llama 2 without a system block: the system text opens the first turn */
    check_format(CHAT_TEMPLATE_LLAMA2, conv, 2, true, "[INST] test\nhello [/INST]");
    /* Mistral's tokenization cookbook: v1, v3, v3-tekken, v7 */
    check_format(CHAT_TEMPLATE_MISTRAL_V1, conv + 1, 3, true,
                 " [INST] hello [/INST] response</s> [INST] again [/INST]");
    static const struct chat_msg spaced[] = {
        {"user", "hello"}, {"assistant", " response "}, {"user", "again"}};
    check_format(CHAT_TEMPLATE_MISTRAL_V3, spaced, 3, true,
                 "[INST] hello[/INST] response</s>[INST] again[/INST]");
    check_format(CHAT_TEMPLATE_MISTRAL_V3_TEKKEN, conv + 1, 3, true,
                 "[INST]hello[/INST]response</s>[INST]again[/INST]");
    check_format(CHAT_TEMPLATE_MISTRAL_V3, conv, 2, true, "[INST] test\n\nhello[/INST]");
    check_format(CHAT_TEMPLATE_MISTRAL_V7, conv, n, true,
                 "[SYSTEM_PROMPT] test[/SYSTEM_PROMPT][INST] hello[/INST] response</s>[INST] "
                 "again[/INST]");
    /* Llama 3 (Meta's model card; contents trimmed) */
    static const struct chat_msg l3[] = {{"system", "test"}, {"user", " hello\n"}};
    check_format(CHAT_TEMPLATE_LLAMA3, l3, 2, true,
                 "<|start_header_id|>system<|end_header_id|>\n\ntest<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Gemma: the system text opens the first user turn; the assistant is "model" */
    check_format(CHAT_TEMPLATE_GEMMA, conv, n, true,
                 "<start_of_turn>user\ntest\n\nhello<end_of_turn>\n<start_of_turn>model\nresponse"
                 "<end_of_turn>\n<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n");
    check_format(CHAT_TEMPLATE_PHI3, conv, n, true,
                 "<|system|>\ntest<|end|>\n<|user|>\nhello<|end|>\n<|assistant|>\nresponse<|end|>\n"
                 "<|user|>\nagain<|end|>\n<|assistant|>\n");
    check_format(CHAT_TEMPLATE_ZEPHYR, conv, n, true,
                 "<|system|>\ntest<|endoftext|>\n<|user|>\nhello<|endoftext|>\n<|assistant|>\n"
                 "response<|endoftext|>\n<|user|>\nagain<|endoftext|>\n<|assistant|>\n");
    check_format(CHAT_TEMPLATE_DEEPSEEK, conv, n, true,
                 "test### Instruction:\nhello\n### Response:\nresponse\n<|EOT|>\n### "
                 "Instruction:\nagain\n### Response:\n");
    check_format(CHAT_TEMPLATE_DEEPSEEK2, conv, n, true,
                 "test\n\nUser: hello\n\nAssistant: response<\xef\xbd\x9c"
                 "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>User: again\n\nAssistant:");
    check_format(CHAT_TEMPLATE_DEEPSEEK3, conv, n, true,
                 "test\n\n<\xef\xbd\x9cUser\xef\xbd\x9c>hello<\xef\xbd\x9c"
                 "Assistant\xef\xbd\x9c>response<\xef\xbd\x9c"
                 "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>"
                 "again<\xef\xbd\x9c"
                 "Assistant\xef\xbd\x9c>");
    /* no messages: just the generation prompt */
    check_format(CHAT_TEMPLATE_LLAMA3, NULL, 0, true,
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_format(CHAT_TEMPLATE_MISTRAL_V7, NULL, 0, true, "");
}

int main(int argc, char **argv)
{
    (void)argc;
    test_detect();
    test_formats();
    return check_report(argv[0]);
}
