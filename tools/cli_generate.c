/* `specprefill generate`: prompt in, streamed text out, timings on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

static void usage(void) {
    printf("usage: specprefill generate -m MODEL.gguf (-p PROMPT | -f FILE) [options]\n"
           "  -p, --prompt TEXT      the prompt\n"
           "  -f, --file FILE        read the prompt from FILE (- for stdin)\n"
           "  -n, --n-predict N      tokens to generate (default 128)\n"
           "  --chat                 wrap the prompt as a user message in the model's chat template\n"
           "  --system TEXT          system message (with --chat)\n"
           "  --chat-template NAME   override the template: llama3, chatml, mistral-v7, mistral-nemo, llama2\n"
           "  --temp T               temperature, 0 = greedy (default 0.8)\n"
           "  --top-k K              (default 40, 0 = off)\n"
           "  --top-p P              (default 0.95, 1 = off)\n"
           "  --min-p P              (default 0.05, 0 = off)\n"
           "  --repeat-penalty X     (default 1.0 = off); --repeat-last-n N (default 64)\n"
           "  --seed S               sampling seed (default 0)\n"
           "  --stop TEXT            stop before TEXT: the output ends where TEXT would begin (repeatable, up to 16)\n"
           "  -c, --ctx-size N       KV-cache capacity (default: prompt + n-predict)\n"
           "  -t, --threads N        threads (default: all cores)\n"
           "  --kv-type f16|f32      KV-cache storage (default f16)\n"
           "speculative prefill (prefill only the prompt tokens a draft model finds important):\n"
           "  --draft FILE           draft model with the same tokenizer (turns speculative prefill on)\n"
           "  --self-spec            no draft: score with the main model's first layers\n"
           "  --no-spec              full prefill even if a draft is given\n"
           "  --keep R               share of prompt chunks to keep (default 0.3)\n"
           "  --chunk N              tokens per chunk (default 32; 1 = single tokens)\n"
           "  --lookahead K          draft queries: last prompt token + K-1 generated (default 8)\n"
           "  --pool N               average-pooling kernel over tokens (default 13; 1 = off)\n"
           "  --keep-mass M          adaptive: fewest chunks holding share M of the importance\n"
           "  --keep-min R --keep-max R  bounds of the adaptive share (default 0.05, 0.9)\n"
           "  --self-layers L        layers used by --self-spec (default ceil(n_layer/4))\n"
           "  --no-keep-last         do not force the prompt's last chunk\n"
           "  --draft-any-vocab      allow a draft with another tokenizer (scores mapped through bytes)\n"
           "  --explain FILE.html    write a page showing each prompt token's importance and what was kept\n");
}

/* A self-contained page: the prompt with each token shaded by importance, kept chunks marked. */
static int write_explain(const char *path, const sp_model *m, const sp_token *ids, int n, const float *imp,
                         const uint8_t *kept, const sp_specprefill_stats *st) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "error: cannot write %s\n", path); return 1; }
    float max = 1e-12f;
    for (int i = 0; i < n; i++) if (imp[i] > max) max = imp[i];
    fprintf(f, "<!doctype html><meta charset=utf-8><title>specprefill: what the draft kept</title>\n"
               "<style>body{font:14px/1.6 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
               "pre{white-space:pre-wrap;font:13px/1.7 ui-monospace,monospace}span{border-radius:2px}"
               ".k{outline:1px solid #2a7}.d{color:#999}table{border-collapse:collapse}td{padding:2px 10px}"
               "td:last-child{text-align:right}</style>\n");
    fprintf(f, "<h1>Speculative prefill</h1><p>%d of %d prompt tokens kept (%.1f%%). Shading: the draft's importance "
               "(darker = more); outlined: kept; grey: dropped.</p>\n", st->n_kept, st->n_prompt, 100.0 * st->n_kept / st->n_prompt);
    fprintf(f, "<table><tr><td>draft prefill</td><td>%.1f ms</td></tr><tr><td>look-ahead (%d queries, with scoring)</td><td>%.1f ms</td></tr>"
               "<tr><td>score averaging</td><td>%.1f ms</td></tr><tr><td>selection</td><td>%.1f ms</td></tr>"
               "<tr><td>main prefill</td><td>%.1f ms</td></tr><tr><td><b>time to first token</b></td><td><b>%.1f ms</b></td></tr></table>\n<pre>",
            st->draft_prefill_s * 1e3, st->n_lookahead, st->lookahead_s * 1e3, st->scoring_s * 1e3, st->selection_s * 1e3,
            st->main_prefill_s * 1e3, st->ttft_s * 1e3);
    char buf[512];
    for (int i = 0; i < n; i++) {
        int k = sp_token_to_bytes(m, ids[i], true, buf, sizeof buf - 1);
        if (k < 0) k = 0;
        const double a = sqrt(imp[i] / max);
        fprintf(f, "<span class=\"%s\" style=\"background:rgba(230,80,0,%.3f)\" title=\"#%d importance %.3g\">", kept[i] ? "k" : "d", a, i, imp[i]);
        for (int j = 0; j < k; j++) {
            char c = buf[j];
            if (c == '<') fputs("&lt;", f); else if (c == '>') fputs("&gt;", f); else if (c == '&') fputs("&amp;", f);
            else fputc(c, f);
        }
        fputs("</span>", f);
    }
    fputs("</pre>\n", f);
    return fclose(f) == 0 ? 0 : 1;
}

#define MAX_STOPS SPC_MAX_STOPS

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *system = NULL, *tmpl = NULL;
    const char *stops[MAX_STOPS];
    int n_stops = 0;
    long n_predict = 128, threads = 0, n_ctx = 0, last_n = 64, seed = 0, top_k = 40;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    bool chat = false, bad = false, kv_f32 = false, self_spec = false, no_spec = false;
    const char *draft_path = NULL, *explain = NULL;
    sp_specprefill_params spp = sp_specprefill_default_params();
    double keep = spp.keep_rate, keep_mass = 0, keep_min = spp.keep_min, keep_max = spp.keep_max;
    long chunk = spp.chunk, lookahead = spp.lookahead, pool = spp.pool_kernel, self_layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        bool ok = true;
        if ((v = opt_value(argc, argv, &i, "--model", "-m", &bad))) model_path = v;
        else if ((v = opt_value(argc, argv, &i, "--prompt", "-p", &bad))) prompt = v;
        else if ((v = opt_value(argc, argv, &i, "--file", "-f", &bad))) file = v;
        else if ((v = opt_value(argc, argv, &i, "--system", NULL, &bad))) system = v;
        else if ((v = opt_value(argc, argv, &i, "--chat-template", NULL, &bad))) { tmpl = v; chat = true; }
        else if ((v = opt_value(argc, argv, &i, "--n-predict", "-n", &bad))) ok = parse_int(v, 0, 1 << 20, &n_predict);
        else if ((v = opt_value(argc, argv, &i, "--threads", "-t", &bad))) ok = parse_int(v, 0, 256, &threads);
        else if ((v = opt_value(argc, argv, &i, "--ctx-size", "-c", &bad))) ok = parse_int(v, 0, 1 << 24, &n_ctx);
        else if ((v = opt_value(argc, argv, &i, "--temp", NULL, &bad))) ok = parse_float(v, 0, 100, &temp);
        else if ((v = opt_value(argc, argv, &i, "--top-k", NULL, &bad))) ok = parse_int(v, 0, 1 << 24, &top_k);
        else if ((v = opt_value(argc, argv, &i, "--top-p", NULL, &bad))) ok = parse_float(v, 1e-9, 1, &top_p);
        else if ((v = opt_value(argc, argv, &i, "--min-p", NULL, &bad))) ok = parse_float(v, 0, 1, &min_p);
        else if ((v = opt_value(argc, argv, &i, "--repeat-penalty", NULL, &bad))) ok = parse_float(v, 1e-3, 100, &rep);
        else if ((v = opt_value(argc, argv, &i, "--repeat-last-n", NULL, &bad))) ok = parse_int(v, 0, 1 << 16, &last_n);
        else if ((v = opt_value(argc, argv, &i, "--seed", NULL, &bad))) ok = parse_int(v, 0, 0x7fffffffL, &seed);
        else if ((v = opt_value(argc, argv, &i, "--kv-type", NULL, &bad))) { ok = !strcmp(v, "f16") || !strcmp(v, "f32"); kv_f32 = !strcmp(v, "f32"); }
        else if ((v = opt_value(argc, argv, &i, "--stop", NULL, &bad))) {
            if (n_stops == MAX_STOPS) { fprintf(stderr, "error: at most %d --stop strings\n", MAX_STOPS); return 2; }
            stops[n_stops++] = v;
        }
        else if ((v = opt_value(argc, argv, &i, "--draft", NULL, &bad))) draft_path = v;
        else if ((v = opt_value(argc, argv, &i, "--explain", NULL, &bad))) explain = v;
        else if ((v = opt_value(argc, argv, &i, "--keep", NULL, &bad))) ok = parse_float(v, 1e-6, 1, &keep);
        else if ((v = opt_value(argc, argv, &i, "--keep-mass", NULL, &bad))) ok = parse_float(v, 1e-6, 1, &keep_mass);
        else if ((v = opt_value(argc, argv, &i, "--keep-min", NULL, &bad))) ok = parse_float(v, 0, 1, &keep_min);
        else if ((v = opt_value(argc, argv, &i, "--keep-max", NULL, &bad))) ok = parse_float(v, 0, 1, &keep_max);
        else if ((v = opt_value(argc, argv, &i, "--chunk", NULL, &bad))) ok = parse_int(v, 1, 1 << 20, &chunk);
        else if ((v = opt_value(argc, argv, &i, "--lookahead", NULL, &bad))) ok = parse_int(v, 1, 256, &lookahead);
        else if ((v = opt_value(argc, argv, &i, "--pool", NULL, &bad))) ok = parse_int(v, 1, 1025, &pool);
        else if ((v = opt_value(argc, argv, &i, "--self-layers", NULL, &bad))) ok = parse_int(v, 1, 1024, &self_layers);
        else if (bad) return 2;
        else if (opt_flag(argv, i, "--self-spec", NULL)) self_spec = true;
        else if (opt_flag(argv, i, "--no-spec", NULL)) no_spec = true;
        else if (opt_flag(argv, i, "--no-keep-last", NULL)) spp.keep_last_chunk = false;
        else if (opt_flag(argv, i, "--draft-any-vocab", NULL)) spp.any_vocab = true;
        else if (opt_flag(argv, i, "--chat", NULL)) chat = true;
        else if (opt_flag(argv, i, "--help", "-h")) { usage(); return 0; }
        else { fprintf(stderr, "error: unknown option '%s' (see --help)\n", argv[i]); return 2; }
        if (!ok) { fprintf(stderr, "error: bad value for %s\n", argv[i - 1]); return 2; }
    }
    if (!model_path || (!prompt == !file)) {
        fprintf(stderr, "error: need -m MODEL and one of -p PROMPT / -f FILE (see --help)\n");
        return 2;
    }
    spp.keep_rate = (float)keep; spp.keep_mass = (float)keep_mass; spp.keep_min = (float)keep_min;
    spp.keep_max = (float)keep_max; spp.chunk = (int)chunk; spp.lookahead = (int)lookahead;
    spp.pool_kernel = (int)pool; spp.self_layers = (int)self_layers;
    if (sp_specprefill_params_check(&spp) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 2; }
    const bool spec = !no_spec && (draft_path || self_spec);
    if (explain && !spec) { fprintf(stderr, "error: --explain needs speculative prefill (--draft or --self-spec)\n"); return 2; }
    if (sp_set_threads((int)threads) != SP_OK) return fail_status("threads");
    char *file_text = NULL;
    size_t prompt_len;
    if (file) {
        if (!(file_text = read_file(file, &prompt_len))) return 1;
        prompt = file_text;
    } else {
        prompt_len = strlen(prompt);
    }
    sp_model *m = NULL, *dm = NULL;
    sp_context *ctx = NULL, *dctx = NULL;
    float *imp = NULL;
    uint8_t *kept = NULL;
    sp_sampler *smp = NULL;
    spc_prompt pr = {0};
    spc_text out = {0};
    float *logits = NULL;
    int rc = 1;
    if (strlen(prompt) != prompt_len) { fprintf(stderr, "error: the prompt contains a NUL byte\n"); goto done; }
    if (sp_model_load(model_path, &m) != SP_OK) { fail_status("loading model"); goto done; }
    const sp_model_info *info = sp_model_get_info(m);
    sp_chat_message msgs[2];
    int n_msgs = 0;
    if (chat && system) msgs[n_msgs++] = (sp_chat_message){"system", system};
    msgs[n_msgs++] = (sp_chat_message){"user", prompt};
    if (spc_prompt_make(m, chat, tmpl, msgs, n_msgs, &pr) != SP_OK) { fail_status("prompt"); goto done; }
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = n_ctx ? (int)n_ctx : pr.n + (int)n_predict;
    cp.kv_type = kv_f32 ? SP_KV_F32 : SP_KV_F16;
    if (pr.n + n_predict > cp.n_ctx) {
        fprintf(stderr, "error: prompt (%d tokens) + %ld to generate exceed the context of %d\n", pr.n, n_predict, cp.n_ctx);
        goto done;
    }
    if (sp_context_new(m, &cp, &ctx) != SP_OK) { fail_status("context"); goto done; }
    if (spec) {
        if (draft_path && !self_spec && sp_model_load(draft_path, &dm) != SP_OK) { fail_status("loading draft"); goto done; }
        if (dm && !spp.any_vocab && sp_vocab_check_same(m, dm) != SP_OK) { fail_status("draft"); goto done; }
        sp_context_params dp = sp_context_default_params();
        dp.n_ctx = spc_draft_ctx_size(pr.n, &spp, dm && spp.any_vocab);
        if (sp_context_new(dm ? dm : m, &dp, &dctx) != SP_OK) { fail_status("draft context"); goto done; }
        imp = malloc((size_t)pr.n * sizeof *imp);
        kept = malloc((size_t)pr.n);
        if (!imp || !kept) { fprintf(stderr, "error: out of memory\n"); goto done; }
    }
    sp_sampling_params sp = {(float)temp, (int)top_k, (float)top_p, (float)min_p, (float)rep, (int)last_n, (uint64_t)seed};
    if (sp_sampler_new(&sp, info->n_vocab, &smp) != SP_OK) { fail_status("sampler"); goto done; }
    if (spc_text_init(&out, m, stops, n_stops) != SP_OK) { fail_status("stop strings"); goto done; }
    if (!(logits = malloc((size_t)info->n_vocab * sizeof *logits))) { fprintf(stderr, "error: out of memory\n"); goto done; }
    for (int i = 0; i < pr.n; i++) sp_sampler_accept(smp, pr.ids[i]);

    double t0 = now_seconds();
    sp_specprefill_stats st;
    if (spc_prefill(ctx, dctx, &pr, &spp, logits, imp, kept, &st) != SP_OK) { fail_status(spec ? "speculative prefill" : "prefill"); goto done; }
    double t_first = now_seconds();
    if (spec) {
        fprintf(stderr, "specprefill: kept %d of %d prompt tokens (%.1f%%) | draft prefill %.1f ms, look-ahead+scoring %.1f ms (%d queries), "
                        "averaging %.1f ms, selection %.2f ms, main prefill %.1f ms, TTFT %.1f ms\n",
                st.n_kept, st.n_prompt, 100.0 * st.n_kept / st.n_prompt, st.draft_prefill_s * 1e3, st.lookahead_s * 1e3, st.n_lookahead,
                st.scoring_s * 1e3, st.selection_s * 1e3, st.main_prefill_s * 1e3, st.ttft_s * 1e3);
        if (explain && write_explain(explain, m, pr.ids, pr.n, imp, kept, &st) == 0) fprintf(stderr, "explain: wrote %s\n", explain);
    }
    /* sample, show what is safe to show (never a stop string or the start of one), decode */
    int n_gen = 0;
    size_t len;
    const char *piece;
    while (n_gen < n_predict && !out.stopped) {
        sp_token t = sp_sampler_sample(smp, logits);
        if (sp_token_is_eog(m, t)) break;
        sp_sampler_accept(smp, t);
        n_gen++;
        if (spc_text_add(&out, t) != SP_OK) { fail_status("text"); goto done; }
        if ((piece = spc_text_piece(&out, false, &len)), len) { fwrite(piece, 1, len, stdout); fflush(stdout); }
        if (n_gen == n_predict || out.stopped) break;
        int32_t p = pr.n + n_gen - 1, row = 0;
        if (sp_decode(ctx, &t, &p, 1, &row, 1, logits) != SP_OK) { fail_status("decode"); goto done; }
    }
    if (spc_text_add(&out, -1) != SP_OK) { fail_status("text"); goto done; } /* an unfinished character */
    if ((piece = spc_text_piece(&out, true, &len)), len) fwrite(piece, 1, len, stdout);
    printf("\n");
    double t_end = now_seconds();
    double prefill = t_first - t0, gen = t_end - t_first;
    fprintf(stderr, "\nprompt: %d tokens in %.3f s (%.1f tokens/s%s); TTFT %.3f s\n", pr.n, prefill, pr.n / prefill,
            spec ? ", speculative" : "", prefill);
    fprintf(stderr, "generation: %d tokens in %.3f s (%.1f tokens/s)%s\n", n_gen, gen, n_gen > 1 ? (n_gen - 1) / gen : 0.0,
            out.stopped ? "; stopped at a stop string" : "");
    rc = 0;
done:
    free(file_text); free(logits); free(imp); free(kept);
    spc_prompt_free(&pr);
    spc_text_free(&out);
    sp_sampler_free(smp);
    sp_context_free(ctx);
    sp_context_free(dctx);
    sp_model_free(dm);
    sp_model_free(m);
    return rc;
}
