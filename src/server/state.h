/* The server's shared state and the internal interfaces between its parts (not installed):
 *   server.c     HTTP: routes, request bodies, the API key, streaming a job's bytes; start and stop
 *   scheduler.c  the queue and the slots: which job runs where, prefill and generation
 *   steps.c      the one loop of steps that runs every forward pass of the slots
 *   openai.c     OpenAI's response objects: completions, chunks, usage, errors, models
 *   metrics.c    the counters and histograms behind /metrics
 *   job.c        a job's life: references, its response bytes, cancellation
 *   request.c    OpenAI request bodies → a ready-made request (request.h)
 *   prompt_cache.c  conversations set aside in memory when their slot is needed */
#ifndef SP_SERVER_STATE_H
#define SP_SERVER_STATE_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "request.h"
#include "specprefill_server.h"
#include "steps.h"

/* ------------------------------------------------------------------ jobs (job.c) */

typedef struct job {
    sp_request req;
    spc_prompt prompt;            /* the text the model reads and its tokens */
    int max_tokens;
    bool spec;
    sp_specprefill_params spec_params;
    bool spec_decode;             /* the draft proposes, the main model checks */
    bool spec_reuse_kept;         /* a follow-up's speculative prefill keeps the main model's kept tokens (else the draft's cache only) */
    char id[40];
    long created;
    double t_arrival;
    int fd;                       /* the client's socket, to notice a disconnect */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *out;                    /* response bytes produced so far */
    size_t out_len, out_cap, out_sent;
    bool done, cancelled, oom;
    bool started, rejected;       /* a slot took it; the server stopped while it was queued (503) */
    int refs;                     /* connection + queue/slot */
} job;

/* A new job with one reference (the connection's); NULL if out of memory. */
job *sp_srv_job_new(void);
/* Drops a reference; the last one frees the job. */
void sp_srv_job_release(job *j);
/* Appends response bytes (under the job's lock) and wakes the connection thread. */
void sp_srv_job_emit(job *j, const char *s, size_t n);
bool sp_srv_job_cancelled(job *j);
/* Marks the job cancelled (the client left, or the server stops) and wakes its reader. */
void sp_srv_job_cancel(job *j);
/* Marks the response complete and wakes the connection thread. */
void sp_srv_job_finish(job *j);

/* What a finished job measured. */
typedef struct {
    int completion_tokens, kept;
    int cached, cached_kept, draft_cached; /* prompt tokens not read again: their state came from a cache */
    bool cache_restored;          /* from a conversation set aside in memory (else the slot's own) */
    long drafted, accepted;       /* speculative decoding: the draft's proposals, those the main model took */
    int decode_steps;             /* the main model's forward passes while generating */
    double ttft, total, prefill, decode;
} job_result;

/* ------------------------------------------------------------------ OpenAI objects (openai.c) */

/* The object's JSON (as one SSE event when sse) appended to the job's response. */
void sp_srv_emit_json(job *j, cJSON *o, bool sse);
/* id, object, created, model */
cJSON *sp_srv_base_object(const job *j, const char *object);
/* choices[0]: message or delta (chat), text (completions), finish_reason */
void sp_srv_add_choice(cJSON *o, const job *j, const char *text, const char *finish, bool delta, bool first);
/* usage, and the specprefill object (kept tokens, timings) */
void sp_srv_add_usage(cJSON *o, const job *j, const job_result *r);
/* One streamed chunk of text. */
void sp_srv_stream_text(job *j, const char *text, size_t n, bool first);
/* The response's end: the final chunk (finish reason, usage if asked) and [DONE], or the whole JSON. */
void sp_srv_finish_response(job *j, const char *text, const char *finish, const job_result *r, bool first_chunk);
/* Bodies of error responses (OpenAI's shape) and of /v1/models; malloc'ed, NULL if out of memory. */
char *sp_srv_error_body(int status, const char *type, const char *msg);
char *sp_srv_models_body(void);

/* ------------------------------------------------------------------ metrics (metrics.c) */

double sp_srv_now(void);
void sp_srv_count_status(int status);
/* Tokens just generated (the server-wide rate over the last seconds). */
void sp_srv_count_generated(int n);
/* A job that ended before a slot took it. */
void sp_srv_count_cancelled_queued(void);
/* A finished job: its status, times and tokens. */
void sp_srv_record_job(const job *j, const job_result *r, bool failed);
/* The Prometheus text of every metric; malloc'ed, NULL if out of memory. */
char *sp_srv_metrics_text(void);

/* ------------------------------------------------------------------ the scheduler (scheduler.c) */

/* Makes the slots' contexts and starts their threads. */
bool sp_srv_scheduler_start(void);
/* Queues a job; false when every slot is busy and --queue jobs already wait (or the server stops). */
bool sp_srv_scheduler_submit(job *j);
/* Waiting jobs and busy slots, for /metrics. */
void sp_srv_scheduler_load(int *queued, int *busy);
/* Shutdown, first step: no new jobs; the queued ones are rejected (their connections answer 503);
 * the running ones go on. Returns how many were rejected. */
int sp_srv_scheduler_drain(void);
/* Then: the running jobs are cut short; the slots are joined and freed. */
void sp_srv_scheduler_stop(void);

/* ------------------------------------------------------------------ the prompt cache (prompt_cache.c) */

/* A cache's start that counts: a request is routed to a slot for what it holds when they share
 * at least this many tokens (a shorter start — BOS, a common system prompt — is not worth another
 * conversation's place); a slot sets aside what it holds when a prompt would leave this many
 * behind; /metrics calls a request with this many cached tokens a hit. */
#define SP_SRV_CACHE_MIN 64
/* How many of a's first tokens are b's. */
int sp_srv_common_prefix(const sp_token *a, int na, const sp_token *b, int nb);
/* The budget in bytes of the conversations set aside (--cache-ram; 0: none are). */
void sp_srv_cache_init(size_t budget);
void sp_srv_cache_clear(void);
/* Sets aside a slot's caches (dctx may be NULL) as read from seq[0..n_seq); an entry whose text
 * starts this one goes; the least recently used go while the budget is exceeded. Nothing is kept
 * when it does not fit the budget or memory. */
void sp_srv_cache_put(const sp_token *seq, int n_seq, const sp_context *ctx, const sp_context *dctx);
/* The longest start an entry shares with prompt (0 if none). */
int sp_srv_cache_best(const sp_token *prompt, int n);
/* Moves the entry sharing the longest start with prompt — longer than better_than — into ctx and
 * dctx, and its text into *seq and *n_seq (the old *seq is freed). Returns the length shared, or 0
 * when no entry does better (ctx, dctx and *seq unchanged) or the entry could not be loaded
 * (then ctx and dctx are emptied and *n_seq is 0). */
int sp_srv_cache_take(const sp_token *prompt, int n, int better_than, sp_context *ctx, sp_context *dctx, sp_token **seq, int *n_seq);
void sp_srv_cache_counts(size_t *bytes, int *entries, unsigned long *saves, unsigned long *restores, unsigned long *evictions);

/* ------------------------------------------------------------------ the shared state (server.c) */

typedef struct {
    const sp_server_config *cfg;
    sp_model *model, *draft;
    bool can_spec_decode;         /* a draft of the main model's tokenizer is loaded */
    const char *model_id;
    char replica[128];            /* this server's name among replicas (--replica, default HOST:PORT) */
    steps *steps;                 /* every forward pass of the slots' contexts (steps.c) */
    volatile sig_atomic_t stop_signal;
    atomic_int open_requests;     /* requests whose response has not been sent to the end yet */
} sp_server_state;

extern sp_server_state sp_srv;

#endif
