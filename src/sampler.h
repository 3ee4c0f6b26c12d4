/* The sampler's inside, for speculative sampling (specdecode.c): the distribution a draw comes
 * from, and draws from the sampler's own random stream. */
#ifndef SP_SAMPLER_H
#define SP_SAMPLER_H

#include <stdbool.h>

#include "specprefill.h"

/* Temperature 0: every draw is the argmax. */
bool sp_sampler_greedy(const sp_sampler *s);
/* probs[n_vocab]: the probability that sp_sampler_sample would pick each token from these
 * logits (penalties, top-k, top-p, min-p, temperature; one-hot when greedy). logits are left as
 * they are (work[n_vocab] is scratch); the sampler's state does not change. */
void sp_sampler_probs(sp_sampler *s, const float *logits, float *work, float *probs);
/* A token drawn in proportion to weights[n_vocab] (≥ 0, any sum > 0); -1 if all are 0. */
sp_token sp_sampler_draw(sp_sampler *s, const float *weights);
/* Uniform in [0, 1), from the sampler's seeded stream. */
double sp_sampler_uniform(sp_sampler *s);

#endif
