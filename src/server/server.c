/*
 * specprefill serve. Threads: libmicrohttpd runs one thread per connection; N slot workers run
 * the model. A completion request is parsed, rendered and tokenized on its connection thread,
 * then queued as a job; a slot takes it, prefills (speculatively or not) and generates,
 * appending response bytes to the job; the connection thread streams those bytes out as they
 * come. A client that goes away marks its job cancelled, and the slot stops at the next token.
 * Slots prefill on their own and decode together: each generation step of all generating slots
 * is one batched forward pass (decode_batch.h).
 */
#define _GNU_SOURCE
#include "common.h"
#include "specprefill_server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "decode_batch.h"
#include "request.h"

/* ------------------------------------------------------------------ jobs */

typedef struct job {
    sp_request req;
    spc_prompt prompt;              /* the text the model reads and its tokens */
    int max_tokens;
    bool spec;
    sp_specprefill_params spec_params;
    char id[40];
    long created;
    double t_arrival;
    int fd;                       /* the client's socket, to notice a disconnect */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *out;                    /* response bytes produced so far */
    size_t out_len, out_cap, out_sent;
    bool done, cancelled, oom;
    int refs;                     /* connection + queue/slot */
} job;

static struct server {
    const sp_server_config *cfg;
    sp_model *model, *draft;
    const char *model_id;
    pthread_mutex_t mu;           /* queue, metrics, stopping */
    pthread_cond_t queue_cv;
    job **queue;
    int q_head, q_len, q_cap;
    int busy;
    decode_batch *decoding;       /* the generating slots' steps */
    volatile sig_atomic_t stop_signal;
    bool stopping;
    /* metrics */
    unsigned long status_count[600];
    unsigned long ttft_bucket[12], latency_bucket[12];
    double ttft_sum, latency_sum;
    unsigned long ttft_n, latency_n;
    unsigned long prompt_tokens, kept_tokens, generated_tokens;
    double prefill_seconds, decode_seconds;
} S;

static const double buckets[11] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

static double now(void) {
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

static void job_release(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    sp_request_free(&j->req);
    spc_prompt_free(&j->prompt);
    free(j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Appends response bytes (under the job's lock) and wakes the connection thread. */
static void job_emit(job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = j->out_cap ? j->out_cap : 1024;
        while (cap < j->out_len + n + 1) cap *= 2;
        char *p = realloc(j->out, cap);
        if (!p) j->oom = j->cancelled = true;
        else { j->out = p; j->out_cap = cap; }
    }
    if (!j->oom) {
        memcpy(j->out + j->out_len, s, n);
        j->out_len += n;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static bool job_cancelled(job *j) {
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

/* ------------------------------------------------------------------ responses */

static void emit_json(job *j, cJSON *o, bool sse) {
    char *s = cJSON_PrintUnformatted(o);
    if (!s) { j->oom = true; return; }
    if (sse) job_emit(j, "data: ", 6);
    job_emit(j, s, strlen(s));
    if (sse) job_emit(j, "\n\n", 2);
    free(s);
}

static cJSON *base_object(const job *j, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", S.model_id);
    return o;
}

static void add_choice(cJSON *o, const job *j, const char *text, const char *finish, bool delta, bool first) {
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (j->req.chat) {
        cJSON *m = cJSON_AddObjectToObject(c, delta ? "delta" : "message");
        if (!delta || first) cJSON_AddStringToObject(m, "role", "assistant");
        if (text) cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
}

typedef struct {
    int completion_tokens, kept;
    double ttft, total, prefill, decode;
} job_result;

static void add_usage(cJSON *o, const job *j, const job_result *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt.n);
    cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", j->prompt.n + r->completion_tokens);
    cJSON *x = cJSON_AddObjectToObject(o, "specprefill");
    cJSON_AddBoolToObject(x, "enabled", j->spec);
    cJSON_AddNumberToObject(x, "prompt_tokens", j->prompt.n);
    cJSON_AddNumberToObject(x, "kept_tokens", r->kept);
    cJSON_AddNumberToObject(x, "ttft_ms", round(r->ttft * 1e4) / 10);
    cJSON_AddNumberToObject(x, "prefill_ms", round(r->prefill * 1e4) / 10);
    cJSON_AddNumberToObject(x, "decode_ms", round(r->decode * 1e4) / 10);
    cJSON_AddNumberToObject(x, "total_ms", round(r->total * 1e4) / 10);
}

static void stream_text(job *j, const char *text, size_t n, bool first) {
    char *t = strndup(text, n);
    if (!t) { j->oom = true; return; }
    cJSON *o = base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    add_choice(o, j, t, NULL, true, first);
    emit_json(j, o, true);
    cJSON_Delete(o);
    free(t);
}

/* ------------------------------------------------------------------ slots */

typedef struct {
    int index;
    sp_context *ctx, *dctx;
    pthread_t thread;
} slot;

static void run_job(slot *sl, job *j) {
    const sp_model_info *info = sp_model_get_info(S.model);
    job_result r = {0};
    float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
    spc_text text;
    sp_sampler *smp = NULL;
    const char *finish = "length";
    bool failed = spc_text_init(&text, S.model, (const char *const *)j->req.stop, j->req.n_stop) != SP_OK || !logits ||
                  sp_sampler_new(&j->req.sampling, info->n_vocab, &smp) != SP_OK;
    double t_start = now(), t_first = t_start;
    if (!failed) {
        for (int i = 0; i < j->prompt.n; i++) sp_sampler_accept(smp, j->prompt.ids[i]);
        sp_specprefill_stats st;
        failed = spc_prefill(sl->ctx, j->spec ? sl->dctx : NULL, &j->prompt, &j->spec_params, logits, NULL, NULL, &st) != SP_OK;
        r.kept = st.n_kept;
        t_first = now();
    }
    bool first_chunk = true;
    size_t len;
    const char *piece;
    decode_batch_join(S.decoding);
    for (int n = 0; !failed && n < j->max_tokens; n++) {
        if (job_cancelled(j) || S.stopping) { finish = "cancelled"; break; }
        sp_token t = sp_sampler_sample(smp, logits);
        if (sp_token_is_eog(S.model, t) && !j->req.ignore_eos) { finish = "stop"; break; }
        sp_sampler_accept(smp, t);
        r.completion_tokens++;
        if (spc_text_add(&text, t) != SP_OK) { failed = true; break; }
        /* stream what can no longer become a stop string */
        if (j->req.stream && (piece = spc_text_piece(&text, false, &len), len)) {
            stream_text(j, piece, len, first_chunk);
            first_chunk = false;
        }
        if (text.stopped) { finish = "stop"; break; }
        if (n + 1 == j->max_tokens) break;
        int32_t p = j->prompt.n + n;
        if (decode_batch_step(S.decoding, sl->ctx, t, p, logits) != SP_OK) failed = true;
    }
    decode_batch_leave(S.decoding);
    if (!failed && spc_text_add(&text, -1) != SP_OK) failed = true; /* an unfinished character */
    double t_end = now();
    r.ttft = t_first - j->t_arrival;
    r.total = t_end - j->t_arrival;
    r.prefill = t_first - t_start;
    r.decode = t_end - t_first;
    if (failed) finish = "error";
    if (j->req.stream) {
        if ((piece = spc_text_piece(&text, true, &len), len)) { stream_text(j, piece, len, first_chunk); first_chunk = false; }
        cJSON *o = base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
        add_choice(o, j, j->req.chat ? NULL : "", finish, true, first_chunk);
        emit_json(j, o, true);
        cJSON_Delete(o);
        if (j->req.include_usage) {
            o = base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(o, "choices");
            add_usage(o, j, &r);
            emit_json(j, o, true);
            cJSON_Delete(o);
        }
        job_emit(j, "data: [DONE]\n\n", 14);
    } else {
        cJSON *o = base_object(j, j->req.chat ? "chat.completion" : "text_completion");
        add_choice(o, j, text.text ? text.text : "", finish, false, true);
        add_usage(o, j, &r);
        emit_json(j, o, false);
        cJSON_Delete(o);
    }
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);

    pthread_mutex_lock(&S.mu);
    S.status_count[failed ? 500 : 200]++;
    observe(S.ttft_bucket, &S.ttft_sum, &S.ttft_n, r.ttft);
    observe(S.latency_bucket, &S.latency_sum, &S.latency_n, r.total);
    S.prompt_tokens += (unsigned long)j->prompt.n;
    S.kept_tokens += (unsigned long)r.kept;
    S.generated_tokens += (unsigned long)r.completion_tokens;
    S.prefill_seconds += r.prefill;
    S.decode_seconds += r.decode;
    pthread_mutex_unlock(&S.mu);
    fprintf(stderr, "%s %s %d prompt=%d kept=%d gen=%d ttft=%.0fms total=%.0fms finish=%s slot=%d\n",
            j->req.chat ? "/v1/chat/completions" : "/v1/completions", j->req.stream ? "stream" : "json", failed ? 500 : 200,
            j->prompt.n, r.kept, r.completion_tokens, r.ttft * 1e3, r.total * 1e3, finish, sl->index);
    spc_text_free(&text);
    free(logits);
    sp_sampler_free(smp);
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    for (;;) {
        pthread_mutex_lock(&S.mu);
        while (S.q_len == 0 && !S.stopping) pthread_cond_wait(&S.queue_cv, &S.mu);
        if (S.q_len == 0 && S.stopping) { pthread_mutex_unlock(&S.mu); break; }
        job *j = S.queue[S.q_head];
        S.q_head = (S.q_head + 1) % S.q_cap;
        S.q_len--;
        S.busy++;
        pthread_mutex_unlock(&S.mu);
        if (!job_cancelled(j)) run_job(sl, j);
        else {
            pthread_mutex_lock(&j->mu);
            j->done = true;
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
        }
        job_release(j);
        pthread_mutex_lock(&S.mu);
        S.busy--;
        pthread_mutex_unlock(&S.mu);
    }
    return NULL;
}

/* ------------------------------------------------------------------ HTTP */

typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
    job *j;
} conn_state;

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, const char *body, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* OpenAI's error shape */
static enum MHD_Result send_error(struct MHD_Connection *c, const char *url, int status, const char *type, const char *msg) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result r = send_text(c, status, "application/json", s ? s : "{}", status == 503 ? "1" : NULL);
    free(s);
    pthread_mutex_lock(&S.mu);
    S.status_count[status]++;
    pthread_mutex_unlock(&S.mu);
    fprintf(stderr, "%s %d %s\n", url, status, msg);
    return r;
}

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static ssize_t read_job(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->out_sent == j->out_len && !j->done && !j->cancelled) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->out_sent == j->out_len && !j->done && client_gone(j->fd)) j->cancelled = true;
    }
    ssize_t n;
    if (j->out_sent < j->out_len) {
        size_t k = j->out_len - j->out_sent < max ? j->out_len - j->out_sent : max;
        memcpy(buf, j->out + j->out_sent, k);
        j->out_sent += k;
        n = (ssize_t)k;
    } else {
        n = j->done && !j->oom ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void free_job_reader(void *cls) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (!j->done) j->cancelled = true; /* the client left before the end */
    pthread_mutex_unlock(&j->mu);
    job_release(j);
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static bool authorized(struct MHD_Connection *c) {
    if (!S.cfg->api_key) return true;
    const char *h = header(c, "Authorization");
    return h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, S.cfg->api_key) == 0;
}

static enum MHD_Result metrics(struct MHD_Connection *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return send_text(c, 500, "text/plain", "out of memory\n", NULL);
    pthread_mutex_lock(&S.mu);
    fprintf(f, "# HELP specprefill_requests_total Requests answered, by HTTP status.\n# TYPE specprefill_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (S.status_count[s]) fprintf(f, "specprefill_requests_total{status=\"%d\"} %lu\n", s, S.status_count[s]);
    const char *names[2] = {"specprefill_ttft_seconds", "specprefill_request_duration_seconds"};
    const char *help[2] = {"Time from request arrival to the first token.", "Time from request arrival to the last byte."};
    unsigned long *b[2] = {S.ttft_bucket, S.latency_bucket};
    double sums[2] = {S.ttft_sum, S.latency_sum};
    unsigned long ns[2] = {S.ttft_n, S.latency_n};
    for (int h = 0; h < 2; h++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", names[h], help[h], names[h]);
        unsigned long cum = 0;
        for (int i = 0; i < 11; i++) { cum += b[h][i]; fprintf(f, "%s_bucket{le=\"%g\"} %lu\n", names[h], buckets[i], cum); }
        cum += b[h][11];
        fprintf(f, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", names[h], cum, names[h], sums[h], names[h], ns[h]);
    }
    fprintf(f, "# TYPE specprefill_prompt_tokens_total counter\nspecprefill_prompt_tokens_total %lu\n", S.prompt_tokens);
    fprintf(f, "# TYPE specprefill_kept_tokens_total counter\nspecprefill_kept_tokens_total %lu\n", S.kept_tokens);
    fprintf(f, "# TYPE specprefill_generated_tokens_total counter\nspecprefill_generated_tokens_total %lu\n", S.generated_tokens);
    fprintf(f, "# TYPE specprefill_prefill_seconds_total counter\nspecprefill_prefill_seconds_total %.6f\n", S.prefill_seconds);
    fprintf(f, "# TYPE specprefill_decode_seconds_total counter\nspecprefill_decode_seconds_total %.6f\n", S.decode_seconds);
    fprintf(f, "# HELP specprefill_prefill_tokens_per_second Prompt tokens per second of prefill, over all requests.\n"
               "# TYPE specprefill_prefill_tokens_per_second gauge\nspecprefill_prefill_tokens_per_second %.3f\n",
            S.prefill_seconds > 0 ? S.prompt_tokens / S.prefill_seconds : 0);
    fprintf(f, "# TYPE specprefill_decode_tokens_per_second gauge\nspecprefill_decode_tokens_per_second %.3f\n",
            S.decode_seconds > 0 ? S.generated_tokens / S.decode_seconds : 0);
    unsigned long rounds, rows;
    decode_batch_counts(S.decoding, &rounds, &rows);
    fprintf(f, "# HELP specprefill_decode_batches_total Batched decode steps: one forward pass for the next token of every generating slot.\n"
               "# TYPE specprefill_decode_batches_total counter\nspecprefill_decode_batches_total %lu\n", rounds);
    fprintf(f, "# HELP specprefill_decode_batch_rows_total Tokens decoded in those steps (rows / batches = mean batch size).\n"
               "# TYPE specprefill_decode_batch_rows_total counter\nspecprefill_decode_batch_rows_total %lu\n", rows);
    fprintf(f, "# TYPE specprefill_queue_depth gauge\nspecprefill_queue_depth %d\n", S.q_len);
    fprintf(f, "# TYPE specprefill_slots_busy gauge\nspecprefill_slots_busy %d\n", S.busy);
    fprintf(f, "# TYPE specprefill_slots gauge\nspecprefill_slots %d\n", S.cfg->parallel);
    pthread_mutex_unlock(&S.mu);
    fclose(f);
    enum MHD_Result r = send_text(c, 200, "text/plain; version=0.0.4", buf, NULL);
    free(buf);
    return r;
}

/* Validates, tokenizes and queues a completion; answers with the streamed job output. */
static enum MHD_Result completion(struct MHD_Connection *c, const char *url, conn_state *cs, bool chat) {
    if (cs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", S.cfg->max_body);
        return send_error(c, url, 413, "invalid_request_error", msg);
    }
    job *j = calloc(1, sizeof *j);
    if (!j) return send_error(c, url, 500, "server_error", "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    char err[256];
    const sp_request_defaults defaults = {S.cfg->sampling, S.cfg->spec};
    if (sp_request_parse(cs->body ? cs->body : "", cs->len, chat, &defaults, &j->req, err, sizeof err) != 0) {
        job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    const sp_chat_message plain = {"user", j->req.prompt};
    if (spc_prompt_make(S.model, chat, S.cfg->chat_template, chat ? j->req.messages : &plain, chat ? j->req.n_messages : 1,
                        &j->prompt) != SP_OK) {
        snprintf(err, sizeof err, "%s", sp_last_error());
        job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    if (j->prompt.n >= S.cfg->ctx_size) {
        snprintf(err, sizeof err, "the prompt is %d tokens, longer than the context of %d tokens", j->prompt.n, S.cfg->ctx_size);
        job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    const int room = S.cfg->ctx_size - j->prompt.n;
    j->max_tokens = j->req.max_tokens >= 0 && j->req.max_tokens < room ? j->req.max_tokens : room;
    j->spec = (S.draft || S.cfg->self_spec) && (j->req.spec_enabled == 1 || (j->req.spec_enabled == -1 && S.cfg->spec_default));
    if (j->req.spec_enabled == 1 && !(S.draft || S.cfg->self_spec)) {
        job_release(j);
        return send_error(c, url, 400, "invalid_request_error", "speculative prefill needs the server to run with --draft or --self-spec");
    }
    j->spec_params = j->req.spec;
    static atomic_ulong counter;
    snprintf(j->id, sizeof j->id, "%s-%lu", chat ? "chatcmpl" : "cmpl", (unsigned long)atomic_fetch_add(&counter, 1) + 1);
    j->created = (long)time(NULL);
    j->t_arrival = now();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;

    pthread_mutex_lock(&S.mu);
    /* room: a free slot, or a place among the --queue waiting requests */
    const bool full = S.q_len >= S.cfg->queue + (S.cfg->parallel - S.busy) || S.stopping;
    if (!full) {
        j->refs = 2; /* the connection's reader and the queue */
        S.queue[(S.q_head + S.q_len) % S.q_cap] = j;
        S.q_len++;
        pthread_cond_signal(&S.queue_cv);
    }
    pthread_mutex_unlock(&S.mu);
    if (full) {
        job_release(j);
        return send_error(c, url, 503, "server_busy", "the server is busy: every slot is working and the queue is full; retry later");
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_job, j, free_job_reader);
    if (!r) { free_job_reader(j); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", j->req.stream ? "text/event-stream" : "application/json");
    if (j->req.stream) MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                              const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls; (void)version;
    conn_state *cs = *con_cls;
    const bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
    const bool is_completion = strcmp(url, "/v1/completions") == 0, is_chat = strcmp(url, "/v1/chat/completions") == 0;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        if (post && (is_completion || is_chat)) return MHD_YES; /* wait for the body */
    }
    if (*upload_size > 0) {
        if (!cs->too_large) {
            if (cs->len + *upload_size > S.cfg->max_body) {
                cs->too_large = true;
                free(cs->body);
                cs->body = NULL;
                cs->len = cs->cap = 0;
            } else {
                if (cs->len + *upload_size + 1 > cs->cap) {
                    size_t cap = cs->cap ? cs->cap : 4096;
                    while (cap < cs->len + *upload_size + 1) cap *= 2;
                    char *p = realloc(cs->body, cap);
                    if (!p) return MHD_NO;
                    cs->body = p;
                    cs->cap = cap;
                }
                memcpy(cs->body + cs->len, upload, *upload_size);
                cs->len += *upload_size;
                cs->body[cs->len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (get && strcmp(url, "/health") == 0) {
        pthread_mutex_lock(&S.mu);
        S.status_count[200]++;
        pthread_mutex_unlock(&S.mu);
        return send_text(c, 200, "application/json", "{\"status\":\"ok\"}", NULL);
    }
    const bool known = is_completion || is_chat || strcmp(url, "/v1/models") == 0 || strcmp(url, "/metrics") == 0;
    if (!known) return send_error(c, url, 404, "not_found_error", "unknown route");
    if (!authorized(c)) return send_error(c, url, 401, "authentication_error", "missing or invalid API key (Authorization: Bearer KEY)");
    if (strcmp(url, "/metrics") == 0 && get) return metrics(c);
    if (strcmp(url, "/v1/models") == 0 && get) {
        cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddStringToObject(m, "id", S.model_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "specprefill");
        cJSON_AddItemToArray(data, m);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        enum MHD_Result r = send_text(c, 200, "application/json", s ? s : "{}", NULL);
        free(s);
        pthread_mutex_lock(&S.mu);
        S.status_count[200]++;
        pthread_mutex_unlock(&S.mu);
        return r;
    }
    if (!post || !(is_completion || is_chat)) return send_error(c, url, 405, "invalid_request_error", "method not allowed on this route");
    return completion(c, url, cs, is_chat);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)c; (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

static void on_signal(int sig) {
    (void)sig;
    S.stop_signal = 1;
}

int sp_server_run(const sp_server_config *cfg) {
    memset(&S, 0, sizeof S);
    S.cfg = cfg;
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.queue_cv, NULL);
    if (sp_set_threads(cfg->threads) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 1; }
    if (sp_model_load(cfg->model_path, &S.model) != SP_OK) { fprintf(stderr, "error: loading model: %s\n", sp_last_error()); return 1; }
    int rc = 1;
    slot *slots = calloc((size_t)cfg->parallel, sizeof *slots);
    S.q_cap = cfg->queue + cfg->parallel; /* waiting + about to be taken */
    S.queue = calloc((size_t)S.q_cap, sizeof *S.queue);
    struct MHD_Daemon *d = NULL;
    int started = 0;
    if (!slots || !S.queue || decode_batch_new(cfg->parallel, sp_model_get_info(S.model)->n_vocab, &S.decoding) != SP_OK) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    if (cfg->draft_path) {
        if (sp_model_load(cfg->draft_path, &S.draft) != SP_OK) { fprintf(stderr, "error: loading draft: %s\n", sp_last_error()); goto done; }
        if (!cfg->spec.any_vocab && sp_vocab_check_same(S.model, S.draft) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); goto done; }
    }
    const char *slash = strrchr(cfg->model_path, '/');
    S.model_id = cfg->model_name ? cfg->model_name : slash ? slash + 1 : cfg->model_path;
    if (!sp_chat_template_detect(S.model) && !cfg->chat_template)
        fprintf(stderr, "warning: the model's chat template is not recognised; /v1/chat/completions will answer 400 (use --chat-template)\n");
    for (int i = 0; i < cfg->parallel; i++) {
        sp_context_params p = sp_context_default_params();
        p.n_ctx = cfg->ctx_size;
        slots[i].index = i;
        if (sp_context_new(S.model, &p, &slots[i].ctx) != SP_OK) { fprintf(stderr, "error: context: %s\n", sp_last_error()); goto done; }
        if (S.draft || cfg->self_spec) {
            /* the largest lookahead a request may ask for, and room for another tokenizer */
            sp_specprefill_params most = cfg->spec;
            most.lookahead = 256;
            p.n_ctx = spc_draft_ctx_size(cfg->ctx_size, &most, S.draft && cfg->spec.any_vocab);
            if (sp_context_new(S.draft ? S.draft : S.model, &p, &slots[i].dctx) != SP_OK) {
                fprintf(stderr, "error: draft context: %s\n", sp_last_error());
                goto done;
            }
        }
    }
    for (; started < cfg->parallel; started++)
        if (pthread_create(&slots[started].thread, NULL, slot_main, &slots[started]) != 0) { fprintf(stderr, "error: cannot start slot threads\n"); goto done; }

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) { fprintf(stderr, "error: --host must be an IPv4 address, got '%s'\n", cfg->host); goto done; }
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)cfg->port, NULL, NULL,
                         handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(4 * S.q_cap + 64),
                         MHD_OPTION_END);
    if (!d) { fprintf(stderr, "error: cannot listen on %s:%d (%s)\n", cfg->host, cfg->port, strerror(errno)); goto done; }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "listening on http://%s:%d (model %s, %d slots of %d tokens, queue %d%s)\n", cfg->host, cfg->port, S.model_id,
            cfg->parallel, cfg->ctx_size, cfg->queue, S.draft ? ", speculative prefill with a draft" : cfg->self_spec ? ", self-speculation" : "");
    while (!S.stop_signal) usleep(100 * 1000);
    fprintf(stderr, "shutting down\n");
    rc = 0;
done:
    /* stop: no new jobs, cancel the queued and running ones, let readers finish, join slots */
    pthread_mutex_lock(&S.mu);
    S.stopping = true;
    for (int i = 0; i < S.q_len; i++) {
        job *j = S.queue[(S.q_head + i) % S.q_cap];
        pthread_mutex_lock(&j->mu);
        j->cancelled = true;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    pthread_cond_broadcast(&S.queue_cv);
    pthread_mutex_unlock(&S.mu);
    for (int i = 0; i < started; i++) pthread_join(slots[i].thread, NULL);
    if (d) MHD_stop_daemon(d);
    for (int i = 0; slots && i < cfg->parallel; i++) {
        sp_context_free(slots[i].ctx);
        sp_context_free(slots[i].dctx);
    }
    free(slots);
    free(S.queue);
    decode_batch_free(S.decoding);
    sp_model_free(S.draft);
    sp_model_free(S.model);
    return rc;
}
