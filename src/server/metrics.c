/* The counters and histograms behind /metrics (Prometheus text format), under a lock of their own. */
#define _GNU_SOURCE /* open_memstream */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state.h"

static const double buckets[11] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define RATE_WINDOW 10 /* seconds of the server-wide generation rate */

static struct {
    pthread_mutex_t mu;
    unsigned long status_count[600];
    unsigned long ttft_bucket[12], latency_bucket[12];
    double ttft_sum, latency_sum;
    unsigned long ttft_n, latency_n;
    unsigned long prompt_tokens, kept_tokens, generated_tokens;
    unsigned long drafted_tokens, accepted_tokens, decode_steps;
    unsigned long cancelled_queued;
    unsigned long cache_hits, cache_misses, cached_tokens, draft_cached_tokens;
    unsigned long second_tokens[RATE_WINDOW + 1]; /* tokens generated in each of the last seconds (a ring) */
    long second_at;                                /* the second the ring's newest slot counts */
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

/* Moves the ring to the current second (under M.mu): the seconds that passed start at zero. */
static void ring_advance(double now) {
    const long sec = (long)now;
    if (M.second_at == 0 || sec - M.second_at > RATE_WINDOW) {
        memset(M.second_tokens, 0, sizeof M.second_tokens);
        M.second_at = sec;
    }
    for (; M.second_at < sec; M.second_at++) M.second_tokens[(M.second_at + 1) % (RATE_WINDOW + 1)] = 0;
}

/* Tokens per second over the last RATE_WINDOW whole seconds (under M.mu). */
static double recent_rate(double now) {
    ring_advance(now);
    unsigned long sum = 0;
    for (int i = 0; i <= RATE_WINDOW; i++)
        if (i != M.second_at % (RATE_WINDOW + 1)) sum += M.second_tokens[i]; /* the second under way is not whole */
    return (double)sum / RATE_WINDOW;
}

void sp_srv_count_generated(int n) {
    const double now = sp_srv_now();
    pthread_mutex_lock(&M.mu);
    ring_advance(now);
    M.second_tokens[M.second_at % (RATE_WINDOW + 1)] += (unsigned long)n;
    pthread_mutex_unlock(&M.mu);
}

void sp_srv_count_cancelled_queued(void) {
    pthread_mutex_lock(&M.mu);
    M.cancelled_queued++;
    pthread_mutex_unlock(&M.mu);
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
    if (r->cached >= SP_SRV_CACHE_MIN) M.cache_hits++;
    else M.cache_misses++;
    M.cached_tokens += (unsigned long)r->cached;
    M.draft_cached_tokens += (unsigned long)r->draft_cached;
    M.kept_tokens += (unsigned long)r->kept;
    M.generated_tokens += (unsigned long)r->completion_tokens;
    M.drafted_tokens += (unsigned long)r->drafted;
    M.accepted_tokens += (unsigned long)r->accepted;
    M.decode_steps += (unsigned long)r->decode_steps;
    M.prefill_seconds += r->prefill;
    M.decode_seconds += r->decode;
    pthread_mutex_unlock(&M.mu);
}

/* A label's value, escaped as the text format wants (backslash, quote, newline). */
static void label_value(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') fputc('\\', f);
        if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

/* A family's HELP and TYPE lines (Prometheus requires both for promtool's lint). */
static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one sample without labels: its HELP and TYPE, then the name and the value as fmt
 * prints it (the name written once, so the two cannot disagree). */
static void single(FILE *f, const char *name, const char *type, const char *help, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void single(FILE *f, const char *name, const char *type, const char *help, const char *fmt, ...) {
    family(f, name, type, help);
    fprintf(f, "%s ", name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

char *sp_srv_metrics_text(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int queued, busy;
    sp_srv_scheduler_load(&queued, &busy);
    steps_counts steps;
    steps_get_counts(sp_srv.steps, &steps);
    const double now = sp_srv_now();
    family(f, "specprefill_info", "gauge", "This server: its replica name (--replica) and model; always 1.");
    fputs("specprefill_info{replica=\"", f);
    label_value(f, sp_srv.replica);
    fputs("\",model=\"", f);
    label_value(f, sp_srv.model_id);
    fputs("\"} 1\n", f);
    pthread_mutex_lock(&M.mu);
    family(f, "specprefill_requests_total", "counter", "Requests answered, by HTTP status.");
    for (int s = 100; s < 600; s++)
        if (M.status_count[s]) fprintf(f, "specprefill_requests_total{status=\"%d\"} %lu\n", s, M.status_count[s]);
    single(f, "specprefill_requests_cancelled_queued_total", "counter", "Requests that ended before a slot took them (the client left, or the server stopped).", "%lu", M.cancelled_queued);
    const char *names[2] = {"specprefill_ttft_seconds", "specprefill_request_duration_seconds"};
    const char *help[2] = {"Time from request arrival to the first token.", "Time from request arrival to the last byte."};
    unsigned long *b[2] = {M.ttft_bucket, M.latency_bucket};
    double sums[2] = {M.ttft_sum, M.latency_sum};
    unsigned long ns[2] = {M.ttft_n, M.latency_n};
    for (int h = 0; h < 2; h++) {
        family(f, names[h], "histogram", help[h]);
        unsigned long cum = 0;
        for (int i = 0; i < 11; i++) { cum += b[h][i]; fprintf(f, "%s_bucket{le=\"%g\"} %lu\n", names[h], buckets[i], cum); }
        cum += b[h][11];
        fprintf(f, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", names[h], cum, names[h], sums[h], names[h], ns[h]);
    }
    single(f, "specprefill_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", "%lu", M.prompt_tokens);
    single(f, "specprefill_prompt_cache_hits_total", "counter", "Requests with at least " SP_STRINGIFY(SP_SRV_CACHE_MIN) " prompt tokens from a cache (a slot's, or memory).", "%lu", M.cache_hits);
    single(f, "specprefill_prompt_cache_misses_total", "counter", "Requests with fewer (those that read about all of their prompt).", "%lu", M.cache_misses);
    single(f, "specprefill_prompt_cached_tokens_total", "counter", "Prompt tokens whose state came from a cache: not read again by the main model.", "%lu", M.cached_tokens);
    single(f, "specprefill_draft_cached_tokens_total", "counter", "Prompt tokens the draft did not read again.", "%lu", M.draft_cached_tokens);
    single(f, "specprefill_kept_tokens_total", "counter", "Of them, those the main model prefilled (speculative prefill keeps a part).", "%lu", M.kept_tokens);
    single(f, "specprefill_generated_tokens_total", "counter", "Tokens generated, over finished requests.", "%lu", M.generated_tokens);
    single(f, "specprefill_draft_tokens_total", "counter", "Tokens the draft proposed in speculative decoding.", "%lu", M.drafted_tokens);
    single(f, "specprefill_draft_accepted_tokens_total", "counter", "Of them, those the main model accepted.", "%lu", M.accepted_tokens);
    single(f, "specprefill_draft_acceptance_ratio", "gauge", "Accepted / proposed draft tokens, over all requests.", "%.4f", M.drafted_tokens ? (double)M.accepted_tokens / M.drafted_tokens : 0);
    single(f, "specprefill_decode_steps_total", "counter", "Forward passes of the main model while generating (generated / steps = tokens per pass).", "%lu", M.decode_steps);
    single(f, "specprefill_prefill_seconds_total", "counter", "Seconds spent prefilling, summed over requests.", "%.6f", M.prefill_seconds);
    single(f, "specprefill_decode_seconds_total", "counter", "Seconds spent generating, summed over requests.", "%.6f", M.decode_seconds);
    single(f, "specprefill_prefill_tokens_per_second", "gauge", "Prompt tokens per second of prefill, over all requests.", "%.3f", M.prefill_seconds > 0 ? M.prompt_tokens / M.prefill_seconds : 0);
    single(f, "specprefill_decode_tokens_per_second", "gauge", "Generated tokens per second of a request's decoding, over all requests.", "%.3f", M.decode_seconds > 0 ? M.generated_tokens / M.decode_seconds : 0);
    single(f, "specprefill_generation_tokens_per_second", "gauge", "Tokens the whole server generated per second over the last " SP_STRINGIFY(RATE_WINDOW) " seconds.", "%.3f", recent_rate(now));
    pthread_mutex_unlock(&M.mu);
    single(f, "specprefill_steps_total", "counter", "Scheduler steps: one forward pass per model, holding every stream's next token and up to --step-tokens of prompt.", "%lu", steps.steps);
    single(f, "specprefill_step_prompt_tokens_total", "counter", "Tokens of prompt pieces and checks in those steps.", "%lu", steps.prompt_tokens);
    single(f, "specprefill_decode_batches_total", "counter", "Steps that held streams' next tokens.", "%lu", steps.stream_steps);
    single(f, "specprefill_decode_batch_rows_total", "counter", "Streams' tokens in those steps (rows / batches = mean batch size).", "%lu", steps.stream_rows);
    size_t cache_bytes;
    int cache_entries;
    unsigned long saves, restores, evictions;
    sp_srv_cache_counts(&cache_bytes, &cache_entries, &saves, &restores, &evictions);
    single(f, "specprefill_prompt_cache_bytes", "gauge", "Memory held by conversations set aside (at most --cache-ram).", "%zu", cache_bytes);
    single(f, "specprefill_prompt_cache_entries", "gauge", "Conversations set aside in memory.", "%d", cache_entries);
    single(f, "specprefill_prompt_cache_saves_total", "counter", "Conversations set aside when their slot was needed.", "%lu", saves);
    single(f, "specprefill_prompt_cache_restores_total", "counter", "Conversations brought back into a slot for a request that continued them.", "%lu", restores);
    single(f, "specprefill_prompt_cache_evictions_total", "counter", "Conversations dropped to stay within --cache-ram (least recently used first).", "%lu", evictions);
    single(f, "specprefill_queue_depth", "gauge", "Requests waiting for a slot.", "%d", queued);
    single(f, "specprefill_slots_busy", "gauge", "Slots working on a request.", "%d", busy);
    single(f, "specprefill_slots", "gauge", "Slots (--parallel).", "%d", sp_srv.cfg->parallel);
    if (fclose(f) != 0) { free(buf); return NULL; }
    return buf;
}
