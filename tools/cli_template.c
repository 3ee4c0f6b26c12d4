/* `specprefill template`: a chat template's rendering of a conversation, to compare with another
 * renderer (jinja2, llama.cpp). Interface is stable: the rendering on stdout, nothing else. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"

#define MAX_VARS 32

int cmd_template(int argc, char **argv) {
    const char *model_path = NULL, *file = NULL, *name = NULL, *messages_path = NULL, *bos = NULL, *eos = NULL, *vars[MAX_VARS];
    int n_vars = 0;
    bool gen = false;
    const cli_option options[] = {
        CLI_OPT("--model", "-m", CLI_TEXT, &model_path, 0, 0, "FILE", "the model: its template, BOS and EOS"),
        CLI_OPT("--file", NULL, CLI_TEXT, &file, 0, 0, "T.jinja", "a template of your own (instead of the model's)"),
        CLI_OPT("--chat-template", NULL, CLI_TEXT, &name, 0, 0, "NAME", "a built-in template: chatml, llama3, mistral-v7, mistral-nemo, llama2"),
        CLI_OPT("--messages", NULL, CLI_TEXT, &messages_path, 0, 0, "M.json", "the conversation: a JSON array of messages (- for stdin)"),
        CLI_OPT("--add-generation-prompt", NULL, CLI_FLAG, &gen, 0, 0, NULL, "open the assistant's turn at the end"),
        CLI_OPT("--bos", NULL, CLI_TEXT, &bos, 0, 0, "TEXT", "bos_token", .shown_default = "the model's, or empty"),
        CLI_OPT("--eos", NULL, CLI_TEXT, &eos, 0, 0, "TEXT", "eos_token", .shown_default = "the model's, or empty"),
        CLI_OPT("--var", NULL, CLI_TEXTS, vars, 0, 0, "NAME=JSON", "another variable: tools=[...], enable_thinking=false, date_string=\"1 Jan 2025\"",
                .count = &n_vars, .max_count = MAX_VARS),
        CLI_OPTIONS_END,
    };
    const cli_command cmd = {"template (-m MODEL | --file T.jinja | --chat-template NAME) --messages M.json [options]",
                             "prints a chat template's rendering of a conversation, as transformers renders it", options, NULL, NULL, 0, NULL};
    const int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0) return parsed;
    if (!messages_path || (!model_path && !file && !name) || (file && name)) {
        fprintf(stderr, "error: need --messages and a template: -m MODEL, --file T.jinja or --chat-template NAME (see --help)\n");
        return 2;
    }
    int rc = 1;
    sp_model *m = NULL;
    char *source = NULL, *messages = NULL, *out = NULL, *obj = NULL;
    /* the variables as one JSON object: bos/eos as strings, each --var's value as JSON */
    cJSON *vars_obj = cJSON_CreateObject();
    for (int i = 0; vars_obj && i < n_vars; i++) {
        const char *eq = strchr(vars[i], '=');
        cJSON *v = eq && eq != vars[i] ? cJSON_Parse(eq + 1) : NULL;
        if (!v) { fprintf(stderr, "error: --var %s: NAME=JSON expected\n", vars[i]); rc = 2; goto done; }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - vars[i]), vars[i]);
        cJSON_AddItemToObject(vars_obj, name, v);
    }
    if (vars_obj && bos) cJSON_AddStringToObject(vars_obj, "bos_token", bos);
    if (vars_obj && eos) cJSON_AddStringToObject(vars_obj, "eos_token", eos);
    if (!vars_obj || !(obj = cJSON_PrintUnformatted(vars_obj))) { fprintf(stderr, "error: out of memory\n"); goto done; }
    if (!(messages = read_file(messages_path, NULL))) goto done;
    if (file && !(source = read_file(file, NULL))) goto done;
    if (name && !sp_chat_builtin(name)) { fprintf(stderr, "error: no built-in template '%s' (chatml, llama3, mistral-v7, mistral-nemo, llama2)\n", name); goto done; }
    if (model_path && sp_model_load(model_path, &m) != SP_OK) { fail_status("loading model"); goto done; }
    if (sp_chat_apply_json(m, source ? source : name ? sp_chat_builtin(name) : NULL, messages, obj, gen, &out) != SP_OK) {
        fail_status("template");
        goto done;
    }
    fwrite(out, 1, strlen(out), stdout);
    rc = 0;
done:
    cJSON_Delete(vars_obj);
    free(obj); free(source); free(messages); free(out);
    sp_model_free(m);
    return rc;
}
