/* Chat templates: the Jinja interpreter's rules one by one (the full templates are compared with
 * Python's jinja2 by tests/ref/check_templates.py), the built-ins, and — with ../shared — seven
 * real templates against their renderings there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

/* Renders src with messages (JSON) and variables (JSON); returns the text or NULL (error kept). */
static char *render(const char *src, const char *messages, const char *vars, bool gen) {
    char *out = NULL;
    if (sp_chat_apply_json(NULL, src, messages ? messages : "[]", vars, gen, &out) != SP_OK) return NULL;
    return out;
}

static void expect(const char *src, const char *vars, const char *want) {
    char *got = render(src, NULL, vars, false);
    if (!got) fail_msg("%s: %s", src, sp_last_error());
    if (strcmp(got, want) != 0) fail_msg("%s\n got: [%s]\nwant: [%s]", src, got, want);
    free(got);
}

static void expect_error(const char *src, const char *vars, const char *message) {
    char *got = render(src, NULL, vars, false);
    if (got) fail_msg("%s rendered [%s]; an error was expected", src, got);
    if (!strstr(sp_last_error(), message)) fail_msg("%s: error '%s' does not say '%s'", src, sp_last_error(), message);
}

static void expressions(void **s) {
    (void)s;
    expect("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", NULL, "7 3 -4 1 2 3.5 1024");
    expect("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }}", NULL, "a1None ababab [1, 2, 3]");
    expect("{{ x if x else 'no' }} {{ 'yes' if not x }}|", "{\"x\": 0}", "no yes|");
    expect("{{ 1 < 2 and 2 <= 2 and 'b' > 'a' and 1 == 1.0 and not 1 != 1 }}", NULL, "True");
    expect("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}", NULL, "True True True True");
    expect("{{ s[1:3] }} {{ s[::-1] }} {{ s[-2:] }} {{ l[1] }} {{ l[-1] }} {{ l[5] }}|", "{\"s\": \"héllo\", \"l\": [1, 2, 3]}", "él olléh lo 2 3 |");
    expect("{{ d.a }} {{ d['b'] }} {{ d.missing }}| {{ d.items() | list }} {{ d.get('z', 9) }}", "{\"d\": {\"a\": 1, \"b\": \"x\"}}",
           "1 x | [['a', 1], ['b', 'x']] 9");
    expect("{{ true }} {{ None }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 'it''s' }}", NULL, "True None 1.0 0.30000000000000004 1e+20 its");
    expect("{{ [1, 'a', none, {'k': [true]}] }}", NULL, "[1, 'a', None, {'k': [True]}]");
}

static void statements_and_whitespace(void **s) {
    (void)s;
    /* trim_blocks and lstrip_blocks as transformers sets them, and the explicit controls */
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc");
    expect("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    expect("a\n  {%+ if true %}b{% endif %}", NULL, "a\n  b");
    expect("{# a comment #}\nx {{- ' y ' -}} z", NULL, "x y z");
    expect("{% for x in [1, 2, 3] if x != 2 %}{{ loop.index }}{{ x }}{{ ',' if not loop.last }}{% else %}none{% endfor %}", NULL, "11,23");
    expect("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    expect("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=2;");
    expect("{% for x in range(5) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}", NULL, "02");
    /* a loop's sets stay inside it; a namespace carries them out */
    expect("{% set x = 1 %}{% set ns = namespace(y=1) %}{% for i in [1] %}{% set x = 2 %}{% set ns.y = 2 %}{% endfor %}{{ x }}{{ ns.y }}", NULL, "12");
    expect("{% set t %}in {{ 1 + 1 }}{% endset %}[{{ t }}]", NULL, "[in 2]");
    expect("{% macro greet(name, greeting='hi') %}{{ greeting }} {{ name }}{% endmacro %}{{ greet('a') }}, {{ greet('b', greeting='yo') }}", NULL,
           "hi a, yo b");
    expect("{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"b\": true}", "B");
}

static void filters_tests_methods(void **s) {
    (void)s;
    expect("{{ '  x  ' | trim }}|{{ 'AbC' | lower }}{{ 'x' | upper }}|{{ 'a-b' | replace('-', '+') }}|{{ [3, 4] | length }}{{ 'héllo' | length }}", NULL,
           "x|abcX|a+b|25");
    expect("{{ [1, 2] | first }}{{ [1, 2] | last }}{{ [1, 2] | join('/') }}{{ x | default('d') }}{{ '' | default('e', true) }}", NULL, "121/2de");
    expect("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(',') }}|{{ msgs | rejectattr('role', 'eq', 'user') | list | length }}",
           "{\"msgs\": [{\"role\": \"user\", \"c\": 1}, {\"role\": \"bot\", \"c\": 2}, {\"role\": \"user\", \"c\": 3}]}", "1,3|1");
    expect("{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}",
           "{\"d\": {\"a\": [1, 2.5, null, true], \"b\": {}}}",
           "{\"a\": [1, 2.5, null, true], \"b\": {}}|{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"b\": {}\n}|\"é\\\"\\n\"|\"\\u00e9\"");
    expect("{{ x is defined }}{{ y is defined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}{{ 3 is odd }}{{ x is not none }}", "{\"x\": 1}",
           "TrueFalseTrueTrueTrueTrueTrue");
    expect("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ ' a b '.split() }}{{ 'a,b'.split(',') }}{{ 'xax'.strip('x') }}{{ 'Ab'.upper() }}",
           NULL, "TrueTrue['a', 'b']['a', 'b']aAB");
    expect("{{ ', '.join(['a', 'b']) }}|{{ 'a\\nb' }}|{{ \"q\" }}", NULL, "a, b|a\nb|q");
    /* string escapes as Python's unicode_escape: a backslash before a newline joins the lines */
    expect("{{ 'a\\\nb' }}|{{ '\\x41\\u00e9\\101' }}|{{ '\\q' }}", NULL, "ab|A\xc3\xa9" "A|\\q");
}

static void errors_name_the_line(void **s) {
    (void)s;
    expect_error("line one\n{{ raise_exception('no system role') }}", NULL, "line 2: raise_exception: no system role");
    expect_error("{% if x %}never closed", NULL, "never closed by 'endif'");
    expect_error("{% endfor %}", NULL, "'endfor'");
    expect_error("{% for x in [1] %}{% endfor x %}", NULL, "unexpected 'x' at the end of the tag");
    expect_error("{% macro m() %}never closed", NULL, "'macro' (line 1) is never closed by 'endmacro'");
    expect_error("{{ 1 + }}", NULL, "line 1");
    expect_error("{{ x | nosuchfilter }}", NULL, "the filter 'nosuchfilter' is not supported");
    expect_error("{% include 'other.jinja' %}", NULL, "'include' is not supported");
    expect_error("{{ undefined_thing.attr }}", NULL, "undefined value has no attribute 'attr'");
    expect_error("{{ 'unterminated }}", NULL, "never closed");
    expect_error("{{ 1", NULL, "never closed");
    /* limits: loop iterations, output size, recursion */
    expect_error("{% for i in range(100000) %}{% for k in range(100) %}{% endfor %}{% endfor %}", NULL, "loop iterations");
    expect_error("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", NULL, "longer than");
    expect_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, "deep");
    char deep[2000] = "{{ ";
    for (int i = 0; i < 600; i++) strcat(deep, "(");
    strcat(deep, "1 }}");
    expect_error(deep, NULL, "nested more than");
}

static void builtins_and_messages(void **s) {
    (void)s;
    sp_chat_message m[2] = {{"system", "Be brief."}, {"user", " hi "}};
    char *out = NULL;
    assert_int_equal(sp_chat_apply(NULL, "chatml", m, 2, true, &out), SP_OK);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n hi <|im_end|>\n<|im_start|>assistant\n");
    free(out);
    assert_int_equal(sp_chat_apply(NULL, "nope", m, 2, true, &out), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "llama3"));
    /* the bundled model: its own template, its BOS */
    sp_model *model;
    assert_int_equal(sp_model_load(SP_SOURCE_DIR "/models/main.gguf", &model), SP_OK);
    assert_int_equal(sp_chat_apply(model, "llama2", m, 2, false, &out), SP_OK);
    assert_string_equal(out, "<|begin_of_text|>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi [/INST]");
    free(out);
    /* content parts and tool calls reach the template as sent */
    const char *msgs = "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]},"
                       " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]}]";
    const char *src = "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% elif m.content %}"
                      "{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}{% for t in m.tool_calls or [] %}"
                      "[{{ t.function.name }} {{ t.function.arguments | tojson }}]{% endfor %};{% endfor %}{{ enable_thinking }}";
    assert_int_equal(sp_chat_apply_json(model, src, msgs, "{\"enable_thinking\": false}", true, &out), SP_OK);
    assert_string_equal(out, "ab;[f {\"x\": 1}];False");
    free(out);
    assert_int_equal(sp_chat_apply_json(model, src, "{\"not\": \"a list\"}", NULL, true, &out), SP_ERR_ARGUMENT);
    assert_int_equal(sp_chat_apply_json(model, src, "[{\"role\": ", NULL, true, &out), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "JSON"));
    sp_model_free(model);
}

/* A second opinion: seven real templates and the renderings llama.cpp's fixtures hold. */
static void real_templates_render_as_jinja_does(void **s) {
    (void)s;
    SKIP_WITHOUT_SHARED();
    cJSON *all = load_json(SHARED("fixtures/templates/rendered.json"));
    int n_checked = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, all) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/%s", SP_SHARED_DIR, cJSON_GetObjectItem(e, "template")->valuestring);
        char *tmpl = slurp(path, NULL);
        assert_non_null(tmpl);
        cJSON *vars = cJSON_Duplicate(cJSON_GetObjectItem(e, "variables"), true);
        const bool gen = cJSON_IsTrue(cJSON_GetObjectItem(vars, "add_generation_prompt"));
        cJSON_DeleteItemFromObject(vars, "add_generation_prompt");
        cJSON_AddStringToObject(vars, "bos_token", cJSON_GetObjectItem(e, "bos_token")->valuestring);
        cJSON_AddStringToObject(vars, "eos_token", cJSON_GetObjectItem(e, "eos_token")->valuestring);
        char *vars_json = cJSON_PrintUnformatted(vars), *msgs_json = cJSON_PrintUnformatted(cJSON_GetObjectItem(e, "messages"));
        char *out = NULL;
        if (sp_chat_apply_json(NULL, tmpl, msgs_json, vars_json, gen, &out) != SP_OK) fail_msg("%s: %s", path, sp_last_error());
        const char *want = cJSON_GetObjectItem(e, "rendered")->valuestring;
        if (strcmp(out, want) != 0) fail_msg("%s:\n got: %s\nwant: %s", path, out, want);
        free(out); free(vars_json); free(msgs_json); free(tmpl);
        cJSON_Delete(vars);
        n_checked++;
    }
    assert_int_equal(n_checked, 7);
    cJSON_Delete(all);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expressions), cmocka_unit_test(statements_and_whitespace), cmocka_unit_test(filters_tests_methods),
        cmocka_unit_test(errors_name_the_line), cmocka_unit_test(builtins_and_messages),
        cmocka_unit_test(real_templates_render_as_jinja_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
