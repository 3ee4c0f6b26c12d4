/* OpenAI-style request bodies → a validated request. Separate from the HTTP layer so it can be
 * unit-tested and fuzzed on its own. */
#ifndef SP_SERVER_REQUEST_H
#define SP_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "specprefill.h"

#define SP_MAX_STOPS 4
#define SP_MAX_STOP_BYTES 256 /* per stop string */
#define SP_STRINGIFY_(x) #x
#define SP_STRINGIFY(x) SP_STRINGIFY_(x)
#define SP_MAX_MESSAGES 256

typedef struct {
    bool chat;                      /* /v1/chat/completions */
    char *prompt;                   /* completions: the prompt text (owned) */
    char *messages_json;            /* chat: the messages as sent (content parts, tool calls), owned */
    char *template_vars_json;       /* chat: "tools" and the entries of "chat_template_kwargs" as one object, or NULL; owned */
    int n_messages;
    int max_tokens;                 /* -1 = until the context is full */
    sp_sampling_params sampling;
    char *stop[SP_MAX_STOPS];       /* owned */
    int n_stop;
    bool stream, include_usage;
    bool ignore_eos;                /* llama.cpp extension: generate through end-of-generation tokens */
    bool cache_prompt;              /* llama.cpp extension (default true): reuse what the caches hold of the prompt */
    int spec_enabled;               /* speculative prefill: -1 the server's default, 0 off, 1 on */
    sp_specprefill_params spec;     /* the server's parameters with the request's fields on top, checked */
    int spec_reuse;                 /* a follow-up's speculative prefill: -1 the server's default, 1 "kept" (the
                                     * main model keeps its kept tokens), 0 "draft" (only the draft's cache) */
    int spec_decode_enabled;        /* speculative decoding: -1 the server's default, 0 off, 1 on */
    sp_specdecode_params spec_decode; /* the server's parameters with the request's on top, checked */
    void *json;                     /* the parsed document */
} sp_request;

/* What a request that says nothing gets. */
typedef struct {
    sp_sampling_params sampling;
    sp_specprefill_params spec;
    sp_specdecode_params spec_decode;
} sp_request_defaults;

/* Parses and validates a body: the result holds every parameter ready to use (the defaults
 * merged with what the body sets). Returns 0 on success, else an HTTP status (400) with a
 * message in err. Unknown fields are ignored, as OpenAI-compatible servers do. */
int sp_request_parse(const char *body, size_t len, bool chat, const sp_request_defaults *defaults, sp_request *out,
                     char *err, size_t err_size);
void sp_request_free(sp_request *r);

#endif
