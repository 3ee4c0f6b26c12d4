/* `specprefill generate`: prompt in, streamed text out, timings on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "options.h"

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

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *system = NULL, *tmpl = NULL, *tmpl_file = NULL, *kwargs = NULL;
    const char *draft_path = NULL, *explain = NULL, *stops[SPC_MAX_STOPS];
    int n_stops = 0, n_predict = 128, threads = 0, n_ctx = 0, kv_type = 0;
    cli_rope rope = {0, 0, 0};
    bool chat = false, self_spec = false, no_spec = false, no_spec_decode = false, spec_decode_sampling = false;
    sp_specdecode_params sdp = sp_specdecode_default_params();
    sp_sampling_params sp = sp_sampling_default_params();
    sp_specprefill_params spp = sp_specprefill_default_params();
    sp_model_params load = sp_model_default_params();
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model (GGUF)"),
        CLI_OPT("--prompt", "-p", CLI_TEXT, &prompt, 0, 0, "TEXT", "the prompt"),
        CLI_OPT("--file", "-f", CLI_TEXT, &file, 0, 0, "FILE", "read the prompt from FILE (- for stdin)"),
        CLI_OPT("--n-predict", "-n", CLI_INT, &n_predict, 0, 1 << 20, "N", "tokens to generate"),
        CLI_OPT("--chat", NULL, CLI_FLAG, &chat, 0, 0, NULL, "wrap the prompt as a user message in the model's chat template"),
        CLI_OPT("--system", NULL, CLI_TEXT, &system, 0, 0, "TEXT", "system message (with --chat)"),
        CLI_CHAT_TEMPLATE_OPTIONS(&tmpl, &tmpl_file, &kwargs),
        CLI_SAMPLING_OPTIONS(&sp),
        CLI_OPT("--stop", NULL, CLI_TEXTS, stops, 0, 0, "TEXT", "stop before TEXT: the output ends where TEXT would begin",
         .count = &n_stops, .max_count = SPC_MAX_STOPS),
        CLI_OPT("--ctx-size", "-c", CLI_INT, &n_ctx, 0, 1 << 24, "N", "KV-cache capacity", .shown_default = "prompt + n-predict"),
        CLI_THREADS_OPTION(&threads),
        CLI_LOAD_OPTIONS(&load),
        CLI_KV_TYPE_OPTION(&kv_type),
        CLI_ROPE_OPTIONS(&rope),
        CLI_SECTION_ROW("speculative prefill (prefill only the prompt tokens a draft model finds important)"),
        CLI_OPT("--draft", NULL, CLI_TEXT, &draft_path, 0, 0, "FILE", "draft model with the same tokenizer (turns speculative prefill on)"),
        CLI_OPT("--self-spec", NULL, CLI_FLAG, &self_spec, 0, 0, NULL, "no draft: score with the main model's first layers"),
        CLI_OPT("--no-spec", NULL, CLI_FLAG, &no_spec, 0, 0, NULL, "full prefill even if a draft is given"),
        CLI_SPECPREFILL_KEEP_OPTIONS(&spp),
        CLI_SPECPREFILL_SCORING_OPTIONS(&spp),
        CLI_OPT("--explain", NULL, CLI_TEXT, &explain, 0, 0, "FILE.html", "write a page showing each prompt token's importance and what was kept"),
        CLI_SECTION_ROW("speculative decoding (the draft proposes, the main model checks: greedy, the same text; sampling, the same distribution)"),
        CLI_OPT("--no-spec-decode", NULL, CLI_FLAG, &no_spec_decode, 0, 0, NULL, "decode one token at a time even with a draft",
                .shown_default = "on with --draft and --temp 0"),
        CLI_OPT("--spec-decode", NULL, CLI_FLAG, &spec_decode_sampling, 0, 0, NULL,
                "when sampling too (the same distribution, but a seed no longer fixes the text)"),
        CLI_OPT("--spec-draft-max", NULL, CLI_INT, &sdp.draft_max, 1, SP_SPECDECODE_MAX_DRAFT, "N", "most tokens the draft proposes per step"),
        CLI_OPT("--spec-draft-min", NULL, CLI_INT, &sdp.draft_min, 1, SP_SPECDECODE_MAX_DRAFT, "N", "fewest tokens the draft proposes per step"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"generate -m MODEL.gguf (-p PROMPT | -f FILE) [options]",
                             "generates text from a prompt: the text on stdout as it comes, timings on stderr", options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!model_path || (!prompt == !file)) {
        fprintf(stderr, "error: need -m MODEL and one of -p PROMPT / -f FILE (see --help)\n");
        return 2;
    }
    chat = chat || tmpl || tmpl_file || kwargs;
    if (sp_specprefill_params_check(&spp) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 2; }
    const bool spec = !no_spec && (draft_path || self_spec);
    if (sdp.draft_min > sdp.draft_max) { fprintf(stderr, "error: --spec-draft-min exceeds --spec-draft-max\n"); return 2; }
    if (explain && !spec) { fprintf(stderr, "error: --explain needs speculative prefill (--draft or --self-spec)\n"); return 2; }
    if (sp_set_threads((int)threads) != SP_OK) return fail_status("threads");
    const char *tmpl_source;
    char *tmpl_owned = NULL, *file_text = NULL;
    const int tc = cli_chat_template(tmpl, tmpl_file, &tmpl_source, &tmpl_owned);
    if (tc >= 0) return tc;
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
    sp_specdecoder *sd = NULL;
    spc_prompt pr = {0};
    spc_text out = {0};
    float *logits = NULL;
    int rc = 1;
    if (strlen(prompt) != prompt_len) { fprintf(stderr, "error: the prompt contains a NUL byte\n"); goto done; }
    if (sp_model_load_with(model_path, &load, &m) != SP_OK) { fail_status("loading model"); goto done; }
    const sp_model_info *info = sp_model_get_info(m);
    sp_chat_message msgs[2];
    int n_msgs = 0;
    if (chat && system) msgs[n_msgs++] = (sp_chat_message){"system", system};
    msgs[n_msgs++] = (sp_chat_message){"user", prompt};
    if (spc_prompt_make(m, chat, tmpl_source, kwargs, msgs, n_msgs, &pr) != SP_OK) { fail_status("prompt"); goto done; }
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = n_ctx ? n_ctx : pr.n + n_predict;
    cp.kv_type = kv_type == 1 ? SP_KV_F32 : SP_KV_F16;
    cli_rope_apply(&rope, &cp);
    if (pr.n + n_predict > cp.n_ctx) {
        fprintf(stderr, "error: prompt (%d tokens) + %d to generate exceed the context of %d\n", pr.n, n_predict, cp.n_ctx);
        goto done;
    }
    if (sp_context_new(m, &cp, &ctx) != SP_OK) { fail_status("context"); goto done; }
    if (draft_path && !self_spec && sp_model_load_with(draft_path, &load, &dm) != SP_OK) { fail_status("loading draft"); goto done; }
    if (dm && !spp.any_vocab && sp_vocab_check_same(m, dm) != SP_OK) { fail_status("draft"); goto done; }
    const bool other_vocab = dm && spp.any_vocab && sp_vocab_check_same(m, dm) != SP_OK;
    /* speculative decoding: a draft of the same tokenizer */
    const bool spec_decode = dm && !other_vocab && !no_spec_decode && (sp.temperature == 0 || spec_decode_sampling);
    if (spec || spec_decode) {
        sp_context_params dp = cp; /* the same scaling; auto resolves it per model */
        dp.n_ctx = spc_draft_ctx_size(other_vocab ? (int)strlen(pr.text) : pr.n, &spp, other_vocab) +
                   (spec_decode ? n_predict + SP_SPECDECODE_MAX_DRAFT : 0);
        if (sp_context_new(dm ? dm : m, &dp, &dctx) != SP_OK) { fail_status("draft context"); goto done; }
    }
    if (spec) {
        imp = malloc((size_t)pr.n * sizeof *imp);
        kept = malloc((size_t)pr.n);
        if (!imp || !kept) { fprintf(stderr, "error: out of memory\n"); goto done; }
    }
    if (sp_sampler_new(&sp, info->n_vocab, &smp) != SP_OK) { fail_status("sampler"); goto done; }
    if (spc_text_init(&out, m, stops, n_stops) != SP_OK) { fail_status("stop strings"); goto done; }
    if (!(logits = malloc((size_t)info->n_vocab * sizeof *logits))) { fprintf(stderr, "error: out of memory\n"); goto done; }
    for (int i = 0; i < pr.n; i++) sp_sampler_accept(smp, pr.ids[i]);

    double t0 = now_seconds();
    sp_specprefill_stats st;
    if (spc_prefill(ctx, spec ? dctx : NULL, &pr, NULL, &spp, logits, imp, kept, &st) != SP_OK) { fail_status(spec ? "speculative prefill" : "prefill"); goto done; }
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
    if (spec_decode && sp_specdecoder_new(ctx, dctx, pr.ids, pr.n, &sdp, &sd) != SP_OK) { fail_status("speculative decoding"); goto done; }
    bool ended = false;
    while (n_gen < n_predict && !out.stopped && !ended) {
        /* the next tokens: one at a time, or as many as the main model accepts of the draft's */
        sp_token step[SP_SPECDECODE_MAX_DRAFT + 1];
        int n_step = 1;
        if (sd) {
            if ((n_step = sp_specdecoder_step(sd, smp, logits, step, n_predict - n_gen)) < 0) { fail_status("speculative decoding"); goto done; }
        } else {
            step[0] = sp_sampler_sample(smp, logits);
            if (!sp_token_is_eog(m, step[0])) sp_sampler_accept(smp, step[0]);
        }
        for (int i = 0; i < n_step && !out.stopped; i++) {
            if (sp_token_is_eog(m, step[i])) { ended = true; break; }
            n_gen++;
            if (spc_text_add(&out, step[i]) != SP_OK) { fail_status("text"); goto done; }
            if ((piece = spc_text_piece(&out, false, &len)), len) { fwrite(piece, 1, len, stdout); fflush(stdout); }
        }
        if (sd || ended || n_gen == n_predict || out.stopped) continue;
        int32_t p = pr.n + n_gen - 1, row = 0;
        if (sp_decode(ctx, &step[0], &p, 1, &row, 1, logits) != SP_OK) { fail_status("decode"); goto done; }
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
    if (sd) {
        long drafted, accepted;
        sp_specdecoder_stats(sd, &drafted, &accepted);
        fprintf(stderr, "speculative decoding: %ld of %ld drafted tokens accepted (%.0f%%)\n", accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0);
    }
    rc = 0;
done:
    free(file_text); free(tmpl_owned); free(logits); free(imp); free(kept);
    spc_prompt_free(&pr);
    spc_text_free(&out);
    sp_sampler_free(smp);
    sp_specdecoder_free(sd);
    sp_context_free(ctx);
    sp_context_free(dctx);
    sp_model_free(dm);
    sp_model_free(m);
    return rc;
}
