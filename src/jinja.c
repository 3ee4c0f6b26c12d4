/*
 * A Jinja interpreter for chat templates (see jinja.h). Three parts, top to bottom:
 *   1. the template's text → items: text, {{ output }}, {% statement %} (whitespace control,
 *      trim_blocks and lstrip_blocks applied here, as Jinja's lexer does);
 *   2. items → a tree of statements, and each tag's tokens → expressions (Jinja's precedence);
 *   3. the evaluator, over sp_jv values, with Python's semantics where templates rely on them
 *      (truth, equality, str() of values, slicing by code points).
 * Every allocation comes from one arena; errors longjmp out of the render, which frees it.
 */
#include "jinja.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

enum {
    MAX_OUTPUT = 8 << 20,     /* bytes a render may produce */
    MAX_STEPS = 1000000,      /* loop iterations and macro calls, all together */
    MAX_DEPTH = 200,          /* nesting of expressions, statements and calls */
    MAX_ARENA = 256 << 20,    /* bytes of values */
};

typedef struct { const char *p; size_t n; } str;
typedef struct sp_jlist { sp_jv *v; int n, cap; } jlist;
typedef struct sp_jdict { str *k; sp_jv *v; int n, cap; } jdict;
typedef struct node node;
typedef struct expr expr;
typedef struct frame frame;
/* a macro, a built-in function, or a bound method (self + name) */
typedef struct sp_jcallable { const node *macro; frame *scope; const char *builtin; sp_jv self; } jcallable;

typedef struct block { struct block *next; size_t used, size; char data[]; } block;

struct frame { frame *parent; jdict vars; };

struct sp_jinja {
    block *arena;
    size_t arena_total;
    jmp_buf fail;
    char error[256];
    int line;               /* the template line being parsed or run, for errors */
    jdict globals;
    bool broken;            /* a constructor ran out of memory: the render fails */
    const char *line_src, *line_p; /* where line_at last counted to */
    int line_n;
    long steps;
    int depth;
};

/* ------------------------------------------------------------------ arena, errors */

static _Noreturn void fail(sp_jinja *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(j->error, sizeof j->error, "chat template line %d: %s", j->line, msg);
    longjmp(j->fail, 1);
}

static void *alloc(sp_jinja *j, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!j->arena || j->arena->used + n > j->arena->size) {
        size_t size = n > 65536 ? n : 65536;
        if (j->arena_total + size > MAX_ARENA) fail(j, "the template uses more than %d MiB", MAX_ARENA >> 20);
        block *b = malloc(sizeof *b + size);
        if (!b) fail(j, "out of memory");
        b->next = j->arena;
        b->used = 0;
        b->size = size;
        j->arena = b;
        j->arena_total += size;
    }
    void *p = j->arena->data + j->arena->used;
    j->arena->used += n;
    memset(p, 0, n);
    return p;
}

static str str_dup(sp_jinja *j, const char *p, size_t n) {
    char *s = alloc(j, n + 1);
    memcpy(s, p, n);
    return (str){s, n};
}

sp_jinja *sp_jinja_new(void) { return calloc(1, sizeof(sp_jinja)); }

void sp_jinja_free(sp_jinja *j) {
    if (!j) return;
    for (block *b = j->arena, *next; b; b = next) { next = b->next; free(b); }
    free(j);
}

/* ------------------------------------------------------------------ values */

static bool has_sub(const char *h, size_t hn, const char *x, size_t xn) {
    if (xn == 0) return true;
    for (size_t i = 0; i + xn <= hn; i++)
        if (h[i] == x[0] && memcmp(h + i, x, xn) == 0) return true;
    return false;
}

static sp_jv mk_undef(void) { return (sp_jv){JV_UNDEFINED, {0}}; }
static sp_jv mk_none(void) { return (sp_jv){JV_NONE, {0}}; }
static sp_jv mk_bool(bool b) { sp_jv v = {JV_BOOL, {0}}; v.u.b = b; return v; }
static sp_jv mk_int(int64_t i) { sp_jv v = {JV_INT, {0}}; v.u.i = i; return v; }
static sp_jv mk_float(double f) { sp_jv v = {JV_FLOAT, {0}}; v.u.f = f; return v; }
static sp_jv mk_str(str s) { sp_jv v = {JV_STRING, {0}}; v.u.s.p = s.p; v.u.s.n = s.n; return v; }
static sp_jv mk_cstr(sp_jinja *j, const char *s) { return mk_str(str_dup(j, s, strlen(s))); }
static str as_str(sp_jv v) { return (str){v.u.s.p, v.u.s.n}; }
static bool str_eq(str a, const char *b) { return a.n == strlen(b) && memcmp(a.p, b, a.n) == 0; }
static bool str_same(str a, str b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

static sp_jv mk_list(sp_jinja *j) { sp_jv v = {JV_LIST, {0}}; v.u.list = alloc(j, sizeof(jlist)); return v; }
static sp_jv mk_dict(sp_jinja *j) { sp_jv v = {JV_DICT, {0}}; v.u.dict = alloc(j, sizeof(jdict)); return v; }

/* An arena array with room for one more of n elements: v itself, or a copy twice as large. */
static void *grow(sp_jinja *j, void *v, int n, int *cap, size_t elem) {
    if (n < *cap) return v;
    const int c = *cap ? 2 * *cap : 8;
    void *nv = alloc(j, (size_t)c * elem);
    if (n) memcpy(nv, v, (size_t)n * elem);
    *cap = c;
    return nv;
}

static void list_push(sp_jinja *j, jlist *l, sp_jv v) {
    l->v = grow(j, l->v, l->n, &l->cap, sizeof *l->v);
    l->v[l->n++] = v;
}

static sp_jv *dict_find(const jdict *d, str k) {
    for (int i = 0; i < d->n; i++)
        if (str_same(d->k[i], k)) return &d->v[i];
    return NULL;
}

static void dict_put(sp_jinja *j, jdict *d, str k, sp_jv v) {
    sp_jv *at = dict_find(d, k);
    if (at) { *at = v; return; }
    int cap = d->cap;
    d->k = grow(j, d->k, d->n, &cap, sizeof *d->k);
    d->v = grow(j, d->v, d->n, &d->cap, sizeof *d->v);
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

/* The constructors catch a failed allocation themselves (no render is running to catch it): the
 * value is undefined and the next render reports it. */
#define GUARDED(fallback) if (setjmp(j->fail)) { j->broken = true; fallback; }
sp_jv sp_jinja_string(sp_jinja *j, const char *s, size_t n) { GUARDED(return mk_undef()) return mk_str(str_dup(j, s, n)); }
sp_jv sp_jinja_bool(bool b) { return mk_bool(b); }
sp_jv sp_jinja_none(void) { return mk_none(); }
sp_jv sp_jinja_list(sp_jinja *j) { GUARDED(return mk_undef()) return mk_list(j); }
sp_jv sp_jinja_dict(sp_jinja *j) { GUARDED(return mk_undef()) return mk_dict(j); }
void sp_jinja_list_push(sp_jinja *j, sp_jv list, sp_jv v) {
    GUARDED(return)
    if (list.kind == JV_LIST) list_push(j, list.u.list, v);
}
void sp_jinja_dict_set(sp_jinja *j, sp_jv dict, const char *key, sp_jv v) {
    GUARDED(return)
    if (dict.kind == JV_DICT) dict_put(j, dict.u.dict, str_dup(j, key, strlen(key)), v);
}
void sp_jinja_set(sp_jinja *j, const char *name, sp_jv v) {
    GUARDED(return)
    dict_put(j, &j->globals, str_dup(j, name, strlen(name)), v);
}
bool sp_jinja_set_all(sp_jinja *j, sp_jv vars) {
    if (vars.kind != JV_DICT) return false;
    GUARDED(return false)
    for (int i = 0; i < vars.u.dict->n; i++) dict_put(j, &j->globals, vars.u.dict->k[i], vars.u.dict->v[i]);
    return true;
}

static const char *kind_name(sp_jv v) {
    static const char *const names[] = {"an undefined value", "none", "a boolean", "an integer", "a float", "a string", "a list", "a dict", "a callable"};
    return names[v.kind];
}

static bool truthy(sp_jv v) {
    switch (v.kind) {
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STRING: return v.u.s.n > 0;
    case JV_LIST: return v.u.list->n > 0;
    case JV_DICT: return v.u.dict->n > 0;
    case JV_CALLABLE: return true;
    default: return false;
    }
}

static bool is_number(sp_jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }
static double num(sp_jv v) { return v.kind == JV_FLOAT ? v.u.f : v.kind == JV_INT ? (double)v.u.i : v.u.b; }

static bool equal(sp_jv a, sp_jv b) {
    if (is_number(a) && is_number(b)) return num(a) == num(b);
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_STRING: return str_same(as_str(a), as_str(b));
    case JV_LIST:
        if (a.u.list->n != b.u.list->n) return false;
        for (int i = 0; i < a.u.list->n; i++) if (!equal(a.u.list->v[i], b.u.list->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.dict->n != b.u.dict->n) return false;
        for (int i = 0; i < a.u.dict->n; i++) {
            sp_jv *o = dict_find(b.u.dict, a.u.dict->k[i]);
            if (!o || !equal(a.u.dict->v[i], *o)) return false;
        }
        return true;
    case JV_CALLABLE: return a.u.fn == b.u.fn;
    default: return true; /* none, undefined */
    }
}

/* ------------------------------------------------------------------ text buffers */

typedef struct { sp_jinja *j; char *p; size_t n, cap; bool to_output; } buf;

static void buf_put(buf *b, const char *s, size_t n) {
    if (b->to_output && b->n + n > MAX_OUTPUT) fail(b->j, "the rendering is longer than %d MiB", MAX_OUTPUT >> 20);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = b->to_output ? realloc(b->p, cap) : alloc(b->j, cap);
        if (!p) fail(b->j, "out of memory");
        if (!b->to_output && b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_printf(buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_put(b, tmp, (size_t)(k < (int)sizeof tmp ? k : (int)sizeof tmp - 1));
}
static str buf_str(buf *b) { return b->p ? (str){b->p, b->n} : (str){"", 0}; }

/* Python's repr of a float: the shortest digits that read back, with ".0" on whole numbers. */
static void put_float(buf *b, double f) {
    if (isnan(f)) { buf_puts(b, "nan"); return; }
    if (isinf(f)) { buf_puts(b, f > 0 ? "inf" : "-inf"); return; }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    const double a = fabs(f);
    if (a >= 1e16 || (a < 1e-4 && a > 0)) { /* Python's exponent form: 1e+16, 1e-05 */
        buf_puts(b, tmp);
        return;
    }
    if (strchr(tmp, 'e')) snprintf(tmp, sizeof tmp, "%.1f", f); /* %g chose an exponent Python would not */
    buf_puts(b, tmp);
    if (!strchr(tmp, '.')) buf_puts(b, ".0");
}

static void put_repr(buf *b, sp_jv v);

/* str(v) as Python prints it */
static void put_value(buf *b, sp_jv v) {
    switch (v.kind) {
    case JV_UNDEFINED: break;
    case JV_NONE: buf_puts(b, "None"); break;
    case JV_BOOL: buf_puts(b, v.u.b ? "True" : "False"); break;
    case JV_INT: buf_printf(b, "%lld", (long long)v.u.i); break;
    case JV_FLOAT: put_float(b, v.u.f); break;
    case JV_STRING: buf_put(b, v.u.s.p, v.u.s.n); break;
    default: put_repr(b, v); break;
    }
}

static void put_repr(buf *b, sp_jv v) {
    if (v.kind == JV_STRING) {
        /* Python picks the quote that needs no escaping */
        const bool dq = memchr(v.u.s.p, '\'', v.u.s.n) && !memchr(v.u.s.p, '"', v.u.s.n);
        buf_puts(b, dq ? "\"" : "'");
        for (size_t i = 0; i < v.u.s.n; i++) {
            const unsigned char c = (unsigned char)v.u.s.p[i];
            if (c == '\\') buf_puts(b, "\\\\");
            else if (c == '\n') buf_puts(b, "\\n");
            else if (c == '\r') buf_puts(b, "\\r");
            else if (c == '\t') buf_puts(b, "\\t");
            else if (c == '\'' && !dq) buf_puts(b, "\\'");
            else if (c < 0x20 || c == 0x7f) buf_printf(b, "\\x%02x", c);
            else buf_put(b, (const char *)&c, 1);
        }
        buf_puts(b, dq ? "\"" : "'");
    } else if (v.kind == JV_LIST) {
        buf_puts(b, "[");
        for (int i = 0; i < v.u.list->n; i++) { if (i) buf_puts(b, ", "); put_repr(b, v.u.list->v[i]); }
        buf_puts(b, "]");
    } else if (v.kind == JV_DICT) {
        buf_puts(b, "{");
        for (int i = 0; i < v.u.dict->n; i++) {
            if (i) buf_puts(b, ", ");
            put_repr(b, mk_str(v.u.dict->k[i]));
            buf_puts(b, ": ");
            put_repr(b, v.u.dict->v[i]);
        }
        buf_puts(b, "}");
    } else if (v.kind == JV_CALLABLE) {
        buf_puts(b, "<function>");
    } else {
        put_value(b, v);
    }
}

/* JSON as Python's json.dumps writes it (transformers' tojson: ensure_ascii off by default). */
typedef struct { int indent; bool ascii; sp_jv item_sep, key_sep; bool custom; } json_style;

static void put_json(sp_jinja *j, buf *b, sp_jv v, const json_style *st, int level) {
    const int indent = st->indent;
    const bool ascii = st->ascii;
    if (++j->depth > MAX_DEPTH) fail(j, "tojson: nested more than %d deep", MAX_DEPTH);
    switch (v.kind) {
    case JV_NONE: buf_puts(b, "null"); break;
    case JV_BOOL: buf_puts(b, v.u.b ? "true" : "false"); break;
    case JV_INT: buf_printf(b, "%lld", (long long)v.u.i); break;
    case JV_FLOAT:
        if (isnan(v.u.f)) buf_puts(b, "NaN");
        else if (isinf(v.u.f)) buf_puts(b, v.u.f > 0 ? "Infinity" : "-Infinity");
        else put_float(b, v.u.f);
        break;
    case JV_STRING: {
        buf_puts(b, "\"");
        const unsigned char *s = (const unsigned char *)v.u.s.p;
        for (size_t i = 0; i < v.u.s.n; i++) {
            const unsigned char c = s[i];
            if (c == '"') buf_puts(b, "\\\"");
            else if (c == '\\') buf_puts(b, "\\\\");
            else if (c == '\n') buf_puts(b, "\\n");
            else if (c == '\r') buf_puts(b, "\\r");
            else if (c == '\t') buf_puts(b, "\\t");
            else if (c == '\b') buf_puts(b, "\\b");
            else if (c == '\f') buf_puts(b, "\\f");
            else if (c < 0x20 || (ascii && c == 0x7f)) buf_printf(b, "\\u%04x", c);
            else if (c >= 0x80 && ascii) {
                int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                uint32_t cp = c & (0x3F >> (len - 1));
                for (int k = 1; k < len && i + 1 < v.u.s.n; k++) cp = (cp << 6) | (s[++i] & 0x3F);
                if (cp >= 0x10000) { cp -= 0x10000; buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)); }
                else buf_printf(b, "\\u%04x", cp);
            } else buf_put(b, (const char *)&c, 1);
        }
        buf_puts(b, "\"");
        break;
    }
    case JV_LIST:
    case JV_DICT: {
        const bool is_list = v.kind == JV_LIST;
        const int n = is_list ? v.u.list->n : v.u.dict->n;
        buf_puts(b, is_list ? "[" : "{");
        for (int i = 0; i < n; i++) {
            if (i) { if (st->custom) buf_put(b, st->item_sep.u.s.p, st->item_sep.u.s.n); else buf_puts(b, indent >= 0 ? "," : ", "); }
            if (indent >= 0) { buf_puts(b, "\n"); for (int k = 0; k < indent * (level + 1); k++) buf_puts(b, " "); }
            if (!is_list) {
                put_json(j, b, mk_str(v.u.dict->k[i]), st, level + 1);
                if (st->custom) buf_put(b, st->key_sep.u.s.p, st->key_sep.u.s.n); else buf_puts(b, ": ");
            }
            put_json(j, b, is_list ? v.u.list->v[i] : v.u.dict->v[i], st, level + 1);
        }
        if (indent >= 0 && n) { buf_puts(b, "\n"); for (int k = 0; k < indent * level; k++) buf_puts(b, " "); }
        buf_puts(b, is_list ? "]" : "}");
        break;
    }
    default: fail(j, "tojson: %s is not JSON", kind_name(v));
    }
    j->depth--;
}

/* ------------------------------------------------------------------ JSON in */

typedef struct { sp_jinja *j; const char *s; size_t n, i; int depth; } json_in;

static _Noreturn void json_fail(json_in *r, const char *what) {
    snprintf(r->j->error, sizeof r->j->error, "JSON: %s at byte %zu", what, r->i);
    longjmp(r->j->fail, 1);
}
static void json_ws(json_in *r) { while (r->i < r->n && strchr(" \t\r\n", r->s[r->i])) r->i++; }

static void put_utf8(buf *b, uint32_t cp) {
    char u[4];
    int k;
    if (cp < 0x80) { u[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); k = 3; }
    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); k = 4; }
    buf_put(b, u, (size_t)k);
}

static uint32_t json_hex4(json_in *r) {
    if (r->i + 4 > r->n) json_fail(r, "a short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        const char c = r->s[r->i++];
        v = v * 16 + (uint32_t)(isdigit((unsigned char)c) ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : 99);
        if (v > 0xFFFF) json_fail(r, "a bad \\u escape");
    }
    return v;
}

static str json_string(json_in *r) {
    buf b = {r->j, NULL, 0, 0, false};
    r->i++; /* the opening quote */
    for (;;) {
        if (r->i >= r->n) json_fail(r, "an unterminated string");
        const unsigned char c = (unsigned char)r->s[r->i++];
        if (c == '"') break;
        if (c < 0x20) json_fail(r, "a control character in a string");
        if (c != '\\') { buf_put(&b, (const char *)&c, 1); continue; }
        if (r->i >= r->n) json_fail(r, "an unterminated escape");
        const char e = r->s[r->i++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) { buf_put(&b, &"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"], 1); continue; }
        if (e != 'u') json_fail(r, "a bad escape");
        uint32_t cp = json_hex4(r);
        if (cp >= 0xD800 && cp < 0xDC00 && r->i + 6 <= r->n && r->s[r->i] == '\\' && r->s[r->i + 1] == 'u') {
            r->i += 2;
            const uint32_t lo = json_hex4(r);
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else { put_utf8(&b, 0xFFFD); cp = lo; }
        }
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate */
        put_utf8(&b, cp);
    }
    return buf_str(&b);
}

static sp_jv json_value(json_in *r) {
    json_ws(r);
    if (r->i >= r->n) json_fail(r, "a value is missing");
    if (++r->depth > MAX_DEPTH) json_fail(r, "nested too deep");
    const char c = r->s[r->i];
    sp_jv v;
    if (c == '"') {
        v = mk_str(json_string(r));
    } else if (c == '[' || c == '{') {
        const bool list = c == '[';
        v = list ? mk_list(r->j) : mk_dict(r->j);
        r->i++;
        json_ws(r);
        if (r->i < r->n && r->s[r->i] == (list ? ']' : '}')) r->i++;
        else for (;;) {
            if (list) {
                list_push(r->j, v.u.list, json_value(r));
            } else {
                json_ws(r);
                if (r->i >= r->n || r->s[r->i] != '"') json_fail(r, "an object key must be a string");
                const str k = json_string(r);
                json_ws(r);
                if (r->i >= r->n || r->s[r->i] != ':') json_fail(r, "':' expected");
                r->i++;
                dict_put(r->j, v.u.dict, k, json_value(r));
            }
            json_ws(r);
            if (r->i < r->n && r->s[r->i] == ',') { r->i++; continue; }
            if (r->i < r->n && r->s[r->i] == (list ? ']' : '}')) { r->i++; break; }
            json_fail(r, list ? "',' or ']' expected" : "',' or '}' expected");
        }
    } else if (r->n - r->i >= 4 && !memcmp(r->s + r->i, "true", 4)) { v = mk_bool(true); r->i += 4; }
    else if (r->n - r->i >= 5 && !memcmp(r->s + r->i, "false", 5)) { v = mk_bool(false); r->i += 5; }
    else if (r->n - r->i >= 4 && !memcmp(r->s + r->i, "null", 4)) { v = mk_none(); r->i += 4; }
    else if (c == '-' || isdigit((unsigned char)c)) {
        char tmp[64];
        size_t k = 0;
        bool is_float = false;
        while (r->i < r->n && k < sizeof tmp - 1 && strchr("0123456789+-.eE", r->s[r->i])) {
            is_float |= strchr(".eE", r->s[r->i]) != NULL;
            tmp[k++] = r->s[r->i++];
        }
        tmp[k] = 0;
        char *end;
        if (is_float) { v = mk_float(strtod(tmp, &end)); }
        else { v = mk_int(strtoll(tmp, &end, 10)); }
        if (*end || k == 0) json_fail(r, "a bad number");
    } else {
        json_fail(r, "an unexpected character");
    }
    r->depth--;
    return v;
}

sp_status sp_jinja_from_json(sp_jinja *j, const char *json, size_t len, sp_jv *out) {
    json_in r = {j, json, len, 0, 0};
    if (setjmp(j->fail)) return sp_fail(SP_ERR_ARGUMENT, "%s", j->error);
    *out = json_value(&r);
    json_ws(&r);
    if (r.i != r.n) json_fail(&r, "text after the value");
    return SP_OK;
}

/* ------------------------------------------------------------------ template → items */

typedef enum { IT_TEXT, IT_OUTPUT, IT_STMT } item_kind;
typedef struct { item_kind kind; str text; int line; } item; /* text: the raw text, or the tag's inside */

typedef struct { item *v; int n, cap; } items;

/* The line of p in src: counted on from the last call (items come in order). */
static int line_at(sp_jinja *j, const char *src, const char *p) {
    if (j->line_src != src || p < j->line_p) { j->line_src = src; j->line_p = src; j->line_n = 1; }
    for (; j->line_p < p; j->line_p++) j->line_n += *j->line_p == '\n';
    return j->line_n;
}

static void items_push(sp_jinja *j, items *it, item x) {
    it->v = grow(j, it->v, it->n, &it->cap, sizeof *it->v);
    it->v[it->n++] = x;
}

/* Splits the source. Whitespace control as Jinja with trim_blocks and lstrip_blocks: "{%-" strips
 * all whitespace before, "-%}" after; a block or comment tag alone on its line loses the line's
 * indentation before it (lstrip) and the newline after it (trim). */
static items lex_template(sp_jinja *j, const char *src, size_t len) {
    items it = {0};
    const char *p = src, *end = src + len;
    bool strip_next = false, trim_newline = false;
    while (p < end) {
        const char *tag = p;
        while (tag + 1 < end && !(tag[0] == '{' && (tag[1] == '{' || tag[1] == '%' || tag[1] == '#'))) tag++;
        if (tag + 1 >= end) tag = end;
        /* the text before the tag */
        const char *t0 = p, *t1 = tag;
        if (strip_next) while (t0 < t1 && isspace((unsigned char)*t0)) t0++;
        else if (trim_newline) { if (t0 < t1 && *t0 == '\n') t0++; else if (t1 - t0 >= 2 && t0[0] == '\r' && t0[1] == '\n') t0 += 2; }
        strip_next = trim_newline = false;
        if (tag < end) {
            const char kind = tag[1];
            const bool minus = tag + 2 < end && tag[2] == '-', plus = tag + 2 < end && tag[2] == '+';
            if (minus) while (t1 > t0 && isspace((unsigned char)t1[-1])) t1--;
            else if (kind != '{' && !plus) { /* lstrip_blocks: only spaces and tabs back to the line's start */
                const char *q = t1;
                while (q > t0 && (q[-1] == ' ' || q[-1] == '\t')) q--;
                if (q == src || (q > t0 && q[-1] == '\n') || (q == t0 && (t0 == src || t0[-1] == '\n'))) t1 = q;
            }
        }
        if (t1 > t0) items_push(j, &it, (item){IT_TEXT, {t0, (size_t)(t1 - t0)}, line_at(j, src, t0)});
        if (tag >= end) break;
        const char kind = tag[1];
        const char close = kind == '{' ? '}' : kind == '%' ? '%' : '#';
        const char *body = tag + 2 + (tag + 2 < end && (tag[2] == '-' || tag[2] == '+'));
        const char *q = body;
        j->line = line_at(j, src, tag);
        while (q + 1 < end && !(q[0] == close && q[1] == '}')) {
            if (kind != '#' && (*q == '"' || *q == '\'')) { /* a string may hold the closing marks */
                const char quote = *q++;
                while (q < end && *q != quote) q += *q == '\\' && q + 1 < end ? 2 : 1;
            }
            if (q < end) q++;
        }
        if (q + 1 >= end) fail(j, "'%c%c' is never closed", '{', kind);
        const char *inner_end = q;
        const bool minus_after = inner_end > body && inner_end[-1] == '-';
        if (minus_after) inner_end--;
        if (kind != '#') items_push(j, &it, (item){kind == '{' ? IT_OUTPUT : IT_STMT, {body, (size_t)(inner_end - body)}, j->line});
        p = q + 2;
        if (minus_after) strip_next = true;
        else if (kind != '{') trim_newline = true;
    }
    return it;
}

/* ------------------------------------------------------------------ expressions */

typedef enum { T_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP } tok_kind;
typedef struct { tok_kind kind; str text; sp_jv value; } token;
typedef struct { token *v; int n, pos; } tokens;

/* One backslash escape of a string literal at s.p[i] (the backslash), appended to b as Jinja
 * decodes it (Python's unicode_escape): the usual letters, octal, \x, \u, \U, a backslash before
 * a newline joins the lines; an unknown escape stays as written. Returns the index after it. */
static size_t string_escape(buf *b, str s, size_t i) {
    const char x = s.p[++i];
    static const char letters[] = "nrtabfv\\'\"", values[] = "\n\r\t\a\b\f\v\\'\"";
    const char *m = strchr(letters, x);
    if (x && m) { buf_put(b, &values[m - letters], 1); return i + 1; }
    if (x == '\n') return i + 1;
    if (x >= '0' && x <= '7') {
        unsigned v = 0;
        int k = 0;
        while (k < 3 && i < s.n && s.p[i] >= '0' && s.p[i] <= '7') { v = v * 8 + (unsigned)(s.p[i++] - '0'); k++; }
        put_utf8(b, v);
        return i;
    }
    const int digits = x == 'x' ? 2 : x == 'u' ? 4 : x == 'U' ? 8 : 0;
    if (digits && i + (size_t)digits < s.n) {
        uint32_t v = 0;
        bool ok = true;
        for (int k = 1; k <= digits && ok; k++) {
            const char h = s.p[i + (size_t)k];
            ok = isxdigit((unsigned char)h);
            v = v * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (h | 32) - 'a' + 10);
        }
        if (ok && v <= 0x10FFFF) { put_utf8(b, v >= 0xD800 && v < 0xE000 ? 0xFFFD : v); return i + 1 + (size_t)digits; }
    }
    buf_put(b, "\\", 1);
    return i; /* the character after the backslash is then taken as it is */
}

static tokens lex_expr(sp_jinja *j, str s) {
    tokens t = {alloc(j, (s.n + 2) * sizeof(token)), 0, 0};
    size_t i = 0;
    while (i < s.n) {
        const char c = s.p[i];
        if (isspace((unsigned char)c)) { i++; continue; }
        token k = {T_OP, {s.p + i, 1}, {0}};
        if (isalpha((unsigned char)c) || c == '_') {
            size_t e = i;
            while (e < s.n && (isalnum((unsigned char)s.p[e]) || s.p[e] == '_')) e++;
            k = (token){T_NAME, {s.p + i, e - i}, {0}};
            i = e;
        } else if (isdigit((unsigned char)c)) {
            size_t e = i;
            bool is_float = false;
            while (e < s.n && (isdigit((unsigned char)s.p[e]) || s.p[e] == '_' ||
                               (s.p[e] == '.' && e + 1 < s.n && isdigit((unsigned char)s.p[e + 1]) && !is_float))) is_float |= s.p[e++] == '.';
            if (e < s.n && (s.p[e] == 'e' || s.p[e] == 'E')) { /* an exponent: 1e20, 2.5e-3 */
                size_t x = e + 1;
                if (x < s.n && (s.p[x] == '+' || s.p[x] == '-')) x++;
                if (x < s.n && isdigit((unsigned char)s.p[x])) {
                    while (x < s.n && isdigit((unsigned char)s.p[x])) x++;
                    e = x;
                    is_float = true;
                }
            }
            char tmp[64];
            size_t n = 0;
            for (size_t q = i; q < e && n < sizeof tmp - 1; q++) if (s.p[q] != '_') tmp[n++] = s.p[q];
            tmp[n] = 0;
            k = (token){is_float ? T_FLOAT : T_INT, {s.p + i, e - i}, is_float ? mk_float(strtod(tmp, NULL)) : mk_int(strtoll(tmp, NULL, 10))};
            i = e;
        } else if (c == '"' || c == '\'') {
            buf b = {j, NULL, 0, 0, false};
            size_t e = i + 1;
            while (e < s.n && s.p[e] != c) {
                if (s.p[e] == '\\' && e + 1 < s.n) e = string_escape(&b, s, e);
                else buf_put(&b, &s.p[e++], 1);
            }
            if (e >= s.n) fail(j, "a string is not closed");
            k = (token){T_STRING, {s.p + i, e + 1 - i}, mk_str(buf_str(&b))};
            i = e + 1;
        } else {
            static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**"};
            for (size_t q = 0; q < sizeof two / sizeof *two; q++)
                if (i + 1 < s.n && s.p[i] == two[q][0] && s.p[i + 1] == two[q][1]) k.text.n = 2;
            if (!strchr("+-*/%~=!<>()[]{},.:|?", c)) fail(j, "unexpected character '%c'", c);
            i += k.text.n;
        }
        t.v[t.n++] = k;
    }
    t.v[t.n] = (token){T_END, {"", 0}, {0}};
    return t;
}

typedef enum {
    E_LIT, E_NAME, E_LIST, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_NOT,
    E_AND, E_OR, E_COND, E_ADD, E_SUB, E_MUL, E_DIV, E_FLOORDIV, E_MOD, E_POW, E_CONCAT,
    E_EQ, E_NE, E_LT, E_LE, E_GT, E_GE, E_IN, E_NOTIN,
} expr_kind;

struct expr {
    expr_kind kind;
    int line;
    sp_jv value;          /* E_LIT */
    str name;             /* E_NAME, E_ATTR, E_FILTER, E_TEST */
    expr *a, *b, *c, *d;  /* operands; E_SLICE: object, start, stop, step; E_COND: then, test, else */
    expr **args;          /* E_LIST, E_DICT (keys then values), E_CALL, E_FILTER, E_TEST */
    str *kw;              /* keyword names of the last n_kw args */
    int n_args, n_kw;
    bool negate;          /* E_TEST: "is not" */
};

typedef struct { sp_jinja *j; tokens t; int depth; } parser;

static token *peek(parser *p) { return &p->t.v[p->t.pos]; }
static bool is_op(const token *k, const char *op) { return k->kind == T_OP && str_eq(k->text, op); }
static bool is_name(const token *k, const char *name) { return k->kind == T_NAME && str_eq(k->text, name); }
static bool accept_op(parser *p, const char *op) { if (is_op(peek(p), op)) { p->t.pos++; return true; } return false; }
static bool accept_name(parser *p, const char *n) { if (is_name(peek(p), n)) { p->t.pos++; return true; } return false; }
static void expect_op(parser *p, const char *op) {
    if (!accept_op(p, op)) fail(p->j, "'%s' expected, not '%.*s'", op, (int)peek(p)->text.n, peek(p)->text.p);
}
static str expect_name(parser *p) {
    token *k = peek(p);
    if (k->kind != T_NAME) fail(p->j, "a name expected, not '%.*s'", (int)k->text.n, k->text.p);
    p->t.pos++;
    return k->text;
}

static expr *new_expr(parser *p, expr_kind kind, expr *a, expr *b) {
    expr *e = alloc(p->j, sizeof *e);
    e->kind = kind;
    e->a = a;
    e->b = b;
    e->line = p->j->line;
    return e;
}

static expr *parse_expr(parser *p);
static expr *parse_or(parser *p);
static expr *parse_unary(parser *p, bool with_filter);

/* "(" args ")" after a callee, a filter or a test: positional, then name=value */
static void parse_args(parser *p, expr *e) {
    expr *args[64];
    str kw[64];
    int n = 0, n_kw = 0;
    while (!accept_op(p, ")")) {
        if (n) expect_op(p, ",");
        if (accept_op(p, ")")) break;
        if (n == 64) fail(p->j, "more than 64 arguments");
        if (peek(p)->kind == T_NAME && is_op(&p->t.v[p->t.pos + 1], "=")) {
            kw[n_kw++] = expect_name(p);
            p->t.pos++;
        } else if (n_kw) {
            fail(p->j, "a positional argument after a keyword argument");
        }
        args[n++] = parse_expr(p);
    }
    e->args = alloc(p->j, (size_t)(n + 1) * sizeof *e->args);
    memcpy(e->args, args, (size_t)n * sizeof *args);
    e->kw = alloc(p->j, (size_t)(n_kw + 1) * sizeof *e->kw);
    memcpy(e->kw, kw, (size_t)n_kw * sizeof *kw);
    e->n_args = n;
    e->n_kw = n_kw;
}

static expr *parse_primary(parser *p) {
    token *k = peek(p);
    p->t.pos++;
    if (k->kind == T_STRING) {
        /* adjacent strings concatenate */
        buf b = {p->j, NULL, 0, 0, false};
        buf_put(&b, k->value.u.s.p, k->value.u.s.n);
        while (peek(p)->kind == T_STRING) { buf_put(&b, peek(p)->value.u.s.p, peek(p)->value.u.s.n); p->t.pos++; }
        expr *e = new_expr(p, E_LIT, NULL, NULL);
        e->value = mk_str(buf_str(&b));
        return e;
    }
    if (k->kind == T_INT || k->kind == T_FLOAT) { expr *e = new_expr(p, E_LIT, NULL, NULL); e->value = k->value; return e; }
    if (k->kind == T_NAME) {
        expr *e = new_expr(p, E_LIT, NULL, NULL);
        if (str_eq(k->text, "true") || str_eq(k->text, "True")) e->value = mk_bool(true);
        else if (str_eq(k->text, "false") || str_eq(k->text, "False")) e->value = mk_bool(false);
        else if (str_eq(k->text, "none") || str_eq(k->text, "None")) e->value = mk_none();
        else { e->kind = E_NAME; e->name = k->text; }
        return e;
    }
    if (is_op(k, "(")) {
        if (accept_op(p, ")")) return new_expr(p, E_LIST, NULL, NULL); /* () is an empty tuple */
        expr *e = parse_expr(p);
        if (is_op(peek(p), ",")) { /* a tuple: a list here */
            expr *items_[256];
            int n = 0;
            items_[n++] = e;
            while (accept_op(p, ",") && !is_op(peek(p), ")")) {
                if (n == 256) fail(p->j, "a tuple of more than 256 items");
                items_[n++] = parse_expr(p);
            }
            e = new_expr(p, E_LIST, NULL, NULL);
            e->args = alloc(p->j, (size_t)n * sizeof *e->args);
            memcpy(e->args, items_, (size_t)n * sizeof *items_);
            e->n_args = n;
        }
        expect_op(p, ")");
        return e;
    }
    if (is_op(k, "[") || is_op(k, "{")) {
        const bool list = is_op(k, "[");
        expr *v[512];
        int n = 0;
        while (!accept_op(p, list ? "]" : "}")) {
            if (n) expect_op(p, ",");
            if (accept_op(p, list ? "]" : "}")) break;
            if (n >= 510) fail(p->j, "a literal of more than 255 items");
            v[n++] = parse_expr(p);
            if (!list) { expect_op(p, ":"); v[n++] = parse_expr(p); }
        }
        expr *e = new_expr(p, list ? E_LIST : E_DICT, NULL, NULL);
        e->args = alloc(p->j, (size_t)(n + 1) * sizeof *e->args);
        memcpy(e->args, v, (size_t)n * sizeof *v);
        e->n_args = n;
        return e;
    }
    fail(p->j, "unexpected '%.*s'", (int)k->text.n, k->text.p);
}

static expr *parse_postfix(parser *p, expr *e) {
    for (;;) {
        if (accept_op(p, ".")) {
            token *k = peek(p);
            if (k->kind == T_INT) { p->t.pos++; expr *idx = new_expr(p, E_LIT, NULL, NULL); idx->value = k->value; e = new_expr(p, E_ITEM, e, idx); continue; }
            expr *a = new_expr(p, E_ATTR, e, NULL);
            a->name = expect_name(p);
            e = a;
        } else if (accept_op(p, "[")) {
            expr *parts[3] = {NULL, NULL, NULL};
            int n = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(peek(p), ":") && !is_op(peek(p), "]")) parts[n] = parse_expr(p);
                if (accept_op(p, ":")) { slice = true; if (++n > 2) fail(p->j, "a slice has at most three parts"); continue; }
                break;
            }
            expect_op(p, "]");
            if (slice) { expr *s = new_expr(p, E_SLICE, e, parts[0]); s->c = parts[1]; s->d = parts[2]; e = s; }
            else { if (!parts[0]) fail(p->j, "an empty subscript"); e = new_expr(p, E_ITEM, e, parts[0]); }
        } else if (accept_op(p, "(")) {
            expr *c = new_expr(p, E_CALL, e, NULL);
            parse_args(p, c);
            e = c;
        } else {
            return e;
        }
    }
}

/* "| filter(args)" and "is [not] test(args)", which bind tighter than any operator */
static expr *parse_filters(parser *p, expr *e) {
    for (;;) {
        if (accept_op(p, "|")) {
            expr *f = new_expr(p, E_FILTER, e, NULL);
            f->name = expect_name(p);
            if (accept_op(p, "(")) parse_args(p, f);
            e = f;
        } else if (accept_name(p, "is")) {
            expr *t = new_expr(p, E_TEST, e, NULL);
            t->negate = accept_name(p, "not");
            t->name = expect_name(p);
            if (accept_op(p, "(")) parse_args(p, t);
            else if (peek(p)->kind == T_STRING || peek(p)->kind == T_INT || peek(p)->kind == T_FLOAT ||
                     (peek(p)->kind == T_NAME && !is_name(peek(p), "and") && !is_name(peek(p), "or") && !is_name(peek(p), "else") &&
                      !is_name(peek(p), "if") && !is_name(peek(p), "in") && !is_name(peek(p), "is") && !is_name(peek(p), "not"))) {
                /* "is sameas x", "is equalto 'a'": one argument without parentheses */
                t->args = alloc(p->j, 2 * sizeof *t->args);
                t->args[0] = parse_unary(p, false);
                t->n_args = 1;
            }
            e = t;
        } else {
            return e;
        }
    }
}

static expr *parse_unary(parser *p, bool with_filter) {
    if (++p->depth > MAX_DEPTH) fail(p->j, "an expression nested more than %d deep", MAX_DEPTH);
    expr *e;
    if (accept_op(p, "-")) e = new_expr(p, E_NEG, parse_unary(p, false), NULL);
    else if (accept_op(p, "+")) e = parse_unary(p, false);
    else e = parse_postfix(p, parse_primary(p));
    if (with_filter) e = parse_filters(p, e);
    p->depth--;
    return e;
}

static expr *parse_pow(parser *p) {
    expr *e = parse_unary(p, true);
    while (accept_op(p, "**")) e = new_expr(p, E_POW, e, parse_unary(p, true));
    return e;
}

static expr *parse_mul(parser *p) {
    expr *e = parse_pow(p);
    for (;;) {
        if (accept_op(p, "*")) e = new_expr(p, E_MUL, e, parse_pow(p));
        else if (accept_op(p, "//")) e = new_expr(p, E_FLOORDIV, e, parse_pow(p));
        else if (accept_op(p, "/")) e = new_expr(p, E_DIV, e, parse_pow(p));
        else if (accept_op(p, "%")) e = new_expr(p, E_MOD, e, parse_pow(p));
        else return e;
    }
}

static expr *parse_add(parser *p) {
    expr *e = parse_mul(p);
    for (;;) {
        if (accept_op(p, "+")) e = new_expr(p, E_ADD, e, parse_mul(p));
        else if (accept_op(p, "-")) e = new_expr(p, E_SUB, e, parse_mul(p));
        else return e;
    }
}

static expr *parse_concat(parser *p) {
    expr *e = parse_add(p);
    while (accept_op(p, "~")) e = new_expr(p, E_CONCAT, e, parse_add(p));
    return e;
}

static expr *parse_compare(parser *p) {
    expr *e = parse_concat(p);
    for (;;) {
        static const struct { const char *op; expr_kind kind; } ops[] = {
            {"==", E_EQ}, {"!=", E_NE}, {"<=", E_LE}, {">=", E_GE}, {"<", E_LT}, {">", E_GT}};
        bool found = false;
        for (size_t i = 0; i < sizeof ops / sizeof *ops && !found; i++)
            if (accept_op(p, ops[i].op)) { e = new_expr(p, ops[i].kind, e, parse_concat(p)); found = true; }
        if (found) continue;
        if (accept_name(p, "in")) { e = new_expr(p, E_IN, e, parse_concat(p)); continue; }
        if (is_name(peek(p), "not") && is_name(&p->t.v[p->t.pos + 1], "in")) {
            p->t.pos += 2;
            e = new_expr(p, E_NOTIN, e, parse_concat(p));
            continue;
        }
        return e;
    }
}

static expr *parse_not(parser *p) {
    if (accept_name(p, "not")) {
        if (++p->depth > MAX_DEPTH) fail(p->j, "an expression nested more than %d deep", MAX_DEPTH);
        expr *e = new_expr(p, E_NOT, parse_not(p), NULL);
        p->depth--;
        return e;
    }
    return parse_compare(p);
}

static expr *parse_and(parser *p) {
    expr *e = parse_not(p);
    while (accept_name(p, "and")) e = new_expr(p, E_AND, e, parse_not(p));
    return e;
}

static expr *parse_or(parser *p) {
    expr *e = parse_and(p);
    while (accept_name(p, "or")) e = new_expr(p, E_OR, e, parse_and(p));
    return e;
}

/* "a if test else b" (else optional: undefined) */
static expr *parse_expr(parser *p) {
    if (++p->depth > MAX_DEPTH) fail(p->j, "an expression nested more than %d deep", MAX_DEPTH);
    expr *e = parse_or(p);
    while (accept_name(p, "if")) {
        expr *c = new_expr(p, E_COND, e, parse_or(p));
        if (accept_name(p, "else")) c->c = parse_expr(p);
        e = c;
    }
    p->depth--;
    return e;
}

/* ------------------------------------------------------------------ statements */

typedef enum { N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, N_CALL } node_kind;

typedef struct { node **v; int n; } body;

struct node {
    node_kind kind;
    int line;
    str text;            /* N_TEXT */
    expr *e;             /* N_OUTPUT, N_IF test, N_FOR iterable, N_SET value, N_CALL call */
    expr *filter;        /* N_FOR "if" */
    str names[2];        /* N_FOR targets, N_SET target (names[1]: the attribute of ns.attr), N_MACRO name */
    int n_names;
    body then, otherwise;/* N_IF, N_FOR (else), N_SET block form (then), N_MACRO body (then) */
    str params[32];      /* N_MACRO */
    expr *defaults[32];
    int n_params;
};

typedef struct { sp_jinja *j; items it; int pos; int depth; } stmt_parser;

/* The tag's tokens, and its first word. */
static parser tag_parser(stmt_parser *s, const item *x) {
    s->j->line = x->line;
    parser p = {s->j, lex_expr(s->j, x->text), 0};
    return p;
}

static void expect_end(parser *p) {
    if (peek(p)->kind != T_END) fail(p->j, "unexpected '%.*s' at the end of the tag", (int)peek(p)->text.n, peek(p)->text.p);
}

static node *new_node(stmt_parser *s, node_kind kind) {
    node *n = alloc(s->j, sizeof *n);
    n->kind = kind;
    n->line = s->j->line;
    return n;
}

/* Statements until one of the words in `stop` (NULL-terminated) opens a tag; that word is left
 * in *stopped (the tag not consumed). At the end of the template *stopped is NULL. */
static void body_push(sp_jinja *j, body *b, int *cap, node *n) {
    b->v = grow(j, b->v, b->n, cap, sizeof *b->v);
    b->v[b->n++] = n;
}

static body parse_body(stmt_parser *s, const char *const *stop, str *stopped);

/* The body of a block up to its end tag (`end`), which is checked and consumed. */
static body parse_block(stmt_parser *s, const char *end, const char *opener, int line) {
    const char *const stop[] = {end, NULL};
    str stopped;
    const body b = parse_body(s, stop, &stopped);
    if (!stopped.p) fail(s->j, "'%s' (line %d) is never closed by '%s'", opener, line, end);
    parser q = tag_parser(s, &s->it.v[s->pos++]);
    expect_name(&q);
    expect_end(&q);
    return b;
}

static body parse_body(stmt_parser *s, const char *const *stop, str *stopped) {
    if (++s->depth > MAX_DEPTH) fail(s->j, "blocks nested more than %d deep", MAX_DEPTH);
    body out = {0};
    int cap = 0;
    *stopped = (str){NULL, 0};
    for (;;) {
        if (s->pos >= s->it.n) break;
        const item *x = &s->it.v[s->pos];
        if (x->kind == IT_TEXT) { node *t = new_node(s, N_TEXT); t->text = x->text; t->line = x->line; body_push(s->j, &out, &cap, t); s->pos++; continue; }
        parser p = tag_parser(s, x);
        if (x->kind == IT_OUTPUT) {
            node *o = new_node(s, N_OUTPUT);
            o->e = parse_expr(&p);
            expect_end(&p);
            body_push(s->j, &out, &cap, o);
            s->pos++;
            continue;
        }
        const str word = expect_name(&p);
        bool stops = false;
        for (int i = 0; stop && stop[i] && !stops; i++) stops = str_eq(word, stop[i]);
        if (stops) { *stopped = word; break; }
        s->pos++;
        if (str_eq(word, "if")) {
            node *f = new_node(s, N_IF);
            f->e = parse_expr(&p);
            expect_end(&p);
            static const char *const ends[] = {"elif", "else", "endif", NULL};
            f->then = parse_body(s, ends, stopped);
            node *cur = f;
            for (;;) {
                if (!stopped->p) fail(s->j, "'if' (line %d) is never closed by 'endif'", f->line);
                const item *y = &s->it.v[s->pos++];
                parser q = tag_parser(s, y);
                expect_name(&q);
                if (str_eq(*stopped, "elif")) {
                    node *e = new_node(s, N_IF);
                    e->e = parse_expr(&q);
                    expect_end(&q);
                    e->then = parse_body(s, ends, stopped);
                    cur->otherwise.v = alloc(s->j, sizeof(node *));
                    cur->otherwise.v[0] = e;
                    cur->otherwise.n = 1;
                    cur = e;
                } else if (str_eq(*stopped, "else")) {
                    expect_end(&q);
                    cur->otherwise = parse_block(s, "endif", "if", f->line);
                    break;
                } else {
                    expect_end(&q);
                    break;
                }
            }
            body_push(s->j, &out, &cap, f);
        } else if (str_eq(word, "for")) {
            node *f = new_node(s, N_FOR);
            f->names[f->n_names++] = expect_name(&p);
            if (accept_op(&p, ",")) f->names[f->n_names++] = expect_name(&p);
            if (!accept_name(&p, "in")) fail(s->j, "'in' expected in 'for'");
            f->e = parse_or(&p); /* not parse_expr: "if" here filters */
            if (accept_name(&p, "if")) f->filter = parse_expr(&p);
            accept_name(&p, "recursive");
            expect_end(&p);
            static const char *const ends[] = {"else", "endfor", NULL};
            f->then = parse_body(s, ends, stopped);
            if (!stopped->p) fail(s->j, "'for' (line %d) is never closed by 'endfor'", f->line);
            const bool has_else = str_eq(*stopped, "else");
            parser q = tag_parser(s, &s->it.v[s->pos++]);
            expect_name(&q);
            expect_end(&q);
            if (has_else) f->otherwise = parse_block(s, "endfor", "for", f->line);
            body_push(s->j, &out, &cap, f);
        } else if (str_eq(word, "set")) {
            node *t = new_node(s, N_SET);
            t->names[t->n_names++] = expect_name(&p);
            if (accept_op(&p, ".")) t->names[t->n_names++] = expect_name(&p);
            if (accept_op(&p, "=")) {
                t->e = parse_expr(&p);
                expect_end(&p);
            } else { /* {% set x %}...{% endset %} */
                expect_end(&p);
                t->then = parse_block(s, "endset", "set", t->line);
            }
            body_push(s->j, &out, &cap, t);
        } else if (str_eq(word, "macro")) {
            node *m = new_node(s, N_MACRO);
            m->names[m->n_names++] = expect_name(&p);
            expect_op(&p, "(");
            while (!accept_op(&p, ")")) {
                if (m->n_params) expect_op(&p, ",");
                if (accept_op(&p, ")")) break;
                if (m->n_params == 32) fail(s->j, "a macro of more than 32 parameters");
                m->params[m->n_params] = expect_name(&p);
                if (accept_op(&p, "=")) m->defaults[m->n_params] = parse_expr(&p);
                m->n_params++;
            }
            expect_end(&p);
            m->then = parse_block(s, "endmacro", "macro", m->line);
            body_push(s->j, &out, &cap, m);
        } else if (str_eq(word, "break") || str_eq(word, "continue")) {
            expect_end(&p);
            body_push(s->j, &out, &cap, new_node(s, str_eq(word, "break") ? N_BREAK : N_CONTINUE));
        } else if (str_eq(word, "generation") || str_eq(word, "endgeneration")) {
            expect_end(&p); /* transformers' marker of the assistant's tokens: renders its body as is */
        } else if (str_eq(word, "do")) {
            node *c = new_node(s, N_CALL);
            c->e = parse_expr(&p);
            expect_end(&p);
            body_push(s->j, &out, &cap, c);
        } else {
            fail(s->j, "'%.*s' is not supported here", (int)word.n, word.p);
        }
    }
    s->depth--;
    return out;
}

/* ------------------------------------------------------------------ evaluation */

typedef enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE } flow;

static sp_jv eval(sp_jinja *j, frame *f, const expr *e);
static flow run(sp_jinja *j, frame *f, body b, buf *out);

static sp_jv lookup(sp_jinja *j, frame *f, str name) {
    for (; f; f = f->parent) {
        sp_jv *v = dict_find(&f->vars, name);
        if (v) return *v;
    }
    sp_jv *g = dict_find(&j->globals, name);
    if (g) return *g;
    static const char *const builtins[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", "joiner", NULL};
    for (int i = 0; builtins[i]; i++)
        if (str_eq(name, builtins[i])) {
            jcallable *c = alloc(j, sizeof *c);
            c->builtin = builtins[i];
            sp_jv v = {JV_CALLABLE, {0}};
            v.u.fn = c;
            return v;
        }
    return mk_undef();
}

static sp_jv method(sp_jinja *j, sp_jv self, const char *name) {
    jcallable *c = alloc(j, sizeof *c);
    c->builtin = name;
    c->self = self;
    sp_jv v = {JV_CALLABLE, {0}};
    v.u.fn = c;
    return v;
}

/* UTF-8 code points: strings index and slice by them, as Python's do */
static size_t n_chars(str s) {
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) n += ((unsigned char)s.p[i] & 0xC0) != 0x80;
    return n;
}
static size_t char_offset(str s, size_t k) {
    size_t i = 0;
    while (i < s.n && k) { i++; while (i < s.n && ((unsigned char)s.p[i] & 0xC0) == 0x80) i++; k--; }
    return i;
}

static int64_t length(sp_jinja *j, sp_jv v) {
    switch (v.kind) {
    case JV_STRING: return (int64_t)n_chars(as_str(v));
    case JV_LIST: return v.u.list->n;
    case JV_DICT: return v.u.dict->n;
    case JV_UNDEFINED: return 0;
    default: fail(j, "%s has no length", kind_name(v));
    }
}

/* the items a for loop or a filter walks: a list's values, a dict's keys, a string's characters */
static jlist *iterate(sp_jinja *j, sp_jv v) {
    if (v.kind == JV_LIST) return v.u.list;
    jlist *l = alloc(j, sizeof *l);
    if (v.kind == JV_DICT) for (int i = 0; i < v.u.dict->n; i++) list_push(j, l, mk_str(v.u.dict->k[i]));
    else if (v.kind == JV_STRING) {
        const str s = as_str(v);
        for (size_t i = 0, k; i < s.n; i = k) {
            k = i + 1;
            while (k < s.n && ((unsigned char)s.p[k] & 0xC0) == 0x80) k++;
            list_push(j, l, mk_str((str){s.p + i, k - i}));
        }
    } else if (v.kind != JV_UNDEFINED && v.kind != JV_NONE) fail(j, "%s cannot be iterated", kind_name(v));
    else if (v.kind == JV_NONE) fail(j, "none cannot be iterated");
    return l;
}

static sp_jv get_item(sp_jinja *j, sp_jv obj, sp_jv key) {
    if (obj.kind == JV_DICT) {
        if (key.kind != JV_STRING) return mk_undef();
        sp_jv *v = dict_find(obj.u.dict, as_str(key));
        return v ? *v : mk_undef();
    }
    if ((obj.kind == JV_LIST || obj.kind == JV_STRING) && (key.kind == JV_INT || key.kind == JV_BOOL)) {
        const int64_t n = length(j, obj);
        int64_t i = key.kind == JV_INT ? key.u.i : key.u.b;
        if (i < 0) i += n;
        if (i < 0 || i >= n) return mk_undef();
        if (obj.kind == JV_LIST) return obj.u.list->v[i];
        const str s = as_str(obj);
        const size_t a = char_offset(s, (size_t)i), b = char_offset(s, (size_t)i + 1);
        return mk_str((str){s.p + a, b - a});
    }
    if (obj.kind == JV_UNDEFINED) fail(j, "an undefined value has no items");
    return mk_undef();
}

static sp_jv get_attr(sp_jinja *j, sp_jv obj, str name) {
    static const char *const str_methods[] = {"startswith", "endswith", "split", "strip", "lstrip", "rstrip", "upper", "lower",
                                              "replace", "title", "capitalize", "join", "count", "find", "format", NULL};
    static const char *const dict_methods[] = {"items", "keys", "values", "get", NULL};
    static const char *const list_methods[] = {"append", "index", "count", NULL};
    const char *const *methods = obj.kind == JV_STRING ? str_methods : obj.kind == JV_DICT ? dict_methods : obj.kind == JV_LIST ? list_methods : NULL;
    for (int i = 0; methods && methods[i]; i++)
        if (str_eq(name, methods[i])) return method(j, obj, methods[i]);
    if (obj.kind == JV_DICT) return get_item(j, obj, mk_str(name));
    if (obj.kind == JV_UNDEFINED) fail(j, "an undefined value has no attribute '%.*s'", (int)name.n, name.p);
    return mk_undef();
}

static sp_jv slice(sp_jinja *j, sp_jv obj, sp_jv a, sp_jv b, sp_jv c) {
    if (obj.kind != JV_LIST && obj.kind != JV_STRING) fail(j, "%s cannot be sliced", kind_name(obj));
    const int64_t n = length(j, obj);
    const int64_t step = c.kind == JV_INT ? c.u.i : 1;
    if (step == 0) fail(j, "a slice step of 0");
    int64_t lo, hi;
    if (step > 0) {
        lo = a.kind == JV_INT ? a.u.i : 0;
        hi = b.kind == JV_INT ? b.u.i : n;
        if (lo < 0) lo += n;
        if (hi < 0) hi += n;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = a.kind == JV_INT ? a.u.i : n - 1;
        hi = b.kind == JV_INT ? b.u.i : -n - 1;
        if (lo < 0) lo += n;
        if (hi < 0) hi += n;
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    if (obj.kind == JV_LIST) {
        sp_jv out = mk_list(j);
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) list_push(j, out.u.list, obj.u.list->v[i]);
        return out;
    }
    buf r = {j, NULL, 0, 0, false};
    const str s = as_str(obj);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        const size_t x = char_offset(s, (size_t)i), y = char_offset(s, (size_t)i + 1);
        buf_put(&r, s.p + x, y - x);
    }
    return mk_str(buf_str(&r));
}

static str to_str(sp_jinja *j, sp_jv v) {
    if (v.kind == JV_STRING) return as_str(v);
    buf b = {j, NULL, 0, 0, false};
    put_value(&b, v);
    return buf_str(&b);
}

/* evaluated arguments of a call, a filter or a test: positional, and keywords by name */
typedef struct { sp_jv pos[64]; int n_pos; str kw_name[64]; sp_jv kw[64]; int n_kw; } args_t;

static void eval_args(sp_jinja *j, frame *f, const expr *e, args_t *a) {
    a->n_pos = e->n_args - e->n_kw;
    a->n_kw = e->n_kw;
    for (int i = 0; i < a->n_pos; i++) a->pos[i] = eval(j, f, e->args[i]);
    for (int i = 0; i < e->n_kw; i++) { a->kw_name[i] = e->kw[i]; a->kw[i] = eval(j, f, e->args[a->n_pos + i]); }
}

/* argument i, or keyword `name`, or undefined */
static sp_jv arg(const args_t *a, int i, const char *name) {
    if (i >= 0 && i < a->n_pos) return a->pos[i];
    for (int k = 0; name && k < a->n_kw; k++) if (str_eq(a->kw_name[k], name)) return a->kw[k];
    return mk_undef();
}

static bool is_space_in(char c, sp_jv chars) {
    if (chars.kind == JV_STRING) return memchr(chars.u.s.p, c, chars.u.s.n) != NULL;
    return isspace((unsigned char)c) != 0;
}

static sp_jv strip(sp_jinja *j, sp_jv v, sp_jv chars, bool left, bool right) {
    if (v.kind != JV_STRING) fail(j, "strip: %s is not a string", kind_name(v));
    const char *p = v.u.s.p, *e = p + v.u.s.n;
    while (left && p < e && is_space_in(*p, chars)) p++;
    while (right && e > p && is_space_in(e[-1], chars)) e--;
    return mk_str((str){p, (size_t)(e - p)});
}

static sp_jv change_case(sp_jinja *j, sp_jv v, int how /* 0 lower, 1 upper, 2 capitalize, 3 title */) {
    const str s = to_str(j, v);
    char *o = alloc(j, s.n + 1);
    bool start = true;
    for (size_t i = 0; i < s.n; i++) {
        const char c = s.p[i];
        if (how == 0) o[i] = (char)tolower((unsigned char)c);
        else if (how == 1) o[i] = (char)toupper((unsigned char)c);
        else if (how == 2) o[i] = (char)(i == 0 ? toupper((unsigned char)c) : tolower((unsigned char)c));
        else { o[i] = (char)(start ? toupper((unsigned char)c) : tolower((unsigned char)c)); start = !isalnum((unsigned char)c); }
    }
    return mk_str((str){o, s.n});
}

static sp_jv replace(sp_jinja *j, sp_jv v, sp_jv from, sp_jv to) {
    const str s = to_str(j, v), a = to_str(j, from), b = to_str(j, to);
    buf r = {j, NULL, 0, 0, false};
    if (!a.n) return mk_str(s);
    for (size_t i = 0; i < s.n;) {
        if (i + a.n <= s.n && memcmp(s.p + i, a.p, a.n) == 0) { buf_put(&r, b.p, b.n); i += a.n; }
        else buf_put(&r, s.p + i++, 1);
    }
    return mk_str(buf_str(&r));
}

static bool run_test(sp_jinja *j, const char *name, sp_jv v, const args_t *a);

static sp_jv call(sp_jinja *j, frame *f, sp_jv fn, const args_t *a);

static sp_jv apply_filter(sp_jinja *j, str name, sp_jv v, const args_t *a) {
    char n[32];
    snprintf(n, sizeof n, "%.*s", (int)(name.n < 31 ? name.n : 31), name.p);
    if (!strcmp(n, "trim")) return strip(j, mk_str(to_str(j, v)), arg(a, 0, "chars"), true, true); /* str() first, as Jinja's */
    if (!strcmp(n, "length") || !strcmp(n, "count")) return mk_int(length(j, v));
    if (!strcmp(n, "string")) return mk_str(to_str(j, v));
    if (!strcmp(n, "lower")) return change_case(j, v, 0);
    if (!strcmp(n, "upper")) return change_case(j, v, 1);
    if (!strcmp(n, "capitalize")) return change_case(j, v, 2);
    if (!strcmp(n, "title")) return change_case(j, v, 3);
    if (!strcmp(n, "replace")) return replace(j, v, arg(a, 0, "old"), arg(a, 1, "new"));
    if (!strcmp(n, "safe") || !strcmp(n, "e") || !strcmp(n, "escape")) return v; /* no autoescape: as transformers renders */
    if (!strcmp(n, "default") || !strcmp(n, "d")) {
        const bool boolean = truthy(arg(a, 1, "boolean"));
        return v.kind == JV_UNDEFINED || (boolean && !truthy(v)) ? (a->n_pos || a->n_kw ? arg(a, 0, "default_value") : mk_cstr(j, "")) : v;
    }
    if (!strcmp(n, "first") || !strcmp(n, "last")) {
        jlist *l = iterate(j, v);
        if (!l->n) return mk_undef();
        return l->v[n[0] == 'f' ? 0 : l->n - 1];
    }
    if (!strcmp(n, "list")) { sp_jv out = mk_list(j); jlist *l = iterate(j, v); for (int i = 0; i < l->n; i++) list_push(j, out.u.list, l->v[i]); return out; }
    if (!strcmp(n, "reverse")) {
        if (v.kind == JV_STRING) return slice(j, v, mk_undef(), mk_undef(), mk_int(-1));
        jlist *l = iterate(j, v);
        sp_jv out = mk_list(j);
        for (int i = l->n - 1; i >= 0; i--) list_push(j, out.u.list, l->v[i]);
        return out;
    }
    if (!strcmp(n, "join")) {
        const sp_jv sep = arg(a, 0, "d"), attr = arg(a, 1, "attribute");
        jlist *l = iterate(j, v);
        buf r = {j, NULL, 0, 0, false};
        for (int i = 0; i < l->n; i++) {
            if (i && sep.kind == JV_STRING) buf_put(&r, sep.u.s.p, sep.u.s.n);
            put_value(&r, attr.kind == JV_STRING ? get_attr(j, l->v[i], as_str(attr)) : l->v[i]);
        }
        return mk_str(buf_str(&r));
    }
    if (!strcmp(n, "items")) {
        if (v.kind == JV_UNDEFINED) return mk_list(j);
        if (v.kind != JV_DICT) fail(j, "items: %s is not a dict", kind_name(v));
        sp_jv out = mk_list(j);
        for (int i = 0; i < v.u.dict->n; i++) {
            sp_jv pair = mk_list(j);
            list_push(j, pair.u.list, mk_str(v.u.dict->k[i]));
            list_push(j, pair.u.list, v.u.dict->v[i]);
            list_push(j, out.u.list, pair);
        }
        return out;
    }
    if (!strcmp(n, "tojson")) {
        /* transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        const sp_jv ascii = arg(a, 0, "ensure_ascii"), ind = arg(a, 1, "indent"), seps = arg(a, 2, "separators");
        if (truthy(arg(a, 3, "sort_keys"))) fail(j, "tojson: sort_keys is not supported");
        json_style st = {ind.kind == JV_INT ? (int)ind.u.i : -1, truthy(ascii), mk_undef(), mk_undef(), false};
        if (seps.kind == JV_LIST && seps.u.list->n == 2 && seps.u.list->v[0].kind == JV_STRING && seps.u.list->v[1].kind == JV_STRING) {
            st.item_sep = seps.u.list->v[0];
            st.key_sep = seps.u.list->v[1];
            st.custom = true;
        } else if (seps.kind != JV_UNDEFINED && seps.kind != JV_NONE) fail(j, "tojson: separators must be two strings");
        buf r = {j, NULL, 0, 0, false};
        put_json(j, &r, v, &st, 0);
        return mk_str(buf_str(&r));
    }
    if (!strcmp(n, "selectattr") || !strcmp(n, "rejectattr") || !strcmp(n, "select") || !strcmp(n, "reject")) {
        const bool attr = strstr(n, "attr") != NULL, keep = n[0] == 's';
        jlist *l = iterate(j, v);
        sp_jv out = mk_list(j);
        args_t rest = {0};
        const int first = attr ? 1 : 0;
        for (int i = first + 1; i < a->n_pos; i++) rest.pos[rest.n_pos++] = a->pos[i];
        const sp_jv test = arg(a, first, NULL);
        for (int i = 0; i < l->n; i++) {
            const sp_jv x = attr ? get_attr(j, l->v[i], to_str(j, arg(a, 0, NULL))) : l->v[i];
            bool ok;
            if (test.kind == JV_STRING) {
                char tn[32];
                snprintf(tn, sizeof tn, "%.*s", (int)(test.u.s.n < 31 ? test.u.s.n : 31), test.u.s.p);
                ok = run_test(j, tn, x, &rest);
            } else {
                ok = truthy(x);
            }
            if (ok == keep) list_push(j, out.u.list, l->v[i]);
        }
        return out;
    }
    if (!strcmp(n, "map")) {
        const sp_jv attr = arg(a, -1, "attribute");
        jlist *l = iterate(j, v);
        sp_jv out = mk_list(j);
        for (int i = 0; i < l->n; i++) {
            if (attr.kind == JV_STRING) list_push(j, out.u.list, get_attr(j, l->v[i], as_str(attr)));
            else {
                args_t none = {0};
                list_push(j, out.u.list, apply_filter(j, to_str(j, arg(a, 0, NULL)), l->v[i], &none));
            }
        }
        return out;
    }
    if (!strcmp(n, "int")) {
        if (v.kind == JV_STRING) { char tmp[64]; snprintf(tmp, sizeof tmp, "%.*s", (int)(v.u.s.n < 63 ? v.u.s.n : 63), v.u.s.p); return mk_int(strtoll(tmp, NULL, 10)); }
        return is_number(v) ? mk_int((int64_t)num(v)) : mk_int(0);
    }
    if (!strcmp(n, "float")) {
        if (v.kind == JV_STRING) { char tmp[64]; snprintf(tmp, sizeof tmp, "%.*s", (int)(v.u.s.n < 63 ? v.u.s.n : 63), v.u.s.p); return mk_float(strtod(tmp, NULL)); }
        return is_number(v) ? mk_float(num(v)) : mk_float(0);
    }
    if (!strcmp(n, "abs")) return v.kind == JV_INT ? mk_int(v.u.i < 0 ? -v.u.i : v.u.i) : mk_float(fabs(num(v)));
    if (!strcmp(n, "unique")) {
        jlist *l = iterate(j, v);
        sp_jv out = mk_list(j);
        for (int i = 0; i < l->n; i++) {
            bool seen = false;
            for (int k = 0; k < out.u.list->n && !seen; k++) seen = equal(out.u.list->v[k], l->v[i]);
            if (!seen) list_push(j, out.u.list, l->v[i]);
        }
        return out;
    }
    if (!strcmp(n, "indent")) {
        const sp_jv w = arg(a, 0, "width"), first = arg(a, 1, "first");
        const int width = w.kind == JV_INT ? (int)w.u.i : 4;
        const str s = to_str(j, v);
        buf r = {j, NULL, 0, 0, false};
        if (truthy(first)) for (int k = 0; k < width; k++) buf_puts(&r, " ");
        for (size_t i = 0; i < s.n; i++) {
            buf_put(&r, s.p + i, 1);
            if (s.p[i] == '\n' && i + 1 < s.n && s.p[i + 1] != '\n') for (int k = 0; k < width; k++) buf_puts(&r, " ");
        }
        return mk_str(buf_str(&r));
    }
    fail(j, "the filter '%s' is not supported", n);
}

static bool run_test(sp_jinja *j, const char *n, sp_jv v, const args_t *a) {
    if (!strcmp(n, "defined")) return v.kind != JV_UNDEFINED;
    if (!strcmp(n, "undefined")) return v.kind == JV_UNDEFINED;
    if (!strcmp(n, "none")) return v.kind == JV_NONE;
    if (!strcmp(n, "string")) return v.kind == JV_STRING;
    if (!strcmp(n, "mapping")) return v.kind == JV_DICT;
    if (!strcmp(n, "iterable")) return v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_STRING;
    if (!strcmp(n, "sequence")) return v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_STRING;
    if (!strcmp(n, "number")) return is_number(v);
    if (!strcmp(n, "integer")) return v.kind == JV_INT;
    if (!strcmp(n, "float")) return v.kind == JV_FLOAT;
    if (!strcmp(n, "boolean")) return v.kind == JV_BOOL;
    if (!strcmp(n, "true")) return v.kind == JV_BOOL && v.u.b;
    if (!strcmp(n, "false")) return v.kind == JV_BOOL && !v.u.b;
    if (!strcmp(n, "callable")) return v.kind == JV_CALLABLE;
    if (!strcmp(n, "equalto") || !strcmp(n, "eq") || !strcmp(n, "==") || !strcmp(n, "sameas")) return equal(v, arg(a, 0, NULL));
    if (!strcmp(n, "ne") || !strcmp(n, "!=")) return !equal(v, arg(a, 0, NULL));
    if (!strcmp(n, "in")) {
        const sp_jv c = arg(a, 0, NULL);
        jlist *l = iterate(j, c);
        if (c.kind == JV_STRING) { const str s = as_str(c), x = to_str(j, v); return has_sub(s.p, s.n, x.p, x.n); }
        for (int i = 0; i < l->n; i++) if (equal(l->v[i], v)) return true;
        return false;
    }
    if (!strcmp(n, "odd") || !strcmp(n, "even")) {
        if (v.kind != JV_INT) fail(j, "'%s' needs an integer", n);
        return (v.u.i % 2 != 0) == (n[0] == 'o');
    }
    if (!strcmp(n, "divisibleby")) { const sp_jv d = arg(a, 0, NULL); return d.kind == JV_INT && d.u.i && v.kind == JV_INT && v.u.i % d.u.i == 0; }
    if (!strcmp(n, "lower") || !strcmp(n, "upper")) {
        if (v.kind != JV_STRING) return false;
        for (size_t i = 0; i < v.u.s.n; i++) if (n[0] == 'l' ? isupper((unsigned char)v.u.s.p[i]) : islower((unsigned char)v.u.s.p[i])) return false;
        return true;
    }
    fail(j, "the test '%s' is not supported", n);
}

static bool contains(sp_jinja *j, sp_jv container, sp_jv x) {
    if (container.kind == JV_STRING) {
        if (x.kind != JV_STRING) fail(j, "'in <string>' needs a string on the left, not %s", kind_name(x));
        return has_sub(container.u.s.p, container.u.s.n, x.u.s.p, x.u.s.n);
    }
    if (container.kind == JV_DICT) return x.kind == JV_STRING && dict_find(container.u.dict, as_str(x));
    if (container.kind == JV_LIST) {
        for (int i = 0; i < container.u.list->n; i++) if (equal(container.u.list->v[i], x)) return true;
        return false;
    }
    fail(j, "'in' %s", kind_name(container));
}

static int compare(sp_jinja *j, sp_jv a, sp_jv b) {
    if (is_number(a) && is_number(b)) return num(a) < num(b) ? -1 : num(a) > num(b);
    if (a.kind == JV_STRING && b.kind == JV_STRING) {
        const size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        const int c = memcmp(a.u.s.p, b.u.s.p, n);
        return c ? (c < 0 ? -1 : 1) : (a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n);
    }
    fail(j, "cannot order %s and %s", kind_name(a), kind_name(b));
}

static sp_jv arith(sp_jinja *j, expr_kind op, sp_jv a, sp_jv b) {
    if (op == E_ADD && a.kind == JV_STRING && b.kind == JV_STRING) {
        buf r = {j, NULL, 0, 0, false};
        buf_put(&r, a.u.s.p, a.u.s.n);
        buf_put(&r, b.u.s.p, b.u.s.n);
        return mk_str(buf_str(&r));
    }
    if (op == E_ADD && a.kind == JV_LIST && b.kind == JV_LIST) {
        sp_jv out = mk_list(j);
        for (int i = 0; i < a.u.list->n; i++) list_push(j, out.u.list, a.u.list->v[i]);
        for (int i = 0; i < b.u.list->n; i++) list_push(j, out.u.list, b.u.list->v[i]);
        return out;
    }
    if (op == E_MUL && ((a.kind == JV_STRING && b.kind == JV_INT) || (a.kind == JV_INT && b.kind == JV_STRING))) {
        const sp_jv s = a.kind == JV_STRING ? a : b;
        const int64_t times = a.kind == JV_INT ? a.u.i : b.u.i;
        if (times * (int64_t)s.u.s.n > MAX_OUTPUT) fail(j, "a string repeated beyond the output limit");
        buf r = {j, NULL, 0, 0, false};
        for (int64_t i = 0; i < times; i++) buf_put(&r, s.u.s.p, s.u.s.n);
        return mk_str(buf_str(&r));
    }
    if (!is_number(a) || !is_number(b))
        fail(j, "unsupported operands: %s and %s", kind_name(a), kind_name(b));
    const bool ints = a.kind != JV_FLOAT && b.kind != JV_FLOAT;
    const int64_t x = a.kind == JV_INT ? a.u.i : (int64_t)num(a), y = b.kind == JV_INT ? b.u.i : (int64_t)num(b);
    switch (op) {
    case E_ADD: return ints ? mk_int(x + y) : mk_float(num(a) + num(b));
    case E_SUB: return ints ? mk_int(x - y) : mk_float(num(a) - num(b));
    case E_MUL: return ints ? mk_int(x * y) : mk_float(num(a) * num(b));
    case E_DIV: if (num(b) == 0) fail(j, "division by zero"); return mk_float(num(a) / num(b));
    case E_FLOORDIV:
        if (num(b) == 0) fail(j, "division by zero");
        if (ints) { int64_t q = x / y; if ((x % y != 0) && ((x < 0) != (y < 0))) q--; return mk_int(q); }
        return mk_float(floor(num(a) / num(b)));
    case E_MOD:
        if (num(b) == 0) fail(j, "modulo by zero");
        if (ints) { int64_t m = x % y; if (m && ((m < 0) != (y < 0))) m += y; return mk_int(m); }
        return mk_float(num(a) - floor(num(a) / num(b)) * num(b));
    case E_POW: return ints && y >= 0 ? mk_int((int64_t)pow((double)x, (double)y)) : mk_float(pow(num(a), num(b)));
    default: fail(j, "internal: operator %d", (int)op);
    }
}

static sp_jv eval(sp_jinja *j, frame *f, const expr *e) {
    if (++j->depth > MAX_DEPTH) fail(j, "expressions nested more than %d deep", MAX_DEPTH);
    j->line = e->line;
    sp_jv r;
    switch (e->kind) {
    case E_LIT: r = e->value; break;
    case E_NAME: r = lookup(j, f, e->name); break;
    case E_LIST:
        r = mk_list(j);
        for (int i = 0; i < e->n_args; i++) list_push(j, r.u.list, eval(j, f, e->args[i]));
        break;
    case E_DICT:
        r = mk_dict(j);
        for (int i = 0; i + 1 < e->n_args; i += 2) dict_put(j, r.u.dict, to_str(j, eval(j, f, e->args[i])), eval(j, f, e->args[i + 1]));
        break;
    case E_ATTR: r = get_attr(j, eval(j, f, e->a), e->name); break;
    case E_ITEM: {
        const sp_jv obj = eval(j, f, e->a), key = eval(j, f, e->b);
        /* x['items'] on a dict is the item; x.items the method (Jinja: subscript first) */
        r = obj.kind == JV_DICT || key.kind != JV_STRING ? get_item(j, obj, key) : get_attr(j, obj, as_str(key));
        break;
    }
    case E_SLICE:
        r = slice(j, eval(j, f, e->a), e->b ? eval(j, f, e->b) : mk_undef(), e->c ? eval(j, f, e->c) : mk_undef(),
                  e->d ? eval(j, f, e->d) : mk_undef());
        break;
    case E_CALL: {
        const sp_jv fn = eval(j, f, e->a);
        args_t *a = alloc(j, sizeof *a);
        eval_args(j, f, e, a);
        r = call(j, f, fn, a);
        break;
    }
    case E_FILTER: {
        const sp_jv v = eval(j, f, e->a);
        args_t *a = alloc(j, sizeof *a);
        eval_args(j, f, e, a);
        j->line = e->line;
        r = apply_filter(j, e->name, v, a);
        break;
    }
    case E_TEST: {
        const sp_jv v = eval(j, f, e->a);
        args_t *a = alloc(j, sizeof *a);
        eval_args(j, f, e, a);
        char n[32];
        snprintf(n, sizeof n, "%.*s", (int)(e->name.n < 31 ? e->name.n : 31), e->name.p);
        r = mk_bool(run_test(j, n, v, a) != e->negate);
        break;
    }
    case E_NEG: {
        const sp_jv v = eval(j, f, e->a);
        if (v.kind == JV_INT) r = mk_int(-v.u.i);
        else if (v.kind == JV_FLOAT) r = mk_float(-v.u.f);
        else fail(j, "cannot negate %s", kind_name(v));
        break;
    }
    case E_NOT: r = mk_bool(!truthy(eval(j, f, e->a))); break;
    case E_AND: { const sp_jv a = eval(j, f, e->a); r = truthy(a) ? eval(j, f, e->b) : a; break; }
    case E_OR: { const sp_jv a = eval(j, f, e->a); r = truthy(a) ? a : eval(j, f, e->b); break; }
    case E_COND: r = truthy(eval(j, f, e->b)) ? eval(j, f, e->a) : e->c ? eval(j, f, e->c) : mk_undef(); break;
    case E_CONCAT: {
        buf b = {j, NULL, 0, 0, false};
        put_value(&b, eval(j, f, e->a));
        put_value(&b, eval(j, f, e->b));
        r = mk_str(buf_str(&b));
        break;
    }
    case E_EQ: r = mk_bool(equal(eval(j, f, e->a), eval(j, f, e->b))); break;
    case E_NE: r = mk_bool(!equal(eval(j, f, e->a), eval(j, f, e->b))); break;
    case E_LT: r = mk_bool(compare(j, eval(j, f, e->a), eval(j, f, e->b)) < 0); break;
    case E_LE: r = mk_bool(compare(j, eval(j, f, e->a), eval(j, f, e->b)) <= 0); break;
    case E_GT: r = mk_bool(compare(j, eval(j, f, e->a), eval(j, f, e->b)) > 0); break;
    case E_GE: r = mk_bool(compare(j, eval(j, f, e->a), eval(j, f, e->b)) >= 0); break;
    case E_IN: { const sp_jv a = eval(j, f, e->a); r = mk_bool(contains(j, eval(j, f, e->b), a)); break; }
    case E_NOTIN: { const sp_jv a = eval(j, f, e->a); r = mk_bool(!contains(j, eval(j, f, e->b), a)); break; }
    default: r = arith(j, e->kind, eval(j, f, e->a), eval(j, f, e->b)); break;
    }
    j->depth--;
    return r;
}

static void count_step(sp_jinja *j) {
    if (++j->steps > MAX_STEPS) fail(j, "more than %d loop iterations and calls", MAX_STEPS);
}

static sp_jv call(sp_jinja *j, frame *f, sp_jv fn, const args_t *a) {
    (void)f;
    if (fn.kind != JV_CALLABLE) fail(j, "%s is not callable", kind_name(fn));
    count_step(j);
    const jcallable *c = fn.u.fn;
    if (c->macro) {
        const node *m = c->macro;
        frame *mf = alloc(j, sizeof *mf);
        mf->parent = c->scope;
        for (int i = 0; i < m->n_params; i++) {
            sp_jv v = arg(a, i, NULL);
            for (int k = 0; k < a->n_kw; k++) if (str_same(a->kw_name[k], m->params[i])) v = a->kw[k];
            if (v.kind == JV_UNDEFINED && m->defaults[i]) v = eval(j, c->scope, m->defaults[i]);
            dict_put(j, &mf->vars, m->params[i], v);
        }
        buf out = {j, NULL, 0, 0, false};
        if (++j->depth > MAX_DEPTH) fail(j, "calls nested more than %d deep", MAX_DEPTH);
        run(j, mf, m->then, &out);
        j->depth--;
        return mk_str(buf_str(&out));
    }
    const char *n = c->builtin;
    const sp_jv self = c->self, a0 = arg(a, 0, NULL);
    if (self.kind == JV_UNDEFINED) { /* globals */
        if (!strcmp(n, "raise_exception")) fail(j, "raise_exception: %.*s", (int)to_str(j, a0).n, to_str(j, a0).p);
        if (!strcmp(n, "range")) {
            for (int i = 0; i < a->n_pos; i++) if (a->pos[i].kind != JV_INT) fail(j, "range needs integers");
            if (a->n_pos < 1 || a->n_pos > 3) fail(j, "range takes 1 to 3 arguments");
            int64_t lo = 0, hi, step = 1;
            if (a->n_pos == 1) hi = a0.u.i;
            else { lo = a0.u.i; hi = arg(a, 1, NULL).u.i; if (a->n_pos > 2) step = arg(a, 2, NULL).u.i; }
            if (step == 0) fail(j, "range step 0");
            sp_jv out = mk_list(j);
            for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) { count_step(j); list_push(j, out.u.list, mk_int(i)); }
            return out;
        }
        if (!strcmp(n, "namespace") || !strcmp(n, "dict")) {
            sp_jv d = mk_dict(j);
            if (a0.kind == JV_DICT) for (int i = 0; i < a0.u.dict->n; i++) dict_put(j, d.u.dict, a0.u.dict->k[i], a0.u.dict->v[i]);
            for (int i = 0; i < a->n_kw; i++) dict_put(j, d.u.dict, a->kw_name[i], a->kw[i]);
            return d;
        }
        if (!strcmp(n, "strftime_now")) {
            const time_t now = time(NULL);
            struct tm tm;
            localtime_r(&now, &tm);
            char out[256], fmt[128];
            const str s = to_str(j, a0);
            snprintf(fmt, sizeof fmt, "%.*s", (int)(s.n < 127 ? s.n : 127), s.p);
            const size_t k = strftime(out, sizeof out, fmt, &tm);
            return mk_str(str_dup(j, out, k));
        }
        fail(j, "'%s' is not supported", n);
    }
    /* methods */
    if (self.kind == JV_STRING) {
        const str s = as_str(self);
        if (!strcmp(n, "startswith") || !strcmp(n, "endswith")) {
            jlist one = {(sp_jv[]){a0}, 1, 1};
            const jlist *cands = a0.kind == JV_LIST ? a0.u.list : &one;
            for (int i = 0; i < cands->n; i++) {
                const str x = to_str(j, cands->v[i]);
                if (x.n <= s.n && memcmp(n[0] == 's' ? s.p : s.p + s.n - x.n, x.p, x.n) == 0) return mk_bool(true);
            }
            return mk_bool(false);
        }
        if (!strcmp(n, "strip")) return strip(j, self, a0, true, true);
        if (!strcmp(n, "lstrip")) return strip(j, self, a0, true, false);
        if (!strcmp(n, "rstrip")) return strip(j, self, a0, false, true);
        if (!strcmp(n, "upper")) return change_case(j, self, 1);
        if (!strcmp(n, "lower")) return change_case(j, self, 0);
        if (!strcmp(n, "title")) return change_case(j, self, 3);
        if (!strcmp(n, "capitalize")) return change_case(j, self, 2);
        if (!strcmp(n, "replace")) return replace(j, self, a0, arg(a, 1, NULL));
        if (!strcmp(n, "split")) {
            sp_jv out = mk_list(j);
            const sp_jv mx = arg(a, 1, "maxsplit");
            int64_t left = mx.kind == JV_INT && mx.u.i >= 0 ? mx.u.i : INT64_MAX;
            if (a0.kind == JV_STRING && a0.u.s.n) {
                const str sep = as_str(a0);
                size_t start = 0;
                for (size_t i = 0; i + sep.n <= s.n && left;) {
                    if (memcmp(s.p + i, sep.p, sep.n) == 0) { list_push(j, out.u.list, mk_str((str){s.p + start, i - start})); i += sep.n; start = i; left--; }
                    else i++;
                }
                list_push(j, out.u.list, mk_str((str){s.p + start, s.n - start}));
            } else { /* runs of whitespace */
                size_t i = 0;
                while (i < s.n) {
                    while (i < s.n && isspace((unsigned char)s.p[i])) i++;
                    if (i >= s.n) break;
                    size_t e = i;
                    if (!left) e = s.n; else while (e < s.n && !isspace((unsigned char)s.p[e])) e++;
                    if (!left) { size_t t = e; while (t > i && isspace((unsigned char)s.p[t - 1])) t--; e = t; }
                    list_push(j, out.u.list, mk_str((str){s.p + i, e - i}));
                    if (left) left--;
                    i = e;
                    if (!left) { while (i < s.n && isspace((unsigned char)s.p[i])) i++; if (i < s.n) { size_t t = s.n; while (t > i && isspace((unsigned char)s.p[t - 1])) t--; list_push(j, out.u.list, mk_str((str){s.p + i, t - i})); } break; }
                }
            }
            return out;
        }
        if (!strcmp(n, "join")) {
            jlist *l = iterate(j, a0);
            buf r = {j, NULL, 0, 0, false};
            for (int i = 0; i < l->n; i++) { if (i) buf_put(&r, s.p, s.n); put_value(&r, l->v[i]); }
            return mk_str(buf_str(&r));
        }
        if (!strcmp(n, "count") || !strcmp(n, "find")) {
            const str x = to_str(j, a0);
            int64_t count = 0;
            for (size_t i = 0; x.n && i + x.n <= s.n;) {
                if (memcmp(s.p + i, x.p, x.n) == 0) { if (n[0] == 'f') return mk_int((int64_t)n_chars((str){s.p, i})); count++; i += x.n; }
                else i++;
            }
            return mk_int(n[0] == 'f' ? -1 : count);
        }
    } else if (self.kind == JV_DICT) {
        if (!strcmp(n, "items")) { args_t none = {0}; return apply_filter(j, (str){"items", 5}, self, &none); }
        if (!strcmp(n, "keys") || !strcmp(n, "values")) {
            sp_jv out = mk_list(j);
            for (int i = 0; i < self.u.dict->n; i++) list_push(j, out.u.list, n[0] == 'k' ? mk_str(self.u.dict->k[i]) : self.u.dict->v[i]);
            return out;
        }
        if (!strcmp(n, "get")) {
            const sp_jv v = a0.kind == JV_STRING ? get_item(j, self, a0) : mk_undef();
            return v.kind == JV_UNDEFINED ? (a->n_pos > 1 ? arg(a, 1, NULL) : mk_none()) : v;
        }
    } else if (self.kind == JV_LIST) {
        if (!strcmp(n, "append")) { list_push(j, self.u.list, a0); return mk_none(); }
        if (!strcmp(n, "index") || !strcmp(n, "count")) {
            int64_t count = 0;
            for (int i = 0; i < self.u.list->n; i++)
                if (equal(self.u.list->v[i], a0)) { if (n[0] == 'i') return mk_int(i); count++; }
            if (n[0] == 'i') fail(j, "index: not in the list");
            return mk_int(count);
        }
    }
    fail(j, "the method '%s' of %s is not supported", n, kind_name(self));
}

static flow run(sp_jinja *j, frame *f, body b, buf *out) {
    for (int i = 0; i < b.n; i++) {
        const node *n = b.v[i];
        j->line = n->line;
        switch (n->kind) {
        case N_TEXT: buf_put(out, n->text.p, n->text.n); break;
        case N_OUTPUT: put_value(out, eval(j, f, n->e)); break;
        case N_CALL: eval(j, f, n->e); break;
        case N_IF: {
            const flow fl = run(j, f, truthy(eval(j, f, n->e)) ? n->then : n->otherwise, out);
            if (fl != FLOW_NORMAL) return fl;
            break;
        }
        case N_FOR: {
            jlist *all = iterate(j, eval(j, f, n->e)), *l = all;
            frame *lf = alloc(j, sizeof *lf);
            lf->parent = f;
            if (n->filter) { /* the filter sees each item as the loop variable */
                l = alloc(j, sizeof *l);
                for (int k = 0; k < all->n; k++) {
                    count_step(j);
                    dict_put(j, &lf->vars, n->names[0], all->v[k]);
                    if (truthy(eval(j, lf, n->filter))) list_push(j, l, all->v[k]);
                }
            }
            /* each iteration starts from a fresh scope (its sets stay in it); the memory is reused */
            frame *it = alloc(j, sizeof *it);
            it->parent = f;
            sp_jv loop = mk_dict(j);
            for (int k = 0; k < l->n; k++) {
                count_step(j);
                it->vars.n = 0;
                const sp_jv item = l->v[k];
                if (n->n_names == 2) {
                    if (item.kind != JV_LIST || item.u.list->n != 2) fail(j, "cannot unpack %s into two names", kind_name(item));
                    dict_put(j, &it->vars, n->names[0], item.u.list->v[0]);
                    dict_put(j, &it->vars, n->names[1], item.u.list->v[1]);
                } else {
                    dict_put(j, &it->vars, n->names[0], item);
                }
                jdict *d = loop.u.dict;
                dict_put(j, d, (str){"index0", 6}, mk_int(k));
                dict_put(j, d, (str){"index", 5}, mk_int(k + 1));
                dict_put(j, d, (str){"revindex0", 9}, mk_int(l->n - k - 1));
                dict_put(j, d, (str){"revindex", 8}, mk_int(l->n - k));
                dict_put(j, d, (str){"first", 5}, mk_bool(k == 0));
                dict_put(j, d, (str){"last", 4}, mk_bool(k == l->n - 1));
                dict_put(j, d, (str){"length", 6}, mk_int(l->n));
                dict_put(j, d, (str){"previtem", 8}, k > 0 ? l->v[k - 1] : mk_undef());
                dict_put(j, d, (str){"nextitem", 8}, k + 1 < l->n ? l->v[k + 1] : mk_undef());
                dict_put(j, &it->vars, (str){"loop", 4}, loop);
                if (run(j, it, n->then, out) == FLOW_BREAK) break;
            }
            if (l->n == 0 && n->otherwise.n) {
                const flow fl = run(j, f, n->otherwise, out);
                if (fl != FLOW_NORMAL) return fl;
            }
            break;
        }
        case N_SET: {
            sp_jv v;
            if (n->e) v = eval(j, f, n->e);
            else { buf inner = {j, NULL, 0, 0, false}; run(j, f, n->then, &inner); v = mk_str(buf_str(&inner)); }
            if (n->n_names == 2) { /* ns.attr = value: the namespace is found where it lives */
                const sp_jv ns = lookup(j, f, n->names[0]);
                if (ns.kind != JV_DICT) fail(j, "'%.*s' is not a namespace", (int)n->names[0].n, n->names[0].p);
                dict_put(j, ns.u.dict, n->names[1], v);
            } else {
                dict_put(j, &f->vars, n->names[0], v);
            }
            break;
        }
        case N_MACRO: {
            jcallable *c = alloc(j, sizeof *c);
            c->macro = n;
            c->scope = f;
            sp_jv v = {JV_CALLABLE, {0}};
            v.u.fn = c;
            dict_put(j, &f->vars, n->names[0], v);
            break;
        }
        case N_BREAK: return FLOW_BREAK;
        case N_CONTINUE: return FLOW_CONTINUE;
        }
    }
    return FLOW_NORMAL;
}

sp_status sp_jinja_render(sp_jinja *j, const char *source, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    buf o = {j, NULL, 0, 0, true};
    j->line = 1;
    j->depth = 0;
    j->steps = 0;
    if (setjmp(j->fail)) {
        free(o.p);
        return sp_fail(SP_ERR_ARGUMENT, "%s", j->error);
    }
    if (j->broken) fail(j, "out of memory while preparing the variables");
    stmt_parser s = {j, lex_template(j, source, len), 0, 0};
    str stopped;
    const body b = parse_body(&s, NULL, &stopped);
    if (s.pos < s.it.n) { /* a stray end tag */
        j->line = s.it.v[s.pos].line;
        fail(j, "'%.*s' without its opening tag", (int)stopped.n, stopped.p);
    }
    frame *top = alloc(j, sizeof *top);
    run(j, top, b, &o);
    buf_put(&o, "", 0);
    *out = o.p;
    if (out_len) *out_len = o.n;
    return SP_OK;
}
