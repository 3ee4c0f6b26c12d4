/*
 * The command line's one option parser. Each command declares its options once, in a table
 * (name, alias, kind, where the value goes, range, help); the same table parses argv, checks
 * every value against its range, and prints --help with the defaults read from the variables
 * themselves — so the help cannot disagree with what the command does.
 */
#ifndef SP_OPTIONS_H
#define SP_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CLI_END = 0,  /* ends a table */
    CLI_SECTION,  /* a heading in --help: help is the text */
    CLI_FLAG,     /* bool *: set true */
    CLI_UNFLAG,   /* bool *: set false (options named --no-...) */
    CLI_TEXT,     /* const char ** */
    CLI_TEXTS,    /* const char *[max_count]: repeatable, each use appends; count in *count */
    CLI_CHOICE,   /* int *: index into arg, which lists the choices as "a|b|c" */
    CLI_INT,      /* int * in [min, max] */
    CLI_U64,      /* uint64_t * in [min, max] */
    CLI_FLOAT,    /* float * in [min, max] */
    CLI_DOUBLE,   /* double * in [min, max] */
    CLI_INTS,     /* int [max_count]: a comma-separated list, replaces the default; count in *count */
    CLI_DOUBLES,  /* double [max_count]: likewise */
} cli_kind;

typedef struct {
    const char *name, *alias; /* "--n-predict", "-n" (or NULL) */
    cli_kind kind;
    void *value;
    double min, max;          /* range of a number, or of each item of a list */
    const char *arg;          /* the value's name in --help ("N", "FILE"); the choices of CLI_CHOICE */
    const char *help;
    int *count;               /* lists: how many items were given (the default's count before) */
    int max_count;
    const char *shown_default; /* NULL: --help prints the value's initial contents; "": no default shown */
} cli_option;

typedef struct {
    const char *usage;        /* after "usage: specprefill " */
    const char *about;        /* printed under the usage line, or NULL */
    const cli_option *options;
    const char *notes;        /* printed after the options, or NULL */
    const char **positional;  /* arguments that are not options, or NULL if none are taken */
    int max_positional;
    int *n_positional;
} cli_command;

/* Parses argv[1..argc-1] into the table's variables. Returns -1 to go on, or the exit code the
 * command should return: 0 after printing --help, 2 after printing an error. */
int cli_parse(const cli_command *cmd, int argc, char **argv);

/* One table row: name, alias, kind, &variable, min, max, arg, help, then optional designated
 * fields (.count, .max_count, .shown_default). A table ends with CLI_OPTIONS_END. */
#define CLI_OPT(name_, alias_, kind_, value_, min_, max_, arg_, help_, ...) \
    {.name = (name_), .alias = (alias_), .kind = (kind_), .value = (value_), .min = (min_), .max = (max_), \
     .arg = (arg_), .help = (help_), __VA_ARGS__}
#define CLI_SECTION_ROW(title) CLI_OPT(NULL, NULL, CLI_SECTION, NULL, 0, 0, NULL, (title))
#define CLI_OPTIONS_END {.kind = CLI_END}

/* Options more than one command takes, each a list of table rows (one place for their ranges and help). */
#define CLI_THREADS_OPTION(threads) \
    CLI_OPT("--threads", "-t", CLI_INT, (threads), 0, 256, "N", "worker threads", .shown_default = "all cores")
/* sp_model_params *: how the model files are loaded (no_mmap, repack) */
#define CLI_LOAD_OPTIONS(params) \
    CLI_OPT("--no-mmap", NULL, CLI_FLAG, &(params)->no_mmap, 0, 0, NULL, \
            "read the model(s) into this process's memory (huge pages where the OS gives them) instead of mapping the file: decode often faster (fewer TLB misses), a private copy of each file", \
            .shown_default = ""), \
    CLI_OPT("--repack", NULL, CLI_FLAG, &(params)->repack, 0, 0, NULL, \
            "rewrite the weights the kernels have an interleaved form for (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K on x86) into this process's memory, eight rows block by block: faster decode, most of all for several sequences at once (serve --parallel); float rounding differs from the file's layout", \
            .shown_default = "")
#define CLI_KV_TYPE_OPTION(kv_index) \
    CLI_OPT("--kv-type", NULL, CLI_CHOICE, (kv_index), 0, 0, "f16|f32", "KV-cache storage")
/* How positions are scaled past the model's training context (generate, serve, eval, logits):
 * the choice's index is sp_rope_scaling's value. */
typedef struct {
    int kind;      /* auto, none, linear, yarn */
    float scale;   /* 0 = the context's size / the training context */
    int orig_ctx;  /* 0 = the model's */
} cli_rope;
#define CLI_ROPE_OPTIONS(r) \
    CLI_OPT("--rope-scaling", NULL, CLI_CHOICE, &(r)->kind, 0, 0, "auto|none|linear|yarn", \
            "positions past the training context: auto = the model's own scaling, or where it has none YaRN for each prompt longer than its training context (by their ratio); linear/yarn: fixed for every prompt"), \
    CLI_OPT("--rope-scale", NULL, CLI_FLOAT, &(r)->scale, 1, 1e5, "F", "the factor of --rope-scaling linear/yarn", .shown_default = "-c / training context"), \
    CLI_OPT("--yarn-orig-ctx", NULL, CLI_INT, &(r)->orig_ctx, 1, 1 << 24, "N", "the context the model was trained on", .shown_default = "the model's")
#define CLI_SAMPLING_OPTIONS(s) \
    CLI_OPT("--temp", NULL, CLI_FLOAT, &(s)->temperature, 0, 100, "T", "temperature, 0 = greedy"), \
    CLI_OPT("--top-k", NULL, CLI_INT, &(s)->top_k, 0, 1 << 24, "K", "sample among the K most likely tokens, 0 = all"), \
    CLI_OPT("--top-p", NULL, CLI_FLOAT, &(s)->top_p, 1e-9, 1, "P", "nucleus: the most likely tokens holding share P, 1 = off"), \
    CLI_OPT("--min-p", NULL, CLI_FLOAT, &(s)->min_p, 0, 1, "P", "drop tokens below P × the most likely one's probability, 0 = off"), \
    CLI_OPT("--repeat-penalty", NULL, CLI_FLOAT, &(s)->repeat_penalty, 1e-3, 100, "X", "divide the logits of recent tokens by X, 1 = off"), \
    CLI_OPT("--repeat-last-n", NULL, CLI_INT, &(s)->repeat_last_n, 0, 1 << 16, "N", "how many recent tokens the penalty looks at"), \
    CLI_OPT("--seed", NULL, CLI_U64, &(s)->seed, 0, 0x7fffffff, "S", "sampling seed")
/* The chat template (generate, serve, eval). */
#define CLI_CHAT_TEMPLATE_OPTIONS(name, file, kwargs) \
    CLI_OPT("--chat-template", NULL, CLI_TEXT, (name), 0, 0, "NAME", "a built-in template instead of the model's: chatml, llama3, mistral-v7, mistral-nemo, llama2", \
            .shown_default = "the model's own; chatml if it has none"), \
    CLI_OPT("--chat-template-file", NULL, CLI_TEXT, (file), 0, 0, "T.jinja", "a Jinja chat template of your own"), \
    CLI_OPT("--chat-template-kwargs", NULL, CLI_TEXT, (kwargs), 0, 0, "JSON", "extra template variables, e.g. '{\"enable_thinking\": false}'")

/* How speculative prefill scores and chunks the prompt (generate, serve, eval). */
#define CLI_SPECPREFILL_SCORING_OPTIONS(p) \
    CLI_OPT("--chunk", NULL, CLI_INT, &(p)->chunk, 1, 1 << 20, "N", "tokens per chunk, 1 = single tokens"), \
    CLI_OPT("--lookahead", NULL, CLI_INT, &(p)->lookahead, 1, 256, "K", "draft queries: the last prompt token + K-1 generated"), \
    CLI_OPT("--pool", NULL, CLI_INT, &(p)->pool_kernel, 1, 1025, "N", "average-pooling kernel over tokens, 1 = off"), \
    CLI_OPT("--self-layers", NULL, CLI_INT, &(p)->self_layers, 1, 1024, "L", "layers that score in self-speculation", .shown_default = "ceil(n_layer/4)")
/* How many chunks speculative prefill keeps, and with which draft (generate, serve). */
#define CLI_SPECPREFILL_KEEP_OPTIONS(p) \
    CLI_OPT("--draft-any-vocab", NULL, CLI_FLAG, &(p)->any_vocab, 0, 0, NULL, "allow a draft with another tokenizer (scores mapped through bytes)"), \
    CLI_OPT("--keep", NULL, CLI_FLOAT, &(p)->keep_rate, 1e-6, 1, "R", "share of prompt chunks to keep"), \
    CLI_OPT("--keep-mass", NULL, CLI_FLOAT, &(p)->keep_mass, 1e-6, 1, "M", "adaptive: the fewest chunks holding share M of the importance", .shown_default = "off"), \
    CLI_OPT("--keep-min", NULL, CLI_FLOAT, &(p)->keep_min, 0, 1, "R", "lower bound of the adaptive share"), \
    CLI_OPT("--keep-max", NULL, CLI_FLOAT, &(p)->keep_max, 0, 1, "R", "upper bound of the adaptive share"), \
    CLI_OPT("--no-keep-last", NULL, CLI_UNFLAG, &(p)->keep_last_chunk, 0, 0, NULL, "do not force the prompt's last chunk")

#endif
