/*
 * Token sampling. The chain is llama.cpp's default order: repetition penalty, top-k, top-p,
 * min-p (the last two on temperature-1 probabilities), then temperature and a seeded draw.
 * Temperature 0 is greedy (argmax, lowest id on ties).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sampler.h"

struct sp_sampler {
    sp_sampling_params p;
    int n_vocab;
    uint64_t rng;
    sp_token *recent;   /* ring buffer of the last repeat_last_n tokens */
    int n_recent, recent_head;
    struct candidate { float logit; sp_token id; } *cand;
};

sp_sampling_params sp_sampling_default_params(void) {
    sp_sampling_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 64, 0};
    return p;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

sp_status sp_sampler_new(const sp_sampling_params *params, int n_vocab, sp_sampler **out) {
    *out = NULL;
    sp_sampling_params p = params ? *params : sp_sampling_default_params();
    if (n_vocab <= 0) return sp_fail(SP_ERR_ARGUMENT, "sampler: vocabulary size %d", n_vocab);
    if (!(p.temperature >= 0) || p.top_k < 0 || !(p.top_p > 0 && p.top_p <= 1) || !(p.min_p >= 0 && p.min_p <= 1) ||
        !(p.repeat_penalty > 0) || p.repeat_last_n < 0)
        return sp_fail(SP_ERR_ARGUMENT,
                       "sampler: invalid parameters (temperature ≥ 0, top_k ≥ 0, 0 < top_p ≤ 1, 0 ≤ min_p ≤ 1, repeat_penalty > 0)");
    sp_sampler *s = calloc(1, sizeof *s);
    if (!s) return sp_fail(SP_ERR_MEMORY, "sampler: out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->rng = p.seed;
    s->recent = malloc(((size_t)p.repeat_last_n + 1) * sizeof *s->recent);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->recent || !s->cand) {
        sp_sampler_free(s);
        return sp_fail(SP_ERR_MEMORY, "sampler: out of memory");
    }
    *out = s;
    return SP_OK;
}

void sp_sampler_free(sp_sampler *s) {
    if (!s) return;
    free(s->recent);
    free(s->cand);
    free(s);
}

void sp_sampler_accept(sp_sampler *s, sp_token t) {
    if (s->p.repeat_last_n == 0) return;
    s->recent[s->recent_head] = t;
    s->recent_head = (s->recent_head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

static int by_logit_desc(const void *a, const void *b) {
    const struct candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

static void penalize(const sp_sampler *s, float *logits) {
    const sp_sampling_params *p = &s->p;
    if (p->repeat_penalty == 1.0f) return;
    for (int i = 0; i < s->n_recent; i++) {
        sp_token t = s->recent[i];
        if (t < 0 || t >= s->n_vocab) continue;
        /* penalise each distinct token once */
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= s->recent[j] == t;
        if (seen) continue;
        logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
    }
}

static sp_token argmax(const sp_sampler *s, const float *logits) {
    sp_token best = 0;
    for (int i = 1; i < s->n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* The candidates a draw chooses among, best first, into s->cand: top-k, then top-p and min-p;
 * returns their count. *max: the best logit. */
static int candidates(sp_sampler *s, const float *logits, float *max) {
    const sp_sampling_params *p = &s->p;
    /* top-k: keep the k best (all if 0), sorted */
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) s->cand[i] = (struct candidate){logits[i], i};
    if (p->top_k > 0 && p->top_k < n) {
        /* partial selection: keep a sorted window of the k best seen so far */
        int k = p->top_k, m = 0;
        for (int i = 0; i < n; i++) {
            struct candidate c = {logits[i], i};
            if (m == k && c.logit <= s->cand[m - 1].logit) continue;
            int j = m < k ? m++ : k - 1;
            while (j > 0 && s->cand[j - 1].logit < c.logit) { s->cand[j] = s->cand[j - 1]; j--; }
            s->cand[j] = c;
        }
        n = k;
    } else {
        qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
    }
    /* probabilities at temperature 1 for top-p and min-p */
    *max = s->cand[0].logit;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)s->cand[i].logit - *max);
    double cum = 0;
    for (int i = 0; i < n; i++) {
        double prob = exp((double)s->cand[i].logit - *max) / sum;
        if (i > 0 && prob < p->min_p * (1.0 / sum)) return i; /* p_max = 1/sum */
        cum += prob;
        if (cum >= p->top_p) return i + 1;
    }
    return n;
}

/* The candidate's weight after temperature (unnormalised). */
static double weight(const sp_sampler *s, int i, float max) {
    return exp(((double)s->cand[i].logit - max) / s->p.temperature);
}

double sp_sampler_uniform(sp_sampler *s) {
    return (double)(splitmix64(&s->rng) >> 11) * 0x1.0p-53;
}

sp_token sp_sampler_sample(sp_sampler *s, float *logits) {
    penalize(s, logits);
    if (s->p.temperature <= 0) return argmax(s, logits);
    float max;
    const int keep = candidates(s, logits, &max);
    double total = 0;
    for (int i = 0; i < keep; i++) total += weight(s, i, max);
    double r = sp_sampler_uniform(s) * total;
    for (int i = 0; i < keep; i++) {
        r -= weight(s, i, max);
        if (r <= 0) return s->cand[i].id;
    }
    return s->cand[keep - 1].id;
}

bool sp_sampler_greedy(const sp_sampler *s) {
    return s->p.temperature <= 0;
}

void sp_sampler_probs(sp_sampler *s, const float *logits, float *work, float *probs) {
    memcpy(work, logits, (size_t)s->n_vocab * sizeof *work);
    penalize(s, work);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    if (s->p.temperature <= 0) { probs[argmax(s, work)] = 1; return; }
    float max;
    const int keep = candidates(s, work, &max);
    double total = 0;
    for (int i = 0; i < keep; i++) total += weight(s, i, max);
    for (int i = 0; i < keep; i++) probs[s->cand[i].id] = (float)(weight(s, i, max) / total);
}

sp_token sp_sampler_draw(sp_sampler *s, const float *weights) {
    double total = 0;
    sp_token last = -1;
    for (int i = 0; i < s->n_vocab; i++)
        if (weights[i] > 0) { total += weights[i]; last = i; }
    if (last < 0) return -1;
    double r = sp_sampler_uniform(s) * total;
    for (int i = 0; i < last; i++)
        if (weights[i] > 0 && (r -= weights[i]) <= 0) return i;
    return last;
}
