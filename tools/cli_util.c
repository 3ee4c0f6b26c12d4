#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char *opt_value(int argc, char **argv, int *i, const char *name, const char *alias, bool *bad) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=') return a + n + 1;
    if (strcmp(a, name) != 0 && !(alias && strcmp(a, alias) == 0)) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", name);
        *bad = true;
        return NULL;
    }
    return argv[++*i];
}

bool opt_flag(char **argv, int i, const char *name, const char *alias) {
    return strcmp(argv[i], name) == 0 || (alias && strcmp(argv[i], alias) == 0);
}

bool parse_int(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool parse_float(const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) return false;
    *out = v;
    return true;
}

int parse_int_list(const char *s, long *out, int max_n, long min, long max) {
    char buf[256];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok && n < max_n; tok = strtok(NULL, ","))
        if (!parse_int(tok, min, max, &out[n++])) return -1;
    return n;
}

int parse_float_list(const char *s, double *out, int max_n, double min, double max) {
    char buf[256];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok && n < max_n; tok = strtok(NULL, ","))
        if (!parse_float(tok, min, max, &out[n++])) return -1;
    return n;
}

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
