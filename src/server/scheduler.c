/* The scheduler: a bounded queue of jobs in front of N slots. Each slot owns a main context (and
 * a draft context with --draft/--self-spec) and a thread that carries its request: it takes a
 * job, prefills its prompt (spc_prefill: speculative or full), then generates — sampling, stop
 * strings, streaming. The slot's forward passes do not run on their own: each is handed to the
 * scheduler's steps (steps.c), one loop in which every step is one forward pass per model holding
 * every generating slot's next token and a piece of a prompt being read (--step-tokens). When a
 * slot is the only one at work and its request speculates, it takes steps of its own where the
 * draft proposes several tokens and the main model checks them in one pass (sp_specdecoder).
 *
 * A slot's contexts keep what the last request left: its prompt and answer. A new request goes to
 * the free slot whose text shares the longest start with its prompt (the least recently used
 * when none does), and only the rest is read — for a follow-up question on the same document,
 * the document is not read again (a SpecPrefill-aware reuse: sp_specprefill_cached). When a slot
 * is about to leave most of what it holds behind, that is set aside in memory (prompt_cache.c),
 * and comes back to whichever slot a later request sharing more of it lands on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

typedef struct {
    int index;
    sp_context *ctx, *dctx;
    sp_specdecoder *sd;           /* kept across requests: it remembers whether the draft pays */
    pthread_t thread;
    /* under Q.mu: */
    bool idle;                    /* no job, none assigned */
    job *assigned;                /* given to this slot by the scheduler, not taken yet */
    double last_used;
    /* the text the contexts were read from (prompt and answer); changed by the slot's thread
     * while it is not idle, read by the scheduler while it is */
    sp_token *seq;
    int n_seq, seq_cap;
} slot;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t queue_cv;
    job **queue;
    int q_head, q_len, q_cap;
    int busy;
    bool stopping, draining;
    slot *slots;
    int started;
} Q = {.mu = PTHREAD_MUTEX_INITIALIZER, .queue_cv = PTHREAD_COND_INITIALIZER};

/* Appends tokens to the slot's text; false if out of memory (the text is then forgotten). */
static bool seq_append(slot *sl, const sp_token *t, int n) {
    if (sl->n_seq + n > sl->seq_cap) {
        const int cap = (sl->n_seq + n) * 2;
        sp_token *p = realloc(sl->seq, (size_t)cap * sizeof *p);
        if (!p) { sl->n_seq = 0; return false; }
        sl->seq = p;
        sl->seq_cap = cap;
    }
    memcpy(sl->seq + sl->n_seq, t, (size_t)n * sizeof *t);
    sl->n_seq += n;
    return true;
}

/* Before the prefill: what of the prompt the slot can keep, from its own contexts or from a
 * conversation set aside; what it would leave behind is set aside first. Returns the tokens the
 * caller may vouch for (spc_prefill's reuse); r says where they came from. */
static int prepare_cache(slot *sl, job *j, job_result *r) {
    const sp_token *ids = j->prompt.ids;
    const int n = j->prompt.n;
    int own = j->req.cache_prompt ? sp_srv_common_prefix(sl->seq, sl->n_seq, ids, n) : 0;
    const int elsewhere = j->req.cache_prompt ? sp_srv_cache_best(ids, n) : 0;
    const int lost = sl->n_seq - (elsewhere > own ? 0 : own);
    if (lost >= SP_SRV_CACHE_MIN) sp_srv_cache_put(sl->seq, sl->n_seq, sl->ctx, sl->dctx);
    if (elsewhere > own) {
        const int k = sp_srv_cache_take(ids, n, own, sl->ctx, sl->dctx, &sl->seq, &sl->n_seq);
        if (k > 0) sl->seq_cap = sl->n_seq; /* the entry's text, allocated to its length */
        r->cache_restored = k > 0;
        own = k > 0 ? k : sp_srv_common_prefix(sl->seq, sl->n_seq, ids, n);
    }
    sl->n_seq = 0; /* from here on the contexts change: the text is the new prompt's (below) */
    return own;
}

static void run_job(slot *sl, job *j) {
    const sp_model_info *info = sp_model_get_info(sp_srv.model);
    job_result r = {0};
    float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
    spc_text text;
    sp_sampler *smp = NULL;
    const char *finish = "length", *note = "";
    bool failed = spc_text_init(&text, sp_srv.model, (const char *const *)j->req.stop, j->req.n_stop) != SP_OK || !logits ||
                  sp_sampler_new(&j->req.sampling, info->n_vocab, &smp) != SP_OK;
    double t_start = sp_srv_now(), t_first = t_start;
    bool member = false;
    if (!failed) {
        for (int i = 0; i < j->prompt.n; i++) sp_sampler_accept(smp, j->prompt.ids[i]);
        sp_specprefill_stats st;
        const int reuse = prepare_cache(sl, j, &r);
        /* from here every forward pass of the slot's contexts is a part of the scheduler's steps:
         * a piece of the prompt per step, beside the other slots' streams */
        steps_join(sp_srv.steps);
        member = true;
        /* speculative, "draft": the main model selects the whole prompt afresh, as a cold run does */
        const spc_reuse ru = {j->spec && !j->spec_reuse_kept ? 0 : reuse, true};
        failed = spc_prefill(sl->ctx, j->spec ? sl->dctx : NULL, &j->prompt, j->req.cache_prompt ? &ru : NULL, &j->spec_params, logits, NULL,
                             NULL, &st) != SP_OK;
        failed = failed || !seq_append(sl, j->prompt.ids, j->prompt.n);
        r.kept = st.n_kept;
        r.cached = st.n_reused;
        r.cached_kept = st.n_reused_kept;
        r.draft_cached = st.n_draft_reused;
        t_first = sp_srv_now();
    }
    /* speculative decoding: the draft (whose cache holds the prompt after a speculative prefill;
     * after a full one it keeps what its cache holds of the prompt and reads the rest on the
     * first step) proposes, the main model checks */
    sp_specdecoder *sd = NULL;
    if (!failed && j->spec_decode) {
        failed = (sl->sd ? sp_specdecoder_restart(sl->sd, j->prompt.ids, j->prompt.n, &j->req.spec_decode)
                         : sp_specdecoder_new(sl->ctx, sl->dctx, j->prompt.ids, j->prompt.n, &j->req.spec_decode, &sl->sd)) != SP_OK;
        sd = failed ? NULL : sl->sd;
    }
    bool first_chunk = true;
    size_t len;
    const char *piece;
    for (int n = 0; !failed && n < j->max_tokens;) {
        /* cut short: the client left (nobody reads the end), or the server stops past its
         * --shutdown-timeout (the answer ends as if max_tokens were reached) */
        if (sp_srv_job_cancelled(j)) { note = " (the client left)"; break; }
        if (Q.stopping) { note = " (cut by shutdown)"; break; }
        /* the next tokens. Alone, a speculating slot takes its own steps (proposals checked in one
         * pass); while other slots are at work, a step per token beside theirs serves the machine
         * better: their tokens and prompt pieces already fill the pass that speculation would fill */
        const bool speculate = sd && steps_members(sp_srv.steps) == 1;
        sp_token toks[SP_SPECDECODE_MAX_DRAFT + 1];
        int k = 1;
        if (sd) {
            const int most = speculate ? j->max_tokens - n : 1; /* with 1 the step only picks the token */
            if ((k = sp_specdecoder_step(sd, smp, logits, toks, most)) < 0) { failed = true; break; }
            if (most > 1) r.decode_steps++;
        } else {
            toks[0] = sp_sampler_sample(smp, logits);
            sp_sampler_accept(smp, toks[0]);
        }
        bool end = false;
        const int before = r.completion_tokens;
        for (int i = 0; i < k && !end; i++) {
            if (sp_token_is_eog(sp_srv.model, toks[i]) && !j->req.ignore_eos) { finish = "stop"; end = true; break; }
            n++;
            r.completion_tokens++;
            if (!seq_append(sl, &toks[i], 1)) { failed = true; break; }
            if (spc_text_add(&text, toks[i]) != SP_OK) { failed = true; break; }
            /* stream what can no longer become a stop string */
            if (j->req.stream && (piece = spc_text_piece(&text, false, &len), len)) {
                sp_srv_stream_text(j, piece, len, first_chunk);
                first_chunk = false;
            }
            if (text.stopped) { finish = "stop"; end = true; }
        }
        sp_srv_count_generated(r.completion_tokens - before);
        if (failed || end || n == j->max_tokens) break;
        if (speculate) continue; /* the step decoded what it accepted */
        r.decode_steps++;
        int32_t pos = j->prompt.n + n - 1, row = 0; /* a pass of one token: a step beside the others' */
        if (sp_decode(sl->ctx, &toks[0], &pos, 1, &row, 1, logits) != SP_OK) failed = true;
    }
    if (member) steps_leave(sp_srv.steps);
    sp_specdecoder_stats(sd, &r.drafted, &r.accepted);
    if (!failed && spc_text_add(&text, -1) != SP_OK) failed = true; /* an unfinished character */
    double t_end = sp_srv_now();
    r.ttft = t_first - j->t_arrival;
    r.total = t_end - j->t_arrival;
    r.prefill = t_first - t_start;
    r.decode = t_end - t_first;
    if (failed) { /* neither cache is trusted after an error */
        finish = "error";
        sp_context_reset(sl->ctx);
        if (sl->dctx) sp_context_reset(sl->dctx);
        sl->n_seq = 0;
    }
    if (j->req.stream && (piece = spc_text_piece(&text, true, &len), len)) {
        sp_srv_stream_text(j, piece, len, first_chunk);
        first_chunk = false;
    }
    /* counted before the answer goes out: a client that reads /metrics after its answer finds
     * its request there */
    sp_srv_record_job(j, &r, failed);
    sp_srv_finish_response(j, text.text, finish, &r, first_chunk);
    sp_srv_job_finish(j);
    fprintf(stderr, "%s %s %d prompt=%d cached=%d%s kept=%d gen=%d drafted=%ld accepted=%ld ttft=%.0fms total=%.0fms finish=%s%s slot=%d\n",
            j->req.chat ? "/v1/chat/completions" : "/v1/completions", j->req.stream ? "stream" : "json", failed ? 500 : 200,
            j->prompt.n, r.cached, r.cache_restored ? "(ram)" : "", r.kept, r.completion_tokens, r.drafted, r.accepted, r.ttft * 1e3, r.total * 1e3, finish, note, sl->index);
    spc_text_free(&text);
    free(logits);
    sp_sampler_free(smp);
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    pthread_mutex_lock(&Q.mu);
    for (;;) {
        while (!sl->assigned && Q.q_len == 0 && !Q.stopping) pthread_cond_wait(&Q.queue_cv, &Q.mu);
        job *j = sl->assigned;
        if (j) {
            sl->assigned = NULL;
        } else if (Q.q_len > 0) { /* the oldest waiting job (it found every slot busy) */
            j = Q.queue[Q.q_head];
            Q.q_head = (Q.q_head + 1) % Q.q_cap;
            Q.q_len--;
            sl->idle = false;
            Q.busy++;
        } else {
            break; /* stopping, nothing left */
        }
        pthread_mutex_unlock(&Q.mu);
        pthread_mutex_lock(&j->mu);
        const bool run = !j->cancelled;
        j->started = run;
        pthread_cond_broadcast(&j->cv); /* its connection thread sends the status line now */
        pthread_mutex_unlock(&j->mu);
        if (run) {
            run_job(sl, j);
        } else {
            sp_srv_job_finish(j);
            sp_srv_count_cancelled_queued();
            fprintf(stderr, "%s cancelled while queued (the client left)\n", j->id);
        }
        sp_srv_job_release(j);
        pthread_mutex_lock(&Q.mu);
        Q.busy--;
        sl->idle = true;
        sl->last_used = sp_srv_now();
    }
    pthread_mutex_unlock(&Q.mu);
    return NULL;
}

/* The free slot for a prompt (under Q.mu): the one whose text shares the longest start with it,
 * else the one used least recently (what it holds is the least likely to be asked for); NULL if
 * every slot is busy. */
static slot *choose_slot(const job *j) {
    slot *best = NULL;
    int best_len = -1;
    for (int i = 0; i < sp_srv.cfg->parallel; i++) {
        slot *sl = &Q.slots[i];
        if (!sl->idle) continue;
        int k = j->req.cache_prompt ? sp_srv_common_prefix(sl->seq, sl->n_seq, j->prompt.ids, j->prompt.n) : 0;
        if (k < SP_SRV_CACHE_MIN) k = 0;
        if (k > best_len || (k == best_len && sl->last_used < best->last_used)) best = sl, best_len = k;
    }
    return best;
}

bool sp_srv_scheduler_start(void) {
    const sp_server_config *cfg = sp_srv.cfg;
    Q.q_head = Q.q_len = Q.busy = Q.started = 0;
    Q.stopping = Q.draining = false;
    Q.q_cap = cfg->queue > 0 ? cfg->queue : 1;
    sp_srv_cache_init((size_t)cfg->cache_ram_mib << 20);
    Q.queue = calloc((size_t)Q.q_cap, sizeof *Q.queue);
    Q.slots = calloc((size_t)cfg->parallel, sizeof *Q.slots);
    if (!Q.queue || !Q.slots) { fprintf(stderr, "error: out of memory\n"); return false; }
    for (int i = 0; i < cfg->parallel; i++) {
        sp_context_params p = sp_context_default_params();
        p.n_ctx = cfg->ctx_size;
        p.rope_scaling = cfg->rope_scaling;
        p.rope_scale = cfg->rope_scale;
        p.yarn_orig_ctx = cfg->yarn_orig_ctx;
        p.n_batch = cfg->step_tokens; /* a prefill reads its prompt in pieces of this many tokens */
        Q.slots[i].index = i;
        Q.slots[i].idle = true;
        if (sp_context_new(sp_srv.model, &p, &Q.slots[i].ctx) != SP_OK) { fprintf(stderr, "error: context: %s\n", sp_last_error()); return false; }
        if (sp_srv.draft || cfg->self_spec) {
            /* the largest lookahead a request may ask for; with another tokenizer, the bytes of a
             * text of ctx_size tokens at up to 4 bytes each (a longer one is refused by its request) */
            sp_specprefill_params most = cfg->spec;
            most.lookahead = 256;
            const bool other_vocab = sp_srv.draft && cfg->spec.any_vocab && sp_vocab_check_same(sp_srv.model, sp_srv.draft) != SP_OK;
            p.n_ctx = spc_draft_ctx_size(other_vocab ? 4 * cfg->ctx_size : cfg->ctx_size, &most, other_vocab);
            if (sp_context_new(sp_srv.draft ? sp_srv.draft : sp_srv.model, &p, &Q.slots[i].dctx) != SP_OK) {
                fprintf(stderr, "error: draft context: %s\n", sp_last_error());
                return false;
            }
        }
        /* every forward pass of the slot is one of the scheduler's steps (steps.c) */
        sp_context_set_runner(Q.slots[i].ctx, steps_run, sp_srv.steps);
        if (Q.slots[i].dctx) sp_context_set_runner(Q.slots[i].dctx, steps_run, sp_srv.steps);
    }
    for (; Q.started < cfg->parallel; Q.started++)
        if (pthread_create(&Q.slots[Q.started].thread, NULL, slot_main, &Q.slots[Q.started]) != 0) {
            fprintf(stderr, "error: cannot start slot threads\n");
            return false;
        }
    return true;
}

bool sp_srv_scheduler_submit(job *j) {
    pthread_mutex_lock(&Q.mu);
    /* a free slot takes it at once (the best for its prompt); else it waits among the --queue */
    slot *sl = Q.stopping || Q.draining ? NULL : choose_slot(j);
    const bool full = !sl && (Q.q_len >= sp_srv.cfg->queue || Q.stopping || Q.draining);
    if (!full) {
        j->refs++; /* the queue's or the slot's */
        if (sl) {
            sl->assigned = j;
            sl->idle = false;
            Q.busy++;
        } else {
            Q.queue[(Q.q_head + Q.q_len) % Q.q_cap] = j;
            Q.q_len++;
        }
        pthread_cond_broadcast(&Q.queue_cv); /* the slot it was given, or any that frees up */
    }
    pthread_mutex_unlock(&Q.mu);
    return !full;
}

void sp_srv_scheduler_load(int *queued, int *busy) {
    pthread_mutex_lock(&Q.mu);
    *queued = Q.q_len;
    *busy = Q.busy;
    pthread_mutex_unlock(&Q.mu);
}

int sp_srv_scheduler_drain(void) {
    pthread_mutex_lock(&Q.mu);
    Q.draining = true;
    const int n = Q.q_len;
    for (int i = 0; i < n; i++) {
        job *j = Q.queue[(Q.q_head + i) % Q.q_cap];
        pthread_mutex_lock(&j->mu);
        j->rejected = true;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        sp_srv_count_cancelled_queued();
        sp_srv_job_release(j); /* the queue's reference */
    }
    Q.q_len = 0;
    pthread_mutex_unlock(&Q.mu);
    return n;
}

void sp_srv_scheduler_stop(void) {
    pthread_mutex_lock(&Q.mu);
    Q.stopping = true;
    for (int i = 0; i < Q.q_len; i++) sp_srv_job_cancel(Q.queue[(Q.q_head + i) % Q.q_cap]);
    pthread_cond_broadcast(&Q.queue_cv);
    pthread_mutex_unlock(&Q.mu);
    for (int i = 0; i < Q.started; i++) pthread_join(Q.slots[i].thread, NULL);
    for (int i = 0; Q.slots && i < sp_srv.cfg->parallel; i++) {
        sp_specdecoder_free(Q.slots[i].sd);
        sp_context_free(Q.slots[i].ctx);
        sp_context_free(Q.slots[i].dctx);
        free(Q.slots[i].seq);
    }
    sp_srv_cache_clear();
    free(Q.slots);
    free(Q.queue);
    Q.slots = NULL;
    Q.queue = NULL;
    Q.started = 0;
}
