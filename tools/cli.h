/* Shared helpers of the specprefill command-line tool. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "specprefill.h"

/* Each subcommand: returns the process exit code. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Option parsing: `--name value` or `--name=value`. Returns the value, or NULL if argv[*i]
 * is not this option. Missing values print an error and set *bad. */
const char *opt_value(int argc, char **argv, int *i, const char *name, const char *alias, bool *bad);
bool opt_flag(char **argv, int i, const char *name, const char *alias);
bool parse_int(const char *s, long min, long max, long *out);
bool parse_float(const char *s, double min, double max, double *out);
/* Comma-separated lists ("512,2048"): the count parsed (at most max_n), or -1 if any item is bad. */
int parse_int_list(const char *s, long *out, int max_n, long min, long max);
int parse_float_list(const char *s, double *out, int max_n, double min, double max);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'ed buffer. */
char *read_file(const char *path, size_t *len);
double now_seconds(void);
int fail_status(const char *what); /* prints "error: what: sp_last_error()" and returns 1 */

#endif
