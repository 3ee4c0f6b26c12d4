/* Which prompt tokens speculative prefill keeps, from per-token importance scores. Separate
 * from the model so it can be tested by itself and reused by the evaluation's baselines. */
#ifndef SP_SELECTION_H
#define SP_SELECTION_H

#include <stdint.h>

#include "specprefill.h"

/*
 * Splits n tokens into chunks of p->chunk, scores each by its mean importance, keeps the best
 * ceil(n_chunks × keep_rate) chunks (or, with keep_mass > 0, the fewest whose summed importance
 * reaches that share, within keep_min..keep_max of the chunks). The last chunk (if
 * p->keep_last_chunk) counts against that budget but is kept even when the budget is smaller.
 * Tokens with forced[i] set are kept on top of the budget. Writes kept[i] ∈ {0,1}; returns the
 * number of kept tokens.
 */
int sp_select_chunks(const float *importance, int n, const uint8_t *forced, const sp_specprefill_params *p,
                     uint8_t *kept);

/*
 * Carries importance from one tokenization of a text to another through byte spans: a target
 * token gets the max importance of the source tokens whose bytes overlap its own.
 * Spans are [start, end) byte offsets into the same text.
 */
void sp_map_importance(const int *src_start, const int *src_end, const float *src_imp, int n_src,
                       const int *dst_start, const int *dst_end, float *dst_imp, int n_dst);

#endif
