/*
 * Speculative prefill. The path of one prompt:
 *   1. draft prefill: the draft model reads prompt[0..n-1) (no logits);
 *   2. look-ahead: the last prompt token and K-1 greedily generated tokens are decoded one at a
 *      time; for each of these queries, every layer and head's softmax over the prompt keys is
 *      pooled and max-reduced into that query's score row (kernels: sp_attention_probs_max);
 *   3. scoring: importance[j] = mean over queries;
 *   4. selection: best chunks + always-kept tokens (selection.c);
 *   5. main prefill: only the kept tokens, each at its original position.
 * The draft's look-ahead tokens never reach the main model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "model.h"
#include "selection.h"

sp_specprefill_params sp_specprefill_default_params(void) {
    sp_specprefill_params p = {0.3f, 32, 8, 13, true, true, 0.0f, 0.05f, 0.9f, 0, false};
    return p;
}

/* The one place the parameters are validated: the stages, sp_specprefill, and every front end
 * that takes them from a user (CLI options, server requests) call this. */
sp_status sp_specprefill_params_check(const sp_specprefill_params *p) {
    if (!p) return sp_fail(SP_ERR_ARGUMENT, "specprefill: no parameters");
    if (!(p->keep_rate > 0 && p->keep_rate <= 1)) return sp_fail(SP_ERR_ARGUMENT, "specprefill: keep rate %g is not in (0, 1]", p->keep_rate);
    if (p->chunk < 1) return sp_fail(SP_ERR_ARGUMENT, "specprefill: chunk %d is not >= 1", p->chunk);
    if (p->lookahead < 1 || p->lookahead > 256) return sp_fail(SP_ERR_ARGUMENT, "specprefill: lookahead %d is not in 1..256", p->lookahead);
    if (p->pool_kernel < 0 || p->pool_kernel > 1025) return sp_fail(SP_ERR_ARGUMENT, "specprefill: pool kernel %d is not in 0..1025", p->pool_kernel);
    if (!(p->keep_mass >= 0 && p->keep_mass <= 1)) return sp_fail(SP_ERR_ARGUMENT, "specprefill: keep mass %g is not in [0, 1]", p->keep_mass);
    if (!(p->keep_min >= 0 && p->keep_min <= p->keep_max && p->keep_max <= 1))
        return sp_fail(SP_ERR_ARGUMENT, "specprefill: keep-min %g and keep-max %g must satisfy 0 <= keep-min <= keep-max <= 1", p->keep_min, p->keep_max);
    if (p->self_layers < 0) return sp_fail(SP_ERR_ARGUMENT, "specprefill: self layers %d is negative", p->self_layers);
    return SP_OK;
}

/* The arguments every stage takes about the prompt. */
static sp_status check_prompt(const sp_model *m, const sp_token *prompt, int n, const char *stage) {
    if (!m || !prompt || n <= 0) return sp_fail(SP_ERR_ARGUMENT, "%s: needs a model and a non-empty prompt", stage);
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= m->info.n_vocab)
            return sp_fail(SP_ERR_ARGUMENT, "%s: token %d (at %d) is outside the vocabulary", stage, prompt[i], i);
    return SP_OK;
}

sp_status sp_vocab_check_same(const sp_model *a, const sp_model *b) {
    const int na = sp_vocab_size(a->vocab), nb = sp_vocab_size(b->vocab);
    const int n = na < nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int la, lb;
        const char *ta = sp_vocab_text(a->vocab, i, &la), *tb = sp_vocab_text(b->vocab, i, &lb);
        if (la != lb || memcmp(ta, tb, (size_t)la) != 0)
            return sp_fail(SP_ERR_ARGUMENT,
                           "the draft's tokenizer differs from the main model's at token %d ('%.*s' vs '%.*s'); use a draft of the same family or --draft-any-vocab",
                           i, la > 40 ? 40 : la, ta, lb > 40 ? 40 : lb, tb);
    }
    if (na != nb)
        return sp_fail(SP_ERR_ARGUMENT, "the draft has %d tokens and the main model %d (first differing token: %d); use --draft-any-vocab",
                       nb, na, n);
    return SP_OK;
}

static sp_token argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Byte span of each token in the text it was tokenized from. Special tokens count only where
 * their markup is in the text (an added BOS is not); SentencePiece's leading space is absorbed. */
static void token_spans(const sp_model *m, const sp_token *t, int n, const char *text, int *start, int *end) {
    const size_t text_len = strlen(text);
    size_t pos = 0;
    char buf[256];
    for (int i = 0; i < n; i++) {
        const sp_token_type ty = sp_token_get_type(m, t[i]);
        int k = sp_token_to_bytes(m, t[i], true, buf, sizeof buf);
        if (k < 0) k = -k; /* longer than buf: only the length matters */
        if (ty == SP_TOKEN_CONTROL && (k > (int)sizeof buf || pos + (size_t)k > text_len || memcmp(text + pos, buf, (size_t)k) != 0))
            k = 0;
        if (pos == 0 && k > 0 && k <= (int)sizeof buf && buf[0] == ' ' && text_len > 0 && text[0] != ' ') k--;
        start[i] = (int)(pos < text_len ? pos : text_len);
        pos += (size_t)k;
        end[i] = (int)(pos < text_len ? pos : text_len);
    }
}

/* Runs the draft (its first n_layers layers; 0 = all) over its own tokens and fills importance[0..n).
 * reuse: the start of the draft's cache that already is this prompt is not read again. */
static sp_status score_tokens(sp_context *draft, const sp_token *prompt, int n, const sp_specprefill_params *p,
                              int n_layers, bool reuse, float *importance, sp_specprefill_stats *st) {
    const sp_model *dm = draft->model;
    const int V = dm->info.n_vocab;
    int K = p->lookahead; /* checked: 1..256 */
    if (K > draft->n_ctx - n + 1) K = draft->n_ctx - n + 1;
    if (K < 1) return sp_fail(SP_ERR_CONTEXT_FULL, "specprefill: the draft context (%d) cannot hold the prompt (%d tokens)", draft->n_ctx, n);
    sp_forward_opts o = {0};
    o.n_layers = n_layers;
    float *acc = calloc((size_t)K * n, sizeof *acc);
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!acc || !logits || !pos) {
        free(acc); free(logits); free(pos);
        return sp_fail(SP_ERR_MEMORY, "specprefill: out of memory for %d×%d scores", K, n);
    }
    for (int i = 0; i < n; i++) pos[i] = i;
    /* the first query is the last prompt token's, so at most n-1 cached tokens stay; a cache of
     * fewer layers (self-speculation with another self_layers) is of no use */
    const int layers = n_layers > 0 && n_layers < dm->info.n_layer ? n_layers : dm->info.n_layer;
    const int start = reuse && draft->kv_layers == layers ? sp_context_common_prefix(draft, prompt, n - 1) : 0;
    sp_context_truncate(draft, start);
    sp_context_fit_rope(draft, n); /* where the draft starts empty */
    st->n_draft_reused = start;
    double t0 = sp_seconds();
    sp_status s = sp_forward(draft, prompt + start, pos + start, n - 1 - start, NULL, 0, NULL, &o);
    double t1 = sp_seconds();
    /* queries: the last prompt token, then each generated token */
    o.score_n_keys = n;
    o.score_pool_kernel = p->pool_kernel;
    sp_token t = prompt[n - 1];
    int q = 0;
    for (; s == SP_OK && q < K; q++) {
        int32_t qpos = n - 1 + q, row = 0;
        o.score_acc = acc + (size_t)q * n;
        s = sp_forward(draft, &t, &qpos, 1, &row, 1, logits, &o);
        if (s != SP_OK) break;
        t = argmax(logits, V);
        if (sp_token_is_eog(dm, t)) { q++; break; }
    }
    double t2 = sp_seconds();
    if (s == SP_OK) {
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int k = 0; k < q; k++) sum += acc[(size_t)k * n + j];
            importance[j] = (float)(sum / q);
        }
    }
    double t3 = sp_seconds();
    st->draft_prefill_s = t1 - t0;
    st->lookahead_s = t2 - t1; /* includes the per-query scoring, which runs inside the pass */
    st->scoring_s = t3 - t2;
    st->n_lookahead = q;
    free(acc); free(logits); free(pos);
    return s;
}

/* The tokens kept whatever the scores: BOS and control tokens (if p->keep_special), the last. */
static void forced_tokens(const sp_model *m, const sp_token *prompt, int n, const sp_specprefill_params *p, uint8_t *forced) {
    for (int i = 0; i < n; i++) {
        const sp_token_type ty = sp_token_get_type(m, prompt[i]);
        forced[i] = p->keep_special && (prompt[i] == sp_token_bos(m) || ty == SP_TOKEN_CONTROL || ty == SP_TOKEN_USER_DEFINED);
    }
    if (n > 0) forced[n - 1] = 1; /* the next token's logits come from the last prompt token */
}

/* sp_specprefill_score; reuse: keep what the draft's cache holds of this prompt. */
static sp_status score(sp_context *draft_ctx, const sp_model *main_model, const sp_token *prompt, int n, const char *prompt_text,
                       const sp_specprefill_params *params, bool reuse, float *importance, sp_specprefill_stats *st) {
    sp_status s;
    if (!draft_ctx || !importance) return sp_fail(SP_ERR_ARGUMENT, "specprefill score: needs a draft context and an importance buffer");
    if ((s = sp_specprefill_params_check(params)) != SP_OK || (s = check_prompt(main_model, prompt, n, "specprefill score")) != SP_OK)
        return s;
    const sp_model *dm = draft_ctx->model;
    st->n_prompt = n;
    if (dm == main_model) { /* self-speculation: the model's first layers score */
        const int layers = params->self_layers > 0 ? params->self_layers : (dm->info.n_layer + 3) / 4;
        return score_tokens(draft_ctx, prompt, n, params, layers < dm->info.n_layer ? layers : dm->info.n_layer, reuse, importance, st);
    }
    if ((s = sp_vocab_check_same(main_model, dm)) == SP_OK) return score_tokens(draft_ctx, prompt, n, params, 0, reuse, importance, st);
    if (!params->any_vocab) return s; /* the error names the first difference */
    if (!prompt_text) return sp_fail(SP_ERR_ARGUMENT, "specprefill score: a draft with another tokenizer needs the prompt text");
    /* another tokenizer: the draft scores its own tokens of the text; each main token takes the
     * max over the draft tokens its bytes overlap */
    sp_token *dtok = NULL;
    int nd = 0, *spans = NULL;
    float *dimp = NULL;
    if ((s = sp_tokenize(dm, prompt_text, strlen(prompt_text), false, true, &dtok, &nd)) != SP_OK) return s;
    if (nd == 0) {
        s = sp_fail(SP_ERR_ARGUMENT, "specprefill score: the draft tokenizes the prompt to nothing");
    } else if (!(dimp = malloc((size_t)nd * sizeof *dimp)) || !(spans = malloc(((size_t)nd + (size_t)n) * 2 * sizeof *spans))) {
        s = sp_fail(SP_ERR_MEMORY, "specprefill score: out of memory");
    } else if ((s = score_tokens(draft_ctx, dtok, nd, params, 0, reuse, dimp, st)) == SP_OK) {
        int *ds = spans, *de = spans + nd, *ms = spans + 2 * nd, *me = spans + 2 * nd + n;
        token_spans(dm, dtok, nd, prompt_text, ds, de);
        token_spans(main_model, prompt, n, prompt_text, ms, me);
        sp_map_importance(ds, de, dimp, nd, ms, me, importance, n);
    }
    free(dtok); free(spans); free(dimp);
    return s;
}

sp_status sp_specprefill_score(sp_context *draft_ctx, const sp_model *main_model, const sp_token *prompt, int n,
                               const char *prompt_text, const sp_specprefill_params *params, float *importance,
                               sp_specprefill_stats *stats) {
    sp_specprefill_stats st_local, *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    return score(draft_ctx, main_model, prompt, n, prompt_text, params, false, importance, st);
}

sp_status sp_specprefill_select(const sp_model *main_model, const sp_token *prompt, int n, const float *importance,
                                const sp_specprefill_params *params, uint8_t *kept, int *n_kept) {
    sp_status s;
    if (!importance || !kept) return sp_fail(SP_ERR_ARGUMENT, "specprefill select: needs importance and kept buffers");
    if ((s = sp_specprefill_params_check(params)) != SP_OK || (s = check_prompt(main_model, prompt, n, "specprefill select")) != SP_OK)
        return s;
    uint8_t *forced = malloc((size_t)n);
    if (!forced) return sp_fail(SP_ERR_MEMORY, "specprefill select: out of memory");
    forced_tokens(main_model, prompt, n, params, forced);
    const int k = sp_select_chunks(importance, n, forced, params, kept);
    free(forced);
    if (n_kept) *n_kept = k;
    return SP_OK;
}

/* The kept tokens of prompt[from..n) appended to ctx at their positions. */
static sp_status prefill_kept_from(sp_context *ctx, const sp_token *prompt, int n, const uint8_t *kept, int from, float *logits) {
    sp_status s;
    if (!ctx || !kept || !logits) return sp_fail(SP_ERR_ARGUMENT, "prefill: needs a context, kept flags and a logits buffer");
    if ((s = check_prompt(ctx->model, prompt, n, "prefill")) != SP_OK) return s;
    int n_kept = 0;
    for (int i = from; i < n; i++) n_kept += kept[i] != 0;
    if (!kept[n - 1]) return sp_fail(SP_ERR_ARGUMENT, "prefill: the last prompt token must be kept");
    if (ctx->n_cached + n_kept > ctx->n_ctx)
        return sp_fail(SP_ERR_CONTEXT_FULL, "prefill: %d kept tokens do not fit the context (%d of %d used)", n_kept, ctx->n_cached, ctx->n_ctx);
    sp_token *tok = malloc((size_t)n_kept * sizeof *tok);
    int32_t *pos = malloc((size_t)n_kept * sizeof *pos);
    if (!tok || !pos) {
        free(tok); free(pos);
        return sp_fail(SP_ERR_MEMORY, "prefill: out of memory");
    }
    for (int i = from, k = 0; i < n; i++)
        if (kept[i]) { tok[k] = prompt[i]; pos[k++] = i; }
    int32_t last = n_kept - 1;
    s = sp_decode(ctx, tok, pos, n_kept, &last, 1, logits);
    free(tok);
    free(pos);
    return s;
}

sp_status sp_prefill_kept(sp_context *ctx, const sp_token *prompt, int n, const uint8_t *kept, float *logits) {
    return prefill_kept_from(ctx, prompt, n, kept, 0, logits);
}

/* The stages in a row, the arguments checked by each; the timings of each in stats. cached:
 * main_ctx keeps its tokens below n_reuse that match the prompt and draft_ctx what it holds of it
 * (sp_specprefill_cached); else main_ctx must be empty and the draft starts afresh. */
static sp_status run(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n, bool cached, int n_reuse,
                     const char *prompt_text, const sp_specprefill_params *params, float *logits, float *importance,
                     uint8_t *kept, sp_specprefill_stats *stats) {
    const sp_specprefill_params p = params ? *params : sp_specprefill_default_params();
    sp_specprefill_stats st_local, *st = stats ? stats : &st_local;
    memset(st, 0, sizeof *st);
    if (!main_ctx || !draft_ctx || !logits)
        return sp_fail(SP_ERR_ARGUMENT, "specprefill: needs a main context, a draft context and a logits buffer");
    if (!cached && main_ctx->n_cached != 0) return sp_fail(SP_ERR_ARGUMENT, "specprefill: the main context must be empty");
    if (n > main_ctx->n_ctx) return sp_fail(SP_ERR_CONTEXT_FULL, "specprefill: prompt of %d tokens exceeds the context of %d", n, main_ctx->n_ctx);
    sp_status s = check_prompt(main_ctx->model, prompt, n, "specprefill");
    if (s != SP_OK) return s;
    const double t_start = sp_seconds();
    /* the main cache's reusable start: cached tokens of this prompt, in order, below the limit
     * (the last prompt token always runs again: its logits are the answer's first token's);
     * where a cached token differs, the reuse ends after the last one that agrees */
    int limit = n_reuse < n - 1 ? n_reuse : n - 1, r = 0;
    if (!cached) limit = 0;
    if (limit > sp_context_last_pos(main_ctx) + 1) limit = sp_context_last_pos(main_ctx) + 1;
    while (r < main_ctx->n_cached && main_ctx->cell_pos[r] < limit && main_ctx->cell_tok[r] == prompt[main_ctx->cell_pos[r]] &&
           (r == 0 || main_ctx->cell_pos[r] > main_ctx->cell_pos[r - 1]))
        r++;
    const int start = r < main_ctx->n_cached && main_ctx->cell_pos[r] < limit ? (r ? main_ctx->cell_pos[r - 1] + 1 : 0) : limit;
    sp_context_truncate(main_ctx, r);
    sp_context_fit_rope(main_ctx, n); /* where the main context starts empty */
    float *imp = importance ? importance : malloc((size_t)n * sizeof *imp);
    uint8_t *keep = kept ? kept : malloc((size_t)n);
    int n_kept = 0;
    if (!imp || !keep) {
        s = sp_fail(SP_ERR_MEMORY, "specprefill: out of memory");
    } else if ((s = score(draft_ctx, main_ctx->model, prompt, n, prompt_text, &p, cached, imp, st)) == SP_OK) {
        const double t_sel = sp_seconds();
        /* the new tokens are selected as a prompt of their own; the reused ones are as cached */
        memset(keep, 0, (size_t)start);
        for (int i = 0; i < r; i++) keep[main_ctx->cell_pos[i]] = 1;
        if ((s = sp_specprefill_select(main_ctx->model, prompt + start, n - start, imp + start, &p, keep + start, &n_kept)) == SP_OK) {
            const double t_main = sp_seconds();
            s = prefill_kept_from(main_ctx, prompt, n, keep, start, logits);
            st->selection_s = t_main - t_sel;
            st->main_prefill_s = sp_seconds() - t_main;
            st->n_prompt = n;
            st->n_kept = r + n_kept;
            st->n_reused = start;
            st->n_reused_kept = r;
            st->ttft_s = sp_seconds() - t_start;
        }
    }
    if (s != SP_OK && cached) { /* neither cache may hold half of a failed prefill */
        sp_context_reset(main_ctx);
        sp_context_reset(draft_ctx);
    }
    if (imp != importance) free(imp);
    if (keep != kept) free(keep);
    return s;
}

sp_status sp_specprefill(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n,
                         const char *prompt_text, const sp_specprefill_params *params, float *logits,
                         float *importance, uint8_t *kept, sp_specprefill_stats *stats) {
    return run(main_ctx, draft_ctx, prompt, n, false, 0, prompt_text, params, logits, importance, kept, stats);
}

sp_status sp_specprefill_cached(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n, int n_reuse,
                                const char *prompt_text, const sp_specprefill_params *params, float *logits,
                                float *importance, uint8_t *kept, sp_specprefill_stats *stats) {
    return run(main_ctx, draft_ctx, prompt, n, true, n_reuse, prompt_text, params, logits, importance, kept, stats);
}
