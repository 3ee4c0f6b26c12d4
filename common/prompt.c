/* A conversation or a text → the text the model reads and its tokens, the same for every front end. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

sp_status spc_prompt_make(const sp_model *m, bool chat, const char *template_name, const sp_chat_message *msgs,
                          int n_msgs, spc_prompt *out) {
    memset(out, 0, sizeof *out);
    sp_status s;
    if (!m || n_msgs < 1 || !msgs || (!chat && !msgs[0].content)) return sp_fail(SP_ERR_ARGUMENT, "prompt: no text");
    if (chat) {
        if ((s = sp_chat_apply(m, template_name, msgs, n_msgs, true, &out->text)) != SP_OK) return s;
    } else if (!(out->text = strdup(msgs[0].content))) {
        return sp_fail(SP_ERR_MEMORY, "prompt: out of memory");
    }
    /* chat markup is the template's own: its special tokens are parsed; a user's plain text is not */
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

void spc_prompt_free(spc_prompt *p) {
    free(p->text);
    free(p->ids);
    memset(p, 0, sizeof *p);
}
