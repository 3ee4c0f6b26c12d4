/* The smallest program on the installed library: load a model, tokenize a prompt, prefill it and
 * print the most likely next token. Built by CI against the installed library via pkg-config:
 *   cc hello.c $(pkg-config --cflags --libs specprefill) -o hello && ./hello model.gguf "Hello"  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <specprefill.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]);
        return 2;
    }
    sp_model *model = NULL;
    sp_context *ctx = NULL;
    sp_token *ids = NULL;
    float *logits = NULL;
    int n = 0, rc = 1;
    if (sp_model_load(argv[1], &model) != SP_OK) goto fail;
    if (sp_tokenize(model, argv[2], strlen(argv[2]), true, false, &ids, &n) != SP_OK) goto fail;
    if (n == 0) { fprintf(stderr, "error: the prompt has no tokens\n"); goto done; }
    if (sp_context_new(model, NULL, &ctx) != SP_OK) goto fail;
    const int n_vocab = sp_model_get_info(model)->n_vocab;
    int32_t *pos = malloc(sizeof *pos * (size_t)n), last = n - 1;
    logits = malloc(sizeof *logits * (size_t)n_vocab);
    if (!pos || !logits) { free(pos); fprintf(stderr, "error: out of memory\n"); goto done; }
    for (int i = 0; i < n; i++) pos[i] = i;
    sp_status st = sp_decode(ctx, ids, pos, n, &last, 1, logits);
    free(pos);
    if (st != SP_OK) goto fail;
    int best = 0;
    for (int i = 1; i < n_vocab; i++) if (logits[i] > logits[best]) best = i;
    char piece[256];
    int len = sp_token_to_bytes(model, best, true, piece, sizeof piece);
    printf("libspecprefill %s: %d prompt tokens; next token %d '%.*s'\n", sp_version(), n, best, len > 0 ? len : 0, piece);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", sp_last_error());
done:
    free(logits);
    free(ids);
    sp_context_free(ctx);
    sp_model_free(model);
    return rc;
}
