#include "selection.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double score; int index; } ranked;

static int by_score_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->index - y->index; /* ties: earlier chunk first, so results are deterministic */
}

int sp_select_chunks(const float *importance, int n, const uint8_t *forced, const sp_specprefill_params *p,
                     uint8_t *kept) {
    if (n <= 0) return 0;
    const int chunk = p->chunk > 0 ? p->chunk : 1;
    const int n_chunks = (n + chunk - 1) / chunk;
    ranked *r = malloc((size_t)n_chunks * sizeof *r);
    uint8_t *chosen = calloc((size_t)n_chunks, 1);
    if (!r || !chosen) { /* cannot rank: keep everything, which is always correct */
        free(r); free(chosen);
        memset(kept, 1, (size_t)n);
        return n;
    }
    double total = 0;
    for (int c = 0; c < n_chunks; c++) {
        const int lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double sum = 0;
        for (int j = lo; j < hi; j++) sum += importance[j];
        r[c].score = sum / (hi - lo);
        r[c].index = c;
        total += sum;
    }
    int budget;
    if (p->keep_mass > 0) {
        /* adaptive: fewest chunks (best first) whose summed importance reaches keep_mass */
        qsort(r, (size_t)n_chunks, sizeof *r, by_score_desc);
        double acc = 0;
        budget = 0;
        while (budget < n_chunks && acc < p->keep_mass * total) {
            const int c = r[budget].index, lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
            acc += r[budget].score * (hi - lo);
            budget++;
        }
        const int lo_b = (int)ceil(n_chunks * (double)p->keep_min - 1e-6), hi_b = (int)ceil(n_chunks * (double)p->keep_max - 1e-6);
        if (budget < lo_b) budget = lo_b;
        if (budget > hi_b) budget = hi_b;
    } else {
        budget = (int)ceil(n_chunks * (double)p->keep_rate - 1e-6); /* 0.1f is 0.1000000015 */
        qsort(r, (size_t)n_chunks, sizeof *r, by_score_desc);
    }
    if (budget > n_chunks) budget = n_chunks;
    if (budget < 0) budget = 0;
    int used = 0;
    if (p->keep_last_chunk) {
        chosen[n_chunks - 1] = 1;
        used = 1;
    }
    for (int i = 0; i < n_chunks && used < budget; i++)
        if (!chosen[r[i].index]) {
            chosen[r[i].index] = 1;
            used++;
        }
    int n_kept = 0;
    for (int j = 0; j < n; j++) {
        kept[j] = chosen[j / chunk] || (forced && forced[j]);
        n_kept += kept[j];
    }
    free(r);
    free(chosen);
    return n_kept;
}

void sp_map_importance(const int *src_start, const int *src_end, const float *src_imp, int n_src,
                       const int *dst_start, const int *dst_end, float *dst_imp, int n_dst) {
    int s = 0;
    for (int d = 0; d < n_dst; d++) {
        float best = 0;
        /* source spans are in text order: skip those that end before this token starts */
        while (s < n_src && src_end[s] <= dst_start[d]) s++;
        for (int k = s; k < n_src && src_start[k] < dst_end[d]; k++)
            if (src_end[k] > dst_start[d] && src_end[k] > src_start[k] && src_imp[k] > best) best = src_imp[k];
        dst_imp[d] = best;
    }
}
