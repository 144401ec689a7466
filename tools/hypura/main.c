/*
 * hypura — run GGUF language models larger than the machine's memory.
 * Dispatches `hypura <command> ...` to tools/hypura/cmd_<command>.c.
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "hypura.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"serve", cmd_serve, "serve a model over the Ollama and OpenAI HTTP APIs"},
    {"inspect", cmd_inspect, "show a GGUF model's architecture, hyperparameters and tensors"},
    {"plan", cmd_plan, "plan where a model's tensors live and predict its speed (header only)"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text (llama-perplexity's protocol)"},
    {"synth", cmd_synth, "write a random-weight GGUF model at a real model's shape"},
    {"tokenize", cmd_tokenize, "print the token ids of a text under a model's tokenizer"},
    {"profile", cmd_profile, "measure this machine (CPU, RAM, storage, GPUs) and cache the profile"},
    {"bench", cmd_bench, "prompt and decode tok/s over repetitions, against the mmap baseline"},
    {"iobench", cmd_iobench, "read-only benchmark of a model file's read patterns (O_DIRECT, buffered, mmap)"},
};

static void usage(FILE *f)
{
    fprintf(f, "hypura %s — run GGUF language models larger than memory\n\n"
               "usage: hypura <command> [options]\n\ncommands:\n", hy_version());
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'hypura <command> --help' lists a command's options and defaults.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("hypura %s\n", hy_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "hypura: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
