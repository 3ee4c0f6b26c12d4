/* `specprefill logits`: the engine's raw output for a fixed input, for comparing engines.
 * Interface is stable: case file in the fixtures' format, {"logits": [[...], ...]} on stdout. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"

static int *int_array(const cJSON *a, int *n, int max) {
    *n = cJSON_GetArraySize(a);
    int *v = malloc(((size_t)*n + 1) * sizeof *v);
    if (!v) return NULL;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        double d = cJSON_GetNumberValue(it);
        if (!cJSON_IsNumber(it) || d != (int)d || d < 0 || d > max) { free(v); return NULL; }
        v[i++] = (int)d;
    }
    return v;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *case_path = NULL;
    int threads = 0, kv_type = 0;
    cli_rope rope = {0, 0, 0};
    sp_model_params load = sp_model_default_params();
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model (GGUF)"),
        CLI_OPT("--case", NULL, CLI_TEXT, &case_path, 0, 0, "CASE.json", "the batches to decode"),
        CLI_KV_TYPE_OPTION(&kv_type),
        CLI_THREADS_OPTION(&threads),
        CLI_LOAD_OPTIONS(&load),
        CLI_ROPE_OPTIONS(&rope),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"logits -m MODEL.gguf --case CASE.json [options]",
                             "CASE.json: {\"tokens\": [[ids of batch 0], ...], \"positions\": [[...], ...], \"logits_batch\": K}\n"
                             "decodes the batches in order into one sequence and prints {\"logits\": [[...], ...]}:\n"
                             "one row of n_vocab floats per token of batch K",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!model_path || !case_path) { fprintf(stderr, "error: -m MODEL and --case FILE are required\n"); return 2; }
    if (sp_set_threads(threads) != SP_OK) return fail_status("threads");
    char *text = read_file(case_path, NULL);
    if (!text) return 1;
    cJSON *c = cJSON_Parse(text);
    free(text);
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(c, "tokens");
    const cJSON *positions = cJSON_GetObjectItemCaseSensitive(c, "positions");
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(c, "logits_batch");
    int n_batches = cJSON_GetArraySize(tokens);
    if (!cJSON_IsArray(tokens) || !cJSON_IsArray(positions) || cJSON_GetArraySize(positions) != n_batches || n_batches == 0) {
        fprintf(stderr, "error: %s: needs \"tokens\" and \"positions\", lists of equally many batches\n", case_path);
        cJSON_Delete(c);
        return 1;
    }
    int logits_batch = n_batches - 1;
    if (lb) {
        double d = cJSON_GetNumberValue(lb);
        if (!cJSON_IsNumber(lb) || d != (int)d || d < 0 || d >= n_batches) {
            fprintf(stderr, "error: %s: logits_batch must name one of the %d batches\n", case_path, n_batches);
            cJSON_Delete(c);
            return 1;
        }
        logits_batch = (int)d;
    }
    sp_model *m;
    if (sp_model_load_with(model_path, &load, &m) != SP_OK) { cJSON_Delete(c); return fail_status("loading model"); }
    const int n_vocab = sp_model_get_info(m)->n_vocab;
    int total = 0;
    for (int b = 0; b < n_batches; b++) total += cJSON_GetArraySize(cJSON_GetArrayItem(tokens, b));
    sp_context_params cp = sp_context_default_params();
    cp.kv_type = kv_type == 1 ? SP_KV_F32 : SP_KV_F16;
    cli_rope_apply(&rope, &cp);
    cp.n_ctx = total > 0 ? total : 1;
    sp_context *ctx = NULL;
    int rc = 0;
    if (sp_context_new(m, &cp, &ctx) != SP_OK) { rc = fail_status("context"); goto done; }
    sp_context_fit_rope(ctx, total); /* the case is one sequence: scaled as generate would scale it */
    for (int b = 0; b < n_batches && rc == 0; b++) {
        int n, np;
        int *tok = int_array(cJSON_GetArrayItem(tokens, b), &n, n_vocab - 1);
        int *pos = int_array(cJSON_GetArrayItem(positions, b), &np, 1 << 30);
        if (!tok || !pos || n != np) {
            fprintf(stderr, "error: %s: batch %d: tokens must be ids of this model (0..%d) and positions non-negative, equally many\n",
                    case_path, b, n_vocab - 1);
            rc = 1;
        } else if (b == logits_batch) {
            float *logits = malloc((size_t)n * n_vocab * sizeof *logits);
            int32_t *rows = malloc((size_t)n * sizeof *rows + 1);
            for (int r = 0; logits && rows && r < n; r++) rows[r] = r;
            if (!logits || !rows) { fprintf(stderr, "error: out of memory\n"); rc = 1; }
            else if (sp_decode(ctx, tok, pos, n, rows, n, logits) != SP_OK) rc = fail_status("decode");
            else {
                printf("{\"logits\": [");
                for (int r = 0; r < n; r++) {
                    printf(r ? ",\n[" : "\n[");
                    for (int k = 0; k < n_vocab; k++) printf(k ? ", %.7g" : "%.7g", logits[(size_t)r * n_vocab + k]);
                    printf("]");
                }
                printf("]}\n");
            }
            free(logits);
            free(rows);
        } else if (sp_decode(ctx, tok, pos, n, NULL, 0, NULL) != SP_OK) {
            rc = fail_status("decode");
        }
        free(tok);
        free(pos);
    }
done:
    sp_context_free(ctx);
    sp_model_free(m);
    cJSON_Delete(c);
    return rc;
}
