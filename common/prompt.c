/* A conversation or a text → the text the model reads and its tokens, the same for every front end. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* the text as the model reads it → its tokens: BOS as the model's metadata asks, markup parsed
 * into special tokens only for chat (a user's plain text stays text), one BOS */
static sp_status tokenize(const sp_model *m, bool chat, spc_prompt *out) {
    sp_status s;
    if ((s = sp_tokenize(m, out->text, strlen(out->text), true, chat, &out->ids, &out->n)) != SP_OK) {
        spc_prompt_free(out);
        return s;
    }
    /* a template that writes BOS itself, on a model whose metadata adds one, would give two */
    const sp_token bos = sp_token_bos(m);
    if (out->n >= 2 && out->ids[0] == bos && out->ids[1] == bos) memmove(out->ids, out->ids + 1, (size_t)--out->n * sizeof *out->ids);
    if (out->n == 0) {
        spc_prompt_free(out);
        return sp_fail(SP_ERR_ARGUMENT, "the prompt is empty");
    }
    return SP_OK;
}

sp_status spc_prompt_make(const sp_model *m, bool chat, const char *template_source, const char *vars_json,
                          const sp_chat_message *msgs, int n_msgs, spc_prompt *out) {
    memset(out, 0, sizeof *out);
    if (!m || n_msgs < 1 || !msgs || (!chat && !msgs[0].content)) return sp_fail(SP_ERR_ARGUMENT, "prompt: no text");
    sp_status s;
    if (!chat) {
        if (!(out->text = strdup(msgs[0].content))) return sp_fail(SP_ERR_MEMORY, "prompt: out of memory");
    } else if ((s = sp_chat_render(m, template_source, msgs, n_msgs, vars_json, true, &out->text)) != SP_OK) {
        return s;
    }
    return tokenize(m, chat, out);
}

sp_status spc_prompt_chat(const sp_model *m, const char *template_source, const char *messages_json, const char *vars_json,
                          spc_prompt *out) {
    memset(out, 0, sizeof *out);
    sp_status s;
    if (!m) return sp_fail(SP_ERR_ARGUMENT, "prompt: no model");
    if ((s = sp_chat_apply_json(m, template_source, messages_json, vars_json, true, &out->text)) != SP_OK) return s;
    return tokenize(m, true, out);
}

void spc_prompt_free(spc_prompt *p) {
    free(p->text);
    free(p->ids);
    memset(p, 0, sizeof *p);
}
