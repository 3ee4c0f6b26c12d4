#include "request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *err, size_t size, const char *msg, const char *field) {
    snprintf(err, size, msg, field);
    return 400;
}

/* number field: absent → keep *out; wrong type or out of [lo, hi] → error */
static int number(const cJSON *o, const char *field, double lo, double hi, double *out, char *err, size_t es) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return bad(err, es, "'%s' must be a number", field);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) return bad(err, es, "'%s' is out of range", field);
    *out = v->valuedouble;
    return 0;
}

static int boolean(const cJSON *o, const char *field, bool *out, char *err, size_t es) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return bad(err, es, "'%s' must be true or false", field);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* What cJSON lets through and a strict reader must not: a NUL (raw, or \u0000 — it would cut a C
 * string short, silently truncating the prompt) and raw control characters inside strings
 * (RFC 8259 requires them escaped). Trailing bytes are checked after parsing. */
static int strict_bytes(const char *s, size_t n, char *err, size_t es) {
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == 0) return bad(err, es, "the body contains a NUL byte%s", "");
        if (!in_string) {
            in_string = c == '"';
            continue;
        }
        if (c == '"') in_string = false;
        else if (c < 0x20) return bad(err, es, "a raw control character inside a JSON string (escape it: \\n, \\t, \\u00XX)%s", "");
        else if (c == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0')
                return bad(err, es, "a NUL character (\\u0000) in a string%s", "");
            i++; /* the escaped character, whatever it is */
        }
    }
    return 0;
}

void sp_request_free(sp_request *r) {
    free(r->prompt);
    free(r->messages_json);
    free(r->template_vars_json);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static int parse(const cJSON *root, bool chat, sp_request *r, char *err, size_t es) {
    int rc;
    if (!cJSON_IsObject(root)) return bad(err, es, "the body must be a JSON object%s", "");
    if (chat) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) return bad(err, es, "'%s' must be a non-empty array", "messages");
        if (cJSON_GetArraySize(msgs) > SP_MAX_MESSAGES) return bad(err, es, "too many %s", "messages");
        cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsObject(m) || !cJSON_IsString(role)) return bad(err, es, "each message needs a string '%s'", "role");
            static const char *const roles[] = {"system", "user", "assistant", "tool", "developer", "function", "ipython", NULL};
            int k = 0;
            while (roles[k] && strcmp(role->valuestring, roles[k])) k++;
            if (!roles[k]) return bad(err, es, "unknown message role '%.40s'", role->valuestring);
            /* content: a string, parts ([{"type": "text", "text": ...}]), or null beside tool calls */
            const bool calls = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"));
            if (!cJSON_IsString(content) && !cJSON_IsArray(content) && !(calls && (!content || cJSON_IsNull(content))))
                return bad(err, es, "each message needs a string '%s' (or parts, or tool_calls)", "content");
            if (cJSON_IsArray(content)) {
                const cJSON *part;
                cJSON_ArrayForEach(part, content)
                    if (!cJSON_IsObject(part) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(part, "type")))
                        return bad(err, es, "each content part needs a string '%s'", "type");
            }
            /* OpenAI's "developer" is the system message templates know */
            if (strcmp(role->valuestring, "developer") == 0) cJSON_SetValuestring(role, "system");
            r->n_messages++;
        }
        if (!(r->messages_json = cJSON_PrintUnformatted(msgs))) return bad(err, es, "out of memory%s", "");
        /* what else a template may read: the tools, and chat_template_kwargs (enable_thinking, ...) */
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools"), *kwargs = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs");
        if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) return bad(err, es, "'%s' must be an array", "tools");
        if (kwargs && !cJSON_IsNull(kwargs) && !cJSON_IsObject(kwargs)) return bad(err, es, "'%s' must be an object", "chat_template_kwargs");
        if (cJSON_IsArray(tools) || cJSON_IsObject(kwargs)) {
            cJSON *vars = cJSON_IsObject(kwargs) ? cJSON_Duplicate(kwargs, true) : cJSON_CreateObject();
            if (vars && cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0) {
                cJSON_DeleteItemFromObjectCaseSensitive(vars, "tools");
                cJSON_AddItemToObject(vars, "tools", cJSON_Duplicate(tools, true));
            }
            r->template_vars_json = vars ? cJSON_PrintUnformatted(vars) : NULL;
            cJSON_Delete(vars);
            if (!r->template_vars_json) return bad(err, es, "out of memory%s", "");
        }
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) return bad(err, es, "'%s' must be a string", "prompt");
        r->prompt = strdup(p->valuestring);
        if (!r->prompt) return bad(err, es, "out of memory%s", "");
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) return bad(err, es, "'%s' must be a string", "model");
    double v = -1;
    if ((rc = number(root, "max_tokens", 0, 1 << 24, &v, err, es))) return rc;
    if ((rc = number(root, "max_completion_tokens", 0, 1 << 24, &v, err, es))) return rc;
    r->max_tokens = (int)v;
    v = 1;
    if ((rc = number(root, "n", 1, 1, &v, err, es))) return bad(err, es, "only n = 1 is supported%s", "");
    sp_sampling_params *s = &r->sampling;
    v = s->temperature;
    if ((rc = number(root, "temperature", 0, 2, &v, err, es))) return rc;
    s->temperature = (float)v;
    v = s->top_p;
    if ((rc = number(root, "top_p", 1e-9, 1, &v, err, es))) return rc;
    s->top_p = (float)v;
    v = s->top_k;
    if ((rc = number(root, "top_k", 0, 1 << 24, &v, err, es))) return rc;
    s->top_k = (int)v;
    v = s->min_p;
    if ((rc = number(root, "min_p", 0, 1, &v, err, es))) return rc;
    s->min_p = (float)v;
    v = (double)s->seed;
    if ((rc = number(root, "seed", 0, 9007199254740991.0, &v, err, es))) return rc;
    s->seed = (uint64_t)v;
    v = s->repeat_penalty;
    if ((rc = number(root, "repeat_penalty", 1e-3, 100, &v, err, es))) return rc;
    s->repeat_penalty = (float)v;
    if ((rc = boolean(root, "stream", &r->stream, err, es))) return rc;
    if ((rc = boolean(root, "ignore_eos", &r->ignore_eos, err, es))) return rc;
    r->cache_prompt = true; /* llama.cpp's field: reuse what a cache holds of the prompt */
    if ((rc = boolean(root, "cache_prompt", &r->cache_prompt, err, es))) return rc;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return bad(err, es, "'%s' must be an object", "stream_options");
        if ((rc = boolean(so, "include_usage", &r->include_usage, err, es))) return rc;
    }
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    /* each stop string is matched against the text at every token: bounded, or one request slows every stream */
    const cJSON *x;
    if (cJSON_IsString(stop) && strlen(stop->valuestring) > SP_MAX_STOP_BYTES)
        return bad(err, es, "a 'stop' string is longer than %s bytes", SP_STRINGIFY(SP_MAX_STOP_BYTES));
    if (cJSON_IsArray(stop))
        cJSON_ArrayForEach(x, stop) if (cJSON_IsString(x) && strlen(x->valuestring) > SP_MAX_STOP_BYTES)
            return bad(err, es, "a 'stop' string is longer than %s bytes", SP_STRINGIFY(SP_MAX_STOP_BYTES));
    if (cJSON_IsString(stop)) {
        if (*stop->valuestring && !(r->stop[r->n_stop++] = strdup(stop->valuestring))) return bad(err, es, "out of memory%s", "");
    } else if (cJSON_IsArray(stop)) {
        if (cJSON_GetArraySize(stop) > SP_MAX_STOPS) return bad(err, es, "at most 4 '%s' strings", "stop");
        cJSON_ArrayForEach(x, stop) {
            if (!cJSON_IsString(x)) return bad(err, es, "'%s' must be a string or an array of strings", "stop");
            if (*x->valuestring && !(r->stop[r->n_stop++] = strdup(x->valuestring))) return bad(err, es, "out of memory%s", "");
        }
    } else if (stop && !cJSON_IsNull(stop)) {
        return bad(err, es, "'%s' must be a string or an array of strings", "stop");
    }
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "speculative_prefill");
    r->spec_enabled = -1;
    r->spec_reuse = -1;
    if (sp && !cJSON_IsNull(sp)) {
        if (cJSON_IsBool(sp)) {
            r->spec_enabled = cJSON_IsTrue(sp);
        } else {
            if (!cJSON_IsObject(sp)) return bad(err, es, "'%s' must be an object or a boolean", "speculative_prefill");
            bool en = true;
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(sp, "enabled");
            if ((rc = boolean(sp, "enabled", &en, err, es))) return rc;
            if (e && !cJSON_IsNull(e)) r->spec_enabled = en;
            /* each field overrides the server's value; the library judges the result */
            v = r->spec.keep_rate;
            if ((rc = number(sp, "keep_rate", 0, 1, &v, err, es))) return rc;
            r->spec.keep_rate = (float)v;
            v = r->spec.keep_mass;
            if ((rc = number(sp, "keep_mass", 0, 1, &v, err, es))) return rc;
            r->spec.keep_mass = (float)v;
            v = r->spec.chunk;
            if ((rc = number(sp, "chunk", 1, 1 << 20, &v, err, es))) return rc;
            r->spec.chunk = (int)v;
            v = r->spec.lookahead;
            if ((rc = number(sp, "lookahead", 1, 256, &v, err, es))) return rc;
            r->spec.lookahead = (int)v;
            const cJSON *ru = cJSON_GetObjectItemCaseSensitive(sp, "reuse");
            if (ru && !cJSON_IsNull(ru)) {
                if (!cJSON_IsString(ru) || (strcmp(ru->valuestring, "kept") != 0 && strcmp(ru->valuestring, "draft") != 0))
                    return bad(err, es, "'speculative_prefill': reuse must be \"kept\" or \"draft\"%s", "");
                r->spec_reuse = strcmp(ru->valuestring, "kept") == 0;
            }
            if (sp_specprefill_params_check(&r->spec) != SP_OK) return bad(err, es, "'speculative_prefill': %s", sp_last_error());
        }
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "speculative_decoding");
    r->spec_decode_enabled = -1;
    if (sd && !cJSON_IsNull(sd)) {
        if (cJSON_IsBool(sd)) {
            r->spec_decode_enabled = cJSON_IsTrue(sd);
        } else {
            if (!cJSON_IsObject(sd)) return bad(err, es, "'%s' must be an object or a boolean", "speculative_decoding");
            bool en = true;
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(sd, "enabled");
            if ((rc = boolean(sd, "enabled", &en, err, es))) return rc;
            r->spec_decode_enabled = e && !cJSON_IsNull(e) ? en : 1; /* an object asks for it */
            v = r->spec_decode.draft_max;
            if ((rc = number(sd, "draft_max", 1, SP_SPECDECODE_MAX_DRAFT, &v, err, es))) return rc;
            r->spec_decode.draft_max = (int)v;
            v = r->spec_decode.draft_min;
            if ((rc = number(sd, "draft_min", 1, SP_SPECDECODE_MAX_DRAFT, &v, err, es))) return rc;
            r->spec_decode.draft_min = (int)v;
            if (r->spec_decode.draft_min > r->spec_decode.draft_max)
                return bad(err, es, "'speculative_decoding': draft_min exceeds draft_max%s", "");
        }
    }
    return 0;
}

int sp_request_parse(const char *body, size_t len, bool chat, const sp_request_defaults *defaults, sp_request *out,
                     char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    out->max_tokens = -1;
    out->sampling = defaults->sampling;
    out->spec = defaults->spec;
    out->spec_decode = defaults->spec_decode;
    int rc = strict_bytes(body, len, err, err_size);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        snprintf(err, err_size, "the body is not valid JSON");
        return 400;
    }
    while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < body + len) {
        cJSON_Delete(root);
        snprintf(err, err_size, "the body has bytes after its JSON value (at byte %zu)", (size_t)(end - body));
        return 400;
    }
    out->json = root;
    rc = parse(root, chat, out, err, err_size);
    if (rc) sp_request_free(out);
    return rc;
}
