#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "specprefill_server.h"

static void usage(void) {
    printf("usage: specprefill serve -m MODEL.gguf [options]\n"
           "  --host ADDR          IPv4 address to listen on (default 127.0.0.1)\n"
           "  --port N             (default 8080)\n"
           "  --parallel N         slots: requests processed at once, their decode steps batched (default 1)\n"
           "  --queue M            requests waiting beyond the slots; more get 503 (default 16)\n"
           "  --api-key KEY        require Authorization: Bearer KEY on /v1/* and /metrics\n"
           "  -c, --ctx-size N     context per slot, prompt + output (default min(model, 4096))\n"
           "  --max-body BYTES     request body limit (default 8 MiB)\n"
           "  --model-name NAME    the id in responses and /v1/models (default the file name)\n"
           "  --chat-template NAME override the model's template (llama3, chatml, mistral-v7, mistral-nemo, llama2)\n"
           "  -t, --threads N      threads (default: all cores)\n"
           "  --temp, --top-k, --top-p, --min-p, --seed   sampling defaults (requests override)\n"
           "speculative prefill (per-request \"speculative_prefill\" overrides):\n"
           "  --draft FILE         draft model; speculative prefill on by default\n"
           "  --self-spec          no draft: the main model's first layers score\n"
           "  --no-spec-default    only requests that ask get speculative prefill\n"
           "  --keep R --chunk N --lookahead K --pool N --keep-mass M --self-layers L --draft-any-vocab\n"
           "                       as for generate (defaults 0.3, 32, 8, 13, off)\n");
}

int cmd_serve(int argc, char **argv) {
    sp_server_config c = {0};
    c.host = "127.0.0.1";
    c.port = 8080;
    c.parallel = 1;
    c.queue = 16;
    c.max_body = 8u << 20;
    c.spec = sp_specprefill_default_params();
    c.sampling = sp_sampling_default_params();
    c.spec_default = true;
    long port = 8080, parallel = 1, queue = 16, ctx = 0, threads = 0, max_body = 8 << 20, chunk = 32, lookahead = 8, pool = 13, top_k = 40, seed = 0, self_layers = 0;
    double keep = 0.3, mass = 0, temp = 0.8, top_p = 0.95, min_p = 0.05;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        bool ok = true;
        if ((v = opt_value(argc, argv, &i, "--model", "-m", &bad))) c.model_path = v;
        else if ((v = opt_value(argc, argv, &i, "--draft", NULL, &bad))) c.draft_path = v;
        else if ((v = opt_value(argc, argv, &i, "--host", NULL, &bad))) c.host = v;
        else if ((v = opt_value(argc, argv, &i, "--port", NULL, &bad))) ok = parse_int(v, 1, 65535, &port);
        else if ((v = opt_value(argc, argv, &i, "--parallel", "-np", &bad))) ok = parse_int(v, 1, 256, &parallel);
        else if ((v = opt_value(argc, argv, &i, "--queue", NULL, &bad))) ok = parse_int(v, 0, 100000, &queue);
        else if ((v = opt_value(argc, argv, &i, "--api-key", NULL, &bad))) c.api_key = v;
        else if ((v = opt_value(argc, argv, &i, "--ctx-size", "-c", &bad))) ok = parse_int(v, 16, 1 << 24, &ctx);
        else if ((v = opt_value(argc, argv, &i, "--max-body", NULL, &bad))) ok = parse_int(v, 1024, 1L << 30, &max_body);
        else if ((v = opt_value(argc, argv, &i, "--model-name", NULL, &bad))) c.model_name = v;
        else if ((v = opt_value(argc, argv, &i, "--chat-template", NULL, &bad))) c.chat_template = v;
        else if ((v = opt_value(argc, argv, &i, "--threads", "-t", &bad))) ok = parse_int(v, 0, 256, &threads);
        else if ((v = opt_value(argc, argv, &i, "--temp", NULL, &bad))) ok = parse_float(v, 0, 2, &temp);
        else if ((v = opt_value(argc, argv, &i, "--top-k", NULL, &bad))) ok = parse_int(v, 0, 1 << 24, &top_k);
        else if ((v = opt_value(argc, argv, &i, "--top-p", NULL, &bad))) ok = parse_float(v, 1e-9, 1, &top_p);
        else if ((v = opt_value(argc, argv, &i, "--min-p", NULL, &bad))) ok = parse_float(v, 0, 1, &min_p);
        else if ((v = opt_value(argc, argv, &i, "--seed", NULL, &bad))) ok = parse_int(v, 0, 0x7fffffffL, &seed);
        else if ((v = opt_value(argc, argv, &i, "--keep", NULL, &bad))) ok = parse_float(v, 1e-6, 1, &keep);
        else if ((v = opt_value(argc, argv, &i, "--keep-mass", NULL, &bad))) ok = parse_float(v, 1e-6, 1, &mass);
        else if ((v = opt_value(argc, argv, &i, "--chunk", NULL, &bad))) ok = parse_int(v, 1, 1 << 20, &chunk);
        else if ((v = opt_value(argc, argv, &i, "--lookahead", NULL, &bad))) ok = parse_int(v, 1, 256, &lookahead);
        else if ((v = opt_value(argc, argv, &i, "--pool", NULL, &bad))) ok = parse_int(v, 1, 1025, &pool);
        else if ((v = opt_value(argc, argv, &i, "--self-layers", NULL, &bad))) ok = parse_int(v, 1, 1024, &self_layers);
        else if (bad) return 2;
        else if (opt_flag(argv, i, "--self-spec", NULL)) c.self_spec = true;
        else if (opt_flag(argv, i, "--no-spec-default", NULL)) c.spec_default = false;
        else if (opt_flag(argv, i, "--draft-any-vocab", NULL)) c.spec.any_vocab = true;
        else if (opt_flag(argv, i, "--help", "-h")) { usage(); return 0; }
        else { fprintf(stderr, "error: unknown option '%s' (see --help)\n", argv[i]); return 2; }
        if (!ok) { fprintf(stderr, "error: bad value for %s\n", argv[i - 1]); return 2; }
    }
    if (!c.model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return 2; }
    c.port = (int)port;
    c.parallel = (int)parallel;
    c.queue = (int)queue;
    c.threads = (int)threads;
    c.max_body = (size_t)max_body;
    c.spec.keep_rate = (float)keep;
    c.spec.keep_mass = (float)mass;
    c.spec.chunk = (int)chunk;
    c.spec.lookahead = (int)lookahead;
    c.spec.pool_kernel = (int)pool;
    c.spec.self_layers = (int)self_layers;
    if (sp_specprefill_params_check(&c.spec) != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 2; }
    c.sampling.temperature = (float)temp;
    c.sampling.top_k = (int)top_k;
    c.sampling.top_p = (float)top_p;
    c.sampling.min_p = (float)min_p;
    c.sampling.seed = (uint64_t)seed;
    if (ctx == 0) {
        sp_model *m;
        if (sp_model_load(c.model_path, &m) != SP_OK) return fail_status("loading model");
        int train = sp_model_get_info(m)->n_ctx_train;
        ctx = train > 0 && train < 4096 ? train : 4096;
        sp_model_free(m);
    }
    c.ctx_size = (int)ctx;
    return sp_server_run(&c);
}
