/*
 * Chat templates. Real models ship a Jinja template in tokenizer.chat_template; rather than
 * embed a Jinja interpreter, we recognise the template families in use and render each in C,
 * byte-for-byte as the Jinja template does (checked against the fixtures' renderings).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"

const char *sp_chat_detect_text(const char *t) {
    if (!t) return NULL;
    if (strstr(t, "<|start_header_id|>")) return "llama3";
    if (strstr(t, "<|im_start|>")) return "chatml";
    if (strstr(t, "[SYSTEM_PROMPT]")) return "mistral-v7";
    if (strstr(t, "[INST]")) return (strstr(t, "<<SYS>>") || strstr(t, "[INST] ")) ? "llama2" : "mistral-nemo";
    return NULL;
}

const char *sp_chat_template_detect(const sp_model *m) { return sp_chat_detect_text(m->chat_template); }

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void put_n(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void put(strbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* Jinja's |trim: strip leading and trailing whitespace */
static void put_trimmed(strbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", *s)) { s++; n--; }
    while (n && strchr(" \t\r\n", s[n - 1])) n--;
    put_n(b, s, n);
}

static bool is(const char *role, const char *name) { return strcmp(role, name) == 0; }

static void render_llama3(strbuf *b, const char *tmpl, const sp_chat_message *m, int n, bool gen) {
    put(b, "<|begin_of_text|>");
    int first = 0;
    /* Llama 3.1+ templates always open with a system header carrying the knowledge dates */
    if (tmpl && strstr(tmpl, "Cutting Knowledge Date")) {
        put(b, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
        if (n > 0 && is(m[0].role, "system")) {
            put_trimmed(b, m[0].content);
            first = 1;
        }
        put(b, "<|eot_id|>");
    }
    for (int i = first; i < n; i++) {
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    if (gen) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(strbuf *b, const char *tmpl, const sp_chat_message *m, int n, bool gen) {
    /* Qwen2.5 supplies its own system prompt when the conversation has none */
    const char *qwen_default = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    if (tmpl && strstr(tmpl, qwen_default) && (n == 0 || !is(m[0].role, "system"))) {
        put(b, "<|im_start|>system\n");
        put(b, qwen_default);
        put(b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        const char *content = m[i].content;
        /* Qwen3 drops the reasoning of earlier assistant turns */
        const char *think_end = is(m[i].role, "assistant") ? strstr(content, "</think>") : NULL;
        if (think_end) {
            content = think_end + strlen("</think>");
            while (*content == '\n') content++;
        }
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, content);
        put(b, "<|im_end|>\n");
    }
    if (gen) put(b, "<|im_start|>assistant\n");
}

static void render_mistral_v7(strbuf *b, const sp_chat_message *m, int n) {
    put(b, "<s>");
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "system")) { put(b, "[SYSTEM_PROMPT]"); put(b, m[i].content); put(b, "[/SYSTEM_PROMPT]"); }
        else if (is(m[i].role, "user")) { put(b, "[INST]"); put(b, m[i].content); put(b, "[/INST]"); }
        else { put(b, m[i].content); put(b, "</s>"); }
    }
}

static void render_mistral_nemo(strbuf *b, const sp_chat_message *m, int n) {
    /* the system prompt goes in front of the last user message */
    const char *system = NULL;
    int last_user = -1;
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "system")) system = m[i].content;
        if (is(m[i].role, "user")) last_user = i;
    }
    put(b, "<s>");
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "user")) {
            put(b, "[INST]");
            if (i == last_user && system) { put(b, system); put(b, "\n\n"); }
            put(b, m[i].content);
            put(b, "[/INST]");
        } else if (is(m[i].role, "assistant")) {
            put(b, m[i].content);
            put(b, "</s>");
        }
    }
}

static void render_llama2(strbuf *b, const sp_chat_message *m, int n) {
    const char *system = NULL;
    bool first_user = true;
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "system")) { system = m[i].content; continue; }
        if (is(m[i].role, "user")) {
            put(b, "<s>[INST] ");
            if (first_user && system) { put(b, "<<SYS>>\n"); put(b, system); put(b, "\n<</SYS>>\n\n"); }
            first_user = false;
            put_trimmed(b, m[i].content);
            put(b, " [/INST]");
        } else {
            put(b, " ");
            put_trimmed(b, m[i].content);
            put(b, " </s>");
        }
    }
}

sp_status sp_chat_apply(const sp_model *model, const char *name, const sp_chat_message *msgs, int n, bool gen, char **out) {
    return sp_chat_render(model->chat_template, name, msgs, n, gen, out);
}

sp_status sp_chat_render(const char *tmpl, const char *name, const sp_chat_message *msgs, int n, bool gen, char **out) {
    *out = NULL;
    if (!name) {
        name = sp_chat_detect_text(tmpl);
        if (!name)
            return sp_fail(SP_ERR_UNSUPPORTED, "chat: the model's chat template is %s; choose one with --chat-template (llama3, chatml, mistral-v7, mistral-nemo, llama2)",
                           tmpl ? "not one this engine knows" : "missing");
    }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content || !(is(msgs[i].role, "system") || is(msgs[i].role, "user") || is(msgs[i].role, "assistant")))
            return sp_fail(SP_ERR_ARGUMENT, "chat: message %d has no content or an unknown role (system, user, assistant)", i);
    strbuf b = {0};
    put(&b, "");
    if (strcmp(name, "llama3") == 0) render_llama3(&b, tmpl, msgs, n, gen);
    else if (strcmp(name, "chatml") == 0) render_chatml(&b, tmpl, msgs, n, gen);
    else if (strcmp(name, "mistral-v7") == 0) render_mistral_v7(&b, msgs, n);
    else if (strcmp(name, "mistral-nemo") == 0) render_mistral_nemo(&b, msgs, n);
    else if (strcmp(name, "llama2") == 0) render_llama2(&b, msgs, n);
    else {
        free(b.s);
        return sp_fail(SP_ERR_ARGUMENT, "chat: unknown template '%s' (known: llama3, chatml, mistral-v7, mistral-nemo, llama2)", name);
    }
    if (b.oom) {
        free(b.s);
        return sp_fail(SP_ERR_MEMORY, "chat: out of memory");
    }
    *out = b.s;
    return SP_OK;
}
