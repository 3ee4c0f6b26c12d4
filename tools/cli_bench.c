/* `specprefill bench`: prompt-processing and generation speed like llama-bench, and TTFT of full
 * prefill vs speculative prefill measured in the same run. Interface is stable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "options.h"
#include "specprefill_dev.h"

#define MAX_LIST 16

typedef struct { double mean, sd; } stat;

static stat summarize(const double *x, int n) {
    stat s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += x[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

/* Deterministic "prompt": BOS then ids spread over the vocabulary, skipping special tokens. */
static void fake_prompt(const sp_model *m, sp_token *t, int n, unsigned seed) {
    const int V = sp_model_get_info(m)->n_vocab;
    uint64_t s = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        do {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            t[i] = (sp_token)((s >> 33) % (uint64_t)V);
        } while (sp_token_get_type(m, t[i]) != SP_TOKEN_NORMAL);
    }
    if (sp_token_bos(m) >= 0 && n > 0) t[0] = sp_token_bos(m);
}

static bool progress_tty;
static void progress(const char *what) {
    if (progress_tty) fprintf(stderr, "\r\033[K%s", what);
}

/* One speed row (pp512, tg32, tg32x4…): a markdown table row, or a JSON object after a comma
 * from the second on. */
typedef struct {
    bool json;
    int n_rows;
    const char *model_name, *isa;
    const sp_model_info *info;
} speed_table;

static void speed_row(speed_table *t, const char *test, stat s) {
    if (t->json) {
        printf("%s\n {\"test\": \"%s\", \"tokens_per_s\": %.2f, \"sd\": %.2f}", t->n_rows ? "," : "", test, s.mean, s.sd);
    } else { /* size and parameters as llama-bench writes them: MiB and M below a GiB and a billion */
        const double size = (double)t->info->file_size, params = (double)t->info->n_params;
        printf("| %s | %.2f %s | %.2f %s | %s | %d | %s | %.2f ± %.2f |\n", t->model_name,
               size < 1073741824.0 ? size / 1048576.0 : size / 1073741824.0, size < 1073741824.0 ? "MiB" : "GiB",
               params < 1e9 ? params / 1e6 : params / 1e9, params < 1e9 ? "M" : "B", t->isa, sp_get_threads(), test, s.mean, s.sd);
    }
    t->n_rows++;
    fflush(stdout);
}

/* Seconds for a full prefill of n tokens (logits of the last one). */
/* Caches t[0..depth) untimed (a context already that deep), then times n more tokens in one batch. */
static double time_prefill(sp_context *c, const sp_token *t, const int32_t *pos, int depth, int n, float *logits) {
    sp_context_reset(c);
    if (depth > 0 && sp_decode(c, t, pos, depth, NULL, 0, NULL) != SP_OK) return -1;
    int32_t last = n - 1;
    double t0 = now_seconds();
    if (sp_decode(c, t + depth, pos + depth, n, &last, 1, logits) != SP_OK) return -1;
    return now_seconds() - t0;
}

/* Deterministic values in [-0.5, 0.5) (a 64-bit LCG). */
static float uniform(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFF) / 65536.0f - 0.5f;
}

/* --gemm: one prefill matrix product in isolation — W (n × k, random, in `type`) times each count
 * of activations in `tokens` — to compare the kernel with the CPU's arithmetic peak. */
static int bench_gemm(const char *type_name, long k, long n, const int *tokens, int n_tokens, int reps) {
    const int type = sp_type_from_name(type_name);
    float probe[256] = {0};
    uint8_t probe_out[1024];
    if (type < 0 || k % 256 || !sp_quantize_rows((uint32_t)type, probe, probe_out, 1, 256)) {
        fprintf(stderr, "error: --gemm: cannot make %s weights of width %ld\n", type_name, k);
        return 2;
    }
    if (n_tokens < 1) { fprintf(stderr, "error: --gemm needs a token count (-p)\n"); return 2; }
    long max_tokens = 1;
    for (int i = 0; i < n_tokens; i++) if (tokens[i] > max_tokens) max_tokens = tokens[i];
    const size_t rb = sp_row_size((uint32_t)type, k);
    uint8_t *w = malloc(rb * (size_t)n);
    float *row = malloc((size_t)k * sizeof *row), *x = malloc((size_t)(max_tokens * k) * sizeof *x);
    float *out = malloc((size_t)(max_tokens * n) * sizeof *out);
    double *t = malloc((size_t)reps * sizeof *t);
    int rc = 1;
    if (!w || !row || !x || !out || !t) { fprintf(stderr, "error: out of memory\n"); goto done; }
    uint64_t s = 7;
    for (long r = 0; r < n; r++) {
        for (long i = 0; i < k; i++) row[i] = uniform(&s);
        sp_quantize_rows((uint32_t)type, row, w + (size_t)r * rb, 1, k);
    }
    for (long i = 0; i < max_tokens * k; i++) x[i] = uniform(&s);
    const sp_weight W = {.data = w, .type = (uint32_t)type, .n_in = k, .n_out = n, .row_bytes = (int64_t)rb};
    printf("| type | k | n | tokens | isa | threads | GOP/s |\n| --- | ---: | ---: | ---: | --- | ---: | ---: |\n");
    for (int c = 0; c < n_tokens; c++) {
        const int nt = (int)tokens[c];
        sp_matmul(&W, x, nt, out); /* warm-up */
        for (long r = 0; r < reps; r++) {
            const double t0 = now_seconds();
            sp_matmul(&W, x, nt, out);
            t[r] = now_seconds() - t0;
        }
        for (long r = 0; r < reps; r++) t[r] = 2.0 * (double)k * (double)n * (double)nt / t[r] / 1e9;
        const stat st = summarize(t, (int)reps);
        printf("| %s | %ld | %ld | %d | %s | %d | %.1f ± %.1f |\n", sp_tensor_type_name(type), k, n, nt, sp_kernels_name(), sp_get_threads(), st.mean, st.sd);
    }
    rc = 0;
done:
    free(w); free(row); free(x); free(out); free(t);
    return rc;
}

/* --attention H/KV[/D]: prefill attention alone — the last `tokens` queries of a prompt of depth +
 * tokens, H heads of D values on KV key/value heads, against a cache of random keys and values —
 * to compare it with the CPU's arithmetic peak. A query that sees c keys costs 4·c·D·H flops
 * (its scores and its weighted values). */
static int bench_attention(const char *shape, const int *depths, int n_depths, const int *tokens, int n_tokens, int reps,
                           bool kv_f16) {
    int h = 0, kv = 0, d = 64, used = 0;
    const int got = sscanf(shape, "%d/%d%n/%d%n", &h, &kv, &used, &d, &used);
    if (got < 2 || shape[used] != '\0' || h < 1 || h > 256 || kv < 1 || h % kv || d < 1 || d > 256) {
        fprintf(stderr, "error: --attention: expected HEADS/KV_HEADS[/HEAD_DIM], heads a multiple of the KV heads, "
                        "up to 256 of each and head dim 1-256 (as 32/8 or 32/8/64), got '%s'\n", shape);
        return 2;
    }
    if (n_tokens < 1) { fprintf(stderr, "error: --attention needs a token count (-p)\n"); return 2; }
    long max_keys = 0, max_q = 0;
    for (int i = 0; i < n_depths; i++)
        for (int j = 0; j < n_tokens; j++) {
            if (depths[i] + (long)tokens[j] > max_keys) max_keys = depths[i] + (long)tokens[j];
            if (tokens[j] > max_q) max_q = tokens[j];
        }
    const size_t cells = (size_t)max_keys * (size_t)(kv * d), es = kv_f16 ? 2 : 4;
    const size_t cache_bytes = (cells * es + 63) / 64 * 64; /* on cache lines, as a context's caches are */
    uint8_t *k_cache = aligned_alloc(64, cache_bytes), *v_cache = aligned_alloc(64, cache_bytes);
    float *q = malloc((size_t)max_q * h * d * sizeof *q), *out = malloc((size_t)max_q * h * d * sizeof *out);
    int *visible = malloc((size_t)max_q * sizeof *visible);
    double *t = malloc((size_t)reps * sizeof *t);
    int rc = 1;
    if (!k_cache || !v_cache || !q || !out || !visible || !t) { fprintf(stderr, "error: out of memory\n"); goto done; }
    uint64_t s = 11;
    for (size_t i = 0; i < 2 * cells; i++) { /* floats in [-0.5, 0.5), or f16 of magnitude [1/4, 1/2) made from them */
        uint8_t *dst = i < cells ? k_cache + i * es : v_cache + (i - cells) * es;
        const float f = uniform(&s);
        const uint16_t h = (uint16_t)((f < 0 ? 0x8000u : 0u) | 13u << 10 | ((uint32_t)(fabsf(f) * 65536) & 0x3ffu));
        if (kv_f16) memcpy(dst, &h, 2);
        else memcpy(dst, &f, 4);
    }
    for (long i = 0; i < max_q * h * d; i++) q[i] = 2 * uniform(&s);
    printf("| heads | kv heads | head dim | depth | tokens | isa | threads | GFLOP/s |\n"
           "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n");
    for (int di = 0; di < n_depths; di++)
        for (int c = 0; c < n_tokens; c++) {
            const int nt = tokens[c];
            double flops = 0;
            for (int i = 0; i < nt; i++) {
                visible[i] = depths[di] + i + 1;
                flops += 4.0 * visible[i] * d * h;
            }
            const sp_attention_args a = {q, out, nt, k_cache, v_cache, kv_f16, visible, h, kv, d, 1.0f / sqrtf((float)d)};
            sp_attention(&a); /* warm-up */
            for (int r = 0; r < reps; r++) {
                const double t0 = now_seconds();
                sp_attention(&a);
                t[r] = flops / (now_seconds() - t0) / 1e9;
            }
            const stat st = summarize(t, reps);
            printf("| %d | %d | %d | %d | %d | %s | %d | %.1f ± %.1f |\n", h, kv, d, depths[di], nt, sp_kernels_name(), sp_get_threads(),
                   st.mean, st.sd);
        }
    rc = 0;
done:
    free(k_cache); free(v_cache); free(q); free(out); free(visible); free(t);
    return rc;
}

/* --spec-decode: greedy generation of n_gen tokens after the prompt (full prefill, the draft has
 * read it too), one token at a time and then with the draft proposing: tokens/s of each, the
 * acceptance, and whether the texts agree (they must: the same greedy choices). */
static int bench_spec_decode(speed_table *table, const sp_model *m, const sp_model *dm, const sp_token *prompt, int n, int n_gen,
                             int reps, const sp_specdecode_params *sdp) {
    const int V = sp_model_get_info(m)->n_vocab;
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = n + n_gen + SP_SPECDECODE_MAX_DRAFT + 1;
    sp_context *ctx = NULL, *dctx = NULL;
    sp_sampler *smp = NULL;
    sp_specdecoder *sd = NULL;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((size_t)(n + n_gen) * sizeof *pos);
    sp_token *plain = malloc((size_t)n_gen * sizeof *plain), *spec = malloc((size_t)(n_gen + SP_SPECDECODE_MAX_DRAFT) * sizeof *spec);
    double *t_plain = malloc((size_t)(reps + 1) * sizeof *t_plain), *t_spec = malloc((size_t)(reps + 1) * sizeof *t_spec);
    const sp_sampling_params greedy = {0, 0, 1, 0, 1, 0, 0};
    int rc = 1;
    long drafted = 0, accepted = 0;
    if (!logits || !pos || !plain || !spec || !t_plain || !t_spec) { fprintf(stderr, "error: out of memory\n"); goto done; }
    for (int i = 0; i < n + n_gen; i++) pos[i] = i;
    if (sp_context_new(m, &cp, &ctx) != SP_OK || sp_context_new(dm, &cp, &dctx) != SP_OK) { fail_status("context"); goto done; }
    for (int r = 0; r <= reps; r++) {
        char label[64];
        snprintf(label, sizeof label, "speculative decoding: run %d of %d", r, reps);
        progress(label);
        for (int mode = 0; mode < 2; mode++) {
            int32_t last = n - 1;
            sp_context_reset(ctx);
            sp_context_reset(dctx);
            sp_sampler_free(smp);
            smp = NULL;
            if (sp_decode(ctx, prompt, pos, n, &last, 1, logits) != SP_OK || sp_sampler_new(&greedy, V, &smp) != SP_OK) { fail_status("prefill"); goto done; }
            if (mode == 1 && sp_decode(dctx, prompt, pos, n, NULL, 0, NULL) != SP_OK) { fail_status("draft prefill"); goto done; }
            const double t0 = now_seconds();
            if (mode == 0) {
                for (int k = 0; k < n_gen; k++) {
                    plain[k] = sp_sampler_sample(smp, logits);
                    int32_t row = 0;
                    if (k + 1 < n_gen && sp_decode(ctx, &plain[k], &pos[n + k], 1, &row, 1, logits) != SP_OK) { fail_status("decode"); goto done; }
                }
                t_plain[r] = n_gen / (now_seconds() - t0);
            } else {
                sp_specdecoder_free(sd);
                sd = NULL;
                if (sp_specdecoder_new(ctx, dctx, prompt, n, sdp, &sd) != SP_OK) { fail_status("speculative decoding"); goto done; }
                for (int got = 0, k; got < n_gen; got += k)
                    if ((k = sp_specdecoder_step(sd, smp, logits, spec + got, n_gen - got)) < 0) { fail_status("speculative decoding"); goto done; }
                t_spec[r] = n_gen / (now_seconds() - t0);
                sp_specdecoder_stats(sd, &drafted, &accepted);
            }
        }
    }
    progress("");
    char label[64];
    snprintf(label, sizeof label, "tg%d greedy", n_gen);
    speed_row(table, label, summarize(t_plain + 1, reps));
    snprintf(label, sizeof label, "tg%d greedy+specdec", n_gen);
    speed_row(table, label, summarize(t_spec + 1, reps));
    const bool same = memcmp(plain, spec, (size_t)n_gen * sizeof *plain) == 0;
    fprintf(stderr, "speculative decoding: after a %d-token prompt, %ld of %ld drafted tokens accepted (%.0f%%), %.2fx plain decoding; "
                    "texts %s\n", n, accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0,
            summarize(t_spec + 1, reps).mean / summarize(t_plain + 1, reps).mean, same ? "identical" : "DIFFER");
    rc = same ? 0 : 1;
done:
    sp_specdecoder_free(sd);
    sp_sampler_free(smp);
    sp_context_free(ctx);
    sp_context_free(dctx);
    free(logits); free(pos); free(plain); free(spec); free(t_plain); free(t_spec);
    return rc;
}

/* N processes that keep a core busy each (a machine shared with other work), until stopped. */
static pid_t contenders[256];
static int n_contenders;

static void contend_start(int n) {
    for (; n_contenders < n; n_contenders++) {
        const pid_t p = fork();
        if (p == 0) {
            volatile unsigned long x = 0;
            for (;;) x++;
        }
        if (p < 0) break;
        contenders[n_contenders] = p;
    }
}

static void contend_stop(void) {
    for (int i = 0; i < n_contenders; i++) kill(contenders[i], SIGKILL);
    for (int i = 0; i < n_contenders; i++) waitpid(contenders[i], NULL, 0);
    n_contenders = 0;
}

/* Peak resident memory since the last reset_peak_rss, in MiB; -1 where the system cannot say
 * (Linux: VmHWM, reset by writing 5 to /proc/self/clear_refs). */
static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) { fputs("5", f); fclose(f); }
}

static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = atof(line + 6);
    fclose(f);
    return kib < 0 ? -1 : kib / 1024;
}

/* TTFT rows: full prefill, then speculative prefill at each keep rate, of the same made-up prompt
 * at each length. Every measurement gets contexts of its own, sized to the prompt as a user would
 * size them, so that the peak memory of each (model pages touched + caches + scratch) is its own.
 * One warm-up, before the first length only: a long prompt is minutes, and repeating it warms
 * nothing more. Each row also gives the draft's share of SpecPrefill's TTFT (its prefill,
 * look-ahead and scoring) and the ideal 1/(kept share + draft cost / main cost), both costs
 * measured here as full prefills of the same prompt. */
static int bench_ttft(speed_table *table, const sp_model *m, const sp_model *dm, const sp_token *tok, const int *lengths, int n_lengths,
                      const double *keeps, int n_keeps, int reps, int kv_type) {
    const bool json = table->json;
    const int R = reps < 3 ? reps : 3;
    const char *method = dm ? "specprefill (draft)" : "self-speculation";
    float *logits = malloc((size_t)table->info->n_vocab * sizeof *logits);
    int32_t *pos = NULL;
    int max_n = 0, rc = 1;
    for (int li = 0; li < n_lengths; li++) if (lengths[li] > max_n) max_n = lengths[li];
    pos = malloc((size_t)max_n * sizeof *pos);
    if (!logits || !pos) { fprintf(stderr, "error: out of memory\n"); goto out; }
    for (int i = 0; i < max_n; i++) pos[i] = i;
    if (!json) printf("\n| method | prompt | keep | kept tokens | TTFT ms | speedup | draft share | ideal 1/(keep+draft/main) | of ideal | peak RSS MiB |\n"
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int li = 0; li < n_lengths; li++) {
        const int n = lengths[li];
        sp_specprefill_params spp = sp_specprefill_default_params();
        sp_context_params cp = sp_context_default_params(), dp = sp_context_default_params();
        cp.n_ctx = n + 16;
        cp.kv_type = dp.kv_type = kv_type == 1 ? SP_KV_F32 : SP_KV_F16;
        dp.n_ctx = spc_draft_ctx_size(n, &spp, false);
        double full[64], draft_full[64], draft_cost = 0;
        char label[128];
        const int first = li == 0 ? 0 : 1; /* the warm-up */
        sp_context *ctx = NULL, *dctx = NULL;
        if (sp_context_new(m, &cp, &ctx) != SP_OK) { fail_status("context"); goto out; }
        reset_peak_rss();
        for (int r = first; r <= R; r++) {
            snprintf(label, sizeof label, "TTFT %d: full prefill, run %d of %d", n, r, R);
            progress(label);
            full[r] = time_prefill(ctx, tok, pos, 0, n, logits);
            if (full[r] < 0) { sp_context_free(ctx); fail_status("prefill"); goto out; }
        }
        const double rss_full = peak_rss_mib();
        sp_context_free(ctx);
        const stat fs = summarize(full + 1, R);
        if (dm) {
            if (sp_context_new(dm, &dp, &dctx) != SP_OK) { fail_status("draft context"); goto out; }
            for (int r = first; r <= R; r++) {
                snprintf(label, sizeof label, "TTFT %d: the draft's full prefill, run %d of %d", n, r, R);
                progress(label);
                draft_full[r] = time_prefill(dctx, tok, pos, 0, n, logits);
                if (draft_full[r] < 0) { sp_context_free(dctx); fail_status("draft prefill"); goto out; }
            }
            sp_context_free(dctx);
            draft_cost = summarize(draft_full + 1, R).mean / fs.mean;
        }
        progress("");
        if (json) printf("%s\n {\"test\": \"ttft\", \"method\": \"full\", \"prompt\": %d, \"ttft_ms\": %.2f, \"sd\": %.2f, \"peak_rss_mib\": %.0f}",
                         table->n_rows++ ? "," : "", n, fs.mean * 1e3, fs.sd * 1e3, rss_full);
        else printf("| full prefill | %d | 1.0 | %d | %.1f ± %.1f | 1.00 | | | | %.0f |\n", n, n, fs.mean * 1e3, fs.sd * 1e3, rss_full);
        fflush(stdout);
        for (int k = 0; k < n_keeps; k++) {
            spp.keep_rate = (float)keeps[k];
            double tt[64];
            sp_specprefill_stats st = {0};
            if (sp_context_new(m, &cp, &ctx) != SP_OK || sp_context_new(dm ? dm : m, &dp, &dctx) != SP_OK) {
                sp_context_free(ctx);
                fail_status("context");
                goto out;
            }
            reset_peak_rss();
            sp_status s = SP_OK;
            for (int r = first; r <= R && s == SP_OK; r++) {
                snprintf(label, sizeof label, "TTFT %d: %s keep %.2f, run %d of %d", n, method, keeps[k], r, R);
                progress(label);
                sp_context_reset(ctx);
                const double t0 = now_seconds();
                s = sp_specprefill(ctx, dctx, tok, n, NULL, &spp, logits, NULL, NULL, &st);
                tt[r] = now_seconds() - t0;
            }
            const double rss = peak_rss_mib();
            sp_context_free(ctx);
            sp_context_free(dctx);
            if (s != SP_OK) { fail_status("specprefill"); goto out; }
            const stat ss = summarize(tt + 1, R);
            const double keep_eff = (double)st.n_kept / n, ideal = dm ? 1.0 / (keep_eff + draft_cost) : 0;
            const double share = st.ttft_s > 0 ? (st.draft_prefill_s + st.lookahead_s + st.scoring_s) / st.ttft_s : 0;
            progress("");
            if (json)
                printf(",\n {\"test\": \"ttft\", \"method\": \"%s\", \"prompt\": %d, \"keep\": %.2f, \"kept\": %d, \"ttft_ms\": %.2f, \"sd\": %.2f, "
                       "\"speedup\": %.3f, \"draft_share\": %.3f, \"ideal\": %.3f, \"draft_over_main\": %.4f, \"peak_rss_mib\": %.0f}",
                       method, n, keeps[k], st.n_kept, ss.mean * 1e3, ss.sd * 1e3, fs.mean / ss.mean, share, ideal, draft_cost, rss);
            else if (dm)
                printf("| %s | %d | %.2f | %d | %.1f ± %.1f | %.2f | %.0f%% | %.2f | %.0f%% | %.0f |\n", method, n, keeps[k], st.n_kept, ss.mean * 1e3,
                       ss.sd * 1e3, fs.mean / ss.mean, 100 * share, ideal, 100 * (fs.mean / ss.mean) / ideal, rss);
            else
                printf("| %s | %d | %.2f | %d | %.1f ± %.1f | %.2f | %.0f%% | | | %.0f |\n", method, n, keeps[k], st.n_kept, ss.mean * 1e3,
                       ss.sd * 1e3, fs.mean / ss.mean, 100 * share, rss);
            fflush(stdout);
        }
    }
    rc = 0;
out:
    free(logits);
    free(pos);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *draft_path = NULL, *gemm_type = NULL, *attention_shape = NULL;
    int pp[MAX_LIST] = {512}, ttft[MAX_LIST] = {1024, 2048, 4096, 8192}, par[MAX_LIST], depths[MAX_LIST] = {0}, n_gen = 32, reps = 5, threads = 0;
    int contend = 0;
    double keeps[MAX_LIST] = {0.1, 0.3, 0.5};
    int n_pp = 1, n_ttft = 4, n_keeps = 3, n_par = 0, n_depths = 1, format = 0, kv_type = 0;
    bool self_spec = false, spec_decode = false;
    const char *spec_prompt = NULL;
    sp_specdecode_params sdp = sp_specdecode_default_params();
    sp_model_params load = sp_model_default_params();
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model (GGUF)"),
        CLI_OPT("--n-prompt", "-p", CLI_INTS, pp, 0, 1 << 20, "LIST", "prompt lengths to time (pp rows), 0 = none",
                .count = &n_pp, .max_count = MAX_LIST),
        CLI_OPT("--n-gen", "-n", CLI_INT, &n_gen, 0, 1 << 20, "N", "tokens to generate one by one (the tg row), 0 = none"),
        CLI_OPT("--parallel", NULL, CLI_INTS, par, 1, 256, "LIST",
                "also generate for this many sequences at once, one batched step per token (rows tgNxP, total t/s)",
                .count = &n_par, .max_count = MAX_LIST),
        CLI_OPT("--n-depth", "-d", CLI_INTS, depths, 0, 1 << 20, "LIST",
                "time the pp and tg rows after this many tokens already cached (rows \"@ dN\", as llama-bench); decode reads the whole cache",
                .count = &n_depths, .max_count = MAX_LIST),
        CLI_OPT("--repetitions", "-r", CLI_INT, &reps, 1, 1000, "N", "repetitions after one warm-up"),
        CLI_OPT("--contend", NULL, CLI_INT, &contend, 0, 256, "N",
                "run N busy processes meanwhile (a machine shared with other work: how much speed survives)"),
        CLI_THREADS_OPTION(&threads),
        CLI_LOAD_OPTIONS(&load),
        CLI_KV_TYPE_OPTION(&kv_type),
        CLI_OPT("--output", "-o", CLI_CHOICE, &format, 0, 0, "md|json", "output format"),
        CLI_SECTION_ROW("time to first token: full prefill vs speculative prefill, in the same run"),
        CLI_OPT("--draft", NULL, CLI_TEXT, &draft_path, 0, 0, "FILE", "time speculative prefill with this draft"),
        CLI_OPT("--self-spec", NULL, CLI_FLAG, &self_spec, 0, 0, NULL, "time self-speculation"),
        CLI_OPT("--keep", NULL, CLI_DOUBLES, keeps, 1e-6, 1, "LIST", "keep rates of the TTFT rows", .count = &n_keeps, .max_count = MAX_LIST),
        CLI_OPT("--ttft", NULL, CLI_INTS, ttft, 2, 1 << 20, "LIST", "prompt lengths of the TTFT rows", .count = &n_ttft, .max_count = MAX_LIST),
        CLI_SECTION_ROW("speculative decoding: greedy tokens/s with and without the draft proposing (needs --draft)"),
        CLI_OPT("--spec-decode", NULL, CLI_FLAG, &spec_decode, 0, 0, NULL, "time -n greedy tokens after a prompt, plain and speculative"),
        CLI_OPT("--spec-prompt", NULL, CLI_TEXT, &spec_prompt, 0, 0, "FILE", "the prompt for them (text)", .shown_default = "512 made-up tokens"),
        CLI_OPT("--spec-draft-max", NULL, CLI_INT, &sdp.draft_max, 1, SP_SPECDECODE_MAX_DRAFT, "N", "most tokens the draft proposes per step"),
        CLI_SECTION_ROW("one kernel alone, no model"),
        CLI_OPT("--gemm", NULL, CLI_TEXT, &gemm_type, 0, 0, "TYPE",
                "time 2048 × 8192 weights in TYPE times each -p count of tokens (GOP/s, to compare with the CPU's peak)"),
        CLI_OPT("--attention", NULL, CLI_TEXT, &attention_shape, 0, 0, "H/KV[/D]",
                "time prefill attention of H heads (D values each, default 64) on KV key/value heads: the last -p tokens of a prompt of -d + -p (GFLOP/s)"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"bench -m MODEL.gguf [options]",
                             "prompt-processing and generation speed (as llama-bench prints them), and TTFT with speculative prefill",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (n_pp == 1 && pp[0] == 0) n_pp = 0;
    if (sp_set_threads(threads) != SP_OK) return fail_status("threads");
    if (gemm_type) return bench_gemm(gemm_type, 2048, 8192, pp, n_pp, reps);
    if (attention_shape) return bench_attention(attention_shape, depths, n_depths, pp, n_pp, reps, kv_type != 1);
    if (!model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    progress_tty = isatty(2);
    sp_model *m = NULL, *dm = NULL;
    if (sp_model_load_with(model_path, &load, &m) != SP_OK) return fail_status("loading model");
    if (draft_path && sp_model_load_with(draft_path, &load, &dm) != SP_OK) { sp_model_free(m); return fail_status("loading draft"); }
    const sp_model_info *info = sp_model_get_info(m);
    int max_depth = 0;
    for (int i = 0; i < n_depths; i++) if (depths[i] > max_depth) max_depth = depths[i];
    long max_len = max_depth + n_gen + 1;
    for (int i = 0; i < n_pp; i++) if (max_depth + pp[i] > max_len) max_len = max_depth + pp[i];
    if (spec_decode && max_len < 512) max_len = 512; /* the made-up prompt */
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = (int)max_len; /* the TTFT rows make contexts of their own, sized to each prompt */
    if (dm || self_spec) for (int i = 0; i < n_ttft; i++) if (ttft[i] > max_len) max_len = ttft[i];
    cp.kv_type = kv_type == 1 ? SP_KV_F32 : SP_KV_F16;
    sp_context *ctx = NULL;
    int rc = 1;
    sp_token *tok = malloc((size_t)max_len * sizeof *tok);
    int32_t *pos = malloc((size_t)max_len * sizeof *pos);
    float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
    double *times = malloc((size_t)(reps + 1) * sizeof *times);
    if (!tok || !pos || !logits || !times) { fprintf(stderr, "error: out of memory\n"); goto done; }
    for (long i = 0; i < max_len; i++) pos[i] = (int32_t)i;
    fake_prompt(m, tok, (int)max_len, 1);
    if (sp_context_new(m, &cp, &ctx) != SP_OK) { fail_status("context"); goto done; }
    const bool json = format == 1;
    contend_start(contend);
    char model_name[256];
    const char *slash = strrchr(model_path, '/');
    snprintf(model_name, sizeof model_name, "%s", slash ? slash + 1 : model_path);
    const char *isa = sp_kernels_name();
    if (json) printf("{\"model\": \"%s\", \"size_bytes\": %llu, \"params\": %llu, \"isa\": \"%s\", \"threads\": %d, \"results\": [",
                     model_name, (unsigned long long)info->file_size, (unsigned long long)info->n_params, isa, sp_get_threads());
    else {
        printf("| model | size | params | isa | threads | test | t/s |\n| --- | ---: | ---: | --- | ---: | --- | ---: |\n");
    }
    speed_table table = {json, 0, model_name, isa, info};
    char label[128];
    for (int di = 0; di < n_depths; di++) {
        const int depth = depths[di];
        char at[32] = "";
        if (depth > 0) snprintf(at, sizeof at, " @ d%d", depth);
        /* prompt processing */
        for (int i = 0; i < n_pp; i++) {
            const int n = (int)pp[i];
            for (int r = 0; r <= reps; r++) {
                snprintf(label, sizeof label, "pp%d%s: run %d of %d", n, at, r, reps);
                progress(label);
                double t = time_prefill(ctx, tok, pos, depth, n, logits);
                if (t < 0) { fail_status("decode"); goto done; }
                times[r] = n / t;
            }
            stat s = summarize(times + 1, (int)reps); /* times[0] is the warm-up */
            progress("");
            snprintf(label, sizeof label, "pp%d%s", n, at);
            speed_row(&table, label, s);
        }
        /* generation: one token at a time after depth cached tokens */
        if (n_gen > 0) {
            for (int r = 0; r <= reps; r++) {
                snprintf(label, sizeof label, "tg%d%s: run %d of %d", n_gen, at, r, reps);
                progress(label);
                sp_context_reset(ctx);
                if (depth > 0 && sp_decode(ctx, tok, pos, depth, NULL, 0, NULL) != SP_OK) { fail_status("decode"); goto done; }
                double t0 = now_seconds();
                for (int k = depth; k < depth + n_gen; k++) {
                    int32_t row = 0;
                    if (sp_decode(ctx, tok + k, pos + k, 1, &row, 1, logits) != SP_OK) { fail_status("decode"); goto done; }
                }
                times[r] = n_gen / (now_seconds() - t0);
            }
            stat s = summarize(times + 1, (int)reps);
            progress("");
            snprintf(label, sizeof label, "tg%d%s", n_gen, at);
            speed_row(&table, label, s);
        }
    }
    /* generation for P sequences at once: one sp_decode_sequences per token (a server's slots) */
    for (int pi = 0; pi < n_par && n_gen > 0; pi++) {
        const int P = (int)par[pi];
        sp_context **pctx = calloc((size_t)P, sizeof *pctx);
        sp_token *ptok = malloc((size_t)P * sizeof *ptok);
        int32_t *ppos = malloc((size_t)P * sizeof *ppos);
        float *plogits = malloc((size_t)P * (size_t)info->n_vocab * sizeof *plogits);
        sp_context_params pc = cp;
        pc.n_ctx = (int)n_gen;
        bool ok = pctx && ptok && ppos && plogits;
        for (int q = 0; ok && q < P; q++) ok = sp_context_new(m, &pc, &pctx[q]) == SP_OK;
        for (int r = 0; ok && r <= reps; r++) {
            snprintf(label, sizeof label, "tg%dx%d: run %d of %d", n_gen, P, r, reps);
            progress(label);
            for (int q = 0; q < P; q++) sp_context_reset(pctx[q]);
            double t0 = now_seconds();
            for (int k = 0; ok && k < n_gen; k++) {
                for (int q = 0; q < P; q++) { ptok[q] = tok[((long)k + (long)q * 7) % max_len]; ppos[q] = (int32_t)k; }
                ok = sp_decode_sequences(pctx, ptok, ppos, P, plogits) == SP_OK;
            }
            times[r] = (double)n_gen * P / (now_seconds() - t0);
        }
        for (int q = 0; pctx && q < P; q++) sp_context_free(pctx[q]);
        free(pctx); free(ptok); free(ppos); free(plogits);
        if (!ok) { fail_status("parallel decode"); goto done; }
        stat s = summarize(times + 1, (int)reps);
        progress("");
        snprintf(label, sizeof label, "tg%dx%d", n_gen, P);
        speed_row(&table, label, s);
    }
    /* TTFT: full prefill vs speculative prefill, same prompts, same run */
    if (spec_decode) {
        if (!dm || n_gen < 1) { fprintf(stderr, "error: --spec-decode needs --draft and -n > 0\n"); goto done; }
        sp_token *sp_tok = NULL;
        int n_sp = 512;
        char *text = spec_prompt ? read_file(spec_prompt, NULL) : NULL;
        if (spec_prompt && (!text || sp_tokenize(m, text, strlen(text), true, false, &sp_tok, &n_sp) != SP_OK)) {
            free(text);
            fail_status("--spec-prompt");
            goto done;
        }
        free(text);
        if (sdp.draft_start > sdp.draft_max) sdp.draft_start = sdp.draft_max;
        const int src = bench_spec_decode(&table, m, dm, sp_tok ? sp_tok : tok, sp_tok ? n_sp : (n_sp < max_len ? n_sp : (int)max_len), n_gen, reps, &sdp);
        free(sp_tok);
        if (src) goto done;
    }
    if ((dm || self_spec) && bench_ttft(&table, m, dm, tok, ttft, n_ttft, keeps, n_keeps, reps, kv_type)) goto done;
    if (json) printf("\n]}\n");
    rc = 0;
done:
    contend_stop();
    progress("");
    free(tok); free(pos); free(logits); free(times);
    sp_context_free(ctx);
    sp_model_free(dm);
    sp_model_free(m);
    return rc;
}
