/* libFuzzer target: tokenize arbitrary bytes with a real vocabulary (first byte picks the
 * vocabulary and flags), then detokenize the result. Vocabularies come from SP_FUZZ_VOCABS
 * (colon-separated GGUF paths; those that do not load are left out), by default the bundled
 * models' (llama-bpe), SmolLM2's (smollm; scripts/get-models.sh) and, where ../shared is, the
 * Llama 3, Qwen2 and SentencePiece fixtures — paths from the repository root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "specprefill.h"

#define MAX_VOCABS 8
static sp_model *models[MAX_VOCABS];
static int n_models;

static void init(void) {
    const char *env = getenv("SP_FUZZ_VOCABS");
    static char paths[2048];
    strncpy(paths, env ? env : "models/main.gguf:models-big/SmolLM2-135M-Instruct.Q4_1.gguf:../shared/fixtures/tokenizer/vocab-llama3.gguf:"
                               "../shared/fixtures/tokenizer/vocab-qwen2.gguf:../shared/fixtures/tokenizer/vocab-llama-spm.gguf", sizeof paths - 1);
    for (char *p = strtok(paths, ":"); p && n_models < MAX_VOCABS; p = strtok(NULL, ":"))
        if (sp_model_load(p, &models[n_models]) == SP_OK) n_models++;
    if (n_models == 0) { /* a run from another folder finds none: say so, not just "deadly signal" */
        fprintf(stderr, "fuzz_tokenizer: no vocabulary loaded; run it from the repository root or set SP_FUZZ_VOCABS\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n_models) init();
    if (size == 0) return 0;
    sp_model *m = models[data[0] % n_models];
    bool parse_special = data[0] & 4, add_special = data[0] & 8;
    sp_token *ids = NULL;
    int n = 0;
    if (sp_tokenize(m, (const char *)data + 1, size - 1, add_special, parse_special, &ids, &n) == SP_OK) {
        /* back to text, rendering special tokens or not (data[0] & 16) */
        sp_detokenizer d;
        sp_detokenizer_init(&d, m, data[0] & 16);
        char *text = NULL;
        size_t len = 0, cap = 0;
        for (int i = 0; i < n; i++) sp_detokenizer_append(&d, ids[i], &text, &len, &cap);
        sp_detokenizer_append(&d, -1, &text, &len, &cap);
        if (text && strlen(text) > len) __builtin_trap(); /* the length it reports is the text's */
        free(text);
        free(ids);
    }
    return 0;
}
