/* Shared helpers of the specprefill command-line tool. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "specprefill.h"

/* Each subcommand: returns the process exit code. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Options: options.h. */
#include "options.h"

/* The --rope-scaling, --rope-scale and --yarn-orig-ctx options into a context's parameters. */
void cli_rope_apply(const cli_rope *r, sp_context_params *p);

/* The chat template the options ask for: a built-in by --chat-template NAME, a file by
 * --chat-template-file, else NULL (the model's own). *owned is what to free. Returns -1 to go on,
 * or an exit code after printing an error. */
int cli_chat_template(const char *name, const char *file, const char **source, char **owned);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'ed buffer. */
char *read_file(const char *path, size_t *len);
double now_seconds(void);
int fail_status(const char *what); /* prints "error: what: sp_last_error()" and returns 1 */

#endif
