/*
 * Decode steps of the server's slots, batched. Decoding one token reads every weight of the
 * model for a single row of work; N slots decoding one after another read them N times. Here each
 * generating slot submits its next token and waits; once every generating slot has submitted,
 * the last to arrive runs one sp_decode_sequences for all of them and hands each its logits.
 * A slot that prefills meanwhile is not a member and holds nobody up.
 */
#ifndef SP_SERVER_DECODE_BATCH_H
#define SP_SERVER_DECODE_BATCH_H

#include <stdbool.h>

#include "specprefill.h"

typedef struct decode_batch decode_batch;

/* For up to max_members slots of a model with n_vocab tokens. */
sp_status decode_batch_new(int max_members, int n_vocab, decode_batch **out);
void decode_batch_free(decode_batch *b);

/* A slot starts generating (its steps will come), and stops (no more steps from it). */
void decode_batch_join(decode_batch *b);
void decode_batch_leave(decode_batch *b);

/* A member's step (between its join and leave, one step at a time): token at pos appended to ctx,
 * next-token logits (n_vocab floats) into logits. Blocks until the step's batch has run. A failure of the batch falls back to decoding each
 * member alone, so one context's error (a full cache) stays its own. */
sp_status decode_batch_step(decode_batch *b, sp_context *ctx, sp_token token, int32_t pos, float *logits);

/* Turns between a long prefill and the streams. A slot that reads its prompt in pieces says so
 * (begin, then end when its prefill is over); while a piece is read no round runs, and between
 * two pieces it waits until the generating slots have taken one step (at most a second; at once
 * when none generates): a piece of prompt, a step of every stream, and so on — each alone on the
 * machine, instead of both at once fighting for its cores. */
void decode_batch_prefill(decode_batch *b, bool begin);
void decode_batch_let_round(decode_batch *b);

/* Rounds run so far and the rows (slot steps) they held: rows / rounds is the mean batch. */
void decode_batch_counts(decode_batch *b, unsigned long *rounds, unsigned long *rows);

#endif
