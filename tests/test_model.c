/* The library API's contract: positions, logit rows, batching, errors, sampling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "test_util.h"

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* Asking for some rows (any order) gives exactly those rows of the full output; one big batch,
 * micro-batches, and one token at a time agree. */
static void logit_rows_and_batching(void **st) {
    (void)st;
    sp_model *m = load_test_model("qwen2-f16");
    const int V = sp_model_get_info(m)->n_vocab, n = 40;
    sp_token tok[40];
    int32_t pos[40], all[40];
    for (int i = 0; i < n; i++) { tok[i] = (i * 37 + 11) % 1000; pos[i] = i * 3; all[i] = i; }
    float *full = malloc(sizeof(float) * (size_t)n * V), *some = malloc(sizeof(float) * 3 * (size_t)V);
    sp_context *c;
    sp_context_params p = sp_context_default_params();
    p.n_ctx = 64;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    assert_int_equal(sp_decode(c, tok, pos, n, all, n, full), SP_OK);
    assert_int_equal(sp_context_n_cached(c), n);
    assert_int_equal(sp_context_last_pos(c), 117);
    sp_context_reset(c);
    int32_t rows[3] = {39, 0, 17};
    assert_int_equal(sp_decode(c, tok, pos, n, rows, 3, some), SP_OK);
    /* same hidden states; the output GEMM may group rows differently, so rounding may differ */
    for (int r = 0; r < 3; r++) assert_true(max_diff(some + (size_t)r * V, full + (size_t)rows[r] * V, (size_t)V) < 1e-5);
    /* one token at a time through the decode (GEMV) path */
    sp_context_reset(c);
    for (int i = 0; i < n; i++) {
        int32_t row = 0;
        assert_int_equal(sp_decode(c, tok + i, pos + i, 1, &row, 1, some), SP_OK);
        double d = max_diff(some, full + (size_t)i * V, (size_t)V);
        if (d > 2e-4) fail_msg("token %d decoded alone differs by %g", i, d);
    }
    sp_context_free(c);
    /* tiny micro-batches */
    p.n_batch = 7;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    float *again = malloc(sizeof(float) * (size_t)n * V);
    assert_int_equal(sp_decode(c, tok, pos, n, all, n, again), SP_OK);
    assert_true(max_diff(again, full, (size_t)n * V) < 2e-4);
    sp_context_free(c);
    free(full); free(some); free(again);
    sp_model_free(m);
}

/* Decoding at a long context (the decode attention splits the keys into chunks of 256 across
 * tasks and merges them): one token at a time agrees with the prefill's logits, and a few tokens
 * decoded together — rows on both sides of a chunk boundary — give each row bit for bit what it
 * gets decoded alone (speculative decoding's check and a server's batch rely on it). */
static void decode_at_long_context(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    const int V = sp_model_get_info(m)->n_vocab, n = 780;
    sp_token *tok = malloc(sizeof *tok * (size_t)n);
    int32_t *pos = malloc(sizeof *pos * (size_t)n), *all = malloc(sizeof *all * (size_t)n);
    for (int i = 0; i < n; i++) { tok[i] = (i * 37 + 11) % 1000; pos[i] = i; all[i] = i; }
    float *full = malloc(sizeof(float) * (size_t)n * V), *one = malloc(sizeof(float) * 4 * (size_t)V), *four = malloc(sizeof(float) * 4 * (size_t)V);
    sp_context *c;
    sp_context_params p = sp_context_default_params();
    p.n_ctx = 1024;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    if (sp_decode(c, tok, pos, n, all, n, full) != SP_OK) fail_msg("prefill: %s", sp_last_error());
    const int starts[3] = {253, 510, 766}; /* each group of four crosses a multiple of 256 */
    for (int s = 0; s < 3; s++) {
        const int b = starts[s];
        int32_t rows[4] = {0, 1, 2, 3};
        sp_context_reset(c);
        assert_int_equal(sp_decode(c, tok, pos, b, NULL, 0, NULL), SP_OK);
        for (int i = 0; i < 4; i++) {
            int32_t row = 0;
            assert_int_equal(sp_decode(c, tok + b + i, pos + b + i, 1, &row, 1, one + (size_t)i * V), SP_OK);
            const double d = max_diff(one + (size_t)i * V, full + (size_t)(b + i) * V, (size_t)V);
            if (d > 2e-4) fail_msg("token %d decoded alone differs from the prefill by %g", b + i, d);
        }
        assert_int_equal(sp_context_truncate(c, b), SP_OK);
        assert_int_equal(sp_decode(c, tok + b, pos + b, 4, rows, 4, four), SP_OK);
        for (int i = 0; i < 4; i++)
            if (memcmp(one + (size_t)i * V, four + (size_t)i * V, sizeof(float) * (size_t)V) != 0)
                fail_msg("token %d: decoded among four it differs from decoded alone by %g", b + i,
                         max_diff(one + (size_t)i * V, four + (size_t)i * V, (size_t)V));
    }
    sp_context_free(c);
    free(tok); free(pos); free(all); free(full); free(one); free(four);
    sp_model_free(m);
}

/* Truncating the cache and re-decoding gives the same logits as the first time. */
static void truncate_and_redo(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-q8_0");
    const int V = sp_model_get_info(m)->n_vocab;
    sp_context *c;
    assert_int_equal(sp_context_new(m, NULL, &c), SP_OK);
    sp_token tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7}, last = 3;
    float a[TEST_VOCAB], b[TEST_VOCAB];
    assert_int_equal(sp_decode(c, tok, pos, 4, NULL, 0, NULL), SP_OK);
    assert_int_equal(sp_decode(c, tok + 4, pos + 4, 4, &last, 1, a), SP_OK);
    assert_int_equal(sp_context_truncate(c, 4), SP_OK);
    assert_int_equal(sp_decode(c, tok + 4, pos + 4, 4, &last, 1, b), SP_OK);
    assert_memory_equal(a, b, sizeof(float) * (size_t)V);
    assert_int_equal(sp_context_truncate(c, 99), SP_ERR_ARGUMENT);
    sp_context_free(c);
    sp_model_free(m);
}

/* A decode step of several sequences at once gives each sequence what sp_decode gives it alone,
 * bit for bit —
 * with caches of different lengths and position gaps, over several steps, in one micro-batch and
 * in micro-batches smaller than the number of sequences — and refuses bad calls without touching
 * any cache. */
static void decode_sequences(void **st) {
    (void)st;
    const char *fixtures[] = {"llama-q8_0", "qwen2-f16"};
    for (int f = 0; f < 2; f++) {
        sp_model *m = load_test_model(fixtures[f]);
        const int V = sp_model_get_info(m)->n_vocab, n_seq = 3;
        sp_context_params p = sp_context_default_params();
        p.n_ctx = 32;
        /* Q8_0: the three rows in one micro-batch; F16: micro-batches of 2 + 1 rows. Up to 4 rows a
         * matrix product dots each token as a decode does, so the logits are the same bit for bit. */
        p.n_batch = f == 0 ? 3 : 2;
        sp_context *batched[3], *alone[3];
        int32_t next_pos[3];
        for (int s = 0; s < n_seq; s++) {
            assert_int_equal(sp_context_new(m, &p, &batched[s]), SP_OK);
            assert_int_equal(sp_context_new(m, &p, &alone[s]), SP_OK);
            sp_token tok[12];
            int32_t pos[12];
            const int n = 3 + 4 * s; /* different cache lengths, gapped positions */
            for (int i = 0; i < n; i++) { tok[i] = (i * 31 + 7 * s + 3) % 200; pos[i] = i * (s + 1); }
            assert_int_equal(sp_decode(batched[s], tok, pos, n, NULL, 0, NULL), SP_OK);
            assert_int_equal(sp_decode(alone[s], tok, pos, n, NULL, 0, NULL), SP_OK);
            next_pos[s] = pos[n - 1] + 1 + s;
        }
        float *together = malloc(sizeof(float) * (size_t)n_seq * V), *single = malloc(sizeof(float) * (size_t)V);
        for (int step = 0; step < 4; step++) {
            sp_token tok[3];
            for (int s = 0; s < n_seq; s++) tok[s] = (step * 13 + s * 5 + 1) % 200;
            assert_int_equal(sp_decode_sequences(batched, tok, next_pos, n_seq, together), SP_OK);
            for (int s = 0; s < n_seq; s++) {
                int32_t row = 0;
                assert_int_equal(sp_decode(alone[s], tok + s, next_pos + s, 1, &row, 1, single), SP_OK);
                double d = max_diff(together + (size_t)s * V, single, (size_t)V);
                if (d != 0) fail_msg("%s: sequence %d at step %d differs by %g", fixtures[f], s, step, d);
                assert_int_equal(sp_context_n_cached(batched[s]), sp_context_n_cached(alone[s]));
                assert_int_equal(sp_context_last_pos(batched[s]), next_pos[s]);
                next_pos[s]++;
            }
        }
        /* bad calls: a context twice, a full context, a token outside the vocabulary */
        sp_context *twice[2] = {batched[0], batched[0]};
        sp_token tok2[2] = {1, 2};
        int32_t pos2[2] = {50, 51};
        int cached0 = sp_context_n_cached(batched[0]);
        assert_int_equal(sp_decode_sequences(twice, tok2, pos2, 2, together), SP_ERR_ARGUMENT);
        assert_non_null(strstr(sp_last_error(), "twice"));
        sp_token big[2] = {1, 50000};
        assert_int_equal(sp_decode_sequences(batched, big, pos2, 2, together), SP_ERR_ARGUMENT);
        sp_token fill[32] = {0};
        int32_t fill_pos[32];
        for (int i = 0; i < 32; i++) fill_pos[i] = 100 + i;
        assert_int_equal(sp_decode(batched[2], fill, fill_pos, 32 - sp_context_n_cached(batched[2]), NULL, 0, NULL), SP_OK);
        assert_int_equal(sp_decode_sequences(batched, tok2, pos2, 3, together), SP_ERR_CONTEXT_FULL);
        assert_int_equal(sp_context_n_cached(batched[0]), cached0); /* nothing appended by failed calls */
        for (int s = 0; s < n_seq; s++) { sp_context_free(batched[s]); sp_context_free(alone[s]); }
        free(together); free(single);
        sp_model_free(m);
    }
}

static void bad_calls_are_errors(void **st) {
    (void)st;
    sp_model *m = load_test_model("llama-f16");
    sp_context *c;
    sp_context_params p = sp_context_default_params();
    p.n_ctx = 4;
    assert_int_equal(sp_context_new(m, &p, &c), SP_OK);
    sp_token tok[5] = {1, 2, 3, 4, 5};
    int32_t pos[5] = {0, 1, 2, 3, 4}, row = 9;
    assert_int_equal(sp_decode(c, tok, pos, 5, NULL, 0, NULL), SP_ERR_CONTEXT_FULL);
    sp_token big = 5000;
    assert_int_equal(sp_decode(c, &big, pos, 1, NULL, 0, NULL), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "vocabulary"));
    int32_t neg = -1;
    assert_int_equal(sp_decode(c, tok, &neg, 1, NULL, 0, NULL), SP_ERR_ARGUMENT);
    float out[TEST_VOCAB];
    assert_int_equal(sp_decode(c, tok, pos, 2, &row, 1, out), SP_ERR_ARGUMENT);
    assert_int_equal(sp_context_n_cached(c), 0); /* nothing was appended by failed calls */
    sp_context_free(c);
    sp_model_free(m);
    /* a vocabulary-only file (the bundled model's metadata, no tensors) tokenizes but cannot run */
    sp_gguf_file *src;
    assert_int_equal(sp_gguf_open(SP_SOURCE_DIR "/models/main.gguf", false, &src), SP_OK);
    sp_gguf_writer *w = sp_gguf_writer_new();
    for (uint64_t i = 0; i < src->n_kv; i++) sp_gguf_writer_copy_kv(w, &src->kv[i]);
    char path[512];
    temp_path("vocab-only.gguf", path, sizeof path);
    assert_int_equal(sp_gguf_writer_write(w, path), SP_OK);
    sp_gguf_writer_free(w);
    sp_gguf_close(src);
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    sp_token *ids;
    int n_ids;
    assert_int_equal(sp_tokenize(m, "Hello world", 11, false, false, &ids, &n_ids), SP_OK);
    assert_true(n_ids > 0);
    free(ids);
    assert_int_equal(sp_context_new(m, NULL, &c), SP_ERR_ARGUMENT);
    sp_model_free(m);
    remove(path);
}

static void sampling(void **st) {
    (void)st;
    const int V = 100;
    float logits[100], work[100];
    for (int i = 0; i < V; i++) logits[i] = (float)sin(i * 0.7) * 3;
    int best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    sp_sampling_params p = sp_sampling_default_params();
    sp_sampler *s;
    p.temperature = 0;
    assert_int_equal(sp_sampler_new(&p, V, &s), SP_OK);
    memcpy(work, logits, sizeof work);
    assert_int_equal(sp_sampler_sample(s, work), best);
    sp_sampler_free(s);
    /* top-k 1 is greedy whatever the temperature */
    p.temperature = 5; p.top_k = 1;
    assert_int_equal(sp_sampler_new(&p, V, &s), SP_OK);
    for (int k = 0; k < 20; k++) { memcpy(work, logits, sizeof work); assert_int_equal(sp_sampler_sample(s, work), best); }
    sp_sampler_free(s);
    /* a seed fixes the sequence; draws stay in the top-k set */
    p.top_k = 5; p.top_p = 1; p.min_p = 0; p.seed = 123;
    sp_token seq1[50], seq2[50];
    for (int run = 0; run < 2; run++) {
        assert_int_equal(sp_sampler_new(&p, V, &s), SP_OK);
        for (int k = 0; k < 50; k++) {
            memcpy(work, logits, sizeof work);
            (run ? seq2 : seq1)[k] = sp_sampler_sample(s, work);
        }
        sp_sampler_free(s);
    }
    assert_memory_equal(seq1, seq2, sizeof seq1);
    int distinct = 0;
    for (int k = 0; k < 50; k++) {
        int rank = 0;
        for (int i = 0; i < V; i++) rank += logits[i] > logits[seq1[k]];
        assert_true(rank < 5);
        distinct += seq1[k] != seq1[0];
    }
    assert_true(distinct > 0);
    /* repetition penalty pushes a repeated best token down */
    p = sp_sampling_default_params();
    p.temperature = 0; p.repeat_penalty = 100;
    assert_int_equal(sp_sampler_new(&p, V, &s), SP_OK);
    sp_sampler_accept(s, best);
    memcpy(work, logits, sizeof work);
    assert_int_not_equal(sp_sampler_sample(s, work), best);
    sp_sampler_free(s);
    /* min-p is relative to the most likely token: probabilities 0.4, 0.35, 0.25 with min-p 0.5
     * keep all three (each ≥ 0.5 × 0.4); relative to 1 only the first would remain */
    p = sp_sampling_default_params();
    p.temperature = 1; p.top_k = 0; p.top_p = 1; p.min_p = 0.5f; p.seed = 7;
    assert_int_equal(sp_sampler_new(&p, 3, &s), SP_OK);
    int seen[3] = {0};
    for (int k = 0; k < 300; k++) {
        float three[3] = {logf(0.4f), logf(0.35f), logf(0.25f)};
        seen[sp_sampler_sample(s, three)]++;
    }
    sp_sampler_free(s);
    assert_true(seen[0] > 60 && seen[1] > 60 && seen[2] > 30);
    /* and drops what is below: 0.6, 0.35, 0.05 with min-p 0.1 never draws the third */
    p.min_p = 0.1f;
    assert_int_equal(sp_sampler_new(&p, 3, &s), SP_OK);
    for (int k = 0; k < 300; k++) {
        float three[3] = {logf(0.6f), logf(0.35f), logf(0.05f)};
        assert_int_not_equal(sp_sampler_sample(s, three), 2);
    }
    sp_sampler_free(s);
    p.top_p = 0;
    assert_int_equal(sp_sampler_new(&p, V, &s), SP_ERR_ARGUMENT);
}

/* Logits of a 24-token prefill and one decode step (n_vocab × 25 floats, caller frees). */
static float *prefill_and_step(sp_model *m) {
    const int V = sp_model_get_info(m)->n_vocab, n = 24;
    sp_token tok[25];
    int32_t pos[25], all[24], row = 0;
    for (int i = 0; i < 25; i++) { tok[i] = (i * 53 + 7) % (V < 1000 ? V : 1000); pos[i] = i; }
    for (int i = 0; i < n; i++) all[i] = i;
    float *out = malloc(sizeof(float) * (size_t)(n + 1) * V);
    sp_context *c;
    assert_int_equal(sp_context_new(m, NULL, &c), SP_OK);
    assert_int_equal(sp_decode(c, tok, pos, n, all, n, out), SP_OK);
    assert_int_equal(sp_decode(c, tok + n, pos + n, 1, &row, 1, out + (size_t)n * V), SP_OK);
    sp_context_free(c);
    return out;
}

/* A model read into memory (no_mmap) is the same model as the mapped file: its logits bit for bit,
 * in prefill and in decode; and the errors of a file that is not a model are the same. */
static void loaded_without_mmap(void **st) {
    (void)st;
    char path[512];
    test_model_path("llama-q8_0", path, sizeof path);
    sp_model_params mp = sp_model_default_params();
    assert_false(mp.no_mmap);
    mp.no_mmap = true;
    sp_model *mapped, *read;
    assert_int_equal(sp_model_load_with(path, NULL, &mapped), SP_OK);
    assert_int_equal(sp_model_load_with(path, &mp, &read), SP_OK);
    assert_memory_equal(sp_model_get_info(mapped), sp_model_get_info(read), sizeof(sp_model_info));
    const int V = sp_model_get_info(mapped)->n_vocab, n = 24;
    float *out[2] = {prefill_and_step(mapped), prefill_and_step(read)};
    assert_memory_equal(out[0], out[1], sizeof(float) * (size_t)(n + 1) * V);
    free(out[0]); free(out[1]);
    sp_model_free(mapped);
    sp_model_free(read);
    /* not a model: the same errors, nothing left behind */
    sp_model *m = (sp_model *)&mp;
    assert_int_equal(sp_model_load_with(SP_SOURCE_DIR "/no/such/file.gguf", &mp, &m), SP_ERR_IO);
    assert_null(m);
    assert_int_equal(sp_model_load_with(SP_SOURCE_DIR "/models", &mp, &m), SP_ERR_IO);
    temp_path("not-a-model.gguf", path, sizeof path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 100; i++) fputs("GGUF but not really ", f);
    fclose(f);
    for (int k = 0; k < 2; k++) {
        mp.no_mmap = k == 1;
        assert_int_equal(sp_model_load_with(path, &mp, &m), SP_ERR_FORMAT);
        assert_null(m);
    }
    remove(path);
}

/* --repack: a Q4_0 model's matrices rewritten at load (the layers' 14; not the output head, whose
 * 1115 rows are no whole number of groups), and tied Q4_K, Q5_K and Q6_K models' 15 (their head, which
 * is also the embedding table, looked up row by row from the interleaved groups), where the kernels have
 * the interleaved dot, mapped or read; the logits those of the file's layout within float
 * rounding — prefill's bit for bit — also on a kernel set switched to afterwards that lacks the
 * kernel. */
static void loaded_repacked(void **st) {
    (void)st;
    char paths[4][512];
    test_model_path("llama-q4_0", paths[0], sizeof paths[0]);
    make_test_model("--tied --type Q4_K --seed 3", "tied-q4_k.gguf", paths[1], sizeof paths[1]);
    make_test_model("--tied --type Q6_K --seed 4", "tied-q6_k.gguf", paths[2], sizeof paths[2]);
    make_test_model("--tied --type Q5_K --seed 5", "tied-q5_k.gguf", paths[3], sizeof paths[3]);
    const int want_repacked[4] = {2 * 7, 2 * 7 + 1, 2 * 7 + 1, 2 * 7 + 1};
    for (int f = 0; f < 4; f++) {
        sp_model_params mp = sp_model_default_params();
        assert_false(mp.repack);
        sp_model *plain, *packed;
        assert_int_equal(sp_model_load_with(paths[f], NULL, &plain), SP_OK);
        const sp_model_info *pi = sp_model_get_info(plain);
        assert_int_equal(pi->n_repacked, 0);
        const int V = pi->n_vocab, n = 24;
        float *want = prefill_and_step(plain);
        for (int k = 0; k < 2; k++) {
            mp.repack = true;
            mp.no_mmap = k == 1;
            assert_int_equal(sp_model_load_with(paths[f], &mp, &packed), SP_OK);
            const sp_model_info *ri = sp_model_get_info(packed);
            if (ri->n_repacked == 0) { /* no interleaved kernel in this set: the file's layout, the same logits */
                printf("  no interleaved kernel in the %s kernels: nothing repacked\n", sp_kernels_name());
                float *got = prefill_and_step(packed);
                assert_memory_equal(got, want, sizeof(float) * (size_t)(n + 1) * V);
                free(got);
                sp_model_free(packed);
                continue;
            }
            assert_int_equal(ri->n_repacked, want_repacked[f]);
            /* most of the file, and Q4_K's and Q5_K's groups 32 bytes more than their rows' */
            assert_true(ri->repacked_bytes > pi->file_size / 2 && ri->repacked_bytes < pi->file_size / 32 * 33);
            const char *kernels[] = {NULL, "scalar"}; /* the best set, then one without the kernel */
            for (int ks = 0; ks < 2; ks++) {
                assert_int_equal(sp_set_kernels(kernels[ks]), SP_OK);
                float *ref = ks ? prefill_and_step(plain) : want, *got = prefill_and_step(packed);
                if (memcmp(got, ref, sizeof(float) * (size_t)n * V))
                    fail_msg("%s repacked (%s): prefill logits differ from the file's layout", paths[f], kernels[ks] ? kernels[ks] : "best kernels");
                for (int i = 0; i < V; i++) {
                    const float a = got[(size_t)n * V + i], b = ref[(size_t)n * V + i];
                    if (fabsf(a - b) > 1e-4f * (1 + fabsf(b))) fail_msg("%s repacked: decode logit %d: %.7g vs %.7g", paths[f], i, a, b);
                }
                if (ks) free(ref);
                free(got);
            }
            assert_int_equal(sp_set_kernels(NULL), SP_OK);
            sp_model_free(packed);
        }
        free(want);
        sp_model_free(plain);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logit_rows_and_batching), cmocka_unit_test(truncate_and_redo),
        cmocka_unit_test(decode_sequences), cmocka_unit_test(decode_at_long_context),
        cmocka_unit_test(bad_calls_are_errors), cmocka_unit_test(sampling),
        cmocka_unit_test(loaded_without_mmap), cmocka_unit_test(loaded_repacked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
