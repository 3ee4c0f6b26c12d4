/* The command line's option parser: see options.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static bool takes_value(const cli_option *o) {
    return o->kind != CLI_FLAG && o->kind != CLI_UNFLAG;
}

static bool parse_number(const char *s, double min, double max, bool integer, double *out) {
    char *end;
    errno = 0;
    const double v = integer ? (double)strtoll(s, &end, 10) : strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) return false;
    *out = v;
    return true;
}

/* The index of `s` in the choices "a|b|c", or -1. */
static int choice_index(const char *choices, const char *s) {
    const size_t n = strlen(s);
    int i = 0;
    for (const char *c = choices; c; i++) {
        const char *bar = strchr(c, '|');
        const size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, s, n) == 0) return i;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

static bool print_choice(FILE *f, const char *choices, int index) {
    for (const char *c = choices; c; index--) {
        const char *bar = strchr(c, '|');
        const int len = bar ? (int)(bar - c) : (int)strlen(c);
        if (index == 0) return fprintf(f, "%.*s", len, c) > 0;
        c = bar ? bar + 1 : NULL;
    }
    return false;
}

/* " (default X)" from the variable itself, so that the help shows what the command will use. */
static void print_default(FILE *f, const cli_option *o) {
    if (o->shown_default) {
        if (*o->shown_default) fprintf(f, " (default %s)", o->shown_default);
        return;
    }
    switch (o->kind) {
    case CLI_TEXT:
        if (*(const char **)o->value) fprintf(f, " (default %s)", *(const char **)o->value);
        break;
    case CLI_CHOICE: fputs(" (default ", f); print_choice(f, o->arg, *(int *)o->value); fputc(')', f); break;
    case CLI_INT: fprintf(f, " (default %d)", *(int *)o->value); break;
    case CLI_U64: fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)o->value); break;
    case CLI_FLOAT: fprintf(f, " (default %g)", (double)*(float *)o->value); break;
    case CLI_DOUBLE: fprintf(f, " (default %g)", *(double *)o->value); break;
    case CLI_INTS:
    case CLI_DOUBLES:
        if (*o->count > 0) {
            fputs(" (default ", f);
            for (int i = 0; i < *o->count; i++) {
                if (i) fputc(',', f);
                if (o->kind == CLI_INTS) fprintf(f, "%d", ((int *)o->value)[i]);
                else fprintf(f, "%g", ((double *)o->value)[i]);
            }
            fputc(')', f);
        }
        break;
    default: break;
    }
}

static void print_help(const cli_command *cmd) {
    printf("usage: specprefill %s\n", cmd->usage);
    if (cmd->about) printf("%s\n", cmd->about);
    for (const cli_option *o = cmd->options; o->kind != CLI_END; o++) {
        if (o->kind == CLI_SECTION) { printf("%s:\n", o->help); continue; }
        char left[96];
        int n = snprintf(left, sizeof left, "  %s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name);
        if (takes_value(o) && n < (int)sizeof left)
            snprintf(left + n, sizeof left - (size_t)n, " %s", o->kind == CLI_CHOICE ? o->arg : o->arg ? o->arg : "X");
        printf("%-26s%s%s", left, strlen(left) >= 26 ? "  " : "", o->help);
        if (o->kind == CLI_TEXTS) printf(" (repeatable, up to %d)", o->max_count);
        print_default(stdout, o);
        putchar('\n');
    }
    printf("%-26sthis text\n", "  -h, --help");
    if (cmd->notes) printf("%s\n", cmd->notes);
}

static const cli_option *find(const cli_option *opts, const char *arg, const char **inline_value) {
    *inline_value = NULL;
    for (const cli_option *o = opts; o->kind != CLI_END; o++) {
        if (o->kind == CLI_SECTION) continue;
        if (strcmp(arg, o->name) == 0 || (o->alias && strcmp(arg, o->alias) == 0)) return o;
        const size_t n = strlen(o->name);
        if (takes_value(o) && strncmp(arg, o->name, n) == 0 && arg[n] == '=') {
            *inline_value = arg + n + 1;
            return o;
        }
    }
    return NULL;
}

static bool is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* Stores one value; false if it is out of range or malformed (the caller reports). */
static bool store(const cli_option *o, const char *v, const char **why) {
    double d;
    switch (o->kind) {
    case CLI_TEXT: *(const char **)o->value = v; return true;
    case CLI_TEXTS:
        if (*o->count >= o->max_count) { *why = "given too many times"; return false; }
        ((const char **)o->value)[(*o->count)++] = v;
        return true;
    case CLI_CHOICE: {
        const int i = choice_index(o->arg, v);
        if (i < 0) return false;
        *(int *)o->value = i;
        return true;
    }
    case CLI_INT:
        if (!parse_number(v, o->min, o->max, true, &d)) return false;
        *(int *)o->value = (int)d;
        return true;
    case CLI_U64:
        if (!parse_number(v, o->min, o->max, true, &d)) return false;
        *(uint64_t *)o->value = (uint64_t)d;
        return true;
    case CLI_FLOAT:
        if (!parse_number(v, o->min, o->max, false, &d)) return false;
        *(float *)o->value = (float)d;
        return true;
    case CLI_DOUBLE: return parse_number(v, o->min, o->max, false, (double *)o->value);
    case CLI_INTS:
    case CLI_DOUBLES: {
        /* parse all items first: a bad list leaves the default untouched */
        double items[64];
        int n = 0;
        const char *p = v;
        for (;;) {
            const char *comma = strchr(p, ',');
            char item[64];
            const size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (n == o->max_count || n == 64) { *why = "has too many items"; return false; }
            if (len == 0 || len >= sizeof item) return false;
            memcpy(item, p, len);
            item[len] = 0;
            if (!parse_number(item, o->min, o->max, o->kind == CLI_INTS, &items[n++])) return false;
            if (!comma) break;
            p = comma + 1;
        }
        for (int i = 0; i < n; i++) {
            if (o->kind == CLI_INTS) ((int *)o->value)[i] = (int)items[i];
            else ((double *)o->value)[i] = items[i];
        }
        *o->count = n;
        return true;
    }
    default: return false;
    }
}

int cli_parse(const cli_command *cmd, int argc, char **argv) {
    /* --help first, before any value changes the defaults it shows */
    for (int i = 1; i < argc; i++) {
        const char *inline_value;
        const cli_option *o = find(cmd->options, argv[i], &inline_value);
        if (o && takes_value(o) && !inline_value) i++;
        else if (!o && is_help(argv[i])) { print_help(cmd); return 0; }
    }
    if (cmd->n_positional) *cmd->n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        const cli_option *o = find(cmd->options, a, &v);
        if (!o) {
            if (cmd->positional && (a[0] != '-' || a[1] == 0)) {
                if (*cmd->n_positional == cmd->max_positional) {
                    fprintf(stderr, "error: unexpected argument '%s' (see --help)\n", a);
                    return 2;
                }
                cmd->positional[(*cmd->n_positional)++] = a;
                continue;
            }
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (o->kind == CLI_FLAG || o->kind == CLI_UNFLAG) {
            *(bool *)o->value = o->kind == CLI_FLAG;
            continue;
        }
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s needs a value (%s)\n", o->name, o->arg ? o->arg : "see --help");
                return 2;
            }
            v = argv[++i];
        }
        const char *why = NULL;
        if (!store(o, v, &why)) {
            if (why) fprintf(stderr, "error: %s %s (at most %d)\n", o->name, why, o->max_count);
            else if (o->kind == CLI_CHOICE) fprintf(stderr, "error: bad value for %s: '%s' (one of %s)\n", o->name, v, o->arg);
            else if (o->kind == CLI_INTS || o->kind == CLI_DOUBLES)
                fprintf(stderr, "error: bad value for %s: '%s' (comma-separated %s in [%g, %g])\n", o->name, v,
                        o->kind == CLI_INTS ? "integers" : "numbers", o->min, o->max);
            else
                fprintf(stderr, "error: bad value for %s: '%s' (%s in [%g, %g])\n", o->name, v,
                        o->kind == CLI_INT || o->kind == CLI_U64 ? "an integer" : "a number", o->min, o->max);
            return 2;
        }
    }
    return -1;
}
