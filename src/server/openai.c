/* OpenAI's response objects, as its clients parse them: completions and chat completions, whole
 * or as SSE chunks ending "data: [DONE]", usage (plus our specprefill object), errors, models. */
#define _GNU_SOURCE /* strndup */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

void sp_srv_emit_json(job *j, cJSON *o, bool sse) {
    char *s = cJSON_PrintUnformatted(o);
    if (!s) { j->oom = true; return; }
    if (sse) sp_srv_job_emit(j, "data: ", 6);
    sp_srv_job_emit(j, s, strlen(s));
    if (sse) sp_srv_job_emit(j, "\n\n", 2);
    free(s);
}

cJSON *sp_srv_base_object(const job *j, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", sp_srv.model_id);
    return o;
}

void sp_srv_add_choice(cJSON *o, const job *j, const char *text, const char *finish, bool delta, bool first) {
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

void sp_srv_add_usage(cJSON *o, const job *j, const job_result *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt.n);
    cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", j->prompt.n + r->completion_tokens);
    cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details"); /* OpenAI's name for prompt tokens served from a cache */
    cJSON_AddNumberToObject(pd, "cached_tokens", r->cached);
    if (j->spec_decode) { /* OpenAI's names for tokens of a prediction that the completion took or not */
        cJSON *d = cJSON_AddObjectToObject(u, "completion_tokens_details");
        cJSON_AddNumberToObject(d, "accepted_prediction_tokens", (double)r->accepted);
        cJSON_AddNumberToObject(d, "rejected_prediction_tokens", (double)(r->drafted - r->accepted));
    }
    cJSON *x = cJSON_AddObjectToObject(o, "specprefill");
    cJSON_AddBoolToObject(x, "enabled", j->spec);
    cJSON_AddNumberToObject(x, "prompt_tokens", j->prompt.n);
    cJSON_AddNumberToObject(x, "kept_tokens", r->kept);
    /* the prompt's start whose state came from a cache: of it, the main model's cached tokens
     * (all of them after a full prefill, the kept ones after a speculative one) and the draft's */
    cJSON *c = cJSON_AddObjectToObject(x, "cache");
    cJSON_AddNumberToObject(c, "cached_tokens", r->cached);
    cJSON_AddNumberToObject(c, "cached_kept_tokens", r->cached_kept);
    cJSON_AddNumberToObject(c, "draft_cached_tokens", r->draft_cached);
    cJSON_AddStringToObject(c, "source", r->cached == 0 && r->draft_cached == 0 ? "none" : r->cache_restored ? "memory" : "slot");
    cJSON_AddNumberToObject(x, "ttft_ms", round(r->ttft * 1e4) / 10);
    cJSON_AddNumberToObject(x, "prefill_ms", round(r->prefill * 1e4) / 10);
    cJSON_AddNumberToObject(x, "decode_ms", round(r->decode * 1e4) / 10);
    cJSON_AddNumberToObject(x, "total_ms", round(r->total * 1e4) / 10);
    cJSON *d = cJSON_AddObjectToObject(x, "speculative_decoding");
    cJSON_AddBoolToObject(d, "enabled", j->spec_decode);
    cJSON_AddNumberToObject(d, "drafted_tokens", (double)r->drafted);
    cJSON_AddNumberToObject(d, "accepted_tokens", (double)r->accepted);
    cJSON_AddNumberToObject(d, "decode_steps", r->decode_steps);
    /* tokens per forward pass of the main model: the speed-up in passes (1 without speculation) */
    cJSON_AddNumberToObject(d, "tokens_per_step", r->decode_steps ? round(1000.0 * r->completion_tokens / r->decode_steps) / 1000 : 0);
}

void sp_srv_stream_text(job *j, const char *text, size_t n, bool first) {
    char *t = strndup(text, n);
    if (!t) { j->oom = true; return; }
    cJSON *o = sp_srv_base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    sp_srv_add_choice(o, j, t, NULL, true, first);
    sp_srv_emit_json(j, o, true);
    cJSON_Delete(o);
    free(t);
}

void sp_srv_finish_response(job *j, const char *text, const char *finish, const job_result *r, bool first_chunk) {
    if (j->req.stream) {
        cJSON *o = sp_srv_base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
        sp_srv_add_choice(o, j, j->req.chat ? NULL : "", finish, true, first_chunk);
        sp_srv_emit_json(j, o, true);
        cJSON_Delete(o);
        if (j->req.include_usage) {
            o = sp_srv_base_object(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(o, "choices");
            sp_srv_add_usage(o, j, r);
            sp_srv_emit_json(j, o, true);
            cJSON_Delete(o);
        }
        sp_srv_job_emit(j, "data: [DONE]\n\n", 14);
    } else {
        cJSON *o = sp_srv_base_object(j, j->req.chat ? "chat.completion" : "text_completion");
        sp_srv_add_choice(o, j, text ? text : "", finish, false, true);
        sp_srv_add_usage(o, j, r);
        sp_srv_emit_json(j, o, false);
        cJSON_Delete(o);
    }
}

char *sp_srv_error_body(int status, const char *type, const char *msg) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    /* OpenAI's code is a string naming the error, or null */
    const char *code = status == 401 ? "invalid_api_key" : status == 404 ? "unknown_url" : status == 413 ? "request_too_large"
                     : status == 503 ? "server_busy" : NULL;
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *sp_srv_models_body(void) {
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddStringToObject(m, "id", sp_srv.model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "specprefill");
    cJSON_AddItemToArray(data, m);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
