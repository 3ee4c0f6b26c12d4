#include "test_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *shared_path(const char *rel, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", SP_SHARED_DIR, rel);
    return buf;
}

bool shared_present(void) {
    char buf[1024];
    return access(shared_path("fixtures/README.md", buf, sizeof buf), R_OK) == 0;
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

/* Every temporary path handed out, removed when the test program ends (a run of the suite
 * wrote dozens of models to /tmp and left them there). */
static char *temp_files[256];
static int n_temp_files;

static void remove_temp_files(void) {
    for (int i = 0; i < n_temp_files; i++) {
        unlink(temp_files[i]);
        free(temp_files[i]);
    }
    n_temp_files = 0;
}

const char *temp_path(const char *name, char *buf, size_t size) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, size, "%s/sp-test-%d-%s", dir && *dir ? dir : "/tmp", (int)getpid(), name);
    for (int i = 0; i < n_temp_files; i++)
        if (strcmp(temp_files[i], buf) == 0) return buf;
    if (n_temp_files == 0) atexit(remove_temp_files);
    if (n_temp_files < (int)(sizeof temp_files / sizeof *temp_files) && (temp_files[n_temp_files] = strdup(buf))) n_temp_files++;
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

const char *test_model_path(const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/test-models/%s.gguf", SP_BUILD_DIR, name);
    /* reused while it is newer than the binary that writes it (an older make-model's is stale) */
    char bin[1100];
    snprintf(bin, sizeof bin, "%s/specprefill", SP_BUILD_DIR);
    struct stat model_st, bin_st;
    if (stat(buf, &model_st) == 0 && stat(bin, &bin_st) == 0 && model_st.st_mtime >= bin_st.st_mtime) return buf;
    char arch[16] = {0}, type[16] = {0};
    const char *dash = strchr(name, '-');
    if (!dash || dash - name >= (int)sizeof arch || strlen(dash + 1) >= sizeof type) fail_msg("bad test model name %s", name);
    memcpy(arch, name, (size_t)(dash - name));
    for (size_t i = 0; dash[1 + i]; i++) type[i] = (char)toupper((unsigned char)dash[1 + i]);
    const bool qwen = strcmp(arch, "llama") != 0;
    /* the seed follows the name, so each model has weights of its own */
    unsigned seed = 1;
    for (const char *c = name; *c; c++) seed = seed * 31 + (unsigned char)*c;
    char tmp[1200], cmd[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", buf, (int)getpid());
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/test-models && %s/specprefill make-model --arch %s --type %s --vocab-from %s/models/main.gguf "
             "--n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 768 --ctx 4096 --seed %u %s -o %s 2>/dev/null",
             SP_BUILD_DIR, SP_BUILD_DIR, arch, type, SP_SOURCE_DIR, seed % 100000, qwen ? "--tied --rope-base 1000000" : "", tmp);
    if (system(cmd) != 0) fail_msg("make-model failed: %s", cmd);
    /* written whole, then renamed: test programs running side by side never see half a file */
    if (rename(tmp, buf) != 0) fail_msg("cannot rename %s", tmp);
    return buf;
}

sp_model *load_test_model(const char *name) {
    char path[1024];
    test_model_path(name, path, sizeof path);
    sp_model *m = NULL;
    if (sp_model_load(path, &m) != SP_OK) fail_msg("cannot load %s: %s", path, sp_last_error());
    return m;
}
