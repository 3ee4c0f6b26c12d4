/* Tokenizers against llama.cpp's ids for three real vocabularies (../shared: skipped without it;
 * tests/test_reference.sh checks against Hugging Face's tokenizers from a clone alone);
 * detokenization and bad input on the bundled models' vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static void check_vocab(const char *vocab, const char *cases) {
    SKIP_WITHOUT_SHARED();
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/tokenizer/%s", SP_SHARED_DIR, vocab);
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    snprintf(path, sizeof path, "%s/fixtures/tokenizer/%s", SP_SHARED_DIR, cases);
    /* cJSON strings end at NUL, so the escape \u0000 becomes a 3-byte marker, undone below */
    size_t raw_len;
    char *raw = slurp(path, &raw_len);
    assert_non_null(raw);
    char *esc = malloc(raw_len * 3 + 1), *w = esc;
    for (const char *p = raw; *p;) {
        if (strncmp(p, "\\u0000", 6) == 0 && (p == raw || p[-1] != '\\')) {
            memcpy(w, "\\u0001\\u0002\\u0003", 18);
            w += 18;
            p += 6;
        } else {
            *w++ = *p++;
        }
    }
    *w = 0;
    free(raw);
    raw = esc;
    cJSON *all = cJSON_Parse(raw);
    free(raw);
    assert_non_null(all);
    int n_cases = 0, bad = 0, roundtrip_bad = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, all) {
        char text[4096];
        size_t len = 0;
        for (const char *p = cJSON_GetObjectItem(e, "text")->valuestring; *p && len < sizeof text; p++) {
            if (p[0] == 1 && p[1] == 2 && p[2] == 3) { text[len++] = 0; p += 2; }
            else text[len++] = *p;
        }
        const bool parse_special = cJSON_IsTrue(cJSON_GetObjectItem(e, "parse_special"));
        sp_token *ids;
        int n;
        assert_int_equal(sp_tokenize(m, text, len, false, parse_special, &ids, &n), SP_OK);
        const cJSON *want = cJSON_GetObjectItem(e, "ids");
        bool same = n == cJSON_GetArraySize(want);
        for (int i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
        if (!same) {
            bad++;
            printf("  %s: mismatch on '%.*s'\n", vocab, (int)len, text);
        }
        /* decoding the ids gives the text back (SentencePiece adds one leading space) */
        if (!parse_special) {
            char *out = malloc(len * 4 + 64);
            size_t o = 0;
            for (int i = 0; i < n; i++) {
                int k = sp_token_to_bytes(m, ids[i], true, out + o, (int)(len * 4 + 64 - o));
                assert_true(k >= 0);
                o += (size_t)k;
            }
            const char *got = out;
            if (strstr(vocab, "spm") && o > 0 && out[0] == ' ') { got++; o--; }
            if (o != len || memcmp(got, text, len) != 0) roundtrip_bad++;
            free(out);
        }
        free(ids);
        n_cases++;
    }
    printf("  %s: %d of %d texts tokenized as llama.cpp does; %d round-trip failures\n", vocab, n_cases - bad, n_cases, roundtrip_bad);
    assert_int_equal(bad, 0);
    assert_int_equal(roundtrip_bad, 0);
    assert_int_equal(n_cases, 242);
    cJSON_Delete(all);
    sp_model_free(m);
}

static void llama3(void **s) { (void)s; check_vocab("vocab-llama3.gguf", "tokenizer-llama3.json"); }
static void qwen2(void **s) { (void)s; check_vocab("vocab-qwen2.gguf", "tokenizer-qwen2.json"); }
static void llama_spm(void **s) { (void)s; check_vocab("vocab-llama-spm.gguf", "tokenizer-llama-spm.json"); }

#define BUNDLED_VOCAB SP_SOURCE_DIR "/models/main.gguf" /* byte-level BPE, llama-bpe, 1115 tokens */

static void invalid_utf8_is_an_error(void **s) {
    (void)s;
    sp_model *m;
    assert_int_equal(sp_model_load(BUNDLED_VOCAB, &m), SP_OK);
    static const char *const bad[] = {"abc\xff", "\xc0\x80", "\xed\xa0\x80", "x\xe2\x82", "\xf4\x90\x80\x80", "\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sp_token *ids = NULL;
        int n = -1;
        assert_int_equal(sp_tokenize(m, bad[i], strlen(bad[i]), true, true, &ids, &n), SP_ERR_ARGUMENT);
        assert_null(ids);
        assert_non_null(strstr(sp_last_error(), "invalid UTF-8"));
    }
    sp_model_free(m);
}

static void add_special_adds_bos(void **s) {
    (void)s;
    sp_model *m;
    assert_int_equal(sp_model_load(BUNDLED_VOCAB, &m), SP_OK);
    sp_token *ids;
    int n;
    assert_int_equal(sp_tokenize(m, "Hi", 2, true, false, &ids, &n), SP_OK);
    assert_true(n >= 2);
    assert_int_equal(ids[0], 1110);
    for (int i = 1; i < n; i++) assert_int_not_equal(ids[i], 1110);
    free(ids);
    assert_true(sp_token_is_eog(m, 1112)); /* <|eot_id|> */
    assert_true(sp_token_is_eog(m, 1111));
    assert_false(sp_token_is_eog(m, 1113)); /* <|start_header_id|>: control, not an end */
    assert_false(sp_token_is_eog(m, 100));
    sp_model_free(m);
}

/* A character split over two tokens is emitted whole, never half. */
static void streaming_never_splits_utf8(void **s) {
    (void)s;
    sp_model *m;
    assert_int_equal(sp_model_load(BUNDLED_VOCAB, &m), SP_OK);
    const char *text = "日本語の文章と絵文字 👩‍👩‍👧 🇫🇷 ok";
    sp_token *ids;
    int n;
    assert_int_equal(sp_tokenize(m, text, strlen(text), false, false, &ids, &n), SP_OK);
    sp_detokenizer d;
    sp_detokenizer_init(&d, m, false);
    char out[512], piece[64];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        int k = sp_detokenizer_push(&d, ids[i], piece, sizeof piece);
        assert_true(k >= 0);
        /* every emitted piece is itself valid UTF-8 */
        for (int j = 0; j < k;) {
            int cl = 0;
            unsigned char c = (unsigned char)piece[j];
            cl = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
            assert_true(j + cl <= k);
            j += cl;
        }
        memcpy(out + o, piece, (size_t)k);
        o += (size_t)k;
    }
    assert_int_equal(sp_detokenizer_flush(&d, piece, sizeof piece), 0);
    assert_int_equal(o, strlen(text));
    assert_memory_equal(out, text, o);
    free(ids);
    sp_model_free(m);
}

/* sp_detokenizer_append: the same text as push, grown from NULL (tokens longer than its internal
 * buffer included), and a trailing half character flushed as U+FFFD. */
static void check_appending(const char *vocab) {
    sp_model *m;
    assert_int_equal(sp_model_load(vocab, &m), SP_OK);
    char text[400];
    memset(text, ' ', 200); /* runs of spaces are single long tokens in Llama 3's vocabulary */
    snprintf(text + 200, sizeof text - 200, "a long run of spaces, then 日本語 👩‍👩‍👧");
    sp_token *ids;
    int n;
    assert_int_equal(sp_tokenize(m, text, strlen(text), false, false, &ids, &n), SP_OK);
    sp_detokenizer d;
    sp_detokenizer_init(&d, m, false);
    char *out = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < n; i++) assert_true(sp_detokenizer_append(&d, ids[i], &out, &len, &cap) >= 0);
    assert_int_equal(sp_detokenizer_append(&d, -1, &out, &len, &cap), 0);
    assert_string_equal(out, text);
    /* the first token of a character spelt over several tokens: pending, then U+FFFD on flush */
    sp_token *part;
    int n_part;
    assert_int_equal(sp_tokenize(m, "🇫", strlen("🇫"), false, false, &part, &n_part), SP_OK);
    assert_true(n_part >= 2);
    assert_int_equal(sp_detokenizer_append(&d, part[0], &out, &len, &cap), 0);
    free(part);
    assert_int_equal(sp_detokenizer_append(&d, -1, &out, &len, &cap), 3);
    assert_memory_equal(out + len - 3, "\xef\xbf\xbd", 3);
    free(out);
    free(ids);
    sp_model_free(m);
}

static void appending_detokenizer(void **s) {
    (void)s;
    check_appending(BUNDLED_VOCAB);
    /* Llama 3's vocabulary has single tokens longer than the appender's 64-byte buffer */
    if (shared_present()) check_appending(SHARED("fixtures/tokenizer/vocab-llama3.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appending_detokenizer),
        cmocka_unit_test(llama3), cmocka_unit_test(qwen2), cmocka_unit_test(llama_spm),
        cmocka_unit_test(invalid_utf8_is_an_error), cmocka_unit_test(add_special_adds_bos),
        cmocka_unit_test(streaming_never_splits_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
