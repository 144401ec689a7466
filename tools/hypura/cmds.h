/* Subcommand entry points: argv[0] is the subcommand name. Return the exit code. */
#ifndef HY_TOOLS_CMDS_H
#define HY_TOOLS_CMDS_H

int cmd_bench(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_iobench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif
