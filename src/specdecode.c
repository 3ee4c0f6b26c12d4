/*
 * Speculative decoding with the SpecPrefill draft (Leviathan et al. 2023; Chen et al. 2023): the
 * draft has read the whole prompt, so after the first token it proposes the next γ tokens one by
 * one, and the main model checks them in one forward pass of γ+1 rows (at most
 * SP_SPECDECODE_MAX_DRAFT + 1: the width where a matrix product computes each row as a single-row
 * decode does, so that greedy text is token for token what plain decoding gives).
 *
 * The acceptance rule is the standard one, through the caller's sampler: the draft draws each
 * proposal d from q, the sampler's distribution over the draft's logits (penalties, top-k/p,
 * min-p, temperature: the same chain); the main model's distribution p at that position takes it
 * with probability min(1, p(d)/q(d)); at the first refusal the token there is drawn from the
 * normalised residual max(0, p − q), and the step ends. Every token is then distributed as plain
 * sampling from p would give it. Greedy is the case where p and q are one-hot: a proposal is
 * taken when it is the main model's argmax, and the residual is that argmax.
 *
 * End-of-generation tokens are tokens like any other here (as in plain decoding): the caller
 * stops where it wants.
 *
 * One step: the first token t is the residual drawn at the last step's refusal, or else a draw
 * from the logits in hand; the draft catches up on the tokens it has not seen, then proposes
 * d1..dγ; the main model decodes [t, d1..dγ]; the proposals are checked in order; the accepted
 * prefix is kept, both caches are cut back to it, and the logits after it are in hand for the
 * next step. γ adapts: up when every proposal is taken, down when the first is refused; the draft
 * rests for a while (the main model decodes alone, a step per token) after four steps in a row
 * with nothing accepted, or when a token costs more this way than alone (timed as it goes: a
 * draft that is not much cheaper than the main model — a long cache read by both — does not pay,
 * nor a check of several rows that costs much more than one), then tries again on probation: one
 * more step with nothing accepted and it rests twice as long.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "model.h"
#include "sampler.h"

enum { REST_AFTER = 4, REST_FIRST = 16, REST_MOST = 1024 };

struct sp_specdecoder {
    sp_context *main, *draft;
    sp_specdecode_params p;
    int V, gamma;
    sp_token *tokens;          /* the prompt and every token emitted so far */
    int n_tokens, cap;
    int draft_n;               /* how many of tokens the draft has in its cache */
    int main_pos;              /* the position of the next token in the main model */
    int misses, rest;          /* steps in a row with every proposal refused; tokens left to rest */
    int rest_next;             /* the next rest's length: doubles while the draft keeps failing */
    double t_draft, t_main;    /* seconds the draft spent per proposal, the main model per check (running means) */
    double t_plain;            /* seconds per token of the main model alone (measured while the draft rests; 0: not yet) */
    double gain;               /* accepted proposals per step (running mean) */
    sp_token pending;          /* the residual drawn at the last refusal: the next step's first token (-1: none) */
    float *rows, *work, *probs, *q, *dlogits; /* q: the draft's distribution at each proposal */
    long drafted, accepted;    /* this sequence's proposals, and those taken */
};

sp_specdecode_params sp_specdecode_default_params(void) {
    sp_specdecode_params p = {2, 1, SP_SPECDECODE_MAX_DRAFT, false};
    return p;
}

/* Room for n tokens (and then some: a sequence grows a token at a time). */
static sp_status reserve(sp_specdecoder *s, int n) {
    if (n <= s->cap) return SP_OK;
    const int cap = n > 2 * s->cap ? n + 256 : 2 * s->cap;
    sp_token *nt = realloc(s->tokens, (size_t)cap * sizeof *nt);
    if (!nt) return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
    s->tokens = nt;
    s->cap = cap;
    return SP_OK;
}

static sp_status push_token(sp_specdecoder *s, sp_token t) {
    sp_status st = reserve(s, s->n_tokens + 1);
    if (st == SP_OK) s->tokens[s->n_tokens++] = t;
    return st;
}

void sp_specdecoder_free(sp_specdecoder *s) {
    if (!s) return;
    free(s->tokens); free(s->rows); free(s->work); free(s->probs); free(s->q); free(s->dlogits);
    free(s);
}

static sp_status check_params(const sp_specdecode_params *params, sp_specdecode_params *p) {
    *p = params ? *params : sp_specdecode_default_params();
    if (p->draft_min < 1 || p->draft_max > SP_SPECDECODE_MAX_DRAFT || p->draft_min > p->draft_max)
        return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: draft sizes must satisfy 1 <= min <= max <= %d", SP_SPECDECODE_MAX_DRAFT);
    p->draft_start = p->draft_start < p->draft_min ? p->draft_min : p->draft_start > p->draft_max ? p->draft_max : p->draft_start;
    return SP_OK;
}

/* A new sequence: the prompt, where each cache stands, nothing pending or counted. */
static sp_status start(sp_specdecoder *s, const sp_token *prompt, int n_prompt) {
    sp_status st;
    /* the draft holds the prompt, then SpecPrefill's look-ahead — or, after a full prefill, an
     * earlier text: keep what is this prompt */
    if ((st = sp_context_truncate(s->draft, sp_context_common_prefix(s->draft, prompt, n_prompt))) != SP_OK) return st;
    sp_context_fit_rope(s->draft, n_prompt); /* a draft that reads the prompt afresh reads it as the main did */
    if ((st = reserve(s, n_prompt)) != SP_OK) return st;
    memcpy(s->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    s->n_tokens = n_prompt;
    s->draft_n = sp_context_n_cached(s->draft); /* a draft that has not read the prompt catches up on the first step */
    s->main_pos = sp_context_last_pos(s->main) + 1;
    if (s->main_pos < n_prompt) s->main_pos = n_prompt;
    s->pending = -1;
    s->drafted = s->accepted = 0;
    return SP_OK;
}

sp_status sp_specdecoder_new(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n_prompt,
                             const sp_specdecode_params *params, sp_specdecoder **out) {
    *out = NULL;
    sp_specdecode_params p;
    if (!main_ctx || !draft_ctx || !prompt || n_prompt <= 0)
        return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: needs a main context, a draft context and the prompt");
    sp_status st;
    if ((st = check_params(params, &p)) != SP_OK) return st;
    if (draft_ctx->model == main_ctx->model)
        return sp_fail(SP_ERR_UNSUPPORTED, "speculative decoding: the draft is the main model itself (self-speculation scores with its first "
                                           "layers only; their cache cannot propose tokens): use a draft model");
    if ((st = sp_vocab_check_same(main_ctx->model, draft_ctx->model)) != SP_OK) return st;
    if (draft_ctx->model->info.n_vocab != main_ctx->model->info.n_vocab)
        return sp_fail(SP_ERR_UNSUPPORTED, "speculative decoding: the draft has %d output rows and the main model %d",
                       draft_ctx->model->info.n_vocab, main_ctx->model->info.n_vocab);
    sp_specdecoder *s = calloc(1, sizeof *s);
    if (!s) return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
    s->main = main_ctx;
    s->draft = draft_ctx;
    s->p = p;
    s->gamma = p.draft_start;
    s->V = main_ctx->model->info.n_vocab;
    s->rows = malloc((size_t)(SP_SPECDECODE_MAX_DRAFT + 1) * (size_t)s->V * sizeof *s->rows);
    s->work = malloc((size_t)s->V * sizeof *s->work);
    s->probs = malloc((size_t)s->V * sizeof *s->probs);
    s->q = malloc((size_t)SP_SPECDECODE_MAX_DRAFT * (size_t)s->V * sizeof *s->q);
    s->dlogits = malloc((size_t)s->V * sizeof *s->dlogits);
    if (!s->rows || !s->work || !s->probs || !s->q || !s->dlogits) {
        sp_specdecoder_free(s);
        return sp_fail(SP_ERR_MEMORY, "speculative decoding: out of memory");
    }
    if ((st = start(s, prompt, n_prompt)) != SP_OK) {
        sp_specdecoder_free(s);
        return st;
    }
    *out = s;
    return SP_OK;
}

sp_status sp_specdecoder_restart(sp_specdecoder *s, const sp_token *prompt, int n_prompt, const sp_specdecode_params *params) {
    if (!s || !prompt || n_prompt <= 0) return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: needs the decoder and the prompt");
    sp_status st;
    sp_specdecode_params p;
    if ((st = check_params(params ? params : &s->p, &p)) != SP_OK) return st;
    s->p = p;
    s->gamma = s->gamma < p.draft_min ? p.draft_min : s->gamma > p.draft_max ? p.draft_max : s->gamma;
    return start(s, prompt, n_prompt);
}

int sp_specdecoder_step(sp_specdecoder *s, sp_sampler *smp, float *logits, sp_token *out, int max_out) {
    if (!s || !smp || !logits || !out || max_out < 1) return sp_fail(SP_ERR_ARGUMENT, "speculative decoding: bad arguments");
    sp_status st;
    sp_token t = s->pending;
    if (t < 0) {
        memcpy(s->work, logits, (size_t)s->V * sizeof *logits);
        t = sp_sampler_sample(smp, s->work);
    }
    s->pending = -1;
    sp_sampler_accept(smp, t);
    out[0] = t;
    if ((st = push_token(s, t)) != SP_OK) return st;
    if (max_out == 1) { /* the caller decodes t itself, or stops */
        s->main_pos++;
        return 1;
    }
    /* γ: no more than the caller takes, nor the room left in either cache */
    /* the first step decodes alone: it times the main model's own step, which every later
     * decision weighs the draft's work against */
    int gamma = !s->p.always && (s->rest > 0 || s->t_plain == 0) ? 0 : s->gamma;
    if (gamma > max_out - 1) gamma = max_out - 1;
    const int main_room = s->main->n_ctx - sp_context_n_cached(s->main) - 1, draft_room = s->draft->n_ctx - s->n_tokens;
    if (gamma > main_room) gamma = main_room;
    if (gamma > draft_room) gamma = draft_room;
    if (gamma < 0) gamma = 0;
    sp_token prop[SP_SPECDECODE_MAX_DRAFT + 1];
    prop[0] = t;
    double t_start = sp_seconds();
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
        /* a long catch-up (the prompt after a full prefill, the tokens of batched steps) is paid
         * once, like a prefill: the proposals' cost is timed without it */
        if (n_new > SP_SPECDECODE_MAX_DRAFT + 1) t_start = sp_seconds();
        for (int k = 1; k <= gamma; k++) {
            float *q = s->q + (size_t)(k - 1) * s->V;
            sp_sampler_probs(smp, s->dlogits, s->work, q);
            prop[k] = sp_sampler_draw(smp, q);
            if (k == gamma) break;
            int32_t dpos = s->draft_n, row = 0;
            if ((st = sp_decode(s->draft, &prop[k], &dpos, 1, &row, 1, s->dlogits)) != SP_OK) return st;
            s->draft_n++;
        }
    }
    const double t_drafted = sp_seconds();
    /* the main model reads t and the proposals; its choice after each prefix decides */
    int32_t pos[SP_SPECDECODE_MAX_DRAFT + 1], rows[SP_SPECDECODE_MAX_DRAFT + 1];
    for (int i = 0; i <= gamma; i++) { pos[i] = s->main_pos + i; rows[i] = i; }
    const int cached = sp_context_n_cached(s->main);
    if ((st = sp_decode(s->main, prop, pos, gamma + 1, rows, gamma + 1, s->rows)) != SP_OK) return st;
    int a = 0, n_out = 1;
    while (a < gamma) {
        /* p: the main model's distribution after t, d1..da (the sampler's history has them) */
        const sp_token d = prop[a + 1];
        const float *q = s->q + (size_t)a * s->V;
        sp_sampler_probs(smp, s->rows + (size_t)a * s->V, s->work, s->probs);
        if (!(sp_sampler_uniform(smp) * q[d] < s->probs[d])) {
            /* refused: the token here comes from the residual max(0, p − q), normalised */
            for (int v = 0; v < s->V; v++) s->probs[v] = s->probs[v] > q[v] ? s->probs[v] - q[v] : 0;
            s->pending = sp_sampler_draw(smp, s->probs);
            if (s->pending < 0) s->pending = d; /* p == q (rounding): nothing to correct */
            break;
        }
        sp_sampler_accept(smp, d);
        out[n_out++] = d;
        if ((st = push_token(s, d)) != SP_OK) return st;
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
    const double t_checked = sp_seconds();
    if (gamma > 0) {
        s->drafted += gamma;
        s->accepted += a;
        /* running means over the last few steps: what a proposal costs, what a check costs, and
         * what the proposals bring */
        const double w = s->t_draft > 0 ? 0.25 : 1.0; /* the first measurement starts the means */
        s->t_draft += w * ((t_drafted - t_start) / gamma - s->t_draft);
        s->t_main += w * ((t_checked - t_drafted) - s->t_main);
        s->gain += w * (a - s->gain);
        if (a == gamma && s->gamma < s->p.draft_max) s->gamma++;
        else if (a == 0 && s->gamma > s->p.draft_min) s->gamma--;
        s->misses = a == 0 ? s->misses + 1 : 0;
        /* rest when the draft is refused again and again, or when a token costs more this way
         * (proposals and a check of several rows, for 1 + gain tokens) than alone */
        const bool not_worth = s->gamma * s->t_draft + s->t_main > (1 + s->gain) * s->t_plain;
        if (!s->p.always && (s->misses >= REST_AFTER || not_worth)) {
            s->rest = s->rest_next ? s->rest_next : REST_FIRST;
            s->rest_next = s->rest * 2 < REST_MOST ? s->rest * 2 : REST_MOST;
            s->misses = 0;
        } else if (a > 0) {
            s->rest_next = 0; /* it pays again: the next rest starts short */
        }
    } else {
        const double w = s->t_plain > 0 ? 0.25 : 1.0;
        s->t_plain += w * ((t_checked - t_drafted) - s->t_plain);
        /* back from a rest on probation: one step with nothing accepted and it rests again, twice as long */
        if (s->rest > 0 && --s->rest == 0) s->misses = REST_AFTER - 1;
    }
    return n_out;
}

void sp_specdecoder_stats(const sp_specdecoder *s, long *drafted, long *accepted) {
    if (drafted) *drafted = s ? s->drafted : 0;
    if (accepted) *accepted = s ? s->accepted : 0;
}
