/* The counters and histograms behind /metrics (Prometheus text format), under a lock of their own. */
#define _GNU_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "state.h"

static const double buckets[11] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

static struct {
    pthread_mutex_t mu;
    unsigned long status_count[600];
    unsigned long ttft_bucket[12], latency_bucket[12];
    double ttft_sum, latency_sum;
    unsigned long ttft_n, latency_n;
    unsigned long prompt_tokens, kept_tokens, generated_tokens;
    unsigned long drafted_tokens, accepted_tokens, decode_steps;
    double prefill_seconds, decode_seconds;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

double sp_srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void observe(unsigned long *b, double *sum, unsigned long *n, double v) {
    int i = 0;
    while (i < 11 && v > buckets[i]) i++;
    b[i]++;
    *sum += v;
    (*n)++;
}

void sp_srv_count_status(int status) {
    if (status < 100 || status >= 600) return;
    pthread_mutex_lock(&M.mu);
    M.status_count[status]++;
    pthread_mutex_unlock(&M.mu);
}

void sp_srv_record_job(const job *j, const job_result *r, bool failed) {
    pthread_mutex_lock(&M.mu);
    M.status_count[failed ? 500 : 200]++;
    observe(M.ttft_bucket, &M.ttft_sum, &M.ttft_n, r->ttft);
    observe(M.latency_bucket, &M.latency_sum, &M.latency_n, r->total);
    M.prompt_tokens += (unsigned long)j->prompt.n;
    M.kept_tokens += (unsigned long)r->kept;
    M.generated_tokens += (unsigned long)r->completion_tokens;
    M.drafted_tokens += (unsigned long)r->drafted;
    M.accepted_tokens += (unsigned long)r->accepted;
    M.decode_steps += (unsigned long)r->decode_steps;
    M.prefill_seconds += r->prefill;
    M.decode_seconds += r->decode;
    pthread_mutex_unlock(&M.mu);
}

char *sp_srv_metrics_text(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int queued, busy;
    sp_srv_scheduler_load(&queued, &busy);
    unsigned long rounds, rows;
    decode_batch_counts(sp_srv.decoding, &rounds, &rows);
    pthread_mutex_lock(&M.mu);
    fprintf(f, "# HELP specprefill_requests_total Requests answered, by HTTP status.\n# TYPE specprefill_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (M.status_count[s]) fprintf(f, "specprefill_requests_total{status=\"%d\"} %lu\n", s, M.status_count[s]);
    const char *names[2] = {"specprefill_ttft_seconds", "specprefill_request_duration_seconds"};
    const char *help[2] = {"Time from request arrival to the first token.", "Time from request arrival to the last byte."};
    unsigned long *b[2] = {M.ttft_bucket, M.latency_bucket};
    double sums[2] = {M.ttft_sum, M.latency_sum};
    unsigned long ns[2] = {M.ttft_n, M.latency_n};
    for (int h = 0; h < 2; h++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", names[h], help[h], names[h]);
        unsigned long cum = 0;
        for (int i = 0; i < 11; i++) { cum += b[h][i]; fprintf(f, "%s_bucket{le=\"%g\"} %lu\n", names[h], buckets[i], cum); }
        cum += b[h][11];
        fprintf(f, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", names[h], cum, names[h], sums[h], names[h], ns[h]);
    }
    fprintf(f, "# TYPE specprefill_prompt_tokens_total counter\nspecprefill_prompt_tokens_total %lu\n", M.prompt_tokens);
    fprintf(f, "# TYPE specprefill_kept_tokens_total counter\nspecprefill_kept_tokens_total %lu\n", M.kept_tokens);
    fprintf(f, "# TYPE specprefill_generated_tokens_total counter\nspecprefill_generated_tokens_total %lu\n", M.generated_tokens);
    fprintf(f, "# HELP specprefill_draft_tokens_total Tokens the draft proposed in speculative decoding.\n"
               "# TYPE specprefill_draft_tokens_total counter\nspecprefill_draft_tokens_total %lu\n", M.drafted_tokens);
    fprintf(f, "# HELP specprefill_draft_accepted_tokens_total Of them, those the main model accepted.\n"
               "# TYPE specprefill_draft_accepted_tokens_total counter\nspecprefill_draft_accepted_tokens_total %lu\n", M.accepted_tokens);
    fprintf(f, "# HELP specprefill_draft_acceptance_ratio Accepted / proposed draft tokens, over all requests.\n"
               "# TYPE specprefill_draft_acceptance_ratio gauge\nspecprefill_draft_acceptance_ratio %.4f\n",
            M.drafted_tokens ? (double)M.accepted_tokens / M.drafted_tokens : 0);
    fprintf(f, "# HELP specprefill_decode_steps_total Forward passes of the main model while generating (generated / steps = tokens per pass).\n"
               "# TYPE specprefill_decode_steps_total counter\nspecprefill_decode_steps_total %lu\n", M.decode_steps);
    fprintf(f, "# TYPE specprefill_prefill_seconds_total counter\nspecprefill_prefill_seconds_total %.6f\n", M.prefill_seconds);
    fprintf(f, "# TYPE specprefill_decode_seconds_total counter\nspecprefill_decode_seconds_total %.6f\n", M.decode_seconds);
    fprintf(f, "# HELP specprefill_prefill_tokens_per_second Prompt tokens per second of prefill, over all requests.\n"
               "# TYPE specprefill_prefill_tokens_per_second gauge\nspecprefill_prefill_tokens_per_second %.3f\n",
            M.prefill_seconds > 0 ? M.prompt_tokens / M.prefill_seconds : 0);
    fprintf(f, "# TYPE specprefill_decode_tokens_per_second gauge\nspecprefill_decode_tokens_per_second %.3f\n",
            M.decode_seconds > 0 ? M.generated_tokens / M.decode_seconds : 0);
    pthread_mutex_unlock(&M.mu);
    fprintf(f, "# HELP specprefill_decode_batches_total Batched decode steps: one forward pass for the next token of every generating slot.\n"
               "# TYPE specprefill_decode_batches_total counter\nspecprefill_decode_batches_total %lu\n", rounds);
    fprintf(f, "# HELP specprefill_decode_batch_rows_total Tokens decoded in those steps (rows / batches = mean batch size).\n"
               "# TYPE specprefill_decode_batch_rows_total counter\nspecprefill_decode_batch_rows_total %lu\n", rows);
    fprintf(f, "# TYPE specprefill_queue_depth gauge\nspecprefill_queue_depth %d\n", queued);
    fprintf(f, "# TYPE specprefill_slots_busy gauge\nspecprefill_slots_busy %d\n", busy);
    fprintf(f, "# TYPE specprefill_slots gauge\nspecprefill_slots %d\n", sp_srv.cfg->parallel);
    if (fclose(f) != 0) { free(buf); return NULL; }
    return buf;
}
