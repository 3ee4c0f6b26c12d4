/*
 * The scheduler's steps: the one loop that runs every forward pass of the slots' contexts.
 *
 * A slot's contexts hand each pass to steps_run (their runner: sp_context_set_runner) — a
 * stream's next token, a speculative decoding check, a piece of a prompt's draft or main prefill,
 * a look-ahead query — and wait. A step runs once every slot at work has handed in its next pass.
 * It takes every small pass (a stream's token, a check: at most SP_SPECDECODE_MAX_DRAFT + 1
 * tokens) and, oldest first, as many prompt pieces as --step-tokens allows (at least one), and
 * runs them as one forward pass per model (sp_passes_run); a pass that needs a forward pass of its
 * own (the look-ahead's scoring) runs alone within the step. So a long prompt is read a piece
 * per step while every stream gets a token per step, prompts being read at once take turns piece
 * by piece, and two forward passes never run at the same time (each has the cores to itself).
 * A stream's token is computed as if it were alone (sp_passes_run), whatever shares its step.
 *
 * The step runs on the thread of the slot whose pass completed the set (there is no extra thread:
 * with one slot at work its passes run at once, on its own thread).
 */
#ifndef SP_SERVER_STEPS_H
#define SP_SERVER_STEPS_H

#include "specprefill.h"

typedef struct steps steps;

/* For up to max_slots slots, a budget of step_tokens prompt tokens per step, the main model and
 * the draft (NULL if none): each gets a scratch context that holds a step's passes. */
sp_status steps_new(int max_slots, int step_tokens, const sp_model *model, const sp_model *draft, steps **out);
void steps_free(steps *s);

/* A slot starts handing in passes (steps wait for it from now on), and stops. */
void steps_join(steps *s);
void steps_leave(steps *s);
/* Slots at work now. */
int steps_members(steps *s);

/* The contexts' runner (user: the steps): waits until a step has run the pass; its status. */
sp_status steps_run(void *user, sp_pass *pass);

typedef struct {
    unsigned long steps;          /* steps run */
    unsigned long stream_steps;   /* of them, those holding one-token passes (streams' tokens) */
    unsigned long stream_rows;    /* the one-token passes in them (stream_rows / stream_steps: the mean batch) */
    unsigned long prompt_tokens;  /* tokens of the other passes (prompt pieces, checks) */
} steps_counts;
void steps_get_counts(steps *s, steps_counts *out);

#endif
