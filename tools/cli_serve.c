/* `specprefill serve`: the OpenAI-compatible server (src/server) with its options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "specprefill_server.h"

int cmd_serve(int argc, char **argv) {
    sp_server_config c = {0};
    c.host = "127.0.0.1";
    c.port = 8080;
    c.parallel = 1;
    c.queue = 16;
    c.read_timeout = 10;
    c.conn_per_ip = -1;
    c.shutdown_timeout = 10;
    c.cache_ram_mib = 1024;
    c.step_tokens = 256;
    int spec_reuse = 0;
    c.spec = sp_specprefill_default_params();
    c.sampling = sp_sampling_default_params();
    c.model_params = sp_model_default_params();
    c.spec_default = true;
    c.spec_decode_default = true;
    c.spec_decode = sp_specdecode_default_params();
    int max_body = 8 << 20;
    cli_rope rope = {0, 0, 0};
    const char *tmpl = NULL, *tmpl_file = NULL;
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &c.model_path, 0, 0, "FILE", "the model (GGUF)"),
        CLI_OPT("--host", NULL, CLI_TEXT, &c.host, 0, 0, "ADDR", "IPv4 address to listen on"),
        CLI_OPT("--port", NULL, CLI_INT, &c.port, 1, 65535, "N", "TCP port"),
        CLI_OPT("--parallel", "-np", CLI_INT, &c.parallel, 1, 256, "N", "slots: requests processed at once, their decode steps batched"),
        CLI_OPT("--queue", NULL, CLI_INT, &c.queue, 0, 100000, "M", "requests waiting beyond the slots; more get 503"),
        CLI_OPT("--api-key", NULL, CLI_TEXT, &c.api_key, 0, 0, "KEY", "require Authorization: Bearer KEY on /v1/* and /metrics", .shown_default = "none"),
        CLI_OPT("--ctx-size", "-c", CLI_INT, &c.ctx_size, 16, 1 << 24, "N", "context per slot, prompt + output", .shown_default = "min(model's, 4096)"),
        CLI_ROPE_OPTIONS(&rope),
        CLI_OPT("--cache-ram", NULL, CLI_INT, &c.cache_ram_mib, 0, 1 << 20, "MiB",
                "memory for conversations set aside when their slot is needed (least recently used dropped first); 0 = none"),
        CLI_OPT("--step-tokens", NULL, CLI_INT, &c.step_tokens, 16, 1 << 16, "N",
                "prompt tokens per scheduler step: each step is one forward pass with every stream's next token and up to N tokens of prompts being read"),
        CLI_OPT("--max-body", NULL, CLI_INT, &max_body, 1024, 1 << 30, "BYTES", "request body limit"),
        CLI_OPT("--read-timeout", NULL, CLI_INT, &c.read_timeout, 1, 3600, "SECONDS",
                "close a connection idle this long while sending its request or between requests"),
        CLI_OPT("--conn-per-ip", NULL, CLI_INT, &c.conn_per_ip, 0, 1 << 20, "N",
                "connections one client address may hold; 0 = no cap (behind a proxy, where every request comes from its address)",
                .shown_default = "parallel + queue + 8"),
        CLI_OPT("--shutdown-timeout", NULL, CLI_INT, &c.shutdown_timeout, 0, 3600, "SECONDS",
                "on SIGTERM/SIGINT: queued requests get 503, running ones this long to finish"),
        CLI_OPT("--model-name", NULL, CLI_TEXT, &c.model_name, 0, 0, "NAME", "the id in responses and /v1/models", .shown_default = "the file name"),
        CLI_OPT("--replica", NULL, CLI_TEXT, &c.replica, 0, 0, "NAME", "this server's name among replicas, in /health and /metrics",
                .shown_default = "HOST:PORT"),
        CLI_CHAT_TEMPLATE_OPTIONS(&tmpl, &tmpl_file, &c.chat_template_kwargs),
        CLI_THREADS_OPTION(&c.threads),
        CLI_LOAD_OPTIONS(&c.model_params),
        CLI_SECTION_ROW("sampling defaults (each request may override them)"),
        CLI_SAMPLING_OPTIONS(&c.sampling),
        CLI_SECTION_ROW("speculative prefill (defaults; a request's \"speculative_prefill\" object overrides them)"),
        CLI_OPT("--draft", NULL, CLI_TEXT, &c.draft_path, 0, 0, "FILE", "draft model; speculative prefill on by default"),
        CLI_OPT("--self-spec", NULL, CLI_FLAG, &c.self_spec, 0, 0, NULL, "no draft: the main model's first layers score"),
        CLI_OPT("--no-spec-default", NULL, CLI_UNFLAG, &c.spec_default, 0, 0, NULL, "only requests that ask get speculative prefill"),
        CLI_SPECPREFILL_KEEP_OPTIONS(&c.spec),
        CLI_OPT("--spec-reuse", NULL, CLI_CHOICE, &spec_reuse, 0, 0, "kept|draft",
                "a follow-up keeps the main model's kept tokens of the shared start, or only the draft's cache (selecting the whole prompt afresh, as cold)"),
        CLI_SPECPREFILL_SCORING_OPTIONS(&c.spec),
        CLI_SECTION_ROW("speculative decoding (defaults; a request's \"speculative_decoding\" overrides them)"),
        CLI_OPT("--no-spec-decode", NULL, CLI_UNFLAG, &c.spec_decode_default, 0, 0, NULL, "only requests that ask get speculative decoding",
                .shown_default = "on with --draft"),
        CLI_OPT("--spec-draft-max", NULL, CLI_INT, &c.spec_decode.draft_max, 1, SP_SPECDECODE_MAX_DRAFT, "N", "most tokens the draft proposes per step"),
        CLI_OPT("--spec-draft-min", NULL, CLI_INT, &c.spec_decode.draft_min, 1, SP_SPECDECODE_MAX_DRAFT, "N", "fewest tokens the draft proposes per step"),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"serve -m MODEL.gguf [options]",
                             "an OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics",
                             options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!c.model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    c.max_body = (size_t)max_body;
    c.rope_scaling = (sp_rope_scaling)rope.kind;
    c.rope_scale = rope.scale;
    c.yarn_orig_ctx = rope.orig_ctx;
    c.spec_reuse_kept = spec_reuse == 0;
    if (c.conn_per_ip < 0) c.conn_per_ip = c.parallel + c.queue + 8;
    char *tmpl_owned = NULL;
    const int tc = cli_chat_template(tmpl, tmpl_file, &c.chat_template, &tmpl_owned);
    if (tc >= 0) return tc;
    if (sp_specprefill_params_check(&c.spec) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 2; }
    if (c.spec_decode.draft_min > c.spec_decode.draft_max) { fprintf(stderr, "error: --spec-draft-min exceeds --spec-draft-max\n"); return 2; }
    if (c.ctx_size == 0) {
        sp_model *m;
        if (sp_model_load(c.model_path, &m) != SP_OK) return fail_status("loading model");
        const int train = sp_model_get_info(m)->n_ctx_train;
        c.ctx_size = train > 0 && train < 4096 ? train : 4096;
        sp_model_free(m);
    }
    const int rc = sp_server_run(&c);
    free(tmpl_owned);
    return rc;
}
