#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"

/* Prints one text's ids as a JSON array line; returns 0 or the exit code. */
static int print_ids(const sp_model *m, const char *text, size_t len, bool add_special, bool parse_special) {
    sp_token *ids;
    int n;
    if (sp_tokenize(m, text, len, add_special, parse_special, &ids, &n) != SP_OK) return fail_status("tokenize");
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    printf("]\n");
    free(ids);
    return 0;
}

/* Batch records: "<byte length>\n<that many bytes>", one after another (any bytes, NUL too), so
 * that comparisons over many texts load the model once. Returns the record's length (0 for an
 * empty text), -1 at the end of the input, or -2 if the input is not such a record. */
static long next_record(const char *buf, size_t len, size_t *pos, const char **text) {
    if (*pos >= len) return -1;
    size_t p = *pos;
    unsigned long long n = 0;
    int digits = 0;
    while (p < len && buf[p] >= '0' && buf[p] <= '9' && digits < 10) n = n * 10 + (unsigned)(buf[p++] - '0'), digits++;
    if (!digits || p >= len || buf[p] != '\n' || n > len - p - 1) return -2;
    *text = buf + p + 1;
    *pos = p + 1 + (size_t)n;
    return (long)n;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL;
    bool parse_special = false, add_special = false, batch = false;
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model (GGUF) whose tokenizer to use"),
        CLI_OPT("--parse-special", NULL, CLI_FLAG, &parse_special, 0, 0, NULL, "turn special-token markup such as <|eot_id|> into those tokens"),
        CLI_OPT("--add-special", NULL, CLI_FLAG, &add_special, 0, 0, NULL, "add BOS/EOS as the model's metadata asks"),
        CLI_OPT("--batch", NULL, CLI_FLAG, &batch, 0, 0, NULL, "stdin holds many texts, each as '<byte length>\\n<bytes>'; one array per line"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"tokenize -m MODEL.gguf [options] < text", "reads UTF-8 text on stdin, prints the token ids as a JSON array",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    size_t len;
    char *text = read_file("-", &len);
    if (!text) return 1;
    sp_model *m;
    if (sp_model_load(model_path, &m) != SP_OK) { free(text); return fail_status("loading model"); }
    int rc = 0;
    if (!batch) {
        rc = print_ids(m, text, len, add_special, parse_special);
    } else {
        size_t pos = 0;
        const char *t = NULL;
        for (long n, k = 0; !rc && (n = next_record(text, len, &pos, &t)) != -1; k++) {
            if (n < 0) {
                fprintf(stderr, "error: --batch input: record %ld is not '<byte length>\\n<bytes>' (at byte %zu)\n", k, pos);
                rc = 1;
            } else {
                rc = print_ids(m, t, (size_t)n, add_special, parse_special);
            }
        }
    }
    free(text);
    sp_model_free(m);
    return rc;
}

/* Detokenizes one JSON array of ids into *out (appended); returns 0 or the exit code. */
static int detokenize_array(const sp_model *m, bool render_special, const cJSON *arr, char **out, size_t *len, size_t *cap) {
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "error: the input is not a JSON array of token ids\n");
        return 1;
    }
    const int n_vocab = sp_model_get_info(m)->n_vocab;
    sp_detokenizer d;
    sp_detokenizer_init(&d, m, render_special);
    int idx = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        const double v = cJSON_GetNumberValue(item);
        /* range first: converting an out-of-range double to int is undefined */
        if (!cJSON_IsNumber(item) || !(v >= 0 && v < n_vocab) || v != (double)(int)v) {
            fprintf(stderr, "error: element %d is not a token id of this model (0..%d)\n", idx, n_vocab - 1);
            return 1;
        }
        if (sp_detokenizer_append(&d, (sp_token)v, out, len, cap) < 0) return fail_status("detokenize");
        idx++;
    }
    if (sp_detokenizer_append(&d, -1, out, len, cap) < 0) return fail_status("detokenize");
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model_path = NULL;
    bool render_special = false, batch = false;
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model (GGUF) whose tokenizer to use"),
        CLI_OPT("--render-special", NULL, CLI_FLAG, &render_special, 0, 0, NULL, "print control tokens' markup instead of nothing"),
        CLI_OPT("--batch", NULL, CLI_FLAG, &batch, 0, 0, NULL, "one JSON array per input line; each text printed as '<byte length>\\n<bytes>'"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"detokenize -m MODEL.gguf [options] < ids.json", "reads a JSON array of token ids on stdin, prints their text",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    char *text = read_file("-", NULL);
    if (!text) return 1;
    sp_model *m;
    if (sp_model_load(model_path, &m) != SP_OK) { free(text); return fail_status("loading model"); }
    int rc = 0;
    char *out = NULL;
    size_t len = 0, cap = 0;
    for (char *line = text, *next; !rc && line && *line; line = next) {
        next = batch ? strchr(line, '\n') : NULL;
        if (next) *next++ = 0;
        if (batch && !*line) continue;
        cJSON *arr = cJSON_Parse(line);
        len = 0;
        rc = detokenize_array(m, render_special, arr, &out, &len, &cap);
        cJSON_Delete(arr);
        if (rc) break;
        if (batch) printf("%zu\n", len);
        if (len) fwrite(out, 1, len, stdout);
    }
    free(out);
    free(text);
    sp_model_free(m);
    return rc;
}
