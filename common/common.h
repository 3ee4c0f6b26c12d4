/*
 * The shared layer of the project's front ends (the CLI's commands, the server, the evaluation):
 * what each of them does with the library in the same way, written once — as llama.cpp's
 * common/ is for its tools. It uses the public API (specprefill.h) only.
 *
 *   prompt.c   a conversation or a text → the text the model reads and its tokens
 *   prefill.c  one prefill entry (full or speculative) and the draft context's size
 *   text.c     generated tokens → text, cut at stop strings, handed out in safe pieces
 */
#ifndef SPC_COMMON_H
#define SPC_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "specprefill.h"

/* ------------------------------------------------------------------ prompt */

typedef struct {
    char *text;    /* what the model reads: the rendered conversation, or the text as given */
    sp_token *ids; /* its tokens */
    int n;
} spc_prompt;

/* chat: msgs rendered with a chat template (template_source: Jinja text, NULL = the model's own;
 * vars_json: extra template variables as a JSON object, or NULL) and an assistant turn opened; else msgs[0].content is the text as it is. Then tokenized with BOS
 * as the model's metadata asks — markup parsed into special tokens only for chat — and a BOS the
 * template wrote itself is not doubled. An empty prompt is an error. Free with spc_prompt_free. */
sp_status spc_prompt_make(const sp_model *model, bool chat, const char *template_source, const char *vars_json,
                          const sp_chat_message *msgs, int n_msgs, spc_prompt *out);
/* The same for a conversation as JSON (the OpenAI messages array: content parts, tool calls and
 * results as sent) with extra template variables (vars_json: an object, or NULL). */
sp_status spc_prompt_chat(const sp_model *model, const char *template_source, const char *messages_json, const char *vars_json,
                          spc_prompt *out);
void spc_prompt_free(spc_prompt *p);

/* ------------------------------------------------------------------ prefill */

/* The draft context's capacity: the prompt and the look-ahead. n is the prompt's length in
 * tokens — or, for a draft of another tokenizer (other_vocab), in bytes of its text: no tokenizer
 * cuts finer than one token per byte (BOS and SentencePiece's leading space aside). */
int spc_draft_ctx_size(int n, const sp_specprefill_params *params, bool other_vocab);

/* What a prefill may keep of what the contexts hold (spc_prefill). */
typedef struct {
    int main;   /* the caller vouches that ctx holds what an earlier prefill (and its answer) left of
                 * a text whose first `main` tokens are this prompt's */
    bool draft; /* a speculative prefill keeps the start of the draft's cache that is this prompt */
} spc_reuse;

/* The prefill every front end runs: speculative when draft_ctx is set (a context on the draft,
 * or on the main model for self-speculation), else full. Afterwards ctx continues at position
 * p->n. reuse NULL: both contexts start empty. Else what the caches hold of the prompt is not read
 * again: speculative, sp_specprefill_cached (reuse->main 0 and reuse->draft: the draft's cache is
 * kept, the main model reads its selection of the whole prompt afresh — what a cold run selects);
 * full, the start of the cache that is the prompt token for token, up to reuse->main. stats (may
 * be NULL): for a full prefill n_kept = n_prompt and main_prefill_s = ttft_s; n_reused says what
 * was kept. importance and kept (may be NULL) are filled by the speculative one. */
sp_status spc_prefill(sp_context *ctx, sp_context *draft_ctx, const spc_prompt *p, const spc_reuse *reuse,
                      const sp_specprefill_params *params, float *logits, float *importance, uint8_t *kept,
                      sp_specprefill_stats *stats);

/* ------------------------------------------------------------------ generated text */

#define SPC_MAX_STOPS 16

/* Generated text: each token's bytes appended (never half a character), cut where a stop
 * string first appears. Pieces come out as soon as they can no longer turn into the start of a
 * stop string, so a streamed answer never shows a stop string or part of one. */
typedef struct {
    sp_detokenizer detok;
    const char *stops[SPC_MAX_STOPS];
    int n_stops;
    size_t max_stop;     /* the longest stop string's length */
    char *text;          /* all the text so far (NUL-terminated; cut before a stop string) */
    size_t len, cap;
    size_t given;        /* bytes handed out by spc_text_piece */
    bool stopped;        /* a stop string appeared: nothing more is added */
} spc_text;

/* stops: up to SPC_MAX_STOPS strings (empty ones are ignored), borrowed: they must outlive t. */
sp_status spc_text_init(spc_text *t, const sp_model *model, const char *const *stops, int n_stops);
/* Adds a token's text (token < 0: the end — what is pending of an unfinished character comes
 * out as U+FFFD). Sets t->stopped when a stop string appears. */
sp_status spc_text_add(spc_text *t, sp_token token);
/* The next piece that is safe to show (final: all that is left); *len = 0 if none yet. */
const char *spc_text_piece(spc_text *t, bool final, size_t *len);
void spc_text_free(spc_text *t);

#endif
