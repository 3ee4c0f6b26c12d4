/*
 * `specprefill bench-serve`: the paper's throughput study, as vLLM's serving benchmark does it.
 * Requests from a JSONL prompt set arrive as a Poisson process at each rate of a list; each is a
 * streamed completion, timed from its arrival: time to first token (the first text chunk),
 * time per output token after it, end-to-end latency. Both modes run in one go — full prefill
 * ("speculative_prefill": false) and SpecPrefill at a keep rate — and the result is, per mode,
 * the largest rate whose p90 TTFT stays under --slo-ttft: the queries per second a deployment
 * can promise at that latency. Against a running server (--url), or one it starts (--serve).
 *
 * The client is plain HTTP/1.0 over a socket per request (the server then ends the body by
 * closing, no chunked decoding), one thread per request in flight.
 */
#define _GNU_SOURCE /* getaddrinfo, strdup */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "options.h"

enum { MAX_RATES = 16, MAX_ARGS = 64 };

typedef struct {
    const char *host, *port, *api_key;
    const char *prompt;
    int max_tokens;
    double keep;              /* SpecPrefill's keep rate, or 0: full prefill */
    double t_arrival;         /* when it is sent (seconds, monotonic) */
    /* results */
    int status, tokens;
    double ttft, e2e, tpot;
    char error[128];
} request;

static void sleep_until(double t) {
    const double d = t - now_seconds();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) { close(fd); fd = -1; }
    }
    freeaddrinfo(res);
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One SSE event's JSON: the first text marks the first token; usage gives the token count. */
static void on_event(request *r, const char *json, double now, bool *first_seen) {
    cJSON *o = cJSON_Parse(json);
    if (!o) return;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices"), *c0 = cJSON_GetArrayItem(choices, 0);
    const cJSON *text = c0 ? cJSON_GetObjectItemCaseSensitive(c0, "text") : NULL;
    if (!*first_seen && cJSON_IsString(text) && text->valuestring[0]) {
        *first_seen = true;
        r->ttft = now - r->t_arrival;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage"), *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    if (cJSON_IsNumber(ct)) r->tokens = ct->valueint;
    cJSON_Delete(o);
}

static void *run_request(void *arg) {
    request *r = arg;
    sleep_until(r->t_arrival);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "prompt", r->prompt);
    cJSON_AddNumberToObject(b, "max_tokens", r->max_tokens);
    cJSON_AddNumberToObject(b, "temperature", 0);
    cJSON_AddBoolToObject(b, "ignore_eos", true); /* every request decodes max_tokens */
    cJSON_AddBoolToObject(b, "stream", true);
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(b, "stream_options"), "include_usage", true);
    /* the two modes differ in the prefill only: every prompt is read cold (prompts repeat across
     * rates and modes, and a server's prompt cache would serve them again), and the answer is
     * decoded plainly (a draft catching up on a full prefill's prompt would lengthen one mode's
     * requests) */
    cJSON_AddBoolToObject(b, "cache_prompt", false);
    cJSON_AddBoolToObject(b, "speculative_decoding", false);
    if (r->keep > 0) cJSON_AddNumberToObject(cJSON_AddObjectToObject(b, "speculative_prefill"), "keep_rate", r->keep);
    else cJSON_AddBoolToObject(b, "speculative_prefill", false);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    int fd = body ? connect_to(r->host, r->port) : -1;
    if (fd < 0) {
        snprintf(r->error, sizeof r->error, "cannot connect to %s:%s", r->host, r->port);
        free(body);
        return NULL;
    }
    char head[512];
    const int hn = snprintf(head, sizeof head,
                            "POST /v1/completions HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                            r->host, strlen(body), r->api_key ? "Authorization: Bearer " : "", r->api_key ? r->api_key : "",
                            r->api_key ? "\r\n" : "");
    if (!send_all(fd, head, (size_t)hn) || !send_all(fd, body, strlen(body))) snprintf(r->error, sizeof r->error, "send failed");
    free(body);
    /* the response: a status line, headers, then SSE events "data: {...}\n\n" until the server closes */
    size_t cap = 1 << 16, len = 0, scanned = 0;
    char *buf = malloc(cap);
    bool headers_done = false, first_seen = false;
    size_t body_at = 0;
    double t_last = r->t_arrival;
    for (ssize_t k; !r->error[0] && buf && (k = recv(fd, buf + len, cap - len - 1, 0)) > 0;) {
        const double now = now_seconds();
        t_last = now;
        len += (size_t)k;
        buf[len] = 0;
        if (!headers_done) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e) goto grow;
            headers_done = true;
            r->status = atoi(buf + 9);
            body_at = scanned = (size_t)(e + 4 - buf);
        }
        for (char *ev; (ev = strstr(buf + scanned, "\n\n"));) {
            *ev = 0;
            const char *line = buf + scanned;
            if (strncmp(line, "data: {", 7) == 0) on_event(r, line + 6, now, &first_seen);
            *ev = '\n';
            scanned = (size_t)(ev + 2 - buf);
        }
    grow:
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (!r->error[0] && r->status != 200) {
        const char *msg = buf && headers_done ? buf + body_at : "";
        snprintf(r->error, sizeof r->error, "HTTP %d %.90s", r->status, msg);
    } else if (!r->error[0] && !first_seen) {
        snprintf(r->error, sizeof r->error, "no text in the answer");
    }
    r->e2e = t_last - r->t_arrival;
    r->tpot = r->tokens > 1 ? (r->e2e - r->ttft) / (r->tokens - 1) : 0;
    free(buf);
    return NULL;
}

typedef struct {
    double rate;
    int done, failed;
    double ttft[3], tpot[2], e2e[3]; /* p50, p90, p99 */
    double req_per_s, tok_per_s;
    char first_error[128];
} rate_result;

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, int n, double q) {
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, by_value);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* n requests at Poisson arrivals of the given rate; the prompts in turn. */
static void run_rate(const char *host, const char *port, const char *key, char **prompts, int n_prompts, int n, double rate,
                     int max_tokens, double keep, uint64_t seed, rate_result *out) {
    request *rq = calloc((size_t)n, sizeof *rq);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    double *a = malloc(sizeof(double) * (size_t)n * 3);
    memset(out, 0, sizeof *out);
    out->rate = rate;
    if (!rq || !th || !a) { free(rq); free(th); free(a); out->failed = n; snprintf(out->first_error, sizeof out->first_error, "out of memory"); return; }
    const double t0 = now_seconds() + 0.05;
    double t = t0;
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const double u = ((double)(seed >> 11) + 0.5) * 0x1.0p-53;
        rq[i] = (request){host, port, key, prompts[i % n_prompts], max_tokens, keep, t, 0, 0, 0, 0, 0, ""};
        t += -log(u) / rate;
        if (pthread_create(&th[i], NULL, run_request, &rq[i]) != 0) { rq[i].status = -1; snprintf(rq[i].error, sizeof rq[i].error, "no thread"); th[i] = 0; }
    }
    for (int i = 0; i < n; i++) if (th[i]) pthread_join(th[i], NULL);
    double *ttft = a, *tpot = a + n, *e2e = a + 2 * n, t_end = t0, tokens = 0;
    int nt = 0;
    for (int i = 0; i < n; i++) {
        if (rq[i].error[0]) {
            if (!out->failed++) snprintf(out->first_error, sizeof out->first_error, "%s", rq[i].error);
            continue;
        }
        ttft[out->done] = rq[i].ttft;
        e2e[out->done] = rq[i].e2e;
        if (rq[i].tokens > 1) tpot[nt++] = rq[i].tpot;
        tokens += rq[i].tokens;
        if (rq[i].t_arrival + rq[i].e2e > t_end) t_end = rq[i].t_arrival + rq[i].e2e;
        out->done++;
    }
    const double qs[3] = {0.5, 0.9, 0.99};
    for (int q = 0; q < 3; q++) {
        out->ttft[q] = percentile(ttft, out->done, qs[q]);
        out->e2e[q] = percentile(e2e, out->done, qs[q]);
        if (q < 2) out->tpot[q] = percentile(tpot, nt, qs[q]);
    }
    out->req_per_s = t_end > t0 ? out->done / (t_end - t0) : 0;
    out->tok_per_s = t_end > t0 ? tokens / (t_end - t0) : 0;
    free(rq); free(th); free(a);
}

/* The largest rate whose every request succeeded with p90 TTFT within the target; 0 if none. */
static double rate_within(const rate_result *r, int n, double slo) {
    double best = 0;
    for (int i = 0; i < n; i++)
        if (r[i].failed == 0 && r[i].done > 0 && r[i].ttft[1] <= slo && r[i].rate > best) best = r[i].rate;
    return best;
}

static void svg_plot(const char *path, rate_result (*r)[MAX_RATES], int n_rates, const char *const *names, double slo) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "warning: cannot write %s\n", path); return; }
    const int W = 560, H = 360, L = 60, R = 20, T = 30, B = 50;
    double xmax = 0, ymax = slo * 1.5;
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < n_rates; i++) {
            if (r[m][i].rate > xmax) xmax = r[m][i].rate;
            if (isfinite(r[m][i].ttft[1]) && r[m][i].ttft[1] > ymax) ymax = r[m][i].ttft[1];
        }
    ymax *= 1.05;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n", W, H);
    fprintf(f, "<text x='%d' y='18' font-size='14'>p90 time to first token vs request rate</text>\n", L);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/><line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, H - B,
            W - R, H - B, L, T, L, H - B);
    for (int k = 0; k <= 4; k++) {
        const double xv = xmax * k / 4, yv = ymax * k / 4;
        const double x = L + (W - L - R) * k / 4.0, y = H - B - (H - T - B) * k / 4.0;
        fprintf(f, "<text x='%.0f' y='%d' text-anchor='middle'>%.3g</text>\n", x, H - B + 16, xv);
        fprintf(f, "<text x='%d' y='%.0f' text-anchor='end'>%.3g</text>\n", L - 6, y + 4, yv);
    }
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>requests per second (Poisson arrivals)</text>\n", (L + W - R) / 2, H - 12);
    fprintf(f, "<text x='14' y='%d' transform='rotate(-90 14 %d)' text-anchor='middle'>p90 TTFT (s)</text>\n", (T + H - B) / 2, (T + H - B) / 2);
    const double ys = H - B - (H - T - B) * slo / ymax;
    fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='gray' stroke-dasharray='4 3'/>"
               "<text x='%d' y='%.1f' fill='gray' text-anchor='end'>target %.3g s</text>\n", L, ys, W - R, ys, W - R, ys - 4, slo);
    const char *colors[2] = {"#888888", "#d62728"};
    for (int m = 0; m < 2; m++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[m]);
        for (int i = 0; i < n_rates; i++)
            if (isfinite(r[m][i].ttft[1]))
                fprintf(f, "%.1f,%.1f ", L + (W - L - R) * r[m][i].rate / xmax, H - B - (H - T - B) * r[m][i].ttft[1] / ymax);
        fprintf(f, "'/>\n<text x='%d' y='%d' fill='%s'>%s</text>\n", L + 10, T + 16 + 16 * m, colors[m], names[m]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* Starts `specprefill serve ARGS --port PORT` (this binary; its log to the file log, or nowhere)
 * and waits for /health; its pid, or -1. */
static pid_t start_server(const char *args, const char *port, const char *log) {
    char *copy = strdup(args), *argv[MAX_ARGS + 6], *save = NULL;
    int n = 0;
    argv[n++] = "specprefill";
    argv[n++] = "serve";
    for (char *t = strtok_r(copy, " ", &save); t && n < MAX_ARGS; t = strtok_r(NULL, " ", &save)) argv[n++] = t;
    argv[n++] = "--port";
    argv[n++] = (char *)port;
    argv[n] = NULL;
    const pid_t pid = fork();
    if (pid == 0) { /* its log would interleave with the results: to a file only if asked */
        FILE *f = freopen(log ? log : "/dev/null", "w", stderr);
        (void)f;
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    free(copy);
    if (pid < 0) return -1;
    for (int i = 0; i < 600; i++) { /* up to 60 s: loading a large model */
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return -1;
        const int fd = connect_to("127.0.0.1", port);
        if (fd >= 0) {
            const char *req = "GET /health HTTP/1.0\r\n\r\n";
            char resp[64] = "";
            if (send_all(fd, req, strlen(req)) && recv(fd, resp, sizeof resp - 1, 0) > 12 && strncmp(resp + 9, "200", 3) == 0) {
                close(fd);
                return pid;
            }
            close(fd);
        }
        usleep(100 * 1000);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return -1;
}

int cmd_bench_serve(int argc, char **argv) {
    const char *url = "http://127.0.0.1:8080", *serve = NULL, *serve_log = NULL, *prompts_path = NULL, *svg = NULL, *key = NULL;
    double rates[MAX_RATES] = {0.5, 1, 2, 4, 8}, slo = 1.0, keep = 0.1;
    int n_rates = 5, n = 40, max_tokens = 16, format = 0, port = 18080;
    uint64_t seed = 1;
    const cli_option options[] = {
        CLI_OPT("--url", NULL, CLI_TEXT, &url, 0, 0, "URL", "a running server: http://HOST:PORT"),
        CLI_OPT("--serve", NULL, CLI_TEXT, &serve, 0, 0, "\"ARGS\"",
                "start `specprefill serve ARGS` on 127.0.0.1:--port instead, and stop it at the end", .shown_default = "none"),
        CLI_OPT("--port", NULL, CLI_INT, &port, 1, 65535, "N", "the port of the server --serve starts"),
        CLI_OPT("--serve-log", NULL, CLI_TEXT, &serve_log, 0, 0, "FILE", "where the server --serve starts writes its log", .shown_default = "nowhere"),
        CLI_OPT("--prompts", "-f", CLI_TEXT, &prompts_path, 0, 0, "FILE.jsonl", "one {\"prompt\": ...} per line, used in turn"),
        CLI_OPT("--rates", NULL, CLI_DOUBLES, rates, 1e-3, 1e6, "LIST", "request rates (per second) to try, each a Poisson process",
                .count = &n_rates, .max_count = MAX_RATES),
        CLI_OPT("--requests", "-n", CLI_INT, &n, 1, 100000, "N", "requests per rate and mode"),
        CLI_OPT("--max-tokens", NULL, CLI_INT, &max_tokens, 1, 1 << 20, "N", "tokens each request generates (greedy, end-of-text ignored)"),
        CLI_OPT("--keep", NULL, CLI_DOUBLE, &keep, 1e-6, 1, "X", "SpecPrefill's keep rate in the speculative mode"),
        CLI_OPT("--slo-ttft", NULL, CLI_DOUBLE, &slo, 1e-6, 1e6, "SECONDS", "the p90 TTFT target: the result is the largest rate within it"),
        CLI_OPT("--api-key", NULL, CLI_TEXT, &key, 0, 0, "KEY", "sent as Authorization: Bearer KEY", .shown_default = "none"),
        CLI_OPT("--seed", NULL, CLI_U64, &seed, 0, 1.8e19, "S", "seed of the arrival times"),
        CLI_OPT("--output", "-o", CLI_CHOICE, &format, 0, 0, "md|json", "output format"),
        CLI_OPT("--svg", NULL, CLI_TEXT, &svg, 0, 0, "FILE.svg", "plot p90 TTFT against the rate, both modes and the target", .shown_default = "none"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"bench-serve --prompts FILE.jsonl (--url URL | --serve \"ARGS\") [options]",
                             "queries per second within a TTFT target, full prefill vs SpecPrefill, against an OpenAI-compatible server",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!prompts_path) { fprintf(stderr, "error: --prompts FILE.jsonl is required\n"); return 2; }
    char host[256], port_s[16];
    if (serve) {
        snprintf(host, sizeof host, "127.0.0.1");
        snprintf(port_s, sizeof port_s, "%d", port);
    } else if (sscanf(url, "http://%255[^:/]:%15[0-9]", host, port_s) != 2) {
        fprintf(stderr, "error: --url must be http://HOST:PORT, got '%s'\n", url);
        return 2;
    }
    /* the prompts */
    size_t len;
    char *text = read_file(prompts_path, &len);
    if (!text) return 1;
    char **prompts = NULL;
    int n_prompts = 0, cap = 0, rc = 1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        if (cJSON_IsString(p)) {
            if (n_prompts == cap) {
                cap = cap ? cap * 2 : 64;
                char **np = realloc(prompts, sizeof *np * (size_t)cap);
                if (!np) { cJSON_Delete(j); break; }
                prompts = np;
            }
            prompts[n_prompts++] = strdup(p->valuestring);
        }
        cJSON_Delete(j);
    }
    free(text);
    pid_t child = -1;
    rate_result (*res)[MAX_RATES] = calloc(2, sizeof *res);
    if (n_prompts == 0) { fprintf(stderr, "error: %s has no line with a \"prompt\" string\n", prompts_path); goto done; }
    if (!res) { fprintf(stderr, "error: out of memory\n"); goto done; }
    if (serve && (child = start_server(serve, port_s, serve_log)) < 0) { fprintf(stderr, "error: the server (serve %s --port %s) did not start\n", serve, port_s); goto done; }
    const bool tty = isatty(2);
    char names[2][64];
    snprintf(names[0], sizeof names[0], "full prefill");
    snprintf(names[1], sizeof names[1], "SpecPrefill keep %g", keep);
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < n_rates; i++) {
            if (tty) fprintf(stderr, "\r\033[K%s: %d requests at %g/s (about %.0f s)", names[m], n, rates[i], n / rates[i]);
            run_rate(host, port_s, key, prompts, n_prompts, n, rates[i], max_tokens, m ? keep : 0, seed + (uint64_t)i, &res[m][i]);
            if (res[m][i].done == 0 && i == 0 && m == 0) {
                if (tty) fprintf(stderr, "\r\033[K");
                fprintf(stderr, "error: no request succeeded: %s\n", res[m][i].first_error);
                goto done;
            }
        }
    if (tty) fprintf(stderr, "\r\033[K");
    const double best[2] = {rate_within(res[0], n_rates, slo), rate_within(res[1], n_rates, slo)};
    if (format == 1) {
        printf("{\"slo_ttft_s\": %g, \"requests_per_rate\": %d, \"max_tokens\": %d, \"modes\": [", slo, n, max_tokens);
        for (int m = 0; m < 2; m++) {
            printf("%s{\"mode\": \"%s\", \"keep\": %g, \"max_rate_within_slo\": %g, \"rates\": [", m ? ", " : "", m ? "specprefill" : "full", m ? keep : 1.0, best[m]);
            for (int i = 0; i < n_rates; i++) {
                const rate_result *r = &res[m][i];
                printf("%s{\"rate\": %g, \"done\": %d, \"failed\": %d, \"ttft_s\": [%.4f, %.4f, %.4f], \"tpot_s\": [%.5f, %.5f], "
                       "\"e2e_s\": [%.4f, %.4f, %.4f], \"requests_per_s\": %.3f, \"tokens_per_s\": %.1f}",
                       i ? ", " : "", r->rate, r->done, r->failed, r->ttft[0], r->ttft[1], r->ttft[2], r->tpot[0], r->tpot[1], r->e2e[0],
                       r->e2e[1], r->e2e[2], r->req_per_s, r->tok_per_s);
            }
            printf("]}");
        }
        printf("]}\n");
    } else {
        printf("| mode | rate (req/s) | done | failed | TTFT p50 | p90 | p99 | TPOT p50 | p90 | E2E p50 | p90 | p99 | req/s | tokens/s |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int m = 0; m < 2; m++)
            for (int i = 0; i < n_rates; i++) {
                const rate_result *r = &res[m][i];
                printf("| %s | %g | %d | %d | %.3f | %.3f | %.3f | %.4f | %.4f | %.3f | %.3f | %.3f | %.2f | %.0f |\n", names[m], r->rate, r->done,
                       r->failed, r->ttft[0], r->ttft[1], r->ttft[2], r->tpot[0], r->tpot[1], r->e2e[0], r->e2e[1], r->e2e[2], r->req_per_s,
                       r->tok_per_s);
            }
        printf("\nlargest rate with p90 TTFT <= %g s: %s %g req/s, %s %g req/s", slo, names[0], best[0], names[1], best[1]);
        if (best[0] > 0) printf(" (%.2fx)", best[1] / best[0]);
        printf("\n");
    }
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < n_rates; i++)
            if (res[m][i].failed) fprintf(stderr, "note: %s at %g/s: %d failed (%s)\n", names[m], rates[i], res[m][i].failed, res[m][i].first_error);
    if (svg) {
        const char *nm[2] = {names[0], names[1]};
        svg_plot(svg, res, n_rates, nm, slo);
    }
    rc = 0;
done:
    if (child > 0) {
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
    }
    for (int i = 0; i < n_prompts; i++) free(prompts[i]);
    free(prompts);
    free(res);
    return rc;
}
