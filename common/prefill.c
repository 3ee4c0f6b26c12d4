/* The one prefill entry of the front ends, and the draft context's size. */
#include <string.h>
#include <time.h>

#include "common.h"

int spc_draft_ctx_size(int n, const sp_specprefill_params *params, bool other_vocab) {
    const int tokens = other_vocab ? n + 2 : n;
    return tokens + (params ? params->lookahead : sp_specprefill_default_params().lookahead);
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

sp_status spc_prefill(sp_context *ctx, sp_context *draft_ctx, const spc_prompt *p, const spc_reuse *reuse,
                      const sp_specprefill_params *params, float *logits, float *importance, uint8_t *kept,
                      sp_specprefill_stats *stats) {
    sp_specprefill_stats local, *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (!ctx || !p || !p->ids || p->n <= 0) return sp_fail(SP_ERR_ARGUMENT, "prefill: no prompt");
    const int vouched = reuse ? reuse->main : 0;
    if (draft_ctx && reuse && (vouched > 0 || reuse->draft))
        return sp_specprefill_cached(ctx, draft_ctx, p->ids, p->n, vouched, p->text, params, logits, importance, kept, st);
    /* full: every token at its position, after the start of the cache that already is this
     * prompt (at most n-1: the last token runs for its logits); the logits of the last one */
    const int from = sp_context_common_prefix(ctx, p->ids, vouched < p->n - 1 ? vouched : p->n - 1);
    sp_context_truncate(ctx, from);
    sp_context_fit_rope(ctx, p->n); /* where the context starts empty: YaRN past the training context */
    if (draft_ctx) return sp_specprefill(ctx, draft_ctx, p->ids, p->n, p->text, params, logits, importance, kept, st);
    const double t0 = seconds();
    sp_status s = SP_OK;
    enum { STEP = 4096 }; /* positions are written in pieces: no allocation for any prompt length */
    int32_t pos[STEP];
    for (int i = from; i < p->n && s == SP_OK; i += STEP) {
        const int m = p->n - i < STEP ? p->n - i : STEP;
        for (int k = 0; k < m; k++) pos[k] = i + k;
        int32_t last = m - 1;
        const bool final = i + m == p->n;
        s = sp_decode(ctx, p->ids + i, pos, m, final ? &last : NULL, final ? 1 : 0, final ? logits : NULL);
    }
    if (s != SP_OK) sp_context_reset(ctx); /* no half-read prompt for the next one to reuse */
    st->n_prompt = st->n_kept = p->n;
    st->n_reused = st->n_reused_kept = from;
    st->main_prefill_s = st->ttft_s = seconds() - t0;
    return s;
}
