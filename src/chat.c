/*
 * Chat templates. A model's GGUF carries its template as Jinja (tokenizer.chat_template); it runs
 * in jinja.c with the variables transformers passes (messages, add_generation_prompt, bos_token,
 * eos_token, tools, documents, and whatever the caller adds). The built-in templates, for models
 * without one, are Jinja sources run the same way: there is one rendering path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jinja.h"
#include "model.h"

static const struct { const char *name, *source; } builtins[] = {
    {"chatml",
     "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
    {"llama3",
     "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
     "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
     "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"},
    {"mistral-v7",
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]"
     "{% elif message['role'] == 'user' %}[INST]{{ message['content'] }}[/INST]"
     "{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"},
    {"mistral-nemo", /* the system prompt goes in front of the last user message */
     "{% set ns = namespace(system='', last_user=-1) %}{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
     "{% elif m['role'] == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}{{ bos_token }}"
     "{% for m in messages %}{% if m['role'] == 'user' %}[INST]{% if loop.index0 == ns.last_user and ns.system %}{{ ns.system }}\n\n{% endif %}"
     "{{ m['content'] }}[/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"},
    {"llama2",
     "{% set ns = namespace(system='', first=true) %}{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
     "{% elif m['role'] == 'user' %}{{ bos_token }}[INST] {% if ns.first and ns.system %}<<SYS>>\n{{ ns.system }}\n<</SYS>>\n\n{% endif %}"
     "{% set ns.first = false %}{{ m['content'] | trim }} [/INST]{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}"},
};
#define N_BUILTINS (int)(sizeof builtins / sizeof *builtins)

const char *sp_chat_builtin(const char *name) {
    for (int i = 0; name && i < N_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0) return builtins[i].source;
    return NULL;
}

const char *sp_chat_builtin_names(void) { return "chatml, llama3, mistral-v7, mistral-nemo, llama2"; }

/* The family a template belongs to, by its markup (for `info`). */
const char *sp_chat_detect_text(const char *t) {
    if (!t) return NULL;
    if (strstr(t, "<|start_header_id|>")) return "llama3";
    if (strstr(t, "<|im_start|>")) return "chatml";
    if (strstr(t, "[SYSTEM_PROMPT]")) return "mistral-v7";
    if (strstr(t, "<start_of_turn>")) return "gemma";
    if (strstr(t, "<|user|>") || strstr(t, "<|im_sep|>")) return "phi";
    if (strstr(t, "<｜User｜>")) return "deepseek";
    if (strstr(t, "[INST]")) return (strstr(t, "<<SYS>>") || strstr(t, "[INST] ")) ? "llama2" : "mistral-nemo";
    return NULL;
}

const char *sp_chat_template_detect(const sp_model *m) { return sp_chat_detect_text(m->chat_template); }

/* A special token's text, as a template writes it ("" if the model has none). */
static sp_jv token_text(sp_jinja *j, const sp_model *m, sp_token t) {
    char buf[256];
    const int k = m && t >= 0 ? sp_token_to_bytes(m, t, true, buf, sizeof buf) : 0;
    return sp_jinja_string(j, buf, k > 0 && k <= (int)sizeof buf ? (size_t)k : 0);
}

/* The last error again, with what it was about in front. */
static sp_status again(sp_status s, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", sp_last_error());
    return sp_fail(s, "%s: %s", what, msg);
}

/* The variables transformers passes, then the caller's extras (which may replace them). */
static sp_status render(sp_jinja *j, const sp_model *m, const char *source, sp_jv messages, const char *vars_json, bool gen, char **out) {
    sp_jinja_set(j, "messages", messages);
    sp_jinja_set(j, "add_generation_prompt", sp_jinja_bool(gen));
    sp_jinja_set(j, "bos_token", token_text(j, m, m ? sp_token_bos(m) : -1));
    sp_jinja_set(j, "eos_token", token_text(j, m, m ? sp_token_eos(m) : -1));
    sp_jinja_set(j, "tools", sp_jinja_none());
    sp_jinja_set(j, "documents", sp_jinja_none());
    if (vars_json) {
        sp_jv vars;
        sp_status s = sp_jinja_from_json(j, vars_json, strlen(vars_json), &vars);
        if (s != SP_OK) return again(s, "chat template variables");
        if (!sp_jinja_set_all(j, vars)) return sp_fail(SP_ERR_ARGUMENT, "chat template variables: a JSON object expected");
    }
    return sp_jinja_render(j, source, strlen(source), out, NULL);
}

/* The template to run: a built-in by name, else the model's, else ChatML. */
static sp_status choose(const sp_model *m, const char *name, const char **source) {
    if (name) {
        if (!(*source = sp_chat_builtin(name)))
            return sp_fail(SP_ERR_ARGUMENT, "chat: unknown template '%s' (built in: %s; or a file of your own)", name, sp_chat_builtin_names());
        return SP_OK;
    }
    *source = m && m->chat_template ? m->chat_template : sp_chat_builtin("chatml");
    return SP_OK;
}

sp_status sp_chat_render(const sp_model *m, const char *source, const sp_chat_message *msgs, int n, const char *vars_json, bool gen,
                         char **out) {
    *out = NULL;
    sp_status s;
    if (!source && (s = choose(m, NULL, &source)) != SP_OK) return s;
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) return sp_fail(SP_ERR_ARGUMENT, "chat: message %d has no role or content", i);
    sp_jinja *j = sp_jinja_new();
    if (!j) return sp_fail(SP_ERR_MEMORY, "chat: out of memory");
    sp_jv list = sp_jinja_list(j);
    for (int i = 0; i < n; i++) {
        sp_jv msg = sp_jinja_dict(j);
        sp_jinja_dict_set(j, msg, "role", sp_jinja_string(j, msgs[i].role, strlen(msgs[i].role)));
        sp_jinja_dict_set(j, msg, "content", sp_jinja_string(j, msgs[i].content, strlen(msgs[i].content)));
        sp_jinja_list_push(j, list, msg);
    }
    s = render(j, m, source, list, vars_json, gen, out);
    sp_jinja_free(j);
    return s;
}

sp_status sp_chat_apply(const sp_model *model, const char *name, const sp_chat_message *msgs, int n, bool gen, char **out) {
    const char *source;
    *out = NULL;
    sp_status s = choose(model, name, &source);
    return s != SP_OK ? s : sp_chat_render(model, source, msgs, n, NULL, gen, out);
}

sp_status sp_chat_apply_json(const sp_model *model, const char *source, const char *messages_json, const char *vars_json, bool gen,
                             char **out) {
    *out = NULL;
    sp_status s;
    if (!source && (s = choose(model, NULL, &source)) != SP_OK) return s;
    if (!messages_json) return sp_fail(SP_ERR_ARGUMENT, "chat: no messages");
    sp_jinja *j = sp_jinja_new();
    if (!j) return sp_fail(SP_ERR_MEMORY, "chat: out of memory");
    sp_jv messages;
    if ((s = sp_jinja_from_json(j, messages_json, strlen(messages_json), &messages)) != SP_OK) s = again(s, "chat messages");
    else if (messages.kind != JV_LIST) s = sp_fail(SP_ERR_ARGUMENT, "chat messages: a JSON array expected");
    else s = render(j, model, source, messages, vars_json, gen, out);
    sp_jinja_free(j);
    return s;
}
