#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

char *read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) { free(buf); buf = NULL; break; }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (f != stdin) fclose(f);
    if (!buf) {
        fprintf(stderr, "error: out of memory reading '%s'\n", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int fail_status(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, sp_last_error());
    return 1;
}

int cli_chat_template(const char *name, const char *file, const char **source, char **owned) {
    *source = NULL;
    *owned = NULL;
    if (name && file) { fprintf(stderr, "error: --chat-template and --chat-template-file: one or the other\n"); return 2; }
    if (name && !(*source = sp_chat_builtin(name))) {
        fprintf(stderr, "error: no built-in chat template '%s' (chatml, llama3, mistral-v7, mistral-nemo, llama2; or --chat-template-file)\n", name);
        return 2;
    }
    if (file && !(*source = *owned = read_file(file, NULL))) return 1;
    return -1;
}

void cli_rope_apply(const cli_rope *r, sp_context_params *p) {
    p->rope_scaling = (sp_rope_scaling)r->kind;
    p->rope_scale = r->scale;
    p->yarn_orig_ctx = r->orig_ctx;
}
