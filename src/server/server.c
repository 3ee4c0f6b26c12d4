/*
 * specprefill serve: the HTTP side and the server's life. Threads: libmicrohttpd runs one thread
 * per connection; the scheduler's N slot threads run the model (scheduler.c). A completion
 * request is parsed, its prompt prepared and queued as a job on its connection thread; a slot
 * takes it, prefills and generates, appending response bytes to the job (openai.c); the
 * connection thread streams those bytes out as they come. A client that goes away marks its job
 * cancelled, and the slot stops at the next token. The parts: state.h.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "state.h"

sp_server_state sp_srv;

/* ------------------------------------------------------------------ HTTP */

typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
    job *j;
} conn_state;

/* The template variables of a chat request: the server's --chat-template-kwargs with the
 * request's own (its tools, its chat_template_kwargs) on top. malloc'ed JSON, or NULL. */
static char *template_vars(const char *request_vars) {
    const char *server_vars = sp_srv.cfg->chat_template_kwargs;
    if (!server_vars) return request_vars ? strdup(request_vars) : NULL;
    cJSON *merged = cJSON_Parse(server_vars), *own = request_vars ? cJSON_Parse(request_vars) : NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, own) {
        cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
        cJSON_AddItemToObject(merged, it->string, cJSON_Duplicate(it, true));
    }
    char *out = merged ? cJSON_PrintUnformatted(merged) : NULL;
    cJSON_Delete(merged);
    cJSON_Delete(own);
    return out;
}

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
    char *s = sp_srv_error_body(status, type, msg);
    enum MHD_Result r = send_text(c, status, "application/json", s ? s : "{}", status == 503 ? "1" : NULL);
    free(s);
    sp_srv_count_status(status);
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

/* Waits (j->mu held) for the job's next news, or 100 ms: the caller looks at its client meanwhile. */
static void wait_a_moment(job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

static ssize_t read_job(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->out_sent == j->out_len && !j->done && !j->cancelled) {
        wait_a_moment(j);
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
    sp_srv_job_release(j);
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static bool authorized(struct MHD_Connection *c) {
    if (!sp_srv.cfg->api_key) return true;
    const char *h = header(c, "Authorization");
    /* the scheme is case-insensitive (RFC 9110), the key is not */
    return h && strncasecmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, sp_srv.cfg->api_key) == 0;
}

static enum MHD_Result metrics(struct MHD_Connection *c) {
    char *text = sp_srv_metrics_text();
    if (!text) return send_text(c, 500, "text/plain", "out of memory\n", NULL);
    enum MHD_Result r = send_text(c, 200, "text/plain; version=0.0.4", text, NULL);
    free(text);
    return r;
}

/* Validates, tokenizes and queues a completion; answers with the streamed job output. */
static enum MHD_Result completion(struct MHD_Connection *c, const char *url, conn_state *cs, bool chat) {
    if (cs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", sp_srv.cfg->max_body);
        return send_error(c, url, 413, "invalid_request_error", msg);
    }
    job *j = sp_srv_job_new();
    if (!j) return send_error(c, url, 500, "server_error", "out of memory");
    char err[256];
    const sp_request_defaults defaults = {sp_srv.cfg->sampling, sp_srv.cfg->spec, sp_srv.cfg->spec_decode};
    if (sp_request_parse(cs->body ? cs->body : "", cs->len, chat, &defaults, &j->req, err, sizeof err) != 0) {
        sp_srv_job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    const sp_chat_message plain = {"user", j->req.prompt};
    char *vars = chat ? template_vars(j->req.template_vars_json) : NULL;
    const sp_status made = chat ? spc_prompt_chat(sp_srv.model, sp_srv.cfg->chat_template, j->req.messages_json, vars, &j->prompt)
                                : spc_prompt_make(sp_srv.model, false, NULL, NULL, &plain, 1, &j->prompt);
    free(vars);
    if (made != SP_OK) { /* a template's error (raise_exception, a construct it lacks) names its line */
        snprintf(err, sizeof err, "%s", sp_last_error());
        sp_srv_job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    if (j->prompt.n >= sp_srv.cfg->ctx_size) {
        snprintf(err, sizeof err, "the prompt is %d tokens, longer than the context of %d tokens", j->prompt.n, sp_srv.cfg->ctx_size);
        sp_srv_job_release(j);
        return send_error(c, url, 400, "invalid_request_error", err);
    }
    const int room = sp_srv.cfg->ctx_size - j->prompt.n;
    j->max_tokens = j->req.max_tokens >= 0 && j->req.max_tokens < room ? j->req.max_tokens : room;
    j->spec = (sp_srv.draft || sp_srv.cfg->self_spec) && (j->req.spec_enabled == 1 || (j->req.spec_enabled == -1 && sp_srv.cfg->spec_default));
    if (j->req.spec_enabled == 1 && !(sp_srv.draft || sp_srv.cfg->self_spec)) {
        sp_srv_job_release(j);
        return send_error(c, url, 400, "invalid_request_error", "speculative prefill needs the server to run with --draft or --self-spec");
    }
    j->spec_params = j->req.spec;
    j->spec_reuse_kept = j->req.spec_reuse == -1 ? sp_srv.cfg->spec_reuse_kept : j->req.spec_reuse == 1;
    /* by default only greedy requests speculate: sampled ones keep the distribution but a seed
     * would no longer fix the text (the draft draws from the same random stream, and when it
     * rests depends on timings), so they speculate when they ask */
    j->spec_decode = sp_srv.can_spec_decode && (j->req.spec_decode_enabled == 1 || (j->req.spec_decode_enabled == -1 &&
                                                sp_srv.cfg->spec_decode_default && j->req.sampling.temperature == 0));
    if (j->req.spec_decode_enabled == 1 && !sp_srv.can_spec_decode) {
        sp_srv_job_release(j);
        return send_error(c, url, 400, "invalid_request_error", "speculative decoding needs the server to run with --draft (a draft of the main model's tokenizer)");
    }
    static atomic_ulong counter;
    snprintf(j->id, sizeof j->id, "%s-%lu", chat ? "chatcmpl" : "cmpl", (unsigned long)atomic_fetch_add(&counter, 1) + 1);
    j->created = (long)time(NULL);
    j->t_arrival = sp_srv_now();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;

    if (!sp_srv_scheduler_submit(j)) {
        sp_srv_job_release(j);
        return send_error(c, url, 503, "server_busy", sp_srv.stop_signal ? "the server is shutting down; retry later"
                                                      : "the server is busy: every slot is working and the queue is full; retry later");
    }
    /* The status line waits until a slot takes the job: a request still queued when the server
     * stops gets a 503 with a JSON error instead of 200 headers and a dropped socket. Meanwhile a
     * client that leaves cancels it. */
    pthread_mutex_lock(&j->mu);
    while (!j->started && !j->rejected && !j->cancelled) {
        wait_a_moment(j);
        if (!j->started && !j->rejected && client_gone(j->fd)) j->cancelled = true;
    }
    const bool started = j->started, rejected = j->rejected;
    pthread_mutex_unlock(&j->mu);
    /* --read-timeout bounds how long a client may take to send its request; the answer is another
     * matter (the wait above, and a non-streamed answer sends nothing until the generation ends):
     * this connection now gets an hour of silence (setting it also restarts its clock) */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)3600);
    if (!started) {
        sp_srv_job_release(j);
        if (rejected) return send_error(c, url, 503, "server_busy", "the server is shutting down; retry later");
        return MHD_NO; /* the client left */
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
        if (cs) atomic_fetch_add(&sp_srv.open_requests, 1);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        /* answer on the next call, once the request is read to its end: answering now would make
         * libmicrohttpd close the connection instead of keeping it alive */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!cs->too_large) {
            if (cs->len + *upload_size > sp_srv.cfg->max_body) {
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
    const bool health = strcmp(url, "/health") == 0;
    if (health && get) { /* readiness, for a balancer or an autoscaler: 503 once the server drains */
        int queued, busy;
        sp_srv_scheduler_load(&queued, &busy);
        const bool ready = !sp_srv.stop_signal;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", ready ? "ok" : "draining");
        cJSON_AddStringToObject(o, "replica", sp_srv.replica);
        cJSON_AddNumberToObject(o, "slots", sp_srv.cfg->parallel);
        cJSON_AddNumberToObject(o, "slots_busy", busy);
        cJSON_AddNumberToObject(o, "queued", queued);
        char *body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        sp_srv_count_status(ready ? 200 : 503);
        const enum MHD_Result r = send_text(c, ready ? 200 : 503, "application/json", body ? body : "{\"status\":\"ok\"}", NULL);
        free(body);
        return r;
    }
    if (health) return send_error(c, url, 405, "invalid_request_error", "method not allowed on this route");
    const bool known = is_completion || is_chat || strcmp(url, "/v1/models") == 0 || strcmp(url, "/metrics") == 0;
    if (!known) return send_error(c, url, 404, "not_found_error", "unknown route");
    if (!authorized(c)) return send_error(c, url, 401, "authentication_error", "missing or invalid API key (Authorization: Bearer KEY)");
    if (strcmp(url, "/metrics") == 0 && get) return metrics(c);
    if (strcmp(url, "/v1/models") == 0 && get) {
        char *s = sp_srv_models_body();
        enum MHD_Result r = send_text(c, 200, "application/json", s ? s : "{}", NULL);
        free(s);
        sp_srv_count_status(200);
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
    atomic_fetch_sub(&sp_srv.open_requests, 1);
}

static void on_signal(int sig) {
    (void)sig;
    sp_srv.stop_signal = 1;
}

int sp_server_run(const sp_server_config *cfg) {
    memset(&sp_srv, 0, sizeof sp_srv);
    sp_srv.cfg = cfg;
    if (sp_set_threads(cfg->threads) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 1; }
    if (sp_model_load_with(cfg->model_path, &cfg->model_params, &sp_srv.model) != SP_OK) { fprintf(stderr, "error: loading model: %s\n", sp_last_error()); return 1; }
    int rc = 1;
    struct MHD_Daemon *d = NULL;
    if (cfg->draft_path) {
        if (sp_model_load_with(cfg->draft_path, &cfg->model_params, &sp_srv.draft) != SP_OK) { fprintf(stderr, "error: loading draft: %s\n", sp_last_error()); goto done; }
        if (!cfg->spec.any_vocab && sp_vocab_check_same(sp_srv.model, sp_srv.draft) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); goto done; }
        sp_srv.can_spec_decode = sp_vocab_check_same(sp_srv.model, sp_srv.draft) == SP_OK &&
                                 sp_model_get_info(sp_srv.draft)->n_vocab == sp_model_get_info(sp_srv.model)->n_vocab;
    }
    if (steps_new(cfg->parallel, cfg->step_tokens, sp_srv.model, sp_srv.draft, &sp_srv.steps) != SP_OK) {
        fprintf(stderr, "error: %s\n", sp_last_error());
        goto done;
    }
    if (cfg->replica) snprintf(sp_srv.replica, sizeof sp_srv.replica, "%s", cfg->replica);
    else snprintf(sp_srv.replica, sizeof sp_srv.replica, "%s:%d", cfg->host, cfg->port);
    const char *slash = strrchr(cfg->model_path, '/');
    sp_srv.model_id = cfg->model_name ? cfg->model_name : slash ? slash + 1 : cfg->model_path;
    if (cfg->chat_template_kwargs) {
        cJSON *k = cJSON_Parse(cfg->chat_template_kwargs);
        const bool object = cJSON_IsObject(k);
        cJSON_Delete(k);
        if (!object) { fprintf(stderr, "error: --chat-template-kwargs must be a JSON object\n"); goto done; }
    }
    if (!cfg->chat_template && !sp_model_get_info(sp_srv.model)->has_chat_template)
        fprintf(stderr, "note: the model has no chat template; chat requests are rendered as ChatML (--chat-template, --chat-template-file)\n");
    if (!sp_srv_scheduler_start()) goto done;

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) { fprintf(stderr, "error: --host must be an IPv4 address, got '%s'\n", cfg->host); goto done; }
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)cfg->port, NULL, NULL,
                         handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->read_timeout,
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->conn_per_ip,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)(4 * (cfg->queue + cfg->parallel) + 64 + cfg->conn_per_ip), MHD_OPTION_END);
    if (!d) { fprintf(stderr, "error: cannot listen on %s:%d (%s)\n", cfg->host, cfg->port, strerror(errno)); goto done; }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "listening on http://%s:%d (model %s, %d slots of %d tokens, queue %d%s)\n", cfg->host, cfg->port, sp_srv.model_id,
            cfg->parallel, cfg->ctx_size, cfg->queue,
            sp_srv.can_spec_decode ? ", speculative prefill and decoding with a draft" : sp_srv.draft ? ", speculative prefill with a draft"
            : cfg->self_spec ? ", self-speculation" : "");
    while (!sp_srv.stop_signal) usleep(100 * 1000);
    rc = 0;
done:
    /* Drain: no new connections and no new jobs; the queued ones are answered 503; the running
     * ones get --shutdown-timeout seconds to finish, then are cut short (their answers end as if
     * max_tokens were reached); the slots are joined; the responses under way are sent to their
     * end (for up to 10 s more: a client that does not read is not waited for). */
    {
        const MHD_socket listener = d ? MHD_quiesce_daemon(d) : MHD_INVALID_SOCKET;
        const int rejected = sp_srv_scheduler_drain();
        int queued, busy;
        sp_srv_scheduler_load(&queued, &busy);
        if (d) fprintf(stderr, "shutting down: %d queued requests answered 503; %d running get up to %d s to finish\n", rejected, busy,
                       cfg->shutdown_timeout);
        for (int i = 0; i < cfg->shutdown_timeout * 10 && busy > 0; i++) {
            usleep(100 * 1000);
            sp_srv_scheduler_load(&queued, &busy);
        }
        sp_srv_scheduler_stop();
        if (d) {
            for (int i = 0; i < 1000 && atomic_load(&sp_srv.open_requests) > 0; i++) usleep(10 * 1000);
            MHD_stop_daemon(d);
            if (listener != MHD_INVALID_SOCKET) close(listener);
        }
    }
    steps_free(sp_srv.steps);
    sp_model_free(sp_srv.draft);
    sp_model_free(sp_srv.model);
    return rc;
}
