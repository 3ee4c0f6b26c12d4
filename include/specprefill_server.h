/* The interface of libspecprefill_server, the OpenAI-compatible HTTP server (libmicrohttpd):
 * slots that each own a main (and draft) context, a bounded queue in front of them, speculative
 * prefill per request, metrics. */
#ifndef SPECPREFILL_SERVER_H
#define SPECPREFILL_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "specprefill.h"

typedef struct {
    const char *model_path;
    const char *draft_path;     /* NULL: no draft */
    sp_model_params model_params; /* how both files are loaded (no_mmap) */
    bool self_spec;             /* speculative prefill with the main model's first layers */
    bool spec_default;          /* speculative prefill for requests that do not say */
    sp_specprefill_params spec; /* server defaults, per-request overrides on top */
    bool spec_decode_default;   /* speculative decoding (with a draft of the same tokenizer) for requests that do not say */
    sp_specdecode_params spec_decode; /* its defaults, per-request overrides on top */
    sp_sampling_params sampling;
    const char *chat_template;  /* Jinja source; NULL: the model's own */
    const char *chat_template_kwargs; /* a JSON object of template variables for every request (a request's own win), or NULL */
    const char *host;
    int port;
    int parallel;               /* slots */
    int queue;                  /* waiting requests beyond the slots */
    const char *api_key;        /* NULL: open */
    int read_timeout;           /* seconds a connection may stay idle while sending its request, or between requests */
    int conn_per_ip;            /* connections one client address may hold (0: no cap, e.g. behind a proxy) */
    int shutdown_timeout;       /* seconds running requests get to finish after SIGTERM */
    int ctx_size;               /* per slot */
    sp_rope_scaling rope_scaling; /* position scaling of every context (main and draft; AUTO: per model) */
    float rope_scale;           /* its factor (0 = ctx_size / training context) */
    int yarn_orig_ctx;          /* YaRN's original context (0 = the model's) */
    int cache_ram_mib;          /* memory for conversations set aside when their slot is needed (0: none) */
    bool spec_reuse_kept;       /* a follow-up's speculative prefill keeps the main model's kept tokens (true), or only the
                                 * draft's cache, selecting the whole prompt afresh as a cold run does (false) */
    int step_tokens;            /* prompt tokens per scheduler step, beside every stream's next token (≥ 1) */
    size_t max_body;
    int threads;
    const char *model_name;     /* id reported by /v1/models */
    const char *replica;        /* this server's name in /health and /metrics (NULL: HOST:PORT) */
} sp_server_config;

/* Runs until SIGINT/SIGTERM; returns a process exit code. */
int sp_server_run(const sp_server_config *cfg);

#endif
