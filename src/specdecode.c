/*
 * Speculative decoding with the SpecPrefill draft (Leviathan et al. 2023; Chen et al. 2023): the
 * draft has read the whole prompt, so after the first token it proposes the next γ tokens one by
 * one, and the main model checks them in one forward pass of γ+1 rows. The main model's own
 * choice decides every token, so the text is the main model's: with a greedy sampler, token for
 * token what plain decoding gives (the verification rows stay within the width where a matrix
 * product computes each row as a single-row decode does: SP_SPECDECODE_MAX_DRAFT).
 *
 * End-of-generation tokens are tokens like any other here (as in plain decoding): the caller
 * stops where it wants.
 *
 * One step: take the main model's choice t from the logits in hand; the draft catches up on the
 * tokens it has not seen, then proposes d1..dγ greedily; the main model decodes [t, d1..dγ];
 * its choice after each prefix is compared with the next proposal; the agreeing prefix is kept,
 * both caches are cut back to it, and the logits after it are in hand for the next step. γ adapts:
 * up when every proposal is taken, down when the first is refused; the draft rests for a while
 * (the main model decodes alone, a step per token) after many refusals in a row, or when the
 * proposals it gets accepted save less time than they cost (timed as it goes: a draft that is not
 * much cheaper than the main model — a long cache read by both — does not pay), then tries again.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "model.h"

enum { REST_AFTER = 4, REST_FIRST = 16, REST_MOST = 1024 };

struct sp_specdecoder {
    sp_context *main, *draft;
    const sp_model *mm, *dm;
    sp_specdecode_params p;
    int V, gamma;
    sp_token *tokens;          /* the prompt and every token emitted so far */
    int n_tokens, cap;
    int draft_n;               /* how many of tokens the draft has in its cache */
    int main_pos;              /* the position of the next token in the main model */
    int misses, rest;          /* refusals in a row at the smallest γ; tokens left to rest */
    int rest_next;             /* the next rest's length: doubles while the draft keeps failing */
    double t_draft, t_main;    /* seconds the draft spent per proposal, the main model per check (running means) */
    double gain;               /* accepted proposals per step (running mean) */
    float *rows, *scratch, *dlogits;
    long drafted, accepted, steps;
};

sp_specdecode_params sp_specdecode_default_params(void) {
    sp_specdecode_params p = {2, 1, SP_SPECDECODE_MAX_DRAFT};
    return p;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static sp_status push_token(sp_specdecoder *s, sp_token t) {
    if (s->n_tokens == s->cap) {
        const int cap = s->cap * 2;
        sp_token *nt = realloc(s->tokens, (size_t)cap * sizeof *nt);
        if (!nt) return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
        s->tokens = nt;
        s->cap = cap;
    }
    s->tokens[s->n_tokens++] = t;
    return SP_OK;
}

void sp_specdecoder_free(sp_specdecoder *s) {
    if (!s) return;
    free(s->tokens); free(s->rows); free(s->scratch); free(s->dlogits);
    free(s);
}

sp_status sp_specdecoder_new(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n_prompt,
                             const sp_specdecode_params *params, sp_specdecoder **out) {
    *out = NULL;
    const sp_specdecode_params p = params ? *params : sp_specdecode_default_params();
    if (!main_ctx || !draft_ctx || !prompt || n_prompt <= 0)
        return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: needs a main context, a draft context and the prompt");
    if (p.draft_min < 1 || p.draft_max > SP_SPECDECODE_MAX_DRAFT || p.draft_min > p.draft_max || p.draft_start < p.draft_min ||
        p.draft_start > p.draft_max)
        return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: draft sizes must satisfy 1 <= min <= start <= max <= %d", SP_SPECDECODE_MAX_DRAFT);
    if (draft_ctx->model == main_ctx->model)
        return sp_fail(SP_ERR_UNSUPPORTED, "speculative decoding: the draft is the main model itself (self-speculation scores with its first "
                                           "layers only; their cache cannot propose tokens): use a draft model");
    sp_status st;
    if ((st = sp_vocab_check_same(main_ctx->model, draft_ctx->model)) != SP_OK) return st;
    /* the draft holds the prompt, then SpecPrefill's look-ahead: keep the prompt only */
    if (sp_context_n_cached(draft_ctx) > n_prompt && (st = sp_context_truncate(draft_ctx, n_prompt)) != SP_OK) return st;
    sp_specdecoder *s = calloc(1, sizeof *s);
    if (!s) return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
    s->main = main_ctx;
    s->draft = draft_ctx;
    s->mm = main_ctx->model;
    s->dm = draft_ctx->model;
    s->p = p;
    s->gamma = p.draft_start;
    s->V = s->mm->info.n_vocab;
    s->cap = n_prompt + 256;
    s->tokens = malloc((size_t)s->cap * sizeof *s->tokens);
    s->rows = malloc((size_t)(SP_SPECDECODE_MAX_DRAFT + 1) * (size_t)s->V * sizeof *s->rows);
    s->scratch = malloc((size_t)s->V * sizeof *s->scratch);
    s->dlogits = malloc((size_t)s->draft->model->info.n_vocab * sizeof *s->dlogits);
    if (!s->tokens || !s->rows || !s->scratch || !s->dlogits) {
        sp_specdecoder_free(s);
        return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
    }
    memcpy(s->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    s->n_tokens = n_prompt;
    s->draft_n = sp_context_n_cached(draft_ctx); /* a draft that has not read the prompt catches up on the first step */
    s->main_pos = sp_context_last_pos(main_ctx) + 1;
    if (s->main_pos < n_prompt) s->main_pos = n_prompt;
    *out = s;
    return SP_OK;
}

/* The main model's choice from a row of logits, the row itself left as it was. */
static sp_token choose(sp_specdecoder *s, sp_sampler *smp, const float *row) {
    memcpy(s->scratch, row, (size_t)s->V * sizeof *row);
    return sp_sampler_sample(smp, s->scratch);
}

int sp_specdecoder_step(sp_specdecoder *s, sp_sampler *smp, float *logits, sp_token *out, int max_out) {
    if (!s || !smp || !logits || !out || max_out < 1) return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: bad arguments");
    sp_status st;
    const sp_token t = choose(s, smp, logits);
    sp_sampler_accept(smp, t);
    out[0] = t;
    if ((st = push_token(s, t)) != SP_OK) return st;
    if (max_out == 1) return 1; /* the caller wants no more: nothing to decode */
    /* γ: no more than the caller takes, nor the room left in either cache */
    int gamma = s->rest > 0 ? 0 : s->gamma;
    if (gamma > max_out - 1) gamma = max_out - 1;
    const int main_room = s->main->n_ctx - sp_context_n_cached(s->main) - 1, draft_room = s->draft->n_ctx - s->n_tokens;
    if (gamma > main_room) gamma = main_room;
    if (gamma > draft_room) gamma = draft_room;
    if (gamma < 0) gamma = 0;
    sp_token prop[SP_SPECDECODE_MAX_DRAFT + 1];
    prop[0] = t;
    const double t_start = seconds();
    if (gamma > 0) {
        /* the draft catches up on what it has not read (the prompt on the first step after a full
         * prefill; the last accepted tokens), ending with t; then it proposes greedily */
        const int from = s->draft_n, n_new = s->n_tokens - from;
        int32_t *at = malloc((size_t)n_new * sizeof *at), last = n_new - 1;
        if (!at) return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
        for (int i = 0; i < n_new; i++) at[i] = from + i;
        st = sp_decode(s->draft, s->tokens + from, at, n_new, &last, 1, s->dlogits);
        free(at);
        if (st != SP_OK) return st;
        s->draft_n = s->n_tokens;
        for (int k = 1; k <= gamma; k++) {
            int best = 0;
            for (int v = 1; v < s->dm->info.n_vocab; v++) if (s->dlogits[v] > s->dlogits[best]) best = v;
            prop[k] = best;
            if (k == gamma) break;
            int32_t dpos = s->draft_n, row = 0;
            if ((st = sp_decode(s->draft, &prop[k], &dpos, 1, &row, 1, s->dlogits)) != SP_OK) return st;
            s->draft_n++;
        }
    }
    const double t_drafted = seconds();
    /* the main model reads t and the proposals; its choice after each prefix decides */
    int32_t pos[SP_SPECDECODE_MAX_DRAFT + 1], rows[SP_SPECDECODE_MAX_DRAFT + 1];
    for (int i = 0; i <= gamma; i++) { pos[i] = s->main_pos + i; rows[i] = i; }
    const int cached = sp_context_n_cached(s->main);
    if ((st = sp_decode(s->main, prop, pos, gamma + 1, rows, gamma + 1, s->rows)) != SP_OK) return st;
    int a = 0, n_out = 1;
    while (a < gamma) {
        const sp_token c = choose(s, smp, s->rows + (size_t)a * s->V);
        if (c != prop[a + 1]) break;
        sp_sampler_accept(smp, c);
        out[n_out++] = c;
        if ((st = push_token(s, c)) != SP_OK) return st;
        a++;
    }
    /* keep what was accepted in both caches; the logits after it are the next step's */
    if ((st = sp_context_truncate(s->main, cached + 1 + a)) != SP_OK) return st;
    if (s->draft_n > s->n_tokens) {
        if ((st = sp_context_truncate(s->draft, s->n_tokens)) != SP_OK) return st;
        s->draft_n = s->n_tokens;
    }
    memcpy(logits, s->rows + (size_t)a * s->V, (size_t)s->V * sizeof *logits);
    s->main_pos += 1 + a;
    s->steps++;
    const double t_checked = seconds();
    if (gamma > 0) {
        s->drafted += gamma;
        s->accepted += a;
        /* running means over the last few steps: what a proposal costs, what a check costs, and
         * what the proposals bring */
        const double w = s->drafted == gamma ? 1.0 : 0.25;
        s->t_draft += w * ((t_drafted - t_start) / gamma - s->t_draft);
        s->t_main += w * ((t_checked - t_drafted) - s->t_main);
        s->gain += w * (a - s->gain);
        if (a == gamma && s->gamma < s->p.draft_max) s->gamma++;
        else if (a == 0 && s->gamma > s->p.draft_min) s->gamma--;
        s->misses = a == 0 && s->gamma == s->p.draft_min ? s->misses + 1 : 0;
        /* rest when the draft is refused again and again, or when what it brings (accepted tokens,
         * each a check saved) is worth less than what it costs (its proposals) */
        const bool not_worth = s->drafted >= 4 * SP_SPECDECODE_MAX_DRAFT && s->gain * s->t_main < s->gamma * s->t_draft;
        if (s->misses >= REST_AFTER || not_worth) {
            s->rest = s->rest_next ? s->rest_next : REST_FIRST;
            s->rest_next = s->rest * 2 < REST_MOST ? s->rest * 2 : REST_MOST;
            s->misses = 0;
            s->gain = s->gamma;
        } else if (a > 0) {
            s->rest_next = 0; /* it pays again: the next rest starts short */
        }
    } else if (s->rest > 0) {
        s->rest--;
    }
    return n_out;
}

void sp_specdecoder_stats(const sp_specdecoder *s, long *drafted, long *accepted) {
    if (drafted) *drafted = s ? s->drafted : 0;
    if (accepted) *accepted = s ? s->accepted : 0;
}
