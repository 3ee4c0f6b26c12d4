/*
 * `specprefill eval`: does the answer survive when most of the prompt is dropped? Runs every
 * document of one or more JSONL task files ({"prompt", "answer"}) through full prefill,
 * speculative prefill (draft, self-speculation, adaptive), the oracle (the main model's own
 * attention over the whole prompt: the upper bound of attention-based selection) and model-free
 * baselines (random chunks, recency, uniform stride, first+last) at the same keep rates, chunk
 * size and always-keep rules, then reports accuracy and TTFT as a markdown table (and per task),
 * JSON and SVG plots.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "options.h"

#define MAX_KEEPS 12
#define MAX_TASKS 32
#define MAX_DOCS 100000

enum { M_FULL, M_SPEC, M_SELF, M_ORACLE, M_ADAPTIVE, M_RANDOM, M_RECENCY, M_STRIDE, M_FIRSTLAST, M_COUNT };
static const char *const method_names[M_COUNT] = {"full", "spec", "self", "oracle", "adaptive", "random", "recency", "stride", "firstlast"};
static const char *const method_labels[M_COUNT] = {"full prefill", "SpecPrefill (draft)", "self-speculation", "oracle (main's attention)",
                                                   "adaptive (keep-mass)", "random chunks", "recency (keep last)", "uniform stride",
                                                   "first + last"};
/* accuracy: exact match of the first line, or RULER's string_match_all (the share of the
 * document's references found anywhere in the answer) */
enum { SCORE_EXACT, SCORE_CONTAINS };

typedef struct {
    int n, em, first_token;
    double acc, contains, ttft, kept_share, answers_kept;
} cell;

#define MAX_REFS 64

/* group: the line's optional "family" (or "task") string, for a per-group table; refs: the
 * "answers" array (or the answer alone); max_tokens: the line's own answer length, 0 = the
 * option's; score: each method's accuracy on this document at the checked keep rate */
typedef struct {
    char *prompt, *answer, *group, *refs[MAX_REFS];
    int n_refs, max_tokens;
    float score[M_COUNT];
} doc;

static void doc_free(doc *d) {
    free(d->prompt); free(d->answer); free(d->group);
    for (int r = 0; r < d->n_refs; r++) free(d->refs[r]);
}

/* The documents of the task files in order, after the first `skip`, at most `limit` of them. */
static doc *load_tasks(const char *const *files, int n_files, int skip, int limit, int *n_docs) {
    doc *d = NULL;
    int n = 0, cap = 0, seen = 0;
    for (int f = 0; f < n_files && n < limit; f++) {
        FILE *fp = fopen(files[f], "r");
        if (!fp) { fprintf(stderr, "error: cannot open task file %s\n", files[f]); free(d); return NULL; }
        char *line = NULL;
        size_t lcap = 0;
        int lineno = 0;
        while (getline(&line, &lcap, fp) > 0 && n < limit) {
            lineno++;
            if (line[0] == '\n' || line[0] == 0) continue;
            cJSON *j = cJSON_Parse(line);
            const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "prompt"));
            const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "answer"));
            const cJSON *refs = cJSON_GetObjectItemCaseSensitive(j, "answers"), *mt = cJSON_GetObjectItemCaseSensitive(j, "max_tokens");
            const char *why = !p || !a ? "each line needs string \"prompt\" and \"answer\"" : NULL;
            if (!why && refs && (!cJSON_IsArray(refs) || cJSON_GetArraySize(refs) < 1 || cJSON_GetArraySize(refs) > MAX_REFS))
                why = "\"answers\" must be an array of 1 to 64 strings";
            for (const cJSON *r = refs ? refs->child : NULL; r && !why; r = r->next)
                if (!cJSON_GetStringValue(r) || !*r->valuestring) why = "\"answers\" must be an array of 1 to 64 strings";
            if (!why && mt && (!cJSON_IsNumber(mt) || mt->valuedouble < 1 || mt->valuedouble > 4096 || mt->valuedouble != (int)mt->valuedouble))
                why = "\"max_tokens\" must be an integer from 1 to 4096";
            if (why) {
                fprintf(stderr, "error: %s:%d: %s\n", files[f], lineno, why);
                cJSON_Delete(j);
                fclose(fp);
                free(line);
                for (int i = 0; i < n; i++) doc_free(&d[i]);
                free(d);
                return NULL;
            }
            if (seen++ < skip) {
                cJSON_Delete(j);
                continue;
            }
            if (n == cap) d = realloc(d, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *d);
            const char *g = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "family"));
            if (!g) g = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "task"));
            d[n] = (doc){.prompt = strdup(p), .answer = strdup(a), .group = g ? strdup(g) : NULL, .max_tokens = mt ? mt->valueint : 0};
            if (refs)
                for (const cJSON *r = refs->child; r; r = r->next) d[n].refs[d[n].n_refs++] = strdup(r->valuestring);
            else
                d[n].refs[d[n].n_refs++] = strdup(a);
            n++;
            cJSON_Delete(j);
        }
        free(line);
        fclose(fp);
    }
    if (n == 0) fprintf(stderr, "error: the task files hold no documents%s\n", skip ? " after the --skip" : "");
    *n_docs = n;
    return d;
}

static bool all_found(const char *text, const doc *d) {
    for (int r = 0; r < d->n_refs; r++) if (!strstr(text, d->refs[r])) return false;
    return true;
}

/* Greedy answer after a prefill whose next-token logits are in `logits`; stops at an
 * end-of-generation token, and at the end of the first line (exact match: only it is scored) or,
 * scoring by contains, at the end of the line where the last reference appeared (nothing after
 * can change the score; the exact-match column still sees a whole line). Returns the text
 * (malloc) and the first non-blank token in *first. */
static char *answer(sp_context *ctx, const sp_model *m, int pos, float *logits, int max_tokens, const doc *d, int score_mode, sp_token *first) {
    const int V = sp_model_get_info(m)->n_vocab;
    size_t cap = 256, len = 0;
    char *out = malloc(cap), piece[256];
    *first = -1;
    out[0] = 0;
    for (int i = 0; i < max_tokens; i++) {
        sp_token t = 0;
        for (int k = 1; k < V; k++) if (logits[k] > logits[t]) t = k;
        if (sp_token_is_eog(m, t)) break;
        int k = sp_token_to_bytes(m, t, false, piece, sizeof piece);
        if (k < 0) k = 0;
        bool blank = true;
        for (int c = 0; c < k; c++) blank &= piece[c] == ' ' || piece[c] == '\t';
        if (*first < 0 && !blank) *first = t;
        if ((score_mode == SCORE_EXACT || all_found(out, d)) && memchr(piece, '\n', (size_t)k) && len > 0) break;
        if (len + (size_t)k + 1 > cap) out = realloc(out, cap = 2 * (len + (size_t)k + 1));
        memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
        out[len] = 0;
        int32_t p = pos + i, row = 0;
        if (sp_decode(ctx, &t, &p, 1, &row, 1, logits) != SP_OK) break;
    }
    return out;
}

/* The share of the document's answers that the kept tokens still spell out (gaps where tokens
 * were dropped break a match): where a selection loses an answer before the model reads it. */
static double answers_kept(const sp_model *m, const sp_token *p, int n, const uint8_t *kept, const doc *d) {
    size_t cap = 4096, len = 0;
    char *text = malloc(cap), piece[256];
    if (!text) return 0;
    for (int i = 0; i < n; i++) {
        int k = kept[i] ? sp_token_to_bytes(m, p[i], false, piece, sizeof piece) : 1;
        if (k < 0) k = 0;
        if (!kept[i]) piece[0] = '\n'; /* a gap: no answer runs across it (answers are one line) */
        if (len + (size_t)k + 1 > cap) {
            char *t = realloc(text, cap = 2 * (len + (size_t)k + 1));
            if (!t) { free(text); return 0; }
            text = t;
        }
        memcpy(text + len, piece, (size_t)k);
        len += (size_t)k;
    }
    text[len] = 0;
    int found = 0;
    for (int r = 0; r < d->n_refs; r++) found += strstr(text, d->refs[r]) != NULL;
    free(text);
    return (double)found / d->n_refs;
}

/* Scores one answer into c; returns the document's accuracy under score_mode. */
static double score_answer(cell *c, const char *got, const doc *d, int score_mode, sp_token first, sp_token want_first) {
    /* exact match on the trimmed first line */
    const char *s = got;
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    size_t n = strcspn(s, "\n");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '.' || s[n - 1] == '\r')) n--;
    const bool em = n == strlen(d->answer) && strncmp(s, d->answer, n) == 0;
    int found = 0;
    for (int r = 0; r < d->n_refs; r++) found += strstr(got, d->refs[r]) != NULL;
    const double contains = (double)found / d->n_refs, acc = score_mode == SCORE_EXACT ? em : contains;
    c->n++;
    c->em += em;
    c->contains += contains;
    c->acc += acc;
    c->first_token += first >= 0 && first == want_first;
    return acc;
}

/* Importance patterns that make sp_select_chunks pick what a baseline would. */
static void baseline_importance(int method, int n, int chunk, double keep, unsigned seed, float *imp) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    const int n_chunks = (n + chunk - 1) / chunk;
    for (int j = 0; j < n; j++) {
        const int c = j / chunk;
        switch (method) {
        case M_RANDOM:
            if (j % chunk == 0) { s = s * 6364136223846793005ull + 1442695040888963407ull; }
            imp[j] = (float)((s >> 40) / 16777216.0);
            break;
        case M_RECENCY: imp[j] = (float)c; break;
        case M_STRIDE: imp[j] = floor(c * keep) != floor((c + 1) * keep) ? 1.0f : 0.0f; break;
        default: imp[j] = (float)fabs(c - (n_chunks - 1) / 2.0); break; /* first + last */
        }
    }
}

static void svg_accuracy(const char *path, const cell (*r)[MAX_KEEPS], const double *keeps, int n_keeps, const bool *on, const char *metric) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    const int W = 640, H = 400, L = 60, R = 180, T = 30, B = 50;
    static const char *const colors[M_COUNT] = {"#000", "#d9480f", "#1c7ed6", "#5f3dc4", "#f59f00", "#868e96", "#74b816", "#ae3ec9", "#0ca678"};
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n", W, H);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/><text x='%d' y='18' font-size='14'>%s vs keep rate</text>\n", L, metric);
    const double xmax = keeps[n_keeps - 1] > 0 ? keeps[n_keeps - 1] : 1;
#define X(v) (L + (v) / xmax * (W - L - R))
#define Y(v) (H - B - (v) * (H - T - B))
    for (int g = 0; g <= 10; g += 2) {
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#eee'/><text x='%d' y='%.1f' text-anchor='end'>%d%%</text>\n", L,
                W - R, Y(g / 10.0), Y(g / 10.0), L - 6, Y(g / 10.0) + 4, g * 10);
    }
    for (int k = 0; k < n_keeps; k++)
        fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%g</text>\n", X(keeps[k]), H - B + 18, keeps[k]);
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>keep rate</text>\n", (L + W - R) / 2, H - 10);
    int legend = 0;
    for (int m = 0; m < M_COUNT; m++) {
        if (!on[m] || r[m][0].n == 0) continue;
        if (m == M_FULL || m == M_ADAPTIVE) {
            const double acc = r[m][0].acc / r[m][0].n;
            fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='%s'/>\n", L, W - R, Y(acc), Y(acc),
                    colors[m], m == M_FULL ? "6,4" : "2,3");
        } else {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[m]);
            for (int k = 0; k < n_keeps; k++) fprintf(f, "%.1f,%.1f ", X(keeps[k]), Y(r[m][k].acc / (r[m][k].n ? r[m][k].n : 1)));
            fprintf(f, "'/>\n");
        }
        fprintf(f, "<text x='%d' y='%d' fill='%s'>%s</text>\n", W - R + 10, T + 20 + 18 * legend++, colors[m], method_labels[m]);
    }
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    fclose(f);
}

typedef struct { int n_tokens; double full, spec; } ttft_point;

static int by_len(const void *a, const void *b) { return ((const ttft_point *)a)->n_tokens - ((const ttft_point *)b)->n_tokens; }

static void svg_ttft(const char *path, ttft_point *p, int n, double keep) {
    FILE *f = fopen(path, "w");
    if (!f || n == 0) { if (f) fclose(f); return; }
    qsort(p, (size_t)n, sizeof *p, by_len);
    double ymax = 0;
    for (int i = 0; i < n; i++) ymax = fmax(ymax, fmax(p[i].full, p[i].spec));
    const int W = 640, H = 400, L = 60, R = 160, T = 30, B = 50;
    const double xmax = p[n - 1].n_tokens;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n", W, H);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/><text x='%d' y='18' font-size='14'>Time to first token vs prompt length</text>\n", L);
#define X(v) (L + (v) / xmax * (W - L - R))
#define Y(v) (H - B - (v) / ymax * (H - T - B))
    for (int g = 0; g <= 4; g++)
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#eee'/><text x='%d' y='%.1f' text-anchor='end'>%.0f ms</text>\n", L, W - R,
                Y(ymax * g / 4), Y(ymax * g / 4), L - 6, Y(ymax * g / 4) + 4, ymax * g / 4 * 1e3);
    for (int g = 0; g <= 4; g++)
        fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%.0f</text>\n", X(xmax * g / 4), H - B + 18, xmax * g / 4);
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>prompt tokens</text>\n", (L + W - R) / 2, H - 10);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='2.5' fill='#000'/>", X(p[i].n_tokens), Y(p[i].full));
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='2.5' fill='#d9480f'/>\n", X(p[i].n_tokens), Y(p[i].spec));
    }
    fprintf(f, "<text x='%d' y='%d'>full prefill</text><text x='%d' y='%d' fill='#d9480f'>SpecPrefill keep %g</text>\n</svg>\n", W - R + 10,
            T + 20, W - R + 10, T + 38, keep);
#undef X
#undef Y
    fclose(f);
}

/* The selection contract, checked on every document a model-scored method runs on (the gate's
 * exact bound on the kept share): whole chunks, exactly ceil(n_chunks × keep) of them (at least
 * the last chunk when it is forced, which counts in that budget); outside them only the tokens
 * kept on top — BOS and control tokens (keep_special) and the last token — and those always. */
static bool selection_holds(const sp_model *m, const sp_token *p, int n, const uint8_t *kept, const sp_specprefill_params *q,
                            int doc, const char *method) {
    const int chunk = q->chunk, n_chunks = (n + chunk - 1) / chunk;
    int want = (int)ceil(n_chunks * (double)q->keep_rate - 1e-6); /* the float 0.1f is 0.1000000015 */
    if (want > n_chunks) want = n_chunks;
    if (q->keep_last_chunk && want < 1) want = 1;
    int whole = 0, whole_forced_only = 0;
    const char *why = NULL;
    for (int c = 0; c < n_chunks && !why; c++) {
        const int lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        int n_kept = 0, n_normal = 0;
        for (int j = lo; j < hi; j++) {
            const int ty = sp_token_get_type(m, p[j]);
            const bool on_top = j == n - 1 || (q->keep_special && (p[j] == sp_token_bos(m) || ty == SP_TOKEN_CONTROL || ty == SP_TOKEN_USER_DEFINED));
            n_kept += kept[j] != 0;
            n_normal += !on_top;
            if (on_top && !kept[j]) why = "a token kept on top (BOS, control, the last) was dropped";
        }
        if (n_kept == hi - lo) {
            if (n_normal) whole++;
            else whole_forced_only++;
        } else if (n_kept > hi - lo - n_normal) {
            why = "a chunk was kept in part";
        } else if (c == n_chunks - 1 && q->keep_last_chunk) {
            why = "the last chunk was not kept";
        }
    }
    if (!why && !(whole <= want && whole >= want - whole_forced_only)) why = "not ceil(n_chunks × keep) chunks";
    if (why) fprintf(stderr, "check failed: document %d, %s at keep %.2f: %s (%d chunks of %d kept, %d expected)\n", doc, method,
                     q->keep_rate, why, whole, n_chunks, want);
    return !why;
}

/* One document under evaluation: what every method's prefill and answer need. */
typedef struct {
    sp_context *ctx;
    const sp_model *m;
    const doc *doc;
    const sp_token *p;
    int n, index, max_tokens, score_mode;
    sp_token want_first;
    float *logits;
    uint8_t *kept;
} doc_run;

/* After a prefill whose next-token logits are in r->logits and whose kept tokens are marked in
 * r->kept: counts the TTFT, the kept share and the answers kept into c, answers, and returns the
 * document's accuracy. */
static double answer_into(const doc_run *r, cell *c, double ttft, int n_kept) {
    c->ttft += ttft;
    c->kept_share += (double)n_kept / r->n;
    c->answers_kept += answers_kept(r->m, r->p, r->n, r->kept, r->doc);
    sp_token first;
    char *got = answer(r->ctx, r->m, r->n, r->logits, r->max_tokens, r->doc, r->score_mode, &first);
    const double a = score_answer(c, got, r->doc, r->score_mode, first, r->want_first);
    free(got);
    return a;
}

/* The methods that select outside spc_prefill (the oracle, adaptive, the baselines): selects by
 * the importance, prefills the kept tokens, answers. t_score, the time the importance took, counts
 * in the TTFT. checked: the method's name where the selection contract applies (NULL: adaptive's
 * mass and the baselines pick by other rules). Returns the accuracy, or -1 after printing an error. */
static double select_and_answer(const doc_run *r, const float *imp, const sp_specprefill_params *q, double t_score, cell *c,
                                const char *checked, int *bad_selection) {
    int n_kept = 0;
    const double t0 = now_seconds();
    if (sp_specprefill_select(r->m, r->p, r->n, imp, q, r->kept, &n_kept) != SP_OK) return fail_status("selection"), -1;
    if (checked && !selection_holds(r->m, r->p, r->n, r->kept, q, r->index, checked)) (*bad_selection)++;
    sp_context_reset(r->ctx);
    sp_context_fit_rope(r->ctx, r->n);
    if (sp_prefill_kept(r->ctx, r->p, r->n, r->kept, r->logits) != SP_OK) return fail_status("sparse prefill"), -1;
    return answer_into(r, c, t_score + now_seconds() - t0, n_kept);
}

/* What a report shows: every method's sums at every keep rate and each group's at the checked
 * rate, filled by running the documents or by merging the JSON of runs over parts of a task set
 * (an evaluation too long for one sitting or one machine, split with --skip and --n). Every figure
 * is a mean over documents, so a merge of the parts is the whole's. */
typedef struct {
    char *name;
    int n;
    double sum[M_COUNT];
} group_sum;

typedef struct {
    char *model, *draft;
    bool on[M_COUNT];
    double keeps[MAX_KEEPS], mass, sum_len;
    int n_keeps, check_k, score_mode, chunk, lookahead, pool, n_docs, min_len, max_len, n_groups;
    int skip, n_parts, parts[MAX_TASKS][2]; /* the documents run: the task files' [first, end) of each part */
    cell res[M_COUNT][MAX_KEEPS];
    group_sum *groups;
} report;

static group_sum *group_find(report *r, const char *name) {
    for (int g = 0; g < r->n_groups; g++) if (!strcmp(r->groups[g].name, name)) return &r->groups[g];
    group_sum *grown = realloc(r->groups, (size_t)(r->n_groups + 1) * sizeof *grown);
    if (!grown) return NULL;
    r->groups = grown;
    r->groups[r->n_groups] = (group_sum){.name = strdup(name)};
    return &r->groups[r->n_groups++];
}

static void report_free(report *r) {
    if (!r) return;
    for (int g = 0; g < r->n_groups; g++) free(r->groups[g].name);
    free(r->groups); free(r->model); free(r->draft); free(r);
}

static int n_cells(int method, int n_keeps) { return method == M_FULL || method == M_ADAPTIVE ? 1 : n_keeps; }

static const char *metric_name(int score_mode) { return score_mode == SCORE_EXACT ? "exact match" : "contains"; }

/* Prints the markdown tables; with a prefix, writes PREFIX.json (what --merge reads back),
 * PREFIX-accuracy.svg and, given the documents' TTFT points, PREFIX-ttft.svg. */
static void report_write(const report *r, const char *prefix, ttft_point *tp, int n_tp) {
    const char *metric = metric_name(r->score_mode);
    printf("%d documents of %d to %d tokens (mean %.0f); chunk %d, lookahead %d, pool %d; accuracy: %s\n\n", r->n_docs, r->min_len, r->max_len,
           r->n_docs ? r->sum_len / r->n_docs : 0.0, r->chunk, r->lookahead, r->pool, metric);
    printf("| method | keep | kept tokens | answers kept | exact match | contains | first token | mean TTFT ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    cJSON *js = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(js, "results");
    cJSON_AddNumberToObject(js, "documents", r->n_docs);
    cJSON_AddNumberToObject(js, "skip", r->skip);
    cJSON *tokens = cJSON_AddObjectToObject(js, "tokens");
    cJSON_AddNumberToObject(tokens, "min", r->min_len);
    cJSON_AddNumberToObject(tokens, "max", r->max_len);
    cJSON_AddNumberToObject(tokens, "mean", r->n_docs ? r->sum_len / r->n_docs : 0.0);
    cJSON_AddNumberToObject(js, "chunk", r->chunk);
    cJSON_AddNumberToObject(js, "lookahead", r->lookahead);
    cJSON_AddNumberToObject(js, "pool", r->pool);
    cJSON_AddNumberToObject(js, "check_keep", r->keeps[r->check_k]);
    if (r->on[M_ADAPTIVE]) cJSON_AddNumberToObject(js, "keep_mass", r->mass);
    cJSON_AddStringToObject(js, "accuracy", metric);
    cJSON_AddStringToObject(js, "model", r->model);
    if (r->draft) cJSON_AddStringToObject(js, "draft", r->draft);
    for (int method = 0; method < M_COUNT; method++) {
        if (!r->on[method]) continue;
        for (int k = 0; k < n_cells(method, r->n_keeps); k++) {
            const cell *c = &r->res[method][k];
            if (c->n == 0) continue;
            char keep[32];
            if (method == M_FULL) snprintf(keep, sizeof keep, "1.0");
            else if (method == M_ADAPTIVE) snprintf(keep, sizeof keep, "mass %.2f", r->mass);
            else snprintf(keep, sizeof keep, "%.2f", r->keeps[k]);
            printf("| %s | %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f |\n", method_labels[method], keep, 100 * c->kept_share / c->n,
                   100 * c->answers_kept / c->n, 100.0 * c->em / c->n, 100.0 * c->contains / c->n, 100.0 * c->first_token / c->n, 1e3 * c->ttft / c->n);
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "method", method_names[method]);
            cJSON_AddNumberToObject(row, "keep", method == M_FULL ? 1.0 : method == M_ADAPTIVE ? -1 : r->keeps[k]);
            cJSON_AddNumberToObject(row, "kept_share", c->kept_share / c->n);
            cJSON_AddNumberToObject(row, "accuracy", c->acc / c->n);
            cJSON_AddNumberToObject(row, "answers_kept", c->answers_kept / c->n);
            cJSON_AddNumberToObject(row, "exact_match", (double)c->em / c->n);
            cJSON_AddNumberToObject(row, "contains", (double)c->contains / c->n);
            cJSON_AddNumberToObject(row, "first_token", (double)c->first_token / c->n);
            cJSON_AddNumberToObject(row, "ttft_ms", 1e3 * c->ttft / c->n);
            cJSON_AddItemToArray(rows, row);
        }
    }
    /* accuracy per group of documents (the task files' "task" or "family"), every method at the
     * checked keep rate */
    if (r->n_groups) {
        printf("\n%s per group (keep %.2f where a method has a keep rate)\n\n| group | documents |", metric, r->keeps[r->check_k]);
        for (int method = 0; method < M_COUNT; method++) if (r->on[method]) printf(" %s |", method_labels[method]);
        printf("\n|---|---:|");
        for (int method = 0; method < M_COUNT; method++) if (r->on[method]) printf("---:|");
        printf("\n");
        cJSON *groups = cJSON_AddArrayToObject(js, "by_group");
        for (int g = 0; g < r->n_groups; g++) {
            const group_sum *gs = &r->groups[g];
            printf("| %s | %d |", gs->name, gs->n);
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "group", gs->name);
            cJSON_AddNumberToObject(row, "documents", gs->n);
            cJSON_AddNumberToObject(row, "keep", r->keeps[r->check_k]);
            for (int method = 0; method < M_COUNT; method++) {
                if (!r->on[method]) continue;
                printf(" %.1f%% |", 100 * gs->sum[method] / gs->n);
                cJSON_AddNumberToObject(row, method_names[method], gs->sum[method] / gs->n);
            }
            printf("\n");
            cJSON_AddItemToArray(groups, row);
        }
    }
    if (prefix) {
        char path[1024];
        snprintf(path, sizeof path, "%s.json", prefix);
        char *s = cJSON_Print(js);
        FILE *f = fopen(path, "w");
        if (f && s) { fputs(s, f); fputc('\n', f); }
        if (f) fclose(f);
        free(s);
        snprintf(path, sizeof path, "%s-accuracy.svg", prefix);
        svg_accuracy(path, r->res, r->keeps, r->n_keeps, r->on, r->score_mode == SCORE_EXACT ? "Exact match" : "Contains");
        const bool ttft_plot = r->on[M_FULL] && r->on[M_SPEC] && tp;
        if (ttft_plot) {
            snprintf(path, sizeof path, "%s-ttft.svg", prefix);
            svg_ttft(path, tp, n_tp, r->keeps[0]);
        }
        fprintf(stderr, "wrote %s.json, %s-accuracy.svg%s\n", prefix, prefix, ttft_plot ? " and -ttft.svg" : "");
    }
    cJSON_Delete(js);
}

static bool same_keep(double a, double b) { return fabs(a - b) < 1e-9; }

static bool num_in(const cJSON *x, double lo, double hi) { return cJSON_IsNumber(x) && x->valuedouble >= lo && x->valuedouble <= hi; }

/* Adds one earlier run's JSON to r: the first sets the methods, keep rates and settings, every
 * later one must have the same (and the same model, draft and metric). Returns 0, or -1 after
 * printing why. */
static int report_merge(report *r, const char *path) {
    char *text = read_file(path, NULL);
    if (!text) return -1;
    cJSON *js = cJSON_Parse(text);
    free(text);
    const bool first = r->n_docs == 0 && !r->model;
    const char *why = NULL;
#define NUM(obj, key) cJSON_GetObjectItemCaseSensitive(obj, key)
    const cJSON *docs = NUM(js, "documents"), *tokens = NUM(js, "tokens"), *results = NUM(js, "results"), *groups = NUM(js, "by_group");
    const cJSON *tmin = NUM(tokens, "min"), *tmax = NUM(tokens, "max"), *tmean = NUM(tokens, "mean"), *check = NUM(js, "check_keep");
    const cJSON *chunk = NUM(js, "chunk"), *look = NUM(js, "lookahead"), *pool = NUM(js, "pool"), *mass = NUM(js, "keep_mass");
    const char *model = cJSON_GetStringValue(NUM(js, "model")), *draft = cJSON_GetStringValue(NUM(js, "draft"));
    const char *metric = cJSON_GetStringValue(NUM(js, "accuracy"));
    const cJSON *skip = NUM(js, "skip");
    if (!js) why = "not JSON";
    else if (!num_in(docs, 1, MAX_DOCS) || !cJSON_IsArray(results) || !model || !metric || !num_in(tmin, 1, 1 << 24) || !num_in(tmax, 1, 1 << 24) ||
             !num_in(tmean, 1, 1 << 24) || !num_in(check, 1e-6, 1) || !num_in(chunk, 1, 1 << 24) || !num_in(look, 1, 1 << 24) ||
             !num_in(pool, 1, 1 << 24) || (groups && !cJSON_IsArray(groups)) || (skip && !num_in(skip, 0, MAX_DOCS)) ||
             (NUM(js, "draft") && !draft))
        why = "not the JSON of `specprefill eval -o` (documents, tokens, chunk, lookahead, pool, check_keep, accuracy, model, results)";
    else if (tmin->valuedouble > tmean->valuedouble || tmean->valuedouble > tmax->valuedouble) why = "tokens out of order (min, mean, max)";
    else if (r->n_docs + docs->valueint > MAX_DOCS) why = "more documents in all than eval runs";
    else if (strcmp(metric, "exact match") && strcmp(metric, "contains")) why = "unknown accuracy";
    else if (!first && (strcmp(model, r->model) || !draft != !r->draft || (draft && strcmp(draft, r->draft))))
        why = "another model or draft than the first file";
    else if (!first && (strcmp(metric, metric_name(r->score_mode)) || chunk->valueint != r->chunk || look->valueint != r->lookahead ||
                        pool->valueint != r->pool))
        why = "another accuracy, chunk, lookahead or pool than the first file";
    const int n = why ? 0 : docs->valueint, lo = skip ? skip->valueint : 0;
    for (int p = 0; p < r->n_parts && !why; p++) /* a document counted twice would bias every figure */
        if (lo < r->parts[p][1] && r->parts[p][0] < lo + n) why = "documents that another file has (see their skip)";
    if (!why && r->n_parts == MAX_TASKS) why = "too many files";
    if (!why && first) {
        r->model = strdup(model);
        r->draft = draft ? strdup(draft) : NULL;
        r->score_mode = strcmp(metric, "exact match") ? SCORE_CONTAINS : SCORE_EXACT;
        r->chunk = chunk->valueint, r->lookahead = look->valueint, r->pool = pool->valueint;
        r->min_len = tmin->valueint, r->max_len = tmax->valueint;
    }
    for (const cJSON *row = why ? NULL : results->child; row && !why; row = row->next) {
        const char *name = cJSON_GetStringValue(NUM(row, "method"));
        const cJSON *keep = NUM(row, "keep");
        static const char *const fields[] = {"kept_share", "accuracy", "answers_kept", "exact_match", "contains", "first_token", "ttft_ms"};
        double v[7];
        int method = 0;
        while (name && method < M_COUNT && strcmp(name, method_names[method])) method++;
        if (!name || method == M_COUNT || !cJSON_IsNumber(keep)) { why = "a result row without a known method and a keep"; break; }
        for (int i = 0; i < 7 && !why; i++) { /* shares in [0, 1]; the TTFT in ms, under a year */
            const cJSON *x = NUM(row, fields[i]);
            if (!num_in(x, 0, i < 6 ? 1 : 3.2e10)) why = "a result row without every figure (shares from 0 to 1, a TTFT)";
            else v[i] = x->valuedouble;
        }
        if (!why && !(method == M_FULL ? same_keep(keep->valuedouble, 1) : method == M_ADAPTIVE ? same_keep(keep->valuedouble, -1)
                                                                                              : num_in(keep, 1e-6, 1)))
            why = "a keep out of range (full: 1, adaptive: -1, others: from 0 to 1)";
        int k = 0;
        if (method == M_ADAPTIVE) {
            if (!num_in(mass, 1e-6, 1)) why = "an adaptive row without keep_mass (from 0 to 1)";
            else if (first && !r->on[method]) r->mass = mass->valuedouble;
            else if (!same_keep(mass->valuedouble, r->mass)) why = "another keep_mass than the first file";
        } else if (method != M_FULL) {
            while (k < r->n_keeps && !same_keep(r->keeps[k], keep->valuedouble)) k++;
            if (k == r->n_keeps) {
                if (!first || k == MAX_KEEPS || (k > 0 && keep->valuedouble < r->keeps[k - 1])) why = "keep rates that differ from the first file's";
                else r->keeps[r->n_keeps++] = keep->valuedouble;
            }
        }
        if (why) break;
        if (!first && !r->on[method]) { why = "methods that differ from the first file's"; break; }
        r->on[method] = true;
        cell *c = &r->res[method][k];
        c->n += n;
        c->kept_share += v[0] * n, c->acc += v[1] * n, c->answers_kept += v[2] * n;
        c->em += (int)lround(v[3] * n), c->contains += v[4] * n, c->first_token += (int)lround(v[5] * n), c->ttft += v[6] / 1e3 * n;
    }
    if (!why) {
        int k = 0;
        while (k < r->n_keeps && !same_keep(r->keeps[k], check->valuedouble)) k++;
        if (k == r->n_keeps && r->n_keeps) why = "a check_keep that is not one of its keep rates";
        else if (!first && k != r->check_k) why = "another check_keep than the first file";
        else r->check_k = k < r->n_keeps ? k : 0;
    }
    for (const cJSON *row = why || !groups ? NULL : groups->child; row && !why; row = row->next) {
        const char *name = cJSON_GetStringValue(NUM(row, "group"));
        const cJSON *gn = NUM(row, "documents"), *gkeep = NUM(row, "keep");
        if (!name || !num_in(gn, 1, n)) { why = "a group row without a name and its documents (1 to the file's)"; break; }
        if (!cJSON_IsNumber(gkeep) || !same_keep(gkeep->valuedouble, check->valuedouble)) { why = "a group row whose keep is not check_keep"; break; }
        group_sum *g = group_find(r, name);
        if (!g) { why = "out of memory"; break; }
        g->n += gn->valueint;
        for (int method = 0; method < M_COUNT && !why; method++) {
            if (!r->on[method]) continue;
            const cJSON *x = NUM(row, method_names[method]);
            if (!num_in(x, 0, 1)) why = "a group row without every method's accuracy (from 0 to 1)";
            else g->sum[method] += x->valuedouble * gn->valueint;
        }
    }
#undef NUM
    if (!why) {
        r->parts[r->n_parts][0] = lo, r->parts[r->n_parts++][1] = lo + n;
        r->skip = first || lo < r->skip ? lo : r->skip;
        r->n_docs += n;
        r->sum_len += tmean->valuedouble * n;
        if (tmin->valueint < r->min_len) r->min_len = tmin->valueint;
        if (tmax->valueint > r->max_len) r->max_len = tmax->valueint;
        /* every method at every keep rate must have covered every document so far */
        for (int method = 0; method < M_COUNT && !why; method++)
            for (int k = 0; r->on[method] && k < n_cells(method, r->n_keeps) && !why; k++)
                if (r->res[method][k].n != r->n_docs) why = "methods or keep rates that differ from the first file's";
        int in_groups = 0;
        for (int g = 0; g < r->n_groups; g++) in_groups += r->groups[g].n;
        if (!why && r->n_groups && in_groups != r->n_docs) why = "documents without groups beside files with them";
    }
    cJSON_Delete(js);
    if (why) fprintf(stderr, "error: --merge %s: %s\n", path, why);
    return why ? -1 : 0;
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *draft_path = NULL, *prefix = NULL, *system = NULL, *tmpl = NULL, *tmpl_file = NULL, *kwargs = NULL, *methods = NULL;
    const char *tasks[MAX_TASKS], *merges[MAX_TASKS];
    int n_merges = 0, n_tasks = 0, skip = 0, limit = MAX_DOCS, threads = 0, max_tokens = 16, n_ctx = 0, n_keeps = 5;
    cli_rope rope = {0, 0, 0};
    double keeps[MAX_KEEPS] = {0.05, 0.1, 0.2, 0.3, 0.5};
    bool on[M_COUNT], chat = false;
    int score_mode = SCORE_EXACT;
    double min_acc = -1, min_ratio = -1, max_base = -1, check_keep = 0.1, mass = 0.9, min_spec[MAX_KEEPS];
    int n_min_spec = 0, bad_selection = 0;
    sp_specprefill_params sp = sp_specprefill_default_params();
    sp_model_params load = sp_model_default_params();
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the main model (GGUF)"),
        CLI_OPT("--draft", NULL, CLI_TEXT, &draft_path, 0, 0, "FILE", "draft model: adds the methods spec and adaptive"),
        CLI_OPT("--draft-any-vocab", NULL, CLI_FLAG, &sp.any_vocab, 0, 0, NULL, "allow a draft with another tokenizer (scores mapped through bytes)"),
        CLI_OPT("--task", NULL, CLI_TEXTS, tasks, 0, 0, "FILE",
                "JSONL, one {\"prompt\", \"answer\"} per line; optional \"answers\" (all to be found), \"max_tokens\", \"task\" or \"family\"",
                .count = &n_tasks, .max_count = MAX_TASKS),
        CLI_OPT("--n", NULL, CLI_INT, &limit, 1, MAX_DOCS, "N", "at most N documents", .shown_default = "all"),
        CLI_OPT("--skip", NULL, CLI_INT, &skip, 0, MAX_DOCS, "N", "start after the first N documents (a part of a split evaluation: see --merge)"),
        CLI_OPT("--keep", NULL, CLI_DOUBLES, keeps, 1e-6, 1, "LIST", "keep rates, increasing", .count = &n_keeps, .max_count = MAX_KEEPS),
        CLI_OPT("--methods", NULL, CLI_TEXT, &methods, 0, 0, "LIST", "of full,spec,self,oracle,adaptive,random,recency,stride,firstlast",
                .shown_default = "all that apply"),
        CLI_OPT("--score", NULL, CLI_CHOICE, &score_mode, 0, 0, "exact|contains",
                "accuracy: exact match of the first line, or the share of the answers found in the text (RULER's string_match_all)"),
        CLI_OPT("--keep-mass", NULL, CLI_DOUBLE, &mass, 1e-6, 1, "M", "the share of importance the adaptive method keeps"),
        CLI_SPECPREFILL_SCORING_OPTIONS(&sp),
        CLI_OPT("--chat", NULL, CLI_FLAG, &chat, 0, 0, NULL, "wrap each prompt as a user message in the chat template"),
        CLI_OPT("--system", NULL, CLI_TEXT, &system, 0, 0, "TEXT", "system message (with --chat)"),
        CLI_CHAT_TEMPLATE_OPTIONS(&tmpl, &tmpl_file, &kwargs),
        CLI_OPT("--max-tokens", NULL, CLI_INT, &max_tokens, 1, 4096, "N",
                "answer length limit where a document sets none (exact: answers stop at a newline; contains: at the end of the line where all are found)"),
        CLI_OPT("--ctx-size", "-c", CLI_INT, &n_ctx, 16, 1 << 24, "N", "context size", .shown_default = "longest prompt + max-tokens + 8"),
        CLI_OPT("--output", "-o", CLI_TEXT, &prefix, 0, 0, "PREFIX", "also write PREFIX.json, PREFIX-accuracy.svg, PREFIX-ttft.svg"),
        CLI_OPT("--merge", NULL, CLI_TEXTS, merges, 0, 0, "FILE",
                "run nothing: report the documents of several runs' PREFIX.json as one (a long evaluation split into parts; same methods, keep rates and models)",
                .count = &n_merges, .max_count = MAX_TASKS),
        CLI_THREADS_OPTION(&threads),
        CLI_LOAD_OPTIONS(&load),
        CLI_ROPE_OPTIONS(&rope),
        CLI_SECTION_ROW("checks (exit 1 when one fails; for CI)"),
        CLI_OPT("--min-accuracy", NULL, CLI_DOUBLE, &min_acc, 0, 1, "X", "full prefill's accuracy reaches X", .shown_default = ""),
        CLI_OPT("--min-spec-accuracy", NULL, CLI_DOUBLES, min_spec, 0, 1, "LIST",
                "SpecPrefill's accuracy at each --keep rate reaches these (one per rate)", .count = &n_min_spec, .max_count = MAX_KEEPS),
        CLI_OPT("--min-spec-ratio", NULL, CLI_DOUBLE, &min_ratio, 0, 10, "X", "SpecPrefill at --check-keep reaches X × full's accuracy", .shown_default = ""),
        CLI_OPT("--max-baseline-ratio", NULL, CLI_DOUBLE, &max_base, 0, 10, "X", "random and recency at --check-keep stay ≤ X × full's", .shown_default = ""),
        CLI_OPT("--check-keep", NULL, CLI_DOUBLE, &check_keep, 1e-6, 1, "R", "the keep rate those checks use"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"eval -m MAIN.gguf [--draft DRAFT.gguf] --task FILE.jsonl [options]",
                             "accuracy of full prefill, speculative prefill and baselines on question-answer documents",
                             options, "metrics: exact match (the trimmed first line), contains (the share of the answers in the text), first content token; answers kept: the share of the answers the kept tokens still spell out",
                             NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    chat = chat || tmpl || tmpl_file || kwargs;
    const char *tmpl_source;
    char *tmpl_owned = NULL;
    const int tc = cli_chat_template(tmpl, tmpl_file, &tmpl_source, &tmpl_owned);
    if (tc >= 0) return tc;
    for (int m = 0; m < M_COUNT; m++) on[m] = !methods;
    if (methods) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", methods);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            int m = 0;
            while (m < M_COUNT && strcmp(t, method_names[m])) m++;
            if (m == M_COUNT) { fprintf(stderr, "error: unknown method '%s'\n", t); return 2; }
            on[m] = true;
        }
    }
    if (n_merges) {
        if (n_tasks || min_acc >= 0 || min_ratio >= 0 || max_base >= 0 || n_min_spec) {
            fprintf(stderr, "error: --merge reports earlier runs: it takes no --task and no checks\n");
            return 2;
        }
        report *merged = calloc(1, sizeof *merged);
        int status = merged ? 0 : 1;
        for (int f = 0; f < n_merges && !status; f++) status = report_merge(merged, merges[f]) ? 1 : 0;
        if (!status) report_write(merged, prefix, NULL, 0);
        report_free(merged);
        return status;
    }
    if (!model_path || n_tasks == 0) { fprintf(stderr, "error: -m MODEL and --task FILE are required (see --help)\n"); return 2; }
    if (!draft_path) {
        if (methods && (on[M_SPEC] || on[M_ADAPTIVE])) { fprintf(stderr, "error: methods spec and adaptive need --draft\n"); return 2; }
        on[M_SPEC] = on[M_ADAPTIVE] = false;
    }
    for (int k = 1; k < n_keeps; k++) if (keeps[k] < keeps[k - 1]) { fprintf(stderr, "error: --keep must be increasing\n"); return 2; }
    /* a check whose method does not run is an error, never a silent pass */
    int check_k = -1;
    for (int k = 0; k < n_keeps; k++) if (fabs(keeps[k] - check_keep) < 1e-9) check_k = k;
    const bool ratio_checks = min_ratio >= 0 || max_base >= 0;
    if (ratio_checks && check_k < 0) { fprintf(stderr, "error: --check-keep %g is not one of the --keep rates\n", check_keep); return 2; }
    if ((min_acc >= 0 || ratio_checks) && !on[M_FULL]) { fprintf(stderr, "error: the accuracy checks need the method full\n"); return 2; }
    if ((min_ratio >= 0 || n_min_spec) && !on[M_SPEC]) { fprintf(stderr, "error: the SpecPrefill checks need --draft and the method spec\n"); return 2; }
    if (max_base >= 0 && !on[M_RANDOM] && !on[M_RECENCY]) { fprintf(stderr, "error: --max-baseline-ratio needs the method random or recency\n"); return 2; }
    if (n_min_spec && n_min_spec != n_keeps) { fprintf(stderr, "error: --min-spec-accuracy needs one value per --keep rate (%d)\n", n_keeps); return 2; }
    if (check_k < 0) check_k = 0;
    if (sp_specprefill_params_check(&sp) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 2; }
    if (sp_set_threads(threads) != SP_OK) return fail_status("threads");

    int n_docs = 0, rc = 1;
    doc *docs = load_tasks(tasks, n_tasks, skip, limit, &n_docs);
    if (!docs) return 1;
    sp_model *m = NULL, *dm = NULL;
    sp_context *ctx = NULL, *dctx = NULL, *sctx = NULL;
    sp_token **toks = calloc((size_t)n_docs, sizeof *toks);
    char **texts = calloc((size_t)n_docs, sizeof *texts);
    int *ntok = calloc((size_t)n_docs, sizeof *ntok), max_len = 0, max_need = 0;
    size_t max_bytes = 0;
    report *rep = calloc(1, sizeof *rep);
    cell (*res)[MAX_KEEPS] = rep ? rep->res : NULL;
    ttft_point *tp = calloc((size_t)n_docs, sizeof *tp);
    float *logits = NULL, *imp = NULL, *bimp = NULL;
    uint8_t *kept = NULL;
    if (!rep) { fprintf(stderr, "error: out of memory\n"); goto done; }
    if (sp_model_load_with(model_path, &load, &m) != SP_OK) { fail_status("loading model"); goto done; }
    if (draft_path && sp_model_load_with(draft_path, &load, &dm) != SP_OK) { fail_status("loading draft"); goto done; }
    if (dm && !sp.any_vocab && sp_vocab_check_same(m, dm) != SP_OK) { fail_status("draft"); goto done; }
    const bool other_vocab = dm && sp.any_vocab && sp_vocab_check_same(m, dm) != SP_OK;
    for (int d = 0; d < n_docs; d++) {
        sp_chat_message msgs[2];
        int nm = 0;
        if (chat && system) msgs[nm++] = (sp_chat_message){"system", system};
        msgs[nm++] = (sp_chat_message){"user", docs[d].prompt};
        spc_prompt pr;
        if (spc_prompt_make(m, chat, tmpl_source, kwargs, msgs, nm, &pr) != SP_OK) { fprintf(stderr, "error: document %d: %s\n", d, sp_last_error()); goto done; }
        toks[d] = pr.ids; /* the tokens stay; the text only for a draft of another tokenizer */
        ntok[d] = pr.n;
        if (other_vocab) texts[d] = pr.text;
        else free(pr.text);
        if (texts[d] && strlen(texts[d]) > max_bytes) max_bytes = strlen(texts[d]);
        if (ntok[d] > max_len) max_len = ntok[d];
        const int need = ntok[d] + (docs[d].max_tokens ? docs[d].max_tokens : max_tokens);
        if (need > max_need) max_need = need;
    }
    sp_context_params cp = sp_context_default_params();
    cp.n_ctx = n_ctx ? n_ctx : max_need + 8;
    cli_rope_apply(&rope, &cp); /* every context of the run; auto resolves per model and size */
    if (max_need > cp.n_ctx) { fprintf(stderr, "error: a prompt and its answer (%d tokens) do not fit -c %d\n", max_need, cp.n_ctx); goto done; }
    if (sp_context_new(m, &cp, &ctx) != SP_OK) { fail_status("context"); goto done; }
    sp_context_params dp = cp;
    dp.n_ctx = spc_draft_ctx_size(max_len, &sp, false);
    sp_context_params odp = dp; /* the draft's: a draft of another tokenizer reads at most a token per byte */
    if (other_vocab) odp.n_ctx = spc_draft_ctx_size((int)max_bytes, &sp, true);
    if (dm && sp_context_new(dm, &odp, &dctx) != SP_OK) { fail_status("draft context"); goto done; }
    /* self-speculation and the oracle score with the main model itself (its first layers, or all) */
    if ((on[M_SELF] || on[M_ORACLE]) && sp_context_new(m, &dp, &sctx) != SP_OK) { fail_status("scoring context"); goto done; }
    const int V = sp_model_get_info(m)->n_vocab;
    logits = malloc((size_t)V * sizeof *logits);
    imp = malloc((size_t)max_len * sizeof *imp);
    bimp = malloc((size_t)max_len * sizeof *bimp);
    kept = malloc((size_t)max_len);
    int32_t *pos = malloc((size_t)max_len * sizeof *pos);
    for (int i = 0; i < max_len; i++) pos[i] = i;
    const bool tty = isatty(2);
    double t_start = now_seconds();

    for (int d = 0; d < n_docs; d++) {
        const sp_token *p = toks[d];
        const int n = ntok[d];
        sp_token want_first = -1, *at = NULL;
        int nat = 0;
        if (sp_tokenize(m, docs[d].answer, strlen(docs[d].answer), false, false, &at, &nat) == SP_OK && nat > 0) want_first = at[0];
        free(at);
        const doc_run r = {ctx, m, &docs[d], p, n, skip + d, docs[d].max_tokens ? docs[d].max_tokens : max_tokens, score_mode, want_first, logits, kept};
        const spc_prompt prompt = {texts[d], (sp_token *)p, n};
        sp_specprefill_stats st;
        double t_draft_score = 0; /* the draft's scoring time, which adaptive shares with spec */
        /* full prefill: the entry generate and the server use (common/prefill.c) */
        if (on[M_FULL]) {
            if (spc_prefill(ctx, NULL, &prompt, NULL, &sp, logits, NULL, NULL, &st) != SP_OK) { fail_status("prefill"); goto done; }
            memset(kept, 1, (size_t)n);
            tp[d].full = st.ttft_s;
            docs[d].score[M_FULL] = (float)answer_into(&r, &res[M_FULL][0], st.ttft_s, n);
        }
        /* SpecPrefill with the draft, and self-speculation: the same entry, once per keep rate
         * (each run scores the prompt again: the TTFT is what a user waits) */
        for (int method = M_SPEC; method <= M_SELF; method++) {
            if (!on[method]) continue;
            for (int k = 0; k < n_keeps; k++) {
                sp_specprefill_params q = sp;
                q.keep_rate = (float)keeps[k];
                float *scores = method == M_SELF ? bimp : imp;
                if (spc_prefill(ctx, method == M_SELF ? sctx : dctx, &prompt, NULL, &q, logits, scores, kept, &st) != SP_OK) {
                    fail_status("speculative prefill");
                    goto done;
                }
                if (!selection_holds(m, p, n, kept, &q, skip + d, method_names[method])) bad_selection++;
                if (method == M_SPEC) t_draft_score = st.draft_prefill_s + st.lookahead_s + st.scoring_s;
                if (method == M_SPEC && k == 0) tp[d].spec = st.ttft_s;
                tp[d].n_tokens = n;
                const double a = answer_into(&r, &res[method][k], st.ttft_s, st.n_kept);
                if (k == check_k) docs[d].score[method] = (float)a;
            }
        }
        /* the oracle: the main model's own attention over the whole prompt (all its layers, its
         * own look-ahead), scored once; each keep rate then prefills its selection. An upper
         * bound on what attention-based selection can keep, not a way to save time: its TTFT
         * includes a full prefill. */
        if (on[M_ORACLE]) {
            sp_specprefill_params q = sp;
            q.self_layers = sp_model_get_info(m)->n_layer;
            const double t0 = now_seconds();
            if (sp_specprefill_score(sctx, m, p, n, NULL, &q, bimp, &st) != SP_OK) { fail_status("oracle scoring"); goto done; }
            const double t_score = now_seconds() - t0;
            for (int k = 0; k < n_keeps; k++) {
                q.keep_rate = (float)keeps[k];
                const double a = select_and_answer(&r, bimp, &q, t_score, &res[M_ORACLE][k], method_names[M_ORACLE], &bad_selection);
                if (a < 0) goto done;
                if (k == check_k) docs[d].score[M_ORACLE] = (float)a;
            }
        }
        /* adaptive: the draft's scores (spec's, or scored now), as many chunks as hold the mass */
        if (on[M_ADAPTIVE]) {
            const double t0 = now_seconds();
            if (!on[M_SPEC] && sp_specprefill_score(dctx, m, p, n, texts[d], &sp, imp, &st) != SP_OK) { fail_status("scoring"); goto done; }
            const double t_score = on[M_SPEC] ? t_draft_score : now_seconds() - t0;
            sp_specprefill_params q = sp;
            q.keep_mass = (float)mass;
            const double a = select_and_answer(&r, imp, &q, t_score, &res[M_ADAPTIVE][0], NULL, &bad_selection);
            if (a < 0) goto done;
            docs[d].score[M_ADAPTIVE] = (float)a;
        }
        /* baselines that use no model */
        for (int method = M_RANDOM; method < M_COUNT; method++) {
            if (!on[method]) continue;
            for (int k = 0; k < n_keeps; k++) {
                sp_specprefill_params q = sp;
                q.keep_rate = (float)keeps[k];
                baseline_importance(method, n, sp.chunk, keeps[k], (unsigned)(skip + d) + 1, bimp); /* as in one run of all */
                const double a = select_and_answer(&r, bimp, &q, 0, &res[method][k], NULL, &bad_selection);
                if (a < 0) goto done;
                if (k == check_k) docs[d].score[method] = (float)a;
            }
        }
        if (tty) {
            const double el = now_seconds() - t_start;
            fprintf(stderr, "\r\033[Keval: document %d of %d [%-30.*s] %.0f s, ~%.0f s left", d + 1, n_docs, 30 * (d + 1) / n_docs,
                    "##############################", el, el / (d + 1) * (n_docs - d - 1));
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    free(pos);

    /* report */
    rep->model = strdup(model_path);
    rep->draft = draft_path ? strdup(draft_path) : NULL;
    memcpy(rep->on, on, sizeof on);
    memcpy(rep->keeps, keeps, sizeof keeps);
    rep->n_keeps = n_keeps, rep->check_k = check_k, rep->score_mode = score_mode, rep->mass = mass;
    rep->chunk = sp.chunk, rep->lookahead = sp.lookahead, rep->pool = sp.pool_kernel;
    rep->n_docs = n_docs, rep->skip = skip, rep->min_len = max_len, rep->max_len = max_len;
    bool grouped = false;
    for (int d = 0; d < n_docs; d++) grouped |= docs[d].group != NULL;
    for (int d = 0; d < n_docs; d++) {
        rep->sum_len += ntok[d];
        if (ntok[d] < rep->min_len) rep->min_len = ntok[d];
        if (!grouped) continue;
        group_sum *g = group_find(rep, docs[d].group ? docs[d].group : "(none)");
        if (!g) { fprintf(stderr, "error: out of memory\n"); goto done; }
        g->n++;
        for (int method = 0; method < M_COUNT; method++) g->sum[method] += docs[d].score[method];
    }
    report_write(rep, prefix, tp, n_docs);
    rc = 0;
    /* CI thresholds */
    const char *metric = metric_name(score_mode);
    const double full = res[M_FULL][0].n ? res[M_FULL][0].acc / res[M_FULL][0].n : 0;
    if (min_acc >= 0 && full < min_acc) { fprintf(stderr, "check failed: full prefill %s %.3f < %.3f\n", metric, full, min_acc); rc = 1; }
    if (min_ratio >= 0 && on[M_SPEC] && res[M_SPEC][check_k].n) {
        const double s = res[M_SPEC][check_k].acc / res[M_SPEC][check_k].n;
        if (s < min_ratio * full) { fprintf(stderr, "check failed: SpecPrefill at keep %.2f: %.3f < %.2f × full (%.3f)\n", keeps[check_k], s, min_ratio, full); rc = 1; }
    }
    for (int k = 0; k < n_min_spec; k++) {
        const double a = res[M_SPEC][k].acc / (res[M_SPEC][k].n ? res[M_SPEC][k].n : 1);
        if (a < min_spec[k]) { fprintf(stderr, "check failed: SpecPrefill at keep %.2f: %s %.3f < %.3f\n", keeps[k], metric, a, min_spec[k]); rc = 1; }
    }
    if (bad_selection) { fprintf(stderr, "check failed: the selection broke its contract on %d runs (above)\n", bad_selection); rc = 1; }
    if (max_base >= 0)
        for (int method = M_RANDOM; method <= M_RECENCY; method++)
            if (on[method] && res[method][check_k].n) {
                const double b = res[method][check_k].acc / res[method][check_k].n;
                if (b > max_base * full) { fprintf(stderr, "check failed: %s at keep %.2f: %.3f > %.2f × full (%.3f)\n", method_names[method], keeps[check_k], b, max_base, full); rc = 1; }
            }
done:
    for (int d = 0; d < n_docs; d++) { doc_free(&docs[d]); free(toks ? toks[d] : NULL); free(texts ? texts[d] : NULL); }
    free(docs); free(toks); free(texts); free(ntok); report_free(rep); free(tp); free(logits); free(imp); free(bimp); free(kept); free(tmpl_owned);
    sp_context_free(ctx); sp_context_free(dctx); sp_context_free(sctx);
    sp_model_free(dm); sp_model_free(m);
    return rc;
}
