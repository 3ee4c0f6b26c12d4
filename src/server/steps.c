/* The scheduler's steps: see steps.h. */
#include "steps.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

/* A pass handed in, until a step has run it. Lives on the stack of the thread that waits for it. */
typedef struct waiting {
    sp_pass *pass;
    sp_status status;
    bool done;
    struct waiting *next;
} waiting;

struct steps {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int budget;                  /* prompt tokens per step */
    int members;                 /* slots at work */
    int n_waiting;               /* passes handed in and not yet in a step */
    bool running;                /* a step is running */
    waiting *head, *tail;        /* oldest first */
    const sp_model *model[2];    /* main, draft */
    sp_context *scratch[2];      /* their working buffers for a step */
    int max_taken;               /* passes one step holds at most (one per slot) */
    waiting **taken, **joint;    /* the running step's passes; those of one model that join */
    sp_pass **joint_pass;
    steps_counts counts;
};

sp_status steps_new(int max_slots, int step_tokens, const sp_model *model, const sp_model *draft, steps **out) {
    *out = NULL;
    if (max_slots < 1 || step_tokens < 1 || !model) return sp_fail(SP_ERR_ARGUMENT, "steps: invalid arguments");
    steps *s = calloc(1, sizeof *s);
    if (!s) return sp_fail(SP_ERR_MEMORY, "steps: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->budget = step_tokens;
    s->max_taken = max_slots;
    s->taken = malloc((size_t)max_slots * sizeof *s->taken);
    s->joint = malloc((size_t)max_slots * sizeof *s->joint);
    s->joint_pass = malloc((size_t)max_slots * sizeof *s->joint_pass);
    if (!s->taken || !s->joint || !s->joint_pass) {
        steps_free(s);
        return sp_fail(SP_ERR_MEMORY, "steps: out of memory");
    }
    s->model[0] = model;
    s->model[1] = draft;
    /* a step holds a prompt piece (a context's n_batch: step_tokens) and every slot's small pass */
    sp_context_params p = sp_context_default_params();
    p.n_batch = p.n_ctx = step_tokens + max_slots * (SP_SPECDECODE_MAX_DRAFT + 1);
    for (int m = 0; m < 2; m++) {
        sp_status st = s->model[m] ? sp_context_new(s->model[m], &p, &s->scratch[m]) : SP_OK;
        if (st != SP_OK) {
            steps_free(s);
            return st;
        }
    }
    *out = s;
    return SP_OK;
}

void steps_free(steps *s) {
    if (!s) return;
    sp_context_free(s->scratch[0]);
    sp_context_free(s->scratch[1]);
    free(s->taken); free(s->joint); free(s->joint_pass);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

void steps_join(steps *s) {
    pthread_mutex_lock(&s->mu);
    s->members++;
    pthread_mutex_unlock(&s->mu);
}

void steps_leave(steps *s) {
    pthread_mutex_lock(&s->mu);
    s->members--;
    pthread_cond_broadcast(&s->cv); /* those waiting may now be everyone: a step can run */
    pthread_mutex_unlock(&s->mu);
}

int steps_members(steps *s) {
    pthread_mutex_lock(&s->mu);
    const int n = s->members;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void steps_get_counts(steps *s, steps_counts *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->counts;
    pthread_mutex_unlock(&s->mu);
}

static bool is_small(const sp_pass *p) { return sp_pass_n_tokens(p) <= SP_SPECDECODE_MAX_DRAFT + 1; }

/* Runs the step's passes of model m (m = 0: every pass not on the draft): those that join as one
 * forward pass, the others alone. If the joint pass cannot run (memory), each runs alone, so that
 * every pass gets its own answer. */
static void run_model(steps *s, int m, int n_taken) {
    int n = 0;
    for (int i = 0; i < n_taken; i++) {
        waiting *w = s->taken[i];
        const bool draft = s->model[1] && s->model[1] != s->model[0] && sp_pass_model(w->pass) == s->model[1];
        if (draft != (m == 1)) continue;
        if (sp_pass_joins(w->pass)) s->joint[n++] = w;
        else w->status = sp_passes_run(NULL, &w->pass, 1);
    }
    if (n == 0) return;
    for (int i = 0; i < n; i++) s->joint_pass[i] = s->joint[i]->pass;
    if (n > 1 && sp_passes_run(s->scratch[m], s->joint_pass, n) == SP_OK) return;
    for (int i = 0; i < n; i++) s->joint[i]->status = sp_passes_run(NULL, &s->joint_pass[i], 1);
}

/* One step (under the lock, which it lets go of while the passes run): the small passes and the
 * oldest prompt pieces within the budget, one forward pass per model. */
static void run_step(steps *s) {
    s->running = true;
    int n_taken = 0, big_tokens = 0;
    waiting *left = NULL, *last = NULL;
    for (waiting *w = s->head, *next; w; w = next) {
        next = w->next;
        w->next = NULL;
        const int n = sp_pass_n_tokens(w->pass);
        const bool small = is_small(w->pass);
        if (n_taken < s->max_taken && (small || big_tokens == 0 || big_tokens + n <= s->budget)) {
            if (!small) big_tokens += n;
            s->taken[n_taken++] = w;
        } else { /* the next step's */
            if (last) last->next = w;
            else left = w;
            last = w;
        }
    }
    s->head = left;
    s->tail = last;
    s->n_waiting -= n_taken;
    pthread_mutex_unlock(&s->mu);

    unsigned long stream_rows = 0, other = 0;
    for (int i = 0; i < n_taken; i++) {
        const int n = sp_pass_n_tokens(s->taken[i]->pass);
        if (n == 1) stream_rows++;
        else other += (unsigned long)n;
    }
    run_model(s, 0, n_taken);
    run_model(s, 1, n_taken);

    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n_taken; i++) s->taken[i]->done = true;
    s->counts.steps++;
    s->counts.stream_steps += stream_rows > 0;
    s->counts.stream_rows += stream_rows;
    s->counts.prompt_tokens += other;
    s->running = false;
    pthread_cond_broadcast(&s->cv);
}

sp_status steps_run(void *user, sp_pass *pass) {
    steps *s = user;
    waiting w = {pass, SP_OK, false, NULL};
    pthread_mutex_lock(&s->mu);
    if (s->tail) s->tail->next = &w;
    else s->head = &w;
    s->tail = &w;
    s->n_waiting++;
    while (!w.done) {
        /* every slot at work has handed in its pass (or is in the running step): this thread
         * runs the next step */
        if (!s->running && s->n_waiting >= s->members) {
            run_step(s);
            continue;
        }
        /* a slot that stays away (it should not: between two passes a slot only samples) must not
         * stop the others for long */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT && !w.done && !s->running) run_step(s);
    }
    pthread_mutex_unlock(&s->mu);
    return w.status;
}
