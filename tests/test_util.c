#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *shared_path(const char *rel, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", SP_SHARED_DIR, rel);
    return buf;
}

char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

cJSON *load_json(const char *path) {
    char *text = slurp(path, NULL);
    if (!text) fail_msg("cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fail_msg("cannot parse %s", path);
    return j;
}

const char *temp_path(const char *name, char *buf, size_t size) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, size, "%s/sp-test-%d-%s", dir && *dir ? dir : "/tmp", (int)getpid(), name);
    return buf;
}

const char *make_test_model(const char *args, const char *name, char *buf, size_t size) {
    temp_path(name, buf, size);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/specprefill make-model %s -o %s 2>/dev/null", SP_BUILD_DIR, args, buf);
    if (system(cmd) != 0) fail_msg("make-model failed: %s", cmd);
    return buf;
}

sp_model *load_fixture_model(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/models/%s", SP_SHARED_DIR, name);
    sp_model *m = NULL;
    if (sp_model_load(path, &m) != SP_OK) fail_msg("cannot load %s: %s", path, sp_last_error());
    return m;
}
