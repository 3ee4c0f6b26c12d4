/* The front ends' shared layer (common/): prompt preparation, the one prefill entry, and the
 * generated text with stop strings that the CLI and the server stream. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "test_util.h"

#define BUNDLED SP_SOURCE_DIR "/models/main.gguf" /* llama3 template, add_bos, BOS 1110 */

/* Feeds text's tokens one by one; returns the pieces joined (streamed) and checks that no piece
 * ever shows a stop string or the start of one that then completes. */
static char *stream(const sp_model *m, const char *text, const char *const *stops, int n_stops, spc_text *t) {
    sp_token *ids;
    int n;
    assert_int_equal(sp_tokenize(m, text, strlen(text), false, false, &ids, &n), SP_OK);
    assert_int_equal(spc_text_init(t, m, stops, n_stops), SP_OK);
    char *shown = calloc(strlen(text) + 8, 1);
    size_t len;
    const char *piece;
    for (int i = 0; i < n && !t->stopped; i++) {
        assert_int_equal(spc_text_add(t, ids[i]), SP_OK);
        piece = spc_text_piece(t, false, &len);
        strncat(shown, piece, len);
        for (int s = 0; s < n_stops; s++) if (*stops[s]) assert_null(strstr(shown, stops[s]));
    }
    assert_int_equal(spc_text_add(t, -1), SP_OK);
    piece = spc_text_piece(t, true, &len);
    strncat(shown, piece, len);
    free(ids);
    return shown;
}

static void stop_strings_cut_and_hold_back(void **st) {
    (void)st;
    sp_model *m;
    assert_int_equal(sp_model_load(BUNDLED, &m), SP_OK);
    spc_text t;
    const char *stops[] = {"room 48", "\n\n", ""};
    char *shown = stream(m, "The office is room 4821 on floor 3.\n\nNext", stops, 3, &t);
    assert_string_equal(shown, "The office is ");
    assert_string_equal(t.text, "The office is ");
    assert_true(t.stopped);
    spc_text_free(&t);
    free(shown);
    /* a near miss is shown in full once it cannot become a stop string */
    shown = stream(m, "The room 4 and room 47 are free.", stops, 2, &t);
    assert_string_equal(shown, "The room 4 and room 47 are free.");
    assert_false(t.stopped);
    spc_text_free(&t);
    free(shown);
    /* multi-byte characters stay whole in every piece; no stops: each token shows at once */
    const char *utf8 = "日本語 👩‍👩‍👧 ok";
    shown = stream(m, utf8, NULL, 0, &t);
    assert_string_equal(shown, utf8);
    spc_text_free(&t);
    free(shown);
    const char *many[SPC_MAX_STOPS + 1] = {0};
    assert_int_equal(spc_text_init(&t, m, many, SPC_MAX_STOPS + 1), SP_ERR_ARGUMENT);
    sp_model_free(m);
}

static void prompts_have_one_bos(void **st) {
    (void)st;
    sp_model *m;
    assert_int_equal(sp_model_load(BUNDLED, &m), SP_OK);
    spc_prompt p;
    sp_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Hi <|eot_id|>"}};
    /* the llama3 template writes <|begin_of_text|> itself and the model adds BOS: one BOS */
    assert_int_equal(spc_prompt_make(m, true, NULL, NULL, msgs, 2, &p), SP_OK);
    assert_int_equal(p.ids[0], 1110);
    assert_int_not_equal(p.ids[1], 1110);
    assert_non_null(strstr(p.text, "<|start_header_id|>assistant<|end_header_id|>"));
    int eot = 0;
    for (int i = 0; i < p.n; i++) eot += p.ids[i] == 1112;
    assert_int_equal(eot, 3); /* the template's two, and the user's own: chat text is read as markup */
    spc_prompt_free(&p);
    /* plain text: BOS added once, markup stays text */
    sp_chat_message plain = {"user", "Hi <|eot_id|>"};
    assert_int_equal(spc_prompt_make(m, false, NULL, NULL, &plain, 1, &p), SP_OK);
    assert_int_equal(p.ids[0], 1110);
    for (int i = 1; i < p.n; i++) assert_int_not_equal(p.ids[i], 1112);
    assert_string_equal(p.text, "Hi <|eot_id|>");
    spc_prompt_free(&p);
    assert_int_equal(spc_prompt_make(m, true, "{% if %}", NULL, msgs, 2, &p), SP_ERR_ARGUMENT);
    assert_null(p.ids);
    sp_model_free(m);
}

/* The one prefill entry is sp_decode of the whole prompt, or sp_specprefill: bit for bit. */
static void one_prefill_entry(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    spc_prompt p = {0};
    sp_chat_message doc = {"user", "The access code of Maria Lopez is 48213. The weather is fine. What is the code?"};
    assert_int_equal(spc_prompt_make(m, false, NULL, NULL, &doc, 1, &p), SP_OK);
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = 256;
    sp_context *a, *b, *d;
    assert_int_equal(sp_context_new(m, &cp, &a), SP_OK);
    assert_int_equal(sp_context_new(m, &cp, &b), SP_OK);
    sp_specprefill_params sp = sp_specprefill_default_params();
    sp.chunk = 4;
    cp.n_ctx = spc_draft_ctx_size(p.n, &sp, false);
    assert_int_equal(cp.n_ctx, p.n + sp.lookahead);
    assert_int_equal(sp_context_new(m, &cp, &d), SP_OK);
    float la[TEST_VOCAB], lb[TEST_VOCAB];
    int32_t *pos = malloc(sizeof *pos * (size_t)p.n), last = p.n - 1;
    for (int i = 0; i < p.n; i++) pos[i] = i;
    sp_specprefill_stats s;
    assert_int_equal(spc_prefill(a, NULL, &p, NULL, &sp, la, NULL, NULL, &s), SP_OK);
    assert_int_equal(sp_decode(b, p.ids, pos, p.n, &last, 1, lb), SP_OK);
    assert_memory_equal(la, lb, sizeof la);
    assert_int_equal(s.n_kept, p.n);
    assert_int_equal(sp_context_n_cached(a), p.n);
    /* speculative (self-speculation), after a full prefill in the same context: it resets it */
    assert_int_equal(spc_prefill(a, d, &p, NULL, &sp, la, NULL, NULL, &s), SP_OK);
    sp_context_reset(b);
    assert_int_equal(sp_specprefill(b, d, p.ids, p.n, p.text, &sp, lb, NULL, NULL, NULL), SP_OK);
    assert_memory_equal(la, lb, sizeof la);
    assert_true(s.n_kept < p.n);
    assert_int_equal(sp_context_n_cached(a), s.n_kept);
    /* full prefill reusing a full prefill's cache: the start that is this prompt stays (never
     * the last token, whose logits are needed), a sparse cache only up to its first gap, and
     * reuse 0 starts afresh; the logits are the cold ones */
    assert_int_equal(spc_prefill(a, NULL, &p, NULL, NULL, la, NULL, NULL, NULL), SP_OK);
    spc_prompt q = {p.text, malloc(sizeof(sp_token) * (size_t)(p.n + 3)), p.n + 3};
    memcpy(q.ids, p.ids, sizeof(sp_token) * (size_t)p.n);
    q.ids[p.n] = 40, q.ids[p.n + 1] = 41, q.ids[p.n + 2] = 42;
    int32_t *qpos = malloc(sizeof *qpos * (size_t)q.n), qlast = q.n - 1;
    for (int i = 0; i < q.n; i++) qpos[i] = i;
    assert_int_equal(spc_prefill(a, NULL, &q, &(spc_reuse){q.n, false}, NULL, la, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_reused, p.n);
    sp_context_reset(b);
    assert_int_equal(sp_decode(b, q.ids, qpos, q.n, &qlast, 1, lb), SP_OK);
    float diff = 0;
    for (int i = 0; i < TEST_VOCAB; i++) diff = fmaxf(diff, fabsf(la[i] - lb[i]));
    assert_true(diff < 1e-4f);
    assert_int_equal(spc_prefill(a, NULL, &q, &(spc_reuse){q.n, false}, NULL, la, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_reused, q.n - 1);
    assert_int_equal(spc_prefill(a, NULL, &q, NULL, NULL, la, NULL, NULL, &s), SP_OK);
    assert_int_equal(s.n_reused, 0);
    assert_int_equal(spc_prefill(a, d, &p, NULL, &sp, la, NULL, NULL, &s), SP_OK); /* sparse */
    assert_int_equal(spc_prefill(a, NULL, &q, &(spc_reuse){q.n, false}, NULL, la, NULL, NULL, &s), SP_OK);
    assert_true(s.n_reused < p.n);
    assert_int_equal(sp_context_n_cached(a), q.n);
    free(q.ids);
    free(qpos);
    free(pos);
    spc_prompt_free(&p);
    sp_context_free(a); sp_context_free(b); sp_context_free(d);
    sp_model_free(m);
}

/* A prompt longer than the full prefill's piece of 4096 positions: every token at its own
 * position, the same logits as one sp_decode of the whole prompt. */
static void long_full_prefill(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    enum { N = 4200 };
    spc_prompt p = {NULL, malloc(sizeof(sp_token) * N), N};
    int32_t *pos = malloc(sizeof *pos * N), last = N - 1;
    for (int i = 0; i < N; i++) { p.ids[i] = 40 + (i * 7) % 500; pos[i] = i; }
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = N;
    sp_context *a, *b;
    assert_int_equal(sp_context_new(m, &cp, &a), SP_OK);
    assert_int_equal(sp_context_new(m, &cp, &b), SP_OK);
    float la[TEST_VOCAB], lb[TEST_VOCAB];
    assert_int_equal(spc_prefill(a, NULL, &p, NULL, NULL, la, NULL, NULL, NULL), SP_OK);
    assert_int_equal(sp_decode(b, p.ids, pos, N, &last, 1, lb), SP_OK);
    float diff = 0;
    for (int i = 0; i < TEST_VOCAB; i++) diff = fmaxf(diff, fabsf(la[i] - lb[i]));
    assert_true(diff < 1e-4f);
    free(pos);
    spc_prompt_free(&p);
    sp_context_free(a); sp_context_free(b);
    sp_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stop_strings_cut_and_hold_back), cmocka_unit_test(prompts_have_one_bos),
        cmocka_unit_test(one_prefill_entry), cmocka_unit_test(long_full_prefill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
