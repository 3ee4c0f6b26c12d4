/*
 * A Jinja interpreter for chat templates: the subset Hugging Face chat templates use, with the
 * settings transformers renders them with (trim_blocks, lstrip_blocks, loop controls, its own
 * tojson, raise_exception, strftime_now). One render = one sp_jinja: an arena that holds the
 * parsed template, the variables and every value made while rendering, freed at once.
 *
 * Limits keep a hostile template bounded: output size, loop iterations, call depth, memory.
 */
#ifndef SP_JINJA_H
#define SP_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "specprefill.h"

typedef struct sp_jinja sp_jinja;

/* A value: what a template sees (strings are UTF-8 with a length; lists and dicts live in the
 * render's arena). */
typedef enum { JV_UNDEFINED, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STRING, JV_LIST, JV_DICT, JV_CALLABLE } sp_jv_kind;
typedef struct sp_jv {
    sp_jv_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        struct sp_jlist *list;
        struct sp_jdict *dict;
        struct sp_jcallable *fn;
    } u;
} sp_jv;

sp_jinja *sp_jinja_new(void);
void sp_jinja_free(sp_jinja *j);

/* Values made in j's arena. */
sp_jv sp_jinja_string(sp_jinja *j, const char *s, size_t n);
sp_jv sp_jinja_bool(bool b);
sp_jv sp_jinja_none(void);
sp_jv sp_jinja_list(sp_jinja *j);
sp_jv sp_jinja_dict(sp_jinja *j);
void sp_jinja_list_push(sp_jinja *j, sp_jv list, sp_jv v);
void sp_jinja_dict_set(sp_jinja *j, sp_jv dict, const char *key, sp_jv v);
/* JSON text → a value (objects keep their key order). SP_ERR_ARGUMENT names the byte offset. */
sp_status sp_jinja_from_json(sp_jinja *j, const char *json, size_t len, sp_jv *out);

/* A variable the template reads (messages, bos_token, add_generation_prompt, ...); or each entry
 * of a dict as one (false if vars is not a dict). */
void sp_jinja_set(sp_jinja *j, const char *name, sp_jv v);
bool sp_jinja_set_all(sp_jinja *j, sp_jv vars);

/* Parses and renders the template; *out is malloc'ed (free it). An error names the template's
 * line: a syntax error, an unsupported construct, raise_exception's message, a limit. */
sp_status sp_jinja_render(sp_jinja *j, const char *source, size_t len, char **out, size_t *out_len);

#endif
