#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL;
    bool parse_special = false, add_special = false, bad = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--model", "-m", &bad))) model_path = v;
        else if (bad) return 2;
        else if (opt_flag(argv, i, "--parse-special", NULL)) parse_special = true;
        else if (opt_flag(argv, i, "--add-special", NULL)) add_special = true;
        else if (opt_flag(argv, i, "--help", "-h")) {
            printf("usage: specprefill tokenize -m MODEL.gguf [--parse-special] [--add-special] < text\n"
                   "  reads UTF-8 text on stdin, prints the token ids as a JSON array\n"
                   "  --parse-special  turn special-token markup such as <|eot_id|> into those tokens\n"
                   "  --add-special    add BOS/EOS as the model's metadata asks\n");
            return 0;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    size_t len;
    char *text = read_file("-", &len);
    if (!text) return 1;
    sp_model *m;
    if (sp_model_load(model_path, &m) != SP_OK) { free(text); return fail_status("loading model"); }
    sp_token *ids;
    int n;
    if (sp_tokenize(m, text, len, add_special, parse_special, &ids, &n) != SP_OK) {
        free(text);
        sp_model_free(m);
        return fail_status("tokenize");
    }
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    printf("]\n");
    free(ids);
    free(text);
    sp_model_free(m);
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model_path = NULL;
    bool render_special = false, bad = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--model", "-m", &bad))) model_path = v;
        else if (bad) return 2;
        else if (opt_flag(argv, i, "--render-special", NULL)) render_special = true;
        else if (opt_flag(argv, i, "--help", "-h")) {
            printf("usage: specprefill detokenize -m MODEL.gguf [--render-special] < ids.json\n"
                   "  reads a JSON array of token ids on stdin, prints their text\n"
                   "  --render-special  print control tokens' markup instead of nothing\n");
            return 0;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    char *text = read_file("-", NULL);
    if (!text) return 1;
    cJSON *arr = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        fprintf(stderr, "error: stdin is not a JSON array of token ids\n");
        return 1;
    }
    sp_model *m;
    if (sp_model_load(model_path, &m) != SP_OK) { cJSON_Delete(arr); return fail_status("loading model"); }
    const int n_vocab = sp_model_get_info(m)->n_vocab;
    sp_detokenizer d;
    sp_detokenizer_init(&d, m, render_special);
    int rc = 0, idx = 0;
    char buf[4096];
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        double v = cJSON_GetNumberValue(item);
        if (!cJSON_IsNumber(item) || v != (int)v || v < 0 || v >= n_vocab) {
            fprintf(stderr, "error: element %d is not a token id of this model (0..%d)\n", idx, n_vocab - 1);
            rc = 1;
            break;
        }
        int k = sp_detokenizer_push(&d, (sp_token)v, buf, sizeof buf);
        if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
        idx++;
    }
    int k = sp_detokenizer_flush(&d, buf, sizeof buf);
    if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
    cJSON_Delete(arr);
    sp_model_free(m);
    return rc;
}
