/* A job's life: the connection and the slot each hold a reference; the slot appends response
 * bytes, the connection streams them out; either side may end it early. */
#include <stdlib.h>
#include <string.h>

#include "state.h"

job *sp_srv_job_new(void) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    return j;
}

void sp_srv_job_release(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    sp_request_free(&j->req);
    spc_prompt_free(&j->prompt);
    free(j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void sp_srv_job_emit(job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = j->out_cap ? j->out_cap : 1024;
        while (cap < j->out_len + n + 1) cap *= 2;
        char *p = realloc(j->out, cap);
        if (!p) j->oom = j->cancelled = true;
        else { j->out = p; j->out_cap = cap; }
    }
    if (!j->oom) {
        memcpy(j->out + j->out_len, s, n);
        j->out_len += n;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

bool sp_srv_job_cancelled(job *j) {
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

void sp_srv_job_cancel(job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void sp_srv_job_finish(job *j) {
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}
